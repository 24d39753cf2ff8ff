"""Remote payment system (domain brief section 7): wallets, orders, SE mode, non-SE mode, notifications.

The merchant content platform (:mod:`.merchant`) creates an order here and gets a ``txnId``; the
wallet on the phone pays it in one of two modes, the payment is one ledger entry (cardholder account
debited, merchant settlement account ``rp:merchant:<merchantId>`` credited) written in the same DB
transaction as the order's status change, and the merchant is notified asynchronously.

**Wallet registration** binds a cardholder account (by PAN through the issuer's card file, or by its
ledger account id), a phone number, optionally an SE (its id, the signer ID and the compact
certificate the issuer's TEST CA made for the key the SE generated) and optionally a payment
password (stored as PBKDF2-HMAC-SM3 with a per-wallet salt).

**SE mode** (brief 7 "SE-based"). The wallet asks for a nonce (``POST .../nonce``: 16 random bytes,
bound to the order and the SE, valid ``nonce_window_s``), hashes the order with
:func:`paylab.lab.protocol.remote_payment.order_digest`, verifies the PIN and has the signing applet
sign the digest; ``pay-se`` checks that the registered certificate is the issuer CA's, bound to that
SE id and valid today, burns the nonce (one attempt per nonce, whatever the outcome), verifies the
signature with the certified key and debits. A retry of a successful request (same SE, same nonce,
a valid signature) answers the same paid order and debits nothing.

**Non-SE mode** (brief 7 "Non-SE", UnionPay ACP 5.0.0 shape). ``.../sms`` is ``txnType=77``: a
6-digit code bound to the order is sent to the wallet's phone through :mod:`.sms`; the server keeps
only ``SM3(salt || txnId || code)`` with a 16-byte per-order salt, for ``otp_ttl_s``. ``pay-password``
is ``txnType=01``: the code and the encrypted payment password. ``otp_max_tries`` failed attempts
(wrong code, or right code with a wrong password) lock the order's code for good; a try is taken
before the comparison and given back on success (as a card's PIN try counter, so concurrent guesses
cannot exceed the limit). At most :data:`OTP_MAX_SENDS` codes are sent per order; a new code
replaces the old one and keeps the tries left.

**Password transport** [M]. The SM2 adapter (:mod:`paylab.lab.protocol.crypto.sm2`) has sign/verify
only, no SM2 encryption, so the password travels in an SM4-GCM envelope under a pre-shared TEST key
(:data:`TEST_PASSWORD_TRANSPORT_KEY`, no key agreement): ``01 || IV (12) || ciphertext || tag (16)``,
additional data ``paylab-rp|pay|<txnId>`` (payment) or ``paylab-rp|register|<msisdn>``
(registration), so an envelope is useless for another order. The plaintext is the password, 6
ASCII digits (the usual Chinese payment password). :func:`seal_password` is the wallet side.

**Issuer TEST CAs.** One SM2 key pair per issuer, drawn from the context's ``rng`` the first time it
is needed and kept in ``rp_test_cas`` so every process over the same database agrees (a TEST CA:
its private key sits in the table). ``POST /rp/issuers/{issuer}/ca/certificates`` certifies a card
key for an SE id (what the issuer's perso system does at card issuance); the certificate is a paylab
compact certificate valid :data:`CERTIFICATE_YEARS` years from today.

**Notifications.** Completing a payment writes an ``rp_notifications`` row in the payment's
transaction (an outbox); :meth:`RemotePaymentService.dispatch_notifications` delivers due rows after
the response (a background task of the paying request; :meth:`~RemotePaymentService.start_dispatcher`
for retries in a server; ``POST /rp/notifications/dispatch`` by hand). Delivery is an in-process call
for URLs registered in :attr:`RemotePaymentService.local_endpoints`, an HTTP POST otherwise; the
merchant acknowledges with ``200 {"ack": true}``; failures are retried after
:data:`NOTIFY_BACKOFF_S`, then given up (``failed``). At-least-once: merchants must be idempotent.

Routes (JSON; errors are ``{"error": ..., "field": ...}`` with a 4xx status, see
:func:`install_error_handlers`):

=======================================  ===================================================================
``POST /rp/wallets``                     register a wallet -> ``walletId``
``GET  /rp/wallets/{walletId}``          the wallet (no secrets)
``GET  /rp/issuers/{issuer}/ca``         the issuer TEST CA's reference and public key (7F49)
``POST /rp/issuers/{issuer}/ca/certificates``  certify an SE's public key -> compact certificate
``POST /rp/orders``                      create an order (idempotent on merchantId + orderId) -> ``txnId``
``GET  /rp/orders/{txnId}``              query an order
``GET  /rp/orders?merchantId=&orderId=`` query by the merchant's keys (ACP ``txnType=00``)
``POST /rp/orders/{txnId}/nonce``        SE mode: a fresh nonce for this order and SE
``POST /rp/orders/{txnId}/pay-se``       SE mode: pay with the SE's signature
``POST /rp/orders/{txnId}/sms``          non-SE: send the one-time code (ACP ``txnType=77``)
``POST /rp/orders/{txnId}/pay-password`` non-SE: pay with the code and the password (ACP ``txnType=01``)
``POST /rp/notifications/dispatch``      deliver due merchant notifications now
=======================================  ===================================================================

Status codes: 422 malformed request (the field is named), 400 inconsistent values, 402 insufficient
funds, 403 refused credentials (certificate, signature, code, password), 404 unknown order, wallet,
SE or issuer, 409 conflicts (order exists with other data, already paid, nonce used, SE registered),
410 expired nonce or code, 423 code locked, 429 too many codes sent.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import logging
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import httpx
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from fastapi import APIRouter, BackgroundTasks, FastAPI, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from sqlalchemy import BigInteger, Double, Integer, LargeBinary, String, Text, UniqueConstraint, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..protocol import remote_payment as rpp
from ..protocol.crypto import sm2
from ..protocol.crypto.primitives import sm3
from ..protocol.errors import ProtocolError
from ..protocol.masking import mask_pan
from .db import Base
from .ledger import InsufficientFunds, LedgerError
from .models import ID_LEN, Account, Card
from .sms import SmsGateway, clock_s, iso, normalise_msisdn

log = logging.getLogger(__name__)

CURRENCY_CNY = 156
MAX_AMOUNT = 10**12 - 1
"""n12 fen, as ISO 8583 field 4 and the order digest's amount."""
NONCE_BYTES = 16
OTP_DIGITS = 6
OTP_MAX_SENDS = 3
"""Codes sent per order at most [M] (ACP leaves resending to the acquirer's rules)."""
PASSWORD_DIGITS = 6
PASSWORD_KDF_ITERATIONS = 20_000
"""PBKDF2-HMAC-SM3 iterations for stored payment passwords [M] (a lab value: quick tests, not a bank's)."""
CERTIFICATE_YEARS = 5
NOTIFY_BACKOFF_S: tuple[int, ...] = (15, 60, 300, 1800, 7200)
"""Delay before each retry of a merchant notification; after the last one it is given up."""
NOTIFY_TIMEOUT_S = 5.0
NOTIFY_LEASE_S = 60.0
"""A notification being delivered is not picked up by another dispatcher for this long."""
CST = dt.timezone(dt.timedelta(hours=8), "CST")
"""China Standard Time: ACP ``txnTime`` and certificate dates are Beijing time [M]."""
DEFAULT_SIGNER_ID = sm2.DEFAULT_USER_ID.decode("ascii")

TEST_PASSWORD_TRANSPORT_KEY = sm3(b"paylab TEST KEY: remote payment password transport")[:16]
"""SM4 key of the password envelope, pre-shared with every wallet: a TEST KEY, published here."""
ENVELOPE_VERSION = 0x01
_IV_BYTES = 12
_TAG_BYTES = 16

ID_PATTERN = r"^[0-9A-Za-z._-]+$"
"""merchantId and orderId: they end up in ledger account ids and URLs, so a restricted alphabet."""
LOCAL_NOTIFY_URL = "inproc://merchant/notify"
"""The notify URL of the merchant platform when it runs in this process (:mod:`.merchant`)."""


# --- errors --------------------------------------------------------------------------------------


class ApiError(StarletteHTTPException):
    """A refused request: HTTP ``status``, ``error`` text, the ``field`` concerned and extra JSON members."""

    def __init__(self, status: int, error: str, field: str | None, **extra: Any) -> None:
        self.error = error
        self.field = field
        self.extra = extra
        super().__init__(status, detail={"error": error, "field": field, **extra})


def _field_of(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI) -> None:
    """Answer every refusal as ``{"error": ..., "field": ...}`` JSON: HTTP errors (ours and the router's
    404/405), request validation (422, the first bad field named), protocol errors that escaped (400)
    and, for anything else, 500 ``internal error`` without a traceback (it goes to the log)."""

    async def http_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail
        if isinstance(detail, dict) and "error" in detail:
            body = {"field": None, **detail}
        else:
            field = {404: "path", 405: "method"}.get(exc.status_code)
            body = {"error": str(detail), "field": field}
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    async def validation_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = [{"field": _field_of(e.get("loc", ())), "error": str(e.get("msg", "invalid"))}
                    for e in exc.errors()]
        first = problems[0] if problems else {"field": "body", "error": "invalid request"}
        return JSONResponse({"error": first["error"], "field": first["field"], "problems": problems},
                            status_code=422)

    async def protocol_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ProtocolError)
        return JSONResponse({"error": exc.message, "field": exc.field}, status_code=400)

    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"error": "internal error", "field": None}, status_code=500)

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(ProtocolError, protocol_error)
    app.add_exception_handler(Exception, internal_error)


# --- crypto helpers (pure) -----------------------------------------------------------------------


def payment_aad(txn_id: str) -> bytes:
    """Additional data of a payment's password envelope."""
    return f"paylab-rp|pay|{txn_id}".encode()


def registration_aad(msisdn: str) -> bytes:
    """Additional data of the password envelope at wallet registration."""
    return f"paylab-rp|register|{normalise_msisdn(msisdn)}".encode()


def seal_password(password: str, aad: bytes, *, key: bytes = TEST_PASSWORD_TRANSPORT_KEY,
                  iv: bytes | None = None) -> bytes:
    """The wallet side: the SM4-GCM password envelope ``01 || IV || C || tag`` (module docstring)."""
    if iv is None:
        iv = secrets.token_bytes(_IV_BYTES)
    if len(iv) != _IV_BYTES:
        raise ValueError(f"the IV is {_IV_BYTES} bytes")
    enc = Cipher(algorithms.SM4(key), modes.GCM(iv)).encryptor()
    enc.authenticate_additional_data(aad)
    body = enc.update(password.encode("utf-8")) + enc.finalize()
    return bytes((ENVELOPE_VERSION,)) + iv + body + enc.tag


def open_password(envelope: bytes, aad: bytes, *, key: bytes = TEST_PASSWORD_TRANSPORT_KEY) -> str:
    """The server side of :func:`seal_password`; :class:`ValueError` for anything but a valid envelope."""
    if len(envelope) < 1 + _IV_BYTES + _TAG_BYTES + 1 or envelope[0] != ENVELOPE_VERSION:
        raise ValueError("not a version 01 password envelope")
    iv, body, tag = envelope[1:1 + _IV_BYTES], envelope[1 + _IV_BYTES:-_TAG_BYTES], envelope[-_TAG_BYTES:]
    dec = Cipher(algorithms.SM4(key), modes.GCM(iv, tag)).decryptor()
    dec.authenticate_additional_data(aad)
    try:
        plain = dec.update(body) + dec.finalize()
    except InvalidTag:
        raise ValueError("the envelope does not authenticate (wrong key, order or data)") from None
    try:
        return plain.decode("ascii")
    except UnicodeDecodeError:
        raise ValueError("the password is not ASCII") from None


def check_password_format(password: str) -> bool:
    """A payment password is :data:`PASSWORD_DIGITS` ASCII digits [M]."""
    return len(password) == PASSWORD_DIGITS and password.isascii() and password.isdigit()


def hash_password(password: str, salt: bytes, iterations: int = PASSWORD_KDF_ITERATIONS) -> bytes:
    """PBKDF2-HMAC-SM3 (32 bytes) of a payment password."""
    return PBKDF2HMAC(hashes.SM3(), 32, salt, iterations).derive(password.encode("ascii"))


def otp_hash(salt: bytes, txn_id: str, code: str) -> bytes:
    """``SM3(salt || txnId || "|" || code)``: what is stored of a one-time code."""
    return sm3(salt + txn_id.encode("ascii") + b"|" + code.encode("ascii"))


def cst_text(seconds: float, fmt: str = "%Y%m%d%H%M%S") -> str:
    """Unix seconds as Beijing time text (default ACP ``txnTime``)."""
    return dt.datetime.fromtimestamp(seconds, CST).strftime(fmt)


def _valid_txn_time(text: str) -> bool:
    if len(text) != 14 or not text.isascii() or not text.isdigit():
        return False
    try:
        dt.datetime.strptime(text, "%Y%m%d%H%M%S")
    except ValueError:
        return False
    return True


# --- tables --------------------------------------------------------------------------------------


class RpTestCa(Base):
    """An issuer's TEST CA key pair (SM2)."""

    __tablename__ = "rp_test_cas"

    issuer: Mapped[str] = mapped_column(String(32), primary_key=True)
    ca_reference: Mapped[str] = mapped_column(String(64))
    private_key: Mapped[bytes] = mapped_column(LargeBinary)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    created: Mapped[float] = mapped_column(Double)


class RpWallet(Base):
    """A registered wallet: the account it pays from, its phone, its SE binding and password hash."""

    __tablename__ = "rp_wallets"

    wallet_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    issuer: Mapped[str] = mapped_column(String(32))
    account_id: Mapped[str] = mapped_column(String(ID_LEN))
    pan_masked: Mapped[str | None] = mapped_column(String(19), nullable=True)
    msisdn: Mapped[str] = mapped_column(String(15))
    se_id: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    certificate: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    signer_id: Mapped[str] = mapped_column(String(255), default=DEFAULT_SIGNER_ID)
    password_salt: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    password_hash: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created: Mapped[float] = mapped_column(Double)


class RpOrder(Base):
    """An order of the merchant platform and its payment."""

    __tablename__ = "rp_orders"
    __table_args__ = (UniqueConstraint("merchant_id", "order_id", name="uq_rp_orders_merchant_order"),)

    txn_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(String(40))
    order_id: Mapped[str] = mapped_column(String(64))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[int] = mapped_column(Integer, default=CURRENCY_CNY)
    txn_time: Mapped[str] = mapped_column(String(14))
    notify_url: Mapped[str] = mapped_column(String(512))
    status: Mapped[str] = mapped_column(String(16), default="created")
    created: Mapped[float] = mapped_column(Double)
    paid_at: Mapped[float | None] = mapped_column(Double, nullable=True)
    pay_mode: Mapped[str | None] = mapped_column(String(8), nullable=True)
    wallet_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    se_nonce: Mapped[str | None] = mapped_column(String(64), nullable=True)
    entry_id: Mapped[str | None] = mapped_column(String(ID_LEN), nullable=True)


class RpNonce(Base):
    """An SE-mode challenge: issued for one order and one SE, used at most once."""

    __tablename__ = "rp_nonces"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    txn_id: Mapped[str] = mapped_column(String(32), index=True)
    se_id: Mapped[str] = mapped_column(String(64))
    issued: Mapped[float] = mapped_column(Double)
    used: Mapped[float | None] = mapped_column(Double, nullable=True)


class RpOtp(Base):
    """The one-time code of an order (only its salted SM3 hash)."""

    __tablename__ = "rp_otps"

    txn_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    wallet_id: Mapped[str] = mapped_column(String(32))
    salt: Mapped[bytes] = mapped_column(LargeBinary)
    code_hash: Mapped[bytes] = mapped_column(LargeBinary)
    sent: Mapped[float] = mapped_column(Double)
    expires: Mapped[float] = mapped_column(Double)
    tries_left: Mapped[int] = mapped_column(Integer)
    sends: Mapped[int] = mapped_column(Integer, default=1)
    sms_id: Mapped[int | None] = mapped_column(Integer, nullable=True)


class RpNotification(Base):
    """The outbox of merchant notifications (one per completed order)."""

    __tablename__ = "rp_notifications"

    txn_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    url: Mapped[str] = mapped_column(String(512))
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(8), default="pending")  # pending, acked, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt: Mapped[float] = mapped_column(Double)
    acked: Mapped[float | None] = mapped_column(Double, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created: Mapped[float] = mapped_column(Double)


# --- views ---------------------------------------------------------------------------------------


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def _duration(seconds: int) -> str:
    return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"


def order_json(order: RpOrder, notification: RpNotification | None = None) -> dict[str, Any]:
    """An order as the query answers it (no payer details)."""
    return {
        "txnId": order.txn_id, "merchantId": order.merchant_id, "orderId": order.order_id,
        "amount": order.amount, "currency": order.currency, "time": order.txn_time, "status": order.status,
        "created": iso(order.created), "paidAt": iso(order.paid_at), "payMode": order.pay_mode,
        "notify": None if notification is None else {
            "status": notification.status, "attempts": notification.attempts, "acked": iso(notification.acked)},
    }


def wallet_json(wallet: RpWallet) -> dict[str, Any]:
    """A wallet without its secrets (phone and PAN masked)."""
    return {
        "walletId": wallet.wallet_id, "issuer": wallet.issuer, "accountId": wallet.account_id,
        "pan": wallet.pan_masked, "msisdn": mask_pan(wallet.msisdn), "seId": wallet.se_id,
        "seMode": wallet.certificate is not None, "passwordMode": wallet.password_hash is not None,
        "created": iso(wallet.created),
    }


def notification_payload(order: RpOrder) -> dict[str, Any]:
    """What the merchant's notify URL receives (ACP back notification, in JSON)."""
    return {
        "txnId": order.txn_id, "merchantId": order.merchant_id, "orderId": order.order_id,
        "amount": order.amount, "currency": order.currency, "time": order.txn_time, "status": order.status,
        "paidAt": iso(order.paid_at), "payMode": order.pay_mode, "respCode": "00", "respMsg": "success",
    }


# --- the service ---------------------------------------------------------------------------------

NotifyTransport = Callable[[str, dict[str, Any]], bool]
"""Delivers one notification; True when the merchant acknowledged it (raising counts as a failure)."""
NotifyHandler = Callable[[dict[str, Any]], Any]
"""An in-process notify endpoint: takes the payload, answers ``{"ack": True}`` to acknowledge."""


class NotifyError(Exception):
    """A notification could not be delivered."""


@dataclass(frozen=True)
class DispatchResult:
    """What one :meth:`RemotePaymentService.dispatch_notifications` run did."""

    attempted: int = 0
    acked: int = 0
    failed: int = 0


class RemotePaymentService:
    """The remote payment system over a :class:`~.context.BackendContext` (state in the database)."""

    def __init__(self, ctx: Any, *, sms: SmsGateway | None = None, transport: NotifyTransport | None = None,
                 password_key: bytes = TEST_PASSWORD_TRANSPORT_KEY) -> None:
        self.ctx = ctx
        self.settings = ctx.config.remote_payment
        self.sms = sms or SmsGateway(ctx)
        self.password_key = password_key
        self.local_endpoints: dict[str, NotifyHandler] = {}
        """Notify URLs served in this process (``inproc://...`` or an http URL) and their handlers."""
        self.transport: NotifyTransport = transport or self.deliver
        self._dispatch_lock = threading.Lock()
        self._dispatcher: threading.Thread | None = None
        self._stop = threading.Event()

    # -- plumbing ----------------------------------------------------------------------------------
    def now(self) -> float:
        return clock_s(self.ctx)

    def _random(self, n: int) -> bytes:
        return self.ctx.rng.randbytes(n)

    def _issuer(self, name: str) -> None:
        try:
            self.ctx.config.issuer(name)
        except KeyError:
            raise ApiError(404, "unknown issuer", "issuer") from None

    def _order(self, s: Session, txn_id: str, *, lock: bool = False) -> RpOrder:
        query = select(RpOrder).where(RpOrder.txn_id == txn_id)
        if lock and s.bind is not None and s.bind.dialect.name != "sqlite":
            query = query.with_for_update()
        order = s.scalars(query).one_or_none()
        if order is None:
            raise ApiError(404, "unknown order", "txnId")
        return order

    def _wallet(self, s: Session, wallet_id: str) -> RpWallet:
        wallet = s.get(RpWallet, wallet_id)
        if wallet is None:
            raise ApiError(404, "unknown wallet", "walletId")
        return wallet

    def _wallet_by_se(self, s: Session, se_id: bytes) -> RpWallet:
        wallet = s.scalars(select(RpWallet).where(RpWallet.se_id == se_id.hex().upper())).one_or_none()
        if wallet is None or wallet.certificate is None:
            raise ApiError(404, "this SE is not registered", "seId")
        return wallet

    # -- issuer TEST CAs ---------------------------------------------------------------------------
    def issuer_ca(self, issuer: str) -> RpTestCa:
        """The issuer's TEST CA, generated from the context rng on first use (module docstring)."""
        self._issuer(issuer)
        with self.ctx.session(write=False) as s:
            row = s.get(RpTestCa, issuer)
        if row is not None:
            return row
        private = rpp.generate_sm2_private(self._random(32))
        try:
            with self.ctx.session() as s:
                row = s.get(RpTestCa, issuer)
                if row is None:
                    row = RpTestCa(issuer=issuer, ca_reference=f"PAYLAB TEST CA {issuer}", private_key=private,
                                   public_key=sm2.public_from_private(private), created=self.now())
                    s.add(row)
                    log.info("TEST CA of issuer %s generated", issuer)
        except IntegrityError:  # created concurrently (PostgreSQL)
            with self.ctx.session(write=False) as s:
                row = s.get(RpTestCa, issuer)
        assert row is not None
        return row

    def ca_public_key(self, issuer: str) -> rpp.PublicKey:
        """The SM2 public key of the issuer's TEST CA."""
        return rpp.PublicKey.sm2(self.issuer_ca(issuer).public_key)

    def certify(self, issuer: str, se_id: bytes, public_key: bytes | rpp.PublicKey, *,
                years: int = CERTIFICATE_YEARS) -> bytes:
        """The issuer CA's compact certificate for an SE's public key (7F49 template), valid from today."""
        ca = self.issuer_ca(issuer)
        try:
            key = public_key if isinstance(public_key, rpp.PublicKey) else rpp.PublicKey.decode(bytes(public_key))
        except rpp.RemotePaymentError as exc:
            raise ApiError(400, f"not a public key template: {exc.message}", "publicKey") from None
        today = dt.datetime.fromtimestamp(self.now(), CST).date()
        try:
            until = today.replace(year=today.year + years)
        except ValueError:  # 29 February
            until = today.replace(year=today.year + years, day=28)
        return rpp.issue_compact_certificate("sm2", ca.private_key, ca_reference=ca.ca_reference, holder=se_id,
                                             public_key=key, effective=today.strftime("%Y%m%d"),
                                             expiry=until.strftime("%Y%m%d"))

    def _check_certificate(self, issuer: str, se_id: bytes, certificate: bytes) -> rpp.CompactCertificate:
        """The certificate must be the issuer CA's, for ``se_id``, valid today (Beijing time)."""
        try:
            cert = rpp.CompactCertificate.decode(certificate)
            ca = self.issuer_ca(issuer)
            genuine = cert.ca_reference == ca.ca_reference and rpp.verify_compact_certificate(
                cert, rpp.PublicKey.sm2(ca.public_key))
        except rpp.RemotePaymentError as exc:
            raise ApiError(400, f"not a compact certificate: {exc.message}", "certificate") from None
        if not genuine:
            raise ApiError(403, "certificate not issued by the issuer's CA", "certificate")
        if not hmac.compare_digest(cert.holder, se_id):
            raise ApiError(403, "certificate is bound to another SE", "certificate")
        today = cst_text(self.now(), "%Y%m%d")
        if today > cert.expiry:
            raise ApiError(403, "certificate expired", "certificate")
        if today < cert.effective:
            raise ApiError(403, "certificate not yet valid", "certificate")
        return cert

    # -- wallets -----------------------------------------------------------------------------------
    def _open_password(self, envelope: bytes, aad: bytes) -> str:
        try:
            password = open_password(envelope, aad, key=self.password_key)
        except ValueError as exc:
            raise ApiError(400, str(exc), "encryptedPassword") from None
        if not check_password_format(password):
            raise ApiError(400, f"a payment password is {PASSWORD_DIGITS} digits", "encryptedPassword")
        return password

    def register_wallet(self, *, issuer: str, msisdn: str, account_id: str | None = None, pan: str | None = None,
                        se_id: bytes | None = None, certificate: bytes | None = None,
                        signer_id: str = DEFAULT_SIGNER_ID, encrypted_password: bytes | None = None) -> dict[str, Any]:
        """Bind a cardholder account (``account_id`` or the card's ``pan``), a phone, an SE with its
        certificate and/or a payment password (sealed with :func:`registration_aad`)."""
        self._issuer(issuer)
        try:
            number = normalise_msisdn(msisdn)
        except ValueError as exc:
            raise ApiError(400, str(exc), "msisdn") from None
        if (account_id is None) == (pan is None):
            raise ApiError(400, "give exactly one of accountId and pan", "accountId")
        if se_id is not None and certificate is None:
            raise ApiError(400, "an SE is registered with its certificate", "certificate")
        if certificate is not None and se_id is None:
            raise ApiError(400, "a certificate is registered with its SE id", "seId")
        if se_id is None and encrypted_password is None:
            raise ApiError(400, "a wallet needs an SE or a payment password", "seId")
        if se_id is not None and certificate is not None:
            self._check_certificate(issuer, se_id, certificate)
        salt = digest = None
        if encrypted_password is not None:
            password = self._open_password(encrypted_password, registration_aad(number))
            salt = self._random(16)
            digest = hash_password(password, salt)
        wallet_id = "W" + self._random(8).hex().upper()
        pan_masked = None
        try:
            with self.ctx.session() as s:
                if pan is not None:
                    card = s.get(Card, pan)
                    if card is None or card.issuer != issuer:
                        raise ApiError(404, "no such card at this issuer", "pan")
                    if card.status != "active":
                        raise ApiError(403, f"the card is {card.status}", "pan")
                    if card.account_id is None:
                        raise ApiError(400, "the card has no debit or credit account", "pan")
                    account_id, pan_masked = card.account_id, mask_pan(pan)
                elif (account_id is None or not account_id.startswith(f"issuer:{issuer}:cardholder:")
                      or s.get(Account, account_id) is None):
                    raise ApiError(404, "no such cardholder account at this issuer", "accountId")
                se_hex = se_id.hex().upper() if se_id is not None else None
                if se_hex is not None and s.scalar(select(RpWallet.wallet_id).where(RpWallet.se_id == se_hex)):
                    raise ApiError(409, "this SE is already registered", "seId")
                wallet = RpWallet(wallet_id=wallet_id, issuer=issuer, account_id=account_id, pan_masked=pan_masked,
                                  msisdn=number, se_id=se_hex, certificate=certificate, signer_id=signer_id,
                                  password_salt=salt, password_hash=digest, created=self.now())
                s.add(wallet)
                s.flush()
        except IntegrityError:
            raise ApiError(409, "this SE is already registered", "seId") from None
        log.info("wallet %s registered at %s (SE mode %s, password mode %s)", wallet_id, issuer,
                 certificate is not None, digest is not None)
        return wallet_json(wallet)

    def get_wallet(self, wallet_id: str) -> dict[str, Any]:
        with self.ctx.session(write=False) as s:
            return wallet_json(self._wallet(s, wallet_id))

    # -- orders ------------------------------------------------------------------------------------
    def create_order(self, *, merchant_id: str, order_id: str, amount: int, txn_time: str, notify_url: str,
                     currency: int = CURRENCY_CNY) -> tuple[dict[str, Any], bool]:
        """Create an order; ``(order, created)``. The same (merchantId, orderId) with the same data
        answers the existing order (``created`` False); with other data it is a 409."""
        if isinstance(amount, bool) or not isinstance(amount, int) or not 1 <= amount <= MAX_AMOUNT:
            raise ApiError(400, f"amount is 1..{MAX_AMOUNT} fen", "amount")
        if currency != CURRENCY_CNY:
            raise ApiError(400, "only currency 156 (CNY) is supported", "currency")
        if not isinstance(txn_time, str) or not _valid_txn_time(txn_time):
            raise ApiError(400, "time is a valid YYYYMMDDhhmmss", "time")
        if not isinstance(notify_url, str) or not re.fullmatch(r"(https?|inproc)://[\x21-\x7e]{1,500}", notify_url):
            raise ApiError(400, "notifyUrl is an http(s):// or inproc:// URL", "notifyUrl")
        for field_name, value in (("merchantId", merchant_id), ("orderId", order_id)):
            if not isinstance(value, str) or not re.fullmatch(ID_PATTERN, value):
                raise ApiError(400, "letters, digits, '.', '_' and '-' only", field_name)
        try:
            rpp.encode_order(merchant_id, order_id, amount, currency, txn_time, bytes(NONCE_BYTES))
        except rpp.RemotePaymentError as exc:
            raise ApiError(400, exc.message, exc.field) from None
        wanted = (amount, currency, txn_time, notify_url)
        for _ in range(5):
            now = self.now()
            txn_id = cst_text(now) + f"{self.ctx.rng.randrange(10**7):07d}"
            try:
                with self.ctx.session() as s:
                    existing = s.scalars(select(RpOrder).where(RpOrder.merchant_id == merchant_id,
                                                               RpOrder.order_id == order_id)).one_or_none()
                    if existing is not None:
                        if (existing.amount, existing.currency, existing.txn_time, existing.notify_url) != wanted:
                            raise ApiError(409, "this orderId exists with other order data", "orderId",
                                           txnId=existing.txn_id)
                        return order_json(existing, s.get(RpNotification, existing.txn_id)), False
                    if s.get(RpOrder, txn_id) is not None:
                        continue
                    order = RpOrder(txn_id=txn_id, merchant_id=merchant_id, order_id=order_id, amount=amount,
                                    currency=currency, txn_time=txn_time, notify_url=notify_url, status="created",
                                    created=now)
                    s.add(order)
                    s.flush()
                    view = order_json(order)
            except IntegrityError:  # the same order created concurrently (PostgreSQL): answer the winner
                continue
            log.info("order %s created for %s/%s, %d fen", txn_id, merchant_id, order_id, amount)
            return view, True
        raise ApiError(409, "could not allocate a txnId, retry", "txnId")

    def get_order(self, txn_id: str) -> dict[str, Any]:
        with self.ctx.session(write=False) as s:
            order = self._order(s, txn_id)
            return order_json(order, s.get(RpNotification, txn_id))

    def find_order(self, merchant_id: str, order_id: str) -> dict[str, Any]:
        with self.ctx.session(write=False) as s:
            order = s.scalars(select(RpOrder).where(RpOrder.merchant_id == merchant_id,
                                                    RpOrder.order_id == order_id)).one_or_none()
            if order is None:
                raise ApiError(404, "unknown order", "orderId")
            return order_json(order, s.get(RpNotification, order.txn_id))

    def _complete(self, txn_id: str, wallet: RpWallet, mode: str, *, se_nonce: str | None = None) -> dict[str, Any]:
        """Debit the wallet's account and credit the merchant, mark the order paid and queue the
        notification: one transaction."""
        now = self.now()
        entry_id = f"rp:pay:{txn_id}"
        with self.ctx.session() as s:
            order = self._order(s, txn_id, lock=True)
            if order.status != "created":
                raise ApiError(409, "order already paid", "txnId")
            merchant_acc = f"rp:merchant:{order.merchant_id}"
            ledger = self.ctx.ledger
            ledger.open_account(merchant_acc, owner="rp", kind="liability", allow_negative=True, session=s)
            try:
                ledger.post(entry_id, [(wallet.account_id, order.amount), (merchant_acc, -order.amount)],
                            kind="rp-purchase", memo=f"remote payment ({mode}) {order.merchant_id}/{order.order_id}",
                            reference=txn_id, session=s)
            except InsufficientFunds:
                raise ApiError(402, "insufficient funds", "amount") from None
            except LedgerError as exc:
                log.error("order %s: ledger refused the payment: %s", txn_id, exc)
                raise ApiError(409, "the payment could not be posted", "txnId") from None
            order.status, order.paid_at, order.pay_mode = "paid", now, mode
            order.wallet_id, order.se_nonce, order.entry_id = wallet.wallet_id, se_nonce, entry_id
            notification = RpNotification(txn_id=txn_id, url=order.notify_url, status="pending", attempts=0,
                                          payload=json.dumps(notification_payload(order)), next_attempt=now,
                                          created=now)
            s.add(notification)
            s.flush()
            view = order_json(order, notification)
        log.info("order %s paid (%s) by wallet %s", txn_id, mode, wallet.wallet_id)
        return view

    # -- SE mode -----------------------------------------------------------------------------------
    def issue_nonce(self, txn_id: str, se_id: bytes) -> dict[str, Any]:
        """A fresh nonce for this order and SE, with the order fields the digest covers."""
        now = self.now()
        nonce = self._random(NONCE_BYTES)
        with self.ctx.session() as s:
            order = self._order(s, txn_id)
            if order.status != "created":
                raise ApiError(409, "order already paid", "txnId")
            self._wallet_by_se(s, se_id)
            s.add(RpNonce(nonce=nonce.hex().upper(), txn_id=txn_id, se_id=se_id.hex().upper(), issued=now))
            fields = {"merchantId": order.merchant_id, "orderId": order.order_id, "amount": order.amount,
                      "currency": order.currency, "time": order.txn_time}
        return {"txnId": txn_id, "seId": se_id.hex().upper(), "nonce": nonce.hex().upper(),
                "expiresAt": iso(now + self.settings.nonce_window_s), "order": fields}

    @staticmethod
    def _signature_ok(wallet: RpWallet, digest: bytes, signature: bytes) -> bool:
        assert wallet.certificate is not None
        key = rpp.certificate_public_key(wallet.certificate)
        try:
            return rpp.verify_order_signature(key, digest, signature, key.algorithm, wallet.signer_id.encode("ascii"))
        except (ProtocolError, ValueError):
            return False

    def pay_se(self, txn_id: str, se_id: bytes, nonce: bytes, signature: bytes) -> dict[str, Any]:
        """SE mode: certificate, nonce (burnt), signature, then the debit (module docstring)."""
        se_hex, nonce_hex = se_id.hex().upper(), nonce.hex().upper()
        with self.ctx.session(write=False) as s:
            order = self._order(s, txn_id)
            wallet = self._wallet_by_se(s, se_id)
        try:
            digest = rpp.order_digest(order.merchant_id, order.order_id, order.amount, order.currency,
                                      order.txn_time, nonce)
        except rpp.RemotePaymentError as exc:
            raise ApiError(400, exc.message, "nonce" if exc.field == "nonce" else "txnId") from None
        if order.status != "created":
            if (order.pay_mode == "se" and order.wallet_id == wallet.wallet_id and order.se_nonce == nonce_hex
                    and self._signature_ok(wallet, digest, signature)):
                return self.get_order(txn_id)  # a retry of the request that paid: same answer, no second debit
            raise ApiError(409, "order already paid", "txnId")
        assert wallet.certificate is not None
        self._check_certificate(wallet.issuer, se_id, wallet.certificate)
        now = self.now()
        with self.ctx.session() as s:
            row = s.get(RpNonce, nonce_hex)
            if row is None or row.txn_id != txn_id or row.se_id != se_hex:
                raise ApiError(403, "unknown nonce for this order and SE", "nonce")
            if row.used is not None:
                raise ApiError(409, "nonce already used", "nonce")
            if now - row.issued > self.settings.nonce_window_s:
                raise ApiError(410, "nonce expired", "nonce")
            burnt = s.execute(update(RpNonce).where(RpNonce.nonce == nonce_hex, RpNonce.used.is_(None))
                              .values(used=now).execution_options(synchronize_session=False))
            if burnt.rowcount != 1:
                raise ApiError(409, "nonce already used", "nonce")
        if not self._signature_ok(wallet, digest, signature):
            log.warning("order %s: SE signature refused (wallet %s)", txn_id, wallet.wallet_id)
            raise ApiError(403, "signature does not verify", "signature")
        return self._complete(txn_id, wallet, "se", se_nonce=nonce_hex)

    # -- non-SE mode -------------------------------------------------------------------------------
    def send_otp(self, txn_id: str, wallet_id: str) -> dict[str, Any]:
        """ACP ``txnType=77``: a new code for this order to the wallet's phone."""
        ttl, tries = self.settings.otp_ttl_s, self.settings.otp_max_tries
        now = self.now()
        code = f"{self.ctx.rng.randrange(10**OTP_DIGITS):0{OTP_DIGITS}d}"
        salt = self._random(16)
        digest = otp_hash(salt, txn_id, code)
        with self.ctx.session() as s:
            order = self._order(s, txn_id, lock=True)
            if order.status != "created":
                raise ApiError(409, "order already paid", "txnId")
            wallet = self._wallet(s, wallet_id)
            if wallet.password_hash is None:
                raise ApiError(400, "this wallet has no payment password", "walletId")
            otp = s.get(RpOtp, txn_id)
            if otp is None:
                otp = RpOtp(txn_id=txn_id, wallet_id=wallet_id, salt=salt, code_hash=digest, sent=now,
                            expires=now + ttl, tries_left=tries, sends=1)
                s.add(otp)
            else:
                if otp.tries_left <= 0:
                    raise ApiError(423, "otp locked", "smsCode", triesLeft=0)
                if otp.sends >= OTP_MAX_SENDS:
                    raise ApiError(429, f"at most {OTP_MAX_SENDS} codes per order", "txnId")
                otp.wallet_id, otp.salt, otp.code_hash, otp.sent, otp.expires = wallet_id, salt, digest, now, now + ttl
                otp.sends += 1
            tries_left, sends = otp.tries_left, otp.sends
            msisdn = wallet.msisdn
            text = (f"[paylab TEST] code {code}: pay CNY {_yuan(order.amount)} to merchant {order.merchant_id}, "
                    f"order {order.order_id}. Valid {_duration(ttl)}. Never share it.")
        sms_id = self.sms.send(msisdn, text, "otp")
        with self.ctx.session() as s:
            s.execute(update(RpOtp).where(RpOtp.txn_id == txn_id).values(sms_id=sms_id)
                      .execution_options(synchronize_session=False))
        log.info("order %s: code sent to %s (sms %d)", txn_id, mask_pan(msisdn), sms_id)
        return {"txnId": txn_id, "walletId": wallet_id, "msisdn": mask_pan(msisdn), "smsId": sms_id,
                "expiresAt": iso(now + ttl), "triesLeft": tries_left, "sendsLeft": OTP_MAX_SENDS - sends}

    def _return_try(self, txn_id: str) -> None:
        with self.ctx.session() as s:
            s.execute(update(RpOtp).where(RpOtp.txn_id == txn_id, RpOtp.tries_left < self.settings.otp_max_tries)
                      .values(tries_left=RpOtp.tries_left + 1).execution_options(synchronize_session=False))

    def pay_password(self, txn_id: str, wallet_id: str, sms_code: str, encrypted_password: bytes) -> dict[str, Any]:
        """ACP ``txnType=01``: the code and the password envelope (sealed with :func:`payment_aad`)."""
        with self.ctx.session(write=False) as s:
            order = self._order(s, txn_id)
            wallet = self._wallet(s, wallet_id)
            otp = s.get(RpOtp, txn_id)
        code_ok = otp is not None and otp.wallet_id == wallet_id and hmac.compare_digest(
            otp.code_hash, otp_hash(otp.salt, txn_id, sms_code))
        if order.status != "created":
            if order.pay_mode == "sms" and order.wallet_id == wallet_id and code_ok:
                return self.get_order(txn_id)  # a retry of the request that paid: same answer, no second debit
            raise ApiError(409, "order already paid", "txnId")
        if wallet.password_hash is None or wallet.password_salt is None:
            raise ApiError(400, "this wallet has no payment password", "walletId")
        now = self.now()
        with self.ctx.session() as s:
            otp = s.get(RpOtp, txn_id)
            if otp is None or otp.wallet_id != wallet_id:
                raise ApiError(409, "no code was sent to this wallet for this order", "smsCode")
            if otp.tries_left <= 0:
                raise ApiError(423, "otp locked", "smsCode", triesLeft=0)
            if now > otp.expires:
                raise ApiError(410, "otp expired", "smsCode", triesLeft=otp.tries_left)
            left = otp.tries_left - 1
            taken = s.execute(update(RpOtp).where(RpOtp.txn_id == txn_id, RpOtp.tries_left > 0)
                              .values(tries_left=RpOtp.tries_left - 1).execution_options(synchronize_session=False))
            if taken.rowcount != 1:
                raise ApiError(423, "otp locked", "smsCode", triesLeft=0)
            code_ok = hmac.compare_digest(otp.code_hash, otp_hash(otp.salt, txn_id, sms_code))
        if not code_ok:
            log.info("order %s: wrong code (%d tries left)", txn_id, left)
            raise ApiError(403, "wrong otp", "smsCode", triesLeft=left, locked=left == 0)
        try:
            password = self._open_password(encrypted_password, payment_aad(txn_id))
        except ApiError:
            self._return_try(txn_id)  # a malformed envelope is no guess
            raise
        if not hmac.compare_digest(hash_password(password, wallet.password_salt), wallet.password_hash):
            log.info("order %s: wrong password (%d tries left)", txn_id, left)
            raise ApiError(403, "wrong password", "encryptedPassword", triesLeft=left, locked=left == 0)
        self._return_try(txn_id)
        return self._complete(txn_id, wallet, "sms")

    # -- notifications -----------------------------------------------------------------------------
    def deliver(self, url: str, payload: dict[str, Any]) -> bool:
        """The default transport: an in-process endpoint if ``url`` is registered, else HTTP POST."""
        handler = self.local_endpoints.get(url)
        if handler is not None:
            answer = handler(payload)
            return isinstance(answer, dict) and answer.get("ack") is True
        if not url.startswith(("http://", "https://")):
            raise NotifyError("no in-process endpoint for this URL")
        response = httpx.post(url, json=payload, timeout=NOTIFY_TIMEOUT_S)
        if response.status_code != 200:
            raise NotifyError(f"HTTP {response.status_code}")
        try:
            answer = response.json()
        except ValueError:
            raise NotifyError("the answer is not JSON") from None
        return isinstance(answer, dict) and answer.get("ack") is True

    def dispatch_notifications(self, limit: int = 100) -> DispatchResult:
        """Deliver every due notification once (retries are scheduled by :data:`NOTIFY_BACKOFF_S`)."""
        with self._dispatch_lock:
            now = self.now()
            with self.ctx.session() as s:
                rows = s.scalars(select(RpNotification).where(RpNotification.status == "pending",
                                                              RpNotification.next_attempt <= now)
                                 .order_by(RpNotification.next_attempt).limit(limit)).all()
                due = []
                for row in rows:
                    row.attempts += 1
                    row.next_attempt = now + NOTIFY_LEASE_S
                    due.append((row.txn_id, row.url, json.loads(row.payload), row.attempts))
            acked = failed = 0
            for txn_id, url, payload, attempt in due:
                error: str | None
                try:
                    ok = self.transport(url, payload)
                    error = None if ok else "not acknowledged"
                except Exception as exc:  # any failure of the merchant's side is a failed attempt
                    ok, error = False, f"{type(exc).__name__}: {exc}"[:200]
                with self.ctx.session() as s:
                    row = s.get(RpNotification, txn_id)
                    assert row is not None
                    row.last_error = error
                    if ok:
                        row.status, row.acked = "acked", self.now()
                        acked += 1
                    elif attempt > len(NOTIFY_BACKOFF_S):
                        row.status = "failed"
                        failed += 1
                    else:
                        row.next_attempt = self.now() + NOTIFY_BACKOFF_S[attempt - 1]
                if ok:
                    log.info("order %s: merchant notified (attempt %d)", txn_id, attempt)
                else:
                    log.warning("order %s: notification attempt %d failed: %s", txn_id, attempt, error)
            return DispatchResult(len(due), acked, failed)

    def start_dispatcher(self, interval_s: float = 1.0) -> None:
        """Deliver due notifications every ``interval_s`` in a daemon thread (for a running server)."""
        if self._dispatcher is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.dispatch_notifications()
                except Exception:
                    log.exception("notification dispatcher")

        self._dispatcher = threading.Thread(target=loop, name="rp-notify", daemon=True)
        self._dispatcher.start()

    def stop_dispatcher(self) -> None:
        """Stop the thread of :meth:`start_dispatcher` and wait for it."""
        if self._dispatcher is None:
            return
        self._stop.set()
        self._dispatcher.join()
        self._dispatcher = None


# --- HTTP ----------------------------------------------------------------------------------------

HEX_PATTERN = r"^(?:[0-9A-Fa-f]{2})+$"  # whole bytes of hex
SeId = Annotated[StrictStr, Field(pattern=HEX_PATTERN, min_length=8, max_length=64)]
TxnId = Annotated[str, PathParam(alias="txnId", pattern=r"^[0-9]{21}$")]
WalletId = Annotated[StrictStr, Field(pattern=r"^W[0-9A-F]{16}$")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WalletBody(_Body):
    issuer: StrictStr = Field(min_length=1, max_length=32)
    msisdn: StrictStr = Field(min_length=5, max_length=16)
    accountId: StrictStr | None = Field(None, min_length=1, max_length=ID_LEN)
    pan: StrictStr | None = Field(None, pattern=r"^[0-9]{12,19}$")
    seId: SeId | None = None
    certificate: StrictStr | None = Field(None, pattern=HEX_PATTERN, max_length=8192)
    signerId: StrictStr = Field(DEFAULT_SIGNER_ID, pattern=r"^[\x20-\x7e]{1,255}$")
    encryptedPassword: StrictStr | None = Field(None, pattern=HEX_PATTERN, max_length=512)


class CertifyBody(_Body):
    seId: SeId
    publicKey: StrictStr = Field(pattern=HEX_PATTERN, max_length=2048)


class OrderBody(_Body):
    merchantId: StrictStr = Field(pattern=ID_PATTERN, min_length=1, max_length=40)
    orderId: StrictStr = Field(pattern=ID_PATTERN, min_length=1, max_length=64)
    amount: StrictInt = Field(ge=1, le=MAX_AMOUNT)
    currency: StrictInt = CURRENCY_CNY
    time: StrictStr = Field(pattern=r"^[0-9]{14}$")
    notifyUrl: StrictStr = Field(min_length=1, max_length=512)


class NonceBody(_Body):
    seId: SeId


class PaySeBody(_Body):
    seId: SeId
    nonce: StrictStr = Field(pattern=HEX_PATTERN, min_length=16, max_length=64)
    signature: StrictStr = Field(pattern=HEX_PATTERN, min_length=2, max_length=1024)


class SmsBody(_Body):
    walletId: WalletId


class PayPasswordBody(_Body):
    walletId: WalletId
    smsCode: StrictStr = Field(pattern=r"^[0-9]{6}$")
    encryptedPassword: StrictStr = Field(pattern=HEX_PATTERN, max_length=512)


def _bytes(value: str | None) -> bytes | None:
    return None if value is None else bytes.fromhex(value)


def remote_payment_router(ctx: Any, service: RemotePaymentService | None = None) -> APIRouter:
    """``/rp``: the routes of the module docstring over ``service`` (a new one over ``ctx`` if None)."""
    rp = service or RemotePaymentService(ctx)
    router = APIRouter(prefix="/rp", tags=["remote payment"])

    @router.post("/wallets", status_code=201)
    def post_wallet(body: WalletBody) -> dict[str, Any]:
        return rp.register_wallet(issuer=body.issuer, msisdn=body.msisdn, account_id=body.accountId, pan=body.pan,
                                  se_id=_bytes(body.seId), certificate=_bytes(body.certificate),
                                  signer_id=body.signerId, encrypted_password=_bytes(body.encryptedPassword))

    @router.get("/wallets/{walletId}")
    def get_wallet(wallet_id: Annotated[str, PathParam(alias="walletId", pattern=r"^W[0-9A-F]{16}$")]
                   ) -> dict[str, Any]:
        return rp.get_wallet(wallet_id)

    @router.get("/issuers/{issuer}/ca")
    def get_ca(issuer: Annotated[str, PathParam(max_length=32)]) -> dict[str, Any]:
        ca = rp.issuer_ca(issuer)
        return {"issuer": issuer, "caReference": ca.ca_reference,
                "publicKey": rpp.PublicKey.sm2(ca.public_key).encode().hex().upper()}

    @router.post("/issuers/{issuer}/ca/certificates", status_code=201)
    def post_certificate(issuer: Annotated[str, PathParam(max_length=32)], body: CertifyBody) -> dict[str, Any]:
        cert = rp.certify(issuer, bytes.fromhex(body.seId), bytes.fromhex(body.publicKey))
        return {"issuer": issuer, "seId": body.seId.upper(), "certificate": cert.hex().upper()}

    @router.post("/orders", status_code=201)
    def post_order(body: OrderBody, response: Response) -> dict[str, Any]:
        view, created = rp.create_order(merchant_id=body.merchantId, order_id=body.orderId, amount=body.amount,
                                        currency=body.currency, txn_time=body.time, notify_url=body.notifyUrl)
        response.status_code = 201 if created else 200
        return view

    @router.get("/orders")
    def query_order(merchant_id: Annotated[str, Query(alias="merchantId", pattern=ID_PATTERN, max_length=40)],
                    order_id: Annotated[str, Query(alias="orderId", pattern=ID_PATTERN, max_length=64)]
                    ) -> dict[str, Any]:
        return rp.find_order(merchant_id, order_id)

    @router.get("/orders/{txnId}")
    def get_order(txn_id: TxnId) -> dict[str, Any]:
        return rp.get_order(txn_id)

    @router.post("/orders/{txnId}/nonce", status_code=201)
    def post_nonce(txn_id: TxnId, body: NonceBody) -> dict[str, Any]:
        return rp.issue_nonce(txn_id, bytes.fromhex(body.seId))

    @router.post("/orders/{txnId}/pay-se")
    def pay_se(txn_id: TxnId, body: PaySeBody, background: BackgroundTasks) -> dict[str, Any]:
        view = rp.pay_se(txn_id, bytes.fromhex(body.seId), bytes.fromhex(body.nonce), bytes.fromhex(body.signature))
        background.add_task(rp.dispatch_notifications)
        return view

    @router.post("/orders/{txnId}/sms")
    def post_sms(txn_id: TxnId, body: SmsBody) -> dict[str, Any]:
        return rp.send_otp(txn_id, body.walletId)

    @router.post("/orders/{txnId}/pay-password")
    def pay_password(txn_id: TxnId, body: PayPasswordBody, background: BackgroundTasks) -> dict[str, Any]:
        view = rp.pay_password(txn_id, body.walletId, body.smsCode, bytes.fromhex(body.encryptedPassword))
        background.add_task(rp.dispatch_notifications)
        return view

    @router.post("/notifications/dispatch")
    def post_dispatch() -> dict[str, Any]:
        result = rp.dispatch_notifications()
        return {"attempted": result.attempted, "acked": result.acked, "failed": result.failed}

    return router
