"""NFC card emulation over nfcpy: a Type 4 (ISO/IEC 14443-4) target serving an :class:`ApduCard`.

nfcpy has nothing above raw frames on the card side, so the block protocol is
:class:`~paylab.lab.protocol.iso14443.Iso14443Target` (pure) driven from a background link thread:

* listen as a Type 4A target (``106A``; ``106B`` exists only in simulation: the udp pseudo-driver),
* answer RATS with the ATS (historical bytes from the card's ATR unless an ATS is given) — CLFs that
  answer RATS themselves hand over the first I-block instead: both are normalised,
* power the card on with ``interface="contactless"`` at activation, pass each APDU to it (traced
  through :meth:`traced`), send S(WTX) while it computes longer than half the frame waiting time,
* field off (nfcpy ``RFOFF`` -> :class:`~paylab.drivers.errors.FieldLost`) or S(DESELECT) -> the
  card is powered off and the emulator listens for the next tap.

Card calls run on their own worker thread (:mod:`.worker`) so S(WTX) goes out while the card works.
:meth:`withdraw` is lifting the phone: the emulator stops answering at once (mid-APDU too) and the
card is powered off as soon as its current APDU returns.

Tracers registered with :meth:`add_tracer` are called on the card worker thread. Bench note: with a
``usb:`` CLF (RC-S380 / PN53x) the same loop applies, but receiving with no frame to send
(``exchange(None, t)``) has only been exercised on the udp pseudo-driver.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import nfc.clf

from paylab.lab.protocol.iso14443 import (
    ActivationError,
    Atqb,
    Ats,
    Block,
    BlockKind,
    Iso14443Error,
    Iso14443Target,
    TargetState,
    atr_historical_bytes,
)

from ..errors import FieldLost
from ..protocols.card import ApduCard, CardEmulatorProtocol
from . import udp_patch
from .frontend import open_frontend
from .worker import CardWorker

CARD_CALL_TIMEOUT = 5.0
"""Longest wait for a card's power_on (the RATS answer waits for it only when the CLF answered RATS)."""
ANTICOLLISION = (b"\x26", b"\x52")
IDLE_TAP_TIMEOUT = 1.0
"""Type B: SENSB answered but no ATTRIB within this time -> back to listening."""
LINK_LOST_AFTER = 2.0
"""No S(WTX) response from the reader within this time -> the tap is over."""


@dataclass
class EmulatorEvents:
    """What the link thread saw (counters for tests and the equipment log)."""

    activations: int = 0
    field_lost: int = 0
    deselected: int = 0
    withdrawn_mid_apdu: int = 0
    wtx_sent: int = 0
    chained_in: int = 0
    chained_out: int = 0
    retransmissions: int = 0
    bad_frames: int = 0
    card_errors: list[str] = field(default_factory=list)
    last_field_loss: FieldLost | None = None


class _Leave(Exception):
    """End the current tap: ``reason`` is "withdrawn", "closing", "field-lost", "deselected", "card-dead"."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class NfcCardEmulator(CardEmulatorProtocol):
    """``NfcCardEmulator("udp:127.0.0.1:PORT")``: present a card to whatever reader polls that path.

    ``technology``: ``"106A"`` (Type 4A) or ``"106B"`` (Type 4B, simulation only). ``uid``: NFCID1
    (4/7/10 bytes) for A, PUPI (4 bytes) for B. ``ats``: a fixed ATS (bytes or :class:`Ats`); by
    default FSCI ``fsci``, FWI ``fwi`` and the card's ATR historical bytes. ``max_response_inf`` caps
    the INF of response blocks (forces response chaining below the reader's FSD). ``wtxm`` is the
    multiplier requested with each S(WTX).
    """

    transport_name = "nfc-ce"

    def __init__(self, path: str = "udp:127.0.0.1:54321", *, technology: str = "106A",
                 uid: bytes | None = None, ats: Ats | bytes | None = None, name: str | None = None,
                 fsci: int = 8, fwi: int = 8, wtxm: int = 4, max_response_inf: int | None = None,
                 poll_interval: float = 0.05) -> None:
        super().__init__()
        if technology not in ("106A", "106B"):
            raise ValueError(f"technology must be 106A or 106B, not {technology!r}")
        self.path = path
        self.technology = technology
        self.name = name or f"nfc-ce:{path}"
        self.uid = bytes(uid) if uid is not None else (b"\x08PAY" if technology == "106A" else b"PAYB")
        if technology == "106A" and len(self.uid) not in (4, 7, 10):
            raise ValueError("a Type A UID is 4, 7 or 10 bytes")
        if technology == "106B" and len(self.uid) != 4:
            raise ValueError("a Type B PUPI is 4 bytes")
        self._fixed_ats = Ats.decode(ats) if isinstance(ats, bytes | bytearray) else ats
        self.fsci, self.fwi, self.wtxm = fsci, fwi, wtxm
        self.max_response_inf = max_response_inf
        self.poll_interval = poll_interval
        self._events = EmulatorEvents()
        self._machine_now: Iso14443Target | None = None
        self._stats_lock = threading.Lock()
        self.last_error: BaseException | None = None
        self._apdu_count = 0
        self._card: ApduCard | None = None
        self._ats: Ats | None = None
        self._closing = False
        self._cond = threading.Condition()
        if path.startswith("udp"):
            udp_patch.apply()
        self._clf = open_frontend(path, role="card emulator")
        self._worker = CardWorker(f"{self.name}-card")
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-link", daemon=True)
        self._thread.start()

    # -- public API -----------------------------------------------------------------------------------
    def present(self, card: ApduCard) -> None:
        """Bring ``card`` into the field (replaces a card already presented)."""
        ats = self._fixed_ats or Ats.build(fsci=self.fsci, fwi=self.fwi, historical=self._historical(card))
        with self._cond:
            if self._closing:
                raise RuntimeError(f"{self.name} is closed")
            self._card = card
            self._ats = ats
            self._cond.notify_all()

    def withdraw(self) -> None:
        """Take the card out of the field: stop answering now (idempotent, any thread)."""
        with self._cond:
            had = self._card is not None
            self._card = None
            self._cond.notify_all()
        if had:
            self._wake()

    @property
    def presented(self) -> bool:
        return self._card is not None

    @property
    def events(self) -> EmulatorEvents:
        """A snapshot of the counters, including the tap in progress."""
        with self._stats_lock:
            snapshot = dataclasses.replace(self._events, card_errors=list(self._events.card_errors))
            machine = self._machine_now
            if machine is not None:
                stats = machine.stats
                snapshot.retransmissions += stats.retransmissions
                snapshot.wtx_sent += stats.wtx_requests
                snapshot.chained_in += stats.chained_in
                snapshot.chained_out += stats.chained_out
        return snapshot

    @property
    def apdu_count(self) -> int:
        return self._apdu_count

    @property
    def link_state(self) -> str:
        """``idle`` (listening), ``absent`` (no card presented), or the ISO 14443-4 state of the tap."""
        return self._link_state

    def close(self) -> None:
        """Withdraw, stop the link thread and release the device (idempotent, any thread)."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._card = None
            self._cond.notify_all()
        self._wake()
        if threading.current_thread() is not self._thread:
            self._thread.join(10.0)
        self._worker.close(CARD_CALL_TIMEOUT)
        with contextlib.suppress(Exception):
            self._clf.close()

    # -- helpers ----------------------------------------------------------------------------------------
    _link_state = "absent"

    @staticmethod
    def _historical(card: ApduCard) -> bytes:
        atr = getattr(card, "atr", None)
        if isinstance(atr, bytes | bytearray) and atr:
            with contextlib.suppress(ActivationError):
                return atr_historical_bytes(bytes(atr))[:15]
        return b""

    def _wake(self) -> None:
        device = getattr(self._clf, "device", None)
        if device is not None:
            udp_patch.wake(device)

    def _local_target(self) -> nfc.clf.LocalTarget:
        if self.technology == "106A":
            sens_res = b"\x04\x00" if len(self.uid) == 4 else (b"\x44\x00" if len(self.uid) == 7 else b"\x84\x00")
            return nfc.clf.LocalTarget("106A", sens_res=bytearray(sens_res), sdd_res=bytearray(self.uid),
                                       sel_res=bytearray(b"\x20"))
        return nfc.clf.LocalTarget("106B", sensb_res=bytearray(self._atqb().encode()))

    def _atqb(self) -> Atqb:
        return Atqb(self.uid, fsci=self.fsci, fwi=self.fwi)

    def _machine(self, ats: Ats) -> Iso14443Target:
        if self.technology == "106B":
            return Iso14443Target(atqb=self._atqb(), wtxm=self.wtxm, max_inf=self.max_response_inf)
        return Iso14443Target(ats=ats, wtxm=self.wtxm, max_inf=self.max_response_inf)

    def _check(self, card: ApduCard) -> None:
        if self._closing:
            raise _Leave("closing")
        if self._card is not card:
            raise _Leave("withdrawn")

    # -- the link thread ----------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closing and self._card is None:
                    self._link_state = "absent"
                    self._cond.wait(0.5)
                if self._closing:
                    return
                card, ats = self._card, self._ats
            try:
                self._link_state = "idle"
                udp_patch.drain(self._clf.device)
                while self._card is card and not self._closing:
                    target = self._listen()
                    if target is not None and self._card is card and not self._closing:
                        self._tap(card, ats or Ats.build(), target)
            except Exception as error:
                self.last_error = error
                time.sleep(self.poll_interval)

    def _listen(self) -> Any:
        try:                                    # the udp driver waits >= 0.5 s per receive otherwise
            with udp_patch.capped_receive(self._clf.device, self.poll_interval):
                return self._clf.listen(self._local_target(), self.poll_interval)
        except nfc.clf.CommunicationError:
            return None

    def _tap(self, card: ApduCard, ats: Ats, target: Any) -> None:
        """One tap: from the first frame after anticollision to field off / DESELECT / withdraw."""
        machine = self._machine(ats)
        self._machine_now = machine
        first = bytes(target.tt4_cmd or target.tt2_cmd or b"")
        powered = False
        job = None
        try:
            if self.technology == "106A" and first[:1] != b"\xe0":
                try:                                  # a CLF that answered RATS itself: first I-block
                    if Block.decode(first).kind is not BlockKind.I:
                        return
                except Iso14443Error:
                    return
                machine.activated(fsd=256)
                powered = self._power_on(card)
                self._events.activations += 1
            frame: bytes | None = first
            to_send: bytes | None = None
            quiet_since = time.monotonic()
            while True:
                if frame is None and machine.state is TargetState.IDLE \
                        and time.monotonic() - quiet_since > IDLE_TAP_TIMEOUT:
                    return                            # anticollision but no activation: listen again
                if frame is not None:
                    quiet_since = time.monotonic()
                    try:
                        out = machine.receive(frame, time.monotonic())
                    except Iso14443Error:
                        self._events.bad_frames += 1
                        if frame in ANTICOLLISION:
                            raise _Leave("field-reset") from None
                        out = None
                    if out is not None:
                        self._link_state = machine.state.value
                        if out.activated:
                            self._send(out.send)              # the ATS / ATTRIB answer first (30 ms budget)
                            powered = self._power_on(card)
                            self._events.activations += 1
                            to_send = None
                        elif out.deactivated:
                            self._send(out.send)
                            self._events.deselected += 1
                            raise _Leave("deselected")
                        elif out.apdu is not None:
                            job = self._worker.submit(self._transmit_fn(card, out.apdu))
                            to_send = self._await_card(machine, card, job)
                            job = None
                        else:
                            to_send = out.send
                    if machine.state is TargetState.IDLE and self.technology == "106A":
                        return
                frame = self._exchange(card, to_send)
                to_send = None
        except _Leave:
            if job is not None and not job.done:
                self._events.withdrawn_mid_apdu += 1
        finally:
            with self._stats_lock:
                self._events.retransmissions += machine.stats.retransmissions
                self._events.wtx_sent += machine.stats.wtx_requests
                self._events.chained_in += machine.stats.chained_in
                self._events.chained_out += machine.stats.chained_out
                self._machine_now = None
            if powered:
                self._worker.submit(card.power_off)
            self._link_state = "idle"

    def _transmit_fn(self, card: ApduCard, apdu: bytes) -> Any:
        def run() -> bytes:
            self._apdu_count += 1
            return self.traced(apdu, lambda raw: card.transmit(raw, interface="contactless"))

        return run

    def _await_card(self, machine: Iso14443Target, card: ApduCard, job: Any) -> bytes | None:
        """Wait for the card's answer, sending S(WTX) when due; returns the first response block."""
        while True:
            self._check(card)
            due = machine.wtx_due_at()
            wait = self.poll_interval if due is None else max(0.0, min(self.poll_interval, due - time.monotonic()))
            if job.wait(wait):
                break
            wtx = machine.poll(time.monotonic())
            if wtx.send is not None:
                frame = self._exchange(card, wtx.send)
                deadline = time.monotonic() + LINK_LOST_AFTER
                while frame is None:
                    if time.monotonic() > deadline:
                        raise _Leave("link-lost")
                    frame = self._exchange(card, None)
                try:
                    machine.receive(frame, time.monotonic())
                except Iso14443Error:
                    self._events.bad_frames += 1
        self._check(card)
        if job.error is not None:
            self._events.card_errors.append(f"{type(job.error).__name__}: {job.error}")
            raise _Leave("card-dead")
        out = machine.respond(job.result, time.monotonic())
        deadline = time.monotonic() + LINK_LOST_AFTER
        while out.send is None and machine.state is TargetState.WTX_WAIT:
            if time.monotonic() > deadline:
                raise _Leave("link-lost")
            frame = self._exchange(card, None)       # the S(WTX) response is still on its way
            if frame is not None:
                try:
                    out = machine.receive(frame, time.monotonic())
                except Iso14443Error:
                    self._events.bad_frames += 1
        return out.send

    def _power_on(self, card: ApduCard) -> bool:
        job = self._worker.submit(lambda: card.power_on("contactless"))
        if not job.wait(CARD_CALL_TIMEOUT) or job.error is not None:
            self._events.card_errors.append(f"power_on: {job.error!r}")
            raise _Leave("card-dead")
        return True

    def _send(self, frame: bytes | None) -> None:
        if frame is not None:
            with contextlib.suppress(nfc.clf.CommunicationError):
                self._clf.exchange(bytearray(frame), 0)

    def _exchange(self, card: ApduCard, frame: bytes | None) -> bytes | None:
        """Send ``frame`` (if any), then wait one poll interval for the next one (None: nothing yet)."""
        self._check(card)
        try:
            data = self._clf.exchange(bytearray(frame) if frame is not None else None, self.poll_interval)
        except nfc.clf.BrokenLinkError as error:
            lost = FieldLost("the reader switched the field off", resource=self.name, detail=str(error))
            self._events.field_lost += 1
            self._events.last_field_loss = lost
            raise _Leave("field-lost") from None
        except nfc.clf.TimeoutError:
            return None
        except nfc.clf.CommunicationError:
            self._events.bad_frames += 1
            return None
        self._check(card)
        return bytes(data) if data is not None else None
