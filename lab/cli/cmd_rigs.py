"""``paylab rigs``: the lab's rigs from the inventory, their health, and the built-in simulated rig.

* ``paylab rigs list [--inventory FILE] [--json]`` — rigs, capabilities, resources;
* ``paylab rigs check [RIG] [--inventory FILE] [--json] [--timeout S]`` — one verdict line per
  resource; exit 0 when all are healthy, 1 when some failed, 2 for a bad inventory (one line naming
  file, line and field). ``sim`` is brought up for the check and stopped after;
* ``paylab rigs up sim [--for SECONDS]`` — keep the simulated rig running in the foreground and
  print what it exposes (PC/SC reader names and the pcscd socket, NFC device paths, the POS serial
  device, backend addresses) until Ctrl-C / SIGTERM, or ``SECONDS``; then stop everything it started.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..protocol.errors import PaylabError


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``rigs`` commands."""
    p = sub.add_parser("rigs", help="rigs of the inventory: list, health check, bring up the simulated rig")
    rsub = p.add_subparsers(dest="rigs_command", metavar="SUBCOMMAND", required=True)
    ls = rsub.add_parser("list", help="rigs, their capabilities and resources")
    ls.add_argument("--inventory", type=Path, help="inventory YAML (default: inventory.yaml, else the bundled example)")
    ls.add_argument("--json", action="store_true", help="print one JSON document")
    ls.set_defaults(func=run_list, prog=ls.prog)
    ck = rsub.add_parser("check", help="health check of every resource of a rig (or of every rig)")
    ck.add_argument("rig", nargs="?", help="rig name (default: every rig of the inventory, sim included)")
    ck.add_argument("--inventory", type=Path, help="inventory YAML (default: inventory.yaml, else the bundled example)")
    ck.add_argument("--json", action="store_true", help="print one JSON document")
    ck.add_argument("--timeout", type=float, default=5.0, help="seconds each resource check may take (default 5)")
    ck.set_defaults(func=run_check, prog=ck.prog)
    up = rsub.add_parser("up", help="run the built-in simulated rig in the foreground until Ctrl-C")
    up.add_argument("rig", choices=["sim"], help="the built-in rig to bring up")
    up.add_argument("--for", dest="duration", type=float, metavar="SECONDS",
                    help="stop by itself after SECONDS (default: run until Ctrl-C/SIGTERM)")
    up.add_argument("--json", action="store_true", help="print what the rig exposes as one JSON document")
    up.set_defaults(func=run_up, prog=up.prog)

    le = rsub.add_parser("leases", help="who holds which rig, which rigs are quarantined; release a quarantine")
    le.add_argument("--lab-db", default=None, help="lab database URL (default: $PAYLAB_LAB_DB, else the one of "
                                                   "the reports folder)")
    le.add_argument("--reports", type=Path, default=Path("reports"), help="reports folder whose lab database "
                                                                         "to use (default: reports)")
    le.add_argument("--release-quarantine", metavar="RIG", help="put RIG back in service")
    le.add_argument("--json", action="store_true", help="print one JSON document")
    le.set_defaults(func=run_leases, prog=le.prog)


def _inventory(args: argparse.Namespace) -> Any:
    from ..rig.inventory import load_inventory

    return load_inventory(args.inventory)


def _resource_rows(rig: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if rig.host is not None:
        rows.append({"kind": "host", "name": rig.host.name, "where": f"ssh {rig.host.name}",
                     "identity": rig.host.identity.as_dict()})
    for r in rig.readers:
        rows.append({"kind": r.kind, "name": r.name, "where": r.location, "contactless": r.contactless,
                     "identity": r.identity.as_dict()})
    for a in rig.antennas:
        rows.append({"kind": a.kind, "name": a.name, "where": a.device, "identity": a.identity.as_dict()})
    for pos in rig.pos:
        rows.append({"kind": pos.kind, "name": pos.name, "where": f"{pos.url} @{pos.baudrate}",
                     "identity": pos.identity.as_dict()})
    for s in rig.slots:
        card = s.profile or ("blank" if not s.issued else "card")
        rows.append({"kind": s.kind, "name": s.name, "where": f"in {s.holder or '-'}: {card}",
                     "identity": s.identity.as_dict()})
    for h in rig.handsets:
        rows.append({"kind": h.kind, "name": h.name, "where": f"SE {h.slot}, taps on {h.antenna or '-'}",
                     "identity": h.identity.as_dict()})
    if rig.backend.configured:
        where = ", ".join(filter(None, [f"acquirer {rig.backend.acquirer[0]}:{rig.backend.acquirer[1]}"
                                        if rig.backend.acquirer else None, rig.backend.http_url]))
        rows.append({"kind": "backend", "name": "backend", "where": where, "identity": {}})
    return rows


def run_list(args: argparse.Namespace) -> int:
    inventory = _inventory(args)
    source = str(inventory.source) if inventory.source else "(none)"
    if args.json:
        data = {"inventory": source, "rigs": [
            {"name": rig.name, "description": rig.description, "capabilities": list(rig.capabilities),
             "builtin": rig.builtin, "source": rig.source, "resources": _resource_rows(rig)}
            for rig in inventory.rigs.values()]}
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return 0
    print(f"inventory: {source}")
    for rig in inventory.rigs.values():
        print(f"{rig.name}: {rig.description}" if rig.description else f"{rig.name}:")
        print(f"  capabilities: {', '.join(rig.capabilities)}")
        if rig.builtin:
            print("  resources: allocated at bring-up (paylab rigs up sim prints them)")
        for row in _resource_rows(rig):
            ident = row["identity"]
            extra = f"  [{', '.join(f'{k} {v}' for k, v in ident.items())}]" if ident else ""
            print(f"  {row['kind']:<17} {row['name']:<14} {row['where']}{extra}")
    print(f"{len(inventory.rigs)} rigs")
    return 0


def _check_one(rig: Any, timeout: float) -> tuple[list[Any], str | None]:
    """Verdicts of one rig, or ([], why) when the simulated rig cannot come up."""
    from ..rig.health import check_rig

    if not rig.builtin:
        return check_rig(rig, timeout=timeout), None
    from ..rig.sim import SimRig

    try:
        with SimRig() as sim:
            return check_rig(sim.bound, timeout=timeout), None
    except PaylabError as exc:
        return [], str(exc)


def run_check(args: argparse.Namespace) -> int:
    inventory = _inventory(args)
    rigs = [inventory.get(args.rig)] if args.rig else list(inventory.rigs.values())
    report: list[dict[str, Any]] = []
    failed = total = 0
    lines: list[str] = []
    for rig in rigs:
        verdicts, unavailable = _check_one(rig, args.timeout)
        lines.append(f"rig {rig.name}:")
        if unavailable is not None:
            failed += 1
            total += 1
            lines.append(f"FAIL rig               {rig.name:<14} cannot bring the rig up: {unavailable}")
        for verdict in verdicts:
            total += 1
            failed += not verdict.ok
            lines.append(verdict.line())
        report.append({"rig": rig.name, "unavailable": unavailable,
                       "verdicts": [v.as_dict() for v in verdicts]})
    result = f"ok: {total} resources healthy" if not failed else f"FAIL: {failed} of {total} resources failed"
    if args.json:
        sys.stdout.write(json.dumps({"ok": not failed, "failed": failed, "total": total, "rigs": report,
                                     "result": result}, indent=2) + "\n")
    else:
        for line in lines:
            print(line)
        print(result)
    return 1 if failed else 0


def run_up(args: argparse.Namespace) -> int:
    from ..rig.sim import SimRig

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    sim = SimRig()
    try:
        sim.start()
        described = sim.describe()
        if args.json:
            sys.stdout.write(json.dumps(described, indent=2) + "\n")
        else:
            for line in sim.describe_lines():
                print(line)
        status = sys.stderr if args.json else sys.stdout  # --json: stdout holds the one JSON document
        print(f"ready (started in {sim.started_in_s:.2f} s); Ctrl-C stops the rig", file=status, flush=True)
        deadline = None if args.duration is None else time.monotonic() + args.duration
        while not stop.wait(0.2):  # short waits: signal handlers run between them
            if deadline is not None and time.monotonic() >= deadline:
                break
        print("stopping", file=status, flush=True)
    finally:
        problems = sim.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for problem in problems:
        sys.stderr.write(f"{args.prog}: while stopping: {problem}\n")
    print("stopped", file=sys.stderr if args.json else sys.stdout, flush=True)
    return 0


def run_leases(args: argparse.Namespace) -> int:
    """Leases and quarantine of the lab database the campaigns of ``--reports`` share."""
    import json

    from ..campaign.db import open_campaign_lab_db
    from ..campaign.leases import LeaseManager

    engine = open_campaign_lab_db(args.lab_db, args.reports)
    try:
        manager = LeaseManager(engine)
        released = None
        if args.release_quarantine:
            released = manager.release_quarantine(args.release_quarantine)
        leases = manager.leases()
        quarantined = manager.quarantined()
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps({"leases": [{"rig": i.rig, "held_by": i.describe()} for i in leases],
                          "quarantined": {rig: q.describe() for rig, q in quarantined.items()},
                          "released": released}, indent=2))
        return 0
    for info in leases:
        print(f"lease       {info.describe()}")
    for rig, record in quarantined.items():
        print(f"quarantined {rig}: {record.describe()}")
    if args.release_quarantine:
        print(f"{args.release_quarantine}: " + ("back in service" if released else "was not quarantined"))
    print(f"{len(leases)} lease(s), {len(quarantined)} quarantined rig(s)")
    return 0
