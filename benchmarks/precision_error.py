"""The reduced-precision error behind `heldout.pytorch.precision`'s re-evaluation bound.

For every exported fixture run and split (fmnist32: 3 runs x 2,500 images), the logits in
float32, with bf16 autocast, and with TF32 emulated (the inputs and weights of every
convolution and matmul rounded to 11 significant bits, float32 accumulation: what TF32 tensor
cores compute; TF32 itself needs CUDA). Per mode it prints the worst error of a difference of
two logits, max over pairs |(z_a - z_b)_low - (z_a - z_b)_float32| = max(err) - min(err), in
logits and in units of u * max|z| (u the mode's unit roundoff, max|z| the prediction's largest
|logit|), the number of argmax flips, and how many predictions the default bound
(`BOUND_FACTOR` * u * max|z|) re-evaluates and whether any flip escapes it. Imports numpy,
torch and safetensors only (plus heldout's numpy modules).

    python benchmarks/precision_error.py [--export_dir /tmp/heldout-export-fmnist32]

Without --export_dir's tree it runs `heldout export` (TensorFlow) in a separate process first.
"""

import argparse
import copy
import os

import numpy as np
import torch
from exported_fixture import FMNIST, exported_runs

from heldout.pytorch import load_model
from heldout.pytorch import networks as nets
from heldout.pytorch.precision import BOUND_FACTOR, UNIT_ROUNDOFF


def round_mantissa(x: torch.Tensor, bits: int) -> torch.Tensor:
    """float32 rounded to `bits` significant bits (implicit bit included), to nearest even."""
    i = x.float().contiguous().view(torch.int32)
    drop = 24 - bits
    bias = ((i >> drop) & 1) + (1 << (drop - 1)) - 1
    return ((i + bias) & ~((1 << drop) - 1)).view(torch.float32)


def emulated(model: torch.nn.Module, bits: int) -> torch.nn.Module:
    """A copy of `model` whose convolutions and matmuls see inputs and weights rounded to
    `bits` significant bits (accumulating in float32)."""
    model = copy.deepcopy(model)
    for module in model.modules():
        if isinstance(module, (nets.Conv, nets.Linear)):
            module.w.data = round_mantissa(module.w.data, bits)
            module.register_forward_pre_hook(lambda m, args: (round_mantissa(args[0], bits),))
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--export_dir", default="/tmp/heldout-export-fmnist32")
    parser.add_argument("--batch_size", type=int, default=500)
    args = parser.parse_args()
    runs = exported_runs(args.export_dir)
    data = np.load(FMNIST / "dataset.npz", allow_pickle=False)
    modes = {"bf16": None, "tf32 (emulated)": 11}
    unit = {"bf16": UNIT_ROUNDOFF["bf16"], "tf32 (emulated)": UNIT_ROUNDOFF["tf32"]}
    worst = {m: [0.0, 0.0] for m in modes}  # logits, units of u max|z|
    counts = {m: [0, 0, 0, 0] for m in modes}  # predictions, flips, re-evaluated, escaped
    for run in runs:
        model = load_model(os.path.join(run.path, "model.safetensors"))
        model = model.to(memory_format=torch.channels_last)
        tf32 = emulated(model, 11)
        for split in ("train", "test"):
            x = torch.from_numpy(data[f"{split}__image"].astype(np.float32) / 255)
            x = x.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
            chunks = [x[i:i + args.batch_size] for i in range(0, len(x), args.batch_size)]
            with torch.inference_mode():
                ref = torch.cat([model(c) for c in chunks]).double()
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    bf16 = torch.cat([model(c) for c in chunks]).double()
                low = {"bf16": bf16, "tf32 (emulated)": torch.cat([tf32(c) for c in chunks])}
            for mode, z in low.items():
                z = z.double()
                err = z - ref
                pair = err.amax(1) - err.amin(1)
                scale = z.abs().amax(1)
                worst[mode][0] = max(worst[mode][0], float(pair.max()))
                worst[mode][1] = max(worst[mode][1], float((pair / (unit[mode] * scale)).max()))
                top = torch.topk(z, 2, 1).values
                close = (top[:, 0] - top[:, 1]) < BOUND_FACTOR * unit[mode] * scale
                flips = z.argmax(1) != ref.argmax(1)
                c = counts[mode]
                c[0] += len(z)
                c[1] += int(flips.sum())
                c[2] += int(close.sum())
                c[3] += int((flips & ~close).sum())
        print(f"{run.name}: done", flush=True)
    print(f"{len(runs)} runs x {len(data['train__label']) + len(data['test__label'])} images, "
          f"bound {BOUND_FACTOR:g} u max|z|")
    for mode in modes:
        (logits, units), (n, flips, close, escaped) = worst[mode], counts[mode]
        print(f"{mode:16s}: worst logit-difference error {logits:.4f} logits = "
              f"{units:.1f} u max|z| (bound factor {BOUND_FACTOR:g}, {BOUND_FACTOR / units:.1f}x); "
              f"argmax flips {flips}; re-evaluated {close} of {n} ({close / n:.1%}); "
              f"flips outside the bound {escaped}")


if __name__ == "__main__":
    main()
