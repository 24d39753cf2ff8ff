"""``paylab demo`` (the main job of ``make demo``) and ``paylab selfcheck``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..demo import run_demo
from ..selfcheck import CheckResult, run_selfcheck
from .output import emit, hexs


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``demo`` and ``selfcheck``."""
    s = sub.add_parser("selfcheck", help="known-answer self-check of the protocol core")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=run_selfcheck_command, prog=s.prog)
    d = sub.add_parser("demo", help="self-check, a decoded sample transaction, then an emulated eSE issued over "
                                      "SCP03 tapping on a POS against the embedded backend")
    d.add_argument("--reports", type=Path, default=Path("reports"), help="where the demo report folder goes")
    d.set_defaults(func=run_demo_command, prog=d.prog)


def _check_lines(results: list[CheckResult]) -> list[str]:
    return [f"  [{'PASS' if r.passed else 'FAIL'}] {r.name:<42} {r.source} ({r.duration_ms:.2f} ms)"
            + ("" if r.passed else f": got {r.detail}") for r in results]


def run_selfcheck_command(args: argparse.Namespace) -> int:
    results = run_selfcheck()
    failed = [r for r in results if not r.passed]
    summary = f"selfcheck: {len(results) - len(failed)}/{len(results)} passed"
    emit(["paylab protocol core self-check:", *_check_lines(results)], summary, as_json=args.json,
         data={"passed": not failed, "checks": [r.__dict__ for r in results]})
    return 1 if failed else 0


def run_demo_command(args: argparse.Namespace) -> int:
    results = run_selfcheck()
    failed = [r for r in results if not r.passed]
    lines = ["paylab demo", "", "Protocol core self-check:", *_check_lines(results), "",
             "Sample qPBOC online purchase (test card, test keys; PAN and track 2 masked):"]
    transcript = run_demo()
    lines.extend(transcript.lines)
    verdict = "approved" if transcript.approved else "declined"
    lines += ["", "Simulated rig: emulated eSE, embedded backend, POS over ISO 8583 TCP (test card, test keys):"]
    from ..demo_rig import run_rig_demo  # the backend stack is imported only for the demo

    rig = run_rig_demo(args.reports)
    lines.extend(rig.lines)
    rig_ok = rig.online_response == "00" and rig.offline_approved and rig.ledger_ok
    ok = not failed and transcript.approved and rig_ok
    emit(lines, f"demo: {len(results) - len(failed)}/{len(results)} self-checks passed; sample transaction {verdict} "
                f"(ARPC {hexs(transcript.arpc)}); rig: online {rig.online_response}, offline "
                f"{'approved' if rig.offline_approved else 'declined'}, "
                f"ledger {'balanced' if rig.ledger_ok else 'BROKEN'}")
    return 0 if ok else 1
