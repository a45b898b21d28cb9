"""The release layout: experiments, runs and their aux arrays (pure numpy, no TensorFlow).

An experiment directory, as released by Feldman & Zhang (2020) and written by `heldout.train`::

    <experiment>/<subset_ratio>/<run_id>/aux_arrays.npz
    <experiment>/<subset_ratio>/<run_id>/checkpoints/ckpt-<epoch>.index
    <experiment>/<subset_ratio>/<run_id>/checkpoints/ckpt-<epoch>.data-<i>-of-<n>

`subset_ratio` is a directory name such as ``0.7``; run ids are integers, not necessarily
contiguous. `aux_arrays.npz` holds, for each split in ``train`` (examples in the run's subset),
``removed`` (held-out training examples) and ``test``, the keys ``correctness_<split>`` (bool, one
entry per evaluated example) and ``index_<split>`` (int, the example's position in the dataset),
plus ``subsample_idx`` (the training-set positions the run trained on). The arrays may be in any
order; everything here goes through the ``index_*`` arrays.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from heldout.data.fingerprint import Fingerprint, read_fingerprint
from heldout.errors import HeldoutError, InputError, NotFoundError
from heldout.npzio import NpzError, load_npz, require, save_npz_atomic

AUX_ARRAYS = "aux_arrays.npz"
CHECKPOINT_DIR = "checkpoints"
SPLITS = ("train", "removed", "test")
AUX_KEYS = tuple(f"{kind}_{split}" for split in SPLITS for kind in ("correctness", "index")) + (
    "subsample_idx",
)

_CKPT_INDEX = re.compile(r"^ckpt-(\d+)\.index$")
_CKPT_DATA = re.compile(r"^ckpt-(\d+)\.data-(\d+)-of-(\d+)$")


class LayoutError(HeldoutError, ValueError):
    """An experiment directory or run does not follow the release layout."""


class AuxArraysError(NpzError):
    """An `aux_arrays.npz` file is missing a key or holds inconsistent arrays."""


# --------------------------------------------------------------------------------------------
# Aux arrays.


@dataclasses.dataclass(frozen=True)
class AuxArrays:
    """The per-run record of which examples were trained on and which were classified correctly.

    Attributes:
      index_train, index_removed, index_test: int64 [n], dataset positions of the evaluated
        examples of each split (``train`` = in the run's subset, ``removed`` = held out).
      correctness_train, correctness_removed, correctness_test: bool [n], aligned with the index
        arrays: True where the run's prediction equals the label.
      subsample_idx: int64 [n_in], training-set positions of the run's subset.
      source: the file the arrays came from, for error messages ('' when built in memory).
      fingerprint: the dataset the run was evaluated on (`heldout.data.fingerprint`), stored
        under extra ``fingerprint__*`` keys by `heldout.train`; None for released runs.
    """

    index_train: np.ndarray
    correctness_train: np.ndarray
    index_removed: np.ndarray
    correctness_removed: np.ndarray
    index_test: np.ndarray
    correctness_test: np.ndarray
    subsample_idx: np.ndarray
    source: str = ""
    fingerprint: Fingerprint | None = None

    @property
    def num_train(self) -> int:
        """Size of the whole training set (train + removed)."""
        return len(self.index_train) + len(self.index_removed)

    @property
    def num_test(self) -> int:
        return len(self.index_test)

    @property
    def subset_ratio(self) -> float:
        """Fraction of the training set in the run's subset."""
        return len(self.subsample_idx) / max(self.num_train, 1)

    def subset_mask(self) -> np.ndarray:
        """bool [num_train]: True for training examples in the run's subset."""
        mask = np.zeros(self.num_train, dtype=bool)
        mask[self.index_train] = True
        return mask

    def train_correctness(self) -> np.ndarray:
        """bool [num_train]: correctness of every training example (in or out), dataset order."""
        out = np.empty(self.num_train, dtype=bool)
        out[self.index_train] = self.correctness_train
        out[self.index_removed] = self.correctness_removed
        return out

    def test_correctness(self) -> np.ndarray:
        """bool [num_test]: correctness of every test example, dataset order."""
        out = np.empty(self.num_test, dtype=bool)
        out[self.index_test] = self.correctness_test
        return out

    def correctness(self, split: str) -> np.ndarray:
        """Correctness in dataset order of a dataset split: ``train`` (in and out) or ``test``."""
        if split == "train":
            return self.train_correctness()
        if split == "test":
            return self.test_correctness()
        raise InputError(f"split must be 'train' or 'test', got {split!r}")

    def accuracy(self, split: str) -> float:
        """Mean correctness over a split of the file: ``train``, ``removed`` or ``test``."""
        values = getattr(self, f"correctness_{split}")
        return float(np.mean(values)) if len(values) else float("nan")

    def to_dict(self) -> dict[str, np.ndarray]:
        """The arrays under their file keys (with the fingerprint's keys when it has one)."""
        arrays = {key: getattr(self, key) for key in AUX_KEYS}
        if self.fingerprint is not None:
            arrays.update(self.fingerprint.to_arrays())
        return arrays


def _as_bool(source: str, key: str, value: np.ndarray) -> np.ndarray:
    if value.dtype == bool:
        return value
    if np.isin(value, (0, 1)).all():
        return value.astype(bool)
    raise AuxArraysError(
        f"{source}: key {key!r}: expected bool (or 0/1 integers), found {value.dtype} values "
        f"other than 0 and 1"
    )


def _positions(index: np.ndarray, n: int) -> np.ndarray | None:
    """bool [n]: True at the positions `index` holds; None when one lies outside 0..n-1."""
    if len(index) and (index.min() < 0 or index.max() >= n):
        return None
    seen = np.zeros(n, dtype=bool)
    seen[index] = True
    return seen


def _check_permutation(source: str, what: str, parts: list[np.ndarray], n: int) -> None:
    """Checks that the index arrays `parts` together hold each of 0..n-1 once."""
    if sum(len(p) for p in parts) == n:  # n entries at n distinct positions: a permutation
        seen = np.zeros(n, dtype=bool)
        for p in parts:
            if len(p) and (p.min() < 0 or p.max() >= n):
                break
            seen[p] = True
        else:
            if seen.all():
                return
    index = np.concatenate(parts)
    counts = np.bincount(index[(index >= 0) & (index < n)], minlength=n) if n else np.zeros(0)
    out_of_range = int(np.sum((index < 0) | (index >= n)))
    if out_of_range or len(index) != n or (counts != 1).any():
        missing = int(np.sum(counts == 0))
        repeated = int(np.sum(counts > 1))
        raise AuxArraysError(
            f"{source}: {what} must be a permutation of 0..{n - 1}; found {len(index)} entries "
            f"with {out_of_range} out of range, {repeated} repeated and {missing} missing positions"
        )


def aux_arrays_from_dict(
    arrays: dict[str, np.ndarray],
    source: str = "",
    num_train: int | None = None,
    num_test: int | None = None,
) -> AuxArrays:
    """Validates the arrays of an `aux_arrays.npz` and returns them as `AuxArrays`.

    Checks: every key present; correctness bool (0/1 integers are accepted) and index integer,
    1-D, with equal lengths per split; ``index_train`` + ``index_removed`` a permutation of the
    training set; ``subsample_idx`` the same set as ``index_train``; ``index_test`` a permutation
    of the test set; and, when given, the expected dataset sizes.

    Raises:
      AuxArraysError: naming the file (`source`), the key, what was expected and what was found.
    """
    source = source or "aux arrays"
    sizes: dict[str, int] = {}
    get = functools.partial(require, arrays, source=source, sizes=sizes,
                            what="an aux_arrays.npz", error=AuxArraysError)

    fields = {}
    for split in SPLITS:
        index = get(f"index_{split}", "iu", (f"n_{split}",))
        correct = get(f"correctness_{split}", "biu", (f"n_{split}",))
        fields[f"index_{split}"] = index.astype(np.int64, copy=False)
        fields[f"correctness_{split}"] = _as_bool(source, f"correctness_{split}", correct)
    subsample = get("subsample_idx", "iu", (None,)).astype(np.int64, copy=False)
    n_train = len(fields["index_train"]) + len(fields["index_removed"])
    n_test = len(fields["index_test"])
    if num_train is not None and n_train != num_train:
        raise AuxArraysError(
            f"{source}: covers {n_train} training examples (train + removed) but the dataset "
            f"has {num_train}"
        )
    if num_test is not None and n_test != num_test:
        raise AuxArraysError(
            f"{source}: covers {n_test} test examples but the dataset has {num_test}"
        )
    _check_permutation(source, "index_train + index_removed",
                       [fields["index_train"], fields["index_removed"]], n_train)
    _check_permutation(source, "index_test", [fields["index_test"]], n_test)
    # The same set: as many entries, at the same positions (so no repeats), in O(n).
    subsample_positions = _positions(subsample, n_train)
    if len(subsample) != len(fields["index_train"]) or subsample_positions is None or not (
        np.array_equal(subsample_positions, _positions(fields["index_train"], n_train))
    ):
        raise AuxArraysError(
            f"{source}: subsample_idx ({len(subsample)} entries) is not the same set as "
            f"index_train ({len(fields['index_train'])} entries)"
        )
    fingerprint = read_fingerprint(arrays, source)
    return AuxArrays(subsample_idx=subsample, source=source, fingerprint=fingerprint, **fields)


def load_aux_arrays(
    path: str | os.PathLike, num_train: int | None = None, num_test: int | None = None
) -> AuxArrays:
    """Reads and validates an `aux_arrays.npz` (eagerly, ``allow_pickle=False``).

    Args:
      path: the file.
      num_train, num_test: expected dataset sizes, checked when given.

    Raises:
      NpzError: unreadable, truncated or pickled content.
      AuxArraysError: missing keys or inconsistent arrays (see `aux_arrays_from_dict`).
    """
    return aux_arrays_from_dict(load_npz(path), os.fspath(path), num_train, num_test)


#: Threads reading aux arrays by default (`iter_aux_arrays`): one per core, at most 4. They
#: overlap the reads from the disk; from the page cache, a file's checks hold the GIL about a
#: third of the time, so more threads add GIL hand-offs rather than speed.
DEFAULT_READ_WORKERS = min(4, os.cpu_count() or 1)


def iter_aux_arrays(
    runs: Iterable[Run],
    workers: int | None = None,
    num_train: int | None = None,
    num_test: int | None = None,
    same_sizes: bool = True,
    progress: Callable[[Iterable], Iterable] | None = None,
    errors: str = "raise",
) -> Iterator[tuple[Run, AuxArrays | HeldoutError]]:
    """Reads and validates the runs' `aux_arrays.npz` on a thread pool, in the runs' order.

    The one loop that reads runs' aux arrays (estimates, the report, `heldout inspect`): each
    file goes through `load_aux_arrays` on one of `workers` threads, at most ``2 * workers``
    files ahead of the consumer. Threads overlap where the GIL is released: the file reads and
    CRC-32 checks of `heldout.npzio.load_npz` and numpy's loops in the checks
    (`benchmarks/estimate.py` measures runs/s, serial against threaded).

    Args:
      runs: the runs (e.g. ``experiment.runs()``); yielded in this order.
      workers: reading threads (default `DEFAULT_READ_WORKERS`); 0 or 1 reads each file in
        the calling thread when its turn comes.
      num_train, num_test: expected dataset sizes, checked for every run when given.
      same_sizes: without `num_train`/`num_test`, every run is checked against the sizes of
        the first run read (read before the others are started).
      progress: wraps the runs as they are yielded (e.g. tqdm), so a progress bar counts runs
        handed to the consumer.
      errors: ``"raise"``: a bad file raises its error when its turn comes, after the runs
        before it were yielded; ``"yield"``: its error (a `HeldoutError` naming the file) is
        yielded in place of its `AuxArrays` and the runs after it are read.

    Yields:
      ``(run, aux)``: the run and its `AuxArrays` (or, with ``errors="yield"``, its error).

    Raises:
      NpzError / AuxArraysError / FingerprintError: with ``errors="raise"``, as
        `load_aux_arrays`, naming the file.
    """
    if errors not in ("raise", "yield"):
        raise ValueError(f"errors must be 'raise' or 'yield', got {errors!r}")
    runs = list(runs)
    workers = DEFAULT_READ_WORKERS if workers is None else max(int(workers), 1)
    sizes = (num_train, num_test)
    need_sizes = same_sizes and sizes == (None, None)

    def load(run: Run, sizes: tuple[int | None, int | None]) -> AuxArrays | HeldoutError:
        try:
            return run.load_aux(*sizes)
        except HeldoutError as e:
            if errors == "raise":
                raise
            return e

    pool = ThreadPoolExecutor(workers, thread_name_prefix="aux-arrays") if workers > 1 else None
    queue: deque = deque()  # (run, future), in order
    upcoming = iter(runs)
    try:
        for run in progress(runs) if progress else runs:
            if pool is None or need_sizes:
                aux = load(next(upcoming), sizes)
            else:
                while len(queue) < 2 * workers:
                    following = next(upcoming, None)
                    if following is None:
                        break
                    queue.append((following, pool.submit(load, following, sizes)))
                queued, future = queue.popleft()
                assert queued is run, "progress must yield the runs it is given, in order"
                aux = future.result()
            if need_sizes and isinstance(aux, AuxArrays):
                sizes, need_sizes = (aux.num_train, aux.num_test), False
            yield run, aux
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def make_aux_arrays(
    subsample_idx: np.ndarray,
    train_correct: np.ndarray,
    test_correct: np.ndarray,
    fingerprint: Fingerprint | None = None,
) -> AuxArrays:
    """Builds the aux arrays of a run from its subset and its correctness in dataset order.

    Args:
      subsample_idx: int [n_in], training-set positions the run trained on.
      train_correct: bool [n_train], correctness of every training example, dataset order.
      test_correct: bool [n_test], correctness of every test example, dataset order.
      fingerprint: the dataset's fingerprint, stored with the arrays (optional).
    """
    subsample_idx = np.asarray(subsample_idx, dtype=np.int64)
    train_correct = np.asarray(train_correct, dtype=bool)
    test_correct = np.asarray(test_correct, dtype=bool)
    mask = np.zeros(len(train_correct), dtype=bool)
    mask[subsample_idx] = True
    index_train = np.sort(subsample_idx)
    index_removed = np.flatnonzero(~mask).astype(np.int64)
    index_test = np.arange(len(test_correct), dtype=np.int64)
    return aux_arrays_from_dict(
        {
            "index_train": index_train,
            "correctness_train": train_correct[index_train],
            "index_removed": index_removed,
            "correctness_removed": train_correct[index_removed],
            "index_test": index_test,
            "correctness_test": test_correct,
            "subsample_idx": subsample_idx,
            **(fingerprint.to_arrays() if fingerprint is not None else {}),
        }
    )


def write_aux_arrays(path: str | os.PathLike, aux: AuxArrays) -> None:
    """Writes `aux` in the release format, atomically (temporary file + rename)."""
    save_npz_atomic(path, aux.to_dict())


# --------------------------------------------------------------------------------------------
# Checkpoint files (found by name only; restoring is `heldout.checkpoint`'s job).


@dataclasses.dataclass(frozen=True)
class CheckpointFiles:
    """One `ckpt-<epoch>` in a run's checkpoint directory.

    Attributes:
      prefix: the path without suffix, as `tf.train.Checkpoint.read` takes it.
      epoch: the number in the file name.
      complete: the `.index` file and every `.data-i-of-n` shard are present.
    """

    prefix: str
    epoch: int
    complete: bool


def find_checkpoints(run_dir: str | os.PathLike) -> list[CheckpointFiles]:
    """Lists the `ckpt-<epoch>` checkpoints of a run, lowest epoch first (no TensorFlow).

    A checkpoint is complete when its `.index` and all its data shards exist.
    """
    ckpt_dir = os.path.join(os.fspath(run_dir), CHECKPOINT_DIR)
    if not os.path.isdir(ckpt_dir):
        return []
    names = set(os.listdir(ckpt_dir))
    found = []
    for name in names:
        m = _CKPT_INDEX.match(name)
        if not m:
            continue
        epoch = int(m.group(1))
        shards = [_CKPT_DATA.match(n) for n in names if n.startswith(f"ckpt-{m.group(1)}.data-")]
        shards = [s for s in shards if s and s.group(1) == m.group(1)]
        totals = {int(s.group(3)) for s in shards}
        complete = len(totals) == 1 and {int(s.group(2)) for s in shards} == set(
            range(totals.pop())
        )
        found.append(CheckpointFiles(os.path.join(ckpt_dir, f"ckpt-{m.group(1)}"), epoch, complete))
    return sorted(found, key=lambda c: c.epoch)


# --------------------------------------------------------------------------------------------
# Runs and experiments.


@dataclasses.dataclass(frozen=True)
class Run:
    """One trained model of an experiment.

    Attributes:
      path: the run directory.
      ratio: the subset ratio's directory name, e.g. ``"0.7"``.
      run_id: the run's integer id.
    """

    path: str
    ratio: str
    run_id: int

    @property
    def subset_ratio(self) -> float:
        return float(self.ratio)

    @property
    def aux_path(self) -> str:
        return os.path.join(self.path, AUX_ARRAYS)

    @property
    def name(self) -> str:
        """``<ratio>/<run_id>``, the run's name inside its experiment."""
        return f"{self.ratio}/{self.run_id}"

    def has_aux_arrays(self) -> bool:
        return os.path.isfile(self.aux_path)

    def checkpoints(self) -> list[CheckpointFiles]:
        return find_checkpoints(self.path)

    def has_checkpoint(self) -> bool:
        return any(c.complete for c in self.checkpoints())

    def load_aux(self, num_train: int | None = None, num_test: int | None = None) -> AuxArrays:
        """Reads and validates this run's `aux_arrays.npz` (see `load_aux_arrays`)."""
        return load_aux_arrays(self.aux_path, num_train, num_test)


def run_from_path(path: str | os.PathLike) -> Run:
    """The `Run` of a run directory ``.../<ratio>/<run_id>``.

    Raises:
      LayoutError: the directory does not exist or its name or parent's is not a run id / ratio.
    """
    path = os.path.abspath(os.fspath(path))
    if not os.path.isdir(path):
        raise LayoutError(f"{path}: not a directory")
    run_name, ratio = os.path.basename(path), os.path.basename(os.path.dirname(path))
    if not _is_run_id(run_name) or parse_ratio_name(ratio) is None:
        raise LayoutError(
            f"{path}: a run directory is <experiment>/<subset_ratio>/<run_id> with a ratio like "
            f"0.7 and an integer run id; found ratio {ratio!r}, run id {run_name!r}"
        )
    return Run(path, ratio, int(run_name))


def is_run_dir(path: str | os.PathLike) -> bool:
    """True when `path` looks like a run directory (holds aux arrays or checkpoints)."""
    path = os.fspath(path)
    return os.path.isfile(os.path.join(path, AUX_ARRAYS)) or os.path.isdir(
        os.path.join(path, CHECKPOINT_DIR)
    )


# The one grammar of subset-ratio directory names: a decimal number, no sign or exponent.
_RATIO_NAME = re.compile(r"[0-9]+\.?[0-9]*|\.[0-9]+")


def parse_ratio_name(name: str) -> float | None:
    """The subset ratio of a directory name such as ``0.7`` (digits and at most one point, a
    value in (0, 1]), or None for any other name. Used for directories and archive members."""
    if not _RATIO_NAME.fullmatch(name):
        return None
    value = float(name)
    return value if 0.0 < value <= 1.0 else None


def parse_ratio(value: str | float) -> float:
    """A subset ratio given by a user (``"0.7"``, ``0.7``) as a float in (0, 1].

    Raises:
      InputError: not a number, or not in (0, 1].
    """
    try:
        ratio = float(value)
    except (TypeError, ValueError):
        raise InputError(f"a subset ratio is a number in (0, 1]; got {value!r}") from None
    if not 0.0 < ratio <= 1.0:  # also refuses NaN
        raise InputError(f"a subset ratio is a number in (0, 1]; got {value!r}")
    return ratio


def ratio_dir_name(value: str | float) -> str:
    """The directory name of a subset ratio, e.g. ``0.7`` (``repr`` of the float, as the release
    names them). Raises InputError as `parse_ratio`."""
    return repr(parse_ratio(value))


def _is_run_id(name: str) -> bool:
    return name.isdigit()


def _entry_order(name: str) -> tuple:
    """Sort key for directory entries: run ids (and ratios) by value, then other names."""
    if _is_run_id(name):
        return (0, int(name), name)
    ratio = parse_ratio_name(name)
    return (1, ratio, name) if ratio is not None else (2, 0.0, name)


def is_ratio_dir(path: str | os.PathLike) -> bool:
    """True when `path` is a subset-ratio directory of an experiment: its name is a ratio
    (``0.7``) and it holds at least one run directory (``<run_id>/`` with aux arrays or
    checkpoints)."""
    path = os.fspath(path)
    if parse_ratio_name(os.path.basename(os.path.abspath(path))) is None or not os.path.isdir(path):
        return False
    return any(_is_run_id(name) and is_run_dir(os.path.join(path, name))
               for name in os.listdir(path))


def enclosing_layout_dir(path: str | os.PathLike) -> tuple[str, str] | None:
    """The innermost run or subset-ratio directory that is `path` or contains it.

    A directory named like a ratio inside an experiment counts as a ratio directory even
    before it exists.

    Returns:
      ``("run", directory)`` or ``("ratio", directory)``, or None when `path` lies in neither
      (e.g. an experiment directory, or a fresh directory elsewhere). Nothing is created.
    """
    current = os.path.abspath(os.fspath(path))
    while True:
        parent = os.path.dirname(current)
        if os.path.isdir(current):
            if is_run_dir(current) and _is_run_id(os.path.basename(current)):
                return "run", current
            if is_ratio_dir(current):
                return "ratio", current
        if parse_ratio_name(os.path.basename(current)) is not None and _is_experiment_dir(parent):
            return "ratio", current  # a new ratio of an existing experiment
        if parent == current:
            return None
        current = parent


def _is_experiment_dir(path: str) -> bool:
    """True when `path` holds at least one subset-ratio directory with runs."""
    return os.path.isdir(path) and any(
        is_ratio_dir(os.path.join(path, name)) for name in os.listdir(path)
    )


def _refuse_run_or_ratio_dir(root: str) -> None:
    """An experiment opened at one of its run or ratio directories: say which to give."""
    if _is_experiment_dir(root):
        return  # an experiment (a ratio may be named 1, like a run id)
    if is_run_dir(root):
        raise LayoutError(
            f"{root} is a run directory; give its experiment directory "
            f"{os.path.dirname(os.path.dirname(root))}"
        )
    if is_ratio_dir(root):
        raise LayoutError(
            f"{root} is a subset-ratio directory; give its experiment directory "
            f"{os.path.dirname(root)}"
        )


@dataclasses.dataclass(frozen=True)
class Skipped:
    """An entry of an experiment directory that is not a complete run, and why."""

    path: str
    reason: str


@dataclasses.dataclass(frozen=True, repr=False)
class Experiment:
    """The complete runs of an experiment directory, by subset ratio.

    Attributes:
      root: the experiment directory.
      runs_by_ratio: ratio directory name -> complete runs sorted by run id; ratios sorted by
        value.
      skipped: stray or incomplete entries that were not counted, with the reason.
    """

    root: str
    runs_by_ratio: dict[str, tuple[Run, ...]]
    skipped: tuple[Skipped, ...] = ()

    @property
    def ratios(self) -> list[str]:
        return list(self.runs_by_ratio)

    def runs(self, ratio: str | float | None = None) -> list[Run]:
        """All complete runs, or those of one ratio (given as its name or its value)."""
        if ratio is None:
            return [run for runs in self.runs_by_ratio.values() for run in runs]
        return list(self.runs_by_ratio[self.ratio_name(ratio)])

    def ratio_name(self, ratio: str | float) -> str:
        """The directory name of a ratio given as a name (``"0.7"``) or a value (``0.7``).

        Raises:
          NotFoundError (a KeyError): the experiment has no such ratio (the message lists
            those it has).
        """
        try:
            value = float(ratio)
        except ValueError:
            value = None
        for name in self.runs_by_ratio:
            if name == str(ratio) or float(name) == value:
                return name
        raise NotFoundError(f"{self.root}: no subset ratio {ratio!r}; it has {self.ratios}")

    def __iter__(self) -> Iterator[Run]:
        return iter(self.runs())

    def __len__(self) -> int:
        return sum(len(r) for r in self.runs_by_ratio.values())

    def __repr__(self) -> str:
        counts = ", ".join(f"{ratio}: {len(runs)}" for ratio, runs in self.runs_by_ratio.items())
        return (f"Experiment({self.root!r}, {len(self)} runs by ratio {{{counts}}}, "
                f"{len(self.skipped)} skipped)")


def open_experiment(
    root: str | os.PathLike, require_checkpoint: bool = False, strict: bool = False
) -> Experiment:
    """Scans an experiment directory for complete runs.

    A complete run is ``<root>/<ratio>/<run_id>/`` with an `aux_arrays.npz` and, when
    `require_checkpoint`, a complete checkpoint. Anything else (files, `0.5.partial` directories,
    hidden temporary run directories, runs missing a part) is reported in `skipped` and, unless
    `strict`, a warning.

    Raises:
      LayoutError: `root` is not a directory, or is a run or subset-ratio directory (the
        message names the experiment directory to give); or, when `strict`, any entry is
        skipped.
    """
    root = os.path.abspath(os.fspath(root))
    if not os.path.isdir(root):
        raise LayoutError(f"{root}: experiment directory not found")
    _refuse_run_or_ratio_dir(root)
    runs: dict[str, list[Run]] = {}
    skipped: list[Skipped] = []
    for ratio in sorted(os.listdir(root), key=_entry_order):
        ratio_path = os.path.join(root, ratio)
        if parse_ratio_name(ratio) is None or not os.path.isdir(ratio_path):
            skipped.append(Skipped(ratio_path, "not a subset-ratio directory"))
            continue
        for name in sorted(os.listdir(ratio_path), key=_entry_order):
            path = os.path.join(ratio_path, name)
            if not _is_run_id(name) or not os.path.isdir(path):
                reason = (
                    "unfinished run (temporary directory)"
                    if name.startswith(".")
                    else "not a run directory"
                )
                skipped.append(Skipped(path, reason))
                continue
            run = Run(path, ratio, int(name))
            if not run.has_aux_arrays():
                skipped.append(Skipped(path, f"no {AUX_ARRAYS}"))
            elif require_checkpoint and not run.has_checkpoint():
                skipped.append(Skipped(path, "no complete checkpoint"))
            else:
                runs.setdefault(ratio, []).append(run)
    if skipped:
        lines = "\n".join(f"  {s.path}: {s.reason}" for s in skipped)
        if strict:
            raise LayoutError(f"{root}: {len(skipped)} entries are not complete runs:\n{lines}")
        warnings.warn(f"{root}: skipped {len(skipped)} entries:\n{lines}", stacklevel=2)
    ordered = {
        ratio: tuple(sorted(runs[ratio], key=lambda r: r.run_id))
        for ratio in sorted(runs, key=float)
    }
    return Experiment(root, ordered, tuple(skipped))
