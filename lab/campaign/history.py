"""Campaign run history in the lab database: every attempt of every test, so ``--resume`` finishes only
what is missing (issue 6).

A test counts as *done* for a campaign when its latest attempt has a verdict that is not an
infrastructure failure (passed, failed, error, skipped: the product was judged, or the test chose to
skip). A test whose latest attempt was an infrastructure failure (rig lost, host unreachable), or that
never ran, is *missing* and runs again on resume, as attempt ``n + 1``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .db import RunRow, session_scope

__all__ = ["RunHistory", "RunResult", "Verdict"]


class Verdict(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class RunResult:
    """One attempt of one test (a row of ``run_history``)."""

    campaign_id: str
    test_id: str
    attempt: int
    verdict: Verdict
    rig: str | None
    started_at: float
    finished_at: float
    duration_s: float
    infra: bool = False
    detail: str | None = None

    @property
    def done(self) -> bool:
        """A final verdict: the test needs no further attempt in this campaign."""
        return not self.infra


def _result(row: RunRow) -> RunResult:
    return RunResult(campaign_id=row.campaign_id, test_id=row.test_id, attempt=row.attempt,
                     verdict=Verdict(row.verdict), rig=row.rig, started_at=row.started_at,
                     finished_at=row.finished_at, duration_s=row.duration_s, infra=row.infra, detail=row.detail)


class RunHistory:
    """Record attempts and answer "what is left of campaign X" (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(self, campaign_id: str, test_id: str, verdict: Verdict | str, *, started_at: float,
               finished_at: float | None = None, rig: str | None = None, attempt: int | None = None,
               infra: bool = False, detail: str | None = None) -> RunResult:
        """Store one attempt. ``attempt`` defaults to the next free number for this test (counted in
        the same transaction; a concurrent writer of the same test makes it retry once)."""
        verdict = Verdict(verdict)
        finished = time.time() if finished_at is None else finished_at
        for retry in range(3):
            try:
                with session_scope(self.engine) as session:
                    number = attempt if attempt is not None else self._next_attempt(session, campaign_id, test_id)
                    row = RunRow(campaign_id=campaign_id, test_id=test_id, attempt=number, rig=rig,
                                 verdict=verdict.value, infra=infra, started_at=started_at, finished_at=finished,
                                 duration_s=max(0.0, finished - started_at), detail=detail)
                    session.add(row)
                    session.flush()
                    return _result(row)
            except IntegrityError:
                if attempt is not None or retry == 2:
                    raise
        raise AssertionError("unreachable")

    @staticmethod
    def _next_attempt(session: Session, campaign_id: str, test_id: str) -> int:
        current = session.execute(
            select(func.max(RunRow.attempt)).where(RunRow.campaign_id == campaign_id, RunRow.test_id == test_id)
        ).scalar_one_or_none()
        return (current or 0) + 1

    def next_attempt(self, campaign_id: str, test_id: str) -> int:
        """The attempt number the next run of ``test_id`` gets."""
        with session_scope(self.engine, write=False) as session:
            return self._next_attempt(session, campaign_id, test_id)

    def results(self, campaign_id: str) -> list[RunResult]:
        """Every attempt of the campaign, by test id then attempt."""
        with session_scope(self.engine, write=False) as session:
            rows = session.scalars(select(RunRow).where(RunRow.campaign_id == campaign_id)
                                   .order_by(RunRow.test_id, RunRow.attempt)).all()
            return [_result(row) for row in rows]

    def latest(self, campaign_id: str) -> dict[str, RunResult]:
        """The latest attempt of every test that ran in the campaign."""
        latest: dict[str, RunResult] = {}
        for result in self.results(campaign_id):
            latest[result.test_id] = result  # ordered by attempt: the last one wins
        return latest

    def done(self, campaign_id: str) -> set[str]:
        """Test ids whose latest attempt has a final (non-infrastructure) verdict."""
        return {test_id for test_id, result in self.latest(campaign_id).items() if result.done}

    def missing(self, campaign_id: str, test_ids: Iterable[str]) -> list[str]:
        """Of ``test_ids`` (the campaign's plan, in order), those a resume must still run."""
        done = self.done(campaign_id)
        return [test_id for test_id in test_ids if test_id not in done]

    def campaigns(self) -> list[str]:
        """Campaign ids with recorded runs, newest first."""
        with session_scope(self.engine, write=False) as session:
            rows = session.execute(select(RunRow.campaign_id, func.max(RunRow.finished_at).label("last"))
                                   .group_by(RunRow.campaign_id).order_by(func.max(RunRow.finished_at).desc()))
            return [campaign for campaign, _last in rows]
