"""The one evaluation path: a split through any `Backend`, and a run verified against its aux
arrays.

`evaluate_split` is the only loop over a dataset's batches that turns a model into
predictions: `heldout verify` (both backends), `heldout predict`, demo.py, training's
evaluation (`heldout.train.evaluate_correctness`, through `Evaluator.predict`) and
`verify_run` all go through it, so every one of them fills logits by ``index``, refuses a
split whose batches miss or repeat an example and refuses non-finite logits.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np
from tqdm import tqdm

from heldout.data.fingerprint import check_dataset
from heldout.data.protocol import Dataset
from heldout.data.views import View
from heldout.errors import (
    EvaluationError,
)
from heldout.evaluate.backend import Backend, RestoredRun
from heldout.evaluate.predictions import CrossCheck, Predictions, check_finite_logits, cross_check
from heldout.experiment import AuxArrays, Run


class LogitsFn(Protocol):
    """What `evaluate_split` needs of a model: a `Backend` after a restore, or an
    `heldout.evaluate.Evaluator`."""

    def logits(self, images: np.ndarray) -> np.ndarray: ...


def evaluate_split(
    model: LogitsFn,
    dataset: Dataset,
    split: str,
    batch_size: int = 200,
    progress: bool = True,
    source: str = "",
    view: View | None = None,
) -> Predictions:
    """The logits of every example of `split`, in dataset (``index``) order.

    Each batch's logits are written at its ``index`` (its labels checked against the split's
    labels there); afterwards every example of the split must have been seen exactly once, and
    every logit must be finite. With a `view`, each batch's images are transformed by it
    before the model sees them (the one place views are applied, for every backend).

    Args:
      model: gives float32 logits [b, C] for float32 images [b, H, W, C] (a restored
        `Backend`).
      dataset: a `heldout.data.Dataset`.
      split: e.g. ``train`` or ``test``.
      batch_size: examples per call.
      progress: show a tqdm progress bar.
      source: names the model (e.g. the run) in errors.
      view: a `heldout.data.views.View` (e.g. the horizontal mirror); None: the images as
        they are.

    Returns:
      `Predictions` with logits float32 [n, C], the split's labels and ``index`` = arange(n).

    Raises:
      EvaluationError: the batches missed or repeated examples, gave an index outside the
        split or labels other than the split's; logits of another shape.
      NonFiniteLogitsError: a logit is NaN or infinite (naming `source` and the first example).
    """
    n = dataset.num_examples(split)
    labels = np.asarray(dataset.split_labels(split), np.int64)
    logits = None
    seen = np.zeros(n, np.int64)
    desc = f"evaluate {split}" + ("" if view is None else f" ({view.name})")
    with tqdm(total=n, desc=desc, unit="ex", disable=not progress) as bar:
        for batch in dataset.batches(split, batch_size):
            index = np.asarray(batch.index, np.int64)
            images = batch.image if view is None else view.apply(batch.image)
            out = np.asarray(model.logits(images), np.float32)
            if out.ndim != 2 or len(out) != len(index):
                raise EvaluationError(f"{source or 'model'}: logits of shape {out.shape} for a "
                                      f"batch of {len(index)} images; expected [b, classes]")
            if len(index) and (index.min() < 0 or index.max() >= n):
                raise EvaluationError(f"{dataset.name}: a {split} batch holds index "
                                      f"{int(index.min())}..{int(index.max())}, outside 0..{n - 1}")
            if not np.array_equal(np.asarray(batch.label, np.int64), labels[index]):
                raise EvaluationError(f"{dataset.name}: a {split} batch's labels differ from "
                                      "the split's labels at the same index")
            if logits is None:
                logits = np.zeros((n, out.shape[1]), np.float32)
            logits[index] = out
            np.add.at(seen, index, 1)
            bar.update(len(index))
    missing, repeated = int(np.sum(seen == 0)), int(np.sum(seen > 1))
    if missing or repeated:
        raise EvaluationError(f"{dataset.name}: the {split} batches missed {missing} and "
                              f"repeated {repeated} of {n} examples")
    if logits is None:
        logits = np.zeros((0, dataset.num_classes), np.float32)
    index = np.arange(n, dtype=np.int64)
    check_finite_logits(logits, index, split, source)
    return Predictions(logits, labels, index)


def check_run_dataset(run: Run, dataset: Dataset, split: str, own: bool = True) -> AuxArrays:
    """The one check that a dataset is a run's own, made before any model is restored
    (`verify_run`, `heldout verify`; `heldout predict` before its store is made, and for each
    run): the run's aux arrays are read, their size of `split` (``train``: the whole training
    set, train + removed; ``test``) must be the dataset's, and when the run carries a dataset
    fingerprint (runs of `heldout.train`), the dataset's name, version and label order of
    every split both have must be its.

    Args:
      run: the run.
      dataset: the dataset about to be evaluated.
      split: the split about to be evaluated.
      own: False for another evaluation set than the runs' own (`heldout predict
        --no_cross_check`: shifted or new test images): then only what the run's subset
        indexes is checked, the training split (its size and labels) when `split` is
        ``train``; for other splits the aux arrays are only read.

    Returns:
      The run's `AuxArrays`.

    Raises:
      NpzError: unreadable aux arrays, or another size than the dataset's.
      FingerprintError: the run was trained and evaluated on another dataset or order.
    """
    checked = own or split == "train"
    n = dataset.num_examples(split)
    sizes = {} if not checked else {"num_train": n} if split == "train" else (
        {"num_test": n} if split == "test" else {})
    aux = run.load_aux(**sizes)
    if checked:
        check_dataset(aux.fingerprint, dataset, aux.source, None if own else ("train",))
    return aux


@dataclasses.dataclass(frozen=True)
class RunVerification:
    """The outcome of re-evaluating one run on one split."""

    run: Run
    restored: RestoredRun
    aux: AuxArrays
    predictions: Predictions
    check: CrossCheck


def verify_run(
    backend: Backend,
    run: Run,
    dataset: Dataset,
    split: str,
    batch_size: int = 200,
    progress: bool = True,
) -> RunVerification:
    """Restores a run into `backend`, evaluates a split (`evaluate_split`) and cross-checks
    the result with the run's aux arrays.

    The aux arrays are read first and checked against the dataset (`check_run_dataset`: its
    size and, for runs written by `heldout.train`, its fingerprint: name, version and label
    order), so a run of another dataset fails before any evaluation.

    Args:
      backend: a `Backend` (`make_backend_for(dataset)`, or ``"torch"`` for exported runs).
      run: the run.
      dataset: the runs' dataset.
      split: ``train`` (the run's subset and its removed examples together) or ``test``.
      batch_size, progress: as for `evaluate_split`.

    Raises:
      NpzError: bad aux arrays, or sizes that do not fit the dataset.
      FingerprintError: the run was evaluated on another dataset or order.
      CheckpointError / TensorFileError: no model file, or one that does not fit the model.
      NonFiniteWeightsError: a restored weight is NaN or infinite.
      NonFiniteLogitsError: the restored model gives NaN or infinite logits (naming the run).
    """
    aux = check_run_dataset(run, dataset, split)
    restored = backend.restore(run)
    predictions = evaluate_split(backend, dataset, split, batch_size, progress,
                                 source=f"run {run.name} ({run.path})")
    return RunVerification(run, restored, aux, predictions, cross_check(predictions, aux, split))
