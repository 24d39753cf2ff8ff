"""PC/SC round trip: pyscard → pcscd → vpcd → VpcdCardBridge → emulated card, against the bare vpcd
socket protocol talking to the same bridge and card (this script plays vpcd with a local listener).

Prints µs per APDU each way, APDUs/s and the ratio (goal: pcscd path ≤ 2× the bare socket for
the emulated SE), for the emulated eSE (T=1 SELECT of the ISD, in-memory image) and for a trivial
card that answers 9000 (transport cost alone). Also pcscd start → readers visible and card
insert → seen by pcscd. Numbers, not assertions.
"""

from __future__ import annotations

import socket
import statistics
import time

from paylab.drivers.pcsc import ManagedPcscd, PcscReader, VpcdCardBridge
from paylab.drivers.se.catalog_default import default_catalog
from paylab.drivers.se.factory import fabricate
from paylab.drivers.se.form_factor import ESE
from paylab.drivers.se.image import CardImage
from paylab.drivers.se.runtime import SecureElement

SELECT_ISD = bytes.fromhex("00A4040008A000000151000000")
N = 5000


class EchoCard:
    """Answers 9000 to everything: what is left is the transport."""

    atr = ESE.atr

    def power_on(self, interface="contact"):
        return self.atr

    def power_off(self):
        pass

    def transmit(self, raw, *, interface=None):
        return b"\x90\x00"


def make_se() -> SecureElement:
    image = CardImage(None, durable=False)
    fabricate(image, ESE)
    return SecureElement(image, ESE, default_catalog(), seed=1)


def recv_exact(conn: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("bridge closed the link")
        buf += chunk
    return buf


class BareVpcd:
    """This script in vpcd's seat: a local listener the bridge dials; one sendall per message."""

    def __init__(self, card) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.bridge = VpcdCardBridge(card, self.listener.getsockname()[1], reconnect=False)
        self.bridge.insert()
        self.conn, _ = self.listener.accept()
        self.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn.sendall(b"\x00\x01\x01")                       # power on (no reply)

    def transmit(self, apdu: bytes) -> bytes:
        self.conn.sendall(len(apdu).to_bytes(2, "big") + apdu)
        return recv_exact(self.conn, int.from_bytes(recv_exact(self.conn, 2), "big"))

    def close(self) -> None:
        self.conn.close()
        self.bridge.remove()
        self.listener.close()


def per_apdu_us(transmit, apdu: bytes, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        transmit(apdu)
    return (time.perf_counter() - start) / n * 1e6


def compare(pcscd: ManagedPcscd, card, apdu: bytes, n: int, rounds: int = 5) -> tuple[float, float, float]:
    """(bare µs/APDU, pcscd µs/APDU, insert→seen s): both paths serve the same card, measured in
    alternating rounds (medians), so a busy machine skews both alike."""
    bare = BareVpcd(card)
    slot = pcscd.allocate_slot()
    bridge = VpcdCardBridge.for_slot(card, slot)
    try:
        with PcscReader(slot.reader_name) as reader:
            t0 = time.perf_counter()
            bridge.insert()
            reader.wait_for_card(5)
            seen = time.perf_counter() - t0
            reader.power_on()
            for _ in range(200):                                  # warm up both
                reader.transmit(apdu)
                bare.transmit(apdu)
            bare_us, pcsc_us = [], []
            for _ in range(rounds):
                bare_us.append(per_apdu_us(bare.transmit, apdu, n // rounds))
                pcsc_us.append(per_apdu_us(reader.transmit, apdu, n // rounds))
            reader.power_off()
    finally:
        bridge.remove()
        bare.close()
        pcscd.release_slot(slot)
    return statistics.median(bare_us), statistics.median(pcsc_us), seen


def main() -> None:
    t0 = time.perf_counter()
    pcscd = ManagedPcscd.for_process(readers=4, contactless_readers=0)
    print(f"pcscd start -> readers visible (process instance, via SCardListReaders): "
          f"{pcscd.started_in * 1000:.1f} ms (for_process() total {1000 * (time.perf_counter() - t0):.1f} ms)")
    starts = []
    for _ in range(5):
        with ManagedPcscd(readers=2) as solo:
            starts.append(solo.started_in * 1000)
    print(f"pcscd start -> vpcd ports listening (standalone, median of 5): {statistics.median(starts):.1f} ms")

    try:
        seen_times = []
        for label, factory in (("emulated eSE, SELECT ISD (T=1)", make_se), ("echo card, 9000 (transport only)",
                                                                                EchoCard)):
            bare, pcsc, seen = compare(pcscd, factory(), SELECT_ISD, N)
            seen_times.append(seen)
            print(f"{label}:")
            print(f"  bare vpcd socket : {bare:7.1f} µs/APDU  {1e6 / bare:8.0f} APDU/s")
            print(f"  pyscard->pcscd   : {pcsc:7.1f} µs/APDU  {1e6 / pcsc:8.0f} APDU/s")
            print(f"  ratio pcscd/bare : {pcsc / bare:.2f}x")
        slot = pcscd.allocate_slot()
        bridge = VpcdCardBridge.for_slot(EchoCard(), slot)
        with PcscReader(slot.reader_name) as reader:
            for _ in range(4):
                t = time.perf_counter()
                bridge.insert()
                reader.wait_for_card(5)
                seen_times.append(time.perf_counter() - t)
                bridge.remove()
                reader.wait_for_removal(5)
        pcscd.release_slot(slot)
        print(f"card insert -> seen by pcscd: median {statistics.median(seen_times) * 1000:.0f} ms, "
              f"max {max(seen_times) * 1000:.0f} ms over {len(seen_times)} (pcscd polls every 400 ms)")
    finally:
        pcscd.stop()


if __name__ == "__main__":
    main()
