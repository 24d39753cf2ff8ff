"""Institution-to-institution API authentication: HMAC-SHA256 signed JSON requests.

Every call between institutions (bank and UnionPay SP-TSMs, operator SEI-TSMs, the MTPS hub) carries
four headers; the signature covers the method, the path, the timestamp, the nonce and the body::

    X-Paylab-Key-Id:     ak-test-bank-a                  (config ``institutions[].api_key_id``)
    X-Paylab-Timestamp:  1767225600                      (Unix seconds, the sender's clock)
    X-Paylab-Nonce:      9f2c...                         (16-64 characters [0-9A-Za-z_-], never reused)
    X-Paylab-Signature:  hex(HMAC-SHA256(key, METHOD "|" path "|" timestamp "|" nonce "|" body))

``path`` is the URL path without the query string (sign only paths: the APIs take no queries), the
body the exact bytes sent (empty for GET). The key is the institution's TEST KEY from the
configuration. The receiver (:class:`InstitutionAuth`, a FastAPI dependency) refuses, in this order:

=====  ===========================  ==============================================================
401    ``unsigned request``         a header is missing
401    ``unknown institution``      the key id is not in the configuration
401    ``bad timestamp``            not an integer
401    ``stale timestamp``          more than :data:`MAX_SKEW_S` (300 s) from the receiver's clock
401    ``bad signature``            the HMAC does not match (also: another institution's key)
401    ``replayed nonce``           the key id already used this nonce (table ``inst_auth_nonces``)
403    ``institution not allowed``  the route does not serve this institution or its kind
=====  ===========================  ==============================================================

The nonce is recorded only once the signature checks out, so a forger cannot burn a genuine
caller's nonces; nonces older than twice the skew window are pruned (a replay that old is refused
as stale anyway). A refusal answers ``{"detail": {"error": <problem>, ...}}`` and is written to the
audit table ``inst_auth_refusals`` and logged on ``paylab.backend.inst_auth``.

:class:`InstitutionClient` is the sending side: it signs, posts JSON and turns an error answer into
:class:`InstitutionApiError`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import HTTPException, Request
from sqlalchemy import Double, Integer, String, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from ..protocol.errors import PaylabError
from .config import InstitutionConfig
from .context import BackendContext
from .db import Base

__all__ = [
    "HEADER_KEY_ID",
    "HEADER_NONCE",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "MAX_SKEW_S",
    "AuthRefusal",
    "Caller",
    "InstitutionApiError",
    "InstitutionAuth",
    "InstitutionClient",
    "SeenNonce",
    "sign_request",
    "signature",
]

log = logging.getLogger("paylab.backend.inst_auth")

HEADER_KEY_ID = "X-Paylab-Key-Id"
HEADER_TIMESTAMP = "X-Paylab-Timestamp"
HEADER_NONCE = "X-Paylab-Nonce"
HEADER_SIGNATURE = "X-Paylab-Signature"
MAX_SKEW_S = 300
_NONCE_RE = re.compile(r"[0-9A-Za-z_-]{16,64}")


class SeenNonce(Base):
    """A nonce an institution has used (replay protection); pruned after twice the skew window."""

    __tablename__ = "inst_auth_nonces"

    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    timestamp: Mapped[int] = mapped_column(Integer, index=True)


class AuthRefusal(Base):
    """Audit log of refused institution API requests."""

    __tablename__ = "inst_auth_refusals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[float] = mapped_column(Double)
    status: Mapped[int] = mapped_column(Integer)
    problem: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str | None] = mapped_column(String(64))
    institution: Mapped[str | None] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(256))
    detail: Mapped[str] = mapped_column(String(256), default="")


def signature(key: bytes, method: str, path: str, timestamp: str, nonce: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``METHOD|path|timestamp|nonce|body``."""
    message = f"{method.upper()}|{path}|{timestamp}|{nonce}|".encode() + bytes(body)
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def sign_request(key_id: str, key: bytes, method: str, path: str, body: bytes, *, ts: int,
                 nonce: str) -> dict[str, str]:
    """The four authentication headers of one request."""
    return {HEADER_KEY_ID: key_id, HEADER_TIMESTAMP: str(int(ts)), HEADER_NONCE: nonce,
            HEADER_SIGNATURE: signature(key, method, path, str(int(ts)), nonce, body)}


@dataclass(frozen=True)
class Caller:
    """The authenticated institution behind a request."""

    name: str
    kind: str
    key_id: str


class _Refused(Exception):
    def __init__(self, status: int, problem: str, detail: str = "", institution: str | None = None) -> None:
        super().__init__(problem)
        self.status, self.problem, self.detail, self.institution = status, problem, detail, institution


class InstitutionAuth:
    """Verifies signed institution requests (module docstring) against ``ctx.config.institutions``."""

    def __init__(self, ctx: BackendContext) -> None:
        self.ctx = ctx

    def verify(self, method: str, path: str, headers: Any, body: bytes, *, kinds: Collection[str] = (),
               names: Collection[str] = ()) -> Caller:
        """The caller of a request, or :class:`HTTPException` 401/403 (recorded and logged).
        ``kinds``/``names`` empty means any institution."""
        key_id = headers.get(HEADER_KEY_ID)
        try:
            caller = self._check(method, path, headers, body, kinds, names)
        except _Refused as refused:
            self._record(refused, key_id, method, path)
            raise HTTPException(refused.status, detail={"error": refused.problem, "detail": refused.detail},
                                headers={"WWW-Authenticate": "PaylabHMAC"} if refused.status == 401 else None
                                ) from None
        return caller

    def require(self, *kinds: str, names: Collection[str] = ()) -> Callable[[Request], Awaitable[Caller]]:
        """A FastAPI dependency admitting the institutions of ``kinds`` (any when empty) or ``names``."""

        async def dependency(request: Request) -> Caller:
            body = await request.body()
            return self.verify(request.method, request.url.path, request.headers, body, kinds=kinds, names=names)

        return dependency

    def refusals(self) -> list[AuthRefusal]:
        """The audit log, oldest first."""
        with self.ctx.session(write=False) as session:
            return list(session.scalars(select(AuthRefusal).order_by(AuthRefusal.id)))

    # -- internals ---------------------------------------------------------------------------------
    def _check(self, method: str, path: str, headers: Any, body: bytes, kinds: Collection[str],
               names: Collection[str]) -> Caller:
        values = [headers.get(h) for h in (HEADER_KEY_ID, HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE)]
        if not all(values):
            missing = [h for h, v in zip((HEADER_KEY_ID, HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE), values,
                                         strict=True) if not v]
            raise _Refused(401, "unsigned request", f"missing {', '.join(missing)}")
        key_id, timestamp, nonce, sent = values
        institution = self.ctx.config.institution_by_key_id(key_id)
        if institution is None:
            raise _Refused(401, "unknown institution", f"key id {key_id!r}")
        if not timestamp.isdigit() or not _NONCE_RE.fullmatch(nonce):
            raise _Refused(401, "bad timestamp" if not timestamp.isdigit() else "bad nonce", "", institution.name)
        now = self.ctx.clock()
        if abs(now - int(timestamp)) > MAX_SKEW_S:
            raise _Refused(401, "stale timestamp", f"{int(now - int(timestamp))} s off", institution.name)
        expected = signature(institution.hmac_key, method, path, timestamp, nonce, body)
        if not hmac.compare_digest(expected, sent.lower()):
            raise _Refused(401, "bad signature", "", institution.name)
        self._remember_nonce(key_id, nonce, int(timestamp), int(now), institution.name)
        if (kinds or names) and institution.kind not in kinds and institution.name not in names:
            raise _Refused(403, "institution not allowed",
                           f"{institution.kind} {institution.name!r} may not call this route", institution.name)
        return Caller(institution.name, institution.kind, key_id)

    def _remember_nonce(self, key_id: str, nonce: str, timestamp: int, now: int, name: str) -> None:
        try:
            with self.ctx.session() as session:
                session.execute(delete(SeenNonce).where(SeenNonce.timestamp < now - 2 * MAX_SKEW_S))
                session.add(SeenNonce(key_id=key_id, nonce=nonce, timestamp=timestamp))
        except IntegrityError:
            raise _Refused(401, "replayed nonce", f"nonce {nonce[:12]}... already used", name) from None

    def _record(self, refused: _Refused, key_id: str | None, method: str, path: str) -> None:
        log.warning("refused %s %s from %s: %s %s", method, path, refused.institution or key_id or "?",
                    refused.problem, refused.detail)
        with self.ctx.session() as session:
            session.add(AuthRefusal(at=self.ctx.clock(), status=refused.status, problem=refused.problem,
                                    key_id=(key_id or None) and key_id[:64], institution=refused.institution,
                                    method=method[:8], path=path[:256], detail=refused.detail[:256]))


class InstitutionApiError(PaylabError):
    """Another institution answered an error (``status``, and ``error``/``reason`` from its JSON)."""

    def __init__(self, status: int, path: str, error: str, reason: str = "") -> None:
        self.status, self.path, self.error, self.reason = status, path, error, reason
        super().__init__(f"{path} answered {status}: {error}" + (f" ({reason})" if reason else ""))


class InstitutionClient:
    """One institution's signed JSON calls to the others, over any httpx client (a FastAPI
    ``TestClient`` in process, or ``httpx.Client(base_url=...)`` against a server)."""

    def __init__(self, institution: InstitutionConfig, http: httpx.Client, ctx: BackendContext) -> None:
        self.institution = institution
        self.http = http
        self.ctx = ctx

    @property
    def name(self) -> str:
        return self.institution.name

    def call(self, method: str, path: str, payload: Any = None) -> Any:
        """Send ``payload`` as JSON (none for GET) and return the decoded answer."""
        body = b"" if payload is None else json.dumps(payload, separators=(",", ":")).encode()
        nonce = f"{self.ctx.rng.getrandbits(128):032x}"
        headers = sign_request(self.institution.api_key_id, self.institution.hmac_key, method, path, body,
                               ts=int(self.ctx.clock()), nonce=nonce)
        if payload is not None:
            headers["Content-Type"] = "application/json"
        response = self.http.request(method, path, content=body, headers=headers)
        if response.status_code >= 400:
            error, reason = _error_of(response)
            raise InstitutionApiError(response.status_code, path, error, reason)
        return response.json() if response.content else None

    def post(self, path: str, payload: Any) -> Any:
        return self.call("POST", path, payload)

    def get(self, path: str) -> Any:
        return self.call("GET", path)


def _error_of(response: httpx.Response) -> tuple[str, str]:
    """``(error, reason)`` of an error answer: ``{"error", "reason"|"detail"}`` (the backend app's
    handlers) or FastAPI's plain ``{"detail": ...}``."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200], ""
    if not isinstance(body, dict):
        return str(body)[:200], ""
    if "error" not in body and isinstance(body.get("detail"), dict):
        body = body["detail"]
    if "error" in body:
        return str(body["error"]), str(body.get("reason") or body.get("detail") or "")
    return str(body.get("detail", body))[:200], ""
