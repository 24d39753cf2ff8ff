"""Serve one emulated card on a vsmartcard vpcd port: the card side of the vpcd socket protocol.

vpcd (a pcscd reader driver) LISTENS on a TCP port; the virtual card CONNECTS to it. Inserting the
card = connecting, removing it = closing. Both directions frame every message as a 2-byte
big-endian length + payload. 1-byte payloads are control messages from vpcd: ``00`` power off,
``01`` power on, ``02`` reset (no reply to these three), ``04`` get ATR (reply: the ATR). Longer
payloads are C-APDUs; the reply is the R-APDU. A 0-length reply would drop the link, so a card
failure is answered ``6F00`` (ISO/IEC 7816-4 clause 5.6, "no precise diagnosis") and recorded.
pcscd polls every reader with get-ATR every 400 ms even when powered off: it is always answered.

Latency trap (tooling notes): vpcd writes the length and the payload in two writes; with delayed
ACKs the second write waits ~40 ms. ``TCP_QUICKACK`` is set after every length header read (the
kernel clears it again by itself) and every reply goes out in ONE ``sendall``.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from typing import TYPE_CHECKING

from paylab.drivers.errors import ReaderUnavailable
from paylab.drivers.protocols.card import ApduCard, Interface

if TYPE_CHECKING:
    from .pcscd import VpcdSlot

log = logging.getLogger(__name__)

CTRL_POWER_OFF = 0x00
CTRL_POWER_ON = 0x01
CTRL_RESET = 0x02
CTRL_GET_ATR = 0x04
SW_NO_PRECISE_DIAGNOSIS = b"\x6f\x00"
RECONNECT_INTERVAL = 0.05
_HAS_QUICKACK = hasattr(socket, "TCP_QUICKACK")


def _quickack(sock: socket.socket) -> None:
    if _HAS_QUICKACK:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    """``size`` bytes, or None when the peer closed the link first."""
    buf = bytearray()
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


class VpcdCardBridge:
    """Presents ``card`` on the vpcd reader at ``host:port`` (a :class:`VpcdSlot`'s port).

    ``interface`` ("contact" or "contactless") is passed to the card's ``power_on``/``transmit``.
    With ``reconnect`` (default) a link dropped by vpcd (pcscd killed or restarted) is re-dialled
    every 50 ms until :meth:`remove`: the card comes back by itself once pcscd does.
    Errors in the serving thread never escape it: they are recorded in :attr:`errors`.
    """

    def __init__(self, card: ApduCard, port: int, *, host: str = "127.0.0.1", interface: Interface = "contact",
                 reconnect: bool = True, name: str | None = None) -> None:
        if interface not in ("contact", "contactless"):
            raise ValueError(f"interface must be 'contact' or 'contactless', not {interface!r}")
        self.host = host
        self.port = port
        self.interface: Interface = interface
        self.reconnect = reconnect
        self.name = name or f"vpcd {host}:{port}"
        self._card = card
        self._card_lock = threading.Lock()
        self._sock_lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._atr: bytes | None = None
        self._powered = False   # the last vpcd control was a power-on/reset (pcscd thinks the card is powered)
        self.apdu_count = 0
        self.connections = 0
        """Links established (1 after insert; +1 per reconnect after a pcscd restart)."""
        self.errors: list[str] = []
        """Card exceptions (answered 6F00) and link errors, oldest first; APDU data never included."""

    @classmethod
    def for_slot(cls, card: ApduCard, slot: VpcdSlot, **kwargs: object) -> VpcdCardBridge:
        """A bridge on ``slot``'s port, contactless when the slot is (``kwargs`` as for the constructor)."""
        kwargs.setdefault("interface", slot.interface)
        kwargs.setdefault("name", slot.reader_name)
        return cls(card, slot.port, host=slot.host, **kwargs)  # type: ignore[arg-type]

    # -- state ---------------------------------------------------------------------------------------
    @property
    def card(self) -> ApduCard:
        """The card being served."""
        return self._card

    @property
    def inserted(self) -> bool:
        """True between :meth:`insert` and :meth:`remove` (even while re-dialling a restarted pcscd)."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def connected(self) -> bool:
        """True while the TCP link to vpcd is up."""
        return self._sock is not None

    def swap(self, card: ApduCard) -> None:
        """Serve ``card`` from now on (takes effect at the next message; re-insert for a clean swap)."""
        with self._card_lock:
            old, self._card = self._card, card
            self._atr = None
            if self._powered:
                # pcscd believes the card in the slot is powered: the new one must be too, or its first
                # APDU meets a card that never saw a power-on
                try:
                    old.power_off()
                    self._atr = bytes(card.power_on(self.interface))
                except Exception as exc:
                    self.errors.append(f"card error on swap: {type(exc).__name__}: {exc}")

    # -- insert / remove ----------------------------------------------------------------------------
    def insert(self, timeout: float = 5.0) -> None:
        """Connect to vpcd (= insert the card) and serve in the background; returns once connected.
        :class:`ReaderUnavailable` when vpcd does not accept within ``timeout``."""
        if self.inserted:
            return
        self._stop.clear()
        deadline = time.monotonic() + timeout
        while True:
            try:
                sock = self._dial(max(0.05, deadline - time.monotonic()))
                break
            except OSError as exc:
                if time.monotonic() >= deadline:
                    raise ReaderUnavailable("vpcd does not accept the card", resource=self.name,
                                            detail=f"{self.host}:{self.port}: {exc}") from exc
                time.sleep(RECONNECT_INTERVAL)
        with self._sock_lock:
            self._sock = sock
        self._thread = threading.Thread(target=self._run, name=f"vpcd-bridge-{self.port}", daemon=True)
        self._thread.start()

    def remove(self, timeout: float = 2.0) -> None:
        """Close the link (= pull the card out; the card loses power). Idempotent."""
        self._stop.set()
        with self._sock_lock:
            sock = self._sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                self.errors.append(f"serving thread did not stop within {timeout} s")
            self._thread = None
        self._close_sock()
        self._card_power_off(timeout)

    def close(self) -> None:
        """Same as :meth:`remove`."""
        self.remove()

    def __enter__(self) -> VpcdCardBridge:
        self.insert()
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    # -- serving --------------------------------------------------------------------------------------
    def _dial(self, timeout: float) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connections += 1
        return sock

    def _close_sock(self) -> None:
        with self._sock_lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            sock = self._sock
            if sock is not None:
                try:
                    self._serve(sock)
                except OSError as exc:
                    if not self._stop.is_set():
                        self.errors.append(f"link error: {exc}")
                except Exception as exc:  # never let the bridge die with an unhandled thread exception
                    self.errors.append(f"bridge error: {type(exc).__name__}: {exc}")
                    log.exception("%s: bridge error", self.name)
                self._close_sock()
                self._card_power_off()
            if self._stop.is_set() or not self.reconnect:
                return
            self._redial()

    def _redial(self) -> None:
        while not self._stop.wait(RECONNECT_INTERVAL):
            try:
                sock = self._dial(0.5)
            except OSError:
                continue
            with self._sock_lock:
                if self._stop.is_set():
                    sock.close()
                    return
                self._sock = sock
            return

    def _serve(self, sock: socket.socket) -> None:
        while not self._stop.is_set():
            _quickack(sock)          # ack vpcd's header segment on arrival, so Nagle releases its payload
            header = _recv_exact(sock, 2)
            if header is None:
                return
            _quickack(sock)
            size = int.from_bytes(header, "big")
            payload = _recv_exact(sock, size) if size else b""
            if payload is None:
                return
            reply = self._handle(payload)
            if reply is not None:
                sock.sendall(len(reply).to_bytes(2, "big") + reply)

    def _handle(self, payload: bytes) -> bytes | None:
        if not payload:
            return None
        with self._card_lock:
            card = self._card
            if len(payload) == 1:
                return self._control(card, payload[0])
            self.apdu_count += 1
            try:
                return bytes(card.transmit(payload, interface=self.interface))
            except Exception as exc:
                # the header is enough to find the APDU; data may hold a PAN or key
                self.errors.append(f"card error on APDU {payload[:4].hex().upper()}...: "
                                   f"{type(exc).__name__}: {exc}")
                return SW_NO_PRECISE_DIAGNOSIS

    def _control(self, card: ApduCard, code: int) -> bytes | None:
        try:
            if code == CTRL_GET_ATR:
                return self._card_atr(card)
            if code == CTRL_POWER_ON:
                self._atr = bytes(card.power_on(self.interface))
                self._powered = True
            elif code == CTRL_RESET:
                reset = getattr(card, "reset", None)
                self._atr = bytes(reset() if callable(reset) else card.power_on(self.interface))
                self._powered = True
            elif code == CTRL_POWER_OFF:
                self._powered = False
                card.power_off()
            else:
                self.errors.append(f"unknown vpcd control byte {code:02X}")
        except Exception as exc:
            self.errors.append(f"card error on control {code:02X}: {type(exc).__name__}: {exc}")
            if code == CTRL_GET_ATR:
                return self._atr or b"\x3b\x00"
        return None

    def _card_atr(self, card: ApduCard) -> bytes:
        atr = getattr(card, "atr", None)
        if isinstance(atr, bytes | bytearray) and atr:
            return bytes(atr)
        if self._atr is None:         # a card that only tells its ATR at power-on
            self._atr = bytes(card.power_on(self.interface))
            card.power_off()
        return self._atr

    def _card_power_off(self, timeout: float = 2.0) -> None:
        """Power the card off, waiting at most ``timeout`` s for a serving thread still inside the card
        (a stuck ``card.transmit`` must not hang the removal)."""
        if not self._card_lock.acquire(timeout=timeout):
            self.errors.append("card busy at removal")
            return
        try:
            self._powered = False
            try:
                self._card.power_off()
            except Exception as exc:
                self.errors.append(f"card error on removal: {type(exc).__name__}: {exc}")
        finally:
            self._card_lock.release()
