"""The report's membership inference: a `heldout lira` file, or LiRA computed from the train
split's predictions store, checked against the experiment's runs.

`read_membership` loads ``lira.npz`` (`heldout.privacy.load_lira`), `compute_membership` runs
the attack on a store (`heldout.privacy.load_lira_inputs` and `run_lira`, every completed run
of the store's main subset ratio the target once); both check the result with `check_lira`
before anything is shown: every run it used (``runs``, targets and shadows) must be one of the
experiment's, each target's ``member`` row must be that run's subset in its aux arrays, its
``index`` a permutation of the experiment's training examples, and its dataset fingerprint (when
the file has one) that of the dataset's train labels. `Membership` keeps what the page and the
figure show, the exposure in dataset order; `correlation` is Spearman's rho of the exposure
with another per-example score (memorization, C-score) over the examples where both are
defined (the papers link membership inference to memorization: Feldman & Zhang 2020 define
memorization by the same in/out runs, Carlini et al. 2022 discuss which examples are most
exposed).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import numpy as np

from heldout.data.fingerprint import Fingerprint, check_fingerprints
from heldout.errors import (
    ReportError,
)
from heldout.privacy import AttackMetrics, LiraResult, load_lira, load_lira_inputs, run_lira

#: Run names shown when runs are not the experiment's.
NAMED = 3


@dataclasses.dataclass(frozen=True)
class Correlation:
    """Spearman's rho of the exposure with a score, its two-sided p-value (Student's t) and
    the number of training examples where both are defined (NaN rho below 3)."""

    rho: float
    p_value: float
    num_examples: int


@dataclasses.dataclass(frozen=True)
class Membership:
    """What the report shows of a LiRA attack.

    Attributes:
      source: the file it was read from, or the store it was computed from.
      computed: how it was computed from the store ('' when read from a file).
      metrics: variant -> `heldout.privacy.AttackMetrics` (AUC, balanced accuracy, TPR at FPR
        1e-2 .. 1e-5 with NaN where not resolvable, the thinned ROC).
      num_members, num_nonmembers: the (target run, example) pairs of each class.
      target_runs: ``<ratio>/<run_id>`` of the T target runs; runs: of all R runs used.
      views, location, store: as `heldout lira` recorded them.
      exposure, mean_score_in, mean_score_out: float64 [n_train] in dataset order: the mean
        online score over the target runs that trained on each example, over those that held
        it out, and their difference (NaN where a side has no target run).
      with_memorization, with_cscore: `Correlation` of the exposure with each, or None where
        that score is not known.
    """

    source: str
    metrics: dict[str, AttackMetrics]
    num_members: int
    num_nonmembers: int
    target_runs: tuple[str, ...]
    runs: tuple[str, ...]
    views: tuple[str, ...]
    location: str
    store: str
    exposure: np.ndarray
    mean_score_in: np.ndarray
    mean_score_out: np.ndarray
    with_memorization: Correlation | None = None
    with_cscore: Correlation | None = None
    computed: str = ""


RunMask = Callable[[str], np.ndarray]
"""``<ratio>/<run_id>`` of one of the experiment's runs -> its subset, bool [n_train]."""


def check_runs(source: str, runs, known, root: str, what: str) -> None:
    """Refuses a file whose key ``runs`` (``<ratio>/<run_id>``) names runs that are not among
    the experiment's `known` runs, naming the first few: ``what`` of other runs."""
    foreign = [r for r in runs if r not in known]
    if foreign:
        raise ReportError(
            f"{source}: key 'runs' names {len(foreign)} of its {len(runs)} runs that {root} "
            f"does not have ({', '.join(foreign[:NAMED])}"
            f"{', ...' if len(foreign) > NAMED else ''}): {what} of other runs")


def check_lira(result: LiraResult, source: str, root: str, run_names: Mapping[str, int],
               run_mask: RunMask, train_labels_fingerprint: Fingerprint) -> None:
    """Refuses, in one line, a LiRA result that is not of the experiment's runs and data.

    Args:
      result: from `load_lira` or `run_lira`.
      source: names the file (or store) in messages.
      root: the experiment directory, for messages.
      run_names: the experiment's run names (``<ratio>/<run_id>``), as a set or mapping.
      run_mask: the subset of one of those runs (from its aux arrays).
      train_labels_fingerprint: the fingerprint of the dataset's train labels.

    Raises:
      ReportError: runs that are not the experiment's, a target whose ``member`` row is
        not its subset, an ``index`` that does not cover the training examples.
      FingerprintError: a file of another dataset or order (its fingerprint differs).
    """
    n_train = train_labels_fingerprint.split("train")[0]
    index = result.index
    if len(index) != n_train or not np.array_equal(np.sort(index), np.arange(n_train)):
        raise ReportError(
            f"{source}: key 'index' covers {len(index)} examples, not a permutation of the "
            f"{n_train} training examples of the runs in {root}: a LiRA of another dataset")
    check_fingerprints([(source, result.fingerprint),
                        ("the dataset's train labels", train_labels_fingerprint)])
    check_runs(source, result.runs, run_names, root, "a LiRA")
    for t, name in enumerate(result.target_run):
        expected = run_mask(name)[index]
        differ = int(np.sum(expected != result.member[t]))
        if differ:
            raise ReportError(
                f"{source}: key 'member' of target run {name} differs from that run's subset "
                f"in its aux arrays at {differ} of {n_train} examples: a LiRA of other runs")


def _membership(result: LiraResult, source: str, computed: str = "") -> Membership:
    n_train = len(result.index)
    per_example = []
    for values in (result.exposure, result.mean_score_in, result.mean_score_out):
        ordered = np.full(n_train, np.nan)
        ordered[result.index] = values
        per_example.append(ordered)
    first = next(iter(result.metrics.values()))
    return Membership(source, dict(result.metrics), first.num_members, first.num_nonmembers,
                      tuple(result.target_run), tuple(result.runs), tuple(result.views),
                      result.location, result.store, *per_example, computed=computed)


def read_membership(path: str, root: str, run_names: Mapping[str, int], run_mask: RunMask,
                    train_labels_fingerprint: Fingerprint) -> Membership:
    """A `heldout lira` file, checked (`check_lira`).

    Raises:
      NpzError: an unreadable or malformed file; and as `check_lira`.
    """
    result = load_lira(path)
    check_lira(result, path, root, run_names, run_mask, train_labels_fingerprint)
    return _membership(result, path)


def compute_membership(store: str, root: str, run_names: Mapping[str, int], run_mask: RunMask,
                       train_labels_fingerprint: Fingerprint,
                       progress: Callable | None = None) -> Membership:
    """LiRA on a train-split predictions store, as `heldout lira STORE` with its defaults
    (the store's subset ratio with the most completed runs, every run the target once, median
    location, all its views), checked (`check_lira`).

    Raises:
      LiraError: a store LiRA cannot attack (no ``logit_confidence``, fewer than 3 runs at the
        ratio, masks that hold every example or none); StoreError; and as `check_lira`.
    """
    inputs = load_lira_inputs(store)
    result = run_lira(inputs, progress=progress)
    check_lira(result, store, root, run_names, run_mask, train_labels_fingerprint)
    return _membership(result, store, f"as heldout lira does by default: "
                                      f"{inputs.ratio_choice}, every run the target once")


def correlation(exposure: np.ndarray, score: np.ndarray) -> Correlation:
    """Spearman's rho of `exposure` and `score` (float [n_train] each) over the examples where
    both are finite (`heldout.attribution.spearman`, ties ranked by their average)."""
    from heldout.attribution import spearman

    both = np.isfinite(exposure) & np.isfinite(score)
    n = int(both.sum())
    if n < 3:
        return Correlation(float("nan"), float("nan"), n)
    rho, p, _, _ = spearman(exposure[both, None], np.asarray(score, np.float64)[both, None])
    return Correlation(float(rho[0]), float(p[0]), n)
