"""Shared test fixtures: the reference material kept in tests/data (see tests/data/README.md)."""

import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Under pytest-xdist each worker process gets one core's share: one thread for TensorFlow's
    # and PyTorch's thread pools (read when they are first imported, after this file), so two
    # workers on two cores do not each run two threads of convolutions against the other's.
    for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(name, "1")

#: Fixtures copied byte for byte from the project's shared reference material.
DATA = pathlib.Path(__file__).resolve().parent / "data"
REFERENCE = DATA / "reference"
PUBLISHED = DATA / "published"
FMNIST = REFERENCE / "fmnist32"


@pytest.fixture(scope="session")
def data_dir() -> pathlib.Path:
    """tests/data: ``reference/`` (written by the original code) and ``published/``."""
    return DATA


@pytest.fixture(scope="session")
def fmnist_dir() -> pathlib.Path:
    return FMNIST


@pytest.fixture(scope="session")
def fmnist_experiment(fmnist_dir) -> pathlib.Path:
    return fmnist_dir / "fmnist32-inception"


@pytest.fixture(scope="session")
def fmnist_dataset(fmnist_dir):
    from heldout.data import DatasetSpec, load_dataset

    return load_dataset(DatasetSpec(dataset_npz=str(fmnist_dir / "dataset.npz")))


@pytest.fixture(scope="session")
def fmnist_idx_dir(fmnist_dir, tmp_path_factory) -> str:
    """The fmnist32 fixture's images as 28x28 Fashion-MNIST IDX files (2,000 train, 500 test),
    written by the test session (see tests/idx_helpers.py)."""
    from idx_helpers import write_fmnist_idx

    return write_fmnist_idx(tmp_path_factory.mktemp("fmnist-idx"), fmnist_dir / "dataset.npz")


@pytest.fixture(scope="session")
def fmnist_exported(fmnist_experiment, tmp_path_factory) -> pathlib.Path:
    """The fmnist32 fixture runs exported once per test session by `heldout export`, in both
    tensor formats: ``<ratio>/<run_id>/model.safetensors`` and ``model.npz`` beside a copy of
    the run's ``aux_arrays.npz`` (an experiment the torch backend evaluates)."""
    from heldout.cli import main

    out = tmp_path_factory.mktemp("fmnist-exported")
    for fmt in ("safetensors", "npz"):
        assert main(["export", str(fmnist_experiment), "--format", fmt, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def digits_experiment(tmp_path_factory) -> pathlib.Path:
    """Two runs of the quick start's MLP on scikit-learn's digits (pixels uint8 / 16), trained
    by `heldout.train` on the stacked path with checkpoints, in ``experiment/``, beside the
    data as trained on in ``dataset.npz`` (the MNIST example's layout). About 5 s."""
    from heldout.data.digits import load_digits
    from heldout.data.npz import save_npz_dataset
    from heldout.train import TrainConfig, train_experiment

    out = tmp_path_factory.mktemp("digits")
    dataset = load_digits()
    save_npz_dataset(out / "dataset.npz", dataset)
    config = TrainConfig(arch="mlp", epochs=3, path="stacked", models_per_step=2,
                         checkpoint_every=1)
    train_experiment(out / "experiment", dataset, 0.7, [0, 1], config, progress=False)
    return out


@pytest.fixture(scope="session")
def digits(tmp_path_factory):
    """(experiment, dataset.npz): 4 MLP runs of scikit-learn's digits at subset ratio 0.5 (1
    epoch, a checkpoint each), trained by `heldout.train` (their aux arrays carry the dataset
    fingerprint), and the dataset written as an ``.npz`` for ``--dataset_npz``."""
    from heldout.data.digits import load_digits
    from heldout.data.npz import save_npz_dataset
    from heldout.train import TrainConfig, train_experiment

    root = tmp_path_factory.mktemp("digits")
    dataset = load_digits()
    train_experiment(root / "experiment", dataset, 0.5, range(4),
                     TrainConfig(arch="mlp", epochs=1, batch_size=64), progress=False)
    save_npz_dataset(root / "dataset.npz", dataset)
    return root / "experiment", root / "dataset.npz"


# The files whose tests take longest, longest first (measured with --durations). Under
# pytest-xdist each worker takes whole files in this order (`--no-loadscope-reorder` in
# pyproject.toml), so the long files start at once and the short ones fill the end.
LONGEST_FIRST = [
    "test_interrupt.py", "test_pytorch.py", "test_predict.py", "test_predict_dask.py",
    "test_mnist_example.py", "test_evaluate.py", "test_readme.py", "test_train_dask.py",
    "test_attribution.py", "test_train.py", "test_predict_recorded.py", "test_report.py",
    "test_non_finite.py", "test_imagenet.py", "test_report_page.py", "test_export.py",
    "test_first_hour.py", "test_predict_digits.py", "test_stacked.py",
]


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable within a file
