"""The handset's HTTP plumbing: one place that turns httpx failures into typed errors.

Transport failures (connection refused, reset, timeout) are :class:`BackendUnreachable` (the rig);
a 5xx or a body that is not JSON where JSON is expected is :class:`BackendError` (the product).
4xx answers are returned to the caller, which decides (a refused payment is a result, not an error).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from .errors import BackendError, BackendUnreachable

DEFAULT_TIMEOUT_S = 10.0


def make_client(base_url: str, timeout: float = DEFAULT_TIMEOUT_S) -> httpx.Client:
    """An httpx client for the backend at ``base_url`` (``http://host:port``) with a bounded timeout."""
    return httpx.Client(base_url=base_url.rstrip("/"), timeout=httpx.Timeout(timeout))


@dataclass(frozen=True)
class JsonAnswer:
    """An HTTP answer below 500 with its JSON body (``{}`` for an empty body)."""

    status: int
    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def send(client: httpx.Client, method: str, path: str, *, resource: str, **kwargs: Any) -> httpx.Response:
    """One request; transport failures become :class:`BackendUnreachable` naming ``resource`` and the path."""
    try:
        return client.request(method, path, **kwargs)
    except httpx.TimeoutException as exc:
        raise BackendUnreachable(f"{method} {path} timed out", resource=resource,
                                 detail=type(exc).__name__) from exc
    except httpx.HTTPError as exc:
        raise BackendUnreachable(f"{method} {path} failed", resource=resource,
                                 detail=f"{type(exc).__name__}: {exc}") from exc


def call_json(client: httpx.Client, method: str, path: str, *, resource: str,
              json: dict[str, Any] | None = None, params: dict[str, Any] | None = None) -> JsonAnswer:
    """A JSON API call: the status and body of any answer below 500; :class:`BackendError` for a 5xx
    or a non-JSON body."""
    response = send(client, method, path, resource=resource, json=json, params=params)
    if response.status_code >= 500:
        raise BackendError(f"{method} {path} answered HTTP {response.status_code}", resource=resource,
                           detail=response.text[:200], status=response.status_code)
    if not response.content:
        return JsonAnswer(response.status_code, {})
    try:
        body = response.json()
    except ValueError:
        raise BackendError(f"{method} {path} answered a body that is not JSON", resource=resource,
                           status=response.status_code) from None
    if not isinstance(body, dict):
        raise BackendError(f"{method} {path} answered JSON that is not an object", resource=resource,
                           status=response.status_code)
    return JsonAnswer(response.status_code, body)
