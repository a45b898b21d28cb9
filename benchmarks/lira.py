"""Benchmark: LiRA with every run as the target, ours against a per-target loop.

Synthetic inputs (fixed seed, generated before any clock starts): R runs x N examples x V views
of a float32 statistic, location per example + 1.0 for members + unit noise, masks of subset
ratio 0.5. Both sides compute all five variants (median location) in float64:

- ``ours``: `heldout.privacy.lira_scores` for all R targets (float32 output, as `heldout lira`
  stores it): one sort per example and view, every target's leave-one-out statistics by removing
  one value, examples in chunks, two passes.
- ``loop``: a straightforward per-target loop written like the reference
  (``advanced_mia.compute_score_lira``): for each target, the other R - 1 runs' values masked to
  NaN off each side, ``np.nanmedian`` / ``np.nanstd`` over runs, NaN replaced by the column mean,
  ``np.nanstd`` of the pooled deviations for fixed variance, ``scipy.stats.norm`` for the
  Gaussians. It is vectorised over examples (the reference's lists of per-example arrays are
  slower still). It is timed on ``--loop_targets`` targets spread over the runs and
  extrapolated linearly to R (each target costs the same), which the output says.

The two sides run in one process, one after the other, on the same inputs; wall and CPU time
are both printed, and their scores on the loop's targets are compared (max relative
difference). Then the metrics of the five variants over all R x N pairs. Peak memory is numpy's
traced peak (tracemalloc sees numpy's allocations) above the inputs, with the input and output
sizes beside it, and the process's maximum resident set (``ru_maxrss``).

Usage::

    python benchmarks/lira.py                      # R=256, N=50,000, V=2 (about a minute)
    python benchmarks/lira.py --runs 64 --examples 5000 --loop_targets 2   # seconds

The machine may be shared: the header prints the load average (``os.getloadavg``); ratios of
the two sides measured in one run are what counts.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import tracemalloc
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MB = 2**20


def _inputs(runs: int, examples: int, views: int, seed: int):
    rng = np.random.default_rng(seed)
    mask = rng.random((runs, examples), np.float32) < 0.5
    base = rng.normal(0, 3, (1, examples, 1)).astype(np.float32)
    stat = np.empty((runs, examples, views), np.float32)
    for r in range(runs):
        stat[r] = base[0] + mask[r][:, None] + rng.standard_normal((examples, views), np.float32)
    return stat, mask


def _column_mean_fill(a: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(a), np.nanmean(a, axis=0), a)


def loop_scores(stat: np.ndarray, mask: np.ndarray, t: int) -> dict[str, np.ndarray]:
    """Target `t`'s five scores float64 [N], the reference's way."""
    import scipy.stats

    shadows = np.delete(stat, t, axis=0).astype(np.float64)
    keep = np.delete(mask, t, axis=0)[:, :, None]
    phi = stat[t].astype(np.float64)
    loc, scale, fixed = {}, {}, {}
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: no shadow
        for side, sel in (("in", keep), ("out", ~keep)):
            values = np.where(sel, shadows, np.nan)
            loc[side] = _column_mean_fill(np.nanmedian(values, axis=0))
            scale[side] = _column_mean_fill(np.nanstd(values, axis=0))
            fixed[side] = np.nanstd(values - loc[side][None])
    norm, eps = scipy.stats.norm, 1e-30
    return {
        "online": (norm.logpdf(phi, loc["in"], scale["in"] + eps)
                   - norm.logpdf(phi, loc["out"], scale["out"] + eps)).mean(1),
        "online_fixed": (norm.logpdf(phi, loc["in"], fixed["in"] + eps)
                         - norm.logpdf(phi, loc["out"], fixed["out"] + eps)).mean(1),
        "offline": norm.logcdf(phi, loc["out"], scale["out"] + eps).mean(1),
        "offline_fixed": norm.logcdf(phi, loc["out"], fixed["out"] + eps).mean(1),
        "global": phi.mean(1),
    }


def _clock():
    return time.perf_counter(), time.process_time()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=256)
    parser.add_argument("--examples", type=int, default=50_000)
    parser.add_argument("--views", type=int, default=2)
    parser.add_argument("--loop_targets", type=int, default=3,
                        help="targets the loop is timed on (extrapolated to --runs)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from heldout.privacy import VARIANTS, attack_metrics, lira_scores

    r, n, v = args.runs, args.examples, args.views
    stat, mask = _inputs(r, n, v, args.seed)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    blas = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ}
    print(f"LiRA benchmark: R={r} runs x N={n:,} examples x V={v} views, all {r} runs as "
          f"targets; load average {load} on {os.cpu_count()} CPUs"
          + (f"; {blas} set" if blas else ""))
    print(f"inputs: statistic float32 {stat.nbytes / MB:.0f} MiB, mask {mask.nbytes / MB:.0f} MiB")

    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    w0, c0 = _clock()
    ours = lira_scores(stat, mask, dtype=np.float32)
    w1, c1 = _clock()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    out_bytes = sum(a.nbytes for a in ours.scores.values()) + ours.member.nbytes
    ours_wall, ours_cpu = w1 - w0, c1 - c0

    targets = np.unique(np.linspace(0, r - 1, args.loop_targets).round().astype(int))
    w0, c0 = _clock()
    reference = [loop_scores(stat, mask, int(t)) for t in targets]
    w1, c1 = _clock()
    per_target_wall, per_target_cpu = (w1 - w0) / len(targets), (c1 - c0) / len(targets)
    loop_wall, loop_cpu = per_target_wall * r, per_target_cpu * r

    worst = 0.0
    for k, t in enumerate(targets):
        row = int(np.searchsorted(ours.targets, t))
        for name in VARIANTS:
            a = ours.scores[name][row].astype(np.float64)
            b = reference[k][name]
            finite = np.isfinite(a) & np.isfinite(b) & (np.abs(b) < 1e30)
            worst = max(worst, float(np.max(np.abs(a - b)[finite]
                                            / np.maximum(1.0, np.abs(b[finite])))))
    print(f"ours  all {r} targets: {ours_wall:8.2f} s wall, {ours_cpu:8.2f} s CPU")
    print(f"loop  {len(targets)} targets {targets.tolist()}: {per_target_wall:.2f} s wall, "
          f"{per_target_cpu:.2f} s CPU per target; x {r} = {loop_wall:8.1f} s wall, "
          f"{loop_cpu:8.1f} s CPU (extrapolated)")
    print(f"ratio loop / ours: {loop_wall / ours_wall:.0f}x wall, {loop_cpu / ours_cpu:.0f}x CPU "
          f"(target >= 20x)")
    print(f"agreement on the loop's targets: max relative difference {worst:.1e} (float32 "
          "output against the loop's float64)")
    print(f"peak memory of ours: {peak / MB:.0f} MiB traced above the inputs, of which "
          f"{out_bytes / MB:.0f} MiB are the scores and member it returns; maximum resident "
          f"set of the process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}"
          " MiB (loop included)")

    w0, c0 = _clock()
    metrics = {name: attack_metrics(ours.scores[name], ours.member) for name in VARIANTS}
    w1, c1 = _clock()
    print(f"metrics of the {len(VARIANTS)} variants over {r * n:,} pairs each: {w1 - w0:.2f} s "
          f"wall, {c1 - c0:.2f} s CPU; thinned ROC points kept: "
          + ", ".join(f"{name} {len(m.roc_fpr):,}" for name, m in metrics.items()))


if __name__ == "__main__":
    main()
