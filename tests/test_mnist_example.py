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


def test_influence_stderr_rows_is_the_binomial_stderr(example):
    """The figure's standard errors, from a few rows of influence and the counts, equal
    `heldout.estimate.influence_stderr` (which builds the whole matrix)."""
    from heldout import estimate

    rng = np.random.default_rng(4)
    masks = rng.random((40, 60)) < 0.7
    masks[:, 0] = True  # in every run: undefined
    acc = estimate.accumulate(masks, rng.random((40, 60)) < 0.8, rng.random((40, 9)) < 0.6)
    influence, want = estimate.influence(acc), estimate.influence_stderr(acc)
    rows = np.array([0, 3, 8])
    got = example.influence_stderr_rows(influence[rows], acc.test_correct_total[rows],
                                        acc.count_in, acc.count_out)
    np.testing.assert_allclose(got, want[rows], atol=2e-6)
    assert np.isnan(got[:, 0]).all() and not np.isnan(got[:, 1:]).any()
    assert example.is_significant(0.3, 0.07) and not example.is_significant(0.29, 0.07)
    assert not example.is_significant(np.nan, 0.01)


def test_figures_state_their_noise(example, tmp_path):
    """The influence figure marks influencers whose influence - 2 stderr is below 0.15 and
    states the rule and the number of runs; the histogram fits its range to the data, counts
    the runs and examples in its title and the undefined examples in its caption. Both are
    written atomically (no temporary file left)."""
    from heldout.data import ArrayDataset

    rng = np.random.default_rng(0)
    images = {s: rng.integers(0, 255, (n, 4, 4, 1), dtype=np.uint8)
              for s, n in (("train", 12), ("test", 3))}
    labels = {"train": np.arange(12) % 3, "test": np.arange(3)}
    dataset = ArrayDataset("toy", 3, images, labels)
    influence = np.zeros((3, 12), np.float32)
    influence[0, [3, 6, 9, 0]] = [0.80, 0.40, 0.17, 0.16]
    stderr = np.full((3, 12), 0.05)
    stderr[0, 6] = 0.2  # 0.40 - 0.40 < 0.15: not significant
    drawn = example.plot_influence(dataset, influence, lambda tests: stderr[tests], 1,
                                   str(tmp_path / "infl"), num_runs=400, subset_ratio=0.7)
    assert [(p["train"], p["significant"]) for p in drawn["panels"]] == [
        (3, True), (6, False), (9, False), (0, False)]
    assert drawn["panels"][0]["stderr"] == 0.05
    assert drawn["panels"][0]["influence"] == pytest.approx(0.8)
    assert drawn["caption"].startswith("400 runs at subset ratio 0.7.")
    assert "influence \u2212 2\u00b7stderr \u2265 0.15" in drawn["caption"]
    mem = np.concatenate([np.linspace(-0.05, 0.85, 97), [np.nan] * 3])
    hist = example.plot_memorization(mem, np.zeros(0, np.int64), str(tmp_path / "hist"),
                                     num_runs=400, subset_ratio=0.7)
    low, high = hist["xlim"]
    assert -0.1 < low < -0.05 and 0.85 < high < 0.9
    assert hist["title"] == ("Memorization of 100 training examples, 400 runs at subset "
                             "ratio 0.7")
    assert "3 undefined (NaN" in hist["caption"] and "97 examples shown" in hist["caption"]
    assert sorted(os.listdir(tmp_path)) == ["hist.pdf", "hist.png", "infl.pdf", "infl.png"]
