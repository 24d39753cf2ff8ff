"""The POS simulator: a separate process that behaves like a QuickPass (qPBOC) POS on the far end of an
ECR serial line. ``python -m paylab.drivers.pos.simulator --config pos.json`` (or the options below).

ECR side (domain brief section 6, :mod:`paylab.lab.protocol.ecr`, POS role): the line is an inherited pty
master fd (``--fd``, what :class:`~paylab.drivers.pos.launcher.PosSimulatorProcess` uses), a serial
device or pyserial URL (``--port /dev/pts/N``, e.g. one end of ``socat``), or a TCP listen address
(``--listen 127.0.0.1:PORT``, for ``socket://`` ECRs; one ECR at a time). Bad frames are NAKed by the
link, duplicates replayed, a valid message of an unknown type is answered ``<X>1`` with result ``E1``.

Requests:

* **I0** identify: model ``PAYLAB-QP1``, serial, firmware, TID/MID, status (idle/busy); answered at once.
* **S0** sale: K0 keep-alives every ``keepalive_interval`` while working; wait up to ``card_timeout`` for
  a card in the NFC reader's field (``T1`` on timeout, ``C1`` when a C0 cancels); run the contactless
  kernel; offline approval (e-cash TC) -> approved locally and kept in :attr:`PosApplication.offline_batch`
  (store-and-forward upload is NOT implemented: the batch is only kept in memory); offline decline ->
  ``05``; online request -> sign on if needed (0800), 0200 with field 55; the host's field 39 is the
  result. Host timeout or lost connection -> reversal 0400 (repeated up to ``reversal_attempts``, then
  kept and sent before the next online transaction) and result ``E1``.
  Card removed mid-tap -> ``E1`` (qPBOC needs the card only up to GPO, so no 0200 was sent: nothing to
  reverse). A sale without an amount -> ``E1``; a request while another runs -> ``E1`` "busy".
* **V0** void: reversal (0400) of the referenced sale (by RRN or ECR trace; default the last sale).
* **R0** refund: answered ``40`` (function not supported): the lab acquirer has no refund processing code.
* **Q0** query last: the last financial transaction (``original_type``, ``original_trace``, its fields),
  ``NF`` when there is none.
* **C0** cancel: stops a sale waiting for the card (``C1`` -> ``00``; ``NF`` when nothing to cancel).

Card side: ``reader`` is an NFC device path for :class:`paylab.drivers.nfc.reader.NfcReader` (e.g.
``udp:127.0.0.1:PORT``); the kernel is :class:`paylab.drivers.terminal.kernel.ContactlessKernel`.
Both are imported when the first sale needs them, so identify/query work without them.

Logs go to stderr: message types, traces, STANs, masked PANs; never a full PAN, track 2 or key.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from paylab.drivers.errors import CardRemoved, DriverError, NoCard
from paylab.drivers.protocols.card import CardReaderProtocol
from paylab.drivers.protocols.pos import PosIdentity
from paylab.lab.protocol import ecr
from paylab.lab.protocol.errors import PaylabError
from paylab.lab.protocol.iso8583 import Iso8583Message
from paylab.lab.protocol.masking import mask_pan

from .acquirer_link import TerminalClient
from .ecr_messages import (
    RESULT_APPROVED,
    RESULT_CANCELLED,
    RESULT_CARD_TIMEOUT,
    RESULT_NOT_FOUND,
    RESULT_POS_ERROR,
    TAG_STAN,
)
from .ecr_messages import identity_message as build_identity
from .receipt import ReceiptData, receipt_lines

log = logging.getLogger("paylab.pos.simulator")

MODEL = "PAYLAB-QP1"
RESULT_DECLINED_OFFLINE = "05"
RESULT_UNSUPPORTED_FUNCTION = "40"


# -- configuration --------------------------------------------------------------------------------------------


@dataclass
class SimulatorConfig:
    """Everything the simulated POS needs; ``tmk`` is a TEST key (hex). ``ca_keys``: the terminal's CA public
    keys as ``{"rid", "index", "modulus", "exponent", "algorithm"}`` dicts of hex strings (fDDA)."""

    acquirer_host: str = "127.0.0.1"
    acquirer_port: int = 0
    tid: str = "PAYLAB01"
    mid: str = "898440154110001"
    tmk: str = field(default="", repr=False)
    model: str = MODEL
    serial: str = "QP1-000001"
    firmware: str = "1.0.0"
    merchant_name: str = "PAYLAB TEST MERCHANT"
    reader: str = ""
    card_timeout: float = 30.0
    online_timeout: float = 10.0
    keepalive_interval: float = 1.0
    reversal_attempts: int = 3
    ca_keys: list[dict[str, Any]] = field(default_factory=list)
    contactless_floor_limit: int | None = None
    """Kernel reader limits in fen (None: the kernel's defaults, :mod:`paylab.drivers.terminal.config`)."""
    cvm_required_limit: int | None = None
    contactless_transaction_limit: int | None = None
    log_level: str = "INFO"

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> SimulatorConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown configuration keys: {sorted(unknown)}")
        return cls(**data)


# -- the ECR line ---------------------------------------------------------------------------------------------


class Line:
    """A byte pipe to the ECR: ``read(timeout)`` (b"" when nothing came) and ``write``."""

    def read(self, timeout: float) -> bytes:
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        return None


class FdLine(Line):
    """An inherited file descriptor (the pty master). EIO (no slave open) reads as silence."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def read(self, timeout: float) -> bytes:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return b""
        try:
            return os.read(self.fd, 4096)
        except OSError:  # EIO: no process holds the slave; the launcher normally keeps one open
            time.sleep(timeout)
            return b""

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


class SerialLine(Line):
    """A serial device or pyserial URL (``/dev/pts/N`` of a socat pair, ``rfc2217://``...)."""

    def __init__(self, url: str) -> None:
        import serial  # pyserial; only this line needs it

        self._port = serial.serial_for_url(url, baudrate=115200, timeout=0.02)

    def read(self, timeout: float) -> bytes:
        self._port.timeout = timeout
        data = self._port.read(1)
        if data and self._port.in_waiting:
            data += self._port.read(self._port.in_waiting)
        return data

    def write(self, data: bytes) -> None:
        self._port.write(data)

    def close(self) -> None:
        self._port.close()


class ListenLine(Line):
    """A TCP listener for ``socket://`` ECRs: one connection at a time, the next accepted when it closes."""

    def __init__(self, host: str, port: int) -> None:
        self._server = socket.create_server((host, port))
        self.address = self._server.getsockname()[:2]
        self._conn: socket.socket | None = None

    def read(self, timeout: float) -> bytes:
        if self._conn is None:
            ready, _, _ = select.select([self._server], [], [], timeout)
            if ready:
                self._conn, _ = self._server.accept()
                self._conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return b""
        ready, _, _ = select.select([self._conn], [], [], timeout)
        if not ready:
            return b""
        try:
            data = self._conn.recv(4096)
        except OSError:
            data = b""
        if not data:
            self._conn.close()
            self._conn = None
        return data

    def write(self, data: bytes) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.sendall(data)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._server.close()


# -- the terminal application -----------------------------------------------------------------------------------


@dataclass
class Transaction:
    """One financial transaction of the POS journal (the PAN stays in memory only, never logged)."""

    type: str
    trace: int | None
    amount: int
    result: str
    ecr_ref: str | None = None
    pan: str | None = field(default=None, repr=False)
    stan: str | None = None
    rrn: str | None = None
    auth_code: str | None = None
    offline: bool = False
    receipt: list[str] = field(default_factory=list)
    text: str | None = None
    request: Iso8583Message | None = field(default=None, repr=False)
    voided: bool = False
    when: str = field(default_factory=lambda: time.strftime("%Y%m%d%H%M%S"))

    def response(self, msg_type: str, trace: int | None) -> ecr.EcrMessage:
        """The ``msg_type`` ECR message reporting this transaction (S1/V1/R1 or Q1)."""
        query = msg_type == ecr.QUERY_LAST_RESPONSE
        return ecr.EcrMessage.build(
            msg_type, trace=trace, result=self.result, amount=self.amount, currency=ecr.CURRENCY_CNY,
            ecr_ref=self.ecr_ref, auth_code=self.auth_code, pan_masked=mask_pan(self.pan) if self.pan else None,
            rrn=self.rrn, timestamp=self.when, text=self.text, receipt=self.receipt,
            original_trace=self.trace if query else None, original_type=self.type if query else None,
            extra=[(TAG_STAN, self.stan.encode("ascii"))] if self.stan else ())


class Cancelled(Exception):
    """A C0 arrived while the sale waited for the card."""


ReaderFactory = Callable[[str], CardReaderProtocol]
KernelFactory = Callable[[CardReaderProtocol, Any], Any]


def _default_reader(spec: str) -> CardReaderProtocol:
    from paylab.drivers.nfc.reader import NfcReader  # written alongside; imported on first use

    return NfcReader(spec)


def _default_kernel(reader: CardReaderProtocol, config: Any) -> Any:
    from paylab.drivers.terminal.kernel import ContactlessKernel

    return ContactlessKernel(reader, config)


def ca_key_entry(key: Any) -> dict[str, Any]:
    """A :class:`~paylab.lab.protocol.oda.CaPublicKey` as a ``ca_keys`` entry of :class:`SimulatorConfig`."""
    return {"rid": key.rid.hex(), "index": key.index, "modulus": key.modulus.hex(), "exponent": key.exponent.hex(),
            "algorithm": key.algorithm}


def _terminal_config(config: SimulatorConfig) -> Any:
    from paylab.drivers.terminal.config import TerminalConfig
    from paylab.lab.protocol.oda import CaPublicKey

    keys = [CaPublicKey(rid=bytes.fromhex(k["rid"]), index=int(k["index"]), modulus=bytes.fromhex(k["modulus"]),
                        exponent=bytes.fromhex(k.get("exponent", "")), algorithm=k.get("algorithm", "rsa"),
                        test=True) for k in config.ca_keys]
    limits = {name: getattr(config, name) for name in ("contactless_floor_limit", "cvm_required_limit",
                                                        "contactless_transaction_limit")
              if getattr(config, name) is not None}
    return TerminalConfig(terminal_id=config.tid, merchant_id=config.mid, merchant_name=config.merchant_name,
                          ifd_serial=config.serial.encode("ascii")[-8:].rjust(8, b"0"),
                          **limits).with_ca_keys(keys)


class PosApplication:
    """The terminal's business logic, one request at a time; ``respond`` sends an ECR message back."""

    def __init__(self, config: SimulatorConfig, respond: Callable[[ecr.EcrMessage], None], *,
                 reader_factory: ReaderFactory = _default_reader, kernel_factory: KernelFactory = _default_kernel
                 ) -> None:
        self.config = config
        self.respond = respond
        self._reader_factory = reader_factory
        self._kernel_factory = kernel_factory
        self._reader: CardReaderProtocol | None = None
        self._kernel_instance: Any = None
        self.client = TerminalClient(config.acquirer_host, config.acquirer_port, config.tid, config.mid,
                                     bytes.fromhex(config.tmk) if config.tmk else bytes(16),
                                     timeout=config.online_timeout)
        self.signed_on = False
        self.journal: list[Transaction] = []
        self.offline_batch: list[Transaction] = []
        self.pending_reversals: list[Iso8583Message] = []
        self.cancel_event = threading.Event()
        self.waiting_for_card = False

    # -- identity / journal ----------------------------------------------------------------------------------
    def identity(self, busy: bool) -> PosIdentity:
        return PosIdentity(model=self.config.model, serial=self.config.serial, firmware=self.config.firmware,
                           terminal_id=self.config.tid, merchant_id=self.config.mid,
                           status="busy" if busy else "idle")

    @property
    def last(self) -> Transaction | None:
        return self.journal[-1] if self.journal else None

    def close(self) -> None:
        self.client.close()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                self._reader.close()

    # -- dispatch (worker thread) ------------------------------------------------------------------------------
    def handle(self, request: ecr.EcrMessage) -> None:
        """Run one financial request and answer it; never raises."""
        answer_type = ecr.response_type(request.type)
        try:
            if request.type == ecr.SALE:
                txn = self.sale(request)
            elif request.type == ecr.VOID:
                txn = self.void(request)
            else:
                txn = Transaction(request.type, request.trace, request.amount or 0, RESULT_UNSUPPORTED_FUNCTION,
                                  ecr_ref=_opt(request, "ecr_ref"), text="refund not supported by the acquirer")
            self.journal.append(txn)
            self.respond(txn.response(answer_type, request.trace))
        except Exception as exc:  # a bug or an unexpected device error: answer E1, keep running
            log.exception("%s trace %s failed: %s", request.type, request.trace, type(exc).__name__)
            txn = Transaction(request.type, request.trace, request.amount or 0, RESULT_POS_ERROR,
                              ecr_ref=_opt(request, "ecr_ref"), text=f"POS error: {type(exc).__name__}"[:255])
            self.journal.append(txn)
            self.respond(txn.response(answer_type, request.trace))

    # -- sale -----------------------------------------------------------------------------------------------
    def _card_reader(self) -> CardReaderProtocol:
        if self._reader is None:
            self._reader = self._reader_factory(self.config.reader)
        return self._reader

    def _wait_for_card(self, reader: CardReaderProtocol, deadline: float) -> None:
        """Poll the field until a card answers; :class:`Cancelled` on C0, :class:`NoCard` at ``deadline``."""
        self.waiting_for_card = True
        try:
            while True:
                if self.cancel_event.is_set():
                    raise Cancelled
                left = deadline - time.monotonic()
                if left <= 0:
                    raise NoCard("no card in the field", resource=self.config.reader)
                try:
                    reader.wait_for_card(min(0.2, left))
                    return
                except NoCard:
                    continue
        finally:
            self.waiting_for_card = False

    def _kernel(self, reader: CardReaderProtocol) -> Any:
        if self._kernel_instance is None:
            self._kernel_instance = self._kernel_factory(reader, _terminal_config(self.config))
        return self._kernel_instance

    def _tap(self, txn: Transaction, reader: CardReaderProtocol) -> Any | None:
        """Wait for a card and run the kernel; None (``txn`` holds the failure) when no outcome came.

        A card that answered discovery but vanished before the first APDU (``NoCard`` from the kernel)
        is waited for again until the card timeout, as a reader keeps polling."""
        deadline = time.monotonic() + self.config.card_timeout
        while True:
            try:
                self._wait_for_card(reader, deadline)
                return self._kernel(reader).perform(txn.amount)
            except Cancelled:
                txn.result, txn.text = RESULT_CANCELLED, "cancelled by the ECR"
            except CardRemoved:
                txn.text = "card removed, tap again"
                log.info("sale trace %s: card removed mid-tap", txn.trace)
            except NoCard:
                if time.monotonic() < deadline:
                    continue
                txn.result, txn.text = RESULT_CARD_TIMEOUT, "no card presented"
            except (DriverError, PaylabError) as exc:
                txn.text = f"card error: {type(exc).__name__}"
                log.warning("sale trace %s: card or reader failed: %s", txn.trace, type(exc).__name__)
            finally:
                with contextlib.suppress(Exception):
                    reader.power_off()
            return None

    def sale(self, request: ecr.EcrMessage) -> Transaction:
        amount = request.amount or 0
        txn = Transaction(ecr.SALE, request.trace, amount, RESULT_POS_ERROR, ecr_ref=_opt(request, "ecr_ref"))
        self.cancel_event.clear()
        try:
            reader = self._card_reader()
        except DriverError as exc:
            txn.text = f"reader: {exc.message}"[:255]
            log.warning("reader unavailable: %s", exc)
            return txn
        outcome = self._tap(txn, reader)
        if outcome is None:
            return txn
        txn.pan = outcome.pan
        name = str(getattr(outcome.outcome, "value", outcome.outcome))
        log.info("sale trace %s: kernel %s, card %s", request.trace, name, mask_pan(outcome.pan or ""))
        if name == "APPROVED":
            txn.result, txn.offline, txn.text = RESULT_APPROVED, True, "offline e-cash"
            self.offline_batch.append(txn)
            kind = "TC"
        elif name == "ONLINE_REQUEST":
            self._go_online(txn, outcome)
            kind = "ARQC"
        elif name == "DECLINED":
            txn.result, txn.text = RESULT_DECLINED_OFFLINE, "declined by the card"
            kind = "AAC"
        else:
            txn.text = f"kernel outcome {name}"[:255]
            kind = None
        txn.receipt = receipt_lines(ReceiptData(
            kind="SALE", amount=amount, result=txn.result, terminal_id=self.config.tid, merchant_id=self.config.mid,
            merchant_name=self.config.merchant_name, pan=txn.pan, stan=txn.stan, batch=self.client.batch,
            rrn=txn.rrn, auth_code=txn.auth_code, cryptogram_kind=kind, cryptogram=outcome.cryptogram,
            offline=txn.offline, text=txn.text))
        return txn

    # -- online --------------------------------------------------------------------------------------------
    def _reconnect(self) -> None:
        self.client.close()

    def _ensure_signed_on(self) -> None:
        self._flush_reversals()
        if self.signed_on:
            return
        response = self.client.sign_on()
        if response.response_code != "00":
            raise _HostDeclined(response.response_code or "96", "sign-on refused")
        self.signed_on = True
        log.info("signed on to %s:%s as %s", self.config.acquirer_host, self.config.acquirer_port, self.config.tid)

    def _go_online(self, txn: Transaction, outcome: Any) -> None:
        try:
            self._ensure_signed_on()
        except _HostDeclined as exc:
            txn.result, txn.text = exc.code, exc.text
            return
        except (OSError, PaylabError) as exc:
            self._reconnect()
            txn.text = f"host unreachable ({type(exc).__name__})"
            return
        track2 = outcome.track2_str() if outcome.track2 else None
        expiry = (outcome.expiry or "")[:4] or None
        request = self.client.financial_request(outcome.pan, txn.amount, field55=outcome.field55(), track2=track2,
                                                expiry=expiry, psn=outcome.psn)
        txn.request = request
        txn.stan = str(request.fields[11])
        try:
            response = self.client.purchase(outcome.pan, txn.amount, field55=outcome.field55(), track2=track2,
                                            expiry=expiry, psn=outcome.psn, stan=int(txn.stan))
        except (OSError, PaylabError) as exc:  # timeout, lost connection, bad MAC: the outcome is unknown
            log.warning("sale STAN %s: no usable answer (%s); reversing", txn.stan, type(exc).__name__)
            self._reconnect()
            answered = self._reverse(request) is not None
            txn.text = "host timeout, reversed" if answered else "host timeout, reversal pending"
            return
        code = response.response_code or "96"
        if code in ("97", "A0"):
            self.signed_on = False
        txn.result = code
        rrn, auth = response.fields.get(37), response.fields.get(38)
        txn.rrn = rrn.strip() if isinstance(rrn, str) else None
        txn.auth_code = auth.strip() if isinstance(auth, str) and auth.strip() else None
        log.info("sale STAN %s: host answered %s", txn.stan, code)

    def _reverse(self, request: Iso8583Message) -> str | None:
        """0400 for ``request``, repeated until answered; kept for later when the host stays silent."""
        for attempt in range(1, self.config.reversal_attempts + 1):
            try:
                response = self.client.reverse(request)
                log.info("reversal of STAN %s answered %s (attempt %d)", request.fields.get(11),
                         response.response_code, attempt)
                return response.response_code
            except (OSError, PaylabError) as exc:
                log.warning("reversal of STAN %s attempt %d: %s", request.fields.get(11), attempt,
                            type(exc).__name__)
                self._reconnect()
        self.pending_reversals.append(request)
        return None

    def _flush_reversals(self) -> None:
        while self.pending_reversals:
            request = self.pending_reversals.pop(0)
            if self._reverse(request) is None:
                raise OSError("pending reversal still unanswered")

    # -- void ---------------------------------------------------------------------------------------------------
    def void(self, request: ecr.EcrMessage) -> Transaction:
        rrn, trace = request.get("rrn"), request.get("original_trace")
        sales = [t for t in self.journal if t.type == ecr.SALE and t.result == RESULT_APPROVED and not t.voided]
        if rrn is not None:
            sales = [t for t in sales if t.rrn == rrn]
        elif trace is not None:
            sales = [t for t in sales if t.trace == trace]
        txn = Transaction(ecr.VOID, request.trace, 0, RESULT_NOT_FOUND, ecr_ref=_opt(request, "ecr_ref"))
        if not sales:
            txn.text = "no such sale in the batch"
            return txn
        sale = sales[-1]
        txn.amount, txn.pan, txn.rrn = sale.amount, sale.pan, sale.rrn
        if sale.offline or sale.request is None:
            sale.voided = True
            self.offline_batch = [t for t in self.offline_batch if t is not sale]
            txn.result, txn.text = RESULT_APPROVED, "offline sale voided locally"
        else:
            try:
                self._ensure_signed_on()
                code = self._reverse(sale.request)
            except (OSError, PaylabError, _HostDeclined) as exc:
                code, txn.text = None, f"host unreachable ({type(exc).__name__})"
            if code in ("00", "25"):
                sale.voided = True
                txn.result = RESULT_APPROVED
            else:
                txn.result = code or RESULT_POS_ERROR
                txn.text = txn.text or "reversal kept for upload"
        txn.receipt = receipt_lines(ReceiptData(kind="VOID", amount=txn.amount, result=txn.result,
                                                terminal_id=self.config.tid, merchant_id=self.config.mid,
                                                merchant_name=self.config.merchant_name, pan=txn.pan, rrn=txn.rrn,
                                                text=txn.text))
        return txn


class _HostDeclined(Exception):
    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


def _opt(message: ecr.EcrMessage, name: str) -> str | None:
    value = message.get(name)
    return None if value is None else str(value)


# -- the ECR server ------------------------------------------------------------------------------------------------


class PosSimulator:
    """Runs the POS-role ECR link over ``line`` and the :class:`PosApplication` on a worker thread."""

    def __init__(self, config: SimulatorConfig, line: Line, **app_options: Any) -> None:
        self.config = config
        self.line = line
        self.link = ecr.EcrLink("pos")
        self._lock = threading.Lock()
        self.app = PosApplication(config, self._respond, **app_options)
        self._worker: threading.Thread | None = None
        self._current: ecr.EcrMessage | None = None
        self._last_keepalive = 0.0
        self.stop = threading.Event()

    @property
    def busy(self) -> bool:
        return self._worker is not None and self._worker.is_alive()

    def _respond(self, message: ecr.EcrMessage) -> None:
        with self._lock:
            self._write(self.link.send(message, time.monotonic()))

    def _write(self, outputs: list[ecr.LinkOutput]) -> None:
        for item in outputs:
            if isinstance(item, bytes):
                self.line.write(item)
            elif isinstance(item, ecr.MessageReceived):
                self._dispatch(item.message)
            elif isinstance(item, ecr.MessageRejected | ecr.FrameRejected):
                log.info("NAKed a bad frame: %s", getattr(item, "reason", ""))
            elif isinstance(item, ecr.DuplicateRequest):
                log.info("duplicate %s trace %s (replayed=%s)", item.message.type, item.message.trace,
                         item.replayed)
            elif isinstance(item, ecr.LinkFailed):
                log.warning("ECR did not ACK %s after %d attempts", item.message.type, item.attempts)

    def _dispatch(self, message: ecr.EcrMessage) -> None:
        """Route one new ECR message (called with the lock held; answers are queued on the link)."""
        log.info("ECR %s trace %s", message.type, message.trace)
        if not message.is_request:
            return  # responses and K0 from an ECR mean nothing to a POS
        answer_type = ecr.response_type(message.type)
        if message.type == ecr.IDENTIFY:
            self._queue(build_identity(self.app.identity(self.busy), trace=message.trace))
        elif message.type == ecr.CANCEL:
            cancellable = self.busy and self._current is not None and self._current.type == ecr.SALE
            if cancellable:
                self.app.cancel_event.set()
            self._queue(ecr.EcrMessage.build(answer_type, trace=message.trace,
                                              result=RESULT_APPROVED if cancellable else RESULT_NOT_FOUND))
        elif message.type == ecr.QUERY_LAST:
            last = self.app.last
            self._queue(last.response(ecr.QUERY_LAST_RESPONSE, message.trace) if last is not None else
                        ecr.EcrMessage.build(answer_type, trace=message.trace, result=RESULT_NOT_FOUND))
        elif message.type in (ecr.SALE, ecr.VOID, ecr.REFUND):
            if message.type != ecr.VOID and not message.amount:
                self._queue(ecr.EcrMessage.build(answer_type, trace=message.trace, result=RESULT_POS_ERROR,
                                                  text="amount missing"))
                return
            if self.busy:
                self._queue(ecr.EcrMessage.build(answer_type, trace=message.trace, result=RESULT_POS_ERROR,
                                                  text="busy"))
                return
            self._current = message
            self._last_keepalive = time.monotonic()
            self._worker = threading.Thread(target=self.app.handle, args=(message,), name="pos-worker",
                                            daemon=True)
            self._worker.start()
        else:
            self._queue(ecr.EcrMessage.build(answer_type, trace=message.trace, result=RESULT_POS_ERROR,
                                              text=f"unsupported request {message.type}"))

    def _queue(self, message: ecr.EcrMessage) -> None:
        self._write(self.link.send(message, time.monotonic()))

    def _keepalive(self, now: float) -> None:
        if self.busy and self._current is not None and now - self._last_keepalive >= self.config.keepalive_interval:
            self._last_keepalive = now
            text = "waiting for card" if self.app.waiting_for_card else "processing"
            self._queue(ecr.EcrMessage.build(ecr.KEEP_ALIVE, trace=self._current.trace, text=text))

    def serve(self) -> None:
        """Run until :attr:`stop` is set."""
        log.info("POS %s (%s) serving the ECR line", self.config.model, self.config.tid)
        try:
            while not self.stop.is_set():
                data = self.line.read(0.02)
                with self._lock:
                    now = time.monotonic()
                    try:
                        self._write(self.link.feed(data, now) if data else self.link.poll(now))
                        self._keepalive(now)
                    except OSError as exc:
                        log.warning("ECR line write failed: %s", exc)
        finally:
            self.app.cancel_event.set()
            if self._worker is not None:
                self._worker.join(timeout=5)
            self.app.close()
            self.line.close()


# -- command line -------------------------------------------------------------------------------------------------


def _parse(argv: list[str] | None) -> tuple[SimulatorConfig, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="python -m paylab.drivers.pos.simulator",
                                     description="A QuickPass POS on the far end of an ECR serial line (TEST keys).")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--fd", type=int, help="inherited file descriptor of the ECR line (pty master)")
    where.add_argument("--port", help="serial device or pyserial URL of the ECR line")
    where.add_argument("--listen", help="HOST:PORT to accept a socket:// ECR on")
    parser.add_argument("--config", type=Path, help="JSON file with SimulatorConfig keys")
    for f in fields(SimulatorConfig):
        if f.name in ("ca_keys",):
            continue
        option = "--" + f.name.replace("_", "-")
        kind = str(f.type).split(" ")[0]
        parser.add_argument(option, dest=f.name, type={"int": int, "float": float}.get(kind, str), default=None)
    args = parser.parse_args(argv)
    data: dict[str, Any] = json.loads(args.config.read_text()) if args.config else {}
    for f in fields(SimulatorConfig):
        value = getattr(args, f.name, None)
        if value is not None:
            data[f.name] = value
    return SimulatorConfig.from_mapping(data), args


def main(argv: list[str] | None = None) -> int:
    try:
        config, args = _parse(argv)
    except (ValueError, TypeError, OSError) as exc:  # bad JSON, unknown keys, unreadable file
        print(f"pos simulator: bad configuration: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(stream=sys.stderr, level=config.log_level,
                        format="%(asctime)s pos-sim %(levelname)s %(name)s: %(message)s")
    if args.fd is not None:
        line: Line = FdLine(args.fd)
    elif args.port:
        line = SerialLine(args.port)
    else:
        host, _, port = args.listen.rpartition(":")
        line = ListenLine(host or "127.0.0.1", int(port))
        print(f"listening {line.address[0]}:{line.address[1]}", file=sys.stderr, flush=True)
    simulator = PosSimulator(config, line)
    signal.signal(signal.SIGTERM, lambda *_: simulator.stop.set())
    signal.signal(signal.SIGINT, lambda *_: simulator.stop.set())
    simulator.serve()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
