"""OTA security: a replayed SCP80 packet and one with a wrong cryptographic checksum are rejected by the
SIM and change nothing; a scripted SCP03 session over HTTP remote administration with an altered C-MAC is
refused by the security domain (ETSI TS 102 225 clause 5; GP Amendment B / D; domain brief section 4).
Each attack carries a state-changing script (INSTALL of a security domain), so "not executed" is read
on the card, and a genuine delivery of the same script shows it would have run.
"""

from __future__ import annotations

from typing import Any

import pytest

from paylab.fixtures.scenarios.ota import bad_mac_http_admin, replay_sms_pp_packet, wrong_mac_sms_pp_packet

COUNTER_LOW, CC_FAILED = 0x02, 0x01


@pytest.mark.requirements("REQ-OTA-SEC-01", "REQ-OTA-SMSPP-01")
@pytest.mark.needs("se-sim", "backend")
def test_replayed_sms_pp_packet_is_rejected_and_not_executed(lab: Any) -> None:
    result = replay_sms_pp_packet(lab)
    assert result.genuine.ok
    assert result.genuine.sws == (0x9000,)
    assert result.probe_present_after_genuine  # the genuine packet did create the domain
    assert result.attack.status == COUNTER_LOW
    assert result.attack.sws == ()
    assert not result.executed
    assert result.counter_after == result.counter_before
    assert result.handset.se.faults == []


@pytest.mark.requirements("REQ-OTA-SEC-02", "REQ-OTA-SMSPP-01")
@pytest.mark.needs("se-sim", "backend")
def test_sms_pp_packet_with_a_wrong_checksum_is_rejected_and_not_executed(lab: Any) -> None:
    result = wrong_mac_sms_pp_packet(lab)
    assert result.attack.status == CC_FAILED
    assert result.attack.sws == ()
    assert not result.executed
    assert result.counter_after == result.counter_before  # the counter was not consumed
    # the genuine packet, same counter, is accepted afterwards and runs
    assert result.genuine.ok
    assert result.genuine.sws == (0x9000,)
    assert result.probe_present_after_genuine
    assert result.handset.se.faults == []


@pytest.mark.parametrize("placement", [
    pytest.param("ese", marks=pytest.mark.needs("se-ese", "backend")),
    pytest.param("microsd", marks=pytest.mark.needs("se-microsd", "backend")),
])
@pytest.mark.requirements("REQ-OTA-SEC-02", "REQ-OTA-HTTP-01")
def test_http_admin_script_with_a_bad_scp03_mac_is_refused(lab: Any, placement: str) -> None:
    result = bad_mac_http_admin(lab, placement)
    assert result.attack_refused_sw == 0x6982  # security status not satisfied
    assert result.attack_script_status == "security-error"
    assert not result.executed
    assert result.genuine_script_status == "ok"
    assert result.probe_present_after_genuine
    assert result.handset.se.faults == []
