"""Where a predictions store's rows come from: each run's model, or the outputs the run recorded
at the end of training (``outputs.npz``, `heldout.experiment.RecordedOutputs`), read without
restoring a model.

A run trained by `heldout.train` records, on every example of the train and test splits it was
trained and tested on, what a store holds: ``prediction``, ``margin`` and ``logit_confidence``,
computed by the store's own function (`heldout.predict.store.run_outputs`) from the logits of
the evaluation the aux arrays' correctness comes from. A store of the runs' own dataset can
therefore be filled from them: ``correct`` is ``prediction == label``, ``mask`` comes from the
aux arrays, ``epoch``/``global_step`` from the file. What they cannot give needs the runs'
models (`why_not_recorded`): ``logits``, views other than ``identity``, another split, another
evaluation set (``--no_cross_check``), and the torch backend's evaluation.

`--source` (`SOURCES`): ``checkpoints`` evaluates every run's model; ``recorded`` reads every
run's recorded outputs (runs without them are skipped, as runs without a checkpoint are by
``checkpoints``); ``auto``, the default, reads the recorded outputs of the runs that have them
and evaluates the models of the others, when recorded outputs can serve, and evaluates every
model otherwise. Both give the same values on a run that has both (tests/test_predict_recorded.py),
and the store says which rows came from where (its ``source`` attribute and ``recorded`` array),
so a store of both is never a silent mix.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from heldout.data.protocol import Dataset
from heldout.errors import PredictError
from heldout.evaluate import check_run_dataset, model_requirement
from heldout.experiment import (
    OUTPUT_SPLITS,
    OUTPUTS,
    RECORDED,
    AuxArrays,
    ModelRequirement,
    RecordedOutputs,
    Run,
)
from heldout.predict import store as st

#: The values of ``heldout predict --source``.
SOURCES = ("auto", "recorded", "checkpoints")
#: What `plan_source` resolves ``auto`` to when recorded outputs can serve: each run's
#: recorded outputs where it has them, its model otherwise.
EITHER = "recorded or checkpoints"


def why_not_recorded(split: str, outputs: Sequence[str], views: Sequence[str],
                     own_dataset: bool, backend: str) -> str:
    """Why recorded outputs cannot fill a store of these settings ('' when they can)."""
    if backend != "tensorflow":
        return (f"`backend`={backend} evaluates the runs' exported models, while recorded "
                "outputs are TensorFlow's at the end of training")
    if not own_dataset:
        return ("another evaluation set than the runs' own (`cross_check`=False), on which they "
                "recorded nothing")
    if split not in OUTPUT_SPLITS:
        return f"runs record their outputs on the {' and '.join(OUTPUT_SPLITS)} splits, not on " \
               f"{split!r}"
    if "logits" in outputs:
        return "logits are not recorded (`outputs`=logits)"
    others = [v for v in views if v != "identity"]
    if others:
        return f"views other than identity are not recorded (`views`={','.join(others)})"
    return ""


def plan_source(source: str, split: str, outputs: Sequence[str], views: Sequence[str],
                own_dataset: bool, backend: str) -> tuple[str, str]:
    """What a call fills its store from, before its runs are looked at.

    Args:
      source: ``auto``, ``recorded`` or ``checkpoints`` (`SOURCES`).
      split, outputs, views, own_dataset, backend: the call's settings (`heldout.predict.predict`).

    Returns:
      (plan, note): ``recorded``, ``checkpoints``, or `EITHER` (``auto`` where recorded
      outputs can serve); `note` says why ``auto`` evaluates models only ('' otherwise).

    Raises:
      PredictError: an unknown source, or ``recorded`` where recorded outputs cannot
        serve (one line saying why).
    """
    if source not in SOURCES:
        raise PredictError(f"unknown source {source!r}; expected one of {list(SOURCES)}")
    if source == "checkpoints":
        return "checkpoints", ""
    why = why_not_recorded(split, outputs, views, own_dataset, backend)
    if source == "recorded":
        if why:
            raise PredictError(f"`source`=recorded: {why}; that needs the runs' models "
                               "(`source`=checkpoints)")
        return "recorded", ""
    return ("checkpoints", why) if why else (EITHER, "")


def source_requirement(plan: str, backend: str) -> ModelRequirement:
    """What a run must hold to be selected (`heldout.experiment.select_runs`) for a `plan` of
    `plan_source`: its recorded outputs, its model for `backend`, or either."""
    if plan == "recorded":
        return RECORDED
    model = model_requirement(backend)
    if plan == "checkpoints":
        return model
    return ModelRequirement(f"{RECORDED.what} or {model.what}",
                            lambda run: RECORDED.present(run) or model.present(run))


def reads_recorded(plan: str, run: Run) -> bool:
    """True when the store's row of `run` is read from its recorded outputs under `plan`."""
    return plan == "recorded" or (plan == EITHER and run.has_outputs())


def store_source(recorded: Sequence[bool]) -> str:
    """The store's ``source`` attribute for runs whose rows are read (True) or evaluated."""
    if all(recorded):
        return st.SOURCE_RECORDED
    return st.SOURCE_MIXED if any(recorded) else st.SOURCE_CHECKPOINTS


def recorded_rows(run: Run, dataset: Dataset, split: str, outputs: Sequence[str],
                  views: Sequence[str]) -> tuple[dict[str, np.ndarray], AuxArrays,
                                                 RecordedOutputs]:
    """A run's store rows from its recorded outputs, without a model.

    The dataset is checked against the run first, as before an evaluation
    (`heldout.evaluate.check_run_dataset`: its sizes and the run's dataset fingerprint, which
    a run with recorded outputs must carry: it is what shows that the dataset is the one they
    were recorded on). ``correct`` is ``prediction == label``; the cross-check of the store
    then compares it with the aux arrays, as for evaluated runs.

    Args:
      run: the run.
      dataset: the runs' own dataset (``split`` loaded).
      split: ``train`` or ``test``.
      outputs: the store's outputs (``logits`` is not recorded: see `why_not_recorded`).
      views: the store's views: () or (``identity``,), whose column is ``logit_confidence``.

    Returns:
      (rows, aux, recorded): the rows for `heldout.predict.store.write_run` (``recorded``
      True), the run's aux arrays and its `RecordedOutputs`.

    Raises:
      NpzError / FingerprintError: see `check_run_dataset`; or a missing, malformed or
        mis-sized ``outputs.npz``.
      PredictError: no fingerprint, or predictions outside the dataset's classes.
    """
    aux = check_run_dataset(run, dataset, split)
    if aux.fingerprint is None:
        raise PredictError(
            f"{aux.source}: no dataset fingerprint, so nothing shows that {dataset.name} is the "
            f"dataset its {OUTPUTS} was recorded on; use `source`=checkpoints")
    recorded = run.load_outputs(aux.num_train, aux.num_test)
    prediction = recorded.output("prediction", split)
    if len(prediction) and int(prediction.max()) >= dataset.num_classes:
        raise PredictError(
            f"{recorded.source}: key 'prediction_{split}': class {int(prediction.max())} in a "
            f"dataset of {dataset.num_classes} classes")
    labels = np.asarray(dataset.split_labels(split), np.int64)
    rows = {"correct": prediction == labels, "prediction": prediction,
            "recorded": np.bool_(True)}
    for name in ("margin", "logit_confidence"):
        if name in outputs:
            rows[name] = recorded.output(name, split)
    if views:
        rows[st.VIEWS_ARRAY] = recorded.output("logit_confidence", split)[:, None]
    return rows, aux, recorded
