"""TFDS order versus original CIFAR order, and published C-scores read into TFDS order."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from tfds_helpers import write_metadata

from heldout.data.order import (
    OrderError,
    original_positions,
    tfds_positions,
    to_original_order,
    to_tfds_order,
)
from heldout.data.tfds import load_tfds
from heldout.published import (
    NpzError,
    load_published_scores,
    read_scores_in_tfds_order,
)

PUBLISHED = os.path.join(os.path.dirname(__file__), "data", "published")


def test_hand_made_ids():
    ids = np.array(["train_2", "train_0", "train_3", "train_1"])
    np.testing.assert_array_equal(original_positions(ids), [2, 0, 3, 1])
    np.testing.assert_array_equal(tfds_positions(ids), [1, 3, 0, 2])
    original = np.array([10.0, 11.0, 12.0, 13.0])  # value of original example k is 10 + k
    np.testing.assert_array_equal(to_tfds_order(original, ids), [12.0, 10.0, 13.0, 11.0])
    np.testing.assert_array_equal(to_original_order(to_tfds_order(original, ids), ids),
                                  original)
    np.testing.assert_array_equal(original_positions([b"test_1", b"test_0"], "test"), [1, 0])
    rng = np.random.default_rng(0)
    perm = rng.permutation(1000)
    ids = np.array([f"train_{k}" for k in perm])
    values = rng.random((1000, 3))
    np.testing.assert_array_equal(to_tfds_order(values, ids), values[perm])
    np.testing.assert_array_equal(to_original_order(values[perm], ids), values)


@pytest.mark.parametrize(
    "ids, split, message",
    [
        (["train_0", "ebc ahg", "train_1"], "train", r"1 of 3 ids are not 'train_<position>'.*"
                                                     r"position 1: 'ebc ahg'"),
        (["train_0", "train_1"], "test", "2 of 2 ids are not 'test_<position>'"),
        (["train_0", "train_0", "train_1"], "train", "1 repeated, 1 missing"),
        (["train_0", "train_5"], "train", "1 out of range"),
    ],
)
def test_bad_ids_are_refused(ids, split, message):
    with pytest.raises(OrderError, match=message):
        original_positions(ids, split)
    with pytest.raises(OrderError):
        to_tfds_order(np.zeros(len(ids)), ids, split)


def test_values_of_wrong_length_are_refused():
    with pytest.raises(OrderError, match="3 values for 2 ids"):
        to_tfds_order(np.zeros(3), ["train_1", "train_0"])


def _hand_made_cifar(n: int, seed: int):
    """ids (a random permutation of the original positions) and labels, in TFDS order."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    original_labels = rng.integers(0, 10, n)
    return perm, np.array([f"train_{k}" for k in perm]), original_labels[perm], original_labels


def test_mock_tfds_ids_and_published_scores(tmp_path):
    n = 12
    perm, ids, tfds_labels, original_labels = _hand_made_cifar(n, 1)

    def as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
        del self, decoders, read_config, shuffle_files
        assert split == "train"
        return tf.data.Dataset.from_tensor_slices({
            "id": ids, "image": np.zeros((n, 32, 32, 3), np.uint8), "label": tfds_labels})

    data_dir = str(tmp_path / "tfds")
    write_metadata(data_dir, "cifar10:3.0.2", {"train": n, "test": 1})
    scores = np.linspace(0, 1, n)  # published order: original
    good = str(tmp_path / "cscores.npz")
    np.savez(good, labels=original_labels, scores=scores)
    bad = str(tmp_path / "bad.npz")
    wrong = original_labels.copy()
    wrong[perm[4]] = (wrong[perm[4]] + 1) % 10  # the example at TFDS position 4
    np.savez(bad, labels=wrong, scores=scores)
    with tfds.testing.mock_data(as_dataset_fn=as_dataset, data_dir=data_dir):
        loaded = load_tfds("cifar10:3.0.2", ("train",), data_dir, with_images=False)
        np.testing.assert_array_equal(original_positions(loaded.ids["train"]), perm)
        got = load_published_scores(good, "cifar10:3.0.2", data_dir)
        np.testing.assert_array_equal(got, scores[perm])
        with pytest.raises(OrderError, match=r"refused.*1 of 12 labels differ.*TFDS position 4"):
            load_published_scores(bad, "cifar10:3.0.2", data_dir)


def test_mock_data_random_ids_are_refused(tmp_path):
    """tfds.testing.mock_data's own ids are random strings, not 'train_N': a clear error."""
    data_dir = str(tmp_path / "tfds")
    write_metadata(data_dir, "cifar10:3.0.2", {"train": 4, "test": 4})
    with tfds.testing.mock_data(num_examples=4, data_dir=data_dir):
        ids = load_tfds("cifar10:3.0.2", ("train",), data_dir, with_images=False).ids["train"]
    assert len(ids) == 4
    with pytest.raises(OrderError, match="4 of 4 ids are not 'train_<position>'"):
        original_positions(ids)


def test_published_cifar_cscores_reordered_and_checked():
    path = os.path.join(PUBLISHED, "cifar100-cscores-orig-order.npz")
    published = np.load(path)
    n = len(published["labels"])
    rng = np.random.default_rng(2)
    perm = rng.permutation(n)  # a hand-made TFDS order
    ids = np.array([f"train_{k}" for k in perm])
    tfds_labels = published["labels"][perm]
    scores = read_scores_in_tfds_order(path, tfds_labels, ids)
    assert scores.dtype == np.float64 and scores.shape == (50000,)
    np.testing.assert_array_equal(scores, published["scores"][perm])
    # One label off: refused, nothing returned.
    tfds_labels[123] = (tfds_labels[123] + 1) % 100
    with pytest.raises(OrderError, match=r"1 of 50000 labels differ.*TFDS position 123"):
        read_scores_in_tfds_order(path, tfds_labels, ids)
    # CIFAR-10's scores against CIFAR-100 labels: refused.
    other = os.path.join(PUBLISHED, "cifar10-cscores-orig-order.npz")
    with pytest.raises(OrderError, match="another dataset or order"):
        read_scores_in_tfds_order(other, published["labels"][perm], ids)
    # Without ids the original order cannot be mapped.
    with pytest.raises(OrderError, match="need the TFDS ids"):
        read_scores_in_tfds_order(path, published["labels"], None)


def test_mnist_scores_in_tfds_order_checked_by_length(tmp_path):
    path = os.path.join(PUBLISHED, "mnist-cscores.npy")
    scores = read_scores_in_tfds_order(path, np.zeros(60000, np.int64))
    np.testing.assert_array_equal(scores, np.load(path))
    with pytest.raises(OrderError, match="60000 scores but the dataset has 10000"):
        read_scores_in_tfds_order(path, np.zeros(10000, np.int64))
    missing = str(tmp_path / "x.npz")
    np.savez(missing, labels=np.zeros(3, np.int64))
    with pytest.raises(NpzError, match=r"x\.npz: missing key 'scores'"):
        read_scores_in_tfds_order(missing, np.zeros(3), ["train_0", "train_1", "train_2"])
    unlabelled = str(tmp_path / "y.npz")
    np.savez(unlabelled, scores=np.zeros(3))
    with pytest.raises(NpzError, match=r"y\.npz: missing key 'labels'"):
        read_scores_in_tfds_order(unlabelled, np.zeros(3), ["train_0", "train_1", "train_2"])
