"""PBOC 3.0 card profiles: what one emulated payment card is personalised with, loaded from YAML.

A profile is *issuer input* to data preparation (:func:`paylab.lab.protocol.cps.prepare_pboc`): the
application (AID, label, priority), the account (PAN, PSN, dates, currency, kind), the processing
data (AIP, PDOL, CDOL1/2, CVN, algorithm, CTQ), the e-cash and card-risk limits, the offline PIN and
the keys. The AFL is not a profile field: it follows from where data preparation places the records
(:func:`paylab.lab.protocol.cps.record_layout`).

Every key in a profile is a **TEST KEY**: a profile must say ``test_keys: true`` or it is refused.
Keys are either the card's own master keys (``mk_ac``/``mk_mac``/``mk_enc``) or the issuer master keys
(``imk_ac``/``imk_mac``/``imk_enc``) from which the card keys are derived with EMV Option A (SM4 form
for SM4 profiles; :func:`paylab.lab.protocol.crypto.emv.derive_icc_master_key`). The backend verifies
cryptograms with the issuer form, so bundled profiles use it.

YAML layout (top-level fields; ``keys``, ``ecash``, ``card_risk`` and ``pin`` are mappings)::

    test_keys: true                  # required: every key below is a TEST KEY
    aid: A000000333010101            # default by account kind
    label: PBOC DEBIT
    pan: "6228488800000010"          # quoted, 12-19 digits, Luhn-valid
    psn: "01"
    expiry: "301231"                 # YYMMDD
    effective: "250101"
    account: debit+ecash             # ecash | debit+ecash | credit+ecash
    algorithm: sm4                   # 3des | sm4
    keys: {imk_ac: ..., imk_mac: ..., imk_enc: ...}
    ecash: {balance: 38787, balance_limit: 100000, single_limit: 50000, reset_threshold: 10000}

Amounts are integers in fen (minor units, n12). Hex fields are quoted strings. Errors are one line and
name the field: ``ProfileError("profile field 'pan': not 12-19 digits")``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any, Literal, NoReturn

from .protocol import dol
from .protocol.crypto import emv
from .protocol.errors import DolError
from .yaml_fields import FieldError, FieldReader, parse_yaml, read_text

AccountKind = Literal["ecash", "debit+ecash", "credit+ecash"]
ACCOUNT_KINDS: tuple[str, ...] = ("ecash", "debit+ecash", "credit+ecash")

DEFAULT_AIDS: Mapping[str, str] = {
    "debit+ecash": "A000000333010101",   # [S: brief section 1 trace]
    "credit+ecash": "A000000333010102",  # [S: brief section 1, AIDs]
    "ecash": "A000000333010106",         # [M: brief section 1, AIDs]
}
DEFAULT_LABELS: Mapping[str, str] = {"debit+ecash": "PBOC DEBIT", "credit+ecash": "PBOC CREDIT", "ecash": "PBOC ECASH"}

PDOL_BRIEF = "9F66049F02069F03069F1A0295055F2A029A039C019F3704"
"""The PDOL of the brief's trace (section 1): TTQ, amounts, country, TVR, currency, date, type, UN."""
PDOL_SM_SUFFIX = "DF6901"
"""DF69 (SM algorithm support indicator) appended to SM4 profiles' default PDOL [S: brief section 1]."""
DEFAULT_CDOL1 = "9F02069F03069F1A0295055F2A029A039C019F37049F21039F4E14"
"""AC input tags (brief section 2) plus transaction time and merchant name for the log [M]."""
DEFAULT_CDOL2 = "8A029F02069F03069F1A0295055F2A029A039C019F3704"
"""Authorisation response code then the AC input tags [M]."""
DEFAULT_LOG_FORMAT = "9A039F21039F02069F03069F1A025F2A029F4E149C019F3602"
"""Transaction log format, tag 9F4F [M: common PBOC value]."""
DEFAULT_LOAD_LOG_FORMAT = "9A039F21039F1A029F4E149F3602"
"""Load log format, tag DF4F [M]; each load record also starts with P1 P2 and the balances (see cps)."""

AC_TERMINAL_TAGS: tuple[tuple[int, int], ...] = tuple(
    (tag, length) for tag, length in emv.AC_INPUT_TAGS if tag not in (0x82, 0x9F36)
)
"""The terminal data of the AC input (brief section 2): a PDOL and CDOL1 must ask for all of them."""

_HEX_RE = re.compile(r"[0-9A-Fa-f]*")
_DIGITS_RE = re.compile(r"[0-9]+")
MAX_AMOUNT = 10**12 - 1


class ProfileError(FieldError):
    """A card profile is invalid: ``field`` names the profile field, ``problem`` says what is wrong.

    ``str()`` is one line: ``profile field 'pan': not 12-19 digits`` (plus ``(in <file>)`` when the
    profile came from a file).
    """

    kind = "profile"


# -- the profile -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EcashLimits:
    """E-cash parameters, amounts in fen: balance 9F79, balance limit 9F77, single-transaction limit
    9F78, reset threshold 9F6D [M], issuer authorisation code 9F74 [M]."""

    balance: int
    balance_limit: int
    single_limit: int
    reset_threshold: int
    issuer_auth_code: str = "ECC001"


@dataclass(frozen=True)
class CardRisk:
    """Card risk management for the contact debit/credit path: consecutive offline transactions before
    the card asks to go online (lower, tag 9F14) and before it declines offline (upper, tag 9F23)."""

    lower_consecutive_offline: int = 3
    upper_consecutive_offline: int = 5


@dataclass(frozen=True, repr=False)
class PinSettings:
    """Offline plaintext PIN (TEST value) and its try limit. ``repr`` hides the PIN."""

    offline_pin: str
    try_limit: int = 3

    def __repr__(self) -> str:
        return f"PinSettings(offline_pin=<hidden>, try_limit={self.try_limit})"


@dataclass(frozen=True, repr=False)
class ProfileKeys:
    """TEST KEYS of a profile: card master keys, or issuer master keys for Option A derivation."""

    card: emv.CardKeys | None = None
    issuer: emv.IssuerKeys | None = None

    def __repr__(self) -> str:
        return f"ProfileKeys(card={self.card!r}, issuer={self.issuer!r})"


@dataclass(frozen=True)
class PbocProfile:
    """One PBOC card profile (validated); see the module docstring for the YAML form.

    Byte-valued fields hold the encoded value (``aip`` = 2 bytes, ``pdol`` = the DOL bytes, ...).
    """

    name: str
    aid: bytes
    label: str
    pan: str
    psn: str
    expiry: str
    effective: str
    account: AccountKind
    algorithm: emv.Alg
    keys: ProfileKeys
    ecash: EcashLimits
    priority: int = 1
    preferred_name: str | None = None
    language: str = "zh"
    issuer_code_table: int = 1
    service_code: str = "220"
    currency: int = 156
    country: int = 156
    cardholder_name: str | None = None
    cvn: int = 0x01
    dki: int = 0x01
    aip: bytes = b"\x7c\x00"
    aip_contactless: bytes = b"\x7c\x00"
    ctq: bytes = b"\x00\x00"
    pdol: bytes = bytes.fromhex(PDOL_BRIEF)
    contact_pdol: bytes = b""
    cdol1: bytes = bytes.fromhex(DEFAULT_CDOL1)
    cdol2: bytes = bytes.fromhex(DEFAULT_CDOL2)
    auc: bytes = b"\xff\x00"
    iac_default: bytes = bytes.fromhex("D84000A800")
    iac_denial: bytes = bytes.fromhex("0010000000")
    iac_online: bytes = bytes.fromhex("D84004F800")
    cvm_list: bytes | None = None
    app_version: bytes = b"\x00\x30"
    log_format: bytes = bytes.fromhex(DEFAULT_LOG_FORMAT)
    load_log_format: bytes = bytes.fromhex(DEFAULT_LOAD_LOG_FORMAT)
    card_risk: CardRisk = field(default_factory=CardRisk)
    pin: PinSettings | None = None
    source: Path | None = None

    # -- derived values ----------------------------------------------------------------------------
    @property
    def algorithm_id(self) -> int:
        """IAD byte 8: 01 = 3DES, 04 = SM4 ([M], :data:`emv.ALGORITHM_IDS`)."""
        return {alg: ident for ident, alg in emv.ALGORITHM_IDS.items()}[self.algorithm]

    @property
    def currency_code(self) -> bytes:
        """The application currency as n4 (``0156``), tags 9F51 / 9F42."""
        return bytes.fromhex(f"{self.currency:04d}")

    @property
    def country_code(self) -> bytes:
        """The issuer country as n4 (``0156``), tag 5F28."""
        return bytes.fromhex(f"{self.country:04d}")

    @property
    def track2(self) -> bytes:
        """Track 2 equivalent data (tag 57): PAN ``D`` YYMM service code, discretionary zeros, F pad."""
        digits = f"{self.pan}D{self.expiry[:4]}{self.service_code}00000000000"
        if len(digits) % 2:
            digits += "F"
        return bytes.fromhex(digits)

    @property
    def pan_bcd(self) -> bytes:
        """Tag 5A (cn): the PAN padded with F to whole bytes."""
        digits = self.pan + ("F" if len(self.pan) % 2 else "")
        return bytes.fromhex(digits)

    @property
    def effective_cvm_list(self) -> bytes:
        """Tag 8E: the profile's CVM list, or a default: offline plaintext PIN (if the card has one),
        online PIN, signature, no CVM; X = Y = 0 (EMV Book 3 10.5 and Annex C3)."""
        if self.cvm_list is not None:
            return self.cvm_list
        rules = (b"\x41\x03" if self.pin else b"") + b"\x42\x03\x1e\x03\x1f\x00"
        return bytes(8) + rules

    def card_keys(self) -> emv.CardKeys:
        """The card's MK-AC/MAC/ENC: as given, or derived from the issuer keys (Option A / SM4)."""
        if self.keys.card is not None:
            return self.keys.card
        assert self.keys.issuer is not None
        return self.keys.issuer.card_keys(self.pan, self.psn)

    @property
    def issuer_keys(self) -> emv.IssuerKeys | None:
        """The issuer master keys, when the profile gives them (what the backend verifies with)."""
        return self.keys.issuer

    @property
    def online_capable(self) -> bool:
        """False for a pure e-cash account: it never goes online just because e-cash is short."""
        return self.account != "ecash"


# -- loading and validation --------------------------------------------------------------------------

_TOP_FIELDS = {
    "test_keys", "name", "description", "aid", "label", "preferred_name", "priority", "language",
    "issuer_code_table", "pan", "psn", "expiry", "effective", "service_code", "currency", "country",
    "cardholder_name", "account", "algorithm", "cvn", "dki", "aip", "aip_contactless", "ctq", "pdol",
    "contact_pdol", "cdol1", "cdol2", "auc", "iac_default", "iac_denial", "iac_online", "cvm_list",
    "app_version", "log_format", "load_log_format", "ecash", "card_risk", "pin", "keys",
}


class _Reader(FieldReader):
    """Typed access to one mapping of the YAML document; every failure is a :class:`ProfileError`."""

    def __init__(self, raw: Mapping[str, Any], prefix: str, source: str | None, allowed: set[str]) -> None:
        self.raw = raw
        self.prefix = prefix
        self.source = source
        self.check_known(raw, allowed)

    def name(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def fail(self, key: str, problem: str) -> NoReturn:
        raise ProfileError(self.name(key), problem, source=self.source)

    def has(self, key: str) -> bool:
        return self.raw.get(key) is not None

    def text(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self.raw.get(key)
        if value is None:
            if required:
                self.fail(key, "missing")
            return default
        return self.check_text(value, key)

    def hex(self, key: str, default: str | None = None, *, lengths: tuple[int, ...] | None = None,
            required: bool = False) -> bytes | None:
        value = self.text(key, default, required=required)
        if value is None:
            return None
        compact = "".join(value.split())
        if not _HEX_RE.fullmatch(compact) or len(compact) % 2:
            self.fail(key, f"not an even number of hex digits: {value!r}")
        raw = bytes.fromhex(compact)
        if lengths is not None and len(raw) not in lengths:
            want = " or ".join(str(n) for n in lengths)
            self.fail(key, f"must be {want} bytes, got {len(raw)}")
        return raw

    def integer(self, key: str, default: int | None = None, *, low: int = 0, high: int = MAX_AMOUNT,
                required: bool = False) -> int:
        value = self.raw.get(key)
        if value is None:
            if required or default is None:
                self.fail(key, "missing")
            return default  # type: ignore[return-value]
        return self.check_integer(value, key, low=low, high=high)

    def hex_byte(self, key: str, default: int) -> int:
        raw = self.hex(key, f"{default:02X}", lengths=(1,))
        assert raw is not None
        return raw[0]

    def mapping(self, key: str, allowed: set[str], *, required: bool = False) -> _Reader | None:
        value = self.raw.get(key)
        if value is None:
            if required:
                self.fail(key, "missing")
            return None
        return _Reader(self.check_mapping(value, key), f"{self.name(key)}.", self.source, allowed)


def luhn_valid(digits: str) -> bool:
    """ISO/IEC 7812-1 Annex B check digit test."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _yymmdd(r: _Reader, key: str, *, required: bool = True) -> str:
    value = r.text(key, required=required)
    assert value is not None
    if not re.fullmatch(r"[0-9]{6}", value):
        r.fail(key, f"not a YYMMDD date: {value!r}")
    try:
        date(2000 + int(value[:2]), int(value[2:4]), int(value[4:6]))
    except ValueError:
        r.fail(key, f"not a calendar date: {value!r}")
    return value


def _ascii(r: _Reader, key: str, default: str | None, max_len: int, *, required: bool = False) -> str | None:
    value = r.text(key, default, required=required)
    if value is None:
        return None
    if not value or len(value) > max_len or not all(0x20 <= ord(c) < 0x7F for c in value):
        r.fail(key, f"must be 1-{max_len} printable ASCII characters")
    return value


def _dol(r: _Reader, key: str, default: str, *, must_have: tuple[tuple[int, int], ...] = ()) -> bytes:
    raw = r.hex(key, default)
    assert raw is not None
    try:
        entries = dol.parse_dol(raw)
    except DolError as exc:
        r.fail(key, f"not a data object list ({exc})")
    asked = {e.tag: e.length for e in entries}
    if len(asked) != len(entries):
        r.fail(key, "a tag appears twice")
    for tag, length in must_have:
        if asked.get(tag) != length:
            r.fail(key, f"must ask for tag {tag:X} with length {length} (AC input, brief section 2)")
    return raw


def _numeric_code(r: _Reader, key: str, default: int) -> int:
    value = r.raw.get(key, default)
    if isinstance(value, str) and _DIGITS_RE.fullmatch(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 999:
        r.fail(key, f"must be a 3-digit ISO numeric code, got {value!r}")
    return value


def _keys(r: _Reader, algorithm: emv.Alg) -> ProfileKeys:
    names = {"derivation", "imk_ac", "imk_mac", "imk_enc", "mk_ac", "mk_mac", "mk_enc"}
    k = r.mapping("keys", names, required=True)
    assert k is not None
    issuer = [n for n in ("imk_ac", "imk_mac", "imk_enc") if k.has(n)]
    card = [n for n in ("mk_ac", "mk_mac", "mk_enc") if k.has(n)]
    derivation = k.text("derivation", "option-a" if issuer else "none")
    if issuer and card:
        k.fail("mk_ac", "give either issuer master keys (imk_*) or card master keys (mk_*), not both")
    if issuer:
        if derivation != "option-a":
            k.fail("derivation", f"issuer master keys need derivation 'option-a', got {derivation!r}")
        values = [k.hex(n, lengths=(16,), required=True) for n in ("imk_ac", "imk_mac", "imk_enc")]
        return ProfileKeys(issuer=emv.IssuerKeys(*values, alg=algorithm))  # type: ignore[arg-type]
    if card:
        if derivation != "none":
            k.fail("derivation", f"card master keys take derivation 'none', got {derivation!r}")
        values = [k.hex(n, lengths=(16,), required=True) for n in ("mk_ac", "mk_mac", "mk_enc")]
        return ProfileKeys(card=emv.CardKeys(*values, alg=algorithm))  # type: ignore[arg-type]
    k.fail("imk_ac", "missing: give imk_ac/imk_mac/imk_enc (Option A) or mk_ac/mk_mac/mk_enc")
    raise AssertionError  # unreachable


def _ecash(r: _Reader) -> EcashLimits:
    e = r.mapping("ecash", {"balance", "balance_limit", "single_limit", "reset_threshold", "issuer_auth_code"},
                  required=True)
    assert e is not None
    limit = e.integer("balance_limit", required=True)
    balance = e.integer("balance", required=True)
    single = e.integer("single_limit", required=True)
    reset = e.integer("reset_threshold", 0)
    if balance > limit:
        e.fail("balance", f"{balance} exceeds the balance limit {limit}")
    if single > limit:
        e.fail("single_limit", f"{single} exceeds the balance limit {limit}")
    if reset > limit:
        e.fail("reset_threshold", f"{reset} exceeds the balance limit {limit}")
    code = _ascii(e, "issuer_auth_code", "ECC001", 6)
    assert code is not None
    if len(code) != 6:
        e.fail("issuer_auth_code", "must be 6 characters (tag 9F74, ans6)")
    return EcashLimits(balance, limit, single, reset, code)


def _card_risk(r: _Reader) -> CardRisk:
    c = r.mapping("card_risk", {"lower_consecutive_offline", "upper_consecutive_offline"})
    if c is None:
        return CardRisk()
    lower = c.integer("lower_consecutive_offline", 3, high=255)
    upper = c.integer("upper_consecutive_offline", 5, high=255)
    if lower > upper:
        c.fail("lower_consecutive_offline", f"{lower} exceeds the upper limit {upper}")
    return CardRisk(lower, upper)


def _pin(r: _Reader) -> PinSettings | None:
    p = r.mapping("pin", {"offline_pin", "try_limit"})
    if p is None:
        return None
    pin = p.text("offline_pin", required=True)
    assert pin is not None
    if not re.fullmatch(r"[0-9]{4,12}", pin):
        p.fail("offline_pin", "must be 4-12 digits")
    return PinSettings(pin, p.integer("try_limit", 3, low=1, high=15))


def profile_from_mapping(raw: Mapping[str, Any], *, name: str = "profile", source: Path | None = None) -> PbocProfile:
    """Validate a parsed YAML document into a :class:`PbocProfile` (:class:`ProfileError` on the first problem)."""
    where = source.name if source is not None else None
    if not isinstance(raw, Mapping):
        raise ProfileError("(document)", f"must be a mapping, got {type(raw).__name__}", source=where)
    r = _Reader(raw, "", where, _TOP_FIELDS)
    if raw.get("test_keys") is not True:
        r.fail("test_keys", "must be true: profiles carry TEST KEYS only, and must say so")
    account = r.check_choice(r.text("account", required=True), "account", ACCOUNT_KINDS)
    algorithm = r.text("algorithm", required=True)
    if algorithm not in ("3des", "sm4"):
        r.fail("algorithm", f"must be '3des' or 'sm4', got {algorithm!r}")

    aid = r.hex("aid", DEFAULT_AIDS[account])  # type: ignore[index]
    assert aid is not None
    if not 5 <= len(aid) <= 16:
        r.fail("aid", f"must be 5-16 bytes, got {len(aid)}")
    if not aid.startswith(bytes.fromhex("A000000333")):
        r.fail("aid", "must start with the UnionPay RID A000000333 (a PBOC application)")
    pan = r.text("pan", required=True)
    assert pan is not None
    if not re.fullmatch(r"[0-9]{12,19}", pan):
        r.fail("pan", "not 12-19 digits")
    if not luhn_valid(pan):
        r.fail("pan", "Luhn check digit is wrong")
    psn = r.text("psn", "00")
    assert psn is not None
    if not re.fullmatch(r"[0-9]{2}", psn):
        r.fail("psn", "must be 2 digits")
    expiry = _yymmdd(r, "expiry")
    effective = _yymmdd(r, "effective")
    if effective >= expiry:
        r.fail("effective", f"{effective} is not before the expiry {expiry}")
    service_code = r.text("service_code", "220")
    assert service_code is not None
    if not re.fullmatch(r"[0-9]{3}", service_code):
        r.fail("service_code", "must be 3 digits")

    pdol_default = PDOL_BRIEF + (PDOL_SM_SUFFIX if algorithm == "sm4" else "")
    pdol = _dol(r, "pdol", pdol_default, must_have=((0x9F66, 4), *AC_TERMINAL_TAGS))
    contact_pdol = _dol(r, "contact_pdol", "")
    cdol1 = _dol(r, "cdol1", DEFAULT_CDOL1, must_have=AC_TERMINAL_TAGS)
    cdol2 = _dol(r, "cdol2", DEFAULT_CDOL2)
    log_format = _dol(r, "log_format", DEFAULT_LOG_FORMAT)
    load_log_format = _dol(r, "load_log_format", DEFAULT_LOAD_LOG_FORMAT)
    cvm_list = r.hex("cvm_list")
    if cvm_list is not None and (len(cvm_list) < 10 or len(cvm_list) % 2):
        r.fail("cvm_list", "must be X(4) Y(4) followed by 2-byte rules")

    cvn = r.hex_byte("cvn", 0x01)
    if cvn not in emv.CVN_PROFILES:
        r.fail("cvn", f"{cvn:02X} is not a known CVN ({', '.join(f'{c:02X}' for c in emv.CVN_PROFILES)})")
    if emv.profile_for_cvn(cvn).session_method != "pboc":
        r.fail("cvn", f"{cvn:02X} is not a PBOC CVN (the card derives PBOC session keys)")

    return PbocProfile(
        name=str(raw.get("name") or name),
        aid=aid,
        label=_ascii(r, "label", DEFAULT_LABELS[account], 16),  # type: ignore[index,arg-type]
        preferred_name=_ascii(r, "preferred_name", None, 16),
        priority=r.integer("priority", 1, low=1, high=15),
        language=_language(r),
        issuer_code_table=r.integer("issuer_code_table", 1, low=1, high=10),
        pan=pan,
        psn=psn,
        expiry=expiry,
        effective=effective,
        service_code=service_code,
        currency=_numeric_code(r, "currency", 156),
        country=_numeric_code(r, "country", 156),
        cardholder_name=_ascii(r, "cardholder_name", None, 26),
        account=account,  # type: ignore[arg-type]
        algorithm=algorithm,  # type: ignore[arg-type]
        keys=_keys(r, algorithm),  # type: ignore[arg-type]
        ecash=_ecash(r),
        cvn=cvn,
        dki=r.hex_byte("dki", 0x01),
        aip=r.hex("aip", "7C00", lengths=(2,)),  # type: ignore[arg-type]
        aip_contactless=r.hex("aip_contactless", r.text("aip", "7C00"), lengths=(2,)),  # type: ignore[arg-type]
        ctq=r.hex("ctq", "0000", lengths=(2,)),  # type: ignore[arg-type]
        pdol=pdol,
        contact_pdol=contact_pdol,
        cdol1=cdol1,
        cdol2=cdol2,
        auc=r.hex("auc", "FF00", lengths=(2,)),  # type: ignore[arg-type]
        iac_default=r.hex("iac_default", "D84000A800", lengths=(5,)),  # type: ignore[arg-type]
        iac_denial=r.hex("iac_denial", "0010000000", lengths=(5,)),  # type: ignore[arg-type]
        iac_online=r.hex("iac_online", "D84004F800", lengths=(5,)),  # type: ignore[arg-type]
        cvm_list=cvm_list,
        app_version=r.hex("app_version", "0030", lengths=(2,)),  # type: ignore[arg-type]
        log_format=log_format,
        load_log_format=load_log_format,
        card_risk=_card_risk(r),
        pin=_pin(r),
        source=source,
    )


def _language(r: _Reader) -> str:
    value = r.text("language", "zh")
    assert value is not None
    if not re.fullmatch(r"([a-z]{2}){1,4}", value):
        r.fail("language", "must be 1-4 ISO 639-1 codes, e.g. 'zh' or 'zhen'")
    return value


def load_profile(path_or_text: str | Path) -> PbocProfile:
    """Load and validate a profile from a file (a :class:`~pathlib.Path`, or a one-line ``str`` naming
    a ``.yaml``/``.yml`` file or an existing file) or from YAML text (any other ``str``)."""
    source: Path | None = None
    if isinstance(path_or_text, Path) or (
        isinstance(path_or_text, str) and "\n" not in path_or_text
        and (path_or_text.endswith((".yaml", ".yml")) or Path(path_or_text).is_file())
    ):
        source = Path(path_or_text)
        text, name = read_text(source, ProfileError), source.stem
    elif isinstance(path_or_text, str):
        text, name = path_or_text, "profile"
    else:
        raise ProfileError("(document)", f"expected a path or YAML text, got {type(path_or_text).__name__}")
    raw = parse_yaml(text, ProfileError, source.name if source else None)
    return profile_from_mapping(raw, name=name, source=source)


def bundled_profiles() -> dict[str, Path]:
    """The profiles shipped in ``paylab.fixtures`` (``fixtures/profiles/*.yaml``), by file stem."""
    folder = Path(str(resources.files("paylab.fixtures"))) / "profiles"
    return {path.stem: path for path in sorted(folder.glob("*.yaml"))}


def load_bundled(name: str) -> PbocProfile:
    """Load one bundled profile by name (e.g. ``"pboc_debit_ecash_sm4"``); :class:`ProfileError` if unknown."""
    profiles = bundled_profiles()
    if name not in profiles:
        raise ProfileError("(name)", f"no bundled profile {name!r} (have: {', '.join(profiles)})")
    return load_profile(profiles[name])
