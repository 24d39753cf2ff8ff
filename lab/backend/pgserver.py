"""A private PostgreSQL server for tests: ``initdb`` in a temp dir, ``pg_ctl start`` on 127.0.0.1 and a
free port (unix socket in the temp dir too), stopped by PID and removed afterwards.

    with PostgresServer() as pg:
        url = pg.url                      # postgresql+psycopg://paylab@127.0.0.1:PORT/paylab
        other = pg.create_database("t2")  # a fresh, empty database on the same server

Binaries are looked up on ``PATH`` then in ``/usr/lib/postgresql/<version>/bin`` (newest first);
missing ones raise :class:`PostgresUnavailable` (``make test`` installs Debian's ``postgresql``).
PostgreSQL refuses to run as root: as root the temp dir is given to the ``postgres`` user and
``initdb``/``pg_ctl`` run as that user through ``runuser -u postgres --``.

The server is tuned for throwaway test data (``fsync=off``, ``synchronous_commit=off``,
``full_page_writes=off``): never point it at data you want to keep.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from ..protocol.errors import PaylabError

__all__ = ["PostgresServer", "PostgresUnavailable", "find_pg_bin"]

SUPERUSER = "paylab"
DEFAULT_DB = "paylab"
_TEST_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off", "max_connections=100")


class PostgresUnavailable(PaylabError, RuntimeError):
    """PostgreSQL binaries are missing, or the private server could not be started (``str`` says why)."""


def find_pg_bin() -> Path:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``; :class:`PostgresUnavailable` if none."""
    candidates: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(os.path.realpath(on_path)).parent)
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                      key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0, reverse=True)
    candidates.extend(Path(v) for v in versions)
    for folder in candidates:
        if all((folder / tool).is_file() and os.access(folder / tool, os.X_OK) for tool in ("initdb", "pg_ctl",
                                                                                             "postgres")):
            return folder
    raise PostgresUnavailable("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH or in "
                              "/usr/lib/postgresql/*/bin; install them: apt-get install postgresql")


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One private PostgreSQL instance (see the module docstring). ``start()`` is idempotent; ``stop()``
    stops the server by PID and deletes its directory (also run at interpreter exit as a safety net)."""

    def __init__(self, *, host: str = "127.0.0.1", start_timeout_s: float = 60.0) -> None:
        self.host = host
        self.start_timeout_s = start_timeout_s
        self.bin_dir: Path | None = None
        self.base_dir: Path | None = None
        self.port: int | None = None
        self.pid: int | None = None
        self._as_postgres = os.geteuid() == 0

    # -- paths -------------------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        assert self.base_dir is not None
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        assert self.base_dir is not None
        return self.base_dir / "run"

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the default database."""
        return self.url_for(DEFAULT_DB)

    def url_for(self, database: str) -> str:
        """The SQLAlchemy URL of ``database`` on this server."""
        if self.port is None:
            raise PostgresUnavailable("the server is not running")
        return f"postgresql+psycopg://{SUPERUSER}@{self.host}:{self.port}/{database}"

    # -- life cycle --------------------------------------------------------------------------------
    def start(self) -> PostgresServer:
        """initdb, start, create the default database; :class:`PostgresUnavailable` on any failure."""
        if self.pid is not None:
            return self
        self.bin_dir = find_pg_bin()
        if self._as_postgres:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable("running as root but there is no 'postgres' user to run the server "
                                          "as (the postgresql package creates it)") from None
            if shutil.which("runuser") is None:
                raise PostgresUnavailable("running as root but 'runuser' (util-linux) is missing")
        self.base_dir = Path(tempfile.mkdtemp(prefix="paylab-pg-"))
        atexit.register(self.stop)
        try:
            self.socket_dir.mkdir()
            if self._as_postgres:
                subprocess.run(["chown", "-R", "postgres:postgres", str(self.base_dir)], check=True,
                               capture_output=True)
            self._run("initdb", "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                      "--no-locale", "--no-sync", "--no-instructions")
            last = ""
            for _attempt in range(3):  # a free port can be taken between probing and binding it
                self.port = _free_port(self.host)
                options = " ".join([f"-p {self.port}", f"-h {self.host}", f"-k {self.socket_dir}",
                                    *(f"-c {s}" for s in _TEST_SETTINGS)])
                result = self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.base_dir / "server.log"),
                                   "-w", "-t", str(int(self.start_timeout_s)), "-o", options, "start", check=False)
                if result.returncode == 0:
                    break
                last = self._log_tail() or result.stderr.strip()
            else:
                raise PostgresUnavailable(f"PostgreSQL did not start: {last}")
            self.pid = self._read_pid()
            self._admin(f'CREATE DATABASE "{DEFAULT_DB}"')
        except PostgresUnavailable:
            self.stop()
            raise
        except (OSError, subprocess.SubprocessError) as exc:
            self.stop()
            raise PostgresUnavailable(f"PostgreSQL could not be set up: {exc}") from exc
        return self

    def create_database(self, name: str) -> str:
        """Create an empty database ``name`` (letters, digits, ``_``) and return its URL."""
        if not name.replace("_", "").isalnum() or not name.isascii():
            raise ValueError(f"database name {name!r}: use letters, digits and '_'")
        self._admin(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` (closing its connections)."""
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        """Stop the server (``pg_ctl stop -m fast``, then SIGKILL by PID if it is still there) and remove
        its directory. Safe to call twice."""
        base = self.base_dir
        if base is None:
            return
        pid = self.pid
        if pid is not None and self.bin_dir is not None and self.data_dir.exists():
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "20", "stop",
                          check=False, timeout=30)
        if pid is not None and _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        shutil.rmtree(base, ignore_errors=True)
        self.base_dir = self.pid = self.port = None
        atexit.unregister(self.stop)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- helpers -----------------------------------------------------------------------------------
    def _run(self, tool: str, *args: str, check: bool = True,
             timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        assert self.bin_dir is not None
        assert self.base_dir is not None
        command = [str(self.bin_dir / tool), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        result = subprocess.run(command, cwd=self.base_dir, env=env, capture_output=True, text=True,
                                timeout=timeout or self.start_timeout_s + 30, stdin=subprocess.DEVNULL)
        if check and result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise PostgresUnavailable(f"{tool} failed (exit {result.returncode}): {detail[-1] if detail else ''}")
        return result

    def _read_pid(self) -> int:
        lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        return int(lines[0])

    def _log_tail(self) -> str:
        assert self.base_dir is not None
        try:
            lines = (self.base_dir / "server.log").read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1] if lines else ""

    def _admin(self, sql: str) -> None:
        import psycopg

        try:
            with psycopg.connect(host=self.host, port=self.port, user=SUPERUSER, dbname="postgres",
                                 autocommit=True, connect_timeout=10) as conn:
                conn.execute(sql)  # type: ignore[arg-type]
        except psycopg.Error as exc:
            raise PostgresUnavailable(f"{sql.split()[0]} on the private server failed: {exc}") from exc


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers signal 0; the server is our grandchild (pg_ctl daemonises it), so
    # /proc is the reliable view.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"
