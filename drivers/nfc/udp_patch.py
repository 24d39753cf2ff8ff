"""nfcpy's UDP pseudo-driver, made usable for a card emulator (see docs/tooling-notes.md, NFC section).

``ContactlessFrontend.listen()`` mutes the device first; the udp driver's ``mute()`` closes and
rebinds the listening socket, dropping the frames the reader already queued (its SENS_REQ), so every
re-activation stalls ~1 s. :func:`apply` keeps a *listening* socket (one bound to the device's own
port) open across ``mute()``; ``close()`` still closes it. Reader sockets are untouched, so a reader's
``mute()`` still tells the card ``RFOFF`` (field off). Idempotent; applied by the emulator.

:func:`capped_receive` shortens the driver's fixed 1 s discovery waits for a polling reader, and
:func:`drain` / :func:`wake` let the emulator discard stale frames and interrupt a blocking listen.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import nfc.clf.udp as udp

_lock = threading.Lock()
_MARK = "_paylab_keeps_listener"


def _is_listener(device: Any) -> bool:
    sock = getattr(device, "socket", None)
    if sock is None:
        return False
    try:
        return sock.getsockname()[1] == device.addr[1]
    except OSError:
        return False


def apply() -> None:
    """Patch :class:`nfc.clf.udp.Device` once per process (thread-safe, idempotent)."""
    with _lock:
        if getattr(udp.Device, _MARK, False):
            return
        original_mute: Callable[[Any], None] = udp.Device.mute
        original_bind: Callable[[Any, float], bool] = udp.Device._bind_socket

        def mute(self: Any) -> None:
            if _is_listener(self):
                return                    # keep the bound socket: queued frames survive
            original_mute(self)

        def close(self: Any) -> None:
            if _is_listener(self):
                self.socket.close()
                self.socket = None
                return
            original_mute(self)

        def _bind_socket(self: Any, time_to_return: float) -> bool:
            if _is_listener(self):
                return True
            return original_bind(self, time_to_return)

        udp.Device.mute = mute
        udp.Device.close = close
        udp.Device._bind_socket = _bind_socket
        setattr(udp.Device, _MARK, True)


def is_applied() -> bool:
    return bool(getattr(udp.Device, _MARK, False))


@contextlib.contextmanager
def capped_receive(device: Any, seconds: float) -> Iterator[None]:
    """Within the block, no receive of this udp ``device`` waits longer than ``seconds`` (sense polling)."""
    if not isinstance(device, udp.Device):
        yield
        return
    original = device._recv_data

    def capped(timeout: float | None, *brty: str) -> Any:
        return original(seconds if timeout is None else min(timeout, seconds), *brty)

    device._recv_data = capped
    try:
        yield
    finally:
        with contextlib.suppress(AttributeError):
            del device._recv_data


def drain(device: Any) -> int:
    """Discard every datagram queued on a udp device's socket; returns how many."""
    sock = getattr(device, "socket", None) if isinstance(device, udp.Device) else None
    count = 0
    while sock is not None and select.select([sock], [], [], 0)[0]:
        try:
            sock.recvfrom(2048)
        except OSError:
            break
        count += 1
    return count


def wake(device: Any) -> None:
    """Send ``RFOFF`` to a listening udp device's own port so a blocking receive returns early."""
    if not isinstance(device, udp.Device):
        return
    host, port = device.addr
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, contextlib.suppress(OSError):
        sock.sendto(b"RFOFF", ("127.0.0.1" if host in ("0.0.0.0", "") else host, port))
