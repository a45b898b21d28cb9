"""Restore one released run, re-evaluate it and cross-check it with its aux arrays.

Examples (from the repository root):

  python demo.py --run_dir=cifar10-inception/0.7/42 --dataset=cifar10:3.0.2 --split=test
  python demo.py --run_dir=tests/data/reference/fmnist32/fmnist32-inception/0.5/0 \\
      --dataset_npz=tests/data/reference/fmnist32/dataset.npz
  python demo.py --run_dir=cifar100-inception/0.7/3 --dataset=cifar100:3.0.2
  python demo.py --run_dir=imagenet-resnet50/0.7/0 --tfrecord_dir=imagenet-tfrecords \\
      --min_match_fraction=0.999

Prints the checkpoint's epoch and global step, the run's subset percentage, the accuracy on the
split and `N out of M predictions match`; exits 1 when fewer than --min_match_fraction match or
the run's restored model holds a NaN or infinite weight or logit (`<run>: FAILED: ...`), and 2
with a one-line `demo.py: error: ...` for a bad flag, path, run or dataset. The flags are
parsed and the run directory checked before TensorFlow is imported, so mistakes and --help
answer at once.
"""

from __future__ import annotations

import argparse
import os
import sys

from heldout.cli.common import (
    RawDescriptionHelpFormatter,
    add_dataset_flags,
    dataset_spec,
    fraction,
    parameter_flags,
    positive_int,
    with_flags,
)
from heldout.errors import HeldoutError


def build_parser() -> argparse.ArgumentParser:
    """The flags (names and defaults as in the absl version: `--run_dir=...` works)."""
    doc = __doc__.split("\n\n")
    p = argparse.ArgumentParser(
        prog="demo.py", description=doc[0], epilog="\n\n".join(doc[1:3]),
        formatter_class=RawDescriptionHelpFormatter,
    )
    p.add_argument("--run_dir", required=True,
                   help="run directory <experiment>/<subset_ratio>/<run_id>")
    add_dataset_flags(p)  # exactly one of --dataset, --dataset_npz, --tfrecord_dir, --idx_dir
    p.add_argument("--arch", choices=["small_inception", "resnet50", "mlp"],
                   help="architecture (default: the released one for the dataset)")
    p.add_argument("--split", default="test", choices=["train", "test"],
                   help="split to evaluate")
    p.add_argument("--batch_size", type=positive_int, default=200,
                   help="evaluation batch size")
    p.add_argument("--min_match_fraction", type=fraction, default=1.0,
                   help="pass when at least this fraction of predictions match (ImageNet: "
                   "slightly below 1)")
    return p


def find_run(run_dir: str):
    """The `Run` of --run_dir, with a complete checkpoint (checked without TensorFlow), through
    `heldout.experiment.select_runs`.

    Raises:
      HeldoutError: not a directory, an experiment or ratio directory, or no checkpoint.
    """
    from heldout.experiment import CHECKPOINT, LayoutError, is_ratio_dir, select_runs

    if not os.path.isdir(run_dir):
        raise LayoutError(f"--run_dir {run_dir}: no such directory")
    if is_ratio_dir(run_dir):
        raise LayoutError(f"--run_dir {run_dir} is a subset-ratio directory; give one of its "
                          "runs, <experiment>/<subset_ratio>/<run_id>")
    selection = select_runs(run_dir)
    if selection.root == os.path.abspath(run_dir):
        raise LayoutError(
            f"--run_dir {run_dir} is an experiment directory; give one of its runs, e.g. "
            f"{os.path.join(run_dir, selection.runs()[0].name)}")
    (run,) = selection.runs()
    if not CHECKPOINT.present(run):
        raise LayoutError(f"--run_dir {run_dir}: no complete checkpoint in "
                          f"{os.path.join(run_dir, 'checkpoints')} (ckpt-<epoch>.index and its "
                          ".data-<i>-of-<n> shards)")
    return run


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return demo(args)
    except (HeldoutError, FileNotFoundError) as e:  # the library names parameters: our flags
        print(f"demo.py: error: {with_flags(str(e), parameter_flags(parser))}", file=sys.stderr)
        return 2


def demo(args: argparse.Namespace) -> int:
    run = find_run(args.run_dir)
    from heldout.quiet import import_tensorflow

    import_tensorflow()
    from heldout.data import load_dataset
    from heldout.errors import NonFiniteError
    from heldout.evaluate import make_backend_for, verify_run

    dataset = load_dataset(dataset_spec(args), (args.split,))
    backend = make_backend_for(dataset, "tensorflow", args.arch)
    try:
        result = verify_run(backend, run, dataset, args.split, args.batch_size)
    except NonFiniteError as e:  # the run's model is broken: a failed run, not a usage error
        print(f"{run.name}: FAILED: {e}")
        return 1
    restored, aux, check = result.restored, result.aux, result.check
    if restored.note:
        print(restored.note)
    print(f"Checkpoint {restored.source}: epoch {restored.epoch}, global step "
          f"{restored.global_step}")
    print(f"Subset: {aux.subset_ratio:.1%} of the training set "
          f"({len(aux.subsample_idx)} of {aux.num_train} examples)")
    print(f"Accuracy on {args.split}: {result.predictions.accuracy:.4f}")
    print(f"{check.num_match} out of {check.num_total} predictions match")
    return 0 if check.match_fraction >= args.min_match_fraction else 1


if __name__ == "__main__":
    sys.exit(main())
