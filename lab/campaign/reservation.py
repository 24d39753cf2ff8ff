"""Reserving a campaign's rigs: leases kept alive by a heartbeat, health checks, quarantine, rig hosts.

A rig is usable by this campaign when (1) its lease was acquired (another holder's live lease makes
it busy: the owner record says who holds it), (2) it is not quarantined, and (3) its health check
passes. A rig failing its check is quarantined (with the failing resources as the reason) and its
lease released, so other campaigns skip it too until someone releases the quarantine.

The built-in ``sim`` rig is brought up by each test session itself; its check here is that the
simulation's prerequisites are installed (pcscd, vpcd...), and its lease is local to this lab
database (several campaigns on one machine still take turns).

Leaving the ``with`` block stops the heartbeat and releases every lease; if the process is killed
instead, the leases expire after their TTL.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

from ..protocol.errors import PaylabError
from .campaign_file import Campaign
from .db import open_campaign_lab_db
from .leases import Heartbeat, Lease, LeaseManager, OwnerRecord, RigBusy, RigQuarantined


class Reservation:
    """Leases, health and hosts of a campaign's rigs (see the module docstring)."""

    def __init__(self, config: Any, campaign: Campaign, campaign_id: str, *,
                 say: Callable[[str], None] = lambda line: None, cancel: threading.Event | None = None) -> None:
        self.config = config
        self.campaign = campaign
        self.campaign_id = campaign_id
        self.say = say
        self.cancel = cancel if cancel is not None else threading.Event()
        self.engine = open_campaign_lab_db(config.lab_db, config.reports_root)  # shared by this reports folder
        self.manager = LeaseManager(self.engine)
        self.owner = OwnerRecord.current(campaign_id)
        self.leases: dict[str, Lease] = {}
        self.rigs: dict[str, Any] = {}
        self.hosts: dict[str, Any] = {}
        self.quarantined: dict[str, str] = {}
        self.lost: set[str] = set()                          # rigs whose lease the heartbeat lost
        self.infra_events: list[tuple[str, str, str]] = []   # (kind, rig, message)
        self.heartbeat = Heartbeat(self.manager, interval=campaign.heartbeat_s,
                                   on_lost=lambda lease, err: self._lost(lease.rig, str(err)))

    def __enter__(self) -> Reservation:
        self.heartbeat.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.heartbeat.stop()
        for lease in list(self.leases.values()):
            try:
                self.manager.release(lease)
            except Exception as error:  # the lease expires by TTL anyway
                self.say(f"  could not release the lease of {lease.rig}: {error}")
        for host in self.hosts.values():
            with contextlib.suppress(Exception):
                host.close()
        self.engine.dispose()

    def _lost(self, rig: str, reason: str) -> None:
        self.infra_events.append(("lease-lost", rig, reason))
        self.say(f"  {rig}: lease lost ({reason}); its share is stopped")
        self.lost.add(rig)
        self.leases.pop(rig, None)

    # -- reserve and check -----------------------------------------------------------------------------
    def reserve_and_check(self, rigs: list[Any]) -> list[str]:
        """Lease, then health-check every rig; returns the names of the usable ones."""
        quarantined = self.manager.quarantined()
        for rig in rigs:
            self.rigs[rig.name] = rig
            if self.cancel.is_set():
                continue
            if rig.name in quarantined:
                reason = quarantined[rig.name].describe()
                self.quarantined[rig.name] = reason
                self.infra_events.append(("quarantined", rig.name, reason))
                self.say(f"  {rig.name}: quarantined ({reason}); its tests move to other rigs")
                continue
            lease = self._acquire(rig.name)
            if lease is None:
                continue
            self.leases[rig.name] = lease
            self.heartbeat.add(lease)
        return self.recheck()

    def _acquire(self, rig: str) -> Lease | None:
        """The rig's lease, waiting up to ``lease_wait_s`` for another holder to let go (in short
        :meth:`LeaseManager.acquire_wait` steps, so a cancelled campaign stops waiting within a second)."""
        deadline = time.monotonic() + self.config.lease_wait_s
        while True:
            step = max(0.0, min(1.0, deadline - time.monotonic()))
            try:
                lease = self.manager.acquire_wait(rig, self.config.holder, self.campaign.lease_ttl_s, self.owner,
                                                  timeout=step, poll_s=min(0.5, self.campaign.heartbeat_s))
            except RigQuarantined as exc:
                self.quarantined[rig] = exc.reason
                self.infra_events.append(("quarantined", rig, exc.reason))
                return None
            except RigBusy as exc:
                if not self.cancel.is_set() and time.monotonic() < deadline:
                    continue
                who = exc.held_by.describe() if exc.held_by is not None else f"{rig} held by another campaign"
                self.infra_events.append(("rig-busy", rig, who))
                self.say(f"  busy: {who}; its tests move to other rigs")
                return None
            self.say(f"  {rig}: reserved (lease {self.campaign.lease_ttl_s:g} s, heartbeat "
                     f"{self.campaign.heartbeat_s:g} s)")
            return lease

    def recheck(self) -> list[str]:
        """Health-check the held rigs again; quarantine (and release) those that fail."""
        healthy = []
        for name in list(self.leases):
            problem = self._health(self.rigs[name])
            if problem is None:
                healthy.append(name)
                continue
            if not getattr(self.rigs[name], "builtin", False):  # the sim rig is rebuilt by every session
                self.manager.quarantine(name, problem, by=self.owner)
            self.quarantined[name] = problem
            self.infra_events.append(("quarantined", name, problem))
            self.say(f"  {name}: health check failed, quarantined: {problem}")
            lease = self.leases.pop(name, None)
            if lease is None:  # the heartbeat lost it meanwhile
                continue
            self.heartbeat.remove(lease)
            self.manager.release(lease)
        return healthy

    def _health(self, rig: Any) -> str | None:
        from paylab.lab.rig.health import check_rig

        if rig.name == "sim":
            from paylab.lab.rig.sim import check_prerequisites

            try:
                check_prerequisites()
            except PaylabError as exc:
                return str(exc)
            return None
        try:
            verdicts = check_rig(rig, timeout=self.campaign.health_timeout_s)
        except PaylabError as exc:
            return str(exc)
        failed = [v for v in verdicts if not v.ok]
        if failed:
            return "; ".join(f"{v.resource}: {v.detail}" for v in failed[:3])
        if rig.host is not None and rig.name not in self.hosts:
            from paylab.lab.rig.binding import open_host

            self.hosts[rig.name] = open_host(rig.name, rig.host)
        return None
