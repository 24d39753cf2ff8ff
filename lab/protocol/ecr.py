"""ECR <-> POS serial protocol of the simulated POS: frames, messages and the link state machine.

Domain brief section 6, "Recommended framing for the simulated POS" (the generic STX/LEN/ETX/LRC
style of Asian and LatAm terminals; vendor variants differ). Everything here is pure: bytes and
the current time ``now`` (seconds, any monotonic origin) go in, events and bytes to write come out.

Frame
-----
::

    STX 02 | LEN 2 bytes BCD = len(DATA), 0000..9999 | DATA | ETX 03 | LRC = XOR of LEN..ETX

Outside a frame, a lone ``ACK`` (06) or ``NAK`` (15) byte acknowledges the last frame; any other
byte is line noise and is skipped. Inside a frame every byte is counted by LEN, so DATA may hold
any value.

Message (DATA)
--------------
``DATA = TYPE (2 ASCII characters [0-9A-Z]) || fields``; each field is ``TAG (1 byte) | LEN
(1 byte) | VALUE`` and a tag may repeat (receipt lines). Requests end in ``0``, their responses
in ``1``; ``K0`` is the POS's "processing" keep-alive and has no response.

======  =============================  ======  ==============================
Type    Meaning                         Type    Meaning
======  =============================  ======  ==============================
S0/S1   sale                            Q0/Q1   query last transaction
V0/V1   void                            C0/C1   cancel the running request
R0/R1   refund                          I0/I1   identify / terminal status
K0      processing keep-alive (POS)
======  =============================  ======  ==============================

====  ==============  ===========  ============================================================
Tag   Name            Format       Use
====  ==============  ===========  ============================================================
01    amount          n12 BCD      amount in minor units (fen), 6 bytes
02    currency        n3 BCD       ISO 4217 numeric, 2 bytes ``01 56`` = CNY
03    ecr_ref         ans 1..32    the ECR's own reference (invoice number)
04    trace           n6 BCD       ECR-assigned number of the request; the response echoes it
05    result          an2          ``00`` approved; ISO 8583 field 39 code from the host, or the
                                   POS-local ``C1`` cancelled, ``T1`` card timeout, ``E1`` POS
                                   error, ``NF`` nothing found (Q1)
06    auth_code       an6          authorisation code (ISO 8583 field 38)
07    receipt         text 0..255  one receipt line, UTF-8; repeat the tag for every line
08    pan_masked      ans 1..19    digits and ``*`` only, at least one ``*``, at most 10 digits
09    original_trace  n6 BCD       V0/R0: trace of the original sale; Q1: trace of the last
                                   transaction
0A    rrn             an12         retrieval reference number (ISO 8583 field 37)
0B    terminal_id     ans8         ISO 8583 field 41
0C    merchant_id     ans15        ISO 8583 field 42
0D    text            text 0..255  display / status text (e.g. in K0 or I1), UTF-8
0E    timestamp       n14 BCD      YYYYMMDDhhmmss, 7 bytes
0F    original_type   an2          Q1: the type of the last transaction (``S0``, ``V0``, ``R0``)
====  ==============  ===========  ============================================================

Unknown tags are kept as raw bytes so newer peers interoperate; known tags are validated.

Link rules (:class:`EcrLink`)
-----------------------------
* A sent frame waits for ACK/NAK up to 1 s; on NAK or timeout it is retransmitted, 3 attempts in
  total, then :class:`LinkFailed`. One frame is in flight at a time; later ones queue.
* A received good frame is ACKed; a bad frame (LEN, ETX or LRC wrong) or an undecodable message
  is NAKed. A partial frame with an inter-byte gap over 500 ms is silently dropped.
* POS role: a request whose trace equals the last received request's trace is a duplicate:
  ACK it and replay the last response (not delivered to the application again).
* ECR role: a request's response is due within 60 s of its first transmission; every K0 restarts
  the 60 s. After a timeout of a financial request (S0, V0, R0), or a link failure while sending
  one, the outcome is unknown: :class:`QueryLastRequired` is emitted and further financial
  requests are refused (never re-send the sale) until a Q1 answers a Q0.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from .errors import EcrFrameError

STX = 0x02
ETX = 0x03
ACK = 0x06
NAK = 0x15
ACK_BYTES = bytes((ACK,))
NAK_BYTES = bytes((NAK,))

MAX_DATA_LEN = 9999
ACK_TIMEOUT = 1.0
MAX_ATTEMPTS = 3
INTER_BYTE_TIMEOUT = 0.5
RESPONSE_TIMEOUT = 60.0

SALE, SALE_RESPONSE = "S0", "S1"
VOID, VOID_RESPONSE = "V0", "V1"
REFUND, REFUND_RESPONSE = "R0", "R1"
QUERY_LAST, QUERY_LAST_RESPONSE = "Q0", "Q1"
CANCEL, CANCEL_RESPONSE = "C0", "C1"
IDENTIFY, IDENTIFY_RESPONSE = "I0", "I1"
KEEP_ALIVE = "K0"
FINANCIAL_TYPES = frozenset({SALE, VOID, REFUND})

TAG_AMOUNT = 0x01
TAG_CURRENCY = 0x02
TAG_ECR_REF = 0x03
TAG_TRACE = 0x04
TAG_RESULT = 0x05
TAG_AUTH_CODE = 0x06
TAG_RECEIPT = 0x07
TAG_PAN_MASKED = 0x08
TAG_ORIGINAL_TRACE = 0x09
TAG_RRN = 0x0A
TAG_TERMINAL_ID = 0x0B
TAG_MERCHANT_ID = 0x0C
TAG_TEXT = 0x0D
TAG_TIMESTAMP = 0x0E
TAG_ORIGINAL_TYPE = 0x0F

CURRENCY_CNY = 156

# -- frame layer -------------------------------------------------------------------------------


def lrc(data: bytes) -> int:
    """XOR of all bytes (the frame check is taken over LEN..ETX)."""
    value = 0
    for byte in data:
        value ^= byte
    return value


def _bcd_length(length: int) -> bytes:
    return bytes.fromhex(f"{length:04d}")


def _parse_bcd(raw: bytes) -> int | None:
    text = raw.hex()
    return int(text) if text.isdigit() else None


def encode_frame(data: bytes) -> bytes:
    """``STX | LEN | DATA | ETX | LRC``. :raises EcrFrameError: DATA longer than 9999 bytes."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise EcrFrameError(f"expected bytes, got {type(data).__name__}", field="DATA", expected="bytes")
    data = bytes(data)
    if len(data) > MAX_DATA_LEN:
        raise EcrFrameError(
            f"{len(data)} data bytes do not fit a frame", field="LEN", expected=f"at most {MAX_DATA_LEN}"
        )
    body = _bcd_length(len(data)) + data + bytes((ETX,))
    return bytes((STX,)) + body + bytes((lrc(body),))


def decode_frame(raw: bytes) -> bytes:
    """DATA of exactly one complete frame. :raises EcrFrameError: anything else."""
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise EcrFrameError(f"expected bytes, got {type(raw).__name__}", field="frame", expected="bytes")
    raw = bytes(raw)
    if not raw or raw[0] != STX:
        raise EcrFrameError("frame does not start with STX", offset=0, expected="02", field="STX")
    if len(raw) < 3:
        raise EcrFrameError("truncated frame", offset=len(raw), expected="2 BCD length bytes", field="LEN")
    length = _parse_bcd(raw[1:3])
    if length is None:
        raise EcrFrameError(
            f"LEN {raw[1:3].hex().upper()} is not BCD", offset=1, expected="0000..9999", field="LEN"
        )
    if len(raw) != length + 5:
        raise EcrFrameError(
            f"frame of {len(raw)} bytes for LEN {length}",
            offset=min(len(raw), length + 5),
            expected=f"{length + 5} bytes",
            field="LEN",
        )
    if raw[3 + length] != ETX:
        raise EcrFrameError("ETX missing", offset=3 + length, expected="03", field="ETX")
    if lrc(raw[1:-1]) != raw[-1]:
        raise EcrFrameError(
            f"LRC {raw[-1]:02X} wrong", offset=len(raw) - 1, expected=f"{lrc(raw[1:-1]):02X}", field="LRC"
        )
    return raw[3 : 3 + length]


# -- events ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EcrEvent:
    """Base of everything :class:`FrameParser` and :class:`EcrLink` report."""


Event = EcrEvent


@dataclass(frozen=True)
class FrameReceived(EcrEvent):
    """A frame with correct LEN, ETX and LRC (the link ACKs it)."""

    data: bytes


@dataclass(frozen=True)
class AckReceived(EcrEvent):
    """A lone ACK (06) between frames."""


@dataclass(frozen=True)
class NakReceived(EcrEvent):
    """A lone NAK (15) between frames."""


@dataclass(frozen=True)
class FrameRejected(EcrEvent):
    """A frame that started with STX but whose LEN, ETX or LRC is wrong: answer with NAK."""

    reason: str
    raw: bytes
    offset: int | None = None


@dataclass(frozen=True)
class PartialFrameDiscarded(EcrEvent):
    """A frame interrupted by an inter-byte gap over 500 ms; dropped without NAK."""

    raw: bytes
    gap: float


@dataclass(frozen=True)
class NoiseDiscarded(EcrEvent):
    """Bytes outside any frame that are neither STX, ACK nor NAK."""

    data: bytes


# -- streaming frame parser --------------------------------------------------------------------


class FrameParser:
    """Splits a byte stream into :class:`EcrEvent` s; never raises on any input.

    On a wrong LEN only the STX is dropped and the following bytes are scanned again; on a wrong
    ETX the bytes from the ETX position on are scanned again (a real frame may start there); on a
    wrong LRC the whole frame is dropped.
    """

    def __init__(self, *, inter_byte_timeout: float = INTER_BYTE_TIMEOUT) -> None:
        self.inter_byte_timeout = inter_byte_timeout
        self._frame = bytearray()
        self._length: int | None = None
        self._last_rx: float | None = None

    @property
    def in_frame(self) -> bool:
        """True while a frame has been started but not completed."""
        return bool(self._frame)

    def poll(self, now: float) -> list[EcrEvent]:
        """Drop a partial frame whose last byte arrived more than the inter-byte timeout ago."""
        if self._frame and self._last_rx is not None:
            gap = now - self._last_rx
            if gap > self.inter_byte_timeout:
                raw = bytes(self._frame)
                self._reset()
                return [PartialFrameDiscarded(raw, gap)]
        return []

    def feed(self, data: bytes, now: float) -> list[EcrEvent]:
        """Process ``data`` received at ``now``; returns the events in stream order."""
        events = self.poll(now)
        if not data:
            return events
        self._last_rx = now
        noise = bytearray()
        work = bytes(data)
        index = 0
        while index < len(work):
            byte = work[index]
            index += 1
            if not self._frame:
                if byte in (STX, ACK, NAK):
                    if noise:
                        events.append(NoiseDiscarded(bytes(noise)))
                        noise.clear()
                    if byte == STX:
                        self._frame.append(byte)
                    else:
                        events.append(AckReceived() if byte == ACK else NakReceived())
                else:
                    noise.append(byte)
                continue
            self._frame.append(byte)
            rescan = self._step(events)
            if rescan:
                work = rescan + work[index:]
                index = 0
        if noise:
            events.append(NoiseDiscarded(bytes(noise)))
        return events

    def _reset(self) -> None:
        self._frame.clear()
        self._length = None

    def _step(self, events: list[EcrEvent]) -> bytes:
        """Advance after one byte was appended to the frame; returns bytes to scan again."""
        frame = self._frame
        size = len(frame)
        if size == 3:
            self._length = _parse_bcd(bytes(frame[1:3]))
            if self._length is None:
                events.append(FrameRejected(f"LEN {frame[1:3].hex().upper()} is not BCD", bytes(frame), 1))
                rescan = bytes(frame[1:])
                self._reset()
                return rescan
            return b""
        if self._length is None or size < 3:
            return b""
        etx_at = 3 + self._length
        if size == etx_at + 1 and frame[etx_at] != ETX:
            events.append(
                FrameRejected(f"ETX missing, got {frame[etx_at]:02X}", bytes(frame[:etx_at]), etx_at)
            )
            rescan = bytes(frame[etx_at:])
            self._reset()
            return rescan
        if size == etx_at + 2:
            raw = bytes(frame)
            expected = lrc(raw[1:-1])
            if raw[-1] == expected:
                events.append(FrameReceived(raw[3:etx_at]))
            else:
                events.append(
                    FrameRejected(f"LRC {raw[-1]:02X} wrong, expected {expected:02X}", raw, size - 1)
                )
            self._reset()
        return b""


# -- message layer -----------------------------------------------------------------------------

_Kind = Literal["n", "ns", "an", "text"]


@dataclass(frozen=True)
class _TagSpec:
    tag: int
    name: str
    kind: _Kind
    low: int  # n/ns: number of digits; an/text: minimum length in bytes
    high: int  # an/text: maximum length in bytes (n/ns: unused, equal to low)

    @property
    def size(self) -> int:
        return (self.low + 1) // 2


_TAG_SPECS: tuple[_TagSpec, ...] = (
    _TagSpec(TAG_AMOUNT, "amount", "n", 12, 12),
    _TagSpec(TAG_CURRENCY, "currency", "n", 3, 3),
    _TagSpec(TAG_ECR_REF, "ecr_ref", "an", 1, 32),
    _TagSpec(TAG_TRACE, "trace", "n", 6, 6),
    _TagSpec(TAG_RESULT, "result", "an", 2, 2),
    _TagSpec(TAG_AUTH_CODE, "auth_code", "an", 6, 6),
    _TagSpec(TAG_RECEIPT, "receipt", "text", 0, 255),
    _TagSpec(TAG_PAN_MASKED, "pan_masked", "an", 1, 19),
    _TagSpec(TAG_ORIGINAL_TRACE, "original_trace", "n", 6, 6),
    _TagSpec(TAG_RRN, "rrn", "an", 12, 12),
    _TagSpec(TAG_TERMINAL_ID, "terminal_id", "an", 8, 8),
    _TagSpec(TAG_MERCHANT_ID, "merchant_id", "an", 15, 15),
    _TagSpec(TAG_TEXT, "text", "text", 0, 255),
    _TagSpec(TAG_TIMESTAMP, "timestamp", "ns", 14, 14),
    _TagSpec(TAG_ORIGINAL_TYPE, "original_type", "an", 2, 2),
)
_BY_TAG = {spec.tag: spec for spec in _TAG_SPECS}
_BY_NAME = {spec.name: spec for spec in _TAG_SPECS}

FieldValue = int | str


def _field_name(tag: int) -> str:
    spec = _BY_TAG.get(tag)
    return f"tag {tag:02X} ({spec.name})" if spec else f"tag {tag:02X}"


def _check_value(tag: int, value: bytes, offset: int | None = None) -> None:
    """Validate a known tag's value; unknown tags take any value."""
    spec = _BY_TAG.get(tag)
    if spec is None:
        return
    where = _field_name(tag)
    if spec.kind in ("n", "ns"):
        if len(value) != spec.size:
            raise EcrFrameError(
                f"{len(value)} bytes",
                offset=offset,
                expected=f"{spec.size} bytes (n{spec.low} BCD)",
                field=where,
            )
        digits = value.hex()
        if not digits.isdigit() or int(digits) >= 10**spec.low:
            raise EcrFrameError(
                f"{digits.upper()} is not n{spec.low} BCD",
                offset=offset,
                expected="decimal digits",
                field=where,
            )
        return
    if not spec.low <= len(value) <= spec.high:
        raise EcrFrameError(
            f"{len(value)} bytes", offset=offset, expected=f"{spec.low}..{spec.high} bytes", field=where
        )
    if spec.kind == "text":
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EcrFrameError("not UTF-8", offset=offset, expected="UTF-8 text", field=where) from exc
        return
    if any(not 0x20 <= byte <= 0x7E for byte in value):
        raise EcrFrameError("not printable ASCII", offset=offset, expected="ASCII 20..7E", field=where)
    if tag == TAG_PAN_MASKED:
        text = value.decode("ascii")
        digits_shown = sum(char.isdigit() for char in text)
        if any(char not in "0123456789*" for char in text) or "*" not in text or digits_shown > 10:
            raise EcrFrameError(
                "PAN is not masked",
                offset=offset,
                expected="digits and '*', at least one '*', at most 10 digits shown",
                field=where,
            )


def _encode_value(spec: _TagSpec, value: FieldValue) -> bytes:
    if spec.kind == "n":
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 10**spec.low:
            raise EcrFrameError(
                f"{value!r}", expected=f"an integer of at most {spec.low} digits", field=spec.name
            )
        return bytes.fromhex(f"{value:0{spec.size * 2}d}")
    if not isinstance(value, str):
        raise EcrFrameError(f"{value!r}", expected="a string", field=spec.name)
    if spec.kind == "ns":
        if len(value) != spec.low or not value.isdigit() or not value.isascii():
            raise EcrFrameError(f"{value!r}", expected=f"{spec.low} decimal digits", field=spec.name)
        return bytes.fromhex(value)
    if spec.kind == "text":
        return value.encode("utf-8")
    if not value.isascii():
        raise EcrFrameError(f"{value!r}", expected="ASCII text", field=spec.name)
    return value.encode("ascii")


def _decode_value(spec: _TagSpec, value: bytes) -> FieldValue:
    if spec.kind == "n":
        return int(value.hex())
    if spec.kind == "ns":
        return value.hex()
    if spec.kind == "text":
        return value.decode("utf-8")
    return value.decode("ascii")


def _check_type(msg_type: object, offset: int | None = None) -> str:
    if (
        not isinstance(msg_type, str)
        or len(msg_type) != 2
        or any(char not in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ" for char in msg_type)
    ):
        raise EcrFrameError(
            f"message type {msg_type!r}", offset=offset, expected="2 characters 0-9/A-Z", field="type"
        )
    return msg_type


def response_type(request_type: str) -> str:
    """``"S0"`` -> ``"S1"``: the response type of a request type."""
    _check_type(request_type)
    if request_type[1] != "0" or request_type == KEEP_ALIVE:
        raise EcrFrameError(
            f"{request_type} is not a request type", field="type", expected="a type ending in 0"
        )
    return request_type[0] + "1"


@dataclass(frozen=True)
class EcrMessage:
    """One DATA block: a 2-character ``type`` and its TLV ``fields`` in order.

    ``fields`` is a tuple of ``(tag, value)`` pairs (a mapping ``{tag: value}`` is accepted and
    converted). Known tags are validated (:class:`EcrFrameError` naming the tag). Build messages
    with named values through :meth:`build`; read them with :meth:`get` or the properties.
    """

    type: str
    fields: tuple[tuple[int, bytes], ...] = ()

    def __post_init__(self) -> None:
        _check_type(self.type)
        pairs = self.fields.items() if isinstance(self.fields, Mapping) else self.fields
        normalised: list[tuple[int, bytes]] = []
        try:
            items = list(pairs)
        except TypeError as exc:
            raise EcrFrameError(
                "fields are not iterable", field="fields", expected="(tag, bytes) pairs"
            ) from exc
        for item in items:
            if not isinstance(item, tuple) or len(item) != 2:
                raise EcrFrameError(f"field {item!r}", field="fields", expected="a (tag, bytes) pair")
            tag, value = item
            if not isinstance(tag, int) or isinstance(tag, bool) or not 0 <= tag <= 0xFF:
                raise EcrFrameError(f"tag {tag!r}", field="fields", expected="an integer 0..255")
            if not isinstance(value, bytes | bytearray | memoryview):
                raise EcrFrameError(f"value {value!r}", field=_field_name(tag), expected="bytes")
            value = bytes(value)
            if len(value) > 255:
                raise EcrFrameError(
                    f"{len(value)} bytes", field=_field_name(tag), expected="at most 255 bytes"
                )
            _check_value(tag, value)
            normalised.append((tag, value))
        object.__setattr__(self, "fields", tuple(normalised))

    @classmethod
    def build(
        cls,
        type: str,
        *,
        extra: Iterable[tuple[int, bytes]] = (),
        receipt: Iterable[str] = (),
        **values: FieldValue | None,
    ) -> EcrMessage:
        """A message from named values, e.g. ``build("S0", amount=1234, currency=156, trace=1)``.

        Names are those of the tag table in the module docstring; ``None`` values are skipped;
        ``receipt`` gives one field per line; ``extra`` appends raw ``(tag, bytes)`` fields.
        Fields come out in tag table order.
        """
        unknown = set(values) - set(_BY_NAME)
        if unknown:
            raise EcrFrameError(
                f"unknown field name(s) {sorted(unknown)}", field="fields", expected=", ".join(_BY_NAME)
            )
        if isinstance(receipt, str):
            raise EcrFrameError(
                "receipt must be a sequence of lines", field="receipt", expected="list of str"
            )
        fields: list[tuple[int, bytes]] = []
        for spec in _TAG_SPECS:
            if spec.tag == TAG_RECEIPT:
                fields.extend((TAG_RECEIPT, _encode_value(spec, line)) for line in receipt)
                continue
            value = values.get(spec.name)
            if value is not None:
                fields.append((spec.tag, _encode_value(spec, value)))
        fields.extend(extra)
        return cls(type, tuple(fields))

    def encode(self) -> bytes:
        """``TYPE || (TAG LEN VALUE)*``."""
        out = bytearray(self.type.encode("ascii"))
        for tag, value in self.fields:
            out += bytes((tag, len(value))) + value
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes) -> EcrMessage:
        """Parse DATA. :raises EcrFrameError: bad type, truncated TLV or an invalid known value."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise EcrFrameError(f"expected bytes, got {type(data).__name__}", field="DATA", expected="bytes")
        data = bytes(data)
        if len(data) < 2:
            raise EcrFrameError(
                "message shorter than its type", offset=len(data), expected="2-character type", field="type"
            )
        try:
            msg_type = data[:2].decode("ascii")
        except UnicodeDecodeError as exc:
            raise EcrFrameError(
                "type is not ASCII", offset=0, expected="2 characters 0-9/A-Z", field="type"
            ) from exc
        _check_type(msg_type, 0)
        fields: list[tuple[int, bytes]] = []
        index = 2
        while index < len(data):
            if index + 2 > len(data):
                raise EcrFrameError(
                    "truncated field header", offset=index, expected="tag and length", field="TLV"
                )
            tag, length = data[index], data[index + 1]
            end = index + 2 + length
            if end > len(data):
                raise EcrFrameError(
                    f"value of {length} bytes runs past the end",
                    offset=index + 1,
                    expected=f"at most {len(data) - index - 2} bytes",
                    field=_field_name(tag),
                )
            value = data[index + 2 : end]
            _check_value(tag, value, index + 2)
            fields.append((tag, value))
            index = end
        return cls(msg_type, tuple(fields))

    def raw(self, tag: int) -> bytes | None:
        """Value of the first field with ``tag``, or ``None``."""
        for field_tag, value in self.fields:
            if field_tag == tag:
                return value
        return None

    def get(self, name: str) -> FieldValue | None:
        """Decoded value of the first field called ``name`` (int for n, str otherwise), or ``None``."""
        spec = _BY_NAME.get(name)
        if spec is None:
            raise EcrFrameError(f"unknown field name {name!r}", field="fields", expected=", ".join(_BY_NAME))
        value = self.raw(spec.tag)
        return None if value is None else _decode_value(spec, value)

    def get_all(self, name: str) -> list[FieldValue]:
        """Decoded values of every field called ``name`` (e.g. all receipt lines)."""
        spec = _BY_NAME.get(name)
        if spec is None:
            raise EcrFrameError(f"unknown field name {name!r}", field="fields", expected=", ".join(_BY_NAME))
        return [_decode_value(spec, value) for tag, value in self.fields if tag == spec.tag]

    def _int(self, name: str) -> int | None:
        value = self.get(name)
        return value if isinstance(value, int) else None

    def _str(self, name: str) -> str | None:
        value = self.get(name)
        return value if isinstance(value, str) else None

    @property
    def trace(self) -> int | None:
        return self._int("trace")

    @property
    def amount(self) -> int | None:
        return self._int("amount")

    @property
    def currency(self) -> int | None:
        return self._int("currency")

    @property
    def result(self) -> str | None:
        return self._str("result")

    @property
    def receipt(self) -> list[str]:
        return [line for line in self.get_all("receipt") if isinstance(line, str)]

    @property
    def is_request(self) -> bool:
        """Type ends in ``0`` and is not the K0 keep-alive."""
        return self.type[1] == "0" and self.type != KEEP_ALIVE

    @property
    def is_response(self) -> bool:
        return self.type[1] == "1"

    @property
    def is_keep_alive(self) -> bool:
        return self.type == KEEP_ALIVE

    @property
    def is_financial(self) -> bool:
        """S0, V0 or R0: requests whose outcome must never be left unknown."""
        return self.type in FINANCIAL_TYPES

    def answers(self, request: EcrMessage) -> bool:
        """True if this is the response type of ``request`` and the traces agree (or one is absent)."""
        if not (self.is_response and request.is_request and self.type[0] == request.type[0]):
            return False
        return self.trace is None or request.trace is None or self.trace == request.trace


# -- link events -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MessageReceived(EcrEvent):
    """A new message for the application (POS: a request; ECR: an unsolicited message)."""

    message: EcrMessage


@dataclass(frozen=True)
class MessageRejected(EcrEvent):
    """A frame with a correct LRC whose DATA is not a valid message; it was NAKed."""

    data: bytes
    reason: str


@dataclass(frozen=True)
class Delivered(EcrEvent):
    """The peer ACKed ``message`` (or, ECR role, answered it before its ACK arrived)."""

    message: EcrMessage


@dataclass(frozen=True)
class Retransmission(EcrEvent):
    """``message`` is being sent again; ``attempt`` counts from 1 (2 = first retransmission)."""

    message: EcrMessage
    attempt: int
    reason: str


@dataclass(frozen=True)
class LinkFailed(EcrEvent):
    """``message`` was not ACKed after ``attempts`` attempts; it is dropped."""

    message: EcrMessage
    attempts: int
    reason: str


@dataclass(frozen=True)
class KeepAlive(EcrEvent):
    """ECR role: a K0 "processing" frame; the response timers restarted."""

    message: EcrMessage


@dataclass(frozen=True)
class DuplicateRequest(EcrEvent):
    """POS role: a request repeating the last request's trace (ACKed, not delivered again).

    ``replayed``: the last response was queued again (False while it is still being produced or sent).
    """

    message: EcrMessage
    replayed: bool


@dataclass(frozen=True)
class DuplicateFrame(EcrEvent):
    """ECR role: the same response frame again (the POS missed our ACK); ACKed and ignored."""

    message: EcrMessage


@dataclass(frozen=True)
class ResponseReceived(EcrEvent):
    """ECR role: ``response`` answers the pending ``request``."""

    request: EcrMessage
    response: EcrMessage


@dataclass(frozen=True)
class ResponseTimeout(EcrEvent):
    """ECR role: no response to ``request`` within the response timeout."""

    request: EcrMessage


@dataclass(frozen=True)
class QueryLastRequired(EcrEvent):
    """ECR role: the outcome of ``request`` is unknown; send Q0 (query last), never re-send it.

    ``refused`` is set when this event answers an attempt to send another financial request.
    """

    request: EcrMessage
    reason: str
    refused: EcrMessage | None = None


@dataclass(frozen=True)
class QueryLastResolved(EcrEvent):
    """ECR role: a Q1 arrived while ``request``'s outcome was unknown; financial requests are allowed again.

    Compare ``response``'s ``original_trace`` with ``request``'s ``trace`` to learn whether the
    POS performed it.
    """

    request: EcrMessage
    response: EcrMessage


LinkOutput = EcrEvent | bytes


@dataclass
class _Outgoing:
    message: EcrMessage
    frame: bytes
    attempts: int
    deadline: float


@dataclass
class _Pending:
    request: EcrMessage
    deadline: float


class EcrLink:
    """The link and session rules of one side (``role="ecr"`` or ``"pos"``), as a state machine.

    Drive it with :meth:`feed` (bytes read from the line), :meth:`send` (a message to transmit)
    and :meth:`poll` (the clock); each returns, in order, :class:`EcrEvent` s for the application
    and ``bytes`` to write to the line.
    """

    def __init__(
        self,
        role: Literal["ecr", "pos"],
        *,
        ack_timeout: float = ACK_TIMEOUT,
        max_attempts: int = MAX_ATTEMPTS,
        response_timeout: float = RESPONSE_TIMEOUT,
        inter_byte_timeout: float = INTER_BYTE_TIMEOUT,
    ) -> None:
        if role not in ("ecr", "pos"):
            raise EcrFrameError(f"role {role!r}", field="role", expected="'ecr' or 'pos'")
        self.role = role
        self.ack_timeout = ack_timeout
        self.max_attempts = max_attempts
        self.response_timeout = response_timeout
        self._parser = FrameParser(inter_byte_timeout=inter_byte_timeout)
        self._queue: deque[EcrMessage] = deque()
        self._in_flight: _Outgoing | None = None
        # ECR role
        self._pending: list[_Pending] = []
        self._unresolved: EcrMessage | None = None
        self._last_response_data: bytes | None = None
        # POS role
        self._last_request: EcrMessage | None = None
        self._last_response: EcrMessage | None = None

    # -- state ------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """True while a frame waits for its ACK or more frames are queued."""
        return self._in_flight is not None or bool(self._queue)

    @property
    def query_last_required(self) -> bool:
        """ECR role: a financial request's outcome is unknown; financial requests are refused."""
        return self._unresolved is not None

    @property
    def unresolved_request(self) -> EcrMessage | None:
        return self._unresolved

    @property
    def pending_requests(self) -> tuple[EcrMessage, ...]:
        """ECR role: requests sent and not yet answered or timed out."""
        return tuple(pending.request for pending in self._pending)

    # -- inputs -----------------------------------------------------------------------------

    def send(self, message: EcrMessage, now: float) -> list[LinkOutput]:
        """Queue ``message``; returns its frame if the line is free.

        ECR role: a financial request while :attr:`query_last_required` is refused and answered
        with :class:`QueryLastRequired` (nothing is sent).
        :raises EcrFrameError: ``message`` is not an :class:`EcrMessage` or does not fit a frame.
        """
        if not isinstance(message, EcrMessage):
            raise EcrFrameError(f"expected EcrMessage, got {type(message).__name__}", field="message")
        if self.role == "ecr" and message.is_financial and self._unresolved is not None:
            return [QueryLastRequired(self._unresolved, "outcome of the previous request unknown", message)]
        encode_frame(message.encode())  # size check now, not when dequeued
        if self.role == "pos" and self._last_request is not None and message.answers(self._last_request):
            self._last_response = message
        self._queue.append(message)
        return self._pump(now)

    def feed(self, data: bytes, now: float) -> list[LinkOutput]:
        """Process bytes read from the line at ``now`` (timers expired before ``now`` run first)."""
        out = self.poll(now)
        for event in self._parser.feed(data, now):
            if isinstance(event, FrameReceived):
                out.extend(self._on_frame(event.data, now))
            elif isinstance(event, AckReceived):
                out.extend(self._on_ack(now))
            elif isinstance(event, NakReceived):
                if self._in_flight is not None:
                    out.extend(self._retry(now, "NAK"))
            elif isinstance(event, FrameRejected):
                out.append(NAK_BYTES)
                out.append(event)
            else:
                out.append(event)
        return out

    def poll(self, now: float) -> list[LinkOutput]:
        """Run the timers: inter-byte gap, ACK timeout, response timeouts."""
        out: list[LinkOutput] = list(self._parser.poll(now))
        if self._in_flight is not None and now > self._in_flight.deadline:
            out.extend(self._retry(now, "ACK timeout"))
        expired = [pending for pending in self._pending if now > pending.deadline]
        for pending in expired:
            self._pending.remove(pending)
            out.append(ResponseTimeout(pending.request))
            if pending.request.is_financial:
                self._unresolved = pending.request
                out.append(QueryLastRequired(pending.request, "response timeout"))
        return out

    # -- transmission -------------------------------------------------------------------------

    def _pump(self, now: float) -> list[LinkOutput]:
        if self._in_flight is not None or not self._queue:
            return []
        message = self._queue.popleft()
        frame = encode_frame(message.encode())
        self._in_flight = _Outgoing(message, frame, 1, now + self.ack_timeout)
        if self.role == "ecr" and message.is_request:
            self._pending.append(_Pending(message, now + self.response_timeout))
        return [frame]

    def _on_ack(self, now: float) -> list[LinkOutput]:
        if self._in_flight is None:
            return []
        message = self._in_flight.message
        self._in_flight = None
        return [Delivered(message), *self._pump(now)]

    def _retry(self, now: float, reason: str) -> list[LinkOutput]:
        outgoing = self._in_flight
        if outgoing is None:
            return []
        if outgoing.attempts >= self.max_attempts:
            self._in_flight = None
            out: list[LinkOutput] = [LinkFailed(outgoing.message, outgoing.attempts, reason)]
            out.extend(self._on_link_failed(outgoing.message))
            out.extend(self._pump(now))
            return out
        outgoing.attempts += 1
        outgoing.deadline = now + self.ack_timeout
        return [Retransmission(outgoing.message, outgoing.attempts, reason), outgoing.frame]

    def _on_link_failed(self, message: EcrMessage) -> list[LinkOutput]:
        if self.role != "ecr" or not message.is_request:
            return []
        self._pending = [pending for pending in self._pending if pending.request is not message]
        if message.is_financial:
            self._unresolved = message
            return [QueryLastRequired(message, "link failure")]
        return []

    # -- reception ----------------------------------------------------------------------------

    def _on_frame(self, data: bytes, now: float) -> list[LinkOutput]:
        try:
            message = EcrMessage.decode(data)
        except EcrFrameError as exc:
            return [NAK_BYTES, MessageRejected(data, str(exc))]
        out: list[LinkOutput] = [ACK_BYTES]
        if self.role == "pos":
            out.extend(self._pos_receive(message, now))
        else:
            out.extend(self._ecr_receive(message, data, now))
        return out

    def _pos_receive(self, message: EcrMessage, now: float) -> list[LinkOutput]:
        last = self._last_request
        if (
            message.is_request
            and last is not None
            and message.trace is not None
            and message.trace == last.trace
        ):
            response = self._last_response
            if response is None:
                return [DuplicateRequest(message, replayed=False)]
            in_line = (self._in_flight is not None and self._in_flight.message is response) or any(
                queued is response for queued in self._queue
            )
            if in_line:
                return [DuplicateRequest(message, replayed=False)]
            self._queue.append(response)
            return [DuplicateRequest(message, replayed=True), *self._pump(now)]
        if message.is_request:
            self._last_request = message
            self._last_response = None
        return [MessageReceived(message)]

    def _ecr_receive(self, message: EcrMessage, data: bytes, now: float) -> list[LinkOutput]:
        if message.is_keep_alive:
            for pending in self._pending:
                pending.deadline = now + self.response_timeout
            return [KeepAlive(message)]
        if not message.is_response:
            return [MessageReceived(message)]
        if data == self._last_response_data:
            return [DuplicateFrame(message)]
        self._last_response_data = data
        match = next((pending for pending in self._pending if message.answers(pending.request)), None)
        if match is None:
            return [MessageReceived(message)]
        self._pending.remove(match)
        out: list[LinkOutput] = []
        if self._in_flight is not None and self._in_flight.message is match.request:
            # The answer proves the request arrived although its ACK was lost.
            self._in_flight = None
            out.append(Delivered(match.request))
            out.extend(self._pump(now))
        out.append(ResponseReceived(match.request, message))
        if match.request.type == QUERY_LAST and self._unresolved is not None:
            out.append(QueryLastResolved(self._unresolved, message))
            self._unresolved = None
        return out
