"""The per-step trainer (any architecture of `heldout.models`): one model, one compiled step.

`make_model_trainer` builds a model, its momentum-SGD optimizer and one traced step function;
`train_model_run` trains it for one run from the run's initial weights (`initial_model`), and
`evaluate_logits` gives the logits of every example as `heldout verify` and `heldout predict`
compute them (`evaluate_correctness`: their correctness).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import sonnet as snt
import tensorflow as tf
from tqdm import tqdm

from heldout.data.arrays import ArrayDataset, model_input
from heldout.errors import DivergedError
from heldout.evaluate import Evaluator
from heldout.models import build_model, create_variables
from heldout.train.plan import RunPlan


def initial_model(
    arch: str, num_classes: int, input_shape: Sequence[int], init_seed: int
) -> snt.Module:
    """A freshly initialised model whose weights depend only on `init_seed` (and the TF version).

    Sets TensorFlow's global seed (``tf.random.set_seed(init_seed)``) and builds the model.
    """
    tf.random.set_seed(int(init_seed))
    model = build_model(arch, num_classes)
    create_variables(model, tuple(input_shape))
    return model


@dataclasses.dataclass(frozen=True, eq=False)
class ModelTrainer:
    """One model, its optimizer, counters, compiled training step and evaluator, reused for runs.

    Build with `make_model_trainer`; `reset` loads a run's initial weights, so every run of a
    process shares one traced step function.
    """

    arch: str
    num_classes: int
    input_shape: tuple[int, ...]
    model: snt.Module
    optimizer: snt.optimizers.Momentum
    epoch: tf.Variable
    global_step: tf.Variable
    step_fn: tf.types.experimental.PolymorphicFunction
    evaluator: Evaluator

    def checkpoint(self) -> tf.train.Checkpoint:
        """``tf.train.Checkpoint(model=, epoch=, global_step=, optimizer=)``, as the release."""
        return tf.train.Checkpoint(model=self.model, epoch=self.epoch,
                                   global_step=self.global_step, optimizer=self.optimizer)

    def reset(self, init_seed: int) -> None:
        """Initial weights of seed `init_seed`, zero momentum, epoch and step 0."""
        fresh = initial_model(self.arch, self.num_classes, self.input_shape, init_seed)
        for var, value in zip(self.model.variables, fresh.variables, strict=True):
            var.assign(value)
        for slot in self.optimizer.accumulated_momentum:
            slot.assign(tf.zeros_like(slot))
        self.epoch.assign(0)
        self.global_step.assign(0)

    def train_step(self, images: np.ndarray, labels: np.ndarray) -> float:
        """One momentum-SGD step on a batch (float32 images, int64 labels); returns the loss."""
        return float(self.step_fn(tf.convert_to_tensor(images), tf.convert_to_tensor(labels)))


def make_model_trainer(
    arch: str,
    num_classes: int,
    input_shape: Sequence[int],
    learning_rate: float,
    momentum: float = 0.9,
    jit_compile: bool = False,
) -> ModelTrainer:
    """Builds a model of `arch`, its Momentum optimizer (slots created) and one traced step.

    The step minimises the mean softmax cross-entropy of the batch with ``is_training=True``
    (batch statistics for BatchNorm, whose moving averages are updated) and adds 1 to
    ``global_step``. `jit_compile` compiles the step with XLA (the per-step path does not by
    default: it is the original code's way, and XLA recompiles for every new batch size).
    """
    input_shape = tuple(int(d) for d in input_shape)
    model = build_model(arch, num_classes)
    create_variables(model, input_shape)
    optimizer = snt.optimizers.Momentum(learning_rate, momentum)
    # Creates the momentum slots (an update of zeros changes nothing), so that they exist before
    # the first checkpoint and `reset` can zero them.
    optimizer.apply([tf.zeros_like(v) for v in model.trainable_variables],
                    model.trainable_variables)
    epoch = tf.Variable(np.int64(0), trainable=False)
    global_step = tf.Variable(np.int64(0), trainable=False)

    def step(images, labels):
        with tf.GradientTape() as tape:
            logits = model(images, is_training=True)
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        global_step.assign_add(1)
        return loss

    spec = [tf.TensorSpec([None, *input_shape], tf.float32), tf.TensorSpec([None], tf.int64)]
    predict = tf.function(lambda images: model(images, is_training=False),
                          input_signature=spec[:1])
    return ModelTrainer(arch, num_classes, input_shape, model, optimizer, epoch, global_step,
                        tf.function(step, input_signature=spec, jit_compile=jit_compile),
                        Evaluator(model, input_shape, predict))


def _images(dataset: ArrayDataset, split: str, index: np.ndarray) -> np.ndarray:
    """float32 model input of examples `index` (the same preprocessing as `batches`)."""
    return model_input(dataset.images[split][index], dataset.scale)


def train_model_run(
    trainer: ModelTrainer, dataset: ArrayDataset, plan: RunPlan, progress: bool = False
) -> None:
    """Trains `trainer`'s model for one run (the per-step path), from the run's initial weights.

    Raises:
      DivergedError: the loss of a step is NaN or infinite (naming the run, epoch and step).
    """
    trainer.reset(plan.init_seed)
    labels = dataset.split_labels("train")
    batches = plan.batches()
    with tqdm(total=plan.num_steps, desc=f"run {plan.run_id}", unit="step",
              disable=not progress, leave=False) as bar:
        for epoch in range(plan.epochs):
            steps = batches[epoch * plan.steps_per_epoch:(epoch + 1) * plan.steps_per_epoch]
            for step, index in enumerate(steps):
                index = index[index >= 0]
                loss = trainer.train_step(_images(dataset, "train", index), labels[index])
                if not np.isfinite(loss):
                    raise DivergedError(
                        f"run {plan.run_id}: the training loss became {loss} in epoch "
                        f"{epoch + 1}, step {step + 1}; the run is not written (lower the "
                        "learning rate)"
                    )
                bar.update(1)
            trainer.epoch.assign(epoch + 1)


def evaluate_logits(
    evaluator: Evaluator, dataset: ArrayDataset, batch_size: int = 200
) -> tuple[np.ndarray, np.ndarray]:
    """float32 [n_train, C], float32 [n_test, C]: the logits of every example in dataset order
    (``is_training=False``, the evaluation `heldout verify` and `heldout predict` repeat).

    Raises:
      NonFiniteLogitsError: a logit is NaN or infinite.
    """
    out = []
    for split in ("train", "test"):
        predictions = evaluator.predict(dataset, split, batch_size, progress=False)
        logits = np.empty_like(predictions.logits)
        logits[predictions.index] = predictions.logits
        out.append(logits)
    return out[0], out[1]


def evaluate_correctness(
    evaluator: Evaluator, dataset: ArrayDataset, batch_size: int = 200
) -> tuple[np.ndarray, np.ndarray]:
    """bool [n_train], bool [n_test]: correctness of every example in dataset order (argmax of
    `evaluate_logits` equals the label)."""
    train, test = evaluate_logits(evaluator, dataset, batch_size)
    return (np.argmax(train, axis=1) == dataset.split_labels("train"),
            np.argmax(test, axis=1) == dataset.split_labels("test"))
