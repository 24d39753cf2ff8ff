"""One background thread that runs every call into an emulated card, in order.

The emulator's link thread must keep talking ISO 14443-4 (S(WTX)) while a card computes, so card
calls (power on, transmit, power off) run here and the link thread waits on the returned job with a
timeout. A card that never returns keeps only this daemon thread busy; :meth:`CardWorker.close` waits
a bounded time.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any


class Job:
    """A submitted call: :meth:`wait` with a timeout, then :attr:`result` or :attr:`error`."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.result: Any = None
        self.error: BaseException | None = None
        self._done = threading.Event()

    def wait(self, timeout: float) -> bool:
        return self._done.wait(timeout)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def _run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as error:
            self.error = error
        finally:
            self._done.set()


class CardWorker:
    """A daemon thread consuming :class:`Job` s from a queue."""

    def __init__(self, name: str) -> None:
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], Any]) -> Job:
        job = Job(fn)
        self._queue.put(job)
        return job

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            job._run()

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def close(self, timeout: float = 5.0) -> bool:
        """Stop after the queued jobs; False when the thread is still busy after ``timeout``."""
        self._queue.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        return not self._thread.is_alive()
