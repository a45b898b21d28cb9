"""Group training: the runs one process trains together, and what it keeps between groups.

A group is one run of the per-step path (any architecture of `heldout.models`, one compiled
call per step: `heldout.train.trainer`) or K runs of the stacked path (the MLP only, K runs per
step with stacked weights: `heldout.train.stacked`), as `groups_of_runs` cuts a list of
`RunPlan`s. `train_group` trains one group and writes each of its runs through the
run-directory protocol (`heldout.train.rundir`); the in-process path calls it for every group
(`train_groups`), a Dask task for its one group (`heldout.train.fanout`). Both give the same
runs.

A process keeps its dataset, the dataset's fingerprint (and what the runs' recorded outputs are
computed on: `heldout.experiment.RecordedInputs`) and its compiled trainers across groups in
one `ProcessState` (`process_state`; a Dask worker keeps it across tasks).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from heldout.data.arrays import ArrayDataset
from heldout.data.fingerprint import Fingerprint, fingerprint_dataset, images_digest
from heldout.errors import DivergedError
from heldout.experiment import (
    CHECKPOINT_DIR,
    OUTPUT_SPLITS,
    AuxArrays,
    RecordedInputs,
    RecordedOutputs,
    Run,
    make_aux_arrays,
)
from heldout.predict.store import run_outputs
from heldout.train import stacked
from heldout.train.config import TrainConfig
from heldout.train.plan import RunPlan
from heldout.train.rundir import TempRun, discard_run, finish_run, run_info, start_run
from heldout.train.trainer import (
    ModelTrainer,
    _images,
    evaluate_logits,
    initial_model,
    make_model_trainer,
    train_model_run,
)


@dataclasses.dataclass(frozen=True, eq=False)
class StackedInputs:
    """The stacked path's model inputs, made once per process, and its compiled trainers.

    Attributes:
      x_train: float32 [n_train, d]: the training images, flattened model input.
      y_train: int64 [n_train].
      x_test: float32 [n_test, d].
      y_test: int64 [n_test].
      x_train_t: `x_train` as a tensor (held on the device across groups).
      y_train_t: int32 [n_train] tensor of `y_train`.
      layer_sizes: the MLP's (input size, hidden sizes..., number of classes).
      jit_compile: whether the trainers' loops are compiled with XLA.
      trainers: group size K -> its compiled `stacked.StackedTrainer`, made on first use
        (`trainer`); a process sees at most two sizes (K, and the last group's).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_train_t: tf.Tensor
    y_train_t: tf.Tensor
    layer_sizes: tuple[int, ...]
    jit_compile: bool
    trainers: dict[int, stacked.StackedTrainer] = dataclasses.field(default_factory=dict)

    def trainer(self, num_models: int) -> stacked.StackedTrainer:
        """The compiled trainer of `num_models` MLPs (made on the first call with that K)."""
        if num_models not in self.trainers:
            self.trainers[num_models] = stacked.make_trainer(self.layer_sizes, num_models,
                                                             self.jit_compile)
        return self.trainers[num_models]


@dataclasses.dataclass(frozen=True, eq=False)
class ProcessState:
    """What a process keeps across groups of runs of one dataset and configuration.

    Build with `process_state`.

    Attributes:
      dataset: the training data (``train`` and ``test`` splits).
      fingerprint: `dataset`'s fingerprint (written into every run's aux arrays).
      inputs: `dataset`'s images digests and input preprocessing (written into every run's
        recorded outputs).
      trainer: the per-step trainer (`make_model_trainer`); the stacked path also uses its
        model to write checkpoints and evaluate the runs that have one.
      stacked: the stacked path's inputs and trainers; None on the per-step path.
      key: what the state was built for (on a Dask worker, its task's dataset spec and
        configuration: a task of another key replaces the state); None in-process.
    """

    dataset: ArrayDataset
    fingerprint: Fingerprint
    inputs: RecordedInputs
    trainer: ModelTrainer
    stacked: StackedInputs | None
    key: object = None


def process_state(dataset: ArrayDataset, config: TrainConfig, key: object = None) -> ProcessState:
    """Builds the trainers for `config` on `dataset` (and, on the stacked path, its inputs)."""
    trainer = make_model_trainer(config.arch, dataset.num_classes, dataset.image_shape,
                                 config.learning_rate, config.momentum)
    inputs = None
    if config.resolved_path() == "stacked":
        inputs = _stacked_inputs(dataset, trainer, config.jit_compile)
    recorded = RecordedInputs(*(images_digest(dataset, split) or "" for split in OUTPUT_SPLITS),
                              dataset.input_preprocessing())
    return ProcessState(dataset, fingerprint_dataset(dataset, ("train", "test")), recorded,
                        trainer, inputs, key)


def _stacked_inputs(dataset: ArrayDataset, trainer: ModelTrainer,
                    jit_compile: bool) -> StackedInputs:
    n_train = dataset.num_examples("train")
    x_train = _images(dataset, "train", np.arange(n_train)).reshape(n_train, -1)
    x_test = _images(dataset, "test", np.arange(dataset.num_examples("test")))
    y_train = dataset.split_labels("train")
    return StackedInputs(
        x_train=x_train, y_train=y_train, x_test=x_test.reshape(len(x_test), -1),
        y_test=dataset.split_labels("test"), x_train_t=tf.convert_to_tensor(x_train),
        y_train_t=tf.convert_to_tensor(y_train.astype(np.int32)),
        layer_sizes=stacked.from_models([trainer.model]).layer_sizes, jit_compile=jit_compile)


def groups_of_runs(plans: Sequence, config: TrainConfig) -> list[list]:
    """The runs trained together: K at a time on the stacked path, one at a time otherwise."""
    k = config.resolved_models_per_step()
    return [list(plans[i:i + k]) for i in range(0, len(plans), k)]


def bar_description(ratio: str, config: TrainConfig) -> str:
    """The description of the progress bar over the runs of a ratio."""
    if config.resolved_path() == "stacked":
        return f"runs at {ratio} ({config.resolved_models_per_step()} per step)"
    return f"runs at {ratio}"


def train_groups(state: ProcessState, ratio: str, ratio_dir: str, plans: Sequence[RunPlan],
                 config: TrainConfig, progress: bool) -> list[Run]:
    """Trains the runs of `plans` in this process, group after group (`groups_of_runs`).

    Returns:
      The runs written (those no other process completed meanwhile).

    Raises:
      DivergedError: a run's loss became non-finite (nothing of its group is written).
    """
    groups = groups_of_runs(plans, config)
    trained = []
    with tqdm(total=len(plans), desc=bar_description(ratio, config), unit="run",
              disable=not progress) as bar:
        for group in groups:
            # Per-step runs show their steps; stacked runs only when there is one group.
            steps = progress and (config.resolved_path() == "per_step" or len(groups) == 1)
            trained += train_group(state, ratio, ratio_dir, group, config, steps)
            bar.update(len(group))
    return trained


def train_group(state: ProcessState, ratio: str, ratio_dir: str, group: Sequence[RunPlan],
                config: TrainConfig, progress: bool) -> list[Run]:
    """Trains a group of runs (`groups_of_runs`) and writes each run that no other process
    completed meanwhile; `progress` shows the steps of the group.

    Raises:
      DivergedError: a run's loss became non-finite (nothing of the group is written).
    """
    train = (_train_stacked_group if config.resolved_path() == "stacked"
             else _train_per_step_run)
    return train(state, ratio, ratio_dir, group, config, progress)


def record_run(
    state: ProcessState, plan: RunPlan, logits: Sequence[np.ndarray], epoch: int,
    global_step: int,
) -> tuple[AuxArrays, RecordedOutputs]:
    """A trained run's aux arrays and recorded outputs, both from its logits on the train and
    test splits (float32 [n, C] each, dataset order), so correctness and outputs agree.

    The outputs are computed as the predictions store computes them
    (`heldout.predict.store.run_outputs`: one definition of ``margin`` and
    ``logit_confidence``), so a store filled from them equals one filled by restoring the
    run's checkpoint; they carry what they were computed on (`ProcessState.inputs`).
    """
    rows = {split: run_outputs(split_logits, state.dataset.split_labels(split),
                               ("margin", "logit_confidence"), "float32")
            for split, split_logits in zip(OUTPUT_SPLITS, logits, strict=True)}
    aux = make_aux_arrays(plan.subsample_idx, rows["train"]["correct"], rows["test"]["correct"],
                          state.fingerprint)
    outputs = RecordedOutputs(
        **{f"{name}_{split}": rows[split][name] for split in OUTPUT_SPLITS
           for name in ("prediction", "margin", "logit_confidence")},
        epoch=int(epoch), global_step=int(global_step), inputs=state.inputs)
    return aux, outputs


def _train_per_step_run(state: ProcessState, ratio, ratio_dir, group, config, progress):
    (plan,) = group
    trainer, dataset = state.trainer, state.dataset
    t0 = time.perf_counter()
    tmp = start_run(ratio_dir, plan.run_id)
    try:
        train_model_run(trainer, dataset, plan, progress)
        logits = evaluate_logits(trainer.evaluator, dataset, config.eval_batch_size)
        aux, outputs = record_run(state, plan, logits, int(trainer.epoch.numpy()),
                                  int(trainer.global_step.numpy()))
        if config.wants_checkpoint(plan.run_id):
            _write_checkpoint(trainer, tmp.path, plan.epochs)
        info = run_info(plan, ratio, config, dataset, aux, time.perf_counter() - t0,
                        "per_step", 1)
        final = os.path.join(ratio_dir, str(plan.run_id))
    except BaseException:
        discard_run(tmp)
        raise
    try:
        finished = finish_run(tmp, final, aux, info, outputs)
    except BaseException:
        discard_run(tmp)
        raise
    return [Run(final, ratio, plan.run_id)] if finished else []


def _write_checkpoint(trainer: ModelTrainer, run_dir: str, epochs: int) -> None:
    prefix = os.path.join(run_dir, CHECKPOINT_DIR, f"ckpt-{epochs}")
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    trainer.checkpoint().write(prefix)


def _train_stacked_group(state: ProcessState, ratio, ratio_dir, group, config, progress):
    k = config.resolved_models_per_step()
    trainer, dataset, inputs = state.trainer, state.dataset, state.stacked
    trained = []
    t0 = time.perf_counter()
    tmps: list[TempRun | None] = [start_run(ratio_dir, plan.run_id) for plan in group]
    try:
        params = stacked.from_models([
            initial_model("mlp", dataset.num_classes, dataset.image_shape, p.init_seed)
            for p in group
        ])
        batches = np.stack([p.batches() for p in group], axis=1)
        result = inputs.trainer(len(group)).train(
            params, inputs.x_train_t, inputs.y_train_t, batches, config.learning_rate,
            config.momentum, steps_per_call=group[0].steps_per_epoch, progress=progress)
        _check_finite_weights(result.params, group)
        if all(config.wants_checkpoint(p.run_id) for p in group):
            train_logits = test_logits = [None] * len(group)  # Evaluated below.
        else:  # float32 [K, n, C]
            train_logits = stacked.predict_stacked(result.params, inputs.x_train)
            test_logits = stacked.predict_stacked(result.params, inputs.x_test)
        seconds = (time.perf_counter() - t0) / len(group)
        for i, (plan, tmp) in enumerate(zip(group, tmps, strict=True)):
            logits = (train_logits[i], test_logits[i])
            if config.wants_checkpoint(plan.run_id):
                stacked.assign_to_model(trainer.model, result.params, i)
                stacked.assign_momentum(trainer.model, trainer.optimizer, result.velocity, i)
                trainer.epoch.assign(plan.epochs)
                trainer.global_step.assign(result.steps)
                # Evaluated as `heldout verify` and `heldout predict` will, so that every
                # prediction matches and the recorded outputs equal the checkpoint's.
                logits = evaluate_logits(trainer.evaluator, dataset, config.eval_batch_size)
                _write_checkpoint(trainer, tmp.path, plan.epochs)
            aux, outputs = record_run(state, plan, logits, plan.epochs, result.steps)
            info = run_info(plan, ratio, config, dataset, aux, seconds, "stacked", k)
            final = os.path.join(ratio_dir, str(plan.run_id))
            finished = finish_run(tmp, final, aux, info, outputs)
            tmps[i] = None  # renamed into place, or removed; its lock released
            if finished:
                trained.append(Run(final, ratio, plan.run_id))
    except BaseException:
        for tmp in tmps:
            if tmp is not None:  # not renamed into place
                discard_run(tmp)
        raise
    return trained


def _check_finite_weights(params: stacked.StackedMLP, group: Sequence[RunPlan]) -> None:
    """Refuses the stacked runs whose weights became NaN or infinite (a non-finite loss makes
    its gradients, and so the weights, non-finite).

    Raises:
      DivergedError: naming the runs.
    """
    finite = np.ones(len(group), bool)
    for array in (*params.weights, *params.biases):
        finite &= np.isfinite(array.reshape(len(group), -1)).all(axis=1)
    if not finite.all():
        bad = [plan.run_id for plan, ok in zip(group, finite, strict=True) if not ok]
        raise DivergedError(
            f"runs {bad}: the training loss became non-finite (NaN or infinite weights after "
            "training); these runs are not written (lower the learning rate)"
        )
