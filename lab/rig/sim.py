"""The built-in rig ``sim``: everything a bench has, brought up by paylab itself on this machine.

:class:`SimRig` starts, in this order (each piece stopped again, by PID where it is a process, in
reverse order by :meth:`SimRig.stop`, also when a later piece fails to start):

1. the embedded reference backend (:class:`~paylab.lab.backend.runner.EmbeddedBackend`, state in a
   temp dir): acquirer → switch → issuers on loopback TCP, HTTP services, TSMs;
2. emulated secure elements issued the way a TSM does it (:func:`~paylab.lab.issuance.issue_pboc`,
   bundled profiles): a SIM-form card in the contact reader, an eSE-form card in the contactless
   reader, and one SE per handset (SIM, microSD, eSE);
3. the process's private pcscd (:meth:`ManagedPcscd.for_process`, so pyscard in this process and
   ``PCSCLITE_CSOCK_NAME`` clients reach it) with the two cards inserted through vpcd bridges;
4. two simulated NFC airs (nfcpy ``udp:127.0.0.1:PORT``, the same path on both sides): ``pad``, the
   antenna the handsets tap on, whose reader side belongs to the POS simulator; and the lab's own
   pair, reader ``nfc`` + emulator antenna ``lab-pad``;
5. the POS simulator process on a pty (``/dev/pts/N``), signed on with the acquirer, its terminal
   kernel reading the ``pad`` air.

The result is an ordinary :class:`~.resources.Rig` (resources with concrete names, paths and
ports) bound like any bench (:attr:`SimRig.bound`, a :class:`~.binding.BoundRig`). Missing system
pieces raise :class:`~paylab.drivers.errors.SimulationUnavailable` naming what to install.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paylab.drivers.errors import SimulationUnavailable

from ..protocol.errors import PaylabError
from .binding import BoundRig
from .inventory import SIM_RIG, SIM_RIG_NAME
from .resources import (
    AntennaResource,
    BackendEndpoints,
    CardSlot,
    EquipmentIdentity,
    HandsetResource,
    PosResource,
    ReaderResource,
    Rig,
)

DEFAULT_PROFILE = "pboc_debit_ecash_sm4"
CONTACTLESS_PROFILE = "pboc_credit_ecash_3des"
ODA_SEED = 7
HANDSET_PLACEMENTS: tuple[str, ...] = ("sim", "microsd", "ese")
_CHAINS: dict[str, Any] = {}
_CHAIN_LOCK = threading.Lock()
NFC_INSTALL_HINT = "pip install nfcpy (needs the system package libusb-1.0-0: apt-get install libusb-1.0-0)"


@dataclass
class _Stack:
    """Undo actions, run last-in first-out; each one runs even when another fails."""

    actions: list[tuple[str, Callable[[], Any]]]

    def push(self, what: str, action: Callable[[], Any]) -> None:
        self.actions.append((what, action))

    def unwind(self) -> list[str]:
        errors: list[str] = []
        while self.actions:
            what, action = self.actions.pop()
            try:
                action()
            except Exception as exc:  # keep stopping the rest
                errors.append(f"{what}: {type(exc).__name__}: {exc}")
        return errors


def check_prerequisites() -> None:
    """:class:`SimulationUnavailable` saying exactly what to install when a piece is missing."""
    from paylab.drivers.pcsc import check_installed

    check_installed()
    try:
        import nfc  # noqa: F401
    except Exception as exc:  # ImportError, or libusb missing when nfcpy loads its drivers
        raise SimulationUnavailable(f"the simulated NFC antennas need nfcpy: {NFC_INSTALL_HINT} ({exc})",
                                    resource="nfc") from None


class SimRig:
    """The built-in simulated rig (module docstring). ``with SimRig() as sim: sim.bound.reader("contact")``.

    ``pos=False`` skips the POS simulator process (the slowest piece to start).
    """

    def __init__(self, *, state_dir: Path | None = None, pos: bool = True, profile: str = DEFAULT_PROFILE,
                 contactless_profile: str = CONTACTLESS_PROFILE, start_timeout: float = 20.0) -> None:
        self.profile_name = profile
        self.contactless_profile_name = contactless_profile
        self.with_pos = pos
        self.start_timeout = start_timeout
        self._state_dir_arg = state_dir
        self.state_dir: Path | None = None
        self.backend: Any = None
        self.pcscd: Any = None
        self.pos_process: Any = None
        self.bridges: dict[str, Any] = {}
        self.handsets: dict[str, Any] = {}
        self.cards: dict[str, Any] = {}
        self.rig: Rig = SIM_RIG
        self.bound: BoundRig = BoundRig(SIM_RIG)
        self.started_in_s: float = 0.0
        self.started_pids: dict[str, int] = {}
        """PIDs of the processes this rig started (kept after stop, so callers can check they are gone)."""
        self.nfc_paths: dict[str, str] = {}
        self._stack = _Stack([])
        self._lock = threading.Lock()
        self._started = False
        self._ids = itertools.count(1)
        self._slots_taken: list[Any] = []

    # -- lifecycle --------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._started

    def start(self) -> SimRig:
        """Bring every piece up (module docstring); on any failure stop what was started and re-raise."""
        with self._lock:
            if self._started:
                return self
            begin = time.perf_counter()
            self.started_pids = {}
            check_prerequisites()
            try:
                self._start_all()
            except BaseException:
                self._stack.unwind()
                self._forget()
                raise
            self._started = True
            self.started_in_s = time.perf_counter() - begin
            return self

    def stop(self) -> list[str]:
        """Stop everything started, last first (idempotent); returns problems met while stopping."""
        with self._lock:
            errors = self._stack.unwind()
            self._forget()
            return errors

    def _forget(self) -> None:
        """Drop references to what ran (after the undo stack has stopped it)."""
        self._started = False
        self.backend = self.pcscd = self.pos_process = None
        self.bridges.clear()
        self.handsets.clear()
        self.cards.clear()
        self.bound = BoundRig(SIM_RIG)
        self.rig = SIM_RIG

    def __enter__(self) -> SimRig:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start_all(self) -> None:
        from paylab.drivers.handset import Handset
        from paylab.drivers.nfc import free_udp_path
        from paylab.drivers.pcsc import ManagedPcscd, VpcdCardBridge

        from ..backend.config import load_config
        from ..backend.runner import EmbeddedBackend

        if self._state_dir_arg is None:
            self.state_dir = Path(tempfile.mkdtemp(prefix="paylab-sim-"))
            state_dir = self.state_dir
            self._stack.push("state dir", lambda: shutil.rmtree(state_dir, ignore_errors=True))
        else:
            self.state_dir = Path(self._state_dir_arg)
            self.state_dir.mkdir(parents=True, exist_ok=True)

        # 1. backend
        config = load_config(overrides={"state_dir": self.state_dir / "backend"})
        backend = EmbeddedBackend(config)
        self._stack.push("backend", backend.stop)
        backend.start(start_timeout=self.start_timeout)
        self.backend = backend

        # 2. the POS simulator process starts (in the background) while the cards are issued
        pos_air = free_udp_path()
        lab_air = free_udp_path()
        self.nfc_paths = {"pad": pos_air, "nfc": lab_air, "lab-pad": lab_air}
        pos_thread: threading.Thread | None = None
        pos_failure: list[BaseException] = []
        if self.with_pos:
            pos_thread = self._start_pos(pos_air, pos_failure)

        self.cards["contact-card"] = self._issued_se("sim", self.profile_name, "contact-card")
        self.cards["contactless-card"] = self._issued_se("ese", self.contactless_profile_name, "contactless-card")
        # 3. pcscd + vpcd bridges
        already = ManagedPcscd.process_instance()
        was_running = already is not None and already.running
        pcscd = self._process_pcscd(ManagedPcscd)
        if not was_running:
            self._stack.push("pcscd", pcscd.stop)
            if pcscd.pid is not None:
                self.started_pids["pcscd"] = pcscd.pid
        self.pcscd = pcscd
        for slot_name, contactless in (("contact-card", False), ("contactless-card", True)):
            vpcd_slot = pcscd.allocate_slot(contactless=contactless)
            self._stack.push(f"vpcd slot {vpcd_slot.reader_name}", lambda s=vpcd_slot: pcscd.release_slot(s))
            bridge = VpcdCardBridge.for_slot(self.cards[slot_name], vpcd_slot)
            self._stack.push(f"vpcd bridge {vpcd_slot.reader_name}", bridge.close)
            bridge.insert(timeout=self.start_timeout)
            self.bridges["contactless" if contactless else "contact"] = bridge

        # (the handsets' SEs are issued while pcscd polls the readers)
        for placement in HANDSET_PLACEMENTS:
            self.cards[f"se-{placement}"] = self._issued_se(placement, self.profile_name, f"se-{placement}")

        # 4. handsets
        http = backend.http_url
        for index, placement in enumerate(HANDSET_PLACEMENTS, start=1):
            handset = Handset(self.cards[f"se-{placement}"], se_id=f"sim-{placement}", msisdn=f"+861380000000{index}",
                              placement=placement, backend_http_url=http, name=f"phone-{placement}")
            self._stack.push(f"handset {placement}", handset.close)
            self.handsets[f"phone-{placement}"] = handset

        # 5. the POS simulator started in step 2 must be answering by now
        pos_resources: tuple[PosResource, ...] = ()
        if pos_thread is not None:
            pos_thread.join(self.start_timeout + 5.0)
            if pos_failure or pos_thread.is_alive():
                raise pos_failure[0] if pos_failure else SimulationUnavailable(
                    "the POS simulator did not start in time", resource="pos-1")
            identity = self.pos_process.identity
            self.started_pids["pos-simulator"] = self.pos_process.pid
            pos_resources = (PosResource(name="pos-1", url=self.pos_process.port, identity=EquipmentIdentity(
                vendor="paylab", model=identity.model, serial=identity.serial, firmware=identity.firmware)),)

        self.rig = self._describe_rig(pos_resources)
        self.bound = BoundRig(self.rig, cards=dict(self.cards), handsets=dict(self.handsets))
        self._stack.push("bound drivers", lambda: self.bound.close())
        # the card-side antennas bind their UDP ports now, so that no parallel session can take a port
        # between its choice above and the first tap (the POS reader would then read a foreign air)
        for antenna in ("pad", "lab-pad"):
            self.bound.antenna(antenna)
        # pcscd polls its readers every 400 ms: ready means both cards are seen
        for reader in ("contact", "contactless"):
            self.bound.reader(reader).wait_for_card(self.start_timeout)

    @staticmethod
    def _process_pcscd(managed: Any, attempts: int = 3) -> Any:
        """The process's pcscd; retried when its freshly chosen vpcd ports were taken meanwhile by
        another process (parallel test sessions race for free ports)."""
        for attempt in range(attempts):
            running = managed.process_instance()
            try:
                if running is not None and running.running:  # counts are minimums: the sim needs one of each
                    return managed.for_process(readers=1, contactless_readers=1)
                return managed.for_process()  # first in the process: the standard counts, for later users too
            except ValueError as exc:
                raise SimulationUnavailable(f"the process pcscd cannot serve the simulated rig: {exc}",
                                            resource="pcscd") from None
            except SimulationUnavailable as exc:
                if "port" not in str(exc) or attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def _start_pos(self, reader_path: str, failure: list[BaseException]) -> threading.Thread:
        """Spawn the POS simulator in a thread (it takes a few hundred ms to answer); errors land in ``failure``."""
        from paylab.drivers.pos.launcher import PosSimulatorProcess
        from paylab.drivers.pos.simulator import SimulatorConfig, ca_key_entry

        from .. import profiles

        acquirer_host, acquirer_port = self.backend.addresses["acquirer"]
        terminal = self.backend.config.terminals[0]
        ca_keys, seen = [], set()
        for name in (self.profile_name, self.contactless_profile_name):
            key = self._chain(profiles.load_bundled(name)).ca_public
            if (key.rid, key.index) not in seen:
                seen.add((key.rid, key.index))
                ca_keys.append(ca_key_entry(key))
        config = SimulatorConfig(acquirer_host=acquirer_host, acquirer_port=acquirer_port, tid=terminal.tid,
                                 mid=terminal.mid, tmk=terminal.tmk.hex().upper(), reader=reader_path,
                                 ca_keys=ca_keys, serial="SIM-POS-0001")
        assert self.state_dir is not None
        process = PosSimulatorProcess(config, log_path=self.state_dir / "pos-simulator.log",
                                      ready_timeout=self.start_timeout)
        self.pos_process = process

        def run() -> None:
            try:
                process.start()
            except BaseException as exc:  # handed to start(), which raises it
                failure.append(exc)

        thread = threading.Thread(target=run, name="sim-pos-start", daemon=True)

        def stop_pos() -> None:
            thread.join(self.start_timeout + 5.0)  # never close it under a start still running
            if process.pid is not None:
                self.started_pids.setdefault("pos-simulator", process.pid)
            process.close()

        self._stack.push("POS simulator", stop_pos)
        thread.start()
        return thread

    def _describe_rig(self, pos: tuple[PosResource, ...]) -> Rig:
        contact = self.bridges["contact"]
        contactless = self.bridges["contactless"]
        readers = (
            ReaderResource(name="contact", driver="pcsc", contactless=False, pattern=f"^{re.escape(contact.name)}$",
                           identity=EquipmentIdentity(vendor="vsmartcard", model="vpcd")),
            ReaderResource(name="contactless", driver="pcsc", contactless=True,
                           pattern=f"^{re.escape(contactless.name)}$",
                           identity=EquipmentIdentity(vendor="vsmartcard", model="vpcd")),
            ReaderResource(name="nfc", driver="nfc", contactless=True, device=self.nfc_paths["nfc"],
                           identity=EquipmentIdentity(vendor="nfcpy", model="udp")),
        )
        antennas = (
            AntennaResource(name="pad", device=self.nfc_paths["pad"], role="emulator",
                            identity=EquipmentIdentity(vendor="nfcpy", model="udp")),
            AntennaResource(name="lab-pad", device=self.nfc_paths["lab-pad"], role="emulator",
                            identity=EquipmentIdentity(vendor="nfcpy", model="udp")),
        )
        slots = (
            CardSlot(name="contact-card", placement="sim", holder="contact", profile=self.profile_name,
                     image=self.cards["contact-card"].image.path),
            CardSlot(name="contactless-card", placement="ese", holder="contactless",
                     profile=self.contactless_profile_name, image=self.cards["contactless-card"].image.path),
            *(CardSlot(name=f"se-{p}", placement=p, holder=f"phone-{p}", profile=self.profile_name,  # type: ignore[arg-type]
                       image=self.cards[f"se-{p}"].image.path) for p in HANDSET_PLACEMENTS),
        )
        handsets = tuple(HandsetResource(name=f"phone-{p}", slot=f"se-{p}", msisdn=self.handsets[f"phone-{p}"].msisdn,
                                         antenna="pad") for p in HANDSET_PLACEMENTS)
        backend = BackendEndpoints(acquirer=tuple(self.backend.addresses["acquirer"]),  # type: ignore[arg-type]
                                   http_url=self.backend.http_url)
        capabilities = tuple(c for c in SIM_RIG.capabilities if c != "pos" or pos)
        return Rig(name=SIM_RIG_NAME, description=SIM_RIG.description, capabilities=capabilities, readers=readers,
                   antennas=antennas, pos=pos, slots=slots, handsets=handsets, backend=backend, builtin=True,
                   source=SIM_RIG.source)

    def on_stop(self, what: str, action: Callable[[], Any]) -> None:
        """Run ``action`` when the rig stops, before the pieces started so far (e.g. close the
        acquirer links a test session opened before the backend goes away)."""
        if not self._started:
            raise PaylabError("the simulated rig is not running: start() it first")
        self._stack.push(what, action)

    def oda_chain(self, profile: Any) -> Any:
        """The TEST ODA chain (CA → issuer → ICC keys) the rig's cards of ``profile`` are personalised
        with; its CA public key is the one the POS simulator and the lab's kernels trust."""
        return self._chain(profile)

    # -- cards ------------------------------------------------------------------------------------------
    def _chain(self, profile: Any) -> Any:
        """The profile's TEST ODA chain; deterministic (seeded), so generated once per process."""
        from ..protocol import cps

        with _CHAIN_LOCK:
            if profile.name not in _CHAINS:
                _CHAINS[profile.name] = cps.generate_oda_chain(profile, seed_or_rng=ODA_SEED)
            return _CHAINS[profile.name]

    def _blank_se(self, placement: str, label: str) -> Any:
        from paylab.drivers.se.form_factor import FORM_FACTORS

        from ..issuance import blank_se

        if placement not in FORM_FACTORS:
            raise ValueError(f"placement must be one of {', '.join(FORM_FACTORS)}, not {placement!r}")
        assert self.state_dir is not None
        return blank_se(self.state_dir / f"{label}.card", FORM_FACTORS[placement], durable=False)

    def _issued_se(self, placement: str, profile_name: str, label: str) -> Any:
        from paylab.drivers.se.form_factor import FORM_FACTORS

        from .. import profiles
        from ..issuance import issued_se

        if placement not in FORM_FACTORS:
            raise ValueError(f"placement must be one of {', '.join(FORM_FACTORS)}, not {placement!r}")
        assert self.state_dir is not None
        profile = profiles.load_bundled(profile_name)
        return issued_se(self.state_dir / f"{label}.card", FORM_FACTORS[placement], profile,
                         oda=self._chain(profile), durable=False)

    def fresh_se(self, placement: str, *, issued: bool = True, profile: str = DEFAULT_PROFILE,
                 msisdn: str | None = None) -> Any:
        """A new handset (:class:`~paylab.drivers.handset.Handset`, its SE as ``.se``) with a ``placement``
        secure element: issued with ``profile`` (PBOC applet personalised, contactless active), or blank
        from the factory and registered with the operator's SEI-TSM for OTA-issuance tests
        (``issued=False``). Closed by :meth:`stop`."""
        from paylab.drivers.handset import Handset

        if not self._started:
            raise PaylabError("the simulated rig is not running: start() it first")
        number = next(self._ids)
        se_id = f"sim-fresh-{placement}-{number}"
        msisdn = msisdn or f"+86139{number:08d}"
        if issued:
            se = self._issued_se(placement, profile, se_id)
            handset = Handset(se, se_id=se_id, msisdn=msisdn, placement=placement,  # type: ignore[arg-type]
                              backend_http_url=self.backend.http_url, name=se_id)
        else:
            tsm = self.backend.tsm
            operator = next(i.name for i in self.backend.config.institutions if i.kind == "operator")
            assert self.state_dir is not None
            stand_in = tsm.manufacture(se_id, placement, owner=operator, msisdn=msisdn,
                                       image_path=self.state_dir / f"{se_id}.card")
            handset = Handset.replacing(stand_in, placement=placement,  # type: ignore[arg-type]
                                        backend_http_url=self.backend.http_url, name=se_id)
            tsm.services.handsets[se_id] = handset
        self._stack.push(f"handset {se_id}", handset.close)
        return handset

    # -- what it exposes --------------------------------------------------------------------------------
    def pids(self) -> dict[str, int]:
        """PIDs of the processes the rig runs (pcscd, the POS simulator)."""
        out: dict[str, int] = {}
        if self.pcscd is not None and self.pcscd.pid is not None:
            out["pcscd"] = self.pcscd.pid
        if self.pos_process is not None and self.pos_process.pid is not None:
            out["pos-simulator"] = self.pos_process.pid
        return out

    def describe(self) -> dict[str, Any]:
        """What the rig exposes, for engineers' own tools (``paylab rigs up sim`` prints it)."""
        if not self._started:
            return {"rig": SIM_RIG_NAME, "running": False}
        rig = self.rig
        socket_path = self.pcscd.socket_path
        return {
            "rig": SIM_RIG_NAME,
            "running": True,
            "capabilities": list(rig.capabilities),
            "pcsc": {
                "socket": socket_path,
                "env": {"PCSCLITE_CSOCK_NAME": socket_path},
                "readers": [{"resource": key, "name": bridge.name, "contactless": key == "contactless",
                             "card": self._slot_text("contact-card" if key == "contact" else "contactless-card")}
                            for key, bridge in self.bridges.items()],
            },
            "nfc": {
                "pad": {"path": self.nfc_paths["pad"], "role": "emulator",
                        "note": "handsets tap here; the POS simulator's reader reads this air"},
                "nfc": {"path": self.nfc_paths["nfc"], "role": "reader", "note": "the lab's own NFC reader"},
                "lab-pad": {"path": self.nfc_paths["lab-pad"], "role": "emulator", "note": "card side of the nfc air"},
            },
            "pos": [{"name": p.name, "device": p.url, "baudrate": p.baudrate, **p.identity.as_dict()}
                    for p in rig.pos],
            "handsets": [{"name": h.name, "se": h.slot, "placement": self.handsets[h.name].placement,
                          "se_id": self.handsets[h.name].se_id, "msisdn": h.msisdn, "taps_on": h.antenna}
                         for h in rig.handsets],
            "backend": {name: f"{host}:{port}" for name, (host, port) in self.backend.addresses.items()}
            | {"http_url": self.backend.http_url, "health": f"{self.backend.http_url}/health"},
            "pids": self.pids(),
            "state_dir": str(self.state_dir),
        }

    def _slot_text(self, slot_name: str) -> str:
        slot = self.rig.find_slot(slot_name)
        return f"{slot.placement} card, profile {slot.profile}" if slot else ""

    def describe_lines(self) -> list[str]:
        """:meth:`describe` as lines for a terminal."""
        d = self.describe()
        if not d.get("running"):
            return ["rig sim: not running"]
        pcsc = d["pcsc"]
        lines = ["rig sim: up", f"PC/SC (pcscd socket): export PCSCLITE_CSOCK_NAME={pcsc['socket']}"]
        lines += [f"  reader {r['resource']:<12} {r['name']!r}: {r['card']}" for r in pcsc["readers"]]
        lines.append(f"  try: PCSCLITE_CSOCK_NAME={pcsc['socket']} pcsc_scan -r")
        lines.append("NFC (nfcpy device paths):")
        lines += [f"  {name:<8} {v['path']:<22} {v['role']:<9} {v['note']}" for name, v in d["nfc"].items()]
        for p in d["pos"]:
            lines.append(f"POS {p['name']}: serial device {p['device']} @{p['baudrate']} baud ({p.get('model', '')}, "
                         f"serial number {p.get('serial', '')}, pid {d['pids'].get('pos-simulator')})")
        lines.append("handsets:")
        lines += [f"  {h['name']:<14} {h['placement']:<8} SE id {h['se_id']}, MSISDN {h['msisdn']}, taps on "
                  f"{h['taps_on']}" for h in d["handsets"]]
        lines.append("backend:")
        lines += [f"  {name:<14} {value}" for name, value in d["backend"].items()]
        lines.append("pids: " + ", ".join(f"{k} {v}" for k, v in d["pids"].items()) + f" (this process {os.getpid()})")
        return lines


def sim_available() -> str | None:
    """None when the simulated rig can start here, else what to install."""
    try:
        check_prerequisites()
    except SimulationUnavailable as exc:
        return str(exc)
    return None

