"""The built-in simulated rig: brought up through the real stacks (pcscd + vpcd, nfcpy UDP, a POS
simulator on a pty, the embedded backend), healthy, usable through the bound drivers, and stopped
without leaving a process behind."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from paylab.drivers.errors import SimulationUnavailable
from paylab.lab.profiles import ProfileError
from paylab.lab.rig.health import check_rig, select_card
from paylab.lab.rig.sim import SimRig


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_missing_vpcd_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from paylab.drivers.pcsc import pcscd

    monkeypatch.setattr(pcscd, "VPCD_CANDIDATES", ("/nonexistent/libifdvpcd.so",))
    rig = SimRig()
    with pytest.raises(SimulationUnavailable, match=r"vsmartcard-vpcd.*apt-get install"):
        rig.start()
    assert not rig.running
    assert rig.started_pids == {}


def test_missing_nfcpy_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nfc", None)  # import nfc -> ImportError
    with pytest.raises(SimulationUnavailable, match=r"pip install nfcpy"):
        SimRig().start()


# lifecycle first: before the module's rig runs, this file's rigs own the process pcscd (and stop it)
def test_start_stop_leaves_no_process_and_is_idempotent(tmp_path: Path) -> None:
    rig = SimRig(state_dir=tmp_path / "state")
    with rig:
        pids = dict(rig.started_pids)
        assert "pos-simulator" in pids  # and "pcscd" unless an earlier test of the session started it
        assert all(_alive(pid) for pid in pids.values())
    assert rig.stop() == []  # a second stop is harmless
    assert not rig.running
    assert not any(_alive(pid) for pid in pids.values()), pids


def test_failed_start_stops_what_it_started(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: SimRig, pos: object) -> None:
        raise RuntimeError("injected failure after every piece started")

    monkeypatch.setattr(SimRig, "_describe_rig", broken)
    rig = SimRig()
    with pytest.raises(RuntimeError, match="injected"):
        rig.start()
    assert not rig.running
    assert "pos-simulator" in rig.started_pids  # it was started before the failure ...
    assert not any(_alive(pid) for pid in rig.started_pids.values())  # ... and stopped by PID
    assert rig.state_dir is not None
    assert not rig.state_dir.exists()


def test_bad_profile_fails_before_anything_runs() -> None:
    rig = SimRig(contactless_profile="no_such_profile")
    with pytest.raises(ProfileError, match="no_such_profile"):
        rig.start()
    assert not rig.running
    assert rig.started_pids == {}


@pytest.fixture(scope="module")
def sim() -> Iterator[SimRig]:
    rig = SimRig()
    rig.start()
    try:
        yield rig
    finally:
        rig.stop()


def test_describe_exposes_what_tools_need(sim: SimRig) -> None:
    described = sim.describe()
    assert Path(described["pcsc"]["socket"]).is_socket()
    names = [r["name"] for r in described["pcsc"]["readers"]]
    assert len(names) == 2
    assert described["nfc"]["nfc"]["path"] == described["nfc"]["lab-pad"]["path"]
    assert described["nfc"]["pad"]["path"].startswith("udp:127.0.0.1:")
    assert os.path.exists(described["pos"][0]["device"])
    assert described["backend"]["http_url"].startswith("http://127.0.0.1:")
    assert set(described["pids"]) == {"pcscd", "pos-simulator"}
    assert any("PCSCLITE_CSOCK_NAME=" in line for line in sim.describe_lines())
    # an independent PC/SC client sees the rig's readers through the printed socket
    listed = subprocess.run(["opensc-tool", "--list-readers"], env=sim.pcscd.env(), capture_output=True, text=True,
                            timeout=20, check=False)
    assert all(name in listed.stdout for name in names), listed.stdout + listed.stderr


def test_health_check_of_sim_is_all_ok(sim: SimRig) -> None:
    verdicts = check_rig(sim.bound, timeout=10.0)
    assert [v for v in verdicts if not v.ok] == []
    kinds = {v.kind for v in verdicts}
    assert {"reader/pcsc", "reader/nfc", "antenna/emulator", "pos", "slot/sim", "handset", "backend"} <= kinds


def test_bound_readers_are_the_protocol_drivers(sim: SimRig) -> None:
    contact = sim.bound.reader("contact")
    assert contact is sim.bound.reader("contact")  # shared, closed with the rig
    contact.wait_for_card(5.0)
    atr = contact.power_on()
    try:
        assert atr == sim.cards["contact-card"].atr
        assert select_card(contact.transmit) == "SELECT PPSE 9000"
    finally:
        contact.power_off()


def test_handset_tap_pays_at_the_pos_simulator(sim: SimRig) -> None:
    handset = sim.bound.handset("phone-ese")
    pad = sim.bound.antenna("pad")
    pos = sim.bound.pos("pos-1")
    with handset.tapped(pad):
        result = pos.sale(1_234, timeout=30.0)
    assert result.approved, result
    assert result.pan is not None
    assert "*" in result.pan


def test_fresh_se_issued_and_blank(sim: SimRig) -> None:
    issued = sim.fresh_se("microsd", issued=True)
    route = issued.as_card()
    route.power_on("contactless")
    try:
        assert select_card(lambda c: route.transmit(c, interface="contactless")) == "SELECT PPSE 9000"
    finally:
        route.power_off()
    blank = sim.fresh_se("sim", issued=False)
    assert blank.placement == "sim"
    assert sim.backend.tsm.services.handsets[blank.se_id] is blank  # the SEI-TSM can reach it over the air
    assert blank.se.registry.isd() is not None
    assert issued.se_id != blank.se_id
