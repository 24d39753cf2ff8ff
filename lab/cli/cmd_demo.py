"""``paylab demo`` (the main job of ``make demo``) and ``paylab selfcheck``."""

from __future__ import annotations

import argparse

from ..demo import run_demo
from ..selfcheck import CheckResult, run_selfcheck
from .output import emit, hexs


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``demo`` and ``selfcheck``."""
    s = sub.add_parser("selfcheck", help="known-answer self-check of the protocol core")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=run_selfcheck_command, prog=s.prog)
    d = sub.add_parser("demo", help="self-check, then a sample qPBOC online purchase end to end")
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
    emit(lines, f"demo: {len(results) - len(failed)}/{len(results)} self-checks passed; "
                f"transaction {verdict}, ARPC {hexs(transcript.arpc)}")
    return 1 if failed or not transcript.approved else 0
