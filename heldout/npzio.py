"""Safe `.npz` reading and atomic writing.

Every array file this library reads comes from a download or another machine, so it is opened
with ``allow_pickle=False`` and read eagerly: a truncated or corrupt file fails here, with its
path, instead of half-way through a computation. Every file it writes goes to a temporary name
in the same directory and is renamed into place, so an interrupted write never leaves a file
that looks complete (`heldout.atomic`).
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping

import numpy as np

from heldout.atomic import atomic_write
from heldout.errors import HeldoutError


class NpzError(HeldoutError, ValueError):
    """A `.npz` file is unreadable, incomplete or holds arrays of the wrong kind."""


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads every array of an `.npz` file into memory, refusing pickled objects.

    Args:
      path: the `.npz` file.

    Returns:
      A dict from key to array.

    Raises:
      NpzError: the file is missing, not a zip archive, truncated, or holds an object array
        (which could only be read by unpickling untrusted data).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise NpzError(f"{path}: no such file")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04" and magic != b"PK\x05\x06":
        kind = "a single .npy array" if magic == b"\x93NUM" else "not a zip archive"
        raise NpzError(f"{path}: not an .npz file ({kind}; found first bytes {magic!r})")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise NpzError(
                f"{path}: holds an object array, which can only be read by unpickling; "
                "refused (allow_pickle=False)"
            ) from e
        raise NpzError(f"{path}: unreadable .npz ({e})") from e
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise NpzError(f"{path}: truncated or corrupt .npz ({type(e).__name__}: {e})") from e


def save_npz_atomic(
    path: str | os.PathLike, arrays: Mapping[str, np.ndarray], compress: bool = False
) -> None:
    """Writes `arrays` to `path` as `.npz` through a temporary file and a rename.

    Args:
      path: destination; its directory is created if needed.
      arrays: key to array; object arrays are refused.
      compress: use `np.savez_compressed`.

    Raises:
      NpzError: an array has dtype object.
    """
    for key, value in arrays.items():
        if np.asarray(value).dtype == object:
            raise NpzError(f"{os.fspath(path)}: key {key!r} is an object array; refusing to write")
    save = np.savez_compressed if compress else np.savez
    with atomic_write(path) as f:
        save(f, **{k: np.asarray(v) for k, v in arrays.items()})
