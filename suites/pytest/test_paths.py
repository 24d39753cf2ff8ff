"""One payment, three paths: the same test body through (a) the PC/SC contactless reader with the lab's
terminal kernel, (b) the nfcpy reader over the simulated air (UDP), (c) the POS simulator driven over
its serial ECR link — each approved online by the backend and debited in the ledger.

Cards are enrolled without e-cash, so the card itself asks for an ARQC on every path (no forcing: the
POS's kernel is not ours to configure). Also: a card lifted mid-tap on the POS path, and the same
online tap from an SE in each placement (SIM, microSD, eSE).

POS removal, what the POS really does: qPBOC needs the card only up to GPO; lifted while answering
GPO, the POS has no cryptogram, answers the ECR ``E1`` and sends no 0200 — so there is no
authorisation to reverse, and nothing is charged.
"""

from __future__ import annotations

from typing import Any

import pytest

from paylab.fixtures.scenarios import payments

PATHS = [
    pytest.param("pcsc", id="pcsc", marks=[pytest.mark.requirements("REQ-DRV-PCSC-01"),
                                           pytest.mark.needs("pcsc-contactless")]),
    pytest.param("nfc", id="nfc", marks=[pytest.mark.requirements("REQ-DRV-NFC-01"),
                                         pytest.mark.needs("nfc-reader", "nfc-emulator")]),
    pytest.param("pos", id="pos", marks=[pytest.mark.requirements("REQ-DRV-ECR-01"),
                                         pytest.mark.needs("pos", "nfc-emulator")]),
]
KINDS = [pytest.param("debit", marks=pytest.mark.requirements("REQ-ACCT-DEBIT-01")),
         pytest.param("credit", marks=pytest.mark.requirements("REQ-ACCT-CREDIT-01"))]
PLACEMENTS = [pytest.param(p, marks=[pytest.mark.requirements(req), pytest.mark.needs(f"se-{p}")])
              for p, req in (("sim", "REQ-SE-SIM-01"), ("microsd", "REQ-SE-MICROSD-01"), ("ese", "REQ-SE-ESE-01"))]

pytestmark = pytest.mark.needs("backend")


def _card(enrol: Any, kind: str, placement: str = "ese") -> Any:
    if kind == "credit":
        return enrol(kind, balance=0, credit_limit=100_000, ecash=0, placement=placement)
    return enrol(kind, balance=100_000, ecash=0, placement=placement)


def _code(result: Any) -> str | None:
    return result.result if isinstance(result, payments.PosSaleResult) else result.response_code


@pytest.mark.requirements("REQ-CL-ONLINE-01", "REQ-CL-OFFLINE-02")
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("path", PATHS)
def test_online_tap_approved_on_every_path(lab: Any, enrol: Any, trace_path: Any, record_timing: Any, path: str,
                                           kind: str) -> None:
    card = _card(enrol, kind)
    trace_path(path)
    result = payments.tap(lab, path, card, 2_345)
    record_timing(result.tap_to_approval_ms)
    assert result.approved, getattr(result, "text", None) or getattr(result, "field44", None)
    assert _code(result) == "00"
    assert result.ledger_delta == -2_345
    assert result.masked_pan == card.masked_pan
    assert not card.leaks_pan(repr(result))
    if isinstance(result, payments.PosSaleResult):
        assert not result.offline
        assert any(card.masked_pan in line for line in result.receipt)
        assert not card.leaks_pan(*result.receipt)
    else:
        assert result.arpc


@pytest.mark.requirements("REQ-CL-REMOVAL-01", "REQ-DRV-ECR-01")
@pytest.mark.needs("pos", "nfc-emulator")
@pytest.mark.parametrize("kind", KINDS)
def test_card_lifted_on_pos_charges_nothing(lab: Any, enrol: Any, trace_path: Any, record_timing: Any,
                                            kind: str) -> None:
    card = _card(enrol, kind)
    trace_path("pos")
    result = payments.removal_mid_tap(lab, card, 2_000, path="pos")
    record_timing(result.tap_to_approval_ms)
    assert result.removed
    assert result.pos_result == "E1"
    assert result.authorised is None  # no 0200 left the POS: nothing to reverse
    assert not result.charged
    again = payments.pos_sale(lab, card, 2_000)  # the POS is ready for the next tap
    assert (again.result, again.ledger_delta) == ("00", -2_000), again.text


@pytest.mark.requirements("REQ-CL-ONLINE-01", "REQ-DRV-PCSC-01", "REQ-ACCT-DEBIT-01")
@pytest.mark.needs("pcsc-contactless")
@pytest.mark.parametrize("placement", PLACEMENTS)
def test_online_tap_from_each_se_placement(lab: Any, enrol: Any, trace_path: Any, record_timing: Any,
                                           placement: str) -> None:
    card = _card(enrol, "debit", placement)
    trace_path("pcsc")
    result = payments.tap_pcsc(lab, card, 1_111)
    record_timing(result.tap_to_approval_ms)
    assert (result.response_code, result.arpc, result.ledger_delta) == ("00", True, -1_111)
    assert card.se.form_factor.name == placement
