"""The campaign record: plain data, JSON in and out (the OpenHTF idea: reports are renderings of it).

A :class:`CampaignRecord` holds everything an auditor report, Allure or JUnit view shows: the
campaign file (path, SHA-256 and content), scope, rigs, every :class:`TestResult` (verdict,
product/infra category, attempts, timings, masked APDU trace and ISO 8583 views), the equipment
and software manifests, deviations and infrastructure errors, and a snapshot of the requirement
catalogue. Facts are computed here (:func:`evaluate`, :func:`verdict_for`), never in a renderer.

Traces are lists of :class:`~paylab.lab.protocol.trace.TraceRecord` dicts (as written by
:class:`~paylab.lab.protocol.trace.TraceWriter`, masked at write time) or the path of a JSON-lines
trace file, relative to the record's directory.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..protocol.errors import PaylabError
from .requirements import (
    DEFAULT_CATALOGUE,
    CatalogueError,
    DecisionRule,
    Requirement,
    RuleError,
    load_requirements,
)

__all__ = [
    "DEFAULT_CATALOGUE",
    "Attachment",
    "CampaignFile",
    "CampaignRecord",
    "CatalogueError",
    "DecisionRule",
    "Deviation",
    "EquipmentEntry",
    "InfraErrorEntry",
    "RecordError",
    "Requirement",
    "RequirementOutcome",
    "RuleError",
    "RunSummary",
    "SoftwareManifest",
    "TestResult",
    "collect_software_manifest",
    "evaluate",
    "load_requirements",
    "summarize",
    "verdict_for",
]

RECORD_FORMAT = "paylab-campaign-record/1"
VERDICTS = ("passed", "failed", "error", "skipped", "not-run")
CATEGORIES = ("product", "infra", "none")
FRAMEWORKS = ("pytest", "robot")
REQUIREMENT_VERDICTS = ("pass", "fail", "inconclusive", "not-covered")


class RecordError(PaylabError, ValueError):
    """A campaign record (JSON) is malformed; the message names the field (``results[3].verdict``)."""


def _need(cond: bool, where: str, problem: str) -> None:
    if not cond:
        raise RecordError(f"{where}: {problem}")


@dataclass
class CampaignFile:
    """The campaign file as it was run: its path, SHA-256 of its content, and the content itself."""

    path: str
    sha256: str
    content: str

    @classmethod
    def from_path(cls, path: Path | str) -> CampaignFile:
        data = Path(path).read_bytes()
        return cls(str(path), hashlib.sha256(data).hexdigest(), data.decode("utf-8", errors="replace"))


@dataclass
class Attachment:
    """A file attached to a test (screenshot, log): name, path relative to the report, SHA-256."""

    name: str
    path: str
    sha256: str = ""
    media_type: str = "application/octet-stream"


@dataclass
class TestResult:
    """One test's outcome on one rig.

    ``category`` says who is to blame for a non-pass: ``product`` (card, POS or backend
    misbehaved), ``infra`` (reader gone, pcscd down, ssh or lease lost) or ``none`` (passed,
    skipped). ``trace`` is a list of masked TraceRecord dicts or the path of a JSONL trace;
    ``iso8583`` holds masked message views (:func:`paylab.lab.protocol.iso8583.to_json` dicts, plus
    an optional ``"direction"``/``"dialect"``).
    """

    __test__ = False  # not a pytest test class

    id: str
    name: str
    suite: str = ""
    framework: str = "pytest"
    rig: str = ""
    requirement_ids: list[str] = field(default_factory=list)
    verdict: str = "passed"
    category: str = "none"
    attempts: int = 1
    duration_ms: float = 0.0
    message: str = ""
    tap_to_approval_ms: float | None = None
    trace: list[dict[str, Any]] | str | None = None
    iso8583: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)

    def __post_init__(self) -> None:
        where = f"result {self.id!r}"
        _need(self.verdict in VERDICTS, where, f"verdict {self.verdict!r} not one of {', '.join(VERDICTS)}")
        _need(self.category in CATEGORIES, where, f"category {self.category!r} not one of {', '.join(CATEGORIES)}")
        _need(self.framework in FRAMEWORKS, where, f"framework {self.framework!r} not one of pytest, robot")
        _need(isinstance(self.attempts, int) and self.attempts >= 0, where, "attempts must be an integer >= 0")

    @property
    def is_product_failure(self) -> bool:
        """Failed or errored, and not blamed on the infrastructure."""
        return self.verdict in ("failed", "error") and self.category != "infra"

    @property
    def is_infra_error(self) -> bool:
        return self.category == "infra" and self.verdict != "passed"


@dataclass
class EquipmentEntry:
    """One piece of equipment as reported by the device or the inventory (issue 6 "equipment manifest")."""

    kind: str  # reader, nfc, pos, handset, se, card-image, rig-host
    name: str
    vendor: str = ""
    model: str = ""
    serial: str = ""
    firmware: str = ""
    rig: str = ""
    calibration_date: str = ""
    calibration_due: str = ""
    card_profile: str = ""
    image_sha256: str = ""
    notes: str = ""


@dataclass
class SoftwareManifest:
    """paylab version and commit, Python, platform and the versions of the packages it runs on."""

    paylab_version: str
    git_commit: str
    python: str
    platform: str
    packages: dict[str, str] = field(default_factory=dict)


@dataclass
class Deviation:
    """A known, accepted departure from the plan (a waived test, a substituted rig)."""

    id: str
    text: str
    requirement_ids: list[str] = field(default_factory=list)
    test_ids: list[str] = field(default_factory=list)
    approved_by: str = ""


@dataclass
class InfraErrorEntry:
    """An infrastructure error outside any single test result (rig quarantined, host lost, lease lost)."""

    kind: str
    message: str
    rig: str = ""
    test_id: str = ""
    at: str = ""


@dataclass
class CampaignRecord:
    """The whole campaign as plain data; :meth:`to_json`/:meth:`from_json` round-trip exactly."""

    id: str
    name: str
    started: str
    finished: str
    scope: str = ""
    campaign_file: CampaignFile | None = None
    rigs: list[str] = field(default_factory=list)
    results: list[TestResult] = field(default_factory=list)
    requirements: list[Requirement] = field(default_factory=list)
    equipment: list[EquipmentEntry] = field(default_factory=list)
    software: SoftwareManifest | None = None
    deviations: list[Deviation] = field(default_factory=list)
    infra_errors: list[InfraErrorEntry] = field(default_factory=list)

    # --- JSON ---------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict; trace entries and message views are shared with the record, not copied."""
        data = _plain(self)
        data["requirements"] = [r.to_dict() for r in self.requirements]
        return {"format": RECORD_FORMAT, **data}

    def to_json(self, *, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=indent)

    def save(self, path: Path | str) -> Path:
        out = Path(path)
        out.write_text(self.to_json(indent=1) + "\n", encoding="utf-8")
        return out

    @classmethod
    def from_dict(cls, data: Any) -> CampaignRecord:
        _need(isinstance(data, dict), "record", "must be a JSON object")
        _need(data.get("format", RECORD_FORMAT) == RECORD_FORMAT, "format", f"must be {RECORD_FORMAT}")
        top = _pick(cls, data, "record", skip={"format"})
        if top.get("campaign_file") is not None:
            top["campaign_file"] = CampaignFile(**_pick(CampaignFile, top["campaign_file"], "campaign_file"))
        if top.get("software") is not None:
            top["software"] = SoftwareManifest(**_pick(SoftwareManifest, top["software"], "software"))
        top["results"] = [_result(r, f"results[{i}]") for i, r in enumerate(_list(top, "results"))]
        try:
            top["requirements"] = [
                Requirement.from_dict(_pick(Requirement, r, f"requirements[{i}]"))
                for i, r in enumerate(_list(top, "requirements"))
            ]
            for name, kind in (("equipment", EquipmentEntry), ("deviations", Deviation),
                               ("infra_errors", InfraErrorEntry)):
                top[name] = [kind(**_pick(kind, e, f"{name}[{i}]")) for i, e in enumerate(_list(top, name))]
            return cls(**top)
        except TypeError as exc:  # a required field missing: the message names it
            raise RecordError(f"record: {exc}") from None

    @classmethod
    def from_json(cls, text: str) -> CampaignRecord:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RecordError(f"record: not valid JSON at line {exc.lineno}: {exc.msg}") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: Path | str) -> CampaignRecord:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise RecordError(f"{path}: cannot read: {exc.strerror or exc}") from None
        try:
            return cls.from_json(text)
        except RecordError as exc:
            raise RecordError(f"{path}: {exc}") from None

    # --- views --------------------------------------------------------------------------------

    def catalogue(self) -> list[Requirement]:
        """The record's requirement snapshot, or the bundled catalogue when the record has none."""
        return list(self.requirements) if self.requirements else load_requirements()


def _plain(obj: Any) -> Any:
    """Dataclasses to dicts, lists to lists; dicts (already JSON data) are kept as they are. Unlike
    :func:`dataclasses.asdict` nothing is deep-copied, which matters for 10,000 traced results."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, list | tuple):
        return [_plain(x) for x in obj]
    return obj


def _list(data: dict[str, Any], name: str) -> list[Any]:
    value = data.get(name) or []
    _need(isinstance(value, list), name, "must be a list")
    return value


def _pick(cls: type, data: Any, where: str, skip: Iterable[str] = ()) -> dict[str, Any]:
    """The keys of ``data`` that are fields of ``cls``; unknown keys are refused, naming them."""
    _need(isinstance(data, dict), where, "must be an object")
    names = {f.name for f in fields(cls)}
    extra = sorted(set(data) - names - set(skip))
    _need(not extra, where, f"unknown field(s) {', '.join(extra)}")
    return {k: v for k, v in data.items() if k in names}


def _result(data: Any, where: str) -> TestResult:
    values = _pick(TestResult, data, where)
    values["attachments"] = [
        Attachment(**_pick(Attachment, a, f"{where}.attachments[{i}]"))
        for i, a in enumerate(_list(values, "attachments"))
    ]
    trace = values.get("trace")
    _need(trace is None or isinstance(trace, str | list), f"{where}.trace", "must be a list, a path or null")
    try:
        return TestResult(**values)
    except TypeError as exc:
        raise RecordError(f"{where}: {exc}") from None
    except RecordError as exc:
        raise RecordError(f"{where}: {exc}") from None


# --- decision rules -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RequirementOutcome:
    """A requirement's verdict with the evidence: the tests that name it and why it is not a pass."""

    requirement: Requirement
    verdict: str
    tests: tuple[TestResult, ...]
    passed: int
    product_failures: int
    not_passed: int
    reason: str


def evaluate(requirement: Requirement, results: Iterable[TestResult]) -> RequirementOutcome:
    """Apply ``requirement``'s decision rule to the results that name it (see :mod:`.requirements`)."""
    rule = requirement.decision_rule
    tests = tuple(r for r in results if requirement.id in r.requirement_ids)
    passed = sum(1 for r in tests if r.verdict == "passed")
    failures = sum(1 for r in tests if r.is_product_failure)
    not_passed = len(tests) - passed - failures
    if not tests:
        return RequirementOutcome(requirement, "not-covered", tests, 0, 0, 0, "no test names this requirement")
    if failures:
        return RequirementOutcome(requirement, "fail", tests, passed, failures, not_passed,
                                  f"{failures} product failure(s)")
    if rule.kind == "any-fail-is-fail":
        verdict, reason = ("pass", "") if passed else ("inconclusive", "no test passed")
    elif not_passed:
        verdict, reason = "inconclusive", f"{not_passed} test(s) did not pass (infra error, skipped or not run)"
    elif passed < rule.minimum:
        verdict, reason = "inconclusive", f"{passed} test(s), the rule needs at least {rule.minimum}"
    else:
        verdict, reason = "pass", ""
    return RequirementOutcome(requirement, verdict, tests, passed, failures, not_passed, reason)


def verdict_for(requirement: Requirement, results: Iterable[TestResult]) -> str:
    """``pass``, ``fail``, ``inconclusive`` or ``not-covered`` for ``requirement`` (its decision rule)."""
    return evaluate(requirement, results).verdict


# --- software manifest --------------------------------------------------------------------------


def _git_commit(repo: Path) -> str:
    """HEAD's commit read from ``.git`` files (no git process): "" when not a checkout."""
    git = repo / ".git"
    try:
        if git.is_file():  # worktree: "gitdir: <path>"
            git = (repo / git.read_text().split(":", 1)[1].strip()).resolve()
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head
        ref = head.split(":", 1)[1].strip()
        ref_file = git / ref
        if ref_file.is_file():
            return ref_file.read_text().strip()
        packed = git / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[1] == ref:
                    return parts[0]
    except OSError:
        return ""
    return ""


def _requirement_names(dist: str) -> list[str]:
    try:
        reqs = importlib.metadata.requires(dist) or []
    except importlib.metadata.PackageNotFoundError:
        return []
    names = []
    for req in reqs:
        name = req.split(";")[0].strip()
        for sep in "<>=!~[ (":
            name = name.split(sep)[0]
        if name:
            names.append(name)
    return names


def collect_software_manifest(extra_packages: Iterable[str] = ()) -> SoftwareManifest:
    """paylab version and git commit, Python, platform, and the installed versions of paylab's
    dependencies (and test extras) read with :mod:`importlib.metadata`."""
    try:
        version = importlib.metadata.version("paylab")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    packages: dict[str, str] = {}
    for name in sorted({*_requirement_names("paylab"), *extra_packages}, key=str.lower):
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            packages[name] = "not installed"
    repo = Path(__file__).resolve().parents[2]
    return SoftwareManifest(
        paylab_version=version,
        git_commit=_git_commit(repo),
        python=sys.version.split()[0],
        platform=platform.platform(),
        packages=packages,
    )


# --- run summary (for trends) -------------------------------------------------------------------


@dataclass(frozen=True)
class RunSummary:
    """Counts and duration of one campaign run; ``pass_rate`` is passed / results (0 without results)."""

    id: str
    started: str
    total: int
    passed: int
    product_failures: int
    infra_errors: int
    not_run: int
    pass_rate: float
    duration_s: float


def _seconds_between(start: str, end: str) -> float | None:
    try:
        return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except (TypeError, ValueError):
        return None


def summarize(record: CampaignRecord) -> RunSummary:
    """The run's counts; duration from ``started``/``finished`` (ISO 8601), else the sum of test durations."""
    total = len(record.results)
    passed = sum(1 for r in record.results if r.verdict == "passed")
    failures = sum(1 for r in record.results if r.is_product_failure)
    infra = sum(1 for r in record.results if r.is_infra_error)
    not_run = sum(1 for r in record.results if r.verdict in ("skipped", "not-run") and r.category != "infra")
    wall = _seconds_between(record.started, record.finished)
    duration = wall if wall is not None else sum(r.duration_ms for r in record.results) / 1000
    return RunSummary(record.id, record.started, total, passed, failures, infra, not_run,
                      passed / total if total else 0.0, duration)
