"""``paylab report``: placeholder, filled in by the report work (registers nothing yet)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``report`` commands."""
    return None
