"""Remote administration over HTTP (GlobalPlatform Card Specification v2.3 Amendment B, "SCP81"),
card side, transport-agnostic: the agent turns HTTP responses into HTTP requests and never opens a
socket (TLS-PSK and BIP are the handset's job).

Session (Amendment B clause 3 [S: domain brief section 4; header values M]):

1. a trigger (:class:`AdminTrigger`, the tag 81 structure of an SMS/push, or built directly) gives
   the admin server URI and the agent id;
2. :meth:`AdminAgent.start`: ``POST <uri>`` with ``X-Admin-Protocol: globalplatform-remote-admin/1.0``,
   ``X-Admin-From: <agent id>`` and an empty body;
3. the server answers ``200`` with a script (``Content-Type:
   application/vnd.globalplatform.card-content-mgt;version=1.0``), ``X-Admin-Next-URI`` and
   optionally ``X-Admin-Targeted-Application: //aid/<RID>/<PIX>`` (default: the agent's SD);
4. :meth:`AdminAgent.handle_response` runs the script and POSTs the R-APDUs to the next URI
   (``Content-Type: application/vnd.globalplatform.card-content-mgt-response;version=1.0``,
   ``X-Admin-Script-Status``); steps 3-4 repeat until the server answers ``204 No Content``.

Script format: the expanded remote APDU format of ETSI TS 102 226 (``AA``/``AE`` holding ``22``
C-APDUs; the response is ``AB``/``AF`` with ``80`` count and ``23`` R-APDUs), as RAM over SMS
uses. Concatenated raw C-APDUs are not accepted (they cannot be split without knowing each
command's case); a script that does not parse is answered ``AB {80 00, 90 01}`` ("bad format").

The C-APDUs run on one card-internal channel on the targeted security domain, kept open for the
whole admin session (so an SCP02/SCP03 session the script opens with INITIALIZE UPDATE / EXTERNAL
AUTHENTICATE lasts across scripts), without external security: the protection is end to end
between the TSM and the SD. Internal channels run outside any APDU's transaction, so the agent
commits the card image after each script (``se.image.commit()``; ``rollback()`` on an exception):
each HTTP round trip is atomic.

``X-Admin-Script-Status`` [M]: ``unknown-application`` (the targeted AID is not on the card; nothing
runs), ``not-a-security-domain`` (it is, but not an SD; nothing runs), ``security-error`` (a command
was refused for security: 6982, 6987 or 6988, i.e. the secure channel failed), else ``ok`` (even
when a command failed otherwise: its status word is in the response).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from paylab.lab.protocol import tlv
from paylab.lab.protocol.errors import PaylabError, ProtocolError, TlvError
from paylab.lab.protocol.ota.ram import RApdu, build_expanded_response, parse_expanded_commands

from ..errors import CardPoweredOff, PowerLost
from ..runtime import SecureElement
from .ram import BAD_FORMAT_RESPONSE, is_expanded, run_on_channel

PROTOCOL = "globalplatform-remote-admin/1.0"
CONTENT_TYPE_SCRIPT = "application/vnd.globalplatform.card-content-mgt;version=1.0"
CONTENT_TYPE_RESPONSE = "application/vnd.globalplatform.card-content-mgt-response;version=1.0"
SECURITY_SWS = frozenset({0x6982, 0x6987, 0x6988})
"""Security status not satisfied, expected SM data objects missing, SM data objects incorrect."""


class ScriptStatus(enum.StrEnum):
    """Values of ``X-Admin-Script-Status``."""

    OK = "ok"
    UNKNOWN_APPLICATION = "unknown-application"
    NOT_A_SECURITY_DOMAIN = "not-a-security-domain"
    SECURITY_ERROR = "security-error"


class AdminSessionError(PaylabError):
    """The admin server broke the protocol (status, content type) or the session is not running."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class _HttpMessage:
    """Header look-up shared by :class:`HttpRequest` and :class:`HttpResponse`."""

    headers: dict[str, str]

    def header(self, name: str) -> str | None:
        """A header value, by case-insensitive name."""
        wanted = name.lower()
        return next((value for key, value in self.headers.items() if key.lower() == wanted), None)


@dataclass(frozen=True)
class HttpRequest(_HttpMessage):
    """What the agent asks the handset to POST."""

    method: str
    uri: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True)
class HttpResponse(_HttpMessage):
    """What the admin server answered."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


# --- trigger --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Session retry policy (tag 86): retry counter, waiting delay (5 bytes, as sent), report on failure."""

    counter: int
    waiting_delay: bytes = bytes(5)
    report_failure: bytes | None = None


@dataclass(frozen=True)
class AdminTrigger:
    """Administration session triggering parameters (Amendment B table 3-3; tag layout per the domain
    brief section 4): ``81 { 83 { [85 PSK id, KVN, KID] [86 retry] 89 { 8A host, 8B agent id, 8C URI } } }``.
    Connection parameters (84) and DNS resolution (B3) are the handset's and are skipped."""

    uri: str
    agent_id: str | None = None
    host: str | None = None
    retry: RetryPolicy | None = None
    psk_identity: bytes | None = None
    kvn: int | None = None
    kid: int | None = None

    def encode(self) -> bytes:
        """The tag 81 structure."""
        params = b""
        if self.psk_identity is not None:
            params += tlv.tlv(0x85, bytes((len(self.psk_identity),)) + self.psk_identity + b"\x02"
                              + bytes((self.kvn or 0, self.kid or 0)))
        if self.retry is not None:
            params += tlv.tlv(0x86, self.retry.counter.to_bytes(2, "big") + self.retry.waiting_delay
                              + (self.retry.report_failure or b""))
        post = b"".join(tlv.tlv(tag, value.encode()) for tag, value in
                        ((0x8A, self.host), (0x8B, self.agent_id), (0x8C, self.uri)) if value is not None)
        return tlv.tlv(0x81, tlv.tlv(0x83, params + tlv.tlv(0x89, post)))

    @classmethod
    def parse(cls, data: bytes) -> AdminTrigger:
        """Parse the tag 81 structure; :class:`ProtocolError` when it is malformed or has no URI."""
        try:
            outer = tlv.decode_one(data)
            if outer.tag != 0x81:
                raise ProtocolError(f"tag {outer.tag:X}", field="trigger", expected="81")
            session = tlv.to_dict(tlv.decode(outer.value, allow_padding=False))
            params = tlv.to_dict(tlv.decode(session[0x83], allow_padding=False))
            post = tlv.to_dict(tlv.decode(params[0x89], allow_padding=False))
            uri = post[0x8C].decode()
            retry = psk = kvn = kid = None
            if 0x86 in params:
                raw = params[0x86]
                retry = RetryPolicy(int.from_bytes(raw[:2], "big"), raw[2:7], raw[7:] or None)
            if 0x85 in params:
                raw = params[0x85]
                psk = raw[1:1 + raw[0]]
                kvn, kid = raw[2 + raw[0]], raw[3 + raw[0]]
            return cls(uri, post[0x8B].decode() if 0x8B in post else None,
                       post[0x8A].decode() if 0x8A in post else None, retry, psk, kvn, kid)
        except (KeyError, IndexError, UnicodeDecodeError, TlvError) as exc:
            raise ProtocolError(f"malformed admin trigger ({exc})", field="trigger",
                                expected="81 {83 {89 {8C URI}}}") from exc


def aid_uri(aid: bytes) -> str:
    """``//aid/<RID>/<PIX>``, the form Amendment B uses to name an application in headers."""
    return f"//aid/{aid[:5].hex().upper()}/{aid[5:].hex().upper()}"


def parse_aid_uri(text: str) -> bytes:
    """Inverse of :func:`aid_uri`."""
    parts = text.strip().split("/")
    if len(parts) != 5 or parts[:3] != ["", "", "aid"]:
        raise ProtocolError(f"{text!r}", field="X-Admin-Targeted-Application", expected="//aid/<RID>/<PIX>")
    try:
        return bytes.fromhex(parts[3] + parts[4])
    except ValueError as exc:
        raise ProtocolError(f"{text!r}", field="X-Admin-Targeted-Application", expected="hex RID and PIX") from exc


# --- the agent ------------------------------------------------------------------------------------


class AdminAgent:
    """The card's remote administration agent for one security domain (module docstring)."""

    def __init__(self, se: SecureElement, sd_aid: bytes, *, agent_id: str | None = None) -> None:
        self.se = se
        self.sd_aid = bytes(sd_aid)
        self.agent_id = agent_id or f"//aa-id{aid_uri(self.sd_aid)}"
        self.uri: str | None = None
        self.host: str | None = None
        self.statuses: list[ScriptStatus] = []
        self._channels: dict[bytes, int] = {}

    @property
    def active(self) -> bool:
        """True between :meth:`start` and the end of the session."""
        return self.uri is not None

    def _headers(self) -> dict[str, str]:
        headers = {"X-Admin-Protocol": PROTOCOL, "X-Admin-From": self.agent_id}
        if self.host:
            headers["Host"] = self.host
        return headers

    def start(self, trigger: AdminTrigger) -> HttpRequest:
        """Open the admin session: the first POST, with an empty body."""
        self.close()
        self.uri, self.host = trigger.uri, trigger.host
        if trigger.agent_id:
            self.agent_id = trigger.agent_id
        self.statuses = []
        return HttpRequest("POST", self.uri, self._headers())

    def handle_response(self, resp: HttpResponse) -> HttpRequest | None:
        """Run the server's script and return the next POST; None once the server answers 204."""
        if self.uri is None:
            raise AdminSessionError("no admin session: call start() first")
        if resp.status == 204:
            self.close()
            return None
        if resp.status != 200:
            self.close()
            raise AdminSessionError(f"admin server answered HTTP {resp.status}", status=resp.status)
        content_type = (resp.header("Content-Type") or "").replace(" ", "").lower()
        if content_type != CONTENT_TYPE_SCRIPT:
            self.close()
            raise AdminSessionError(f"unexpected content type {content_type!r}", status=resp.status)
        targeted = resp.header("X-Admin-Targeted-Application")
        status, body = self._run_script(parse_aid_uri(targeted) if targeted else self.sd_aid, resp.body)
        self.statuses.append(status)
        self.uri = resp.header("X-Admin-Next-URI") or self.uri
        headers = self._headers() | {"X-Admin-Script-Status": str(status)}
        if body:
            headers["Content-Type"] = CONTENT_TYPE_RESPONSE
        return HttpRequest("POST", self.uri, headers, body)

    def close(self) -> None:
        """End the session: close the internal channels (and with them any secure channel)."""
        for channel in self._channels.values():
            self.se.close_internal_channel(channel)
        self._channels.clear()
        self.uri = None

    def _channel(self, target: bytes) -> int:
        channel = self._channels.get(target)
        if channel is None or channel not in self.se.channels:  # a reset closed it: start afresh
            channel = self._channels[target] = self.se.open_internal_channel(target)
        return channel

    def _run_script(self, target: bytes, script: bytes) -> tuple[ScriptStatus, bytes]:
        if not self.se.powered:
            raise CardPoweredOff("card is not powered")
        entry = self.se.registry.get(target)
        if entry is None or entry.kind == "ELF":
            return ScriptStatus.UNKNOWN_APPLICATION, b""
        if not entry.is_sd:
            return ScriptStatus.NOT_A_SECURITY_DOMAIN, b""
        try:
            parsed = parse_expanded_commands(script) if is_expanded(script) else None
        except ProtocolError:
            parsed = None
        if parsed is None:
            return ScriptStatus.OK, BAD_FORMAT_RESPONSE
        try:
            responses: list[RApdu] = run_on_channel(self.se, self._channel(target), parsed.apdus)
            self.se.image.commit()
        except PowerLost:
            self.se.power_off()
            self._channels.clear()
            raise
        except Exception:
            self.se.image.rollback()
            self.close()
            raise
        security = any(r.sw in SECURITY_SWS for r in responses)
        return (ScriptStatus.SECURITY_ERROR if security else ScriptStatus.OK,
                build_expanded_response(responses, indefinite=parsed.indefinite))
