"""How a TSM reaches a secure element: OTA routes, and the handset stand-in at the far end.

A :class:`CardRoute` runs C-APDUs on one security domain of one SE and returns the R-APDUs,
stopping at the first error status word as RAM does (ETSI TS 102 226 clause 5.1.2). Commands come
in *units*: C-APDUs that need one card session (INSTALL [for personalization] and its STORE DATA,
INSTALL [for load] and its LOAD blocks, a secure channel and what it protects).

* :class:`SmsPpRoute` (SIM, the SEI-TSM's route): SCP80 packets through the :class:`OtaGateway`
  SMSC (a long unit as a concatenated SMS, one ENVELOPE per segment), delivered by the handset in
  ENVELOPEs; the commands run on the SD under the packet's SCP80
  security (``scp80`` is True: no GP secure channel, DEK-encrypted data under the SD's static DEK).
* :class:`RelayRoute` (SIM, an SP-TSM's route): the same, relayed through the SEI-TSM's signed API,
  since only the operator's OTA platform holds the SIM's SCP80 keys.
* :class:`HttpAdminRoute` (microSD, eSE): the gateway queues a script, the handset's GP Amendment B
  agent fetches it over HTTP and posts the R-APDUs back; the TSM protects the script end to end
  (SCP03, see :mod:`.gp_session`).

:class:`HandsetSim` is the phone around the card until the handset simulation exists: it passes
ENVELOPEs to the UICC (with T=0 GET RESPONSE), runs the admin agent's HTTP session when pushed,
and plays the UICC OS's part in binding a TAR to a new SSD (see :meth:`HandsetSim.card_os_bind_tar`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import httpx

from ...protocol.apdu import CommandApdu, transmit_with_chaining
from ...protocol.errors import PaylabError
from ...protocol.gp.session import is_error_sw
from ...protocol.ota import OtaKeys, RApdu, key_index
from ..ota_gateway import ADMIN_PREFIX, OtaGateway

__all__ = ["CardRoute", "CardRouteError", "HandsetSim", "HttpAdminRoute", "RelayRoute", "SmsPpRoute", "Unit",
           "flatten"]

Unit = Sequence[bytes]


class CardRouteError(PaylabError):
    """The route could not carry the commands (delivery, PoR status, admin session)."""


class CardRoute(Protocol):
    """Runs command units on a security domain of one SE (module docstring)."""

    kind: str                      # "sms-pp" | "http-admin"
    scp80: bool                    # commands run under SCP80 security (no GP secure channel)
    max_script_bytes: int | None   # the largest unit (expanded script bytes), None: no limit

    def execute(self, target: bytes, units: Sequence[Unit]) -> list[RApdu]: ...


def flatten(units: Sequence[Unit]) -> list[bytes]:
    return [bytes(apdu) for unit in units for apdu in unit]


class HandsetSim:
    """A phone holding one SE (a :class:`~paylab.drivers.se.runtime.SecureElement`): the modem and
    the OS services OTA needs, nothing else. ``agent`` is the SE's admin agent
    (:class:`~paylab.drivers.se.ota.AdminAgent`), ``http`` the client it posts with."""

    def __init__(self, se_id: str, se: Any, *, msisdn: str | None = None, agent: Any = None,
                 http: httpx.Client | None = None, admin_psk: bytes | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.se_id = se_id
        self.admin_psk = admin_psk  # None: the PSK diversified from the TEST master key
        self.clock = clock
        self.se = se
        self.msisdn = msisdn
        self.agent = agent
        self.http = http
        self.sms_delivered = 0
        self.admin_sessions = 0

    def _power(self) -> None:
        if not self.se.powered or self.se.interface != "contact":
            self.se.power_on("contact")

    def deliver_sms(self, envelope: bytes) -> bytes:
        """Pass an SMS-PP download ENVELOPE to the UICC (TS 31.111 7.1.1); the R-APDU holds the PoR."""
        self._power()
        self.sms_delivered += 1
        return transmit_with_chaining(lambda c: self.se.transmit(c, interface="contact"),
                                      CommandApdu.decode(envelope)).encode()

    def admin_session(self) -> list[str]:
        """A push woke the agent: run one Amendment B session against the gateway until it answers 204;
        returns the script statuses the agent reported."""
        from paylab.drivers.handset.admin_agent import authenticated_headers
        from paylab.drivers.se.ota import AdminTrigger, HttpResponse

        if self.agent is None or self.http is None:
            raise CardRouteError(f"{self.se_id} has no remote administration agent or no network")
        self._power()
        self.admin_sessions += 1
        request = self.agent.start(AdminTrigger(f"{ADMIN_PREFIX}/{self.se_id}", agent_id=f"//se-id/{self.se_id}"))
        while request is not None:
            headers = authenticated_headers(request, self.admin_psk, clock=self.clock)
            answer = self.http.request(request.method, request.uri, headers=headers, content=request.body)
            request = self.agent.handle_response(HttpResponse(answer.status_code, dict(answer.headers),
                                                              answer.content))
        return [str(status) for status in self.agent.statuses]

    def card_os_bind_tar(self, tar: bytes, sd_aid: bytes, keys: OtaKeys) -> None:
        """What the UICC OS does when the ISD installs an SSD with a TAR (ETSI TS 102 226 lets the
        INSTALL parameters carry the SD's TAR, and the SD's key sets double as its SCP80 keys [M]):
        bind ``tar`` to ``sd_aid`` with the SCP80 key set ``keys``. The emulated UICC keeps its TAR
        table and OTA keys outside any APDU (``drivers/se/ota/sms_pp.py``), so this stand-in writes
        them, on the SEI-TSM's order, right after the SSD is created."""
        from paylab.drivers.se.ota import provision_key_set, provision_tar

        provision_tar(self.se, tar, sd_aid)
        provision_key_set(self.se, sd_aid, key_index(keys.kic), kic_key=keys.kic_key)
        provision_key_set(self.se, sd_aid, key_index(keys.kid), kid_key=keys.kid_key)


class SmsPpRoute:
    """SIM over SMS-PP: the OTA platform's SCP80 keys per target SD (``bindings``: AID -> (TAR, keys))."""

    kind = "sms-pp"
    scp80 = True

    def __init__(self, gateway: OtaGateway, handset: HandsetSim,
                 bindings: Callable[[bytes], tuple[bytes, OtaKeys]], *, max_script_bytes: int) -> None:
        self.gateway = gateway
        self.handset = handset
        self.bindings = bindings
        self.max_script_bytes = max_script_bytes

    def execute(self, target: bytes, units: Sequence[Unit]) -> list[RApdu]:
        tar, keys = self.bindings(target)
        se_id = self.handset.se_id
        packets = self.gateway.send_ram_packets(se_id, tar, units, keys)
        responses: list[RApdu] = []
        try:
            for packet in packets:
                for segment in packet.envelopes[:-1]:  # concatenated SMS: the PoR answers the last segment
                    self.gateway.check_segment_answer(se_id, self.handset.deliver_sms(segment))
                last = packet.envelopes[-1]
                por = self.gateway.collect_por(se_id, self.handset.deliver_sms(last), envelope=last)
                if not por.ok:
                    raise CardRouteError(f"{se_id} TAR {tar.hex().upper()}: PoR status {por.status:02X}")
                responses += por.responses
                if responses and is_error_sw(responses[-1].sw):
                    break
        finally:
            self.gateway.discard(se_id)
        return responses


class RelayRoute:
    """SIM through the operator: ``relay(target AID, units) -> R-APDUs`` is a signed call to the SEI-TSM."""

    kind = "sms-pp"
    scp80 = True

    def __init__(self, relay: Callable[[bytes, Sequence[Unit]], list[RApdu]], max_script_bytes: int) -> None:
        self.relay = relay
        self.max_script_bytes = max_script_bytes

    def execute(self, target: bytes, units: Sequence[Unit]) -> list[RApdu]:
        return self.relay(target, units)


class HttpAdminRoute:
    """microSD / eSE over GP Amendment B: one admin session per call, the whole script in it."""

    kind = "http-admin"
    scp80 = False
    max_script_bytes = None

    def __init__(self, gateway: OtaGateway, handset: HandsetSim) -> None:
        self.gateway = gateway
        self.handset = handset

    def execute(self, target: bytes, units: Sequence[Unit]) -> list[RApdu]:
        ticket = self.gateway.queue_script(self.handset.se_id, flatten(units), target=target)
        try:
            statuses = self.handset.admin_session()
            result = self.gateway.admin_result(ticket)
        finally:
            self.gateway.cancel(ticket)
        if result.status not in ("ok", "security-error"):
            raise CardRouteError(f"{self.handset.se_id}: admin script status {result.status} "
                                 f"(agent reported {statuses})")
        return list(result.responses)
