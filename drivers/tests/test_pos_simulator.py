"""The POS simulator process end to end: ECR (SerialPosTerminal on a real pty) -> simulator process ->
NFC reader (nfcpy udp) -> NfcCardEmulator -> an issued eSE; and simulator -> ISO 8583 TCP -> the embedded
reference backend, whose ledger tells whether money moved (like lab/demo_rig.py).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from paylab.drivers.nfc.emulator import NfcCardEmulator
from paylab.drivers.pos.launcher import PosSimulatorProcess
from paylab.drivers.pos.serial_pos import SerialPosTerminal
from paylab.drivers.pos.simulator import SimulatorConfig, ca_key_entry
from paylab.drivers.se.catalog_default import default_catalog
from paylab.drivers.se.factory import fabricate
from paylab.drivers.se.form_factor import ESE
from paylab.drivers.se.image import CardImage
from paylab.drivers.se.runtime import SecureElement
from paylab.lab import profiles
from paylab.lab.backend.config import load_config
from paylab.lab.backend.ledger import account_number, cardholder_account
from paylab.lab.backend.runner import EmbeddedBackend
from paylab.lab.issuance import issue_pboc
from paylab.lab.protocol import cps, ecr

ONLINE_AMOUNT = 12_345      # above the simulator's floor limit (10 000): the card asks for an ARQC
OFFLINE_AMOUNT = 880        # e-cash, approved by the card with a TC


class HostProxy:
    """A TCP relay between the POS and the acquirer that can lose the next response and drop the link."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.server = socket.create_server(("127.0.0.1", 0))
        self.address = self.server.getsockname()[:2]
        self.lose_responses = 0     # how many of the next responses to lose (with their connection)
        self.lost = 0
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._spawn(self._accept)

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream, timeout=5)
            upstream.settimeout(None)
            self._sockets += [client, upstream]
            self._spawn(self._pump, client, upstream, False)
            self._spawn(self._pump, upstream, client, True)

    def _pump(self, source: socket.socket, sink: socket.socket, responses: bool) -> None:
        with contextlib.suppress(OSError):
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if responses and self._take_loss():
                    break  # the response is lost with the connection
                sink.sendall(data)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _take_loss(self) -> bool:
        with self._lock:
            if self.lose_responses <= 0:
                return False
            self.lose_responses -= 1
            self.lost += 1
            return True

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self.server.shutdown(socket.SHUT_RDWR)
        self.server.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=5)
        for sock in self._sockets:
            sock.close()


class WithdrawOnGpo:
    """The issued eSE, lifted out of the field the moment the reader sends GPO (a tap cut short)."""

    def __init__(self, se: SecureElement, emulator: NfcCardEmulator) -> None:
        self.se = se
        self.emulator = emulator
        self.atr = se.atr

    def power_on(self, interface: str = "contact") -> bytes:
        return self.se.power_on(interface)  # type: ignore[arg-type]

    def power_off(self) -> None:
        self.se.power_off()

    def transmit(self, raw: bytes, *, interface: str | None = None) -> bytes:
        if raw[1:2] == b"\xa8":
            self.emulator.withdraw()
        return self.se.transmit(raw, interface=interface)  # type: ignore[arg-type]


@dataclass
class Rig:
    se: SecureElement
    emulator: NfcCardEmulator
    sim: PosSimulatorProcess
    pos: SerialPosTerminal
    proxy: HostProxy
    backend: EmbeddedBackend
    account: str
    pan: str
    tmk_hex: str

    def available(self) -> int:
        return self.backend.ctx.ledger.available(self.account)  # type: ignore[union-attr]


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    state: Path = tmp_path_factory.mktemp("pos-sim")
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
    config = load_config(overrides={"state_dir": state / "backend"})
    with EmbeddedBackend(config) as backend:
        proxy = HostProxy(backend.addresses["acquirer"])
        issuer = config.issuer_for_pan(profile.pan).name
        terminal = config.terminals[0]
        nfc_path = f"udp:127.0.0.1:{_free_udp_port()}"
        sim_config = SimulatorConfig(
            acquirer_host=proxy.address[0], acquirer_port=proxy.address[1], tid=terminal.tid, mid=terminal.mid,
            tmk=terminal.tmk.hex(), serial="QP1-TEST-01", firmware="9.9.1", reader=nfc_path, card_timeout=3.0,
            online_timeout=3.0, keepalive_interval=0.1, contactless_floor_limit=10_000,
            cvm_required_limit=100_000, ca_keys=[ca_key_entry(chain.ca_public)])
        emulator = NfcCardEmulator(nfc_path)
        try:
            with PosSimulatorProcess(sim_config, log_path=state / "pos.log") as sim, \
                    SerialPosTerminal(sim.port, name="ecr") as pos:
                yield Rig(se, emulator, sim, pos, proxy, backend,
                          cardholder_account(issuer, account_number(issuer, profile.pan)), profile.pan,
                          terminal.tmk.hex())
        finally:
            emulator.close()
            proxy.close()


def test_identify(rig: Rig) -> None:
    identity = rig.pos.identify()
    assert identity.model == "PAYLAB-QP1"
    assert (identity.serial, identity.firmware, identity.status) == ("QP1-TEST-01", "9.9.1", "idle")
    assert identity.terminal_id == "PAYLAB01"
    assert identity.merchant_id == "898440154110001"
    assert rig.sim.identity == identity


def test_online_sale_debits_the_ledger_and_void_reverses_it(rig: Rig) -> None:
    rig.emulator.present(rig.se)
    before = rig.available()
    sale = rig.pos.sale(ONLINE_AMOUNT, ecr_ref="INV-0001")
    assert sale.approved, sale
    assert rig.available() == before - ONLINE_AMOUNT
    assert sale.pan == f"{rig.pan[:6]}{'*' * (len(rig.pan) - 10)}{rig.pan[-4:]}"
    assert sale.reference is not None
    assert len(sale.reference) == 12
    assert sale.auth_code
    assert sale.stan is not None
    assert len(sale.stan) == 6
    assert sale.ecr_ref == "INV-0001"
    receipt = "\n".join(sale.receipt)
    assert "APPROVED" in receipt
    assert "ARQC" in receipt
    assert sale.pan in receipt
    assert rig.pan not in receipt
    last = rig.pos.query_last()
    assert last.raw["original_trace"] == sale.trace
    assert last.reference == sale.reference

    void = rig.pos.void(sale.reference)
    assert void.approved, void
    assert rig.available() == before


def test_offline_ecash_sale_is_approved_by_the_card(rig: Rig) -> None:
    rig.emulator.present(rig.se)
    before = rig.available()
    sale = rig.pos.sale(OFFLINE_AMOUNT)
    assert sale.approved, sale
    assert sale.reference is None  # never went to the host
    receipt = "\n".join(sale.receipt)
    assert "OFFLINE" in receipt
    assert "TC" in receipt
    assert rig.available() == before


def test_card_withdrawn_mid_tap_charges_nothing(rig: Rig) -> None:
    rig.emulator.present(WithdrawOnGpo(rig.se, rig.emulator))
    before = rig.available()
    sale = rig.pos.sale(ONLINE_AMOUNT)
    assert sale.result == "E1"
    assert "card removed" in " ".join(sale.raw.get("text", []))  # type: ignore[arg-type]
    assert rig.available() == before
    rig.emulator.present(rig.se)
    assert rig.pos.query_last().result == "E1"


def test_lost_host_connection_sends_reversal_and_charges_nothing(rig: Rig) -> None:
    rig.emulator.present(rig.se)
    before = rig.available()
    rig.proxy.lose_responses = 2  # the 0210 and the first 0410: the reversal is repeated until answered
    sale = rig.pos.sale(ONLINE_AMOUNT)
    assert rig.proxy.lost == 2
    assert sale.result == "E1"
    assert "reversed" in " ".join(sale.raw.get("text", []))  # type: ignore[arg-type]
    assert rig.available() == before
    log = rig.sim.log_tail(200)
    assert "attempt 1: ConnectionError" in log
    assert "answered 00 (attempt 2)" in log


def test_cancel_while_waiting_for_the_card(rig: Rig) -> None:
    rig.emulator.withdraw()
    seen = rig.pos.stats.keep_alives
    outcome: list[object] = []
    worker = threading.Thread(target=lambda: outcome.append(rig.pos.sale(500, timeout=10)))
    worker.start()
    deadline = time.monotonic() + 5
    while rig.pos.stats.keep_alives == seen and time.monotonic() < deadline:
        time.sleep(0.02)
    cancel = rig.pos.cancel()
    worker.join(timeout=10)
    assert cancel.approved
    sale = outcome[0]
    assert sale.result == "C1"  # type: ignore[attr-defined]
    assert sale.raw["keep_alives"] >= 1  # type: ignore[attr-defined]


def test_garbage_and_unknown_requests_do_not_hurt(rig: Rig) -> None:
    rig.pos.send_raw(b"\x02\x00\x05S0\x01\x06\x03\x00")  # bad LRC / truncated: the POS NAKs, we ignore it
    rig.pos.send_raw(ecr.encode_frame(b"Z0"))            # a valid frame of an unknown type
    rig.pos.send_raw(ecr.encode_frame(ecr.EcrMessage.build("S0", trace=424242).encode()))  # no amount
    deadline = time.monotonic() + 5
    while len(rig.pos.stats.unsolicited) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "NAKed a bad frame" in rig.sim.log_tail(50)
    answers = {m.type: m for m in rig.pos.stats.unsolicited}
    assert answers["Z1"].result == "E1"
    assert answers["S1"].result == "E1"
    assert answers["S1"].get("text") == "amount missing"
    assert rig.pos.identify().status == "idle"


def test_logs_hold_no_pan_or_key(rig: Rig) -> None:
    log = rig.sim.log_tail(100_000)
    assert "signed on" in log
    assert rig.pan not in log
    assert rig.tmk_hex.lower() not in log.lower()


def test_simulator_over_a_socket_transport(tmp_path: Path) -> None:
    config = SimulatorConfig(tmk="00" * 16, serial="QP1-SOCK")
    with PosSimulatorProcess(config, transport="socket", log_path=tmp_path / "sock.log") as sim:
        assert sim.port.startswith("socket://127.0.0.1:")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["sock.log"]   # the TMK config is not beside it
        config_dir = Path(sim._config_dir.name)
        assert config_dir.stat().st_mode & 0o077 == 0
        with SerialPosTerminal(sim.port) as pos:
            assert pos.identify().serial == "QP1-SOCK"
            assert pos.query_last().result == "NF"
        pid = sim.pid
    assert sim.pid is None
    assert not config_dir.exists()
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
