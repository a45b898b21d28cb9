"""Datasets with a stable `index`: the example's position in its split.

Sources: TFDS (`heldout.data.tfds`, the release's CIFAR order), `.npz` files
(`heldout.data.npz`), indexed TFRecord shards such as the release's ImageNet
(`heldout.data.imagenet`, written by `heldout build-imagenet`), MNIST-format IDX files
(`heldout.data.idx`) and scikit-learn's digits (`heldout.data.digits`). A `DatasetSpec` names
the source; the loaders here take it and the splits to load. Every dataset follows the
`Dataset` protocol: `name`, `num_classes`, `image_shape`, `num_examples(split)`,
`split_labels(split)` and `batches(split, batch_size)` yielding `Batch(image float32, label
int64, index int64)` in order, without shuffling.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from heldout.data.arrays import ArrayDataset, Batch
from heldout.data.fingerprint import Fingerprint, check_labels, label_hash
from heldout.data.protocol import Dataset
from heldout.data.spec import DatasetSpec
from heldout.data.transforms import flip_labels, take_train
from heldout.errors import DatasetError

if TYPE_CHECKING:  # TensorFlow is imported only when TFRecord shards are read.
    from heldout.data.imagenet.tfrecords import TFRecordImageDataset


def load_dataset(
    spec: DatasetSpec, splits: Sequence[str] = ("train", "test")
) -> ArrayDataset | TFRecordImageDataset:
    """Loads the dataset a `DatasetSpec` names: TFDS (``spec.dataset``, e.g. ``cifar10:3.0.2``,
    from ``spec.data_dir``), an ``.npz`` file, indexed TFRecord shards (``spec.tfrecord_dir``,
    e.g. ImageNet; ``spec.index_npz`` is the published mapping, read for the labels when the
    directory has no ``labels.npz``) or MNIST-format IDX files (``spec.idx_dir``), cut to
    ``spec.train_size`` training examples when it is set.

    Args:
      spec: where the dataset comes from.
      splits: the splits to load (an ``.npz`` file is read whole).

    Returns:
      An `ArrayDataset`, or a `heldout.data.imagenet.tfrecords.TFRecordImageDataset` for
      ``tfrecord_dir``; both follow the `Dataset` protocol.

    Raises:
      DatasetError: `spec` is not a `DatasetSpec`, a `train_size` larger than the training
        split (or set on TFRecord shards), or missing or incomplete TFRecord shards.
      NpzError: a bad ``.npz`` file; IdxError: bad IDX files.
    """
    splits = _check(spec, splits)
    if spec.idx_dir is not None:
        from heldout.data.idx import load_idx_dataset

        dataset = load_idx_dataset(spec.idx_dir, splits)
    elif spec.tfrecord_dir is not None:
        from heldout.data.imagenet.tfrecords import load_tfrecord_dataset

        if spec.train_size is not None:
            raise DatasetError(f"{spec.tfrecord_dir}: train_size applies to in-memory datasets, "
                               "not to TFRecord shards")
        return load_tfrecord_dataset(spec.tfrecord_dir, splits, index_npz=spec.index_npz)
    elif spec.dataset_npz is not None:
        from heldout.data.npz import load_npz_dataset

        dataset = load_npz_dataset(spec.dataset_npz)
    else:
        from heldout.data.tfds import load_tfds

        dataset = load_tfds(spec.dataset, splits=splits, data_dir=spec.data_dir)
    return _cut(dataset, spec, splits)


def _check(spec: DatasetSpec, splits: Sequence[str]) -> tuple[str, ...]:
    if not isinstance(spec, DatasetSpec):
        raise DatasetError(
            f"a dataset is named by a heldout.data.DatasetSpec, e.g. "
            f"DatasetSpec(dataset='cifar10:3.0.2') or DatasetSpec(dataset_npz='data.npz'); got "
            f"{type(spec).__name__} {spec!r}"
        )
    return (splits,) if isinstance(splits, str) else tuple(splits)


def _cut(dataset: ArrayDataset, spec: DatasetSpec, splits: Sequence[str]) -> ArrayDataset:
    if spec.train_size is not None and "train" in splits:
        return take_train(dataset, spec.train_size)
    return dataset


def load_split_labels(
    spec: DatasetSpec, splits: Sequence[str] = ("train",)
) -> dict[str, np.ndarray]:
    """split -> int64 [n]: the labels of the splits in dataset order, the source read once
    (TFDS images are not decoded), cut to ``spec.train_size`` as `load_dataset` does."""
    splits = _check(spec, splits)
    loaded = _labels_only(spec, splits)
    return {split: np.asarray(loaded.split_labels(split)) for split in splits}


def _labels_only(spec: DatasetSpec, splits: tuple[str, ...]) -> Dataset:
    if spec.dataset is not None:
        from heldout.data.tfds import load_tfds

        return _cut(load_tfds(spec.dataset, splits, spec.data_dir, with_images=False), spec,
                    splits)
    return load_dataset(spec, splits)


def load_checked_labels(
    spec: DatasetSpec,
    sizes: dict[str, int],
    fingerprint: Fingerprint | None,
    source: str,
) -> dict[str, np.ndarray]:
    """The labels of the splits of `sizes` (split -> the outputs' number of examples), checked
    against outputs computed on runs: the sizes, and the outputs' `fingerprint` (order, dataset
    name and version; None checks the sizes only), so per-example scores are never paired with
    labels of another order or dataset.

    Returns:
      split -> int64 [n] labels in dataset order.

    Raises:
      FingerprintError: see `heldout.data.fingerprint.check_labels` (naming `source`).
    """
    loaded = _labels_only(spec, _check(spec, tuple(sizes)))
    labels = {split: np.asarray(loaded.split_labels(split)) for split in sizes}
    check_labels(labels, fingerprint, source, loaded.name, sizes)
    return labels


def load_labels(spec: DatasetSpec, split: str = "train") -> np.ndarray:
    """int64 [n]: the labels of one split in dataset order (see `load_split_labels`)."""
    return load_split_labels(spec, (split,))[split]


__all__ = [
    "ArrayDataset", "Batch", "Dataset", "DatasetError", "DatasetSpec", "check_labels",
    "flip_labels", "label_hash", "load_checked_labels", "load_dataset", "load_labels",
    "load_split_labels", "take_train",
]
