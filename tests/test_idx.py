"""MNIST-format IDX files: the format, errors, and the fmnist32 fixture written as IDX files."""

import os

import numpy as np
import pytest
from idx_helpers import fmnist_idx_arrays, write_idx

from heldout.data.idx import (
    IdxError,
    find_idx_file,
    load_idx_dataset,
    read_idx,
)


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


def test_fmnist_fixture_as_idx_files(fmnist_idx_dir, fmnist_dataset):
    """The fmnist32 fixture written as gzipped 28x28 IDX files (as Debian's
    dataset-fashion-mnist ships Fashion-MNIST) reads back with its sizes, labels and pixels:
    the fixture's images are these, zero-padded to 32x32 and repeated to 3 channels."""
    from heldout.data import DatasetSpec, load_dataset

    dataset = load_dataset(DatasetSpec(idx_dir=fmnist_idx_dir))
    assert dataset.num_examples("train") == 2000 and dataset.num_examples("test") == 500
    assert dataset.image_shape == (28, 28, 1) and dataset.num_classes == 10
    assert sorted(os.listdir(fmnist_idx_dir)) == [
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
        "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    for split in ("train", "test"):
        np.testing.assert_array_equal(dataset.split_labels(split),
                                      fmnist_dataset.split_labels(split))
        padded = np.pad(dataset.images[split], ((0, 0), (2, 2), (2, 2), (0, 0)))
        np.testing.assert_array_equal(np.repeat(padded, 3, axis=-1),
                                      fmnist_dataset.images[split])
    # Fashion-MNIST has 10 classes, all present in the fixture's splits.
    assert (np.bincount(dataset.split_labels("test"), minlength=10) > 0).all()
    images, labels = fmnist_idx_arrays(
        os.path.join(os.path.dirname(__file__), "data", "reference", "fmnist32", "dataset.npz")
    )["test"]
    assert images.shape == (500, 28, 28) and labels.dtype == np.uint8


def test_load_dataset_dispatches_idx_dir(tmp_path):
    from heldout.data import DatasetSpec, load_dataset

    data = _write_dataset(tmp_path)
    dataset = load_dataset(DatasetSpec(idx_dir=str(tmp_path)), ("train", "test"))
    for split, (images, labels) in data.items():
        np.testing.assert_array_equal(dataset.split_labels(split), labels)
        np.testing.assert_array_equal(dataset.images[split][..., 0], images)
