"""The auditor report: sections, self-contained (no URL), PAN masked and keys absent even when the
record carries unmasked data, traces from JSONL files, capped trace count."""

import io
import re
from dataclasses import asdict

import pytest

from paylab.lab.protocol import tlv
from paylab.lab.protocol.gp.keys import GP_DEFAULT_TEST_KEY
from paylab.lab.protocol.iso8583 import encode_message, purchase_request
from paylab.lab.protocol.trace import TraceRecord, TraceWriter
from paylab.lab.report.auditor import render_auditor_report, report_id
from paylab.lab.report.masking_scan import scan_for_secrets
from paylab.lab.report.record import (
    CampaignFile,
    CampaignRecord,
    Deviation,
    EquipmentEntry,
    InfraErrorEntry,
    TestResult,
    collect_software_manifest,
    load_requirements,
)

PAN = "6228488800000010"  # test PAN of profile pboc_debit_ecash_sm4
TRACK2 = PAN + "D30122201234567F"
TMK = "0123456789ABCDEFFEDCBA9876543210"  # TEST TMK of PAYLAB01
SECTION_IDS = ("summary", "traceability", "results", "product-failures", "apdu-traces", "equipment", "software",
               "deviations", "infra-errors", "timing", "trends")


def unmasked_trace():
    """Exchanges revealing a PAN, track 2 and a key (as a careless driver might record them)."""
    record_70 = tlv.tlv(0x70, tlv.tlv(0x5A, bytes.fromhex(PAN)) + tlv.tlv(0x57, bytes.fromhex(TRACK2)))
    put_key = bytes.fromhex("80D8000113") + bytes([0x80, 0x10]) + GP_DEFAULT_TEST_KEY + bytes.fromhex("03")
    records = [
        TraceRecord.from_apdus(10.0, command=bytes.fromhex("00B2010C00"), response=record_70 + b"\x90\x00",
                               transport="pcsc", duration_ms=4.2),
        TraceRecord.from_apdus(10.1, command=put_key, response=b"\x90\x00", transport="pcsc"),
    ]
    buf = io.StringIO()
    revealed = [TraceWriter(buf, reveal=True).write(r) for r in records]  # trees decoded, nothing masked
    out = [asdict(r) for r in revealed]
    out.append({"timestamp": 10.2, "direction": "CR", "command": "80CA9F7900", "response": "9F79060000000387879000",
                "masked": True, "response_tlv": [{"tag": "5A", "name": "PAN", "length": 8, "value": PAN}]})
    return out


def make_record(tmp_path, n_extra=0):
    jsonl = tmp_path / "traces" / "t2.jsonl"
    jsonl.parent.mkdir(parents=True, exist_ok=True)
    with jsonl.open("w") as stream:
        writer = TraceWriter(stream)  # masked at write time, as drivers do
        writer.write(TraceRecord.from_apdus(1.0, command=bytes.fromhex("00A404000E325041592E5359532E444446303100"),
                                            response=bytes.fromhex("6F0A840E9000")[:4] + b"\x90\x00"))
    iso_raw = encode_message(purchase_request(pan=PAN, amount=100, stan=1, terminal_id="PAYLAB01",
                                              merchant_id="898440154110001", track2=PAN + "D3012220"),
                             "cup-pos").hex()
    results = [
        TestResult(id="suites/test_cl.py::test_online[debit]", name="online debit", suite="contactless", rig="sim",
                   requirement_ids=["REQ-CL-ONLINE-01", "REQ-ACCT-DEBIT-01"], verdict="failed", category="product",
                   duration_ms=420.0, tap_to_approval_ms=310.0, message=f"card {PAN} declined <script>x</script>",
                   trace=unmasked_trace(),
                   iso8583=[{"mti": "0200", "direction": "request", "dialect": "cup-pos",
                             "fields": {"2": PAN, "35": PAN + "D3012220", "52": "0011223344556677", "4": "000000000100",
                                        "62": TMK}},
                            {"raw": iso_raw, "dialect": "cup-pos", "direction": "request"}]),
        TestResult(id="suites/test_cl.py::test_select", name="select", rig="sim", requirement_ids=["REQ-DRV-PCSC-01"],
                   verdict="passed", duration_ms=50.0, tap_to_approval_ms=280.0, trace="traces/t2.jsonl"),
        TestResult(id="Remote.Expired Code", name="Expired Code", framework="robot", rig="bench-2",
                   requirement_ids=["REQ-RP-NONSE-03", "REQ-NOT-IN-CATALOGUE-01"], verdict="error", category="infra",
                   attempts=3, message="ssh connection lost"),
    ]
    results += [
        TestResult(id=f"suites/test_many.py::test_{i}", name=f"many {i}", rig="sim", requirement_ids=["REQ-LOST-01"],
                   verdict="passed", tap_to_approval_ms=250.0 + i, trace=[{"timestamp": 1.0, "direction": "C",
                                                                           "command": "00A4040000"}])
        for i in range(n_extra)
    ]
    return CampaignRecord(
        id="nightly-1", name="nightly <b>campaign</b>", started="2026-11-26T01:00:00+00:00",
        finished="2026-11-26T01:04:00+00:00", scope="matrix on sim and bench-2",
        campaign_file=CampaignFile("campaigns/nightly.yaml", "cd" * 32, "suites: [contactless]\nrigs: [sim]\n"),
        rigs=["sim", "bench-2"], results=results, requirements=load_requirements(),
        equipment=[EquipmentEntry("reader", "ACS ACR1252U", vendor="ACS", model="ACR1252U", serial="RR-0042",
                                  firmware="1.08", rig="sim", calibration_date="2026-01-10",
                                  calibration_due="2027-01-10"),
                   EquipmentEntry("card-image", "eSE #1", card_profile="pboc_debit_ecash_sm4", image_sha256="ef" * 32)],
        software=collect_software_manifest(),
        deviations=[Deviation("DEV-7", "no microSD rig tonight", ["REQ-SE-MICROSD-01"], approved_by="lab lead")],
        infra_errors=[InfraErrorEntry("host-lost", "bench-2 went away", rig="bench-2", test_id="Remote.Expired Code")],
    )


@pytest.fixture
def rendered(tmp_path):
    record = make_record(tmp_path)
    previous = make_record(tmp_path)
    previous.id, previous.started, previous.finished = "nightly-0", "2026-11-25T01:00:00+00:00", \
        "2026-11-25T01:09:00+00:00"
    path = render_auditor_report(record, tmp_path, previous=[previous])
    return record, path, path.read_text(encoding="utf-8")


def test_sections_present(rendered):
    record, path, html = rendered
    assert path.name == "auditor-report.html"
    for section in SECTION_IDS:
        assert f'id="{section}"' in html, section
    assert report_id(record) in html
    assert "REQ-CL-ONLINE-01" in html
    assert "all-pass-min:3" in html
    assert "campaigns/nightly.yaml" in html
    assert "cd" * 32 in html
    assert "RR-0042" in html
    assert "2027-01-10" in html
    assert "ef" * 32 in html
    assert "cryptography" in html  # software manifest
    assert "DEV-7" in html
    assert "bench-2 went away" in html
    assert "ssh connection lost" in html
    assert "REQ-NOT-IN-CATALOGUE-01" in html  # named by a test, missing from the catalogue
    assert "<svg" in html
    assert "median" in html
    assert "p95" in html
    assert "nightly-0" in html  # trends


def test_self_contained(rendered):
    _, _, html = rendered
    assert "http://" not in html
    assert "https://" not in html
    refs = re.findall(r"""(?:src|href|action)\s*=\s*["']?([^"'\s>]*)""", html, re.IGNORECASE)
    assert refs
    assert all(ref.startswith(("#", "data:")) for ref in refs), refs
    assert not re.search(r"""["'(]\s*//""", html)  # no protocol-relative URL
    assert "<script" not in html  # the record's message text is escaped, and the report has no script
    assert "&lt;script&gt;" in html
    assert "&lt;b&gt;campaign&lt;/b&gt;" in html
    assert "@import" not in html
    assert "url(" not in html


def test_no_pan_no_key(rendered, tmp_path):
    _, path, html = rendered
    assert PAN not in html
    assert "622848******0010" in html  # shown masked, from the trace, the ISO view and the message
    assert GP_DEFAULT_TEST_KEY.hex().upper() not in html.upper()
    assert TMK not in html.upper()
    assert "0011223344556677" not in html  # field 52 PIN block
    assert "D30122201234567F" not in html
    assert "<key hidden>" in html or "&lt;key hidden&gt;" in html or "****" in html
    assert scan_for_secrets([path]) == []


def test_traces_decoded(rendered):
    _, _, html = rendered
    assert "apdu-traces" in html
    assert "00B2010C00" in html
    assert "Application Primary Account Number" in html or ">5A<" in html  # TLV tree shown
    assert "325041592E5359532E4444463031" in html  # the JSONL trace, loaded relative to the record
    assert "MTI 0200" in html


def test_trace_cap_said(tmp_path):
    record = make_record(tmp_path, n_extra=30)
    path = render_auditor_report(record, tmp_path / "out.html", max_traces=5, base_dir=tmp_path)
    html = path.read_text()
    assert html.count('<details class="trace">') == 5
    assert "27 trace(s) not shown here" in html  # 32 with trace or ISO 8583 messages, 5 shown
    assert html.index("online debit") < html.index("many 0")  # product failure shown first


def test_missing_trace_file_is_said(tmp_path):
    record = make_record(tmp_path)
    record.results[1].trace = "traces/missing.jsonl"
    html = render_auditor_report(record, tmp_path).read_text()
    assert "traces/missing.jsonl cannot be read" in html


def test_same_record_same_report(tmp_path):
    record = make_record(tmp_path)
    a = render_auditor_report(record, tmp_path / "a.html").read_bytes()
    b = render_auditor_report(CampaignRecord.from_json(record.to_json()), tmp_path / "b.html").read_bytes()
    assert a == b
