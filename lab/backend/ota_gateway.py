"""OTA gateway: an SMSC for SIM data download (SCP80 in SMS-DELIVER) and an HTTP remote
administration server for microSD/eSE (GP Amendment B), both driven by the TSMs.

**SMS-PP** (ETSI TS 102 225 / 3GPP TS 31.115 / TS 31.111; domain brief section 4).
:meth:`OtaGateway.send_ram_script` turns RAM commands (ETSI TS 102 226 expanded format, so that the
PoR carries every R-APDU) into SCP80 command packets, each in one SMS-DELIVER (TP-PID 7F, 8-bit
class 2, UDH ``70 00``) inside an ENVELOPE (SMS-PP download, tag D1) the handset passes to the UICC
with ``se.transmit``; :meth:`OtaGateway.collect_por` verifies and deciphers the Proof-of-Receipt the
UICC answers. Packets are ciphered, carry a cryptographic checksum and a counter ("higher than the
last one", SPI ``16 39`` by default: PoR always, ciphered and checksummed).

* **Counters**: one per (SE, TAR, KID key set), persisted in ``ota_counters``; each packet takes the
  next value. The UICC keeps one per (target SD, KID key set); TARs map one to one to SDs here, so
  both sides count the same packets. Counters taken for packets that are never delivered leave
  gaps, which mode "higher" accepts.
* **Concatenation**: the UICC runs each packet on a fresh card session, so the caller groups commands
  in *units* that must share one (e.g. INSTALL [for personalization] with its STORE DATA, INSTALL
  [for load] with its LOAD blocks): a unit is never split across packets. Units are packed greedily
  into packets that fit one SMS (:meth:`OtaGateway.max_script_bytes`, 98 bytes of script with AES
  keys); a unit longer than that gets a packet of its own sent as a **concatenated SMS** (3GPP TS
  31.115 clause 4, TS 23.040 clause 9.2.3.24.1: UDH IE 00 with an 8-bit reference, the low byte of
  the packet's counter, and IE 70 in the first segment), each segment in its own ENVELOPE; the
  UICC answers 9000 to all but the last, whose answer carries the PoR. At most ``max_segments``
  SMS per packet (default :data:`MAX_SEGMENTS`; ``max_script_bytes(keys, segments=...)`` is the
  matching script size); a longer unit is refused (:class:`OtaGatewayError`).
  :meth:`OtaGateway.send_ram_packets` returns the packets with their segments,
  :meth:`OtaGateway.send_ram_script` the flat list of ENVELOPEs (single-SMS packets: one each).

**HTTP remote administration** (GP Amendment B, the server side of
``drivers/se/ota/http_admin.py``): TSMs queue scripts per agent (:meth:`OtaGateway.queue_script`,
``agent`` being the SE id), the handset's admin agent opens a session with ``POST /ota/admin/{agent}``
(``X-Admin-Protocol: globalplatform-remote-admin/1.0``, empty body) and gets the next queued script
(``200``, ``Content-Type: application/vnd.globalplatform.card-content-mgt;version=1.0``, body an
expanded ``AA`` script, ``X-Admin-Targeted-Application: //aid/<RID>/<PIX>``, ``X-Admin-Next-URI:
/ota/admin/{agent}/{ticket}``); it posts the R-APDUs (``AB``) to the next URI with
``X-Admin-Script-Status`` and gets the next script, or ``204`` when the queue is empty. Results are
kept per ticket (:meth:`OtaGateway.admin_result`).

**Agent authentication** (:mod:`paylab.lab.protocol.ota.admin_auth`, paylab's stand-in for SCP81's
TLS-PSK): every admin request carries ``X-Admin-Authorization`` with an HMAC-SHA256 over the request
under the SE's PSK; the path's agent must match ``X-Admin-From`` (``//se-id/<agent>``). A PSK is the
one :meth:`OtaGateway.register_agent` set, else the one diversified from ``admin_master_key`` (the
TEST master key by default; ``None``: registered agents only). Refusals are ``401`` with a JSON
error naming the header: unknown agent, missing/malformed header, bad MAC, timestamp more than
``admin_window_s`` (default 900 s) from the gateway's clock, or a nonce already used in that window.
The scripts are protected end to end by the TSM
(SCP03 with the security domain); the gateway only transports them. Queues live in memory: a
script is bound to a live TSM operation, so a restart loses nothing worth keeping.
"""

from __future__ import annotations

import datetime
import itertools
import logging
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ..protocol.errors import OtaError, PaylabError, ProtocolError
from ..protocol.ota import (
    Checksum,
    CounterMode,
    OtaKeys,
    PorRequest,
    RApdu,
    Spi,
    admin_auth,
    build_command_packet,
    build_expanded_commands,
    key_index,
    parse_expanded_response,
    parse_response_packet,
)
from ..protocol.ota.sms import (
    Address,
    SmsDeliver,
    SmsPpDownload,
    build_envelope_command,
    max_concatenated_packet,
    parse_envelope_response,
    scts_from_datetime,
    segment_command_packet,
)
from .context import BackendContext
from .db import Base

__all__ = [
    "ADMIN_PREFIX",
    "CONTENT_TYPE_RESPONSE",
    "CONTENT_TYPE_SCRIPT",
    "DEFAULT_SPI",
    "MAX_SEGMENTS",
    "PROTOCOL",
    "AdminResult",
    "OtaCounter",
    "OtaGateway",
    "OtaGatewayError",
    "PorResult",
    "SmsPacket",
    "aid_uri",
]

log = logging.getLogger("paylab.backend.ota_gateway")

DEFAULT_SPI = Spi(counter=CounterMode.HIGHER, ciphering=True, checksum=Checksum.CC, por=PorRequest.ALWAYS,
                  por_checksum=Checksum.CC, por_ciphered=True)
"""SPI ``16 39``: counter higher, ciphered, CC; PoR always, ciphered, CC (TS 102 225 clause 5.1.1)."""
SMSC = Address("8613800100500")          #: the SMSC address in the ENVELOPE (TS 31.111 7.1.1.2)
OTA_ORIGINATOR = Address("10658", 0x81)  #: TP-OA of the OTA platform's short code [M]
MAX_SEGMENTS = 8  #: SMS per concatenated command packet the gateway sends at most [M]

# GP Amendment B header values, the same as the card side (drivers/se/ota/http_admin.py).
PROTOCOL = "globalplatform-remote-admin/1.0"
CONTENT_TYPE_SCRIPT = "application/vnd.globalplatform.card-content-mgt;version=1.0"
CONTENT_TYPE_RESPONSE = "application/vnd.globalplatform.card-content-mgt-response;version=1.0"
ADMIN_PREFIX = "/ota/admin"


class OtaGatewayError(PaylabError):
    """An OTA script cannot be sent or its answer is unusable (delivery error, bad PoR, protocol)."""


class OtaCounter(Base):
    """The last SCP80 counter the gateway used per (SE, TAR, KID key set)."""

    __tablename__ = "ota_counters"

    se_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tar: Mapped[str] = mapped_column(String(6), primary_key=True)
    key_set: Mapped[int] = mapped_column(Integer, primary_key=True)
    counter: Mapped[int] = mapped_column(BigInteger, default=0)


@dataclass(frozen=True)
class PorResult:
    """A verified PoR: its status (00 OK), counter and the R-APDUs of the packet's script."""

    status: int
    counter: int
    responses: tuple[RApdu, ...]

    @property
    def ok(self) -> bool:
        return self.status == 0


@dataclass(frozen=True)
class SmsPacket:
    """One SCP80 command packet as the handset receives it: its counter and one ENVELOPE per SMS
    (one for a single SMS; the segments of a concatenated SMS in order, the PoR answers the last)."""

    counter: int
    envelopes: tuple[bytes, ...]

    @property
    def concatenated(self) -> bool:
        return len(self.envelopes) > 1


@dataclass(frozen=True)
class _SentPacket:
    envelopes: tuple[bytes, ...]
    tar: bytes
    counter: int
    keys: OtaKeys
    spi: Spi
    apdus: tuple[bytes, ...]


@dataclass
class _AdminJob:
    ticket: int
    agent: str
    target: bytes
    apdus: tuple[bytes, ...]
    served: bool = False
    done: threading.Event = field(default_factory=threading.Event)
    responses: tuple[RApdu, ...] = ()
    status: str | None = None


@dataclass(frozen=True)
class AdminResult:
    """What the agent answered to one queued script: its ``X-Admin-Script-Status`` and R-APDUs."""

    ticket: int
    status: str
    responses: tuple[RApdu, ...]


def aid_uri(aid: bytes) -> str:
    """``//aid/<RID>/<PIX>`` (Amendment B names applications so in headers)."""
    return f"//aid/{aid[:5].hex().upper()}/{aid[5:].hex().upper()}"


@lru_cache(maxsize=64)
def _max_script_bytes(kic: int, kid: int, key_length: int, spi: bytes, segments: int = 1) -> int:
    """The longest secured data whose command packet ``segments`` SMS carry (UDH included)."""
    room = max_concatenated_packet(segments)
    overhead = len(build_command_packet(spi=spi, kic=kic, kid=kid, kic_key=bytes(key_length),
                                        kid_key=bytes(key_length), tar=bytes(3), counter=1, data=b"", udh=False))
    for size in range(room - overhead + 16, 0, -1):  # + a cipher block of padding slack
        packet = build_command_packet(spi=spi, kic=kic, kid=kid, kic_key=bytes(key_length), kid_key=bytes(key_length),
                                      tar=bytes(3), counter=1, data=bytes(size), udh=False)
        if len(packet) <= room:
            return size
    raise OtaGatewayError(f"no script fits {segments} SMS with these keys")


class OtaGateway:
    """The SMSC simulation and the remote administration server (module docstring)."""

    def __init__(self, ctx: BackendContext, *, max_segments: int = MAX_SEGMENTS,
                 admin_master_key: bytes | None = admin_auth.TEST_ADMIN_MASTER_KEY,
                 admin_window_s: float = 900.0) -> None:
        if not 1 <= max_segments <= 0xFF:
            raise ValueError("max_segments must be 1..255")
        self.ctx = ctx
        self.max_segments = max_segments
        self.admin_master_key = admin_master_key
        self.admin_window_s = admin_window_s
        self._agent_psks: dict[str, bytes] = {}
        self._nonces: dict[tuple[str, bytes], float] = {}
        self._lock = threading.Lock()
        self._outstanding: dict[str, deque[_SentPacket]] = {}
        self._jobs: dict[int, _AdminJob] = {}
        self._tickets = itertools.count(1)

    # -- SMS-PP ---------------------------------------------------------------------------------
    @staticmethod
    def max_script_bytes(keys: OtaKeys, spi: Spi = DEFAULT_SPI, *, segments: int = 1) -> int:
        """The longest RAM script (expanded format, with its ``AA`` header) ``segments`` SMS carry
        (default one: the single-SMS size; a route passes ``segments=gateway.max_segments``)."""
        return _max_script_bytes(keys.kic, keys.kid, len(keys.kic_key), spi.encode(), segments)

    def send_ram_script(self, se_id: str, tar: bytes, units: Sequence[bytes | Sequence[bytes]], keys: OtaKeys,
                        spi: Spi = DEFAULT_SPI) -> list[bytes]:
        """:meth:`send_ram_packets` as one flat list of ENVELOPE C-APDUs, in delivery order."""
        return [envelope for packet in self.send_ram_packets(se_id, tar, units, keys, spi)
                for envelope in packet.envelopes]

    def send_ram_packets(self, se_id: str, tar: bytes, units: Sequence[bytes | Sequence[bytes]], keys: OtaKeys,
                         spi: Spi = DEFAULT_SPI) -> list[SmsPacket]:
        """SCP80 packets for ``units`` (each a C-APDU, or a sequence of C-APDUs that must run in one card
        session): units packed greedily into single-SMS packets, a longer unit alone in a concatenated
        one (module docstring). Takes one counter per packet. :class:`OtaGatewayError` if a unit does not
        fit ``max_segments`` SMS (nothing is sent then)."""
        single = self.max_script_bytes(keys, spi)
        limit = self.max_script_bytes(keys, spi, segments=self.max_segments)
        scripts: list[list[bytes]] = []
        current: list[bytes] = []
        for unit in units:
            apdus = [bytes(unit)] if isinstance(unit, bytes | bytearray) else [bytes(a) for a in unit]
            size = len(build_expanded_commands(apdus))
            if size > limit:
                raise OtaGatewayError(
                    f"a unit of {len(apdus)} C-APDU(s), {sum(map(len, apdus))} bytes, does not fit one OTA packet "
                    f"of {self.max_segments} SMS ({limit} bytes of script); the UICC keeps no session across packets")
            if size > single:  # a concatenated packet of its own
                if current:
                    scripts.append(current)
                    current = []
                scripts.append(apdus)
                continue
            if current and len(build_expanded_commands([*current, *apdus])) > single:
                scripts.append(current)
                current = []
            current += apdus
        if current:
            scripts.append(current)
        first = self._take_counters(se_id, tar, key_index(keys.kid), len(scripts))
        scts = scts_from_datetime(datetime.datetime.fromtimestamp(
            self.ctx.clock(), tz=datetime.timezone(datetime.timedelta(hours=8))))
        packets = []
        for offset, apdus in enumerate(scripts):
            counter = first + offset
            packet = build_command_packet(spi=spi, kic=keys.kic, kid=keys.kid, kic_key=keys.kic_key,
                                          kid_key=keys.kid_key, tar=tar, counter=counter,
                                          data=build_expanded_commands(apdus), udh=False)
            envelopes = tuple(build_envelope_command(SmsPpDownload(SmsDeliver(OTA_ORIGINATOR, user_data, scts=scts),
                                                                   SMSC))
                              for user_data in segment_command_packet(packet, counter & 0xFF))
            packets.append(_SentPacket(envelopes, bytes(tar), counter, keys, spi, tuple(apdus)))
        with self._lock:
            self._outstanding.setdefault(se_id, deque()).extend(packets)
        log.info("SMS-PP to %s TAR %s: %d packet(s) in %d SMS, counters %d..%d", se_id, tar.hex().upper(),
                 len(packets), sum(len(p.envelopes) for p in packets), first, first + len(packets) - 1)
        return [SmsPacket(p.counter, p.envelopes) for p in packets]

    def collect_por(self, se_id: str, response: bytes, *, envelope: bytes | None = None) -> PorResult:
        """Verify the UICC's answer to an ENVELOPE (the oldest outstanding packet of ``se_id``, or the
        one ``envelope`` belongs to; older ones are dropped): SW, PoR checksum, deciphering, expanded
        response. For a concatenated packet, ``response`` is the answer to its last segment (the
        others are answered 9000 without data: :meth:`check_segment_answer`)."""
        packet = self._pop(se_id, envelope)
        answer = parse_envelope_response(response)
        if not answer.ok:
            raise OtaGatewayError(f"ENVELOPE to {se_id} answered {answer.sw:04X} (no PoR)")
        if not answer.data:
            raise OtaGatewayError(f"no PoR from {se_id} for counter {packet.counter}")
        try:
            por = parse_response_packet(answer.data, spi=packet.spi, kic=packet.keys.kic, kid=packet.keys.kid,
                                        kic_key=packet.keys.kic_key, kid_key=packet.keys.kid_key)
        except OtaError as exc:
            raise OtaGatewayError(f"PoR from {se_id} does not verify: {exc}") from exc
        if not por.ok:
            return PorResult(por.status, por.counter, ())
        try:
            script = parse_expanded_response(por.data)
        except ProtocolError as exc:
            raise OtaGatewayError(f"PoR from {se_id} holds no expanded response: {exc}") from exc
        if script.bad_format is not None:
            raise OtaGatewayError(f"{se_id} could not parse the script of counter {packet.counter}")
        return PorResult(por.status, por.counter, script.responses)

    @staticmethod
    def check_segment_answer(se_id: str, response: bytes) -> None:
        """The UICC's answer to a non-final segment of a concatenated packet must be 9000 (or 91xx)."""
        answer = parse_envelope_response(response)
        if not answer.ok:
            raise OtaGatewayError(f"ENVELOPE segment to {se_id} answered {answer.sw:04X}")

    def discard(self, se_id: str) -> int:
        """Forget the packets of ``se_id`` that will not be delivered; returns how many."""
        with self._lock:
            dropped = len(self._outstanding.pop(se_id, ()))
        return dropped

    def _pop(self, se_id: str, envelope: bytes | None) -> _SentPacket:
        with self._lock:
            queue = self._outstanding.get(se_id)
            while queue:
                packet = queue.popleft()
                if envelope is None or envelope in packet.envelopes:
                    return packet
        raise OtaGatewayError(f"no outstanding SMS for {se_id}")

    def _take_counters(self, se_id: str, tar: bytes, key_set: int, count: int) -> int:
        with self.ctx.session() as session:
            row = session.get(OtaCounter, (se_id, tar.hex().upper(), key_set))
            if row is None:
                row = OtaCounter(se_id=se_id, tar=tar.hex().upper(), key_set=key_set, counter=0)
                session.add(row)
            first = row.counter + 1
            row.counter += count
        return first

    # -- HTTP remote administration -------------------------------------------------------------
    def queue_script(self, agent: str, apdus: Sequence[bytes], *, target: bytes) -> int:
        """Queue a script for the agent of SE ``agent`` on security domain ``target``; returns its ticket."""
        with self._lock:
            ticket = next(self._tickets)
            self._jobs[ticket] = _AdminJob(ticket, agent, bytes(target), tuple(bytes(a) for a in apdus))
        return ticket

    def pending(self, agent: str) -> int:
        """Scripts queued for ``agent`` and not yet served."""
        with self._lock:
            return sum(1 for job in self._jobs.values() if job.agent == agent and not job.served)

    def admin_result(self, ticket: int) -> AdminResult:
        """The answer to a served script (:class:`OtaGatewayError` while there is none); forgets it."""
        with self._lock:
            job = self._jobs.get(ticket)
            if job is None or not job.done.is_set():
                raise OtaGatewayError(f"script {ticket} was not answered")
            del self._jobs[ticket]
        return AdminResult(ticket, job.status or "ok", job.responses)

    def cancel(self, ticket: int) -> None:
        """Drop a queued script (served or not)."""
        with self._lock:
            self._jobs.pop(ticket, None)

    def register_agent(self, agent: str, psk: bytes) -> None:
        """Set the PSK of the admin agent of SE ``agent`` (overrides the diversified one)."""
        if len(psk) < 16:
            raise ValueError("an admin PSK is at least 16 bytes")
        with self._lock:
            self._agent_psks[agent] = bytes(psk)

    def agent_psk(self, agent: str) -> bytes | None:
        """The PSK the gateway expects from SE ``agent``'s admin agent, or None (unknown agent)."""
        with self._lock:
            psk = self._agent_psks.get(agent)
        if psk is None and self.admin_master_key is not None:
            psk = admin_auth.derive_psk(self.admin_master_key, agent)
        return psk

    def _authenticate(self, agent: str, request: Request, body: bytes) -> str | None:
        """None when the request is the agent's (module docstring), else why not."""
        agent_id = request.headers.get("X-Admin-From", "")
        try:
            if admin_auth.se_id_of(agent_id) != agent:
                return f"X-Admin-From {agent_id!r} is not the agent of {agent}"
        except admin_auth.AdminAuthError:
            return f"X-Admin-From {agent_id[:80]!r} is not an agent id (//se-id/<SE id>)"
        psk = self.agent_psk(agent)
        if psk is None:
            return f"unknown agent {agent}"
        value = request.headers.get(admin_auth.HEADER)
        if value is None:
            return f"missing {admin_auth.HEADER}"
        try:
            auth = admin_auth.AdminAuth.decode(value)
        except admin_auth.AdminAuthError as exc:
            return f"{exc.message}; expected {exc.expected}"
        if not admin_auth.verify(psk, auth, path=request.url.path, agent_id=agent_id,
                                 script_status=request.headers.get("X-Admin-Script-Status", ""), body=body):
            return "the request MAC does not verify"
        now = self.ctx.clock()
        if abs(now - auth.timestamp) > self.admin_window_s:
            return f"timestamp {auth.timestamp} is more than {self.admin_window_s:g} s from the server's time"
        with self._lock:
            for key, seen in list(self._nonces.items()):
                if now - seen > 2 * self.admin_window_s:
                    del self._nonces[key]
            if (agent, auth.nonce) in self._nonces:
                return "replayed nonce"
            self._nonces[(agent, auth.nonce)] = now
        return None

    def admin_router(self) -> APIRouter:
        """``POST /ota/admin/{agent}`` (session start) and ``POST /ota/admin/{agent}/{ticket}`` (R-APDUs)."""
        router = APIRouter(tags=["ota"])

        @router.post(ADMIN_PREFIX + "/{agent}")
        async def start(agent: str, request: Request) -> Response:
            return await self._serve(agent, None, request)

        @router.post(ADMIN_PREFIX + "/{agent}/{ticket}")
        async def answer(agent: str, ticket: int, request: Request) -> Response:
            return await self._serve(agent, ticket, request)

        return router

    async def _serve(self, agent: str, ticket: int | None, request: Request) -> Response:
        if request.headers.get("X-Admin-Protocol") != PROTOCOL:
            return JSONResponse({"error": "not a remote administration request",
                                 "expected": f"X-Admin-Protocol: {PROTOCOL}"}, status_code=400)
        body = await request.body()
        refused = self._authenticate(agent, request, body)
        if refused is not None:
            log.warning("admin request for %s refused: %s", agent, refused)
            return JSONResponse({"error": f"agent authentication failed: {refused}", "field": admin_auth.HEADER},
                                status_code=401, headers={"WWW-Authenticate": admin_auth.SCHEME})
        if ticket is not None:
            problem = self._record_answer(agent, ticket, body, request.headers.get("X-Admin-Script-Status", "ok"))
            if problem:
                return JSONResponse({"error": problem}, status_code=409)
        with self._lock:
            job = next((j for j in self._jobs.values() if j.agent == agent and not j.served), None)
            if job is not None:
                job.served = True
        if job is None:
            return Response(status_code=204)
        return Response(build_expanded_commands(list(job.apdus)), media_type=CONTENT_TYPE_SCRIPT,
                        headers={"X-Admin-Next-URI": f"{ADMIN_PREFIX}/{agent}/{job.ticket}",
                                 "X-Admin-Targeted-Application": aid_uri(job.target)})

    def _record_answer(self, agent: str, ticket: int, body: bytes, status: str) -> str | None:
        with self._lock:
            job = self._jobs.get(ticket)
            if job is None or job.agent != agent or not job.served or job.done.is_set():
                return f"no script {ticket} awaiting an answer from {agent}"
        try:
            responses = parse_expanded_response(body).responses if body else ()
        except ProtocolError as exc:
            responses, status = (), f"unreadable response: {exc}"
        job.responses, job.status = responses, status
        job.done.set()
        return None
