"""Benchmark: `heldout.attribution.lds` against dattri's `lds`, ridge datamodels against
scikit-learn's `Ridge`, side by side in one invocation (issue 21).

The problem (``--runs`` R = 500, ``--num_train`` 20,000, ``--num_test`` 1,000 by default; all
three scale with ``--scale``): each run trains on exactly half of the training examples (one
subset ratio, so that dattri's equal-size index rows apply), outputs ``f = M w + noise`` float32
[R, n_test], attribution scores ``w + noise`` float32 [n_train, n_test]. Inputs are generated
from a fixed seed before the clock starts.

Methods, each measured in a fresh process (wall and CPU time, and the peak resident set above
what the process held once its inputs were ready: the method's own memory, BLAS buffers
included); every repeat runs them in a rotated order, so that the load of other processes on a
shared machine hits them alike:

- LDS: ``lds`` (`heldout.attribution.lds`, float64 predictions), ``lds_float32`` (float32
  predictions), ``dattri`` (``dattri.metric.lds`` 0.3.0 on the float32 scores, as its users call
  it: a loop over subsets and a ``scipy.stats.spearmanr`` loop over test examples). Then, for
  exactness, dattri once more with float64 scores on the first 100 test examples.
- Ridge datamodels, penalty chosen per test example on 10% held-out runs among 13 penalties,
  then refitted on every run: ``ridge`` (`heldout.attribution.fit_datamodels`, dual form, one
  eigendecomposition shared by every penalty and target) against ``sklearn_ridge``
  (``Ridge(alpha)`` fitted on the other 90% for each penalty, all targets at once, then one
  ``Ridge`` on every run per distinct chosen penalty); the same held-out runs and penalties.
- Ridge with one fixed penalty: ``ridge_fixed`` against ``sklearn_ridge_fixed`` (``Ridge(alpha)``
  on the 0/1 masks with an intercept, the objective `fit_datamodels` reproduces). No target:
  with more training examples than runs, scikit-learn solves the same R x R dual system, so
  about 1x is expected; the gain is in choosing the penalty per test example.

Results are compared: the LDS values (against dattri on float64 scores, whose sums are exact:
equal to 1e-9; float32 sums, dattri's on float32 scores or ``lds_float32``, order some near ties
otherwise, which moves those test examples' LDS by about 1e-5) and the ridge weights (max
absolute difference, target 1e-4). dattri returns float32 correlations for float32 scores, so
its values also differ from ours by their rounding (about 3e-8). Targets: ``lds`` >= 10x faster
than dattri, ``ridge`` >= 5x faster than scikit-learn.

Usage::

    python benchmarks/attribution.py                 # R=500, 20,000 train, 1,000 test
    python benchmarks/attribution.py --scale 0.2     # seconds

Note: OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, where set (CI), roughly halve numpy's GEMM speed
on these CPUs; the header says whether they are, and the load average. Absolute times on a
shared machine are noisy; the paired ratios are what counts.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

LDS_METHODS = ["lds", "lds_float32", "dattri"]
RIDGE_METHODS = ["ridge", "sklearn_ridge"]
FIXED_METHODS = ["ridge_fixed", "sklearn_ridge_fixed"]
VAL_FRACTION, SEED = 0.1, 0
#: Test examples on which dattri is run a second time with float64 scores (exact sums).
EXACT_COLUMNS = 100


def _inputs(runs: int, n_train: int, n_test: int, seed: int) -> dict:
    """Masks bool [R, n_train] (half of the examples each), indices int64 [R, n_train / 2],
    outputs float32 [R, n_test], scores float32 [n_train, n_test]."""
    rng = np.random.default_rng(seed)
    size = n_train // 2
    indices = np.empty((runs, size), np.int64)
    for r in range(runs):
        indices[r] = np.sort(rng.permutation(n_train)[:size])
    masks = np.zeros((runs, n_train), bool)
    np.put_along_axis(masks, indices, True, axis=1)
    w = rng.standard_normal((n_train, n_test), np.float32) * (
        rng.random((n_train, n_test), np.float32) < 0.05)
    outputs = masks.astype(np.float32) @ w
    outputs += rng.standard_normal(outputs.shape, np.float32) * outputs.std()
    scores = w + 0.5 * rng.standard_normal(w.shape, np.float32) * w.std()
    return {"masks": masks, "indices": indices, "outputs": outputs, "scores": scores}


def _grid(masks: np.ndarray) -> np.ndarray:
    """The penalties both ridge fits try: `heldout.attribution`'s default grid on the
    fitting runs (13 values around the mean diagonal of the centred Gram matrix)."""
    from heldout.attribution.datamodels import RIDGE_GRID

    fit, _ = _split(len(masks))
    p = masks[fit].mean(axis=0)
    return RIDGE_GRID * float((p * (1 - p)).sum())


def _split(runs: int):
    from heldout.attribution import validation_split

    return validation_split(runs, VAL_FRACTION, SEED)


def _run(method: str, data: dict) -> np.ndarray:
    from heldout import attribution as attr

    masks, outputs, scores = data["masks"], data["outputs"], data["scores"]
    if method == "lds":
        return attr.lds(scores, masks, outputs).lds
    if method == "lds_float32":
        return attr.lds(scores, masks, outputs, dtype=np.float32).lds
    if method in ("dattri", "dattri_float64"):
        import torch
        from dattri.metric import lds as dattri_lds

        if method == "dattri_float64":  # exact sums, on the first EXACT_COLUMNS test examples
            scores = scores[:, :EXACT_COLUMNS].astype(np.float64)
            outputs = outputs[:, :EXACT_COLUMNS].astype(np.float64)
        rho, _ = dattri_lds(torch.from_numpy(scores), (torch.from_numpy(outputs),
                                                      torch.from_numpy(data["indices"])))
        return rho.numpy()
    grid = data["grid"]
    if method == "ridge":
        return attr.fit_datamodels(masks, outputs, val_fraction=VAL_FRACTION, seed=SEED,
                                   penalties=grid).weights
    if method == "ridge_fixed":
        return attr.fit_datamodels(masks, outputs, penalty=float(np.median(grid))).weights
    from sklearn.linear_model import Ridge

    x, y = masks.astype(np.float64), outputs.astype(np.float64)
    if method == "sklearn_ridge_fixed":
        return Ridge(alpha=float(np.median(grid))).fit(x, y).coef_.astype(np.float32)
    if method == "sklearn_ridge":
        fit, val = _split(len(x))
        best_mse = np.full(y.shape[1], np.inf)
        chosen = np.empty(y.shape[1])
        for alpha in grid:
            predicted = Ridge(alpha=alpha).fit(x[fit], y[fit]).predict(x[val])
            mse = ((predicted - y[val]) ** 2).mean(axis=0)
            better = mse < best_mse
            best_mse[better], chosen[better] = mse[better], alpha
        weights = np.empty((y.shape[1], x.shape[1]), np.float32)
        for alpha in np.unique(chosen):
            cols = np.flatnonzero(chosen == alpha)
            weights[cols] = Ridge(alpha=alpha).fit(x, y[:, cols]).coef_
        return weights
    raise ValueError(method)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _child(method: str, shape: tuple[int, int, int], seed: int, out: str) -> dict:
    data = _inputs(*shape, seed)
    data["grid"] = _grid(data["masks"])
    tiny = _inputs(12, 256, 32, seed)
    tiny["grid"] = _grid(tiny["masks"])[:2]
    _run(method, tiny)  # warm up: imports, BLAS threads, first-call costs
    before = _rss()
    wall, cpu = time.perf_counter(), time.process_time()
    result = _run(method, data)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    np.save(out, np.asarray(result))
    return {"method": method, "wall": wall, "cpu": cpu, "peak_above_inputs": peak - before}


def _measure(args, methods: list[str], shape, directory: str) -> dict[str, list[dict]]:
    """Each method once per repeat, each in a fresh process, the order rotated per repeat."""
    records: dict[str, list[dict]] = {m: [] for m in methods}
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    for rep in range(args.repeats):
        for method in methods[rep % len(methods):] + methods[: rep % len(methods)]:
            out = os.path.join(directory, f"{method}.npy")
            command = [sys.executable, os.path.abspath(__file__), "--child", method, "--shape",
                       ",".join(map(str, shape)), "--seed", str(args.seed), "--out", out]
            done = subprocess.run(command, stdout=subprocess.PIPE, text=True, env=env)
            if done.returncode != 0:
                raise SystemExit(f"{method} failed (exit status {done.returncode})")
            record = json.loads(done.stdout.strip().splitlines()[-1])
            records[method].append(record)
            print(f"  repeat {rep + 1} {method:>20}: {record['wall']:7.2f} s wall, "
                  f"{record['cpu']:7.2f} s CPU, peak {record['peak_above_inputs'] / 1e9:.2f} GB "
                  "above inputs", file=sys.stderr, flush=True)
    return records


def _report(records: dict[str, list[dict]], directory: str, reference: str,
            targets: dict[str, float | None], tolerance: float | None) -> None:
    print(f"{'method':>20} {'wall (min)':>11} {'CPU (min)':>10} {'peak above inputs':>18} "
          f"{'max |diff| vs ' + reference:>24}")
    ref = np.load(os.path.join(directory, f"{reference}.npy"))
    for method, rs in records.items():
        diff = np.nanmax(np.abs(np.load(os.path.join(directory, f"{method}.npy")) - ref))
        print(f"{method:>20} {min(r['wall'] for r in rs):9.2f} s {min(r['cpu'] for r in rs):8.2f}"
              f" s {max(r['peak_above_inputs'] for r in rs) / 1e9:15.2f} GB {diff:24.2e}")
        if tolerance is not None and method != reference:
            print(f"{'':>20} results equal to {tolerance:g}: "
                  f"{'yes' if diff <= tolerance else 'NO'}")
    for method, target in targets.items():
        paired = [o["wall"] / m["wall"] for o, m in zip(records[reference], records[method],
                                                         strict=True)]
        paired_cpu = [o["cpu"] / m["cpu"] for o, m in zip(records[reference], records[method],
                                                          strict=True)]
        best = (min(r["wall"] for r in records[reference])
                / min(r["wall"] for r in records[method]))
        print(f"{method} speed-up over {reference}: {best:.1f}x wall (min over repeats); median "
              f"of paired repeats {np.median(paired):.1f}x wall, {np.median(paired_cpu):.1f}x "
              f"CPU" + (f" (target >= {target:g}x)" if target else " (no target)"))


def _exactness(args, shape, directory: str) -> None:
    """dattri on float64 scores (exact sums) against `lds` on the first test examples; and how
    many test examples float32 sums (dattri's on float32 scores, `lds_float32`) move."""
    saved = args.repeats
    args.repeats = 1
    _measure(args, ["dattri_float64"], shape, directory)
    args.repeats = saved
    load = {m: np.load(os.path.join(directory, f"{m}.npy"))
            for m in ("lds", "lds_float32", "dattri", "dattri_float64")}
    k = len(load["dattri_float64"])
    diff = np.nanmax(np.abs(load["lds"][:k] - load["dattri_float64"]))
    print(f"lds against dattri on float64 scores (first {k} test examples): max |diff| "
          f"{diff:.2e}, equal to 1e-9: {'yes' if diff <= 1e-9 else 'NO'}")
    for method in ("dattri", "lds_float32"):
        moved = np.abs(load[method] - load["lds"]) > 1e-6  # beyond float32 rounding
        print(f"{method} (float32 sums) against lds (float64): {moved.sum()} of "
              f"{len(moved)} test examples differ by more than 1e-6 (near ties ordered "
              f"otherwise), at most {np.nanmax(np.abs(load[method] - load['lds'])):.2e}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="scales R, n_train, n_test")
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--num_train", type=int, default=20_000)
    parser.add_argument("--num_test", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=2, help="rotated repeats")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: lds,ridge,"
                        "fixed")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--shape", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    if args.child:
        shape = tuple(map(int, args.shape.split(",")))
        print(json.dumps(_child(args.child, shape, args.seed, args.out)))
        return 0

    s = args.scale
    shape = (max(8, round(args.runs * s)), round(args.num_train * s), round(args.num_test * s))
    print(f"R={shape[0]}, n_train={shape[1]}, n_test={shape[2]}; numpy {np.__version__}, "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '-')}, "
          f"OPENBLAS_L2_SIZE={os.environ.get('OPENBLAS_L2_SIZE', '-')}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} (at the start)")
    skip = set(filter(None, args.skip.split(",")))
    with tempfile.TemporaryDirectory() as directory:
        if "lds" not in skip:
            print("\nLDS (per-test-example Spearman over runs)")
            records = _measure(args, LDS_METHODS, shape, directory)
            _report(records, directory, "dattri", {"lds": 10, "lds_float32": None}, None)
            _exactness(args, shape, directory)
        if "ridge" not in skip:
            print("\nRidge datamodels, penalty chosen per test example on held-out runs")
            records = _measure(args, RIDGE_METHODS, shape, directory)
            _report(records, directory, "sklearn_ridge", {"ridge": 5}, 1e-4)
        if "fixed" not in skip:
            print("\nRidge datamodels, one fixed penalty")
            records = _measure(args, FIXED_METHODS, shape, directory)
            _report(records, directory, "sklearn_ridge_fixed", {"ridge_fixed": None}, 1e-4)
    print(f"load average {os.getloadavg()[0]:.1f} (at the end)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
