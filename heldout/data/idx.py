"""MNIST-format IDX files: MNIST, Fashion-MNIST, KMNIST and friends, gzip-compressed or not.

The IDX format (LeCun, Cortes & Burges, "THE MNIST DATABASE of handwritten digits", section
"FILE FORMATS FOR THE MNIST DATABASE"): a 4-byte magic number, two zero bytes, a type code
(0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64) and the number of
dimensions; then each dimension as a big-endian uint32; then the data, big-endian, row-major.

A dataset directory holds ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each possibly ending in ``.gz``
(Debian's ``dataset-fashion-mnist`` installs them gzip-compressed in
/usr/share/datasets/fashion-mnist). The ``t10k`` files are the ``test`` split; ``index`` is the
position in the file, as in TFDS's ``mnist`` and ``fashion_mnist``.
"""

from __future__ import annotations

import gzip
import os

import numpy as np

from heldout.data.arrays import ArrayDataset
from heldout.errors import IdxError

IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

# split -> (images stem, labels stem), the names of the MNIST distribution.
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads one IDX file (gzip-compressed files are recognised by their content).

    Args:
      path: the file.

    Returns:
      The array in native byte order, e.g. uint8 [60000, 28, 28] for MNIST's training images
      or uint8 [60000] for its labels.

    Raises:
      IdxError: no such file, a bad gzip stream, a bad magic number or type code, or a data
        size that differs from the header's dimensions (naming the file and both sizes).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise IdxError(f"{path}: no such file")
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise IdxError(f"{path}: truncated or corrupt gzip data ({e})") from e
    if len(raw) < 4 or raw[:2] != b"\x00\x00":
        raise IdxError(
            f"{path}: not an IDX file; expected a magic number starting with two zero bytes, "
            f"found {raw[:4].hex() or 'an empty file'}"
        )
    code, ndim = raw[2], raw[3]
    if code not in IDX_DTYPES:
        raise IdxError(
            f"{path}: unknown IDX type code 0x{code:02X}; expected one of "
            f"{[f'0x{c:02X}' for c in IDX_DTYPES]}"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IdxError(f"{path}: truncated header ({len(raw)} bytes, {ndim} dimensions)")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise IdxError(
            f"{path}: header says {shape} of {dtype.name} ({expected} bytes of data), found "
            f"{len(raw) - header} bytes"
        )
    data = np.frombuffer(raw, dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def find_idx_file(directory: str | os.PathLike, stem: str) -> str:
    """The path of ``stem`` in `directory`, as it is or with ``.gz``; also accepts the
    ``train-images.idx3-ubyte`` spelling some copies use.

    Raises:
      IdxError: none found (the message lists the directory's files).
    """
    directory = os.fspath(directory)
    dotted = stem.replace("-idx", ".idx")
    for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    found = sorted(os.listdir(directory)) if os.path.isdir(directory) else None
    raise IdxError(
        f"{directory}: no {stem}[.gz]; "
        + (f"the directory holds {found}" if found is not None else "no such directory")
    )


def load_idx_dataset(
    directory: str | os.PathLike = DEBIAN_FASHION_MNIST,
    splits: tuple[str, ...] = ("train", "test"),
    num_classes: int | None = None,
) -> ArrayDataset:
    """Loads an MNIST-format dataset directory into memory.

    Args:
      directory: holds the IDX files (see the module docstring); default: Debian's
        Fashion-MNIST.
      splits: ``train`` and/or ``test`` (``t10k``).
      num_classes: default 1 + the largest label.

    Returns:
      An `ArrayDataset` named after the directory, images uint8 [n, rows, cols, 1], labels
      int64 [n], scale 255.

    Raises:
      IdxError: a missing or bad file, images that are not uint8 [n, rows, cols], labels that are
        not [n] integers of the same length, or labels outside ``[0, num_classes)``.
    """
    directory = os.fspath(directory)
    images, labels = {}, {}
    for split in splits:
        if split not in IDX_FILES:
            raise IdxError(f"unknown split {split!r}; IDX datasets have {list(IDX_FILES)}")
        image_path, label_path = (find_idx_file(directory, stem) for stem in IDX_FILES[split])
        image, label = read_idx(image_path), read_idx(label_path)
        if image.ndim != 3 or image.dtype != np.uint8:
            raise IdxError(
                f"{image_path}: expected uint8 images [n, rows, cols], found {image.dtype} "
                f"{image.shape}"
            )
        if label.ndim != 1 or not np.issubdtype(label.dtype, np.integer):
            raise IdxError(f"{label_path}: expected integer labels [n], found {label.dtype} "
                           f"{label.shape}")
        if len(label) != len(image):
            raise IdxError(
                f"{label_path}: {len(label)} labels for {len(image)} images in {image_path}"
            )
        images[split] = image[..., None]
        labels[split] = label.astype(np.int64)
    largest = max(int(v.max(initial=-1)) for v in labels.values())
    num_classes = largest + 1 if num_classes is None else int(num_classes)
    if largest >= num_classes or min(int(v.min(initial=0)) for v in labels.values()) < 0:
        raise IdxError(f"{directory}: labels must lie in [0, {num_classes}), found up to {largest}")
    return ArrayDataset(directory, num_classes, images, labels, 255.0)
