"""Memorization, influence and C-scores from heldout runs (pure numpy, no TensorFlow).

For the R runs at one subset ratio, with ``M[r, i]`` = training example i was in run r's subset,
``C[r, i]`` = run r classified training example i correctly and ``T[r, j]`` = run r classified
test example j correctly (Feldman & Zhang 2020, the estimators from random subsets; Jiang et al.
2021, the holdout C-score):

- ``memorization[i] = mean_{r: M[r,i]} C[r,i] - mean_{r: not M[r,i]} C[r,i]``
- ``influence[j, i] = mean_{r: M[r,i]} T[r,j] - mean_{r: not M[r,i]} T[r,j]``
- ``cscore_s[i] = mean_{r at ratio s: not M[r,i]} C[r,i]``; the C-score is the unweighted mean
  of ``cscore_s`` over the ratios where it is defined. For test examples the consistency at
  ratio s is the mean of ``T[r, j]`` over the runs at s.

Where a count is zero the value is undefined and returned as NaN, with the counts alongside
(the original research script returned 0 there, which looks like a real value).

Everything is computed from a `RatioAccumulator`: counts and sums per example, plus (for
influence) the runs' subset masks and test correctness packed to bits, R * (n_train + n_test) / 8
bytes (15 MB for 2,000 CIFAR-10 runs). Their test-by-train co-occurrence sums ``T^T M`` are the
sufficient statistic of the influence: the "without" term is ``(total - with)``, so the whole
influence matrix costs one float32 matrix product with inner dimension R (exact for integer
counts below 2**24), formed tile by tile with a bounded working set. The co-occurrence matrix
itself is never stored (it would be 256 GB for ImageNet); accumulators over disjoint runs merge
by adding their counts and stacking their bits, and save to / load from `.npz`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np

from heldout.experiment import AuxArrays, Experiment, Run, open_experiment
from heldout.npzio import NpzError, load_npz, save_npz_atomic

ACCUMULATOR_FORMAT = "heldout.estimate.RatioAccumulator/1"
DEFAULT_WORKING_BYTES = 512 * 2**20
INFLUENCE_KINDS = ("full", "topk", "none")

Progress = Callable[[Iterable], Iterable]
"""Wraps an iterable to report progress, e.g. ``functools.partial(tqdm.tqdm, desc="runs")``."""


class EstimateError(ValueError):
    """Inputs to an estimator do not fit together (shapes, sizes, missing runs)."""


def _as_bool(name: str, value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    value = np.asarray(value)
    if value.shape != shape:
        raise EstimateError(f"{name} must have shape {shape}, found {value.shape}")
    if value.dtype == bool:
        return value
    if np.issubdtype(value.dtype, np.integer) or np.issubdtype(value.dtype, np.floating):
        if not np.isin(value, (0, 1)).all():
            raise EstimateError(f"{name} must be bool or 0/1, found values other than 0 and 1")
        return value.astype(bool)
    raise EstimateError(f"{name} must be bool (or 0/1 numbers), found dtype {value.dtype}")


def _pack(rows: np.ndarray) -> np.ndarray:
    return np.packbits(rows, axis=-1, bitorder="little")


def _unpack(
    bits: np.ndarray, start: int, stop: int, buffer: np.ndarray | None = None
) -> np.ndarray:
    """float32 [R, stop - start]: columns start..stop of bit-packed rows (in `buffer` if given)."""
    b0, b1 = start // 8, (stop + 7) // 8
    unpacked = np.unpackbits(bits[:, b0:b1], axis=1, bitorder="little")
    values = unpacked[:, start - 8 * b0 : stop - 8 * b0]
    if buffer is None:
        return values.astype(np.float32)
    out = buffer[: values.size].reshape(values.shape)
    np.copyto(out, values, casting="unsafe")
    return out


# --------------------------------------------------------------------------------------------
# The accumulator.


class RatioAccumulator:
    """Sufficient statistics of the runs at one subset ratio; runs are added one at a time.

    Attributes:
      num_train, num_test: dataset sizes.
      keep_runs: whether the runs' masks and test correctness are kept (bit-packed), as
        influence needs; memorization and C-scores need only the counts.
      subset_ratio: the nominal subset ratio (NaN when unknown).
      num_runs: R, the number of runs added.
      count_in: int64 [num_train], runs whose subset holds example i (``sum_r M[r, i]``).
      correct_in: int64 [num_train], ``sum_r M[r, i] C[r, i]``.
      correct_total: int64 [num_train], ``sum_r C[r, i]``.
      test_correct_total: int64 [num_test], ``sum_r T[r, j]``.
      run_names: names of the runs added ('' when unnamed), used to refuse double counting.
    """

    def __init__(
        self,
        num_train: int,
        num_test: int,
        keep_runs: bool = True,
        subset_ratio: float | None = None,
    ) -> None:
        if num_train < 0 or num_test < 0:
            raise EstimateError(f"dataset sizes must be >= 0, got {num_train}, {num_test}")
        self.num_train = int(num_train)
        self.num_test = int(num_test)
        self.keep_runs = bool(keep_runs)
        self.subset_ratio = float("nan") if subset_ratio is None else float(subset_ratio)
        self.num_runs = 0
        self.count_in = np.zeros(self.num_train, np.int64)
        self.correct_in = np.zeros(self.num_train, np.int64)
        self.correct_total = np.zeros(self.num_train, np.int64)
        self.test_correct_total = np.zeros(self.num_test, np.int64)
        self.run_names: list[str] = []
        self._mask_rows: list[np.ndarray] = []
        self._test_rows: list[np.ndarray] = []

    def __repr__(self) -> str:
        return (
            f"RatioAccumulator(subset_ratio={self.subset_ratio}, num_runs={self.num_runs}, "
            f"num_train={self.num_train}, num_test={self.num_test}, keep_runs={self.keep_runs})"
        )

    @property
    def count_out(self) -> np.ndarray:
        """int64 [num_train]: runs that held example i out."""
        return self.num_runs - self.count_in

    @property
    def mask_bits(self) -> np.ndarray:
        """uint8 [R, ceil(num_train / 8)]: the runs' subset masks, little-endian bit-packed."""
        self._require_runs("mask_bits")
        self._consolidate()
        return self._mask_rows[0]

    @property
    def test_bits(self) -> np.ndarray:
        """uint8 [R, ceil(num_test / 8)]: the runs' test correctness, little-endian bit-packed."""
        self._require_runs("test_bits")
        self._consolidate()
        return self._test_rows[0]

    def _require_runs(self, what: str) -> None:
        if not self.keep_runs:
            raise EstimateError(
                f"{what} needs the runs' masks, but this accumulator was built with "
                "keep_runs=False (counts only: memorization and C-scores)"
            )

    def _consolidate(self) -> None:
        if len(self._mask_rows) != 1:
            shape_m = (0, (self.num_train + 7) // 8)
            shape_t = (0, (self.num_test + 7) // 8)
            self._mask_rows = [
                np.concatenate(self._mask_rows) if self._mask_rows else np.zeros(shape_m, np.uint8)
            ]
            self._test_rows = [
                np.concatenate(self._test_rows) if self._test_rows else np.zeros(shape_t, np.uint8)
            ]

    def add_run(
        self,
        mask: np.ndarray,
        train_correct: np.ndarray,
        test_correct: np.ndarray,
        name: str = "",
    ) -> None:
        """Adds one run.

        Args:
          mask: bool [num_train], True for the examples in the run's subset.
          train_correct: bool [num_train], correctness of every training example (in and out).
          test_correct: bool [num_test], correctness of every test example.
          name: the run's name (e.g. ``0.7/12``); a name already added is refused.

        Raises:
          EstimateError: wrong shapes or non-boolean values, or a repeated name.
        """
        self.add_runs(
            np.asarray(mask)[None],
            np.asarray(train_correct)[None],
            np.asarray(test_correct)[None],
            [name],
        )

    def add_aux(self, aux: AuxArrays, name: str = "") -> None:
        """Adds one run from its aux arrays (see `heldout.experiment.AuxArrays`)."""
        if aux.num_train != self.num_train or aux.num_test != self.num_test:
            raise EstimateError(
                f"{aux.source or name or 'aux arrays'}: covers {aux.num_train} training and "
                f"{aux.num_test} test examples, the accumulator {self.num_train} and "
                f"{self.num_test}"
            )
        self.add_run(aux.subset_mask(), aux.train_correctness(), aux.test_correctness(), name)

    def add_runs(
        self,
        masks: np.ndarray,
        train_correct: np.ndarray,
        test_correct: np.ndarray,
        names: Sequence[str] | None = None,
    ) -> None:
        """Adds R runs given as matrices (see `add_run`; shapes gain a leading R)."""
        masks = np.asarray(masks)
        num_runs = masks.shape[0] if masks.ndim == 2 else -1
        masks = _as_bool("masks", masks, (max(num_runs, 0), self.num_train))
        train_correct = _as_bool("train_correct", train_correct, masks.shape)
        test_correct = _as_bool("test_correct", test_correct, (num_runs, self.num_test))
        names = [""] * num_runs if names is None else [str(n) for n in names]
        if len(names) != num_runs:
            raise EstimateError(f"{num_runs} runs but {len(names)} names")
        self._check_new_names(names)
        self.count_in += masks.sum(axis=0, dtype=np.int64)
        self.correct_in += (masks & train_correct).sum(axis=0, dtype=np.int64)
        self.correct_total += train_correct.sum(axis=0, dtype=np.int64)
        self.test_correct_total += test_correct.sum(axis=0, dtype=np.int64)
        if self.keep_runs:
            self._mask_rows.append(_pack(masks))
            self._test_rows.append(_pack(test_correct))
        self.run_names.extend(names)
        self.num_runs += num_runs

    def _check_new_names(self, names: Sequence[str]) -> None:
        named = [n for n in names if n]
        repeated = sorted(set(named) & set(self.run_names)) or sorted(
            {n for n in named if named.count(n) > 1}
        )
        if repeated:
            raise EstimateError(
                f"run(s) {repeated[:5]} already added; an accumulator counts each run once"
            )

    def merge(self, other: RatioAccumulator) -> RatioAccumulator:
        """A new accumulator over the runs of both (which must be disjoint).

        Counts add; the kept runs are stacked (self's first). The result equals one pass over
        all runs.

        Raises:
          EstimateError: different dataset sizes, subset ratios, `keep_runs`, or shared runs.
        """
        for attr in ("num_train", "num_test", "keep_runs"):
            if getattr(self, attr) != getattr(other, attr):
                raise EstimateError(
                    f"cannot merge accumulators with {attr} {getattr(self, attr)} and "
                    f"{getattr(other, attr)}"
                )
        ratios = [r for r in (self.subset_ratio, other.subset_ratio) if not math.isnan(r)]
        if len(ratios) == 2 and not math.isclose(*ratios):
            raise EstimateError(f"cannot merge runs of subset ratios {ratios[0]} and {ratios[1]}")
        merged = RatioAccumulator(
            self.num_train, self.num_test, self.keep_runs, ratios[0] if ratios else None
        )
        merged.run_names = list(self.run_names)
        merged._check_new_names(other.run_names)
        merged.run_names += other.run_names
        merged.num_runs = self.num_runs + other.num_runs
        for key in ("count_in", "correct_in", "correct_total", "test_correct_total"):
            setattr(merged, key, getattr(self, key) + getattr(other, key))
        if self.keep_runs:
            merged._mask_rows = [self.mask_bits, other.mask_bits]
            merged._test_rows = [self.test_bits, other.test_bits]
            merged._consolidate()
        return merged

    def to_dict(self) -> dict[str, np.ndarray]:
        """The accumulator as `.npz` arrays (see `save`)."""
        arrays = {
            "format": np.array(ACCUMULATOR_FORMAT),
            "num_train": np.array(self.num_train, np.int64),
            "num_test": np.array(self.num_test, np.int64),
            "num_runs": np.array(self.num_runs, np.int64),
            "subset_ratio": np.array(self.subset_ratio, np.float64),
            "keep_runs": np.array(self.keep_runs),
            "count_in": self.count_in,
            "correct_in": self.correct_in,
            "correct_total": self.correct_total,
            "test_correct_total": self.test_correct_total,
            "run_names": np.array(self.run_names, dtype=np.str_).reshape(self.num_runs),
        }
        if self.keep_runs:
            arrays["mask_bits"] = self.mask_bits
            arrays["test_bits"] = self.test_bits
        return arrays

    def save(self, path: str | os.PathLike) -> None:
        """Writes the accumulator to an `.npz`, atomically; `load_accumulator` reads it back.

        Keys: ``format`` (``heldout.estimate.RatioAccumulator/1``), ``num_train``, ``num_test``,
        ``num_runs``, ``subset_ratio``, ``keep_runs``, ``count_in``, ``correct_in``,
        ``correct_total``, ``test_correct_total``, ``run_names`` and, with `keep_runs`,
        ``mask_bits`` uint8 [R, ceil(num_train / 8)] and ``test_bits`` uint8
        [R, ceil(num_test / 8)] (little-endian bit order).
        """
        save_npz_atomic(path, self.to_dict())


def load_accumulator(path: str | os.PathLike) -> RatioAccumulator:
    """Reads an accumulator written by `RatioAccumulator.save`, checking every key.

    Raises:
      NpzError: unreadable file, missing key, or arrays of the wrong dtype or shape (the message
        names the file and key).
    """
    path = os.fspath(path)
    arrays = load_npz(path)

    def get(key: str, kind: str, shape: tuple[int, ...]) -> np.ndarray:
        if key not in arrays:
            raise NpzError(
                f"{path}: missing key {key!r}; not an accumulator written by "
                f"RatioAccumulator.save (found keys {sorted(arrays)})"
            )
        value = arrays[key]
        if value.dtype.kind not in kind or value.shape != shape:
            raise NpzError(
                f"{path}: key {key!r} must have dtype kind {kind!r} and shape {shape}, found "
                f"{value.dtype} {value.shape}"
            )
        return value

    fmt = get("format", "U", ())
    if str(fmt) != ACCUMULATOR_FORMAT:
        raise NpzError(f"{path}: format {str(fmt)!r}, expected {ACCUMULATOR_FORMAT!r}")
    num_train = int(get("num_train", "iu", ()))
    num_test = int(get("num_test", "iu", ()))
    num_runs = int(get("num_runs", "iu", ()))
    keep_runs = bool(get("keep_runs", "b", ()))
    acc = RatioAccumulator(num_train, num_test, keep_runs, float(get("subset_ratio", "f", ())))
    acc.num_runs = num_runs
    for key, n in (
        ("count_in", num_train),
        ("correct_in", num_train),
        ("correct_total", num_train),
        ("test_correct_total", num_test),
    ):
        setattr(acc, key, get(key, "iu", (n,)).astype(np.int64))
    acc.run_names = [str(n) for n in get("run_names", "U", (num_runs,))]
    if keep_runs:
        acc._mask_rows = [get("mask_bits", "u", (num_runs, (num_train + 7) // 8))]
        acc._test_rows = [get("test_bits", "u", (num_runs, (num_test + 7) // 8))]
    bad = [
        key
        for key, ok in (
            ("count_in", (acc.count_in >= 0).all() and (acc.count_in <= num_runs).all()),
            ("correct_in", (acc.correct_in >= 0).all() and (acc.correct_in <= acc.count_in).all()),
            (
                "correct_total",
                (acc.correct_total >= acc.correct_in).all()
                and (acc.correct_total - acc.correct_in <= num_runs - acc.count_in).all(),
            ),
            (
                "test_correct_total",
                (acc.test_correct_total >= 0).all() and (acc.test_correct_total <= num_runs).all(),
            ),
        )
        if not ok
    ]
    if bad:
        raise NpzError(f"{path}: key(s) {bad} hold counts inconsistent with num_runs={num_runs}")
    return acc


def merge_accumulators(accumulators: Iterable[RatioAccumulator]) -> RatioAccumulator:
    """Merges accumulators over disjoint runs of one ratio (see `RatioAccumulator.merge`).

    Raises:
      EstimateError: no accumulators, or they do not fit together.
    """
    accumulators = list(accumulators)
    if not accumulators:
        raise EstimateError("no accumulators to merge")
    merged = accumulators[0]
    for other in accumulators[1:]:
        merged = merged.merge(other)
    return merged


def accumulate(
    masks: np.ndarray,
    train_correct: np.ndarray,
    test_correct: np.ndarray | None = None,
    subset_ratio: float | None = None,
    keep_runs: bool = True,
    run_names: Sequence[str] | None = None,
) -> RatioAccumulator:
    """An accumulator over runs given as matrices.

    Args:
      masks: bool [R, n_train], ``M[r, i]``: example i in run r's subset.
      train_correct: bool [R, n_train], ``C[r, i]``.
      test_correct: bool [R, n_test], ``T[r, j]``; None for no test set.
      subset_ratio: the nominal subset ratio, kept for reference.
      keep_runs: keep the runs' bits (needed for influence).
      run_names: optional names, one per run.

    Raises:
      EstimateError: shapes that do not fit, or non-boolean values.
    """
    masks = np.asarray(masks)
    if masks.ndim != 2:
        raise EstimateError(f"masks must be 2-D [R, n_train], found shape {masks.shape}")
    if test_correct is None:
        test_correct = np.zeros((masks.shape[0], 0), bool)
    test_correct = np.asarray(test_correct)
    if test_correct.ndim != 2:
        raise EstimateError(f"test_correct must be 2-D [R, n_test], found {test_correct.shape}")
    acc = RatioAccumulator(masks.shape[1], test_correct.shape[1], keep_runs, subset_ratio)
    acc.add_runs(masks, train_correct, test_correct, run_names)
    return acc


def accumulate_runs(
    runs: Iterable[Run],
    keep_runs: bool = True,
    subset_ratio: float | None = None,
    progress: Progress | None = None,
) -> RatioAccumulator:
    """Reads the aux arrays of runs (of one ratio) into an accumulator, one run at a time.

    Args:
      runs: the runs, e.g. ``open_experiment(root).runs(0.7)``; checkpoints are not needed.
      keep_runs: keep the runs' bits (needed for influence).
      subset_ratio: defaults to the runs' ratio.
      progress: optional wrapper reporting progress over the runs (e.g. tqdm).

    Raises:
      EstimateError: no runs, runs of several ratios, or dataset sizes that differ.
      NpzError / AuxArraysError: an unreadable or inconsistent `aux_arrays.npz`.
    """
    runs = list(runs)
    if not runs:
        raise EstimateError("no runs to accumulate")
    ratios = sorted({run.ratio for run in runs})
    if len(ratios) > 1:
        raise EstimateError(f"runs of several subset ratios {ratios}; accumulate one at a time")
    acc: RatioAccumulator | None = None
    for run in progress(runs) if progress else runs:
        if acc is None:
            aux = run.load_aux()
            ratio = run.subset_ratio if subset_ratio is None else subset_ratio
            acc = RatioAccumulator(aux.num_train, aux.num_test, keep_runs, ratio)
        else:
            aux = run.load_aux(acc.num_train, acc.num_test)
        acc.add_aux(aux, run.name)
    assert acc is not None
    return acc


def accumulate_experiment(
    experiment: Experiment | str | os.PathLike,
    ratios: Sequence[str | float] | None = None,
    keep_runs: bool = True,
    progress: Progress | None = None,
) -> list[RatioAccumulator]:
    """One accumulator per subset ratio of an experiment (all its ratios by default).

    Args:
      experiment: an `Experiment` or its directory (runs without checkpoints count).
      ratios: the ratios to read (names like ``"0.7"`` or values), sorted by value.
      keep_runs: keep the runs' bits (needed for influence).
      progress: optional wrapper reporting progress over all runs.

    Raises:
      EstimateError: no runs, or runs that disagree on the dataset sizes.
      KeyError: a requested ratio the experiment does not have.
    """
    if not isinstance(experiment, Experiment):
        experiment = open_experiment(experiment)
    names = experiment.ratios if ratios is None else [experiment.ratio_name(r) for r in ratios]
    names = sorted(dict.fromkeys(names), key=float)
    runs = [run for name in names for run in experiment.runs(name)]
    if not runs:
        raise EstimateError(f"{experiment.root}: no complete runs (aux_arrays.npz) found")
    accs: dict[str, RatioAccumulator] = {}
    sizes: tuple[int, int] | None = None
    for run in progress(runs) if progress else runs:
        aux = run.load_aux(*sizes) if sizes else run.load_aux()
        sizes = (aux.num_train, aux.num_test)
        if run.ratio not in accs:
            accs[run.ratio] = RatioAccumulator(*sizes, keep_runs, run.subset_ratio)
        accs[run.ratio].add_aux(aux, run.name)
    return [accs[name] for name in names if name in accs]


# --------------------------------------------------------------------------------------------
# Memorization and C-scores (vectors).


def _ratio(numerator: np.ndarray, count: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(count > 0, numerator / np.maximum(count, 1), np.nan)


def _binomial_var(mean: np.ndarray, count: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(count > 0, mean * (1.0 - mean) / np.maximum(count, 1), np.nan)


@dataclasses.dataclass(frozen=True)
class Memorization:
    """Memorization estimates of the training examples at one subset ratio.

    Attributes:
      memorization: float64 [n_train], ``mean_in - mean_out``; NaN where a count is zero.
      stderr: float64 [n_train], binomial standard error,
        ``sqrt(p_in (1 - p_in) / count_in + p_out (1 - p_out) / count_out)`` with the observed
        proportions (0 when both are 0 or 1); NaN where undefined.
      mean_in, mean_out: float64 [n_train], accuracy over the runs with / without the example.
      count_in, count_out: int64 [n_train], number of runs with / without the example.
    """

    memorization: np.ndarray
    stderr: np.ndarray
    mean_in: np.ndarray
    mean_out: np.ndarray
    count_in: np.ndarray
    count_out: np.ndarray


def memorization(acc: RatioAccumulator) -> Memorization:
    """Memorization of every training example (Feldman & Zhang 2020, subsampled estimator)."""
    count_out = acc.count_out
    mean_in = _ratio(acc.correct_in, acc.count_in)
    mean_out = _ratio(acc.correct_total - acc.correct_in, count_out)
    var = _binomial_var(mean_in, acc.count_in) + _binomial_var(mean_out, count_out)
    return Memorization(
        mean_in - mean_out, np.sqrt(var), mean_in, mean_out, acc.count_in, count_out
    )


@dataclasses.dataclass(frozen=True)
class RatioCScore:
    """Holdout consistency at one subset ratio (Jiang et al. 2021).

    Attributes:
      subset_ratio: the ratio.
      num_runs: the runs at this ratio.
      train: float64 [n_train], accuracy on example i over the runs that held it out; NaN
        where ``count_out`` is 0.
      train_stderr: float64 [n_train], binomial ``sqrt(p (1 - p) / count_out)``.
      count_out: int64 [n_train].
      test: float64 [n_test], accuracy on test example j over all runs (NaN with no runs).
      test_stderr: float64 [n_test], binomial ``sqrt(p (1 - p) / num_runs)``.
    """

    subset_ratio: float
    num_runs: int
    train: np.ndarray
    train_stderr: np.ndarray
    count_out: np.ndarray
    test: np.ndarray
    test_stderr: np.ndarray


def ratio_cscore(acc: RatioAccumulator) -> RatioCScore:
    """The holdout consistency of the training and test examples at the accumulator's ratio."""
    count_out = acc.count_out
    train = _ratio(acc.correct_total - acc.correct_in, count_out)
    runs = np.full(acc.num_test, acc.num_runs)
    test = _ratio(acc.test_correct_total, runs)
    return RatioCScore(
        acc.subset_ratio,
        acc.num_runs,
        train,
        np.sqrt(_binomial_var(train, count_out)),
        count_out,
        test,
        np.sqrt(_binomial_var(test, runs)),
    )


@dataclasses.dataclass(frozen=True)
class CScores:
    """C-scores averaged over subset ratios (Jiang et al. 2021, holdout estimator).

    Attributes:
      scores: float64 [n_train], unweighted mean of the per-ratio consistency over the ratios
        where it is defined; NaN where it is defined at none.
      stderr: float64 [n_train], ``sqrt(sum_s stderr_s**2) / n_defined`` (independent ratios).
      by_ratio: float64 [n_ratios, n_train], per-ratio consistency (NaN where undefined).
      stderr_by_ratio: float64 [n_ratios, n_train].
      count_out_by_ratio: int64 [n_ratios, n_train], runs holding the example out.
      ratios: float64 [n_ratios], sorted ascending.
      num_runs_by_ratio: int64 [n_ratios].
      test_scores: float64 [n_test], mean over ratios of the test consistency.
      test_by_ratio: float64 [n_ratios, n_test].
    """

    scores: np.ndarray
    stderr: np.ndarray
    by_ratio: np.ndarray
    stderr_by_ratio: np.ndarray
    count_out_by_ratio: np.ndarray
    ratios: np.ndarray
    num_runs_by_ratio: np.ndarray
    test_scores: np.ndarray
    test_by_ratio: np.ndarray


def _mean_over_ratios(values: np.ndarray, stderr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    defined = ~np.isnan(values)
    n = defined.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(
            n > 0, np.where(defined, values, 0.0).sum(axis=0) / np.maximum(n, 1), np.nan
        )
        var = np.where(defined, stderr**2, 0.0).sum(axis=0)
        se = np.where(n > 0, np.sqrt(var) / np.maximum(n, 1), np.nan)
    return mean, se


def cscores(accumulators: Sequence[RatioAccumulator]) -> CScores:
    """C-scores of the training examples (and consistency of the test examples) over ratios.

    Args:
      accumulators: one per subset ratio, all over the same dataset.

    Raises:
      EstimateError: no accumulators, sizes that differ, or a ratio given twice.
    """
    accs = sorted(accumulators, key=lambda a: a.subset_ratio)
    if not accs:
        raise EstimateError("no subset ratios to average")
    sizes = {(a.num_train, a.num_test) for a in accs}
    if len(sizes) > 1:
        raise EstimateError(f"accumulators over different dataset sizes {sorted(sizes)}")
    ratios = np.array([a.subset_ratio for a in accs], np.float64)
    if len(np.unique(ratios)) != len(ratios):
        raise EstimateError(f"subset ratios given more than once: {ratios.tolist()}")
    per = [ratio_cscore(a) for a in accs]
    by_ratio = np.stack([p.train for p in per])
    stderr_by_ratio = np.stack([p.train_stderr for p in per])
    scores, stderr = _mean_over_ratios(by_ratio, stderr_by_ratio)
    test_by_ratio = np.stack([p.test for p in per])
    test_scores, _ = _mean_over_ratios(test_by_ratio, np.stack([p.test_stderr for p in per]))
    return CScores(
        scores=scores,
        stderr=stderr,
        by_ratio=by_ratio,
        stderr_by_ratio=stderr_by_ratio,
        count_out_by_ratio=np.stack([p.count_out for p in per]),
        ratios=ratios,
        num_runs_by_ratio=np.array([a.num_runs for a in accs], np.int64),
        test_scores=test_scores,
        test_by_ratio=test_by_ratio,
    )


# --------------------------------------------------------------------------------------------
# Influence, tile by tile.


@dataclasses.dataclass(frozen=True)
class _Tiler:
    """Forms influence tiles ``[rows, cols]`` from the bits with one GEMM per tile."""

    acc: RatioAccumulator
    inv_in: np.ndarray  # float32 [n_train]: 1 / count_in (NaN where undefined)
    inv_out: np.ndarray  # float32 [n_train]: 1 / count_out (NaN where undefined)
    test_total: np.ndarray  # float32 [n_test]
    rows: int
    cols: int

    @staticmethod
    def make(acc: RatioAccumulator, working_bytes: int, full: bool) -> _Tiler:
        acc._require_runs("influence")
        if acc.num_runs == 0:
            raise EstimateError("influence needs at least one run")
        cin, cout = acc.count_in, acc.count_out
        defined = (cin > 0) & (cout > 0)
        with np.errstate(divide="ignore"):
            inv_in = np.where(defined, 1.0 / cin, np.nan).astype(np.float32)
            inv_out = np.where(defined, 1.0 / cout, np.nan).astype(np.float32)
        runs, n_test = acc.num_runs, acc.num_test
        budget = max(int(working_bytes), 0)
        if full:
            # Output tiles are views of the result: the working set is the float32 runs.
            rows = n_test if 4 * runs * n_test <= budget // 2 else budget // 2 // (4 * runs)
            rows = n_test if rows >= n_test else max(8, rows // 8 * 8)
            cols = budget // 2 // (4 * runs)
        else:
            # A tile plus about three tile-sized temporaries, and the float32 runs.
            rows = min(1024, budget // 2**19)
            rows = n_test if rows >= n_test else max(8, rows // 8 * 8)
            cols = min(budget // 2 // (4 * runs), budget // 2 // (16 * max(rows, 1)))
        cols = acc.num_train if cols >= acc.num_train else max(64, cols // 64 * 64)
        rows, cols = max(rows, 1), max(cols, 1)
        return _Tiler(acc, inv_in, inv_out, acc.test_correct_total.astype(np.float32), rows, cols)

    def col_blocks(self) -> list[tuple[int, int]]:
        n = self.acc.num_train
        return [(c, min(c + self.cols, n)) for c in range(0, n, self.cols)]

    def row_blocks(self) -> list[tuple[int, int]]:
        n = self.acc.num_test
        return [(r, min(r + self.rows, n)) for r in range(0, n, self.rows)]

    def tiles(
        self, progress: Progress | None = None, out: np.ndarray | None = None
    ) -> Iterator[tuple[int, int, int, int, np.ndarray]]:
        """Yields ``(r0, r1, c0, c1, tile)``, tile float32 [r1 - r0, c1 - c0] of influence.

        The tile is a view of `out` when given, else a buffer reused for the next tile.
        """
        acc = self.acc
        rows = self.row_blocks()
        blocks = [(c, r) for c in self.col_blocks() for r in rows]
        buffer = np.empty(self.rows * self.cols, np.float32) if out is None else None
        m_buffer = np.empty(acc.num_runs * min(self.cols, acc.num_train), np.float32)
        if len(rows) == 1:
            t_all, t_buffer = _unpack(acc.test_bits, 0, acc.num_test), None
        else:
            t_all, t_buffer = None, np.empty(acc.num_runs * self.rows, np.float32)
        m_block, m_key = None, None
        for (c0, c1), (r0, r1) in progress(blocks) if progress else blocks:
            if m_key != (c0, c1):
                m_block, m_key = _unpack(acc.mask_bits, c0, c1, m_buffer), (c0, c1)
            t_block = t_all if t_all is not None else _unpack(acc.test_bits, r0, r1, t_buffer)
            if out is None:
                tile = buffer[: (r1 - r0) * (c1 - c0)].reshape(r1 - r0, c1 - c0)
            else:
                tile = out[r0:r1, c0:c1]
            np.matmul(t_block.T, m_block, out=tile)
            self.finish(tile, r0, c0, c1)
            yield r0, r1, c0, c1, tile

    def finish(self, cooc: np.ndarray, r0: int, c0: int, c1: int) -> None:
        """Turns co-occurrence sums ``T^T M`` into influence in place, in cache-sized chunks.

        ``influence = cooc / count_in - (total - cooc) / count_out``: the "without" sums come
        from the totals; each term is in [0, 1], so the float32 error stays within a few ulp.
        """
        inv_in, inv_out = self.inv_in[c0:c1], self.inv_out[c0:c1]
        step = max(1, 2**18 // max(c1 - c0, 1))
        tmp = np.empty((step, c1 - c0), np.float32)
        for s in range(0, cooc.shape[0], step):
            chunk = cooc[s : s + step]
            t = tmp[: chunk.shape[0]]
            np.subtract(self.test_total[r0 + s : r0 + s + chunk.shape[0], None], chunk, out=t)
            np.multiply(t, inv_out, out=t)
            np.multiply(chunk, inv_in, out=chunk)
            np.subtract(chunk, t, out=chunk)


def influence(
    acc: RatioAccumulator,
    out: np.ndarray | None = None,
    working_bytes: int = DEFAULT_WORKING_BYTES,
    progress: Progress | None = None,
) -> np.ndarray:
    """The full influence matrix (Feldman & Zhang 2020, subsampled influence estimator).

    Computed as one float32 GEMM ``T^T M`` over the kept runs, tile by tile straight into the
    result, then ``cooc / count_in - (total - cooc) / count_out`` in place.

    Args:
      acc: an accumulator with `keep_runs`.
      out: optional float32 C-contiguous [n_test, n_train] array to write into.
      working_bytes: bound on the memory used besides the result.
      progress: optional wrapper reporting progress over the tiles.

    Returns:
      influence: float32 [n_test, n_train]; column i is NaN where ``count_in[i]`` or
      ``count_out[i]`` is 0.

    Raises:
      EstimateError: the accumulator keeps no runs, or `out` has the wrong shape/dtype.
    """
    tiler = _Tiler.make(acc, working_bytes, full=True)
    shape = (acc.num_test, acc.num_train)
    if out is None:
        out = np.empty(shape, np.float32)
    elif out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise EstimateError(
            f"out must be a C-contiguous float32 array of shape {shape}, found {out.dtype} "
            f"{out.shape}"
        )
    for _ in tiler.tiles(progress, out):
        pass
    return out


def influence_stderr(acc: RatioAccumulator) -> np.ndarray:
    """float32 [n_test, n_train]: binomial standard error of `influence`.

    ``sqrt(q_in (1 - q_in) / count_in + q_out (1 - q_out) / count_out)`` with the observed test
    accuracies with / without training example i; NaN where undefined. Materialises the full
    matrix (meant for small experiments and tests).
    """
    acc._require_runs("influence_stderr")
    cooc = _unpack(acc.test_bits, 0, acc.num_test).T @ _unpack(acc.mask_bits, 0, acc.num_train)
    cin, cout = acc.count_in[None, :], acc.count_out[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        q_in = cooc / cin
        q_out = (acc.test_correct_total[:, None] - cooc) / cout
        var = q_in * (1 - q_in) / cin + q_out * (1 - q_out) / cout
    var[:, ((cin == 0) | (cout == 0))[0]] = np.nan
    return np.sqrt(var).astype(np.float32)


def _topk_update(
    vals: np.ndarray,
    idx: np.ndarray,
    tile: np.ndarray,
    col0: int,
    k: int,
    scratch: np.ndarray,
) -> None:
    """Merges a tile into running top-k lists (rows: value descending, then index ascending).

    `vals` float32 [rows, k] (sorted, -inf padding) and `idx` int64 [rows, k] are updated in
    place; `tile` holds -inf where the influence is undefined; `scratch` is a float32 buffer of
    at least the tile's size.
    """
    rows, width = tile.shape
    cand = tile > vals[:, -1:]  # ties with kept entries lose: those have smaller indices
    if width > k and np.count_nonzero(cand) > 4 * k * rows:
        # Many candidates (first tiles): keep only those within the tile's own top k.
        part = scratch[: tile.size].reshape(tile.shape)
        np.copyto(part, tile)
        part.partition(width - k, axis=1)
        cand &= tile >= part[:, width - k, None]
    r, c = np.nonzero(cand)
    if r.size == 0:
        return
    all_r = np.concatenate([np.repeat(np.arange(rows), k), r])
    all_v = np.concatenate([vals.ravel(), tile[r, c]])
    all_i = np.concatenate([idx.ravel(), c.astype(np.int64) + col0])
    order = np.lexsort((all_i, -all_v, all_r))
    starts = np.searchsorted(all_r[order], np.arange(rows))
    take = order[starts[:, None] + np.arange(k)]
    vals[...] = all_v[take]
    idx[...] = all_i[take]


def top_k_influence(
    acc: RatioAccumulator,
    k: int,
    working_bytes: int = DEFAULT_WORKING_BYTES,
    progress: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The k training examples of largest influence on each test example, without the matrix.

    Tiles of the influence matrix are formed (one GEMM each, bounded working set) and merged
    into running top-k lists, so the memory is O(n_test * k) plus the working set: the
    ImageNet matrix (50,000 x 1,281,167) is never materialised.

    Args:
      acc: an accumulator with `keep_runs`.
      k: entries per test example (1 <= k).
      working_bytes: bound on the working set.
      progress: optional wrapper reporting progress over the tiles.

    Returns:
      (index, influence): int64 [n_test, k] training-example positions and float32
      [n_test, k] their influence, sorted by influence descending (ties: smaller index first).
      Undefined influence (NaN) is never ranked; rows with fewer than k defined entries are
      padded with index -1 and NaN.

    Raises:
      EstimateError: k < 1, or the accumulator keeps no runs.
    """
    if k < 1:
        raise EstimateError(f"k must be >= 1, got {k}")
    k = int(k)
    tiler = _Tiler.make(acc, working_bytes, full=False)
    vals = np.full((acc.num_test, k), -np.inf, np.float32)
    idx = np.full((acc.num_test, k), -1, np.int64)
    undefined = np.flatnonzero(np.isnan(tiler.inv_in))
    scratch = np.empty(tiler.rows * tiler.cols, np.float32)
    for r0, r1, c0, c1, tile in tiler.tiles(progress):
        cols = undefined[(undefined >= c0) & (undefined < c1)] - c0
        tile[:, cols] = -np.inf
        _topk_update(vals[r0:r1], idx[r0:r1], tile, c0, k, scratch)
    missing = np.isneginf(vals)
    vals[missing] = np.nan
    idx[missing] = -1
    return idx, vals


# --------------------------------------------------------------------------------------------
# High-influence pairs.


@dataclasses.dataclass(frozen=True)
class HighInfluencePairs:
    """High-influence (train, test) pairs, in the authors' published format.

    Attributes:
      tr_idx: int64 [p], training-example positions.
      tt_idx: int64 [p], test-example positions.
      infl: float64 [p], influence of the training on the test example.
      mem: float64 [p], memorization of the training example.
    """

    tr_idx: np.ndarray
    tt_idx: np.ndarray
    infl: np.ndarray
    mem: np.ndarray

    def __len__(self) -> int:
        return len(self.tr_idx)

    def to_dict(self) -> dict[str, np.ndarray]:
        """The arrays under the published keys ``tr_idx``, ``tt_idx``, ``infl``, ``mem``."""
        return {"tr_idx": self.tr_idx, "tt_idx": self.tt_idx, "infl": self.infl, "mem": self.mem}


def _pairs_inputs(
    mem: np.ndarray, train_labels: np.ndarray, test_labels: np.ndarray, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n_test, n_train = shape
    mem = np.asarray(mem, np.float64)
    ytr, yte = np.asarray(train_labels), np.asarray(test_labels)
    for name, value, n in (
        ("mem", mem, n_train),
        ("train_labels", ytr, n_train),
        ("test_labels", yte, n_test),
    ):
        if value.shape != (n,):
            raise EstimateError(f"{name} must have shape ({n},), found {value.shape}")
    return mem, ytr, yte


def _select(tile, r0, c0, mem, ytr, yte, infl_threshold, mem_threshold):
    r, c = np.nonzero(tile >= infl_threshold)
    i, j = c + c0, r + r0
    keep = (mem[i] >= mem_threshold) & (ytr[i] == yte[j])
    return i[keep], j[keep], tile[r[keep], c[keep]]


def _make_pairs(parts: list, mem: np.ndarray) -> HighInfluencePairs:
    if parts:
        tr, tt, infl = (np.concatenate(p) for p in zip(*parts, strict=True))
    else:
        tr, tt, infl = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    tr, tt = tr.astype(np.int64), tt.astype(np.int64)
    order = np.lexsort((tt, tr))
    tr, tt = tr[order], tt[order]
    return HighInfluencePairs(tr, tt, np.asarray(infl, np.float64)[order], mem[tr])


def select_high_influence_pairs(
    infl: np.ndarray,
    mem: np.ndarray,
    train_labels: np.ndarray,
    test_labels: np.ndarray,
    infl_threshold: float = 0.15,
    mem_threshold: float = 0.25,
) -> HighInfluencePairs:
    """High-influence pairs from a full influence matrix (Feldman & Zhang 2020).

    Pairs (i, j) with ``infl[j, i] >= infl_threshold``, ``mem[i] >= mem_threshold`` and
    ``train_labels[i] == test_labels[j]``; NaN never qualifies.

    Args:
      infl: float [n_test, n_train], the influence matrix.
      mem: float [n_train], memorization.
      train_labels: int [n_train]; test_labels: int [n_test].
      infl_threshold, mem_threshold: the thresholds (the paper's 0.15 and 0.25 by default).

    Returns:
      `HighInfluencePairs`, sorted by training then test index.

    Raises:
      EstimateError: shapes that do not fit.
    """
    infl = np.asarray(infl)
    if infl.ndim != 2:
        raise EstimateError(f"infl must be 2-D [n_test, n_train], found shape {infl.shape}")
    mem, ytr, yte = _pairs_inputs(mem, train_labels, test_labels, infl.shape)
    step = max(1, 2**22 // max(infl.shape[1], 1))
    parts = [
        _select(infl[r0 : r0 + step], r0, 0, mem, ytr, yte, infl_threshold, mem_threshold)
        for r0 in range(0, infl.shape[0], step)
    ]
    return _make_pairs(parts, mem)


def high_influence_pairs(
    acc: RatioAccumulator,
    train_labels: np.ndarray,
    test_labels: np.ndarray,
    infl_threshold: float = 0.15,
    mem_threshold: float = 0.25,
    working_bytes: int = DEFAULT_WORKING_BYTES,
    progress: Progress | None = None,
) -> HighInfluencePairs:
    """High-influence pairs straight from an accumulator, tile by tile (no full matrix).

    Same selection as `select_high_influence_pairs`, with the memorization of `acc`.
    """
    tiler = _Tiler.make(acc, working_bytes, full=False)
    mem, ytr, yte = _pairs_inputs(
        memorization(acc).memorization, train_labels, test_labels, (acc.num_test, acc.num_train)
    )
    parts = [
        _select(tile, r0, c0, mem, ytr, yte, infl_threshold, mem_threshold)
        for r0, _, c0, _, tile in tiler.tiles(progress)
    ]
    return _make_pairs(parts, mem)


def pairs_from_top_k(
    topk_index: np.ndarray,
    topk_influence: np.ndarray,
    mem: np.ndarray,
    train_labels: np.ndarray,
    test_labels: np.ndarray,
    infl_threshold: float = 0.15,
    mem_threshold: float = 0.25,
) -> HighInfluencePairs:
    """High-influence pairs from top-k lists, refusing when the lists may have cut some off.

    Args:
      topk_index, topk_influence: [n_test, k] from `top_k_influence`.
      mem: float [n_train]; train_labels: [n_train]; test_labels: [n_test].

    Raises:
      EstimateError: a test example's k-th influence is at or above `infl_threshold` while it
        may have more qualifying training examples (k is too small for the threshold).
    """
    topk_index, topk_influence = np.asarray(topk_index), np.asarray(topk_influence)
    if topk_index.shape != topk_influence.shape or topk_index.ndim != 2:
        raise EstimateError(
            f"topk_index {topk_index.shape} and topk_influence {topk_influence.shape} must be "
            "equal 2-D shapes [n_test, k]"
        )
    n_test, k = topk_index.shape
    mem, ytr, yte = _pairs_inputs(mem, train_labels, test_labels, (n_test, len(np.asarray(mem))))
    n_train = len(mem)
    last = topk_influence[:, -1]
    cut = (~np.isnan(last)) & (last >= infl_threshold) & (k < n_train)
    if cut.any():
        raise EstimateError(
            f"{int(cut.sum())} test example(s) have all {k} top-k influences >= "
            f"{infl_threshold}, so pairs may be missing; estimate again with a larger top-k "
            "or with full influence"
        )
    r, c = np.nonzero(topk_influence >= infl_threshold)
    i, j = topk_index[r, c], r
    keep = (mem[i] >= mem_threshold) & (ytr[i] == yte[j])
    return _make_pairs([(i[keep], j[keep], topk_influence[r[keep], c[keep]])], mem)


# --------------------------------------------------------------------------------------------
# One ratio's estimates, as `heldout estimate` writes them.


@dataclasses.dataclass(frozen=True)
class RatioEstimate:
    """Memorization and influence at one subset ratio (the `heldout estimate` file).

    Attributes:
      memorization, memorization_stderr: float64 [n_train] (see `Memorization`).
      count_in, count_out: int64 [n_train].
      num_runs: R.
      subset_ratio: the ratio (NaN when unknown).
      influence: float32 [n_test, n_train] or None.
      topk_index: int64 [n_test, k] or None; topk_influence: float32 [n_test, k] or None.
    """

    memorization: np.ndarray
    memorization_stderr: np.ndarray
    count_in: np.ndarray
    count_out: np.ndarray
    num_runs: int
    subset_ratio: float
    influence: np.ndarray | None = None
    topk_index: np.ndarray | None = None
    topk_influence: np.ndarray | None = None

    def to_dict(self) -> dict[str, np.ndarray]:
        arrays = {
            "memorization": self.memorization,
            "memorization_stderr": self.memorization_stderr,
            "count_in": self.count_in,
            "count_out": self.count_out,
            "num_runs": np.array(self.num_runs, np.int64),
            "subset_ratio": np.array(self.subset_ratio, np.float64),
        }
        for key in ("influence", "topk_index", "topk_influence"):
            if getattr(self, key) is not None:
                arrays[key] = getattr(self, key)
        return arrays


def estimate(
    acc: RatioAccumulator,
    influence_kind: str = "full",
    top_k: int = 10,
    working_bytes: int = DEFAULT_WORKING_BYTES,
    progress: Progress | None = None,
) -> RatioEstimate:
    """Memorization and (full, top-k or no) influence of one ratio's accumulator.

    Args:
      acc: the accumulator (with `keep_runs` unless `influence_kind` is ``"none"``).
      influence_kind: ``"full"``, ``"topk"`` or ``"none"``.
      top_k: k for ``"topk"``.
      working_bytes, progress: see `influence`.

    Raises:
      EstimateError: unknown kind, or influence asked of a counts-only accumulator.
    """
    if influence_kind not in INFLUENCE_KINDS:
        raise EstimateError(f"influence must be one of {INFLUENCE_KINDS}, got {influence_kind!r}")
    mem = memorization(acc)
    extra: dict[str, np.ndarray] = {}
    if influence_kind == "full":
        extra["influence"] = influence(acc, working_bytes=working_bytes, progress=progress)
    elif influence_kind == "topk":
        index, values = top_k_influence(acc, top_k, working_bytes, progress)
        extra.update(topk_index=index, topk_influence=values)
    return RatioEstimate(
        mem.memorization,
        mem.stderr,
        mem.count_in,
        mem.count_out,
        acc.num_runs,
        acc.subset_ratio,
        **extra,
    )


def save_estimate(path: str | os.PathLike, est: RatioEstimate) -> None:
    """Writes a `RatioEstimate` to `.npz` atomically (keys as its attributes; absent = None)."""
    save_npz_atomic(path, est.to_dict())


def load_estimate(path: str | os.PathLike) -> RatioEstimate:
    """Reads and checks a file written by `save_estimate` / `heldout estimate`.

    Raises:
      NpzError: unreadable file, missing key, or arrays of the wrong dtype or shape (the message
        names the file and key).
    """
    path = os.fspath(path)
    arrays = load_npz(path)
    required = ("memorization", "memorization_stderr", "count_in", "count_out", "num_runs")
    missing = [k for k in required + ("subset_ratio",) if k not in arrays]
    if missing:
        raise NpzError(
            f"{path}: missing key(s) {missing}; not a `heldout estimate` file (found keys "
            f"{sorted(arrays)})"
        )
    mem = arrays["memorization"]
    if mem.ndim != 1 or mem.dtype.kind != "f":
        raise NpzError(
            f"{path}: key 'memorization' must be 1-D float, found {mem.dtype} {mem.shape}"
        )
    n_train = len(mem)
    for key, kind in (("memorization_stderr", "f"), ("count_in", "iu"), ("count_out", "iu")):
        if arrays[key].shape != (n_train,) or arrays[key].dtype.kind not in kind:
            raise NpzError(
                f"{path}: key {key!r} must be {kind!r}-kind [{n_train}], found "
                f"{arrays[key].dtype} {arrays[key].shape}"
            )
    for key, kind in (("num_runs", "iu"), ("subset_ratio", "f")):
        if arrays[key].shape != () or arrays[key].dtype.kind not in kind:
            raise NpzError(f"{path}: key {key!r} must be a scalar, found {arrays[key].shape}")
    extra: dict[str, np.ndarray] = {}
    if "influence" in arrays:
        infl = arrays["influence"]
        if infl.ndim != 2 or infl.shape[1] != n_train or infl.dtype.kind != "f":
            raise NpzError(
                f"{path}: key 'influence' must be float [n_test, {n_train}], found {infl.dtype} "
                f"{infl.shape}"
            )
        extra["influence"] = infl
    if ("topk_index" in arrays) != ("topk_influence" in arrays):
        raise NpzError(f"{path}: keys 'topk_index' and 'topk_influence' come together")
    if "topk_index" in arrays:
        index, values = arrays["topk_index"], arrays["topk_influence"]
        if (
            index.ndim != 2
            or index.shape != values.shape
            or index.dtype.kind not in "iu"
            or values.dtype.kind != "f"
        ):
            raise NpzError(
                f"{path}: keys 'topk_index' (int) and 'topk_influence' (float) must share a 2-D "
                f"shape, found {index.dtype} {index.shape} and {values.dtype} {values.shape}"
            )
        if ((index < -1) | (index >= n_train)).any():
            raise NpzError(f"{path}: key 'topk_index' holds positions outside -1..{n_train - 1}")
        extra.update(topk_index=index.astype(np.int64), topk_influence=values)
    return RatioEstimate(
        mem.astype(np.float64),
        arrays["memorization_stderr"].astype(np.float64),
        arrays["count_in"].astype(np.int64),
        arrays["count_out"].astype(np.int64),
        int(arrays["num_runs"]),
        float(arrays["subset_ratio"]),
        **extra,
    )
