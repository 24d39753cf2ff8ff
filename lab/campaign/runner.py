"""``paylab run CAMPAIGN``: resolve rigs, check and reserve them, run their shares in parallel, retry
infrastructure errors, and write the campaign's reports.

Steps (issue 6, "Campaigns"):

1. the campaign file and the inventory are validated first: an error stops everything before any
   rig is touched (``FILE:LINE: field: problem``);
2. rigs are resolved by name or capability, **reserved** (leases with a TTL renewed by a heartbeat,
   :mod:`.leases`: a crashed or killed run frees its rigs by itself) and health-checked; a rig that
   fails its check is quarantined, and its tests move to another rig with the capabilities or are
   reported as not run;
3. the tests are collected (in parallel with step 2) and assigned (:mod:`.plan`): a test that no rig of
   the campaign could run is *deselected* with the missing capability; one whose capable rigs are all
   busy, quarantined or lost is *not run* (an infrastructure matter, exit 3). Each rig's share runs in its own thread
   (pytest with pytest-xdist, Robot with pabot; locally or on the rig's host over ssh, :mod:`.execute`),
   with a progress bar per rig;
4. tests that ended in an infrastructure error are re-run per the retry policy (on a healthy rig);
   product failures are not, unless the policy says so. With ``repeats: N`` (stability campaigns) steps
   3-4 run N times; every result line carries its ``repeat`` (``attempt`` counts retries within it), and
   the record keeps one result per (test, repeat) (ids suffixed `` [repeat r/N]``);
5. the campaign record (:mod:`paylab.lab.report.record`) is built from the result lines, and the
   auditor report, the Allure report, the merged Robot log, JUnit XML and the signed manifest are
   written under ``reports/<campaign id>/``.

``--resume ID`` re-opens ``reports/ID`` and runs only the (test, repeat) pairs that have no final result
yet (never run, not run, or whose last attempt was an infrastructure error); it refuses when the campaign
file's SHA-256 differs from the one in ``plan.json``. A cancel (SIGINT/SIGTERM) at any point leaves a
"not run: cancelled" line for every (test, repeat) without one. A campaign that selects no test exits 3
(nothing ran is not a pass); unmasked secrets found in the report folder make it exit 1.

Leases live in ``$PAYLAB_LAB_DB`` (``--lab-db``), else in ``REPORTS/.lab/lab.db`` (shared by every
campaign writing to the same reports folder). A killed runner's share dies with it
(``PR_SET_PDEATHSIG``); its leases expire after their TTL.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paylab.fixtures.results import final_results, read_results, result_key

from ..protocol.errors import PaylabError
from .campaign_file import Campaign, load_campaign
from .execute import ShareOutcome, ShareRun, StopFlag, infra_line, run_share
from .plan import Plan, PlannedTest, Share, assign, collect_pytest, collect_robot


class CampaignError(PaylabError):
    """The campaign cannot run (no rig, rigs held by others, collection failed): one line saying why."""


@dataclass
class RunConfig:
    """What ``paylab run`` was asked to do."""

    campaign_path: Path
    inventory: Path | None = None
    reports_root: Path = Path("reports")
    resume: str | None = None
    lab_db: str | None = None
    progress: bool = True
    signing_key: Path | None = None
    cwd: Path = field(default_factory=Path.cwd)
    holder: str = field(default_factory=lambda: f"{getpass.getuser()}@{socket.gethostname()}:{os.getpid()}")
    lease_wait_s: float = 0.0
    on_event: Callable[[str], None] | None = None


@dataclass
class CampaignRun:
    """Where everything landed, and the overall status."""

    campaign_id: str
    out_dir: Path
    record_path: Path | None = None
    auditor_report: Path | None = None
    allure_report: Path | None = None
    exit_code: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    infra_events: list[tuple[str, str, str]] = field(default_factory=list)


# -- results ------------------------------------------------------------------------------------------------
def is_done(line: dict[str, Any], campaign: Campaign, *, resuming: bool = False) -> bool:
    """True when the test needs no further attempt. On ``--resume``, a test whose last attempt was an
    infrastructure error or that was not run is missing again (whatever its retries were)."""
    if line["verdict"] in ("passed", "skipped", "deselected"):
        return True
    if line.get("category") == "infra" or line["verdict"] == "not-run":
        return not resuming and not needs_retry(line, campaign) and line["verdict"] != "not-run"
    return not needs_retry(line, campaign)


def needs_retry(line: dict[str, Any], campaign: Campaign) -> bool:
    attempt = int(line.get("attempt", 1))
    if line["verdict"] in ("failed", "error") and line.get("category") == "infra":
        return attempt <= campaign.retry.infra
    if line["verdict"] in ("failed", "error") and line.get("category") == "product":
        return attempt <= campaign.retry.product
    return False


def _ended(outcome: ShareOutcome, test: PlannedTest, share: Share) -> str:
    """Why ``test`` has no result although its share ran to the end: the exit status of its process (the
    local share runs pytest first, then one pabot per Robot suite path; a remote share reports none)."""
    codes = list(outcome.exit_codes)
    has_pytest = any(t.framework == "pytest" for t in share.tests)
    if test.framework == "pytest" and has_pytest and codes:
        return f"pytest exited {codes[0]} before this test reported a result"
    robot_codes = codes[1:] if has_pytest else codes
    if test.framework == "robot" and robot_codes:
        return f"pabot exited {max(robot_codes)} before this test reported a result"
    return "the test process ended before this test reported a result"


# -- the run ------------------------------------------------------------------------------------------------
class CampaignRunner:
    """One execution of a campaign (see the module docstring)."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.cancel = threading.Event()
        self._say = config.on_event or (lambda line: None)

    # rigs ----------------------------------------------------------------------------------------------
    def resolve_rigs(self, campaign: Campaign, inventory: Any) -> list[Any]:
        rigs: dict[str, Any] = {}
        for selector in campaign.rigs:
            if selector.name is not None:
                rig = inventory.get(selector.name)
                rigs[rig.name] = rig
            else:
                found = inventory.with_capabilities(*selector.capabilities)
                if not found:
                    raise CampaignError(f"no rig in the inventory has all of {', '.join(selector.capabilities)}")
                for rig in found[: selector.count or len(found)]:
                    rigs[rig.name] = rig
        return list(rigs.values())

    def collect(self, campaign: Campaign, rig_name: str) -> list[PlannedTest]:
        tests: list[PlannedTest] = []
        for suite in campaign.suites:
            if suite.framework == "pytest":
                tests += collect_pytest(suite, cwd=self.config.cwd, rig=rig_name, inventory=self.config.inventory)
            else:
                tests += collect_robot(suite)
        seen: set[str] = set()
        unique = []
        for test in tests:
            if test.id not in seen:
                seen.add(test.id)
                unique.append(test)
        return unique

    # execution -------------------------------------------------------------------------------------------
    def run_round(self, plan: Plan, campaign: Campaign, out: Path, attempt: int, campaign_id: str,
                  reservation: Any, *, repeat: int = 1) -> dict[str, ShareOutcome]:
        """Run every rig's share of ``plan`` in parallel (one thread per rig); tests that did not report
        a result (killed share, lost host, lost lease, cancel) get an infrastructure line."""
        workers = {s.path: s.workers for s in campaign.suites}
        runs: dict[str, ShareRun] = {}
        for name, share in plan.shares.items():
            if not share.tests:
                continue
            rig = reservation.rigs.get(name)
            host_res = getattr(rig, "host", None)
            runs[name] = ShareRun(share=share, out_dir=out / "rigs" / name, attempt=attempt, repeat=repeat,
                                  inventory=self.config.inventory, cwd=self.config.cwd, workers=workers,
                                  test_timeout_s=campaign.test_timeout_s, host=reservation.hosts.get(name),
                                  campaign_id=campaign_id, allure=campaign.allure,
                                  remote_python=getattr(host_res, "python", None) or "python3",
                                  remote_root=getattr(host_res, "workdir", None) or "paylab-runs")
        outcomes: dict[str, ShareOutcome] = {}
        threads = []

        def work(name: str, run: ShareRun) -> None:
            stop = StopFlag(self.cancel, lambda: name in reservation.lost)
            try:
                outcomes[name] = run_share(run, stop)
            except Exception as exc:  # a runner bug must not lose the other rigs' results
                outcomes[name] = ShareOutcome(name, infra_error=f"runner error: {type(exc).__name__}: {exc}")

        for name, run in runs.items():
            thread = threading.Thread(target=work, args=(name, run), name=f"share-{name}", daemon=True)
            thread.start()
            threads.append(thread)
        from .progress import watch

        watch(runs, threads, enabled=self.config.progress, say=self._say)
        for name, run in runs.items():
            done = {line["id"] for line in read_results([run.results_path])
                    if int(line.get("attempt", 1)) == attempt and int(line.get("repeat", 1)) == repeat}
            outcome = outcomes.get(name) or ShareOutcome(name, infra_error="share did not finish")
            if name in reservation.lost and not self.cancel.is_set():
                outcome.infra_error = f"lease on {name} lost: the share was stopped"
            missing = [t for t in run.share.tests if t.id not in done]
            if missing:
                from paylab.fixtures.results import ResultWriter

                writer = ResultWriter(run.results_path)
                for test in missing:
                    reason = outcome.infra_error or _ended(outcome, test, run.share)
                    writer.write(infra_line(test, name, attempt, f"not run: {reason}", repeat))
        return outcomes

    def prepare(self) -> tuple[Campaign, Any, list[Any]]:
        """Validate the campaign file, the inventory and the rig selectors (nothing runs before this)."""
        from paylab.lab.rig.inventory import load_inventory

        from .campaign_file import check_rigs

        cfg = self.config
        campaign = load_campaign(cfg.campaign_path, base=cfg.cwd)
        inventory = load_inventory(cfg.inventory)
        check_rigs(campaign, inventory)
        return campaign, inventory, self.resolve_rigs(campaign, inventory)

    def run(self) -> CampaignRun:
        cfg = self.config
        campaign, inventory, rigs = self.prepare()
        campaign_id = cfg.resume or f"{campaign.name}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid() % 1000:03d}"
        out = cfg.reports_root / campaign_id
        if cfg.resume and not (out / "plan.json").exists():
            raise CampaignError(f"nothing to resume: {out}/plan.json does not exist")
        out.mkdir(parents=True, exist_ok=True)
        result = CampaignRun(campaign_id, out)
        started = time.time()
        if cfg.resume:
            planned: dict[str, Any] = {}
            with contextlib.suppress(OSError, ValueError):
                planned = json.loads((out / "plan.json").read_text(encoding="utf-8"))
            if planned.get("sha256") not in (None, campaign.sha256):
                was, now = str(planned["sha256"])[:12], campaign.sha256[:12]
                raise CampaignError(f"cannot resume {campaign_id}: {cfg.campaign_path} changed since it started "
                                    f"(sha256 {was}… in plan.json, now {now}…)")
            with contextlib.suppress(TypeError, ValueError, KeyError):
                started = float(planned["started"])
        all_caps = {rig.name: rig.capabilities for rig in rigs}
        from .reservation import Reservation

        with Reservation(cfg, campaign, campaign_id, say=self._say, cancel=self.cancel) as reservation, \
                ThreadPoolExecutor(1, thread_name_prefix="collect") as pool:
            collecting = pool.submit(self.collect, campaign, rigs[0].name)  # while the rigs are reserved
            caps = self._caps(reservation.reserve_and_check(rigs), rigs)
            checked = True  # the rigs were just checked: the first round needs no second check
            tests = collecting.result()
            self._say(f"collected {len(tests)} test(s) from {len(campaign.suites)} suite(s)")
            results_files = self._results_files(out)
            finals = final_results(read_results(results_files))
            recorded = {(*result_key(line), int(line.get("attempt", 1))) for line in read_results(results_files)}
            done = {key for key, line in finals.items() if is_done(line, campaign, resuming=bool(cfg.resume))}
            repeats = range(1, campaign.repeats + 1)
            todo = {r: [t for t in tests if (t.id, r) not in done] for r in repeats}
            if cfg.resume:
                missing = sum(len(v) for v in todo.values())
                self._say(f"resuming {campaign_id}: {len(tests) * campaign.repeats - missing} test(s) done, "
                          f"{missing} to run")
            for repeat in repeats:
                if self.cancel.is_set():
                    break
                if not todo[repeat]:
                    continue
                if not checked:  # a rig may have failed since the last round: check again, like a retry
                    caps = self._caps(reservation.recheck(), rigs)
                checked = False
                plan = assign(todo[repeat], caps, all_caps)
                self._write_plan(out, campaign, tests, plan, started, rigs, reservation.quarantined)
                # attempts count within a repeat; a resumed repeat goes on after its last recorded attempt
                attempt = 1 + max((int(line.get("attempt", 1)) for line in read_results(results_files)
                                   if int(line.get("repeat", 1)) == repeat), default=0)
                for test, reason in plan.deselected:
                    self._not_run(out, test, reason, attempt=attempt, repeat=repeat, verdict="deselected")
                for test, reason in plan.not_run:
                    self._not_run(out, test, reason, attempt=attempt, repeat=repeat)
                self._say(f"round {repeat}/{campaign.repeats}: {plan.total} tests on "
                          f"{len([s for s in plan.shares.values() if s.tests])} rig(s)")
                self.run_round(plan, campaign, out, attempt, campaign_id, reservation, repeat=repeat)
                self._retries(tests, campaign, out, attempt + 1, campaign_id, reservation, rigs, all_caps,
                              repeat=repeat)
                results_files = self._results_files(out)
            if self.cancel.is_set():
                self._cancelled(out, tests, campaign.repeats)
            result.infra_events = list(reservation.infra_events)
            self._record_history(reservation.engine, campaign_id, out, recorded, campaign.repeats)
        from .reporting import write_reports

        write_reports(result, campaign, inventory, rigs, cfg, started=started, say=self._say,
                      infra_events=result.infra_events)
        return result

    def _retries(self, tests: list[PlannedTest], campaign: Campaign, out: Path, attempt: int, campaign_id: str,
                 reservation: Any, rigs: list[Any], all_caps: dict[str, Any], *, repeat: int = 1) -> int:
        """Re-run, on healthy rigs, the tests of ``repeat`` whose last attempt needs it (infra errors per the
        policy)."""
        retries = 0
        limit = max(campaign.retry.infra, campaign.retry.product)
        while not self.cancel.is_set() and retries < limit:
            finals = final_results(read_results(self._results_files(out)))
            last = {t.id: finals[(t.id, repeat)] for t in tests if (t.id, repeat) in finals}
            again = [t for t in tests if t.id in last and needs_retry(last[t.id], campaign)
                     and int(last[t.id].get("attempt", 1)) == attempt - 1]
            if not again:
                break
            caps = self._caps(reservation.recheck(), rigs)
            retry_plan = assign(again, caps, all_caps)
            for test, reason in retry_plan.not_run + retry_plan.deselected:
                self._not_run(out, test, reason, attempt=attempt, repeat=repeat)
            self._say(f"retry {retries + 1}: {retry_plan.total} test(s) after infrastructure errors")
            self.run_round(retry_plan, campaign, out, attempt, campaign_id, reservation, repeat=repeat)
            attempt += 1
            retries += 1
        return attempt

    def _record_history(self, engine: Any, campaign_id: str, out: Path, recorded: set[tuple[str, int, int]],
                        repeats: int) -> None:
        """Every attempt this run made (lines not in ``recorded``: (id, repeat, attempt) of earlier runs), into
        the lab database's run history (:class:`.history.RunHistory`); with ``repeats`` > 1 the test id
        carries its repeat, as in the record."""
        from .history import RunHistory
        from .reporting import repeat_id

        history = RunHistory(engine)
        seen = set(recorded)
        for line in read_results(self._results_files(out)):
            attempt = int(line.get("attempt", 1))
            key = (*result_key(line), attempt)
            if key in seen:
                continue
            seen.add(key)
            verdict = {"deselected": "skipped", "not-run": "error"}.get(line["verdict"], line["verdict"])
            try:
                history.record(campaign_id, repeat_id(line, repeats), verdict,
                               started_at=float(line.get("started", 0.0)),
                               finished_at=float(line.get("finished", 0.0)), rig=line.get("rig"), attempt=attempt,
                               infra=line.get("category") == "infra", detail=str(line.get("message", ""))[:2000])
            except Exception as exc:  # the results files stay the source of truth
                self._say(f"  run history not recorded for {line['id']}: {type(exc).__name__}: {exc}")

    @staticmethod
    def _caps(healthy: list[str], rigs: list[Any]) -> dict[str, Any]:
        """Capabilities of the rigs that passed the last health check (what :func:`assign` places tests on)."""
        return {rig.name: rig.capabilities for rig in rigs if rig.name in healthy}

    def _cancelled(self, out: Path, tests: list[PlannedTest], repeats: int) -> None:
        """After a cancel (SIGINT/SIGTERM during the reservation, a round or between repeats): a "not run:
        cancelled" infrastructure line for every (test, repeat) that has no line yet, so the record shows
        what did not run (and ``--resume`` runs it)."""
        lines = list(read_results(self._results_files(out)))
        have = {result_key(line) for line in lines}
        for repeat in range(1, repeats + 1):
            attempt = 1 + max((int(line.get("attempt", 1)) for line in lines if int(line.get("repeat", 1)) == repeat),
                              default=0)
            for test in tests:
                if (test.id, repeat) not in have:
                    self._not_run(out, test, "cancelled", attempt=attempt, repeat=repeat)

    @staticmethod
    def _results_files(out: Path) -> list[Path]:
        return sorted((out / "rigs").glob("*/results.jsonl")) if (out / "rigs").exists() else []

    def _write_plan(self, out: Path, campaign: Campaign, tests: list[PlannedTest], plan: Plan, started: float,
                    rigs: list[Any], quarantined: dict[str, str]) -> None:
        data = {"campaign": campaign.name, "source": str(campaign.source), "sha256": campaign.sha256,
                "started": started, "rigs": [r.name for r in rigs], "quarantined": quarantined,
                "tests": [{"id": t.id, "framework": t.framework, "requirements": list(t.requirements),
                           "needs": list(t.needs)} for t in tests],
                "assignment": {name: [t.id for t in share.tests] for name, share in plan.shares.items()},
                "not_run": [{"id": t.id, "reason": reason} for t, reason in plan.not_run]}
        path = out / "plan.json"
        if not path.exists():
            path.write_text(json.dumps(data, indent=1), encoding="utf-8")

    def _not_run(self, out: Path, test: PlannedTest, reason: str, *, attempt: int = 1, repeat: int = 1,
                 verdict: str = "not-run") -> None:
        from paylab.fixtures.results import ResultWriter

        line = infra_line(test, "-", attempt, f"not run: {reason}", repeat)
        line["verdict"] = verdict
        if verdict == "deselected":
            line["category"], line["message"] = "none", reason
        ResultWriter(out / "rigs" / "_not-run" / "results.jsonl").write(line)


__all__ = ["CampaignError", "CampaignRun", "CampaignRunner", "RunConfig", "Share"]
