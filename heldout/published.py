"""The score files the authors published, and ours in the same formats (pure numpy, except
`load_published_scores`, which reads TFDS).

Formats (files from the papers' project pages, pluskid.github.io/influence-memorization and
pluskid.github.io/structural-regularity; examples in ``../shared/published/``):

- C-scores, ``.npz``: ``scores`` float64 [n], one per training example, and ``labels`` int64
  [n] (e.g. ``cifar10-cscores-orig-order.npz``, in the original CIFAR order). MNIST's
  ``mnist-cscores.npy`` is the bare float64 [n] array of scores. Our `heldout cscores` files use
  the same two keys and add ``scores_stderr``, ``scores_by_ratio`` [n_ratios, n], ``ratios``,
  ``num_runs_by_ratio`` and friends, so the authors' readers load them too.
- High-influence pairs, ``.npz``: ``tr_idx`` int64 [p], ``tt_idx`` int64 [p], ``infl`` float64
  [p], ``mem`` float64 [p] (e.g. ``cifar100_high_infl_pairs_infl0.15_mem0.25.npz``): the
  (train, test) pairs whose influence and the training example's memorization pass the
  thresholds in the file name; not necessarily sorted.

The same validation applies to the published files and to what our writers produce; a writer
validates before it writes, so it never leaves a file its reader would refuse. There is one
C-score reader, `read_cscores`; `read_scores_in_tfds_order` and `load_published_scores` go
through it and then reorder the scores into TFDS order, checked by label
(`heldout.data.order.checked_tfds_order`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Mapping, Sequence

import numpy as np

from heldout.data.fingerprint import check_labels, read_fingerprint
from heldout.data.order import checked_tfds_order
from heldout.errors import NpzError
from heldout.estimate import CScores, HighInfluencePairs
from heldout.npzio import load_npz, require, save_npz_atomic

CSCORE_KEYS = ("labels", "scores")
CSCORE_EXTRA_KEYS = (
    "scores_stderr",
    "scores_by_ratio",
    "scores_stderr_by_ratio",
    "count_out_by_ratio",
    "ratios",
    "num_runs_by_ratio",
    "test_scores",
    "test_scores_by_ratio",
)
PAIR_KEYS = ("tr_idx", "tt_idx", "infl", "mem")


@dataclasses.dataclass(frozen=True)
class CScoreFile:
    """A C-score file.

    Attributes:
      scores: float64 [n], C-scores in [0, 1] (NaN where undefined, in files we write).
      labels: int64 [n] or None (MNIST's `.npy` has no labels).
      extra: our additional arrays (keys of `CSCORE_EXTRA_KEYS`) when present.
      source: the file.
    """

    scores: np.ndarray
    labels: np.ndarray | None
    extra: Mapping[str, np.ndarray]
    source: str = ""


def _fail(source: str, message: str) -> NpzError:
    return NpzError(f"{source}: {message}")


def validate_cscores(
    arrays: Mapping[str, np.ndarray],
    source: str = "C-scores",
    num_examples: int | None = None,
    num_classes: int | None = None,
) -> CScoreFile:
    """Checks C-score arrays against the published format.

    Checks: ``scores`` present, 1-D float, values in [0, 1] or NaN; ``labels`` (when present)
    1-D integer of the same length, in 0..num_classes-1 when given; our extra keys (when
    present) of consistent dtypes and shapes (``[n_ratios, n]``, ``[n_ratios, n_test]``);
    ``ratios`` in (0, 1]; the expected number of examples when given.

    Returns:
      `CScoreFile` with float64 scores and int64 labels.

    Raises:
      NpzError: naming `source`, the key, what was expected and what was found.
    """
    sizes = {} if num_examples is None else {"n": num_examples}
    get = functools.partial(require, arrays, source=source, sizes=sizes,
                            what="a C-score file")
    scores = get("scores", "f", ("n",))
    defined = scores[~np.isnan(scores)]
    if ((defined < 0) | (defined > 1)).any():
        raise _fail(
            source,
            f"key 'scores' must lie in [0, 1] (or be NaN), found values from "
            f"{defined.min()} to {defined.max()}",
        )
    labels = None
    if "labels" in arrays:
        labels = get("labels", "iu", ("n",)).astype(np.int64)
        bad = labels < 0
        if num_classes is not None:
            bad |= labels >= num_classes
        if bad.any():
            expected = "non-negative" if num_classes is None else f"in 0..{num_classes - 1}"
            raise _fail(
                source, f"key 'labels' must be class ids {expected}, found {labels[bad][:5]}"
            )
    extra = {k: np.asarray(arrays[k]) for k in CSCORE_EXTRA_KEYS if k in arrays}
    if "ratios" in extra:
        ratios = get("ratios", "f", ("n_ratios",))
        if not ((ratios > 0) & (ratios <= 1)).all():  # NaN (a missing ratio) fails too
            raise _fail(source, f"key 'ratios' must lie in (0, 1], found {ratios.tolist()}")
    for key, kind, shape in (
        ("test_scores", "f", ("n_test",)),
        ("scores_stderr", "f", ("n",)),
        ("num_runs_by_ratio", "iu", ("n_ratios",)),
        ("scores_by_ratio", "f", ("n_ratios", "n")),
        ("scores_stderr_by_ratio", "f", ("n_ratios", "n")),
        ("count_out_by_ratio", "iu", ("n_ratios", "n")),
        ("test_scores_by_ratio", "f", ("n_ratios", "n_test")),
    ):
        if key in extra:
            get(key, kind, shape)
    return CScoreFile(scores.astype(np.float64), labels, extra, source)


def read_cscores(
    path: str | os.PathLike, num_examples: int | None = None, num_classes: int | None = None
) -> CScoreFile:
    """Reads a C-score file: the published ``.npz`` (``labels``, ``scores``), MNIST's bare
    ``.npy``, or one written by `write_cscores` / `heldout cscores`.

    Raises:
      NpzError: unreadable file or pickled content.
      NpzError: see `validate_cscores`.
    """
    path = os.fspath(path)
    if path.endswith(".npy"):
        if not os.path.isfile(path):
            raise NpzError(f"{path}: no such file")
        try:
            scores = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise NpzError(f"{path}: unreadable .npy ({e})") from e
        return validate_cscores({"scores": scores}, path, num_examples, num_classes)
    return validate_cscores(load_npz(path), path, num_examples, num_classes)


def read_scores_in_tfds_order(
    path: str | os.PathLike,
    tfds_labels: np.ndarray,
    ids: Sequence[str] | np.ndarray | None = None,
    split: str = "train",
) -> np.ndarray:
    """Reads a published C-score file and returns its scores in TFDS order, checked by label.

    The file goes through `read_cscores` (every format check), then
    `heldout.data.order.checked_tfds_order`. Two formats: an ``.npz`` with ``labels`` and
    ``scores`` in the ORIGINAL CIFAR order (CIFAR C-scores; `ids` required), and an ``.npy``
    array already in TFDS order (MNIST C-scores; only its length can be checked).

    Args:
      path: the published file.
      tfds_labels: int [n], the dataset's labels in TFDS order.
      ids: str [n], the TFDS ``id`` feature in TFDS order (for ``.npz`` files).
      split: the ids' prefix.

    Returns:
      float64 [n]: the scores in TFDS order.

    Raises:
      NpzError: unreadable file.
      NpzError: see `validate_cscores`; or an ``.npz`` without ``labels``.
      OrderError: lengths differ, or the file's labels, reordered, differ from `tfds_labels`
        (with the number of mismatches and the first positions): nothing is returned.
    """
    cs = read_cscores(path)
    if cs.labels is None and not cs.source.endswith(".npy"):
        raise _fail(cs.source, "missing key 'labels': scores in the original order need their "
                               "labels to be reordered and checked against the dataset")
    return checked_tfds_order(cs.scores, cs.labels, tfds_labels, ids, split, cs.source)


def load_published_scores(
    path: str | os.PathLike,
    dataset: str,
    data_dir: str | None = None,
    split: str = "train",
) -> np.ndarray:
    """`read_scores_in_tfds_order` with the labels and ids read from TFDS (images not decoded).

    Args:
      path: the published file.
      dataset: TFDS name with version, e.g. ``cifar100:3.0.2`` (or ``mnist:3.0.1`` for `.npy`).
      data_dir: TFDS data directory.
      split: the split the scores are for.

    Returns:
      float64 [n]: the scores in TFDS order.

    Raises:
      As `read_scores_in_tfds_order`.
    """
    from heldout.data.tfds import load_tfds

    data = load_tfds(dataset, (split,), data_dir, with_images=False)
    return read_scores_in_tfds_order(path, data.split_labels(split), data.ids.get(split), split)


def cscore_arrays(cs: CScores, labels: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The arrays `heldout cscores` writes for a `CScores` (published keys first)."""
    arrays = {"scores": cs.scores.astype(np.float64)}
    if labels is not None:
        arrays["labels"] = np.asarray(labels).astype(np.int64)
    arrays.update(
        scores_stderr=cs.stderr,
        scores_by_ratio=cs.by_ratio,
        scores_stderr_by_ratio=cs.stderr_by_ratio,
        count_out_by_ratio=cs.count_out_by_ratio,
        ratios=cs.ratios,
        num_runs_by_ratio=cs.num_runs_by_ratio,
        test_scores=cs.test_scores,
        test_scores_by_ratio=cs.test_by_ratio,
    )
    return arrays


def write_cscores(
    path: str | os.PathLike,
    scores: CScores | Mapping[str, np.ndarray],
    labels: np.ndarray | None = None,
    labels_name: str = "labels",
) -> CScoreFile:
    """Validates and writes a C-score file atomically, in the published format plus our keys.

    The runs' dataset fingerprint (``CScores.fingerprint``, or ``fingerprint__*`` arrays) is
    written with the scores, and `labels` are checked against it first (size and order).

    Args:
      path: destination `.npz`.
      scores: a `CScores` (written as ``scores``, ``scores_stderr``, ``scores_by_ratio``,
        ``scores_stderr_by_ratio``, ``count_out_by_ratio``, ``ratios``, ``num_runs_by_ratio``,
        ``test_scores``, ``test_scores_by_ratio``) or the arrays themselves.
      labels: int [n] labels of the training examples, written as ``labels`` when given.
      labels_name: the labels' dataset (``name:version`` where known), for the check.

    Returns:
      The validated `CScoreFile`.

    Raises:
      NpzError: the arrays would not pass `validate_cscores` (nothing is written).
      FingerprintError: `labels` of another size, order or dataset than the runs' fingerprint.
    """
    path = os.fspath(path)
    if isinstance(scores, CScores):
        fingerprint = scores.fingerprint
        arrays = cscore_arrays(scores, labels)
        if fingerprint is not None:
            arrays.update(fingerprint.to_arrays())
    else:
        arrays = dict(scores)
        fingerprint = read_fingerprint(arrays, path)
        if labels is not None:
            arrays["labels"] = np.asarray(labels).astype(np.int64)
    if labels is not None:
        check_labels({"train": np.asarray(labels)}, fingerprint, f"the C-scores for {path}",
                     labels_name, {"train": len(np.asarray(arrays["scores"]).reshape(-1))})
    checked = validate_cscores(arrays, path)
    save_npz_atomic(path, arrays)
    return checked


def validate_pairs(
    arrays: Mapping[str, np.ndarray],
    source: str = "high-influence pairs",
    num_train: int | None = None,
    num_test: int | None = None,
    infl_threshold: float | None = None,
    mem_threshold: float | None = None,
) -> HighInfluencePairs:
    """Checks high-influence pair arrays against the published format.

    Checks: exactly the keys ``tr_idx``, ``tt_idx``, ``infl``, ``mem``; 1-D, equal lengths;
    indices non-negative integers (below `num_train` / `num_test` when given) with no pair
    repeated; ``infl`` and ``mem`` finite floats in [-1, 1], at or above the thresholds when
    given; one memorization value per training example.

    Returns:
      `HighInfluencePairs` with int64 indices and float64 values, in file order.

    Raises:
      NpzError: naming `source`, the key, what was expected and what was found.
    """
    keys = sorted(arrays)
    if keys != sorted(PAIR_KEYS):
        raise _fail(
            source,
            f"a high-influence pair file holds exactly the keys {list(PAIR_KEYS)}, found {keys}",
        )
    sizes: dict[str, int] = {}
    get = functools.partial(require, arrays, source=source, sizes=sizes,
                            what="a high-influence pair file")
    values = {}
    for key, kind, limit in (
        ("tr_idx", "iu", num_train),
        ("tt_idx", "iu", num_test),
        ("infl", "f", None),
        ("mem", "f", None),
    ):
        v = get(key, kind, ("n_pairs",))
        if kind == "iu":
            bad = (v < 0) | ((v >= limit) if limit is not None else False)
            if bad.any():
                raise _fail(
                    source,
                    f"key {key!r} must hold positions in 0..{'' if limit is None else limit - 1}, "
                    f"found {v[bad][:5].tolist()}",
                )
            values[key] = v.astype(np.int64)
        else:
            bad = ~np.isfinite(v) | (np.abs(v) > 1)
            if bad.any():
                raise _fail(
                    source, f"key {key!r} must be finite and in [-1, 1], found {v[bad][:5]}"
                )
            values[key] = v.astype(np.float64)
    n = sizes["n_pairs"]
    for key, threshold in (("infl", infl_threshold), ("mem", mem_threshold)):
        if threshold is not None and n and values[key].min() < threshold:
            raise _fail(
                source,
                f"key {key!r} must be >= {threshold} for every pair, found {values[key].min()}",
            )
    pair_ids = np.stack([values["tr_idx"], values["tt_idx"]], axis=1)
    if len(np.unique(pair_ids, axis=0)) != n:
        raise _fail(source, "keys 'tr_idx'/'tt_idx' list a (train, test) pair more than once")
    order = np.argsort(values["tr_idx"], kind="stable")
    tr, mem = values["tr_idx"][order], values["mem"][order]
    same = tr[1:] == tr[:-1]
    if (mem[1:][same] != mem[:-1][same]).any():
        raise _fail(source, "key 'mem' gives one training example different memorization values")
    return HighInfluencePairs(values["tr_idx"], values["tt_idx"], values["infl"], values["mem"])


def read_pairs(
    path: str | os.PathLike,
    num_train: int | None = None,
    num_test: int | None = None,
    infl_threshold: float | None = None,
    mem_threshold: float | None = None,
) -> HighInfluencePairs:
    """Reads a high-influence pair file (published, or written by `write_pairs`).

    Raises:
      NpzError: unreadable file or pickled content.
      NpzError: see `validate_pairs`.
    """
    path = os.fspath(path)
    return validate_pairs(load_npz(path), path, num_train, num_test, infl_threshold, mem_threshold)


def write_pairs(path: str | os.PathLike, pairs: HighInfluencePairs) -> HighInfluencePairs:
    """Validates and writes high-influence pairs atomically, in the published format.

    Raises:
      NpzError: the pairs would not pass `validate_pairs` (nothing is written).
    """
    path = os.fspath(path)
    checked = validate_pairs(pairs.to_dict(), path)
    save_npz_atomic(path, checked.to_dict())
    return checked
