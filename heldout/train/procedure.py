"""The heldout procedure: trains runs and writes each in the release layout, atomically.

`train_experiment` trains the runs of a subset ratio by the per-step or the stacked path and
writes ``aux_arrays.npz``, ``run.json`` and checkpoints in a hidden temporary directory renamed
into place only when complete (see `heldout.train`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import os
import secrets
import shutil
import time
from collections.abc import Iterator, Sequence

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from heldout import __version__
from heldout.atomic import fsync_directory, write_text_atomic
from heldout.data.arrays import ArrayDataset
from heldout.data.fingerprint import fingerprint_dataset, label_hash
from heldout.data.spec import DatasetSpec
from heldout.experiment import (
    AUX_ARRAYS,
    CHECKPOINT_DIR,
    AuxArrays,
    LayoutError,
    Run,
    make_aux_arrays,
    write_aux_arrays,
)
from heldout.lock import try_lock, unlock
from heldout.train import stacked
from heldout.train.config import TrainConfig
from heldout.train.plan import (
    DivergedError,
    RunPlan,
    TrainError,
    plan_runs,
    ratio_name,
)
from heldout.train.trainer import (
    ModelTrainer,
    _images,
    evaluate_correctness,
    initial_model,
    make_model_trainer,
    train_model_run,
)

RUN_JSON = "run.json"


def _run_info(
    plan: RunPlan, ratio: str, config: TrainConfig, dataset: ArrayDataset, aux: AuxArrays,
    seconds: float, path: str, models_per_step: int,
) -> dict:
    return {
        "run_id": plan.run_id,
        "subset_ratio": float(ratio),
        "seed": plan.seed,
        "init_seed": plan.init_seed,
        "num_classes": dataset.num_classes,
        "dataset": dataset.name,
        **_settings(dataset, config),
        "steps": plan.num_steps,
        "path": path,
        "models_per_step": models_per_step,
        "accuracy": {split: aux.accuracy(split) for split in ("train", "removed", "test")},
        "seconds": round(seconds, 3),
        "heldout": __version__,
        "tensorflow": tf.__version__,
    }


def _start_run(ratio_dir: str, run_id: int) -> TempRun:
    """Removes stale temporary directories of the run and makes a new one.

    Only called with the run's lock held (`_run_locks`: by this process, or on a Dask worker by
    the process that sent the task). Each temporary directory ``.<run_id>.tmp-X`` has an owner
    lock ``.<run_id>.owner-X`` (`heldout.lock`) that its writer holds until the directory is
    renamed into place or removed (`_finish_run`, `_discard`): one whose lock is free is stale
    (its writer died, e.g. a killed worker) and is removed; one whose lock is held is left
    alone, for its writer may outlive the process that sent it (a Dask task keeps running on
    its worker after its command stopped), and removing it under that writer would let it
    rename a run without its checkpoint into place. The directory is created with mode 0o777
    less the umask (the permissions of a normally created directory; the umask is never
    changed).
    """
    prefix = os.path.join(glob.escape(ratio_dir), f".{run_id}.")
    for stale in glob.glob(prefix + "tmp-*"):
        owner = _owner_path(stale)
        fd = try_lock(owner)
        if fd is None:  # its writer is alive
            continue
        try:
            shutil.rmtree(stale, ignore_errors=True)
        finally:
            unlock(owner, fd)
    for owner in glob.glob(prefix + "owner-*"):  # a writer killed after removing its directory
        if not os.path.lexists(owner.replace(".owner-", ".tmp-")):
            fd = try_lock(owner)
            if fd is not None:
                unlock(owner, fd)
    while True:
        tmp = os.path.join(ratio_dir, f".{run_id}.tmp-{secrets.token_hex(4)}")
        owner = _owner_path(tmp)
        fd = try_lock(owner)  # held before the directory exists: never seen unowned
        if fd is None:
            continue
        try:
            os.mkdir(tmp, 0o777)
        except FileExistsError:
            unlock(owner, fd)
            continue
        return TempRun(tmp, owner, fd)


@dataclasses.dataclass(frozen=True)
class TempRun:
    """A temporary run directory of this process and the owner lock it holds (`_start_run`).

    Attributes:
      path: ``<ratio>/.<run_id>.tmp-X``.
      owner: ``<ratio>/.<run_id>.owner-X``, locked by this process.
      fd: the descriptor holding the lock (released once, by `_finish_run` or `_discard`).
    """

    path: str
    owner: str
    fd: int


def _owner_path(tmp: str) -> str:
    """``<ratio>/.<run_id>.owner-X``: the owner lock of the temporary run ``.<run_id>.tmp-X``."""
    head, name = os.path.split(tmp)
    return os.path.join(head, name.replace(".tmp-", ".owner-", 1))


def _discard(tmp: TempRun) -> None:
    """Removes a temporary run not renamed into place, then releases its owner lock."""
    shutil.rmtree(tmp.path, ignore_errors=True)
    unlock(tmp.owner, tmp.fd)


def _finish_run(tmp: TempRun, final: str, aux: AuxArrays, info: dict) -> bool:
    """Writes the aux arrays and run.json into `tmp` (atomically) and renames it to `final`;
    releases `tmp`'s owner lock after the rename, or after removing `tmp` (it does not when it
    raises: the caller then `_discard`s it).

    Returns False (and removes `tmp`) when another process completed the run meanwhile.
    """
    write_aux_arrays(os.path.join(tmp.path, AUX_ARRAYS), aux)
    write_text_atomic(os.path.join(tmp.path, RUN_JSON), json.dumps(info, indent=1))
    try:
        os.rename(tmp.path, final)
    except OSError:
        if os.path.isfile(os.path.join(final, AUX_ARRAYS)):
            _discard(tmp)
            return False
        raise
    unlock(tmp.owner, tmp.fd)
    fsync_directory(os.path.dirname(final))
    return True


def _lock_path(ratio_dir: str, run_id: int) -> str:
    return os.path.join(ratio_dir, f".{run_id}.lock")


@contextlib.contextmanager
def _run_locks(ratio_dir: str, run_ids: Sequence[int]) -> Iterator[tuple[list[int], list[int]]]:
    """Locks the runs (one ``.<run_id>.lock`` each, `heldout.lock`) for the duration of the block.

    Yields:
      (locked, busy): the run ids now held by this process, and those held by another live
      process (to be skipped: it is training them).
    """
    held: dict[int, tuple[str, int]] = {}
    busy = []
    try:
        for run_id in run_ids:
            path = _lock_path(ratio_dir, run_id)
            fd = try_lock(path)
            if fd is None:
                busy.append(run_id)
            else:
                held[run_id] = (path, fd)
        yield list(held), busy
    finally:
        for path, fd in held.values():
            unlock(path, fd)


# The run.json fields of the data and model, reported apart from the training settings (epochs,
# batch size, learning rate, momentum, experiment seed) when a ratio directory's runs differ.
_DATA_FIELDS = ("arch", "num_train", "num_test", "train_label_hash")


def _settings(dataset: ArrayDataset, config: TrainConfig) -> dict:
    """What runs of one ratio directory must share (stored in each run.json): the data and
    architecture (`_DATA_FIELDS`) and the training settings."""
    return {
        "arch": config.arch,
        "num_train": dataset.num_examples("train"),
        "num_test": dataset.num_examples("test"),
        "train_label_hash": label_hash(dataset.split_labels("train")),
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "learning_rate": config.learning_rate,
        "momentum": config.momentum,
        "experiment_seed": config.seed,
    }


def _check_existing_runs(ratio_dir: str, dataset: ArrayDataset, config: TrainConfig) -> None:
    """Refuses to add runs to a ratio directory whose runs were trained on other data, with
    another architecture or with other settings (epochs, batch size, learning rate, momentum,
    experiment seed), read from their run.json; runs without one are not checked."""
    want = _settings(dataset, config)
    for name in sorted(os.listdir(ratio_dir)):
        path = os.path.join(ratio_dir, name, RUN_JSON)
        if not name.isdigit() or not os.path.isfile(path):
            continue
        try:
            with open(path, encoding="utf-8") as f:
                info = json.load(f)
        except (OSError, ValueError) as e:
            raise TrainError(f"{path}: unreadable run.json ({e})") from e
        differ = {k: (info.get(k), v) for k, v in want.items() if info.get(k, v) != v}
        data = {k: d for k, d in differ.items() if k in _DATA_FIELDS}
        if data:
            detail = ", ".join(f"{k} {old!r} there, {new!r} now" for k, (old, new) in
                               data.items())
            raise TrainError(
                f"{ratio_dir}: run {name} was trained on other data or another model ({detail}); "
                "use another experiment directory"
            )
        if differ:
            detail = ", ".join(f"{k}: {old!r} in its run.json, {new!r} requested"
                               for k, (old, new) in differ.items())
            raise TrainError(
                f"{ratio_dir}: run {name} was trained with other settings ({detail}); resume "
                "with the run's settings, or use another experiment directory"
            )
        return  # One run tells: all runs of a directory are checked the same way when added.


def run_status(ratio_dir: str, run_id: int) -> str:
    """``complete`` (has aux arrays), ``absent``, or ``blocked`` (a directory without them)."""
    final = os.path.join(ratio_dir, str(run_id))
    if os.path.isfile(os.path.join(final, AUX_ARRAYS)):
        return "complete"
    return "blocked" if os.path.exists(final) else "absent"


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What `train_experiment` did.

    Attributes:
      trained: the runs written by this call.
      skipped: run ids that were already complete.
      seconds: wall time.
      busy: run ids another live process was training (their locks were held), not trained.
      failed: (run id, message) of the runs that failed on a Dask worker (not written); the
        in-process path raises instead.
    """

    trained: tuple[Run, ...]
    skipped: tuple[int, ...]
    seconds: float
    busy: tuple[int, ...] = ()
    failed: tuple[tuple[int, str], ...] = ()


def train_experiment(
    experiment_dir: str | os.PathLike,
    dataset: ArrayDataset,
    subset_ratio: float,
    run_ids: Sequence[int],
    config: TrainConfig = TrainConfig(),  # noqa: B008 (a frozen dataclass)
    progress: bool = True,
    *,
    workers: int = 0,
    scheduler: str | None = None,
    dataset_spec: DatasetSpec | None = None,
    retries: int = 1,
) -> TrainResult:
    """Trains the runs `run_ids` at `subset_ratio` and writes each in the release layout.

    The runs are trained in this process (`workers` 0, `scheduler` None), or on Dask workers:
    a local cluster of `workers` processes, or the existing cluster of `scheduler`. Each task
    trains one group of runs (one run, or K runs of the stacked path: the groups of the
    in-process path, so both give the same runs) and each worker keeps its dataset and
    compiled trainers across tasks (`heldout.train.fanout`). This process holds the runs'
    locks meanwhile, so the rules below hold either way; a run whose worker is killed is
    given to another worker and trained again.

    Complete runs (``<ratio>/<run_id>/aux_arrays.npz`` present) are skipped. Each run to train
    is locked first (``<ratio>/.<run_id>.lock``, an `fcntl.flock` the kernel releases when its
    process dies): runs locked by another live process are left to it (`TrainResult.busy`), so
    processes given overlapping run ids never destroy each other's work; only the temporary
    directories of runs this process holds, which are stale, are removed.

    Args:
      experiment_dir: the ``<experiment>`` directory (created if needed).
      dataset: an in-memory dataset with ``train`` and ``test`` splits (`heldout.data`).
      subset_ratio: fraction of the training set in each run's subset, in (0, 1].
      run_ids: the runs to train.
      config: how to train.
      progress: show progress bars (on Dask, one bar over the runs).
      workers: 0 trains in this process; N >= 1 starts a local cluster of N single-threaded
        worker processes, pinned one per visible GPU when there are GPUs
        (`heldout.cluster.local_cluster`).
      scheduler: the address or scheduler file of an existing Dask cluster (`workers` is
        then ignored).
      dataset_spec: where `dataset` comes from (`DatasetSpec.load` of ``train`` and
        ``test``); required on Dask, where each worker loads it (tasks never carry images) and
        refuses to train when its fingerprint differs from `dataset`'s.
      retries: Dask retries of a task that raised something other than a `HeldoutError`.

    Returns:
      The runs written, the run ids skipped and, on Dask, the runs that failed (a run that
      fails there is named in `TrainResult.failed`; the other runs are still trained).

    Raises:
      TrainError: a bad ratio or run id, no `dataset_spec` on Dask, a dataset that is not an
        `ArrayDataset` (e.g. a TFRecord dataset) or lacks ``train``/``test``, or existing runs
        of the ratio trained on other data, another architecture or with other epochs, batch
        size, learning rate, momentum or experiment seed (their run.json says).
      LayoutError: a run directory that exists without aux arrays (not written by this
        library, which renames a run into place only when complete: remove it).
      ClusterError: an unreachable `scheduler`, or more `workers` than visible GPUs.
    """
    start = time.perf_counter()
    on_dask = workers > 0 or scheduler is not None
    if on_dask and dataset_spec is None:
        raise TrainError("training on Dask workers needs dataset_spec (a "
                         "heldout.data.DatasetSpec: where each worker loads the dataset)")
    if workers < 0:
        raise TrainError(f"workers must be >= 0, got {workers}")
    if not isinstance(dataset, ArrayDataset):
        raise TrainError(
            f"{getattr(dataset, 'name', dataset)!r}: training needs an in-memory dataset "
            f"(heldout.data.ArrayDataset: --dataset, --dataset_npz or --idx_dir), not a "
            f"{type(dataset).__name__}; TFRecord datasets can be evaluated, not trained on"
        )
    for split in ("train", "test"):
        if split not in dataset.labels or split not in dataset.images:
            raise TrainError(f"{dataset.name}: training needs a {split!r} split with images; "
                             f"it has {dataset.splits}")
    ratio = ratio_name(subset_ratio)
    ratio_dir = os.path.join(os.path.abspath(os.fspath(experiment_dir)), ratio)
    os.makedirs(ratio_dir, exist_ok=True)
    run_ids = sorted({int(r) for r in run_ids})
    if any(r < 0 for r in run_ids):
        raise TrainError(f"run ids must be >= 0, got {run_ids[:3]}...")
    status = {r: run_status(ratio_dir, r) for r in run_ids}
    blocked = [r for r, s in status.items() if s == "blocked"]
    if blocked:
        raise LayoutError(
            f"{ratio_dir}: run directories {blocked[:5]} exist without {AUX_ARRAYS}; they were "
            "not written by heldout.train (which renames a run into place only when complete); "
            "remove them to train these runs"
        )
    _check_existing_runs(ratio_dir, dataset, config)
    absent = [r for r in run_ids if status[r] == "absent"]
    trained: list[Run] = []
    with _run_locks(ratio_dir, absent) as (locked, busy):
        # Another process may have completed a run between the status check and the lock.
        todo = [r for r in locked if run_status(ratio_dir, r) == "absent"]
        skipped = tuple(r for r in run_ids if r not in todo and r not in busy)
        plans = plan_runs(config.seed, float(ratio), todo, dataset.num_examples("train"),
                          config.epochs, config.batch_size)
        failed: list[tuple[int, str]] = []
        if plans and on_dask:
            trained, failed = _train_runs_on_dask(dataset_spec, dataset, ratio, ratio_dir, plans,
                                                  config, progress, workers, scheduler,
                                                  retries)
        elif plans:
            state = process_state({}, None, dataset, config)
            trained = _train_runs(state, ratio, ratio_dir, plans, config, progress)
    return TrainResult(tuple(trained), skipped, time.perf_counter() - start, tuple(busy),
                       tuple(sorted(failed)))


def _train_runs_on_dask(spec, dataset, ratio, ratio_dir, plans, config, progress, workers,
                        scheduler, retries):
    """Trains the groups of `plans` on Dask (`heldout.train.fanout`): (runs written,
    [(run id, message)] of the runs that failed)."""
    from heldout.cluster import connect
    from heldout.train.fanout import TrainTask, train_on_dask

    # The calling process decides K (workers may see other devices) and the groups.
    config = dataclasses.replace(config, models_per_step=config.resolved_models_per_step())
    task = TrainTask(spec, fingerprint_dataset(dataset, ("train", "test")), config, ratio,
                     ratio_dir)
    groups = [[p.run_id for p in group] for group in groups_of_runs(plans, config)]
    trained, failed = [], []
    with connect(scheduler, workers, ["heldout.quiet"]) as dask, tqdm(
            total=len(plans), desc=_bar_description(ratio, config), unit="run",
            disable=not progress) as bar:
        for result in train_on_dask(dask, task, groups, retries):
            trained += [Run(os.path.join(ratio_dir, str(r)), ratio, r) for r in result.trained]
            failed += [(r, result.error) for r in result.run_ids if result.error]
            bar.update(len(result.run_ids))
    return sorted(trained, key=lambda r: r.run_id), failed


def process_state(cache: dict, key: object, dataset: ArrayDataset, config: TrainConfig) -> dict:
    """This process's trainers for `config` on `dataset`, built on first use and kept in
    `cache` across groups of runs (one entry: another `key` replaces it).

    Holds ``dataset``, its ``fingerprint``, the per-step ``trainer`` (`make_model_trainer`;
    the stacked path also uses its model to write checkpoints) and, for the stacked path, the
    model inputs and one compiled `stacked.StackedTrainer` per group size.
    """
    if "dataset" not in cache or cache.get("key") != key:
        cache.clear()
        cache.update(key=key, dataset=dataset,
                     fingerprint=fingerprint_dataset(dataset, ("train", "test")))
    if "trainer" not in cache:
        cache["trainer"] = make_model_trainer(config.arch, dataset.num_classes,
                                              dataset.image_shape, config.learning_rate,
                                              config.momentum)
    return cache


def groups_of_runs(plans: Sequence, config: TrainConfig) -> list[list]:
    """The runs trained together: K at a time on the stacked path, one at a time otherwise."""
    k = config.resolved_models_per_step()
    return [list(plans[i:i + k]) for i in range(0, len(plans), k)]


def train_group(state: dict, ratio: str, ratio_dir: str, group: Sequence[RunPlan],
                config: TrainConfig, progress: bool) -> list[Run]:
    """Trains a group of runs (`groups_of_runs`) and writes each run that no other process
    completed meanwhile; `progress` shows the steps of the group.

    Raises:
      DivergedError: a run's loss became non-finite (nothing of the group is written).
    """
    train = (_train_stacked_group if config.resolved_path() == "stacked"
             else _train_per_step_run)
    return train(state, ratio, ratio_dir, group, config, progress)


def _bar_description(ratio: str, config: TrainConfig) -> str:
    if config.resolved_path() == "stacked":
        return f"runs at {ratio} ({config.resolved_models_per_step()} per step)"
    return f"runs at {ratio}"


def _train_runs(state, ratio, ratio_dir, plans, config, progress):
    groups = groups_of_runs(plans, config)
    trained = []
    with tqdm(total=len(plans), desc=_bar_description(ratio, config), unit="run",
              disable=not progress) as bar:
        for group in groups:
            # Per-step runs show their steps; stacked runs only when there is one group.
            steps = progress and (config.resolved_path() == "per_step" or len(groups) == 1)
            trained += train_group(state, ratio, ratio_dir, group, config, steps)
            bar.update(len(group))
    return trained


def _train_per_step_run(state, ratio, ratio_dir, group, config, progress):
    (plan,) = group
    trainer, dataset = state["trainer"], state["dataset"]
    t0 = time.perf_counter()
    tmp = _start_run(ratio_dir, plan.run_id)
    try:
        train_model_run(trainer, dataset, plan, progress)
        train_correct, test_correct = evaluate_correctness(
            trainer.evaluator, dataset, config.eval_batch_size)
        aux = make_aux_arrays(plan.subsample_idx, train_correct, test_correct,
                              state["fingerprint"])
        if config.wants_checkpoint(plan.run_id):
            _write_checkpoint(trainer, tmp.path, plan.epochs)
        info = _run_info(plan, ratio, config, dataset, aux, time.perf_counter() - t0,
                         "per_step", 1)
        final = os.path.join(ratio_dir, str(plan.run_id))
    except BaseException:
        _discard(tmp)
        raise
    try:
        finished = _finish_run(tmp, final, aux, info)
    except BaseException:
        _discard(tmp)
        raise
    return [Run(final, ratio, plan.run_id)] if finished else []


def _write_checkpoint(trainer: ModelTrainer, run_dir: str, epochs: int) -> None:
    prefix = os.path.join(run_dir, CHECKPOINT_DIR, f"ckpt-{epochs}")
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    trainer.checkpoint().write(prefix)


def _stacked_inputs(state: dict) -> dict:
    """The stacked path's flattened float32 inputs and labels (made once per process)."""
    if "stacked" not in state:
        dataset = state["dataset"]
        n_train = dataset.num_examples("train")
        x_train = _images(dataset, "train", np.arange(n_train)).reshape(n_train, -1)
        x_test = _images(dataset, "test", np.arange(dataset.num_examples("test")))
        y_train = dataset.split_labels("train")
        state["stacked"] = {
            "x_train": x_train, "x_test": x_test.reshape(len(x_test), -1),
            "y_train": y_train, "y_test": dataset.split_labels("test"),
            "x_train_t": tf.convert_to_tensor(x_train),
            "y_train_t": tf.convert_to_tensor(y_train.astype(np.int32)),
            "layer_sizes": stacked.from_models([state["trainer"].model]).layer_sizes,
            "trainers": {},
        }
    return state["stacked"]


def _train_stacked_group(state, ratio, ratio_dir, group, config, progress):
    k = config.resolved_models_per_step()
    trainer, dataset = state["trainer"], state["dataset"]
    inputs = _stacked_inputs(state)
    trainers: dict[int, stacked.StackedTrainer] = inputs["trainers"]
    trained = []
    t0 = time.perf_counter()
    tmps: list[TempRun | None] = [_start_run(ratio_dir, plan.run_id) for plan in group]
    try:
        if len(group) not in trainers:
            trainers[len(group)] = stacked.make_trainer(inputs["layer_sizes"], len(group),
                                                        config.jit_compile)
        params = stacked.from_models([
            initial_model("mlp", dataset.num_classes, dataset.image_shape, p.init_seed)
            for p in group
        ])
        batches = np.stack([p.batches() for p in group], axis=1)
        result = trainers[len(group)].train(
            params, inputs["x_train_t"], inputs["y_train_t"], batches, config.learning_rate,
            config.momentum, steps_per_call=group[0].steps_per_epoch, progress=progress)
        _check_finite_weights(result.params, group)
        if all(config.wants_checkpoint(p.run_id) for p in group):
            train_correct = test_correct = [None] * len(group)  # Evaluated below.
        else:
            train_correct = stacked.correctness_stacked(result.params, inputs["x_train"],
                                                        inputs["y_train"])
            test_correct = stacked.correctness_stacked(result.params, inputs["x_test"],
                                                       inputs["y_test"])
        seconds = (time.perf_counter() - t0) / len(group)
        for i, (plan, tmp) in enumerate(zip(group, tmps, strict=True)):
            correct = (train_correct[i], test_correct[i])
            if config.wants_checkpoint(plan.run_id):
                stacked.assign_to_model(trainer.model, result.params, i)
                stacked.assign_momentum(trainer.model, trainer.optimizer, result.velocity, i)
                trainer.epoch.assign(plan.epochs)
                trainer.global_step.assign(result.steps)
                # Evaluated as `heldout verify` will, so that every prediction matches.
                correct = evaluate_correctness(trainer.evaluator, dataset,
                                               config.eval_batch_size)
                _write_checkpoint(trainer, tmp.path, plan.epochs)
            aux = make_aux_arrays(plan.subsample_idx, *correct, state["fingerprint"])
            info = _run_info(plan, ratio, config, dataset, aux, seconds, "stacked", k)
            final = os.path.join(ratio_dir, str(plan.run_id))
            finished = _finish_run(tmp, final, aux, info)
            tmps[i] = None  # renamed into place, or removed; its lock released
            if finished:
                trained.append(Run(final, ratio, plan.run_id))
    except BaseException:
        for tmp in tmps:
            if tmp is not None:  # not renamed into place
                _discard(tmp)
        raise
    return trained


def _check_finite_weights(params: stacked.StackedMLP, group: Sequence[RunPlan]) -> None:
    """Refuses the stacked runs whose weights became NaN or infinite (a non-finite loss makes
    its gradients, and so the weights, non-finite).

    Raises:
      DivergedError: naming the runs.
    """
    finite = np.ones(len(group), bool)
    for array in (*params.weights, *params.biases):
        finite &= np.isfinite(array.reshape(len(group), -1)).all(axis=1)
    if not finite.all():
        bad = [plan.run_id for plan, ok in zip(group, finite, strict=True) if not ok]
        raise DivergedError(
            f"runs {bad}: the training loss became non-finite (NaN or infinite weights after "
            "training); these runs are not written (lower the learning rate)"
        )


def load_run_info(run: Run | str | os.PathLike) -> dict:
    """The ``run.json`` of a run written by `train_experiment` (seed, configuration, accuracies).

    Raises:
      FileNotFoundError: the run has no run.json (e.g. a released run).
    """
    path = os.path.join(run.path if isinstance(run, Run) else os.fspath(run), RUN_JSON)
    with open(path, encoding="utf-8") as f:
        return json.load(f)
