"""`heldout report` and `heldout plot`: an experiment's scores as one self-contained HTML page
and as figures.

Modules, dependencies flowing one way: `predictions` (held-out predicted labels from a
predictions store) and `lira` (a `heldout lira` file, or the attack computed from that store,
checked against the runs: `heldout.privacy`) <- `inputs` (`ReportData`: reads the runs once,
checks the given files against them, computes what is not given with `heldout.estimate`; reads
the table of `heldout lds --baselines` with `heldout.attribution`) <- `figures` (matplotlib Agg)
and `thumbnails` (Pillow) <- `page` (the HTML); `numbers` (how a number and a binomial estimate
are printed: "undefined", no negative zero, counts where a standard error would print as 0)
serves the page, the MNIST example's figure and its summaries. Pure numpy, matplotlib and
Pillow: TensorFlow is imported only when the dataset source needs it (TFDS, TFRecords), by
`heldout.data`.

    from heldout.data.digits import load_digits
    from heldout.report import compute_report, examples_from_dataset, write_report
    data = compute_report("exp", examples_from_dataset(load_digits()))
    write_report("report.html", data)
"""

from __future__ import annotations

import os

from heldout.atomic import write_text_atomic
from heldout.data.protocol import Dataset
from heldout.errors import ReportError
from heldout.report.figures import FIGURES, save_figure
from heldout.report.inputs import (
    DEFAULT_GALLERY_SIZE,
    DEFAULT_TOP_K,
    CScoreSummary,
    Examples,
    RatioSummary,
    ReportData,
    choose_ratio,
    compute_report,
    examples_from_dataset,
    labels_only_examples,
    top_k_of_matrix,
)
from heldout.report.lira import Correlation, Membership
from heldout.report.page import render_page
from heldout.report.predictions import HeldOutPredictions, read_predictions


def write_report(path: str | os.PathLike, data: ReportData) -> int:
    """Writes the page (`render_page`) atomically; returns its size in bytes."""
    text = render_page(data)
    write_text_atomic(path, text)
    return len(text.encode("utf-8"))


def report_experiment(path: str | os.PathLike, experiment_dir: str | os.PathLike,
                      dataset: Dataset, **options) -> int:
    """`compute_report` of an experiment and an in-memory dataset, written to `path` as the
    page (`write_report`); returns the page's size in bytes.

    Args:
      path: the `.html` file (written atomically).
      experiment_dir: the ``<experiment>`` directory.
      dataset: a `heldout.data` dataset with ``train`` and ``test`` splits (images shown
        when it holds them).
      options: further keyword arguments of `compute_report` (``estimates_path``,
        ``gallery_size``, ...).
    """
    return write_report(path, compute_report(experiment_dir, examples_from_dataset(dataset),
                                             **options))


def write_figures(out_dir: str | os.PathLike, data: ReportData,
                  names: list[str] | None = None) -> tuple[list[str], list[str]]:
    """Writes each figure alone as ``<out_dir>/<name>.png`` and ``.pdf`` (atomically).

    Args:
      out_dir: created if needed.
      data: from `compute_report`.
      names: figures of `FIGURES` to write (default all).

    Returns:
      (paths written, names of the figures left out because what they show is undefined).

    Raises:
      ReportError: an unknown figure name.
    """
    names = list(FIGURES) if names is None else names
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        raise ReportError(f"unknown figure(s) {unknown}; the figures are {list(FIGURES)}")
    written, undefined = [], []
    for name in names:
        fig = FIGURES[name](data)
        if fig is None:
            undefined.append(name)
            continue
        written += save_figure(fig, os.path.join(os.fspath(out_dir), name))
    return written, undefined


__all__ = [
    "DEFAULT_GALLERY_SIZE", "DEFAULT_TOP_K", "FIGURES", "CScoreSummary", "Correlation",
    "Examples", "HeldOutPredictions", "Membership", "RatioSummary", "ReportData", "ReportError",
    "choose_ratio", "compute_report", "examples_from_dataset", "labels_only_examples",
    "read_predictions", "render_page", "report_experiment", "top_k_of_matrix", "write_figures",
    "write_report",
]
