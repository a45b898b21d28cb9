"""The heldout estimator on any output: mean with minus mean without, Welch standard errors.

Feldman & Zhang, *What Neural Networks Memorize and Why* (NeurIPS 2020), Sec. 3 and Eq. 3,
estimate the influence of training example i on test example j from runs on random subsets as
the mean correctness of the runs that trained on i minus that of the runs that did not. The
same difference of means applies to any per-run output ``f`` [R, n_test] (a margin, a logit
confidence, a correctness):

    influence[j, i] = mean_{r: M[r,i]} f[r, j] - mean_{r: not M[r,i]} f[r, j]
    stderr[j, i]    = sqrt(s_in^2 / count_in[i] + s_out^2 / count_out[i])

with ``s_in^2``, ``s_out^2`` the two groups' sample variances (ddof 1): Welch's standard error
of a difference of means. Units are the output's, the sign that of the change when the example
is included, as for the correctness influence of `heldout.estimate` (on a 0/1 correctness the
influence is exactly that estimator's). With independent inclusion this difference is also the
one-feature slope of a linear datamodel (Ilyas et al. 2022), so influence and datamodel
weights (`heldout.attribution.fit_datamodels`) estimate the same effect.

Sums are formed on outputs centred per test example (the difference of means does not change)
as float64 products ``f^T M`` and ``(f^2)^T M`` per tile of test examples.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from heldout.attribution.arrays import (
    DEFAULT_WORKING_BYTES,
    MaskBlocks,
    blocks,
    check_masks,
    check_outputs,
)
from heldout.errors import AttributionError


@dataclasses.dataclass(frozen=True)
class OutputInfluence:
    """The heldout estimator on an output (`output_influence`).

    Attributes:
      influence: float32 [n_test, n_train], mean with - mean without (the output's units); NaN
        where ``count_in`` or ``count_out`` is 0.
      stderr: float32 [n_test, n_train] Welch standard error, or None when not asked; NaN where
        ``count_in`` or ``count_out`` is below 2 (no sample variance).
      count_in, count_out: int64 [n_train], runs with / without each training example.
    """

    influence: np.ndarray
    stderr: np.ndarray | None
    count_in: np.ndarray
    count_out: np.ndarray


def _tiles(masks: np.ndarray, outputs: np.ndarray, with_stderr: bool, working_bytes: int,
           progress) -> Iterator[tuple[int, int, np.ndarray, np.ndarray | None]]:
    """Yields ``(j0, j1, influence, stderr)`` float64 [j1 - j0, n_train] per tile of test
    examples (stderr None unless asked)."""
    runs, n_train = masks.shape
    count_in = masks.sum(axis=0).astype(np.float64)
    count_out = runs - count_in
    with np.errstate(divide="ignore"):
        inv_in = np.where(count_in > 0, 1.0 / count_in, np.nan)
        inv_out = np.where(count_out > 0, 1.0 / count_out, np.nan)
        # Sample variances: 1 / (count - 1) where count >= 2.
        inv_in1 = np.where(count_in > 1, 1.0 / (count_in - 1), np.nan)
        inv_out1 = np.where(count_out > 1, 1.0 / (count_out - 1), np.nan)
    centred = outputs - outputs.mean(axis=0)
    squares = centred**2
    total_squares = squares.sum(axis=0)
    # A tile's sums, means and variances: about six float64 [rows, n_train] arrays.
    rows = max(1, working_bytes // 2 // (6 * 8 * max(n_train, 1)))
    mask_blocks = MaskBlocks(masks, np.float64, working_bytes // 2)
    tiles = blocks(outputs.shape[1], rows)
    for j0, j1 in progress(tiles) if progress else tiles:
        sum_in = np.empty((j1 - j0, n_train))
        sq_in = np.empty((j1 - j0, n_train)) if with_stderr else None
        for c0, c1, block in mask_blocks:
            sum_in[:, c0:c1] = centred[:, j0:j1].T @ block
            if with_stderr:
                sq_in[:, c0:c1] = squares[:, j0:j1].T @ block
        # The centred outputs sum to 0 over the runs: the sum without is -sum_in.
        mean_in, mean_out = sum_in * inv_in, -sum_in * inv_out
        stderr = None
        if with_stderr:
            var_in = (sq_in - sum_in * mean_in) * inv_in1
            sq_out = total_squares[j0:j1, None] - sq_in
            var_out = (sq_out + sum_in * mean_out) * inv_out1
            stderr = np.sqrt(np.maximum(var_in, 0) * inv_in + np.maximum(var_out, 0) * inv_out)
        yield j0, j1, mean_in - mean_out, stderr


def output_influence(
    masks: np.ndarray,
    outputs: np.ndarray,
    *,
    stderr: bool = True,
    working_bytes: int = DEFAULT_WORKING_BYTES,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> OutputInfluence:
    """The heldout influence of every training example on every example's output.

    Args:
      masks: bool [R, n_train], the runs' training subsets.
      outputs: float [R, n_test], one output per run and example (bool/int are cast).
      stderr: also compute the Welch standard errors.
      working_bytes: bound on the memory used besides the inputs and the result.
      progress: optional wrapper reporting progress over the tiles of test examples.

    Returns:
      `OutputInfluence` (float32 [n_test, n_train] matrices).

    Raises:
      AttributionError: shapes that do not fit, or NaN / infinite outputs.
    """
    masks = check_masks(masks)
    outputs = check_outputs(outputs, masks.shape[0])
    shape = (outputs.shape[1], masks.shape[1])
    influence = np.empty(shape, np.float32)
    errors = np.empty(shape, np.float32) if stderr else None
    for j0, j1, value, se in _tiles(masks, outputs, stderr, working_bytes, progress):
        influence[j0:j1] = value
        if stderr:
            errors[j0:j1] = se
    count_in = masks.sum(axis=0).astype(np.int64)
    return OutputInfluence(influence, errors, count_in, masks.shape[0] - count_in)


def output_influence_top_k(
    masks: np.ndarray,
    outputs: np.ndarray,
    k: int,
    *,
    working_bytes: int = DEFAULT_WORKING_BYTES,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The k training examples of largest influence on each example's output, without the
    matrix: each tile of test examples holds every training example, so its rows are ranked
    whole.

    Args:
      masks, outputs, working_bytes, progress: as `output_influence`.
      k: entries per test example (>= 1).

    Returns:
      (index, influence, stderr): int64 [n_test, k] training positions, float32 [n_test, k]
      their influence and Welch standard error, by influence descending (ties: smaller index
      first), as `heldout.estimate.top_k_influence` orders them. NaN is never ranked; rows with
      fewer than k defined entries are padded with index -1 and NaN.

    Raises:
      AttributionError: k < 1, or as `output_influence`.
    """
    if k < 1:
        raise AttributionError(f"k must be >= 1, got {k}")
    masks = check_masks(masks)
    outputs = check_outputs(outputs, masks.shape[0])
    n_test, n_train = outputs.shape[1], masks.shape[1]
    k = int(k)
    index = np.full((n_test, k), -1, np.int64)
    values = np.full((n_test, k), np.nan, np.float32)
    errors = np.full((n_test, k), np.nan, np.float32)
    for j0, j1, value, se in _tiles(masks, outputs, True, working_bytes, progress):
        ranked = np.where(np.isnan(value), -np.inf, value)
        kk = min(k, n_train)
        # The k-th largest value per row; every entry at or above it is a candidate, ties
        # then broken by index.
        kth = -np.partition(-ranked, kk - 1, axis=1)[:, kk - 1]
        r, c = np.nonzero(ranked >= kth[:, None])
        order = np.lexsort((c, -ranked[r, c], r))
        r, c = r[order], c[order]
        starts = np.searchsorted(r, np.arange(j1 - j0))
        take = starts[:, None] + np.arange(kk)  # every row has at least kk candidates
        rows, cols = r[take], c[take]
        defined = np.isfinite(ranked[rows, cols])
        index[j0:j1, :kk] = np.where(defined, cols, -1)
        values[j0:j1, :kk] = np.where(defined, value[rows, cols], np.nan)
        errors[j0:j1, :kk] = np.where(defined, se[rows, cols], np.nan)
    return index, values, errors
