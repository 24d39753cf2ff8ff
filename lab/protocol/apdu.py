"""Command and response APDUs, ISO/IEC 7816-4 clause 5.1, and T=0-style response recovery.

Command cases (clause 5.1, table 1); ``Lc``/``Le`` as transmitted, ``Nc``/``Ne`` as meant::

    1    CLA INS P1 P2
    2S   CLA INS P1 P2 Le              Le 01..FF, 00 = 256
    3S   CLA INS P1 P2 Lc data         Lc 01..FF
    4S   CLA INS P1 P2 Lc data Le
    2E   CLA INS P1 P2 00 HH LL        Le 0001..FFFF, 0000 = 65536
    3E   CLA INS P1 P2 00 HH LL data   Lc 0001..FFFF
    4E   CLA INS P1 P2 00 HH LL data HH LL

Short and extended fields never mix in one command: a command whose data or ``Le`` does not fit
the short form is extended throughout. :attr:`CommandApdu.le` is ``Ne`` (``None`` = no Le field,
otherwise 1..65536), never the raw byte.

The class byte (clause 5.4.1) codes the logical channel and secure messaging: first interindustry
``000x xxxx`` (channel 0-3 in b2-b1, SM in b4-b3), further interindustry ``01xx xxxx`` (channel
4-19 as 4 + b4-b1, SM in b6); b5 is command chaining in both. Proprietary classes (b8 = 1) are read
with the same bit layout, which is what GlobalPlatform prescribes (Card Specification v2.3 clause
11.1.4: 80-83/84-87 on channels 0-3, C0-CF/E0-EF on channels 4-19).

The encoder accepts any CLA and INS, including the values ISO reserves (CLA FF, INS 6X/9X): a test
lab must be able to send them to check that a card rejects them with 6E00/6D00.

Response recovery (ISO/IEC 7816-3 clause 10.3.3, ISO/IEC 7816-4 clause 5.3.4): SW 61xx says xx
more bytes wait for GET RESPONSE (00 = 256); SW 6Cxx says "resend with Le = xx".
:func:`transmit_with_chaining` follows both over an injected ``send`` callable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from .errors import ApduError
from .hexutil import hexs
from .sw import SW_OK, StatusWordError, describe

SHORT_MAX_NC = 255
SHORT_MAX_NE = 256
EXTENDED_MAX_NC = 65535
EXTENDED_MAX_NE = 65536
INS_GET_RESPONSE = 0xC0
DEFAULT_MAX_EXCHANGES = 256
"""Bound on the commands :func:`transmit_with_chaining` sends for one APDU: 256 GET RESPONSEs of
256 bytes each cover the largest extended response (65536 bytes)."""

SendApdu = Callable[[bytes], bytes]
"""A raw transmit function: command APDU bytes in, response APDU bytes (data + SW1 SW2) out."""


def _as_bytes(raw: object, what: str) -> bytes:
    if isinstance(raw, bytes):
        return raw
    if isinstance(raw, bytearray | memoryview):
        return bytes(raw)
    raise ApduError(f"expected bytes, got {type(raw).__name__}", field=what, expected="bytes")


def _check_byte(value: object, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0xFF:
        raise ApduError(f"{value!r} is not a byte value", field=name, expected="an integer 0..255")


@dataclass(frozen=True)
class CommandApdu:
    """A command APDU (ISO/IEC 7816-4 clause 5.1).

    ``le`` is Ne: ``None`` for no Le field, 1..256 in short form (256 is sent as ``00``),
    up to 65536 in extended form (65536 is sent as ``0000``); 0 is rejected.
    ``extended``: ``None`` chooses the short form whenever it fits, ``True`` forces the extended
    form, ``False`` forbids it (:class:`ApduError` if the command does not fit). After
    construction the flag is normalised so that two commands are equal exactly when their
    encodings are: it stays ``True`` only when it forces an extended form the automatic choice
    would not make, and is ``None`` otherwise. :attr:`is_extended` tells the form actually used.
    """

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None
    extended: bool | None = None

    def __post_init__(self) -> None:
        for name in ("cla", "ins", "p1", "p2"):
            _check_byte(getattr(self, name), name.upper())
        data = _as_bytes(self.data, "data")
        object.__setattr__(self, "data", data)
        if len(data) > EXTENDED_MAX_NC:
            raise ApduError(
                f"{len(data)} data bytes do not fit an APDU",
                field="Lc",
                expected=f"at most {EXTENDED_MAX_NC}",
            )
        le = self.le
        if le is not None and (
            not isinstance(le, int) or isinstance(le, bool) or not 1 <= le <= EXTENDED_MAX_NE
        ):
            raise ApduError(
                f"Le {le!r} out of range",
                field="Le",
                expected="None (no Le field) or 1..65536 (256 = short maximum, 65536 = extended maximum)",
            )
        if self.extended is not None and not isinstance(self.extended, bool):
            raise ApduError(f"extended={self.extended!r}", field="extended", expected="None, True or False")
        needed = self._extended_needed()
        if self.extended is False and needed:
            raise ApduError(
                "command does not fit the short form",
                field="Lc" if len(data) > SHORT_MAX_NC else "Le",
                expected=f"Nc <= {SHORT_MAX_NC} and Ne <= {SHORT_MAX_NE}, or extended=None/True",
            )
        forced = self.extended is True and not needed and (bool(data) or le is not None)
        object.__setattr__(self, "extended", True if forced else None)

    def _extended_needed(self) -> bool:
        return len(self.data) > SHORT_MAX_NC or (self.le is not None and self.le > SHORT_MAX_NE)

    @property
    def is_extended(self) -> bool:
        """True when the command is encoded with extended length fields."""
        return self.extended is True or self._extended_needed()

    @property
    def case(self) -> str:
        """ISO/IEC 7816-4 command case: "1", "2S", "3S", "4S", "2E", "3E" or "4E"."""
        if not self.data and self.le is None:
            return "1"
        form = "E" if self.is_extended else "S"
        if not self.data:
            return "2" + form
        if self.le is None:
            return "3" + form
        return "4" + form

    def encode(self) -> bytes:
        """The APDU bytes, short or extended per the class docstring."""
        header = bytes((self.cla, self.ins, self.p1, self.p2))
        if not self.data and self.le is None:
            return header
        if self.is_extended:
            body = b"\x00"
            if self.data:
                body += len(self.data).to_bytes(2, "big") + self.data
            if self.le is not None:
                body += (self.le & 0xFFFF).to_bytes(2, "big")  # 65536 -> 0000
        else:
            body = b""
            if self.data:
                body += bytes((len(self.data),)) + self.data
            if self.le is not None:
                body += bytes((self.le & 0xFF,))  # 256 -> 00
        return header + body

    def hex(self) -> str:
        """Uppercase hex of :meth:`encode`, for traces."""
        return hexs(self.encode())

    @classmethod
    def decode(cls, raw: bytes) -> CommandApdu:
        """Parse a command APDU of any case (ISO/IEC 7816-4 clause 5.1).

        :raises ApduError: fewer than 4 bytes, or a body whose length is inconsistent with its
            Lc/Le coding; ``offset`` is where the length field starts (4) or where bytes ran out.
        """
        raw = _as_bytes(raw, "command APDU")
        if len(raw) < 4:
            raise ApduError(
                "command APDU shorter than its header",
                offset=len(raw),
                expected="4 header bytes CLA INS P1 P2",
                field="header",
            )
        cla, ins, p1, p2 = raw[:4]
        body = raw[4:]
        size = len(body)

        def build(data: bytes = b"", le: int | None = None, extended: bool = False) -> CommandApdu:
            return cls(cla, ins, p1, p2, data, le, extended)

        if size == 0:
            return build()
        first = body[0]
        if size == 1:
            return build(le=first or SHORT_MAX_NE)
        if first != 0:
            lc = first
            if size == 1 + lc:
                return build(body[1:])
            if size == 2 + lc:
                return build(body[1:-1], body[-1] or SHORT_MAX_NE)
            raise ApduError(
                f"short Lc {lc} does not match the {size} bytes after the header",
                offset=4,
                expected=f"{1 + lc} (case 3S) or {2 + lc} (case 4S) bytes after the header",
                field="Lc",
            )
        if size == 2:
            raise ApduError(
                "truncated extended length field",
                offset=len(raw),
                expected="00 HH LL (extended Le) or 00 HH LL + data (extended Lc)",
                field="Le",
            )
        value = int.from_bytes(body[1:3], "big")
        if size == 3:
            return build(le=value or EXTENDED_MAX_NE, extended=True)
        if value == 0:
            raise ApduError(
                "extended Lc of 0000 followed by more bytes",
                offset=4,
                expected="Lc 0001..FFFF, or exactly 3 bytes 00 HH LL for an extended Le",
                field="Lc",
            )
        lc = value
        if size == 3 + lc:
            return build(body[3:], extended=True)
        if size == 5 + lc:
            return build(body[3:-2], int.from_bytes(body[-2:], "big") or EXTENDED_MAX_NE, True)
        raise ApduError(
            f"extended Lc {lc} does not match the {size} bytes after the header",
            offset=4,
            expected=f"{3 + lc} (case 3E) or {5 + lc} (case 4E) bytes after the header",
            field="Lc",
        )

    # -- class byte (ISO/IEC 7816-4 clause 5.4.1) --------------------------------------------

    @property
    def _further_class(self) -> bool:
        return bool(self.cla & 0x40)

    @property
    def channel(self) -> int:
        """Logical channel number coded in CLA: 0-3 (first interindustry), 4-19 (further)."""
        if self._further_class:
            return 4 + (self.cla & 0x0F)
        return self.cla & 0x03

    @property
    def secure_messaging(self) -> bool:
        """True when CLA indicates secure messaging (b4-b3 != 00, or b6 on channels 4-19)."""
        if self._further_class:
            return bool(self.cla & 0x20)
        return bool(self.cla & 0x0C)

    @property
    def chained(self) -> bool:
        """True when CLA b5 says "not the last command of a chain" (clause 5.3.3)."""
        return bool(self.cla & 0x10)

    def with_channel(self, n: int) -> CommandApdu:
        """The same command on logical channel ``n`` (0..19), keeping class, chaining and SM.

        Moving to channels 4-19 any SM indication becomes b6 = 1. For an interindustry class only
        b4-b3 = 10 ("SM per clause 6, header not processed") has that meaning, so 01 and 11 raise
        :class:`ApduError`; for a proprietary class the GlobalPlatform convention (84 <-> E0)
        applies. Moving back to 0-3, b6 = 1 becomes b4-b3 = 10 (interindustry) or 01
        (proprietary, GP ``84``).
        """
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= 19:
            raise ApduError(f"logical channel {n!r}", field="channel", expected="0..19")
        if self.cla == 0xFF:
            raise ApduError("CLA FF is invalid (reserved for PPS)", field="CLA", expected="00..FE")
        proprietary = self.cla & 0x80
        chain = self.cla & 0x10
        if n <= 3 and not self._further_class:
            cla = (self.cla & 0xFC) | n
        elif n >= 4 and self._further_class:
            cla = (self.cla & 0xF0) | (n - 4)
        elif n <= 3:
            sm_bits = (0x04 if proprietary else 0x08) if self.secure_messaging else 0
            cla = proprietary | chain | sm_bits | n
        else:
            if not self._further_class and not proprietary and (self.cla & 0x0C) in (0x04, 0x0C):
                raise ApduError(
                    f"CLA {self.cla:02X}: this secure messaging indication cannot be coded on channels 4-19",
                    field="CLA",
                    expected="no SM or SM b4-b3 = 10 for an interindustry class",
                )
            sm_bit = 0x20 if self.secure_messaging else 0
            cla = proprietary | 0x40 | sm_bit | chain | (n - 4)
        return replace(self, cla=cla)


@dataclass(frozen=True)
class ResponseApdu:
    """A response APDU: data field then SW1 SW2 (ISO/IEC 7816-4 clause 5.1)."""

    data: bytes
    sw1: int
    sw2: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", _as_bytes(self.data, "response data"))
        _check_byte(self.sw1, "SW1")
        _check_byte(self.sw2, "SW2")

    @classmethod
    def from_sw(cls, sw: int, data: bytes = b"") -> ResponseApdu:
        """Build from a 16-bit status word, e.g. ``ResponseApdu.from_sw(0x6A82)``."""
        if not isinstance(sw, int) or isinstance(sw, bool) or not 0 <= sw <= 0xFFFF:
            raise ApduError(f"{sw!r} is not a status word", field="SW", expected="0000..FFFF")
        return cls(data, sw >> 8, sw & 0xFF)

    @property
    def sw(self) -> int:
        """SW1 SW2 as one integer, e.g. ``0x9000``."""
        return self.sw1 << 8 | self.sw2

    def encode(self) -> bytes:
        return self.data + bytes((self.sw1, self.sw2))

    def hex(self) -> str:
        return hexs(self.encode())

    @classmethod
    def decode(cls, raw: bytes) -> ResponseApdu:
        """Split ``data || SW1 SW2``. :raises ApduError: fewer than 2 bytes."""
        raw = _as_bytes(raw, "response APDU")
        if len(raw) < 2:
            raise ApduError(
                "response APDU shorter than its status word",
                offset=len(raw),
                expected="at least 2 bytes (SW1 SW2)",
                field="SW",
            )
        return cls(raw[:-2], raw[-2], raw[-1])

    @property
    def ok(self) -> bool:
        """True only for 9000."""
        return self.sw == SW_OK

    def is_success(self) -> bool:
        """True for 9000, 61xx (normal processing, more data) and 62xx (warning, memory unchanged).

        63xx is excluded: 63Cx is a failed verification. EMV callers must still look at 6283 on
        SELECT (application blocked) themselves.
        """
        return self.ok or self.sw1 in (0x61, 0x62)

    @property
    def is_warning(self) -> bool:
        """True for the ISO warning families 62xx and 63xx."""
        return self.sw1 in (0x62, 0x63)

    def describe(self, context: str | None = None) -> str:
        """Meaning of the status word, see :func:`paylab.lab.protocol.sw.describe`."""
        return describe(self.sw, context)

    def check(
        self, command: str | None = None, *, context: str | None = None, allow_warnings: bool = False
    ) -> ResponseApdu:
        """Return ``self`` if the SW is 9000 (or :meth:`is_success` with ``allow_warnings``).

        :raises StatusWordError: otherwise, naming ``command`` and the SW meaning in ``context``.
        """
        if self.ok or (allow_warnings and self.is_success()):
            return self
        raise StatusWordError(self.sw, command, context=context, data=self.data)


def get_response(le: int, cla: int = 0x00) -> CommandApdu:
    """GET RESPONSE ``CLA C0 00 00 Le`` (ISO/IEC 7816-4 clause 11.6.1)."""
    return CommandApdu(cla, INS_GET_RESPONSE, 0x00, 0x00, le=le)


def needs_get_response(resp: ResponseApdu) -> int | None:
    """For SW 61xx, the number of bytes waiting (xx, 00 = 256); otherwise ``None``."""
    if resp.sw1 == 0x61:
        return resp.sw2 or SHORT_MAX_NE
    return None


def retry_with_le(cmd: CommandApdu, resp: ResponseApdu) -> CommandApdu | None:
    """For SW 6Cxx, ``cmd`` again with Le = xx (00 = 256); otherwise ``None``."""
    if resp.sw1 != 0x6C:
        return None
    return replace(cmd, le=resp.sw2 or SHORT_MAX_NE)


def transmit_with_chaining(
    send: SendApdu,
    cmd: CommandApdu,
    *,
    max_exchanges: int = DEFAULT_MAX_EXCHANGES,
    get_response_cla: int | None = None,
) -> ResponseApdu:
    """Send ``cmd`` and recover the whole response, T=0 style (ISO/IEC 7816-3 clause 10.3.3).

    * 6Cxx: the same command (or GET RESPONSE) is resent with Le = xx.
    * 61xx: GET RESPONSE with Le = xx; the data of every 61xx answer is kept and the final
      response carries all data concatenated, with the last status word.

    GET RESPONSE goes on the logical channel of ``cmd`` with an interindustry class unless
    ``get_response_cla`` is given. Pure apart from ``send``, whose exceptions propagate.

    :raises ApduError: a malformed response, a card asking (6Cxx) for the Le it was just sent,
        or more than ``max_exchanges`` commands needed.
    """
    gr_cla = (
        get_response_cla
        if get_response_cla is not None
        else CommandApdu(0x00, INS_GET_RESPONSE, 0, 0).with_channel(cmd.channel).cla
    )
    collected = bytearray()
    current = cmd
    for _ in range(max_exchanges):
        resp = ResponseApdu.decode(send(current.encode()))
        corrected = retry_with_le(current, resp)
        if corrected is not None:
            if corrected.le == current.le:
                raise ApduError(
                    f"card answered {resp.sw:04X} to a command that already had Le={resp.sw2:02X}",
                    field="SW2",
                    expected="a different Le or a final status word",
                )
            current = corrected
            continue
        available = needs_get_response(resp)
        if available is not None:
            collected += resp.data
            current = get_response(available, gr_cla)
            continue
        return ResponseApdu(bytes(collected) + resp.data, resp.sw1, resp.sw2)
    raise ApduError(
        f"no final status word after {max_exchanges} exchanges",
        field="GET RESPONSE",
        expected="the card to finish with a status word other than 61xx/6Cxx",
    )


class ApduExchanger:
    """A raw ``send`` callable (a driver's transmit) wrapped with :func:`transmit_with_chaining`."""

    def __init__(
        self,
        send: SendApdu,
        *,
        max_exchanges: int = DEFAULT_MAX_EXCHANGES,
        get_response_cla: int | None = None,
    ) -> None:
        self._send = send
        self.max_exchanges = max_exchanges
        self.get_response_cla = get_response_cla

    def transmit(self, cmd: CommandApdu) -> ResponseApdu:
        """Send ``cmd``, following 61xx/6Cxx, and return the complete response."""
        return transmit_with_chaining(
            self._send, cmd, max_exchanges=self.max_exchanges, get_response_cla=self.get_response_cla
        )

    def transmit_with_chaining(self, cmd: CommandApdu) -> ResponseApdu:
        """Alias of :meth:`transmit`."""
        return self.transmit(cmd)
