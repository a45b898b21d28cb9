"""The report page's bounds and building blocks, without TensorFlow: a CIFAR-10-sized page stays
under 10 MB, thumbnails are downscaled, undefined values read "undefined", the estimate's ratio
is the largest with enough runs."""

import html.parser
import io
import re

import numpy as np
import pytest
from PIL import Image

from heldout import estimate as est
from heldout.data.arrays import ArrayDataset
from heldout.experiment import make_aux_arrays, write_aux_arrays
from heldout.report import choose_ratio, compute_report, examples_from_dataset, render_page
from heldout.report.page import fmt
from heldout.report.thumbnails import thumbnail_png


@pytest.mark.slow
def test_cifar10_sized_page_stays_under_10_mb(tmp_path):
    """50,000 training images of 32x32x3 (noise: the worst case for PNG), 2 ratios."""
    rng = np.random.default_rng(0)
    n, m = 50_000, 1_000
    for ratio in ("0.5", "0.7"):
        for run in range(3):
            subset = rng.choice(n, int(float(ratio) * n), replace=False)
            aux = make_aux_arrays(subset, rng.random(n) < 0.8, rng.random(m) < 0.8)
            write_aux_arrays(tmp_path / ratio / str(run) / "aux_arrays.npz", aux)
    dataset = ArrayDataset(
        "cifar10-sized", 10,
        {"train": rng.integers(0, 256, (n, 32, 32, 3), np.uint8),
         "test": rng.integers(0, 256, (m, 32, 32, 3), np.uint8)},
        {"train": rng.integers(0, 10, n), "test": rng.integers(0, 10, m)})
    data = compute_report(tmp_path, examples_from_dataset(dataset))
    page = render_page(data)
    assert len(page.encode()) < 10_000_000
    assert data.estimate.subset_ratio == 0.7  # The largest ratio with enough runs.
    galleries = dict(re.findall(r'<div class="gallery" id="([a-z-]+)">(.*?)</div>(?=<)', page))
    assert galleries["memorization-gallery"].count('class="card"') == 32
    # C-scores: 3 lowest and 3 highest of each of the 10 classes (32 // 10 = 3).
    assert galleries["cscore-low"].count('class="card"') == 30
    assert page.count('<figure class="card') <= 32 + 8 * 4 + 60


def test_thumbnails_are_downscaled_and_rescaled():
    big = np.random.default_rng(0).integers(0, 256, (224, 200, 3), np.uint8)
    picture = Image.open(io.BytesIO(thumbnail_png(big)))
    assert max(picture.size) == 64 and picture.mode == "RGB"
    digit = np.array([[0, 8], [16, 4]], np.uint8)[..., None]  # 0..16 grey levels.
    small = np.asarray(Image.open(io.BytesIO(thumbnail_png(digit, scale=16.0))))
    np.testing.assert_array_equal(small, [[0, 128], [255, 64]])


def test_undefined_is_never_zero():
    assert fmt(float("nan")) == "undefined" and fmt(np.float64("nan")) == "undefined"
    assert fmt(None) == "undefined"
    assert fmt(0.0) == "0.0000" and fmt(np.float32(0.5), 2) == "0.50"


def test_choose_ratio_prefers_the_largest_with_enough_runs():
    rng = np.random.default_rng(1)

    def acc(ratio, runs):
        return est.accumulate(rng.random((runs, 200)) < ratio, rng.random((runs, 200)) < 0.9,
                              rng.random((runs, 20)) < 0.9, subset_ratio=ratio)

    many, few = acc(0.5, 30), acc(0.9, 3)  # 0.9^3: memorization defined for ~27% only.
    assert choose_ratio([many, few]) is many
    assert choose_ratio([many, acc(0.7, 30)]).subset_ratio == 0.7
    assert choose_ratio([acc(0.5, 1), acc(0.7, 1)]) is None
    assert choose_ratio([few]) is few  # None has enough: the one defining the most.


@pytest.mark.parametrize("bad", ["train", "test"])
def test_dataset_without_a_split_is_refused(bad):
    from heldout.report import ReportError

    splits = {"train": np.zeros(3, np.int64), "test": np.zeros(2, np.int64)}
    del splits[bad]
    with pytest.raises(ReportError, match=f"no '{bad}' split"):
        examples_from_dataset(ArrayDataset("x", 2, {}, splits))


def test_top_k_of_a_full_matrix_is_the_estimators():
    from heldout.report import top_k_of_matrix

    rng = np.random.default_rng(2)
    acc = est.accumulate(rng.random((9, 300)) < 0.5, rng.random((9, 300)) < 0.7,
                         rng.random((9, 40)) < 0.7)  # Few runs: many ties and some NaN.
    full = est.influence(acc)
    assert np.isnan(full).any()
    index, values = top_k_of_matrix(full, 12, block_rows=7)
    expected_index, expected_values = est.top_k_influence(acc, 12)
    np.testing.assert_array_equal(index, expected_index)
    np.testing.assert_array_equal(values, expected_values)


# --------------------------------------------------------------------------------------------
# How certain the page says its numbers are (issue 19): standard errors of influences, counts
# where a standard error would print as 0, no negative zero, outliers drawn, one ratio.


class _Cards(html.parser.HTMLParser):
    """The gallery cards (attributes and caption lines) and the pairs table rows of a page."""

    def __init__(self):
        super().__init__()
        self.cards, self.rows, self._card, self._row = [], [], None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "figure":
            self._card = {"attrs": attrs, "lines": [""]}
        elif tag == "tr" and "data-influence" in attrs:
            self._row = {"attrs": attrs, "lines": []}
        elif tag == "br" and self._card:
            self._card["lines"].append("")

    def handle_endtag(self, tag):
        if tag == "figure":
            self.cards.append(self._card)
            self._card = None
        elif tag == "tr" and self._row:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        data = data.replace("\u00a0", " ")  # no-break spaces keep "0.41 ± 0.12" together
        if self._card:
            self._card["lines"][-1] += data
        elif self._row and data.strip():
            self._row["lines"].append(data)


def _certainty_experiment(root, rng, runs=40, n=160, m=40):
    """Runs at ratio 0.7 whose test example j copies training example j's membership (true
    influence 1, every run agreeing) for j < 4, follows it in 70% of the runs for 4 <= j < 8,
    and is noise otherwise; the training examples are correct in their runs."""
    labels = {"train": rng.integers(0, 3, n), "test": rng.integers(0, 3, m)}
    labels["train"][:8] = labels["test"][:8]
    masks = rng.random((runs, n)) < 0.7
    correct = masks | (rng.random((runs, n)) < 0.6)
    test_correct = rng.random((runs, m)) < 0.75
    test_correct[:, :4] = masks[:, :4]
    follow = rng.random((runs, 4)) < 0.7
    test_correct[:, 4:8] = np.where(follow, masks[:, 4:8], test_correct[:, 4:8])
    for r in range(runs):
        aux = make_aux_arrays(np.flatnonzero(masks[r]), correct[r], test_correct[r])
        write_aux_arrays(root / "0.7" / str(r) / "aux_arrays.npz", aux)
    images = {s: rng.integers(0, 256, (len(labels[s]), 8, 8, 1), np.uint8) for s in labels}
    return ArrayDataset("certainty", 3, images, labels), est.accumulate(masks, correct,
                                                                        test_correct)


def test_influence_cards_give_standard_errors_and_mark_the_insignificant(tmp_path):
    rng = np.random.default_rng(5)
    dataset, acc = _certainty_experiment(tmp_path / "exp", rng)
    data = compute_report(tmp_path / "exp", examples_from_dataset(dataset), gallery_size=40)
    page = render_page(data)
    parsed = _Cards()
    parsed.feed(page)
    stderr = est.influence_stderr(acc)
    infl = est.influence(acc)
    masks = np.stack([np.unpackbits(b, bitorder="little")[:acc.num_train]
                      for b in acc.mask_bits]).astype(bool)
    tests = np.stack([np.unpackbits(b, bitorder="little")[:acc.num_test]
                      for b in acc.test_bits]).astype(bool)
    cards = [c for c in parsed.cards if "data-influence" in c["attrs"]]
    assert len(cards) >= 20
    kinds = set()
    for card in cards:
        a = card["attrs"]
        i, j = int(a["data-index"]), int(a["data-test-index"])
        value, se = float(a["data-influence"]), float(a["data-influence-stderr"])
        assert value == pytest.approx(infl[j, i], abs=1e-6)
        assert se == pytest.approx(stderr[j, i], abs=1e-6)
        significant = value - 2 * se >= 0.15
        assert a["data-significant"] == str(significant).lower()
        assert ("ns" in a["class"].split()) == (not significant)
        line = card["lines"][1]
        assert line.endswith(" n.s.") == (not significant)
        if round(se, 2) > 0:
            assert line.startswith(f"infl {value:.2f} ± {se:.2f}")
            kinds.add("stderr")
        else:  # every run agreeing: the counts the influence is made of, never ± 0.00
            inn, out = masks[:, i], ~masks[:, i]
            assert line.startswith(f"infl {value:.2f} = {tests[inn, j].sum()}/{inn.sum()} − "
                                   f"{tests[out, j].sum()}/{out.sum()}")
            kinds.add("counts")
        kinds.add(significant)
    assert kinds == {"stderr", "counts", True, False}
    # The pairs table: each pair's standard error, the insignificant marked, and the count
    # with the rule and the pairs expected by chance at this run count.
    pairs = data.pairs
    assert len(parsed.rows) == min(len(pairs), 40) > 0
    for row in parsed.rows:
        value, se = float(row["attrs"]["data-influence"]), float(
            row["attrs"]["data-influence-stderr"])
        i, j = int(row["lines"][1]), int(row["lines"][0])
        assert se == pytest.approx(stderr[j, i], abs=1e-6)
        assert ("ns" in row["attrs"].get("class", "")) == (value - 2 * se < 0.15)
    mem = est.memorization(acc).memorization
    labels = dataset.split_labels("train"), dataset.split_labels("test")
    noise = est.expected_noise_pairs(acc.count_in, acc.count_out, acc.test_correct_total, 40,
                                     mem, *labels)
    assert 1 < noise < len(pairs)
    assert (f"{len(pairs)} high-influence pairs (influence &gt;= 0.15, memorization of the "
            f"training example &gt;= 0.25, same label); {noise:.1f} expected by chance alone at "
            "40 runs") in page


def test_no_zero_standard_error_and_no_negative_zero(tmp_path):
    """A binomial estimate at 0 or 1 gives its counts (C-score 1.0000 = 12/12), not ± 0.0000,
    and a value that rounds to zero prints without a sign."""
    rng = np.random.default_rng(6)
    dataset, acc = _certainty_experiment(tmp_path / "exp", rng)
    data = compute_report(tmp_path / "exp", examples_from_dataset(dataset))
    page = render_page(data)
    assert not re.search(r"± 0\.0+(?![0-9])", page)
    assert not re.search(r"(?<![0-9])-0\.0+(?![0-9])", page)
    parsed = _Cards()
    parsed.feed(page)
    held_out = est.ratio_cscore(acc)
    perfect = [c for c in parsed.cards if "data-cscore" in c["attrs"]
               and float(c["attrs"]["data-cscore"]) == 1.0]
    assert perfect
    for card in perfect:
        i = int(card["attrs"]["data-index"])
        n = held_out.count_out[i]
        assert f"C-score 1.0000 = {n}/{n}" in card["lines"]
    # Memorization 0 with every run right is 0.0000 = k/k − m/m, never -0.0000 or ± 0.0000.
    mem_cards = [c for c in parsed.cards if c["lines"][1].startswith("mem ")]
    assert mem_cards and all("± 0.0000" not in c["lines"][1] for c in mem_cards)


def test_numbers_print_their_uncertainty():
    from heldout.report.numbers import fmt, fmt_binomial

    assert fmt(-0.001, 2) == "0.00" and fmt(-0.0) == "0.0000" and fmt(-0.006, 2) == "-0.01"
    assert fmt_binomial(0.75, 0.0433) == "0.7500 ± 0.0433"
    assert fmt_binomial(1.0, 0.0, [120], [120]) == "1.0000 = 120/120"
    assert fmt_binomial(1.0, 0.0, [28, 0], [28, 12], 2, difference=True) == "1.00 = 28/28 − 0/12"
    assert fmt_binomial(0.5, 0.0, [12, 0, 0], [12, 4, 0]) == "0.5000 = (12/12 + 0/4)/2"
    assert fmt_binomial(0.0004, 0.00004, [1], [2500]) == "0.0004 = 1/2500"  # rounds to 0
    assert fmt_binomial(float("nan"), float("nan")) == "undefined"
    assert fmt_binomial(0.9, None) == "0.9000"  # a published file: no standard error


def _summary(ratio, accuracies):
    from heldout.report import RatioSummary

    runs = len(accuracies)
    values = np.asarray(accuracies, np.float64)
    return RatioSummary(str(ratio), ratio, tuple(f"{ratio}/{r}" for r in range(runs)),
                        {"train": values, "removed": values - 0.1, "test": values - 0.15})


def test_learning_curve_with_one_ratio_keeps_its_series_together():
    import dataclasses

    from heldout.report.figures import learning_curve

    base = _minimal_report()
    for ratios, width in (((0.7,), (0.09, 0.11)), ((0.1, 0.5, 0.9), (0.9, 1.0))):
        data = dataclasses.replace(base, ratios=tuple(_summary(r, [0.9, 0.95]) for r in ratios))
        ax = learning_curve(data).axes[0]
        low, high = ax.get_xlim()
        assert width[0] <= high - low <= width[1], (ratios, low, high)
        assert low < min(ratios) - 0.04 and high > max(ratios) + 0.04
        xs = np.concatenate([line.get_xdata() for line in ax.lines])
        assert (np.ptp(xs) if len(ratios) == 1 else 0.01) <= 0.1 * (high - low)


def test_memorization_box_plot_draws_every_outlier(tmp_path):
    from heldout.report.figures import memorization_by_class

    rng = np.random.default_rng(7)
    dataset, acc = _certainty_experiment(tmp_path / "exp", rng)
    data = compute_report(tmp_path / "exp", examples_from_dataset(dataset))
    fig = memorization_by_class(data)
    ax = fig.axes[0]
    mem, labels = data.estimate.memorization, dataset.split_labels("train")
    drawn = [line for line in ax.lines if line.get_marker() == "."]
    assert len(drawn) == 3
    beyond = 0
    for c, line in enumerate(drawn):
        values = mem[(labels == c) & ~np.isnan(mem)]
        q1, q3 = np.percentile(values, [25, 75])
        outside = values[(values > q3 + 1.5 * (q3 - q1)) | (values < q1 - 1.5 * (q3 - q1))]
        np.testing.assert_array_equal(np.sort(line.get_ydata()), np.sort(outside))
        beyond += len(outside)
    assert beyond > 0 and np.nanmax(mem) in np.concatenate([d.get_ydata() for d in drawn])
    assert f"all {beyond} examples beyond them drawn as dots" in ax.get_title()


def _minimal_report():
    from heldout.report import ReportData, labels_only_examples

    examples = labels_only_examples("x", {"train": np.zeros(4), "test": np.zeros(2)}, "none")
    return ReportData("exp", (), (), None, examples, None, "", "", None, "", 0.15, 0.25, None,
                      "", None, "")


# --------------------------------------------------------------------------------------------
# Membership inference (issue 20) and attribution scored by LDS (issue 21): the sections'
# numbers are the files', and files of other runs or data are refused in one line.


class _Rows(html.parser.HTMLParser):
    """The rows of the LiRA and LDS tables (their data-* attributes and cell texts) and the
    exposure gallery's cards (their data-* attributes), in page order."""

    def __init__(self):
        super().__init__()
        self.rows, self.cards, self._row = [], [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr" and ("data-variant" in attrs or "data-method" in attrs):
            self._row = {"attrs": attrs, "cells": []}
        elif tag == "td" and self._row is not None:
            self._row["cells"].append("")
        elif tag == "figure" and "data-exposure" in attrs:
            self.cards.append(attrs)

    def handle_endtag(self, tag):
        if tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._row is not None and self._row["cells"]:
            self._row["cells"][-1] += data


def _section_of(page, anchor):
    return re.search(f'<section id="{anchor}">(.*?)</section>', page, re.S).group(1)


def _run_masks(root):
    from heldout.experiment import open_experiment

    runs = open_experiment(root).runs()
    return [r.name for r in runs], np.stack([r.load_aux().subset_mask() for r in runs])


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    """The certainty experiment (40 runs at 0.7, 160 training and 40 test examples); a train
    store whose logit confidence is higher, by a different amount per example, where a run
    trained on the example (its columns in reverse order); the `heldout lira` file of that
    store; a test store whose margin is M w + noise; the `heldout lds --baselines` file of
    it; and the report of the experiment with both files."""
    from predict_helpers import write_outputs_store

    from heldout.cli import main as cli_main
    from heldout.data.npz import save_npz_dataset
    from heldout.privacy import load_lira_inputs, run_lira, save_lira

    root = tmp_path_factory.mktemp("attacked")
    rng = np.random.default_rng(11)
    dataset, _ = _certainty_experiment(root / "exp", rng)
    save_npz_dataset(root / "dataset.npz", dataset)
    names, masks = _run_masks(root / "exp")
    runs, n = masks.shape
    labels = dataset.split_labels("train")
    shift = rng.uniform(0, 3, n)
    confidence = rng.normal(0, 1, n) + shift * masks + rng.normal(0, 1, (runs, n))
    write_outputs_store(root / "train.zarr", names, masks, labels, confidence > 0,
                        index=np.arange(n)[::-1], logit_confidence=confidence)
    save_lira(root / "lira.npz", run_lira(load_lira_inputs(root / "train.zarr")))
    test_labels = dataset.split_labels("test")
    margin = masks @ rng.normal(0, 1, (n, len(test_labels))) + rng.normal(0, 1, (runs, 40))
    write_outputs_store(root / "test.zarr", names, masks, test_labels, margin > 0, split="test",
                        margin=margin)
    assert cli_main(["lds", "--baselines", "--store", str(root / "test.zarr"), "--output",
                     "margin", "--fractions", "0.5,1", "--out", str(root / "lds.npz")]) == 0
    data = compute_report(root / "exp", examples_from_dataset(dataset),
                          lira_path=str(root / "lira.npz"),
                          lds_baselines_path=str(root / "lds.npz"))
    return {"root": root, "dataset": dataset, "data": data, "page": render_page(data)}


def test_membership_section_gives_the_lira_files_numbers(attacked):
    from scipy.stats import spearmanr

    from heldout.privacy import load_lira
    from heldout.report.numbers import fmt

    lira = load_lira(attacked["root"] / "lira.npz")
    page, data = attacked["page"], attacked["data"]
    parsed = _Rows()
    parsed.feed(page)
    variants = [r for r in parsed.rows if "data-variant" in r["attrs"]]
    assert [r["attrs"]["data-variant"] for r in variants] == list(lira.variants)
    resolved = set()
    for row in variants:
        m = lira.metrics[row["attrs"]["data-variant"]]
        assert float(row["attrs"]["data-auc"]) == m.auc
        assert float(row["attrs"]["data-balanced-accuracy"]) == m.balanced_accuracy
        np.testing.assert_array_equal(
            [float(x) for x in row["attrs"]["data-tpr"].split(",")], m.tpr_at_fpr)
        rates = ["n/a" if np.isnan(x) else f"{x:.4f}" for x in m.tpr_at_fpr]
        assert row["cells"] == [row["attrs"]["data-variant"], fmt(m.auc),
                                fmt(m.balanced_accuracy), *rates]
        resolved |= {r == "n/a" for r in rates}
    assert resolved == {True, False}  # 1e-3 resolvable with ~1,900 non-member pairs, 1e-4 not
    assert f"{m.num_members:,} member and {m.num_nonmembers:,} non-member" in page
    assert "n/a where x is below 1 / " in page
    assert _section_of(page, "membership").count('<img class="figure"') == 1

    # The gallery: the most exposed training examples, the file's exposure by dataset index.
    exposure = np.full(len(lira.index), np.nan)
    exposure[lira.index] = lira.exposure
    shown = [int(c["data-index"]) for c in parsed.cards]
    assert len(shown) == data.gallery_size
    np.testing.assert_array_equal(shown, np.argsort(-exposure, kind="stable")[:len(shown)])
    mem = data.estimate.memorization
    for card in parsed.cards:
        i = int(card["data-index"])
        assert float(card["data-exposure"]) == exposure[i]
        assert float(card["data-memorization"]) == mem[i]
        assert float(card["data-cscore"]) == data.cscores.scores[i]
    # Spearman's rho of exposure with memorization, as scipy computes it.
    both = ~np.isnan(mem) & ~np.isnan(exposure)
    rho = spearmanr(exposure[both], mem[both]).statistic
    assert data.membership.with_memorization.rho == pytest.approx(rho, abs=1e-12)
    assert (f"Exposure with memorization (the estimate above: ratio 0.7, 40 runs): Spearman's "
            f"ρ = {rho:.3f} (p" in html.unescape(page))
    assert "40 runs at subset ratio 0.7 as shadow models" in page
    assert f"over {int(both.sum())} training examples" in page


def test_membership_computed_from_the_store_is_the_lira_file(attacked):
    """Without --lira the attack is computed from --predictions, as `heldout lira` does it
    (the store's columns are in reverse order: membership follows its index)."""
    from heldout.privacy import load_lira

    root = attacked["root"]
    data = compute_report(root / "exp", examples_from_dataset(attacked["dataset"]),
                          predictions_path=str(root / "train.zarr"))
    m, lira = data.membership, load_lira(root / "lira.npz")
    assert m.computed.startswith("as heldout lira does by default") and m.source.endswith(
        "train.zarr")
    for name, metrics in lira.metrics.items():
        assert m.metrics[name].auc == metrics.auc > 0.6
        np.testing.assert_array_equal(m.metrics[name].tpr_at_fpr, metrics.tpr_at_fpr)
    np.testing.assert_array_equal(m.exposure[lira.index], lira.exposure)
    from heldout.report.page import _membership_section, _Thumbs

    assert "LiRA computed from the store <code>" in _membership_section(data, _Thumbs(data))

    # A store LiRA cannot attack leaves the section with a note saying why.
    from predict_helpers import write_outputs_store

    names, masks = _run_masks(root / "exp")
    labels = attacked["dataset"].split_labels("train")
    write_outputs_store(root / "correct-only.zarr", names, masks, labels, masks)
    data = compute_report(root / "exp", examples_from_dataset(attacked["dataset"]),
                          predictions_path=str(root / "correct-only.zarr"))
    assert data.membership is None and data.predictions is not None
    assert data.membership_note.startswith(f"not computed from {root / 'correct-only.zarr'}: ")
    assert "has no logit_confidence (made with outputs correct)" in data.membership_note


def _refused(capsys, root, *flags):
    from heldout.cli import main as cli_main

    status = cli_main(["report", str(root / "exp"), "--dataset_npz", str(root / "dataset.npz"),
                       "--out", str(root / "never.html"), *map(str, flags)])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error" in line]  # not the progress bar
    assert status == 2 and len(lines) == 1, err
    assert not (root / "never.html").exists()
    return lines[0]


def test_lira_file_of_other_runs_or_data_is_refused_in_one_line(attacked, tmp_path, capsys):
    import dataclasses

    from heldout.data.fingerprint import fingerprint_from_labels
    from heldout.privacy import load_lira, save_lira

    lira = load_lira(attacked["root"] / "lira.npz")
    member = lira.member.copy()
    member[0, :5] = ~member[0, :5]
    index = lira.index.copy()
    index[0] = index[1]
    labels = attacked["dataset"].split_labels("train")
    other = fingerprint_from_labels("synthetic", {"train": labels[::-1]})
    cases = {
        "runs": (dict(runs=(*lira.runs, "0.7/99")),
                 "key 'runs' names 1 of its 41 runs that .* does not have \\(0.7/99\\): a LiRA "
                 "of other runs"),
        "member": (dict(member=member),
                   f"key 'member' of target run {lira.target_run[0]} differs from that run's "
                   "subset in its aux arrays at 5 of 160 examples"),
        "index": (dict(index=index), "key 'index' covers 160 examples, not a permutation"),
        "fingerprint": (dict(fingerprint=other), "computed on different datasets or orders"),
    }
    for name, (change, message) in cases.items():
        path = tmp_path / f"{name}.npz"
        save_lira(path, dataclasses.replace(lira, **change))
        line = _refused(capsys, attacked["root"], "--lira", path)
        assert line.startswith(f"heldout report: error: {path}") and re.search(message, line), (
            name, line)


def test_lds_section_gives_the_baselines_files_numbers(attacked):
    from heldout.attribution import load_baselines
    from heldout.report.figures import lds_baselines, method_name
    from heldout.report.numbers import fmt

    table = load_baselines(attacked["root"] / "lds.npz").table
    page = attacked["page"]
    parsed = _Rows()
    parsed.feed(page)
    rows = [r for r in parsed.rows if "data-method" in r["attrs"]]
    assert len(rows) == len(table.methods) * len(table.fractions) == 6
    for row in rows:
        a = row["attrs"]
        k, f = table.methods.index(a["data-method"]), list(table.fractions).index(
            float(a["data-fraction"]))
        assert (float(a["data-lds"]), float(a["data-low"]), float(a["data-high"])) == (
            table.mean[k, f], table.low[k, f], table.high[k, f])
        assert row["cells"][:5] == [
            method_name(a["data-method"], "margin"), "/".join(map(str, table.num_fit_runs[f])),
            fmt(table.mean[k, f]), f"{fmt(table.low[k, f])} to {fmt(table.high[k, f])}",
            str(table.num_nan[k, f])]
    assert table.low[1:, -1].min() > 0  # the margin's own estimators predict it
    assert _section_of(page, "lds").count('<img class="figure"') == 1
    # The figure: one series per estimator, the mean LDS at each run count, 95% intervals.
    ax = lds_baselines(attacked["data"]).axes[0]
    series = [line for line in ax.lines if line.get_marker() == "o"]
    assert len(series) == 3
    for k, line in enumerate(series):
        np.testing.assert_array_equal(line.get_ydata(), table.mean[k])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["10", "20"]


def test_lds_table_of_other_runs_or_another_file_is_refused(attacked, tmp_path, capsys):
    from heldout.npzio import load_npz

    arrays = load_npz(attacked["root"] / "lds.npz")
    arrays["runs"] = np.array([r.replace("0.7/", "0.5/") for r in arrays["runs"].tolist()])
    np.savez(tmp_path / "other.npz", **arrays)
    line = _refused(capsys, attacked["root"], "--lds_baselines", tmp_path / "other.npz")
    assert "other.npz: key 'runs' names 40 of its 40 runs that" in line
    assert line.endswith("(0.5/0, 0.5/1, 0.5/2, ...): an LDS table of other runs")
    np.savez(tmp_path / "plain.npz", lds=np.zeros(40, np.float32), p_value=np.zeros(40))
    line = _refused(capsys, attacked["root"], "--lds_baselines", tmp_path / "plain.npz")
    assert "plain.npz: missing key 'methods' (expected str array [K] in a `heldout lds " in line


def test_estimate_of_the_influence_on_a_margin_is_refused(attacked, tmp_path, capsys):
    """An estimate with --target margin holds an influence in the margin's units with Welch
    standard errors: the report (binomial errors, thresholds of correctness) refuses it."""
    import dataclasses

    acc = est.accumulate_experiment(attacked["root"] / "exp")[0]
    estimate = dataclasses.replace(est.estimate(acc, "topk", 5), target="margin")
    est.save_estimate(tmp_path / "margin.npz", estimate)
    line = _refused(capsys, attacked["root"], "--estimates", tmp_path / "margin.npz")
    assert "margin.npz: key 'target' is 'margin': its influence is on the store's margin" in line
    assert "give an estimate written by `heldout estimate --target correct` (the default)" in line
    assert line.endswith("or leave --estimates out")


def test_store_subsets_are_checked_when_an_estimate_is_given(attacked, tmp_path):
    """With --estimates the runs' masks were not kept, so a store of other subsets passed."""
    import shutil

    import zarr

    from heldout.report import ReportError

    root = attacked["root"]
    shutil.copytree(root / "train.zarr", tmp_path / "flipped.zarr")
    group = zarr.open_group(str(tmp_path / "flipped.zarr"), mode="r+")
    group["mask"][3] = ~group["mask"][3]
    acc = est.accumulate_experiment(root / "exp")[0]
    est.save_estimate(tmp_path / "est.npz", est.estimate(acc, "none"))
    with pytest.raises(ReportError, match="array 'mask' of run 0.7/3 differs"):
        compute_report(root / "exp", examples_from_dataset(attacked["dataset"]),
                       str(tmp_path / "est.npz"), predictions_path=str(tmp_path / "flipped.zarr"),
                       lira_path=str(root / "lira.npz"))


def test_plot_writes_the_roc_and_the_lds_figure(attacked, tmp_path, capsys):
    from heldout.cli import main as cli_main

    root = attacked["root"]
    base = ["plot", str(root / "exp"), "--dataset_npz", str(root / "dataset.npz"),
            "--figures", "lira_roc,lds_baselines"]
    assert cli_main([*base, "--out_dir", str(tmp_path / "none")]) == 0
    assert ("wrote 0 files (); left out: lira_roc (needs --lira), lds_baselines (needs "
            "--lds_baselines)") in capsys.readouterr().out
    assert cli_main([*base, "--out_dir", str(tmp_path / "both"), "--lira", str(root / "lira.npz"),
                     "--lds_baselines", str(root / "lds.npz")]) == 0
    assert "wrote 4 files" in capsys.readouterr().out
    for name in ("lira_roc", "lds_baselines"):
        assert (tmp_path / "both" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (tmp_path / "both" / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"


def test_lira_roc_is_log_log_with_the_diagonal(attacked):
    from heldout.report.figures import lira_roc

    m = attacked["data"].membership
    ax = lira_roc(attacked["data"]).axes[0]
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert ax.get_xlim()[0] == pytest.approx(0.5 / m.num_nonmembers)
    assert ax.get_ylim()[0] == pytest.approx(0.5 / m.num_members)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == [f"{v} (AUC {x.auc:.3f})" for v, x in m.metrics.items()] + [
        "guessing (TPR = FPR)"]
    diagonal = ax.lines[-1]
    np.testing.assert_array_equal(diagonal.get_xdata(), diagonal.get_ydata())
