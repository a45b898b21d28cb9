"""Metrics of a membership-inference attack over all (target run, example) pairs.

Conventions of the reference `sweep` (tensorflow/privacy ``research/mi_lira_2021/plot.py``,
which calls scikit-learn's ``roc_curve``), for scores where higher means "member":

- ROC: one point per distinct score threshold, from ``(0, 0)`` (threshold +inf) to ``(1, 1)``;
  tied scores move together (a diagonal step).
- AUC: the area under that curve (trapezoids; ties count one half).
- Balanced accuracy: ``max over thresholds of 1 - (FPR + 1 - TPR) / 2``.
- TPR at FPR x: the TPR of the last ROC point whose FPR is below x (strictly). A rate below
  ``1 / (number of non-member pairs)`` cannot be resolved and is NaN.

Carlini et al. 2022 argue for the TPR at low FPR, read on log-log axes.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from heldout.errors import MetricsError

#: The false-positive rates at which the TPR is reported.
FPR_LEVELS = (1e-2, 1e-3, 1e-4, 1e-5)
#: Below this FPR a thinned ROC keeps every point.
KEEP_BELOW = 1e-2
#: Above `KEEP_BELOW` a thinned ROC keeps the first and last point of each FPR bin of this width.
BIN_WIDTH = 1e-3


@dataclasses.dataclass(frozen=True)
class Roc:
    """The full ROC curve (`roc_curve`).

    Attributes:
      fpr, tpr: float64 [P], non-decreasing, from 0 to 1.
      threshold: [P] (the scores' dtype): a pair is called a member when its score is >= the
        threshold (+inf first).
      true_positives, false_positives: int64 [P], the counts behind tpr and fpr.
      num_members, num_nonmembers: the pairs of each class.
    """

    fpr: np.ndarray
    tpr: np.ndarray
    threshold: np.ndarray
    true_positives: np.ndarray
    false_positives: np.ndarray
    num_members: int
    num_nonmembers: int


@dataclasses.dataclass(frozen=True)
class AttackMetrics:
    """An attack's summary (`attack_metrics`).

    Attributes:
      auc, balanced_accuracy: floats.
      fpr_levels: float64 [L]; tpr_at_fpr: float64 [L], NaN where not resolvable.
      roc_fpr, roc_tpr: float64 [P'], the ROC thinned by `thin_roc` (for plots).
      num_members, num_nonmembers: the pairs of each class.
    """

    auc: float
    balanced_accuracy: float
    fpr_levels: np.ndarray
    tpr_at_fpr: np.ndarray
    roc_fpr: np.ndarray
    roc_tpr: np.ndarray
    num_members: int
    num_nonmembers: int


@dataclasses.dataclass(frozen=True)
class Exposure:
    """Per-example exposure (`exposure`): float64 [N] each, NaN where no target run held (or
    left out) the example."""

    mean_in: np.ndarray
    mean_out: np.ndarray
    exposure: np.ndarray


def _check(score, member) -> tuple[np.ndarray, np.ndarray]:
    score, member = np.asarray(score), np.asarray(member)
    if member.dtype != bool or score.shape != member.shape:
        raise MetricsError(f"member: expected bool of the scores' shape {list(score.shape)}, "
                           f"found {member.dtype} {list(member.shape)}")
    if score.dtype.kind != "f":
        raise MetricsError(f"score: expected a float array, found {score.dtype}")
    if np.isnan(score).any():
        raise MetricsError(f"score: {int(np.isnan(score).sum())} NaN values")
    return score, member


def roc_curve(score, member) -> Roc:
    """The ROC of `score` (any shape, e.g. [T, N]; higher = member) against `member` (bool, the
    same shape), every entry one pair.

    Raises:
      MetricsError: shapes or dtypes that do not fit, NaN scores, or no member or no
        non-member pair.
    """
    score, member = _check(score, member)
    s, y = score.ravel(), member.ravel()
    positives = int(y.sum())
    negatives = y.size - positives
    if positives == 0 or negatives == 0:
        raise MetricsError(f"{positives} member and {negatives} non-member pairs: a ROC needs "
                           "both")
    order = np.argsort(s)[::-1]  # descending; ties are grouped below, so any order will do
    s, y = s[order], y[order]
    change = np.empty(len(s), bool)
    np.not_equal(s[1:], s[:-1], out=change[:-1])
    change[-1] = True
    ends = np.flatnonzero(change)  # the last pair of each threshold
    tp = np.zeros(len(ends) + 1, np.int64)
    tp[1:] = np.cumsum(y, dtype=np.int64)[ends]
    fp = np.zeros_like(tp)
    fp[1:] = ends + 1 - tp[1:]
    threshold = np.empty(len(tp), s.dtype)
    threshold[0], threshold[1:] = np.inf, s[ends]
    return Roc(fp / negatives, tp / positives, threshold, tp, fp, positives, negatives)


def auc(roc: Roc) -> float:
    """The area under the ROC (trapezoids)."""
    return float(np.sum(np.diff(roc.fpr) * (roc.tpr[1:] + roc.tpr[:-1]) / 2))


def balanced_accuracy(roc: Roc) -> float:
    """``max over thresholds of 1 - (FPR + 1 - TPR) / 2``."""
    return float(np.max(1 - (roc.fpr + 1 - roc.tpr) / 2))


def tpr_at_fpr(roc: Roc, levels=FPR_LEVELS) -> np.ndarray:
    """float64 [L]: the TPR of the last ROC point with FPR < x, per level x; NaN where
    ``x < 1 / num_nonmembers``."""
    levels = np.asarray(levels, np.float64)
    out = np.full(levels.shape, np.nan)
    for k, x in enumerate(levels):
        if x * roc.num_nonmembers >= 1:
            out[k] = roc.tpr[np.flatnonzero(roc.fpr < x)[-1]]
    return out


def thin_roc(roc: Roc, keep_below: float = KEEP_BELOW, bin_width: float = BIN_WIDTH
             ) -> np.ndarray:
    """int64 [P']: the indices of the ROC points kept for the file and plots.

    Below `keep_below` FPR every point is kept except the inner points of a vertical run (only
    members gained) or a horizontal run (only non-members gained): those change neither the
    curve nor the TPR at any FPR as defined here (the last point with a smaller FPR), so the
    TPR at every FPR below `keep_below` reads the same off the kept points. Above it, the first
    and last point of each FPR bin of `bin_width`; the end points always.
    """
    tp, fp = roc.true_positives, roc.false_positives
    inner = np.zeros(len(tp), bool)
    if len(tp) > 2:
        d_tp, d_fp = np.diff(tp), np.diff(fp)
        inner[1:-1] = ((d_fp[:-1] == 0) & (d_fp[1:] == 0)) | ((d_tp[:-1] == 0) & (d_tp[1:] == 0))
    keep = np.flatnonzero(~inner)
    low = roc.fpr[keep] < keep_below
    bins = np.floor(roc.fpr[keep] / bin_width)
    first = np.r_[True, bins[1:] != bins[:-1]]
    last = np.r_[bins[1:] != bins[:-1], True]
    return keep[low | first | last]


def attack_metrics(score, member, fpr_levels=FPR_LEVELS, keep_below: float = KEEP_BELOW,
                   bin_width: float = BIN_WIDTH) -> AttackMetrics:
    """AUC, balanced accuracy, TPR at each FPR level and the thinned ROC of `score` (higher =
    member) against `member`, over all pairs (see `roc_curve`); everything but the thinned
    curve is computed on the full ROC.

    Raises:
      MetricsError: see `roc_curve`.
    """
    roc = roc_curve(score, member)
    kept = thin_roc(roc, keep_below, bin_width)
    return AttackMetrics(auc(roc), balanced_accuracy(roc), np.asarray(fpr_levels, np.float64),
                         tpr_at_fpr(roc, fpr_levels), roc.fpr[kept], roc.tpr[kept],
                         roc.num_members, roc.num_nonmembers)


def exposure(score, member) -> Exposure:
    """Per-example exposure: the mean score over the target runs that held each example, over
    those that did not, and their difference.

    Args:
      score: float [T, N] (e.g. the online LiRA scores); member: bool [T, N].

    Returns:
      `Exposure`, float64 [N] each (NaN where a side has no target run).
    """
    score, member = _check(score, member)
    s = np.asarray(score, np.float64)
    n_in = member.sum(axis=0)
    n_out = len(member) - n_in
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_in = np.where(member, s, 0.0).sum(axis=0) / n_in
        mean_out = np.where(member, 0.0, s).sum(axis=0) / n_out
    mean_in[n_in == 0] = np.nan
    mean_out[n_out == 0] = np.nan
    return Exposure(mean_in, mean_out, mean_in - mean_out)
