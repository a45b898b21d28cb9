"""`heldout report` and `heldout plot`: an experiment's scores as one HTML page, or as figures.

Both read the runs' aux arrays once, check the given score files against them and compute what
is not given (`heldout.report`): memorization and top-k influence at the largest subset ratio
with enough runs, C-scores over all ratios, and LiRA from a train-split predictions store.

Examples::

    heldout report exp --dataset_npz dataset.npz --out report.html
    heldout report cifar10-inception --dataset cifar10:3.0.2 --estimates est.npz \\
        --cscores cscores.npz --out report.html
    heldout report exp --dataset_npz dataset.npz --lira lira.npz \\
        --lds_baselines baselines.npz --out report.html
    heldout plot exp --dataset_npz dataset.npz --out_dir figures
"""

from __future__ import annotations

import argparse
import functools
import os

from tqdm import tqdm

from heldout import estimate as est
from heldout import report
from heldout.cli.common import (
    add_dataset_flags,
    dataset_spec,
    positive_int,
    select_runs_for_command,
)
from heldout.errors import CommandError


def _add_input_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("experiment_dir", help="<experiment> directory of the release layout")
    add_dataset_flags(p)
    p.add_argument("--labels_only", action="store_true",
                   help="read only the dataset's labels (no pictures in the galleries)")
    p.add_argument("--estimates", help="`heldout estimate` file to use (default: computed at "
                   "the largest ratio with enough runs); refused when of other runs")
    p.add_argument("--cscores", help="C-score file to use (default: computed over all ratios)")
    p.add_argument("--top_k", type=positive_int, default=report.DEFAULT_TOP_K,
                   help=f"influence entries per test example (default {report.DEFAULT_TOP_K})")
    p.add_argument("--infl_threshold", type=float, default=est.INFLUENCE_THRESHOLD,
                   help="smallest influence of a high-influence pair")
    p.add_argument("--mem_threshold", type=float, default=est.MEMORIZATION_THRESHOLD,
                   help="smallest memorization of a high-influence pair's training example")
    p.add_argument("--lira", metavar="LIRA.npz",
                   help="`heldout lira` file of these runs, for the membership-inference "
                   "section (report: default computed from --predictions when given)")
    p.add_argument("--lds_baselines", metavar="FILE.npz",
                   help="`heldout lds --baselines` file of these runs, for the section scoring "
                   "attribution (LDS against runs fitted on)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds `report` and `plot` to the `heldout` parser."""
    p = subparsers.add_parser(
        "report",
        help="one self-contained HTML page of an experiment's scores",
        description="Writes one HTML file (images and figures inline, no network, no script): "
        "the experiment and its learning curve, memorization, influence, C-scores, likely "
        "label problems (with --predictions), membership inference (LiRA, with --lira or "
        "computed from --predictions) and attribution scored by LDS (with --lds_baselines), "
        "each with galleries of examples.",
    )
    _add_input_flags(p)
    p.add_argument("--out", required=True, help="the .html file (written atomically)")
    p.add_argument("--predictions", help="predictions store (zarr) of the train split, for "
                   "the likely label problems and, without --lira, the LiRA attack (as "
                   "`heldout lira STORE` with its defaults)")
    p.add_argument("--gallery_size", type=positive_int, default=report.DEFAULT_GALLERY_SIZE,
                   help=f"examples per gallery (default {report.DEFAULT_GALLERY_SIZE})")
    p.set_defaults(handler=report_command)

    p = subparsers.add_parser(
        "plot",
        help="the report's figures, each alone as PNG and PDF",
        description="Writes <out_dir>/<figure>.png and .pdf (matplotlib Agg, atomically) for "
        f"the figures {', '.join(report.FIGURES)}.",
    )
    _add_input_flags(p)
    p.add_argument("--out_dir", required=True, help="directory for the figures")
    p.add_argument("--figures", help="comma-separated figure names (default: all)")
    p.set_defaults(handler=plot_command, predictions=None,
                   gallery_size=report.DEFAULT_GALLERY_SIZE)


def _examples(args: argparse.Namespace) -> report.Examples:
    # TensorFlow only for TFDS / TFRecord sources.
    from heldout.data import load_dataset, load_split_labels

    spec = dataset_spec(args)
    if args.labels_only:
        labels = load_split_labels(spec, ("train", "test"))
        return report.labels_only_examples(spec.source, labels, "--labels_only was given")
    return report.examples_from_dataset(load_dataset(spec, ("train", "test")))


def _compute(args: argparse.Namespace) -> report.ReportData:
    experiment = select_runs_for_command(args.experiment_dir, allow_run_dir=False)
    return report.compute_report(
        experiment, _examples(args), args.estimates, args.cscores, args.predictions,
        args.gallery_size, args.top_k, args.infl_threshold, args.mem_threshold,
        progress=functools.partial(tqdm, desc="reading runs", unit="run", dynamic_ncols=True),
        lira_path=args.lira, lds_baselines_path=args.lds_baselines,
        lira_progress=functools.partial(tqdm, desc="lira (2 passes)", unit="chunk",
                                        dynamic_ncols=True, leave=False),
    )


def report_command(args: argparse.Namespace) -> int:
    data = _compute(args)
    size = report.write_report(args.out, data)
    runs = ", ".join(f"{s.ratio}: {s.num_runs}" for s in data.ratios)
    mem = ("memorization undefined" if data.estimate is None else
           f"memorization and influence at ratio {data.estimate.subset_ratio:g}")
    if data.membership is not None:
        how = "computed from" if data.membership.computed else "from"
        lira = f"membership inference {how} {data.membership.source}"
    elif args.lira is None and args.predictions is None:
        lira = "no --lira: membership inference omitted"
    else:
        lira = "membership inference not computed (the page says why)"
    lds = (f"LDS baselines from {args.lds_baselines}" if data.baselines else
           "no --lds_baselines: LDS section omitted")
    print(f"{args.out}: {size / 1e6:.2f} MB; runs per ratio {runs}; {mem}; "
          + ("likely label problems from " + args.predictions if data.predictions else
             "no --predictions: likely label problems omitted") + f"; {lira}; {lds}")
    return 0


def plot_command(args: argparse.Namespace) -> int:
    names = None if not args.figures else [n.strip() for n in args.figures.split(",")
                                           if n.strip()]
    unknown = [n for n in names or () if n not in report.FIGURES]
    if unknown:
        raise CommandError(f"--figures: unknown {unknown}; the figures are {list(report.FIGURES)}")
    data = _compute(args)
    written, undefined = report.write_figures(args.out_dir, data, names)
    files = ", ".join(map(os.path.basename, written))
    needs = {"lira_roc": "--lira", "lds_baselines": "--lds_baselines"}
    left = [f"{n} (needs {needs[n]})" if n in needs and getattr(args, needs[n][2:]) is None
            else f"{n} (undefined)" for n in undefined]
    print(f"{args.out_dir}: wrote {len(written)} files ({files})"
          + (f"; left out: {', '.join(left)}" if left else ""))
    return 0
