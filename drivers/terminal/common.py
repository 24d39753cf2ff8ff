"""Pieces both kernels share: the card session over a reader, SELECT / READ RECORD per AFL, data object
helpers and the terminal side of the ODA key chain (EMV Book 3 sections 10.2/10.3, Book 2 section 6).

Everything goes through a :class:`~paylab.drivers.protocols.card.CardReaderProtocol`, so the kernels run
unchanged over a :class:`~paylab.drivers.direct.DirectReader`, a PC/SC reader or an NFC reader.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date, datetime

from paylab.lab.protocol import oda, tlv
from paylab.lab.protocol.apdu import CommandApdu, ResponseApdu
from paylab.lab.protocol.errors import ProtocolError
from paylab.lab.protocol.oda.keys import PublicKey
from paylab.lab.protocol.tlv import Tlv

from ..protocols.card import CardReaderProtocol
from .config import TerminalConfig


class KernelStop(Exception):  # control flow inside the kernels, never raised to callers
    """Internal: the transaction ends here with ``outcome`` (a :class:`~.outcome.Outcome` value)."""

    def __init__(self, outcome: str, reason: str, sw: int | None = None) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason
        self.sw = sw


@dataclass
class CardSession:
    """One transaction's exchanges with the card: counts APDUs and times the transaction."""

    reader: CardReaderProtocol
    apdu_count: int = 0
    started: float = field(default_factory=time.perf_counter)

    def send(self, command: CommandApdu) -> ResponseApdu:
        self.apdu_count += 1
        return ResponseApdu.decode(self.reader.transmit(command.encode()))

    @property
    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000


def select(session: CardSession, name: bytes, *, next_occurrence: bool = False) -> ResponseApdu:
    """SELECT by DF name, first or next occurrence (EMV Book 1 11.3, ``00 A4 04 00|02 Lc name 00``)."""
    return session.send(CommandApdu(0x00, 0xA4, 0x04, 0x02 if next_occurrence else 0x00, name, 256))


def decode_template(data: bytes, what: str) -> list[Tlv]:
    """BER-TLV objects of a response; :class:`KernelStop` END_APPLICATION when malformed."""
    try:
        return tlv.decode(data)
    except ProtocolError as exc:
        raise KernelStop("END_APPLICATION", f"malformed {what}: {exc}") from None


def flatten(objects: list[Tlv], into: dict[int, bytes] | None = None) -> dict[int, bytes]:
    """Every primitive object of ``objects`` (nested templates walked), first occurrence wins."""
    out = {} if into is None else into
    for obj in objects:
        if obj.constructed:
            flatten(list(obj.children), out)
        else:
            out.setdefault(obj.tag, obj.value)
    return out


def parse_afl(afl: bytes) -> list[tuple[int, int, int, int]]:
    """AFL entries ``(sfi, first, last, oda_records)`` (EMV Book 3 10.2); END_APPLICATION when malformed."""
    if not afl or len(afl) % 4:
        raise KernelStop("END_APPLICATION", f"AFL of {len(afl)} bytes is not a multiple of 4")
    entries = []
    for i in range(0, len(afl), 4):
        sfi, first, last, count = afl[i] >> 3, afl[i + 1], afl[i + 2], afl[i + 3]
        if not 1 <= sfi <= 30 or first == 0 or last < first or count > last - first + 1:
            raise KernelStop("END_APPLICATION", f"bad AFL entry {afl[i:i + 4].hex().upper()}")
        entries.append((sfi, first, last, count))
    return entries


def read_records(session: CardSession, afl: bytes, card: dict[int, bytes]) -> list[tuple[int, bytes]]:
    """READ RECORD for every AFL record (``00 B2 rec SFI<<3|4 00``); adds their objects to ``card`` and
    returns the records marked for ODA as ``(sfi, record)`` in AFL order (EMV Book 3 10.3)."""
    oda_records: list[tuple[int, bytes]] = []
    for sfi, first, last, count in parse_afl(afl):
        for number in range(first, last + 1):
            response = session.send(CommandApdu(0x00, 0xB2, number, (sfi << 3) | 0x04, le=256))
            if response.sw != 0x9000:
                raise KernelStop("END_APPLICATION", f"READ RECORD SFI {sfi} record {number}", response.sw)
            objects = decode_template(response.data, f"record {number} of SFI {sfi}")
            if sfi <= 10 and (len(objects) != 1 or objects[0].tag != 0x70):
                raise KernelStop("END_APPLICATION", f"record {number} of SFI {sfi} is not a template 70")
            flatten(objects, card)
            if number < first + count:
                oda_records.append((sfi, response.data))
    return oda_records


def pan_of(card: dict[int, bytes]) -> str | None:
    """The PAN from 5A, else from track 2 (57), F padding removed."""
    if 0x5A in card:
        return card[0x5A].hex().upper().rstrip("F")
    if 0x57 in card:
        return card[0x57].hex().upper().split("D", 1)[0]
    return None


def expiry_of(card: dict[int, bytes]) -> str | None:
    """YYMMDD from 5F24, else YYMM from track 2."""
    if 0x5F24 in card:
        return card[0x5F24].hex()
    if 0x57 in card:
        text = card[0x57].hex().upper()
        if "D" in text:
            return text.split("D", 1)[1][:4]
    return None


def psn_of(card: dict[int, bytes]) -> str | None:
    return card[0x5F34].hex() if 0x5F34 in card else None


def bcd_amount(value: bytes | None) -> int | None:
    """An n12 amount (e.g. 9F5D, 9F79) as an integer, None when absent or not BCD."""
    if not value:
        return None
    text = value.hex()
    return int(text) if text.isdigit() else None


def transaction_clock(config: TerminalConfig, when: date | None) -> tuple[bytes, bytes, date]:
    """``(9A YYMMDD, 9F21 HHMMSS, date)`` from the config's clock, the date overridden by ``when``."""
    now: datetime = config.clock()
    day = when or now.date()
    return bytes.fromhex(day.strftime("%y%m%d")), bytes.fromhex(now.strftime("%H%M%S")), day


def recover_icc_key(config: TerminalConfig, rid: bytes, card: dict[int, bytes], static_data: bytes,
                    today: date) -> PublicKey:
    """CA -> issuer -> ICC public key (EMV Book 2 6.2-6.4) from 8F, 90, 92, 9F32, 9F46, 9F47, 9F48 and the
    static data to be authenticated; :class:`~paylab.lab.protocol.oda.OdaError` naming the failed check."""
    index = card.get(0x8F)
    if not index or 0x90 not in card or 0x9F46 not in card:
        missing = [f"{tag:X}" for tag in (0x8F, 0x90, 0x9F46) if tag not in card]
        raise oda.OdaError(f"ICC data missing: {', '.join(missing)}", check="ICC data", field="records")
    ca = config.ca_key(rid, index[0])
    if ca is None:
        raise oda.OdaError(f"no CA public key {rid.hex().upper()}/{index[0]:02X} in the terminal",
                           check="CA key", field="tag 8F")
    pan = pan_of(card) or ""
    issuer = oda.recover_issuer_public_key(ca, card[0x90], card.get(0x92, b""), card.get(0x9F32, b""), pan,
                                           today=today)
    return oda.recover_icc_public_key(issuer, card[0x9F46], card.get(0x9F48, b""), card.get(0x9F47, b""), pan,
                                      static_data, today=today)


def static_data(oda_records: list[tuple[int, bytes]], card: dict[int, bytes]) -> bytes:
    """Static data to be authenticated: ODA records then the SDA tag list (9F4A) values (Book 3 10.3)."""
    return oda.static_data_to_be_authenticated(oda_records, sda_tag_list=card.get(0x9F4A, b""),
                                               data_objects=card)
