"""Campaign files: which suites run, with which tags, on which rigs, how often, with what retries.

A campaign is a YAML file, validated before anything runs; an error names the file, line and field
(:class:`CampaignFileError`, ``nightly.yaml:12: suites[1].framework: must be one of pytest, robot``).

.. code-block:: yaml

    campaign: nightly                 # name (the campaign id is name + start time)
    description: the whole matrix on every rig
    rigs:                             # by name, or by capability (all rigs that have every listed one)
      - name: sim
      - capabilities: [pcsc-contactless, pos]
        count: 2                      # at most this many of the matching rigs (default: all)
    suites:
      - path: suites/pytest           # relative to the lab checkout (the current directory)
        framework: pytest             # pytest (run with pytest-xdist) | robot (run with pabot)
        tags: "not slow"              # pytest -m expression / robot --include tag (optional)
        workers: 2                    # parallel processes per rig (default 1)
    repeats: 1                        # run everything this many times (stability campaigns)
    retry:
      infra: 2                        # re-runs of a test that ended in an infrastructure error
      product: 0                      # re-runs of a product failure (0: a failure is a failure)
    lease:
      ttl_s: 60                       # a rig lease expires this long after the last heartbeat
      heartbeat_s: 10
    timeouts:
      test_s: 300                     # per test, enforced by the runner
      health_s: 30
    report:
      allure: true
      previous_runs: 10               # how many earlier runs the trends look back on
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..yaml_lines import LineMap, LocatedError, PathKey, load_file_with_lines

FRAMEWORKS = ("pytest", "robot")


class CampaignFileError(LocatedError):
    """The campaign file is invalid (``FILE:LINE: field: problem``)."""


@dataclass(frozen=True)
class RigSelector:
    """``name`` selects one rig; ``capabilities`` selects every rig having all of them (``count`` caps it)."""

    name: str | None = None
    capabilities: tuple[str, ...] = ()
    count: int | None = None


@dataclass(frozen=True)
class SuiteSpec:
    path: Path
    framework: str
    tags: str | None = None
    workers: int = 1


@dataclass(frozen=True)
class RetryPolicy:
    infra: int = 2
    product: int = 0


@dataclass(frozen=True)
class Campaign:
    name: str
    source: Path
    sha256: str
    text: str
    rigs: tuple[RigSelector, ...]
    suites: tuple[SuiteSpec, ...]
    description: str = ""
    repeats: int = 1
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    lease_ttl_s: float = 60.0
    heartbeat_s: float = 10.0
    test_timeout_s: float = 300.0
    health_timeout_s: float = 30.0
    allure: bool = True
    previous_runs: int = 10
    lines: LineMap | None = field(default=None, compare=False, repr=False)


def check_rigs(campaign: Campaign, inventory: Any) -> None:
    """Every rig selector must match the inventory: a rig named that way, or at least one rig with all the
    capabilities. Raises :class:`CampaignFileError` at the selector's line (checked before anything runs)."""
    lines = campaign.lines or LineMap(str(campaign.source))
    for i, selector in enumerate(campaign.rigs):
        if selector.name is not None and selector.name not in inventory.rigs:
            raise lines.error(("rigs", i, "name"), f"no rig {selector.name!r} in the inventory "
                              f"{inventory.source or '(built in)'} (have: {', '.join(inventory.rigs)})",
                              CampaignFileError)
        if selector.capabilities and not inventory.with_capabilities(*selector.capabilities):
            raise lines.error(("rigs", i, "capabilities"), "no rig in the inventory has all of "
                              + ", ".join(selector.capabilities), CampaignFileError)


class _Reader:
    def __init__(self, lines: LineMap) -> None:
        self.lines = lines

    def fail(self, path: PathKey, problem: str) -> CampaignFileError:
        return self.lines.error(path, problem, CampaignFileError)  # type: ignore[return-value]

    def mapping(self, value: Any, path: PathKey, allowed: set[str], required: frozenset[str] = frozenset()) -> dict:
        if not isinstance(value, dict):
            raise self.fail(path, f"must be a mapping, got {type(value).__name__}")
        for key in value:
            if key not in allowed:
                raise self.fail((*path, str(key)), "unknown field (allowed: " + ", ".join(sorted(allowed)) + ")")
        for key in sorted(required):
            if key not in value or value[key] is None:
                raise self.fail(path, f"missing required field '{key}'")
        return value

    def text(self, value: Any, path: PathKey) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(path, f"must be a non-empty string, got {value!r}")
        return value

    def integer(self, value: Any, path: PathKey, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, f"must be an integer, got {value!r}")
        if not low <= value <= high:
            raise self.fail(path, f"{value} is outside {low}..{high}")
        return value

    def number(self, value: Any, path: PathKey, low: float, high: float) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(path, f"must be a number, got {value!r}")
        if not low <= value <= high:
            raise self.fail(path, f"{value} is outside {low}..{high}")
        return float(value)

    def sequence(self, value: Any, path: PathKey) -> list:
        if not isinstance(value, list):
            raise self.fail(path, f"must be a list, got {type(value).__name__}")
        if not value:
            raise self.fail(path, "must not be empty")
        return value


def load_campaign(path: Path, *, base: Path | None = None) -> Campaign:
    """Read and validate a campaign file. Suite paths resolve against ``base`` (default: the current
    directory, i.e. the lab checkout) and must exist."""
    raw, lines = load_file_with_lines(path, CampaignFileError)
    r = _Reader(lines)
    doc = r.mapping(raw, (), {"campaign", "description", "rigs", "suites", "repeats", "retry", "lease",
                              "timeouts", "report"}, frozenset({"campaign", "rigs", "suites"}))
    name = r.text(doc["campaign"], ("campaign",))
    if not all(c.isalnum() or c in "-_." for c in name):
        raise r.fail(("campaign",), f"{name!r} may only hold letters, digits, '-', '_' and '.'")
    base = base if base is not None else Path.cwd()
    rigs = []
    for i, item in enumerate(r.sequence(doc["rigs"], ("rigs",))):
        p: PathKey = ("rigs", i)
        item = r.mapping(item, p, {"name", "capabilities", "count"})
        if ("name" in item) == ("capabilities" in item):
            raise r.fail(p, "give exactly one of 'name' or 'capabilities'")
        if "name" in item:
            rigs.append(RigSelector(name=r.text(item["name"], (*p, "name"))))
        else:
            caps = tuple(r.text(c, (*p, "capabilities", j))
                         for j, c in enumerate(r.sequence(item["capabilities"], (*p, "capabilities"))))
            count = r.integer(item["count"], (*p, "count"), 1, 1000) if "count" in item else None
            rigs.append(RigSelector(capabilities=caps, count=count))
    suites = []
    for i, item in enumerate(r.sequence(doc["suites"], ("suites",))):
        p = ("suites", i)
        item = r.mapping(item, p, {"path", "framework", "tags", "workers"}, frozenset({"path", "framework"}))
        framework = item["framework"]
        if framework not in FRAMEWORKS:
            raise r.fail((*p, "framework"), f"must be one of {', '.join(FRAMEWORKS)}, got {framework!r}")
        suite_path = Path(r.text(item["path"], (*p, "path")))
        resolved = suite_path if suite_path.is_absolute() else base / suite_path
        if not resolved.exists():
            raise r.fail((*p, "path"), f"{suite_path} does not exist (relative to {base})")
        tags = r.text(item["tags"], (*p, "tags")) if item.get("tags") is not None else None
        workers = r.integer(item["workers"], (*p, "workers"), 1, 64) if "workers" in item else 1
        suites.append(SuiteSpec(resolved, framework, tags, workers))
    repeats = r.integer(doc["repeats"], ("repeats",), 1, 1000) if "repeats" in doc else 1
    retry = RetryPolicy()
    if "retry" in doc:
        rd = r.mapping(doc["retry"], ("retry",), {"infra", "product"})
        retry = RetryPolicy(infra=r.integer(rd.get("infra", 2), ("retry", "infra"), 0, 10),
                            product=r.integer(rd.get("product", 0), ("retry", "product"), 0, 10))
    ttl, heartbeat = 60.0, 10.0
    if "lease" in doc:
        ld = r.mapping(doc["lease"], ("lease",), {"ttl_s", "heartbeat_s"})
        ttl = r.number(ld.get("ttl_s", ttl), ("lease", "ttl_s"), 1, 86_400)
        heartbeat = r.number(ld.get("heartbeat_s", heartbeat), ("lease", "heartbeat_s"), 0.1, 3_600)
        if heartbeat >= ttl:
            raise r.fail(("lease", "heartbeat_s"), f"must be shorter than ttl_s ({ttl:g})")
    test_timeout, health_timeout = 300.0, 30.0
    if "timeouts" in doc:
        td = r.mapping(doc["timeouts"], ("timeouts",), {"test_s", "health_s"})
        test_timeout = r.number(td.get("test_s", test_timeout), ("timeouts", "test_s"), 1, 86_400)
        health_timeout = r.number(td.get("health_s", health_timeout), ("timeouts", "health_s"), 1, 3_600)
    allure, previous = True, 10
    if "report" in doc:
        rd = r.mapping(doc["report"], ("report",), {"allure", "previous_runs"})
        if not isinstance(rd.get("allure", True), bool):
            raise r.fail(("report", "allure"), "must be true or false")
        allure = rd.get("allure", True)
        previous = r.integer(rd.get("previous_runs", previous), ("report", "previous_runs"), 0, 1000)
    description = doc.get("description") or ""
    if not isinstance(description, str):
        raise r.fail(("description",), "must be a string")
    text = path.read_text(encoding="utf-8")
    return Campaign(name=name, source=path, sha256=hashlib.sha256(text.encode()).hexdigest(), text=text,
                    rigs=tuple(rigs), suites=tuple(suites), description=description, repeats=repeats,
                    retry=retry, lease_ttl_s=ttl, heartbeat_s=heartbeat, test_timeout_s=test_timeout,
                    health_timeout_s=health_timeout, allure=allure, previous_runs=previous, lines=lines)
