"""Making a `heldout.evaluate.backend.Backend` by name, and which runs each can restore.

`make_backend` imports the backend's module only when one is made: ``tensorflow`` from
`heldout.evaluate.tensorflow`, ``torch`` from `heldout.pytorch.backend` (a layer above this
package, imported by name so that `heldout.evaluate` never depends on it; PyTorch is an
optional extra). `model_requirement` says, by file names only, which runs a backend can
restore, for `heldout.experiment.select_runs`.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from heldout.data.protocol import Dataset
from heldout.evaluate.backend import BACKENDS, Backend, BackendError
from heldout.experiment import CHECKPOINT, ModelRequirement, Run


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
