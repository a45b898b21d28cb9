"""Benchmark: memorization + full influence, and top-k influence, from random runs.

Measured side by side in one invocation. The three full-influence methods run in turn (order
rotated), `--repeats` times in one process on the same inputs (paired, so that the load
of other processes on a shared machine hits them alike); wall and CPU time are both reported,
with the minimum over repeats and the median of the paired ratios:

- ``ours``: `heldout.estimate.accumulate` + `memorization` + `influence` (one float32 GEMM
  ``T^T M`` formed tile by tile into the result, "without" = total - "with").
- ``two_products``: the straightforward formula, ``(T^T M) / count_in - (T^T (1 - M)) /
  count_out`` in float32 numpy (two GEMMs and whole-matrix temporaries), plus memorization.
- ``gemm``: a single float32 GEMM of the same shape ``[n_test, R] @ [R, n_train]`` (inputs
  converted to float32 beforehand, not timed): the machine's limit for this method.

Then, each in a fresh process: ``ours`` alone for its maximum resident set, and
`heldout.estimate.top_k_influence` at a shape standing for ImageNet scaled down (1,281,167
training and 50,000 test examples divided by ``--topk_divisor``, R = ``--topk_runs``).

Peak memory is numpy's traced peak (tracemalloc sees numpy's allocations) above what was
allocated before the method started (the inputs), and the process's maximum resident set
(``ru_maxrss``, which also counts the inputs, Python and BLAS buffers). Inputs are generated
(fixed seed) before the clock starts.

Usage::

    python benchmarks/estimate.py                # R=2000, 60,000 train, 10,000 test
    python benchmarks/estimate.py --scale 0.1    # R=200, 6,000 train, 1,000 test (seconds)

Note: OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, where set (CI), roughly halve numpy's GEMM speed
on these CPUs; the header line says whether they are. Absolute times then are pessimistic;
the ratios are what counts.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc

import numpy as np

GIB = 2**30
IMAGENET_TRAIN, IMAGENET_TEST = 1_281_167, 50_000


def _random_bool(rng: np.random.Generator, shape: tuple[int, int], p: float) -> np.ndarray:
    out = np.empty(shape, bool)
    for r0 in range(0, shape[0], 64):
        out[r0 : r0 + 64] = rng.random((min(64, shape[0] - r0), shape[1]), np.float32) < p
    return out


def _inputs(runs: int, n_train: int, n_test: int, seed: int):
    rng = np.random.default_rng(seed)
    masks = _random_bool(rng, (runs, n_train), 0.5)
    train_correct = _random_bool(rng, (runs, n_train), 0.8)
    test_correct = _random_bool(rng, (runs, n_test), 0.7)
    return masks, train_correct, test_correct


def _run(method: str, data: dict, top_k: int):
    from heldout import estimate as est

    masks, train_correct, test_correct = data["masks"], data["train_correct"], data["test"]
    if method == "ours":
        acc = est.accumulate(masks, train_correct, test_correct, subset_ratio=0.5)
        return est.memorization(acc).memorization, est.influence(acc)
    if method == "two_products":
        t = test_correct.astype(np.float32)
        m = masks.astype(np.float32)
        count_in = m.sum(axis=0)
        count_out = len(m) - count_in
        mem = (train_correct & masks).sum(axis=0) / count_in - (train_correct & ~masks).sum(
            axis=0
        ) / count_out
        return mem, (t.T @ m) / count_in - (t.T @ (1 - m)) / count_out
    if method == "gemm":
        return None, data["t_float32"].T @ data["m_float32"]
    if method == "topk":
        acc = est.accumulate(masks, train_correct, test_correct, subset_ratio=0.5)
        index, values = est.top_k_influence(acc, top_k)
        return est.memorization(acc).memorization, values
    raise ValueError(method)


def _measure(
    methods: list[str], repeats: int, shape: tuple[int, int, int], seed: int, top_k: int
) -> list[dict]:
    """Runs `methods` in turn, `repeats` times, in this process: wall and CPU time, and the
    traced peak of numpy allocations above what was allocated before (the inputs)."""
    masks, train_correct, test_correct = _inputs(*shape, seed)
    data = {"masks": masks, "train_correct": train_correct, "test": test_correct}
    input_bytes = masks.nbytes + train_correct.nbytes + test_correct.nbytes
    if "gemm" in methods:
        data["t_float32"] = test_correct.astype(np.float32)
        data["m_float32"] = masks.astype(np.float32)
    tiny = {k: v[:16, :512] for k, v in data.items()}
    with np.errstate(divide="ignore", invalid="ignore"):
        for method in methods:  # warm up: imports, BLAS threads, first-call costs
            _run(method, tiny, 3)
    tracemalloc.start()
    records = []
    for rep in range(repeats):
        # Rotate the order, so that no method always runs first (fresh memory from the kernel).
        for method in methods[rep % len(methods) :] + methods[: rep % len(methods)]:
            before, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            wall, cpu = time.perf_counter(), time.process_time()
            mem, result = _run(method, data, top_k)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            _, peak = tracemalloc.get_traced_memory()
            sample = np.nan_to_num(result[: min(4, len(result)), :256].astype(np.float64), nan=-9)
            records.append(
                {
                    "method": method,
                    "repeat": rep,
                    "wall": wall,
                    "cpu": cpu,
                    "peak_above_inputs": peak - before,
                    "input_bytes": input_bytes
                    + (
                        data["t_float32"].nbytes + data["m_float32"].nbytes
                        if method == "gemm"
                        else 0
                    ),
                    "output_bytes": int(result.nbytes + (0 if mem is None else mem.nbytes)),
                    "max_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                    "sample": sample.tolist(),
                }
            )
            print(
                f"  repeat {rep + 1} {method:>12}: {wall:7.2f} s wall, {cpu:7.2f} s CPU",
                file=sys.stderr,
                flush=True,
            )
            del mem, result
    tracemalloc.stop()
    return records


def _run_child(
    args: argparse.Namespace, methods: list[str], repeats: int, shape: tuple[int, int, int]
) -> list[dict]:
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        ",".join(methods),
        "--repeats",
        str(repeats),
        "--shape",
        ",".join(map(str, shape)),
        "--seed",
        str(args.seed),
        "--top_k",
        str(args.top_k),
    ]
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    if args.threads:
        env["OPENBLAS_NUM_THREADS"] = env["OMP_NUM_THREADS"] = str(args.threads)
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"measurement {methods} failed (exit status {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="scales R, n_train, n_test")
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--num_train", type=int, default=60_000)
    parser.add_argument("--num_test", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats")
    parser.add_argument("--topk_divisor", type=float, default=10.0)
    parser.add_argument("--topk_runs", type=int, default=1000)
    parser.add_argument("--top_k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip_topk", action="store_true")
    parser.add_argument(
        "--threads", type=int, default=0, help="BLAS threads (default: all cores, as numpy)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--shape", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)

    if args.child:
        shape = tuple(map(int, args.shape.split(",")))
        records = _measure(args.child.split(","), args.repeats, shape, args.seed, args.top_k)
        print(json.dumps(records))
        return 0

    s = args.scale
    shape = (max(2, round(args.runs * s)), round(args.num_train * s), round(args.num_test * s))
    runs, n_train, n_test = shape
    print(
        f"full influence + memorization: R={runs}, n_train={n_train}, n_test={n_test} "
        f"(output float32 {_gb(4 * n_train * n_test)}); numpy {np.__version__}, "
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '-')}, "
        f"OPENBLAS_L2_SIZE={os.environ.get('OPENBLAS_L2_SIZE', '-')}, {os.cpu_count()} CPUs, "
        f"BLAS threads {args.threads or 'default'}, load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    methods = ["ours", "gemm", "two_products"]
    records = _run_child(args, methods, args.repeats, shape)
    by = {m: [r for r in records if r["method"] == m] for m in methods}
    best = {m: min(rs, key=lambda r: r["wall"]) for m, rs in by.items()}
    print(
        f"\n{'method':>14} {'wall (min)':>11} {'CPU (min)':>10} {'peak above inputs':>18} "
        f"{'inputs':>9} {'output':>9}"
    )
    for method, r in best.items():
        cpu = min(x["cpu"] for x in by[method])
        print(
            f"{method:>14} {r['wall']:9.2f} s {cpu:8.2f} s {_gb(r['peak_above_inputs']):>18} "
            f"{_gb(r['input_bytes']):>9} {_gb(r['output_bytes']):>9}"
        )

    def ratio(a: str, b: str, key: str) -> tuple[float, float]:
        low = min(x[key] for x in by[a]) / min(x[key] for x in by[b])
        paired = np.median([x[key] / y[key] for x, y in zip(by[a], by[b], strict=True)])
        return low, float(paired)

    diff = np.max(
        np.abs(np.array(best["ours"]["sample"]) - np.array(best["two_products"]["sample"]))
    )
    print(f"\nmax |ours - two_products| on a sample: {diff:.2e}")
    for label, (a, b), target in (
        ("speed-up over the two-product formula", ("two_products", "ours"), ">= 2"),
        ("time relative to one float32 GEMM    ", ("ours", "gemm"), "<= 1.5"),
    ):
        (w, wp), (c, cp) = ratio(a, b, "wall"), ratio(a, b, "cpu")
        print(
            f"{label}: {w:.2f}x wall, {c:.2f}x CPU (min over repeats); median of paired "
            f"repeats {wp:.2f}x wall, {cp:.2f}x CPU (target {target})"
        )
    peak = max(x["peak_above_inputs"] for x in by["ours"])
    budget = best["ours"]["output_bytes"] + GIB
    print(
        f"ours: peak above inputs {_gb(peak)} (traced numpy allocations) vs output + 1 GiB = "
        f"{_gb(budget)}: {'OK' if peak <= budget else 'OVER'}"
    )
    alone = _run_child(args, ["ours"], 1, shape)[0]
    print(
        f"ours alone in a fresh process: max RSS {_gb(alone['max_rss'])} (inputs "
        f"{_gb(alone['input_bytes'])}, Python, numpy and BLAS included) vs output + inputs + "
        f"1 GiB = {_gb(alone['output_bytes'] + alone['input_bytes'] + GIB)}"
    )

    if not args.skip_topk:
        tshape = (
            max(2, round(args.topk_runs * s)),
            round(IMAGENET_TRAIN / args.topk_divisor * s),
            round(IMAGENET_TEST / args.topk_divisor * s),
        )
        r = _run_child(args, ["topk"], 1, tshape)[0]
        full = 4 * tshape[1] * tshape[2]
        print(
            f"\ntop-{args.top_k} influence, ImageNet / {args.topk_divisor:g} * {s:g}: "
            f"R={tshape[0]}, n_train={tshape[1]}, n_test={tshape[2]}: {r['wall']:.2f} s wall, "
            f"{r['cpu']:.2f} s CPU; peak above inputs {_gb(r['peak_above_inputs'])}, max RSS "
            f"{_gb(r['max_rss'])} (inputs {_gb(r['input_bytes'])}; the full matrix would be "
            f"{_gb(full)})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
