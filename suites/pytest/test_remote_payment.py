"""Remote payment (domain brief section 7): SE mode (SM2 signature on the SE, idempotent retry) and non-SE
mode with the right, a wrong, an expired and exhausted SMS codes. Every case checks the backend's answer,
the order status queried by the merchant's order id, and the cardholder account in the ledger (debited
exactly once when paid, untouched when refused; invariants checked by the scenario).
"""

from __future__ import annotations

from typing import Any

import pytest

from paylab.fixtures.scenarios.remote import fresh_phone, pay_remotely_with_se, pay_remotely_with_sms_code

AMOUNT = 123_45


@pytest.mark.parametrize("placement", [
    pytest.param("ese", marks=pytest.mark.needs("se-ese", "backend")),
    pytest.param("sim", marks=pytest.mark.needs("se-sim", "backend")),
])
@pytest.mark.requirements("REQ-RP-SE-01")
def test_se_mode_payment_is_approved_and_a_retry_debits_nothing_more(lab: Any, placement: str) -> None:
    phone = fresh_phone(lab, placement)
    paid = pay_remotely_with_se(lab, phone, AMOUNT, retry=True)
    assert (paid.outcome, paid.http_status, paid.response_code) == ("approved", 200, "00")
    assert paid.attempts[0].pay_mode == "se"
    assert paid.retry is not None
    assert paid.retry.approved
    assert paid.retry.paid_at == paid.attempts[0].paid_at
    assert paid.ledger_delta == -AMOUNT  # once, although the request was sent twice
    assert paid.ledger_entries == 1
    assert paid.order_status == "paid"


@pytest.mark.requirements("REQ-RP-SE-01")
@pytest.mark.needs("se-ese", "backend")
def test_se_mode_wrong_pin_is_refused_on_the_phone_without_debit(lab: Any) -> None:
    phone = fresh_phone(lab, "ese")
    refused = pay_remotely_with_se(lab, phone, 5_00, pin="0000")
    assert refused.outcome == "pin-wrong"
    assert refused.attempts[0].pin_tries_left == 2
    assert (refused.ledger_delta, refused.ledger_entries, refused.order_status) == (0, 0, "created")
    paid = pay_remotely_with_se(lab, phone, 5_00)  # the right PIN on the next order pays
    assert paid.approved
    assert paid.ledger_delta == -5_00


@pytest.mark.requirements("REQ-RP-NONSE-01")
@pytest.mark.needs("se-sim", "backend")
def test_sms_code_mode_with_the_right_code_pays_once(lab: Any) -> None:
    paid = pay_remotely_with_sms_code(lab, fresh_phone(lab, "sim"), AMOUNT, code="right")
    assert (paid.outcome, paid.http_status, paid.response_code) == ("approved", 200, "00")
    assert paid.attempts[0].pay_mode == "sms"
    assert paid.retry is not None
    assert paid.retry.approved  # the same request again: the same paid order
    assert paid.retry.paid_at == paid.attempts[0].paid_at
    assert (paid.ledger_delta, paid.ledger_entries, paid.order_status) == (-AMOUNT, 1, "paid")


@pytest.mark.requirements("REQ-RP-NONSE-02")
@pytest.mark.needs("se-sim", "backend")
def test_sms_code_mode_wrong_code_is_refused_and_counts_a_try(lab: Any) -> None:
    refused = pay_remotely_with_sms_code(lab, fresh_phone(lab, "sim"), AMOUNT, code="wrong")
    assert (refused.outcome, refused.http_status) == ("wrong-code", 403)
    assert (refused.tries_left, refused.locked) == (lab.backend.config.remote_payment.otp_max_tries - 1, False)
    assert (refused.ledger_delta, refused.ledger_entries, refused.order_status) == (0, 0, "created")


@pytest.mark.requirements("REQ-RP-NONSE-03")
@pytest.mark.needs("se-sim", "backend")
def test_sms_code_mode_expired_code_is_refused(lab: Any) -> None:
    refused = pay_remotely_with_sms_code(lab, fresh_phone(lab, "sim"), AMOUNT, code="expired")
    assert (refused.outcome, refused.http_status) == ("code-expired", 410)
    assert (refused.ledger_delta, refused.ledger_entries, refused.order_status) == (0, 0, "created")


@pytest.mark.requirements("REQ-RP-NONSE-04")
@pytest.mark.needs("se-sim", "backend")
def test_sms_code_mode_exhausted_tries_lock_the_order_even_for_the_right_code(lab: Any) -> None:
    refused = pay_remotely_with_sms_code(lab, fresh_phone(lab, "sim"), AMOUNT, code="exhausted")
    tries = lab.backend.config.remote_payment.otp_max_tries
    assert [a.outcome.value for a in refused.attempts] == ["wrong-code"] * tries + ["code-locked"]
    assert [a.tries_left for a in refused.attempts[:tries]] == list(range(tries - 1, -1, -1))
    assert (refused.outcome, refused.http_status, refused.locked) == ("code-locked", 423, True)
    assert (refused.ledger_delta, refused.ledger_entries, refused.order_status) == (0, 0, "created")
