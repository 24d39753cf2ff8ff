"""ISO 8583 UnionPay dialects: round trips, MACs, typed errors, masking, framing (domain brief section 5)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paylab.lab.protocol.crypto.mac import cup_ecb_mac, iso9797_mac_alg1, x9_19_mac
from paylab.lab.protocol.crypto.primitives import des_encrypt, xor
from paylab.lab.protocol.errors import CryptoError, Iso8583Error, MacError
from paylab.lab.protocol.iso8583 import (
    FIELDS,
    MAC_FIELD,
    REQUEST_TAGS,
    RESPONSE_CODES,
    SPECS,
    CupsHeader,
    Iso8583Message,
    StreamDeframer,
    decode_message,
    encode_message,
    field55_decode,
    field55_encode,
    format_message,
    frame,
    purchase_request,
    response_to,
    reversal_request,
    sign_on_request,
    switch_mab,
    to_json,
)
from paylab.lab.protocol.tlv import Tlv

PAN = "6212345678901234567"  # 19 digits: odd, exercises the F pad
TRACK2 = PAN + "D30122200000123456"  # 37 characters, odd
PIN_BLOCK = bytes.fromhex("0612AC9876543210")
MAK8 = bytes.fromhex("0123456789ABCDEF")
MAK16 = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")

# Field 55 as the reader sends it (brief section 1, [S]), values from the qPBOC GPO trace where the
# trace has them (9F26, 9F10, 9F36, 82, PDOL data: 9F02 9F03 9F1A 95 5F2A 9A 9C 9F37); the rest are
# plausible terminal values.
FIELD55_VALUES: dict[int, str] = {
    0x9F26: "AD03EE811AFAD484",
    0x9F27: "80",
    0x9F10: "07010103A00000010A010000038787868FD1FC",
    0x9F37: "2B29EBE4",
    0x9F36: "0ADC",
    0x95: "0000000000",
    0x9A: "170601",
    0x9C: "00",
    0x9F02: "000000000001",
    0x5F2A: "0156",
    0x82: "7C00",
    0x9F1A: "0156",
    0x9F03: "000000000000",
    0x9F33: "E0E1C8",
    0x9F34: "000000",
    0x9F35: "22",
    0x9F1E: "3132333435363738",
    0x84: "A000000333010101",
    0x9F09: "0030",
    0x9F41: "00000001",
}
FIELD55_OBJS = [Tlv(tag, bytes.fromhex(FIELD55_VALUES[tag])) for tag in REQUEST_TAGS]
FIELD55 = field55_encode(FIELD55_OBJS)


def _purchase(dialect="cup-pos", **kw):
    args = {
        "pan": PAN,
        "amount": 1,
        "stan": 123,
        "terminal_id": "12345678",
        "merchant_id": "898100012340003",
        "field55": FIELD55,
        "track2": TRACK2,
        "expiry": "3012",
        "psn": "001",
        "pin_block": PIN_BLOCK,
        "dialect": dialect,
    }
    args.update(kw)
    return purchase_request(**args)


def _without_mac(msg, dialect):
    return {n: v for n, v in msg.fields.items() if n != MAC_FIELD[dialect]}


# --- round trips ------------------------------------------------------------------------------


def test_field55_request_list_matches_the_brief_and_round_trips():
    assert [o.tag for o in field55_decode(FIELD55)] == list(REQUEST_TAGS)
    assert field55_decode(FIELD55) == FIELD55_OBJS
    assert len(FIELD55) <= 255


@pytest.mark.parametrize("dialect", ["cup-pos", "switch"])
def test_purchase_with_field55_round_trips(dialect):
    msg = _purchase(dialect)
    raw = encode_message(msg, dialect)
    back = decode_message(raw, dialect)
    assert back.mti == "0200"
    assert back.fields == msg.fields
    assert back.fields[55] == FIELD55
    assert encode_message(back, dialect) == raw


def test_cup_pos_wire_layout():
    msg = _purchase("cup-pos")
    raw = encode_message(msg, "cup-pos")
    assert raw[:5] == bytes.fromhex("6000030000")  # TPDU 60 dddd ssss
    assert raw[5:11] == bytes.fromhex("603100000000")  # POS header
    assert raw[11:13] == bytes.fromhex("0200")  # MTI in BCD
    bitmap = raw[13:21]
    present = {i + 1 for i in range(64) if bitmap[i // 8] & (0x80 >> (i % 8))}
    assert present == set(msg.fields)
    # PAN: 1-byte BCD length (19 digits), then BCD right-padded with F.
    assert raw[21:32] == bytes.fromhex("19" + PAN + "F")
    # Track 2: the separator is the nibble D, odd length padded F.
    assert bytes.fromhex("37" + TRACK2 + "F") in raw
    # Field 22 left-aligned (071 -> 07 10), field 23 right-aligned (001 -> 00 01).
    assert bytes.fromhex("07100001") in raw
    # Field 55: 2-byte BCD length.
    assert bytes.fromhex(f"{len(FIELD55):04d}") + FIELD55 in raw


def test_switch_wire_layout():
    msg = _purchase("switch")
    raw = encode_message(msg, "switch")
    header = CupsHeader.decode(raw)
    assert raw[0] == 0x2E
    assert header.total_length == len(raw)
    assert raw[46:50] == b"0200"  # MTI in ASCII
    assert raw[50] & 0x80 == 0  # no field above 64: no secondary bitmap
    assert b"19" + PAN.encode() in raw  # ASCII LLVAR
    assert f"{len(FIELD55):03d}".encode() + FIELD55 in raw  # binary LLLVAR with ASCII length
    with_mac = encode_message(msg, "switch", mak=MAK16)
    assert with_mac[50] & 0x80  # field 128 needs the secondary bitmap


def test_cup_pos_decoder_accepts_a_zero_padded_pan():
    raw = encode_message(_purchase("cup-pos"), "cup-pos")
    zero_padded = raw.replace(bytes.fromhex("19" + PAN + "F"), bytes.fromhex("19" + PAN + "0"))
    assert zero_padded != raw
    assert decode_message(zero_padded, "cup-pos").fields[2] == PAN


def test_track2_equals_sign_is_sent_as_d():
    msg = _purchase("cup-pos", track2=TRACK2.replace("D", "="))
    assert decode_message(encode_message(msg, "cup-pos"), "cup-pos").fields[35] == TRACK2


# --- MACs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("mak", [MAK8, MAK16])
def test_cup_pos_mac_generated_and_verified(mak):
    msg = _purchase("cup-pos")
    raw = encode_message(msg, "cup-pos", mak=mak)
    # Field 64 = CUP ECB MAC over MTI .. end of field 63 (TPDU and header excluded).
    assert raw[-8:] == cup_ecb_mac(mak, raw[11:-8])
    assert all(c in b"0123456789ABCDEF" for c in raw[-8:])
    back = decode_message(raw, "cup-pos", mak=mak)
    assert back.fields[64] == raw[-8:]
    assert _without_mac(back, "cup-pos") == msg.fields


def _flip_bit_in(raw: bytes, needle: bytes, bit: int = 0x01) -> bytes:
    pos = raw.index(needle)
    return raw[:pos] + bytes([raw[pos] ^ bit]) + raw[pos + 1 :]


@pytest.mark.parametrize("dialect", ["cup-pos", "switch"])
def test_one_flipped_bit_is_a_mac_error(dialect):
    raw = encode_message(_purchase(dialect), dialect, mak=MAK16)
    decode_message(raw, dialect, mak=MAK16)
    tampered = _flip_bit_in(raw, b"12345678898100012340003")  # terminal ID '1' -> '0', still valid ASCII
    assert decode_message(tampered, dialect).fields[41] == "02345678"  # structurally fine
    with pytest.raises(MacError, match=r"A0"):
        decode_message(tampered, dialect, mak=MAK16)
    mac_flipped = raw[:-1] + bytes([raw[-1] ^ 0x01])
    with pytest.raises(MacError):
        decode_message(mac_flipped, dialect, mak=MAK16)
    with pytest.raises(MacError):
        decode_message(raw, dialect, mak=MAK8)  # wrong key


def test_cup_pos_mac_does_not_cover_the_tpdu():
    raw = encode_message(_purchase("cup-pos"), "cup-pos", mak=MAK8)
    routed = bytes.fromhex("6000000003") + raw[5:]
    assert decode_message(routed, "cup-pos", mak=MAK8).tpdu == bytes.fromhex("6000000003")


def test_mac_is_checked_only_when_present_and_keyed():
    plain = encode_message(_purchase("cup-pos"), "cup-pos")
    assert 64 not in decode_message(plain, "cup-pos", mak=MAK8).fields
    raw = encode_message(_purchase("cup-pos"), "cup-pos", mak=MAK8)
    assert decode_message(_flip_bit_in(raw, b"12345678898100012340003"), "cup-pos").fields[64] == raw[-8:]


def test_bad_mak_length_is_a_crypto_error():
    with pytest.raises(CryptoError):
        encode_message(_purchase("cup-pos"), "cup-pos", mak=bytes(10))
    with pytest.raises(CryptoError):
        decode_message(encode_message(_purchase("cup-pos"), "cup-pos"), "cup-pos", mak=bytes(7))


def test_switch_mab_and_mac():
    msg = _purchase("switch", merchant_id="Shop-1 #a.b, c", stan=7)
    msg.fields[102] = "  acct_1  "
    raw = encode_message(msg, "switch", mak=MAK16)
    import iso8583

    _, wire = iso8583.decode(raw, SPECS["switch"])
    mab = switch_mab(wire)
    # MTI 2 3 4 7 11 18 25 32 33 41 42 102, LL prefixes kept, upper case, only A-Z 0-9 , . space.
    assert mab == (
        b"0200 19" + PAN.encode() + b" 000000 000000000001 0101000000 000007 5411 00 0848020000 "
        b"0848020000 12345678 SHOP1 A.B, C 10 ACCT1"
    )
    assert raw[-8:] == x9_19_mac(MAK16, mab)
    raw8 = encode_message(msg, "switch", mak=MAK8)
    assert raw8[-8:] == iso9797_mac_alg1(MAK8, mab, padding="m1", cipher="des")
    assert decode_message(raw8, "switch", mak=MAK8).fields[128] == raw8[-8:]


@pytest.mark.vectors
def test_cup_ecb_mac_published_example():
    # Public MacEcbUtils.java (package wang.ray.tools.security.mac.xor.method1): MAK
    # 9999999999999999 over this UTF-8 text prints 4144373542353433 = ASCII "AD75B543".
    data = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<MESSAGE><MHEAD><VERSION>2.0</VERSION>'
        b"<PROCCODE>P1001</PROCCODE><MERNO>822855059430001</MERNO><TERID>47767796</TERID>"
        b"<TRANMERNO>822855059430001</TRANMERNO><BANKCODE>48220000</BANKCODE>"
        b"<PTIME>20181120103152</PTIME></MHEAD><MBODY><POLICYID>36015868647886</POLICYID>"
        b"<VERIFICACODE>58686865</VERIFICACODE></MBODY></MESSAGE>"
    )
    assert cup_ecb_mac(bytes.fromhex("9999999999999999"), data) == b"AD75B543"


def test_cup_ecb_mac_by_hand_over_a_message():
    raw = encode_message(_purchase("cup-pos"), "cup-pos", mak=MAK8)
    data = raw[11:-8] + bytes(-len(raw[11:-8]) % 8)
    block = bytes(8)
    for i in range(0, len(data), 8):  # 1. XOR of all blocks
        block = xor(block, data[i : i + 8])
    expanded = block.hex().upper().encode()  # 2. hex-expand to 16 characters
    step3 = des_encrypt(MAK8, xor(des_encrypt(MAK8, expanded[:8]), expanded[8:]))  # 3.
    assert raw[-8:] == step3.hex().upper().encode()[:8]  # 4. first 8 hex characters


# --- typed errors -----------------------------------------------------------------------------


def test_truncation_in_field_35_names_the_field():
    raw = encode_message(_purchase("cup-pos"), "cup-pos")
    start = raw.index(bytes.fromhex("37" + TRACK2[:10]))
    with pytest.raises(Iso8583Error) as info:
        decode_message(raw[: start + 5], "cup-pos")
    assert info.value.field == "field 35"
    assert str(info.value).startswith("field 35: ")


@pytest.mark.parametrize("dialect", ["cup-pos", "switch"])
def test_every_truncation_is_a_typed_error(dialect):
    raw = encode_message(_purchase(dialect), dialect, mak=MAK16)
    for cut in range(len(raw)):
        with pytest.raises(Iso8583Error) as info:
            decode_message(raw[:cut], dialect, mak=MAK16)
        assert info.value.field, cut
        assert "unexpected" not in str(info.value)


def test_garbage_is_named():
    raw = bytearray(encode_message(_purchase("cup-pos"), "cup-pos"))
    bad_mti = bytes(raw[:11]) + b"\x02\xa0" + bytes(raw[13:])
    with pytest.raises(Iso8583Error, match=r"^MTI: "):
        decode_message(bad_mti, "cup-pos")
    undefined = bytearray(raw)
    undefined[13] |= 0x08  # field 5 is not in the POS dialect
    with pytest.raises(Iso8583Error, match=r"^field 5: not defined"):
        decode_message(bytes(undefined), "cup-pos")
    secondary = bytearray(raw)
    secondary[13] |= 0x80
    with pytest.raises(Iso8583Error, match=r"^secondary bitmap: "):
        decode_message(bytes(secondary), "cup-pos")
    not_bcd = bytes(raw).replace(bytes.fromhex("000000000001"), bytes.fromhex("00000000000A"), 1)
    with pytest.raises(Iso8583Error, match=r"^field 4: "):
        decode_message(not_bcd, "cup-pos")
    with pytest.raises(Iso8583Error, match=r"^field 64: Extra data|^field 60: Extra data"):
        decode_message(bytes(raw) + b"\x00", "cup-pos")
    with pytest.raises(Iso8583Error, match=r"^header: "):
        decode_message(b"\x60\x00", "cup-pos")
    with pytest.raises(Iso8583Error):
        decode_message("not bytes", "cup-pos")  # type: ignore[arg-type]


def test_switch_header_errors():
    raw = encode_message(_purchase("switch"), "switch")
    with pytest.raises(Iso8583Error, match=r"^header: .*0x2E"):
        decode_message(b"\x2f" + raw[1:], "switch")
    with pytest.raises(Iso8583Error, match=r"^header: header total length"):
        decode_message(raw[:2] + b"0001" + raw[6:], "switch")
    with pytest.raises(Iso8583Error, match=r"^header: "):
        decode_message(raw[:2] + b"00x1" + raw[6:], "switch")


def test_encode_errors_name_the_field():
    msg = _purchase("cup-pos")
    for number, value, pattern in [
        (4, "12", "^field 4: "),
        (4, "00000000000A", "^field 4: non-digit"),
        (52, "0612", "^field 52: binary field needs bytes"),
        (41, 12345678, "^field 41: "),
        (2, "1" * 20, "^field 2: "),
        (55, bytes(256), "^field 55: "),
        (7, "0101000000", "^field 7: not defined"),
    ]:
        bad = Iso8583Message(msg.mti, {**msg.fields, number: value}, msg.tpdu, msg.header)
        with pytest.raises(Iso8583Error, match=pattern):
            encode_message(bad, "cup-pos")
    with pytest.raises(Iso8583Error, match=r"^MTI: "):
        encode_message(Iso8583Message("200", {}), "cup-pos")
    with pytest.raises(Iso8583Error, match=r"^TPDU: "):
        encode_message(Iso8583Message("0800", {11: "000001"}, tpdu=b"\x60"), "cup-pos")
    with pytest.raises(ValueError, match=r"unknown ISO 8583 dialect"):
        encode_message(msg, "visa")  # type: ignore[arg-type]


def test_field55_errors():
    with pytest.raises(Iso8583Error, match=r"^field 55: "):
        field55_decode(bytes.fromhex("9F2608AD03"))
    with pytest.raises(Iso8583Error, match=r"^field 55: "):
        field55_encode([Tlv(0x9F10, bytes(253))])


# --- views and masking ------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["cup-pos", "switch"])
def test_pretty_view_masks_cardholder_data(dialect):
    msg = decode_message(encode_message(_purchase(dialect), dialect, mak=MAK16), dialect)
    if dialect == "cup-pos":
        msg.fields[62] = bytes.fromhex("11223344556677881122334455667788")
    text = format_message(msg, dialect)
    as_json = json.dumps(to_json(msg))
    for out in (text, as_json):
        assert PAN not in out
        assert "621234*********4567" in out
        assert "30122200000123456" not in out  # expiry + service code + discretionary data
        assert PIN_BLOCK.hex().upper() not in out
        assert "1122334455667788" not in out
    assert "Application Cryptogram" in text
    assert "AD03EE811AFAD484" in text
    assert "Primary account number" in text
    revealed = format_message(msg, dialect, reveal=True)
    assert PAN in revealed
    assert TRACK2 in revealed
    assert PIN_BLOCK.hex().upper() in revealed
    assert PAN in json.dumps(to_json(msg, reveal=True))


def test_view_of_malformed_field55_does_not_raise():
    msg = _purchase("cup-pos", field55=bytes.fromhex("9F2608AD03"))
    text = format_message(msg, "cup-pos")
    assert "malformed TLV" in text
    assert "9F2608AD03" not in text
    assert to_json(msg)["fields"]["55"] == "<masked 5 bytes>"


def test_to_json_shape():
    msg = _purchase("cup-pos")
    doc = to_json(msg)
    assert doc["mti"] == "0200"
    assert doc["tpdu"] == "6000030000"
    assert doc["fields"]["4"] == "000000000001"
    assert doc["fields"]["55"][0]["tag"] == "9F26"
    json.dumps(doc)


# --- framing ----------------------------------------------------------------------------------


def test_frame_prefixes():
    body = encode_message(_purchase("cup-pos"), "cup-pos")
    assert frame(body, "cup-pos") == len(body).to_bytes(2, "big") + body
    sbody = encode_message(_purchase("switch"), "switch")
    assert frame(sbody, "switch") == f"{len(sbody):04d}".encode() + sbody


@pytest.mark.parametrize("dialect", ["cup-pos", "switch"])
def test_stream_deframer_across_split_chunks(dialect):
    bodies = [encode_message(_purchase(dialect, stan=i), dialect) for i in (1, 2, 3)]
    stream = b"".join(frame(b, dialect) for b in bodies)
    for size in (1, 2, 3, 7, 64, len(stream)):
        deframer = StreamDeframer(dialect)
        got = []
        for i in range(0, len(stream), size):
            got += deframer.feed(stream[i : i + size])
        assert got == bodies
        assert deframer.pending == 0
    deframer = StreamDeframer(dialect)
    assert deframer.feed(stream[:5]) == []
    assert deframer.pending == 5


def test_stream_deframer_rejects_absurd_lengths():
    deframer = StreamDeframer("cup-pos")
    with pytest.raises(Iso8583Error, match=r"^length prefix: absurd message length 65535"):
        deframer.feed(b"\xff\xff")
    with pytest.raises(Iso8583Error):  # the stream stays out of sync
        deframer.feed(b"")
    with pytest.raises(Iso8583Error, match=r"absurd message length 3"):
        StreamDeframer("cup-pos").feed(b"\x00\x03abc")
    with pytest.raises(Iso8583Error, match=r"not 4 ASCII digits"):
        StreamDeframer("switch").feed(b"12a4")
    with pytest.raises(Iso8583Error, match=r"absurd"):
        StreamDeframer("switch", max_length=100).feed(b"0101")


def test_switch_keep_alive_is_skipped():
    body = encode_message(_purchase("switch"), "switch")
    assert StreamDeframer("switch").feed(b"0000" + frame(body, "switch") + b"0000") == [body]


# --- builders ---------------------------------------------------------------------------------


def test_reversal_request_cup_pos():
    original = _purchase("cup-pos")
    rev = reversal_request(original)
    assert rev.mti == "0400"
    assert rev.fields[39] == "98"
    assert rev.fields[11] == original.fields[11]
    assert rev.fields[4] == original.fields[4]
    assert 52 not in rev.fields
    assert 35 not in rev.fields
    assert [o.tag for o in field55_decode(rev.fields[55])] == [0x9F10, 0x9F36, 0x95, 0x9F1E]
    assert decode_message(encode_message(rev, "cup-pos", mak=MAK8), "cup-pos", mak=MAK8).mti == "0400"


def test_reversal_request_switch_carries_original_data_elements():
    original = _purchase("switch", transmission_time="0601120000")
    rev = reversal_request(original, dialect="switch", stan=124, transmission_time="0601120130")
    assert rev.mti == "0420"
    assert rev.fields[90] == "0200" + "000123" + "0601120000" + "00048020000" + "00048020000"
    assert rev.fields[11] == "000124"
    back = decode_message(encode_message(rev, "switch", mak=MAK16), "switch", mak=MAK16)
    assert back.fields[90] == rev.fields[90]


@pytest.mark.parametrize("dialect", ["cup-pos", "switch"])
def test_sign_on_request(dialect):
    msg = sign_on_request(stan=5, terminal_id="T0000001", merchant_id="898100012340003", dialect=dialect)
    assert msg.mti == "0800"
    back = decode_message(encode_message(msg, dialect), dialect)
    assert back.fields == msg.fields
    if dialect == "cup-pos":
        assert back.fields[60] == "00000001003"
    else:
        assert back.fields[70] == "001"


def test_response_to_swaps_tpdu_and_echoes():
    req = _purchase("cup-pos")
    resp = response_to(req, "00", extra={37: "000000000123", 38: "123456"})
    assert resp.mti == "0210"
    assert resp.tpdu == bytes.fromhex("6000000003")
    assert resp.fields[11] == req.fields[11]
    assert resp.response_code == "00"
    assert 52 not in resp.fields
    assert 55 not in resp.fields
    decode_message(encode_message(resp, "cup-pos", mak=MAK8), "cup-pos", mak=MAK8)


def test_response_codes_and_specs():
    assert RESPONSE_CODES["00"] == "Approved"
    assert RESPONSE_CODES["A0"] == "MAC error"
    assert set(SPECS) == {"cup-pos", "switch"}
    cup = {2, 3, 4, 11, 12, 13, 14, 15, 22, 23, 25, 26, 32, 35, 36, 37, 38, 39, 41, 42, 44, 48, 49,
           52, 53, 54, 55, 60, 61, 62, 63, 64}
    assert set(FIELDS["cup-pos"]) == cup
    assert FIELDS["cup-pos"][55].fmt == "b...255"
    assert FIELDS["switch"][128].fmt == "b8"
    assert SPECS["cup-pos"]["2"]["right_pad"] == "F"


# --- properties -------------------------------------------------------------------------------

_PRINTABLE = st.characters(min_codepoint=0x20, max_codepoint=0x7E)


def _value_strategy(d, dialect):
    lo = d.max_len if d.length == "fixed" else 0
    if d.kind == "b":
        return st.binary(min_size=lo, max_size=d.max_len)
    if d.kind == "n":
        return st.text("0123456789", min_size=lo, max_size=d.max_len)
    if d.kind == "z":
        alphabet = "0123456789D" if dialect == "cup-pos" else "0123456789D="
        return st.text(alphabet, min_size=lo, max_size=d.max_len)
    return st.text(_PRINTABLE, min_size=lo, max_size=d.max_len)


@st.composite
def _messages(draw, dialect):
    defs = FIELDS[dialect]
    numbers = draw(st.sets(st.sampled_from(sorted(n for n in defs if n != MAC_FIELD[dialect])), min_size=1))
    fields = {n: draw(_value_strategy(defs[n], dialect)) for n in sorted(numbers)}
    mti = draw(st.text("0123456789", min_size=4, max_size=4))
    return Iso8583Message(mti, fields)


@pytest.mark.property
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), dialect=st.sampled_from(["cup-pos", "switch"]))
def test_property_round_trip(data, dialect):
    msg = data.draw(_messages(dialect))
    raw = encode_message(msg, dialect, mak=MAK16)
    back = decode_message(raw, dialect, mak=MAK16)
    assert back.mti == msg.mti
    assert _without_mac(back, dialect) == msg.fields


def _decode_only_typed_errors(raw, dialect):
    message = ""
    try:
        decode_message(raw, dialect, mak=MAK16)
    except (Iso8583Error, MacError) as exc:
        message = str(exc)
    assert "unexpected" not in message


@pytest.mark.property
@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=300), dialect=st.sampled_from(["cup-pos", "switch"]))
def test_property_random_bytes_raise_only_iso8583_error(raw, dialect):
    _decode_only_typed_errors(raw, dialect)


@pytest.mark.property
@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    dialect=st.sampled_from(["cup-pos", "switch"]),
)
def test_property_mutated_messages_raise_only_typed_errors(data, dialect):
    raw = bytearray(encode_message(_purchase(dialect), dialect, mak=MAK16))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    _decode_only_typed_errors(bytes(raw[:cut]), dialect)
    _decode_only_typed_errors(bytes(raw), dialect)
