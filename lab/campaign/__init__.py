"""Campaign bookkeeping in the lab database (issue 6): rig leases with a TTL renewed by a heartbeat
(:mod:`.leases`), rig quarantine, and the run history that ``--resume`` reads (:mod:`.history`).

    engine = open_lab_db()                          # sqlite:///<lab dir>/lab.db, or $PAYLAB_LAB_DB
    leases = LeaseManager(engine)
    lease = leases.acquire("rig-1", holder="nightly-17/worker-0", ttl=30,
                           owner=OwnerRecord.current(campaign_id="nightly-17"))
    with Heartbeat(leases, [lease], interval=5, on_lost=stop_using_rig):
        ...                                         # run tests on rig-1
    leases.release(lease)
"""

from .db import create_lab_tables, default_lab_dir, lab_db_url, open_lab_db
from .history import RunHistory, RunResult, Verdict
from .leases import (
    Heartbeat,
    Lease,
    LeaseError,
    LeaseInfo,
    LeaseLost,
    LeaseManager,
    LostLease,
    OwnerRecord,
    QuarantineRecord,
    RigBusy,
    RigQuarantined,
)

__all__ = [
    "Heartbeat", "Lease", "LeaseError", "LeaseInfo", "LeaseLost", "LeaseManager", "LostLease", "OwnerRecord",
    "QuarantineRecord", "RigBusy", "RigQuarantined", "RunHistory", "RunResult", "Verdict", "create_lab_tables",
    "default_lab_dir", "lab_db_url", "open_lab_db",
]
