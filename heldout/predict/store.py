"""The predictions store: a zarr v3 group of every run's outputs on one dataset split.

Arrays (R runs, N examples of the split, C classes, n_train training examples), every per-run
array chunked one run per chunk along R (whole N, no sharding), so that no two tasks ever write
the same chunk file (zarr has no locking; zarr-python 3 writes each chunk file by temporary file
and rename):

- ``correct`` bool [R, N]: argmax of the logits equals the label.
- ``prediction`` int32 [R, N]: argmax of the logits (written with ``correct``).
- ``margin`` float32 [R, N]: logit of the label minus the largest other logit (datamodels).
- ``logit_confidence`` float32 [R, N]: ``log p_y - log(sum_{y' != y} p_y')`` from a float64
  softmax of the logits (LiRA, Carlini et al. 2022), computed stably as
  ``z_y - logsumexp_{y' != y} z_y'``.
- ``logits`` float16 or float32 [R, N, C]: only when asked.
- ``logit_confidence_views`` float32 [R, N, V]: ``logit_confidence`` of each view of the images
  (`heldout.data.views`: e.g. the horizontal mirror), only when views are asked; the group
  attribute ``views`` names them in order, ``identity`` first (its column equals
  ``logit_confidence``).
- ``label`` int64 [N], ``index`` int64 [N]: the split's labels and positions, dataset order.
- ``run_id`` int64 [R], ``subset_ratio`` float64 [R]: written when the store is created.
- ``epoch``, ``global_step`` int64 [R]: of the restored checkpoint (of the recorded outputs).
- ``mask`` bool [R, n_train]: the run's training subset, from its aux arrays.
- ``recorded`` bool [R]: the run's row was read from the outputs it recorded at the end of
  training (``outputs.npz``, `heldout.experiment.RecordedOutputs`), not evaluated from its model.
- ``completed`` bool [R]: set only after all of a run's chunks are written.

Dimension names (``run``, ``example``, ``class``, ``view``, ``train_example``) make the group
readable with ``xarray.open_zarr``. Group attributes: see `StoreLayout.attrs`.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from heldout import __version__
from heldout.errors import StoreError

STORE_FORMAT = "heldout.predict.store/1"
OUTPUTS = ("correct", "margin", "logit_confidence", "logits")
DEFAULT_OUTPUTS = ("correct", "margin", "logit_confidence")
LOGITS_DTYPES = ("float16", "float32")
MARGIN_DEFINITION = "logit of the label minus the largest other logit (float32)"
CONFIDENCE_DEFINITION = (
    "log p_y - log(sum_{y' != y} p_y') of a float64 softmax of the logits, computed as "
    "z_y - logsumexp_{y' != y} z_y' (LiRA's logit-scaled confidence), stored float32"
)
#: The array of ``logit_confidence`` in several views, float32 [R, N, V], and the group
#: attribute naming its views in order (``identity`` first); read by `heldout.privacy`.
VIEWS_ARRAY = "logit_confidence_views"
VIEWS_ATTRIBUTE = "views"
#: The group attribute ``source``: where the rows came from. Every run's model evaluated (its
#: checkpoint, or with the torch backend its exported model), every run's recorded outputs
#: (``outputs.npz``) read, or some of each (the per-run array ``recorded`` says which).
SOURCE_CHECKPOINTS = "checkpoints"
SOURCE_RECORDED = "recorded"
SOURCE_MIXED = "recorded+checkpoints"
SOURCES = (SOURCE_CHECKPOINTS, SOURCE_RECORDED, SOURCE_MIXED)
#: Attributes that must agree for a store to be resumed (name -> what it is, for messages).
IDENTITY = {
    "dataset": "dataset",
    "dataset_version": "dataset version",
    "split": "split",
    "fingerprint": "dataset fingerprint (split size and label order)",
    "experiment": "experiment",
    "outputs": "output set",
    "logits_dtype": "logits dtype",
    "architecture": "architecture",
    "num_train": "training-set size (mask width)",
    "runs": "runs",
    VIEWS_ATTRIBUTE: "views (`views`)",
    "source": "source (`source`)",
}
#: Values of `IDENTITY` attributes in stores written before the attribute existed.
_ABSENT = {VIEWS_ATTRIBUTE: [], "source": SOURCE_CHECKPOINTS}
_PER_RUN = ("correct", "prediction", "margin", "logit_confidence", "logits", "epoch",
            "global_step", "mask", "run_id", "subset_ratio", VIEWS_ARRAY, "recorded")


@dataclasses.dataclass(frozen=True)
class StoreLayout:
    """What a store holds: everything that must agree to resume it.

    Attributes:
      dataset, dataset_version: the dataset's name and version ('' when unknown).
      split: the evaluated split.
      fingerprint: the split's size and label hash (`heldout.data.fingerprint`).
      experiment: the experiment directory (absolute).
      architecture, num_classes: the model.
      num_train: n_train, the width of ``mask`` (the runs' training-set size).
      outputs: the per-run outputs stored, a subset of `OUTPUTS` (``correct`` always).
      logits_dtype: ``float16`` or ``float32`` (used when ``logits`` is stored).
      runs: ``<ratio>/<run_id>`` of each run, in store order (R).
      backend: the backend that computed the outputs (not compared on resume).
      views: the view names of `VIEWS_ARRAY` (`heldout.data.views`), ``identity`` first; ()
        when the store has no views.
      source: where the rows come from, one of `SOURCES`: ``checkpoints`` (every run's
        model evaluated), ``recorded`` (every run's recorded outputs read) or
        ``recorded+checkpoints``.
    """

    dataset: str
    dataset_version: str
    split: str
    fingerprint: str
    experiment: str
    architecture: str
    num_classes: int
    num_examples: int
    num_train: int
    outputs: tuple[str, ...]
    logits_dtype: str
    runs: tuple[str, ...]
    backend: str = "tensorflow"
    views: tuple[str, ...] = ()
    source: str = SOURCE_CHECKPOINTS

    def attrs(self) -> dict[str, Any]:
        """The group attributes: the fields, plus ``format``, ``margin_definition``,
        ``logit_confidence_definition`` and ``heldout_version``."""
        attrs = dataclasses.asdict(self)
        attrs["outputs"] = list(self.outputs)
        attrs["runs"] = list(self.runs)
        attrs[VIEWS_ATTRIBUTE] = list(self.views)
        attrs.update(
            format=STORE_FORMAT,
            margin_definition=MARGIN_DEFINITION,
            logit_confidence_definition=CONFIDENCE_DEFINITION,
            heldout_version=__version__,
        )
        return attrs


def margin(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """float32 [n]: logit of the label minus the largest other logit (datamodels' margin)."""
    logits = np.asarray(logits, np.float32)
    rows = np.arange(len(labels))
    others = logits.copy()
    others[rows, labels] = -np.inf
    return (logits[rows, labels] - others.max(axis=1)).astype(np.float32)


def logit_confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """float32 [n]: ``log p_y - log(sum_{y' != y} p_y')`` of a float64 softmax (LiRA)."""
    z = np.asarray(logits, np.float64)
    rows = np.arange(len(labels))
    others = z.copy()
    others[rows, labels] = -np.inf
    top = others.max(axis=1, keepdims=True)
    lse_others = top[:, 0] + np.log(np.exp(others - top).sum(axis=1))
    return (z[rows, labels] - lse_others).astype(np.float32)


def run_outputs(
    logits: np.ndarray, labels: np.ndarray, outputs: tuple[str, ...], logits_dtype: str
) -> dict[str, np.ndarray]:
    """The store rows of one run from its float32 logits [N, C] and the labels int64 [N]."""
    predicted = np.argmax(logits, axis=1)
    rows = {"correct": predicted == labels, "prediction": predicted.astype(np.int32)}
    if "margin" in outputs:
        rows["margin"] = margin(logits, labels)
    if "logit_confidence" in outputs:
        rows["logit_confidence"] = logit_confidence(logits, labels)
    if "logits" in outputs:
        rows["logits"] = np.asarray(logits, np.float32).astype(logits_dtype)
    return rows


def _array_specs(layout: StoreLayout) -> dict[str, tuple[tuple[int, ...], str, tuple[str, ...]]]:
    """name -> (shape, dtype, dimension names)."""
    r, n, c = len(layout.runs), layout.num_examples, layout.num_classes
    specs = {
        "correct": ((r, n), "bool", ("run", "example")),
        "prediction": ((r, n), "int32", ("run", "example")),
        "margin": ((r, n), "float32", ("run", "example")),
        "logit_confidence": ((r, n), "float32", ("run", "example")),
        "logits": ((r, n, c), layout.logits_dtype, ("run", "example", "class")),
        "label": ((n,), "int64", ("example",)),
        "index": ((n,), "int64", ("example",)),
        "run_id": ((r,), "int64", ("run",)),
        "subset_ratio": ((r,), "float64", ("run",)),
        "epoch": ((r,), "int64", ("run",)),
        "global_step": ((r,), "int64", ("run",)),
        "mask": ((r, layout.num_train), "bool", ("run", "train_example")),
        "recorded": ((r,), "bool", ("run",)),
        "completed": ((r,), "bool", ("run",)),
    }
    if layout.views:
        specs[VIEWS_ARRAY] = ((r, n, len(layout.views)), "float32", ("run", "example", "view"))
    return {k: v for k, v in specs.items() if k in layout.outputs or k not in OUTPUTS}


def is_store(path: str | os.PathLike) -> bool:
    return os.path.isfile(os.path.join(os.fspath(path), "zarr.json"))


def create_store(
    path: str | os.PathLike,
    layout: StoreLayout,
    run_ids: np.ndarray,
    subset_ratios: np.ndarray,
    label: np.ndarray,
    index: np.ndarray,
) -> None:
    """Creates an empty store (nothing completed), whole or not at all: it is written in a
    temporary directory beside `path` and renamed onto it.

    Raises:
      StoreError: `path` exists.
    """
    import zarr

    path = os.path.abspath(os.fspath(path))
    if os.path.lexists(path):
        raise StoreError(f"{path}: exists; not creating a store over it")
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".partial", dir=parent)
    try:
        group = zarr.open_group(tmp, mode="w", zarr_format=3, attributes=layout.attrs())
        for name, (shape, dtype, dims) in _array_specs(layout).items():
            chunks = (1, *shape[1:]) if dims[0] == "run" else shape
            group.create_array(
                name, shape=shape, chunks=tuple(max(1, c) for c in chunks), dtype=dtype,
                fill_value=0, dimension_names=dims,
            )
        group["label"][...] = np.asarray(label, np.int64)
        group["index"][...] = np.asarray(index, np.int64)
        # One chunk per run even for these scalars, written here once.
        group["run_id"][...] = np.asarray(run_ids, np.int64)
        group["subset_ratio"][...] = np.asarray(subset_ratios, np.float64)
        with warnings.catch_warnings():  # "not part of the v3 specification": xarray uses it
            warnings.simplefilter("ignore")
            zarr.consolidate_metadata(tmp)
        os.rename(tmp, path)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp)


def read_attrs(path: str | os.PathLike) -> dict[str, Any]:
    """The group attributes of a store.

    Raises:
      StoreError: not a store written by `heldout predict`.
    """
    import zarr

    path = os.fspath(path)
    if not is_store(path):
        raise StoreError(f"{path}: not a zarr store (no zarr.json)")
    attrs = dict(zarr.open_group(path, mode="r").attrs)
    if attrs.get("format") != STORE_FORMAT:
        raise StoreError(
            f"{path}: not a predictions store (format {attrs.get('format')!r}, expected "
            f"{STORE_FORMAT!r})"
        )
    return attrs


def check_layout(path: str | os.PathLike, layout: StoreLayout) -> None:
    """Checks that an existing store holds what `layout` describes, so it can be resumed.

    Raises:
      StoreError: naming each attribute that differs, with both values.
    """
    found, wanted = read_attrs(path), layout.attrs()
    diffs = []
    for key, what in IDENTITY.items():
        a, b = found.get(key, _ABSENT.get(key)), wanted[key]
        if a != b:
            if key == "runs":
                a = f"{len(a or [])} runs {(a or [])[:4]}..."
                b = f"{len(b)} runs {b[:4]}..."
            diffs.append(f"{what}: store has {a!r}, this command {b!r}")
    if diffs:
        raise StoreError(
            f"{os.fspath(path)}: the store was made for something else ({'; '.join(diffs)}); "
            "use `overwrite`=True to replace it"
        )


def write_run(
    path: str | os.PathLike,
    r: int,
    rows: dict[str, np.ndarray],
    mask: np.ndarray,
    epoch: int,
    global_step: int,
) -> None:
    """Writes run `r`'s rows (its own chunks only: `rows` maps array names to its row, e.g.
    ``correct``, ``margin``, ``recorded``; names the store lacks are passed over), then sets
    ``completed[r]`` last."""
    import zarr

    group = zarr.open_group(os.fspath(path), mode="r+")
    for name, row in rows.items():
        if name in group:
            group[name][r] = row
    group["mask"][r] = np.asarray(mask, bool)
    group["epoch"][r] = int(epoch)
    group["global_step"][r] = int(global_step)
    group["completed"][r] = True


def completed(path: str | os.PathLike) -> np.ndarray:
    """bool [R]: the runs whose every chunk is written."""
    import zarr

    return np.asarray(zarr.open_group(os.fspath(path), mode="r")["completed"][...], bool)


@dataclasses.dataclass(frozen=True)
class PredictionStore:
    """A store opened for reading (`open_store`).

    Attributes:
      path: the store.
      attrs: the group attributes (see `StoreLayout`).
      rows: int64 [R'], the store rows selected (the completed runs by default).
      arrays: name -> numpy or dask array; per-run arrays hold the selected rows only:
        ``correct`` bool [R', N], ``margin`` float32 [R', N], ``mask`` bool [R', n_train],
        ``run_id`` int64 [R'], ...; ``label`` and ``index`` int64 [N].
    """

    path: str
    attrs: dict[str, Any]
    rows: np.ndarray
    arrays: dict[str, Any]

    def __getitem__(self, name: str):
        return self.arrays[name]

    def __contains__(self, name: str) -> bool:
        return name in self.arrays

    @property
    def run_names(self) -> list[str]:
        """``<ratio>/<run_id>`` of the selected runs."""
        return [self.attrs["runs"][i] for i in self.rows]


def open_store(
    path: str | os.PathLike, completed_only: bool = True, as_dask: bool = False,
    names: Sequence[str] | None = None,
) -> PredictionStore:
    """Opens a predictions store for reading.

    Args:
      path: the store directory (``STORE.zarr``).
      completed_only: keep only the completed runs' rows (default); False keeps all R rows
        (rows of runs not completed hold zeros).
      as_dask: dask arrays (lazy, one chunk per run) instead of numpy arrays read eagerly.
      names: read only these arrays (those the store has); default all. Every per-run array
        is one file per run, so reading only what is needed matters for many runs.

    Raises:
      StoreError: not a predictions store.
    """
    import zarr

    path = os.fspath(path)
    attrs = read_attrs(path)
    group = zarr.open_group(path, mode="r")
    done = np.asarray(group["completed"][...], bool)
    rows = np.flatnonzero(done) if completed_only else np.arange(len(done))
    arrays: dict[str, Any] = {}
    for name, array in group.arrays():
        if names is not None and name not in names:
            continue
        if as_dask:
            import dask.array as da

            value = da.from_zarr(array)
        else:
            value = array[...]
        if name in _PER_RUN or name == "completed":
            value = value[rows]
        arrays[name] = value
    return PredictionStore(path, attrs, rows.astype(np.int64), arrays)
