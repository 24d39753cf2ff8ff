"""APDU trace records as JSON lines, masked when written.

A :class:`TraceRecord` is plain data: one command (``"C"``), one response (``"R"``) or a
command/response pair (``"CR"``), with the caller's timestamp, logical channel, transport name,
raw hex, status word and (once written) the decoded TLV trees. :class:`TraceWriter` writes one
JSON object per line to any text stream and applies masking at write time (PCI DSS 3.3/3.4):

* values of sensitive tags (PAN 5A, track 2 57/9F6B, track 1 56, names, PIN data, discretionary
  data; see :mod:`.tags`) are replaced by ``*`` inside the raw hex, keeping BIN and last 4 of a
  PAN, and masked in the decoded trees (:mod:`.masking`);
* the data field of commands that carry secrets (VERIFY, CHANGE REFERENCE DATA, RESET RETRY
  COUNTER, PUT KEY, STORE DATA) is hidden completely;
* data that is not BER-TLV, and values of tags the dictionary does not know, are scrubbed of
  PAN-like digit runs (:func:`.masking.mask_text`).

``reveal=True`` writes everything in clear and marks the records ``"masked": false``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal, TextIO

from . import tlv as tlv_mod
from .errors import ApduError, ProtocolError, TlvError
from .masking import MASK, mask_hex_value, mask_text

Direction = Literal["C", "R", "CR"]
DIRECTIONS: tuple[str, ...] = ("C", "R", "CR")

SECRET_INS = frozenset({0x20, 0x24, 0x2C, 0xD8, 0xE2})
"""VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER (ISO/IEC 7816-4 11.5), PUT KEY and STORE
DATA (GlobalPlatform Card Spec 11.8/11.11): their data is PIN blocks, keys or personalisation."""

TLV_INS = frozenset({0xA8, 0xCB, 0xDB, 0xF2})
"""Commands whose data field is BER-TLV: GET PROCESSING OPTIONS (83 template, EMV Book 3 6.5.8),
GET/PUT DATA odd INS (ISO/IEC 7816-4 11.4) and GET STATUS (GP Card Spec 11.4)."""

PLAIN_INS = frozenset({0x50, 0x70, 0x82, 0x84, 0x88, 0xA4, 0xAE, 0xB2, 0xCA, 0xDA})
"""Commands whose data cannot hold a PAN (INITIALIZE UPDATE, MANAGE CHANNEL, EXTERNAL/INTERNAL
AUTHENTICATE, GET CHALLENGE, SELECT, GENERATE AC, READ RECORD, GET/PUT DATA): left unscrubbed so
that cryptogram inputs stay readable."""

_HEX = re.compile(r"[0-9A-F*]*")


def logical_channel(cla: int) -> int:
    """Logical channel coded in CLA (ISO/IEC 7816-4 5.4.1; GlobalPlatform uses the same coding).

    First interindustry classes carry channels 0-3 in b2-b1, further interindustry classes
    (b7 set) channels 4-19 in b4-b1.
    """
    if not 0 <= cla <= 0xFE:
        raise ApduError(f"invalid CLA {cla:#x}", expected="00..FE", field="CLA")
    if cla & 0x40:
        return 4 + (cla & 0x0F)
    return cla & 0x03


def _check_hex(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApduError(f"{name} is not a hex string", field=name)
    text = value.upper()
    if len(text) % 2 or not _HEX.fullmatch(text):
        raise ApduError(f"{name} is not hex", expected="an even number of hex digits or *", field=name)
    return text


@dataclass(frozen=True)
class TraceRecord:
    """One traced exchange; hex fields are upper case, ``*`` marks masked nibbles.

    ``timestamp`` is injected by the caller (seconds, any epoch). ``sw`` defaults to the last two
    bytes of ``response``. ``command_tlv``/``response_tlv`` are filled in by the writer.
    """

    timestamp: float
    direction: Direction
    command: str | None = None
    response: str | None = None
    sw: str | None = None
    channel: int = 0
    transport: str = ""
    duration_ms: float | None = None
    kernel: str | None = None
    command_tlv: list[dict[str, Any]] | None = None
    response_tlv: list[dict[str, Any]] | None = None
    masked: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.timestamp, bool) or not isinstance(self.timestamp, int | float):
            raise ProtocolError(f"timestamp {self.timestamp!r}", expected="a number", field="timestamp")
        if isinstance(self.channel, bool) or not isinstance(self.channel, int) or not 0 <= self.channel <= 19:
            raise ProtocolError(f"channel {self.channel!r}", expected="0..19", field="channel")
        if self.direction not in DIRECTIONS:
            raise ProtocolError(f"direction {self.direction!r}", expected="C, R or CR", field="direction")
        command = _check_hex("command", self.command)
        response = _check_hex("response", self.response)
        if (command is None) == (self.direction in ("C", "CR")):
            raise ProtocolError("command missing or unexpected", field=f"direction {self.direction}")
        if (response is None) == (self.direction in ("R", "CR")):
            raise ProtocolError("response missing or unexpected", field=f"direction {self.direction}")
        if response is not None and len(response) < 4:
            raise ApduError("response without SW1 SW2", expected="at least 2 bytes", field="response")
        sw = _check_hex("sw", self.sw)
        if sw is None and response is not None:
            sw = response[-4:]
        object.__setattr__(self, "command", command)
        object.__setattr__(self, "response", response)
        object.__setattr__(self, "sw", sw)

    @classmethod
    def from_apdus(
        cls,
        timestamp: float,
        *,
        command: bytes | None = None,
        response: bytes | None = None,
        transport: str = "",
        channel: int | None = None,
        duration_ms: float | None = None,
        kernel: str | None = None,
    ) -> TraceRecord:
        """Record from raw APDUs; the direction follows from which are given, the channel from CLA."""
        if command is None and response is None:
            raise ProtocolError("neither command nor response", field="direction")
        direction: Direction = "CR" if command is not None and response is not None else (
            "C" if command is not None else "R"
        )
        if channel is None:  # a trace records whatever crossed the wire, even an invalid CLA
            channel = logical_channel(command[0]) if command and command[0] != 0xFF else 0
        return cls(
            timestamp=timestamp,
            direction=direction,
            command=None if command is None else bytes(command).hex().upper(),
            response=None if response is None else bytes(response).hex().upper(),
            channel=channel,
            transport=transport,
            duration_ms=duration_ms,
            kernel=kernel,
        )


# --- masking ------------------------------------------------------------------------------------


def _command_data_bounds(apdu: bytes) -> tuple[int, int] | None:
    """(start, end) of the data field of a command APDU (ISO/IEC 7816-4 5.1), or None without one.

    :class:`ApduError` when Lc does not match the length.
    """
    n = len(apdu)
    if n <= 5:  # case 1, case 2 short
        return None
    if apdu[4]:
        lc = apdu[4]
        if n in (5 + lc, 6 + lc):
            return 5, 5 + lc
    elif n == 7:  # case 2 extended
        return None
    else:
        lc = int.from_bytes(apdu[5:7], "big")
        if lc and n in (7 + lc, 9 + lc):
            return 7, 7 + lc
    raise ApduError("Lc does not match the APDU length", offset=4, field="Lc")


def mask_tlv_hex(data: bytes, kernel: str | None) -> str | None:
    """Hex of ``data`` with sensitive TLV values masked, or None when ``data`` is not BER-TLV."""
    try:
        found = tlv_mod.spans(data)
    except TlvError:
        return None
    chars = list(data.hex().upper())
    for span in found:
        if span.constructed:
            continue
        value = data[span.value_offset : span.end]
        chars[2 * span.value_offset : 2 * span.end] = mask_hex_value(span.tag, value, kernel)
    return "".join(chars)


def mask_command_hex(apdu: bytes, kernel: str | None = None) -> str:
    """Hex of a command APDU with its data field masked (see the module docstring)."""
    text = apdu.hex().upper()
    if len(apdu) < 4:
        return mask_text(text)
    try:
        bounds = _command_data_bounds(apdu)
    except ApduError:
        bounds = (4, len(apdu))  # inconsistent Lc: judge everything after the header as data
    if bounds is None:
        return text
    start, end = bounds
    data = apdu[start:end]
    ins = apdu[1]
    if ins in SECRET_INS:
        masked = MASK * (2 * len(data))
    elif ins in PLAIN_INS:
        masked = data.hex().upper()
    else:
        tlv_masked = mask_tlv_hex(data, kernel) if ins in TLV_INS else None
        masked = tlv_masked if tlv_masked is not None else mask_text(data.hex().upper())
    return text[: 2 * start] + masked + text[2 * end :]


def mask_response_hex(apdu: bytes, kernel: str | None = None) -> str:
    """Hex of a response APDU (data + SW1 SW2) with sensitive data masked."""
    text = apdu.hex().upper()
    if len(apdu) < 2:
        return mask_text(text)
    data = apdu[:-2]
    masked = mask_tlv_hex(data, kernel)
    if masked is None:
        masked = mask_text(data.hex().upper())
    return masked + text[-4:]


def _tree(data: bytes, kernel: str | None, reveal: bool) -> list[dict[str, Any]] | None:
    if not data:
        return None
    try:
        objects = tlv_mod.decode(data)
    except TlvError:
        return None
    return tlv_mod.to_json_tree(objects, kernel=kernel, reveal=reveal) or None


def _from_hex(text: str | None) -> bytes | None:
    """Bytes of a hex field, or None when absent or already masked."""
    if text is None or MASK in text:
        return None
    return bytes.fromhex(text)


def mask_record(record: TraceRecord, *, kernel: str | None = None, reveal: bool = False) -> TraceRecord:
    """The record as it is written: trees decoded, and (unless ``reveal``) masked.

    ``record.kernel`` wins over ``kernel``; with neither, masking is conservative (a tag sensitive
    in any kernel is masked). Records that are already masked are returned unchanged.
    """
    if record.masked:
        return record
    kernel = record.kernel or kernel
    command = _from_hex(record.command)
    response = _from_hex(record.response)
    command_tlv = record.command_tlv
    if command is not None:
        try:
            bounds = _command_data_bounds(command)
        except ApduError:
            bounds = None
        if bounds is not None and command[1] in TLV_INS:
            command_tlv = _tree(command[bounds[0] : bounds[1]], kernel, reveal)
    response_tlv = record.response_tlv
    if response is not None and len(response) >= 2:
        response_tlv = _tree(response[:-2], kernel, reveal)
    if reveal:
        return replace(record, command_tlv=command_tlv, response_tlv=response_tlv, masked=False)
    return replace(
        record,
        command=record.command if command is None else mask_command_hex(command, kernel),
        response=record.response if response is None else mask_response_hex(response, kernel),
        command_tlv=command_tlv,
        response_tlv=response_tlv,
        masked=True,
    )


# --- JSON lines ---------------------------------------------------------------------------------


def record_to_json(record: TraceRecord) -> str:
    """One JSON object, no newline; keys are the field names of :class:`TraceRecord`."""
    return json.dumps(asdict(record), ensure_ascii=False, separators=(",", ":"))


_FIELDS = frozenset(f.name for f in fields(TraceRecord))


def record_from_json(line: str, *, line_no: int | None = None) -> TraceRecord:
    """Parse one JSON line back into a :class:`TraceRecord` (unknown keys are ignored)."""
    where = f"trace line {line_no}" if line_no is not None else "trace line"
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ProtocolError(exc.msg, offset=exc.pos, expected="a JSON object", field=where) from None
    if not isinstance(obj, dict):
        raise ProtocolError("not a JSON object", expected="a JSON object", field=where)
    if "timestamp" not in obj or "direction" not in obj:
        raise ProtocolError("missing timestamp or direction", field=where)
    known = {k: v for k, v in obj.items() if k in _FIELDS}
    try:
        return TraceRecord(**known)
    except TypeError as exc:
        raise ProtocolError(f"bad field: {exc}", field=where) from None


def read_trace(lines: Iterable[str]) -> list[TraceRecord]:
    """Records of a JSON-lines trace (blank lines skipped)."""
    return [
        record_from_json(line, line_no=number)
        for number, line in enumerate(lines, start=1)
        if line.strip()
    ]


class TraceWriter:
    """Writes :class:`TraceRecord` objects as JSON lines to ``stream``, masked unless ``reveal``.

    The writer never opens or closes files; ``stream`` is any text stream owned by the caller.
    """

    def __init__(self, stream: TextIO, *, kernel: str | None = None, reveal: bool = False) -> None:
        self.stream = stream
        self.kernel = kernel
        self.reveal = reveal

    def write(self, record: TraceRecord) -> TraceRecord:
        """Mask, serialise and write one record; returns the record as written."""
        written = mask_record(record, kernel=self.kernel, reveal=self.reveal)
        self.stream.write(record_to_json(written) + "\n")
        return written
