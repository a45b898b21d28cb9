"""The report's figures, drawn with matplotlib's Agg renderer (no display, no pyplot state).

Each figure function takes a `ReportData` and returns a `matplotlib.figure.Figure`, or None
when what it would show is undefined or its input was not given (the page says why).
`FIGURES` lists them by name for `heldout plot`, which writes each alone as PNG and PDF
(`save_figure`, atomically).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from heldout.atomic import atomic_path
from heldout.report.inputs import ReportData

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _figure(**kwargs) -> Figure:
    """A new matplotlib `Figure` (Agg, no pyplot state), matplotlib imported only when a figure
    is drawn: the CLI, which names the figures in its help, starts without it."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)

MAX_CLASS_PANELS = 20
SERIES_OFFSET = 0.004
MIN_RATIO_MARGIN = 0.05
SPLITS = (("train", "train subset"), ("removed", "held out"), ("test", "test"))


def ratio_limits(ratios: np.ndarray) -> tuple[float, float]:
    """The x range of the learning curve: the ratios with a margin of 8% of their span, and at
    least `MIN_RATIO_MARGIN` on each side, so a single ratio sits in the middle of a range a
    tenth wide instead of its three series (`SERIES_OFFSET` apart) filling the whole axis."""
    low, high = float(np.min(ratios)), float(np.max(ratios))
    margin = max(MIN_RATIO_MARGIN, 0.08 * (high - low))
    return low - margin, high + margin


def learning_curve(data: ReportData) -> Figure:
    """Accuracy against subset ratio on the train subset, the held-out examples and the test
    set: mean over runs, error bars one standard deviation across runs, dots the runs; the
    three series are drawn `SERIES_OFFSET` apart at each ratio, on the range `ratio_limits`."""
    fig = _figure(figsize=(6, 3.6))
    ax = fig.add_subplot()
    x = np.array([s.subset_ratio for s in data.ratios])
    offsets = (-SERIES_OFFSET, 0.0, SERIES_OFFSET)
    for offset, (split, name) in zip(offsets, SPLITS, strict=True):
        per_run = [s.accuracy[split] for s in data.ratios]
        defined = [v[~np.isnan(v)] for v in per_run]
        mean = np.array([v.mean() if len(v) else np.nan for v in defined])
        std = np.array([v.std() if len(v) else np.nan for v in defined])
        line = ax.errorbar(x + offset, mean, yerr=std, marker="o", capsize=3, label=name)
        for xi, v in zip(x, defined, strict=True):
            ax.plot(np.full(len(v), xi + offset), v, ".", alpha=0.25, ms=3,
                    color=line[0].get_color())
    ax.set_xlabel("subset ratio (fraction of the training set in each run's subset)")
    ax.set_ylabel("accuracy")
    ax.set_xticks(x)
    ax.set_xlim(*ratio_limits(x))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def memorization_histogram(data: ReportData) -> Figure | None:
    """Histogram of the defined memorization estimates (NaN left out, their number in the
    title)."""
    if data.estimate is None:
        return None
    mem = data.estimate.memorization
    values = mem[~np.isnan(mem)]
    fig = _figure(figsize=(6, 3.2))
    ax = fig.add_subplot()
    ax.hist(values, np.linspace(-1, 1, 41), color="tab:purple")
    ax.set_yscale("log")
    ax.set_xlabel("memorization estimate")
    ax.set_ylabel("training examples")
    ax.set_title(f"{len(values)} defined, {len(mem) - len(values)} undefined "
                 f"(ratio {data.estimate.subset_ratio:g}, {data.estimate.num_runs} runs)",
                 fontsize=9)
    fig.tight_layout()
    return fig


def _by_class(values: np.ndarray, labels: np.ndarray, num_classes: int):
    return [values[(labels == c) & ~np.isnan(values)] for c in range(num_classes)]


def memorization_by_class(data: ReportData) -> Figure | None:
    """Box plot of the defined memorization estimates of each class: boxes the quartiles,
    whiskers to the furthest value within 1.5 interquartile ranges, and every example beyond
    them drawn as a dot (their number in the title), so the most memorized examples of the
    gallery below appear in it."""
    if data.estimate is None:
        return None
    groups = _by_class(data.estimate.memorization, data.examples.labels["train"],
                       data.examples.num_classes)
    fig = _figure(figsize=(max(4.0, 0.35 * len(groups) + 1.5), 3.4))
    ax = fig.add_subplot()
    drawn = ax.boxplot([g if len(g) else [np.nan] for g in groups], whis=1.5,
                       flierprops=dict(marker=".", markersize=3, alpha=0.5, linestyle="none"))
    outliers = sum(len(line.get_ydata()) for line in drawn["fliers"])
    ax.set_xticks(np.arange(1, len(groups) + 1), [str(c) for c in range(len(groups))],
                  fontsize=7 if len(groups) <= 20 else 4)
    ax.set_title(f"boxes: quartiles; whiskers: 1.5 interquartile ranges;\nall {outliers} "
                 "examples beyond them drawn as dots", fontsize=8)
    ax.set_xlabel("class (label)")
    ax.set_ylabel("memorization")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig


def cscore_histograms(data: ReportData) -> Figure | None:
    """Histogram of the defined C-scores of each class (the first `MAX_CLASS_PANELS`)."""
    if data.cscores is None or np.isnan(data.cscores.scores).all():
        return None
    groups = _by_class(data.cscores.scores, data.examples.labels["train"],
                       data.examples.num_classes)[:MAX_CLASS_PANELS]
    cols = min(5, len(groups))
    rows = -(-len(groups) // cols)
    fig = _figure(figsize=(2.0 * cols, 1.5 * rows + 0.4))
    bins = np.linspace(0, 1, 21)
    for c, values in enumerate(groups):
        ax = fig.add_subplot(rows, cols, c + 1)
        ax.hist(values, bins, color="tab:green")
        ax.set_title(f"class {c} ({len(values)})", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.supxlabel("C-score", fontsize=8)
    fig.tight_layout()
    return fig


def memorization_vs_cscore(data: ReportData) -> Figure | None:
    """Memorization against C-score, one dot per training example where both are defined."""
    if data.estimate is None or data.cscores is None:
        return None
    mem, cs = data.estimate.memorization, data.cscores.scores
    both = ~np.isnan(mem) & ~np.isnan(cs)
    if not both.any():
        return None
    fig = _figure(figsize=(4.6, 3.6))
    ax = fig.add_subplot()
    ax.scatter(cs[both], mem[both], s=3, alpha=0.3, linewidths=0)
    ax.set_xlabel("C-score")
    ax.set_ylabel("memorization")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def lira_roc(data: ReportData) -> Figure | None:
    """The ROC of each LiRA variant over all (target run, example) pairs on log-log axes, as
    Carlini et al. 2022 read it, with the diagonal of a guess (TPR = FPR); each axis starts at
    half its smallest resolvable rate (1 / the pairs of its class); points at rate 0 are off
    the axes."""
    m = data.membership
    if m is None:
        return None
    fig = _figure(figsize=(5.2, 4.4))
    ax = fig.add_subplot()
    x_low, y_low = 0.5 / m.num_nonmembers, 0.5 / m.num_members
    for name, metrics in m.metrics.items():
        shown = (metrics.roc_fpr > 0) & (metrics.roc_tpr > 0)
        ax.plot(metrics.roc_fpr[shown], metrics.roc_tpr[shown], lw=1.3,
                label=f"{name} (AUC {metrics.auc:.3f})")
    low = min(x_low, y_low)
    ax.plot([low, 1], [low, 1], "--", color="0.5", lw=1, label="guessing (TPR = FPR)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(x_low, 1)
    ax.set_ylim(y_low, 1)
    ax.set_xlabel(f"false-positive rate ({m.num_nonmembers:,} non-member pairs)")
    ax.set_ylabel(f"true-positive rate ({m.num_members:,} member pairs)")
    ax.set_title(f"LiRA: {len(m.target_runs)} target runs, each attacked with the other "
                 f"{len(m.runs) - 1} runs as shadows", fontsize=8)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3, which="both", lw=0.5)
    fig.tight_layout()
    return fig


METHOD_NAMES = {
    "influence_correct": "heldout influence on correctness",
    "influence_output": "heldout influence on the {output}",
    "datamodels_ridge": "ridge datamodels of the {output}",
}
"""How the page and the figure name the estimators of `heldout lds --baselines`."""


def method_name(method: str, output: str) -> str:
    """A `heldout lds --baselines` estimator's name in words (the key itself when unknown)."""
    return METHOD_NAMES.get(method, method).format(output=output.replace("_", " "))


def lds_baselines(data: ReportData) -> Figure | None:
    """The cross-fitted LDS of each estimator against the number of runs it was fitted on
    (mean over the two folds, log scale): the mean over test examples with its 95% interval
    (Student's t over test examples); the estimators are drawn a little apart on x."""
    b = data.baselines
    if b is None:
        return None
    table = b.table
    runs = table.num_fit_runs.mean(axis=1)
    fig = _figure(figsize=(6, 3.8))
    ax = fig.add_subplot()
    spread = np.linspace(-1, 1, len(table.methods)) * 0.01 if len(table.methods) > 1 else [0]
    for k, method in enumerate(table.methods):
        mean = table.mean[k]
        errors = np.abs(np.stack([mean - table.low[k], table.high[k] - mean]))
        ax.errorbar(runs * 10 ** spread[k], mean, yerr=errors, marker="o", capsize=3,
                    label=method_name(method, b.output))
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set_xscale("log")
    ax.set_xticks(runs, ["/".join(str(n) for n in sorted(set(pair)))
                         for pair in table.num_fit_runs.tolist()])
    ax.minorticks_off()
    ax.set_xlabel("runs fitted on (each of the two folds)")
    ax.set_ylabel(f"LDS against the {b.output.replace('_', ' ')}")
    halves = " and ".join(str(n) for n in table.num_score_runs)
    ax.set_title(f"scored on the other half ({halves} runs); mean over "
                 f"{table.lds.shape[-1]} test examples, 95% intervals", fontsize=8)
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


FIGURES: dict[str, Callable[[ReportData], Figure | None]] = {
    "learning_curve": learning_curve,
    "memorization_hist": memorization_histogram,
    "memorization_by_class": memorization_by_class,
    "cscore_hist_by_class": cscore_histograms,
    "memorization_vs_cscore": memorization_vs_cscore,
    "lira_roc": lira_roc,
    "lds_baselines": lds_baselines,
}


def figure_png(fig: Figure, dpi: int = 90) -> bytes:
    """PNG bytes of a figure (Agg)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def save_figure(fig: Figure, stem: str | os.PathLike, dpi: int = 150) -> list[str]:
    """Writes ``<stem>.png`` and ``<stem>.pdf``, each atomically; returns their paths."""
    paths = []
    for ext in ("png", "pdf"):
        path = f"{os.fspath(stem)}.{ext}"
        with atomic_path(path, suffix="." + ext) as tmp:
            fig.savefig(tmp, format=ext, dpi=dpi)
        paths.append(path)
    return paths
