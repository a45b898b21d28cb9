"""`heldout lira`: membership inference (LiRA) on a predictions store, the runs as shadows.

Examples::

    heldout predict cifar10-inception --dataset cifar10:3.0.2 --split train --out train.zarr
    heldout lira train.zarr --out lira.npz
    heldout lira train.zarr --out lira.npz --ratios 0.5 --targets 64 --seed 1 --location mean
"""

from __future__ import annotations

import argparse
import functools

import numpy as np

from heldout.cli.common import command_message, positive_int, run_ids_flag
from heldout.errors import CommandError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds `lira` to the `heldout` parser."""
    from heldout.privacy import LOCATIONS

    p = subparsers.add_parser(
        "lira",
        help="membership inference (LiRA) with the runs as shadow models",
        description="The likelihood-ratio attack of Carlini et al. 2022 on a predictions store "
        "of the runs' own training split (`heldout predict --split train`): each target run's "
        "shadow models are all the other completed runs, IN and OUT per example from the "
        "store's mask. Variants online, online_fixed, offline, offline_fixed (fixed variance; "
        "offline is the paper's one-sided Eq. 4) and global (threshold). Writes scores "
        "float32 [T, N] per variant, member, the thinned ROC, AUC, balanced accuracy, TPR at "
        "FPR 1e-2..1e-5 and each example's exposure (see heldout.privacy.save_lira), and "
        "prints one table.",
    )
    p.add_argument("store", metavar="STORE.zarr", help="a predictions store of the train split")
    p.add_argument("--out", required=True, help="output .npz (written atomically)")
    p.add_argument("--ratios", default=None,
                   help="comma-separated subset ratios of the runs to use (default: the store's "
                   "ratio with the most completed runs; on a tie the one nearest 0.5)")
    targets = p.add_mutually_exclusive_group()
    targets.add_argument("--targets", type=positive_int, default=None, metavar="K",
                         help="attack K target runs drawn with --seed (default: every run in "
                         "turn); the shadows are always all the other runs")
    targets.add_argument("--target_ids", default=None, metavar="IDS",
                         help="attack the runs with these run ids, e.g. 0-9,42")
    p.add_argument("--seed", type=int, default=0, help="seed of the --targets draw")
    p.add_argument("--location", choices=LOCATIONS, default="median",
                   help="location of the IN and OUT Gaussians over the shadows")
    p.add_argument("--views", default=None,
                   help="comma-separated views to average over, e.g. identity,flip (default: "
                   "all the store's views; identity alone when it has none)")
    p.set_defaults(handler=lira_command)


def _rate(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{value:.4f}"


def format_table(result) -> list[str]:
    """The printed table: one row per variant."""
    levels = next(iter(result.metrics.values())).fpr_levels
    header = (["variant", "AUC", "bal. acc."] + [f"TPR@{x:.0e}".replace("e-0", "e-")
                                                  for x in levels]
              + ["members", "non-members"])
    rows = [header]
    for name, m in result.metrics.items():
        rows.append([name, f"{m.auc:.4f}", f"{m.balanced_accuracy:.4f}"]
                    + [_rate(x) for x in m.tpr_at_fpr]
                    + [f"{m.num_members:,}", f"{m.num_nonmembers:,}"])
    widths = [max(len(row[k]) for row in rows) for k in range(len(header))]
    return ["  ".join(cell.ljust(w) if k == 0 else cell.rjust(w)
                      for k, (cell, w) in enumerate(zip(row, widths, strict=True)))
            for row in rows]


def lira_command(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from heldout.privacy import choose_targets, load_lira_inputs, run_lira, save_lira
    from heldout.privacy.attack import select_targets
    from heldout.release.archives import parse_ratios

    ratios = parse_ratios(args.ratios)
    views = [v.strip() for v in args.views.split(",") if v.strip()] if args.views else None
    if args.views is not None and not views:
        raise CommandError("--views: no view named")
    target_ids = run_ids_flag(args.target_ids, "--target_ids")
    inputs = load_lira_inputs(args.store, ratios, views)
    if args.targets is not None:
        targets = choose_targets(len(inputs.run_names), args.targets, args.seed)
    else:
        targets = select_targets(inputs, target_ids)
    progress = functools.partial(tqdm, desc="lira (2 passes)", unit="chunk", dynamic_ncols=True,
                                 leave=False)
    result = run_lira(inputs, targets, args.location, progress=progress)
    save_lira(args.out, result)
    for line in format_table(result):
        print(line)
    r, t = len(inputs.run_names), len(result.target_run)
    n = result.member.shape[1]
    ratios = command_message(args, inputs.ratio_choice)
    print(f"{args.out}: {t} target runs x {n:,} examples of {args.store} at {ratios}; {r} runs, "
          f"each target's shadows the other {r - 1}; views {','.join(inputs.views)}; location "
          f"{args.location}")
    return 0
