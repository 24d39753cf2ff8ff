"""The ``paylab`` CLI: results on the last line, vectors reproduced, one-line errors with exit code 2."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from paylab.lab.cli.main import main

IMK = "0123456789ABCDEFFEDCBA9876543210"  # published TEST KEY (brief vector 1)
PAN = "9901234567890123"
SCP02_KEYS = ["--enc", "100102030405060708090a0b0c0d0e0f", "--mac", "101102030405060708090a0b0c0d0e0f"]
GPO_RESPONSE = ("775182027C009F36020ADC57136228488800001232D30122200000000000000F9F101307010103A0000004"
                "0A010000000387870000009F26080389FC14302132F75F3401019F6C0200009F5D06000000038787")


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def last_line(out):
    return out.rstrip("\n").splitlines()[-1]


def test_kcv(capsys):
    code, out, _ = run(capsys, "crypto", "kcv", "--alg", "3des", "--key", IMK)
    assert code == 0
    assert last_line(out) == "08D7B4"


def test_kcv_sm4_and_gp_aes(capsys):
    from paylab.lab.protocol.crypto.primitives import sm4_encrypt

    key = bytes.fromhex("0123456789abcdeffedcba9876543210")
    _, out, _ = run(capsys, "crypto", "kcv", "--alg", "sm4", "--key", key.hex())
    assert last_line(out) == sm4_encrypt(key, bytes(16))[:3].hex().upper()
    _, out, _ = run(capsys, "crypto", "kcv", "--alg", "aes", "--variant", "gp", "--key", "40" * 16)
    assert len(last_line(out)) == 6


def test_arpc_method1_with_master_key_matches_brief_vector(capsys):
    code, out, _ = run(capsys, "crypto", "arpc", "--alg", "3des", "--imk", IMK, "--pan", PAN, "--psn", "45",
                       "--atc", "0001", "--arqc", "4B46013359B7A58B", "--arc", "0000", "--key", "master")
    assert code == 0
    assert "MK KCV (Option A): 1DA5" in out
    assert last_line(out) == "F8C9CECAABD55AD1"


def test_arqc_pboc_and_csk_session_methods_differ(capsys):
    common = ["crypto", "arqc", "--alg", "3des", "--imk", IMK, "--pan", PAN, "--psn", "45", "--atc", "0001",
              "--data", "00" * 33]
    _, out_pboc, _ = run(capsys, *common)
    _, out_csk, _ = run(capsys, *common, "--session", "emv-csk")
    assert len(last_line(out_pboc)) == 16
    assert last_line(out_pboc) != last_line(out_csk)


def test_arqc_then_arpc_round_trip_sm4(capsys):
    base = ["--alg", "sm4", "--mk", IMK, "--atc", "0ADC"]
    _, out, _ = run(capsys, "crypto", "arqc", *base, "--data", "11" * 37, "--json")
    arqc = json.loads(out)["arqc"]
    code, out, _ = run(capsys, "crypto", "arpc", *base, "--arqc", arqc, "--arc", "3030")
    assert code == 0
    assert len(last_line(out)) == 16


@pytest.mark.parametrize(("alg", "key", "data", "expected"), [
    ("iso9797-1-m3", "7CA110454A1A6E570131D9619DC1376E", "48656C6C6F20576F726C6420212121", None),
    ("x9.19", "7CA110454A1A6E570131D9619DC1376E", "48656C6C6F20576F726C642021212121", "F09B856213BAB83B"),
    ("aes-cmac", "2b7e151628aed2a6abf7158809cf4f3c", "6bc1bee22e409f96e93d7e117393172a",
     "070A16B46B4D4144F79BDD9DD04A287C"),
    ("cup-ecb", "0123456789ABCDEF", "0200", None),
    ("sm4-cbc", "0123456789abcdeffedcba9876543210", "00", None),
    ("iso9797-1-m1", "0123456789ABCDEF", "00", None),
])
def test_mac(capsys, alg, key, data, expected):
    code, out, _ = run(capsys, "crypto", "mac", "--alg", alg, "--key", key, "--data", data)
    assert code == 0
    if expected:
        assert last_line(out) == expected
    int(last_line(out), 16)


def test_gp_wrap_scp02_reproduces_the_real_card_trace(capsys):
    code, out, _ = run(capsys, "gp", "wrap", "--scp", "02", *SCP02_KEYS, "--level", "01",
                       "--host-challenge", "40A62C37FA6304F8",
                       "--iu-response", "00000000000000000000700200016B4524ABEE7CF32EA3838BC148F39000",
                       "80F22002", "80ca006600")
    assert code == 0
    assert out.splitlines() == ["8482010010BA6961667737C5BCEBECE14C7D6A4376", "84F220020814DB34FA4341DCA8",
                                "84CA00660855ED7C5FF069512B00"]


def test_gp_wrap_wrong_card_cryptogram_is_a_one_line_error(capsys):
    code, out, err = run(capsys, "gp", "wrap", "--scp", "02", *SCP02_KEYS, "--level", "01",
                         "--host-challenge", "40A62C37FA6304F8",
                         "--iu-response", "00000000000000000000700200016B4524ABEE7CF32EA3838BC148F4")
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1
    assert "cryptogram" in err


def test_gp_wrap_scp03_host_and_card_agree(capsys):
    from paylab.lab.protocol.gp import Scp03Session, StaticKeys

    keys = StaticKeys.gp_default_test_keys()
    host_challenge = bytes(range(8))
    iu = Scp03Session.host_initialize_update(keys, host_challenge)
    card, response = Scp03Session.card_respond_init_update(keys, iu, sequence_counter=b"\x00\x00\x01",
                                                           card_challenge=bytes(8))
    key = keys.enc.hex()
    code, out, _ = run(capsys, "gp", "wrap", "--scp", "03", "--enc", key, "--mac", key, "--level", "03",
                       "--host-challenge", host_challenge.hex(), "--iu-response", response.hex(),
                       "80E60C0000", "80F28002024F00")
    assert code == 0
    ext_auth, *wrapped = (bytes.fromhex(x) for x in out.split())
    card.card_external_authenticate(ext_auth)
    assert card.card_unwrap_command(wrapped[0]) == bytes.fromhex("80E60C0000")
    assert card.card_unwrap_command(wrapped[1]) == bytes.fromhex("80F28002024F00")


def test_ota_wrap_reproduces_the_pysim_vector(capsys):
    code, out, _ = run(capsys, "ota", "wrap", "--spi", "0619", "--kic", "35", "--kid", "35",
                       "--kic-key", "300102030405060708090a0b0c0d0e0f", "--kid-key", "301102030405060708090a0b0c0d0e0f",
                       "--tar", "B00011", "--counter", "0", "--no-udh", "00a40004023f00")
    assert code == 0
    assert last_line(out) == "00201506193535B00011AE733256918D050B87C94FBFE12E4DC402F262C41CF67F2F"
    _, out, _ = run(capsys, "ota", "wrap", "--spi", "0619", "--kic", "35", "--kid", "35",
                    "--kic-key", "300102030405060708090a0b0c0d0e0f", "--kid-key", "301102030405060708090a0b0c0d0e0f",
                    "--tar", "B00011", "--counter", "0", "00a40004023f00")
    assert last_line(out).startswith("027000")


def test_tlv_decode_masks_pan_and_track2_unless_revealed(capsys):
    code, out, _ = run(capsys, "tlv", "decode", GPO_RESPONSE)
    assert code == 0
    assert "6228488800001232" not in out
    assert "622848******1232" in out
    assert "Application Cryptogram" in out
    assert "Available Offline Spending Amount" in out  # 9F5D under the PBOC kernel
    _, out, _ = run(capsys, "tlv", "decode", GPO_RESPONSE, "--reveal")
    assert last_line(out) == GPO_RESPONSE
    _, out, _ = run(capsys, "tlv", "decode", GPO_RESPONSE, "--json")
    doc = json.loads(out)
    assert doc["objects"][0]["tag"] == "77"
    assert "6228488800001232" not in out


def test_iso8583_decode_masks_pan(capsys):
    from paylab.lab.protocol.iso8583 import encode_message, purchase_request

    msg = purchase_request(pan="6228488800001232", amount=100, stan=7, terminal_id="PAYLAB01",
                           merchant_id="898310048990001", field55=bytes.fromhex("9F2608AD03EE811AFAD484"))
    raw = encode_message(msg, "cup-pos", mak=bytes.fromhex("0123456789ABCDEF"))
    code, out, _ = run(capsys, "iso8583", "decode", "--dialect", "cup-pos", "--mak", "0123456789ABCDEF", raw.hex())
    assert code == 0
    assert "6228488800001232" not in out
    assert "622848******1232" in out
    assert "MAC: verified" in out
    assert "Application Cryptogram" in out
    assert last_line(out).startswith("MTI 0200, ")
    framed = (len(raw).to_bytes(2, "big") + raw).hex()
    code, out, _ = run(capsys, "iso8583", "decode", "--dialect", "cup-pos", "--framed", framed, "--json")
    assert json.loads(out)["mti"] == "0200"


def test_iso8583_bad_mac_and_garbage_are_one_line_errors(capsys):
    from paylab.lab.protocol.iso8583 import encode_message, purchase_request

    msg = purchase_request(pan="6228488800001232", amount=100, stan=7, terminal_id="PAYLAB01",
                           merchant_id="898310048990001")
    raw = encode_message(msg, "cup-pos", mak=bytes.fromhex("0123456789ABCDEF"))
    code, _, err = run(capsys, "iso8583", "decode", "--dialect", "cup-pos", "--mak", "FEDCBA9876543210", raw.hex())
    assert code == 2
    assert len(err.splitlines()) == 1
    code, _, err = run(capsys, "iso8583", "decode", "--dialect", "cup-pos", raw[:30].hex())
    assert code == 2
    assert "field" in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize(("argv", "names"), [
    (["crypto", "kcv", "--alg", "3des", "--key", "XYZ"], "--key"),
    (["crypto", "kcv", "--alg", "sm4", "--key", "1234"], "--key"),
    (["crypto", "kcv", "--alg", "rot13", "--key", "00"], "--alg"),
    (["crypto", "arqc", "--alg", "3des", "--imk", IMK, "--pan", "12AB", "--atc", "0001", "--data", "00"], "--pan"),
    (["crypto", "arqc", "--alg", "3des", "--imk", IMK, "--pan", PAN, "--atc", "001", "--data", "00"], "--atc"),
    (["crypto", "arqc", "--alg", "3des", "--atc", "0001", "--data", "00"], "--imk"),
    (["crypto", "arqc", "--alg", "sm4", "--mk", IMK, "--atc", "0001", "--data", "00", "--session", "emv-csk"],
     "--session"),
    (["crypto", "arpc", "--alg", "3des", "--mk", IMK, "--atc", "0001", "--arqc", "00" * 8], "--arc"),
    (["gp", "wrap", "--scp", "02", *SCP02_KEYS, "--level", "01", "--host-challenge", "00",
      "--iu-response", "00"], "--host-challenge"),
    (["gp", "wrap", "--scp", "02", *SCP02_KEYS, "--level", "01", "--host-challenge", "00" * 8,
      "--iu-response", "00" * 5], "--iu-response"),
    (["ota", "wrap", "--spi", "0619", "--kic", "35", "--kid", "35", "--kic-key", "00" * 16, "--kid-key", "00" * 16,
      "--tar", "B00011", "--counter", "-1", "00A4"], "--counter"),
    (["tlv", "decode", "9F"], "offset"),
    (["iso8583", "decode", "--dialect", "mastercard", "00"], "--dialect"),
])
def test_bad_input_gives_one_line_naming_the_argument(capsys, argv, names):
    with pytest.raises(SystemExit) as info:
        sys.exit(main(argv))
    _, err = capsys.readouterr()
    assert info.value.code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert names in err
    assert "Traceback" not in err


def test_selfcheck_passes(capsys):
    code, out, _ = run(capsys, "selfcheck")
    assert code == 0
    assert last_line(out) == "selfcheck: 8/8 passed"


def test_demo_approves_and_never_prints_the_pan(capsys, tmp_path):
    from paylab.lab import profiles

    code, out, _ = run(capsys, "demo", "--reports", str(tmp_path))
    assert code == 0
    assert "6228488800001232" not in out
    assert "sample transaction approved" in last_line(out)
    assert "rig: online 00, offline approved, ledger balanced" in last_line(out)
    pan = profiles.load_bundled("pboc_debit_ecash_sm4").pan
    (report,) = tmp_path.iterdir()
    trace = (report / "apdu-trace.jsonl").read_text()
    assert len(trace.splitlines()) > 40
    for text in (out, trace, (report / "summary.json").read_text()):
        assert pan not in text


def test_console_script_exit_code_and_no_traceback():
    script = Path(sys.executable).with_name("paylab")
    proc = subprocess.run([str(script), "crypto", "mac", "--alg", "x9.19", "--key", "00", "--data", "00"],
                          capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr
