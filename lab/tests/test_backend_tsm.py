"""TSMs, the MTPS hub and the OTA gateway, end to end on emulated SEs.

Each cooperation mode (direct, UnionPay hub, MTPS hub) issues a PBOC card onto each form factor (SIM
over SMS-PP/SCP80, microSD and eSE over HTTP remote administration with scripted SCP03); a qPBOC
online tap then works (the PPSE lists the card, the ARQC verifies with the profile's issuer keys).
Also: the key handover (the SEI-TSM's first keys no longer open the SSD), lost phone (lock, unlock,
delete, state query), UnionPay aggregating two banks in one SSD, the signed institution API's
refusals and their audit log, eligibility failures, and the OTA gateway's SMS-PP packets,
counters and HTTP admin endpoint. Institutions talk over the backend app (``create_app``) through
FastAPI's TestClient; every key is a TEST KEY.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient  # backed by httpx2 (test extra), so no deprecation warning

from paylab.drivers.se.applets.pboc import PACKAGE_AID
from paylab.drivers.se.gp.content import OS_SD_LOAD_FILE_AID
from paylab.lab.backend.config import DEFAULTS, load_config
from paylab.lab.backend.context import BackendContext
from paylab.lab.backend.http_app import create_app
from paylab.lab.backend.inst_auth import HEADER_TIMESTAMP, InstitutionApiError, sign_request
from paylab.lab.backend.ota_gateway import (
    CONTENT_TYPE_SCRIPT,
    PROTOCOL,
    OtaGateway,
    OtaGatewayError,
    aid_uri,
)
from paylab.lab.backend.tsm import MODES, TsmNetwork, issue_card
from paylab.lab.backend.tsm.sei_tsm import new_ota_keys
from paylab.lab.backend.tsm.services import Conflict, NotFound
from paylab.lab.gp_client import CardCommandFailed, GpClient
from paylab.lab.profiles import load_bundled
from paylab.lab.protocol import cps, dol, tlv
from paylab.lab.protocol.apdu import CommandApdu, ResponseApdu, transmit_with_chaining
from paylab.lab.protocol.crypto import emv
from paylab.lab.protocol.errors import PaylabError
from paylab.lab.protocol.gp import StaticKeys
from paylab.lab.protocol.ota import admin_auth, build_expanded_commands
from paylab.lab.protocol.ota.ram import TAR_ISD

h = bytes.fromhex
START = 1767225600.0  # 2026-01-01 08:00 Beijing time
FORM_FACTORS = ("sim", "microsd", "ese")
OPERATOR = "operator-cm"
DEBIT = ("bank-a", "pboc_debit_ecash_sm4")
CREDIT = ("bank-b", "pboc_credit_ecash_3des")
PPSE = b"2PAY.SYS.DDF01"
ONLINE_TTQ = h("36800000")


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Lab:
    ctx: BackendContext
    network: TsmNetwork
    client: TestClient
    clock: FakeClock


@pytest.fixture
def lab(tmp_path):
    clock = FakeClock()
    ctx = BackendContext.create(load_config(None, overrides={"state_dir": str(tmp_path)}), clock=clock,
                                rng=random.Random(7))
    network = TsmNetwork(ctx)
    client = TestClient(create_app(ctx, routers=(), extra=network.routers()))
    network.connect(client)
    yield Lab(ctx, network, client, clock)
    ctx.close()


def phone(lab: Lab, form_factor: str, se_id: str = "se-0001", **kwargs):
    return lab.network.manufacture(se_id, form_factor, owner=OPERATOR, msisdn="13800138000", **kwargs)


# --- a qPBOC reader ----------------------------------------------------------------------------------

def _send(se, interface="contactless"):
    def transmit(cmd: CommandApdu) -> ResponseApdu:
        return transmit_with_chaining(lambda raw: se.transmit(raw, interface=interface), cmd)
    return transmit


def ppse_aids(se) -> list[bytes]:
    """Power the contactless interface and SELECT the PPSE: the AIDs it lists."""
    se.power_on("contactless")
    response = _send(se)(CommandApdu(0x00, 0xA4, 0x04, 0x00, PPSE, 256))
    assert response.sw == 0x9000
    return _aids_in(response.data)


def _aids_in(data: bytes) -> list[bytes]:
    found: list[bytes] = []

    def walk(objects):
        for obj in objects:
            if obj.tag == 0x4F:
                found.append(obj.value)
            elif obj.children:
                walk(obj.children)

    walk(tlv.decode(data))
    return found


def online_tap(se, profile_name: str, amount: int = 100) -> None:
    """PPSE lists the card; SELECT; GPO with an online TTQ; the ARQC verifies with the issuer keys."""
    profile = load_bundled(profile_name)
    assert profile.aid in ppse_aids(se)
    send = _send(se)
    fci = send(CommandApdu(0x00, 0xA4, 0x04, 0x00, profile.aid, 256))
    assert fci.sw == 0x9000
    pdol = tlv.find(tlv.decode(fci.data), 0x9F38).value
    values = {0x9F66: ONLINE_TTQ, 0x9F02: cps.amount_n12(amount), 0x9F03: bytes(6), 0x9F1A: h("0156"),
              0x95: bytes(5), 0x5F2A: h("0156"), 0x9A: h("260101"), 0x9C: b"\x00", 0x9F37: h("11223344"),
              0xDF69: b"\x01" if profile.algorithm == "sm4" else b"\x00"}
    gpo = CommandApdu(0x80, 0xA8, 0, 0, dol.gpo_command_data(dol.build_dol_data(pdol, values, kernel="A000000333")),
                      256)
    response = send(gpo)
    assert response.sw == 0x9000, f"GPO answered {response.sw:04X}"
    card = tlv.to_dict(tlv.decode(response.data))
    iad = emv.parse_iad(card[0x9F10])
    data = emv.ac_input(values | {0x82: card[0x82], 0x9F36: card[0x9F36]}, iad.cvr)
    assert emv.verify_arqc(profile.issuer_keys.imk_ac, profile.pan, profile.psn, card[0x9F36], data, card[0x9F26],
                           method=emv.session_method_for_cvn(iad.cvn), alg=emv.alg_for_iad(iad))


def no_application(se, profile_name: str) -> None:
    """A tap finds nothing: the PPSE does not list the card and it is not selectable."""
    aid = load_bundled(profile_name).aid
    assert aid not in ppse_aids(se)
    assert _send(se)(CommandApdu(0x00, 0xA4, 0x04, 0x00, aid, 256)).sw == 0x6A82


def contact_client(se) -> GpClient:
    se.power_on("contact")
    return GpClient(lambda raw: transmit_with_chaining(se.transmit, CommandApdu.decode(raw)).encode())


def record_first_keys(lab: Lab, monkeypatch) -> dict[str, StaticKeys]:
    """Catch the first key sets the SEI-TSM forgets after the handover (to prove they no longer work)."""
    sei = lab.network.sei[OPERATOR]
    forgotten: dict[str, StaticKeys] = {}
    original = sei.keys.forget

    def forget(ref: str) -> None:
        if "/ssd/" in ref:
            forgotten[ref] = sei.keys.gp(ref)
        original(ref)

    monkeypatch.setattr(sei.keys, "forget", forget)
    return forgotten


# --- issuance in every mode onto every form factor -----------------------------------------------------

@pytest.mark.parametrize("form_factor", FORM_FACTORS)
@pytest.mark.parametrize("mode", MODES)
def test_each_mode_issues_a_pboc_card_onto_each_form_factor(lab, monkeypatch, mode, form_factor):
    handset = phone(lab, form_factor)
    first_keys = record_first_keys(lab, monkeypatch)
    segments: list[int] = []
    send = lab.network.gateway.send_ram_packets

    def recording_send(*args, **kwargs):
        packets = send(*args, **kwargs)
        segments.extend(len(p.envelopes) for p in packets)
        return packets

    monkeypatch.setattr(lab.network.gateway, "send_ram_packets", recording_send)
    issuer, profile = DEBIT
    issuance = issue_card(lab.network, mode, "se-0001", issuer=issuer, profile=profile)

    assert issuance.telecom_active
    assert issuance.sp_tsm == ("unionpay" if mode == "unionpay-hub" else issuer)
    assert issuance.aid == load_bundled(profile).aid
    online_tap(handset.se, profile)

    # the OTA route the form factor implies
    if form_factor == "sim":
        assert handset.sms_delivered == sum(segments) > 0
        assert handset.admin_sessions == 0
        # INSTALL [for personalization] + STORE DATA units longer than one SMS went concatenated
        assert max(segments) > 1
    else:
        assert handset.sms_delivered == 0
        assert handset.admin_sessions > 0

    # key handover: the SEI-TSM's first keys no longer open the SSD; the SP-TSM's do
    sp = lab.network.sp[issuance.sp_tsm]
    (first,) = first_keys.values()
    client = contact_client(handset.se)
    with pytest.raises(CardCommandFailed) as refused:
        client.open_secure_channel(issuance.ssd_aid, first)
    assert refused.value.sw == 0x6A88  # key version 01 not found
    ssd = sp.registry.ssd("se-0001", issuance.ssd_aid)
    client.open_secure_channel(issuance.ssd_aid, sp.keys.gp(ssd.key_ref))
    assert issuance.aid in {e.aid for e in client.get_status(0x40)}
    sei_view = lab.network.sei[OPERATOR].registry.ssd("se-0001", issuance.ssd_aid)
    assert (sei_view.state, sei_view.key_ref, sei_view.owner) == ("handed-over", None, issuance.sp_tsm)
    assert not lab.network.sei[OPERATOR].keys.has(f"se-0001/ssd/{issuance.ssd_aid.hex().upper()}")
    assert handset.se.faults == []


def test_unionpay_aggregates_two_banks_in_its_ssd_on_a_sim(lab):
    handset = phone(lab, "sim")
    first = issue_card(lab.network, "unionpay-hub", "se-0001", issuer=DEBIT[0], profile=DEBIT[1])
    second = issue_card(lab.network, "unionpay-hub", "se-0001", issuer=CREDIT[0], profile=CREDIT[1])
    assert first.ssd_aid == second.ssd_aid  # one UnionPay SSD, two banks' applications
    assert set(ppse_aids(handset.se)) >= {first.aid, second.aid}
    online_tap(handset.se, DEBIT[1])
    online_tap(handset.se, CREDIT[1])  # 3DES profile, RSA ODA chain: the larger DGIs fit single SMS too
    # a bank manages only its own card at UnionPay
    with pytest.raises(InstitutionApiError) as refused:
        lab.network.client("bank-b").post("/tsm/sp/unionpay/apps/lock", {"se_id": "se-0001", "aid": first.aid.hex()})
    assert refused.value.status == 403
    state = lab.network.client("bank-a").post("/tsm/sp/unionpay/apps/state", {"se_id": "se-0001", "live": True})
    assert [(a["aid"], a["state"], a["card_life_cycle"]) for a in state["apps"]] == [
        (first.aid.hex().upper(), "active", "0F")]


# --- lost phone --------------------------------------------------------------------------------------

@pytest.mark.parametrize("form_factor", ["sim", "ese"])
def test_lost_phone_lock_unlock_delete_and_state_query(lab, form_factor):
    handset = phone(lab, form_factor)
    issuer, profile = DEBIT
    issuance = issue_card(lab.network, "direct", "se-0001", issuer=issuer, profile=profile)
    bank = lab.network.client(issuer)
    app = {"se_id": "se-0001", "aid": issuance.aid.hex()}

    locked = bank.post(f"/tsm/sp/{issuer}/apps/lock", app)
    assert locked["state"] == "locked"
    no_application(handset.se, profile)
    state = bank.post(f"/tsm/sp/{issuer}/apps/state", {"se_id": "se-0001", "live": True})
    assert [(a["state"], a["card_life_cycle"]) for a in state["apps"]] == [("locked", "8F")]

    assert bank.post(f"/tsm/sp/{issuer}/apps/unlock", app)["state"] == "active"
    online_tap(handset.se, profile)

    deleted = bank.post(f"/tsm/sp/{issuer}/apps/delete", {**app, "end_service": True})
    assert deleted["state"] == "deleted"
    no_application(handset.se, profile)
    state = bank.post(f"/tsm/sp/{issuer}/apps/state", {"se_id": "se-0001", "live": True})
    assert state["apps"][0]["state"] == "deleted"
    assert state["ssd"]["state"] == "deleted"
    # the SEI-TSM deleted the SSD; the card holds neither it nor the application
    sei_state = lab.network.client(issuer).get(f"/tsm/sei/{OPERATOR}/se/se-0001")
    assert [(s["aid"], s["state"]) for s in sei_state["ssds"]] == [(issuance.ssd_aid.hex().upper(), "deleted")]
    registry = {e.aid for e in handset.se.registry}
    assert issuance.ssd_aid not in registry
    assert issuance.aid not in registry
    # the SIM vendor's preloaded package stays (in the ISD); a package the SSD loaded went with it
    assert (PACKAGE_AID in registry) == (form_factor == "sim")
    assert handset.se.faults == []


# --- the signed institution API ----------------------------------------------------------------------

def _signed(lab: Lab, name: str, path: str, payload: dict, *, key: bytes | None = None, nonce: str = "n" * 32,
            ts: float | None = None) -> tuple[bytes, dict[str, str]]:
    institution = lab.ctx.config.institution(name)
    body = json.dumps(payload).encode()
    headers = sign_request(institution.api_key_id, key or institution.hmac_key, "POST", path, body,
                           ts=int(ts if ts is not None else lab.clock()), nonce=nonce)
    return body, headers | {"Content-Type": "application/json"}


def test_signed_api_refuses_unsigned_replayed_foreign_and_stale_requests_and_logs_them(lab):
    phone(lab, "ese")
    path = f"/tsm/sei/{OPERATOR}/eligibility"
    payload = {"se_id": "se-0001", "memory": 1000}

    def post(body: bytes, headers: dict[str, str]):
        return lab.client.post(path, content=body, headers=headers)

    unsigned = lab.client.post(path, json=payload)
    assert (unsigned.status_code, unsigned.json()["error"]) == (401, "unsigned request")

    body, headers = _signed(lab, "bank-a", path, payload)
    assert post(body, headers).status_code == 200
    replay = post(body, headers)
    assert (replay.status_code, replay.json()["error"]) == (401, "replayed nonce")

    # bank-a's key id, signed with bank-b's key: a foreign signature
    body, headers = _signed(lab, "bank-a", path, payload, key=lab.ctx.config.institution("bank-b").hmac_key,
                            nonce="f" * 32)
    foreign = post(body, headers)
    assert (foreign.status_code, foreign.json()["error"]) == (401, "bad signature")

    body, headers = _signed(lab, "bank-a", path, payload, nonce="s" * 32, ts=lab.clock() - 301)
    stale = post(body, headers)
    assert (stale.status_code, stale.json()["error"]) == (401, "stale timestamp")

    body, headers = _signed(lab, "bank-a", path, payload, nonce="u" * 32)
    unknown = post(body, headers | {"X-Paylab-Key-Id": "ak-nobody"})
    assert (unknown.status_code, unknown.json()["error"]) == (401, "unknown institution")

    body, headers = _signed(lab, "bank-a", path, {**payload, "memory": 1}, nonce="t" * 32)
    tampered = lab.client.post(path, content=json.dumps({**payload, "memory": 2}).encode(), headers=headers)
    assert tampered.json()["error"] == "bad signature"

    # properly signed, but the route does not serve that institution
    body, headers = _signed(lab, OPERATOR, path, payload, nonce="o" * 32)
    operator = post(body, headers)
    assert (operator.status_code, operator.json()["error"]) == (403, "institution not allowed")
    with pytest.raises(InstitutionApiError) as refused:
        lab.network.client("bank-b").post("/tsm/sp/bank-a/apps/state", {"se_id": "se-0001"})
    assert refused.value.status == 403

    log = [(r.status, r.problem, r.institution) for r in lab.network.auth.refusals()]
    assert log == [(401, "unsigned request", None), (401, "replayed nonce", "bank-a"),
                   (401, "bad signature", "bank-a"), (401, "stale timestamp", "bank-a"),
                   (401, "unknown institution", None), (401, "bad signature", "bank-a"),
                   (403, "institution not allowed", OPERATOR), (403, "institution not allowed", "bank-b")]
    assert all(r.path.startswith("/tsm/") for r in lab.network.auth.refusals())


def test_bad_timestamp_and_nonce_formats_are_refused(lab):
    body, headers = _signed(lab, "bank-a", "/mtps/route/eligibility", {})
    answer = lab.client.post("/mtps/route/eligibility", content=body, headers=headers | {HEADER_TIMESTAMP: "soon"})
    assert (answer.status_code, answer.json()["error"]) == (401, "bad timestamp")


# --- eligibility ---------------------------------------------------------------------------------------

def test_eligibility_refuses_a_full_se_with_a_clear_error_and_creates_nothing(lab):
    handset = phone(lab, "ese")
    filler = handset.se.applet_data(b"\xa0\x00\x00\x09\x99")  # other services' data fill the NVM
    filler["blob"] = bytes(995_000)
    handset.se.image.commit()
    with pytest.raises(InstitutionApiError) as refused:
        issue_card(lab.network, "direct", "se-0001", issuer=DEBIT[0], profile=DEBIT[1])
    assert refused.value.status == 409
    assert refused.value.error == "not eligible"
    assert "insufficient memory" in refused.value.reason
    assert [e.kind for e in handset.se.registry] == ["ISD", "APP"]  # the ISD and the PPSE only
    assert lab.network.sei[OPERATOR].registry.ssds("se-0001") == []


def test_eligibility_refuses_an_se_whose_cplc_is_not_the_registered_one(lab):
    handset = phone(lab, "sim", registered_cplc=bytes(42))  # the registry expects another SE
    with pytest.raises(InstitutionApiError) as refused:
        issue_card(lab.network, "unionpay-hub", "se-0001", issuer=DEBIT[0], profile=DEBIT[1])
    assert (refused.value.status, refused.value.error) == (409, "not eligible")
    assert "unknown CPLC" in refused.value.reason
    assert handset.sms_delivered == 1  # one packet: GET DATA CPLC and card resources
    with pytest.raises(InstitutionApiError) as unknown:
        lab.network.client("bank-a").post(f"/tsm/sei/{OPERATOR}/eligibility", {"se_id": "se-9999"})
    assert (unknown.value.status, unknown.value.error) == (404, "not found")


# --- MTPS --------------------------------------------------------------------------------------------

def test_mtps_routes_only_for_registered_institutions_and_shares_se_records(lab):
    phone(lab, "microsd")
    bank = lab.network.client("bank-a")
    with pytest.raises(InstitutionApiError) as refused:
        bank.post("/mtps/route/eligibility", {"se_id": "se-0001"})
    assert (refused.value.status, refused.value.reason) == (403, "bank-a is not registered with MTPS")
    issue_card(lab.network, "mtps-hub", "se-0001", issuer=DEBIT[0], profile=DEBIT[1])
    shared = bank.get("/mtps/se/se-0001")
    assert (shared["owner"], shared["form_factor"], shared["owner_role"]) == (OPERATOR, "microsd", "issuer")
    assert "isd_key_ref" not in shared
    # bank-b is not registered: no SE lookup, no routing; an operator cannot register applications
    with pytest.raises(InstitutionApiError):
        lab.network.client("bank-b").get("/mtps/se/se-0001")
    with pytest.raises(InstitutionApiError) as operator:
        lab.network.client(OPERATOR).post("/mtps/applications", {"aid": "A000000333010101", "profile": DEBIT[1],
                                                                  "sp_tsm": "bank-a"})
    assert operator.value.status == 403
    # MTPS forwards on the SP-TSM's behalf: the SEI-TSM sees bank-a as the SSD's owner
    ssds = lab.network.sei[OPERATOR].registry.ssds("se-0001")
    assert [(s.owner, s.state) for s in ssds] == [("bank-a", "handed-over")]


# --- OTA gateway ---------------------------------------------------------------------------------------

def test_sms_pp_splits_scripts_into_single_sms_packets_with_their_own_counters(lab):
    handset = phone(lab, "sim")
    gateway = lab.network.gateway
    keys = lab.network.sei[OPERATOR].keys.ota("se-0001/ota/isd")
    get_cplc, get_resources = h("80CA9F7F00"), h("80CAFF2100")
    limit = OtaGateway.max_script_bytes(keys)
    assert limit == 98  # AES keys, CC 8, ciphered: 140 octets of SMS user data
    units = [[get_cplc, get_resources]] * 12
    envelopes = gateway.send_ram_script("se-0001", TAR_ISD, units, keys)
    assert len(envelopes) == 2  # 6 units of 2 GET DATA (14 script bytes each) per 98-byte script
    counters = []
    for envelope in envelopes:
        por = gateway.collect_por("se-0001", handset.deliver_sms(envelope))
        assert por.ok
        counters.append(por.counter)
        assert [r.sw for r in por.responses] == [0x9000] * 12
    assert counters == [1, 2]
    # the counter persists: a new gateway continues; a replayed packet is refused by the card (PoR 02)
    fresh = OtaGateway(lab.ctx)
    (next_envelope,) = fresh.send_ram_script("se-0001", TAR_ISD, [get_cplc], keys)
    assert fresh.collect_por("se-0001", handset.deliver_sms(next_envelope)).counter == 3
    fresh.send_ram_script("se-0001", TAR_ISD, [get_cplc], keys)
    assert fresh.collect_por("se-0001", handset.deliver_sms(envelopes[0])).status == 0x02
    # a unit longer than the largest concatenated packet is refused before anything is sent
    assert gateway.discard("se-0001") == 0
    with pytest.raises(OtaGatewayError, match="does not fit one OTA packet"):
        gateway.send_ram_script("se-0001", TAR_ISD, [[get_cplc] * 200], keys)
    with pytest.raises(OtaGatewayError, match="no outstanding SMS"):
        gateway.collect_por("se-0001", h("9000"))


def test_sms_pp_sends_a_long_unit_as_a_concatenated_sms_the_uicc_reassembles(lab):
    handset = phone(lab, "sim")
    gateway = lab.network.gateway
    keys = lab.network.sei[OPERATOR].keys.ota("se-0001/ota/isd")
    get_cplc = h("80CA9F7F00")
    assert OtaGateway.max_script_bytes(keys, segments=2) > OtaGateway.max_script_bytes(keys)
    # a short unit, then 20 GET DATA that must share a card session (more than one SMS), then a short one
    packets = gateway.send_ram_packets("se-0001", TAR_ISD, [get_cplc, [get_cplc] * 20, get_cplc], keys)
    assert [len(p.envelopes) for p in packets] == [1, 2, 1]
    assert [p.counter for p in packets] == [1, 2, 3]
    deliveries = [(packet, handset.deliver_sms(e)) for packet in packets for e in packet.envelopes]
    assert deliveries[1][1] == h("9000")  # first segment: stored, no PoR yet
    pors = [gateway.collect_por("se-0001", answer, envelope=packet.envelopes[-1])
            for packet, answer in deliveries if answer != h("9000")]
    assert [(p.counter, len(p.responses)) for p in pors] == [(1, 1), (2, 20), (3, 1)]
    assert all(r.sw == 0x9000 for p in pors for r in p.responses)
    # out of order and duplicated segments still make one packet, run once
    (packet,) = gateway.send_ram_packets("se-0001", TAR_ISD, [[get_cplc] * 20], keys)
    first, second = packet.envelopes
    assert handset.deliver_sms(second) == h("9000")
    assert handset.deliver_sms(second) == h("9000")
    por = gateway.collect_por("se-0001", handset.deliver_sms(first), envelope=first)
    assert (por.ok, por.counter, len(por.responses)) == (True, 4, 20)
    # a missing segment: nothing runs (the next packet's counter 6 is accepted, so 5 never ran)
    (lost,) = gateway.send_ram_packets("se-0001", TAR_ISD, [[get_cplc] * 20], keys)
    assert handset.deliver_sms(lost.envelopes[0]) == h("9000")
    gateway.discard("se-0001")
    (alone,) = gateway.send_ram_script("se-0001", TAR_ISD, [get_cplc], keys)
    assert gateway.collect_por("se-0001", handset.deliver_sms(alone)).counter == 6
    # the late second segment cannot complete it: the first was garbage collected after the timeout
    handler = handset.se.system_commands[0xC2]
    assert handler.segments.pending == 1
    handler.clock = lambda: 1e12
    assert handset.deliver_sms(lost.envelopes[1]) == h("9000")
    assert handler.segments.pending == 1  # only the late segment, waiting for its own timeout


def test_sms_pp_with_wrong_keys_gets_an_error_por(lab):
    handset = phone(lab, "sim")
    gateway = lab.network.gateway
    (envelope,) = gateway.send_ram_script("se-0001", TAR_ISD, [h("80CA9F7F00")], new_ota_keys(random.Random(1)))
    por = gateway.collect_por("se-0001", handset.deliver_sms(envelope))
    assert not por.ok
    assert por.status in (0x01, 0x05, 0x06)


def signed(lab, path: str, headers: dict[str, str], body: bytes = b"", *, psk: bytes | None = None,
           nonce: bytes | None = None, timestamp: float | None = None) -> dict[str, str]:
    """``headers`` with the agent's X-Admin-Authorization (the PSK diversified from the TEST master key)."""
    key = psk if psk is not None else admin_auth.derive_psk(admin_auth.TEST_ADMIN_MASTER_KEY, "se-0001")
    return admin_auth.sign_request(key, uri=path, headers=headers, body=body,
                                   timestamp=int(lab.clock() if timestamp is None else timestamp),
                                   nonce=nonce or random.randbytes(16))


def test_http_admin_endpoint_serves_queued_scripts_and_collects_the_answers(lab):
    handset = phone(lab, "ese")
    gateway = lab.network.gateway
    admin = {"X-Admin-Protocol": PROTOCOL, "X-Admin-From": "//se-id/se-0001"}
    start = "/ota/admin/se-0001"
    assert lab.client.post(start, headers={"X-Admin-From": "x"}).status_code == 400
    assert lab.client.post(start, headers=signed(lab, start, admin)).status_code == 204  # nothing queued
    isd = handset.se.registry.isd().aid
    ticket = gateway.queue_script("se-0001", [h("80CA9F7F00")], target=isd)
    served = lab.client.post(start, headers=signed(lab, start, admin))
    assert served.status_code == 200
    assert served.headers["content-type"] == CONTENT_TYPE_SCRIPT
    assert served.headers["X-Admin-Targeted-Application"] == aid_uri(isd)
    assert served.headers["X-Admin-Next-URI"] == f"/ota/admin/se-0001/{ticket}"
    assert served.content == build_expanded_commands([h("80CA9F7F00")])
    wrong_path = f"/ota/admin/se-0001/{ticket + 1}"
    wrong = lab.client.post(wrong_path, headers=signed(lab, wrong_path, admin), content=b"")
    assert wrong.status_code == 409
    with pytest.raises(OtaGatewayError):
        gateway.admin_result(ticket)
    # the real agent answers through the handset
    ticket = gateway.queue_script("se-0001", [h("80CA9F7F00"), h("80CAFF2100")], target=isd)
    gateway.cancel(ticket - 1)
    assert handset.admin_session() == ["ok"]
    result = gateway.admin_result(ticket)
    assert (result.status, [r.sw for r in result.responses]) == ("ok", [0x9000, 0x9000])
    assert result.responses[0].data == tlv.tlv(0x9F7F, handset.se.card_state()["cplc"])


def test_http_admin_refuses_unauthenticated_foreign_and_replayed_agents(lab):
    handset = phone(lab, "ese")
    gateway = lab.network.gateway
    admin = {"X-Admin-Protocol": PROTOCOL, "X-Admin-From": "//se-id/se-0001"}
    start = "/ota/admin/se-0001"
    isd = handset.se.registry.isd().aid
    ticket = gateway.queue_script("se-0001", [h("80CA9F7F00")], target=isd)

    def refused(headers: dict[str, str], path: str = start, body: bytes = b"") -> str:
        answer = lab.client.post(path, headers=headers, content=body)
        assert answer.status_code == 401, answer.text
        assert answer.json()["field"] == admin_auth.HEADER
        return answer.json()["error"]

    assert "missing X-Admin-Authorization" in refused(admin)
    assert "malformed" in refused(admin | {admin_auth.HEADER: "PSK-HMAC-SHA256 nonsense"})
    assert "does not verify" in refused(signed(lab, start, admin, psk=bytes(16)))
    assert "does not verify" in refused(signed(lab, start, admin, b"x"))  # the MAC covers the body
    assert "not the agent of" in refused(signed(lab, start, admin | {"X-Admin-From": "//se-id/se-0002"}))
    assert "not an agent id" in refused(signed(lab, start, admin | {"X-Admin-From": "se-0001"}))
    assert "from the server's time" in refused(signed(lab, start, admin, timestamp=lab.clock() - 3600))
    # a status the MAC does not cover cannot be slipped in
    headers = signed(lab, start + "/1", admin | {"X-Admin-Script-Status": "ok"})
    assert "does not verify" in refused(headers | {"X-Admin-Script-Status": "security-error"}, start + "/1")
    assert gateway.pending("se-0001") == 1  # nothing was served to a refused caller
    # a replayed request (same nonce) is refused even with a valid MAC
    first = signed(lab, start, admin, nonce=bytes(range(16)))
    assert lab.client.post(start, headers=first).status_code == 200
    assert "replayed nonce" in refused(first)
    # registered agents only: an SE the gateway has no PSK for is unknown; a registered PSK replaces the derived one
    gateway.admin_master_key = None
    assert "unknown agent" in refused(signed(lab, start, admin))
    gateway.register_agent("se-0001", b"K" * 16)
    handset.admin_psk = b"K" * 16
    gateway.cancel(ticket)
    assert handset.admin_session() == []


def test_sms_pp_cannot_load_a_real_size_package_and_says_why(lab):
    handset = phone(lab, "sim", preload_pboc=False)
    with pytest.raises(PaylabError, match=r"load file of .* does not fit one OTA packet"):
        issue_card(lab.network, "direct", "se-0001", issuer=DEBIT[0], profile=DEBIT[1])
    assert PACKAGE_AID not in {e.aid for e in handset.se.registry}


@pytest.mark.parametrize("form_factor", ["sim", "ese"])
def test_card_keys_never_travel_in_clear_between_tsm_and_card(lab, monkeypatch, form_factor):
    phone(lab, form_factor)
    seen: list[bytes] = []
    gateway, sei = lab.network.gateway, lab.network.sei[OPERATOR]
    queue_script, relay_ram = gateway.queue_script, sei.relay_ram

    def spy_queue(agent, apdus, *, target):
        seen.extend(apdus)
        return queue_script(agent, apdus, target=target)

    def spy_relay(se_id, sd_aid, units, *, sp):
        seen.extend(apdu for unit in units for apdu in unit)  # what the operator sees of the bank's commands
        return relay_ram(se_id, sd_aid, units, sp=sp)

    monkeypatch.setattr(gateway, "queue_script", spy_queue)
    monkeypatch.setattr(sei, "relay_ram", spy_relay)
    issue_card(lab.network, "direct", "se-0001", issuer=DEBIT[0], profile=DEBIT[1])
    keys = load_bundled(DEBIT[1]).card_keys()
    assert seen
    for secret in (keys.mk_ac, keys.mk_mac, keys.mk_enc):
        assert not any(secret in apdu for apdu in seen)
    sp_keys = lab.network.sp[DEBIT[0]].keys.gp(f"se-0001/ssd/{lab.network.sp[DEBIT[0]].ssd_aid.hex().upper()}")
    assert not any(sp_keys.dek in apdu for apdu in seen)


def test_scripted_scp03_recovers_from_a_wrong_sequence_counter_guess(lab):
    handset = phone(lab, "ese")
    isd = handset.se.registry.isd().aid
    for _ in range(3):  # someone else opened secure channels with the ISD: its counter moved on
        contact_client(handset.se).open_secure_channel(isd, StaticKeys.gp_default_test_keys())
    sei = lab.network.sei[OPERATOR]
    sei.create_ssd("se-0001", h("A000000333535344AAAA"), sp="bank-a")
    assert handset.admin_sessions == 2  # the first script told the real counter, the second one ran
    assert sei.registry.se("se-0001").scp_counter == 4
    sei.create_ssd("se-0001", h("A000000333535344BBBB"), sp="bank-a")
    assert handset.admin_sessions == 3  # the counter is known now


def test_sei_tsm_creates_ssds_only_once_and_only_for_known_institutions(lab):
    handset = phone(lab, "microsd")
    sei = lab.network.sei[OPERATOR]
    created = sei.create_ssd("se-0001", h("A000000333535344AAAA"), sp="bank-a")
    assert created["route"] == {"channel": "http", "agent": "se-0001"}
    assert created["keys"]["kvn"] == 1
    assert len(created["keys"]["enc"]) == 48  # an AES-128 key, RFC 3394 wrapped: 24 bytes
    with pytest.raises(Conflict):
        sei.create_ssd("se-0001", h("A000000333535344AAAA"), sp="bank-b")
    with pytest.raises(NotFound):
        sei.create_ssd("se-0001", h("A000000333535344BBBB"), sp="nobody")
    entry = handset.se.registry.get(h("A000000333535344AAAA"))
    assert (entry.kind, entry.associated_sd, entry.elf_aid) == ("SD", handset.se.registry.isd().aid,
                                                                OS_SD_LOAD_FILE_AID)


# --- over a real server ----------------------------------------------------------------------------------

def test_unionpay_hub_onto_an_ese_over_uvicorn_on_loopback(lab):
    """Institutions, the gateway and the handset's agent over real HTTP: the nested calls (bank ->
    UnionPay -> operator -> OTA admin endpoint) need a server that serves requests concurrently."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = create_app(lab.ctx, routers=(), extra=lab.network.routers())
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws="none", lifespan="off", http="h11"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        with httpx.Client(base_url=base, timeout=30) as http:
            lab.network.connect(http)
            handset = phone(lab, "ese")
            issuance = issue_card(lab.network, "unionpay-hub", "se-0001", issuer=DEBIT[0], profile=DEBIT[1])
            assert issuance.telecom_active
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
    assert not thread.is_alive()
    online_tap(handset.se, DEBIT[1])


def test_a_handset_maker_runs_the_sei_tsm_of_its_ese(tmp_path):
    institutions = [dict(i) for i in DEFAULTS["institutions"]]
    institutions.append({"name": "oem-huaxin", "kind": "oem", "api_key_id": "ak-test-oem-huaxin",
                         "hmac_key": "ab" * 32})
    ctx = BackendContext.create(load_config(None, overrides={"state_dir": str(tmp_path), "institutions": institutions}),
                                clock=FakeClock(), rng=random.Random(7))
    try:
        network = TsmNetwork(ctx)
        with TestClient(create_app(ctx, routers=(), extra=network.routers())) as client:
            network.connect(client)
            assert "oem-huaxin" in network.sei
            handset = network.manufacture("se-0009", "ese", owner="oem-huaxin")
            assert network.owner_of("se-0009") == "oem-huaxin"
            issuance = issue_card(network, "direct", "se-0009", issuer=DEBIT[0], profile=DEBIT[1])
            assert issuance.aid == load_bundled(DEBIT[1]).aid
            assert handset.admin_sessions > 0
    finally:
        ctx.close()
