"""Atomic file writes: the one way this library writes a file.

A file is written under a temporary name in its target's directory and renamed onto the target
only once it is complete and on disk, so a reader (or a crash) sees either the old file, no file,
or the whole new one, never a truncated one. The steps (POSIX rename semantics):

1. the temporary file ``.<name>.<random>.tmp<suffix>`` is created with ``O_CREAT | O_EXCL``
   and mode 0o666, so the kernel applies the process umask (the umask is never read or
   changed: changing it races with other threads) and no other writer can share the file;
2. the caller writes it (a file object from `atomic_write`, or a path from `atomic_path` for
   writers that want a path, such as matplotlib's ``savefig``);
3. the data is flushed and ``fsync``-ed, the file renamed onto the target (`os.replace`), and
   the directory ``fsync``-ed so the rename itself survives a power cut.

If the block raises, the temporary file is removed and the target is untouched.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from typing import IO


def _create_temporary(path: str, suffix: str) -> str:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    for _ in range(100):
        tmp = os.path.join(
            directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp{suffix}"
        )
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"{directory}: could not create a unique temporary file")


def fsync_directory(directory: str | os.PathLike) -> None:
    """Flushes a directory's entries (a rename into it) to disk; a no-op where unsupported."""
    try:
        fd = os.open(os.fspath(directory), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _commit(tmp: str, path: str) -> None:
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_directory(os.path.dirname(os.path.abspath(path)))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[str]:
    """Yields the path of a new, empty temporary file beside `path`; on success the file is
    fsynced and renamed onto `path`.

    Args:
      path: the destination; its directory is created if needed.
      suffix: ends the temporary name, for writers that choose a format by extension
        (``".png"``) or append one unless present (``np.savez`` and ``".npz"``).

    Yields:
      The temporary file's path. Write it by name (e.g. ``fig.savefig(tmp)``).
    """
    path = os.fspath(path)
    tmp = _create_temporary(path, suffix)
    try:
        yield tmp
        _commit(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike, mode: str = "wb", encoding: str | None = None
) -> Iterator[IO]:
    """Opens a temporary file beside `path` for writing; on success it is flushed, fsynced and
    renamed onto `path`.

    Args:
      path: the destination; its directory is created if needed.
      mode: ``"wb"`` (bytes) or ``"w"`` (text).
      encoding: for text mode; default UTF-8.

    Yields:
      The open file object.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write writes a new file: mode 'wb' or 'w', got {mode!r}")
    with atomic_path(path) as tmp:
        if mode == "w":
            f = open(tmp, "w", encoding=encoding or "utf-8")
        else:
            f = open(tmp, "wb")
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Writes a UTF-8 text file atomically (see `atomic_write`)."""
    with atomic_write(path, "w") as f:
        f.write(text)
