"""The library's own estimators scored by LDS on held-out runs, at several run counts.

Cross-fitting: the runs are split at random into two halves; each estimator is fitted on a
fraction of one half (its first runs in that random order: 25%, 50%, 100% by default) and
scored by `heldout.attribution.lds` on the whole other half, then the halves swap. A test
example's LDS is the mean of its two (the one defined, when the other is NaN). Estimators:

- ``influence_correct``: the heldout influence on correctness (Feldman & Zhang 2020),
- ``influence_output``: the heldout influence on the scored output (mean with - mean without),
- ``datamodels_ridge``: ridge datamodels of the scored output, the penalty chosen per test
  example on held-out runs of the fitting fraction (Ilyas et al. 2022).
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from heldout.attribution.arrays import check_masks, check_outputs
from heldout.attribution.datamodels import fit_datamodels, validation_split
from heldout.attribution.influence import output_influence
from heldout.attribution.lds import MIN_RUNS, lds, summarize
from heldout.errors import AttributionError

METHODS = ("influence_correct", "influence_output", "datamodels_ridge")
DEFAULT_FRACTIONS = (0.25, 0.5, 1.0)


@dataclasses.dataclass(frozen=True)
class BaselineTable:
    """LDS of each estimator at each fraction of the fitting half (`cross_fit_baselines`).

    Attributes:
      methods: the estimators (`METHODS`), K of them.
      fractions: float64 [F] fractions of the fitting half.
      num_fit_runs: int64 [F, 2] runs fitted in each of the two folds.
      num_score_runs: int64 [2] runs scored in each fold.
      lds: float32 [K, F, n_test], per test example, mean over the folds.
      mean, low, high: float64 [K, F], mean LDS and its 95% interval over test examples.
      num_nan: int64 [K, F], test examples with no LDS in either fold.
      seconds: float64 [K, F], fitting time, both folds.
    """

    methods: tuple[str, ...]
    fractions: np.ndarray
    num_fit_runs: np.ndarray
    num_score_runs: np.ndarray
    lds: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    num_nan: np.ndarray
    seconds: np.ndarray

    def to_dict(self) -> dict[str, np.ndarray]:
        """The arrays of the `.npz` file (``methods`` as str)."""
        arrays = {k.name: getattr(self, k.name) for k in dataclasses.fields(self)}
        arrays["methods"] = np.asarray(self.methods, dtype=str)
        return arrays


def cross_fit_baselines(
    masks: np.ndarray,
    outputs: np.ndarray,
    correct: np.ndarray,
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    val_fraction: float = 0.1,
    seed: int = 0,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> BaselineTable:
    """Scores the library's estimators by cross-fitted LDS.

    Args:
      masks: bool [R, n_train], the runs' training subsets.
      outputs: float [R, n_test], the output the LDS is computed on (e.g. margins).
      correct: bool [R, n_test], the runs' correctness (for the correctness influence).
      fractions: fractions of the fitting half, each in (0, 1].
      val_fraction: held-out share of the fitting runs for the ridge penalty.
      seed: the split into halves (and the ridge validation split).
      progress: optional wrapper over the (fold, fraction) steps.

    Raises:
      AttributionError: too few runs for a half to be scored (3) or for the smallest fraction's
        ridge validation split (6), fractions outside (0, 1], or bad arrays.
    """
    masks = check_masks(masks)
    runs = masks.shape[0]
    outputs = check_outputs(outputs, runs)
    correct = check_outputs(correct, runs, "correct")
    fractions = np.asarray(sorted(set(float(f) for f in fractions)), np.float64)
    if not len(fractions) or fractions[0] <= 0 or fractions[-1] > 1:
        raise AttributionError(f"fractions must lie in (0, 1], got {fractions.tolist()}")
    order = np.random.default_rng(seed).permutation(runs)
    halves = (order[: runs // 2], order[runs // 2 :])  # in random order: a fraction is a prefix
    sizes = np.array([[max(1, int(round(f * len(h)))) for h in halves] for f in fractions])
    if min(len(h) for h in halves) < MIN_RUNS:
        raise AttributionError(f"cross-fitting scores each half of the runs: it needs at least "
                               f"{2 * MIN_RUNS} runs, found {runs}")
    try:
        validation_split(int(sizes.min()), val_fraction)
    except AttributionError as e:
        raise AttributionError(
            f"{runs} runs are too few for the ridge datamodels at fraction {fractions[0]:g} of "
            f"a half ({sizes.min()} runs): {e}") from e
    n_test = outputs.shape[1]
    per_fold = np.full((len(METHODS), len(fractions), 2, n_test), np.nan)
    seconds = np.zeros((len(METHODS), len(fractions)))
    steps = [(fold, f) for fold in range(2) for f in range(len(fractions))]
    for fold, f in progress(steps) if progress else steps:
        fit_half, score_half = halves[fold], np.sort(halves[1 - fold])
        rows = np.sort(fit_half[: sizes[f, fold]])  # a random subset of the half
        for k, method in enumerate(METHODS):
            start = time.perf_counter()
            if method == "datamodels_ridge":
                scores = fit_datamodels(masks[rows], outputs[rows], val_fraction=val_fraction,
                                        seed=seed).weights
            else:
                y = correct if method == "influence_correct" else outputs
                scores = output_influence(masks[rows], y[rows], stderr=False).influence
            seconds[k, f] += time.perf_counter() - start
            per_fold[k, f, fold] = lds(scores.T, masks[score_half], outputs[score_half]).lds
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "Mean of empty slice": NaN twice
        values = np.nanmean(per_fold, axis=2)
    mean, low, high = (np.full((len(METHODS), len(fractions)), np.nan) for _ in range(3))
    for k in range(len(METHODS)):
        for f in range(len(fractions)):
            summary = summarize(values[k, f])
            mean[k, f], low[k, f], high[k, f] = summary.mean, summary.low, summary.high
    return BaselineTable(
        METHODS, fractions, sizes.astype(np.int64),
        np.array([len(halves[1]), len(halves[0])], np.int64), values.astype(np.float32), mean,
        low, high, np.isnan(values).sum(axis=2).astype(np.int64), seconds)

