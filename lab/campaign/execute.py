"""Running one rig's share of a campaign: pytest (pytest-xdist) and Robot (pabot), here or on the rig's host.

Every test writes its result line the moment it ends (:mod:`paylab.fixtures.results`), so progress
is read from those lines and a run killed mid-way keeps what it recorded. A share that stops
producing results for longer than the per-test timeout is killed (its whole process group) and its
unfinished tests become infrastructure errors: nothing hangs.

On a remote rig host (inventory ``host:``) the share runs over ssh (:class:`RigHostProtocol`): the
lab checkout's suites and the plan are copied there, the run is started in the background, its
result lines are streamed back by polling, and the artefacts (Allure results, JUnit, Robot output)
are fetched at the end. A host that goes away turns the share's unfinished tests into
infrastructure errors ("rig host unreachable"), within the ssh timeouts.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from paylab.drivers.errors import DriverError
from paylab.drivers.protocols import RigHostProtocol
from paylab.fixtures.results import INFRA_MARK, ResultWriter

from .plan import PLUGIN, PlannedTest, Share

ROBOT_LISTENER = "paylab.fixtures.robot_listener.ResultListener"
SYNC_PATHS = ("suites", "fixtures/requirements.yaml", "pyproject.toml")


@dataclass
class ShareRun:
    """One rig's share for one attempt: where its artefacts go and how it is started."""

    share: Share
    out_dir: Path                       # reports/<campaign>/rigs/<rig>/
    attempt: int = 1                    # retries within one repeat
    repeat: int = 1                     # the round of a ``repeats:`` campaign
    inventory: Path | None = None
    cwd: Path = field(default_factory=Path.cwd)
    python: str = sys.executable
    workers: dict[Path, int] = field(default_factory=dict)   # suite path -> processes
    test_timeout_s: float = 300.0
    host: RigHostProtocol | None = None
    remote_python: str = "python3"
    remote_root: str = "paylab-runs"
    campaign_id: str = "campaign"
    allure: bool = True                 # write Allure results (allure-pytest costs ~5 ms per test)

    @property
    def tag(self) -> str:
        """The artefacts' name part: the attempt, prefixed by the repeat after the first (``2``, ``r3-1``)."""
        return str(self.attempt) if self.repeat == 1 else f"r{self.repeat}-{self.attempt}"

    @property
    def results_path(self) -> Path:
        return self.out_dir / "results.jsonl"

    @property
    def allure_dir(self) -> Path:
        return self.out_dir.parent.parent / "allure-results"


class StopFlag:
    """Tells a share to stop: the campaign was cancelled, or this rig's lease was lost."""

    def __init__(self, cancel: threading.Event, lost: Callable[[], bool] = lambda: False) -> None:
        self.cancel = cancel
        self.lost = lost

    def is_set(self) -> bool:
        return self.cancel.is_set() or self.lost()


@dataclass
class ShareOutcome:
    rig: str
    exit_codes: list[int] = field(default_factory=list)
    infra_error: str | None = None
    killed: bool = False


def _select_file(path: Path, tests: list[PlannedTest]) -> Path:
    path.write_text("".join(t.id + "\n" for t in tests), encoding="utf-8")
    return path


def pytest_command(run: ShareRun, tests: list[PlannedTest], *, root: Path, python: str,
                   results: Path, allure: Path, inventory: str | None) -> list[str]:
    """The pytest invocation of a share (paths relative to ``root``, which is the run's cwd)."""
    suites = sorted({str(t.suite) for t in tests})
    select = _select_file(run.out_dir / f"select-{run.tag}.txt", tests)
    workers = max((run.workers.get(t.suite, 1) for t in tests), default=1)
    rootdir = "." if root != run.cwd else str(run.cwd)
    cmd = [python, "-m", "pytest", *suites, "-p", PLUGIN, "-p", "no:cacheprovider", "-q", f"--rootdir={rootdir}",
           "--rig", run.share.rig,
           f"--paylab-select={select if root == run.cwd else select.name}",
           f"--paylab-results={results}", f"--paylab-attempt={run.attempt}", f"--paylab-repeat={run.repeat}",
           f"--junitxml={results.parent / f'junit-pytest-{run.tag}.xml'}", "-o", "junit_family=xunit2"]
    if run.allure:
        cmd.append(f"--alluredir={allure}")
    if inventory:
        cmd.append(f"--inventory={inventory}")
    if workers > 1:
        cmd += ["-n", str(min(workers, len(tests))), "--dist", "load"]
    return cmd


def robot_command(run: ShareRun, tests: list[PlannedTest], *, python: str, results: Path, allure: Path,
                  inventory: str | None, suite: Path | None = None, index: int = 0) -> list[str]:
    """The pabot invocation of a share's Robot tests of ONE suite path (``suite``, the path the tests were
    collected from, so their long names match), selected by long name; whole files are the unit."""
    root = suite if suite is not None else tests[0].suite
    files = {str(t.source) for t in tests if t.source is not None}
    workers = max((run.workers.get(t.suite, 1) for t in tests), default=1)
    out = results.parent / f"robot-{run.tag}-{index}"
    cmd = [python, "-m", "pabot.pabot", "--no-pabotlib", "--command", python, "-m", "robot", "--end-command",
           "--processes", str(max(1, min(workers, len(files)))),
           "--outputdir", str(out), "--output", "output.xml", "--log", "log.html", "--report", "report.html",
           "--listener", f"{ROBOT_LISTENER}:{results}:{run.share.rig}:{run.attempt}:{run.repeat}",
           "--variable", f"RIG:{run.share.rig}", "--consolewidth", "80", "--console", "dotted"]
    if run.allure:
        cmd += ["--listener", f"allure_robotframework:{allure}"]
    if inventory:
        cmd += ["--variable", f"INVENTORY:{inventory}"]
    for test in tests:
        cmd += ["--test", test.id]
    return [*cmd, str(root)]


def robot_groups(tests: list[PlannedTest]) -> list[list[PlannedTest]]:
    """Robot tests grouped by the suite path they were collected from (one pabot run each)."""
    groups: dict[Path, list[PlannedTest]] = {}
    for test in tests:
        groups.setdefault(test.suite, []).append(test)
    return list(groups.values())


class _Watchdog:
    """Kills a process group when the results file stops growing for ``timeout`` seconds."""

    def __init__(self, results: Callable[[], int], timeout: float) -> None:
        self.results = results
        self.timeout = timeout
        self.last_count = -1
        self.last_change = time.monotonic()

    def expired(self) -> bool:
        count = self.results()
        now = time.monotonic()
        if count != self.last_count:
            self.last_count, self.last_change = count, now
            return False
        return now - self.last_change > self.timeout


def _run_local(cmd: list[str], *, cwd: Path, log: Path, results: Path, timeout: float,
               cancel: StopFlag | threading.Event, env: dict[str, str], robot: bool = False) -> tuple[int, bool]:
    """Run ``cmd`` in its own process group; returns (exit code, killed by watchdog/cancel). ``robot``: the
    command is pabot, which is stopped with SIGINT first (see :func:`_stop_tree`)."""
    with log.open("ab") as log_fh:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=log_fh, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True, preexec_fn=_die_with_parent)
        watchdog = _Watchdog(lambda: _file_size(results), timeout)
        killed = False
        try:
            while proc.poll() is None:
                if cancel.is_set() or watchdog.expired():
                    killed = True
                    _stop_tree(proc, interrupt_first=robot)
                    break
                time.sleep(0.1)
        finally:
            if proc.poll() is None:
                _stop_tree(proc, interrupt_first=robot)
        return proc.wait(), killed


def _file_size(path: Path) -> int:
    """The watchdog's measure of progress: the results file's size (no re-reading of the lines)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _load_prctl() -> Callable[..., int] | None:
    """``prctl`` from the already-loaded C library, resolved once at import (never between fork and exec)."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the runner dies (even by SIGKILL), so a killed
    ``paylab run`` leaves no share running on (Linux ``prctl(PR_SET_PDEATHSIG)``). Only calls the
    function resolved at import: no dlopen, no import between fork and exec."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (from ``/proc/*/stat``), including those that left its process
    group or session (pabot starts each ``robot`` with ``setsid``)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])   # after "(comm)": state, ppid
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def _stop_tree(proc: subprocess.Popen[bytes], *, interrupt_first: bool = False, grace_s: float = 5.0) -> None:
    """Stop ``proc``, its process group and every descendant. pabot handles only SIGINT (it then stops its
    ``robot`` children, which run in sessions of their own): with ``interrupt_first`` it gets SIGINT and
    ``grace_s`` to end; then SIGTERM, then SIGKILL, to the group and to every descendant seen on the way."""
    tree = set(descendants(proc.pid))
    if interrupt_first:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)
        tree.update(descendants(proc.pid))
    for signum in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signum)
        tree.update(descendants(proc.pid))
        _signal_all(sorted(tree), signum)
        deadline = time.monotonic() + 5.0
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5.0)
        while any(_alive(pid) for pid in tree) and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is not None and not any(_alive(pid) for pid in tree):
            return


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2:stat.rindex(b")") + 3] != b"Z"


def run_share(run: ShareRun, cancel: StopFlag | threading.Event) -> ShareOutcome:
    """Run the share (blocking). Never raises for a test failure; infra trouble is in the outcome."""
    run.out_dir.mkdir(parents=True, exist_ok=True)
    run.allure_dir.mkdir(parents=True, exist_ok=True)
    outcome = ShareOutcome(run.share.rig)
    pytest_tests = [t for t in run.share.tests if t.framework == "pytest"]
    robot_tests = [t for t in run.share.tests if t.framework == "robot"]
    if run.host is not None:
        return _run_remote(run, pytest_tests, robot_tests, cancel, outcome)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PAYLAB_CAMPAIGN": run.campaign_id}
    inventory = str(run.inventory) if run.inventory else None
    log = run.out_dir / f"run-{run.tag}.log"
    batches = [("pytest", pytest_tests), *(("robot", group) for group in robot_groups(robot_tests))]
    for index, (build, tests) in enumerate(batches):
        if not tests or cancel.is_set():
            continue
        if build == "pytest":
            cmd = pytest_command(run, tests, root=run.cwd, python=run.python, results=run.results_path,
                                 allure=run.allure_dir, inventory=inventory)
        else:
            cmd = robot_command(run, tests, python=run.python, results=run.results_path, allure=run.allure_dir,
                                inventory=inventory, index=index)
        code, killed = _run_local(cmd, cwd=run.cwd, log=log, results=run.results_path,
                                  timeout=run.test_timeout_s, cancel=cancel, env=env, robot=build == "robot")
        outcome.exit_codes.append(code)
        if killed:
            outcome.killed = True
            outcome.infra_error = ("cancelled" if cancel.is_set() else
                                   f"no result for {run.test_timeout_s:g} s: the share was stopped")
    return outcome


# -- remote rig hosts -------------------------------------------------------------------------------------
def _checkout_tarball(cwd: Path, extra: list[tuple[Path, str]]) -> bytes:
    """The part of the lab checkout a share needs on its host (suites, catalogue, pytest config) plus
    ``extra`` files (path, name in the bundle): the selection and the inventory."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for rel in SYNC_PATHS:
            path = cwd / rel
            if path.exists():
                tar.add(path, arcname=rel, filter=lambda info: None if "__pycache__" in info.name else info)
        for path, name in extra:
            tar.add(path, arcname=name)
    return buffer.getvalue()


def _remote_commands(run: ShareRun, pytest_tests: list[PlannedTest], robot_tests: list[PlannedTest],
                     remote_dir: str) -> tuple[list[str], list[tuple[Path, str]]]:
    commands: list[str] = []
    extra: list[tuple[Path, str]] = []
    inventory = None
    if run.inventory is not None:
        extra.append((run.inventory, "inventory.yaml"))
        inventory = "inventory.yaml"
    results, allure = Path("out/results.jsonl"), Path("out/allure-results")
    if pytest_tests:
        tests = [PlannedTest(t.id, t.framework, Path(os.path.relpath(t.suite, run.cwd)), t.requirements,
                             t.needs) for t in pytest_tests]
        cmd = pytest_command(run, tests, root=Path(remote_dir), python=run.remote_python, results=results,
                             allure=allure, inventory=inventory)
        extra.append((run.out_dir / f"select-{run.tag}.txt", f"select-{run.tag}.txt"))
        commands.append(shlex.join(cmd))
    for index, group in enumerate(robot_groups(robot_tests), start=1):
        tests = [PlannedTest(t.id, t.framework, t.suite, t.requirements, t.needs,
                             Path(os.path.relpath(t.source, run.cwd)) if t.source else None)
                 for t in group]
        commands.append(shlex.join(robot_command(run, tests, python=run.remote_python, results=results,
                                                 allure=allure, inventory=inventory, index=index,
                                                 suite=Path(os.path.relpath(group[0].suite, run.cwd)))))
    return commands, extra


REMOTE_STOP = (
    # every descendant first (pabot starts each robot in its own session, out of the group), then
    # SIGINT to the group (pabot's own clean stop), then SIGTERM to all of them
    "p=$(cat out/pid 2>/dev/null) || exit 0; "
    "tree() { for c in $(pgrep -P \"$1\"); do echo \"$c\"; tree \"$c\"; done; }; "
    "all=\"$(tree \"$p\")\"; kill -INT -- -\"$p\" 2>/dev/null; sleep 3; "
    "kill -TERM -- -\"$p\" 2>/dev/null; for c in $all; do kill -TERM \"$c\" 2>/dev/null; done; true"
)


def _run_remote(run: ShareRun, pytest_tests: list[PlannedTest], robot_tests: list[PlannedTest],
                cancel: StopFlag | threading.Event, outcome: ShareOutcome) -> ShareOutcome:
    """The share on the rig's host: bundle up, start detached (own process group, PID file), stream the
    result lines back by polling, fetch the artefacts. Any ssh trouble ends it as an infra error."""
    host = run.host
    assert host is not None
    remote_dir = f"{run.remote_root}/{run.campaign_id}/{run.share.rig}-{run.tag}"
    q = shlex.quote(remote_dir)
    writer = ResultWriter(run.results_path)
    started = False
    try:
        commands, extra = _remote_commands(run, pytest_tests, robot_tests, remote_dir)
        bundle = run.out_dir / f"bundle-{run.tag}.tar.gz"
        bundle.write_bytes(_checkout_tarball(run.cwd, extra))
        host.run(f"mkdir -p {q}/out/allure-results", timeout=30)
        host.put(bundle, f"{remote_dir}/bundle.tar.gz")
        bundle.unlink()
        script = " ; ".join(commands) if commands else "true"
        host.run(f"cd {q} && tar -xzf bundle.tar.gz && rm bundle.tar.gz && "
                 f"{{ setsid sh -c {shlex.quote(script + '; echo $? > out/done.tmp; mv out/done.tmp out/done')} "
                 f"> out/run.log 2>&1 < /dev/null & echo $! > out/pid; }}", timeout=30)
        started = True
        seen = 0
        watchdog = _Watchdog(lambda: seen, run.test_timeout_s)
        while True:
            # "done" is tested BEFORE reading the lines: once it exists, every line is already written
            result = host.run(f"cd {q} && (test -f out/done && echo @@DONE@@; "
                              f"tail -n +{seen + 1} out/results.jsonl 2>/dev/null; true)", timeout=30, check=False)
            lines = result.stdout.splitlines()
            done = "@@DONE@@" in lines
            lines = [line for line in lines if line != "@@DONE@@"]
            for index, line in enumerate(lines):
                try:
                    writer.write(json.loads(line))
                except json.JSONDecodeError:
                    if index == len(lines) - 1:
                        break  # the last line may still be being written: read it again next time
                    # a later line exists, so this one will never be completed (a worker killed mid-write)
                seen += 1
            if done:
                break
            if cancel.is_set() or watchdog.expired():
                host.run(f"cd {q} && {REMOTE_STOP}", timeout=30, check=False)
                outcome.killed = True
                outcome.infra_error = "cancelled" if cancel.is_set() else "remote share stopped producing results"
                break
            time.sleep(0.3)
        host.run(f"cd {q} && tar -czf artefacts.tar.gz -C out .", timeout=60)
        artefacts = run.out_dir / f"remote-{run.tag}.tar.gz"
        host.get(f"{remote_dir}/artefacts.tar.gz", artefacts)
        with tarfile.open(artefacts) as tar:
            for member in tar.getmembers():
                if not member.isfile() or member.name.endswith(("results.jsonl", "/pid", "/done")):
                    continue
                if member.name.startswith("./allure-results/"):
                    member.name = Path(member.name).name
                    tar.extract(member, run.allure_dir, filter="data")
                else:
                    tar.extract(member, run.out_dir / f"remote-{run.tag}", filter="data")
        artefacts.unlink()
        host.run(f"rm -rf {q}", timeout=30, check=False)
    except (DriverError, OSError, tarfile.TarError) as exc:
        where = "while running the share" if started else "before the share started"
        outcome.infra_error = f"rig host {host.name} {where}: {exc}"
    return outcome


def infra_line(test: PlannedTest, rig: str, attempt: int, reason: str, repeat: int = 1) -> dict[str, object]:
    """The result line of a test that could not run because of the infrastructure (in repeat ``repeat``)."""
    now = time.time()
    return {"id": test.id, "name": test.id.rsplit("::", 1)[-1].rsplit(".", 1)[-1], "suite": str(test.suite),
            "framework": test.framework, "rig": rig, "requirements": list(test.requirements), "verdict": "error",
            "category": "infra", "attempt": attempt, "repeat": repeat, "duration_ms": 0.0, "started": now,
            "finished": now,
            "message": f"{INFRA_MARK} {reason}", "tap_to_approval_ms": [], "trace": [], "iso8583": [],
            "worker": "runner"}
