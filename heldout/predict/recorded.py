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

The runs' own dataset is not shown by its fingerprint alone (the aux arrays' is the labels
only: another image set with the same labels has the same one, and the cross-check passes,
recorded ``correct`` coming from the same logits as the aux arrays'). The file also records
what the outputs were computed on (`heldout.experiment.RecordedInputs`: a digest of each
split's stored images, `heldout.data.fingerprint.images_digest`, and the input preprocessing),
and a run's outputs are read only when both equal the dataset's (`SplitInputs`, computed once
per call: `split_inputs`).

`--source` (`SOURCES`): ``checkpoints`` evaluates every run's model; ``recorded`` reads every
run's recorded outputs (runs without them are skipped, as runs without a checkpoint are by
``checkpoints``; outputs recorded on other images or under another preprocessing are refused,
`assign_sources`); ``auto``, the default, reads the recorded outputs of the runs that have them
and recorded them on the dataset's images and preprocessing, and evaluates the models of the
others (a run with neither is skipped), when recorded outputs can serve, and evaluates every
model otherwise. Both give the same values on a run that has both (tests/test_predict_recorded.py),
and the store says which rows came from where (its ``source`` attribute and ``recorded`` array),
so a store of both is never a silent mix.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from heldout.data.fingerprint import images_digest
from heldout.data.preprocessing import InputPreprocessing
from heldout.data.protocol import Dataset
from heldout.errors import HeldoutError, PredictError
from heldout.evaluate import check_run_dataset, model_requirement
from heldout.experiment import (
    OUTPUT_SPLITS,
    OUTPUTS,
    RECORDED,
    AuxArrays,
    ModelRequirement,
    NoRunsError,
    RecordedInputs,
    RecordedOutputs,
    Run,
    Skipped,
    load_recorded_inputs,
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


@dataclasses.dataclass(frozen=True)
class SplitInputs:
    """What a store's rows are computed on: the dataset's images of its split and their input
    preprocessing (`split_inputs`, once per call), compared with what each run's outputs were
    recorded on (`heldout.experiment.RecordedInputs`) before they are read.

    Attributes:
      dataset: the dataset's name, for messages.
      split: the store's split.
      images: `heldout.data.fingerprint.images_digest` of the split; None when the dataset
        does not hold its images in memory (then no recorded outputs are read).
      preprocessing: the dataset's `heldout.data.preprocessing.InputPreprocessing`.
    """

    dataset: str
    split: str
    images: str | None
    preprocessing: InputPreprocessing

    def differs(self, recorded: RecordedInputs) -> str:
        """How the outputs recorded on `recorded` differ from what this store's rows are
        computed on: a phrase following "recorded", e.g. ``on other test images (uint8 [500,
        8, 8, 1] sha256:1a2b3c4d5e6f... here, ... recorded)`` or ``on the test images under
        another input preprocessing (scale 8 here, 16 recorded)``; '' when they are the same
        images, preprocessed the same way."""
        split, theirs = self.split, recorded.images(self.split)
        if self.images is None:
            return (f"on {split} images that {self.dataset} cannot compare (no digest: it does "
                    "not hold its images in memory)")
        if not theirs:
            return f"without a digest of the {split} images"
        if theirs != self.images:
            return (f"on other {split} images ({_short(self.images)} here, {_short(theirs)} "
                    "recorded)")
        here, there = self.preprocessing.to_dict(), recorded.preprocessing.to_dict()
        fields = [f"{k} {_value(here[k])} here, {_value(there[k])} recorded"
                  for k in here if here[k] != there[k]]
        if fields:
            return f"on the {split} images under another input preprocessing ({'; '.join(fields)})"
        return ""


def split_inputs(dataset: Dataset, split: str) -> SplitInputs:
    """The `SplitInputs` of a loaded dataset's split (hashes its images: once per call)."""
    return SplitInputs(dataset.name, split, images_digest(dataset, split),
                       dataset.input_preprocessing())


def _short(digest: str) -> str:
    return digest[: digest.index("sha256:") + 19] + "..." if "sha256:" in digest else digest


def _value(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclasses.dataclass(frozen=True)
class Sources:
    """Where each run's store row comes from (`assign_sources`).

    Attributes:
      runs: the runs of the store, in order (the selected runs less `skipped`).
      recorded: per run, True when its row is read from its recorded outputs.
      skipped: runs whose recorded outputs cannot serve and that have no model either.
      note: why recorded outputs some runs have are not read ('' when all are).
    """

    runs: tuple[Run, ...]
    recorded: tuple[bool, ...]
    skipped: tuple[Skipped, ...] = ()
    note: str = ""


def assign_sources(plan: str, runs: Sequence[Run], inputs: SplitInputs | None,
                   backend: str) -> Sources:
    """Decides, before the store is made, which runs' rows are read from their recorded
    outputs: under `EITHER` (``auto``) the runs whose ``outputs.npz`` was recorded on the
    store's images and preprocessing (`SplitInputs.differs`); the others are evaluated from
    their models, and those without a model are skipped. A file that cannot be read counts as
    recorded on them: reading it fails its run alone (`recorded_rows`). Under ``recorded``,
    every run; under ``checkpoints``, none.

    Args:
      plan: of `plan_source`.
      runs: the selected runs (`source_requirement(plan)`).
      inputs: the store's `split_inputs` (needed unless `plan` is ``checkpoints``).
      backend: the backend whose model the other runs need.

    Raises:
      PredictError: under ``recorded``, a run whose outputs were recorded on other
        images or under another preprocessing (one line naming its outputs.npz, the split and
        what differs).
      NoRunsError: under `EITHER`, no run left.
    """
    if plan == "checkpoints":
        return Sources(tuple(runs), (False,) * len(runs))
    differing: dict[Run, str] = {}
    for run in runs:
        if not run.has_outputs():
            continue
        try:
            why = inputs.differs(load_recorded_inputs(run.outputs_path))
        except HeldoutError:
            continue  # a bad file: its run fails alone when read
        if why and plan == "recorded":
            raise PredictError(f"`source`=recorded: {run.outputs_path}: recorded {why}; "
                               "use `source`=checkpoints")
        if why:
            differing[run] = why
    if plan == "recorded" or not differing:
        return Sources(tuple(runs), tuple(reads_recorded(plan, run) for run in runs))
    model = model_requirement(backend)
    lacking = ModelRequirement(f"recorded outputs of these {inputs.split} images or "
                               f"{model.what}", model.present)
    kept, skipped = [], []
    for run in runs:
        if run in differing and not model.present(run):
            skipped.append(Skipped(run.path, f"recorded outputs {differing[run]} and "
                                   f"{model.missing}", lacking))
        else:
            kept.append(run)
    count, first = len(differing), next(iter(differing.values()))
    note = (f"{count} {'run' if count == 1 else 'runs'} recorded them "
            + (first if len(set(differing.values())) == 1
               else f"on other images or under another preprocessing, e.g. {first}"))
    if not kept:
        raise NoRunsError(f"no runs with {lacking.what} among the {len(runs)} selected: "
                          f"{note}", [run for run in runs if run in differing])
    return Sources(tuple(kept), tuple(run.has_outputs() and run not in differing
                                      for run in kept), tuple(skipped), note)


def recorded_rows(run: Run, dataset: Dataset, split: str, outputs: Sequence[str],
                  views: Sequence[str], inputs: SplitInputs) -> tuple[
                      dict[str, np.ndarray], AuxArrays, RecordedOutputs]:
    """A run's store rows from its recorded outputs, without a model.

    The dataset is checked against the run first, as before an evaluation
    (`heldout.evaluate.check_run_dataset`: its sizes and the run's dataset fingerprint, which
    a run with recorded outputs must carry), then the split's images and preprocessing against
    those the outputs were recorded on (`SplitInputs.differs`): the fingerprint is the labels
    only, and another evaluation set with the same labels must not be read as the runs' own.
    ``correct`` is ``prediction == label``; the cross-check of the store then compares it
    with the aux arrays, as for evaluated runs (it cannot catch other images: the recorded
    ``correct`` comes from the same logits as the aux arrays').

    Args:
      run: the run.
      dataset: the runs' own dataset (``split`` loaded).
      split: ``train`` or ``test``.
      outputs: the store's outputs (``logits`` is not recorded: see `why_not_recorded`).
      views: the store's views: () or (``identity``,), whose column is ``logit_confidence``.
      inputs: `split_inputs` of `dataset` and `split` (computed once per call).

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
    why = inputs.differs(recorded.inputs)
    if why:
        raise PredictError(f"{recorded.source}: recorded {why}; use `source`=checkpoints")
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
