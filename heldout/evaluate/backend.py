"""`Backend`: one model, restored run after run, giving logits for batches of images.

Two implementations, made by `heldout.evaluate.factory.make_backend` (or `make_backend_for` a
dataset):

- ``tensorflow`` (`heldout.evaluate.tensorflow.TensorFlowBackend`): the release's TensorFlow
  checkpoints through the verified restore of `heldout.checkpoint`, one traced function.
- ``torch`` (`heldout.pytorch.backend.TorchBackend`): runs exported by `heldout export`
  (``<run>/model.safetensors`` or ``model.npz``), in PyTorch.

Each restore checks every weight finite (a NaN weight fails the run). This module holds the
protocol and what a restore returns; it imports neither TensorFlow nor PyTorch, so both
backends' modules import it.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np

# Importable from here as before (the backends raise them).
from heldout.errors import BackendError as BackendError
from heldout.errors import ModelMismatchError as ModelMismatchError
from heldout.experiment import Run

BACKENDS = ("tensorflow", "torch")


@dataclasses.dataclass(frozen=True)
class RestoredRun:
    """What a backend restored.

    Attributes:
      epoch: the checkpoint's epoch (-1 when unknown).
      global_step: the checkpoint's training step (-1 when unknown).
      source: the file(s) read, e.g. the checkpoint prefix or the ``.safetensors`` path.
      note: a remark worth printing (e.g. several checkpoints found, the highest used), or ''.
    """

    epoch: int
    global_step: int
    source: str
    note: str = ""


class Backend(Protocol):
    """One model, restored run after run.

    Attributes:
      name: ``"tensorflow"`` or ``"torch"``.
    """

    name: str

    def restore(self, run: Run) -> RestoredRun:
        """Restores `run`'s final weights into the model, every value checked finite.

        Raises:
          HeldoutError (a subclass): a missing or bad checkpoint, or a non-finite weight
            (`NonFiniteWeightsError`); the model is then not usable (`logits` raises) until a
            restore succeeds, so it never evaluates half-restored.
        """
        ...

    def logits(self, images: np.ndarray) -> np.ndarray:
        """float32 [b, num_classes] for float32 images [b, height, width, channels] (NHWC),
        scaled as the dataset's batches give them."""
        ...
