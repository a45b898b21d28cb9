"""The heldout procedure: train runs on random subsets and write them in the release layout.

For run r at subset ratio s (Feldman & Zhang 2020, Sec. 3, estimators from random subsets): draw
``subsample_idx`` (``round(s * n)`` of the n training examples, without replacement) from the
run's seed, train a freshly initialised model on it with momentum SGD, evaluate every training
example (``train`` = in the subset, ``removed`` = held out) and every test example with
``is_training=False``, and write::

    <experiment>/<ratio>/<run_id>/aux_arrays.npz            (the release's keys and meaning)
    <experiment>/<ratio>/<run_id>/run.json                   (seed, configuration, accuracies)
    <experiment>/<ratio>/<run_id>/checkpoints/ckpt-<epochs>  (model, epoch, global_step, optimizer)

so `heldout inspect`, `heldout verify` and the estimators work on it unchanged. A run is built
in a hidden directory ``<ratio>/.<run_id>.tmp-XXXX`` and renamed into place when complete;
`heldout.experiment.open_experiment` never counts such a directory, so an interrupted run is
simply trained again the next time (complete runs are skipped: resume). Runs can be split over
processes or machines by run id (`parse_run_ids`, `shard_run_ids`); do not give the same run ids
to two processes at once.

Everything random in a run comes from its seed, ``run_seed(seed, ratio, run_id)``: the subset,
the batch order (a fresh permutation of the subset each epoch, last batch smaller) and the
initial weights (TensorFlow's random ops seeded with ``tf.random.set_seed``, which sets
TensorFlow's global seed). `plan_run` gives the subset and batches of any run again.

Two training paths:

- ``per_step``: any architecture of `heldout.models`; one compiled call per step (the original
  code's way).
- ``stacked``: the MLP only; K runs per step with stacked weights, many steps per compiled
  call (`heldout.stacked`). ``auto`` (the default) takes it for the MLP, with K from
  `heldout.stacked.default_models_per_step` (1 on CPU, where one model in a compiled loop is the
  fastest; 128 on a GPU). Both paths give the same runs up to float32 rounding.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Sequence

import numpy as np
import sonnet as snt
import tensorflow as tf
from tqdm import tqdm

from heldout import __version__, stacked
from heldout.data.arrays import ArrayDataset, label_hash
from heldout.data.fingerprint import fingerprint_dataset
from heldout.evaluate import Evaluator
from heldout.experiment import (
    AUX_ARRAYS,
    CHECKPOINT_DIR,
    AuxArrays,
    LayoutError,
    Run,
    make_aux_arrays,
    write_aux_arrays,
)
from heldout.models import ARCHITECTURES, build_model, create_variables

RUN_JSON = "run.json"
PATHS = ("auto", "per_step", "stacked")


class TrainError(ValueError):
    """Training cannot start: a bad configuration, or an experiment directory in the way."""


# --------------------------------------------------------------------------------------------
# Configuration, run ids and seeds.


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How each run is trained.

    Attributes:
      arch: an architecture of `heldout.models` (``mlp``, ``small_inception``, ``resnet50``).
      epochs: passes over the run's subset.
      batch_size: examples per step.
      learning_rate, momentum: momentum SGD (``snt.optimizers.Momentum``), constant rate.
      seed: the experiment's seed; each run's seed is `run_seed(seed, ratio, run_id)`.
      path: ``auto``, ``per_step`` or ``stacked`` (MLP only); see the module docstring.
      models_per_step: K for the stacked path (default: `stacked.default_models_per_step`).
      checkpoint_every: write checkpoints for runs whose id is a multiple of this (1: every
        run; 0: none). Estimates need only the aux arrays; a checkpoint lets `heldout verify`
        re-evaluate the run.
      eval_batch_size: examples per evaluation call (`heldout verify`'s default is 200).
      jit_compile: compile the stacked path's loop with XLA.
    """

    arch: str = "mlp"
    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 0.1
    momentum: float = 0.9
    seed: int = 0
    path: str = "auto"
    models_per_step: int | None = None
    checkpoint_every: int = 1
    eval_batch_size: int = 200
    jit_compile: bool = True

    def __post_init__(self):
        if self.arch not in ARCHITECTURES:
            raise TrainError(f"unknown arch {self.arch!r}; expected one of {list(ARCHITECTURES)}")
        if self.path not in PATHS:
            raise TrainError(f"unknown path {self.path!r}; expected one of {list(PATHS)}")
        if self.path == "stacked" and self.arch != "mlp":
            raise TrainError(f"the stacked path trains the MLP only, not {self.arch!r}")
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise TrainError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.models_per_step is not None and self.models_per_step < 1:
            raise TrainError(f"models_per_step must be >= 1, got {self.models_per_step}")
        if self.checkpoint_every < 0:
            raise TrainError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")
        if not self.learning_rate > 0 or not 0 <= self.momentum < 1:
            raise TrainError(
                f"need learning_rate > 0 and 0 <= momentum < 1, got {self.learning_rate} and "
                f"{self.momentum}"
            )

    def resolved_path(self) -> str:
        """``per_step`` or ``stacked``: the path ``auto`` stands for with this architecture."""
        if self.path != "auto":
            return self.path
        return "stacked" if self.arch == "mlp" else "per_step"

    def resolved_models_per_step(self) -> int:
        if self.resolved_path() == "per_step":
            return 1
        return self.models_per_step or stacked.default_models_per_step(self.arch)

    def wants_checkpoint(self, run_id: int) -> bool:
        return self.checkpoint_every > 0 and run_id % self.checkpoint_every == 0


def ratio_name(subset_ratio: float) -> str:
    """The directory name of a subset ratio, e.g. ``0.7`` (as the release names them).

    Raises:
      TrainError: a ratio outside (0, 1].
    """
    subset_ratio = float(subset_ratio)
    if not 0.0 < subset_ratio <= 1.0:
        raise TrainError(f"subset ratio must lie in (0, 1], got {subset_ratio}")
    return repr(subset_ratio)


def parse_run_ids(spec: str) -> list[int]:
    """Run ids from ``0-499``, ``3``, ``0-9,20-29`` (ranges inclusive), sorted, unique.

    Raises:
      TrainError: anything else, or a range that runs backwards.
    """
    ids: set[int] = set()
    for part in str(spec).replace(" ", "").split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise TrainError(f"bad run ids {spec!r}: expected e.g. '0-499' or '0-9,20,30-39'")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise TrainError(f"bad run ids {spec!r}: range {part} runs backwards")
        ids.update(range(lo, hi + 1))
    return sorted(ids)


def parse_shard(spec: str) -> tuple[int, int]:
    """``i/n`` -> (i, n) with 0 <= i < n: this process's share is every n-th run id from i.

    Raises:
      TrainError: not of the form ``i/n`` with 0 <= i < n.
    """
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(spec))
    if not m or not int(m.group(1)) < int(m.group(2)):
        raise TrainError(f"bad shard {spec!r}: expected i/n with 0 <= i < n, e.g. 0/4")
    return int(m.group(1)), int(m.group(2))


def shard_run_ids(run_ids: Sequence[int], shard: int, num_shards: int) -> list[int]:
    """Shard `shard` of `num_shards` of the sorted run ids: positions shard, shard + n, ..."""
    return sorted(run_ids)[shard::num_shards]


def run_seed(seed: int, subset_ratio: float, run_id: int) -> int:
    """The seed of run `run_id` at a subset ratio in an experiment of seed `seed` (63 bits).

    Derived with `numpy.random.SeedSequence` from (seed, ratio in millionths, run_id), so runs
    at different ratios or ids are independent.
    """
    entropy = [int(seed), int(round(float(subset_ratio) * 1_000_000)), int(run_id)]
    state = np.random.SeedSequence(entropy).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & (2**63 - 1)


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """What a run trains on, all drawn from its seed.

    Attributes:
      run_id: the run's id.
      seed: the run's seed.
      subsample_idx: int64 [round(ratio * num_train)], the subset, in drawing order.
      init_seed: the TensorFlow seed of the initial weights.
      num_train: training-set size.
      epochs, batch_size: as trained.
    """

    run_id: int
    seed: int
    subsample_idx: np.ndarray
    init_seed: int
    num_train: int
    epochs: int
    batch_size: int

    @property
    def steps_per_epoch(self) -> int:
        return -(-len(self.subsample_idx) // self.batch_size)

    @property
    def num_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def batches(self) -> np.ndarray:
        """int64 [num_steps, batch_size]: training-set positions of each step's batch.

        Each epoch is a fresh permutation of the subset cut into batches; the last batch of an
        epoch is padded with -1 when the subset is not a multiple of the batch size.
        """
        rng = _plan_rng(self.seed, self.num_train, len(self.subsample_idx))[0]
        m, b = len(self.subsample_idx), self.batch_size
        out = np.full((self.epochs, self.steps_per_epoch * b), -1, np.int64)
        for epoch in range(self.epochs):
            out[epoch, :m] = self.subsample_idx[rng.permutation(m)]
        return out.reshape(self.num_steps, b)


def _plan_rng(seed: int, num_train: int, size: int) -> tuple[np.random.Generator, np.ndarray, int]:
    rng = np.random.default_rng(seed)
    init_seed = int(rng.integers(2**31 - 1))
    subset = rng.choice(num_train, size=size, replace=False).astype(np.int64)
    return rng, subset, init_seed


def plan_run(
    seed: int, run_id: int, num_train: int, subset_ratio: float, epochs: int, batch_size: int
) -> RunPlan:
    """The subset, initial-weight seed and batch order of a run of seed `seed`.

    Raises:
      TrainError: a ratio outside (0, 1] or a subset that would be empty.
    """
    ratio_name(subset_ratio)
    size = int(round(float(subset_ratio) * num_train))
    if size < 1:
        raise TrainError(f"subset ratio {subset_ratio} of {num_train} examples is empty")
    _, subset, init_seed = _plan_rng(seed, num_train, size)
    return RunPlan(int(run_id), int(seed), subset, init_seed, int(num_train), int(epochs),
                   int(batch_size))


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


def take_train(dataset: ArrayDataset, train_size: int) -> ArrayDataset:
    """The dataset with only its first `train_size` training examples (for quick studies).

    Raises:
      TrainError: `train_size` < 1 or larger than the training split.
    """
    n = dataset.num_examples("train")
    if not 0 < train_size <= n:
        raise TrainError(f"train_size must lie in [1, {n}] for {dataset.name}, got {train_size}")
    images = {**dataset.images, "train": dataset.images["train"][:train_size]}
    labels = {**dataset.labels, "train": dataset.labels["train"][:train_size]}
    ids = dict(dataset.ids)
    if "train" in ids:
        ids["train"] = ids["train"][:train_size]
    return dataclasses.replace(dataset, images=images, labels=labels, ids=ids)


def flip_labels(
    dataset: ArrayDataset, fraction: float, seed: int = 0
) -> tuple[ArrayDataset, np.ndarray]:
    """Label noise: moves ``round(fraction * n_train)`` training labels to another class.

    The examples are drawn without replacement and each new label uniformly from the other
    ``num_classes - 1`` classes, with a generator of seed `seed`. Mislabeled examples are the
    textbook memorized examples (Feldman & Zhang 2020, Sec. 4).

    Returns:
      The dataset with the new training labels, and int64 [k] the flipped positions, sorted.

    Raises:
      TrainError: a fraction outside [0, 1] or fewer than 2 classes.
    """
    if not 0.0 <= fraction <= 1.0 or dataset.num_classes < 2:
        raise TrainError(f"label noise needs a fraction in [0, 1] and >= 2 classes, got "
                         f"{fraction} and {dataset.num_classes} classes")
    labels = dataset.split_labels("train").copy()
    rng = np.random.default_rng(seed)
    flipped = np.sort(rng.choice(len(labels), int(round(fraction * len(labels))), replace=False))
    labels[flipped] = (labels[flipped] + rng.integers(1, dataset.num_classes, len(flipped))) % (
        dataset.num_classes)
    noisy = dataclasses.replace(dataset, labels={**dataset.labels, "train": labels})
    return noisy, flipped.astype(np.int64)


# --------------------------------------------------------------------------------------------
# The per-step trainer (any architecture).


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
    return dataset.images[split][index].astype(np.float32) / np.float32(dataset.scale)


def train_model_run(
    trainer: ModelTrainer, dataset: ArrayDataset, plan: RunPlan, progress: bool = False
) -> None:
    """Trains `trainer`'s model for one run (the per-step path), from the run's initial weights."""
    trainer.reset(plan.init_seed)
    labels = dataset.split_labels("train")
    batches = plan.batches()
    with tqdm(total=plan.num_steps, desc=f"run {plan.run_id}", unit="step",
              disable=not progress, leave=False) as bar:
        for epoch in range(plan.epochs):
            for index in batches[epoch * plan.steps_per_epoch:(epoch + 1) * plan.steps_per_epoch]:
                index = index[index >= 0]
                trainer.train_step(_images(dataset, "train", index), labels[index])
                bar.update(1)
            trainer.epoch.assign(epoch + 1)


def evaluate_correctness(
    evaluator: Evaluator, dataset: ArrayDataset, batch_size: int = 200
) -> tuple[np.ndarray, np.ndarray]:
    """bool [n_train], bool [n_test]: correctness of every example in dataset order
    (``is_training=False``, the evaluation `heldout verify` repeats)."""
    out = []
    for split in ("train", "test"):
        predictions = evaluator.predict(dataset, split, batch_size, progress=False)
        correct = np.zeros(dataset.num_examples(split), bool)
        correct[predictions.index] = predictions.correctness
        out.append(correct)
    return out[0], out[1]


# --------------------------------------------------------------------------------------------
# Writing runs.


def _run_info(
    plan: RunPlan, ratio: str, config: TrainConfig, dataset: ArrayDataset, aux: AuxArrays,
    seconds: float, path: str, models_per_step: int,
) -> dict:
    return {
        "run_id": plan.run_id,
        "subset_ratio": float(ratio),
        "seed": plan.seed,
        "experiment_seed": config.seed,
        "init_seed": plan.init_seed,
        "arch": config.arch,
        "num_classes": dataset.num_classes,
        "dataset": dataset.name,
        "num_train": dataset.num_examples("train"),
        "num_test": dataset.num_examples("test"),
        "train_label_hash": label_hash(dataset.split_labels("train")),
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "learning_rate": config.learning_rate,
        "momentum": config.momentum,
        "steps": plan.num_steps,
        "path": path,
        "models_per_step": models_per_step,
        "accuracy": {split: aux.accuracy(split) for split in ("train", "removed", "test")},
        "seconds": round(seconds, 3),
        "heldout": __version__,
        "tensorflow": tf.__version__,
    }


def _start_run(ratio_dir: str, run_id: int) -> str:
    """Removes stale temporary directories of the run and makes a new one."""
    for stale in glob.glob(os.path.join(glob.escape(ratio_dir), f".{run_id}.tmp-*")):
        shutil.rmtree(stale, ignore_errors=True)
    return tempfile.mkdtemp(prefix=f".{run_id}.tmp-", dir=ratio_dir)


def _finish_run(tmp: str, final: str, aux: AuxArrays, info: dict) -> bool:
    """Writes the aux arrays and run.json into `tmp` and renames it to `final`.

    Returns False (and removes `tmp`) when another process completed the run meanwhile.
    """
    write_aux_arrays(os.path.join(tmp, AUX_ARRAYS), aux)
    with open(os.path.join(tmp, RUN_JSON), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=1)
    _set_permissions(tmp)
    try:
        os.rename(tmp, final)
    except OSError:
        if os.path.isfile(os.path.join(final, AUX_ARRAYS)):
            shutil.rmtree(tmp, ignore_errors=True)
            return False
        raise
    return True


def _set_permissions(run_dir: str) -> None:
    """Gives the run the permissions of a normally created directory (temporary directories and
    files are created private to the user)."""
    umask = os.umask(0o022)
    os.umask(umask)
    for root, _, files in os.walk(run_dir):
        os.chmod(root, 0o777 & ~umask)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~umask)


# The run.json fields of the data and model, reported apart from the training settings (epochs,
# batch size, learning rate, momentum, experiment seed) when a ratio directory's runs differ.
_DATA_FIELDS = ("arch", "num_train", "num_test", "train_label_hash")


def _check_existing_runs(ratio_dir: str, dataset: ArrayDataset, config: TrainConfig) -> None:
    """Refuses to add runs to a ratio directory whose runs were trained on other data, with
    another architecture or with other settings (epochs, batch size, learning rate, momentum,
    experiment seed), read from their run.json; runs without one are not checked."""
    want = {
        "arch": config.arch,
        "num_train": dataset.num_examples("train"),
        "num_test": dataset.num_examples("test"),
        "train_label_hash": label_hash(dataset.split_labels("train")),
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "learning_rate": config.learning_rate,
        "momentum": config.momentum,
        "experiment_seed": config.seed,
    }
    for name in sorted(os.listdir(ratio_dir)):
        path = os.path.join(ratio_dir, name, RUN_JSON)
        if not name.isdigit() or not os.path.isfile(path):
            continue
        try:
            with open(path, encoding="utf-8") as f:
                info = json.load(f)
        except (OSError, ValueError) as e:
            raise TrainError(f"{path}: unreadable run.json ({e})") from e
        differ = {k: (info.get(k), v) for k, v in want.items() if info.get(k, v) != v}
        data = {k: d for k, d in differ.items() if k in _DATA_FIELDS}
        if data:
            detail = ", ".join(f"{k} {old!r} there, {new!r} now" for k, (old, new) in
                               data.items())
            raise TrainError(
                f"{ratio_dir}: run {name} was trained on other data or another model ({detail}); "
                "use another experiment directory"
            )
        if differ:
            detail = ", ".join(f"{k}: {old!r} in its run.json, {new!r} requested"
                               for k, (old, new) in differ.items())
            raise TrainError(
                f"{ratio_dir}: run {name} was trained with other settings ({detail}); resume "
                "with the run's settings, or use another experiment directory"
            )
        return  # One run tells: all runs of a directory are checked the same way when added.


def run_status(ratio_dir: str, run_id: int) -> str:
    """``complete`` (has aux arrays), ``absent``, or ``blocked`` (a directory without them)."""
    final = os.path.join(ratio_dir, str(run_id))
    if os.path.isfile(os.path.join(final, AUX_ARRAYS)):
        return "complete"
    return "blocked" if os.path.exists(final) else "absent"


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What `train_experiment` did.

    Attributes:
      trained: the runs written by this call.
      skipped: run ids that were already complete.
      seconds: wall time.
    """

    trained: tuple[Run, ...]
    skipped: tuple[int, ...]
    seconds: float


def train_experiment(
    experiment_dir: str | os.PathLike,
    dataset: ArrayDataset,
    subset_ratio: float,
    run_ids: Sequence[int],
    config: TrainConfig = TrainConfig(),
    progress: bool = True,
) -> TrainResult:
    """Trains the runs `run_ids` at `subset_ratio` and writes each in the release layout.

    Complete runs (``<ratio>/<run_id>/aux_arrays.npz`` present) are skipped; stale temporary
    directories of the runs to train are removed first.

    Args:
      experiment_dir: the ``<experiment>`` directory (created if needed).
      dataset: an in-memory dataset with ``train`` and ``test`` splits (`heldout.data`).
      subset_ratio: fraction of the training set in each run's subset, in (0, 1].
      run_ids: the runs to train.
      config: how to train.
      progress: show progress bars.

    Returns:
      The runs written and the run ids skipped.

    Raises:
      TrainError: a bad ratio or run id, a dataset that is not an `ArrayDataset` (e.g. a
        TFRecord dataset) or lacks ``train``/``test``, or existing runs of the ratio trained
        on other data, another architecture or with other epochs, batch size, learning rate,
        momentum or experiment seed (their run.json says).
      LayoutError: a run directory that exists without aux arrays (not written by this
        library, which renames a run into place only when complete: remove it).
    """
    start = time.perf_counter()
    if not isinstance(dataset, ArrayDataset):
        raise TrainError(
            f"{getattr(dataset, 'name', dataset)!r}: training needs an in-memory dataset "
            f"(heldout.data.ArrayDataset: --dataset, --dataset_npz or --idx_dir), not a "
            f"{type(dataset).__name__}; TFRecord datasets can be evaluated, not trained on"
        )
    for split in ("train", "test"):
        if split not in dataset.labels or split not in dataset.images:
            raise TrainError(f"{dataset.name}: training needs a {split!r} split with images; "
                             f"it has {dataset.splits}")
    ratio = ratio_name(subset_ratio)
    ratio_dir = os.path.join(os.path.abspath(os.fspath(experiment_dir)), ratio)
    os.makedirs(ratio_dir, exist_ok=True)
    run_ids = sorted({int(r) for r in run_ids})
    if any(r < 0 for r in run_ids):
        raise TrainError(f"run ids must be >= 0, got {run_ids[:3]}...")
    status = {r: run_status(ratio_dir, r) for r in run_ids}
    blocked = [r for r, s in status.items() if s == "blocked"]
    if blocked:
        raise LayoutError(
            f"{ratio_dir}: run directories {blocked[:5]} exist without {AUX_ARRAYS}; they were "
            "not written by heldout.train (which renames a run into place only when complete); "
            "remove them to train these runs"
        )
    _check_existing_runs(ratio_dir, dataset, config)
    skipped = tuple(r for r in run_ids if status[r] == "complete")
    todo = [r for r in run_ids if status[r] == "absent"]
    n_train = dataset.num_examples("train")
    plans = [plan_run(run_seed(config.seed, float(ratio), r), r, n_train, float(ratio),
                      config.epochs, config.batch_size) for r in todo]
    trained: list[Run] = []
    if plans:
        trainer = make_model_trainer(config.arch, dataset.num_classes, dataset.image_shape,
                                     config.learning_rate, config.momentum)
        if config.resolved_path() == "stacked":
            trained = _train_stacked_runs(trainer, dataset, ratio, ratio_dir, plans, config,
                                          progress)
        else:
            trained = _train_per_step_runs(trainer, dataset, ratio, ratio_dir, plans, config,
                                           progress)
    return TrainResult(tuple(trained), skipped, time.perf_counter() - start)


def _train_per_step_runs(trainer, dataset, ratio, ratio_dir, plans, config, progress):
    fingerprint = fingerprint_dataset(dataset, ("train", "test"))
    trained = []
    for plan in tqdm(plans, desc=f"runs at {ratio}", unit="run", disable=not progress):
        t0 = time.perf_counter()
        tmp = _start_run(ratio_dir, plan.run_id)
        try:
            train_model_run(trainer, dataset, plan, progress)
            train_correct, test_correct = evaluate_correctness(
                trainer.evaluator, dataset, config.eval_batch_size)
            aux = make_aux_arrays(plan.subsample_idx, train_correct, test_correct, fingerprint)
            if config.wants_checkpoint(plan.run_id):
                _write_checkpoint(trainer, tmp, plan.epochs)
            info = _run_info(plan, ratio, config, dataset, aux, time.perf_counter() - t0,
                             "per_step", 1)
            final = os.path.join(ratio_dir, str(plan.run_id))
            if _finish_run(tmp, final, aux, info):
                trained.append(Run(final, ratio, plan.run_id))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return trained


def _write_checkpoint(trainer: ModelTrainer, run_dir: str, epochs: int) -> None:
    prefix = os.path.join(run_dir, CHECKPOINT_DIR, f"ckpt-{epochs}")
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    trainer.checkpoint().write(prefix)


def _train_stacked_runs(trainer, dataset, ratio, ratio_dir, plans, config, progress):
    k = config.resolved_models_per_step()
    n_train = dataset.num_examples("train")
    x_train = _images(dataset, "train", np.arange(n_train)).reshape(n_train, -1)
    x_test = _images(dataset, "test", np.arange(dataset.num_examples("test")))
    x_test = x_test.reshape(len(x_test), -1)
    y_train = dataset.split_labels("train")
    y_test = dataset.split_labels("test")
    x_train_t = tf.convert_to_tensor(x_train)
    y_train_t = tf.convert_to_tensor(y_train.astype(np.int32))
    layer_sizes = stacked.from_models([trainer.model]).layer_sizes
    fingerprint = fingerprint_dataset(dataset, ("train", "test"))
    trainers: dict[int, stacked.StackedTrainer] = {}
    trained = []
    with tqdm(total=len(plans), desc=f"runs at {ratio} ({k} per step)", unit="run",
              disable=not progress) as bar:
        for start in range(0, len(plans), k):
            group = plans[start:start + k]
            t0 = time.perf_counter()
            tmps = [_start_run(ratio_dir, plan.run_id) for plan in group]
            try:
                if len(group) not in trainers:
                    trainers[len(group)] = stacked.make_trainer(layer_sizes, len(group),
                                                                config.jit_compile)
                params = stacked.from_models([
                    initial_model("mlp", dataset.num_classes, dataset.image_shape, p.init_seed)
                    for p in group
                ])
                batches = np.stack([p.batches() for p in group], axis=1)
                state = trainers[len(group)].train(
                    params, x_train_t, y_train_t, batches, config.learning_rate,
                    config.momentum, steps_per_call=group[0].steps_per_epoch,
                    progress=progress and len(plans) <= k)
                if all(config.wants_checkpoint(p.run_id) for p in group):
                    train_correct = test_correct = [None] * len(group)  # Evaluated below.
                else:
                    train_correct = stacked.correctness_stacked(state.params, x_train, y_train)
                    test_correct = stacked.correctness_stacked(state.params, x_test, y_test)
                seconds = (time.perf_counter() - t0) / len(group)
                for i, (plan, tmp) in enumerate(zip(group, tmps, strict=True)):
                    correct = (train_correct[i], test_correct[i])
                    if config.wants_checkpoint(plan.run_id):
                        stacked.assign_to_model(trainer.model, state.params, i)
                        stacked.assign_momentum(trainer.model, trainer.optimizer,
                                                state.velocity, i)
                        trainer.epoch.assign(plan.epochs)
                        trainer.global_step.assign(state.steps)
                        # Evaluated as `heldout verify` will, so that every prediction matches.
                        correct = evaluate_correctness(trainer.evaluator, dataset,
                                                       config.eval_batch_size)
                        _write_checkpoint(trainer, tmp, plan.epochs)
                    aux = make_aux_arrays(plan.subsample_idx, *correct, fingerprint)
                    info = _run_info(plan, ratio, config, dataset, aux, seconds, "stacked", k)
                    final = os.path.join(ratio_dir, str(plan.run_id))
                    if _finish_run(tmp, final, aux, info):
                        trained.append(Run(final, ratio, plan.run_id))
            except BaseException:
                for tmp in tmps:
                    shutil.rmtree(tmp, ignore_errors=True)
                raise
            bar.update(len(group))
    return trained


def load_run_info(run: Run | str | os.PathLike) -> dict:
    """The ``run.json`` of a run written by `train_experiment` (seed, configuration, accuracies).

    Raises:
      FileNotFoundError: the run has no run.json (e.g. a released run).
    """
    path = os.path.join(run.path if isinstance(run, Run) else os.fspath(run), RUN_JSON)
    with open(path, encoding="utf-8") as f:
        return json.load(f)
