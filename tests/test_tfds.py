"""The TFDS path, offline: `heldout verify` on a CIFAR-10 run with tfds.testing.mock_data."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from heldout import experiment as ex
from heldout.cli import main as cli_main
from heldout.data import DatasetSpec, load_dataset, load_labels
from heldout.evaluate import make_evaluator_for

N = 24  # mock examples per split


def _write_run(run_dir, dataset, seed):
    """A run whose checkpoint is a freshly initialised model and whose aux arrays are its own
    predictions, as the release writes them."""
    tf.random.set_seed(seed)
    evaluator = make_evaluator_for(dataset)
    correct = {s: evaluator.predict(dataset, s, 10, progress=False).correctness
               for s in ("train", "test")}
    subset = np.random.default_rng(seed).choice(N, N // 2, replace=False)
    ex.write_aux_arrays(run_dir / ex.AUX_ARRAYS,
                        ex.make_aux_arrays(subset, correct["train"], correct["test"]))
    tf.train.Checkpoint(
        model=evaluator.model,
        epoch=tf.Variable(1, dtype=tf.int64),
        global_step=tf.Variable(5, dtype=tf.int64),
    ).write(str(run_dir / "checkpoints" / "ckpt-1"))


@pytest.mark.slow
def test_cifar10_mock_verify_end_to_end(tmp_path, capsys):
    with tfds.testing.mock_data(num_examples=N):
        dataset = load_dataset(DatasetSpec(dataset="cifar10:3.0.2"))
        assert (dataset.num_classes, dataset.image_shape) == (10, (32, 32, 3))
        assert dataset.num_examples("train") == N and dataset.images["train"].dtype == np.uint8
        # The same order on every load, and labels alone agree with it.
        again = load_dataset(DatasetSpec(dataset="cifar10:3.0.2"), ("train",))
        np.testing.assert_array_equal(again.images["train"], dataset.images["train"])
        np.testing.assert_array_equal(load_labels(DatasetSpec(dataset="cifar10:3.0.2")),
                                      dataset.labels["train"])
        for run_id in (0, 3):
            _write_run(tmp_path / "cifar10-inception" / "0.5" / str(run_id), dataset, run_id)
        for split in ("train", "test"):
            status = cli_main(["verify", str(tmp_path / "cifar10-inception"),
                               "--dataset", "cifar10:3.0.2", "--split", split])
            out = capsys.readouterr().out
            assert status == 0, out
            assert out.strip().splitlines()[-1] == (
                f"verified 2 runs: {2 * N} out of {2 * N} predictions match")
            assert "0.5/3: epoch 1 step 5 subset 50.0%" in out


def test_unversioned_name_is_resolved_recorded_and_checked():
    # Before the fix `cifar10` loaded the installed version and fingerprinted it with none, so a
    # run of another version was never refused.
    import pytest

    from heldout.data.fingerprint import (
        FingerprintError,
        check_dataset,
        fingerprint_dataset,
        fingerprint_from_labels,
    )

    with tfds.testing.mock_data(num_examples=N):
        with pytest.warns(UserWarning, match="'cifar10' given without a version.*cifar10:3.0.2"):
            dataset = load_dataset(DatasetSpec(dataset="cifar10"), ("train",))
    assert dataset.name == "cifar10:3.0.2"
    assert fingerprint_dataset(dataset).version == "3.0.2"
    other = fingerprint_from_labels("cifar10:3.0.1", {"train": dataset.labels["train"]})
    with pytest.raises(FingerprintError, match="version '3.0.1' vs '3.0.2'"):
        check_dataset(other, dataset, "run 0.5/0")
