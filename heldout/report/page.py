"""The report as one self-contained HTML page: `render_page(ReportData) -> str`.

Everything is inline: the figures and the thumbnails are PNG ``data:`` URIs, the style is one
``<style>`` block, and there is no script, so the page reads offline and can be attached to an
e-mail. Seven sections, each opening with a one-sentence explanation and definition of its
score: ``#experiment``, ``#memorization``, ``#influence``, ``#cscores``, ``#label-problems``,
``#membership`` (LiRA: its table, log-log ROC and most exposed examples) and ``#lds`` (the
cross-fitted LDS of `heldout lds --baselines`); a section whose input was not given says what
to pass.
Galleries show at most ``gallery_size`` examples. Undefined values (NaN; a zero count) are
written "undefined", never 0; binomial estimates with their standard error, or their counts
where it would print as 0 (`heldout.report.numbers`); influences not significantly above the
pairs' threshold (`heldout.estimate.is_significant`) are faded and marked "n.s.". Each gallery
card carries its numbers at full precision in ``data-*`` attributes (``data-index``,
``data-label``, ``data-memorization``, ``data-influence``, ``data-influence-stderr``,
``data-significant``, ``data-exposure``, ...), and so does each row of the LiRA and LDS tables
(``data-auc``, ``data-tpr``, ``data-lds``, ...), so a reader (or a test) can check them against
the score files.
"""

from __future__ import annotations

import html

import numpy as np

from heldout import estimate as est
from heldout.report.figures import FIGURES, figure_png, method_name
from heldout.report.inputs import ReportData
from heldout.report.numbers import fmt, fmt_binomial, fmt_p, fmt_rate
from heldout.report.thumbnails import THUMBNAIL_PIXELS, data_uri, thumbnail_png

INFLUENCERS_SHOWN = 3
MAX_PER_CLASS = 8
MAX_SKIPPED_LISTED = 10

SECTIONS = {
    "experiment": (
        "1. The experiment",
        "Each run trains one model on a random subset of the training set (subset ratio = the "
        "subset's fraction of the training set) and holds out the rest; its accuracy (the "
        "fraction classified correctly) on the train subset, the held-out examples and the "
        "test set against the subset ratio, mean and standard deviation across runs, is the "
        "learning curve of Jiang et al. (2021).",
    ),
    "memorization": (
        "2. Memorization",
        "The memorization of a training example is how much more often the runs that trained "
        "on it classify it correctly than the runs that held it out: mem(i) = P(correct on i | "
        "i in the subset) − P(correct on i | i held out) (Feldman & Zhang 2020); ± is the "
        "binomial standard error.",
    ),
    "influence": (
        "3. Influence",
        "The influence of training example i on test example j is how much more often the runs "
        "that trained on i classify j correctly than the runs that held i out: infl(i, j) = "
        "P(correct on j | i in the subset) − P(correct on j | i held out) (Feldman & Zhang "
        "2020).",
    ),
    "cscores": (
        "4. C-scores",
        "The C-score of a training example is the expected accuracy on it of models trained on "
        "random subsets that hold it out, averaged over subset ratios: C(i) = mean over ratios "
        "s of P(correct on i | i held out, ratio s) (Jiang et al. 2021); low scores mark "
        "atypical examples, high scores typical ones.",
    ),
    "label-problems": (
        "5. Likely label problems",
        "Training examples that the runs classify correctly mostly when they train on them "
        "(high memorization) and that runs holding them out get wrong (low C-score) are often "
        "mislabeled or ambiguous; they are ranked by score(i) = mem(i) − C(i) and shown with "
        "the label most held-out runs predicted.",
    ),
    "membership": (
        "6. Membership inference",
        "A membership-inference attack tells from a model's output whether an example was in "
        "its training subset; LiRA (Carlini et al. 2022) attacks each target run with the other "
        "runs as shadow models, score(i) = log N(φ; μ_in, σ_in) − log N(φ; μ_out, σ_out) "
        "(online), φ the target's logit confidence on example i and the Gaussians fitted to the "
        "shadows that trained on i and to those that held it out; an example's exposure is its "
        "mean score over the target runs that trained on it minus that over those that held it "
        "out.",
    ),
    "lds": (
        "7. Attribution scored against the runs",
        "The linear datamodeling score (Park et al. 2023) measures how well attribution scores "
        "τ predict models retrained on subsets: for test example j, LDS_j = Spearman's rank "
        "correlation over runs r of Σ_{i in S_r} τ_ij (the scores of run r's training subset "
        "S_r) with the run's output on j; here the library's own estimators, fitted on a "
        "fraction of half the runs and scored on the other half (cross-fitting).",
    ),
}
"""anchor -> (title, the one-sentence explanation and definition of its score)."""

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1150px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
p.explain { background: #f4f6fa; border-left: 4px solid #5470c6; padding: .5em .8em; }
p.note { background: #fff6e0; border-left: 4px solid #e0a020; padding: .4em .8em; }
table { border-collapse: collapse; margin: .5em 0; font-size: 13px; }
td, th { border: 1px solid #ddd; padding: 2px 8px; text-align: right; }
th { background: #f0f0f0; }
.gallery { display: flex; flex-wrap: wrap; gap: 6px; margin: .5em 0; }
.card { margin: 0; width: 132px; border: 1px solid #ddd; border-radius: 4px; padding: 4px;
        font-size: 11px; text-align: center; background: #fff; }
.card img, .card .noimg { width: 64px; height: 64px; display: block; margin: 0 auto 2px; }
.card img.px { image-rendering: pixelated; }
.card .noimg { background: #eee; color: #777; font-size: 10px; line-height: 64px; }
.card.disagree { border-color: #d04040; }
.card.ns img, .card.ns .noimg { opacity: .35; } .card.ns figcaption { color: #777; }
tr.ns td { color: #888; }
.rows { display: flex; flex-wrap: wrap; gap: 4px 24px; }
table.pairs img, table.pairs .noimg { width: 32px; height: 32px; }
table.pairs img.px { image-rendering: pixelated; }
.row { display: flex; gap: 6px; align-items: flex-start; margin-bottom: 8px; }
.row .card:first-child { border: 2px solid #5470c6; }
img.figure { max-width: 100%; display: block; margin: .5em 0; }
p.small { font-size: 12px; color: #555; }
#lira-table td:first-child, #lds-table td:first-child, #lira-table th:first-child,
#lds-table th:first-child { text-align: left; }
nav a { margin-right: 1em; }
"""


def _memorization(data: ReportData, i: int, digits: int = 4) -> str:
    """Training example i's memorization ± standard error (or its counts)."""
    e, m = data.estimate, data.memorization_counts
    return fmt_binomial(e.memorization[i], e.memorization_stderr[i],
                        (m.mean_in[i] * m.count_in[i], m.mean_out[i] * m.count_out[i]),
                        (m.count_in[i], m.count_out[i]), digits, difference=True)


def _influence(data: ReportData, j: int, i: int, value: float,
               stderr: float) -> tuple[str, bool]:
    """(influence of training example i on test example j ± standard error, or its counts,
    marked " n.s." when not significant; whether it is significant)."""
    e = data.estimate
    correct_in, correct_out = est.influence_correct_counts(value, e.test_correct_total[j],
                                                           e.count_in[i], e.count_out[i])
    text = fmt_binomial(value, stderr, (correct_in, correct_out), (e.count_in[i],
                                                                   e.count_out[i]),
                        2, difference=True)
    significant = bool(est.is_significant(value, stderr, data.infl_threshold))
    return text + ("" if significant or np.isnan(value) else " n.s."), significant


def _cscore(data: ReportData, i: int) -> str:
    """Training example i's C-score ± standard error (or its counts per ratio)."""
    cs = data.cscores
    correct = cs.correct_by_ratio()
    counts = ((), ()) if correct is None else (correct[:, i], cs.count_out_by_ratio[:, i])
    return fmt_binomial(cs.scores[i], None if cs.stderr is None else cs.stderr[i], *counts)


def _attr(value) -> str:
    """A data-* attribute value at full precision ("nan" for undefined)."""
    if isinstance(value, float | np.floating):
        return repr(float(value))
    return str(int(value)) if isinstance(value, int | np.integer) else str(value)


def _esc(text: str) -> str:
    return html.escape(str(text), quote=True)


class _Thumbs:
    """Thumbnails of one dataset, encoded once each."""

    def __init__(self, data: ReportData):
        self.examples = data.examples
        self.cache: dict[tuple[str, int], str] = {}

    def img(self, split: str, index: int) -> str:
        ex = self.examples
        if not ex.images:
            return f'<div class="noimg" title="{_esc(ex.no_images_reason)}">no image</div>'
        key = (split, int(index))
        if key not in self.cache:
            self.cache[key] = data_uri(thumbnail_png(ex.images[split][index], ex.scale))
        small = max(ex.images[split].shape[1:3]) < THUMBNAIL_PIXELS
        return (f'<img{" class=px" if small else ""} src="{self.cache[key]}" '
                f'alt="{split} {int(index)}">')

    def card(self, split: str, index: int, lines: list[str], attrs: dict | None = None,
             extra_class: str = "") -> str:
        label = int(self.examples.labels[split][index])
        data = {"split": split, "index": int(index), "label": label, **(attrs or {})}
        attributes = " ".join(f'data-{k}="{_esc(_attr(v))}"' for k, v in data.items())
        caption = "<br>".join([f"{split} #{int(index)} · label {label}",
                               *(_keep_together(line) for line in lines)])
        cls = "card" + (f" {extra_class}" if extra_class else "")
        return (f'<figure class="{cls}" {attributes}>{self.img(split, index)}'
                f"<figcaption>{caption}</figcaption></figure>")


def _keep_together(line: str) -> str:
    """A caption line whose ``value ± stderr`` and count expressions (``28/28 − 0/12``) wrap
    as a whole: no-break spaces around ±, − and + (a line still wraps after ``=``)."""
    for sign in ("±", "−", "+"):
        line = line.replace(f" {sign} ", f"\u00a0{sign}\u00a0")
    return line


def _figure(data: ReportData, name: str, alt: str) -> str:
    fig = FIGURES[name](data)
    if fig is None:
        return ""
    return f'<img class="figure" src="{data_uri(figure_png(fig))}" alt="{_esc(alt)}">'


def _note(text: str) -> str:
    return f'<p class="note">{_esc(text)}</p>' if text else ""


def _images_note(data: ReportData) -> str:
    reason = data.examples.no_images_reason
    return _note(f"No pictures: {reason}; galleries show indices and labels.") if reason else ""


def _top(values: np.ndarray, n: int, descending: bool = True) -> np.ndarray:
    """Positions of the n largest (smallest) finite values, ties by smaller position (an
    infinite value, e.g. a LiRA exposure where a side had one shadow and no spread, says
    nothing about the example: it is left out, as NaN is)."""
    defined = np.flatnonzero(np.isfinite(values))
    key = -values[defined] if descending else values[defined]
    return defined[np.argsort(key, kind="stable")[:n]]


def _section(anchor: str, body: list[str]) -> str:
    title, explain = SECTIONS[anchor]
    return (f'<section id="{anchor}"><h2>{_esc(title)}</h2>'
            f'<p class="explain">{_esc(explain)}</p>{"".join(body)}</section>')


def _mean_sd(values: np.ndarray) -> str:
    """Mean ± standard deviation of the runs' accuracies; where every run has the same
    accuracy, that accuracy "in every run" (or "in its one run"), never ``± 0.0000``."""
    if not len(values):
        return "undefined"
    if len(values) == 1:
        return f"{fmt(values[0])} (one run)"
    if np.all(values == values[0]):
        return f"{fmt(values[0])} in every run"
    sd = fmt(values.std())
    return f"{fmt(values.mean())} ± " + (sd if float(sd) > 0 else "< 0.0001")


def _experiment_section(data: ReportData) -> str:
    rows = []
    for s in data.ratios:
        cells = [f"<td>{_esc(s.ratio)}</td><td>{s.num_runs}</td>"]
        for split in ("train", "removed", "test"):
            v = s.accuracy[split][~np.isnan(s.accuracy[split])]
            cells.append(f"<td>{_mean_sd(v)}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    table = ("<table><tr><th>subset ratio</th><th>runs</th><th>accuracy on the train subset"
             " (mean ± s.d. over runs)</th><th>on the held-out examples</th><th>on the test set"
             "</th></tr>"
             + "".join(rows) + "</table>")
    fp = data.fingerprint.describe() if data.fingerprint else "none (released runs)"
    body = [
        f"<p>Experiment <code>{_esc(data.experiment_root)}</code>: "
        f"{sum(s.num_runs for s in data.ratios)} complete runs at {len(data.ratios)} subset "
        f"ratio{'' if len(data.ratios) == 1 else 's'}; dataset {_esc(data.examples.name)} "
        f"({data.num_train} training, {data.num_test} test examples, "
        f"{data.examples.num_classes} classes); dataset fingerprint of the runs: {_esc(fp)}.</p>",
        table,
    ]
    if data.skipped:
        items = "".join(f"<li><code>{_esc(s.path)}</code>: {_esc(s.reason)}</li>"
                        for s in data.skipped[:MAX_SKIPPED_LISTED])
        more = len(data.skipped) - MAX_SKIPPED_LISTED
        body.append(f"<p>{len(data.skipped)} incomplete or stray entries were not counted:</p>"
                    f"<ul>{items}</ul>" + (f"<p>and {more} more.</p>" if more > 0 else ""))
    else:
        body.append("<p>Incomplete runs: none.</p>")
    body.append(_figure(data, "learning_curve", "accuracy against subset ratio"))
    return _section("experiment", body)


def _memorization_section(data: ReportData, thumbs: _Thumbs) -> str:
    body = [_note(data.estimate_note)]
    e = data.estimate
    if e is not None:
        body.append(f"<p>Estimate {_esc(data.estimate_source)}: subset ratio "
                    f"{e.subset_ratio:g}, {e.num_runs} runs; memorization defined for "
                    f"{int(np.sum(~np.isnan(e.memorization)))} of {len(e.memorization)} "
                    "training examples (undefined where no run held the example out or none "
                    "trained on it).</p>")
        body.append(_figure(data, "memorization_hist", "memorization histogram"))
        body.append(_figure(data, "memorization_by_class", "memorization per class"))
        body.append(f"<h3>The {data.gallery_size} most memorized training examples</h3>")
        body.append(_images_note(data))
        cards = [
            thumbs.card("train", i, [f"mem {_memorization(data, i)}",
                                     f"in {int(e.count_in[i])} · out {int(e.count_out[i])} runs"],
                        {"memorization": e.memorization[i],
                         "stderr": e.memorization_stderr[i],
                         "count-in": int(e.count_in[i]), "count-out": int(e.count_out[i])})
            for i in _top(e.memorization, data.gallery_size)
        ]
        body.append(f'<div class="gallery" id="memorization-gallery">{"".join(cards)}</div>')
    return _section("memorization", body)


def _influence_section(data: ReportData, thumbs: _Thumbs) -> str:
    e = data.estimate
    body = []
    if e is None or e.topk_index is None:
        body.append(_note("Influence is undefined: " + (data.estimate_note or data.pairs_note)))
    else:
        best = e.topk_influence[:, 0]
        tests = _top(best, max(1, data.gallery_size // (INFLUENCERS_SHOWN + 1)))
        rule = est.significance_rule(data.infl_threshold)
        body.append(f"<p>Influence {_esc(data.estimate_source)}. The test examples with the "
                    f"largest influences (framed), each beside its {INFLUENCERS_SHOWN} most "
                    "influential training examples. ± is the binomial standard error; where it "
                    "would print as 0 (every run agreeing) the counts are given instead, "
                    "correct with the training example − correct without it. Influences that "
                    f"are not significant ({_esc(rule)} does not hold, as in the MNIST "
                    "example's figure) are faded and marked n.s.:</p>")
        body.append(_images_note(data))
        rows = []
        for j in tests:
            top, _ = _influence(data, j, e.topk_index[j, 0], best[j], data.influence_stderr[j, 0])
            cards = [thumbs.card("test", j, [f"top influence {top}"])]
            for i, v, se in zip(e.topk_index[j, :INFLUENCERS_SHOWN],
                                e.topk_influence[j, :INFLUENCERS_SHOWN],
                                data.influence_stderr[j, :INFLUENCERS_SHOWN], strict=True):
                if i >= 0:
                    text, significant = _influence(data, j, i, v, se)
                    cards.append(thumbs.card(
                        "train", i, [f"infl {text}", f"mem {_memorization(data, i, 2)}",
                                     f"in {int(e.count_in[i])} · out {int(e.count_out[i])} runs"],
                        {"influence": v, "influence-stderr": se,
                         "significant": str(significant).lower(), "test-index": int(j)},
                        "" if significant else "ns"))
            rows.append(f'<div class="row">{"".join(cards)}</div>')
        body.append(f'<div class="rows">{"".join(rows)}</div>')
    body.append("<h3>High-influence pairs</h3>")
    p = data.pairs
    if p is None:
        body.append(_note(data.pairs_note))
    else:
        described = est.describe_pairs(len(p), data.pairs_expected_noise, e.num_runs,
                                       data.infl_threshold, data.mem_threshold)
        body.append(f'<p id="pairs-count">{_esc(described)}. The '
                    f"{min(len(p), data.gallery_size)} of largest influence:</p>")
        order = np.argsort(-p.infl, kind="stable")[:data.gallery_size]
        rows = []
        for k in order:
            j, i = int(p.tt_idx[k]), int(p.tr_idx[k])
            text, significant = _influence(data, j, i, p.infl[k], data.pairs_stderr[k])
            rows.append(
                f'<tr{"" if significant else " class=ns"} data-influence="{_attr(p.infl[k])}" '
                f'data-influence-stderr="{_attr(data.pairs_stderr[k])}">'
                f"<td>{thumbs.img('test', j)}</td><td>{j}</td>"
                f"<td>{thumbs.img('train', i)}</td><td>{i}</td>"
                f"<td>{int(data.examples.labels['train'][i])}</td>"
                f"<td>{_esc(text)}</td><td>{_esc(_memorization(data, i))}</td></tr>")
        rows = "".join(rows)
        body.append("<table class='pairs'><tr><th>test</th><th>test index</th><th>train</th>"
                    "<th>train index</th><th>label</th><th>influence</th><th>memorization</th>"
                    f"</tr>{rows}</table>")
    return _section("influence", body)


def _cscore_section(data: ReportData, thumbs: _Thumbs) -> str:
    cs = data.cscores
    body = [_note(data.cscores_note)]
    if cs is not None and not np.isnan(cs.scores).all():
        body.append(f"<p>C-scores {_esc(cs.source)}; defined for "
                    f"{int(np.sum(~np.isnan(cs.scores)))} of {len(cs.scores)} training "
                    "examples (undefined where no run held the example out).</p>")
        body.append(_figure(data, "cscore_hist_by_class", "C-score histogram per class"))
        labels = data.examples.labels["train"]
        classes = min(data.examples.num_classes, data.gallery_size)
        per_class = max(1, min(MAX_PER_CLASS, data.gallery_size // classes))
        if classes < data.examples.num_classes:
            body.append(_note(f"Galleries show the first {classes} of "
                              f"{data.examples.num_classes} classes (--gallery_size)."))
        body.append(_images_note(data))
        for title, descending in (("lowest (atypical)", False), ("highest (typical)", True)):
            body.append(f"<h3>The {per_class} {title} C-scores of each class</h3>")
            cards = []
            for c in range(classes):
                members = np.flatnonzero(labels == c)
                for i in members[_top(cs.scores[members], per_class, descending)]:
                    lines = [f"C-score {_cscore(data, i)}"]
                    cards.append(thumbs.card("train", i, lines, {"cscore": cs.scores[i]}))
            kind = "low" if not descending else "high"
            body.append(f'<div class="gallery" id="cscore-{kind}">{"".join(cards)}</div>')
    return _section("cscores", body)


def _label_problems_section(data: ReportData, thumbs: _Thumbs) -> str:
    body = []
    e, cs, pr = data.estimate, data.cscores, data.predictions
    if pr is None:
        body.append(_note("Section " + data.predictions_note))
    elif e is None or cs is None:
        body.append(_note("Undefined: it needs both memorization and C-scores; "
                          + (data.estimate_note or data.cscores_note)))
    else:
        score = e.memorization - cs.scores
        chosen = _top(score, data.gallery_size)
        labels = data.examples.labels["train"]
        disagree = int(np.sum((pr.majority[chosen] >= 0) & (pr.majority[chosen] !=
                                                             labels[chosen])))
        body.append(f"<p>The {len(chosen)} training examples of largest memorization − C-score, "
                    f"with the label most of the {pr.num_runs} runs of "
                    f"<code>{_esc(pr.source)}</code> predicted when they held the example out; "
                    f"for {disagree} of them it is not the given label (red frame).</p>")
        body.append(_images_note(data))
        body.append(_figure(data, "memorization_vs_cscore", "memorization against C-score"))
        cards = []
        for i in chosen:
            held = ("predicted undefined (never held out)" if pr.majority[i] < 0 else
                    f"predicted {int(pr.majority[i])} by {round(pr.share[i] * pr.count_out[i])} "
                    f"of {int(pr.count_out[i])}")
            cards.append(thumbs.card(
                "train", i, [f"mem {_memorization(data, i)}", f"C-score {_cscore(data, i)}",
                             held],
                {"memorization": e.memorization[i], "cscore": cs.scores[i],
                 "predicted": int(pr.majority[i])},
                "disagree" if 0 <= pr.majority[i] != labels[i] else ""))
        body.append(f'<div class="gallery" id="label-gallery">{"".join(cards)}</div>')
    return _section("label-problems", body)


VARIANTS_EXPLAINED = (
    "online: the likelihood ratio above; offline: log Φ((φ − μ_out) / σ_out), the paper's "
    "one-sided test (Eq. 4), without the shadows that trained on the example; _fixed: one σ "
    "per target run and side, pooled over examples; global: φ itself against one threshold "
    "(the baseline). AUC and balanced accuracy over all pairs; TPR at FPR x: the TPR of the last "
    "ROC point with FPR below x"
)


def _correlation(what: str, c) -> str:
    if c is None:
        return f"with {what}: undefined (no {what})"
    if c.num_examples < 3:
        return f"with {what}: undefined ({c.num_examples} examples where both are defined)"
    return (f"with {what}: Spearman's ρ = {fmt(c.rho, 3)} ({fmt_p(c.p_value)}) over "
            f"{c.num_examples} training examples")


def _membership_section(data: ReportData, thumbs: _Thumbs) -> str:
    m = data.membership
    if m is None:
        return _section("membership", [_note("Section " + data.membership_note)])
    origin = (f"computed from the store <code>{_esc(m.source)}</code> ({_esc(m.computed)})"
              if m.computed else f"from <code>{_esc(m.source)}</code>")
    ratios = sorted({name.split("/")[0] for name in m.runs}, key=float)
    body = [
        f"<p>LiRA {origin}: {len(m.target_runs)} target runs, each attacked with the other "
        f"{len(m.runs) - 1} of the {len(m.runs)} runs at subset ratio "
        f"{_esc(', '.join(ratios))} as shadow models "
        f"(location {_esc(m.location)}, views {_esc(', '.join(m.views))}); "
        f"{m.num_members:,} member and {m.num_nonmembers:,} non-member (target run, training "
        "example) pairs.</p>",
    ]
    levels = next(iter(m.metrics.values())).fpr_levels
    head = "".join(f"<th>TPR at FPR {x:.0e}</th>".replace("e-0", "e-") for x in levels)
    rows = []
    for name, metrics in m.metrics.items():
        tpr = ",".join(_attr(float(x)) for x in metrics.tpr_at_fpr)
        cells = "".join(f"<td>{fmt_rate(x)}</td>" for x in metrics.tpr_at_fpr)
        rows.append(f'<tr data-variant="{_esc(name)}" data-auc="{_attr(metrics.auc)}" '
                    f'data-balanced-accuracy="{_attr(metrics.balanced_accuracy)}" '
                    f'data-tpr="{tpr}"><td>{_esc(name)}</td><td>{fmt(metrics.auc)}</td>'
                    f"<td>{fmt(metrics.balanced_accuracy)}</td>{cells}</tr>")
    body.append(f'<table id="lira-table"><tr><th>variant</th><th>AUC</th><th>balanced accuracy'
                f"</th>{head}</tr>{''.join(rows)}</table>")
    body.append(f'<p class="small">{_esc(VARIANTS_EXPLAINED)}; n/a where x is below 1 / '
                f"{m.num_nonmembers:,} non-member pairs, a rate these pairs cannot resolve.</p>")
    body.append(_figure(data, "lira_roc", "ROC of the LiRA variants, log-log"))
    shown = _top(m.exposure, data.gallery_size)
    e = data.estimate
    mem = ("memorization" if e is None else
           f"memorization (the estimate above: ratio {e.subset_ratio:g}, {e.num_runs} runs)")
    stated = "; ".join((_correlation(mem, m.with_memorization),
                        _correlation("the C-score", m.with_cscore)))
    body.append(f'<p id="exposure-correlation">Exposure {_esc(stated)}.</p>')
    body.append(f"<h3>The {len(shown)} most exposed training examples</h3>")
    undefined = int((~np.isfinite(m.exposure)).sum())
    if undefined:
        body.append(_note(
            f"{undefined:,} training examples have an infinite or undefined exposure and are "
            "not shown: a side (member or non-member) with fewer than two shadow runs gives "
            "a Gaussian without spread; more runs remove them."))
    body.append(_images_note(data))
    cards = []
    for i in shown:
        memorization = e.memorization[i] if e is not None else np.nan
        lines = [f"exposure {fmt(m.exposure[i], 2)}",
                 f"score in {fmt(m.mean_score_in[i], 1)} · out {fmt(m.mean_score_out[i], 1)}",
                 f"mem {_memorization(data, i) if e is not None else 'undefined'}",
                 f"C-score {_cscore(data, i)}"]
        cards.append(thumbs.card("train", i, lines, {
            "exposure": m.exposure[i], "mean-score-in": m.mean_score_in[i],
            "mean-score-out": m.mean_score_out[i], "memorization": memorization,
            "cscore": data.cscores.scores[i]}))
    body.append(f'<div class="gallery" id="exposure-gallery">{"".join(cards)}</div>')
    return _section("membership", body)


def _lds_section(data: ReportData) -> str:
    b = data.baselines
    if b is None:
        return _section("lds", [_note("Section " + data.baselines_note)])
    t = b.table
    fractions = ", ".join(f"{f:.0%}" for f in t.fractions)
    body = [
        f"<p>From <code>{_esc(data.baselines_source)}</code> (<code>heldout lds "
        f"--baselines</code>): the LDS against the {_esc(b.output.replace('_', ' '))} of "
        f"{len(b.runs)} runs of this experiment on {t.lds.shape[-1]} test examples. The runs "
        f"were split at random (seed {b.seed}) into halves of "
        f"{' and '.join(str(n) for n in t.num_score_runs)}; each estimator was fitted on the "
        f"first {fractions} of one half and scored on the whole other half, then the halves "
        "swapped; a test example's LDS is the mean of its two folds (the ridge penalty chosen "
        f"on a held-out {b.val_fraction:.0%} of the fitting runs). The interval is 95% over "
        "test examples (Student's t); a test example whose output or prediction is the same "
        "in every scored run has no LDS in that fold.</p>",
    ]
    body.append(_figure(data, "lds_baselines", "LDS against the number of runs fitted on"))
    rows = []
    for k, method in enumerate(t.methods):
        for f in range(len(t.fractions)):
            runs = "/".join(str(n) for n in t.num_fit_runs[f])
            rows.append(
                f'<tr data-method="{_esc(method)}" data-fraction="{_attr(t.fractions[f])}" '
                f'data-lds="{_attr(t.mean[k, f])}" data-low="{_attr(t.low[k, f])}" '
                f'data-high="{_attr(t.high[k, f])}" data-num-nan="{int(t.num_nan[k, f])}">'
                f"<td>{_esc(method_name(method, b.output))}</td><td>{runs}</td>"
                f"<td>{fmt(t.mean[k, f])}</td>"
                f"<td>{fmt(t.low[k, f])} to {fmt(t.high[k, f])}</td>"
                f"<td>{int(t.num_nan[k, f])}</td><td>{t.seconds[k, f]:.2f} s</td></tr>")
    body.append('<table id="lds-table"><tr><th>estimator</th><th>runs fitted on (fold 1/2)</th>'
                "<th>LDS (mean)</th><th>95% interval</th><th>test examples without an LDS</th>"
                f"<th>fitting time</th></tr>{''.join(rows)}</table>")
    return _section("lds", body)


def render_page(data: ReportData) -> str:
    """The report page (see the module docstring) as an HTML string."""
    thumbs = _Thumbs(data)
    sections = [
        _experiment_section(data),
        _memorization_section(data, thumbs),
        _influence_section(data, thumbs),
        _cscore_section(data, thumbs),
        _label_problems_section(data, thumbs),
        _membership_section(data, thumbs),
        _lds_section(data),
    ]
    nav = " ".join(f'<a href="#{a}">{_esc(t.split(". ", 1)[1])}</a>'
                   for a, (t, _) in SECTIONS.items())
    title = f"heldout report: {data.experiment_root}"
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_esc(title)}</title><link rel='icon' href='data:,'>"
        f"<style>{STYLE}</style></head><body>"
        f"<h1>{_esc(title)}</h1><nav>{nav}</nav>{''.join(sections)}"
        "<footer><p>Written by <code>heldout report</code>; every image and figure is inline."
        "</p></footer></body></html>\n"
    )
