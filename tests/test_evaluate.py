"""Re-evaluating the reference runs: logits, cross-check, demo.py and `heldout verify`."""

import shutil
import subprocess
import sys

import numpy as np
import pytest

from heldout import experiment as ex
from heldout.cli import main as cli_main
from heldout.errors import NpzError
from heldout.evaluate import (
    cross_check,
    make_backend_for,
    verify_run,
)
from heldout.models import default_arch

RUNS = ["0.5/0", "0.5/7", "0.25/3"]
REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def backend(fmnist_dataset):
    return make_backend_for(fmnist_dataset)


class _Verified(dict):
    """(run name, split) -> RunVerification, each reference run evaluated at most once per
    split (on first use) for every test of this module that needs its predictions."""

    def __init__(self, backend, dataset, experiment):
        super().__init__()
        self.backend, self.dataset, self.experiment = backend, dataset, experiment

    def __missing__(self, key):
        name, split = key
        self[key] = verify_run(self.backend, ex.run_from_path(self.experiment / name),
                               self.dataset, split, batch_size=256, progress=False)
        return self[key]


@pytest.fixture(scope="module")
def verified(backend, fmnist_dataset, fmnist_experiment):
    return _Verified(backend, fmnist_dataset, fmnist_experiment)


@pytest.mark.slow
@pytest.mark.parametrize("split", ["train", "test"])
def test_logits_and_cross_check_all_runs(verified, fmnist_dataset, fmnist_dir, split):
    # verify_run on every run's test split and on one run's train split (its subset and removed
    # examples together): the restore and forward pass behind it are checked on every run and
    # both splits by tests/test_predict.py::test_store_values (the same Evaluator).
    expected = np.load(fmnist_dir / "expected_logits.npz")
    for name in RUNS if split == "test" else ("0.5/0",):
        result = verified[(name, split)]
        np.testing.assert_array_equal(result.predictions.index,
                                      np.arange(fmnist_dataset.num_examples(split)))
        np.testing.assert_allclose(result.predictions.logits,
                                   expected[f"{name}/logits_{split}"], atol=1e-4, rtol=0)
        assert result.check.all_match, (name, split, result.check.mismatched_index)
        assert result.check.num_total == (2000 if split == "train" else 500)


def test_cross_check_reports_mismatches(fmnist_dataset, fmnist_experiment, fmnist_dir):
    # The reference logits of run 0.5/0 (no model needed) against its aux arrays, three of
    # whose correctness bits are flipped.
    from heldout.evaluate import Predictions

    logits = np.load(fmnist_dir / "expected_logits.npz")["0.5/0/logits_test"]
    predictions = Predictions(logits, fmnist_dataset.split_labels("test"),
                              np.arange(len(logits), dtype=np.int64))
    aux = ex.run_from_path(fmnist_experiment / "0.5" / "0").load_aux()
    assert cross_check(predictions, aux, "test").num_match == 500
    arrays = aux.to_dict()
    flip = np.isin(arrays["index_test"], [3, 17, 400])
    arrays["correctness_test"] = arrays["correctness_test"] ^ flip
    bad = ex.aux_arrays_from_dict(arrays)
    check = cross_check(predictions, bad, "test")
    assert (check.num_match, check.num_total) == (497, 500)
    np.testing.assert_array_equal(check.mismatched_index, [3, 17, 400])
    assert check.match_fraction == pytest.approx(0.994)


def test_dataset_size_must_match_aux_arrays(backend, fmnist_dataset, fmnist_experiment):
    from heldout.data import ArrayDataset

    small = ArrayDataset("small", 10, {"test": fmnist_dataset.images["test"][:400]},
                         {"test": fmnist_dataset.labels["test"][:400]})
    run = ex.run_from_path(fmnist_experiment / "0.5" / "0")
    with pytest.raises(NpzError, match="covers 500 test examples but the dataset has 400"):
        verify_run(backend, run, small, "test", progress=False)


def test_default_arch():
    assert default_arch("cifar10:3.0.2", (32, 32, 3)) == "small_inception"
    assert default_arch("imagenet2012", (224, 224, 3)) == "resnet50"
    assert default_arch("mnist", (28, 28, 1)) == "mlp"
    assert default_arch("digits", (8, 8, 1)) == "mlp"
    with pytest.raises(ValueError, match="`arch`"):
        default_arch("x", (64, 64, 3))


@pytest.mark.slow
def test_verify_whole_experiment(fmnist_experiment, fmnist_dir, capsys):
    # The command's report; the predictions of both splits are checked above, through the
    # library, so the CLI evaluates the (smaller) test split only.
    for split in ("test",):
        status = cli_main(["verify", str(fmnist_experiment), "--dataset_npz",
                           str(fmnist_dir / "dataset.npz"), "--split", split])
        out = capsys.readouterr().out
        assert status == 0, out
        n = 2000 if split == "train" else 500
        assert out.strip().splitlines()[-1] == (
            f"verified 3 runs: {3 * n} out of {3 * n} predictions match")
        assert "0.5/7: epoch 10 step 200 subset 50.0%" in out


@pytest.mark.slow
def test_verify_exits_nonzero_on_mismatch(tmp_path, fmnist_experiment, fmnist_dir, capsys):
    run = tmp_path / "exp" / "0.5" / "0"
    shutil.copytree(fmnist_experiment / "0.5" / "0", run)
    aux = ex.load_aux_arrays(run / ex.AUX_ARRAYS).to_dict()
    aux["correctness_test"] = ~aux["correctness_test"]
    ex.write_aux_arrays(run / ex.AUX_ARRAYS, ex.aux_arrays_from_dict(aux))
    args = ["verify", str(run), "--dataset_npz", str(fmnist_dir / "dataset.npz")]
    assert cli_main(args) == 1
    assert "verified 1 run: 0 out of 500 predictions match" in capsys.readouterr().out
    assert cli_main(args + ["--min_match_fraction", "0"]) == 0


@pytest.mark.slow
def test_verify_reports_broken_runs_and_continues(tmp_path, fmnist_experiment, fmnist_dir,
                                                  capsys):
    exp = tmp_path / "exp"
    shutil.copytree(fmnist_experiment, exp)
    shutil.copytree(fmnist_experiment / "0.5" / "0", exp / "0.5" / "9")
    data = exp / "0.5" / "9" / "checkpoints" / "ckpt-10.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:500])
    status = cli_main(["verify", str(exp), "--dataset_npz", str(fmnist_dir / "dataset.npz")])
    out = capsys.readouterr().out
    assert status == 1
    assert "0.5/9: FAILED: " in out and "restore failed" in out
    assert out.strip().splitlines()[-1] == (
        "verified 3 runs: 1500 out of 1500 predictions match (1 of 4 runs failed to restore or "
        "read)")


def test_inspect(fmnist_experiment, capsys):
    assert cli_main(["inspect", str(fmnist_experiment)]) == 0
    out = capsys.readouterr().out
    assert "3 complete runs in 2 subset ratios; 0 other entries skipped" in out
    assert " ratio  runs  ckpt  subset acc_subset acc_removed acc_test" in out
    assert "   0.5     2     2   50.0%" in out and "  0.25     1     1   25.0%" in out


@pytest.mark.slow
def test_demo(fmnist_experiment, fmnist_dir):
    # One run and split: demo.py is a script over the same library calls checked above.
    name = "0.25/3"
    for split in ("test",):
        proc = subprocess.run(
            [sys.executable, str(REPO / "demo.py"), f"--run_dir={fmnist_experiment / name}",
             f"--dataset_npz={fmnist_dir / 'dataset.npz'}", f"--split={split}"],
            capture_output=True, text=True, cwd=REPO,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "oneDNN" not in proc.stderr and "absl::InitializeLog" not in proc.stderr
        n = 2000 if split == "train" else 500
        assert f"{n} out of {n} predictions match" in proc.stdout
        assert "epoch 10, global step" in proc.stdout
        assert f"Subset: {float(name.split('/')[0]):.1%} of the training set" in proc.stdout


@pytest.mark.slow
def test_demo_usage_error(fmnist_experiment):
    proc = subprocess.run([sys.executable, str(REPO / "demo.py"),
                           f"--run_dir={fmnist_experiment / '0.5/0'}"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == ("demo.py: error: one of the arguments --dataset "
                                            "--dataset_npz --tfrecord_dir --idx_dir is required")


@pytest.mark.slow
def test_verify_checks_the_runs_dataset_fingerprint(tmp_path, fmnist_experiment, fmnist_dir,
                                                    fmnist_dataset, capsys):
    from heldout.data.fingerprint import fingerprint_dataset, fingerprint_from_labels

    run = tmp_path / "exp" / "0.5" / "0"
    shutil.copytree(fmnist_experiment / "0.5" / "0", run)
    aux = ex.load_aux_arrays(run / ex.AUX_ARRAYS)
    args = ["verify", str(run), "--dataset_npz", str(fmnist_dir / "dataset.npz")]
    # The run's own dataset: passes, and the fingerprint survives a write and a read.
    right = fingerprint_dataset(fmnist_dataset)
    ex.write_aux_arrays(run / ex.AUX_ARRAYS, ex.aux_arrays_from_dict(
        {**aux.to_dict(), **right.to_arrays()}))
    assert ex.load_aux_arrays(run / ex.AUX_ARRAYS).fingerprint == right
    assert cli_main(args) == 0
    # The same dataset in another order: refused before any evaluation.
    labels = {s: fmnist_dataset.split_labels(s) for s in ("train", "test")}
    labels["test"] = labels["test"][::-1]
    reordered = fingerprint_from_labels(fmnist_dataset.name, labels)
    ex.write_aux_arrays(run / ex.AUX_ARRAYS, ex.aux_arrays_from_dict(
        {**aux.to_dict(), **reordered.to_arrays()}))
    capsys.readouterr()
    assert cli_main(args) == 1
    out = capsys.readouterr().out
    assert "0.5/0: FAILED: " in out and "split 'test' labels differ" in out


def test_partial_predictions_count_as_mismatches(verified):
    from heldout.evaluate import Predictions

    result = verified[("0.5/0", "test")]
    p = result.predictions
    keep = np.r_[0:100, 120:500, 130]  # 20 examples missing, one predicted twice
    partial = Predictions(p.logits[keep], p.label[keep], p.index[keep])
    check = cross_check(partial, result.aux, "test")
    assert check.num_total == 500 and check.num_match == 479
    np.testing.assert_array_equal(check.mismatched_index, np.r_[100:120, 130])


def test_bad_batch_size_and_fraction(fmnist_experiment, fmnist_dir):
    base = ["verify", str(fmnist_experiment), "--dataset_npz", str(fmnist_dir / "dataset.npz")]
    for extra in (["--batch_size", "0"], ["--min_match_fraction", "1.5"]):
        with pytest.raises(SystemExit) as e:
            cli_main(base + extra)
        assert e.value.code == 2


@pytest.mark.slow
def test_non_finite_logits_are_refused(backend, fmnist_dataset, fmnist_experiment):
    # Before the fix argmax(NaN logits) = 0 counted every class-0 example as correct.
    from heldout.evaluate import NonFiniteLogitsError

    evaluator = backend.evaluator  # the model as it is, without the restore's weight check
    evaluator.restore(fmnist_experiment / "0.5" / "0")
    bias = [v for v in evaluator.model.variables if v.name.endswith("b:0")][-1]
    bias.assign(np.full(bias.shape, np.nan, np.float32))
    with pytest.raises(NonFiniteLogitsError, match=r"run 0.5/0: non-finite logits .* 500 of "
                                                    r"500 test examples \(first at index 0\)"):
        evaluator.predict(fmnist_dataset, "test", progress=False, source="run 0.5/0")
    evaluator.restore(fmnist_experiment / "0.5" / "0")  # Leave the shared model as it was.
