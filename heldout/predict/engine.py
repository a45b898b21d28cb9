"""Filling a predictions store: one task per run, in this process or on Dask workers.

A task carries a `TaskSpec` (small: paths, names and sizes) and one run's path, never images.
Each process keeps one model (a `heldout.evaluate.Backend`, built and traced once) and the
dataset in memory across its tasks, as one `WorkerState`: on a Dask worker in the worker's state
dict (`heldout.cluster.worker_state`), in this process in a dict the caller owns. A task
evaluates its run through `heldout.evaluate.evaluate_split` (the one evaluation path: every
example once, finite logits; the restore checks every weight finite), writes only its own run's
chunks of the store and sets ``completed`` last, so tasks never share a chunk and a killed task
loses only its run; the same call again evaluates only the runs not completed. Before the store
is made, the dataset is checked against the first run (`heldout.evaluate.check_run_dataset`,
the check of `heldout verify`, and `heldout.evaluate.check_run_model`, its model read from its
files), and the command holds the store's lock (`store_lock_path`, `heldout.lock`) while it
fills it, so a second command on the same store is refused. A run whose row is read from the
outputs it recorded at the end of training (`heldout.predict.recorded`) needs no model: those
rows are written by a loop in this process (reading files, no TensorFlow), and a call whose
every run is recorded starts no cluster. Nothing here prints: `predict` returns a
`PredictSummary` carrying what was skipped, failed or mismatched.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from heldout.cluster import Dask, connect, run_tasks, worker_state
from heldout.data import load_dataset
from heldout.data.protocol import Dataset
from heldout.data.spec import DatasetSpec
from heldout.data.views import check_views, parse_views
from heldout.errors import HeldoutError, ModelMismatchError, PredictError, counting_interrupts
from heldout.evaluate import (
    BACKENDS,
    Backend,
    check_run_dataset,
    check_run_model,
    evaluate_split,
    make_backend,
)
from heldout.experiment import (
    OUTPUTS,
    Experiment,
    Run,
    RunIds,
    Skipped,
    iter_aux_arrays,
    run_from_path,
    select_runs,
)
from heldout.lock import try_lock, unlock
from heldout.predict import store as st
from heldout.predict.recorded import (
    SplitInputs,
    assign_sources,
    plan_source,
    recorded_rows,
    source_requirement,
    split_inputs,
    store_source,
)
from heldout.quiet import import_tensorflow

_WORKER_ATTR = "_heldout_predict_state"


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """Everything a task needs besides its run (the same for every task of a call)."""

    store: str
    dataset: DatasetSpec
    split: str
    backend: str
    arch: str
    num_classes: int
    input_shape: tuple[int, ...]
    outputs: tuple[str, ...]
    logits_dtype: str
    batch_size: int
    num_train: int
    backend_options: tuple[tuple[str, Any], ...] = ()
    own_dataset: bool = True
    views: tuple[str, ...] = ()
    inputs: SplitInputs | None = None  # what recorded outputs must have been recorded on

    def model_key(self) -> tuple:
        """What the cached model and dataset depend on (not the store)."""
        return (self.dataset, self.split, self.backend, self.arch, self.num_classes,
                self.input_shape, self.backend_options)


@dataclasses.dataclass(frozen=True)
class RunResult:
    """The outcome of one task: `error` is '' on success; `reevaluated`: predictions a
    reduced-precision backend evaluated again in float32 (close calls), 0 otherwise."""

    row: int
    name: str
    error: str = ""
    epoch: int = -1
    global_step: int = -1
    accuracy: float = float("nan")
    reevaluated: int = 0


@dataclasses.dataclass(frozen=True)
class PredictSummary:
    """What `predict` did.

    Attributes:
      store: the store path.
      num_runs: R, runs in the store.
      evaluated: runs completed by this call (evaluated, or read from their recorded outputs);
        `resumed`: runs already completed before it.
      failed: (run name, message) of the runs that failed (left not completed).
      checked_runs, matched, total: the cross-check of ``correct`` against the aux arrays
        (0, 0, 0 when not done); `mismatched_runs`: runs below the minimum match fraction.
      cross_check_note: why the cross-check was skipped, or ''.
      cross_check_lines: one line per run below the minimum match fraction or whose aux
        arrays could not be read for the cross-check.
      reevaluated, predictions: of the predictions this call made (runs evaluated x N), how
        many a reduced-precision backend (``torch`` with ``precision`` tf32 or bf16) evaluated
        again in float32 because their top-2 margin was below its bound.
      skipped: entries of the experiment that are not complete runs, and runs without a model
        for the backend or recorded outputs, as the source needs
        (`heldout.experiment.select_runs`), then runs whose recorded outputs are of other
        images or preprocessing and that have no model
        (`heldout.predict.recorded.assign_sources`), left out of the store.
      source: the store's ``source`` attribute (`heldout.predict.store.SOURCES`).
      recorded_runs: of the store's R runs, those whose rows are read from recorded outputs
        (the others are evaluated from their models).
      source_note: why ``auto`` evaluated models although some runs recorded their outputs
        ('' otherwise).
    """

    store: str
    num_runs: int
    evaluated: int
    resumed: int
    failed: tuple[tuple[str, str], ...]
    checked_runs: int = 0
    matched: int = 0
    total: int = 0
    mismatched_runs: tuple[str, ...] = ()
    cross_check_note: str = ""
    cross_check_lines: tuple[str, ...] = ()
    reevaluated: int = 0
    predictions: int = 0
    skipped: tuple[Skipped, ...] = ()
    source: str = st.SOURCE_CHECKPOINTS
    recorded_runs: int = 0
    source_note: str = ""

    @property
    def ok(self) -> bool:
        return not self.failed and not self.mismatched_runs


# --------------------------------------------------------------------------------------------
# The task.


@dataclasses.dataclass(frozen=True)
class WorkerState:
    """What a process keeps across its tasks for one `TaskSpec.model_key()`: the dataset split
    in memory and the model (built, and for TensorFlow traced, once; None until the first task
    needs it)."""

    key: tuple
    dataset: Dataset
    backend: Backend | None = None


_STATE = "predict"  # the key of the `WorkerState` in a process's state dict


def _state(spec: TaskSpec, cache: dict) -> WorkerState:
    """The process's `WorkerState` for `spec` (one per process: a new key replaces it)."""
    state = cache.get(_STATE)
    if state is None or state.key != spec.model_key():
        state = WorkerState(spec.model_key(), load_dataset(spec.dataset, (spec.split,)))
    if state.backend is None:
        if spec.backend == "tensorflow":
            import_tensorflow()  # without its start-up lines (a worker's preload did the same)
        state = dataclasses.replace(state, backend=make_backend(
            spec.backend, spec.arch, spec.num_classes, spec.input_shape,
            **dict(spec.backend_options)))
    cache[_STATE] = state
    return state


def evaluate_run(
    spec: TaskSpec, row: int, run_path: str, cache: dict | None = None
) -> RunResult:
    """Restores one run, evaluates the split and writes its rows of the store.

    Args:
      spec: the call's `TaskSpec`.
      row: the run's row r in the store.
      run_path: the run directory.
      cache: this process's state when not on a Dask worker (None: the worker's).

    Returns:
      A `RunResult`; a bad run (bad aux arrays, a missing or corrupt checkpoint, a NaN or
      infinite weight or logit: any `HeldoutError`) gives a result with `error` set and writes
      nothing, so it stays not completed.
    """
    run = run_from_path(run_path)
    # On a worker, its state is used by one task at a time (`heldout.cluster.worker_state`).
    with (worker_state(_WORKER_ATTR) if cache is None else contextlib.nullcontext(cache)) as state:
        return _evaluate_run(spec, row, run, state)


def _evaluate_run(spec: TaskSpec, row: int, run: Run, cache: dict) -> RunResult:
    try:
        state = _state(spec, cache)
        backend = state.backend
        aux = check_run_dataset(run, state.dataset, spec.split, spec.own_dataset)
        if aux.num_train != spec.num_train:
            raise PredictError(f"{aux.source}: covers {aux.num_train} training examples, the "
                               f"store's runs {spec.num_train}")
        restored = backend.restore(run)
        reevaluated = getattr(backend, "num_reevaluated", 0)
        predictions = evaluate_split(backend, state.dataset, spec.split, spec.batch_size,
                                     progress=False, source=f"run {run.name} ({run.path})")
        reevaluated = getattr(backend, "num_reevaluated", 0) - reevaluated  # identity view's
        rows = st.run_outputs(predictions.logits, predictions.label, spec.outputs,
                              spec.logits_dtype)
        if spec.views:
            rows[st.VIEWS_ARRAY] = _view_confidences(spec, state.dataset, backend, run,
                                                     rows["logit_confidence"])
    except HeldoutError as e:
        return RunResult(row, run.name, error=str(e))
    st.write_run(spec.store, row, rows, aux.subset_mask(), restored.epoch, restored.global_step)
    return RunResult(row, run.name, "", restored.epoch, restored.global_step,
                     predictions.accuracy, reevaluated)


def read_recorded_run(spec: TaskSpec, row: int, run: Run, dataset: Dataset) -> RunResult:
    """Writes one run's rows of the store from the outputs it recorded at the end of training
    (`heldout.predict.recorded.recorded_rows`), without a model.

    Returns:
      A `RunResult`; a bad run (bad aux arrays or outputs.npz, a dataset that is not its own:
      any `HeldoutError`) gives a result with `error` set and writes nothing.
    """
    try:
        rows, aux, recorded = recorded_rows(run, dataset, spec.split, spec.outputs, spec.views,
                                            spec.inputs)
    except HeldoutError as e:
        return RunResult(row, run.name, error=str(e))
    st.write_run(spec.store, row, rows, aux.subset_mask(), recorded.epoch, recorded.global_step)
    return RunResult(row, run.name, "", recorded.epoch, recorded.global_step,
                     float(np.mean(rows["correct"])) if len(rows["correct"]) else float("nan"))


def _view_confidences(spec: TaskSpec, dataset: Dataset, backend: Backend, run: Run,
                      identity: np.ndarray) -> np.ndarray:
    """float32 [N, V]: ``logit_confidence`` of each view (`heldout.data.views`), the identity
    view's column being `identity` (the run's plain evaluation)."""
    columns = [identity]
    for view in parse_views(spec.views)[1:]:
        predictions = evaluate_split(backend, dataset, spec.split, spec.batch_size,
                                     progress=False, source=f"run {run.name} ({run.path})",
                                     view=view)
        columns.append(st.logit_confidence(predictions.logits, predictions.label))
    return np.stack(columns, axis=1).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Making the store.


def check_runs_fit(runs: Sequence[Run], dataset: Dataset, split: str, backend: str,
                   arch: str | None = None, own_dataset: bool = True,
                   recorded: Sequence[bool] | None = None) -> int:
    """Checks the dataset against the runs before anything is evaluated: the first run whose
    files can be read goes through `heldout.evaluate.check_run_dataset` (its aux arrays'
    sizes and dataset fingerprint, the check of `heldout verify`; with `own_dataset` False
    only the training split, see there), and the first run evaluated from its model through
    `heldout.evaluate.check_run_model` (its architecture, number of classes and input, read
    from its checkpoint or exported file; runs read from their recorded outputs have no model
    to check). A run whose files cannot be read is passed over: it fails alone when evaluated.

    Args:
      recorded: per run, True when its row is read from its recorded outputs (default: none).

    Returns:
      n_train, the runs' training-set size (the width of the store's ``mask``).

    Raises:
      PredictError: the dataset is not the runs' (naming the run, the file and what differs),
        or no run has readable files.
      ModelMismatchError: the run's model is not the one the dataset needs.
    """
    recorded = [False] * len(runs) if recorded is None else list(recorded)
    num_train, model_checked = None, all(recorded)
    unreadable = ""
    for run, read in zip(runs, recorded, strict=True):
        if num_train is not None and read:
            continue  # the dataset is checked; only a model is left to check
        try:
            aux = check_run_dataset(run, dataset, split, own_dataset)
        except HeldoutError as e:
            try:
                run.load_aux()
            except HeldoutError as bad:
                unreadable = unreadable or f"run {run.name}: {bad}"
                continue  # unreadable aux arrays: this run fails alone
            hint = ("; if it is another evaluation set on purpose (shifted or new images of "
                    "the runs' classes), pass `cross_check`=False"
                    if own_dataset and split != "train" else "")
            raise PredictError(f"run {run.name}: {e}{hint}") from e
        num_train = aux.num_train if num_train is None else num_train
        if not read:
            try:
                check_run_model(backend, run, dataset, arch)
                model_checked = True
            except ModelMismatchError:
                raise
            except HeldoutError as bad:
                unreadable = unreadable or f"run {run.name}: {bad}"
                continue  # an unreadable checkpoint or model file: this run fails alone
        if model_checked:
            return num_train
    if num_train is not None and any(recorded):
        return num_train  # the runs evaluated from models fail alone
    files = "aux arrays" if all(recorded) else "aux arrays and model files"
    raise PredictError(f"none of the {len(runs)} runs has readable {files}; e.g. {unreadable}")


def store_lock_path(out: str | os.PathLike) -> str:
    """The lock file a command filling the store `out` holds (`heldout.lock`), beside it:
    ``<parent>/.<name>.lock``."""
    out = os.path.abspath(os.fspath(out))
    return os.path.join(os.path.dirname(out), f".{os.path.basename(out)}.lock")


@contextlib.contextmanager
def store_lock(out: str):
    """Holds the store's lock (`store_lock_path`) for the duration; the kernel drops it when
    the process dies, so a killed command never blocks the next.

    Raises:
      PredictError: another live process holds it.
    """
    path = store_lock_path(out)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = try_lock(path)
    if fd is None:
        holder = "another process"
        with contextlib.suppress(OSError, ValueError), open(path) as f:
            holder = f"pid {int(f.read().split()[0])}"
        raise PredictError(f"{out}: another heldout predict is filling this store ({holder} "
                           f"holds {path}); wait for it to finish or stop it, then run the "
                           "command again")
    try:
        yield
    finally:
        unlock(path, fd)


def _empty_store(out: str) -> bool:
    """A predictions store without a completed run: replacing it loses nothing."""
    try:
        st.read_attrs(out)
        return not st.completed(out).any()
    except (HeldoutError, KeyError, OSError, ValueError):
        return False


def prepare_store(out: str, layout: st.StoreLayout, runs: Sequence[Run], labels: np.ndarray,
                  overwrite: bool) -> None:
    """Creates the store, or checks that an existing one is this call's (see `check_layout`).
    An existing predictions store made for something else is replaced when `overwrite`, or
    when none of its runs is completed (nothing is lost).

    Raises:
      PredictError: `out` is a file, or a directory that is not a store.
      StoreError: an existing store made for something else with a completed run (without
        `overwrite`).
    """
    if os.path.lexists(out) and not os.path.isdir(out):
        raise PredictError(f"`out`={out}: is a file; give a directory path such as preds.zarr")
    if os.path.isdir(out):
        if not st.is_store(out) and os.listdir(out):
            raise PredictError(f"`out`={out}: a non-empty directory that is not a zarr store")
        if overwrite or not st.is_store(out):
            shutil.rmtree(out)
        else:
            try:
                st.check_layout(out, layout)
                return
            except st.StoreError:
                if not _empty_store(out):
                    raise
            shutil.rmtree(out)
    st.create_store(
        out, layout,
        run_ids=np.array([r.run_id for r in runs], np.int64),
        subset_ratios=np.array([r.subset_ratio for r in runs], np.float64),
        label=labels, index=np.arange(len(labels), dtype=np.int64),
    )


# --------------------------------------------------------------------------------------------
# Running the tasks.


def _run_tasks(spec: TaskSpec, todo: list[tuple[int, Run]], dask: Dask | None,
               retries: int, progress: bool, cache: dict | None,
               recorded: list[tuple[int, Run]], data: Dataset):
    """Yields a `RunResult` per run, as they finish: the `recorded` runs read in this process
    first, then the `todo` runs evaluated in this process (`dask` None) or on the cluster
    (`heldout.cluster.run_tasks`)."""
    bar = tqdm(total=len(recorded) + len(todo), desc="predict", unit="run",
               disable=not progress, dynamic_ncols=True)
    with bar:
        for row, run in recorded:
            yield read_recorded_run(spec, row, run, data)
            bar.update()
        if dask is None:
            cache = {} if cache is None else cache
            for row, run in todo:
                yield evaluate_run(spec, row, run.path, cache)
                bar.update()
            return
        args = [(spec, row, run.path) for row, run in todo]
        for i, result, error in run_tasks(dask, evaluate_run, args, retries):
            if error is not None:
                row, run = todo[i]
                result = RunResult(row, run.name, error=f"{type(error).__name__}: {error}")
            yield result
            bar.update()


def cross_check_store(
    summary: PredictSummary, runs: Sequence[Run], split: str, min_match_fraction: float
) -> PredictSummary:
    """Compares the store's ``correct`` of every completed run with its aux arrays.

    Returns:
      `summary` with the cross-check's fields set: the runs checked, the predictions matching
      and compared, the runs below `min_match_fraction` (and a line for each, with the runs
      whose aux arrays could not be read), or `cross_check_note` saying why nothing was
      checked.
    """
    if split not in ("train", "test"):
        return dataclasses.replace(
            summary, cross_check_note=f"split {split!r} is not one the runs' aux arrays cover")
    import zarr

    group = zarr.open_group(summary.store, mode="r")
    done = np.asarray(group["completed"][...], bool)
    n = group["correct"].shape[1]
    checked = matched = total = 0
    low, lines = [], []
    rows = np.flatnonzero(done)
    reads = iter_aux_arrays([runs[row] for row in rows], same_sizes=False, errors="yield")
    for row, (run, aux) in zip(rows, reads, strict=True):
        if isinstance(aux, HeldoutError):
            low.append(run.name)
            lines.append(f"{run.name}: cannot cross-check: {aux}")
            continue
        stored = aux.correctness(split)
        if len(stored) != n:
            return dataclasses.replace(summary, cross_check_note=(
                f"the runs' aux arrays cover {len(stored)} {split} examples, the dataset {n}: "
                "another dataset"))
        agree = int(np.sum(stored == group["correct"][row]))
        checked, matched, total = checked + 1, matched + agree, total + n
        if n and agree / n < min_match_fraction:
            low.append(run.name)
            lines.append(f"{run.name}: MISMATCH: {agree}/{n} predictions match")
    return dataclasses.replace(summary, checked_runs=checked, matched=matched, total=total,
                               mismatched_runs=tuple(low), cross_check_lines=tuple(lines))


def predict(
    path: str | os.PathLike | Experiment,
    dataset: DatasetSpec,
    split: str,
    out: str | os.PathLike,
    *,
    ratios: Sequence[str | float] | None = None,
    run_ids: RunIds | Collection[int] | str | None = None,
    outputs: Sequence[str] = st.DEFAULT_OUTPUTS,
    logits_dtype: str = "float16",
    batch_size: int = 200,
    workers: int = 0,
    scheduler: str | None = None,
    backend: str = "tensorflow",
    arch: str | None = None,
    overwrite: bool = False,
    retries: int = 1,
    cross_check: bool = True,
    min_match_fraction: float = 1.0,
    progress: bool = True,
    backend_options: dict[str, Any] | None = None,
    cache: dict | None = None,
    views: Sequence[str] | str | None = None,
    source: str = "auto",
) -> PredictSummary:
    """Fills (or resumes) a predictions store with every selected run's outputs on a split.

    Args:
      path: an experiment directory or one run directory; or the runs
        `heldout.experiment.select_runs` selected (then `ratios` and `run_ids` are not used).
      dataset: where the dataset comes from (also on each worker).
      split: the split to evaluate, e.g. ``train`` or ``test``.
      out: the store directory (``STORE.zarr``).
      ratios, run_ids: select runs (`heldout.experiment.select_runs`; default all with what
        `source` needs: a model for `backend` (a complete checkpoint, or an exported model
        for ``torch``), recorded outputs, or either).
      outputs: of `heldout.predict.store.OUTPUTS`; ``correct`` (and ``prediction``) always.
      logits_dtype: ``float16`` or ``float32``, with ``logits`` in `outputs`.
      workers: 0 evaluates in this process (no Dask); N >= 1 starts a local cluster of N
        single-threaded worker processes, pinned one per visible GPU when there are GPUs
        (`heldout.cluster.local_cluster`). Runs read from their recorded outputs are read in
        this process either way, and a call whose every run is read starts no cluster.
      scheduler: an existing Dask scheduler's address or scheduler file (`workers` ignored;
        not connected to when every run is read from its recorded outputs).
      backend, arch, backend_options: the evaluator (`make_backend`); `arch` defaults to the
        released architecture for the dataset.
      overwrite: replace an existing store made for something else (a store without a
        completed run is replaced anyway).
      retries: Dask retries of a task that raised something other than a `HeldoutError`.
      cross_check: the dataset is the runs' own: it is checked against their aux arrays
        before anything is evaluated (sizes and fingerprint, `check_runs_fit`), and
        ``correct`` is compared with them afterwards. False for another evaluation set
        (shifted or new images): only the training split is checked, for ``split="train"``.
      min_match_fraction: a run passes the cross-check with at least this fraction matching.
      cache: this process's model and dataset, kept across calls with ``workers=0``.
      views: view names (`heldout.data.views`, e.g. ``identity,flip``): the store gains
        ``logit_confidence_views`` float32 [R, N, V], the ``logit_confidence`` of each view,
        ``identity`` first (added when not named); None: no views. Needs
        ``logit_confidence`` in `outputs`.
      source: where the rows come from (`heldout.predict.recorded`): ``checkpoints`` (every
        run's model evaluated), ``recorded`` (every run's outputs recorded at the end of
        training read, without a model: the runs' own dataset, ``train`` or ``test``, no
        ``logits``, no views but ``identity``, the ``tensorflow`` backend, the images and
        preprocessing they were recorded on), or ``auto`` (the recorded outputs of the runs
        that have them where they can serve, the models of the others; runs with outputs
        recorded on other images and no model are skipped). The store records it (attribute
        ``source``, array ``recorded``).

    Returns:
      A `PredictSummary`: failed runs (a bad checkpoint, a non-finite weight or logit, ...)
      are named there and left not completed; skipped entries and cross-check lines are there
      too (nothing is printed).

    Raises:
      PredictError, NoRunsError, StoreError, BackendError, DatasetError, ModelMismatchError,
        ...: bad inputs (a dataset that is not the runs', another
        command filling the same store, ``source="recorded"`` where recorded outputs cannot
        serve or were recorded on other images or preprocessing), before any run is
        evaluated.
      ClusterError: an unreachable `scheduler`, or more `workers` than visible GPUs.
      Interrupted: Ctrl-C once the store was made or opened, with the store's completed runs
        counted after the cluster is shut down (a bare KeyboardInterrupt before).
    """
    from heldout.data.fingerprint import fingerprint_from_labels, split_name
    from heldout.models import default_arch

    out = os.path.abspath(os.fspath(out))
    outputs = tuple(o for o in st.OUTPUTS if o in set(outputs) | {"correct"})
    unknown = sorted(set(outputs) - set(st.OUTPUTS))
    if unknown:
        raise PredictError(f"unknown outputs {unknown}; expected some of {list(st.OUTPUTS)}")
    if logits_dtype not in st.LOGITS_DTYPES:
        raise PredictError(f"logits dtype must be one of {list(st.LOGITS_DTYPES)}, "
                           f"got {logits_dtype!r}")
    if backend not in BACKENDS:
        raise PredictError(f"unknown backend {backend!r}; expected one of {list(BACKENDS)}")
    view_names = () if views is None else tuple(v.name for v in parse_views(views))
    if view_names and "logit_confidence" not in outputs:
        raise PredictError("views hold logit_confidence in each view: add logit_confidence to "
                           f"the outputs ({','.join(outputs)})")
    if os.path.lexists(out) and not os.path.isdir(out):
        raise PredictError(f"`out`={out}: is a file; give a directory path such as preds.zarr")
    plan, note = plan_source(source, split, outputs, view_names, cross_check, backend)
    if isinstance(path, Experiment):
        if ratios is not None or run_ids is not None:
            raise PredictError("ratios and run_ids select runs of a path; given the runs "
                               "select_runs selected, pass neither")
        selection = path
    else:
        selection = select_runs(path, ratios, run_ids, source_requirement(plan, backend))
    runs, root = selection.runs(), selection.root
    if note and not _any_recorded(runs, selection.skipped):
        note = ""  # nothing was recorded: nothing to explain
    data = load_dataset(dataset, (split,))
    # Once per call: the images and preprocessing the recorded outputs must have been on.
    inputs = (split_inputs(data, split) if plan != "checkpoints"
              and any(run.has_outputs() for run in runs) else None)
    sources = assign_sources(plan, runs, inputs, backend)
    runs, recorded, note = list(sources.runs), list(sources.recorded), note or sources.note
    labels = data.split_labels(split)
    check_views(parse_views(view_names), data.image_shape)
    num_train = check_runs_fit(runs, data, split, backend, arch, cross_check, recorded)
    arch = arch or default_arch(data.name, data.image_shape)
    name, version = split_name(data.name)
    fingerprint = fingerprint_from_labels(data.name, {split: labels}).describe()
    layout = st.StoreLayout(
        dataset=name, dataset_version=version, split=split,
        fingerprint=fingerprint, experiment=root, architecture=arch,
        num_classes=int(data.num_classes), num_examples=len(labels),
        num_train=num_train, outputs=outputs,
        logits_dtype=logits_dtype, runs=tuple(r.name for r in runs), backend=backend,
        views=view_names, source=store_source(recorded),
    )
    spec = TaskSpec(out, dataset, split, backend, arch, int(data.num_classes),
                    tuple(int(d) for d in data.image_shape), outputs, logits_dtype,
                    batch_size, layout.num_train, tuple(sorted((backend_options or {}).items())),
                    own_dataset=cross_check, views=view_names, inputs=inputs)
    prepared = False

    def completed() -> int | None:  # on Ctrl-C: the store's completed runs, once it is ours
        return int(st.completed(out).sum()) if prepared else None

    with contextlib.ExitStack() as stack:
        # Ctrl-C: counted when this exits, last, after the cluster's shutdown.
        stack.enter_context(counting_interrupts(len(runs), completed))
        stack.enter_context(store_lock(out))  # before the cluster: a second command stops here
        preload = ["heldout.quiet"] if backend == "tensorflow" else []
        models = not all(recorded)  # runs to evaluate: recorded outputs are read here
        dask = (stack.enter_context(connect(scheduler, workers, preload))
                if models and (workers > 0 or scheduler is not None) else None)
        prepare_store(out, layout, runs, labels, overwrite)
        prepared = True
        summary = _fill(spec, runs, data, dask, retries, progress, cache,
                        min_match_fraction if cross_check else None, recorded)
    return dataclasses.replace(summary, skipped=selection.skipped + sources.skipped,
                               source=layout.source, recorded_runs=sum(recorded),
                               source_note=note)


def _any_recorded(runs: Sequence[Run], skipped: Sequence[Skipped]) -> bool:
    """Whether any selected run, or any run left out, recorded its outputs."""
    return any(r.has_outputs() for r in runs) or any(
        os.path.isfile(os.path.join(s.path, OUTPUTS)) for s in skipped)


def _fill(spec: TaskSpec, runs: Sequence[Run], data, dask: Dask | None, retries: int,
          progress: bool, cache: dict | None, min_match_fraction: float | None,
          recorded: Sequence[bool]) -> PredictSummary:
    """Fills the rows of the store `spec.store`'s runs not completed (read from their recorded
    outputs where `recorded`, else evaluated), then cross-checks (unless `min_match_fraction`
    is None)."""
    out = spec.store
    done = st.completed(out)
    missing = [(row, run) for row, run in enumerate(runs) if not done[row]]
    read = [(row, run) for row, run in missing if recorded[row]]
    todo = [(row, run) for row, run in missing if not recorded[row]]
    if dask is None and todo:
        cache = {} if cache is None else cache
        state = cache.get(_STATE)
        if state is None or state.key != spec.model_key():  # the dataset already loaded
            cache[_STATE] = WorkerState(spec.model_key(), data)
    failed = []
    reevaluated = 0
    for result in _run_tasks(spec, todo, dask, retries, progress, cache, read, data):
        if result.error:
            failed.append((result.row, result.name, result.error))
        reevaluated += result.reevaluated
    evaluated = len(todo) - sum(not recorded[row] for row, _, _ in failed)
    failed = [(name, error) for _, name, error in sorted(failed)]  # store order: ratio, run id
    summary = PredictSummary(out, len(runs), len(missing) - len(failed),
                             len(runs) - len(missing), tuple(failed), reevaluated=reevaluated,
                             predictions=evaluated * int(data.num_examples(spec.split)))
    if min_match_fraction is not None:
        summary = cross_check_store(summary, runs, spec.split, min_match_fraction)
    return summary
