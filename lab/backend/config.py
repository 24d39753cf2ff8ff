"""Backend configuration: one YAML file with documented defaults -> :class:`BackendConfig`.

``load_config(None)`` gives the defaults below; ``load_config(path)`` reads a YAML file whose fields
replace the defaults field by field (a mapping merges, a list replaces); ``overrides`` is applied last
(nested mappings or dotted keys: ``{"ports.http": 8080, "state_dir": tmp_path}``). The shipped
``default_config.yaml`` beside this module spells the defaults out. Errors are one line and name the
field: ``ConfigError("config field 'issuers[1].bins[0]': not 6-8 digits")`` (plus ``(in <file>)``).

Every key in a configuration is a **TEST KEY** (terminal master keys, institution HMAC keys, and the
issuer master keys of the bundled card profiles): the document must say ``test_keys: true``.

Fields and defaults::

    test_keys: true            # required: every key in this file is a TEST KEY
    state_dir: null            # folder for the database, clearing files and logs;
                               #   null = $XDG_STATE_HOME/paylab/backend (~/.local/state/paylab/backend)
    database_url: null         # SQLAlchemy URL; null = sqlite:///<state_dir>/backend.db
                               #   PostgreSQL: postgresql+psycopg://user@host:port/db
    clearing_dir: null         # where the switch writes clearing files; null = <state_dir>/clearing
    host: 127.0.0.1            # address every listener binds to
    ports:                     # TCP ports; 0 = an ephemeral port chosen at start
      acquirer: 0              # acquirer host (POSP dialect, terminals connect here)
      switch: 0                # switch (CUPS dialect, the acquirer connects here)
      issuers: 0               # base port: issuer i (0-based, in list order) listens on issuers + i
      http: 0                  # FastAPI app (remote payment, TSMs, OTA gateway, /health)
    issuer_timeout_s: 2.0      # switch -> issuer response timeout; then 91 to the acquirer + reversal
    acquirer_id: "48020000"    # acquiring institution id (field 32), 8-11 digits
    remote_payment:
      otp_ttl_s: 300           # SMS OTP lifetime (domain brief section 7: about 5 minutes)
      otp_max_tries: 3         # wrong OTPs before the order is locked (brief: 3-5)
      nonce_window_s: 300      # SE-mode signed request: accepted clock skew / nonce memory
    issuers:                   # list; each issuer gets its own listener
      - name: bank-a           # [a-z0-9-], 1-32 characters; used in ledger account ids
        institution_id: "01028480001"   # 11 digits (CUPS header destination id)
        bins: ["622848"]       # 6-8 digits each; the switch routes by longest BIN prefix
        profiles: [pboc_debit_ecash_sm4, pboc_ecash_only_sm4]
                               # bundled profiles whose cards this issuer issues; their issuer
                               #   master keys (imk_*) are the issuer's keys; each PAN must match a BIN
        single_limit_fen: {}   # per-transaction limit by account kind, e.g. {debit: 200000, credit: 500000,
                               #   ecash: 100000} (ecash: loads); absent or 0 = none; over it -> 61
        accounts:              # omitted = one seed per profile PAN as below
          - {pan: "6228488800000010", kind: debit, balance_fen: 1000000, credit_limit_fen: 0,
             daily_limit_fen: 500000}
          - {pan: "6228488800000010", kind: ecash, balance_fen: 38787}
          - {pan: "6228488800000028", kind: ecash, balance_fen: 5000}
      - name: bank-b
        institution_id: "01021700002"
        bins: ["621700"]
        profiles: [pboc_credit_ecash_3des]
        accounts:
          - {pan: "6217009900000000014", kind: credit, balance_fen: 0, credit_limit_fen: 500000,
             daily_limit_fen: 300000}
          - {pan: "6217009900000000014", kind: ecash, balance_fen: 20000}
    terminals:                 # tid ans8, mid ans15, tmk = 16-byte TEST KEY (hex), name
      - {tid: PAYLAB01, mid: "898440154110001", tmk: "0123456789ABCDEFFEDCBA9876543210", name: ...}
      - {tid: PAYLAB02, mid: "898440154110002", tmk: "11111111111111112222222222222222", name: ...}
      - {tid: PAYLAB03, mid: "898440154110003", tmk: "33333333333333334444444444444444", name: ...}
    institutions:              # callers of the institution APIs (TSMs, MTPS): HMAC TEST keys
      - {name: bank-a, kind: bank, api_key_id: ak-test-bank-a, hmac_key: "<32 bytes hex>"}
      # bank-b (bank), unionpay (unionpay), operator-cm / operator-cu (operator), mtps (mtps);
      # kinds: bank | unionpay (SP-TSMs), operator | oem (handset maker) | se-issuer (SEI-TSMs), mtps

Account seeds (``issuers[].accounts[]``): ``kind`` is ``debit`` (a deposit account; ``balance_fen`` is
the opening balance, ``credit_limit_fen`` an overdraft), ``credit`` (``balance_fen`` must be 0,
``credit_limit_fen`` is the credit line) or ``ecash`` (the issuer's shadow of the card's e-cash
balance, ``balance_fen`` the opening e-cash balance; defaults to the profile's ``ecash.balance``).
``daily_limit_fen`` 0 means no daily limit. A PAN has at most one debit or credit seed and at most
one e-cash seed. When ``accounts`` is omitted, every profile PAN gets: debit+ecash -> debit
1,000,000 fen (daily limit 500,000) + e-cash; credit+ecash -> credit line 500,000 (daily limit
300,000) + e-cash; ecash -> e-cash only. Amounts are integers in fen (currency 156).
"""

from __future__ import annotations

import copy
import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn

from ..profiles import PbocProfile, ProfileError, load_bundled, luhn_valid
from ..protocol.crypto import emv
from ..yaml_fields import FieldError, FieldReader, parse_yaml, read_text

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "AccountSeed",
    "BackendConfig",
    "ConfigError",
    "InstitutionConfig",
    "IssuerConfig",
    "PortsConfig",
    "RemotePaymentConfig",
    "TerminalConfig",
    "default_state_dir",
    "load_config",
]

DEFAULT_CONFIG_FILE = Path(__file__).with_name("default_config.yaml")
"""The shipped YAML file that spells out the defaults (equal to ``load_config(None)``)."""

SeedKind = Literal["debit", "credit", "ecash"]
InstitutionKind = Literal["bank", "unionpay", "operator", "oem", "se-issuer", "mtps"]
SEED_KINDS: tuple[str, ...] = ("debit", "credit", "ecash")
INSTITUTION_KINDS: tuple[str, ...] = ("bank", "unionpay", "operator", "oem", "se-issuer", "mtps")
SE_ISSUER_KINDS: tuple[str, ...] = ("operator", "oem", "se-issuer")
"""Institutions that run an SEI-TSM: a mobile operator (SIM), a handset maker (eSE), an SE issuer (microSD)."""

MAX_AMOUNT = 10**12 - 1  # field 4 is n12 fen
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
_HEX_RE = re.compile(r"(?:[0-9A-Fa-f]{2})+")


class ConfigError(FieldError):
    """The configuration is invalid. ``str()`` is one line naming the field:
    ``config field 'issuers[1].bins[0]': not 6-8 digits`` (plus ``(in <file>)`` for a file)."""

    kind = "config"


# -- the configuration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PortsConfig:
    """TCP ports (0 = ephemeral). ``issuers`` is a base port: issuer i listens on ``issuers + i``."""

    acquirer: int = 0
    switch: int = 0
    issuers: int = 0
    http: int = 0

    def issuer_port(self, index: int) -> int:
        """The port of the issuer at ``index`` in :attr:`BackendConfig.issuers` (0 = ephemeral)."""
        return self.issuers + index if self.issuers else 0


@dataclass(frozen=True)
class RemotePaymentConfig:
    """Remote payment (domain brief section 7): OTP lifetime and tries, SE-mode nonce window."""

    otp_ttl_s: int = 300
    otp_max_tries: int = 3
    nonce_window_s: int = 300


@dataclass(frozen=True)
class AccountSeed:
    """One account an issuer opens at seed time for a card (see the module docstring)."""

    pan: str
    kind: SeedKind
    balance_fen: int = 0
    credit_limit_fen: int = 0
    daily_limit_fen: int = 0

    def __repr__(self) -> str:  # the PAN is cardholder data: never in logs
        from ..protocol.masking import mask_pan

        return (f"AccountSeed(pan={mask_pan(self.pan)!r}, kind={self.kind!r}, balance_fen={self.balance_fen}, "
                f"credit_limit_fen={self.credit_limit_fen}, daily_limit_fen={self.daily_limit_fen})")


@dataclass(frozen=True)
class IssuerConfig:
    """One issuer: its institution id, BINs, the bundled profiles of its cards and its account seeds."""

    name: str
    institution_id: str
    bins: list[str]
    profiles: list[str]
    accounts: list[AccountSeed]
    single_limit_fen: dict[str, int] = field(default_factory=dict)
    """Per-transaction limit by account kind (``debit``/``credit``: purchases, ``ecash``: loads); absent = none."""

    def single_limit(self, kind: str) -> int | None:
        """The single-transaction limit for an account of ``kind`` (fen), or None."""
        return self.single_limit_fen.get(kind)

    def load_profiles(self) -> dict[str, PbocProfile]:
        """The issuer's bundled profiles by name (loaded once per process)."""
        return {name: _bundled(name) for name in self.profiles}

    def issuer_keys(self, profile: str) -> emv.IssuerKeys:
        """The issuer master keys (TEST KEYS) the issuer verifies cards of ``profile`` with."""
        if profile not in self.profiles:
            raise KeyError(f"issuer {self.name!r} does not issue profile {profile!r}")
        keys = _bundled(profile).issuer_keys
        assert keys is not None  # checked by load_config
        return keys

    def owns_pan(self, pan: str) -> bool:
        """True when one of the issuer's BINs is a prefix of ``pan``."""
        return any(pan.startswith(b) for b in self.bins)


@dataclass(frozen=True, repr=False)
class TerminalConfig:
    """A POS terminal the acquirer knows: TID (ans8), MID (ans15), TMK (16-byte TEST KEY), name."""

    tid: str
    mid: str
    tmk: bytes
    name: str

    def __repr__(self) -> str:
        return (f"TerminalConfig(tid={self.tid!r}, mid={self.mid!r}, tmk=<TEST KEY {len(self.tmk)} bytes>, "
                f"name={self.name!r})")


@dataclass(frozen=True, repr=False)
class InstitutionConfig:
    """A caller of the institution APIs (TSM, MTPS hub): its API key id and HMAC TEST KEY."""

    name: str
    kind: InstitutionKind
    api_key_id: str
    hmac_key: bytes

    def __repr__(self) -> str:
        return (f"InstitutionConfig(name={self.name!r}, kind={self.kind!r}, api_key_id={self.api_key_id!r}, "
                f"hmac_key=<TEST KEY {len(self.hmac_key)} bytes>)")


@dataclass(frozen=True)
class BackendConfig:
    """The whole backend configuration (validated); see the module docstring for every field."""

    state_dir: Path
    database_url: str
    clearing_dir: Path
    host: str = "127.0.0.1"
    ports: PortsConfig = field(default_factory=PortsConfig)
    issuer_timeout_s: float = 2.0
    acquirer_id: str = "48020000"
    remote_payment: RemotePaymentConfig = field(default_factory=RemotePaymentConfig)
    issuers: list[IssuerConfig] = field(default_factory=list)
    terminals: list[TerminalConfig] = field(default_factory=list)
    institutions: list[InstitutionConfig] = field(default_factory=list)

    def issuer(self, name: str) -> IssuerConfig:
        """The issuer called ``name`` (:class:`KeyError` if none)."""
        for issuer in self.issuers:
            if issuer.name == name:
                return issuer
        raise KeyError(f"no issuer {name!r}")

    def issuer_for_pan(self, pan: str) -> IssuerConfig | None:
        """The issuer whose BIN is the longest prefix of ``pan`` (switch routing), or None."""
        best: tuple[int, IssuerConfig] | None = None
        for issuer in self.issuers:
            for b in issuer.bins:
                if pan.startswith(b) and (best is None or len(b) > best[0]):
                    best = (len(b), issuer)
        return best[1] if best else None

    def terminal(self, tid: str) -> TerminalConfig | None:
        """The terminal with ``tid``, or None (the acquirer answers 97 for an unknown terminal)."""
        return next((t for t in self.terminals if t.tid == tid), None)

    def institution(self, name: str) -> InstitutionConfig | None:
        """The institution called ``name``, or None."""
        return next((i for i in self.institutions if i.name == name), None)

    def institution_by_key_id(self, api_key_id: str) -> InstitutionConfig | None:
        """The institution whose API key id is ``api_key_id``, or None."""
        return next((i for i in self.institutions if i.api_key_id == api_key_id), None)


# -- defaults ---------------------------------------------------------------------------------------

DEFAULT_ISSUERS: list[dict[str, Any]] = [
    {"name": "bank-a", "institution_id": "01028480001", "bins": ["622848"],
     "profiles": ["pboc_debit_ecash_sm4", "pboc_ecash_only_sm4"]},
    {"name": "bank-b", "institution_id": "01021700002", "bins": ["621700"],
     "profiles": ["pboc_credit_ecash_3des"]},
]
DEFAULT_TERMINALS: list[dict[str, Any]] = [  # TMKs are TEST KEYS
    {"tid": "PAYLAB01", "mid": "898440154110001", "tmk": "0123456789ABCDEFFEDCBA9876543210",
     "name": "PAYLAB TEST POS 1"},
    {"tid": "PAYLAB02", "mid": "898440154110002", "tmk": "11111111111111112222222222222222",
     "name": "PAYLAB TEST POS 2"},
    {"tid": "PAYLAB03", "mid": "898440154110003", "tmk": "33333333333333334444444444444444",
     "name": "PAYLAB TEST POS 3"},
]
DEFAULT_INSTITUTIONS: list[dict[str, Any]] = [  # HMAC keys are TEST KEYS: sha256("paylab TEST HMAC key <name>")
    {"name": "bank-a", "kind": "bank", "api_key_id": "ak-test-bank-a",
     "hmac_key": "06a4a4d75ba69bae7de617dc072007cbc7b2485abacaa2552fa24a094690281f"},
    {"name": "bank-b", "kind": "bank", "api_key_id": "ak-test-bank-b",
     "hmac_key": "31d6a4274eec86d30c65e4edbb48f87e718f1fab2de2b05611e3be6f5879a238"},
    {"name": "unionpay", "kind": "unionpay", "api_key_id": "ak-test-unionpay",
     "hmac_key": "1adf492ca7b70dfc3692ba285f89422427412d567397df7596c53452e6aab50f"},
    {"name": "operator-cm", "kind": "operator", "api_key_id": "ak-test-operator-cm",
     "hmac_key": "445933e47fce1139615a09fb0a711bb3912e8ffa4d4326ef032096a1f4a603a4"},
    {"name": "operator-cu", "kind": "operator", "api_key_id": "ak-test-operator-cu",
     "hmac_key": "0600b03986a13467393dee3723a6c05a5474c33db5bb93b7d4353e40068d50af"},
    {"name": "mtps", "kind": "mtps", "api_key_id": "ak-test-mtps",
     "hmac_key": "eddf103392be812b183dbb4d8ae37ceaf3b712bcdf129f4cdcb7afed8c7ba54a"},
]
DEFAULT_DEBIT_BALANCE = 1_000_000
DEFAULT_DEBIT_DAILY_LIMIT = 500_000
DEFAULT_CREDIT_LIMIT = 500_000
DEFAULT_CREDIT_DAILY_LIMIT = 300_000

DEFAULTS: dict[str, Any] = {
    "test_keys": True,
    "state_dir": None,
    "database_url": None,
    "clearing_dir": None,
    "host": "127.0.0.1",
    "ports": {"acquirer": 0, "switch": 0, "issuers": 0, "http": 0},
    "issuer_timeout_s": 2.0,
    "acquirer_id": "48020000",
    "remote_payment": {"otp_ttl_s": 300, "otp_max_tries": 3, "nonce_window_s": 300},
    "issuers": DEFAULT_ISSUERS,
    "terminals": DEFAULT_TERMINALS,
    "institutions": DEFAULT_INSTITUTIONS,
}
"""The default document (before validation); issuers' ``accounts`` follow from their profiles."""


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/paylab/backend``, or ``~/.local/state/paylab/backend``."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path("~/.local/state").expanduser())
    return Path(base) / "paylab" / "backend"


def default_account_seeds(profiles: list[PbocProfile]) -> list[AccountSeed]:
    """The seeds an issuer gets when its ``accounts`` field is omitted (module docstring)."""
    seeds: list[AccountSeed] = []
    for p in profiles:
        if p.account == "debit+ecash":
            seeds.append(AccountSeed(p.pan, "debit", DEFAULT_DEBIT_BALANCE, 0, DEFAULT_DEBIT_DAILY_LIMIT))
        elif p.account == "credit+ecash":
            seeds.append(AccountSeed(p.pan, "credit", 0, DEFAULT_CREDIT_LIMIT, DEFAULT_CREDIT_DAILY_LIMIT))
        seeds.append(AccountSeed(p.pan, "ecash", p.ecash.balance))
    return seeds


@functools.cache
def _bundled(name: str) -> PbocProfile:
    return load_bundled(name)


# -- loading ----------------------------------------------------------------------------------------


def load_config(path: str | Path | None = None, *, overrides: Mapping[str, Any] | None = None) -> BackendConfig:
    """Load the configuration: the defaults, then the YAML file at ``path`` (if any), then ``overrides``.

    Raises :class:`ConfigError` (one line, naming the field) on the first problem.
    """
    document = copy.deepcopy(DEFAULTS)
    source: str | None = None
    if path is not None:
        file = Path(path)
        source = file.name
        raw = parse_yaml(read_text(file, ConfigError), ConfigError, source)
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise ConfigError("(document)", f"must be a mapping, got {type(raw).__name__}", source=source)
        _merge(document, raw, "", source)
    if overrides:
        _merge(document, _expand_dotted(overrides), "", None)
    return _Parser(source).config(document)


def _expand_dotted(overrides: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        if not isinstance(key, str):
            raise ConfigError(str(key), "override keys must be strings")
        *parents, last = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(key, "conflicts with another override")
        if isinstance(value, Mapping) and isinstance(node.get(last), dict):
            _merge(node[last], value, f"{key}.", None)
        else:
            node[last] = copy.deepcopy(value)
    return out


def _merge(base: dict[str, Any], update: Mapping[str, Any], prefix: str, source: str | None) -> None:
    """Mappings merge key by key (unknown keys are kept, so the parser can name them); anything else replaces."""
    for key, value in update.items():
        if not isinstance(key, str):
            raise ConfigError(f"{prefix}{key}", "keys must be strings", source=source)
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value, f"{prefix}{key}.", source)
        else:
            base[key] = copy.deepcopy(value) if isinstance(value, dict | list) else value


class _Parser(FieldReader):
    """Typed field access; every failure is a :class:`ConfigError` naming the field."""

    def __init__(self, source: str | None) -> None:
        self.source = source

    def fail(self, name: str, problem: str) -> NoReturn:
        raise ConfigError(name, problem, source=self.source)

    def mapping(self, raw: Any, name: str, allowed: set[str]) -> Mapping[str, Any]:
        self.check_known(self.check_mapping(raw, name or "(document)"), allowed, f"{name}." if name else "")
        return raw

    def items(self, raw: Any, name: str) -> list[Any]:
        if not isinstance(raw, list):
            self.fail(name, f"must be a list, got {type(raw).__name__}")
        return raw

    def text(self, raw: Any, name: str, *, pattern: str | None = None, problem: str = "") -> str:
        value = self.check_text(raw, name)
        if pattern is not None and not re.fullmatch(pattern, value):
            self.fail(name, problem or f"must match {pattern}")
        return value

    def integer(self, raw: Any, name: str, *, low: int = 0, high: int = MAX_AMOUNT) -> int:
        return self.check_integer(raw, name, low=low, high=high)

    def number(self, raw: Any, name: str, *, low: float, high: float) -> float:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            self.fail(name, f"must be a number, got {type(raw).__name__} {raw!r}")
        if not low < raw <= high:
            self.fail(name, f"{raw} is outside ({low}, {high}]")
        return float(raw)

    def hex_key(self, raw: Any, name: str, lengths: tuple[int, ...]) -> bytes:
        if isinstance(raw, bytes | bytearray):
            value = bytes(raw)
        else:
            text = "".join(self.text(raw, name).split())
            if not _HEX_RE.fullmatch(text):
                self.fail(name, "not an even number of hex digits")
            value = bytes.fromhex(text)
        if len(value) not in lengths:
            self.fail(name, f"must be {' or '.join(map(str, lengths))} bytes (a TEST KEY), got {len(value)}")
        return value

    def path(self, raw: Any, name: str, default: Path) -> Path:
        if raw is None:
            return default
        if isinstance(raw, Path):
            return raw.expanduser()
        if not isinstance(raw, str) or not raw:
            self.fail(name, f"must be a path string, got {type(raw).__name__} {raw!r}")
        return Path(raw).expanduser()

    # -- sections ----------------------------------------------------------------------------------
    def config(self, doc: dict[str, Any]) -> BackendConfig:
        d = self.mapping(doc, "", set(DEFAULTS))
        if d.get("test_keys") is not True:
            self.fail("test_keys", "must be true: a backend configuration carries TEST KEYS only, and must say so")
        state_dir = self.path(d.get("state_dir"), "state_dir", default_state_dir())
        database_url = d.get("database_url")
        if database_url is None:
            database_url = f"sqlite:///{state_dir}/backend.db"
        else:
            database_url = self.text(database_url, "database_url")
            if not database_url.startswith(("sqlite:", "sqlite+pysqlite:", "postgresql+psycopg:")):
                self.fail("database_url", "must be a sqlite:/// or postgresql+psycopg:// URL")
        clearing_dir = self.path(d.get("clearing_dir"), "clearing_dir", state_dir / "clearing")
        host = self.text(d.get("host"), "host", pattern=r"[0-9A-Za-z.:_-]{1,253}", problem="not a host name or address")

        p = self.mapping(d.get("ports"), "ports", {"acquirer", "switch", "issuers", "http"})
        ports = PortsConfig(**{k: self.integer(p.get(k, 0), f"ports.{k}", high=65535) for k in p})
        rp = self.mapping(d.get("remote_payment"), "remote_payment", {"otp_ttl_s", "otp_max_tries", "nonce_window_s"})
        remote = RemotePaymentConfig(
            otp_ttl_s=self.integer(rp.get("otp_ttl_s", 300), "remote_payment.otp_ttl_s", low=1, high=86400),
            otp_max_tries=self.integer(rp.get("otp_max_tries", 3), "remote_payment.otp_max_tries", low=1, high=10),
            nonce_window_s=self.integer(rp.get("nonce_window_s", 300), "remote_payment.nonce_window_s",
                                        low=1, high=86400),
        )
        issuers = [self.issuer(raw, f"issuers[{i}]") for i, raw in enumerate(self.items(d.get("issuers"), "issuers"))]
        self.unique(issuers, "issuers", "name", lambda x: x.name)
        self.unique(issuers, "issuers", "institution_id", lambda x: x.institution_id)
        seen_bins: dict[str, str] = {}
        for i, issuer in enumerate(issuers):
            for j, b in enumerate(issuer.bins):
                if b in seen_bins:
                    self.fail(f"issuers[{i}].bins[{j}]", f"BIN {b} is already routed to {seen_bins[b]!r}")
                seen_bins[b] = issuer.name
        if ports.issuers and ports.issuers + len(issuers) - 1 > 65535:
            self.fail("ports.issuers", f"base port {ports.issuers} leaves no room for {len(issuers)} issuers")
        terminals = [self.terminal(raw, f"terminals[{i}]")
                     for i, raw in enumerate(self.items(d.get("terminals"), "terminals"))]
        self.unique(terminals, "terminals", "tid", lambda x: x.tid)
        institutions = [self.institution(raw, f"institutions[{i}]")
                        for i, raw in enumerate(self.items(d.get("institutions"), "institutions"))]
        self.unique(institutions, "institutions", "name", lambda x: x.name)
        self.unique(institutions, "institutions", "api_key_id", lambda x: x.api_key_id)
        return BackendConfig(
            state_dir=state_dir,
            database_url=database_url,
            clearing_dir=clearing_dir,
            host=host,
            ports=ports,
            issuer_timeout_s=self.number(d.get("issuer_timeout_s"), "issuer_timeout_s", low=0.0, high=120.0),
            acquirer_id=self.text(d.get("acquirer_id"), "acquirer_id", pattern=r"[0-9]{8,11}",
                                  problem="not 8-11 digits"),
            remote_payment=remote,
            issuers=issuers,
            terminals=terminals,
            institutions=institutions,
        )

    def unique(self, items: list[Any], name: str, what: str, key: Any) -> None:
        seen: set[str] = set()
        for i, item in enumerate(items):
            value = key(item)
            if value in seen:
                self.fail(f"{name}[{i}].{what}", f"duplicate {what} {value!r}")
            seen.add(value)

    def issuer(self, raw: Any, name: str) -> IssuerConfig:
        r = self.mapping(raw, name, {"name", "institution_id", "bins", "profiles", "accounts", "single_limit_fen"})
        issuer_name = self.text(r.get("name"), f"{name}.name", pattern=_NAME_RE.pattern,
                                problem="must be 1-32 characters of a-z, 0-9 and '-'")
        institution_id = self.text(r.get("institution_id"), f"{name}.institution_id", pattern=r"[0-9]{11}",
                                   problem="not 11 digits")
        bins = [self.text(b, f"{name}.bins[{j}]", pattern=r"[0-9]{6,8}", problem="not 6-8 digits")
                for j, b in enumerate(self.items(r.get("bins"), f"{name}.bins"))]
        if not bins:
            self.fail(f"{name}.bins", "must list at least one BIN")
        profiles: list[PbocProfile] = []
        for j, p in enumerate(self.items(r.get("profiles", []), f"{name}.profiles")):
            where = f"{name}.profiles[{j}]"
            try:
                profile = _bundled(self.text(p, where))
            except ProfileError as exc:
                self.fail(where, str(exc))
            if profile.issuer_keys is None:
                self.fail(where, f"profile {p!r} has card keys only; an issuer needs its issuer master keys (imk_*)")
            if not any(profile.pan.startswith(b) for b in bins):
                self.fail(where, f"the PAN of profile {p!r} matches none of the issuer's BINs {bins}")
            if profile.name in (q.name for q in profiles):
                self.fail(where, f"profile {p!r} is listed twice")
            profiles.append(profile)
        if "accounts" in r:
            accounts = [self.seed(a, f"{name}.accounts[{j}]", bins, profiles)
                        for j, a in enumerate(self.items(r["accounts"], f"{name}.accounts"))]
        else:
            accounts = default_account_seeds(profiles)
        main: set[str] = set()
        ecash: set[str] = set()
        for j, seed in enumerate(accounts):
            bucket = ecash if seed.kind == "ecash" else main
            if seed.pan in bucket:
                what = "e-cash" if seed.kind == "ecash" else "debit or credit"
                self.fail(f"{name}.accounts[{j}].kind", f"a PAN has at most one {what} account")
            bucket.add(seed.pan)
        limits: dict[str, int] = {}
        if r.get("single_limit_fen") is not None:
            raw_limits = self.mapping(r["single_limit_fen"], f"{name}.single_limit_fen", set(SEED_KINDS))
            for kind, value in raw_limits.items():
                amount = self.integer(value, f"{name}.single_limit_fen.{kind}")
                if amount:  # 0 = no limit
                    limits[kind] = amount
        return IssuerConfig(issuer_name, institution_id, bins, [p.name for p in profiles], accounts, limits)

    def seed(self, raw: Any, name: str, bins: list[str], profiles: list[PbocProfile]) -> AccountSeed:
        r = self.mapping(raw, name, {"pan", "kind", "balance_fen", "credit_limit_fen", "daily_limit_fen"})
        pan = self.text(r.get("pan"), f"{name}.pan", pattern=r"[0-9]{12,19}", problem="not 12-19 digits")
        if not luhn_valid(pan):
            self.fail(f"{name}.pan", "Luhn check digit is wrong")
        if not any(pan.startswith(b) for b in bins):
            self.fail(f"{name}.pan", f"matches none of the issuer's BINs {bins}")
        kind = self.check_choice(self.text(r.get("kind"), f"{name}.kind"), f"{name}.kind", SEED_KINDS)
        profile = next((p for p in profiles if p.pan == pan), None)
        default_balance = profile.ecash.balance if profile is not None and kind == "ecash" else 0
        balance = self.integer(r.get("balance_fen", default_balance), f"{name}.balance_fen")
        limit = self.integer(r.get("credit_limit_fen", 0), f"{name}.credit_limit_fen")
        daily = self.integer(r.get("daily_limit_fen", 0), f"{name}.daily_limit_fen")
        if kind == "credit" and balance:
            self.fail(f"{name}.balance_fen", "a credit account opens at 0 (the credit line is credit_limit_fen)")
        if kind == "ecash" and limit:
            self.fail(f"{name}.credit_limit_fen", "an e-cash account has no credit line")
        if kind == "ecash" and profile is not None and balance > profile.ecash.balance_limit:
            self.fail(f"{name}.balance_fen", f"{balance} exceeds the card's e-cash balance limit "
                                             f"{profile.ecash.balance_limit}")
        return AccountSeed(pan, kind, balance, limit, daily)  # type: ignore[arg-type]

    def terminal(self, raw: Any, name: str) -> TerminalConfig:
        r = self.mapping(raw, name, {"tid", "mid", "tmk", "name"})
        printable = r"[\x20-\x7e]"
        tid = self.text(r.get("tid"), f"{name}.tid", pattern=printable + "{8}",
                        problem="must be 8 printable characters (ans8)")
        mid = self.text(r.get("mid"), f"{name}.mid", pattern=printable + "{15}",
                        problem="must be 15 printable characters (ans15)")
        tmk = self.hex_key(r.get("tmk"), f"{name}.tmk", (16,))
        label = self.text(r.get("name", tid), f"{name}.name", pattern=printable + "{1,40}",
                          problem="must be 1-40 printable characters")
        return TerminalConfig(tid, mid, tmk, label)

    def institution(self, raw: Any, name: str) -> InstitutionConfig:
        r = self.mapping(raw, name, {"name", "kind", "api_key_id", "hmac_key"})
        inst_name = self.text(r.get("name"), f"{name}.name", pattern=_NAME_RE.pattern,
                              problem="must be 1-32 characters of a-z, 0-9 and '-'")
        kind = self.check_choice(self.text(r.get("kind"), f"{name}.kind"), f"{name}.kind", INSTITUTION_KINDS)
        key_id = self.text(r.get("api_key_id"), f"{name}.api_key_id", pattern=r"[A-Za-z0-9._-]{1,64}",
                           problem="must be 1-64 characters of A-Z, a-z, 0-9, '.', '_' and '-'")
        key = self.hex_key(r.get("hmac_key"), f"{name}.hmac_key", tuple(range(16, 65)))
        return InstitutionConfig(inst_name, kind, key_id, key)  # type: ignore[arg-type]
