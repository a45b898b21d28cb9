"""Building the PyTorch model of an exported run and loading its tensors, checked by name."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from heldout.errors import ArchitectureError, TensorFileError
from heldout.export.tensorfile import Metadata, find_tensor_file, infer_spec, read_tensor_file
from heldout.models.architectures import ARCHITECTURES
from heldout.models.weights import check_finite_weights
from heldout.pytorch.networks import MLP, ResNet50, SmallInception


def build_torch_model(
    arch: str,
    num_classes: int,
    input_shape: Sequence[int],
    tensor_shapes: Mapping[str, tuple[int, ...]] | None = None,
) -> nn.Module:
    """An untrained PyTorch model (zeros) of a released architecture.

    Args:
      arch: ``small_inception``, ``resnet50`` or ``mlp``.
      num_classes: size of the output layer.
      input_shape: [height, width, channels] of one image.
      tensor_shapes: for the MLP, the exported shapes, which give its hidden sizes.

    Raises:
      ArchitectureError: unknown architecture.
    """
    channels = int(input_shape[-1])
    if arch == "small_inception":
        return SmallInception(num_classes, channels)
    if arch == "resnet50":
        return ResNet50(num_classes, channels)
    if arch == "mlp":
        hidden: Sequence[int] = (512, 256)
        if tensor_shapes:
            layers = sorted(int(k.split("/")[2]) for k in tensor_shapes
                            if k.startswith("mlp/_layers/") and k.endswith("/w")
                            and k.split("/")[2].isdigit())
            hidden = [int(tensor_shapes[f"mlp/_layers/{i}/w"][-1]) for i in layers[:-1]]
        return MLP(num_classes, input_shape, hidden)
    raise ArchitectureError(f"unknown architecture {arch!r}; expected one of {list(ARCHITECTURES)}")


def _is_conv(name: str, ndim: int) -> bool:
    return name.endswith("/w") and ndim == 4


def exported_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """The tensor names and TensorFlow-layout shapes a model expects from a tensor file."""
    out = {}
    for key, value in {**dict(model.named_parameters()), **dict(model.named_buffers())}.items():
        name, shape = key.replace(".", "/"), tuple(value.shape)
        if _is_conv(name, len(shape)):
            shape = (shape[2], shape[3], shape[1], shape[0])
        elif name.endswith("/moving_mean/average") or name.endswith("/moving_variance/average"):
            shape = (1, 1, 1, shape[0])
        out[name] = shape
    return out


def _few(names: Sequence[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def load_tensors(model: nn.Module, tensors: Mapping[str, np.ndarray], source: str) -> nn.Module:
    """Copies exported tensors (TensorFlow layout) into `model`, after checking that the names
    and shapes are exactly the ones it expects and that every value is finite.

    Raises:
      TensorFileError: missing, extra or mis-shaped tensors, naming them (nothing is copied).
      NonFiniteWeightsError: a weight or moving statistic is NaN or infinite (nothing is
        copied).
    """
    expected = exported_shapes(model)
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing: {_few(missing)}")
        if extra:
            parts.append(f"{len(extra)} unexpected: {_few(extra)}")
        raise TensorFileError(
            f"{source}: the tensors do not fit {type(model).__name__} ({len(expected)} "
            f"tensors): " + "; ".join(parts)
        )
    for name, shape in expected.items():
        if tuple(tensors[name].shape) != shape:
            raise TensorFileError(
                f"{source}: tensor {name} has shape {tuple(tensors[name].shape)}, expected "
                f"{shape} for {type(model).__name__}"
            )
    check_finite_weights(tensors, source)  # one pass, before anything is copied
    state = {}
    for key in model.state_dict():
        name = key.replace(".", "/")
        value = np.asarray(tensors[name], dtype=np.float32)
        if _is_conv(name, value.ndim):
            value = value.transpose(3, 2, 0, 1)
        elif value.ndim == 4:
            value = value.reshape(-1)
        state[key] = torch.from_numpy(np.ascontiguousarray(value))
    model.load_state_dict(state, strict=True)
    return model


def resolve_spec(
    tensor_file, arch: str | None = None, num_classes: int | None = None,
    input_shape: Sequence[int] | None = None,
) -> Metadata:
    """The file's metadata, with given values winning and missing ones inferred from the tensor
    names (`infer_spec`; a file without metadata has an unknown input preprocessing).

    Raises:
      TensorFileError: no metadata, no architecture given and none inferable.
    """
    meta = tensor_file.metadata
    if meta is not None:
        return dataclasses.replace(
            meta, architecture=arch or meta.architecture,
            num_classes=int(num_classes or meta.num_classes),
            input_shape=tuple(input_shape or meta.input_shape))
    shapes = {k: tuple(v.shape) for k, v in tensor_file.tensors.items()}
    if arch is None or num_classes is None or input_shape is None:
        inferred = infer_spec(shapes, tensor_file.path)
    else:
        inferred = (arch, num_classes, input_shape)
    return Metadata(arch or inferred[0], int(num_classes or inferred[1]),
                    tuple(input_shape or inferred[2]),
                    input_preprocessing_source="unknown: the file has no metadata")


def load_model(
    path: str | os.PathLike,
    arch: str | None = None,
    num_classes: int | None = None,
    input_shape: Sequence[int] | None = None,
) -> nn.Module:
    """The PyTorch model of an exported run, in eval mode, on the CPU, with its metadata.

    The model takes NCHW float32 images [b, C, H, W] preprocessed as its run was trained
    (``model.metadata.input_preprocessing``: e.g. uint8 / 255 for the CIFAR runs, uint8 / 16
    for the digits) and returns float32 logits [b, num_classes]. From uint8 NHWC images:
    ``model(heldout.pytorch.preprocess(images, model.metadata))``.

    Args:
      path: a ``model.safetensors`` or ``model.npz`` written by `heldout export`, or the run
        directory holding one (safetensors preferred).
      arch, num_classes, input_shape: override or supply what the metadata says; when the file
        has no metadata, they are inferred from the tensor names and shapes.

    Raises:
      TensorFileError: no such file; unreadable; architecture not given and not inferable;
        missing, extra or mis-shaped tensors (named).
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        path = find_tensor_file(path)
    tensor_file = read_tensor_file(path)
    spec = resolve_spec(tensor_file, arch, num_classes, input_shape)
    shapes = {k: tuple(v.shape) for k, v in tensor_file.tensors.items()}
    model = build_torch_model(spec.architecture, spec.num_classes, spec.input_shape, shapes)
    load_tensors(model, tensor_file.tensors, path)
    model.metadata = spec  # a plain attribute: not a parameter, buffer or submodule
    return model.eval()
