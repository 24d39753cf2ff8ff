"""ECR <-> POS framing, messages and link rules (domain brief section 6)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paylab.lab.protocol.ecr import (
    ACK_BYTES,
    NAK_BYTES,
    AckReceived,
    Delivered,
    DuplicateFrame,
    DuplicateRequest,
    EcrEvent,
    EcrLink,
    EcrMessage,
    FrameParser,
    FrameReceived,
    FrameRejected,
    KeepAlive,
    LinkFailed,
    MessageReceived,
    MessageRejected,
    NakReceived,
    NoiseDiscarded,
    PartialFrameDiscarded,
    QueryLastRequired,
    QueryLastResolved,
    ResponseReceived,
    ResponseTimeout,
    Retransmission,
    decode_frame,
    encode_frame,
    lrc,
    response_type,
)
from paylab.lab.protocol.errors import EcrFrameError
from paylab.lab.protocol.hexutil import h

# -- frames ------------------------------------------------------------------------------------


def test_frame_layout():
    # LRC = 00 ^ 02 ^ 'S' ^ '0' ^ 03 = 62
    assert encode_frame(b"S0") == h("02 0002 5330 03 62")
    assert encode_frame(b"") == h("02 0000 03 03")
    assert encode_frame(bytes(1234))[1:3] == h("1234")
    assert lrc(h("0002533003")) == 0x62
    assert decode_frame(h("02 0002 5330 03 62")) == b"S0"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ("", "STX"),
        ("03 0002 5330 03 62", "STX"),
        ("02 00", "LEN"),
        ("02 00A2 5330 03 62", "LEN"),
        ("02 0003 5330 03 62", "LEN"),
        ("02 0002 5330 04 62", "ETX"),
        ("02 0002 5330 03 63", "LRC"),
    ],
)
def test_decode_frame_errors(raw, field):
    with pytest.raises(EcrFrameError) as info:
        decode_frame(h(raw))
    assert info.value.field == field


def test_encode_frame_limits():
    assert len(encode_frame(bytes(9999))) == 10004
    with pytest.raises(EcrFrameError):
        encode_frame(bytes(10000))
    with pytest.raises(EcrFrameError):
        encode_frame("S0")  # type: ignore[arg-type]


# -- parser ------------------------------------------------------------------------------------

FRAME = encode_frame(b"S0\x04\x03\x00\x00\x01")


def test_parser_round_trip_and_controls():
    parser = FrameParser()
    events = parser.feed(ACK_BYTES + FRAME + NAK_BYTES, 0.0)
    assert events == [AckReceived(), FrameReceived(b"S0\x04\x03\x00\x00\x01"), NakReceived()]
    assert not parser.in_frame


def test_parser_skips_noise_before_stx():
    events = FrameParser().feed(b"\xff\x00garbage" + FRAME + b"\x99", 0.0)
    assert events == [
        NoiseDiscarded(b"\xff\x00garbage"),
        FrameReceived(FRAME[3:-2]),
        NoiseDiscarded(b"\x99"),
    ]


@pytest.mark.parametrize("cut", range(1, len(FRAME)))
def test_parser_split_at_every_byte(cut):
    parser = FrameParser()
    assert parser.feed(FRAME[:cut], 0.0) == []
    assert parser.in_frame
    assert parser.feed(FRAME[cut:], 0.1) == [FrameReceived(FRAME[3:-2])]


def test_parser_byte_by_byte():
    parser = FrameParser()
    events = []
    for index, byte in enumerate(FRAME * 2):
        events += parser.feed(bytes((byte,)), index * 0.01)
    assert events == [FrameReceived(FRAME[3:-2])] * 2


def test_parser_bad_lrc():
    bad = FRAME[:-1] + bytes((FRAME[-1] ^ 0x01,))
    events = FrameParser().feed(bad + FRAME, 0.0)
    assert isinstance(events[0], FrameRejected)
    assert "LRC" in events[0].reason
    assert events[0].raw == bad
    assert events[1] == FrameReceived(FRAME[3:-2])


def test_parser_bad_len_rescans():
    # STX followed by a non-BCD length: only the STX is dropped, the real frame is found.
    events = FrameParser().feed(b"\x02\xab" + FRAME, 0.0)
    assert isinstance(events[0], FrameRejected)
    assert "LEN" in events[0].reason
    assert events[-1] == FrameReceived(FRAME[3:-2])


def test_parser_missing_etx_rescans_from_etx_position():
    # LEN says 1 byte but the frame is longer: the byte where ETX should be starts a real frame.
    events = FrameParser().feed(h("02 0001 41") + FRAME, 0.0)
    assert isinstance(events[0], FrameRejected)
    assert "ETX" in events[0].reason
    assert events[-1] == FrameReceived(FRAME[3:-2])


def test_parser_inter_byte_gap_discards_partial_frame():
    parser = FrameParser()
    assert parser.feed(FRAME[:5], 10.0) == []
    assert parser.feed(FRAME[5:8], 10.5) == []  # 500 ms exactly is still in time
    events = parser.feed(FRAME, 11.01)
    assert events[0] == PartialFrameDiscarded(FRAME[:8], pytest.approx(0.51))
    assert events[1:] == [FrameReceived(FRAME[3:-2])]
    parser.feed(FRAME[:4], 20.0)
    assert parser.poll(20.4) == []
    assert isinstance(parser.poll(20.6)[0], PartialFrameDiscarded)
    assert not parser.in_frame


@pytest.mark.property
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=6))
def test_property_random_bytes_never_raise(data, cuts):
    parser = FrameParser()
    now = 0.0
    events: list[EcrEvent] = []
    previous = 0
    for cut in [*sorted(cuts), len(data)]:
        events += parser.feed(data[previous:cut], now)
        previous = max(previous, cut)
        now += 0.2
    events += parser.poll(now + 1.0)
    assert all(isinstance(event, EcrEvent) for event in events)
    assert not parser.in_frame


@pytest.mark.property
@given(
    st.binary(max_size=200),
    st.binary(max_size=20).map(lambda noise: bytes(b for b in noise if b not in (0x02, 0x06, 0x15))),
    st.lists(st.integers(0, 230), max_size=5),
)
def test_property_frame_survives_noise_and_any_split(data, noise, cuts):
    stream = noise + encode_frame(data)
    parser = FrameParser()
    events: list[EcrEvent] = []
    previous = 0
    for cut in [*sorted(cuts), len(stream)]:
        events += parser.feed(stream[previous:cut], 0.0)
        previous = max(previous, cut)
    frames = [event for event in events if isinstance(event, FrameReceived)]
    assert frames == [FrameReceived(data)]


# -- messages ----------------------------------------------------------------------------------


def test_message_build_encode_decode():
    msg = EcrMessage.build(
        "S1",
        amount=1234,
        currency=156,
        trace=42,
        result="00",
        auth_code="A1B2C3",
        pan_masked="622848******1234",
        rrn="123456789012",
        timestamp="20240601120000",
        receipt=["MERCHANT COPY", "消费 SALE"],
    )
    data = msg.encode()
    assert data.startswith(b"S1" + h("01 06 000000001234") + h("02 02 0156") + h("04 03 000042"))
    decoded = EcrMessage.decode(data)
    assert decoded == msg
    assert (decoded.amount, decoded.currency, decoded.trace, decoded.result) == (1234, 156, 42, "00")
    assert decoded.receipt == ["MERCHANT COPY", "消费 SALE"]
    assert decoded.get("timestamp") == "20240601120000"
    assert decoded.get("ecr_ref") is None
    assert decoded.is_response
    assert not decoded.is_request


def test_message_unknown_tags_are_kept():
    msg = EcrMessage.decode(b"I1" + h("7F 03 010203"))
    assert msg.raw(0x7F) == h("010203")
    assert msg.encode() == b"I1" + h("7F03010203")
    assert EcrMessage("I0", {0x04: h("000001")}).trace == 1


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"S",
        b"s0",
        b"S\xff",
        b"S0\x01",
        b"S0\x01\x06\x00",
        b"S0" + h("01 05 0000001234"),
        b"S0" + h("01 06 00000000123A"),
        b"S0" + h("02 02 1156"),
        b"S1" + h("08 10") + b"6228480012341234",
        b"S1" + h("08 05") + b"62-*1",
        b"S1" + h("06 06") + b"AB\x00DEF",
        b"S1" + h("07 02 C328"),
    ],
)
def test_message_decode_errors(data):
    with pytest.raises(EcrFrameError):
        EcrMessage.decode(data)


@pytest.mark.parametrize(
    ("kwargs", "type_"),
    [
        ({"amount": 10**12}, "S0"),
        ({"amount": -1}, "S0"),
        ({"trace": "1"}, "S0"),
        ({"result": "000"}, "S1"),
        ({"nonsense": 1}, "S0"),
        ({"timestamp": "2024"}, "S1"),
        ({"receipt": "one line"}, "S1"),
        ({}, "S00"),
    ],
)
def test_message_build_errors(kwargs, type_):
    with pytest.raises(EcrFrameError):
        EcrMessage.build(type_, **kwargs)


def test_response_type():
    assert response_type("S0") == "S1"
    with pytest.raises(EcrFrameError):
        response_type("K0")
    with pytest.raises(EcrFrameError):
        response_type("S1")


printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=32)
messages = st.builds(
    EcrMessage.build,
    st.sampled_from(["S0", "S1", "V0", "V1", "R0", "R1", "Q0", "Q1", "C0", "C1", "I0", "I1", "K0", "Z9"]),
    amount=st.none() | st.integers(0, 10**12 - 1),
    currency=st.none() | st.integers(0, 999),
    ecr_ref=st.none() | printable,
    trace=st.none() | st.integers(0, 999999),
    result=st.none() | st.text("0123456789AZ", min_size=2, max_size=2),
    text=st.none() | st.text(max_size=60),
    receipt=st.lists(st.text(max_size=60), max_size=3),
    extra=st.lists(st.tuples(st.integers(0x40, 0xFF), st.binary(max_size=40)), max_size=3),
)


@pytest.mark.property
@given(messages)
def test_property_message_round_trip(msg):
    data = msg.encode()
    assert EcrMessage.decode(data) == msg
    assert EcrMessage.decode(decode_frame(encode_frame(data))) == msg


@pytest.mark.property
@given(st.binary(max_size=80))
def test_property_message_decode_only_ecr_frame_error(data):
    try:
        msg = EcrMessage.decode(data)
    except EcrFrameError:
        return
    assert msg.encode() == data


# -- link --------------------------------------------------------------------------------------

SALE = EcrMessage.build("S0", amount=1000, currency=156, trace=7)
SALE_OK = EcrMessage.build("S1", amount=1000, currency=156, trace=7, result="00", auth_code="123456")


def frames(out):
    return [item for item in out if isinstance(item, bytes) and len(item) > 1]


def events(out, kind=EcrEvent):
    return [item for item in out if isinstance(item, kind)]


def wire(out):
    return b"".join(item for item in out if isinstance(item, bytes))


def test_link_sale_happy_path():
    ecr, pos = EcrLink("ecr"), EcrLink("pos")
    out = ecr.send(SALE, 0.0)
    assert out == [encode_frame(SALE.encode())]
    assert ecr.pending_requests == (SALE,)
    pos_out = pos.feed(wire(out), 0.01)
    assert pos_out == [ACK_BYTES, MessageReceived(SALE)]
    assert ecr.feed(ACK_BYTES, 0.02) == [Delivered(SALE)]
    assert not ecr.busy
    pos_out = pos.send(SALE_OK, 5.0)
    ecr_out = ecr.feed(wire(pos_out), 5.01)
    assert ecr_out == [ACK_BYTES, ResponseReceived(SALE, SALE_OK)]
    assert pos.feed(ACK_BYTES, 5.02) == [Delivered(SALE_OK)]
    assert ecr.pending_requests == ()
    assert not ecr.query_last_required


def test_link_corrupted_frame_is_naked_then_retransmitted():
    ecr, pos = EcrLink("ecr"), EcrLink("pos")
    frame = wire(ecr.send(SALE, 0.0))
    corrupted = frame[:5] + bytes((frame[5] ^ 0x40,)) + frame[6:]
    pos_out = pos.feed(corrupted, 0.01)
    assert pos_out[0] == NAK_BYTES
    assert isinstance(pos_out[1], FrameRejected)
    ecr_out = ecr.feed(NAK_BYTES, 0.02)
    assert ecr_out == [Retransmission(SALE, 2, "NAK"), frame]
    assert pos.feed(frame, 0.03) == [ACK_BYTES, MessageReceived(SALE)]


def test_link_retransmits_on_ack_timeout():
    ecr = EcrLink("ecr")
    frame = wire(ecr.send(SALE, 0.0))
    assert ecr.poll(1.0) == []  # ACK may come up to 1 s
    assert ecr.poll(1.01) == [Retransmission(SALE, 2, "ACK timeout"), frame]
    assert ecr.poll(2.0) == []
    assert ecr.feed(ACK_BYTES, 2.0) == [Delivered(SALE)]


def test_link_three_attempts_then_link_failed():
    ecr = EcrLink("ecr")
    ecr.send(SALE, 0.0)
    assert events(ecr.feed(NAK_BYTES, 0.1)) == [Retransmission(SALE, 2, "NAK")]
    assert events(ecr.poll(1.2)) == [Retransmission(SALE, 3, "ACK timeout")]
    out = ecr.feed(NAK_BYTES, 1.3)
    assert out == [LinkFailed(SALE, 3, "NAK"), QueryLastRequired(SALE, "link failure")]
    assert not ecr.busy
    assert ecr.query_last_required
    assert ecr.pending_requests == ()
    assert ecr.poll(100.0) == []


def test_link_failure_of_non_financial_message_just_reports():
    pos = EcrLink("pos")
    keep_alive = EcrMessage.build("K0", text="PROCESSING")
    pos.send(keep_alive, 0.0)
    pos.send(SALE_OK, 0.0)  # queued behind the keep-alive
    assert frames(pos.poll(1.5)) == [encode_frame(keep_alive.encode())]
    assert frames(pos.poll(3.0)) == [encode_frame(keep_alive.encode())]
    out = pos.poll(4.5)
    assert out == [LinkFailed(keep_alive, 3, "ACK timeout"), encode_frame(SALE_OK.encode())]


def test_link_queues_while_waiting_for_ack():
    pos = EcrLink("pos")
    first, second = EcrMessage.build("K0"), EcrMessage.build("K0", text="INSERT CARD")
    assert frames(pos.send(first, 0.0)) == [encode_frame(first.encode())]
    assert pos.send(second, 0.1) == []
    assert pos.feed(ACK_BYTES, 0.2) == [Delivered(first), encode_frame(second.encode())]


def test_link_keep_alive_extends_response_timeout():
    ecr = EcrLink("ecr")
    ecr.send(SALE, 0.0)
    ecr.feed(ACK_BYTES, 0.1)
    keep_alive = EcrMessage.build("K0", text="PROCESSING")
    assert ecr.feed(encode_frame(keep_alive.encode()), 50.0) == [ACK_BYTES, KeepAlive(keep_alive)]
    assert ecr.poll(100.0) == []  # would have expired at 60 s without the keep-alive
    assert ecr.pending_requests == (SALE,)
    assert ecr.poll(110.01) == [ResponseTimeout(SALE), QueryLastRequired(SALE, "response timeout")]


def test_link_after_response_timeout_query_last_is_required():
    ecr = EcrLink("ecr")
    ecr.send(SALE, 0.0)
    ecr.feed(ACK_BYTES, 0.1)
    assert ecr.poll(60.0) == []
    assert events(ecr.poll(60.5), QueryLastRequired) == [QueryLastRequired(SALE, "response timeout")]
    # The sale is never sent again, nor any other financial request.
    another = EcrMessage.build("S0", amount=1000, currency=156, trace=8)
    for attempt in (SALE, another):
        out = ecr.send(attempt, 61.0)
        assert out == [QueryLastRequired(SALE, "outcome of the previous request unknown", attempt)]
    query = EcrMessage.build("Q0", trace=9)
    assert frames(ecr.send(query, 62.0)) == [encode_frame(query.encode())]
    ecr.feed(ACK_BYTES, 62.1)
    answer = EcrMessage.build("Q1", trace=9, result="00", original_trace=7, original_type="S0", amount=1000)
    out = ecr.feed(encode_frame(answer.encode()), 63.0)
    assert out == [ACK_BYTES, ResponseReceived(query, answer), QueryLastResolved(SALE, answer)]
    assert not ecr.query_last_required
    assert frames(ecr.send(another, 64.0)) == [encode_frame(another.encode())]


def test_link_duplicate_request_replays_last_response():
    pos = EcrLink("pos")
    frame = encode_frame(SALE.encode())
    assert pos.feed(frame, 0.0) == [ACK_BYTES, MessageReceived(SALE)]
    # Our ACK was lost: the ECR sends the same request again while we are still processing.
    assert pos.feed(frame, 1.1) == [ACK_BYTES, DuplicateRequest(SALE, replayed=False)]
    response_frame = encode_frame(SALE_OK.encode())
    assert pos.send(SALE_OK, 5.0) == [response_frame]
    # Duplicate while the response waits for its ACK: not queued twice.
    assert pos.feed(frame, 5.1) == [ACK_BYTES, DuplicateRequest(SALE, replayed=False)]
    assert pos.feed(ACK_BYTES, 5.2) == [Delivered(SALE_OK)]
    # Duplicate after the response went out: ACK and replay it.
    assert pos.feed(frame, 30.0) == [ACK_BYTES, DuplicateRequest(SALE, replayed=True), response_frame]
    assert pos.feed(ACK_BYTES, 30.1) == [Delivered(SALE_OK)]
    # A new trace is a new request.
    sale2 = EcrMessage.build("S0", amount=5, currency=156, trace=8)
    assert pos.feed(encode_frame(sale2.encode()), 40.0) == [ACK_BYTES, MessageReceived(sale2)]


def test_link_ecr_ignores_repeated_response_frame():
    ecr = EcrLink("ecr")
    ecr.send(SALE, 0.0)
    ecr.feed(ACK_BYTES, 0.1)
    response_frame = encode_frame(SALE_OK.encode())
    assert events(ecr.feed(response_frame, 3.0)) == [ResponseReceived(SALE, SALE_OK)]
    assert ecr.feed(response_frame, 4.1) == [ACK_BYTES, DuplicateFrame(SALE_OK)]


def test_link_response_before_ack_counts_as_delivery():
    ecr = EcrLink("ecr")
    ecr.send(SALE, 0.0)
    out = ecr.feed(encode_frame(SALE_OK.encode()), 0.5)
    assert out == [ACK_BYTES, Delivered(SALE), ResponseReceived(SALE, SALE_OK)]
    assert not ecr.busy
    assert ecr.poll(5.0) == []


def test_link_naks_undecodable_message_and_bad_frames():
    pos = EcrLink("pos")
    out = pos.feed(encode_frame(b"s0"), 0.0)
    assert out[0] == NAK_BYTES
    assert isinstance(out[1], MessageRejected)
    out = pos.feed(h("02 0002 5330 03 00"), 1.0)
    assert out[0] == NAK_BYTES
    assert isinstance(out[1], FrameRejected)
    assert pos.feed(b"\xaa", 2.0) == [NoiseDiscarded(b"\xaa")]
    assert pos.feed(ACK_BYTES + NAK_BYTES, 3.0) == []  # stray controls are ignored


def test_link_unsolicited_and_late_messages():
    ecr = EcrLink("ecr")
    late = EcrMessage.build("V1", trace=3, result="00")
    assert ecr.feed(encode_frame(late.encode()), 0.0) == [ACK_BYTES, MessageReceived(late)]
    odd = EcrMessage.build("I0")
    assert ecr.feed(encode_frame(odd.encode()), 1.0) == [ACK_BYTES, MessageReceived(odd)]


def test_link_rejects_bad_arguments():
    with pytest.raises(EcrFrameError):
        EcrLink("printer")  # type: ignore[arg-type]
    with pytest.raises(EcrFrameError):
        EcrLink("ecr").send(b"S0", 0.0)  # type: ignore[arg-type]


def test_link_full_exchange_over_a_noisy_line():
    """ECR and POS wired together; the line flips one byte of the first sale frame."""
    ecr, pos = EcrLink("ecr"), EcrLink("pos")
    received = []
    to_pos = bytearray(wire(ecr.send(SALE, 0.0)))
    to_pos[4] ^= 0xFF
    now = 0.0
    to_ecr = b""
    for _ in range(20):
        now += 0.05
        pos_out = pos.feed(bytes(to_pos), now)
        to_pos = bytearray()
        for item in pos_out:
            if isinstance(item, MessageReceived):
                received.append(item.message)
                pos_out += pos.send(SALE_OK, now)
        to_ecr += wire(pos_out)
        ecr_out = ecr.feed(to_ecr, now)
        to_ecr = b""
        to_pos += wire(ecr_out)
        if events(ecr_out, ResponseReceived):
            break
    assert received == [SALE]
    assert events(ecr_out, ResponseReceived) == [ResponseReceived(SALE, SALE_OK)]


@pytest.mark.property
@given(st.binary(max_size=200), st.sampled_from(["ecr", "pos"]))
def test_property_link_never_raises_on_line_bytes(data, role):
    link = EcrLink(role)
    link.send(EcrMessage.build("S0" if role == "ecr" else "K0", trace=1), 0.0)
    out = link.feed(data[:100], 0.5) + link.feed(data[100:], 0.7) + link.poll(100.0)
    assert all(isinstance(item, EcrEvent | bytes) for item in out)
