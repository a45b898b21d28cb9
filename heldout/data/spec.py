"""`DatasetSpec`: the one way to name a dataset, small enough to send to another process.

Every loader of `heldout.data` takes a `DatasetSpec` and the splits to load
(`heldout.data.load_dataset(spec, splits)`); the CLI builds it from its dataset flags
(`DatasetSpec.from_args`), and a Dask task carries it (paths and names, never images): each
worker process loads the dataset from it once and keeps it across its tasks.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from heldout.errors import DatasetError

#: The fields naming where the examples come from; a spec names exactly one.
SOURCES = ("dataset", "dataset_npz", "tfrecord_dir", "idx_dir")
_PATHS = ("dataset_npz", "tfrecord_dir", "idx_dir", "data_dir", "index_npz")


@dataclasses.dataclass(frozen=True, kw_only=True)
class DatasetSpec:
    """Where a dataset comes from (keyword arguments only).

    Attributes:
      dataset: a TFDS name with version, e.g. ``cifar10:3.0.2``; a path to an ``.npz`` file
        given here is taken as `dataset_npz`.
      dataset_npz: an ``.npz`` dataset (`heldout.data.npz`).
      tfrecord_dir: indexed TFRecord shards, e.g. ImageNet written by ``heldout build-imagenet``
        (`heldout.data.imagenet`).
      idx_dir: a directory of MNIST-format IDX files (`heldout.data.idx`).
      data_dir: with `dataset`, the TFDS data directory (default TFDS's own).
      index_npz: with `tfrecord_dir`, the published ``imagenet_index.npz``, read for the labels
        when the shards have no ``labels.npz``.
      train_size: keep only the first N training examples (`heldout.data.take_train`).

    Raises:
      DatasetError: on construction, when not exactly one of `dataset`, `dataset_npz`,
        `tfrecord_dir` and `idx_dir` is given, when `dataset` names a directory or a file other
        than an ``.npz``, or when `train_size` is below 1.
    """

    dataset: str | None = None
    dataset_npz: str | None = None
    tfrecord_dir: str | None = None
    idx_dir: str | None = None
    data_dir: str | None = None
    index_npz: str | None = None
    train_size: int | None = None

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, os.PathLike):
                object.__setattr__(self, field.name, os.fspath(value))
        if self.dataset is not None and self.dataset_npz is None:
            text = str(self.dataset)
            if text.endswith(".npz"):
                object.__setattr__(self, "dataset", None)
                object.__setattr__(self, "dataset_npz", text)
            elif os.path.isdir(text):
                raise DatasetError(
                    f"{text}: a directory, not a TFDS dataset name; name it as tfrecord_dir "
                    "(TFRecord shards) or idx_dir (IDX files), or dataset_npz for a .npz file"
                )
            elif os.path.isfile(text):
                raise DatasetError(
                    f"{text}: a file, not a TFDS dataset name; name a .npz dataset as dataset_npz"
                )
        given = [name for name in SOURCES if getattr(self, name) is not None]
        if len(given) != 1:
            raise DatasetError(
                "a dataset spec names exactly one of dataset (a TFDS name such as "
                "cifar10:3.0.2), dataset_npz (an .npz file), tfrecord_dir (TFRecord shards) and "
                f"idx_dir (IDX files); found {given or 'none'}"
            )
        if self.train_size is not None and int(self.train_size) < 1:
            raise DatasetError(f"train_size must be at least 1, got {self.train_size}")

    @classmethod
    def from_args(cls, namespace: Any) -> DatasetSpec:
        """The spec of an object with attributes named like the fields (an `argparse`
        namespace of `heldout.cli.common.add_dataset_flags`); missing attributes are None."""
        return cls(**{f.name: getattr(namespace, f.name, None) for f in dataclasses.fields(cls)})

    @property
    def source(self) -> str:
        """The one source named, for messages: the TFDS name or the path."""
        return next(getattr(self, name) for name in SOURCES if getattr(self, name) is not None)

    def absolute(self) -> DatasetSpec:
        """The same spec with its paths (`dataset_npz`, `tfrecord_dir`, `idx_dir`, `data_dir`,
        `index_npz`) made absolute, so that a worker started in another directory finds them."""
        return dataclasses.replace(self, **{
            f: os.path.abspath(getattr(self, f)) for f in _PATHS if getattr(self, f) is not None})
