"""A model's predictions on a split and their cross-check with a run's aux arrays (numpy only).

`Predictions` holds logits in dataset (``index``) order; `cross_check` compares their
correctness with the correctness a run stored in its aux arrays, example by example through
``index``; `check_finite_logits` refuses NaN or infinite logits (``argmax`` would call them
class 0).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from heldout.errors import NonFiniteLogitsError
from heldout.experiment import AuxArrays


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
      index: int64 [n], the examples' positions in the split (``arange(n)`` from
        `heldout.evaluate.evaluate_split`).
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
