"""Agent authentication for HTTP remote administration (paylab's stand-in for SCP81's TLS-PSK).

GlobalPlatform Card Specification v2.3 Amendment B runs the admin session over TLS with a
pre-shared key the security domain holds (SCP81, clause 2.3): only an agent that knows the PSK
reaches the admin server. paylab's handset carries HTTP without TLS, so the agent instead proves
knowledge of the same per-SE PSK with an HMAC over each request [M: not in any specification]::

    X-Admin-Authorization: PSK-HMAC-SHA256 ts=<unix seconds>,nonce=<32 hex>,mac=<64 hex>

    mac = HMAC-SHA256(PSK, "POST" LF path LF agent-id LF script-status LF ts LF nonce LF hex(SHA-256(body)))

``agent-id`` is the ``X-Admin-From`` value (``//se-id/<SE id>``), ``script-status`` the
``X-Admin-Script-Status`` value ("" on the session's first request). The server refuses (401) an
unknown agent, a missing or malformed header, a wrong MAC, a timestamp outside its window and a
nonce it has already seen within that window (a replay).

PSKs: the OTA platform diversifies one per SE from a master key,
``PSK = HMAC-SHA256(master, "paylab admin psk" LF <SE id>)[:16]`` (:func:`derive_psk`), the way
issuers diversify card keys; the SE receives its PSK at fabrication. :data:`TEST_ADMIN_MASTER_KEY`
is a published TEST KEY.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..errors import ProtocolError

HEADER = "X-Admin-Authorization"
SCHEME = "PSK-HMAC-SHA256"
AGENT_PREFIX = "//se-id/"
TEST_ADMIN_MASTER_KEY = hashlib.sha256(b"paylab TEST admin PSK master key").digest()
"""TEST KEY: the OTA platform's master key for admin agent PSKs."""

_VALUE = re.compile(rf"^{SCHEME} ts=(\d{{1,12}}),nonce=([0-9a-f]{{32}}),mac=([0-9a-f]{{64}})$")


class AdminAuthError(ProtocolError):
    """A malformed ``X-Admin-Authorization`` header or agent id."""


@dataclass(frozen=True)
class AdminAuth:
    """The parsed header: timestamp (Unix seconds), nonce (16 bytes) and MAC (32 bytes)."""

    timestamp: int
    nonce: bytes
    mac: bytes

    def encode(self) -> str:
        return f"{SCHEME} ts={self.timestamp},nonce={self.nonce.hex()},mac={self.mac.hex()}"

    @classmethod
    def decode(cls, value: str) -> AdminAuth:
        found = _VALUE.match(value.strip())
        if found is None:
            raise AdminAuthError(f"malformed {HEADER}", field=HEADER,
                                 expected=f"{SCHEME} ts=<unix seconds>,nonce=<32 hex>,mac=<64 hex>")
        return cls(int(found[1]), bytes.fromhex(found[2]), bytes.fromhex(found[3]))


def derive_psk(master_key: bytes, se_id: str) -> bytes:
    """The 16-byte PSK of SE ``se_id`` (module docstring)."""
    return hmac.new(master_key, b"paylab admin psk\n" + se_id.encode(), hashlib.sha256).digest()[:16]


def se_id_of(agent_id: str) -> str:
    """``//se-id/<id>`` -> ``<id>``; :class:`AdminAuthError` for another form."""
    se_id = agent_id[len(AGENT_PREFIX):] if agent_id.startswith(AGENT_PREFIX) else ""
    if not se_id or "/" in se_id or len(se_id) > 64:
        raise AdminAuthError(f"agent id {agent_id[:80]!r}", field="X-Admin-From", expected=f"{AGENT_PREFIX}<SE id>")
    return se_id


def request_mac(psk: bytes, *, path: str, agent_id: str, script_status: str, timestamp: int, nonce: bytes,
                body: bytes) -> bytes:
    """HMAC-SHA256 over the request (module docstring)."""
    message = "\n".join(("POST", path, agent_id, script_status, str(timestamp), nonce.hex(),
                         hashlib.sha256(body).hexdigest()))
    return hmac.new(psk, message.encode(), hashlib.sha256).digest()


def sign(psk: bytes, *, path: str, agent_id: str, script_status: str = "", timestamp: int, nonce: bytes,
         body: bytes = b"") -> str:
    """The ``X-Admin-Authorization`` value for one request."""
    if len(nonce) != 16:
        raise AdminAuthError("the nonce is 16 bytes", field="nonce")
    mac = request_mac(psk, path=path, agent_id=agent_id, script_status=script_status, timestamp=timestamp,
                      nonce=nonce, body=body)
    return AdminAuth(timestamp, nonce, mac).encode()


def sign_request(psk: bytes, *, uri: str, headers: Mapping[str, str], body: bytes, timestamp: int,
                 nonce: bytes) -> dict[str, str]:
    """``headers`` plus ``X-Admin-Authorization`` for an agent's request (the agent id and script
    status are read from ``headers``, case-insensitively; the path from ``uri``)."""
    lower = {k.lower(): v for k, v in headers.items()}
    value = sign(psk, path=urlsplit(uri).path or "/", agent_id=lower.get("x-admin-from", ""),
                 script_status=lower.get("x-admin-script-status", ""), timestamp=timestamp, nonce=nonce, body=body)
    return {**headers, HEADER: value}


def verify(psk: bytes, auth: AdminAuth, *, path: str, agent_id: str, script_status: str, body: bytes) -> bool:
    """Whether ``auth.mac`` is the request's MAC under ``psk`` (constant-time compare)."""
    expected = request_mac(psk, path=path, agent_id=agent_id, script_status=script_status,
                           timestamp=auth.timestamp, nonce=auth.nonce, body=body)
    return hmac.compare_digest(expected, auth.mac)


__all__ = [
    "AGENT_PREFIX",
    "HEADER",
    "SCHEME",
    "TEST_ADMIN_MASTER_KEY",
    "AdminAuth",
    "AdminAuthError",
    "derive_psk",
    "request_mac",
    "se_id_of",
    "sign",
    "sign_request",
    "verify",
]
