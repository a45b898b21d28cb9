"""`heldout predict`: every run's outputs on a dataset split, in a zarr predictions store.

Examples::

    heldout predict cifar10-inception --dataset cifar10:3.0.2 --split test --out preds.zarr
    heldout predict cifar10-inception --dataset_npz shifted.npz --split test --out shifted.zarr \\
        --ratios 0.7 --workers 4 --no_cross_check
    heldout predict imagenet-resnet50 --tfrecord_dir shards --split test --out in.zarr \\
        --scheduler scheduler.json
    heldout predict exp/digits --dataset_npz digits.npz --split train --out digits.zarr \\
        --source recorded
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from heldout.cli.common import (
    add_dataset_flags,
    command_message,
    dataset_spec,
    fraction,
    non_negative_int,
    positive_int,
    ratios_flag,
    run_ids_flag,
    select_runs_for_command,
    skipped_summary,
)
from heldout.errors import CommandError, ViewError


def _outputs(text: str) -> tuple[str, ...]:
    from heldout.predict.store import OUTPUTS

    names = tuple(o.strip() for o in text.split(",") if o.strip())
    unknown = sorted(set(names) - set(OUTPUTS))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {','.join(OUTPUTS)}")
    return names


def _views(text: str) -> tuple[str, ...]:
    from heldout.data.views import parse_views

    try:
        return tuple(v.name for v in parse_views(text))
    except ViewError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds `predict` to the `heldout` parser."""
    p = subparsers.add_parser(
        "predict",
        help="every run's per-example outputs on a dataset split, in a zarr store",
        description="Restores each run into one model per worker, evaluates a dataset split and "
        "writes correct, prediction, margin, logit_confidence (and logits on request), the runs' "
        "subset masks and their checkpoints' epochs to a zarr v3 store, one chunk per run; runs "
        "that recorded their outputs at the end of training (outputs.npz) are read instead, "
        "without a model, on their own dataset (--source). "
        "Resumable: the same command again evaluates only the runs not completed. Runs on Dask: "
        "--workers N (a local cluster) or --scheduler (an existing one); --workers 0 in this "
        "process. Exits 1 when a run fails or its correctness does not match its aux arrays.",
    )
    p.add_argument("path", help="an experiment directory, or one run <experiment>/<ratio>/<id>")
    add_dataset_flags(p)
    p.add_argument("--split", required=True, help="dataset split to evaluate, e.g. train, test")
    p.add_argument("--train_size", type=positive_int, default=None,
                   help="use only the first N training examples")
    p.add_argument("--out", required=True, help="the store, a directory such as preds.zarr")
    p.add_argument("--ratios", default=None, help="comma-separated subset ratios (default all)")
    p.add_argument("--run_ids", default=None, help="run ids, e.g. 0-99,120 (default all)")
    p.add_argument("--outputs", type=_outputs, default=("correct", "margin", "logit_confidence"),
                   help="comma-separated, of correct,margin,logit_confidence,logits "
                   "(default correct,margin,logit_confidence)")
    p.add_argument("--logits_dtype", choices=["float16", "float32"], default="float16")
    p.add_argument("--views", type=_views, default=None,
                   help="comma-separated views whose logit_confidence the store also holds, "
                   "as logit_confidence_views [R, N, V] for heldout lira, identity first: "
                   "flip (horizontal mirror), down<k>/up<k>, right<k>/left<k> (content "
                   "moved k pixels, zero fill), joined by + in that order, e.g. "
                   "identity,flip,right2,flip+down1+left1")
    p.add_argument("--batch_size", type=positive_int, default=200)
    p.add_argument("--arch", default=None, help="small_inception | resnet50 | mlp "
                   "(default: the released architecture for the dataset)")
    p.add_argument("--source", choices=["auto", "recorded", "checkpoints"], default="auto",
                   help="recorded: each run's outputs recorded at the end of training "
                   "(outputs.npz), read without a model (the runs' own dataset: the images and "
                   "preprocessing they were recorded on, train or test split, no logits, no "
                   "views but identity); checkpoints: each run's model evaluated; auto: "
                   "recorded outputs where runs have them and they can serve, models otherwise "
                   "(default auto)")
    p.add_argument("--backend", choices=["tensorflow", "torch"], default="tensorflow",
                   help="tensorflow: the runs' checkpoints; torch: runs exported by heldout "
                   "export (model.safetensors or model.npz), on CUDA when present")
    p.add_argument("--precision", choices=["float32", "tf32", "bf16"], default="float32",
                   help="--backend torch only: tf32 (CUDA) or bf16 autocast, predictions whose "
                   "top-2 margin is below a bound evaluated again in float32 so that correct "
                   "stays exact (default float32)")
    p.add_argument("--workers", type=non_negative_int, default=None,
                   help="Dask worker processes of a local cluster (default one per visible GPU, "
                   "else one); 0 evaluates in this process without Dask; recorded outputs are "
                   "read in this process either way")
    p.add_argument("--scheduler", default=None,
                   help="address or scheduler file of an existing Dask cluster")
    p.add_argument("--retries", type=non_negative_int, default=1,
                   help="Dask retries of a task that crashed (default 1)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing store made for something else (one without a "
                   "completed run is replaced anyway)")
    p.add_argument("--no_cross_check", action="store_true",
                   help="another evaluation set than the runs' own (shifted or new images): "
                   "its sizes and labels are not checked against the runs' aux arrays (but for "
                   "--split train) and correct is not compared with them")
    p.add_argument("--min_match_fraction", type=fraction, default=1.0,
                   help="a run passes the cross-check when at least this fraction matches")
    p.set_defaults(handler=predict_command)


def predict_command(args: argparse.Namespace) -> int:
    from heldout.evaluate import model_requirement
    from heldout.experiment import RECORDED
    from heldout.predict import default_workers, predict
    from heldout.predict.recorded import plan_source, source_requirement

    if args.scheduler is not None and args.workers is not None:
        raise CommandError("give --workers or --scheduler, not both")
    ratios = ratios_flag(args.ratios)
    run_ids = run_ids_flag(args.run_ids)
    if args.precision != "float32" and args.backend != "torch":
        raise CommandError(f"--precision {args.precision} needs --backend torch")
    plan, why = plan_source(args.source, args.split, args.outputs, args.views or (),
                            not args.no_cross_check, args.backend)
    alternatives = {  # what to say when no run holds what the plan needs
        "recorded": [(model_requirement(args.backend), "use --source checkpoints")],
        "checkpoints": [(RECORDED, f"which cannot serve: {why}" if why
                         else "use --source recorded")],
    }.get(plan, [])
    selection = select_runs_for_command(
        args.path, ratios, run_ids, args.backend,
        requirement=source_requirement(plan, args.backend), alternatives=alternatives)
    # TensorFlow is imported (quietly) only where a run is evaluated: recorded outputs need none.
    workers = default_workers() if args.workers is None else args.workers
    dataset = dataset_spec(args)
    summary = predict(
        selection, dataset, args.split, args.out, outputs=args.outputs,
        logits_dtype=args.logits_dtype, batch_size=args.batch_size,
        workers=workers, scheduler=args.scheduler, backend=args.backend, arch=args.arch,
        overwrite=args.overwrite, retries=args.retries, cross_check=not args.no_cross_check,
        min_match_fraction=args.min_match_fraction,
        backend_options={"precision": args.precision} if args.backend == "torch" else None,
        views=args.views, source=args.source,
    )
    # Runs left out once the dataset was loaded: recorded on other images, and no model.
    later = dataclasses.replace(selection, skipped=summary.skipped[len(selection.skipped):])
    for line in skipped_summary(later):
        print(line, file=sys.stderr)
    for name, error in summary.failed:
        print(f"{name}: FAILED: {command_message(args, error)}")
    print(f"{summary.store}: {summary.num_runs - len(summary.failed)} of {summary.num_runs} runs "
          f"completed ({summary.evaluated} now, {summary.resumed} before)")
    print(command_message(args, _source_line(summary, args.backend)))
    if summary.failed:
        print(f"{len(summary.failed)} runs failed; run the command again to retry them",
              file=sys.stderr)
    if args.precision != "float32":
        print(f"{args.precision}: {summary.reevaluated} of {summary.predictions} predictions "
              "re-evaluated in float32 (top-2 margin below the bound)")
    for line in summary.cross_check_lines:
        print(command_message(args, line), file=sys.stderr)
    if summary.cross_check_note:
        print(f"not cross-checked: {command_message(args, summary.cross_check_note)}")
    elif not args.no_cross_check:
        print(f"checked {summary.checked_runs} runs: {summary.matched} out of {summary.total} "
              "predictions match")
    return 0 if summary.ok else 1


def _source_line(summary, backend: str) -> str:
    """Which source filled the store, for how many runs, e.g. ``400 runs from recorded
    outputs`` or ``396 runs from recorded outputs, 4 from checkpoints``."""
    models = "exported models" if backend == "torch" else "checkpoints"
    read, evaluated = summary.recorded_runs, summary.num_runs - summary.recorded_runs
    if not evaluated:
        line = f"{read} runs from recorded outputs"
    elif not read:
        line = f"{evaluated} runs from {models}"
    else:
        line = f"{read} runs from recorded outputs, {evaluated} from {models}"
    if summary.source_note:
        line += f" (recorded outputs not used: {summary.source_note})"
    return line
