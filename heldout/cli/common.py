"""Helpers shared by the `heldout` sub-commands."""

from __future__ import annotations

import argparse
import functools
import os
import re
import sys
from collections.abc import Mapping

from heldout.errors import CommandError, InputError, NoRunsError

#: Library wordings of a parameter whose flag is not ``--<parameter>``: wording -> the flag's
#: dest. Used where the command has that flag and no option named after the parameter itself.
PARAMETER_ALIASES = {
    "`cross_check`=False": "no_cross_check",  # heldout.predict.predict
    "`out_dir`": "out",  # heldout.export.runs.check_out_dir (heldout export --out)
    "`num_targets`": "targets",  # heldout.privacy.choose_targets (heldout lira --targets)
    "`estimates_path`": "estimates",  # heldout.report.compute_report (heldout report --estimates)
}
_PARAMETER = re.compile(r"`(\w+)`(=True\b|=)?")


def parameter_flags(parser: argparse.ArgumentParser) -> dict[str, tuple[str, bool]]:
    """dest -> (its flag, whether the flag takes a value) for each option of a sub-command's
    `parser` (positional arguments keep their names)."""
    return {action.dest: (action.option_strings[0], action.nargs != 0)
            for action in parser._actions  # argparse lists its actions nowhere public
            if action.option_strings and action.dest != "help"}


def with_flags(message: str, flags: Mapping[str, tuple[str, bool]]) -> str:
    """A library message as the command prints it: each backticked parameter that is one of the
    command's options (`flags`, from `parameter_flags`) written as its flag, e.g.
    ```workers`=3: only 2 GPUs are visible`` as ``--workers 3: only 2 GPUs are visible``,
    ```overwrite`=True`` as ``--overwrite``; other backticked names are left as they are."""
    for wording, dest in PARAMETER_ALIASES.items():
        name = wording[1:wording.index("`", 1)]
        if dest in flags and name not in flags:
            message = message.replace(wording, f"`{dest}`")

    def flag(m: re.Match) -> str:
        name, assigned = m.group(1), m.group(2) or ""
        if name not in flags:
            return m.group(0)
        option, takes_value = flags[name]
        if takes_value:
            return option + {"": "", "=": " ", "=True": " True"}[assigned]
        return option if assigned in ("", "=True") else m.group(0)

    return _PARAMETER.sub(flag, message)


def command_message(args: argparse.Namespace | None, message: object) -> str:
    """`with_flags` for the sub-command that parsed `args` (its flags are set as a default by
    `heldout.cli.build_parser`); the message unchanged without them."""
    return with_flags(str(message), getattr(args, "parameter_flags", None) or {})


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
    """Lines reporting what `heldout.experiment.select_runs` skipped, the one way every command
    reports them: the entries that are not complete runs (stray files, temporary or incomplete
    run directories) in one line with their reasons, and the runs without what the command
    needs (`Skipped.lacking`, e.g. ``skipped 396 runs without a complete checkpoint: 0.7/1,
    ...``: runs all the same) in one line per requirement, each with the count and the first
    few names (relative to the experiment); or, when `verbose`, one line per entry."""
    skipped = experiment.skipped
    if verbose:
        return [f"skipped {s.path}: {s.reason}" for s in skipped]
    lines = []
    entries = [s for s in skipped if s.lacking is None]
    if entries:
        lines.append(f"skipped {len(entries)} entries of {experiment.root} that are not complete "
                     "runs: " + _first_names(experiment.root, entries, reasons=True))
    for what in dict.fromkeys(s.lacking.what for s in skipped if s.lacking is not None):
        runs = [s for s in skipped if s.lacking is not None and s.lacking.what == what]
        lines.append(f"skipped {len(runs)} {'run' if len(runs) == 1 else 'runs'} without {what}: "
                     + _first_names(experiment.root, runs, reasons=False))
    return lines


def _first_names(root: str, skipped, reasons: bool) -> str:
    """The first `SKIPPED_SHOWN` entries' names relative to `root` (with their reasons), and
    how many more there are."""
    names = [os.path.relpath(s.path, root) + (f" ({s.reason})" if reasons else "")
             for s in skipped[:SKIPPED_SHOWN]]
    more = len(skipped) - len(names)
    return ", ".join(names) + (f" and {more} more (--verbose lists all)" if more else "")


def run_ids_flag(text: str | None, flag: str = "--run_ids", what: str = "run ids"):
    """`--run_ids` (or another flag of non-negative integers and ranges, named `flag`, of
    `what`) as `heldout.experiment.RunIds` (ranges kept as ranges), None when not given.

    Raises:
      CommandError: malformed or backwards, in one line naming the flag.
    """
    from heldout.experiment import parse_run_ids

    if text is None:
        return None
    try:
        return parse_run_ids(text, what)
    except InputError as e:
        raise CommandError(f"{flag}: {e}") from None


def ratios_flag(text: str | None) -> list[float] | None:
    """`--ratios 0.7,0.5` as subset ratios, None when not given.

    Raises:
      CommandError: an item that is not a number in (0, 1].
    """
    from heldout.experiment import parse_ratio

    if not text:
        return None
    try:
        return [parse_ratio(r) for r in text.split(",") if r.strip()] or None
    except InputError:
        raise CommandError(f"--ratios: expected numbers like 0.7,0.5, got {text!r}") from None


def select_runs_for_command(path: str, ratios=None, run_ids=None, backend: str | None = None,
                            *, allow_run_dir: bool = True, verbose: bool = False,
                            requirement=None, alternatives=()):
    """`heldout.experiment.select_runs` for a command: the runs (of `backend`'s model, when
    given, or holding `requirement`), the skipped entries reported on stderr by
    `skipped_summary`, and no selected run a one-line error (naming the other backend when
    only it could evaluate them, and each of `alternatives`, (`ModelRequirement`, advice)
    pairs, that the runs hold).

    Returns:
      The selection, a `heldout.experiment.Experiment`.

    Raises:
      LayoutError: a missing directory, a subset-ratio directory (or a run directory, unless
        `allow_run_dir`), naming the directory to give.
      CommandError: no run selected.
    """
    from heldout.evaluate.backend import BACKENDS
    from heldout.evaluate.factory import model_requirement
    from heldout.experiment import select_runs

    if requirement is None and backend is not None:
        requirement = model_requirement(backend)
    try:
        selection = select_runs(path, ratios, run_ids, requirement, allow_run_dir=allow_run_dir)
    except NoRunsError as e:
        others = [(model_requirement(b), f"use --backend {b}") for b in BACKENDS
                  if backend and b != backend] + list(alternatives)
        hint = "".join(f"; they have {other.what}: {advice}" for other, advice in others
                       if any(other.present(r) for r in e.lacking))
        raise CommandError(f"{e}{hint}") from None
    for line in skipped_summary(selection, verbose):
        print(line, file=sys.stderr)
    return selection
