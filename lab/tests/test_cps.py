"""Card profiles (paylab.lab.profiles) and CPS data preparation (paylab.lab.protocol.cps).

* Profiles: the three bundled profiles load; every validation failure is one ProfileError line naming
  the field; issuer and card key forms; YAML from text, a Path or a file name.
* DGI codec: short and FF-prefixed lengths, splitting across blocks, truncation errors with offsets.
* STORE DATA blocks: P1 coding (DGI, encrypted, last), numbering, packing and splitting.
* prepare_pboc: the DGI map of the module docstring, keys and KCVs, PIN, IAD template, records and
  AFLs, the ODA static data bound to the chain, and the ICC private key CRT components.
"""

import random
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from paylab.lab import profiles
from paylab.lab.profiles import ProfileError, load_profile
from paylab.lab.protocol import cps, dol, oda, tlv
from paylab.lab.protocol.crypto import emv, sm2
from paylab.lab.protocol.crypto.primitives import kcv

h = bytes.fromhex
BUNDLED = ("pboc_credit_ecash_3des", "pboc_debit_ecash_sm4", "pboc_ecash_only_sm4")


@pytest.fixture(scope="module")
def debit_yaml():
    return yaml.safe_load(profiles.bundled_profiles()["pboc_debit_ecash_sm4"].read_text())


@pytest.fixture(scope="module")
def debit():
    return profiles.load_bundled("pboc_debit_ecash_sm4")


@pytest.fixture(scope="module")
def credit():
    return profiles.load_bundled("pboc_credit_ecash_3des")


@pytest.fixture(scope="module")
def credit_chain(credit):
    return cps.generate_oda_chain(credit, seed_or_rng=3)


# -- profiles ----------------------------------------------------------------------------------------------


def test_bundled_profiles_load_and_cover_the_three_account_kinds():
    bundled = profiles.bundled_profiles()
    assert tuple(bundled) == BUNDLED
    loaded = {name: load_profile(path) for name, path in bundled.items()}
    assert {p.account for p in loaded.values()} == {"ecash", "debit+ecash", "credit+ecash"}
    assert sorted(p.algorithm for p in loaded.values()) == ["3des", "sm4", "sm4"]
    assert {p.pan[:6] for p in loaded.values()} == {"622848", "621700"}
    for name, p in loaded.items():
        assert p.name == name
        assert p.source == bundled[name]
        assert profiles.luhn_valid(p.pan)
        assert p.issuer_keys is not None
        assert p.issuer_keys.alg == p.algorithm
        assert "TEST KEY" in bundled[name].read_text()
    # the two SM4 profiles of issuer A share the issuer keys (the backend routes by BIN)
    a, b = loaded["pboc_debit_ecash_sm4"], loaded["pboc_ecash_only_sm4"]
    assert a.issuer_keys.imk_ac == b.issuer_keys.imk_ac
    assert a.card_keys().mk_ac != b.card_keys().mk_ac


def test_profile_defaults_and_derived_values(debit, credit):
    assert debit.aid == h("A000000333010101")
    assert debit.currency_code == h("0156")
    assert debit.pdol == h(profiles.PDOL_BRIEF + "DF6901")
    assert credit.pdol == h(profiles.PDOL_BRIEF)
    assert debit.algorithm_id == 0x04
    assert credit.algorithm_id == 0x01
    assert debit.track2 == h("6228488800000010D301222000000000000F")
    assert credit.pan_bcd == h("6217009900000000014F")
    assert debit.effective_cvm_list == bytes(8) + h("41034203 1E031F00")
    assert debit.card_keys() == emv.CardKeys.from_imk(debit.issuer_keys, debit.pan, debit.psn)
    assert "123456" not in repr(debit)
    assert debit.issuer_keys.imk_ac.hex() not in repr(debit).lower()


def _with(base, **changes):
    doc = dict(base)
    for key, value in changes.items():
        if "." in key:
            outer, inner = key.split(".")
            doc[outer] = dict(doc[outer])
            if value is ...:
                doc[outer].pop(inner, None)
            else:
                doc[outer][inner] = value
        elif value is ...:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


@pytest.mark.parametrize(("changes", "field", "words"), [
    ({"test_keys": ...}, "test_keys", "TEST KEYS"),
    ({"test_keys": False}, "test_keys", "must be true"),
    ({"pan": "62284888000000"}, "pan", "Luhn"),
    ({"pan": "62284"}, "pan", "not 12-19 digits"),
    ({"pan": 6228488800000010}, "pan", "quoted string"),
    ({"psn": "1"}, "psn", "2 digits"),
    ({"expiry": "301331"}, "expiry", "calendar date"),
    ({"expiry": "3012"}, "expiry", "YYMMDD"),
    ({"effective": "310101"}, "effective", "not before the expiry"),
    ({"account": "prepaid"}, "account", "must be one of"),
    ({"algorithm": "aes"}, "algorithm", "'3des' or 'sm4'"),
    ({"aid": "A000000004101000"}, "aid", "RID A000000333"),
    ({"aid": "A0000003"}, "aid", "5-16 bytes"),
    ({"aip": "7C"}, "aip", "2 bytes"),
    ({"ctq": "XYZW"}, "ctq", "hex digits"),
    ({"cvn": "12"}, "cvn", "not a PBOC CVN"),
    ({"cvn": "99"}, "cvn", "not a known CVN"),
    ({"pdol": "9F660495 05"}, "pdol", "must ask for tag 9F02"),
    ({"pdol": "9F66"}, "pdol", "not a data object list"),
    ({"cdol1": "9F0206"}, "cdol1", "must ask for tag 9F03"),
    ({"label": "X" * 17}, "label", "1-16 printable"),
    ({"priority": 16}, "priority", "outside 1..15"),
    ({"currency": "CNY"}, "currency", "3-digit"),
    ({"language": "Chinese"}, "language", "ISO 639-1"),
    ({"colour": "red"}, "colour", "unknown field"),
    ({"ecash.balance": 200000}, "ecash.balance", "exceeds the balance limit"),
    ({"ecash.balance": "100"}, "ecash.balance", "must be an integer"),
    ({"ecash.single_limit": ...}, "ecash.single_limit", "missing"),
    ({"ecash.reset_threshold": 10**13}, "ecash.reset_threshold", "outside"),
    ({"ecash": ...}, "ecash", "missing"),
    ({"card_risk.lower_consecutive_offline": 9}, "card_risk.lower_consecutive_offline", "exceeds the upper"),
    ({"pin.offline_pin": "12a4"}, "pin.offline_pin", "4-12 digits"),
    ({"pin.try_limit": 0}, "pin.try_limit", "outside 1..15"),
    ({"keys.imk_ac": "1122"}, "keys.imk_ac", "16 bytes"),
    ({"keys.imk_mac": ...}, "keys.imk_mac", "missing"),
    ({"keys.mk_ac": "11" * 16}, "keys.mk_ac", "not both"),
    ({"keys.derivation": "option-b"}, "keys.derivation", "option-a"),
    ({"keys.secret": "x"}, "keys.secret", "unknown field"),
    ({"keys": ...}, "keys", "missing"),
])
def test_profile_errors_name_the_field(debit_yaml, changes, field, words):
    with pytest.raises(ProfileError) as info:
        profiles.profile_from_mapping(_with(debit_yaml, **changes))
    assert info.value.field == field
    message = str(info.value)
    assert message.startswith(f"profile field '{field}': ")
    assert words in message
    assert "\n" not in message


def test_card_key_form_and_texts(debit_yaml, tmp_path):
    keys = {"derivation": "none", "mk_ac": "0123456789ABCDEFFEDCBA9876543210",
            "mk_mac": "11" * 16, "mk_enc": "22" * 16}
    profile = profiles.profile_from_mapping(_with(debit_yaml, keys=keys))
    assert profile.issuer_keys is None
    assert profile.card_keys().mk_ac == h(keys["mk_ac"])
    assert profile.card_keys().alg == "sm4"
    text = yaml.safe_dump(_with(debit_yaml, name="inline"))
    assert load_profile(text).name == "inline"
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(_with(debit_yaml, name=None)))
    assert load_profile(path).name == "mine"
    assert load_profile(str(path)).source == path
    with pytest.raises(ProfileError, match=r"profile field '\(document\)': not valid YAML at line 2"):
        load_profile("a: [1\nb: 2\n")
    with pytest.raises(ProfileError, match="must be a mapping"):
        load_profile("- 1\n- 2\n")
    with pytest.raises(ProfileError, match=r"cannot read"):
        load_profile(Path(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_with(debit_yaml, pan="1234")))
    with pytest.raises(ProfileError, match=r"\(in bad.yaml\)"):
        load_profile(bad)
    with pytest.raises(ProfileError, match="no bundled profile"):
        profiles.load_bundled("nope")


# -- DGI codec ----------------------------------------------------------------------------------------------


def test_dgi_encoding_short_and_long_lengths():
    assert cps.encode_dgi(0x0101, h("700157")) == h("010103700157")
    assert cps.encode_dgi(0x9000, bytes(254))[:3] == h("9000FE")
    assert cps.encode_dgi(0x9000, bytes(255))[:5] == h("9000FF00FF")
    assert cps.encode_dgi(0x0201, bytes(300))[:5] == h("0201FF012C")
    with pytest.raises(cps.DgiError):
        cps.encode_dgi(0x10000, b"")
    with pytest.raises(cps.DgiError):
        cps.encode_dgi(0x0101, bytes(0x10000))


def test_dgi_decoding_and_splitting():
    data = cps.encode_dgi(0x0101, h("AABB")) + cps.encode_dgi(0x8000, bytes(300)) + cps.encode_dgi(0x9000, b"")
    assert cps.decode_dgis(data) == [(0x0101, h("AABB")), (0x8000, bytes(300)), (0x9000, b"")]
    found, rest = cps.split_dgis(data[:10])
    assert found == [(0x0101, h("AABB"))]
    assert rest == data[5:10]
    with pytest.raises(cps.DgiError) as info:
        cps.decode_dgis(data[:-1])
    assert info.value.offset == 5 + 305
    assert "truncated DGI header" in str(info.value)
    with pytest.raises(cps.DgiError, match="DGI 8000 truncated"):
        cps.decode_dgis(data[:20])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=400)), max_size=6),
       st.integers(16, 255))
def test_dgi_stream_round_trip(dgis, block_size):
    entries = [(dgi, data, False) for dgi, data in dgis]
    commands = cps.store_data_commands(entries, block_size=block_size) if entries else []
    stream = b"".join(cmd.data for cmd in commands)
    assert cps.decode_dgis(stream) == [(d, v) for d, v in dgis]
    assert all(len(cmd.data) <= block_size for cmd in commands)


def test_store_data_commands_p1_and_numbering():
    entries = [(0x0101, bytes(100), False), (0x0102, bytes(100), False), (0x8000, bytes(48), True),
               (0x9000, bytes(9), False)]
    commands = cps.store_data_commands(entries)
    assert [(c.cla, c.ins, c.p1, c.p2) for c in commands] == [
        (0x80, 0xE2, 0x08, 0), (0x80, 0xE2, 0x68, 1), (0x80, 0xE2, 0x88, 2)]
    assert commands[1].data == cps.encode_dgi(0x8000, bytes(48))  # an encrypted DGI travels alone
    last_encrypted = cps.store_data_commands([(0x0101, b"\x00", False), (0x8010, bytes(16), True)])
    assert last_encrypted[-1].p1 == 0xE8
    with pytest.raises(cps.CpsError, match="never split"):
        cps.store_data_commands([(0x8201, bytes(100), True)], block_size=64)
    with pytest.raises(cps.CpsError):
        cps.store_data_commands([], block_size=8)


# -- prepare_pboc ----------------------------------------------------------------------------------------------


def test_prepare_pboc_dgi_map(credit, credit_chain):
    dgis = cps.prepare_pboc(credit, oda=credit_chain)
    by_number = {dgi: (data, enc) for dgi, data, enc in dgis}
    assert [dgi for dgi, _, _ in dgis] == [0x0101, 0x0102, 0x0201, 0x0202, 0x9102, 0x9103, 0x9104, 0x9207,
                                           0x0D01, 0x0E01, 0x8000, 0x9000, 0x8010, 0x9010,
                                           0x8201, 0x8202, 0x8203, 0x8204, 0x8205]
    assert {dgi for dgi, (_, enc) in by_number.items() if enc} == {0x8000, 0x8010, *cps.DGI_ICC_CRT}
    assert all(len(data) % 16 == 0 for data, enc in by_number.values() if enc)
    keys = credit.card_keys()
    assert by_number[0x8000][0] == keys.mk_ac + keys.mk_mac + keys.mk_enc
    assert by_number[0x9000][0] == kcv(keys.mk_ac) + kcv(keys.mk_mac) + kcv(keys.mk_enc)
    assert by_number[0x8010][0] == h("242468FFFFFFFFFF80") + bytes(7)
    assert by_number[0x9010][0] == h("0303")
    assert by_number[0x9104][0] == h("82027C00 9408 08010201 10010200")
    assert by_number[0x9207][0] == h("82027C00 9408 08010101 10010200")
    internal = tlv.to_dict(tlv.decode(by_number[0x0D01][0]))
    assert internal[0x9F10] == h("0702010300000001") == cps.iad_template(credit)
    assert internal[0x9F51] == h("0156")
    assert internal[0x9F6C] == h("8000")
    assert internal[cps.TAG_ACCOUNT_KIND] == b"\x03"
    assert internal[0x9F14] == b"\x02"
    assert internal[0x9F23] == b"\x04"
    assert internal[0x9F4F] == credit.log_format
    ecash = tlv.to_dict(tlv.decode(by_number[0x0E01][0]))
    assert ecash == {0x9F79: h("000000020000"), 0x9F77: h("000000100000"), 0x9F78: h("000000030000"),
                     0x9F6D: h("000000005000"), 0x9F74: b"ECC001"}
    fci = tlv.decode_one(by_number[0x9103][0])
    flat = tlv.to_dict([fci])
    assert fci.tag == 0xA5
    assert flat[0x9F38] == credit.pdol
    assert flat[0x50] == b"PBOC CREDIT"
    assert 0x9F38 not in tlv.to_dict(tlv.decode(by_number[0x9102][0]))
    summary = "\n".join(cps.dgi_summary(dgis))
    assert "8000 L=48 <encrypted, hidden>" in summary
    assert keys.mk_ac.hex().upper() not in summary


def test_records_and_afl(credit, credit_chain):
    layout = cps.record_layout(credit, oda=credit_chain)
    first = tlv.to_dict(tlv.decode(layout.records[(1, 1)]))
    second = tlv.to_dict(tlv.decode(layout.records[(1, 2)]))
    assert first[0x5A] == credit.pan_bcd
    assert first[0x5F24] == h("291130")
    assert first[0x9F42] == h("0156")
    assert second[0x57] == credit.track2
    assert second[0x8C] == credit.cdol1
    assert second[0x5F20] == b"PAYLAB/TEST CARD"
    oda_objects = tlv.to_dict(tlv.decode(layout.records[(2, 1)])) | tlv.to_dict(tlv.decode(layout.records[(2, 2)]))
    assert {t: v for t, v in oda_objects.items() if t != 0x9F49} == credit_chain.data_objects()
    assert all(0x5F24 not in tlv.to_dict(tlv.decode(layout.records[key])) for key in ((2, 2),))
    # every record fits one READ RECORD response
    assert all(len(record) <= 256 for record in layout.records.values())
    assert layout.static_data() == cps.oda_static_data(credit) == credit_chain.static_data
    plain = cps.record_layout(credit)
    assert plain.afl_contact == h("08010201")
    assert plain.afl_contactless == h("08010101")


def test_chain_over_other_static_data_is_refused(credit, debit, credit_chain):
    other = oda.OdaChain.generate(credit.pan, cps.oda_expiry(credit), seed_or_rng=1, algorithm="sm2",
                                  static_data=b"other")
    with pytest.raises(cps.CpsError, match="other static data"):
        cps.prepare_pboc(credit, oda=other)
    with pytest.raises(cps.CpsError):
        cps.prepare_pboc(debit, oda=credit_chain)


def test_without_oda_the_aip_loses_its_oda_bits(debit):
    dgis = {dgi: data for dgi, data, _ in cps.prepare_pboc(debit)}
    assert tlv.to_dict(tlv.decode(dgis[0x9207]))[0x82] == h("1C00")
    assert not set(dgis) & {0x0201, 0x0202, 0x8301, *cps.DGI_ICC_CRT}


def test_icc_private_key_components(credit, credit_chain, debit):
    dgis = {dgi: data for dgi, data, _ in cps.prepare_pboc(credit, oda=credit_chain)}
    iqmp, dmq1, dmp1, q, p = (int.from_bytes(dgis[dgi], "big") for dgi in cps.DGI_ICC_CRT)
    public = credit_chain.icc_private.public
    assert p * q == public.n
    assert (iqmp * q) % p == 1
    d = pow(public.e, -1, (p - 1) * (q - 1))
    assert dmp1 == d % (p - 1)
    assert dmq1 == d % (q - 1)
    sm2_chain = cps.generate_oda_chain(debit, seed_or_rng=random.Random(9))
    assert sm2_chain.algorithm == "sm2"
    sm2_dgis = {dgi: data for dgi, data, _ in cps.prepare_pboc(debit, oda=sm2_chain)}
    assert sm2.public_from_private(sm2_dgis[cps.DGI_ICC_SM2]) == sm2_chain.icc_private.public


def test_helpers():
    assert cps.amount_n12(38787) == h("000000038787")
    with pytest.raises(cps.CpsError):
        cps.amount_n12(10**12)
    assert cps.pin_block("1234") == h("241234FFFFFFFFFF")
    assert cps.pin_block("123456789012") == h("2C123456789012FF")
    with pytest.raises(cps.CpsError):
        cps.pin_block("12")
    assert dol.dol_length(h(profiles.DEFAULT_CDOL1)) == 6 + 6 + 2 + 5 + 2 + 3 + 1 + 4 + 3 + 20
