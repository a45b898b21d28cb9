"""The files of `heldout datamodels` and `heldout lds`, and the score files `heldout lds` reads.

- Datamodels (`save_datamodels` / `load_datamodels`), ``.npz``: ``format``
  (``heldout.attribution.datamodels/1``), ``weights`` float32 [m, n_train], ``bias``,
  ``penalty``, ``val_spearman``, ``val_r2`` float64 [m], ``test_index`` int64 [m],
  ``penalties`` float64 [m, G], ``fit`` and ``output`` (str), ``num_runs``, ``num_val_runs``,
  ``num_test`` (the store's N), ``runs`` str [R] (the runs fitted, ``<ratio>/<run_id>``) and the
  store split's dataset fingerprint (``fingerprint__*`` keys, `heldout.data.fingerprint`).
- Scores for the LDS (`load_scores`): a ``.npy`` or single-array ``.npz`` [n_train, n_test]
  (TRAK's and dattri's layout) or its transpose, a `heldout estimate` file (its ``influence``
  [n_test, n_train]) or a datamodels file (its ``weights``), told apart by their keys.
- The cross-fitted table of `heldout lds --baselines` (`load_baselines`), ``.npz``: the arrays
  of `heldout.attribution.BaselineTable.to_dict` (``methods`` str [K], ``fractions`` float64
  [F], ``num_fit_runs`` int64 [F, 2], ``num_score_runs`` int64 [2], ``lds`` float32
  [K, F, n_test], ``mean``, ``low``, ``high``, ``seconds`` float64 [K, F], ``num_nan`` int64
  [K, F]) with ``output`` (str), ``runs`` str [R] (``<ratio>/<run_id>``), ``seed`` and
  ``val_fraction``.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import numpy as np

from heldout.attribution.baselines import BaselineTable
from heldout.attribution.datamodels import Datamodels
from heldout.data.fingerprint import Fingerprint, check_fingerprints, read_fingerprint
from heldout.errors import AttributionError, NpzError
from heldout.npzio import load_npz, require, save_npz_atomic

DATAMODELS_FORMAT = "heldout.attribution.datamodels/1"
LAYOUTS = ("train,test", "test,train")


def save_datamodels(path: str | os.PathLike, dm: Datamodels, *, output: str, num_test: int,
                    runs: list[str] | tuple[str, ...], fingerprint: Fingerprint | None) -> None:
    """Writes datamodels atomically with what they were fitted on (see the module docstring)."""
    arrays = {
        "format": np.asarray(DATAMODELS_FORMAT),
        "weights": dm.weights, "bias": dm.bias, "penalty": dm.penalty,
        "val_spearman": dm.val_spearman, "val_r2": dm.val_r2, "test_index": dm.test_index,
        "penalties": dm.penalties, "fit": np.asarray(dm.fit), "output": np.asarray(output),
        "num_runs": np.asarray(dm.num_runs, np.int64),
        "num_val_runs": np.asarray(dm.num_val_runs, np.int64),
        "num_test": np.asarray(num_test, np.int64), "runs": np.asarray(list(runs), dtype=str),
    }
    if fingerprint is not None:
        arrays.update(fingerprint.to_arrays())
    save_npz_atomic(path, arrays)


@dataclasses.dataclass(frozen=True)
class DatamodelsFile:
    """A datamodels file read back: the `Datamodels`, the output fitted, the store's number
    of examples, the runs fitted and the fingerprint."""

    datamodels: Datamodels
    output: str
    num_test: int
    runs: tuple[str, ...]
    fingerprint: Fingerprint | None


def load_datamodels(path: str | os.PathLike, arrays: dict | None = None) -> DatamodelsFile:
    """Reads and checks a file of `save_datamodels`.

    Raises:
      NpzError: unreadable, another format, a missing key or one of the wrong dtype or shape.
    """
    path = os.fspath(path)
    arrays = load_npz(path) if arrays is None else arrays
    sizes: dict[str, int] = {}
    get = functools.partial(require, arrays, source=path, sizes=sizes,
                            what="a `heldout datamodels` file")
    if str(get("format", "U", ())) != DATAMODELS_FORMAT:
        raise NpzError(f"{path}: format {str(arrays['format'])!r}, expected {DATAMODELS_FORMAT!r}")
    weights = get("weights", "f", ("m", "n_train"))
    floats = {k: get(k, "f", ("m",)).astype(np.float64)
              for k in ("bias", "penalty", "val_spearman", "val_r2")}
    index = get("test_index", "iu", ("m",)).astype(np.int64)
    num_test = int(get("num_test", "iu", ()))
    if len(index) and (index.min() < 0 or index.max() >= num_test):
        raise NpzError(f"{path}: key 'test_index' holds positions outside 0..{num_test - 1}")
    dm = Datamodels(
        weights, floats["bias"], floats["penalty"], floats["val_spearman"], floats["val_r2"],
        index, str(get("fit", "U", ())), int(get("num_runs", "iu", ())),
        int(get("num_val_runs", "iu", ())),
        get("penalties", "f", ("m", None)).astype(np.float64))
    runs = tuple(str(r) for r in get("runs", "U", (None,)))
    return DatamodelsFile(dm, str(get("output", "U", ())), num_test, runs,
                          read_fingerprint(arrays, path))


@dataclasses.dataclass(frozen=True)
class BaselinesFile:
    """A `heldout lds --baselines` file read back (`load_baselines`).

    Attributes:
      table: the `BaselineTable` (LDS per estimator and fraction of the fitting half).
      output: the store output the LDS was computed on (``margin`` or ``logit_confidence``).
      runs: ``<ratio>/<run_id>`` of the R runs split into the two halves.
      seed: the random split; val_fraction: the ridge penalty's held-out share.
    """

    table: BaselineTable
    output: str
    runs: tuple[str, ...]
    seed: int
    val_fraction: float


def load_baselines(path: str | os.PathLike) -> BaselinesFile:
    """Reads and checks a file of `heldout lds --baselines` (keys: the module docstring).

    Raises:
      NpzError: unreadable, a missing key (e.g. the file of a plain `heldout lds`, which has
        no ``methods``), or a key of the wrong dtype or shape, naming the file and the key;
        fractions outside (0, 1] or run counts below 1.
    """
    path = os.fspath(path)
    arrays = load_npz(path)
    sizes: dict[str, int] = {}
    get = functools.partial(require, arrays, source=path, sizes=sizes,
                            what="a `heldout lds --baselines` file")
    methods = tuple(str(m) for m in get("methods", "U", ("K",)))
    fractions = get("fractions", "f", ("F",)).astype(np.float64)
    fit_runs = get("num_fit_runs", "iu", ("F", 2)).astype(np.int64)
    score_runs = get("num_score_runs", "iu", (2,)).astype(np.int64)
    values = get("lds", "f", ("K", "F", "n_test")).astype(np.float32)
    stats = {k: get(k, "f", ("K", "F")).astype(np.float64)
             for k in ("mean", "low", "high", "seconds")}
    num_nan = get("num_nan", "iu", ("K", "F")).astype(np.int64)
    if ((fractions <= 0) | (fractions > 1)).any() or (fit_runs < 1).any() or (score_runs < 1).any():
        raise NpzError(f"{path}: keys 'fractions' / 'num_fit_runs' / 'num_score_runs': expected "
                       f"fractions in (0, 1] and run counts >= 1, found {fractions.tolist()}, "
                       f"{fit_runs.tolist()}, {score_runs.tolist()}")
    table = BaselineTable(methods, fractions, fit_runs, score_runs, values, stats["mean"],
                          stats["low"], stats["high"], num_nan, stats["seconds"])
    return BaselinesFile(table, str(get("output", "U", ())),
                         tuple(str(r) for r in get("runs", "U", ("R",))),
                         int(get("seed", "iu", ())), float(get("val_fraction", "f", ())))


@dataclasses.dataclass(frozen=True)
class Scores:
    """Attribution scores ready for `heldout.attribution.lds`.

    Attributes:
      values: float [n_train, m] (a view where the file held the transpose).
      test_index: int64 [m], the store's examples the columns are of.
      kind: ``"array"``, ``"estimate"`` or ``"datamodels"``.
      description: what the scores are, for messages (e.g. ``influence on margin``).
      runs: the runs the scores were fitted on, when the file says (datamodels).
      output: the store output the scores were fitted on, when the file says (a datamodels
        file's ``output``; an estimate's ``target`` when it is not ``correct``), else None.
    """

    values: np.ndarray
    test_index: np.ndarray
    kind: str
    description: str
    runs: tuple[str, ...] | None = None
    output: str | None = None


def load_scores(path: str | os.PathLike, num_train: int, num_test: int,
                layout: str | None = None, fingerprint: Fingerprint | None = None,
                against: str = "the store") -> Scores:
    """Reads attribution scores for test examples of a store with `num_train` training and
    `num_test` evaluated examples.

    Args:
      path: ``.npy`` or ``.npz`` (see the module docstring).
      num_train, num_test: the store's n_train (mask width) and N.
      layout: ``"train,test"`` (default) or ``"test,train"``, for plain arrays only (the
        library's files know their own).
      fingerprint: the store's split fingerprint, checked against the file's when it has one.
      against: names the store in messages.

    Raises:
      AttributionError: a shape that is not the store's (its transpose named as such), an
        `.npz` of several unknown arrays, an estimate without a full influence matrix, or a
        layout given for a file that has its own.
      NpzError: an unreadable file.
      FingerprintError: the file's fingerprint is of another dataset or order than the store's.
    """
    path = os.fspath(path)
    if layout is not None and layout not in LAYOUTS:
        raise AttributionError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    expected = f"[n_train={num_train}, n_test={num_test}] ({against}'s training set and examples)"
    if path.endswith(".npy"):
        arrays = {"": _load_npy(path)}
    else:
        arrays = load_npz(path)
    if "format" in arrays and str(arrays["format"]) == DATAMODELS_FORMAT:
        _no_layout(path, layout, "a `heldout datamodels` file")
        dmf = load_datamodels(path, arrays)
        _check_fingerprint(path, dmf.fingerprint, fingerprint, against)
        weights = dmf.datamodels.weights
        if weights.shape[1] != num_train or dmf.num_test != num_test:
            raise AttributionError(
                f"{path}: datamodels of {dmf.num_test} examples over {weights.shape[1]} training "
                f"examples; {against} has {num_test} examples over {num_train}")
        return Scores(weights.T, dmf.datamodels.test_index, "datamodels",
                      f"{dmf.datamodels.fit} datamodels of {dmf.output}", dmf.runs, dmf.output)
    if "memorization" in arrays and "count_in" in arrays:
        from heldout.estimate import load_estimate

        _no_layout(path, layout, "a `heldout estimate` file")
        est = load_estimate(path, arrays)
        if est.influence is None:
            raise AttributionError(
                f"{path}: a `heldout estimate` file without the full influence matrix (written "
                "with influence topk or none); the LDS needs every score: estimate again with "
                "`heldout estimate --influence full`")
        _check_fingerprint(path, est.fingerprint, fingerprint, against)
        if est.influence.shape != (num_test, num_train):
            raise AttributionError(
                f"{path}: influence of {est.influence.shape[1]} training on "
                f"{est.influence.shape[0]} examples; {against} has {num_train} training and "
                f"{num_test} examples")
        return Scores(est.influence.T, np.arange(num_test), "estimate",
                      f"influence on {est.target} ({est.num_runs} runs at subset ratio "
                      f"{est.subset_ratio:g})", None,
                      None if est.target == "correct" else est.target)
    if len(arrays) == 1:
        (key, values), = arrays.items()
    elif "scores" in arrays:
        key, values = "scores", arrays["scores"]
    else:
        raise AttributionError(
            f"{path}: holds {sorted(arrays)}; expected one array (or key 'scores') {expected}, a "
            "`heldout estimate` file or a `heldout datamodels` file")
    source = path + (f" (key {key!r})" if key else "")
    if values.dtype.kind not in "fiu" or values.ndim != 2:
        raise AttributionError(f"{source}: expected a float array {expected}, found "
                               f"{values.dtype} {list(values.shape)}")
    transposed = (layout or "train,test") == "test,train"
    found = tuple(values.shape[::-1] if transposed else values.shape)
    if found != (num_train, num_test):
        if transposed:
            expected = (f"[n_test={num_test}, n_train={num_train}] ({against}'s examples and "
                        "training set)")
        hint = ""
        if found == (num_test, num_train):
            other = "train,test" if transposed else "test,train"
            hint = f"; that is the transpose: give `layout`={other}"
        raise AttributionError(
            f"{source}: with layout {layout or 'train,test'} expected {expected}, found "
            f"{list(values.shape)}{hint}")
    return Scores(values.T if transposed else values, np.arange(num_test), "array",
                  f"scores {list(values.shape)} ({layout or 'train,test'})")


def _load_npy(path: str) -> np.ndarray:
    if not os.path.isfile(path):
        raise NpzError(f"{path}: no such file")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as e:
        raise NpzError(f"{path}: unreadable .npy ({e})") from e
    except OSError as e:
        raise NpzError(f"{path}: truncated or corrupt .npy ({e})") from e


def _no_layout(path: str, layout: str | None, what: str) -> None:
    if layout is not None:
        raise AttributionError(f"{path}: {what} knows its own layout; `layout` applies to plain "
                               "arrays only")


def _check_fingerprint(path: str, found: Fingerprint | None, store: Fingerprint | None,
                       against: str) -> None:
    if found is not None and store is not None:
        check_fingerprints([(path, found), (against, store)])
