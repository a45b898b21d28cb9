"""Run ids, shards, seeds and subsets of the heldout procedure (pure numpy).

Everything random in a run comes from its seed, ``run_seed(seed, ratio, run_id)``: the subset
and the batch order (`plan_run`, `RunPlan.batches`) and the TensorFlow seed of its initial
weights. `plan_runs` gives the plans of a list of run ids at a ratio: the one place both the
in-process and the Dask paths get them from.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

import numpy as np

# Importable from here as before (heldout.train.trainer raises it).
from heldout.errors import DivergedError as DivergedError
from heldout.errors import InputError, TrainError
from heldout.experiment import ratio_dir_name


def ratio_name(subset_ratio: float) -> str:
    """The directory name of a subset ratio, e.g. ``0.7`` (as the release names them).

    Raises:
      TrainError: a ratio outside (0, 1].
    """
    try:
        return ratio_dir_name(subset_ratio)
    except InputError as e:
        raise TrainError(f"subset ratio must lie in (0, 1]: {e}") from None


def parse_shard(spec: str) -> tuple[int, int]:
    """``i/n`` -> (i, n) with 0 <= i < n: this process's share is every n-th run id from i.

    Raises:
      TrainError: not of the form ``i/n`` with 0 <= i < n.
    """
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(spec))
    if not m or not int(m.group(1)) < int(m.group(2)):
        raise TrainError(f"bad shard {spec!r}: expected i/n with 0 <= i < n, e.g. 0/4")
    return int(m.group(1)), int(m.group(2))


def shard_run_ids(run_ids: Sequence[int], shard: int, num_shards: int) -> list[int]:
    """Shard `shard` of `num_shards` of the sorted run ids: positions shard, shard + n, ..."""
    return sorted(run_ids)[shard::num_shards]


def run_seed(seed: int, subset_ratio: float, run_id: int) -> int:
    """The seed of run `run_id` at a subset ratio in an experiment of seed `seed` (63 bits).

    Derived with `numpy.random.SeedSequence` from (seed, ratio in millionths, run_id), so runs
    at different ratios or ids are independent.
    """
    entropy = [int(seed), int(round(float(subset_ratio) * 1_000_000)), int(run_id)]
    state = np.random.SeedSequence(entropy).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & (2**63 - 1)


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """What a run trains on, all drawn from its seed.

    Attributes:
      run_id: the run's id.
      seed: the run's seed.
      subsample_idx: int64 [round(ratio * num_train)], the subset, in drawing order.
      init_seed: the TensorFlow seed of the initial weights.
      num_train: training-set size.
      epochs, batch_size: as trained.
    """

    run_id: int
    seed: int
    subsample_idx: np.ndarray
    init_seed: int
    num_train: int
    epochs: int
    batch_size: int

    @property
    def steps_per_epoch(self) -> int:
        return -(-len(self.subsample_idx) // self.batch_size)

    @property
    def num_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def batches(self) -> np.ndarray:
        """int64 [num_steps, batch_size]: training-set positions of each step's batch.

        Each epoch is a fresh permutation of the subset cut into batches; the last batch of an
        epoch is padded with -1 when the subset is not a multiple of the batch size.
        """
        rng = _plan_rng(self.seed, self.num_train, len(self.subsample_idx))[0]
        m, b = len(self.subsample_idx), self.batch_size
        out = np.full((self.epochs, self.steps_per_epoch * b), -1, np.int64)
        for epoch in range(self.epochs):
            out[epoch, :m] = self.subsample_idx[rng.permutation(m)]
        return out.reshape(self.num_steps, b)


def _plan_rng(seed: int, num_train: int, size: int) -> tuple[np.random.Generator, np.ndarray, int]:
    rng = np.random.default_rng(seed)
    init_seed = int(rng.integers(2**31 - 1))
    subset = rng.choice(num_train, size=size, replace=False).astype(np.int64)
    return rng, subset, init_seed


def plan_run(
    seed: int, run_id: int, num_train: int, subset_ratio: float, epochs: int, batch_size: int
) -> RunPlan:
    """The subset, initial-weight seed and batch order of a run of seed `seed`.

    Raises:
      TrainError: a ratio outside (0, 1] or a subset that would be empty.
    """
    ratio_name(subset_ratio)
    size = int(round(float(subset_ratio) * num_train))
    if size < 1:
        raise TrainError(f"subset ratio {subset_ratio} of {num_train} examples is empty")
    _, subset, init_seed = _plan_rng(seed, num_train, size)
    return RunPlan(int(run_id), int(seed), subset, init_seed, int(num_train), int(epochs),
                   int(batch_size))


def plan_runs(
    seed: int, subset_ratio: float, run_ids: Sequence[int], num_train: int, epochs: int,
    batch_size: int,
) -> list[RunPlan]:
    """The plans of runs `run_ids` at `subset_ratio` in an experiment of seed `seed`: run r's
    is ``plan_run(run_seed(seed, subset_ratio, r), r, ...)``, in the order of `run_ids`.

    Raises:
      TrainError: a ratio outside (0, 1] or a subset that would be empty.
    """
    return [plan_run(run_seed(seed, subset_ratio, r), r, num_train, subset_ratio, epochs,
                     batch_size) for r in run_ids]
