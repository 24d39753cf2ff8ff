"""Start and stop the ISO 8583 side of the backend: issuer listeners, the switch and the acquirer.

:class:`IsoServices` runs inside an asyncio loop that is already running (the runner's, or a test's):
``await start()`` brings up every issuer of ``config.issuers`` (issuer *i* on ``ports.issuers + i``, or
an ephemeral port), then the switch (``ports.switch``) pointing at the issuers' bound addresses, then
the acquirer (``ports.acquirer``) pointing at the switch; ``await stop()`` stops them in the opposite
order. :func:`run_in_thread` does the same in a private event loop on a daemon thread, for tests and
synchronous callers.

The services do their database work inline on the loop (SQLAlchemy is synchronous; a SQLite commit in
WAL mode with ``synchronous=NORMAL`` takes tens of microseconds, far less than a thread hand-off).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .acquirer import AcquirerHost
from .context import BackendContext
from .issuer import IssuerHost
from .switch import Switch

log = logging.getLogger("paylab.backend.services")

T = TypeVar("T")


class IsoServices:
    """Issuers + switch + acquirer on the configured ports (module docstring)."""

    def __init__(self, ctx: BackendContext) -> None:
        self.ctx = ctx
        self.issuers: dict[str, IssuerHost] = {i.name: IssuerHost(ctx, i) for i in ctx.config.issuers}
        self.switch: Switch | None = None
        self.acquirer: AcquirerHost | None = None
        self.started = False

    async def start(self) -> dict[str, tuple[str, int]]:
        """Start everything; returns :attr:`addresses`. A failure stops what was started and re-raises."""
        config = self.ctx.config
        try:
            issuer_addresses = {}
            for index, (name, host) in enumerate(self.issuers.items()):
                issuer_addresses[name] = await host.start(config.host, config.ports.issuer_port(index))
            self.switch = Switch(self.ctx, issuer_addresses)
            switch_address = await self.switch.start(config.host, config.ports.switch)
            self.acquirer = AcquirerHost(self.ctx, switch_address)
            await self.acquirer.start(config.host, config.ports.acquirer)
        except BaseException:
            await self.stop()
            raise
        self.started = True
        log.info("ISO 8583 services up: %s", self.addresses)
        return self.addresses

    @property
    def addresses(self) -> dict[str, tuple[str, int]]:
        """Bound addresses: ``acquirer``, ``switch`` and ``issuer:<name>`` per issuer."""
        out: dict[str, tuple[str, int]] = {}
        if self.acquirer is not None and self.acquirer.server is not None:
            out["acquirer"] = self.acquirer.address
        if self.switch is not None and self.switch.server is not None:
            out["switch"] = self.switch.address
        for name, host in self.issuers.items():
            if host.server is not None:
                out[f"issuer:{name}"] = host.address
        return out

    async def stop(self) -> None:
        """Stop the acquirer, the switch and the issuers (each at most once; errors are logged)."""
        for service in (self.acquirer, self.switch, *self.issuers.values()):
            if service is None:
                continue
            try:
                await service.stop()
            except Exception:
                log.exception("stopping %s failed", type(service).__name__)
        self.started = False


@dataclass
class RunningIsoServices:
    """:class:`IsoServices` running in their own event loop on a daemon thread (:func:`run_in_thread`)."""

    services: IsoServices
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    addresses: dict[str, tuple[str, int]] = field(default_factory=dict)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = 60.0) -> T:
        """Run a coroutine in the services' loop and return its result (from any other thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call_soon(self, fn: Any, *args: Any) -> Any:
        """Run a plain function in the services' loop (thread-safe) and return its result."""

        async def run() -> Any:
            return fn(*args)

        return self.call(run())

    @property
    def acquirer(self) -> AcquirerHost:
        assert self.services.acquirer is not None
        return self.services.acquirer

    @property
    def switch(self) -> Switch:
        assert self.services.switch is not None
        return self.services.switch

    def issuer(self, name: str) -> IssuerHost:
        """The issuer host called ``name``."""
        return self.services.issuers[name]

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the services, the loop and the thread (idempotent)."""
        if self.loop.is_closed():
            return
        if self.loop.is_running():
            try:
                self.call(self.services.stop(), timeout)
            except (concurrent.futures.TimeoutError, RuntimeError):
                log.exception("stopping the ISO services timed out")
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout)

    def __enter__(self) -> RunningIsoServices:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def new_event_loop(*, fast: bool = False) -> asyncio.AbstractEventLoop:
    """A new event loop: with ``fast``, uvloop's (libuv) when the optional ``uvloop`` package is
    installed, else (and by default) the standard one."""
    if fast:
        try:
            import uvloop
        except ImportError:
            log.info("uvloop is not installed: the standard asyncio event loop is used")
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run_in_thread(ctx: BackendContext, *, start_timeout: float = 30.0, fast_loop: bool = False) -> RunningIsoServices:
    """Start :class:`IsoServices` in a new event loop on a daemon thread; returns once they listen.
    ``fast_loop`` runs them on uvloop when it is installed (:func:`new_event_loop`)."""
    loop = new_event_loop(fast=fast_loop)
    services = IsoServices(ctx)
    ready: concurrent.futures.Future[dict[str, tuple[str, int]]] = concurrent.futures.Future()

    def main() -> None:
        asyncio.set_event_loop(loop)

        async def boot() -> None:
            try:
                ready.set_result(await services.start())
            except BaseException as exc:
                ready.set_exception(exc)

        boot_task = loop.create_task(boot())
        try:
            loop.run_forever()
        finally:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            del boot_task

    thread = threading.Thread(target=main, name="paylab-iso-services", daemon=True)
    thread.start()
    running = RunningIsoServices(services, loop, thread)
    try:
        running.addresses = ready.result(start_timeout)
    except BaseException:
        if not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        raise
    return running
