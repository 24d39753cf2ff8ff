"""Rig health check: one verdict per resource, each check bounded by a timeout.

What is checked (issue 5, "Rig inventory"):

* reader — the reader is there (PC/SC: a reader name matches the pattern; nfc: the device opens);
* slot — the card in a reader answers SELECT: the PPSE (``2PAY.SYS.DDF01``, EMV Book B clause 3.3),
  else the issuer security domain selected by default (``00 A4 04 00 00``, GP Card Spec 2.3 clause 11.9.2.2);
* antenna — a reader antenna activates a probe card presented on an emulator antenna of the same rig
  (same air) when the rig has one, else opens; an emulator antenna opens and presents;
* pos — the terminal answers identify (ECR status: model, serial, firmware);
* host — ``true`` runs over ssh with the pinned host key (:meth:`FabricRigHost.health`);
* handset — the handset's SE answers SELECT PPSE through its NFC route;
* backend — ``GET /health`` answers 200 and the acquirer accepts a TCP connection.

A check that fails, raises or overruns its timeout gives a failed verdict; it never stops the others.
Checks run one after the other in a worker thread each (so a stuck driver cannot hang the check).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from paylab.drivers.direct import DirectReader
from paylab.drivers.protocols import CardEmulatorProtocol, CardReaderProtocol

from ..protocol.apdu import CommandApdu, ResponseApdu
from .binding import BoundRig, bind
from .resources import Rig

PPSE = b"2PAY.SYS.DDF01"
SELECT_PPSE = CommandApdu(0x00, 0xA4, 0x04, 0x00, PPSE, 256).encode()
SELECT_DEFAULT = bytes.fromhex("00A4040000")      # no AID: selects the ISD (GP 2.3 11.9.2.2)
DEFAULT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class ResourceVerdict:
    """The outcome of one resource's check."""

    resource: str
    kind: str
    ok: bool
    detail: str
    duration_ms: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        """``ok   reader/pcsc   contact   <detail> (12.3 ms)``."""
        return f"{'ok' if self.ok else 'FAIL':<4} {self.kind:<17} {self.resource:<14} {self.detail} " \
               f"({self.duration_ms:.1f} ms)"


def _bounded(fn: Callable[[], str], timeout: float) -> tuple[bool, str]:
    """Run ``fn`` in a daemon thread; (ok, detail). Exceptions and overruns become failures."""
    outcome: list[tuple[bool, str]] = []

    def run() -> None:
        try:
            outcome.append((True, fn()))
        except Exception as exc:  # every failure is a verdict, never an escape
            outcome.append((False, f"{type(exc).__name__}: {exc}"))

    worker = threading.Thread(target=run, name="rig-health-check", daemon=True)
    worker.start()
    worker.join(timeout)
    if not outcome:
        return False, f"no answer within {timeout:g} s"
    return outcome[0]


def _sw(response: bytes) -> int:
    return ResponseApdu.decode(response).sw


def select_card(transmit: Callable[[bytes], bytes]) -> str:
    """SELECT the PPSE, else the default application (the ISD); the status words, or an error."""
    sw = _sw(transmit(SELECT_PPSE))
    if sw == 0x9000:
        return "SELECT PPSE 9000"
    isd = _sw(transmit(SELECT_DEFAULT))
    if isd == 0x9000:
        return f"SELECT PPSE {sw:04X}, SELECT ISD 9000"
    raise RuntimeError(f"card does not answer SELECT: PPSE {sw:04X}, ISD {isd:04X}")


class _ProbeCard:
    """A minimal card (an :class:`~paylab.drivers.protocols.ApduCard`) for antenna checks: 9000 to everything."""

    atr = bytes.fromhex("3B8880010000000000000000")

    def power_on(self, interface: str = "contactless") -> bytes:
        return self.atr

    def power_off(self) -> None:
        return None

    def transmit(self, raw: bytes, *, interface: str | None = None) -> bytes:
        return b"\x90\x00"


# -- the checks -------------------------------------------------------------------------------------
def _check_reader(bound: BoundRig, name: str) -> str:
    resource = bound.reader_resource(name)
    reader = bound.reader(name)
    attrs = reader.attributes()
    vendor = " ".join(v for v in (attrs.vendor, attrs.model, attrs.firmware) if v)
    text = f"{attrs.kind} reader {attrs.name!r} present" + (f" ({vendor})" if vendor else "")
    partner = _same_air(bound, resource.device, "emulator") if resource.device else None
    if partner is not None:
        return f"{text}; {_probe_activation(bound, reader, partner)}"
    if any(slot.holder == name for slot in bound.rig.slots):
        reader.wait_for_card(2.0)  # a card is expected: give the stack its polling period to see it
        return f"{text}; card present"
    return f"{text}; {'card present' if reader.card_present() else 'no card'}"


def _probe_activation(bound: BoundRig, reader: CardReaderProtocol, emulator_name: str) -> str:
    """Present a probe card on the emulator antenna sharing the reader's air and activate it."""
    emulator = bound.antenna(emulator_name)
    assert isinstance(emulator, CardEmulatorProtocol)
    if emulator.presented:
        return f"{emulator_name} is presenting a card: activation not tried"
    emulator.present(_ProbeCard())
    try:
        reader.wait_for_card(2.0)
        reader.power_on()
        sw = _sw(reader.transmit(SELECT_PPSE))
    finally:
        try:
            reader.power_off()  # also when activation or the SELECT failed: leave no field on
        finally:
            emulator.withdraw()
    return f"activated a probe card presented on {emulator_name} (SW {sw:04X})"


def _check_slot(bound: BoundRig, name: str) -> str:
    slot = bound.rig.find_slot(name)
    assert slot is not None
    if slot.holder is not None and bound.rig.find_reader(slot.holder) is not None:
        reader = bound.reader(slot.holder)
        reader.wait_for_card(2.0)
        atr = reader.power_on()
        try:
            answer = select_card(reader.transmit)
        finally:
            reader.power_off()
        return f"card in {slot.holder} (ATR {atr.hex().upper()}): {answer}"
    if name in bound.cards or slot.image is not None:
        # a contact reader of our own around the emulated card (T=0 61xx/6Cxx recovered, ISO 7816-4 5.3.4)
        direct = DirectReader(bound.card(name), contactless=False, name=f"{name} (direct)")
        direct.power_on()
        try:
            return f"emulated {slot.placement} card in {slot.holder or '-'}: {select_card(direct.transmit)}"
        finally:
            direct.power_off()
    return f"{slot.placement} card in {slot.holder or '-'}: no reader or image on this rig to reach it, not checked"


def _same_air(bound: BoundRig, device: str, role: str) -> str | None:
    return next((a.name for a in bound.rig.antennas if a.device == device and a.role == role), None)


def _check_antenna(bound: BoundRig, name: str) -> str:
    resource = bound.antenna_resource(name)
    driver = bound.antenna(name)
    if resource.role == "reader":
        reader = driver
        assert isinstance(reader, CardReaderProtocol)
        partner = _same_air(bound, resource.device, "emulator")
        if partner is None:
            return f"reader antenna {resource.device} open; {'card' if reader.card_present() else 'no card'} in field"
        return f"reader antenna {resource.device} open; {_probe_activation(bound, reader, partner)}"
    emulator = driver
    assert isinstance(emulator, CardEmulatorProtocol)
    return f"emulator antenna {resource.device} open ({'presenting' if emulator.presented else 'idle'})"


def _check_pos(bound: BoundRig, name: str) -> str:
    identity = bound.pos(name).identify()
    return f"identify: {identity.model} serial {identity.serial} firmware {identity.firmware}, {identity.status}"


def _check_host(bound: BoundRig, timeout: float) -> str:
    host = bound.host()
    health = getattr(host, "health", None)
    if health is not None:
        return f"ssh ok, `true` round trip {health(timeout=timeout):.1f} ms"
    host.run("true", timeout=timeout)
    return "ssh ok"


def _check_handset(bound: BoundRig, name: str) -> str:
    handset = bound.handset(name)
    route = handset.as_card()
    route.power_on("contactless")
    try:
        answer = select_card(lambda c: route.transmit(c, interface="contactless"))
    finally:
        route.power_off()
    return f"{handset.placement} SE {handset.se_id}: {answer}"


def _check_backend(bound: BoundRig, timeout: float) -> str:
    import httpx

    endpoints = bound.backend_endpoints
    parts: list[str] = []
    if endpoints.http_url is not None:
        response = httpx.get(f"{endpoints.http_url}/health", timeout=timeout)
        if response.status_code != 200:
            raise RuntimeError(f"GET {endpoints.http_url}/health answered {response.status_code}")
        parts.append(f"GET /health 200 at {endpoints.http_url}")
    if endpoints.acquirer is not None:
        host, port = endpoints.acquirer
        with socket.create_connection((host, port), timeout=timeout):
            pass
        parts.append(f"acquirer {host}:{port} accepts TCP")
    return "; ".join(parts)


def _has_image(rig: Rig, slot_name: str) -> bool:
    slot = rig.find_slot(slot_name)
    return slot is not None and slot.image is not None


def check_rig(rig: Rig | BoundRig, *, timeout: float = DEFAULT_TIMEOUT_S) -> list[ResourceVerdict]:
    """Check every resource; one verdict per resource, in inventory order. An inventory :class:`Rig` is
    bound for the check and released after; a :class:`BoundRig` (e.g. ``SimRig.bound``) is used as is."""
    if isinstance(rig, Rig):
        bound = bind(rig)
        try:
            return check_rig(bound, timeout=timeout)
        finally:
            bound.close()
    bound = rig
    rig = bound.rig
    checks: list[tuple[str, str, Callable[[], str]]] = []
    if rig.host is not None:
        checks.append((rig.host.name, "host", lambda: _check_host(bound, timeout)))
    checks += [(r.name, r.kind, lambda n=r.name: _check_reader(bound, n)) for r in rig.readers]  # type: ignore[misc]
    checks += [(a.name, a.kind, lambda n=a.name: _check_antenna(bound, n)) for a in rig.antennas]  # type: ignore[misc]
    checks += [(p.name, p.kind, lambda n=p.name: _check_pos(bound, n)) for p in rig.pos]  # type: ignore[misc]
    checks += [(s.name, s.kind, lambda n=s.name: _check_slot(bound, n)) for s in rig.slots]  # type: ignore[misc]
    checks += [(h.name, h.kind, lambda n=h.name: _check_handset(bound, n))  # type: ignore[misc]
               for h in rig.handsets if h.name in bound.handsets or _has_image(rig, h.slot)]
    if rig.backend.configured:
        checks.append(("backend", "backend", lambda: _check_backend(bound, timeout)))
    verdicts: list[ResourceVerdict] = []
    for resource, kind, fn in checks:
        start = time.perf_counter()
        ok, detail = _bounded(fn, timeout)
        verdicts.append(ResourceVerdict(resource, kind, ok, detail, (time.perf_counter() - start) * 1000))
    return verdicts
