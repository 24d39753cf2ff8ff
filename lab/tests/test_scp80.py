"""SCP80 secured packets (ETSI TS 102 225 / 3GPP TS 31.115) and RAM/RFM lists (ETSI TS 102 226).

Vectors: values from osmocom/pysim ``tests/unittests/test_ota.py`` (values only; pySim is GPL).
The keys below are that file's published TEST KEYS, never real card keys.
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paylab.lab.protocol.errors import ApduError, OtaError, ProtocolError, TlvError
from paylab.lab.protocol.ota import (
    Checksum,
    CounterMode,
    KicAlgorithm,
    KidAlgorithm,
    OtaKeys,
    PorRequest,
    PorStatus,
    RApdu,
    RcAlgorithm,
    Spi,
    build_command_packet,
    build_compact_commands,
    build_compact_response,
    build_expanded_commands,
    build_expanded_response,
    build_response_packet,
    key_byte,
    keys_by_tar,
    meets_minimum_security,
    parse_command_packet,
    parse_compact_commands,
    parse_compact_response,
    parse_expanded_commands,
    parse_expanded_response,
    parse_response_packet,
    por_for_error,
    por_required,
)
from paylab.lab.protocol.ota.ram import CASE2_INSTRUCTIONS, encode_length
from paylab.lab.protocol.ota.scp80 import COUNTER_MAX

h = bytes.fromhex

# --- pySim TEST KEYS (tests/unittests/test_ota.py) -----------------------------------------------
SJA5_3DES = OtaKeys(kic_key=h("300102030405060708090a0b0c0d0e0f"),
                    kid_key=h("301102030405060708090a0b0c0d0e0f"), kic=0x35, kid=0x35)
SJA5_AES128 = OtaKeys(kic_key=h("200102030405060708090a0b0c0d0e0f"),
                      kid_key=h("201102030405060708090a0b0c0d0e0f"), kic=0x22, kid=0x22)
KEYSET3_3DES = OtaKeys(kic_key=h("C21DD66ACAC13CB3BC8B331B24AFB57B"),
                       kid_key=h("12110C78E678C25408233076AA033615"), kic=0x35, kid=0x35)

# pySim SPI dictionaries, as SPI objects.
SPI_CC_POR_CIPHERED_CC = Spi(ciphering=True, checksum=Checksum.CC, por=PorRequest.ALWAYS,
                             por_checksum=Checksum.CC, por_ciphered=True)
SPI_CC_POR_UNCIPHERED_CC = Spi(ciphering=True, checksum=Checksum.CC, por=PorRequest.ALWAYS,
                               por_checksum=Checksum.CC)
SPI_CC_POR_UNCIPHERED_NOCC = Spi(ciphering=True, checksum=Checksum.CC, por=PorRequest.ALWAYS)
SPI_3DES_BASE = SPI_CC_POR_CIPHERED_CC  # Test_SMS_3DES.spi_base

SELECT_MF = h("00a40004023f00")
SELECT_MF_P1_00 = h("00a40000023f00")


def keyargs(keys: OtaKeys) -> dict:
    return {"kic": keys.kic, "kid": keys.kid, "kic_key": keys.kic_key, "kid_key": keys.kid_key}


# name, keys, SPI, TAR, APDU, encoded command (without UDH), whether pySim omits the CPL
COMMAND_VECTORS = [
    ("3DES-SJA5-CIPHERED-CC", SJA5_3DES, SPI_CC_POR_CIPHERED_CC, h("B00011"), SELECT_MF,
     "00201506193535b00011ae733256918d050b87c94fbfe12e4dc402f262c41cf67f2f", False),
    ("3DES-SJA5-UNCIPHERED-CC", SJA5_3DES, SPI_CC_POR_UNCIPHERED_CC, h("B00011"), SELECT_MF,
     "00201506093535b00011c49ac91ab8159ba5b83a54fb6385e0a5e31694f8b215fafc", False),
    ("3DES-SJA5-UNCIPHERED-NOCC", SJA5_3DES, SPI_CC_POR_UNCIPHERED_NOCC, h("B00011"), SELECT_MF,
     "00201506013535b000113190be334900f52b025f3f7eddfe868e96ebf310023b7769", False),
    ("AES128-SJA5-CIPHERED-CC", SJA5_AES128, SPI_CC_POR_CIPHERED_CC, h("B00011"), SELECT_MF,
     "00281506192222b00011e87cceebb2d93083011ce294f93fc4d8de80da1abae8c37ca3e72ec4432e5058", False),
    ("Test_SMS_3DES.test_cmd_3des_ciphered", KEYSET3_3DES,
     Spi(ciphering=True, checksum=Checksum.NONE, por=PorRequest.ALWAYS, por_checksum=Checksum.CC,
         por_ciphered=True),
     h("B00000"), SELECT_MF_P1_00, "00180d04193535b00000e3ec80a849b554421276af3883927c20", False),
    # pySim returns the unciphered forms without their CPL; we compare from CHL on.
    ("Test_SMS_3DES.test_cmd_3des_signed", KEYSET3_3DES,
     Spi(ciphering=False, checksum=Checksum.CC, por=PorRequest.ALWAYS, por_checksum=Checksum.CC,
         por_ciphered=True),
     h("B00000"), SELECT_MF_P1_00, "1502193535b00000000000000000072ea17bdb72060e00a40000023f00", True),
    ("Test_SMS_3DES.test_cmd_3des_none", KEYSET3_3DES,
     Spi(ciphering=False, checksum=Checksum.NONE, por=PorRequest.ALWAYS, por_checksum=Checksum.CC,
         por_ciphered=True),
     h("B00000"), SELECT_MF_P1_00, "0d00193535b0000000000000000000a40000023f00", True),
]

# name, keys, SPI of the command, encoded PoR (with UDH), last SW
RESPONSE_VECTORS = [
    ("3DES-SJA5-CIPHERED-CC", SJA5_3DES, SPI_CC_POR_CIPHERED_CC,
     "027100001c12b000118bb989492c632529326a2f4681feb37c825bc9021c9f6d0b", 0x6132),
    ("3DES-SJA5-UNCIPHERED-CC", SJA5_3DES, SPI_CC_POR_UNCIPHERED_CC,
     "027100001612b0001100000000000000b5bcd6353a421fae016132", 0x6132),
    ("3DES-SJA5-UNCIPHERED-NOCC", SJA5_3DES, SPI_CC_POR_UNCIPHERED_NOCC,
     "027100000e0ab0001100000000000000016132", 0x6132),
    ("AES128-SJA5-CIPHERED-CC", SJA5_AES128, SPI_CC_POR_CIPHERED_CC,
     "027100002412b00011ebc6b497e2cad7aedf36ace0e3a29b38853f0fe9ccde81913be5702b73abce1f", 0x6132),
    ("Test_SMS_3DES.test_resp_3des_ciphered", KEYSET3_3DES, SPI_3DES_BASE,
     "027100001c12b000119660ebdb81be189b5e4389e9e7ab2bc0954f963ad869ed7c", 0x612F),
    ("Test_SMS_3DES.test_resp_3des_signed", KEYSET3_3DES,
     Spi(ciphering=True, checksum=Checksum.CC, por=PorRequest.ALWAYS, por_checksum=Checksum.CC),
     "027100001612b000110000000000000055f47118381175fb01612f", 0x612F),
    ("Test_SMS_3DES.test_resp_3des_none", KEYSET3_3DES,
     Spi(ciphering=True, checksum=Checksum.CC, por=PorRequest.ALWAYS),
     "027100000e0ab000110000000000000001612f", 0x612F),
]


# --- vectors -------------------------------------------------------------------------------------


@pytest.mark.vectors
@pytest.mark.parametrize(("name", "keys", "spi", "tar", "apdu", "encoded", "no_cpl"), COMMAND_VECTORS,
                         ids=[v[0] for v in COMMAND_VECTORS])
def test_pysim_command_vectors(name, keys, spi, tar, apdu, encoded, no_cpl):
    packet = build_command_packet(spi=spi, tar=tar, counter=0, data=apdu, udh=False, **keyargs(keys))
    assert (packet[2:] if no_cpl else packet).hex() == encoded
    parsed = parse_command_packet(packet, keys_for_kic_kid=keys, last_counter=None, udh=False)
    assert (parsed.tar, parsed.spi, parsed.data, parsed.counter) == (tar, spi, apdu, 0)
    # The same packet behind the SMS user data header (TS 31.115 clause 4).
    with_udh = build_command_packet(spi=spi.encode(), tar=tar, counter=0, data=apdu, **keyargs(keys))
    assert with_udh == h("027000") + packet
    assert parse_command_packet(with_udh, keys_for_kic_kid=keys, last_counter=None).data == apdu


@pytest.mark.vectors
@pytest.mark.parametrize(("name", "keys", "spi", "encoded", "sw"), RESPONSE_VECTORS,
                         ids=[v[0] for v in RESPONSE_VECTORS])
def test_pysim_por_vectors(name, keys, spi, encoded, sw):
    por = parse_response_packet(h(encoded), spi=spi, **keyargs(keys))
    assert por.ok
    assert por.secured
    assert por.tar == h("B00011")
    assert por.counter == 0
    compact = por.compact()
    assert (compact.executed, compact.sw, compact.data) == (1, sw, b"")
    # Our builder produces the card's PoR byte for byte.
    rebuilt = build_response_packet(spi=spi, tar=h("B00011"), counter=0, data=compact.encode(),
                                    **keyargs(keys))
    assert rebuilt.hex() == encoded


@pytest.mark.vectors
def test_pysim_por_signed_err_is_cc_failure():
    spi = Spi(ciphering=True, checksum=Checksum.CC, por=PorRequest.ALWAYS, por_checksum=Checksum.CC)
    bad = h("027100001612b000110000000000000055f47118381175fb02612f")
    with pytest.raises(OtaError) as err:
        parse_response_packet(bad, spi=spi, **keyargs(KEYSET3_3DES))
    assert err.value.por_status == PorStatus.RC_CC_DS_FAILED


@pytest.mark.vectors
def test_pysim_expanded_in_scp80_roundtrip():
    # ExpandedSmsPipelineTestCase: expanded list through a 3DES secured packet to TAR 000000.
    script = build_expanded_commands([h("80f24002024f0000")])
    packet = build_command_packet(spi=SPI_CC_POR_CIPHERED_CC, tar=bytes(3), counter=0, data=script,
                                  udh=False, **keyargs(KEYSET3_3DES))
    parsed = parse_command_packet(packet, keys_for_kic_kid=KEYSET3_3DES, last_counter=None, udh=False)
    assert parsed.data.hex() == "aa0a220880f24002024f0000"
    # plaintext PoR carrying an expanded response with a 198-byte registry
    registry = bytes(range(198))
    body = build_expanded_response([RApdu(registry, 0x9000)])
    por = build_response_packet(spi=SPI_CC_POR_UNCIPHERED_NOCC, tar=bytes(3), counter=0, data=body,
                                **keyargs(KEYSET3_3DES))
    assert por[:6] == h("027100") + (1 + 3 + 7 + len(body)).to_bytes(2, "big") + h("0a")
    resp = parse_expanded_response(
        parse_response_packet(por, spi=SPI_CC_POR_UNCIPHERED_NOCC, **keyargs(KEYSET3_3DES)).data
    )
    assert (resp.number_of_commands, resp.last_sw, resp.last_data) == (1, 0x9000, registry)


# --- SPI / KIc / KID -----------------------------------------------------------------------------


@given(st.sampled_from(CounterMode), st.booleans(), st.sampled_from(Checksum), st.sampled_from(PorRequest),
       st.sampled_from(Checksum), st.booleans(), st.booleans())
@pytest.mark.property
def test_spi_roundtrip(counter, ciphering, checksum, por, por_checksum, por_ciphered, submit):
    spi = Spi(counter, ciphering, checksum, por, por_checksum, por_ciphered, submit)
    assert Spi.decode(spi.encode()) == spi


def test_spi_bits():
    spi = Spi(counter=CounterMode.PLUS_ONE, ciphering=True, checksum=Checksum.CC, por=PorRequest.ON_ERROR,
              por_checksum=Checksum.RC, por_ciphered=True, por_via_submit=True)
    assert spi.encode() == bytes((0b0001_1110, 0b0011_0110))


@pytest.mark.parametrize("raw", ["2000", "0040", "0003", "00", "000000"])
def test_spi_reserved_or_bad_length(raw):
    with pytest.raises(OtaError) as err:
        Spi.decode(h(raw))
    assert err.value.por_status == PorStatus.UNIDENTIFIED_SECURITY_ERROR


def test_key_bytes():
    assert key_byte(3, KicAlgorithm.TDES_2KEY_CBC) == 0x35
    with pytest.raises(ValueError, match="nibble"):
        key_byte(16, 1)


# --- round trips ---------------------------------------------------------------------------------

KEYSETS = {
    "3DES-2key": OtaKeys(kic_key=bytes(range(16)), kid_key=bytes(range(16, 32)), kic=0x15, kid=0x15),
    "3DES-3key": OtaKeys(kic_key=bytes(range(24)), kid_key=bytes(range(24, 48)), kic=0x19, kid=0x19),
    "AES-128": OtaKeys(kic_key=bytes(range(16)), kid_key=bytes(range(16, 32)), kic=0x22, kid=0x22),
    "AES-256": OtaKeys(kic_key=bytes(range(32)), kid_key=bytes(range(32, 64)), kic=0x12, kid=0x12),
    "DES": OtaKeys(kic_key=bytes(range(8)), kid_key=bytes(range(8, 16)), kic=0x11, kid=0x11),
    "DES-ECB": OtaKeys(kic_key=bytes(range(8)), kid_key=bytes(range(8, 16)), kic=0x1D, kid=0x11),
}
TAR = h("B00010")


@pytest.mark.parametrize("keyset", ["3DES-2key", "3DES-3key", "AES-128", "AES-256", "DES", "DES-ECB"])
@pytest.mark.parametrize("ciphering", [True, False])
@pytest.mark.parametrize("mode", list(CounterMode))
def test_command_roundtrip(keyset, ciphering, mode):
    keys = KEYSETS[keyset]
    spi = Spi(counter=mode, ciphering=ciphering, checksum=Checksum.CC, por_checksum=Checksum.CC,
              por_ciphered=ciphering)
    data = h("80E60C00") + bytes([20]) + bytes(range(20))
    packet = build_command_packet(spi=spi, tar=TAR, counter=42, data=data, **keyargs(keys))
    block = 16 if keyset.startswith("AES") else 8
    if ciphering:
        assert (len(packet) - 13) % block == 0
    parsed = parse_command_packet(packet, keys_for_kic_kid=keys, last_counter=41)
    assert (parsed.data, parsed.counter, parsed.tar, parsed.spi) == (data, 42, TAR, spi)
    assert len(parsed.checksum) == 8
    assert parsed.counter_state == (42 if mode in (CounterMode.HIGHER, CounterMode.PLUS_ONE) else 41)
    assert parsed.pcntr == ((-(6 + 8 + len(data))) % block if ciphering else 0)

    por = build_response_packet(spi=spi, tar=TAR, counter=42, data=build_compact_response(1, 0x9000),
                                **keyargs(keys))
    resp = parse_response_packet(por, spi=spi, **keyargs(keys))
    assert (resp.status, resp.counter, resp.compact().sw) == (0, 42, 0x9000)


@pytest.mark.parametrize("rc", [RcAlgorithm.CRC16, RcAlgorithm.CRC32])
def test_redundancy_check_roundtrip(rc):
    keys = OtaKeys(kic_key=bytes(16), kid_key=b"", kic=0x15, kid=key_byte(1, rc))
    spi = Spi(checksum=Checksum.RC, ciphering=True, por_checksum=Checksum.RC)
    packet = build_command_packet(spi=spi, tar=TAR, counter=1, data=SELECT_MF, **keyargs(keys))
    assert packet[5] == 13 + (2 if rc == RcAlgorithm.CRC16 else 4)
    assert parse_command_packet(packet, keys_for_kic_kid=keys, last_counter=None).data == SELECT_MF
    por = build_response_packet(spi=spi, tar=TAR, counter=1, **keyargs(keys))
    assert parse_response_packet(por, spi=spi, **keyargs(keys)).ok


def test_no_checksum_ciphered_roundtrip_and_aes_cc4():
    keys = KEYSETS["AES-128"]
    spi = Spi(ciphering=True, checksum=Checksum.CC)
    packet = build_command_packet(spi=spi, tar=TAR, counter=0, data=b"", cc_length=4, **keyargs(keys))
    assert packet[5] == 17
    assert parse_command_packet(packet, keys_for_kic_kid=keys, last_counter=None).data == b""
    plain = Spi(ciphering=False, checksum=Checksum.NONE)
    packet = build_command_packet(spi=plain, tar=TAR, counter=0, data=SELECT_MF, **keyargs(keys))
    assert packet.endswith(SELECT_MF)


def test_implicit_algorithm():
    keys = KEYSETS["3DES-2key"]
    spi = Spi(ciphering=True, checksum=Checksum.CC)
    args = {"kic": 0x10, "kid": 0x10, "kic_key": keys.kic_key, "kid_key": keys.kid_key}
    agreed = {"implicit_kic": KicAlgorithm.TDES_2KEY_CBC, "implicit_kid": KidAlgorithm.TDES_2KEY_CBC}
    packet = build_command_packet(spi=spi, tar=TAR, counter=0, data=SELECT_MF, **agreed, **args)
    explicit = build_command_packet(spi=spi, tar=TAR, counter=0, data=SELECT_MF, **keyargs(keys))
    assert packet[8:10] == h("1010")
    assert len(packet) == len(explicit)
    # Without the agreed algorithms the receiving entity cannot process the header.
    assert _status(packet, keys_for_kic_kid=keys) == PorStatus.UNIDENTIFIED_SECURITY_ERROR
    no_cc = build_command_packet(spi=Spi(ciphering=True, checksum=Checksum.NONE), tar=TAR, counter=0,
                                 data=SELECT_MF, **agreed, **args)
    assert _status(no_cc, keys_for_kic_kid=keys) == PorStatus.CIPHERING_ERROR
    got = parse_command_packet(packet, keys_for_kic_kid=keys, last_counter=None, **agreed)
    assert got.data == SELECT_MF


# --- receiving-entity failures -------------------------------------------------------------------


def _packet(mode=CounterMode.HIGHER, counter=5, keys=KEYSETS["3DES-2key"], ciphering=True, **kw):
    spi = Spi(counter=mode, ciphering=ciphering, checksum=Checksum.CC, por_checksum=Checksum.CC,
              por_ciphered=True)
    return build_command_packet(spi=spi, tar=TAR, counter=counter, data=SELECT_MF, **keyargs(keys), **kw)


def _status(packet, **kw):
    kw.setdefault("keys_for_kic_kid", KEYSETS["3DES-2key"])
    kw.setdefault("last_counter", None)
    with pytest.raises(OtaError) as err:
        parse_command_packet(packet, **kw)
    return err.value.por_status


@pytest.mark.parametrize("mode", [CounterMode.HIGHER, CounterMode.PLUS_ONE])
@pytest.mark.parametrize("last", [5, 6, 1000])
def test_replayed_counter_is_low(mode, last):
    assert _status(_packet(mode, 5), last_counter=last) == PorStatus.COUNTER_LOW


def test_counter_plus_one_skipping_is_high():
    assert _status(_packet(CounterMode.PLUS_ONE, 7), last_counter=5) == PorStatus.COUNTER_HIGH
    assert parse_command_packet(_packet(CounterMode.HIGHER, 7), keys_for_kic_kid=KEYSETS["3DES-2key"],
                                last_counter=5).counter_state == 7


def test_counter_blocked():
    packet = _packet(CounterMode.HIGHER, COUNTER_MAX)
    accepted = parse_command_packet(packet, keys_for_kic_kid=KEYSETS["3DES-2key"],
                                    last_counter=COUNTER_MAX - 1)
    assert accepted.counter_state == COUNTER_MAX
    assert _status(packet, last_counter=COUNTER_MAX) == PorStatus.COUNTER_BLOCKED


def test_counter_available_mode_does_not_check():
    got = parse_command_packet(_packet(CounterMode.AVAILABLE, 1), keys_for_kic_kid=KEYSETS["3DES-2key"],
                               last_counter=9)
    assert (got.counter, got.counter_state) == (1, 9)


def test_wrong_kid_key_is_cc_failure():
    keys = KEYSETS["3DES-2key"]
    wrong = (keys.kic_key, bytes(16))
    assert _status(_packet(), keys_for_kic_kid=wrong) == PorStatus.RC_CC_DS_FAILED
    assert _status(_packet(ciphering=False), keys_for_kic_kid=wrong) == PorStatus.RC_CC_DS_FAILED


def test_wrong_kic_key_fails_cc():
    keys = KEYSETS["3DES-2key"]
    assert _status(_packet(), keys_for_kic_kid=(bytes(16), keys.kid_key)) == PorStatus.RC_CC_DS_FAILED


def test_cc_failure_before_counter_check():
    keys = KEYSETS["3DES-2key"]
    assert _status(_packet(counter=1), keys_for_kic_kid=(keys.kic_key, bytes(16)), last_counter=5) == 1


def test_unknown_tar_via_resolver():
    resolver = keys_by_tar({h("B00011"): KEYSETS["3DES-2key"]})
    assert _status(_packet(), keys_for_kic_kid=resolver) == PorStatus.TAR_UNKNOWN

    def lookup(kic, kid, tar):
        return {h("B00011"): (b"", b"")}[tar]

    assert _status(_packet(), keys_for_kic_kid=lookup) == PorStatus.TAR_UNKNOWN
    assert parse_command_packet(_packet(), keys_for_kic_kid=keys_by_tar({TAR: KEYSETS["3DES-2key"]}),
                                last_counter=None).data == SELECT_MF


def test_minimum_security_level():
    msl_cc_cipher_counter = 0b0001_0110  # counter 10, ciphering, CC
    assert meets_minimum_security(Spi(CounterMode.PLUS_ONE, True, Checksum.CC), msl_cc_cipher_counter)
    assert not meets_minimum_security(Spi(CounterMode.HIGHER, False, Checksum.CC), msl_cc_cipher_counter)
    assert _status(_packet(ciphering=False), minimum_security_level=msl_cc_cipher_counter) == 0x0A
    assert parse_command_packet(_packet(), keys_for_kic_kid=KEYSETS["3DES-2key"], last_counter=4,
                                minimum_security_level=msl_cc_cipher_counter).counter_state == 5


def test_digital_signature_unsupported():
    spi = Spi(checksum=Checksum.DS)
    with pytest.raises(OtaError) as err:
        build_command_packet(spi=spi, tar=TAR, counter=0, data=b"", **keyargs(KEYSETS["AES-128"]))
    assert err.value.por_status == PorStatus.UNIDENTIFIED_SECURITY_ERROR


def test_format_errors():
    packet = _packet()
    assert _status(packet[3:]) == PorStatus.UNIDENTIFIED_SECURITY_ERROR  # no UDH
    assert _status(packet[:-1]) == PorStatus.UNIDENTIFIED_SECURITY_ERROR  # CPL mismatch
    chl_too_big = bytearray(packet)
    chl_too_big[5] = 0xF0
    assert _status(bytes(chl_too_big)) == PorStatus.UNIDENTIFIED_SECURITY_ERROR
    odd = packet[:3] + (int.from_bytes(packet[3:5], "big") - 1).to_bytes(2, "big") + packet[5:-1]
    assert _status(odd) == PorStatus.CIPHERING_ERROR  # not whole cipher blocks


def test_build_argument_errors():
    keys = keyargs(KEYSETS["AES-128"])
    with pytest.raises(ProtocolError):
        build_command_packet(spi=Spi(), tar=b"\x00", counter=0, data=b"", **keys)
    with pytest.raises(ProtocolError):
        build_command_packet(spi=Spi(), tar=TAR, counter=COUNTER_MAX + 1, data=b"", **keys)
    with pytest.raises(OtaError):  # key of the wrong length for 3DES-3key
        build_command_packet(spi=Spi(ciphering=True), tar=TAR, counter=0, data=b"", kic=0x19, kid=0x19,
                             kic_key=bytes(16), kid_key=bytes(24))


# --- PoR -----------------------------------------------------------------------------------------


def test_por_for_error_is_unsecured_and_parses():
    packet = _packet(CounterMode.HIGHER, 5)
    with pytest.raises(OtaError) as err:
        parse_command_packet(packet, keys_for_kic_kid=KEYSETS["3DES-2key"], last_counter=5)
    por = por_for_error(err.value, tar=TAR, counter=5)
    assert por == h("027100000b0a") + TAR + h("0000000005" "00" "02")
    spi = Spi.decode(packet[6:8])
    resp = parse_response_packet(por, spi=spi, **keyargs(KEYSETS["3DES-2key"]))
    assert (resp.status, resp.secured, resp.ok, resp.counter) == (PorStatus.COUNTER_LOW, False, False, 5)
    assert por_for_error(ValueError("x"), tar=TAR, udh=False)[-1] == PorStatus.UNIDENTIFIED_SECURITY_ERROR


def test_unsecured_por_ok_is_rejected_when_security_asked():
    spi = SPI_CC_POR_CIPHERED_CC
    por = build_response_packet(spi=Spi(), tar=TAR, counter=0, **keyargs(SJA5_3DES))
    with pytest.raises(OtaError) as err:
        parse_response_packet(por, spi=spi, **keyargs(SJA5_3DES))
    assert err.value.por_status == PorStatus.RC_CC_DS_FAILED


def test_por_required():
    assert por_required(Spi(por=PorRequest.ALWAYS), 0)
    assert not por_required(Spi(por=PorRequest.ON_ERROR), 0)
    assert por_required(Spi(por=PorRequest.ON_ERROR).encode(), PorStatus.COUNTER_LOW)
    assert not por_required(Spi(por=PorRequest.NONE), PorStatus.COUNTER_LOW)


def test_por_without_udh_and_error_status_secured():
    keys = KEYSETS["AES-128"]
    spi = Spi(por_checksum=Checksum.CC, por_ciphered=True)
    por = build_response_packet(spi=spi, tar=TAR, counter=3, status=PorStatus.MORE_TIME, udh=False,
                                **keyargs(keys))
    resp = parse_response_packet(por, spi=spi, udh=False, **keyargs(keys))
    assert (resp.status, resp.secured, resp.data) == (PorStatus.MORE_TIME, True, b"")


# --- RAM / RFM lists (TS 102 226) ----------------------------------------------------------------


@pytest.mark.vectors
@pytest.mark.parametrize(("length", "encoded"), [
    (0, "00"), (1, "01"), (127, "7f"), (128, "8180"), (198, "81c6"), (255, "81ff"), (256, "820100"),
    (65535, "82ffff"),
])
def test_ber_length(length, encoded):
    assert encode_length(length).hex() == encoded


@pytest.mark.vectors
def test_expanded_command_vectors():
    assert build_expanded_commands([h("80f24002024f0000")]).hex() == "aa0a220880f24002024f0000"
    two = build_expanded_commands([h("80f24002024f0000"), h("00a40004023f0000")])
    assert two.hex() == "aa14220880f24002024f0000220800a40004023f0000"
    assert parse_expanded_commands(two).apdus == [h("80f24002024f0000"), h("00a40004023f0000")]
    capdu = h("80f24000") + bytes([195]) + bytes(range(195))
    long = build_expanded_commands([capdu])
    assert long[:6].hex() == "aa81cb2281c8"
    assert long[6:] == capdu
    assert parse_expanded_commands(long).apdus == [capdu]
    assert build_expanded_commands([h("80ca00e000")], indefinite=True).hex() == "ae80220580ca00e0000000"
    rfm = build_expanded_commands([h("00a4000c023f00"), h("00a4000c022fe2"), h("00b000000a")],
                                  indefinite=True)
    assert rfm.hex() == "ae80220700a4000c023f00220700a4000c022fe2220500b000000a0000"
    parsed = parse_expanded_commands(rfm)
    assert parsed.indefinite
    assert len(parsed.apdus) == 3
    assert build_expanded_commands([h("80ca00e000")]).hex() == "aa07220580ca00e000"
    for apdus in ([h("00a40004023f00"), h("80f24002024f0000")], [bytes(250)]):
        assert parse_expanded_commands(build_expanded_commands(apdus)).apdus == apdus


def test_expanded_command_control_tlvs():
    script = build_expanded_commands([(0x81, b"\x01"), h("80ca00e000"), (0x83, b"\x01")])
    parsed = parse_expanded_commands(script)
    assert parsed.items == ((0x81, b"\x01"), (0x22, h("80ca00e000")), (0x83, b"\x01"))
    assert parsed.apdus == [h("80ca00e000")]


@pytest.mark.vectors
def test_expanded_response_vectors():
    registry = bytes(range(198))
    data = build_expanded_response([RApdu(registry, 0x9000)])
    assert data[:9].hex() == "ab81ce8001012381c8"
    dec = parse_expanded_response(data)
    assert (dec.number_of_commands, len(dec.responses)) == (1, 1)
    assert (dec.last_sw, dec.last_data) == (0x9000, registry)
    assert build_expanded_response([RApdu(b"", 0x6132)]).hex() == "ab0780010123026132"
    multi = parse_expanded_response(build_expanded_response([RApdu(h("6f21"), 0x9000), RApdu(b"", 0x6A82)]))
    assert [(r.sw, r.data) for r in multi.responses] == [(0x9000, h("6f21")), (0x6A82, b"")]
    assert (multi.number_of_commands, multi.last_sw, multi.truncated) == (2, 0x6A82, False)
    bad = parse_expanded_response(h("ab06800101900101"))
    assert bad.bad_format == b"\x01"
    assert bad.last_sw is None
    assert parse_expanded_response(h("ab06800101810101")).immediate_action == b"\x01"
    assert parse_expanded_response(h("ab06800101830102")).script_chaining == b"\x02"
    truncated = build_expanded_response([RApdu(h("6f21"), 0x9000), RApdu(h("aabb"), 0x62F1)])
    assert parse_expanded_response(truncated).truncated
    assert not parse_expanded_response(build_expanded_response([RApdu(b"", 0x6282)])).truncated
    assert parse_expanded_response(h("ab0780010123029000")).last_sw == 0x9000


@pytest.mark.vectors
def test_expanded_indefinite_response_vectors():
    rfm = parse_expanded_response(h("af80" "23029000" "23029000" "230c988812010000408608149000" "0000"))
    assert [(r.sw, r.data) for r in rfm.responses] == [
        (0x9000, b""), (0x9000, b""), (0x9000, h("98881201000040860814"))]
    assert rfm.executed is None
    assert rfm.number_of_commands == 3
    assert rfm.indefinite
    ram = ("af80" "2334e030c00403308810c00402308810c00401308810c00402408810"
           "c00401408510c00403018810c00402018810c004010188109000" "0000")
    dec = parse_expanded_response(h(ram))
    assert len(dec.responses) == 1
    assert dec.last_sw == 0x9000
    assert dec.last_data == h("e030c00403308810c00402308810c00401308810c00402408810"
                              "c00401408510c00403018810c00402018810c00401018810")
    good = h("af80" "23029000" "230c988812010000408608149000" "0000")
    for cut in (1, 2, 3):
        with pytest.raises(TlvError):
            parse_expanded_response(good[:-cut])
    bad = parse_expanded_response(h("af809001010000"))
    assert bad.bad_format == b"\x01"
    assert bad.last_sw is None
    with pytest.raises(TlvError):
        parse_expanded_response(h("af8023029000"))
    built = build_expanded_response([RApdu(b"", 0x9000), RApdu(h("9888"), 0x9000)], indefinite=True)
    assert built.hex() == "af80230290002304988890000000"


def test_compact_lists():
    apdus = [h("00a40004023f00"), h("00b0000010"), h("80e60c0003010203")]
    packed = build_compact_commands(apdus)
    assert packed == b"".join(apdus)
    assert parse_compact_commands(packed) == apdus
    assert parse_compact_response(h("016132")) == parse_compact_response(build_compact_response(1, 0x6132))
    resp = parse_compact_response(h("02" "9000" "6f21"))
    assert (resp.executed, resp.sw, resp.data) == (2, 0x9000, h("6f21"))
    for bad in (h("00a4000402"), h("00a400"), b""):
        with pytest.raises(ApduError):
            parse_compact_commands(bad)
    with pytest.raises(ApduError):
        parse_compact_response(h("0190"))


# --- properties ----------------------------------------------------------------------------------

_FIXED_KEYS = (bytes(range(16)), bytes(range(16, 32)))


@pytest.mark.property
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120), st.booleans(), st.one_of(st.none(), st.integers(0, COUNTER_MAX)))
def test_random_command_bytes_only_ota_error(data, udh, last):
    status = None
    try:
        parse_command_packet(data, keys_for_kic_kid=_FIXED_KEYS, last_counter=last, udh=udh)
    except OtaError as exc:
        status = exc.por_status
    assert status is None or 0 <= status <= 0x0C


@pytest.mark.property
@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=60), st.binary(min_size=2, max_size=2), st.integers(0, 255),
       st.integers(0, 255))
def test_random_header_fields_only_ota_error(tail, spi, kic, kid):
    body = spi + bytes((kic, kid)) + TAR + tail
    for chl in (13, 21, 15, 17):
        packet = h("027000") + (1 + len(body)).to_bytes(2, "big") + bytes((chl,)) + body
        with contextlib.suppress(OtaError):
            parse_command_packet(packet, keys_for_kic_kid=_FIXED_KEYS, last_counter=0)
        with contextlib.suppress(OtaError):
            parse_response_packet(packet, spi=spi, kic=kic, kid=kid, kic_key=_FIXED_KEYS[0],
                                  kid_key=_FIXED_KEYS[1])


@pytest.mark.property
@settings(max_examples=50, deadline=None)
@given(st.sampled_from(["3DES-2key", "AES-128"]), st.booleans(), st.binary(max_size=40))
def test_truncations_and_bitflips_only_ota_error(keyset, ciphering, data):
    keys = KEYSETS[keyset]
    spi = Spi(counter=CounterMode.HIGHER, ciphering=ciphering, checksum=Checksum.CC,
              por_checksum=Checksum.CC, por_ciphered=ciphering)
    packet = build_command_packet(spi=spi, tar=TAR, counter=7, data=data, **keyargs(keys))
    for cut in range(len(packet)):
        with pytest.raises(OtaError):
            parse_command_packet(packet[:cut], keys_for_kic_kid=keys, last_counter=6)
    for i in range(3, len(packet)):
        flipped = bytearray(packet)
        flipped[i] ^= 0x01
        with pytest.raises(OtaError):
            parse_command_packet(bytes(flipped), keys_for_kic_kid=keys, last_counter=6)
    por = build_response_packet(spi=spi, tar=TAR, counter=7, data=data, **keyargs(keys))
    for cut in range(len(por)):
        with pytest.raises(OtaError):
            parse_response_packet(por[:cut], spi=spi, **keyargs(keys))


@pytest.mark.property
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_random_ram_bytes_only_protocol_error(data):
    for parse in (parse_compact_commands, parse_compact_response, parse_expanded_commands,
                  parse_expanded_response):
        with contextlib.suppress(ProtocolError):
            parse(data)


_capdu = st.one_of(
    st.tuples(st.binary(min_size=4, max_size=4).filter(lambda hd: hd[1] not in CASE2_INSTRUCTIONS),
              st.binary(max_size=40)).map(lambda t: t[0] + bytes([len(t[1])]) + t[1]),
    st.tuples(st.sampled_from([h("00B00000"), h("00B20104"), h("80CA00E0")]), st.integers(0, 255))
    .map(lambda t: t[0] + bytes([t[1]])),
)


@pytest.mark.property
@settings(max_examples=100, deadline=None)
@given(st.lists(_capdu, min_size=1, max_size=6), st.sampled_from(sorted(KEYSETS)), st.booleans(),
       st.booleans())
def test_apdu_list_roundtrip_through_scp80(apdus, keyset, ciphering, expanded):
    keys = KEYSETS[keyset]
    script = (build_expanded_commands(apdus, indefinite=ciphering) if expanded
              else build_compact_commands(apdus))
    spi = Spi(counter=CounterMode.PLUS_ONE, ciphering=ciphering, checksum=Checksum.CC)
    packet = build_command_packet(spi=spi, tar=TAR, counter=1, data=script, **keyargs(keys))
    got = parse_command_packet(packet, keys_for_kic_kid=keys, last_counter=0)
    assert got.counter_state == 1
    back = parse_expanded_commands(got.data).apdus if expanded else parse_compact_commands(got.data)
    assert back == apdus
    responses = [RApdu(a[5:], 0x9000) for a in apdus]
    reply = build_expanded_response(responses)
    assert parse_expanded_response(reply).responses == tuple(responses)
