"""Message authentication codes of ISO 8583 messages: field 64 (``cup-pos``) and 128 (``switch``).

``cup-pos`` (domain brief section 5, [S: MacEcbUtils]): the UnionPay "ECB MAC"
(:func:`~paylab.lab.protocol.crypto.mac.cup_ecb_mac`) over every byte from the MTI up to, but
excluding, the 8 MAC bytes (TPDU and POS header are not covered). Field 64 carries the 8 ASCII
hex characters it returns.

``switch`` [M: verify against the CUPS spec]: a MAC block (MAB) is built from the MTI and the
fields 2 3 4 7 11 18 25 28 32 33 38 39 41 42 90 102 103 that are present, each as sent on the
wire (a variable field keeps its length prefix), with the usual ANSI X9.9 MAB rules:

1. one space between elements;
2. lower case letters changed to upper case;
3. characters other than ``A-Z 0-9 , .`` and space removed;
4. leading and trailing spaces of every element removed, runs of spaces reduced to one.

The MAC is ANSI X9.19 (ISO 9797-1 alg 3, zero padding) with a double-length MAK, or X9.9
(single-DES CBC-MAC, zero padding) with a single-length one; field 128 carries the 8 raw bytes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ..crypto.mac import cup_ecb_mac, iso9797_mac_alg1, x9_19_mac
from ..errors import CryptoError
from .specs import HEADER_LEN

SWITCH_MAB_ELEMENTS: tuple[str, ...] = (
    "t", "2", "3", "4", "7", "11", "18", "25", "28", "32", "33", "38", "39", "41", "42", "90", "102", "103",
)
"""pyiso8583 keys of the switch MAB, in order (``t`` = MTI) [M]."""

MAC_LEN = 8


def check_mak(mak: bytes) -> None:
    """Raise :class:`CryptoError` unless ``mak`` is a single- or double-length DES key."""
    if not isinstance(mak, bytes | bytearray):
        raise CryptoError(f"MAK must be bytes, got {type(mak).__name__}")
    if len(mak) not in (8, 16):
        raise CryptoError(f"MAK must be 8 or 16 bytes, got {len(mak)}")


def pos_mac_input(raw: bytes) -> bytes:
    """The bytes a ``cup-pos`` field 64 covers: MTI .. last byte before the MAC (which ends ``raw``)."""
    return raw[HEADER_LEN["cup-pos"] : len(raw) - MAC_LEN]


def pos_mac(mak: bytes, raw: bytes) -> bytes:
    """Field 64 of an encoded ``cup-pos`` message whose last 8 bytes are the (placeholder) MAC."""
    return cup_ecb_mac(mak, pos_mac_input(raw))


_NOT_MAB = re.compile(rb"[^A-Z0-9 ,.]")
_SPACES = re.compile(rb" +")


def switch_mab(wire: Mapping[str, Mapping[str, bytes]]) -> bytes:
    """The switch MAC block from pyiso8583's encoded-field dict (``{"2": {"len":..,"data":..}}``)."""
    parts = []
    for key in SWITCH_MAB_ELEMENTS:
        enc = wire.get(key)
        if enc is None:
            continue
        element = _NOT_MAB.sub(b"", (bytes(enc["len"]) + bytes(enc["data"])).upper())
        element = _SPACES.sub(b" ", element).strip(b" ")
        if element:
            parts.append(element)
    return b" ".join(parts)


def switch_mac(mak: bytes, mab: bytes) -> bytes:
    """Field 128: X9.19 with a 16-byte MAK, X9.9 (DES CBC-MAC) with an 8-byte MAK; zero padding."""
    check_mak(mak)
    if len(mak) == 16:
        return x9_19_mac(bytes(mak), mab)
    return iso9797_mac_alg1(bytes(mak), mab, padding="m1", cipher="des")
