"""Hex text <-> bytes, for vectors, traces, fixtures and CLI arguments.

Traces are written byte-aligned with spaces for readability (``00 A4 04 00 07 A0000003330101``,
domain brief section 1), so whitespace is accepted *between bytes* only: a space inside a byte
(``0 A4``) usually hides a lost digit and is reported, as is any non-hex character. Every error is
a :class:`ProtocolError` naming the ``field`` being parsed and the character ``offset``.
"""

from __future__ import annotations

from .errors import ProtocolError

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def parse_hex(text: str, field: str = "hex") -> bytes:
    """Parse hex text (either case) that may contain whitespace between bytes.

    :raises ProtocolError: ``text`` is not a string, holds a non-hex character, has whitespace
        inside a byte, or an odd number of digits. ``field`` names the value in the message and
        ``offset`` is the character index of the problem.
    """
    if not isinstance(text, str):
        raise ProtocolError(f"expected text, got {type(text).__name__}", field=field, expected="a hex string")
    digits: list[str] = []
    for index, char in enumerate(text):
        if char in _HEX_DIGITS:
            digits.append(char)
        elif char.isspace():
            if len(digits) % 2:
                raise ProtocolError(
                    "whitespace inside a byte", offset=index, expected="a second hex digit", field=field
                )
        else:
            raise ProtocolError(
                f"invalid hex character {char!r}",
                offset=index,
                expected="0-9, A-F or whitespace",
                field=field,
            )
    if len(digits) % 2:
        raise ProtocolError(
            "odd number of hex digits", offset=len(text), expected="a second hex digit", field=field
        )
    return bytes.fromhex("".join(digits))


def h(hexstr: str) -> bytes:
    """Short form of :func:`parse_hex` for vectors in tests and fixtures: ``h("00 A4 04 00")``."""
    return parse_hex(hexstr)


def hexs(b: bytes, sep: str = "") -> str:
    """Uppercase hex of ``b`` (``bytes``, ``bytearray`` or ``memoryview``), bytes joined by ``sep``."""
    if not isinstance(b, bytes | bytearray | memoryview):
        raise ProtocolError(f"expected bytes, got {type(b).__name__}", field="hex", expected="bytes")
    text = bytes(b).hex().upper()
    if not sep:
        return text
    return sep.join(text[i : i + 2] for i in range(0, len(text), 2))
