"""Re-evaluating runs: one evaluation path for every backend, and the cross-check of
predictions against the runs' aux arrays.

- `heldout.evaluate.predictions` (numpy): `Predictions`, `CrossCheck`, `cross_check`,
  `check_finite_logits`.
- `heldout.evaluate.backend` (numpy): the `Backend` protocol (restore a run, logits of images)
  and `RestoredRun`.
- `heldout.evaluate.factory`: `make_backend` / `make_backend_for` (a backend's module imported
  when it is made), `model_requirement` (which runs a backend can restore, for
  `heldout.experiment.select_runs`) and `check_run_model` (a run's model against a dataset,
  read from its files).
- `heldout.evaluate.evaluation` (numpy): `evaluate_split`, the one loop from a model to
  predictions (fills logits by ``index``, checks every example seen once and every logit
  finite), `check_run_dataset` (the one check of a dataset against a run's aux arrays) and
  `verify_run` built on them.
- `heldout.evaluate.tensorflow` (TensorFlow): the Sonnet model and its traced function
  (`Evaluator`, `make_evaluator`, `make_evaluator_for`) and `TensorFlowBackend`.
  `heldout.pytorch.backend.TorchBackend` is the PyTorch backend.

Importing this package imports no TensorFlow (the TensorFlow names are resolved on first use,
PEP 562), so ``heldout verify --backend torch`` runs where TensorFlow is not installed.
"""

from __future__ import annotations

import importlib

from heldout.errors import (
    BackendError,
    EvaluationError,
    ModelMismatchError,
    NonFiniteLogitsError,
    NonFiniteWeightsError,
)
from heldout.evaluate.backend import BACKENDS, Backend, RestoredRun
from heldout.evaluate.evaluation import (
    RunVerification,
    check_run_dataset,
    evaluate_split,
    verify_run,
)
from heldout.evaluate.factory import (
    check_run_model,
    make_backend,
    make_backend_for,
    model_requirement,
)
from heldout.evaluate.predictions import (
    CrossCheck,
    Predictions,
    check_finite_logits,
    cross_check,
)

_TENSORFLOW = ("Evaluator", "TensorFlowBackend", "make_evaluator", "make_evaluator_for")


def __getattr__(name: str):
    if name in _TENSORFLOW:
        return getattr(importlib.import_module("heldout.evaluate.tensorflow"), name)
    raise AttributeError(f"module 'heldout.evaluate' has no attribute {name!r}")


__all__ = [
    "BACKENDS", "Backend", "BackendError", "CrossCheck", "EvaluationError",
    "ModelMismatchError", "NonFiniteLogitsError", "NonFiniteWeightsError", "Predictions",
    "RestoredRun", "RunVerification", "check_finite_logits", "check_run_dataset",
    "check_run_model", "cross_check", "evaluate_split", "make_backend", "make_backend_for",
    "model_requirement", "verify_run", *_TENSORFLOW,
]
