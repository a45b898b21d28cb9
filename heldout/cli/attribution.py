"""`heldout lds` and `heldout datamodels`: attribution scored against a predictions store.

Both read a store of held-out examples written by `heldout predict` (its masks and one output)
and never import TensorFlow; see `heldout.attribution` for the definitions.

Examples::

    heldout lds trak_scores.npy --store test.zarr --out lds.npz
    heldout lds est.npz --store test.zarr --output margin --out lds.npz
    heldout lds --baselines --store test.zarr --output margin --out baselines.npz
    heldout datamodels test.zarr --out dm.npz
"""

from __future__ import annotations

import argparse

import numpy as np

from heldout.attribution.datamodels import MIN_SPLIT_RUNS
from heldout.attribution.lds import MIN_RUNS as LDS_MIN_RUNS
from heldout.cli.common import HelpFormatter, command_message, progress_bar, run_ids_flag
from heldout.errors import CommandError

LDS_OUTPUTS = ("logit_confidence", "margin")
#: `heldout lds --output` when SCORES do not say what they were fitted on: TRAK's output.
DEFAULT_LDS_OUTPUT = "logit_confidence"
#: Test examples named in a one-line list before "and N more".
NAMED = 5


def _ratio(text: str) -> float:
    """argparse type: a subset ratio in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a subset ratio such as 0.5, got {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"a subset ratio lies in (0, 1], got {value}")
    return value


def _open_fraction(text: str) -> float:
    """argparse type: a number in (0, 1)."""
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1), got {value}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds `lds` and `datamodels` to the `heldout` parser."""
    p = subparsers.add_parser(
        "lds",
        help="linear datamodeling score of attribution scores against a store's runs",
        description="The LDS (Park et al. 2023, TRAK): per test example, Spearman's rank "
        "correlation over the store's runs between the summed scores of each run's training "
        "subset and the run's output, ties ranked by their average, NaN scores counted as 0. "
        "Writes lds (float32 [n_test]), p_value, test_index, constant_output and "
        "constant_prediction (the test examples without an LDS) and prints the mean with a 95% "
        "interval over test examples. With --baselines, scores the library's own estimators "
        "instead, cross-fitted: fitted on a fraction of half the runs, scored on the other "
        "half, and swapped.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("scores", nargs="?", metavar="SCORES",
                   help="attribution scores: .npy / .npz [n_train, n_test] (TRAK and dattri's "
                   "layout), or a file of `heldout estimate` (full influence) or "
                   "`heldout datamodels`")
    p.add_argument("--store", required=True, metavar="TEST.zarr",
                   help="predictions store of held-out examples (heldout predict --split test)")
    p.add_argument("--output", choices=LDS_OUTPUTS, default=None,
                   help="the runs' output: logit_confidence (TRAK's z_y - logsumexp of the "
                   "others) or margin (datamodels' z_y - max of the others); default: the one "
                   "SCORES were fitted on (a datamodels file, an estimate of --target margin or "
                   "logit_confidence), else logit_confidence")
    p.add_argument("--ratio", type=_ratio, default=None,
                   help="evaluate on the runs of this subset ratio (default: the store's ratio "
                   "with the most completed runs; runs of several ratios are never pooled)")
    p.add_argument("--layout", choices=("train,test", "test,train"), default=None,
                   metavar="train,test|test,train",
                   help="axes of a plain .npy/.npz array (default train,test)")
    p.add_argument("--baselines", action="store_true",
                   help="score heldout influence on correctness and on the output, and ridge "
                   "datamodels, cross-fitted at --fractions of half the runs")
    p.add_argument("--fractions", default="0.25,0.5,1",
                   help="with --baselines: fractions of the fitting half")
    p.add_argument("--val_fraction", type=_open_fraction, default=0.1,
                   help="with --baselines: held-out share of the fitting runs for the ridge "
                   "penalty")
    p.add_argument("--seed", type=int, default=0,
                   help="with --baselines: the random split of the runs")
    p.add_argument("--out", required=True, help="output .npz (written atomically)")
    p.set_defaults(handler=lds_command)

    p = subparsers.add_parser(
        "datamodels",
        help="linear datamodels of every test example from a store's runs",
        description="Linear datamodels (Ilyas et al. 2022): per test example, the output of a "
        "run as b + sum of w_i over its training subset. Ridge is solved in the dual for every "
        "test example at once (with --penalty it is exactly sklearn Ridge(alpha=X) on the 0/1 "
        "masks with an intercept); lasso through scikit-learn per test example. Without "
        "--penalty the penalty is chosen per test example on a held-out fraction of the runs, "
        "then refitted on every run. Writes weights (float32 [m, n_train], the output change "
        "when the example is included: the heldout influence's units and sign), bias, penalty, "
        "val_spearman, val_r2, test_index and the runs fitted.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("store", metavar="TEST.zarr",
                   help="predictions store of held-out examples (heldout predict --split test)")
    p.add_argument("--out", required=True, help="output .npz (written atomically)")
    p.add_argument("--output", choices=LDS_OUTPUTS, default="margin",
                   help="the output modelled")
    p.add_argument("--fit", choices=("ridge", "lasso"), default="ridge",
                   help="ridge (dual form, all test examples at once) or lasso (scikit-learn, "
                   "one test example at a time: give --test_index)")
    p.add_argument("--val_fraction", type=_open_fraction, default=0.1,
                   help="held-out share of the runs the penalty is chosen on (at least 3 runs)")
    p.add_argument("--penalty", type=float, default=None,
                   help="fix the penalty (ridge lambda, lasso alpha) and fit on every run")
    p.add_argument("--test_index", default=None,
                   help="test examples to model, e.g. 0-99,250 (default: all)")
    p.add_argument("--ratio", type=_ratio, default=None,
                   help="fit on the runs of this subset ratio (default: the store's ratio with "
                   "the most completed runs)")
    p.add_argument("--seed", type=int, default=0, help="the random validation split")
    p.set_defaults(handler=datamodels_command)


def _read_store(path: str, output: str, ratio: float | None, min_runs: int, why: str):
    """The store's masks and output (`heldout.predict.read_outputs`), refusing a train-split
    store and fewer than `min_runs` runs."""
    from heldout.predict import read_outputs

    data = read_outputs(path, output, ratio, not_split="train")
    if len(data.run_names) < min_runs:
        raise CommandError(f"{path}: {len(data.run_names)} completed runs at "
                           f"{data.ratio_note}; {why} needs at least {min_runs}")
    return data


def _which_runs(data, args: argparse.Namespace) -> str:
    return f"{len(data.run_names)} runs of {data.path} ({command_message(args, data.ratio_note)})"


def _named(index: np.ndarray) -> str:
    shown = ", ".join(str(int(i)) for i in index[:NAMED])
    return shown + (f" and {len(index) - NAMED} more" if len(index) > NAMED else "")


def lds_command(args: argparse.Namespace) -> int:
    from heldout import attribution

    if (args.scores is None) != args.baselines:
        raise CommandError("give SCORES (a file of attribution scores) or --baselines, not "
                           + ("both" if args.baselines else "neither"))
    if args.baselines:
        if args.layout is not None:
            raise CommandError("--layout applies to SCORES, not to --baselines")
        return _baselines(args)
    why = "the LDS, a rank correlation over runs,"
    output = args.output or DEFAULT_LDS_OUTPUT
    data = _read_store(args.store, output, args.ratio, LDS_MIN_RUNS, why)
    n_test = data.values.shape[1]
    scores = attribution.load_scores(args.scores, data.masks.shape[1], n_test, args.layout,
                                     data.fingerprint, against=args.store)
    if scores.output is not None and scores.output != output:
        if args.output is None:  # the default output is the one the scores were fitted on
            output = scores.output
            data = _read_store(args.store, output, args.ratio, LDS_MIN_RUNS, why)
        else:
            print(f"note: {scores.description} fitted on {scores.output}, scored against "
                  f"{output} (--output)")
    result = attribution.lds(scores.values, data.masks, data.values[:, scores.test_index],
                             progress=progress_bar("LDS", "tile", leave=False))
    summary = result.summary()
    from heldout.npzio import save_npz_atomic

    save_npz_atomic(args.out, {
        "lds": result.lds.astype(np.float32), "p_value": result.p_value,
        "test_index": scores.test_index, "constant_output": result.constant_output,
        "constant_prediction": result.constant_prediction,
        "num_runs": np.asarray(result.num_runs, np.int64),
        "runs": np.asarray(data.run_names, dtype=str), "output": np.asarray(output),
        "mean": np.asarray(summary.mean), "ci_low": np.asarray(summary.low),
        "ci_high": np.asarray(summary.high), "scores": np.asarray(str(args.scores)),
    })
    print(f"{args.out}: LDS {summary.mean:.4f} (95% interval {summary.low:.4f} to "
          f"{summary.high:.4f}) over {summary.num_defined} test examples; {scores.description} "
          f"against the {output} of {_which_runs(data, args)}")
    nan_line = f"NaN (excluded): {summary.num_nan}"
    only_prediction = result.constant_prediction & ~result.constant_output
    for what, flags in (("constant output", result.constant_output),
                        ("constant prediction", only_prediction)):
        if flags.any():
            named = _named(scores.test_index[flags])
            nan_line += f"; {what}: {flags.sum()} (test examples {named})"
    print(nan_line)
    if scores.runs:
        shared = len(set(scores.runs) & set(data.run_names))
        if shared:
            print(f"note: {shared} of the {len(data.run_names)} evaluation runs were among the "
                  f"runs these scores were fitted on: an in-sample LDS, optimistic")
    elif scores.kind == "estimate":  # an estimate file does not list its runs
        print("note: an estimate's file does not list its runs; if they include these (an "
              "estimate from this store or its experiment), the LDS is in-sample, optimistic "
              "(heldout lds --baselines scores out of sample)")
    return 0


def _baselines(args: argparse.Namespace) -> int:
    from heldout import attribution
    from heldout.npzio import save_npz_atomic

    try:
        fractions = [float(f) for f in args.fractions.split(",") if f.strip()]
    except ValueError:
        raise CommandError(f"--fractions: expected numbers such as 0.25,0.5,1, got "
                           f"{args.fractions!r}") from None
    output = args.output or DEFAULT_LDS_OUTPUT
    data = _read_store(args.store, output, args.ratio, 2 * LDS_MIN_RUNS,
                       "cross-fitting (each half scored by a rank correlation over runs)")
    correct = _read_store(args.store, "correct", data.ratio, 0, "")
    table = attribution.cross_fit_baselines(
        data.masks, data.values, correct.values, fractions=fractions,
        val_fraction=args.val_fraction, seed=args.seed,
        progress=progress_bar("baselines", "fit", leave=False))
    arrays = table.to_dict()
    arrays.update(output=np.asarray(output), runs=np.asarray(data.run_names, dtype=str),
                  seed=np.asarray(args.seed), val_fraction=np.asarray(args.val_fraction))
    save_npz_atomic(args.out, arrays)
    halves = " and ".join(str(n) for n in table.num_score_runs)
    print(f"Cross-fitted LDS against {output}: {_which_runs(data, args)}, split at random into "
          f"halves of {halves} (fit on a fraction of one, scored on the other, swapped); "
          f"{data.values.shape[1]} test examples")
    print(f"{'method':<20} {'fit runs':>9} {'LDS':>8} {'95% interval':>20} {'NaN':>5} "
          f"{'fit time':>9}")
    for k, method in enumerate(table.methods):
        for f in range(len(table.fractions)):
            runs = "/".join(str(n) for n in table.num_fit_runs[f])
            interval = f"[{table.low[k, f]:.4f}, {table.high[k, f]:.4f}]"
            print(f"{method:<20} {runs:>9} {table.mean[k, f]:>8.4f} {interval:>20} "
                  f"{table.num_nan[k, f]:>5} {table.seconds[k, f]:>8.2f}s")
    print(f"{args.out}: the table and each test example's LDS")
    return 0


def datamodels_command(args: argparse.Namespace) -> int:
    from heldout import attribution

    index = run_ids_flag(args.test_index, "--test_index", "test positions")
    if args.fit == "lasso" and index is None:
        raise CommandError("the lasso costs one regularisation path per test example: choose "
                           "them with --test_index (e.g. 0-99)")
    min_runs = 2 if args.penalty is not None else 2 * MIN_SPLIT_RUNS
    data = _read_store(args.store, args.output, args.ratio, min_runs,
                       "a datamodel" if args.penalty is not None
                       else "choosing the penalty on held-out runs")
    if index is not None:  # positions checked on the ranges, then listed
        n_test = data.values.shape[1]
        if index.ranges[-1][1] >= n_test:
            raise CommandError(f"--test_index: expected positions in 0..{n_test - 1} (the "
                               f"store's test examples), found up to {index.ranges[-1][1]}")
        index = np.fromiter(index, np.int64, len(index))
    dm = attribution.fit_datamodels(
        data.masks, data.values, fit=args.fit, penalty=args.penalty,
        val_fraction=args.val_fraction, seed=args.seed, test_index=index,
        progress=progress_bar("lasso", "test example", leave=False))
    attribution.save_datamodels(args.out, dm, output=args.output, num_test=data.values.shape[1],
                                runs=data.run_names, fingerprint=data.fingerprint)
    m, n_train = dm.weights.shape
    print(f"{args.out}: {dm.fit} datamodels of the {args.output} of {m} test examples over "
          f"{n_train} training examples, fitted on {_which_runs(data, args)}")
    if args.penalty is not None:
        print(f"penalty fixed at {args.penalty:g}, fitted on every run")
    else:
        low, high = np.nanmin(dm.penalties, axis=1), np.nanmax(dm.penalties, axis=1)
        edge = int(np.sum(np.isclose(dm.penalty, low) | np.isclose(dm.penalty, high)))
        print(f"penalty chosen per test example on {dm.num_val_runs} held-out runs (median "
              f"{np.median(dm.penalty):.4g}; {edge} at an end of the grid), then refitted on "
              f"every run; held-out Spearman {np.nanmean(dm.val_spearman):.4f}, R^2 "
              f"{np.nanmean(dm.val_r2):.4f} (means over test examples)")
    return 0
