"""MNIST-format IDX files: the format, errors, and Debian's Fashion-MNIST against the fixture."""

import gzip
import os

import numpy as np
import pytest

from heldout.data.idx import (
    DEBIAN_FASHION_MNIST,
    IDX_DTYPES,
    IdxError,
    find_idx_file,
    load_idx_dataset,
    read_idx,
)

_CODES = {np.dtype(v).newbyteorder("="): k for k, v in IDX_DTYPES.items()}


def write_idx(path, array, compress=False):
    """Writes an array in the IDX format (big-endian header and data)."""
    array = np.asarray(array)
    code = _CODES[array.dtype.newbyteorder("=")]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    raw = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    with open(path, "wb") as f:
        f.write(gzip.compress(raw) if compress else raw)


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trips_every_type(tmp_path, dtype, compress):
    rng = np.random.default_rng(0)
    array = (rng.standard_normal((3, 4, 5)) * 50).astype(dtype)
    path = tmp_path / "a.idx"
    write_idx(path, array, compress)
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, array)


def test_read_idx_byte_layout_is_big_endian(tmp_path):
    # Magic 0x00000C01 (int32, 1 dimension), size 2, values 1 and 258, written by hand.
    path = tmp_path / "labels"
    path.write_bytes(bytes([0, 0, 0x0C, 1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 1, 2]))
    np.testing.assert_array_equal(read_idx(path), [1, 258])


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "not an IDX file"),
        (b"\x01\x00\x08\x01\x00\x00\x00\x02ab", "not an IDX file"),
        (bytes([0, 0, 0x07, 1, 0, 0, 0, 2, 1, 2]), "unknown IDX type code 0x07"),
        (bytes([0, 0, 0x08, 2, 0, 0, 0, 2]), "truncated header"),
        (bytes([0, 0, 0x08, 1, 0, 0, 0, 3, 1, 2]), "found 2 bytes"),
        (bytes([0, 0, 0x08, 1, 0, 0, 0, 1, 1, 2]), "found 2 bytes"),
        (b"\x1f\x8b\x08\x00garbage", "gzip"),
    ],
)
def test_read_idx_bad_files_name_the_file(tmp_path, content, message):
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(content)
    with pytest.raises(IdxError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(IdxError, match="no such file"):
        read_idx(tmp_path / "nothing")


def _write_dataset(directory, n_train=12, n_test=5, compress=True, dotted=False):
    rng = np.random.default_rng(1)
    data = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, (n, 6, 7), dtype=np.uint8)
        labels = rng.integers(0, 4, n).astype(np.uint8)
        sep = "." if dotted else "-"
        suffix = ".gz" if compress else ""
        write_idx(os.path.join(directory, f"{prefix}-images{sep}idx3-ubyte{suffix}"), images,
                  compress)
        write_idx(os.path.join(directory, f"{prefix}-labels{sep}idx1-ubyte{suffix}"), labels,
                  compress)
        data[split] = (images, labels)
    return data


@pytest.mark.parametrize("compress, dotted", [(True, False), (False, False), (False, True)])
def test_load_idx_dataset(tmp_path, compress, dotted):
    data = _write_dataset(tmp_path, compress=compress, dotted=dotted)
    dataset = load_idx_dataset(tmp_path)
    assert dataset.image_shape == (6, 7, 1)
    assert dataset.scale == 255.0
    assert dataset.num_classes == int(max(data["train"][1].max(), data["test"][1].max())) + 1
    for split, (images, labels) in data.items():
        np.testing.assert_array_equal(dataset.images[split][..., 0], images)
        np.testing.assert_array_equal(dataset.split_labels(split), labels)
        assert dataset.split_labels(split).dtype == np.int64
    batch = next(dataset.batches("test", 2))
    assert batch.image.dtype == np.float32
    np.testing.assert_allclose(batch.image[..., 0], data["test"][0][:2] / np.float32(255))


def test_load_idx_dataset_errors(tmp_path):
    with pytest.raises(IdxError, match="no train-images-idx3-ubyte"):
        load_idx_dataset(tmp_path)
    _write_dataset(tmp_path, compress=False)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(3, np.uint8))
    with pytest.raises(IdxError, match="3 labels for 5 images"):
        load_idx_dataset(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.full(5, 9, np.uint8))
    with pytest.raises(IdxError, match=r"labels must lie in \[0, 4\)"):
        load_idx_dataset(tmp_path, num_classes=4)
    with pytest.raises(IdxError, match="unknown split"):
        load_idx_dataset(tmp_path, splits=("validation",))


def test_find_idx_file_lists_directory(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(IdxError, match="readme.txt"):
        find_idx_file(tmp_path, "train-images-idx3-ubyte")


def test_debian_fashion_mnist_holds_the_reference_fixture(fmnist_dataset):
    """Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist): sizes, the known
    first labels, and every image of the reference fixture (zero-padded to 32x32x3 from these
    files) found with the same label."""
    dataset = load_idx_dataset(DEBIAN_FASHION_MNIST)
    assert dataset.num_examples("train") == 60000 and dataset.num_examples("test") == 10000
    assert dataset.image_shape == (28, 28, 1) and dataset.num_classes == 10
    # Fashion-MNIST's first training labels: ankle boot, T-shirt, T-shirt, dress, ...
    np.testing.assert_array_equal(dataset.split_labels("train")[:10],
                                  [9, 0, 0, 3, 0, 2, 7, 2, 5, 5])
    np.testing.assert_array_equal(np.bincount(dataset.split_labels("test")), [1000] * 10)
    for split in ("train", "test"):
        position = {img.tobytes(): i for i, img in enumerate(dataset.images[split])}
        fixture = fmnist_dataset.images[split]
        np.testing.assert_array_equal(fixture[:, :2], 0)
        found = [position.get(np.ascontiguousarray(img[2:30, 2:30, :1]).tobytes())
                 for img in fixture]
        assert None not in found
        np.testing.assert_array_equal(dataset.split_labels(split)[found],
                                      fmnist_dataset.split_labels(split))


def test_load_dataset_dispatches_idx_dir(tmp_path):
    from heldout.data import load_dataset

    data = _write_dataset(tmp_path)
    dataset = load_dataset(idx_dir=str(tmp_path), splits=("train", "test"))
    for split, (images, labels) in data.items():
        np.testing.assert_array_equal(dataset.split_labels(split), labels)
        np.testing.assert_array_equal(dataset.images[split][..., 0], images)
