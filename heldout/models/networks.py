"""The Sonnet networks of the released experiments, checkpoint-compatible with the release.

Checkpoint variable paths follow the Sonnet modules' attribute names, so the attribute names here
are part of the release format: ``model/conv1/conv/w``, ``model/stage2/_body/3/conv3x3/bn/scale``,
``model/_pred/w`` ... (every key and shape is listed in the original code's variable dumps, which
`tests/test_models.py` compares against).

Every model is called as ``model(images, is_training)`` on float32 images
``[batch, height, width, channels]`` and returns float32 logits ``[batch, num_classes]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sonnet as snt
import tensorflow as tf

from heldout.errors import ArchitectureError
from heldout.models.architectures import ARCHITECTURES


class ConvBNReLU(snt.Module):
    """Conv2D without bias (SAME padding), then BatchNorm with scale and offset, then ReLU."""

    def __init__(self, channels: int, kernel: int, stride: int = 1, name: str | None = None):
        super().__init__(name=name)
        self.conv = snt.Conv2D(channels, kernel, stride=stride, padding="SAME", with_bias=False)
        self.bn = snt.BatchNorm(create_scale=True, create_offset=True)

    def __call__(self, x: tf.Tensor, is_training: bool) -> tf.Tensor:
        return tf.nn.relu(self.bn(self.conv(x), is_training=is_training))


class InceptionBlock(snt.Module):
    """Concatenation, on the channel axis, of a 1x1 and a 3x3 ConvBNReLU of the input."""

    def __init__(self, channels_1x1: int, channels_3x3: int, name: str | None = None):
        super().__init__(name=name)
        self.conv1x1 = ConvBNReLU(channels_1x1, 1)
        self.conv3x3 = ConvBNReLU(channels_3x3, 3)

    def __call__(self, x: tf.Tensor, is_training: bool) -> tf.Tensor:
        return tf.concat([self.conv1x1(x, is_training), self.conv3x3(x, is_training)], axis=-1)


class InceptionStage(snt.Module):
    """Inception blocks in sequence, then an optional 3x3 stride-2 ConvBNReLU downsample."""

    def __init__(
        self,
        blocks: Sequence[tuple[int, int]],
        downsample_channels: int | None,
        name: str | None = None,
    ):
        super().__init__(name=name)
        self._body = [InceptionBlock(c1, c3) for c1, c3 in blocks]
        self._downsample = (
            ConvBNReLU(downsample_channels, 3, stride=2) if downsample_channels else None
        )

    def __call__(self, x: tf.Tensor, is_training: bool) -> tf.Tensor:
        for block in self._body:
            x = block(x, is_training)
        if self._downsample is not None:
            x = self._downsample(x, is_training)
        return x


class SmallInception(snt.Module):
    """The SmallInception network of the CIFAR heldout runs (Zhang et al. 2017's CIFAR Inception).

    ConvBNReLU(96, 3x3) -> 3 stages -> global max-pool over height and width ->
    Linear(num_classes). Blocks (1x1, 3x3 channels): stage1 (32,32),(32,48), downsample 160;
    stage2 (112,48),(96,64),(80,80),(48,96), downsample 240; stage3 (176,160),(176,160).
    """

    def __init__(self, num_classes: int, name: str | None = None):
        super().__init__(name=name)
        self.conv1 = ConvBNReLU(96, 3)
        self.stage1 = InceptionStage([(32, 32), (32, 48)], 160)
        self.stage2 = InceptionStage([(112, 48), (96, 64), (80, 80), (48, 96)], 240)
        self.stage3 = InceptionStage([(176, 160), (176, 160)], None)
        self._pred = snt.Linear(num_classes)

    def __call__(self, images: tf.Tensor, is_training: bool) -> tf.Tensor:
        x = self.conv1(images, is_training)
        x = self.stage3(self.stage2(self.stage1(x, is_training), is_training), is_training)
        return self._pred(tf.reduce_max(x, axis=[1, 2]))


class MLP(snt.Module):
    """Flatten, then ReLU hidden layers, then a linear output (the MNIST example's network)."""

    def __init__(
        self, num_classes: int, hidden: Sequence[int] = (512, 256), name: str | None = None
    ):
        super().__init__(name=name)
        self.mlp = snt.nets.MLP([*hidden, num_classes])

    def __call__(self, images: tf.Tensor, is_training: bool = False) -> tf.Tensor:
        del is_training  # No dropout or batch statistics.
        return self.mlp(snt.Flatten()(images))


def build_model(arch: str, num_classes: int) -> snt.Module:
    """Builds an untrained model by architecture name (variables are created on first call).

    Args:
      arch: one of `ARCHITECTURES`.
      num_classes: size of the output layer.

    Raises:
      ArchitectureError: unknown architecture.
    """
    if arch == "small_inception":
        return SmallInception(num_classes)
    if arch == "resnet50":
        return snt.nets.ResNet50(num_classes=num_classes)
    if arch == "mlp":
        return MLP(num_classes)
    raise ArchitectureError(f"unknown architecture {arch!r}; expected one of {list(ARCHITECTURES)}")


def create_variables(model: snt.Module, input_shape: Sequence[int]) -> None:
    """Creates the model's variables by calling it once on a zero batch of `input_shape`.

    Sonnet creates variables on the first call; a checkpoint must only be restored after this, or
    it is restored lazily and unmatched variables go unnoticed.
    """
    model(tf.zeros([1, *input_shape], tf.float32), is_training=False)
