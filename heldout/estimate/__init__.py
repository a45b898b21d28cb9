"""Memorization, influence and C-scores from heldout runs (pure numpy, no TensorFlow).

For the R runs at one subset ratio, with ``M[r, i]`` = training example i was in run r's subset,
``C[r, i]`` = run r classified training example i correctly and ``T[r, j]`` = run r classified
test example j correctly (Feldman & Zhang 2020, the estimators from random subsets; Jiang et al.
2021, the holdout C-score):

- ``memorization[i] = mean_{r: M[r,i]} C[r,i] - mean_{r: not M[r,i]} C[r,i]``
- ``influence[j, i] = mean_{r: M[r,i]} T[r,j] - mean_{r: not M[r,i]} T[r,j]``
- ``cscore_s[i] = mean_{r at ratio s: not M[r,i]} C[r,i]``; the C-score is the unweighted mean
  of ``cscore_s`` over the ratios where it is defined. For test examples the consistency at
  ratio s is the mean of ``T[r, j]`` over the runs at s.

Where a count is zero the value is undefined and returned as NaN, with the counts alongside
(the original research script returned 0 there, which looks like a real value).

Everything is computed from a `RatioAccumulator`: counts and sums per example, plus (for
influence) the runs' subset masks and test correctness packed to bits, R * (n_train + n_test) / 8
bytes (15 MB for 2,000 CIFAR-10 runs). Their test-by-train co-occurrence sums ``T^T M`` are the
sufficient statistic of the influence: the "without" term is ``(total - with)``, so the whole
influence matrix costs one matrix product with inner dimension R, formed tile by tile with a
bounded working set: exact int32 counts from int8 tiles through ``torch._int_mm`` when PyTorch
is installed (on the CPU, or on CUDA with ``device="cuda"``), else a float32 numpy GEMM (exact
below 2**24 runs); both give the same values bit for bit (`cooccurrence`, `product_backend`).
PyTorch is imported only when a torch backend is used, never by ``import heldout.estimate``.
The co-occurrence matrix itself is never stored (it would be 256 GB for ImageNet); accumulators
over disjoint runs merge by adding their counts and stacking their bits, and save to / load
from `.npz`.

Modules, dependencies flowing one way: `accumulator` (`RatioAccumulator`, its `.npz` format,
reading runs) <- `scores` (memorization, C-scores) and `products` (`cooccurrence`, the counts
``T^T M``; `product_backend`) <- `pairwise` (the influence matrix, top-k lists, high-influence
pairs) <- `summary` (`RatioEstimate`, the `heldout estimate` file). Every public name is re-exported
here, so ``from heldout import estimate; estimate.memorization(acc)`` is the usual way in
(``estimate.influence`` is the function).

Accumulators, C-scores and estimate files carry the dataset fingerprint of their runs
(`heldout.data.fingerprint`: name, version, split sizes, label-order hashes) when the runs had
one (runs written by `heldout.train`; the released runs have none), and runs, shards or ratios
computed on different datasets or orders are refused with `FingerprintError`.

How much of it is noise: `noise` (below `pairwise`, which takes its thresholds) holds the
high-influence pair rule (`noise.pairs_rule`, `INFLUENCE_THRESHOLD`,
`MEMORIZATION_THRESHOLD`), the significance rule of an influence (`is_significant`), the
correct counts an influence is made of (`influence_correct_counts`) and the number of pairs
expected to pass the rule by chance alone (`expected_noise_pairs`, `describe_pairs`). Its
constants and `significance_rule` are importable from here but not part of ``import *``.
"""

from __future__ import annotations

from heldout.data.fingerprint import FingerprintError as FingerprintError
from heldout.errors import EstimateError
from heldout.estimate.accumulator import (
    ACCUMULATOR_FORMAT as ACCUMULATOR_FORMAT,
)
from heldout.estimate.accumulator import (
    Progress as Progress,
)
from heldout.estimate.accumulator import (
    RatioAccumulator,
    accumulate,
    accumulate_experiment,
    accumulate_runs,
    load_accumulator,
    merge_accumulators,
)
from heldout.estimate.noise import (
    INFLUENCE_THRESHOLD as INFLUENCE_THRESHOLD,
)
from heldout.estimate.noise import (
    MEMORIZATION_THRESHOLD as MEMORIZATION_THRESHOLD,
)
from heldout.estimate.noise import (
    SIGNIFICANCE_SIGMAS as SIGNIFICANCE_SIGMAS,
)
from heldout.estimate.noise import (
    describe_pairs,
    expected_noise_pairs,
    influence_correct_counts,
    is_significant,
)
from heldout.estimate.noise import (
    significance_rule as significance_rule,
)
from heldout.estimate.pairwise import (
    DEFAULT_WORKING_BYTES as DEFAULT_WORKING_BYTES,
)
from heldout.estimate.pairwise import (
    HighInfluencePairs,
    high_influence_pairs,
    influence,
    influence_stderr,
    influence_stderr_rows,
    pairs_from_top_k,
    select_high_influence_pairs,
    top_k_influence,
)
from heldout.estimate.products import (
    BACKENDS as BACKENDS,
)
from heldout.estimate.products import (
    DEVICES as DEVICES,
)
from heldout.estimate.products import (
    ProductBackend,
    cooccurrence,
    product_backend,
)
from heldout.estimate.scores import (
    CScores,
    Memorization,
    RatioCScore,
    cscores,
    memorization,
    ratio_cscore,
)
from heldout.estimate.summary import (
    INFLUENCE_KINDS as INFLUENCE_KINDS,
)
from heldout.estimate.summary import (
    TARGETS as TARGETS,
)
from heldout.estimate.summary import (
    RatioEstimate,
    estimate,
    load_estimate,
    save_estimate,
)

# The public names: functions and result types. Constants (ACCUMULATOR_FORMAT, BACKENDS,
# DEVICES, DEFAULT_WORKING_BYTES, INFLUENCE_KINDS, TARGETS), the `Progress` type and
# `FingerprintError` (from
# heldout.data.fingerprint) stay importable from here but are not part of ``import *``.
__all__ = [
    "CScores",
    "EstimateError",
    "HighInfluencePairs",
    "Memorization",
    "ProductBackend",
    "RatioAccumulator",
    "RatioCScore",
    "RatioEstimate",
    "accumulate",
    "accumulate_experiment",
    "accumulate_runs",
    "cooccurrence",
    "cscores",
    "describe_pairs",
    "estimate",
    "expected_noise_pairs",
    "high_influence_pairs",
    "influence",
    "influence_correct_counts",
    "influence_stderr",
    "influence_stderr_rows",
    "is_significant",
    "load_accumulator",
    "load_estimate",
    "memorization",
    "merge_accumulators",
    "pairs_from_top_k",
    "product_backend",
    "ratio_cscore",
    "save_estimate",
    "select_high_influence_pairs",
    "top_k_influence",
]
