"""Which modules may import TensorFlow (issue 11) or PyTorch (issue 22): the numpy-only layers
never do.

Each module is imported in a fresh interpreter (TensorFlow, once imported, stays in
``sys.modules``), so a module that pulls TensorFlow in through any chain of imports fails here.
"""

import subprocess
import sys

import pytest

# The numpy-only layers and the entry points that must start without TensorFlow: scores from aux
# arrays, published files, fingerprints, stores, exports' tensor files, downloads (with their
# staging and locks), the Dask cluster set-up that the CLI checks before TensorFlow loads, the
# report, and the CLI (which parses its arguments before importing TensorFlow). `heldout.predict`
# imports the evaluation path (`heldout.evaluate`), and tests/test_pytorch.py runs `heldout
# verify --backend torch` with TensorFlow blocked.
NO_TENSORFLOW = [
    "heldout",
    "heldout.errors",
    "heldout.atomic",
    "heldout.npzio",
    "heldout.experiment",
    "heldout.estimate",
    "heldout.privacy",
    "heldout.published",
    "heldout.data",
    "heldout.data.fingerprint",
    "heldout.models.architectures",
    "heldout.predict",
    "heldout.attribution",
    "heldout.export.tensorfile",
    "heldout.release",
    "heldout.release.download",
    "heldout.cluster",
    "heldout.report",
    "heldout.cli",
    "heldout.cli.report",
    "heldout.cli.privacy",
    "heldout.cli.attribution",
]

# The estimators import PyTorch only when a torch product backend is used (torch._int_mm for
# the co-occurrence counts), never at import time; nor does the CLI (and all it imports).
NO_TORCH = ["heldout.estimate", "heldout.experiment", "heldout.cli"]

CHECK = """
import importlib, sys
module, package = sys.argv[1:]
imported = importlib.import_module(module)
if module == "heldout.cli":
    imported.build_parser()  # imports every command's module
found = sorted(m for m in sys.modules if m == package or m.startswith(package + "."))
sys.exit(f"{module} imported {found[:3]}" if found else 0)
"""


@pytest.mark.parametrize("module", NO_TENSORFLOW)
def test_module_imports_no_tensorflow(module):
    done = subprocess.run([sys.executable, "-c", CHECK, module, "tensorflow"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("module", NO_TORCH)
def test_module_imports_no_torch(module):
    done = subprocess.run([sys.executable, "-c", CHECK, module, "torch"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_cli_starts_without_matplotlib():
    """Every command's parser is built without matplotlib (0.8 s of a command's start): the
    report's figures import it when they draw."""
    done = subprocess.run([sys.executable, "-c", CHECK, "heldout.cli", "matplotlib"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_top_level_api_is_lazy_and_resolves():
    code = (
        "import sys, heldout\n"
        "assert 'tensorflow' not in sys.modules\n"
        "from heldout import open_experiment, accumulate, memorization, influence, cscores\n"
        "from heldout.experiment import open_experiment as direct\n"
        "assert heldout.open_experiment is direct\n"
        "assert 'tensorflow' not in sys.modules, 'the numpy-only names imported tensorflow'\n"
        "assert callable(heldout.load_dataset) and 'verify_run' in dir(heldout)\n"
        "try:\n"
        "    heldout.no_such_name\n"
        "except AttributeError as e:\n"
        "    assert 'no_such_name' in str(e)\n"
        "else:\n"
        "    raise SystemExit('heldout.no_such_name did not raise')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_every_top_level_name_resolves():
    # In this process (TensorFlow may be imported here): each lazy name is its module's object.
    import importlib

    import heldout

    for name, module in heldout._LAZY.items():
        assert getattr(heldout, name) is getattr(importlib.import_module(module), name), name
