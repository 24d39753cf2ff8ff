"""Contactless qPBOC over the PC/SC contactless reader, for every account kind (debit, credit, e-cash only).

Each test enrols a fresh card (new PAN, its own accounts and SE) and taps it through the lab's
ContactlessKernel; online legs go acquirer -> switch -> issuer over ISO 8583 (terminal PAYLAB02).

What a pure e-cash card (pboc_ecash_only_sm4) really does where a debit/credit card would be
authorised or declined online — asserted as such, not skipped:

* it has no online account: a forced online tap is answered **40** (function not supported, field 44
  ``NO ACCOUNT``) with the ARQC verified (ARPC present) and nothing debited — also for the
  insufficient-funds and over-limit cases (the issuer's account check comes before limits and funds);
* its over-limit case is the card's own single-transaction limit 9F78: above it the card declines
  offline (AAC) without going online;
* a bad cryptogram is **05** for every kind (the cryptogram check comes first);
* when its e-cash does not cover the amount it does not go online: the card declines offline (AAC);
* lifted while answering GPO, it has already debited its e-cash (9F79) although the terminal never got
  the TC (a torn offline tap): the ledger is untouched, the card balance is not.
"""

from __future__ import annotations

from typing import Any

import pytest

from paylab.fixtures.scenarios import payments
from paylab.fixtures.scenarios.cards import KIND_REQUIREMENTS

KINDS = [pytest.param(kind, id=kind, marks=pytest.mark.requirements(req)) for kind, req in KIND_REQUIREMENTS.items()]
ONLINE = ("debit", "credit")

pytestmark = pytest.mark.needs("pcsc-contactless", "backend", "se-ese")


def _funded(enrol: Any, kind: str, **kwargs: Any) -> Any:
    """A card with money online: debit balance, or a credit line on an empty credit account."""
    if kind == "credit":
        kwargs.setdefault("balance", 0)
        kwargs.setdefault("credit_limit", kwargs.pop("funds", 100_000))
    else:
        kwargs.setdefault("balance", kwargs.pop("funds", 100_000))
        kwargs.pop("funds", None)
    return enrol(kind, **kwargs)


@pytest.mark.requirements("REQ-CL-ONLINE-01", "REQ-DRV-PCSC-01")
@pytest.mark.parametrize("kind", KINDS)
def test_online_tap_is_approved(lab: Any, enrol: Any, trace_path: Any, record_timing: Any, kind: str) -> None:
    card = _funded(enrol, kind)
    trace_path("pcsc")
    result = payments.tap_pcsc(lab, card, 1_234, online=True)
    record_timing(result.tap_to_approval_ms)
    assert result.outcome == "ONLINE_REQUEST"
    assert result.cid == 0x80
    assert result.arpc  # the ARQC verified: tag 91 came back
    assert not card.leaks_pan(repr(result))
    if kind in ONLINE:
        assert result.response_code == "00", result.field44
        assert result.ledger_delta == -1_234
    else:
        assert (result.response_code, result.field44) == ("40", "NO ACCOUNT")
        assert card.ecash_balance_backend() == card.ecash_issued


@pytest.mark.requirements("REQ-CL-ONLINE-02")
@pytest.mark.parametrize("kind", KINDS)
def test_insufficient_funds_declined(lab: Any, enrol: Any, trace_path: Any, record_timing: Any, kind: str) -> None:
    card = _funded(enrol, kind, funds=500, ecash=0)
    trace_path("pcsc")
    result = payments.tap_pcsc(lab, card, 1_000, online=True)
    record_timing(result.tap_to_approval_ms)
    assert not result.approved
    assert result.ledger_delta == 0
    if kind in ONLINE:
        assert result.response_code == "51"  # debit balance / credit line too short
    else:
        assert result.response_code == "40"
        offline = payments.tap_pcsc(lab, card, 1_000)  # e-cash short: the pure e-cash card declines itself
        assert (offline.outcome, offline.cid, offline.online) == ("DECLINED", 0x00, False)


@pytest.mark.requirements("REQ-CL-ONLINE-03")
@pytest.mark.parametrize("kind", KINDS)
def test_over_daily_limit_declined(lab: Any, enrol: Any, trace_path: Any, record_timing: Any, kind: str) -> None:
    card = _funded(enrol, kind, daily_limit=500, ecash=40_000)  # e-cash well above the card's 9F78
    trace_path("pcsc")
    result = payments.tap_pcsc(lab, card, 1_000, online=True)
    record_timing(result.tap_to_approval_ms)
    assert not result.approved
    assert result.ledger_delta == 0
    if kind in ONLINE:
        assert (result.response_code, result.field44) == ("61", "DAILY LIMIT")
    else:
        assert result.response_code == "40"
        # its own limit is the card's single-transaction limit 9F78: above it the card declines offline
        over = card.ecash_single_limit + 1_000
        offline = payments.tap_pcsc(lab, card, over)
        assert (offline.outcome, offline.cid, offline.online) == ("DECLINED", 0x00, False)
        assert payments.ecash_balance_on_card(lab, card) == card.ecash_issued


@pytest.mark.requirements("REQ-CL-ONLINE-04")
@pytest.mark.parametrize("kind", KINDS)
def test_bad_cryptogram_declined(lab: Any, enrol: Any, trace_path: Any, record_timing: Any, kind: str) -> None:
    card = _funded(enrol, kind)
    flipper = payments.ArqcFlipper(card.se)
    trace_path("pcsc")
    result = payments.tap_pcsc(lab, card, 1_000, online=True, present=flipper)
    record_timing(result.tap_to_approval_ms)
    assert flipper.flipped == 1
    assert (result.response_code, result.field44) == ("05", "BAD CRYPTOGRAM")
    assert not result.arpc  # no ARPC for a cryptogram that did not verify
    assert result.ledger_delta == 0
    assert card.ecash_balance_backend() == card.ecash_issued


@pytest.mark.requirements("REQ-CL-OFFLINE-01", "REQ-ACCT-ECASH-01")
@pytest.mark.parametrize("kind", KINDS)
def test_offline_ecash_approved_with_fdda(lab: Any, enrol: Any, trace_path: Any, record_timing: Any,
                                          kind: str) -> None:
    card = _funded(enrol, kind, ecash=5_000)
    trace_path("pcsc")
    result = payments.tap_pcsc(lab, card, 880)
    record_timing(result.tap_to_approval_ms)
    assert (result.outcome, result.cid, result.online) == ("APPROVED", 0x40, False)
    assert (result.oda_method, result.oda_ok) == ("fDDA", True)
    assert result.ecash_balance == 5_000 - 880
    assert payments.ecash_balance_on_card(lab, card) == 5_000 - 880  # GET DATA 9F79
    assert result.ledger_delta == 0  # offline: the issuer has not seen it


@pytest.mark.requirements("REQ-CL-OFFLINE-02")
@pytest.mark.parametrize("kind", KINDS)
def test_ecash_short_goes_online(lab: Any, enrol: Any, trace_path: Any, record_timing: Any, kind: str) -> None:
    card = _funded(enrol, kind, ecash=1_000)
    trace_path("pcsc")
    result = payments.tap_pcsc(lab, card, 1_500)  # no force: the card decides
    record_timing(result.tap_to_approval_ms)
    assert payments.ecash_balance_on_card(lab, card) == 1_000
    if kind in ONLINE:
        assert (result.outcome, result.cid, result.online) == ("ONLINE_REQUEST", 0x80, True)
        assert result.response_code == "00"
        assert result.ledger_delta == -1_500
    else:  # a pure e-cash card is not online-capable: it declines offline
        assert (result.outcome, result.cid, result.online) == ("DECLINED", 0x00, False)
        assert result.ledger_delta == 0


@pytest.mark.requirements("REQ-CL-REMOVAL-01", "REQ-DRV-NFC-01")
@pytest.mark.needs("nfc-reader", "nfc-emulator")
@pytest.mark.parametrize("kind", KINDS)
def test_card_removed_mid_tap_charges_nothing(lab: Any, enrol: Any, trace_path: Any, record_timing: Any,
                                              kind: str) -> None:
    # debit/credit without e-cash would go online; the pure e-cash card would approve offline
    card = _funded(enrol, kind, ecash=0 if kind in ONLINE else 5_000)
    trace_path("nfc")
    result = payments.removal_mid_tap(lab, card, 1_200, path="nfc")
    record_timing(result.tap_to_approval_ms)
    assert result.removed
    assert result.outcome == "END_APPLICATION"
    assert result.authorised is None  # no cryptogram reached the terminal: no 0200, nothing to reverse
    assert not result.charged
    again = payments.tap_nfc(lab, card, 1_200)  # the same card tapped again is served normally
    assert again.approved
    assert again.online is (kind in ONLINE)
    if kind not in ONLINE:
        # what the card really does: the lifted tap's GPO already debited 9F79 (PBOC debits e-cash at GPO),
        # though the terminal got no TC (a torn offline tap; nothing reaches the issuer either way)
        assert payments.ecash_balance_on_card(lab, card) == 5_000 - 1_200 - 1_200
