"""Re-evaluating runs and cross-checking their predictions against their aux arrays.

An `Evaluator` owns one model and one traced prediction function; runs are restored into the
same model one after another, so verifying an experiment traces once instead of once per run.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import sonnet as snt
import tensorflow as tf
from tqdm import tqdm

from heldout.checkpoint import RestoredCheckpoint, restore
from heldout.data.fingerprint import check_dataset
from heldout.data.protocol import Dataset
from heldout.errors import HeldoutError
from heldout.experiment import AuxArrays, Run
from heldout.models import build_model, create_variables, default_arch


class NonFiniteLogitsError(HeldoutError, ValueError):
    """A model gave NaN or infinite logits (a diverged or corrupt run): ``argmax`` would call
    such an example class 0, so its correctness is refused rather than counted."""


def check_finite_logits(logits: np.ndarray, index: np.ndarray, split: str, source: str) -> None:
    """Refuses non-finite logits (float [n, num_classes]) of examples `index` (int64 [n]).

    Raises:
      NonFiniteLogitsError: naming `source` (the run), the split, how many examples and the
        first of them.
    """
    bad = ~np.isfinite(logits).all(axis=1) if logits.size else np.zeros(len(index), bool)
    if bad.any():
        raise NonFiniteLogitsError(
            f"{source or 'model'}: non-finite logits (NaN or inf) for {int(bad.sum())} of "
            f"{len(bad)} {split} examples (first at index {int(index[bad][0])}); the model "
            "diverged or its checkpoint is corrupt, so its correctness would be wrong"
        )


@dataclasses.dataclass(frozen=True)
class Predictions:
    """A model's outputs on a split.

    Attributes:
      logits: float32 [n, num_classes].
      label: int64 [n], the dataset's labels.
      index: int64 [n], the examples' positions in the split.
    """

    logits: np.ndarray
    label: np.ndarray
    index: np.ndarray

    @property
    def correctness(self) -> np.ndarray:
        """bool [n]: argmax of the logits equals the label."""
        return np.argmax(self.logits, axis=1) == self.label

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.correctness)) if len(self.label) else float("nan")


@dataclasses.dataclass(frozen=True)
class CrossCheck:
    """Recomputed correctness against the correctness stored in a run's aux arrays.

    Attributes:
      split: ``train`` (the run's subset and its held-out examples together) or ``test``.
      num_match: examples whose recomputed correctness equals the stored one.
      num_total: examples the aux arrays cover for the split.
      mismatched_index: int64 [num_total - num_match], positions that differ or have no
        prediction.
    """

    split: str
    num_match: int
    num_total: int
    mismatched_index: np.ndarray

    @property
    def all_match(self) -> bool:
        return self.num_match == self.num_total

    @property
    def match_fraction(self) -> float:
        return self.num_match / self.num_total if self.num_total else float("nan")


def cross_check(predictions: Predictions, aux: AuxArrays, split: str) -> CrossCheck:
    """Compares recomputed correctness with the run's stored correctness, by `index`.

    Every example the aux arrays cover must have exactly one prediction: examples without one
    (a dataset with missing examples) or with several count as mismatches, so a partial
    evaluation can never pass.
    """
    stored = aux.correctness(split)
    n = len(stored)
    index = predictions.index
    valid = (index >= 0) & (index < n)
    counts = np.bincount(index[valid], minlength=n)
    agree = np.zeros(n, dtype=bool)
    good = valid.copy()
    good[valid] = counts[index[valid]] == 1
    agree[index[good]] = stored[index[good]] == predictions.correctness[good]
    return CrossCheck(split, int(agree.sum()), n, np.flatnonzero(~agree).astype(np.int64))


@dataclasses.dataclass(frozen=True)
class Evaluator:
    """One model and its traced evaluation function (``is_training=False``), reused across runs.

    Build with `make_evaluator`.
    """

    model: snt.Module
    input_shape: tuple[int, ...]
    predict_fn: tf.types.experimental.PolymorphicFunction

    def restore(self, path: str | os.PathLike) -> RestoredCheckpoint:
        """Restores a run directory's final checkpoint (or a prefix) into the model, verified."""
        return restore(self.model, path)

    def predict(
        self, dataset: Dataset, split: str, batch_size: int = 200, progress: bool = True,
        source: str = "",
    ) -> Predictions:
        """Logits of every example of `split`, in dataset order.

        Args:
          dataset: a `heldout.data` dataset (`batches(split, batch_size)` yields `Batch`es).
          split: dataset split, e.g. ``train`` or ``test``.
          batch_size: examples per call.
          progress: show a tqdm progress bar.
          source: names the model (e.g. the run's directory) in errors.

        Raises:
          NonFiniteLogitsError: a logit is NaN or infinite.
        """
        n = dataset.num_examples(split)
        logits, labels, index = [], [], []
        with tqdm(total=n, desc=f"evaluate {split}", unit="ex", disable=not progress) as bar:
            for batch in dataset.batches(split, batch_size):
                logits.append(self.predict_fn(tf.convert_to_tensor(batch.image)).numpy())
                labels.append(np.asarray(batch.label))
                index.append(np.asarray(batch.index))
                bar.update(len(batch.label))
        if not logits:
            return Predictions(np.zeros((0, 0), np.float32), np.zeros(0, np.int64),
                               np.zeros(0, np.int64))
        predictions = Predictions(
            np.concatenate(logits).astype(np.float32),
            np.concatenate(labels).astype(np.int64),
            np.concatenate(index).astype(np.int64),
        )
        check_finite_logits(predictions.logits, predictions.index, split, source)
        return predictions


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


@dataclasses.dataclass(frozen=True)
class RunVerification:
    """The outcome of re-evaluating one run on one split."""

    run: Run
    restored: RestoredCheckpoint
    aux: AuxArrays
    predictions: Predictions
    check: CrossCheck


def verify_run(
    evaluator: Evaluator,
    run: Run,
    dataset: Dataset,
    split: str,
    batch_size: int = 200,
    progress: bool = True,
) -> RunVerification:
    """Restores a run, evaluates a split and cross-checks the result with its aux arrays.

    The aux arrays are read first and checked against the dataset's size (and, for runs written
    by `heldout.train`, its fingerprint: name, version and label order), so a run of another
    dataset fails before any evaluation.

    Raises:
      AuxArraysError / NpzError: bad aux arrays, or sizes that do not fit the dataset.
      FingerprintError: the run was evaluated on another dataset or order.
      CheckpointError: no checkpoint, or one that does not fit the model.
      NonFiniteLogitsError: the restored model gives NaN or infinite logits (naming the run).
    """
    n = dataset.num_examples(split)
    sizes = {"num_train": n} if split == "train" else {"num_test": n}
    aux = run.load_aux(**sizes)
    check_dataset(aux.fingerprint, dataset, aux.source)
    restored = evaluator.restore(run.path)
    predictions = evaluator.predict(dataset, split, batch_size, progress,
                                    source=f"run {run.name} ({run.path})")
    return RunVerification(run, restored, aux, predictions, cross_check(predictions, aux, split))


def make_evaluator_for(dataset: Dataset, arch: str | None = None) -> Evaluator:
    """An evaluator for a dataset: its number of classes and image shape; `arch` defaults to the
    released architecture for it (see `default_arch`)."""
    arch = arch or default_arch(dataset.name, dataset.image_shape)
    return make_evaluator(arch, dataset.num_classes, dataset.image_shape)
