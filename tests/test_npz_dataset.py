"""`.npz` datasets (``<split>__image`` / ``<split>__label``): bad files refused in one line."""

import numpy as np
import pytest

from heldout.data.npz import load_npz_dataset
from heldout.npzio import NpzError, save_npz_atomic


def _arrays():
    return {
        "train__image": np.zeros((4, 2, 2, 1), np.uint8),
        "train__label": np.array([0, 1, 2, 1]),
        "test__image": np.zeros((3, 2, 2, 1), np.uint8),
        "test__label": np.array([2, 0, 1]),
        "__num_classes": np.array(3),
        "__data_scale": np.array(255.0),
    }


def test_good_file_loads(tmp_path):
    save_npz_atomic(tmp_path / "d.npz", _arrays())
    data = load_npz_dataset(tmp_path / "d.npz")
    assert data.num_classes == 3 and data.split_labels("test").tolist() == [2, 0, 1]


@pytest.mark.parametrize("change, message", [
    (lambda a: a.pop("test__label"), r"d\.npz: missing key 'test__label' \(expected int array "
                                     r"\[n_test\] in an \.npz dataset\); found keys"),
    (lambda a: a.update(train__label=np.zeros(4)),
     r"d\.npz: key 'train__label': expected int array \[n_train\], found float64 \[4\]$"),
    (lambda a: a.update(test__image=np.zeros((2, 2, 2, 1), np.uint8)),
     r"d\.npz: key 'test__image': expected array \[n_test=3, \*, \*, \*\], found uint8 "
     r"\[2, 2, 2, 1\]$"),
    (lambda a: a.update(train__image=np.zeros((4, 2, 2), np.uint8)),
     r"key 'train__image': expected array \[n_train=4, \*, \*, \*\], found uint8 \[4, 2, 2\]$"),
    (lambda a: a.update(__num_classes=np.array(3.5)),
     r"key '__num_classes': expected int scalar, found float64 scalar$"),
    (lambda a: a.update(__data_scale=np.array(["255"])),
     r"key '__data_scale': expected int or float scalar, found <U3 \[1\]$"),
    (lambda a: a.update(__num_classes=np.array(2)), r"labels must lie in \[0, 2\)"),
])
def test_bad_files_are_refused_naming_file_and_key(tmp_path, change, message):
    arrays = _arrays()
    change(arrays)
    save_npz_atomic(tmp_path / "d.npz", arrays)
    with pytest.raises(NpzError, match=message):
        load_npz_dataset(tmp_path / "d.npz")
