"""What every TSM is built on: the shared services, the errors the APIs answer, key transport.

:class:`TsmServices` bundles the backend context, the OTA gateway, the institution request
verifier, the handsets on the (simulated) network and the HTTP client institutions call each other
with. TSM errors (:class:`TsmError`) carry the HTTP status and JSON error their routes answer
(:func:`serve` maps them, card failures and other institutions' errors).

**Key transport** (an SSD's first key set, from the SEI-TSM to the SP-TSM that takes it over): the
three keys travel AES key wrapped (RFC 3394) under a KEK both ends derive from the *receiving*
institution's HMAC TEST KEY, ``HMAC-SHA256(key, "paylab TSM key transport|" + sender)[:16]``, so
only that institution (and whoever holds its API key) can unwrap them.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap
from fastapi import HTTPException

from ...gp_client import CardCommandFailed
from ...protocol.errors import PaylabError
from ...protocol.gp import StaticKeys
from ..context import BackendContext
from ..inst_auth import Caller, InstitutionApiError, InstitutionAuth, InstitutionClient
from ..ota_gateway import OtaGateway, OtaGatewayError
from .card_route import CardRouteError, HandsetSim

__all__ = ["CardOperationFailed", "Conflict", "Forbidden", "NotEligible", "NotFound", "TsmError", "TsmServices",
           "effective_caller", "serve", "unwrap_keys", "wrap_keys"]

T = TypeVar("T")


class TsmError(PaylabError):
    """A TSM operation refused or failed; ``status`` and ``error`` are what its route answers."""

    status = 500
    error = "tsm error"

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"{self.error}: {reason}")


class NotFound(TsmError):
    status, error = 404, "not found"


class Forbidden(TsmError):
    status, error = 403, "not allowed"


class Conflict(TsmError):
    status, error = 409, "conflict"


class NotEligible(TsmError):
    """The eligibility check failed (unknown CPLC, not enough free memory, SE not active)."""

    status, error = 409, "not eligible"


class CardOperationFailed(TsmError):
    status, error = 502, "card operation failed"


@dataclass
class TsmServices:
    """The plumbing TSMs share (module docstring). ``http`` is set once the app exists."""

    ctx: BackendContext
    gateway: OtaGateway
    auth: InstitutionAuth
    handsets: dict[str, HandsetSim] = field(default_factory=dict)
    http: httpx.Client | None = None

    def client(self, name: str) -> InstitutionClient:
        """Institution ``name``'s signed client."""
        institution = self.ctx.config.institution(name)
        if institution is None:
            raise NotFound(f"no institution {name!r} in the configuration")
        if self.http is None:
            raise TsmError("the TSM network is not connected to an HTTP client")
        return InstitutionClient(institution, self.http, self.ctx)

    def handset(self, se_id: str) -> HandsetSim:
        handset = self.handsets.get(se_id)
        if handset is None:
            raise NotFound(f"SE {se_id} is not reachable (no handset on the network)")
        return handset


def effective_caller(caller: Caller, payload: dict[str, Any]) -> str:
    """The institution a request acts for: the caller, or ``on_behalf_of`` when MTPS routed it."""
    behalf = payload.get("on_behalf_of")
    if behalf and caller.kind == "mtps":
        return str(behalf)
    return caller.name


def _kek(receiver_key: bytes, sender: str) -> bytes:
    return hmac.new(receiver_key, f"paylab TSM key transport|{sender}".encode(), hashlib.sha256).digest()[:16]


def wrap_keys(keys: StaticKeys, *, receiver_key: bytes, sender: str) -> dict[str, Any]:
    """``{"kvn", "enc", "mac", "dek"}`` with each key AES key wrapped (hex) for the receiver."""
    kek = _kek(receiver_key, sender)
    return {"kvn": keys.kvn, **{name: aes_key_wrap(kek, getattr(keys, name)).hex() for name in ("enc", "mac", "dek")}}


def unwrap_keys(wrapped: dict[str, Any], *, receiver_key: bytes, sender: str) -> StaticKeys:
    kek = _kek(receiver_key, sender)
    try:
        parts = [aes_key_unwrap(kek, bytes.fromhex(wrapped[name])) for name in ("enc", "mac", "dek")]
    except (InvalidUnwrap, KeyError, ValueError) as exc:
        raise TsmError(f"transported key set does not unwrap: {exc!r}") from exc
    return StaticKeys(*parts, kvn=int(wrapped["kvn"]))


def serve(operation: Callable[[], T]) -> T:
    """Run a route's operation, mapping TSM errors, card failures and peers' errors to HTTP answers."""
    try:
        return operation()
    except TsmError as exc:
        raise HTTPException(exc.status, detail={"error": exc.error, "reason": exc.reason}) from None
    except InstitutionApiError as exc:
        raise HTTPException(exc.status if exc.status < 500 else 502,
                            detail={"error": exc.error, "reason": exc.reason, "from": exc.path}) from None
    except (CardCommandFailed, CardRouteError, OtaGatewayError, PaylabError) as exc:
        raise HTTPException(502, detail={"error": CardOperationFailed.error, "reason": str(exc)}) from None
