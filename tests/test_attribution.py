"""heldout.attribution: LDS, linear datamodels, the heldout estimator on outputs; `heldout lds`,
`heldout datamodels` and `heldout estimate --target` (issue 21).

Reference implementations: scipy's `spearmanr` (per column), dattri 0.3.0's `lds`, scikit-learn's
`Ridge`, numpy means and Welch standard errors. The stores are planted (outputs = M w + noise),
written with `heldout.predict.store.create_store`; no TensorFlow.
"""

import warnings

import numpy as np
import pytest
import scipy.stats
import zarr

from heldout import attribution as attr
from heldout.cli import main as cli_main
from heldout.experiment import make_aux_arrays, write_aux_arrays
from heldout.predict import open_store
from heldout.predict import store as st


def _spearman_scipy(x, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConstantInputWarning
        res = [scipy.stats.spearmanr(x[:, j], y[:, j]) for j in range(x.shape[1])]
    return np.array([r.statistic for r in res]), np.array([r.pvalue for r in res])


# --------------------------------------------------------------------------------------------
# LDS


def test_average_ranks_equal_rankdata_with_ties():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, size=(30, 20)).astype(float)
    x[:, 0] = 2.0  # one constant column
    np.testing.assert_array_equal(attr.average_ranks(x), scipy.stats.rankdata(x, axis=0))


@pytest.mark.parametrize("working_bytes", [attr.DEFAULT_WORKING_BYTES, 20_000])
def test_lds_equals_scipy_spearman_per_column(working_bytes):
    rng = np.random.default_rng(1)
    runs, n_train, n_test = 25, 60, 40
    masks = rng.random((runs, n_train)) < 0.5
    scores = rng.integers(-2, 3, size=(n_train, n_test)).astype(float)  # ties in M tau
    scores[rng.random(scores.shape) < 0.1] = np.nan  # NaN counts as 0
    scores[:, 5] = np.nan  # -> constant prediction
    outputs = rng.integers(0, 4, size=(runs, n_test)).astype(np.float32)  # ties in the output
    outputs[:, 7] = 1.5  # constant output
    result = attr.lds(scores, masks, outputs, working_bytes=working_bytes)
    rho, p = _spearman_scipy(masks @ np.nan_to_num(scores), outputs)
    np.testing.assert_allclose(result.lds, rho, rtol=0, atol=1e-12, equal_nan=True)
    np.testing.assert_allclose(result.p_value, p, rtol=1e-9, atol=1e-14, equal_nan=True)
    assert np.flatnonzero(np.isnan(result.lds)).tolist() == [5, 7]
    assert result.constant_prediction[5] and not result.constant_output[5]
    assert result.constant_output[7]
    assert result.num_runs == runs
    summary = result.summary()
    defined = rho[~np.isnan(rho)]
    half = scipy.stats.t.ppf(0.975, len(defined) - 1) * defined.std(ddof=1) / np.sqrt(38)
    assert summary.num_defined == 38 and summary.num_nan == 2
    assert summary.mean == pytest.approx(defined.mean(), abs=1e-12)
    assert (summary.low, summary.high) == pytest.approx((defined.mean() - half,
                                                          defined.mean() + half), abs=1e-12)


def test_lds_equals_dattri():
    import torch
    from dattri.metric import lds as dattri_lds

    rng = np.random.default_rng(2)
    runs, n_train, n_test, size = 30, 80, 25, 40
    indices = np.stack([rng.choice(n_train, size, replace=False) for _ in range(runs)])
    masks = np.zeros((runs, n_train), bool)
    np.put_along_axis(masks, indices, True, axis=1)
    scores = rng.normal(size=(n_train, n_test))
    scores[:, :5] = np.round(scores[:, :5])  # ties
    values = rng.normal(size=(runs, n_test))
    values[:, 5:8] = np.round(values[:, 5:8])
    rho, p = dattri_lds(torch.from_numpy(scores), (torch.from_numpy(values),
                                                  torch.from_numpy(indices)))
    result = attr.lds(scores, masks, values)
    np.testing.assert_allclose(result.lds, rho.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.p_value, p.numpy(), rtol=1e-9, atol=1e-14)


def test_lds_refuses_bad_arrays():
    masks = np.ones((5, 4), bool)
    with pytest.raises(attr.AttributionError, match=r"expected \[n_train=4, n_test=3\]"):
        attr.lds(np.zeros((3, 4)), masks, np.zeros((5, 3)))
    with pytest.raises(attr.AttributionError, match="at least 3, found 2"):
        attr.lds(np.zeros((4, 3)), masks[:2], np.zeros((2, 3)))
    with pytest.raises(attr.AttributionError, match="NaN or infinite"):
        attr.lds(np.zeros((4, 3)), masks, np.full((5, 3), np.nan))
    with pytest.raises(attr.AttributionError, match="infinite values"):
        attr.lds(np.full((4, 3), np.inf), masks, np.zeros((5, 3)))
    with pytest.raises(attr.AttributionError, match="at least 2 with a defined LDS"):
        attr.summarize(np.array([0.5, np.nan]))


# --------------------------------------------------------------------------------------------
# Datamodels


def _linear_problem(runs, n_train, n_test, sigma=1.0, seed=0):
    rng = np.random.default_rng(seed)
    masks = rng.random((runs, n_train)) < 0.5
    w = rng.normal(size=(n_train, n_test))
    outputs = masks @ w + 3.0 + sigma * rng.normal(size=(runs, n_test))
    return masks, w, outputs


@pytest.mark.parametrize("runs, n_train", [(60, 150), (200, 40)])
@pytest.mark.parametrize("penalty", [0.05, 3.0, 300.0])
def test_ridge_equals_sklearn_ridge(runs, n_train, penalty):
    from sklearn.linear_model import Ridge

    masks, _, outputs = _linear_problem(runs, n_train, 12)
    dm = attr.fit_datamodels(masks, outputs, penalty=penalty, working_bytes=2_000)
    ref = Ridge(alpha=penalty).fit(masks.astype(float), outputs)
    assert dm.weights.dtype == np.float32 and dm.weights.shape == (12, n_train)
    np.testing.assert_allclose(dm.weights, ref.coef_, rtol=0, atol=1e-4)
    np.testing.assert_allclose(dm.bias, ref.intercept_, rtol=0, atol=1e-4)
    assert dm.num_val_runs == 0 and np.isnan(dm.val_r2).all()


def test_ridge_penalty_chosen_on_held_out_runs_as_sklearn():
    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score

    masks, _, outputs = _linear_problem(120, 90, 10, sigma=4.0)
    index = [0, 3, 4, 9]
    dm = attr.fit_datamodels(masks, outputs, val_fraction=0.25, seed=3, test_index=index)
    fit, val = attr.validation_split(120, 0.25, seed=3)
    assert len(val) == 30 and dm.num_val_runs == 30 and dm.test_index.tolist() == index
    grid = dm.penalties[0]
    x, y = masks.astype(float), outputs[:, index]
    predictions = [Ridge(alpha=a).fit(x[fit], y[fit]).predict(x[val]) for a in grid]
    mse = np.stack([((p - y[val]) ** 2).mean(axis=0) for p in predictions])
    best = mse.argmin(axis=0)
    np.testing.assert_array_equal(dm.penalty, grid[best])
    chosen = np.stack([predictions[b][:, k] for k, b in enumerate(best)], axis=1)
    rho, _ = _spearman_scipy(chosen, y[val])
    np.testing.assert_allclose(dm.val_spearman, rho, atol=1e-9)
    np.testing.assert_allclose(dm.val_r2, r2_score(y[val], chosen, multioutput="raw_values"),
                               atol=1e-9)
    # Then refitted on every run with each test example's penalty.
    ref = Ridge(alpha=dm.penalty).fit(x, y)
    np.testing.assert_allclose(dm.weights, ref.coef_, rtol=0, atol=1e-4)
    np.testing.assert_allclose(dm.bias, ref.intercept_, rtol=0, atol=1e-4)


def test_lasso_per_target_equals_sklearn_lasso():
    from sklearn.linear_model import Lasso

    masks, w, outputs = _linear_problem(80, 50, 6)
    dm = attr.fit_datamodels(masks, outputs, fit="lasso", test_index=[1, 4])
    assert dm.fit == "lasso" and dm.penalties.shape == (2, 20)
    for k, j in enumerate([1, 4]):
        assert dm.penalty[k] in dm.penalties[k]
        ref = Lasso(alpha=dm.penalty[k]).fit(masks.astype(float), outputs[:, j])
        np.testing.assert_allclose(dm.weights[k], ref.coef_, atol=1e-4)
        assert np.corrcoef(dm.weights[k], w[:, j])[0, 1] > 0.9
    fixed = attr.fit_datamodels(masks, outputs, fit="lasso", penalty=0.1, test_index=[2])
    ref = Lasso(alpha=0.1).fit(masks.astype(float), outputs[:, 2])
    np.testing.assert_allclose(fixed.weights[0], ref.coef_, atol=1e-4)


def test_datamodels_refuse_too_few_runs_and_bad_penalties():
    masks, _, outputs = _linear_problem(5, 10, 3)
    with pytest.raises(attr.AttributionError, match="at least 6 runs"):
        attr.fit_datamodels(masks, outputs)
    with pytest.raises(attr.AttributionError, match="leaves 1 to fit.*lower the validation"):
        attr.fit_datamodels(*_linear_problem(10, 10, 3)[::2], val_fraction=0.9)
    with pytest.raises(attr.AttributionError, match="must be > 0"):
        attr.fit_datamodels(masks, outputs, penalty=0.0)
    with pytest.raises(attr.AttributionError, match="test_index"):
        attr.fit_datamodels(masks, outputs, penalty=1.0, test_index=[3])


# --------------------------------------------------------------------------------------------
# The heldout estimator on outputs


def _means_and_welch(masks, outputs):
    """Direct per-pair numpy: mean with - mean without, Welch standard error."""
    n_test, n_train = outputs.shape[1], masks.shape[1]
    infl, se = np.full((n_test, n_train), np.nan), np.full((n_test, n_train), np.nan)
    for i in range(n_train):
        a, b = outputs[masks[:, i]], outputs[~masks[:, i]]
        if len(a) and len(b):
            infl[:, i] = a.mean(axis=0) - b.mean(axis=0)
        if len(a) > 1 and len(b) > 1:
            se[:, i] = np.sqrt(a.var(axis=0, ddof=1) / len(a) + b.var(axis=0, ddof=1) / len(b))
    return infl, se


def test_output_influence_equals_numpy_means_and_welch():
    rng = np.random.default_rng(4)
    masks = rng.random((30, 25)) < 0.5
    masks[:, 0], masks[:, 1] = True, False  # never held out, never trained on
    masks[:, 2] = False
    masks[3, 2] = True  # one run with: a mean but no variance
    outputs = rng.normal(loc=50.0, size=(30, 9)).astype(np.float32)  # far from 0: centring
    result = attr.output_influence(masks, outputs, working_bytes=4_000)
    infl, se = _means_and_welch(masks, outputs.astype(np.float64))
    np.testing.assert_allclose(result.influence, infl, rtol=1e-5, atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(result.stderr, se, rtol=1e-5, atol=1e-6, equal_nan=True)
    assert np.isnan(result.influence[:, :2]).all() and not np.isnan(result.influence[:, 2]).any()
    assert np.isnan(result.stderr[:, 2]).all()
    np.testing.assert_array_equal(result.count_in, masks.sum(0))
    # Top-k lists: value descending, ties by index, NaN never ranked.
    outputs[:, 4] = np.round(outputs[:, 4])
    full = attr.output_influence(masks, outputs).influence
    index, values, errors = attr.output_influence_top_k(masks, outputs, 5, working_bytes=4_000)
    for j in range(9):
        row = np.where(np.isnan(full[j]), -np.inf, full[j])
        expected = np.lexsort((np.arange(25), -row))[:5]
        np.testing.assert_array_equal(index[j], expected)
        np.testing.assert_array_equal(values[j], full[j, expected])
    big, big_values, _ = attr.output_influence_top_k(masks, outputs, 30)
    assert (big[:, -7:] == -1).all() and np.isnan(big_values[:, -7:]).all()  # 23 defined


def test_output_influence_on_correctness_is_the_estimate_influence():
    from heldout import estimate as est

    rng = np.random.default_rng(5)
    masks = rng.random((40, 30)) < 0.7
    correct = rng.random((40, 12)) < 0.6
    acc = est.accumulate(masks, rng.random((40, 30)) < 0.9, correct)
    np.testing.assert_allclose(attr.output_influence(masks, correct).influence,
                               est.influence(acc), atol=1e-6, equal_nan=True)


# --------------------------------------------------------------------------------------------
# A planted linear store and the CLI


def _write_store(path, masks, outputs, split="test", names=None, experiment="/planted",
                 labels=None, which=st.DEFAULT_OUTPUTS):
    """A completed store whose ``margin`` is `outputs` (``logit_confidence`` = margin / 2,
    ``correct`` = margin > 0)."""
    runs, n_train = masks.shape
    n_test = outputs.shape[1]
    names = names or tuple(f"0.5/{r}" for r in range(runs))
    layout = st.StoreLayout("planted", "", split, "", experiment, "mlp", 2, n_test, n_train,
                            tuple(which), "float32", tuple(names))
    labels = np.arange(n_test) % 2 if labels is None else labels
    st.create_store(path, layout, [int(n.split("/")[1]) for n in names],
                    [float(n.split("/")[0]) for n in names], labels, np.arange(n_test))
    group = zarr.open_group(str(path), mode="r+")
    group["mask"][...] = masks
    group["correct"][...] = outputs > 0
    group["prediction"][...] = (outputs > 0).astype(np.int32)
    for name, value in (("margin", outputs), ("logit_confidence", outputs / 2)):
        if name in which:
            group[name][...] = value.astype(np.float32)
    group["completed"][...] = True
    return str(path)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """400 runs, 100 training and 30 test examples: margin = M w + N(0, 3^2)."""
    rng = np.random.default_rng(6)
    masks = rng.random((400, 100)) < 0.5
    w = rng.normal(size=(100, 30))
    margin = masks @ w + 3.0 * rng.normal(size=(400, 30))
    root = tmp_path_factory.mktemp("planted")
    np.save(root / "w.npy", w.astype(np.float32))
    return {"store": _write_store(root / "test.zarr", masks, margin), "w": w, "sigma": 3.0,
            "root": root}


def test_planted_store_datamodels_recover_w_and_lds_of_w_is_analytic(planted, tmp_path,
                                                                     capsys):
    dm_path = tmp_path / "dm.npz"
    assert cli_main(["datamodels", planted["store"], "--out", str(dm_path)]) == 0
    out = capsys.readouterr().out
    assert "ridge datamodels of the margin of 30 test examples over 100 training" in out
    dm = attr.load_datamodels(dm_path)
    w = planted["w"]
    corr = [np.corrcoef(dm.datamodels.weights[j], w[:, j])[0, 1] for j in range(30)]
    assert min(corr) > 0.9
    assert dm.output == "margin" and len(dm.runs) == 400 and dm.datamodels.num_val_runs == 40
    assert dm.fingerprint is not None and dm.fingerprint.splits == ("test",)

    # LDS of the true weights: Spearman of (M w, M w + noise) for Gaussian pairs is
    # (6 / pi) arcsin(rho / 2), rho^2 = p (1 - p) |w_j|^2 / (p (1 - p) |w_j|^2 + sigma^2).
    lds_path = tmp_path / "lds.npz"
    assert cli_main(["lds", str(planted["root"] / "w.npy"), "--store", planted["store"],
                     "--output", "margin", "--out", str(lds_path)]) == 0
    out = capsys.readouterr().out
    signal = 0.25 * (w**2).sum(axis=0)
    rho = np.sqrt(signal / (signal + planted["sigma"] ** 2))
    analytic = 6 / np.pi * np.arcsin(rho / 2)
    result = np.load(lds_path)
    assert result["lds"].dtype == np.float32 and result["lds"].shape == (30,)
    assert abs(result["lds"].mean() - analytic.mean()) < 0.02
    assert f"LDS {result['lds'].mean():.4f} (95% interval" in out
    assert float(result["ci_low"]) < analytic.mean() < float(result["ci_high"])
    assert "NaN (excluded): 0" in out
    # The datamodels file is recognised by its keys; fitted on these runs: said in-sample.
    assert cli_main(["lds", str(dm_path), "--store", planted["store"], "--output", "margin",
                     "--out", str(lds_path)]) == 0
    assert "an in-sample LDS" in capsys.readouterr().out


def test_lds_baselines_cross_fitted(planted, tmp_path, capsys):
    out = tmp_path / "baselines.npz"
    assert cli_main(["lds", "--baselines", "--store", planted["store"], "--output", "margin",
                     "--fractions", "0.25,1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    table = np.load(out)
    assert table["methods"].tolist() == list(attr.METHODS)
    assert table["num_fit_runs"].tolist() == [[50, 50], [200, 200]]
    assert table["lds"].shape == (3, 2, 30)
    mean = table["mean"]
    # The output's own influence and datamodels predict the planted outputs; more runs help.
    assert (mean[1:, 1] > 0.5).all() and (mean[1:, 1] > mean[1:, 0]).all()
    assert mean[2, 1] >= mean[1, 1] - 0.02  # the regression has less variance
    for method in attr.METHODS:
        assert method in text
    assert "halves of 200 and 200" in text


def test_estimate_target_margin_equals_means_and_welch(tmp_path, capsys):
    """`heldout estimate --predictions --target margin` on an experiment of aux arrays."""
    rng = np.random.default_rng(7)
    runs, n_train, n_test = 12, 40, 15
    masks = rng.random((runs, n_train)) < 0.5
    margin = masks @ rng.normal(size=(n_train, n_test)) + rng.normal(size=(runs, n_test))
    exp = tmp_path / "exp"
    for r in range(runs):
        aux = make_aux_arrays(np.flatnonzero(masks[r]), rng.random(n_train) < 0.8,
                              margin[r] > 0)
        (exp / "0.5" / str(r)).mkdir(parents=True)
        write_aux_arrays(exp / "0.5" / str(r) / "aux_arrays.npz", aux)
    store = _write_store(tmp_path / "test.zarr", masks, margin, experiment=str(exp))
    out = tmp_path / "est.npz"
    assert cli_main(["estimate", str(exp), "--predictions", store, "--target", "margin",
                     "--out", str(out)]) == 0
    assert "influence on margin (with Welch standard errors)" in capsys.readouterr().out
    f = np.load(out)
    infl, se = _means_and_welch(masks, margin.astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(f["influence"], infl, rtol=1e-5, atol=1e-5, equal_nan=True)
    np.testing.assert_allclose(f["influence_stderr"], se, rtol=1e-5, atol=1e-5, equal_nan=True)
    assert str(f["target"]) == "margin"
    from heldout.estimate import load_estimate

    assert load_estimate(out).target == "margin"
    topk = tmp_path / "topk.npz"
    assert cli_main(["estimate", str(exp), "--predictions", store, "--target",
                     "logit_confidence", "--influence", "topk", "--top_k", "3", "--out",
                     str(topk)]) == 0
    f = np.load(topk)
    half = np.where(np.isnan(infl), -np.inf, infl / 2)
    np.testing.assert_array_equal(f["topk_index"], np.argsort(-half, axis=1, kind="stable")[:, :3])
    assert f["topk_influence_stderr"].shape == (n_test, 3)
    # The correctness default is unchanged and says so.
    assert cli_main(["estimate", str(exp), "--predictions", store, "--out", str(out)]) == 0
    assert "target" not in np.load(out) and load_estimate(out).target == "correct"
    # An LDS of the margin influence, recognised as an estimate file.
    assert cli_main(["lds", str(tmp_path / "est.npz"), "--store", store, "--out",
                     str(tmp_path / "lds.npz")]) == 0


def _error_line(capsys, argv):
    assert cli_main(argv) == 2
    captured = capsys.readouterr()
    # What a terminal shows: a progress bar cleared by carriage returns leaves nothing.
    lines = [line.split("\r")[-1] for line in captured.err.split("\n")]
    lines = [line for line in lines if line.strip()]
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"heldout {argv[0]}: error: "), lines[0]
    return lines[0]


def test_cli_bad_inputs_one_line_each(planted, tmp_path, capsys):
    store, root = planted["store"], planted["root"]
    out = str(tmp_path / "out.npz")
    rng = np.random.default_rng(8)

    def lds(scores, *extra, s=store):
        return _error_line(capsys, ["lds", str(scores), "--store", s, "--out", out, *extra])

    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((100, 7), np.float32))
    assert "expected [n_train=100, n_test=30]" in lds(wrong) and "found [100, 7]" in lds(wrong)
    transposed = tmp_path / "transposed.npy"
    np.save(transposed, np.zeros((30, 100), np.float32))
    assert "that is the transpose: give --layout test,train" in lds(transposed)
    assert "that is the transpose: give --layout train,test" in lds(root / "w.npy", "--layout",
                                                                      "test,train")
    several = tmp_path / "several.npz"
    np.savez(several, a=np.zeros((100, 30)), b=np.zeros(3))
    assert "holds ['a', 'b']" in lds(several)
    # A train-split store where held-out examples are needed.
    masks = rng.random((6, 100)) < 0.5
    train_store = _write_store(tmp_path / "train.zarr", masks, rng.normal(size=(6, 100)),
                               split="train")
    assert "a store of the train split" in lds(root / "w.npy", s=train_store)
    assert "a store of the train split" in _error_line(
        capsys, ["datamodels", train_store, "--out", out])
    # Too few runs for the Spearman, the interval, the validation split, cross-fitting.
    two = _write_store(tmp_path / "two.zarr", masks[:2, :], rng.normal(size=(2, 30)))
    assert ("2 completed runs at subset ratio 0.5; the LDS, a rank correlation over runs, needs "
            "at least 3") in lds(root / "w.npy", s=two)
    four = _write_store(tmp_path / "four.zarr", masks[:4, :], rng.normal(size=(4, 30)))
    assert "choosing the penalty on held-out runs needs at least 6" in _error_line(
        capsys, ["datamodels", four, "--out", out])
    assert "cross-fitting" in _error_line(
        capsys, ["lds", "--baselines", "--store", four, "--out", out])
    zeros = tmp_path / "zeros.npy"
    np.save(zeros, np.zeros((100, 30), np.float32))
    assert "at least 2 with a defined LDS, found 0 of 30" in lds(zeros)
    # A store without the requested output.
    bare = _write_store(tmp_path / "bare.zarr", masks, rng.normal(size=(6, 30)),
                        which=("correct", "margin"))
    assert "has no 'logit_confidence' array" in lds(root / "w.npy", s=bare)
    assert "no completed runs at subset ratio 0.7" in lds(root / "w.npy", "--ratio", "0.7")
    # Fingerprints: datamodels of a store with other labels.
    other = _write_store(tmp_path / "other.zarr", masks, rng.normal(size=(6, 30)),
                         labels=np.zeros(30, np.int64))
    assert cli_main(["datamodels", other, "--out", str(tmp_path / "dm.npz"), "--penalty",
                     "1"]) == 0
    capsys.readouterr()
    assert "labels differ" in lds(tmp_path / "dm.npz")
    assert "knows its own layout" in lds(tmp_path / "dm.npz", "--layout", "train,test")
    # Flags that do not go together.
    assert "not both" in _error_line(capsys, ["lds", str(zeros), "--baselines", "--store", store,
                                              "--out", out])
    assert "not neither" in _error_line(capsys, ["lds", "--store", store, "--out", out])
    assert "choose them with --test_index" in _error_line(
        capsys, ["datamodels", store, "--out", out, "--fit", "lasso"])
    assert "--test_index: bad test positions 'a-b'" in _error_line(
        capsys, ["datamodels", store, "--out", out, "--test_index", "a-b"])
    assert "test_index: expected positions in 0..29" in _error_line(
        capsys, ["datamodels", store, "--out", out, "--test_index", "25-40", "--penalty", "1"])
    assert "needs --predictions STORE.zarr" in _error_line(
        capsys, ["estimate", str(tmp_path), "--target", "margin", "--out", out])
    assert not (tmp_path / "out.npz").exists()


def test_estimate_file_without_full_influence_is_refused(tmp_path, capsys):
    from heldout import estimate as est

    rng = np.random.default_rng(9)
    masks = rng.random((8, 20)) < 0.5
    acc = est.accumulate(masks, rng.random((8, 20)) < 0.5, rng.random((8, 6)) < 0.5)
    est.save_estimate(tmp_path / "topk.npz", est.estimate(acc, "topk", 3))
    store = _write_store(tmp_path / "s.zarr", masks, rng.normal(size=(8, 6)))
    line = _error_line(capsys, ["lds", str(tmp_path / "topk.npz"), "--store", store, "--out",
                                str(tmp_path / "o.npz")])
    assert "without the full influence matrix" in line
    # The pairs' thresholds are of correctness: an influence on a margin is refused.
    est.save_estimate(tmp_path / "m.npz", est.RatioEstimate(
        *(getattr(est.estimate(acc, "none"), k) for k in (
            "memorization", "memorization_stderr", "count_in", "count_out", "num_runs",
            "subset_ratio")), influence=np.zeros((6, 20), np.float32), target="margin"))
    assert "influence on margin" in _error_line(
        capsys, ["pairs", str(tmp_path / "m.npz"), "--dataset_npz", "x.npz", "--out",
                 str(tmp_path / "p.npz")])


def test_read_outputs_reads_one_ratio(tmp_path):
    from heldout.predict import read_outputs

    rng = np.random.default_rng(10)
    masks = rng.random((5, 12)) < 0.5
    names = ("0.25/0", "0.25/4", "0.5/1", "0.5/2", "0.5/3")
    path = _write_store(tmp_path / "s.zarr", masks, rng.normal(size=(5, 4)), names=names)
    data = read_outputs(path, "margin", 0.5)
    assert data.run_names == ["0.5/1", "0.5/2", "0.5/3"] and data.ratio == 0.5
    np.testing.assert_array_equal(data.masks, masks[2:])
    np.testing.assert_array_equal(data.values, open_store(path)["margin"][2:])
    assert read_outputs(path, "correct").values.dtype == bool


def test_read_outputs_defaults_to_the_ratio_with_the_most_runs(tmp_path):
    """Runs of several subset ratios are never pooled: without a ratio, the one with the most
    completed runs (on a tie the one nearest 0.5), said in the note (review of issue 21)."""
    from heldout.predict import read_outputs
    from heldout.predict.consumers import default_ratio

    rng = np.random.default_rng(11)
    names = ("0.25/0", "0.25/1", "0.75/0", "0.75/1", "0.75/2")
    path = _write_store(tmp_path / "s.zarr", rng.random((5, 12)) < 0.5,
                        rng.normal(size=(5, 4)), names=names)
    data = read_outputs(path, "margin")
    assert data.run_names == ["0.75/0", "0.75/1", "0.75/2"] and data.ratio == 0.75
    assert data.ratio_note == ("subset ratio 0.75 (the store's ratio with the most completed "
                               "runs, of 0.25, 0.75; `ratio` to choose)")
    assert read_outputs(path, "margin", 0.25).ratio_note == "subset ratio 0.25"
    assert default_ratio(np.array([0.25, 0.25, 0.6, 0.6, 0.9, 0.9]))[0] == 0.6
    assert default_ratio(np.array([0.4, 0.6]))[0] == 0.4


def test_lds_of_mixed_ratios_is_not_inflated_by_subset_size(tmp_path, capsys):
    """The reviewer's case: outputs that depend only on the subset's size, scores with a
    non-zero mean. Pooled over two ratios the LDS was 0.49 [0.42, 0.56]; over one ratio, where
    the subset sizes differ little, 0.07."""
    rng = np.random.default_rng(0)
    runs, n_train, n_test = 40, 200, 60
    ratios = np.repeat([0.25, 0.75], runs // 2)
    masks = rng.random((runs, n_train)) < ratios[:, None]
    outputs = masks.sum(axis=1, keepdims=True) / n_train + 0.05 * rng.normal(size=(runs, n_test))
    names = tuple(f"{r:g}/{k}" for k, r in enumerate(ratios))
    path = _write_store(tmp_path / "s.zarr", masks, outputs, names=names)
    np.save(tmp_path / "scores.npy", rng.normal(0.1, 1.0, size=(n_train, n_test)))
    out = tmp_path / "lds.npz"
    assert cli_main(["lds", str(tmp_path / "scores.npy"), "--store", path, "--output", "margin",
                     "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "20 runs of" in printed and "subset ratio 0.25 (the store's ratio" in printed
    assert abs(float(np.load(out)["mean"])) < 0.15


def test_lds_scores_the_output_the_scores_were_fitted_on(planted, tmp_path, capsys):
    """A datamodels file of the margin, scored without --output, is scored against the margin
    (it was scored against logit_confidence, the default for plain arrays); an explicit other
    output is noted; an estimate file, which lists no runs, gets the in-sample caveat."""
    dm_path, out = tmp_path / "dm.npz", str(tmp_path / "lds.npz")
    assert cli_main(["datamodels", planted["store"], "--penalty", "1", "--out",
                     str(dm_path)]) == 0
    capsys.readouterr()
    assert cli_main(["lds", str(dm_path), "--store", planted["store"], "--out", out]) == 0
    printed = capsys.readouterr().out
    assert "ridge datamodels of margin against the margin of 400 runs" in printed
    assert str(np.load(out)["output"]) == "margin"
    assert cli_main(["lds", str(dm_path), "--store", planted["store"], "--output",
                     "logit_confidence", "--out", out]) == 0
    assert ("note: ridge datamodels of margin fitted on margin, scored against "
            "logit_confidence (--output)") in capsys.readouterr().out
    assert cli_main(["lds", str(planted["root"] / "w.npy"), "--store", planted["store"],
                     "--out", out]) == 0
    assert "against the logit_confidence of" in capsys.readouterr().out


@pytest.mark.slow
def test_readme_section_runs_as_written(tmp_path):
    """The README's attribution commands, copy-pasted into bash after the quick start (here 48
    runs, not 400, in a directory of the test's): every command runs; the random scores' LDS is
    near 0, the in-sample ones are high and said to be in-sample, the cross-fitted table is
    printed; then its Python snippet runs."""
    import os
    import pathlib
    import re
    import subprocess
    import sys

    repo = pathlib.Path(__file__).resolve().parents[1]
    text = (repo / "README.md").read_text()
    section = text.split("## Scoring attribution against the runs", 1)[1].split("\n## ", 1)[0]
    digits = str(tmp_path / "heldout-digits")
    bash = re.findall(r"```bash\n(.*?)```", section, re.S)[0].replace("/tmp/heldout-digits",
                                                                       digits)
    python = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "heldout").write_text(f"#!/bin/sh\nexec {sys.executable} -m heldout \"$@\"\n")
    (bin_dir / "heldout").chmod(0o755)
    (bin_dir / "python").symlink_to(sys.executable)
    env = dict(os.environ, PYTHONPATH=str(repo), PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
               TF_CPP_MIN_LOG_LEVEL="2")
    train = subprocess.run(
        [sys.executable, str(repo / "mnist-example/mnist_infl_mem.py"), "--num_runs=48",
         "--models_per_step=16", f"--output_dir={digits}"], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=600)
    assert train.returncode == 0, train.stderr[-3000:]
    done = subprocess.run(["bash", "-euc", bash], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = [float(x) for x in re.findall(r": LDS (-?\d\.\d+) \(95% interval", done.stdout)]
    assert len(printed) == 3, done.stdout
    random_lds, influence_lds, datamodels_lds = printed
    assert abs(random_lds) < 0.1 and influence_lds > 0.3 and datamodels_lds > 0.3
    assert done.stdout.count("in-sample") == 2
    assert "48 runs of digits-test.zarr (subset ratio 0.7)" in done.stdout
    for method in attr.METHODS:
        assert method in done.stdout
    snippet = subprocess.run([sys.executable, "-c", python], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)
    assert snippet.returncode == 0, snippet.stderr[-3000:]
    assert "subset ratio 0.7 LDSSummary(mean=" in snippet.stdout
