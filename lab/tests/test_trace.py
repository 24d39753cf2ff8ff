"""APDU trace JSON lines with masking at write time."""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paylab.lab.protocol.errors import ApduError, ProtocolError
from paylab.lab.protocol.masking import luhn_ok
from paylab.lab.protocol.tlv import Tlv, tlv
from paylab.lab.protocol.trace import (
    TraceRecord,
    TraceWriter,
    logical_channel,
    mask_command_hex,
    mask_record,
    mask_response_hex,
    read_trace,
    record_from_json,
    record_to_json,
)

GPO_COMMAND = bytes.fromhex("80A8000023832136800000000000000001000000000000015600000000000156170601002B29EBE400")
GPO_RESPONSE = bytes.fromhex(
    "774F82027C009F36020ADC57116299999999999999D201120101234567899F101307010103A00000010A01"
    "0000038787868FD1FC9F2608AD03EE811AFAD4845F3401009F6C0200009F5D06000000038787"
) + bytes.fromhex("9000")
TRACK2_PAN = "6299999999999999"
TRACK2_REST = "20112010123456789"
PBOC = "A000000333"


def _luhn_pan(body: str) -> str:
    return next(body + c for c in "0123456789" if luhn_ok(body + c))


PAN = _luhn_pan("621234567890123")  # made up
READ_RECORD = bytes.fromhex("00B2010C00")
RECORD = (
    Tlv.build(
        0x70,
        Tlv(0x5A, bytes.fromhex(PAN)),
        Tlv(0x5F24, bytes.fromhex("301231")),
        Tlv(0x5F20, b"ZHANG/SAN"),
        Tlv(0x57, bytes.fromhex(PAN + "D30122010000012345")),
        Tlv(0x9F1F, b"3132333435"),
        Tlv(0x56, ("B" + PAN + "^ZHANG/SAN^3012201").encode()),
    ).encode()
    + b"\x90\x00"
)


def _write(*records: TraceRecord, **kwargs: object) -> str:
    stream = io.StringIO()
    writer = TraceWriter(stream, **kwargs)  # type: ignore[arg-type]
    for record in records:
        writer.write(record)
    return stream.getvalue()


@pytest.mark.vectors
def test_gpo_response_is_masked_in_trace() -> None:
    record = TraceRecord.from_apdus(
        12.5, command=GPO_COMMAND, response=GPO_RESPONSE, transport="pcsc:ACS ACR1252", duration_ms=48.0
    )
    text = _write(record)
    assert text.endswith("\n")
    assert text.count("\n") == 1
    assert TRACK2_PAN not in text
    assert TRACK2_REST not in text
    assert "D201120101" not in text
    line = json.loads(text)
    assert line["direction"] == "CR"
    assert line["sw"] == "9000"
    assert line["masked"] is True
    assert line["transport"] == "pcsc:ACS ACR1252"
    assert line["command"] == GPO_COMMAND.hex().upper()  # GPO data holds nothing sensitive
    masked = "5711629999******9999D*****************9F10"
    assert masked in line["response"]
    assert len(line["response"]) == 2 * len(GPO_RESPONSE)
    track2 = line["response_tlv"][0]["children"][2]
    assert track2["tag"] == "57"
    assert track2["masked"] is True
    assert line["command_tlv"][0]["tag"] == "83"


def test_read_record_with_pan_name_and_tracks() -> None:
    record = TraceRecord.from_apdus(1.0, command=READ_RECORD, response=RECORD, kernel=PBOC)
    text = _write(record)
    assert PAN not in text
    assert PAN[6:12] not in text
    for secret in ("ZHANG", b"ZHANG".hex().upper(), "3132333435", b"31323334".hex().upper(), "30122010000012345"):
        assert secret not in text, secret
    assert "301231" in text  # expiry stays visible
    assert PAN[:6] + "******" + PAN[-4:] in text
    assert "<masked 9 bytes>" in text


def test_reveal_writes_clear_text() -> None:
    record = TraceRecord.from_apdus(1.0, command=GPO_COMMAND, response=GPO_RESPONSE)
    line = json.loads(_write(record, reveal=True))
    assert line["masked"] is False
    assert TRACK2_PAN + "D" + TRACK2_REST in line["response"]
    assert line["response_tlv"][0]["children"][2]["value"] == (TRACK2_PAN + "D" + TRACK2_REST)


def test_json_lines_read_back() -> None:
    records = [
        TraceRecord.from_apdus(1.0, command=bytes.fromhex("00A404000E325041592E5359532E444446303100")),
        TraceRecord.from_apdus(1.25, response=bytes.fromhex("6A82"), channel=1),
        TraceRecord.from_apdus(2.0, command=GPO_COMMAND, response=GPO_RESPONSE, kernel=PBOC, duration_ms=3.5),
    ]
    text = _write(*records)
    lines = text.splitlines()
    assert len(lines) == 3
    for line in lines:
        json.loads(line)
    back = read_trace(["", *lines, "   "])
    assert [r.direction for r in back] == ["C", "R", "CR"]
    assert back[1].sw == "6A82"
    assert back[1].channel == 1
    assert back[2].kernel == PBOC
    assert back[2].duration_ms == 3.5
    assert all(r.masked for r in back)
    # PBOC names in the tree: the kernel came with the record.
    names = [c["name"] for c in back[2].response_tlv[0]["children"]]
    assert "Available Offline Spending Amount (e-cash balance)" in names
    # Writing read-back records again changes nothing.
    assert _write(*back) == text
    assert record_from_json(record_to_json(back[2])) == back[2]


def test_secret_commands_are_hidden() -> None:
    verify = bytes.fromhex("0020008008241234FFFFFFFFFF")
    assert mask_command_hex(verify) == "0020008008" + "*" * 16
    put_key = bytes.fromhex("80D8000104") + bytes(4)
    assert mask_command_hex(put_key) == "80D8000104" + "*" * 8
    store_data = bytes.fromhex("80E2800004") + bytes.fromhex("01020304") + b"\x00"
    assert mask_command_hex(store_data) == "80E2800004" + "*" * 8 + "00"
    select = bytes.fromhex("00A4040008A00000033301010100")
    assert mask_command_hex(select) == select.hex().upper()


def test_opaque_data_is_scrubbed() -> None:
    # A proprietary tag and non-TLV data holding a PAN in BCD.
    proprietary = tlv(0xDF7F, bytes.fromhex(PAN)) + b"\x90\x00"
    assert PAN not in mask_response_hex(proprietary)
    raw = bytes.fromhex("01" + PAN + "02") + b"\x90\x00"
    assert PAN not in mask_response_hex(raw)
    unknown_command = bytes.fromhex("80EE000008") + bytes.fromhex(PAN)
    assert PAN not in mask_command_hex(unknown_command)
    assert mask_response_hex(b"\x90") == "90"
    # GENERATE AC data stays readable: it never holds a PAN.
    gen_ac = bytes.fromhex("80AE80001D") + bytes.fromhex("000000000001" * 4 + "0156" * 2 + "1706") + b"\x00"
    assert mask_command_hex(gen_ac) == gen_ac.hex().upper()


def test_masking_without_kernel_is_conservative() -> None:
    mastercard_track2 = tlv(0x70, tlv(0x9F6B, bytes.fromhex(PAN + "D3012201"))) + b"\x90\x00"
    assert PAN not in mask_response_hex(mastercard_track2)
    assert PAN not in mask_response_hex(mastercard_track2, "A000000004")


def test_logical_channels() -> None:
    assert [logical_channel(c) for c in (0x00, 0x01, 0x03, 0x80, 0x84, 0x40, 0x4F, 0xC3)] == [
        0, 1, 3, 0, 0, 4, 19, 7,
    ]  # fmt: skip
    assert TraceRecord.from_apdus(0.0, command=bytes.fromhex("0270000000")).channel == 2
    assert TraceRecord.from_apdus(0.0, command=bytes.fromhex("41B2010C00")).channel == 5
    with pytest.raises(ApduError):
        logical_channel(0xFF)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timestamp": 0.0, "direction": "X", "command": "00"},
        {"timestamp": 0.0, "direction": "C"},
        {"timestamp": 0.0, "direction": "R", "command": "00A40400", "response": "9000"},
        {"timestamp": 0.0, "direction": "CR", "command": "00A40400"},
        {"timestamp": 0.0, "direction": "C", "command": "0G"},
        {"timestamp": 0.0, "direction": "C", "command": "123"},
        {"timestamp": 0.0, "direction": "R", "response": "90"},
        {"timestamp": "now", "direction": "R", "response": "9000"},
        {"timestamp": 0.0, "direction": "R", "response": "9000", "channel": 20},
    ],
)
def test_record_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(ProtocolError):
        TraceRecord(**kwargs)  # type: ignore[arg-type]


def test_from_apdus_needs_something() -> None:
    with pytest.raises(ProtocolError):
        TraceRecord.from_apdus(0.0)


@pytest.mark.parametrize(
    "line", ["not json", "[1, 2]", '{"direction": "C"}', '{"timestamp": 1, "direction": "C", "command": 5}']
)
def test_read_trace_errors(line: str) -> None:
    with pytest.raises(ProtocolError) as info:
        read_trace(['{"timestamp": 0, "direction": "R", "response": "9000"}', line])
    assert info.value.field == "trace line 2" or "command" in (info.value.field or "")


def test_already_masked_records_pass_through() -> None:
    record = TraceRecord(timestamp=1.0, direction="R", response="5A08******9000")
    assert mask_record(record).response == "5A08******9000"
    assert mask_record(record).response_tlv is None


# --- properties -----------------------------------------------------------------------------------


@st.composite
def pans(draw: st.DrawFn) -> str:
    length = draw(st.sampled_from([14, 16, 18]))  # even: whole BCD bytes
    digits = draw(st.text(alphabet="0123456789", min_size=length - 2, max_size=length - 2))
    return _luhn_pan(draw(st.sampled_from("3456")) + digits)


@pytest.mark.property
@settings(max_examples=200, deadline=None)
@given(pans(), st.sampled_from([None, PBOC, "A000000003", "A000000004"]), st.booleans())
def test_trace_never_contains_the_pan(pan: str, kernel: str | None, wrap: bool) -> None:
    objects = [Tlv(0x5A, bytes.fromhex(pan)), Tlv(0x57, bytes.fromhex(pan + "D3012201"))]
    body = Tlv.build(0x70, *objects).encode() if wrap else b"".join(o.encode() for o in objects)
    record = TraceRecord.from_apdus(0.0, command=READ_RECORD, response=body + b"\x90\x00")
    text = _write(record, kernel=kernel)
    assert pan not in text
    assert read_trace(text.splitlines())[0].masked


@pytest.mark.property
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=60), st.binary(min_size=2, max_size=60), st.booleans())
def test_any_apdu_bytes_can_be_traced(command: bytes, response: bytes, reveal: bool) -> None:
    record = TraceRecord.from_apdus(0.0, command=command, response=response)
    (back,) = read_trace(_write(record, reveal=reveal).splitlines())
    assert len(back.command or "") == 2 * len(command)
    assert len(back.response or "") == 2 * len(response)
    assert back.sw == response[-2:].hex().upper()
