"""Training runs on Dask workers: one task per group of runs (one run, or K stacked MLP runs).

The process that calls `heldout.train.train_experiment` checks the experiment directory, locks
the runs to train and groups them as the in-process path does
(`heldout.train.groups.groups_of_runs`), then calls `train_runs_on_dask`; each task carries a
`TrainTask` (a `DatasetSpec`, the configuration, paths: never images) and its group's run ids.
A worker loads the dataset once and keeps it with its compiled trainers across tasks (one
`heldout.train.groups.ProcessState` in its `heldout.cluster.worker_state`: one task at a time,
however many threads the worker has), and writes each run as the in-process path does
(`heldout.train.groups.train_group`): in a hidden temporary directory renamed into place when
complete. A worker killed mid-run leaves at most that temporary directory (and its free owner
lock); the scheduler gives the task to another worker, which removes it and trains the run
again. A directory whose owner lock is still held (a task that outlived its command, which Dask
cannot interrupt) is left to its writer (`heldout.train.rundir.start_run`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence

from tqdm import tqdm

from heldout.cluster import Dask, connect, run_tasks, worker_state
from heldout.data import load_dataset
from heldout.data.arrays import ArrayDataset
from heldout.data.fingerprint import Fingerprint, differences, fingerprint_dataset
from heldout.data.spec import DatasetSpec
from heldout.errors import HeldoutError, TrainError
from heldout.experiment import Run
from heldout.train.config import TrainConfig
from heldout.train.groups import (
    ProcessState,
    bar_description,
    groups_of_runs,
    process_state,
    train_group,
)
from heldout.train.plan import RunPlan, plan_runs

# The worker's dict (`heldout.cluster.worker_state`) and the key of its one `ProcessState`.
_WORKER_ATTR = "_heldout_train_state"
_STATE = "state"


@dataclasses.dataclass(frozen=True)
class TrainTask:
    """What every task of one `train_experiment` call shares.

    Attributes:
      dataset: where each worker loads the dataset (``train`` and ``test`` splits) from.
      fingerprint: the dataset's fingerprint as the calling process loaded it; a worker that
        loads another dataset (split sizes, labels: `heldout.data.fingerprint.differences`)
        refuses to train.
      config: how to train (with the stacked path's K resolved by the calling process).
      ratio: the subset ratio's directory name, e.g. ``0.7``.
      ratio_dir: the absolute ``<experiment>/<ratio>`` directory.
    """

    dataset: DatasetSpec
    fingerprint: Fingerprint
    config: TrainConfig
    ratio: str
    ratio_dir: str

    def state_key(self) -> tuple:
        """What a worker's cached dataset and trainers depend on."""
        return (self.dataset, self.config)


@dataclasses.dataclass(frozen=True)
class GroupResult:
    """The outcome of one task.

    Attributes:
      run_ids: the group's runs.
      trained: those written by this task (the others were completed by another process
        meanwhile), all of them unless `error`.
      error: '' on success, else why none of the group was written.
    """

    run_ids: tuple[int, ...]
    trained: tuple[int, ...] = ()
    error: str = ""


def train_task(task: TrainTask, run_ids: Sequence[int]) -> GroupResult:
    """Trains one group of runs on this Dask worker (the task function).

    Returns:
      A `GroupResult`; a `HeldoutError` (a dataset that cannot be loaded or differs, a run
      whose loss diverged) gives a result with `error` set and writes nothing of the group.
    """
    run_ids = tuple(int(r) for r in run_ids)
    try:
        with worker_state(_WORKER_ATTR) as cache:  # one task at a time per worker
            state = _worker_process_state(cache, task)
            differ = differences(state.fingerprint, task.fingerprint)
            if differ:
                raise TrainError(f"the worker loaded another dataset from {task.dataset} than "
                                 f"the calling process: {'; '.join(differ)}")
            config = task.config
            plans = plan_runs(config.seed, float(task.ratio), run_ids,
                              state.dataset.num_examples("train"), config.epochs,
                              config.batch_size)
            runs = train_group(state, task.ratio, task.ratio_dir, plans, config, False)
    except HeldoutError as e:
        return GroupResult(run_ids, (), str(e))
    return GroupResult(run_ids, tuple(r.run_id for r in runs))


def _worker_process_state(cache: dict, task: TrainTask) -> ProcessState:
    """The worker's `ProcessState` for `task`'s dataset and configuration: the one it keeps
    (``cache[_STATE]``), or a new one (the dataset loaded) replacing it."""
    state = cache.get(_STATE)
    if state is None or state.key != task.state_key():
        cache.pop(_STATE, None)  # released before the next dataset is loaded
        dataset = load_dataset(task.dataset, ("train", "test"))
        state = cache[_STATE] = process_state(dataset, task.config, task.state_key())
    return state


def train_on_dask(
    dask: Dask, task: TrainTask, groups: Sequence[Sequence[int]], retries: int = 1
) -> Iterator[GroupResult]:
    """Runs `train_task` for every group of run ids on the cluster.

    Yields:
      A `GroupResult` per group as it finishes; a task that crashed (after `retries`) or whose
      worker was lost for good gives one with `error` set.
    """
    args = [(task, tuple(group)) for group in groups]
    for i, result, error in run_tasks(dask, train_task, args, retries):
        if error is not None:
            result = GroupResult(tuple(groups[i]), (), f"{type(error).__name__}: {error}")
        yield result


def train_runs_on_dask(
    spec: DatasetSpec, dataset: ArrayDataset, ratio: str, ratio_dir: str,
    plans: Sequence[RunPlan], config: TrainConfig, progress: bool, workers: int,
    scheduler: str | None, retries: int,
) -> tuple[list[Run], list[tuple[int, str]]]:
    """Trains the runs of `plans` (locked by the caller) on Dask, one task per group.

    Args:
      spec: where each worker loads `dataset` from.
      dataset: the dataset as the calling process loaded it (its fingerprint goes with the
        tasks).
      ratio, ratio_dir: the subset ratio's directory name and absolute directory.
      plans: the runs to train (`heldout.train.plan.plan_runs`); the tasks carry their ids.
      config: how to train.
      progress: show a progress bar over the runs.
      workers, scheduler, retries: as `heldout.train.train_experiment`'s.

    Returns:
      (the runs written, in run-id order; (run id, message) of each run that failed).
    """
    # The calling process decides K (workers may see other devices) and the groups.
    config = dataclasses.replace(config, models_per_step=config.resolved_models_per_step())
    task = TrainTask(spec, fingerprint_dataset(dataset, ("train", "test")), config, ratio,
                     ratio_dir)
    groups = [[p.run_id for p in group] for group in groups_of_runs(plans, config)]
    trained, failed = [], []
    with connect(scheduler, workers, ["heldout.quiet"]) as dask, tqdm(
            total=len(plans), desc=bar_description(ratio, config), unit="run",
            disable=not progress) as bar:
        for result in train_on_dask(dask, task, groups, retries):
            trained += [Run(os.path.join(ratio_dir, str(r)), ratio, r) for r in result.trained]
            failed += [(r, result.error) for r in result.run_ids if result.error]
            bar.update(len(result.run_ids))
    return sorted(trained, key=lambda r: r.run_id), failed
