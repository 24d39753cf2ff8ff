"""``paylab rigs list|check|up`` as a user runs them (subprocesses), against the bundled example
inventory, broken inventories, the built-in ``sim`` rig and a bench whose ssh host and reader are
missing while its other resources answer."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from paylab.drivers.righost import ManagedSshd
from paylab.lab.backend.config import load_config
from paylab.lab.backend.runner import EmbeddedBackend

PAYLAB = [sys.executable, "-m", "paylab.lab.cli.main"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PCSCLITE_CSOCK_NAME", None)  # each command finds (or starts) its own pcscd
    return env


def paylab(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PAYLAB, *args], capture_output=True, text=True, timeout=timeout, env=_env(),
                          stdin=subprocess.DEVNULL, check=False)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_list_bundled_inventory() -> None:
    done = paylab("rigs", "list")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "3 rigs"
    assert any(line.startswith("bench-1:") for line in lines)
    assert any("calibration_due 2027-01-15" in line for line in lines)
    data = json.loads(paylab("rigs", "list", "--json").stdout)
    assert [rig["name"] for rig in data["rigs"]] == ["sim", "bench-1", "ota-bench"]


def test_bad_inventory_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "inventory.yaml"
    bad.write_text(textwrap.dedent("""\
        rigs:
          bench-x:
            capabilities: [pcsc-contact]
            readers:
              - {name: r, driver: pcsc, pattern: "([unclosed"}
        """))
    for command in (["rigs", "list"], ["rigs", "check", "bench-x"]):
        done = paylab(*command, "--inventory", str(bad))
        assert done.returncode == 2
        assert done.stdout == ""
        assert done.stderr.count("\n") == 1
        assert re.match(rf"^paylab rigs \w+: error: {re.escape(str(bad))}:5: rigs\.bench-x\.readers\[0\]\.pattern: "
                        r"not a valid regular expression", done.stderr), done.stderr
    unknown = paylab("rigs", "check", "nope", "--inventory", str(bad).replace("inventory.yaml", "absent.yaml"))
    assert unknown.returncode == 2
    assert "cannot read the inventory" in unknown.stderr


def test_check_sim_all_ok() -> None:
    done = paylab("rigs", "check", "sim")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "rig sim:"
    assert re.match(r"^ok: \d+ resources healthy$", lines[-1])
    assert all(line.startswith("ok ") for line in lines[1:-1])


def test_up_sim_for_two_seconds_and_on_ctrl_c() -> None:
    """``--for 2`` stops by itself; a second rig, run at the same time, stops on Ctrl-C (SIGINT).
    Each command has its own pcscd, so the two never cross; nothing is left running after either."""
    timed = subprocess.Popen([*PAYLAB, "rigs", "up", "sim", "--for", "2"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=_env(), stdin=subprocess.DEVNULL)
    with timed, subprocess.Popen([*PAYLAB, "rigs", "up", "sim", "--for", "60"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=_env(), stdin=subprocess.DEVNULL) as held:
        assert held.stdout is not None
        for line in held.stdout:  # bounded: the rig stops by itself after 60 s at worst
            if line.startswith("ready"):
                held.send_signal(signal.SIGINT)
                break
        held_out, held_err = held.communicate(timeout=30)
        out, err = timed.communicate(timeout=60)
    assert held.returncode == 0, held_err
    assert held_out.splitlines()[-1] == "stopped"
    assert timed.returncode == 0, err
    assert "export PCSCLITE_CSOCK_NAME=" in out
    assert re.search(r"POS pos-1: serial device /dev/pts/\d+", out)
    assert "ready (started in" in out
    assert out.splitlines()[-1] == "stopped"
    pids = [int(p) for p in re.findall(r"(?:pcscd|pos-simulator) (\d+)", out.split("pids:")[1].splitlines()[0])]
    assert len(pids) == 2
    assert not any(_alive(pid) for pid in pids)


def _issued_ese(folder: Path) -> Path:
    """A card image file holding an eSE issued with a bundled profile (what a bench keeps per slot)."""
    from paylab.drivers.se.form_factor import ESE
    from paylab.lab import profiles
    from paylab.lab.issuance import issued_se
    from paylab.lab.protocol import cps

    path = folder / "ese-1.card"
    profile = profiles.load_bundled("pboc_debit_ecash_sm4")
    issued_se(path, ESE, profile, oda=cps.generate_oda_chain(profile, seed_or_rng=7))
    return path


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Path]:
    """An inventory with two rigs on loopback: ``good`` (a real sshd, the embedded backend, an NFC
    emulator antenna) and ``bad`` (the same backend and antenna, an ssh host nobody listens on and a
    PC/SC reader that is not there)."""
    backend = EmbeddedBackend(load_config(overrides={"state_dir": tmp_path / "backend"}))
    with ManagedSshd() as sshd, backend:
        common = {"antennas": [{"name": "pad", "device": f"udp:127.0.0.1:{_free_port(socket.SOCK_DGRAM)}",
                                "role": "emulator"}],
                  "backend": {"acquirer": "{}:{}".format(*backend.addresses["acquirer"]), "http": backend.http_url}}
        login = {"user": sshd.user, "key": str(sshd.client_key_path), "known_hosts": str(sshd.known_hosts_file)}
        rigs = {
            "good": {"capabilities": ["host", "nfc-emulator", "backend", "se-ese"],
                     "host": {"address": sshd.host, "port": sshd.port, **login}, **common,
                     "slots": [{"name": "ese-1", "in": "phone-1", "card": {
                         "profile": "pboc_debit_ecash_sm4", "placement": "ese", "image": str(_issued_ese(tmp_path))}}],
                     "handsets": [{"name": "phone-1", "slot": "ese-1", "msisdn": "+8613800000009", "antenna": "pad"}]},
            "bad": {"capabilities": ["host", "pcsc-contact", "nfc-emulator", "backend"],
                    "host": {"address": "127.0.0.1", "port": _free_port(), **login},
                    "readers": [{"name": "contact", "driver": "pcsc", "pattern": "^No Such Reader 00 00$"}], **common},
        }
        inventory = tmp_path / "inventory.yaml"
        inventory.write_text(yaml.safe_dump({"rigs": rigs}, sort_keys=False))
        yield inventory


def test_check_bench_good_and_bad(bench: Path) -> None:
    good = paylab("rigs", "check", "good", "--inventory", str(bench))
    assert good.returncode == 0, good.stdout + good.stderr
    assert re.search(r"^ok\s+host\s+.*ssh ok", good.stdout, re.MULTILINE)
    assert re.search(r"^ok\s+slot/ese\s+ese-1\s+emulated ese card in phone-1: SELECT PPSE 9000", good.stdout, re.M)
    assert re.search(r"^ok\s+handset\s+phone-1\s+ese SE phone-1: SELECT PPSE 9000", good.stdout, re.M)
    assert good.stdout.splitlines()[-1] == "ok: 5 resources healthy"

    bad = paylab("rigs", "check", "bad", "--inventory", str(bench), "--json", "--timeout", "5")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    report = json.loads(bad.stdout)
    verdicts = {v["kind"]: v for v in report["rigs"][0]["verdicts"]}
    assert not verdicts["host"]["ok"]
    assert "RigHostUnreachable" in verdicts["host"]["detail"]
    assert not verdicts["reader/pcsc"]["ok"]
    assert "ReaderUnavailable" in verdicts["reader/pcsc"]["detail"]
    assert verdicts["antenna/emulator"]["ok"]
    assert verdicts["backend"]["ok"]
    assert report["failed"] == 2
    assert report["result"] == "FAIL: 2 of 4 resources failed"


def test_a_silent_backend_fails_within_the_timeout() -> None:
    """A backend that accepts connections and never answers: its verdict fails, bounded by the timeout."""
    from paylab.lab.rig.health import check_rig
    from paylab.lab.rig.resources import BackendEndpoints, Rig

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        host, port = silent.getsockname()
        rig = Rig(name="mute", capabilities=("backend",),
                  backend=BackendEndpoints(acquirer=(host, port), http_url=f"http://{host}:{port}"))
        (verdict,) = check_rig(rig, timeout=0.5)
    assert not verdict.ok
    assert verdict.kind == "backend"
    assert verdict.duration_ms < 3000


def test_rigs_leases_lists_holders_and_releases_a_quarantine(tmp_path):
    from paylab.lab.campaign.db import open_lab_db
    from paylab.lab.campaign.leases import LeaseManager, OwnerRecord

    (tmp_path / ".lab").mkdir()
    engine = open_lab_db(None, lab_dir=tmp_path / ".lab")
    manager = LeaseManager(engine)
    manager.acquire("bench-1", "nightly-1/runner", 60, OwnerRecord("alice", "lab-2", 4242, "nightly-1"))
    manager.quarantine("bench-2", "contactless: no reader matches")
    engine.dispose()
    shown = paylab("rigs", "leases", "--reports", str(tmp_path))
    assert shown.returncode == 0, shown.stderr
    assert "bench-1" in shown.stdout
    assert "alice@lab-2 pid 4242 for campaign nightly-1" in shown.stdout
    assert "quarantined bench-2: " in shown.stdout
    assert "no reader matches" in shown.stdout
    released = paylab("rigs", "leases", "--reports", str(tmp_path), "--release-quarantine", "bench-2", "--json")
    data = json.loads(released.stdout)
    assert data["released"] is True
    assert data["quarantined"] == {}
    assert [lease["rig"] for lease in data["leases"]] == ["bench-1"]
