"""The POS terminal's pure ISO 8583 helpers (``cup-pos`` dialect): working keys, batch totals, settlement,
response MAC checks.

Domain brief section 5. Shared by the POS side (:mod:`paylab.drivers.pos.acquirer_link`) and the reference
acquirer (:mod:`paylab.lab.backend.acquirer`), so both agree on the bytes:

* field 62 of a sign-on response — ``E_TMK(PIK) | KCV(PIK) | E_TMK(MAK) | KCV(MAK)`` (3DES ECB under the
  TMK, KCV = first 4 bytes of the key encrypting 8 zero bytes); 40 bytes for double-length keys (``003``),
  24 bytes for single-length ones (``001``) [M];
* field 48 of 0500/0510 — the batch totals [M: CUP POS layout];
* the response codes an acquirer answers without field 64 (it has no MAK it could trust for them).

Pure code: bytes in, bytes out; nothing is logged.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..crypto.primitives import ecb_decrypt, ecb_encrypt, kcv
from ..errors import Iso8583Error, MacError
from .framing import DEFAULT_POS_HEADER, DEFAULT_TPDU
from .mac import pos_mac
from .messages import Iso8583Message, decode_message
from .specs import MAC_FIELD, Dialect

BALANCE_INQUIRY_CODE = "310000"
"""Processing code of a balance inquiry (0200, brief section 5 MTIs; this lab's choice over 0100)."""
UNMACED_RESPONSE_CODES = frozenset({"A0", "97", "30"})
"""Response codes the acquirer answers without field 64 (no trustworthy MAK for them)."""
SETTLEMENT_CODE = "201"
"""60.3 of a settlement request [M: CUP POS 201 = settlement]."""


# -- field 62 (working keys) ----------------------------------------------------------------------------------


def key_check_value(key: bytes) -> bytes:
    """KCV of a DES/3DES working key: the first 4 bytes of the key encrypting 8 zero bytes."""
    return kcv(key, "des" if len(key) == 8 else "3des", length=4)


def encode_working_keys(tmk: bytes, pik: bytes, mak: bytes) -> bytes:
    """Field 62 of a sign-on response: ``E_TMK(PIK) | KCV | E_TMK(MAK) | KCV`` (module docstring)."""
    out = b""
    for key in (pik, mak):
        out += ecb_encrypt("3des", tmk, key) + key_check_value(key)
    return out


def decode_working_keys(tmk: bytes, value: bytes) -> tuple[bytes, bytes]:
    """``(PIK, MAK)`` from field 62; :class:`Iso8583Error` for a bad length, :class:`MacError` for a KCV
    that does not match (a wrong TMK)."""
    size = {24: 8, 40: 16}.get(len(value))
    if size is None:
        raise Iso8583Error(f"working keys of {len(value)} bytes (expected 24 or 40)", field="field 62")
    keys = []
    for offset in (0, size + 4):
        key = ecb_decrypt("3des", tmk, value[offset: offset + size])
        if key_check_value(key) != value[offset + size: offset + size + 4]:
            raise MacError("field 62: working key check value does not match (wrong TMK?)")
        keys.append(key)
    return keys[0], keys[1]


# -- field 48 (batch totals) and the 0500 ---------------------------------------------------------------------


@dataclass(frozen=True)
class BatchTotals:
    """Settlement totals of a batch, amounts in fen: debits = purchases, credits = refunds/voids (none here)."""

    debit_count: int = 0
    debit_amount: int = 0
    credit_count: int = 0
    credit_amount: int = 0


def encode_batch_totals(totals: BatchTotals, settle_code: str = "0") -> str:
    """Field 48 of 0500/0510 [M: CUP POS layout], 62 digits: domestic cards ``debit amount n12 | debit
    count n3 | credit amount n12 | credit count n3 | settle code n1``, then the same 31 digits for
    foreign cards (always zero here). Settle code: 0 request, 1 balanced, 2 not balanced."""
    domestic = (f"{totals.debit_amount:012d}{totals.debit_count:03d}"
                f"{totals.credit_amount:012d}{totals.credit_count:03d}{settle_code}")
    return domestic + "0" * 30 + settle_code


def decode_batch_totals(value: str) -> tuple[BatchTotals, str]:
    """``(domestic totals, settle code)`` of field 48; :class:`Iso8583Error` if malformed."""
    if len(value) < 31 or not value[:31].isdigit():
        raise Iso8583Error("batch totals must start with 31 digits", field="field 48")
    totals = BatchTotals(debit_count=int(value[12:15]), debit_amount=int(value[0:12]),
                         credit_count=int(value[27:30]), credit_amount=int(value[15:27]))
    return totals, value[30]


def settlement_request(*, stan: int, terminal_id: str, merchant_id: str, batch: int, totals: BatchTotals,
                       operator: str = "01") -> Iso8583Message:
    """A 0500 settlement: 11, 41, 42, 48 totals, 49, 60 (``00`` + batch + ``201``), 63 operator."""
    fields: dict[int, str | bytes] = {
        11: f"{stan:06d}", 41: terminal_id.ljust(8)[:8], 42: merchant_id.ljust(15)[:15],
        48: encode_batch_totals(totals), 49: "156", 60: f"00{batch:06d}{SETTLEMENT_CODE}", 63: operator.ljust(3)[:3],
    }
    return Iso8583Message("0500", fields, tpdu=DEFAULT_TPDU, header=DEFAULT_POS_HEADER)


# -- MAC check of a received message --------------------------------------------------------------------------


def verify_mac(raw: bytes, msg: Iso8583Message, dialect: Dialect, mak: bytes) -> None:
    """Raise :class:`MacError` unless ``msg`` (decoded from ``raw``) carries a valid MAC under ``mak``.

    ``cup-pos`` checks field 64 directly over the raw bytes (no second decode); ``switch``
    re-decodes with the MAK, which the protocol core needs for the field-128 MAB.
    """
    if MAC_FIELD[dialect] not in msg.fields:
        raise MacError(f"field {MAC_FIELD[dialect]} missing (response code A0)")
    if dialect == "cup-pos":
        if pos_mac(mak, raw) != raw[-8:]:
            raise MacError("field 64: MAC does not verify (response code A0)")
        return
    decode_message(raw, dialect, mak=mak)


__all__ = [
    "BALANCE_INQUIRY_CODE", "SETTLEMENT_CODE", "UNMACED_RESPONSE_CODES", "BatchTotals", "decode_batch_totals",
    "decode_working_keys", "encode_batch_totals", "encode_working_keys", "key_check_value", "settlement_request",
    "verify_mac",
]
