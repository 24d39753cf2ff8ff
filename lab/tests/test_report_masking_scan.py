"""The artefact scanner: planted PANs (plain, in TLV hex, in track 2, under a test BIN) and test keys
are found with file and line; masked PANs, hashes and ordinary numbers are not."""

import hashlib

import pytest

from paylab.lab.protocol.gp.keys import GP_DEFAULT_TEST_KEY
from paylab.lab.protocol.masking import luhn_ok
from paylab.lab.report.masking_scan import known_secrets, scan_bytes, scan_for_secrets

PAN = "6228488800000010"
PAN_B = "6217009900000000014"
OTHER_PAN = "4111111111111111"  # not a test BIN of ours, still a Luhn-valid PAN
TMK = "0123456789ABCDEFFEDCBA9876543210"


def kinds(data, name="x"):
    return [(f.line, f.kind) for f in scan_bytes(data.encode() if isinstance(data, str) else data, name)]


def test_fixture_secrets_loaded():
    secrets = known_secrets()
    names = [n for n, _ in secrets.keys]
    assert "622848" in secrets.bins
    assert "621700" in secrets.bins
    assert any("imk_ac" in n for n in names)
    assert any("tmk" in n for n in names)
    assert any("signing TEST private key" in n for n in names)
    assert GP_DEFAULT_TEST_KEY in {v for _, v in secrets.keys}
    assert secrets.pin_blocks


def test_planted_pan_found_with_file_and_line(tmp_path):
    path = tmp_path / "log.txt"
    path.write_text("line one\nline two\ncard " + PAN + " approved\n")
    findings = scan_for_secrets([tmp_path])
    assert [(f.file, f.line, f.kind, f.what) for f in findings] == [(str(path), 3, "pan", "622848******0010")]
    assert PAN not in str(findings[0])  # the finding itself never shows the PAN


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        (f'{{"pan": "{OTHER_PAN}"}}', "pan"),
        ("6228 4888 0000 0010", "pan"),
        (f"701C5A08{PAN}5F3401", "pan-tlv"),  # inside raw APDU hex
        (f"9F6B13{PAN_B}D30122201234", "track2"),
        (f";{OTHER_PAN}=30122201234?", "pan"),  # stand-alone digits before '=': reported once, as a PAN
        (f"x{OTHER_PAN}=30122201234?", "track2"),
        (f"0200723C...16{PAN}000000000000000100", "pan-bin"),  # BCD field 2 glued to other digits
    ],
)
def test_pan_shapes(text, kind):
    found = kinds(text)
    assert found, text
    assert found[0][1] == kind


def test_planted_test_key_found(tmp_path):
    (tmp_path / "a.json").write_text('{\n "mak": "' + TMK.lower() + '"\n}\n')
    (tmp_path / "b.bin").write_bytes(b"\x00\x01" + GP_DEFAULT_TEST_KEY + b"\x02")
    (tmp_path / "c.txt").write_text("PUT KEY 80D8000113 8010" + GP_DEFAULT_TEST_KEY.hex().upper() + "03\n")
    findings = scan_for_secrets([tmp_path])
    got = {(f.file.rsplit("/", 1)[-1], f.kind) for f in findings}
    assert ("a.json", "key") in got
    assert ("b.bin", "key-raw") in got
    assert ("c.txt", "key") in got
    assert any("tmk" in f.what for f in findings if f.file.endswith("a.json"))


def test_signing_test_key_pem_found(tmp_path):
    from paylab.lab.report.integrity import TEST_SIGNING_KEY

    (tmp_path / "leak.txt").write_text("oops\n" + TEST_SIGNING_KEY.read_text())
    assert [f.kind for f in scan_for_secrets([tmp_path])] == ["key"]


def test_pin_block_found():
    # offline PIN block of the debit test profile (PIN 123456): EMV format 2, 26 123456 FF..
    assert ("pin-block" in {k for _, k in kinds("VERIFY 0020008008 26123456FFFFFFFF")})


@pytest.mark.parametrize(
    "text",
    [
        "622848******0010",
        '"pan": "622848******0010", "track2": "622848******0010D***************"',
        "5A08622848******0010",
        "<masked 8 bytes>",
        hashlib.sha256(b"x").hexdigest() * 50,
        "timestamp 1764118301.234 duration_ms 412.0 amount 000000000100 stan 000001",
        "rrn 000000000123456 ts 20261126010000",  # leading zero, 14 digits not Luhn
        "9F79060000000387879000",
    ],
)
def test_no_false_positive(text):
    assert kinds(text) == [], text


def test_hashes_in_a_manifest_do_not_alarm():
    digests = "\n".join(hashlib.sha256(str(i).encode()).hexdigest() for i in range(5000))
    assert kinds(digests) == []


def test_luhn_sanity():
    assert luhn_ok(PAN)
    assert luhn_ok(PAN_B)
