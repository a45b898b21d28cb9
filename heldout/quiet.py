"""TensorFlow without its start-up noise, for the CLI, the scripts and Dask workers (stdlib only).

Importing TensorFlow 2.21 on a CPU writes, from C++ and twice (once per native library):

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 00:00:... port.cc:153] oneDNN custom operations are on. You may see slightly ...

`TF_CPP_MIN_LOG_LEVEL` does not reach these lines: they are written before TensorFlow's C++
logging reads it. `import_tensorflow` therefore sets the environment (`TF_CPP_MIN_LOG_LEVEL=2`
unless the user set it) and Python absl's logging verbosity (WARNING) before the import, sends file
descriptor 2 to a temporary file during the import and writes back every line that is not one
of the known start-up lines, so real warnings and errors still reach the user.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from types import ModuleType

#: Start-up lines of TensorFlow's native libraries that carry no information for a user.
STARTUP_LINES = (
    re.compile(r"^WARNING: All log messages before absl::InitializeLog\(\) is called are "
               r"written to STDERR\s*$"),
    re.compile(r"^[IW]\d{4} [\d:.]+\s+\d+ port\.cc:\d+\] oneDNN custom operations are on\b"),
    re.compile(r"^[IW]\d{4} [\d:.]+\s+\d+ cpu_feature_guard\.cc:\d+\] This TensorFlow binary "
               r"is optimized"),
    re.compile(r"^To enable the following instructions: .* in other operations, rebuild "
               r"TensorFlow with the appropriate compiler flags\.\s*$"),
)


def is_startup_line(line: str) -> bool:
    """True for a line of TensorFlow's start-up noise (see `STARTUP_LINES`)."""
    return any(pattern.match(line) for pattern in STARTUP_LINES)


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """Collects what is written to file descriptor 2 (C++ and Python alike) inside the block,
    then writes it back to stderr without the lines `is_startup_line` matches."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
            kept = [line for line in text.splitlines(keepends=True) if not is_startup_line(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def quiet_environment() -> None:
    """`TF_CPP_MIN_LOG_LEVEL=2` (unless set) and Python absl's logging at WARNING, before
    TensorFlow is imported: INFO lines go, warnings and errors stay."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        from absl import logging as absl_logging
    except ImportError:  # absl comes with TensorFlow; without it there is nothing to set
        return
    absl_logging.set_verbosity(absl_logging.WARNING)


def import_tensorflow() -> ModuleType:
    """Imports TensorFlow (once) with the start-up lines filtered out; returns the module."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    quiet_environment()
    with filtered_stderr():
        import tensorflow
    return tensorflow


def dask_setup(worker) -> None:
    """Dask preload hook (``preload=["heldout.quiet"]``, `heldout.cluster.local_cluster`):
    imports TensorFlow quietly when a worker process starts, before any task imports it."""
    import_tensorflow()
