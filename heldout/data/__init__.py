"""Datasets with a stable `index`: the example's position in its split.

Sources: TFDS (`heldout.data.tfds`, the release's CIFAR order), `.npz` files
(`heldout.data.npz`). Every dataset offers `name`, `num_classes`, `image_shape`,
`num_examples(split)`, `split_labels(split)` and `batches(split, batch_size)` yielding
`Batch(image float32, label int64, index int64)` in order, without shuffling.
"""

from __future__ import annotations

from heldout.data.arrays import ArrayDataset, Batch, label_hash


def load_dataset(
    dataset: str | None = None,
    dataset_npz: str | None = None,
    splits: tuple[str, ...] = ("train", "test"),
    data_dir: str | None = None,
) -> ArrayDataset:
    """Loads a dataset from TFDS (`dataset`, e.g. ``cifar10:3.0.2``) or an `.npz` file.

    Raises:
      ValueError: neither or both sources given.
      NpzError: a bad `.npz` file.
    """
    if (dataset is None) == (dataset_npz is None):
        raise ValueError("give exactly one of dataset (a TFDS name) and dataset_npz (a path)")
    if dataset_npz is not None:
        from heldout.data.npz import load_npz_dataset

        return load_npz_dataset(dataset_npz)
    from heldout.data.tfds import load_tfds

    return load_tfds(dataset, splits=splits, data_dir=data_dir)


def load_labels(
    dataset: str | None = None,
    dataset_npz: str | None = None,
    split: str = "train",
    data_dir: str | None = None,
):
    """int64 [n]: the labels of one split in dataset order (TFDS images are not decoded)."""
    if dataset is not None and dataset_npz is None:
        from heldout.data.tfds import load_tfds

        return load_tfds(dataset, (split,), data_dir, with_images=False).split_labels(split)
    return load_dataset(dataset, dataset_npz, (split,), data_dir).split_labels(split)


__all__ = ["ArrayDataset", "Batch", "label_hash", "load_dataset", "load_labels"]
