"""Data object lists (EMV Book 3 5.4) against the qPBOC GPO of domain brief 1."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paylab.lab.protocol.dol import (
    DolEntry,
    build_dol_data,
    dol_length,
    encode_dol,
    fit_value,
    gpo_command_data,
    parse_dol,
    parse_gpo_command_data,
    split_dol_data,
)
from paylab.lab.protocol.errors import DolError

PBOC = "A000000333"
PDOL = bytes.fromhex("9F66049F02069F03069F1A0295055F2A029A039C019F3704")
PDOL_DATA = bytes.fromhex("36800000" "000000000001" "000000000000" "0156" "0000000000" "0156" "170601" "00" "2B29EBE4")
GPO_APDU = bytes.fromhex("80A8000023832136800000000000000001000000000000015600000000000156170601002B29EBE400")
VALUES = {
    0x9F66: bytes.fromhex("36800000"),  # TTQ: qPBOC, online cryptogram required
    0x9F02: bytes.fromhex("000000000001"),
    0x9F03: bytes.fromhex("000000000000"),
    0x9F1A: bytes.fromhex("0156"),
    0x95: bytes.fromhex("0000000000"),
    0x5F2A: bytes.fromhex("0156"),
    0x9A: bytes.fromhex("170601"),
    0x9C: bytes.fromhex("00"),
    0x9F37: bytes.fromhex("2B29EBE4"),
}


@pytest.mark.vectors
def test_parse_pdol() -> None:
    entries = parse_dol(PDOL)
    assert entries == [
        DolEntry(0x9F66, 4),
        DolEntry(0x9F02, 6),
        DolEntry(0x9F03, 6),
        DolEntry(0x9F1A, 2),
        DolEntry(0x95, 5),
        DolEntry(0x5F2A, 2),
        DolEntry(0x9A, 3),
        DolEntry(0x9C, 1),
        DolEntry(0x9F37, 4),
    ]
    assert dol_length(PDOL) == 0x21
    assert encode_dol(entries) == PDOL


@pytest.mark.vectors
def test_split_gives_each_value_back() -> None:
    assert split_dol_data(PDOL, PDOL_DATA) == VALUES
    assert list(split_dol_data(parse_dol(PDOL), PDOL_DATA)) == list(VALUES)  # DOL order


@pytest.mark.vectors
@pytest.mark.parametrize("kernel", [PBOC, None])
def test_build_reproduces_the_gpo_data(kernel: str | None) -> None:
    assert build_dol_data(PDOL, VALUES, kernel=kernel) == PDOL_DATA
    assert build_dol_data(parse_dol(PDOL), VALUES, kernel=kernel) == PDOL_DATA


@pytest.mark.vectors
def test_gpo_command_data() -> None:
    data = gpo_command_data(build_dol_data(PDOL, VALUES, kernel=PBOC))
    assert data == bytes.fromhex("8321") + PDOL_DATA
    assert bytes.fromhex("80A8000023") + data + b"\x00" == GPO_APDU
    assert parse_gpo_command_data(data) == PDOL_DATA
    assert gpo_command_data(b"") == bytes.fromhex("8300")
    assert gpo_command_data(bytes(0x7F))[:2] == bytes.fromhex("837F")
    assert gpo_command_data(bytes(0x80))[:3] == bytes.fromhex("838180")
    assert parse_gpo_command_data(gpo_command_data(bytes(0x90))) == bytes(0x90)


def test_parse_gpo_command_data_errors() -> None:
    with pytest.raises(DolError):
        parse_gpo_command_data(bytes.fromhex("8403010203"))
    with pytest.raises(DolError) as info:
        parse_gpo_command_data(bytes.fromhex("830501"))
    assert info.value.offset == 2


def test_missing_elements_are_zero() -> None:
    assert build_dol_data(PDOL, {}) == bytes(0x21)
    partial = build_dol_data(PDOL, {0x9F37: bytes.fromhex("2B29EBE4")})
    assert partial == bytes(0x1D) + bytes.fromhex("2B29EBE4")


@pytest.mark.parametrize(
    ("entry", "value", "fitted"),
    [
        (DolEntry(0x9F02, 6), "01", "000000000001"),  # n: leading 00
        (DolEntry(0x9F02, 4), "000000123456", "00123456"),  # n: leftmost bytes dropped
        (DolEntry(0x5A, 10), "4111111111111111", "4111111111111111FFFF"),  # cn: trailing FF
        (DolEntry(0x5A, 4), "4111111111111111", "41111111"),  # cn: rightmost dropped
        (DolEntry(0x9F1C, 8), "5431", "5431000000000000"),  # an: trailing 00
        (DolEntry(0x9F4E, 2), "41424344", "4142"),  # ans: rightmost dropped
        (DolEntry(0x95, 5), "80", "8000000000"),  # b: trailing 00
        (DolEntry(0x9F37, 2), "2B29EBE4", "2B29"),  # b: rightmost dropped
        (DolEntry(0xDF7F, 3), "01", "010000"),  # unknown tag: treated as b
        (DolEntry(0x70, 3), "010203", "000000"),  # constructed: zeros
        (DolEntry(0x9F02, 0), "01", ""),
    ],
)
def test_fit_value_by_format(entry: DolEntry, value: str, fitted: str) -> None:
    assert fit_value(entry, bytes.fromhex(value)) == bytes.fromhex(fitted)
    assert build_dol_data([entry], {entry.tag: bytes.fromhex(value)}) == bytes.fromhex(fitted)


def test_padding_format_is_kernel_scoped() -> None:
    # 9F5D is n12 under PBOC but binary (Application Capabilities Information) under Mastercard.
    entry = DolEntry(0x9F5D, 8)
    value = bytes.fromhex("000000038787")
    assert fit_value(entry, value, kernel=PBOC) == bytes.fromhex("0000000000038787")
    assert fit_value(entry, value, kernel="A000000004") == bytes.fromhex("0000000387870000")


@pytest.mark.parametrize(
    ("dol", "offset", "expected"),
    [
        ("9F", 1, "subsequent tag byte"),
        ("9F66", 2, "length byte"),
        ("9F660400", 3, "tag byte"),  # 00 is not a tag inside a DOL
        ("9F6680", 2, "definite length"),
        ("9F66820100", 2, "at most 255"),
    ],
)
def test_malformed_dol(dol: str, offset: int, expected: str) -> None:
    with pytest.raises(DolError) as info:
        parse_dol(bytes.fromhex(dol))
    assert info.value.offset == offset
    assert expected in (info.value.expected or "")


def test_split_length_mismatch() -> None:
    with pytest.raises(DolError) as info:
        split_dol_data(PDOL, PDOL_DATA[:-1])
    assert info.value.offset == 0x1D
    assert info.value.field == "tag 9F37"
    assert "4 bytes, got 3" in (info.value.expected or "")
    with pytest.raises(DolError) as info:
        split_dol_data(PDOL, PDOL_DATA + b"\x00")
    assert info.value.offset == 0x21


def test_dol_entry_validation() -> None:
    with pytest.raises(DolError):
        DolEntry(0x9F, 1)
    with pytest.raises(DolError):
        DolEntry(0x9F02, -1)
    with pytest.raises(DolError):
        DolEntry(0x9F02, 0x100)
    assert DolEntry(0x70, 1).constructed
    assert not DolEntry(0x9F02, 1).constructed


# --- properties -----------------------------------------------------------------------------------

_TAGS = [0x9F66, 0x9F02, 0x9F03, 0x9F1A, 0x95, 0x5F2A, 0x9A, 0x9C, 0x9F37, 0x5A, 0x9F4E, 0xDF69, 0x9F79]


@pytest.mark.property
@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(_TAGS), st.integers(0, 20)), max_size=10, unique_by=lambda e: e[0]),
    st.dictionaries(st.sampled_from(_TAGS), st.binary(max_size=24)),
    st.sampled_from([None, PBOC, "A000000004"]),
)
def test_split_inverts_build(pairs: list[tuple[int, int]], values: dict[int, bytes], kernel: str | None) -> None:
    dol = [DolEntry(tag, length) for tag, length in pairs]
    data = build_dol_data(dol, values, kernel=kernel)
    assert len(data) == dol_length(dol)
    split = split_dol_data(encode_dol(dol), data)
    for entry in dol:
        expected = fit_value(entry, values[entry.tag], kernel=kernel) if entry.tag in values else bytes(entry.length)
        assert split[entry.tag] == expected


@pytest.mark.property
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_random_dol_bytes_raise_only_dol_error(data: bytes) -> None:
    try:
        entries = parse_dol(data)
    except DolError:
        return
    assert parse_dol(encode_dol(entries)) == entries
