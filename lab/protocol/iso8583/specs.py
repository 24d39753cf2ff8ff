"""Field dictionaries of the two UnionPay ISO 8583 dialects, and the pyiso8583 specs built from them.

* ``cup-pos``: terminal <-> acquirer (POSP). TPDU + 6-byte header, MTI 2-byte BCD, one 64-bit
  binary bitmap, ``n``/``z`` fields in BCD with BCD length prefixes (LLVAR 1 byte, LLLVAR 2 bytes),
  text fields ASCII (domain brief section 5, "POSP dialect").
* ``switch``: acquirer <-> CUPS <-> issuer. 46-byte CUPS header, MTI 4 ASCII digits, binary
  bitmap of up to 128 bits, every non-binary field ASCII with ASCII length prefixes, MAC in
  field 128 (domain brief section 5, "CUPS switch dialect").

Each field is declared once as a :class:`FieldDef` (number, name, ISO format, length type,
maximum length); :data:`SPECS` is derived from those tables and never edited by hand. Formats
not confirmed by a cited source are marked ``[M]`` in :attr:`FieldDef.note`. Sources for the
``cup-pos`` table: the domain brief; the field table of a UnionPay POS 8583 demo
(github.com/dongzhijiaren/ISO8583 ``8583/st8583.c``/``st8583.h``: lengths 19/6/12/.../322/16/
20/29/163, field 22 left-aligned, 55/62 binary LLLVAR) **[S]**.

Representation in :class:`~paylab.lab.protocol.iso8583.messages.Iso8583Message`: ``b`` fields
are ``bytes``; every other field is ``str`` (digits for ``n``; digits and ``D`` for track data).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

Dialect = Literal["cup-pos", "switch"]
DIALECTS: tuple[Dialect, ...] = get_args(Dialect)

Kind = Literal["n", "an", "ans", "z", "b"]
"""ISO 8583 data element format: numeric, alphanumeric, alphanumeric+special, track (z), binary."""

LengthType = Literal["fixed", "LLVAR", "LLLVAR"]
Pad = Literal["left0", "right0", "rightF"]


@dataclass(frozen=True)
class FieldDef:
    """One data element of a dialect.

    ``max_len`` counts digits for ``n``/``z`` fields and bytes for the others. ``pad`` says how
    an odd number of BCD digits is filled to whole bytes (``cup-pos`` only): ``left0`` for
    right-aligned numbers, ``right0``/``rightF`` for left-aligned ones. ``encoding`` is the
    character set of a text field (ASCII, GBK for a Chinese merchant name).
    """

    number: int
    name: str
    kind: Kind
    length: LengthType
    max_len: int
    pad: Pad | None = None
    encoding: str = "ascii"
    note: str = ""

    @property
    def binary(self) -> bool:
        """True if the value is ``bytes`` (format ``b``)."""
        return self.kind == "b"

    @property
    def numeric(self) -> bool:
        """True for ``n`` and ``z`` fields (digits, plus the track separator for ``z``)."""
        return self.kind in ("n", "z")

    @property
    def fmt(self) -> str:
        """The ISO 8583 notation, e.g. ``n..19``, ``ans...163``, ``b8``."""
        dots = {"fixed": "", "LLVAR": "..", "LLLVAR": "..."}[self.length]
        return f"{self.kind}{dots}{self.max_len}"


def _f(number: int, name: str, fmt: str, pad: Pad | None = None, *, encoding: str = "ascii",
       note: str = "") -> FieldDef:
    """Build a :class:`FieldDef` from ISO notation (``n6``, ``n..19``, ``ans...163``, ``b8``)."""
    kind = fmt.rstrip("0123456789.")
    rest = fmt[len(kind):]
    dots = len(rest) - len(rest.lstrip("."))
    length: LengthType = ("fixed", "fixed", "LLVAR", "LLLVAR")[dots]
    if kind not in get_args(Kind):
        raise ValueError(f"bad field format {fmt!r}")
    return FieldDef(number, name, kind, length, int(rest[dots:]), pad, encoding, note)  # type: ignore[arg-type]


# --- cup-pos: terminal <-> acquirer ----------------------------------------------------------
# Variable n/z fields are left-aligned. The brief says the PAN "is padded with F": fields 2, 35
# and 36 are right-padded with F on encoding [M]; the decoder also accepts a 0 pad (the demo
# above pads with 0). Other variable n fields are right-padded with 0 [M]. Fixed odd-length
# numbers are right-aligned (left pad 0), except field 22, which the demo keeps left-aligned
# ("051" -> 05 10) [S: st8583.h LEN_ENTRY_MODE comment; M].
_CUP_POS_FIELDS: tuple[FieldDef, ...] = (
    _f(2, "Primary account number", "n..19", "rightF", note="[M] odd length padded F on the right"),
    _f(3, "Processing code", "n6"),
    _f(4, "Amount, transaction (fen)", "n12"),
    _f(11, "System trace audit number", "n6"),
    _f(12, "Time, local transaction (hhmmss)", "n6"),
    _f(13, "Date, local transaction (MMDD)", "n4"),
    _f(14, "Date, expiration (YYMM)", "n4"),
    _f(15, "Date, settlement (MMDD)", "n4"),
    _f(22, "POS entry mode", "n3", "right0", note="[M] left-aligned: 051 -> 05 10"),
    _f(23, "Card sequence number", "n3", "left0"),
    _f(25, "POS condition code", "n2"),
    _f(26, "POS PIN capture code", "n2"),
    _f(32, "Acquiring institution ID", "n..11", "right0"),
    _f(35, "Track 2 data", "z..37", "rightF", note="separator '=' sent as nibble D; [M] F pad"),
    _f(36, "Track 3 data", "z...104", "rightF", note="[M] F pad"),
    _f(37, "Retrieval reference number", "an12"),
    _f(38, "Authorization ID response", "an6"),
    _f(39, "Response code", "an2"),
    _f(41, "Card acceptor terminal ID", "ans8"),
    _f(42, "Card acceptor ID (merchant)", "ans15"),
    _f(44, "Additional response data (issuer/acquirer)", "ans..25"),
    _f(48, "Additional data, private", "n...322", "right0"),
    _f(49, "Currency code, transaction", "an3"),
    _f(52, "PIN data (ISO 9564 format 0)", "b8"),
    _f(53, "Security related control information", "n16"),
    _f(54, "Balance amount", "an...20", note="[M] an...020"),
    _f(55, "ICC system related data", "b...255"),
    _f(60, "Reserved private: type, batch, network code", "n...17", "right0",
       note="[M] 60.1 n2 type, 60.2 n6 batch, 60.3 n3 network code, 60.4 n1, 60.5 n1"),
    _f(61, "Original message data", "n...29", "right0", note="batch n6, trace n6, date n4"),
    _f(62, "Reserved private: keys / terminal data", "b...512",
       note="[M] binary; sign-on response carries the PIK/MAK(/TDK) under the TMK with KCVs"),
    _f(63, "Reserved private: operator / card organisation", "ans...163"),
    _f(64, "Message authentication code", "b8", note="CUP ECB MAC, 8 ASCII hex characters"),
)

# --- switch: acquirer <-> CUPS <-> issuer ----------------------------------------------------
# All [M] unless noted: field formats follow ISO 8583:1987 as CUPS uses them, text in ASCII.
_SWITCH_FIELDS: tuple[FieldDef, ...] = (
    _f(2, "Primary account number", "n..19"),
    _f(3, "Processing code", "n6"),
    _f(4, "Amount, transaction (fen)", "n12"),
    _f(5, "Amount, settlement", "n12"),
    _f(6, "Amount, cardholder billing", "n12"),
    _f(7, "Transmission date and time (MMDDhhmmss)", "n10"),
    _f(9, "Conversion rate, settlement", "n8"),
    _f(10, "Conversion rate, cardholder billing", "n8"),
    _f(11, "System trace audit number", "n6"),
    _f(12, "Time, local transaction (hhmmss)", "n6"),
    _f(13, "Date, local transaction (MMDD)", "n4"),
    _f(14, "Date, expiration (YYMM)", "n4"),
    _f(15, "Date, settlement (MMDD)", "n4"),
    _f(16, "Date, conversion", "n4"),
    _f(18, "Merchant type (MCC)", "n4"),
    _f(19, "Acquiring institution country code", "n3"),
    _f(22, "POS entry mode", "n3"),
    _f(23, "Card sequence number", "n3"),
    _f(25, "POS condition code", "n2"),
    _f(26, "POS PIN capture code", "n2"),
    _f(28, "Amount, transaction fee (x+n8)", "ans9", note="[M] C/D sign + 8 digits"),
    _f(32, "Acquiring institution ID", "n..11"),
    _f(33, "Forwarding institution ID", "n..11"),
    _f(35, "Track 2 data", "z..37"),
    _f(36, "Track 3 data", "z...104"),
    _f(37, "Retrieval reference number", "an12"),
    _f(38, "Authorization ID response", "an6"),
    _f(39, "Response code", "an2"),
    _f(41, "Card acceptor terminal ID", "ans8"),
    _f(42, "Card acceptor ID (merchant)", "ans15"),
    _f(43, "Card acceptor name/location", "ans40", encoding="gbk", note="[M] GBK for Chinese names"),
    _f(44, "Additional response data", "ans..25"),
    _f(45, "Track 1 data", "ans..79"),
    _f(48, "Additional data, private", "ans...512"),
    _f(49, "Currency code, transaction", "an3"),
    _f(50, "Currency code, settlement", "an3"),
    _f(51, "Currency code, cardholder billing", "an3"),
    _f(52, "PIN data", "b8"),
    _f(53, "Security related control information", "n16"),
    _f(54, "Additional amounts", "an...40"),
    _f(55, "ICC system related data", "b...255"),
    _f(57, "Additional data, private (national)", "ans...100"),
    _f(59, "Reserved (national)", "ans...600"),
    _f(60, "Reserved private (CUPS self-defined)", "ans...100"),
    _f(61, "Cardholder authentication information", "ans...200"),
    _f(62, "Switching data", "ans...200"),
    _f(63, "Financial network data", "ans...512"),
    _f(70, "Network management information code", "n3"),
    _f(90, "Original data elements", "n42",
       note="MTI n4, STAN n6, transmission date-time n10, acquirer n11, forwarder n11"),
    _f(96, "Message security code", "b8"),
    _f(100, "Receiving institution ID", "n..11"),
    _f(102, "Account identification 1", "ans..28"),
    _f(103, "Account identification 2", "ans..28"),
    _f(104, "Transaction and service information", "ans...512"),
    _f(121, "CUPS reserved", "ans...100"),
    _f(122, "Acquiring institution reserved", "ans...100"),
    _f(123, "Issuer institution reserved", "ans...100"),
    _f(128, "Message authentication code", "b8", note="[M] X9.19 (16-byte MAK) / X9.9 (8-byte) over the MAB"),
)

FIELDS: dict[Dialect, dict[int, FieldDef]] = {
    "cup-pos": {f.number: f for f in _CUP_POS_FIELDS},
    "switch": {f.number: f for f in _SWITCH_FIELDS},
}
"""Field dictionary per dialect, keyed by field number."""

MAC_FIELD: dict[Dialect, int] = {"cup-pos": 64, "switch": 128}

POS_TPDU_LEN = 5
POS_HEADER_LEN = 6
CUPS_HEADER_LEN = 46
HEADER_LEN: dict[Dialect, int] = {"cup-pos": POS_TPDU_LEN + POS_HEADER_LEN, "switch": CUPS_HEADER_LEN}
"""Bytes in front of the MTI: TPDU + POS header, or the CUPS header."""


class UndefinedFieldError(Exception):
    """Raised by a dialect spec for a field the dialect does not define (caught by the codec)."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(key)


class DialectSpec(dict):
    """A pyiso8583 spec that raises :class:`UndefinedFieldError` for an undefined field.

    pyiso8583 looks fields up with ``spec[key]``; a bitmap bit for a field the dialect does not
    define (or a secondary bitmap in the 64-bit ``cup-pos`` dialect) must end as a typed
    :class:`~paylab.lab.protocol.errors.Iso8583Error`, not a ``KeyError``.
    """

    def __missing__(self, key: str) -> Any:
        raise UndefinedFieldError(key)


def _pyiso_field(d: FieldDef, dialect: Dialect) -> dict[str, Any]:
    """The pyiso8583 field spec of one :class:`FieldDef`."""
    bcd = dialect == "cup-pos"
    len_type = {"fixed": 0, "LLVAR": 1 if bcd else 2, "LLLVAR": 2 if bcd else 3}[d.length]
    spec: dict[str, Any] = {
        "len_enc": "bcd" if bcd else "ascii",
        "len_type": len_type,
        "max_len": d.max_len,
        "desc": d.name,
    }
    if d.binary:
        spec["data_enc"] = "b"
    elif d.numeric and bcd:
        spec["data_enc"] = "b"
        spec["len_count"] = "nibbles"
        if d.pad == "right0":
            spec["right_pad"] = "0"
        elif d.pad == "rightF":
            spec["right_pad"] = "F"
        else:
            spec["left_pad"] = "0"
    else:
        spec["data_enc"] = d.encoding
    return spec


def _build_spec(dialect: Dialect) -> DialectSpec:
    bcd = dialect == "cup-pos"
    fixed_b = {"len_enc": "b", "len_type": 0}
    spec = DialectSpec(
        h={"data_enc": "b", **fixed_b, "max_len": HEADER_LEN[dialect],
           "desc": "TPDU + POS header" if bcd else "CUPS header"},
        t={"data_enc": "b" if bcd else "ascii", **fixed_b, "max_len": 2 if bcd else 4,
           "desc": "Message type indicator"},
        p={"data_enc": "b", **fixed_b, "max_len": 8, "desc": "Primary bitmap"},
    )
    if not bcd:
        spec["1"] = {"data_enc": "b", **fixed_b, "max_len": 8, "desc": "Secondary bitmap"}
    for number, d in FIELDS[dialect].items():
        spec[str(number)] = _pyiso_field(d, dialect)
    return spec


SPECS: dict[Dialect, dict] = {d: _build_spec(d) for d in DIALECTS}
"""pyiso8583 specs per dialect (``h`` = TPDU+header or CUPS header, ``t`` = MTI, ``p`` = bitmap)."""


def check_dialect(dialect: str) -> Dialect:
    """Return ``dialect`` if known, else raise ``ValueError`` naming the known ones."""
    if dialect not in DIALECTS:
        raise ValueError(f"unknown ISO 8583 dialect {dialect!r} (known: {', '.join(DIALECTS)})")
    return dialect  # type: ignore[return-value]


def field_label(key: str | int) -> str:
    """Human name of a pyiso8583 field key for error messages: ``field 35``, ``MTI``, ``bitmap``."""
    key = str(key)
    return {"h": "header", "t": "MTI", "p": "bitmap", "1": "secondary bitmap"}.get(key, f"field {key}")
