"""K MLPs trained at once with stacked weights equal K separately trained MLPs."""

import numpy as np
import pytest
import sonnet as snt
import tensorflow as tf

from heldout.models import build_model, create_variables
from heldout.train import initial_model, make_model_trainer, stacked

SHAPE = (8, 8, 1)
CLASSES = 10
LR, MU = 0.1, 0.9


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    images = rng.random((300, *SHAPE), dtype=np.float32)
    # Learnable labels: a fixed random linear rule, so training moves the weights a lot.
    labels = np.argmax(images.reshape(300, -1) @ rng.standard_normal((64, CLASSES)), axis=1)
    return images, labels.astype(np.int64)


def _batches(rng, k, steps, batch, n, short_last=True):
    """[steps, k, batch] of distinct random positions; the last step partly padded with -1."""
    out = np.stack([np.stack([rng.choice(n, batch, replace=False) for _ in range(k)])
                    for _ in range(steps)])
    if short_last:
        out[-1, :, batch - 5:] = -1
    return out


def _initial(k):
    return stacked.from_models([initial_model("mlp", CLASSES, SHAPE, seed) for seed in range(k)])


def _train_separately(params, images, labels, batches, k):
    """Model k trained alone by heldout.train's per-step trainer (snt.optimizers.Momentum)."""
    trainer = make_model_trainer("mlp", CLASSES, SHAPE, LR, MU)
    stacked.assign_to_model(trainer.model, params, k)
    for slot in trainer.optimizer.accumulated_momentum:
        slot.assign(tf.zeros_like(slot))
    for index in batches[:, k]:
        index = index[index >= 0]
        trainer.train_step(images[index], labels[index])
    weights = [v.numpy() for layer in stacked._linears(trainer.model) for v in (layer.w, layer.b)]
    slots = [s.numpy() for s in stacked.momentum_slots(trainer.model, trainer.optimizer)]
    return weights, slots, trainer


@pytest.mark.slow
@pytest.mark.parametrize("k, jit_compile", [(3, True), (1, True), (2, False)])
def test_k_at_once_equals_separate_training(data, k, jit_compile):
    images, labels = data
    params = _initial(k)
    batches = _batches(np.random.default_rng(k), k, 12, 32, len(images))
    state = stacked.train_stacked(params, images.reshape(len(images), -1), labels, batches, LR,
                                  MU, steps_per_call=5, jit_compile=jit_compile)
    assert state.steps == 12
    for i in range(k):
        weights, slots, trainer = _train_separately(params, images, labels, batches, i)
        got = [a for wb in state.params.select(i) for a in wb]
        got_velocity = [a for wb in state.velocity.select(i) for a in wb]
        moved = max(np.abs(w - w0).max() for w, w0 in
                    zip(weights, [a for wb in params.select(i) for a in wb], strict=True))
        assert moved > 0.05  # Training changed the weights: the comparison means something.
        for a, b in zip(got + got_velocity, weights + slots, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
        # Same predictions: stacked evaluation against the separately trained model's.
        logits = stacked.predict_stacked(state.params, images.reshape(len(images), -1), 128)[i]
        separate = trainer.evaluator.predict(_Arrays(images, labels), "train", 100, False)
        np.testing.assert_allclose(logits, separate.logits, rtol=1e-4, atol=1e-5)
        # Correctness agrees except at float32 ties (top-2 logits within 1e-4).
        top2 = np.sort(separate.logits, axis=1)[:, -2:]
        differ = (np.argmax(logits, 1) == labels) != separate.correctness
        assert np.all(top2[differ, 1] - top2[differ, 0] < 1e-4)
        assert differ.sum() <= 1


class _Arrays:
    """What Evaluator.predict (`heldout.evaluate.evaluate_split`) uses of a heldout dataset."""

    name, num_classes = "arrays", 10

    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def num_examples(self, split):
        return len(self.labels)

    def split_labels(self, split):
        return self.labels

    def batches(self, split, batch_size):
        from heldout.data import Batch

        for s in range(0, len(self.labels), batch_size):
            idx = np.arange(s, min(s + batch_size, len(self.labels)))
            yield Batch(self.images[idx], self.labels[idx], idx)


def test_models_do_not_interact(data):
    """Model 0's trajectory does not depend on what the other models train on."""
    images, labels = data
    x = images.reshape(len(images), -1)
    params = _initial(3)
    rng = np.random.default_rng(5)
    batches = _batches(rng, 3, 6, 16, len(images))
    other = batches.copy()
    other[:, 1:] = _batches(rng, 2, 6, 16, len(images), short_last=False)
    trainer = stacked.make_trainer(params.layer_sizes, 3)
    a = trainer.train(params, x, labels, batches, LR, MU)
    b = trainer.train(params, x, labels, other, LR, MU)  # Same trainer: no retrace needed.
    for wa, wb in zip(a.params.select(0), b.params.select(0), strict=True):
        np.testing.assert_allclose(wa[0], wb[0], rtol=1e-6, atol=1e-7)
    assert not np.allclose(a.params.weights[0][1], b.params.weights[0][1])


def test_padding_only_batch_changes_nothing_but_momentum(data):
    images, labels = data
    params = _initial(2)
    batches = np.full((1, 2, 8), -1)
    state = stacked.train_stacked(params, images.reshape(len(images), -1), labels, batches, LR)
    for a, b in zip(state.params.weights, params.weights, strict=True):
        np.testing.assert_array_equal(a, b)  # zero gradient and zero momentum: no update


def test_round_trip_through_sonnet_modules():
    models = [initial_model("mlp", CLASSES, SHAPE, s) for s in (1, 2)]
    params = stacked.from_models(models)
    assert params.num_models == 2 and params.layer_sizes == (64, 512, 256, 10)
    assert params.weights[0].shape == (2, 64, 512) and params.biases[2].shape == (2, 10)
    target = build_model("mlp", CLASSES)
    create_variables(target, SHAPE)
    stacked.assign_to_model(target, params, 1)
    for a, b in zip(target.variables, models[1].variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    optimizer = snt.optimizers.Momentum(LR, MU)
    velocity = stacked.StackedMLP(tuple(w + 1 for w in params.weights),
                                  tuple(b - 1 for b in params.biases))
    stacked.assign_momentum(target, optimizer, velocity, 0)
    slots = stacked.momentum_slots(target, optimizer)
    np.testing.assert_array_equal(slots[0].numpy(), params.weights[0][0] + 1)
    np.testing.assert_array_equal(slots[1].numpy(), params.biases[0][0] - 1)
    # Initial weights depend on the seed only.
    again = stacked.from_models([initial_model("mlp", CLASSES, SHAPE, 2)])
    np.testing.assert_array_equal(again.weights[0][0], params.weights[0][1])
    assert not np.array_equal(params.weights[0][0], params.weights[0][1])


def test_errors(data):
    images, labels = data
    x = images.reshape(len(images), -1)
    params = _initial(2)
    with pytest.raises(ValueError, match=r"batches must be \[steps, K=2, batch\]"):
        stacked.train_stacked(params, x, labels, np.zeros((3, 1, 4), int), LR)
    with pytest.raises(ValueError, match=r"batch indices must lie in \[-1, 300\)"):
        stacked.train_stacked(params, x, labels, np.full((1, 2, 4), 300), LR)
    with pytest.raises(ValueError, match=r"x must be float32 \[N, 64\]"):
        stacked.train_stacked(params, x[:, :10], labels, np.zeros((1, 2, 4), int), LR)
    with pytest.raises(ValueError, match="trainer holds 3 MLPs"):
        stacked.make_trainer(params.layer_sizes, 3).train(params, x, labels,
                                                          np.zeros((1, 2, 4), int), LR)
    with pytest.raises(ValueError, match="different layer shapes"):
        stacked.from_models([initial_model("mlp", CLASSES, SHAPE, 0),
                             initial_model("mlp", 5, SHAPE, 0)])
    with pytest.raises(ValueError, match="expected the MLP"):
        stacked.from_models([build_model("small_inception", 10)])


def test_default_models_per_step_on_this_machine():
    on_gpu = bool(tf.config.list_physical_devices("GPU"))
    assert stacked.default_models_per_step("mlp") == (128 if on_gpu else 1)
    assert stacked.default_models_per_step("small_inception") == 1
