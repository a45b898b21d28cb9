"""`heldout report` / `heldout plot` on an experiment trained here (digits, MLP, 2 ratios),
checked in headless Chromium, with the membership-inference section of a `heldout lira` file
and the LDS section of a `heldout lds --baselines` file; and the bad inputs: one run per ratio,
an estimate of other runs, a dataset of another size, a predictions store of another split."""

import html
import os
import re
import shutil

import numpy as np
import pytest
from predict_helpers import write_outputs_store

from heldout import estimate as est
from heldout.cli import main as heldout_main
from heldout.data.digits import load_digits
from heldout.data.npz import save_npz_dataset
from heldout.data.transforms import take_train
from heldout.experiment import open_experiment
from heldout.npzio import load_npz

# Every test here reads the experiment the module trains (`trained`, 40 MLP runs).
pytestmark = pytest.mark.slow

RATIOS = (0.5, 0.8)
RUNS_PER_RATIO = 20
SECTIONS = ("experiment", "memorization", "influence", "cscores", "label-problems",
            "membership", "lds")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """An experiment of 2 x 20 MLP runs on the digits, its dataset.npz, an estimate file at
    ratio 0.8, a predictions store of the train split and its `heldout lira` file, and the
    `heldout lds --baselines` file of a test-split store, shared by the tests."""
    from heldout.train import TrainConfig, train_experiment

    root = tmp_path_factory.mktemp("report")
    dataset = load_digits()
    save_npz_dataset(root / "dataset.npz", dataset)
    config = TrainConfig(arch="mlp", epochs=3, batch_size=64, checkpoint_every=0,
                         models_per_step=10)
    for ratio in RATIOS:
        train_experiment(root / "exp", dataset, ratio, range(RUNS_PER_RATIO), config,
                         progress=False)
    assert heldout_main(["estimate", str(root / "exp"), "--ratio", "0.8", "--influence", "topk",
                         "--top_k", "40", "--out", str(root / "est.npz")]) == 0
    _write_store(root / "pred.zarr", root / "exp", dataset.split_labels("train"))
    assert heldout_main(["lira", str(root / "pred.zarr"), "--out", str(root / "lira.npz")]) == 0
    runs = open_experiment(root / "exp").runs()
    masks = np.stack([r.load_aux().subset_mask() for r in runs])
    test_correct = np.stack([r.load_aux().test_correctness() for r in runs])
    rng = np.random.default_rng(3)
    margin = (masks @ rng.normal(0, 0.2, (masks.shape[1], test_correct.shape[1]))
              + np.where(test_correct, 2.0, -2.0) + rng.normal(0, 1, test_correct.shape))
    write_outputs_store(root / "test.zarr", [r.name for r in runs], masks,
                        dataset.split_labels("test"), test_correct, split="test", margin=margin)
    assert heldout_main(["lds", "--baselines", "--store", str(root / "test.zarr"), "--output",
                         "margin", "--fractions", "0.6,1", "--out", str(root / "lds.npz")]) == 0
    return root


def _write_store(path, experiment_dir, labels, split="train"):
    """A predictions store written by the store's own writer: the runs' subsets and
    correctness from their aux arrays; a wrong prediction is label + 1 (mod 10), so the
    majority held-out prediction is known; the logit confidence is higher where the run
    trained on the example (LiRA has something to find). Columns in reverse order."""
    runs = open_experiment(experiment_dir).runs()
    auxes = [r.load_aux() for r in runs]
    correct = np.stack([a.train_correctness() for a in auxes])
    masks = np.stack([a.subset_mask() for a in auxes])
    rng = np.random.default_rng(2)
    confidence = np.where(correct, 2.0, -2.0) + masks + rng.normal(0, 1, correct.shape)
    write_outputs_store(path, [r.name for r in runs], masks, labels, correct,
                        index=np.arange(len(labels))[::-1], split=split,
                        logit_confidence=confidence)


def _report(args, capsys):
    status = heldout_main(["report", *map(str, args)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_report_in_chromium(trained, tmp_path, capsys):
    from playwright.sync_api import sync_playwright

    out = tmp_path / "report.html"
    status, printed, err = _report(
        [trained / "exp", "--dataset_npz", trained / "dataset.npz", "--out", out,
         "--estimates", trained / "est.npz", "--predictions", trained / "pred.zarr",
         "--lira", trained / "lira.npz", "--lds_baselines", trained / "lds.npz"], capsys)
    assert status == 0, err
    assert f"{out}: " in printed and "memorization and influence at ratio 0.8" in printed
    assert f"membership inference from {trained / 'lira.npz'}" in printed
    assert f"LDS baselines from {trained / 'lds.npz'}" in printed
    text = out.read_text()
    assert len(text.encode()) < 2_000_000
    assert not re.search(r"(src|href)=['\"]?(https?:|//)", text)  # Nothing from the network.
    assert "<script" not in text
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # No temporaries.

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(out.as_uri())
        page.wait_for_load_state("load")
        images = page.evaluate("[...document.images].map(i => [i.complete, i.naturalWidth])")
        sections = page.evaluate("[...document.querySelectorAll('section')].map(s => s.id)")
        explained = page.evaluate(
            "[...document.querySelectorAll('section')].map(s => "
            "s.querySelector('p.explain').textContent)")
        top = page.evaluate(
            "(() => { const c = document.querySelector('#memorization-gallery .card');"
            " return [c.dataset, c.querySelector('figcaption').innerText]; })()")
        label_cards = page.evaluate("document.querySelectorAll('#label-gallery .card').length")
        influence_cards = page.evaluate(
            "[...document.querySelectorAll('#influence .card[data-influence]')].map(c => "
            "[{...c.dataset}, c.classList.contains('ns'), c.querySelector('figcaption')"
            ".innerText, getComputedStyle(c.querySelector('img')).opacity])")
        lira_rows, lds_rows = (page.evaluate(
            f"[...document.querySelectorAll('#{table} tr[{key}]')].map(r => "
            "[{...r.dataset}, [...r.cells].map(c => c.innerText)])")
            for table, key in (("lira-table", "data-variant"), ("lds-table", "data-method")))
        exposed = page.evaluate(
            "[...document.querySelectorAll('#exposure-gallery .card')].map(c => "
            "[{...c.dataset}, c.querySelector('figcaption').innerText])")
        figures = page.evaluate(
            "[...document.querySelectorAll('#membership img.figure, #lds img.figure')].map("
            "i => [i.alt, i.naturalWidth, i.getBoundingClientRect().width])")
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        for section in ("membership", "lds"):  # looked at when the sections change
            page.locator(f"section#{section}").screenshot(path=str(tmp_path / f"{section}.png"))
        browser.close()
    assert errors == []
    assert len(images) > 60 and all(done and width > 0 for done, width in images)
    assert sections == list(SECTIONS)
    assert all(len(e) > 80 and "=" in e for e in explained)  # Explanation and definition.
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The top memorized example's numbers are the estimate file's.
    arrays = load_npz(trained / "est.npz")
    mem = arrays["memorization"]
    i = int(np.flatnonzero(mem == np.nanmax(mem))[0])
    data, caption = top
    caption = caption.replace("\u00a0", " ")  # no-break spaces keep "0.41 ± 0.12" together
    assert int(data["index"]) == i
    assert int(data["label"]) == load_digits().split_labels("train")[i]
    assert float(data["memorization"]) == mem[i]
    assert float(data["stderr"]) == arrays["memorization_stderr"][i]
    assert (int(data["countIn"]), int(data["countOut"])) == (arrays["count_in"][i],
                                                            arrays["count_out"][i])
    se = arrays["memorization_stderr"][i]
    if round(se, 4) > 0:
        assert f"mem {mem[i]:.4f} ± {se:.4f}" in caption
    else:  # every run agreeing: the counts, never ± 0.0000
        assert f"mem {mem[i]:.4f} = " in caption and "± 0.0000" not in caption
    assert f"in {arrays['count_in'][i]} · out {arrays['count_out'][i]} runs" in caption
    assert label_cards == 32
    # The label most held-out runs predicted, with its count (a proportion of runs, as counts).
    shown = re.findall(r"predicted (\d) by (\d+) of (\d+)", html.unescape(text))
    assert len(shown) == 32 and all(int(k) <= int(n) for _, k, n in shown)

    # Every influence card gives its standard error (of the runs at 0.8) in its caption and in
    # data-influence-stderr; those not significant (influence - 2 stderr < 0.15) are faded.
    acc = est.accumulate_experiment(trained / "exp", ["0.8"])[0]
    stderr, infl = est.influence_stderr(acc), est.influence(acc)
    assert len(influence_cards) >= 12  # at 20 runs (about 4 holding each example out): n.s.
    for data, faded, caption, opacity in influence_cards:
        i, j = int(data["index"]), int(data["testIndex"])
        value, se = float(data["influence"]), float(data["influenceStderr"])
        assert value == pytest.approx(infl[j, i], abs=1e-6)
        assert se == pytest.approx(stderr[j, i], abs=1e-6)
        significant = value - 2 * se >= 0.15
        assert data["significant"] == str(significant).lower() and faded == (not significant)
        assert float(opacity) == (1.0 if significant else 0.35)
        line = caption.replace("\u00a0", " ").splitlines()[1]
        assert line.endswith("n.s.") == (not significant)
        assert line.startswith(f"infl {value:.2f} ± {se:.2f}" if round(se, 2) > 0 else
                               f"infl {value:.2f} = ")

    # Membership inference: the table and the most exposed examples are the lira file's.
    from heldout.privacy import load_lira

    lira = load_lira(trained / "lira.npz")
    assert [row[0]["variant"] for row in lira_rows] == list(lira.variants)
    for data, cells in lira_rows:
        m = lira.metrics[data["variant"]]
        assert float(data["auc"]) == m.auc and float(data["balancedAccuracy"]) == (
            m.balanced_accuracy)
        assert cells[1:] == [f"{m.auc:.4f}", f"{m.balanced_accuracy:.4f}"] + [
            "n/a" if np.isnan(x) else f"{x:.4f}" for x in m.tpr_at_fpr]
    assert lira.metrics["online"].auc > 0.6  # the planted confidence gap is found
    exposure = np.full(len(lira.index), np.nan)
    exposure[lira.index] = lira.exposure
    assert len(exposed) == 32
    assert [int(d["index"]) for d, _ in exposed] == list(np.argsort(-exposure)[:32])
    mem = arrays["memorization"]
    for data, caption in exposed:
        i = int(data["index"])
        assert float(data["exposure"]) == exposure[i]
        assert float(data["memorization"]) == mem[i] or np.isnan(mem[i])
        assert f"exposure {exposure[i]:.2f}" in caption
    # The LDS table is the baselines file's.
    from heldout.attribution import load_baselines

    table = load_baselines(trained / "lds.npz").table
    assert len(lds_rows) == len(table.methods) * len(table.fractions)
    for data, cells in lds_rows:
        k = table.methods.index(data["method"])
        f = int(np.flatnonzero(table.fractions == float(data["fraction"]))[0])
        assert float(data["lds"]) == table.mean[k, f]
        assert cells[1:5] == ["/".join(map(str, table.num_fit_runs[f])),
                              f"{table.mean[k, f]:.4f}",
                              f"{table.low[k, f]:.4f} to {table.high[k, f]:.4f}",
                              str(table.num_nan[k, f])]
    assert [alt for alt, _, _ in figures] == ["ROC of the LiRA variants, log-log",
                                              "LDS against the number of runs fitted on"]
    assert all(natural > 300 and shown > 300 for _, natural, shown in figures)


def test_predictions_majority_and_checks(trained, tmp_path):
    from heldout.report import ReportError, read_predictions

    labels = load_digits().split_labels("train")
    result = read_predictions(trained / "pred.zarr", labels)
    runs = open_experiment(trained / "exp").runs()
    masks = np.stack([r.load_aux().subset_mask() for r in runs])
    correct = np.stack([r.load_aux().train_correctness() for r in runs])
    held = ~masks
    right = (held & correct).sum(0)
    wrong = (held & ~correct).sum(0)
    np.testing.assert_array_equal(result.count_out, held.sum(0))
    expected = np.where(held.sum(0) == 0, -1,
                        np.where(right >= wrong, labels, (labels + 1) % 10))
    # Ties go to the smaller class: label + 1 wins a tie only when it is smaller (label 9).
    tie = (right == wrong) & (right > 0)
    expected[tie] = np.minimum(labels[tie], (labels[tie] + 1) % 10)
    np.testing.assert_array_equal(result.majority, expected)
    assert result.num_runs == len(runs)

    _write_store(tmp_path / "test.zarr", trained / "exp", labels, split="test")
    with pytest.raises(ReportError, match="attribute 'split' is 'test'"):
        read_predictions(tmp_path / "test.zarr", labels)
    with pytest.raises(ReportError, match="array 'label' differs"):
        read_predictions(trained / "pred.zarr", (labels + 1) % 10)
    n = len(labels)
    with pytest.raises(ReportError, match=rf"pred\.zarr: key 'prediction': expected int "
                                               rf"array \[runs=\d+, n_train={n - 1}\], found "
                                               rf"int32 \[\d+, {n}\]$"):
        read_predictions(trained / "pred.zarr", labels[:-1])
    # The store's subsets must be the experiment's runs' subsets.
    shifted = tmp_path / "shifted.zarr"
    shutil.copytree(trained / "pred.zarr", shifted)
    import zarr

    group = zarr.open_group(str(shifted), mode="r+")
    group["mask"][0] = ~group["mask"][0]
    accs = est.accumulate_experiment(trained / "exp")
    with pytest.raises(ReportError, match="array 'mask' of run 0.5/0 differs"):
        read_predictions(shifted, labels, accs)


def test_computed_estimates_and_plot(trained, tmp_path, capsys):
    """Without files the report computes memorization at the largest ratio (0.8) and C-scores
    over both; `heldout plot` writes every figure alone as PNG and PDF."""
    from heldout.report import compute_report, examples_from_dataset

    data = compute_report(trained / "exp", examples_from_dataset(load_digits()))
    arrays = load_npz(trained / "est.npz")
    assert data.estimate.subset_ratio == 0.8 and data.estimate.num_runs == RUNS_PER_RATIO
    np.testing.assert_array_equal(data.estimate.memorization, arrays["memorization"])
    np.testing.assert_array_equal(data.estimate.topk_index, arrays["topk_index"][:, :10])
    accs = est.accumulate_experiment(trained / "exp", keep_runs=False)
    np.testing.assert_array_equal(data.cscores.scores, est.cscores(accs).scores)
    assert [s.num_runs for s in data.ratios] == [RUNS_PER_RATIO] * 2
    labels = load_digits()
    exact = est.high_influence_pairs(est.accumulate_experiment(trained / "exp", ["0.8"])[0],
                                     labels.split_labels("train"), labels.split_labels("test"))
    np.testing.assert_array_equal(data.pairs.tr_idx, exact.tr_idx)
    page = html.unescape(__import__("heldout.report", fromlist=["x"]).render_page(data))
    assert "Section omitted" in page
    # The pairs' count names the rule and how many would pass it by chance at 20 runs.
    noise = est.expected_noise_pairs(
        data.estimate.count_in, data.estimate.count_out, data.estimate.test_correct_total,
        RUNS_PER_RATIO, data.estimate.memorization, labels.split_labels("train"),
        labels.split_labels("test"))
    assert data.pairs_expected_noise == noise
    assert (f"{len(exact)} high-influence pairs (influence >= 0.15, memorization of the "
            f"training example >= 0.25, same label); {noise:.1f} expected by chance alone at "
            f"{RUNS_PER_RATIO} runs") in page

    out = tmp_path / "figures"
    assert heldout_main(["plot", str(trained / "exp"), "--dataset_npz",
                         str(trained / "dataset.npz"), "--out_dir", str(out)]) == 0
    assert "wrote 10 files" in capsys.readouterr().out
    for name in ("learning_curve", "memorization_hist", "memorization_by_class",
                 "cscore_hist_by_class", "memorization_vs_cscore"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"
    assert not [p for p in os.listdir(out) if p.startswith(".")]
    assert heldout_main(["plot", str(trained / "exp"), "--dataset_npz",
                         str(trained / "dataset.npz"), "--out_dir", str(out),
                         "--figures", "learning_curve,nope"]) == 2
    assert "unknown ['nope']" in capsys.readouterr().err


def test_one_run_per_ratio_says_undefined(trained, tmp_path, capsys):
    exp = tmp_path / "exp"
    for ratio in ("0.5", "0.8"):
        shutil.copytree(trained / "exp" / ratio / "0", exp / ratio / "0")
    out = tmp_path / "one.html"
    status, printed, err = _report([exp, "--dataset_npz", trained / "dataset.npz", "--out", out],
                                   capsys)
    assert status == 0, err
    assert "memorization undefined" in printed
    page = html.unescape(out.read_text())
    assert "memorization and influence are undefined for every training example" in page
    assert "runs per ratio 0.5: 1, 0.8: 1" in page
    assert "Influence is undefined" in page
    assert "each C-score is the 0/1 correctness of one run" in page
    assert "memorization-gallery" not in page and "mem 0.0000" not in page


def test_refuses_estimates_of_other_runs_and_other_sizes(trained, tmp_path, capsys):
    # Same dataset, other runs: an estimate of 10 of the 20 runs at 0.8.
    other = tmp_path / "other"
    for run_id in range(10):
        shutil.copytree(trained / "exp" / "0.8" / str(run_id), other / "0.8" / str(run_id))
    assert heldout_main(["estimate", str(other), "--influence", "none",
                         "--out", str(tmp_path / "other.npz")]) == 0
    capsys.readouterr()
    base = [trained / "exp", "--dataset_npz", trained / "dataset.npz", "--out",
            tmp_path / "r.html"]
    status, _, err = _report([*base, "--estimates", tmp_path / "other.npz"], capsys)
    assert status == 2
    assert "other.npz: key 'num_runs' 10" in err and "has 20 runs at ratio 0.8" in err
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("heldout report: error: ")

    # C-scores of other runs: the ratios' run counts are not the experiment's.
    assert heldout_main(["cscores", str(other), "--out", str(tmp_path / "cs.npz")]) == 0
    capsys.readouterr()
    status, _, err = _report([*base, "--cscores", tmp_path / "cs.npz"], capsys)
    assert status == 2 and "keys 'ratios'/'num_runs_by_ratio' say 0.8: 10 runs" in err

    # An estimate of another dataset size.
    rng = np.random.default_rng(0)
    small = est.accumulate(rng.random((4, 100)) < 0.5, rng.random((4, 100)) < 0.5,
                           rng.random((4, 30)) < 0.5, subset_ratio=0.8)
    est.save_estimate(tmp_path / "small.npz", est.estimate(small, "none"))
    status, _, err = _report([*base, "--estimates", tmp_path / "small.npz"], capsys)
    assert status == 2 and "small.npz: covers 100 training examples" in err

    # A dataset of another size.
    save_npz_dataset(tmp_path / "cut.npz", take_train(load_digits(), 1000))
    status, _, err = _report([trained / "exp", "--dataset_npz", tmp_path / "cut.npz",
                              "--out", tmp_path / "r.html"], capsys)
    assert status == 2
    assert "the train split has 1000 examples but the runs in" in err and "cover 1297" in err
    assert not (tmp_path / "r.html").exists()


def test_labels_only_galleries_say_why(trained, tmp_path, capsys):
    out = tmp_path / "labels.html"
    status, _, err = _report([trained / "exp", "--dataset_npz", trained / "dataset.npz",
                              "--labels_only", "--gallery_size", "8", "--out", out], capsys)
    assert status == 0, err
    page = out.read_text()
    assert "No pictures: --labels_only was given" in page
    gallery = re.search(r'id="memorization-gallery">(.*?)</div></section>', page, re.S).group(1)
    assert gallery.count('class="card"') == 8 and "<img" not in gallery
    assert gallery.count("no image") == 8


def test_mnist_example_writes_its_report(tmp_path, capsys):
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "mnist-example", "mnist_infl_mem.py")
    spec = importlib.util.spec_from_file_location("mnist_infl_mem_report", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    out = tmp_path / "out"
    assert example.main(["--num_runs=4", "--epochs=1", f"--output_dir={out}",
                         "--checkpoint_every=0", "--figure_rows=1"]) == 0
    assert f"report: {out / 'report.html'}" in capsys.readouterr().out
    page = (out / "report.html").read_text()
    assert all(f'<section id="{s}">' in page for s in SECTIONS)
    assert "subset ratio 0.7" in page


def test_galleries_leave_out_infinite_values():
    """A LiRA exposure is infinite where a side had one shadow (no spread): it says nothing
    about the example and is not shown first (review of issue 20)."""
    from heldout.report.page import _top

    values = np.array([0.5, np.inf, np.nan, 2.0, -np.inf, 1.0])
    assert _top(values, 3).tolist() == [3, 5, 0]
    assert _top(values, 3, descending=False).tolist() == [0, 5, 3]
