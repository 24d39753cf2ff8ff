"""E-cash load (圈存) over the contact interface, for every account kind (cards on a SIM-form SE).

9C = 60 and processing code 600000: the issuer verifies the ARQC and the card's balance MAC (IAD
issuer discretionary data), moves the amount from the cardholder account to the card's e-cash float,
and answers with the script ``04 DA 9F79 0A <new balance> <MAC>`` in template 72, which the card runs
after the second GENERATE AC; GET DATA 9F79 reads the new balance.

A pure e-cash card (pboc_ecash_only_sm4) has no account to load from: the issuer answers 40 and
sends no script; balances stay as they were.
"""

from __future__ import annotations

from typing import Any

import pytest

from paylab.fixtures.scenarios import payments
from paylab.fixtures.scenarios.cards import KIND_REQUIREMENTS

KINDS = [pytest.param(kind, id=kind, marks=pytest.mark.requirements(req)) for kind, req in KIND_REQUIREMENTS.items()]
ONLINE = ("debit", "credit")
SCRIPTED = [pytest.param(kind, id=kind, marks=[pytest.mark.requirements(req)]
                         + ([pytest.mark.requirements("REQ-CT-SCRIPT-01")] if kind in ONLINE else []))
            for kind, req in KIND_REQUIREMENTS.items()]
"""KINDS, plus REQ-CT-SCRIPT-01 where the issuer sends the PUT DATA script (the online kinds)."""

pytestmark = pytest.mark.needs("pcsc-contact", "backend", "se-sim")


def _card(enrol: Any, kind: str, ecash: int) -> Any:
    if kind == "credit":
        return enrol(kind, balance=0, credit_limit=100_000, ecash=ecash, placement="sim")
    return enrol(kind, balance=100_000, ecash=ecash, placement="sim")


@pytest.mark.requirements("REQ-ECASH-LOAD-01", "REQ-CT-TWOPASS-01")
@pytest.mark.parametrize("kind", SCRIPTED)
def test_load_sets_the_card_balance(lab: Any, enrol: Any, trace_path: Any, record_timing: Any, kind: str) -> None:
    card = _card(enrol, kind, ecash=2_000)
    trace_path("contact")
    result = payments.load_ecash(lab, card, 5_000)
    assert result.contact is not None
    record_timing(result.contact.tap_to_approval_ms)
    assert result.card_before == 2_000
    assert result.contact.issuer_authentication is True
    if kind in ONLINE:
        assert result.response_code == "00"
        assert result.contact.outcome == "APPROVED"
        assert result.scripts == 1  # PUT DATA 9F79 in template 72
        assert result.script_results[:2] == "20"  # EMV Book 4 A5: script performed, no error
        assert result.card_after == 7_000  # GET DATA 9F79
        assert (result.float_before, result.float_after) == (2_000, 7_000)
        assert result.account_delta == -5_000
    else:
        assert result.response_code == "40"
        assert result.scripts == 0
        assert result.card_after == 2_000
        assert result.float_after == result.float_before == 2_000


@pytest.mark.requirements("REQ-ECASH-LOAD-01")
@pytest.mark.parametrize("kind", [p for p in KINDS if p.values[0] in ONLINE])
def test_load_above_balance_limit_declined(lab: Any, enrol: Any, trace_path: Any, record_timing: Any,
                                           kind: str) -> None:
    card = _card(enrol, kind, ecash=card_limit(kind) - 1_000)
    trace_path("contact")
    result = payments.load_ecash(lab, card, 5_000)
    assert result.contact is not None
    record_timing(result.contact.tap_to_approval_ms)
    assert result.response_code == "61"  # the new balance would pass 9F77
    assert result.scripts == 0
    assert result.card_after == result.card_before
    assert result.account_delta == 0


@pytest.mark.requirements("REQ-ECASH-LOAD-01", "REQ-CL-OFFLINE-01")
@pytest.mark.needs("pcsc-contactless")
def test_loaded_balance_pays_offline(lab: Any, enrol: Any, trace_path: Any, record_timing: Any) -> None:
    card = _card(enrol, "debit", ecash=0)
    trace_path("contact")
    trace_path("pcsc")
    assert payments.load_ecash(lab, card, 3_000).card_after == 3_000
    tap = payments.tap_pcsc(lab, card, 1_800)
    record_timing(tap.tap_to_approval_ms)
    assert (tap.outcome, tap.oda_ok) == ("APPROVED", True)
    assert payments.ecash_balance_on_card(lab, card) == 1_200


def card_limit(kind: str) -> int:
    """The e-cash balance limit 9F77 of the kind's bundled profile (fen)."""
    from paylab.fixtures.scenarios.cards import KIND_PROFILES
    from paylab.lab import profiles

    return int(profiles.load_bundled(KIND_PROFILES[kind]).ecash.balance_limit)
