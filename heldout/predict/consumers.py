"""Readers of a predictions store: influence and memorization accumulators, the datamodels
layout.

- `accumulate_store`: a `heldout.estimate.RatioAccumulator` whose "test" side is the store's
  evaluation set (any dataset: a shifted test set, a new one), membership from the store's
  ``mask``; so `heldout.estimate.influence` gives the influence of each training example on each
  example of that set. It carries the dataset fingerprint of the runs and the store, which
  must agree.
- `to_datamodels`: ``masks.npy`` bool [M, n_train], ``margins.npy`` float16 [M, n],
  ``_completed.npy`` bool [M] (the layout of MadryLab's datamodels: one ``.npy`` per key, a
  row per model, ``_completed`` set last).
- `read_outputs`: one output and the masks of the completed runs (all, or one subset ratio),
  the input of `heldout.attribution` (LDS, datamodels, influence on a margin).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np

from heldout.atomic import atomic_path
from heldout.errors import StoreError
from heldout.experiment import Run, iter_aux_arrays
from heldout.predict.store import PredictionStore, open_store


def accumulate_store(
    store: str | os.PathLike | PredictionStore,
    ratio: str | float | None = None,
    runs: Sequence[Run] | None = None,
    keep_runs: bool = True,
):
    """An accumulator over a store's completed runs at one subset ratio.

    Args:
      store: a store path or an opened store.
      ratio: the subset ratio (default: the store's only one).
      runs: the experiment's runs, for the correctness on the training set (memorization) when
        the store's split is not ``train``: each store run's aux arrays (by ``<ratio>/<id>``),
        whose subset must equal the store's ``mask``. For a ``train`` store the store's own
        ``correct`` is used and `runs` is not needed.
      keep_runs: keep the runs' bits (influence needs them).

    Returns:
      `heldout.estimate.RatioAccumulator` with num_test = N, the store's examples:
      ``test_correct`` = the store's ``correct``, masks = the store's ``mask``. Its
      fingerprint (`store_fingerprint`) describes the axes of the estimate: for a store of
      the ``test`` split the runs' fingerprint (train and test splits; the store's own when
      the runs have none), for a store of another split only the training split's.

    Raises:
      StoreError: no completed run at the ratio, several ratios and none chosen, a store run
        missing from `runs` (required unless the store is of the ``train`` split), or a mask
        that differs from the run's aux arrays.
      FingerprintError: the runs' fingerprints differ, or the store's examples are not those
        the runs' fingerprint names for its split (another dataset, order or evaluation set).
    """
    from heldout.estimate import RatioAccumulator

    s = store if isinstance(store, PredictionStore) else open_store(store)
    split = s.attrs["split"]
    sel, ratio = _ratio_rows(s.path, s["subset_ratio"], ratio, one_ratio=True)
    names = [s.run_names[i] for i in sel]
    masks = np.asarray(s["mask"])[sel]
    evaluated = np.asarray(s["correct"])[sel]
    train_correct = evaluated if split == "train" else np.zeros_like(masks)
    fingerprints = []
    if runs is not None or split != "train":
        by_name = {run.name: run for run in runs or ()}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise StoreError(f"{s.path}: runs {missing[:3]} of the store are not in the "
                             "experiment given (needed for their training-set correctness "
                             "and dataset fingerprint)")
        reads = iter_aux_arrays([by_name[n] for n in names], num_train=masks.shape[1])
        for k, (run, aux) in enumerate(reads):
            if not np.array_equal(aux.subset_mask(), masks[k]):
                raise StoreError(f"{s.path}: the mask of run {run.name} differs from its subset "
                                 f"in {aux.source}; is the store of another experiment?")
            if split != "train":
                train_correct[k] = aux.train_correctness()
            fingerprints.append((aux.source, aux.fingerprint))
    fingerprint = store_fingerprint(s, fingerprints)
    acc = RatioAccumulator(masks.shape[1], evaluated.shape[1], keep_runs, float(ratio),
                           fingerprint, f"{s.path} and its runs" if fingerprint else "")
    acc.add_runs(masks, train_correct, evaluated, names)
    return acc


def store_fingerprint(store: PredictionStore, runs: Sequence[tuple[str, object]] = ()):
    """The dataset fingerprint of an estimate from a store: the runs' and the store's, which
    must agree.

    Args:
      store: an opened store (its ``label`` and ``dataset`` attributes give the fingerprint
        of its split).
      runs: (source, fingerprint or None) of the store's runs (their aux arrays).

    Returns:
      A `heldout.data.fingerprint.Fingerprint` for the estimate's axes (training set, and
      the store's examples as ``test``): the runs' (the store's when they have none),
      restricted to the ``train`` split when the store is not of the runs' ``test`` split (a
      store of the train split, or of another evaluation set of another size, which
      `heldout predict --no_cross_check` made on purpose); None when nothing remains.

    Raises:
      FingerprintError: two runs' fingerprints differ, or the store's split has the size of
        the runs' but other labels (another order, or another set of the same size: refused,
        since nothing tells them apart; one line naming both).
    """
    from heldout.data.fingerprint import Fingerprint, check_fingerprints, fingerprint_from_labels

    split = store.attrs["split"]
    own = fingerprint_from_labels(store.attrs["dataset"],
                                  {split: np.asarray(store["label"], np.int64)},
                                  store.attrs.get("dataset_version", ""))
    found = check_fingerprints(list(runs))  # the runs among themselves
    keep = ("train", "test") if split == "test" else ("train",)
    if found is not None and split in found.splits and found.split(split)[0] != len(
            store["label"]):  # another evaluation set (predict --no_cross_check): its
        keep = ("train",)     # examples are not the runs' split; the training set is kept
    elif found is not None:
        source = next(source for source, fp in runs if fp is not None)
        check_fingerprints([(f"{store.path} (its {split} split)", own), (source, found)])
    fingerprint = found or own
    splits = [k for k, name in enumerate(fingerprint.splits) if name in keep]
    if not splits:
        return None
    return Fingerprint(fingerprint.name, fingerprint.version,
                       tuple(fingerprint.splits[k] for k in splits),
                       tuple(fingerprint.sizes[k] for k in splits),
                       tuple(fingerprint.label_hashes[k] for k in splits))


def default_ratio(subset_ratio: np.ndarray) -> tuple[float, str]:
    """The subset ratio a store's consumers use when none is chosen: the ratio with the most
    completed runs; on a tie, the one nearest 0.5 (LiRA's shadow models each train on half the
    data, so members and non-members balance; Carlini et al. 2022), then the smaller.

    Args:
      subset_ratio: float [R'], the subset ratio of each completed run (at least one).

    Returns:
      (ratio, note): the ratio, and how it was chosen for messages: ``subset ratio 0.5``, or,
      when the store has several, ``subset ratio 0.5 (the store's ratio with the most completed
      runs, of 0.25, 0.5; `ratio` to choose)``.
    """
    ratios = np.asarray(subset_ratio, np.float64)
    available = sorted(set(ratios.tolist()))
    counts = {a: int(np.isclose(ratios, a).sum()) for a in available}
    best = max(available, key=lambda a: (counts[a], -abs(a - 0.5), -a))
    if len(available) == 1:
        return best, f"subset ratio {best:g}"
    return best, (f"subset ratio {best:g} (the store's ratio with the most completed runs, of "
                  f"{', '.join(f'{a:g}' for a in available)}; `ratio` to choose)")


def _ratio_rows(path: str, subset_ratio: np.ndarray, ratio: str | float | None, one_ratio: bool
                ) -> tuple[np.ndarray, float]:
    """The rows at subset ratio `ratio` of a store's runs (their ``subset_ratio``), and the
    ratio. None selects the only ratio when `one_ratio`, else `default_ratio`'s.

    Raises:
      StoreError: no completed run (at the ratio), or several ratios and none chosen when
        `one_ratio`.
    """
    ratios = np.asarray(subset_ratio, np.float64)
    available = sorted(set(ratios.tolist()))
    if ratio is None:
        if not available:
            raise StoreError(f"{path}: no completed runs")
        if not one_ratio:
            ratio, _ = default_ratio(ratios)
        elif len(available) != 1:
            raise StoreError(f"{path}: completed runs of subset ratios {available}; choose one "
                             "with `ratio`")
        else:
            ratio = available[0]
    sel = np.flatnonzero(np.isclose(ratios, float(ratio)))
    if not len(sel):
        raise StoreError(f"{path}: no completed runs at subset ratio {ratio}; it has "
                         f"{available}")
    return sel, float(ratio)


@dataclasses.dataclass(frozen=True)
class StoreOutputs:
    """One output of a store's completed runs (`read_outputs`).

    Attributes:
      path: the store.
      split: the evaluated split.
      output: the output read (``margin``, ``logit_confidence``, ``correct``).
      values: [R', N] the output (float32; bool for ``correct``).
      masks: bool [R', n_train], the runs' training subsets.
      run_names: ``<ratio>/<run_id>`` of the R' runs, in store order.
      ratio: the subset ratio of the runs (one: runs trained on subsets of another size are
        other models, and pooling them would tie each output to the subset's size).
      ratio_note: how the ratio was chosen, for messages (`default_ratio`).
      label: int64 [N], the split's labels.
      fingerprint: the split's dataset fingerprint (`heldout.data.fingerprint.Fingerprint`).
    """

    path: str
    split: str
    output: str
    values: np.ndarray
    masks: np.ndarray
    run_names: list[str]
    ratio: float
    label: np.ndarray
    fingerprint: object
    ratio_note: str = ""


def read_outputs(
    store: str | os.PathLike,
    output: str,
    ratio: str | float | None = None,
    not_split: str | None = None,
) -> StoreOutputs:
    """Reads one output and the masks of a store's completed runs (only those arrays).

    Args:
      store: the store path.
      output: ``margin``, ``logit_confidence`` or ``correct``.
      ratio: the subset ratio whose runs are read; None: the store's ratio with the most
        completed runs (`default_ratio`; runs of several ratios are never pooled).
      not_split: refuse a store of this split (``"train"``: the masks select its examples, so
        the outputs are not of held-out examples).

    Raises:
      StoreError: not a store, a store of `not_split`, without `output`, or without completed
        runs at `ratio`.
    """
    from heldout.data.fingerprint import fingerprint_from_labels

    s = open_store(store, names=("subset_ratio", "label", "mask", output))
    split = s.attrs["split"]
    if not_split is not None and split == not_split:
        raise StoreError(f"{s.path}: a store of the {split} split (its examples are the training "
                         "set the masks select); give a store of held-out examples, made by "
                         "`heldout predict --split test`")
    if output not in s or output not in s.attrs.get("outputs", [output]):
        raise StoreError(f"{s.path}: has no {output!r} array (outputs "
                         f"{s.attrs.get('outputs')}); make it with `heldout predict --outputs "
                         f"correct,{output}`")
    chosen = ratio is None
    sel, ratio = _ratio_rows(s.path, s["subset_ratio"], ratio, one_ratio=False)
    note = default_ratio(s["subset_ratio"])[1] if chosen else f"subset ratio {ratio:g}"
    label = np.asarray(s["label"], np.int64)
    return StoreOutputs(
        s.path, split, output, s[output][sel], np.asarray(s["mask"][sel], bool),
        [s.run_names[i] for i in sel], ratio, label,
        fingerprint_from_labels(s.attrs["dataset"], {split: label},
                                s.attrs.get("dataset_version", "")),
        note,
    )


def to_datamodels(store: str | os.PathLike, out_dir: str | os.PathLike) -> dict[str, str]:
    """Writes a store in the datamodels layout, every file atomically, ``_completed.npy`` last.

    Files (M = R, all the store's runs in store order; rows of runs not completed hold zeros
    and ``_completed`` False): ``masks.npy`` bool [M, n_train], ``margins.npy`` float16 [M, n]
    (the store's ``margin``), ``_completed.npy`` bool [M]. Read back with
    ``np.load(path, mmap_mode="r")``.

    Returns:
      key -> written path.

    Raises:
      StoreError: not a store, or a store without ``margin``.
    """
    import zarr

    from heldout.predict.store import read_attrs

    store, out_dir = os.fspath(store), os.fspath(out_dir)
    read_attrs(store)
    group = zarr.open_group(store, mode="r")
    if "margin" not in group:
        raise StoreError(f"{store}: has no margin array (made without the margin output)")
    os.makedirs(out_dir, exist_ok=True)
    done = np.asarray(group["completed"][...], bool)
    paths = {}
    for key, name, dtype in (("masks", "mask", bool), ("margins", "margin", np.float16)):
        source = group[name]
        path = os.path.join(out_dir, f"{key}.npy")
        with atomic_path(path, suffix=".npy") as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=source.shape)
            for r in range(source.shape[0]):
                out[r] = source[r] if done[r] else 0
            out.flush()
            del out
        paths[key] = path
    path = os.path.join(out_dir, "_completed.npy")
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, done)
    paths["_completed"] = path
    return paths
