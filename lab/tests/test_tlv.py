"""BER-TLV (ISO/IEC 7816-4 5.2, EMV Book 3 Annex B) against the qPBOC trace of domain brief 1."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paylab.lab.protocol.errors import TlvError
from paylab.lab.protocol.tlv import (
    MAX_DEPTH,
    Tlv,
    decode,
    decode_one,
    encode,
    encode_length,
    find,
    find_all,
    format_tree,
    parse_length,
    parse_tag,
    spans,
    tag_bytes,
    tlv,
    to_dict,
    to_json_tree,
)

# Real card trace (qpboc-kernel QPboc-Kata-Run-Log.txt; the author replaced PAN digits with 9s).
PPSE_RESPONSE = bytes.fromhex(
    "6F30840E325041592E5359532E4444463031A51EBF0C1B61194F08A000000333010101"
    "500A50424F43204445424954870101"
)
SELECT_AID_RESPONSE = bytes.fromhex(
    "6F598408A000000333010101A54D500A50424F432044454249548701019F38189F66049F02069F03069F1A02"
    "95055F2A029A039C019F37045F2D027A689F1101019F120A50424F43204445424954BF0C0A9F4D020B0A"
    "DF4D020C0A"
)
GPO_RESPONSE = bytes.fromhex(
    "774F82027C009F36020ADC57116299999999999999D201120101234567899F101307010103A00000010A01"
    "0000038787868FD1FC9F2608AD03EE811AFAD4845F3401009F6C0200009F5D06000000038787"
)
FIELD_55 = bytes.fromhex(
    "9F2608AD03EE811AFAD4849F2701809F101307010103A00000010A010000038787868FD1FC9F37042B29EBE4"
    "9F36020ADC950500000000009A031706019C01009F02060000000000015F2A02015682027C009F1A020156"
    "9F03060000000000009F3303E0E9C89F34030000009F3501229F1E0846464646464646468408A000000333"
    "0101019F090200009F410400000005"
)
TRACK2 = bytes.fromhex("6299999999999999D20112010123456789")
PBOC = "A000000333"


@pytest.mark.vectors
def test_ppse_response_structure() -> None:
    (fci,) = decode(PPSE_RESPONSE)
    assert fci.tag == 0x6F
    assert fci.constructed
    df_name, proprietary = fci.children
    assert df_name == Tlv(0x84, b"2PAY.SYS.DDF01")
    (discretionary,) = proprietary.children
    assert discretionary.tag == 0xBF0C
    (app,) = discretionary.children
    assert [c.tag for c in app.children] == [0x4F, 0x50, 0x87]
    assert find([fci], 0x4F) == Tlv(0x4F, bytes.fromhex("A000000333010101"))
    assert find([fci], 0x50).value == b"PBOC DEBIT"
    assert encode([fci]) == PPSE_RESPONSE


@pytest.mark.vectors
def test_select_aid_response_structure() -> None:
    objects = decode(SELECT_AID_RESPONSE)
    flat = to_dict(objects)
    assert flat[0x84] == bytes.fromhex("A000000333010101")
    assert flat[0x9F38] == bytes.fromhex("9F66049F02069F03069F1A0295055F2A029A039C019F3704")
    assert flat[0x5F2D] == b"zh"
    assert flat[0x9F4D] == bytes.fromhex("0B0A")
    assert flat[0xDF4D] == bytes.fromhex("0C0A")
    assert 0xA5 not in flat
    assert 0xBF0C not in flat
    assert encode(objects) == SELECT_AID_RESPONSE


@pytest.mark.vectors
def test_gpo_response_structure() -> None:
    template = decode_one(GPO_RESPONSE)
    assert template.tag == 0x77
    assert [c.tag for c in template.children] == [0x82, 0x9F36, 0x57, 0x9F10, 0x9F26, 0x5F34, 0x9F6C, 0x9F5D]
    flat = to_dict([template])
    assert flat[0x57] == TRACK2
    assert flat[0x9F10] == bytes.fromhex("07010103A00000010A010000038787868FD1FC")
    assert flat[0x9F5D] == bytes.fromhex("000000038787")  # = e-cash balance inside the IDD
    assert template.encode() == GPO_RESPONSE
    assert Tlv.build(0x77, *template.children) == template


@pytest.mark.vectors
def test_field_55_round_trip() -> None:
    objects = decode(FIELD_55)
    assert [o.tag for o in objects][:3] == [0x9F26, 0x9F27, 0x9F10]
    assert len(objects) == 20
    assert to_dict(objects)[0x9F27] == b"\x80"
    assert encode(objects) == FIELD_55


def test_spans_give_offsets() -> None:
    found = spans(PPSE_RESPONSE)
    assert [(s.tag, s.offset, s.value_offset, s.end, s.depth) for s in found[:3]] == [
        (0x6F, 0, 2, 50, 0),
        (0x84, 2, 4, 18, 1),
        (0xA5, 18, 20, 50, 1),
    ]
    df4d = next(s for s in spans(SELECT_AID_RESPONSE) if s.tag == 0xDF4D)
    assert SELECT_AID_RESPONSE[df4d.value_offset : df4d.end] == bytes.fromhex("0C0A")
    assert df4d.length == 2
    assert df4d.depth == 3


# --- tags and lengths -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hex_tag", "tag"),
    [("5A", 0x5A), ("9F02", 0x9F02), ("BF0C", 0xBF0C), ("DF8104", 0xDF8104), ("1F7F", 0x1F7F)],
)
def test_multi_byte_tags(hex_tag: str, tag: int) -> None:
    raw = bytes.fromhex(hex_tag)
    assert parse_tag(raw + b"\x00", 0) == (tag, len(raw))
    assert tag_bytes(tag) == raw


@pytest.mark.parametrize("tag", [0, -1, 0x9F, 0x1F, 0xFF, 0x0102, 0x9F818101, 0x5F80, 0x1000000])
def test_invalid_tag_numbers(tag: int) -> None:
    with pytest.raises(TlvError):
        tag_bytes(tag)
    with pytest.raises(TlvError):
        Tlv(tag, b"")


def test_constructed_bit() -> None:
    assert Tlv(0x70).constructed
    assert Tlv(0xBF0C).constructed
    assert Tlv(0xA5).constructed
    assert not Tlv(0x9F02).constructed
    assert not Tlv(0x5A).constructed
    assert not Tlv(0xDF4D).constructed
    assert Tlv(0x5A, b"\x12").children == ()


@pytest.mark.parametrize(
    ("n", "encoded"),
    [(0, "00"), (0x7F, "7F"), (0x80, "8180"), (0xFF, "81FF"), (0x100, "820100"), (0xFFFF, "82FFFF")],
)
def test_length_encoding(n: int, encoded: str) -> None:
    assert encode_length(n) == bytes.fromhex(encoded)
    assert parse_length(bytes.fromhex(encoded), 0) == (n, len(encoded) // 2)


def test_length_limits() -> None:
    assert parse_length(bytes.fromhex("83010000"), 0) == (0x10000, 4)
    assert parse_length(bytes.fromhex("8105"), 0) == (5, 2)  # non-minimal but definite: accepted
    for bad in (-1, 0x10000):
        with pytest.raises(TlvError):
            encode_length(bad)


def test_long_values_round_trip() -> None:
    for size, header in ((0x80, "5A8180"), (200, "5A81C8"), (300, "5A82012C")):
        obj = Tlv(0x5A, bytes(range(256)) * 2)
        obj = Tlv(0x5A, obj.value[:size])
        assert obj.encode().startswith(bytes.fromhex(header))
        assert decode_one(obj.encode()) == obj


def test_padding_tolerated_between_objects() -> None:
    a, b = tlv(0x9F36, b"\x0a\xdc"), tlv(0x82, b"\x7c\x00")
    padded = b"\x00\x00" + a + b"\xff\x00" + b + b"\x00"
    assert decode(padded) == [Tlv(0x9F36, b"\x0a\xdc"), Tlv(0x82, b"\x7c\x00")]
    template = tlv(0x70, a + b"\x00" + b)
    assert decode_one(template).children == (Tlv(0x9F36, b"\x0a\xdc"), Tlv(0x82, b"\x7c\x00"))
    assert decode(b"\x00\xff\x00") == []
    with pytest.raises(TlvError) as info:
        decode(padded, allow_padding=False)
    assert info.value.offset == 0
    assert "tag byte" in (info.value.expected or "")


# --- malformed input ------------------------------------------------------------------------------

MALFORMED = [
    ("9F", 1, "subsequent tag byte"),
    ("9F02", 2, "length byte"),
    ("5A", 1, "length byte"),
    ("5A0312", 2, "3 value bytes, got 1"),
    ("5A81", 2, "1 length byte, got 0"),
    ("5A8201", 2, "2 length bytes, got 1"),
    ("5A80", 1, "definite length"),
    ("5A840000000100", 1, "at most 83"),
    ("9F81818201", 0, "at most 3 tag bytes"),
    ("700112", 3, "length byte"),
    ("70035A0512", 4, "5 value bytes, got 1"),
    ("6F05A5035A0312", 6, "3 value bytes, got 1"),
    ("820200", 2, "2 value bytes, got 1"),
    ("9F3602", 3, "2 value bytes, got 0"),
]


@pytest.mark.parametrize(("hex_data", "offset", "expected"), MALFORMED)
def test_malformed_raises_tlv_error_with_offset(hex_data: str, offset: int, expected: str) -> None:
    with pytest.raises(TlvError) as info:
        decode(bytes.fromhex(hex_data))
    assert info.value.offset == offset
    assert expected in (info.value.expected or "")
    assert f"offset {offset}" in str(info.value)


def test_malformed_inside_valid_prefix_has_absolute_offset() -> None:
    data = GPO_RESPONSE[:-1]  # 9F5D value one byte short; template length now overruns
    with pytest.raises(TlvError) as info:
        decode(data)
    assert info.value.offset == 2
    assert info.value.field == "tag 77"
    inner = tlv(0x77, GPO_RESPONSE[2:-1])  # template consistent, last child short
    with pytest.raises(TlvError) as info:
        decode(inner)
    assert info.value.offset == len(inner) - 5
    assert info.value.field == "tag 9F5D"


def test_decode_one_rejects_trailing_bytes_and_empty_input() -> None:
    with pytest.raises(TlvError) as info:
        decode_one(bytes.fromhex("5A011200"))
    assert info.value.offset == 3
    with pytest.raises(TlvError) as info:
        decode_one(b"")
    assert info.value.offset == 0
    assert info.value.expected == "tag byte"
    with pytest.raises(TlvError):
        decode_one(bytes.fromhex("005A0112"))
    assert decode(b"") == []


def test_nesting_depth_is_limited() -> None:
    data = tlv(0x5A, b"\x01")
    for _ in range(MAX_DEPTH + 2):
        data = tlv(0x70, data)
    with pytest.raises(TlvError, match="nested too deeply"):
        decode(data)


def test_build_requires_constructed_tag() -> None:
    record = Tlv.build(0x70, Tlv(0x5F24, bytes.fromhex("251231")), Tlv(0x5F34, b"\x01"))
    assert record.encode() == bytes.fromhex("700A5F24032512315F340101")
    assert Tlv.build(0x70) == Tlv(0x70, b"")
    with pytest.raises(TlvError):
        Tlv.build(0x5A, Tlv(0x5F24, b"\x25\x12\x31"))


def test_tlv_helper_and_bytearray_values() -> None:
    assert tlv(0x9F02, bytes(5) + b"\x01") == bytes.fromhex("9F0206000000000001")
    assert Tlv(0x9F36, bytearray(b"\x0a\xdc")).value == b"\x0a\xdc"  # type: ignore[arg-type]
    with pytest.raises(TlvError):
        Tlv(0x5A, bytes(0x10000)).encode()


def test_find_and_find_all_depth_first() -> None:
    app1 = Tlv.build(0x61, Tlv(0x4F, b"\xa0\x00\x00\x03\x33\x01\x01\x01"), Tlv(0x87, b"\x01"))
    app2 = Tlv.build(0x61, Tlv(0x4F, b"\xa0\x00\x00\x03\x33\x01\x01\x02"), Tlv(0x87, b"\x02"))
    fci = Tlv.build(0x6F, Tlv(0x84, b"2PAY.SYS.DDF01"), Tlv.build(0xA5, Tlv.build(0xBF0C, app1, app2)))
    assert find([fci], 0x87) == Tlv(0x87, b"\x01")
    assert [t.value[-1] for t in find_all([fci], 0x4F)] == [1, 2]
    assert find_all([fci], 0x61) == [app1, app2]
    assert find([fci], 0x6F) is fci
    assert find([fci], 0x9F38) is None
    assert find_all([fci], 0x9F38) == []
    assert to_dict([fci])[0x4F][-1] == 1  # first occurrence wins


# --- views ----------------------------------------------------------------------------------------


def test_format_tree_masks_and_names_by_kernel() -> None:
    objects = decode(GPO_RESPONSE)
    tree = format_tree(objects, kernel=PBOC)
    lines = tree.splitlines()
    assert lines[0].startswith("77 Response Message Template Format 2")
    assert lines[3] == "  57 Track 2 Equivalent Data (17): 629999******9999D*****************"
    assert "(e-cash balance)" in tree  # 9F5D under A000000333
    assert "6299999999999999" not in tree
    assert "20112010123456789" not in tree
    assert "Application Capabilities Information" in format_tree(objects, kernel="A000000004")
    assert "6299999999999999D20112010123456789" in format_tree(objects, kernel=PBOC, reveal=True)
    select_tree = format_tree(decode(SELECT_AID_RESPONSE), kernel=PBOC)
    assert '50 Application Label (10): 50424F43204445424954 "PBOC DEBIT"' in select_tree
    assert "      DF4D Load Log Entry (2): 0C0A" in select_tree


def test_json_tree_masks() -> None:
    (node,) = to_json_tree(decode(GPO_RESPONSE), kernel=PBOC)
    track2 = node["children"][2]
    assert track2 == {
        "tag": "57",
        "name": "Track 2 Equivalent Data",
        "length": 17,
        "value": "629999******9999D*****************",
        "masked": True,
    }
    assert "masked" not in node["children"][0]
    (clear,) = to_json_tree(decode(GPO_RESPONSE), kernel=PBOC, reveal=True)
    assert clear["children"][2]["value"] == TRACK2.hex().upper()


# --- properties -----------------------------------------------------------------------------------


def _tags(constructed: bool) -> st.SearchStrategy[int]:
    cbit = 0x20 if constructed else 0x00
    single = st.builds(lambda cls, num: (cls << 6) | cbit | num, st.integers(0, 3), st.integers(0, 30))
    first_multi = st.integers(0, 3).map(lambda cls: (cls << 6) | cbit | 0x1F).filter(lambda b: b != 0xFF)
    two = st.builds(lambda f, b2: (f << 8) | b2, first_multi, st.integers(0, 0x7F))
    three = st.builds(
        lambda f, b2, b3: (f << 16) | (b2 << 8) | b3,
        first_multi,
        st.integers(0x80, 0xFF),
        st.integers(0, 0x7F),
    )
    return st.one_of(single, two, three).filter(lambda t: t != 0)


_primitive = st.builds(Tlv, _tags(False), st.binary(max_size=300))

def _template(tag: int, items: list[Tlv]) -> Tlv:
    return Tlv.build(tag, *items)


_trees = st.recursive(
    _primitive,
    lambda kids: st.builds(_template, _tags(True), st.lists(kids, max_size=4)),
    max_leaves=12,
)


def _error_of(data: bytes) -> TlvError | None:
    try:
        decode(data)
    except TlvError as exc:
        return exc
    return None


def _shape(obj: Tlv) -> object:
    return (obj.tag, tuple(_shape(c) for c in obj.children)) if obj.constructed else (obj.tag, obj.value)


@pytest.mark.property
@settings(max_examples=300, deadline=None)
@given(st.lists(_trees, max_size=4))
def test_round_trip_random_trees(objects: list[Tlv]) -> None:
    data = encode(objects)
    assert decode(data, allow_padding=False) == objects
    decoded = decode(data)
    assert [_shape(o) for o in decoded] == [_shape(o) for o in objects]
    assert encode(decoded) == data


@pytest.mark.property
@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200), st.booleans())
def test_random_bytes_raise_only_tlv_error(data: bytes, allow_padding: bool) -> None:
    try:
        objects = decode(data, allow_padding=allow_padding)
    except TlvError:
        return
    for obj in objects:
        find_all([obj], obj.tag)
        format_tree([obj])
    spans(data, allow_padding=allow_padding)


@pytest.mark.property
@settings(max_examples=200, deadline=None)
@given(_trees, st.data())
def test_truncations_raise_only_tlv_error(obj: Tlv, data: st.DataObject) -> None:
    encoded = obj.encode()
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(TlvError):
        decode_one(encoded[:cut])
    error = _error_of(encoded[:cut])
    if error is not None:
        assert error.offset is not None
        assert 0 <= error.offset <= cut


@pytest.mark.property
@pytest.mark.vectors
@settings(max_examples=300, deadline=None)
@given(st.sampled_from([PPSE_RESPONSE, SELECT_AID_RESPONSE, GPO_RESPONSE, FIELD_55]), st.data())
def test_corrupted_vectors_raise_only_tlv_error(vector: bytes, data: st.DataObject) -> None:
    position = data.draw(st.integers(0, len(vector) - 1))
    byte = data.draw(st.integers(0, 255))
    corrupted = vector[:position] + bytes([byte]) + vector[position + 1 :]
    cut = data.draw(st.integers(0, len(corrupted)))
    error = _error_of(corrupted[:cut])
    if error is None:
        objects = decode(corrupted[:cut])
        assert decode(encode(objects)) == objects
