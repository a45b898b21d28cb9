"""How each run is trained: `TrainConfig` (architecture, epochs, optimizer, training path)."""

from __future__ import annotations

import dataclasses

from heldout.errors import TrainError
from heldout.models import ARCHITECTURES
from heldout.train import stacked

PATHS = ("auto", "per_step", "stacked")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How each run is trained.

    Attributes:
      arch: an architecture of `heldout.models` (``mlp``, ``small_inception``, ``resnet50``).
      epochs: passes over the run's subset.
      batch_size: examples per step.
      learning_rate, momentum: momentum SGD (``snt.optimizers.Momentum``), constant rate.
      seed: the experiment's seed; each run's seed is `run_seed(seed, ratio, run_id)`.
      path: ``auto``, ``per_step`` or ``stacked`` (MLP only); see the module docstring.
      models_per_step: K for the stacked path (default: `stacked.default_models_per_step`).
      checkpoint_every: write checkpoints for runs whose id is a multiple of this (1: every
        run; 0: none). Estimates need only the aux arrays; a checkpoint lets `heldout verify`
        re-evaluate the run.
      eval_batch_size: examples per evaluation call (`heldout verify`'s default is 200).
      jit_compile: compile the stacked path's loop with XLA.
    """

    arch: str = "mlp"
    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 0.1
    momentum: float = 0.9
    seed: int = 0
    path: str = "auto"
    models_per_step: int | None = None
    checkpoint_every: int = 1
    eval_batch_size: int = 200
    jit_compile: bool = True

    def __post_init__(self):
        if self.arch not in ARCHITECTURES:
            raise TrainError(f"unknown arch {self.arch!r}; expected one of {list(ARCHITECTURES)}")
        if self.path not in PATHS:
            raise TrainError(f"unknown path {self.path!r}; expected one of {list(PATHS)}")
        if self.path == "stacked" and self.arch != "mlp":
            raise TrainError(f"the stacked path trains the MLP only, not {self.arch!r}")
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise TrainError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.models_per_step is not None and self.models_per_step < 1:
            raise TrainError(f"models_per_step must be >= 1, got {self.models_per_step}")
        if self.checkpoint_every < 0:
            raise TrainError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")
        if not self.learning_rate > 0 or not 0 <= self.momentum < 1:
            raise TrainError(
                f"need learning_rate > 0 and 0 <= momentum < 1, got {self.learning_rate} and "
                f"{self.momentum}"
            )

    def resolved_path(self) -> str:
        """``per_step`` or ``stacked``: the path ``auto`` stands for with this architecture."""
        if self.path != "auto":
            return self.path
        return "stacked" if self.arch == "mlp" else "per_step"

    def resolved_models_per_step(self) -> int:
        if self.resolved_path() == "per_step":
            return 1
        return self.models_per_step or stacked.default_models_per_step(self.arch)

    def wants_checkpoint(self, run_id: int) -> bool:
        return self.checkpoint_every > 0 and run_id % self.checkpoint_every == 0
