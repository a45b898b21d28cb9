"""Shared test fixtures: the reference material kept in tests/data (see tests/data/README.md)."""

import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

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
    from heldout.data import load_dataset

    return load_dataset(dataset_npz=str(fmnist_dir / "dataset.npz"))


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
