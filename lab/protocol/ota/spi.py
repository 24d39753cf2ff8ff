"""Security parameter fields of a secured packet: SPI, KIc and KID.

* SPI, two bytes, ETSI TS 102 225 clause 5.1.1 (and 3GPP TS 31.115 clause 4 for SMS):

  - byte 1: b8-b6 reserved, b5b4 counter mode, b3 ciphering, b2b1 RC/CC/DS;
  - byte 2: b8b7 reserved, b6 PoR via SMS-SUBMIT (else SMS-DELIVER-REPORT), b5 PoR ciphered,
    b4b3 PoR RC/CC/DS, b2b1 PoR required (00 none, 01 always, 10 on error, 11 reserved).

* KIc (TS 102 225 clause 5.1.2) and KID (clause 5.1.3): the high nibble is the key index (KVN
  slot), the low nibble the algorithm. For DES the low nibble is b4b3 mode || b2b1 = 01, which gives
  the values 1 (DES-CBC), 5 (3DES 2 keys, outer CBC), 9 (3DES 3 keys), D (DES-ECB, KIc only);
  2 is AES (CBC for KIc, CMAC for KID); 0 is "algorithm known implicitly by both entities";
  3 is proprietary. For a redundancy check (SPI b2b1 = 01) the KID low nibble is 1 for CRC16
  and 5 for CRC32 (clause 5.1.3.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from ..errors import OtaError

#: PoR status code for a malformed header; TS 102 225 clause 5.2 has no narrower code.
_UNIDENTIFIED_SECURITY_ERROR = 0x06


class CounterMode(IntEnum):
    """SPI byte 1 b5b4 (TS 102 225 clause 5.1.1)."""

    NONE = 0b00  #: no counter
    AVAILABLE = 0b01  #: counter available, no replay or sequence checking
    HIGHER = 0b10  #: process only if the counter is higher than the receiving entity's value
    PLUS_ONE = 0b11  #: process only if the counter is exactly one higher


class Checksum(IntEnum):
    """RC/CC/DS selector of SPI byte 1 b2b1 and byte 2 b4b3 (TS 102 225 clause 5.1.1)."""

    NONE = 0b00
    RC = 0b01  #: redundancy check (CRC)
    CC = 0b10  #: cryptographic checksum
    DS = 0b11  #: digital signature


class PorRequest(IntEnum):
    """SPI byte 2 b2b1: when the receiving entity answers with a Proof of Receipt."""

    NONE = 0b00
    ALWAYS = 0b01
    ON_ERROR = 0b10


class KicAlgorithm(IntEnum):
    """Low nibble of KIc (TS 102 225 clause 5.1.2)."""

    IMPLICIT = 0x0  #: known implicitly by both entities ("as agreed")
    DES_CBC = 0x1
    AES_CBC = 0x2
    PROPRIETARY = 0x3
    TDES_2KEY_CBC = 0x5
    TDES_3KEY_CBC = 0x9
    DES_ECB = 0xD


class KidAlgorithm(IntEnum):
    """Low nibble of KID when the SPI asks for a cryptographic checksum (TS 102 225 clause 5.1.3.1)."""

    IMPLICIT = 0x0
    DES_CBC = 0x1  #: single-DES CBC-MAC
    AES_CMAC = 0x2
    PROPRIETARY = 0x3
    TDES_2KEY_CBC = 0x5
    TDES_3KEY_CBC = 0x9


class RcAlgorithm(IntEnum):
    """Low nibble of KID when the SPI asks for a redundancy check (TS 102 225 clause 5.1.3.2)."""

    IMPLICIT = 0x0
    CRC16 = 0x1
    PROPRIETARY = 0x3
    CRC32 = 0x5


@dataclass(frozen=True)
class Spi:
    """The two SPI bytes, decoded (TS 102 225 clause 5.1.1).

    The defaults are the common "CC, no counter, PoR always, PoR unsecured" setting.
    """

    counter: CounterMode = CounterMode.NONE
    ciphering: bool = False
    checksum: Checksum = Checksum.CC
    por: PorRequest = PorRequest.ALWAYS
    por_checksum: Checksum = Checksum.NONE
    por_ciphered: bool = False
    por_via_submit: bool = False

    def encode(self) -> bytes:
        """The two SPI bytes."""
        first = (CounterMode(self.counter) << 3) | (int(self.ciphering) << 2) | Checksum(self.checksum)
        second = (
            (int(self.por_via_submit) << 5)
            | (int(self.por_ciphered) << 4)
            | (Checksum(self.por_checksum) << 2)
            | PorRequest(self.por)
        )
        return bytes((first, second))

    @classmethod
    def decode(cls, data: bytes) -> Spi:
        """Decode two SPI bytes; reserved bits or PoR request 11 raise :class:`OtaError` (status 06)."""
        if len(data) != 2:
            raise OtaError(
                f"SPI is {len(data)} bytes", por_status=_UNIDENTIFIED_SECURITY_ERROR,
                expected="2 bytes", field="SPI",
            )
        first, second = data
        if first & 0xE0 or second & 0xC0:
            raise OtaError(
                f"reserved SPI bits set in {data.hex().upper()}", por_status=_UNIDENTIFIED_SECURITY_ERROR,
                expected="b8-b6 of byte 1 and b8b7 of byte 2 zero", field="SPI",
            )
        if second & 0x03 == 0x03:
            raise OtaError(
                "reserved PoR request 11", por_status=_UNIDENTIFIED_SECURITY_ERROR,
                expected="00, 01 or 10", field="SPI",
            )
        return cls(
            counter=CounterMode((first >> 3) & 0x03),
            ciphering=bool(first & 0x04),
            checksum=Checksum(first & 0x03),
            por=PorRequest(second & 0x03),
            por_checksum=Checksum((second >> 2) & 0x03),
            por_ciphered=bool(second & 0x10),
            por_via_submit=bool(second & 0x20),
        )


def key_byte(index: int, algorithm: int) -> int:
    """Compose a KIc/KID byte from a key index (0-15) and an algorithm nibble (TS 102 225 5.1.2/5.1.3)."""
    if not 0 <= index <= 0x0F or not 0 <= algorithm <= 0x0F:
        raise ValueError(f"key index {index} and algorithm {algorithm} must each fit a nibble")
    return (index << 4) | algorithm


def key_index(kic_or_kid: int) -> int:
    """Key index: the high nibble of a KIc/KID byte."""
    return (kic_or_kid >> 4) & 0x0F


def key_algorithm(kic_or_kid: int) -> int:
    """Algorithm: the low nibble of a KIc/KID byte."""
    return kic_or_kid & 0x0F


def meets_minimum_security(spi: Spi, msl: int) -> bool:
    """Whether ``spi`` meets a Minimum Security Level byte (TS 102 226 clause 8.2.1.3.2.4.1) [M].

    The MSL is coded like SPI byte 1; each field of the SPI must be at least the MSL's: counter
    mode, ciphering, and RC/CC/DS (in the order none < RC < CC < DS).
    """
    wanted = Spi.decode(bytes((msl & 0x1F, 0)))
    return (
        spi.counter >= wanted.counter
        and (spi.ciphering or not wanted.ciphering)
        and spi.checksum >= wanted.checksum
    )
