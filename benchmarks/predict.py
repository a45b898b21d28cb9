"""Benchmark: `heldout predict` against the pure forward pass of one restored model.

Measured side by side in one invocation, on 16 runs x 2,000 images (the training split of the
fmnist32 reference fixture; its 3 checkpoints reused under 16 run ids of a temporary experiment,
symlinked):

- (c) ``forward``: one restored model (`heldout.predict.make_backend`), its logits over the same
  2,000 images 16 times (no restore, no writes): images/s, the machine's limit.
- (a) ``workers0``: `heldout.predict.predict(..., workers=0)`: restore, aux arrays, logits,
  outputs, store writes and the cross-check, images/s = 16 x 2,000 / wall time.
- (b) ``dask1``: the same on one Dask worker process (a `LocalCluster` of one single-threaded
  worker, reached as an external scheduler), images/s likewise; the worker's resident set is
  sampled every 0.5 s during the timed call.

Model building and tracing, a one-off per process, is left out of (a) and (b): each is warmed
up by one call on a 1-run store first. The three are repeated `--repeats` times in turn; the
best of each is reported with the ratios (a)/(c) and (b)/(c) (targets: >= 0.9 and >= 0.85).
On a machine shared with other work the absolute figures move; the ratios are what counts.

Usage::

    PYTHONPATH=$PWD python benchmarks/predict.py [--runs 16] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import tempfile
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests/data/reference/fmnist32"
SOURCES = ["0.5/0", "0.5/7", "0.25/3"]


def make_experiment(root: pathlib.Path, runs: int) -> None:
    for k in range(runs):
        target = root / "0.5" / str(k)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(FIXTURE / "fmnist32-inception" / SOURCES[k % 3], target)


def forward(dataset, runs: int, batch_size: int) -> float:
    """Seconds for `runs` passes of one restored model over the training split."""
    from heldout.experiment import run_from_path
    from heldout.predict import make_backend

    backend = make_backend("tensorflow", "small_inception", dataset.num_classes,
                           dataset.image_shape)
    backend.restore(run_from_path(FIXTURE / "fmnist32-inception" / SOURCES[0]))
    batches = [b.image for b in dataset.batches("train", batch_size)]
    backend.logits(batches[0])  # warm-up
    start = time.perf_counter()
    for _ in range(runs):
        for images in batches:
            backend.logits(images)
    return time.perf_counter() - start


def timed_predict(experiment, spec, out, **kwargs) -> float:
    from heldout.predict import predict

    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    summary = predict(experiment, spec, "train", out, progress=False, **kwargs)
    elapsed = time.perf_counter() - start
    assert summary.ok and summary.matched == summary.total > 0, summary
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=200)
    args = parser.parse_args()

    import psutil
    from distributed import Client, LocalCluster

    from heldout.data import load_dataset
    from heldout.predict import DatasetSpec

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench-predict-"))
    try:
        make_experiment(tmp / "exp", args.runs)
        spec = DatasetSpec(dataset_npz=str(FIXTURE / "dataset.npz"))
        dataset = load_dataset(dataset_npz=spec.dataset_npz)
        n = dataset.num_examples("train")
        images = args.runs * n
        cache: dict = {}
        one = dict(run_ids={0}, batch_size=args.batch_size)
        timed_predict(tmp / "exp", spec, tmp / "warm0.zarr", cache=cache, **one)
        cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        address = cluster.scheduler_address
        timed_predict(tmp / "exp", spec, tmp / "warm1.zarr", scheduler=address, **one)
        monitor = Client(address)
        rss: list[float] = []
        best = {"forward": float("inf"), "workers0": float("inf"), "dask1": float("inf")}
        for _ in range(args.repeats):
            best["forward"] = min(best["forward"], forward(dataset, args.runs, args.batch_size))
            best["workers0"] = min(best["workers0"], timed_predict(
                tmp / "exp", spec, tmp / "a.zarr", cache=cache, batch_size=args.batch_size))
            stop = threading.Event()

            def sample(stop=stop):
                while not stop.is_set():
                    for value in monitor.run(lambda: psutil.Process().memory_info().rss).values():
                        rss.append(value / 2**20)
                    stop.wait(0.5)

            sampler = threading.Thread(target=sample)
            sampler.start()
            try:
                best["dask1"] = min(best["dask1"], timed_predict(
                    tmp / "exp", spec, tmp / "b.zarr", scheduler=address,
                    batch_size=args.batch_size))
            finally:
                stop.set()
                sampler.join()
        monitor.close()
        cluster.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rate = {k: images / v for k, v in best.items()}
    print(f"{args.runs} runs x {n} images, batch {args.batch_size}, {os.cpu_count()} CPUs "
          f"(shared), best of {args.repeats}")
    print(f"(c) forward pass, one restored model: {rate['forward']:8.0f} images/s")
    print(f"(a) --workers 0:                      {rate['workers0']:8.0f} images/s  "
          f"(a)/(c) = {rate['workers0'] / rate['forward']:.2f}  (target >= 0.90)")
    print(f"(b) one Dask worker:                  {rate['dask1']:8.0f} images/s  "
          f"(b)/(c) = {rate['dask1'] / rate['forward']:.2f}  (target >= 0.85)")
    if rss:
        print(f"worker RSS during (b): first {rss[0]:.0f} MiB, last {rss[-1]:.0f} MiB, "
              f"max {max(rss):.0f} MiB over {len(rss)} samples")


if __name__ == "__main__":
    main()
