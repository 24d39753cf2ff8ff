"""A campaign across two rig hosts: two real OpenSSH servers on loopback (issue 6 "Remote rig hosts").

Each rig's share runs on its host over ssh (fabric): the suites are bundled and unpacked there, the run
starts detached, result lines are streamed back while it runs and the artefacts (JUnit, Robot output,
Allure results) are fetched at the end; a Robot suite runs there too (pabot + the paylab listener), its
output merged by rebot into ``robot/``. Killing one host's sshd mid-run (every session process with it)
turns that host's remaining tests into infrastructure errors and the campaign still finishes.

The hosts log in as root: the share needs the lab's Python, and the venv's interpreter lives under
/root (mode 700), out of an unprivileged user's reach. The inventory's ``host.python`` names it.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from paylab.drivers.righost import ManagedSshd
from paylab.lab.cli.main import main
from paylab.lab.report.record import CampaignRecord

SUITE = '''
import time
import pytest

@pytest.mark.requirements("REQ-DRV-PCSC-01")
@pytest.mark.needs("host")
@pytest.mark.parametrize("n", range({count}))
def test_on_host(n):
    time.sleep({sleep})
    assert n >= 0
'''

ROBOT = """*** Test Cases ***
Robot On Host
    [Tags]    REQ-DRV-PCSC-01    needs:host
    Should Be Equal    1    1

Robot Also On Host
    [Tags]    REQ-DRV-PCSC-01    needs:host
    Log    on the rig host
"""


class RootSshd(ManagedSshd):
    """The managed sshd, logging in as root (key only)."""

    def __init__(self) -> None:
        super().__init__(user="root")

    def _config_text(self) -> str:
        return super()._config_text().replace("PermitRootLogin no", "PermitRootLogin prohibit-password")


@pytest.fixture
def hosts() -> Iterator[tuple[RootSshd, RootSshd]]:
    first, second = RootSshd(), RootSshd()
    try:
        first.start()
        second.start()
        yield first, second
    finally:
        first.stop()
        second.stop()


def checkout(root: Path, hosts: tuple[RootSshd, RootSshd], *, count: int, sleep: float, retry: int,
             robot: bool = False) -> Path:
    """A checkout with the pytest suite (and with ``robot`` a Robot suite, Allure on) and two host rigs."""
    (root / "suites" / "remote").mkdir(parents=True)
    (root / "suites" / "remote" / "test_remote.py").write_text(SUITE.format(count=count, sleep=sleep))
    robot_suite = ""
    if robot:
        (root / "suites" / "robot-remote").mkdir()
        (root / "suites" / "robot-remote" / "on_host.robot").write_text(ROBOT)
        robot_suite = "  - path: suites/robot-remote\n    framework: robot\n"
    rigs = "".join(f"""  host-{tag}:
    capabilities: [host]
    host:
      address: 127.0.0.1
      port: {sshd.port}
      user: root
      key: {sshd.client_key_path}
      known_hosts: {sshd.known_hosts_file}
      python: {sys.executable}
      workdir: {root / f"work-{tag}"}
""" for tag, sshd in zip("ab", hosts, strict=True))
    (root / "inventory.yaml").write_text("rigs:\n" + rigs)
    camp = root / "remote.yaml"
    camp.write_text(f"""campaign: remote
rigs:
  - capabilities: [host]
suites:
  - path: suites/remote
    framework: pytest
{robot_suite}retry: {{infra: {retry}}}
lease: {{ttl_s: 20, heartbeat_s: 1}}
timeouts: {{test_s: 30, health_s: 10}}
report: {{allure: {"true" if robot else "false"}}}
""")
    return camp


def run(root: Path, camp: Path) -> int:
    return main(["run", str(camp), "--reports", str(root / "reports"), "--inventory", str(root / "inventory.yaml"),
                 "--no-progress"])


def test_campaign_runs_each_share_on_its_rig_host(tmp_path: Path, hosts: tuple[RootSshd, RootSshd],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    camp = checkout(tmp_path, hosts, count=4, sleep=0.0, retry=0, robot=True)
    monkeypatch.chdir(tmp_path)
    assert run(tmp_path, camp) == 0
    (out,) = (tmp_path / "reports").glob("remote-*")
    record = CampaignRecord.load(out / "record.json")
    pytest_results = [(r.rig, r.verdict) for r in record.results if r.framework == "pytest"]
    assert sorted(pytest_results) == [("host-a", "passed")] * 2 + [("host-b", "passed")] * 2
    # the Robot file went whole to one host (the least loaded, then by name) and ran there
    robot = {r.name: (r.rig, r.verdict, r.requirement_ids) for r in record.results if r.framework == "robot"}
    assert robot == {name: ("host-a", "passed", ["REQ-DRV-PCSC-01"])
                     for name in ("Robot On Host", "Robot Also On Host")}
    lines = [json.loads(x) for x in (out / "rigs" / "host-a" / "results.jsonl").read_text().splitlines()]
    assert sorted(x["id"] for x in lines if x["framework"] == "robot") == [
        "Robot-Remote.On Host.Robot Also On Host", "Robot-Remote.On Host.Robot On Host"]  # streamed back
    assert (out / "rigs" / "host-a" / "remote-1" / "robot-1-1" / "output.xml").is_file()  # fetched...
    merged = (out / "robot" / "output.xml").read_text()  # ...and merged by rebot
    assert 'name="Robot On Host"' in merged
    assert 'name="Robot Also On Host"' in merged
    assert (out / "robot" / "log.html").is_file()
    allure = [json.loads(p.read_text()) for p in (out / "allure-results").glob("*-result.json")]
    assert sorted(a["name"] for a in allure) == sorted(["Robot On Host", "Robot Also On Host"]
                                                       + [f"test_on_host[{n}]" for n in range(4)])
    assert (out / "allure" / "index.html").is_file()
    for tag in "ab":
        fetched = out / "rigs" / f"host-{tag}" / "remote-1"
        assert (fetched / "junit-pytest-1.xml").is_file()  # artefacts came back from the host
        assert "2 passed" in (fetched / "run.log").read_text()
        assert not any((tmp_path / f"work-{tag}").rglob("*.py"))  # the host's run folder was cleaned up
    assert main(["report", "verify", str(out)]) == 0


def test_host_killed_mid_run_gives_infra_errors_not_a_hang(tmp_path: Path, hosts: tuple[RootSshd, RootSshd],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    camp = checkout(tmp_path, hosts, count=8, sleep=0.4, retry=0)
    monkeypatch.chdir(tmp_path)
    killed = threading.Event()

    def kill_host_a_after_first_result() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = list((tmp_path / "reports").glob("remote-*/rigs/host-a/results.jsonl"))
            if found and found[0].read_text().count("\n") >= 1:
                hosts[0].kill()
                killed.set()
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_host_a_after_first_result, daemon=True)
    killer.start()
    started = time.monotonic()
    code = run(tmp_path, camp)
    elapsed = time.monotonic() - started
    killer.join(timeout=10)
    assert killed.is_set()
    assert code == 3  # infrastructure errors only
    assert elapsed < 60
    (out,) = (tmp_path / "reports").glob("remote-*")
    record = CampaignRecord.load(out / "record.json")
    on_a = [r for r in record.results if r.rig == "host-a"]
    on_b = [r for r in record.results if r.rig == "host-b"]
    assert [r.verdict for r in on_b] == ["passed"] * 4
    assert any(r.verdict == "passed" for r in on_a)  # streamed back before the host went away
    lost = [r for r in on_a if r.verdict != "passed"]
    assert lost
    assert all(r.is_infra_error and "host-a" in r.message for r in lost), [r.message for r in lost]
    lines = [json.loads(x) for x in (out / "rigs" / "host-a" / "results.jsonl").read_text().splitlines()]
    assert len({x["id"] for x in lines}) == 4
    assert os.path.isdir(out)
