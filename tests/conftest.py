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
