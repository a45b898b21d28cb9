"""Training on Dask against training in the process: runs per second, side by side in one run.

The same runs (per-step MLP runs on the first `--train_size` examples of the fmnist32 fixture,
`--epochs` epochs, checkpoints and aux arrays written) are trained, in alternating rounds so
that load from other processes hits both alike:

- ``in process``: `heldout.train.train_experiment` with ``workers=0`` (one trainer built per
  call, as `heldout train --workers 0` does);
- ``1 Dask worker``: the same call with ``scheduler=`` a local cluster of one worker started
  once and warmed up with one run (the worker keeps its dataset and compiled trainer across
  tasks and calls): what a long `heldout train --workers N` costs per run, per worker.

The ratio of runs/s, ``1 Dask worker / in process``, weighs what a task costs (pickled spec,
scheduling, result, one more process on the cores) against the trainer build the worker saves
(the in-process call builds and traces one per call): above 1, keeping the trainer on the worker
more than pays for the task. It is not a parallel speed-up: one worker trains one run at a time.

    python benchmarks/train_dask.py [--runs 6] [--rounds 3] [--epochs 2] [--train_size 500]

Numbers depend on the machine and its load; quote the ratio measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from heldout.cluster import local_cluster  # noqa: E402
from heldout.data import DatasetSpec, load_dataset  # noqa: E402
from heldout.quiet import import_tensorflow  # noqa: E402

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests",
                       "data", "reference", "fmnist32", "dataset.npz")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6, help="runs per round and path")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train_size", type=int, default=500)
    args = parser.parse_args()
    import_tensorflow()
    from heldout.train import TrainConfig, train_experiment

    spec = DatasetSpec(dataset_npz=FIXTURE, train_size=args.train_size)
    dataset = load_dataset(spec, ("train", "test"))
    config = TrainConfig(arch="mlp", path="per_step", epochs=args.epochs, batch_size=50,
                         learning_rate=0.05)
    cluster = local_cluster(1, preload=["heldout.quiet"])
    times: dict[str, list[float]] = {"in process": [], "1 Dask worker": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            address = cluster.scheduler_address
            train_experiment(os.path.join(tmp, "warm"), dataset, 0.5, [0], config,
                             progress=False, scheduler=address, dataset_spec=spec)
            for r in range(args.rounds):
                ids = range(r * args.runs, (r + 1) * args.runs)
                for name, kwargs in (("in process", {}), ("1 Dask worker", {
                        "scheduler": address, "dataset_spec": spec})):
                    out = os.path.join(tmp, name.replace(" ", "_"))
                    t0 = time.perf_counter()
                    result = train_experiment(out, dataset, 0.5, ids, config, progress=False,
                                              **kwargs)
                    seconds = time.perf_counter() - t0
                    assert len(result.trained) == args.runs and not result.failed
                    times[name].append(args.runs / seconds)
    finally:
        cluster.close()
    print(f"{args.runs} per-step MLP runs per round, {args.epochs} epochs on "
          f"{args.train_size // 2} examples, {args.rounds} rounds (median runs/s):")
    base = statistics.median(times["in process"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:14s} {median:6.2f} runs/s   ratio {median / base:5.2f}   "
              f"(rounds: {', '.join(f'{v:.2f}' for v in values)})")


if __name__ == "__main__":
    main()
