"""The requirement catalogue, the campaign record (JSON round trip) and the decision rules."""

import json

import pytest

from paylab.lab.report.record import (
    Attachment,
    CampaignFile,
    CampaignRecord,
    CatalogueError,
    DecisionRule,
    Deviation,
    EquipmentEntry,
    InfraErrorEntry,
    RecordError,
    Requirement,
    RuleError,
    TestResult,
    collect_software_manifest,
    evaluate,
    load_requirements,
    summarize,
    verdict_for,
)

# --- catalogue ----------------------------------------------------------------------------------


def test_bundled_catalogue_covers_the_brief():
    reqs = load_requirements()
    ids = {r.id for r in reqs}
    assert len(ids) == len(reqs)
    for placement in ("SIM", "MICROSD", "ESE"):
        assert f"REQ-SE-{placement}-01" in ids
        for mode in ("DIRECT", "UNIONPAY", "MTPS"):
            assert f"REQ-ISSUE-{placement}-{mode}-01" in ids
    for mode in ("DIRECT", "UNIONPAY", "MTPS"):
        assert f"REQ-COOP-{mode}-01" in ids
    for kind in ("DEBIT", "CREDIT", "ECASH"):
        assert f"REQ-ACCT-{kind}-01" in ids
    expected = {
        "REQ-CL-ONLINE-01", "REQ-CL-ONLINE-02", "REQ-CL-ONLINE-03", "REQ-CL-ONLINE-04", "REQ-CL-OFFLINE-01",
        "REQ-CL-OFFLINE-02", "REQ-CL-REMOVAL-01", "REQ-CT-TWOPASS-01", "REQ-ECASH-LOAD-01", "REQ-RP-SE-01",
        "REQ-RP-NONSE-01", "REQ-RP-NONSE-02", "REQ-RP-NONSE-03", "REQ-RP-NONSE-04", "REQ-OTA-SMSPP-01",
        "REQ-OTA-HTTP-01", "REQ-OTA-SEC-01", "REQ-OTA-SEC-02", "REQ-LOST-01", "REQ-DRV-PCSC-01",
        "REQ-DRV-NFC-01", "REQ-DRV-ECR-01",
    }
    assert expected <= ids
    for r in reqs:
        assert r.title
        assert r.text
        assert r.source
        assert r.line
        DecisionRule.parse(r.rule)
    by_id = {r.id: r for r in reqs}
    assert by_id["REQ-CL-ONLINE-01"].decision_rule == DecisionRule("all-pass-min", 3)


GOOD_ENTRY = """\
  - id: REQ-A-01
    title: A
    text: text
    source: brief 1
    rule: all-pass
"""


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (GOOD_ENTRY.replace("rule: all-pass", "rule: most-pass"), ":7: requirements[0].rule: unknown decision rule"),
        (GOOD_ENTRY.replace("id: REQ-A-01", "id: req-a"), ":3: requirements[0].id: 'req-a' is not an id"),
        (GOOD_ENTRY.replace("    title: A\n", ""), ":3: requirements[0]: field 'title' missing"),
        (GOOD_ENTRY.replace("text: text", "text: 12"), ":5: requirements[0].text: must be a non-empty string"),
        (GOOD_ENTRY + "    owner: me\n", ":8: requirements[0].owner: unknown field"),
        (GOOD_ENTRY + GOOD_ENTRY, ":8: requirements[1].id: duplicate id REQ-A-01"),
        (GOOD_ENTRY.replace("rule: all-pass", "rule: all-pass-min:0"), ":7: requirements[0].rule"),
    ],
)
def test_bad_catalogue_names_file_line_field(tmp_path, body, where):
    path = tmp_path / "reqs.yaml"
    path.write_text("version: 1\nrequirements:\n" + body)
    with pytest.raises(CatalogueError) as info:
        load_requirements(path)
    assert str(info.value).startswith(str(path) + where), str(info.value)


def test_bad_catalogue_document(tmp_path):
    path = tmp_path / "reqs.yaml"
    path.write_text("version: 2\nrequirements: []\n")
    with pytest.raises(CatalogueError, match=r"reqs.yaml:1: version: must be 1"):
        load_requirements(path)
    path.write_text("version: 1\nrequirements: [\n")
    with pytest.raises(CatalogueError, match=r"reqs.yaml:\d+: \(document\): not valid YAML"):
        load_requirements(path)


def test_rule_parsing():
    assert str(DecisionRule.parse("all-pass-min:12")) == "all-pass-min:12"
    assert DecisionRule.parse("any-fail-is-fail").minimum == 1
    for bad in ("all-pass-min", "all-pass-min:x", "ALL-PASS", ""):
        with pytest.raises(RuleError):
            DecisionRule.parse(bad)


# --- decision rules -----------------------------------------------------------------------------

REQ = Requirement("REQ-T-01", "t", "text", "src", "all-pass")


def result(n, verdict="passed", category="none", reqs=("REQ-T-01",)):
    return TestResult(id=f"t{n}", name=f"t{n}", requirement_ids=list(reqs), verdict=verdict, category=category)


@pytest.mark.parametrize(
    ("rule", "results", "verdict"),
    [
        ("all-pass", [], "not-covered"),
        ("all-pass", [result(1, reqs=("REQ-OTHER-01",))], "not-covered"),
        ("all-pass", [result(1), result(2)], "pass"),
        ("all-pass", [result(1), result(2, "failed", "product")], "fail"),
        ("all-pass", [result(1), result(2, "error", "none")], "fail"),  # an error not blamed on infra
        ("all-pass", [result(1), result(2, "error", "infra")], "inconclusive"),
        ("all-pass", [result(1), result(2, "not-run", "infra")], "inconclusive"),
        ("all-pass", [result(1), result(2, "skipped")], "inconclusive"),
        ("all-pass-min:3", [result(1), result(2)], "inconclusive"),
        ("all-pass-min:3", [result(1), result(2), result(3)], "pass"),
        ("all-pass-min:3", [result(1), result(2), result(3, "failed", "product")], "fail"),
        ("any-fail-is-fail", [result(1), result(2, "not-run", "infra")], "pass"),
        ("any-fail-is-fail", [result(1, "skipped")], "inconclusive"),
        ("any-fail-is-fail", [result(1), result(2, "failed", "product")], "fail"),
    ],
)
def test_decision_rules(rule, results, verdict):
    req = Requirement("REQ-T-01", "t", "text", "src", rule)
    assert verdict_for(req, results) == verdict


def test_outcome_carries_evidence():
    out = evaluate(REQ, [result(1), result(2, "not-run", "infra"), result(3, reqs=())])
    assert out.verdict == "inconclusive"
    assert [t.id for t in out.tests] == ["t1", "t2"]
    assert out.passed == 1
    assert out.not_passed == 1
    assert "did not pass" in out.reason


# --- record JSON --------------------------------------------------------------------------------


def full_record():
    return CampaignRecord(
        id="nightly-20261126",
        name="nightly",
        started="2026-11-26T00:00:00+00:00",
        finished="2026-11-26T00:05:00+00:00",
        scope="whole matrix on rig sim",
        campaign_file=CampaignFile("campaigns/nightly.yaml", "ab" * 32, "suites: [all]\n"),
        rigs=["sim"],
        results=[
            TestResult(id="suites/test_cl.py::test_online[debit]", name="online debit", suite="contactless",
                       rig="sim", requirement_ids=["REQ-CL-ONLINE-01"], verdict="passed", attempts=1,
                       duration_ms=412.0, tap_to_approval_ms=301.5,
                       trace=[{"timestamp": 1.0, "direction": "CR", "command": "00A4040000", "response": "9000",
                               "masked": True}],
                       iso8583=[{"mti": "0200", "fields": {"2": "622848******0010"}}],
                       attachments=[Attachment("screenshot", "shots/1.png", "00" * 32, "image/png")]),
            TestResult(id="Remote.Wrong Code", name="Wrong Code", framework="robot", rig="sim",
                       requirement_ids=["REQ-RP-NONSE-02"], verdict="error", category="infra", attempts=3,
                       message="pcscd down", trace="traces/2.jsonl"),
        ],
        requirements=[Requirement("REQ-CL-ONLINE-01", "t", "x", "s", "all-pass-min:3")],
        equipment=[EquipmentEntry("reader", "ACS ACR1252", vendor="ACS", serial="RR123", firmware="1.08",
                                  calibration_date="2026-01-01", calibration_due="2027-01-01")],
        software=collect_software_manifest(),
        deviations=[Deviation("DEV-1", "microSD rig absent", ["REQ-SE-MICROSD-01"])],
        infra_errors=[InfraErrorEntry("host-lost", "ssh closed", rig="bench-2", at="2026-11-26T00:03:00+00:00")],
    )


def test_record_round_trip(tmp_path):
    record = full_record()
    again = CampaignRecord.from_json(record.to_json())
    assert again == record
    path = record.save(tmp_path / "record.json")
    assert CampaignRecord.load(path) == record
    assert json.loads(path.read_text())["format"] == "paylab-campaign-record/1"
    assert record.software.python
    assert record.software.packages["cryptography"]


def test_record_errors_name_the_field():
    data = full_record().to_dict()
    data["results"][1]["verdict"] = "flaky"
    with pytest.raises(RecordError, match=r"results\[1\].*verdict 'flaky'"):
        CampaignRecord.from_dict(data)
    data = full_record().to_dict()
    data["equipment"][0]["colour"] = "red"
    with pytest.raises(RecordError, match=r"equipment\[0\]: unknown field\(s\) colour"):
        CampaignRecord.from_dict(data)
    with pytest.raises(RecordError, match="not valid JSON"):
        CampaignRecord.from_json("{")


def test_summary():
    s = summarize(full_record())
    assert (s.total, s.passed, s.infra_errors, s.product_failures) == (2, 1, 1, 0)
    assert s.pass_rate == 0.5
    assert s.duration_s == 300.0


def test_campaign_file_from_path(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("suites: [x]\n")
    cf = CampaignFile.from_path(path)
    assert cf.content == "suites: [x]\n"
    assert len(cf.sha256) == 64
