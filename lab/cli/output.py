"""Printing helpers: human lines first, the result last; or a single JSON document."""

from __future__ import annotations

import json
import sys
from typing import Any

from ..protocol.hexutil import hexs

__all__ = ["emit", "hexs"]


def emit(lines: list[str], result: str, *, as_json: bool = False, data: dict[str, Any] | None = None) -> int:
    """Print annotation ``lines`` then ``result`` as the last line, or ``data`` as JSON."""
    if as_json:
        payload = dict(data or {})
        payload.setdefault("result", result)
        sys.stdout.write(json.dumps(payload, indent=2, sort_keys=False) + "\n")
        return 0
    for line in lines:
        sys.stdout.write(line + "\n")
    sys.stdout.write(result + "\n")
    return 0
