"""Our models write checkpoints with exactly the release's keys and shapes."""

import numpy as np
import pytest
import tensorflow as tf

from heldout import models


def _reference(data_dir, name):
    rows = {}
    for line in (data_dir / "reference" / "checkpoint-variables" / name).read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, shape = line.split("\t")
        rows[key] = tuple(int(d) for d in shape.split(",")) if shape else ()
    return rows


def _written(tmp_path, model, input_shape):
    models.create_variables(model, input_shape)
    ckpt = tf.train.Checkpoint(
        model=model,
        epoch=tf.Variable(0, dtype=tf.int64),
        global_step=tf.Variable(0, dtype=tf.int64),
    )
    prefix = ckpt.write(str(tmp_path / "ckpt-0"))
    return {
        k: tuple(s)
        for k, s in tf.train.list_variables(prefix)
        if k != "_CHECKPOINTABLE_OBJECT_GRAPH"
    }


@pytest.mark.parametrize(
    "arch,num_classes,input_shape,tsv",
    [
        ("small_inception", 10, (32, 32, 3), "small_inception_10classes.tsv"),
        ("small_inception", 100, (32, 32, 3), "small_inception_100classes.tsv"),
        # ResNet-50's variables do not depend on the image size; 64x64 keeps the test quick.
        ("resnet50", 1000, (64, 64, 3), "resnet50_1000classes.tsv"),
    ],
)
def test_checkpoint_keys_and_shapes_match_release(
    tmp_path, data_dir, arch, num_classes, input_shape, tsv
):
    expected = _reference(data_dir, tsv)
    written = _written(tmp_path, models.build_model(arch, num_classes), input_shape)
    assert set(written) == set(expected)
    mismatched = {k: (written[k], expected[k]) for k in expected if written[k] != expected[k]}
    assert mismatched == {}


def test_small_inception_output_shape_and_dtype():
    model = models.build_model("small_inception", 10)
    logits = model(tf.zeros([2, 32, 32, 3]), is_training=False)
    assert logits.shape == (2, 10) and logits.dtype == tf.float32


def test_mlp_shapes():
    model = models.build_model("mlp", 10)
    logits = model(tf.zeros([3, 28, 28, 1]), is_training=False)
    assert logits.shape == (3, 10)
    shapes = sorted(tuple(v.shape) for v in model.trainable_variables)
    assert shapes == sorted([(784, 512), (512,), (512, 256), (256,), (256, 10), (10,)])


def test_unknown_architecture():
    with pytest.raises(ValueError, match="unknown architecture 'vgg'"):
        models.build_model("vgg", 10)


def test_is_training_uses_batch_statistics():
    model = models.build_model("small_inception", 10)
    x = tf.random.stateless_uniform([4, 32, 32, 3], seed=(1, 2))
    eval_logits = model(x, is_training=False).numpy()
    train_logits = model(x, is_training=True).numpy()
    assert not np.allclose(eval_logits, train_logits)
