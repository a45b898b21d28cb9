"""IDX files written by the tests: the format's writer and the fmnist32 fixture as IDX files.

The suite needs no IDX files from outside the repository: `write_fmnist_idx` turns the
Fashion-MNIST images of ``tests/data/reference/fmnist32/dataset.npz`` (zero-padded from 28x28
to 32x32 and repeated to 3 channels, see tests/data/README.md) back into 28x28 MNIST-format
files, as Debian's dataset-fashion-mnist ships them.
"""

from __future__ import annotations

import gzip
import os

import numpy as np

from heldout.data.idx import IDX_DTYPES, IDX_FILES
from heldout.npzio import load_npz

_CODES = {np.dtype(v).newbyteorder("="): k for k, v in IDX_DTYPES.items()}


def write_idx(path, array, compress: bool = False) -> None:
    """Writes an array in the IDX format (big-endian header and data), gzipped if asked."""
    array = np.asarray(array)
    code = _CODES[array.dtype.newbyteorder("=")]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    raw = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    with open(path, "wb") as f:
        f.write(gzip.compress(raw) if compress else raw)


def fmnist_idx_arrays(dataset_npz) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """split -> (uint8 [n, 28, 28] images, uint8 [n] labels) of the fmnist32 fixture, the
    2-pixel zero border and the repeated channels removed."""
    arrays = load_npz(dataset_npz)
    out = {}
    for split in IDX_FILES:
        images = arrays[f"{split}__image"]
        assert not images[:, :2].any() and not images[:, 30:].any()  # the zero border
        out[split] = (np.ascontiguousarray(images[:, 2:30, 2:30, 0]),
                      arrays[f"{split}__label"].astype(np.uint8))
    return out


def write_fmnist_idx(directory, dataset_npz, compress: bool = True) -> str:
    """Writes the fmnist32 fixture as MNIST-format IDX files in `directory` (created); returns
    the directory."""
    os.makedirs(directory, exist_ok=True)
    for split, (images, labels) in fmnist_idx_arrays(dataset_npz).items():
        suffix = ".gz" if compress else ""
        image_stem, label_stem = IDX_FILES[split]
        write_idx(os.path.join(directory, image_stem + suffix), images, compress)
        write_idx(os.path.join(directory, label_stem + suffix), labels, compress)
    return os.fspath(directory)
