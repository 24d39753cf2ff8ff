"""``paylab run CAMPAIGN`` end to end (issue 6 "Campaigns", "Bad input and faults", "Tests and proof").

Small suites are written into a temporary lab checkout: a test that passes, one failing an assertion
(product failure), one raising :class:`~paylab.drivers.errors.CardRemoved` (infrastructure error,
retried per policy), one needing a capability no rig has (deselected with the reason). The bench rigs
of the temporary inventory need no hardware: their only resource is a backend acquirer address, a
listening socket of the test (the health check connects to it). Campaigns run through the real CLI
(``paylab.lab.cli.main.main``) or, for the kill test, a real ``paylab run`` subprocess.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from paylab.lab.campaign import LeaseManager, RunHistory, open_lab_db
from paylab.lab.cli.main import main
from paylab.lab.report.masking_scan import scan_for_secrets
from paylab.lab.report.record import CampaignRecord

TINY = '''
import pytest
from paylab.drivers.errors import CardRemoved

@pytest.mark.requirements("REQ-DRV-PCSC-01")
def test_ok():
    assert True

@pytest.mark.requirements("REQ-DRV-PCSC-01")
def test_product():
    assert 1 == 2, "approval expected for card 6228480123456789"  # a full test PAN: reports must mask it

@pytest.mark.requirements("REQ-DRV-PCSC-01")
def test_infra():
    raise CardRemoved("card left the field", resource="contactless")

@pytest.mark.requirements("REQ-DRV-PCSC-01")
@pytest.mark.needs("se-ese")
def test_needs_ese():
    pass
'''

ROBOT = """*** Test Cases ***
Robot Passes
    [Tags]    REQ-DRV-PCSC-01
    Should Be Equal    1    1

Robot Fails
    [Tags]    REQ-DRV-PCSC-01
    Should Be Equal    approved    declined

Robot Infra
    [Tags]    REQ-DRV-PCSC-01
    Fail    INFRA: reader gone

Robot Needs Ese
    [Tags]    REQ-DRV-PCSC-01    needs:se-ese
    No Operation
"""

QUICK = '''
import pytest

@pytest.mark.requirements("REQ-DRV-PCSC-01")
@pytest.mark.needs("backend")
@pytest.mark.parametrize("n", range(2))
def test_quick(n):
    assert n >= 0
'''

SLOW = '''
import time
import pytest

@pytest.mark.requirements("REQ-DRV-PCSC-01")
@pytest.mark.needs("backend")
@pytest.mark.parametrize("n", range(4))
def test_slow(n):
    time.sleep(0.7)
'''


@pytest.fixture(autouse=True)
def _own_lab_db(monkeypatch: pytest.MonkeyPatch) -> None:
    """Leases live in REPORTS/.lab/lab.db of each test, not in a lab-wide database."""
    monkeypatch.delenv("PAYLAB_LAB_DB", raising=False)


@pytest.fixture(scope="module")
def acquirer() -> Iterator[int]:
    """A listening socket standing in for the bench rigs' acquirer (their health check connects)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(128)
        yield server.getsockname()[1]


def make_checkout(root: Path, port: int) -> Path:
    """A lab checkout with the small suites and an inventory of hardware-free bench rigs."""
    for name, text in (("tiny", TINY), ("quick", QUICK), ("slow", SLOW)):
        (root / "suites" / name).mkdir(parents=True)
        (root / "suites" / name / f"test_{name}.py").write_text(text)
    (root / "suites" / "robot").mkdir()
    (root / "suites" / "robot" / "tiny.robot").write_text(ROBOT)
    backend = f'backend: {{acquirer: "127.0.0.1:{port}"}}'
    (root / "inventory.yaml").write_text(f"""rigs:
  bench-a:
    capabilities: [backend]
    {backend}
  bench-b:
    capabilities: [backend]
    {backend}
  bench-bad:
    capabilities: [backend, pcsc-contact]
    readers: [{{name: contact, driver: pcsc, pattern: "^No Such Reader 0$", contactless: false}}]
    {backend}
""")
    return root


def campaign(root: Path, name: str, suite: str, rigs: list[str], *, ttl: float = 20, heartbeat: float = 1,
             infra: int = 1, robot: bool = False) -> Path:
    path = root / f"{name}.yaml"
    rig_lines = "".join(f"  - name: {rig}\n" for rig in rigs)
    robot_lines = "  - path: suites/robot\n    framework: robot\n" if robot else ""
    path.write_text(f"campaign: {name}\nrigs:\n{rig_lines}suites:\n  - path: suites/{suite}\n    framework: pytest\n"
                    f"{robot_lines}retry:\n  infra: {infra}\nlease:\n  ttl_s: {ttl}\n  heartbeat_s: {heartbeat}\n"
                    f"timeouts:\n  test_s: 60\n  health_s: 5\nreport:\n  allure: true\n")
    return path


def run(root: Path, camp: Path, *extra: str) -> int:
    return main(["run", str(camp), "--reports", str(root / "reports"), "--inventory", str(root / "inventory.yaml"),
                 "--no-progress", *extra])


def report_dir(root: Path, name: str) -> Path:
    found = sorted((root / "reports").glob(f"{name}-*"))
    assert len(found) == 1, found
    return found[0]


def by_name(record: CampaignRecord) -> dict[str, object]:
    return {r.id.rsplit("::", 1)[-1].rsplit(".", 1)[-1]: r for r in record.results}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, acquirer: int) -> tuple[Path, int, str]:
    root = make_checkout(tmp_path_factory.mktemp("tiny"), acquirer)
    camp = campaign(root, "tiny", "tiny", ["bench-a"], robot=True)
    cwd = Path.cwd()
    os.chdir(root)
    try:
        code = run(root, camp)
    finally:
        os.chdir(cwd)
    return report_dir(root, "tiny"), code, str(root)


# -- verdicts, retries, exit code, reports --------------------------------------------------------------
def test_verdicts_retries_and_exit_code(tiny_run: tuple[Path, int, str]) -> None:
    out, code, _root = tiny_run
    assert code == 1  # a product failure
    record = CampaignRecord.load(out / "record.json")
    results = by_name(record)
    assert results["test_ok"].verdict == "passed"
    assert (results["test_product"].verdict, results["test_product"].category) == ("failed", "product")
    assert results["test_product"].attempts == 1  # product failures are not retried (retry.product 0)
    infra = results["test_infra"]
    assert (infra.verdict, infra.category, infra.attempts) == ("failed", "infra", 2)  # retried once (retry.infra 1)
    assert "CardRemoved" in infra.message
    assert [e.kind for e in record.infra_errors if e.test_id == infra.id] == ["retried"]
    ese = results["test_needs_ese"]
    assert ese.verdict == "skipped"
    assert "deselected" in ese.message
    assert "se-ese" in ese.message
    assert {r.rig for r in record.results if r.verdict != "skipped"} == {"bench-a"}
    engine = open_lab_db(lab_dir=out.parent / ".lab")
    try:  # every attempt is in the lab database's run history too
        history = RunHistory(engine)
        latest = {test_id.rsplit("::", 1)[-1].rsplit(".", 1)[-1]: r for test_id, r in history.latest(out.name).items()}
        assert (latest["test_infra"].attempt, latest["test_infra"].infra) == (2, True)
        assert latest["test_product"].verdict == "failed"
        assert not latest["test_product"].infra
        assert len(history.results(out.name)) == len(latest) + 2  # the two infra errors ran twice
    finally:
        engine.dispose()
    # the same rules for Robot (pabot + the paylab listener; INFRA: marks an infrastructure error)
    assert results["Robot Passes"].verdict == "passed"
    assert (results["Robot Fails"].category, results["Robot Fails"].attempts) == ("product", 1)
    assert (results["Robot Infra"].category, results["Robot Infra"].attempts) == ("infra", 2)
    assert results["Robot Needs Ese"].verdict == "skipped"


def test_report_folder_and_integrity(tiny_run: tuple[Path, int, str], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    out, _code, _root = tiny_run
    for name in ("record.json", "auditor-report.html", "allure/index.html", "junit.xml", "MANIFEST.json",
                 "MANIFEST.sig", "robot/log.html", "robot/output.xml"):
        assert (out / name).is_file(), name
    junit = (out / "junit.xml").read_text()
    assert "622848******6789" in junit  # the failing test's PAN, masked in every artefact (else exit 1)...
    assert scan_for_secrets([out]) == []  # ...and nowhere in full: not in run logs, JUnit or Allure results
    assert 'type="product"' in junit
    assert 'type="infrastructure"' in junit
    assert main(["report", "verify", str(out)]) == 0
    assert main(["report", "verify", str(tmp_path / "no-such-report")]) == 2
    copy = tmp_path / out.name
    shutil.copytree(out, copy)
    target = copy / "junit.xml"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["report", "verify", str(copy)]) != 0
    said = capsys.readouterr()
    assert "junit.xml" in said.out + said.err


# -- repeats (stability campaigns) ------------------------------------------------------------------------
FLAKY = '''
from pathlib import Path
import pytest

@pytest.mark.requirements("REQ-DRV-PCSC-01")
def test_steady():
    pass

@pytest.mark.requirements("REQ-DRV-PCSC-01")
def test_flaky():
    counter = Path(__file__).with_name("runs.txt")  # how many times it ran: declines on the second repeat
    runs = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(runs))
    assert runs != 2, "declined on the second run"
'''

STABLE_ROBOT = """*** Test Cases ***
Robot Steady
    [Tags]    REQ-DRV-PCSC-01
    Should Be Equal    1    1
"""


def test_repeats_keep_every_repeat_and_resume_fills_a_missing_one(
        tmp_path: Path, acquirer: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_checkout(tmp_path, acquirer)
    (root / "suites" / "flaky").mkdir()
    (root / "suites" / "flaky" / "test_flaky.py").write_text(FLAKY)
    (root / "suites" / "stable-robot").mkdir()
    (root / "suites" / "stable-robot" / "stable.robot").write_text(STABLE_ROBOT)
    camp = root / "stability.yaml"
    camp.write_text("campaign: stability\nrigs:\n  - name: bench-a\nsuites:\n  - path: suites/flaky\n"
                    "    framework: pytest\n  - path: suites/stable-robot\n    framework: robot\nrepeats: 3\n"
                    "retry: {infra: 1}\nlease: {ttl_s: 20, heartbeat_s: 1}\ntimeouts: {test_s: 60, health_s: 5}\n"
                    "report: {allure: true}\n")
    monkeypatch.chdir(root)
    capsys.readouterr()
    # (a relative reports folder: every path printed at the end is absolute all the same)
    assert main(["run", str(camp), "--reports", "reports", "--inventory", "inventory.yaml", "--no-progress"]) == 1
    out = report_dir(root, "stability")  # the flaky test's second repeat is a product failure: exit 1
    said = capsys.readouterr().out
    assert f"auditor report: {out / 'auditor-report.html'}\n" in said
    assert f"Allure report:  {out / 'allure' / 'index.html'}\n" in said
    assert f"reports: {out}\n" in said
    assert "run history not recorded" not in said
    record = CampaignRecord.load(out / "record.json")
    verdicts: dict[str, list[str]] = {}
    for r in record.results:
        test, _, repeat = r.id.partition(" [repeat ")
        verdicts.setdefault(test.rsplit("::", 1)[-1].rsplit(".", 1)[-1], []).append(f"{repeat[:-1]} {r.verdict}")
    assert {name: sorted(v) for name, v in verdicts.items()} == {
        "test_steady": ["1/3 passed", "2/3 passed", "3/3 passed"],
        "test_flaky": ["1/3 passed", "2/3 failed", "3/3 passed"],
        "Robot Steady": ["1/3 passed", "2/3 passed", "3/3 passed"]}
    assert all(r.attempts == 1 for r in record.results)  # a repeat is not a retry
    lines = [json.loads(x) for x in (out / "rigs" / "bench-a" / "results.jsonl").read_text().splitlines()]
    assert sorted((x["repeat"], x["attempt"]) for x in lines) == [(r, 1) for r in (1, 2, 3) for _ in range(3)]
    merged = (out / "robot" / "output.xml").read_text()  # the Robot repeats side by side, none replaced
    assert merged.count('name="Robot Steady"') == 3
    # a repeat's result went missing (say the runner died before it was written): --resume runs just that one
    results = out / "rigs" / "bench-a" / "results.jsonl"
    kept = [x for x in lines if not (x["repeat"] == 2 and x["id"].endswith("test_steady"))]
    results.write_text("".join(json.dumps(x) + "\n" for x in kept))
    assert run(root, camp, "--resume", out.name) == 1
    assert f"resuming {out.name}: 8 test(s) done, 1 to run" in capsys.readouterr().out
    again = [json.loads(x) for x in results.read_text().splitlines()]
    assert [(x["id"].rsplit("::", 1)[-1], x["repeat"], x["attempt"]) for x in again[len(kept):]] == [
        ("test_steady", 2, 2)]
    assert len(CampaignRecord.load(out / "record.json").results) == 9
    assert main(["report", "verify", str(out)]) == 0
    # the campaign file changed since the run started: --resume refuses (bad input, one line)
    camp.write_text(camp.read_text().replace("repeats: 3", "repeats: 4"))
    capsys.readouterr()
    assert run(root, camp, "--resume", out.name) == 2
    assert "changed since it started" in capsys.readouterr().err


def test_a_campaign_selecting_no_test_exits_3(tmp_path: Path, acquirer: int, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    root = make_checkout(tmp_path, acquirer)
    monkeypatch.chdir(root)
    camp = campaign(root, "empty", "quick", ["bench-a"])
    camp.write_text(camp.read_text().replace("framework: pytest\n", "framework: pytest\n    tags: no_such_marker\n"))
    capsys.readouterr()
    assert run(root, camp) == 3  # nothing ran: not a pass
    assert "no test selected" in capsys.readouterr().out
    assert CampaignRecord.load(report_dir(root, "empty") / "record.json").results == []


def test_stopping_a_share_kills_descendants_in_other_sessions(tmp_path: Path) -> None:
    """pabot starts each ``robot`` with setsid: stopping the share must reach them all the same."""
    from paylab.lab.campaign.execute import _stop_tree, descendants

    script = ("import subprocess, sys, time\n"
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],\n"
              "                         start_new_session=True)\n"
              "print(child.pid, flush=True)\n"
              "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert proc.stdout is not None
        child = int(proc.stdout.readline())
        assert child in descendants(proc.pid)
        _stop_tree(proc)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
            stat = Path(f"/proc/{child}/stat").read_text() if Path(f"/proc/{child}/stat").exists() else ""
            if stat.rsplit(")", 1)[-1].split()[:1] == ["Z"]:
                break  # killed, waiting for its reaper
            time.sleep(0.05)
        stat = Path(f"/proc/{child}/stat").read_text() if Path(f"/proc/{child}/stat").exists() else ""
        assert not stat or stat.rsplit(")", 1)[-1].split()[0] == "Z", "the setsid child survived"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


# -- bad input --------------------------------------------------------------------------------------------
def test_bad_campaign_and_inventory_are_refused_before_anything_runs(
        tmp_path: Path, acquirer: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_checkout(tmp_path, acquirer)
    monkeypatch.chdir(root)
    bad = campaign(root, "bad", "tiny", ["bench-a"])
    bad.write_text(bad.read_text().replace("framework: pytest", "framework: nose"))
    assert run(root, bad) == 2
    assert "bad.yaml:6: suites[0].framework: must be one of pytest, robot" in capsys.readouterr().err
    unknown = campaign(root, "unknown", "tiny", ["bench-a", "bench-z"])
    assert run(root, unknown) == 2
    assert "unknown.yaml:4: rigs[1].name: no rig 'bench-z'" in capsys.readouterr().err
    good = campaign(root, "good", "tiny", ["bench-a"])
    inventory = root / "inventory.yaml"
    inventory.write_text(inventory.read_text().replace("capabilities: [backend]\n", "capabilities: [backend, pos]\n",
                                                       1))
    assert run(root, good) == 2
    assert "inventory.yaml:3: rigs.bench-a.capabilities[1]: capability 'pos' is not backed" in capsys.readouterr().err
    assert not (root / "reports").exists()  # nothing ran, no lease was taken


# -- quarantine -------------------------------------------------------------------------------------------
def test_failed_health_check_quarantines_and_tests_move(tmp_path: Path, acquirer: int,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    root = make_checkout(tmp_path, acquirer)
    monkeypatch.chdir(root)
    assert run(root, campaign(root, "quar", "quick", ["bench-bad", "bench-b"])) == 0
    said = capsys.readouterr().out
    assert "bench-bad: health check failed, quarantined" in said
    assert "No Such Reader" in said
    record = CampaignRecord.load(report_dir(root, "quar") / "record.json")
    assert [(r.verdict, r.rig) for r in record.results] == [("passed", "bench-b")] * 2
    assert ("quarantined", "bench-bad") in [(e.kind, e.rig) for e in record.infra_errors]
    engine = open_lab_db(lab_dir=root / "reports" / ".lab")
    try:
        assert "bench-bad" in LeaseManager(engine).quarantined()
    finally:
        engine.dispose()


# -- holder killed, contention, TTL expiry, resume ----------------------------------------------------------
def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def start_holder(root: Path, camp: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "paylab.lab.cli.main", "run", str(camp), "--reports",
                             str(root / "reports"), "--inventory", str(root / "inventory.yaml"), "--no-progress"],
                            cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def first_result(root: Path, holder: subprocess.Popen[bytes], name: str) -> Path:
    """The results file of the running campaign ``name`` once it holds one line."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = list((root / "reports").glob(f"{name}-*/rigs/bench-a/results.jsonl"))
        if found and found[0].read_text().count("\n") >= 1:
            return found[0]
        assert holder.poll() is None, "the campaign ended before the test could stop it"
        time.sleep(0.05)
    raise AssertionError("no result within 60 s")


def test_sigterm_stops_the_shares_keeps_results_and_frees_the_rigs(tmp_path: Path, acquirer: int) -> None:
    root = make_checkout(tmp_path, acquirer)
    holder = start_holder(root, campaign(root, "slow", "slow", ["bench-a"]))
    try:
        results = first_result(root, holder, "slow")
        holder.send_signal(signal.SIGTERM)
        assert holder.wait(timeout=60) == 3  # stopped: what did not run is an infrastructure matter
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=10)
    out = results.parents[2]
    assert not _processes_mentioning(str(out))
    record = CampaignRecord.load(out / "record.json")
    verdicts = sorted((r.verdict, r.category) for r in record.results)
    assert ("passed", "none") in verdicts
    assert all(v == ("passed", "none") or v == ("error", "infra") for v in verdicts)
    assert any("cancelled" in r.message for r in record.results if r.verdict == "error")
    engine = open_lab_db(lab_dir=root / "reports" / ".lab")
    try:
        assert LeaseManager(engine).holder_of("bench-a") is None  # released at once, not by TTL
    finally:
        engine.dispose()


def test_lease_taken_over_stops_the_share_with_infra_errors(tmp_path: Path, acquirer: int) -> None:
    root = make_checkout(tmp_path, acquirer)
    holder = start_holder(root, campaign(root, "slow", "slow", ["bench-a"], ttl=3, heartbeat=0.5))
    engine = open_lab_db(lab_dir=root / "reports" / ".lab")
    try:
        results = first_result(root, holder, "slow")
        # another lab host with a clock 100 s ahead sees the lease expired and takes the rig over
        thief = LeaseManager(engine, clock=lambda: time.time() + 100).acquire("bench-a", "thief", 60)
        assert thief is not None
        assert holder.wait(timeout=60) == 3
    finally:
        engine.dispose()
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=10)
    record = CampaignRecord.load(results.parents[2] / "record.json")
    assert ("lease-lost", "bench-a") in [(e.kind, e.rig) for e in record.infra_errors]
    stopped = [r for r in record.results if r.verdict != "passed"]
    assert stopped
    assert all(r.is_infra_error for r in stopped)
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert any("lease on bench-a lost" in line["message"] for line in lines)
    # the retry found no rig left to run them on: not run, with the reason
    assert all(r.verdict == "not-run" and "unavailable" in r.message for r in stopped), [r.message for r in stopped]


def test_killed_holder_contention_ttl_and_resume(tmp_path: Path, acquirer: int, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    root = make_checkout(tmp_path, acquirer)
    monkeypatch.chdir(root)
    slow = campaign(root, "slow", "slow", ["bench-a"], ttl=3, heartbeat=0.5)
    holder = start_holder(root, slow)
    try:
        results = first_result(root, holder, "slow")
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=10)
    out = results.parents[2]
    deadline = time.monotonic() + 15  # the share's pytest dies with its runner (PR_SET_PDEATHSIG)
    while _processes_mentioning(str(out)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _processes_mentioning(str(out))
    kept = [json.loads(line) for line in results.read_text().splitlines()]
    assert 1 <= len(kept) < 4

    engine = open_lab_db(lab_dir=root / "reports" / ".lab")
    try:
        leases = LeaseManager(engine)
        info = leases.holder_of("bench-a")
        assert info is not None
        assert info.owner.pid == holder.pid
        # ... so a second campaign wanting bench-a is told who holds it, and its tests move to bench-b
        assert run(root, campaign(root, "second", "quick", ["bench-a", "bench-b"])) == 0
        said = capsys.readouterr().out
        who = f"{getpass.getuser()}@{socket.gethostname()} pid {holder.pid} for campaign {out.name}"
        assert f"busy: bench-a held by {who}" in said
        second = CampaignRecord.load(report_dir(root, "second") / "record.json")
        assert {r.rig for r in second.results} == {"bench-b"}
        # ... until its TTL (3 s) runs out: a campaign willing to wait for bench-a gets it then
        assert run(root, campaign(root, "third", "quick", ["bench-a"]), "--wait-rigs", "30") == 0
        third = CampaignRecord.load(report_dir(root, "third") / "record.json")
        assert [(r.rig, r.verdict) for r in third.results] == [("bench-a", "passed")] * 2
        assert leases.holder_of("bench-a") is None  # released by "third" at its end
    finally:
        engine.dispose()

    assert run(root, slow, "--resume", out.name) == 0
    said = capsys.readouterr().out
    assert f"resuming {out.name}: {len(kept)} test(s) done, {4 - len(kept)} to run" in said
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    passed = [line["id"] for line in lines if line["verdict"] == "passed"]
    assert sorted(passed) == sorted(set(passed))
    assert len(passed) == 4
    assert {line["id"] for line in lines if line["attempt"] > 1}.isdisjoint({line["id"] for line in kept})
    record = CampaignRecord.load(out / "record.json")
    assert [r.verdict for r in record.results] == ["passed"] * 4
    assert main(["report", "verify", str(out)]) == 0


# -- a real sim-rig campaign: masking scan of every artefact, reports in a real browser ------------------------
CHECKOUT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sim_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reports = tmp_path_factory.mktemp("sim-reports")
    cwd = Path.cwd()
    os.chdir(CHECKOUT)
    try:
        code = main(["run", "suites/campaigns/smoke.yaml", "--reports", str(reports), "--no-progress"])
    finally:
        os.chdir(cwd)
    assert code == 0
    (out,) = reports.glob("smoke-*")
    return out


def test_masking_scan_of_every_artefact_of_a_sim_campaign(sim_run: Path) -> None:
    from paylab.lab.report.masking_scan import scan_for_secrets

    files = [p for p in sim_run.rglob("*") if p.is_file()]
    assert len(files) > 10
    record = CampaignRecord.load(sim_run / "record.json")
    assert any(r.trace for r in record.results)  # APDU traces (with the card's PAN) went into the artefacts
    assert scan_for_secrets(files) == []


def test_auditor_and_allure_reports_render_offline_in_chromium(sim_run: Path) -> None:
    from paylab.lab.report.browser import check_page

    auditor = check_page(sim_run / "auditor-report.html", selectors=("#traceability", "#apdu-traces"),
                         screenshot=sim_run / "auditor-report.png")
    assert auditor.clean, (auditor.console_errors, auditor.page_errors, auditor.outgoing_requests)
    assert auditor.visible == {"#traceability": True, "#apdu-traces": True}
    assert "Traceability matrix" in auditor.texts["#traceability"]
    assert "pass 1" in auditor.texts["#traceability"]
    allure = check_page(sim_run / "allure" / "index.html", selectors=("body",),
                        screenshot=sim_run / "allure" / "allure-report.png", settle_ms=1500)
    assert allure.clean, (allure.console_errors, allure.page_errors, allure.outgoing_requests)
    assert allure.visible["body"]
    assert "paylab smoke" in allure.texts["body"]
    assert (sim_run / "auditor-report.png").stat().st_size > 0
    assert (sim_run / "allure" / "allure-report.png").stat().st_size > 0


def test_cancelled_before_any_round_reports_every_test_not_run(tmp_path: Path, acquirer: int,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGINT while the rigs are reserved (here: before): every (test, repeat) gets "not run: cancelled"."""
    from paylab.lab.campaign.runner import CampaignRunner, RunConfig

    root = make_checkout(tmp_path, acquirer)
    monkeypatch.chdir(root)
    camp = campaign(root, "cancelled", "quick", ["bench-a"])
    camp.write_text(camp.read_text() + "repeats: 2\n")
    runner = CampaignRunner(RunConfig(campaign_path=camp, inventory=root / "inventory.yaml",
                                      reports_root=root / "reports", progress=False, cwd=root))
    runner.cancel.set()
    result = runner.run()
    assert result.exit_code == 3
    record = CampaignRecord.load(report_dir(root, "cancelled") / "record.json")
    assert len(record.results) == 4  # 2 tests x 2 repeats
    assert {(r.verdict, r.category, r.message) for r in record.results} == {("not-run", "infra",
                                                                            "INFRA: not run: cancelled")}
