"""Campaign orchestration overhead per test (issue 6 goal: ≤ 5 ms per test).

The same N trivial tests (each ``assert True``, tagged with a requirement id) run twice, each in a
fresh process on the ``sim`` rig's name (the tests do not touch the rig):

1. plain pytest (``python -m pytest SUITE -p paylab.fixtures.pytest_plugin``): the baseline;
2. ``paylab run CAMPAIGN`` on the same suite: validation, lease + heartbeat, health check,
   collection, the share's pytest with result lines (fsynced per test), progress, the record, the
   auditor report, JUnit, the signed manifest (and, in a second campaign run, the Allure report).

Overhead per test = (campaign wall time − plain wall time) / N. Numbers, not assertions.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_MS = 5.0
TEST = '''
import pytest

@pytest.mark.requirements("REQ-DRV-PCSC-01")
@pytest.mark.parametrize("n", range({n}))
def test_trivial(n):
    assert True
'''


def timed(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])}... exited {proc.returncode}:\n"
                         f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return elapsed


def measure(n: int, allure: bool) -> tuple[float, float]:
    """(plain pytest wall time, campaign wall time) for ``n`` trivial tests."""
    with tempfile.TemporaryDirectory(prefix="paylab-bench-overhead-") as tmp:
        root = Path(tmp)
        (root / "suites").mkdir()
        (root / "suites" / "test_trivial.py").write_text(TEST.format(n=n))
        (root / "overhead.yaml").write_text(
            f"campaign: overhead\nrigs:\n  - name: sim\nsuites:\n  - path: suites\n    framework: pytest\n"
            f"report:\n  allure: {'true' if allure else 'false'}\n  previous_runs: 0\n")
        plain_cmd = [sys.executable, "-m", "pytest", "suites", "-q", "-p", "no:cacheprovider", "-p",
                     "paylab.fixtures.pytest_plugin"]
        timed(plain_cmd, root)  # warm the file cache and bytecode
        plain = min(timed(plain_cmd, root) for _ in range(2))
        campaign = timed([sys.executable, "-m", "paylab.lab.cli.main", "run", "overhead.yaml", "--reports",
                          str(root / "reports"), "--no-progress"], root)
    return plain, campaign


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=500, help="number of trivial tests (default 500)")
    parser.add_argument("--large", type=int, default=2000, help="second size, for the marginal cost (default 2000)")
    args = parser.parse_args()
    print(f"campaign orchestration overhead on the sim rig (python {sys.version.split()[0]}, "
          f"goal ≤ {GOAL_MS:g} ms/test)")
    rows = {}
    for n, allure in ((args.n, False), (args.n, True), (args.large, False), (args.large, True)):
        plain, campaign = measure(n, allure)
        rows[(n, allure)] = (plain, campaign)
        per_test = (campaign - plain) / n * 1000
        label = f"{n} tests, {'with' if allure else 'no'} Allure"
        print(f"  {label:<26} plain pytest {plain:6.2f} s   paylab run {campaign:6.2f} s   "
              f"overhead {per_test:5.2f} ms/test ({'met' if per_test <= GOAL_MS else 'NOT met'}; "
              f"ratio {campaign / plain:.2f}×)")
    for allure in (False, True):
        (p1, c1), (p2, c2) = rows[(args.n, allure)], rows[(args.large, allure)]
        marginal = ((c2 - p2) - (c1 - p1)) / (args.large - args.n) * 1000
        fixed = (c1 - p1) - marginal * args.n / 1000
        print(f"  split ({'with' if allure else 'no'} Allure): fixed start-up/report cost ≈ {fixed:.2f} s per "
              f"campaign, marginal ≈ {marginal:.2f} ms per test")


if __name__ == "__main__":
    main()
