"""Status word table and StatusWordError (ISO/IEC 7816-4 5.1.3, EMV Book 3 6.3.5, GP CS 2.3 clause 11)."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paylab.lab.protocol import sw as swmod
from paylab.lab.protocol.errors import PaylabError, ProtocolError
from paylab.lab.protocol.sw import StatusWordError, describe, format_sw

CONSTANTS = {
    "SW_OK": 0x9000,
    "SW_WRONG_LENGTH": 0x6700,
    "SW_SECURITY_STATUS_NOT_SATISFIED": 0x6982,
    "SW_CONDITIONS_NOT_SATISFIED": 0x6985,
    "SW_WRONG_DATA": 0x6A80,
    "SW_FILE_NOT_FOUND": 0x6A82,
    "SW_INCORRECT_P1P2": 0x6A86,
    "SW_REF_DATA_NOT_FOUND": 0x6A88,
    "SW_INS_NOT_SUPPORTED": 0x6D00,
    "SW_CLA_NOT_SUPPORTED": 0x6E00,
    "SW_UNKNOWN": 0x6F00,
    "SW_AUTH_METHOD_BLOCKED": 0x6983,
    "SW_WRONG_P1P2": 0x6B00,
    "SW_FUNC_NOT_SUPPORTED": 0x6A81,
    "SW_NOT_ENOUGH_MEMORY": 0x6A84,
    "SW_MEMORY_FAILURE": 0x6581,
    "SW_RECORD_NOT_FOUND": 0x6A83,
    "SW_DATA_INVALID": 0x6984,
    "SW_COMMAND_NOT_ALLOWED_NO_EF": 0x6986,
    "SW_SELECTED_FILE_INVALIDATED": 0x6283,
}


@pytest.mark.parametrize(("name", "value"), CONSTANTS.items())
def test_named_constants(name, value):
    assert getattr(swmod, name) == value
    assert "unknown" not in describe(value) or value == 0x6F00


@pytest.mark.parametrize(
    ("sw", "fragment"),
    [
        (0x9000, "normal processing"),
        (0x6282, "end of file"),
        (0x6283, "deactivated"),
        (0x6581, "memory failure"),
        (0x6700, "wrong length"),
        (0x6881, "logical channel"),
        (0x6882, "secure messaging not supported"),
        (0x6982, "security status not satisfied"),
        (0x6983, "authentication method blocked"),
        (0x6984, "reference data not usable"),
        (0x6985, "conditions of use not satisfied"),
        (0x6986, "no current EF"),
        (0x6A80, "incorrect parameters in the command data"),
        (0x6A81, "function not supported"),
        (0x6A82, "file or application not found"),
        (0x6A83, "record not found"),
        (0x6A84, "not enough memory"),
        (0x6A86, "incorrect parameters P1-P2"),
        (0x6A88, "referenced data"),
        (0x6B00, "wrong parameters P1-P2"),
        (0x6D00, "instruction code not supported"),
        (0x6E00, "class not supported"),
        (0x6F00, "no precise diagnosis"),
    ],
)
def test_iso_meanings(sw, fragment):
    assert fragment in describe(sw)
    assert describe(sw, "iso") == describe(sw)


@pytest.mark.parametrize(
    ("sw", "text"),
    [
        (0x63C2, "verification failed, 2 tries left"),
        (0x63C0, "verification failed, 0 tries left"),
        (0x6110, "16 response bytes still available"),
        (0x6100, "256 response bytes still available"),
        (0x6C1D, "exactly 29 bytes available (resend with Le=1D)"),
        (0x6C00, "exactly 256 bytes"),
    ],
)
def test_parameterised(sw, text):
    assert text in describe(sw)


@pytest.mark.parametrize(
    ("sw", "fragment"),
    [
        (0x6210, "warning: non-volatile memory unchanged"),
        (0x6399, "warning: non-volatile memory changed"),
        (0x6412, "execution error"),
        (0x6A99, "wrong parameters"),
        (0x9401, "application-specific"),
        (0x6000, "NULL procedure byte"),
        (0x1234, "unknown status word"),
    ],
)
def test_ranges_and_unknown(sw, fragment):
    assert fragment in describe(sw)


@pytest.mark.parametrize(
    ("sw", "context", "fragment"),
    [
        (0x6283, "emv", "application is blocked"),
        (0x6985, "emv", "GPO"),
        (0x6985, "PBOC", "another interface"),
        (0x6983, "emv", "PIN try limit exceeded"),
        (0x6984, "emv", "PIN blocked"),
        (0x6A81, "emv", "card is blocked"),
        (0x63C1, "emv", "wrong PIN, 1 PIN tries left"),
        (0x6310, "gp", "more data available"),
        (0x6300, "gp", "host cryptogram"),
        (0x6A80, "gp", "incorrect values in command data"),
        (0x6581, "GlobalPlatform", "memory failure"),
        (0x6985, "gp", "conditions of use not satisfied"),
        (0x6982, "gp", "security status not satisfied"),
        (0x6A88, "gp", "referenced data not found"),
        (0x6A84, "gp", "not enough memory space"),
        (0x6D00, "gp", "invalid instruction"),
        (0x6E00, "gp", "invalid class"),
        (0x6283, "gp", "CARD_LOCKED"),
        (0x6999, "gp", "applet selection failed"),
    ],
)
def test_context_overlays(sw, context, fragment):
    assert fragment in describe(sw, context)


def test_context_falls_back_to_iso():
    assert describe(0x6A82, "gp") != describe(0x6A87, "gp")
    assert describe(0x6A87, "gp") == describe(0x6A87)
    assert describe(0x6310) == "warning: non-volatile memory changed"


@pytest.mark.parametrize(("sw", "context"), [(-1, None), (0x10000, None), ("9000", None), (0x9000, "visa")])
def test_describe_errors(sw, context):
    with pytest.raises(ProtocolError):
        describe(sw, context)


def test_format_sw():
    assert format_sw(0x6A82) == "6A82"
    assert format_sw(0x0000) == "0000"


def test_status_word_error():
    err = StatusWordError(0x63C2, "VERIFY PIN", context="emv", data=b"\x01")
    assert isinstance(err, PaylabError)
    assert (err.sw, err.sw1, err.sw2) == (0x63C2, 0x63, 0xC2)
    assert str(err) == "VERIFY PIN: SW 63C2 (wrong PIN, 2 PIN tries left (VERIFY))"
    assert str(StatusWordError(0x6A82)) == "SW 6A82 (file or application not found)"
    clone = pickle.loads(pickle.dumps(err))
    assert (clone.sw, clone.command, clone.context, clone.data, str(clone)) == (
        0x63C2,
        "VERIFY PIN",
        "emv",
        b"\x01",
        str(err),
    )
    with pytest.raises(ProtocolError):
        StatusWordError(0x10000)


@pytest.mark.property
@given(st.integers(0, 0xFFFF), st.sampled_from([None, "iso", "emv", "gp"]))
def test_property_every_sw_has_a_description(sw, context):
    text = describe(sw, context)
    assert text
    assert isinstance(text, str)
