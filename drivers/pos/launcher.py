"""Start the POS simulator as a separate process behind a pty: :class:`PosSimulatorProcess`.

``os.openpty()`` gives a master/slave pair; the slave is put in raw mode (no echo, no line discipline —
otherwise the POS would read its own frames back) and stays open in this process for the simulator's
lifetime (tooling notes, "Serial POS: pyserial": with no slave open the master reads EIO). The master fd
is inherited by the simulator (``--fd``); the ECR opens :attr:`PosSimulatorProcess.port` (``/dev/pts/N``)
with :class:`~paylab.drivers.pos.serial_pos.SerialPosTerminal`. stderr goes to a log file.
Stopped by PID: SIGTERM, then SIGKILL after a grace period.

``transport="socket"`` runs the simulator on a loopback TCP listener instead (``--listen 127.0.0.1:0``);
:attr:`PosSimulatorProcess.port` is then a ``socket://`` URL (a POS behind a serial server).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import tty
from dataclasses import asdict
from pathlib import Path
from typing import IO, Literal

from paylab.drivers.errors import PosLinkError, PosTimeout, SimulationUnavailable
from paylab.drivers.protocols.pos import PosIdentity

from .serial_pos import SerialPosTerminal
from .simulator import SimulatorConfig


class PosSimulatorProcess:
    """The simulator process; ``with PosSimulatorProcess(config) as sim: SerialPosTerminal(sim.port)``.

    ``port`` is the pty slave path (``transport="pty"``) or a ``socket://`` URL (``"socket"``)."""

    def __init__(self, config: SimulatorConfig, *, log_path: Path | None = None, ready_timeout: float = 10.0,
                 python: str = sys.executable, transport: Literal["pty", "socket"] = "pty") -> None:
        if transport not in ("pty", "socket"):
            raise ValueError(f"transport must be 'pty' or 'socket', not {transport!r}")
        self.transport = transport
        self.config = config
        self.ready_timeout = ready_timeout
        self.python = python
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if log_path is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="paylab-pos-")
            log_path = Path(self._tmp.name) / "pos-simulator.log"
        self.log_path = log_path
        self.port: str = ""
        self.identity: PosIdentity | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._master: int | None = None
        self._slave: int | None = None
        self._log: IO[bytes] | None = None
        self._config_dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self) -> PosSimulatorProcess:
        """Spawn the simulator and wait until it answers identify (:class:`SimulationUnavailable` otherwise)."""
        if self.process is not None:
            return self
        # the config holds the TEST TMK: a private directory of our own (0700), removed by stop(), never
        # beside the caller's log
        self._config_dir = tempfile.TemporaryDirectory(prefix="paylab-pos-config-")
        config_path = Path(self._config_dir.name) / "pos-simulator.json"
        fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(asdict(self.config)))
        self._log = self.log_path.open("ab")
        command = [self.python, "-m", "paylab.drivers.pos.simulator", "--config", str(config_path)]
        if self.transport == "pty":
            self._master, self._slave = os.openpty()
            tty.setraw(self._slave)
            self.port = os.ttyname(self._slave)
            self.process = subprocess.Popen(
                [*command, "--fd", str(self._master)], stdin=subprocess.DEVNULL, stdout=self._log,
                stderr=self._log, pass_fds=(self._master,), close_fds=True)
            os.close(self._master)  # the simulator holds its copy; this process keeps only the slave open
            self._master = None
        else:
            self.process = subprocess.Popen([*command, "--listen", "127.0.0.1:0"], stdin=subprocess.DEVNULL,
                                            stdout=self._log, stderr=self._log, close_fds=True)
        try:
            if self.transport == "socket":
                self.port = self._wait_listening()
            self.identity = self._wait_ready()
        except Exception:
            self.stop()
            raise
        return self

    def _wait_listening(self) -> str:
        """The ``socket://`` URL the simulator printed (``listening HOST:PORT``) once it listens."""
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            for line in self.log_tail(200).splitlines():
                if line.startswith("listening "):
                    return f"socket://{line.split()[1]}"
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        raise SimulationUnavailable("the POS simulator did not start listening", resource="socket",
                                    detail=self.log_tail())

    def _wait_ready(self) -> PosIdentity:
        deadline = time.monotonic() + self.ready_timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise SimulationUnavailable(f"the POS simulator exited with {self.process.returncode}",
                                            resource=self.port, detail=self.log_tail())
            try:
                with SerialPosTerminal(self.port, name="launcher", ack_timeout=0.3) as probe:
                    return probe.identify(timeout=2.0)
            except (PosTimeout, PosLinkError) as exc:
                last = exc
                time.sleep(0.05)
        raise SimulationUnavailable("the POS simulator did not answer identify", resource=self.port,
                                    detail=f"{last}; {self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` of the simulator's stderr."""
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, grace: float = 5.0) -> int | None:
        """Stop the process by PID (SIGTERM, SIGKILL after ``grace``); close the pty. Idempotent."""
        code = None
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=grace)
            code = self.process.returncode
            self.process = None
        for fd in (self._master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._config_dir is not None:
            self._config_dir.cleanup()
            self._config_dir = None
        return code

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> PosSimulatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["PosSimulatorProcess"]
