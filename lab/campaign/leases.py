"""Rig reservations: leases with a time-to-live, renewed by a heartbeat, in the lab database (issue 6).

A campaign reserves each rig it uses with :meth:`LeaseManager.acquire`. The lease carries an expiry;
a :class:`Heartbeat` thread renews it every ``interval`` seconds. A job that crashes, is killed or is
cancelled stops renewing, so its rigs come free by themselves once the TTL has run out — no lock file
left behind, no operator needed. The owner record (user, host, pid, campaign) lets a blocked job say
exactly who holds a rig ("held by alice@lab-2 pid 4242 for campaign nightly-17 until ...").

Atomicity: :meth:`LeaseManager.acquire` is ONE statement,
``INSERT ... ON CONFLICT (rig) DO UPDATE SET ... WHERE rig_leases.expires_at <= :now RETURNING lease_id``
(SQLite ≥ 3.35 and PostgreSQL ≥ 9.5 both have it). On PostgreSQL the conflicting row is locked and the
``WHERE`` re-checked against its newest version, so of two contenders the second sees the first's
fresh expiry and updates nothing; on SQLite writers are serialised by ``BEGIN IMMEDIATE``. Either way
exactly one contender gets its ``lease_id`` back. Renew and release match the rig *and* the
``lease_id``, so a holder whose lease expired and was taken over can neither extend nor free the new
holder's lease (renew raises :class:`LeaseLost`).

Clock: ``clock`` (default :func:`time.time`) is injected so tests can move time; all hosts sharing a
database must have synchronised clocks (see :mod:`.db`).
"""

from __future__ import annotations

import getpass
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from ..protocol.errors import PaylabError
from .db import QuarantineRow, RigLeaseRow, is_sqlite, session_scope

__all__ = [
    "Heartbeat", "Lease", "LeaseError", "LeaseInfo", "LeaseLost", "LeaseManager", "LostLease", "OwnerRecord",
    "QuarantineRecord", "RigBusy", "RigQuarantined",
]

log = logging.getLogger(__name__)

Clock = Callable[[], float]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- errors -------------------------------------------------------------------------------------------
class LeaseError(PaylabError):
    """Root of the lease errors; ``rig`` names the rig concerned."""

    def __init__(self, message: str, *, rig: str) -> None:
        self.rig = rig
        super().__init__(f"{rig}: {message}")


class LeaseLost(LeaseError):
    """The lease expired or another holder took the rig over; the holder must stop using the rig."""


class RigQuarantined(LeaseError):
    """The rig is in quarantine (``reason``) and is not handed out until released."""

    def __init__(self, message: str, *, rig: str, reason: str) -> None:
        self.reason = reason
        super().__init__(message, rig=rig)


class RigBusy(LeaseError):
    """:meth:`LeaseManager.acquire_wait` gave up; ``held_by`` is the lease that blocked it."""

    def __init__(self, message: str, *, rig: str, held_by: LeaseInfo | None) -> None:
        self.held_by = held_by
        super().__init__(message, rig=rig)


# -- records --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OwnerRecord:
    """Who holds a rig: the user, machine and process, and for which campaign."""

    user: str
    host: str
    pid: int
    campaign_id: str | None = None

    @classmethod
    def current(cls, campaign_id: str | None = None) -> OwnerRecord:
        """This process: login name, host name, PID."""
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = str(os.getuid())
        return cls(user=user, host=socket.gethostname(), pid=os.getpid(), campaign_id=campaign_id)

    def describe(self) -> str:
        """``alice@lab-2 pid 4242 for campaign nightly-17``."""
        text = f"{self.user}@{self.host} pid {self.pid}"
        return f"{text} for campaign {self.campaign_id}" if self.campaign_id else text


@dataclass
class Lease:
    """A lease this process holds. :meth:`LeaseManager.renew` moves ``expires_at`` forward in place."""

    rig: str
    holder: str
    lease_id: str
    ttl_s: float
    owner: OwnerRecord
    acquired_at: float
    expires_at: float
    heartbeat_at: float


@dataclass(frozen=True)
class LeaseInfo:
    """A lease as the database shows it (:meth:`LeaseManager.holder_of`)."""

    rig: str
    holder: str
    lease_id: str
    owner: OwnerRecord
    ttl_s: float
    acquired_at: float
    expires_at: float
    heartbeat_at: float

    def describe(self) -> str:
        """``rig-3 held by alice@lab-2 pid 4242 for campaign nightly-17 until 2026-11-26T01:02:03Z (holder H)``."""
        return (f"{self.rig} held by {self.owner.describe()} until {_iso(self.expires_at)} "
                f"(holder {self.holder}, last heartbeat {_iso(self.heartbeat_at)})")


@dataclass(frozen=True)
class QuarantineRecord:
    rig: str
    reason: str
    since: float
    by: str | None = None

    def describe(self) -> str:
        by = f" by {self.by}" if self.by else ""
        return f"{self.rig} quarantined since {_iso(self.since)}{by}: {self.reason}"


def _info(row: RigLeaseRow) -> LeaseInfo:
    owner = OwnerRecord(user=row.owner_user, host=row.owner_host, pid=row.owner_pid, campaign_id=row.campaign_id)
    return LeaseInfo(rig=row.rig, holder=row.holder, lease_id=row.lease_id, owner=owner, ttl_s=row.ttl_s,
                     acquired_at=row.acquired_at, expires_at=row.expires_at, heartbeat_at=row.heartbeat_at)


# -- manager --------------------------------------------------------------------------------------------
class LeaseManager:
    """Acquire, renew and release rig leases; keep the quarantine list (see the module docstring)."""

    def __init__(self, engine: Engine, *, clock: Clock = time.time) -> None:
        self.engine = engine
        self.clock = clock
        self._insert = sqlite.insert if is_sqlite(engine) else postgresql.insert

    def acquire(self, rig: str, holder: str, ttl: float, owner: OwnerRecord | None = None) -> Lease | None:
        """Take ``rig`` for ``ttl`` seconds if it is free or its lease has expired; None if someone holds it.

        Raises :class:`RigQuarantined` for a quarantined rig. ``owner`` defaults to this process.
        """
        if ttl <= 0:
            raise ValueError(f"lease TTL must be positive, got {ttl}")
        owner = owner or OwnerRecord.current()
        now = self.clock()
        values = {
            "rig": rig, "lease_id": uuid.uuid4().hex, "holder": holder, "owner_user": owner.user,
            "owner_host": owner.host, "owner_pid": owner.pid, "campaign_id": owner.campaign_id, "ttl_s": float(ttl),
            "acquired_at": now, "expires_at": now + ttl, "heartbeat_at": now,
        }
        stmt = self._insert(RigLeaseRow).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[RigLeaseRow.rig],
            set_={name: stmt.excluded[name] for name in values if name != "rig"},
            where=RigLeaseRow.expires_at <= now,
        ).returning(RigLeaseRow.lease_id)
        with session_scope(self.engine) as session:
            quarantined = session.get(QuarantineRow, rig)
            if quarantined is not None:
                raise RigQuarantined(f"in quarantine since {_iso(quarantined.since)}: {quarantined.reason}",
                                     rig=rig, reason=quarantined.reason)
            won = session.execute(stmt).scalar_one_or_none()
        if won != values["lease_id"]:
            return None
        log.debug("lease on %s acquired by %s until %s", rig, holder, _iso(now + ttl))
        return Lease(rig=rig, holder=holder, lease_id=values["lease_id"], ttl_s=float(ttl), owner=owner,
                     acquired_at=now, expires_at=now + ttl, heartbeat_at=now)

    def acquire_wait(self, rig: str, holder: str, ttl: float, owner: OwnerRecord | None = None, *,
                     timeout: float, poll_s: float = 0.5) -> Lease:
        """:meth:`acquire`, retried every ``poll_s`` (real time) for up to ``timeout`` seconds; then
        :class:`RigBusy` saying who holds the rig."""
        deadline = time.monotonic() + timeout
        while True:
            lease = self.acquire(rig, holder, ttl, owner)
            if lease is not None:
                return lease
            if time.monotonic() >= deadline:
                info = self.holder_of(rig)
                what = info.describe() if info else "held (released while giving up)"
                raise RigBusy(f"not free after {timeout:g} s: {what}", rig=rig, held_by=info)
            time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))

    def renew(self, lease: Lease, ttl: float | None = None) -> Lease:
        """Push the lease's expiry to now + TTL; :class:`LeaseLost` if it expired or was taken over."""
        ttl = lease.ttl_s if ttl is None else float(ttl)
        now = self.clock()
        stmt = (update(RigLeaseRow)
                .where(RigLeaseRow.rig == lease.rig, RigLeaseRow.lease_id == lease.lease_id,
                       RigLeaseRow.expires_at > now)
                .values(expires_at=now + ttl, heartbeat_at=now, ttl_s=ttl)
                .returning(RigLeaseRow.lease_id))
        with session_scope(self.engine) as session:
            renewed = session.execute(stmt).scalar_one_or_none()
            current = None if renewed else session.get(RigLeaseRow, lease.rig)
            current_info = _info(current) if current is not None else None
        if renewed is None:
            raise LeaseLost(self._loss_reason(lease, current_info, now), rig=lease.rig)
        lease.expires_at, lease.heartbeat_at, lease.ttl_s = now + ttl, now, ttl
        return lease

    @staticmethod
    def _loss_reason(lease: Lease, current: LeaseInfo | None, now: float) -> str:
        if current is None:
            return f"lease of {lease.holder} is gone (released or cleared)"
        if current.lease_id != lease.lease_id:
            return f"lease of {lease.holder} lost: taken over, now {current.describe()}"
        return (f"lease of {lease.holder} expired at {_iso(current.expires_at)} "
                f"({now - current.expires_at:.1f} s before this renewal)")

    def release(self, lease: Lease) -> bool:
        """Free the rig if ``lease`` still holds it; False when it had already been lost."""
        stmt = delete(RigLeaseRow).where(RigLeaseRow.rig == lease.rig, RigLeaseRow.lease_id == lease.lease_id)
        with session_scope(self.engine) as session:
            freed = session.execute(stmt).rowcount == 1
        if freed:
            log.debug("lease on %s released by %s", lease.rig, lease.holder)
        return freed

    def holder_of(self, rig: str) -> LeaseInfo | None:
        """The live lease on ``rig`` (None when free or expired)."""
        with session_scope(self.engine, write=False) as session:
            row = session.get(RigLeaseRow, rig)
            info = _info(row) if row is not None else None
        if info is None or info.expires_at <= self.clock():
            return None
        return info

    def leases(self) -> list[LeaseInfo]:
        """Every live lease, by rig name."""
        now = self.clock()
        with session_scope(self.engine, write=False) as session:
            rows = session.scalars(select(RigLeaseRow).where(RigLeaseRow.expires_at > now)
                                   .order_by(RigLeaseRow.rig)).all()
            return [_info(row) for row in rows]

    # -- quarantine ----------------------------------------------------------------------------------------
    def quarantine(self, rig: str, reason: str, *, by: OwnerRecord | None = None) -> QuarantineRecord:
        """Put ``rig`` in quarantine (replacing an earlier reason). A lease already held stays valid
        until released or expired; new acquisitions raise :class:`RigQuarantined`."""
        by_text = (by or OwnerRecord.current()).describe()
        values = {"rig": rig, "reason": reason, "since": self.clock(), "by": by_text}
        stmt = self._insert(QuarantineRow).values(**values)
        stmt = stmt.on_conflict_do_update(index_elements=[QuarantineRow.rig],
                                          set_={"reason": stmt.excluded.reason, "by": stmt.excluded.by})
        with session_scope(self.engine) as session:
            session.execute(stmt)
            row = session.get(QuarantineRow, rig)
            assert row is not None
            record = QuarantineRecord(rig=row.rig, reason=row.reason, since=row.since, by=row.by)
        log.warning("rig quarantined: %s", record.describe())
        return record

    def quarantined(self) -> dict[str, QuarantineRecord]:
        """Quarantined rigs by name."""
        with session_scope(self.engine, write=False) as session:
            rows = session.scalars(select(QuarantineRow).order_by(QuarantineRow.rig)).all()
            return {row.rig: QuarantineRecord(rig=row.rig, reason=row.reason, since=row.since, by=row.by)
                    for row in rows}

    def release_quarantine(self, rig: str) -> bool:
        """Return ``rig`` to service; False if it was not quarantined."""
        with session_scope(self.engine) as session:
            return session.execute(delete(QuarantineRow).where(QuarantineRow.rig == rig)).rowcount == 1


# -- heartbeat --------------------------------------------------------------------------------------------
LostCallback = Callable[[Lease, LeaseLost], None]


@dataclass(frozen=True)
class LostLease:
    """A lease the heartbeat could not keep, and why."""

    lease: Lease
    error: LeaseLost


class Heartbeat:
    """A daemon thread renewing ``leases`` every ``interval`` seconds.

    A lease that cannot be renewed (:class:`LeaseLost`, or a database error that lasts until the lease's
    own expiry) is dropped from the set, recorded in :attr:`lost` and reported to ``on_lost`` (called on
    the heartbeat thread; exceptions in it are logged, never raised). :meth:`stop` ends the thread
    within ``interval`` plus one database round trip; the leases are left as they are (release them).
    """

    def __init__(self, manager: LeaseManager, leases: Iterable[Lease] = (), interval: float = 5.0, *,
                 on_lost: LostCallback | None = None, name: str = "lease-heartbeat") -> None:
        if interval <= 0:
            raise ValueError(f"heartbeat interval must be positive, got {interval}")
        self.manager = manager
        self.interval = interval
        self.on_lost = on_lost
        self.name = name
        self.lost: list[LostLease] = []
        self._leases: dict[str, Lease] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        for lease in leases:
            self.add(lease)

    def add(self, lease: Lease) -> None:
        """Keep ``lease`` alive too (its TTL must exceed the interval)."""
        if lease.ttl_s <= self.interval:
            raise ValueError(f"{lease.rig}: lease TTL {lease.ttl_s:g} s must exceed the heartbeat interval "
                             f"{self.interval:g} s (use TTL ≥ 3 × interval)")
        with self._lock:
            self._leases[lease.lease_id] = lease

    def remove(self, lease: Lease) -> None:
        """Stop renewing ``lease`` (before releasing it)."""
        with self._lock:
            self._leases.pop(lease.lease_id, None)

    @property
    def held(self) -> list[Lease]:
        with self._lock:
            return list(self._leases.values())

    def start(self) -> Heartbeat:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop renewing and join the thread (up to ``timeout`` seconds; logged if it overruns)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.error("%s did not stop within %.1f s (a database call is blocking)", self.name, timeout)

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()

    def beat(self) -> None:
        """One round of renewals (the thread calls it every ``interval``; tests may call it directly)."""
        for lease in self.held:
            if self._stop.is_set():
                return
            try:
                self.manager.renew(lease)
            except LeaseLost as exc:
                self._lose(lease, exc)
            except (SQLAlchemyError, OSError) as exc:
                if self.manager.clock() >= lease.expires_at:
                    self._lose(lease, LeaseLost(f"could not be renewed before it expired: {exc}", rig=lease.rig))
                else:
                    log.warning("%s: renewing the lease failed, will retry: %s", lease.rig, exc)
            except Exception:
                log.exception("%s: unexpected error renewing the lease", lease.rig)

    def _lose(self, lease: Lease, error: LeaseLost) -> None:
        self.remove(lease)
        self.lost.append(LostLease(replace(lease), error))
        log.error("lease lost: %s", error)
        if self.on_lost is not None:
            try:
                self.on_lost(lease, error)
            except Exception:
                log.exception("%s: on_lost callback failed", lease.rig)
