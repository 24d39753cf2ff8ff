"""SCP80 secured packets: command packets and Proof-of-Receipt (PoR) response packets.

ETSI TS 102 225 clause 5.1 (command packet) and clause 5.2 (response packet), in the SMS-PP
dialect of 3GPP TS 31.115 clause 4 (the packet follows a user data header whose only
information element is the CPI ``70`` or the RPI ``71``, both with length 0)::

    command:  [02 70 00] CPL(2) CHL SPI(2) KIc KID TAR(3) | CNTR(5) PCNTR [RC/CC] data [pad]
    response: [02 71 00] RPL(2) RHL TAR(3)                | CNTR(5) PCNTR status [RC/CC] [data] [pad]

The part after ``|`` is ciphered with the KIc key when the SPI asks for it (CBC with a zero IV,
or DES-ECB). PCNTR counts the zero padding octets added to reach the cipher block size. CPL/RPL
count from CHL/RHL to the end, CHL counts SPI..checksum (13 + checksum length), RHL counts
TAR..checksum (10 + checksum length).

The checksum is computed on the plaintext before ciphering:

* command: over CPL, CHL, SPI, KIc, KID, TAR, CNTR, PCNTR and the data with its padding; the
  SMS user data header is *not* included (matches the pySim vectors taken from real cards);
* response: over ``02 71 00`` (UDHL, RPI, RPIL; TS 31.115 includes them for the SMS dialect),
  RPL, RHL, TAR, CNTR, PCNTR, status and the data with its padding.

A DES/3DES cryptographic checksum is the last block of a CBC-MAC (ISO/IEC 9797-1 MAC algorithm 1
with zero padding, which is only added for the computation and never sent); an AES one is CMAC.
Both are truncated to the checksum length (8 by default). Counters are explicit state: the caller
passes the receiving entity's last accepted counter in and stores ``counter_state`` back.
"""

from __future__ import annotations

import hmac
import zlib
from collections.abc import Callable, Container
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal, TypeVar

from ..crypto.mac import iso9797_mac_alg1
from ..crypto.primitives import aes_cmac, cbc_decrypt, cbc_encrypt, ecb_decrypt, ecb_encrypt
from ..errors import CryptoError, OtaError, ProtocolError
from .ram import CompactResponse, parse_compact_response
from .spi import (
    Checksum,
    CounterMode,
    KicAlgorithm,
    KidAlgorithm,
    PorRequest,
    RcAlgorithm,
    Spi,
    key_algorithm,
    meets_minimum_security,
)

COMMAND_UDH = bytes.fromhex("027000")  #: UDHL 02, IEI 70 (CPI), length 0 (TS 31.115 clause 4)
RESPONSE_UDH = bytes.fromhex("027100")  #: UDHL 02, IEI 71 (RPI), length 0 (TS 31.115 clause 4)
COUNTER_MAX = (1 << 40) - 1  #: CNTR is five octets; at this value the counter is blocked
DEFAULT_CC_LENGTH = 8


class PorStatus(IntEnum):
    """Response status codes of a PoR (TS 102 225 clause 5.2; 0B/0C from TS 31.115)."""

    OK = 0x00
    RC_CC_DS_FAILED = 0x01
    COUNTER_LOW = 0x02
    COUNTER_HIGH = 0x03
    COUNTER_BLOCKED = 0x04
    CIPHERING_ERROR = 0x05
    UNIDENTIFIED_SECURITY_ERROR = 0x06
    INSUFFICIENT_MEMORY = 0x07
    MORE_TIME = 0x08
    TAR_UNKNOWN = 0x09
    INSUFFICIENT_SECURITY_LEVEL = 0x0A
    RESPONSE_VIA_SMS_SUBMIT = 0x0B  #: the actual response data are sent in an SMS-SUBMIT
    RESPONSE_VIA_USSD = 0x0C  #: [M] the actual response data are sent using USSD


@dataclass
class OtaKeys:
    """One OTA key set: the KIc/KID bytes as sent in the header and their key values."""

    kic_key: bytes
    kid_key: bytes
    kic: int
    kid: int


#: ``(kic, kid, tar) -> (kic_key, kid_key)``; raise ``OtaError`` (e.g. status 09) or ``LookupError``.
KeyResolver = Callable[[int, int, bytes], tuple[bytes, bytes]]


@dataclass(frozen=True)
class CommandPacket:
    """A verified and deciphered command packet (TS 102 225 clause 5.1).

    ``data`` is the secured data without padding (for RAM/RFM, a TS 102 226 command list).
    ``counter_state`` is what the receiving entity stores as its counter after accepting the
    packet: the packet's counter for counter modes 10 and 11, else the ``last_counter`` passed in.
    """

    spi: Spi
    kic: int
    kid: int
    tar: bytes
    counter: int
    pcntr: int
    checksum: bytes
    data: bytes
    counter_state: int | None


@dataclass(frozen=True)
class ResponsePacket:
    """A verified and deciphered PoR response packet (TS 102 225 clause 5.2).

    ``data`` is the additional response data without padding (for RAM/RFM, a TS 102 226
    response). ``secured`` is False for an error PoR sent without the checksum/ciphering the SPI
    asked for.
    """

    tar: bytes
    counter: int
    pcntr: int
    status: int
    checksum: bytes
    data: bytes
    secured: bool = True

    @property
    def ok(self) -> bool:
        """True when the status is PoR OK (00)."""
        return self.status == PorStatus.OK

    def compact(self) -> CompactResponse:
        """The data as a TS 102 226 clause 5.1.2 compact response (count, last SW, last data)."""
        return parse_compact_response(self.data)


# --- errors -------------------------------------------------------------------------------------


def _fail(status: PorStatus, message: str, **context: object) -> OtaError:
    return OtaError(message, por_status=int(status), **context)


def _format_error(message: str, **context: object) -> OtaError:
    # A malformed header has no dedicated code in TS 102 225 clause 5.2: "unidentified security error".
    return _fail(PorStatus.UNIDENTIFIED_SECURITY_ERROR, message, **context)


# --- algorithms ---------------------------------------------------------------------------------

_Mode = Literal["cbc", "ecb"]
_Name = Literal["des", "3des", "aes"]
_KIC_CIPHERS: dict[KicAlgorithm, tuple[_Name, _Mode, tuple[int, ...]]] = {
    KicAlgorithm.DES_CBC: ("des", "cbc", (8,)),
    KicAlgorithm.DES_ECB: ("des", "ecb", (8,)),
    KicAlgorithm.TDES_2KEY_CBC: ("3des", "cbc", (16,)),
    KicAlgorithm.TDES_3KEY_CBC: ("3des", "cbc", (24,)),
    KicAlgorithm.AES_CBC: ("aes", "cbc", (16, 24, 32)),
}
_KID_MACS: dict[KidAlgorithm, tuple[_Name, tuple[int, ...]]] = {
    KidAlgorithm.DES_CBC: ("des", (8,)),
    KidAlgorithm.TDES_2KEY_CBC: ("3des", (16,)),
    KidAlgorithm.TDES_3KEY_CBC: ("3des", (24,)),
    KidAlgorithm.AES_CMAC: ("aes", (16, 24, 32)),
}
_RC_LENGTHS = {RcAlgorithm.CRC16: 2, RcAlgorithm.CRC32: 4}
_Algorithm = TypeVar("_Algorithm", KicAlgorithm, KidAlgorithm, RcAlgorithm)


def _key_algorithm(
    kind: type[_Algorithm], kic_or_kid: int, implicit: int | None, supported: Container[_Algorithm]
) -> tuple[int, _Algorithm | None]:
    """The algorithm nibble of a KIc/KID byte (nibble 0, IMPLICIT, stands for ``implicit`` when one was
    agreed) and its ``kind`` member, None unless ``supported``."""
    nibble = key_algorithm(kic_or_kid)
    if nibble == 0 and implicit is not None:
        nibble = int(implicit)
    try:
        algorithm = kind(nibble)
    except ValueError:
        return nibble, None
    return nibble, algorithm if algorithm in supported else None


def _kic_algorithm(kic: int, implicit: KicAlgorithm | None) -> KicAlgorithm:
    nibble, algorithm = _key_algorithm(KicAlgorithm, kic, implicit, _KIC_CIPHERS)
    if algorithm is None:
        raise _fail(
            PorStatus.CIPHERING_ERROR, f"unsupported KIc algorithm {nibble:X}",
            field="KIc", expected="1, 2, 5, 9 or D (or 0 with an agreed algorithm)",
        )
    return algorithm


def _cipher(kic: int, key: bytes, implicit: KicAlgorithm | None) -> tuple[_Name, _Mode, int]:
    algorithm = _kic_algorithm(kic, implicit)
    name, mode, lengths = _KIC_CIPHERS[algorithm]
    if len(key) not in lengths:
        raise _fail(
            PorStatus.CIPHERING_ERROR, f"KIc key of {len(key)} bytes for {algorithm.name}",
            field="KIc", expected=f"{' or '.join(map(str, lengths))} bytes",
        )
    return name, mode, 16 if name == "aes" else 8


def _encrypt(kic: int, key: bytes, data: bytes, implicit: KicAlgorithm | None) -> bytes:
    name, mode, _ = _cipher(kic, key, implicit)
    if mode == "ecb":
        return ecb_encrypt(name, key, data)
    return cbc_encrypt(name, key, data)


def _decrypt(kic: int, key: bytes, data: bytes, implicit: KicAlgorithm | None) -> bytes:
    name, mode, block = _cipher(kic, key, implicit)
    if not data or len(data) % block:
        raise _fail(
            PorStatus.CIPHERING_ERROR, f"ciphered part of {len(data)} bytes",
            expected=f"a non-empty multiple of {block}",
        )
    try:
        if mode == "ecb":
            return ecb_decrypt(name, key, data)
        return cbc_decrypt(name, key, data)
    except CryptoError as exc:  # pragma: no cover - lengths are checked above
        raise _fail(PorStatus.CIPHERING_ERROR, str(exc)) from exc


def _block_size(kic: int, implicit: KicAlgorithm | None) -> int:
    return 16 if _KIC_CIPHERS[_kic_algorithm(kic, implicit)][0] == "aes" else 8


def _checksum_length(
    kind: Checksum, kid: int, implicit: KidAlgorithm | RcAlgorithm | None, cc_length: int
) -> int:
    if kind == Checksum.NONE:
        return 0
    if kind == Checksum.RC:
        return _RC_LENGTHS[_rc_algorithm(kid, implicit)]
    if kind == Checksum.CC:
        name = _KID_MACS[_kid_algorithm(kid, implicit)][0]
        if not 4 <= cc_length <= (16 if name == "aes" else 8):
            raise _format_error(f"CC length {cc_length}", field="CC", expected="4..8 (4..16 for AES)")
        return cc_length
    raise _fail(
        PorStatus.UNIDENTIFIED_SECURITY_ERROR, "digital signatures (DS) are not supported", field="SPI"
    )


def _kid_algorithm(kid: int, implicit: KidAlgorithm | RcAlgorithm | None) -> KidAlgorithm:
    nibble, algorithm = _key_algorithm(KidAlgorithm, kid, implicit, _KID_MACS)
    if algorithm is None:
        raise _format_error(
            f"unsupported KID algorithm {nibble:X} for a cryptographic checksum",
            field="KID", expected="1, 2, 5 or 9 (or 0 with an agreed algorithm)",
        )
    return algorithm


def _rc_algorithm(kid: int, implicit: KidAlgorithm | RcAlgorithm | None) -> RcAlgorithm:
    nibble, algorithm = _key_algorithm(RcAlgorithm, kid, implicit, _RC_LENGTHS)
    if algorithm is None:
        raise _format_error(
            f"unsupported KID algorithm {nibble:X} for a redundancy check",
            field="KID", expected="1 (CRC16) or 5 (CRC32)",
        )
    return algorithm


def _crc16(data: bytes) -> bytes:
    """CRC-16 of ISO/IEC 13239 (polynomial 1021, reflected, initial FFFF, complemented) [M: byte order]."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return (crc ^ 0xFFFF).to_bytes(2, "big")


def _compute_checksum(
    kind: Checksum, kid: int, key: bytes, data: bytes, length: int,
    implicit: KidAlgorithm | RcAlgorithm | None,
) -> bytes:
    """RC or CC over ``data`` (TS 102 225 clause 5.1.3); ``length`` comes from :func:`_checksum_length`."""
    if kind == Checksum.RC:
        if _rc_algorithm(kid, implicit) == RcAlgorithm.CRC32:
            return zlib.crc32(data).to_bytes(4, "big")  # ISO/IEC 13239 CRC-32 [M: byte order]
        return _crc16(data)
    algorithm = _kid_algorithm(kid, implicit)
    name, lengths = _KID_MACS[algorithm]
    if len(key) not in lengths:
        raise _format_error(
            f"KID key of {len(key)} bytes for {algorithm.name}",
            field="KID", expected=f"{' or '.join(map(str, lengths))} bytes",
        )
    if name == "aes":
        return aes_cmac(key, data)[:length]
    return iso9797_mac_alg1(key, data, padding="m1", cipher=name)[:length]


# --- shared checks ------------------------------------------------------------------------------


def _spi(spi: Spi | bytes) -> Spi:
    return spi if isinstance(spi, Spi) else Spi.decode(bytes(spi))


def _check_build_args(tar: bytes, counter: int, kic: int, kid: int) -> None:
    if len(tar) != 3:
        raise ProtocolError(f"TAR of {len(tar)} bytes", field="TAR", expected="3 bytes")
    if not 0 <= counter <= COUNTER_MAX:
        raise ProtocolError(f"counter {counter} out of range", field="CNTR", expected="0..2^40-1")
    for name, value in (("KIc", kic), ("KID", kid)):
        if not 0 <= value <= 0xFF:
            raise ProtocolError(f"{name} {value} is not a byte", field=name)


def _check_counter(mode: CounterMode, counter: int, last_counter: int | None) -> int | None:
    """Replay and sequence check of TS 102 225 clause 5.1.1 (SPI b5b4); returns the new state."""
    if mode in (CounterMode.NONE, CounterMode.AVAILABLE) or last_counter is None:
        return last_counter
    if last_counter >= COUNTER_MAX:
        raise _fail(PorStatus.COUNTER_BLOCKED, "counter reached its maximum value", field="CNTR")
    if counter <= last_counter:
        raise _fail(
            PorStatus.COUNTER_LOW, f"counter {counter} is not higher than {last_counter}",
            field="CNTR", expected=f"> {last_counter}",
        )
    if mode == CounterMode.PLUS_ONE and counter != last_counter + 1:
        raise _fail(
            PorStatus.COUNTER_HIGH, f"counter {counter} skips past {last_counter + 1}",
            field="CNTR", expected=f"exactly {last_counter + 1}",
        )
    return counter


def _resolve_keys(
    keys: KeyResolver | OtaKeys | tuple[bytes, bytes], kic: int, kid: int, tar: bytes
) -> tuple[bytes, bytes]:
    if isinstance(keys, OtaKeys):
        return keys.kic_key, keys.kid_key
    if isinstance(keys, tuple):
        return keys
    try:
        return keys(kic, kid, tar)
    except OtaError:
        raise
    except LookupError as exc:
        raise _fail(PorStatus.TAR_UNKNOWN, f"no keys for TAR {tar.hex().upper()}", field="TAR") from exc


def keys_by_tar(table: dict[bytes, OtaKeys]) -> KeyResolver:
    """A resolver that looks the key set up by TAR; an unknown TAR raises ``OtaError`` status 09.

    The KIc/KID bytes of the packet are not compared with the table's: a key set per TAR is the
    usual lab setup (TS 102 226 clause 8.2.1.3.2.4: TARs are bound to one application).
    """

    def resolve(kic: int, kid: int, tar: bytes) -> tuple[bytes, bytes]:
        found = table.get(bytes(tar))
        if found is None:
            raise _fail(PorStatus.TAR_UNKNOWN, f"TAR {bytes(tar).hex().upper()} unknown", field="TAR")
        return found.kic_key, found.kid_key

    return resolve


# --- packet framing (the same rules for command and response packets) ---------------------------


@dataclass(frozen=True)
class _Framing:
    """What tells a command packet's framing from a response packet's (module docstring)."""

    name: str  # "command packet" / "response packet"
    short: str  # what a too-short packet is called in errors
    label: str  # prefix of a checksum mismatch message
    udh: bytes  # COMMAND_UDH / RESPONSE_UDH
    length: str  # "CPL" / "RPL"
    header_length: str  # "CHL" / "RHL"
    header_size: int  # CPL/RPL through TAR
    counters_size: int  # CNTR PCNTR [status]
    min_size: int  # the shortest packet after the UDH
    checksum_prefix: bytes  # what the checksum covers before CPL/RPL

    @property
    def base_header_length(self) -> int:
        """CHL/RHL without a checksum: 13 (SPI..PCNTR), 10 (TAR..status)."""
        return self.header_size - 3 + self.counters_size


_COMMAND = _Framing("command packet", "packet", "", COMMAND_UDH, "CPL", "CHL", 10, 6, 10, b"")
_RESPONSE = _Framing("response packet", "PoR", "PoR ", RESPONSE_UDH, "RPL", "RHL", 6, 7, 13, RESPONSE_UDH)


def _seal(
    f: _Framing, fields: bytes, status: bytes, *, checksum: Checksum, ciphered: bool, kic: int, kid: int,
    kic_key: bytes, kid_key: bytes, counter: int, data: bytes, sig_len: int, udh: bool,
    implicit_kic: KicAlgorithm | None, implicit_kid: KidAlgorithm | RcAlgorithm | None,
) -> bytes:
    """Pad, checksum and cipher a packet: ``fields`` follow CHL/RHL, ``status`` ends the counters."""
    pad = -(f.counters_size + sig_len + len(data)) % _block_size(kic, implicit_kic) if ciphered else 0
    tail = bytes(data) + bytes(pad)
    length = 1 + len(fields) + f.counters_size + sig_len + len(tail)
    if length > 0xFFFF:
        raise ProtocolError(f"{f.name} of {length} bytes", field=f.length, expected="at most 65535")
    header = length.to_bytes(2, "big") + bytes((f.base_header_length + sig_len,)) + fields
    counters = counter.to_bytes(5, "big") + bytes((pad,)) + status
    signature = b""
    if sig_len:
        signature = _compute_checksum(
            checksum, kid, kid_key, f.checksum_prefix + header + counters + tail, sig_len, implicit_kid
        )
    body = counters + signature + tail
    if ciphered:
        body = _encrypt(kic, kic_key, body, implicit_kic)
    return (f.udh if udh else b"") + header + body


def _frame(f: _Framing, packet: bytes, udh: bool) -> int:
    """Check the UDH, the size, CPL/RPL and the CHL/RHL minimum; the offset of CPL/RPL."""
    off = 0
    if udh:
        if packet[:3] != f.udh:
            raise _format_error(f"no {f.name} user data header", offset=0, expected=f.udh.hex(" "), field="UDH")
        off = 3
    if len(packet) < off + f.min_size:
        raise _format_error(f"{f.short} of {len(packet)} bytes", offset=len(packet), expected="a full header")
    length = int.from_bytes(packet[off : off + 2], "big")
    if length != len(packet) - off - 2:
        raise _format_error(f"{f.length} {length} but {len(packet) - off - 2} bytes follow", offset=off, field=f.length)
    hl = packet[off + 2]
    if hl < f.base_header_length:
        raise _format_error(f"{f.header_length} {hl}", offset=off + 2, field=f.header_length,
                            expected=f"at least {f.base_header_length}")
    return off


def _split(f: _Framing, packet: bytes, off: int) -> tuple[bytes, bytes, int]:
    """``(header, secured part, checksum length)``; CHL/RHL must not run past the packet."""
    hl = packet[off + 2]
    header, secured = packet[off : off + f.header_size], packet[off + f.header_size :]
    sig_len = hl - f.base_header_length
    if len(secured) < f.counters_size + sig_len:
        raise _format_error(f"{f.header_length} {hl} runs past the {len(secured)} secured bytes", offset=off + 2,
                            field=f.header_length)
    return header, secured, sig_len


def _open(
    f: _Framing, header: bytes, secured: bytes, sig_len: int, *, checksum: Checksum, ciphered: bool, kic: int,
    kid: int, kic_key: bytes, kid_key: bytes, implicit_kic: KicAlgorithm | None,
    implicit_kid: KidAlgorithm | RcAlgorithm | None,
) -> tuple[bytes, bytes, bytes]:
    """Decipher, verify the RC/CC/DS (01) and PCNTR: ``(counters, checksum, data with padding)``."""
    plain = _decrypt(kic, kic_key, secured, implicit_kic) if ciphered else secured
    n = f.counters_size
    counters, signature, tail = plain[:n], plain[n : n + sig_len], plain[n + sig_len :]
    if sig_len:
        expected = _compute_checksum(
            checksum, kid, kid_key, f.checksum_prefix + header + counters + tail, sig_len, implicit_kid
        )
        if not hmac.compare_digest(expected, signature):
            raise _fail(PorStatus.RC_CC_DS_FAILED, f"{f.label}{checksum.name} mismatch", field=checksum.name)
    pcntr = counters[5]
    if pcntr > len(tail):
        raise _fail(
            PorStatus.CIPHERING_ERROR if ciphered else PorStatus.UNIDENTIFIED_SECURITY_ERROR,
            f"PCNTR {pcntr} exceeds the {len(tail)} data bytes", field="PCNTR",
        )
    return counters, signature, tail


# --- command packet -----------------------------------------------------------------------------


def build_command_packet(
    *,
    spi: Spi | bytes,
    kic: int,
    kid: int,
    kic_key: bytes,
    kid_key: bytes,
    tar: bytes,
    counter: int,
    data: bytes,
    udh: bool = True,
    cc_length: int = DEFAULT_CC_LENGTH,
    implicit_kic: KicAlgorithm | None = None,
    implicit_kid: KidAlgorithm | RcAlgorithm | None = None,
) -> bytes:
    """Build a secured command packet (TS 102 225 clause 5.1, TS 31.115 clause 4).

    With ciphering, ``data`` is zero padded so that CNTR..end fills whole cipher blocks and
    PCNTR counts the padding; without ciphering nothing is padded (PCNTR 00) and the CC padding
    exists only inside the MAC computation. ``udh`` prefixes ``02 70 00``.
    """
    decoded = _spi(spi)
    _check_build_args(tar, counter, kic, kid)
    sig_len = _checksum_length(decoded.checksum, kid, implicit_kid, cc_length)
    return _seal(
        _COMMAND, decoded.encode() + bytes((kic, kid)) + tar, b"", checksum=decoded.checksum,
        ciphered=decoded.ciphering, kic=kic, kid=kid, kic_key=kic_key, kid_key=kid_key, counter=counter,
        data=data, sig_len=sig_len, udh=udh, implicit_kic=implicit_kic, implicit_kid=implicit_kid,
    )


def parse_command_packet(
    packet: bytes,
    *,
    keys_for_kic_kid: KeyResolver | OtaKeys | tuple[bytes, bytes],
    last_counter: int | None,
    udh: bool = True,
    minimum_security_level: int | None = None,
    implicit_kic: KicAlgorithm | None = None,
    implicit_kid: KidAlgorithm | RcAlgorithm | None = None,
) -> CommandPacket:
    """Parse, decipher and verify a command packet as the receiving entity does.

    Order of the checks: format (06), TAR and keys through the resolver (09), minimum security
    level (0A, TS 102 226 clause 8.2.1.3.2.4.1 [M]), deciphering (05), RC/CC (01), then the
    counter against ``last_counter`` (02 low, 03 high, 04 blocked; TS 102 225 clause 5.1.1).
    ``last_counter=None`` means "no counter state": the counter is then not checked. Every
    failure is an :class:`OtaError` whose ``por_status`` is the PoR status to answer with.
    """
    packet = bytes(packet)
    off = _frame(_COMMAND, packet, udh)
    chl = packet[off + 2]
    spi = Spi.decode(packet[off + 3 : off + 5])
    kic, kid = packet[off + 5], packet[off + 6]
    tar = packet[off + 7 : off + 10]
    header, secured, sig_len = _split(_COMMAND, packet, off)
    if _checksum_length(spi.checksum, kid, implicit_kid, sig_len) != sig_len:
        raise _format_error(f"CHL {chl} does not fit the SPI's RC/CC/DS", offset=off + 2, field="CHL")

    kic_key, kid_key = _resolve_keys(keys_for_kic_kid, kic, kid, tar)
    if minimum_security_level is not None and not meets_minimum_security(spi, minimum_security_level):
        raise _fail(
            PorStatus.INSUFFICIENT_SECURITY_LEVEL, f"SPI {spi.encode().hex().upper()} below the MSL "
            f"{minimum_security_level:02X}", field="SPI",
        )
    counters, signature, tail = _open(
        _COMMAND, header, secured, sig_len, checksum=spi.checksum, ciphered=spi.ciphering, kic=kic, kid=kid,
        kic_key=kic_key, kid_key=kid_key, implicit_kic=implicit_kic, implicit_kid=implicit_kid,
    )
    pcntr = counters[5]
    counter = int.from_bytes(counters[:5], "big")
    state = _check_counter(spi.counter, counter, last_counter)
    return CommandPacket(
        spi=spi, kic=kic, kid=kid, tar=tar, counter=counter, pcntr=pcntr,
        checksum=signature, data=tail[: len(tail) - pcntr], counter_state=state,
    )


# --- response packet (PoR) ----------------------------------------------------------------------


def _build_response(
    *, checksum: Checksum, ciphered: bool, kic: int, kid: int, kic_key: bytes, kid_key: bytes,
    tar: bytes, counter: int, status: int, data: bytes, udh: bool, cc_length: int,
    implicit_kic: KicAlgorithm | None, implicit_kid: KidAlgorithm | RcAlgorithm | None,
) -> bytes:
    _check_build_args(tar, counter, kic, kid)
    if not 0 <= status <= 0xFF:
        raise ProtocolError(f"status {status} is not a byte", field="status")
    sig_len = _checksum_length(checksum, kid, implicit_kid, cc_length)
    return _seal(
        _RESPONSE, tar, bytes((status,)), checksum=checksum, ciphered=ciphered, kic=kic, kid=kid,
        kic_key=kic_key, kid_key=kid_key, counter=counter, data=data, sig_len=sig_len, udh=udh,
        implicit_kic=implicit_kic, implicit_kid=implicit_kid,
    )


def build_response_packet(
    *,
    spi: Spi | bytes,
    kic: int,
    kid: int,
    kic_key: bytes,
    kid_key: bytes,
    tar: bytes,
    counter: int,
    status: int = PorStatus.OK,
    data: bytes = b"",
    udh: bool = True,
    cc_length: int = DEFAULT_CC_LENGTH,
    implicit_kic: KicAlgorithm | None = None,
    implicit_kid: KidAlgorithm | RcAlgorithm | None = None,
) -> bytes:
    """Build a PoR response packet secured as SPI byte 2 asks (TS 102 225 clause 5.2, TS 31.115 clause 4).

    ``kic``/``kid`` and the keys are those of the command packet; ``counter`` is its CNTR.
    """
    decoded = _spi(spi)
    return _build_response(
        checksum=decoded.por_checksum, ciphered=decoded.por_ciphered, kic=kic, kid=kid,
        kic_key=kic_key, kid_key=kid_key, tar=tar, counter=counter, status=status, data=data,
        udh=udh, cc_length=cc_length, implicit_kic=implicit_kic, implicit_kid=implicit_kid,
    )


def parse_response_packet(
    packet: bytes,
    *,
    spi: Spi | bytes,
    kic: int,
    kid: int,
    kic_key: bytes,
    kid_key: bytes,
    udh: bool = True,
    implicit_kic: KicAlgorithm | None = None,
    implicit_kid: KidAlgorithm | RcAlgorithm | None = None,
) -> ResponsePacket:
    """Parse, decipher and verify a PoR (TS 102 225 clause 5.2) sent for a command with ``spi``.

    An error PoR (status not 00, no data) that comes without the checksum/ciphering SPI byte 2
    asks for is accepted with ``secured=False`` [M]: receiving entities answer security failures
    unsecured. A bad checksum raises :class:`OtaError` with status 01; the status byte itself is
    returned, not raised.
    """
    decoded = _spi(spi)
    packet = bytes(packet)
    off = _frame(_RESPONSE, packet, udh)
    rhl = packet[off + 2]
    header, secured, sig_len = _split(_RESPONSE, packet, off)
    tar = header[3:6]

    checksum, ciphered = decoded.por_checksum, decoded.por_ciphered
    if sig_len == 0 and len(secured) == 7 and (checksum != Checksum.NONE or ciphered):
        if secured[6] == PorStatus.OK:
            raise _fail(
                PorStatus.RC_CC_DS_FAILED, "PoR OK without the security the SPI asks for", field="SPI"
            )
        return ResponsePacket(
            tar=tar, counter=int.from_bytes(secured[:5], "big"), pcntr=secured[5], status=secured[6],
            checksum=b"", data=b"", secured=False,
        )
    if _checksum_length(checksum, kid, implicit_kid, sig_len) != sig_len:
        raise _format_error(f"RHL {rhl} does not fit the SPI's PoR RC/CC/DS", offset=off + 2, field="RHL")
    counters, signature, tail = _open(
        _RESPONSE, header, secured, sig_len, checksum=checksum, ciphered=ciphered, kic=kic, kid=kid,
        kic_key=kic_key, kid_key=kid_key, implicit_kic=implicit_kic, implicit_kid=implicit_kid,
    )
    pcntr = counters[5]
    return ResponsePacket(
        tar=tar, counter=int.from_bytes(counters[:5], "big"), pcntr=pcntr, status=counters[6],
        checksum=signature, data=tail[: len(tail) - pcntr],
    )


# --- PoR policy ---------------------------------------------------------------------------------


def por_required(spi: Spi | bytes, status: int) -> bool:
    """Whether a PoR is sent for a command with ``spi`` that ended with ``status`` (SPI byte 2 b2b1)."""
    request = _spi(spi).por
    return request == PorRequest.ALWAYS or (request == PorRequest.ON_ERROR and status != PorStatus.OK)


def por_status(exc: BaseException) -> int:
    """The PoR status for an exception: an OtaError's own, 06 for any other protocol error."""
    if isinstance(exc, OtaError):
        return exc.por_status
    return int(PorStatus.UNIDENTIFIED_SECURITY_ERROR)


def por_for_error(exc: BaseException, *, tar: bytes, counter: int = 0, udh: bool = True) -> bytes:
    """An unsecured error PoR (RHL 0A, no checksum, not ciphered, no data) for a rejected command.

    The receiving entity cannot secure a PoR with keys it failed to verify (TS 102 225 clause
    5.2 [M]); ``tar`` and ``counter`` are copied from the command header when they were readable.
    """
    return _build_response(
        checksum=Checksum.NONE, ciphered=False, kic=0, kid=0, kic_key=b"", kid_key=b"", tar=tar,
        counter=counter, status=por_status(exc), data=b"", udh=udh, cc_length=DEFAULT_CC_LENGTH,
        implicit_kic=None, implicit_kid=None,
    )
