"""`heldout export`: write runs' models as safetensors, npz or TensorFlow SavedModels."""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from heldout.cli.common import (
    add_dataset_flags,
    command_message,
    dataset_spec,
    positive_int,
    ratios_flag,
    run_ids_flag,
    select_runs_for_command,
)
from heldout.errors import CommandError, counting_interrupts
from heldout.export.tensorfile import FORMAT_FILES
from heldout.models.architectures import ARCHITECTURES


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds `export` to the `heldout` parser."""
    p = subparsers.add_parser(
        "export",
        help="write runs' models as safetensors, npz or SavedModel (for PyTorch and others)",
        description="Restores each run's final checkpoint (verified) and writes, mirroring the "
        "release layout, OUT/<ratio>/<run_id>/model.safetensors, model.npz or saved_model/, "
        "with a copy of the run's aux_arrays.npz, so OUT is itself an experiment. Runs "
        "already exported are skipped; runs that fail are reported and the others go on "
        "(exit status 1 at the end). The metadata states the input preprocessing each run "
        "was trained with: from its run.json (runs of `heldout train`), else from the "
        "dataset given here, else the release's for released runs (CIFAR uint8 / 255, "
        "ImageNet's preprocessing), else 'unknown'.",
    )
    p.add_argument("path", help="a run directory <experiment>/<ratio>/<run_id>, or an experiment")
    p.add_argument("--format", required=True, choices=list(FORMAT_FILES))
    p.add_argument("--out", required=True, help="root of the export tree (outside the experiment)")
    p.add_argument("--ratios", help="comma-separated subset ratios (default: all)")
    p.add_argument("--run_ids", help="run ids, e.g. 0-499 or 0-9,20-29 (default: all)")
    p.add_argument("--arch", default=None, choices=list(ARCHITECTURES),
                   help="default: inferred from the checkpoint's variables")
    p.add_argument("--num_classes", type=positive_int, default=None,
                   help="default: inferred from the checkpoint")
    p.add_argument("--input_shape", default=None,
                   help="H,W,C of one image (default: the architecture's, e.g. 32,32,3)")
    add_dataset_flags(p, required=False)
    p.set_defaults(handler=export_command)


def _input_shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        shape = tuple(int(d) for d in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise CommandError(f"--input_shape {text!r}: expected H,W,C, e.g. 32,32,3")
    return shape


def _dataset_preprocessing(args: argparse.Namespace):
    """The input preprocessing of the dataset flags (optional) and the dataset's source, for
    runs that did not record theirs; (None, '') without them."""
    spec = dataset_spec(args)
    if spec is None:
        return None, ""
    from heldout.data import load_dataset

    return load_dataset(spec, ("test",)).input_preprocessing(), spec.source


def export_command(args: argparse.Namespace) -> int:
    input_shape = _input_shape(args.input_shape)
    # Every run selected, with or without a checkpoint: one without is reported as failed.
    selection = select_runs_for_command(args.path, ratios_flag(args.ratios),
                                        run_ids_flag(args.run_ids))
    runs = selection.runs()
    from heldout.quiet import import_tensorflow

    import_tensorflow()  # before heldout.export.runs imports it, without its start-up lines
    from heldout.export.runs import check_out_dir, export_runs

    check_out_dir(args.out, selection.root)

    dataset, dataset_name = _dataset_preprocessing(args)
    counts = {"exported": 0, "skipped": 0, "failed": 0}
    outcomes = export_runs(runs, args.out, args.format, args.arch, args.num_classes, input_shape,
                           dataset, dataset_name)
    # Ctrl-C: the runs whose export is complete (exported now or before) are counted.
    with counting_interrupts(len(runs), lambda: counts["exported"] + counts["skipped"]):
        for outcome in tqdm(outcomes, total=len(runs), desc="export", unit="run",
                            disable=len(runs) < 2):
            counts[outcome.status] += 1
            if outcome.status == "failed":
                print(f"{outcome.run.name}: FAILED: {command_message(args, outcome.message)}")
            else:
                print(f"{outcome.run.name}: {outcome.status} {outcome.path}")
    if counts["failed"]:
        print(f"{counts['failed']} of {len(runs)} runs failed", file=sys.stderr)
    print(f"export {args.format}: {counts['exported']} exported, {counts['skipped']} already "
          f"there, {counts['failed']} failed, in {args.out}")
    return 1 if counts["failed"] else 0
