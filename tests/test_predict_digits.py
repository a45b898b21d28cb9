"""`heldout predict` on runs of the digits dataset (cheap MLP runs, `digits` in conftest.py): the
dataset checked against the runs before the store is made, an empty store replaced, the store's
lock, `estimate --predictions` keeping the dataset fingerprint, and views (`--views`) read by
`heldout lira`."""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from predict_helpers import REPO
from predict_helpers import error_line as _error_line

from heldout.cli import main as cli_main
from heldout.data import ArrayDataset
from heldout.data.digits import load_digits
from heldout.data.fingerprint import fingerprint_dataset, read_fingerprint_file
from heldout.data.npz import save_npz_dataset
from heldout.experiment import open_experiment
from heldout.predict import open_store
from heldout.predict import store as st


def _predict(experiment, npz, out, *flags):
    return cli_main(["predict", str(experiment), "--dataset_npz", str(npz), "--out", str(out),
                     "--workers", "0", *flags])


def _restores(monkeypatch) -> list:
    """Counts the checkpoint restores (the TensorFlow backend's)."""
    from heldout.evaluate.tensorflow import TensorFlowBackend

    calls = []
    original = TensorFlowBackend.restore

    def restore(self, run):
        calls.append(run.name)
        return original(self, run)

    monkeypatch.setattr(TensorFlowBackend, "restore", restore)
    return calls


@pytest.mark.parametrize("split", ["test", "train"])
def test_a_dataset_that_does_not_fit_the_runs_is_refused_before_the_store(
        digits, fmnist_dir, tmp_path, capsys, monkeypatch, split):
    # Before the fix: four restores, four "173 of the model's 173 variables are not in the
    # checkpoint ... is it another architecture?", and a store tied to the wrong dataset that
    # refused the corrected command until --overwrite. (--source checkpoints: the runs'
    # recorded outputs would need no restore; the check comes first either way.)
    experiment, npz = digits
    restores = _restores(monkeypatch)
    out = tmp_path / "s.zarr"
    for source in ("auto", "checkpoints"):
        err = _error_line(capsys, _predict(experiment, fmnist_dir / "dataset.npz", out,
                                           "--split", split, "--source", source))
        assert "run 0.5/0" in err and "aux_arrays.npz" in err
        assert "different datasets or orders" in err or "training examples" in err
        assert "another architecture" not in err
        assert restores == [] and not os.path.exists(out)
    assert _predict(experiment, npz, out, "--split", split, "--source", "checkpoints") == 0
    assert len(restores) == 4 and open_store(out)["completed"].all()


def test_the_check_is_verify_s(digits, fmnist_dir, capsys):
    # One check for both commands: verify names the same file and what differs.
    experiment, _ = digits
    assert cli_main(["verify", str(experiment / "0.5" / "0"), "--dataset_npz",
                     str(fmnist_dir / "dataset.npz")]) == 1
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith("0.5/0: FAILED: ") and "different datasets or orders" in line


def test_another_evaluation_set_still_checks_the_model(digits, fmnist_dir, tmp_path, capsys,
                                                       monkeypatch):
    # --no_cross_check declares another evaluation set: its labels may differ from the runs',
    # but a model of another architecture is still refused before any restore.
    experiment, _ = digits
    restores = _restores(monkeypatch)
    err = _error_line(capsys, _predict(experiment, fmnist_dir / "dataset.npz",
                                       tmp_path / "s.zarr", "--split", "test",
                                       "--no_cross_check"))
    assert "an mlp" in err and "small_inception" in err and restores == []
    assert not os.path.exists(tmp_path / "s.zarr")


def test_runs_whose_files_cannot_be_read_are_named(digits, tmp_path, capsys):
    import shutil

    experiment, npz = digits
    exp = tmp_path / "exp"
    shutil.copytree(experiment / "0.5" / "1", exp / "0.5" / "1")
    (exp / "0.5" / "1" / "aux_arrays.npz").write_bytes(b"not an npz")
    for source, files in (("checkpoints", "aux arrays and model files"),
                          ("recorded", "aux arrays")):
        err = _error_line(capsys, _predict(exp, npz, tmp_path / "s.zarr", "--split", "test",
                                           "--source", source))
        assert f"none of the 1 runs has readable {files}; e.g. run 0.5/1: " in err
        assert "aux_arrays.npz" in err and not os.path.exists(tmp_path / "s.zarr")


def _relabelled(dataset: ArrayDataset, num_classes: int) -> ArrayDataset:
    return ArrayDataset(dataset.name, num_classes, dict(dataset.images), dict(dataset.labels),
                        dataset.scale)


def test_the_class_count_is_read_from_the_checkpoint(fmnist_experiment, fmnist_dataset,
                                                     tmp_path, capsys, monkeypatch):
    # The fixture runs have no fingerprint (as the release): the same images and labels
    # declared with 12 classes pass the size check; the checkpoint's output layer says 10.
    npz = tmp_path / "twelve.npz"
    save_npz_dataset(npz, _relabelled(fmnist_dataset, 12))
    restores = _restores(monkeypatch)
    err = _error_line(capsys, _predict(fmnist_experiment, npz, tmp_path / "s.zarr", "--split",
                                       "test"))
    assert "10 classes" in err and "12 classes" in err and restores == []
    err = _error_line(capsys, _predict(fmnist_experiment, npz, tmp_path / "s.zarr", "--split",
                                       "test", "--arch", "mlp", "--no_cross_check"))
    assert "small_inception" in err and "mlp" in err and "12 classes" in err


@pytest.mark.slow
def test_the_class_count_of_exported_runs_is_read_from_their_metadata(
        fmnist_exported, fmnist_dataset, tmp_path, capsys):
    pytest.importorskip("torch")
    npz = tmp_path / "twelve.npz"
    save_npz_dataset(npz, _relabelled(fmnist_dataset, 12))
    err = _error_line(capsys, _predict(fmnist_exported, npz, tmp_path / "s.zarr", "--split",
                                       "test", "--backend", "torch"))
    assert "10 classes" in err and "12 classes" in err and "model.safetensors" in err


def test_an_empty_store_is_replaced_without_overwrite(digits, tmp_path, capsys):
    experiment, npz = digits
    out = tmp_path / "s.zarr"
    # A store made for another output set, no run completed: replaced.
    assert _predict(experiment, npz, out, "--split", "test", "--outputs", "correct",
                    "--run_ids", "0") == 0
    group_completed = st.completed(out)
    assert group_completed.tolist() == [True]
    import zarr

    zarr.open_group(str(out), mode="r+")["completed"][0] = False
    assert _predict(experiment, npz, out, "--split", "test") == 0
    capsys.readouterr()
    s = open_store(out)
    assert s.attrs["outputs"] == ["correct", "margin", "logit_confidence"]
    assert s["completed"].all() and len(s.rows) == 4
    # A store with a completed run is kept: --overwrite is needed.
    err = _error_line(capsys, _predict(experiment, npz, out, "--split", "test", "--outputs",
                                       "correct"))
    assert "the store was made for something else" in err and "--overwrite" in err
    assert open_store(out)["completed"].all()


def _hold_lock(path) -> subprocess.Popen:
    """A process holding `path`'s lock (as a running `heldout predict` does) until killed."""
    code = ("import sys; from heldout.lock import try_lock; "
            f"fd = try_lock({str(path)!r}); print('held' if fd is not None else 'busy', "
            "flush=True); sys.stdin.read()")
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    assert child.stdout.readline().strip() == "held"
    return child


def test_a_second_predict_on_the_same_store_is_refused(digits, tmp_path, capsys, monkeypatch):
    # Before the fix both commands evaluated every run.
    from heldout.predict.engine import store_lock_path

    experiment, npz = digits
    out = tmp_path / "s.zarr"
    restores = _restores(monkeypatch)
    holder = _hold_lock(store_lock_path(out))
    try:
        err = _error_line(capsys, _predict(experiment, npz, out, "--split", "test", "--source",
                                           "checkpoints"))
        assert f"pid {holder.pid}" in err and "another heldout predict" in err
        assert restores == [] and not os.path.exists(out)
    finally:
        holder.send_signal(signal.SIGKILL)  # a killed holder leaves nothing held
        holder.wait()
    assert _predict(experiment, npz, out, "--split", "test", "--source", "checkpoints") == 0
    assert len(restores) == 4 and not os.path.exists(store_lock_path(out))
    # Another store beside it is not blocked.
    holder = _hold_lock(store_lock_path(out))
    try:
        assert _predict(experiment, npz, tmp_path / "t.zarr", "--split", "test",
                        "--run_ids", "0") == 0
    finally:
        holder.kill()
        holder.wait()


# --------------------------------------------------------------------------------------------
# estimate --predictions keeps the dataset fingerprint.


def test_estimate_from_a_store_keeps_the_runs_fingerprint(digits, tmp_path, capsys):
    # Before the fix: "no dataset fingerprint", so pairs/cscores/report could not check labels.
    experiment, npz = digits
    store = tmp_path / "test.zarr"
    assert _predict(experiment, npz, store, "--split", "test") == 0
    est = tmp_path / "est.npz"
    assert cli_main(["estimate", str(experiment), "--predictions", str(store), "--out",
                     str(est)]) == 0
    out = capsys.readouterr().out
    runs_fp = open_experiment(experiment).runs()[0].load_aux().fingerprint
    assert runs_fp == fingerprint_dataset(load_digits())
    assert read_fingerprint_file(est) == runs_fp
    assert f"dataset {runs_fp.describe()}" in out and "no dataset fingerprint" not in out
    # pairs checks labels with it: the digits' own pass, another order is refused.
    assert cli_main(["pairs", str(est), "--dataset_npz", str(npz), "--out",
                     str(tmp_path / "pairs.npz")]) == 0
    data = load_digits()
    shuffled = ArrayDataset("d", 10, dict(data.images),
                            {**data.labels, "test": data.labels["test"][::-1].copy()}, data.scale)
    save_npz_dataset(tmp_path / "shuffled.npz", shuffled)
    assert cli_main(["pairs", str(est), "--dataset_npz", str(tmp_path / "shuffled.npz"),
                     "--out", str(tmp_path / "p2.npz")]) == 2
    assert "labels differ" in capsys.readouterr().err
    # A train store: the fingerprint of its training split.
    train_store = tmp_path / "train.zarr"
    assert _predict(experiment, npz, train_store, "--split", "train") == 0
    assert cli_main(["estimate", str(experiment), "--predictions", str(train_store), "--out",
                     str(est), "--influence", "none"]) == 0
    fp = read_fingerprint_file(est)
    assert fp.splits == ("train",) and fp.split("train") == runs_fp.split("train")


def test_estimate_refuses_a_store_of_other_labels_than_the_runs(digits, tmp_path, capsys):
    experiment, _ = digits
    data = load_digits()
    other = ArrayDataset("other", 10, dict(data.images),
                         {**data.labels, "test": np.roll(data.labels["test"], 1)}, data.scale)
    npz = tmp_path / "other.npz"
    save_npz_dataset(npz, other)
    store = tmp_path / "other.zarr"
    assert _predict(experiment, npz, store, "--split", "test", "--no_cross_check") == 0
    capsys.readouterr()
    code = cli_main(["estimate", str(experiment), "--predictions", str(store), "--out",
                     str(tmp_path / "est.npz")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "different datasets or orders" in err and "other.zarr" in err
    assert "labels differ" in err
    assert not os.path.exists(tmp_path / "est.npz")


def test_estimate_on_another_evaluation_set_keeps_the_training_fingerprint(digits, tmp_path,
                                                                            capsys):
    # A new test set (another size: here the digits' first 300 test images, reversed) made with
    # --no_cross_check on purpose: the influence on it is estimated, and the output keeps the
    # runs' training-set fingerprint only (its test axis is not the runs' test split).
    experiment, _ = digits
    data = load_digits()
    new = ArrayDataset("new", 10, {**data.images, "test": data.images["test"][:300][::-1]},
                       {**data.labels, "test": data.labels["test"][:300][::-1]}, data.scale)
    npz = tmp_path / "new.npz"
    save_npz_dataset(npz, new)
    store = tmp_path / "new.zarr"
    assert _predict(experiment, npz, store, "--split", "test", "--no_cross_check") == 0
    est = tmp_path / "est.npz"
    assert cli_main(["estimate", str(experiment), "--predictions", str(store), "--out",
                     str(est)]) == 0
    capsys.readouterr()
    runs_fp = open_experiment(experiment).runs()[0].load_aux().fingerprint
    fp = read_fingerprint_file(est)
    assert fp.splits == ("train",) and fp.split("train") == runs_fp.split("train")
    assert np.load(est)["influence"].shape == (300, data.num_examples("train"))


# --------------------------------------------------------------------------------------------
# Views: logit_confidence of transformed images, for LiRA.


def test_view_names_and_directions():
    from heldout.data.views import View, ViewError, parse_view, parse_views

    x = np.arange(2 * 3 * 4 * 2, dtype=np.uint8).reshape(2, 3, 4, 2)
    assert parse_view("flip+down1+left2") == View("flip+down1+left2", True, 1, -2)
    np.testing.assert_array_equal(parse_view("flip").apply(x), x[:, :, ::-1])
    up = parse_view("up1").apply(x)  # rows move up, the last row is zero
    np.testing.assert_array_equal(up[:, :2], x[:, 1:])
    assert not up[:, 2].any()
    both = parse_view("flip+down1+left2").apply(x)
    np.testing.assert_array_equal(both[:, 1:, :2], x[:, :2, ::-1][:, :, 2:])
    assert not both[:, 0].any() and not both[:, :, 2:].any() and both.dtype == x.dtype
    assert parse_view("identity").apply(x) is x
    assert [v.name for v in parse_views("right1,flip")] == ["identity", "right1", "flip"]
    assert [v.name for v in parse_views(["flip", "identity"])] == ["identity", "flip"]
    for bad in ("right2+flip", "flipright2", "down0", "flip+", "shift2", "flip+flip"):
        with pytest.raises(ViewError, match="unknown view|0 pixels"):
            parse_view(bad)
    with pytest.raises(ViewError, match="the same transform"):
        parse_views("right1,right01")
    with pytest.raises(ViewError, match="shifts by 3 rows"):
        parse_view("down3").apply(x)


def _transformed(npz, path, transform):
    """The dataset at `npz` with its training images transformed (uint8, before scaling)."""
    from heldout.data import DatasetSpec, load_dataset

    data = load_dataset(DatasetSpec(dataset_npz=str(npz)))
    save_npz_dataset(path, ArrayDataset("t", data.num_classes,
                                        {**data.images, "train": transform(data.images["train"])},
                                        dict(data.labels), data.scale))
    return path


def _right1(images):
    out = np.zeros_like(images)
    out[:, :, 1:] = images[:, :, :-1]  # the content moves one column right, column 0 is zero
    return out


def test_views_are_the_transformed_images_evaluated(digits, tmp_path, capsys):
    experiment, npz = digits
    out = tmp_path / "views.zarr"
    assert _predict(experiment, npz, out, "--split", "train", "--views", "flip,right1") == 0
    s = open_store(out)
    views = s[st.VIEWS_ARRAY]
    assert views.dtype == np.float32 and views.shape == (4, 1297, 3)
    assert s.attrs["views"] == ["identity", "flip", "right1"]
    np.testing.assert_array_equal(views[:, :, 0], s["logit_confidence"])
    for k, transform in ((1, lambda x: x[:, :, ::-1]), (2, _right1)):
        data = _transformed(npz, tmp_path / f"t{k}.npz", transform)
        direct = tmp_path / f"t{k}.zarr"
        assert _predict(experiment, data, direct, "--split", "train", "--no_cross_check") == 0
        expected = open_store(direct)["logit_confidence"]
        assert not np.allclose(expected, s["logit_confidence"], atol=1e-3)  # another view
        np.testing.assert_allclose(views[:, :, k], expected, rtol=0, atol=1e-5)
    capsys.readouterr()


def test_a_store_of_other_views_is_refused_and_resume_keeps_the_views(digits, tmp_path,
                                                                       capsys):
    import zarr

    experiment, npz = digits
    out = tmp_path / "views.zarr"
    assert _predict(experiment, npz, out, "--split", "train", "--views", "identity,flip") == 0
    capsys.readouterr()
    before = open_store(out)[st.VIEWS_ARRAY]
    for flags in (["--views", "identity,flip,up1"], []):
        err = _error_line(capsys, _predict(experiment, npz, out, "--split", "train", *flags))
        assert "views (--views): store has ['identity', 'flip']" in err and "--overwrite" in err
    zarr.open_group(str(out), mode="r+")["completed"][2] = False
    capsys.readouterr()
    assert _predict(experiment, npz, out, "--split", "train", "--views", "flip") == 0
    assert "(1 now, 3 before)" in capsys.readouterr().out
    after = open_store(out)
    assert after["completed"].all()
    np.testing.assert_allclose(after[st.VIEWS_ARRAY], before, rtol=0, atol=1e-6)
    # A store made without views is refused by a command with views.
    plain = tmp_path / "plain.zarr"
    assert _predict(experiment, npz, plain, "--split", "train", "--run_ids", "0") == 0
    capsys.readouterr()
    err = _error_line(capsys, _predict(experiment, npz, plain, "--split", "train", "--run_ids",
                                       "0", "--views", "flip"))
    assert "views (--views): store has []" in err


def test_bad_views_are_one_line(digits, tmp_path, capsys):
    experiment, npz = digits
    out = tmp_path / "s.zarr"
    for views, message in (("flip+flip", "argument --views: unknown view 'flip+flip'"),
                           ("flip,flip", "views flip: the same transform named more than once")):
        with pytest.raises(SystemExit) as exited:  # argparse: before anything is imported
            _predict(experiment, npz, out, "--split", "train", "--views", views)
        err = capsys.readouterr().err.strip().splitlines()
        assert exited.value.code == 2 and message in err[-1], err
    for flags, message in ((["--views", "right8"], "view right8: shifts by 0 rows and 8 "
                            "columns; the images are 8x8"),
                           (["--views", "flip", "--outputs", "correct"],
                            "add logit_confidence to the outputs")):
        err = _error_line(capsys, _predict(experiment, npz, out, "--split", "train", *flags))
        assert message in err
    assert not os.path.exists(out)


def test_lira_averages_over_the_views(digits, tmp_path, capsys):
    from heldout.privacy import lira_scores, load_lira

    experiment, npz = digits
    out = tmp_path / "views.zarr"
    assert _predict(experiment, npz, out, "--split", "train", "--views", "flip,down1") == 0
    s = open_store(out)
    views, mask = s[st.VIEWS_ARRAY], s["mask"]
    lira = tmp_path / "lira.npz"
    assert cli_main(["lira", str(out), "--out", str(lira)]) == 0
    assert "views identity,flip,down1" in capsys.readouterr().out
    result = load_lira(lira)
    assert result.views == ("identity", "flip", "down1")
    expected = lira_scores(views, mask, dtype=np.float32)
    one = [lira_scores(views[:, :, [v]], mask, dtype=np.float32) for v in range(3)]
    for name in ("online", "offline", "global"):
        np.testing.assert_array_equal(result.scores[name], expected.scores[name])
        # these variants are the mean over views of the one-view scores
        mean = np.mean([o.scores[name] for o in one], axis=0)
        np.testing.assert_allclose(result.scores[name], mean, rtol=1e-5, atol=1e-5)
    assert cli_main(["lira", str(out), "--out", str(lira), "--views", "identity"]) == 0
    plain = lira_scores(s["logit_confidence"], mask, dtype=np.float32)
    np.testing.assert_array_equal(load_lira(lira).scores["online"], plain.scores["online"])
    capsys.readouterr()
