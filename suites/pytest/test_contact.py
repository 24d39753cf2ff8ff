"""Contact PBOC two-pass over the PC/SC contact reader, for every account kind, cards on a SIM-form SE (T=0).

First GENERATE AC (ARQC) -> 0200 through acquirer, switch and issuer -> EXTERNAL AUTHENTICATE with the
issuer's ARPC (tag 91) -> second GENERATE AC (TC). The issuer script half of the requirement (tag 72
executed after the second GENERATE AC) is proven by the e-cash load suite (test_ecash_load.py): a
purchase carries no script. Cards are pulled out of the reader before the second pass to prove the
terminal's reversal.

E-cash-only cards (pboc_ecash_only_sm4): the issuer verifies the ARQC and answers 40 (no online
account) with an ARPC over ARC "40"; the card authenticates it and ends with an AAC. Pulled before
completion, there is nothing to reverse (the authorisation was declined).
"""

from __future__ import annotations

from typing import Any

import pytest

from paylab.fixtures.scenarios import payments
from paylab.fixtures.scenarios.cards import KIND_REQUIREMENTS

KINDS = [pytest.param(kind, id=kind, marks=pytest.mark.requirements(req)) for kind, req in KIND_REQUIREMENTS.items()]
ONLINE = ("debit", "credit")

pytestmark = [pytest.mark.needs("pcsc-contact", "backend", "se-sim"), pytest.mark.requirements("REQ-SE-SIM-01")]


def _card(enrol: Any, kind: str) -> Any:
    if kind == "credit":
        return enrol(kind, balance=0, credit_limit=100_000, placement="sim")
    return enrol(kind, balance=100_000, placement="sim")


@pytest.mark.requirements("REQ-CT-TWOPASS-01", "REQ-DRV-PCSC-01")
@pytest.mark.parametrize("kind", KINDS)
def test_two_pass_with_arpc(lab: Any, enrol: Any, trace_path: Any, record_timing: Any, kind: str) -> None:
    card = _card(enrol, kind)
    trace_path("contact")
    result = payments.contact_two_pass(lab, card, 2_500)
    record_timing(result.tap_to_approval_ms)
    assert result.first_cid == 0x80  # first GENERATE AC: ARQC
    assert result.arpc
    assert result.issuer_authentication is True  # EXTERNAL AUTHENTICATE accepted the ARPC
    assert result.reversal_code is None
    assert result.ecash_balance_card == card.ecash_issued  # a purchase leaves e-cash alone
    if kind in ONLINE:
        assert (result.response_code, result.arc) == ("00", "00")
        assert (result.outcome, result.cid) == ("APPROVED", 0x40)  # second GENERATE AC: TC
        assert result.ledger_delta == -2_500
    else:
        assert (result.response_code, result.arc) == ("40", "40")
        assert (result.outcome, result.cid) == ("DECLINED", 0x00)  # AAC
        assert result.ledger_delta == 0


@pytest.mark.requirements("REQ-CL-REMOVAL-01", "REQ-DRV-PCSC-01")
@pytest.mark.parametrize("kind", KINDS)
def test_card_pulled_before_completion_is_reversed(lab: Any, enrol: Any, trace_path: Any, record_timing: Any,
                                                   kind: str) -> None:
    card = _card(enrol, kind)
    trace_path("contact")
    result = payments.removal_mid_tap(lab, card, 3_000, path="contact")
    record_timing(result.tap_to_approval_ms)
    assert result.removed
    assert result.outcome == "END_APPLICATION"
    assert not result.charged
    if kind in ONLINE:
        assert result.authorised == "00"
        assert result.reversal_code == "00"  # 0400 reason 98 undid the debit
    else:
        assert result.authorised == "40"
        assert result.reversal_code is None
    # the reader is usable again with the same card
    again = payments.contact_two_pass(lab, card, 1_000)
    assert again.issuer_authentication is True
