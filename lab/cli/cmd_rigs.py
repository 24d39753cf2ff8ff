"""``paylab rigs``: placeholder, filled in by the rigs work (registers nothing yet)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``rigs`` commands."""
    return None
