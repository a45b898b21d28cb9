"""Datasets with a stable `index`: the example's position in its split.

Sources: TFDS (`heldout.data.tfds`, the release's CIFAR order), `.npz` files
(`heldout.data.npz`), indexed TFRecord shards such as the release's ImageNet
(`heldout.data.imagenet`, written by `heldout build-imagenet`). Every dataset offers `name`,
`num_classes`, `image_shape`, `num_examples(split)`, `split_labels(split)` and
`batches(split, batch_size)` yielding `Batch(image float32, label int64, index int64)` in
order, without shuffling.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from heldout.data.arrays import ArrayDataset, Batch, DatasetError
from heldout.data.fingerprint import Fingerprint, check_labels, label_hash
from heldout.data.spec import DatasetSpec
from heldout.data.transforms import flip_labels, take_train

if TYPE_CHECKING:  # TensorFlow is imported only when TFRecord shards are read.
    from heldout.data.imagenet.tfrecords import TFRecordImageDataset


def load_dataset(
    dataset: str | None = None,
    dataset_npz: str | None = None,
    splits: tuple[str, ...] = ("train", "test"),
    data_dir: str | None = None,
    tfrecord_dir: str | None = None,
    index_npz: str | None = None,
    idx_dir: str | None = None,
) -> ArrayDataset | TFRecordImageDataset:
    """Loads a dataset from TFDS (`dataset`, e.g. ``cifar10:3.0.2``), an `.npz` file, a
    directory of indexed TFRecord shards (`tfrecord_dir`, e.g. ImageNet; `index_npz` is the
    published mapping, used for labels when the directory has no ``labels.npz``), or a
    directory of MNIST-format IDX files (`idx_dir`).

    Returns:
      An `ArrayDataset`, or a `heldout.data.imagenet.TFRecordImageDataset` for `tfrecord_dir`.

    A path given as `dataset` (the first argument) is recognised: a ``.npz`` file is read as
    `dataset_npz`; an existing directory is refused with a message naming `tfrecord_dir=` and
    `idx_dir=`.

    Raises:
      DatasetError: not exactly one source given, or `dataset` is a directory.
      NpzError: a bad `.npz` file.
      TFRecordDatasetError: missing or incomplete shards.
    """
    if dataset is not None and dataset_npz is None:
        dataset, dataset_npz = _npz_path_given_as_name(dataset)
    if sum(x is not None for x in (dataset, dataset_npz, tfrecord_dir, idx_dir)) != 1:
        raise DatasetError(
            "give exactly one of dataset (a TFDS name), dataset_npz (a path), tfrecord_dir "
            "(a directory of TFRecord shards) and idx_dir (a directory of IDX files)"
        )
    if idx_dir is not None:
        from heldout.data.idx import load_idx_dataset

        return load_idx_dataset(idx_dir, splits)
    if tfrecord_dir is not None:
        from heldout.data.imagenet.tfrecords import load_tfrecord_dataset

        return load_tfrecord_dataset(tfrecord_dir, splits, index_npz=index_npz)
    if dataset_npz is not None:
        from heldout.data.npz import load_npz_dataset

        return load_npz_dataset(dataset_npz)
    from heldout.data.tfds import load_tfds

    return load_tfds(dataset, splits=splits, data_dir=data_dir)


def _npz_path_given_as_name(dataset: str) -> tuple[str | None, str | None]:
    """(dataset, dataset_npz) for a `dataset` argument that may be a path instead of a TFDS
    name."""
    text = str(dataset)
    if text.endswith(".npz"):
        return None, text
    if os.path.isdir(text):
        raise DatasetError(
            f"{text}: a directory, not a TFDS dataset name; pass tfrecord_dir= (TFRecord "
            "shards) or idx_dir= (IDX files), or dataset_npz= for a .npz file"
        )
    if os.path.isfile(text):
        raise DatasetError(
            f"{text}: a file, not a TFDS dataset name; pass dataset_npz= for a .npz dataset"
        )
    return dataset, None


def load_split_labels(
    dataset: str | None = None,
    dataset_npz: str | None = None,
    splits: tuple[str, ...] = ("train",),
    data_dir: str | None = None,
    tfrecord_dir: str | None = None,
    index_npz: str | None = None,
    idx_dir: str | None = None,
) -> dict[str, np.ndarray]:
    """split -> int64 [n]: the labels of the splits in dataset order, the source read once
    (TFDS images are not decoded). Sources as in `load_dataset`."""
    loaded = _labels_only(dataset, dataset_npz, splits, data_dir, tfrecord_dir, index_npz,
                          idx_dir)
    return {split: loaded.split_labels(split) for split in splits}


def _labels_only(dataset, dataset_npz, splits, data_dir, tfrecord_dir, index_npz, idx_dir):
    if dataset is not None and dataset_npz is None:
        dataset, dataset_npz = _npz_path_given_as_name(dataset)
    if dataset is not None and dataset_npz is None:
        from heldout.data.tfds import load_tfds

        return load_tfds(dataset, splits, data_dir, with_images=False)
    return load_dataset(dataset, dataset_npz, splits, data_dir, tfrecord_dir, index_npz, idx_dir)


def load_checked_labels(
    sizes: dict[str, int],
    fingerprint: Fingerprint | None,
    source: str,
    dataset: str | None = None,
    dataset_npz: str | None = None,
    data_dir: str | None = None,
    tfrecord_dir: str | None = None,
    index_npz: str | None = None,
    idx_dir: str | None = None,
) -> dict[str, np.ndarray]:
    """The labels of the splits of `sizes` (split -> the outputs' number of examples), checked
    against outputs computed on runs: the sizes, and the outputs' `fingerprint` (order, dataset
    name and version; None checks the sizes only), so per-example scores are never paired with
    labels of another order or dataset. Sources as in `load_dataset`.

    Returns:
      split -> int64 [n] labels in dataset order.

    Raises:
      FingerprintError: see `heldout.data.fingerprint.check_labels` (naming `source`).
    """
    loaded = _labels_only(dataset, dataset_npz, tuple(sizes), data_dir, tfrecord_dir, index_npz,
                          idx_dir)
    labels = {split: np.asarray(loaded.split_labels(split)) for split in sizes}
    check_labels(labels, fingerprint, source, loaded.name, sizes)
    return labels


def load_labels(
    dataset: str | None = None,
    dataset_npz: str | None = None,
    split: str = "train",
    data_dir: str | None = None,
    tfrecord_dir: str | None = None,
    index_npz: str | None = None,
    idx_dir: str | None = None,
) -> np.ndarray:
    """int64 [n]: the labels of one split in dataset order (see `load_split_labels`)."""
    return load_split_labels(dataset, dataset_npz, (split,), data_dir, tfrecord_dir, index_npz,
                             idx_dir)[split]


__all__ = [
    "ArrayDataset", "Batch", "DatasetError", "DatasetSpec", "check_labels", "flip_labels",
    "label_hash", "load_checked_labels", "load_dataset", "load_labels", "load_split_labels",
    "take_train",
]
