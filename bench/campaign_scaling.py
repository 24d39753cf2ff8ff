"""Speed-up of a rig-bound campaign on 4 rigs vs 1 (issue 6 goal: ≥ 3.5×).

Every test holds its rig for a fixed time (``time.sleep``: waiting on "hardware", as a tap does), so a
campaign's length is set by how many rigs share the work. Four bench rigs are defined in a temporary
inventory; they need no hardware (each has one resource, an acquirer address that is a listening
socket of this script, which their health check connects to). The same campaign runs once with one
rig and once with four (``rigs: [{capabilities: [backend], count: K}]``), each a real ``paylab run``.

Printed: wall time of each campaign, the execution span (first test start → last test end, from the
result lines) and both speed-ups. Numbers, not assertions.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL = 3.5
TEST = '''
import time
import pytest

@pytest.mark.requirements("REQ-DRV-PCSC-01")
@pytest.mark.needs("backend")
@pytest.mark.parametrize("n", range({n}))
def test_rig_bound(n):
    time.sleep({hold})  # the rig is busy: a tap, a POS round trip
'''


def run_campaign(root: Path, rigs: int) -> tuple[float, float]:
    """(wall time, execution span) of the campaign on ``rigs`` rigs."""
    camp = root / f"scale-{rigs}.yaml"
    camp.write_text(f"campaign: scale{rigs}\nrigs:\n  - capabilities: [backend]\n    count: {rigs}\n"
                    "suites:\n  - path: suites\n    framework: pytest\nreport:\n  allure: false\n  previous_runs: 0\n")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "paylab.lab.cli.main", "run", str(camp), "--reports",
                           str(root / "reports"), "--inventory", str(root / "inventory.yaml"), "--no-progress"],
                          cwd=root, capture_output=True, text=True, timeout=1800, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"paylab run exited {proc.returncode}:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
    lines = [json.loads(line) for path in (root / "reports").glob(f"scale{rigs}-*/rigs/*/results.jsonl")
             for line in path.read_text().splitlines()]
    used = {line["rig"] for line in lines}
    if len(used) != rigs:
        raise SystemExit(f"expected {rigs} rig(s) in use, got {sorted(used)}")
    return wall, max(line["finished"] for line in lines) - min(line["started"] for line in lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=400, help="number of rig-bound tests (default 400)")
    parser.add_argument("--hold", type=float, default=0.2, help="seconds each test holds its rig (default 0.2)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="paylab-bench-scaling-") as tmp, socket.socket() as acquirer:
        root = Path(tmp)
        acquirer.bind(("127.0.0.1", 0))
        acquirer.listen(128)
        port = acquirer.getsockname()[1]
        (root / "suites").mkdir()
        (root / "suites" / "test_rig_bound.py").write_text(TEST.format(n=args.n, hold=args.hold))
        (root / "inventory.yaml").write_text("rigs:\n" + "".join(
            f"  bench-{i}:\n    capabilities: [backend]\n    backend: {{acquirer: \"127.0.0.1:{port}\"}}\n"
            for i in range(1, 5)))
        one = run_campaign(root, 1)
        four = run_campaign(root, 4)
    print(f"rig-bound campaign: {args.n} tests holding their rig {args.hold * 1000:.0f} ms each "
          f"(ideal serial time {args.n * args.hold:.1f} s)")
    print(f"  1 rig    wall {one[0]:6.2f} s   execution span {one[1]:6.2f} s")
    print(f"  4 rigs   wall {four[0]:6.2f} s   execution span {four[1]:6.2f} s")
    wall_ratio, span_ratio = one[0] / four[0], one[1] / four[1]
    print(f"  speed-up: whole campaign {wall_ratio:.2f}×, execution {span_ratio:.2f}× "
          f"(goal ≥ {GOAL:g}×: {'met' if wall_ratio >= GOAL else 'NOT met'} for the whole campaign, "
          f"{'met' if span_ratio >= GOAL else 'NOT met'} for execution)")


if __name__ == "__main__":
    main()
