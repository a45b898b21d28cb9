"""`heldout inspect` and `heldout verify`: look at an experiment, re-evaluate its runs."""

from __future__ import annotations

import argparse
import functools
import os
import sys
import warnings

import numpy as np
from tqdm import tqdm

from heldout.cli.common import (
    HelpFormatter,
    add_dataset_flags,
    add_verbose_flag,
    command_message,
    dataset_spec,
    fraction,
    positive_int,
    select_runs_for_command,
)
from heldout.errors import CommandError, HeldoutError
from heldout.experiment import is_run_dir, iter_aux_arrays
from heldout.quiet import import_tensorflow

#: `inspect`'s columns: (header, width).
INSPECT_COLUMNS = (("ratio", 6), ("runs", 5), ("ckpt", 5), ("subset", 7), ("acc_subset", 10),
                   ("acc_removed", 11), ("acc_test", 8))


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds `inspect` and `verify` to the `heldout` parser."""
    p = subparsers.add_parser(
        "inspect",
        help="ratios, runs and mean accuracies of an experiment (aux arrays only)",
        description="Lists an experiment's subset ratios, its complete runs per ratio (and how "
        "many have a checkpoint), the entries that are not complete runs, and mean accuracies "
        "from the aux arrays: on each run's own training subset, on its removed (held-out) "
        "training examples and on the test split.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("experiment_dir", help="<experiment> directory of the release layout")
    add_verbose_flag(p)
    p.set_defaults(handler=inspect_command)

    p = subparsers.add_parser(
        "verify",
        help="re-evaluate runs and cross-check them with their aux arrays",
        description="Restores each run's final checkpoint (--backend torch: its model exported "
        "by `heldout export`) into one model, evaluates a dataset split and compares the "
        "correctness of every prediction with the run's aux arrays. Runs without a model for "
        "the backend are skipped (one line; --verbose lists them). A run that cannot be "
        "evaluated (bad files, a NaN or infinite weight or logit) is named as FAILED. Exits 1 "
        "when a run failed or fewer predictions match than --min_match_fraction asks.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("path", help="a run directory <experiment>/<ratio>/<run_id>, or an experiment")
    add_dataset_flags(p)
    p.add_argument("--split", default="test", choices=["train", "test"],
                   help="dataset split to evaluate; train means the whole "
                   "training split, each run's subset and its removed examples")
    p.add_argument("--train_size", type=int, default=None,
                   help="use only the first N training examples (runs trained with "
                   "`heldout train --train_size N`)")
    p.add_argument("--arch", default=None, help="small_inception | resnet50 | mlp "
                   "(default: the released architecture for the dataset)")
    p.add_argument("--batch_size", type=positive_int, default=200,
                   help="examples per evaluation step")
    p.add_argument("--min_match_fraction", type=fraction, default=1.0,
                   help="pass when at least this fraction of predictions match")
    add_verbose_flag(p)
    p.add_argument("--backend", default="tensorflow", choices=["tensorflow", "torch"],
                   help="torch: evaluate runs exported by `heldout export` (model.safetensors "
                   "or model.npz) through heldout.pytorch")
    p.set_defaults(handler=verify_command)


def inspect_command(args: argparse.Namespace) -> int:
    if os.path.isdir(args.experiment_dir) and is_run_dir(args.experiment_dir):
        parent = os.path.dirname(os.path.dirname(os.path.abspath(args.experiment_dir)))
        raise CommandError(f"{args.experiment_dir} is a run; give its experiment directory "
                           f"{parent}")
    experiment = select_runs_for_command(args.experiment_dir, allow_run_dir=False,
                                         verbose=args.verbose)
    print(f"experiment {experiment.root}")
    print(f"{len(experiment)} complete runs in {len(experiment.ratios)} subset ratios; "
          f"{len(experiment.skipped)} other entries skipped")
    print(" ".join(f"{name:>{width}}" for name, width in INSPECT_COLUMNS))
    failures = 0
    for ratio in experiment.ratios:
        rows = []
        with_ckpt = 0
        bar = functools.partial(tqdm, desc=f"ratio {ratio}", leave=False)
        for run, aux in iter_aux_arrays(experiment.runs(ratio), same_sizes=False, progress=bar,
                                        errors="yield"):
            if isinstance(aux, Exception):  # NpzError, FingerprintError
                print(f"bad run {run.path}: {aux}", file=sys.stderr)
                failures += 1
                continue
            with_ckpt += run.has_checkpoint()
            rows.append([aux.subset_ratio, aux.accuracy("train"), aux.accuracy("removed"),
                         aux.accuracy("test")])
        with warnings.catch_warnings():  # a ratio of 1.0 has no removed examples: NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(np.asarray(rows, dtype=float), axis=0) if rows else [np.nan] * 4
        print(f"{ratio:>6} {len(rows):>5} {with_ckpt:>5} {mean[0]:>7.1%} {mean[1]:>10.4f} "
              f"{mean[2]:>11.4f} {mean[3]:>8.4f}")
    return 1 if failures else 0


def verify_command(args: argparse.Namespace) -> int:
    """One loop for both backends: `heldout.evaluate.verify_run` on each selected run."""
    selection = select_runs_for_command(args.path, backend=args.backend, verbose=args.verbose)
    runs = selection.runs()
    if args.backend == "tensorflow":
        import_tensorflow()  # the torch backend runs without TensorFlow
    from heldout.data import load_dataset
    from heldout.evaluate import make_backend_for, verify_run

    dataset = load_dataset(dataset_spec(args), (args.split,))
    backend = make_backend_for(dataset, args.backend, args.arch)
    matched = total = failed = mismatched = 0
    for run in runs:
        try:
            result = verify_run(backend, run, dataset, args.split, args.batch_size,
                                progress=len(runs) == 1)
        except HeldoutError as e:  # bad aux arrays, model files, non-finite weights or logits
            print(f"{run.name}: FAILED: {command_message(args, e)}")
            failed += 1
            continue
        check = result.check
        matched += check.num_match
        total += check.num_total
        ok = check.match_fraction >= args.min_match_fraction
        mismatched += not ok
        print(run_line(run.name, result.restored, result.aux, result.predictions, check, ok))
    print(verify_summary(len(runs), failed, mismatched, matched, total))
    return 1 if failed or mismatched else 0


def run_line(name: str, restored, aux, predictions, check, ok: bool) -> str:
    """`verify`'s line for one evaluated run (either backend)."""
    return (f"{name}: epoch {restored.epoch} step {restored.global_step} "
            f"subset {aux.subset_ratio:.1%} accuracy {predictions.accuracy:.4f} "
            f"{check.num_match}/{check.num_total} match" + ("" if ok else "  MISMATCH"))


def verify_summary(num_runs: int, failed: int, mismatched: int, matched: int, total: int) -> str:
    """`verify`'s last line: the runs evaluated and their predictions, then the runs that
    could not be evaluated (restore or read failures) and those below --min_match_fraction."""
    evaluated = num_runs - failed
    line = (f"verified {evaluated} run{'' if evaluated == 1 else 's'}: {matched} out of {total} "
            "predictions match"
            if evaluated else f"verified no runs: all {num_runs} failed")
    notes = []
    if failed and evaluated:
        notes.append(f"{failed} of {num_runs} runs failed to restore or read")
    if mismatched:
        notes.append(f"{mismatched} of {evaluated} below --min_match_fraction")
    return line + (f" ({'; '.join(notes)})" if notes else "")
