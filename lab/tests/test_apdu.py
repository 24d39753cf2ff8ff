"""Command/response APDUs (ISO/IEC 7816-4 clause 5.1), hex helpers and T=0 response recovery."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paylab.lab.protocol.apdu import (
    ApduExchanger,
    CommandApdu,
    ResponseApdu,
    get_response,
    needs_get_response,
    retry_with_le,
    transmit_with_chaining,
)
from paylab.lab.protocol.errors import ApduError, ProtocolError
from paylab.lab.protocol.hexutil import h, hexs, parse_hex
from paylab.lab.protocol.sw import StatusWordError

# -- hex helpers -------------------------------------------------------------------------------


def test_parse_hex_tolerates_whitespace_between_bytes():
    assert h("00 A4 04 00\t0e\n325041592E") == bytes.fromhex("00A404000E325041592E")
    assert h("") == b""
    assert h("  ") == b""


@pytest.mark.parametrize(
    ("text", "offset"),
    [("0G", 1), ("00 A", 4), ("0 0", 1), ("0x00", 1), ("AB-CD", 2)],
)
def test_parse_hex_errors_name_field_and_offset(text, offset):
    with pytest.raises(ProtocolError) as info:
        parse_hex(text, field="AID")
    assert info.value.field == "AID"
    assert info.value.offset == offset
    assert "AID" in str(info.value)


def test_parse_hex_rejects_non_text():
    with pytest.raises(ProtocolError):
        parse_hex(b"00")  # type: ignore[arg-type]


def test_hexs_uppercase_and_separator():
    assert hexs(b"\x00\xa4\x04") == "00A404"
    assert hexs(bytearray(b"\xab\xcd"), " ") == "AB CD"
    assert hexs(b"") == ""
    with pytest.raises(ProtocolError):
        hexs("00")  # type: ignore[arg-type]


# -- command cases -----------------------------------------------------------------------------

CASES = [
    # (command, encoding, case)
    (CommandApdu(0x00, 0xA4, 0x04, 0x00), "00A40400", "1"),
    (CommandApdu(0x00, 0xB2, 0x01, 0x0C, le=256), "00B2010C00", "2S"),
    (CommandApdu(0x80, 0xCA, 0x9F, 0x79, le=9), "80CA9F7909", "2S"),
    (CommandApdu(0x00, 0x82, 0x00, 0x00, data=bytes(10)), "008200000A" + "00" * 10, "3S"),
    (
        CommandApdu(0x00, 0xA4, 0x04, 0x00, data=b"2PAY.SYS.DDF01", le=256),
        "00A404000E325041592E5359532E444446303100",
        "4S",
    ),
    (CommandApdu(0x00, 0xB0, 0x00, 0x00, le=257), "00B00000000101", "2E"),
    (CommandApdu(0x00, 0xB0, 0x00, 0x00, le=65536), "00B00000000000", "2E"),
    (CommandApdu(0x00, 0xD6, 0x00, 0x00, data=bytes(256)), "00D6000000" + "0100" + "00" * 256, "3E"),
    (
        CommandApdu(0x00, 0x2A, 0x9E, 0x9A, data=bytes(300), le=65536),
        "002A9E9A00012C" + "00" * 300 + "0000",
        "4E",
    ),
    (CommandApdu(0x00, 0x2A, 0x9E, 0x9A, data=b"\x01", le=512), "002A9E9A000001" + "01" + "0200", "4E"),
]


@pytest.mark.parametrize(("cmd", "encoding", "case"), CASES)
def test_every_case_encodes_and_decodes(cmd, encoding, case):
    assert cmd.case == case
    assert cmd.encode() == bytes.fromhex(encoding)
    assert cmd.hex() == encoding.upper()
    decoded = CommandApdu.decode(bytes.fromhex(encoding))
    assert decoded == cmd
    assert decoded.case == case


@pytest.mark.vectors
def test_qpboc_gpo_vector_from_domain_brief():
    raw = h("80A80000 23 8321 36800000 000000000001 000000000000 0156 0000000000 0156 170601 00 2B29EBE4 00")
    cmd = CommandApdu.decode(raw)
    assert (cmd.cla, cmd.ins, cmd.p1, cmd.p2) == (0x80, 0xA8, 0x00, 0x00)
    assert cmd.case == "4S"
    assert len(cmd.data) == 0x23
    assert cmd.data[:2] == h("8321")
    assert cmd.le == 256
    assert cmd.encode() == raw


@pytest.mark.parametrize(
    ("data_len", "le", "case", "extended"),
    [
        (255, None, "3S", False),
        (256, None, "3E", True),
        (65535, None, "3E", True),
        (0, 255, "2S", False),
        (0, 256, "2S", False),
        (0, 257, "2E", True),
        (0, 65535, "2E", True),
        (0, 65536, "2E", True),
        (255, 256, "4S", False),
        (256, 1, "4E", True),
        (1, 257, "4E", True),
        (65535, 65536, "4E", True),
    ],
)
def test_length_boundaries(data_len, le, case, extended):
    data = bytes(range(256)) * (data_len // 256) + bytes(data_len % 256)
    cmd = CommandApdu(0x00, 0xDA, 0x01, 0x02, data, le)
    assert cmd.case == case
    assert cmd.is_extended is extended
    raw = cmd.encode()
    expected_len = 4 + (
        (1 if data_len else 0) + data_len + (1 if le is not None else 0)
        if not extended
        else 1 + (2 + data_len if data_len else 0) + (2 if le is not None else 0)
    )
    assert len(raw) == expected_len
    assert CommandApdu.decode(raw) == cmd


def test_le_encodings_at_maxima():
    assert CommandApdu(0, 0xB0, 0, 0, le=256).encode()[-1:] == b"\x00"
    assert CommandApdu(0, 0xB0, 0, 0, le=65536).encode()[-3:] == b"\x00\x00\x00"
    assert CommandApdu(0, 0xB0, 0, 0, data=b"\x01", le=65536).encode()[-2:] == b"\x00\x00"
    assert CommandApdu.decode(h("00B00000 000000")).le == 65536
    assert CommandApdu.decode(h("00B00000 00")).le == 256


def test_forced_extended_form_is_kept_and_compared():
    auto = CommandApdu(0x00, 0xB0, 0x00, 0x00, le=5)
    forced = CommandApdu(0x00, 0xB0, 0x00, 0x00, le=5, extended=True)
    assert forced.encode() == h("00B00000 000005")
    assert forced.case == "2E"
    assert forced != auto
    assert CommandApdu.decode(forced.encode()) == forced
    # extended=False that fits is the automatic choice; True on a case 1 is meaningless.
    assert CommandApdu(0x00, 0xB0, 0x00, 0x00, le=5, extended=False) == auto
    assert CommandApdu(0, 0xA4, 0, 0, extended=True) == CommandApdu(0, 0xA4, 0, 0)
    # extended=True on a command that needs it anyway normalises to None.
    assert CommandApdu(0, 0xB0, 0, 0, le=300, extended=True).extended is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cla": 256},
        {"ins": -1},
        {"p1": "00"},
        {"p2": True},
        {"data": "text"},
        {"data": bytes(65536)},
        {"le": 0},
        {"le": 65537},
        {"le": 1.0},
        {"data": bytes(256), "extended": False},
        {"le": 257, "extended": False},
        {"extended": 1},
    ],
)
def test_invalid_construction_raises_apdu_error(kwargs):
    args = {"cla": 0, "ins": 0xB0, "p1": 0, "p2": 0} | kwargs
    with pytest.raises(ApduError):
        CommandApdu(**args)


@pytest.mark.parametrize(
    ("raw", "offset", "field"),
    [
        ("", 0, "header"),
        ("00A404", 3, "header"),
        ("00A40400 05 0102", 4, "Lc"),  # short Lc 5, 2 data bytes
        ("00A40400 02 010203 04", 4, "Lc"),  # one byte too many for 4S
        ("00B00000 0001", 6, "Le"),  # truncated extended length
        ("00D60000 000000 01", 4, "Lc"),  # extended Lc 0 with data
        ("00D60000 000003 0102", 4, "Lc"),  # extended Lc 3, 2 data bytes
        ("00D60000 000002 0102 03", 4, "Lc"),  # 1 stray byte after data (4E needs 2)
    ],
)
def test_decode_rejects_inconsistent_lengths(raw, offset, field):
    with pytest.raises(ApduError) as info:
        CommandApdu.decode(h(raw))
    assert info.value.offset == offset
    assert info.value.field == field
    assert info.value.expected


def test_decode_rejects_non_bytes():
    with pytest.raises(ApduError):
        CommandApdu.decode("00A40400")  # type: ignore[arg-type]
    assert CommandApdu.decode(bytearray(h("00A40400"))) == CommandApdu(0, 0xA4, 4, 0)


def test_reserved_cla_and_ins_are_encodable_for_negative_tests():
    assert CommandApdu(0xFF, 0x60, 0, 0).encode() == h("FF600000")


# -- class byte --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cla", "channel", "sm"),
    [
        (0x00, 0, False),
        (0x03, 3, False),
        (0x0C, 0, True),
        (0x04, 0, True),
        (0x80, 0, False),
        (0x84, 0, True),
        (0x81, 1, False),
        (0x40, 4, False),
        (0x4F, 19, False),
        (0x60, 4, True),
        (0xC0, 4, False),
        (0xE3, 7, True),
        (0x10, 0, False),
    ],
)
def test_channel_and_secure_messaging_from_cla(cla, channel, sm):
    cmd = CommandApdu(cla, 0xA4, 0x04, 0x00)
    assert cmd.channel == channel
    assert cmd.secure_messaging is sm


@pytest.mark.parametrize(
    ("cla", "n", "expected"),
    [
        (0x00, 2, 0x02),
        (0x00, 4, 0x40),
        (0x00, 19, 0x4F),
        (0x80, 5, 0xC1),  # GlobalPlatform: 80 -> C0-CF on channels 4-19
        (0x84, 4, 0xE0),  # GlobalPlatform with SM: 84 -> E0-EF
        (0xE0, 1, 0x85),
        (0x08, 6, 0x62),  # SM per clause 6, header not processed
        (0x62, 0, 0x08),
        (0x10, 4, 0x50),  # chaining bit kept
        (0x4F, 6, 0x42),
        (0x0D, 3, 0x0F),
    ],
)
def test_with_channel(cla, n, expected):
    cmd = CommandApdu(cla, 0xCA, 0x9F, 0x7F, le=256)
    moved = cmd.with_channel(n)
    assert moved.cla == expected
    assert moved.channel == n
    assert moved.secure_messaging == cmd.secure_messaging
    assert moved.chained == cmd.chained
    assert moved == CommandApdu(moved.cla, cmd.ins, cmd.p1, cmd.p2, cmd.data, cmd.le)


@pytest.mark.parametrize(("cla", "n"), [(0x00, 20), (0x00, -1), (0x0C, 4), (0x04, 5), (0xFF, 0)])
def test_with_channel_errors(cla, n):
    with pytest.raises(ApduError):
        CommandApdu(cla, 0xA4, 0, 0).with_channel(n)


# -- responses ---------------------------------------------------------------------------------


def test_response_round_trip_and_status():
    resp = ResponseApdu.decode(h("6F10 840E 325041592E5359532E4444463031 9000"))
    assert resp.sw == 0x9000
    assert resp.ok
    assert resp.is_success()
    assert resp.data[:2] == h("6F10")
    assert resp.encode() == h("6F10840E325041592E5359532E44444630319000")
    assert ResponseApdu.decode(h("6A82")) == ResponseApdu(b"", 0x6A, 0x82)
    assert ResponseApdu.from_sw(0x6A82).hex() == "6A82"


@pytest.mark.parametrize("raw", [b"", b"\x90", "9000"])
def test_response_decode_errors(raw):
    with pytest.raises(ApduError):
        ResponseApdu.decode(raw)


@pytest.mark.parametrize(
    ("sw", "ok", "success", "warning"),
    [
        (0x9000, True, True, False),
        (0x6110, False, True, False),
        (0x6283, False, True, True),
        (0x63C2, False, False, True),
        (0x6A82, False, False, False),
    ],
)
def test_ok_success_warning(sw, ok, success, warning):
    resp = ResponseApdu.from_sw(sw)
    assert resp.ok is ok
    assert resp.is_success() is success
    assert resp.is_warning is warning


def test_check_raises_status_word_error():
    assert ResponseApdu.from_sw(0x9000).check("SELECT").ok
    assert ResponseApdu.from_sw(0x6283).check("SELECT", allow_warnings=True).sw == 0x6283
    with pytest.raises(StatusWordError) as info:
        ResponseApdu.from_sw(0x6985).check("GPO", context="emv")
    assert info.value.sw == 0x6985
    assert info.value.command == "GPO"
    assert "6985" in str(info.value)
    assert "GPO" in str(info.value)
    clone = pickle.loads(pickle.dumps(info.value))
    assert (clone.sw, clone.command, str(clone)) == (0x6985, "GPO", str(info.value))


@pytest.mark.parametrize(("sw1", "sw2"), [(256, 0), (0x90, -1)])
def test_response_construction_errors(sw1, sw2):
    with pytest.raises(ApduError):
        ResponseApdu(b"", sw1, sw2)


# -- 61xx / 6Cxx recovery ----------------------------------------------------------------------


def test_helpers():
    assert get_response(0x10).encode() == h("00C0000010")
    assert get_response(256, cla=0x01).encode() == h("01C0000000")
    assert needs_get_response(ResponseApdu.from_sw(0x6110)) == 0x10
    assert needs_get_response(ResponseApdu.from_sw(0x6100)) == 256
    assert needs_get_response(ResponseApdu.from_sw(0x9000)) is None
    cmd = CommandApdu(0x00, 0xB2, 0x01, 0x0C, le=256)
    assert retry_with_le(cmd, ResponseApdu.from_sw(0x6C1D)) == CommandApdu(0x00, 0xB2, 0x01, 0x0C, le=0x1D)
    assert retry_with_le(cmd, ResponseApdu.from_sw(0x6C00)).le == 256
    assert retry_with_le(cmd, ResponseApdu.from_sw(0x9000)) is None


class ScriptedCard:
    """Answers each expected command APDU (hex) with a scripted response (hex)."""

    def __init__(self, script):
        self.script = [(h(c), h(r)) for c, r in script]
        self.sent = []

    def __call__(self, apdu: bytes) -> bytes:
        self.sent.append(apdu)
        expected, answer = self.script[len(self.sent) - 1]
        assert apdu == expected, hexs(apdu)
        return answer


def test_chaining_follows_61xx_and_concatenates():
    card = ScriptedCard(
        [
            ("00A4040007A0000003330101", "6110"),
            ("00C0000010", "6F0E8407A0000003330101A503" + "6103"),
            ("00C0000003", "500142" + "9000"),
        ]
    )
    resp = transmit_with_chaining(card, CommandApdu.decode(h("00A4040007A0000003330101")))
    assert resp.sw == 0x9000
    assert resp.data == h("6F0E8407A0000003330101A503500142")
    assert len(card.sent) == 3


def test_chaining_follows_6cxx_then_61xx():
    card = ScriptedCard(
        [
            ("00B2010C00", "6C05"),
            ("00B2010C05", "6102"),
            ("00C0000002", "AABB6A80"),
        ]
    )
    resp = ApduExchanger(card).transmit(CommandApdu(0x00, 0xB2, 0x01, 0x0C, le=256))
    assert resp == ResponseApdu(h("AABB"), 0x6A, 0x80)


def test_get_response_on_the_commands_channel_and_6cxx_on_get_response():
    card = ScriptedCard(
        [
            ("83CA9F7F00", "6100"),
            ("03C0000000", "6C20"),
            ("03C0000020", "00" * 32 + "9000"),
        ]
    )
    resp = transmit_with_chaining(card, CommandApdu(0x83, 0xCA, 0x9F, 0x7F, le=256))
    assert resp.data == bytes(32)
    card = ScriptedCard([("C1CA9F7F00", "6101"), ("80C0000001", "019000")])
    resp = ApduExchanger(card, get_response_cla=0x80).transmit_with_chaining(
        CommandApdu(0xC1, 0xCA, 0x9F, 0x7F, le=256)
    )
    assert resp.data == b"\x01"


def test_chaining_is_bounded():
    endless = ScriptedCard([("00CA9F7F00", "6101")] + [("00C0000001", "006101")] * 4)
    with pytest.raises(ApduError, match="4 exchanges"):
        transmit_with_chaining(endless, CommandApdu(0x00, 0xCA, 0x9F, 0x7F, le=256), max_exchanges=4)


def test_6cxx_asking_for_the_same_le_raises():
    card = ScriptedCard([("00B2010C00", "6C05"), ("00B2010C05", "6C05")])
    with pytest.raises(ApduError, match="already had Le"):
        transmit_with_chaining(card, CommandApdu(0x00, 0xB2, 0x01, 0x0C, le=256))


def test_malformed_card_answer_raises_apdu_error():
    with pytest.raises(ApduError):
        transmit_with_chaining(lambda apdu: b"\x90", CommandApdu(0, 0xA4, 4, 0))


# -- properties --------------------------------------------------------------------------------

commands = st.builds(
    CommandApdu,
    cla=st.integers(0, 255),
    ins=st.integers(0, 255),
    p1=st.integers(0, 255),
    p2=st.integers(0, 255),
    data=st.one_of(
        st.binary(max_size=300),
        st.integers(256, 65535).map(lambda n: bytes((n & 0xFF,)) * n),
    ),
    le=st.one_of(st.none(), st.integers(1, 300), st.integers(65000, 65536)),
    extended=st.one_of(st.none(), st.just(True)),
)


@pytest.mark.property
@given(commands)
def test_property_command_round_trip(cmd):
    raw = cmd.encode()
    decoded = CommandApdu.decode(raw)
    assert decoded == cmd
    assert decoded.case == cmd.case
    assert decoded.encode() == raw


@pytest.mark.property
@given(st.binary(max_size=600))
def test_property_random_bytes_only_apdu_error(raw):
    try:
        cmd = CommandApdu.decode(raw)
    except ApduError:
        return
    assert cmd.encode() == raw


@pytest.mark.property
@given(st.binary(max_size=40))
def test_property_response_round_trip(raw):
    try:
        resp = ResponseApdu.decode(raw)
    except ApduError:
        assert len(raw) < 2
        return
    assert resp.encode() == raw


@pytest.mark.property
@given(st.binary(max_size=64), st.sampled_from(["", " ", "\n"]))
def test_property_hex_round_trip(data, sep):
    assert parse_hex(hexs(data, sep)) == data
    assert parse_hex(hexs(data).lower()) == data


@pytest.mark.property
@given(st.text(max_size=20))
def test_property_parse_hex_only_protocol_error(text):
    try:
        result = parse_hex(text)
    except ProtocolError:
        return
    assert isinstance(result, bytes)
