"""The envelope around an ISO 8583 message: TCP length prefix, POS TPDU + header, CUPS header.

Pure bytes in / bytes out; sockets live in the drivers and services that call this.

* ``cup-pos`` (domain brief section 5, POSP): ``len(2, binary big-endian) | TPDU | header | MTI..``.
  TPDU = ``60 dddd ssss`` (ID, destination address, source address); the 6-byte header is
  application type (``60`` = POS), software version, terminal status and processing requirement
  nibbles, 3 reserved bytes [M]. The length counts everything after itself.
* ``switch`` (CUPS): a 4-byte ASCII decimal length prefix [M], then the 46-byte CUPS header
  [S: zhangwei5095/javaman2009 ``CUPSHeader.java``] and the message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

from ..errors import Iso8583Error
from .specs import CUPS_HEADER_LEN, HEADER_LEN, Dialect, check_dialect

DEFAULT_TPDU = bytes.fromhex("6000030000")
"""TPDU ``60 0003 0000``: ID 60, destination NII 0003, source 0000 [M: NII values are per acquirer]."""

DEFAULT_POS_HEADER = bytes.fromhex("603100000000")
"""POS header: application type 60, version 31, status 0, processing requirement 0, reserved [M]."""

PREFIX_LEN: dict[Dialect, int] = {"cup-pos": 2, "switch": 4}
MIN_BODY_LEN: dict[Dialect, int] = {d: HEADER_LEN[d] + (2 if d == "cup-pos" else 4) + 8 for d in HEADER_LEN}
"""Smallest possible message: envelope header, MTI and one bitmap."""
DEFAULT_MAX_BODY_LEN = 8192
"""Largest message :class:`StreamDeframer` accepts by default; real ones stay under 2 KB."""


def swap_tpdu(tpdu: bytes) -> bytes:
    """The TPDU of a response: destination and source addresses exchanged."""
    if len(tpdu) != 5:
        raise Iso8583Error(f"TPDU must be 5 bytes, got {len(tpdu)}", field="TPDU")
    return tpdu[:1] + tpdu[3:5] + tpdu[1:3]


@dataclass(frozen=True)
class CupsHeader:
    """The 46-byte CUPS message header [S: CUPSHeader.java field table; value formats M].

    ==========  =====  ===========================================================
    offset      bytes  content
    ==========  =====  ===========================================================
    0           1      header length, 0x2E (46)
    1           1      header flag and version (binary) [M: 0x01]
    2           4      total message length, ASCII digits, header included [M]
    6           11     destination ID, ASCII, left-justified, space-filled
    17          11     source ID, ASCII, left-justified, space-filled
    28          3      reserved (binary)
    31          1      batch number (binary)
    32          8      transaction information (ASCII)
    40          1      user information (binary)
    41          5      reject code (ASCII, ``00000`` = not rejected)
    ==========  =====  ===========================================================
    """

    destination_id: str = "00010000"
    source_id: str = "00000000"
    version: int = 0x01
    total_length: int = 0
    reserved: bytes = b"\x00\x00\x00"
    batch: int = 0
    transaction_info: str = "00000000"
    user_info: int = 0
    reject_code: str = "00000"

    def encode(self, total_length: int | None = None) -> bytes:
        """The 46 header bytes; ``total_length`` (header + body) overrides the stored one."""
        length = self.total_length if total_length is None else total_length
        if not 0 <= length <= 9999:
            raise Iso8583Error(f"total length {length} does not fit 4 digits", field="header")
        if len(self.reserved) != 3:
            raise Iso8583Error("reserved must be 3 bytes", field="header")
        try:
            out = (
                bytes([CUPS_HEADER_LEN, self.version])
                + f"{length:04d}".encode("ascii")
                + _ascii_fixed(self.destination_id, 11, "destination ID")
                + _ascii_fixed(self.source_id, 11, "source ID")
                + self.reserved
                + bytes([self.batch])
                + _ascii_fixed(self.transaction_info, 8, "transaction info")
                + bytes([self.user_info])
                + _ascii_fixed(self.reject_code, 5, "reject code")
            )
        except ValueError as exc:  # bytes([x]) with x outside 0..255
            raise Iso8583Error(f"header byte out of range: {exc}", field="header") from None
        return out

    @classmethod
    def decode(cls, raw: bytes) -> CupsHeader:
        """Parse the first 46 bytes of ``raw``; :class:`Iso8583Error` (field ``header``) if malformed."""
        if len(raw) < CUPS_HEADER_LEN:
            raise Iso8583Error(f"CUPS header needs {CUPS_HEADER_LEN} bytes, got {len(raw)}",
                               field="header", offset=0)
        if raw[0] != CUPS_HEADER_LEN:
            raise Iso8583Error(f"header length byte is 0x{raw[0]:02X}", field="header", offset=0,
                               expected="0x2E")
        length_text = raw[2:6]
        if not length_text.isdigit():
            raise Iso8583Error("total length is not 4 ASCII digits", field="header", offset=2)
        try:
            return cls(
                destination_id=raw[6:17].decode("ascii").rstrip(" "),
                source_id=raw[17:28].decode("ascii").rstrip(" "),
                version=raw[1],
                total_length=int(length_text),
                reserved=bytes(raw[28:31]),
                batch=raw[31],
                transaction_info=raw[32:40].decode("ascii"),
                user_info=raw[40],
                reject_code=raw[41:46].decode("ascii"),
            )
        except UnicodeDecodeError as exc:
            raise Iso8583Error("non-ASCII text in the CUPS header", field="header",
                               offset=exc.start) from None


def _ascii_fixed(text: str, size: int, what: str) -> bytes:
    try:
        data = text.encode("ascii")
    except UnicodeEncodeError:
        raise Iso8583Error(f"{what} must be ASCII", field="header") from None
    if len(data) > size:
        raise Iso8583Error(f"{what} longer than {size} characters", field="header")
    return data.ljust(size, b" ")


def frame(body: bytes, dialect: Dialect) -> bytes:
    """Prefix a message with the TCP length of its dialect (2-byte binary or 4 ASCII digits)."""
    dialect = check_dialect(dialect)
    if dialect == "cup-pos":
        if len(body) > 0xFFFF:
            raise Iso8583Error(f"message of {len(body)} bytes exceeds the 2-byte length",
                               field="length prefix")
        return len(body).to_bytes(2, "big") + body
    if len(body) > 9999:
        raise Iso8583Error(f"message of {len(body)} bytes exceeds the 4-digit length",
                           field="length prefix")
    return f"{len(body):04d}".encode("ascii") + body


class StreamDeframer:
    """Split a TCP byte stream into messages, whatever the read boundaries.

    ``feed`` returns every message completed by the new bytes (without the length prefix) and
    keeps the rest. A prefix that is not a number, or announces fewer than
    :data:`MIN_BODY_LEN` or more than ``max_length`` bytes, raises :class:`Iso8583Error`
    (field ``length prefix``); the stream is then out of sync, every later ``feed`` raises the
    same error, and the caller should drop the connection. In the ``switch`` dialect a zero
    length (``0000``) is a keep-alive and is skipped [M].
    """

    def __init__(self, dialect: Dialect, *, max_length: int = DEFAULT_MAX_BODY_LEN) -> None:
        self.dialect = check_dialect(dialect)
        self.max_length = max_length
        self._buffer = bytearray()
        self._consumed = 0
        self._error: Iso8583Error | None = None

    @property
    def pending(self) -> int:
        """Bytes received but not yet returned as a message."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the messages they complete, in order."""
        if self._error is not None:
            raise self._error
        self._buffer += data
        out: list[bytes] = []
        width = PREFIX_LEN[self.dialect]
        while len(self._buffer) >= width:
            length = self._length(bytes(self._buffer[:width]))
            if length == 0:  # switch keep-alive
                del self._buffer[:width]
                self._consumed += width
                continue
            if len(self._buffer) < width + length:
                break
            out.append(bytes(self._buffer[width : width + length]))
            del self._buffer[: width + length]
            self._consumed += width + length
        return out

    def _length(self, prefix: bytes) -> int:
        if self.dialect == "cup-pos":
            length = int.from_bytes(prefix, "big")
        elif prefix.isdigit():
            length = int(prefix)
            if length == 0:
                return 0
        else:
            self._fail(f"length prefix {prefix!r} is not 4 ASCII digits", "4 ASCII digits")
        if not MIN_BODY_LEN[self.dialect] <= length <= self.max_length:
            self._fail(f"absurd message length {length}",
                       f"{MIN_BODY_LEN[self.dialect]}..{self.max_length}")
        return length

    def _fail(self, message: str, expected: str) -> NoReturn:
        self._error = Iso8583Error(message, field="length prefix", offset=self._consumed, expected=expected)
        raise self._error
