"""A POS terminal's side of the UnionPay POS dialect: re-exports the driver's :class:`TerminalClient`.

:class:`TerminalClient` (sign-on, purchase, reversal, settlement over ISO 8583 TCP) moved to
:mod:`paylab.drivers.pos.acquirer_link` (drivers must not import the backend); its pure helpers live in
:mod:`paylab.lab.protocol.iso8583.terminal`. This module keeps the old import path working and holds
:func:`software_card_field55`, the field 55 of a software PBOC card for tests and benchmarks.
"""

from __future__ import annotations

from paylab.drivers.pos.acquirer_link import TerminalClient

from ..profiles import PbocProfile
from ..protocol.crypto import emv
from ..protocol.iso8583 import field55_encode
from ..protocol.tlv import Tlv

__all__ = ["TerminalClient", "software_card_field55"]


def software_card_field55(
    profile: PbocProfile,
    *,
    atc: int,
    amount: int,
    txn_type: int = 0x00,
    unpredictable_number: bytes = b"\x11\x22\x33\x44",
    txn_date: bytes = b"\x26\x01\x15",
    ecash_balance: int | None = None,
    cvr: bytes = b"\x03\xa0\x00\x00",
    keys: emv.CardKeys | None = None,
) -> bytes:
    """Field 55 of an online request as a PBOC card of ``profile`` would produce it (TEST keys only).

    For tests and benchmarks without an emulated secure element: the ARQC over the brief's AC input
    with the PBOC session key of the card's MK-AC (derived from the profile's issuer keys unless
    ``keys`` is given), and the IAD ``07 DKI CVN CVR alg-id`` followed, when ``ecash_balance`` is
    given, by the paylab applet's IDD ``0A 01 <balance 5 bytes> <MAC4>``. Tags as the reader sends
    them (brief section 1), 9F27 = 80.
    """
    keys = keys if keys is not None else profile.card_keys()
    alg = profile.algorithm
    atc_bytes = atc.to_bytes(2, "big")
    sk = emv.derive_pboc_session_key(keys.mk_ac, atc_bytes, alg)
    iad = bytes([0x07, profile.dki, profile.cvn]) + cvr + bytes([profile.algorithm_id])
    if ecash_balance is not None:
        idd = b"\x01" + bytes.fromhex(f"{ecash_balance:012d}")[1:]
        iad += b"\x0a" + idd + emv.generate_ac(sk, idd + atc_bytes, alg)[:4]
    values = {
        0x9F02: bytes.fromhex(f"{amount:012d}"), 0x9F03: bytes(6), 0x9F1A: b"\x01\x56", 0x95: bytes(5),
        0x5F2A: b"\x01\x56", 0x9A: txn_date, 0x9C: bytes([txn_type]), 0x9F37: unpredictable_number,
        0x82: profile.aip_contactless, 0x9F36: atc_bytes,
    }
    arqc = emv.generate_ac(sk, emv.ac_input(values, cvr), alg)
    objects = [Tlv(0x9F26, arqc), Tlv(0x9F27, b"\x80"), Tlv(0x9F10, iad)]
    objects += [Tlv(tag, values[tag]) for tag in (0x9F37, 0x9F36, 0x95, 0x9A, 0x9C, 0x9F02, 0x5F2A, 0x82, 0x9F1A,
                                                  0x9F03)]
    objects += [Tlv(0x9F33, b"\xe0\xe1\xc8"), Tlv(0x9F34, b"\x00\x00\x00"), Tlv(0x9F35, b"\x22"),
                Tlv(0x9F1E, b"PAYLAB01"), Tlv(0x84, profile.aid), Tlv(0x9F09, profile.app_version)]
    return field55_encode(objects)
