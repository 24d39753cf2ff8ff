"""OTA administration of the emulated cards: SMS-PP (ENVELOPE → SCP80 → RAM → PoR) on a UICC and
GP Amendment B HTTP remote administration (SCP03 end to end) on a microSD/eSE.

Cards come from the real factory and security domain (GP TEST KEYS); the OTA key sets below are
made-up lab keys, never real card keys.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest

from paylab.drivers.se.catalog_default import default_catalog
from paylab.drivers.se.errors import PowerLost
from paylab.drivers.se.factory import PPSE_AID, fabricate
from paylab.drivers.se.form_factor import ESE, MICROSD, SIM, FormFactor
from paylab.drivers.se.gp.content import OS_SD_LOAD_FILE_AID, OS_SD_MODULE_AID
from paylab.drivers.se.image import CardImage, dumps
from paylab.drivers.se.ota import (
    AdminAgent,
    AdminSessionError,
    AdminTrigger,
    HttpRequest,
    HttpResponse,
    RetryPolicy,
    ScriptStatus,
    attach_sms_pp,
    ota_config,
    provision_key_set,
    provision_tar,
)
from paylab.drivers.se.ota.http_admin import CONTENT_TYPE_RESPONSE, CONTENT_TYPE_SCRIPT, PROTOCOL, aid_uri
from paylab.drivers.se.runtime import SecureElement
from paylab.lab.protocol import tlv
from paylab.lab.protocol.apdu import CommandApdu, ResponseApdu, transmit_with_chaining
from paylab.lab.protocol.gp import Scp03Session, StaticKeys
from paylab.lab.protocol.gp import commands as gp
from paylab.lab.protocol.ota import (
    Checksum,
    CounterMode,
    OtaKeys,
    PorRequest,
    PorStatus,
    RApdu,
    ResponsePacket,
    Spi,
    build_command_packet,
    build_compact_commands,
    build_expanded_commands,
    parse_expanded_response,
    parse_response_packet,
)
from paylab.lab.protocol.ota.sms import (
    Address,
    SmsDeliver,
    SmsPpDownload,
    build_envelope_command,
    parse_envelope_response,
    segment_command_packet,
)

h = bytes.fromhex
TAR_ISD = h("000000")
TAR_UNKNOWN = h("B00010")
KEYS_3DES = OtaKeys(kic_key=h("11111111111111112222222222222222"), kid_key=h("33333333333333334444444444444444"),
                    kic=0x15, kid=0x15)  # key set 1, 3DES 2-key CBC
KEYS_AES = OtaKeys(kic_key=h("000102030405060708090A0B0C0D0E0F"), kid_key=h("F0E0D0C0B0A090807060504030201000"),
                   kic=0x22, kid=0x22)  # key set 2, AES-CBC / CMAC
SPI_FULL = Spi(counter=CounterMode.HIGHER, ciphering=True, checksum=Checksum.CC, por=PorRequest.ALWAYS,
               por_checksum=Checksum.CC, por_ciphered=True)
ISD_KEYS = StaticKeys.gp_default_test_keys()
SSD_AID = h("A0000005591010FFFF")

GET_STATUS_ISD = gp.GetStatusCommand(0x80).command(le=None).encode()
GET_CPLC = h("80CA9F7F00")
INSTALL_SSD = gp.InstallForInstall(OS_SD_LOAD_FILE_AID, OS_SD_MODULE_AID, SSD_AID, b"\x80\x00\x00",
                                   b"\xc9\x00").command(le=None).encode()
DELETE_UNKNOWN = gp.DeleteCommand(h("A0000009999999")).command(le=None).encode()


def card(form_factor: FormFactor, path=None) -> SecureElement:
    image = CardImage(path, durable=False)
    fabricate(image, form_factor)
    se = SecureElement(image, form_factor, default_catalog(), seed=3)
    se.power_on()
    return se


def transmit(se: SecureElement, capdu: bytes) -> ResponseApdu:
    """A reader driver's view: T=0 response recovery (61xx -> GET RESPONSE)."""
    return transmit_with_chaining(se.transmit, CommandApdu.decode(capdu))


# --- SMS-PP -----------------------------------------------------------------------------------------


def uicc(path=None) -> SecureElement:
    """A SIM with TAR 000000 -> ISD, key set 1 (3DES) and key set 2 (AES)."""
    se = card(SIM, path)
    attach_sms_pp(se, {TAR_ISD: KEYS_3DES})
    isd = se.registry.isd().aid
    provision_key_set(se, isd, 2, kic_key=KEYS_AES.kic_key, kid_key=KEYS_AES.kid_key)
    return se


def envelope(keys: OtaKeys, script: bytes, counter: int, *, tar: bytes = TAR_ISD, spi: Spi = SPI_FULL,
             kid_key: bytes | None = None) -> bytes:
    """What the OTA server and the handset produce: secured packet → SMS-DELIVER → ENVELOPE."""
    packet = build_command_packet(spi=spi, kic=keys.kic, kid=keys.kid, kic_key=keys.kic_key,
                                  kid_key=kid_key or keys.kid_key, tar=tar, counter=counter, data=script)
    deliver = SmsDeliver(Address("12345", 0x81), packet)
    return build_envelope_command(SmsPpDownload(deliver, Address("8613800100500")))


def download(se: SecureElement, capdu: bytes) -> bytes:
    response = parse_envelope_response(transmit(se, capdu).encode())
    assert response.sw == 0x9000, f"ENVELOPE answered {response.sw:04X}"
    return response.data


def por(se: SecureElement, capdu: bytes, keys: OtaKeys, spi: Spi = SPI_FULL) -> ResponsePacket:
    return parse_response_packet(download(se, capdu), spi=spi, kic=keys.kic, kid=keys.kid,
                                 kic_key=keys.kic_key, kid_key=keys.kid_key)


@pytest.mark.parametrize("keys", [KEYS_3DES, KEYS_AES], ids=["3des", "aes"])
def test_compact_ram_script_runs_on_the_isd_and_answers_a_secured_por(keys):
    se = uicc()
    reply = por(se, envelope(keys, build_compact_commands([GET_STATUS_ISD, GET_CPLC]), 1), keys)
    assert reply.ok
    assert reply.secured
    assert reply.tar == TAR_ISD
    assert reply.counter == 1
    compact = reply.compact()
    assert (compact.executed, compact.sw) == (2, 0x9000)
    assert compact.data == tlv.tlv(0x9F7F, se.card_state()["cplc"])
    assert se.faults == []


def test_expanded_script_installs_a_security_domain_and_commits_it_with_the_counter(tmp_path):
    path = tmp_path / "uicc.json"
    se = uicc(path)
    script = build_expanded_commands([GET_STATUS_ISD, INSTALL_SSD, gp.GetStatusCommand(0x40).command().encode()])
    reply = por(se, envelope(KEYS_AES, script, 7), KEYS_AES)
    assert reply.ok
    result = parse_expanded_response(reply.data)
    assert result.number_of_commands == 3
    assert [r.sw for r in result.responses] == [0x9000, 0x9000, 0x9000]
    assert SSD_AID in result.responses[2].data
    # the ENVELOPE's single commit holds the new SD and the counter: a new runtime over the file sees both
    fresh = SecureElement(CardImage(path, durable=False), SIM, default_catalog())
    fresh.power_on()
    assert fresh.registry.get(SSD_AID) is not None
    isd = fresh.registry.isd().aid.hex().upper()
    assert ota_config(fresh)["counters"] == {f"{isd}/2": 7}


def test_replayed_packet_answers_por_02_and_executes_nothing():
    se = uicc()
    capdu = envelope(KEYS_3DES, build_compact_commands([INSTALL_SSD]), 5)
    assert por(se, capdu, KEYS_3DES).ok
    se.registry.remove(SSD_AID)  # so that a replay that ran would show
    se.image.commit()
    before, commits = dumps(se.image.state), se.image.commits
    replay = por(se, capdu, KEYS_3DES)
    assert replay.status == PorStatus.COUNTER_LOW
    assert not replay.secured
    assert replay.data == b""
    assert dumps(se.image.state) == before
    assert se.image.commits == commits
    # a lower counter is refused too; a higher one is accepted
    assert por(se, envelope(KEYS_3DES, build_compact_commands([GET_CPLC]), 4), KEYS_3DES).status == 0x02
    assert por(se, envelope(KEYS_3DES, build_compact_commands([GET_CPLC]), 6), KEYS_3DES).ok


def test_wrong_kid_key_answers_por_01_and_changes_nothing():
    se = uicc()
    before = dumps(se.image.state)
    reply = por(se, envelope(KEYS_3DES, build_compact_commands([INSTALL_SSD]), 1, kid_key=bytes(16)), KEYS_3DES)
    assert reply.status == PorStatus.RC_CC_DS_FAILED
    assert dumps(se.image.state) == before
    # the counter was not consumed: the genuine packet with the same counter still runs
    assert por(se, envelope(KEYS_3DES, build_compact_commands([GET_CPLC]), 1), KEYS_3DES).ok


def test_unknown_tar_answers_por_09():
    se = uicc()
    reply = por(se, envelope(KEYS_3DES, build_compact_commands([GET_CPLC]), 1, tar=TAR_UNKNOWN), KEYS_3DES)
    assert (reply.status, reply.tar) == (PorStatus.TAR_UNKNOWN, TAR_UNKNOWN)


def test_ram_stops_at_the_first_error_but_keeps_earlier_commands_and_the_counter():
    se = uicc()
    script = build_compact_commands([INSTALL_SSD, DELETE_UNKNOWN, GET_CPLC])
    compact = por(se, envelope(KEYS_AES, script, 3), KEYS_AES).compact()
    assert (compact.executed, compact.sw, compact.data) == (2, 0x6A88, b"")
    assert se.registry.get(SSD_AID) is not None  # RAM has no rollback of earlier commands
    isd = se.registry.isd().aid.hex().upper()
    assert ota_config(se)["counters"][f"{isd}/2"] == 3


def test_minimum_security_level_and_por_policy():
    se = uicc()
    provision_tar(se, TAR_ISD, se.registry.isd().aid, msl=0x16)  # counter higher + ciphering + CC
    plain = Spi(counter=CounterMode.HIGHER, checksum=Checksum.CC)
    assert por(se, envelope(KEYS_3DES, GET_CPLC, 1, spi=plain), KEYS_3DES, plain).status == 0x0A
    assert por(se, envelope(KEYS_3DES, GET_CPLC, 1), KEYS_3DES).ok
    quiet = Spi(counter=CounterMode.HIGHER, ciphering=True, checksum=Checksum.CC, por=PorRequest.NONE)
    assert download(se, envelope(KEYS_3DES, GET_CPLC, 2, spi=quiet)) == b""
    on_error = Spi(counter=CounterMode.HIGHER, ciphering=True, checksum=Checksum.CC, por=PorRequest.ON_ERROR)
    assert download(se, envelope(KEYS_3DES, GET_CPLC, 3, spi=on_error)) == b""
    assert por(se, envelope(KEYS_3DES, GET_CPLC, 3, spi=on_error), KEYS_3DES, on_error).status == 0x02


def test_malformed_envelopes_are_refused_without_a_por():
    se = uicc()
    assert transmit(se, h("80C2000003D10100")).sw == 0x6A80
    assert transmit(se, h("80C2010000")).sw == 0x6A86
    not_download = SmsPpDownload(SmsDeliver(Address("1"), h("027000") + bytes(30), pid=0x00))
    assert transmit(se, build_envelope_command(not_download)).sw == 0x6A80


def concatenated(keys: OtaKeys, script: bytes, counter: int, reference: int = 1) -> list[bytes]:
    """The OTA server's long packet as a concatenated SMS: one ENVELOPE per segment."""
    packet = build_command_packet(spi=SPI_FULL, kic=keys.kic, kid=keys.kid, kic_key=keys.kic_key,
                                  kid_key=keys.kid_key, tar=TAR_ISD, counter=counter, data=script, udh=False)
    return [build_envelope_command(SmsPpDownload(SmsDeliver(Address("12345", 0x81), ud), Address("8613800100500")))
            for ud in segment_command_packet(packet, reference)]


def test_concatenated_packet_runs_once_after_its_last_segment_in_any_order():
    se = uicc()
    script = build_expanded_commands([INSTALL_SSD, *[GET_CPLC] * 30])
    first, second, third = concatenated(KEYS_AES, script, 1)
    assert download(se, third) == b""  # stored: 9000 without a PoR
    assert download(se, first) == b""
    assert download(se, first) == b""  # duplicate
    assert SSD_AID not in {e.aid for e in se.registry}
    reply = por(se, second, KEYS_AES)
    responses = parse_expanded_response(reply.data).responses
    assert (reply.status, len(responses), reply.counter) == (PorStatus.OK, 31, 1)
    assert all(r.sw == 0x9000 for r in responses)
    assert SSD_AID in {e.aid for e in se.registry}
    # a packet missing a segment never runs; once it has timed out a late segment cannot complete it
    handler = se.system_commands[0xC2]
    now = [0.0]
    handler.clock = lambda: now[0]
    lost = concatenated(KEYS_AES, build_expanded_commands([DELETE_UNKNOWN, *[GET_CPLC] * 40]), 2, reference=2)
    assert len(lost) == 3
    assert download(se, lost[0]) == b""
    assert download(se, lost[1]) == b""
    now[0] = 1000.0
    assert download(se, lost[2]) == b""
    assert handler.segments.pending == 1
    assert handler.segments.dropped == 1
    # the counter was never consumed: packet 2 still runs
    assert por(se, envelope(KEYS_AES, build_expanded_commands([GET_CPLC]), 2), KEYS_AES).counter == 2
    # a first segment without the command packet identifier is the handset's fault: 6A80
    bad = SmsDeliver(Address("1"), h("05 0003090201") + bytes(20))
    assert transmit(se, build_envelope_command(SmsPpDownload(bad))).sw == 0x6A80


def test_a_torn_envelope_leaves_counter_and_content_as_before(tmp_path):
    path = tmp_path / "uicc.json"
    se = uicc(path)
    capdu = envelope(KEYS_AES, build_compact_commands([INSTALL_SSD]), 9)
    se.set_tear_hook(lambda point, size: 10 if point == "commit.journal" else None)
    with pytest.raises(PowerLost):
        se.transmit(capdu)
    se = SecureElement(CardImage(path, durable=False), SIM, default_catalog())
    se.power_on()
    attach_sms_pp(se)  # keys and TARs come from the card image
    assert se.registry.get(SSD_AID) is None
    assert ota_config(se)["counters"] == {}
    assert por(se, capdu, KEYS_AES).ok  # the same packet runs: its counter was never consumed
    assert se.registry.get(SSD_AID) is not None


# --- HTTP remote administration -----------------------------------------------------------------------


class ScriptedServer:
    """An admin server as a function of the request: INITIALIZE UPDATE, then EXTERNAL AUTHENTICATE and
    SCP03-wrapped commands (``commands``), then 204. It checks every R-MAC with the host session."""

    def __init__(self, aid: bytes, commands: list[bytes], *, level: int = 0x33) -> None:
        self.aid, self.commands, self.level = aid, commands, level
        self.challenge = bytes(range(8, 16))
        self.session: Scp03Session | None = None
        self.verifiers: list[Scp03Session] = []
        self.results: list[ResponseApdu] = []
        self.requests: list[HttpRequest] = []

    @staticmethod
    def script(apdus: list[bytes], uri: str, **headers: str) -> HttpResponse:
        return HttpResponse(200, {"Content-Type": CONTENT_TYPE_SCRIPT, "X-Admin-Next-URI": uri, **headers},
                            build_expanded_commands(apdus))

    def __call__(self, request: HttpRequest) -> HttpResponse:
        self.requests.append(request)
        step = len(self.requests)
        if step == 1:
            assert request.body == b""
            return self.script([Scp03Session.host_initialize_update(ISD_KEYS, self.challenge)], "/admin/2")
        responses = parse_expanded_response(request.body).responses
        if step == 2:
            (init,) = responses
            assert init.sw == 0x9000
            self.session = Scp03Session.host_from_init_update_response(ISD_KEYS, self.challenge, init.data,
                                                                       self.level, aid=self.aid)
            wrapped = [self.session.external_authenticate()]
            for command in self.commands:
                wrapped.append(self.session.wrap(command))
                # the R-MAC of each response chains on its own command's C-MAC: keep the host state per command
                self.verifiers.append(copy.deepcopy(self.session))
            return self.script(wrapped, "/admin/3")
        self.results = [ResponseApdu.decode(verifier.unwrap_response(r.encode()))
                        for verifier, r in zip(self.verifiers, responses[1:], strict=False)]
        assert responses[0].sw == 0x9000
        return HttpResponse(204)


def run_session(agent: AdminAgent, server: Callable[[HttpRequest], HttpResponse],
                trigger: AdminTrigger) -> list[HttpRequest]:
    request: HttpRequest | None = agent.start(trigger)
    sent = []
    while request is not None:
        sent.append(request)
        request = agent.handle_response(server(request))
    return sent


TRIGGER = AdminTrigger("https://tsm.paylab.test/admin", agent_id="//se-id/eid/0001;//aa-id/aid/A000000151/000000",
                       host="tsm.paylab.test", retry=RetryPolicy(3, h("0000000030")))


@pytest.mark.parametrize("form_factor", [MICROSD, ESE])
def test_http_admin_runs_an_scp03_script_and_commits_each_round_trip(tmp_path, form_factor):
    path = tmp_path / "card.json"
    se = card(form_factor, path)
    isd = se.registry.isd().aid
    server = ScriptedServer(isd, [GET_STATUS_ISD, GET_CPLC, INSTALL_SSD])
    agent = AdminAgent(se, isd)
    sent = run_session(agent, server, TRIGGER)

    assert [r.uri for r in sent] == ["https://tsm.paylab.test/admin", "/admin/2", "/admin/3"]
    for request in sent:
        assert request.method == "POST"
        assert request.header("x-admin-protocol") == PROTOCOL
        assert request.header("X-Admin-From") == TRIGGER.agent_id
        assert request.header("Host") == "tsm.paylab.test"
    assert sent[0].body == b""
    assert sent[0].header("X-Admin-Script-Status") is None
    assert [r.header("X-Admin-Script-Status") for r in sent[1:]] == ["ok", "ok"]
    assert sent[1].header("Content-Type") == CONTENT_TYPE_RESPONSE
    assert [r.sw for r in server.results] == [0x9000, 0x9000, 0x9000]
    assert server.results[1].data == tlv.tlv(0x9F7F, se.card_state()["cplc"])
    assert agent.statuses == [ScriptStatus.OK, ScriptStatus.OK]
    assert not agent.active
    assert all(n < 100 for n in se.channels)  # the agent's internal channel is closed
    assert not se.image.dirty
    fresh = SecureElement(CardImage(path, durable=False), form_factor, default_catalog())
    fresh.power_on()
    assert fresh.registry.get(SSD_AID) is not None
    assert se.faults == []


def test_http_admin_script_statuses_for_failing_commands():
    se = card(ESE)
    isd = se.registry.isd().aid
    # within the secure channel a command fails: reported in its R-APDU, status ok, the script stops
    server = ScriptedServer(isd, [DELETE_UNKNOWN, GET_CPLC])
    agent = AdminAgent(se, isd)
    sent = run_session(agent, server, TRIGGER)
    assert sent[2].header("X-Admin-Script-Status") == "ok"
    assert [r.sw for r in server.results] == [0x6A88]

    # without the secure channel the SD refuses: security-error
    agent.start(TRIGGER)
    request = agent.handle_response(ScriptedServer.script([GET_STATUS_ISD, GET_CPLC], "/next"))
    assert request is not None
    assert request.header("X-Admin-Script-Status") == "security-error"
    assert parse_expanded_response(request.body).responses == (RApdu(b"", 0x6982),)
    # a targeted application that is not on the card, or is not a security domain: nothing runs
    request = agent.handle_response(ScriptedServer.script(
        [INSTALL_SSD], "/next", **{"X-Admin-Targeted-Application": aid_uri(h("A0000009999999"))}))
    assert request is not None
    assert (request.header("X-Admin-Script-Status"), request.body) == ("unknown-application", b"")
    request = agent.handle_response(ScriptedServer.script(
        [INSTALL_SSD], "/next", **{"X-Admin-Targeted-Application": aid_uri(PPSE_AID)}))
    assert request is not None
    assert request.header("X-Admin-Script-Status") == "not-a-security-domain"
    assert se.registry.get(SSD_AID) is None
    # a body that is no script answers "bad format"
    request = agent.handle_response(HttpResponse(200, {"content-type": CONTENT_TYPE_SCRIPT}, GET_CPLC))
    assert request is not None
    assert parse_expanded_response(request.body).bad_format == b"\x01"
    assert request.uri == "/next"  # no X-Admin-Next-URI: the previous URI again


def test_http_admin_protocol_errors():
    se = card(MICROSD)
    agent = AdminAgent(se, se.registry.isd().aid)
    with pytest.raises(AdminSessionError):
        agent.handle_response(HttpResponse(204))
    agent.start(TRIGGER)
    with pytest.raises(AdminSessionError, match="content type"):
        agent.handle_response(HttpResponse(200, {"Content-Type": "text/plain"}, b""))
    assert not agent.active
    agent.start(TRIGGER)
    with pytest.raises(AdminSessionError) as info:
        agent.handle_response(HttpResponse(503))
    assert info.value.status == 503


def test_http_admin_round_trip_is_atomic_across_a_tear(tmp_path):
    path = tmp_path / "card.json"
    se = card(ESE, path)
    isd = se.registry.isd().aid
    server = ScriptedServer(isd, [INSTALL_SSD])
    agent = AdminAgent(se, isd)
    request = agent.handle_response(server(agent.start(TRIGGER)))  # INITIALIZE UPDATE round trip
    assert request is not None
    se.set_tear_hook(lambda point, size: 5 if point == "commit.journal" else None)
    with pytest.raises(PowerLost):
        agent.handle_response(server(request))
    assert not se.powered
    fresh = SecureElement(CardImage(path, durable=False), ESE, default_catalog())
    fresh.power_on()
    assert fresh.registry.get(SSD_AID) is None


def test_admin_trigger_round_trip_and_published_values():
    assert AdminTrigger.parse(TRIGGER.encode()) == TRIGGER
    with_psk = AdminTrigger("https://admin.host/uri", psk_identity=h("deadbeef"), kvn=0x00, kid=0x40)
    encoded = with_psk.encode()
    # values from pySim's Amendment B test vectors (values only): 85 PSK/KVN/KID, 8C URI
    assert h("850804deadbeef020040") in encoded
    assert h("8c1668747470733a2f2f61646d696e2e686f73742f757269") in encoded
    assert AdminTrigger.parse(encoded) == with_psk
    with pytest.raises(ValueError, match="trigger"):
        AdminTrigger.parse(h("8103830100"))
