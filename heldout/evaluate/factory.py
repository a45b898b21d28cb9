"""Making a `heldout.evaluate.backend.Backend` by name, and which runs each can restore.

`make_backend` imports the backend's module only when one is made: ``tensorflow`` from
`heldout.evaluate.tensorflow`, ``torch`` from `heldout.pytorch.backend` (a layer above this
package, imported by name so that `heldout.evaluate` never depends on it; PyTorch is an
optional extra). `model_requirement` says, by file names only, which runs a backend can
restore, for `heldout.experiment.select_runs`; `check_run_model` reads a run's architecture,
number of classes and input from its files, without building a model.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import numpy as np

from heldout.data.protocol import Dataset
from heldout.errors import BackendError, ModelMismatchError
from heldout.evaluate.backend import BACKENDS, Backend
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


def _run_model(name: str, run: Run) -> tuple[str, tuple[str, int, tuple[int, ...]]]:
    """(file read, (architecture, number of classes, input shape)) of `run`'s model for
    backend `name`, from its files alone: the final checkpoint's variable shapes
    (``tensorflow``, `heldout.export.runs.checkpoint_spec`) or the exported file's metadata
    (``torch``; inferred from its tensor shapes when it has none)."""
    model_requirement(name)
    if name == "tensorflow":
        from heldout.quiet import import_tensorflow

        import_tensorflow()  # without its start-up lines (a --workers N command had none)
        from heldout.checkpoint import find_final_checkpoint
        from heldout.export.runs import checkpoint_spec

        prefix = find_final_checkpoint(run.path)[0].prefix
        spec = checkpoint_spec(prefix)
        return prefix, (spec.arch, spec.num_classes, spec.input_shape)
    from heldout.export.tensorfile import find_tensor_file, infer_spec, read_tensor_file

    tensor_file = read_tensor_file(find_tensor_file(run.path))
    meta = tensor_file.metadata
    if meta is not None:
        return tensor_file.path, (meta.architecture, meta.num_classes, meta.input_shape)
    shapes = {k: tuple(v.shape) for k, v in tensor_file.tensors.items()}
    return tensor_file.path, infer_spec(shapes, tensor_file.path)


def _inputs_fit(arch: str, found: tuple[int, ...], wanted: tuple[int, ...]) -> bool:
    """An MLP reads a fixed number of input values; the convolutional networks (global pooling
    at the end) a fixed number of channels."""
    if arch == "mlp":
        return int(np.prod(found)) == int(np.prod(wanted))
    return tuple(found)[-1:] == tuple(wanted)[-1:]


def _a(arch: str) -> str:
    return f"{'an' if arch == 'mlp' or arch[:1] in 'aeiou' else 'a'} {arch}"


def check_run_model(
    name: str, run: Run, dataset: Dataset, arch: str | None = None
) -> None:
    """Checks, without building a model, that `run`'s model is the one `dataset` needs: its
    architecture (`arch`, by default the released one for the dataset), number of classes
    (the output layer's size) and input (an MLP's number of input values, a convolutional
    network's channels), read from the run's final checkpoint (``tensorflow``) or its exported
    file's metadata (``torch``).

    Raises:
      ModelMismatchError: naming the run, the file read, what it holds and what the dataset
        needs.
      CheckpointError / TensorFileError: no model file, or an unreadable one.
    """
    from heldout.models.architectures import default_arch

    chosen = arch or default_arch(dataset.name, dataset.image_shape)
    shape = tuple(int(d) for d in dataset.image_shape)
    source, (found_arch, classes, found_shape) = _run_model(name, run)
    if (found_arch == chosen and int(classes) == int(dataset.num_classes)
            and _inputs_fit(chosen, found_shape, shape)):
        return
    inputs = "x".join(map(str, shape))
    why = "`arch`" if arch else f"the default for {inputs} images; `arch` to choose"
    found = f"{_a(found_arch)} with {classes} classes"
    wanted = f"{_a(chosen)} ({why}) with {dataset.num_classes} classes"
    if found_arch == chosen and not _inputs_fit(chosen, found_shape, shape):
        found += f" for inputs {'x'.join(map(str, found_shape))}"
        wanted += f" for inputs {inputs}"
    raise ModelMismatchError(
        f"run {run.name}: its model ({source}) is {found}, but for the dataset {dataset.name} "
        f"this command needs {wanted}: is it the dataset the runs were trained on?"
    )


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
