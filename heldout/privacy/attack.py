"""LiRA on a predictions store: its inputs, the attack with its metrics, the `lira.npz` file.

`load_lira_inputs` reads a store of the runs' own training split (`heldout predict --split
train`; its ``mask`` is the membership ground truth) through `heldout.predict.open_store`,
completed runs only; `run_lira` scores every target run (`heldout.privacy.lira`), summarises
each variant (`heldout.privacy.metrics`) and the examples' exposure; `save_lira` / `load_lira`
write and read the file of `heldout lira`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np

from heldout.data.fingerprint import Fingerprint, fingerprint_from_labels, read_fingerprint
from heldout.data.views import IDENTITY
from heldout.errors import LiraError, NpzError, StoreError
from heldout.npzio import load_npz, require, save_npz_atomic
from heldout.predict.consumers import default_ratio
from heldout.predict.store import VIEWS_ARRAY, VIEWS_ATTRIBUTE
from heldout.privacy.lira import (
    DEFAULT_CHUNK_ELEMENTS,
    LOCATIONS,
    MIN_RUNS,
    VARIANTS,
    Progress,
    lira_scores,
)
from heldout.privacy.metrics import AttackMetrics, attack_metrics, exposure

LIRA_FORMAT = "heldout.privacy.lira/1"
STATISTIC = "logit_confidence"


@dataclasses.dataclass(frozen=True)
class LiraInputs:
    """What the attack reads of a store (`load_lira_inputs`).

    Attributes:
      store: the store's path.
      statistic: float32 [R, N, V], the logit confidence of each selected run, example, view.
      mask: bool [R, N], each run's training subset, in the columns' order (``mask[r, c]``:
        run r trained on example ``index[c]``).
      run_names: ``<ratio>/<run_id>`` of the R runs, in store order.
      run_id: int64 [R]; subset_ratio: float64 [R].
      views: the V view names.
      index: int64 [N], the examples' positions in the dataset.
      ratio_choice: how the subset ratios were chosen (for messages).
      attrs: the store's group attributes.
      fingerprint: the train split's dataset fingerprint (its name, version, size and label
        hash in dataset order, from the store's ``label`` and ``index``), or None where
        ``index`` is not a permutation of the split.
    """

    store: str
    statistic: np.ndarray
    mask: np.ndarray
    run_names: tuple[str, ...]
    run_id: np.ndarray
    subset_ratio: np.ndarray
    views: tuple[str, ...]
    index: np.ndarray
    ratio_choice: str
    attrs: dict[str, Any]
    fingerprint: Fingerprint | None = None


@dataclasses.dataclass(frozen=True)
class LiraResult:
    """The attack on every target run, as `heldout lira` writes it (`save_lira`).

    Attributes:
      scores: variant -> float32 [T, N] (higher = member).
      member: bool [T, N]; target_run: ``<ratio>/<id>`` [T]; target_run_id: int64 [T].
      metrics: variant -> `AttackMetrics`, computed from the float32 scores.
      mean_score_in, mean_score_out, exposure: float32 [N], from the online scores.
      runs: ``<ratio>/<id>`` of every run used (targets and shadows) [R].
      views, location, index, store: as in `LiraInputs` / `lira_scores`.
      fingerprint: the store's train split fingerprint, or None (a file written without it).
    """

    scores: dict[str, np.ndarray]
    member: np.ndarray
    target_run: tuple[str, ...]
    target_run_id: np.ndarray
    metrics: dict[str, AttackMetrics]
    mean_score_in: np.ndarray
    mean_score_out: np.ndarray
    exposure: np.ndarray
    runs: tuple[str, ...]
    views: tuple[str, ...]
    location: str
    index: np.ndarray
    store: str
    fingerprint: Fingerprint | None = None

    @property
    def variants(self) -> tuple[str, ...]:
        return tuple(self.scores)


def _choose_ratios(path: str, ratios: np.ndarray, wanted: Sequence[float] | None
                   ) -> tuple[np.ndarray, str]:
    """The selected rows and a description of the choice."""
    available = sorted(set(ratios.tolist()))
    if wanted:
        missing = [w for w in wanted if not np.isclose(ratios, w).any()]
        if missing:
            raise LiraError(f"{path}: no completed runs at subset ratio "
                            f"{', '.join(f'{m:g}' for m in missing)}; it has "
                            f"{', '.join(f'{a:g}' for a in available) or 'none'}")
        sel = np.flatnonzero(np.any([np.isclose(ratios, w) for w in wanted], axis=0))
        return sel, "subset ratio " + ",".join(f"{w:g}" for w in wanted)
    if not available:
        raise LiraError(f"{path}: no completed runs; LiRA needs at least {MIN_RUNS}")
    best, note = default_ratio(ratios)
    return np.flatnonzero(np.isclose(ratios, best)), note.replace("`ratio` ", "`ratios` ")


def load_lira_inputs(
    store, ratios: Sequence[float] | None = None, views: Sequence[str] | None = None
) -> LiraInputs:
    """Reads a store's completed runs for the attack.

    Args:
      store: a predictions store of the runs' own training split (path or opened with
        `heldout.predict.open_store`).
      ratios: subset ratios whose runs take part (default: the store's ratio with the most
        completed runs; on a tie the one nearest 0.5).
      views: view names (default: all the store's views, or ``identity`` alone when it has
        no `VIEWS_ARRAY`).

    Raises:
      LiraError: a store of another split (membership unknown), without ``logit_confidence``,
        without views when views other than ``identity`` are asked for, with an unknown view,
        no completed run at a ratio asked for, or fewer than 3 completed runs.
      StoreError: not a predictions store, or a malformed views array.
    """
    from heldout.predict.store import PredictionStore, open_store

    s = store if isinstance(store, PredictionStore) else open_store(store, as_dask=True)
    path, attrs = s.path, s.attrs
    split = attrs.get("split")
    if split != "train":
        raise LiraError(
            f"{path}: a store of the {split!r} split; membership is known only on the runs' "
            f"training split: write one with `heldout predict {attrs.get('experiment', 'EXP')} "
            f"... --split train --out train.zarr` and pass that")
    if STATISTIC not in s:
        outputs = ",".join([*attrs.get("outputs", []), STATISTIC])
        raise LiraError(f"{path}: has no {STATISTIC} (made with outputs "
                        f"{','.join(attrs.get('outputs', []))}); write it again with `heldout "
                        f"predict ... --outputs {outputs}`")
    names = list(attrs.get(VIEWS_ATTRIBUTE) or []) if VIEWS_ARRAY in s else []
    if VIEWS_ARRAY in s:
        shape = tuple(s[VIEWS_ARRAY].shape)
        if not names or len(names) != shape[-1] or any(not isinstance(n, str) for n in names):
            raise StoreError(f"{path}: {VIEWS_ARRAY} {list(shape)} needs the group attribute "
                             f"{VIEWS_ATTRIBUTE!r} naming its {shape[-1]} views; found "
                             f"{attrs.get(VIEWS_ATTRIBUTE)!r}")
        if shape[:2] != tuple(s[STATISTIC].shape):
            raise StoreError(f"{path}: {VIEWS_ARRAY} {list(shape)} does not fit {STATISTIC} "
                             f"{list(s[STATISTIC].shape)} (the completed runs' rows)")
    wanted = list(views) if views else (names or [IDENTITY])
    if not names and wanted != [IDENTITY]:
        raise LiraError(
            f"{path}: views {','.join(wanted)} asked for, but the store has no {VIEWS_ARRAY} "
            f"(only the identity view, {STATISTIC}); write it with `heldout predict --views "
            f"{','.join(wanted)}` or leave `views` out")
    unknown = [w for w in wanted if w not in (names or [IDENTITY])]
    if unknown or len(set(wanted)) != len(wanted):
        raise LiraError(f"{path}: views {','.join(wanted)}: unknown or repeated "
                        f"{','.join(unknown) or 'names'}; the store has {','.join(names)}")
    sel, note = _choose_ratios(path, np.asarray(s["subset_ratio"], np.float64), ratios)
    run_names = tuple(s.run_names[i] for i in sel)
    if len(sel) < MIN_RUNS:
        raise LiraError(f"{path}: {len(sel)} completed runs ({', '.join(run_names)}) at {note};"
                        f" LiRA needs at least {MIN_RUNS} (each target's shadows are the others)")
    if names:
        columns = [names.index(w) for w in wanted]
        statistic = np.asarray(s[VIEWS_ARRAY][sel][:, :, columns])
    else:
        statistic = np.asarray(s[STATISTIC][sel])[:, :, None]
    mask = np.asarray(s["mask"][sel])
    if mask.shape != statistic.shape[:2]:
        raise StoreError(f"{path}: mask {list(mask.shape)} and {STATISTIC} "
                         f"{list(statistic.shape[:2])} differ in size")
    index = np.asarray(s["index"], np.int64)
    fingerprint = None
    if np.array_equal(np.sort(index), np.arange(len(index))):
        # Column c is example index[c] of the split; the mask is in dataset order.
        mask = mask[:, index]
        labels = np.empty(len(index), np.int64)
        labels[index] = np.asarray(s["label"], np.int64)
        fingerprint = fingerprint_from_labels(attrs.get("dataset", ""), {"train": labels},
                                              attrs.get("dataset_version", ""))
    return LiraInputs(path, statistic.astype(np.float32, copy=False), mask.astype(bool),
                      run_names, np.asarray(s["run_id"][sel], np.int64),
                      np.asarray(s["subset_ratio"][sel], np.float64), tuple(wanted),
                      index, note, dict(attrs), fingerprint)


def select_targets(inputs: LiraInputs, target_ids: Collection[int] | None = None) -> np.ndarray:
    """int64 rows of the runs whose run id is in `target_ids` (all runs when None): any
    collection, e.g. `heldout.experiment.RunIds`, whose ranges are never materialised.

    Raises:
      LiraError: a run id not among the selected runs.
    """
    if target_ids is None:
        return np.arange(len(inputs.run_id), dtype=np.int64)
    rows = np.flatnonzero([int(r) in target_ids for r in inputs.run_id]).astype(np.int64)
    present = set(inputs.run_id[rows].tolist())
    missing = []
    if len(target_ids) > len(present):  # name the first few missing ids, lazily
        for run_id in target_ids:
            if run_id not in present:
                missing.append(int(run_id))
                if len(missing) == 5:
                    break
    if missing:
        ids = np.unique(inputs.run_id)
        raise LiraError(f"{inputs.store}: target run ids {missing} are not among its"
                        f" completed runs at {inputs.ratio_choice} ({len(ids)} run ids, "
                        f"{ids.min()}..{ids.max()})")
    return rows


def run_lira(
    inputs: LiraInputs,
    targets: np.ndarray | None = None,
    location: str = "median",
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    progress: Progress | None = None,
) -> LiraResult:
    """Scores every variant (float32), then its metrics and the exposure from those scores.

    Args:
      inputs: from `load_lira_inputs`.
      targets: rows of the target runs (default all), e.g. `choose_targets` or
        `select_targets`.
      location, chunk_elements, progress: see `heldout.privacy.lira_scores`.

    Raises:
      LiraError: see `lira_scores` (e.g. masks that hold every example or none).
    """
    try:
        result = lira_scores(inputs.statistic, inputs.mask, targets, location=location,
                             dtype=np.float32, chunk_elements=chunk_elements, progress=progress)
    except LiraError as e:
        raise LiraError(f"{inputs.store} ({inputs.ratio_choice}): {e}") from e
    metrics = {name: attack_metrics(result.scores[name], result.member)
               for name in result.scores}
    exposed = exposure(result.scores["online"], result.member)
    rows = result.targets
    return LiraResult(
        result.scores, result.member, tuple(inputs.run_names[i] for i in rows),
        inputs.run_id[rows], metrics, exposed.mean_in.astype(np.float32),
        exposed.mean_out.astype(np.float32), exposed.exposure.astype(np.float32),
        inputs.run_names, inputs.views, location, inputs.index, inputs.store,
        inputs.fingerprint)


def save_lira(path: str | os.PathLike, result: LiraResult) -> None:
    """Writes `result` to `.npz` atomically.

    Keys (T target runs, N examples, V views, L = 4 FPR levels, P_v ROC points):
    ``format``; ``variants`` str [5]; per variant ``score_<v>`` float32 [T, N],
    ``auc_<v>``, ``balanced_accuracy_<v>`` float64 scalars, ``tpr_at_fpr_<v>`` float64 [L]
    (NaN: not resolvable), ``roc_fpr_<v>``, ``roc_tpr_<v>`` float64 [P_v] (thinned: every
    point below 1% FPR, see `heldout.privacy.thin_roc`); ``fpr_levels`` float64 [L];
    ``member`` bool [T, N]; ``target_run`` str [T]; ``target_run_id`` int64 [T];
    ``mean_score_in``, ``mean_score_out``, ``exposure`` float32 [N]; ``num_members``,
    ``num_nonmembers`` int64; ``runs`` str [R]; ``views`` str [V]; ``location``, ``store``
    str; ``index`` int64 [N]; with a fingerprint, the train split's ``fingerprint__*`` keys
    (`heldout.data.fingerprint`).
    """
    arrays: dict[str, Any] = {
        "format": np.array(LIRA_FORMAT),
        "variants": np.array(result.variants),
        "member": result.member,
        "target_run": np.array(result.target_run),
        "target_run_id": np.asarray(result.target_run_id, np.int64),
        "mean_score_in": result.mean_score_in,
        "mean_score_out": result.mean_score_out,
        "exposure": result.exposure,
        "runs": np.array(result.runs),
        "views": np.array(result.views),
        "location": np.array(result.location),
        "store": np.array(result.store),
        "index": np.asarray(result.index, np.int64),
    }
    for name, m in result.metrics.items():
        arrays.update({
            f"score_{name}": result.scores[name],
            f"auc_{name}": np.float64(m.auc),
            f"balanced_accuracy_{name}": np.float64(m.balanced_accuracy),
            f"tpr_at_fpr_{name}": m.tpr_at_fpr,
            f"roc_fpr_{name}": m.roc_fpr,
            f"roc_tpr_{name}": m.roc_tpr,
        })
        arrays.update(fpr_levels=m.fpr_levels, num_members=np.int64(m.num_members),
                      num_nonmembers=np.int64(m.num_nonmembers))
    if result.fingerprint is not None:
        arrays.update(result.fingerprint.to_arrays())
    save_npz_atomic(path, arrays)


def load_lira(path: str | os.PathLike) -> LiraResult:
    """Reads and checks a file of `save_lira` / `heldout lira`.

    Raises:
      NpzError: unreadable, another format, a missing key, or a key of the wrong dtype or
        shape (the message names the file and the key).
      FingerprintError: incomplete or malformed ``fingerprint__*`` keys.
    """
    path = os.fspath(path)
    arrays = load_npz(path)
    sizes: dict[str, int] = {}
    get = functools.partial(require, arrays, source=path, sizes=sizes,
                            what="a `heldout lira` file")
    fmt = str(get("format", "U", ()))
    if fmt != LIRA_FORMAT:
        raise NpzError(f"{path}: format {fmt!r}, expected {LIRA_FORMAT!r}")
    variants = [str(v) for v in get("variants", "U", ("variants",))]
    if not variants or any(v not in VARIANTS for v in variants) or "online" not in variants:
        raise NpzError(f"{path}: key 'variants': expected names of {list(VARIANTS)} with "
                       f"'online', found {variants}")
    member = get("member", "b", ("T", "N"))
    levels = get("fpr_levels", "f", ("L",))
    scores, metrics = {}, {}
    counts = (int(get("num_members", "iu", ())), int(get("num_nonmembers", "iu", ())))
    for name in variants:
        scores[name] = get(f"score_{name}", "f", ("T", "N"))
        fpr = get(f"roc_fpr_{name}", "f", (f"P_{name}",))
        metrics[name] = AttackMetrics(
            float(get(f"auc_{name}", "f", ())), float(get(f"balanced_accuracy_{name}", "f", ())),
            levels, get(f"tpr_at_fpr_{name}", "f", ("L",)), fpr,
            get(f"roc_tpr_{name}", "f", (f"P_{name}",)), *counts)
    location = str(get("location", "U", ()))
    if location not in LOCATIONS:
        raise NpzError(f"{path}: key 'location': expected one of {LOCATIONS}, found {location!r}")
    return LiraResult(
        scores, member, tuple(str(r) for r in get("target_run", "U", ("T",))),
        get("target_run_id", "iu", ("T",)).astype(np.int64), metrics,
        get("mean_score_in", "f", ("N",)), get("mean_score_out", "f", ("N",)),
        get("exposure", "f", ("N",)), tuple(str(r) for r in get("runs", "U", ("R",))),
        tuple(str(v) for v in get("views", "U", ("V",))), location,
        get("index", "iu", ("N",)).astype(np.int64), str(get("store", "U", ())),
        read_fingerprint(arrays, path))

