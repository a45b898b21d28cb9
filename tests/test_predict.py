"""The predictions store, in this process (`--workers 0`): values, resume, refusals, faults,
consumers (estimate --predictions, to_datamodels, merge; the README's blocks: test_readme.py)."""

import multiprocessing
import os
import re

import numpy as np
import pytest
import zarr
from predict_helpers import RUNS, assert_stores_equal, reuse_runs

from heldout.cli import main as cli_main
from heldout.data import DatasetSpec, load_dataset
from heldout.data.npz import save_npz_dataset
from heldout.experiment import open_experiment, run_from_path
from heldout.predict import (
    accumulate_store,
    logit_confidence,
    margin,
    open_store,
    predict,
    to_datamodels,
)
from heldout.predict import store as st

ALL = ("correct", "margin", "logit_confidence", "logits")


@pytest.fixture(scope="module")
def cache():
    """One model and dataset for the whole module (as a Dask worker keeps them)."""
    return {}


@pytest.fixture(scope="module")
def spec(fmnist_dir):
    return DatasetSpec(dataset_npz=str(fmnist_dir / "dataset.npz"))


@pytest.fixture(scope="module")
def stores(tmp_path_factory, fmnist_experiment, spec, cache):
    """split -> a float32-logits store of the fixture runs."""
    root = tmp_path_factory.mktemp("stores")
    out = {}
    for split in ("test", "train"):
        summary = predict(fmnist_experiment, spec, split, root / f"{split}.zarr", outputs=ALL,
                          logits_dtype="float32", progress=False, cache=cache)
        assert summary.ok and summary.evaluated == 3 and summary.checked_runs == 3
        assert summary.matched == summary.total == 3 * (2000 if split == "train" else 500)
        out[split] = root / f"{split}.zarr"
    return out


@pytest.mark.slow
@pytest.mark.parametrize("split", ["test", "train"])
def test_store_values(stores, fmnist_dir, fmnist_experiment, fmnist_dataset, split):
    s = open_store(stores[split])
    expected = np.load(fmnist_dir / "expected_logits.npz")
    labels = fmnist_dataset.split_labels(split)
    assert s.run_names == RUNS
    np.testing.assert_array_equal(s["label"], labels)
    np.testing.assert_array_equal(s["index"], np.arange(len(labels)))
    np.testing.assert_array_equal(s["run_id"], [3, 0, 7])
    np.testing.assert_array_equal(s["subset_ratio"], [0.25, 0.5, 0.5])
    assert s["completed"].all()
    for i, name in enumerate(RUNS):
        aux = run_from_path(fmnist_experiment / name).load_aux()
        logits = s["logits"][i]
        assert logits.dtype == np.float32 and logits.shape == (len(labels), 10)
        np.testing.assert_allclose(logits, expected[f"{name}/logits_{split}"], atol=1e-4, rtol=0)
        np.testing.assert_array_equal(s["correct"][i], aux.correctness(split))
        np.testing.assert_array_equal(s["prediction"][i], np.argmax(logits, axis=1))
        np.testing.assert_array_equal(s["mask"][i], aux.subset_mask())
        # The definitions, written out in numpy.
        z = logits.astype(np.float64)
        rows = np.arange(len(labels))
        others = z.copy()
        others[rows, labels] = -np.inf
        np.testing.assert_allclose(s["margin"][i], z[rows, labels] - others.max(1), atol=1e-5)
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        p_y = p[rows, labels]
        lira = np.log(p_y) - np.log(p.sum(1) - p_y)
        finite = np.isfinite(lira)  # where 1 - p_y underflows the naive form is inf
        assert finite.mean() > 0.9
        np.testing.assert_allclose(s["logit_confidence"][i][finite], lira[finite], atol=1e-5)
    assert s["epoch"].tolist() == [10, 10, 10]
    assert s.attrs["split"] == split and s.attrs["num_train"] == 2000
    assert s.attrs["margin_definition"].startswith("logit of the label")


def test_definitions_on_extreme_logits():
    logits = np.array([[100.0, 0.0, 0.0], [0.0, 50.0, 50.0], [-3.0, 2.0, 1.0]], np.float32)
    labels = np.array([0, 1, 0])
    np.testing.assert_allclose(margin(logits, labels), [100.0, 0.0, -5.0])
    expected = [100.0 - np.log(2.0), 50.0 - 50.0, -3.0 - np.logaddexp(2.0, 1.0)]
    np.testing.assert_allclose(logit_confidence(logits, labels), expected, atol=1e-5)


@pytest.mark.slow
def test_float16_logits_within_rounding(tmp_path, fmnist_experiment, fmnist_dir, spec, cache):
    summary = predict(fmnist_experiment, spec, "test", tmp_path / "s.zarr", outputs=ALL,
                      progress=False, cache=cache)
    assert summary.ok
    s = open_store(tmp_path / "s.zarr")
    expected = np.load(fmnist_dir / "expected_logits.npz")
    for i, name in enumerate(RUNS):
        assert s["logits"].dtype == np.float16
        ref = expected[f"{name}/logits_test"]
        # float16 keeps 11 significant bits: half a unit in the last place is 2**-11 relative.
        bound = np.abs(ref) * 2.0**-11 + 1e-4
        assert (np.abs(s["logits"][i].astype(np.float32) - ref) <= bound).all()


@pytest.mark.slow
def test_resume_evaluates_only_runs_not_completed(tmp_path, fmnist_experiment, spec, cache,
                                                  stores):
    out = tmp_path / "s.zarr"
    first = predict(fmnist_experiment, spec, "test", out, outputs=ALL, logits_dtype="float32",
                    progress=False, cache=cache)
    assert (first.evaluated, first.resumed) == (3, 0)
    again = predict(fmnist_experiment, spec, "test", out, outputs=ALL, logits_dtype="float32",
                    progress=False, cache=cache)
    assert (again.evaluated, again.resumed) == (0, 3)
    # As after a run killed before its flag was set: its rows written, not completed.
    zarr.open_group(out, mode="r+")["completed"][1] = False
    assert open_store(out).run_names == ["0.25/3", "0.5/7"]
    resumed = predict(fmnist_experiment, spec, "test", out, outputs=ALL, logits_dtype="float32",
                      progress=False, cache=cache)
    assert (resumed.evaluated, resumed.resumed) == (1, 2) and resumed.ok
    assert_stores_equal(open_store(out), open_store(stores["test"]))


@pytest.mark.slow
def test_corrupt_checkpoint_is_reported_and_the_rest_complete(tmp_path, fmnist_experiment,
                                                               fmnist_dir, capsys):
    reuse_runs(fmnist_experiment, tmp_path / "exp", 3, copy=(1,))
    data = tmp_path / "exp/0.5/1/checkpoints/ckpt-10.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:1000])
    out = tmp_path / "s.zarr"
    argv = ["predict", str(tmp_path / "exp"), "--dataset_npz", str(fmnist_dir / "dataset.npz"),
            "--split", "test", "--out", str(out), "--workers", "0"]
    assert cli_main(argv) == 1
    printed = capsys.readouterr().out
    assert re.search(r"^0\.5/1: FAILED: .*ckpt-10.*corrupt", printed, re.M), printed
    assert "2 of 3 runs completed" in printed
    assert "checked 2 runs: 1000 out of 1000 predictions match" in printed
    assert open_store(out).run_names == ["0.5/0", "0.5/2"]
    assert st.completed(out).tolist() == [True, False, True]


def _error_line(capsys, argv) -> str:
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("heldout predict: error: ")
    return err


@pytest.mark.slow
def test_bad_inputs_one_line_errors(tmp_path, stores, fmnist_experiment, fmnist_dir, capsys):
    npz = str(fmnist_dir / "dataset.npz")
    base = ["predict", str(fmnist_experiment), "--dataset_npz", npz, "--workers", "0"]
    # A store of another split.
    store = str(stores["test"])
    err = _error_line(capsys, [*base, "--split", "train", "--out", store, "--outputs",
                               ",".join(ALL), "--logits_dtype", "float32"])
    assert "split: store has 'test', this command 'train'" in err and "--overwrite" in err
    # A store of another dataset (same images, another file) and another output set.
    other = tmp_path / "other.npz"
    save_npz_dataset(other, load_dataset(DatasetSpec(dataset_npz=npz)))
    err = _error_line(capsys, ["predict", str(fmnist_experiment), "--dataset_npz", str(other),
                               "--workers", "0", "--split", "test", "--out", store])
    assert "dataset: store has 'dataset.npz', this command 'other.npz'" in err
    assert "output set" in err
    # --out a file.
    f = tmp_path / "file.zarr"
    f.write_text("x")
    assert "is a file" in _error_line(capsys, [*base, "--split", "test", "--out", str(f)])
    # No runs matching --ratios.
    err = _error_line(capsys, [*base, "--split", "test", "--out", str(tmp_path / "n.zarr"),
                               "--ratios", "0.7"])
    assert "no runs match (ratios [0.7]" in err and "['0.25', '0.5']" in err
    assert not os.path.exists(tmp_path / "n.zarr")


@pytest.mark.slow
def test_chunks_are_one_run_each_and_concurrent_writers_keep_every_row(tmp_path):
    layout = st.StoreLayout("d", "", "test", "fp", "/e", "mlp", 4, 50, 30, st.OUTPUTS, "float32",
                            tuple(f"0.5/{k}" for k in range(12)))
    out = str(tmp_path / "s.zarr")
    st.create_store(out, layout, np.arange(12), np.full(12, 0.5), np.arange(50) % 4,
                    np.arange(50))
    group = zarr.open_group(out, mode="r")
    for name, array in group.arrays():
        if array.metadata.dimension_names[0] == "run":
            assert array.chunks == (1, *array.shape[1:]), name
            assert array.shards is None, name
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        # A child that cannot start would leave starmap waiting forever: bound it.
        pool.starmap_async(_write_row, [(out, r) for r in range(12)]).get(timeout=300)
    s = open_store(out)
    assert s["completed"].all() and len(s.rows) == 12
    for r in range(12):
        rows, mask = _row_values(r)
        for name, value in rows.items():
            np.testing.assert_array_equal(s[name][r], value, err_msg=f"{name} {r}")
        np.testing.assert_array_equal(s["mask"][r], mask)
        assert s["epoch"][r] == r and s["global_step"][r] == 10 * r


def _row_values(r):
    rng = np.random.default_rng(r)
    logits = rng.normal(size=(50, 4)).astype(np.float32)
    rows = st.run_outputs(logits, np.arange(50) % 4, st.OUTPUTS, "float32")
    return rows, rng.random(30) < 0.5


def _write_row(out, r):
    rows, mask = _row_values(r)
    st.write_run(out, r, rows, mask, r, 10 * r)


@pytest.mark.slow
def test_estimate_predictions_on_a_flipped_test_set(tmp_path, fmnist_experiment, fmnist_dir,
                                                    spec, cache, capsys):
    data = load_dataset(DatasetSpec(dataset_npz=str(fmnist_dir / "dataset.npz")))
    flipped = data.__class__(data.name, data.num_classes,
                             {"test": data.images["test"][:, :, ::-1]},
                             {"test": data.labels["test"]})
    npz = tmp_path / "flipped.npz"
    save_npz_dataset(npz, flipped)
    out = tmp_path / "flipped.zarr"
    assert cli_main(["predict", str(fmnist_experiment), "--dataset_npz", str(npz), "--split",
                     "test", "--out", str(out), "--workers", "0", "--ratios", "0.5",
                     "--no_cross_check"]) == 0
    s = open_store(out)
    assert s.run_names == ["0.5/0", "0.5/7"]
    aux = [run_from_path(fmnist_experiment / n).load_aux() for n in s.run_names]
    assert not all(np.array_equal(s["correct"][k], a.test_correctness())
                   for k, a in enumerate(aux))  # another evaluation set indeed
    est_path = tmp_path / "est.npz"
    assert cli_main(["estimate", str(fmnist_experiment), "--ratio", "0.5", "--predictions",
                     str(out), "--out", str(est_path), "--save_accumulator",
                     str(tmp_path / "shard.npz")]) == 0
    capsys.readouterr()
    result = np.load(est_path)
    M = s["mask"].astype(float)
    T = s["correct"].astype(float)
    C = np.stack([a.train_correctness() for a in aux]).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        inf = (T.T @ M) / M.sum(0) - (T.T @ (1 - M)) / (1 - M).sum(0)
        mem = (C * M).sum(0) / M.sum(0) - (C * (1 - M)).sum(0) / (1 - M).sum(0)
    np.testing.assert_allclose(result["influence"], inf, atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(result["memorization"], mem, atol=1e-6, equal_nan=True)
    assert np.isnan(result["influence"]).any() and not np.isnan(result["influence"]).all()
    # The same through the library, and the shard merged back gives the same estimate.
    acc = accumulate_store(out, "0.5", open_experiment(fmnist_experiment).runs("0.5"))
    assert acc.num_runs == 2 and acc.num_test == 500
    merged = tmp_path / "merged.npz"
    assert cli_main(["merge", str(tmp_path / "shard.npz"), "--out", str(merged)]) == 0
    np.testing.assert_array_equal(np.load(merged)["influence"], result["influence"])


@pytest.mark.slow
def test_to_datamodels_reloads_with_mmap(tmp_path, stores):
    zarr.open_group(stores["test"], mode="r+")["completed"][2] = False
    try:
        paths = to_datamodels(stores["test"], tmp_path / "dm")
    finally:
        zarr.open_group(stores["test"], mode="r+")["completed"][2] = True
    masks = np.load(paths["masks"], mmap_mode="r")
    margins = np.load(paths["margins"], mmap_mode="r")
    done = np.load(paths["_completed"], mmap_mode="r")
    assert masks.dtype == bool and masks.shape == (3, 2000)
    assert margins.dtype == np.float16 and margins.shape == (3, 500)
    assert done.tolist() == [True, True, False]
    s = open_store(stores["test"])
    np.testing.assert_array_equal(masks[:2], s["mask"][:2])
    np.testing.assert_array_equal(margins[:2], s["margin"][:2].astype(np.float16))
    assert not masks[2].any() and not margins[2].any()


def test_backend_never_usable_half_restored(tmp_path, fmnist_experiment, fmnist_dataset):
    from heldout.checkpoint import CheckpointError
    from heldout.evaluate import BackendError, make_backend

    reuse_runs(fmnist_experiment, tmp_path / "exp", 2, copy=(1,))
    data = tmp_path / "exp/0.5/1/checkpoints/ckpt-10.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:1000])
    backend = make_backend("tensorflow", "small_inception", 10, (32, 32, 3))
    images = next(fmnist_dataset.batches("test", 8)).image
    with pytest.raises(BackendError, match="no successfully restored run"):
        backend.logits(images)
    restored = backend.restore(run_from_path(tmp_path / "exp/0.5/0"))
    assert (restored.epoch, restored.global_step) == (10, 100)
    assert backend.logits(images).shape == (8, 10)
    with pytest.raises(CheckpointError, match="corrupt"):
        backend.restore(run_from_path(tmp_path / "exp/0.5/1"))
    with pytest.raises(BackendError, match="no successfully restored run"):
        backend.logits(images)


def test_torch_backend_missing_is_one_line(monkeypatch):
    import sys

    from heldout.evaluate import BackendError, make_backend

    monkeypatch.setitem(sys.modules, "heldout.pytorch.backend", None)  # import fails
    with pytest.raises(BackendError, match=r"backend 'torch' needs heldout\.pytorch\.backend"):
        make_backend("torch", "small_inception", 10, (32, 32, 3))


@pytest.mark.slow
def test_cli_backend_torch_on_an_exported_experiment(tmp_path, fmnist_exported, fmnist_dir,
                                                     stores, capsys):
    """`heldout predict EXPORTED --backend torch`: the PyTorch backend fills the same store as
    TensorFlow (correct equal to the aux arrays, logits within 1e-4 of TensorFlow's)."""
    out = tmp_path / "torch.zarr"
    capsys.readouterr()
    assert cli_main(["predict", str(fmnist_exported), "--backend", "torch", "--dataset_npz",
                     str(fmnist_dir / "dataset.npz"), "--split", "test", "--out", str(out),
                     "--workers", "0", "--outputs", ",".join(ALL), "--logits_dtype",
                     "float32"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[-3:] == [f"{out}: 3 of 3 runs completed (3 now, 0 before)",
                            "3 runs from exported models",
                            "checked 3 runs: 1500 out of 1500 predictions match"]
    torch_store, tf_store = open_store(out), open_store(stores["test"])
    assert torch_store.attrs["backend"] == "torch"
    assert torch_store.attrs["experiment"] == str(fmnist_exported)
    assert torch_store.run_names == tf_store.run_names == RUNS
    for i, name in enumerate(RUNS):
        aux = run_from_path(fmnist_exported / name).load_aux()
        np.testing.assert_array_equal(torch_store["correct"][i], aux.correctness("test"))
        np.testing.assert_array_equal(torch_store["mask"][i], aux.subset_mask())
    np.testing.assert_allclose(torch_store["logits"], tf_store["logits"], atol=1e-4, rtol=0)
    for key in ("margin", "logit_confidence"):
        np.testing.assert_allclose(torch_store[key], tf_store[key], atol=2e-4, rtol=0)
    for key in ("correct", "prediction", "epoch", "global_step", "run_id", "subset_ratio"):
        np.testing.assert_array_equal(torch_store[key], tf_store[key], err_msg=key)


@pytest.mark.slow
def test_cli_backend_torch_bf16_reports_reevaluated(tmp_path, fmnist_exported, fmnist_dir,
                                                    capsys):
    """--precision bf16: close calls evaluated again in float32 are counted, and correct still
    equals the aux arrays (the cross-check)."""
    out = tmp_path / "bf16.zarr"
    base = ["predict", str(fmnist_exported), "--dataset_npz", str(fmnist_dir / "dataset.npz"),
            "--split", "test", "--workers", "0", "--ratios", "0.25"]
    capsys.readouterr()
    assert cli_main([*base, "--backend", "torch", "--precision", "bf16", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    counted = re.fullmatch(r"bf16: (\d+) of 500 predictions re-evaluated in float32 \(top-2 "
                           r"margin below the bound\)", printed[-2])
    assert counted and 0 < int(counted[1]) < 500, printed
    assert printed[-1] == "checked 1 runs: 500 out of 500 predictions match"
    aux = run_from_path(fmnist_exported / "0.25/3").load_aux()
    np.testing.assert_array_equal(open_store(out)["correct"][0], aux.correctness("test"))
    err = _error_line(capsys, [*base, "--precision", "bf16", "--out", str(tmp_path / "x.zarr")])
    assert err == "heldout predict: error: --precision bf16 needs --backend torch"


def test_runs_without_a_model_are_skipped_in_one_line(tmp_path, fmnist_experiment, fmnist_dir,
                                                      capsys):
    # Before the fix every run of the quick start's experiment without a checkpoint (396 of
    # 400) was evaluated, printed as FAILED in string order, and left the store unfillable.
    from heldout.cli.common import skipped_summary
    from heldout.evaluate import model_requirement
    from heldout.experiment import NoRunsError, select_runs

    exp = tmp_path / "exp"
    for k in (0, 1, 2, 10):
        (exp / "0.5" / str(k)).mkdir(parents=True)
        source = fmnist_experiment / "0.5" / "0" / "aux_arrays.npz"
        (exp / "0.5" / str(k) / "aux_arrays.npz").write_bytes(source.read_bytes())
    checkpoints = fmnist_experiment / "0.5" / "0" / "checkpoints"
    os.symlink(checkpoints, exp / "0.5" / "10" / "checkpoints")
    selection = select_runs(exp, requirement=model_requirement("tensorflow"))
    assert [r.name for r in selection.runs()] == ["0.5/10"] and selection.root == str(exp)
    assert capsys.readouterr().err == ""  # returned, not printed
    assert skipped_summary(selection) == [
        "skipped 3 runs without a complete checkpoint: 0.5/0, 0.5/1, 0.5/2"]
    with pytest.raises(NoRunsError, match="no runs with an exported model"):
        select_runs(exp, requirement=model_requirement("torch"))
    (exp / "0.5" / "1" / "model.safetensors").write_bytes(b"")
    err = _error_line(capsys, ["predict", str(exp), "--dataset_npz", str(fmnist_dir /
                               "dataset.npz"), "--split", "test", "--out", str(tmp_path / "s"),
                               "--workers", "0", "--run_ids", "1"])
    assert err.endswith("no runs with recorded outputs (outputs.npz) or a complete checkpoint "
                        "among the 1 selected; they have an exported model (model.safetensors "
                        "or model.npz): use --backend torch")
    assert [r.name for r in select_runs(exp, requirement=model_requirement("torch")).runs()] == [
        "0.5/1"]
    from heldout.predict import PredictError  # selected runs are not selected again

    with pytest.raises(PredictError, match="pass neither"):
        predict(selection, DatasetSpec(dataset_npz=str(fmnist_dir / "dataset.npz")), "test",
                tmp_path / "t.zarr", run_ids="10")
