"""Memorization and influence of MNIST-like training examples, end to end (Feldman & Zhang 2020).

The recipe of the original MNIST example: an MLP 784-512-256-10 (ReLU), momentum SGD (0.9) at
learning rate 0.1, batch 128, 10 epochs, 2,000 runs each on a random 70% subset of the training
set, pixels / 255. Every run is written in the release layout by `heldout.train` (resumable:
run the same command again to finish an interrupted experiment), then the runs' aux arrays go
through `heldout.estimate`:

- ``memorization[i]`` = accuracy on training example i of the runs that trained on it minus that
  of the runs that did not;
- ``influence[j, i]`` = the same difference for test example j.

Outputs in --output_dir:

- ``infl_mem.npz``: ``memorization``, ``memorization_stderr`` [n_train] (float64),
  ``influence`` [n_test, n_train] (float32; 2.4 GB for all of MNIST), ``count_in``,
  ``count_out``, ``num_runs``, ``subset_ratio``, ``test_correct_total``, ``train_labels``,
  ``test_labels`` (the labels
  trained on, after label noise), ``label_noise_index`` (the flipped training positions;
  empty without --label_noise);
- ``infl_mem.pdf`` / ``.png``: one row per test example (those with the largest maximum
  influence): the test image, its 4 most influential training examples, then 5 random training
  examples of its class, each titled with its label and influence +- its binomial standard
  error (its counts where that would print as 0: `heldout.report.numbers.fmt_binomial`); an
  influencer is significant when influence - 2 stderr >= 0.15 (the papers' threshold with a
  2-sigma margin: `heldout.estimate.is_significant`, the rule of the report's cards too), the
  others are drawn faded and marked "n.s."; the number of runs and the rule are in the caption;
- ``memorization_hist.pdf`` / ``.png``: histogram of memorization over the range of the values
  (flipped and clean examples apart under --label_noise), titled with the numbers of runs and
  examples, the undefined (NaN) examples counted in the caption;
- ``experiment/<ratio>/<run_id>/``: the runs (checkpoints only for run ids divisible by
  --checkpoint_every, default 100; every run has its aux arrays);
- ``dataset.npz``: the data as trained on (after --train_size and --label_noise), so that
  ``heldout verify`` can re-evaluate any run with a checkpoint.

Data: --dataset=digits (the default; scikit-learn's 8x8 digits, no download), --dataset=mnist
(or any TFDS image classification dataset; downloaded by TFDS), or --idx_dir=DIR for MNIST-format
IDX files (e.g. Debian's dataset-fashion-mnist in /usr/share/datasets/fashion-mnist).

    python mnist-example/mnist_infl_mem.py --num_runs=200 --output_dir=/tmp/digits
    python mnist-example/mnist_infl_mem.py --dataset=mnist --output_dir=/tmp/mnist
    python mnist-example/mnist_infl_mem.py --idx_dir=/usr/share/datasets/fashion-mnist \\
        --train_size=10000 --label_noise=0.01 --epochs=60 --learning_rate=0.02 \\
        --num_runs=100 --output_dir=/tmp/fmnist

The last (the label-noise recipe) takes about 20 s per run on 2 CPU cores, about 35 minutes.
Flags are checked before TensorFlow is imported or anything is written: a mistake is one line
``mnist_infl_mem.py: error: ...`` and exit status 2.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time

import numpy as np

from heldout import estimate

LABEL_NOISE_SEED = 20200830  # Fixed: the flipped examples do not depend on --seed.
FIGURE_INFLUENTIAL = 4
FIGURE_RANDOM = 5


def build_parser() -> argparse.ArgumentParser:
    """The script's flags (checked further by `parse_args`)."""
    from heldout.cli.common import HelpFormatter, positive_int

    p = argparse.ArgumentParser(
        prog="mnist_infl_mem.py",
        description="Memorization and influence estimates by the heldout procedure on MNIST-like "
        "data (MLP runs on random subsets), with figures.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--dataset", default="digits",
                   help="'digits' (scikit-learn's 8x8 digits, no download) or a TFDS dataset "
                   "such as mnist or fashion_mnist")
    p.add_argument("--idx_dir", default=None,
                   help="directory of MNIST-format IDX files (overrides --dataset)")
    p.add_argument("--data_dir", default=None, help="TFDS data directory")
    p.add_argument("--num_runs", type=int, default=2000, help="number of runs (models), >= 2")
    p.add_argument("--subset_ratio", type=float, default=0.7,
                   help="fraction of the training set each run trains on, in (0, 1)")
    p.add_argument("--epochs", type=positive_int, default=10, help="epochs per run")
    p.add_argument("--batch_size", type=positive_int, default=128, help="examples per step")
    p.add_argument("--learning_rate", type=float, default=0.1, help="SGD learning rate")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum, in [0, 1)")
    p.add_argument("--train_size", type=positive_int, default=None,
                   help="use only the first N training examples")
    p.add_argument("--models_per_step", type=positive_int, default=None,
                   help="K models trained per step (default: 1 on CPU, 128 on a GPU)")
    p.add_argument("--label_noise", type=float, default=0.0,
                   help="flip this fraction of training labels to another class (fixed seed)")
    p.add_argument("--seed", type=int, default=0, help="experiment seed (runs' subsets, batch "
                   "orders and initial weights)")
    p.add_argument("--checkpoint_every", type=int, default=100,
                   help="write checkpoints for runs whose id is a multiple of this (0: none)")
    p.add_argument("--figure_rows", type=positive_int, default=6,
                   help="test examples shown in the influence figure")
    p.add_argument("--output_dir", default="mnist_infl_mem_output",
                   help="where infl_mem.npz, the figures and the experiment go")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    """The flags, checked without TensorFlow and before anything is written (a mistake exits
    with status 2 and one line `mnist_infl_mem.py: error: ...`)."""
    p = build_parser()
    args = p.parse_args(argv)
    if args.num_runs < 2:
        p.error(f"--num_runs must be >= 2, got {args.num_runs}")
    if not 0.0 < args.subset_ratio < 1.0:
        p.error(f"--subset_ratio must lie in (0, 1) (runs must hold examples out), got "
                f"{args.subset_ratio}")
    if not 0.0 <= args.label_noise < 1.0:
        p.error(f"--label_noise must lie in [0, 1), got {args.label_noise}")
    if not args.learning_rate > 0:
        p.error(f"--learning_rate must be > 0, got {args.learning_rate}")
    if not 0.0 <= args.momentum < 1.0:
        p.error(f"--momentum must lie in [0, 1), got {args.momentum}")
    if args.checkpoint_every < 0:
        p.error(f"--checkpoint_every must be >= 0, got {args.checkpoint_every}")
    if args.idx_dir is not None:
        from heldout.data.idx import IDX_FILES, IdxError, find_idx_file

        if not os.path.isdir(args.idx_dir):
            p.error(f"--idx_dir {args.idx_dir}: no such directory")
        try:
            for stems in IDX_FILES.values():
                for stem in stems:
                    find_idx_file(args.idx_dir, stem)
        except IdxError as e:
            p.error(f"--idx_dir {e}")
    if os.path.exists(args.output_dir) and not os.path.isdir(args.output_dir):
        p.error(f"--output_dir {args.output_dir}: exists and is not a directory")
    return args


def load_data(args: argparse.Namespace):
    """The dataset of --idx_dir / --dataset, cut to --train_size, with --label_noise.

    Returns:
      (dataset, flipped training positions int64 [k]).
    """
    from heldout.data import flip_labels, take_train

    if not args.idx_dir and args.dataset == "digits":
        from heldout.data.digits import load_digits

        dataset = load_digits()
    else:
        from heldout.data import DatasetSpec, load_dataset

        spec = (DatasetSpec(idx_dir=args.idx_dir) if args.idx_dir else
                DatasetSpec(dataset=args.dataset, data_dir=args.data_dir))
        dataset = load_dataset(spec)
    if args.train_size is not None:
        dataset = take_train(dataset, args.train_size)
    flipped = np.zeros(0, np.int64)
    if args.label_noise > 0:
        dataset, flipped = flip_labels(dataset, args.label_noise, LABEL_NOISE_SEED)
    return dataset, flipped


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of `scores` for telling `positive` from the rest (Mann-Whitney
    U / (n_pos n_neg), ties counted one half). NaN scores are left out."""
    scores = np.asarray(scores, np.float64)
    positive = np.asarray(positive, bool)
    keep = ~np.isnan(scores)
    scores, positive = scores[keep], positive[keep]
    n_pos = int(positive.sum())
    n_neg = len(scores) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    _, first, counts = np.unique(scores[order], return_index=True, return_counts=True)
    ranks = np.empty(len(scores))
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _show(ax, image: np.ndarray, title: str) -> None:
    ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray_r",
              interpolation="nearest")
    ax.set_title(title, fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])


def _save_figure(fig, path_stem: str) -> None:
    """Writes `fig` as ``<path_stem>.pdf`` and ``.png``, each atomically (a temporary file
    renamed into place, so an interrupted run never leaves a truncated figure)."""
    from heldout.atomic import atomic_path

    for ext in ("pdf", "png"):
        with atomic_path(f"{path_stem}.{ext}", suffix="." + ext) as tmp:
            fig.savefig(tmp, format=ext, dpi=150)


def plot_influence(dataset, est: estimate.RatioEstimate, rows: int, path_stem: str,
                   seed: int = 0) -> dict:
    """The influence figure (see the module docstring), as PDF and PNG.

    Args:
      dataset: the dataset trained on (images and labels).
      est: the estimate with full influence (float32 [n_test, n_train]) and
        ``test_correct_total``; the standard errors are
        `heldout.estimate.influence_stderr_rows` of its rows, the significance
        `heldout.estimate.is_significant`; its runs and ratio are in the caption.
      rows: test examples shown.

    Returns:
      ``panels``: one dict per influencer panel drawn (``test``, ``train``, ``influence``,
      ``stderr``, ``significant``, ``title``); ``caption``: the figure's caption.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from heldout.report.numbers import fmt_binomial

    influence = est.influence
    rng = np.random.default_rng(seed)
    y_train, y_test = dataset.split_labels("train"), dataset.split_labels("test")
    x_train, x_test = dataset.images["train"], dataset.images["test"]
    filled = np.where(np.isnan(influence), -np.inf, influence)
    best = filled.max(axis=1)
    tests = np.argsort(-best, kind="stable")[:rows]
    stderr = estimate.influence_stderr_rows(influence[tests], est.test_correct_total[tests],
                                            est.count_in, est.count_out)
    correct_in, correct_out = estimate.influence_correct_counts(
        influence[tests], est.test_correct_total[tests, None], est.count_in, est.count_out)
    cols = 1 + FIGURE_INFLUENTIAL + FIGURE_RANDOM
    height = 1.75 * len(tests) + 0.5
    fig, axes = plt.subplots(len(tests), cols, figsize=(1.3 * cols, height), squeeze=False)
    panels = []
    for row, j in enumerate(tests):
        _show(axes[row, 0], x_test[j], f"test {j}\nlabel {y_test[j]}")
        top = np.argsort(-filled[j], kind="stable")[:FIGURE_INFLUENTIAL]
        same = np.flatnonzero(y_train == y_test[j])
        randoms = rng.choice(same, min(FIGURE_RANDOM, len(same)), replace=False)
        for col, i in enumerate([*top, *randoms], start=1):
            value, error = float(influence[j, i]), float(stderr[row, i])
            significant = bool(estimate.is_significant(value, error))
            ax = axes[row, col]
            text = fmt_binomial(value, error, (correct_in[row, i], correct_out[row, i]),
                                (est.count_in[i], est.count_out[i]), 2, difference=True)
            title = (f"label {y_train[i]}\n{text}"
                     + ("" if significant or col > len(top) else " n.s."))
            _show(ax, x_train[i], title)
            if col <= len(top):
                panels.append(dict(test=int(j), train=int(i), influence=value, stderr=error,
                                   significant=significant, title=title))
                if not significant:
                    ax.images[0].set_alpha(0.3)
                    ax.title.set_color("0.5")
        for col in range(1 + len(top) + len(randoms), cols):
            axes[row, col].axis("off")
    caption = (
        f"{est.num_runs} runs at subset ratio {est.subset_ratio:g}. Test examples (left), their "
        f"{FIGURE_INFLUENTIAL} most influential training examples, then {FIGURE_RANDOM} random "
        "training examples of the same class; titles: label, influence \u00b1 binomial "
        "standard error (where it would print as 0, the counts: correct with \u2212 correct "
        f"without).\nAn influencer is significant when {estimate.significance_rule()} (the "
        f"threshold of Feldman & Zhang 2020 with a {estimate.SIGNIFICANCE_SIGMAS:g}-sigma "
        "margin); the others are faded and marked n.s.")
    fig.suptitle(caption, fontsize=6)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / height), h_pad=1.2)
    _save_figure(fig, path_stem)
    plt.close(fig)
    return dict(panels=panels, caption=caption)


def plot_memorization(memorization: np.ndarray, flipped: np.ndarray, path_stem: str,
                      num_runs: int, subset_ratio: float) -> dict:
    """Histogram of memorization over the range of the values, flipped and clean examples
    apart when labels were flipped; the title gives the numbers of runs and examples, the
    caption the number of undefined (NaN) examples.

    Returns:
      ``xlim`` (the axis range), ``title``, ``caption``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6))
    keep = ~np.isnan(memorization)
    values = memorization[keep]
    low, high = (float(values.min()), float(values.max())) if len(values) else (0.0, 1.0)
    pad = max(0.02 * (high - low), 0.01)
    bins = np.linspace(low - pad, high + pad, 41)
    if len(flipped):
        is_flipped = np.zeros(len(memorization), bool)
        is_flipped[flipped] = True
        ax.hist(memorization[keep & ~is_flipped], bins, density=True, alpha=0.6, label="clean")
        ax.hist(memorization[keep & is_flipped], bins, density=True, alpha=0.6,
                label="label flipped")
        ax.legend()
        ax.set_ylabel("density")
    else:
        ax.hist(values, bins)
        ax.set_ylabel("training examples")
        ax.set_yscale("log")
    ax.set_xlim(bins[0], bins[-1])
    ax.set_xlabel("memorization estimate")
    title = (f"Memorization of {len(memorization)} training examples, {num_runs} runs at "
             f"subset ratio {subset_ratio:g}")
    ax.set_title(title, fontsize=8)
    undefined = len(memorization) - len(values)
    caption = (f"{len(values)} examples shown; {undefined} undefined (NaN: in every run or in "
               "none) not shown")
    fig.text(0.5, 0.01, caption, ha="center", va="bottom", fontsize=7)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    _save_figure(fig, path_stem)
    plt.close(fig)
    return dict(xlim=(float(bins[0]), float(bins[-1])), title=title, caption=caption)


def describe_largest_influence(est: estimate.RatioEstimate) -> str:
    """The largest influence ± its standard error (or its counts), and where it is."""
    from heldout.report.numbers import fmt_binomial

    j, i = np.unravel_index(np.nanargmax(est.influence), est.influence.shape)
    value = est.influence[j, i]
    args = (value, est.test_correct_total[j], est.count_in[i], est.count_out[i])
    stderr = float(estimate.influence_stderr_rows(*args))
    text = fmt_binomial(value, stderr, estimate.influence_correct_counts(*args),
                        (est.count_in[i], est.count_out[i]), 4, difference=True)
    return f"{text} (training example {i} on test example {j})"


def high_influence_pairs_line(est: estimate.RatioEstimate, dataset) -> str:
    """The count of high-influence pairs by the rule of `heldout pairs` and the report
    (`heldout.estimate.select_high_influence_pairs`, default thresholds), with the number
    expected by chance alone at this run count (`heldout.estimate.describe_pairs`)."""
    y_train, y_test = dataset.split_labels("train"), dataset.split_labels("test")
    pairs = estimate.select_high_influence_pairs(est.influence, est.memorization, y_train,
                                                 y_test)
    noise = estimate.expected_noise_pairs(est.count_in, est.count_out, est.test_correct_total,
                                          est.num_runs, est.memorization, y_train, y_test)
    return estimate.describe_pairs(len(pairs), noise, est.num_runs)


def main(argv=None) -> int:
    args = parse_args(argv)
    from heldout.quiet import import_tensorflow

    import_tensorflow()
    from tqdm import tqdm

    from heldout.data.npz import save_npz_dataset
    from heldout.experiment import RunIds, select_runs
    from heldout.npzio import save_npz_atomic
    from heldout.report.numbers import fmt
    from heldout.train import TrainConfig, ratio_name, train_experiment

    start = time.perf_counter()
    os.makedirs(args.output_dir, exist_ok=True)
    dataset, flipped = load_data(args)
    n_train, n_test = dataset.num_examples("train"), dataset.num_examples("test")
    print(f"data: {dataset.name}, {n_train} training and {n_test} test examples, "
          f"{dataset.num_classes} classes, images {dataset.image_shape}"
          + (f", {len(flipped)} training labels flipped" if len(flipped) else ""))
    dataset_npz = os.path.join(args.output_dir, "dataset.npz")
    save_npz_dataset(dataset_npz, dataset)

    experiment_dir = os.path.join(args.output_dir, "experiment")
    config = TrainConfig(
        arch="mlp", epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.learning_rate, momentum=args.momentum, seed=args.seed,
        models_per_step=args.models_per_step, checkpoint_every=args.checkpoint_every,
    )
    result = train_experiment(experiment_dir, dataset, args.subset_ratio,
                              range(args.num_runs), config)
    print(f"trained {len(result.trained)} runs in {result.seconds:.1f} s "
          f"({config.resolved_models_per_step()} per step); {len(result.skipped)} were complete")

    ratio = ratio_name(args.subset_ratio)
    runs = select_runs(experiment_dir, [ratio], RunIds.first_n(args.num_runs)).runs()
    acc = estimate.accumulate_runs(runs, keep_runs=True,
                                   progress=functools.partial(tqdm, desc="read runs", unit="run"))
    est = estimate.estimate(acc, "full")
    mem = est.memorization
    arrays = {
        **est.to_dict(),
        "train_labels": dataset.split_labels("train"),
        "test_labels": dataset.split_labels("test"),
        "label_noise_index": flipped,
    }
    out_npz = os.path.join(args.output_dir, "infl_mem.npz")
    save_npz_atomic(out_npz, arrays)
    plot_influence(dataset, est, args.figure_rows, os.path.join(args.output_dir, "infl_mem"),
                   args.seed)
    plot_memorization(mem, flipped, os.path.join(args.output_dir, "memorization_hist"),
                      acc.num_runs, args.subset_ratio)

    accuracy = {split: np.mean([r.load_aux().accuracy(split) for r in runs[:20]])
                for split in ("train", "removed", "test")}
    print(f"{acc.num_runs} runs at ratio {ratio}: mean accuracy (first {min(20, len(runs))} "
          f"runs) train {accuracy['train']:.4f}, held out {accuracy['removed']:.4f}, "
          f"test {accuracy['test']:.4f}")
    print(f"memorization: mean {fmt(np.nanmean(mem))}, {int(np.sum(mem >= 0.5))} examples >= 0.5, "
          f"{int(np.sum(np.isnan(mem)))} undefined (never held out or never in)")
    print(f"influence: largest {describe_largest_influence(est)}")
    print(high_influence_pairs_line(est, dataset))
    if len(flipped):
        is_flipped = np.zeros(n_train, bool)
        is_flipped[flipped] = True
        print(f"label noise: mean memorization {fmt(np.nanmean(mem[is_flipped]))} flipped, "
              f"{fmt(np.nanmean(mem[~is_flipped]))} clean; ROC AUC (flipped vs clean) "
              f"{roc_auc(mem, is_flipped):.4f}")
    from heldout.report import report_experiment
    report_html = os.path.join(args.output_dir, "report.html")
    print(f"report: {report_html} ({report_experiment(report_html, experiment_dir, dataset):,} B)")
    print(f"wrote {out_npz}, {args.output_dir}/infl_mem.{{pdf,png}}, "
          f"{args.output_dir}/memorization_hist.{{pdf,png}} in {time.perf_counter() - start:.1f} s")
    with_ckpt = [r for r in runs if r.has_checkpoint()]
    if with_ckpt:
        print(f"verify a run: heldout verify {with_ckpt[0].path} --dataset_npz {dataset_npz}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
