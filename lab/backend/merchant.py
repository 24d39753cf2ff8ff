"""Merchant content platform: checkout at the remote payment system, notifications, order status.

A shop in front of the wallet (the app the user buys in). ``POST /merchant/checkout`` books an order
in ``merchant_orders`` and creates it at the remote payment system (``POST /rp/orders``, in process or
over HTTP, see :class:`InProcessRpClient` / :class:`HttpRpClient`), whose ``txnId`` the wallet then
pays. The remote payment system calls back ``POST /merchant/notify`` (or, in process, the handler
registered by :meth:`MerchantPlatform.attach`). A notification is only a hint: the platform asks the
remote payment system for the order (ACP ``txnType=00`` query) and marks its order paid only if the
answer says paid with the same merchant, order and amount, so a forged notification changes nothing.
It acknowledges with ``{"ack": true}``; repeated notifications are acknowledged again and change
nothing.

Routes: ``POST /merchant/checkout`` (``amount`` fen, optional ``orderId``, ``subject``,
``merchantId``) -> 201 with ``txnId``; ``POST /merchant/notify``; ``GET /merchant/orders/{orderId}``
(optional ``?merchantId=``).
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Protocol

import httpx
from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from sqlalchemy import BigInteger, Double, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from .db import Base
from .remote_payment import (
    CURRENCY_CNY,
    ID_PATTERN,
    LOCAL_NOTIFY_URL,
    MAX_AMOUNT,
    ApiError,
    RemotePaymentService,
    cst_text,
)
from .sms import clock_s, iso

log = logging.getLogger(__name__)

DEFAULT_MERCHANT_ID = "777290058110048"
"""The platform's merchant id: the UnionPay ACP test merchant number of the public demos [M]."""
RP_TIMEOUT_S = 10.0


class MerchantOrder(Base):
    """An order of the platform and what it knows of its payment."""

    __tablename__ = "merchant_orders"

    merchant_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    subject: Mapped[str] = mapped_column(String(64), default="")
    txn_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending, paid
    created: Mapped[float] = mapped_column(Double)
    paid_at: Mapped[float | None] = mapped_column(Double, nullable=True)
    notifications: Mapped[int] = mapped_column(Integer, default=0)


# --- talking to the remote payment system ------------------------------------------------------------


class RpClientError(Exception):
    """The remote payment system refused (``status``, ``body`` as it answered) or could not be reached."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.body = body
        super().__init__(f"remote payment system answered {status}: {body.get('error')}")


class RpClient(Protocol):
    """What the platform needs from the remote payment system."""

    def create_order(self, order: dict[str, Any]) -> dict[str, Any]: ...

    def get_order(self, txn_id: str) -> dict[str, Any]: ...


class InProcessRpClient:
    """Calls a :class:`RemotePaymentService` in this process."""

    def __init__(self, service: RemotePaymentService) -> None:
        self.service = service

    def create_order(self, order: dict[str, Any]) -> dict[str, Any]:
        try:
            view, _ = self.service.create_order(
                merchant_id=order["merchantId"], order_id=order["orderId"], amount=order["amount"],
                currency=order.get("currency", CURRENCY_CNY), txn_time=order["time"], notify_url=order["notifyUrl"])
        except ApiError as exc:
            raise RpClientError(exc.status_code, {"error": exc.error, "field": exc.field}) from None
        return view

    def get_order(self, txn_id: str) -> dict[str, Any]:
        try:
            return self.service.get_order(txn_id)
        except ApiError as exc:
            raise RpClientError(exc.status_code, {"error": exc.error, "field": exc.field}) from None


class HttpRpClient:
    """Calls the remote payment system's HTTP API at ``base_url`` (e.g. ``http://127.0.0.1:8080``)."""

    def __init__(self, base_url: str, *, timeout: float = RP_TIMEOUT_S) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            response = httpx.request(method, self.base_url + path, json=body, timeout=self.timeout)
            answer = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise RpClientError(502, {"error": f"remote payment system unreachable: {type(exc).__name__}",
                                      "field": None}) from None
        if response.status_code >= 400 or not isinstance(answer, dict):
            raise RpClientError(response.status_code, answer if isinstance(answer, dict) else {})
        return answer

    def create_order(self, order: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/rp/orders", order)

    def get_order(self, txn_id: str) -> dict[str, Any]:
        return self._call("GET", f"/rp/orders/{txn_id}")


# --- the platform ------------------------------------------------------------------------------------


def _view(row: MerchantOrder) -> dict[str, Any]:
    return {"merchantId": row.merchant_id, "orderId": row.order_id, "amount": row.amount, "subject": row.subject,
            "txnId": row.txn_id, "status": row.status, "created": iso(row.created), "paidAt": iso(row.paid_at),
            "notifications": row.notifications}


class MerchantPlatform:
    """The merchant content platform over ``ctx`` (its orders in ``merchant_orders``)."""

    def __init__(self, ctx: Any, rp: RpClient, *, merchant_id: str = DEFAULT_MERCHANT_ID,
                 notify_url: str = LOCAL_NOTIFY_URL) -> None:
        self.ctx = ctx
        self.rp = rp
        self.merchant_id = merchant_id
        self.notify_url = notify_url

    def attach(self, service: RemotePaymentService) -> None:
        """Receive ``service``'s notifications for :attr:`notify_url` in process."""
        service.local_endpoints[self.notify_url] = self.handle_notification

    def checkout(self, amount: int, *, order_id: str | None = None, subject: str = "",
                 merchant_id: str | None = None) -> dict[str, Any]:
        """Book the order and create it at the remote payment system (a retry with the same
        ``order_id`` and amount answers the same order)."""
        merchant = merchant_id or self.merchant_id
        now = clock_s(self.ctx)
        order = order_id or f"M{cst_text(now)}{self.ctx.rng.randrange(10**6):06d}"
        with self.ctx.session() as s:
            row = s.get(MerchantOrder, (merchant, order))
            if row is None:
                row = MerchantOrder(merchant_id=merchant, order_id=order, amount=amount, subject=subject,
                                    status="pending", created=now, notifications=0)
                s.add(row)
            elif row.amount != amount:
                raise ApiError(409, "this orderId exists with another amount", "orderId")
            created = row.created
        try:
            answer = self.rp.create_order({"merchantId": merchant, "orderId": order, "amount": amount,
                                           "currency": CURRENCY_CNY, "time": cst_text(created),
                                           "notifyUrl": self.notify_url})
        except RpClientError as exc:
            status = exc.status if 400 <= exc.status < 500 else 502
            raise ApiError(status, f"remote payment system: {exc.body.get('error', 'refused')}",
                           exc.body.get("field")) from None
        with self.ctx.session() as s:
            row = s.get(MerchantOrder, (merchant, order))
            assert row is not None
            row.txn_id = answer["txnId"]
            view = _view(row)
        log.info("checkout %s/%s: txn %s", merchant, order, view["txnId"])
        return view

    def handle_notification(self, payload: dict[str, Any]) -> dict[str, Any]:
        """A payment notification: confirmed by querying the remote payment system, then acknowledged."""
        txn_id, merchant, order = (payload.get(k) for k in ("txnId", "merchantId", "orderId"))
        if not all(isinstance(v, str) for v in (txn_id, merchant, order)):
            raise ApiError(422, "txnId, merchantId and orderId are strings", "txnId")
        with self.ctx.session(write=False) as s:
            row = s.get(MerchantOrder, (merchant, order))
            if row is None or row.txn_id != txn_id:
                raise ApiError(404, "unknown order", "orderId")
            amount = row.amount
        try:
            truth = self.rp.get_order(str(txn_id))
        except RpClientError as exc:
            raise ApiError(409 if exc.status < 500 else 502, "the remote payment system does not confirm it",
                           "txnId") from None
        confirmed = (truth.get("status") == "paid" and truth.get("merchantId") == merchant
                     and truth.get("orderId") == order and truth.get("amount") == amount)
        if not confirmed:
            log.warning("notification for %s/%s not confirmed by the remote payment system", merchant, order)
            raise ApiError(409, "the remote payment system does not confirm it", "txnId")
        with self.ctx.session() as s:
            row = s.get(MerchantOrder, (merchant, order))
            assert row is not None
            row.notifications += 1
            if row.status != "paid":
                row.status, row.paid_at = "paid", clock_s(self.ctx)
                log.info("order %s/%s paid (txn %s)", merchant, order, txn_id)
        return {"ack": True}

    def order(self, order_id: str, merchant_id: str | None = None) -> dict[str, Any]:
        """The platform's view of one of its orders."""
        with self.ctx.session(write=False) as s:
            row = s.get(MerchantOrder, (merchant_id or self.merchant_id, order_id))
            if row is None:
                raise ApiError(404, "unknown order", "orderId")
            return _view(row)


# --- HTTP --------------------------------------------------------------------------------------------


class CheckoutBody(BaseModel):
    """``POST /merchant/checkout``."""

    model_config = ConfigDict(extra="forbid")
    amount: StrictInt = Field(ge=1, le=MAX_AMOUNT)
    orderId: StrictStr | None = Field(None, pattern=ID_PATTERN, min_length=1, max_length=64)
    merchantId: StrictStr | None = Field(None, pattern=ID_PATTERN, min_length=1, max_length=40)
    subject: StrictStr = Field("", max_length=64)


class NotifyBody(BaseModel):
    """``POST /merchant/notify`` (what :func:`.remote_payment.notification_payload` sends)."""

    model_config = ConfigDict(extra="allow")
    txnId: StrictStr = Field(pattern=r"^[0-9]{21}$")
    merchantId: StrictStr = Field(pattern=ID_PATTERN, max_length=40)
    orderId: StrictStr = Field(pattern=ID_PATTERN, max_length=64)


def merchant_router(ctx: Any, platform: MerchantPlatform | None = None) -> APIRouter:
    """``/merchant``. Without ``platform``: one over a new in-process :class:`RemotePaymentService`
    (notifications then reach it only from that service: :func:`.http_app.create_app` wires one)."""
    if platform is None:
        service = RemotePaymentService(ctx)
        platform = MerchantPlatform(ctx, InProcessRpClient(service))
        platform.attach(service)
    shop = platform
    router = APIRouter(prefix="/merchant", tags=["merchant"])

    @router.post("/checkout", status_code=201)
    def post_checkout(body: CheckoutBody) -> dict[str, Any]:
        return shop.checkout(body.amount, order_id=body.orderId, subject=body.subject, merchant_id=body.merchantId)

    @router.post("/notify")
    def post_notify(body: NotifyBody) -> dict[str, Any]:
        return shop.handle_notification(body.model_dump())

    @router.get("/orders/{orderId}")
    def get_order(order_id: Annotated[str, PathParam(alias="orderId", pattern=ID_PATTERN, max_length=64)],
                  merchant_id: Annotated[str | None, Query(alias="merchantId", pattern=ID_PATTERN,
                                                          max_length=40)] = None) -> dict[str, Any]:
        return shop.order(order_id, merchant_id)

    return router
