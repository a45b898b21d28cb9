"""mnist-example/mnist_infl_mem.py end to end: runs, estimates, figures, verification, AUC."""

import importlib.util
import os
import re

import numpy as np
import pytest

from heldout.cli import main as heldout_main
from heldout.experiment import open_experiment
from heldout.npzio import load_npz

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def example():
    path = os.path.join(REPO, "mnist-example", "mnist_infl_mem.py")
    spec = importlib.util.spec_from_file_location("mnist_infl_mem", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_roc_auc_is_the_pairwise_probability(example):
    rng = np.random.default_rng(0)
    scores = np.round(rng.random(300), 1)  # Many ties.
    positive = rng.random(300) < 0.2 + 0.5 * scores
    pos, neg = scores[positive], scores[~positive]
    pairwise = np.mean((pos[:, None] > neg[None]) + 0.5 * (pos[:, None] == neg[None]))
    assert example.roc_auc(scores, positive) == pytest.approx(pairwise)
    assert example.roc_auc(np.arange(4.0), np.array([0, 0, 1, 1], bool)) == 1.0
    with_nan = np.append(scores, np.nan)
    assert example.roc_auc(with_nan, np.append(positive, True)) == pytest.approx(pairwise)


def _direct_estimates(runs):
    """Memorization and influence straight from the definitions (Feldman & Zhang 2020)."""
    auxes = [r.load_aux() for r in runs]
    m = np.stack([a.subset_mask() for a in auxes]).astype(float)
    c = np.stack([a.train_correctness() for a in auxes]).astype(float)
    t = np.stack([a.test_correctness() for a in auxes]).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mem = (m * c).sum(0) / m.sum(0) - ((1 - m) * c).sum(0) / (1 - m).sum(0)
        infl = (t.T @ m) / m.sum(0) - (t.T @ (1 - m)) / (1 - m).sum(0)
    return mem, infl


@pytest.mark.slow
def test_digits_pipeline_end_to_end(example, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--num_runs=6", "--epochs=2", f"--output_dir={out}", "--checkpoint_every=4",
            "--figure_rows=2", "--label_noise=0.05"]
    assert example.main(args) == 0
    printed = capsys.readouterr().out
    assert "trained 6 runs" in printed and "ROC AUC" in printed
    for name in ("infl_mem.npz", "infl_mem.pdf", "infl_mem.png", "memorization_hist.pdf",
                 "memorization_hist.png", "dataset.npz"):
        assert (out / name).stat().st_size > 1000, name
    assert (out / "infl_mem.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "infl_mem.pdf").read_bytes()[:5] == b"%PDF-"
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # No temporaries.
    arrays = load_npz(out / "infl_mem.npz")
    assert arrays["memorization"].shape == (1297,) and arrays["influence"].shape == (500, 1297)
    assert arrays["influence"].dtype == np.float32 and int(arrays["num_runs"]) == 6
    flipped = arrays["label_noise_index"]
    assert len(flipped) == round(0.05 * 1297)
    from heldout.data.digits import load_digits

    clean = load_digits().split_labels("train")
    assert np.all(arrays["train_labels"][flipped] != clean[flipped])
    assert np.sum(arrays["train_labels"] != clean) == len(flipped)
    runs = open_experiment(out / "experiment").runs()
    assert [r.run_id for r in runs] == list(range(6))
    assert [r.has_checkpoint() for r in runs] == [True, False, False, False, True, False]
    mem, infl = _direct_estimates(runs)
    np.testing.assert_allclose(arrays["memorization"], mem, atol=1e-12)
    np.testing.assert_allclose(arrays["influence"], infl, atol=1e-6)

    # One rule for the pairs: the script, `heldout pairs` and the report count the same ones.
    count, rule = re.search(r"^(\d+) high-influence pairs \(([^)]*)\); \d+\.\d expected by "
                            r"chance alone at 6 runs", printed, re.M).groups()
    assert rule == "influence >= 0.15, memorization of the training example >= 0.25, same label"
    est_npz = str(tmp_path / "e.npz")
    assert heldout_main(["estimate", str(out / "experiment"), "--out", est_npz]) == 0
    assert heldout_main(["pairs", est_npz, "--dataset_npz", str(out / "dataset.npz"), "--out",
                         str(tmp_path / "pairs.npz")]) == 0
    assert f": {count} high-influence pairs ({rule})" in capsys.readouterr().out
    assert f"{count} high-influence pairs (" in (out / "report.html").read_text()

    # The printed command verifies a run with all predictions matching.
    command = re.search(r"verify a run: heldout (verify .*)", printed).group(1).split()
    assert command[1] == runs[0].path
    assert "--arch" not in command  # `heldout verify` picks the MLP for 8x8x1 digits.
    for split in ("test", "train"):
        assert heldout_main([*command, "--split", split]) == 0
    assert "1297 out of 1297 predictions match" in capsys.readouterr().out

    # Resume: more runs reuse the complete ones.
    assert example.main([a if a != "--num_runs=6" else "--num_runs=8" for a in args]) == 0
    assert "trained 2 runs" in capsys.readouterr().out
    assert int(load_npz(out / "infl_mem.npz")["num_runs"]) == 8


def test_figures_are_written_atomically(example, tmp_path, monkeypatch):
    """A figure whose writing fails leaves the previous PDF and PNG whole and no temporary."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1, 1))
    fig.add_subplot().plot([0, 1])
    stem = str(tmp_path / "fig")
    example._save_figure(fig, stem)
    before = {ext: (tmp_path / f"fig.{ext}").read_bytes() for ext in ("pdf", "png")}
    assert before["pdf"][:5] == b"%PDF-" and before["png"][:4] == b"\x89PNG"

    def broken(fname, **kwargs):  # Starts writing, then fails (as a full disk would).
        with open(fname, "wb") as f:
            f.write(b"half")
        raise OSError("no space left on device")

    monkeypatch.setattr(fig, "savefig", broken)
    with pytest.raises(OSError, match="no space"):
        example._save_figure(fig, stem)
    assert sorted(os.listdir(tmp_path)) == ["fig.pdf", "fig.png"]
    assert {ext: (tmp_path / f"fig.{ext}").read_bytes() for ext in ("pdf", "png")} == before


def test_flags_are_checked(example, capsys):
    with pytest.raises(SystemExit):
        example.parse_args(["--label_noise=1.5"])
    assert "--label_noise must lie in [0, 1)" in capsys.readouterr().err
    args = example.parse_args([])
    assert (args.num_runs, args.subset_ratio, args.epochs, args.batch_size,
            args.learning_rate) == (2000, 0.7, 10, 128, 0.1)  # The original recipe.


@pytest.mark.slow
def test_fashion_mnist_label_noise_is_memorized(example, tmp_path, capsys, fmnist_idx_dir):
    """Real data (the fmnist32 fixture's Fashion-MNIST images as IDX files): with 2% of the
    2,000 training labels flipped and models that fit their subsets, memorization ranks the
    flipped examples high.

    A reduced configuration of the note's experiment (10,000 images, 1% noise, 100 runs):
    16 runs of 80 epochs at learning rate 0.05 (about a minute on 2 CPU cores)."""
    out = tmp_path / "fmnist"
    assert example.main([
        f"--idx_dir={fmnist_idx_dir}", "--train_size=2000", "--label_noise=0.02",
        "--epochs=80", "--learning_rate=0.05", "--num_runs=16", "--checkpoint_every=0",
        "--figure_rows=2", f"--output_dir={out}",
    ]) == 0
    printed = capsys.readouterr().out
    arrays = load_npz(out / "infl_mem.npz")
    flipped = np.zeros(2000, bool)
    flipped[arrays["label_noise_index"]] = True
    assert flipped.sum() == 40
    mem = arrays["memorization"]
    auc = example.roc_auc(mem, flipped)
    assert auc >= 0.9, printed
    assert np.nanmean(mem[flipped]) > 0.8 > 0.3 > np.nanmean(mem[~flipped])
    assert f"ROC AUC (flipped vs clean) {auc:.4f}" in printed


def _toy_estimate():
    """A dataset of 12 training and 3 test examples (labels 0, 1, 2 in turn) and the estimate
    of 40 runs where test example 0 copies training example 3's membership (influence 1, every
    run agreeing: standard error 0), test example 1 follows training example 6's in 70% of the
    runs, and the rest is noise."""
    from heldout import estimate
    from heldout.data import ArrayDataset

    rng = np.random.default_rng(0)
    images = {s: rng.integers(0, 255, (n, 4, 4, 1), dtype=np.uint8)
              for s, n in (("train", 12), ("test", 3))}
    labels = {"train": np.arange(12) % 3, "test": np.arange(3)}
    masks = rng.random((40, 12)) < 0.7
    test_correct = rng.random((40, 3)) < 0.6
    test_correct[:, 0] = masks[:, 3]
    test_correct[:, 1] = np.where(rng.random(40) < 0.7, masks[:, 6], test_correct[:, 1])
    acc = estimate.accumulate(masks, masks | (rng.random((40, 12)) < 0.5), test_correct,
                              subset_ratio=0.7)
    return ArrayDataset("toy", 3, images, labels), acc, estimate.estimate(acc, "full")


def test_figures_state_their_noise(example, tmp_path):
    """The influence figure gives each influencer its standard error (the counts where it
    would print as 0), marks those whose influence - 2 stderr is below 0.15 (the package's
    rule) and states the rule and the number of runs; the histogram fits its range to the
    data, counts the runs and examples in its title and the undefined examples in its
    caption. Both are written atomically (no temporary file left)."""
    from heldout import estimate

    dataset, acc, est = _toy_estimate()
    stderr = estimate.influence_stderr(acc)
    drawn = example.plot_influence(dataset, est, 2, str(tmp_path / "infl"))
    panels = drawn["panels"]
    assert len(panels) == 8 and {p["test"] for p in panels} == {0, 1}
    for p in panels:
        j, i = p["test"], p["train"]
        assert p["influence"] == pytest.approx(est.influence[j, i])
        assert p["stderr"] == pytest.approx(stderr[j, i], abs=1e-6)
        assert p["significant"] == (p["influence"] - 2 * p["stderr"] >= 0.15)
        assert p["title"].endswith(" n.s.") == (not p["significant"])
    first = panels[0]
    assert (first["test"], first["train"], first["influence"]) == (0, 3, 1.0)
    n_in = int(acc.count_in[3])
    assert first["title"] == f"label 0\n1.00 = {n_in}/{n_in} \u2212 0/{40 - n_in}"
    assert first["significant"]
    noisy = [p for p in panels if not p["significant"]]
    assert noisy and all(f"{p['influence']:.2f} \u00b1 {p['stderr']:.2f} n.s." in p["title"]
                         for p in noisy)
    assert drawn["caption"].startswith("40 runs at subset ratio 0.7.")
    assert "influence - 2 stderr >= 0.15" in drawn["caption"]
    mem = np.concatenate([np.linspace(-0.05, 0.85, 97), [np.nan] * 3])
    hist = example.plot_memorization(mem, np.zeros(0, np.int64), str(tmp_path / "hist"),
                                     num_runs=400, subset_ratio=0.7)
    low, high = hist["xlim"]
    assert -0.1 < low < -0.05 and 0.85 < high < 0.9
    assert hist["title"] == ("Memorization of 100 training examples, 400 runs at subset "
                             "ratio 0.7")
    assert "3 undefined (NaN" in hist["caption"] and "97 examples shown" in hist["caption"]
    assert sorted(os.listdir(tmp_path)) == ["hist.pdf", "hist.png", "infl.pdf", "infl.png"]


def test_printed_pairs_follow_the_rule_of_heldout_pairs(example):
    """The script counts high-influence pairs by the rule of `heldout pairs` and the report
    (not every influence >= 0.15), names the rule and says how many are expected by chance."""
    from heldout import estimate

    dataset, acc, est = _toy_estimate()
    y_train, y_test = dataset.split_labels("train"), dataset.split_labels("test")
    pairs = estimate.select_high_influence_pairs(est.influence, est.memorization, y_train,
                                                 y_test)
    noise = estimate.expected_noise_pairs(acc.count_in, acc.count_out, acc.test_correct_total,
                                          40, est.memorization, y_train, y_test)
    assert np.sum(est.influence >= 0.15) > len(pairs) > 0
    line = example.high_influence_pairs_line(est, dataset)
    assert line.startswith(f"{len(pairs)} high-influence pairs (influence >= 0.15, "
                           "memorization of the training example >= 0.25, same label); "
                           f"{noise:.1f} expected by chance alone at 40 runs")
    n_in = int(acc.count_in[3])
    assert example.describe_largest_influence(est) == (
        f"1.0000 = {n_in}/{n_in} \u2212 0/{40 - n_in} (training example 3 on test example 0)")
