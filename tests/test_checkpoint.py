"""Checkpoint restore: finds the final checkpoint, verifies every variable, refuses misfits."""

import shutil

import numpy as np
import pytest
import tensorflow as tf

from heldout import checkpoint, models

SHAPE = (32, 32, 3)


@pytest.fixture
def run_copy(tmp_path, fmnist_experiment):
    dst = tmp_path / "exp" / "0.5" / "7"
    shutil.copytree(fmnist_experiment / "0.5" / "7", dst)
    return dst


def test_restore_reference_run(fmnist_experiment):
    model = models.build_model("small_inception", 10)
    restored = checkpoint.restore(model, fmnist_experiment / "0.5" / "7", SHAPE)
    assert restored.epoch == 10 and restored.global_step == 200 and restored.note == ""
    assert restored.path.endswith("0.5/7/checkpoints/ckpt-10")
    # Every model variable now holds the checkpoint's value.
    reader = tf.train.load_checkpoint(restored.path)
    for key, var in checkpoint.model_variable_keys(model).items():
        np.testing.assert_array_equal(var.numpy(), reader.get_tensor(key))


def test_restore_prefix_directly(fmnist_experiment):
    model = models.build_model("small_inception", 10)
    prefix = fmnist_experiment / "0.25" / "3" / "checkpoints" / "ckpt-10"
    assert checkpoint.restore(model, prefix, SHAPE).epoch == 10
    with pytest.raises(checkpoint.CheckpointError, match="no such checkpoint"):
        checkpoint.restore(model, str(prefix) + "9", SHAPE)


def test_run_without_checkpoint(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoints/ckpt-<epoch>.index"):
        checkpoint.restore(models.build_model("small_inception", 10), tmp_path / "run", SHAPE)


def test_incomplete_checkpoint(run_copy):
    (run_copy / "checkpoints" / "ckpt-10.data-00000-of-00001").unlink()
    with pytest.raises(checkpoint.CheckpointError, match="incomplete checkpoint"):
        checkpoint.restore(models.build_model("small_inception", 10), run_copy, SHAPE)


def test_corrupt_index(run_copy):
    (run_copy / "checkpoints" / "ckpt-10.index").write_bytes(b"not a checkpoint index")
    with pytest.raises(checkpoint.CheckpointError, match="unreadable checkpoint"):
        checkpoint.restore(models.build_model("small_inception", 10), run_copy, SHAPE)


def test_truncated_data_shard(run_copy):
    data = run_copy / "checkpoints" / "ckpt-10.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:1000])
    model = models.build_model("small_inception", 10)
    models.create_variables(model, SHAPE)
    before = [v.numpy() for v in model.variables]
    with pytest.raises(checkpoint.CheckpointError, match="corrupt data; the model was left unchan"):
        checkpoint.restore(model, run_copy, SHAPE)
    for old, var in zip(before, model.variables, strict=True):
        np.testing.assert_array_equal(old, var.numpy())


def test_10_class_checkpoint_into_100_class_model(fmnist_experiment):
    with pytest.raises(
        checkpoint.CheckpointError,
        match=r"model/_pred/b has shape \(10,\) in the checkpoint but \(100,\) in the model",
    ):
        checkpoint.restore(
            models.build_model("small_inception", 100), fmnist_experiment / "0.5" / "0", SHAPE
        )


def _write(model, prefix, root="model", dtype=tf.float32):
    model(tf.zeros([1, *SHAPE], dtype), is_training=False)  # variables of the input's dtype
    ckpt = tf.train.Checkpoint(
        **{root: model},
        epoch=tf.Variable(3, dtype=tf.int64),
        global_step=tf.Variable(30, dtype=tf.int64),
    )
    return ckpt.write(str(prefix))


def test_100_class_checkpoint_into_10_class_model(tmp_path):
    prefix = _write(models.build_model("small_inception", 100), tmp_path / "checkpoints" / "ckpt-3")
    with pytest.raises(checkpoint.CheckpointError, match=r"\(100,\) in the checkpoint but \(10,\)"):
        checkpoint.restore(models.build_model("small_inception", 10), prefix, SHAPE)


def test_other_architecture_and_root(tmp_path, fmnist_experiment):
    with pytest.raises(checkpoint.CheckpointError, match="are not in the checkpoint.*ResNet50"):
        checkpoint.restore(
            models.build_model("resnet50", 10), fmnist_experiment / "0.5" / "0", SHAPE
        )
    prefix = _write(models.build_model("small_inception", 10), tmp_path / "c" / "ckpt-1", "net")
    with pytest.raises(checkpoint.CheckpointError, match=r"top-level objects are .*'net'"):
        checkpoint.restore(models.build_model("small_inception", 10), prefix, SHAPE)


def test_float64_checkpoint_refused(tmp_path):
    prefix = _write(models.build_model("mlp", 10), tmp_path / "ckpt-1", dtype=tf.float64)
    with pytest.raises(checkpoint.CheckpointError, match="float64 in the checkpoint but float32"):
        checkpoint.restore(models.build_model("mlp", 10), prefix, SHAPE)


def test_several_checkpoints_use_highest_epoch(tmp_path):
    run = tmp_path / "0.5" / "1"
    for epoch in (2, 12, 7):
        model = models.build_model("mlp", 10)
        _write(model, run / "checkpoints" / f"ckpt-{epoch}")
    files, note = checkpoint.find_final_checkpoint(run)
    assert files.epoch == 12 and "3 checkpoints (epochs [2, 7, 12])" in note
    restored = checkpoint.restore(models.build_model("mlp", 10), run, SHAPE)
    assert restored.path.endswith("ckpt-12") and restored.epoch == 3 and restored.note == note


def test_uncalled_model_is_refused_not_half_restored(fmnist_experiment):
    # Sonnet creates most variables on the first call: restoring into a model that was never
    # called would leave its convolutions and linear layer random.
    model = models.build_model("small_inception", 10)
    with pytest.raises(checkpoint.CheckpointError, match="variables under 'model' that the model"):
        checkpoint.restore(model, fmnist_experiment / "0.5" / "0")


def test_smaller_model_with_matching_prefix_is_refused(tmp_path):
    prefix = _write(models.MLP(10, hidden=(64, 32)), tmp_path / "ckpt-1")
    with pytest.raises(checkpoint.CheckpointError, match=r"holds 2 variables under 'model' that"):
        checkpoint.restore(models.MLP(10, hidden=(64,)), prefix, SHAPE)
