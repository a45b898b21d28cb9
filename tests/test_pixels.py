"""The pixel rule, one place for every in-memory source: uint8 / scale, float as is in [0, 1]."""

import numpy as np
import pytest

from heldout.data import ArrayDataset, DatasetError
from heldout.data.npz import load_npz_dataset
from heldout.npzio import load_npz, save_npz_atomic


def _copy(fmnist_dir, tmp_path, convert):
    arrays = load_npz(fmnist_dir / "dataset.npz")
    for key in [k for k in arrays if k.endswith("__image")]:
        arrays[key] = convert(arrays[key])
    path = tmp_path / "copy.npz"
    save_npz_atomic(path, arrays)
    return path


def _first_batch(dataset, split="test"):
    return next(dataset.batches(split, 64)).image


def test_float_images_in_unit_range_are_not_divided_again(fmnist_dir, fmnist_dataset, tmp_path):
    # Before the fix a float copy was divided by 255 again: near-black inputs, accuracy 0.10.
    path = _copy(fmnist_dir, tmp_path, lambda im: im.astype(np.float32) / 255)
    floats = load_npz_dataset(path)
    expected = _first_batch(fmnist_dataset)
    got = _first_batch(floats)
    assert got.dtype == np.float32 and expected.max() > 0.9
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-7)


@pytest.mark.parametrize("convert, message", [
    (lambda im: im.astype(np.float32), "must lie in \\[0, 1\\]; found values in \\[0.0, 255.0\\]"),
    (lambda im: im.astype(np.int16), "must be uint8 .* or float .* found int16"),
])
def test_other_pixels_are_refused(fmnist_dir, tmp_path, convert, message):
    path = _copy(fmnist_dir, tmp_path, convert)
    with pytest.raises(DatasetError, match=message):
        load_npz_dataset(path)


def test_non_finite_float_pixels_are_refused():
    images = np.full((2, 4, 4, 1), 0.5, np.float32)
    images[1, 2, 2, 0] = np.nan
    with pytest.raises(DatasetError, match="non-finite"):
        ArrayDataset("x", 2, {"train": images}, {"train": np.array([0, 1])})
