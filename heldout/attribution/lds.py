"""The linear datamodeling score (LDS): how well an attribution predicts retrained models.

Park, Georgiev, Ilyas, Leclerc & Madry, *TRAK: Attributing Model Behavior at Scale* (ICML
2023), Sec. 2, Definition 2.3: given attribution scores ``tau`` [n_train, n_test], evaluation
subsets ``S_1..S_R`` (here the runs' masks ``M`` [R, n_train]) and the outputs ``f`` [R, n_test]
of the models trained on them, the prediction of run r for test example j is the sum of the
scores of its training subset, ``(M tau)[r, j]``, and

    LDS_j = Spearman( (M tau)[:, j], f[:, j] )   over the R runs,

the LDS being the mean over test examples. TRAK evaluates ``f`` = ``z_y - logsumexp_{y' != y}
z_y'`` (the store's ``logit_confidence``), the datamodels paper the margin ``z_y - max_{y' != y}
z_y'`` (``margin``). dattri 0.3.0 implements the same definition as ``dattri.metric.lds``.

Here the predictions are one matrix product per tile of test examples (`lds`), ranked with
ties averaged; undefined scores (NaN, e.g. an influence whose count is zero) count as 0; a test
example whose output or prediction is the same in every run has no rank correlation and gets
NaN, counted in the result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

import numpy as np

from heldout.attribution.arrays import (
    DEFAULT_WORKING_BYTES,
    MaskBlocks,
    blocks,
    check_masks,
    check_outputs,
)
from heldout.attribution.spearman import spearman
from heldout.errors import AttributionError

#: Fewest runs a Spearman correlation with a p-value needs.
MIN_RUNS = 3


@dataclasses.dataclass(frozen=True)
class LDSSummary:
    """The mean LDS over test examples with a confidence interval.

    Attributes:
      mean: mean of the defined per-test-example LDS.
      low, high: the interval ``mean -/+ t_{(1 + confidence) / 2, n - 1} sd / sqrt(n)`` over the
        n defined test examples (Student's t, sample standard deviation).
      confidence: e.g. 0.95.
      num_defined: test examples with a defined LDS; num_nan: those without.
    """

    mean: float
    low: float
    high: float
    confidence: float
    num_defined: int
    num_nan: int


def summarize(values: np.ndarray, confidence: float = 0.95) -> LDSSummary:
    """Mean and confidence interval of per-test-example LDS values, NaN left out.

    Raises:
      AttributionError: fewer than 2 defined values (no interval).
    """
    from scipy.special import stdtrit

    values = np.asarray(values, np.float64)
    defined = values[~np.isnan(values)]
    n = len(defined)
    if n < 2:
        raise AttributionError(f"an interval over test examples needs at least 2 with a defined "
                               f"LDS, found {n} of {len(values)}")
    mean = float(defined.mean())
    half = float(stdtrit(n - 1, 0.5 + confidence / 2) * defined.std(ddof=1) / np.sqrt(n))
    return LDSSummary(mean, mean - half, mean + half, confidence, n, len(values) - n)


@dataclasses.dataclass(frozen=True)
class LDSResult:
    """Per-test-example LDS (`lds`).

    Attributes:
      lds: float64 [n_test], Spearman's rho of prediction and output over the runs; NaN where
        either is constant.
      p_value: float64 [n_test], two-sided (Student's t, R - 2 degrees of freedom); NaN where
        `lds` is.
      constant_output: bool [n_test], the output is the same in every run.
      constant_prediction: bool [n_test], ``(M tau)[:, j]`` is the same in every run (e.g. every
        score of the test example is 0 or NaN).
      num_runs: R.
    """

    lds: np.ndarray
    p_value: np.ndarray
    constant_output: np.ndarray
    constant_prediction: np.ndarray
    num_runs: int

    def summary(self, confidence: float = 0.95) -> LDSSummary:
        """`summarize` of `lds`."""
        return summarize(self.lds, confidence)


def lds(
    scores: np.ndarray,
    masks: np.ndarray,
    outputs: np.ndarray,
    *,
    dtype=np.float64,
    working_bytes: int = DEFAULT_WORKING_BYTES,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> LDSResult:
    """The LDS of attribution scores against runs (Park et al. 2023, Definition 2.3).

    Args:
      scores: float [n_train, n_test], ``scores[i, j]``: the attribution of training example i
        to test example j (TRAK's and dattri's layout; pass ``influence.T`` for a
        `heldout estimate` influence [n_test, n_train]). Any array-like that slices (a memmap
        too); NaN counts as 0.
      masks: bool [R, n_train], the evaluation runs' training subsets.
      outputs: float [R, n_test], the evaluation runs' outputs (e.g. margins).
      dtype: float type of the predictions ``M tau`` (float64 by default; float32 halves the
        time of the product, with rounding that can reorder near ties).
      working_bytes: bound on the memory used besides the inputs.
      progress: optional wrapper reporting progress over the tiles of test examples.

    Returns:
      `LDSResult`.

    Raises:
      AttributionError: shapes that do not fit, fewer than 3 runs, infinite scores, or NaN or
        infinite outputs.
    """
    masks = check_masks(masks)
    runs, n_train = masks.shape
    outputs = check_outputs(outputs, runs)
    if not (hasattr(scores, "shape") and hasattr(scores, "dtype")):
        scores = np.asarray(scores)
    n_test = outputs.shape[1]
    if tuple(scores.shape) != (n_train, n_test):
        raise AttributionError(f"scores: expected [n_train={n_train}, n_test={n_test}] (the "
                               f"masks' width and the outputs' examples), found "
                               f"{list(scores.shape)}")
    if runs < MIN_RUNS:
        raise AttributionError(f"the LDS is a rank correlation over runs: it needs at least "
                               f"{MIN_RUNS}, found {runs}")
    dtype = np.dtype(dtype)
    # Per test example: its score column, its prediction and about eight run-length arrays
    # (ranks, sort order) in float64; the mask blocks take the other half of the budget.
    width = max(1, working_bytes // 2 // (dtype.itemsize * n_train + 8 * 8 * runs))
    tiles = blocks(n_test, width)
    mask_blocks = MaskBlocks(masks, dtype, working_bytes // 2)
    result = LDSResult(np.empty(n_test), np.empty(n_test), np.empty(n_test, bool),
                       np.empty(n_test, bool), runs)
    for j0, j1 in progress(tiles) if progress else tiles:
        tau = np.array(scores[:, j0:j1], dtype=dtype)
        tau[np.isnan(tau)] = 0
        if not np.isfinite(tau).all():
            raise AttributionError(f"scores: infinite values for test examples {j0}..{j1 - 1}")
        predicted = np.zeros((runs, j1 - j0), dtype)
        for c0, c1, block in mask_blocks:
            predicted += block @ tau[c0:c1]
        rho, p, pred_constant, out_constant = spearman(predicted, outputs[:, j0:j1])
        result.lds[j0:j1], result.p_value[j0:j1] = rho, p
        result.constant_prediction[j0:j1] = pred_constant
        result.constant_output[j0:j1] = out_constant
    return result
