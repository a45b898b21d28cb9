"""Sub-commands of `heldout` (placeholder, filled by its issue)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds this module's sub-commands to the `heldout` parser."""
