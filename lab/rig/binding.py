"""Binding: a rig's resources turned into driver objects that implement the driver protocols.

The same calls for a real bench (resources from the inventory) and for ``sim`` (resources made up
at bring-up by :class:`~.sim.SimRig`)::

    bound = BoundRig(rig)
    reader = bound.reader("contact")          # CardReaderProtocol (pyscard)
    pos = bound.pos("counter-1")              # PosTerminalProtocol (pyserial ECR link)
    host = bound.host()                       # RigHostProtocol (fabric, host key pinned)
    acquirer = bound.backend_endpoints.acquirer

Which driver serves a resource follows from the resource alone (labgrid: a local resource and its
network twin bind to the same driver): a ``pcsc`` reader → :class:`~paylab.drivers.pcsc.PcscReader`
(pattern as a regular expression), an ``nfc`` reader or a ``reader`` antenna →
:class:`~paylab.drivers.nfc.NfcReader`, an ``emulator`` antenna → :class:`~paylab.drivers.nfc.NfcCardEmulator`,
a POS → :class:`~paylab.drivers.pos.serial_pos.SerialPosTerminal`, the host →
:class:`~paylab.drivers.righost.FabricRigHost`. Driver modules are imported when first used, so a
rig without NFC never needs nfcpy.

Objects returned by :meth:`BoundRig.reader` & co. are opened once, shared, and closed by
:meth:`BoundRig.close`; the ``open_*`` functions give a fresh object the caller closes (the health
check uses those).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from paylab.drivers.protocols import CardEmulatorProtocol, CardReaderProtocol, PosTerminalProtocol, RigHostProtocol

from ..protocol.errors import PaylabError
from .resources import (
    AntennaResource,
    BackendEndpoints,
    CardSlot,
    PosResource,
    ReaderResource,
    Rig,
    SshHostResource,
)


class UnknownResource(PaylabError, LookupError):
    """The rig has no resource of that kind and name (the message lists the ones it has)."""

    def __init__(self, rig: str, kind: str, name: str | None, known: list[str]) -> None:
        self.rig, self.kind, self.name = rig, kind, name
        what = f"{kind} {name!r}" if name is not None else kind
        super().__init__(f"rig {rig}: no {what} (have: {', '.join(known) or 'none'})")


# -- fresh driver objects, one per resource ---------------------------------------------------------
def open_reader(resource: ReaderResource) -> CardReaderProtocol:
    """A terminal-side reader for ``resource`` (the caller closes it)."""
    if resource.driver == "pcsc":
        from paylab.drivers.pcsc import PcscReader

        assert resource.pattern is not None
        reader = PcscReader(resource.pattern, contactless=resource.contactless, regex=True)
    else:
        from paylab.drivers.nfc import NfcReader

        assert resource.device is not None
        reader = NfcReader(path=resource.device)
    return reader


def open_antenna(resource: AntennaResource) -> CardEmulatorProtocol | CardReaderProtocol:
    """An NFC antenna: a card emulator (role ``emulator``) or a reader (role ``reader``)."""
    if resource.role == "emulator":
        from paylab.drivers.nfc import NfcCardEmulator

        return NfcCardEmulator(path=resource.device)
    from paylab.drivers.nfc import NfcReader

    return NfcReader(path=resource.device)


def open_pos(resource: PosResource) -> PosTerminalProtocol:
    """The ECR link to ``resource`` over pyserial (any port or URL)."""
    from paylab.drivers.pos.serial_pos import SerialPosTerminal

    return SerialPosTerminal(resource.url, baudrate=resource.baudrate, name=resource.name)


def open_host(rig_name: str, resource: SshHostResource, *, connect_timeout: float = 5.0) -> RigHostProtocol:
    """The rig host over ssh, host key pinned to the inventory's known_hosts."""
    from paylab.drivers.righost import FabricRigHost

    return FabricRigHost(rig_name, resource.address, resource.port, resource.user, key_filename=resource.key,
                         known_hosts=resource.known_hosts, connect_timeout=connect_timeout)


def open_card_image(slot: CardSlot) -> Any:
    """A paylab secure element (:class:`~paylab.drivers.se.runtime.SecureElement`) from the slot's card image."""
    from paylab.drivers.errors import ReaderUnavailable
    from paylab.drivers.se.catalog_default import default_catalog
    from paylab.drivers.se.form_factor import FORM_FACTORS
    from paylab.drivers.se.image import CardImage
    from paylab.drivers.se.runtime import SecureElement

    assert slot.image is not None
    if not slot.image.is_file():
        raise ReaderUnavailable("card image file missing", resource=slot.name, detail=str(slot.image))
    return SecureElement(CardImage(slot.image), FORM_FACTORS[slot.placement], default_catalog())


# -- the bound rig --------------------------------------------------------------------------------------
class BoundRig:
    """A rig whose resources are bound to drivers (module docstring). ``cards`` maps slot names to
    the emulated cards behind them and ``handsets`` handset names to handset objects, when the rig
    owns such (``sim``, or a bench serving paylab secure elements)."""

    def __init__(self, rig: Rig, *, cards: dict[str, Any] | None = None, handsets: dict[str, Any] | None = None
                 ) -> None:
        self.rig = rig
        self.cards: dict[str, Any] = dict(cards or {})
        self.handsets: dict[str, Any] = dict(handsets or {})
        self._open: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.rig.name

    @property
    def backend_endpoints(self) -> BackendEndpoints:
        """Where the rig's acquirer and backend HTTP services are."""
        return self.rig.backend

    def _shared(self, kind: str, name: str, make: Any) -> Any:
        with self._lock:
            key = (kind, name)
            if key not in self._open:
                self._open[key] = make()
            return self._open[key]

    def reader_resource(self, name: str) -> ReaderResource:
        found = self.rig.find_reader(name)
        if found is None:
            raise UnknownResource(self.rig.name, "reader", name, [r.name for r in self.rig.readers])
        return found

    def antenna_resource(self, name: str) -> AntennaResource:
        found = self.rig.find_antenna(name)
        if found is None:
            raise UnknownResource(self.rig.name, "antenna", name, [a.name for a in self.rig.antennas])
        return found

    def pos_resource(self, name: str | None = None) -> PosResource:
        found = self.rig.pos[0] if name is None and self.rig.pos else self.rig.find_pos(name or "")
        if found is None:
            raise UnknownResource(self.rig.name, "pos", name, [p.name for p in self.rig.pos])
        return found

    def reader(self, name: str) -> CardReaderProtocol:
        """The terminal-side reader ``name`` (shared; closed with the rig)."""
        resource = self.reader_resource(name)
        return self._shared("reader", name, lambda: open_reader(resource))  # type: ignore[no-any-return]

    def antenna(self, name: str) -> CardEmulatorProtocol | CardReaderProtocol:
        """The NFC antenna ``name``: a card emulator or a reader by its role (shared)."""
        resource = self.antenna_resource(name)
        return self._shared("antenna", name, lambda: open_antenna(resource))  # type: ignore[no-any-return]

    def pos(self, name: str | None = None) -> PosTerminalProtocol:
        """The POS terminal ``name`` (the first one when omitted; shared)."""
        resource = self.pos_resource(name)
        return self._shared("pos", resource.name, lambda: open_pos(resource))  # type: ignore[no-any-return]

    def host(self) -> RigHostProtocol:
        """The rig host over ssh (shared)."""
        resource = self.rig.host
        if resource is None:
            raise UnknownResource(self.rig.name, "host", None, [])
        return self._shared("host", "host", lambda: open_host(self.rig.name, resource))  # type: ignore[no-any-return]

    def card(self, slot: str) -> Any:
        """The emulated card (an :class:`~paylab.drivers.protocols.ApduCard`) sitting in ``slot``: the
        one the rig brought up, else a paylab secure element opened from the slot's card image."""
        with self._lock:
            if slot in self.cards:
                return self.cards[slot]
            resource = self.rig.find_slot(slot)
            if resource is None or resource.image is None:
                known = [s.name for s in self.rig.slots if s.image is not None or s.name in self.cards]
                raise UnknownResource(self.rig.name, "emulated card in slot", slot, known)
            self.cards[slot] = open_card_image(resource)
            return self.cards[slot]

    def handset(self, name: str) -> Any:
        """The handset ``name`` (:class:`~paylab.drivers.handset.Handset`): the one the rig brought up,
        else a simulated phone around the emulated card of its slot (reaching the rig's backend)."""
        if name in self.handsets:
            return self.handsets[name]
        resource = self.rig.find_handset(name)
        if resource is None:
            raise UnknownResource(self.rig.name, "handset", name, [h.name for h in self.rig.handsets])
        card = self.card(resource.slot)
        slot = self.rig.find_slot(resource.slot)
        assert slot is not None
        from paylab.drivers.handset import Handset

        return self._shared("handset", name, lambda: Handset(
            card, se_id=name, msisdn=resource.msisdn, placement=slot.placement, name=name,
            backend_http_url=self.rig.backend.http_url))

    def close(self) -> None:
        """Close every driver object handed out (idempotent; one failing does not stop the others)."""
        with self._lock:
            opened, self._open = list(self._open.values()), {}
        for driver in reversed(opened):
            with contextlib.suppress(Exception):
                driver.close()

    def __enter__(self) -> BoundRig:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def bind(rig: Rig) -> BoundRig:
    """Bind an inventory rig (for ``sim`` use :class:`~.sim.SimRig`, which allocates the resources first)."""
    if rig.builtin:
        raise PaylabError(f"rig {rig.name} is built in: bring it up with SimRig (paylab rigs up {rig.name})")
    return BoundRig(rig)
