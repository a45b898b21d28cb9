"""heldout.privacy and `heldout lira`: LiRA scores against the definitions written out as
loops, a planted Gaussian store, the metrics against a brute-force ROC, the command's file,
table and errors (issue 20).

The brute force below follows the definitions of issue 20 (Carlini et al. 2022;
tensorflow/privacy advanced_mia.compute_score_lira) one target run and one example at a time,
with scipy.stats for the Gaussians; it shares no code with heldout.privacy.
"""

import warnings

import numpy as np
import pytest
import scipy.stats

from heldout import cli
from heldout.privacy import (
    FPR_LEVELS,
    VARIANTS,
    LiraError,
    attack_metrics,
    choose_targets,
    exposure,
    lira_scores,
    load_lira,
    roc_curve,
    thin_roc,
)

EPS = 1e-30


# --------------------------------------------------------------------------------------------
# The definitions, written as loops.


def brute_force_lira(statistic, mask, targets, location):
    """variant -> float64 [T, N], one target and one example at a time."""
    stat = np.asarray(statistic, np.float64)
    stat = stat[:, :, None] if stat.ndim == 2 else stat
    r, n, v = stat.shape
    average = np.median if location == "median" else np.mean
    out = {name: np.zeros((len(targets), n)) for name in VARIANTS}
    for k, t in enumerate(targets):
        shadows = [s for s in range(r) if s != t]
        loc = {side: np.full((n, v), np.nan) for side in ("in", "out")}
        scale = {side: np.full((n, v), np.nan) for side in ("in", "out")}
        deviations = {"in": [], "out": []}
        for i in range(n):
            for side in ("in", "out"):
                values = stat[[s for s in shadows if mask[s, i] == (side == "in")], i]
                if len(values):
                    loc[side][i] = average(values, axis=0)
                    scale[side][i] = np.std(values, axis=0)  # ddof 0
                    deviations[side].append(values - loc[side][i])
        for side in ("in", "out"):  # no shadow on a side: the mean over examples
            for a in (loc[side], scale[side]):
                a[:] = np.where(np.isnan(a), np.nanmean(a, axis=0), a)
        fixed = {side: np.std(np.concatenate(deviations[side])) for side in ("in", "out")}
        phi = stat[t]
        norm = scipy.stats.norm
        out["online"][k] = (norm.logpdf(phi, loc["in"], scale["in"] + EPS)
                            - norm.logpdf(phi, loc["out"], scale["out"] + EPS)).mean(1)
        out["online_fixed"][k] = (norm.logpdf(phi, loc["in"], fixed["in"] + EPS)
                                  - norm.logpdf(phi, loc["out"], fixed["out"] + EPS)).mean(1)
        out["offline"][k] = norm.logcdf(phi, loc["out"], scale["out"] + EPS).mean(1)
        out["offline_fixed"][k] = norm.logcdf(phi, loc["out"], fixed["out"] + EPS).mean(1)
        out["global"][k] = phi.mean(1)
    return out


def random_inputs(seed, r, n, v):
    """Random statistic [R, N, V] and mask [R, N] with every replacement case in it."""
    rng = np.random.default_rng(seed)
    stat = rng.normal(size=(r, n, v)).astype(np.float32)
    mask = rng.random((r, n)) < 0.5
    mask[:, 0] = True                       # every run holds it: no OUT shadow anywhere
    mask[:, 1] = False                      # no run holds it: no IN shadow anywhere
    mask[:, 2] = False
    mask[:2, 2] = True                      # held by 2 runs: a target holding it has 1 IN shadow
    mask[:, 3] = True
    mask[2, 3] = False                      # left out by 1 run: its OUT side empty for it
    stat[:, 4] = 0.5                        # constant shadows: scale exactly 0
    stat[:, 5] = np.round(stat[:, 5], 1)    # ties in the median
    return stat, mask


@pytest.mark.parametrize("location", ["median", "mean"])
@pytest.mark.parametrize("r, n, v, chunk", [(5, 30, 1, 1 << 20), (6, 25, 2, 40), (8, 40, 3, 7)])
def test_every_variant_equals_the_definitions(location, r, n, v, chunk):
    stat, mask = random_inputs(r * n + v, r, n, v)
    targets = np.arange(r) if v != 2 else np.array([0, 2, 5])
    expected = brute_force_lira(stat[:, :, 0] if v == 1 else stat, mask, targets, location)
    got = lira_scores(stat[:, :, 0] if v == 1 else stat, mask, targets, location=location,
                      chunk_elements=chunk)
    np.testing.assert_array_equal(got.targets, targets)
    np.testing.assert_array_equal(got.member, mask[targets])
    for name in VARIANTS:
        np.testing.assert_allclose(got.scores[name], expected[name], rtol=1e-6, atol=1e-6,
                                   err_msg=name)


def test_constant_shadows_have_exact_location_and_zero_scale():
    # The mean of seven float64 copies of 0.1 computed directly is off by one unit in the last
    # place, and their standard deviation is 1.4e-17, not 0: with a scale of 0 (+1e-30) either
    # is a z of 1e13. The leave-one-out statistics keep what is left exactly constant.
    r, n = 8, 4
    stat = np.random.default_rng(0).normal(size=(r, n))
    stat[:, 0] = 0.1  # no run holds example 0: each target has 7 OUT shadows, all 0.1
    mask = np.zeros((r, n), bool)
    mask[:4, 1:] = True
    for location in ("median", "mean"):
        got = lira_scores(stat, mask, location=location)
        np.testing.assert_array_equal(got.scores["offline"][:, 0], np.log(0.5))
    assert np.mean(np.full(7, 0.1)) != 0.1 and np.std(np.full(7, 0.1)) > 0  # computed directly


def test_planted_gaussian_store_gives_the_theoretical_auc():
    # Members shifted by delta, noise sigma, a location per example: the likelihood ratio is
    # monotone in phi, so the AUC is P(X_in > X_out) = Phi(delta / (sigma sqrt 2)).
    delta, sigma = 1.0, 1.0
    stat, mask = planted(r=200, n=2000, delta=delta, sigma=sigma, seed=1)
    got = lira_scores(stat, mask, dtype=np.float32)
    expected = scipy.stats.norm.cdf(delta / (sigma * np.sqrt(2)))
    online = attack_metrics(got.scores["online"], got.member)
    assert abs(online.auc - expected) < 0.01, (online.auc, expected)
    fixed = attack_metrics(got.scores["online_fixed"], got.member)
    assert abs(fixed.auc - expected) < 0.01, (fixed.auc, expected)
    # The location per example hides membership from a global threshold.
    assert attack_metrics(got.scores["global"], got.member).auc < online.auc - 0.1


def planted(r, n, delta, sigma, seed, v=1):
    """statistic float32 [R, N(, V)] = location_i + delta * member + sigma * noise."""
    rng = np.random.default_rng(seed)
    mask = rng.random((r, n)) < 0.5
    base = rng.normal(0, 3, size=(1, n) + ((v,) if v > 1 else ()))
    shift = delta * (mask[:, :, None] if v > 1 else mask)
    noise = sigma * rng.normal(size=(r, n) + ((v,) if v > 1 else ()))
    return (base + shift + noise).astype(np.float32), mask


def test_offline_one_sided_ranks_an_unusually_low_statistic_as_non_member():
    stat, mask = planted(r=40, n=500, delta=1.0, sigma=1.0, seed=2)
    target, example = 3, 7
    stat[target, example] -= 40.0  # 40 sigma below everything
    got = lira_scores(stat, mask, [target])
    offline = got.scores["offline"][0]
    assert np.isfinite(offline[example])  # log Phi(z) near z = -40 is about -800, not -inf
    assert offline[example] == offline.min() and offline[example] < -300
    # The references' two-sided density -log N(phi; mu_out, s_out) would call it the most
    # likely member of all; the one-sided score calls it the least likely.
    loc = np.median(stat[np.flatnonzero(~mask[:, example] & (np.arange(40) != target)),
                         example])
    assert stat[target, example] < loc - 30


# --------------------------------------------------------------------------------------------
# Metrics.


def brute_force_roc(score, member):
    """(thresholds, fpr, tpr) at every distinct score, from +inf down."""
    s, y = score.ravel(), member.ravel()
    thresholds = np.r_[np.inf, np.unique(s)[::-1]]
    tpr = np.array([np.mean(s[y] >= th) for th in thresholds])
    fpr = np.array([np.mean(s[~y] >= th) for th in thresholds])
    return thresholds, fpr, tpr


def test_metrics_equal_a_brute_force_roc():
    rng = np.random.default_rng(3)
    member = rng.random((7, 300)) < 0.4
    score = np.round(rng.normal(size=member.shape) + member, 1).astype(np.float32)  # ties
    thresholds, fpr, tpr = brute_force_roc(score, member)
    roc = roc_curve(score, member)
    np.testing.assert_array_equal(roc.threshold, thresholds)
    np.testing.assert_allclose(roc.fpr, fpr, rtol=0, atol=1e-12)
    np.testing.assert_allclose(roc.tpr, tpr, rtol=0, atol=1e-12)
    m = attack_metrics(score, member)
    pos, neg = score[member], score[~member]
    diff = pos[:, None] - neg[None, :]
    assert m.auc == pytest.approx(np.mean(diff > 0) + 0.5 * np.mean(diff == 0), abs=1e-12)
    assert m.balanced_accuracy == pytest.approx(np.max(1 - (fpr + 1 - tpr) / 2), abs=1e-12)
    assert (m.num_members, m.num_nonmembers) == (member.sum(), (~member).sum())
    for x, value in zip(FPR_LEVELS, m.tpr_at_fpr, strict=True):
        if x < 1 / (~member).sum():
            assert np.isnan(value)
        else:
            assert value == pytest.approx(tpr[fpr < x].max(), abs=1e-12)
    assert not np.isnan(m.tpr_at_fpr[0]) and np.isnan(m.tpr_at_fpr[-1])


def test_metrics_against_scikit_learn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(4)
    member = rng.random(20000) < 0.5
    score = (rng.normal(size=member.shape) + 0.8 * member).astype(np.float32)
    assert attack_metrics(score, member).auc == pytest.approx(
        sklearn_metrics.roc_auc_score(member, score), abs=1e-12)


def test_thinned_roc_keeps_the_low_fpr_curve():
    rng = np.random.default_rng(5)
    member = rng.random(400_000) < 0.5
    score = np.round(rng.normal(size=member.shape) + member, 4).astype(np.float32)  # ties
    roc = roc_curve(score, member)
    kept = thin_roc(roc)
    assert kept[0] == 0 and kept[-1] == len(roc.fpr) - 1 and np.all(np.diff(kept) > 0)
    assert len(kept) < len(roc.fpr) / 5
    # The TPR at every FPR below 1% reads the same off the kept points (the last point with a
    # smaller FPR), and every full-ROC point there lies on the kept polyline.
    fpr, tpr = roc.fpr[kept], roc.tpr[kept]
    for x in np.unique(roc.fpr[roc.fpr < 0.01])[1:]:
        assert tpr[fpr < x][-1] == roc.tpr[roc.fpr < x][-1]
    tp, fp = roc.true_positives, roc.false_positives
    low = np.flatnonzero(roc.fpr < 0.01)
    seg = np.searchsorted(kept, low, side="right") - 1
    a, b = kept[seg], kept[np.minimum(seg + 1, len(kept) - 1)]
    cross = (tp[b] - tp[a]) * (fp[low] - fp[a]) - (tp[low] - tp[a]) * (fp[b] - fp[a])
    assert np.all(cross == 0)
    # Above 1%: at most two points per 0.001 of FPR.
    high = roc.fpr[kept][roc.fpr[kept] >= 0.01]
    assert np.bincount(np.floor(high / 1e-3).astype(int)).max() <= 2


def test_exposure_equals_its_definition():
    rng = np.random.default_rng(6)
    member = rng.random((6, 50)) < 0.5
    member[:, 0] = True
    score = rng.normal(size=member.shape).astype(np.float32)
    e = exposure(score, member)
    for i in range(50):
        held, out = score[member[:, i], i], score[~member[:, i], i]
        mean_in = held.mean() if len(held) else np.nan
        mean_out = out.mean() if len(out) else np.nan
        np.testing.assert_allclose([e.mean_in[i], e.mean_out[i], e.exposure[i]],
                                   [mean_in, mean_out, mean_in - mean_out], rtol=1e-6)
    assert np.isnan(e.mean_out[0]) and np.isnan(e.exposure[0])


def test_choose_targets_is_a_seeded_draw_without_replacement():
    a = choose_targets(256, 10, seed=1)
    assert a.dtype == np.int64 and len(set(a)) == 10 and np.all(np.diff(a) > 0)
    np.testing.assert_array_equal(a, choose_targets(256, 10, seed=1))
    assert not np.array_equal(a, choose_targets(256, 10, seed=2))
    with pytest.raises(LiraError, match="between 1 and the 256 runs"):
        choose_targets(256, 257)


def test_bad_arrays_are_refused():
    stat, mask = random_inputs(0, 5, 10, 1)
    with pytest.raises(LiraError, match="at least 3"):
        lira_scores(stat[:2], mask[:2])
    with pytest.raises(LiraError, match="mask: expected bool"):
        lira_scores(stat, mask.astype(int))
    bad = stat.copy()
    bad[3, 2] = np.nan
    with pytest.raises(LiraError, match=r"non-finite values in 1 runs \(rows \[3\]\)"):
        lira_scores(bad, mask)
    with pytest.raises(LiraError, match="every example"):
        lira_scores(stat, np.ones_like(mask))
    with pytest.raises(LiraError, match="targets: expected distinct rows"):
        lira_scores(stat, mask, [1, 1])
    lonely = np.zeros_like(mask)
    lonely[0] = True  # only run 0 holds anything: target 0 has no IN shadow at all
    with pytest.raises(LiraError, match=r"target rows \[0\]: no other run holds any example"):
        lira_scores(stat, lonely)


# --------------------------------------------------------------------------------------------
# `heldout lira` on synthetic stores written by the store's own writer.


def write_store(path, statistic, mask, split="train", views=None, completed=None,
                ratios=None, run_ids=None, outputs=("correct", "margin", "logit_confidence")):
    """A predictions store holding `statistic` as logit_confidence (its first view) and, with
    `views` (names), as logit_confidence_views [R, N, V] with the group attribute ``views``."""
    import zarr

    from heldout.predict.store import StoreLayout, create_store, write_run

    stat = np.asarray(statistic, np.float32)
    stat = stat[:, :, None] if stat.ndim == 2 else stat
    r, n = stat.shape[:2]
    ratios = np.full(r, 0.5) if ratios is None else np.asarray(ratios, np.float64)
    run_ids = np.arange(r) if run_ids is None else np.asarray(run_ids)
    layout = StoreLayout(
        dataset="synthetic", dataset_version="", split=split, fingerprint="", experiment="/exp",
        architecture="mlp", num_classes=2, num_examples=n, num_train=mask.shape[1],
        outputs=tuple(outputs), logits_dtype="float16",
        runs=tuple(f"{a:g}/{b}" for a, b in zip(ratios, run_ids, strict=True)))
    create_store(path, layout, run_ids, ratios, np.zeros(n, np.int64), np.arange(n))
    for k in range(r):
        if completed is None or completed[k]:
            rows = {"correct": stat[k, :, 0] > 0, "margin": stat[k, :, 0],
                    "logit_confidence": stat[k, :, 0]}
            write_run(path, k, {o: rows[o] for o in outputs}, mask[k], 1, 10)
    if views is not None:
        group = zarr.open_group(str(path), mode="r+")
        array = group.create_array("logit_confidence_views", shape=stat.shape,
                                   chunks=(1,) + stat.shape[1:], dtype="float32", fill_value=0,
                                   dimension_names=("run", "example", "view"))
        array[...] = stat
        group.attrs["views"] = list(views)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            zarr.consolidate_metadata(str(path))
    return path


@pytest.fixture(scope="module")
def planted_store(tmp_path_factory):
    stat, mask = planted(r=12, n=400, delta=2.0, sigma=1.0, seed=7, v=2)
    stat[:, :, 1] = stat[:, :, 0] + np.random.default_rng(8).normal(0, 0.5, stat.shape[:2])
    path = tmp_path_factory.mktemp("lira") / "views.zarr"
    return write_store(path, stat, mask, views=("identity", "flip")), stat, mask


def test_cli_writes_the_file_and_prints_one_table(planted_store, tmp_path, capsys):
    path, stat, mask = planted_store
    out = tmp_path / "lira.npz"
    assert cli.main(["lira", str(path), "--out", str(out), "--targets", "5", "--seed", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["variant", "AUC", "bal.", "acc.", "TPR@1e-2", "TPR@1e-3",
                                "TPR@1e-4", "TPR@1e-5", "members", "non-members"]
    assert [line.split()[0] for line in lines[1:6]] == list(VARIANTS)
    assert lines[1].split()[5:7] == ["n/a", "n/a"]  # 1e-4, 1e-5 below 1 / 1,000 non-members
    assert "5 target runs x 400 examples" in lines[6] and "views identity,flip" in lines[6]
    assert "subset ratio 0.5;" in lines[6] and "the other 11" in lines[6]
    result = load_lira(out)
    targets = choose_targets(12, 5, seed=3)
    np.testing.assert_array_equal(result.target_run_id, targets)
    assert result.target_run == tuple(f"0.5/{t}" for t in targets)
    expected = lira_scores(stat, mask, targets, dtype=np.float32)
    np.testing.assert_array_equal(result.member, mask[targets])
    members = int(mask[targets].sum())
    assert f"{members:,}" in lines[1] and f"{5 * 400 - members:,}" in lines[1]
    for name in VARIANTS:
        score = result.scores[name]
        assert score.dtype == np.float32 and score.shape == (5, 400)
        np.testing.assert_array_equal(score, expected.scores[name])
        m = attack_metrics(score, result.member)  # from the scores as stored
        assert result.metrics[name].auc == m.auc
        np.testing.assert_array_equal(result.metrics[name].tpr_at_fpr, m.tpr_at_fpr)
        np.testing.assert_array_equal(result.metrics[name].roc_fpr, m.roc_fpr)
        assert f"{m.auc:.4f}" in lines[1 + VARIANTS.index(name)]
    e = exposure(result.scores["online"], result.member)
    np.testing.assert_allclose(result.exposure, e.exposure, rtol=1e-6)
    assert result.exposure.dtype == np.float32 and result.exposure.shape == (400,)
    assert result.views == ("identity", "flip") and result.location == "median"
    keys = set(np.load(out).files)
    assert {"score_online", "auc_offline", "balanced_accuracy_global", "tpr_at_fpr_online_fixed",
            "roc_fpr_offline_fixed", "roc_tpr_online", "member", "target_run_id", "exposure",
            "mean_score_in", "mean_score_out"} <= keys


def test_load_lira_refuses_another_file(planted_store, tmp_path, capsys):
    from heldout.npzio import NpzError, load_npz, save_npz_atomic

    path, _, _ = planted_store
    out = tmp_path / "lira.npz"
    assert cli.main(["lira", str(path), "--out", str(out), "--targets", "3"]) == 0
    capsys.readouterr()
    arrays = load_npz(out)
    arrays["score_offline"] = arrays["score_offline"][:, :10]
    save_npz_atomic(out, arrays)
    with pytest.raises(NpzError, match=r"key 'score_offline': expected float array "
                       r"\[T=3, N=400\], found float32 \[3, 10\]"):
        load_lira(out)
    arrays["format"] = np.array("something else")
    save_npz_atomic(out, arrays)
    with pytest.raises(NpzError, match="format 'something else'"):
        load_lira(out)


def test_store_columns_in_another_order_give_the_same_attack(tmp_path):
    """A store's column c is example index[c] of the split while its mask is in dataset
    order: membership follows the index. The file records the train split's fingerprint."""
    from predict_helpers import write_outputs_store

    from heldout.data.fingerprint import fingerprint_from_labels
    from heldout.privacy import load_lira_inputs, run_lira, save_lira

    stat, mask = planted(r=8, n=60, delta=2.0, sigma=1.0, seed=3)
    names = [f"0.5/{r}" for r in range(8)]
    labels = np.arange(60) % 3
    order = np.random.default_rng(4).permutation(60)
    results = [run_lira(load_lira_inputs(write_outputs_store(
        tmp_path / f"{k}.zarr", names, mask, labels, stat > 0, index=index,
        logit_confidence=stat))) for k, index in enumerate((None, order))]
    dataset_order, permuted = results
    np.testing.assert_array_equal(permuted.member, mask[:, order])
    for name, scores in dataset_order.scores.items():
        np.testing.assert_array_equal(permuted.scores[name], scores[:, order])
        assert permuted.metrics[name].auc == dataset_order.metrics[name].auc > 0.6
    np.testing.assert_array_equal(permuted.exposure, dataset_order.exposure[order])
    expected = fingerprint_from_labels("synthetic", {"train": labels})
    assert permuted.fingerprint == dataset_order.fingerprint == expected
    save_lira(tmp_path / "lira.npz", permuted)
    assert load_lira(tmp_path / "lira.npz").fingerprint == expected


def test_cli_views_and_targets(planted_store, tmp_path, capsys):
    path, stat, mask = planted_store
    out = tmp_path / "flip.npz"
    assert cli.main(["lira", str(path), "--out", str(out), "--views", "flip",
                     "--target_ids", "2,4-5", "--location", "mean"]) == 0
    result = load_lira(out)
    np.testing.assert_array_equal(result.target_run_id, [2, 4, 5])
    expected = lira_scores(stat[:, :, 1], mask, [2, 4, 5], location="mean", dtype=np.float32)
    np.testing.assert_array_equal(result.scores["online"], expected.scores["online"])
    assert result.views == ("flip",) and result.location == "mean"
    # The views raise the attack here as in the paper: the flip is an independent look.
    one = load_lira(out).metrics["online"].auc
    assert cli.main(["lira", str(path), "--out", str(out), "--target_ids", "2,4-5"]) == 0
    assert load_lira(out).metrics["online"].auc > one
    capsys.readouterr()


def test_views_of_completed_runs_only(tmp_path, capsys):
    # A run not completed holds zeros in every per-run array: the views must lose its row as
    # logit_confidence and mask do, or every later run's views would be another run's.
    stat, mask = planted(r=6, n=150, delta=2.0, sigma=1.0, seed=12, v=2)
    done = np.array([True, False, True, True, True, True])
    path = write_store(tmp_path / "partial.zarr", stat, mask, views=("identity", "flip"),
                       completed=done)
    out = tmp_path / "partial.npz"
    assert cli.main(["lira", str(path), "--out", str(out)]) == 0
    result = load_lira(out)
    assert result.runs == tuple(f"0.5/{k}" for k in (0, 2, 3, 4, 5))
    expected = lira_scores(stat[done], mask[done], dtype=np.float32)
    np.testing.assert_array_equal(result.scores["online"], expected.scores["online"])
    capsys.readouterr()


def test_cli_identity_alone_without_views(tmp_path, capsys):
    stat, mask = planted(r=6, n=200, delta=2.0, sigma=1.0, seed=9)
    path = write_store(tmp_path / "plain.zarr", stat, mask)
    out = tmp_path / "plain.npz"
    assert cli.main(["lira", str(path), "--out", str(out), "--views", "identity"]) == 0
    result = load_lira(out)
    np.testing.assert_array_equal(result.scores["offline"],
                                  lira_scores(stat, mask, dtype=np.float32).scores["offline"])
    assert result.views == ("identity",) and len(result.target_run) == 6
    assert "subset ratio 0.5;" in capsys.readouterr().out


def test_cli_default_ratio_is_the_one_with_most_runs(tmp_path, capsys):
    stat, mask = planted(r=9, n=100, delta=2.0, sigma=1.0, seed=10)
    ratios = [0.25] * 3 + [0.7] * 6
    path = write_store(tmp_path / "two.zarr", stat, mask, ratios=ratios)
    out = tmp_path / "two.npz"
    assert cli.main(["lira", str(path), "--out", str(out)]) == 0
    assert "subset ratio 0.7 (the store's ratio with the most completed runs" in (
        capsys.readouterr().out)
    assert load_lira(out).runs == tuple(f"0.7/{k}" for k in range(3, 9))
    assert cli.main(["lira", str(path), "--out", str(out), "--ratios", "0.25,0.7"]) == 0
    assert len(load_lira(out).runs) == 9
    capsys.readouterr()


def _error_line(capsys, argv):
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("heldout lira: error: "), captured.err
    return lines[0]


@pytest.fixture(scope="module")
def bad_stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    stat, mask = planted(r=5, n=60, delta=2.0, sigma=1.0, seed=11)
    return {
        "test": write_store(root / "test.zarr", stat, mask[:, :40].repeat(2, axis=1)[:, :70],
                            split="test"),
        "two": write_store(root / "two.zarr", stat, mask,
                           completed=[True, False, True, False, False]),
        "plain": write_store(root / "plain.zarr", stat, mask),
        "every": write_store(root / "every.zarr", stat, np.ones_like(mask)),
        "none": write_store(root / "none.zarr", stat, np.zeros_like(mask)),
        "no_confidence": write_store(root / "nc.zarr", stat, mask,
                                     outputs=("correct", "margin")),
        "views": write_store(root / "views.zarr", stat[:, :, None].repeat(2, axis=2), mask,
                             views=("identity", "flip")),
    }


@pytest.mark.parametrize("store, flags, message", [
    ("test", [], "a store of the 'test' split; membership is known only on the runs' training "
     "split: write one with `heldout predict /exp ... --split train --out train.zarr`"),
    ("two", [], "2 completed runs (0.5/0, 0.5/2) at subset ratio 0.5; LiRA needs at least 3"),
    ("plain", ["--views", "identity,flip"], "views identity,flip asked for, but the store has "
     "no logit_confidence_views"),
    ("views", ["--views", "identity,shift2"], "unknown or repeated shift2; the store has "
     "identity,flip"),
    ("every", [], "the 5 target runs' masks hold every example: no non-member pairs, "
     "nothing to attack"),
    ("none", [], "hold no example: no member pairs, nothing to attack"),
    ("plain", ["--target_ids", "3,17"], "target run ids [17] are not among its completed runs "
     "at subset ratio 0.5 (5 run ids, 0..4)"),
    ("plain", ["--target_ids", "x"], "--target_ids: bad run ids 'x'"),
    ("plain", ["--targets", "6"], "--targets 6: choose between 1 and the 5 runs"),
    ("plain", ["--ratios", "0.7"], "no completed runs at subset ratio 0.7; it has 0.5"),
    ("no_confidence", [], "has no logit_confidence (made with outputs correct,margin)"),
    (None, [], "not a zarr store"),
])
def test_bad_inputs_each_give_one_line(bad_stores, tmp_path, capsys, store, flags, message):
    path = bad_stores[store] if store else tmp_path / "missing.zarr"
    out = tmp_path / "lira.npz"
    line = _error_line(capsys, ["lira", str(path), "--out", str(out)] + flags)
    assert message in line, line
    assert not out.exists()
