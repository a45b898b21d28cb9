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

`select_runs` is the one way a path (an experiment or one run directory) becomes the runs a
caller uses: by subset ratio and run id (`parse_run_ids`, ranges kept as ranges), with the files
the caller's backend restores (`ModelRequirement`), returning what it skipped instead of
printing or warning.

Runs written by `heldout.train` have two more files (released runs have neither):
``run.json`` (seed, configuration, accuracies and the input preprocessing: `load_run_info`,
`Run.input_preprocessing`) and ``outputs.npz``, the run's prediction, margin and logit
confidence on every train and test example at the end of training (`RecordedOutputs`,
`Run.load_outputs`), so a run without a checkpoint still has its per-example outputs, with what
they were computed on (`RecordedInputs`: a digest of each split's images and the input
preprocessing).
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import json
import os
import re
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from heldout.data.fingerprint import Fingerprint, read_fingerprint
from heldout.data.preprocessing import InputPreprocessing
from heldout.errors import (
    HeldoutError,
    InputError,
    LayoutError,
    NoRunsError,
    NotFoundError,
    NpzError,
)
from heldout.npzio import load_npz, require, save_npz_atomic

AUX_ARRAYS = "aux_arrays.npz"
CHECKPOINT_DIR = "checkpoints"
SPLITS = ("train", "removed", "test")
AUX_KEYS = tuple(f"{kind}_{split}" for split in SPLITS for kind in ("correctness", "index")) + (
    "subsample_idx",
)

_CKPT_INDEX = re.compile(r"^ckpt-(\d+)\.index$")
_CKPT_DATA = re.compile(r"^ckpt-(\d+)\.data-(\d+)-of-(\d+)$")


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
    raise NpzError(
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
        raise NpzError(
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
      NpzError: naming the file (`source`), the key, what was expected and what was found.
    """
    source = source or "aux arrays"
    sizes: dict[str, int] = {}
    get = functools.partial(require, arrays, source=source, sizes=sizes,
                            what="an aux_arrays.npz")

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
        raise NpzError(
            f"{source}: covers {n_train} training examples (train + removed) but the dataset "
            f"has {num_train}"
        )
    if num_test is not None and n_test != num_test:
        raise NpzError(
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
        raise NpzError(
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
      NpzError: missing keys or inconsistent arrays (see `aux_arrays_from_dict`).
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
      NpzError / FingerprintError: with ``errors="raise"``, as
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
# What `heldout.train` writes beside the aux arrays (released runs have neither): `run.json`
# and the outputs recorded at the end of training (`outputs.npz`).

RUN_JSON = "run.json"
OUTPUTS = "outputs.npz"
OUTPUTS_FORMAT = "heldout.experiment.RecordedOutputs/2"
#: The recorded outputs, each on both splits (keys ``<output>_<split>``), with the dtype kind a
#: file may hold and the dtype they are read as.
RECORDED_OUTPUTS = {"prediction": ("iu", np.int32), "margin": ("f", np.float32),
                    "logit_confidence": ("f", np.float32)}
OUTPUT_SPLITS = ("train", "test")
#: The keys of `RecordedInputs`: what the outputs were computed on.
INPUT_KEYS = tuple(f"images_digest_{split}" for split in OUTPUT_SPLITS) + ("input_preprocessing",)
_DIGEST = re.compile(r"\w+ \[[0-9, ]*\] sha256:[0-9a-f]{64}")


@dataclasses.dataclass(frozen=True)
class RecordedInputs:
    """What a run's recorded outputs were computed on: each split's stored images and how they
    became model input. The dataset fingerprint of the aux arrays is the labels only; these
    tell another evaluation set with the same labels (shifted or inverted images, the same
    images at another scale) from the run's own.

    Attributes:
      images_train, images_test: `heldout.data.fingerprint.images_digest` of the split's
        images (e.g. ``uint8 [500, 8, 8, 1] sha256:<64 hex digits>``); '' when the dataset
        could not give one (then nothing can be shown to be those images).
      preprocessing: the dataset's `heldout.data.preprocessing.InputPreprocessing`, as in the
        run's run.json.
    """

    images_train: str
    images_test: str
    preprocessing: InputPreprocessing

    def images(self, split: str) -> str:
        """The digest of a split's images (``train`` or ``test``; '' when unknown)."""
        if split not in OUTPUT_SPLITS:
            raise InputError(f"recorded inputs cover {list(OUTPUT_SPLITS)}; asked {split!r}")
        return getattr(self, f"images_{split}")

    def to_dict(self) -> dict[str, np.ndarray]:
        """The file's keys `INPUT_KEYS`: ``images_digest_<split>`` (str) and
        ``input_preprocessing`` (str, the JSON of `InputPreprocessing.to_dict`)."""
        arrays = {f"images_digest_{split}": np.array(self.images(split))
                  for split in OUTPUT_SPLITS}
        arrays["input_preprocessing"] = np.array(
            json.dumps(self.preprocessing.to_dict(), sort_keys=True))
        return arrays


def recorded_inputs_from_dict(arrays: dict[str, np.ndarray], source: str = "") -> RecordedInputs:
    """Validates the `INPUT_KEYS` of an ``outputs.npz`` and returns them as `RecordedInputs`.

    Raises:
      NpzError: a missing key (a file of an earlier format), a digest of another form, or
        a preprocessing that cannot be read (naming the file and the key).
    """
    source = source or "recorded outputs"
    get = functools.partial(require, arrays, source=source, what="an outputs.npz")
    images = {}
    for split in OUTPUT_SPLITS:
        key = f"images_digest_{split}"
        images[split] = str(get(key, "U", ()))
        if images[split] and not _DIGEST.fullmatch(images[split]):
            raise NpzError(f"{source}: key {key!r}: expected '' or a digest like 'uint8 "
                               f"[n, H, W, C] sha256:<64 hex digits>', found {images[split]!r}")
    text = str(get("input_preprocessing", "U", ()))
    try:
        preprocessing = InputPreprocessing.from_dict(
            json.loads(text), f"{source}: key 'input_preprocessing'")
    except ValueError as e:  # bad JSON, or a PreprocessingError
        raise NpzError(str(e) if isinstance(e, HeldoutError) else
                           f"{source}: key 'input_preprocessing': not JSON ({e})") from e
    return RecordedInputs(images["train"], images["test"], preprocessing)


def load_recorded_inputs(path: str | os.PathLike) -> RecordedInputs:
    """Reads only what an ``outputs.npz`` was computed on (its `format` and `INPUT_KEYS`, not
    its outputs), e.g. to decide which runs' recorded outputs can fill a store.

    Raises:
      NpzError: unreadable, truncated or pickled content.
      NpzError: another format, or see `recorded_inputs_from_dict`.
    """
    path = os.fspath(path)
    arrays = load_npz(path, ("format",) + INPUT_KEYS)
    _check_format(arrays, path)
    return recorded_inputs_from_dict(arrays, path)


def _check_format(arrays: dict[str, np.ndarray], source: str) -> None:
    found = str(require(arrays, "format", "U", (), source=source, what="an outputs.npz"))
    if found != OUTPUTS_FORMAT:
        earlier = (f" (an earlier format, without what the outputs were computed on: "
                   f"{', '.join(INPUT_KEYS)})" if found == "heldout.experiment.RecordedOutputs/1"
                   else "")
        raise NpzError(f"{source}: key 'format': expected {OUTPUTS_FORMAT!r}, found "
                           f"{found!r}{earlier}")


def load_run_info(run: Run | str | os.PathLike) -> dict:
    """The ``run.json`` of a run (a `Run` or its directory) written by `heldout.train` (seed,
    configuration, accuracies, ``input_preprocessing``: how its images became model input).

    Raises:
      FileNotFoundError: the run has no run.json (e.g. a released run).
      LayoutError: a run.json that is not a JSON object (naming the file).
    """
    path = os.path.join(run.path if isinstance(run, Run) else os.fspath(run), RUN_JSON)
    with open(path, encoding="utf-8") as f:
        try:
            info = json.load(f)
        except ValueError as e:
            raise LayoutError(f"{path}: unreadable run.json ({e})") from e
    if not isinstance(info, dict):
        raise LayoutError(f"{path}: expected a JSON object, found {type(info).__name__}")
    return info


@dataclasses.dataclass(frozen=True)
class RecordedOutputs:
    """A run's outputs at the end of training on every example of the splits it was trained and
    tested on, in dataset order (``outputs.npz``, written by `heldout.train` beside the aux
    arrays, so a run without a checkpoint still fills a predictions store).

    The definitions are the predictions store's (`heldout.predict.store`): ``prediction`` is the
    argmax of the logits, ``margin`` the logit of the label minus the largest other logit,
    ``logit_confidence`` ``log p_y - log(sum_{y' != y} p_y')`` of a float64 softmax; computed
    by `heldout.predict.store.run_outputs` from the logits of the evaluation the aux arrays'
    correctness comes from (``is_training=False``).

    Attributes:
      prediction_train, margin_train, logit_confidence_train: int32 / float32 / float32
        [n_train], every training example (in the run's subset and held out).
      prediction_test, margin_test, logit_confidence_test: the same, [n_test].
      epoch, global_step: the training counters they were recorded at (those of the run's
        final checkpoint, when it has one).
      inputs: what they were computed on (`RecordedInputs`: the images' digests and the input
        preprocessing).
      source: the file they came from ('' when built in memory).
    """

    prediction_train: np.ndarray
    margin_train: np.ndarray
    logit_confidence_train: np.ndarray
    prediction_test: np.ndarray
    margin_test: np.ndarray
    logit_confidence_test: np.ndarray
    epoch: int
    global_step: int
    inputs: RecordedInputs
    source: str = ""

    @property
    def num_train(self) -> int:
        return len(self.prediction_train)

    @property
    def num_test(self) -> int:
        return len(self.prediction_test)

    def output(self, name: str, split: str) -> np.ndarray:
        """One output (``prediction``, ``margin``, ``logit_confidence``) of one split
        (``train``, ``test``), in dataset order.

        Raises:
          InputError: another output or split.
        """
        if name not in RECORDED_OUTPUTS or split not in OUTPUT_SPLITS:
            raise InputError(f"recorded outputs are {list(RECORDED_OUTPUTS)} on splits "
                             f"{list(OUTPUT_SPLITS)}; asked {name!r} on {split!r}")
        return getattr(self, f"{name}_{split}")

    def to_dict(self) -> dict[str, np.ndarray]:
        """The file's arrays: ``<output>_<split>``, ``format``, ``epoch``, ``global_step`` and
        the `RecordedInputs` keys (`INPUT_KEYS`)."""
        arrays = {f"{name}_{split}": self.output(name, split)
                  for name in RECORDED_OUTPUTS for split in OUTPUT_SPLITS}
        arrays.update(format=np.array(OUTPUTS_FORMAT), epoch=np.int64(self.epoch),
                      global_step=np.int64(self.global_step), **self.inputs.to_dict())
        return arrays


def recorded_outputs_from_dict(
    arrays: dict[str, np.ndarray],
    source: str = "",
    num_train: int | None = None,
    num_test: int | None = None,
) -> RecordedOutputs:
    """Validates the arrays of an ``outputs.npz`` and returns them as `RecordedOutputs`.

    Checks: ``format`` is `OUTPUTS_FORMAT`; every ``<output>_<split>`` present, 1-D, of its
    dtype kind (`RECORDED_OUTPUTS`) and of one length per split (`num_train` / `num_test` when
    given, e.g. the run's aux arrays' sizes); predictions >= 0; margins and confidences finite;
    ``epoch`` and ``global_step`` integer scalars; the `RecordedInputs` keys
    (`recorded_inputs_from_dict`).

    Raises:
      NpzError: naming the file (`source`), the key, what was expected and what was found.
    """
    source = source or "recorded outputs"
    sizes = {k: v for k, v in (("n_train", num_train), ("n_test", num_test)) if v is not None}
    get = functools.partial(require, arrays, source=source, sizes=sizes,
                            what="an outputs.npz")
    _check_format(arrays, source)
    fields: dict[str, np.ndarray] = {}
    for name, (kind, dtype) in RECORDED_OUTPUTS.items():
        for split in OUTPUT_SPLITS:
            key = f"{name}_{split}"
            value = get(key, kind, (f"n_{split}",)).astype(dtype, copy=False)
            bad = value < 0 if name == "prediction" else ~np.isfinite(value)
            if bad.any():
                what = "negative" if name == "prediction" else "non-finite"
                raise NpzError(f"{source}: key {key!r}: {int(bad.sum())} {what} values "
                                   f"(first at position {int(np.flatnonzero(bad)[0])})")
            fields[key] = value
    counters = {name: int(get(name, "iu", ())) for name in ("epoch", "global_step")}
    return RecordedOutputs(**fields, **counters, inputs=recorded_inputs_from_dict(arrays, source),
                           source=source)


def load_outputs(
    path: str | os.PathLike, num_train: int | None = None, num_test: int | None = None
) -> RecordedOutputs:
    """Reads and validates an ``outputs.npz`` (eagerly, ``allow_pickle=False``).

    Raises:
      NpzError: unreadable, truncated or pickled content.
      NpzError: see `recorded_outputs_from_dict`.
    """
    return recorded_outputs_from_dict(load_npz(path), os.fspath(path), num_train, num_test)


def write_outputs(path: str | os.PathLike, outputs: RecordedOutputs) -> None:
    """Writes `outputs` as ``outputs.npz``, atomically (temporary file + rename)."""
    save_npz_atomic(path, outputs.to_dict())


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

    @property
    def outputs_path(self) -> str:
        return os.path.join(self.path, OUTPUTS)

    def has_outputs(self) -> bool:
        """True when the run recorded its outputs at the end of training (``outputs.npz``:
        runs trained by `heldout.train`; released runs have none)."""
        return os.path.isfile(self.outputs_path)

    def load_outputs(
        self, num_train: int | None = None, num_test: int | None = None
    ) -> RecordedOutputs:
        """Reads and validates this run's ``outputs.npz`` (see `load_outputs`).

        Raises:
          NpzError: no such file (a released run, or one trained before outputs were
            recorded), or an unreadable one. NpzError: malformed or of other sizes.
        """
        return load_outputs(self.outputs_path, num_train, num_test)

    def load_info(self) -> dict:
        """This run's ``run.json`` (see `load_run_info`; FileNotFoundError without one)."""
        return load_run_info(self.path)

    def input_preprocessing(self) -> InputPreprocessing | None:
        """How the run's images became model input, from its run.json; None when it has no
        run.json (a released run: see `heldout.data.preprocessing.RELEASED`) or one written
        before this was recorded.

        Raises:
          LayoutError: an unreadable run.json. PreprocessingError: a malformed record.
        """
        try:
            info = self.load_info()
        except FileNotFoundError:
            return None
        if info.get("input_preprocessing") is None:
            return None
        return InputPreprocessing.from_dict(info["input_preprocessing"],
                                            f"{os.path.join(self.path, RUN_JSON)}: "
                                            "input_preprocessing")


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
    """What `open_experiment` or `select_runs` left out, and why: an entry of an experiment
    directory that is not a complete run (a stray file, a temporary or incomplete run
    directory), or a run that lacks what the caller needs (`lacking`, e.g. a run without a
    checkpoint: a run all the same, whose aux arrays every estimator uses).

    Attributes:
      path: the entry.
      reason: why, e.g. ``no aux_arrays.npz`` or ``no complete checkpoint``.
      lacking: for a run, the `ModelRequirement` it lacks; None for an entry that is not a run.
    """

    path: str
    reason: str
    lacking: ModelRequirement | None = None


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
    hidden temporary run directories, runs missing a part) is returned in `skipped`, never
    warned about or printed (`select_runs` selects runs from it; the CLI reports what was
    skipped).

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
                skipped.append(Skipped(path, CHECKPOINT.missing, CHECKPOINT))
            else:
                runs.setdefault(ratio, []).append(run)
    if skipped and strict:
        lines = "\n".join(f"  {s.path}: {s.reason}" for s in skipped)
        raise LayoutError(f"{root}: {len(skipped)} entries are not complete runs:\n{lines}")
    ordered = {
        ratio: tuple(sorted(runs[ratio], key=lambda r: r.run_id))
        for ratio in sorted(runs, key=float)
    }
    return Experiment(root, ordered, tuple(skipped))


# --------------------------------------------------------------------------------------------
# Selecting runs: the one way a path (an experiment or one run) becomes runs.

#: A run id has at most this many digits, so that every count of ids fits an int64.
MAX_RUN_ID_DIGITS = 18
_RUN_IDS_PART = re.compile(r"(\d+)(?:-(\d+))?")
_RUN_IDS_EXAMPLE = "expected e.g. 0-499 or 0-9,20,30-39"


@dataclasses.dataclass(frozen=True)
class RunIds:
    """A set of run ids kept as ranges, never materialised (``0-9999999999`` is one pair).

    Membership (a binary search over the ranges), `len` and ordered iteration are computed from
    the ranges. Build with `parse_run_ids` or `RunIds.first_n`.

    Attributes:
      ranges: inclusive ``(first, last)`` pairs, sorted, disjoint and not adjacent (given
        ranges are merged on construction).

    Raises:
      InputError: on construction, a negative id or a range that runs backwards.
    """

    ranges: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        merged: list[tuple[int, int]] = []
        for lo, hi in sorted((int(a), int(b)) for a, b in self.ranges):
            if lo < 0 or hi < lo:
                raise InputError(f"run id range {lo}-{hi}: ids are >= 0 and ranges run upwards")
            if merged and lo <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
            else:
                merged.append((lo, hi))
        object.__setattr__(self, "ranges", tuple(merged))

    @classmethod
    def first_n(cls, count: int) -> RunIds:
        """Run ids 0 .. count - 1."""
        return cls(((0, int(count) - 1),) if count > 0 else ())

    def __contains__(self, run_id: object) -> bool:
        if isinstance(run_id, bool) or not isinstance(run_id, (int, np.integer)):
            return False
        i = bisect.bisect_right(self.ranges, int(run_id), key=lambda r: r[0]) - 1
        return i >= 0 and int(run_id) <= self.ranges[i][1]

    def __len__(self) -> int:
        return sum(hi - lo + 1 for lo, hi in self.ranges)

    def __iter__(self) -> Iterator[int]:
        for lo, hi in self.ranges:
            yield from range(lo, hi + 1)

    def __str__(self) -> str:
        """``0-99,120``: the ranges in the syntax `parse_run_ids` reads."""
        return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in self.ranges)

    def describe(self) -> str:
        """``0-99,120 (101 ids)``."""
        return f"{self} ({len(self)} ids)"


def parse_run_ids(text: str, what: str = "run ids") -> RunIds:
    """Run ids from ``0-499``, ``3`` or ``0-9,20,30-39`` (ranges inclusive, spaces ignored), kept
    as ranges: ``0-9999999999`` costs two integers, not ten billion. `what` names them in
    errors (e.g. ``test positions`` for other non-negative integer lists).

    Raises:
      InputError: in one line, e.g. ``bad run ids '5-3': range 5-3 runs backwards; expected
        e.g. 0-499 or 0-9,20,30-39``: an empty list, an item that is neither an id nor a range,
        an id of more than `MAX_RUN_ID_DIGITS` digits or a range that runs backwards.
    """
    item = "a run id" if what == "run ids" else "an integer"
    text = str(text)
    if not text.strip():
        raise InputError(f"bad {what} {text!r}: no {item[2:]}; {_RUN_IDS_EXAMPLE}")
    pairs = []
    for part in text.replace(" ", "").split(","):
        m = _RUN_IDS_PART.fullmatch(part)
        if not m:
            raise InputError(f"bad {what} {text!r}: {part!r} is not {item} or range; "
                             f"{_RUN_IDS_EXAMPLE}")
        if max(len(g) for g in m.groups() if g) > MAX_RUN_ID_DIGITS:
            raise InputError(f"bad {what} {text!r}: {part!r} has more than "
                             f"{MAX_RUN_ID_DIGITS} digits")
        lo, hi = int(m[1]), int(m[2] or m[1])
        if hi < lo:
            raise InputError(f"bad {what} {text!r}: range {part} runs backwards; "
                             f"{_RUN_IDS_EXAMPLE}")
        pairs.append((lo, hi))
    return RunIds(tuple(pairs))


@dataclasses.dataclass(frozen=True)
class ModelRequirement:
    """What a run must hold besides its aux arrays for the caller to use it: the files a
    backend restores (`CHECKPOINT`; `heldout.evaluate.model_requirement` per backend), or the
    outputs it recorded (`RECORDED`).

    Attributes:
      what: names it in messages, e.g. ``a complete checkpoint``.
      present: ``present(run)`` is True when the run holds it (checked by file names only).
    """

    what: str
    present: Callable[[Run], bool]

    @property
    def missing(self) -> str:
        """The reason a run without it is skipped, e.g. ``no complete checkpoint``."""
        return "no " + re.sub(r"^an? ", "", self.what)


#: A complete ``checkpoints/ckpt-<epoch>`` (what the TensorFlow backend restores).
CHECKPOINT = ModelRequirement("a complete checkpoint", Run.has_checkpoint)
#: Outputs recorded at the end of training (``outputs.npz``), from which `heldout predict
#: --source recorded` fills a store without a model.
RECORDED = ModelRequirement(f"recorded outputs ({OUTPUTS})", Run.has_outputs)


def select_runs(
    path: str | os.PathLike,
    ratios: Iterable[str | float] | None = None,
    run_ids: RunIds | Collection[int] | str | None = None,
    requirement: ModelRequirement | None = None,
    *,
    allow_run_dir: bool = True,
) -> Experiment:
    """The runs of an experiment directory, or the one run `path` is, that the caller can use.

    The one way a path becomes runs (every command and demo.py go through it). Nothing is
    warned about or printed: what was left out is returned in `Experiment.skipped`, in this
    order: the entries that are not complete runs (see `open_experiment`), then the selected
    runs that lack `requirement` (e.g. runs without a checkpoint: the release and ``heldout
    train --checkpoint_every`` keep checkpoints for some runs only).

    Args:
      path: an experiment directory, or (when `allow_run_dir`) one run directory.
      ratios: subset ratios to keep (names such as ``"0.7"`` or values), None for all.
      run_ids: run ids to keep (`RunIds`, a text for `parse_run_ids`, or any collection of
        ints), None for all.
      requirement: what a run must hold besides its aux arrays, e.g. `CHECKPOINT`.
      allow_run_dir: accept a run directory (its experiment is the directory two levels up).

    Returns:
      An `Experiment` of the selected runs (by ratio, then run id), its root and what was
      skipped.

    Raises:
      LayoutError: `path` is not a directory, a subset-ratio directory, or (unless
        `allow_run_dir`) a run directory; the message names the directory to give.
      NoRunsError: no complete run; none matching `ratios` and `run_ids` (naming the ratios
        there are); or none of those holding `requirement`.
      InputError: a ratio outside (0, 1] or malformed run ids.
    """
    path = os.path.abspath(os.fspath(path))
    if allow_run_dir and not os.path.isdir(path):  # else open_experiment says so
        raise LayoutError(f"{path}: no such directory (an experiment or a run directory)")
    if isinstance(run_ids, str):
        run_ids = parse_run_ids(run_ids)
    wanted = None if ratios is None else sorted({parse_ratio(r) for r in ratios}) or None
    if allow_run_dir and is_run_dir(path) and not _is_experiment_dir(path):
        run = run_from_path(path)
        root = os.path.dirname(os.path.dirname(run.path))
        if not run.has_aux_arrays():
            raise NoRunsError(f"{path}: not a complete run: no {AUX_ARRAYS}")
        found, skipped = [run], []
    else:
        experiment = open_experiment(path)
        root, found, skipped = experiment.root, experiment.runs(), list(experiment.skipped)
        if not found:
            raise NoRunsError(f"{path}: no complete runs (<ratio>/<run_id>/{AUX_ARRAYS})")
    runs = [r for r in found if (wanted is None or r.subset_ratio in wanted)
            and (run_ids is None or r.run_id in run_ids)]
    if not runs:
        available = list(dict.fromkeys(r.ratio for r in found))
        raise NoRunsError(f"{path}: no runs match (ratios {wanted or 'all'}, run ids "
                          f"{_describe_ids(run_ids)}); it has ratios {available}")
    if requirement is not None:
        has = [requirement.present(r) for r in runs]
        lacking = [r for r, ok in zip(runs, has, strict=True) if not ok]
        if len(lacking) == len(runs):
            raise NoRunsError(f"{path}: no runs with {requirement.what} among the {len(runs)} "
                              "selected", lacking)
        skipped += [Skipped(r.path, requirement.missing, requirement) for r in lacking]
        runs = [r for r, ok in zip(runs, has, strict=True) if ok]
    by_ratio: dict[str, list[Run]] = {}
    for run in runs:
        by_ratio.setdefault(run.ratio, []).append(run)
    return Experiment(root, {k: tuple(v) for k, v in by_ratio.items()}, tuple(skipped))


def _describe_ids(run_ids: RunIds | Collection[int] | None) -> str:
    if run_ids is None:
        return "all"
    if isinstance(run_ids, range) and run_ids.step == 1:
        run_ids = RunIds(((run_ids.start, run_ids.stop - 1),) if len(run_ids) else ())
    elif not isinstance(run_ids, RunIds):
        run_ids = RunIds(tuple((int(i), int(i)) for i in run_ids))
    return run_ids.describe()
