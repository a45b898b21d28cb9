"""TFDS image datasets in the release's order.

The released CIFAR runs index examples by their position in TFDS ``cifar10:3.0.2`` /
``cifar100:3.0.2`` loaded with ``shuffle_files=False`` (for CIFAR-100, ``label`` is the fine
label). Splits are read by iteration (not ``batch_size=-1``) and kept in memory as uint8.

A name without a version (``cifar10``) loads whatever version TFDS has installed, which may
order or label examples differently from the release: it is resolved to the version actually
loaded (the dataset is named ``cifar10:<version>``, so fingerprints record it and outputs of
another version are refused), with a warning.
"""

from __future__ import annotations

import warnings

import numpy as np
import tensorflow_datasets as tfds
from tqdm import tqdm

from heldout.data.arrays import ArrayDataset
from heldout.errors import DatasetError


def load_tfds(
    name: str,
    splits: tuple[str, ...] = ("train", "test"),
    data_dir: str | None = None,
    with_images: bool = True,
) -> ArrayDataset:
    """Loads TFDS splits into memory in TFDS order (``index`` = position).

    Args:
      name: TFDS name with version, e.g. ``cifar10:3.0.2``; without one, the installed version
        is used and named (a `UserWarning` says which).
      splits: splits to load.
      data_dir: TFDS data directory (default: TFDS's own).
      with_images: False reads labels and ids only (images are not decoded; `images` is empty).

    Returns:
      An `ArrayDataset` named ``<name>:<version>`` (the version loaded) whose `ids` hold the TFDS
      ``id`` feature where the dataset has one.
    """
    decoders = None if with_images else {"image": tfds.decode.SkipDecoding()}
    images, labels, ids = {}, {}, {}
    num_classes = 0
    for split in splits:
        try:
            ds, info = tfds.load(
                name,
                split=split,
                data_dir=data_dir,
                shuffle_files=False,
                decoders=decoders,
                with_info=True,
            )
        except tfds.core.registered.DatasetNotFoundError as e:
            raise DatasetError(f"TFDS has no dataset {name!r} ({e})") from e
        num_classes = int(info.features["label"].num_classes)
        name = _versioned(name, str(info.version))
        try:
            n = info.splits[split].num_examples
        except KeyError:  # split sizes unknown (e.g. under tfds.testing.mock_data)
            n = None
        image_list, label_list, id_list = [], [], []
        for example in tqdm(tfds.as_numpy(ds), total=n, desc=f"{name} {split}", unit="ex"):
            if with_images:
                image_list.append(example["image"])
            label_list.append(example["label"])
            if "id" in example:
                id_list.append(example["id"])
        labels[split] = np.asarray(label_list, dtype=np.int64)
        if with_images:
            images[split] = np.stack(image_list)
        if id_list:
            ids[split] = np.asarray([i.decode() if isinstance(i, bytes) else i for i in id_list])
    return ArrayDataset(name, num_classes, images, labels, 255.0, ids)


def _versioned(name: str, version: str) -> str:
    """``name:version`` of what TFDS loaded; warns when `name` gave no version."""
    if ":" in name:
        return name
    warnings.warn(
        f"TFDS dataset {name!r} given without a version: loaded the installed {name}:{version}; "
        f"the release's runs use a fixed version (e.g. cifar10:3.0.2): give it to be sure the "
        f"order is theirs",
        UserWarning,
        stacklevel=3,
    )
    return f"{name}:{version}"
