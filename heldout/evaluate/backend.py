"""`Backend`: one model, restored run after run, giving logits for batches of images.

Two implementations, made by `make_backend` (or `make_backend_for` a dataset):

- ``tensorflow`` (`heldout.evaluate.tensorflow.TensorFlowBackend`): the release's TensorFlow
  checkpoints through the verified restore of `heldout.checkpoint`, one traced function.
- ``torch`` (`heldout.pytorch.backend.TorchBackend`): runs exported by `heldout export`
  (``<run>/model.safetensors`` or ``model.npz``), in PyTorch.

Each restore checks every weight finite (a NaN weight fails the run). `model_requirement` says,
by file names only, which runs a backend can restore, for `heldout.experiment.select_runs`.
This module imports neither TensorFlow nor PyTorch: a backend's module is imported when it is
made.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from typing import Any, Protocol

import numpy as np

from heldout.data.protocol import Dataset
from heldout.errors import HeldoutError
from heldout.experiment import CHECKPOINT, ModelRequirement, Run

BACKENDS = ("tensorflow", "torch")


class BackendError(HeldoutError, ValueError):
    """An unknown backend, a backend that is not installed, or logits asked before a restore."""


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


def _has_exported_model(run: Run) -> bool:
    from heldout.export.tensorfile import NPZ, SAFETENSORS  # the export's file names

    return any(os.path.isfile(os.path.join(run.path, name)) for name in (SAFETENSORS, NPZ))


_REQUIREMENTS = {
    "tensorflow": CHECKPOINT,
    "torch": ModelRequirement("an exported model (model.safetensors or model.npz)",
                              _has_exported_model),
}


def model_requirement(name: str) -> ModelRequirement:
    """What a run must hold for backend `name` to restore it (checked by file names only,
    without importing the backend): a complete checkpoint (``tensorflow``) or an exported model
    (``torch``).

    Raises:
      BackendError: unknown backend.
    """
    if name not in _REQUIREMENTS:
        raise BackendError(f"unknown backend {name!r}; expected one of {list(BACKENDS)}")
    return _REQUIREMENTS[name]


def make_backend(
    name: str, arch: str, num_classes: int, input_shape: tuple[int, ...], **options: Any
) -> Backend:
    """Builds a backend's model once.

    Args:
      name: ``"tensorflow"`` or ``"torch"``.
      arch: an architecture of `heldout.models.ARCHITECTURES`.
      num_classes: size of the output layer.
      input_shape: [height, width, channels].
      options: passed to the backend (TensorFlow takes none; PyTorch takes ``device``,
        ``precision`` and ``margin_bound``).

    Raises:
      BackendError: unknown backend, unknown options, or ``torch`` without
        `heldout.pytorch.backend`.
    """
    input_shape = tuple(int(d) for d in input_shape)
    if name == "tensorflow":
        if options:
            raise BackendError(f"the tensorflow backend takes no options, got {sorted(options)}")
        from heldout.evaluate.tensorflow import TensorFlowBackend

        return TensorFlowBackend(arch, num_classes, input_shape)
    if name == "torch":
        try:
            module = importlib.import_module("heldout.pytorch.backend")
        except ImportError as e:
            raise BackendError(
                f"backend 'torch' needs heldout.pytorch.backend (the PyTorch export) and "
                f"PyTorch, which could not be imported: {e}"
            ) from e
        return module.TorchBackend(arch, num_classes, input_shape, **options)
    raise BackendError(f"unknown backend {name!r}; expected one of {list(BACKENDS)}")


def make_backend_for(
    dataset: Dataset, name: str = "tensorflow", arch: str | None = None, **options: Any
) -> Backend:
    """`make_backend` for a dataset: its number of classes and image shape; `arch` defaults to
    the released architecture for it (`heldout.models.default_arch`)."""
    from heldout.models.architectures import default_arch

    arch = arch or default_arch(dataset.name, dataset.image_shape)
    return make_backend(name, arch, dataset.num_classes, dataset.image_shape, **options)
