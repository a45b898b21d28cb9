"""CIFAR-100 end to end, offline: TFDS mock data, a 100-class SmallInception chosen from the
dataset, a checkpoint in the release's layout, `heldout verify` and demo.py."""

from __future__ import annotations

import os
import re
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from tfds_helpers import write_metadata

from heldout.cli import main
from heldout.data import DatasetSpec, load_dataset
from heldout.evaluate import make_evaluator_for
from heldout.experiment import make_aux_arrays, write_aux_arrays
from heldout.models import SmallInception, default_arch

ROOT = os.path.join(os.path.dirname(__file__), "..")
REFERENCE = os.path.join(os.path.dirname(__file__), "data", "reference", "checkpoint-variables")
N = 6  # mock examples per split (mock data yields the same examples in train and test)


@pytest.fixture(scope="module")
def cifar100_run(tmp_path_factory):
    """A run of a freshly initialised SmallInception(100), aux arrays from its own predictions."""
    root = tmp_path_factory.mktemp("cifar100")
    data_dir = str(root / "tfds")
    write_metadata(data_dir, "cifar100:3.0.2", {"train": N, "test": N})
    write_metadata(data_dir, "cifar10:3.0.2", {"train": N, "test": N})
    with tfds.testing.mock_data(num_examples=N, data_dir=data_dir):
        dataset = load_dataset(DatasetSpec(dataset="cifar100:3.0.2", data_dir=data_dir),
                               ("train", "test"))
    evaluator = make_evaluator_for(dataset)
    train = evaluator.predict(dataset, "train", progress=False)
    test = evaluator.predict(dataset, "test", progress=False)
    run = root / "cifar100-inception" / "0.7" / "3"
    tf.train.Checkpoint(
        model=evaluator.model, epoch=tf.Variable(np.int64(160)),
        global_step=tf.Variable(np.int64(5600)),
    ).write(str(run / "checkpoints" / "ckpt-160"))
    write_aux_arrays(run / "aux_arrays.npz",
                     make_aux_arrays(np.array([0, 2, 3, 5]), train.correctness, test.correctness))
    return {"dataset": dataset, "evaluator": evaluator, "run": str(run), "data_dir": data_dir,
            "test": test}


def test_dataset_and_model_chosen_from_it(cifar100_run):
    dataset, evaluator = cifar100_run["dataset"], cifar100_run["evaluator"]
    assert dataset.name == "cifar100:3.0.2" and dataset.num_classes == 100
    assert dataset.image_shape == (32, 32, 3) and dataset.num_examples("test") == N
    assert dataset.images["test"].dtype == np.uint8
    assert ((dataset.split_labels("train") >= 0) & (dataset.split_labels("train") < 100)).all()
    assert default_arch(dataset.name, dataset.image_shape) == "small_inception"
    assert isinstance(evaluator.model, SmallInception)
    assert cifar100_run["test"].logits.shape == (N, 100)
    # The checkpoint has the release's keys for the 100-class SmallInception (reference dump of
    # the original code), shapes included.
    reference = {}
    for line in open(os.path.join(REFERENCE, "small_inception_100classes.tsv")):
        if not line.startswith("#"):
            key, shape = line.rstrip("\n").split("\t")
            reference[key] = [int(d) for d in shape.split(",")] if shape else []
    reader = tf.train.load_checkpoint(os.path.join(cifar100_run["run"], "checkpoints",
                                                   "ckpt-160"))
    written = {k: list(v) for k, v in reader.get_variable_to_shape_map().items()
               if k != "_CHECKPOINTABLE_OBJECT_GRAPH"}
    assert written == reference


@pytest.mark.parametrize("split", ["test", "train"])
def test_verify_cifar100_end_to_end(cifar100_run, capsys, split):
    data_dir = cifar100_run["data_dir"]
    with tfds.testing.mock_data(num_examples=N, data_dir=data_dir):
        status = main(["verify", cifar100_run["run"], "--dataset", "cifar100:3.0.2",
                       "--data_dir", data_dir, "--split", split])
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert "0.7/3: epoch 160 step 5600 subset 66.7%" in printed
    assert f"{N}/{N} match" in printed


def test_demo_cifar100(cifar100_run, capsys):
    sys.path.insert(0, ROOT)
    try:
        import demo
    finally:
        sys.path.remove(ROOT)
    data_dir = cifar100_run["data_dir"]
    with tfds.testing.mock_data(num_examples=N, data_dir=data_dir):
        assert demo.main([f"--run_dir={cifar100_run['run']}", "--dataset=cifar100:3.0.2",
                          f"--data_dir={data_dir}", "--split=test"]) == 0
    printed = capsys.readouterr().out
    assert "epoch 160, global step 5600" in printed
    assert f"{N} out of {N} predictions match" in printed


def test_cifar100_run_against_cifar10_fails_clearly(cifar100_run, capsys):
    """The 10-class model chosen from CIFAR-10 does not fit the 100-class checkpoint."""
    data_dir = cifar100_run["data_dir"]
    with tfds.testing.mock_data(num_examples=N, data_dir=data_dir):
        status = main(["verify", cifar100_run["run"], "--dataset", "cifar10:3.0.2",
                       "--data_dir", data_dir, "--split", "test"])
    assert status == 1
    printed = capsys.readouterr().out
    assert "FAILED" in printed
    assert re.search(r"_pred/[wb] has shape \((\d+, )?100,?\) in the checkpoint but "
                     r"\((\d+, )?10,?\) in the model", printed), printed
