"""ISO 8583 messages of the UnionPay dialects: encode, decode, MAC, and builders for the usual ones.

The bitmap and field codec is pyiso8583 (domain brief section 5, "pyiso8583 4.0.1"); this module
adds what it leaves out: the envelope (TPDU + POS header, CUPS header), value checks per ISO
format, the MAC of field 64/128, and typed errors. Every malformed input ends as
:class:`~paylab.lab.protocol.errors.Iso8583Error` naming the element (``field 35: ...``,
``MTI: ...``, ``header: ...``); a MAC that does not verify raises
:class:`~paylab.lab.protocol.errors.MacError` (answered with response code A0).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import iso8583

from ..errors import Iso8583Error, MacError
from . import fastcodec
from .field55 import REVERSAL_TAGS, field55_encode, field55_select
from .framing import DEFAULT_POS_HEADER, DEFAULT_TPDU, CupsHeader, swap_tpdu
from .mac import MAC_LEN, check_mak, pos_mac, switch_mab, switch_mac
from .specs import (
    CUPS_HEADER_LEN,
    FIELDS,
    MAC_FIELD,
    POS_HEADER_LEN,
    POS_TPDU_LEN,
    SPECS,
    Dialect,
    FieldDef,
    UndefinedFieldError,
    check_dialect,
    field_label,
)

FieldValue = str | bytes

RESPONSE_CODES: dict[str, str] = {
    "00": "Approved",
    "01": "Refer to card issuer",
    "03": "Invalid merchant",
    "05": "Do not honour",
    "12": "Invalid transaction",
    "13": "Invalid amount",
    "14": "Invalid card number",
    "15": "No such issuer",
    "25": "Original transaction not found",
    "30": "Format error",
    "40": "Function not supported",
    "41": "Lost card",
    "43": "Stolen card",
    "51": "Insufficient funds",
    "54": "Expired card",
    "55": "Incorrect PIN",
    "61": "Exceeds withdrawal amount limit",
    "75": "PIN tries exceeded",
    "91": "Issuer or switch inoperative",
    "94": "Duplicate transmission",
    "96": "System malfunction",
    "97": "Terminal not registered",
    "98": "Timeout (no response from issuer / reversal reason)",
    "99": "PIN block format error",
    "A0": "MAC error",
}
"""Response codes (field 39) [S: domain brief section 5, from gftao/mygolib ``defs/tranDef.go``; ISO]."""

MTI_NAMES: dict[str, str] = {
    "0100": "Pre-authorisation request",
    "0110": "Pre-authorisation response",
    "0200": "Financial request (purchase/void/refund)",
    "0210": "Financial response",
    "0220": "Financial advice",
    "0230": "Financial advice response",
    "0320": "Batch upload / TC upload",
    "0330": "Batch upload response",
    "0400": "Reversal request",
    "0410": "Reversal response",
    "0420": "Reversal advice",
    "0430": "Reversal advice response",
    "0500": "Settlement request",
    "0510": "Settlement response",
    "0800": "Network management request (sign-on/echo)",
    "0810": "Network management response",
    "0820": "Network management advice",
    "0830": "Network management advice response",
}
"""MTIs of the brief (section 5 "MTIs"); 0420/0820 are the switch's forms [M]."""


@dataclass
class Iso8583Message:
    """One ISO 8583 message, independent of its wire dialect.

    ``fields`` maps the field number to its value: ``bytes`` for binary (``b``) fields, ``str``
    otherwise (digits for ``n``, digits and ``D`` for track data). ``tpdu`` (5 bytes) and
    ``header`` (6 bytes) belong to ``cup-pos``; ``header`` is the 46-byte CUPS header in
    ``switch``. ``None`` means "use the default" when encoding. Bitmaps are never stored: they
    follow from ``fields``.
    """

    mti: str
    fields: dict[int, FieldValue] = field(default_factory=dict)
    tpdu: bytes | None = None
    header: bytes | None = None

    def __getitem__(self, number: int) -> FieldValue:
        return self.fields[number]

    def __contains__(self, number: object) -> bool:
        return number in self.fields

    def get(self, number: int, default: FieldValue | None = None) -> FieldValue | None:
        """The value of field ``number``, or ``default``."""
        return self.fields.get(number, default)

    @property
    def response_code(self) -> str | None:
        """Field 39, if present."""
        value = self.fields.get(39)
        return value if isinstance(value, str) else None


# --- value checks ----------------------------------------------------------------------------

_DIGITS = frozenset("0123456789")
_TRACK = frozenset("0123456789D")


def _to_wire_value(d: FieldDef, value: object, dialect: Dialect) -> str:
    """The pyiso8583 (string) form of a field value, after checking its type and characters."""
    label = f"field {d.number}"
    if d.binary:
        if not isinstance(value, bytes | bytearray):
            raise Iso8583Error(f"binary field needs bytes, got {type(value).__name__}", field=label)
        return bytes(value).hex().upper()
    if not isinstance(value, str):
        raise Iso8583Error(f"{d.kind} field needs str, got {type(value).__name__}", field=label)
    if d.kind == "n" and not set(value) <= _DIGITS:
        raise Iso8583Error(f"non-digit in numeric value {value!r}", field=label)
    if d.kind == "z":
        if dialect == "cup-pos":
            value = value.replace("=", "D").upper()
            if not set(value) <= _TRACK:
                raise Iso8583Error("track data allows digits and the separator D/= only", field=label)
        elif not set(value.upper()) <= _TRACK | {"="}:
            raise Iso8583Error("track data allows digits and the separator D/= only", field=label)
    return value


def _check_decoded(d: FieldDef, value: str) -> None:
    """Reject BCD nibbles (or ASCII characters) a numeric or track field may not hold."""
    allowed = _DIGITS if d.kind == "n" else _TRACK | {"="}
    if not set(value) <= allowed:
        raise Iso8583Error(f"invalid character in {d.kind} value", field=f"field {d.number}",
                           expected="decimal digits" if d.kind == "n" else "digits and separator D")


def _envelope(msg: Iso8583Message, dialect: Dialect) -> bytes:
    if dialect == "cup-pos":
        tpdu = DEFAULT_TPDU if msg.tpdu is None else bytes(msg.tpdu)
        header = DEFAULT_POS_HEADER if msg.header is None else bytes(msg.header)
        if len(tpdu) != POS_TPDU_LEN:
            raise Iso8583Error(f"TPDU must be {POS_TPDU_LEN} bytes, got {len(tpdu)}", field="TPDU")
        if len(header) != POS_HEADER_LEN:
            raise Iso8583Error(f"POS header must be {POS_HEADER_LEN} bytes, got {len(header)}",
                               field="header")
        return tpdu + header
    if msg.tpdu is not None:
        raise Iso8583Error("the switch dialect has no TPDU", field="TPDU")
    if msg.header is None:
        return CupsHeader().encode()
    header = bytes(msg.header)
    if len(header) != CUPS_HEADER_LEN:
        raise Iso8583Error(f"CUPS header must be {CUPS_HEADER_LEN} bytes, got {len(header)}", field="header")
    return header


def _pyiso_errors(exc: Exception, dialect: Dialect) -> Iso8583Error:
    """Translate a pyiso8583 or spec-lookup failure into :class:`Iso8583Error`."""
    if isinstance(exc, UndefinedFieldError):
        if exc.key == "1":
            return Iso8583Error(f"secondary bitmap not allowed: the {dialect} bitmap has 64 fields",
                                field=field_label(exc.key))
        return Iso8583Error(f"not defined in the {dialect} dialect", field=field_label(exc.key))
    if isinstance(exc, iso8583.DecodeError):
        return Iso8583Error(exc.msg, field=field_label(exc.field), offset=exc.pos)
    if isinstance(exc, iso8583.EncodeError):
        return Iso8583Error(exc.msg, field=field_label(exc.field))
    return Iso8583Error(f"unexpected codec failure: {exc!r}")


# --- encode ----------------------------------------------------------------------------------


def _encode_raw(msg: Iso8583Message, dialect: Dialect, *, mac_placeholder: bool) -> tuple[bytes, dict]:
    defs = FIELDS[dialect]
    mti = msg.mti
    if not isinstance(mti, str) or len(mti) != 4 or not set(mti) <= _DIGITS:
        raise Iso8583Error(f"MTI must be 4 digits, got {mti!r}", field="MTI")
    envelope = _envelope(msg, dialect)
    mac_field = MAC_FIELD[dialect]
    values: dict[int, object] = dict(msg.fields)
    for key in values:
        if not isinstance(key, int) or isinstance(key, bool):
            raise Iso8583Error(f"field numbers must be int, got {key!r}", field=f"field {key}")
    if mac_placeholder:
        values[mac_field] = bytes(MAC_LEN)
    doc: dict[str, str] = {"h": envelope.hex().upper(), "t": mti}
    for number in sorted(values):
        d = defs.get(number)
        if d is None:
            raise Iso8583Error(f"not defined in the {dialect} dialect", field=f"field {number}")
        doc[str(number)] = _to_wire_value(d, values[number], dialect)
    try:
        raw, doc_enc = fastcodec.encode(doc, dialect)
    except fastcodec.Slow:  # pyiso8583 encodes it, or says precisely what is wrong
        try:
            raw, doc_enc = iso8583.encode(doc, SPECS[dialect])
        except (iso8583.EncodeError, UndefinedFieldError) as exc:
            raise _pyiso_errors(exc, dialect) from None
        raw = bytes(raw)
    if dialect == "switch":
        header = CupsHeader.decode(raw).encode(total_length=len(raw))
        raw = header + raw[CUPS_HEADER_LEN:]
    return raw, doc_enc


def encode_message(msg: Iso8583Message, dialect: Dialect, *, mak: bytes | None = None) -> bytes:
    """Encode ``msg`` (envelope included, TCP length prefix excluded).

    With ``mak``, field 64 (``cup-pos``: CUP ECB MAC over MTI..field 63) or field 128
    (``switch``: X9.19/X9.9 over the MAB) is computed and filled in, replacing any value given.
    In ``switch`` the header's total length is always recomputed.
    """
    dialect = check_dialect(dialect)
    if mak is not None:
        check_mak(mak)
    raw, doc_enc = _encode_raw(msg, dialect, mac_placeholder=mak is not None)
    if mak is None:
        return raw
    mac = pos_mac(mak, raw) if dialect == "cup-pos" else switch_mac(mak, switch_mab(doc_enc))
    return raw[:-MAC_LEN] + mac


# --- decode ----------------------------------------------------------------------------------

_F_PADDED = frozenset(str(d.number) for d in FIELDS["cup-pos"].values() if d.pad == "rightF")


def _pyiso_decode(raw: bytes, dialect: Dialect) -> tuple[dict[str, str], dict]:
    """pyiso8583 decode; a ``cup-pos`` PAN/track padded with 0 instead of F is also accepted [M].

    pyiso8583 checks one pad character per field, so a failure in an F-padded field is retried
    once with a 0 pad for that field; if that fails too, its error stands.
    """
    try:
        return fastcodec.decode(raw, dialect)
    except fastcodec.Slow:
        pass
    spec: dict[str, Any] = SPECS[dialect]
    while True:
        try:
            return iso8583.decode(raw, spec)
        except iso8583.DecodeError as exc:
            key = exc.field
            if dialect != "cup-pos" or key not in _F_PADDED or spec[key].get("right_pad") != "F":
                raise
            spec = type(spec)(spec)
            spec[key] = {**spec[key], "right_pad": "0"}


def decode_message(raw: bytes, dialect: Dialect, *, mak: bytes | None = None) -> Iso8583Message:
    """Decode one message (envelope included, TCP length prefix excluded).

    Malformed input raises :class:`Iso8583Error` naming the element, and nothing else. With
    ``mak`` and the MAC field present, the MAC is verified: :class:`MacError` on mismatch.
    A wrong-sized ``mak`` raises :class:`~paylab.lab.protocol.errors.CryptoError`.
    """
    dialect = check_dialect(dialect)
    if mak is not None:
        check_mak(mak)
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise Iso8583Error(f"message must be bytes, got {type(raw).__name__}")
    raw = bytes(raw)
    try:
        msg, doc_enc = _decode(raw, dialect)
    except Iso8583Error:
        raise
    except (iso8583.DecodeError, UndefinedFieldError) as exc:
        raise _pyiso_errors(exc, dialect) from None
    except Exception as exc:  # safety net: decode promises typed errors only
        raise Iso8583Error(f"unexpected decoder failure: {exc!r}") from exc
    mac_field = MAC_FIELD[dialect]
    if mak is not None and mac_field in msg.fields:
        expected = pos_mac(mak, raw) if dialect == "cup-pos" else switch_mac(mak, switch_mab(doc_enc))
        if not hmac.compare_digest(expected, raw[-MAC_LEN:]):
            raise MacError(f"field {mac_field}: MAC does not verify (response code A0)")
    return msg


def _decode(raw: bytes, dialect: Dialect) -> tuple[Iso8583Message, dict]:
    if dialect == "switch":
        header = CupsHeader.decode(raw)
        if header.total_length != len(raw):
            raise Iso8583Error(f"header total length {header.total_length} but message has {len(raw)} bytes",
                               field="header", offset=2)
    doc, doc_enc = _pyiso_decode(raw, dialect)
    mti = doc["t"]
    if not set(mti) <= _DIGITS:
        raise Iso8583Error(f"MTI {mti!r} is not 4 digits", field="MTI", offset=len(bytes.fromhex(doc["h"])))
    defs = FIELDS[dialect]
    fields: dict[int, FieldValue] = {}
    for key, value in doc.items():
        if not key.isdigit() or key == "1":
            continue
        d = defs[int(key)]
        if d.binary:
            fields[d.number] = bytes.fromhex(value)
        else:
            if d.numeric:
                _check_decoded(d, value)
            fields[d.number] = value
    envelope = bytes.fromhex(doc["h"])
    if dialect == "cup-pos":
        msg = Iso8583Message(mti, fields, tpdu=envelope[:POS_TPDU_LEN], header=envelope[POS_TPDU_LEN:])
    else:
        msg = Iso8583Message(mti, fields, tpdu=None, header=envelope)
    return msg, doc_enc


# --- builders --------------------------------------------------------------------------------


def _n(value: int | str, width: int, what: str) -> str:
    text = f"{value:0{width}d}" if isinstance(value, int) else value.zfill(width)
    if len(text) != width or not text.isdigit():
        raise Iso8583Error(f"{what} must be {width} digits, got {value!r}", field=what)
    return text


def _ans(text: str, width: int) -> str:
    return text.ljust(width)[:width]


def pos_field60(type_code: str, batch: int, network_code: str = "000", capability: str = "6",
                ic_condition: str = "0") -> str:
    """``cup-pos`` field 60: 60.1 type n2, 60.2 batch n6, 60.3 network code n3, 60.4, 60.5 [M].

    Type codes [M]: 22 purchase, 23 void, 25 refund, 00 sign-on. 60.4 terminal capability: 5
    contact IC, 6 contactless (qPBOC) [M]. 60.5 IC condition code: 0 [M].
    """
    return f"{type_code}{batch:06d}{network_code}{capability}{ic_condition}"


def purchase_request(
    *,
    pan: str,
    amount: int,
    stan: int,
    terminal_id: str,
    merchant_id: str,
    field55: bytes | None = None,
    track2: str | None = None,
    expiry: str | None = None,
    psn: str | None = None,
    pin_block: bytes | None = None,
    entry_mode: str | None = None,
    batch: int = 1,
    currency: str = "156",
    dialect: Dialect = "cup-pos",
    transmission_time: str = "0101000000",
    local_time: str | None = None,
    local_date: str | None = None,
    rrn: str | None = None,
    acquirer_id: str = "48020000",
    forwarder_id: str | None = None,
    mcc: str = "5411",
) -> Iso8583Message:
    """A 0200 purchase request (processing code 000000, condition code 00; brief section 5).

    ``amount`` in fen (n12). ``entry_mode`` defaults to 071/072 (qPBOC with/without PIN) when
    ``field55`` is given, else 021/022 (magnetic stripe) [M]. With a PIN block, field 26 = 12 and
    field 53 = 2600000000000000 (format 0 with PAN, double-length key) [M]. In the ``switch``
    dialect the acquirer's forms are added: 7 transmission time, 18 MCC, 32/33 institution IDs,
    37 RRN (defaults to ``000000`` + STAN); ``cup-pos`` carries field 60 instead.
    """
    dialect = check_dialect(dialect)
    pin = pin_block is not None
    if entry_mode is None:
        entry_mode = ("07" if field55 is not None else "02") + ("1" if pin else "2")
    fields: dict[int, FieldValue] = {
        2: pan,
        3: "000000",
        4: _n(amount, 12, "amount"),
        11: _n(stan, 6, "STAN"),
        22: _n(entry_mode, 3, "entry mode"),
        25: "00",
        41: _ans(terminal_id, 8),
        42: _ans(merchant_id, 15),
        49: currency,
    }
    if local_time is not None:
        fields[12] = local_time
    if local_date is not None:
        fields[13] = local_date
    if expiry is not None:
        fields[14] = expiry
    if psn is not None:
        fields[23] = _n(psn, 3, "PSN")
    if track2 is not None:
        fields[35] = track2
    if pin_block is not None:
        fields[26] = "12"
        fields[52] = pin_block
        fields[53] = "2600000000000000"
    if field55 is not None:
        fields[55] = field55
    if dialect == "cup-pos":
        fields[60] = pos_field60("22", batch)
        return Iso8583Message("0200", fields, tpdu=DEFAULT_TPDU, header=DEFAULT_POS_HEADER)
    fields.update({
        7: transmission_time,
        18: mcc,
        32: acquirer_id,
        33: forwarder_id if forwarder_id is not None else acquirer_id,
        37: rrn if rrn is not None else "000000" + _n(stan, 6, "STAN"),
    })
    return Iso8583Message("0200", fields, header=CupsHeader().encode())


def reversal_request(
    original: Iso8583Message,
    *,
    reason: str = "98",
    dialect: Dialect = "cup-pos",
    transmission_time: str | None = None,
    stan: int | None = None,
) -> Iso8583Message:
    """The reversal of ``original`` (a 0200/0100 request).

    ``cup-pos``: 0400 with the original's STAN, amount, card and terminal data, field 39 = the
    reversal reason (98 = no response, brief section 5), field 55 cut to
    :data:`~paylab.lab.protocol.iso8583.field55.REVERSAL_TAGS` [M], no PIN data.
    ``switch``: 0420 advice [M] with a new STAN (``stan``) and field 90 (original data
    elements: MTI, STAN, transmission time, acquirer and forwarder IDs, n42).
    """
    dialect = check_dialect(dialect)
    keep = (2, 3, 4, 11, 14, 18, 22, 23, 25, 32, 33, 37, 38, 41, 42, 49, 60)
    fields: dict[int, FieldValue] = {n: v for n, v in original.fields.items() if n in keep}
    fields[39] = reason
    icc = original.fields.get(55)
    if isinstance(icc, bytes):
        kept = field55_select(icc, REVERSAL_TAGS)
        if kept:
            fields[55] = field55_encode(kept)
    if dialect == "cup-pos":
        return Iso8583Message("0400", fields, tpdu=original.tpdu, header=original.header)
    orig_time = str(original.fields.get(7, "0000000000"))
    original_elements = (
        original.mti
        + str(original.fields.get(11, "000000"))
        + orig_time
        + str(original.fields.get(32, "")).zfill(11)
        + str(original.fields.get(33, "")).zfill(11)
    )
    fields[90] = original_elements
    fields[7] = transmission_time if transmission_time is not None else orig_time
    if stan is not None:
        fields[11] = _n(stan, 6, "STAN")
    return Iso8583Message("0420", fields, header=original.header)


def sign_on_request(
    *,
    stan: int,
    terminal_id: str,
    merchant_id: str = "",
    batch: int = 1,
    operator: str = "01",
    key_scheme: str = "003",
    dialect: Dialect = "cup-pos",
    transmission_time: str = "0101000000",
) -> Iso8583Message:
    """A 0800 sign-on (brief section 5: "Sign-on is 0800").

    ``cup-pos``: fields 11, 41, 42, 60 (type 00, batch, network code ``key_scheme``: 001 single
    DES, 003 double-length, 004 double-length with TDK [M]) and 63 (operator code an3 [M]).
    The response's field 62 returns the working keys under the TMK.
    ``switch``: fields 7, 11 and 70 = 001 (sign-on) [M].
    """
    dialect = check_dialect(dialect)
    if dialect == "cup-pos":
        fields: dict[int, FieldValue] = {
            11: _n(stan, 6, "STAN"),
            41: _ans(terminal_id, 8),
            42: _ans(merchant_id, 15),
            60: f"00{batch:06d}{key_scheme}",
            63: _ans(operator, 3),
        }
        return Iso8583Message("0800", fields, tpdu=DEFAULT_TPDU, header=DEFAULT_POS_HEADER)
    fields = {7: transmission_time, 11: _n(stan, 6, "STAN"), 70: "001"}
    return Iso8583Message("0800", fields, header=CupsHeader().encode())


_ECHOED = (2, 3, 4, 7, 11, 12, 13, 14, 18, 22, 23, 25, 32, 33, 37, 41, 42, 49, 60, 61, 90)


def response_to(
    request: Iso8583Message,
    response_code: str,
    *,
    extra: Mapping[int, FieldValue] | None = None,
) -> Iso8583Message:
    """The response skeleton of ``request``: MTI + 10, echoed fields, field 39, ``extra`` fields.

    The TPDU's addresses are swapped; the CUPS header is reused as is (its total length is
    recomputed on encoding). The MAC field is not copied.
    """
    if len(request.mti) != 4 or not request.mti.isdigit():
        raise Iso8583Error(f"MTI must be 4 digits, got {request.mti!r}", field="MTI")
    mti = request.mti[:2] + str((int(request.mti[2]) + 1) % 10) + request.mti[3]
    fields: dict[int, FieldValue] = {n: v for n, v in request.fields.items() if n in _ECHOED}
    fields[39] = response_code
    if extra:
        fields.update(extra)
    tpdu = swap_tpdu(request.tpdu) if request.tpdu is not None else None
    return Iso8583Message(mti, fields, tpdu=tpdu, header=request.header)
