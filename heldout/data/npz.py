"""Datasets stored as `.npz` in the ``<split>__<key>`` convention.

Keys: ``<split>__image`` (uint8 [n, height, width, channels], or float already in [0, 1]),
``<split>__label`` (int [n]), optionally ``__num_classes`` (int, else 1 + the largest label) and
``__data_scale`` (uint8 pixels are divided by it, default 255; float pixels are used as they are,
see `heldout.data.arrays`). Example: the reference fixture ``fmnist32/dataset.npz``.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from heldout.data.arrays import ArrayDataset
from heldout.errors import NpzError
from heldout.npzio import load_npz, require, save_npz_atomic


def load_npz_dataset(path: str | os.PathLike) -> ArrayDataset:
    """Reads a `<split>__image` / `<split>__label` `.npz` dataset (``allow_pickle=False``).

    Raises:
      NpzError: unreadable file, no split, a split without its labels or images, labels not
        1-D integers, images not [n, height, width, channels] with n the labels' length,
        ``__num_classes`` not an integer scalar, ``__data_scale`` not a number, labels outside
        ``[0, num_classes)`` (one line naming the file and key, `heldout.npzio.require`).
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
    sizes: dict[str, int] = {}
    get = functools.partial(require, arrays, source=path, sizes=sizes,
                            what="an .npz dataset")

    images, labels = {}, {}
    for split in splits:
        n = f"n_{split}"
        labels[split] = get(f"{split}__label", "iu", (n,)).astype(np.int64)
        images[split] = get(f"{split}__image", None, (n, None, None, None))
    largest = max(int(v.max(initial=-1)) for v in labels.values())
    num_classes = int(get("__num_classes", "iu", ())) if "__num_classes" in arrays else largest + 1
    if largest >= num_classes or min(int(v.min(initial=0)) for v in labels.values()) < 0:
        raise NpzError(f"{path}: labels must lie in [0, {num_classes}), found up to {largest}")
    scale = float(get("__data_scale", "iuf", ())) if "__data_scale" in arrays else 255.0
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
