"""`DatasetSpec`: where a dataset comes from, small enough to send to another process.

A Dask task carries a `DatasetSpec` (paths and names), never images; each worker process loads
the dataset from it once (`DatasetSpec.load`) and keeps it across its tasks.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """The arguments of `heldout.data.load_dataset`, plus a cut of the training split.

    Attributes:
      dataset, dataset_npz, tfrecord_dir, idx_dir: exactly one source (a TFDS name such as
        ``cifar10:3.0.2``, an ``.npz`` path, indexed TFRecord shards, MNIST-format IDX files).
      data_dir: the TFDS data directory; index_npz: with `tfrecord_dir`, the published index.
      train_size: keep only the first N training examples (`heldout.data.take_train`).
    """

    dataset: str | None = None
    dataset_npz: str | None = None
    tfrecord_dir: str | None = None
    idx_dir: str | None = None
    data_dir: str | None = None
    index_npz: str | None = None
    train_size: int | None = None

    def absolute(self) -> DatasetSpec:
        """The same spec with its paths (`dataset_npz`, `tfrecord_dir`, `idx_dir`, `data_dir`,
        `index_npz`, `dataset` when it names a file) made absolute, so that a worker started
        in another directory finds them."""
        paths = ["dataset_npz", "tfrecord_dir", "idx_dir", "data_dir", "index_npz"]
        if self.dataset is not None and os.path.isfile(self.dataset):  # An .npz path given
            paths.append("dataset")                                      # as `dataset`.
        return dataclasses.replace(self, **{
            f: os.path.abspath(getattr(self, f)) for f in paths if getattr(self, f) is not None})

    def load(self, splits: str | Sequence[str]):
        """The dataset with `splits` (one split name or several), cut to `train_size`.

        Raises:
          DatasetError, NpzError, TFRecordDatasetError: as `heldout.data.load_dataset`, or a
            `train_size` larger than the training split.
        """
        from heldout.data import load_dataset

        splits = (splits,) if isinstance(splits, str) else tuple(splits)
        dataset = load_dataset(self.dataset, self.dataset_npz, splits, self.data_dir,
                               self.tfrecord_dir, self.index_npz, self.idx_dir)
        if self.train_size is not None and "train" in splits:
            from heldout.data.transforms import take_train

            dataset = take_train(dataset, self.train_size)
        return dataset
