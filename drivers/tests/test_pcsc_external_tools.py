"""Independent PC/SC clients (pcsc-tools' ``pcsc_scan``, OpenSC's ``opensc-tool``) see the managed
pcscd's readers and the emulated card: what an engineer's own tools see on the sim rig."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from paylab.drivers.errors import SimulationUnavailable
from paylab.drivers.pcsc import ManagedPcscd, VpcdCardBridge
from paylab.drivers.pcsc import pcscd as pcscd_module
from paylab.drivers.se.form_factor import ESE, SIM


def run(argv: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=20, check=False)
    assert done.returncode == 0, f"{argv}: {done.returncode} {done.stderr[-500:]}"
    return done.stdout


def spaced(atr: bytes) -> str:
    return " ".join(f"{b:02X}" for b in atr)


def test_pcsc_scan_sees_readers_and_atr(pcscd, pcsc_card):
    entry = pcsc_card(form_factor=ESE)
    listing = run(["pcsc_scan", "-r"], pcscd.env())
    for name in pcscd.reader_names:
        assert name in listing
    cards = run(["pcsc_scan", "-c", "-n"], pcscd.env())
    block = cards.split(entry.slot.reader_name, 1)[1].split(" Reader ", 1)[0]
    assert "Card inserted" in block
    assert f"ATR: {spaced(ESE.atr)}" in block


def test_opensc_tool_lists_reader_reads_atr_and_sends_apdu(pcscd, pcsc_card):
    entry = pcsc_card(form_factor=SIM)
    readers = run(["opensc-tool", "--list-readers"], pcscd.env())
    row = next(line for line in readers.splitlines() if line.endswith(entry.slot.reader_name))
    number, card_column = re.match(r"(\d+)\s+(\w+)", row).groups()  # type: ignore[union-attr]
    assert card_column == "Yes"
    atr = run(["opensc-tool", "--reader", number, "--atr"], pcscd.env())
    assert atr.strip() == SIM.atr.hex(":")
    sent = run(["opensc-tool", "--reader", number, "--send-apdu", "00A4040008A000000003000000"], pcscd.env())
    assert "SW1=0x61" in sent or "SW1=0x90" in sent        # T=0: OpenSC may or may not fetch the 61xx
    assert entry.bridge.apdu_count >= 1


def test_private_instance_is_isolated(pcscd, emulated_se):
    """A second, standalone pcscd (context manager) serves only its own readers on its own socket."""
    with ManagedPcscd(readers=2, friendly_name="paylab solo") as solo:
        assert solo.socket_path != pcscd.socket_path
        assert solo.started_in is not None
        with VpcdCardBridge.for_slot(emulated_se(ESE), solo.slots[0]) as bridge:
            listing = run(["pcsc_scan", "-r"], solo.env())
            assert "paylab solo A 00 00" in listing
            assert "paylab vpcd" not in listing
            assert bridge.connected
        described = solo.describe()
        assert described["env"] == {"PCSCLITE_CSOCK_NAME": solo.socket_path}
        assert [r["name"] for r in described["readers"]] == ["paylab solo A 00 00", "paylab solo A 00 01"]
        pid = solo.pid
    assert not solo.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_missing_packages_are_named(monkeypatch):
    monkeypatch.setattr(pcscd_module, "VPCD_CANDIDATES", ("/nonexistent/libifdvpcd.so",))
    with pytest.raises(SimulationUnavailable) as caught:
        ManagedPcscd(readers=2).start()
    message = str(caught.value)
    assert "vsmartcard-vpcd" in message
    assert "apt-get install" in message
    assert "pcscd vsmartcard-vpcd libpcsclite-dev" in message
