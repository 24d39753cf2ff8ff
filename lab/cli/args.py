"""Argument types and the parser class shared by every ``paylab`` sub-command.

Bad input must give one line naming the argument and exit code 2, never a traceback: argparse
reports type errors with the argument's name, and :class:`OneLineParser` keeps it to one line.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from ..protocol.errors import ProtocolError
from ..protocol.hexutil import parse_hex


class UsageError(Exception):
    """A problem with the command line itself (exit code 2)."""


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are a single line on stderr, exit code 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def hex_bytes(text: str) -> bytes:
    """Hex string (spaces between bytes, colons and an optional 0x prefix allowed) to bytes."""
    cleaned = text.replace(":", "").strip()
    if cleaned[:2].lower() == "0x":
        cleaned = cleaned[2:]
    try:
        return parse_hex(cleaned)
    except ProtocolError as exc:
        raise argparse.ArgumentTypeError(exc.message + (f" at character {exc.offset}" if exc.offset else "")) from None


def sized_hex(*lengths: int, name: str = "value"):  # noqa: ANN201 - returns an argparse type callable
    """An argparse type accepting hex of one of ``lengths`` bytes."""

    def parse(text: str) -> bytes:
        value = hex_bytes(text)
        if len(value) not in lengths:
            allowed = " or ".join(str(n) for n in lengths)
            raise argparse.ArgumentTypeError(f"{name} must be {allowed} bytes, got {len(value)}")
        return value

    parse.__name__ = "hex"
    return parse


def digits(min_len: int, max_len: int, name: str = "value"):  # noqa: ANN201 - argparse type callable
    """An argparse type accepting a decimal digit string of bounded length (PAN, PSN)."""

    def parse(text: str) -> str:
        if not text.isdigit() or not (min_len <= len(text) <= max_len):
            raise argparse.ArgumentTypeError(f"{name} must be {min_len}-{max_len} decimal digits")
        return text

    parse.__name__ = "digits"
    return parse
