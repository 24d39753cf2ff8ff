"""Data object lists (EMV Book 3 5.4): PDOL, CDOL1/2, DDOL, TDOL, and the PBOC log formats.

A DOL is a list of ``tag || length`` entries without values; the card asks for those data
elements, and the terminal answers with their values concatenated in DOL order, each fitted to the
length the DOL asks for:

* value too long: format ``n`` loses its leftmost bytes, every other format its rightmost bytes;
* value too short: ``n`` is padded with leading 00, ``cn`` with trailing FF, every other format
  (``an``, ``ans``, ``b``) with trailing 00;
* element unknown to the terminal, or a constructed tag: the whole field is 00.

Formats come from the kernel-scoped dictionary (:mod:`.tags`); a tag it does not know is treated
as ``b``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .errors import DolError, TlvError
from .tags import lookup
from .tlv import decode_one, encode_length, parse_length, parse_tag, tag_bytes, tlv

GPO_COMMAND_TEMPLATE = 0x83
"""Command template wrapping the PDOL data in GET PROCESSING OPTIONS (EMV Book 3 6.5.8)."""


MAX_ENTRY_LENGTH = 0xFF
"""Largest DOL entry length accepted: the data must fit one short APDU (in practice < 0x80)."""


@dataclass(frozen=True)
class DolEntry:
    """One DOL entry: the tag asked for and the length its value must have."""

    tag: int
    length: int

    def __post_init__(self) -> None:
        try:
            tag_bytes(self.tag)
        except TlvError as exc:
            raise DolError(exc.message, expected=exc.expected, field="DOL tag") from None
        if not 0 <= self.length <= MAX_ENTRY_LENGTH:
            raise DolError(
                f"length {self.length}", expected=f"0 to {MAX_ENTRY_LENGTH}", field=f"tag {self.tag:X}"
            )

    @property
    def constructed(self) -> bool:
        """A constructed tag in a DOL is answered with zeros (EMV Book 3 5.4)."""
        first = self.tag
        while first > 0xFF:
            first >>= 8
        return bool(first & 0x20)


def parse_dol(data: bytes) -> list[DolEntry]:
    """Entries of a DOL (EMV Book 3 5.4); :class:`DolError` with the offset on malformed input."""
    data = bytes(data)
    result: list[DolEntry] = []
    pos = 0
    while pos < len(data):
        try:
            tag, length_offset = parse_tag(data, pos)
            length, pos = parse_length(data, length_offset)
        except TlvError as exc:
            raise DolError(exc.message, offset=exc.offset, expected=exc.expected, field="DOL") from None
        if length > MAX_ENTRY_LENGTH:
            raise DolError(
                f"entry length {length}",
                offset=length_offset,
                expected=f"at most {MAX_ENTRY_LENGTH}",
                field=f"DOL tag {tag:X}",
            )
        result.append(DolEntry(tag, length))
    return result


def encode_dol(dol: Sequence[DolEntry]) -> bytes:
    """Encoded DOL (``tag || length`` per entry), the inverse of :func:`parse_dol`."""
    out = bytearray()
    for entry in dol:
        try:
            out += tag_bytes(entry.tag) + encode_length(entry.length)
        except TlvError as exc:
            raise DolError(exc.message, expected=exc.expected, field="DOL") from None
    return bytes(out)


def _entries(dol: Sequence[DolEntry] | bytes) -> Sequence[DolEntry]:
    return parse_dol(dol) if isinstance(dol, bytes | bytearray | memoryview) else dol


def dol_length(dol: Sequence[DolEntry] | bytes) -> int:
    """Length of the data a DOL asks for (sum of its entry lengths)."""
    return sum(entry.length for entry in _entries(dol))


def fit_value(entry: DolEntry, value: bytes, *, kernel: str | None = None) -> bytes:
    """``value`` truncated or padded to ``entry.length`` according to its format (EMV Book 3 5.4)."""
    n = entry.length
    if entry.constructed:
        return bytes(n)
    info = lookup(entry.tag, kernel)
    fmt = info.format if info is not None else "b"
    if len(value) > n:
        return value[len(value) - n :] if fmt == "n" else value[:n]
    pad = n - len(value)
    if fmt == "n":
        return bytes(pad) + value
    if fmt == "cn":
        return value + b"\xff" * pad
    return value + bytes(pad)


def build_dol_data(
    dol: Sequence[DolEntry] | bytes, values: Mapping[int, bytes], *, kernel: str | None = None
) -> bytes:
    """Concatenated values asked for by ``dol`` (raw DOL bytes or parsed entries).

    Missing elements are sent as zeros (EMV Book 3 5.4); formats for padding come from the
    ``kernel``'s dictionary.
    """
    out = bytearray()
    for entry in _entries(dol):
        value = values.get(entry.tag)
        if value is None:
            out += bytes(entry.length)
        else:
            out += fit_value(entry, bytes(value), kernel=kernel)
    return bytes(out)


def split_dol_data(dol: Sequence[DolEntry] | bytes, data: bytes) -> dict[int, bytes]:
    """Inverse of :func:`build_dol_data`: ``{tag: value}`` in DOL order (first occurrence wins).

    :class:`DolError` when ``data`` is shorter or longer than the DOL asks for.
    """
    data = bytes(data)
    result: dict[int, bytes] = {}
    pos = 0
    for entry in _entries(dol):
        available = len(data) - pos
        if entry.length > available:
            raise DolError(
                "DOL data too short",
                offset=pos,
                expected=f"{entry.length} bytes, got {available}",
                field=f"tag {entry.tag:X}",
            )
        result.setdefault(entry.tag, data[pos : pos + entry.length])
        pos += entry.length
    if pos != len(data):
        raise DolError(
            "DOL data too long", offset=pos, expected=f"end of data, got {len(data) - pos} more bytes"
        )
    return result


def gpo_command_data(pdol_data: bytes) -> bytes:
    """GET PROCESSING OPTIONS data field: ``83 LL <PDOL data>`` (``83 81 LL`` from 0x80 bytes on).

    EMV Book 3 6.5.8; without a PDOL the data is ``83 00``.
    """
    return tlv(GPO_COMMAND_TEMPLATE, bytes(pdol_data))


def parse_gpo_command_data(data: bytes) -> bytes:
    """PDOL data inside a GET PROCESSING OPTIONS data field (inverse of :func:`gpo_command_data`)."""
    try:
        obj = decode_one(data)
    except TlvError as exc:
        raise DolError(exc.message, offset=exc.offset, expected=exc.expected, field="GPO data") from None
    if obj.tag != GPO_COMMAND_TEMPLATE:
        raise DolError(f"tag {obj.tag:X}", offset=0, expected="command template 83", field="GPO data")
    return obj.value
