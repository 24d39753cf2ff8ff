"""SQLAlchemy plumbing shared by every backend module: the declarative :class:`Base`, engines, sessions.

Every backend module that keeps tables declares them on :class:`Base` in its own models module and
adds that module's name to :data:`MODEL_MODULES`; :func:`create_all` imports the ones that exist, so
their tables register, then creates every table.

SQLite (the default, one file under the state dir):

* WAL journal, ``synchronous=NORMAL`` (durable up to the last checkpointed commit; a power cut can lose
  the last transactions, never corrupt the file), foreign keys on, busy timeout 30 s,
  ``check_same_thread=False`` (the pool hands connections to any thread; a connection is used by one
  thread at a time).
* SQLAlchemy emits BEGIN itself (the sqlite3 driver's own transaction handling is switched off, as the
  SQLAlchemy SQLite docs recommend), so a transaction covers reads too and savepoints nest properly.
* :func:`session_scope` (``write=True``, the default) starts with ``BEGIN IMMEDIATE``: the write lock is
  taken at the start, so writers queue on the busy timeout instead of failing with "database is
  locked" when a read transaction tries to become a writer. Readers (``write=False``) use a deferred
  BEGIN and see a consistent snapshot while writers work (WAL).

PostgreSQL (``postgresql+psycopg://user@host:port/db``): READ COMMITTED; writers serialise on row
locks (``SELECT ... FOR UPDATE``, see :mod:`.ledger`).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.pool import StaticPool

__all__ = ["MODEL_MODULES", "Base", "create_all", "is_sqlite", "make_engine", "session_scope"]

SQLITE_BUSY_TIMEOUT_S = 30.0
SQLITE_BEGIN_OPTION = "paylab_sqlite_begin"

MODEL_MODULES: tuple[str, ...] = (
    "paylab.lab.backend.models",
    "paylab.lab.backend.issuer_models",
    "paylab.lab.backend.acquirer_models",
    "paylab.lab.backend.switch_models",
    "paylab.lab.backend.remote_payment",
    "paylab.lab.backend.merchant",
    "paylab.lab.backend.sms",
    "paylab.lab.backend.ota_gateway",
    "paylab.lab.backend.inst_auth",
    "paylab.lab.backend.tsm.models",
)
"""Modules whose import registers tables on :class:`Base` (the layout of :mod:`paylab.lab.backend`);
absent ones are skipped by :func:`create_all`. A service that keeps its tables in another module
imports it from the service module, or asks for it to be listed here."""


class Base(DeclarativeBase):
    """The declarative base of every backend table (one metadata, one ``create_all``)."""


def is_sqlite(engine: Engine) -> bool:
    """True for a SQLite engine."""
    return engine.dialect.name == "sqlite"


def make_engine(url: str) -> Engine:
    """An engine for ``url``: ``sqlite:///path`` (WAL, see the module docstring) or ``postgresql+psycopg://``.

    ``sqlite://`` (in memory) shares one connection between all users (tests only; no concurrency).
    """
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    if not url.startswith(("sqlite", "postgresql+psycopg")):
        raise ValueError(f"unsupported database URL scheme {url.split(':', 1)[0]!r} "
                         "(use sqlite:///path or postgresql+psycopg://...)")
    if not url.startswith("sqlite"):
        return create_engine(url, pool_size=10, max_overflow=20)

    memory = url.rstrip("/") in ("sqlite:", "sqlite+pysqlite:") or ":memory:" in url
    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S}}
    if memory:
        kwargs["poolclass"] = StaticPool
    else:
        kwargs.update(pool_size=10, max_overflow=20)
        path = url.split(":///", 1)[1].split("?", 1)[0] if ":///" in url else ""
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN (see _on_begin)
        cursor = dbapi_connection.cursor()
        try:
            if not memory:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get(SQLITE_BEGIN_OPTION, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def create_all(engine: Engine) -> None:
    """Import every models module of :data:`MODEL_MODULES` that exists, then create all tables."""
    for name in MODEL_MODULES:
        try:
            spec = importlib.util.find_spec(name)
        except ModuleNotFoundError:  # a parent package is absent
            spec = None
        if spec is not None:
            importlib.import_module(name)
    Base.metadata.create_all(engine)


@contextmanager
def session_scope(engine: Engine, *, write: bool = True) -> Iterator[Session]:
    """A session in one transaction: committed when the block ends, rolled back on an exception.

    ``write=True`` (default) takes SQLite's write lock at BEGIN (``BEGIN IMMEDIATE``); pass such a
    session to :meth:`.ledger.Ledger.post` to write your rows atomically with a ledger entry.
    ``write=False`` is for read-only work (deferred BEGIN on SQLite). No effect on PostgreSQL.
    """
    bind = engine.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"}) if write and is_sqlite(engine) else engine
    session = Session(bind=bind, expire_on_commit=False)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
