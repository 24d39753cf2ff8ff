"""Report integrity: the signed SHA-256 manifest, ``paylab report verify|render|scan`` exit codes."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from paylab.lab.cli.main import main
from paylab.lab.report.integrity import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    TEST_PUBLIC_KEY,
    TEST_SIGNING_KEY,
    IntegrityError,
    key_id,
    load_public_key,
    verify_manifest,
    write_manifest,
)
from paylab.lab.report.record import CampaignRecord, TestResult


@pytest.fixture
def report(tmp_path):
    root = tmp_path / "reports" / "nightly-1"
    (root / "allure").mkdir(parents=True)
    (root / "auditor-report.html").write_text("<!DOCTYPE html><p>report</p>\n")
    (root / "allure" / "index.html").write_text("allure\n")
    (root / "junit.xml").write_bytes(b"<testsuite/>\n")
    write_manifest(root)
    return root


def test_manifest_lists_every_file_signed_with_the_test_key(report):
    manifest = json.loads((report / MANIFEST_NAME).read_text())
    assert [f["path"] for f in manifest["files"]] == ["allure/index.html", "auditor-report.html", "junit.xml"]
    assert all(len(f["sha256"]) == 64 for f in manifest["files"])
    assert manifest["test_key"] is True
    assert manifest["key_id"] == key_id(load_public_key(TEST_PUBLIC_KEY))
    result = verify_manifest(report)
    assert result.ok
    assert result.problems() == []


def test_tamper_one_byte_names_the_file(report):
    path = report / "allure" / "index.html"
    data = bytearray(path.read_bytes())
    data[0] ^= 0x01
    path.write_bytes(bytes(data))
    result = verify_manifest(report)
    assert not result.ok
    assert result.changed == ["allure/index.html"]
    assert result.added == []
    assert result.removed == []
    assert not result.bad_signature


def test_added_and_removed_named(report):
    (report / "junit.xml").unlink()
    (report / "extra.txt").write_text("x")
    result = verify_manifest(report)
    assert (result.added, result.removed, result.changed) == (["extra.txt"], ["junit.xml"], [])
    assert result.problems() == ["added: extra.txt", "removed: junit.xml"]


def test_bad_signature_detected(report, tmp_path):
    manifest = report / MANIFEST_NAME
    # an attacker edits a file and the manifest's hash for it: only the signature can tell
    (report / "junit.xml").write_bytes(b"<testsuite failures='0'/>\n")
    text = json.loads(manifest.read_text())
    for entry in text["files"]:
        if entry["path"] == "junit.xml":
            entry["sha256"] = hashlib.sha256(b"<testsuite failures='0'/>\n").hexdigest()
    manifest.write_text(json.dumps(text, indent=1) + "\n")
    result = verify_manifest(report)
    assert result.bad_signature
    assert result.changed == []
    assert not result.ok
    # a signature by another key does not verify either
    other = Ed25519PrivateKey.generate()
    write_manifest(report, other)
    assert verify_manifest(report).bad_signature
    assert verify_manifest(report, other.public_key()).ok
    (report / SIGNATURE_NAME).unlink()
    assert verify_manifest(report, other.public_key()).bad_signature


def test_missing_manifest_is_an_error(tmp_path):
    with pytest.raises(IntegrityError, match=r"MANIFEST\.json: cannot read"):
        verify_manifest(tmp_path)


def test_key_from_environment(report, tmp_path, monkeypatch):
    key = Ed25519PrivateKey.generate()
    priv, pub = tmp_path / "lab.pem", tmp_path / "lab.pub.pem"
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    monkeypatch.setenv("PAYLAB_REPORT_SIGNING_KEY", str(priv))
    monkeypatch.setenv("PAYLAB_REPORT_PUBLIC_KEY", str(pub))
    write_manifest(report)
    assert json.loads((report / MANIFEST_NAME).read_text())["test_key"] is False
    assert verify_manifest(report).ok
    assert verify_manifest(report, TEST_PUBLIC_KEY).bad_signature


# --- CLI ----------------------------------------------------------------------------------------


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_verify_exit_codes(report, capsys):
    code, out, _ = run(capsys, "report", "verify", report)
    assert code == 0
    assert out.startswith("ok:")
    (report / "auditor-report.html").write_text("<p>forged</p>\n")
    (report / "allure" / "index.html").unlink()
    code, out, _ = run(capsys, "report", "verify", report, "--public-key", TEST_PUBLIC_KEY)
    assert code == 1
    lines = out.splitlines()
    assert lines[:2] == ["changed: auditor-report.html", "removed: allure/index.html"]
    assert lines[-1].startswith("FAILED: 2 problem(s)")


def test_cli_verify_without_manifest(tmp_path, capsys):
    code, out, _ = run(capsys, "report", "verify", tmp_path)
    assert code == 1
    assert "MANIFEST.json" in out


def test_cli_bad_public_key_is_usage_error(report, tmp_path, capsys):
    bad = tmp_path / "nokey.pem"
    bad.write_text("not a key")
    code, _, err = run(capsys, "report", "verify", report, "--public-key", bad)
    assert code == 2
    assert "not a PEM public key" in err


def test_cli_render_then_verify(tmp_path, capsys):
    out_dir = tmp_path / "r"
    out_dir.mkdir()
    record = CampaignRecord(id="c-1", name="cli", started="2026-11-26T00:00:00+00:00",
                            finished="2026-11-26T00:01:00+00:00",
                            results=[TestResult(id="t::a", name="a", requirement_ids=["REQ-LOST-01"])])
    record_path = record.save(out_dir / "record.json")
    prev_path = record.save(tmp_path / "previous.json")
    code, out, _ = run(capsys, "report", "render", record_path, "--previous", prev_path)
    assert code == 0
    html = Path(out.splitlines()[-1])
    assert html == out_dir / "auditor-report.html"
    assert 'id="traceability"' in html.read_text()
    code, _, _ = run(capsys, "report", "verify", out_dir)
    assert code == 0
    manifest = json.loads((out_dir / MANIFEST_NAME).read_text())
    assert {f["path"] for f in manifest["files"]} == {"auditor-report.html", "record.json"}
    code, out, _ = run(capsys, "report", "scan", out_dir)
    assert code == 0
    assert out.startswith("ok:")


def test_cli_render_bad_record(tmp_path, capsys):
    path = tmp_path / "record.json"
    path.write_text('{"id": "x"}')
    code, _, err = run(capsys, "report", "render", path)
    assert code == 2
    assert "record.json" in err


def test_cli_as_a_process(report):
    """The installed entry point, in a real process: exit codes 0 then 1."""
    paylab = Path(sys.executable).parent / "paylab"
    env = {**os.environ, "PAYLAB_REPORT_PUBLIC_KEY": str(TEST_PUBLIC_KEY)}
    ok = subprocess.run([paylab, "report", "verify", report], capture_output=True, text=True, timeout=60, env=env)
    assert ok.returncode == 0, ok.stderr
    (report / "junit.xml").write_bytes(b"<testsuite/>\n\n")
    bad = subprocess.run([paylab, "report", "verify", report], capture_output=True, text=True, timeout=60, env=env)
    assert bad.returncode == 1
    assert "changed: junit.xml" in bad.stdout


def test_test_key_files_are_marked():
    assert "TEST-KEY" in TEST_SIGNING_KEY.name
    assert "TEST" in (TEST_SIGNING_KEY.parent / "README.md").read_text()
