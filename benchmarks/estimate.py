"""Benchmark: `heldout estimate` stage by stage and whole, against the two-product formula.

Everything is measured side by side in one invocation, on a synthetic experiment in the release
layout (default: the issue's 2,000 runs x 60,000 training x 10,000 test examples at subset
ratio 0.7, 2 GB of `aux_arrays.npz`), generated once into a cache directory (not timed) and read
from the page cache afterwards. Each measurement runs in a fresh child process; the methods of a
stage run in turn, `--repeats` times, the order rotated (paired repeats, so that the load of
other processes on a shared machine hits them alike); wall and CPU time are both reported, with
the minimum over repeats and the median of the paired ratios.

1. **Reading** (runs/s): `heldout.estimate.accumulate_runs` over every run, reading and
   validating the aux arrays one after the other (``workers=1``) against the thread pool of
   `heldout.experiment.iter_aux_arrays` (``--workers``, default one per core up to 4), from the
   disk (``cold``: the files dropped from the page cache first with ``POSIX_FADV_DONTNEED``)
   and from the page cache (``warm``); with ``--reference DIR``, also the ``accumulate_runs`` of
   another checkout of heldout (e.g. main before this change: ``git worktree add /tmp/main
   main``), in its own process.
2. **Influence stage** (the full matrix from the accumulator): ``torch`` (exact int32 counts
   from int8 tiles, ``torch._int_mm``), ``numpy`` (float32 GEMM tiles) and ``two_products``
   (the straightforward formula ``(T^T M) / count_in - (T^T (1 - M)) / count_out`` in float32
   numpy: two GEMMs and whole-matrix temporaries, from the bool matrices). The torch and numpy
   results are compared bit for bit (SHA-256 of the whole matrix). Then each backend alone in a
   fresh process for its peak resident set above the accumulator (the result, 2.4 GB, included),
   and `save_estimate` of the result: time, traced numpy allocations and resident-set growth
   (no second copy of the result).
3. **Whole CLI**: ``heldout estimate EXP --ratio 0.7 --out est.npz`` (``--backend auto``, which
   takes torch when installed, and ``--backend numpy``) against a script doing the two-product
   formula the straightforward way: every file read with ``np.load`` one after the other, the
   formula in float32, ``np.savez`` and an fsync (as the command's atomic write does: on a disk
   that writes 0.1 GB/s, flushing 2.4 GB is 20 s that a script leaving the file in the page
   cache would not count). Loading and writing are counted on both sides; each
   command's maximum resident set comes from ``wait4``.
4. **ImageNet-sized top-k** (1,281,167 training x 50,000 test examples, R = 1,000 random runs,
   k = 10): `heldout.estimate.top_k_influence` on a slice of ``--imagenet_slice`` test examples
   against all training examples, timed and extrapolated linearly to the 50,000 test examples
   of a ratio (each slice unpacks the masks again, so the extrapolation is an upper bound), per
   backend, and on CUDA when PyTorch sees a GPU (``--device cuda`` path: the products on the
   GPU, the rest on the CPU).

The header says which BLAS kernel numpy runs (threadpoolctl), how OPENBLAS_CORETYPE /
OPENBLAS_L2_SIZE are set (where set, they roughly halve numpy's GEMM speed on these CPUs, so the
numpy figures are pessimistic there), the PyTorch build and the load average. Sections whose
modules are missing (e.g. no TensorFlow-free CLI dependencies, no torch) say so and are skipped.

Usage::

    python benchmarks/estimate.py                          # the issue's sizes (~15 minutes)
    python benchmarks/estimate.py --scale 0.1 --repeats 1  # R=200, 6,000 x 1,000: a quick check
    python benchmarks/estimate.py --skip cli,imagenet      # stages to leave out
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GB = 1e9
IMAGENET_TRAIN, IMAGENET_TEST, IMAGENET_RUNS = 1_281_167, 50_000, 1_000
RATIO = "0.7"
STAGES = ("read", "influence", "cli", "imagenet")


# --------------------------------------------------------------------------------------------
# The synthetic experiment (generated once, not timed).


def experiment_dir(cache: str, runs: int, n_train: int, n_test: int, seed: int) -> str:
    """``<cache>/estimate-R<runs>-train<n>-test<n>-seed<s>``, generated if it is not complete
    (a ``.complete`` file beside it marks it done)."""
    path = os.path.join(cache, f"estimate-R{runs}-train{n_train}-test{n_test}-seed{seed}")
    if os.path.exists(path + ".complete"):
        return path
    print(f"generating {runs} runs into {path} (once; not timed)", flush=True)
    start = time.perf_counter()
    n_in = round(0.7 * n_train)
    for r in range(runs):
        run_dir = os.path.join(path, RATIO, str(r))
        target = os.path.join(run_dir, "aux_arrays.npz")
        if os.path.exists(target):
            continue
        rng = np.random.default_rng([seed, r])
        order = rng.permutation(n_train)
        index_train, index_removed = order[:n_in], order[n_in:]
        os.makedirs(run_dir, exist_ok=True)
        with open(target + ".tmp", "wb") as f:
            np.savez(
                f,
                correctness_train=rng.random(n_in) < 0.95,
                index_train=index_train,
                correctness_removed=rng.random(n_train - n_in) < 0.75,
                index_removed=index_removed,
                correctness_test=rng.random(n_test) < 0.75,
                index_test=rng.permutation(n_test),
                subsample_idx=rng.permutation(index_train),
            )
        os.replace(target + ".tmp", target)
    open(path + ".complete", "w").close()
    print(f"  generated in {time.perf_counter() - start:.0f} s", flush=True)
    return path


def _runs(exp: str):
    from heldout.experiment import open_experiment

    return open_experiment(exp).runs(RATIO)


def _accumulator(exp: str, cache: str):
    """The experiment's accumulator, read once and cached beside it (`RatioAccumulator.save`)."""
    from heldout import estimate as est

    path = exp + ".accumulator.npz"
    if not os.path.exists(path):
        est.accumulate_runs(_runs(exp)).save(path)
    return est.load_accumulator(path)


# --------------------------------------------------------------------------------------------
# Measurements (each in a child process).


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def _rotations(methods: list[str], repeats: int):
    for rep in range(repeats):
        k = rep % len(methods)
        for method in methods[k:] + methods[:k]:
            yield rep, method


def _max_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _evict(runs) -> None:
    """Drops the runs' files from the page cache (``POSIX_FADV_DONTNEED``, these files only),
    so that the next read comes from the disk, as after a download or on another machine."""
    for run in runs:
        fd = os.open(run.aux_path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def measure_read(args) -> list[dict]:
    """`accumulate_runs` serial and threaded, from the disk (``cold``: the files evicted from the
    page cache first, not timed) and from the page cache (``warm``); with ``--child_arg
    reference``, the ``accumulate_runs`` of the checkout first on PYTHONPATH, as it reads."""
    from heldout import estimate as est

    runs = _runs(args.exp)
    if args.child_arg == "reference":
        methods = {"reference": lambda: est.accumulate_runs(runs)}
    else:
        methods = {name: lambda w=w: est.accumulate_runs(runs, workers=w)
                   for name, w in (("serial", 1), ("threaded", args.workers))}
    methods = {f"{name} {state}": fn for state in ("cold", "warm")
               for name, fn in methods.items()}
    est.accumulate_runs(runs[:4])  # imports, first-call costs
    records, bits = [], set()
    for rep, method in _rotations(list(methods), args.repeats):
        if method.endswith("cold"):
            _evict(runs)
        else:
            methods[method]()  # the files into the page cache
        acc, wall, cpu = _timed(methods[method])
        bits.add(hashlib.sha256(acc.mask_bits.tobytes() + acc.test_bits.tobytes()).hexdigest())
        records.append({"method": method, "repeat": rep, "wall": wall, "cpu": cpu,
                        "runs": len(runs)})
        _say(f"  repeat {rep + 1} {method:>15}: {len(runs) / wall:7.1f} runs/s ({wall:.2f} s "
             f"wall, {cpu:.2f} s CPU)")
    assert len(bits) == 1, "the reading methods gave different runs"
    return records


def _two_products(masks: np.ndarray, test_correct: np.ndarray) -> np.ndarray:
    """The straightforward float32 formula: two GEMMs and whole-matrix temporaries."""
    t = test_correct.astype(np.float32)
    m = masks.astype(np.float32)
    count_in = m.sum(axis=0)
    count_out = len(m) - count_in
    with np.errstate(divide="ignore", invalid="ignore"):
        return (t.T @ m) / count_in - (t.T @ (1 - m)) / count_out


def measure_influence(args) -> list[dict]:
    from heldout import estimate as est
    from heldout.estimate.accumulator import _unpack

    acc = _accumulator(args.exp, args.cache_dir)
    methods = ["torch", "numpy", "two_products"] if _has_torch() else ["numpy", "two_products"]
    masks = _unpack(acc.mask_bits, 0, acc.num_train, dtype=bool)
    test = _unpack(acc.test_bits, 0, acc.num_test, dtype=bool)
    tiny = est.accumulate(masks[:16, :512], masks[:16, :512], test[:16, :64])
    for method in methods[:-1]:
        est.influence(tiny, backend=method)  # imports, thread pools
    records = []
    for rep, method in _rotations(methods, args.repeats):
        if method == "two_products":
            result, wall, cpu = _timed(lambda: _two_products(masks, test))
        else:
            result, wall, cpu = _timed(lambda m=method: est.influence(acc, backend=m))
        record = {"method": method, "repeat": rep, "wall": wall, "cpu": cpu,
                  "sample": np.nan_to_num(result[:4, :256], nan=-9.0).tolist()}
        if method != "two_products" and rep == 0:
            record["sha256"] = hashlib.sha256(result).hexdigest()
        records.append(record)
        _say(f"  repeat {rep + 1} {method:>12}: {wall:7.2f} s wall, {cpu:7.2f} s CPU")
        del result
    return records


def measure_alone(args) -> list[dict]:
    """One backend's influence in this fresh process: resident-set growth; then the estimate
    file written by `save_estimate`: time, traced allocations, resident-set growth."""
    from heldout import estimate as est

    acc = _accumulator(args.exp, args.cache_dir)
    backend = args.child_arg
    est.influence(est.accumulate(np.eye(16, 64, dtype=bool), np.eye(16, 64, dtype=bool),
                                 np.eye(16, 24, dtype=bool)), backend=backend)
    before = _max_rss()
    result, wall, _ = _timed(lambda: est.estimate(acc, "full", backend=backend))
    peak = _max_rss()
    with tempfile.TemporaryDirectory(dir=args.out_dir) as tmp:
        tracemalloc.start()
        _, save_wall, _ = _timed(lambda: est.save_estimate(os.path.join(tmp, "est.npz"), result))
        traced = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        size = os.path.getsize(os.path.join(tmp, "est.npz"))
    return [{"method": backend, "wall": wall, "rss_before": before, "rss_growth": peak - before,
             "result_bytes": result.influence.nbytes, "save_wall": save_wall, "file_bytes": size,
             "save_traced_peak": traced, "save_rss_growth": _max_rss() - peak}]


def two_product_cli(exp: str, out: str) -> None:
    """The straightforward whole command: np.load every file in turn, the two-product formula
    in float32, memorization, np.savez and an fsync of the file (the baseline of the CLI
    comparison; `heldout estimate` writes atomically, fsync included, so both outputs are on
    the disk when the command ends, not in the page cache)."""
    ratio_dir = os.path.join(exp, RATIO)
    names = sorted((n for n in os.listdir(ratio_dir) if n.isdigit()), key=int)
    masks = correct = test = None
    for r, name in enumerate(names):
        with np.load(os.path.join(ratio_dir, name, "aux_arrays.npz")) as z:
            it, ir, ie = z["index_train"], z["index_removed"], z["index_test"]
            if masks is None:
                masks = np.zeros((len(names), len(it) + len(ir)), bool)
                correct = np.zeros_like(masks)
                test = np.zeros((len(names), len(ie)), bool)
            masks[r, it] = True
            correct[r, it] = z["correctness_train"]
            correct[r, ir] = z["correctness_removed"]
            test[r, ie] = z["correctness_test"]
    influence = _two_products(masks, test)
    count_in = masks.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mem = (correct & masks).sum(0) / count_in - (correct & ~masks).sum(0) / (
            len(masks) - count_in)
    np.savez(out, memorization=mem, influence=influence)
    with open(out, "rb") as f:  # on the disk, as `heldout estimate`'s atomic write leaves it
        os.fsync(f.fileno())


def _run_command(command: list[str], env: dict) -> dict:
    """Runs a command to its end: wall seconds, CPU seconds and maximum resident set (wait4)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    stdout, stderr = process.stdout.read().decode(), process.stderr.read().decode()
    process.stdout.close()
    process.stderr.close()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{stderr[-3000:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
            "max_rss": usage.ru_maxrss * 1024, "stdout": stdout.strip()}


def measure_cli(args) -> list[dict]:
    env = _child_env(args)
    methods = {
        "two_products": [sys.executable, os.path.abspath(__file__), "--child", "two_product_cli",
                         "--exp", args.exp],
        "heldout_numpy": [sys.executable, "-m", "heldout", "estimate", args.exp, "--ratio",
                          RATIO, "--backend", "numpy"],
    }
    if _has_torch():
        methods["heldout_auto"] = [sys.executable, "-m", "heldout", "estimate", args.exp,
                                   "--ratio", RATIO, "--backend", "auto"]
    order = [m for m in ("heldout_auto", "heldout_numpy", "two_products") if m in methods]
    records = []
    with tempfile.TemporaryDirectory(dir=args.out_dir) as tmp:
        out = os.path.join(tmp, "est.npz")
        for rep, method in _rotations(order, args.repeats):
            record = _run_command(methods[method] + ["--out", out], env)
            record.update(method=method, repeat=rep, file_bytes=os.path.getsize(out))
            if rep == 0:
                with np.load(out) as z:
                    influence = z["influence"]
                    record["sha256"] = hashlib.sha256(influence).hexdigest()
                    record["sample"] = np.nan_to_num(influence[:4, :256], nan=-9.0).tolist()
                    del influence
            os.remove(out)
            records.append(record)
            _say(f"  repeat {rep + 1} {method:>13}: {record['wall']:7.2f} s wall, "
                 f"{record['cpu']:7.2f} s CPU, max RSS {record['max_rss'] / GB:.2f} GB")
    return records


def _imagenet_accumulator(runs: int, n_train: int, n_test: int, seed: int):
    from heldout import estimate as est

    rng = np.random.default_rng(seed)

    def bits(n: int, width: int) -> np.ndarray:  # bool [n, width], half of them set
        random = rng.integers(0, 256, (n, (width + 7) // 8), np.uint8)
        return np.unpackbits(random, axis=1)[:, :width].view(bool)

    acc = est.RatioAccumulator(n_train, n_test, subset_ratio=0.5)
    for r0 in range(0, runs, 50):
        n = min(50, runs - r0)
        masks = bits(n, n_train)
        acc.add_runs(masks, masks, bits(n, n_test), [f"r{r0 + k}" for k in range(n)])
    return acc


def measure_imagenet(args) -> list[dict]:
    from heldout import estimate as est

    runs = max(2, round(IMAGENET_RUNS * args.scale))
    n_train = round(IMAGENET_TRAIN * args.scale)
    n_test = min(args.imagenet_slice, round(IMAGENET_TEST * args.scale))
    acc = _imagenet_accumulator(runs, n_train, n_test, args.seed)
    methods = [("torch", "cpu"), ("numpy", "cpu")] if _has_torch() else [("numpy", "cpu")]
    if _has_cuda():
        methods.insert(0, ("torch", "cuda"))
    tiny = _imagenet_accumulator(4, 512, 64, args.seed)
    records = []
    for backend, device in methods:
        est.top_k_influence(tiny, args.top_k, backend=backend, device=device)  # warm-up
        (index, values), wall, cpu = _timed(lambda b=backend, d=device: est.top_k_influence(
            acc, args.top_k, backend=b, device=d))
        records.append({"method": f"{backend}-{device}", "wall": wall, "cpu": cpu,
                        "runs": runs, "n_train": n_train, "n_test": n_test,
                        "full_test": round(IMAGENET_TEST * args.scale),
                        "sha256": hashlib.sha256(index.tobytes() + values.tobytes()).hexdigest()})
        _say(f"  {backend}-{device}: {wall:.1f} s wall, {cpu:.1f} s CPU for {n_test} test "
             "examples")
    return records


def _has_torch() -> bool:
    from heldout.estimate.products import _import_torch

    return _import_torch() is not None


def _has_cuda() -> bool:
    from heldout.estimate.products import _import_torch

    torch = _import_torch()
    return torch is not None and torch.cuda.is_available()


CHILDREN = {"read": measure_read, "influence": measure_influence, "alone": measure_alone,
            "cli": measure_cli, "imagenet": measure_imagenet}


# --------------------------------------------------------------------------------------------
# The parent: runs the children, prints the tables and ratios.


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _child_env(args, source: str = ROOT) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = source + os.pathsep + env.get("PYTHONPATH", "")
    if args.threads:
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[name] = str(args.threads)
    return env


def _child(args, stage: str, child_arg: str = "", source: str = ROOT) -> list[dict]:
    command = [sys.executable, os.path.abspath(__file__), "--child", stage,
               "--child_arg", child_arg, "--exp", args.exp, "--cache_dir", args.cache_dir,
               "--out_dir", args.out_dir, "--repeats", str(args.repeats),
               "--workers", str(args.workers), "--scale", str(args.scale),
               "--imagenet_slice", str(args.imagenet_slice), "--top_k", str(args.top_k),
               "--seed", str(args.seed)]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True,
                          env=_child_env(args, source))
    if done.returncode != 0:
        raise SystemExit(f"measurement {stage} failed (exit status {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _environment(args) -> str:
    code = (
        "import json, os, numpy, threadpoolctl\n"
        "blas = [p for p in threadpoolctl.threadpool_info() if p['user_api'] == 'blas']\n"
        "info = {'numpy': numpy.__version__, 'blas': blas}\n"
        "try:\n"
        "    import torch\n"
        "    info['torch'] = torch.__version__\n"
        "    info['torch_threads'] = torch.get_num_threads()\n"
        "    info['cuda'] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None\n"
        "    info['cpu_capability'] = torch.backends.cpu.get_cpu_capability()\n"
        "except ImportError:\n"
        "    info['torch'] = None\n"
        "print(json.dumps(info))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                          env=_child_env(args))
    info = json.loads(done.stdout) if done.returncode == 0 else {"blas": [], "torch": None}
    blas = "; ".join(f"{b['internal_api']} {b['version']} kernel {b.get('architecture')}, "
                     f"{b['num_threads']} threads" for b in info.get("blas", [])) or "unknown"
    torch = (f"torch {info['torch']} ({info.get('cpu_capability')}, "
             f"{info.get('torch_threads')} threads; CUDA: {info.get('cuda') or 'none'})"
             if info.get("torch") else "torch not installed")
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor()) if os.path.exists(
        "/proc/cpuinfo") else platform.processor()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{cpu}, {os.cpu_count()} CPUs, load average {load} (1, 5, 15 min)\n"
            f"numpy {info.get('numpy')}: BLAS {blas}; OPENBLAS_CORETYPE="
            f"{os.environ.get('OPENBLAS_CORETYPE', '(unset)')}, OPENBLAS_L2_SIZE="
            f"{os.environ.get('OPENBLAS_L2_SIZE', '(unset)')}\n{torch}")


def _by(records: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in records:
        out.setdefault(r["method"], []).append(r)
    return out


def _ratio(by: dict, a: str, b: str, key: str) -> tuple[float, float]:
    """(min a / min b, median of paired a / b)."""
    low = min(x[key] for x in by[a]) / min(x[key] for x in by[b])
    paired = float(np.median([x[key] / y[key] for x, y in zip(by[a], by[b], strict=True)]))
    return low, paired


def _ratio_line(label: str, by: dict, a: str, b: str, target: str) -> str:
    (w, wp), (c, cp) = _ratio(by, a, b, "wall"), _ratio(by, a, b, "cpu")
    return (f"{label}: {w:.2f}x wall, {c:.2f}x CPU (min over repeats); median of paired "
            f"repeats {wp:.2f}x wall, {cp:.2f}x CPU (target {target})")


def _table(by: dict, extra=None) -> None:
    print(f"{'method':>14} {'wall (min)':>11} {'CPU (min)':>10}" + (f" {extra[0]:>14}"
                                                                     if extra else ""))
    for method, rs in by.items():
        best = min(rs, key=lambda r: r["wall"])
        line = f"{method:>14} {best['wall']:9.2f} s {min(r['cpu'] for r in rs):8.2f} s"
        print(line + (f" {extra[1](best):>14}" if extra else ""))


def _sample_diff(by: dict, a: str, b: str) -> float:
    return float(np.max(np.abs(np.array(by[a][0]["sample"]) - np.array(by[b][0]["sample"]))))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0,
                        help="scales R, n_train, n_test (and the ImageNet sizes)")
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--num_train", type=int, default=60_000)
    parser.add_argument("--num_test", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats")
    parser.add_argument("--workers", type=int, default=0,
                        help="reading threads (default: heldout's, one per core up to 4)")
    parser.add_argument("--imagenet_slice", type=int, default=1024,
                        help="test examples timed for the ImageNet top-k (extrapolated)")
    parser.add_argument("--top_k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reference", default=None, metavar="DIR",
                        help="another checkout of heldout whose reading is timed too")
    parser.add_argument("--skip", default="", help=f"comma-separated stages of {STAGES}")
    parser.add_argument("--threads", type=int, default=0,
                        help="BLAS/OpenMP threads (default: as the libraries choose)")
    parser.add_argument("--cache_dir", default=os.environ.get(
        "HELDOUT_BENCH_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "heldout-bench")),
        help="where the synthetic experiment is generated once (env HELDOUT_BENCH_CACHE)")
    parser.add_argument("--out_dir", default=None,
                        help="where outputs are written (default: the cache directory)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child_arg", default="", help=argparse.SUPPRESS)
    parser.add_argument("--exp", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.out_dir = args.out_dir or args.cache_dir
    if not args.workers:
        sys.path.insert(0, ROOT)
        from heldout.experiment import DEFAULT_READ_WORKERS

        args.workers = DEFAULT_READ_WORKERS
    sys.stdout.reconfigure(line_buffering=True)

    if args.child == "two_product_cli":
        two_product_cli(args.exp, args.out)
        return 0
    if args.child:
        print(json.dumps(CHILDREN[args.child](args)))
        return 0

    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if skip - set(STAGES):
        parser.error(f"--skip takes stages of {STAGES}, got {sorted(skip - set(STAGES))}")
    s = args.scale
    runs, n_train, n_test = (max(2, round(args.runs * s)), round(args.num_train * s),
                             round(args.num_test * s))
    print(_environment(args))
    os.makedirs(args.cache_dir, exist_ok=True)
    args.exp = experiment_dir(args.cache_dir, runs, n_train, n_test, args.seed)
    print(f"\nexperiment: {runs} runs x {n_train} training x {n_test} test examples at ratio "
          f"{RATIO} ({args.exp}); full influence float32 {4 * n_train * n_test / GB:.2f} GB; "
          f"{args.repeats} interleaved repeats")

    if "read" not in skip:
        print(f"\n1. reading the runs' aux arrays (accumulate_runs), serial vs {args.workers} "
              "threads")
        records = _child(args, "read")
        if args.reference:
            records += _child(args, "read", "reference", source=os.path.abspath(args.reference))
        by = _by(records)
        _table(by, ("runs/s (best)", lambda r: f"{r['runs'] / r['wall']:.1f}"))
        for state in ("cold", "warm"):
            print(_ratio_line(f"threaded speed-up, {state}", by, f"serial {state}",
                              f"threaded {state}", ">= 1.7 on two cores"))
            if args.reference:
                print(_ratio_line(f"threaded speed-up over {args.reference}, {state}", by,
                                  f"reference {state}", f"threaded {state}", "-"))

    if "influence" not in skip:
        print("\n2. influence stage: the full matrix from the accumulator")
        by = _by(_child(args, "influence"))
        _table(by)
        if "torch" in by:
            same = by["torch"][0]["sha256"] == by["numpy"][0]["sha256"]
            print(f"torch and numpy results identical bit for bit (SHA-256 of the matrix): "
                  f"{'yes' if same else 'NO'}; max |numpy - two_products| on a sample: "
                  f"{_sample_diff(by, 'numpy', 'two_products'):.2e}")
            print(_ratio_line("int8 torch speed-up over float32 numpy", by, "numpy", "torch",
                              ">= 2.5"))
            print(_ratio_line("int8 torch speed-up over the two-product formula", by,
                              "two_products", "torch", "-"))
        print(_ratio_line("float32 numpy speed-up over the two-product formula", by,
                          "two_products", "numpy", ">= 2"))
        for backend in (["torch"] if "torch" in by else []) + ["numpy"]:
            r = _child(args, "alone", backend)[0]
            print(f"{backend} alone in a fresh process: {r['wall']:.2f} s; peak RSS growth "
                  f"{r['rss_growth'] / GB:.2f} GB for a result of {r['result_bytes'] / GB:.2f} "
                  f"GB (working set <= {512 * 2**20 / GB:.2f} GB); save_estimate "
                  f"{r['file_bytes'] / GB:.2f} GB in {r['save_wall']:.2f} s "
                  f"({r['file_bytes'] / r['save_wall'] / GB:.2f} GB/s, fsync included), traced "
                  f"peak {r['save_traced_peak'] / 2**20:.0f} MiB, RSS growth "
                  f"{r['save_rss_growth'] / 2**20:.0f} MiB (no second copy)")

    if "cli" not in skip and subprocess.run(
            [sys.executable, "-c", "import heldout.cli"], env=_child_env(args),
            capture_output=True).returncode != 0:
        print("\n3. whole command: skipped, `heldout.cli` does not import here (its "
              "dependencies, e.g. tqdm, are missing)")
        skip.add("cli")
    if "cli" not in skip:
        print("\n3. whole command, loading and writing counted: heldout estimate against the "
              "two-product script")
        by = _by(_child(args, "cli"))
        _table(by, ("max RSS", lambda r: f"{r['max_rss'] / GB:.2f} GB"))
        ours = "heldout_auto" if "heldout_auto" in by else "heldout_numpy"
        print(f"{ours} printed: {by[ours][0]['stdout'].splitlines()[-1]}")
        if "heldout_auto" in by:
            same = by["heldout_auto"][0]["sha256"] == by["heldout_numpy"][0]["sha256"]
            print(f"--backend auto and --backend numpy files: influence identical bit for bit: "
                  f"{'yes' if same else 'NO'}")
        print(f"max |heldout - two_products| on a sample: "
              f"{_sample_diff(by, ours, 'two_products'):.2e}")
        for method in [m for m in ("heldout_auto", "heldout_numpy") if m in by]:
            print(_ratio_line(f"{method} time relative to the two-product script", by, method,
                              "two_products", "<= 0.30" if method == "heldout_auto" else "-"))

    if "imagenet" not in skip:
        print(f"\n4. ImageNet-sized top-{args.top_k} influence per ratio (R={IMAGENET_RUNS}, "
              f"{IMAGENET_TRAIN} x {IMAGENET_TEST}, scaled by {s:g}): a slice of "
              f"{args.imagenet_slice} test examples timed, extrapolated linearly")
        records = _child(args, "imagenet")
        for r in records:
            per_ratio = r["wall"] * r["full_test"] / r["n_test"]
            print(f"{r['method']:>11}: {r['wall']:.1f} s wall ({r['cpu']:.1f} s CPU) for "
                  f"{r['n_test']} test x {r['n_train']} training examples, R={r['runs']} -> "
                  f"{per_ratio:.0f} s = {per_ratio / 60:.1f} min per ratio "
                  f"({r['full_test']} test examples)")
        if len({r["sha256"] for r in records}) > 1:
            print("  WARNING: the backends' top-k lists differ")
        if not _has_cuda_here():
            print("  CUDA: none (PyTorch sees no GPU here, or is not installed)")
    return 0


def _has_cuda_here() -> bool:
    sys.path.insert(0, ROOT)
    return _has_cuda()


if __name__ == "__main__":
    sys.exit(main())
