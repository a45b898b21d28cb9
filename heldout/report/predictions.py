"""The label most runs predicted for each training example they held out, from a predictions
store.

A predictions store is a zarr v3 group (written by the predictions command) with arrays
``correct`` bool [R, N], ``prediction`` int32 [R, N] (the argmax class), ``label`` int64 [N],
``index`` int64 [N] (each column's position in the split), ``mask`` bool [R, n_train] (the run's
subset, in dataset order), ``completed`` bool [R], ``run_id`` int64 [R], ``subset_ratio``
float64 [R], and the group attribute ``split``. Only completed runs count. The aux arrays record
only whether a prediction was correct, so the predicted label of a mislabeled example needs this
store.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import numpy as np

from heldout.errors import ReportError
from heldout.npzio import require

COLUMN_BLOCK = 4096
STORE_ARRAYS = ("correct", "prediction", "label", "index", "mask", "completed", "run_id",
                "subset_ratio")


@dataclasses.dataclass(frozen=True)
class HeldOutPredictions:
    """Per training example, the predictions of the runs that held it out.

    Attributes:
      majority: int64 [n_train], the class predicted most often by those runs (ties: the
        smaller class); -1 where no completed run held the example out.
      share: float64 [n_train], the fraction of those runs predicting `majority`; NaN where
        no run held it out.
      count_out: int64 [n_train], completed runs that held the example out.
      num_runs: completed runs in the store.
      source: the store's path.
    """

    majority: np.ndarray
    share: np.ndarray
    count_out: np.ndarray
    num_runs: int
    source: str


def read_predictions(path: str | os.PathLike, train_labels: np.ndarray,
                     accumulators=()) -> HeldOutPredictions:
    """Reads a train-split predictions store and counts each example's held-out predictions.

    Args:
      path: the store (a zarr v3 group directory), read with ``zarr.open_group(mode="r")``.
      train_labels: int64 [n_train], the dataset's train labels, checked against ``label``.
      accumulators: the experiment's `heldout.estimate.RatioAccumulator` s; where one kept the
        runs' masks, the store's runs of the same name (``<ratio>/<run_id>``) must have the
        same subsets.

    Raises:
      ReportError: not a zarr group, missing or malformed arrays, another split, other
        sizes or labels, no completed run, or subsets that differ from the experiment's runs.
    """
    import zarr

    path = os.fspath(path)
    try:
        group = zarr.open_group(path, mode="r")
    except Exception as e:  # zarr raises several types for a missing or foreign directory.
        raise ReportError(f"{path}: not a readable zarr group ({e})") from e
    split = group.attrs.get("split")
    if split != "train":
        raise ReportError(f"{path}: attribute 'split' is {split!r}; the held-out "
                               "predictions need the store of the 'train' split")
    n_train = len(train_labels)
    check = functools.partial(require, group, source=path, sizes={"n_train": n_train},
                              what=f"a predictions store (arrays {list(STORE_ARRAYS)})",
                              error=ReportError)
    for key, kind, shape in (("completed", "b", ("runs",)),
                             ("prediction", "iu", ("runs", "n_train")),
                             ("label", "iu", ("n_train",)), ("index", "iu", ("n_train",)),
                             ("mask", "b", ("runs", "n_train")), ("run_id", "iu", ("runs",)),
                             ("subset_ratio", "f", ("runs",))):
        check(key, kind, shape)  # zarr arrays: dtype and shape only, nothing read yet
    completed = np.asarray(group["completed"][:], bool)
    index = np.asarray(group["index"][:], np.int64)
    if not np.array_equal(np.sort(index), np.arange(n_train)):
        raise ReportError(f"{path}: array 'index' is not a permutation of 0..{n_train - 1}")
    label = np.asarray(group["label"][:], np.int64)
    bad = int(np.sum(label != train_labels[index]))
    if bad:
        raise ReportError(f"{path}: array 'label' differs from the dataset's train labels "
                               f"at {bad} of {n_train} examples: another dataset or order")
    rows = np.flatnonzero(completed)
    if not len(rows):
        raise ReportError(f"{path}: no completed run")
    mask = np.asarray(group["mask"][:], bool)[rows]
    _check_masks(path, mask, np.asarray(group["run_id"][:])[rows],
                 np.asarray(group["subset_ratio"][:])[rows], accumulators)
    prediction = group["prediction"]
    majority = np.full(n_train, -1, np.int64)
    share = np.full(n_train, np.nan)
    count_out = np.zeros(n_train, np.int64)
    for c0 in range(0, n_train, COLUMN_BLOCK):
        cols = index[c0:c0 + COLUMN_BLOCK]
        pred = np.asarray(prediction[:, c0:c0 + COLUMN_BLOCK], np.int64)[rows]
        held = ~mask[:, cols]
        classes = int(pred.max(initial=0)) + 1
        counts = np.zeros((len(cols), classes), np.int64)
        r, c = np.nonzero(held)
        np.add.at(counts, (c, pred[r, c]), 1)
        total = counts.sum(axis=1)
        best = counts.argmax(axis=1)
        defined = total > 0
        count_out[cols] = total
        majority[cols] = np.where(defined, best, -1)
        with np.errstate(invalid="ignore", divide="ignore"):
            share[cols] = np.where(defined, counts.max(axis=1) / np.maximum(total, 1), np.nan)
    return HeldOutPredictions(majority, share, count_out, len(rows), path)


def _check_masks(path: str, mask: np.ndarray, run_ids: np.ndarray, ratios: np.ndarray,
                 accumulators) -> None:
    for acc in accumulators:
        if not acc.keep_runs:
            continue
        names = {name: r for r, name in enumerate(acc.run_names)}
        bits = None
        for row, (run_id, ratio) in enumerate(zip(run_ids, ratios, strict=True)):
            if not np.isclose(ratio, acc.subset_ratio):
                continue
            name = next((n for n in names if n.endswith(f"/{int(run_id)}")), None)
            if name is None:
                continue
            bits = acc.mask_bits if bits is None else bits
            expected = np.unpackbits(bits[names[name]], bitorder="little")[:acc.num_train]
            if not np.array_equal(expected.astype(bool), mask[row]):
                raise ReportError(
                    f"{path}: array 'mask' of run {name} differs from that run's subset in its "
                    "aux arrays: a store of another experiment"
                )
