"""YAML documents that remember where every value came from: errors name the file, line and field.

The rig inventory, campaign files and the requirement catalogue are written by hand; a mistake must
be refused before anything runs with ``FILE:LINE: dotted.field[0].name: what is wrong``. PyYAML's
composer keeps a start mark on every node; :func:`load_with_lines` builds the plain Python value
(safe types only) and a :class:`LineMap` from field paths to 1-based line numbers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .protocol.errors import PaylabError

PathKey = tuple[str | int, ...]


def field_name(path: Iterable[str | int]) -> str:
    """``("rigs", "bench-1", "readers", 0, "pattern")`` → ``rigs.bench-1.readers[0].pattern``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(document)"


class LocatedError(PaylabError, ValueError):
    """A value in a YAML file is wrong: ``str()`` is ``FILE:LINE: field: problem`` (one line)."""

    def __init__(self, source: str, line: int | None, field_path: str, problem: str) -> None:
        self.source = source
        self.line = line
        self.field = field_path
        self.problem = problem
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {field_path}: {problem}")


@dataclass
class LineMap:
    """Line numbers (1-based) of every mapping key / sequence item of one document."""

    source: str
    lines: dict[PathKey, int] = field(default_factory=dict)

    def line(self, path: PathKey) -> int | None:
        """The line of ``path``, or of its closest ancestor that has one."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)

    def error(self, path: PathKey, problem: str, error: type[LocatedError] = LocatedError) -> LocatedError:
        """An error of type ``error`` located at ``path``."""
        return error(self.source, self.line(path), field_name(path), problem)


def _build(node: yaml.Node, path: PathKey, lines: dict[PathKey, int], constructor: yaml.SafeLoader) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = constructor.construct_object(key_node, deep=True)
            if isinstance(key, list | dict):
                raise LocatedError(constructor.name, key_node.start_mark.line + 1, field_name(path),
                                   "a mapping key must be a scalar")
            child = (*path, key if isinstance(key, int | str) else str(key))
            lines[child] = key_node.start_mark.line + 1
            if key in out:
                raise LocatedError(constructor.name, key_node.start_mark.line + 1, field_name(child),
                                   "duplicate key")
            out[key] = _build(value_node, child, lines, constructor)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            child = (*path, index)
            lines[child] = item.start_mark.line + 1
            items.append(_build(item, child, lines, constructor))
        return items
    return constructor.construct_object(node, deep=True)


def load_with_lines(text: str, source: str = "<string>",
                    error: type[LocatedError] = LocatedError) -> tuple[Any, LineMap]:
    """Parse one YAML document (safe types; anchors/aliases allowed) → ``(value, LineMap)``.

    Syntax errors become ``error`` naming the line; duplicate keys are refused (PyYAML would
    silently keep the last)."""
    loader = yaml.SafeLoader(text)
    loader.name = source
    try:
        node = loader.get_single_node()
        lines: dict[PathKey, int] = {}
        value = None if node is None else _build(node, (), lines, loader)
    except LocatedError as exc:
        raise error(exc.source, exc.line, exc.field, exc.problem) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise error(source, mark.line + 1 if mark else None, "(document)", f"not valid YAML: {problem}") from None
    finally:
        loader.dispose()
    return value, LineMap(source, lines)


def load_file_with_lines(path: Path, error: type[LocatedError] = LocatedError) -> tuple[Any, LineMap]:
    """:func:`load_with_lines` of a file; an unreadable file is ``error`` naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(str(path), None, "(file)", f"cannot read: {exc.strerror or exc}") from None
    return load_with_lines(text, str(path), error)
