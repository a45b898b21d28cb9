"""Per-task lock files: an exclusive `fcntl.flock` that the kernel drops when its process dies.

Used where two processes must not work on the same thing at once (a training run, a streamed
extraction), while a killed process never blocks the next one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os


def try_lock(path: str) -> int | None:
    """An open descriptor holding an exclusive `fcntl.flock` on `path` (created if needed, the
    owner's pid written in it), or None when a live process holds it.

    The kernel releases a lock when its process dies, so a killed process never blocks the
    next one. The file is removed when the lock is released (`unlock`); a lock taken on a file
    another process removed meanwhile is dropped and taken again on the new file.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)


def unlock(path: str, fd: int) -> None:
    """Removes the lock file `path` and releases the lock `fd` from `try_lock`."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
    os.close(fd)
