"""The `heldout` console command: one sub-command per job, flags in `--snake_case`.

Each module of this package registers its sub-commands with `register(subparsers)`; a command's
handler takes the parsed arguments and returns the exit status. TensorFlow is imported only by
the commands that need it, so `heldout estimate` and friends start instantly.

An input error (`heldout.errors.HeldoutError`) ends a command in one line on stderr and exit
status 2: ``heldout predict: error: <message>``. The library's messages name a Python parameter
in backticks (```workers`=3: ...``); the command prints its flag instead (``--workers 3: ...``,
`heldout.cli.common.with_flags`).

Ctrl-C ends any command with one line on stderr and exit status 130 (128 + SIGINT), never a
traceback: ``heldout lira: interrupted``, or, for work that resumes (`heldout.errors.Interrupted`:
predict, train, export), ``heldout predict: interrupted: 14 of 64 runs completed; run the same
command to resume``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from heldout import __version__
from heldout.errors import HeldoutError, Interrupted

# TensorFlow's C++ start-up messages (oneDNN, CPU features) mean nothing to a user of the CLI.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
#: The exit status after Ctrl-C, as a shell gives a command killed by SIGINT (128 + 2).
INTERRUPTED_STATUS = 128 + 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="heldout",
        description="Heldout training experiments: inspect, verify, score, train, download, "
        "attack (LiRA), report, and attribution scored against the runs (LDS, datamodels).",
    )
    # Imported here, inside `main`'s handling of Ctrl-C (matplotlib alone takes 0.3 s).
    from heldout.cli import (
        attribution,
        export,
        imagenet,
        predict,
        privacy,
        release,
        report,
        runs,
        scores,
        train,
    )
    from heldout.cli.common import HelpFormatter, parameter_flags

    parser.add_argument("--version", action="version", version=f"heldout {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (runs, scores, attribution, train, release, imagenet, predict, privacy, report,
                   export):
        module.register(subparsers)
    for sub in subparsers.choices.values():
        sub.formatter_class = HelpFormatter  # every command's --help shows each default once
        # Library messages name parameters; the command prints its flags (`command_message`).
        sub.set_defaults(parameter_flags=parameter_flags(sub))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    command, args = "heldout", None
    try:
        args = build_parser().parse_args(argv)
        command = f"heldout {args.command}"
        return int(args.handler(args) or 0)
    except (HeldoutError, FileNotFoundError) as e:  # Input errors; anything else is a bug.
        from heldout.cli.common import command_message

        print(f"{command}: error: {command_message(args, e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # Ctrl-C: what was done is kept; no traceback
        what = (f"{e}; run the same command to resume" if isinstance(e, Interrupted)
                else "interrupted")
        print(f"{command}: {what}", file=sys.stderr)
        return INTERRUPTED_STATUS


if __name__ == "__main__":
    sys.exit(main())
