"""Rig resources: passive descriptions of what sits on a rig (labgrid's ``resource/`` idea).

A resource says *where* a device is (a PC/SC reader name pattern, an nfcpy device path, a pyserial
URL, an ssh address) and *what* it is (the equipment identity for the manifest: vendor, model,
serial, firmware, calibration dates). It never opens anything: :mod:`.binding` turns resources into
driver objects implementing the protocols of :mod:`paylab.drivers.protocols`.

Resources come from the YAML inventory (:mod:`.inventory`) for a real bench, or are made up at
bring-up by :class:`~.sim.SimRig` for the built-in ``sim`` rig.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Literal

CAPABILITIES: tuple[str, ...] = (
    "pcsc-contact", "pcsc-contactless", "nfc-reader", "nfc-emulator", "pos",
    "se-sim", "se-microsd", "se-ese", "backend", "host",
)
"""Capability tags a rig may announce; suites request rigs by these (a pure match, labgrid-style)."""

ReaderDriver = Literal["pcsc", "nfc"]
AntennaRole = Literal["reader", "emulator"]
Placement = Literal["sim", "microsd", "ese"]
PLACEMENTS: tuple[str, ...] = ("sim", "microsd", "ese")


@dataclass(frozen=True)
class EquipmentIdentity:
    """Identity and calibration data of one piece of equipment, for the equipment manifest."""

    vendor: str | None = None
    model: str | None = None
    serial: str | None = None
    firmware: str | None = None
    calibrated: date | None = None
    calibration_due: date | None = None

    def calibration_overdue(self, today: date) -> bool:
        """True when a calibration due date is set and has passed."""
        return self.calibration_due is not None and self.calibration_due < today

    def as_dict(self) -> dict[str, str]:
        """Only the fields that are set, dates in ISO 8601."""
        out: dict[str, str] = {}
        for key in ("vendor", "model", "serial", "firmware", "calibrated", "calibration_due"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value.isoformat() if isinstance(value, date) else str(value)
        return out


@dataclass(frozen=True)
class SshHostResource:
    """The machine carrying a rig's hardware, reached over ssh with a pinned host key."""

    address: str
    user: str
    key: Path
    known_hosts: Path               # the host key is pinned: an unknown host is refused
    port: int = 22
    identity: EquipmentIdentity = field(default_factory=EquipmentIdentity)
    python: str = "python3"         # the interpreter (with paylab installed) that runs a campaign share there
    workdir: str = "paylab-runs"    # where campaign shares unpack and run (relative to the login's home)

    @property
    def name(self) -> str:
        return f"{self.user}@{self.address}:{self.port}"


@dataclass(frozen=True)
class ReaderResource:
    """A terminal-side reader: PC/SC (by reader-name regular expression) or nfcpy (by device path)."""

    name: str
    driver: ReaderDriver
    contactless: bool
    pattern: str | None = None          # PC/SC: regular expression matched against reader names
    device: str | None = None           # nfc: nfcpy path, "usb:054c:06c3", "udp:127.0.0.1:PORT"
    identity: EquipmentIdentity = field(default_factory=EquipmentIdentity)

    @property
    def kind(self) -> str:
        return f"reader/{self.driver}"

    @property
    def location(self) -> str:
        return self.pattern if self.driver == "pcsc" else str(self.device)


@dataclass(frozen=True)
class AntennaResource:
    """An NFC antenna (nfcpy device path) used as a reader or as a card emulator."""

    name: str
    device: str
    role: AntennaRole
    identity: EquipmentIdentity = field(default_factory=EquipmentIdentity)

    @property
    def kind(self) -> str:
        return f"antenna/{self.role}"


@dataclass(frozen=True)
class PosResource:
    """A payment terminal on an ECR link (any pyserial URL: ``/dev/ttyUSB0``, ``socket://``, ``rfc2217://``)."""

    name: str
    url: str
    baudrate: int = 115200
    identity: EquipmentIdentity = field(default_factory=EquipmentIdentity)

    @property
    def kind(self) -> str:
        return "pos"


@dataclass(frozen=True)
class CardSlot:
    """A card that sits somewhere on the rig: in a reader, on an antenna or in a handset.

    ``profile`` names the card profile it was personalised with (bundled name or YAML path);
    ``image`` is the emulated card image file when the card is a paylab secure element.
    """

    name: str
    placement: Placement
    holder: str | None = None           # reader, antenna or handset name
    profile: str | None = None
    image: Path | None = None
    issued: bool = True
    identity: EquipmentIdentity = field(default_factory=EquipmentIdentity)

    @property
    def kind(self) -> str:
        return f"slot/{self.placement}"


@dataclass(frozen=True)
class HandsetResource:
    """A phone hosting a secure element (the card of ``slot``), tapping on ``antenna``."""

    name: str
    slot: str
    msisdn: str | None = None
    antenna: str | None = None
    identity: EquipmentIdentity = field(default_factory=EquipmentIdentity)

    @property
    def kind(self) -> str:
        return "handset"


@dataclass(frozen=True)
class BackendEndpoints:
    """Where the rig's acquirer (ISO 8583 over TCP) and the backend's HTTP services are."""

    acquirer: tuple[str, int] | None = None
    http_url: str | None = None

    @property
    def configured(self) -> bool:
        return self.acquirer is not None or self.http_url is not None


@dataclass(frozen=True)
class Rig:
    """One rig of the inventory: capabilities plus the resources that back them."""

    name: str
    description: str = ""
    capabilities: tuple[str, ...] = ()
    host: SshHostResource | None = None
    readers: tuple[ReaderResource, ...] = ()
    antennas: tuple[AntennaResource, ...] = ()
    pos: tuple[PosResource, ...] = ()
    slots: tuple[CardSlot, ...] = ()
    handsets: tuple[HandsetResource, ...] = ()
    backend: BackendEndpoints = field(default_factory=BackendEndpoints)
    builtin: bool = False               # True for ``sim``: resources are allocated at bring-up
    source: str | None = None           # "FILE:LINE" where the rig is defined

    def has(self, *capabilities: str) -> bool:
        """True when the rig announces every capability given (scheduling is this pure match)."""
        return all(c in self.capabilities for c in capabilities)

    def resource_names(self) -> list[tuple[str, str]]:
        """(kind, name) of every resource, in inventory order."""
        out: list[tuple[str, str]] = []
        if self.host is not None:
            out.append(("host", self.host.name))
        out += [(r.kind, r.name) for r in self.readers]
        out += [(a.kind, a.name) for a in self.antennas]
        out += [(p.kind, p.name) for p in self.pos]
        out += [(s.kind, s.name) for s in self.slots]
        out += [(h.kind, h.name) for h in self.handsets]
        if self.backend.configured:
            out.append(("backend", "backend"))
        return out

    def find_reader(self, name: str) -> ReaderResource | None:
        return next((r for r in self.readers if r.name == name), None)

    def find_antenna(self, name: str) -> AntennaResource | None:
        return next((a for a in self.antennas if a.name == name), None)

    def find_pos(self, name: str) -> PosResource | None:
        return next((p for p in self.pos if p.name == name), None)

    def find_slot(self, name: str) -> CardSlot | None:
        return next((s for s in self.slots if s.name == name), None)

    def find_handset(self, name: str) -> HandsetResource | None:
        return next((h for h in self.handsets if h.name == name), None)


def backed_capabilities(rig: Rig) -> set[str]:
    """The capabilities the rig's resources actually back (a capability without one is an error)."""
    caps: set[str] = set()
    for reader in rig.readers:
        if reader.driver == "pcsc":
            caps.add("pcsc-contactless" if reader.contactless else "pcsc-contact")
        else:
            caps.add("nfc-reader")
    for antenna in rig.antennas:
        caps.add("nfc-reader" if antenna.role == "reader" else "nfc-emulator")
    if rig.pos:
        caps.add("pos")
    for slot in rig.slots:
        caps.add(f"se-{slot.placement}")
    if rig.backend.configured:
        caps.add("backend")
    if rig.host is not None:
        caps.add("host")
    return caps
