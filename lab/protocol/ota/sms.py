"""SMS-PP data download: the SMS-DELIVER TPDU and the ENVELOPE that hands it to the UICC.

An OTA server sends a secured packet (:mod:`.scp80`) as the user data of an SMS-DELIVER; the
handset sees TP-PID ``7F`` (SIM data download) with a class 2 TP-DCS and passes the TPDU to the
UICC in an ENVELOPE (SMS-PP download) instead of storing it (3GPP TS 31.111 clause 7.1.1).

SMS-DELIVER (3GPP TS 23.040 clause 9.2.2.1)::

    first octet | TP-OA | TP-PID | TP-DCS | TP-SCTS (7) | TP-UDL | TP-UD

* first octet: b1b0 TP-MTI ``00``, b2 TP-MMS (1 = no more messages), b3 TP-LP, b5 TP-SRI,
  b6 TP-UDHI, b7 TP-RP (clause 9.2.3.1-9.2.3.23);
* TP-OA (clause 9.1.2.5): number of digits, TON/NPI, digits as swapped semi-octets with an ``F``
  filler (``*`` ``#`` ``a`` ``b`` ``c`` are the semi-octets A-E). Alphanumeric addresses (TON 101,
  GSM 7-bit packed) are not supported;
* TP-DCS (3GPP TS 23.038 clause 4): only octet-coded alphabets (8-bit data, UCS2) are accepted,
  so TP-UDL counts octets; OTA uses ``F6`` (8-bit, class 2) or ``16``;
* TP-UD: with TP-UDHI, a user data header ``UDHL {IEI IEDL data}`` (clause 9.2.3.24) precedes the
  short message; a secured command packet is announced by the IE ``70`` of length 0 (3GPP TS
  31.115 clause 4), so :func:`~.scp80.build_command_packet`'s default output (``02 70 00`` + packet)
  *is* a TP-UD. At most 140 octets per SMS.

Concatenated SMS (TS 23.040 clause 9.2.3.24.1 / .8; 3GPP TS 31.115 clause 4, ETSI TS 102 225
clause 4): a command packet longer than one SMS is cut into segments, each an SMS-DELIVER whose UDH
holds the concatenation IE ``00 03 ref total seq`` (8-bit reference; ``08 04 ref ref total seq``
with a 16-bit one); the first segment's UDH also holds the command packet identifier ``70 00``
(``07 00 03 ref total 01 70 00``), the others only the concatenation IE. Each segment travels in
its own ENVELOPE (SMS-PP download); the receiving entity reassembles the packet
(:class:`SegmentReassembler`) and only then verifies and runs it, so the PoR answers the last
segment. :func:`segment_command_packet` cuts, :func:`command_packet_segment` reads one segment.

ENVELOPE (SMS-PP download), ETSI TS 102 223 / 3GPP TS 31.111 clause 7.1.1.2, a BER-TLV holding
COMPREHENSION-TLVs (ETSI TS 101 220 clause 7.1.1; a tag's b8 is the "comprehension required"
flag, ignored when parsing)::

    80 C2 00 00 Lc  D1 L  82 02 83 81 | [06 L TON/NPI SMSC digits] | 8B L <SMS-DELIVER TPDU>  [Le]

Device identities ``83`` (network) → ``81`` (UICC); the address is the RP originating address
(the SMSC). Response (paylab's simplification [M], documented rather than modelled): the PoR (a
:func:`~.scp80.build_response_packet` with its ``02 71 00`` header, which the handset returns in
the SMS-DELIVER-REPORT) is the ENVELOPE's response data with SW 9000. A T=0 card makes that 61xx +
GET RESPONSE (the emulated runtime does this); the TS 102 221 91xx (proactive command pending) and
9Fxx forms and the 62xx/63xx "data download error" answers with data are parsed by
:func:`parse_envelope_response` but never produced.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from ..apdu import CommandApdu
from ..errors import ApduError, ProtocolError

MAX_USER_DATA = 140  #: TP-UD octets in one SMS (TS 23.040 clause 9.2.3.16)
PID_SIM_DATA_DOWNLOAD = 0x7F  #: TP-PID (TS 23.040 clause 9.2.3.9)
DCS_8BIT_CLASS2 = 0xF6  #: TP-DCS: data coding/message class group, 8-bit data, class 2 (TS 23.038 clause 4)
IEI_CONCATENATED_8BIT = 0x00
IEI_CONCATENATED_16BIT = 0x08
IEI_COMMAND_PACKET = 0x70  #: TS 31.115 clause 4 (CPI)
IEI_RESPONSE_PACKET = 0x71  #: TS 31.115 clause 4 (RPI)

CLA_ENVELOPE = 0x80
INS_ENVELOPE = 0xC2  #: TS 102 221 clause 10.1.1 (ENVELOPE)
TAG_SMS_PP_DOWNLOAD = 0xD1  #: TS 101 220 table 7.17 (BER-TLV tags for card application toolkit)
TAG_DEVICE_IDENTITIES = 0x02  #: TS 101 220 table 7.23 (COMPREHENSION-TLV tags), CR flag 0x80
TAG_ADDRESS = 0x06
TAG_SMS_TPDU = 0x0B
DEVICE_NETWORK = 0x83  #: TS 102 223 clause 8.7
DEVICE_UICC = 0x81

_DIGITS = "0123456789*#abc"


class SmsError(ProtocolError):
    """A malformed or unsupported SMS TPDU, ENVELOPE or ENVELOPE response."""


# --- addresses ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Address:
    """A numeric address: digits (``0-9 * # a b c``) and the TON/NPI octet (``91`` international/E.164)."""

    digits: str
    ton_npi: int = 0x91

    def __post_init__(self) -> None:
        if not isinstance(self.digits, str) or any(c not in _DIGITS for c in self.digits) or len(self.digits) > 20:
            raise SmsError(f"address {self.digits!r}", field="address", expected="up to 20 of 0-9 * # a b c")
        if not 0x80 <= self.ton_npi <= 0xFF:
            raise SmsError(f"TON/NPI {self.ton_npi!r}", field="TON/NPI", expected="80..FF (b8 set)")
        if self.ton_npi & 0x70 == 0x50:
            raise SmsError("alphanumeric addresses are not supported", field="TON/NPI")

    def semi_octets(self) -> bytes:
        """The digits as swapped semi-octets, ``F``-filled (TS 23.040 clause 9.1.2.3)."""
        nibbles = [_DIGITS.index(c) for c in self.digits] + ([0xF] if len(self.digits) % 2 else [])
        return bytes(nibbles[i] | nibbles[i + 1] << 4 for i in range(0, len(nibbles), 2))

    @classmethod
    def from_semi_octets(cls, ton_npi: int, raw: bytes, digits: int | None = None, *, offset: int = 0) -> Address:
        """Inverse of :meth:`semi_octets`; ``digits`` (TP-OA) or a trailing ``F`` filler tells the count."""
        nibbles = [n for byte in raw for n in (byte & 0x0F, byte >> 4)]
        if digits is None:
            digits = len(nibbles) - 1 if nibbles and nibbles[-1] == 0xF else len(nibbles)
        if any(n >= len(_DIGITS) for n in nibbles[:digits]) or any(n != 0xF for n in nibbles[digits:]):
            raise SmsError(f"bad semi-octets {raw.hex().upper()}", offset=offset, field="address",
                           expected="BCD digits (A-E for * # a b c) with an F filler")
        return cls("".join(_DIGITS[n] for n in nibbles[:digits]), ton_npi)


# --- SMS-DELIVER --------------------------------------------------------------------------------


@dataclass(frozen=True)
class InformationElement:
    """One user data header information element (TS 23.040 clause 9.2.3.24)."""

    iei: int
    data: bytes = b""


def encode_udh(elements: tuple[InformationElement, ...] | list[InformationElement]) -> bytes:
    """``UDHL {IEI IEDL data}``."""
    body = b"".join(bytes((ie.iei, len(ie.data))) + bytes(ie.data) for ie in elements)
    if len(body) > MAX_USER_DATA - 1:
        raise SmsError(f"user data header of {len(body)} octets", field="UDHL", expected="at most 139")
    return bytes((len(body),)) + body


def parse_udh(user_data: bytes) -> tuple[tuple[InformationElement, ...], int]:
    """The header elements of a TP-UD with TP-UDHI set, and where the short message starts."""
    if not user_data:
        raise SmsError("TP-UDHI set but no user data", offset=0, field="UDHL")
    end = 1 + user_data[0]
    if end > len(user_data):
        raise SmsError(f"UDHL {user_data[0]} runs past the {len(user_data)} octets", offset=0, field="UDHL")
    elements, pos = [], 1
    while pos < end:
        if pos + 2 > end or pos + 2 + user_data[pos + 1] > end:
            raise SmsError("information element runs past the header", offset=pos, field="IEDL")
        elements.append(InformationElement(user_data[pos], bytes(user_data[pos + 2:pos + 2 + user_data[pos + 1]])))
        pos += 2 + user_data[pos + 1]
    return tuple(elements), end


def octet_coded(dcs: int) -> bool:
    """Whether TP-UDL counts octets (8-bit data or UCS2) rather than septets (TS 23.038 clause 4)."""
    group = dcs >> 4
    if group <= 0x7:  # general data coding (00xx) and automatic deletion (01xx) groups
        return (dcs >> 2) & 0x03 in (0x01, 0x02)
    if group == 0xF:  # data coding / message class
        return bool(dcs & 0x04)
    return group == 0xE  # message waiting, UCS2; C/D are GSM 7-bit, 8-B reserved (7-bit assumed)


def message_class(dcs: int) -> int | None:
    """The message class 0-3 of a TP-DCS, or None when it has none (TS 23.038 clause 4)."""
    group = dcs >> 4
    if group == 0xF or (group <= 0x7 and dcs & 0x10):
        return dcs & 0x03
    return None


def _check_byte(value: int, name: str) -> None:
    if not isinstance(value, int) or not 0 <= value <= 0xFF:
        raise SmsError(f"{value!r} is not a byte", field=name)


@dataclass(frozen=True)
class SmsDeliver:
    """An SMS-DELIVER TPDU (TS 23.040 clause 9.2.2.1). ``user_data`` is the whole TP-UD (with the
    UDH when ``udhi``); :attr:`header` and :attr:`short_message` split it."""

    originating_address: Address
    user_data: bytes
    pid: int = PID_SIM_DATA_DOWNLOAD
    dcs: int = DCS_8BIT_CLASS2
    scts: bytes = bytes(7)
    udhi: bool = True
    more_messages: bool = False
    loop_prevention: bool = False
    status_report: bool = False
    reply_path: bool = False

    def __post_init__(self) -> None:
        _check_byte(self.pid, "TP-PID")
        _check_byte(self.dcs, "TP-DCS")
        if not octet_coded(self.dcs):
            raise SmsError(f"TP-DCS {self.dcs:02X} is a 7-bit alphabet", field="TP-DCS",
                           expected="8-bit data or UCS2 (e.g. F6)")
        if len(self.scts) != 7:
            raise SmsError(f"TP-SCTS of {len(self.scts)} octets", field="TP-SCTS", expected="7 octets")
        if len(self.user_data) > MAX_USER_DATA:
            raise SmsError(f"TP-UD of {len(self.user_data)} octets (longer data travel as concatenated SMS)",
                           field="TP-UDL", expected=f"at most {MAX_USER_DATA}")
        if self.udhi:
            parse_udh(self.user_data)

    @property
    def header(self) -> tuple[InformationElement, ...]:
        """The user data header elements (empty without TP-UDHI)."""
        return parse_udh(self.user_data)[0] if self.udhi else ()

    @property
    def short_message(self) -> bytes:
        """The user data after the header."""
        return self.user_data[parse_udh(self.user_data)[1]:] if self.udhi else self.user_data

    def encode(self) -> bytes:
        """The TPDU octets."""
        first = (0x04 * (not self.more_messages) | 0x08 * self.loop_prevention | 0x20 * self.status_report
                 | 0x40 * self.udhi | 0x80 * self.reply_path)
        oa = self.originating_address
        return (bytes((first, len(oa.digits), oa.ton_npi)) + oa.semi_octets()
                + bytes((self.pid, self.dcs)) + bytes(self.scts) + bytes((len(self.user_data),)) + self.user_data)

    @classmethod
    def decode(cls, tpdu: bytes) -> SmsDeliver:
        """Parse an SMS-DELIVER; :class:`SmsError` names the offset of what is wrong."""
        tpdu = bytes(tpdu)
        if len(tpdu) < 3:
            raise SmsError(f"TPDU of {len(tpdu)} octets", offset=len(tpdu), expected="first octet and TP-OA")
        first = tpdu[0]
        if first & 0x03:
            raise SmsError(f"TP-MTI {first & 0x03}", offset=0, field="TP-MTI", expected="00 (SMS-DELIVER)")
        digits, ton_npi = tpdu[1], tpdu[2]
        pos = 3 + (digits + 1) // 2
        if pos + 10 > len(tpdu):
            raise SmsError("TPDU ends inside its header", offset=len(tpdu), expected=f"at least {pos + 10} octets")
        if ton_npi & 0x70 == 0x50:
            raise SmsError("alphanumeric TP-OA is not supported", offset=2, field="TP-OA")
        if not ton_npi & 0x80 or digits > 20:
            raise SmsError(f"TP-OA of {digits} digits, TON/NPI {ton_npi:02X}", offset=1, field="TP-OA")
        address = Address.from_semi_octets(ton_npi, tpdu[3:pos], digits, offset=3)
        pid, dcs, scts, udl = tpdu[pos], tpdu[pos + 1], tpdu[pos + 2:pos + 9], tpdu[pos + 9]
        if not octet_coded(dcs):
            raise SmsError(f"TP-DCS {dcs:02X} is a 7-bit alphabet", offset=pos + 1, field="TP-DCS",
                           expected="8-bit data or UCS2")
        if udl != len(tpdu) - pos - 10:
            raise SmsError(f"TP-UDL {udl} but {len(tpdu) - pos - 10} octets follow", offset=pos + 9, field="TP-UDL")
        try:
            return cls(address, tpdu[pos + 10:], pid, dcs, scts, udhi=bool(first & 0x40),
                       more_messages=not first & 0x04, loop_prevention=bool(first & 0x08),
                       status_report=bool(first & 0x20), reply_path=bool(first & 0x80))
        except SmsError as exc:
            raise SmsError(exc.message, offset=pos + 10 + (exc.offset or 0), field=exc.field,
                           expected=exc.expected) from None


def command_packet(deliver: SmsDeliver) -> bytes:
    """The secured command packet of a data download SMS (without its ``02 70 00`` header), for
    :func:`~.scp80.parse_command_packet` with ``udh=False``: TP-PID must be 7F and the user data
    header must announce a command packet (IE 70, TS 31.115 clause 4). A segment of a concatenated
    SMS is refused here: use :func:`command_packet_segment` and a :class:`SegmentReassembler`."""
    if deliver.pid != PID_SIM_DATA_DOWNLOAD:
        raise SmsError(f"TP-PID {deliver.pid:02X}", field="TP-PID", expected="7F (SIM data download)")
    if not any(ie.iei == IEI_COMMAND_PACKET for ie in deliver.header):
        raise SmsError("no command packet identifier in the user data header", field="UDH", expected="IE 70")
    if any(ie.iei in (IEI_CONCATENATED_8BIT, IEI_CONCATENATED_16BIT) for ie in deliver.header):
        raise SmsError("concatenated SMS are not supported", field="UDH")
    return deliver.short_message


# --- concatenated SMS -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Concatenation:
    """The concatenated short message IE (TS 23.040 clause 9.2.3.24.1: IEI 00, 8-bit reference;
    clause 9.2.3.24.8: IEI 08, 16-bit reference): reference, total segments, this one's number (1..)."""

    reference: int
    total: int
    sequence: int
    wide: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.reference <= (0xFFFF if self.wide else 0xFF):
            raise SmsError(f"reference {self.reference!r}", field="concatenation reference",
                           expected="0..65535" if self.wide else "0..255")
        if not 1 <= self.total <= 0xFF or not 1 <= self.sequence <= self.total:
            raise SmsError(f"segment {self.sequence!r} of {self.total!r}", field="concatenation sequence",
                           expected="1 <= sequence <= total <= 255")

    def element(self) -> InformationElement:
        """The IE ``00 03 ref total seq`` (or ``08 04 ref(2) total seq``)."""
        if self.wide:
            return InformationElement(IEI_CONCATENATED_16BIT,
                                      self.reference.to_bytes(2, "big") + bytes((self.total, self.sequence)))
        return InformationElement(IEI_CONCATENATED_8BIT, bytes((self.reference, self.total, self.sequence)))

    @classmethod
    def from_element(cls, ie: InformationElement) -> Concatenation:
        """Parse an IE 00 or 08; :class:`SmsError` for a wrong length, total 0 or sequence out of range."""
        wide = ie.iei == IEI_CONCATENATED_16BIT
        if ie.iei not in (IEI_CONCATENATED_8BIT, IEI_CONCATENATED_16BIT) or len(ie.data) != 3 + wide:
            raise SmsError(f"IE {ie.iei:02X} of {len(ie.data)} octets", field="UDH",
                           expected="IE 00 of 3 octets or IE 08 of 4 octets")
        reference = int.from_bytes(ie.data[:1 + wide], "big")
        return cls(reference, ie.data[-2], ie.data[-1], wide)


def concatenation(deliver: SmsDeliver) -> Concatenation | None:
    """The concatenation IE of an SMS-DELIVER, or None when it is a single SMS. A segment with
    total 1 is a single SMS too."""
    found = [ie for ie in deliver.header if ie.iei in (IEI_CONCATENATED_8BIT, IEI_CONCATENATED_16BIT)]
    if len(found) > 1:
        raise SmsError("more than one concatenation IE", field="UDH")
    return Concatenation.from_element(found[0]) if found else None


def segment_command_packet(packet: bytes, reference: int, *, wide: bool = False,
                           max_user_data: int = MAX_USER_DATA) -> list[bytes]:
    """The TP-UD of each SMS carrying ``packet`` (a secured command packet without its
    ``02 70 00`` header, i.e. :func:`~.scp80.build_command_packet` with ``udh=False``): one TP-UD
    ``02 70 00 packet`` when it fits, else segments (module docstring) with ``reference``. Every
    segment but the last is full."""
    packet = bytes(packet)
    cpi = InformationElement(IEI_COMMAND_PACKET)
    single = encode_udh([cpi]) + packet
    if len(single) <= max_user_data:
        return [single]
    first_room = max_user_data - len(encode_udh([Concatenation(0, 1, 1, wide).element(), cpi]))
    room = max_user_data - len(encode_udh([Concatenation(0, 1, 1, wide).element()]))
    if first_room <= 0 or room <= 0:
        raise SmsError(f"no room for data in {max_user_data} octets", field="TP-UDL")
    chunks = [packet[:first_room]] + [packet[i:i + room] for i in range(first_room, len(packet), room)]
    if len(chunks) > 0xFF:
        raise SmsError(f"a packet of {len(packet)} octets needs {len(chunks)} segments", field="concatenation",
                       expected="at most 255 segments")
    segments = []
    for number, chunk in enumerate(chunks, 1):
        elements = [Concatenation(reference, len(chunks), number, wide).element()] + ([cpi] if number == 1 else [])
        segments.append(encode_udh(elements) + chunk)
    return segments


def max_concatenated_packet(segments: int, *, wide: bool = False, max_user_data: int = MAX_USER_DATA) -> int:
    """The longest command packet (without ``02 70 00``) ``segments`` SMS carry."""
    if segments <= 1:
        return max_user_data - len(encode_udh([InformationElement(IEI_COMMAND_PACKET)]))
    concat = Concatenation(0, 1, 1, wide).element()
    first = max_user_data - len(encode_udh([concat, InformationElement(IEI_COMMAND_PACKET)]))
    return first + (segments - 1) * (max_user_data - len(encode_udh([concat])))


@dataclass(frozen=True)
class Segment:
    """One received SMS of a (possibly) concatenated command packet: ``concat`` None for a single SMS."""

    originator: Address
    concat: Concatenation | None
    data: bytes
    command_packet_identifier: bool


def command_packet_segment(deliver: SmsDeliver) -> Segment:
    """Read one data download SMS: TP-PID 7F; a single SMS or the first segment must carry IE 70
    (TS 31.115 clause 4), later segments need not. Raises :class:`SmsError`."""
    if deliver.pid != PID_SIM_DATA_DOWNLOAD:
        raise SmsError(f"TP-PID {deliver.pid:02X}", field="TP-PID", expected="7F (SIM data download)")
    concat = concatenation(deliver)
    cpi = any(ie.iei == IEI_COMMAND_PACKET for ie in deliver.header)
    if concat is not None and concat.total == 1:
        concat = None
    if (concat is None or concat.sequence == 1) and not cpi:
        raise SmsError("no command packet identifier in the user data header", field="UDH", expected="IE 70")
    return Segment(deliver.originating_address, concat, deliver.short_message, cpi)


@dataclass
class _Partial:
    started: float
    parts: dict[int, bytes]


class SegmentReassembler:
    """Collects the segments of concatenated command packets (pure: the caller passes the time).

    Messages are told apart by (originating address, reference, total, 8/16-bit). Segments may come
    in any order; a duplicate with the same content is ignored, one with other content means the
    reference was reused, so the partial message restarts from it. A message not complete within
    ``timeout_s`` of its first segment is dropped (:meth:`expire`, also run on every :meth:`add`),
    and at most ``max_messages`` partial messages are kept (the oldest goes first).
    """

    def __init__(self, *, timeout_s: float = 120.0, max_messages: int = 4) -> None:
        self.timeout_s = timeout_s
        self.max_messages = max_messages
        self._partials: dict[tuple[str, int, int, bool], _Partial] = {}
        self.dropped = 0  #: partial messages dropped (timeout, eviction, reference reuse)

    @property
    def pending(self) -> int:
        """Partial messages held."""
        return len(self._partials)

    def expire(self, now: float) -> int:
        """Drop the partial messages older than the timeout; returns how many."""
        old = [key for key, partial in self._partials.items() if now - partial.started > self.timeout_s]
        for key in old:
            del self._partials[key]
        self.dropped += len(old)
        return len(old)

    def add(self, segment: Segment, now: float) -> bytes | None:
        """Store ``segment``; the whole packet once every segment is in (the message is then
        forgotten), else None. A single SMS comes straight back."""
        self.expire(now)
        if segment.concat is None:
            return segment.data
        c = segment.concat
        key = (f"{segment.originator.ton_npi:02X}{segment.originator.digits}", c.reference, c.total, c.wide)
        partial = self._partials.get(key)
        if partial is not None and partial.parts.get(c.sequence, segment.data) != segment.data:
            del self._partials[key]  # reference reused: the old message is lost
            self.dropped += 1
            partial = None
        if partial is None:
            while len(self._partials) >= self.max_messages:
                oldest = min(self._partials, key=lambda k: self._partials[k].started)
                del self._partials[oldest]
                self.dropped += 1
            partial = self._partials[key] = _Partial(now, {})
        partial.parts.setdefault(c.sequence, segment.data)
        if len(partial.parts) < c.total:
            return None
        del self._partials[key]
        return b"".join(partial.parts[n] for n in range(1, c.total + 1))


def scts_from_datetime(moment: datetime.datetime) -> bytes:
    """TP-SCTS (TS 23.040 clause 9.2.3.11): YY MM DD hh mm ss TZ as swapped semi-octets; TZ in
    quarters of an hour, the sign in b4 of the last octet. ``moment`` must be timezone-aware."""
    offset = moment.utcoffset()
    if offset is None:
        raise SmsError("TP-SCTS needs a timezone-aware time", field="TP-SCTS")
    quarters = int(offset.total_seconds()) // 900

    def swapped(value: int) -> int:
        return (value % 10) << 4 | (value // 10) % 10

    fields = (moment.year % 100, moment.month, moment.day, moment.hour, moment.minute, moment.second)
    return bytes(swapped(v) for v in fields) + bytes((swapped(abs(quarters)) | (0x08 if quarters < 0 else 0),))


# --- ENVELOPE (SMS-PP download) -----------------------------------------------------------------


def _length(n: int) -> bytes:
    """BER / COMPREHENSION-TLV length: 1 octet below 128, else ``81 xx`` (TS 101 220 clause 7.1.2)."""
    if n > 0xFF:
        raise SmsError(f"length {n}", field="length", expected="at most 255")
    return bytes((n,)) if n < 0x80 else bytes((0x81, n))


def _read_length(data: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(data):
        raise SmsError("missing length", offset=pos, field="length")
    if data[pos] < 0x80:
        return data[pos], pos + 1
    if data[pos] == 0x81 and pos + 1 < len(data) and data[pos + 1] >= 0x80:
        return data[pos + 1], pos + 2
    raise SmsError(f"bad length octet {data[pos]:02X}", offset=pos, field="length",
                   expected="00-7F, or 81 followed by 80-FF")


@dataclass(frozen=True)
class SmsPpDownload:
    """An ENVELOPE (SMS-PP download) data object, tag D1 (TS 31.111 clause 7.1.1.2)."""

    deliver: SmsDeliver
    address: Address | None = None
    source: int = DEVICE_NETWORK
    destination: int = DEVICE_UICC

    def encode(self) -> bytes:
        """``D1 L 82 02 src dst [06 L address] 8B L TPDU``."""
        body = bytes((0x80 | TAG_DEVICE_IDENTITIES, 2, self.source, self.destination))
        if self.address is not None:
            value = bytes((self.address.ton_npi,)) + self.address.semi_octets()
            body += bytes((TAG_ADDRESS,)) + _length(len(value)) + value
        tpdu = self.deliver.encode()
        body += bytes((0x80 | TAG_SMS_TPDU,)) + _length(len(tpdu)) + tpdu
        return bytes((TAG_SMS_PP_DOWNLOAD,)) + _length(len(body)) + body

    @classmethod
    def decode(cls, data: bytes) -> SmsPpDownload:
        """Parse the D1 object (the ENVELOPE's data field)."""
        data = bytes(data)
        if not data or data[0] != TAG_SMS_PP_DOWNLOAD:
            raise SmsError("not an SMS-PP download", offset=0, field="tag", expected="D1")
        length, pos = _read_length(data, 1)
        if pos + length != len(data):
            raise SmsError(f"length {length} but {len(data) - pos} octets follow", offset=1, field="length")
        items: dict[int, tuple[int, bytes]] = {}
        while pos < len(data):
            at, tag = pos, data[pos] & 0x7F
            if data[pos] in (0x00, 0x80, 0xFF) or tag == 0x7F:
                raise SmsError(f"tag {data[pos]:02X}", offset=pos, field="tag",
                               expected="a single-octet COMPREHENSION-TLV tag")
            length, pos = _read_length(data, pos + 1)
            if pos + length > len(data):
                raise SmsError(f"tag {tag:02X} runs past the envelope", offset=at, field=f"tag {tag:02X}")
            items.setdefault(tag, (pos, data[pos:pos + length]))
            pos += length
        if TAG_DEVICE_IDENTITIES not in items or TAG_SMS_TPDU not in items:
            raise SmsError("device identities or SMS TPDU missing", offset=0, expected="tags 82 and 8B")
        ids_at, ids = items[TAG_DEVICE_IDENTITIES]
        if len(ids) != 2:
            raise SmsError(f"device identities of {len(ids)} octets", offset=ids_at, expected="2 octets")
        address = None
        if TAG_ADDRESS in items:
            addr_at, value = items[TAG_ADDRESS]
            if not value or not value[0] & 0x80 or value[0] & 0x70 == 0x50:
                raise SmsError("bad address TON/NPI", offset=addr_at, field="address")
            address = Address.from_semi_octets(value[0], value[1:], offset=addr_at + 1)
        tpdu_at, tpdu = items[TAG_SMS_TPDU]
        try:
            deliver = SmsDeliver.decode(tpdu)
        except SmsError as exc:
            raise SmsError(exc.message, offset=tpdu_at + (exc.offset or 0), field=exc.field,
                           expected=exc.expected) from None
        return cls(deliver, address, ids[0], ids[1])


def build_envelope_command(download: SmsPpDownload) -> bytes:
    """The ENVELOPE C-APDU ``80 C2 00 00 Lc D1... 00`` (case 4: the PoR comes back as data)."""
    data = download.encode()
    if len(data) > 0xFF:
        raise SmsError(f"ENVELOPE data of {len(data)} octets", field="Lc", expected="at most 255")
    return CommandApdu(CLA_ENVELOPE, INS_ENVELOPE, 0x00, 0x00, data, le=256).encode()


def parse_envelope_command(capdu: bytes) -> SmsPpDownload:
    """Parse an ENVELOPE C-APDU carrying an SMS-PP download (any logical channel bits in CLA)."""
    try:
        cmd = CommandApdu.decode(capdu)
    except ApduError as exc:
        raise SmsError(f"not a command APDU: {exc}", field="C-APDU") from exc
    if cmd.cla & 0xF0 != CLA_ENVELOPE or cmd.ins != INS_ENVELOPE or cmd.p1 or cmd.p2:
        raise SmsError(f"{capdu[:4].hex().upper()} is not ENVELOPE", offset=0, expected="80 C2 00 00")
    return SmsPpDownload.decode(cmd.data)


@dataclass(frozen=True)
class EnvelopeResponse:
    """What the UICC answered to an SMS-PP download ENVELOPE."""

    data: bytes
    sw: int

    @property
    def ok(self) -> bool:
        """Normal ending: 9000, or 91xx (a proactive command is pending)."""
        return self.sw == 0x9000 or self.sw >> 8 == 0x91

    @property
    def download_error(self) -> bool:
        """62xx/63xx: the data download failed; the data (if any) go back in an RP-ERROR."""
        return self.sw >> 8 in (0x62, 0x63)


def build_envelope_response(por: bytes = b"", sw: int = 0x9000) -> bytes:
    """R-APDU of an ENVELOPE: the PoR as response data, then the SW."""
    if not 0 <= sw <= 0xFFFF:
        raise SmsError(f"SW {sw!r}", field="SW")
    return bytes(por) + sw.to_bytes(2, "big")


def parse_envelope_response(rapdu: bytes) -> EnvelopeResponse:
    """Split an ENVELOPE R-APDU (after any 61xx/9Fxx GET RESPONSE) into data and SW."""
    rapdu = bytes(rapdu)
    if len(rapdu) < 2:
        raise SmsError(f"R-APDU of {len(rapdu)} octets", offset=len(rapdu), expected="at least SW1 SW2")
    return EnvelopeResponse(rapdu[:-2], int.from_bytes(rapdu[-2:], "big"))
