"""SMS-PP data download formats: SMS-DELIVER (3GPP TS 23.040) and the ENVELOPE (TS 31.111)."""

from __future__ import annotations

import contextlib
import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paylab.lab.protocol.ota import OtaKeys, Spi, build_command_packet, parse_command_packet
from paylab.lab.protocol.ota.sms import (
    DCS_8BIT_CLASS2,
    Address,
    Concatenation,
    EnvelopeResponse,
    InformationElement,
    Segment,
    SegmentReassembler,
    SmsDeliver,
    SmsError,
    SmsPpDownload,
    build_envelope_command,
    build_envelope_response,
    command_packet,
    command_packet_segment,
    concatenation,
    encode_udh,
    max_concatenated_packet,
    message_class,
    octet_coded,
    parse_envelope_command,
    parse_envelope_response,
    parse_udh,
    scts_from_datetime,
    segment_command_packet,
)
from paylab.lab.protocol.ota.spi import Checksum, CounterMode

h = bytes.fromhex
KEYS = OtaKeys(kic_key=h("000102030405060708090A0B0C0D0E0F"), kid_key=h("0F0E0D0C0B0A09080706050403020100"),
               kic=0x12, kid=0x12)  # lab test keys
UTC8 = datetime.timezone(datetime.timedelta(hours=8))
SCTS = scts_from_datetime(datetime.datetime(2024, 5, 1, 12, 30, 45, tzinfo=UTC8))


def test_scts_is_swapped_semi_octets_with_quarter_hour_timezone():
    assert h("42501021035423") == SCTS  # 24-05-01 12:30:45, +32 quarters
    west = datetime.datetime(1999, 12, 31, 23, 59, 9, tzinfo=datetime.timezone(datetime.timedelta(hours=-5)))
    assert scts_from_datetime(west) == h("9921133295900A")  # -20 quarters: 02 swapped, sign bit 08
    with pytest.raises(SmsError):
        scts_from_datetime(datetime.datetime(2024, 1, 1))


def test_envelope_vector_built_by_hand():
    ud = h("027000 0011 0D 1221 12 12 B00010 0000000001 00")
    deliver = SmsDeliver(Address("12345", 0x81), ud, scts=SCTS)
    tpdu = h("44 05 81 2143F5 7F F6") + SCTS + bytes((len(ud),)) + ud
    assert deliver.encode() == tpdu
    download = SmsPpDownload(deliver, Address("8613800100500"))
    inner = h("82 02 83 81") + h("06 08 91 6831081000 05F0") + h("8B") + bytes((len(tpdu),)) + tpdu
    envelope = download.encode()
    assert envelope == h("D1") + bytes((len(inner),)) + inner
    assert SmsPpDownload.decode(envelope) == download
    capdu = build_envelope_command(download)
    assert capdu == h("80C20000") + bytes((len(envelope),)) + envelope + h("00")
    assert parse_envelope_command(capdu) == download
    # the comprehension-required flag is ignored, and a long object uses the 81 length form
    long = SmsPpDownload(SmsDeliver(Address("1"), h("027000") + bytes(120)))
    assert long.encode()[:3] == h("D1 81") + bytes((len(long.encode()) - 3,))
    assert SmsPpDownload.decode(long.encode().replace(h("820283"), h("020283"), 1)) == long


def test_secured_packet_travels_through_sms_and_envelope():
    spi = Spi(counter=CounterMode.HIGHER, ciphering=True, checksum=Checksum.CC)
    packet = build_command_packet(spi=spi, kic=KEYS.kic, kid=KEYS.kid, kic_key=KEYS.kic_key, kid_key=KEYS.kid_key,
                                  tar=h("000000"), counter=5, data=h("80F28000024F0000"))
    deliver = SmsDeliver(Address("1234"), packet)  # build_command_packet's output is a TP-UD
    assert deliver.header == (InformationElement(0x70),)
    capdu = build_envelope_command(SmsPpDownload(deliver, Address("8613800100500")))
    received = command_packet(parse_envelope_command(capdu).deliver)
    parsed = parse_command_packet(received, keys_for_kic_kid=KEYS, last_counter=4, udh=False)
    assert parsed.data == h("80F28000024F0000")
    assert parsed.counter_state == 5


def test_command_packet_needs_pid_7f_and_the_command_packet_identifier():
    packet = h("027000") + bytes(20)
    assert command_packet(SmsDeliver(Address("1"), packet)) == bytes(20)
    with pytest.raises(SmsError, match="TP-PID"):
        command_packet(SmsDeliver(Address("1"), packet, pid=0x00))
    with pytest.raises(SmsError, match="IE 70"):
        command_packet(SmsDeliver(Address("1"), h("020100") + bytes(20)))
    with pytest.raises(SmsError, match="concatenated"):
        command_packet(SmsDeliver(Address("1"), h("0700030A0201 7000") + bytes(20)))
    with pytest.raises(SmsError, match="IE 70"):
        command_packet(SmsDeliver(Address("1"), bytes(20), udhi=False))


@pytest.mark.parametrize(("dcs", "octets", "klass"), [
    (0xF6, True, 2), (0x16, True, 2), (0x04, True, None), (0x08, True, None), (0x00, False, None),
    (0xF2, False, 2), (0xF5, True, 1), (0xE0, True, None), (0xC0, False, None), (0x11, False, 1),
])
def test_data_coding_scheme(dcs, octets, klass):
    assert octet_coded(dcs) is octets
    assert message_class(dcs) == klass


@pytest.mark.parametrize(("build", "match"), [
    (lambda: SmsDeliver(Address("1"), b"x", dcs=0x00), "7-bit"),
    (lambda: SmsDeliver(Address("1"), bytes(141), udhi=False), "concatenated"),
    (lambda: SmsDeliver(Address("1"), h("05") + bytes(3)), "UDHL"),
    (lambda: SmsDeliver(Address("1"), b"", scts=bytes(6)), "TP-SCTS"),
    (lambda: Address("12x"), "address"),
    (lambda: Address("1", 0x50), "TON/NPI"),
    (lambda: Address("1", 0xD1), "alphanumeric"),
])
def test_builders_refuse_what_they_cannot_encode(build, match):
    with pytest.raises(SmsError, match=match):
        build()


@pytest.mark.parametrize(("tpdu", "offset", "field"), [
    ("01", 1, None),
    ("45 04 81 2143 7F F6 00000000000000 00", 0, "TP-MTI"),
    ("44 04 81 2143 7F F6 00000000000000 02 01", 14, "TP-UDL"),
    ("44 04 81 2143 7F 00 00000000000000 00", 6, "TP-DCS"),
    ("44 04 D0 2143 7F F6 00000000000000 00", 2, "TP-OA"),
    ("44 04 81 2F43 7F F6 00000000000000 00", 3, "address"),
    ("44 04 81 2143 7F F6 00000000000000 03 047000", 15, "UDHL"),
    ("44 04 81 2143 7F F6 00000000000000 04 03700500", 16, "IEDL"),
])
def test_tpdu_errors_name_the_offset(tpdu, offset, field):
    with pytest.raises(SmsError) as info:
        SmsDeliver.decode(h(tpdu))
    assert info.value.offset == offset
    assert info.value.field == field


@pytest.mark.parametrize(("envelope", "offset"), [
    ("D2 00", 0),
    ("D1 05 82028381", 1),
    ("D1 04 82028381", 0),
    ("D1 06 82028381 8B 01", 6),
    ("D1 0A 82028381 8B 80 00000000", 7),
    ("D1 07 8203838100 8B 00", 4),
    ("D1 09 82028381 06 01 01 8B 00", 8),
])
def test_envelope_errors_name_the_offset(envelope, offset):
    with pytest.raises(SmsError) as info:
        SmsPpDownload.decode(h(envelope))
    assert info.value.offset == offset


def test_envelope_tpdu_errors_are_reported_at_their_offset_in_the_envelope():
    tpdu = h("45 04 81 2143 7F F6 00000000000000 00")
    with pytest.raises(SmsError) as info:
        SmsPpDownload.decode(h("D1") + bytes((6 + len(tpdu),)) + h("82028381 8B") + bytes((len(tpdu),)) + tpdu)
    assert (info.value.offset, info.value.field) == (8, "TP-MTI")


def test_envelope_command_and_response_shapes():
    with pytest.raises(SmsError):
        parse_envelope_command(h("80C2000100"))
    with pytest.raises(SmsError):
        parse_envelope_command(h("80C2"))
    assert build_envelope_response(h("027100")) == h("0271009000")
    assert parse_envelope_response(h("027100 9000")) == EnvelopeResponse(h("027100"), 0x9000)
    assert parse_envelope_response(h("9000")).ok
    assert parse_envelope_response(h("9112")).ok
    assert parse_envelope_response(h("01 6200")).download_error
    with pytest.raises(SmsError):
        parse_envelope_response(h("90"))


# --- properties --------------------------------------------------------------------------------

addresses = st.builds(Address, st.text("0123456789*#abc", max_size=20),
                      st.integers(0x80, 0xFF).filter(lambda v: v & 0x70 != 0x50))
elements = st.lists(st.builds(InformationElement, st.integers(0, 0xFF), st.binary(max_size=6)), max_size=4)


@st.composite
def delivers(draw) -> SmsDeliver:
    udhi = draw(st.booleans())
    header = encode_udh(draw(elements)) if udhi else b""
    body = draw(st.binary(max_size=140 - len(header)))
    return SmsDeliver(
        draw(addresses), header + body, pid=draw(st.integers(0, 0xFF)),
        dcs=draw(st.integers(0, 0xFF).filter(octet_coded)), scts=draw(st.binary(min_size=7, max_size=7)),
        udhi=udhi, more_messages=draw(st.booleans()), loop_prevention=draw(st.booleans()),
        status_report=draw(st.booleans()), reply_path=draw(st.booleans()),
    )


@pytest.mark.property
@given(delivers())
def test_sms_deliver_round_trips(deliver):
    assert SmsDeliver.decode(deliver.encode()) == deliver
    if deliver.udhi:
        header, start = parse_udh(deliver.user_data)
        assert encode_udh(header) == deliver.user_data[:start]
        assert deliver.short_message == deliver.user_data[start:]


@pytest.mark.property
@given(delivers().filter(lambda d: len(d.encode()) <= 200), st.one_of(st.none(), addresses),
       st.integers(0, 0xFF), st.integers(0, 0xFF))
def test_envelope_round_trips_and_every_prefix_is_refused(deliver, address, source, destination):
    download = SmsPpDownload(deliver, address, source, destination)
    encoded = download.encode()
    assert SmsPpDownload.decode(encoded) == download
    assert parse_envelope_command(build_envelope_command(download)) == download
    for cut in range(len(encoded)):
        with pytest.raises(SmsError):
            SmsPpDownload.decode(encoded[:cut])


@pytest.mark.property
@settings(max_examples=300)
@given(st.binary(max_size=120))
def test_parsers_raise_only_sms_errors(data):
    for parse in (SmsDeliver.decode, SmsPpDownload.decode, parse_envelope_command, parse_envelope_response):
        with contextlib.suppress(SmsError):
            parse(data)


@pytest.mark.property
@given(st.binary(max_size=100))
def test_parsing_a_mutated_envelope_raises_only_sms_errors(tail):
    base = SmsPpDownload(SmsDeliver(Address("1234"), h("027000") + tail[:60]), Address("86138")).encode()
    for i in range(len(base)):
        mutated = base[:i] + bytes((base[i] ^ (tail[0] if tail else 0xFF),)) + base[i + 1:]
        with contextlib.suppress(SmsError):
            SmsPpDownload.decode(mutated)


def test_default_dcs_is_8bit_class_2():
    assert DCS_8BIT_CLASS2 == 0xF6
    assert message_class(DCS_8BIT_CLASS2) == 2


# --- concatenated SMS (TS 23.040 9.2.3.24.1, TS 31.115 clause 4) ------------------------------------


def test_concatenation_ie_vectors():
    assert Concatenation(0x2A, 3, 1).element() == InformationElement(0x00, h("2A0301"))
    assert Concatenation(0x1234, 2, 2, wide=True).element() == InformationElement(0x08, h("12340202"))
    assert Concatenation.from_element(InformationElement(0x08, h("12340202"))) == Concatenation(0x1234, 2, 2, True)
    deliver = SmsDeliver(Address("1"), h("07 00032A0301 7000") + bytes(4))
    assert concatenation(deliver) == Concatenation(0x2A, 3, 1)
    assert concatenation(SmsDeliver(Address("1"), h("027000"))) is None


@pytest.mark.parametrize("ie", ["00 02 2A03", "00 03 2A0000", "00 03 2A0204", "08 03 123402", "01 03 2A0201"])
def test_bad_concatenation_ies_are_refused(ie):
    raw = h(ie)
    with pytest.raises(SmsError):
        Concatenation.from_element(InformationElement(raw[0], raw[2:]))


def test_a_long_packet_is_cut_into_full_segments_with_the_cpi_in_the_first():
    packet = bytes(range(256)) + bytes(44)  # 300 octets
    segments = segment_command_packet(packet, 0x2A)
    assert [len(s) for s in segments] == [140, 140, 300 - 132 - 134 + 6]
    assert segments[0][:8] == h("07 00032A0301 7000")
    assert segments[1][:6] == h("05 00032A0302")
    assert segments[2][:6] == h("05 00032A0303")
    assert b"".join(s[8 if i == 0 else 6:] for i, s in enumerate(segments)) == packet
    assert max_concatenated_packet(1) == 137
    assert max_concatenated_packet(3) == 132 + 2 * 134
    assert len(segment_command_packet(bytes(max_concatenated_packet(3)), 1)) == 3
    assert len(segment_command_packet(bytes(max_concatenated_packet(3) + 1), 1)) == 4
    # a packet that fits one SMS is the plain 02 70 00 form
    assert segment_command_packet(bytes(137), 9) == [h("027000") + bytes(137)]
    wide = segment_command_packet(bytes(200), 0x1234, wide=True)
    assert wide[0][:9] == h("08 0804123402017000")
    assert wide[1][:7] == h("06 0804123402 02")


def test_command_packet_segment_needs_the_cpi_only_in_the_first_segment():
    first, second = segment_command_packet(bytes(200), 7)
    one = command_packet_segment(SmsDeliver(Address("1"), first))
    two = command_packet_segment(SmsDeliver(Address("1"), second))
    assert (one.concat, one.command_packet_identifier) == (Concatenation(7, 2, 1), True)
    assert (two.concat, two.command_packet_identifier) == (Concatenation(7, 2, 2), False)
    with pytest.raises(SmsError, match="IE 70"):
        command_packet_segment(SmsDeliver(Address("1"), h("05 0003070201") + bytes(10)))
    with pytest.raises(SmsError, match="TP-PID"):
        command_packet_segment(SmsDeliver(Address("1"), first, pid=0))
    with pytest.raises(SmsError, match="concatenated"):  # the single-SMS reader still refuses segments
        command_packet(SmsDeliver(Address("1"), first))
    single = command_packet_segment(SmsDeliver(Address("1"), h("027000") + bytes(5)))
    assert (single.concat, single.data) == (None, bytes(5))


def _segments(packet: bytes, reference: int, origin: str = "10658") -> list[Segment]:
    return [command_packet_segment(SmsDeliver(Address(origin), ud)) for ud in segment_command_packet(packet, reference)]


def test_reassembly_in_any_order_with_duplicates():
    packet = bytes(range(256)) * 2
    parts = _segments(packet, 1)
    assert len(parts) == 4
    assembler = SegmentReassembler()
    assert [assembler.add(s, 0.0) for s in (parts[3], parts[1], parts[1], parts[0])] == [None] * 4
    assert assembler.pending == 1
    assert assembler.add(parts[2], 1.0) == packet
    assert assembler.pending == 0
    # two messages interleaved, told apart by reference and originator
    a, b, c = _segments(bytes(200), 5), _segments(b"\x01" * 200, 6), _segments(b"\x02" * 200, 5, "10086")
    assert assembler.add(a[0], 2.0) is None
    assert assembler.add(b[1], 2.0) is None
    assert assembler.add(c[0], 2.0) is None
    assert assembler.add(b[0], 2.0) == b"\x01" * 200
    assert assembler.add(c[1], 2.0) == b"\x02" * 200
    assert assembler.add(a[1], 2.0) == bytes(200)


def test_incomplete_messages_time_out_and_reused_references_restart():
    assembler = SegmentReassembler(timeout_s=60.0, max_messages=2)
    first, second = _segments(bytes(200), 9)
    assert assembler.add(first, 0.0) is None
    assert assembler.add(second, 61.0) is None  # the first segment expired: this one waits alone
    assert (assembler.pending, assembler.dropped) == (1, 1)
    assert assembler.expire(200.0) == 1
    # the same reference with other content: the old partial message is dropped
    old, new = _segments(bytes(200), 3), _segments(b"\xff" * 200, 3)
    assembler.add(old[0], 300.0)
    assert assembler.add(new[0], 300.0) is None
    assert assembler.add(new[1], 300.0) == b"\xff" * 200
    # at most max_messages partial messages: the oldest goes
    for reference, now in ((1, 400.0), (2, 401.0), (3, 402.0)):
        assembler.add(_segments(bytes(200), reference)[0], now)
    assert assembler.pending == 2
    assert assembler.add(_segments(bytes(200), 1)[1], 403.0) is None  # reference 1 was evicted
