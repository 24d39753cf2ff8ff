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
* **No concatenation**: a long script would travel as a concatenated SMS, but the emulated UICC
  refuses concatenated SMS (``drivers/se/ota/sms_pp.py``) and, like RAM, runs each packet on a fresh
  card session. So scripts are split into several single-SMS packets, each with its own counter,
  and the caller groups commands in *units* that must share a card session (e.g. INSTALL [for
  personalization] with its STORE DATA, INSTALL [for load] with its LOAD blocks): a unit is never
  split across packets, and one that does not fit one SMS is refused (:class:`OtaGatewayError`).
  The largest script one SMS carries is :meth:`OtaGateway.max_script_bytes` (98 bytes with AES keys).

**HTTP remote administration** (GP Amendment B, the server side of
``drivers/se/ota/http_admin.py``): TSMs queue scripts per agent (:meth:`OtaGateway.queue_script`,
``agent`` being the SE id), the handset's admin agent opens a session with ``POST /ota/admin/{agent}``
(``X-Admin-Protocol: globalplatform-remote-admin/1.0``, empty body) and gets the next queued script
(``200``, ``Content-Type: application/vnd.globalplatform.card-content-mgt;version=1.0``, body an
expanded ``AA`` script, ``X-Admin-Targeted-Application: //aid/<RID>/<PIX>``, ``X-Admin-Next-URI:
/ota/admin/{agent}/{ticket}``); it posts the R-APDUs (``AB``) to the next URI with
``X-Admin-Script-Status`` and gets the next script, or ``204`` when the queue is empty. Results are
kept per ticket (:meth:`OtaGateway.admin_result`). The scripts are protected end to end by the TSM
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
    build_command_packet,
    build_expanded_commands,
    key_index,
    parse_expanded_response,
    parse_response_packet,
)
from ..protocol.ota.sms import (
    MAX_USER_DATA,
    Address,
    SmsDeliver,
    SmsPpDownload,
    build_envelope_command,
    parse_envelope_response,
    scts_from_datetime,
)
from .context import BackendContext
from .db import Base

__all__ = [
    "ADMIN_PREFIX",
    "CONTENT_TYPE_RESPONSE",
    "CONTENT_TYPE_SCRIPT",
    "DEFAULT_SPI",
    "PROTOCOL",
    "AdminResult",
    "OtaCounter",
    "OtaGateway",
    "OtaGatewayError",
    "PorResult",
    "aid_uri",
]

log = logging.getLogger("paylab.backend.ota_gateway")

DEFAULT_SPI = Spi(counter=CounterMode.HIGHER, ciphering=True, checksum=Checksum.CC, por=PorRequest.ALWAYS,
                  por_checksum=Checksum.CC, por_ciphered=True)
"""SPI ``16 39``: counter higher, ciphered, CC; PoR always, ciphered, CC (TS 102 225 clause 5.1.1)."""
SMSC = Address("8613800100500")          #: the SMSC address in the ENVELOPE (TS 31.111 7.1.1.2)
OTA_ORIGINATOR = Address("10658", 0x81)  #: TP-OA of the OTA platform's short code [M]

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
class _SentPacket:
    envelope: bytes
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


@lru_cache(maxsize=32)
def _max_script_bytes(kic: int, kid: int, key_length: int, spi: bytes) -> int:
    """The longest secured data that keeps the SMS user data (UDH + packet) within 140 octets."""
    for size in range(MAX_USER_DATA, 0, -1):
        packet = build_command_packet(spi=spi, kic=kic, kid=kid, kic_key=bytes(key_length), kid_key=bytes(key_length),
                                      tar=bytes(3), counter=1, data=bytes(size))
        if len(packet) <= MAX_USER_DATA:
            return size
    raise OtaGatewayError("no script fits one SMS with these keys")


class OtaGateway:
    """The SMSC simulation and the remote administration server (module docstring)."""

    def __init__(self, ctx: BackendContext) -> None:
        self.ctx = ctx
        self._lock = threading.Lock()
        self._outstanding: dict[str, deque[_SentPacket]] = {}
        self._jobs: dict[int, _AdminJob] = {}
        self._tickets = itertools.count(1)

    # -- SMS-PP ---------------------------------------------------------------------------------
    @staticmethod
    def max_script_bytes(keys: OtaKeys, spi: Spi = DEFAULT_SPI) -> int:
        """The longest RAM script (expanded format, with its ``AA`` header) one SMS carries."""
        return _max_script_bytes(keys.kic, keys.kid, len(keys.kic_key), spi.encode())

    def send_ram_script(self, se_id: str, tar: bytes, units: Sequence[bytes | Sequence[bytes]], keys: OtaKeys,
                        spi: Spi = DEFAULT_SPI) -> list[bytes]:
        """SCP80 packets for ``units`` (each a C-APDU, or a sequence of C-APDUs that must run in one card
        session), packed greedily into single-SMS packets, as ENVELOPE C-APDUs for the handset.
        Takes one counter per packet. :class:`OtaGatewayError` if a unit does not fit one SMS."""
        limit = self.max_script_bytes(keys, spi)
        scripts: list[list[bytes]] = []
        current: list[bytes] = []
        for unit in units:
            apdus = [bytes(unit)] if isinstance(unit, bytes | bytearray) else [bytes(a) for a in unit]
            if len(build_expanded_commands(apdus)) > limit:
                raise OtaGatewayError(
                    f"a unit of {len(apdus)} C-APDU(s), {sum(map(len, apdus))} bytes, does not fit one SMS "
                    f"({limit} bytes of script); the UICC keeps no session across packets")
            if current and len(build_expanded_commands([*current, *apdus])) > limit:
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
                                          data=build_expanded_commands(apdus))
            envelope = build_envelope_command(SmsPpDownload(SmsDeliver(OTA_ORIGINATOR, packet, scts=scts), SMSC))
            packets.append(_SentPacket(envelope, bytes(tar), counter, keys, spi, tuple(apdus)))
        with self._lock:
            self._outstanding.setdefault(se_id, deque()).extend(packets)
        log.info("SMS-PP to %s TAR %s: %d packet(s), counters %d..%d", se_id, tar.hex().upper(), len(packets),
                 first, first + len(packets) - 1)
        return [p.envelope for p in packets]

    def collect_por(self, se_id: str, response: bytes, *, envelope: bytes | None = None) -> PorResult:
        """Verify the UICC's answer to an ENVELOPE (the oldest outstanding one of ``se_id``, or
        ``envelope``; older ones are dropped): SW, PoR checksum, deciphering, expanded response."""
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
                if envelope is None or packet.envelope == envelope:
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
