"""ECR <-> POS round trips over a real pty: numbers, not assertions.

1. identify (I0 -> ACK, I1 -> ACK) through :class:`SerialPosTerminal` against an in-process POS that
   runs the protocol core's POS-role link on the pty master (driver + link + pty cost);
2. identify against the POS simulator process (:class:`PosSimulatorProcess`);
3. a full sale against the simulator: ECR -> simulator -> NFC reader (nfcpy udp) -> card emulator ->
   issued eSE, and ISO 8583 to the embedded reference backend (online ARQC; offline e-cash TC).
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path

from paylab.drivers.pos.ecr_messages import identity_message
from paylab.drivers.pos.launcher import PosSimulatorProcess
from paylab.drivers.pos.serial_pos import SerialPosTerminal
from paylab.drivers.pos.simulator import SimulatorConfig, ca_key_entry
from paylab.drivers.protocols.pos import PosIdentity
from paylab.lab.protocol import ecr

IDENTIFY_ROUNDS = 300
SALE_ROUNDS = 20


def _stats(label: str, samples: list[float]) -> None:
    samples = sorted(samples)
    p95 = samples[int(len(samples) * 0.95) - 1]
    print(f"{label:<52} median {statistics.median(samples) * 1e6:9.0f} µs   p95 {p95 * 1e6:9.0f} µs   "
          f"(n={len(samples)})")


def _measure(fn: Callable[[], object], rounds: int) -> list[float]:
    fn()  # warm up
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def bench_in_process_pos() -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    stop = threading.Event()
    identity = PosIdentity("BENCH", "S", "1", "BENCH001", "123456789012345")

    def pos() -> None:
        link = ecr.EcrLink("pos")
        while not stop.is_set():
            ready, _, _ = select.select([master], [], [], 0.01)
            data = os.read(master, 4096) if ready else b""
            out = link.feed(data, time.monotonic()) if data else link.poll(time.monotonic())
            for item in out:
                if isinstance(item, bytes):
                    os.write(master, item)
                elif isinstance(item, ecr.MessageReceived):
                    for reply in link.send(identity_message(identity, trace=item.message.trace), time.monotonic()):
                        if isinstance(reply, bytes):
                            os.write(master, reply)

    thread = threading.Thread(target=pos, daemon=True)
    thread.start()
    try:
        with SerialPosTerminal(os.ttyname(slave), poll_interval=0.01) as terminal:
            _stats("identify, in-process POS on a pty", _measure(terminal.identify, IDENTIFY_ROUNDS))
    finally:
        stop.set()
        thread.join(timeout=2)
        os.close(master)
        os.close(slave)


def bench_simulator_identify() -> None:
    start = time.perf_counter()
    with PosSimulatorProcess(SimulatorConfig(tmk="00" * 16)) as sim:
        print(f"{'simulator process start (until identify answers)':<52} {(time.perf_counter() - start) * 1e3:9.0f} ms")
        with SerialPosTerminal(sim.port) as terminal:
            _stats("identify, simulator process on a pty", _measure(terminal.identify, IDENTIFY_ROUNDS))


def bench_simulator_sale() -> None:
    try:
        from paylab.drivers.nfc.emulator import NfcCardEmulator
        from paylab.drivers.se.catalog_default import default_catalog
        from paylab.drivers.se.factory import fabricate
        from paylab.drivers.se.form_factor import ESE
        from paylab.drivers.se.image import CardImage
        from paylab.drivers.se.runtime import SecureElement
        from paylab.lab import profiles
        from paylab.lab.backend.config import load_config
        from paylab.lab.backend.runner import EmbeddedBackend
        from paylab.lab.issuance import issue_pboc
        from paylab.lab.protocol import cps
    except ImportError as exc:
        print(f"full sale round trip: not available ({exc})")
        return
    state = Path(tempfile.mkdtemp(prefix="paylab-bench-pos-"))
    try:
        profile = profiles.load_bundled("pboc_debit_ecash_sm4")
        image = CardImage(state / "ese.card")
        fabricate(image, ESE, overwrite=True)
        se = SecureElement(image, ESE, default_catalog())
        se.power_on()
        chain = cps.generate_oda_chain(profile, seed_or_rng=7)
        for _ in issue_pboc(lambda raw: se.transmit(raw, interface="contact"), se.registry.isd().aid, profile,
                            oda=chain):
            pass
        se.power_off()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            nfc_path = f"udp:127.0.0.1:{probe.getsockname()[1]}"
        config = load_config(overrides={"state_dir": state / "backend"})
        with EmbeddedBackend(config) as backend:
            host, port = backend.addresses["acquirer"]
            terminal = config.terminals[0]
            sim_config = SimulatorConfig(acquirer_host=host, acquirer_port=port, tid=terminal.tid, mid=terminal.mid,
                                         tmk=terminal.tmk.hex(), reader=nfc_path, card_timeout=5.0,
                                         contactless_floor_limit=10_000, cvm_required_limit=100_000,
                                         ca_keys=[ca_key_entry(chain.ca_public)], log_level="WARNING")
            emulator = NfcCardEmulator(nfc_path)
            try:
                emulator.present(se)
                with PosSimulatorProcess(sim_config) as sim, SerialPosTerminal(sim.port) as pos:
                    online = _measure(lambda: pos.sale(12_345), SALE_ROUNDS)
                    _stats("sale, online (ECR->POS->NFC->eSE, ISO 8583 -> issuer)", online)
                    offline = _measure(lambda: pos.sale(100), SALE_ROUNDS)
                    _stats("sale, offline e-cash (ECR->POS->NFC->eSE, TC + fDDA)", offline)
            finally:
                emulator.close()
    finally:
        shutil.rmtree(state, ignore_errors=True)


def main() -> int:
    bench_in_process_pos()
    bench_simulator_identify()
    bench_simulator_sale()
    return 0


if __name__ == "__main__":
    sys.exit(main())
