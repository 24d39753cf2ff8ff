"""The backend's FastAPI application: the SMS gateway, the remote payment system, the merchant
platform, ``/health``, and routers other services add (TSMs, OTA gateway) through ``extra``.

:func:`create_app` wires one :class:`~.remote_payment.RemotePaymentService` for the ``rp`` and
``merchant`` routers, so the merchant platform creates orders in process and receives their
notifications in process (``inproc://merchant/notify``), unless a :class:`~.merchant.MerchantPlatform`
is handed in (for instance one that talks HTTP to another address). The services are on
``app.state`` (``sms``, ``rp``, ``merchant``) for the runner and tests; the runner starts
``app.state.rp.start_dispatcher()`` for notification retries in a long-running server.
``GET /health`` answers ``{"status": "ok", "database": "ok", "routers": [...]}`` (503 if the database
does not answer).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from .merchant import InProcessRpClient, MerchantPlatform, merchant_router
from .remote_payment import RemotePaymentService, install_error_handlers, remote_payment_router
from .sms import SmsGateway, sms_router

ROUTERS: tuple[str, ...] = ("sms", "rp", "merchant")


def create_app(ctx: Any, *, routers: Sequence[str] = ROUTERS, extra: Sequence[APIRouter] = (),
               merchant: MerchantPlatform | None = None, title: str = "paylab backend") -> FastAPI:
    """The application with the chosen built-in ``routers``, the ``extra`` ones, ``/health`` and the
    JSON error handlers of :func:`~.remote_payment.install_error_handlers`."""
    unknown = sorted(set(routers) - set(ROUTERS))
    if unknown:
        raise ValueError(f"unknown router(s) {', '.join(unknown)}; choose from {', '.join(ROUTERS)}")
    app = FastAPI(title=title)
    install_error_handlers(app)
    sms = SmsGateway(ctx)
    rp = RemotePaymentService(ctx, sms=sms)
    if merchant is None:  # in process both ways; a platform handed in is attached by its maker if wanted
        merchant = MerchantPlatform(ctx, InProcessRpClient(rp))
        merchant.attach(rp)
    app.state.ctx, app.state.sms, app.state.rp, app.state.merchant = ctx, sms, rp, merchant
    if "sms" in routers:
        app.include_router(sms_router(ctx, sms))
    if "rp" in routers:
        app.include_router(remote_payment_router(ctx, rp))
    if "merchant" in routers:
        app.include_router(merchant_router(ctx, merchant))
    for router in extra:
        app.include_router(router)

    mounted = [*routers, *(r.prefix or "/" for r in extra)]

    @app.get("/health")
    def health() -> JSONResponse:
        try:
            with ctx.session(write=False) as s:
                s.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            return JSONResponse({"status": "down", "database": type(exc).__name__, "routers": mounted},
                                status_code=503)
        return JSONResponse({"status": "ok", "database": "ok", "routers": mounted})

    return app
