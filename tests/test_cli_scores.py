"""`heldout estimate`, `cscores`, `pairs` on the fmnist32 reference runs and synthetic runs."""

from __future__ import annotations

import os
import pathlib
import re
import warnings

import numpy as np
import pytest
from idx_helpers import write_idx

from heldout import estimate as est
from heldout import published as pub
from heldout.cli import main
from heldout.data.fingerprint import KEYS as FINGERPRINT_KEYS
from heldout.data.fingerprint import fingerprint_from_labels, read_fingerprint
from heldout.experiment import make_aux_arrays, open_experiment, write_aux_arrays
from heldout.npzio import load_npz, save_npz_atomic

SHARED = pathlib.Path(__file__).resolve().parent / "data"
ESTIMATE_KEYS = [
    "count_in",
    "count_out",
    "memorization",
    "memorization_stderr",
    "num_runs",
    "subset_ratio",
    "test_correct_total",
]
F32 = 4 * float(np.finfo(np.float32).eps)


@pytest.fixture(scope="module")
def fmnist() -> pathlib.Path:
    path = SHARED / "reference" / "fmnist32"
    assert path.is_dir(), f"{path} is missing: see tests/data/README.md"
    return path


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def matrices(experiment_dir, ratio):
    """M, C, T of the runs at one ratio, straight from their aux arrays (dataset order)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # stray entries are the CLI tests' business
        runs = open_experiment(experiment_dir).runs(ratio)
    aux = [run.load_aux() for run in runs]
    masks = np.array([a.subset_mask() for a in aux])
    return (
        masks,
        np.array([a.train_correctness() for a in aux]),
        np.array([a.test_correctness() for a in aux]),
    )


def direct(masks, correct, test_correct):
    """Memorization and influence by their definitions, one training example at a time."""
    n_train = masks.shape[1]
    mem = np.full(n_train, np.nan)
    infl = np.full((test_correct.shape[1], n_train), np.nan)
    for i in range(n_train):
        inn, out = masks[:, i], ~masks[:, i]
        if inn.any() and out.any():
            mem[i] = correct[inn, i].mean() - correct[out, i].mean()
            infl[:, i] = test_correct[inn].mean(0) - test_correct[out].mean(0)
    return mem, infl


def direct_cscores(experiment_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ratios = open_experiment(experiment_dir).ratios
    per = []
    for ratio in ratios:
        masks, correct, _ = matrices(experiment_dir, ratio)
        out = (~masks).sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            per.append(np.where(out > 0, (correct & ~masks).sum(0) / out, np.nan))
    per = np.array(per)
    defined = (~np.isnan(per)).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(defined > 0, np.nansum(per, axis=0) / defined, np.nan), per


# --------------------------------------------------------------------------------------------
# The fmnist32 reference experiment (runs 0.5/0, 0.5/7, 0.25/3).


def test_estimate_full_on_fmnist(fmnist, tmp_path, capsys):
    experiment = fmnist / "fmnist32-inception"
    status, out, err = run_cli(
        capsys, "estimate", experiment, "--ratio", "0.5", "--out", tmp_path / "est.npz"
    )
    assert status == 0, err
    assert "2 runs at subset ratio 0.5" in out and "reading runs" in err  # progress bar
    # torch is installed (a test extra), so --backend auto forms exact int32 counts with it.
    assert "influence float32 [500, 2000] by torch-int8-cpu" in out
    assert "influence by torch-int8-cpu" in err  # the progress bar names it too
    arrays = load_npz(tmp_path / "est.npz")
    assert sorted(arrays) == sorted(ESTIMATE_KEYS + ["influence", "cooccurrence_backend"])
    assert str(arrays["cooccurrence_backend"]) == "torch-int8-cpu"
    status, out, err = run_cli(capsys, "estimate", experiment, "--ratio", "0.5", "--out",
                               tmp_path / "numpy.npz", "--backend", "numpy")
    assert status == 0 and "by numpy-float32" in out, err
    numpy = load_npz(tmp_path / "numpy.npz")
    assert str(numpy["cooccurrence_backend"]) == "numpy-float32"
    assert numpy["influence"].tobytes() == arrays["influence"].tobytes()  # bit for bit
    os.remove(tmp_path / "numpy.npz")
    masks, correct, test_correct = matrices(experiment, "0.5")
    mem, infl = direct(masks, correct, test_correct)
    np.testing.assert_allclose(arrays["memorization"], mem, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(np.isnan(arrays["memorization"]), np.isnan(mem))
    assert arrays["influence"].dtype == np.float32 and arrays["influence"].shape == (500, 2000)
    np.testing.assert_allclose(arrays["influence"], infl, rtol=0, atol=F32)
    np.testing.assert_array_equal(np.isnan(arrays["influence"]), np.isnan(infl))
    np.testing.assert_array_equal(arrays["count_in"], masks.sum(0))
    np.testing.assert_array_equal(arrays["count_out"], 2 - masks.sum(0))
    assert int(arrays["num_runs"]) == 2 and float(arrays["subset_ratio"]) == 0.5
    # With two runs an example is defined only when exactly one run held it out.
    np.testing.assert_array_equal(~np.isnan(mem), masks.sum(0) == 1)
    assert os.listdir(tmp_path) == ["est.npz"]  # written atomically, no leftovers


def test_estimate_topk_and_none_on_fmnist(fmnist, tmp_path, capsys):
    experiment = fmnist / "fmnist32-inception"
    full = est.estimate(est.accumulate_runs(open_experiment(experiment).runs("0.5")))
    status, _, err = run_cli(
        capsys, "estimate", experiment, "--ratio", "0.5", "--influence", "topk", "--top_k", "7",
        "--out", tmp_path / "topk.npz",
    )  # fmt: skip
    assert status == 0, err
    arrays = load_npz(tmp_path / "topk.npz")
    assert sorted(arrays) == sorted(
        ESTIMATE_KEYS + ["topk_index", "topk_influence", "cooccurrence_backend"])
    assert arrays["topk_index"].shape == (500, 7) and arrays["topk_index"].dtype == np.int64
    # The top-k values are the k largest of each row of the full matrix.
    want = -np.sort(-np.nan_to_num(full.influence, nan=-np.inf), axis=1)[:, :7]
    np.testing.assert_array_equal(arrays["topk_influence"], want)
    np.testing.assert_array_equal(
        np.take_along_axis(full.influence, arrays["topk_index"], axis=1), want
    )
    status, _, err = run_cli(
        capsys, "estimate", experiment, "--ratio", "0.25", "--influence", "none",
        "--out", tmp_path / "none.npz",
    )  # fmt: skip
    assert status == 0, err
    arrays = load_npz(tmp_path / "none.npz")
    assert sorted(arrays) == ESTIMATE_KEYS
    assert np.isnan(arrays["memorization"]).all()  # one run: every example in or out of all
    assert float(arrays["subset_ratio"]) == 0.25 and int(arrays["num_runs"]) == 1


def test_cscores_on_fmnist(fmnist, tmp_path, capsys):
    experiment = fmnist / "fmnist32-inception"
    status, out, err = run_cli(
        capsys, "cscores", experiment, "--dataset_npz", fmnist / "dataset.npz",
        "--out", tmp_path / "cs.npz",
    )  # fmt: skip
    assert status == 0, err
    assert "0.25: 1 runs, 0.5: 2 runs" in out
    arrays = load_npz(tmp_path / "cs.npz")
    for key in ("scores", "scores_stderr", "scores_by_ratio", "ratios", "num_runs_by_ratio"):
        assert key in arrays
    np.testing.assert_array_equal(
        arrays["labels"], load_npz(fmnist / "dataset.npz")["train__label"]
    )
    np.testing.assert_array_equal(arrays["ratios"], [0.25, 0.5])
    np.testing.assert_array_equal(arrays["num_runs_by_ratio"], [1, 2])
    assert arrays["scores_by_ratio"].shape == (2, 2000)
    want, per = direct_cscores(experiment)
    np.testing.assert_allclose(arrays["scores_by_ratio"], per, atol=1e-12)
    np.testing.assert_allclose(arrays["scores"], want, atol=1e-12)
    np.testing.assert_array_equal(np.isnan(arrays["scores"]), np.isnan(want))
    assert np.isnan(want).sum() > 0  # examples in run 0.25/3 and both 0.5 runs
    pub.read_cscores(tmp_path / "cs.npz", num_examples=2000, num_classes=10)  # published format
    # Without a dataset: no labels; --ratios selects.
    status, _, err = run_cli(
        capsys, "cscores", experiment, "--ratios", "0.5", "--out", tmp_path / "cs05.npz"
    )
    assert status == 0, err
    arrays05 = load_npz(tmp_path / "cs05.npz")
    assert "labels" not in arrays05
    np.testing.assert_array_equal(arrays05["scores"], per[1])


def test_pairs_on_fmnist(fmnist, tmp_path, capsys):
    experiment = fmnist / "fmnist32-inception"
    dataset = load_npz(fmnist / "dataset.npz")
    for kind, extra in (("full", []), ("topk", ["--top_k", "2000"]), ("topk", ["--top_k", "3"])):
        name = f"{kind}{''.join(extra[1:])}"
        status, _, err = run_cli(
            capsys, "estimate", experiment, "--ratio", "0.5", "--influence", kind, *extra,
            "--out", tmp_path / f"{name}.npz",
        )  # fmt: skip
        assert status == 0, err
    status, out, err = run_cli(
        capsys, "pairs", tmp_path / "full.npz", "--dataset_npz", fmnist / "dataset.npz",
        "--out", tmp_path / "pairs.npz",
    )  # fmt: skip
    assert status == 0, err
    pairs = pub.read_pairs(tmp_path / "pairs.npz", 2000, 500, 0.15, 0.25)
    masks, correct, test_correct = matrices(experiment, "0.5")
    mem, infl = direct(masks, correct, test_correct)
    y_train, y_test = dataset["train__label"], dataset["test__label"]
    # The count, the rule, and the pairs expected by chance at 2 runs (no true influence).
    noise = est.expected_noise_pairs(masks.sum(0), (~masks).sum(0), test_correct.sum(0), 2, mem,
                                     y_train, y_test)
    assert noise > 0.5 * len(pairs)
    assert (f"{len(pairs)} high-influence pairs (influence >= 0.15, memorization of the "
            f"training example >= 0.25, same label); {noise:.1f} expected by chance alone at 2 "
            "runs (if no example influenced any other): most of them may be noise; over ") in out
    arrays = load_npz(tmp_path / "full.npz")
    np.testing.assert_array_equal(arrays["test_correct_total"], test_correct.sum(0))
    # An estimate written before test_correct_total was recorded: an upper bound (p_j = 1/2).
    del arrays["test_correct_total"]
    save_npz_atomic(tmp_path / "old.npz", arrays)
    status, out, err = run_cli(capsys, "pairs", tmp_path / "old.npz", "--dataset_npz",
                               fmnist / "dataset.npz", "--out", tmp_path / "old_pairs.npz")
    bound = est.expected_noise_pairs(masks.sum(0), (~masks).sum(0), None, 2, mem, y_train,
                                     y_test)
    assert status == 0 and f"; at most {bound:.1f} expected by chance alone at 2 runs" in out
    want = {
        (i, j)
        for i, j in zip(*np.nonzero(infl.T >= 0.15), strict=True)
        if mem[i] >= 0.25 and y_train[i] == y_test[j]
    }
    assert len(want) > 100
    assert set(zip(pairs.tr_idx.tolist(), pairs.tt_idx.tolist(), strict=True)) == want
    np.testing.assert_allclose(pairs.infl, infl[pairs.tt_idx, pairs.tr_idx], atol=F32)
    # From top-k lists long enough to hold every pair: the same file.
    status, _, err = run_cli(
        capsys, "pairs", tmp_path / "topk2000.npz", "--dataset_npz", fmnist / "dataset.npz",
        "--out", tmp_path / "pairs_topk.npz",
    )  # fmt: skip
    assert status == 0, err
    again = pub.read_pairs(tmp_path / "pairs_topk.npz")
    for key in pub.PAIR_KEYS:
        np.testing.assert_array_equal(getattr(again, key), getattr(pairs, key))
    # Too short: refused, nothing written.
    status, _, err = run_cli(
        capsys, "pairs", tmp_path / "topk3.npz", "--dataset_npz", fmnist / "dataset.npz",
        "--out", tmp_path / "short.npz",
    )  # fmt: skip
    assert status == 2 and "larger top-k" in err and "topk3.npz" in err
    assert not (tmp_path / "short.npz").exists()
    # Thresholds are options (with two runs influence and memorization are -1, 0 or 1).
    status, out, err = run_cli(
        capsys, "pairs", tmp_path / "full.npz", "--dataset_npz", fmnist / "dataset.npz",
        "--mem_threshold", "1.5", "--out", tmp_path / "none.npz",
    )  # fmt: skip
    assert status == 0 and "0 high-influence pairs" in out, err
    assert len(pub.read_pairs(tmp_path / "none.npz")) == 0


# --------------------------------------------------------------------------------------------
# A synthetic experiment of aux arrays (no checkpoints), with stray entries.


@pytest.fixture()
def synthetic(tmp_path):
    rng = np.random.default_rng(3)
    n_train, n_test = 300, 40
    root = tmp_path / "experiment"
    data = {}
    for ratio, run_ids in (("0.3", [2, 5, 11, 12]), ("0.7", [0, 1, 3, 4, 8, 9])):
        masks = rng.random((len(run_ids), n_train)) < float(ratio)
        correct = rng.random((len(run_ids), n_train)) < 0.4 + 0.4 * masks
        test_correct = rng.random((len(run_ids), n_test)) < 0.6
        data[ratio] = masks, correct, test_correct
        for r, run_id in enumerate(run_ids):
            (root / ratio / str(run_id)).mkdir(parents=True)
            aux = make_aux_arrays(np.flatnonzero(masks[r]), correct[r], test_correct[r])
            write_aux_arrays(root / ratio / str(run_id) / "aux_arrays.npz", aux)
    (root / "0.7" / ".13.tmp").mkdir()  # an unfinished run: not counted
    (root / "0.7" / "14").mkdir()  # no aux arrays: not counted
    labels = {"train": rng.integers(0, 3, n_train), "test": rng.integers(0, 3, n_test)}
    np.savez(
        tmp_path / "dataset.npz",
        train__image=np.zeros((n_train, 1, 1, 1), np.uint8),
        train__label=labels["train"],
        test__image=np.zeros((n_test, 1, 1, 1), np.uint8),
        test__label=labels["test"],
    )
    return root, data, labels, tmp_path / "dataset.npz"


def test_commands_on_synthetic_experiment(synthetic, tmp_path, capsys):
    root, data, labels, dataset = synthetic
    out_dir = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # skipped entries are reported, not warned about
        status, out, err = run_cli(
            capsys, "estimate", root, "--ratio", "0.7", "--out", out_dir / "est.npz"
        )
    assert status == 0, err
    assert err.count("skipped 2 entries of ") == 1, err
    masks, correct, test_correct = data["0.7"]
    mem, infl = direct(masks, correct, test_correct)
    arrays = load_npz(out_dir / "est.npz")
    assert int(arrays["num_runs"]) == 6
    np.testing.assert_allclose(arrays["memorization"], mem, atol=1e-12)
    np.testing.assert_allclose(arrays["influence"], infl, atol=F32)
    np.testing.assert_array_equal(np.isnan(arrays["influence"]), np.isnan(infl))
    assert np.isnan(mem).any()  # some examples in all six runs at 0.7

    status, _, err = run_cli(
        capsys, "cscores", root, "--dataset_npz", dataset, "--out", out_dir / "cs.npz"
    )
    assert status == 0 and "skipped 2 entries of " in err, err
    cs = pub.read_cscores(out_dir / "cs.npz", num_examples=300, num_classes=3)
    want, _ = direct_cscores(root)
    np.testing.assert_allclose(cs.scores, want, atol=1e-12)
    np.testing.assert_array_equal(cs.labels, labels["train"])
    np.testing.assert_array_equal(cs.extra["num_runs_by_ratio"], [4, 6])

    status, _, err = run_cli(
        capsys, "pairs", out_dir / "est.npz", "--dataset_npz", dataset,
        "--infl_threshold", "0.3", "--mem_threshold", "0.2", "--out", out_dir / "pairs.npz",
    )  # fmt: skip
    assert status == 0, err
    pairs = pub.read_pairs(out_dir / "pairs.npz", 300, 40, 0.3, 0.2)
    want_pairs = {
        (i, j)
        for i, j in zip(*np.nonzero(infl.T >= 0.3), strict=True)
        if mem[i] >= 0.2 and labels["train"][i] == labels["test"][j]
    }
    assert len(want_pairs) > 5
    assert set(zip(pairs.tr_idx.tolist(), pairs.tt_idx.tolist(), strict=True)) == want_pairs
    assert sorted(os.listdir(out_dir)) == ["cs.npz", "est.npz", "pairs.npz"]


def test_cuda_asked_for_and_absent_is_one_line_before_any_run_is_read(
        synthetic, tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # also on a GPU machine
    root = synthetic[0]
    for extra, message in ((["--device", "cuda"], r"device 'cuda': PyTorch \S+ sees no CUDA "
                                                  r"device \([^)]*\); use device 'cpu'\n"),
                           (["--device", "cuda", "--backend", "numpy"],
                            "device 'cuda' needs the torch backend")):
        status, out, err = run_cli(capsys, "estimate", root, "--ratio", "0.3", "--out",
                                   tmp_path / "out" / "est.npz", *extra)
        assert status == 2 and re.search(message, err) and err.count("\n") == 1, err
        assert err.startswith("heldout estimate: error: ") and "reading runs" not in err
    assert not (tmp_path / "out").exists()


def test_user_errors_exit_2_with_a_message(synthetic, tmp_path, capsys):
    root, _, _, dataset = synthetic
    out = tmp_path / "never.npz"
    cases = [
        (["estimate", root, "--out", out], "has subset ratios ['0.3', '0.7']; choose one"),
        (["estimate", root, "--ratio", "0.5", "--out", out], "no subset ratio '0.5'"),
        (["estimate", root, "--ratio", "0.3", "--top_k", "3", "--out", out], "--top_k applies"),
        (["estimate", tmp_path / "nowhere", "--out", out], "experiment directory not found"),
        (["cscores", root, "--ratios", "0.9", "--out", out], "no subset ratio '0.9'"),
        (["pairs", tmp_path / "missing.npz", "--dataset_npz", dataset, "--out", out], "no such"),
    ]
    for argv, message in cases:
        status, _, err = run_cli(capsys, *argv)
        assert status == 2 and message in err, (argv, err)
        assert f"heldout {argv[0]}: error: " in err
    run_cli(capsys, "estimate", root, "--ratio", "0.3", "--influence", "none",
            "--out", tmp_path / "none.npz")  # fmt: skip
    status, _, err = run_cli(
        capsys, "pairs", tmp_path / "none.npz", "--dataset_npz", dataset, "--out", out
    )
    assert status == 2 and "holds no influence" in err
    # Labels of another dataset size are refused.
    np.savez(
        tmp_path / "small.npz",
        train__image=np.zeros((5, 1, 1, 1), np.uint8),
        train__label=np.zeros(5, np.int64),
        test__image=np.zeros((5, 1, 1, 1), np.uint8),
        test__label=np.zeros(5, np.int64),
    )
    status, _, err = run_cli(
        capsys, "cscores", root, "--dataset_npz", tmp_path / "small.npz", "--out", out
    )
    assert status == 2 and "the train split has 5 labels but the scores cover 300" in err
    assert not out.exists()


# --------------------------------------------------------------------------------------------
# Dataset fingerprints: runs written by `heldout train` carry one; outputs keep it and the
# labels given to `pairs` / `cscores` are checked against it.


def write_datasets(directory, labels):
    """The same labels as `.npz` and as an IDX directory."""
    directory.mkdir()
    np.savez(
        directory / "dataset.npz",
        **{f"{s}__image": np.zeros((len(y), 1, 1, 1), np.uint8) for s, y in labels.items()},
        **{f"{s}__label": y for s, y in labels.items()},
    )
    for split, prefix in (("train", "train"), ("test", "t10k")):
        write_idx(directory / f"{prefix}-images-idx3-ubyte",
                  np.zeros((len(labels[split]), 1, 1), np.uint8))
        write_idx(directory / f"{prefix}-labels-idx1-ubyte", np.asarray(labels[split], np.uint8))
    return directory / "dataset.npz", directory


@pytest.fixture()
def fingerprinted(tmp_path):
    rng = np.random.default_rng(5)
    n_train, n_test = 200, 30
    labels = {"train": rng.integers(0, 3, n_train), "test": rng.integers(0, 3, n_test)}
    fp = fingerprint_from_labels("synthetic", labels)
    root = tmp_path / "experiment"
    for ratio, run_ids in (("0.3", [0, 1, 2]), ("0.7", [3, 4, 5, 6])):
        masks = rng.random((len(run_ids), n_train)) < float(ratio)
        correct = rng.random((len(run_ids), n_train)) < 0.3 + 0.6 * masks
        test_correct = rng.random((len(run_ids), n_test)) < 0.6
        for r, run_id in enumerate(run_ids):
            (root / ratio / str(run_id)).mkdir(parents=True)
            aux = make_aux_arrays(np.flatnonzero(masks[r]), correct[r], test_correct[r], fp)
            write_aux_arrays(root / ratio / str(run_id) / "aux_arrays.npz", aux)
    datasets = {"right": write_datasets(tmp_path / "right", labels)}
    for split in ("train", "test"):  # the same labels, one split in another order
        moved = dict(labels)
        moved[split] = labels[split][rng.permutation(len(labels[split]))]
        assert (moved[split] != labels[split]).any()
        datasets[split] = write_datasets(tmp_path / f"moved_{split}", moved)
    return root, fp, labels, datasets


def test_fingerprint_is_written_and_labels_in_another_order_are_refused(
    fingerprinted, tmp_path, capsys
):
    root, fp, labels, datasets = fingerprinted
    status, out, err = run_cli(
        capsys, "estimate", root, "--ratio", "0.7", "--out", tmp_path / "est.npz"
    )
    assert status == 0, err
    assert "dataset synthetic (test 30" in out
    arrays = load_npz(tmp_path / "est.npz")
    assert set(FINGERPRINT_KEYS) <= set(arrays)
    assert read_fingerprint(arrays) == fp
    assert est.load_estimate(tmp_path / "est.npz").fingerprint == fp

    # pairs: labels in another order (either split, from .npz or IDX) are refused.
    for split in ("train", "test"):
        npz, idx_dir = datasets[split]
        for flag, path in (("--dataset_npz", npz), ("--idx_dir", idx_dir)):
            status, _, err = run_cli(
                capsys, "pairs", tmp_path / "est.npz", flag, path,
                "--out", tmp_path / "pairs.npz",
            )  # fmt: skip
            assert status == 2, (flag, split, err)
            assert "heldout pairs: error: " in err and "est.npz and the labels of" in err
            assert f"split {split!r} labels differ" in err and "another order?" in err
            assert not (tmp_path / "pairs.npz").exists()
    # ... and the right ones work, writing the published keys only.
    estimate = est.load_estimate(tmp_path / "est.npz")
    want = est.select_high_influence_pairs(
        estimate.influence, estimate.memorization, labels["train"], labels["test"], 0.2, 0.2
    )
    assert len(want) > 5
    for flag, path in zip(("--dataset_npz", "--idx_dir"), datasets["right"], strict=True):
        status, _, err = run_cli(
            capsys, "pairs", tmp_path / "est.npz", flag, path, "--infl_threshold", "0.2",
            "--mem_threshold", "0.2", "--out", tmp_path / f"pairs{flag}.npz",
        )  # fmt: skip
        assert status == 0, err
        arrays = load_npz(tmp_path / f"pairs{flag}.npz")
        assert sorted(arrays) == sorted(pub.PAIR_KEYS)
        for key in pub.PAIR_KEYS:
            np.testing.assert_array_equal(arrays[key], getattr(want, key), err_msg=key)

    # cscores: the fingerprint is written; the train labels are checked (test labels not read).
    for flag, path in zip(("--dataset_npz", "--idx_dir"), datasets["right"], strict=True):
        status, _, err = run_cli(capsys, "cscores", root, flag, path, "--out", tmp_path / "cs.npz")
        assert status == 0, err
        arrays = load_npz(tmp_path / "cs.npz")
        assert read_fingerprint(arrays) == fp
        np.testing.assert_array_equal(arrays["labels"], labels["train"])
        pub.read_cscores(tmp_path / "cs.npz", num_examples=200, num_classes=3)
    status, _, err = run_cli(capsys, "cscores", root, "--out", tmp_path / "cs_nolabels.npz")
    assert status == 0, err
    assert read_fingerprint(load_npz(tmp_path / "cs_nolabels.npz")) == fp
    for flag, path in zip(("--dataset_npz", "--idx_dir"), datasets["train"], strict=True):
        status, _, err = run_cli(capsys, "cscores", root, flag, path, "--out", tmp_path / "x.npz")
        assert status == 2 and "split 'train' labels differ" in err, err
        assert "the runs in" in err
    status, _, err = run_cli(
        capsys, "cscores", root, "--idx_dir", datasets["test"][1], "--out", tmp_path / "x.npz"
    )
    assert status == 0, err


def test_runs_of_another_order_are_refused(fingerprinted, tmp_path, capsys):
    root, fp, labels, _ = fingerprinted
    moved = dict(labels, train=labels["train"][::-1])
    aux = make_aux_arrays(
        np.arange(50), np.ones(200, bool), np.ones(30, bool),
        fingerprint_from_labels("synthetic", moved),
    )  # fmt: skip
    (root / "0.3" / "9").mkdir()
    write_aux_arrays(root / "0.3" / "9" / "aux_arrays.npz", aux)
    status, _, err = run_cli(
        capsys, "estimate", root, "--ratio", "0.3", "--out", tmp_path / "est.npz"
    )
    assert status == 2 and "heldout estimate: error: " in err
    assert "0.3/0 (" in err and ") and 0.3/9 (" in err and "another order?" in err
    status, _, err = run_cli(capsys, "cscores", root, "--out", tmp_path / "cs.npz")
    assert status == 2 and "0.3/9/aux_arrays.npz" in err, err
    assert not (tmp_path / "est.npz").exists() and not (tmp_path / "cs.npz").exists()
    # Counted at their own ratio only, the other runs still combine.
    status, _, err = run_cli(
        capsys, "cscores", root, "--ratios", "0.7", "--out", tmp_path / "cs.npz"
    )
    assert status == 0, err
