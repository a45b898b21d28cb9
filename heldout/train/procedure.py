"""The heldout procedure: `train_experiment` trains the runs of a subset ratio and writes each
in the release layout.

It checks the dataset, the ratio directory (`heldout.train.rundir`: complete runs are skipped,
runs of other data or settings refused), locks the runs to train, plans them
(`heldout.train.plan.plan_runs`) and trains them group after group in this process
(`heldout.train.groups`) or one group per task on Dask workers (`heldout.train.fanout`).
Dependencies inside `heldout.train` flow one way: ``procedure`` -> ``fanout`` -> ``groups`` ->
``rundir`` -> ``config`` -> ``stacked`` and ``plan``, and ``groups`` -> ``trainer`` -> ``plan``
(no module imports one above it; the `lint-imports` contracts in pyproject.toml fail on a cycle).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence

from heldout.data.arrays import ArrayDataset
from heldout.data.spec import DatasetSpec
from heldout.errors import LayoutError, TrainError, counting_interrupts
from heldout.experiment import AUX_ARRAYS, Run
from heldout.train.config import TrainConfig
from heldout.train.fanout import train_runs_on_dask
from heldout.train.groups import process_state, train_groups
from heldout.train.plan import plan_runs, ratio_name
from heldout.train.rundir import (
    check_existing_runs,
    remove_stale_runs,
    run_locks,
    run_status,
)


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
      dataset_spec: where `dataset` comes from (`heldout.data.load_dataset` of ``train`` and
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
      Interrupted: Ctrl-C while runs were trained, with the complete runs of `run_ids` counted
        once the cluster is shut down; a run being trained is not written, nor is anything of
        it left (a run still trained by a worker of an external cluster is left to it).
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
            f"(heldout.data.ArrayDataset: a TFDS dataset, an .npz file or IDX files), not a "
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
    check_existing_runs(ratio_dir, dataset, config)
    absent = [r for r in run_ids if status[r] == "absent"]
    trained: list[Run] = []

    def complete() -> int:  # on Ctrl-C, once the cluster is shut down
        return sum(run_status(ratio_dir, r) == "complete" for r in run_ids)

    with counting_interrupts(len(run_ids), complete), \
            run_locks(ratio_dir, absent) as (locked, busy):
        # Another process may have completed a run between the status check and the lock.
        todo = [r for r in locked if run_status(ratio_dir, r) == "absent"]
        skipped = tuple(r for r in run_ids if r not in todo and r not in busy)
        plans = plan_runs(config.seed, float(ratio), todo, dataset.num_examples("train"),
                          config.epochs, config.batch_size)
        failed: list[tuple[int, str]] = []
        try:
            if plans and on_dask:
                trained, failed = train_runs_on_dask(dataset_spec, dataset, ratio, ratio_dir,
                                                     plans, config, progress, workers,
                                                     scheduler, retries)
            elif plans:
                state = process_state(dataset, config)
                trained = train_groups(state, ratio, ratio_dir, plans, config, progress)
        except KeyboardInterrupt:  # what the stopped workers were writing, before the unlock
            remove_stale_runs(ratio_dir, todo)
            raise
    return TrainResult(tuple(trained), skipped, time.perf_counter() - start, tuple(busy),
                       tuple(sorted(failed)))
