"""Helpers shared by the `heldout` sub-commands."""

from __future__ import annotations

import argparse
import functools
import os
import sys
import warnings

from heldout.errors import HeldoutError


class CommandError(HeldoutError):
    """A user-facing failure: printed as `heldout <command>: error: <message>`, exit status 2."""


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def fraction(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], got {value}")
    return value


def add_dataset_flags(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """`--dataset NAME:VERSION | --dataset_npz PATH | --tfrecord_dir DIR`, `--data_dir` and
    `--index_npz`."""
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--dataset", help="TFDS dataset, e.g. cifar10:3.0.2 or cifar100:3.0.2")
    group.add_argument("--dataset_npz", help=".npz dataset with <split>__image/<split>__label")
    group.add_argument("--tfrecord_dir", help="indexed TFRecord shards, e.g. ImageNet written by "
                       "`heldout build-imagenet` (test split = validation shards)")
    group.add_argument("--idx_dir", help="directory of MNIST-format IDX files")
    parser.add_argument("--data_dir", default=None, help="TFDS data directory")
    parser.add_argument("--index_npz", default=None, help="with --tfrecord_dir: the published "
                        "imagenet_index.npz, for the labels when the shards have no labels.npz")


def dataset_spec(args: argparse.Namespace):
    """The `heldout.data.DatasetSpec` of the flags of `add_dataset_flags` (and `--train_size`
    where the command has it), or None when no dataset source was given (optional flags)."""
    from heldout.data.spec import SOURCES, DatasetSpec

    if all(getattr(args, name, None) is None for name in SOURCES):
        return None
    return DatasetSpec.from_args(args)


def progress_bar(desc: str, unit: str, **options):
    """A tqdm progress wrapper for the library's ``progress=`` arguments (on stderr)."""
    from tqdm import tqdm

    return functools.partial(tqdm, desc=desc, unit=unit, dynamic_ncols=True, **options)


#: Skipped entries named in the one-line summary before "--verbose lists all".
SKIPPED_SHOWN = 3


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each flag's default once, as ``(default: X)``; flags without a default
    (None, False) or that already state it are left as they are."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        default = action.default
        if "default" in help_text or default is None or default is False or (
                default == argparse.SUPPRESS):
            return help_text
        return super()._get_help_string(action)


class RawDescriptionHelpFormatter(argparse.RawDescriptionHelpFormatter, HelpFormatter):
    """`HelpFormatter` keeping the description's and epilog's line breaks."""


def add_verbose_flag(parser: argparse.ArgumentParser) -> None:
    """`--verbose`: list every skipped entry instead of a one-line summary."""
    parser.add_argument("--verbose", action="store_true",
                        help="list every skipped entry (without: a one-line summary)")


def skipped_summary(experiment, verbose: bool = False) -> list[str]:
    """Lines reporting an experiment's skipped entries: one line with the count and the first
    few names (relative to the experiment), or, when `verbose`, one line per entry."""
    skipped = experiment.skipped
    if not skipped:
        return []
    if verbose:
        return [f"skipped {s.path}: {s.reason}" for s in skipped]
    names = [f"{os.path.relpath(s.path, experiment.root)} ({s.reason})"
             for s in skipped[:SKIPPED_SHOWN]]
    more = len(skipped) - len(names)
    return [f"skipped {len(skipped)} entries of {experiment.root} that are not complete runs: "
            + ", ".join(names) + (f" and {more} more (--verbose lists all)" if more else "")]


def open_experiment_for_command(path: str, require_checkpoint: bool = False,
                                verbose: bool = False):
    """`heldout.experiment.open_experiment` for a command: no Python warning, the skipped
    entries reported on stderr by `skipped_summary`, and a layout mistake (a missing
    directory, a run or subset-ratio directory given for the experiment) as a `CommandError`
    naming the directory to give.

    Raises:
      CommandError: as above, or no complete run found.
    """
    from heldout.experiment import LayoutError, open_experiment

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            experiment = open_experiment(path, require_checkpoint=require_checkpoint)
    except LayoutError as e:
        raise CommandError(str(e)) from e
    for line in skipped_summary(experiment, verbose):
        print(line, file=sys.stderr)
    if not len(experiment):
        raise CommandError(
            f"{path}: no complete runs (<ratio>/<run_id>/aux_arrays.npz"
            + (" and checkpoints/ckpt-<epoch>" if require_checkpoint else "") + ")"
        )
    return experiment
