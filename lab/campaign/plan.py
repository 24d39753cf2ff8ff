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

    @property
    def total(self) -> int:
        return sum(len(s.tests) for s in self.shares.values())


def collect_pytest(suite: SuiteSpec, *, cwd: Path, python: str = sys.executable, rig: str = "sim",
                   inventory: Path | None = None, timeout: float = 300.0) -> list[PlannedTest]:
    """The tests of a pytest suite with their markers (runs ``pytest --collect-only`` in a subprocess)."""
    with tempfile.TemporaryDirectory(prefix="paylab-collect-") as tmp:
        out = Path(tmp) / "collected.json"
        cmd = [python, "-m", "pytest", str(suite.path), "-p", PLUGIN, "-q", "--collect-only",
               "-p", "no:cacheprovider", "--rig", rig, f"--paylab-collect={out}"]
        if inventory is not None:
            cmd.append(f"--inventory={inventory}")
        if suite.tags:
            cmd += ["-m", suite.tags]
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
        if not out.exists():
            lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
            detail = next((ln for ln in lines if "rror" in ln), lines[-1] if lines else "no output")
            raise CollectionError(f"cannot collect {suite.path}: {detail.strip()}")
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


def assign(tests: Sequence[PlannedTest], rigs: Mapping[str, Iterable[str]]) -> Plan:
    """Give every test to the least loaded rig having all its needs (pure, deterministic).

    ``rigs``: healthy rig name → capabilities. Robot tests of one file stay together."""
    caps = {name: set(c) for name, c in rigs.items()}
    shares = {name: Share(name) for name in rigs}
    not_run: list[tuple[PlannedTest, str]] = []
    units: dict[tuple[str, str], list[PlannedTest]] = {}
    for test in tests:
        key = (test.framework, str(test.source)) if test.framework == "robot" else ("pytest", test.id)
        units.setdefault(key, []).append(test)
    for unit in units.values():
        needs = set().union(*(set(t.needs) for t in unit))
        able = [name for name in shares if needs <= caps[name]]
        if not able:
            reason = ("no rig selected" if not shares else
                      f"no healthy rig has capability {', '.join(sorted(needs - set().union(*caps.values())))}"
                      if needs - set().union(*caps.values()) else
                      f"no healthy rig has all of {', '.join(sorted(needs))}")
            not_run.extend((t, reason) for t in unit)
            continue
        target = min(able, key=lambda name: (len(shares[name].tests), name))
        shares[target].tests.extend(unit)
    return Plan(shares, not_run)
