"""A paylab-managed private pcscd with vsmartcard vpcd readers (no hardware, no root needed).

How it is isolated from the system's pcscd (pcsc-lite 1.9.x, tooling notes "PC/SC with no hardware"):

* socket activation (systemd's protocol, ``sd_listen_fds``): paylab creates the unix socket in a
  private temp dir and hands it to pcscd as fd 3 with ``LISTEN_FDS=1`` and ``LISTEN_PID`` equal to
  pcscd's own pid (a ``/bin/sh`` wrapper sets ``LISTEN_PID=$$`` and ``exec``s pcscd, so the pid
  is the same). Clients find it through ``PCSCLITE_CSOCK_NAME`` — which the pcsc-lite client reads
  ONCE per process, on its first call: hence :meth:`ManagedPcscd.for_process`;
* ``pcscd --foreground --config DIR``: DIR holds one ``reader.conf`` file with N vpcd entries, each
  with its OWN copy of ``libifdvpcd.so`` (the driver keeps state per slot number; a shared file
  crosses readers). Each entry gives two readers, ``NAME 00 00`` on PORT and ``NAME 00 01`` on
  PORT+1. pcscd 1.9.9 does NOT number entries that share a FRIENDLYNAME (it lists duplicates), so
  every entry gets its own: ``paylab vpcd A``, ``paylab vpcd B``... and ``paylab vpcd CL A``...;
* vpcd LISTENS on ``0.0.0.0:PORT`` (the card connects to it). Ports are chosen free at start; an
  entry whose port is taken fails to load, so readiness = every port listened on BY THIS pcscd
  (``/proc/net/tcp`` inode owned by the pid) and, when this process's PC/SC client points at it,
  every reader listed by ``SCardListReaders``.

Note: vpcd listens on all interfaces; on a networked lab machine, firewall the chosen ports.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import shutil
import signal
import socket
import stat
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from string import ascii_uppercase
from typing import Any, ClassVar

from paylab.drivers.errors import ReaderUnavailable, SimulationUnavailable

APT_PACKAGES = "pcscd vsmartcard-vpcd libpcsclite-dev"
INSTALL_HINT = f"apt-get install -y --no-install-recommends {APT_PACKAGES}"
PCSCD_CANDIDATES = ("/usr/sbin/pcscd", "/usr/local/sbin/pcscd")
VPCD_CANDIDATES = (
    "/usr/lib/pcsc/drivers/serial/libifdvpcd.so",
    "/usr/local/lib/pcsc/drivers/serial/libifdvpcd.so",
)
LIBPCSCLITE_CANDIDATES = (
    "/usr/include/PCSC/winscard.h",
    "/usr/local/include/PCSC/winscard.h",
)
DEFAULT_FRIENDLY_NAME = "paylab vpcd"
CONTACTLESS_SUFFIX = " CL"
MAX_READERS = 16          # pcsc-lite PCSCLITE_MAX_READERS_CONTEXTS
SLOTS_PER_ENTRY = 2       # vpcd: "NAME 00 00" on PORT, "NAME 00 01" on PORT+1
_TCP_LISTEN = "0A"


@dataclass(frozen=True)
class VpcdSlot:
    """One vpcd reader: the TCP port a card connects to and the PC/SC reader name it appears as."""

    port: int
    reader_name: str
    contactless: bool = False
    host: str = "127.0.0.1"

    @property
    def interface(self) -> str:
        """The card interface a bridge on this slot presents: ``contact`` or ``contactless``."""
        return "contactless" if self.contactless else "contact"


@dataclass(frozen=True)
class Installation:
    """Where the installed pieces are."""

    pcscd: str
    vpcd_library: str


def check_installed() -> Installation:
    """Find pcscd and the vpcd driver; :class:`SimulationUnavailable` naming the apt packages otherwise."""
    pcscd = shutil.which("pcscd") or next((p for p in PCSCD_CANDIDATES if os.access(p, os.X_OK)), None)
    vpcd = next((p for p in VPCD_CANDIDATES if os.path.exists(p)), None)
    missing = [what for what, found in (("pcscd", pcscd), ("vsmartcard-vpcd", vpcd)) if not found]
    try:
        import smartcard.scard  # noqa: F401  (pyscard needs libpcsclite at import time)
    except ImportError as exc:
        missing.append(f"libpcsclite-dev (pyscard: {exc})")
    if missing:
        raise SimulationUnavailable(
            f"the simulated PC/SC rig needs {', '.join(missing)}: run `{INSTALL_HINT}`",
            resource="pcscd")
    assert pcscd is not None
    assert vpcd is not None
    return Installation(pcscd=pcscd, vpcd_library=os.path.realpath(vpcd))


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("0.0.0.0", port))  # vpcd binds all interfaces: probe the same
        except OSError:
            return False
    return True


def _free_port_pairs(count: int, avoid: set[int]) -> list[int]:
    """``count`` base ports P with P and P+1 both free (vpcd's two slots), none in ``avoid``."""
    found: list[int] = []
    for _ in range(200):
        if len(found) == count:
            return found
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("0.0.0.0", 0))
            base = probe.getsockname()[1]
        if base + 1 > 65535 or {base, base + 1} & avoid:
            continue
        if _port_free(base + 1) and _port_free(base):
            found.append(base)
            avoid |= {base, base + 1}
    raise SimulationUnavailable(f"could not find {count} free TCP port pairs for vpcd", resource="pcscd")


def _listening_inodes(ports: set[int]) -> dict[int, set[str]]:
    """Socket inodes listening on each of ``ports`` (Linux ``/proc/net/tcp`` and ``tcp6``)."""
    found: dict[int, set[str]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) < 10 or cols[3] != _TCP_LISTEN:
                continue
            port = int(cols[1].rsplit(":", 1)[1], 16)
            if port in ports:
                found.setdefault(port, set()).add(cols[9])
    return found


def _socket_inodes_of(pid: int) -> set[str]:
    inodes: set[str] = set()
    fd_dir = f"/proc/{pid}/fd"
    with contextlib.suppress(OSError):
        for fd in os.listdir(fd_dir):
            with contextlib.suppress(OSError):
                target = os.readlink(f"{fd_dir}/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    return inodes


def _private_dir(directory: str) -> None:
    """Make sure ``directory`` exists; one created here is 0700. A directory that had to be created but
    turns out to belong to another user (created by someone else in between) is refused."""
    if os.path.isdir(directory):
        return
    os.makedirs(directory, mode=0o700, exist_ok=True)
    info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise SimulationUnavailable("pcscd socket directory is not ours (refused)", resource="pcscd",
                                    detail=f"{directory}: owner uid {info.st_uid}, we are {os.getuid()}")


class ManagedPcscd:
    """A private pcscd serving ``readers`` contact and ``contactless_readers`` contactless vpcd slots.

    Slot counts are rounded up to whole vpcd entries (2 readers each); at most 16 readers in all.
    Contact readers are named ``paylab vpcd A 00 00``, ``paylab vpcd A 00 01``, ``paylab vpcd B 00 00``...,
    contactless ones ``paylab vpcd CL A 00 00``... (glob ``paylab vpcd ? 00 *`` / ``paylab vpcd CL *``).
    ``start()``/``stop()``, ``kill()`` (crash: SIGKILL, the socket goes away), ``restart()``
    (respawn on the SAME socket path and ports), context manager. Every wait is bounded.
    """

    _process_instance: ClassVar[ManagedPcscd | None] = None
    _process_socket_path: ClassVar[str | None] = None
    _process_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, readers: int = 2, contactless_readers: int = 0, *,
                 friendly_name: str = DEFAULT_FRIENDLY_NAME, start_timeout: float = 10.0,
                 socket_path: str | None = None, debug: bool = False) -> None:
        if readers < 0 or contactless_readers < 0 or readers + contactless_readers == 0:
            raise ValueError("ask for at least one reader")
        self.contact_entries = math.ceil(readers / SLOTS_PER_ENTRY)
        self.contactless_entries = math.ceil(contactless_readers / SLOTS_PER_ENTRY)
        if (self.contact_entries + self.contactless_entries) * SLOTS_PER_ENTRY > MAX_READERS:
            raise ValueError(f"pcscd serves at most {MAX_READERS} readers "
                             f"({readers} contact + {contactless_readers} contactless asked, 2 per vpcd entry)")
        self.friendly_name = friendly_name
        self.start_timeout = start_timeout
        self.debug = debug
        self._requested_socket_path = socket_path
        self._install: Installation | None = None
        self._tmp: str | None = None
        self._pid: int | None = None
        self._slots: list[VpcdSlot] = []
        self._free: deque[VpcdSlot] = deque()
        self._lock = threading.Lock()
        self.started_in: float | None = None
        """Seconds from spawning pcscd to every reader visible (last start/restart)."""

    # -- per-process shared instance ---------------------------------------------------------------
    @classmethod
    def for_process(cls, readers: int = 8, contactless_readers: int = 4, **kwargs: Any) -> ManagedPcscd:
        """The process's shared pcscd, started on first use; sets ``PCSCLITE_CSOCK_NAME`` for this
        process. Call it before ANY PC/SC call in the process (pcsc-lite reads the variable once).
        Counts are minimums: a later call asking for more than the running instance has raises
        :class:`ValueError`. A killed instance is restarted (same ports and reader names); after
        :meth:`stop`, the next call starts a new pcscd on the same socket path (new ports). The socket's
        private directory is kept until the process exits (``atexit``), so nobody can slip one of their
        own in between.
        """
        with cls._process_lock:
            inst = cls._process_instance
            if inst is not None and inst._tmp is not None:        # started and not stopped
                have_contact = sum(not s.contactless for s in inst._slots)
                have_cl = sum(s.contactless for s in inst._slots)
                if readers > have_contact or contactless_readers > have_cl:
                    raise ValueError(f"the process pcscd has {have_contact} contact + {have_cl} contactless "
                                     f"readers; ask for the largest counts on the first for_process() call")
                if not inst.running:                              # killed (crash test): same ports back
                    inst.restart()
                return inst
            path = cls._reserve_locked()
            inst = cls(readers, contactless_readers, socket_path=path, **kwargs)
            os.environ["PCSCLITE_CSOCK_NAME"] = path
            inst.start()
            cls._process_instance = inst
            return inst

    @classmethod
    def reserve_process_socket(cls) -> str:
        """Choose this process's pcscd socket path and set ``PCSCLITE_CSOCK_NAME`` now, without
        starting pcscd. Call it as early as possible (e.g. at conftest import): a PC/SC call made
        before it would pin the process to the system socket for good. Idempotent; returns the path."""
        with cls._process_lock:
            return cls._reserve_locked()

    @classmethod
    def _reserve_locked(cls) -> str:
        path = cls._process_socket_path
        if path is None:
            path = os.path.join(tempfile.mkdtemp(prefix="paylab-pcscd-sock-"), "pcscd.comm")
            cls._process_socket_path = path
            atexit.register(cls._stop_process_instance)
        os.environ["PCSCLITE_CSOCK_NAME"] = path
        return path

    @classmethod
    def _stop_process_instance(cls) -> None:
        if cls._process_instance is not None:
            cls._process_instance.stop()
        path = cls._process_socket_path
        if path is not None:
            shutil.rmtree(os.path.dirname(path), ignore_errors=True)

    @classmethod
    def process_instance(cls) -> ManagedPcscd | None:
        """The shared instance if one was started (running or not)."""
        return cls._process_instance

    # -- properties --------------------------------------------------------------------------------
    @property
    def socket_path(self) -> str:
        """The unix socket clients reach this pcscd on (``PCSCLITE_CSOCK_NAME``)."""
        if self._requested_socket_path is None:
            raise SimulationUnavailable("pcscd not started yet", resource="pcscd")
        return self._requested_socket_path

    @property
    def pid(self) -> int | None:
        """pcscd's pid while running."""
        return self._pid

    @property
    def running(self) -> bool:
        """True while the pcscd process is alive."""
        if self._pid is None:
            return False
        try:
            done, _ = os.waitpid(self._pid, os.WNOHANG)
        except ChildProcessError:
            return False
        if done:
            self._pid = None
            return False
        return True

    @property
    def slots(self) -> list[VpcdSlot]:
        """Every vpcd slot of this pcscd, contact ones first."""
        return list(self._slots)

    @property
    def reader_names(self) -> list[str]:
        """The PC/SC reader names this pcscd serves."""
        return [s.reader_name for s in self._slots]

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for an external client (pcsc_scan, opensc-tool, a script) of this pcscd."""
        env = dict(os.environ if base is None else base)
        env["PCSCLITE_CSOCK_NAME"] = self.socket_path
        return env

    def describe(self) -> dict[str, Any]:
        """What an engineer needs to point their own tools here (``paylab rigs up sim`` prints it)."""
        return {
            "socket_path": self.socket_path,
            "env": {"PCSCLITE_CSOCK_NAME": self.socket_path},
            "pid": self._pid,
            "readers": [{"name": s.reader_name, "vpcd_port": s.port, "contactless": s.contactless}
                        for s in self._slots],
        }

    # -- slots -------------------------------------------------------------------------------------
    def allocate_slot(self, contactless: bool = False) -> VpcdSlot:
        """Hand out a free slot (least recently released first, so pcscd has forgotten its last card).
        :class:`ReaderUnavailable` when every slot of that kind is in use."""
        with self._lock:
            for slot in self._free:
                if slot.contactless == contactless:
                    self._free.remove(slot)
                    return slot
        kind = "contactless" if contactless else "contact"
        raise ReaderUnavailable(f"every {kind} vpcd slot is in use", resource=self.friendly_name,
                                detail=f"{sum(s.contactless == contactless for s in self._slots)} {kind} slots")

    def release_slot(self, slot: VpcdSlot) -> None:
        """Give ``slot`` back (idempotent)."""
        with self._lock:
            if slot in self._slots and slot not in self._free:
                self._free.append(slot)

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> ManagedPcscd:
        """Write the config, spawn pcscd, wait until every reader is visible (``start_timeout``)."""
        if self.running:
            return self
        self._install = check_installed()
        self._tmp = tempfile.mkdtemp(prefix="paylab-pcscd-")
        if self._requested_socket_path is None:
            self._requested_socket_path = os.path.join(self._tmp, "pcscd.comm")
        last_error: Exception | None = None
        for _attempt in range(3):       # a port grabbed between probe and load: new ports, try again
            self._configure()
            try:
                self._spawn_and_wait()
                return self
            except SimulationUnavailable as exc:
                last_error = exc
                self._terminate(signal.SIGKILL)
        self._cleanup()
        assert last_error is not None
        raise last_error

    def _configure(self) -> None:
        assert self._tmp is not None
        assert self._install is not None
        conf_dir = Path(self._tmp, "reader.conf.d")
        conf_dir.mkdir(exist_ok=True)
        for old in conf_dir.iterdir():
            old.unlink()
        entries = self.contact_entries + self.contactless_entries
        bases = _free_port_pairs(entries, set())
        lines: list[str] = []
        slots: list[VpcdSlot] = []
        for n, base in enumerate(bases):
            contactless = n >= self.contact_entries
            letter = ascii_uppercase[n - self.contact_entries if contactless else n]
            name = f"{self.friendly_name}{CONTACTLESS_SUFFIX if contactless else ''} {letter}"
            lib = Path(self._tmp, f"libifdvpcd-{n}.so")     # own copy per entry (per-slot driver state)
            if not lib.exists():
                shutil.copyfile(self._install.vpcd_library, lib)
            lines += [f'FRIENDLYNAME "{name}"', f"DEVICENAME /dev/null:{base}", f"LIBPATH {lib}",
                      f"CHANNELID {base}", ""]
            slots += [VpcdSlot(base + s, f"{name} 00 {s:02X}", contactless)
                      for s in range(SLOTS_PER_ENTRY)]
        (conf_dir / "paylab-vpcd.conf").write_text("\n".join(lines))
        with self._lock:
            self._slots = slots
            self._free = deque(slots)

    def _bind_socket(self) -> socket.socket:
        path = self.socket_path
        _private_dir(os.path.dirname(path))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            os.chmod(path, 0o666)   # pcsc-lite clients of any user, like /run/pcscd/pcscd.comm
            sock.listen(64)
        except OSError:
            sock.close()
            raise
        return sock

    def _spawn_and_wait(self) -> None:
        assert self._tmp is not None
        assert self._install is not None
        sock = self._bind_socket()
        log = os.path.join(self._tmp, "pcscd.log")
        argv = ["/bin/sh", "-c", 'LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@"', self._install.pcscd,
                "--foreground", "--config", os.path.join(self._tmp, "reader.conf.d")]
        if self.debug:
            argv.append("--debug")
        env = {k: v for k, v in os.environ.items() if not k.startswith("LISTEN_")}
        env["LISTEN_FDS"] = "1"
        fd = sock.fileno()
        try:
            start = time.perf_counter()
            self._pid = os.posix_spawn(argv[0], argv, env, file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
                (os.POSIX_SPAWN_DUP2, 1, 2),
                (os.POSIX_SPAWN_DUP2, fd, 3),
            ], setsid=True)
        finally:
            sock.close()     # pcscd holds the only copy: when it dies, clients get "service not available"
        self._wait_ready(start)

    def _wait_ready(self, start: float) -> None:
        ports = {s.port for s in self._slots}
        deadline = start + self.start_timeout
        while True:
            if not self.running:
                raise SimulationUnavailable("pcscd exited during start", resource="pcscd",
                                            detail=self.log_tail())
            assert self._pid is not None
            listening = _listening_inodes(ports)       # first: a socket listed here is already in fd/
            ours = _socket_inodes_of(self._pid)
            if all(listening.get(p, set()) & ours for p in ports) and self._readers_listed():
                self.started_in = time.perf_counter() - start
                return
            stolen = sorted(p for p in ports if listening.get(p) and not listening[p] & ours)
            if stolen:          # another process took a port between our probe and pcscd's bind
                raise SimulationUnavailable("vpcd ports taken by another process", resource="pcscd",
                                            detail=f"ports {stolen}")
            if time.perf_counter() > deadline:
                missing = sorted(p for p in ports if not listening.get(p, set()) & ours)
                raise SimulationUnavailable(f"pcscd readers not visible after {self.start_timeout:.0f} s",
                                            resource="pcscd", detail=f"vpcd ports not listening: {missing}")
            time.sleep(0.002)

    def _readers_listed(self) -> bool:
        """When this process's PC/SC client points here, every reader must be listed too."""
        if os.environ.get("PCSCLITE_CSOCK_NAME") != self.socket_path:
            return True
        from .reader import list_readers  # local: reader imports nothing from here at module level
        try:
            present = set(list_readers())
        except ReaderUnavailable:
            return False
        return set(self.reader_names) <= present

    def kill(self) -> None:
        """Simulate a pcscd crash: SIGKILL by pid (the socket dies with it). Config and ports are kept
        for :meth:`restart`."""
        self._terminate(signal.SIGKILL)

    def restart(self) -> ManagedPcscd:
        """Kill pcscd (if running) and respawn it on the same socket path, config and ports."""
        self._terminate(signal.SIGKILL)
        if self._tmp is None:
            return self.start()
        self._spawn_and_wait()
        return self

    def stop(self) -> None:
        """SIGTERM (SIGKILL after 3 s) by pid, remove the temp dir and socket. Idempotent."""
        self._terminate(signal.SIGTERM)
        self._cleanup()

    def _terminate(self, sig: signal.Signals) -> None:
        pid = self._pid
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + 3.0
        while True:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                break
            if done:
                break
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
                break
            time.sleep(0.005)
        self._pid = None

    def _cleanup(self) -> None:
        if self._requested_socket_path and os.path.exists(self._requested_socket_path):
            with contextlib.suppress(OSError):
                os.unlink(self._requested_socket_path)
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
        self._tmp = None

    def log_tail(self, lines: int = 20) -> str:
        """The end of pcscd's own log (for error messages)."""
        if self._tmp is None:
            return ""
        try:
            text = Path(self._tmp, "pcscd.log").read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def __enter__(self) -> ManagedPcscd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (f"ManagedPcscd(socket={self._requested_socket_path!r}, pid={self._pid}, "
                f"readers={len(self._slots)})")
