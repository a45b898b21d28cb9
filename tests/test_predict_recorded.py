"""`heldout predict --source auto|recorded|checkpoints` (issue 19, runs without checkpoints): a
store filled from the outputs runs recorded at the end of training (``outputs.npz``), without
restoring a model, on the digits runs of conftest.py (4 MLP runs, each with a checkpoint and
its recorded outputs; runs without checkpoints are made by leaving their checkpoint out)."""

import os
import subprocess
import sys

import numpy as np
import pytest
import zarr
from predict_helpers import REPO
from predict_helpers import error_line as _error_line

from heldout.cli import main as cli_main
from heldout.experiment import AUX_ARRAYS, CHECKPOINT_DIR, OUTPUTS, RUN_JSON
from heldout.npzio import load_npz, save_npz_atomic
from heldout.predict import open_store
from heldout.predict import store as st

SPLITS = ("train", "test")
ROWS = ("correct", "prediction", "margin", "logit_confidence", "mask", "epoch", "global_step",
        "run_id", "subset_ratio")


def _predict(experiment, npz, out, *flags):
    return cli_main(["predict", str(experiment), "--dataset_npz", str(npz), "--out", str(out),
                     *flags])


def _experiment(digits, root, checkpoints=(0, 1, 2, 3), outputs=(0, 1, 2, 3), copy=()):
    """The digits runs 0.5/0..3 again under `root`, by links: run k keeps its checkpoint when k
    is in `checkpoints` and its recorded outputs when in `outputs`; runs in `copy` get their
    own copy of aux_arrays.npz and outputs.npz (to be damaged)."""
    source, _ = digits
    for k in range(4):
        src, run = source / "0.5" / str(k), root / "0.5" / str(k)
        run.mkdir(parents=True)
        names = [AUX_ARRAYS, RUN_JSON] + ([OUTPUTS] if k in outputs else [])
        for name in names:
            if k in copy:
                (run / name).write_bytes((src / name).read_bytes())
            else:
                os.symlink(src / name, run / name)
        if k in checkpoints:
            os.symlink(src / CHECKPOINT_DIR, run / CHECKPOINT_DIR)
    return root


@pytest.fixture(scope="module")
def evaluated(digits, tmp_path_factory):
    """split -> the store of the digits runs evaluated from their checkpoints."""
    experiment, npz = digits
    root = tmp_path_factory.mktemp("evaluated")
    stores = {}
    for split in SPLITS:
        stores[split] = root / f"{split}.zarr"
        assert _predict(experiment, npz, stores[split], "--split", split, "--source",
                        "checkpoints", "--workers", "0") == 0
    return stores


def _no_model(monkeypatch):
    """Fails the test if a model is built or a Dask cluster started."""
    from heldout.predict import engine

    def refuse(*args, **kwargs):
        raise AssertionError("a model or a cluster was started")

    monkeypatch.setattr(engine, "make_backend", refuse)
    monkeypatch.setattr(engine, "connect", refuse)
    monkeypatch.setattr(engine, "check_run_model", refuse)


@pytest.mark.parametrize("split", SPLITS)
def test_runs_without_checkpoints_fill_the_store(digits, evaluated, tmp_path, capsys,
                                                 monkeypatch, split):
    # Before: a store of run 0 only, "skipped 3 ... (no complete checkpoint)".
    _, npz = digits
    experiment = _experiment(digits, tmp_path / "exp", checkpoints=(0,))
    _no_model(monkeypatch)  # and --workers left at its default (a cluster of one worker)
    out = tmp_path / "s.zarr"
    assert _predict(experiment, npz, out, "--split", split, "--views", "identity") == 0
    n = 1297 if split == "train" else 500
    printed = capsys.readouterr()
    assert printed.out.splitlines() == [
        f"{out}: 4 of 4 runs completed (4 now, 0 before)", "4 runs from recorded outputs",
        f"checked 4 runs: {4 * n} out of {4 * n} predictions match"]
    assert "skipped" not in printed.err
    s, reference = open_store(out), open_store(evaluated[split])
    assert s.run_names == reference.run_names == ["0.5/0", "0.5/1", "0.5/2", "0.5/3"]
    assert s.attrs["source"] == "recorded" and reference.attrs["source"] == "checkpoints"
    assert s["recorded"].tolist() == [True] * 4 and not reference["recorded"].any()
    for name in ROWS:
        np.testing.assert_array_equal(s[name], reference[name], err_msg=name)
    np.testing.assert_array_equal(s[st.VIEWS_ARRAY][:, :, 0], s["logit_confidence"])


def test_recorded_outputs_equal_the_checkpoints_bit_for_bit(digits, evaluated, tmp_path,
                                                            capsys):
    # Every digits run has both: the store from recorded outputs and the one from restoring
    # each checkpoint hold the same bits (the same function of the same logits), and correct
    # equals the aux arrays (the cross-check).
    experiment, npz = digits
    for split in SPLITS:
        out = tmp_path / f"{split}.zarr"
        assert _predict(experiment, npz, out, "--split", split, "--source", "recorded") == 0
        s, reference = open_store(out), open_store(evaluated[split])
        for name in ROWS:
            a, b = np.asarray(s[name]), np.asarray(reference[name])
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), name
        assert s["margin"].std() > 0 and not s["correct"].all()  # real values
    assert "checked 4 runs: 2000 out of 2000 predictions match" in capsys.readouterr().out


def test_auto_mixes_only_what_it_says(digits, evaluated, tmp_path, capsys):
    # Run 0 has only its checkpoint (trained before outputs were recorded), runs 1-3 only their
    # recorded outputs: auto covers all four and says which came from where, in the summary
    # and in the store; --source picks one.
    _, npz = digits
    experiment = _experiment(digits, tmp_path / "exp", checkpoints=(0,), outputs=(1, 2, 3))
    out = tmp_path / "auto.zarr"
    assert _predict(experiment, npz, out, "--split", "test", "--workers", "0") == 0
    assert "3 runs from recorded outputs, 1 from checkpoints" in capsys.readouterr().out
    s, reference = open_store(out), open_store(evaluated["test"])
    assert s.attrs["source"] == "recorded+checkpoints"
    assert s["recorded"].tolist() == [False, True, True, True]
    for name in ROWS:
        np.testing.assert_array_equal(s[name], reference[name], err_msg=name)
    assert _predict(experiment, npz, tmp_path / "r.zarr", "--split", "test", "--source",
                    "recorded") == 0
    printed = capsys.readouterr()
    assert "3 runs from recorded outputs" in printed.out
    assert "skipped 1 run without recorded outputs (outputs.npz): 0.5/0" in printed.err
    assert open_store(tmp_path / "r.zarr").run_names == ["0.5/1", "0.5/2", "0.5/3"]
    # A store of one source is not resumed from another (the same runs otherwise).
    err = _error_line(capsys, _predict(digits[0], npz, evaluated["test"], "--split", "test",
                                       "--source", "recorded"))
    assert "source (--source): store has 'checkpoints', this command 'recorded'" in err
    assert "runs:" not in err and open_store(evaluated["test"]).attrs["source"] == "checkpoints"
    # No run with what the source needs: the error says what they have.
    err = _error_line(capsys, _predict(experiment, npz, tmp_path / "x.zarr", "--split", "test",
                                       "--source", "checkpoints", "--run_ids", "1"))
    assert err.endswith("no runs with a complete checkpoint among the 1 selected; they have "
                        "recorded outputs (outputs.npz): use --source recorded")
    err = _error_line(capsys, _predict(experiment, npz, tmp_path / "x.zarr", "--split", "test",
                                       "--source", "recorded", "--run_ids", "0"))
    assert err.endswith("they have a complete checkpoint: use --source checkpoints")


def test_what_is_not_recorded_needs_checkpoints(digits, tmp_path, capsys):
    _, npz = digits
    experiment = _experiment(digits, tmp_path / "exp", checkpoints=(0,))
    out = tmp_path / "s.zarr"
    for flags, why in (
            (["--outputs", "correct,logits"], "logits are not recorded (--outputs logits)"),
            (["--views", "identity,flip"], "views other than identity are not recorded "
                                           "(--views flip)"),
            (["--no_cross_check"], "another evaluation set than the runs' own"),
            (["--backend", "torch"], "--backend torch evaluates the runs' exported models"),
            (["--split", "validation"], "runs record their outputs on the train and test splits, "
                                        "not on 'validation'")):
        split = [] if "--split" in flags else ["--split", "train"]
        err = _error_line(capsys, _predict(experiment, npz, out, "--source", "recorded",
                                           *split, *flags))
        assert f"--source recorded: {why}" in err and "(--source checkpoints)" in err, err
        assert not os.path.exists(out)
    # auto evaluates the models then, and says why the recorded outputs were not used.
    assert _predict(experiment, npz, out, "--split", "test", "--outputs", "correct,logits",
                    "--workers", "0") == 0
    printed = capsys.readouterr()
    assert ("1 runs from checkpoints (recorded outputs not used: logits are not recorded "
            "(--outputs logits))") in printed.out
    assert "skipped 3 runs without a complete checkpoint: 0.5/1, 0.5/2, 0.5/3" in printed.err
    s = open_store(out)
    assert s.attrs["source"] == "checkpoints" and s["logits"].shape == (1, 500, 10)


def test_resume_and_faults(digits, tmp_path, capsys):
    _, npz = digits
    experiment = _experiment(digits, tmp_path / "exp", checkpoints=(), copy=(1, 2, 3))
    out = tmp_path / "s.zarr"
    assert _predict(experiment, npz, out, "--split", "train") == 0
    before = open_store(out)
    zarr.open_group(str(out), mode="r+")["completed"][2] = False
    capsys.readouterr()
    assert _predict(experiment, npz, out, "--split", "train") == 0
    assert "(1 now, 3 before)" in capsys.readouterr().out
    for name in ROWS:
        np.testing.assert_array_equal(open_store(out)[name], before[name], err_msg=name)
    # A damaged file fails its run alone (named, not completed, exit 1); a prediction that
    # contradicts the aux arrays is caught by the cross-check; a class the dataset does not
    # have, and aux arrays without a dataset fingerprint, fail the run.
    run = experiment / "0.5"
    (run / "1" / OUTPUTS).write_bytes(b"not an npz")
    for k, key, value in ((2, "prediction_train", None), (3, "prediction_test", 10)):
        arrays = {name: np.array(a) for name, a in load_npz(run / str(k) / OUTPUTS).items()}
        arrays[key][0] = (arrays[key][0] + 1) % 10 if value is None else value
        save_npz_atomic(run / str(k) / OUTPUTS, arrays)
    aux = {k: v for k, v in load_npz(run / "0" / AUX_ARRAYS).items()
           if not k.startswith("fingerprint__")}
    os.unlink(run / "0" / AUX_ARRAYS)  # a link to the fixture's
    save_npz_atomic(run / "0" / AUX_ARRAYS, aux)
    for split, completed in (("train", ["0.5/2", "0.5/3"]), ("test", ["0.5/2"])):
        capsys.readouterr()
        out = tmp_path / f"bad-{split}.zarr"
        assert _predict(experiment, npz, out, "--split", split) == 1
        printed = capsys.readouterr()
        failed = [line for line in printed.out.splitlines() if "FAILED" in line]
        assert failed[0].startswith("0.5/0: FAILED: ") and "no dataset fingerprint" in failed[0]
        assert failed[1].startswith("0.5/1: FAILED: ") and "outputs.npz" in failed[1]
        if split == "test":
            assert failed[2].startswith("0.5/3: FAILED: ") and "class 10 in a dataset of 10 " \
                "classes" in failed[2] and len(failed) == 3
        else:
            assert len(failed) == 2
            assert "0.5/2: MISMATCH: 1296/1297 predictions match" in printed.err
        assert open_store(out).run_names == completed


def test_recorded_outputs_start_neither_tensorflow_nor_dask(digits, tmp_path):
    _, npz = digits
    experiment = _experiment(digits, tmp_path / "exp", checkpoints=(0,))
    code = ("import sys; from heldout.cli import main; "
            f"code = main(['predict', {str(experiment)!r}, '--dataset_npz', {str(npz)!r}, "
            f"'--split', 'test', '--out', {str(tmp_path / 's.zarr')!r}]); "
            "print(sorted(m for m in ('tensorflow', 'distributed', 'sonnet') "
            "if m in sys.modules)); sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]" and "4 runs from recorded outputs" in done.stdout


def _other_images(npz, path, invert=False, scale=None):
    """The digits dataset.npz with its test images inverted (``16 - x``) or another
    ``__data_scale``: the same labels in the same order, so the same dataset fingerprint."""
    arrays = {key: np.array(value) for key, value in load_npz(npz).items()}
    if invert:
        arrays["test__image"] = (16 - arrays["test__image"]).astype(np.uint8)
    if scale is not None:
        arrays["__data_scale"] = np.float32(scale)
    save_npz_atomic(path, arrays)
    return path


def test_other_images_with_the_runs_labels_are_evaluated_not_read(digits, tmp_path, capsys):
    # Before: auto read the runs' recorded outputs for test images they were never computed on
    # (inverted, same labels: the dataset fingerprint is labels only), exit 0, "2000 out of
    # 2000 predictions match" and accuracy ~0.7; the checkpoints give ~0.004 and 4 MISMATCH.
    experiment, npz = digits
    inverted = _other_images(npz, tmp_path / "inverted.npz", invert=True)
    reference, out = tmp_path / "checkpoints.zarr", tmp_path / "auto.zarr"
    assert _predict(experiment, inverted, reference, "--split", "test", "--source",
                    "checkpoints", "--workers", "0") == 1
    capsys.readouterr()
    assert _predict(experiment, inverted, out, "--split", "test", "--workers", "0") == 1
    printed = capsys.readouterr()
    assert printed.out.count("MISMATCH") == 0 and printed.err.count("MISMATCH") == 4
    assert ("4 runs from checkpoints (recorded outputs not used: 4 runs recorded them on "
            "other test images") in printed.out
    s, evaluated = open_store(out), open_store(reference)
    assert s.attrs["source"] == "checkpoints" and not s["recorded"].any()
    for name in ROWS:
        np.testing.assert_array_equal(s[name], evaluated[name], err_msg=name)
    assert s["correct"].mean() < 0.1
    # --source recorded refuses, in one line naming the file, the split and what differs.
    err = _error_line(capsys, _predict(experiment, inverted, tmp_path / "r.zarr", "--split",
                                       "test", "--source", "recorded"))
    assert f"{experiment / '0.5' / '0' / OUTPUTS}: recorded on other test images" in err, err
    assert not os.path.exists(tmp_path / "r.zarr")
    # The train split's images are the runs' own: read as before.
    assert _predict(experiment, inverted, tmp_path / "t.zarr", "--split", "train",
                    "--source", "recorded") == 0
    # A run with neither usable recorded outputs nor a checkpoint is skipped and said so.
    partial = _experiment(digits, tmp_path / "exp", checkpoints=(0, 1))
    capsys.readouterr()
    assert _predict(partial, inverted, tmp_path / "p.zarr", "--split", "test",
                    "--workers", "0", "--min_match_fraction", "0") == 0
    printed = capsys.readouterr()
    assert "2 runs from checkpoints" in printed.out
    assert ("skipped 2 runs without recorded outputs of these test images or a complete "
            "checkpoint: 0.5/2, 0.5/3") in printed.err
    assert open_store(tmp_path / "p.zarr").run_names == ["0.5/0", "0.5/1"]


def test_another_preprocessing_of_the_same_images_is_evaluated_not_read(digits, tmp_path,
                                                                         capsys):
    # The same images at another __data_scale are another model input: not the recorded one.
    experiment, npz = digits
    scaled = _other_images(npz, tmp_path / "scaled.npz", scale=8)
    err = _error_line(capsys, _predict(experiment, scaled, tmp_path / "r.zarr", "--split",
                                       "train", "--source", "recorded"))
    assert err.endswith(f"{experiment / '0.5' / '0' / OUTPUTS}: recorded on the train images "
                        "under another input preprocessing (scale 8 here, 16 recorded); use "
                        "--source checkpoints"), err
    out = tmp_path / "auto.zarr"
    _predict(experiment, scaled, out, "--split", "train", "--workers", "0")
    assert ("4 runs from checkpoints (recorded outputs not used: 4 runs recorded them on the "
            "train images under another input preprocessing (scale 8 here, 16 recorded))"
            ) in capsys.readouterr().out
    s = open_store(out)
    assert s.attrs["source"] == "checkpoints" and not s["recorded"].any()


def test_recorded_outputs_without_what_they_were_computed_on_are_refused(digits, tmp_path,
                                                                        capsys):
    _, npz = digits
    experiment = _experiment(digits, tmp_path / "exp", checkpoints=(), copy=(1,))
    path = experiment / "0.5" / "1" / OUTPUTS
    save_npz_atomic(path, {k: v for k, v in load_npz(path).items() if k != "images_digest_test"})
    out = tmp_path / "s.zarr"
    assert _predict(experiment, npz, out, "--split", "test") == 1
    assert (f"0.5/1: FAILED: {path}: missing key 'images_digest_test' (expected str scalar in "
            "an outputs.npz)") in capsys.readouterr().out
    assert open_store(out).run_names == ["0.5/0", "0.5/2", "0.5/3"]


def test_split_inputs_say_what_differs():
    from dataclasses import replace

    from heldout.data.preprocessing import InputPreprocessing
    from heldout.experiment import RecordedInputs
    from heldout.predict.recorded import SplitInputs

    def digest(c):
        return f"uint8 [5, 2, 2, 1] sha256:{c * 64}"

    recorded = RecordedInputs(digest("a"), digest("b"), InputPreprocessing(16.0))
    here = SplitInputs("d.npz", "test", digest("b"), InputPreprocessing(16.0))
    assert here.differs(recorded) == ""
    assert replace(here, split="train").differs(recorded) == (
        "on other train images (uint8 [5, 2, 2, 1] sha256:bbbbbbbbbbbb... here, uint8 [5, 2, "
        "2, 1] sha256:aaaaaaaaaaaa... recorded)")
    normalised = InputPreprocessing(255.0, (0.5,), (0.25,))
    assert replace(here, preprocessing=normalised).differs(recorded) == (
        "on the test images under another input preprocessing (scale 255 here, 16 recorded; "
        "mean [0.5] here, None recorded; std [0.25] here, None recorded)")
    assert here.differs(replace(recorded, images_test="")) == (
        "without a digest of the test images")
    assert replace(here, images=None).differs(recorded) == (
        "on test images that d.npz cannot compare (no digest: it does not hold its images in "
        "memory)")
