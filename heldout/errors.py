"""The library's error base: every failure caused by the input (a file, a flag, a dataset)
is a `HeldoutError`, so callers and the CLI can tell it from a bug.

The concrete types (`heldout.npzio.NpzError`, `heldout.experiment.LayoutError`,
`heldout.checkpoint.CheckpointError`, ...) subclass it; most also subclass `ValueError`, as
they did before this base existed, so existing ``except ValueError`` blocks keep working.
"""

from __future__ import annotations


class HeldoutError(Exception):
    """Bad input to heldout: the message says which file or argument, what was expected and
    what was found."""


class InputError(HeldoutError, ValueError):
    """A bad argument (a value out of range, a malformed name or address)."""


class NotFoundError(HeldoutError, KeyError):
    """A name the input does not have (a split, a subset ratio, an experiment): also a
    `KeyError`, so ``except KeyError`` keeps working; the message is not quoted."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
