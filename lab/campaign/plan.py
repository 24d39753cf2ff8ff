"""Planning a campaign: collect the tests, then give each rig its share.

Collection runs the suites' own collector once (``pytest --paylab-collect``; Robot's suite builder),
so the runner knows every test id, its requirement ids and the capabilities it needs before
anything runs. That list is what makes ``--resume`` ("finish only what is missing"), "not run"
accounting and moving a quarantined rig's tests possible.

Assignment is a pure function (labgrid's scheduling idea): each test goes to the least loaded rig
that has every capability it needs; a test no healthy rig can take is *not run*, with the reason.
Robot suites are assigned whole (a ``.robot`` file is the unit pabot parallelises).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..protocol.errors import PaylabError
from .campaign_file import SuiteSpec

PLUGIN = "paylab.fixtures.pytest_plugin"


class CollectionError(PaylabError):
    """A suite could not be collected (syntax error, unknown requirement id...): one line naming it."""


@dataclass(frozen=True)
class PlannedTest:
    """One test of the campaign (``id``: pytest node id, or the Robot test's long name)."""

    id: str
    framework: str
    suite: Path
    requirements: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    source: Path | None = None       # robot: the .robot file that holds it (the unit of assignment)
    tags: str | None = None          # the suite spec's tag expression


@dataclass
class Share:
    """What one rig runs."""

    rig: str
    tests: list[PlannedTest] = field(default_factory=list)


@dataclass
class Plan:
    shares: dict[str, Share]
    not_run: list[tuple[PlannedTest, str]]
    deselected: list[tuple[PlannedTest, str]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(len(s.tests) for s in self.shares.values())


def collect_pytest(suite: SuiteSpec, *, cwd: Path, python: str = sys.executable, rig: str = "sim",
                   inventory: Path | None = None, timeout: float = 300.0) -> list[PlannedTest]:
    """The tests of a pytest suite with their markers (runs ``pytest --collect-only`` in a subprocess)."""
    with tempfile.TemporaryDirectory(prefix="paylab-collect-") as tmp:
        out = Path(tmp) / "collected.json"
        cmd = [python, "-m", "pytest", str(suite.path), "-p", PLUGIN, "-q", "--collect-only",
               "-p", "no:cacheprovider", f"--rootdir={cwd}", "--rig", rig, f"--paylab-collect={out}"]
        if inventory is not None:
            cmd.append(f"--inventory={inventory}")
        if suite.tags:
            cmd += ["-m", suite.tags]
        try:
            proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise CollectionError(f"cannot collect {suite.path}: pytest --collect-only took more than "
                                  f"{timeout:g} s") from None
        # 0: collected, 5: nothing selected; anything else (2: a module failed to import) must not make the
        # failing module's tests silently disappear from the campaign
        if proc.returncode not in (0, 5) or not out.exists():
            lines = [ln.strip() for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
            detail = next((ln for ln in lines if ln.startswith("ERROR")), None) \
                or next((ln for ln in lines if "rror" in ln), lines[-1] if lines else "no output")
            raise CollectionError(f"cannot collect {suite.path} (pytest exit {proc.returncode}): {detail}")
        rows = json.loads(out.read_text(encoding="utf-8"))
    return [PlannedTest(row["id"], "pytest", suite.path, tuple(row["requirements"]), tuple(row["needs"]),
                        tags=suite.tags) for row in rows]


def collect_robot(suite: SuiteSpec) -> list[PlannedTest]:
    """The tests of a Robot suite (folder or file); requirement ids are the ``REQ-...`` tags and
    capabilities the ``needs:<capability>`` tags."""
    from robot.api import TestSuiteBuilder
    from robot.errors import DataError

    try:
        root = TestSuiteBuilder().build(str(suite.path))
    except DataError as exc:
        raise CollectionError(f"cannot collect {suite.path}: {exc}") from None
    include = suite.tags
    tests: list[PlannedTest] = []

    def walk(node: object) -> None:
        for test in getattr(node, "tests", []):
            tags = [str(t) for t in test.tags]
            if include and include not in tags:
                continue
            tests.append(PlannedTest(
                id=test.full_name, framework="robot", suite=suite.path,
                requirements=tuple(t for t in tags if t.startswith("REQ-")),
                needs=tuple(t.split(":", 1)[1] for t in tags if t.startswith("needs:")),
                source=Path(str(test.source)) if test.source else None, tags=suite.tags))
        for child in getattr(node, "suites", []):
            walk(child)

    walk(root)
    return tests


def assign(tests: Sequence[PlannedTest], rigs: Mapping[str, Iterable[str]],
           campaign_rigs: Mapping[str, Iterable[str]] | None = None) -> Plan:
    """Give every test to the least loaded rig having all its needs (pure, deterministic).

    ``rigs``: healthy rig name → capabilities; ``campaign_rigs``: every rig the campaign selected
    (healthy or not; default ``rigs``). A test that no rig of the campaign could ever run is
    *deselected* (the pytest plugin's rule, with the missing capability as the reason); a test whose
    capable rigs are all busy or quarantined is *not run* (an infrastructure matter). Robot tests of
    one file stay together."""
    caps = {name: set(c) for name, c in rigs.items()}
    every = {name: set(c) for name, c in (campaign_rigs if campaign_rigs is not None else rigs).items()}
    shares = {name: Share(name) for name in rigs}
    plan = Plan(shares, [])
    units: dict[tuple[str, str], list[PlannedTest]] = {}
    for test in tests:
        key = (test.framework, str(test.source)) if test.framework == "robot" else ("pytest", test.id)
        units.setdefault(key, []).append(test)
    for unit in units.values():
        # the rig that can run most of the unit (a Robot file), then the least loaded one
        runnable = {name: [t for t in unit if set(t.needs) <= caps[name]] for name in shares}
        best = max((len(r) for r in runnable.values()), default=0)
        if best:
            target = min((name for name in shares if len(runnable[name]) == best),
                         key=lambda name: (len(shares[name].tests), name))
            shares[target].tests.extend(runnable[target])
            unit = [t for t in unit if t not in runnable[target]]
        for test in unit:
            _cannot_run(plan, test, every)
    return plan


def _cannot_run(plan: Plan, test: PlannedTest, every: dict[str, set[str]]) -> None:
    """A test no healthy rig can take: deselected when no rig of the campaign could, else not run."""
    needs = set(test.needs)
    if not any(needs <= c for c in every.values()):
        lacking = sorted(needs - set().union(*every.values())) if every else sorted(needs)
        what = ", ".join(lacking) if lacking else "all of " + ", ".join(sorted(needs))
        plan.deselected.append((test, f"no rig of the campaign has capability {what}"))
        return
    capable = sorted(name for name, c in every.items() if needs <= c)
    plan.not_run.append((test, f"every rig able to run it is unavailable ({', '.join(capable)}: busy, "
                               "quarantined or lost)"))
