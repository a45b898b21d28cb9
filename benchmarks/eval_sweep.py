"""Per-run verification time: the naive way against `heldout`'s, measured side by side.

(a) naive: for every run, a fresh model, a fresh traced function, restore, evaluate;
(b) ours: one `Evaluator` (one model, one trace), each run restored into it;
(c) for reference, one `python demo.py` process per run (what verifying runs with a per-run
    script costs: interpreter, TensorFlow import, dataset, model and trace every time).

Both verify the same runs (the reference experiment's runs, cycled to --num_runs) on the same
split, alternating a/b per run so background load hits both alike. Also prints the process's
resident memory after each of our runs, to show it stays flat.

    python benchmarks/eval_sweep.py                       # ../shared/reference/fmnist32
    python benchmarks/eval_sweep.py --experiment DIR --dataset cifar10:3.0.2 --num_runs 20
"""

import argparse
import itertools
import os
import pathlib
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import tensorflow as tf  # noqa: E402

from heldout.checkpoint import find_final_checkpoint  # noqa: E402
from heldout.data import DatasetSpec, load_dataset  # noqa: E402
from heldout.evaluate import make_backend_for, verify_run  # noqa: E402
from heldout.experiment import CHECKPOINT, select_runs  # noqa: E402
from heldout.models import (  # noqa: E402
    build_model,
    create_variables,
    default_arch,  # noqa: E402
)

FMNIST = pathlib.Path(__file__).resolve().parents[2] / "shared" / "reference" / "fmnist32"


def naive_verify(run, dataset, split, batch_size):
    """What a script that rebuilds everything per run does: a new model, restored with
    `tf.train.Checkpoint`, and a new traced function."""
    model = build_model(default_arch(dataset.name, dataset.image_shape), dataset.num_classes)
    create_variables(model, dataset.image_shape)
    prefix = find_final_checkpoint(run.path)[0].prefix
    tf.train.Checkpoint(model=model).read(prefix).expect_partial()
    fn = tf.function(lambda images: model(images, is_training=False))
    aux = run.load_aux()
    correct = []
    for batch in dataset.batches(split, batch_size):
        correct.append(np.argmax(fn(batch.image).numpy(), axis=1) == batch.label)
    return np.array_equal(np.concatenate(correct), aux.correctness(split))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default=str(FMNIST / "fmnist32-inception"))
    parser.add_argument("--dataset", default=None)
    parser.add_argument("--dataset_npz", default=None)
    parser.add_argument("--split", default="test")
    parser.add_argument("--num_runs", type=int, default=20)
    parser.add_argument("--batch_size", type=int, default=200)
    parser.add_argument("--script_runs", type=int, default=3,
                        help="runs timed as one demo.py process each (0: skip)")
    args = parser.parse_args()
    if args.dataset is None and args.dataset_npz is None:
        args.dataset_npz = str(FMNIST / "dataset.npz")
    spec = DatasetSpec(dataset=args.dataset, dataset_npz=args.dataset_npz)
    dataset = load_dataset(spec, (args.split,))
    runs = list(itertools.islice(itertools.cycle(select_runs(args.experiment,
                                                             requirement=CHECKPOINT).runs()),
                                 args.num_runs))
    tf.get_logger().setLevel("ERROR")  # the naive way's retracing warnings
    process = psutil.Process()
    ours = make_backend_for(dataset)
    verify_run(ours, runs[0], dataset, args.split, args.batch_size, progress=False)  # warm-up
    naive_times, our_times = [], []
    for run in runs:  # alternating, so that background load hits both alike
        start = time.perf_counter()
        naive_ok = naive_verify(run, dataset, args.split, args.batch_size)
        naive_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        result = verify_run(ours, run, dataset, args.split, args.batch_size, progress=False)
        our_times.append(time.perf_counter() - start)
        assert result.check.all_match and naive_ok, run.path
    rss = []
    for run in runs:  # ours alone, for its memory
        verify_run(ours, run, dataset, args.split, args.batch_size, progress=False)
        rss.append(process.memory_info().rss / 2**20)
    script_times = []
    demo = pathlib.Path(__file__).resolve().parents[1] / "demo.py"
    source = (f"--dataset={args.dataset}" if args.dataset else f"--dataset_npz={args.dataset_npz}")
    for run in runs[: args.script_runs]:
        start = time.perf_counter()
        subprocess.run([sys.executable, str(demo), f"--run_dir={run.path}", source,
                        f"--split={args.split}", f"--batch_size={args.batch_size}"],
                       check=True, capture_output=True)
        script_times.append(time.perf_counter() - start)
    n = dataset.num_examples(args.split)
    naive, our = np.median(naive_times), np.median(our_times)
    print(f"{len(runs)} runs, {n} {args.split} examples each, batch {args.batch_size}")
    print(f"naive (fresh model + trace per run): {naive:.3f} s/run (median)")
    print(f"heldout (one model, one trace):      {our:.3f} s/run (median)")
    print(f"speed-up: {naive / our:.2f}x")
    if script_times:
        script = np.median(script_times)
        print(f"one demo.py process per run:         {script:.3f} s/run (median of "
              f"{len(script_times)}); speed-up {script / our:.2f}x")
    print(f"resident memory over {len(runs)} more runs of ours alone, after runs 1, 5, 10, "
          f"{len(runs)}: "
          + ", ".join(f"{rss[i]:.0f}" for i in (0, 4, 9, len(rss) - 1) if i < len(rss))
          + f" MiB; growth over the last half: {rss[-1] - rss[len(rss) // 2]:+.1f} MiB")


if __name__ == "__main__":
    main()
