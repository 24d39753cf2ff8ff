"""A private OpenSSH server on loopback: the simulated rig host that :class:`.FabricRigHost` talks to.

    with ManagedSshd() as sshd:                       # root only: creates/unlocks the test user
        host = FabricRigHost("rig-a", sshd.host, sshd.port, sshd.user,
                             key_filename=sshd.client_key_path, known_hosts=sshd.known_hosts_file)

Each instance lives in its own temp dir: an ed25519 host key, a client key pair (its public half is the
only line of ``AuthorizedKeysFile``), a ``known_hosts`` pinning the host key for ``[127.0.0.1]:port``,
the config, the PID file and sshd's log. sshd runs in the foreground (``/usr/sbin/sshd -D -e -f cfg``,
absolute path as sshd requires for re-exec) under a small reaper process (our child; it reaps every
session process below it), listening on 127.0.0.1 and a free high port.

Logins are for an unprivileged user (default ``paylab-rig``), created with ``useradd -m -s /bin/sh``
when missing and given the password field ``*`` (``usermod -p '*'``): OpenSSH refuses key logins to
an account whose password field is locked (``!``) when PAM is off. Root's shell start-up files are
avoided too (they can cost 150 ms per command).

:meth:`ManagedSshd.stop` stops the listener *and* every session process under it (by PID, walking
``/proc``); :meth:`ManagedSshd.kill` does the same with SIGKILL at once, which is how a test simulates
a rig host whose sshd dies in the middle of a command.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..errors import SimulationUnavailable

__all__ = ["DEFAULT_USER", "SSHD_PATH", "ManagedSshd", "ensure_test_user"]

SSHD_PATH = Path("/usr/sbin/sshd")
PRIVSEP_DIR = Path("/run/sshd")
DEFAULT_USER = "paylab-rig"
_INSTALL_HINT = "apt-get install openssh-server"
_user_lock = threading.Lock()

# sshd runs under this tiny reaper (``python -c``): a child subreaper (prctl PR_SET_CHILD_SUBREAPER) that
# forks/execs sshd, forwards SIGTERM/SIGINT to it and reaps every process orphaned below it (sessions
# killed with their listener, their shells and commands), then exits with sshd's status once no child is
# left. Without it a killed session tree is re-parented to PID 1, which in some containers never reaps.
_REAPER = """
import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)
argv = sys.argv[1:]
pid = os.fork()
if pid == 0:
    try:
        os.execv(argv[0], argv)
    finally:
        os._exit(127)
def forward(signum, frame):
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
signal.signal(signal.SIGTERM, forward)
signal.signal(signal.SIGINT, forward)
status = 0
while True:
    try:
        done, raw = os.wait()
    except ChildProcessError:
        break
    if done == pid:
        status = os.waitstatus_to_exitcode(raw)
sys.exit(status if status >= 0 else 128 - status)
"""


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _password_field(user: str) -> str | None:
    """The user's password field in /etc/shadow (root only), or None when it cannot be read."""
    try:
        for line in Path("/etc/shadow").read_text().splitlines():
            fields = line.split(":")
            if fields and fields[0] == user and len(fields) > 1:
                return fields[1]
    except OSError:
        return None
    return None


def _admin(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
                          check=False)


def ensure_test_user(user: str = DEFAULT_USER) -> pwd.struct_passwd:
    """Create ``user`` (``useradd -m -s /bin/sh``) if missing and make sure its password field is ``*``.

    Root only; otherwise :class:`SimulationUnavailable`. Retries a few times because a parallel worker
    may hold /etc/passwd's lock (``useradd`` exit 10/16).
    """
    if os.geteuid() != 0:
        raise SimulationUnavailable(f"a private sshd for rig-host tests needs root (to create and log in as the "
                                    f"test user {user!r}); run the tests as root as CI does", resource=user)
    with _user_lock:
        last = ""
        for _attempt in range(10):
            try:
                entry = pwd.getpwnam(user)
            except KeyError:
                result = _admin("useradd", "-m", "-s", "/bin/sh", user)
                last = result.stderr.strip()
                if result.returncode not in (0, 9):  # 9: created meanwhile by another process
                    time.sleep(0.2)
                continue
            field = _password_field(user)
            if field is not None and field.startswith("!"):
                result = _admin("usermod", "-p", "*", user)
                last = result.stderr.strip()
                if result.returncode != 0:
                    time.sleep(0.2)
                continue
            return entry
    raise SimulationUnavailable(f"could not create or unlock the test user {user!r}: {last}", resource=user)


class ManagedSshd:
    """One private sshd (see the module docstring). ``start()`` returns when the port accepts."""

    def __init__(self, *, user: str = DEFAULT_USER, host: str = "127.0.0.1", start_timeout_s: float = 10.0) -> None:
        self.user = user
        self.host = host
        self.start_timeout_s = start_timeout_s
        self.port: int | None = None
        self.base_dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._host_public_line = ""

    # -- paths ----------------------------------------------------------------------------------------
    def _path(self, name: str) -> Path:
        if self.base_dir is None:
            raise SimulationUnavailable("the private sshd is not started", resource=self.name)
        return self.base_dir / name

    @property
    def name(self) -> str:
        return f"sshd@{self.host}:{self.port}" if self.port else "sshd"

    @property
    def client_key_path(self) -> Path:
        """The private key (OpenSSH format, ed25519) that logs in as :attr:`user`."""
        return self._path("client_ed25519")

    @property
    def known_hosts_file(self) -> Path:
        """A known_hosts holding exactly :meth:`known_hosts_line`."""
        return self._path("known_hosts")

    @property
    def host_public_key(self) -> str:
        """``ssh-ed25519 AAAA...`` of this server's host key."""
        return self._host_public_line

    @property
    def pid(self) -> int | None:
        """The sshd listener's PID (None when not running)."""
        if self._process is None or self._process.poll() is not None:
            return None
        children = self._descendants(self._process.pid, direct_only=True)
        return children[0] if children else None

    @property
    def log_path(self) -> Path:
        return self._path("sshd.log")

    def known_hosts_line(self) -> str:
        """``[host]:port ssh-ed25519 AAAA...`` (the known_hosts form for a non-22 port)."""
        if self.port is None:
            raise SimulationUnavailable("the private sshd is not started", resource=self.name)
        return f"[{self.host}]:{self.port} {self._host_public_line}"

    # -- life cycle -----------------------------------------------------------------------------------
    def start(self) -> ManagedSshd:
        """Create user, keys and config, start sshd, wait until the port accepts. Idempotent.

        After :meth:`kill`, ``start()`` brings the same server back (same host key, same port when free).
        """
        if self._process is not None:
            return self
        if not SSHD_PATH.is_file():
            raise SimulationUnavailable(f"{SSHD_PATH} not found: {_INSTALL_HINT}", resource="sshd")
        ensure_test_user(self.user)
        PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)  # install -d -m0755 /run/sshd
        PRIVSEP_DIR.chmod(0o755)
        try:
            if self.base_dir is None:
                self.base_dir = Path(tempfile.mkdtemp(prefix="paylab-sshd-"))
                self.base_dir.chmod(0o755)  # sshd reads AuthorizedKeysFile as the user
                self._write_keys()
            last = ""
            for _attempt in range(3):  # a probed free port can be taken before sshd binds it
                self.port = self.port or _free_port(self.host)
                last = self._launch()
                if not last:
                    self.known_hosts_file.write_text(self.known_hosts_line() + "\n")
                    return self
                self.port = None
            raise SimulationUnavailable(f"sshd did not start: {last}", resource=self.name)
        except BaseException:
            self.stop()
            raise

    def _write_keys(self) -> None:
        host_key = Ed25519PrivateKey.generate()
        self._write_private(self._path("host_ed25519"), host_key)
        self._host_public_line = self._public_line(host_key)
        client_key = Ed25519PrivateKey.generate()
        self._write_private(self.client_key_path, client_key)
        authorized = self._path("authorized_keys")
        authorized.write_text(self._public_line(client_key) + " paylab-test-client\n")
        authorized.chmod(0o644)

    @staticmethod
    def _write_private(path: Path, key: Ed25519PrivateKey) -> None:
        data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                 serialization.NoEncryption())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)

    @staticmethod
    def _public_line(key: Ed25519PrivateKey) -> str:
        return key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                             serialization.PublicFormat.OpenSSH).decode()

    def _config_text(self) -> str:
        return "\n".join([
            f"ListenAddress {self.host}",
            f"Port {self.port}",
            f"HostKey {self._path('host_ed25519')}",
            f"PidFile {self._path('sshd.pid')}",
            f"AuthorizedKeysFile {self._path('authorized_keys')}",
            f"AllowUsers {self.user}",
            "PermitRootLogin no",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "PrintMotd no",
            "PrintLastLog no",
            "X11Forwarding no",
            "AllowAgentForwarding no",
            "AllowTcpForwarding no",
            "LoginGraceTime 20",
            "Subsystem sftp internal-sftp",
            "LogLevel VERBOSE",
            "",
        ])

    def _launch(self) -> str:
        """Start sshd on :attr:`port`; '' once the port accepts, else why it failed (process reaped)."""
        config = self._path("sshd_config")
        config.write_text(self._config_text())
        if self._log is None:
            self._log = self.log_path.open("ab")
        self._process = subprocess.Popen([sys.executable, "-c", _REAPER, str(SSHD_PATH), "-D", "-e", "-f",
                                          str(config)], stdin=subprocess.DEVNULL, stdout=self._log,
                                         stderr=self._log, start_new_session=True)
        atexit.register(self.stop)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                atexit.unregister(self.stop)
                return self._log_tail() or "sshd exited at start"
            try:
                with socket.create_connection((self.host, int(self.port or 0)), timeout=0.5):
                    return ""
            except OSError:
                time.sleep(0.02)
        self._terminate(signal.SIGKILL)
        return f"port {self.port} did not accept within {self.start_timeout_s:.0f} s"

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except (OSError, SimulationUnavailable):
            return ""
        return lines[-1] if lines else ""

    @staticmethod
    def _descendants(root: int, *, direct_only: bool = False) -> list[int]:
        """PIDs of every process under ``root`` (listener, sessions, user shells, their commands)."""
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                state, ppid = fields[0], int(fields[1])
            except (OSError, IndexError, ValueError):
                continue
            if state != "Z":
                children.setdefault(ppid, []).append(int(entry.name))
        if direct_only:
            return sorted(children.get(root, []))
        found: list[int] = []
        stack = [root]
        while stack:
            for child in children.get(stack.pop(), []):
                found.append(child)
                stack.append(child)
        return found

    def _signal_tree(self, sig: signal.Signals) -> None:
        assert self._process is not None
        for pid in self._descendants(self._process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def _terminate(self, sig: signal.Signals) -> None:
        """Signal every process under the reaper; the reaper reaps them and exits when none is left."""
        process = self._process
        if process is None:
            return
        try:
            for attempt_sig in (sig, signal.SIGKILL):
                if process.poll() is not None:
                    break
                self._signal_tree(attempt_sig)  # a SIGTERM'ed listener does not end its sessions: the tree
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=5)
            if process.poll() is None:
                process.kill()
                process.wait(timeout=5)
        finally:
            self._process = None
            atexit.unregister(self.stop)

    def kill(self) -> None:
        """SIGKILL the listener and every session process at once: established connections drop."""
        self._terminate(signal.SIGKILL)

    def stop(self) -> None:
        """Stop sshd and its sessions by PID and delete the temp dir. Safe to call twice."""
        self._terminate(signal.SIGTERM)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)
        self.base_dir = None
        self.port = None

    def __enter__(self) -> ManagedSshd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"ManagedSshd(user={self.user!r}, host={self.host!r}, port={self.port}, pid={self.pid})"
