"""How much of an influence estimate is noise (pure numpy): the high-influence pair rule, the
significance rule, the correct counts behind an influence, and the number of pairs expected to
pass the rule by chance alone.

The rule of Feldman & Zhang (2020) for high-influence pairs (`pairs_rule`): influence >= 0.15
(`INFLUENCE_THRESHOLD`), memorization of the training example >= 0.25
(`MEMORIZATION_THRESHOLD`), same label; `heldout pairs`, the report and the MNIST example all
select pairs with it (`heldout.estimate.select_high_influence_pairs` and friends) and print
their count with `describe_pairs`. An influence is significant (`is_significant`) when
influence - 2 standard errors >= the influence threshold: it passes the pair rule by more than
two standard errors (the influence figure of the MNIST example and the report's cards).

With few runs most pairs that pass the rule are noise: `expected_noise_pairs` is the number
expected to pass when no training example influences any test example. See `heldout.estimate`
for the estimators and `heldout.estimate.influence_stderr_rows` for the standard errors.
"""

from __future__ import annotations

import math

import numpy as np

from heldout.errors import EstimateError

INFLUENCE_THRESHOLD = 0.15
"""Smallest influence of a high-influence pair (Feldman & Zhang 2020, Sec. 4)."""
MEMORIZATION_THRESHOLD = 0.25
"""Smallest memorization of a high-influence pair's training example (ibid.)."""
SIGNIFICANCE_SIGMAS = 2.0
"""An influence is significant when it exceeds the threshold by this many standard errors."""


def pairs_rule(infl_threshold: float = INFLUENCE_THRESHOLD,
               mem_threshold: float = MEMORIZATION_THRESHOLD) -> str:
    """The high-influence pair rule in words, e.g. ``influence >= 0.15, memorization of the
    training example >= 0.25, same label``."""
    return (f"influence >= {infl_threshold:g}, memorization of the training example >= "
            f"{mem_threshold:g}, same label")


def significance_rule(threshold: float = INFLUENCE_THRESHOLD,
                      sigmas: float = SIGNIFICANCE_SIGMAS) -> str:
    """`is_significant` in words: ``influence - 2 stderr >= 0.15``."""
    return f"influence - {sigmas:g} stderr >= {threshold:g}"


def is_significant(influence, stderr, threshold: float = INFLUENCE_THRESHOLD,
                   sigmas: float = SIGNIFICANCE_SIGMAS) -> np.ndarray:
    """bool (the broadcast shape of the inputs): ``influence - sigmas * stderr >= threshold``;
    False where either is NaN (undefined).

    Args:
      influence: float, influence estimates.
      stderr: float, their binomial standard errors (`heldout.estimate.influence_stderr_rows`).
      threshold: the influence threshold of the pair rule (`INFLUENCE_THRESHOLD`).
      sigmas: the margin in standard errors (`SIGNIFICANCE_SIGMAS`).
    """
    with np.errstate(invalid="ignore"):
        return np.asarray(influence, np.float64) - sigmas * np.asarray(stderr, np.float64) \
            >= threshold


def influence_correct_counts(influence, test_correct_total, count_in,
                             count_out) -> tuple[np.ndarray, np.ndarray]:
    """The counts an influence estimate is made of: ``influence = correct_in / count_in -
    correct_out / count_out``, with correct_in (correct_out) the runs that trained on (held
    out) the training example and classified the test example correctly.

    They follow from the influence d and the test example's correct count T over all
    ``R = count_in + count_out`` runs: ``correct_in = count_in (T + d count_out) / R``,
    ``correct_out = T - correct_in`` (rounded: the float32 influence is exact to a few ulp).
    The inputs broadcast against each other.

    Args:
      influence: float, influence estimates (NaN where undefined).
      test_correct_total: int, T of each estimate's test example.
      count_in, count_out: int, runs with / without each estimate's training example.

    Returns:
      (correct_in, correct_out): float64 whole numbers, NaN where the influence is undefined.
    """
    d = np.asarray(influence, np.float64)
    total = np.asarray(test_correct_total, np.float64)
    cin = np.asarray(count_in, np.float64)
    cout = np.asarray(count_out, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        correct_in = np.rint(cin * (total + d * cout) / (cin + cout))
    correct_in = np.where(np.isnan(d), np.nan, correct_in)
    return correct_in, total - correct_in


def _upper_tail(z: np.ndarray) -> np.ndarray:
    """P(Z >= z) for a standard normal Z (``erfc(z / sqrt 2) / 2``), elementwise."""
    return 0.5 * np.vectorize(math.erfc, otypes=[np.float64])(np.asarray(z) / math.sqrt(2.0))


def expected_noise_pairs(
    count_in: np.ndarray,
    count_out: np.ndarray,
    test_correct_total: np.ndarray | None,
    num_runs: int,
    memorization: np.ndarray,
    train_labels: np.ndarray,
    test_labels: np.ndarray,
    infl_threshold: float = INFLUENCE_THRESHOLD,
    mem_threshold: float = MEMORIZATION_THRESHOLD,
) -> float:
    """The number of pairs expected to pass the pair rule when no training example influences
    any test example: how many of the high-influence pairs could be noise at this run count.

    Model (the null hypothesis): the runs are independent; whether a run classifies test
    example j correctly does not depend on which training examples its subset holds, so the
    runs with and without training example i are correct on j with the same probability p_j.
    The influence estimate ``d_ij = correct_in / count_in - correct_out / count_out`` is then
    a difference of two binomial means with mean 0 and the standard error the estimator gives
    (`heldout.estimate.influence_stderr_rows`) at ``q_in = q_out = p_j``:

        sigma_ij = sqrt(p_j (1 - p_j) (1 / count_in[i] + 1 / count_out[i])),

    with ``p_j = test_correct_total[j] / num_runs`` (the pooled accuracy on j, its estimate
    under the null). With the normal approximation to ``d_ij``,

        E[pairs] = sum over candidate pairs (i, j) of P(N(0, 1) >= t / sigma_ij),

    t the influence threshold; the candidates are the pairs the other two conditions of the
    rule keep: ``memorization[i] >= mem_threshold`` (taken as given, not as a random
    quantity) and ``train_labels[i] == test_labels[j]``. A test example every run gets right
    or wrong (p_j 0 or 1) has d_ij = 0 and passes only when t <= 0. The expectation is exact
    whatever the correlations between the estimates (they share runs); the normal
    approximation is rough for small counts and p_j near 0 or 1 (no continuity correction).
    The pairs are grouped by (label, count_in, count_out) and (label, correct count), so the
    cost is a few thousand tail probabilities, not one per pair.

    Args:
      count_in, count_out: int [n_train], runs with / without each training example.
      test_correct_total: int [n_test], runs classifying each test example correctly; None
        when unknown (an estimate file written before it was recorded): every p_j is then
        taken as 1/2, the largest variance, and the result is an upper bound.
      num_runs: R.
      memorization: float [n_train] (NaN never qualifies).
      train_labels: int [n_train]; test_labels: int [n_test].
      infl_threshold, mem_threshold: the rule's thresholds.

    Returns:
      The expected number of pairs (float, >= 0).

    Raises:
      EstimateError: shapes that do not fit, or num_runs < 1.
    """
    count_in, count_out = np.asarray(count_in, np.int64), np.asarray(count_out, np.int64)
    mem, ytr, yte = np.asarray(memorization), np.asarray(train_labels), np.asarray(test_labels)
    n_train, n_test = len(count_in), len(yte)
    if num_runs < 1:
        raise EstimateError(f"num_runs must be >= 1, got {num_runs}")
    for name, value, n in (("count_out", count_out, n_train), ("memorization", mem, n_train),
                           ("train_labels", ytr, n_train)):
        if value.shape != (n,):
            raise EstimateError(f"{name} must have shape ({n},), found {value.shape}")
    if test_correct_total is None:
        variance = np.full(n_test, 0.25)
    else:
        total = np.asarray(test_correct_total, np.float64)
        if total.shape != (n_test,):
            raise EstimateError(f"test_correct_total must have shape ({n_test},), found "
                                f"{total.shape}")
        p = total / num_runs
        variance = p * (1.0 - p)
    with np.errstate(invalid="ignore"):
        candidate = (mem >= mem_threshold) & (count_in > 0) & (count_out > 0)
    # Training side: (label, count_in, count_out) groups; test side: (label, variance) groups.
    train_keys, train_counts = np.unique(
        np.stack([ytr[candidate], count_in[candidate], count_out[candidate]], axis=1), axis=0,
        return_counts=True)
    if not len(train_keys):
        return 0.0
    test_var, test_group = np.unique(variance, return_inverse=True)
    spread = 1.0 / train_keys[:, 1] + 1.0 / train_keys[:, 2]  # [groups]
    sigma = np.sqrt(test_var[:, None] * spread[None, :])  # [test variances, train groups]
    with np.errstate(divide="ignore"):
        prob = np.where(sigma > 0, _upper_tail(infl_threshold / np.where(sigma > 0, sigma, 1.0)),
                        float(infl_threshold <= 0))
    expected = 0.0
    for label in np.unique(train_keys[:, 0]):
        in_label = train_keys[:, 0] == label
        tests = np.bincount(test_group[yte.reshape(-1) == label], minlength=len(test_var))
        expected += float(tests @ prob[:, in_label] @ train_counts[in_label])
    return expected


def describe_pairs(num_pairs: int, expected_noise: float, num_runs: int,
                   infl_threshold: float = INFLUENCE_THRESHOLD,
                   mem_threshold: float = MEMORIZATION_THRESHOLD,
                   upper_bound: bool = False) -> str:
    """The count of high-influence pairs as `heldout pairs`, the report and the MNIST example
    print it: the rule, and how many would pass it by chance (`expected_noise_pairs`), e.g.
    ``31 high-influence pairs (influence >= 0.15, memorization of the training example >= 0.25,
    same label); 12.4 expected by chance alone at 40 runs (if no example influenced any
    other)``, with ``: most of them may be noise`` when that is at least half of them."""
    bound = "at most " if upper_bound else ""
    text = (f"{num_pairs} high-influence pairs ({pairs_rule(infl_threshold, mem_threshold)}); "
            f"{bound}{expected_noise:.1f} expected by chance alone at {num_runs} runs (if no "
            "example influenced any other)")
    if num_pairs and expected_noise >= 0.5 * num_pairs:
        text += ": most of them may be noise"
    return text
