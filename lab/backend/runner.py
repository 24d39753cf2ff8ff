"""Run the whole reference backend: embedded (tests, the demo) or as a process (``paylab backend serve``).

:class:`EmbeddedBackend` starts the ISO 8583 services (issuers, switch, acquirer) in their own event
loop thread and the HTTP services (remote payment, merchant platform, SMS gateway, TSMs and the OTA
gateway when present, ``/health``) under uvicorn in another thread, all on the configured loopback
addresses (port 0 = ephemeral), and stops them cleanly.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from .config import BackendConfig
from .context import BackendContext
from .http_app import create_app
from .services import RunningIsoServices, run_in_thread

log = logging.getLogger("paylab.backend")

EXTRA_ROUTER_FACTORIES = ("paylab.lab.backend.tsm.services:routers",)
"""Optional ``module:function`` factories returning extra FastAPI routers for ``ctx`` (TSMs, OTA)."""


def _extra_routers(ctx: BackendContext) -> list[Any]:
    routers: list[Any] = []
    for spec in EXTRA_ROUTER_FACTORIES:
        module_name, func_name = spec.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue
            raise
        factory: Callable[[BackendContext], list[Any]] | None = getattr(module, func_name, None)
        if factory is not None:
            routers.extend(factory(ctx))
    return routers


@dataclass
class EmbeddedBackend:
    """The backend running in this process. Use as a context manager or call start()/stop()."""

    config: BackendConfig
    ctx: BackendContext | None = None
    iso: RunningIsoServices | None = None
    app: Any = None
    addresses: dict[str, tuple[str, int]] = field(default_factory=dict)
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    def start(self, *, start_timeout: float = 30.0) -> EmbeddedBackend:
        self.ctx = BackendContext.create(self.config)
        try:
            self.iso = run_in_thread(self.ctx)
            self.addresses.update(self.iso.addresses)
            self.app = create_app(self.ctx, extra=_extra_routers(self.ctx))
            server_config = uvicorn.Config(self.app, host=self.config.host, port=self.config.ports.http,
                                           log_level="warning", lifespan="off", access_log=False)
            self._server = uvicorn.Server(server_config)
            self._thread = threading.Thread(target=self._server.run, name="paylab-http", daemon=True)
            self._thread.start()
            deadline = time.monotonic() + start_timeout
            while not self._server.started:
                if not self._thread.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"HTTP services did not start on {self.config.host}:{self.config.ports.http}")
                time.sleep(0.01)
            sock = self._server.servers[0].sockets[0]
            self.addresses["http"] = sock.getsockname()[:2]
            self.app.state.rp.start_dispatcher()
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def http_url(self) -> str:
        host, port = self.addresses["http"]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        """Stop HTTP, then ISO services, then release the database (idempotent)."""
        if self.app is not None:
            self.app.state.rp.stop_dispatcher()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        if self.iso is not None:
            self.iso.stop()
        if self.ctx is not None:
            self.ctx.close()
        self._server = self._thread = self.iso = None

    def __enter__(self) -> EmbeddedBackend:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
