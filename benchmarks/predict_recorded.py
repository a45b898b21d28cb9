"""Benchmark: a predictions store filled from the runs' recorded outputs against one filled by
restoring their checkpoints, on the same runs, side by side in one invocation.

`--runs` MLP runs of scikit-learn's digits (the quick start's data and model, `--epochs`
epochs, a checkpoint each, so every run has both) are trained once into a temporary
experiment; then each round times, in a rotated order, the whole command a user runs (a fresh
`python -m heldout predict` process: imports, dataset, store, cross-check) on the training
split:

- ``recorded``: ``--source recorded`` (reads each run's outputs.npz; no TensorFlow, no Dask);
- ``checkpoints, --workers 0``: ``--source checkpoints --workers 0`` (TensorFlow in the command's
  process, one model restored run after run);
- ``checkpoints, 1 worker``: ``--source checkpoints`` with the default workers on a machine
  without GPUs (a local Dask cluster of one worker, started by the command).

Every round checks that the three stores hold the same bytes (``correct``, ``prediction``,
``margin``, ``logit_confidence``, ``mask``, ``epoch``, ``global_step``). The best of the rounds
is printed as runs per second and as the speed-up of ``recorded`` over each (runs/s of
``recorded`` / runs/s of the other). On a machine shared
with other work the absolute figures move; quote the ratios measured in the same run.

Usage::

    PYTHONPATH=$PWD python benchmarks/predict_recorded.py [--runs 64] [--rounds 2] [--epochs 3]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = pathlib.Path(__file__).resolve().parents[1]
ARRAYS = ("correct", "prediction", "margin", "logit_confidence", "mask", "epoch", "global_step")
MODES = {
    "recorded": ["--source", "recorded"],
    "checkpoints, --workers 0": ["--source", "checkpoints", "--workers", "0"],
    "checkpoints, 1 worker": ["--source", "checkpoints"],
}


def train(root: pathlib.Path, runs: int, epochs: int) -> None:
    from heldout.quiet import import_tensorflow

    import_tensorflow()  # without its start-up lines
    from heldout.data.digits import load_digits
    from heldout.data.npz import save_npz_dataset
    from heldout.train import TrainConfig, train_experiment

    dataset = load_digits()
    save_npz_dataset(root / "dataset.npz", dataset)
    train_experiment(root / "experiment", dataset, 0.7, range(runs),
                     TrainConfig(arch="mlp", epochs=epochs, checkpoint_every=1), progress=False)


def timed(root: pathlib.Path, out: pathlib.Path, flags: list[str]) -> float:
    """Wall seconds of one `heldout predict` command into a fresh store."""
    shutil.rmtree(out, ignore_errors=True)
    argv = [sys.executable, "-m", "heldout", "predict", str(root / "experiment"), "--dataset_npz",
            str(root / "dataset.npz"), "--split", "train", "--out", str(out), *flags]
    env = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""}
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr}")
    return elapsed


def same_bytes(stores: list[pathlib.Path]) -> bool:
    import numpy as np

    from heldout.predict import open_store

    opened = [open_store(s) for s in stores]
    return all(np.asarray(s[name]).tobytes() == np.asarray(opened[0][name]).tobytes()
               for s in opened[1:] for name in ARRAYS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()

    root = pathlib.Path(tempfile.mkdtemp(prefix="bench-recorded-"))
    try:
        start = time.perf_counter()
        train(root, args.runs, args.epochs)
        print(f"{args.runs} digits runs trained with a checkpoint each in "
              f"{time.perf_counter() - start:.1f} s; {os.cpu_count()} CPUs (shared, load "
              f"average {os.getloadavg()[0]:.1f}); {args.rounds} rounds", flush=True)
        best = {name: float("inf") for name in MODES}
        store = {name: root / f"{i}.zarr" for i, name in enumerate(MODES)}
        order = list(MODES)
        for round_ in range(args.rounds):
            seconds = {name: timed(root, store[name], MODES[name]) for name in order}
            for name, value in seconds.items():
                best[name] = min(best[name], value)
            equal = same_bytes(list(store.values()))
            print(f"round {round_ + 1}: " + ", ".join(f"{n} {s:.1f} s" for n, s in
                                                      seconds.items())
                  + f"; stores equal byte for byte: {equal}", flush=True)
            if not equal:
                raise SystemExit("the stores differ")
            order = order[1:] + order[:1]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"best of {args.rounds}, {args.runs} runs x 1297 training examples:")
    for name, value in best.items():
        ratio = "" if name == "recorded" else f"  recorded / this: {value / best['recorded']:.1f}x"
        print(f"  {name:26s} {value:6.1f} s  {args.runs / value:7.1f} runs/s{ratio}")


if __name__ == "__main__":
    main()
