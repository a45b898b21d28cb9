"""The TensorFlow / Sonnet side of evaluation: one model and one traced function per process.

An `Evaluator` owns one model and one traced prediction function (``is_training=False``); runs
are restored into the same model one after another (the verified restore of
`heldout.checkpoint`, every weight checked finite), so verifying an experiment traces once
instead of once per run. `TensorFlowBackend` is the `heldout.evaluate.Backend` over it. This is
the only module of `heldout.evaluate` that imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import sonnet as snt
import tensorflow as tf

from heldout.checkpoint import RestoredCheckpoint, restore
from heldout.data.protocol import Dataset
from heldout.errors import BackendError
from heldout.evaluate.backend import RestoredRun
from heldout.evaluate.evaluation import evaluate_split
from heldout.evaluate.predictions import Predictions
from heldout.experiment import Run
from heldout.models import build_model, create_variables, default_arch


@dataclasses.dataclass(frozen=True)
class Evaluator:
    """One model and its traced evaluation function (``is_training=False``), reused across runs.

    Build with `make_evaluator` (training builds one over the model it trains).
    """

    model: snt.Module
    input_shape: tuple[int, ...]
    predict_fn: tf.types.experimental.PolymorphicFunction

    def restore(self, path: str | os.PathLike) -> RestoredCheckpoint:
        """Restores a run directory's final checkpoint (or a prefix) into the model, verified
        (every variable's key, shape and dtype, every value finite)."""
        return restore(self.model, path)

    def logits(self, images: np.ndarray) -> np.ndarray:
        """float32 [b, num_classes] of float32 images [b, H, W, C]."""
        return np.asarray(self.predict_fn(tf.convert_to_tensor(images)), np.float32)

    def predict(
        self, dataset: Dataset, split: str, batch_size: int = 200, progress: bool = True,
        source: str = "",
    ) -> Predictions:
        """Logits of every example of `split`, in dataset order: `evaluate_split` with this
        model as it is (no restore).

        Raises:
          NonFiniteLogitsError: a logit is NaN or infinite.
          EvaluationError: batches that miss or repeat examples.
        """
        return evaluate_split(self, dataset, split, batch_size, progress, source)


def make_evaluator(arch: str, num_classes: int, input_shape: tuple[int, ...]) -> Evaluator:
    """Builds the model, creates its variables and traces its evaluation function once."""
    model = build_model(arch, num_classes)
    input_shape = tuple(int(d) for d in input_shape)
    create_variables(model, input_shape)
    predict_fn = tf.function(
        lambda images: model(images, is_training=False),
        input_signature=[tf.TensorSpec([None, *input_shape], tf.float32)],
    )
    return Evaluator(model, input_shape, predict_fn)


def make_evaluator_for(dataset: Dataset, arch: str | None = None) -> Evaluator:
    """An evaluator for a dataset: its number of classes and image shape; `arch` defaults to the
    released architecture for it (see `default_arch`)."""
    arch = arch or default_arch(dataset.name, dataset.image_shape)
    return make_evaluator(arch, dataset.num_classes, dataset.image_shape)


class TensorFlowBackend:
    """The TensorFlow `heldout.evaluate.Backend`: one `Evaluator` (model built and traced
    once), restored with `heldout.checkpoint.restore` (every variable verified, read and
    checked finite before any is assigned).

    Attributes:
      evaluator: the model and its traced function.
    """

    name = "tensorflow"

    def __init__(self, arch: str, num_classes: int, input_shape: tuple[int, ...]) -> None:
        self.evaluator = make_evaluator(arch, num_classes, tuple(input_shape))
        self._restored: RestoredRun | None = None

    def restore(self, run: Run) -> RestoredRun:
        self._restored = None  # unusable until this restore has fully succeeded
        checkpoint = self.evaluator.restore(run.path)
        self._restored = RestoredRun(checkpoint.epoch, checkpoint.global_step, checkpoint.path,
                                     checkpoint.note)
        return self._restored

    def logits(self, images: np.ndarray) -> np.ndarray:
        if self._restored is None:
            raise BackendError("logits asked of a model with no successfully restored run")
        images = np.asarray(images)
        if images.dtype != np.float32:
            raise BackendError(f"images must be float32 [b, H, W, C], found {images.dtype}")
        return self.evaluator.logits(images)
