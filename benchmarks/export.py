"""Export speed per format, and PyTorch against TensorFlow CPU inference, side by side.

(a) runs/s of `heldout export` for safetensors, npz and savedmodel (the fixture runs, cycled
    to --num_runs, each format into its own fresh tree, one model reused across runs);
(b) images/s of one run's logits on the test split: the Sonnet model in a traced tf.function
    against the PyTorch model from the exported safetensors, alternating --repeats times, plus
    their largest logit difference.

    python benchmarks/export.py                          # tests/data/reference/fmnist32
    python benchmarks/export.py --num_runs 12 --repeats 5
"""

import argparse
import os
import pathlib
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import torch  # noqa: E402

from heldout.evaluate import make_evaluator  # noqa: E402
from heldout.experiment import CHECKPOINT, Run, select_runs  # noqa: E402
from heldout.export.runs import export_runs  # noqa: E402
from heldout.pytorch import load_model  # noqa: E402

FMNIST = pathlib.Path(__file__).resolve().parents[1] / "tests" / "data" / "reference" / "fmnist32"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", default=str(FMNIST / "fmnist32-inception"))
    parser.add_argument("--dataset_npz", default=str(FMNIST / "dataset.npz"))
    parser.add_argument("--num_runs", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=100)
    args = parser.parse_args()
    runs = select_runs(args.experiment, requirement=CHECKPOINT).runs()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"(a) export of {args.num_runs} runs (cycled from {len(runs)}), runs/s:")
        for fmt in ("safetensors", "npz", "savedmodel"):
            # Distinct run ids so that every run is exported, not skipped.
            cycled = [Run(runs[i % len(runs)].path, "0.5", i) for i in range(args.num_runs)]
            out = os.path.join(tmp, fmt)
            list(export_runs(cycled[:1], out + "-warmup", fmt))  # build and trace once
            start = time.perf_counter()
            outcomes = list(export_runs(cycled, out, fmt))
            seconds = time.perf_counter() - start
            assert all(o.status == "exported" for o in outcomes), outcomes
            print(f"  {fmt:>12}: {args.num_runs / seconds:7.2f} runs/s")
        run = runs[0]
        list(export_runs([run], os.path.join(tmp, "one"), "safetensors"))
        torch_model = load_model(os.path.join(tmp, "one", run.ratio, str(run.run_id)))
        torch_model = torch_model.to(memory_format=torch.channels_last)
    images = np.load(args.dataset_npz)["test__image"].astype(np.float32) / 255
    evaluator = make_evaluator("small_inception", 10, images.shape[1:])
    evaluator.restore(run.path)
    batches = [images[i:i + args.batch_size] for i in range(0, len(images), args.batch_size)]

    def tf_logits():
        return np.concatenate([evaluator.predict_fn(tf.constant(b)).numpy() for b in batches])

    def torch_logits():
        with torch.inference_mode():
            return np.concatenate([
                torch_model(torch.from_numpy(b).permute(0, 3, 1, 2)).numpy() for b in batches])

    tf_logits(), torch_logits()  # warm up
    times = {"tensorflow": [], "pytorch": []}
    for _ in range(args.repeats):
        for name, fn in (("tensorflow", tf_logits), ("pytorch", torch_logits)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    diff = np.abs(tf_logits() - torch_logits()).max()
    print(f"(b) inference on {len(images)} test images of {run.name}, batch "
          f"{args.batch_size}, CPU, best of {args.repeats} (TF threads: default, torch threads: "
          f"{torch.get_num_threads()}):")
    for name, values in times.items():
        print(f"  {name:>12}: {len(images) / min(values):8.1f} images/s")
    print(f"  pytorch / tensorflow: {min(times['tensorflow']) / min(times['pytorch']):.2f}x; "
          f"largest logit difference {diff:.2e}")


if __name__ == "__main__":
    main()
