"""ISO/IEC 14443-4 (contactless transmission protocol, "ISO-DEP"): block codec, activation bytes and a
pure PICC-side state machine. No I/O, no clocks: time is passed in by the caller.

Frames here are what a contactless front end hands over: prologue (PCB [CID] [NAD]) + INF, without
the EDC (CRC_A/CRC_B is added and checked by the CLF).

* Block format (clause 7.1): the PCB (7.1.1.1) codes the block type.

  ========  ===============================================================================
  I-block   ``0 0 0 C i n 1 b`` — C chaining, i CID follows, n NAD follows, b block number
  R-block   ``1 0 1 N i 0 1 b`` — N 0: R(ACK), 1: R(NAK)
  S-block   ``1 1 x x i 0 1 0`` — xx 00: DESELECT, 11: WTX (INF = one byte, b6..b1 WTXM)
  ========  ===============================================================================

  So ``02``/``03`` I-blocks, ``12``/``13`` chaining I-blocks, ``A2``/``A3`` R(ACK), ``B2``/``B3``
  R(NAK), ``C2`` S(DESELECT), ``F2`` S(WTX); ``+08`` when a CID byte follows.
* Activation of Type A (clause 5: RATS / ATS; FSDI -> FSD table, FWT = 256 x 16 / fc x 2^FWI) and
  Type B (ISO/IEC 14443-3 ATQB protocol info and ATTRIB, answered with MBLI | CID).
* Block handling rules (clause 7.5.3 block numbering, 7.5.4 PICC rules 10..13, 7.5.2 chaining, 7.3
  waiting time extension, clause 8 DESELECT): :class:`Iso14443Target`.
* PC/SC part 3 (3.1.3.2.3) ATR synthesis from the ATS historical bytes / the ATQB, as a PC/SC reader
  presents a contactless card: :func:`pcsc_atr_type_a`, :func:`pcsc_atr_type_b`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from functools import reduce

from .errors import ProtocolError

FC_HZ = 13_560_000
"""Carrier frequency fc (ISO/IEC 14443-2)."""

FSDI_TO_FSD: tuple[int, ...] = (16, 24, 32, 40, 48, 64, 96, 128, 256, 512, 1024, 2048, 4096)
"""FSDI/FSCI -> FSD/FSC in bytes (clause 5, table "FSDI to FSD conversion"; 9..C added in the 2016+
editions). Values D..F are RFU and read as the largest defined size."""

RATS_START = 0xE0
ATTRIB_START = 0x1D
REQB_START = 0x05
WTXM_MAX = 59


# -- errors --------------------------------------------------------------------------------------------
class Iso14443Error(ProtocolError):
    """Anything a peer sent that breaks ISO/IEC 14443-4."""


class BlockError(Iso14443Error):
    """A block that cannot be decoded (PCB coding, missing CID/NAD/INF byte, WTXM out of range)."""


class ActivationError(Iso14443Error):
    """A malformed RATS, ATS, ATQB or ATTRIB."""


class BlockSequenceError(Iso14443Error):
    """A well-formed block that is not allowed in the current state (e.g. an APDU answer with no APDU)."""


# -- sizes and times --------------------------------------------------------------------------------------
def fsdi_to_fsd(fsdi: int) -> int:
    """FSD (or FSC) in bytes for FSDI (FSCI) 0..15."""
    if not 0 <= fsdi <= 15:
        raise ActivationError("FSDI out of range", field="FSDI", expected="0..15")
    return FSDI_TO_FSD[min(fsdi, len(FSDI_TO_FSD) - 1)]


def fsd_to_fsdi(size: int) -> int:
    """The largest FSDI whose frame size does not exceed ``size`` bytes (``size`` >= 16)."""
    if size < FSDI_TO_FSD[0]:
        raise ActivationError("frame size below 16 bytes", field="FSD", expected=">= 16")
    return max(i for i, s in enumerate(FSDI_TO_FSD) if s <= size)


def fwt_seconds(fwi: int) -> float:
    """Frame waiting time FWT = (256 x 16 / fc) x 2^FWI (clause 7.2); FWI 15 (RFU) reads as 4."""
    if not 0 <= fwi <= 15:
        raise ActivationError("FWI out of range", field="FWI", expected="0..15")
    return 256 * 16 / FC_HZ * 2 ** (4 if fwi == 15 else fwi)


# -- blocks ------------------------------------------------------------------------------------------------
class BlockKind(enum.Enum):
    I = "I"                      # noqa: E741 - the spec's name
    R_ACK = "R(ACK)"
    R_NAK = "R(NAK)"
    S_DESELECT = "S(DESELECT)"
    S_WTX = "S(WTX)"


@dataclass(frozen=True)
class Block:
    """One ISO/IEC 14443-4 block (clause 7.1). ``inf`` is the APDU part for I-blocks; for S(WTX) use
    ``wtxm`` (the INF byte is built from it); ``power_level`` is b8..b7 of the CID/WTX INF byte."""

    kind: BlockKind
    block_number: int = 0
    chaining: bool = False
    cid: int | None = None
    nad: int | None = None
    inf: bytes = b""
    wtxm: int | None = None
    power_level: int = 0

    def __post_init__(self) -> None:
        if self.block_number not in (0, 1):
            raise BlockError("block number must be 0 or 1", field="PCB")
        if self.cid is not None and not 0 <= self.cid <= 14:
            raise BlockError("CID out of range", field="CID", expected="0..14")
        if self.nad is not None and (self.kind is not BlockKind.I or not 0 <= self.nad <= 0xFF):
            raise BlockError("NAD only in I-blocks, one byte", field="NAD")
        if self.chaining and self.kind is not BlockKind.I:
            raise BlockError("only I-blocks chain", field="PCB")
        if self.kind is BlockKind.S_WTX and (self.wtxm is None or not 1 <= self.wtxm <= WTXM_MAX):
            raise BlockError("WTXM out of range", field="WTXM", expected=f"1..{WTXM_MAX}")
        if self.inf and self.kind is not BlockKind.I:
            raise BlockError(f"{self.kind.value} carries no INF field", field="INF")

    @property
    def pcb(self) -> int:
        cid_bit = 0x08 if self.cid is not None else 0
        if self.kind is BlockKind.I:
            return (0x02 | (0x10 if self.chaining else 0) | cid_bit | (0x04 if self.nad is not None else 0)
                    | self.block_number)
        if self.kind is BlockKind.R_ACK:
            return 0xA2 | cid_bit | self.block_number
        if self.kind is BlockKind.R_NAK:
            return 0xB2 | cid_bit | self.block_number
        if self.kind is BlockKind.S_DESELECT:
            return 0xC2 | cid_bit
        return 0xF2 | cid_bit

    def encode(self) -> bytes:
        out = bytearray([self.pcb])
        if self.cid is not None:
            out.append((self.power_level & 3) << 6 | self.cid)
        if self.nad is not None:
            out.append(self.nad)
        if self.kind is BlockKind.S_WTX:
            out.append((self.power_level & 3) << 6 | int(self.wtxm or 0))
        out += self.inf
        return bytes(out)

    @classmethod
    def decode(cls, frame: bytes) -> Block:
        """Decode a frame (no EDC); :class:`BlockError` with the offset on a bad PCB or length."""
        frame = bytes(frame)
        if not frame:
            raise BlockError("empty frame", offset=0, field="PCB")
        pcb = frame[0]
        pos = 1
        has_cid = bool(pcb & 0x08)
        cid: int | None = None
        power = 0
        if pcb & 0xC0 == 0x00:
            if pcb & 0x22 != 0x02:
                raise BlockError(f"bad I-block PCB {pcb:02X}", offset=0, field="PCB", expected="b6=0, b2=1")
            kind = BlockKind.I
        elif pcb & 0xC0 == 0x80:
            if pcb & 0x26 != 0x22:
                raise BlockError(f"bad R-block PCB {pcb:02X}", offset=0, field="PCB", expected="b6=1, b3=0, b2=1")
            kind = BlockKind.R_NAK if pcb & 0x10 else BlockKind.R_ACK
        elif pcb & 0xC0 == 0xC0:
            if pcb & 0x07 != 0x02:
                raise BlockError(f"bad S-block PCB {pcb:02X}", offset=0, field="PCB", expected="b3=0, b2=1, b1=0")
            sub = pcb & 0x30
            if sub == 0x00:
                kind = BlockKind.S_DESELECT
            elif sub == 0x30:
                kind = BlockKind.S_WTX
            else:
                raise BlockError(f"unsupported S-block PCB {pcb:02X}", offset=0, field="PCB",
                                 expected="DESELECT (C2) or WTX (F2)")
        else:
            raise BlockError(f"RFU PCB {pcb:02X}", offset=0, field="PCB")
        if has_cid:
            if len(frame) <= pos:
                raise BlockError("CID byte missing", offset=pos, field="CID")
            power, cid = frame[pos] >> 6, frame[pos] & 0x0F
            if frame[pos] & 0x30 or cid == 15:
                raise BlockError(f"bad CID byte {frame[pos]:02X}", offset=pos, field="CID")
            pos += 1
        nad: int | None = None
        if kind is BlockKind.I and pcb & 0x04:
            if len(frame) <= pos:
                raise BlockError("NAD byte missing", offset=pos, field="NAD")
            nad = frame[pos]
            pos += 1
        if kind is BlockKind.I:
            return cls(kind, pcb & 1, bool(pcb & 0x10), cid, nad, frame[pos:], power_level=power)
        if kind is BlockKind.S_WTX:
            if len(frame) != pos + 1:
                raise BlockError("S(WTX) needs exactly one INF byte", offset=pos, field="WTXM")
            wtxm = frame[pos] & 0x3F
            if not 1 <= wtxm <= WTXM_MAX:
                raise BlockError(f"WTXM {wtxm} out of range", offset=pos, field="WTXM", expected=f"1..{WTXM_MAX}")
            return cls(kind, 0, False, cid, wtxm=wtxm, power_level=frame[pos] >> 6)
        if len(frame) != pos:
            raise BlockError(f"{kind.value} carries no INF field", offset=pos, field="INF")
        return cls(kind, pcb & 1 if kind in (BlockKind.R_ACK, BlockKind.R_NAK) else 0, False, cid, power_level=power)


def i_block(data: bytes, block_number: int, *, chaining: bool = False, cid: int | None = None,
            nad: int | None = None) -> bytes:
    return Block(BlockKind.I, block_number, chaining, cid, nad, bytes(data)).encode()


def r_ack(block_number: int, *, cid: int | None = None) -> bytes:
    return Block(BlockKind.R_ACK, block_number, cid=cid).encode()


def r_nak(block_number: int, *, cid: int | None = None) -> bytes:
    return Block(BlockKind.R_NAK, block_number, cid=cid).encode()


def s_deselect(*, cid: int | None = None) -> bytes:
    return Block(BlockKind.S_DESELECT, cid=cid).encode()


def s_wtx(wtxm: int, *, cid: int | None = None) -> bytes:
    return Block(BlockKind.S_WTX, cid=cid, wtxm=wtxm).encode()


def split_for_chaining(data: bytes, max_inf: int) -> list[bytes]:
    """Cut ``data`` into INF fields of at most ``max_inf`` bytes (clause 7.5.2); at least one (maybe empty)."""
    if max_inf < 1:
        raise BlockError("frame size leaves no room for INF", field="FSD")
    return [data[i:i + max_inf] for i in range(0, len(data), max_inf)] or [b""]


# -- Type A activation: RATS / ATS -------------------------------------------------------------------------
@dataclass(frozen=True)
class Rats:
    """RATS = ``E0`` | FSDI (b8..b5) CID (b4..b1) (clause 5, request for answer to select)."""

    fsdi: int = 8
    cid: int = 0

    @property
    def fsd(self) -> int:
        return fsdi_to_fsd(self.fsdi)

    def encode(self) -> bytes:
        return bytes([RATS_START, (self.fsdi & 0x0F) << 4 | (self.cid & 0x0F)])

    @classmethod
    def decode(cls, frame: bytes) -> Rats:
        if len(frame) != 2 or frame[0] != RATS_START:
            raise ActivationError("RATS is E0 followed by one parameter byte", offset=0, field="RATS")
        if frame[1] & 0x0F == 15:
            raise ActivationError("CID 15 is RFU", offset=1, field="CID")
        return cls(frame[1] >> 4, frame[1] & 0x0F)


@dataclass(frozen=True)
class Ats:
    """Answer to select (clause 5): TL T0 [TA(1)] [TB(1)] [TC(1)] T1..Tk.

    ``ta``/``tb``/``tc`` hold the interface bytes or None when absent (defaults per the standard:
    FSCI 2, FWI 4, SFGI 0, CID supported, NAD not supported). :meth:`build` gives an ATS with all
    three interface bytes (nfcpy and most PCDs read TB(1) at a fixed offset).
    """

    fsci: int = 2
    ta: int | None = None
    tb: int | None = None
    tc: int | None = None
    historical: bytes = b""
    t0_present: bool = True

    @classmethod
    def build(cls, *, fsci: int = 8, fwi: int = 8, sfgi: int = 0, ta: int = 0x00, cid_supported: bool = False,
              nad_supported: bool = False, historical: bytes = b"") -> Ats:
        if not 0 <= fsci <= 15 or not 0 <= fwi <= 14 or not 0 <= sfgi <= 14:
            raise ActivationError("FSCI/FWI/SFGI out of range", field="ATS")
        return cls(fsci, ta, fwi << 4 | sfgi, (0x02 if cid_supported else 0) | (0x01 if nad_supported else 0),
                   bytes(historical))

    @property
    def fsc(self) -> int:
        return fsdi_to_fsd(self.fsci)

    @property
    def fwi(self) -> int:
        return 4 if self.tb is None else self.tb >> 4

    @property
    def sfgi(self) -> int:
        return 0 if self.tb is None else self.tb & 0x0F

    @property
    def fwt(self) -> float:
        return fwt_seconds(self.fwi)

    @property
    def cid_supported(self) -> bool:
        return True if self.tc is None else bool(self.tc & 0x02)

    @property
    def nad_supported(self) -> bool:
        return False if self.tc is None else bool(self.tc & 0x01)

    def encode(self) -> bytes:
        body = bytearray()
        if self.t0_present:
            body.append((0x10 if self.ta is not None else 0) | (0x20 if self.tb is not None else 0)
                        | (0x40 if self.tc is not None else 0) | (self.fsci & 0x0F))
            body += bytes(b for b in (self.ta, self.tb, self.tc) if b is not None)
            body += self.historical
        elif self.historical:
            raise ActivationError("historical bytes need T0", field="T0")
        if len(body) + 1 > 0xFF:
            raise ActivationError("ATS too long", field="TL")
        return bytes([len(body) + 1]) + bytes(body)

    @classmethod
    def decode(cls, data: bytes) -> Ats:
        data = bytes(data)
        if not data or data[0] != len(data):
            raise ActivationError("TL does not match the ATS length", offset=0, field="TL",
                                  expected=f"{len(data):02X}")
        if len(data) == 1:
            return cls(t0_present=False)
        t0 = data[1]
        if t0 & 0x80:
            raise ActivationError("T0 b8 must be 0", offset=1, field="T0")
        pos = 2
        values: list[int | None] = []
        for bit in (0x10, 0x20, 0x40):
            if t0 & bit:
                if pos >= len(data):
                    raise ActivationError("interface byte missing", offset=pos, field="ATS")
                values.append(data[pos])
                pos += 1
            else:
                values.append(None)
        return cls(t0 & 0x0F, values[0], values[1], values[2], data[pos:])


# -- Type B activation: ATQB / ATTRIB (ISO/IEC 14443-3 clause 7.9 / 7.10) --------------------------------
@dataclass(frozen=True)
class Atqb:
    """SENSB_RES/ATQB: ``50`` PUPI(4) application data(4) protocol info(3)."""

    pupi: bytes
    application_data: bytes = bytes(4)
    bit_rate: int = 0x00
    fsci: int = 8
    protocol_type: int = 0x1
    fwi: int = 8
    adc: int = 0
    nad_supported: bool = False
    cid_supported: bool = False

    def encode(self) -> bytes:
        if len(self.pupi) != 4 or len(self.application_data) != 4:
            raise ActivationError("PUPI and application data are 4 bytes each", field="ATQB")
        fo = (0x02 if self.nad_supported else 0) | (0x01 if self.cid_supported else 0)
        return (b"\x50" + self.pupi + self.application_data
                + bytes([self.bit_rate, (self.fsci & 0x0F) << 4 | (self.protocol_type & 0x0F),
                         (self.fwi & 0x0F) << 4 | (self.adc & 3) << 2 | fo]))

    @property
    def protocol_info(self) -> bytes:
        return self.encode()[9:12]

    @classmethod
    def decode(cls, data: bytes) -> Atqb:
        data = bytes(data)
        if len(data) < 12 or data[0] != 0x50:
            raise ActivationError("ATQB is 50 + PUPI + application data + protocol info", offset=0, field="ATQB")
        return cls(data[1:5], data[5:9], data[9], data[10] >> 4, data[10] & 0x0F, data[11] >> 4,
                   data[11] >> 2 & 3, bool(data[11] & 2), bool(data[11] & 1))


@dataclass(frozen=True)
class Attrib:
    """ATTRIB: ``1D`` identifier(4) param1 param2 (b4..b1 FSDI) param3 param4 (b4..b1 CID) [higher layer INF]."""

    identifier: bytes
    param1: int = 0
    param2: int = 0x08
    param3: int = 0x01
    param4: int = 0
    higher_layer: bytes = b""

    @property
    def fsd(self) -> int:
        return fsdi_to_fsd(self.param2 & 0x0F)

    @property
    def cid(self) -> int:
        return self.param4 & 0x0F

    def encode(self) -> bytes:
        return (bytes([ATTRIB_START]) + self.identifier
                + bytes([self.param1, self.param2, self.param3, self.param4]) + self.higher_layer)

    @classmethod
    def decode(cls, frame: bytes) -> Attrib:
        frame = bytes(frame)
        if len(frame) < 9 or frame[0] != ATTRIB_START:
            raise ActivationError("ATTRIB is 1D + identifier + 4 parameter bytes", offset=0, field="ATTRIB")
        return cls(frame[1:5], frame[5], frame[6], frame[7], frame[8], frame[9:])


def attrib_response(mbli: int, cid: int) -> bytes:
    """Answer to ATTRIB: MBLI (b8..b5) | CID (b4..b1)."""
    return bytes([(mbli & 0x0F) << 4 | (cid & 0x0F)])


# -- PC/SC part 3: the ATR a reader presents for a contactless card ------------------------------------------
def _tck(body: bytes) -> int:
    return reduce(lambda a, b: a ^ b, body, 0)


def pcsc_atr_type_a(historical: bytes) -> bytes:
    """``3B 8n 80 01`` + historical bytes (at most 15) + TCK (PC/SC part 3, 3.1.3.2.3.1)."""
    hist = bytes(historical)[:15]
    body = bytes([0x80 | len(hist), 0x80, 0x01]) + hist
    return b"\x3b" + body + bytes([_tck(body)])


def pcsc_atr_type_b(atqb: bytes, mbli: int = 0) -> bytes:
    """``3B 88 80 01`` + application data(4) + protocol info(3) + MBLI<<4 + TCK (PC/SC part 3, 3.1.3.2.3.2)."""
    parsed = Atqb.decode(atqb)
    hist = parsed.application_data + bytes(atqb[9:12]) + bytes([(mbli & 0x0F) << 4])
    return pcsc_atr_type_a(hist)


def atr_historical_bytes(atr: bytes) -> bytes:
    """The historical bytes of an ISO/IEC 7816-3 ATR (clause 8.2): walk T0/TDi, skip TCK."""
    atr = bytes(atr)
    if len(atr) < 2:
        raise ActivationError("ATR too short", offset=len(atr), field="ATR")
    k = atr[1] & 0x0F
    y = atr[1] >> 4
    pos = 2
    while True:
        pos += bin(y).count("1")
        if not y & 0x8:
            break
        if pos - 1 >= len(atr):
            raise ActivationError("ATR interface bytes truncated", offset=pos, field="ATR")
        y = atr[pos - 1] >> 4
    if pos + k > len(atr):
        raise ActivationError("ATR historical bytes truncated", offset=pos, field="ATR")
    return atr[pos:pos + k]


# -- the PICC state machine ---------------------------------------------------------------------------------
class TargetState(enum.Enum):
    IDLE = "idle"                    # not activated: waits for RATS (A) or REQB/ATTRIB (B)
    ACTIVE = "active"                # activated, waits for a block
    RECEIVING = "receiving"          # inside a chain from the PCD
    PROCESSING = "processing"        # an APDU is with the application
    WTX_WAIT = "wtx-wait"            # S(WTX) request sent, waits for the PCD's S(WTX) response
    SENDING = "sending"              # chaining a response, waits for R(ACK)
    HALT = "halt"                    # deselected


@dataclass(frozen=True)
class TargetOutput:
    """What to do after feeding the machine: ``send`` this frame (None: stay mute), hand ``apdu`` to the
    application, ``activated``: the PICC just entered the protocol, ``deactivated``: it is now deselected."""

    send: bytes | None = None
    apdu: bytes | None = None
    activated: bool = False
    deactivated: bool = False


@dataclass
class TargetStats:
    blocks_in: int = 0
    blocks_out: int = 0
    retransmissions: int = 0
    wtx_requests: int = 0
    chained_in: int = 0
    chained_out: int = 0
    errors: list[str] = field(default_factory=list)


class Iso14443Target:
    """The PICC side of ISO/IEC 14443-4 (clauses 7.5.2-7.5.4, 7.3, 8), fed frame by frame.

    * :meth:`receive` takes each frame from the PCD (RATS/REQB/ATTRIB while idle) and returns a
      :class:`TargetOutput`. A complete APDU (after chaining, clause 7.5.2) comes out as ``apdu``;
      the caller answers it with :meth:`respond`. Each chained block from the PCD is acknowledged
      with R(ACK); a response longer than the PCD's FSD is chained and continued on R(ACK).
    * :meth:`poll` is called while the application works: once ``wtx_fraction`` of the current frame
      waiting time has passed since the last frame from the PCD, it returns an S(WTX) request
      (WTXM ``wtxm``); FWT_temp = FWT x WTXM then applies until the next block (clause 7.3).
    * Errors: a frame that cannot be decoded raises :class:`BlockError` (the PICC must stay mute:
      callers ignore it, clause 7.5.5); :meth:`respond` out of turn raises :class:`BlockSequenceError`.

    Block numbering (clause 7.5.3, rules C/D/E): the PICC block number starts at 1 and toggles on
    every I-block received; PICC rules (7.5.4): R(ACK)/R(NAK) with the current block number ->
    retransmit the last block (rule 11); R(NAK) with another number -> R(ACK) (rule 12); R(ACK) with
    another number while chaining -> next chained block (rule 13).
    """

    def __init__(self, *, ats: Ats | None = None, atqb: Atqb | None = None, wtxm: int = 4,
                 wtx_fraction: float = 0.5, max_inf: int | None = None) -> None:
        if ats is None and atqb is None:
            ats = Ats.build()
        if not 1 <= wtxm <= WTXM_MAX:
            raise BlockError("WTXM out of range", field="WTXM", expected=f"1..{WTXM_MAX}")
        self.ats = ats
        self.atqb = atqb
        self.wtxm = wtxm
        self.wtx_fraction = wtx_fraction
        self.max_inf = max_inf
        self.fwt = fwt_seconds(atqb.fwi if atqb is not None else ats.fwi)  # type: ignore[union-attr]
        self.fsc = fsdi_to_fsd(atqb.fsci if atqb is not None else ats.fsci)  # type: ignore[union-attr]
        self.stats = TargetStats()
        self._reset()

    # -- state --------------------------------------------------------------------------------------
    def _reset(self) -> None:
        self.state = TargetState.IDLE
        self.fsd = 256
        self.cid: int | None = None
        self.block_number = 1
        self._rx_chain = bytearray()
        self._tx_chunks: list[bytes] = []
        self._last_sent: bytes | None = None
        self._since = 0.0
        self._fwt_now = self.fwt
        self._pending_response: bytes | None = None
        self._nad: int | None = None
        self._reply_cid: int | None = None

    @property
    def technology(self) -> str:
        return "B" if self.atqb is not None else "A"

    def reset(self) -> None:
        """Back to IDLE (field off / power cycle, clause 8)."""
        self._reset()

    def activated(self, *, fsd: int = 256, cid: int | None = None) -> None:
        """Enter the protocol without RATS/ATTRIB: for CLFs that answer the RATS themselves."""
        self._reset()
        self.fsd = fsd
        self.cid = cid
        self.state = TargetState.ACTIVE

    @property
    def max_response_inf(self) -> int:
        """INF bytes per response block: FSD minus EDC(2), PCB and the CID/NAD bytes, capped by ``max_inf``."""
        room = self.fsd - 3 - (self._reply_cid is not None) - (self._nad is not None)
        return min(room, self.max_inf) if self.max_inf else room

    # -- frames in --------------------------------------------------------------------------------
    def receive(self, frame: bytes, now: float = 0.0) -> TargetOutput:
        frame = bytes(frame)
        if self.state in (TargetState.IDLE, TargetState.HALT):
            return self._activation(frame)
        block = Block.decode(frame)
        if len(frame) > self.fsc - 2:
            raise BlockError(f"frame of {len(frame)} bytes exceeds FSC {self.fsc}", offset=self.fsc - 2,
                             field="FSC")
        if block.cid != self.cid and not (block.cid is None and self.cid == 0):
            return TargetOutput()        # addressed to another PICC (or CID unsupported): stay mute (7.1.1.2)
        self._reply_cid = block.cid
        self.stats.blocks_in += 1
        self._since = now
        self._fwt_now = self.fwt
        kind = block.kind
        if kind is BlockKind.S_DESELECT:
            out = self._emit(s_deselect(cid=self._cid_out()))
            self.state = TargetState.HALT
            return TargetOutput(out, deactivated=True)
        if self.state is TargetState.WTX_WAIT:
            if kind is BlockKind.R_NAK:
                return self._retransmit()      # the PCD missed the S(WTX) request (rule 11)
            if kind is not BlockKind.S_WTX:
                raise BlockSequenceError(f"{kind.value} while waiting for the S(WTX) response", field="PCB")
            self._fwt_now = self.fwt * block.wtxm  # type: ignore[operator]
            if self._pending_response is not None:
                response, self._pending_response = self._pending_response, None
                return self._start_response(response)
            self.state = TargetState.PROCESSING
            return TargetOutput()
        if self.state is TargetState.PROCESSING:
            if kind in (BlockKind.R_ACK, BlockKind.R_NAK):
                return TargetOutput()          # the PCD timed out first; the answer follows when ready
            raise BlockSequenceError(f"{kind.value} while the application is processing", field="PCB")
        if kind is BlockKind.I:
            return self._on_i_block(block)
        if kind is BlockKind.R_ACK:
            if block.block_number == self.block_number:
                return self._retransmit()                                       # rule 11
            if self.state is TargetState.SENDING:                              # rule 13
                self.block_number ^= 1
                return self._next_chunk()
            return self._retransmit()
        if kind is BlockKind.R_NAK:
            if block.block_number == self.block_number:
                return self._retransmit()                                       # rule 11
            self.stats.blocks_out += 1       # rule 12 (presence check); not the block a retransmission repeats
            return TargetOutput(r_ack(self.block_number, cid=self._cid_out()))
        raise BlockSequenceError("S(WTX) response without a request", field="PCB")

    def _activation(self, frame: bytes) -> TargetOutput:
        if not frame:
            return TargetOutput()
        if self.atqb is None and frame[0] == RATS_START and self.state is TargetState.IDLE:
            rats = Rats.decode(frame)
            self._reset()
            self.fsd = rats.fsd
            self.cid = rats.cid if self.ats is not None and self.ats.cid_supported else None
            self.state = TargetState.ACTIVE
            return TargetOutput(self._emit(self.ats.encode()), activated=True)  # type: ignore[union-attr]
        if self.atqb is not None and frame[0] == REQB_START and len(frame) == 3:
            if self.state is TargetState.HALT and not frame[2] & 0x08:
                return TargetOutput()          # REQB (not WUPB) does not wake a halted PICC
            self.state = TargetState.IDLE
            return TargetOutput(self.atqb.encode())
        if self.atqb is not None and frame[0] == ATTRIB_START and self.state is TargetState.IDLE:
            attrib = Attrib.decode(frame)
            if attrib.identifier != self.atqb.pupi:
                return TargetOutput()
            self._reset()
            self.fsd = attrib.fsd
            self.cid = attrib.cid if self.atqb.cid_supported else None
            self.state = TargetState.ACTIVE
            return TargetOutput(self._emit(attrib_response(0, attrib.cid)), activated=True)
        return TargetOutput()

    def _on_i_block(self, block: Block) -> TargetOutput:
        if self.state not in (TargetState.ACTIVE, TargetState.RECEIVING, TargetState.SENDING):
            raise BlockSequenceError("I-block in the wrong state", field="PCB")
        if self.state is TargetState.SENDING:
            self._tx_chunks = []          # the PCD gave up our chain and sends a new command
            self._rx_chain.clear()
        self.block_number ^= 1                                                    # rule D
        self._nad = block.nad
        self._rx_chain += block.inf
        if block.chaining:
            self.stats.chained_in += 1
            self.state = TargetState.RECEIVING
            return TargetOutput(self._emit(r_ack(self.block_number, cid=self._cid_out())))   # rule 2
        apdu = bytes(self._rx_chain)
        self._rx_chain.clear()
        self.state = TargetState.PROCESSING
        return TargetOutput(apdu=apdu)

    # -- the application's side -----------------------------------------------------------------------
    def respond(self, rapdu: bytes, now: float = 0.0) -> TargetOutput:
        """The application's R-APDU: first (maybe only) response block to send."""
        if self.state is TargetState.WTX_WAIT:
            self._pending_response = bytes(rapdu)
            return TargetOutput()
        if self.state is not TargetState.PROCESSING:
            raise BlockSequenceError(f"response in state {self.state.value}", field="R-APDU")
        return self._start_response(bytes(rapdu))

    def wtx_due_at(self) -> float | None:
        """When :meth:`poll` will request more time (None: no APDU is being processed)."""
        if self.state is not TargetState.PROCESSING:
            return None
        return self._since + self._fwt_now * self.wtx_fraction

    def poll(self, now: float) -> TargetOutput:
        """S(WTX) request once the processing time reaches ``wtx_fraction`` of the current FWT."""
        due = self.wtx_due_at()
        if due is None or now < due:
            return TargetOutput()
        self.state = TargetState.WTX_WAIT
        self.stats.wtx_requests += 1
        return TargetOutput(self._emit(s_wtx(self.wtxm, cid=self._cid_out())))

    # -- frames out ---------------------------------------------------------------------------------
    def _cid_out(self) -> int | None:
        return self._reply_cid

    def _emit(self, frame: bytes) -> bytes:
        self._last_sent = frame
        self.stats.blocks_out += 1
        return frame

    def _start_response(self, rapdu: bytes) -> TargetOutput:
        self._tx_chunks = split_for_chaining(rapdu, self.max_response_inf)
        return self._next_chunk()

    def _next_chunk(self) -> TargetOutput:
        if not self._tx_chunks:
            return self._retransmit()
        chunk = self._tx_chunks.pop(0)
        more = bool(self._tx_chunks)
        if more:
            self.stats.chained_out += 1
        self.state = TargetState.SENDING if more else TargetState.ACTIVE
        frame = i_block(chunk, self.block_number, chaining=more, cid=self._cid_out(),
                        nad=self._nad if self._nad is not None else None)
        return TargetOutput(self._emit(frame))

    def _retransmit(self) -> TargetOutput:
        if self._last_sent is None:
            return TargetOutput()
        self.stats.retransmissions += 1
        return TargetOutput(self._last_sent)
