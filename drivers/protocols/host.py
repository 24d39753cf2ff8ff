"""Rig host protocol: a machine that carries a rig's hardware, reached to run commands and move files."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CommandResult:
    """What a command on a rig host did."""

    command: str
    exit_status: int
    stdout: str
    stderr: str
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


class RigHostProtocol(abc.ABC):
    """Run a command, put/get files. Errors: :class:`RigHostUnreachable`, :class:`RigCommandFailed`."""

    name: str

    @abc.abstractmethod
    def run(self, command: str, *, timeout: float = 60.0, check: bool = True,
            env: dict[str, str] | None = None) -> CommandResult:
        """Run ``command`` in the host's shell; raises :class:`RigCommandFailed` on a non-zero exit
        when ``check``; :class:`RigHostUnreachable` when the host cannot be reached or the link drops."""

    @abc.abstractmethod
    def put(self, local: Path, remote: str) -> None:
        """Copy a local file to ``remote`` on the host."""

    @abc.abstractmethod
    def get(self, remote: str, local: Path) -> None:
        """Copy ``remote`` from the host to a local file."""

    def close(self) -> None:
        """Close the connection (idempotent)."""
        return None

    def __enter__(self) -> RigHostProtocol:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
