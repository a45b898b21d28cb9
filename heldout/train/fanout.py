"""Training runs on Dask workers: one task per group of runs (one run, or K stacked MLP runs).

The process that calls `heldout.train.train_experiment` checks the experiment directory, locks
the runs to train and groups them as the in-process path does (`groups_of_runs`); each task
carries a `TrainTask` (a `DatasetSpec`, the configuration, paths: never images) and its
group's run ids. A worker loads the dataset once and keeps it with its compiled trainers across
tasks (`heldout.cluster.worker_state`: one task at a time, however many threads the worker
has), and writes each run as the in-process path does: in a hidden temporary directory
renamed into place when complete. A worker killed mid-run leaves at most that temporary
directory (and its free owner lock); the scheduler gives the task to another worker, which
removes it and trains the run again. A directory whose owner lock is still held (a task that
outlived its command, which Dask cannot interrupt) is left to its writer
(`heldout.train.procedure._start_run`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

from heldout.cluster import Dask, run_tasks, worker_state
from heldout.data.fingerprint import Fingerprint, differences
from heldout.data.spec import DatasetSpec
from heldout.errors import HeldoutError
from heldout.train.config import TrainConfig
from heldout.train.plan import TrainError, plan_runs

_WORKER_ATTR = "_heldout_train_state"


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
    from heldout.train import procedure

    run_ids = tuple(int(r) for r in run_ids)
    try:
        with worker_state(_WORKER_ATTR) as cache:  # one task at a time per worker
            if cache.get("key") == task.state_key():
                dataset = cache["dataset"]
            else:
                dataset = task.dataset.load(("train", "test"))
            state = procedure.process_state(cache, task.state_key(), dataset, task.config)
            differ = differences(state["fingerprint"], task.fingerprint)
            if differ:
                raise TrainError(f"the worker loaded another dataset from {task.dataset} than "
                                 f"the calling process: {'; '.join(differ)}")
            config = task.config
            plans = plan_runs(config.seed, float(task.ratio), run_ids,
                              dataset.num_examples("train"), config.epochs, config.batch_size)
            runs = procedure.train_group(state, task.ratio, task.ratio_dir, plans, config,
                                         False)
    except HeldoutError as e:
        return GroupResult(run_ids, (), str(e))
    return GroupResult(run_ids, tuple(r.run_id for r in runs))


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
