"""heldout export: tensor files and SavedModels from the fixture runs (tests/data/reference)."""

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from heldout.cli import main as cli_main
from heldout.experiment import open_experiment

RUNS = ("0.25/3", "0.5/0", "0.5/7")


def main(argv):
    return cli_main(["export", *argv])


@pytest.fixture(scope="session")
def exported(fmnist_exported):
    """The fixture runs exported as safetensors and npz (one export per test session)."""
    return fmnist_exported


def test_tensor_names_values_and_metadata(exported, fmnist_experiment):
    import tensorflow as tf
    from safetensors import safe_open

    from heldout.export.tensorfile import read_tensor_file

    reader = tf.train.load_checkpoint(str(fmnist_experiment / "0.5/7/checkpoints/ckpt-10"))
    keys = [k for k in reader.get_variable_to_shape_map()
            if k.startswith("model/") and "/_counter/" not in k and "/_hidden/" not in k]
    with safe_open(str(exported / "0.5/7/model.safetensors"), "numpy") as f:
        meta = f.metadata()
        names = set(f.keys())
        assert names == {k[len("model/"):-len("/.ATTRIBUTES/VARIABLE_VALUE")] for k in keys}
        for key in keys:
            name = key[len("model/"):-len("/.ATTRIBUTES/VARIABLE_VALUE")]
            value = f.get_tensor(name)
            assert value.dtype == np.float32
            np.testing.assert_array_equal(value, reader.get_tensor(key))
    assert f_shape(exported, "conv1/conv/w") == (3, 3, 3, 96)  # HWIO
    assert f_shape(exported, "_pred/w") == (336, 10)  # [in, out]
    assert meta["architecture"] == "small_inception" and meta["num_classes"] == "10"
    assert meta["input_shape"] == "[32, 32, 3]" and meta["input_layout"] == "NHWC"
    assert meta["input_scaling"] == "uint8 / 255" and float(meta["bn_epsilon"]) == 1e-5
    assert (meta["epoch"], meta["global_step"]) == ("10", "200")
    assert (meta["subset_ratio"], meta["run_id"]) == ("0.5", "7")
    assert meta["source_checkpoint"].endswith("0.5/7/checkpoints/ckpt-10")
    npz = read_tensor_file(exported / "0.5/7/model.npz")
    st = read_tensor_file(exported / "0.5/7/model.safetensors")
    assert npz.metadata == st.metadata and sorted(npz.tensors) == sorted(st.tensors)
    for name in st.tensors:
        np.testing.assert_array_equal(npz.tensors[name], st.tensors[name])


def f_shape(exported, name):
    from safetensors import safe_open

    with safe_open(str(exported / "0.5/7/model.safetensors"), "numpy") as f:
        return tuple(f.get_slice(name).get_shape())


def test_export_tree_is_an_experiment_and_resumes(exported, fmnist_experiment, capsys):
    experiment = open_experiment(exported)
    assert sorted(run.name for run in experiment.runs()) == sorted(RUNS)
    for name in RUNS:
        with open(exported / name / "aux_arrays.npz", "rb") as a, \
                open(fmnist_experiment / name / "aux_arrays.npz", "rb") as b:
            assert a.read() == b.read()
    before = os.stat(exported / "0.5/0/model.safetensors").st_mtime_ns
    capsys.readouterr()
    assert main([str(fmnist_experiment), "--format", "safetensors", "--out", str(exported)]) == 0
    out = capsys.readouterr().out
    assert "0 exported, 3 already there, 0 failed" in out
    assert os.stat(exported / "0.5/0/model.safetensors").st_mtime_ns == before
    assert not [p for p in os.listdir(exported / "0.5/0") if p.startswith(".")]


def test_run_without_checkpoint_reported_others_go_on(tmp_path, fmnist_experiment, capsys):
    exp = tmp_path / "exp"
    shutil.copytree(fmnist_experiment / "0.5/0", exp / "0.5/0")
    (exp / "0.5/1").mkdir(parents=True)
    shutil.copy(fmnist_experiment / "0.5/7/aux_arrays.npz", exp / "0.5/1/aux_arrays.npz")
    out = tmp_path / "out"
    assert main([str(exp), "--format", "npz", "--out", str(out)]) == 1
    text = capsys.readouterr().out
    assert "0.5/1: FAILED:" in text and "no complete checkpoint" in text
    assert "1 exported, 0 already there, 1 failed" in text
    assert (out / "0.5/0/model.npz").is_file() and not (out / "0.5/1").exists()


def test_checkpoint_that_does_not_fit_fails(tmp_path, fmnist_experiment, capsys):
    out = tmp_path / "out"
    run = fmnist_experiment / "0.5/0"
    assert main([str(run), "--format", "npz", "--out", str(out), "--num_classes", "100"]) == 1
    text = capsys.readouterr().out
    assert "0.5/0: FAILED:" in text and "has shape (10,) in the checkpoint but (100,)" in text
    assert not (out / "0.5/0/model.npz").exists()


def test_out_inside_experiment_refused(fmnist_experiment, capsys):
    inside = fmnist_experiment / "exported"
    assert main([str(fmnist_experiment), "--format", "npz", "--out", str(inside)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("heldout export: error: --out") and "inside the experiment" in err
    assert not inside.exists()


def test_architecture_not_inferable(tmp_path):
    from heldout.export.tensorfile import TensorFileError, infer_spec

    with pytest.raises(TensorFileError, match="cannot infer the architecture"):
        infer_spec({"encoder/w": (3, 3)}, "x.safetensors")


@pytest.mark.slow
def test_saved_model_in_a_fresh_process(tmp_path, fmnist_experiment, fmnist_dataset):
    from heldout.evaluate import make_evaluator_for

    out = tmp_path / "out"
    assert main([str(fmnist_experiment / "0.25/3"), "--format", "savedmodel",
                 "--out", str(out)]) == 0
    assert (out / "0.25/3/saved_model/saved_model.pb").is_file()
    assert (out / "0.25/3/aux_arrays.npz").is_file()
    images = np.load(fmnist_experiment.parent / "dataset.npz")["test__image"][:200]
    np.save(tmp_path / "images.npy", images.astype(np.float32) / 255)
    script = textwrap.dedent(f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("heldout", "sonnet"):
                    raise ImportError("blocked " + name)
        sys.meta_path.insert(0, Block())
        import numpy as np, tensorflow as tf
        fn = tf.saved_model.load({str(out / "0.25/3/saved_model")!r}).signatures["serving_default"]
        x = np.load({str(tmp_path / "images.npy")!r})
        np.save({str(tmp_path / "logits.npy")!r}, fn(images=tf.constant(x))["logits"].numpy())
        assert not [m for m in sys.modules if m.split(".")[0] in ("heldout", "sonnet")]
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, cwd=tmp_path)
    evaluator = make_evaluator_for(fmnist_dataset)
    evaluator.restore(fmnist_experiment / "0.25/3")
    expected = evaluator.predict_fn(np.load(tmp_path / "images.npy")).numpy()
    logits = np.load(tmp_path / "logits.npy")
    assert logits.shape == (200, 10)
    np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-5)


# --------------------------------------------------------------------------------------------
# The input preprocessing in the metadata: the run's own (issue 19).


def _metadata(path):
    from heldout.export.tensorfile import read_tensor_file

    return read_tensor_file(path).metadata


def test_metadata_states_the_scaling_the_run_was_trained_with(tmp_path, digits_experiment):
    """The quick start's digits runs were trained on uint8 / 16: the metadata says so, and a
    PyTorch model fed as the metadata says gives every test prediction TensorFlow gave."""
    import torch

    out = tmp_path / "out"
    assert main([str(digits_experiment / "experiment/0.7/0"), "--format", "safetensors",
                 "--out", str(out)]) == 0
    meta = _metadata(out / "0.7/0/model.safetensors")
    assert meta.input_scaling == "uint8 / 16" and meta.input_preprocessing.scale == 16.0
    assert meta.input_preprocessing_source == "run.json" and meta.input_shape == (8, 8, 1)
    from heldout.pytorch import load_model, preprocess

    model = load_model(out / "0.7/0")
    assert model.metadata == meta
    data = np.load(digits_experiment / "dataset.npz")
    with torch.no_grad():
        logits = model(preprocess(data["test__image"], model.metadata)).numpy()
    aux = open_experiment(digits_experiment / "experiment").runs()[0].load_aux()
    np.testing.assert_array_equal(np.argmax(logits, 1) == data["test__label"],
                                  aux.test_correctness())


def test_released_runs_get_the_release_scaling(exported):
    meta = _metadata(exported / "0.5/7/model.safetensors")
    assert meta.input_scaling == "uint8 / 255"
    assert "release" in meta.input_preprocessing_source and "run.json" in (
        meta.input_preprocessing_source)


def test_unknown_scaling_is_not_guessed(tmp_path, digits_experiment, fmnist_dir, capsys):
    """An MLP run without run.json (no MLP runs were released) is exported as 'unknown', with
    the way to record it; a dataset flag records it; a dataset that contradicts a run's own
    run.json is refused."""
    exp = tmp_path / "exp"
    shutil.copytree(digits_experiment / "experiment/0.7/0", exp / "0.7/0")
    (exp / "0.7/0/run.json").unlink()
    assert main([str(exp), "--format", "npz", "--out", str(tmp_path / "a")]) == 0
    meta = _metadata(tmp_path / "a/0.7/0/model.npz")
    assert meta.input_scaling == "unknown" and meta.input_preprocessing is None
    assert "--dataset_npz" in meta.input_preprocessing_source
    assert main([str(exp), "--format", "npz", "--out", str(tmp_path / "b"),
                 "--dataset_npz", str(digits_experiment / "dataset.npz")]) == 0
    meta = _metadata(tmp_path / "b/0.7/0/model.npz")
    assert meta.input_scaling == "uint8 / 16" and "dataset.npz" in (
        meta.input_preprocessing_source)
    capsys.readouterr()
    assert main([str(digits_experiment / "experiment/0.7/1"), "--format", "npz", "--out",
                 str(tmp_path / "c"), "--dataset_npz", str(fmnist_dir / "dataset.npz")]) == 1
    text = capsys.readouterr().out
    assert "0.7/1: FAILED: run 0.7/1 was trained on input uint8 / 16 (its run.json)" in text
    assert "gives uint8 / 255" in text and not (tmp_path / "c/0.7/1").exists()


def test_format_1_metadata_reads_as_unknown(tmp_path):
    """Files of format version 1 said uint8 / 255 for every run: not trusted."""
    from heldout.export.tensorfile import Metadata

    values = {"architecture": "mlp", "num_classes": "10", "input_shape": "[8, 8, 1]",
              "input_scaling": "uint8 / 255", "format_version": "1"}
    meta = Metadata.from_strings("old.safetensors", values)
    assert meta.input_preprocessing is None and meta.input_scaling == "unknown"
    assert "export the run again" in meta.input_preprocessing_source
