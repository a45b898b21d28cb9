"""In-memory image datasets: uint8 images and int64 labels per split, `index` = position.

CIFAR-10/100, MNIST-like data and the `.npz` datasets fit in memory as uint8 (CIFAR's training
split is 150 MB), so they are held as numpy arrays and cut into batches without a tf.data
pipeline.

The pixel rule, enforced here for every in-memory source (TFDS, `.npz`, IDX, digits) by
`model_input`: uint8 images become float32 ``uint8 / scale`` (the release's convention: scale
255, no other normalisation); float images are taken as they are and must already lie in
[0, 1] (they are never divided again); any other dtype is refused.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping

import numpy as np

from heldout.data.preprocessing import InputPreprocessing
from heldout.errors import DatasetError, DatasetSplitError


def check_pixels(images: np.ndarray, source: str) -> None:
    """Checks images against the pixel rule (module docstring).

    Raises:
      DatasetError: a dtype other than uint8 or float, or float pixels outside [0, 1] or
        non-finite (naming `source` and the range found).
    """
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return
    if not np.issubdtype(images.dtype, np.floating):
        raise DatasetError(
            f"{source}: images must be uint8 (divided by the scale) or float in [0, 1] (used as "
            f"they are), found {images.dtype}"
        )
    if images.size and not (np.isfinite(images).all() and images.min() >= 0
                            and images.max() <= 1):
        raise DatasetError(
            f"{source}: float images are used as they are and must lie in [0, 1]; found values "
            f"in [{np.nanmin(images)}, {np.nanmax(images)}]"
            + ("" if np.isfinite(images).all() else " and non-finite values")
            + " (store uint8 pixels with a __data_scale, or rescale the floats)"
        )


def model_input(images: np.ndarray, scale: float) -> np.ndarray:
    """float32 model input of stored images, by the pixel rule: uint8 / `scale`, float as is.

    Raises:
      DatasetError: another dtype (see `check_pixels`).
    """
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images.astype(np.float32) / np.float32(scale)
    if np.issubdtype(images.dtype, np.floating):
        return images.astype(np.float32, copy=False)
    raise DatasetError(f"images must be uint8 or float, found {images.dtype}")


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
      images: split -> uint8 [n, height, width, channels], or float in [0, 1] (used as they
        are; see the module docstring). Checked on construction.
      labels: split -> int64 [n].
      scale: uint8 images are divided by this (float32) to give the model's input.
      ids: split -> str [n], the source's own example ids where it has them (TFDS ``id``).
    """

    name: str
    num_classes: int
    images: Mapping[str, np.ndarray]
    labels: Mapping[str, np.ndarray]
    scale: float = 255.0
    ids: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.scale > 0:
            raise DatasetError(f"{self.name}: the pixel scale must be > 0, got {self.scale}")
        for split, images in self.images.items():
            check_pixels(images, f"{self.name} split {split!r}")

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

    def input_preprocessing(self) -> InputPreprocessing:
        """How the images become model input: uint8 / `scale` (scale None when the images
        are float, used as they are), for run.json and exported models' metadata."""
        images = self.images.get("train", next(iter(self.images.values()), None))
        floats = images is not None and np.issubdtype(np.asarray(images).dtype, np.floating)
        return InputPreprocessing(scale=None if floats else float(self.scale))

    def split_labels(self, split: str) -> np.ndarray:
        """int64 [n]: labels of a split in dataset order."""
        return self._labels(split)

    def _labels(self, split: str) -> np.ndarray:
        if split not in self.labels:
            raise DatasetSplitError(f"{self.name}: no split {split!r}; it has {self.splits}")
        return self.labels[split]

    def batches(
        self, split: str, batch_size: int, indices: np.ndarray | None = None
    ) -> Iterator[Batch]:
        """Yields the split (or the examples at `indices`) in order, `batch_size` at a time."""
        labels = self._labels(split)
        images = self.images[split]
        order = np.arange(len(labels)) if indices is None else np.asarray(indices, np.int64)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            contiguous = indices is None
            block = images[idx[0] : idx[-1] + 1] if contiguous else images[idx]
            yield Batch(
                image=model_input(block, self.scale),
                label=labels[idx].astype(np.int64),
                index=idx,
            )

