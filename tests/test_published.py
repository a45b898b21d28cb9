"""heldout.published: the authors' score files and ours, read and validated alike."""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pytest

from heldout import estimate as est
from heldout import published as pub
from heldout.npzio import NpzError, load_npz, save_npz_atomic

PUBLISHED = pathlib.Path(__file__).resolve().parent / "data" / "published"


@pytest.fixture(scope="module")
def published_dir() -> pathlib.Path:
    assert PUBLISHED.is_dir(), f"{PUBLISHED} is missing: see tests/data/README.md"
    return PUBLISHED


@pytest.mark.parametrize(
    "name, num_classes, first_labels",
    [
        ("cifar10-cscores-orig-order.npz", 10, [6, 9, 9]),
        ("cifar100-cscores-orig-order.npz", 100, [19, 29, 0]),
    ],
)
def test_published_cscores_load_and_validate(published_dir, name, num_classes, first_labels):
    path = published_dir / name
    assert sorted(load_npz(path)) == ["labels", "scores"]
    cs = pub.read_cscores(path, num_examples=50_000, num_classes=num_classes)
    assert cs.scores.dtype == np.float64 and cs.scores.shape == (50_000,)
    assert cs.labels.dtype == np.int64 and cs.labels[:3].tolist() == first_labels
    assert set(np.unique(cs.labels)) == set(range(num_classes))
    assert 0 <= cs.scores.min() and cs.scores.max() <= 1 and not np.isnan(cs.scores).any()
    assert cs.source == str(path) and cs.extra == {}


def test_published_mnist_npy_loads(published_dir):
    cs = pub.read_cscores(published_dir / "mnist-cscores.npy", num_examples=60_000)
    assert cs.labels is None and cs.scores.shape == (60_000,)
    match = (r"mnist-cscores\.npy: key 'scores': expected float array \[n=50000\], "
             r"found float64 \[60000\]$")
    with pytest.raises(NpzError, match=match):
        pub.read_cscores(published_dir / "mnist-cscores.npy", num_examples=50_000)


@pytest.mark.parametrize(
    "name, count, num_train, num_test",
    [
        ("cifar100_high_infl_pairs_infl0.15_mem0.25.npz", 1015, 50_000, 10_000),
        ("imagenet_high_infl_pairs_infl0.15_mem0.25.npz", 1641, 1_281_167, 50_000),
    ],
)
def test_published_pairs_load_validate_and_round_trip(
    published_dir, tmp_path, name, count, num_train, num_test
):
    path = published_dir / name
    pairs = pub.read_pairs(path, num_train, num_test, infl_threshold=0.15, mem_threshold=0.25)
    assert len(pairs) == count
    assert pairs.tr_idx.dtype == np.int64 and pairs.infl.dtype == np.float64
    raw = load_npz(path)
    for key in pub.PAIR_KEYS:
        np.testing.assert_array_equal(getattr(pairs, key), raw[key])
    # Our writer reproduces the file: same keys, dtypes and values.
    pub.write_pairs(tmp_path / "copy.npz", pairs)
    copy = load_npz(tmp_path / "copy.npz")
    assert sorted(copy) == sorted(raw)
    for key in raw:
        assert copy[key].dtype == raw[key].dtype
        np.testing.assert_array_equal(copy[key], raw[key])
    # Thresholds above the file's are refused.
    with pytest.raises(NpzError, match="'infl' must be >= 0.2"):
        pub.read_pairs(path, infl_threshold=0.2)
    with pytest.raises(NpzError, match="'tr_idx' must hold positions in 0..9"):
        pub.read_pairs(path, num_train=10)


def _our_cscores():
    rng = np.random.default_rng(0)
    accs = []
    for ratio in (0.25, 0.5):
        masks = rng.random((3, 40)) < ratio
        masks[:, 0] = True  # never held out: NaN score
        accs.append(
            est.accumulate(
                masks, rng.random((3, 40)) < 0.7, rng.random((3, 8)) < 0.5, ratio, keep_runs=False
            )
        )
    return est.cscores(accs)


def test_our_cscores_pass_the_same_validation(tmp_path):
    scores = _our_cscores()
    labels = np.arange(40) % 10
    written = pub.write_cscores(tmp_path / "cs.npz", scores, labels)
    back = pub.read_cscores(tmp_path / "cs.npz", num_examples=40, num_classes=10)
    np.testing.assert_array_equal(back.scores, scores.scores)
    np.testing.assert_array_equal(back.labels, labels)
    assert np.isnan(back.scores[0])
    assert sorted(back.extra) == sorted(pub.CSCORE_EXTRA_KEYS)
    np.testing.assert_array_equal(back.extra["scores_by_ratio"], scores.by_ratio)
    np.testing.assert_array_equal(back.extra["ratios"], [0.25, 0.5])
    assert written.scores.shape == (40,)
    # Without labels, as the published MNIST scores.
    pub.write_cscores(tmp_path / "nolabels.npz", scores)
    assert pub.read_cscores(tmp_path / "nolabels.npz").labels is None
    # A published-format reader that knows only the two keys gets what it expects.
    raw = load_npz(tmp_path / "cs.npz")
    assert raw["scores"].dtype == np.float64 and raw["labels"].dtype == np.int64


def test_our_pairs_pass_the_same_validation(tmp_path):
    rng = np.random.default_rng(1)
    masks = rng.random((10, 300)) < 0.5
    acc = est.accumulate(masks, rng.random((10, 300)) < 0.6, rng.random((10, 50)) < 0.6)
    y_train, y_test = rng.integers(0, 2, 300), rng.integers(0, 2, 50)
    pairs = est.high_influence_pairs(acc, y_train, y_test)
    assert len(pairs) > 10
    pub.write_pairs(tmp_path / "pairs.npz", pairs)
    back = pub.read_pairs(tmp_path / "pairs.npz", 300, 50, infl_threshold=0.15, mem_threshold=0.25)
    assert sorted(load_npz(tmp_path / "pairs.npz")) == sorted(pub.PAIR_KEYS)
    for key in pub.PAIR_KEYS:
        np.testing.assert_array_equal(getattr(back, key), getattr(pairs, key))
    empty = est.high_influence_pairs(acc, y_train, y_test, infl_threshold=2.0)
    pub.write_pairs(tmp_path / "empty.npz", empty)
    assert len(pub.read_pairs(tmp_path / "empty.npz")) == 0


def _pairs_arrays():
    return {
        "tr_idx": np.array([3, 5, 3]),
        "tt_idx": np.array([1, 1, 2]),
        "infl": np.array([0.2, 0.3, 0.4]),
        "mem": np.array([0.5, 0.6, 0.5]),
    }


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.pop("mem"), r"exactly the keys \['tr_idx', 'tt_idx', 'infl', 'mem'\]"),
        (lambda a: a.update(extra=np.zeros(3)), "exactly the keys"),
        (
            lambda a: a.update(tr_idx=np.array([3.0, 5.0, 3.0])),
            r"key 'tr_idx': expected int array \[n_pairs\], found float64 \[3\]",
        ),
        (
            lambda a: a.update(tt_idx=np.array([1, 1])),
            r"key 'tt_idx': expected int array \[n_pairs=3\], found int64 \[2\]",
        ),
        (lambda a: a.update(tt_idx=np.array([1, -1, 2])), "'tt_idx' must hold positions"),
        (lambda a: a.update(infl=np.array([0.2, np.nan, 0.4])), "'infl' must be finite"),
        (lambda a: a.update(mem=np.array([0.5, 0.6, 1.5])), r"'mem' must be finite and in \["),
        (lambda a: a.update(tt_idx=np.array([1, 1, 1])), "pair more than once"),
        (lambda a: a.update(mem=np.array([0.5, 0.6, 0.7])), "different memorization values"),
    ],
)
def test_bad_pair_files_are_refused_naming_file_and_key(tmp_path, change, message):
    arrays = _pairs_arrays()
    change(arrays)
    save_npz_atomic(tmp_path / "bad.npz", arrays)
    with pytest.raises(NpzError, match=message) as info:
        pub.read_pairs(tmp_path / "bad.npz")
    assert str(tmp_path / "bad.npz") in str(info.value)
    # The writer refuses the same arrays and leaves nothing behind.
    pairs = est.HighInfluencePairs(*(np.asarray(arrays.get(k, [])) for k in pub.PAIR_KEYS))
    if sorted(arrays) == sorted(pub.PAIR_KEYS):
        with pytest.raises(NpzError, match=message):
            pub.write_pairs(tmp_path / "out.npz", pairs)
        assert not (tmp_path / "out.npz").exists()


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"labels": np.zeros(3, np.int64)}, "missing key 'scores'"),
        ({"scores": np.array([0.1, 1.2])}, r"'scores' must lie in \[0, 1\]"),
        ({"scores": np.array([1, 0])}, r"'scores': expected float array \[n\], found int64 \[2\]"),
        (
            {"scores": np.zeros(2), "labels": np.zeros(3, np.int64)},
            r"key 'labels': expected int array \[n=2\], found int64 \[3\]",
        ),
        ({"scores": np.zeros(2), "labels": np.array([0, -1])}, "'labels' must be class ids"),
        (
            {"scores": np.zeros(2), "scores_by_ratio": np.zeros((1, 3))},
            r"'scores_by_ratio': expected float array \[n_ratios, n=2\], found float64 \[1, 3\]",
        ),
        (
            {"scores": np.zeros(2), "ratios": np.array([0.5]), "num_runs_by_ratio": np.ones(2)},
            r"'num_runs_by_ratio': expected int array \[n_ratios=1\], found float64 \[2\]",
        ),
        ({"scores": np.zeros(2), "ratios": np.array([1.5])}, r"'ratios' must lie in \(0, 1\]"),
        (  # A missing (NaN) ratio is outside (0, 1] too.
            {"scores": np.zeros(2), "ratios": np.array([0.5, np.nan])},
            r"'ratios' must lie in \(0, 1\], found \[0.5, nan\]",
        ),
    ],
)
def test_bad_cscore_files_are_refused_naming_file_and_key(tmp_path, arrays, message):
    save_npz_atomic(tmp_path / "bad.npz", arrays)
    with pytest.raises(NpzError, match=message) as info:
        pub.read_cscores(tmp_path / "bad.npz")
    assert str(tmp_path / "bad.npz") in str(info.value)
    with pytest.raises(NpzError, match=message):
        pub.write_cscores(tmp_path / "out.npz", arrays)
    assert not (tmp_path / "out.npz").exists()


def test_pickled_or_missing_files_are_refused(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(NpzError, match="obj.npy: unreadable .npy"):
        pub.read_cscores(tmp_path / "obj.npy")
    with pytest.raises(NpzError, match="no such file"):
        pub.read_cscores(tmp_path / "missing.npy")
    with pytest.raises(NpzError, match="no such file"):
        pub.read_pairs(tmp_path / "missing.npz")
    assert sorted(os.listdir(tmp_path)) == ["obj.npy"]


def test_write_cscores_keeps_the_fingerprint_and_checks_labels(tmp_path):
    # Before the fix the fingerprint was dropped and labels were checked only by the CLI.
    import dataclasses

    from heldout.data.fingerprint import FingerprintError, fingerprint_from_labels
    from heldout.data.fingerprint import read_fingerprint_file as read_fp

    labels = np.arange(40) % 10
    fingerprint = fingerprint_from_labels("toy", {"train": labels, "test": np.arange(8) % 10})
    scores = dataclasses.replace(_our_cscores(), fingerprint=fingerprint)
    pub.write_cscores(tmp_path / "cs.npz", scores, labels)
    assert read_fp(tmp_path / "cs.npz") == fingerprint
    with pytest.raises(FingerprintError, match="labels differ .*another order"):
        pub.write_cscores(tmp_path / "bad.npz", scores, labels[::-1])
    with pytest.raises(FingerprintError, match="has 39 labels but the scores cover 40"):
        pub.write_cscores(tmp_path / "bad.npz", scores, labels[:39])
    assert not (tmp_path / "bad.npz").exists()


_GOOD_LABELS = np.array([2, 0, 1, 1])


@pytest.mark.parametrize(
    "name, arrays, message",
    [
        ("int_scores.npz", {"labels": _GOOD_LABELS, "scores": np.array([0, 1, 1, 0])},
         r"key 'scores': expected float array \[n\], found int64 \[4\]"),
        ("out_of_range.npz", {"labels": _GOOD_LABELS, "scores": np.array([0.1, 1.5, 0.2, 0.3])},
         r"'scores' must lie in \[0, 1\]"),
        ("float_labels.npz", {"labels": _GOOD_LABELS.astype(float), "scores": np.full(4, 0.5)},
         r"key 'labels': expected int array \[n=4\], found float64 \[4\]"),
        ("column.npz", {"labels": _GOOD_LABELS, "scores": np.full((4, 1), 0.5)},
         r"key 'scores': expected float array \[n\], found float64 \[4, 1\]"),
        ("bad_extra.npz",
         {"labels": _GOOD_LABELS, "scores": np.full(4, 0.5), "scores_by_ratio": np.zeros((2, 3))},
         r"key 'scores_by_ratio': expected float array \[n_ratios, n=4\], found float64 \[2, 3\]"),
        ("int_scores.npy", np.array([0, 1, 1, 0]),
         r"key 'scores': expected float array \[n\], found int64 \[4\]"),
        ("out_of_range.npy", np.array([0.1, -0.5, 0.2, 0.3]), r"'scores' must lie in \[0, 1\]"),
    ],
)
def test_bad_cscore_files_are_refused_by_both_readers(tmp_path, name, arrays, message):
    """One reader: files the TFDS-order path used to accept (it checked only lengths and labels)
    are refused there exactly as `read_cscores` refuses them."""
    path = tmp_path / name
    if name.endswith(".npy"):
        np.save(path, arrays)
    else:
        np.savez(path, **arrays)
    ids = np.array([f"train_{k}" for k in range(4)])  # TFDS order = original order here
    with pytest.raises(NpzError, match=message):
        pub.read_cscores(path)
    with pytest.raises(NpzError, match=message):
        pub.read_scores_in_tfds_order(path, _GOOD_LABELS, ids)
