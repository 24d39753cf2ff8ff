"""Rig leases, quarantine and run history in the lab database, on SQLite (WAL file, fresh per test) and on
a private PostgreSQL server (:class:`PostgresServer`, one database per module, emptied per test).

Contention is real: threads sharing an engine, and separate Python processes racing through the same
rigs; a lease holder process with a heartbeat is SIGKILLed and its rig must come free after the TTL.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
from sqlalchemy.exc import IntegrityError

from paylab.lab.backend.pgserver import PostgresServer, PostgresUnavailable
from paylab.lab.campaign import (
    Heartbeat,
    LeaseLost,
    LeaseManager,
    OwnerRecord,
    RigBusy,
    RigQuarantined,
    RunHistory,
    Verdict,
    lab_db_url,
    open_lab_db,
)
from paylab.lab.campaign.db import LabBase

PROCESS_TIMEOUT_S = 60.0


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg_server():
    try:
        server = PostgresServer().start()
    except PostgresUnavailable as exc:
        pytest.fail(f"PostgreSQL is required for the lab database tests (apt-get install postgresql): {exc}")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pg_lab_url(pg_server):
    return pg_server.create_database("lab_tests")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/lab.db"
    return request.getfixturevalue("pg_lab_url")  # one database for the module, emptied per test


@pytest.fixture
def engine(db_url):
    engine = open_lab_db(db_url)
    with engine.begin() as conn:
        for table in reversed(LabBase.metadata.sorted_tables):
            conn.execute(table.delete())
    yield engine
    engine.dispose()


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def manager(engine, clock):
    return LeaseManager(engine, clock=clock)


ALICE = OwnerRecord(user="alice", host="lab-2", pid=4242, campaign_id="nightly-17")


# -- acquire / release / expiry ------------------------------------------------------------------------


def test_acquire_and_release(manager):
    lease = manager.acquire("rig-1", "worker-a", ttl=30, owner=ALICE)
    assert lease is not None
    assert lease.rig == "rig-1"
    assert lease.expires_at == lease.acquired_at + 30
    assert manager.acquire("rig-1", "worker-b", ttl=30) is None
    assert manager.holder_of("rig-1").holder == "worker-a"
    assert [info.rig for info in manager.leases()] == ["rig-1"]
    assert manager.release(lease) is True
    assert manager.holder_of("rig-1") is None
    assert manager.release(lease) is False  # idempotent, tells it was not held any more
    other = manager.acquire("rig-1", "worker-b", ttl=30)
    assert other is not None
    assert other.lease_id != lease.lease_id
    assert manager.acquire("rig-2", "worker-a", ttl=30) is not None  # rigs are independent
    with pytest.raises(ValueError, match="TTL"):
        manager.acquire("rig-3", "worker-a", ttl=0)


def test_expired_lease_is_taken_over_and_the_old_holder_loses_it(manager, clock):
    first = manager.acquire("rig-1", "worker-a", ttl=10)
    clock.advance(9.9)
    assert manager.acquire("rig-1", "worker-b", ttl=10) is None
    clock.advance(0.1)  # exactly at expiry the rig is free
    assert manager.holder_of("rig-1") is None
    second = manager.acquire("rig-1", "worker-b", ttl=10)
    assert second is not None
    with pytest.raises(LeaseLost, match="taken over") as caught:
        manager.renew(first)
    assert "worker-b" in str(caught.value)
    assert manager.release(first) is False  # the old holder cannot free the new holder's rig
    assert manager.holder_of("rig-1").lease_id == second.lease_id


def test_renew_extends_and_an_expired_lease_cannot_be_renewed(manager, clock):
    lease = manager.acquire("rig-1", "worker-a", ttl=10)
    clock.advance(8)
    manager.renew(lease)
    assert lease.expires_at == clock.now + 10
    clock.advance(9)
    assert manager.acquire("rig-1", "worker-b", ttl=10) is None  # still alive thanks to the renewal
    manager.renew(lease, ttl=20)
    assert lease.ttl_s == 20
    clock.advance(20)
    with pytest.raises(LeaseLost, match="expired"):
        manager.renew(lease)


def test_owner_record_message(engine, clock):
    manager = LeaseManager(engine, clock=clock)
    manager.acquire("rig-7", "nightly-17/w0", ttl=60, owner=ALICE)
    info = manager.holder_of("rig-7")
    assert info.owner == ALICE
    message = info.describe()
    assert message.startswith("rig-7 held by alice@lab-2 pid 4242 for campaign nightly-17 until ")
    assert message.split(" until ")[1].startswith("2027-01-15T08:01:00Z")
    real = LeaseManager(engine)  # real clock: the fake-clock lease expires far in the future
    with pytest.raises(RigBusy, match="held by alice@lab-2 pid 4242 for campaign nightly-17") as caught:
        real.acquire_wait("rig-7", "other", ttl=5, timeout=0.2, poll_s=0.05)
    assert caught.value.held_by.owner.pid == 4242
    mine = OwnerRecord.current("c-1")
    assert mine.pid == os.getpid()
    assert mine.describe().endswith(f"pid {os.getpid()} for campaign c-1")


# -- heartbeat -------------------------------------------------------------------------------------------


def test_heartbeat_keeps_the_lease_alive(engine):
    manager = LeaseManager(engine)
    lease = manager.acquire("rig-1", "worker-a", ttl=1.0)
    first_expiry = lease.expires_at
    with Heartbeat(manager, [lease], interval=0.15) as heartbeat:
        time.sleep(1.25)  # longer than the TTL
        assert manager.acquire("rig-1", "worker-b", ttl=1.0) is None
        assert heartbeat.lost == []
    assert lease.expires_at > first_expiry
    assert manager.holder_of("rig-1").lease_id == lease.lease_id
    assert manager.release(lease)


def test_heartbeat_flags_a_lost_lease(engine, clock):
    manager = LeaseManager(engine, clock=clock)
    taken = manager.acquire("rig-1", "worker-a", ttl=10)
    expired = manager.acquire("rig-2", "worker-a", ttl=10)
    clock.advance(10)  # both expire; another holder takes rig-1 before the next beat
    assert manager.acquire("rig-1", "worker-b", ttl=10) is not None
    fresh = manager.acquire("rig-3", "worker-a", ttl=10)
    both_lost = threading.Event()
    seen: dict[str, LeaseLost] = {}

    def on_lost(lost_lease, error):
        seen[lost_lease.rig] = error
        if len(seen) == 2:
            both_lost.set()

    with Heartbeat(manager, [taken, expired, fresh], interval=0.05, on_lost=on_lost) as heartbeat:
        assert both_lost.wait(10)
        assert [lease.rig for lease in heartbeat.held] == ["rig-3"]
    assert "taken over" in str(seen["rig-1"])
    assert "expired" in str(seen["rig-2"])
    assert {item.lease.rig for item in heartbeat.lost} == {"rig-1", "rig-2"}
    assert manager.holder_of("rig-3").lease_id == fresh.lease_id
    with pytest.raises(ValueError, match="exceed the heartbeat interval"):
        Heartbeat(manager, [fresh], interval=10)


# -- contention ---------------------------------------------------------------------------------------------


def test_threads_contending_exactly_one_wins_each_round(engine):
    manager = LeaseManager(engine)
    stale = LeaseManager(engine, clock=lambda: time.time() - 1000)  # leaves leases that expired long ago
    workers, rounds = 6, 12
    rigs = [f"t-{i}" for i in range(rounds)]
    for rig in rigs[::2]:
        assert stale.acquire(rig, "crashed-job", ttl=1) is not None
    barrier = threading.Barrier(workers, timeout=30)
    wins: dict[str, list[str]] = {rig: [] for rig in rigs}
    lock = threading.Lock()
    errors = []

    def contend(worker: int) -> None:
        try:
            for rig in rigs:
                barrier.wait()
                if manager.acquire(rig, f"worker-{worker}", ttl=60) is not None:
                    with lock:
                        wins[rig].append(f"worker-{worker}")
        except Exception as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=contend, args=(n,)) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert {rig: len(winners) for rig, winners in wins.items()} == dict.fromkeys(rigs, 1)


_CONTENDER = """
import json, sys
from paylab.lab.backend.db import make_engine
from paylab.lab.campaign.leases import LeaseManager
url, holder, rigs = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
engine = make_engine(url)
manager = LeaseManager(engine)
manager.holder_of(rigs[0])  # connect before the start signal
print("ready", flush=True)
sys.stdin.readline()
won = [rig for rig in rigs if manager.acquire(rig, holder, 60) is not None]
print(json.dumps(won), flush=True)
engine.dispose()
"""


def _readline(process: subprocess.Popen, timeout: float) -> str:
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    if not ready:
        raise AssertionError(f"process {process.pid} printed nothing within {timeout} s")
    return process.stdout.readline().strip()


def _reap(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_processes_contending_exactly_one_wins_each_rig(engine, db_url):
    stale = LeaseManager(engine, clock=lambda: time.time() - 1000)
    rigs = [f"p-{i}" for i in range(40)]
    for rig in rigs[1::2]:
        stale.acquire(rig, "crashed-job", ttl=1)
    processes = [subprocess.Popen([sys.executable, "-c", _CONTENDER, db_url, f"proc-{n}", ",".join(rigs)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for n in range(2)]
    try:
        for process in processes:
            assert _readline(process, PROCESS_TIMEOUT_S) == "ready", process.stderr.read()
        for process in processes:
            process.stdin.write("go\n")
            process.stdin.flush()
        outcomes = {}
        for n, process in enumerate(processes):
            out, err = process.communicate(timeout=PROCESS_TIMEOUT_S)
            assert process.returncode == 0, err
            outcomes[f"proc-{n}"] = json.loads(out.strip().splitlines()[-1])
    finally:
        _reap(processes)
    counts = Counter(rig for won in outcomes.values() for rig in won)
    assert counts == Counter(dict.fromkeys(rigs, 1))
    holders = {info.rig: info.holder for info in LeaseManager(engine).leases()}
    assert all(rig in outcomes[holders[rig]] for rig in rigs)


_VICTIM = """
import sys, time
from paylab.lab.backend.db import make_engine
from paylab.lab.campaign.leases import Heartbeat, LeaseManager, OwnerRecord
url, rig, ttl, interval = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
manager = LeaseManager(make_engine(url))
lease = manager.acquire(rig, "victim", ttl, OwnerRecord.current(campaign_id="crash-test"))
if lease is None:
    print("busy", flush=True)
    sys.exit(1)
Heartbeat(manager, [lease], interval).start()
print("held", flush=True)
time.sleep(120)
"""


def test_killed_holder_frees_the_rig_after_the_ttl(engine, db_url):
    ttl = 1.0
    manager = LeaseManager(engine)
    victim = subprocess.Popen([sys.executable, "-c", _VICTIM, db_url, "rig-k", str(ttl), "0.2"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _readline(victim, PROCESS_TIMEOUT_S) == "held", victim.stderr.read()
        info = manager.holder_of("rig-k")
        assert info.owner.pid == victim.pid
        assert info.owner.campaign_id == "crash-test"
        deadline = time.monotonic() + 10
        while manager.holder_of("rig-k").heartbeat_at == info.heartbeat_at and time.monotonic() < deadline:
            time.sleep(0.05)  # wait for one renewal by the victim's heartbeat
        assert manager.holder_of("rig-k").heartbeat_at > info.heartbeat_at
        assert manager.acquire("rig-k", "successor", ttl=30) is None
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        killed_at = time.monotonic()
    finally:
        _reap([victim])
    lease = manager.acquire_wait("rig-k", "successor", ttl=30, timeout=ttl + 10, poll_s=0.05)
    waited = time.monotonic() - killed_at
    assert waited < ttl + 10
    assert manager.holder_of("rig-k").holder == "successor"
    assert manager.release(lease)


# -- quarantine --------------------------------------------------------------------------------------------


def test_quarantine(manager, clock):
    assert manager.quarantined() == {}
    record = manager.quarantine("rig-q", "antenna lost the field 3 times", by=ALICE)
    assert record.by == ALICE.describe()
    assert manager.quarantined()["rig-q"].reason == "antenna lost the field 3 times"
    with pytest.raises(RigQuarantined, match="antenna lost the field") as caught:
        manager.acquire("rig-q", "worker-a", ttl=10)
    assert caught.value.reason == "antenna lost the field 3 times"
    clock.advance(5)
    manager.quarantine("rig-q", "reader unplugged")
    again = manager.quarantined()["rig-q"]
    assert again.reason == "reader unplugged"
    assert again.since == record.since  # quarantined since the first time
    assert "quarantined since" in again.describe()
    assert manager.release_quarantine("rig-q") is True
    assert manager.release_quarantine("rig-q") is False
    assert manager.acquire("rig-q", "worker-a", ttl=10) is not None


# -- run history -----------------------------------------------------------------------------------------


def test_history_resume_finishes_only_what_is_missing(engine):
    history = RunHistory(engine)
    plan = ["suite::t1", "suite::t2", "suite::t3", "suite::t4", "suite::t5"]
    t0 = 1_800_000_000.0
    history.record("c-1", "suite::t1", Verdict.PASSED, rig="rig-1", started_at=t0, finished_at=t0 + 2)
    history.record("c-1", "suite::t2", "failed", rig="rig-1", started_at=t0 + 2, finished_at=t0 + 3)
    history.record("c-1", "suite::t3", Verdict.ERROR, rig="rig-2", started_at=t0, finished_at=t0 + 1, infra=True,
                   detail="RigHostUnreachable: rig-2")
    history.record("c-1", "suite::t4", Verdict.ERROR, rig="rig-2", started_at=t0, finished_at=t0 + 1, infra=True)
    retried = history.record("c-1", "suite::t4", Verdict.PASSED, rig="rig-1", started_at=t0 + 5, finished_at=t0 + 6)
    history.record("c-2", "suite::t5", Verdict.PASSED, started_at=t0, finished_at=t0 + 1)  # another campaign

    assert retried.attempt == 2
    assert retried.duration_s == pytest.approx(1.0)
    assert history.done("c-1") == {"suite::t1", "suite::t2", "suite::t4"}
    assert history.missing("c-1", plan) == ["suite::t3", "suite::t5"]
    assert history.missing("c-2", plan) == plan[:4]
    assert history.next_attempt("c-1", "suite::t3") == 2
    assert history.next_attempt("c-1", "suite::t5") == 1
    latest = history.latest("c-1")
    assert latest["suite::t4"].verdict is Verdict.PASSED
    assert latest["suite::t3"].infra
    assert latest["suite::t3"].detail == "RigHostUnreachable: rig-2"
    assert [(r.test_id, r.attempt) for r in history.results("c-1")][-2:] == [("suite::t4", 1), ("suite::t4", 2)]
    assert set(history.campaigns()) == {"c-1", "c-2"}
    with pytest.raises(IntegrityError):
        history.record("c-1", "suite::t1", Verdict.PASSED, attempt=1, started_at=t0, finished_at=t0)
    with pytest.raises(ValueError, match="bogus"):
        history.record("c-1", "suite::t1", "bogus", started_at=t0)


def test_lab_db_url_defaults(tmp_path, monkeypatch):
    monkeypatch.delenv("PAYLAB_LAB_DB", raising=False)
    monkeypatch.setenv("PAYLAB_LAB_DIR", str(tmp_path / "labdir"))
    assert lab_db_url() == f"sqlite:///{(tmp_path / 'labdir').resolve()}/lab.db"
    assert lab_db_url(lab_dir=tmp_path) == f"sqlite:///{tmp_path.resolve()}/lab.db"
    monkeypatch.setenv("PAYLAB_LAB_DB", "postgresql://lab@db/lab")
    assert lab_db_url() == "postgresql://lab@db/lab"
    assert lab_db_url("sqlite:///x.db") == "sqlite:///x.db"
    engine = open_lab_db(lab_dir=tmp_path)
    try:
        assert LeaseManager(engine).acquire("rig-1", "w", ttl=5) is not None
    finally:
        engine.dispose()
    assert (tmp_path / "lab.db").exists()
