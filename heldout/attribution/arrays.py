"""Input checks and the tiling shared by the attribution estimators (pure numpy).

Every estimator here reads the same two things: the runs' subset masks ``M`` bool
[R, n_train] (``M[r, i]``: run r trained on training example i) and an output per run and
evaluated example ``f`` float [R, n_test] (a margin, a logit confidence, a correctness). Each
forms one matrix product with ``M`` on one side (``M tau``, ``M^T f``, ``M M^T``), done block by
block over the training examples (`MaskBlocks`) so that the float copy of the masks never
exceeds a working-set bound.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from heldout.errors import AttributionError

#: Default bound on the memory an estimator uses besides its inputs and result.
DEFAULT_WORKING_BYTES = 256 * 2**20


def check_masks(masks: np.ndarray, what: str = "masks") -> np.ndarray:
    """The subset masks as a bool [R, n_train] array (0/1 integers are accepted).

    Raises:
      AttributionError: not 2-D, or values other than 0 and 1.
    """
    masks = np.asarray(masks)
    if masks.ndim != 2:
        raise AttributionError(f"{what}: expected bool [R, n_train], found {masks.dtype} "
                               f"{list(masks.shape)}")
    if masks.dtype != bool:
        if not np.isin(masks, (0, 1)).all():
            raise AttributionError(f"{what}: expected 0/1 subset masks, found other values")
        masks = masks.astype(bool)
    return masks


def check_outputs(outputs: np.ndarray, num_runs: int, what: str = "outputs") -> np.ndarray:
    """The per-run outputs as a float64 [R, n] array (bool and integer outputs are cast).

    Raises:
      AttributionError: not 2-D with `num_runs` rows, or a NaN / infinite value (named by run
        row and example).
    """
    outputs = np.asarray(outputs)
    if outputs.ndim != 2 or outputs.shape[0] != num_runs:
        raise AttributionError(f"{what}: expected float [R={num_runs}, n], found {outputs.dtype} "
                               f"{list(outputs.shape)}")
    outputs = outputs.astype(np.float64)
    bad = ~np.isfinite(outputs)
    if bad.any():
        r, j = np.argwhere(bad)[0]
        raise AttributionError(f"{what}: {int(bad.sum())} NaN or infinite values (first: run row "
                               f"{r}, example {j}: {outputs[r, j]})")
    return outputs


def blocks(n: int, width: int) -> list[tuple[int, int]]:
    """``[(0, width), (width, 2 width), ..., (., n)]``: the tiles of a range of n."""
    width = max(1, int(width))
    return [(start, min(start + width, n)) for start in range(0, n, width)]


class MaskBlocks:
    """The masks as float blocks of training-example columns, ``M[:, c0:c1]``.

    The blocks are as wide as `max_bytes` allows; when one block covers every column, it is
    converted once and kept (every pass then reuses it).

    Args:
      masks: bool [R, n_train].
      dtype: float dtype of the blocks (0 and 1 are exact in any float type, so float32 products
        of masks with masks are exact integer counts below 2**24).
      max_bytes: bound on one block's size.
    """

    def __init__(self, masks: np.ndarray, dtype=np.float64, max_bytes: int = DEFAULT_WORKING_BYTES):
        self.masks = masks
        self.dtype = np.dtype(dtype)
        runs, n = masks.shape
        width = max(64, int(max_bytes) // max(1, self.dtype.itemsize * runs))
        self.blocks = blocks(n, min(width, max(n, 1)))
        self._whole = masks.astype(self.dtype) if len(self.blocks) == 1 else None

    def __iter__(self) -> Iterator[tuple[int, int, np.ndarray]]:
        """Yields ``(c0, c1, block)``, block float [R, c1 - c0]."""
        for c0, c1 in self.blocks:
            if self._whole is not None:
                yield c0, c1, self._whole
            else:
                yield c0, c1, self.masks[:, c0:c1].astype(self.dtype)
