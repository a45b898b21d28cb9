"""The report page's bounds and building blocks, without TensorFlow: a CIFAR-10-sized page stays
under 10 MB, thumbnails are downscaled, undefined values read "undefined", the estimate's ratio
is the largest with enough runs."""

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
