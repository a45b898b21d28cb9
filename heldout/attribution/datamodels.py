"""Linear datamodels: per test example, a linear model from a run's subset to its output.

Ilyas, Park, Engstrom, Leclerc & Madry, *Datamodels: Predicting Predictions from Training Data*
(ICML 2022), Sec. 2: for test example j, ``f_j(S) ~ b_j + sum_i w_ij [i in S]``, fitted over
models trained on random subsets S (here the runs' masks ``X`` [R, n_train] and outputs
``Y`` [R, n_test]), the regularisation chosen per target on held-out models. The paper fits a
lasso path; the weights are in the output's units with the sign of the heldout influence (the
change of the output when the example is included), so `heldout.attribution.output_influence`
and these weights can be compared on one axis.

Ridge (``fit="ridge"``), per target j: minimise ``||y_j - b_j - X w_j||^2 + lambda_j
||w_j||^2``: exactly ``sklearn.linear_model.Ridge(alpha=lambda_j)`` on the raw 0/1 masks with an
intercept. Solved in the dual: with ``H`` the centring matrix over runs and ``K = H X X^T H``,
``w_j = X^T alpha_j`` with ``alpha_j = (K + lambda_j I)^{-1} H y_j`` (``alpha_j`` sums to 0, so
the raw masks give the centred solution) and ``b_j = mean(y_j) - mean_r(X) w_j``. Every target
and every penalty shares one eigendecomposition ``K = U diag(s) U^T``: the work is one
``X X^T`` (float32 counts of 0/1 values: exact), one R x R eigendecomposition and one
``X^T alpha`` product, each done block by block over the training examples; trying a grid of
penalties on held-out runs costs R x R products only.

Lasso (``fit="lasso"``), per target: scikit-learn's coordinate descent (``lasso_path`` on the
centred fitting runs, then ``Lasso``), objective ``||y - b - X w||^2 / (2 R) + alpha ||w||_1``,
one target at a time (``lasso_path`` given several targets would solve the multi-task problem
instead).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from heldout.attribution.arrays import DEFAULT_WORKING_BYTES, MaskBlocks, check_masks, check_outputs
from heldout.attribution.spearman import spearman
from heldout.errors import AttributionError

FITS = ("ridge", "lasso")
#: Fewest runs on each side of the validation split.
MIN_SPLIT_RUNS = 3
#: Ridge penalties tried, relative to the mean diagonal of ``K`` (about n_train p (1 - p)).
RIDGE_GRID = np.logspace(-3, 3, 13)
#: Lasso penalties tried: this many, log-spaced from sklearn's smallest all-zero penalty
#: ``max |X_c^T y_c| / R`` down to LASSO_EPS of it.
LASSO_STEPS, LASSO_EPS = 20, 1e-3


@dataclasses.dataclass(frozen=True)
class Datamodels:
    """Linear datamodels of some test examples (`fit_datamodels`).

    Attributes:
      weights: float32 [m, n_train], ``w_ij``: the output change when training example i is in
        the subset (the heldout influence's units and sign).
      bias: float64 [m], the intercepts.
      penalty: float64 [m], the penalty of each target (chosen or fixed), in the fit's own
        objective (see the module docstring).
      val_spearman, val_r2: float64 [m], Spearman's rho and R^2 (``1 - SSE / SST``, as
        ``sklearn.metrics.r2_score``) on the held-out runs, of the model fitted on the others
        with the chosen penalty; NaN when the penalty was fixed (no held-out runs) or the
        held-out outputs are constant.
      test_index: int64 [m], the test examples (columns of the outputs) modelled.
      fit: ``"ridge"`` or ``"lasso"``.
      num_runs: R, the runs of the final fit; num_val_runs: the held-out runs the penalty was
        chosen on (0 with a fixed penalty).
      penalties: float64 [m, G] the penalties tried per target (G = 0 with a fixed penalty).
    """

    weights: np.ndarray
    bias: np.ndarray
    penalty: np.ndarray
    val_spearman: np.ndarray
    val_r2: np.ndarray
    test_index: np.ndarray
    fit: str
    num_runs: int
    num_val_runs: int
    penalties: np.ndarray

    def predict(self, masks: np.ndarray) -> np.ndarray:
        """float64 [R', m]: the outputs the datamodels predict for subsets `masks` [R', n_train]."""
        return check_masks(masks).astype(np.float32) @ self.weights.T + self.bias


def validation_split(num_runs: int, val_fraction: float, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(fit, val): int64 run rows, a random ``round(val_fraction R)`` of the R runs held out
    (at least 3), the rest fitted (at least 3).

    Raises:
      AttributionError: a fraction outside (0, 1) or too few runs for both sides.
    """
    if not 0.0 < val_fraction < 1.0:
        raise AttributionError(f"the validation fraction must lie in (0, 1), got {val_fraction}")
    num_val = max(MIN_SPLIT_RUNS, int(round(val_fraction * num_runs)))
    if num_runs < 2 * MIN_SPLIT_RUNS:
        raise AttributionError(
            f"choosing the penalty on held-out runs needs at least {2 * MIN_SPLIT_RUNS} runs "
            f"({MIN_SPLIT_RUNS} held out, {MIN_SPLIT_RUNS} fitted), found {num_runs}; fix the "
            "penalty instead")
    if num_runs - num_val < MIN_SPLIT_RUNS:
        raise AttributionError(
            f"holding out {num_val} of {num_runs} runs (validation fraction {val_fraction:g}) "
            f"leaves {num_runs - num_val} to fit, fewer than {MIN_SPLIT_RUNS}; lower the "
            "validation fraction")
    order = np.random.default_rng(seed).permutation(num_runs)
    return np.sort(order[num_val:]), np.sort(order[:num_val])


def fit_datamodels(
    masks: np.ndarray,
    outputs: np.ndarray,
    *,
    fit: str = "ridge",
    penalty: float | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    test_index: Sequence[int] | np.ndarray | None = None,
    penalties: Sequence[float] | None = None,
    working_bytes: int = DEFAULT_WORKING_BYTES,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> Datamodels:
    """Fits a linear datamodel per test example (Ilyas et al. 2022).

    Args:
      masks: bool [R, n_train], the runs' training subsets.
      outputs: float [R, n_test], the runs' outputs (e.g. margins).
      fit: ``"ridge"`` (dual form, all targets at once) or ``"lasso"`` (scikit-learn, one
        target at a time).
      penalty: a fixed penalty (ridge's lambda or lasso's alpha), fitted on every run; None
        chooses it per target among `penalties` by the mean squared error on a held-out
        ``val_fraction`` of the runs (`validation_split`), then refits on every run.
      val_fraction, seed: the held-out runs.
      test_index: the test examples (output columns) to model; default all.
      penalties: the grid (absolute values); default: ridge ``RIDGE_GRID`` times the mean
        diagonal of the centred Gram matrix, lasso ``LASSO_STEPS`` values per target from
        sklearn's all-zero penalty down to ``LASSO_EPS`` of it.
      working_bytes: bound on the memory of one block of the masks.
      progress: optional wrapper reporting progress over the targets (lasso).

    Returns:
      `Datamodels`.

    Raises:
      AttributionError: unknown fit, shapes that do not fit, NaN outputs, a test index out of
        range, a penalty <= 0 (ridge) or < 0 (lasso), too few runs to hold some out.
    """
    if fit not in FITS:
        raise AttributionError(f"fit must be one of {FITS}, got {fit!r}")
    masks = check_masks(masks)
    runs, n_train = masks.shape
    outputs = check_outputs(outputs, runs)
    n_test = outputs.shape[1]
    index = np.arange(n_test) if test_index is None else np.asarray(test_index, np.int64)
    if index.ndim != 1 or not len(index) or index.min() < 0 or index.max() >= n_test:
        raise AttributionError(f"test_index: expected positions in 0..{n_test - 1}, found "
                               f"{index.tolist()[:5]}...")
    targets = outputs[:, index]
    if penalty is not None and not (penalty > 0 or (fit == "lasso" and penalty == 0)):
        raise AttributionError(f"the {fit} penalty must be > 0, got {penalty}")
    if runs < 2:
        raise AttributionError(f"a datamodel with an intercept needs at least 2 runs, found {runs}")
    split = None if penalty is not None else validation_split(runs, val_fraction, seed)
    solve = _ridge if fit == "ridge" else _lasso
    return solve(masks, targets, index, penalty, split, penalties, working_bytes, progress)


# --------------------------------------------------------------------------------------------
# Ridge in the dual.


def _gram(masks: np.ndarray, working_bytes: int) -> np.ndarray:
    """float64 [R, R] ``X X^T``: float32 products of 0/1 blocks are exact integer counts."""
    gram = np.zeros((masks.shape[0],) * 2)
    for _, _, block in MaskBlocks(masks, np.float32, working_bytes):
        gram += block @ block.T
    return gram


@dataclasses.dataclass(frozen=True)
class _Dual:
    """The shared part of ridge on a set of runs: ``K = H G H = U diag(s) U^T``,
    ``A = U^T (Y - mean Y)``."""

    rows: np.ndarray
    s: np.ndarray
    u: np.ndarray
    a: np.ndarray
    y_mean: np.ndarray

    @staticmethod
    def make(gram: np.ndarray, targets: np.ndarray, rows: np.ndarray) -> _Dual:
        g = gram[np.ix_(rows, rows)]
        centred = g - g.mean(axis=0) - g.mean(axis=1, keepdims=True) + g.mean()
        s, u = np.linalg.eigh(centred)
        y = targets[rows]
        y_mean = y.mean(axis=0)
        return _Dual(rows, np.maximum(s, 0.0), u, u.T @ (y - y_mean), y_mean)

    def alpha(self, penalty: np.ndarray) -> np.ndarray:
        """float64 [R_fit, m] dual coefficients, penalty float [m], summing to 0 per column."""
        alpha = self.u @ (self.a / (self.s[:, None] + penalty[None, :]))
        return alpha - alpha.mean(axis=0)


def _ridge(masks, targets, index, penalty, split, grid, working_bytes, progress) -> Datamodels:
    runs, m = masks.shape[0], targets.shape[1]
    gram = _gram(masks, working_bytes)
    val_spearman = np.full(m, np.nan)
    val_r2 = np.full(m, np.nan)
    if split is None:
        chosen, tried, num_val = np.full(m, float(penalty)), np.zeros((m, 0)), 0
    else:
        fit_rows, val_rows = split
        dual = _Dual.make(gram, targets, fit_rows)
        if grid is None:
            scale = max(float(dual.s.sum()) / len(fit_rows), np.finfo(float).tiny)
            grid = RIDGE_GRID * scale
        grid = np.asarray(grid, np.float64)
        if grid.ndim != 1 or not len(grid) or (grid <= 0).any():
            raise AttributionError(f"ridge penalties must be > 0, got {grid.tolist()}")
        # Held-out predictions ``mean y + X_v X_f^T alpha - mean_f(X) X_f^T alpha``.
        g_vf = gram[np.ix_(val_rows, fit_rows)]
        g_vf = g_vf - gram[np.ix_(fit_rows, fit_rows)].mean(axis=0)
        b = (g_vf - g_vf.mean(axis=1, keepdims=True)) @ dual.u
        y_val = targets[val_rows]
        best_mse = np.full(m, np.inf)
        best = np.empty(y_val.shape)
        chosen = np.empty(m)
        for lam in grid:
            predicted = dual.y_mean + b @ (dual.a / (dual.s[:, None] + lam))
            mse = ((predicted - y_val) ** 2).mean(axis=0)
            better = mse < best_mse
            best_mse[better], chosen[better] = mse[better], lam
            best[:, better] = predicted[:, better]
        val_spearman, val_r2 = _held_out_scores(best, y_val)
        tried, num_val = np.broadcast_to(grid, (m, len(grid))).copy(), len(val_rows)
    dual = _Dual.make(gram, targets, np.arange(runs))
    alpha = dual.alpha(chosen)
    weights = np.empty((m, masks.shape[1]), np.float32)
    for c0, c1, block in MaskBlocks(masks, np.float64, working_bytes):
        weights[:, c0:c1] = alpha.T @ block
    # b = mean(y) - mean_r(X) w, with mean_r(X) w = 1^T X X^T alpha / R.
    bias = dual.y_mean - gram.mean(axis=0) @ alpha
    return Datamodels(weights, bias, chosen, val_spearman, val_r2, index, "ridge", runs, num_val,
                      tried)


def _held_out_scores(predicted: np.ndarray, actual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spearman's rho and R^2 per column; NaN where the held-out outputs are constant."""
    rho = spearman(predicted, actual)[0]
    sst = ((actual - actual.mean(axis=0)) ** 2).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(sst > 0, 1.0 - ((actual - predicted) ** 2).sum(axis=0) / sst, np.nan)
    return rho, r2


# --------------------------------------------------------------------------------------------
# Lasso through scikit-learn, one target at a time.


def _lasso(masks, targets, index, penalty, split, grid, working_bytes, progress) -> Datamodels:
    try:
        from sklearn.linear_model import Lasso, lasso_path
    except ImportError as e:
        raise AttributionError("the lasso fit needs scikit-learn (pip install scikit-learn)") from e

    runs, m = masks.shape[0], targets.shape[1]
    x = masks.astype(np.float64)
    weights = np.empty((m, masks.shape[1]), np.float32)
    bias, chosen = np.empty(m), np.empty(m)
    val_spearman, val_r2 = np.full(m, np.nan), np.full(m, np.nan)
    num_steps = 0 if split is None else (LASSO_STEPS if grid is None else len(grid))
    tried = np.zeros((m, num_steps))
    if split is not None:
        fit_rows, val_rows = split
        x_mean = x[fit_rows].mean(axis=0)
        x_fit, x_val = x[fit_rows] - x_mean, x[val_rows] - x_mean
    columns = range(m)
    for j in progress(columns) if progress else columns:
        y = targets[:, j]
        if split is None:
            chosen[j] = penalty
        else:
            y_fit = y[fit_rows] - y[fit_rows].mean()
            if grid is None:
                top = np.abs(x_fit.T @ y_fit).max() / len(fit_rows)
                alphas = top * np.logspace(0, np.log10(LASSO_EPS), LASSO_STEPS) if top > 0 else (
                    np.full(LASSO_STEPS, 1.0))
            else:
                alphas = np.asarray(grid, np.float64)
            alphas, coefs, _ = lasso_path(x_fit, y_fit, alphas=alphas)
            predicted = y[fit_rows].mean() + x_val @ coefs  # [R_val, steps]
            mse = ((predicted - y[val_rows, None]) ** 2).mean(axis=0)
            best = int(np.argmin(mse))
            chosen[j], tried[j] = alphas[best], alphas
            rho, r2 = _held_out_scores(predicted[:, best : best + 1], y[val_rows, None])
            val_spearman[j], val_r2[j] = rho[0], r2[0]
        model = Lasso(alpha=chosen[j], fit_intercept=True).fit(x, y)
        weights[j], bias[j] = model.coef_, model.intercept_
    return Datamodels(weights, bias, chosen, val_spearman, val_r2, index, "lasso", runs,
                      0 if split is None else len(split[1]), tried)
