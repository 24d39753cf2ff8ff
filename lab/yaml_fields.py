"""What the YAML readers of card profiles (:mod:`.profiles`) and the backend configuration
(:mod:`.backend.config`) share: the one-line error naming the field, reading and parsing the document,
and the type checks of single values.

Each reader keeps its own error type (a :class:`FieldError` subclass whose ``kind`` starts the
message: ``profile field 'pan': not 12-19 digits``, ``config field 'host': missing (in backend.yaml)``)
and says through :meth:`FieldReader.fail` how a field is named.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

import yaml

from .protocol.errors import PaylabError


class FieldError(PaylabError, ValueError):
    """A field of a YAML document is invalid. ``str()`` is one line naming the field:
    ``<kind> field '<field>': <problem>``, plus ``(in <file>)`` when the document came from a file."""

    kind = "yaml"

    def __init__(self, field_name: str, problem: str, *, source: str | None = None) -> None:
        self.field = field_name
        self.problem = problem
        self.source = source
        text = f"{self.kind} field '{field_name}': {problem}"
        super().__init__(text + (f" (in {source})" if source else ""))


def read_text(path: Path, error: type[FieldError]) -> str:
    """The file's text; ``error("(file)", ...)`` when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error("(file)", f"cannot read {path}: {exc.strerror or exc}") from None


def parse_yaml(text: str, error: type[FieldError], source: str | None) -> Any:
    """The parsed document; ``error("(document)", "not valid YAML at line N: ...")`` on a syntax error."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise error("(document)", f"not valid YAML{where}: {problem}", source=source) from None


class FieldReader:
    """Type checks of single values. ``name`` is whatever the subclass's :meth:`fail` turns into the
    field name (a full dotted name, or a key below a prefix)."""

    def fail(self, name: str, problem: str) -> NoReturn:
        raise NotImplementedError

    def check_known(self, raw: Mapping[Any, Any], allowed: set[str], prefix: str = "") -> None:
        for key in raw:
            if not isinstance(key, str) or key not in allowed:
                self.fail(f"{prefix}{key}", "unknown field (allowed: " + ", ".join(sorted(allowed)) + ")")

    def check_mapping(self, value: Any, name: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            self.fail(name, f"must be a mapping, got {type(value).__name__}")
        return value

    def check_text(self, value: Any, name: str) -> str:
        if value is None:
            self.fail(name, "missing")
        if not isinstance(value, str):
            self.fail(name, f"must be a quoted string, got {type(value).__name__} {value!r}")
        return value

    def check_integer(self, value: Any, name: str, *, low: int, high: int) -> int:
        if value is None:
            self.fail(name, "missing")
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(name, f"must be an integer, got {type(value).__name__} {value!r}")
        if not low <= value <= high:
            self.fail(name, f"{value} is outside {low}..{high}")
        return value

    def check_choice(self, value: Any, name: str, choices: tuple[str, ...]) -> str:
        if value not in choices:
            self.fail(name, f"must be one of {', '.join(choices)}, got {value!r}")
        return value
