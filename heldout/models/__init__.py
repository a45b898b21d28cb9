"""The networks of the released experiments, checkpoint-compatible with the release.

- ``small_inception``: the SmallInception of the CIFAR-10/100 runs (32x32x3 inputs).
- ``resnet50``: ``snt.nets.ResNet50`` of the ImageNet runs (224x224x3 inputs).
- ``mlp``: the 784-512-256-10 multilayer perceptron of the MNIST example.

`heldout.models.architectures` (names, input shapes, `default_arch`) is pure Python;
`heldout.models.networks` holds the Sonnet modules and imports TensorFlow, which this package
does only when one of its names is first used (PEP 562). This package knows nothing of files or
datasets.
"""

from __future__ import annotations

import importlib

from heldout.errors import ArchitectureError
from heldout.models.architectures import ARCHITECTURES, DEFAULT_INPUT_SHAPES, default_arch

_NETWORKS = ("ConvBNReLU", "InceptionBlock", "InceptionStage", "SmallInception", "MLP",
             "build_model", "create_variables")


def __getattr__(name: str):
    if name in _NETWORKS:
        return getattr(importlib.import_module("heldout.models.networks"), name)
    raise AttributeError(f"module 'heldout.models' has no attribute {name!r}")


__all__ = ["ARCHITECTURES", "DEFAULT_INPUT_SHAPES", "ArchitectureError", "default_arch",
           *_NETWORKS]
