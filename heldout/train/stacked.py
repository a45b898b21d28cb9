"""Training K multilayer perceptrons at once: stacked weights with a leading model axis.

Each of the K models has its own weights, momentum, subset and batch order. A step gathers every
model's batch, runs the K forward and backward passes as batched matrix products and applies K
momentum-SGD updates (Sonnet's rule: ``v <- momentum * v + grad``, ``w <- w - lr * v``). The loss is
the sum over models of each model's mean softmax cross-entropy over its own batch, and model k's
weights enter only model k's term, so each model's gradient, and therefore its whole trajectory,
is that of a separate run trained on the same batches (equal up to float32 rounding; see
`tests/test_stacked.py`).

Many steps run inside one compiled call (a `tf.while_loop`, compiled with XLA by default), with
the training images held on the device: only the batch indices cross into the call. Batches of
different sizes (an epoch's last, partial batch) are padded with index -1, which gets weight 0.

The models are the MLP of `heldout.models` (``snt.nets.MLP`` on flattened images, ReLU hidden
layers, linear output); `to_models` copies a stacked model into that module so it can be
evaluated and checkpointed like any other run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import sonnet as snt
import tensorflow as tf
from tqdm import tqdm


@dataclasses.dataclass(frozen=True)
class StackedMLP:
    """The parameters (or momentum buffers) of K MLPs.

    Attributes:
      weights: per layer, float32 [K, fan_in, fan_out].
      biases: per layer, float32 [K, fan_out].
    """

    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]

    @property
    def num_models(self) -> int:
        return int(self.weights[0].shape[0])

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """(input size, hidden sizes..., number of classes)."""
        return (int(self.weights[0].shape[1]), *(int(w.shape[2]) for w in self.weights))

    def select(self, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Model k's ``(w [fan_in, fan_out], b [fan_out])`` per layer."""
        return [(w[k], b[k]) for w, b in zip(self.weights, self.biases, strict=True)]

    def zeros_like(self) -> StackedMLP:
        return StackedMLP(
            tuple(np.zeros_like(w) for w in self.weights),
            tuple(np.zeros_like(b) for b in self.biases),
        )


def _linears(model: snt.Module) -> list[snt.Linear]:
    mlp = getattr(model, "mlp", model)
    layers = getattr(mlp, "_layers", None)  # snt.nets.MLP keeps its Linear layers here.
    if not layers or not all(isinstance(layer, snt.Linear) for layer in layers):
        raise ValueError(
            f"expected the MLP of heldout.models (snt.nets.MLP of snt.Linear layers), "
            f"got {type(model).__name__}"
        )
    return list(layers)


def from_models(models: Sequence[snt.Module]) -> StackedMLP:
    """Stacks the weights of K MLPs (`heldout.models.MLP`, variables created) on a new axis 0.

    Raises:
      ValueError: a model is not such an MLP, or the models' layer shapes differ.
    """
    if not models:
        raise ValueError("no models to stack")
    per_model = [[(layer.w.numpy(), layer.b.numpy()) for layer in _linears(m)] for m in models]
    shapes = {tuple(w.shape for w, _ in layers) for layers in per_model}
    if len(shapes) != 1:
        raise ValueError(f"cannot stack MLPs of different layer shapes: {sorted(shapes)}")
    num_layers = len(per_model[0])
    return StackedMLP(
        tuple(np.stack([p[i][0] for p in per_model]).astype(np.float32) for i in range(num_layers)),
        tuple(np.stack([p[i][1] for p in per_model]).astype(np.float32) for i in range(num_layers)),
    )


def assign_to_model(model: snt.Module, stacked: StackedMLP, k: int) -> None:
    """Copies model k of `stacked` into an MLP module (variables created, same layer shapes).

    Raises:
      ValueError: the module is not such an MLP or its shapes differ.
    """
    layers = _linears(model)
    if len(layers) != len(stacked.weights):
        raise ValueError(f"model has {len(layers)} layers, stacked MLP {len(stacked.weights)}")
    for layer, (w, b) in zip(layers, stacked.select(k), strict=True):
        if tuple(layer.w.shape) != w.shape:
            raise ValueError(
                f"layer {layer.name}: model w {tuple(layer.w.shape)}, stacked {w.shape}"
            )
        layer.w.assign(w)
        layer.b.assign(b)


def momentum_slots(model: snt.Module, optimizer: snt.optimizers.Momentum) -> list[tf.Variable]:
    """The optimizer's momentum variable of each MLP weight and bias, in layer order (w, b).

    Creates the slots (an update of zeros) if the optimizer has not been applied yet; that update
    changes nothing.
    """
    params = list(model.trainable_variables)
    if not optimizer.accumulated_momentum:
        optimizer.apply([tf.zeros_like(p) for p in params], params)
    slot = {id(p): s for p, s in zip(params, optimizer.accumulated_momentum, strict=True)}
    return [slot[id(v)] for layer in _linears(model) for v in (layer.w, layer.b)]


def assign_momentum(
    model: snt.Module, optimizer: snt.optimizers.Momentum, velocity: StackedMLP, k: int
) -> None:
    """Copies model k's momentum buffers into a Sonnet Momentum optimizer of `model`."""
    slots = momentum_slots(model, optimizer)
    values = [v for wb in velocity.select(k) for v in wb]
    for slot, value in zip(slots, values, strict=True):
        slot.assign(value)


@dataclasses.dataclass(frozen=True)
class StackedState:
    """Where `train_stacked` left K models.

    Attributes:
      params: the weights.
      velocity: the momentum buffers.
      steps: steps taken (the same for every model).
    """

    params: StackedMLP
    velocity: StackedMLP
    steps: int


def _forward(weights, biases, x):
    """Logits [K, B, C] of inputs x [K, B, D] (or [B, D] shared by all models)."""
    h = x
    last = len(weights) - 1
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        h = tf.einsum("bi,kio->kbo", h, w) if h.shape.rank == 2 else tf.matmul(h, w)
        h = h + b[:, None, :]
        if i < last:
            h = tf.nn.relu(h)
    return h


def _single_forward(weights, biases, x):
    """Logits [B, C] of one model (K = 1, no model axis): plain matrix products."""
    h = x
    last = len(weights) - 1
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        h = tf.matmul(h, w) + b
        if i < last:
            h = tf.nn.relu(h)
    return h


@dataclasses.dataclass(frozen=True, eq=False)
class StackedTrainer:
    """K MLPs held in variables, and one compiled function that runs many steps on them.

    Build with `make_trainer`; call `train` once per group of K runs. The variables and the
    compiled loop are reused from group to group, so a long sequence of groups traces and
    compiles once (per distinct number of steps per call, with XLA).

    Attributes:
      layer_sizes: (input size, hidden sizes..., number of classes).
      num_models: K.
      jit_compile: whether the loop is compiled with XLA.
    """

    layer_sizes: tuple[int, ...]
    num_models: int
    jit_compile: bool
    _params: tuple[tf.Variable, ...]
    _velocity: tuple[tf.Variable, ...]
    _loop: tf.types.experimental.PolymorphicFunction

    def train(
        self,
        params: StackedMLP,
        x,
        y,
        batches: np.ndarray,
        learning_rate: float,
        momentum: float = 0.9,
        velocity: StackedMLP | None = None,
        steps_per_call: int | None = None,
        progress: bool = False,
    ) -> StackedState:
        """Trains the K models from `params`; see `train_stacked` for the arguments."""
        k = self.num_models
        if params.num_models != k or params.layer_sizes != self.layer_sizes:
            raise ValueError(
                f"trainer holds {k} MLPs {self.layer_sizes}, got {params.num_models} MLPs "
                f"{params.layer_sizes}"
            )
        n = int(x.shape[0])
        if len(x.shape) != 2 or int(x.shape[1]) != self.layer_sizes[0]:
            raise ValueError(f"x must be float32 [N, {self.layer_sizes[0]}], got {tuple(x.shape)}")
        if tuple(y.shape) != (n,):
            raise ValueError(f"y must be [N] = [{n}], got {tuple(y.shape)}")
        batches = np.asarray(batches)
        if batches.ndim != 3 or batches.shape[1] != k:
            raise ValueError(f"batches must be [steps, K={k}, batch], got {batches.shape}")
        if batches.size and (batches.min() < -1 or batches.max() >= n):
            raise ValueError(
                f"batch indices must lie in [-1, {n}), found {batches.min()}..{batches.max()}"
            )
        velocity = params.zeros_like() if velocity is None else velocity
        values = [*params.weights, *params.biases]
        velocity_values = [*velocity.weights, *velocity.biases]
        targets = self._params + self._velocity
        for var, value in zip(targets, values + velocity_values, strict=True):
            var.assign(value[0] if k == 1 else value)
        x_t = tf.convert_to_tensor(x, tf.float32)
        y_t = tf.cast(tf.convert_to_tensor(y), tf.int32)
        lr = tf.constant(learning_rate, tf.float32)
        mu = tf.constant(momentum, tf.float32)
        num_steps = len(batches)
        per_call = max(1, steps_per_call or num_steps)
        with tqdm(total=num_steps, desc=f"train {k} model{'s' * (k > 1)}", unit="step",
                  disable=not progress) as bar:
            for start in range(0, num_steps, per_call):
                chunk = batches[start:start + per_call].astype(np.int32)
                self._loop(x_t, y_t, tf.convert_to_tensor(chunk), lr, mu)
                bar.update(len(chunk))
        num_layers = len(self.layer_sizes) - 1

        def read(variables):
            arrays = [v.numpy()[None] if k == 1 else v.numpy() for v in variables]
            return StackedMLP(tuple(arrays[:num_layers]), tuple(arrays[num_layers:]))

        return StackedState(read(self._params), read(self._velocity), num_steps)


def make_trainer(
    layer_sizes: Sequence[int], num_models: int, jit_compile: bool = True
) -> StackedTrainer:
    """Creates the variables of K MLPs and their compiled multi-step training function.

    Args:
      layer_sizes: (input size, hidden sizes..., number of classes), e.g. (784, 512, 256, 10).
      num_models: K. With K = 1 the model axis is dropped (plain matrix products).
      jit_compile: compile the loop with XLA.
    """
    layer_sizes = tuple(int(s) for s in layer_sizes)
    k = int(num_models)
    if k < 1 or len(layer_sizes) < 2:
        raise ValueError(f"need K >= 1 and at least 2 layer sizes, got {k} and {layer_sizes}")
    lead = () if k == 1 else (k,)
    pairs = list(zip(layer_sizes[:-1], layer_sizes[1:], strict=True))
    shapes = [(*lead, i, o) for i, o in pairs] + [(*lead, o) for _, o in pairs]
    params = tuple(tf.Variable(tf.zeros(s), trainable=False) for s in shapes)
    velocity = tuple(tf.Variable(tf.zeros(s), trainable=False) for s in shapes)
    num_layers = len(pairs)
    forward = _single_forward if k == 1 else _forward

    def loop(x, y, batches, lr, mu):
        for step in tf.range(tf.shape(batches)[0]):
            index = batches[step]  # [K, B]; -1 = padding
            valid = index >= 0
            weight = tf.cast(valid, tf.float32)
            safe = tf.where(valid, index, tf.zeros_like(index))
            if k == 1:
                safe, weight = safe[0], weight[0]
            images = tf.gather(x, safe)  # [K, B, D], or [B, D] for K = 1
            labels = tf.gather(y, safe)
            with tf.GradientTape() as tape:
                tape.watch(params)
                logits = forward(params[:num_layers], params[num_layers:], images)
                ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
                count = tf.maximum(tf.reduce_sum(weight, axis=-1), 1.0)
                loss = tf.reduce_sum(tf.reduce_sum(ce * weight, axis=-1) / count)
            grads = tape.gradient(loss, params)
            for p, v, g in zip(params, velocity, grads, strict=True):
                new_v = mu * v + g
                v.assign(new_v)
                p.assign_sub(lr * new_v)

    compiled = tf.function(loop, jit_compile=jit_compile, reduce_retracing=True)
    return StackedTrainer(layer_sizes, k, jit_compile, params, velocity, compiled)


def train_stacked(
    params: StackedMLP,
    x,
    y,
    batches: np.ndarray,
    learning_rate: float,
    momentum: float = 0.9,
    velocity: StackedMLP | None = None,
    steps_per_call: int | None = None,
    jit_compile: bool = True,
    progress: bool = False,
) -> StackedState:
    """Trains K MLPs with momentum SGD, each on its own batches, many steps per compiled call.

    A convenience wrapper that builds a `StackedTrainer` for one use; build one with
    `make_trainer` and call its `train` to train many groups without recompiling.

    Args:
      params: initial weights of the K models.
      x: float32 [N, D] (numpy or tensor), every training input (flattened images), fed to the
        models as it is.
      y: int [N], labels in ``[0, C)``.
      batches: int [steps, K, B]; ``batches[t, k]`` = the positions in `x` of model k's batch at
        step t; -1 marks padding (a batch smaller than B contributes its mean loss as usual).
      learning_rate, momentum: Sonnet `Momentum` hyperparameters.
      velocity: initial momentum buffers (default zeros).
      steps_per_call: steps run by one compiled call (default: all of them); a smaller value
        gives a finer progress bar.
      jit_compile: compile with XLA.
      progress: show a tqdm progress bar over steps.

    Returns:
      The final weights and momentum buffers (numpy).

    Raises:
      ValueError: shapes that do not fit, or indices outside ``[-1, N)``.
    """
    trainer = make_trainer(params.layer_sizes, params.num_models, jit_compile)
    return trainer.train(params, x, y, batches, learning_rate, momentum, velocity,
                         steps_per_call, progress)


@tf.function(jit_compile=True, reduce_retracing=True)
def _predict_chunk(weights, biases, x):
    return _forward(weights, biases, x)


def predict_stacked(params: StackedMLP, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Logits of every model on every input: float32 [K, N, C].

    Args:
      params: K models.
      x: float32 [N, D] inputs, shared by all models.
      batch_size: inputs per call.
    """
    x = np.asarray(x, np.float32)
    weights = [tf.convert_to_tensor(w) for w in params.weights]
    biases = [tf.convert_to_tensor(b) for b in params.biases]
    out = np.empty((params.num_models, len(x), params.layer_sizes[-1]), np.float32)
    for start in range(0, len(x), batch_size):
        chunk = x[start:start + batch_size]
        if len(chunk) < batch_size and len(x) > batch_size:
            chunk = np.concatenate([chunk, np.zeros((batch_size - len(chunk), x.shape[1]),
                                                    np.float32)])
        logits = _predict_chunk(weights, biases, tf.convert_to_tensor(chunk)).numpy()
        n = min(batch_size, len(x) - start)
        out[:, start:start + n] = logits[:, :n]
    return out


def correctness_stacked(
    params: StackedMLP, x: np.ndarray, y: np.ndarray, batch_size: int = 1000
) -> np.ndarray:
    """bool [K, N]: argmax of each model's logits equals the label."""
    return np.argmax(predict_stacked(params, x, batch_size), axis=-1) == np.asarray(y)[None]


def default_models_per_step(arch: str = "mlp") -> int:
    """The number of models trained per step on this device: 1 on CPU, 128 on a GPU.

    On 2 CPU cores one model in a compiled loop is already close to the cores' FMA limit and
    stacking gains little; a GPU is far from saturated by one 128-example MLP batch, so stacking
    many models fills it (`benchmarks/train_throughput.py` measures both). Only the MLP can be
    stacked; other architectures train one at a time.
    """
    if arch != "mlp":
        return 1
    return 128 if tf.config.list_physical_devices("GPU") else 1
