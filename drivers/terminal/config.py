"""Terminal configuration for the qPBOC and PBOC contact kernels (EMV Book 4 / Book A / PBOC Part 12).

Everything a kernel needs that is not the card's: the terminal data objects it sends (TTQ 9F66, country
9F1A, currency 5F2A, terminal type 9F35, capabilities 9F33 / 9F40, IFD serial 9F1E, merchant and
terminal identifiers), the reader limits (contactless transaction limit, CVM required limit, floor
limits; amounts in fen), the supported AIDs with their priorities, the CA public keys for offline data
authentication by ``(RID, index)`` (EMV Book 2 section 11.2), and two injectable sources for
deterministic tests: the unpredictable number (9F37) and the clock (9A/9F21, certificate expiry).

The paylab TEST CA keys are generated per ODA chain (``cps.generate_oda_chain``: RSA keys cannot be
seeded), so a test loads the key the card was personalised under: ``config.with_ca_keys(chain.ca_public)``.
A real terminal would load its CA key file the same way (one :class:`CaPublicKey` per entry).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from paylab.lab.protocol.oda import CaPublicKey

# TTQ 9F66 bits (brief section 1, [S: emv.cool])
TTQ1_QPBOC = 0x20
TTQ1_CONTACT = 0x10
TTQ1_OFFLINE_ONLY = 0x08
TTQ1_ONLINE_PIN = 0x04
TTQ1_SIGNATURE = 0x02
TTQ2_ONLINE_CRYPTOGRAM = 0x80
TTQ2_CVM_REQUIRED = 0x40
TTQ4_FDDA_V01 = 0x80


def _random_un() -> bytes:
    return secrets.token_bytes(4)


@dataclass(frozen=True)
class AidEntry:
    """One application the terminal supports (EMV Book 1 12.3.1): ``partial`` allows ADF names that
    start with ``aid`` (application selection indicator); ``priority`` breaks ties between cards'
    equal priorities (lower first)."""

    aid: bytes
    priority: int = 0
    partial: bool = True
    label: str = ""

    def matches(self, adf_name: bytes) -> bool:
        return adf_name == self.aid or (self.partial and adf_name.startswith(self.aid))


DEFAULT_AIDS: tuple[AidEntry, ...] = (
    AidEntry(bytes.fromhex("A000000333010101"), 1, label="PBOC DEBIT"),
    AidEntry(bytes.fromhex("A000000333010102"), 2, label="PBOC CREDIT"),
    AidEntry(bytes.fromhex("A000000333010103"), 3, label="PBOC QUASI-CREDIT"),
    AidEntry(bytes.fromhex("A000000333010106"), 4, label="PBOC ECASH"),
)


@dataclass(frozen=True, repr=False)
class TerminalConfig:
    """A terminal's configuration; immutable, derive variants with :meth:`replace` (``dataclasses.replace``).

    Amounts are in fen (minor units of ``currency``). ``ttq`` is the *static* TTQ; the contactless
    kernel sets byte 2 (online cryptogram required, CVM required) per transaction.
    """

    ttq: bytes = bytes.fromhex("36000080")
    """qPBOC + contact + online PIN + signature; fDDA v01 (byte 4 b8)."""
    country: bytes = bytes.fromhex("0156")
    currency: bytes = bytes.fromhex("0156")
    currency_exponent: int = 2
    terminal_type: int = 0x22
    """Attended, offline with online capability, merchant (EMV Book 4 Annex A1)."""
    capabilities: bytes = bytes.fromhex("E0F8C8")
    """9F33: manual/magstripe/IC; plaintext PIN, online PIN, signature, enciphered PIN, no CVM; SDA DDA CDA."""
    additional_capabilities: bytes = bytes.fromhex("F000F0A001")
    ifd_serial: bytes = b"PAYLAB01"
    terminal_id: str = "PAYLAB01"
    merchant_id: str = "898440154110001"
    merchant_name: str = "PAYLAB TEST MERCHANT"
    merchant_category: bytes = bytes.fromhex("5999")
    app_version: bytes = bytes.fromhex("0030")
    """9F09, the terminal's application version number."""
    contactless_transaction_limit: int = 100_000
    """At or above it the contactless transaction is not allowed (EMV Book A 5.2.2): try another interface."""
    cvm_required_limit: int = 30_000
    """At or above it a CVM is required (TTQ byte 2 b7)."""
    contactless_floor_limit: int = 50_000
    """Above it the reader asks for an online cryptogram (TTQ byte 2 b8)."""
    floor_limit: int = 0
    """Contact terminal floor limit 9F1B (EMV Book 3 10.6.1): at or above it TVR byte 4 b8."""
    ecash_terminal_limit: int = 50_000
    """9F7B e-cash terminal transaction limit [M]."""
    sm_supported: bool = True
    """DF69 = 01: the reader supports the SM algorithms (brief section 1)."""
    aids: tuple[AidEntry, ...] = DEFAULT_AIDS
    ca_keys: Mapping[tuple[bytes, int], CaPublicKey] = field(default_factory=dict)
    pin: str | None = None
    """Offline plaintext PIN the (test) cardholder enters at the PIN pad when the CVM list asks; None: no
    PIN pad entry, offline PIN is then treated as not supported."""
    tac_denial: bytes = bytes(5)
    tac_online: bytes = bytes.fromhex("DC4004F800")
    tac_default: bytes = bytes.fromhex("DC4000A800")
    unpredictable_number: Callable[[], bytes] = _random_un
    clock: Callable[[], datetime] = datetime.now
    transaction_sequence_start: int = 1

    # -- derived ---------------------------------------------------------------------------------------
    def replace(self, **changes: object) -> TerminalConfig:
        """A copy with ``changes`` applied."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def with_ca_keys(self, *keys: CaPublicKey | Iterable[CaPublicKey]) -> TerminalConfig:
        """A copy whose CA key store also holds ``keys`` (e.g. ``chain.ca_public`` of a TEST chain)."""
        store = dict(self.ca_keys)
        for item in keys:
            for key in ([item] if isinstance(item, CaPublicKey) else item):
                store[(bytes(key.rid), key.index)] = key
        return replace(self, ca_keys=store)

    def ca_key(self, rid: bytes, index: int) -> CaPublicKey | None:
        """The CA public key for ``(RID, index)`` (tag 8F), or None."""
        return self.ca_keys.get((bytes(rid), index))

    def aid_entry(self, adf_name: bytes) -> AidEntry | None:
        """The supported AID matching ``adf_name`` (exact match first), or None."""
        exact = next((entry for entry in self.aids if entry.aid == adf_name), None)
        return exact or next((entry for entry in self.aids if entry.matches(adf_name)), None)

    def terminal_values(self) -> dict[int, bytes]:
        """The static terminal data objects (tags -> values) a kernel offers to DOLs and field 55."""
        values = {
            0x9F1A: self.country, 0x5F2A: self.currency, 0x5F36: bytes([self.currency_exponent]),
            0x9F35: bytes([self.terminal_type]), 0x9F33: self.capabilities, 0x9F40: self.additional_capabilities,
            0x9F1E: self.ifd_serial, 0x9F1C: self.terminal_id.encode("ascii"),
            0x9F16: self.merchant_id.encode("ascii"), 0x9F4E: self.merchant_name.encode("ascii"),
            0x9F15: self.merchant_category, 0x9F09: self.app_version,
            0x9F1B: self.floor_limit.to_bytes(4, "big"), 0x9F7A: b"\x01",
            0x9F7B: bytes.fromhex(f"{self.ecash_terminal_limit:012d}"),
        }
        if self.sm_supported:
            values[0xDF69] = b"\x01"
        return values

    def __repr__(self) -> str:
        keys = ", ".join(f"{rid.hex().upper()}/{index:02X}" for rid, index in self.ca_keys)
        return (f"TerminalConfig(TTQ {self.ttq.hex().upper()}, terminal {self.terminal_id}, "
                f"limits cl={self.contactless_transaction_limit} cvm={self.cvm_required_limit} "
                f"floor={self.contactless_floor_limit}, CA keys [{keys}], PIN {'set' if self.pin else 'none'})")


__all__ = [
    "DEFAULT_AIDS", "TTQ1_CONTACT", "TTQ1_OFFLINE_ONLY", "TTQ1_ONLINE_PIN", "TTQ1_QPBOC", "TTQ1_SIGNATURE",
    "TTQ2_CVM_REQUIRED", "TTQ2_ONLINE_CRYPTOGRAM", "TTQ4_FDDA_V01", "AidEntry", "TerminalConfig",
]
