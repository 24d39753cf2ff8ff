"""A fast path for pyiso8583's ``encode``/``decode`` on paylab's two dialect specs.

The backend decodes five and encodes four messages per authorisation; pyiso8583's general code
(spec look-ups, error bookkeeping per field) is most of that cost. :func:`decode` and
:func:`encode` do the same work for the specs of :mod:`.specs` only (fixed and LL/LLL variable
fields, BCD or ASCII lengths, BCD nibble fields with one pad character, binary and text data,
a 64-bit primary and optionally a secondary bitmap), with **the same output**: the decoded
document and the encoded-field dict (``{"len": bytes, "data": bytes}``, which the switch MAB is
built from).

They do not report errors: on anything unusual (a length out of range, a wrong pad, an undefined
field, bytes that do not decode, extra data) they raise :class:`Slow`, and the caller runs
pyiso8583 itself, which then produces the precise error (offset, field) the codec reports. So the
fast path can only change speed, never which input is accepted or how a refusal reads; the
equivalence is tested against pyiso8583 in ``lab/tests/test_iso8583_fastcodec.py``.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .specs import HEADER_LEN, SPECS, Dialect

__all__ = ["Slow", "decode", "encode"]


class Slow(Exception):
    """The input needs pyiso8583's general path (it may be malformed)."""


@dataclass(frozen=True)
class _Field:
    key: str
    len_type: int
    bcd_len: bool
    max_len: int
    nibbles: bool
    binary: bool
    encoding: str
    left_pad: str
    right_pad: str


def _plan(spec: Mapping[str, Mapping[str, Any]]) -> dict[int, _Field]:
    plan = {}
    for key, f in spec.items():
        if not key.isdigit() or key == "1":
            continue
        if f["len_enc"] not in ("bcd", "ascii") and f["len_type"]:
            raise ValueError(f"field {key}: length encoding {f['len_enc']!r} has no fast path")
        plan[int(key)] = _Field(key, f["len_type"], f["len_enc"] == "bcd", f["max_len"],
                                f.get("len_count", "bytes") == "nibbles", f["data_enc"] == "b",
                                f["data_enc"], f.get("left_pad", "")[:1], f.get("right_pad", "")[:1])
    return plan


_PLANS: dict[str, dict[int, _Field]] = {d: _plan(s) for d, s in SPECS.items()}
_BINARY_MTI = {d: s["t"]["data_enc"] == "b" for d, s in SPECS.items()}
_SECONDARY = {d: "1" in s for d, s in SPECS.items()}


def _bits(bitmap: bytes, offset: int) -> list[int]:
    value = int.from_bytes(bitmap, "big")
    return [offset + n for n in range(1, 65) if value >> (64 - n) & 1]


def decode(raw: bytes, dialect: Dialect) -> tuple[dict[str, str], dict[str, dict[str, bytes]]]:
    """``iso8583.decode(raw, SPECS[dialect])`` for well-formed input; :class:`Slow` otherwise."""
    plan = _PLANS[dialect]
    hlen = HEADER_LEN[dialect]
    mlen = 2 if _BINARY_MTI[dialect] else 4
    end = len(raw)
    idx = hlen + mlen + 8
    if end < idx:
        raise Slow
    header, mti, primary = raw[:hlen], raw[hlen:hlen + mlen], raw[hlen + mlen:idx]
    try:
        mti_text = mti.hex().upper() if _BINARY_MTI[dialect] else mti.decode("ascii")
    except UnicodeDecodeError:
        raise Slow from None
    doc: dict[str, str] = {"h": header.hex().upper(), "t": mti_text, "p": primary.hex().upper()}
    enc: dict[str, dict[str, bytes]] = {"h": {"len": b"", "data": header}, "t": {"len": b"", "data": mti},
                                        "p": {"len": b"", "data": primary}}
    numbers = _bits(primary, 0)
    if numbers and numbers[0] == 1:
        if not _SECONDARY[dialect] or end < idx + 8:
            raise Slow
        secondary = raw[idx:idx + 8]
        idx += 8
        doc["1"] = secondary.hex().upper()
        enc["1"] = {"len": b"", "data": secondary}
        numbers = numbers[1:] + _bits(secondary, 64)
        if 65 in numbers:
            raise Slow  # tertiary bitmap: not in these dialects
    for number in numbers:
        f = plan.get(number)
        if f is None:
            raise Slow
        if f.len_type:
            prefix = raw[idx:idx + f.len_type]
            if len(prefix) != f.len_type:
                raise Slow
            try:
                length = int(prefix.hex(), 10) if f.bcd_len else int(prefix.decode("ascii"))
            except (ValueError, UnicodeDecodeError):
                raise Slow from None
            if length > f.max_len:
                raise Slow
            idx += f.len_type
            if length == 0:
                doc[f.key] = ""
                enc[f.key] = {"len": prefix, "data": b""}
                continue
        else:
            prefix, length = b"", f.max_len
        size = (length + 1) // 2 if f.nibbles else length
        data = raw[idx:idx + size]
        if len(data) != size:
            raise Slow
        idx += size
        if f.binary:
            value = data.hex().upper()
            if f.nibbles and length & 1:
                if f.left_pad and value[:1] == f.left_pad:
                    value = value[1:]
                elif f.right_pad and value[-1:] == f.right_pad:
                    value = value[:-1]
                else:
                    raise Slow
        else:
            try:
                value = data.decode(f.encoding)
            except (UnicodeDecodeError, LookupError):
                raise Slow from None
        doc[f.key] = value
        enc[f.key] = {"len": prefix, "data": data}
    if idx != end:
        raise Slow
    return doc, enc


def encode(doc: Mapping[str, str], dialect: Dialect) -> tuple[bytes, dict[str, dict[str, bytes]]]:
    """``iso8583.encode(doc, SPECS[dialect])`` (bytes and encoded-field dict) for a well-formed
    document of ``h``, ``t`` and numbered fields; :class:`Slow` otherwise. ``doc`` is not changed."""
    plan = _PLANS[dialect]
    try:
        header = binascii.a2b_hex(doc["h"])
        mti = binascii.a2b_hex(doc["t"]) if _BINARY_MTI[dialect] else doc["t"].encode("ascii")
    except (KeyError, ValueError, UnicodeEncodeError, binascii.Error):
        raise Slow from None
    if len(header) != HEADER_LEN[dialect] or len(mti) != (2 if _BINARY_MTI[dialect] else 4):
        raise Slow
    enc: dict[str, dict[str, bytes]] = {"h": {"len": b"", "data": header}, "t": {"len": b"", "data": mti}}
    numbers = sorted(int(k) for k in doc if k.isdigit() and k not in ("1", "65"))
    if any(not 2 <= n <= 128 for n in numbers) or (numbers and numbers[-1] > 64 and not _SECONDARY[dialect]):
        raise Slow
    body = bytearray()
    for number in numbers:
        f = plan.get(number)
        if f is None:
            raise Slow
        text = doc[f.key]
        if not isinstance(text, str):
            raise Slow
        if f.binary:
            if f.nibbles and len(text) & 1:
                text = f.left_pad + text if f.left_pad else text + f.right_pad
            try:
                data = binascii.a2b_hex(text)
            except (ValueError, binascii.Error):
                raise Slow from None
            length = len(doc[f.key]) if f.nibbles else len(data)
        else:
            try:
                data = text.encode(f.encoding)
            except (UnicodeEncodeError, LookupError):
                raise Slow from None
            length = len(data)
        if f.len_type == 0:
            if length != f.max_len:
                raise Slow
            prefix = b""
        else:
            if length > f.max_len:
                raise Slow
            digits = f"{length:0{f.len_type * 2 if f.bcd_len else f.len_type}d}"
            prefix = binascii.a2b_hex(digits) if f.bcd_len else digits.encode("ascii")
            if len(prefix) != f.len_type:
                raise Slow
        enc[f.key] = {"len": prefix, "data": data}
        body += prefix
        body += data
    primary = bytearray(8)
    secondary = bytearray(8)
    for number in numbers:
        target, bit = (primary, number - 1) if number <= 64 else (secondary, number - 65)
        target[bit // 8] |= 0x80 >> (bit % 8)
    head = bytearray(header + mti)
    if numbers and numbers[-1] > 64:
        primary[0] |= 0x80
        enc["p"] = {"len": b"", "data": bytes(primary)}
        enc["1"] = {"len": b"", "data": bytes(secondary)}
        head += primary + secondary
    else:
        enc["p"] = {"len": b"", "data": bytes(primary)}
        head += primary
    return bytes(head + body), enc
