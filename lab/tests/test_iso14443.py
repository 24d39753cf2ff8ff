"""ISO/IEC 14443-4 block codec, RATS/ATS/ATQB/ATTRIB and the PICC state machine (pure)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paylab.lab.protocol.errors import ProtocolError
from paylab.lab.protocol.iso14443 import (
    FSDI_TO_FSD,
    ActivationError,
    Atqb,
    Ats,
    Attrib,
    Block,
    BlockError,
    BlockKind,
    BlockSequenceError,
    Iso14443Target,
    Rats,
    TargetState,
    atr_historical_bytes,
    fsd_to_fsdi,
    fsdi_to_fsd,
    fwt_seconds,
    i_block,
    pcsc_atr_type_a,
    pcsc_atr_type_b,
    r_ack,
    r_nak,
    s_deselect,
    s_wtx,
    split_for_chaining,
)

h = bytes.fromhex


# -- block codec: PCB values derived from clause 7.1.1.1 ---------------------------------------------------
@pytest.mark.parametrize(("frame", "kind", "number", "chaining"), [
    ("02", BlockKind.I, 0, False), ("03", BlockKind.I, 1, False),
    ("12", BlockKind.I, 0, True), ("13", BlockKind.I, 1, True),
    ("A2", BlockKind.R_ACK, 0, False), ("A3", BlockKind.R_ACK, 1, False),
    ("B2", BlockKind.R_NAK, 0, False), ("B3", BlockKind.R_NAK, 1, False),
    ("C2", BlockKind.S_DESELECT, 0, False),
])
def test_pcb_vectors(frame, kind, number, chaining):
    block = Block.decode(h(frame))
    assert (block.kind, block.block_number, block.chaining) == (kind, number, chaining)
    assert block.encode() == h(frame)


def test_builders_match_the_spec_bytes():
    assert i_block(h("00A40400"), 0) == h("0200A40400")
    assert i_block(b"\x90\x00", 1, chaining=True) == h("139000")
    assert i_block(b"\x01", 0, cid=3, nad=0x21) == h("0E032101")
    assert r_ack(0) == h("A2")
    assert r_ack(1, cid=2) == h("AB02")
    assert r_nak(1) == h("B3")
    assert s_deselect() == h("C2")
    assert s_deselect(cid=1) == h("CA01")
    assert s_wtx(1) == h("F201")
    assert s_wtx(59, cid=4) == h("FA043B")


def test_wtx_decode_keeps_wtxm_and_power_level():
    block = Block.decode(h("F2C5"))
    assert block.kind is BlockKind.S_WTX
    assert block.wtxm == 5
    assert block.power_level == 3


def test_i_block_with_cid_and_nad_decodes():
    block = Block.decode(h("0E032100B2"))
    assert (block.cid, block.nad, block.inf) == (3, 0x21, h("00B2"))


@pytest.mark.parametrize(("frame", "offset", "field"), [
    ("", 0, "PCB"), ("22", 0, "PCB"), ("42", 0, "PCB"), ("A6", 0, "PCB"), ("E2", 0, "PCB"), ("C3", 0, "PCB"),
    ("0A", 1, "CID"), ("06", 1, "NAD"), ("F2", 1, "WTXM"), ("F200", 1, "WTXM"), ("F23C", 1, "WTXM"),
    ("A200", 1, "INF"), ("C2FF", 1, "INF"), ("0A1F00", 1, "CID"),
])
def test_bad_blocks_raise_typed_errors_with_offset(frame, offset, field):
    with pytest.raises(BlockError) as info:
        Block.decode(h(frame))
    assert isinstance(info.value, ProtocolError)
    assert (info.value.offset, info.value.field) == (offset, field)


def test_block_construction_is_checked():
    with pytest.raises(BlockError):
        Block(BlockKind.S_WTX, wtxm=60)
    with pytest.raises(BlockError):
        Block(BlockKind.R_ACK, chaining=True)
    with pytest.raises(BlockError):
        Block(BlockKind.I, block_number=2)


# -- sizes, RATS / ATS ------------------------------------------------------------------------------------
def test_fsdi_table_and_fwt():
    assert [fsdi_to_fsd(i) for i in range(9)] == [16, 24, 32, 40, 48, 64, 96, 128, 256]
    assert fsdi_to_fsd(0xC) == 4096
    assert fsdi_to_fsd(0xF) == 4096
    assert fsd_to_fsdi(256) == 8
    assert fsd_to_fsdi(100) == 6
    assert fsd_to_fsdi(16) == 0
    assert fwt_seconds(4) == pytest.approx(0.0048332, rel=1e-4)       # 4.833 ms, the default FWI
    assert fwt_seconds(14) == pytest.approx(4.9492, rel=1e-4)          # FWTmax
    with pytest.raises(ActivationError):
        fsd_to_fsdi(8)


def test_rats_codec():
    assert Rats.decode(h("E080")) == Rats(8, 0)
    assert Rats(8, 0).fsd == 256
    assert Rats(5, 3).encode() == h("E053")
    with pytest.raises(ActivationError):
        Rats.decode(h("E08F"))           # CID 15 is RFU
    with pytest.raises(ActivationError):
        Rats.decode(h("E0"))


def test_ats_codec_round_trip_and_defaults():
    ats = Ats.decode(h("0A78008102") + b"paylab"[:5])
    assert (ats.fsci, ats.fsc, ats.ta, ats.fwi, ats.sfgi) == (8, 256, 0x00, 8, 1)
    assert ats.cid_supported
    assert not ats.nad_supported
    assert ats.historical == b"payla"
    assert ats.encode() == h("0A78008102") + b"payla"
    bare = Ats.decode(h("0202"))
    assert (bare.fsc, bare.fwi, bare.sfgi, bare.cid_supported) == (32, 4, 0, True)
    built = Ats.build(fsci=0, fwi=7, historical=b"SE")
    assert built.encode() == h("0770007000") + b"SE"
    assert Ats.decode(h("01")).encode() == h("01")


@pytest.mark.parametrize("data", ["", "05780081", "0278", "03F800"])
def test_bad_ats(data):
    with pytest.raises(ActivationError):
        Ats.decode(h(data))


def test_atqb_attrib_and_pcsc_atr():
    atqb = Atqb(b"PAYB", fsci=8, fwi=8)
    raw = atqb.encode()
    assert raw == h("50") + b"PAYB" + bytes(4) + h("008180")
    assert Atqb.decode(raw) == atqb
    attrib = Attrib.decode(h("1D") + b"PAYB" + h("00080100"))
    assert attrib.fsd == 256
    assert attrib.cid == 0
    assert attrib.encode() == h("1D") + b"PAYB" + h("00080100")
    atr = pcsc_atr_type_a(b"paylabSE")
    assert atr == h("3B8880017061796C6162534518")          # the eSE's own T=1 ATR
    assert atr_historical_bytes(atr) == b"paylabSE"
    fifteen = bytes(range(1, 16))
    assert atr_historical_bytes(pcsc_atr_type_a(fifteen + b"dropped")) == fifteen
    atr_b = pcsc_atr_type_b(raw, mbli=0)
    assert atr_b[:4] == h("3B888001")
    assert atr_b[4:12] == bytes(4) + h("008180") + b"\x00"


def test_atr_historical_bytes_walks_td_chain():
    sim_like = h("3B99968011C7") + b"\x80\x31\xe0paylab"[:9]
    hist = atr_historical_bytes(sim_like)
    assert hist == b"\x80\x31\xe0paylab"[:9]
    with pytest.raises(ActivationError):
        atr_historical_bytes(h("3B8F80"))


# -- the PICC state machine ---------------------------------------------------------------------------------
def activated(**kwargs) -> Iso14443Target:
    target = Iso14443Target(ats=Ats.build(historical=b"SE"), **kwargs)
    out = target.receive(h("E080"))
    assert out.activated
    assert out.send == Ats.build(historical=b"SE").encode()
    assert target.state is TargetState.ACTIVE
    assert target.fsd == 256
    return target


def test_i_block_round_trip_and_block_numbering():
    t = activated()
    out = t.receive(i_block(h("00A40400"), 0))
    assert out.apdu == h("00A40400")
    assert out.send is None
    assert t.state is TargetState.PROCESSING
    assert t.respond(h("9000")).send == h("029000")
    out = t.receive(i_block(h("00B2010C"), 1))
    assert t.respond(h("6A83")).send == h("036A83")
    assert t.state is TargetState.ACTIVE


def test_r_nak_retransmits_and_r_ack_answers_presence_check():
    t = activated()
    t.receive(i_block(b"\x01", 0))
    last = t.respond(h("9000")).send
    assert t.receive(r_nak(0)).send == last                # rule 11: same block number -> retransmit
    assert t.receive(r_nak(1)).send == r_ack(0)            # rule 12: presence check -> R(ACK)
    assert t.receive(r_ack(0)).send == last                # rule 11 for R(ACK)
    assert t.stats.retransmissions == 2


def test_chaining_from_the_reader_is_acknowledged():
    t = activated()
    assert t.receive(i_block(b"\x00\xa4", 0, chaining=True)).send == r_ack(0)
    assert t.state is TargetState.RECEIVING
    assert t.receive(i_block(b"\x04\x00", 1, chaining=True)).send == r_ack(1)
    out = t.receive(i_block(b"\x02\x3f\x00", 0))
    assert out.apdu == h("00A40400023F00")


def test_response_chaining_continues_on_r_ack():
    t = activated(max_inf=4)
    t.receive(i_block(b"\x00\xb2\x01\x0c", 0))
    first = t.respond(bytes(range(10)))
    assert first.send == i_block(bytes(range(4)), 0, chaining=True)
    assert t.state is TargetState.SENDING
    assert t.receive(r_ack(1)).send == i_block(bytes(range(4, 8)), 1, chaining=True)
    assert t.receive(r_nak(1)).send == i_block(bytes(range(4, 8)), 1, chaining=True)   # lost block: again
    assert t.receive(r_ack(0)).send == i_block(bytes(range(8, 10)), 0)
    assert t.state is TargetState.ACTIVE
    t.receive(i_block(b"\x80\xca\x9f\x36", 1))
    assert t.respond(h("9000")).send == h("039000")


def test_wtx_requested_when_the_application_is_slow():
    t = activated(wtxm=3)                            # FWI 8: FWT 77.3 ms, S(WTX) after half of it
    t.receive(i_block(b"\x80\xae\x80\x00", 0), now=10.0)
    assert t.poll(10.01).send is None
    assert t.wtx_due_at() == pytest.approx(10.0 + t.fwt / 2)
    assert t.poll(10.05).send == s_wtx(3)
    assert t.state is TargetState.WTX_WAIT
    assert t.receive(r_nak(0), now=10.06).send == s_wtx(3)           # reader missed it: again
    assert t.receive(s_wtx(3), now=10.07).send is None
    assert t.state is TargetState.PROCESSING
    assert t.wtx_due_at() == pytest.approx(10.07 + 3 * t.fwt / 2)    # FWT_temp = FWT x WTXM
    assert t.poll(10.1).send is None
    assert t.poll(10.2).send == s_wtx(3)
    assert t.respond(h("9000"), now=10.21).send is None               # held until the S(WTX) response
    assert t.receive(s_wtx(3), now=10.22).send == h("029000")
    assert t.stats.wtx_requests == 2


def test_deselect_answers_then_halts():
    t = activated()
    out = t.receive(s_deselect())
    assert out.send == h("C2")
    assert out.deactivated
    assert t.state is TargetState.HALT
    assert t.receive(h("E080")).send is None                     # RATS ignored in HALT
    t.reset()
    assert t.receive(h("E080")).activated


def test_cid_addressing():
    t = Iso14443Target(ats=Ats.build(cid_supported=True))
    t.receive(h("E082"))
    assert t.cid == 2
    assert t.receive(i_block(b"\x01", 0, cid=5)).send is None
    assert t.state is TargetState.ACTIVE
    assert t.receive(i_block(b"\x01", 0, cid=2)).apdu == b"\x01"
    assert t.respond(h("9000")).send == h("0A029000")


def test_sequence_errors_are_typed():
    t = activated()
    with pytest.raises(BlockSequenceError):
        t.respond(h("9000"))
    t.receive(i_block(b"\x01", 0))
    with pytest.raises(BlockSequenceError):
        t.receive(i_block(b"\x02", 1))
    assert t.receive(r_nak(0)).send is None                   # PCD timed out first: stay mute
    with pytest.raises(BlockSequenceError):
        t.receive(s_wtx(1))


def test_frame_longer_than_fsc_is_rejected():
    t = Iso14443Target(ats=Ats.build(fsci=0))           # FSC 16: 14 bytes without EDC
    t.receive(h("E080"))
    with pytest.raises(BlockError) as info:
        t.receive(i_block(bytes(14), 0))
    assert info.value.field == "FSC"


def test_type_b_activation():
    atqb = Atqb(b"PAYB")
    t = Iso14443Target(atqb=atqb)
    assert t.receive(h("050000")).send == atqb.encode()
    assert t.receive(h("1D") + b"NOPE" + h("00080100")).send is None
    out = t.receive(h("1D") + b"PAYB" + h("00080100"))
    assert out.activated
    assert out.send == h("00")
    assert t.fsd == 256
    t.receive(i_block(b"\x00\xa4", 0))
    assert t.respond(h("9000")).send == h("029000")


# -- properties: any APDU, any FSD survives chaining both ways ---------------------------------------------
def reader_send(t: Iso14443Target, apdu: bytes, fsc: int, pni: int) -> tuple[bytes | None, int]:
    """A PCD per clause 7.5.2: chain ``apdu`` at FSC, return (the APDU the PICC delivered, next pni)."""
    chunks = split_for_chaining(apdu, fsc - 3)
    delivered = None
    for n, chunk in enumerate(chunks):
        more = n < len(chunks) - 1
        out = t.receive(i_block(chunk, pni, chaining=more))
        if more:
            assert out.send == r_ack(pni)
        else:
            delivered = out.apdu
        pni ^= 1
    return delivered, pni


def reader_receive(t: Iso14443Target, first: bytes, pni: int, fsd: int) -> tuple[bytes, int]:
    data = bytearray()
    block = Block.decode(first)
    while True:
        assert block.kind is BlockKind.I
        assert block.block_number == pni ^ 1
        assert len(block.encode()) <= fsd - 2
        data += block.inf
        if not block.chaining:
            return bytes(data), pni
        block = Block.decode(t.receive(r_ack(pni)).send)
        pni ^= 1


@pytest.mark.property
@settings(max_examples=150, deadline=None)
@given(command=st.binary(min_size=1, max_size=1000), response=st.binary(min_size=2, max_size=1000),
       fsdi=st.integers(0, 8), fsci=st.integers(0, 8), rounds=st.integers(1, 3))
def test_any_apdu_survives_chaining_both_ways(command, response, fsdi, fsci, rounds):
    t = Iso14443Target(ats=Ats.build(fsci=fsci))
    t.receive(Rats(fsdi, 0).encode())
    fsd, fsc = FSDI_TO_FSD[fsdi], FSDI_TO_FSD[fsci]
    pni = 0
    for _ in range(rounds):
        delivered, pni = reader_send(t, command, fsc, pni)
        assert delivered == command
        got, pni = reader_receive(t, t.respond(response).send, pni, fsd)
        assert got == response
        assert t.state is TargetState.ACTIVE
