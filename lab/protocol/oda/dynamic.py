"""Dynamic signatures: DDA (INTERNAL AUTHENTICATE) and qPBOC fDDA (EMV 4.3 Book 2 6.5, brief section 1).

Signed Dynamic Application Data, tag 9F4B (Book 2 6.5.1), N_IC bytes recovered::

    1 header 6A | 1 format 05 | 1 hash algorithm 01 | 1 L_DD | L_DD ICC dynamic data
    N_IC - L_DD - 25 pad BB | 20 hash | 1 trailer BC
    hash = SHA-1(format .. pad || terminal dynamic data)

The ICC dynamic data starts with the ICC Dynamic Number: 1 length byte (2-8) and the number (9F4C),
Book 2 6.5.1. What the terminal dynamic data is depends on the method:

* **DDA**: the data the card's DDOL asks for, sent in INTERNAL AUTHENTICATE (Book 3 6.5.9); the
  default DDOL is ``9F37 04`` (the unpredictable number), :data:`DEFAULT_DDOL`.
* **fDDA (qPBOC, Visa fDDA version 01)**: ``9F37 || 9F02 || 5F2A || 9F69`` [M: domain brief section 1],
  where 9F69 Card Authentication Related Data = version ``01`` || card unpredictable number (4) ||
  CTQ (2) [M]. The card returns 9F4B in its GPO response (offline path), with 9F69 in a record.
  How a card picks its ICC Dynamic Number for fDDA (random or ATC-based) is the card's business [M];
  verification does not depend on it.

SM2 keys sign and verify the paylab SM2 SDAD form [M] of :mod:`.sm2_forms` instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..crypto import sm2
from ..dol import build_dol_data
from ..errors import TlvError
from ..tlv import decode, decode_one
from . import sm2_forms
from .certificates import as_bytes
from .common import (
    FORMAT_SIGNED_DYNAMIC_DATA,
    HASH_LENGTH,
    HASH_SHA1,
    HASH_SM3,
    PAD_BYTE,
    OdaError,
    check_block_hash,
    check_hash_algorithm,
    open_block,
    seal_block,
)
from .keys import Algorithm, PrivateKey, PublicKey, RsaPrivateKey, RsaPublicKey, Sm2PublicKey

SDAD_OVERHEAD = 25
"""L_DD <= N_IC - 25 (Book 2 6.5.1)."""
DEFAULT_DDOL = bytes.fromhex("9F3704")
"""Default DDOL when the card has none: the unpredictable number only (Book 2 6.5.1)."""
FDDA_VERSION_01 = 0x01
"""fDDA version in byte 1 of 9F69 for which 9F37 || 9F02 || 5F2A || 9F69 is signed [M]."""
CARD_AUTH_RELATED_DATA_LENGTH = 7
"""9F69 v01: version (1) || card unpredictable number (4) || CTQ (2) [M]."""


@dataclass(frozen=True)
class DynamicData:
    """What a verified SDAD tells the terminal.

    ``icc_dynamic_data`` is the whole signed ICC dynamic data; ``icc_dynamic_number`` (9F4C) its
    first element; ``algorithm`` ``"rsa"`` or ``"sm2"`` [M].
    """

    format: int
    hash_algorithm: int
    icc_dynamic_data: bytes
    icc_dynamic_number: bytes
    algorithm: Algorithm = "rsa"


def icc_dynamic_data(icc_dynamic_number: bytes, additional: bytes = b"") -> bytes:
    """ICC Dynamic Data: ``len(IDN) || IDN || additional`` with a 2-8 byte IDN (Book 2 6.5.1)."""
    idn = as_bytes(icc_dynamic_number, field="tag 9F4C")
    if not 2 <= len(idn) <= 8:
        raise OdaError(f"ICC dynamic number of {len(idn)} bytes", check="ICC dynamic number", field="tag 9F4C",
                       expected="2 to 8 bytes")
    return bytes([len(idn)]) + idn + as_bytes(additional, field="additional")


def _icc_dynamic_number(data: bytes, *, field: str) -> bytes:
    if not data or not 2 <= data[0] <= 8 or len(data) < 1 + data[0]:
        raise OdaError("ICC dynamic data does not start with a 2-8 byte ICC dynamic number",
                       check="ICC dynamic number", field=field, expected="length byte 02-08 then the number")
    return data[1 : 1 + data[0]]


def sign_dynamic_data(
    icc_private: PrivateKey,
    dynamic_data: bytes,
    terminal_dynamic_data: bytes,
    *,
    hash_alg: int | None = None,
) -> bytes:
    """Signed Dynamic Application Data, tag 9F4B (Book 2 6.5.1): format 05, padding BB.

    ``dynamic_data`` is the ICC Dynamic Data (see :func:`icc_dynamic_data`); ``terminal_dynamic_data``
    the DDOL data (DDA) or :func:`fdda_terminal_data` (fDDA). With an SM2 key pair: the paylab SM2
    SDAD [M].
    """
    dd = as_bytes(dynamic_data, field="dynamic_data")
    terminal = as_bytes(terminal_dynamic_data, field="terminal_dynamic_data")
    if isinstance(icc_private, sm2.Sm2KeyPair):
        if hash_alg not in (None, HASH_SM3):
            raise OdaError(f"hash algorithm indicator {hash_alg:02X} with SM2", check="hash algorithm",
                           field="hash_alg", expected=f"{HASH_SM3:02X} [M]")
        return sm2_forms.sign_dynamic_data(icc_private, dd, terminal)
    if not isinstance(icc_private, RsaPrivateKey):
        raise OdaError(f"ICC key of type {type(icc_private).__name__}", check="key type", field="icc_private",
                       expected="RsaPrivateKey or Sm2KeyPair")
    hash_alg = HASH_SHA1 if hash_alg is None else hash_alg
    check_hash_algorithm(hash_alg, field="hash_alg")
    n_ic = icc_private.size
    if len(dd) > n_ic - SDAD_OVERHEAD:
        raise OdaError(f"ICC dynamic data of {len(dd)} bytes", check="dynamic data length", field="dynamic_data",
                       expected=f"at most N_IC - 25 = {n_ic - SDAD_OVERHEAD} bytes")
    body = (bytes([FORMAT_SIGNED_DYNAMIC_DATA, hash_alg, len(dd)]) + dd
            + bytes([PAD_BYTE]) * (n_ic - len(dd) - SDAD_OVERHEAD))
    return seal_block(icc_private, body, terminal, hash_alg, field="tag 9F4B")


def verify_dynamic_signature(icc_public: PublicKey, sdad: bytes, terminal_dynamic_data: bytes) -> DynamicData:
    """Terminal side of Book 2 6.5.2: the recovered dynamic data, or :class:`OdaError`.

    Checks: SDAD length = N_IC, recovery, trailer BC, header 6A, format 05, hash algorithm, L_DD, hash
    over the signed data || terminal dynamic data, ICC dynamic number well formed.
    """
    signed = as_bytes(sdad, field="tag 9F4B")
    terminal = as_bytes(terminal_dynamic_data, field="terminal dynamic data")
    field = "tag 9F4B"
    if isinstance(icc_public, Sm2PublicKey):
        hash_alg, dd = sm2_forms.open_dynamic_data(icc_public.point, signed, terminal)
        return DynamicData(sm2_forms.SM2_FORMAT_SIGNED_DYNAMIC_DATA, hash_alg, dd,
                           _icc_dynamic_number(dd, field=field), "sm2")
    if not isinstance(icc_public, RsaPublicKey):
        raise OdaError(f"ICC key of type {type(icc_public).__name__}", check="key type", field="icc_public",
                       expected="RsaPublicKey or Sm2PublicKey")
    n_ic = icc_public.size
    block = open_block(icc_public, signed, FORMAT_SIGNED_DYNAMIC_DATA, field=field, what="SDAD",
                       length_problem=f"SDAD of {len(signed)} bytes", modulus="the ICC modulus", key="ICC key",
                       format_name="signed data format")
    hash_alg, ldd = block[2], block[3]
    check_hash_algorithm(hash_alg, field=field)
    if ldd > n_ic - SDAD_OVERHEAD:
        raise OdaError(f"L_DD {ldd}", check="dynamic data length", field=field,
                       expected=f"at most N_IC - 25 = {n_ic - SDAD_OVERHEAD}")
    check_block_hash(block, hash_alg, block[1 : -1 - HASH_LENGTH] + terminal, field=field,
                     covers="the signed data and the terminal dynamic data",
                     expected="the terminal dynamic data the card signed (UN, amount, ... unchanged)")
    dd = block[4 : 4 + ldd]
    return DynamicData(FORMAT_SIGNED_DYNAMIC_DATA, hash_alg, dd, _icc_dynamic_number(dd, field=field), "rsa")


# -- DDA: INTERNAL AUTHENTICATE ---------------------------------------------------------------------


def dda_terminal_data(values: Mapping[int, bytes], ddol: bytes = DEFAULT_DDOL, *, kernel: str | None = None) -> bytes:
    """Terminal dynamic data for DDA: the DDOL data (INTERNAL AUTHENTICATE command data, Book 3 6.5.9)."""
    return build_dol_data(as_bytes(ddol, field="tag 9F49"), values, kernel=kernel)


def parse_internal_authenticate_response(data: bytes) -> bytes:
    """The SDAD of an INTERNAL AUTHENTICATE response: format 1 ``80 L SDAD`` or format 2 ``77 {9F4B}``."""
    field = "INTERNAL AUTHENTICATE response"
    try:
        obj = decode_one(as_bytes(data, field=field))
        if obj.tag == 0x80:
            return obj.value
        if obj.tag == 0x77:
            for child in decode(obj.value):
                if child.tag == 0x9F4B:
                    return child.value
            raise OdaError("template 77 without 9F4B", check="response format", field=field,
                           expected="Signed Dynamic Application Data (9F4B) in template 77")
    except TlvError as exc:
        raise OdaError(str(exc), check="response format", field=field) from None
    raise OdaError(f"response template {obj.tag:X}", check="response format", field=field,
                   expected="80 (format 1) or 77 (format 2)")


# -- fDDA (qPBOC) ---------------------------------------------------------------------------------


def card_auth_related_data(card_un: bytes, ctq: bytes) -> bytes:
    """Card Authentication Related Data, tag 9F69, fDDA version 01: ``01 || card UN (4) || CTQ (2)`` [M]."""
    un, ctq_raw = as_bytes(card_un, field="card UN"), as_bytes(ctq, field="tag 9F6C")
    if len(un) != 4:
        raise OdaError(f"card unpredictable number of {len(un)} bytes", check="input", field="card UN",
                       expected="4 bytes")
    if len(ctq_raw) != 2:
        raise OdaError(f"CTQ of {len(ctq_raw)} bytes", check="input", field="tag 9F6C", expected="2 bytes")
    return bytes([FDDA_VERSION_01]) + un + ctq_raw


def _check_bcd(value: bytes, length: int, *, field: str) -> bytes:
    if len(value) != length or any(b >> 4 > 9 or b & 0x0F > 9 for b in value):
        raise OdaError(f"{value.hex().upper() or '(empty)'}", check="terminal data", field=field,
                       expected=f"{length} bytes of BCD digits")
    return value


def fdda_terminal_data(un_9F37: bytes, amount_9F02: bytes, currency_5F2A: bytes, card_auth_data_9F69: bytes) -> bytes:
    """Terminal dynamic data of qPBOC fDDA v01: ``9F37 || 9F02 || 5F2A || 9F69`` [M: brief section 1].

    9F37 is 4 bytes, 9F02 n12 (6 BCD bytes), 5F2A n3 (2 BCD bytes); 9F69 must carry version 01 and be
    at least 7 bytes; it is included exactly as the card returned it.
    """
    un = as_bytes(un_9F37, field="tag 9F37")
    if len(un) != 4:
        raise OdaError(f"unpredictable number of {len(un)} bytes", check="terminal data", field="tag 9F37",
                       expected="4 bytes")
    amount = _check_bcd(as_bytes(amount_9F02, field="tag 9F02"), 6, field="tag 9F02")
    currency = _check_bcd(as_bytes(currency_5F2A, field="tag 5F2A"), 2, field="tag 5F2A")
    card_data = as_bytes(card_auth_data_9F69, field="tag 9F69")
    if len(card_data) < CARD_AUTH_RELATED_DATA_LENGTH:
        raise OdaError(f"card authentication related data of {len(card_data)} bytes", check="fDDA version",
                       field="tag 9F69", expected=f"at least {CARD_AUTH_RELATED_DATA_LENGTH} bytes (version 01)")
    if card_data[0] != FDDA_VERSION_01:
        raise OdaError(f"fDDA version {card_data[0]:02X}", check="fDDA version", field="tag 9F69",
                       expected=f"{FDDA_VERSION_01:02X}")
    return un + amount + currency + card_data


def sign_fdda(
    icc_private: PrivateKey,
    icc_dynamic_number: bytes,
    un_9F37: bytes,
    amount_9F02: bytes,
    currency_5F2A: bytes,
    card_auth_data_9F69: bytes,
    *,
    hash_alg: int | None = None,
) -> bytes:
    """Card side of qPBOC fDDA: SDAD (9F4B) over ``9F37 || 9F02 || 5F2A || 9F69`` [M]."""
    terminal = fdda_terminal_data(un_9F37, amount_9F02, currency_5F2A, card_auth_data_9F69)
    return sign_dynamic_data(icc_private, icc_dynamic_data(icc_dynamic_number), terminal, hash_alg=hash_alg)


def verify_fdda(
    icc_public: PublicKey,
    sdad_9F4B: bytes,
    un_9F37: bytes,
    amount_9F02: bytes,
    currency_5F2A: bytes,
    card_auth_data_9F69: bytes,
) -> DynamicData:
    """Reader side of qPBOC fDDA: :func:`verify_dynamic_signature` over the fDDA v01 terminal data [M]."""
    terminal = fdda_terminal_data(un_9F37, amount_9F02, currency_5F2A, card_auth_data_9F69)
    return verify_dynamic_signature(icc_public, sdad_9F4B, terminal)
