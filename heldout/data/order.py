"""Example order: TFDS order (the released CIFAR runs') versus the original CIFAR order.

The released CIFAR runs index training examples by their position in TFDS ``cifar10:3.0.2`` /
``cifar100:3.0.2`` (``shuffle_files=False``), while the published C-scores
(``cifar10-cscores-orig-order.npz``, ``cifar100-cscores-orig-order.npz``: keys ``labels``
int64 [50000] and ``scores`` float64 [50000], Jiang et al., ICML 2021, project page) are in the
ORIGINAL order of the CIFAR python files. TFDS's CIFAR examples carry an ``id`` such as
``train_16399``: the example's position in the original files. The permutation between the two
orders is built from these ids; `checked_tfds_order` moves a published file's scores into TFDS
order after checking its labels against the TFDS labels, and refuses on any mismatch (a silent
misalignment would corrupt every join). MNIST C-scores (``mnist-cscores.npy``, float64 [60000])
are already in TFDS order; they carry no labels, so only their length is checked. The files
themselves are read and checked by `heldout.published` (`read_scores_in_tfds_order`,
`load_published_scores`).

Pure numpy.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from heldout.errors import OrderError


def original_positions(ids: Sequence[str] | np.ndarray, split: str = "train") -> np.ndarray:
    """int64 [n]: the original CIFAR position of each example, in TFDS order.

    ``original_positions(ids)[i]`` is the position in the original CIFAR files of the example
    at TFDS position ``i``; it is a permutation of ``0..n-1``, so it also maps TFDS order to
    original order: ``values_tfds = values_orig[original_positions(ids)]``.

    Args:
      ids: str [n], the TFDS ``id`` feature in TFDS order, e.g. ``train_16399`` (bytes are
        decoded as UTF-8).
      split: the ids' prefix, ``train`` or ``test``.

    Raises:
      OrderError: an id that is not ``<split>_<number>`` (naming the first ones), or numbers
        that are not a permutation of ``0..n-1``.
    """
    values = [i.decode() if isinstance(i, bytes) else str(i) for i in np.asarray(ids).tolist()]
    pattern = re.compile(rf"^{re.escape(split)}_(\d+)$")
    matches = [pattern.match(v) for v in values]
    bad = [(pos, v) for pos, (v, m) in enumerate(zip(values, matches, strict=True)) if not m]
    if bad:
        raise OrderError(
            f"{len(bad)} of {len(values)} ids are not '{split}_<position>', e.g. "
            + ", ".join(f"position {p}: {v!r}" for p, v in bad[:3])
            + " (the original order is only known for TFDS CIFAR ids such as 'train_16399')"
        )
    positions = np.asarray([int(m.group(1)) for m in matches], dtype=np.int64)
    n = len(positions)
    counts = np.bincount(positions[positions < n], minlength=n)
    if (positions >= n).any() or (counts != 1).any():
        raise OrderError(
            f"the {n} ids are not a permutation of {split}_0..{split}_{n - 1}: "
            f"{int((positions >= n).sum())} out of range, {int((counts > 1).sum())} repeated, "
            f"{int((counts == 0).sum())} missing"
        )
    return positions


def tfds_positions(ids: Sequence[str] | np.ndarray, split: str = "train") -> np.ndarray:
    """int64 [n]: the TFDS position of each example, in original order (inverse permutation of
    `original_positions`): ``values_orig = values_tfds[tfds_positions(ids)]``."""
    return np.argsort(original_positions(ids, split)).astype(np.int64)


def _reorder(values: np.ndarray, perm: np.ndarray) -> np.ndarray:
    values = np.asarray(values)
    if len(values) != len(perm):
        raise OrderError(f"{len(values)} values for {len(perm)} ids")
    return values[perm]


def to_tfds_order(values_original: np.ndarray, ids, split: str = "train") -> np.ndarray:
    """Reorders per-example values [n, ...] from original order into TFDS order.

    Raises:
      OrderError: bad ids, or `values_original` not of length n.
    """
    return _reorder(values_original, original_positions(ids, split))


def to_original_order(values_tfds: np.ndarray, ids, split: str = "train") -> np.ndarray:
    """Reorders per-example values [n, ...] from TFDS order into original order.

    Raises:
      OrderError: bad ids, or `values_tfds` not of length n.
    """
    return _reorder(values_tfds, tfds_positions(ids, split))


def checked_tfds_order(
    values: np.ndarray,
    labels_original: np.ndarray | None,
    tfds_labels: np.ndarray,
    ids: Sequence[str] | np.ndarray | None = None,
    split: str = "train",
    source: str = "values",
) -> np.ndarray:
    """Per-example values [n, ...] in TFDS order, refused unless their labels agree with TFDS.

    The reordering and label check of a published score file (read and checked for its format
    by `heldout.published.read_scores_in_tfds_order`).

    Args:
      values: [n, ...], in the ORIGINAL order when `labels_original` is given, else already in
        TFDS order (MNIST's C-scores, which carry no labels: only the length is checked).
      labels_original: int [n], the labels stored with `values` (original order), or None.
      tfds_labels: int [n], the dataset's labels in TFDS order.
      ids: str [n], the TFDS ``id`` feature in TFDS order (needed with `labels_original`).
      split: the ids' prefix.
      source: the file, named in the messages.

    Returns:
      `values` in TFDS order.

    Raises:
      OrderError: lengths differ, ids missing or not a permutation, or the labels, reordered,
        differ from `tfds_labels` (with the number of mismatches and the first positions).
    """
    values = np.asarray(values)
    tfds_labels = np.asarray(tfds_labels, dtype=np.int64)
    if len(values) != len(tfds_labels):
        raise OrderError(f"{source}: {len(values)} scores but the dataset has "
                         f"{len(tfds_labels)} examples")
    if labels_original is None:
        return values
    if ids is None:
        raise OrderError(f"{source}: scores in original order need the TFDS ids to be reordered")
    perm = original_positions(ids, split)
    if len(perm) != len(tfds_labels):
        raise OrderError(f"{len(perm)} ids for {len(tfds_labels)} labels")
    reordered = np.asarray(labels_original)[perm]
    differ = np.flatnonzero(reordered != tfds_labels)
    if len(differ):
        first = ", ".join(
            f"TFDS position {i}: file {int(reordered[i])}, dataset {int(tfds_labels[i])}"
            for i in differ[:3]
        )
        raise OrderError(
            f"{source}: refused: after reordering by the TFDS ids, {len(differ)} of "
            f"{len(tfds_labels)} labels differ from the dataset's ({first}); the file belongs "
            "to another dataset or order"
        )
    return values[perm]
