"""Masking of PAN, tracks and secrets (PCI DSS 3.3/3.4), driven by the tag dictionary."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paylab.lab.protocol.masking import (
    luhn_ok,
    mask_hex_value,
    mask_pan,
    mask_text,
    mask_track1,
    mask_track2,
    mask_value,
)

GPO_TRACK2 = bytes.fromhex("6299999999999999D20112010123456789")  # brief 1 trace (PAN of 9s)


def _with_check_digit(body: str) -> str:
    for check in "0123456789":
        if luhn_ok(body + check):
            return body + check
    raise AssertionError("unreachable")


PAN16 = _with_check_digit("411111111111111")  # 4111111111111111


def test_luhn() -> None:
    assert luhn_ok("4111111111111111")
    assert luhn_ok("79927398713")
    assert not luhn_ok("4111111111111112")
    assert not luhn_ok("")
    assert not luhn_ok("41x1")


@pytest.mark.parametrize(
    ("pan", "masked"),
    [
        ("4111111111111111", "411111******1111"),
        ("6212345678901234567", "621234*********4567"),  # 19 digits (UnionPay)
        ("4222222222222", "422222***2222"),  # 13 digits: still first 6 / last 4
        ("123456789012", "********9012"),  # under 13: last 4 only
        ("12345", "*2345"),
        ("1234", "****"),
        ("", ""),
        ("371449635398431F", "371449*****8431F"),  # cn padding kept
        ("4111-1111", "*********"),  # not digits: hidden completely
    ],
)
def test_mask_pan(pan: str, masked: str) -> None:
    assert mask_pan(pan) == masked


def test_mask_track2_forms() -> None:
    assert mask_track2(GPO_TRACK2) == "629999******9999D*****************"
    assert mask_track2(GPO_TRACK2.hex()) == "629999******9999D*****************"
    assert mask_track2("4111111111111111=25121010000000000") == "411111******1111=" + "*" * 17
    assert mask_track2(bytes.fromhex("4111111111111111D25121010F")) == "411111******1111D" + "*" * 9
    assert mask_track2("4111111111111111") == "411111******1111"  # no separator: PAN rule


def test_mask_track1() -> None:
    track1 = b"B4111111111111111^DOE/JOHN^2512101000000"
    masked = mask_track1(track1)
    assert masked.startswith("B411111******1111^")
    assert set(masked[len("B411111******1111^") :]) == {"*"}
    assert "DOE" not in masked
    assert len(masked) == len(track1)
    assert mask_track1("%B4111111111111111^X^2512").startswith("%B411111")
    assert set(mask_track1("garbage without pan")) == {"*"}


def test_mask_value_by_tag() -> None:
    assert mask_value(0x5A, bytes.fromhex("4111111111111111")) == "411111******1111"
    assert mask_value(0x5A, bytes.fromhex("371449635398431F")) == "371449*****8431"
    assert mask_value(0x57, GPO_TRACK2) == "629999******9999D*****************"
    assert mask_value(0x9F6B, GPO_TRACK2) == "629999******9999D*****************"
    assert mask_value(0x56, b"B4111111111111111^DOE/JOHN^2512").startswith("B411111******1111^***")
    assert mask_value(0x5F20, b"DOE/JOHN") == "<masked 8 bytes>"
    assert mask_value(0x9F0B, b"X" * 30) == "<masked 30 bytes>"
    assert mask_value(0x99, bytes(8)) == "<masked 8 bytes>"
    assert mask_value(0x9F1F, b"123456") == "<masked 6 bytes>"
    assert mask_value(0x9F20, bytes.fromhex("1234")) == "<masked 2 bytes>"
    assert mask_value(0x5F24, bytes.fromhex("251231")) == "251231"  # expiry is shown
    assert mask_value(0x9F02, bytes.fromhex("000000000001")) == "000000000001"
    # Unknown (proprietary) tag holding a PAN: scrubbed as text.
    assert mask_value(0xDF7F, bytes.fromhex("4111111111111111")) == "411111******1111"
    assert mask_value(0xDF7F, bytes.fromhex("0102")) == "0102"


def test_mask_value_is_kernel_scoped() -> None:
    value = bytes.fromhex("1234")
    assert mask_value(0x9F61, value, "A000000004") == "1234"  # Mastercard CVC3 (Track2)
    assert mask_value(0x9F61, value, "A000000333") == "<masked 2 bytes>"  # PBOC cardholder ID
    assert mask_value(0x9F61, value) == "<masked 2 bytes>"  # unknown kernel: conservative


def test_mask_hex_value_keeps_length() -> None:
    assert mask_hex_value(0x5A, bytes.fromhex("371449635398431F")) == "371449*****8431F"
    assert mask_hex_value(0x57, GPO_TRACK2) == "629999******9999D*****************"
    assert mask_hex_value(0x5F20, b"DOE/JOHN") == "*" * 16
    assert mask_hex_value(0x82, bytes.fromhex("7C00")) == "7C00"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("card 4111111111111111 declined", "card 411111******1111 declined"),
        ("card 4111 1111 1111 1111 ok", "card 4111 11** **** 1111 ok"),
        ("pan=4111-1111-1111-1111;", "pan=4111-11**-****-1111;"),
        ("order 1234567890 at 12:00", "order 1234567890 at 12:00"),
        ("no digits here", "no digits here"),
        ("amount 0000000000000000", "amount 0000000000000000"),  # MII 0: not a PAN
        ("x94111111111111111y", "x9****************y"),  # PAN inside a longer run
    ],
)
def test_mask_text(text: str, masked: str) -> None:
    assert mask_text(text) == masked


# --- properties -----------------------------------------------------------------------------------


@st.composite
def pans(draw: st.DrawFn) -> str:
    length = draw(st.integers(13, 19))
    first = draw(st.sampled_from("123456789"))
    body = first + "".join(draw(st.lists(st.sampled_from("0123456789"), min_size=length - 2, max_size=length - 2)))
    return _with_check_digit(body)


def _bcd(digits: str) -> bytes:
    return bytes.fromhex(digits + ("F" if len(digits) % 2 else ""))


@pytest.mark.property
@settings(max_examples=300, deadline=None)
@given(pans(), st.text(alphabet="0123456789", min_size=4, max_size=20))
def test_masked_output_never_contains_the_pan(pan: str, rest: str) -> None:
    assert luhn_ok(pan)
    assert pan not in mask_pan(pan)
    assert mask_pan(pan)[-4:] == pan[-4:]
    assert pan not in mask_value(0x5A, _bcd(pan))
    assert pan not in mask_hex_value(0x5A, _bcd(pan))
    track2 = pan + "D" + rest
    for masked in (mask_track2(_bcd(track2)), mask_value(0x57, _bcd(track2)), mask_track2(pan + "=" + rest)):
        assert pan not in masked
        assert set(masked.split("D" if "D" in masked else "=", 1)[1]) <= {"*"}
    assert pan not in mask_track1("B" + pan + "^NAME^" + rest)


@pytest.mark.property
@settings(max_examples=300, deadline=None)
@given(pans(), st.text(max_size=30), st.text(max_size=30))
def test_mask_text_never_leaks_an_embedded_pan(pan: str, prefix: str, suffix: str) -> None:
    masked = mask_text(prefix + pan + suffix)
    assert pan not in masked
    spaced = " ".join(pan[i : i + 4] for i in range(0, len(pan), 4))
    assert pan not in mask_text(prefix + spaced + suffix).replace(" ", "")


@pytest.mark.property
@settings(max_examples=300, deadline=None)
@given(st.integers(0, 0xFFFF), st.binary(max_size=40))
def test_masking_never_raises(tag: int, value: bytes) -> None:
    mask_value(tag, value)
    assert len(mask_hex_value(tag, value)) == 2 * len(value)
    mask_track1(value)
    mask_track2(value)
