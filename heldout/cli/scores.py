"""`heldout estimate`, `heldout cscores`, `heldout pairs`: scores from an experiment's runs.

Only the runs' `aux_arrays.npz` are read (runs without checkpoints count); see
`heldout.estimate` for the definitions and `heldout.published` for the file formats. When the
runs carry a dataset fingerprint (runs written by `heldout train`), the estimate and C-score
files keep it (``fingerprint__*`` keys), runs of different datasets or orders are refused, and
the labels of a dataset given with ``--dataset...`` are checked against it.

Examples::

    heldout estimate cifar10-inception --ratio 0.7 --out est.npz
    heldout estimate imagenet-resnet50 --ratio 0.7 --influence topk --top_k 20 --out est.npz \
        --device cuda
    heldout estimate exp --ratio 0.5 --predictions test.zarr --target margin --out est.npz
    heldout cscores cifar10-inception --dataset cifar10:3.0.2 --out cscores.npz
    heldout pairs est.npz --dataset cifar10:3.0.2 --out pairs.npz
"""

from __future__ import annotations

import argparse
import dataclasses
import os

import numpy as np

from heldout import estimate as est
from heldout import published
from heldout.cli.common import (
    HelpFormatter,
    add_dataset_flags,
    add_verbose_flag,
    dataset_spec,
    progress_bar,
    select_runs_for_command,
)
from heldout.data.fingerprint import Fingerprint
from heldout.errors import CommandError

DEFAULT_TOP_K = 10


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds `estimate`, `cscores` and `pairs` to the `heldout` parser."""
    p = subparsers.add_parser(
        "estimate",
        help="memorization and influence at one subset ratio",
        description="Memorization (with binomial standard errors and the in/out counts) and "
        "influence of the runs at one subset ratio (Feldman & Zhang 2020). Writes an .npz "
        "with memorization, memorization_stderr, count_in, count_out, num_runs, subset_ratio "
        "and influence (float32 [n_test, n_train]) or topk_index/topk_influence ([n_test, k]), "
        "plus the runs' dataset fingerprint (fingerprint__* keys) when they have one and the "
        "product backend of the influence (cooccurrence_backend). NaN marks values whose count "
        "is zero. With --predictions and --target margin or "
        "logit_confidence, the influence is on that output of the store (mean with - mean "
        "without, its units), with Welch standard errors (influence_stderr or "
        "topk_influence_stderr); the file's target key says which.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("experiment_dir", help="<experiment> directory of the release layout")
    p.add_argument("--ratio", help="subset ratio, e.g. 0.7 (default: the experiment's only one)")
    p.add_argument("--out", required=True, help="output .npz (written atomically)")
    p.add_argument(
        "--influence",
        choices=est.INFLUENCE_KINDS,
        default="full",
        help="full matrix, top-k training examples per test example, or none",
    )
    p.add_argument(
        "--top_k",
        type=int,
        default=None,
        help=f"with --influence topk: entries per test example (default {DEFAULT_TOP_K})",
    )
    p.add_argument(
        "--target",
        choices=est.TARGETS,
        default="correct",
        help="the output whose influence is estimated: correct (the papers' definition), or, "
        "with --predictions, the store's margin or logit_confidence (mean with - mean without, "
        "in the output's units, with Welch standard errors: influence_stderr)",
    )
    _add_backend_flags(p)
    add_verbose_flag(p)
    _add_predictions_flags(p)
    p.set_defaults(handler=estimate_command)
    _register_merge(subparsers)

    p = subparsers.add_parser(
        "cscores",
        help="C-scores averaged over subset ratios",
        description="Holdout C-scores (Jiang et al. 2021): per subset ratio, the accuracy on "
        "each training example of the runs that held it out, averaged over the ratios where it "
        "is defined. Writes scores, scores_stderr, scores_by_ratio [n_ratios, n_train], ratios, "
        "num_runs_by_ratio (+ scores_stderr_by_ratio, count_out_by_ratio, test_scores, "
        "test_scores_by_ratio) and labels when a dataset is given: the published C-score "
        "format (labels, scores) plus those keys, and the runs' dataset fingerprint "
        "(fingerprint__* keys) when they have one; the dataset's labels are checked against it.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("experiment_dir", help="<experiment> directory of the release layout")
    p.add_argument("--out", required=True, help="output .npz (written atomically)")
    p.add_argument("--ratios", help="comma-separated subset ratios to use (default: all)")
    add_dataset_flags(p, required=False)
    add_verbose_flag(p)
    p.set_defaults(handler=cscores_command)

    p = subparsers.add_parser(
        "pairs",
        help="high-influence pairs from an estimate file",
        description="High-influence (train, test) pairs (Feldman & Zhang 2020): influence >= "
        "--infl_threshold, memorization of the training example >= --mem_threshold, same "
        "label. Writes the published format: tr_idx, tt_idx, infl, mem. When the estimate "
        "carries a dataset fingerprint, labels in another order or of another dataset are "
        "refused. Prints the count with the number of pairs expected to pass the rule by "
        "chance alone at the estimate's run count (no true influence; an upper bound for an "
        "estimate file without test_correct_total, written before it was recorded).",
        formatter_class=HelpFormatter,
    )
    p.add_argument("estimate_npz", metavar="EST_NPZ", help="output of `heldout estimate`")
    add_dataset_flags(p)
    p.add_argument("--out", required=True, help="output .npz (written atomically)")
    p.add_argument("--infl_threshold", type=float, default=est.INFLUENCE_THRESHOLD,
                   help="smallest influence of a pair")
    p.add_argument("--mem_threshold", type=float, default=est.MEMORIZATION_THRESHOLD,
                   help="smallest memorization of a pair's training example")
    p.set_defaults(handler=pairs_command)


def _load_labels(
    args: argparse.Namespace, expected: dict[str, int], fingerprint: Fingerprint | None,
    source: str,
) -> dict[str, np.ndarray]:
    """The labels of the splits in `expected` (split -> size), the dataset read once, checked
    against the sizes and the outputs' fingerprint (`heldout.data.load_checked_labels`)."""
    # TensorFlow only for TFDS / TFRecord sources.
    from heldout.data import load_checked_labels

    spec = dataset_spec(args)
    if spec.dataset is not None or spec.tfrecord_dir is not None:
        from heldout.quiet import import_tensorflow

        import_tensorflow()

    return load_checked_labels(spec, expected, fingerprint, source)


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _add_backend_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=est.BACKENDS, default="auto",
                   help="how the influence's co-occurrence counts are formed: torch (exact "
                   "int32 counts from int8 products, torch._int_mm), numpy (float32 GEMM), or "
                   "auto: torch when PyTorch is installed, else numpy. The values are the same "
                   "bit for bit")
    p.add_argument("--device", choices=est.DEVICES, default="cpu",
                   help="where the torch backend's products run (cuda: needs PyTorch with a "
                   "CUDA device)")


def _product_backend(args: argparse.Namespace) -> est.ProductBackend | None:
    """The `--backend`/`--device` choice, resolved before any run is read (None without
    influence)."""
    if args.influence == "none":
        return None
    return est.product_backend(args.backend, args.device)  # EstimateError: one line


def estimate_command(args: argparse.Namespace) -> int:
    if args.top_k is not None and args.influence != "topk":
        raise CommandError("--top_k applies only with --influence topk")
    top_k = DEFAULT_TOP_K if args.top_k is None else args.top_k
    if top_k < 1:
        raise CommandError(f"--top_k must be >= 1, got {top_k}")
    if args.target != "correct":
        if args.predictions is None:
            raise CommandError(f"--target {args.target} needs --predictions STORE.zarr (the "
                               "runs' aux arrays hold their correctness only)")
        if args.save_accumulator:
            raise CommandError("--save_accumulator holds correctness counts; it applies with "
                               "--target correct only")
    backend = _product_backend(args)
    experiment = select_runs_for_command(args.experiment_dir, allow_run_dir=False,
                                         verbose=args.verbose)
    if args.ratio is None:
        if len(experiment.ratios) > 1:
            raise CommandError(
                f"{experiment.root} has subset ratios {experiment.ratios}; choose one with --ratio"
            )
        ratio = experiment.ratios[0]
    else:
        ratio = experiment.ratio_name(args.ratio)
    runs = experiment.runs(ratio)
    acc = _accumulate(args, runs, ratio)
    return _write_estimate(args, acc, ratio, top_k, backend)


def _write_estimate(args: argparse.Namespace, acc: est.RatioAccumulator, ratio: str,
                    top_k: int, backend: est.ProductBackend | None) -> int:
    """Saves the accumulator (`--save_accumulator`), then the estimate file (`--out`)."""
    if getattr(args, "save_accumulator", None):
        acc.save(args.save_accumulator)
        print(f"{args.save_accumulator}: accumulator of {acc.num_runs} runs")
    if args.out is None:
        return 0
    target = getattr(args, "target", "correct")  # `heldout merge` merges correctness only
    if args.influence == "full":
        matrices = 1 if target == "correct" else 2  # the influence and its standard errors
        needed, available = 4 * matrices * acc.num_test * acc.num_train, _physical_memory()
        if available is not None and needed > 0.8 * available:
            raise CommandError(
                f"full influence is float32 [{acc.num_test}, {acc.num_train}] = "
                f"{needed / 1e9:.1f} GB, more than this machine's memory "
                f"({available / 1e9:.1f} GB); use --influence topk"
            )
    products = f" by {backend.describe()}" if backend is not None else ""
    if target == "correct":
        result = est.estimate(acc, args.influence, top_k,
                              progress=progress_bar(f"influence{products}", "tile"),
                              backend=backend or "numpy")
    else:
        result = _output_estimate(args.predictions, acc, ratio, target, args.influence, top_k)
        products = ""
    est.save_estimate(args.out, result)
    fingerprint = (
        f"; dataset {acc.fingerprint.describe()}" if acc.fingerprint else "; no dataset fingerprint"
    )
    defined = int(np.sum(~np.isnan(result.memorization)))
    of = "" if target == "correct" else f" on {target} (with Welch standard errors)"
    kind = {
        "full": f"influence{of} float32 [{acc.num_test}, {acc.num_train}]{products}",
        "topk": f"top-{top_k} influence{of} per test example{products}",
        "none": "no influence",
    }[args.influence]
    print(
        f"{args.out}: {acc.num_runs} runs at subset ratio {ratio}, {acc.num_train} training / "
        f"{acc.num_test} test examples; memorization defined for {defined} "
        f"({acc.num_train - defined} NaN: never or always held out); {kind}{fingerprint}"
    )
    return 0


def _output_estimate(store: str, acc: est.RatioAccumulator, ratio: str, target: str,
                     influence: str, top_k: int) -> est.RatioEstimate:
    """The estimate of `heldout estimate --target margin|logit_confidence`: memorization from
    `acc` (correctness), influence on the store's `target` of the same runs
    (`heldout.attribution.output_influence`)."""
    from heldout import attribution
    from heldout.predict import read_outputs

    base = est.estimate(acc, "none")
    if influence == "none":
        return dataclasses.replace(base, target=target)
    data = read_outputs(store, target, ratio)
    if data.run_names != acc.run_names:  # both select the store's runs at `ratio`
        raise CommandError(f"{store}: the runs at subset ratio {ratio} changed while reading "
                           "it; run the command again")
    progress = progress_bar(f"influence on {target}", "tile")
    if influence == "full":
        result = attribution.output_influence(data.masks, data.values, progress=progress)
        return dataclasses.replace(base, influence=result.influence,
                                   influence_stderr=result.stderr, target=target)
    index, values, stderr = attribution.output_influence_top_k(data.masks, data.values, top_k,
                                                               progress=progress)
    return dataclasses.replace(base, topk_index=index, topk_influence=values,
                               topk_influence_stderr=stderr, target=target)


def cscores_command(args: argparse.Namespace) -> int:
    experiment = select_runs_for_command(args.experiment_dir, allow_run_dir=False,
                                         verbose=args.verbose)
    ratios = None
    if args.ratios:
        ratios = [r.strip() for r in args.ratios.split(",") if r.strip()]
    accs = est.accumulate_experiment(
        experiment, ratios, keep_runs=False, progress=progress_bar("reading runs", "run")
    )
    scores = est.cscores(accs)
    labels = None
    if dataset_spec(args) is not None:
        labels = _load_labels(args, {"train": accs[0].num_train}, scores.fingerprint,
                              f"the runs in {args.experiment_dir}")["train"]
    published.write_cscores(args.out, scores, labels)
    defined = int(np.sum(~np.isnan(scores.scores)))
    per_ratio = ", ".join(
        f"{r:g}: {n} runs" for r, n in zip(scores.ratios, scores.num_runs_by_ratio, strict=True)
    )
    print(
        f"{args.out}: C-scores of {len(scores.scores)} training examples from {per_ratio}; "
        f"defined for {defined} ({len(scores.scores) - defined} NaN: never held out)"
        + ("" if labels is None else "; with labels")
    )
    return 0


def pairs_command(args: argparse.Namespace) -> int:
    estimate = est.load_estimate(args.estimate_npz)
    if estimate.target != "correct":
        raise CommandError(f"{args.estimate_npz}: influence on {estimate.target}; the pairs' "
                           "thresholds are of influence on correctness (--target correct)")
    n_train = len(estimate.memorization)
    if estimate.influence is not None:
        n_test = estimate.influence.shape[0]
    elif estimate.topk_index is not None:
        n_test = estimate.topk_index.shape[0]
    else:
        raise CommandError(
            f"{args.estimate_npz}: holds no influence (written with --influence none); run "
            "`heldout estimate` with --influence full or topk"
        )
    labels = _load_labels(args, {"train": n_train, "test": n_test}, estimate.fingerprint,
                          args.estimate_npz)
    train_labels, test_labels = labels["train"], labels["test"]
    thresholds = dict(infl_threshold=args.infl_threshold, mem_threshold=args.mem_threshold)
    if estimate.influence is not None:
        pairs = est.select_high_influence_pairs(
            estimate.influence, estimate.memorization, train_labels, test_labels, **thresholds
        )
    else:
        try:
            pairs = est.pairs_from_top_k(
                estimate.topk_index,
                estimate.topk_influence,
                estimate.memorization,
                train_labels,
                test_labels,
                **thresholds,
            )
        except est.EstimateError as e:
            raise CommandError(f"{args.estimate_npz}: {e}") from e
    published.write_pairs(args.out, pairs)
    noise = est.expected_noise_pairs(
        estimate.count_in, estimate.count_out, estimate.test_correct_total, estimate.num_runs,
        estimate.memorization, train_labels, test_labels, **thresholds)
    described = est.describe_pairs(len(pairs), noise, estimate.num_runs, **thresholds,
                                   upper_bound=estimate.test_correct_total is None)
    print(f"{args.out}: {described}; over {len(np.unique(pairs.tr_idx))} training and "
          f"{len(np.unique(pairs.tt_idx))} test examples")
    return 0


# --------------------------------------------------------------------------------------------
# Predictions stores and accumulator shards (`heldout predict`, `heldout merge`).


def _add_predictions_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--predictions", default=None, metavar="STORE.zarr",
                   help="a store of `heldout predict`: influence on its evaluation set (any "
                   "dataset) from its correct, membership from its mask; memorization from "
                   "the experiment's aux arrays (or the store's correct for a train store)")
    p.add_argument("--save_accumulator", default=None, metavar="SHARD.npz",
                   help="also write the runs' accumulator, for `heldout merge`")


def _accumulate(args: argparse.Namespace, runs: list, ratio: str) -> est.RatioAccumulator:
    """The accumulator of `heldout estimate`: from the runs' aux arrays, or from a store."""
    keep = args.influence != "none" and args.target == "correct"
    if args.predictions is None:
        return est.accumulate_runs(runs, keep_runs=keep,
                                   progress=progress_bar(f"reading runs ({ratio})", "run"))
    from heldout.predict import accumulate_store

    return accumulate_store(args.predictions, ratio, runs, keep_runs=keep)


def _register_merge(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "merge",
        help="merge accumulator shards into one estimate",
        description="Merges accumulators over disjoint runs of one subset ratio (written by "
        "`heldout estimate --save_accumulator`) and writes the estimate of `heldout estimate` "
        "(--out) and/or the merged accumulator (--save_accumulator).",
    )
    p.add_argument("shards", nargs="+", metavar="SHARD.npz", help="accumulator shards")
    p.add_argument("--out", default=None, help="estimate .npz (written atomically)")
    p.add_argument("--influence", choices=est.INFLUENCE_KINDS, default="full",
                   help="full matrix, top-k training examples per test example, or none")
    p.add_argument("--top_k", type=int, default=None,
                   help=f"with --influence topk: entries per test example "
                   f"(default {DEFAULT_TOP_K})")
    p.add_argument("--save_accumulator", default=None, metavar="MERGED.npz",
                   help="write the merged accumulator")
    _add_backend_flags(p)
    p.set_defaults(handler=merge_command)


def merge_command(args: argparse.Namespace) -> int:
    if args.out is None and args.save_accumulator is None:
        raise CommandError("give --out (an estimate) and/or --save_accumulator")
    if args.top_k is not None and args.influence != "topk":
        raise CommandError("--top_k applies only with --influence topk")
    top_k = DEFAULT_TOP_K if args.top_k is None else args.top_k
    backend = _product_backend(args) if args.out is not None else None
    acc = est.merge_accumulators(est.load_accumulator(path) for path in args.shards)
    if args.influence != "none" and not acc.keep_runs:
        raise CommandError("the shards hold counts only (written with --influence none); "
                           "use --influence none")
    return _write_estimate(args, acc, f"{acc.subset_ratio:g}", top_k, backend)
