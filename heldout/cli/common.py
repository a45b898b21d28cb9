"""Helpers shared by the `heldout` sub-commands."""

from __future__ import annotations


class CommandError(Exception):
    """A user-facing failure: printed as `heldout <command>: error: <message>`, exit status 2."""
