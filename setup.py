"""Packaging for heldout: heldout training experiments (memorization, influence, C-scores)."""

from setuptools import find_packages, setup

setup(
    name="heldout",
    version="0.1.0",
    description=(
        "Restore, re-evaluate, train and score heldout training experiments "
        "(memorization, influence and C-scores)."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["heldout", "heldout.*"]),
    install_requires=[
        "dm-sonnet>=2.0.2",
        "tensorflow-datasets>=4.9",
        "absl-py",
        "numpy>=1.24",
        "tqdm",
        "matplotlib",
        "pillow",
        # The predictions store (`heldout predict`): zarr v3 groups, filled on Dask workers.
        "zarr>=3",
        "dask[distributed]",
        # Weights of exported models (heldout export, heldout.pytorch).
        "safetensors",
        # heldout.attribution: Student's t for the LDS p-values and intervals (scipy.special).
        "scipy",
    ],
    extras_require={
        "cpu": ["tensorflow-cpu>=2.15"],
        "gpu": ["tensorflow[and-cuda]>=2.15"],
        # The no-download default dataset of the MNIST example (scikit-learn's 8x8 digits).
        "examples": ["scikit-learn"],
        # heldout datamodels --fit lasso (scikit-learn's coordinate descent).
        "attribution": ["scikit-learn"],
        # dattri: the LDS conformance test (tests/test_attribution.py) and its benchmark; it
        # imports torch, hence pinned beside the torch extra's CPU build.
        "dev": ["pytest", "pytest-xdist", "ruff", "scikit-learn", "psutil", "playwright", "xarray",
                "dattri==0.3.0"],
        # heldout.pytorch; pinned: an unpinned torch pulls a CUDA build of several GB.
        "torch": ["torch==2.13.0"],
    },
    entry_points={"console_scripts": ["heldout=heldout.cli:main"]},
)
