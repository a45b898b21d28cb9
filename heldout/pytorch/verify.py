"""Re-evaluating an exported run in PyTorch and cross-checking it with its aux arrays.

The same output lines as ``heldout verify``::

    python -m heldout.pytorch.verify EXPORT_DIR --dataset_npz dataset.npz --split test

where EXPORT_DIR is a tree written by ``heldout export`` (an experiment or one run) and the
dataset an ``.npz`` with ``<split>__image`` (uint8 NHWC) and ``<split>__label``, in dataset
(``index``) order. Imports numpy, torch and safetensors only.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import warnings
from collections.abc import Sequence

import numpy as np

from heldout.data.npz import load_npz_dataset
from heldout.errors import HeldoutError
from heldout.experiment import Run, is_run_dir, open_experiment, run_from_path
from heldout.export.tensorfile import find_tensor_file, read_tensor_file
from heldout.pytorch.backend import RestoredModel, TorchBackend
from heldout.pytorch.load import resolve_spec


@dataclasses.dataclass(frozen=True)
class TorchVerification:
    """One run re-evaluated: logits float32 [n, classes] in dataset order, and how many of the
    aux arrays' `num_total` correctness values the recomputed ones match."""

    run: Run
    restored: RestoredModel
    subset_ratio: float
    logits: np.ndarray
    accuracy: float
    num_match: int
    num_total: int

    def line(self) -> str:
        """The line ``heldout verify`` prints for a run."""
        return (f"{self.run.name}: epoch {self.restored.epoch} step {self.restored.global_step} "
                f"subset {self.subset_ratio:.1%} accuracy {self.accuracy:.4f} "
                f"{self.num_match}/{self.num_total} match"
                + ("" if self.num_match == self.num_total else "  MISMATCH"))


def verify_run(
    run: Run,
    images: np.ndarray,
    labels: np.ndarray,
    split: str,
    batch_size: int = 200,
    backend: TorchBackend | None = None,
    scale: float = 255.0,
) -> TorchVerification:
    """Evaluates an exported run on a split through PyTorch and compares correctness with the
    run's aux arrays, by `index` (position in the split).

    Args:
      run: a run of an export tree (holds model.safetensors or model.npz and aux_arrays.npz).
      images: [n, H, W, C] in dataset order, uint8 (divided by `scale`) or float32 in [0, 1].
      labels: int [n].
      split: ``train`` (the run's subset and its held-out examples) or ``test``.
      backend: reuse one across runs; default a float32 `TorchBackend` for the run's metadata.

    Raises:
      TensorFileError / NpzError / AuxArraysError (HeldoutError): no exported model, tensors that
        do not fit, bad aux arrays or sizes that do not fit the dataset.
    """
    n = len(labels)
    aux = run.load_aux(**({"num_train": n} if split == "train" else {"num_test": n}))
    if backend is None:
        meta = resolve_spec(read_tensor_file(find_tensor_file(run.path)))
        backend = TorchBackend(meta.architecture, meta.num_classes, meta.input_shape)
    restored = backend.restore(run)
    logits = []
    for start in range(0, n, batch_size):
        x = images[start:start + batch_size]
        x = x.astype(np.float32) / scale if x.dtype == np.uint8 else x.astype(np.float32)
        logits.append(backend.logits(x))
    out = np.concatenate(logits) if logits else np.zeros((0, backend.num_classes), np.float32)
    correct = np.argmax(out, axis=1) == np.asarray(labels)
    stored = aux.correctness(split)
    match = int(np.sum(stored == correct))
    return TorchVerification(run, restored, aux.subset_ratio, out,
                             float(np.mean(correct)) if n else float("nan"), match, len(stored))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m heldout.pytorch.verify",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("path", help="an export tree (experiment) or one exported run")
    parser.add_argument("--dataset_npz", required=True)
    parser.add_argument("--split", default="test", choices=["train", "test"])
    parser.add_argument("--batch_size", type=int, default=200)
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    try:
        if is_run_dir(args.path):
            runs = [run_from_path(args.path)]
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                runs = open_experiment(args.path).runs()
        data = load_npz_dataset(args.dataset_npz)
        labels = data.split_labels(args.split)  # refuses a missing split in one line
        images = data.images[args.split]
        scale = data.scale
    except (HeldoutError, KeyError) as e:
        print(f"heldout verify: error: {e}", file=sys.stderr)
        return 2
    matched = total = failed = 0
    backend = None
    for run in runs:
        try:
            if backend is None:
                meta = resolve_spec(read_tensor_file(find_tensor_file(run.path)))
                backend = TorchBackend(meta.architecture, meta.num_classes, meta.input_shape,
                                       device=args.device)
            result = verify_run(run, images, labels, args.split, args.batch_size, backend,
                                scale)
        except HeldoutError as e:
            print(f"{run.name}: FAILED: {e}")
            failed += 1
            continue
        matched += result.num_match
        total += result.num_total
        failed += result.num_match != result.num_total
        print(result.line())
    if failed:
        print(f"{failed} of {len(runs)} runs failed or mismatched", file=sys.stderr)
    print(f"verified {len(runs)} runs: {matched} out of {total} predictions match")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
