"""heldout.pytorch: the PyTorch models against the fixture runs' logits and aux arrays, and
against the Sonnet models with random weights; bad tensor files; the TorchBackend."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from heldout.experiment import open_experiment, run_from_path
from heldout.export.tensorfile import (
    Metadata,
    TensorFileError,
    read_tensor_file,
    write_tensor_file,
)
from heldout.npzio import load_npz, save_npz_atomic
from heldout.pytorch import build_torch_model, exported_shapes, load_model

RUNS = ("0.25/3", "0.5/0", "0.5/7")


@pytest.fixture(scope="session")
def exported(fmnist_exported):
    """The fixture runs exported as safetensors and npz (one export per test session)."""
    return fmnist_exported


@pytest.fixture(scope="module")
def images(fmnist_dir):
    data = np.load(fmnist_dir / "dataset.npz")
    return {s: data[f"{s}__image"].astype(np.float32) / 255 for s in ("train", "test")}, {
        s: data[f"{s}__label"] for s in ("train", "test")}


def _logits(model, x_nhwc, batch=100):
    model = model.to(memory_format=torch.channels_last)
    with torch.inference_mode():
        return np.concatenate([
            model(torch.from_numpy(x_nhwc[i:i + batch]).permute(0, 3, 1, 2)).numpy()
            for i in range(0, len(x_nhwc), batch)])


@pytest.fixture(scope="module")
def fixture_models(exported):
    """(format, run name) -> the PyTorch model loaded from the exported ``model.<format>``."""
    models = {(fmt, name): load_model(exported / name / f"model.{fmt}")
              for fmt in ("safetensors", "npz") for name in RUNS}
    assert not any(model.training for model in models.values())
    return models


@pytest.fixture(scope="module")
def fixture_logits(fixture_models, images):
    """(run name, split) -> float32 logits [N, 10] of the PyTorch model loaded from the
    exported ``model.safetensors``, for every fixture run on both splits."""
    x, _ = images
    return {(name, split): _logits(fixture_models["safetensors", name], x[split], batch=500)
            for name in RUNS for split in ("train", "test")}


@pytest.mark.slow  # its fixture: 3 runs x 2,500 images, about 25 s on 2 cores
def test_fixture_runs_every_run_both_splits(fixture_logits, exported, fmnist_dir, images):
    expected = np.load(fmnist_dir / "expected_logits.npz")
    _, labels = images
    for run in open_experiment(exported).runs():
        aux = run.load_aux()
        for split in ("train", "test"):
            logits = fixture_logits[run.name, split]
            assert logits.shape == (len(labels[split]), 10)
            np.testing.assert_allclose(logits, expected[f"{run.name}/logits_{split}"],
                                       rtol=0, atol=1e-4, err_msg=f"{run.name} {split}")
            np.testing.assert_array_equal(np.argmax(logits, 1) == labels[split],
                                          aux.correctness(split), err_msg=f"{run.name} {split}")


@pytest.mark.slow
def test_npz_models_are_the_safetensors_models(fixture_models, fixture_logits, images):
    """Through ``model.npz``: for every run, the same parameters bit for bit (names, shapes,
    values) as through ``model.safetensors``, and bit-equal logits on 50 images of each split,
    so its logits on every run and split are the ones checked above (same module, same
    weights, same deterministic forward pass) without evaluating 7,500 images twice."""
    x, _ = images
    for name in RUNS:
        a = fixture_models["safetensors", name].state_dict()
        b = fixture_models["npz", name].state_dict()
        assert sorted(a) == sorted(b)
        for key, value in a.items():
            torch.testing.assert_close(b[key], value, rtol=0, atol=0)
        for split in ("train", "test"):
            some = np.sort(np.random.default_rng(7).choice(len(x[split]), 50, replace=False))
            npz_logits = _logits(fixture_models["npz", name], x[split][some])
            np.testing.assert_array_equal(
                npz_logits, _logits(fixture_models["safetensors", name], x[split][some]))
            # Other batches than the full pass's: equal up to the convolutions' summation order.
            np.testing.assert_allclose(npz_logits, fixture_logits[name, split][some], rtol=1e-6,
                                       atol=1e-5)


def _randomize(model, seed):
    """Random values for every variable of a Sonnet model, moving statistics far from 0/1."""
    from heldout.checkpoint import model_variable_keys

    rng = np.random.default_rng(seed)
    for key, var in model_variable_keys(model).items():
        shape = tuple(var.shape)
        if "/_counter/" in key:
            continue
        if key.split("/")[-3] == "w" and len(shape) == 4:
            value = rng.normal(0, np.sqrt(2.0 / np.prod(shape[:3])), shape)
        elif key.split("/")[-3] == "w":
            value = rng.normal(0, 1.0 / np.sqrt(shape[0]), shape)
        elif "moving_variance" in key:
            value = rng.uniform(0.5, 2.0, shape)
        elif "moving_mean" in key:
            value = rng.normal(0.2, 0.3, shape)
        elif key.split("/")[-3] == "scale":
            value = rng.uniform(0.5, 1.2, shape)
        else:  # offset, b
            value = rng.normal(0, 0.2, shape)
        var.assign(value.astype(np.float32))


def _against_sonnet(tmp_path, arch, num_classes, input_shape, batch, fmt="safetensors"):
    from heldout.export.runs import model_tensors
    from heldout.models import build_model, create_variables

    model = build_model(arch, num_classes)
    create_variables(model, input_shape)
    _randomize(model, 0)
    path = tmp_path / f"model.{fmt}"
    write_tensor_file(path, model_tensors(model), Metadata(arch, num_classes, input_shape))
    x = np.random.default_rng(1).uniform(0, 1, (batch, *input_shape)).astype(np.float32)
    import tensorflow as tf

    expected = model(tf.constant(x), is_training=False).numpy()
    logits = _logits(load_model(path), x)
    scale = np.abs(expected).max()
    assert scale > 1e-2  # not a degenerate network
    np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-3 * scale)
    np.testing.assert_array_equal(np.argmax(logits, 1), np.argmax(expected, 1))


@pytest.mark.slow
def test_resnet50_against_sonnet(tmp_path):
    _against_sonnet(tmp_path, "resnet50", 1000, (224, 224, 3), 3)


@pytest.mark.slow
def test_small_inception_100_classes_against_sonnet(tmp_path):
    _against_sonnet(tmp_path, "small_inception", 100, (32, 32, 3), 8, fmt="npz")


def test_mlp_against_sonnet(tmp_path):
    _against_sonnet(tmp_path, "mlp", 10, (28, 28, 1), 16)


def _random_file(tmp_path, tensors=None, metadata=True, name="model.safetensors"):
    model = build_torch_model("small_inception", 10, (32, 32, 3))
    if tensors is None:
        rng = np.random.default_rng(0)
        tensors = {k: rng.normal(0, 0.1, s).astype(np.float32)
                   for k, s in exported_shapes(model).items()}
    path = tmp_path / name
    meta = Metadata("small_inception", 10, (32, 32, 3))
    if metadata:
        write_tensor_file(path, tensors, meta)
    else:
        from safetensors.numpy import save_file

        save_file(dict(tensors), str(path))
    return path, tensors


def test_bad_tensor_files(tmp_path):
    path, good = _random_file(tmp_path)
    load_model(path)
    renamed = dict(good)
    renamed["stage2/_body/3/conv3x3/bn/scal"] = renamed.pop("stage2/_body/3/conv3x3/bn/scale")
    with pytest.raises(TensorFileError, match=r"1 missing: stage2/_body/3/conv3x3/bn/scale; "
                       r"1 unexpected: stage2/_body/3/conv3x3/bn/scal$"):
        load_model(_random_file(tmp_path, renamed)[0])
    missing = {k: v for k, v in good.items() if k != "_pred/b"}
    with pytest.raises(TensorFileError, match=r"1 missing: _pred/b$"):
        load_model(_random_file(tmp_path, missing)[0])
    shaped = dict(good, **{"conv1/conv/w": np.zeros((3, 3, 96, 3), np.float32)})
    with pytest.raises(TensorFileError, match=r"tensor conv1/conv/w has shape \(3, 3, 96, 3\), "
                       r"expected \(3, 3, 3, 96\)"):
        load_model(_random_file(tmp_path, shaped)[0])
    with pytest.raises(TensorFileError, match="float32"):
        load_model(_random_file(tmp_path, dict(good, **{"_pred/b": np.zeros(10)}),
                                metadata=False)[0])


def test_architecture_inferred_or_refused(tmp_path):
    path, good = _random_file(tmp_path, metadata=False)
    assert type(load_model(path)).__name__ == "SmallInception"
    odd = {"head/" + k: v for k, v in good.items()}
    path, _ = _random_file(tmp_path, odd, metadata=False)
    with pytest.raises(TensorFileError, match="cannot infer the architecture"):
        load_model(path)
    assert type(load_model(_random_file(tmp_path, good, metadata=False)[0],
                           arch="small_inception")).__name__ == "SmallInception"


@pytest.mark.slow
def test_imports_and_verify_without_tensorflow_sonnet_tfds(tmp_path, exported, fmnist_dir):
    """heldout.pytorch, and `heldout verify --backend torch` (the one evaluation path, its
    cross-check included), run where TensorFlow, Sonnet and TFDS cannot be imported."""
    path, good = _random_file(tmp_path)
    script = textwrap.dedent(f"""
        import sys
        BLOCKED = ("tensorflow", "sonnet", "tensorflow_datasets", "tf_keras", "keras")
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError("blocked " + name)
        sys.meta_path.insert(0, Block())
        import numpy as np, torch
        import heldout.pytorch, heldout.pytorch.backend
        model = heldout.pytorch.load_model({str(path)!r})
        print(tuple(model(torch.zeros(2, 3, 32, 32)).shape))
        from heldout.cli import main
        status = main(["verify", {str(exported / "0.25/3")!r}, "--dataset_npz",
                       {str(fmnist_dir / "dataset.npz")!r}, "--backend", "torch"])
        assert status == 0, status
        assert not [m for m in sys.modules if m.split(".")[0] in BLOCKED]
    """)
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True,
                         text=True).stdout
    assert out.splitlines() == [
        "(2, 10)", "0.25/3: epoch 10 step 100 subset 25.0% accuracy 0.6740 500/500 match",
        "verified 1 run: 500 out of 500 predictions match"]


@pytest.mark.slow
def test_torch_backend_and_stacked(exported, fmnist_dir, fmnist_experiment, images):
    from heldout.errors import HeldoutError
    from heldout.pytorch.backend import StackedModels, TorchBackend

    expected = np.load(fmnist_dir / "expected_logits.npz")
    x = images[0]["test"][:100]
    backend = TorchBackend("small_inception", 10, (32, 32, 3), device="cpu")
    with pytest.raises(HeldoutError, match="no exported model"):
        backend.restore(run_from_path(fmnist_experiment / "0.5/0"))
    restored = backend.restore(run_from_path(exported / "0.5/0"))
    assert (restored.epoch, restored.global_step) == (10, 200)
    assert restored.source.endswith("0.5/0/model.safetensors")
    logits = backend.logits(x)
    assert logits.dtype == np.float32 and logits.shape == (100, 10)
    np.testing.assert_allclose(logits, expected["0.5/0/logits_test"][:100], atol=1e-4, rtol=0)
    bf16 = TorchBackend("small_inception", 10, (32, 32, 3), device="cpu", precision="bf16")
    bf16.restore(run_from_path(exported / "0.5/0"))
    low = bf16.logits(x)
    assert bf16.num_reevaluated > 0 and bf16.num_evaluated == 100
    np.testing.assert_array_equal(np.argmax(low, 1), np.argmax(logits, 1))
    models = [load_model(exported / name / "model.safetensors") for name in RUNS]
    stacked = StackedModels(models, device="cpu").logits(x[:20])
    assert stacked.shape == (3, 20, 10)
    for k, name in enumerate(RUNS):
        np.testing.assert_allclose(stacked[k], expected[f"{name}/logits_test"][:20],
                                   atol=1e-4, rtol=0)


def test_verify_backend_torch_bad_dataset_one_line(exported, fmnist_dir, capsys, tmp_path):
    """The dataset goes through the library's reader: its schema and pixel rule, one line
    each (`heldout verify --backend torch`, which replaced ``python -m heldout.pytorch.verify``)."""
    from heldout.cli import main

    arrays = load_npz(fmnist_dir / "dataset.npz")
    for key, value, message in (
        ("test__label", arrays["test__label"].astype(np.float32),
         "key 'test__label': expected int array [n_test], found float32 [500]"),
        ("test__image", arrays["test__image"].astype(np.float32), "must lie in [0, 1]"),
    ):
        save_npz_atomic(tmp_path / "bad.npz", {**arrays, key: value})
        assert main(["verify", str(exported / "0.25/3"), "--dataset_npz",
                     str(tmp_path / "bad.npz"), "--backend", "torch"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("heldout verify: error: ") and message in err, err
        assert err.count("\n") == 1, err


def test_tensor_file_roundtrip_metadata(tmp_path):
    path, _ = _random_file(tmp_path, name="model.npz")
    meta = read_tensor_file(path).metadata
    assert meta == Metadata("small_inception", 10, (32, 32, 3))


@pytest.mark.slow
def test_cli_verify_backend_torch(exported, fmnist_dir, capsys):
    from heldout.cli import main

    assert main(["verify", str(exported / "0.5/7"), "--dataset_npz",
                 str(fmnist_dir / "dataset.npz"), "--backend", "torch"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["0.5/7: epoch 10 step 200 subset 50.0% accuracy 0.7840 500/500 match",
                   "verified 1 run: 500 out of 500 predictions match"]


def test_torch_backend_never_usable_after_a_failed_restore(exported, fmnist_experiment, images):
    """Like the TensorFlow backend: after a failed restore, logits refuse (one-line
    HeldoutError) instead of giving the previous run's predictions."""
    from heldout.errors import HeldoutError
    from heldout.pytorch.backend import TorchBackend

    backend = TorchBackend("small_inception", 10, (32, 32, 3), device="cpu")
    x = images[0]["test"][:4]
    with pytest.raises(HeldoutError, match="no successfully restored run"):
        backend.logits(x)
    backend.restore(run_from_path(exported / "0.5/0"))
    assert backend.logits(x).shape == (4, 10)
    with pytest.raises(HeldoutError, match="no exported model"):
        backend.restore(run_from_path(fmnist_experiment / "0.5/7"))
    with pytest.raises(HeldoutError, match="no successfully restored run"):
        backend.logits(x)


def test_margin_bound_relative_absolute_and_reevaluated_rows():
    from heldout.pytorch.precision import (
        BOUND_FACTOR,
        PrecisionError,
        margin_bound_for,
        reevaluate_close,
    )

    cpu = torch.device("cpu")
    assert not margin_bound_for("float32", cpu).active
    assert not margin_bound_for("tf32", cpu).active  # TF32 is float32 off CUDA
    assert margin_bound_for("tf32", torch.device("cuda")).relative == BOUND_FACTOR * 2.0**-11
    bound = margin_bound_for("bf16", cpu)
    assert bound.relative == BOUND_FACTOR * 2.0**-8 == 0.09375
    # Row scale max|z| = 10 -> bound 0.9375; = 1 -> 0.09375.
    logits = torch.tensor([[10.0, 9.1, 0.0],     # margin 0.9 < 0.9375: re-evaluated
                           [10.0, 9.0, 0.0],     # margin 1.0: kept
                           [-1.0, 0.95, 0.9],    # scale 1, margin 0.05 < 0.09375: re-evaluated
                           [0.5, -1.0, 0.35]])   # scale 1, margin 0.15: kept
    images = torch.arange(4.0)[:, None]
    asked = []

    def float32_fn(x):
        asked.append(x[:, 0].tolist())
        return torch.full((len(x), 3), 7.0)

    out, n = reevaluate_close(logits.clone(), images, float32_fn, bound)
    assert n == 2 and asked == [[0.0, 2.0]]
    torch.testing.assert_close(out[[0, 2]], torch.full((2, 3), 7.0))
    torch.testing.assert_close(out[[1, 3]], logits[[1, 3]])
    absolute = margin_bound_for("bf16", cpu, 0.1)  # whatever the scale: row 2 only
    assert reevaluate_close(logits.clone(), images, float32_fn, absolute)[1] == 1
    assert asked[-1] == [2.0]
    assert not margin_bound_for("bf16", cpu, 0.0).active  # 0 turns re-evaluation off
    with pytest.raises(PrecisionError, match="margin_bound must be >= 0"):
        margin_bound_for("bf16", cpu, -1.0)
    with pytest.raises(PrecisionError, match="unknown precision 'fp8'"):
        margin_bound_for("fp8", cpu)


@pytest.mark.slow  # 1,500 images in bf16
def test_bf16_close_calls_reevaluated_correct_equals_float32(exported, fmnist_dir, images,
                                                             monkeypatch):
    """bf16 alone flips some fixture predictions; with the default bound those are among the
    re-evaluated ones (counted), and correct equals float32's (the aux arrays) on every run."""
    import heldout.pytorch.backend as tb
    from heldout.pytorch.precision import close_calls, margin_bound_for, reevaluate_close

    unchecked = []  # the bf16 logits before re-evaluation, batch by batch

    def spy(logits, *args):
        unchecked.append(logits.float().numpy().copy())
        return reevaluate_close(logits, *args)

    monkeypatch.setattr(tb, "reevaluate_close", spy)
    expected = np.load(fmnist_dir / "expected_logits.npz")
    x, labels = images
    flips = 0
    for name in RUNS:
        run = run_from_path(exported / name)
        backend = tb.TorchBackend("small_inception", 10, (32, 32, 3), device="cpu",
                                  precision="bf16")
        backend.restore(run)
        unchecked.clear()
        low = np.concatenate([backend.logits(x["test"][i:i + 250]) for i in range(0, 500, 250)])
        raw = np.concatenate(unchecked)
        float32 = expected[f"{name}/logits_test"]
        close = close_calls(torch.from_numpy(raw), margin_bound_for("bf16", backend.device))
        assert backend.num_reevaluated == int(close.sum()) > 0
        assert backend.num_evaluated == 500
        flipped = np.argmax(raw, 1) != np.argmax(float32, 1)
        assert close.numpy()[flipped].all()
        flips += int(flipped.sum())
        np.testing.assert_array_equal(low[~close.numpy()], raw[~close.numpy()])
        np.testing.assert_allclose(low[close.numpy()], float32[close.numpy()], atol=1e-4, rtol=0)
        np.testing.assert_array_equal(np.argmax(low, 1) == labels["test"],
                                      run.load_aux().correctness("test"))
        np.testing.assert_array_equal(np.argmax(low, 1), np.argmax(float32, 1))
    assert flips > 0  # the re-evaluation is what makes correct exact here


# --------------------------------------------------------------------------------------------
# preprocess: uint8 NHWC images to the model's input, as the metadata says (issue 19).


def test_preprocess_imagenet_equals_tensorflow():
    """The ImageNet evaluation preprocessing (centre crop, bilinear resize, mean and std) in
    PyTorch gives the pixels of heldout.data.imagenet's TensorFlow pipeline, from the decoded
    image on, up to the interpolation's float32 rounding (3e-5 seen, in units of the standard
    deviation: under 0.002 grey levels)."""
    import tensorflow as tf

    from heldout.data.imagenet import tfrecords
    from heldout.data.preprocessing import RELEASED
    from heldout.pytorch import preprocess

    pre = tfrecords.DEFAULT_PREPROCESSING
    assert RELEASED["resnet50"] == pre.input_preprocessing()
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, shape, dtype=np.uint8)
              for shape in ((300, 400, 3), (256, 256, 3), (500, 333, 3))]
    got = preprocess(images, RELEASED["resnet50"]).numpy()
    assert got.shape == (3, 3, 224, 224) and got.dtype == np.float32
    for image, ours in zip(images, got, strict=True):
        top, left, side = tfrecords.center_crop_window(*image.shape[:2], pre)
        crop = tf.constant(image)[top:top + side, left:left + side]
        want = tfrecords._normalize(tfrecords._resize(crop, pre), pre).numpy()
        np.testing.assert_allclose(ours.transpose(1, 2, 0), want, rtol=0, atol=1e-4)


def test_preprocess_checks_what_it_is_given(tmp_path):
    from heldout.data.preprocessing import InputPreprocessing, PreprocessingError
    from heldout.pytorch import preprocess

    meta = Metadata("mlp", 10, (8, 8, 1), InputPreprocessing(16.0))
    images = np.arange(2 * 64, dtype=np.uint8).reshape(2, 8, 8, 1) % 17
    x = preprocess(images, meta)
    assert x.shape == (2, 1, 8, 8) and x.dtype == torch.float32
    np.testing.assert_array_equal(x.numpy(), images.transpose(0, 3, 1, 2) / np.float32(16))
    with pytest.raises(PreprocessingError, match=r"are 32x32x3 \(HxWxC\) but the model takes "
                       r"8x8x1"):
        preprocess(np.zeros((2, 32, 32, 3), np.uint8), meta)
    with pytest.raises(PreprocessingError, match="takes uint8 images, found torch.float32"):
        preprocess(images.astype(np.float32), meta)
    unknown = Metadata("mlp", 10, (8, 8, 1), input_preprocessing_source="unknown: why")
    with pytest.raises(PreprocessingError, match=r"is unknown \(unknown: why\); pass one"):
        preprocess(images, unknown)


@pytest.mark.slow
def test_missing_torch_names_the_extra():
    script = textwrap.dedent("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "torch":
                    raise ImportError("No module named 'torch'")
        sys.meta_path.insert(0, Block())
        try:
            import heldout.pytorch
        except ImportError as e:
            print(e)
    """)
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True,
                         text=True).stdout
    assert "heldout.pytorch needs PyTorch" in out and "'torch' extra" in out, out
    assert "pip install -e '.[torch]'" in out, out
