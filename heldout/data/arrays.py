"""In-memory image datasets: uint8 images and int64 labels per split, `index` = position.

CIFAR-10/100, MNIST-like data and the `.npz` datasets fit in memory as uint8 (CIFAR's training
split is 150 MB), so they are held as numpy arrays and cut into batches without a tf.data
pipeline. Pixels become float32 ``uint8 / scale`` per batch (the release's convention: scale 255,
no other normalisation).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping

import numpy as np

from heldout.errors import HeldoutError


class DatasetError(HeldoutError, ValueError):
    """A dataset that cannot be used as asked: a missing split, a bad size, bad pixels."""


@dataclasses.dataclass(frozen=True)
class Batch:
    """A batch for evaluation.

    Attributes:
      image: float32 [b, height, width, channels], preprocessed model input.
      label: int64 [b], 0-based class.
      index: int64 [b], the examples' positions in the split.
    """

    image: np.ndarray
    label: np.ndarray
    index: np.ndarray


@dataclasses.dataclass(frozen=True, repr=False)
class ArrayDataset:
    """Splits of uint8 images and int64 labels held in memory.

    Attributes:
      name: e.g. ``cifar10:3.0.2`` or the `.npz` path.
      num_classes: number of classes.
      images: split -> uint8 [n, height, width, channels] (float arrays are used as they are).
      labels: split -> int64 [n].
      scale: images are divided by this (float32) to give the model's input.
      ids: split -> str [n], the source's own example ids where it has them (TFDS ``id``).
    """

    name: str
    num_classes: int
    images: Mapping[str, np.ndarray]
    labels: Mapping[str, np.ndarray]
    scale: float = 255.0
    ids: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)

    @property
    def splits(self) -> list[str]:
        return list(self.labels)

    def __repr__(self) -> str:
        sizes = ", ".join(
            f"{split}: {len(labels)} x {'x'.join(map(str, self.images[split].shape[1:]))} "
            f"{self.images[split].dtype}" if split in self.images else f"{split}: {len(labels)}"
            for split, labels in self.labels.items()
        )
        return f"ArrayDataset({self.name!r}, {self.num_classes} classes, {sizes})"

    @property
    def image_shape(self) -> tuple[int, ...]:
        """[height, width, channels] of the images."""
        return tuple(next(iter(self.images.values())).shape[1:])

    def num_examples(self, split: str) -> int:
        return len(self._labels(split))

    def split_labels(self, split: str) -> np.ndarray:
        """int64 [n]: labels of a split in dataset order."""
        return self._labels(split)

    def _labels(self, split: str) -> np.ndarray:
        if split not in self.labels:
            raise KeyError(f"{self.name}: no split {split!r}; it has {self.splits}")
        return self.labels[split]

    def batches(
        self, split: str, batch_size: int, indices: np.ndarray | None = None
    ) -> Iterator[Batch]:
        """Yields the split (or the examples at `indices`) in order, `batch_size` at a time."""
        labels = self._labels(split)
        images = self.images[split]
        order = np.arange(len(labels)) if indices is None else np.asarray(indices, np.int64)
        scale = np.float32(self.scale)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            contiguous = indices is None
            block = images[idx[0] : idx[-1] + 1] if contiguous else images[idx]
            yield Batch(
                image=block.astype(np.float32) / scale,
                label=labels[idx].astype(np.int64),
                index=idx,
            )

