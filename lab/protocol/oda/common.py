"""Shared pieces of offline data authentication: the error type, recovered-data constants, hashing and
the ``cn`` / date codecs the certificates use (EMV 4.3 Book 2 sections 5-6, Annex A2.1, B2.1, B3).

Every check a terminal runs raises :class:`OdaError`, whose ``check`` names the step that failed
(``"trailer"``, ``"hash"``, ``"expiry"``, ...), so a kernel can map it to a TVR bit and a report can say
which step refused the card.
"""

from __future__ import annotations

import calendar
import hashlib
from collections.abc import Callable
from datetime import date
from typing import TYPE_CHECKING

from ..crypto.primitives import sm3
from ..errors import ProtocolError
from ..masking import mask_pan

if TYPE_CHECKING:
    from .keys import RsaPrivateKey, RsaPublicKey

RECOVERED_DATA_HEADER = 0x6A
"""First byte of every block recovered with a public key (Book 2 Annex A2.1)."""
RECOVERED_DATA_TRAILER = 0xBC
"""Last byte of every recovered block (Book 2 Annex A2.1)."""
PAD_BYTE = 0xBB
"""Pad byte of a public key field or of the signed data (Book 2 5.3, 5.4, 6.3, 6.4, 6.5.1)."""

FORMAT_ISSUER_CERTIFICATE = 0x02
FORMAT_SIGNED_STATIC_DATA = 0x03
FORMAT_ICC_CERTIFICATE = 0x04
FORMAT_SIGNED_DYNAMIC_DATA = 0x05

HASH_SHA1 = 0x01
"""Hash Algorithm Indicator for SHA-1 (Book 2 Annex B3.1), the only one EMV 4.3 RSA ODA uses."""
HASH_SM3 = 0x07
"""Hash Algorithm Indicator for SM3 in the paylab SM2 forms [M] (JR/T 0025.17 value not verified)."""
PK_ALGORITHM_RSA = 0x01
"""Public Key Algorithm Indicator for RSA (Book 2 Annex B2.1)."""
PK_ALGORITHM_SM2 = 0x04
"""Public Key Algorithm Indicator for SM2 in the paylab SM2 forms [M]."""

HASH_LENGTH = 20
ALLOWED_EXPONENTS = (3, 0x010001)
"""RSA public exponents EMV allows (Book 2 Annex B2.1: 3 or 2^16 + 1)."""

_HASHES: dict[int, tuple[str, Callable[[bytes], bytes]]] = {
    HASH_SHA1: ("SHA-1", lambda data: hashlib.sha1(data).digest()),
}


class OdaError(ProtocolError):
    """An offline data authentication check failed, or ODA input is malformed.

    ``check`` names the failed step (e.g. ``"trailer"``, ``"hash"``, ``"issuer identifier"``,
    ``"expiry"``); ``field`` the data element (``"tag 90"``). ``str()`` reads
    ``"tag 90: hash check failed: ... (expected ...)"``.
    """

    def __init__(
        self,
        message: str,
        *,
        check: str,
        field: str | None = None,
        expected: str | None = None,
        offset: int | None = None,
    ) -> None:
        self.check = check
        super().__init__(f"{check} check failed: {message}", field=field, expected=expected, offset=offset)


def hash_name(alg: int) -> str:
    """Display name of a Hash Algorithm Indicator."""
    return _HASHES[alg][0] if alg in _HASHES else f"unknown ({alg:02X})"


def check_hash_algorithm(alg: int, *, field: str) -> None:
    """:class:`OdaError` unless ``alg`` is a supported Hash Algorithm Indicator (Book 2 Annex B3)."""
    if alg not in _HASHES:
        raise OdaError(f"hash algorithm indicator {alg:02X}", check="hash algorithm", field=field,
                       expected="01 (SHA-1)")


def compute_hash(alg: int, data: bytes, *, field: str) -> bytes:
    """Hash of ``data`` with the algorithm of indicator ``alg``."""
    check_hash_algorithm(alg, field=field)
    return _HASHES[alg][1](data)


def sm3_hash(data: bytes) -> bytes:
    """SM3 (GB/T 32905), for the SM2 forms and SM2 CA key check sums [M]."""
    return sm3(data)


# -- RSA signatures with message recovery (Book 2 Annex A2.1): certificates, SSAD, SDAD ----------


def seal_block(signer: RsaPrivateKey, body: bytes, hashed_tail: bytes, hash_alg: int, *, field: str) -> bytes:
    """Sign ``6A || body || hash(body || hashed_tail) || BC`` with message recovery."""
    digest = compute_hash(hash_alg, body + hashed_tail, field=field)
    block = bytes([RECOVERED_DATA_HEADER]) + body + digest + bytes([RECOVERED_DATA_TRAILER])
    return signer.sign_raw(block, field=field)


def open_block(signer: RsaPublicKey, signed: bytes, fmt: int, *, field: str, what: str, length_problem: str = "",
               modulus: str = "the signer's modulus", key: str = "key",
               format_name: str = "certificate format") -> bytes:
    """Recovered block after the length, recovery, trailer, header and format checks (Book 2 5.4, 6.3, 6.4
    and 6.5.2, steps 1-4). The wording of the messages: ``length_problem`` (default ``"<what> is N bytes"``),
    ``modulus`` (whose length the data must have), ``key`` (the key that may be wrong), ``format_name``."""
    if len(signed) != signer.size:
        raise OdaError(length_problem or f"{what} is {len(signed)} bytes", check="length", field=field,
                       expected=f"{signer.size} bytes, the length of {modulus}")
    block = signer.recover(signed, field=field)
    if block[-1] != RECOVERED_DATA_TRAILER:
        raise OdaError(f"recovered data trailer {block[-1]:02X}", check="trailer", field=field,
                       expected=f"{RECOVERED_DATA_TRAILER:02X} (wrong {key}, or the {what} was altered)")
    if block[0] != RECOVERED_DATA_HEADER:
        raise OdaError(f"recovered data header {block[0]:02X}", check="header", field=field,
                       expected=f"{RECOVERED_DATA_HEADER:02X}")
    if block[1] != fmt:
        raise OdaError(f"{format_name} {block[1]:02X}", check="format", field=field, expected=f"{fmt:02X}")
    return block


def check_block_hash(block: bytes, hash_alg: int, hashed: bytes, *, field: str, covers: str,
                     expected: str = "those data exactly as they were signed") -> None:
    """The hash result in a recovered block must be the hash of ``hashed`` (what ``covers`` describes)."""
    if compute_hash(hash_alg, hashed, field=field) != block[-1 - HASH_LENGTH : -1]:
        raise OdaError(f"the recovered hash result differs from {hash_name(hash_alg)} over {covers}",
                       check="hash", field=field, expected=expected)


# -- exponents -----------------------------------------------------------------------------------


def exponent_bytes(exponent: int) -> bytes:
    """Big-endian minimal encoding of an RSA exponent: ``03`` or ``010001`` (tags 9F32, 9F47)."""
    if exponent not in ALLOWED_EXPONENTS:
        raise OdaError(f"exponent {exponent}", check="exponent", field="exponent", expected="3 or 65537")
    return exponent.to_bytes((exponent.bit_length() + 7) // 8, "big")


def check_exponent(raw: bytes, *, field: str) -> int:
    """Value of an exponent field; :class:`OdaError` unless it is ``03`` or ``010001`` (Annex B2.1)."""
    value = int.from_bytes(raw, "big")
    if not raw or raw[0] == 0 or value not in ALLOWED_EXPONENTS:
        raise OdaError(f"exponent {raw.hex().upper() or '(empty)'}", check="exponent", field=field,
                       expected="03 or 010001")
    return value


# -- compressed numeric (cn) digits: issuer identifier and PAN ------------------------------------


def _is_digits(text: str) -> bool:
    return bool(text) and all("0" <= ch <= "9" for ch in text)


def pan_digits(pan: str | bytes, *, field: str = "tag 5A") -> str:
    """The PAN as digits: from a string of digits or from a ``cn`` value (tag 5A, F-padded)."""
    if isinstance(pan, bytes | bytearray):
        text = bytes(pan).hex().upper().rstrip("F")
    elif isinstance(pan, str):
        text = pan
    else:
        raise OdaError(f"PAN of type {type(pan).__name__}", check="PAN", field=field, expected="str or bytes")
    if not _is_digits(text) or not 8 <= len(text) <= 19:
        raise OdaError("PAN is not 8 to 19 decimal digits", check="PAN", field=field,
                       expected="digits, optionally F-padded cn")
    return text


def encode_cn(digits: str, length: int) -> bytes:
    """``digits`` left-justified in ``length`` bytes, padded with F nibbles (format ``cn``)."""
    if not _is_digits(digits) or len(digits) > 2 * length:
        raise OdaError(f"{len(digits)} characters", check="cn", expected=f"at most {2 * length} decimal digits")
    return bytes.fromhex(digits + "F" * (2 * length - len(digits)))


def decode_cn(raw: bytes) -> str | None:
    """Digits of a ``cn`` value, or None unless it is digits followed only by F padding."""
    text = raw.hex().upper()
    digits = text.rstrip("F")
    return digits if _is_digits(digits) else None


def issuer_identifier_bytes(issuer_id: str | bytes) -> bytes:
    """Issuer Identifier (4 bytes ``cn``): the leftmost 3-8 PAN digits, padded with F (Book 2 table 6)."""
    if isinstance(issuer_id, bytes | bytearray):
        digits = decode_cn(bytes(issuer_id)) if len(issuer_id) == 4 else None
    else:
        digits = issuer_id
    if not isinstance(digits, str) or not _is_digits(digits) or not 3 <= len(digits) <= 8:
        raise OdaError(f"issuer identifier {issuer_id!r}", check="issuer identifier", field="issuer_id",
                       expected="3 to 8 leftmost PAN digits (or their 4-byte F-padded cn form)")
    return encode_cn(digits, 4)


# -- dates ---------------------------------------------------------------------------------------


def _year(yy: int) -> int:
    """Book 4 convention for two-digit years: 00-49 are 20YY, 50-99 are 19YY."""
    return 2000 + yy if yy < 50 else 1900 + yy


def expiry_bytes(expiry: str | bytes) -> bytes:
    """Certificate Expiration Date, 2 bytes ``n4`` MMYY, from ``"MMYY"`` or the raw 2 bytes."""
    if isinstance(expiry, bytes | bytearray):
        text = bytes(expiry).hex() if len(expiry) == 2 else ""
    else:
        text = expiry if isinstance(expiry, str) else ""
    if len(text) != 4 or not _is_digits(text) or not 1 <= int(text[:2]) <= 12:
        raise OdaError(f"expiry {expiry!r}", check="expiry", field="expiry", expected="MMYY with MM 01-12")
    return bytes.fromhex(text)


def expiry_end(raw: bytes, *, field: str) -> date:
    """Last day a MMYY Certificate Expiration Date is valid (its month's last day)."""
    text = raw.hex()
    if len(raw) != 2 or not _is_digits(text) or not 1 <= int(text[:2]) <= 12:
        raise OdaError(f"certificate expiration date {raw.hex().upper()}", check="expiry", field=field,
                       expected="MMYY (n4) with MM 01-12")
    month, year = int(text[:2]), _year(int(text[2:]))
    return date(year, month, calendar.monthrange(year, month)[1])


def check_not_expired(raw: bytes, today: date, *, field: str) -> None:
    """Book 2 5.3 step 9 / 6.3 / 6.4: the expiration date must be today or later (month granularity)."""
    if not isinstance(today, date):
        raise OdaError(f"today of type {type(today).__name__}", check="expiry", field="today",
                       expected="a datetime.date")
    end = expiry_end(raw, field=field)
    if today > end:
        raise OdaError(f"certificate expired at the end of {raw.hex()[:2]}/{raw.hex()[2:]} ({end.isoformat()})",
                       check="expiry", field=field, expected=f"today ({today.isoformat()}) on or before {end}")


def masked(pan: str) -> str:
    """PAN for error messages: first 6 / last 4 (PCI DSS 3.3, :mod:`..masking`)."""
    return mask_pan(pan)


def serial_bytes(serial: bytes | int) -> bytes:
    """Certificate Serial Number, 3 bytes binary (Book 2 tables 6 and 14)."""
    if isinstance(serial, int) and not isinstance(serial, bool) and 0 <= serial < 1 << 24:
        return serial.to_bytes(3, "big")
    if isinstance(serial, bytes | bytearray) and len(serial) == 3:
        return bytes(serial)
    raise OdaError(f"serial {serial!r}", check="serial", field="serial", expected="3 bytes or an int below 2^24")
