"""Shared test fixtures: the reference material in ../shared (CI has it beside the checkout)."""

import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared"
FMNIST = SHARED / "reference" / "fmnist32"


@pytest.fixture(scope="session")
def shared_dir() -> pathlib.Path:
    assert SHARED.is_dir(), f"{SHARED} is missing: tests need ../shared beside the checkout"
    return SHARED


@pytest.fixture(scope="session")
def fmnist_dir(shared_dir) -> pathlib.Path:
    return shared_dir / "reference" / "fmnist32"


@pytest.fixture(scope="session")
def fmnist_experiment(fmnist_dir) -> pathlib.Path:
    return fmnist_dir / "fmnist32-inception"


@pytest.fixture(scope="session")
def fmnist_dataset(fmnist_dir):
    from heldout.data import load_dataset

    return load_dataset(dataset_npz=str(fmnist_dir / "dataset.npz"))
