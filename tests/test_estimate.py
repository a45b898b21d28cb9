"""heldout.estimate: definitions, tiling, top-k, pairs, merging, persistence, statistics."""

from __future__ import annotations

import os

import numpy as np
import pytest

from heldout import estimate as est
from heldout.data.fingerprint import KEYS as FINGERPRINT_KEYS
from heldout.data.fingerprint import fingerprint_from_labels, read_fingerprint
from heldout.experiment import make_aux_arrays, open_experiment, write_aux_arrays
from heldout.npzio import NpzError, load_npz, save_npz_atomic

TINY = 1  # working_bytes that forces the smallest tiles (8 test x 64 train examples)
F32 = 4 * float(np.finfo(np.float32).eps)  # float32 tolerance for values in [-1, 1]


# --------------------------------------------------------------------------------------------
# Direct definitions, one example at a time (the formulas, no shortcuts).


def direct_memorization(masks, correct):
    n = masks.shape[1]
    mem, se = np.full(n, np.nan), np.full(n, np.nan)
    for i in range(n):
        inn, out = masks[:, i], ~masks[:, i]
        if inn.any() and out.any():
            p_in, p_out = correct[inn, i].mean(), correct[out, i].mean()
            mem[i] = p_in - p_out
            se[i] = np.sqrt(p_in * (1 - p_in) / inn.sum() + p_out * (1 - p_out) / out.sum())
    return mem, se


def direct_influence(masks, test_correct):
    n_train, n_test = masks.shape[1], test_correct.shape[1]
    infl = np.full((n_test, n_train), np.nan)
    for i in range(n_train):
        inn, out = masks[:, i], ~masks[:, i]
        if inn.any() and out.any():
            infl[:, i] = test_correct[inn].mean(axis=0) - test_correct[out].mean(axis=0)
    return infl


def direct_cscore(masks_by_ratio, correct_by_ratio):
    per = []
    for masks, correct in zip(masks_by_ratio, correct_by_ratio, strict=True):
        values = np.full(masks.shape[1], np.nan)
        for i in range(masks.shape[1]):
            out = ~masks[:, i]
            if out.any():
                values[i] = correct[out, i].mean()
        per.append(values)
    per = np.array(per)
    scores = np.full(per.shape[1], np.nan)
    for i in range(per.shape[1]):
        defined = per[~np.isnan(per[:, i]), i]
        if len(defined):
            scores[i] = defined.mean()
    return scores, per


def reference_top_k(infl, k):
    """Per row: defined entries by influence descending, then index ascending; -1/NaN pad."""
    n_test = infl.shape[0]
    index = np.full((n_test, k), -1)
    values = np.full((n_test, k), np.nan, np.float32)
    for j in range(n_test):
        ok = np.flatnonzero(~np.isnan(infl[j]))
        order = ok[np.lexsort((ok, -infl[j, ok]))][:k]
        index[j, : len(order)] = order
        values[j, : len(order)] = infl[j, order]
    return index, values


def random_runs(seed, runs, n_train, n_test, p_in=0.5):
    rng = np.random.default_rng(seed)
    masks = rng.random((runs, n_train)) < p_in
    correct = rng.random((runs, n_train)) < 0.7
    test_correct = rng.random((runs, n_test)) < 0.6
    return masks, correct, test_correct


# --------------------------------------------------------------------------------------------
# Definitions.


@pytest.mark.parametrize("working_bytes", [TINY, est.DEFAULT_WORKING_BYTES])
def test_three_runs_equal_direct_definitions_with_nan(working_bytes):
    masks, correct, test_correct = random_runs(0, 3, 150, 37)
    masks[:, 0] = True  # never held out
    masks[:, 1] = False  # always held out
    masks[:, 2] = [True, False, False]
    acc = est.accumulate(masks, correct, test_correct, subset_ratio=0.5)

    mem = est.memorization(acc)
    want_mem, want_se = direct_memorization(masks, correct)
    np.testing.assert_allclose(mem.memorization, want_mem, rtol=0, atol=1e-12)
    np.testing.assert_allclose(mem.stderr, want_se, rtol=0, atol=1e-12)
    assert np.isnan(mem.memorization[[0, 1]]).all() and np.isnan(mem.stderr[[0, 1]]).all()
    assert (mem.count_in[:3] == [3, 0, 1]).all() and (mem.count_out[:3] == [0, 3, 2]).all()
    np.testing.assert_array_equal(mem.count_in + mem.count_out, 3)

    infl = est.influence(acc, working_bytes=working_bytes)
    want = direct_influence(masks, test_correct)
    assert infl.dtype == np.float32 and infl.shape == (37, 150)
    np.testing.assert_array_equal(np.isnan(infl), np.isnan(want))
    assert np.isnan(infl[:, :2]).all() and not np.isnan(infl[:, 2]).any()
    np.testing.assert_allclose(infl, want, rtol=0, atol=F32)

    cs = est.cscores([acc])
    want_scores, want_per = direct_cscore([masks], [correct])
    np.testing.assert_allclose(cs.scores, want_scores, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(np.isnan(cs.scores), np.isnan(want_scores))
    assert np.isnan(cs.scores[0]) and cs.count_out_by_ratio[0, 0] == 0
    np.testing.assert_allclose(cs.test_scores, test_correct.mean(axis=0), atol=1e-12)


def test_many_runs_tiled_equal_direct_definitions():
    masks, correct, test_correct = random_runs(1, 23, 301, 45, p_in=0.7)
    acc = est.accumulate(masks, correct, test_correct)
    want = direct_influence(masks, test_correct)
    tiny = est.influence(acc, working_bytes=TINY)
    one = est.influence(acc)
    np.testing.assert_allclose(tiny, want, rtol=0, atol=F32)
    np.testing.assert_array_equal(tiny, one)  # tiles change nothing, not even rounding
    se = est.influence_stderr(acc)
    q_in = np.array([test_correct[masks[:, i]].mean(0) for i in range(301)]).T
    q_out = np.array([test_correct[~masks[:, i]].mean(0) for i in range(301)]).T
    n_in, n_out = masks.sum(0), (~masks).sum(0)
    want_se = np.sqrt(q_in * (1 - q_in) / n_in + q_out * (1 - q_out) / n_out)
    np.testing.assert_allclose(se, want_se, rtol=1e-5, atol=1e-7)


def test_cscores_over_ratios_equal_direct_definitions():
    data = [random_runs(s, r, 90, 11, p) for s, r, p in ((2, 4, 0.25), (3, 6, 0.5), (4, 3, 0.75))]
    accs = [
        est.accumulate(m, c, t, subset_ratio=p, keep_runs=False)
        for (m, c, t), p in zip(data, (0.25, 0.5, 0.75), strict=True)
    ]
    cs = est.cscores(accs[::-1])  # any order in, sorted by ratio out
    want_scores, want_per = direct_cscore([d[0] for d in data], [d[1] for d in data])
    np.testing.assert_array_equal(cs.ratios, [0.25, 0.5, 0.75])
    np.testing.assert_array_equal(cs.num_runs_by_ratio, [4, 6, 3])
    np.testing.assert_allclose(cs.by_ratio, want_per, atol=1e-12)
    np.testing.assert_array_equal(np.isnan(cs.by_ratio), np.isnan(want_per))
    np.testing.assert_allclose(cs.scores, want_scores, atol=1e-12)
    assert np.isnan(cs.by_ratio).any()  # some examples in every run of a ratio
    # Standard error: independent ratios, binomial per ratio.
    per_se = np.sqrt(want_per * (1 - want_per) / cs.count_out_by_ratio)
    n_defined = (~np.isnan(want_per)).sum(0)
    want_se = np.sqrt(np.nansum(per_se**2, axis=0)) / n_defined
    np.testing.assert_allclose(cs.stderr, want_se, atol=1e-12)
    want_test = np.mean([d[2].mean(0) for d in data], axis=0)
    np.testing.assert_allclose(cs.test_scores, want_test, atol=1e-12)


@pytest.mark.parametrize("working_bytes", [TINY, est.DEFAULT_WORKING_BYTES])
def test_top_k_equals_sorted_full_matrix(working_bytes):
    masks, correct, test_correct = random_runs(5, 9, 500, 29)
    acc = est.accumulate(masks, correct, test_correct)
    infl = est.influence(acc)
    for k in (1, 7, 130):
        index, values = est.top_k_influence(acc, k, working_bytes=working_bytes)
        want_index, want_values = reference_top_k(infl, k)
        assert index.dtype == np.int64 and values.dtype == np.float32
        np.testing.assert_array_equal(index, want_index)
        np.testing.assert_array_equal(values, want_values)
    # With R=9 influence takes few values: ties are many, broken by the smaller index.
    assert len(np.unique(infl[0])) < 60


def test_top_k_pads_rows_with_few_defined_entries():
    masks, correct, test_correct = random_runs(6, 3, 200, 10)
    acc = est.accumulate(masks, correct, test_correct)
    n_defined = int((~np.isnan(est.influence(acc)[0])).sum())
    index, values = est.top_k_influence(acc, n_defined + 5, working_bytes=TINY)
    assert (index[:, n_defined:] == -1).all() and np.isnan(values[:, n_defined:]).all()
    assert (index[:, :n_defined] >= 0).all() and not np.isnan(values[:, :n_defined]).any()
    want_index, _ = reference_top_k(est.influence(acc), n_defined + 5)
    np.testing.assert_array_equal(index, want_index)


def test_high_influence_pairs_three_ways_agree_with_direct_selection():
    masks, correct, test_correct = random_runs(7, 12, 400, 60)
    rng = np.random.default_rng(7)
    y_train, y_test = rng.integers(0, 3, 400), rng.integers(0, 3, 60)
    acc = est.accumulate(masks, correct, test_correct)
    infl = est.influence(acc)
    mem = est.memorization(acc).memorization
    want = {
        (i, j)
        for j in range(60)
        for i in range(400)
        if infl[j, i] >= 0.15 and mem[i] >= 0.25 and y_train[i] == y_test[j]
    }
    assert len(want) > 20
    full = est.select_high_influence_pairs(infl, mem, y_train, y_test)
    tiled = est.high_influence_pairs(acc, y_train, y_test, working_bytes=TINY)
    index, values = est.top_k_influence(acc, 400)
    from_topk = est.pairs_from_top_k(index, values, mem, y_train, y_test)
    for pairs in (full, tiled, from_topk):
        assert set(zip(pairs.tr_idx.tolist(), pairs.tt_idx.tolist(), strict=True)) == want
        np.testing.assert_array_equal(pairs.infl, infl[pairs.tt_idx, pairs.tr_idx])
        np.testing.assert_array_equal(pairs.mem, mem[pairs.tr_idx])
        assert pairs.tr_idx.dtype == np.int64 and pairs.infl.dtype == np.float64
        np.testing.assert_array_equal(pairs.tr_idx, full.tr_idx)
        np.testing.assert_array_equal(pairs.tt_idx, full.tt_idx)
    assert list(full.tr_idx) == sorted(full.tr_idx)
    # Other thresholds are options.
    loose = est.select_high_influence_pairs(infl, mem, y_train, y_test, 0.05, 0.0)
    assert len(loose) > len(full)
    # Top-k lists that may have cut qualifying pairs off are refused.
    index, values = est.top_k_influence(acc, 2)
    with pytest.raises(est.EstimateError, match="larger top-k"):
        est.pairs_from_top_k(index, values, mem, y_train, y_test)


# --------------------------------------------------------------------------------------------
# Streaming, merging, persistence.


def _assert_same(a: est.RatioAccumulator, b: est.RatioAccumulator) -> None:
    da, db = a.to_dict(), b.to_dict()
    assert sorted(da) == sorted(db)
    for key in da:
        np.testing.assert_array_equal(da[key], db[key], err_msg=key)


def test_runs_one_at_a_time_equal_matrices_and_merge_equals_one_pass():
    masks, correct, test_correct = random_runs(8, 11, 130, 17)
    names = [f"0.5/{r}" for r in range(11)]
    whole = est.accumulate(masks, correct, test_correct, 0.5, run_names=names)
    streamed = est.RatioAccumulator(130, 17, subset_ratio=0.5)
    for r in range(11):
        streamed.add_run(masks[r], correct[r], test_correct[r], names[r])
    _assert_same(streamed, whole)

    first = est.accumulate(masks[:4], correct[:4], test_correct[:4], 0.5, run_names=names[:4])
    second = est.RatioAccumulator(130, 17)  # ratio unknown: taken from the other shard
    second.add_runs(masks[4:], correct[4:], test_correct[4:], names[4:])
    merged = first.merge(second)
    _assert_same(merged, whole)
    _assert_same(est.merge_accumulators([first, second]), whole)
    np.testing.assert_array_equal(est.influence(merged), est.influence(whole))
    np.testing.assert_array_equal(
        est.memorization(merged).memorization, est.memorization(whole).memorization
    )
    assert first.num_runs == 4  # merging builds a new accumulator

    with pytest.raises(est.EstimateError, match="already added"):
        first.merge(first)
    with pytest.raises(est.EstimateError, match="num_train"):
        first.merge(est.RatioAccumulator(131, 17))
    with pytest.raises(est.EstimateError, match="subset ratios"):
        first.merge(est.RatioAccumulator(130, 17, subset_ratio=0.7))
    with pytest.raises(est.EstimateError, match="keep_runs"):
        first.merge(est.RatioAccumulator(130, 17, keep_runs=False))


def test_save_load_round_trip(tmp_path):
    masks, correct, test_correct = random_runs(9, 6, 77, 13)
    acc = est.accumulate(masks, correct, test_correct, 0.25, run_names=list("abcdef"))
    acc.save(tmp_path / "acc.npz")
    back = est.load_accumulator(tmp_path / "acc.npz")
    _assert_same(back, acc)
    assert back.run_names == list("abcdef") and back.subset_ratio == 0.25
    np.testing.assert_array_equal(est.influence(back), est.influence(acc))
    # A loaded shard keeps accumulating and merging.
    back.add_run(masks[0], correct[0], test_correct[0], "g")
    assert back.num_runs == 7
    counts = est.accumulate(masks, correct, test_correct, keep_runs=False)
    counts.save(tmp_path / "counts.npz")
    loaded = est.load_accumulator(tmp_path / "counts.npz")
    _assert_same(loaded, counts)
    assert "mask_bits" not in load_npz(tmp_path / "counts.npz")
    assert not os.path.exists(tmp_path / ".acc.npz.tmp")
    assert sorted(os.listdir(tmp_path)) == ["acc.npz", "counts.npz"]


def test_load_accumulator_names_file_and_key(tmp_path):
    acc = est.accumulate(*random_runs(10, 4, 20, 5))
    arrays = acc.to_dict()
    del arrays["correct_in"]
    save_npz_atomic(tmp_path / "a.npz", arrays)
    with pytest.raises(NpzError, match=r"a\.npz: missing key 'correct_in'"):
        est.load_accumulator(tmp_path / "a.npz")
    arrays = acc.to_dict()
    arrays["mask_bits"] = arrays["mask_bits"][:2]
    save_npz_atomic(tmp_path / "b.npz", arrays)
    match = r"b\.npz: key 'mask_bits': expected uint array \[num_runs=4, 3\], found uint8 \[2, 3\]$"
    with pytest.raises(NpzError, match=match):
        est.load_accumulator(tmp_path / "b.npz")
    arrays = acc.to_dict()
    arrays["correct_in"] = arrays["correct_in"] + 10
    save_npz_atomic(tmp_path / "c.npz", arrays)
    with pytest.raises(NpzError, match="inconsistent with num_runs=4"):
        est.load_accumulator(tmp_path / "c.npz")
    save_npz_atomic(tmp_path / "d.npz", {"memorization": np.zeros(3)})
    with pytest.raises(NpzError, match="missing key 'format'"):
        est.load_accumulator(tmp_path / "d.npz")


def test_estimate_file_round_trip(tmp_path):
    acc = est.accumulate(*random_runs(11, 8, 50, 9), subset_ratio=0.5)
    for kind in est.INFLUENCE_KINDS:
        result = est.estimate(acc, kind, top_k=4)
        est.save_estimate(tmp_path / f"{kind}.npz", result)
        back = est.load_estimate(tmp_path / f"{kind}.npz")
        for key, value in result.to_dict().items():
            np.testing.assert_array_equal(back.to_dict()[key], value, err_msg=key)
        assert sorted(back.to_dict()) == sorted(result.to_dict())
    assert sorted(load_npz(tmp_path / "topk.npz")) == [
        "cooccurrence_backend",
        "count_in",
        "count_out",
        "memorization",
        "memorization_stderr",
        "num_runs",
        "subset_ratio",
        "test_correct_total",
        "topk_index",
        "topk_influence",
    ]
    arrays = load_npz(tmp_path / "full.npz")
    arrays["influence"] = arrays["influence"][:, :10]
    save_npz_atomic(tmp_path / "bad.npz", arrays)
    match = (r"bad\.npz: key 'influence': expected float array \[n_test, n_train=50\], "
             r"found float32 \[9, 10\]$")
    with pytest.raises(NpzError, match=match):
        est.load_estimate(tmp_path / "bad.npz")


def test_experiment_runs_accumulate_like_matrices(tmp_path):
    masks, correct, test_correct = random_runs(12, 5, 64, 12)
    for r in range(5):
        run_dir = tmp_path / ("0.5" if r < 3 else "0.3") / str(10 + r)
        run_dir.mkdir(parents=True)  # no checkpoints: the aux arrays alone count
        aux = make_aux_arrays(np.flatnonzero(masks[r]), correct[r], test_correct[r])
        write_aux_arrays(run_dir / "aux_arrays.npz", aux)
    accs = est.accumulate_experiment(tmp_path, keep_runs=True)
    assert [a.subset_ratio for a in accs] == [0.3, 0.5]
    _assert_same(
        accs[1],
        est.accumulate(
            masks[:3], correct[:3], test_correct[:3], 0.5, run_names=["0.5/10", "0.5/11", "0.5/12"]
        ),
    )
    single = est.accumulate_runs(open_experiment(tmp_path).runs("0.3"))
    _assert_same(single, accs[0])
    # A run over another dataset is refused, naming its file.
    other = make_aux_arrays(np.arange(3), np.ones(65, bool), np.ones(12, bool))
    (tmp_path / "0.5" / "99").mkdir()
    write_aux_arrays(tmp_path / "0.5" / "99" / "aux_arrays.npz", other)
    with pytest.raises(NpzError, match=r"0\.5/99/aux_arrays\.npz: covers 65 training"):
        est.accumulate_experiment(tmp_path)


# --------------------------------------------------------------------------------------------
# Dataset fingerprints: carried from the runs, checked when runs, shards or ratios combine.


def toy_fingerprints(n_train, n_test, seed=20):
    """The fingerprint of a toy dataset, and of the same dataset with its training labels in
    another order."""
    rng = np.random.default_rng(seed)
    y_train, y_test = rng.integers(0, 3, n_train), rng.integers(0, 3, n_test)
    fp = fingerprint_from_labels("toy", {"train": y_train, "test": y_test})
    shuffled = y_train[rng.permutation(n_train)]
    assert (shuffled != y_train).any()
    other = fingerprint_from_labels("toy", {"train": shuffled, "test": y_test})
    assert fp != other
    return fp, other


def aux_runs(masks, correct, test_correct, fingerprints):
    return [
        make_aux_arrays(np.flatnonzero(masks[r]), correct[r], test_correct[r], fingerprints[r])
        for r in range(len(masks))
    ]


def test_accumulator_carries_fingerprint_and_refuses_another_order():
    masks, correct, test_correct = random_runs(21, 5, 40, 7)
    fp, other = toy_fingerprints(40, 7)
    runs = aux_runs(masks, correct, test_correct, [None, fp, fp, other, None])
    acc = est.RatioAccumulator(40, 7, subset_ratio=0.5)
    acc.add_aux(runs[0], "0.5/0")  # a run without a fingerprint (released runs): not checked
    assert acc.fingerprint is None
    acc.add_aux(runs[1], "0.5/1")  # the first fingerprint seen is the accumulator's
    acc.add_aux(runs[2], "0.5/2")
    assert acc.fingerprint == fp and acc.fingerprint_source == "0.5/1"
    with pytest.raises(est.FingerprintError, match=r"0\.5/1 and 0\.5/3 .*another order"):
        acc.add_aux(runs[3], "0.5/3")
    assert acc.num_runs == 3 and acc.run_names == ["0.5/0", "0.5/1", "0.5/2"]  # not added
    acc.add_aux(runs[4], "0.5/4")
    assert acc.num_runs == 4 and acc.fingerprint == fp
    # A run refused for another reason leaves no fingerprint behind.
    fresh = est.RatioAccumulator(40, 7)
    fresh.add_aux(runs[0], "x")
    with pytest.raises(est.EstimateError, match="already added"):
        fresh.add_aux(runs[3], "x")
    assert fresh.fingerprint is None and fresh.num_runs == 1
    fresh.add_aux(runs[1], "y")
    assert fresh.fingerprint == fp
    assert "toy" in repr(acc)


def test_merge_checks_fingerprints_of_both_shards():
    masks, correct, test_correct = random_runs(22, 6, 40, 7)
    fp, other = toy_fingerprints(40, 7)
    runs = aux_runs(masks, correct, test_correct, [fp, fp, other, other, None, None])
    shards = [est.RatioAccumulator(40, 7) for _ in range(3)]
    for r, aux in enumerate(runs):
        shards[r // 2].add_aux(aux, f"run{r}")
    with pytest.raises(est.FingerprintError, match="cannot merge accumulators: run0 and run2"):
        shards[0].merge(shards[1])
    with pytest.raises(est.FingerprintError, match="cannot merge"):
        est.merge_accumulators([shards[2], shards[0], shards[1]])
    # Shards without a fingerprint merge with either; the merged one keeps the fingerprint.
    assert shards[2].merge(shards[0]).fingerprint == fp
    assert shards[1].merge(shards[2]).fingerprint == other
    assert shards[2].merge(est.RatioAccumulator(40, 7)).fingerprint is None


def test_fingerprint_survives_save_load_estimate_and_cscores(tmp_path):
    masks, correct, test_correct = random_runs(23, 6, 40, 7)
    fp, other = toy_fingerprints(40, 7)
    acc = est.RatioAccumulator(40, 7, subset_ratio=0.5)
    for r, aux in enumerate(aux_runs(masks, correct, test_correct, [fp] * 6)):
        acc.add_aux(aux, f"0.5/{r}")
    acc.save(tmp_path / "acc.npz")
    arrays = load_npz(tmp_path / "acc.npz")
    assert set(FINGERPRINT_KEYS) <= set(arrays)
    assert read_fingerprint(arrays) == fp
    back = est.load_accumulator(tmp_path / "acc.npz")
    _assert_same(back, acc)
    assert back.fingerprint == fp
    # The loaded shard still refuses runs of another order, naming its file.
    late = make_aux_arrays(np.flatnonzero(masks[0]), correct[0], test_correct[0], other)
    with pytest.raises(est.FingerprintError, match=r"acc\.npz and late"):
        back.add_aux(late, "late")
    # Without a fingerprint: no fingerprint keys, None back.
    plain = est.accumulate(masks, correct, test_correct, 0.5)
    plain.save(tmp_path / "plain.npz")
    assert not set(FINGERPRINT_KEYS) & set(load_npz(tmp_path / "plain.npz"))
    assert est.load_accumulator(tmp_path / "plain.npz").fingerprint is None
    # A fingerprint of another size than the arrays is refused.
    bad = acc.to_dict()
    bad.update(toy_fingerprints(41, 7)[0].to_arrays())
    save_npz_atomic(tmp_path / "bad.npz", bad)
    with pytest.raises(NpzError, match=r"bad\.npz: the dataset fingerprint .* has 41 train"):
        est.load_accumulator(tmp_path / "bad.npz")

    # Estimates carry it to their file and back.
    for kind in est.INFLUENCE_KINDS:
        result = est.estimate(acc, kind, top_k=3)
        assert result.fingerprint == fp
        est.save_estimate(tmp_path / f"{kind}.npz", result)
        assert read_fingerprint(load_npz(tmp_path / f"{kind}.npz")) == fp
        assert est.load_estimate(tmp_path / f"{kind}.npz").fingerprint == fp
    assert est.load_estimate(_saved(tmp_path, est.estimate(plain, "none"))).fingerprint is None
    bad = est.estimate(acc, "full").to_dict()
    bad.update(toy_fingerprints(40, 8)[0].to_arrays())
    save_npz_atomic(tmp_path / "bad_est.npz", bad)
    with pytest.raises(NpzError, match="has 8 test examples, the arrays cover 7"):
        est.load_estimate(tmp_path / "bad_est.npz")

    # C-scores: the ratios' accumulators must agree.
    low = est.RatioAccumulator(40, 7, subset_ratio=0.3)
    for r, aux in enumerate(aux_runs(masks, correct, test_correct, [other] * 6)):
        low.add_aux(aux, f"0.3/{r}")
    with pytest.raises(est.FingerprintError, match="subset ratio 0.3 .* subset ratio 0.5"):
        est.cscores([acc, low])
    assert est.cscores([acc, plain_at(masks, correct, test_correct, 0.3)]).fingerprint == fp
    assert est.cscores([plain]).fingerprint is None


def _saved(tmp_path, result):
    est.save_estimate(tmp_path / "saved.npz", result)
    return tmp_path / "saved.npz"


def plain_at(masks, correct, test_correct, ratio):
    return est.accumulate(masks, correct, test_correct, ratio, keep_runs=False)


def test_runs_on_disk_of_another_order_are_refused(tmp_path):
    masks, correct, test_correct = random_runs(24, 5, 40, 7)
    fp, other = toy_fingerprints(40, 7)
    for r, (ratio, fingerprint) in enumerate(
        [("0.5", fp), ("0.5", None), ("0.5", fp), ("0.3", fp), ("0.3", fp)]
    ):
        (tmp_path / ratio / str(r)).mkdir(parents=True)
        aux = make_aux_arrays(np.flatnonzero(masks[r]), correct[r], test_correct[r], fingerprint)
        write_aux_arrays(tmp_path / ratio / str(r) / "aux_arrays.npz", aux)
    accs = est.accumulate_experiment(tmp_path)
    assert [a.fingerprint for a in accs] == [fp, fp]
    assert est.accumulate_runs(open_experiment(tmp_path).runs("0.5")).fingerprint == fp
    # Another order at another ratio: accumulate_experiment refuses across ratios too.
    (tmp_path / "0.7" / "9").mkdir(parents=True)
    aux = make_aux_arrays(np.flatnonzero(masks[0]), correct[0], test_correct[0], other)
    write_aux_arrays(tmp_path / "0.7" / "9" / "aux_arrays.npz", aux)
    with pytest.raises(est.FingerprintError, match=r"0\.3/3/aux_arrays\.npz\) and 0\.7/9 \("):
        est.accumulate_experiment(tmp_path)
    assert est.accumulate_runs(open_experiment(tmp_path).runs("0.7")).fingerprint == other
    # ... and within one ratio, naming both runs' files.
    (tmp_path / "0.5" / "8").mkdir(parents=True)
    write_aux_arrays(tmp_path / "0.5" / "8" / "aux_arrays.npz", aux)
    with pytest.raises(est.FingerprintError, match=r"0\.5/0/aux_arrays\.npz\) and 0\.5/8 \("):
        est.accumulate_runs(open_experiment(tmp_path).runs("0.5"))


def test_bad_inputs_are_refused_clearly():
    masks, correct, test_correct = random_runs(13, 4, 30, 6)
    with pytest.raises(est.EstimateError, match=r"train_correct must have shape \(4, 30\)"):
        est.accumulate(masks, correct[:, :29], test_correct)
    with pytest.raises(est.EstimateError, match="values other than 0 and 1"):
        est.accumulate(masks.astype(int) * 2, correct, test_correct)
    counts = est.accumulate(masks, correct, test_correct, keep_runs=False)
    with pytest.raises(est.EstimateError, match="keep_runs=False"):
        est.influence(counts)
    acc = est.accumulate(masks, correct, test_correct)
    with pytest.raises(est.EstimateError, match="k must be >= 1"):
        est.top_k_influence(acc, 0)
    with pytest.raises(est.EstimateError, match="influence must be one of"):
        est.estimate(acc, "partial")
    with pytest.raises(est.EstimateError, match="out must be a C-contiguous float32"):
        est.influence(acc, out=np.zeros((6, 30)))
    with pytest.raises(est.EstimateError, match="at least one run"):
        est.influence(est.RatioAccumulator(30, 6))
    half = est.accumulate(masks, correct, test_correct, 0.5, keep_runs=False)
    with pytest.raises(est.EstimateError, match="given more than once"):
        est.cscores([half, half])


# --------------------------------------------------------------------------------------------
# Statistics: known true memorization, influence and C-scores are recovered within their
# standard errors at the stated coverage.

Z95 = 1.959964  # two-sided 95% normal quantile


def _coverage(estimate, truth, stderr, scale=1.0):
    return float(np.mean(np.abs(estimate - truth) <= Z95 * scale * stderr))


def test_known_memorization_and_influence_recovered_at_95_percent_coverage():
    """Synthetic runs: C[r, i] ~ Bernoulli(p_out[i] + mem[i] M[r, i]) and
    T[r, j] ~ Bernoulli(q[j] + delta[j] M[r, parent[j]]), memberships independent Bernoulli(0.5),
    so the true memorization is `mem`, the true influence `delta` on (j, parent[j]) and 0
    elsewhere. Nominal 95% intervals (estimate +- 1.96 stderr) must cover the truth for 93-97%
    of the examples (pairs); intervals half as wide must not."""
    rng = np.random.default_rng(2024)
    runs, n_train, n_test = 400, 1000, 200
    masks = rng.random((runs, n_train)) < 0.5
    p_out = rng.uniform(0.2, 0.6, n_train)
    true_mem = rng.uniform(0.0, 0.3, n_train)
    correct = rng.random((runs, n_train)) < p_out + true_mem * masks
    parent = rng.permutation(n_train)[:n_test]
    q, delta = rng.uniform(0.2, 0.6, n_test), rng.uniform(0.05, 0.3, n_test)
    test_correct = rng.random((runs, n_test)) < q + delta * masks[:, parent]
    true_infl = np.zeros((n_test, n_train))
    true_infl[np.arange(n_test), parent] = delta

    acc = est.accumulate(masks, correct, test_correct, subset_ratio=0.5)
    mem = est.memorization(acc)
    coverage = _coverage(mem.memorization, true_mem, mem.stderr)
    assert 0.93 <= coverage <= 0.97, coverage
    assert _coverage(mem.memorization, true_mem, mem.stderr, 0.5) < 0.8
    z = (mem.memorization - true_mem) / mem.stderr
    assert abs(z.mean()) < 4 / np.sqrt(n_train) and 0.9 < z.std() < 1.1

    infl, se = est.influence(acc), est.influence_stderr(acc)
    coverage = _coverage(infl, true_infl, se)
    assert 0.93 <= coverage <= 0.97, coverage
    parents = (np.arange(n_test), parent)
    coverage_parents = _coverage(infl[parents], delta, se[parents])
    assert 0.91 <= coverage_parents <= 0.99, coverage_parents
    assert _coverage(infl, true_infl, se, 0.5) < 0.8
    # Planted influences of 5 standard errors (about 0.25) top their test example's list.
    index, _ = est.top_k_influence(acc, 1)
    strong = delta > 5 * se[parents]
    assert strong.sum() > 20 and np.mean(index[strong, 0] == parent[strong]) > 0.9


def test_known_cscores_recovered_at_95_percent_coverage():
    """Correctness depends only on membership, so the true C-score of example i at every
    ratio is p_out[i]; runs at ratios 0.3 and 0.7."""
    rng = np.random.default_rng(7)
    n_train = 2000
    p_out = rng.uniform(0.2, 0.8, n_train)
    effect = rng.uniform(0.0, 0.2, n_train)
    accs = []
    for ratio, runs in ((0.3, 200), (0.7, 500)):
        masks = rng.random((runs, n_train)) < ratio
        correct = rng.random((runs, n_train)) < p_out + effect * masks
        accs.append(
            est.accumulate(masks, correct, np.zeros((runs, 0), bool), ratio, keep_runs=False)
        )
    cs = est.cscores(accs)
    assert not np.isnan(cs.scores).any()
    coverage = _coverage(cs.scores, p_out, cs.stderr)
    assert 0.93 <= coverage <= 0.97, coverage
    for s in range(2):
        per = _coverage(cs.by_ratio[s], p_out, cs.stderr_by_ratio[s])
        assert 0.93 <= per <= 0.97, (s, per)
    assert _coverage(cs.scores, p_out, cs.stderr, 0.5) < 0.8


def test_unnamed_runs_are_named_by_content_so_a_repeated_shard_is_refused(tmp_path):
    # Before the fix merge_accumulators([a, a]) doubled R and shrank the standard errors.
    a = est.accumulate(*random_runs(3, 6, 40, 7), subset_ratio=0.5)
    assert len(set(a.run_names)) == 6 and all(n.startswith("#") for n in a.run_names)
    with pytest.raises(est.EstimateError, match="already added.*hash of their content"):
        est.merge_accumulators([a, a])
    a.save(tmp_path / "a.npz")
    with pytest.raises(est.EstimateError, match="already added"):
        est.merge_accumulators([a, est.load_accumulator(tmp_path / "a.npz")])
    b = est.accumulate(*random_runs(4, 6, 40, 7), subset_ratio=0.5)
    assert est.merge_accumulators([a, b]).num_runs == 12


def test_load_accumulator_checks_counts_against_bits(tmp_path):
    acc = est.accumulate(*random_runs(10, 4, 20, 5))
    for key, change in (("count_in", lambda v: np.roll(v, 1)),
                        ("test_correct_total", lambda v: np.where(v > 0, v - 1, v + 1))):
        arrays = acc.to_dict()
        arrays[key] = change(arrays[key])
        assert not np.array_equal(arrays[key], acc.to_dict()[key])
        save_npz_atomic(tmp_path / "x.npz", arrays)
        with pytest.raises(NpzError, match=f"'{key}' disagrees with"):
            est.load_accumulator(tmp_path / "x.npz")
    arrays = acc.to_dict()
    arrays["mask_bits"] = arrays["mask_bits"] | np.uint8(0x80)  # bit 23 of 20 columns
    save_npz_atomic(tmp_path / "y.npz", arrays)
    with pytest.raises(NpzError, match="bits set past its 20 columns"):
        est.load_accumulator(tmp_path / "y.npz")


def test_cscores_refuses_a_missing_ratio():
    # Before the fix NaN ratios were sorted (NaN compares false) into an arbitrary order.
    with_ratio = est.accumulate(*random_runs(5, 6, 30, 4), subset_ratio=0.5, keep_runs=False)
    without = est.accumulate(*random_runs(6, 6, 30, 4), keep_runs=False)
    with pytest.raises(est.EstimateError, match=r"accumulator\(s\) \[1\] \(of 2\) have no subset"):
        est.cscores([with_ratio, without])
    assert est.cscores([with_ratio]).ratios.tolist() == [0.5]


# --------------------------------------------------------------------------------------------
# Product backends: exact int32 counts from int8 tiles (torch) and float32 numpy, same bits.


def _influence_outputs(acc, backend, working_bytes):
    """Everything built from co-occurrence counts, as raw bytes."""
    labels = np.arange(acc.num_train) % 3, np.arange(acc.num_test) % 3
    index, values = est.top_k_influence(acc, 7, working_bytes, backend=backend)
    pairs = est.high_influence_pairs(acc, *labels, 0.05, -1.0, working_bytes, backend=backend)
    return {
        "influence": est.influence(acc, working_bytes=working_bytes, backend=backend).tobytes(),
        "topk": index.tobytes() + values.tobytes(),
        "stderr": est.influence_stderr(acc, backend=backend).tobytes(),
        "pairs": b"".join(v.tobytes() for v in pairs.to_dict().values()),
    }


@pytest.mark.parametrize("working_bytes", [TINY, 2**16, est.DEFAULT_WORKING_BYTES])
@pytest.mark.parametrize("shape", [(3, 150, 37), (23, 301, 45), (61, 1030, 130), (9, 70, 5)])
def test_torch_and_numpy_products_give_identical_bits(shape, working_bytes):
    # Runs not a multiple of 8, fewer than 17 test examples, tiles of 8 x 64 up to one tile.
    masks, correct, test_correct = random_runs(sum(shape), *shape)
    masks[:, 0], masks[:, 1] = True, False  # undefined (NaN) columns too
    acc = est.accumulate(masks, correct, test_correct)
    numpy = _influence_outputs(acc, "numpy", working_bytes)
    torch = _influence_outputs(acc, "torch", working_bytes)
    for key in numpy:
        assert torch[key] == numpy[key], key
    want = direct_influence(masks, test_correct)
    got = np.frombuffer(torch["influence"], np.float32).reshape(want.shape)
    np.testing.assert_allclose(got, want, rtol=0, atol=F32)


def test_backends_identical_on_the_reference_fixtures(fmnist_experiment):
    for acc in est.accumulate_experiment(fmnist_experiment):  # ratios 0.25 (1 run), 0.5 (2)
        numpy = est.estimate(acc, "full", backend="numpy")
        torch = est.estimate(acc, "full", backend="torch")
        assert torch.influence.tobytes() == numpy.influence.tobytes()
        assert (numpy.cooccurrence_backend, torch.cooccurrence_backend) == (
            "numpy-float32", "torch-int8-cpu")
        for backend in ("numpy", "torch"):
            index, values = est.top_k_influence(acc, 5, backend=backend)
            assert index.tobytes() + values.tobytes() == (
                est.top_k_influence(acc, 5, backend="numpy")[0].tobytes()
                + est.top_k_influence(acc, 5, backend="numpy")[1].tobytes())
    assert np.isfinite(numpy.influence).any()  # ratio 0.5 defines some influence


def test_cooccurrence_counts_are_exact_on_every_path():
    from heldout.estimate.products import _torch_counts

    rng = np.random.default_rng(3)
    for runs, rows, cols in [(1, 1, 1), (5, 3, 7), (13, 16, 9), (8, 17, 8), (300, 40, 77)]:
        t, m = rng.random((runs, rows)) < 0.5, rng.random((runs, cols)) < 0.5
        want = t.T.astype(np.int64) @ m.astype(np.int64)
        for backend, dtype in (("numpy", np.float32), ("torch", np.int32)):
            got = est.cooccurrence(t, m, backend)
            assert got.dtype == dtype
            np.testing.assert_array_equal(got, want)
        # CUDA's path on the CPU: padded to > 16 rows and multiples of 8, then cropped.
        out = np.full((rows, cols), -1, np.int32)
        _torch_counts(t.astype(np.int8), m.astype(np.int8), out, "cpu", pad=True)
        np.testing.assert_array_equal(out, want)
    assert not est.cooccurrence(np.ones((0, 3)), np.ones((0, 4)), "torch").any()
    with pytest.raises(est.EstimateError, match=r"\[R, rows\] and \[R, cols\] tiles"):
        est.cooccurrence(np.ones((3, 2)), np.ones((4, 2)), "numpy")
    with pytest.raises(est.EstimateError, match="out must be a int32 array of shape"):
        est.cooccurrence(np.ones((3, 2)), np.ones((3, 2)), "torch", out=np.empty((2, 2)))


def test_product_backend_choice_and_errors(monkeypatch):
    import torch

    from heldout.estimate import products as co

    assert est.product_backend() == est.ProductBackend("torch", "cpu")  # torch: a test extra
    assert est.product_backend("numpy").describe() == "numpy-float32"
    assert est.product_backend("torch").describe() == "torch-int8-cpu"
    for args, match in ((("gpu",), "backend must be one of"), (("auto", "tpu"), "device must"),
                        (("numpy", "cuda"), "device 'cuda' needs the torch backend")):
        with pytest.raises(est.EstimateError, match=match):
            est.product_backend(*args)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(est.EstimateError, match=r"device 'cuda': PyTorch .* sees no CUDA device"):
        est.product_backend("auto", "cuda")
    monkeypatch.setattr(co, "_import_torch", lambda: None)  # as without PyTorch
    assert est.product_backend("auto") == est.ProductBackend("numpy")
    for args, match in ((("torch",), "backend 'torch' needs PyTorch"),
                        (("auto", "cuda"), "device 'cuda' needs PyTorch")):
        with pytest.raises(est.EstimateError, match=match):
            est.product_backend(*args)


def test_estimate_records_its_backend(tmp_path):
    acc = est.accumulate(*random_runs(13, 6, 40, 9))
    for backend in ("numpy", "torch"):
        est.save_estimate(tmp_path / f"{backend}.npz", est.estimate(acc, backend=backend))
        back = est.load_estimate(tmp_path / f"{backend}.npz")
        assert back.cooccurrence_backend == est.product_backend(backend).describe()
    assert est.estimate(acc, "none").cooccurrence_backend is None
    arrays = load_npz(tmp_path / "numpy.npz")
    del arrays["cooccurrence_backend"]  # a file written before the key existed
    save_npz_atomic(tmp_path / "old.npz", arrays)
    assert est.load_estimate(tmp_path / "old.npz").cooccurrence_backend is None


def test_rows_finished_on_threads_give_the_same_bits(monkeypatch):
    from heldout.estimate import pairwise

    acc = est.accumulate(*random_runs(17, 19, 700, 333))
    outputs = {}
    for threads in (1, 3):  # 333 rows: parts of 111 rows on three threads
        monkeypatch.setattr(pairwise, "_ROW_THREADS", threads)
        outputs[threads] = _influence_outputs(acc, "torch", est.DEFAULT_WORKING_BYTES)
    assert outputs[1] == outputs[3]
