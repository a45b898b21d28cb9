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
    # Editable installs (pip install -e .) then put the clone itself on sys.path, instead of
    # setuptools' import hook, which comes after the path-based finders: git names the clone
    # `heldout`, and a script run from the clone's parent would import that directory as an
    # empty namespace package (tests/test_packaging.py).
    package_dir={"": "."},
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
        # heldout.privacy: log Phi of the offline LiRA score (scipy.special.log_ndtr), accurate
        # far into the lower tail, where numpy (no erf) cannot go; heldout.attribution:
        # Student's t for the LDS p-values and intervals.
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
        # imports torch (the torch extra; CI pins its CPU build in tests/constraints.txt).
        "dev": ["pytest", "pytest-xdist", "ruff", "import-linter>=2.6", "scikit-learn", "psutil",
                "playwright", "xarray", "dattri==0.3.0"],
        # heldout.pytorch: torch.func (stack_module_state, functional_call, vmap) is in PyTorch
        # 2.0 and later. A range, so the build a user has (CUDA or CPU) is kept; CI pins the CPU
        # build it tests in tests/constraints.txt.
        "torch": ["torch>=2.0"],
    },
    entry_points={"console_scripts": ["heldout=heldout.cli:main"]},
)
