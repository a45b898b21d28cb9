"""Packaging: an editable install works from the clone's parent directory (issue 19).

git names a clone of this repository ``heldout``, the package's own name. With setuptools'
default editable install (an import hook appended after the path-based finders) a script run
from the directory holding the clone imported the clone directory itself as an empty namespace
package (``cannot import name '__version__' from 'heldout' (unknown location)``). setup.py's
``package_dir={"": "."}`` makes setuptools put the clone on ``sys.path`` instead, where the
regular package ``heldout/heldout/__init__.py`` wins over the namespace portion.
"""

import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = "import heldout\nfrom heldout import __version__\nprint(__version__, heldout.__file__)\n"


@pytest.mark.slow
def test_editable_install_imports_from_the_clones_parent(tmp_path):
    """`pip install -e .` of a clone named heldout (into a fresh virtual environment; pip
    builds it with setuptools from the package index), then a script in the clone's parent."""
    clone = tmp_path / "heldout"
    clone.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(os.path.join(REPO, name), clone / name)
    shutil.copytree(os.path.join(REPO, "heldout"), clone / "heldout",
                    ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps",
         "--editable", str(clone)], capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr[-3000:]
    (tmp_path / "script.py").write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([python, "script.py"], cwd=tmp_path, capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["0.1.0", str(clone / "heldout" / "__init__.py")]
