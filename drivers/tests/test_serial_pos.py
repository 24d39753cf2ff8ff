"""SerialPosTerminal against a scripted fake POS on a real pty (and a real socket://).

The fake runs the protocol core's POS-role link (:class:`paylab.lab.protocol.ecr.EcrLink`) on the pty
master in a thread; hooks let a test drop ACKs, corrupt frames or stay silent. Domain brief section 6.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import time
import tty
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
import serial
import serial.rfc2217

from paylab.drivers.errors import PosLinkError, PosTimeout
from paylab.drivers.pos.serial_pos import SerialPosTerminal
from paylab.lab.protocol import ecr

FAST = {"ack_timeout": 0.2, "query_timeout": 2.0}


@dataclass
class FakePos:
    """A POS on the master side of a pty (or on an accepted socket)."""

    read: Callable[[float], bytes]
    write: Callable[[bytes], None]
    received: list[ecr.EcrMessage] = field(default_factory=list)
    frames_in: int = 0
    drop_acks: int = 0              # swallow this many ACKs we should send
    drop_incoming: int = 0          # lose this many incoming chunks holding a frame (never seen, never ACKed)
    corrupt_next_response: bool = False
    silent: bool = False            # never answer, never ACK
    hang_up_on_sale: bool = False   # close the line when a sale arrives
    sale_delay: float = 0.0         # answer a sale this late, with a K0 every keep_alive_every meanwhile
    keep_alive_every: float = 0.2
    _delayed: list[tuple[float, ecr.EcrMessage]] = field(default_factory=list)
    _next_k0: float = 0.0
    lose_sale_response: bool = False
    keep_alives: int = 0            # K0 frames sent before a sale response
    noise: bytes = b""
    link: ecr.EcrLink = field(default_factory=lambda: ecr.EcrLink("pos", ack_timeout=0.2))
    last: ecr.EcrMessage | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    def answer(self, request: ecr.EcrMessage) -> ecr.EcrMessage | None:
        t = request.type
        if t == ecr.IDENTIFY:
            return ecr.EcrMessage.build("I1", trace=request.trace, result="00", terminal_id="12345678",
                                        merchant_id="123456789012345",
                                        extra=[(ecr.TAG_TEXT, b"model=FAKE-1"), (ecr.TAG_TEXT, b"serial=S1"),
                                               (ecr.TAG_TEXT, b"firmware=1.0"), (ecr.TAG_TEXT, b"status=idle")])
        if t == ecr.SALE:
            response = ecr.EcrMessage.build(
                "S1", amount=request.amount, currency=156, trace=request.trace, result="00", auth_code="A1B2C3",
                pan_masked="622202******1234", rrn="000000123456",
                receipt=["PAYLAB FAKE", "SALE CNY 12.34", "CARD 622202******1234"])
            self.last = response
            return None if self.lose_sale_response else response
        if t == ecr.QUERY_LAST:
            if self.last is None:
                return ecr.EcrMessage.build("Q1", trace=request.trace, result="NF")
            fields = dict(self.last.fields)
            return ecr.EcrMessage.build("Q1", trace=request.trace, result=self.last.result, original_type="S0",
                                        original_trace=self.last.trace, amount=self.last.amount,
                                        auth_code=self.last.get("auth_code"), rrn=self.last.get("rrn"),
                                        pan_masked=str(fields.get(ecr.TAG_PAN_MASKED, b"").decode()) or None,
                                        receipt=self.last.receipt)
        return ecr.EcrMessage.build(ecr.response_type(t), trace=request.trace, result="XX")

    def _write(self, outputs: list[ecr.LinkOutput]) -> None:
        for item in outputs:
            if not isinstance(item, bytes):
                continue
            if item == ecr.ACK_BYTES and self.drop_acks:
                self.drop_acks -= 1
                continue
            if len(item) > 1 and self.corrupt_next_response:
                self.corrupt_next_response = False
                item = item[:-1] + bytes([item[-1] ^ 0xFF])
            self.write(self.noise + item)

    def hang_up(self) -> None:
        """Overridden per transport: drop the line."""

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                data = self.read(0.01)
            except OSError:
                return
            now = time.monotonic()
            if self.silent:
                continue
            if self.drop_incoming and ecr.STX in data:
                self.drop_incoming -= 1
                continue
            outputs = self.link.feed(data, now) if data else self.link.poll(now)
            replies: list[ecr.EcrMessage] = []
            for item in outputs:
                if isinstance(item, ecr.MessageReceived):
                    self.received.append(item.message)
                    if self.hang_up_on_sale and item.message.type == ecr.SALE:
                        self.hang_up()
                        return
                    reply = self.answer(item.message)
                    if item.message.type == ecr.SALE and self.sale_delay and reply is not None:
                        self._delayed.append((now + self.sale_delay, reply))
                        self._next_k0 = now + self.keep_alive_every
                        reply = None
                    if item.message.type == ecr.SALE:
                        replies.extend(ecr.EcrMessage.build("K0", trace=item.message.trace, text="processing")
                                       for _ in range(self.keep_alives))
                    if reply is not None:
                        replies.append(reply)
            self._write(outputs)
            if self._delayed and now >= self._next_k0:
                due, late = self._delayed[0]
                if now >= due:
                    self._delayed.pop(0)
                    replies.append(late)
                else:
                    self._next_k0 = now + self.keep_alive_every
                    replies.append(ecr.EcrMessage.build("K0", trace=late.trace, text="waiting for card"))
            for reply in replies:
                self._write(self.link.send(reply, time.monotonic()))


@contextlib.contextmanager
def fake_on_pty(**options: object) -> Iterator[tuple[FakePos, str]]:
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)

    def read(timeout: float) -> bytes:
        ready, _, _ = select.select([master], [], [], timeout)
        return os.read(master, 4096) if ready else b""

    fds = {"master": master, "slave": slave}
    fake = FakePos(read, lambda data: os.write(master, data) and None, **options)  # type: ignore[arg-type]

    def hang_up() -> None:  # the POS end goes away: no slave holder but the driver, master closed
        os.close(fds.pop("slave"))
        os.close(fds.pop("master"))

    fake.hang_up = hang_up  # type: ignore[method-assign]
    thread = threading.Thread(target=fake.run, daemon=True)
    thread.start()
    try:
        yield fake, path
    finally:
        fake.stop.set()
        thread.join(timeout=2)
        for fd in fds.values():
            os.close(fd)


def test_identify_and_sale_with_receipt() -> None:
    with fake_on_pty() as (fake, path), SerialPosTerminal(path, **FAST) as pos:
        identity = pos.identify()
        assert (identity.model, identity.serial, identity.firmware) == ("FAKE-1", "S1", "1.0")
        assert identity.terminal_id == "12345678"
        result = pos.sale(1234, ecr_ref="INV-1")
        assert result.approved
        assert result.amount == 1234
        assert result.pan == "622202******1234"
        assert result.reference == "000000123456"
        assert result.auth_code == "A1B2C3"
        assert "SALE CNY 12.34" in result.receipt
        assert [m.type for m in fake.received] == ["I0", "S0"]


def test_noise_between_frames_and_keep_alives() -> None:
    with fake_on_pty(noise=b"\xff\x00garbage\r\n", keep_alives=3) as (_fake, path), \
            SerialPosTerminal(path, **FAST) as pos:
        result = pos.sale(500)
        assert result.approved
        assert result.raw["keep_alives"] == 3
        assert pos.stats.noise_bytes > 0
        assert pos.stats.keep_alives == 3


def test_keep_alives_extend_the_response_timeout() -> None:
    # the answer comes after 1.2 s, the response timeout is 0.5 s: the K0s every 0.2 s keep the sale alive
    with fake_on_pty(sale_delay=1.2) as (fake, path), SerialPosTerminal(path, **FAST) as pos:
        result = pos.sale(4200, timeout=0.5)
        assert result.approved
        assert "recovered_by" not in result.raw
        assert result.raw["keep_alives"] >= 4
        assert [m.type for m in fake.received] == ["S0"]


def test_corrupt_response_is_naked_and_retransmitted() -> None:
    with fake_on_pty(corrupt_next_response=True) as (fake, path), SerialPosTerminal(path, **FAST) as pos:
        assert pos.identify().model == "FAKE-1"
        assert pos.stats.naks_sent == 1
        assert pos.stats.rejected_messages == 1
        assert [m.type for m in fake.received] == ["I0"]


def test_lost_frame_is_retransmitted_after_ack_timeout() -> None:
    with fake_on_pty(drop_incoming=1) as (fake, path), SerialPosTerminal(path, **FAST) as pos:
        assert pos.identify().model == "FAKE-1"
        assert pos.stats.retransmissions == 1
        assert pos.stats.frames_sent == 2
        assert [m.type for m in fake.received] == ["I0"]


def test_lost_ack_is_tolerated() -> None:
    with fake_on_pty(drop_acks=1) as (fake, path), SerialPosTerminal(path, **FAST) as pos:
        # the fake answers I1 right after its (swallowed) ACK: the answer proves delivery
        assert pos.identify().model == "FAKE-1"
        fake.drop_acks = 2
        assert pos.identify().model == "FAKE-1"
        assert [m.type for m in fake.received] == ["I0", "I0"]


def test_lost_ack_without_answer_retransmits_then_times_out() -> None:
    with fake_on_pty(silent=True) as (_fake, path), SerialPosTerminal(path, **FAST) as pos:
        start = time.monotonic()
        with pytest.raises(PosTimeout) as info:
            pos.identify()
        assert time.monotonic() - start < 3.0
        assert pos.stats.retransmissions == 2
        assert pos.stats.frames_sent == 3
        assert "I0" in str(info.value)


def test_sale_never_resent_after_lost_response() -> None:
    with fake_on_pty(lose_sale_response=True) as (fake, path), \
            SerialPosTerminal(path, response_timeout=0.5, **FAST) as pos:
        result = pos.sale(1234, timeout=0.5)
        assert result.approved
        assert result.raw["recovered_by"] == "query_last"
        assert result.raw["performed"]
        assert result.reference == "000000123456"
        assert [m.type for m in fake.received] == ["S0", "Q0"]
        # the next sale goes through normally
        fake.lose_sale_response = False
        assert pos.sale(99).approved
        assert [m.type for m in fake.received].count("S0") == 2


def test_sale_never_received_is_reported_not_found() -> None:
    # the S0 is lost three times (no ACK): outcome unknown -> Q0, which says the POS never ran it
    with fake_on_pty(drop_incoming=3) as (fake, path), SerialPosTerminal(path, **FAST) as pos:
        result = pos.sale(1234)
        assert result.result == "NF"
        assert result.raw["performed"] is False
        assert [m.type for m in fake.received] == ["Q0"]
        assert pos.stats.retransmissions == 2


def test_pos_hanging_up_mid_sale_raises_link_error() -> None:
    with fake_on_pty(hang_up_on_sale=True) as (_fake, path), SerialPosTerminal(path, **FAST) as pos:
        with pytest.raises(PosLinkError, match="outcome unknown"):
            pos.sale(100, timeout=5)
        with pytest.raises(PosLinkError, match="link is down"):
            pos.identify()


def test_silent_pos_sale_is_bounded_timeout() -> None:
    with fake_on_pty(silent=True) as (_fake, path), SerialPosTerminal(path, **FAST) as pos:
        start = time.monotonic()
        with pytest.raises(PosTimeout, match="outcome unknown"):
            pos.sale(100, timeout=1.0)
        assert time.monotonic() - start < 5.0


def test_invalid_reference_is_a_value_error_before_anything_is_sent() -> None:
    with fake_on_pty() as (fake, path), SerialPosTerminal(path, **FAST) as pos:
        with pytest.raises(ValueError, match="neither an RRN"):
            pos.void("12AB")
        with pytest.raises(ValueError, match="neither an RRN"):
            pos.refund(100, "1234567")
        assert fake.received == []


def test_write_failure_during_cancel_is_a_link_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with fake_on_pty() as (_fake, path), SerialPosTerminal(path, **FAST) as pos:
        def broken(_data: bytes) -> None:
            raise serial.SerialException("write failed")

        monkeypatch.setattr(pos._port, "write", broken)
        with pytest.raises(PosLinkError, match="cannot write"):
            pos.cancel(timeout=1.0)
        monkeypatch.undo()


def test_port_that_does_not_exist() -> None:
    with pytest.raises(PosLinkError, match="cannot open"):
        SerialPosTerminal("/dev/pts/99999", **FAST)


def test_socket_transport() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    accepted: list[socket.socket] = []

    def serve() -> None:
        conn, _ = server.accept()
        accepted.append(conn)

        def read(timeout: float) -> bytes:
            ready, _, _ = select.select([conn], [], [], timeout)
            if not ready:
                return b""
            data = conn.recv(4096)
            if not data:
                raise OSError("closed")
            return data

        fake = FakePos(read, conn.sendall)
        holder.append(fake)
        fake.run()

    holder: list[FakePos] = []
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with SerialPosTerminal(f"socket://127.0.0.1:{port}", **FAST) as pos:
            assert pos.identify().model == "FAKE-1"
            assert pos.sale(700).approved
    finally:
        for fake in holder:
            fake.stop.set()
        thread.join(timeout=2)
        for conn in accepted:
            conn.close()
        server.close()


class _PtyWithoutModemLines(serial.Serial):
    """A pty opened with pyserial for an RFC 2217 server: ptys have no modem lines (tooling notes), so
    DTR/RTS changes are ignored and CTS/DSR/RI/CD read as off."""

    def _update_dtr_state(self) -> None:
        return None

    def _update_rts_state(self) -> None:
        return None

    @property
    def cts(self) -> bool:
        return False

    @property
    def dsr(self) -> bool:
        return False

    @property
    def ri(self) -> bool:
        return False

    @property
    def cd(self) -> bool:
        return False


@dataclass
class _SocketWriter:
    """The thread-safe ``write`` the RFC 2217 PortManager expects of its connection."""

    conn: socket.socket
    lock: threading.Lock = field(default_factory=threading.Lock)

    def write(self, data: bytes) -> None:
        with self.lock:
            self.conn.settimeout(2.0)
            try:
                self.conn.sendall(data)
            finally:
                self.conn.settimeout(0.01)


def test_rfc2217_transport() -> None:
    # fake POS on a pty <- pyserial's RFC 2217 PortManager on the pty's other end <- TCP <- rfc2217:// driver
    master, slave = os.openpty()
    tty.setraw(slave)
    lab_end = _PtyWithoutModemLines(os.ttyname(slave), timeout=0.01)  # the serial server's port
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    threads: list[threading.Thread] = []
    conns: list[socket.socket] = []

    def serve() -> None:
        conn, _ = server.accept()
        conns.append(conn)
        conn.settimeout(0.01)
        writer = _SocketWriter(conn)
        manager = serial.rfc2217.PortManager(lab_end, writer)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                data = conn.recv(4096)
                if not data:
                    return
                lab_end.write(b"".join(manager.filter(data)))
            waiting = lab_end.in_waiting
            if waiting:
                writer.write(b"".join(manager.escape(lab_end.read(waiting))))

    threads.append(threading.Thread(target=serve, daemon=True))
    threads[0].start()

    def read(timeout: float) -> bytes:  # the POS on the master side
        ready, _, _ = select.select([master], [], [], timeout)
        return os.read(master, 4096) if ready else b""

    fake = FakePos(read, lambda data: os.write(master, data) and None)
    threads.append(threading.Thread(target=fake.run, daemon=True))
    threads[1].start()
    try:
        port = server.getsockname()[1]
        with SerialPosTerminal(f"rfc2217://127.0.0.1:{port}", **FAST) as pos:
            assert pos.identify().model == "FAKE-1"
            assert pos.sale(321).approved
    finally:
        fake.stop.set()
        stop.set()
        for thread in threads:
            thread.join(timeout=2)
        for conn in conns:
            conn.close()
        server.close()
        lab_end.close()
        os.close(master)
        os.close(slave)
