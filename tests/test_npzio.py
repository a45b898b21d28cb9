"""`heldout.npzio.require`: the one schema check of every `.npz` reader."""

import os

import numpy as np
import pytest

from heldout.errors import HeldoutError
from heldout.npzio import NpzError, load_npz, require, save_npz_atomic


def _arrays():
    return {
        "count_in": np.arange(5, dtype=np.int64),
        "memorization": np.linspace(0, 1, 5),
        "influence": np.zeros((3, 5), np.float32),
        "num_runs": np.array(4, np.int64),
        "format": np.array("acc/1"),
        "mask": np.ones(5, bool),
    }


def test_returns_the_stored_array_and_binds_sizes_across_keys():
    arrays, sizes = _arrays(), {}
    mem = require(arrays, "memorization", "f", ("n_train",), source="est.npz", sizes=sizes)
    assert mem is arrays["memorization"] and sizes == {"n_train": 5}
    infl = require(arrays, "influence", "f", ("n_test", "n_train"), source="est.npz", sizes=sizes)
    assert infl.dtype == np.float32 and sizes == {"n_train": 5, "n_test": 3}
    assert int(require(arrays, "num_runs", "iu", (), sizes=sizes)) == 4
    assert str(require(arrays, "format", "U", ())) == "acc/1"
    assert require(arrays, "mask", "biu", (5,)).dtype == bool
    assert require(arrays, "influence", None).shape == (3, 5)  # any dtype, any shape


def test_missing_key_names_file_key_expectation_and_found_keys():
    with pytest.raises(NpzError) as info:
        require({"a": np.zeros(2)}, "count_in", "iu", ("n_train",), source="est.npz",
                sizes={"n_train": 2000}, what="a `heldout estimate` file")
    assert str(info.value) == (
        "est.npz: missing key 'count_in' (expected int array [n_train=2000] in a `heldout "
        "estimate` file); found keys ['a']"
    )


def test_wrong_kind_gives_the_uniform_line():
    arrays = _arrays()
    arrays["count_in"] = np.zeros(1999)
    with pytest.raises(NpzError) as info:
        require(arrays, "count_in", "iu", ("n_train",), source="est.npz", sizes={"n_train": 2000})
    assert str(info.value) == (
        "est.npz: key 'count_in': expected int array [n_train=2000], found float64 [1999]"
    )
    with pytest.raises(NpzError, match=r"key 'format': expected bool or int scalar, found <U5 "
                                       r"scalar$"):
        require(arrays, "format", "biu", ())
    with pytest.raises(NpzError, match=r"expected bytes or str array \[\*\], found bool \[5\]"):
        require(arrays, "mask", "SU", (None,))


def test_wrong_rank_and_scalar():
    arrays = _arrays()
    with pytest.raises(NpzError, match=r"^arrays: key 'influence': expected float array \[n\], "
                                       r"found float32 \[3, 5\]$"):
        require(arrays, "influence", "f", ("n",))
    with pytest.raises(NpzError, match=r"key 'count_in': expected int scalar, found int64 \[5\]"):
        require(arrays, "count_in", "iu", ())
    with pytest.raises(NpzError, match=r"key 'num_runs': expected int array \[\*\], found int64 "
                                       r"scalar"):
        require(arrays, "num_runs", "iu", (None,))


def test_wrong_size_exact_and_within_one_key():
    arrays = _arrays()
    with pytest.raises(NpzError, match=r"key 'memorization': expected float array \[6\], found "
                                       r"float64 \[5\]"):
        require(arrays, "memorization", "f", (6,))
    # A name used twice in one shape must agree with itself (a square matrix).
    with pytest.raises(NpzError, match=r"expected float array \[n, n\], found float32 \[3, 5\]"):
        require(arrays, "influence", "f", ("n", "n"))
    assert require({"k": np.eye(3)}, "k", "f", ("n", "n")).shape == (3, 3)


def test_sizes_bound_by_one_key_are_checked_on_the_next():
    arrays, sizes = _arrays(), {}
    require(arrays, "influence", "f", ("n_test", "n_train"), sizes=sizes, source="e.npz")
    arrays["count_in"] = np.zeros(4, np.int64)
    with pytest.raises(NpzError, match=r"^e\.npz: key 'count_in': expected int array "
                                       r"\[n_train=5\], found int64 \[4\]$"):
        require(arrays, "count_in", "iu", ("n_train",), sizes=sizes, source="e.npz")
    assert sizes == {"n_test": 3, "n_train": 5}  # a failed key binds nothing


def test_error_class_and_non_numpy_values():
    class OwnError(NpzError):
        pass

    with pytest.raises(OwnError, match="key 'x': expected float array"):
        require({"x": [1, 2]}, "x", "f", ("n",), error=OwnError)
    assert issubclass(NpzError, HeldoutError)
    assert require({"x": [1.0, 2.0]}, "x", "f", (2,)).dtype == np.float64
    with pytest.raises(ValueError, match="unknown dtype kind 'x'"):
        require({"x": np.zeros(2)}, "x", "fx", (2,))


def test_on_a_file_read_back(tmp_path):
    save_npz_atomic(tmp_path / "a.npz", {"labels": np.zeros(3, np.float32)})
    arrays = load_npz(tmp_path / "a.npz")
    with pytest.raises(NpzError, match=r"a\.npz: key 'labels': expected int array \[n\], found "
                                       r"float32 \[3\]"):
        require(arrays, "labels", "iu", ("n",), source=str(tmp_path / "a.npz"))


def test_atomic_npz_write_copies_nothing(tmp_path, monkeypatch):
    # The estimate file's 2.4 GB influence is written once, from its own memory: np.savez
    # copied it 16 MiB at a time into new bytes objects (a traced peak of 16 MiB, and seconds
    # of page faults for 2.4 GB); the file is the same.
    import tracemalloc

    from heldout import npzio

    monkeypatch.setattr(npzio, "_WRITE_CHUNK", 3 * 2**20, raising=False)  # several writes
    big = np.ones((5 * 2**10, 2**10), np.float32)  # 20 MiB
    arrays = {"influence": big, "count_in": np.arange(4), "f": np.asfortranarray(big[:5, :7])}
    tracemalloc.start()
    try:
        save_npz_atomic(tmp_path / "big.npz", arrays)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20, peak
    np.savez(tmp_path / "numpy.npz", **arrays)
    assert os.path.getsize(tmp_path / "big.npz") == os.path.getsize(tmp_path / "numpy.npz")
    with np.load(tmp_path / "big.npz") as ours, np.load(tmp_path / "numpy.npz") as theirs:
        assert ours.files == theirs.files
        for key in theirs.files:
            assert ours[key].dtype == theirs[key].dtype
            np.testing.assert_array_equal(ours[key], theirs[key])
            assert ours[key].flags.f_contiguous == theirs[key].flags.f_contiguous


def test_load_npz_reads_every_kind_of_array_as_np_load_does(tmp_path, fmnist_dir):
    arrays = {
        "bools": np.arange(7) % 2 == 0, "int64": np.arange(5), "empty": np.zeros((0, 3)),
        "scalar": np.array(2.5), "text": np.array(["ab", "c"]), "word": np.array("acc/1"),
        "fortran": np.asfortranarray(np.arange(12.0).reshape(3, 4)), "big": np.arange(
            4, dtype=">i4"), "record": np.zeros(2, [("a", "<i2"), ("b", "<f8")]),
    }
    for name, save in (("stored", np.savez), ("compressed", np.savez_compressed)):
        save(tmp_path / f"{name}.npz", **arrays)
    for path in [tmp_path / "stored.npz", tmp_path / "compressed.npz",
                 fmnist_dir / "dataset.npz",
                 fmnist_dir / "fmnist32-inception" / "0.5" / "0" / "aux_arrays.npz"]:
        got = load_npz(path)
        with np.load(path, allow_pickle=False) as want:
            assert sorted(got) == sorted(want.files)
            for key in want.files:
                assert got[key].dtype == want[key].dtype and got[key].shape == want[key].shape
                np.testing.assert_array_equal(got[key], want[key])
                assert got[key].flags.f_contiguous == want[key].flags.f_contiguous
    for path in (tmp_path / "stored.npz", tmp_path / "compressed.npz"):  # a few keys only
        got = load_npz(path, ("word", "fortran", "absent"))
        assert sorted(got) == ["fortran", "word"] and str(got["word"]) == "acc/1"
        np.testing.assert_array_equal(got["fortran"], arrays["fortran"])
    # A changed byte of a stored array is caught by its CRC-32, as zipfile catches it.
    data = bytearray((tmp_path / "stored.npz").read_bytes())
    at = bytes(data).index(np.arange(5).tobytes())
    data[at] ^= 1
    (tmp_path / "flipped.npz").write_bytes(bytes(data))
    with pytest.raises(NpzError, match=r"flipped\.npz: truncated or corrupt .*CRC-32"):
        load_npz(tmp_path / "flipped.npz")
