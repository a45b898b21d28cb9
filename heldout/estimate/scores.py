"""Memorization and C-scores: per-example vectors from accumulators (pure numpy).

Memorization ``mean_in - mean_out`` at one ratio (Feldman & Zhang 2020) and the holdout
C-score, the mean over ratios of the accuracy on held-out examples (Jiang et al. 2021), each
with binomial standard errors; NaN where a count is zero. See `heldout.estimate`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from heldout.data.fingerprint import Fingerprint, check_fingerprints
from heldout.errors import EstimateError
from heldout.estimate.accumulator import RatioAccumulator


def _ratio(numerator: np.ndarray, count: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(count > 0, numerator / np.maximum(count, 1), np.nan)


def _binomial_var(mean: np.ndarray, count: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(count > 0, mean * (1.0 - mean) / np.maximum(count, 1), np.nan)


@dataclasses.dataclass(frozen=True)
class Memorization:
    """Memorization estimates of the training examples at one subset ratio.

    Attributes:
      memorization: float64 [n_train], ``mean_in - mean_out``; NaN where a count is zero.
      stderr: float64 [n_train], binomial standard error,
        ``sqrt(p_in (1 - p_in) / count_in + p_out (1 - p_out) / count_out)`` with the observed
        proportions (0 when both are 0 or 1); NaN where undefined.
      mean_in, mean_out: float64 [n_train], accuracy over the runs with / without the example.
      count_in, count_out: int64 [n_train], number of runs with / without the example.
    """

    memorization: np.ndarray
    stderr: np.ndarray
    mean_in: np.ndarray
    mean_out: np.ndarray
    count_in: np.ndarray
    count_out: np.ndarray


def memorization(acc: RatioAccumulator) -> Memorization:
    """Memorization of every training example (Feldman & Zhang 2020, subsampled estimator)."""
    count_out = acc.count_out
    mean_in = _ratio(acc.correct_in, acc.count_in)
    mean_out = _ratio(acc.correct_total - acc.correct_in, count_out)
    var = _binomial_var(mean_in, acc.count_in) + _binomial_var(mean_out, count_out)
    return Memorization(
        mean_in - mean_out, np.sqrt(var), mean_in, mean_out, acc.count_in, count_out
    )


@dataclasses.dataclass(frozen=True)
class RatioCScore:
    """Holdout consistency at one subset ratio (Jiang et al. 2021).

    Attributes:
      subset_ratio: the ratio.
      num_runs: the runs at this ratio.
      train: float64 [n_train], accuracy on example i over the runs that held it out; NaN
        where ``count_out`` is 0.
      train_stderr: float64 [n_train], binomial ``sqrt(p (1 - p) / count_out)``.
      count_out: int64 [n_train].
      test: float64 [n_test], accuracy on test example j over all runs (NaN with no runs).
      test_stderr: float64 [n_test], binomial ``sqrt(p (1 - p) / num_runs)``.
    """

    subset_ratio: float
    num_runs: int
    train: np.ndarray
    train_stderr: np.ndarray
    count_out: np.ndarray
    test: np.ndarray
    test_stderr: np.ndarray


def ratio_cscore(acc: RatioAccumulator) -> RatioCScore:
    """The holdout consistency of the training and test examples at the accumulator's ratio."""
    count_out = acc.count_out
    train = _ratio(acc.correct_total - acc.correct_in, count_out)
    runs = np.full(acc.num_test, acc.num_runs)
    test = _ratio(acc.test_correct_total, runs)
    return RatioCScore(
        acc.subset_ratio,
        acc.num_runs,
        train,
        np.sqrt(_binomial_var(train, count_out)),
        count_out,
        test,
        np.sqrt(_binomial_var(test, runs)),
    )


@dataclasses.dataclass(frozen=True)
class CScores:
    """C-scores averaged over subset ratios (Jiang et al. 2021, holdout estimator).

    Attributes:
      scores: float64 [n_train], unweighted mean of the per-ratio consistency over the ratios
        where it is defined; NaN where it is defined at none.
      stderr: float64 [n_train], ``sqrt(sum_s stderr_s**2) / n_defined`` (independent ratios).
      by_ratio: float64 [n_ratios, n_train], per-ratio consistency (NaN where undefined).
      stderr_by_ratio: float64 [n_ratios, n_train].
      count_out_by_ratio: int64 [n_ratios, n_train], runs holding the example out.
      ratios: float64 [n_ratios], sorted ascending.
      num_runs_by_ratio: int64 [n_ratios].
      test_scores: float64 [n_test], mean over ratios of the test consistency.
      test_by_ratio: float64 [n_ratios, n_test].
      fingerprint: the dataset fingerprint of the runs (`heldout.data.fingerprint`), or None
        when they had none (released runs).
    """

    scores: np.ndarray
    stderr: np.ndarray
    by_ratio: np.ndarray
    stderr_by_ratio: np.ndarray
    count_out_by_ratio: np.ndarray
    ratios: np.ndarray
    num_runs_by_ratio: np.ndarray
    test_scores: np.ndarray
    test_by_ratio: np.ndarray
    fingerprint: Fingerprint | None = None


def _mean_over_ratios(values: np.ndarray, stderr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    defined = ~np.isnan(values)
    n = defined.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(
            n > 0, np.where(defined, values, 0.0).sum(axis=0) / np.maximum(n, 1), np.nan
        )
        var = np.where(defined, stderr**2, 0.0).sum(axis=0)
        se = np.where(n > 0, np.sqrt(var) / np.maximum(n, 1), np.nan)
    return mean, se


def cscores(accumulators: Sequence[RatioAccumulator]) -> CScores:
    """C-scores of the training examples (and consistency of the test examples) over ratios.

    Args:
      accumulators: one per subset ratio, all over the same dataset.

    Raises:
      EstimateError: no accumulators, sizes that differ, a ratio given twice, or an
        accumulator without a subset ratio (NaN: made without ``subset_ratio=``).
      FingerprintError: the ratios' runs were evaluated on different datasets or orders
        (accumulators without a fingerprint are not checked).
    """
    accumulators = list(accumulators)
    if not accumulators:
        raise EstimateError("no subset ratios to average")
    missing = [i for i, a in enumerate(accumulators) if math.isnan(a.subset_ratio)]
    if missing:
        raise EstimateError(
            f"accumulator(s) {missing} (of {len(accumulators)}) have no subset ratio (NaN); "
            "C-scores average over subset ratios: give accumulate(..., subset_ratio=) or "
            "accumulate runs read from an experiment"
        )
    accs = sorted(accumulators, key=lambda a: a.subset_ratio)
    sizes = {(a.num_train, a.num_test) for a in accs}
    if len(sizes) > 1:
        raise EstimateError(f"accumulators over different dataset sizes {sorted(sizes)}")
    ratios = np.array([a.subset_ratio for a in accs], np.float64)
    if len(np.unique(ratios)) != len(ratios):
        raise EstimateError(f"subset ratios given more than once: {ratios.tolist()}")
    fingerprint = check_fingerprints(
        [(f"subset ratio {a.subset_ratio:g} ({a.fingerprint_source})", a.fingerprint)
         for a in accs]
    )
    per = [ratio_cscore(a) for a in accs]
    by_ratio = np.stack([p.train for p in per])
    stderr_by_ratio = np.stack([p.train_stderr for p in per])
    scores, stderr = _mean_over_ratios(by_ratio, stderr_by_ratio)
    test_by_ratio = np.stack([p.test for p in per])
    test_scores, _ = _mean_over_ratios(test_by_ratio, np.stack([p.test_stderr for p in per]))
    return CScores(
        scores=scores,
        stderr=stderr,
        by_ratio=by_ratio,
        stderr_by_ratio=stderr_by_ratio,
        count_out_by_ratio=np.stack([p.count_out for p in per]),
        ratios=ratios,
        num_runs_by_ratio=np.array([a.num_runs for a in accs], np.int64),
        test_scores=test_scores,
        test_by_ratio=test_by_ratio,
        fingerprint=fingerprint,
    )
