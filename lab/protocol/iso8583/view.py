"""Human and JSON views of ISO 8583 messages, with cardholder data masked (PCI DSS 3.3/3.4).

Unless ``reveal`` is true: the PAN (field 2) shows first 6 / last 4, track 2/3 (35/36) keep only
the masked PAN, track 1 (45) likewise, PIN data (52) and binary key data (``cup-pos`` field 62)
become ``<masked N bytes>``, account identifications (102/103) and free text are scrubbed of
PAN-like numbers, and field 55 is shown as a TLV tree whose sensitive tags (5A, 57, 5F20, ...)
are masked by the data dictionary (:mod:`paylab.lab.protocol.masking`).
"""

from __future__ import annotations

from typing import Any

from ..errors import Iso8583Error
from ..masking import mask_pan, mask_text, mask_track1, mask_track2, masked_placeholder
from ..tags import KERNEL_PBOC
from ..tlv import format_tree, to_json_tree
from .field55 import field55_decode
from .framing import CupsHeader
from .messages import MTI_NAMES, RESPONSE_CODES, FieldValue, Iso8583Message
from .specs import FIELDS, Dialect, check_dialect

FIELD55_KERNEL = KERNEL_PBOC
"""Tag dictionary for field 55: UnionPay cards (RID A000000333; brief section 1 "Tag collisions")."""

_TRACK_FIELDS = (35, 36)
_ACCOUNT_FIELDS = (102, 103)
_PLAIN_FIELDS = frozenset(
    (3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 18, 19, 22, 23, 25, 26, 28, 32, 33, 37, 38, 39,
     41, 42, 49, 50, 51, 53, 60, 61, 70, 90, 100)
)
"""Fields shown as they are: amounts, dates, codes, institution/terminal/merchant IDs. Other text
goes through :func:`~paylab.lab.protocol.masking.mask_text`, which hides PAN-like numbers."""


def display_field(number: int, value: FieldValue, *, reveal: bool = False) -> str:
    """One field value as shown in logs and reports (masked unless ``reveal``); 55 as hex/length."""
    if isinstance(value, bytes | bytearray):
        value = bytes(value)
        if reveal or number not in (52, 62):
            return value.hex().upper()
        return masked_placeholder(len(value))
    if reveal:
        return value
    if number == 2:
        return mask_pan(value)
    if number in _TRACK_FIELDS:
        return mask_track2(value)
    if number == 45:
        return mask_track1(value)
    if number in _ACCOUNT_FIELDS:
        stripped = value.strip()
        return mask_pan(stripped) if stripped.isdigit() else mask_text(value)
    return value if number in _PLAIN_FIELDS else mask_text(value)


def _header_lines(msg: Iso8583Message, dialect: Dialect) -> list[str]:
    if dialect == "cup-pos":
        lines = []
        if msg.tpdu is not None:
            t = msg.tpdu.hex().upper()
            lines.append(f"  TPDU    {t[:2]} {t[2:6]} {t[6:]}")
        if msg.header is not None:
            lines.append(f"  header  {msg.header.hex().upper()}")
        return lines
    if msg.header is None:
        return []
    try:
        h = CupsHeader.decode(msg.header)
    except Iso8583Error:
        return [f"  header  {msg.header.hex().upper()} (malformed)"]
    return [
        f"  header  version {h.version:02X}, length {h.total_length}, dest {h.destination_id!r}, "
        f"source {h.source_id!r}, batch {h.batch}, reject code {h.reject_code}"
    ]


def format_message(msg: Iso8583Message, dialect: Dialect, *, reveal: bool = False) -> str:
    """Field-by-field view: number, ISO format, name, value; field 55 as an annotated TLV tree."""
    dialect = check_dialect(dialect)
    defs = FIELDS[dialect]
    lines = [f"ISO 8583 {dialect} {msg.mti} {MTI_NAMES.get(msg.mti, '')}".rstrip()]
    lines += _header_lines(msg, dialect)
    for number in sorted(msg.fields):
        value = msg.fields[number]
        d = defs.get(number)
        fmt, name = (d.fmt, d.name) if d is not None else ("?", "(not in dialect)")
        head = f"  {number:>3} {fmt:<9} {name:<44}"
        if number == 55 and isinstance(value, bytes | bytearray):
            try:
                tree = format_tree(field55_decode(bytes(value)), kernel=FIELD55_KERNEL, reveal=reveal)
            except Iso8583Error as exc:
                shown = bytes(value).hex().upper() if reveal else masked_placeholder(len(value))
                lines.append(f"{head} {shown} (malformed TLV: {exc})")
                continue
            lines.append(f"{head} ({len(value)} bytes)")
            lines += ["        " + line for line in tree.splitlines()]
            continue
        shown = display_field(number, value, reveal=reveal)
        if number == 64 and isinstance(value, bytes) and value.isascii() and value.isalnum():
            shown += f' "{value.decode("ascii")}"'  # the CUP ECB MAC is 8 ASCII hex characters
        if number == 39 and isinstance(value, str) and value in RESPONSE_CODES:
            shown += f" ({RESPONSE_CODES[value]})"
        lines.append(f"{head} {shown}")
    return "\n".join(lines)


def to_json(msg: Iso8583Message, *, reveal: bool = False) -> dict[str, Any]:
    """JSON-able dict: ``mti``, ``tpdu``/``header`` hex, ``fields`` keyed by number as text.

    Binary fields are hex; field 55 is a TLV tree (``tag``, ``name``, ``value``/``children``,
    ``masked``) when it parses, else its hex (or a placeholder when masked).
    """
    fields: dict[str, Any] = {}
    for number in sorted(msg.fields):
        value = msg.fields[number]
        if number == 55 and isinstance(value, bytes | bytearray):
            try:
                objs = field55_decode(bytes(value))
                fields["55"] = to_json_tree(objs, kernel=FIELD55_KERNEL, reveal=reveal)
            except Iso8583Error:
                fields["55"] = bytes(value).hex().upper() if reveal else masked_placeholder(len(value))
            continue
        if number in (64, 128) and isinstance(value, bytes) and value.isascii() and value.isalnum():
            fields[str(number)] = value.decode("ascii")  # the CUP ECB MAC: 8 ASCII hex characters, as sent
            continue
        fields[str(number)] = display_field(number, value, reveal=reveal)
    return {
        "mti": msg.mti,
        "tpdu": msg.tpdu.hex().upper() if msg.tpdu is not None else None,
        "header": msg.header.hex().upper() if msg.header is not None else None,
        "fields": fields,
    }
