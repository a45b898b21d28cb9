"""The evaluator behind `heldout predict`: restore a run, then logits for batches of images.

A `Backend` owns one model, built (and, for TensorFlow, traced) once, into which runs are
restored one after another. Two implementations:

- ``tensorflow`` (`TensorFlowBackend`): the release's TensorFlow checkpoints through the verified
  restore of `heldout.checkpoint` and the traced evaluation function of `heldout.evaluate`.
- ``torch``: `heldout.pytorch.backend.TorchBackend` (the PyTorch export), imported lazily; it
  reads ``<run>/model.safetensors`` of an exported run. It follows this interface by duck
  typing and does not import this module.

This module imports neither TensorFlow nor PyTorch until a backend is made.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Protocol

import numpy as np

from heldout.errors import HeldoutError
from heldout.experiment import Run

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
    """

    epoch: int
    global_step: int
    source: str


class Backend(Protocol):
    """One model, restored run after run.

    Attributes:
      name: ``"tensorflow"`` or ``"torch"``.
    """

    name: str

    def restore(self, run: Run) -> RestoredRun:
        """Restores `run`'s final weights into the model.

        Raises:
          HeldoutError (a subclass): a missing or bad checkpoint; the model is then not usable
            (`logits` raises) until a restore succeeds, so it never evaluates half-restored.
        """
        ...

    def logits(self, images: np.ndarray) -> np.ndarray:
        """float32 [b, num_classes] for float32 images [b, height, width, channels] (NHWC),
        scaled as the dataset's batches give them."""
        ...


class TensorFlowBackend:
    """The TensorFlow / Sonnet backend: one `heldout.evaluate.Evaluator` (model built and
    traced once), restored with `heldout.checkpoint.restore` (every variable verified and read
    before any is assigned)."""

    name = "tensorflow"

    def __init__(self, arch: str, num_classes: int, input_shape: tuple[int, ...]) -> None:
        from heldout.evaluate import make_evaluator

        self._evaluator = make_evaluator(arch, num_classes, tuple(input_shape))
        self._restored: RestoredRun | None = None

    def restore(self, run: Run) -> RestoredRun:
        self._restored = None  # unusable until this restore has fully succeeded
        checkpoint = self._evaluator.restore(run.path)
        self._restored = RestoredRun(checkpoint.epoch, checkpoint.global_step, checkpoint.path)
        return self._restored

    def logits(self, images: np.ndarray) -> np.ndarray:
        if self._restored is None:
            raise BackendError("logits asked of a model with no successfully restored run")
        images = np.asarray(images)
        if images.dtype != np.float32:
            raise BackendError(f"images must be float32 [b, H, W, C], found {images.dtype}")
        import tensorflow as tf

        return np.asarray(self._evaluator.predict_fn(tf.convert_to_tensor(images)), np.float32)


def make_backend(
    name: str, arch: str, num_classes: int, input_shape: tuple[int, ...], **options: Any
) -> Backend:
    """Builds a backend's model once.

    Args:
      name: ``"tensorflow"`` or ``"torch"``.
      arch: an architecture of `heldout.models.ARCHITECTURES`.
      num_classes: size of the output layer.
      input_shape: [height, width, channels].
      options: passed to the backend (TensorFlow takes none).

    Raises:
      BackendError: unknown backend, unknown options, or ``torch`` without
        `heldout.pytorch.backend`.
    """
    input_shape = tuple(int(d) for d in input_shape)
    if name == "tensorflow":
        if options:
            raise BackendError(f"the tensorflow backend takes no options, got {sorted(options)}")
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
