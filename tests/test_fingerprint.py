"""Dataset fingerprints: stored in npz outputs, compared when outputs are combined."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest

from heldout.data import ArrayDataset, label_hash
from heldout.data.arrays import DatasetSplitError
from heldout.data.fingerprint import (
    KEYS,
    Fingerprint,
    FingerprintError,
    check_dataset,
    check_fingerprints,
    fingerprint_dataset,
    fingerprint_from_labels,
    read_fingerprint,
    read_fingerprint_file,
    split_name,
)
from heldout.npzio import load_npz, save_npz_atomic

FMNIST = os.path.join(os.path.dirname(__file__), "data", "reference", "fmnist32",
                      "dataset.npz")


def _labels(seed=0):
    rng = np.random.default_rng(seed)
    return {"train": rng.integers(0, 10, 50), "test": rng.integers(0, 10, 20)}


def test_fingerprint_from_labels():
    labels = _labels()
    fp = fingerprint_from_labels("cifar10:3.0.2", labels)
    assert fp == Fingerprint("cifar10", "3.0.2", ("test", "train"), (20, 50),
                             (label_hash(labels["test"]), label_hash(labels["train"])))
    assert fp.split("train") == (50, label_hash(labels["train"]))
    assert fp.describe().startswith("cifar10:3.0.2 (test 20 #")
    with pytest.raises(KeyError, match="no split 'removed'"):
        fp.split("removed")
    assert split_name("cifar100:3.0.2") == ("cifar100", "3.0.2")
    assert split_name("/data/sets/dataset.npz") == ("dataset.npz", "")
    assert split_name("imagenet2012") == ("imagenet2012", "")


def test_stored_in_npz_without_pickle_and_read_back(tmp_path):
    fp = fingerprint_from_labels("cifar10:3.0.2", _labels())
    path = str(tmp_path / "memorization.npz")
    save_npz_atomic(path, {"memorization": np.zeros(50), **fp.to_arrays()})
    with np.load(path, allow_pickle=False) as f:
        assert sorted(f.files) == sorted(["memorization", *KEYS])
        assert all(f[k].dtype != object for k in f.files)
    assert read_fingerprint_file(path) == fp
    assert read_fingerprint(load_npz(path), path) == fp
    assert read_fingerprint({"memorization": np.zeros(3)}) is None
    partial = {k: v for k, v in fp.to_arrays().items() if k != KEYS[-1]}
    with pytest.raises(FingerprintError, match=r"out.npz: incomplete dataset fingerprint.*lacks"
                                               r" \['fingerprint__label_hashes'\]"):
        read_fingerprint(partial, "out.npz")
    bad = {**fp.to_arrays(), KEYS[3]: np.array([1, 2, 3])}
    with pytest.raises(FingerprintError, match=r"out\.npz: key 'fingerprint__sizes': expected "
                                               r"int array \[n_splits=2\], found int64 \[3\]$"):
        read_fingerprint(bad, "out.npz")
    bad = {**fp.to_arrays(), KEYS[3]: np.array([1.0, 2.0])}
    with pytest.raises(FingerprintError, match=r"'fingerprint__sizes': expected int array "
                                               r"\[n_splits=2\], found float64 \[2\]$"):
        read_fingerprint(bad, "out.npz")


def test_combining_outputs_checks_dataset_and_order():
    labels = _labels()
    fp = fingerprint_from_labels("cifar10:3.0.2", labels)
    same = fingerprint_from_labels("cifar10:3.0.2", {k: v.copy() for k, v in labels.items()})
    assert check_fingerprints([("a.npz", fp), ("b.npz", same)]) == fp
    # Only the splits both cover are compared.
    train_only = fingerprint_from_labels("cifar10:3.0.2", {"train": labels["train"]})
    assert check_fingerprints([("a.npz", fp), ("c.npz", train_only)]) == fp
    reordered = {**labels, "train": labels["train"][::-1]}
    with pytest.raises(FingerprintError, match=r"a.npz and d.npz were computed on different "
                                               r"datasets or orders: split 'train' labels differ"):
        check_fingerprints([("a.npz", fp), ("d.npz",
                                            fingerprint_from_labels("cifar10:3.0.2", reordered))])
    smaller = {**labels, "test": labels["test"][:10]}
    with pytest.raises(FingerprintError, match="split 'test' size 20 vs 10"):
        check_fingerprints([("a", fp), ("e", fingerprint_from_labels("cifar10:3.0.2", smaller))])
    with pytest.raises(FingerprintError, match="name 'cifar10' vs 'cifar100'"):
        check_fingerprints([("a", fp), ("f", fingerprint_from_labels("cifar100:3.0.2", labels))])
    with pytest.raises(FingerprintError, match="version '3.0.2' vs '3.0.1'"):
        check_fingerprints([("a", fp), ("g", fingerprint_from_labels("cifar10:3.0.1", labels))])
    # Outputs without a fingerprint: skipped, or refused when required.
    assert check_fingerprints([("old.npz", None), ("a.npz", fp)]) == fp
    assert check_fingerprints([("old.npz", None)]) is None
    with pytest.raises(FingerprintError, match="old.npz: no dataset fingerprint"):
        check_fingerprints([("a.npz", fp), ("old.npz", None)], require=True)


def test_fingerprint_of_a_dataset_and_check_against_it():
    arrays = load_npz(FMNIST)
    ds = ArrayDataset(FMNIST, 10, {"train": arrays["train__image"]},
                      {"train": arrays["train__label"], "test": arrays["test__label"]})
    fp = fingerprint_dataset(ds)
    assert (fp.name, fp.version, fp.splits, fp.sizes) == ("dataset.npz", "", ("test", "train"),
                                                          (500, 2000))
    assert fp.label_hashes[1] == label_hash(arrays["train__label"])
    check_dataset(fp, ds, "scores.npz")
    check_dataset(None, ds)
    shuffled = ArrayDataset(FMNIST, 10, {}, {"train": arrays["train__label"][::-1]})
    with pytest.raises(FingerprintError, match="scores.npz and dataset .*labels differ"):
        check_dataset(fp, shuffled, "scores.npz")


def test_images_digest_pins_the_pixels_their_order_shape_and_dtype(monkeypatch):
    """What recorded outputs were computed on (heldout.experiment.RecordedInputs): the labels'
    fingerprint cannot tell another image set with the same labels; the digest can."""
    from heldout.data import fingerprint as fp
    from heldout.data.fingerprint import images_digest

    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (50, 4, 4, 1), dtype=np.uint8)
    labels = {"test": rng.integers(0, 3, 50)}

    def digest(pixels, **kwargs):
        return images_digest(ArrayDataset("d", 3, {"test": pixels}, labels, **kwargs), "test")

    found = digest(images)
    assert found == f"uint8 [50, 4, 4, 1] sha256:{hashlib.sha256(images.tobytes()).hexdigest()}"
    monkeypatch.setattr(fp, "DIGEST_CHUNK_BYTES", 40)  # chunks of 2 images: the same digest
    assert digest(images) == found
    assert digest(images, scale=16.0) == found  # the preprocessing is recorded beside it
    other = images.copy()
    other[49, 3, 3, 0] ^= 1
    assert digest(other) != found
    assert digest(images[::-1].copy()) != found  # another order
    assert digest(images.reshape(50, 2, 8, 1)) != found  # the same bytes, another shape
    floats = images.astype(np.float32) / 255
    assert digest(floats).startswith("float32 [50, 4, 4, 1] sha256:")
    assert digest(floats.astype(">f4")) == digest(floats)  # the values, not the byte order
    with pytest.raises(DatasetSplitError, match="d: no split 'train'"):
        images_digest(ArrayDataset("d", 3, {"test": images}, labels), "train")


def test_images_digest_of_a_dataset_without_images_in_memory_is_none():
    from heldout.data.fingerprint import images_digest

    class Shards:  # e.g. TFRecord shards: the images are JPEGs on disk
        name = "imagenet2012"

    assert images_digest(Shards(), "test") is None
