"""heldout.estimate.noise: the pair rule, significance, the counts behind an influence, the
pairs expected by chance; the standard errors of any entries of the influence matrix; the
estimate file's test correct counts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from heldout import estimate as est
from heldout.estimate import noise
from heldout.npzio import NpzError, load_npz, save_npz_atomic


def _runs(rng, runs, n_train, n_test, ratio=0.7):
    masks = rng.random((runs, n_train)) < ratio
    correct = masks | (rng.random((runs, n_train)) < 0.4)
    test_correct = rng.random((runs, n_test)) < rng.uniform(0.2, 0.98, n_test)
    return masks, correct, test_correct


def test_counts_and_standard_errors_of_any_entries_are_the_full_matrix_ones():
    """`influence_correct_counts` recovers the co-occurrence counts T^T M exactly, and
    `influence_stderr_rows` gives the standard errors of top-k entries and of pairs (inputs
    gathered per entry) equal to those of the whole matrix (`influence_stderr`)."""
    rng = np.random.default_rng(0)
    masks, correct, test_correct = _runs(rng, 37, 90, 25)
    masks[:, 0] = True  # in every run: undefined
    acc = est.accumulate(masks, correct, test_correct)
    infl, want = est.influence(acc), est.influence_stderr(acc)
    cooc = test_correct.T.astype(np.int64) @ masks.astype(np.int64)  # [n_test, n_train]
    correct_in, correct_out = est.influence_correct_counts(
        infl, acc.test_correct_total[:, None], acc.count_in, acc.count_out)
    np.testing.assert_array_equal(correct_in[:, 1:], cooc[:, 1:])
    np.testing.assert_array_equal(correct_out[:, 1:], acc.test_correct_total[:, None]
                                  - cooc[:, 1:])
    assert np.isnan(correct_in[:, 0]).all()
    # Rows (the MNIST figure's use).
    rows = np.array([0, 3, 8])
    got = est.influence_stderr_rows(infl[rows], acc.test_correct_total[rows], acc.count_in,
                                    acc.count_out)
    np.testing.assert_allclose(got, want[rows], atol=2e-7)
    assert np.isnan(got[:, 0]).all() and not np.isnan(got[:, 1:]).any()
    # Top-k entries (the report's cards): counts gathered per entry.
    index, values = est.top_k_influence(acc, 5)
    got = est.influence_stderr_rows(values, acc.test_correct_total, acc.count_in[index],
                                    acc.count_out[index])
    np.testing.assert_allclose(got, np.take_along_axis(want, index, 1), atol=2e-7)
    # Pairs (the report's table): one entry each, all 1-D.
    tt, tr = rng.integers(0, 25, 40), rng.integers(1, 90, 40)
    got = est.influence_stderr_rows(infl[tt, tr], acc.test_correct_total[tt], acc.count_in[tr],
                                    acc.count_out[tr])
    np.testing.assert_allclose(got, want[tt, tr], atol=2e-7)


def test_significance_rule():
    assert est.is_significant(0.3, 0.07) and not est.is_significant(0.29, 0.07)
    assert not est.is_significant(np.nan, 0.01) and not est.is_significant(0.9, np.nan)
    assert est.is_significant(0.2, 0.0)  # what the rule says of a zero standard error
    np.testing.assert_array_equal(est.is_significant(np.array([0.5, 0.5]), np.array([0.1, 0.2]),
                                                     threshold=0.25), [True, False])
    assert est.significance_rule() == "influence - 2 stderr >= 0.15"
    assert noise.pairs_rule(0.2, 0.3) == ("influence >= 0.2, memorization of the training "
                                        "example >= 0.3, same label")


def test_expected_noise_pairs_is_the_sum_of_normal_tails_over_candidate_pairs():
    """The grouped computation equals the formula summed pair by pair."""
    rng = np.random.default_rng(1)
    runs, n_train, n_test = 30, 70, 20
    count_in = rng.integers(0, runs + 1, n_train)
    count_in[:3] = [0, runs, 1]  # undefined, undefined, one run in
    count_out = runs - count_in
    total = rng.integers(0, runs + 1, n_test)
    total[:2] = [0, runs]  # every run wrong / right: influence exactly 0
    mem = rng.uniform(-0.2, 1.0, n_train)
    mem[5] = np.nan
    ytr, yte = rng.integers(0, 3, n_train), rng.integers(0, 3, n_test)
    for t, m in ((0.15, 0.25), (0.3, 0.0), (0.0, 0.5)):
        want = 0.0
        for i in range(n_train):
            if not (mem[i] >= m and count_in[i] > 0 and count_out[i] > 0):
                continue
            for j in range(n_test):
                if ytr[i] != yte[j]:
                    continue
                p = total[j] / runs
                sigma = math.sqrt(p * (1 - p) * (1 / count_in[i] + 1 / count_out[i]))
                want += 0.5 * math.erfc(t / sigma / math.sqrt(2)) if sigma else float(t <= 0)
        got = est.expected_noise_pairs(count_in, count_out, total, runs, mem, ytr, yte, t, m)
        assert got == pytest.approx(want, rel=1e-12), (t, m)
    # Unknown test accuracies: every p_j = 1/2, an upper bound.
    bound = est.expected_noise_pairs(count_in, count_out, None, runs, mem, ytr, yte)
    assert bound > est.expected_noise_pairs(count_in, count_out, total, runs, mem, ytr, yte)
    with pytest.raises(est.EstimateError, match=r"test_correct_total must have shape \(20,\)"):
        est.expected_noise_pairs(count_in, count_out, total[:-1], runs, mem, ytr, yte)


def test_expected_noise_pairs_predicts_the_pairs_of_runs_without_influence():
    """Runs whose test correctness ignores their subsets: the pairs that pass the rule are all
    noise, and their number averages what `expected_noise_pairs` predicts (the normal
    approximation runs a few percent low at 64 runs: measured 3.4%)."""
    rng = np.random.default_rng(2)
    observed, expected = [], []
    for _ in range(12):
        masks, correct, test_correct = _runs(rng, 64, 300, 80)
        ytr, yte = rng.integers(0, 3, 300), rng.integers(0, 3, 80)
        acc = est.accumulate(masks, correct, test_correct)
        mem = est.memorization(acc).memorization
        observed.append(len(est.high_influence_pairs(acc, ytr, yte)))
        expected.append(est.expected_noise_pairs(acc.count_in, acc.count_out,
                                                 acc.test_correct_total, acc.num_runs, mem,
                                                 ytr, yte))
    ratio = np.mean(expected) / np.mean(observed)
    assert np.mean(observed) > 400 and 0.9 < ratio < 1.02, (np.mean(observed), ratio)
    line = est.describe_pairs(observed[-1], expected[-1], 64)
    assert line.startswith(f"{observed[-1]} high-influence pairs (influence >= 0.15, "
                           "memorization of the training example >= 0.25, same label); ")
    assert f"{expected[-1]:.1f} expected by chance alone at 64 runs" in line
    assert line.endswith("most of them may be noise")
    assert "noise" not in est.describe_pairs(31, 3.2, 400)
    assert "at most 3.2 expected" in est.describe_pairs(31, 3.2, 400, upper_bound=True)


def test_estimate_file_keeps_the_test_correct_counts(tmp_path):
    rng = np.random.default_rng(3)
    masks, correct, test_correct = _runs(rng, 9, 40, 12)
    acc = est.accumulate(masks, correct, test_correct, subset_ratio=0.7)
    for kind in ("full", "none"):
        est.save_estimate(tmp_path / "e.npz", est.estimate(acc, kind))
        loaded = est.load_estimate(tmp_path / "e.npz")
        np.testing.assert_array_equal(loaded.test_correct_total, test_correct.sum(0))
    # A file written before the key existed reads as before, without it.
    arrays = load_npz(tmp_path / "e.npz")
    del arrays["test_correct_total"]
    save_npz_atomic(tmp_path / "old.npz", arrays)
    assert est.load_estimate(tmp_path / "old.npz").test_correct_total is None
    arrays["test_correct_total"] = np.full(12, 10)
    save_npz_atomic(tmp_path / "bad.npz", arrays)
    with pytest.raises(NpzError, match=r"bad\.npz: key 'test_correct_total' holds counts "
                                       r"outside 0\.\.9"):
        est.load_estimate(tmp_path / "bad.npz")
