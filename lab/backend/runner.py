"""Run the whole reference backend: embedded (tests, the demo) or as a process (``paylab backend serve``).

:class:`EmbeddedBackend` starts the ISO 8583 services (issuers, switch, acquirer) in their own event
loop thread and the HTTP services (remote payment, merchant platform, SMS gateway, the TSM network with
the MTPS hub and the OTA gateway, ``/health``) under uvicorn in another thread, all on the configured loopback
addresses (port 0 = ephemeral), and stops them cleanly.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn

from .config import BackendConfig
from .context import BackendContext
from .http_app import create_app
from .services import RunningIsoServices, run_in_thread
from .tsm.network import TsmNetwork

log = logging.getLogger("paylab.backend")

@dataclass
class EmbeddedBackend:
    """The backend running in this process. Use as a context manager or call start()/stop()."""

    config: BackendConfig
    ctx: BackendContext | None = None
    iso: RunningIsoServices | None = None
    app: Any = None
    tsm: TsmNetwork | None = None
    addresses: dict[str, tuple[str, int]] = field(default_factory=dict)
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None
    _http_client: httpx.Client | None = None

    def start(self, *, start_timeout: float = 30.0) -> EmbeddedBackend:
        self.ctx = BackendContext.create(self.config)
        try:
            self.iso = run_in_thread(self.ctx)
            self.addresses.update(self.iso.addresses)
            self.tsm = TsmNetwork(self.ctx)
            self.app = create_app(self.ctx, extra=self.tsm.routers())
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
            self._http_client = httpx.Client(base_url=self.http_url, timeout=30)
            self.tsm.connect(self._http_client)  # institutions and handsets reach the TSM APIs over HTTP
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
        if self._http_client is not None:
            self._http_client.close()
            self._http_client = None
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
