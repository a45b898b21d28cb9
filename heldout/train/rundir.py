"""Run directories: how a trained run gets into the release layout, whole or not at all.

A run is written in a hidden temporary directory ``<ratio>/.<run_id>.tmp-X`` (`start_run`) and
renamed to ``<ratio>/<run_id>`` once its checkpoint (when it has one), ``outputs.npz`` (its
recorded outputs: `heldout.experiment.RecordedOutputs`), ``aux_arrays.npz`` and ``run.json``
are in it (`finish_run`), so `heldout.experiment.open_experiment` never counts a half-written
run. Locks (`heldout.lock`, released by the kernel when their process dies):

- ``<ratio>/.<run_id>.lock`` (`run_locks`): held by the process that decides to train the run
  (on Dask, the process that sends the task) for as long as it does; a run locked by another
  live process is left to it.
- ``<ratio>/.<run_id>.owner-X``: held by the writer of ``.<run_id>.tmp-X`` (`TempRun`) until
  the directory is renamed into place or removed; a temporary directory whose owner lock is free
  is stale and is removed by the next `start_run` of the run.

``run.json`` records the run's seed, configuration, input preprocessing and accuracies
(`run_info`); a ratio directory's runs must share the data, its preprocessing, the
architecture and the training settings (`check_existing_runs`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import os
import secrets
import shutil
from collections.abc import Collection, Iterator, Sequence

import tensorflow as tf

from heldout import __version__
from heldout.atomic import fsync_directory, write_text_atomic
from heldout.data.arrays import ArrayDataset
from heldout.data.fingerprint import images_digest, label_hash
from heldout.errors import HeldoutError, TrainError
from heldout.experiment import (
    AUX_ARRAYS,
    OUTPUTS,
    RUN_JSON,
    AuxArrays,
    RecordedOutputs,
    load_recorded_inputs,
    load_run_info,
    write_aux_arrays,
    write_outputs,
)
from heldout.lock import try_lock, unlock
from heldout.train.config import TrainConfig
from heldout.train.plan import RunPlan

__all__ = ["RUN_JSON", "TempRun", "check_existing_runs", "discard_run", "finish_run",
           "load_run_info", "run_info", "run_locks", "run_status", "start_run"]


@dataclasses.dataclass(frozen=True)
class TempRun:
    """A temporary run directory of this process and the owner lock it holds (`start_run`).

    Attributes:
      path: ``<ratio>/.<run_id>.tmp-X``.
      owner: ``<ratio>/.<run_id>.owner-X``, locked by this process.
      fd: the descriptor holding the lock (released once, by `finish_run` or `discard_run`).
    """

    path: str
    owner: str
    fd: int


def start_run(ratio_dir: str, run_id: int) -> TempRun:
    """Removes stale temporary directories of the run and makes a new one.

    Only called with the run's lock held (`run_locks`: by this process, or on a Dask worker by
    the process that sent the task). Each temporary directory ``.<run_id>.tmp-X`` has an owner
    lock ``.<run_id>.owner-X`` (`heldout.lock`) that its writer holds until the directory is
    renamed into place or removed (`finish_run`, `discard_run`): one whose lock is free is stale
    (its writer died, e.g. a killed worker) and is removed; one whose lock is held is left
    alone, for its writer may outlive the process that sent it (a Dask task keeps running on
    its worker after its command stopped), and removing it under that writer would let it
    rename a run without its checkpoint into place. The directory is created with mode 0o777
    less the umask (the permissions of a normally created directory; the umask is never
    changed).
    """
    remove_stale_runs(ratio_dir, [run_id])
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


def remove_stale_runs(ratio_dir: str, run_ids: Collection[int]) -> None:
    """Removes the temporary directories of the runs `run_ids` whose owner lock is free (their
    writer died: a worker killed mid-run, or stopped with its cluster by Ctrl-C), and their
    free owner locks left without a directory; those of a live writer are left to it (see
    `start_run`). Only called with the runs' locks held (`run_locks`)."""
    wanted = {str(r) for r in run_ids}

    def of_wanted(path: str, kind: str) -> bool:  # ``.<run_id>.<kind>-X`` of a wanted run
        return os.path.basename(path)[1:].split(f".{kind}-", 1)[0] in wanted

    pattern = os.path.join(glob.escape(ratio_dir), ".*.{}-*")
    for stale in filter(lambda p: of_wanted(p, "tmp"), glob.glob(pattern.format("tmp"))):
        owner = _owner_path(stale)
        fd = try_lock(owner)
        if fd is None:  # its writer is alive
            continue
        try:
            shutil.rmtree(stale, ignore_errors=True)
        finally:
            unlock(owner, fd)
    for owner in filter(lambda p: of_wanted(p, "owner"), glob.glob(pattern.format("owner"))):
        if not os.path.lexists(owner.replace(".owner-", ".tmp-")):  # killed after removing it
            fd = try_lock(owner)
            if fd is not None:
                unlock(owner, fd)


def _owner_path(tmp: str) -> str:
    """``<ratio>/.<run_id>.owner-X``: the owner lock of the temporary run ``.<run_id>.tmp-X``."""
    head, name = os.path.split(tmp)
    return os.path.join(head, name.replace(".tmp-", ".owner-", 1))


def discard_run(tmp: TempRun) -> None:
    """Removes a temporary run not renamed into place, then releases its owner lock."""
    shutil.rmtree(tmp.path, ignore_errors=True)
    unlock(tmp.owner, tmp.fd)


def finish_run(tmp: TempRun, final: str, aux: AuxArrays, info: dict,
               outputs: RecordedOutputs) -> bool:
    """Writes the recorded outputs (``outputs.npz``), the aux arrays and run.json into `tmp`
    (each atomically) and renames it to `final`, so a run appears with all of them or not at
    all; releases `tmp`'s owner lock after the rename, or after removing `tmp` (it does not
    when it raises: the caller then `discard_run`s it).

    Returns False (and removes `tmp`) when another process completed the run meanwhile.
    """
    write_outputs(os.path.join(tmp.path, OUTPUTS), outputs)
    write_aux_arrays(os.path.join(tmp.path, AUX_ARRAYS), aux)
    write_text_atomic(os.path.join(tmp.path, RUN_JSON), json.dumps(info, indent=1))
    try:
        os.rename(tmp.path, final)
    except OSError:
        if os.path.isfile(os.path.join(final, AUX_ARRAYS)):
            discard_run(tmp)
            return False
        raise
    unlock(tmp.owner, tmp.fd)
    fsync_directory(os.path.dirname(final))
    return True


def _lock_path(ratio_dir: str, run_id: int) -> str:
    return os.path.join(ratio_dir, f".{run_id}.lock")


@contextlib.contextmanager
def run_locks(ratio_dir: str, run_ids: Sequence[int]) -> Iterator[tuple[list[int], list[int]]]:
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


def run_status(ratio_dir: str, run_id: int) -> str:
    """``complete`` (has aux arrays), ``absent``, or ``blocked`` (a directory without them)."""
    final = os.path.join(ratio_dir, str(run_id))
    if os.path.isfile(os.path.join(final, AUX_ARRAYS)):
        return "complete"
    return "blocked" if os.path.exists(final) else "absent"


# The run.json fields of the data and model, reported apart from the training settings (epochs,
# batch size, learning rate, momentum, experiment seed) when a ratio directory's runs differ.
_DATA_FIELDS = ("arch", "num_train", "num_test", "train_label_hash", "input_preprocessing")


def _settings(dataset: ArrayDataset, config: TrainConfig) -> dict:
    """What runs of one ratio directory must share (stored in each run.json): the data, how
    its images become model input (`heldout.data.preprocessing`) and the architecture
    (`_DATA_FIELDS`), and the training settings."""
    return {
        "arch": config.arch,
        "num_train": dataset.num_examples("train"),
        "num_test": dataset.num_examples("test"),
        "train_label_hash": label_hash(dataset.split_labels("train")),
        "input_preprocessing": dataset.input_preprocessing().to_dict(),
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "learning_rate": config.learning_rate,
        "momentum": config.momentum,
        "experiment_seed": config.seed,
    }


def run_info(
    plan: RunPlan, ratio: str, config: TrainConfig, dataset: ArrayDataset, aux: AuxArrays,
    seconds: float, path: str, models_per_step: int,
) -> dict:
    """The ``run.json`` of a trained run: its id, ratio, seeds, dataset, how the dataset's
    images became model input (``input_preprocessing``: `heldout.data.preprocessing`, what
    `heldout export` writes into the model's metadata), settings, training path (``per_step``
    or ``stacked``, K), accuracies (``train``, ``removed``, ``test``), wall time in seconds, and
    the versions of heldout and TensorFlow."""
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


def check_existing_runs(ratio_dir: str, dataset: ArrayDataset, config: TrainConfig) -> None:
    """Refuses to add runs to a ratio directory whose runs were trained on other data, with
    another architecture or with other settings (epochs, batch size, learning rate, momentum,
    experiment seed), read from their run.json; runs without one are not checked. The labels'
    hash does not tell other images with the same labels (shifted, inverted): where the run
    recorded its outputs, the digest of the training images they were computed on
    (`heldout.experiment.RecordedInputs`) is compared with the dataset's too.

    Raises:
      TrainError: naming the ratio directory, the run and the fields that differ, or a
        run.json or recorded inputs that cannot be read.
    """
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
        _check_recorded_images(ratio_dir, name, dataset)
        return  # One run tells: all runs of a directory are checked the same way when added.


def _check_recorded_images(ratio_dir: str, name: str, dataset: ArrayDataset) -> None:
    """Refuses `dataset` when run `name` recorded its outputs on other training images."""
    path = os.path.join(ratio_dir, name, OUTPUTS)
    if not os.path.isfile(path):
        return
    try:
        recorded = load_recorded_inputs(path).images("train")
    except HeldoutError as e:
        raise TrainError(f"{path}: unreadable recorded inputs ({e})") from e
    here = images_digest(dataset, "train")
    if recorded and here and recorded != here:
        raise TrainError(
            f"{ratio_dir}: run {name} was trained on other training images with the same labels "
            f"({recorded} there, {here} now); use another experiment directory")
