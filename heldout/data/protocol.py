"""`Dataset`: what every dataset of `heldout.data` offers, wherever its examples come from.

Two implementations: `heldout.data.arrays.ArrayDataset` (TFDS, ``.npz``, IDX, scikit-learn's
digits: uint8 images in memory) and `heldout.data.imagenet.tfrecords.TFRecordImageDataset` (indexed
TFRecord shards read with tf.data). Code that evaluates, predicts or fingerprints takes a
`Dataset`; training needs the in-memory `ArrayDataset`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from heldout.data.arrays import Batch
from heldout.data.preprocessing import InputPreprocessing


@runtime_checkable
class Dataset(Protocol):
    """Splits of labelled images with a stable `index` (the example's position in its split).

    Attributes:
      name: e.g. ``cifar10:3.0.2`` (TFDS, with its version), the ``.npz`` path, the IDX or
        TFRecord directory, ``sklearn-digits``.
      num_classes: the number of classes; labels lie in ``[0, num_classes)``.
      splits: the splits loaded, e.g. ``["train", "test"]``.
      image_shape: [height, width, channels] of the model's input.
    """

    name: str
    num_classes: int

    @property
    def splits(self) -> Sequence[str]: ...

    @property
    def image_shape(self) -> tuple[int, ...]: ...

    def num_examples(self, split: str) -> int:
        """The number of examples of `split` (raises `DatasetSplitError` for a split not
        loaded)."""
        ...

    def split_labels(self, split: str) -> np.ndarray:
        """int64 [n]: the labels of `split` in dataset (``index``) order."""
        ...

    def batches(self, split: str, batch_size: int) -> Iterator[Batch]:
        """Yields `Batch(image float32 [b, H, W, C], label int64 [b], index int64 [b])`, the
        whole split in ``index`` order, without shuffling."""
        ...

    def input_preprocessing(self) -> InputPreprocessing:
        """How the stored uint8 images become the float32 batches (`heldout.data.preprocessing`):
        recorded in each trained run's run.json and in exported models' metadata."""
        ...
