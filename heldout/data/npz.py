"""Datasets stored as `.npz` in the ``<split>__<key>`` convention.

Keys: ``<split>__image`` (uint8 [n, height, width, channels], or float already in [0, 1]),
``<split>__label`` (int [n]), optionally ``__num_classes`` (int, else 1 + the largest label) and
``__data_scale`` (uint8 pixels are divided by it, default 255; float pixels are used as they are,
see `heldout.data.arrays`). Example: the reference fixture ``fmnist32/dataset.npz``.
"""

from __future__ import annotations

import os

import numpy as np

from heldout.data.arrays import ArrayDataset
from heldout.npzio import NpzError, load_npz, save_npz_atomic


def load_npz_dataset(path: str | os.PathLike) -> ArrayDataset:
    """Reads a `<split>__image` / `<split>__label` `.npz` dataset (``allow_pickle=False``).

    Raises:
      NpzError: unreadable file, no split, a split without its labels or images, lengths or
        dtypes that do not fit, labels outside ``[0, num_classes)``.
      DatasetError: images neither uint8 nor float in [0, 1].
    """
    path = os.fspath(path)
    arrays = load_npz(path)
    splits = sorted({k.split("__")[0] for k in arrays if "__" in k and not k.startswith("__")})
    if not splits:
        raise NpzError(
            f"{path}: no dataset splits; expected keys like 'train__image' and 'train__label', "
            f"found {sorted(arrays)}"
        )
    images, labels = {}, {}
    for split in splits:
        for key in (f"{split}__image", f"{split}__label"):
            if key not in arrays:
                raise NpzError(f"{path}: split {split!r} has no key {key!r}")
        image, label = arrays[f"{split}__image"], arrays[f"{split}__label"]
        if image.ndim != 4 or len(image) != len(label) or label.ndim != 1:
            raise NpzError(
                f"{path}: split {split!r}: expected image [n, height, width, channels] and label "
                f"[n], found {image.shape} and {label.shape}"
            )
        if not np.issubdtype(label.dtype, np.integer):
            raise NpzError(f"{path}: key '{split}__label' must be integers, found {label.dtype}")
        images[split], labels[split] = image, label.astype(np.int64)
    largest = max(int(v.max(initial=-1)) for v in labels.values())
    num_classes = int(arrays["__num_classes"]) if "__num_classes" in arrays else largest + 1
    if largest >= num_classes or min(int(v.min(initial=0)) for v in labels.values()) < 0:
        raise NpzError(f"{path}: labels must lie in [0, {num_classes}), found up to {largest}")
    scale = float(arrays["__data_scale"]) if "__data_scale" in arrays else 255.0
    return ArrayDataset(path, num_classes, images, labels, scale)


def save_npz_dataset(path: str | os.PathLike, dataset: ArrayDataset) -> None:
    """Writes an in-memory dataset in the ``<split>__<key>`` convention, atomically, so that
    `load_npz_dataset` (and ``--dataset_npz``) reads it back: ``<split>__image`` as stored
    (uint8), ``<split>__label`` int64, ``__num_classes`` int64 and ``__data_scale`` float32.
    """
    arrays = {"__num_classes": np.array(dataset.num_classes, np.int64),
              "__data_scale": np.array(dataset.scale, np.float32)}
    for split in dataset.images:
        arrays[f"{split}__image"] = dataset.images[split]
        arrays[f"{split}__label"] = dataset.split_labels(split)
    save_npz_atomic(path, arrays)
