"""Predictions of many exported runs in PyTorch: images/s per precision mode and K runs at once,
against one float32 model at a time, side by side in one run, with each mode's argmax match
rate against float32. Imports numpy, torch and safetensors only (plus heldout's numpy modules).

R runs (the exported runs, cycled) x N images (the fixture test images, tiled). Each mode
evaluates the same R x N predictions:
  float32 x1      one model at a time (the baseline);
  tf32 x1, bf16 x1  the same with TF32 (CUDA only; float32 on the CPU) or bf16 autocast, close
                  calls (top-2 margin below the bound) re-evaluated in float32;
  float32/bf16 xK  K runs at once (torch.func.stack_module_state + vmap).

    python -m heldout export tests/data/reference/fmnist32/fmnist32-inception \\
        --format safetensors --out /tmp/heldout-export-fmnist32      # once, with TensorFlow
    python benchmarks/torch_predict.py                                  # R=3, N=500, CPU
    python benchmarks/torch_predict.py --runs 200 --images 10000 --ks 1,8,32 --device cuda

Without --export_dir's tree it runs the export above in a separate process first.
"""

import argparse
import time

import numpy as np
import torch
from exported_fixture import FMNIST, exported_runs

from heldout.export.tensorfile import find_tensor_file, read_tensor_file
from heldout.pytorch import load_model
from heldout.pytorch.backend import StackedModels, TorchBackend
from heldout.pytorch.load import resolve_spec


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export_dir", default="/tmp/heldout-export-fmnist32")
    parser.add_argument("--dataset_npz", default=str(FMNIST / "dataset.npz"))
    parser.add_argument("--runs", type=int, default=3, help="R")
    parser.add_argument("--images", type=int, default=500, help="N")
    parser.add_argument("--batch_size", type=int, default=500)
    parser.add_argument("--ks", default="3", help="comma-separated K for runs at once")
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    exported = exported_runs(args.export_dir)
    runs = [exported[i % len(exported)] for i in range(args.runs)]
    data = np.load(args.dataset_npz, allow_pickle=False)
    test = data["test__image"].astype(np.float32) / 255
    images = np.concatenate([test] * (-(-args.images // len(test))))[:args.images]
    batches = [images[i:i + args.batch_size] for i in range(0, len(images), args.batch_size)]
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    models = {run.path: load_model(run.path) for run in exported}
    spec = resolve_spec(read_tensor_file(find_tensor_file(runs[0].path)))
    arch = spec.architecture
    print(f"{args.runs} runs x {args.images} images ({arch}, batch {args.batch_size}) on "
          f"{device} ({torch.get_num_threads()} CPU threads)")

    def one_at_a_time(precision):
        backend = TorchBackend(arch, spec.num_classes, spec.input_shape, device, precision)
        out = []
        for run in runs:
            backend.restore(run)
            out.append(np.concatenate([backend.logits(b) for b in batches]))
        return np.stack(out), backend.num_reevaluated

    def k_at_once(k, precision):
        out, reevaluated = [], 0
        for start in range(0, len(runs), k):
            group = StackedModels([models[r.path] for r in runs[start:start + k]], device,
                                  precision)
            out.append(np.concatenate([group.logits(b) for b in batches], axis=1))
            reevaluated += group.num_reevaluated
        return np.concatenate(out), reevaluated

    modes = [("float32 x1", lambda: one_at_a_time("float32")),
             ("tf32 x1", lambda: one_at_a_time("tf32")),
             ("bf16 x1", lambda: one_at_a_time("bf16"))]
    for k in (int(k) for k in args.ks.split(",")):
        modes += [(f"float32 x{k}", lambda k=k: k_at_once(k, "float32")),
                  (f"bf16 x{k}", lambda k=k: k_at_once(k, "bf16"))]
    results = {}
    for name, fn in modes:
        _sync(device)
        start = time.perf_counter()
        logits, reevaluated = fn()
        _sync(device)
        results[name] = (time.perf_counter() - start, logits, reevaluated)
    base_seconds, base, _ = results["float32 x1"]
    total = args.runs * args.images
    print(f"{'mode':>12} {'images/s':>10} {'vs float32 x1':>14} {'argmax match':>13} "
          f"{'re-evaluated':>13}")
    for name, (seconds, logits, reevaluated) in results.items():
        match = np.mean(np.argmax(logits, -1) == np.argmax(base, -1))
        print(f"{name:>12} {total / seconds:10.1f} {base_seconds / seconds:13.2f}x "
              f"{match:13.6f} {reevaluated:13d}")
    per_run = base_seconds / args.runs * 10000 / args.images
    print(f"float32 x1: {per_run:.2f} s per run of 10,000 images; 16,000 runs would take "
          f"{per_run * 16000 / 3600:.1f} h at this rate")


if __name__ == "__main__":
    main()
