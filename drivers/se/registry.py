"""The GlobalPlatform registry of an emulated card (GP Card Specification v2.3 clause 5.x / 11.1).

It is the card's applet registry too: the runtime selects by the registry, and every instance's
life-cycle state, privileges and associated security domain live here, in the card image.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

# Card life cycle (GP 2.3 clause 5.1.1, table 11-6 coding)
CARD_OP_READY = 0x01
CARD_INITIALIZED = 0x07
CARD_SECURED = 0x0F
CARD_LOCKED = 0x7F
CARD_TERMINATED = 0xFF

# Application life cycle (clause 5.3.1, table 11-4): b2 INSTALLED, b3 SELECTABLE, b8 LOCKED;
# bits 4-7 application specific (paylab's applets use 0x0F for "personalised").
APP_INSTALLED = 0x03
APP_SELECTABLE = 0x07
APP_PERSONALIZED = 0x0F
APP_LOCKED_BIT = 0x80

# Security domain life cycle (clause 5.3.2, table 11-5)
SD_INSTALLED = 0x03
SD_SELECTABLE = 0x07
SD_PERSONALIZED = 0x0F
SD_LOCKED_BIT = 0x80

# Executable load file (clause 5.2)
ELF_LOADED = 0x01

# Privileges, byte 1 (clause 6.6.1, table 6-1)
PRIV_SECURITY_DOMAIN = 0x80
PRIV_DAP_VERIFICATION = 0x40
PRIV_DELEGATED_MANAGEMENT = 0x20
PRIV_CARD_LOCK = 0x10
PRIV_CARD_TERMINATE = 0x08
PRIV_DEFAULT_SELECTED = 0x04   # "card reset" in GP 2.2+
PRIV_CVM_MANAGEMENT = 0x02
PRIV_MANDATED_DAP = 0x01
# byte 2
PRIV2_TRUSTED_PATH = 0x80
PRIV2_AUTHORIZED_MANAGEMENT = 0x40
PRIV2_TOKEN_VERIFICATION = 0x20
PRIV2_GLOBAL_DELETE = 0x10
PRIV2_GLOBAL_LOCK = 0x08
PRIV2_GLOBAL_REGISTRY = 0x04
PRIV2_FINAL_APPLICATION = 0x02
PRIV2_GLOBAL_SERVICE = 0x01
# byte 3
PRIV3_RECEIPT_GENERATION = 0x80
PRIV3_CIPHERED_LOAD_FILE = 0x40
PRIV3_CONTACTLESS_ACTIVATION = 0x20
PRIV3_CONTACTLESS_SELF_ACTIVATION = 0x10

EntryKind = Literal["ISD", "SD", "APP", "ELF"]


@dataclass
class RegistryEntry:
    """One registry entry: an executable load file, an application or a security domain."""

    aid: bytes
    kind: EntryKind
    life_cycle: int
    privileges: bytes = b"\x00\x00\x00"
    associated_sd: bytes | None = None
    elf_aid: bytes | None = None
    module_aid: bytes | None = None
    implementation: str | None = None
    modules: list[bytes] = field(default_factory=list)
    contactless_activated: bool = False
    contactless_priority: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_sd(self) -> bool:
        return self.kind in ("ISD", "SD")

    @property
    def locked(self) -> bool:
        """Application/SSD locked (b8 of its life cycle). The ISD's entry mirrors the *card* life
        cycle (GP 2.3 clause 5.1), where b8 is not a lock bit, so the ISD is never "locked" here:
        card locking is enforced from the card life cycle instead."""
        return self.kind in ("APP", "SD") and bool(self.life_cycle & APP_LOCKED_BIT)

    @property
    def selectable(self) -> bool:
        """Selectable: SELECTABLE bit set and not locked (GP 2.3 clause 5.3.1)."""
        if self.kind == "ELF" or self.locked:
            return False
        return self.kind == "ISD" or (self.life_cycle & 0x07) == 0x07

    def has_privilege(self, byte_index: int, mask: int) -> bool:
        return bool(self.privileges[byte_index] & mask)

    def to_state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, raw: dict[str, Any]) -> RegistryEntry:
        return cls(**raw)


class Registry:
    """Ordered view over ``state["registry"]`` (install order matters for partial SELECT)."""

    def __init__(self, state: dict[str, Any]) -> None:
        self._state = state
        state.setdefault("registry", [])

    @property
    def _rows(self) -> list[dict[str, Any]]:
        return self._state["registry"]

    def __iter__(self) -> Iterator[RegistryEntry]:
        return (RegistryEntry.from_state(row) for row in list(self._rows))

    def entries(self, kind: EntryKind | None = None) -> list[RegistryEntry]:
        return [e for e in self if kind is None or e.kind == kind]

    def get(self, aid: bytes) -> RegistryEntry | None:
        for row in self._rows:
            if row["aid"] == aid:
                return RegistryEntry.from_state(row)
        return None

    def put(self, entry: RegistryEntry) -> None:
        """Insert, or update in place an entry with the same AID."""
        row = entry.to_state()
        for i, existing in enumerate(self._rows):
            if existing["aid"] == entry.aid:
                self._rows[i] = row
                return
        self._rows.append(row)

    def remove(self, aid: bytes) -> None:
        self._state["registry"] = [row for row in self._rows if row["aid"] != aid]

    def isd(self) -> RegistryEntry:
        for entry in self:
            if entry.kind == "ISD":
                return entry
        raise LookupError("card has no issuer security domain")

    def match(self, prefix: bytes, *, after: bytes | None = None) -> RegistryEntry | None:
        """First selectable application/SD whose AID starts with ``prefix`` (ISO 7816-4 5.3.1.1 partial
        selection); with ``after``, the next one following that AID (P2 "next occurrence")."""
        candidates = [e for e in self if e.kind != "ELF" and e.aid.startswith(prefix) and e.selectable]
        if after is not None:
            aids = [e.aid for e in candidates]
            if after in aids:
                candidates = candidates[aids.index(after) + 1:]
        return candidates[0] if candidates else None
