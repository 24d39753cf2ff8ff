"""The lab database: rig leases, rig quarantine and campaign run history (issue 6).

Separate from the reference backend's database (own declarative base, own file): the backend is a
system under test that a campaign may wipe; the lab database is the lab's memory across runs.

* Default: SQLite ``<lab dir>/lab.db`` (``$PAYLAB_LAB_DIR``, else ``$XDG_STATE_HOME/paylab/lab``, else
  ``~/.local/state/paylab/lab``), WAL, busy timeout 30 s, writers take the lock at ``BEGIN IMMEDIATE``
  (engine and sessions come from :mod:`paylab.lab.backend.db`: :func:`make_engine`, :func:`session_scope`).
  Good for one rig host: every process on that machine sees the same leases.
* A lab with several rig hosts points every host at one PostgreSQL database
  (``--lab-db postgresql://...`` or ``$PAYLAB_LAB_DB``) so they all see the same leases.

Times are stored as float seconds since the epoch (``time.time()`` of the writer), the same type on
both engines; hosts sharing a database must keep their clocks in step (NTP), and a lease's TTL should
be far above the clock skew between them.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Boolean, Double, Engine, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ..backend.db import is_sqlite, make_engine, session_scope

__all__ = [
    "LAB_DB_ENV", "LAB_DIR_ENV", "LabBase", "QuarantineRow", "RigLeaseRow", "RunRow", "create_lab_tables",
    "default_lab_dir", "is_sqlite", "lab_db_url", "open_campaign_lab_db", "open_lab_db", "session_scope",
]

LAB_DB_ENV = "PAYLAB_LAB_DB"
LAB_DIR_ENV = "PAYLAB_LAB_DIR"


class LabBase(DeclarativeBase):
    """Declarative base of the lab database's tables (not the backend's :class:`Base`)."""


class RigLeaseRow(LabBase):
    """One rig's current lease: who holds it (holder id + owner record) and until when.

    A row whose ``expires_at`` has passed is a free rig: the next ``acquire`` overwrites it. ``lease_id``
    is fresh for every acquisition, so a renew or release only ever touches the holder's own lease.
    """

    __tablename__ = "rig_leases"

    rig: Mapped[str] = mapped_column(String(128), primary_key=True)
    lease_id: Mapped[str] = mapped_column(String(32))
    holder: Mapped[str] = mapped_column(String(256))
    owner_user: Mapped[str] = mapped_column(String(128))
    owner_host: Mapped[str] = mapped_column(String(256))
    owner_pid: Mapped[int] = mapped_column(Integer)
    campaign_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    ttl_s: Mapped[float] = mapped_column(Double)
    acquired_at: Mapped[float] = mapped_column(Double)
    expires_at: Mapped[float] = mapped_column(Double)
    heartbeat_at: Mapped[float] = mapped_column(Double)


class QuarantineRow(LabBase):
    """A rig taken out of service (e.g. after repeated infrastructure failures) until released."""

    __tablename__ = "rig_quarantine"

    rig: Mapped[str] = mapped_column(String(128), primary_key=True)
    reason: Mapped[str] = mapped_column(Text)
    since: Mapped[float] = mapped_column(Double)
    by: Mapped[str | None] = mapped_column(String(512), nullable=True)


class RunRow(LabBase):
    """One attempt of one test in one campaign (what ``--resume`` reads back)."""

    __tablename__ = "run_history"
    __table_args__ = (
        UniqueConstraint("campaign_id", "test_id", "attempt", name="uq_run_attempt"),
        Index("ix_run_campaign", "campaign_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(String(128))
    test_id: Mapped[str] = mapped_column(String(1024))
    attempt: Mapped[int] = mapped_column(Integer)
    rig: Mapped[str | None] = mapped_column(String(128), nullable=True)
    verdict: Mapped[str] = mapped_column(String(16))
    infra: Mapped[bool] = mapped_column(Boolean, default=False)
    started_at: Mapped[float] = mapped_column(Double)
    finished_at: Mapped[float] = mapped_column(Double)
    duration_s: Mapped[float] = mapped_column(Double)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)


def default_lab_dir() -> Path:
    """``$PAYLAB_LAB_DIR``, else ``$XDG_STATE_HOME/paylab/lab``, else ``~/.local/state/paylab/lab``."""
    explicit = os.environ.get(LAB_DIR_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path("~/.local/state").expanduser())
    return Path(base) / "paylab" / "lab"


def lab_db_url(url: str | None = None, *, lab_dir: Path | None = None) -> str:
    """The lab database URL: ``url``; else ``sqlite:///<lab_dir>/lab.db`` when ``lab_dir`` is given; else
    ``$PAYLAB_LAB_DB``; else ``sqlite:///<default lab dir>/lab.db`` (:func:`default_lab_dir`)."""
    if url:
        return url
    if lab_dir is None:
        env = os.environ.get(LAB_DB_ENV)
        if env:
            return env
    folder = Path(lab_dir) if lab_dir is not None else default_lab_dir()
    return f"sqlite:///{folder.resolve() / 'lab.db'}"


def create_lab_tables(engine: Engine, *, attempts: int = 3) -> None:
    """Create the lab tables that are missing. Several processes or hosts may start at once: a
    ``CREATE TABLE`` that loses the race to another one (PostgreSQL raises a unique violation on its
    catalogue) is retried, and then finds the table there."""
    for attempt in range(attempts):
        try:
            LabBase.metadata.create_all(engine)
            return
        except (IntegrityError, ProgrammingError, OperationalError):
            if attempt == attempts - 1:
                raise


def open_lab_db(url: str | None = None, *, lab_dir: Path | None = None) -> Engine:
    """An engine on the lab database (:func:`lab_db_url`) with its tables created."""
    engine = make_engine(lab_db_url(url, lab_dir=lab_dir))
    try:
        create_lab_tables(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


def open_campaign_lab_db(url: str | None, reports_root: Path) -> Engine:
    """The lab database the campaigns writing to ``reports_root`` share: ``url`` (``--lab-db``), else
    ``$PAYLAB_LAB_DB``, else SQLite in ``<reports_root>/.lab/`` (created)."""
    url = url or os.environ.get(LAB_DB_ENV)
    lab_dir = None if url else Path(reports_root) / ".lab"
    if lab_dir is not None:
        lab_dir.mkdir(parents=True, exist_ok=True)
    return open_lab_db(url, lab_dir=lab_dir)
