"""A run whose restored model holds a NaN weight fails everywhere (issue 18): `heldout predict`
(both backends, ``--no_cross_check``), `heldout verify` (both backends), `heldout export` and
demo.py name it, leave it not completed and exit 1.

Before the fix, the TensorFlow run (its first batch-norm scale NaN) gave *finite* logits, since
TensorFlow's max-pool drops NaN on the CPU: prediction 0 nearly everywhere, accuracy 0.11, a
completed run, exit 0. The PyTorch run (one element of the same scale NaN) gave NaN logits,
written as prediction 0 for every example, margin NaN, completed, exit 0. No check of the logits
alone catches the first: the restored weights are checked, once per restore.
"""

import re
import shutil
import sys

import numpy as np
import pytest

from heldout.cli import main as cli_main
from heldout.predict import store as st

RUN = "0.25/3"
SCALE = "conv1/bn/scale"  # the first batch-norm scale of SmallInception
REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def nan_checkpoint(tmp_path_factory, fmnist_experiment):
    """An experiment holding fixture run 0.25/3 with its first batch-norm scale NaN, written as
    a TensorFlow checkpoint in the release layout."""
    import tensorflow as tf

    from heldout.checkpoint import model_variable_keys, restore
    from heldout.models import build_model

    root = tmp_path_factory.mktemp("nan-checkpoint") / "exp"
    run = root / RUN
    run.mkdir(parents=True)
    shutil.copy(fmnist_experiment / RUN / "aux_arrays.npz", run)
    model = build_model("small_inception", 10)
    restored = restore(model, fmnist_experiment / RUN, input_shape=(32, 32, 3))
    scale = model_variable_keys(model)[f"model/{SCALE}/.ATTRIBUTES/VARIABLE_VALUE"]
    scale.assign(np.full(scale.shape, np.nan, np.float32))
    tf.train.Checkpoint(model=model, epoch=tf.Variable(np.int64(restored.epoch)),
                        global_step=tf.Variable(np.int64(restored.global_step))).write(
        str(run / "checkpoints" / f"ckpt-{restored.epoch}"))
    return root


@pytest.fixture(scope="module")
def nan_exported(tmp_path_factory, fmnist_exported):
    """An export tree holding fixture run 0.25/3 with one element of its first batch-norm scale
    NaN in ``model.safetensors``."""
    from heldout.export.tensorfile import read_tensor_file, write_tensor_file

    root = tmp_path_factory.mktemp("nan-exported") / "exp"
    run = root / RUN
    run.mkdir(parents=True)
    shutil.copy(fmnist_exported / RUN / "aux_arrays.npz", run)
    exported = read_tensor_file(fmnist_exported / RUN / "model.safetensors")
    tensors = dict(exported.tensors)
    tensors[SCALE] = tensors[SCALE].copy()
    tensors[SCALE].flat[5] = np.nan
    write_tensor_file(run / "model.safetensors", tensors, exported.metadata)
    return root


def _failed(out: str) -> bool:
    """The run is named as failed because of its non-finite weight."""
    return re.search(rf"^{re.escape(RUN)}: FAILED: .*non-finite.*{SCALE}", out, re.M) is not None


@pytest.mark.parametrize("backend", ["tensorflow", "torch"])
def test_predict_refuses_a_nan_weight(backend, request, fmnist_dir, tmp_path, capsys):
    root = request.getfixturevalue("nan_checkpoint" if backend == "tensorflow" else
                                   "nan_exported")
    out = tmp_path / "s.zarr"
    status = cli_main(["predict", str(root), "--backend", backend, "--dataset_npz",
                       str(fmnist_dir / "dataset.npz"), "--split", "test", "--out", str(out),
                       "--workers", "0", "--no_cross_check"])
    printed = capsys.readouterr().out
    assert status == 1, printed
    assert _failed(printed), printed
    assert f"{out}: 0 of 1 runs completed" in printed
    assert st.completed(out).tolist() == [False]


@pytest.mark.parametrize("backend", ["tensorflow", "torch"])
def test_verify_refuses_a_nan_weight(backend, request, fmnist_dir, capsys):
    root = request.getfixturevalue("nan_checkpoint" if backend == "tensorflow" else
                                   "nan_exported")
    status = cli_main(["verify", str(root / RUN), "--backend", backend, "--dataset_npz",
                       str(fmnist_dir / "dataset.npz")])
    printed = capsys.readouterr().out
    assert status == 1, printed
    assert _failed(printed), printed
    assert printed.strip().splitlines()[-1] == "verified no runs: all 1 failed"


def test_demo_refuses_a_nan_weight(nan_checkpoint, fmnist_dir, capsys):
    sys.path.insert(0, str(REPO))
    try:
        import demo
    finally:
        sys.path.remove(str(REPO))
    status = demo.main([f"--run_dir={nan_checkpoint / RUN}",
                        f"--dataset_npz={fmnist_dir / 'dataset.npz'}"])
    printed = capsys.readouterr().out
    assert status == 1, printed
    assert _failed(printed), printed
    assert "predictions match" not in printed


def test_export_refuses_a_nan_weight(nan_checkpoint, tmp_path, capsys):
    status = cli_main(["export", str(nan_checkpoint), "--format", "npz", "--out",
                       str(tmp_path / "out")])
    printed = capsys.readouterr().out
    assert status == 1, printed
    assert _failed(printed), printed
    assert not (tmp_path / "out" / RUN / "model.npz").exists()
