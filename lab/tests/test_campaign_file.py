"""Campaign files are validated before anything runs; errors name file, line and field."""

import pytest

from paylab.lab.campaign.campaign_file import CampaignFileError, load_campaign

GOOD = """\
campaign: nightly
description: the whole matrix
rigs:
  - name: sim
  - capabilities: [pcsc-contactless, pos]
    count: 2
suites:
  - path: suites
    framework: pytest
    tags: "not slow"
    workers: 2
  - path: suites
    framework: robot
repeats: 2
retry: {infra: 1, product: 0}
lease: {ttl_s: 30, heartbeat_s: 5}
report: {allure: false, previous_runs: 3}
"""


def write(tmp_path, text):
    (tmp_path / "suites").mkdir(exist_ok=True)
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_good_campaign(tmp_path):
    c = load_campaign(write(tmp_path, GOOD), base=tmp_path)
    assert c.name == "nightly"
    assert c.rigs[0].name == "sim"
    assert c.rigs[1].capabilities == ("pcsc-contactless", "pos")
    assert c.rigs[1].count == 2
    assert [s.framework for s in c.suites] == ["pytest", "robot"]
    assert c.suites[0].workers == 2
    assert c.suites[0].tags == "not slow"
    assert c.repeats == 2
    assert c.retry.infra == 1
    assert c.lease_ttl_s == 30
    assert c.allure is False
    assert len(c.sha256) == 64


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("framework: robot", "framework: junit", r"c.yaml:13: suites\[1\].framework: must be one of pytest, robot"),
    ("  - name: sim", "  - name: sim\n    capabilities: [x]", r"c.yaml:4: rigs\[0\]: give exactly one"),
    ("    workers: 2", "    workers: 0", r"c.yaml:11: suites\[0\].workers: 0 is outside 1..64"),
    ("repeats: 2", "repeat: 2", r"c.yaml:14: repeat: unknown field"),
    ("lease: {ttl_s: 30, heartbeat_s: 5}", "lease: {ttl_s: 30, heartbeat_s: 50}",
     r"c.yaml:16: lease.heartbeat_s: must be shorter than ttl_s"),
    ("  - path: suites\n    framework: robot", "  - path: nowhere\n    framework: robot",
     r"c.yaml:12: suites\[1\].path: nowhere does not exist"),
    ("campaign: nightly", "campaign: night ly", r"c.yaml:1: campaign: 'night ly' may only hold"),
    ("campaign: nightly\n", "", r"c.yaml:\d+: \(document\): missing required field 'campaign'"),
    ("retry: {infra: 1, product: 0}", "retry: {infra: 1, infra: 2}", r"c.yaml:15: retry.infra: duplicate key"),
])
def test_errors_name_file_line_and_field(tmp_path, old, new, expected):
    assert old in GOOD
    with pytest.raises(CampaignFileError, match=expected):
        load_campaign(write(tmp_path, GOOD.replace(old, new, 1)), base=tmp_path)


def test_unreadable_file(tmp_path):
    with pytest.raises(CampaignFileError, match="cannot read"):
        load_campaign(tmp_path / "missing.yaml")
