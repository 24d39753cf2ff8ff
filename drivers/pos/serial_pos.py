"""The ECR side of the serial POS link over pyserial: :class:`SerialPosTerminal`.

Frames, messages and the link rules are :mod:`paylab.lab.protocol.ecr` (domain brief section 6):
this module only wires :class:`~paylab.lab.protocol.ecr.EcrLink` (``role="ecr"``) to a real port and a
real clock. One reader thread reads the port (``serial.serial_for_url``: ``/dev/pts/N``, ``socket://``,
``rfc2217://``, ``loop://``), feeds the link, polls its timers every ``poll_interval`` and writes what
the link emits (ACK/NAK, frames, retransmissions). Callers block on their request's completion.

Rules carried out here:

* ACK within ``ack_timeout`` or retransmit, 3 attempts in total -> :class:`PosTimeout` (a POS that
  NAKs a valid frame three times -> :class:`PosProtocolError`);
* a corrupt frame from the POS is NAKed (the link does it) and counted in :attr:`SerialPosTerminal.stats`;
* every K0 keep-alive restarts the response timer;
* a financial request (sale, void, refund) whose outcome is unknown (response timeout, or link failure
  while sending it) is **never re-sent**: the driver sends Q0 and returns the Q1's account of it
  (``raw["recovered_by"] == "query_last"``; result ``NF`` when the POS did not perform it), or raises
  :class:`PosTimeout` naming the request's trace when Q0 is not answered either;
* the port failing to open or breaking -> :class:`PosLinkError`;
* invalid arguments (amount over 12 digits, ``ecr_ref`` over 32 characters, a void/refund ``reference``
  that is neither an RRN nor an ECR trace) raise the protocol core's
  :class:`~paylab.lab.protocol.errors.EcrFrameError` before anything is sent.

Traces start at a random value so that a new driver never repeats the last trace a POS saw (the POS
would take it for a duplicate and replay the old response).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
import warnings
from dataclasses import dataclass, field

import serial

from paylab.drivers.errors import PosLinkError, PosProtocolError, PosTimeout
from paylab.drivers.protocols.pos import PosIdentity, PosResult, PosTerminalProtocol
from paylab.lab.protocol import ecr
from paylab.lab.protocol.errors import EcrFrameError

from .ecr_messages import RESULT_NOT_FOUND, identity_from_message, result_from_message

log = logging.getLogger("paylab.drivers.pos.serial")

POLL_INTERVAL = 0.01
READ_CHUNK = 4096
WRITE_TIMEOUT = 5.0


@dataclass
class _Call:
    """One request waiting for its response."""

    request: ecr.EcrMessage
    done: threading.Event = field(default_factory=threading.Event)
    response: ecr.EcrMessage | None = None
    failure: str | None = None           # why it ended without a response
    nak_failure: bool = False            # ended by three NAKs of a valid frame
    refused: bool = False                # the link refused it (query-last required)
    keep_alives: int = 0
    last_activity: float = field(default_factory=time.monotonic)


@dataclass
class LinkStats:
    """Counters of what the link saw (for tests and reports)."""

    frames_sent: int = 0
    retransmissions: int = 0
    naks_sent: int = 0
    keep_alives: int = 0
    noise_bytes: int = 0
    partial_frames: int = 0
    rejected_messages: int = 0
    duplicate_frames: int = 0
    unsolicited: list[ecr.EcrMessage] = field(default_factory=list)


class SerialPosTerminal(PosTerminalProtocol):
    """An ECR talking to a POS over ``url`` (module docstring). Thread-safe; one request at a time
    (``cancel`` may be called from another thread while a sale waits)."""

    def __init__(self, url: str, *, name: str = "pos", baudrate: int = 115200, ack_timeout: float = ecr.ACK_TIMEOUT,
                 response_timeout: float = ecr.RESPONSE_TIMEOUT, max_attempts: int = ecr.MAX_ATTEMPTS,
                 query_timeout: float = 10.0, poll_interval: float = POLL_INTERVAL,
                 trace_start: int | None = None) -> None:
        self.name = name
        self.url = url
        self.ack_timeout = ack_timeout
        self.response_timeout = response_timeout
        self.query_timeout = query_timeout
        self.poll_interval = poll_interval
        self.stats = LinkStats()
        self._trace = (secrets.randbelow(900_000) + 1) if trace_start is None else max(0, trace_start - 1)
        self._link = ecr.EcrLink("ecr", ack_timeout=ack_timeout, max_attempts=max_attempts,
                                 response_timeout=response_timeout)
        self._lock = threading.Lock()           # the link and the port's write side
        self._request_lock = threading.Lock()   # one request at a time (cancel excepted)
        self._calls: list[_Call] = []
        self._broken: str | None = None
        self._stop = threading.Event()
        try:
            with warnings.catch_warnings():  # pyserial 3.5 rfc2217: Thread.setDaemon/setName
                warnings.filterwarnings("ignore", r"set(Daemon|Name)\(\) is deprecated", DeprecationWarning)
                # pyserial's rfc2217 client does not implement write_timeout
                write_timeout = None if url.startswith("rfc2217://") else WRITE_TIMEOUT
                self._port = serial.serial_for_url(url, baudrate=baudrate, timeout=poll_interval,
                                                   write_timeout=write_timeout)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise PosLinkError("cannot open the ECR port", resource=f"{name} {url}", detail=str(exc)) from exc
        self._thread = threading.Thread(target=self._reader, name=f"ecr-reader-{name}", daemon=True)
        self._thread.start()

    # -- lifecycle -----------------------------------------------------------------------------------
    @property
    def resource(self) -> str:
        return f"{self.name} {self.url}"

    def close(self) -> None:
        """Stop the reader thread and close the port (idempotent)."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=2.0)
        with contextlib.suppress(Exception):
            self._port.close()
        self._fail_all("the ECR link was closed")

    def __enter__(self) -> SerialPosTerminal:
        return self

    # -- reader thread ---------------------------------------------------------------------------------
    def _reader(self) -> None:
        try:
            while not self._stop.is_set():
                data = self._port.read(1)
                if data:
                    waiting = self._port.in_waiting
                    if waiting:
                        data += self._port.read(min(waiting, READ_CHUNK))
                with self._lock:
                    now = time.monotonic()
                    outputs = self._link.feed(data, now) if data else self._link.poll(now)
                    self._handle(outputs)
        except Exception as exc:  # the port broke (EIO on a pty, socket disconnected, ...)
            if not self._stop.is_set():
                log.warning("%s: ECR link broken: %s", self.resource, exc)
                self._broken = f"link broken: {exc}"
                self._fail_all(self._broken)

    def _fail_all(self, reason: str) -> None:
        with self._lock:
            calls, self._calls = self._calls, []
        for call in calls:
            call.failure = call.failure or reason
            call.done.set()

    def _find(self, message: ecr.EcrMessage) -> _Call | None:
        return next((call for call in self._calls if call.request is message), None)

    def _finish(self, call: _Call | None) -> None:
        if call is not None:
            self._calls.remove(call)
            call.done.set()

    def _handle(self, outputs: list[ecr.LinkOutput]) -> None:
        """Write the link's bytes and route its events (called with ``_lock`` held)."""
        for item in outputs:
            if isinstance(item, bytes):
                if item == ecr.NAK_BYTES:
                    self.stats.naks_sent += 1
                elif item != ecr.ACK_BYTES:
                    self.stats.frames_sent += 1
                self._port.write(item)
                continue
            self._route(item)

    def _route(self, event: ecr.EcrEvent) -> None:
        if isinstance(event, ecr.ResponseReceived):
            call = self._find(event.request)
            if call is not None:
                call.response = event.response
            self._finish(call)
        elif isinstance(event, ecr.KeepAlive):
            self.stats.keep_alives += 1
            for call in self._calls:
                call.keep_alives += 1
                call.last_activity = time.monotonic()
        elif isinstance(event, ecr.ResponseTimeout):
            call = self._find(event.request)
            if call is not None:
                call.failure = "no response within the response timeout"
            self._finish(call)
        elif isinstance(event, ecr.LinkFailed):
            call = self._find(event.message)
            if call is not None:
                call.failure = f"not acknowledged after {event.attempts} attempts ({event.reason})"
                call.nak_failure = event.reason == "NAK"
            self._finish(call)
        elif isinstance(event, ecr.QueryLastRequired):
            if event.refused is not None:
                call = self._find(event.refused)
                if call is not None:
                    call.refused = True
                    call.failure = event.reason
                self._finish(call)
        elif isinstance(event, ecr.Retransmission):
            self.stats.retransmissions += 1
        elif isinstance(event, ecr.MessageReceived):
            log.info("%s: unsolicited %s ignored", self.resource, event.message.type)
            self.stats.unsolicited.append(event.message)
        elif isinstance(event, ecr.MessageRejected | ecr.FrameRejected):
            self.stats.rejected_messages += 1
        elif isinstance(event, ecr.NoiseDiscarded):
            self.stats.noise_bytes += len(event.data)
        elif isinstance(event, ecr.PartialFrameDiscarded):
            self.stats.partial_frames += 1
        elif isinstance(event, ecr.DuplicateFrame):
            self.stats.duplicate_frames += 1

    # -- requests ------------------------------------------------------------------------------------
    def _next_trace(self) -> int:
        self._trace = self._trace % 999_999 + 1
        return self._trace

    def _transact(self, message: ecr.EcrMessage, timeout: float | None) -> _Call:
        """Send ``message`` and wait until it is answered, times out or fails (never longer than the
        link's own timers allow, plus a safety margin)."""
        if self._broken is not None or self._stop.is_set():
            raise PosLinkError("the ECR link is down", resource=self.resource, detail=self._broken)
        call = _Call(message)
        response_timeout = self.response_timeout if timeout is None else timeout
        with self._lock:
            if timeout is not None:
                self._link.response_timeout = timeout
            self._calls.append(call)
            try:
                self._handle(self._link.send(message, time.monotonic()))
            except (serial.SerialException, OSError) as exc:
                self._calls.remove(call)
                raise PosLinkError("cannot write to the ECR port", resource=self.resource, detail=str(exc)) from exc
        margin = self.ack_timeout * self._link.max_attempts + 2.0
        while not call.done.wait(0.05):
            if not self._thread.is_alive():
                call.failure = call.failure or (self._broken or "reader stopped")
                break
            if time.monotonic() > call.last_activity + response_timeout + margin:
                call.failure = "no response (driver safety timeout)"
                with self._lock:
                    if call in self._calls:
                        self._calls.remove(call)
                break
        return call

    def _check_response(self, call: _Call, what: str) -> ecr.EcrMessage:
        """The response of a non-financial request, or the typed error."""
        if call.response is not None:
            if call.response.result is None:
                raise PosProtocolError(f"{what}: response without a result code", resource=self.resource,
                                       detail=f"{call.response.type} trace {call.response.trace}")
            return call.response
        detail = f"{call.request.type} trace {call.request.trace}: {call.failure}"
        if self._broken is not None:
            raise PosLinkError(f"{what}: the ECR link broke", resource=self.resource, detail=detail)
        if call.nak_failure:
            raise PosProtocolError(f"{what}: the POS NAKed a valid frame {self._link.max_attempts} times",
                                   resource=self.resource, detail=detail)
        raise PosTimeout(f"{what}: no answer from the POS", resource=self.resource, detail=detail)

    def _simple(self, what: str, message: ecr.EcrMessage, timeout: float) -> ecr.EcrMessage:
        with self._request_lock:
            return self._check_response(self._transact(message, timeout), what)

    def _query(self, timeout: float) -> ecr.EcrMessage:
        message = ecr.EcrMessage.build(ecr.QUERY_LAST, trace=self._next_trace())
        return self._check_response(self._transact(message, timeout), "query last")

    def _financial(self, what: str, message: ecr.EcrMessage, timeout: float) -> PosResult:
        with self._request_lock:
            if self._link.query_last_required:
                unresolved = self._link.unresolved_request
                log.info("%s: resolving the unknown outcome of trace %s first", self.resource,
                         unresolved.trace if unresolved else None)
                try:
                    self._query(self.query_timeout)
                except PosTimeout as exc:
                    raise PosTimeout(f"{what} not sent: the outcome of an earlier request is still unknown",
                                     resource=self.resource, detail=exc.detail) from exc
            call = self._transact(message, timeout)
            if call.response is not None:
                if call.response.result is None:
                    raise PosProtocolError(f"{what}: response without a result code", resource=self.resource,
                                           detail=f"{call.response.type} trace {call.response.trace}")
                return result_from_message(what, call.response, keep_alives=call.keep_alives)
            if self._broken is not None:
                raise PosLinkError(f"{what}: the ECR link broke; outcome unknown", resource=self.resource,
                                   detail=f"{message.type} trace {message.trace}: {call.failure}")
            if not self._link.query_last_required:
                self._check_response(call, what)  # raises
            # The outcome is unknown: never re-send, ask the POS what happened.
            log.warning("%s: %s trace %s: %s; sending query-last", self.resource, what, message.trace, call.failure)
            try:
                answer = self._query(self.query_timeout)
            except (PosTimeout, PosProtocolError) as exc:
                raise PosTimeout(f"{what} outcome unknown: {call.failure}; query-last unanswered",
                                 resource=self.resource,
                                 detail=f"{message.type} trace {message.trace}; {exc.message}") from exc
            return self._recovered(what, message, answer, call)

    @staticmethod
    def _recovered(what: str, request: ecr.EcrMessage, answer: ecr.EcrMessage, call: _Call) -> PosResult:
        performed = answer.get("original_trace") == request.trace and answer.get("original_type") in (
            None, request.type)
        result = result_from_message(what, answer, recovered_by="query_last", performed=performed,
                                     failure=call.failure, keep_alives=call.keep_alives)
        if performed:
            return result
        return PosResult(request=what, result=RESULT_NOT_FOUND, trace=request.trace, amount=request.amount,
                         currency=request.currency, raw=result.raw)

    # -- PosTerminalProtocol ---------------------------------------------------------------------------
    def identify(self, *, timeout: float = 5.0) -> PosIdentity:
        """I0 -> I1: model, serial, firmware, TID/MID and status."""
        message = ecr.EcrMessage.build(ecr.IDENTIFY, trace=self._next_trace())
        return identity_from_message(self._simple("identify", message, timeout))

    def sale(self, amount: int, *, currency: int = ecr.CURRENCY_CNY, ecr_ref: str | None = None,
             timeout: float = 60.0) -> PosResult:
        """S0 -> S1 (module docstring: never re-sent; query-last on an unknown outcome)."""
        message = ecr.EcrMessage.build(ecr.SALE, amount=amount, currency=currency, ecr_ref=ecr_ref,
                                       trace=self._next_trace())
        return self._financial("sale", message, timeout)

    @staticmethod
    def _reference_fields(reference: str | None) -> dict[str, int | str]:
        if reference is None:
            return {}  # the POS takes its last sale
        if len(reference) == 12:
            return {"rrn": reference}
        if reference.isdigit() and len(reference) <= 6:
            return {"original_trace": int(reference)}
        raise EcrFrameError(f"reference {reference!r} is neither an RRN (12) nor an ECR trace (<= 6 digits)",
                            field="reference", expected="12-character RRN or ECR trace of up to 6 digits")

    def void(self, reference: str | None, *, ecr_ref: str | None = None, timeout: float = 30.0) -> PosResult:
        """V0 of the sale with RRN (12 characters) or ECR trace ``reference`` (None: the POS's last sale)."""
        message = ecr.EcrMessage.build(ecr.VOID, ecr_ref=ecr_ref, trace=self._next_trace(),
                                       **self._reference_fields(reference))
        return self._financial("void", message, timeout)

    def refund(self, amount: int, reference: str, *, ecr_ref: str | None = None, timeout: float = 60.0) -> PosResult:
        """R0 of ``amount`` against the sale with RRN or ECR trace ``reference``."""
        message = ecr.EcrMessage.build(ecr.REFUND, amount=amount, currency=ecr.CURRENCY_CNY, ecr_ref=ecr_ref,
                                       trace=self._next_trace(), **self._reference_fields(reference))
        return self._financial("refund", message, timeout)

    def query_last(self, *, timeout: float = 10.0) -> PosResult:
        """Q0 -> Q1: the last transaction (``original_type``/``original_trace`` in ``raw``)."""
        with self._request_lock:
            return result_from_message("query", self._query(timeout))

    def cancel(self, *, timeout: float = 5.0) -> PosResult:
        """C0 -> C1; may be called from another thread while a sale waits for the card."""
        message = ecr.EcrMessage.build(ecr.CANCEL, trace=self._next_trace())
        call = self._transact_unlocked(message, timeout)
        return result_from_message("cancel", self._check_response(call, "cancel"))

    def _transact_unlocked(self, message: ecr.EcrMessage, timeout: float) -> _Call:
        """Send without the request lock and without touching the link's response timeout (the running
        request keeps its own); wait at most ``timeout`` plus the ACK retries."""
        if self._broken is not None or self._stop.is_set():
            raise PosLinkError("the ECR link is down", resource=self.resource, detail=self._broken)
        call = _Call(message)
        with self._lock:
            self._calls.append(call)
            try:
                self._handle(self._link.send(message, time.monotonic()))
            except (serial.SerialException, OSError) as exc:
                self._calls.remove(call)
                raise PosLinkError("cannot write to the ECR port", resource=self.resource, detail=str(exc)) from exc
        if not call.done.wait(timeout + self.ack_timeout * self._link.max_attempts):
            with self._lock:
                if call in self._calls:
                    self._calls.remove(call)
            call.failure = call.failure or f"no response within {timeout} s"
        return call

    # -- manual frames (protocol tests) ---------------------------------------------------------------
    def send_raw(self, data: bytes) -> None:
        """Write raw bytes to the line, outside the link (noise / malformed-frame tests)."""
        with self._lock:
            self._port.write(data)


__all__ = ["LinkStats", "SerialPosTerminal"]
