"""SMS gateway: the outbox the handset simulation reads, and delivery receipts.

Every text the backend sends to a phone (an order's one-time code, an OTA wake-up, a notice) is a
row of ``sms_outbox``; a simulated handset polls ``GET /sms/outbox/{msisdn}?since=<last id>`` and
confirms with ``POST /sms/messages/{id}/receipt``, as an SMSC's delivery report would
(``pending`` -> ``delivered`` or ``failed``).

The text is data and is kept whole in the table; logs name the message id, kind and a masked
number only, never the text, so no one-time code reaches a log file.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, Body, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Double, String, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from ..protocol.masking import mask_pan
from .db import Base, session_scope
from .models import AutoId

log = logging.getLogger(__name__)

SmsKind = Literal["otp", "ota-wakeup", "notice"]
ReceiptStatus = Literal["pending", "delivered", "failed"]
KINDS: tuple[str, ...] = get_args(SmsKind)
MAX_TEXT = 1000
"""Longest text accepted (a concatenated SMS of 6-7 parts; the gateway does not split)."""


def clock_s(ctx: Any) -> float:
    """The context's clock (``ctx.clock()``) in Unix seconds, the backend's time convention (:mod:`.models`)."""
    return float(ctx.clock())


def iso(seconds: float | None) -> str | None:
    """ISO 8601 UTC text (``...Z``, milliseconds), as the JSON APIs answer timestamps."""
    if seconds is None:
        return None
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def normalise_msisdn(msisdn: str) -> str:
    """E.164 digits without ``+`` (5..15 digits); :class:`ValueError` otherwise."""
    text = msisdn.strip() if isinstance(msisdn, str) else ""
    digits = text[1:] if text.startswith("+") else text
    if not (digits.isascii() and digits.isdigit() and 5 <= len(digits) <= 15):
        raise ValueError("msisdn must be 5..15 digits (E.164, optional +)")
    return digits


class SmsMessage(Base):
    """One SMS handed to the gateway."""

    __tablename__ = "sms_outbox"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    msisdn: Mapped[str] = mapped_column(String(15), index=True)
    text: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16))
    created: Mapped[float] = mapped_column(Double)
    delivered_at: Mapped[float | None] = mapped_column(Double, nullable=True)
    receipt_status: Mapped[str] = mapped_column(String(16), default="pending")


@dataclass(frozen=True)
class SmsRecord:
    """An outbox row as plain data."""

    id: int
    msisdn: str
    text: str
    kind: str
    created: float
    delivered_at: float | None
    receipt_status: str

    @classmethod
    def of(cls, row: SmsMessage) -> SmsRecord:
        return cls(row.id, row.msisdn, row.text, row.kind, row.created, row.delivered_at, row.receipt_status)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "msisdn": self.msisdn, "text": self.text, "kind": self.kind,
                "created": iso(self.created), "deliveredAt": iso(self.delivered_at), "status": self.receipt_status}


class UnknownMessage(LookupError):
    """No outbox row with that id."""


class SmsGateway:
    """Sends into the outbox, lists it for a number and records delivery receipts."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    def send(self, msisdn: str, text: str, kind: SmsKind) -> int:
        """Queue one SMS; returns its id. :class:`ValueError` for a bad number, text or kind."""
        number = normalise_msisdn(msisdn)
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}")
        if not isinstance(text, str) or not 1 <= len(text) <= MAX_TEXT:
            raise ValueError(f"text must be 1..{MAX_TEXT} characters")
        with session_scope(self.ctx.engine) as session:
            row = SmsMessage(msisdn=number, text=text, kind=kind, created=clock_s(self.ctx), receipt_status="pending")
            session.add(row)
            session.flush()
            message_id = row.id
        log.info("sms %d (%s) queued for %s", message_id, kind, mask_pan(number))
        return message_id

    def outbox(self, msisdn: str, since: int | None = None) -> list[SmsRecord]:
        """Messages for ``msisdn`` in sending order; ``since`` is the last id already seen."""
        number = normalise_msisdn(msisdn)
        with session_scope(self.ctx.engine, write=False) as session:
            query = select(SmsMessage).where(SmsMessage.msisdn == number)
            if since is not None:
                query = query.where(SmsMessage.id > since)
            return [SmsRecord.of(row) for row in session.scalars(query.order_by(SmsMessage.id))]

    def get(self, message_id: int) -> SmsRecord:
        """One message (:class:`UnknownMessage` if there is none)."""
        with session_scope(self.ctx.engine, write=False) as session:
            row = session.get(SmsMessage, message_id)
            if row is None:
                raise UnknownMessage(message_id)
            return SmsRecord.of(row)

    def mark_delivered(self, message_id: int, status: ReceiptStatus = "delivered") -> SmsRecord:
        """Record a delivery receipt. The first receipt wins; a repeated one changes nothing."""
        if status not in ("delivered", "failed"):
            raise ValueError("a receipt status is delivered or failed")
        with session_scope(self.ctx.engine) as session:
            row = session.get(SmsMessage, message_id)
            if row is None:
                raise UnknownMessage(message_id)
            if row.receipt_status == "pending":
                row.receipt_status = status
                row.delivered_at = clock_s(self.ctx) if status == "delivered" else None
                log.info("sms %d receipt: %s", message_id, status)
            return SmsRecord.of(row)

    def messages(self, kind: SmsKind | None = None) -> Sequence[SmsRecord]:
        """Every message (of one kind), oldest first: for tests and the demo."""
        with session_scope(self.ctx.engine, write=False) as session:
            query = select(SmsMessage)
            if kind is not None:
                query = query.where(SmsMessage.kind == kind)
            return [SmsRecord.of(row) for row in session.scalars(query.order_by(SmsMessage.id))]


# --- HTTP --------------------------------------------------------------------------------------


def _refuse(status: int, error: str, field: str) -> HTTPException:
    return HTTPException(status, detail={"error": error, "field": field})


class ReceiptBody(BaseModel):
    """``POST /sms/messages/{id}/receipt``."""

    model_config = ConfigDict(extra="forbid")
    status: Literal["delivered", "failed"] = "delivered"


class SendBody(BaseModel):
    """``POST /sms/messages`` (other services, the demo)."""

    model_config = ConfigDict(extra="forbid")
    msisdn: str = Field(min_length=5, max_length=16)
    text: str = Field(min_length=1, max_length=MAX_TEXT)
    kind: SmsKind


def sms_router(ctx: Any, gateway: SmsGateway | None = None) -> APIRouter:
    """``/sms``: the outbox of a number, delivery receipts and sending."""
    sms = gateway or SmsGateway(ctx)
    router = APIRouter(prefix="/sms", tags=["sms"])

    def _number(msisdn: str) -> str:
        try:
            return normalise_msisdn(msisdn)
        except ValueError as exc:
            raise _refuse(400, str(exc), "msisdn") from exc

    @router.get("/outbox/{msisdn}")
    def get_outbox(msisdn: str, since: Annotated[int | None, Query(ge=0)] = None) -> dict[str, Any]:
        number = _number(msisdn)
        return {"msisdn": number, "messages": [m.to_json() for m in sms.outbox(number, since)]}

    @router.post("/messages", status_code=201)
    def post_message(body: SendBody) -> dict[str, Any]:
        number = _number(body.msisdn)
        return {"id": sms.send(number, body.text, body.kind)}

    @router.post("/messages/{message_id}/receipt")
    def post_receipt(message_id: int, body: Annotated[ReceiptBody | None, Body()] = None) -> dict[str, Any]:
        try:
            record = sms.mark_delivered(message_id, (body or ReceiptBody()).status)
        except UnknownMessage as exc:
            raise _refuse(404, "no such message", "id") from exc
        return {"id": record.id, "status": record.receipt_status, "deliveredAt": iso(record.delivered_at)}

    return router
