"""Lost phone: the TSM locks the payment application, taps are declined, unlocking restores payment
(issue 4 item 4 lock/unlock; domain brief section 3 "Life cycles"). One case per cooperation mode, each
on another SE placement, so the lock travels every OTA channel and every SP-TSM (bank's own, UnionPay's).
"""

from __future__ import annotations

from typing import Any

import pytest

from paylab.fixtures.scenarios.issuance import issue_over_the_air
from paylab.fixtures.scenarios.ota import find_phone_and_unlock, lose_phone_and_lock

AMOUNT = 5_00


def _case(placement: str, mode: str) -> object:
    return pytest.param(placement, mode, id=f"{placement}-{mode}", marks=[
        pytest.mark.requirements("REQ-LOST-01"),
        pytest.mark.needs(f"se-{placement}", "backend", "nfc-reader", "nfc-emulator")])


@pytest.mark.parametrize(("placement", "mode"), [_case("sim", "direct"), _case("ese", "unionpay"),
                                                 _case("microsd", "mtps")])
def test_lost_phone_is_locked_by_the_tsm_and_taps_are_declined_until_unlocked(
        lab: Any, trace_transport: Any, record_timing: Any, iso8583_messages: list[dict[str, Any]], placement: str,
        mode: str) -> None:
    trace_transport(lab.reader("nfc"))
    trace_transport(lab.antenna("lab-pad"))
    issued = issue_over_the_air(lab, mode, placement)
    assert issued.app_state == "active"

    lost = lose_phone_and_lock(lab, issued, amount=AMOUNT)
    assert lost.tsm_answer["state"] == "locked"
    assert (lost.app_state, lost.card_life_cycle) == ("locked", "8F")  # GET STATUS: the lock bit is set
    assert not lost.ppse_lists_app
    assert lost.declined, lost.tap
    assert lost.tap.outcome in ("TRY_ANOTHER_INTERFACE", "END_APPLICATION", "DECLINED")
    assert (lost.tap.response_code, lost.tap.ledger_delta) == (None, 0)
    assert iso8583_messages == []  # nothing went online

    found = find_phone_and_unlock(lab, issued, amount=AMOUNT)
    assert found.tsm_answer["state"] == "active"
    assert (found.app_state, found.card_life_cycle) == ("active", "0F")
    assert found.ppse_lists_app
    assert found.tap.response_code == "00", found.tap
    assert found.tap.ledger_delta == -AMOUNT
    record_timing(found.tap.tap_to_approval_ms)
    assert issued.handset.se.faults == []
