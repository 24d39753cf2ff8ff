"""Air issuance, the whole matrix: 3 SE placements × 3 cooperation modes, each card issued over the air
onto a blank SE and then paying once online (domain brief section 4 "TSM flow"; issue 6 "Suites").

Each test: a fresh blank SE in a phone (registered with the operator's SEI-TSM), the cooperation mode's
TSM flow (eligibility, SSD, key handover, load/install/personalise, contactless and telecom activation)
over the placement's OTA channel (SIM: SMS-PP/SCP80 relayed by the operator; microSD/eSE: HTTP remote
administration with scripted SCP03), the SP-TSM's live state query, then one online qPBOC tap on the
lab's NFC reader (ARQC → 0210 with response 00 and an ARPC) and the ledger debited once.
"""

from __future__ import annotations

from typing import Any

import pytest

from paylab.fixtures.scenarios.issuance import (
    CHANNELS,
    FLOW_STEPS,
    issue_over_the_air,
    verify_issued_card_pays,
)

AMOUNT = 12_34
OPERATOR = "operator-cm"
MODE_IDS = {"direct": "DIRECT", "unionpay": "UNIONPAY", "mtps": "MTPS"}
OTA_REQ = {"sms-pp": "REQ-OTA-SMSPP-01", "http-admin": "REQ-OTA-HTTP-01"}


def _case(placement: str, mode: str) -> object:
    reqs = (f"REQ-ISSUE-{placement.upper()}-{MODE_IDS[mode]}-01", f"REQ-COOP-{MODE_IDS[mode]}-01",
            f"REQ-SE-{placement.upper()}-01", OTA_REQ[CHANNELS[placement]])
    return pytest.param(placement, mode, id=f"{placement}-{mode}", marks=[
        pytest.mark.requirements(*reqs),
        pytest.mark.needs(f"se-{placement}", "backend", "nfc-reader", "nfc-emulator")])


MATRIX = [_case(placement, mode) for placement in ("sim", "microsd", "ese") for mode in ("direct", "unionpay", "mtps")]

# Who is called in each mode (besides the OTA traffic): the institution APIs of issue 4 item 4.
MODE_CALLS = {
    # direct: the telecom function is activated by the user at the operator (no bank call: telecom_active)
    "direct": [f"/tsm/sei/{OPERATOR}/eligibility", f"/tsm/sei/{OPERATOR}/ssd", f"/tsm/sei/{OPERATOR}/ssd/handover"],
    "unionpay": ["/tsm/sp/unionpay/issue", f"/tsm/sei/{OPERATOR}/eligibility", f"/tsm/sei/{OPERATOR}/ssd",
                 f"/tsm/sei/{OPERATOR}/ssd/handover", f"/tsm/sei/{OPERATOR}/telecom/activate"],
    "mtps": ["/mtps/se", "/mtps/applications", "/mtps/route/eligibility", "/mtps/route/ssd",
             "/mtps/route/ssd/handover", "/mtps/route/telecom/activate"],
}


@pytest.mark.parametrize(("placement", "mode"), MATRIX)
def test_card_issued_over_the_air_pays_once(lab: Any, trace_transport: Any, record_timing: Any,
                                            iso8583_messages: list[dict[str, Any]], placement: str,
                                            mode: str) -> None:
    trace_transport(lab.reader("nfc"))
    trace_transport(lab.antenna("lab-pad"))

    issued = issue_over_the_air(lab, mode, placement)

    # the TSM flow, every step evidenced, in order
    assert issued.steps == FLOW_STEPS, issued.calls
    paths = issued.paths()
    for path in MODE_CALLS[mode]:
        assert path in paths, f"{mode}: no call to {path}"
    if mode != "mtps":
        assert not any(p.startswith("/mtps/") for p in paths)
    assert all(call.status < 300 for call in issued.calls), [str(c) for c in issued.calls if c.status >= 300]
    assert issued.sp_tsm == ("unionpay" if mode == "unionpay" else "bank-a")
    assert issued.sei_tsm == OPERATOR
    # the OTA channel the placement implies
    assert issued.channel == CHANNELS[placement]
    if placement == "sim":
        assert issued.sms_delivered > 0
        assert issued.admin_sessions == 0
        assert any(p.endswith("/ota/ram") for p in paths)  # the SP-TSM's commands relayed by the operator
    else:
        assert issued.sms_delivered == 0
        assert any(p.startswith(f"/ota/admin/{issued.se_id}") for p in paths)
    # the state query: active, GET STATUS on the card says selectable + personalised
    assert (issued.app_state, issued.card_life_cycle) == ("active", "0F")
    assert issued.state["ssd"]["state"] == "handed-over"
    assert issued.telecom_active
    assert issued.handset.se.faults == []

    paid = verify_issued_card_pays(lab, issued, AMOUNT)
    record_timing(paid.tap_to_approval_ms)
    assert paid.outcome == "ONLINE_REQUEST"
    assert paid.response_code == "00", paid
    assert paid.arpc is not None
    assert len(paid.arpc) == 10
    assert paid.arpc[8:] == b"00"  # ARPC || ARC
    assert paid.ledger_delta == -AMOUNT
    assert paid.masked_pan is not None
    assert "*" in paid.masked_pan
    assert [m["direction"] for m in iso8583_messages][-2:] == ["terminal -> acquirer", "acquirer -> terminal"]
