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
