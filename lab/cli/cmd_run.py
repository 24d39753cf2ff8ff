"""``paylab run CAMPAIGN``: run a campaign on the rigs it names and write its reports.

Exit status: 0 every test passed; 1 product failures (or a full PAN/key left unmasked in the reports);
3 only infrastructure errors, tests not run, or no test selected at all; 2 bad input (campaign file,
inventory, a suite that fails to collect, ``--resume`` of a changed campaign file), with one line such as
``FILE:LINE: field: problem``.
SIGINT/SIGTERM stop the run: the running shares are killed, what was recorded stays, the leases are
released (and would expire by themselves after their TTL if the runner were killed outright);
``--resume ID`` then finishes only what is missing.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from types import FrameType


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``run``."""
    p = sub.add_parser("run", help="run a campaign (suites x rigs) and write its reports under reports/<id>/")
    p.add_argument("campaign", type=Path, help="campaign YAML file (e.g. suites/campaigns/nightly.yaml)")
    p.add_argument("--inventory", type=Path, default=None, help="rig inventory YAML (default: the lab checkout's)")
    p.add_argument("--reports", type=Path, default=Path("reports"), help="where reports/<campaign id>/ goes")
    p.add_argument("--resume", metavar="ID", default=None, help="finish the campaign reports/ID left unfinished")
    p.add_argument("--lab-db", default=None, help="lab database URL for leases and history "
                                                  "(default: $PAYLAB_LAB_DB, else sqlite in REPORTS/.lab/)")
    p.add_argument("--signing-key", type=Path, default=None, help="Ed25519 key signing the manifest "
                                                                  "(default: the bundled TEST key)")
    p.add_argument("--wait-rigs", type=float, default=0.0, metavar="SECONDS",
                   help="wait up to this long for a rig held by another campaign (default 0: move its tests)")
    p.add_argument("--no-progress", action="store_true", help="plain progress lines even on a terminal")
    p.set_defaults(func=run_command, prog=p.prog)


def run_command(args: argparse.Namespace) -> int:
    from ..campaign.runner import CampaignRunner, RunConfig

    def say(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    config = RunConfig(campaign_path=args.campaign, inventory=args.inventory, reports_root=args.reports,
                       resume=args.resume, lab_db=args.lab_db, progress=not args.no_progress,
                       signing_key=args.signing_key, on_event=say, lease_wait_s=max(0.0, args.wait_rigs))
    runner = CampaignRunner(config)

    def stop(signum: int, frame: FrameType | None) -> None:
        say(f"paylab run: {signal.Signals(signum).name}: stopping the shares, keeping the results")
        runner.cancel.set()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        result = runner.run()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    for line in result.lines:
        say(line)
    return result.exit_code
