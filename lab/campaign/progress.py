"""Campaign progress: one bar per rig (tests done, passed, failed, infra), read from the result lines.

On a terminal this is a live ``rich`` progress display; elsewhere (CI logs) one line per rig is
printed whenever its counts change, at most every few seconds.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any


class _Counts:
    """One share's counts, read incrementally: only the bytes appended since the last call are parsed
    (the results file only grows; a line not yet complete is read again next time)."""

    def __init__(self, run: Any) -> None:
        self.run = run
        self.offset = 0
        self.counts = {"done": 0, "passed": 0, "failed": 0, "infra": 0}

    def __call__(self) -> dict[str, int]:
        try:
            with self.run.results_path.open("rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except FileNotFoundError:
            return self.counts
        end = chunk.rfind(b"\n") + 1
        self.offset += end
        for raw in chunk[:end].splitlines():
            try:
                self._add(json.loads(raw))
            except (ValueError, KeyError, TypeError):
                continue
        return self.counts

    def _add(self, line: dict[str, Any]) -> None:
        run = self.run
        if int(line.get("attempt", 1)) != run.attempt or int(line.get("repeat", 1)) != getattr(run, "repeat", 1):
            return
        counts = self.counts
        counts["done"] += 1
        if line["verdict"] == "passed":
            counts["passed"] += 1
        elif line.get("category") == "infra":
            counts["infra"] += 1
        elif line["verdict"] in ("failed", "error"):
            counts["failed"] += 1


def watch(runs: Mapping[str, Any], threads: list[threading.Thread], *, enabled: bool = True,
          say: Callable[[str], None] = lambda line: None, interval: float = 0.25) -> None:
    """Block until every share thread ends, showing progress."""
    if enabled and sys.stderr.isatty():
        _watch_rich(runs, threads, interval)
    else:
        _watch_lines(runs, threads, say, interval)
    for thread in threads:
        thread.join()


def _watch_rich(runs: Mapping[str, Any], threads: list[threading.Thread], interval: float) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("[bold]{task.fields[rig]:<12}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("[green]{task.fields[passed]} passed [red]{task.fields[failed]} failed "
                          "[yellow]{task.fields[infra]} infra"), TimeElapsedColumn())
    with Progress(*columns, transient=False) as progress:
        tasks = {name: progress.add_task(name, total=len(run.share.tests), rig=name, passed=0, failed=0, infra=0)
                 for name, run in runs.items()}
        counters = {name: _Counts(run) for name, run in runs.items()}
        while any(t.is_alive() for t in threads):
            for name in runs:
                c = counters[name]()
                progress.update(tasks[name], completed=c["done"], passed=c["passed"], failed=c["failed"],
                                infra=c["infra"])
            time.sleep(interval)
        for name in runs:
            c = counters[name]()
            progress.update(tasks[name], completed=c["done"], passed=c["passed"], failed=c["failed"], infra=c["infra"])


def _watch_lines(runs: Mapping[str, Any], threads: list[threading.Thread], say: Callable[[str], None],
                 interval: float) -> None:
    last: dict[str, tuple[int, ...]] = {}
    counters = {name: _Counts(run) for name, run in runs.items()}
    last_print = 0.0
    while True:
        alive = any(t.is_alive() for t in threads)
        now = time.monotonic()
        if not alive or now - last_print >= 3.0:
            for name, run in runs.items():
                c = counters[name]()
                key = tuple(c.values())
                if last.get(name) != key:
                    last[name] = key
                    say(f"  {name:<12} {c['done']}/{len(run.share.tests)} done: {c['passed']} passed, "
                        f"{c['failed']} failed, {c['infra']} infra")
            last_print = now
        if not alive:
            return
        time.sleep(interval)
