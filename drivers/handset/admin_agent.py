"""The handset side of GP Amendment B remote administration (microSD / eSE; SCP81 without TLS-PSK).

The card's agent (:class:`paylab.drivers.se.ota.AdminAgent`) turns HTTP responses into HTTP requests
and never opens a socket; the phone carries them (GP Card Specification v2.3 Amendment B clause 3:
the handset provides the transport, TLS and BIP in a real phone). :func:`run_admin_session` POSTs
each request the agent makes to the admin server over httpx and hands back the answer, until the
server answers ``204 No Content`` (the agent then returns no request).

Bounded: at most ``max_rounds`` HTTP exchanges and ``timeout`` seconds for the whole session, each
request with the client's own timeout. Card work runs under ``card_lock`` (the SE is shared with the
NFC route), one script at a time; the lock is not held during HTTP round trips.

Agent authentication (the gateway's stand-in for SCP81 TLS-PSK, :mod:`paylab.lab.protocol.ota.admin_auth`):
each request gets ``X-Admin-Authorization``, an HMAC over the request under the SE's PSK with a
fresh nonce and the ``clock`` time. ``psk`` defaults to the one the OTA platform diversifies from
its TEST master key for the trigger's agent id (what the SE would hold from fabrication).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import httpx

from paylab.drivers.se.ota import AdminAgent, AdminSessionError, AdminTrigger, HttpRequest, HttpResponse
from paylab.lab.protocol.ota import admin_auth

from .errors import AdminSessionFailed
from .http import send

ADMIN_PREFIX = "/ota/admin"
"""Where the backend's OTA gateway serves remote administration (``lab/backend/ota_gateway.py``) [M]."""
DEFAULT_MAX_ROUNDS = 256
DEFAULT_SESSION_TIMEOUT_S = 60.0


def default_trigger(se_id: str) -> AdminTrigger:
    """The trigger a push for SE ``se_id`` carries: the gateway's admin URI and the agent id ``//se-id/<id>``."""
    return AdminTrigger(f"{ADMIN_PREFIX}/{se_id}", agent_id=f"//se-id/{se_id}")


def default_psk(agent_id: str) -> bytes:
    """The PSK diversified from the TEST master key for ``//se-id/<id>`` (the gateway's default);
    :class:`~paylab.lab.protocol.ota.admin_auth.AdminAuthError` for another agent id form."""
    return admin_auth.derive_psk(admin_auth.TEST_ADMIN_MASTER_KEY, admin_auth.se_id_of(agent_id))


def authenticated_headers(request: HttpRequest, psk: bytes | None = None, *,
                          clock: Callable[[], float] = time.time) -> dict[str, str]:
    """The request's headers plus ``X-Admin-Authorization`` (fresh nonce, ``clock`` time); without
    ``psk``, the :func:`default_psk` of its ``X-Admin-From``, or no header when that is no SE id."""
    if psk is None:
        try:
            psk = default_psk(request.header("X-Admin-From") or "")
        except admin_auth.AdminAuthError:
            return dict(request.headers)  # the gateway will refuse it (401) and say why
    return admin_auth.sign_request(psk, uri=request.uri, headers=request.headers, body=request.body or b"",
                                   timestamp=int(clock()), nonce=secrets.token_bytes(16))


def run_admin_session(agent: AdminAgent, http: httpx.Client, trigger: AdminTrigger, *, resource: str,
                      card_lock: threading.RLock | AbstractContextManager[Any] | None = None,
                      prepare_card: Any = None, max_rounds: int = DEFAULT_MAX_ROUNDS,
                      timeout: float = DEFAULT_SESSION_TIMEOUT_S, psk: bytes | None = None,
                      clock: Callable[[], float] = time.time) -> list[str]:
    """Run one admin session until the server answers 204; returns the script statuses the agent
    reported (``ok``, ``security-error``, ...). ``prepare_card()`` (under the lock) powers the card
    before each script. :class:`AdminSessionFailed` when the server breaks the protocol, the session
    exceeds ``max_rounds`` or ``timeout``; :class:`~.errors.BackendUnreachable` on transport failures."""
    lock = card_lock if card_lock is not None else nullcontext()
    deadline = time.monotonic() + timeout
    with lock:
        if prepare_card is not None:
            prepare_card()
        request = agent.start(trigger)
    try:
        for _ in range(max_rounds):
            if request is None:
                return [str(status) for status in agent.statuses]
            if time.monotonic() > deadline:
                raise AdminSessionFailed(f"admin session longer than {timeout:g} s", resource=resource,
                                         detail=f"{len(agent.statuses)} script(s) run")
            answer = send(http, request.method, request.uri, resource=resource,
                          headers=authenticated_headers(request, psk, clock=clock), content=request.body)
            response = HttpResponse(answer.status_code, dict(answer.headers), answer.content)
            with lock:
                if prepare_card is not None and response.status == 200:
                    prepare_card()
                try:
                    request = agent.handle_response(response)
                except AdminSessionError as exc:
                    raise AdminSessionFailed(f"admin server broke the session: {exc}", resource=resource,
                                             detail=f"POST {request.uri}") from exc
        if request is None:
            return [str(status) for status in agent.statuses]
        raise AdminSessionFailed(f"admin session did not end within {max_rounds} rounds", resource=resource)
    finally:
        if agent.active:
            with lock:
                agent.close()
