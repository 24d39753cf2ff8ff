"""A rig host reached over ssh with fabric: commands, SFTP file transfer, a health probe, host keys pinned.

Security: fabric's :class:`~fabric.Connection` accepts unknown host keys by default (``AutoAddPolicy``).
Here the host key must be in the inventory's ``known_hosts`` (RFC 4253 §8 server authentication is
only worth something when the key is checked): that file is loaded and paramiko's ``RejectPolicy``
refuses everything else. No ssh config file, no agent, no ``~/.ssh`` key look-up: the inventory names
the one key file to use, so a test behaves the same on every machine.

Errors (``drivers/errors.py``), each naming the host (``name user@host:port``):

* unknown or changed host key → :class:`HostKeyRejected`;
* refused, timed out, authentication failed, link dropped (also mid-command: the channel closes when
  the transport dies, the run returns at once) → :class:`RigHostUnreachable`. A link that goes silent
  without closing (host frozen, network partition) is found when the command's timeout expires and a
  ``true`` probe on a new channel also fails (bounded by command timeout + connect timeout);
* non-zero exit with ``check=True`` → :class:`RigCommandFailed` (exit status, stderr tail); a command
  that outlives its timeout on a host that still answers → :class:`RigCommandFailed` (status None).
  The host enforces the limit too: every command runs under coreutils ``timeout`` (limit + 1 s, then
  KILL 2 s later), because closing the channel alone leaves a pty-less command running on the host.

:func:`run_on_hosts` runs one command on several hosts in parallel threads and returns a result or the
error for every host; one slow or dead host neither hangs nor hides the others (each run is bounded
by its connect and command timeouts).
"""

from __future__ import annotations

import logging
import math
import re
import shlex
import socket
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import paramiko
from fabric import Config, Connection
from invoke.exceptions import CommandTimedOut, ThreadException
from paramiko.config import SSHConfig

from ..errors import DriverError, HostKeyRejected, RigCommandFailed, RigHostUnreachable
from ..protocols.host import CommandResult, RigHostProtocol

__all__ = ["FabricRigHost", "run_on_hosts"]

log = logging.getLogger(__name__)

STDERR_TAIL_CHARS = 500
REMOTE_GRACE_S = 1  # the remote ``timeout`` fires this long after the local one, so the local one reports
_TIMED_OUT_STATUSES = frozenset({-1, 124, 137})  # channel closed; coreutils timeout's TERM / KILL statuses
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LINK_ERRORS: tuple[type[BaseException], ...] = (paramiko.SSHException, EOFError, OSError, socket.timeout,
                                                 ThreadException)


class _UnknownHostKey(paramiko.SSHException):
    """Raised by :class:`_PinnedPolicy` (carries the key the server offered)."""

    def __init__(self, hostname: str, key: paramiko.PKey) -> None:
        self.hostname = hostname
        self.key = key
        super().__init__(f"host key for {hostname} not in known_hosts")


class _PinnedPolicy(paramiko.RejectPolicy):
    """paramiko's RejectPolicy, raising an exception that keeps the offered key's fingerprint."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise _UnknownHostKey(hostname, key)


def _fingerprint(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.fingerprint}"


def _with_env(command: str, env: dict[str, str] | None) -> str:
    """``export K='v' ...; command`` (fabric's own inline env does not quote values)."""
    if not env:
        return command
    for key in env:
        if not _ENV_NAME.fullmatch(key):
            raise ValueError(f"environment variable name {key!r} is not a shell identifier")
    exports = " ".join(f"{key}={shlex.quote(str(value))}" for key, value in sorted(env.items()))
    return f"export {exports}; {command}"


def _with_remote_limit(command: str, limit_s: int) -> str:
    """``timeout -k 2 <limit> /bin/sh -c '<command>'``: the rig host itself ends a command that outlives
    its limit. Closing the ssh channel (fabric's timeout) does not: with no pty there is no SIGHUP, and the
    command would keep running on the host. coreutils ``timeout`` runs it in its own process group and
    signals the whole group (TERM, then KILL after 2 s)."""
    return f"timeout -k 2 {limit_s} /bin/sh -c {shlex.quote(command)}"


def _tail(text: str, limit: int = STDERR_TAIL_CHARS) -> str:
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]


class FabricRigHost(RigHostProtocol):
    """One rig host over ssh (see the module docstring). Connects lazily, reconnects after a drop."""

    def __init__(self, name: str, host: str, port: int, user: str, *, key_filename: str | Path,
                 known_hosts: Path, connect_timeout: float = 5.0, command_timeout: float = 60.0,
                 keepalive_s: float = 5.0) -> None:
        self.name = name
        self.host = host
        self.port = int(port)
        self.user = user
        self.key_filename = str(key_filename)
        self.known_hosts = Path(known_hosts)
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.keepalive_s = keepalive_s
        self._conn: Connection | None = None
        self._lock = threading.Lock()

    @property
    def resource(self) -> str:
        return f"{self.name} {self.user}@{self.host}:{self.port}"

    # -- connection -----------------------------------------------------------------------------------
    def _new_connection(self) -> Connection:
        config = Config(lazy=True, ssh_config=SSHConfig(), overrides={"load_ssh_configs": False})
        conn = Connection(self.host, user=self.user, port=self.port, config=config, forward_agent=False,
                          connect_kwargs={
                              "key_filename": [self.key_filename], "look_for_keys": False, "allow_agent": False,
                              "timeout": self.connect_timeout, "banner_timeout": self.connect_timeout,
                              "auth_timeout": self.connect_timeout, "channel_timeout": self.connect_timeout,
                          })
        client = conn.client
        client.set_missing_host_key_policy(_PinnedPolicy())
        if not self.known_hosts.is_file():
            raise HostKeyRejected("known_hosts file missing: no host key is pinned", resource=self.resource,
                                  detail=str(self.known_hosts))
        client.load_host_keys(str(self.known_hosts))
        return conn

    def _connected(self) -> Connection:
        """The open connection, (re)connecting when needed; typed errors on failure."""
        with self._lock:
            conn = self._conn
            if conn is not None and conn.is_connected:
                return conn
            if conn is not None:
                self._drop()
            conn = self._new_connection()
            try:
                conn.open()
            except BaseException as exc:
                conn.client.close()
                raise self._connect_error(exc) from exc
            if conn.transport is not None and self.keepalive_s > 0:
                conn.transport.set_keepalive(max(1, math.ceil(self.keepalive_s)))
            self._conn = conn
            return conn

    def _connect_error(self, exc: BaseException) -> BaseException:
        if isinstance(exc, _UnknownHostKey):
            return HostKeyRejected("host key is not pinned in known_hosts (refused)", resource=self.resource,
                                   detail=f"offered {_fingerprint(exc.key)}; known_hosts {self.known_hosts}")
        if isinstance(exc, paramiko.BadHostKeyException):
            return HostKeyRejected("host key changed (refused)", resource=self.resource,
                                   detail=f"offered {_fingerprint(exc.key)}, pinned {_fingerprint(exc.expected_key)}")
        if isinstance(exc, paramiko.AuthenticationException):
            return RigHostUnreachable("ssh authentication failed", resource=self.resource,
                                      detail=f"key {self.key_filename}: {exc}")
        if isinstance(exc, _LINK_ERRORS):
            return RigHostUnreachable("cannot connect", resource=self.resource,
                                      detail=f"{type(exc).__name__}: {exc}".rstrip(": "))
        return exc

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()  # SFTP session, then the client when fabric still sees it connected
            except Exception as exc:
                log.debug("%s: closing a broken connection: %s", self.resource, exc)
            finally:
                conn.client.close()  # idempotent; also when the transport already died

    def _link_alive(self, conn: Connection) -> bool:
        transport = conn.client.get_transport()
        return transport is not None and transport.is_active()

    def _lost(self, what: str, exc: BaseException | None = None) -> RigHostUnreachable:
        with self._lock:
            self._drop()
        detail = f"{type(exc).__name__}: {exc}" if exc is not None else None
        return RigHostUnreachable(f"ssh link lost (dropped or not answering) during {what}",
                                  resource=self.resource, detail=detail)

    # -- protocol -------------------------------------------------------------------------------------
    def run(self, command: str, *, timeout: float | None = None, check: bool = True,
            env: dict[str, str] | None = None) -> CommandResult:
        """Run ``command`` with the user's ``/bin/sh``; ``env`` is exported inline (``export K='V';``, values
        shell-quoted) so sshd's ``AcceptEnv`` does not matter. ``timeout`` defaults to ``command_timeout``."""
        limit = self.command_timeout if timeout is None else timeout
        local_limit = max(1, math.ceil(limit))
        wire_command = _with_remote_limit(_with_env(command, env), local_limit + REMOTE_GRACE_S)
        conn = self._connected()
        start = time.monotonic()
        try:
            result = conn.run(wire_command, hide=True, warn=True, in_stream=False, pty=False,
                              timeout=local_limit)
        except CommandTimedOut as exc:
            if not self._link_alive(conn) or self._probe_fails():
                raise self._lost(f"{command!r}", exc) from exc
            raise RigCommandFailed(f"command did not finish within {limit:g} s", resource=self.resource,
                                   detail=command, exit_status=None,
                                   stderr=_tail(exc.result.stderr or "")) from exc
        except _LINK_ERRORS as exc:
            raise self._lost(f"{command!r}", exc) from exc
        duration = time.monotonic() - start
        if not self._link_alive(conn):  # the channel closed because the transport died
            raise self._lost(f"{command!r} (after {duration:.1f} s)")
        if int(result.exited) in _TIMED_OUT_STATUSES and duration >= local_limit - 0.05:
            # invoke's timer closed the channel a moment before its timeout check ran (-1, seen under load),
            # or the remote ``timeout`` wrapper ended the command first (124/137): stopped by the timeout
            if self._probe_fails():
                raise self._lost(f"{command!r} (after {duration:.1f} s)")
            raise RigCommandFailed(f"command did not finish within {limit:g} s", resource=self.resource,
                                   detail=command, exit_status=None, stderr=_tail(result.stderr or ""))
        outcome = CommandResult(command=command, exit_status=int(result.exited), stdout=result.stdout,
                                stderr=result.stderr, duration_s=duration)
        if check and not outcome.ok:
            status = "killed by a signal (no exit status)" if outcome.exit_status == -1 else \
                f"exit status {outcome.exit_status}"
            raise RigCommandFailed(f"command failed: {status}", resource=self.resource, detail=command,
                                   exit_status=outcome.exit_status, stderr=_tail(outcome.stderr))
        return outcome

    def _probe_fails(self) -> bool:
        """True when a bounded ``true`` on a new channel fails. Never re-enters :meth:`run` (whose timeout
        path calls this probe), so a silent host costs one probe timeout, not an unbounded recursion."""
        probe_limit = max(1, math.ceil(min(self.connect_timeout, 5)))
        try:
            conn = self._connected()
            result = conn.run(_with_remote_limit("true", probe_limit + REMOTE_GRACE_S), hide=True, warn=True,
                              in_stream=False, pty=False, timeout=probe_limit)
        except (CommandTimedOut, DriverError, *_LINK_ERRORS) as exc:
            log.debug("%s: probe failed: %s", self.resource, type(exc).__name__)
            return True
        return int(result.exited) != 0 or not self._link_alive(conn)

    def health(self, *, timeout: float | None = None) -> float:
        """Round trip of ``true`` in milliseconds (connecting first if needed); typed errors as :meth:`run`."""
        start = time.perf_counter()
        self.run("true", timeout=self.connect_timeout if timeout is None else timeout, check=True)
        return (time.perf_counter() - start) * 1000.0

    def _sftp(self) -> paramiko.SFTPClient:
        conn = self._connected()
        try:
            sftp = conn.sftp()
        except _LINK_ERRORS as exc:
            raise self._lost("SFTP start", exc) from exc
        sftp.get_channel().settimeout(self.command_timeout)
        return sftp

    def put(self, local: Path, remote: str) -> None:
        """Copy ``local`` to ``remote`` (SFTP; a relative path is under the user's home)."""
        self._transfer("put", str(local), remote)

    def get(self, remote: str, local: Path) -> None:
        """Copy ``remote`` to ``local`` (SFTP)."""
        self._transfer("get", remote, str(local))

    def _transfer(self, direction: str, source: str, target: str) -> None:
        if direction == "put" and not Path(source).is_file():
            raise FileNotFoundError(f"{self.resource}: SFTP put: local file {source} missing")
        sftp = self._sftp()
        try:
            if direction == "put":
                sftp.put(source, target)
            else:
                sftp.get(source, target)
        except BaseException as exc:
            if direction == "get":  # paramiko creates the local file before it opens the remote one
                Path(target).unlink(missing_ok=True)
            if isinstance(exc, FileNotFoundError | PermissionError):
                why = "no such file" if isinstance(exc, FileNotFoundError) else "permission denied"
                raise RigCommandFailed(f"SFTP {direction}: {why}", resource=self.resource,
                                       detail=f"{source} -> {target}") from exc
            if isinstance(exc, _LINK_ERRORS):
                if self._conn is not None and self._link_alive(self._conn):
                    raise RigCommandFailed(f"SFTP {direction} failed: {exc}", resource=self.resource,
                                           detail=f"{source} -> {target}") from exc
                raise self._lost(f"SFTP {direction}", exc) from exc
            raise

    def close(self) -> None:
        """Close SFTP and the ssh connection (idempotent)."""
        with self._lock:
            self._drop()

    def __repr__(self) -> str:
        return f"FabricRigHost({self.resource!r})"


def run_on_hosts(hosts: Sequence[RigHostProtocol], command: str, *, timeout: float | None = None,
                 check: bool = True, env: dict[str, str] | None = None,
                 max_workers: int = 16) -> dict[str, CommandResult | DriverError]:
    """Run ``command`` on every host in parallel; ``{host.name: CommandResult or the DriverError}``.

    Every host gets an entry. An unexpected (non-driver) exception on one host is wrapped in
    :class:`RigHostUnreachable` for that host so the others' results are still returned.
    """
    names = [host.name for host in hosts]
    if len(set(names)) != len(names):
        raise ValueError(f"run_on_hosts: host names must be unique, got {names}")
    if not hosts:
        return {}

    def one(host: RigHostProtocol) -> CommandResult | DriverError:
        kwargs: dict[str, Any] = {"check": check, "env": env}
        if timeout is not None:
            kwargs["timeout"] = timeout
        try:
            return host.run(command, **kwargs)
        except DriverError as exc:
            return exc
        except Exception as exc:
            return RigHostUnreachable(f"unexpected {type(exc).__name__} while running a command",
                                      resource=host.name, detail=str(exc))

    with ThreadPoolExecutor(max_workers=min(max_workers, len(hosts)), thread_name_prefix="rig-host") as pool:
        outcomes = list(pool.map(one, hosts))
    return dict(zip(names, outcomes, strict=True))
