"""EMV / PBOC application cryptography (paylab.lab.protocol.crypto.emv).

* Published vectors: domain brief section 2 vector 1 [V] and the further pyemv 1.5.0 values
  [S: knovichikhin/pyemv tests/test_ac_hsm.py and the kd.py doctests].
* PBOC constructions re-computed step by step: 3DES blocks one at a time, SM4 with gmalg's
  independent SM4 implementation.
* End to end: a card computes the ARQC, the issuer verifies it, answers with an ARPC (and a script
  MAC), and the card checks them, for 3DES and SM4 and for both session-key methods.
"""

import pytest
from gmalg import SM4 as GmalgSm4
from hypothesis import given, settings
from hypothesis import strategies as st

from paylab.lab.protocol.crypto import emv
from paylab.lab.protocol.crypto.mac import iso9797_mac_alg3
from paylab.lab.protocol.crypto.primitives import kcv, tdes_encrypt, xor
from paylab.lab.protocol.errors import CryptoError, ProtocolError

IMK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
PAN, PSN = "9901234567890123", "45"


def kcv2(key: bytes, alg: str = "3des") -> str:
    return kcv(key, alg)[:2].hex().upper()


def has_odd_parity(key: bytes) -> bool:
    return all(bin(b).count("1") % 2 == 1 for b in key)


def strip_parity(key: bytes) -> bytes:
    return bytes(b & 0xFE for b in key)


def gm_sm4(key: bytes, block: bytes) -> bytes:
    return GmalgSm4(key).encrypt(block)


def gm_sm4_cbc_mac(key: bytes, data: bytes) -> bytes:
    """SM4 CBC-MAC with IV 0 and padding method 2, written out with gmalg's block cipher."""
    padded = data + b"\x80" + bytes(-(len(data) + 1) % 16)
    chain = bytes(16)
    for i in range(0, len(padded), 16):
        chain = gm_sm4(key, xor(chain, padded[i : i + 16]))
    return chain


# -- published vectors ---------------------------------------------------------------------------


@pytest.mark.vectors
def test_brief_vector_1_option_a_csk_ac_arpc1():
    assert kcv2(IMK) == "08D7"
    mk = emv.derive_icc_master_key(IMK, PAN, PSN)
    assert kcv2(mk) == "1DA5"
    sk = emv.derive_emv_csk(mk, bytes.fromhex("1234567890123456"))
    assert kcv2(sk) == "0995"
    arqc = emv.generate_ac(sk, bytes.fromhex("0123456789ABCDEF0123456789ABCDEF"))
    assert arqc.hex().upper() == "4B46013359B7A58B"
    assert emv.arpc_method1(mk, arqc, bytes.fromhex("0000")).hex().upper() == "F8C9CECAABD55AD1"


@pytest.mark.vectors
def test_pyemv_arpc_method2_vectors():
    mk = emv.derive_icc_master_key(IMK, PAN, PSN)
    sk = emv.derive_emv_csk(mk, bytes.fromhex("1234567890123456"))
    arqc = bytes.fromhex("4B46013359B7A58B")
    csu = bytes(4)
    assert emv.arpc_method2(sk, arqc, csu, bytes.fromhex("1234567890ABCDEF")).hex().upper() == "4962B76C"
    assert emv.arpc_method2(sk, arqc, csu).hex().upper() == "7DFB1188"


@pytest.mark.vectors
def test_pyemv_doctest_vectors_for_long_pan_and_csk():
    # 17-digit PAN: Y is the rightmost 16 digits of PAN||PSN; keys come back with odd parity.
    mk = emv.derive_icc_master_key(IMK, "12345678901234567", "01")
    assert mk.hex().upper() == "73AD54688CEF2934B0979857E3C719F1"
    sk = emv.derive_emv_csk(IMK, bytes.fromhex("001C000000000000"))
    assert sk.hex().upper() == "E9FB384AF807B940FEDCEA613461B0C4"


# -- Y block -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pan", "psn", "y"),
    [
        ("9901234567890123", "45", "0123456789012345"),  # 18 digits -> rightmost 16
        ("9901234567890123", None, "0123456789012300"),  # no PSN -> "00"
        ("123456789012", "01", "0012345678901201"),  # short PAN, left-padded
        ("123456789012", None, "0012345678901200"),
        ("123456789012", "1", "0012345678901201"),  # 1-digit PSN = 0x
        ("12345678901234", "07", "1234567890123407"),  # exactly 16 digits with the PSN
        ("1234567890123456789", "01", "6789012345678901"),  # 19-digit PAN
        ("6228480402564890018F", "00", "8040256489001800"),  # tag 5A F padding ignored
    ],
)
def test_pan_psn_block_rules(pan, psn, y):
    assert emv.pan_psn_block(pan, psn).hex() == y


def test_pan_psn_block_default_psn_is_00():
    assert emv.pan_psn_block("9901234567890123") == emv.pan_psn_block("9901234567890123", None)


@pytest.mark.parametrize(
    "pan", ["", "12345678901234567890", "99012345678901A3", "9901 2345", 9901234567890123]
)
def test_bad_pan_raises_naming_pan(pan):
    with pytest.raises(CryptoError, match="pan"):
        emv.pan_psn_block(pan, "00")


@pytest.mark.parametrize("psn", ["", "001", "A1", " 1", 1])
def test_bad_psn_raises_naming_psn(psn):
    with pytest.raises(CryptoError, match="psn"):
        emv.pan_psn_block(PAN, psn)


# -- PBOC constructions, re-computed independently -------------------------------------------------


def test_3des_option_a_is_two_independent_block_encryptions_with_parity():
    y = emv.pan_psn_block(PAN, PSN)
    mk = emv.derive_icc_master_key(IMK, PAN, PSN, "3des")
    expected = tdes_encrypt(IMK, y) + tdes_encrypt(IMK, xor(y, b"\xff" * 8))
    assert strip_parity(mk) == strip_parity(expected)
    assert has_odd_parity(mk)


def test_pboc_3des_session_key_from_atc():
    mk = emv.derive_icc_master_key(IMK, PAN, PSN)
    atc = bytes.fromhex("0ADC")
    sk = emv.derive_pboc_session_key(mk, atc, "3des")
    left = tdes_encrypt(mk, bytes.fromhex("000000000000" "0ADC"))
    right = tdes_encrypt(mk, bytes.fromhex("000000000000" "F523"))
    assert strip_parity(sk) == strip_parity(left + right)
    assert has_odd_parity(sk)


def test_pboc_session_key_differs_from_emv_csk():
    # Pitfall 1: the two derivations give different keys (hence different ARQCs) for the same ATC.
    mk = emv.derive_icc_master_key(IMK, PAN, PSN)
    atc = bytes.fromhex("0001")
    assert emv.derive_pboc_session_key(mk, atc) != emv.derive_ac_session_key(mk, atc, "emv-csk")


def test_sm4_master_key_is_sm4_imk_of_y_and_inverted_y():
    y = emv.pan_psn_block(PAN, PSN)
    mk = emv.derive_icc_master_key(IMK, PAN, PSN, "sm4")
    assert mk == gm_sm4(IMK, y + xor(y, b"\xff" * 8))


def test_sm4_session_key_is_one_block_over_atc_and_inverted_atc():
    mk = emv.derive_icc_master_key(IMK, PAN, PSN, "sm4")
    sk = emv.derive_pboc_session_key(mk, bytes.fromhex("1234"), "sm4")
    assert sk == gm_sm4(mk, bytes.fromhex("000000000000" "1234" "000000000000" "EDCB"))


@pytest.mark.parametrize("length", [0, 1, 15, 16, 17, 43])
def test_sm4_ac_is_leftmost_8_bytes_of_cbc_mac(length):
    sk = bytes(range(16))
    data = bytes((7 * i + 3) & 0xFF for i in range(length))
    assert emv.generate_ac(sk, data, "sm4") == gm_sm4_cbc_mac(sk, data)[:8]


def test_3des_ac_is_retail_mac_with_80_padding():
    sk = emv.derive_emv_csk(IMK, bytes(8))
    data = bytes.fromhex("0123456789ABCDEF01")
    assert emv.generate_ac(sk, data) == iso9797_mac_alg3(sk, data + b"\x80" + bytes(6), padding="none")


def test_sm4_arpc_method1_form():
    key = bytes(range(16, 32))
    arqc = bytes.fromhex("AD03EE811AFAD484")
    arc = b"00"
    y = xor(arqc, b"\x30\x30" + bytes(6))
    assert emv.arpc_method1(key, arqc, arc, "sm4") == gm_sm4(key, y + bytes(8))[:8]


def test_arc_is_used_as_given_ascii_00_is_3030():
    key = emv.derive_pboc_session_key(emv.derive_icc_master_key(IMK, PAN, PSN), b"\x00\x01")
    arqc = bytes.fromhex("AD03EE811AFAD484")
    assert emv.arpc_method1(key, arqc, b"00") == emv.arpc_method1(key, arqc, bytes.fromhex("3030"))
    assert emv.arpc_method1(key, arqc, b"00") != emv.arpc_method1(key, arqc, bytes.fromhex("0000"))
    expected = tdes_encrypt(key, xor(arqc, bytes.fromhex("3030") + bytes(6)))
    assert emv.arpc_method1(key, arqc, b"00") == expected


def test_sm4_arpc_method2_and_script_mac_forms():
    key = bytes(range(32, 48))
    arqc, csu = bytes.fromhex("1122334455667788"), bytes.fromhex("00820000")
    expected = gm_sm4_cbc_mac(key, arqc + csu + b"\x01\x02")[:4]
    assert emv.arpc_method2(key, arqc, csu, b"\x01\x02", "sm4") == expected
    header, atc, data = bytes.fromhex("04DA9F770A"), b"\x00\x05", bytes.fromhex("000000000388")
    mac = emv.issuer_script_mac(key, header, atc, arqc, data, "sm4")
    assert mac == gm_sm4_cbc_mac(key, header + atc + arqc + data)[:4]


def test_3des_issuer_script_mac_input_layout():
    mac_sk = emv.derive_pboc_session_key(emv.derive_icc_master_key(IMK, PAN, PSN), b"\x00\x05")
    header, atc = bytes.fromhex("04DA9F770A"), b"\x00\x05"
    arqc, data = bytes.fromhex("1122334455667788"), bytes.fromhex("000000000388")
    mac = emv.issuer_script_mac(mac_sk, header, atc, arqc, data)
    assert len(mac) == 4
    assert mac == iso9797_mac_alg3(mac_sk, header + atc + arqc + data, padding="m2")[:4]


def test_script_mac_rejects_lc_that_does_not_count_the_mac():
    with pytest.raises(CryptoError, match="Lc"):
        emv.issuer_script_mac(IMK, bytes.fromhex("04DA9F7706"), b"\x00\x05", bytes(8), bytes(6))


# -- AC input and IAD ----------------------------------------------------------------------------

AC_VALUES = {
    0x9F02: bytes.fromhex("000000000004"),
    0x9F03: bytes.fromhex("000000000000"),
    0x9F1A: bytes.fromhex("0156"),
    0x95: bytes.fromhex("8020040840"),
    0x5F2A: bytes.fromhex("0156"),
    0x9A: bytes.fromhex("170505"),
    0x9C: bytes.fromhex("17"),
    0x9F37: bytes.fromhex("1A702631"),
    0x82: bytes.fromhex("7C00"),
    0x9F36: bytes.fromhex("00B9"),
}


def test_ac_input_layout_matches_a_public_pboc_sample():
    # A public bank front-end test sends ARQC_SRC_DATA together with ISSUER_APP_DATA
    # 07010103A02800010A0100000000005935BF9F: the CVR it appends is IAD bytes 4-7.
    iad = emv.parse_iad(bytes.fromhex("07010103A02800010A0100000000005935BF9F"))
    data = emv.ac_input({**AC_VALUES, 0x9F4E: b"ignored"}, iad.cvr)
    assert data.hex().upper() == (
        "000000000004000000000000015680200408400156170505171A7026317C0000B903A02800"
    )


def test_ac_input_missing_or_wrong_length_tag():
    values = dict(AC_VALUES)
    del values[0x9F37]
    with pytest.raises(CryptoError, match="9F37"):
        emv.ac_input(values, bytes.fromhex("03A00000"))
    with pytest.raises(CryptoError, match="9F02"):
        emv.ac_input({**AC_VALUES, 0x9F02: b"\x01"}, bytes.fromhex("03A00000"))
    with pytest.raises(CryptoError, match="cvr"):
        emv.ac_input(AC_VALUES, bytes.fromhex("A00000"))


def test_parse_iad_of_the_brief_trace():
    iad = emv.parse_iad(bytes.fromhex("07010103A00000010A010000038787868FD1FC"))
    assert (iad.length, iad.dki, iad.cvn) == (7, 1, 1)
    assert iad.cvr == bytes.fromhex("03A00000")
    assert iad.algorithm_id == 0x01
    assert iad.algorithm == "3des"
    assert iad.idd == bytes.fromhex("010000038787868FD1FC")
    assert emv.alg_for_iad(iad) == "3des"
    assert emv.session_method_for_cvn(iad.cvn) == "pboc"


def test_parse_iad_algorithm_id_04_is_sm4():
    # 2024 public field-55 traces of CVN 01 cards carry 04 in byte 8 ([M]: 04 = SM4).
    iad = emv.parse_iad(bytes.fromhex("07010103A00000040A01000000000012362F9C"))
    assert iad.algorithm_id == 0x04
    assert emv.alg_for_iad(iad) == "sm4"


def test_parse_iad_without_idd_and_vis_form():
    iad = emv.parse_iad(bytes.fromhex("07010103A0000001"))
    assert iad.idd is None
    vis = emv.parse_iad(bytes.fromhex("06011203A00000"))
    assert (vis.cvn, vis.algorithm_id, vis.algorithm) == (0x12, None, None)
    assert emv.alg_for_iad(vis) == "3des"
    assert emv.session_method_for_cvn(vis.cvn) == "emv-csk"


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "05010103A000",  # length byte neither 06 nor 07
        "07010103A000",  # shorter than the length byte says
        "07010102A0000001",  # CVR length byte not 03
        "07010103A00000010A0100",  # IDD shorter than its length byte
        "07010103A000000100",  # IDD length 0
        "07010103A00000010A" + "00" * 24,  # longer than 32 bytes
    ],
)
def test_malformed_iad_raises_protocol_error(raw):
    with pytest.raises(ProtocolError) as info:
        emv.parse_iad(bytes.fromhex(raw))
    assert info.value.field == "tag 9F10"


def test_cvn_table():
    assert emv.session_method_for_cvn(0x01) == "pboc"
    assert emv.session_method_for_cvn(0x17) == "pboc"
    assert emv.session_method_for_cvn(0x12) == "emv-csk"
    assert emv.alg_for_cvn(0x01) == "3des"
    assert emv.profile_for_cvn(0x12).arpc_method == 2
    assert emv.profile_for_cvn(0x01).arpc_key == "sk"
    with pytest.raises(CryptoError, match="cvn"):
        emv.session_method_for_cvn(0x99)


# -- end to end ----------------------------------------------------------------------------------

ISSUER_3DES = emv.IssuerKeys(
    imk_ac=IMK,
    imk_mac=bytes.fromhex("11111111111111112222222222222222"),
    imk_enc=bytes.fromhex("33333333333333334444444444444444"),
)
ISSUER_SM4 = emv.IssuerKeys(
    imk_ac=bytes.fromhex("0123456789ABCDEFFEDCBA9876543210"),
    imk_mac=bytes.fromhex("00112233445566778899AABBCCDDEEFF"),
    imk_enc=bytes.fromhex("FFEEDDCCBBAA99887766554433221100"),
    alg="sm4",
)


@pytest.mark.parametrize(
    ("issuer", "method"),
    [(ISSUER_3DES, "pboc"), (ISSUER_SM4, "pboc"), (ISSUER_3DES, "emv-csk")],
    ids=["3des-pboc", "sm4-pboc", "3des-emv-csk"],
)
def test_card_arqc_issuer_verifies_and_answers_card_checks(issuer, method):
    alg = issuer.alg
    pan, psn, atc = "6217001234567890123", "01", bytes.fromhex("0ADC")

    # Card: personalised with MKs derived from the issuer's IMKs; computes the ARQC.
    card = issuer.card_keys(pan, psn)
    card_sk = emv.derive_ac_session_key(card.mk_ac, atc, method, alg)
    cvr = bytes.fromhex("03A00000")
    data = emv.ac_input({**AC_VALUES, 0x9F36: atc}, cvr)
    arqc = emv.generate_ac(card_sk, data, alg)

    # Issuer: verifies from IMK + PAN + PSN only.
    assert emv.verify_arqc(issuer.imk_ac, pan, psn, atc, data, arqc, method=method, alg=alg)
    tampered = data[:-1] + b"\x01"
    assert not emv.verify_arqc(issuer.imk_ac, pan, psn, atc, tampered, arqc, method=method, alg=alg)
    assert not emv.verify_arqc(issuer.imk_ac, pan, psn, b"\x0a\xdd", data, arqc, method=method, alg=alg)
    assert not emv.verify_arqc(issuer.imk_ac, pan, "02", atc, data, arqc, method=method, alg=alg)
    assert not emv.verify_arqc(issuer.imk_ac, pan, psn, atc, data, xor(arqc, b"\x80" + bytes(7)),
                               method=method, alg=alg)

    # Issuer answers: ARPC with its own SK (PBOC: method 1, ARC in ASCII), or method 2 (CSK).
    issuer_mk = emv.derive_icc_master_key(issuer.imk_ac, pan, psn, alg)
    issuer_sk = emv.derive_ac_session_key(issuer_mk, atc, method, alg)
    if method == "pboc":
        arc = b"00"
        arpc = emv.arpc_method1(issuer_sk, arqc, arc, alg)
        assert emv.arpc_method1(card_sk, arqc, arc, alg) == arpc  # card-side check
        assert emv.arpc_method1(card_sk, arqc, b"05", alg) != arpc
    else:
        csu = bytes.fromhex("00820000")
        arpc = emv.arpc_method2(issuer_sk, arqc, csu, b"", alg)
        assert emv.arpc_method2(card_sk, arqc, csu, b"", alg) == arpc
        assert emv.arpc_method2(card_sk, arqc, bytes(4), b"", alg) != arpc

    # Issuer script (e-cash balance update): MAC session key from MK_MAC, same ATC derivation.
    header, new_balance = bytes.fromhex("04DA9F790A"), bytes.fromhex("000000000388")
    issuer_mac_sk = emv.derive_pboc_session_key(
        emv.derive_icc_master_key(issuer.imk_mac, pan, psn, alg), atc, alg
    )
    card_mac_sk = emv.derive_pboc_session_key(card.mk_mac, atc, alg)
    mac = emv.issuer_script_mac(issuer_mac_sk, header, atc, arqc, new_balance, alg)
    assert emv.issuer_script_mac(card_mac_sk, header, atc, arqc, new_balance, alg) == mac


@pytest.mark.parametrize(("alg_id", "alg"), [(0x01, "3des"), (0x04, "sm4")])
def test_backend_picks_keys_from_the_iad(alg_id, alg):
    issuer = ISSUER_SM4 if alg == "sm4" else ISSUER_3DES
    pan, psn, atc = "6217001234567890", "00", bytes.fromhex("0001")
    iad = emv.parse_iad(bytes([7, 1, 0x01]) + bytes.fromhex("03A00000") + bytes([alg_id]))
    card = issuer.card_keys(pan, psn)
    data = emv.ac_input({**AC_VALUES, 0x9F36: atc}, iad.cvr)
    arqc = emv.generate_ac(emv.derive_pboc_session_key(card.mk_ac, atc, alg), data, alg)
    assert emv.verify_arqc(
        issuer.imk_ac, pan, psn, atc, data, arqc,
        method=emv.session_method_for_cvn(iad.cvn), alg=emv.alg_for_iad(iad),
    )


def test_sm4_has_no_emv_csk():
    with pytest.raises(CryptoError, match="3DES only"):
        emv.derive_ac_session_key(IMK, b"\x00\x01", "emv-csk", "sm4")


def test_sm4_keys_are_not_parity_adjusted():
    mk = emv.derive_icc_master_key(IMK, PAN, PSN, "sm4")
    y = emv.pan_psn_block(PAN, PSN)
    assert mk == gm_sm4(IMK, y + xor(y, b"\xff" * 8))  # raw output, whatever its parity


def test_key_records_hide_key_bytes():
    card = ISSUER_3DES.card_keys(PAN, PSN)
    assert card.mk_ac.hex() not in repr(card).lower()
    assert "KCV 1DA5" in repr(card)
    assert IMK.hex() not in repr(ISSUER_3DES).lower()
    assert card == emv.CardKeys.from_imk(ISSUER_3DES, PAN, PSN)


# -- bad inputs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: emv.derive_icc_master_key(IMK[:8], PAN, PSN), "imk"),
        (lambda: emv.derive_icc_master_key(IMK + IMK[:8], PAN, PSN, "sm4"), "imk"),
        (lambda: emv.derive_pboc_session_key(IMK, b"\x00\x01\x02"), "atc"),
        (lambda: emv.derive_pboc_session_key(IMK[:15], b"\x00\x01"), "mk"),
        (lambda: emv.derive_emv_csk(IMK, bytes(7)), "r"),
        (lambda: emv.generate_ac(IMK[:8], b"data"), "sk"),
        (lambda: emv.generate_ac(IMK, b"data", "aes"), "alg"),
        (lambda: emv.arpc_method1(IMK, bytes(7), b"00"), "arqc"),
        (lambda: emv.arpc_method1(IMK, bytes(8), b"0"), "arc"),
        (lambda: emv.arpc_method2(IMK, bytes(8), bytes(3)), "csu"),
        (lambda: emv.arpc_method2(IMK, bytes(8), bytes(4), bytes(9)), "prop_auth_data"),
        (lambda: emv.issuer_script_mac(IMK, bytes(4), b"\x00\x01", bytes(8), b""), "command_header_and_lc"),
        (lambda: emv.issuer_script_mac(IMK, bytes.fromhex("04DA9F7904"), b"\x01", bytes(8), b""), "atc"),
        (lambda: emv.derive_ac_session_key(IMK, b"\x00\x01", "visa"), "method"),
        (lambda: emv.verify_arqc(IMK, PAN, PSN, b"\x00\x01", b"", bytes(4)), "arqc"),
        (lambda: emv.IssuerKeys(IMK, IMK, IMK[:8]), "imk_enc"),
        (lambda: emv.CardKeys(IMK, IMK[:8], IMK), "mk_mac"),
    ],
)
def test_bad_inputs_raise_crypto_error_naming_the_argument(call, name):
    with pytest.raises(CryptoError, match=name):
        call()


# -- properties ----------------------------------------------------------------------------------

keys = st.binary(min_size=16, max_size=16)
pans = st.text(alphabet="0123456789", min_size=12, max_size=19)
psns = st.one_of(st.none(), st.integers(0, 99).map(lambda n: f"{n:02d}"))
atcs = st.binary(min_size=2, max_size=2)


@pytest.mark.property
@settings(max_examples=50, deadline=None)
@given(imk=keys, pan=pans, psn=psns)
def test_option_a_matches_its_definition(imk, pan, psn):
    y = bytes.fromhex((pan + (psn or "00"))[-16:].rjust(16, "0"))
    mk = emv.derive_icc_master_key(imk, pan, psn)
    assert strip_parity(mk) == strip_parity(tdes_encrypt(imk, y) + tdes_encrypt(imk, xor(y, b"\xff" * 8)))
    assert emv.derive_icc_master_key(imk, pan, psn, "sm4") == gm_sm4(imk, y + xor(y, b"\xff" * 8))


@pytest.mark.property
@settings(max_examples=50, deadline=None)
@given(
    imk=keys, pan=pans, psn=psns, atc=atcs, data=st.binary(max_size=64),
    alg=st.sampled_from(["3des", "sm4"]),
)
def test_pboc_arqc_round_trip(imk, pan, psn, atc, data, alg):
    mk = emv.derive_icc_master_key(imk, pan, psn, alg)
    arqc = emv.generate_ac(emv.derive_pboc_session_key(mk, atc, alg), data, alg)
    assert len(arqc) == 8
    assert emv.verify_arqc(imk, pan, psn, atc, data, arqc, method="pboc", alg=alg)
