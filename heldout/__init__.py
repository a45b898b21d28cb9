"""heldout: heldout training experiments (Feldman & Zhang 2020; Jiang et al. 2021).

The usual entry points are importable from the top level::

    from heldout import select_runs, load_dataset, make_backend_for, verify_run
    from heldout import accumulate, memorization, influence, cscores

They are resolved on first use (PEP 562 module ``__getattr__``), so ``import heldout`` imports no
TensorFlow; only the modules that need it (`models`, `checkpoint`, `evaluate`, `train`, ...)
import it, when they are themselves imported.

Subpackages, dependencies flowing one way (checked by `lint-imports`): `models` (Sonnet networks)
· `data` (datasets with a stable `index`, fingerprints) · `experiment` (release layout, runs, aux
arrays, `select_runs`; pure numpy) · `checkpoint` (find and restore, verified) · `evaluate`
(backends, the one evaluation path `evaluate_split`, predictions, cross-check) · `predict`
(stores of many runs' outputs, Dask fan-out) · `estimate` (memorization, influence, C-scores;
pure numpy) and `published` (the authors' files) · `train` (the heldout procedure) · `export`
(runs' models as safetensors, npz or SavedModel) · `pytorch` (the exported models in PyTorch, no
TensorFlow; the torch backend) · `privacy` (membership inference over predictions stores: LiRA;
numpy) · `attribution` (LDS, datamodels and influence on outputs over predictions stores; numpy)
· `release` (getting the archives) · `report` (pages and figures) · `cli`. Every error caused by
bad input is a `HeldoutError`.
"""

from __future__ import annotations

import importlib

from heldout.errors import HeldoutError

__version__ = "0.1.0"

# name -> the module that defines it.
_LAZY = {
    "open_experiment": "heldout.experiment",
    "select_runs": "heldout.experiment",
    "load_aux_arrays": "heldout.experiment",
    "load_dataset": "heldout.data",
    "verify_run": "heldout.evaluate",
    "make_backend_for": "heldout.evaluate",
    "make_evaluator_for": "heldout.evaluate",
    "accumulate": "heldout.estimate",
    "accumulate_experiment": "heldout.estimate",
    "merge_accumulators": "heldout.estimate",
    "memorization": "heldout.estimate",
    "influence": "heldout.estimate",
    "cscores": "heldout.estimate",
    "train_experiment": "heldout.train",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'heldout' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = ["HeldoutError", "__version__", *_LAZY]
