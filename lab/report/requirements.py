"""The requirement catalogue (``fixtures/requirements.yaml``) and the decision rules.

Issue 6 "Fixtures": one id per capability of the domain brief, each with its text and the decision
rule that turns the results of the tests naming it into a verdict. A catalogue with a mistake is
refused with ``FILE:LINE: requirements[3].rule: problem`` (:mod:`paylab.lab.yaml_lines`).

Decision rules (also documented at the top of the catalogue):

* ``all-pass``: at least one test, and every test passed;
* ``all-pass-min:N``: at least ``N`` tests, and every test passed;
* ``any-fail-is-fail``: at least one test passed and no product failure; tests that did not run
  (infra error, skipped, not run) are tolerated.

A product failure always gives ``fail``; anything short of the rule without a product failure is
``inconclusive``; no test at all is ``not-covered``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..yaml_lines import LineMap, LocatedError, load_file_with_lines

DEFAULT_CATALOGUE = Path(__file__).resolve().parents[2] / "fixtures" / "requirements.yaml"
"""The bundled catalogue (``fixtures/requirements.yaml`` of the paylab checkout)."""

REQUIREMENT_ID = re.compile(r"REQ-[A-Z0-9]+(?:-[A-Z0-9]+)*-\d{2}")
RULE_KINDS = ("all-pass", "all-pass-min", "any-fail-is-fail")
_FIELDS = ("id", "title", "text", "source", "rule")


class CatalogueError(LocatedError):
    """The requirement catalogue is invalid: ``FILE:LINE: field: problem``."""


class RuleError(ValueError):
    """A decision rule string is not one of :data:`RULE_KINDS` (``all-pass-min`` needs ``:N``)."""


@dataclass(frozen=True)
class DecisionRule:
    """A parsed decision rule: ``kind`` and the minimum number of tests (1 unless ``all-pass-min:N``)."""

    kind: str
    minimum: int = 1

    @classmethod
    def parse(cls, text: str) -> DecisionRule:
        """``"all-pass"``, ``"all-pass-min:3"`` or ``"any-fail-is-fail"`` → rule; :class:`RuleError` otherwise."""
        if not isinstance(text, str):
            raise RuleError(f"must be a string, got {type(text).__name__}")
        if text in ("all-pass", "any-fail-is-fail"):
            return cls(text)
        match = re.fullmatch(r"all-pass-min:([1-9]\d{0,3})", text)
        if match:
            return cls("all-pass-min", int(match.group(1)))
        raise RuleError(f"unknown decision rule {text!r} (allowed: all-pass, all-pass-min:N, any-fail-is-fail)")

    def __str__(self) -> str:
        return f"all-pass-min:{self.minimum}" if self.kind == "all-pass-min" else self.kind


@dataclass(frozen=True)
class Requirement:
    """One catalogue entry. ``line`` is where it starts in its file (None when built in code)."""

    id: str
    title: str
    text: str
    source: str
    rule: str = "all-pass"
    line: int | None = field(default=None, compare=False)

    @property
    def decision_rule(self) -> DecisionRule:
        return DecisionRule.parse(self.rule)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "text": self.text, "source": self.source, "rule": self.rule}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Requirement:
        return cls(**{k: str(data[k]) for k in _FIELDS if k in data})


def _check_entry(entry: Any, index: int, lines: LineMap) -> Requirement:
    path = ("requirements", index)
    if not isinstance(entry, dict):
        raise lines.error(path, f"must be a mapping, got {type(entry).__name__}", CatalogueError)
    for key in entry:
        if key not in _FIELDS:
            raise lines.error((*path, key), "unknown field (allowed: " + ", ".join(_FIELDS) + ")", CatalogueError)
    values: dict[str, str] = {}
    for key in _FIELDS:
        value = entry.get(key)
        if value is None:
            raise lines.error((*path, key) if key in entry else path, f"field '{key}' missing", CatalogueError)
        if not isinstance(value, str) or not value.strip():
            raise lines.error((*path, key), f"must be a non-empty string, got {value!r}", CatalogueError)
        values[key] = value.strip()
    if not REQUIREMENT_ID.fullmatch(values["id"]):
        raise lines.error((*path, "id"), f"{values['id']!r} is not an id like REQ-CL-ONLINE-01", CatalogueError)
    try:
        DecisionRule.parse(values["rule"])
    except RuleError as exc:
        raise lines.error((*path, "rule"), str(exc), CatalogueError) from None
    return Requirement(**values, line=lines.line(path))


def parse_catalogue(document: Any, lines: LineMap) -> list[Requirement]:
    """Validate a loaded catalogue document (``version: 1``, ``requirements: [...]``)."""
    if not isinstance(document, dict):
        raise lines.error((), "the catalogue must be a mapping with 'version' and 'requirements'", CatalogueError)
    for key in document:
        if key not in ("version", "requirements"):
            raise lines.error((key,), "unknown field (allowed: requirements, version)", CatalogueError)
    if document.get("version") != 1:
        raise lines.error(("version",), f"must be 1, got {document.get('version')!r}", CatalogueError)
    entries = document.get("requirements")
    if not isinstance(entries, list) or not entries:
        raise lines.error(("requirements",), "must be a non-empty list", CatalogueError)
    seen: dict[str, int] = {}
    out = []
    for index, entry in enumerate(entries):
        req = _check_entry(entry, index, lines)
        if req.id in seen:
            raise lines.error(("requirements", index, "id"),
                              f"duplicate id {req.id} (first at entry {seen[req.id]})", CatalogueError)
        seen[req.id] = index
        out.append(req)
    return out


def load_requirements(path: Path | str | None = None) -> list[Requirement]:
    """Load and validate the catalogue (default: the bundled ``fixtures/requirements.yaml``).

    :class:`CatalogueError` (``FILE:LINE: requirements[i].field: problem``) on any mistake.
    """
    document, lines = load_file_with_lines(Path(path) if path is not None else DEFAULT_CATALOGUE, CatalogueError)
    return parse_catalogue(document, lines)
