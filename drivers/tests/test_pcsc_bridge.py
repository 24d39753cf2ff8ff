"""VpcdCardBridge against a bare vpcd peer: this test plays vpcd's side of the socket protocol
(2-byte length + payload; 00 power off, 01 power on, 02 reset, 04 get ATR; longer = C-APDU)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest

from paylab.drivers.errors import ReaderUnavailable
from paylab.drivers.pcsc import VpcdCardBridge
from paylab.drivers.se.form_factor import ESE

SELECT_ISD_GP = bytes.fromhex("00A4040008A000000151000000")


class FlakyCard:
    """Answers 9000, raises on INS CA; counts power events."""

    atr = bytes.fromhex("3B8880017061796C6162534518")

    def __init__(self) -> None:
        self.events: list[str] = []

    def power_on(self, interface="contact"):
        self.events.append(f"on:{interface}")
        return self.atr

    def power_off(self):
        self.events.append("off")

    def transmit(self, raw, *, interface=None):
        if raw[1] == 0xCA:
            raise RuntimeError("applet bug")
        return b"\x90\x00"


class FakeVpcd:
    """vpcd's role: listen, accept the card, exchange length-prefixed messages."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.conn: socket.socket | None = None

    def accept(self) -> None:
        self.listener.settimeout(5)
        self.conn, _ = self.listener.accept()
        self.conn.settimeout(5)

    def send(self, payload: bytes) -> None:
        assert self.conn is not None
        self.conn.sendall(len(payload).to_bytes(2, "big") + payload)

    def recv(self) -> bytes:
        assert self.conn is not None
        size = int.from_bytes(self._exact(2), "big")
        return self._exact(size)

    def _exact(self, n: int) -> bytes:
        assert self.conn is not None
        buf = b""
        while len(buf) < n:
            chunk = self.conn.recv(n - len(buf))
            assert chunk, "bridge closed the link"
            buf += chunk
        return buf

    def exchange(self, payload: bytes) -> bytes:
        self.send(payload)
        return self.recv()

    def drop(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def close(self) -> None:
        self.drop()
        self.listener.close()


@pytest.fixture
def vpcd():
    peer = FakeVpcd()
    yield peer
    peer.close()


def test_control_bytes_apdus_and_card_errors(vpcd):
    card = FlakyCard()
    with VpcdCardBridge(card, vpcd.port, interface="contactless") as bridge:
        vpcd.accept()
        assert vpcd.exchange(b"\x04") == card.atr            # get ATR, card still unpowered
        vpcd.send(b"\x01")                                   # power on: no reply
        assert vpcd.exchange(bytes.fromhex("00A4040000")) == b"\x90\x00"
        assert vpcd.exchange(bytes.fromhex("80CA9F7F00")) == b"\x6f\x00"   # card exception -> 6F00
        vpcd.send(b"\x02")                                   # reset: power on again (no reset())
        vpcd.send(b"\x00")                                   # power off
        assert vpcd.exchange(b"\x04") == card.atr            # polled while off: still answered
        assert bridge.apdu_count == 2
        assert len(bridge.errors) == 1
        assert "80CA9F7F" in bridge.errors[0]
        assert "RuntimeError" in bridge.errors[0]
    assert card.events[:3] == ["on:contactless", "on:contactless", "off"]
    assert card.events[-1] == "off"                          # removal unpowers the card


def test_real_se_extended_apdu_over_the_socket(vpcd, emulated_se):
    se = emulated_se(ESE)
    with VpcdCardBridge(se, vpcd.port):
        vpcd.accept()
        vpcd.send(b"\x01")
        response = vpcd.exchange(SELECT_ISD_GP)
        assert response[-2:] == b"\x90\x00"
        big = bytes.fromhex("80CA0066") + b"\x00" + (3000).to_bytes(2, "big") + bytes(3000)
        assert len(vpcd.exchange(big)) >= 2


def test_reconnects_when_vpcd_comes_back(vpcd):
    bridge = VpcdCardBridge(FlakyCard(), vpcd.port)
    bridge.insert()
    try:
        vpcd.accept()
        assert vpcd.exchange(b"\x04") == FlakyCard.atr
        vpcd.drop()                                          # pcscd went away
        vpcd.accept()                                        # ...and is back: the card re-dials
        assert vpcd.exchange(b"\x04") == FlakyCard.atr
        assert bridge.connections == 2
        assert bridge.inserted
    finally:
        bridge.remove()
    assert not bridge.inserted
    assert not bridge.connected


def test_no_reconnect_when_disabled(vpcd):
    bridge = VpcdCardBridge(FlakyCard(), vpcd.port, reconnect=False)
    bridge.insert()
    try:
        vpcd.accept()
        vpcd.drop()
        assert vpcd.conn is None
        vpcd.listener.settimeout(0.3)
        with pytest.raises(TimeoutError):
            vpcd.listener.accept()
    finally:
        bridge.remove()


def test_insert_fails_typed_when_nothing_listens():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    bridge = VpcdCardBridge(FlakyCard(), port)
    with pytest.raises(ReaderUnavailable) as caught:
        bridge.insert(timeout=0.2)
    assert str(port) in str(caught.value)
    with contextlib.suppress(Exception):
        bridge.remove()


class StuckCard(FlakyCard):
    """A card whose transmit blocks until released (an applet that never answers)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def transmit(self, raw, *, interface=None):
        self.entered.set()
        self.release.wait(10)
        return b"\x90\x00"


def test_remove_does_not_hang_on_a_card_stuck_in_transmit(vpcd):
    card = StuckCard()
    bridge = VpcdCardBridge(card, vpcd.port)
    bridge.insert()
    serving = bridge._thread
    try:
        vpcd.accept()
        vpcd.send(b"\x01")
        vpcd.send(bytes.fromhex("00A4040000"))
        assert card.entered.wait(5)
        started = time.monotonic()
        bridge.remove(timeout=0.3)
        assert time.monotonic() - started < 3.0
        assert "card busy at removal" in bridge.errors
    finally:
        card.release.set()
        assert serving is not None
        serving.join(5)
    assert not serving.is_alive()
