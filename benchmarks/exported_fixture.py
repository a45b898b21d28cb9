"""The fmnist32 fixture runs exported as safetensors, for the PyTorch benchmarks (which need no
TensorFlow themselves: the export runs once, in a `heldout export` subprocess)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

from heldout.experiment import Run, select_runs

FMNIST = pathlib.Path(__file__).resolve().parents[1] / "tests" / "data" / "reference" / "fmnist32"


def exported_runs(export_dir: str) -> list[Run]:
    """The runs of `export_dir`, exporting the fixture experiment there first if it is missing."""
    if not os.path.isdir(export_dir):
        subprocess.run([sys.executable, "-m", "heldout", "export",
                        str(FMNIST / "fmnist32-inception"), "--format", "safetensors",
                        "--out", export_dir], check=True)
    return select_runs(export_dir).runs()
