"""BER-TLV as used by smart cards (ISO/IEC 7816-4 5.2, EMV Book 3 Annex B).

* Tags: 1-3 bytes. When bits b5-b1 of the first byte are all 1, subsequent bytes follow; a
  subsequent byte with b8 set is followed by another one (Annex B1). Bit b6 of the first byte
  marks a constructed object, whose value is itself a sequence of BER-TLV objects (a template).
  00 and FF are not valid first tag bytes (ISO/IEC 7816-4 5.2).
* Lengths: definite only. ``0..7F`` in one byte, ``81 xx``, ``82 xxxx`` (Annex B2); ``83 xxxxxx``
  is accepted when decoding, longer forms and the indefinite form ``80`` are rejected. Encoding
  always uses the shortest form and supports values up to 65535 bytes.
* Padding: 00 (and FF) bytes before, between and after objects carry no meaning (Annex B1) and
  are skipped when ``allow_padding`` is true.

Decoding is strict: templates are parsed recursively, so a malformed child anywhere fails the
whole decode with a :class:`TlvError` that names the byte offset (relative to the buffer given to
:func:`decode`) and what was expected there. Nothing else escapes from malformed input.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .errors import TlvError
from .masking import mask_value
from .tags import lookup

MAX_DEPTH = 32
"""Deepest template nesting accepted; real EMV data nests 4 levels (6F/A5/BF0C/61)."""

MAX_TAG_BYTES = 3
MAX_ENCODED_LENGTH = 0xFFFF
_PADDING = (0x00, 0xFF)


def _first_tag_byte(tag: int) -> int:
    while tag > 0xFF:
        tag >>= 8
    return tag


@dataclass(frozen=True)
class Tlv:
    """One BER-TLV data object; for constructed objects ``value`` holds the encoded children."""

    tag: int
    value: bytes = b""

    def __post_init__(self) -> None:
        tag_bytes(self.tag)  # validates the tag
        if not isinstance(self.value, bytes):
            object.__setattr__(self, "value", bytes(self.value))

    @property
    def constructed(self) -> bool:
        """Bit b6 of the first tag byte (ISO/IEC 7816-4 5.2)."""
        return bool(_first_tag_byte(self.tag) & 0x20)

    @property
    def children(self) -> tuple[Tlv, ...]:
        """Decoded children of a constructed object (``()`` for a primitive one)."""
        if not self.constructed:
            return ()
        return tuple(decode(self.value))

    def encode(self) -> bytes:
        """Tag, length and value bytes."""
        return tag_bytes(self.tag) + encode_length(len(self.value)) + self.value

    @classmethod
    def build(cls, tag: int, *children: Tlv) -> Tlv:
        """Constructed object (template) holding ``children``."""
        if not _first_tag_byte(tag) & 0x20:
            raise TlvError(
                f"tag {tag:X} is primitive", expected="a constructed tag (b6 of the first byte set)"
            )
        return cls(tag, encode(children))


@dataclass(frozen=True)
class TlvSpan:
    """Where one object sits in a buffer: ``data[offset:end]`` is the whole object."""

    tag: int
    offset: int
    value_offset: int
    end: int
    depth: int
    constructed: bool

    @property
    def length(self) -> int:
        """Length of the value field."""
        return self.end - self.value_offset


# --- tags ---------------------------------------------------------------------------------------


def tag_bytes(tag: int) -> bytes:
    """Encoded form of ``tag``; :class:`TlvError` if the number is not a valid 1-3 byte BER tag."""
    if not isinstance(tag, int) or tag <= 0 or tag > 0xFFFFFF:
        raise TlvError(f"invalid tag {tag!r}", expected="a 1 to 3 byte BER tag", field="tag")
    raw = tag.to_bytes((tag.bit_length() + 7) // 8, "big")
    try:
        _, end = parse_tag(raw, 0)
    except TlvError as exc:
        raise TlvError(f"invalid tag {tag:X}", expected=exc.expected, field="tag") from None
    if end != len(raw):
        raise TlvError(f"invalid tag {tag:X}", expected="no bytes after the last tag byte", field="tag")
    return raw


def parse_tag(data: bytes, offset: int) -> tuple[int, int]:
    """Read a tag at ``offset``; returns ``(tag, offset after it)`` (EMV Book 3 Annex B1)."""
    if offset < 0 or offset >= len(data):
        raise TlvError("missing tag", offset=offset, expected="tag byte")
    first = data[offset]
    if first in _PADDING:
        raise TlvError(
            f"invalid first tag byte {first:02X}",
            offset=offset,
            expected="tag byte (00 and FF are padding, ISO/IEC 7816-4 5.2)",
        )
    tag = first
    pos = offset + 1
    if first & 0x1F != 0x1F:
        return tag, pos
    while True:
        if pos - offset >= MAX_TAG_BYTES:
            raise TlvError("tag too long", offset=offset, expected=f"at most {MAX_TAG_BYTES} tag bytes")
        if pos >= len(data):
            raise TlvError("truncated tag", offset=pos, expected="subsequent tag byte")
        byte = data[pos]
        tag = (tag << 8) | byte
        pos += 1
        if not byte & 0x80:
            return tag, pos


# --- lengths ------------------------------------------------------------------------------------


def encode_length(n: int) -> bytes:
    """Shortest definite length field for ``n`` (EMV Book 3 Annex B2): 1, 2 or 3 bytes."""
    if n < 0 or n > MAX_ENCODED_LENGTH:
        raise TlvError(f"length {n} cannot be encoded", expected=f"0 to {MAX_ENCODED_LENGTH}", field="length")
    if n < 0x80:
        return bytes([n])
    if n <= 0xFF:
        return bytes([0x81, n])
    return bytes([0x82, n >> 8, n & 0xFF])


def parse_length(data: bytes, offset: int) -> tuple[int, int]:
    """Read a definite length at ``offset``; returns ``(length, offset after it)``."""
    if offset < 0 or offset >= len(data):
        raise TlvError("missing length", offset=offset, expected="length byte")
    first = data[offset]
    if first < 0x80:
        return first, offset + 1
    count = first & 0x7F
    if count == 0:
        raise TlvError("indefinite length", offset=offset, expected="definite length (EMV Book 3 Annex B2)")
    if count > 3:
        raise TlvError(
            f"length field of {count + 1} bytes", offset=offset, expected="at most 83 followed by 3 bytes"
        )
    available = len(data) - offset - 1
    if available < count:
        raise TlvError(
            "truncated length",
            offset=offset + 1,
            expected=f"{count} length byte{'s' if count > 1 else ''}, got {available}",
        )
    return int.from_bytes(data[offset + 1 : offset + 1 + count], "big"), offset + 1 + count


# --- decoding -----------------------------------------------------------------------------------


def _scan(
    data: bytes,
    start: int,
    end: int,
    *,
    allow_padding: bool,
    depth: int,
    spans: list[TlvSpan] | None,
) -> list[Tlv]:
    """Parse ``data[start:end]`` as a sequence of objects, validating templates recursively."""
    if depth > MAX_DEPTH:
        raise TlvError("templates nested too deeply", offset=start, expected=f"at most {MAX_DEPTH} levels")
    objects: list[Tlv] = []
    window = data[:end]
    pos = start
    while pos < end:
        if allow_padding and window[pos] in _PADDING:
            pos += 1
            continue
        tag_offset = pos
        tag, pos = parse_tag(window, pos)
        length, pos = parse_length(window, pos)
        available = end - pos
        if length > available:
            raise TlvError(
                "truncated value",
                offset=pos,
                expected=f"{length} value bytes, got {available}",
                field=f"tag {tag:X}",
            )
        value_end = pos + length
        constructed = bool(_first_tag_byte(tag) & 0x20)
        if spans is not None:
            spans.append(TlvSpan(tag, tag_offset, pos, value_end, depth, constructed))
        if constructed:
            _scan(data, pos, value_end, allow_padding=allow_padding, depth=depth + 1, spans=spans)
        objects.append(Tlv(tag, bytes(data[pos:value_end])))
        pos = value_end
    return objects


def decode(data: bytes, *, allow_padding: bool = True) -> list[Tlv]:
    """Top-level objects of ``data`` (EMV Book 3 Annex B); templates are validated recursively."""
    data = bytes(data)
    return _scan(data, 0, len(data), allow_padding=allow_padding, depth=0, spans=None)


def decode_one(data: bytes) -> Tlv:
    """Exactly one object filling ``data``; :class:`TlvError` on trailing bytes or padding."""
    data = bytes(data)
    _, pos = parse_tag(data, 0)
    length, pos = parse_length(data, pos)
    if pos + length < len(data):
        raise TlvError(
            "trailing bytes after the object",
            offset=pos + length,
            expected=f"end of data, got {len(data) - pos - length} more bytes",
        )
    return _scan(data, 0, len(data), allow_padding=True, depth=0, spans=None)[0]


def spans(data: bytes, *, allow_padding: bool = True) -> list[TlvSpan]:
    """Position of every object (depth-first, parents before children) in ``data``."""
    data = bytes(data)
    found: list[TlvSpan] = []
    _scan(data, 0, len(data), allow_padding=allow_padding, depth=0, spans=found)
    return found


# --- encoding and search ------------------------------------------------------------------------


def encode(objects: Iterable[Tlv]) -> bytes:
    """Concatenated encodings of ``objects``."""
    return b"".join(obj.encode() for obj in objects)


def tlv(tag: int, value: bytes) -> bytes:
    """Encode one object with a raw value: ``tag || length || value``."""
    return Tlv(tag, value).encode()


def find(objects: Iterable[Tlv], tag: int) -> Tlv | None:
    """First object with ``tag``, searching depth-first (parents before their children)."""
    for obj in objects:
        if obj.tag == tag:
            return obj
        if obj.constructed:
            hit = find(obj.children, tag)
            if hit is not None:
                return hit
    return None


def find_all(objects: Iterable[Tlv], tag: int) -> list[Tlv]:
    """Every object with ``tag``, depth-first, including ones nested in matches."""
    hits: list[Tlv] = []
    for obj in objects:
        if obj.tag == tag:
            hits.append(obj)
        if obj.constructed:
            hits.extend(find_all(obj.children, tag))
    return hits


def to_dict(objects: Iterable[Tlv]) -> dict[int, bytes]:
    """Flat ``{tag: value}`` of every primitive object, recursively; the first occurrence wins."""
    flat: dict[int, bytes] = {}
    for obj in objects:
        if obj.constructed:
            for tag, value in to_dict(obj.children).items():
                flat.setdefault(tag, value)
        else:
            flat.setdefault(obj.tag, obj.value)
    return flat


# --- views --------------------------------------------------------------------------------------


def _text_of(value: bytes) -> str | None:
    if value and all(0x20 <= b < 0x7F for b in value):
        return value.decode("ascii")
    return None


def display_value(obj: Tlv, *, kernel: str | None = None, reveal: bool = False) -> str:
    """Display form of a primitive value: masked per the dictionary unless ``reveal``; ASCII shown
    next to the hex for ``an``/``ans`` elements."""
    shown = obj.value.hex().upper() if reveal else mask_value(obj.tag, obj.value, kernel)
    info = lookup(obj.tag, kernel)
    if info is not None and info.format in ("an", "ans") and shown == obj.value.hex().upper():
        text = _text_of(obj.value)
        if text is not None:
            shown += f' "{text}"'
    return shown


def _name(tag: int, kernel: str | None) -> str:
    info = lookup(tag, kernel)
    return info.name if info is not None else "?"


def format_tree(objects: Iterable[Tlv], *, kernel: str | None = None, reveal: bool = False) -> str:
    """Indented, annotated tree of ``objects`` with names from the ``kernel``'s dictionary.

    Sensitive values are masked (:mod:`.masking`) unless ``reveal`` is true.
    """
    lines: list[str] = []

    def walk(items: Iterable[Tlv], depth: int) -> None:
        for obj in items:
            head = f"{'  ' * depth}{obj.tag:02X} {_name(obj.tag, kernel)} ({len(obj.value)})"
            if obj.constructed:
                lines.append(head)
                walk(obj.children, depth + 1)
            else:
                lines.append(f"{head}: {display_value(obj, kernel=kernel, reveal=reveal)}")

    walk(objects, 0)
    return "\n".join(lines)


def to_json_tree(
    objects: Iterable[Tlv], *, kernel: str | None = None, reveal: bool = False
) -> list[dict[str, Any]]:
    """JSON-able form of the tree: ``{"tag", "name", "length", "value" | "children"}`` per object;
    masked values carry ``"masked": true``."""
    nodes: list[dict[str, Any]] = []
    for obj in objects:
        node: dict[str, Any] = {
            "tag": f"{obj.tag:02X}",
            "name": _name(obj.tag, kernel),
            "length": len(obj.value),
        }
        if obj.constructed:
            node["children"] = to_json_tree(obj.children, kernel=kernel, reveal=reveal)
        else:
            shown = display_value(obj, kernel=kernel, reveal=reveal)
            node["value"] = shown
            if not reveal and mask_value(obj.tag, obj.value, kernel) != obj.value.hex().upper():
                node["masked"] = True
        nodes.append(node)
    return nodes
