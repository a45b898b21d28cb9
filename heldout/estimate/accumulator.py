"""Sufficient statistics of one subset ratio's runs: `RatioAccumulator` (pure numpy).

Per training example the accumulator counts the runs holding it (``count_in``) and the correct
predictions with and without it; per test example the correct predictions. With `keep_runs` it
also keeps the runs' subset masks and test correctness packed to bits (R * (n_train + n_test)
/ 8 bytes), which influence needs. Accumulators over disjoint runs merge, and save to / load
from `.npz` (`RatioAccumulator.save`, `load_accumulator`). An accumulator also carries the
dataset fingerprint of its runs (`heldout.data.fingerprint`; runs written by `heldout.train`
have one, released runs do not) and refuses runs or shards computed on another dataset or
order. See `heldout.estimate` for the estimators built on it.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from heldout.data.fingerprint import Fingerprint, check_fingerprints, read_fingerprint
from heldout.errors import EstimateError, FingerprintError, NpzError
from heldout.experiment import AuxArrays, Experiment, Run, iter_aux_arrays, open_experiment
from heldout.npzio import load_npz, require, save_npz_atomic

ACCUMULATOR_FORMAT = "heldout.estimate.RatioAccumulator/1"

Progress = Callable[[Iterable], Iterable]
"""Wraps an iterable to report progress, e.g. ``functools.partial(tqdm.tqdm, desc="runs")``."""


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


def run_content_name(mask: np.ndarray, train_correct: np.ndarray, test_correct: np.ndarray) -> str:
    """``#<16 hex digits>``: the name an unnamed run gets, a SHA-256 of its bool mask, train and
    test correctness (bit-packed), so that the same run added twice (a repeated shard) is
    recognised and refused even without a name."""
    digest = hashlib.sha256()
    for row in (mask, train_correct, test_correct):
        row = np.asarray(row, bool)
        digest.update(np.int64(row.size).tobytes())
        digest.update(_pack(row).tobytes())
    return "#" + digest.hexdigest()[:16]


def _unpack(
    bits: np.ndarray,
    start: int,
    stop: int,
    buffer: np.ndarray | None = None,
    dtype: np.dtype | type = np.float32,
) -> np.ndarray:
    """0/1 [R, stop - start] of `dtype` (of `buffer` when given, written into it): columns
    start..stop of bit-packed rows."""
    b0, b1 = start // 8, (stop + 7) // 8
    unpacked = np.unpackbits(bits[:, b0:b1], axis=1, bitorder="little")
    values = unpacked[:, start - 8 * b0 : stop - 8 * b0]
    if buffer is None:
        return values.astype(dtype)
    out = buffer[: values.size].reshape(values.shape)
    np.copyto(out, values, casting="unsafe")
    return out


def _run_label(aux: AuxArrays, name: str) -> str:
    """``0.7/12 (<root>/0.7/12/aux_arrays.npz)``: a run's name and file, for messages."""
    source = aux.source if aux.source not in ("", "aux arrays") else ""  # '' in memory
    if name and source:
        return f"{name} ({source})"
    return name or source or "aux arrays"


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
      run_names: names of the runs added, used to refuse double counting; a run added without
        a name is named by its content (`run_content_name`, ``#<hash>``).
      fingerprint: the dataset fingerprint of the runs (the first one seen; see
        `heldout.data.fingerprint`), or None when no run had one (released runs).
      fingerprint_source: where `fingerprint` came from (a run's aux arrays, a file), for
        error messages; '' when there is none.
    """

    def __init__(
        self,
        num_train: int,
        num_test: int,
        keep_runs: bool = True,
        subset_ratio: float | None = None,
        fingerprint: Fingerprint | None = None,
        fingerprint_source: str = "",
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
        self.fingerprint = fingerprint
        self.fingerprint_source = (fingerprint_source or "accumulator") if fingerprint else ""
        self._mask_rows: list[np.ndarray] = []
        self._test_rows: list[np.ndarray] = []

    def __repr__(self) -> str:
        return (
            f"RatioAccumulator(subset_ratio={self.subset_ratio}, num_runs={self.num_runs}, "
            f"num_train={self.num_train}, num_test={self.num_test}, keep_runs={self.keep_runs}"
            + (f", fingerprint={self.fingerprint.describe()!r})" if self.fingerprint else ")")
        )

    def _checked_fingerprint(
        self, fingerprint: Fingerprint | None, source: str
    ) -> tuple[Fingerprint | None, str]:
        """(fingerprint, source) the accumulator has after taking in `fingerprint`.

        Raises:
          FingerprintError: it differs from the accumulator's (naming both sources).
        """
        if fingerprint is None:
            return self.fingerprint, self.fingerprint_source
        if self.fingerprint is None:
            return fingerprint, source
        check_fingerprints([(self.fingerprint_source, self.fingerprint), (source, fingerprint)])
        return self.fingerprint, self.fingerprint_source

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
          name: the run's name (e.g. ``0.7/12``); default: its content hash
            (`run_content_name`). A name already added is refused.

        Raises:
          EstimateError: wrong shapes or non-boolean values, or a repeated name (or, for an
            unnamed run, a run with the same content already added).
        """
        self.add_runs(
            np.asarray(mask)[None],
            np.asarray(train_correct)[None],
            np.asarray(test_correct)[None],
            [name],
        )

    def add_aux(self, aux: AuxArrays, name: str = "") -> None:
        """Adds one run from its aux arrays (see `heldout.experiment.AuxArrays`).

        The run's dataset fingerprint (``aux.fingerprint``) is checked against the
        accumulator's, the first one seen; a run without one is not checked.

        Raises:
          EstimateError: other dataset sizes, or see `add_run`.
          FingerprintError: the run was evaluated on another dataset or order than the runs
            before it (the message names both runs); nothing is added.
        """
        source = aux.source or name or "aux arrays"
        if aux.num_train != self.num_train or aux.num_test != self.num_test:
            raise EstimateError(
                f"{source}: covers {aux.num_train} training and {aux.num_test} test examples, "
                f"the accumulator {self.num_train} and {self.num_test}"
            )
        fingerprint = self._checked_fingerprint(aux.fingerprint, _run_label(aux, name))
        self.add_run(aux.subset_mask(), aux.train_correctness(), aux.test_correctness(), name)
        self.fingerprint, self.fingerprint_source = fingerprint

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
        names = [name or run_content_name(masks[r], train_correct[r], test_correct[r])
                 for r, name in enumerate(names)]
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
                + (" (runs without a name are named by a hash of their content: the same "
                   "run, or a repeated shard)" if repeated[0].startswith("#") else "")
            )

    def merge(self, other: RatioAccumulator) -> RatioAccumulator:
        """A new accumulator over the runs of both (which must be disjoint).

        Counts add; the kept runs are stacked (self's first). The result equals one pass over
        all runs; its fingerprint is the first shard's (or the other's when the first has none).

        Raises:
          EstimateError: different dataset sizes, subset ratios, `keep_runs`, or shared runs.
          FingerprintError: the shards' runs were evaluated on different datasets or orders.
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
        try:
            fingerprint, source = self._checked_fingerprint(
                other.fingerprint, other.fingerprint_source
            )
        except FingerprintError as e:
            raise FingerprintError(f"cannot merge accumulators: {e}") from e
        merged = RatioAccumulator(
            self.num_train,
            self.num_test,
            self.keep_runs,
            ratios[0] if ratios else None,
            fingerprint,
            source,
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
        if self.fingerprint is not None:
            arrays.update(self.fingerprint.to_arrays())
        return arrays

    def save(self, path: str | os.PathLike) -> None:
        """Writes the accumulator to an `.npz`, atomically; `load_accumulator` reads it back.

        Keys: ``format`` (``heldout.estimate.RatioAccumulator/1``), ``num_train``, ``num_test``,
        ``num_runs``, ``subset_ratio``, ``keep_runs``, ``count_in``, ``correct_in``,
        ``correct_total``, ``test_correct_total``, ``run_names`` and, with `keep_runs`,
        ``mask_bits`` uint8 [R, ceil(num_train / 8)] and ``test_bits`` uint8
        [R, ceil(num_test / 8)] (little-endian bit order), and the ``fingerprint__*`` keys of
        `heldout.data.fingerprint` when the runs had a fingerprint.
        """
        save_npz_atomic(path, self.to_dict())


def load_accumulator(path: str | os.PathLike) -> RatioAccumulator:
    """Reads an accumulator written by `RatioAccumulator.save`, checking every key.

    Raises:
      NpzError: unreadable file, missing key, or arrays of the wrong dtype or shape (the message
        names the file and key), or a fingerprint whose split sizes are not the accumulator's.
      FingerprintError: incomplete or malformed ``fingerprint__*`` keys.
    """
    path = os.fspath(path)
    arrays = load_npz(path)
    sizes: dict[str, int] = {}
    get = functools.partial(require, arrays, source=path, sizes=sizes,
                            what="an accumulator written by RatioAccumulator.save")

    fmt = get("format", "U", ())
    if str(fmt) != ACCUMULATOR_FORMAT:
        raise NpzError(f"{path}: format {str(fmt)!r}, expected {ACCUMULATOR_FORMAT!r}")
    num_train = sizes["n_train"] = int(get("num_train", "iu", ()))
    num_test = sizes["n_test"] = int(get("num_test", "iu", ()))
    num_runs = sizes["num_runs"] = int(get("num_runs", "iu", ()))
    keep_runs = bool(get("keep_runs", "b", ()))
    fingerprint = read_fingerprint(arrays, path)
    check_fingerprint_sizes(fingerprint, num_train, num_test, path)
    acc = RatioAccumulator(
        num_train, num_test, keep_runs, float(get("subset_ratio", "f", ())), fingerprint, path
    )
    acc.num_runs = num_runs
    for key, n in (
        ("count_in", "n_train"),
        ("correct_in", "n_train"),
        ("correct_total", "n_train"),
        ("test_correct_total", "n_test"),
    ):
        setattr(acc, key, get(key, "iu", (n,)).astype(np.int64))
    acc.run_names = [str(n) for n in get("run_names", "U", ("num_runs",))]
    if keep_runs:
        acc._mask_rows = [get("mask_bits", "u", ("num_runs", (num_train + 7) // 8))]
        acc._test_rows = [get("test_bits", "u", ("num_runs", (num_test + 7) // 8))]
    if keep_runs:
        _check_bits(path, "mask_bits", acc._mask_rows[0], num_train, acc.count_in, "count_in")
        _check_bits(path, "test_bits", acc._test_rows[0], num_test, acc.test_correct_total,
                    "test_correct_total")
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
    if len(set(acc.run_names)) != num_runs:
        raise NpzError(f"{path}: key 'run_names' repeats a run; each run counts once")
    return acc


def _check_bits(
    path: str, key: str, bits: np.ndarray, n: int, counts: np.ndarray, counts_key: str
) -> None:
    """Checks that bit-packed rows (uint8 [R, ceil(n / 8)]) sum, per column, to `counts`
    (int64 [n]) and have no bits set past column n.

    Raises:
      NpzError: naming the file, both keys and the first column that disagrees.
    """
    unpacked = np.unpackbits(bits, axis=1, bitorder="little")
    if unpacked[:, n:].any():
        raise NpzError(f"{path}: key {key!r} has bits set past its {n} columns")
    summed = unpacked[:, :n].sum(axis=0, dtype=np.int64)
    differ = np.flatnonzero(summed != counts)
    if len(differ):
        i = int(differ[0])
        raise NpzError(
            f"{path}: key {counts_key!r} disagrees with {key!r} at {len(differ)} example(s) "
            f"(first {i}: {int(counts[i])} counted, {int(summed[i])} in the bits)"
        )


def check_fingerprint_sizes(
    fingerprint: Fingerprint | None, num_train: int | None, num_test: int | None, source: str
) -> None:
    """Checks that a stored fingerprint's ``train`` / ``test`` sizes are the file's (a size
    given as None is not checked).

    Raises:
      NpzError: naming `source`, the split and both sizes.
    """
    if fingerprint is None:
        return
    for split, n in (("train", num_train), ("test", num_test)):
        if n is not None and split in fingerprint.splits and fingerprint.split(split)[0] != n:
            raise NpzError(
                f"{source}: the dataset fingerprint ({fingerprint.describe()}) has "
                f"{fingerprint.split(split)[0]} {split} examples, the arrays cover {n}"
            )


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
    workers: int | None = None,
) -> RatioAccumulator:
    """Reads the aux arrays of runs (of one ratio) into an accumulator, in the runs' order.

    Args:
      runs: the runs, e.g. ``open_experiment(root).runs(0.7)``; checkpoints are not needed.
      keep_runs: keep the runs' bits (needed for influence).
      subset_ratio: defaults to the runs' ratio.
      progress: optional wrapper reporting progress over the runs (e.g. tqdm).
      workers: threads reading the files (`heldout.experiment.iter_aux_arrays`; default one
        per core, at most 4; 1 reads them one after the other).

    Raises:
      EstimateError: no runs, runs of several ratios, or dataset sizes that differ.
      FingerprintError: runs evaluated on different datasets or orders (see
        `RatioAccumulator.add_aux`).
      NpzError: an unreadable or inconsistent `aux_arrays.npz`.
    """
    runs = list(runs)
    if not runs:
        raise EstimateError("no runs to accumulate")
    ratios = sorted({run.ratio for run in runs})
    if len(ratios) > 1:
        raise EstimateError(f"runs of several subset ratios {ratios}; accumulate one at a time")
    acc: RatioAccumulator | None = None
    for run, aux in iter_aux_arrays(runs, workers, progress=progress):
        if acc is None:
            ratio = run.subset_ratio if subset_ratio is None else subset_ratio
            acc = RatioAccumulator(aux.num_train, aux.num_test, keep_runs, ratio)
        acc.add_aux(aux, run.name)
    assert acc is not None
    return acc


def accumulate_experiment(
    experiment: Experiment | str | os.PathLike,
    ratios: Sequence[str | float] | None = None,
    keep_runs: bool = True,
    progress: Progress | None = None,
    workers: int | None = None,
) -> list[RatioAccumulator]:
    """One accumulator per subset ratio of an experiment (all its ratios by default).

    Args:
      experiment: an `Experiment` or its directory (runs without checkpoints count).
      ratios: the ratios to read (names like ``"0.7"`` or values), sorted by value.
      keep_runs: keep the runs' bits (needed for influence).
      progress: optional wrapper reporting progress over all runs.
      workers: threads reading the files (see `accumulate_runs`).

    Raises:
      EstimateError: no runs, or runs that disagree on the dataset sizes.
      FingerprintError: runs (of any ratios) evaluated on different datasets or orders,
        naming both runs.
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
    reference: tuple[str, Fingerprint] | None = None  # across ratios
    for run, aux in iter_aux_arrays(runs, workers, progress=progress):
        if aux.fingerprint is not None:
            source = _run_label(aux, run.name)
            if reference is None:
                reference = (source, aux.fingerprint)
            else:
                check_fingerprints([reference, (source, aux.fingerprint)])
        if run.ratio not in accs:
            accs[run.ratio] = RatioAccumulator(aux.num_train, aux.num_test, keep_runs,
                                               run.subset_ratio)
        accs[run.ratio].add_aux(aux, run.name)
    return [accs[name] for name in names if name in accs]
