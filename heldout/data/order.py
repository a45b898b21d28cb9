"""Example order: TFDS order (the released CIFAR runs') versus the original CIFAR order.

The released CIFAR runs index training examples by their position in TFDS ``cifar10:3.0.2`` /
``cifar100:3.0.2`` (``shuffle_files=False``), while the published C-scores
(``cifar10-cscores-orig-order.npz``, ``cifar100-cscores-orig-order.npz``: keys ``labels``
int64 [50000] and ``scores`` float64 [50000], Jiang et al., ICML 2021, project page) are in the
ORIGINAL order of the CIFAR python files. TFDS's CIFAR examples carry an ``id`` such as
``train_16399``: the example's position in the original files. The permutation between the two
orders is built from these ids; reading a published file into TFDS order checks its labels
against the TFDS labels and refuses on any mismatch (a silent misalignment would corrupt every
join). MNIST C-scores (``mnist-cscores.npy``, float64 [60000]) are already in TFDS order; they
carry no labels, so only their length is checked.

Pure numpy, except `load_published_scores`, which reads TFDS.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import numpy as np

from heldout.errors import HeldoutError
from heldout.npzio import NpzError, load_npz


class OrderError(HeldoutError, ValueError):
    """Ids that do not give a permutation, or scores whose labels disagree with the dataset."""


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


def read_scores_in_tfds_order(
    path: str | os.PathLike,
    tfds_labels: np.ndarray,
    ids: Sequence[str] | np.ndarray | None = None,
    split: str = "train",
    key: str = "scores",
) -> np.ndarray:
    """Reads published per-example scores and returns them in TFDS order, checked by label.

    Two formats: an ``.npz`` with ``labels`` and `key` in the ORIGINAL CIFAR order (CIFAR
    C-scores; `ids` required), and an ``.npy`` array already in TFDS order (MNIST C-scores;
    only its length can be checked).

    Args:
      path: the published file.
      tfds_labels: int [n], the dataset's labels in TFDS order.
      ids: str [n], the TFDS ``id`` feature in TFDS order (for ``.npz`` files).
      split: the ids' prefix.
      key: the scores' key in an ``.npz``.

    Returns:
      float64 [n]: the scores in TFDS order.

    Raises:
      OrderError: lengths differ, or the file's labels, reordered, differ from `tfds_labels`
        (with the number of mismatches and the first positions): nothing is returned.
      NpzError: unreadable file or missing key.
    """
    path = os.fspath(path)
    tfds_labels = np.asarray(tfds_labels, dtype=np.int64)
    if path.endswith(".npy"):
        try:
            scores = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise NpzError(f"{path}: unreadable .npy ({e})") from e
        if scores.shape != tfds_labels.shape:
            raise OrderError(f"{path}: {scores.shape[0] if scores.ndim else 0} scores but the "
                             f"dataset has {len(tfds_labels)} examples")
        return scores.astype(np.float64)
    arrays = load_npz(path)
    for name in ("labels", key):
        if name not in arrays:
            raise NpzError(f"{path}: no key {name!r}; found {sorted(arrays)}")
    labels, scores = arrays["labels"], arrays[key]
    if ids is None:
        raise OrderError(f"{path}: scores in original order need the TFDS ids to be reordered")
    if not len(labels) == len(scores) == len(tfds_labels):
        raise OrderError(
            f"{path}: {len(labels)} labels and {len(scores)} scores, but the dataset has "
            f"{len(tfds_labels)} examples"
        )
    perm = original_positions(ids, split)
    if len(perm) != len(tfds_labels):
        raise OrderError(f"{len(perm)} ids for {len(tfds_labels)} labels")
    reordered = labels[perm]
    differ = np.flatnonzero(reordered != tfds_labels)
    if len(differ):
        first = ", ".join(
            f"TFDS position {i}: file {int(reordered[i])}, dataset {int(tfds_labels[i])}"
            for i in differ[:3]
        )
        raise OrderError(
            f"{path}: refused: after reordering by the TFDS ids, {len(differ)} of "
            f"{len(tfds_labels)} labels differ from the dataset's ({first}); the file belongs "
            "to another dataset or order"
        )
    return scores[perm].astype(np.float64)


def load_published_scores(
    path: str | os.PathLike,
    dataset: str,
    data_dir: str | None = None,
    split: str = "train",
    key: str = "scores",
) -> np.ndarray:
    """`read_scores_in_tfds_order` with the labels and ids read from TFDS (images not decoded).

    Args:
      path: the published file.
      dataset: TFDS name with version, e.g. ``cifar100:3.0.2`` (or ``mnist:3.0.1`` for `.npy`).
      data_dir: TFDS data directory.
      split: the split the scores are for.
      key: the scores' key in an ``.npz``.

    Returns:
      float64 [n]: the scores in TFDS order.
    """
    from heldout.data.tfds import load_tfds

    data = load_tfds(dataset, (split,), data_dir, with_images=False)
    return read_scores_in_tfds_order(
        path, data.split_labels(split), data.ids.get(split), split, key
    )
