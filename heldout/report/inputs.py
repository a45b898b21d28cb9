"""What the report shows, computed once: `ReportData` from an experiment, a dataset and files.

`compute_report` reads every run's aux arrays once (`heldout.estimate.RatioAccumulator` per
subset ratio, plus each run's accuracies for the learning curve), then takes from the files it
is given, or computes from the accumulators what it is not given:

- memorization and the top-k influence lists at the experiment's largest subset ratio with
  enough runs (memorization defined for at least half the training examples; otherwise the
  ratio where it is defined for the most), with `heldout.estimate.estimate`;
- the high-influence pairs (`heldout.estimate.high_influence_pairs`, exact, tile by tile);
- the C-scores over all the experiment's ratios (`heldout.estimate.cscores`);
- with a train-split predictions store and no `heldout lira` file, the LiRA attack on the
  store (`heldout.report.lira.compute_membership`).

Every file is checked against the experiment before it is used: an estimate file must be of
one of its ratios with the same runs (``num_runs`` and every ``count_in`` equal to the runs')
and of the influence on correctness (its ``target``), sizes and dataset fingerprints must
agree, the dataset's labels must match the runs' fingerprint, a LiRA file must be of the
experiment's runs and subsets (`heldout.report.lira.check_lira`) and a `heldout lds
--baselines` file of its runs; otherwise `ReportError` (or `FingerprintError`) names the file
and what differs. Pure numpy: no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from heldout import estimate as est
from heldout import published
from heldout.attribution import BaselinesFile, load_baselines
from heldout.data.arrays import ArrayDataset
from heldout.data.fingerprint import Fingerprint, check_fingerprints, fingerprint_from_labels
from heldout.data.protocol import Dataset
from heldout.errors import LiraError, ReportError, StoreError
from heldout.experiment import Experiment, Skipped, iter_aux_arrays, open_experiment
from heldout.report.lira import (
    Membership,
    check_runs,
    compute_membership,
    correlation,
    read_membership,
)
from heldout.report.predictions import HeldOutPredictions, read_predictions

DEFAULT_GALLERY_SIZE = 32
DEFAULT_TOP_K = 10
MIN_DEFINED_FRACTION = 0.5


@dataclasses.dataclass(frozen=True)
class RatioSummary:
    """The runs of one subset ratio.

    Attributes:
      ratio: the ratio's directory name, e.g. ``"0.7"``.
      subset_ratio: its value.
      run_names: ``<ratio>/<run_id>`` of each run.
      accuracy: split -> float64 [R], each run's accuracy on ``train`` (its subset),
        ``removed`` (held out; NaN when nothing is held out) and ``test``.
    """

    ratio: str
    subset_ratio: float
    run_names: tuple[str, ...]
    accuracy: dict[str, np.ndarray]

    @property
    def num_runs(self) -> int:
        return len(self.run_names)


@dataclasses.dataclass(frozen=True)
class Examples:
    """The dataset side: labels, and images where there are any.

    Attributes:
      name: the dataset's name or path.
      labels: split -> int64 [n] for ``train`` and ``test``.
      num_classes: number of classes.
      images: split -> uint8 [n, h, w, c], or {} when the dataset has no images.
      scale: pixel value of full intensity (255, or 16 for the digits).
      no_images_reason: why there are no images ('' when there are).
    """

    name: str
    labels: dict[str, np.ndarray]
    num_classes: int
    images: dict[str, np.ndarray]
    scale: float = 255.0
    no_images_reason: str = ""


@dataclasses.dataclass(frozen=True)
class CScoreSummary:
    """C-scores of the training examples.

    Attributes:
      scores: float64 [n_train], NaN where undefined.
      stderr: float64 [n_train] or None (published files have none).
      ratios: float64 [n_ratios] averaged over, or None when the file does not say.
      num_runs_by_ratio: int64 [n_ratios] or None.
      source: where they came from, for the page.
      by_ratio: float64 [n_ratios, n_train], the held-out accuracy at each ratio, or None.
      count_out_by_ratio: int64 [n_ratios, n_train], the runs holding each example out, or
        None; with `by_ratio`, the counts a C-score is made of.
    """

    scores: np.ndarray
    stderr: np.ndarray | None
    ratios: np.ndarray | None
    num_runs_by_ratio: np.ndarray | None
    source: str
    by_ratio: np.ndarray | None = None
    count_out_by_ratio: np.ndarray | None = None

    def correct_by_ratio(self) -> np.ndarray | None:
        """float64 [n_ratios, n_train]: held-out runs correct on each example at each ratio
        (whole numbers; NaN where none held it out), or None when the counts are unknown."""
        if self.by_ratio is None or self.count_out_by_ratio is None:
            return None
        return np.rint(self.by_ratio * self.count_out_by_ratio)


@dataclasses.dataclass(frozen=True)
class ReportData:
    """Everything the page and the figures show (see `compute_report`).

    Attributes:
      experiment_root: the experiment directory.
      ratios: one `RatioSummary` per subset ratio, ascending.
      skipped: entries of the experiment that are not complete runs.
      fingerprint: the runs' dataset fingerprint, or None (released runs).
      examples: labels and images.
      estimate: memorization and influence at one ratio (`topk_index`/`topk_influence` set
        when influence is known; `test_correct_total` always set), or None when memorization
        is undefined everywhere.
      estimate_source: where the estimate came from.
      estimate_note: why there is no estimate, or caveats ('' when none).
      pairs: the high-influence pairs, or None; pairs_note: why not.
      infl_threshold, mem_threshold: the pairs' thresholds.
      cscores: the C-scores, or None; cscores_note: caveats or why not.
      predictions: the held-out predictions on the train split, or None;
        predictions_note: why not.
      gallery_size: the most examples a gallery shows.
      memorization_counts: `heldout.estimate.Memorization` of the estimate's runs (the
        accuracies with and without each example, the counts behind each memorization), or
        None with no estimate.
      influence_stderr: float64 [n_test, k], the binomial standard error of each
        `estimate.topk_influence` entry (`heldout.estimate.influence_stderr_rows`), or None.
      pairs_stderr: float64 [p], that of each pair's influence, or None.
      pairs_expected_noise: the number of pairs expected to pass the rule by chance alone at
        the estimate's run count (`heldout.estimate.expected_noise_pairs`), or None.
      membership: the LiRA attack (`heldout.report.lira.Membership`), or None;
        membership_note: why not ('' when shown).
      baselines: the table of `heldout lds --baselines` (`heldout.attribution.BaselinesFile`),
        or None; baselines_source: its file; baselines_note: why not.
    """

    experiment_root: str
    ratios: tuple[RatioSummary, ...]
    skipped: tuple[Skipped, ...]
    fingerprint: Fingerprint | None
    examples: Examples
    estimate: est.RatioEstimate | None
    estimate_source: str
    estimate_note: str
    pairs: est.HighInfluencePairs | None
    pairs_note: str
    infl_threshold: float
    mem_threshold: float
    cscores: CScoreSummary | None
    cscores_note: str
    predictions: HeldOutPredictions | None
    predictions_note: str
    gallery_size: int = DEFAULT_GALLERY_SIZE
    memorization_counts: est.Memorization | None = None
    influence_stderr: np.ndarray | None = None
    pairs_stderr: np.ndarray | None = None
    pairs_expected_noise: float | None = None
    membership: Membership | None = None
    membership_note: str = ""
    baselines: BaselinesFile | None = None
    baselines_source: str = ""
    baselines_note: str = ""

    @property
    def num_train(self) -> int:
        return len(self.examples.labels["train"])

    @property
    def num_test(self) -> int:
        return len(self.examples.labels["test"])


def examples_from_dataset(dataset: Dataset, with_images: bool = True) -> Examples:
    """`Examples` of a `heldout.data` dataset (``train`` and ``test`` splits).

    Images are taken from an `ArrayDataset`'s ``images``; a dataset without them (TFRecord
    shards, or `with_images` False) gives labels only, with the reason.

    Raises:
      ReportError: the dataset lacks a ``train`` or ``test`` split.
    """
    labels = {}
    for split in ("train", "test"):
        try:
            labels[split] = np.asarray(dataset.split_labels(split), np.int64)
        except KeyError as e:
            raise ReportError(f"{dataset.name}: no {split!r} split; a report needs train and "
                              "test") from e
    num_classes = max(int(dataset.num_classes), int(max(labels["train"].max(initial=-1),
                                                        labels["test"].max(initial=-1))) + 1)
    in_memory = isinstance(dataset, ArrayDataset)
    images = dict(dataset.images) if in_memory else {}
    reason = ""
    if not with_images:
        images, reason = {}, "images not loaded (labels only were asked for)"
    elif not all(s in images for s in ("train", "test")):
        images = {}
        reason = (f"the dataset source ({type(dataset).__name__}) holds no decoded images in "
                  "memory, only labels")
    return Examples(dataset.name, labels, num_classes,
                    {s: np.asarray(images[s]) for s in images},
                    float(dataset.scale) if in_memory else 255.0, reason)


def _read_runs(experiment: Experiment, keep_runs: bool, progress):
    """(accumulators, summaries): one pass over every run's aux arrays."""
    runs = experiment.runs()
    if not runs:
        raise ReportError(f"{experiment.root}: no complete runs (aux_arrays.npz) found")
    accs: dict[str, est.RatioAccumulator] = {}
    accuracy: dict[str, dict[str, list[float]]] = {}
    for run, aux in iter_aux_arrays(runs, progress=progress):
        if run.ratio not in accs:
            accs[run.ratio] = est.RatioAccumulator(aux.num_train, aux.num_test, keep_runs,
                                                   run.subset_ratio)
            accuracy[run.ratio] = {s: [] for s in ("train", "removed", "test")}
        accs[run.ratio].add_aux(aux, run.name)
        for split, values in accuracy[run.ratio].items():
            values.append(aux.accuracy(split))
    ordered = [accs[r] for r in experiment.ratios if r in accs]
    fingerprint = check_fingerprints(
        [(f"the runs at ratio {a.subset_ratio:g} ({a.fingerprint_source})", a.fingerprint)
         for a in ordered]
    )
    summaries = tuple(
        RatioSummary(r, float(r), tuple(accs[r].run_names),
                     {s: np.asarray(v, np.float64) for s, v in accuracy[r].items()})
        for r in experiment.ratios if r in accs
    )
    return ordered, summaries, fingerprint


def _check_examples(examples: Examples, acc: est.RatioAccumulator, root: str,
                    fingerprint: Fingerprint | None) -> None:
    for split, n in (("train", acc.num_train), ("test", acc.num_test)):
        found = len(examples.labels[split])
        if found != n:
            raise ReportError(
                f"{examples.name}: the {split} split has {found} examples but the runs in "
                f"{root} cover {n} {split} examples; give the dataset the runs were trained on"
            )
        if examples.images and len(examples.images[split]) != n:
            raise ReportError(f"{examples.name}: {len(examples.images[split])} {split} images "
                              f"but {n} labels")
    if fingerprint is not None:
        found = fingerprint_from_labels(examples.name, examples.labels)
        check_fingerprints([(f"the runs in {root}", fingerprint),
                            (f"the labels of {examples.name}", found)])


def _defined_memorization(acc: est.RatioAccumulator) -> int:
    return int(np.sum((acc.count_in > 0) & (acc.count_out > 0)))


def choose_ratio(accs: list[est.RatioAccumulator]) -> est.RatioAccumulator | None:
    """The largest ratio whose runs define memorization for at least `MIN_DEFINED_FRACTION`
    of the training examples; else the one defining it for the most; None when it is defined
    nowhere (e.g. one run per ratio)."""
    defined = [_defined_memorization(a) for a in accs]
    enough = [a for a, d in zip(accs, defined, strict=True)
              if d >= MIN_DEFINED_FRACTION * a.num_train and d > 0]
    if enough:
        return max(enough, key=lambda a: a.subset_ratio)
    if max(defined) == 0:
        return None
    return accs[int(np.argmax(defined))]


def top_k_of_matrix(influence: np.ndarray, k: int,
                    block_rows: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(int64 [n_test, k], float32 [n_test, k]): the k largest entries of each row of a full
    influence matrix, descending, ties by smaller index, NaN never ranked (padded with -1 /
    NaN), as `heldout.estimate.top_k_influence` returns them. Rows are processed `block_rows`
    at a time (`numpy.argpartition`), so the working set stays small for MNIST-sized
    matrices."""
    n_test, n_train = influence.shape
    k = min(k, n_train)
    index = np.empty((n_test, k), np.int64)
    values = np.empty((n_test, k), np.float32)
    for r0 in range(0, n_test, block_rows):
        block = np.asarray(influence[r0:r0 + block_rows], np.float64)
        filled = np.where(np.isnan(block), -np.inf, block)
        # The k-th largest value, then every column at or above it (ties kept), sorted.
        kth = -np.partition(-filled, k - 1, axis=1)[:, k - 1:k]
        for row in range(len(block)):
            cols = np.flatnonzero(filled[row] >= kth[row])
            cols = cols[np.lexsort((cols, -filled[row, cols]))][:k]
            index[r0 + row], values[r0 + row] = cols, block[row, cols]
    index[np.isnan(values)] = -1
    return index, values


def _load_estimate_file(path: str, accs: list[est.RatioAccumulator], experiment: Experiment,
                        fingerprint: Fingerprint | None) -> est.RatioEstimate:
    loaded = est.load_estimate(path)
    if loaded.target != "correct":
        raise ReportError(
            f"{path}: key 'target' is {loaded.target!r}: its influence is on the store's "
            f"{loaded.target} (in its units, Welch standard errors), but the report's influence, "
            "standard errors and high-influence pairs are of correctness: give an estimate "
            "written by `heldout estimate --target correct` (the default), or leave "
            "`estimates_path` out")
    n_train, n_test = accs[0].num_train, accs[0].num_test
    if len(loaded.memorization) != n_train:
        raise ReportError(f"{path}: covers {len(loaded.memorization)} training examples, the "
                          f"runs in {experiment.root} {n_train}")
    width = (loaded.influence if loaded.influence is not None else loaded.topk_index)
    if width is not None and width.shape[0] != n_test:
        raise ReportError(f"{path}: influence covers {width.shape[0]} test examples, the runs "
                          f"in {experiment.root} {n_test}")
    check_fingerprints([(f"the runs in {experiment.root}", fingerprint), (path,
                                                                          loaded.fingerprint)])
    try:
        ratio = experiment.ratio_name(loaded.subset_ratio)
    except KeyError as e:
        raise ReportError(f"{path}: subset ratio {loaded.subset_ratio:g}, but "
                          f"{experiment.root} has ratios {experiment.ratios}") from e
    acc = next(a for a in accs if a.subset_ratio == float(ratio))
    differ = int(np.sum(loaded.count_in != acc.count_in))
    if loaded.num_runs != acc.num_runs or differ:
        raise ReportError(
            f"{path}: key 'num_runs' {loaded.num_runs} and 'count_in' of the estimate, but "
            f"{experiment.root} has {acc.num_runs} runs at ratio {ratio} whose count_in "
            f"differs for {differ} examples: an estimate of other runs"
        )
    return loaded


def _load_cscores_file(path: str, accs: list[est.RatioAccumulator], examples: Examples,
                       root: str, fingerprint: Fingerprint | None) -> CScoreSummary:
    from heldout.data.fingerprint import read_fingerprint_file

    n_train = accs[0].num_train
    loaded = published.read_cscores(path, num_examples=n_train)
    if loaded.labels is not None and not np.array_equal(loaded.labels, examples.labels["train"]):
        bad = int(np.sum(loaded.labels != examples.labels["train"]))
        raise ReportError(f"{path}: key 'labels' differs from the train labels of "
                          f"{examples.name} at {bad} of {n_train} examples")
    if not path.endswith(".npy"):
        check_fingerprints([(f"the runs in {root}", fingerprint),
                            (path, read_fingerprint_file(path))])
    ratios = loaded.extra.get("ratios")
    runs = loaded.extra.get("num_runs_by_ratio")
    if ratios is not None and runs is not None:
        have = {a.subset_ratio: a.num_runs for a in accs}
        wrong = [f"{r:g}: {n} runs" for r, n in zip(ratios, runs, strict=True)
                 if have.get(float(r)) != int(n)]
        if wrong:
            raise ReportError(
                f"{path}: keys 'ratios'/'num_runs_by_ratio' say {', '.join(wrong)}, but "
                f"{root} has " + ", ".join(f"{r:g}: {n} runs" for r, n in have.items())
            )
    return CScoreSummary(loaded.scores, loaded.extra.get("scores_stderr"), ratios, runs, path,
                         loaded.extra.get("scores_by_ratio"),
                         loaded.extra.get("count_out_by_ratio"))


def _run_masks(accs: list[est.RatioAccumulator]):
    """(run name -> (accumulator, row), run name -> its subset bool [n_train]); the subsets
    need accumulators that kept the runs' masks (`keep_runs`)."""
    rows = {name: (acc, r) for acc in accs for r, name in enumerate(acc.run_names)}

    def run_mask(name: str) -> np.ndarray:
        acc, r = rows[name]
        return np.unpackbits(acc.mask_bits[r], bitorder="little")[:acc.num_train].astype(bool)

    return rows, run_mask


def _membership(lira_path: str | None, predictions_path: str | None, root: str,
                accs: list[est.RatioAccumulator], examples: Examples,
                progress) -> tuple[Membership | None, str]:
    """The LiRA attack from its file, or computed from a train-split store; or why not."""
    if lira_path is None and predictions_path is None:
        return None, ("omitted: give --lira lira.npz (written by `heldout lira`), or "
                      "--predictions STORE.zarr (the train split's predictions store, with "
                      "logit_confidence) to compute the attack")
    rows, run_mask = _run_masks(accs)
    fingerprint = fingerprint_from_labels(examples.name, {"train": examples.labels["train"]})
    if lira_path is not None:
        return read_membership(lira_path, root, rows, run_mask, fingerprint), ""
    try:
        return compute_membership(predictions_path, root, rows, run_mask, fingerprint,
                                  progress), ""
    except (LiraError, StoreError) as e:
        return None, (f"not computed from {predictions_path}: {e}; `heldout lira` writes the "
                      "file given with --lira")


def _load_baselines(path: str | None, root: str,
                    summaries: tuple[RatioSummary, ...]) -> tuple[BaselinesFile | None, str]:
    """A `heldout lds --baselines` file of the experiment's runs, or why there is none."""
    if path is None:
        return None, ("omitted: give --lds_baselines FILE, the table written by `heldout lds "
                      "--baselines --store TEST.zarr --out FILE`")
    loaded = load_baselines(path)
    names = {name for s in summaries for name in s.run_names}
    check_runs(path, loaded.runs, names, root, "an LDS table")
    return loaded, ""


def compute_report(
    experiment_dir: str | os.PathLike | Experiment,
    examples: Examples,
    estimates_path: str | None = None,
    cscores_path: str | None = None,
    predictions_path: str | None = None,
    gallery_size: int = DEFAULT_GALLERY_SIZE,
    top_k: int = DEFAULT_TOP_K,
    infl_threshold: float = est.INFLUENCE_THRESHOLD,
    mem_threshold: float = est.MEMORIZATION_THRESHOLD,
    progress: est.Progress | None = None,
    *,
    lira_path: str | None = None,
    lds_baselines_path: str | None = None,
    lira_progress: est.Progress | None = None,
) -> ReportData:
    """Reads the experiment and the files, computes what is not given (module docstring).

    Args:
      experiment_dir: ``<experiment>`` of the release layout (aux arrays suffice), or its
        runs as `heldout.experiment.select_runs` gives them.
      examples: the dataset's labels (and images), see `examples_from_dataset`.
      estimates_path: a `heldout estimate` file to use instead of computing.
      cscores_path: a C-score file (`heldout cscores` or published) to use instead.
      predictions_path: a predictions store (zarr group) of the train split, for the likely
        label problems; see `heldout.report.predictions`.
      gallery_size: the most examples per gallery.
      top_k: influence entries kept per test example when computed.
      infl_threshold, mem_threshold: of the high-influence pairs (the paper's 0.15 and 0.25).
      progress: optional wrapper reporting progress over the runs (e.g. tqdm).
      lira_path: a `heldout lira` file (``lira.npz``) for the membership-inference section;
        without it, the attack is computed from `predictions_path` when given (a store that
        LiRA cannot attack, e.g. without ``logit_confidence``, leaves the section with a note).
      lds_baselines_path: a `heldout lds --baselines` file for the attribution section.
      lira_progress: optional wrapper reporting the attack's progress when it is computed.

    Raises:
      ReportError: dataset sizes that differ from the runs', a file of other runs, or an
        estimate of an influence on another output than correctness.
      ReportError: a LiRA file of other runs or subsets, or of another size.
      FingerprintError: files or labels of another dataset or order.
      NpzError, LayoutError, ReportError: unreadable or malformed
        inputs.
    """
    experiment = (experiment_dir if isinstance(experiment_dir, Experiment) else
                  open_experiment(experiment_dir))
    root = experiment.root
    # The runs' masks are kept to compute influence, and to check a store or a LiRA file.
    keep_runs = estimates_path is None or predictions_path is not None or lira_path is not None
    accs, summaries, fingerprint = _read_runs(experiment, keep_runs, progress)
    _check_examples(examples, accs[0], root, fingerprint)
    labels = examples.labels
    # The files of the new sections are checked before the long work.
    baselines, baselines_note = _load_baselines(lds_baselines_path, root, summaries)
    membership, membership_note = _membership(lira_path, predictions_path, root, accs,
                                              examples, lira_progress)

    estimate, note, source = None, "", ""
    if estimates_path is not None:
        estimate, source = _load_estimate_file(estimates_path, accs, experiment,
                                               fingerprint), estimates_path
        if estimate.influence is not None:
            index, values = top_k_of_matrix(estimate.influence, top_k)
            estimate = dataclasses.replace(estimate, topk_index=index, topk_influence=values)
    else:
        chosen = choose_ratio(accs)
        if chosen is None:
            runs = ", ".join(f"{s.ratio}: {s.num_runs}" for s in summaries)
            note = (f"memorization and influence are undefined for every training example: "
                    f"no ratio has an example both in and out of some run's subset (runs per "
                    f"ratio {runs}); they need at least 2 runs at one ratio, and many more to "
                    "be accurate")
        else:
            estimate = est.estimate(chosen, "topk", min(top_k, chosen.num_train))
            source = (f"computed from the {chosen.num_runs} runs' aux arrays at subset ratio "
                      f"{chosen.subset_ratio:g}")
    if estimate is not None and np.isnan(estimate.memorization).all():
        note = (f"memorization is undefined for every training example at ratio "
                f"{estimate.subset_ratio:g} ({estimate.num_runs} runs): none is both in and out")
        estimate = None

    pairs, pairs_note = None, ""
    thresholds = dict(infl_threshold=infl_threshold, mem_threshold=mem_threshold)
    if estimate is None:
        pairs_note = "no influence: memorization and influence are undefined"
    elif estimate.influence is not None:
        pairs = est.select_high_influence_pairs(estimate.influence, estimate.memorization,
                                                labels["train"], labels["test"], **thresholds)
    elif estimates_path is None:
        pairs = est.high_influence_pairs(chosen, labels["train"], labels["test"], **thresholds)
    elif estimate.topk_index is not None:
        try:
            pairs = est.pairs_from_top_k(estimate.topk_index, estimate.topk_influence,
                                         estimate.memorization, labels["train"], labels["test"],
                                         **thresholds)
        except est.EstimateError as e:
            pairs_note = f"{estimates_path}: {e}"
    else:
        pairs_note = f"{estimates_path} holds no influence (written with --influence none)"

    cscores, cscores_note = None, ""
    if cscores_path is not None:
        cscores = _load_cscores_file(cscores_path, accs, examples, root, fingerprint)
    else:
        cs = est.cscores(accs)
        cscores = CScoreSummary(cs.scores, cs.stderr, cs.ratios, cs.num_runs_by_ratio,
                                f"computed from the aux arrays at ratios "
                                f"{', '.join(f'{r:g}' for r in cs.ratios)}",
                                cs.by_ratio, cs.count_out_by_ratio)
    if cscores.num_runs_by_ratio is not None and (cscores.num_runs_by_ratio <= 1).all():
        cscores_note = ("every ratio has a single run, so each C-score is the 0/1 correctness "
                        "of one run that held the example out, not an estimate of a probability")
    if np.isnan(cscores.scores).all():
        cscores_note = "C-scores are undefined for every training example: none was held out"

    predictions, predictions_note = None, ""
    if predictions_path is None:
        predictions_note = ("omitted: it needs the predicted labels of held-out examples, "
                            "given with --predictions STORE.zarr (the train split's "
                            "predictions store); the aux arrays record only correctness")
    else:
        predictions = read_predictions(predictions_path, labels["train"], accs)
    uncertainty = {}
    if estimate is not None:
        estimate, uncertainty = _uncertainty(estimate, accs, pairs, labels, thresholds)
    if membership is not None:
        membership = dataclasses.replace(
            membership,
            with_memorization=(None if estimate is None else
                               correlation(membership.exposure, estimate.memorization)),
            with_cscore=correlation(membership.exposure, cscores.scores))
    return ReportData(
        root, summaries, experiment.skipped, fingerprint, examples, estimate, source, note,
        pairs, pairs_note, infl_threshold, mem_threshold, cscores, cscores_note, predictions,
        predictions_note, gallery_size, **uncertainty, membership=membership,
        membership_note=membership_note, baselines=baselines,
        baselines_source=lds_baselines_path or "", baselines_note=baselines_note,
    )


def _uncertainty(estimate: est.RatioEstimate, accs: list[est.RatioAccumulator],
                 pairs: est.HighInfluencePairs | None, labels: dict[str, np.ndarray],
                 thresholds: dict[str, float]) -> tuple[est.RatioEstimate, dict]:
    """The estimate with its runs' test correct counts, and the `ReportData` fields of its
    uncertainty: the counts behind each memorization, the standard error of each influence
    shown, and the pairs expected by chance. From the accumulator of the estimate's ratio (an
    estimate file has been checked to be of those runs)."""
    acc = min(accs, key=lambda a: abs(a.subset_ratio - estimate.subset_ratio))
    if estimate.test_correct_total is None:  # a file written before it was recorded
        estimate = dataclasses.replace(estimate, test_correct_total=acc.test_correct_total)
    total, cin, cout = estimate.test_correct_total, estimate.count_in, estimate.count_out
    fields: dict = {"memorization_counts": est.memorization(acc)}
    if estimate.topk_index is not None:
        index = np.where(estimate.topk_index >= 0, estimate.topk_index, 0)
        stderr = est.influence_stderr_rows(estimate.topk_influence, total, cin[index],
                                           cout[index])
        fields["influence_stderr"] = np.where(estimate.topk_index >= 0, stderr, np.nan)
    if pairs is not None:
        fields["pairs_stderr"] = est.influence_stderr_rows(
            pairs.infl, total[pairs.tt_idx], cin[pairs.tr_idx], cout[pairs.tr_idx])
        fields["pairs_expected_noise"] = est.expected_noise_pairs(
            cin, cout, total, estimate.num_runs, estimate.memorization, labels["train"],
            labels["test"], **thresholds)
    return estimate, fields


def labels_only_examples(name: str, labels: dict[str, np.ndarray], reason: str) -> Examples:
    """`Examples` without images: the galleries show indices and labels, saying `reason`."""
    labels = {s: np.asarray(labels[s], np.int64) for s in ("train", "test")}
    num_classes = int(max(labels["train"].max(initial=-1), labels["test"].max(initial=-1))) + 1
    return Examples(name, labels, num_classes, {}, 255.0, reason)
