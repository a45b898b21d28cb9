"""Transformations of in-memory datasets: a prefix of the training split, label noise."""

from __future__ import annotations

import dataclasses

import numpy as np

from heldout.data.arrays import ArrayDataset
from heldout.errors import DatasetError


def take_train(dataset: ArrayDataset, train_size: int) -> ArrayDataset:
    """The dataset with only its first `train_size` training examples (for quick studies).

    Raises:
      DatasetError: `train_size` < 1 or larger than the training split.
    """
    n = dataset.num_examples("train")
    if not 0 < train_size <= n:
        raise DatasetError(f"train_size must lie in [1, {n}] for {dataset.name}, got {train_size}")
    images = {**dataset.images, "train": dataset.images["train"][:train_size]}
    labels = {**dataset.labels, "train": dataset.labels["train"][:train_size]}
    ids = dict(dataset.ids)
    if "train" in ids:
        ids["train"] = ids["train"][:train_size]
    return dataclasses.replace(dataset, images=images, labels=labels, ids=ids)


def flip_labels(
    dataset: ArrayDataset, fraction: float, seed: int = 0
) -> tuple[ArrayDataset, np.ndarray]:
    """Label noise: moves ``round(fraction * n_train)`` training labels to another class.

    The examples are drawn without replacement and each new label uniformly from the other
    ``num_classes - 1`` classes, with a generator of seed `seed`. Mislabeled examples are the
    textbook memorized examples (Feldman & Zhang 2020, Sec. 4).

    Returns:
      The dataset with the new training labels, and int64 [k] the flipped positions, sorted.

    Raises:
      DatasetError: a fraction outside [0, 1] or fewer than 2 classes.
    """
    if not 0.0 <= fraction <= 1.0 or dataset.num_classes < 2:
        raise DatasetError(f"label noise needs a fraction in [0, 1] and >= 2 classes, got "
                         f"{fraction} and {dataset.num_classes} classes")
    labels = dataset.split_labels("train").copy()
    rng = np.random.default_rng(seed)
    flipped = np.sort(rng.choice(len(labels), int(round(fraction * len(labels))), replace=False))
    labels[flipped] = (labels[flipped] + rng.integers(1, dataset.num_classes, len(flipped))) % (
        dataset.num_classes)
    noisy = dataclasses.replace(dataset, labels={**dataset.labels, "train": labels})
    return noisy, flipped.astype(np.int64)
