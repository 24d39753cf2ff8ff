"""Remote APDU lists carried in SCP80 secured data: RAM and RFM (ETSI TS 102 226 clause 5).

Compact format (clause 5.1):

* command (5.1.1): C-APDUs concatenated, each ``CLA INS P1 P2 P3 [data]`` as in TS 102 221, so
  a list can only be split by knowing which instructions are case 2 (P3 is Le, no data) [M];
* response (5.1.2): number of commands executed (1), status word of the last one (2), response
  data of the last one (rest).

Expanded format (clause 5.2), BER-TLV with tags from TS 101 220 tables 7.18/7.19:

* command scripting template ``AA`` (definite length) or ``AE`` (indefinite length, ``80`` ...
  ``00 00``) holding ``22`` C-APDU TLVs and the control TLVs ``81`` immediate action, ``82`` error
  action, ``83`` script chaining;
* response scripting template ``AB`` / ``AF`` holding ``80`` number of executed C-APDUs, ``23``
  R-APDU TLVs (response data || SW), ``81`` immediate action response, ``83`` script chaining
  result, ``90`` bad format. The indefinite form usually omits ``80`` [M].
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..errors import ApduError, TlvError

TAR_ISD = bytes(3)  #: TAR of the Issuer Security Domain for RAM [M]; RFM TARs are card-specific

TAG_COMMAND_SCRIPT = 0xAA
TAG_COMMAND_SCRIPT_INDEFINITE = 0xAE
TAG_RESPONSE_SCRIPT = 0xAB
TAG_RESPONSE_SCRIPT_INDEFINITE = 0xAF
TAG_C_APDU = 0x22
TAG_R_APDU = 0x23
TAG_EXECUTED = 0x80
TAG_IMMEDIATE_ACTION = 0x81
TAG_ERROR_ACTION = 0x82
TAG_SCRIPT_CHAINING = 0x83
TAG_BAD_FORMAT = 0x90

SW_TRUNCATED = 0x62F1  #: TS 102 226 5.2.1.1 [M]: response data truncated; ends the script

#: Instructions whose compact C-APDU is case 2 (P3 = Le, no data): READ BINARY, READ RECORD,
#: GET CHALLENGE, GET RESPONSE, GET DATA. STATUS (F2) is left out: GP GET STATUS shares CLA 80.
CASE2_INSTRUCTIONS = frozenset({0xB0, 0xB2, 0x84, 0xC0, 0xCA})


# --- compact format -----------------------------------------------------------------------------


def is_case2_command(header: bytes) -> bool:
    """Default splitter rule: ``header`` (CLA INS P1 P2) is a case 2 command [M]."""
    return header[1] in CASE2_INSTRUCTIONS


def build_compact_commands(apdus: Sequence[bytes]) -> bytes:
    """Concatenate C-APDUs into a compact command list (TS 102 226 clause 5.1.1)."""
    for i, apdu in enumerate(apdus):
        if len(apdu) < 5:
            raise ApduError(f"C-APDU {i} has {len(apdu)} bytes", expected="CLA INS P1 P2 P3", field="C-APDU")
    return b"".join(bytes(a) for a in apdus)


def parse_compact_commands(
    data: bytes, *, is_case2: Callable[[bytes], bool] = is_case2_command
) -> list[bytes]:
    """Split a compact command list; P3 is Lc unless ``is_case2(header)`` says it is Le."""
    data = bytes(data)
    apdus: list[bytes] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 5:
            raise ApduError(
                f"{len(data) - pos} trailing bytes", offset=pos, expected="CLA INS P1 P2 P3", field="C-APDU",
            )
        end = pos + 5 + (0 if is_case2(data[pos : pos + 4]) else data[pos + 4])
        if end > len(data):
            raise ApduError(
                f"Lc {data[pos + 4]} runs past the list end", offset=pos + 4, field="Lc",
                expected=f"at most {len(data) - pos - 5}",
            )
        apdus.append(data[pos:end])
        pos = end
    if not apdus:
        raise ApduError("empty command list", offset=0, expected="at least one C-APDU")
    return apdus


@dataclass(frozen=True)
class CompactResponse:
    """Compact additional response data (TS 102 226 clause 5.1.2)."""

    executed: int
    sw: int
    data: bytes = b""

    def encode(self) -> bytes:
        """Number executed (1) || last SW (2) || last response data."""
        return bytes((self.executed,)) + self.sw.to_bytes(2, "big") + self.data


def build_compact_response(executed: int, sw: int, data: bytes = b"") -> bytes:
    """Encode compact additional response data (TS 102 226 clause 5.1.2)."""
    if not 0 <= executed <= 0xFF or not 0 <= sw <= 0xFFFF:
        raise ApduError(f"executed {executed} / SW {sw:X} out of range", field="response")
    return CompactResponse(executed, sw, bytes(data)).encode()


def parse_compact_response(data: bytes) -> CompactResponse:
    """Decode compact additional response data (TS 102 226 clause 5.1.2)."""
    data = bytes(data)
    if len(data) < 3:
        raise ApduError(
            f"compact response of {len(data)} bytes", offset=len(data), expected="count (1) and SW (2)",
        )
    return CompactResponse(data[0], int.from_bytes(data[1:3], "big"), data[3:])


# --- BER-TLV helpers (ISO/IEC 8825-1 definite lengths; tags of TS 101 220) -----------------------


def encode_length(length: int) -> bytes:
    """Definite BER length: ``00``-``7F``, ``81 xx``, ``82 xxxx``, ``83 xxxxxx``."""
    if length < 0x80:
        return bytes((length,))
    for size in (1, 2, 3):
        if length < 1 << (8 * size):
            return bytes((0x80 | size,)) + length.to_bytes(size, "big")
    raise TlvError(f"length {length} too large", field="length", expected="below 2^24")


def _tlv(tag: int, value: bytes) -> bytes:
    return bytes((tag,)) + encode_length(len(value)) + value


def _read_tag(data: bytes, pos: int, end: int) -> tuple[int, int]:
    if pos >= end:
        raise TlvError("missing tag", offset=pos)
    tag = data[pos]
    pos += 1
    if tag & 0x1F == 0x1F:
        while True:
            if pos >= end:
                raise TlvError("truncated multi-byte tag", offset=pos)
            tag = (tag << 8) | data[pos]
            pos += 1
            if not data[pos - 1] & 0x80:
                break
    return tag, pos


def _read_length(data: bytes, pos: int, end: int, *, indefinite_ok: bool = False) -> tuple[int | None, int]:
    if pos >= end:
        raise TlvError("missing length", offset=pos)
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    if first == 0x80:
        if indefinite_ok:
            return None, pos + 1
        raise TlvError("indefinite length not allowed here", offset=pos, field="length")
    size = first & 0x7F
    if size > 3 or pos + 1 + size > end:
        raise TlvError(f"bad length field {first:02X}", offset=pos, field="length", expected="81, 82 or 83")
    return int.from_bytes(data[pos + 1 : pos + 1 + size], "big"), pos + 1 + size


def _read_items(data: bytes, pos: int, end: int, *, until_eoc: bool) -> tuple[list[tuple[int, bytes]], int]:
    """Primitive TLVs from ``pos`` to ``end``, or up to the ``00 00`` end-of-contents."""
    items: list[tuple[int, bytes]] = []
    while True:
        if until_eoc:
            if pos + 2 <= end and data[pos : pos + 2] == b"\x00\x00":
                return items, pos + 2
            if pos >= end:
                raise TlvError("missing end-of-contents 00 00", offset=pos, expected="00 00")
        elif pos >= end:
            return items, pos
        tag_at = pos
        tag, pos = _read_tag(data, pos, end)
        length, pos = _read_length(data, pos, end)
        assert length is not None
        if pos + length > end:
            raise TlvError(f"tag {tag:02X} value runs past the end", offset=tag_at, field=f"tag {tag:02X}")
        items.append((tag, data[pos : pos + length]))
        pos += length


def _read_template(
    data: bytes, definite_tag: int, indefinite_tag: int
) -> tuple[list[tuple[int, bytes]], bool]:
    data = bytes(data)
    tag, pos = _read_tag(data, 0, len(data))
    if tag not in (definite_tag, indefinite_tag):
        raise TlvError(
            f"template tag {tag:02X}", offset=0, field="template",
            expected=f"{definite_tag:02X} or {indefinite_tag:02X}",
        )
    indefinite = tag == indefinite_tag
    length, pos = _read_length(data, pos, len(data), indefinite_ok=indefinite)
    if indefinite:
        if length is not None:
            raise TlvError(f"tag {tag:02X} needs the indefinite length 80", offset=1, field="length")
        items, pos = _read_items(data, pos, len(data), until_eoc=True)
    else:
        assert length is not None
        if pos + length != len(data):
            raise TlvError(
                f"template length {length} but {len(data) - pos} bytes follow", offset=1, field="length",
            )
        items, pos = _read_items(data, pos, len(data), until_eoc=False)
    if pos != len(data):
        raise TlvError(f"{len(data) - pos} bytes after the template", offset=pos)
    return items, indefinite


def _template(tag: int, body: bytes, indefinite: bool) -> bytes:
    if indefinite:
        return bytes((tag, 0x80)) + body + b"\x00\x00"
    return _tlv(tag, body)


# --- expanded format: commands ------------------------------------------------------------------


@dataclass(frozen=True)
class ExpandedCommands:
    """A command scripting template (TS 102 226 clause 5.2.1).

    ``items`` keeps every TLV in order (tag, value); ``apdus`` are the ``22`` values.
    """

    items: tuple[tuple[int, bytes], ...]
    indefinite: bool = False

    @property
    def apdus(self) -> list[bytes]:
        """The C-APDUs, in order."""
        return [value for tag, value in self.items if tag == TAG_C_APDU]


def build_expanded_commands(items: Sequence[bytes | tuple[int, bytes]], *, indefinite: bool = False) -> bytes:
    """Encode a command scripting template: ``bytes`` items become ``22`` C-APDU TLVs, ``(tag, value)``
    items are control TLVs (``81`` immediate action, ``82`` error action, ``83`` script chaining).
    ``indefinite`` selects tag ``AE`` with ``80 .. 00 00`` instead of ``AA``.
    """
    body = b"".join(
        _tlv(item[0], bytes(item[1])) if isinstance(item, tuple) else _tlv(TAG_C_APDU, bytes(item))
        for item in items
    )
    return _template(TAG_COMMAND_SCRIPT_INDEFINITE if indefinite else TAG_COMMAND_SCRIPT, body, indefinite)


def parse_expanded_commands(data: bytes) -> ExpandedCommands:
    """Decode an ``AA`` or ``AE`` command scripting template (TS 102 226 clause 5.2.1)."""
    items, indefinite = _read_template(data, TAG_COMMAND_SCRIPT, TAG_COMMAND_SCRIPT_INDEFINITE)
    return ExpandedCommands(tuple(items), indefinite)


# --- expanded format: responses -----------------------------------------------------------------


@dataclass(frozen=True)
class RApdu:
    """One R-APDU: response data and status word."""

    data: bytes
    sw: int

    def encode(self) -> bytes:
        """Response data || SW1 SW2."""
        return self.data + self.sw.to_bytes(2, "big")


@dataclass(frozen=True)
class ExpandedResponse:
    """A response scripting template (TS 102 226 clause 5.2.2)."""

    executed: int | None
    responses: tuple[RApdu, ...]
    immediate_action: bytes | None = None
    script_chaining: bytes | None = None
    bad_format: bytes | None = None
    indefinite: bool = False
    items: tuple[tuple[int, bytes], ...] = field(default=(), compare=False)

    @property
    def number_of_commands(self) -> int:
        """The ``80`` count, or the number of R-APDUs when the template has none."""
        return self.executed if self.executed is not None else len(self.responses)

    @property
    def last_sw(self) -> int | None:
        """Status word of the last R-APDU."""
        return self.responses[-1].sw if self.responses else None

    @property
    def last_data(self) -> bytes | None:
        """Response data of the last R-APDU."""
        return self.responses[-1].data if self.responses else None

    @property
    def truncated(self) -> bool:
        """True if a response carries SW 62F1 (data truncated; the script stopped there) [M]."""
        return any(r.sw == SW_TRUNCATED for r in self.responses)


def build_expanded_response(
    responses: Sequence[RApdu],
    *,
    executed: int | None = None,
    with_executed: bool | None = None,
    extra: Sequence[tuple[int, bytes]] = (),
    indefinite: bool = False,
) -> bytes:
    """Encode a response scripting template: ``80`` count first, then ``23`` R-APDUs, then ``extra``.

    ``executed`` defaults to ``len(responses)``; the ``80`` TLV is written unless ``with_executed``
    is False (its default is ``not indefinite``).
    """
    count = len(responses) if executed is None else executed
    if not 0 <= count <= 0xFF:
        raise TlvError(f"executed count {count}", field="tag 80", expected="0..255")
    parts = []
    if with_executed if with_executed is not None else not indefinite:
        parts.append(_tlv(TAG_EXECUTED, bytes((count,))))
    parts += [_tlv(TAG_R_APDU, r.encode()) for r in responses]
    parts += [_tlv(tag, bytes(value)) for tag, value in extra]
    tag = TAG_RESPONSE_SCRIPT_INDEFINITE if indefinite else TAG_RESPONSE_SCRIPT
    return _template(tag, b"".join(parts), indefinite)


def parse_expanded_response(data: bytes) -> ExpandedResponse:
    """Decode an ``AB`` or ``AF`` response scripting template (TS 102 226 clause 5.2.2)."""
    items, indefinite = _read_template(data, TAG_RESPONSE_SCRIPT, TAG_RESPONSE_SCRIPT_INDEFINITE)
    executed: int | None = None
    responses: list[RApdu] = []
    singles: dict[int, bytes] = {}
    for tag, value in items:
        if tag == TAG_EXECUTED:
            if len(value) != 1:
                raise TlvError(f"tag 80 of {len(value)} bytes", field="tag 80", expected="1 byte")
            executed = value[0]
        elif tag == TAG_R_APDU:
            if len(value) < 2:
                raise TlvError(f"R-APDU of {len(value)} bytes", field="tag 23", expected="at least SW1 SW2")
            responses.append(RApdu(value[:-2], int.from_bytes(value[-2:], "big")))
        elif tag in (TAG_IMMEDIATE_ACTION, TAG_SCRIPT_CHAINING, TAG_BAD_FORMAT):
            singles[tag] = value
    return ExpandedResponse(
        executed=executed,
        responses=tuple(responses),
        immediate_action=singles.get(TAG_IMMEDIATE_ACTION),
        script_chaining=singles.get(TAG_SCRIPT_CHAINING),
        bad_format=singles.get(TAG_BAD_FORMAT),
        indefinite=indefinite,
        items=tuple(items),
    )
