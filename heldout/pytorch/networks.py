"""PyTorch versions of the released networks, computing what the Sonnet modules compute.

Each module's state-dict keys, with ``.`` read as ``/``, are the exported tensor names (e.g.
``stage2._body.3.conv3x3.bn.scale`` is ``stage2/_body/3/conv3x3/bn/scale``), so loading is a
rename-free, shape-checked copy (`heldout.pytorch.load`). Models take NCHW float32 images; what
the Sonnet modules do, from their source (dm-sonnet 2.0.2, ``sonnet/src/conv.py``, ``pad.py``,
``batch_norm.py``, ``nets/resnet.py``, ``nets/mlp.py``) and heldout.models.networks:

- SmallInception's convolutions use TensorFlow ``SAME`` padding: output ceil(n / stride), total
  padding max((out - 1) * stride + k - n, 0), the extra row and column after (so a 3x3 stride-2
  convolution of 32x32 pads 0 before and 1 after); its head is a max over all positions.
- ResNet-50's convolutions use Sonnet's ``pad.same``: an explicit pad of (k - 1) // 2 before and
  k // 2 after whatever the stride, then a ``VALID`` convolution (the 7x7 stride-2 stem pads 3
  and 3); the 3x3 max-pool (stride 2) uses TensorFlow ``SAME`` (padding never wins the max);
  the stride of a block group's first block is on its 3x3 convolution (and the 1x1
  projection); the head is a mean over positions.
- Batch norm at evaluation: scale * (x - moving_mean) / sqrt(moving_variance + eps) + offset,
  eps = 1e-5 (snt.BatchNorm's and ResNet's default), with the moving averages' ``average``.
- The MLP flattens in NHWC order (TensorFlow's), ReLU between layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _frozen(*shape: int) -> nn.Parameter:
    return nn.Parameter(torch.zeros(*shape), requires_grad=False)


def tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow ``SAME`` padding (before, after) of one spatial dimension."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class Conv(nn.Module):
    """Conv2D without bias; `w` is OIHW (the export's HWIO transposed).

    Args:
      padding: ``"tf_same"`` (TensorFlow SAME) or ``"snt_same"`` (Sonnet's ``pad.same``).
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1,
                 padding: str = "tf_same"):
        super().__init__()
        self.w = _frozen(cout, cin, kernel, kernel)
        self.kernel, self.stride, self.padding = kernel, stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel, self.stride
        if self.padding == "snt_same":
            rows = cols = ((k - 1) // 2, k // 2)
        else:
            rows = tf_same_padding(x.shape[-2], k, s)
            cols = tf_same_padding(x.shape[-1], k, s)
        if rows[0] == rows[1] and cols[0] == cols[1]:
            return F.conv2d(x, self.w, stride=s, padding=(rows[0], cols[0]))
        return F.conv2d(F.pad(x, (*cols, *rows)), self.w, stride=s)


class MovingAverage(nn.Module):
    """Holds a batch-norm moving statistic as ``average`` [C] (exported [1, 1, 1, C])."""

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("average", torch.zeros(channels))


class BatchNorm(nn.Module):
    """Evaluation-mode batch norm over NCHW channels (see the module docstring)."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.scale = _frozen(channels)
        self.offset = _frozen(channels)
        self.moving_mean = MovingAverage(channels)
        self.moving_variance = MovingAverage(channels)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inv = self.scale * torch.rsqrt(self.moving_variance.average + self.eps)
        shift = self.offset - self.moving_mean.average * inv
        return x * inv[:, None, None] + shift[:, None, None]


class Linear(nn.Module):
    """``x @ w + b`` with `w` [in, out] as exported (TensorFlow layout)."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.w = _frozen(n_in, n_out)
        self.b = _frozen(n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.w + self.b


class ConvBNReLU(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1):
        super().__init__()
        self.conv = Conv(cin, cout, kernel, stride)
        self.bn = BatchNorm(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)))


class InceptionBlock(nn.Module):
    def __init__(self, cin: int, c1: int, c3: int):
        super().__init__()
        self.conv1x1 = ConvBNReLU(cin, c1, 1)
        self.conv3x3 = ConvBNReLU(cin, c3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv1x1(x), self.conv3x3(x)], dim=1)


class InceptionStage(nn.Module):
    def __init__(self, cin: int, blocks: Sequence[tuple[int, int]], downsample: int | None):
        super().__init__()
        self._body = nn.ModuleList()
        for c1, c3 in blocks:
            self._body.append(InceptionBlock(cin, c1, c3))
            cin = c1 + c3
        self.out_channels = cin
        if downsample:
            self._downsample = ConvBNReLU(cin, downsample, 3, stride=2)
            self.out_channels = downsample
        else:
            self._downsample = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self._body:
            x = block(x)
        return x if self._downsample is None else self._downsample(x)


class SmallInception(nn.Module):
    """SmallInception (heldout.models.networks.SmallInception): NCHW [b, C, H, W] float32 in
    [0, 1] -> logits [b, num_classes]."""

    def __init__(self, num_classes: int, in_channels: int = 3):
        super().__init__()
        self.conv1 = ConvBNReLU(in_channels, 96, 3)
        self.stage1 = InceptionStage(96, [(32, 32), (32, 48)], 160)
        self.stage2 = InceptionStage(160, [(112, 48), (96, 64), (80, 80), (48, 96)], 240)
        self.stage3 = InceptionStage(240, [(176, 160), (176, 160)], None)
        self._pred = Linear(self.stage3.out_channels, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.stage3(self.stage2(self.stage1(self.conv1(images))))
        return self._pred(torch.amax(x, dim=(2, 3)))


class ConvBN(nn.Module):
    """One ``[Conv2D, BatchNorm]`` pair of a ResNet block (exported as ``<i>/0`` and
    ``<i>/1``)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int):
        super().__init__()
        self.add_module("0", Conv(cin, cout, kernel, stride, "snt_same"))
        self.add_module("1", BatchNorm(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv, bn = self._modules["0"], self._modules["1"]
        return bn(conv(x))


class BottleNeckBlockV1(nn.Module):
    """snt.nets.resnet.BottleNeckBlockV1: 1x1, 3x3 (strided), 1x1 with batch norm, ReLU after
    the first two and after the residual sum; a strided 1x1 projection in a group's first
    block."""

    def __init__(self, cin: int, channels: int, stride: int, use_projection: bool):
        super().__init__()
        if use_projection:
            self._proj_conv = Conv(cin, channels, 1, stride, "snt_same")
            self._proj_batchnorm = BatchNorm(channels)
        else:
            self._proj_conv = self._proj_batchnorm = None
        mid = channels // 4
        self._layers = nn.ModuleList([
            ConvBN(cin, mid, 1, 1), ConvBN(mid, mid, 3, stride), ConvBN(mid, channels, 1, 1)
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self._proj_conv is None else self._proj_batchnorm(self._proj_conv(x))
        net = torch.relu(self._layers[0](x))
        net = torch.relu(self._layers[1](net))
        return torch.relu(self._layers[2](net) + shortcut)


class BlockGroup(nn.Module):
    def __init__(self, cin: int, channels: int, num_blocks: int, stride: int):
        super().__init__()
        self._blocks = nn.ModuleList(
            BottleNeckBlockV1(cin if i == 0 else channels, channels, stride if i == 0 else 1,
                              use_projection=i == 0)
            for i in range(num_blocks)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self._blocks:
            x = block(x)
        return x


class ResNet50(nn.Module):
    """``snt.nets.ResNet50`` (v1, Sonnet's default bn_config eps 1e-5): NCHW [b, 3, H, W]
    float32 (the ImageNet evaluation inputs, normalised per channel) -> logits
    [b, num_classes]."""

    def __init__(self, num_classes: int, in_channels: int = 3):
        super().__init__()
        self._initial_conv = Conv(in_channels, 64, 7, 2, "snt_same")
        self._initial_batchnorm = BatchNorm(64)
        self._block_groups = nn.ModuleList()
        cin = 64
        groups = zip((256, 512, 1024, 2048), (3, 4, 6, 3), (1, 2, 2, 2), strict=True)
        for channels, blocks, stride in groups:
            self._block_groups.append(BlockGroup(cin, channels, blocks, stride))
            cin = channels
        self._logits = Linear(cin, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self._initial_batchnorm(self._initial_conv(images)))
        rows = tf_same_padding(x.shape[-2], 3, 2)
        cols = tf_same_padding(x.shape[-1], 3, 2)
        x = F.max_pool2d(F.pad(x, (*cols, *rows), value=float("-inf")), 3, 2)
        for group in self._block_groups:
            x = group(x)
        return self._logits(torch.mean(x, dim=(2, 3)))


class _Layers(nn.Module):
    def __init__(self, sizes: Sequence[int]):
        super().__init__()
        pairs = zip(sizes[:-1], sizes[1:], strict=True)
        self._layers = nn.ModuleList(Linear(a, b) for a, b in pairs)


class MLP(nn.Module):
    """The MNIST example's MLP (heldout.models.networks.MLP): NCHW images, flattened in NHWC
    order, -> ReLU hidden layers -> logits [b, num_classes]."""

    def __init__(self, num_classes: int, input_shape: Sequence[int] = (28, 28, 1),
                 hidden: Sequence[int] = (512, 256)):
        super().__init__()
        n_in = 1
        for d in input_shape:
            n_in *= int(d)
        self.mlp = _Layers([n_in, *hidden, num_classes])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 2, 3, 1).reshape(images.shape[0], -1)
        layers = self.mlp._layers
        for i, layer in enumerate(layers):
            x = layer(x)
            if i < len(layers) - 1:
                x = torch.relu(x)
        return x
