"""The qPBOC contactless kernel (PBOC 3.0 Part 12 / qVSDC style; domain brief section 1), over any reader.

``ContactlessKernel(reader, config).perform(amount) -> KernelOutcome``:

1. **Pre-processing** (EMV Book A 5.2): amount at or above the contactless transaction limit -> TRY
   ANOTHER INTERFACE without touching the card; TTQ byte 2 b8 (online cryptogram required) when the
   amount exceeds the reader floor limit or online is forced, b7 (CVM required) at or above the CVM
   required limit.
2. **Selection** (EMV Book B 3.3): SELECT PPSE ``2PAY.SYS.DDF01``, candidates = directory entries (61)
   whose ADF name (4F) the terminal supports, ordered by the card's priority (87 b4-b1; 0 = none, last)
   then the terminal's; SELECT AID (the next candidate when one fails).
3. **GPO**: the PDOL (9F38) data from the terminal values (TTQ, amounts, country, TVR, currency, date,
   type, UN, DF69 ...) via :mod:`paylab.lab.protocol.dol`; ``6985`` or a format 1 (80) response -> TRY
   ANOTHER INTERFACE; other errors -> END APPLICATION. Template 77 must hold 82 9F36 57 9F26 9F10.
4. **READ RECORD** per AFL (94), given on the offline path only.
5. **fDDA** for an offline TC (brief section 1, Book 2 6.5): the ICC key recovered CA -> issuer -> ICC
   with the terminal's CA key (RID = first 5 bytes of the AID, index 8F), then 9F4B verified over
   ``9F37 || 9F02 || 5F2A || 9F69``. On failure: online when the CTQ asks (byte 1 b6) and the reader
   can go online, another interface when the CTQ asks (b5) and the reader has contact, else DECLINED.
6. **CVM** (qVSDC reader CVM processing): CTQ online PIN (online only, reader supports it) -> online
   PIN; CTQ CDCVM performed -> CDCVM; CTQ signature -> signature; otherwise, when the TTQ says CVM
   required: online PIN for online, signature else; none possible -> DECLINED.
7. **Outcome** from the CID (9F27; none = ARQC, brief section 1): ARQC -> ONLINE_REQUEST (an e-cash
   balance too short makes the card answer an ARQC: the kernel just reports ONLINE_REQUEST), TC with
   fDDA ok -> APPROVED, AAC -> DECLINED.

A card leaving the field mid-flow raises :class:`~paylab.drivers.errors.CardRemoved` (typed, from the
reader) with ``exc.outcome``: a :class:`KernelOutcome` (END_APPLICATION) holding what was done so far.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from paylab.lab.protocol import dol, oda
from paylab.lab.protocol.apdu import CommandApdu
from paylab.lab.protocol.cps import amount_n12
from paylab.lab.protocol.errors import ProtocolError
from paylab.lab.protocol.tags import KERNEL_PBOC
from paylab.lab.protocol.tlv import Tlv

from ..errors import CardRemoved
from ..protocols.card import CardReaderProtocol
from .common import (
    CardSession,
    KernelStop,
    bcd_amount,
    decode_template,
    expiry_of,
    flatten,
    pan_of,
    psn_of,
    read_records,
    recover_icc_key,
    select,
    static_data,
    transaction_clock,
)
from .config import (
    TTQ1_CONTACT,
    TTQ1_OFFLINE_ONLY,
    TTQ1_ONLINE_PIN,
    TTQ1_SIGNATURE,
    TTQ2_CVM_REQUIRED,
    TTQ2_ONLINE_CRYPTOGRAM,
    TerminalConfig,
)
from .outcome import CID_AAC, CID_ARQC, CID_TC, Cvm, KernelOutcome, OdaResult, Outcome

PPSE = b"2PAY.SYS.DDF01"
GPO_MANDATORY = (0x82, 0x9F36, 0x57, 0x9F26, 0x9F10)
"""Mandatory objects of a qPBOC GPO response (brief section 1)."""

# CTQ 9F6C bits [S: brief section 1]
CTQ1_ONLINE_PIN = 0x80
CTQ1_SIGNATURE = 0x40
CTQ1_ONLINE_IF_ODA_FAILS = 0x20
CTQ1_CONTACT_IF_ODA_FAILS = 0x10
CTQ1_ONLINE_IF_EXPIRED = 0x08
CTQ2_CDCVM = 0x80

CVM_RESULTS = {
    Cvm.ONLINE_PIN: bytes.fromhex("020000"), Cvm.SIGNATURE: bytes.fromhex("1E0000"),
    Cvm.CDCVM: bytes.fromhex("3F0002"), Cvm.NO_CVM: bytes.fromhex("1F0002"), Cvm.FAILED: bytes.fromhex("3F0001"),
}
"""9F34 CVM results (EMV Book 4 A4: CVM code, condition, result) reported in field 55."""


@dataclass(frozen=True)
class Candidate:
    """One application of the PPSE directory the terminal supports."""

    adf_name: bytes
    card_priority: int
    terminal_priority: int
    label: str | None

    @property
    def order(self) -> tuple[int, int]:
        return (self.card_priority or 16, self.terminal_priority)


class ContactlessKernel:
    """qPBOC reader kernel; see the module docstring. One instance per reader, reusable.

    ``activate``: power the card on (cold reset / field on) at the start of every :meth:`perform`.
    """

    def __init__(self, reader: CardReaderProtocol, config: TerminalConfig | None = None, *,
                 activate: bool = True) -> None:
        self.reader = reader
        self.config = config or TerminalConfig()
        self.activate = activate
        self._sequence = self.config.transaction_sequence_start

    # -- public ------------------------------------------------------------------------------------------
    def perform(self, amount: int, *, transaction_type: int = 0x00, other_amount: int = 0,
                unpredictable_number: bytes | None = None, date: date | None = None,
                force_online: bool = False) -> KernelOutcome:
        """Run one qPBOC transaction for ``amount`` fen; see the module docstring for the flow."""
        if amount < 0 or other_amount < 0:
            raise ValueError("amounts must be >= 0 (fen)")
        session = CardSession(self.reader)
        result = KernelOutcome(Outcome.END_APPLICATION)
        try:
            self._run(session, result, amount, transaction_type, other_amount, unpredictable_number, date,
                      force_online)
        except KernelStop as stop:
            result.outcome, result.reason, result.sw = Outcome(stop.outcome), stop.reason, stop.sw
        except ProtocolError as exc:  # a malformed card answer the flow did not expect (EMV: end application)
            result.outcome, result.reason = Outcome.END_APPLICATION, f"card data error: {exc}"
        except CardRemoved as exc:
            result.outcome = Outcome.END_APPLICATION
            result.reason = f"card removed after {max(session.apdu_count - 1, 0)} answered APDUs"
            result.apdu_count, result.duration_ms = session.apdu_count, session.elapsed_ms
            exc.outcome = result  # type: ignore[attr-defined]
            raise
        finally:
            self._sequence = self._sequence % 99_999_999 + 1
        result.apdu_count, result.duration_ms = session.apdu_count, session.elapsed_ms
        return result

    # -- the flow -----------------------------------------------------------------------------------------
    def _run(self, session: CardSession, result: KernelOutcome, amount: int, txn_type: int, other: int,
             un: bytes | None, when: date | None, force_online: bool) -> None:
        config = self.config
        if amount >= config.contactless_transaction_limit:
            raise KernelStop("TRY_ANOTHER_INTERFACE",
                             f"amount {amount} at or above the contactless transaction limit "
                             f"{config.contactless_transaction_limit}")
        ttq = bytearray(config.ttq)
        ttq[1] &= ~(TTQ2_ONLINE_CRYPTOGRAM | TTQ2_CVM_REQUIRED) & 0xFF
        if force_online or amount > config.contactless_floor_limit:
            ttq[1] |= TTQ2_ONLINE_CRYPTOGRAM
        if amount >= config.cvm_required_limit:
            ttq[1] |= TTQ2_CVM_REQUIRED
        day_bytes, time_bytes, today = transaction_clock(config, when)
        un = un if un is not None else config.unpredictable_number()
        if len(un) != 4:
            raise ValueError("the unpredictable number 9F37 is 4 bytes")
        terminal = config.terminal_values() | {
            0x9F66: bytes(ttq), 0x9F02: amount_n12(amount), 0x9F03: amount_n12(other), 0x95: bytes(5), 0x9A: day_bytes,
            0x9F21: time_bytes, 0x9C: bytes([txn_type]), 0x9F37: bytes(un), 0x9F41: _n8(self._sequence),
        }
        result.terminal = terminal
        if self.activate:
            self.reader.power_on()
        candidate, fci = self._select_application(session)
        terminal[0x84] = fci.get(0x84, candidate.adf_name)
        result.aid, result.label = terminal[0x84], candidate.label
        pdol = fci.get(0x9F38, b"")
        gpo_data = dol.build_dol_data(pdol, terminal, kernel=KERNEL_PBOC) if pdol else b""
        response = session.send(CommandApdu(0x80, 0xA8, 0x00, 0x00, dol.gpo_command_data(gpo_data), 256))
        if response.sw == 0x6985:
            raise KernelStop("TRY_ANOTHER_INTERFACE", "GPO answered 6985 (conditions not satisfied)", response.sw)
        if response.sw != 0x9000:
            raise KernelStop("END_APPLICATION", f"GPO answered {response.sw:04X}", response.sw)
        objects = decode_template(response.data, "GPO response")
        if len(objects) != 1 or objects[0].tag != 0x77:
            raise KernelStop("TRY_ANOTHER_INTERFACE", "GPO response format 1 (80): the card asks for contact")
        card = result.card
        flatten(objects, card)
        missing = [f"{tag:X}" for tag in GPO_MANDATORY if tag not in card]
        if missing:
            raise KernelStop("END_APPLICATION", f"GPO response lacks {', '.join(missing)}")
        result.cid = card[0x9F27][0] & 0xC0 if 0x9F27 in card else CID_ARQC  # online: no 9F27 (brief 1)
        self._card_identity(result)
        result.ecash_balance = bcd_amount(card.get(0x9F5D))
        oda_records = read_records(session, card[0x94], card) if 0x94 in card else []
        self._card_identity(result)
        self._decide(result, ttq, oda_records, today)

    def _decide(self, result: KernelOutcome, ttq: bytearray, oda_records: list[tuple[int, bytes]],
                today: date) -> None:
        """Steps 5-7 of the module docstring: fDDA for a TC, CVM, the outcome."""
        offline_only = bool(ttq[0] & TTQ1_OFFLINE_ONLY)
        ctq = result.card.get(0x9F6C, b"\x00\x00")
        if result.cid == CID_AAC:
            raise KernelStop("DECLINED", "the card declined (AAC)")
        outcome = Outcome.ONLINE_REQUEST if result.cid == CID_ARQC else Outcome.APPROVED
        if result.cid == CID_TC:
            fallback = self._offline_checks(result, oda_records, today, ctq, offline_only, bool(ttq[0] & TTQ1_CONTACT))
            outcome = fallback or outcome
        result.cvm = self._cvm(ttq, ctq, online=outcome is Outcome.ONLINE_REQUEST)
        result.terminal[0x9F34] = CVM_RESULTS.get(result.cvm, bytes.fromhex("3F0000"))
        if outcome is not Outcome.APPROVED and outcome is not Outcome.ONLINE_REQUEST:
            raise KernelStop(outcome.value, result.reason)  # fDDA / expiry fallbacks set the reason
        if result.cvm is Cvm.FAILED:
            raise KernelStop("DECLINED", "CVM required but no CVM the card and reader share")
        if outcome is Outcome.ONLINE_REQUEST:
            if offline_only:
                raise KernelStop("DECLINED", "the card asks to go online but the reader is offline-only")
            result.outcome = outcome
            result.reason = result.reason or "card returned an ARQC"
            return
        result.outcome = Outcome.APPROVED
        result.reason = "offline approval (TC) with fDDA verified"

    def _select_application(self, session: CardSession) -> tuple[Candidate, dict[int, bytes]]:
        response = select(session, PPSE)
        if response.sw != 0x9000:
            raise KernelStop("END_APPLICATION", f"SELECT PPSE answered {response.sw:04X}", response.sw)
        candidates = []
        for obj in _entries(decode_template(response.data, "PPSE FCI")):
            fields = flatten([obj])
            adf = fields.get(0x4F)
            entry = self.config.aid_entry(adf) if adf else None
            if adf is None or entry is None:
                continue
            priority = fields.get(0x87, b"\x00")[0] & 0x0F
            label = fields.get(0x50)
            candidates.append(Candidate(adf, priority, entry.priority,
                                        label.decode("ascii", "replace") if label else None))
        if not candidates:
            raise KernelStop("TRY_ANOTHER_INTERFACE", "no application in the PPSE that the reader supports")
        last_sw = None
        for candidate in sorted(candidates, key=lambda c: c.order):
            selected = select(session, candidate.adf_name)
            if selected.sw == 0x9000:
                fci = flatten(decode_template(selected.data, "application FCI"))
                return candidate, fci
            last_sw = selected.sw
        raise KernelStop("END_APPLICATION", "no candidate application could be selected", last_sw)

    def _card_identity(self, result: KernelOutcome) -> None:
        card = result.card
        result.pan, result.psn, result.expiry = pan_of(card), psn_of(card), expiry_of(card)
        result.track2 = card.get(0x57)

    def _offline_checks(self, result: KernelOutcome, oda_records: list[tuple[int, bytes]], today: date,
                        ctq: bytes, offline_only: bool, contact: bool) -> Outcome | None:
        """fDDA and expiry for an offline TC; None when approval stands, else the fallback outcome."""
        card, terminal = result.card, result.terminal
        try:
            if 0x9F4B not in card or 0x9F69 not in card:
                raise oda.OdaError("TC without 9F4B/9F69", check="ICC data", field="GPO response")
            icc_key = recover_icc_key(self.config, (result.aid or b"")[:5], card, static_data(oda_records, card),
                                      today)
            verified = oda.verify_fdda(icc_key, card[0x9F4B], terminal[0x9F37], terminal[0x9F02], terminal[0x5F2A],
                                       card[0x9F69])
            result.oda = OdaResult("fDDA", True, icc_dynamic_number=verified.icc_dynamic_number)
        except oda.OdaError as exc:
            result.oda = OdaResult("fDDA", False, str(exc))
            if ctq[0] & CTQ1_ONLINE_IF_ODA_FAILS and not offline_only:
                result.reason = f"fDDA failed ({exc}); the CTQ asks to go online"
                return Outcome.ONLINE_REQUEST
            if ctq[0] & CTQ1_CONTACT_IF_ODA_FAILS and contact:
                result.reason = f"fDDA failed ({exc}); the CTQ asks for the contact interface"
                return Outcome.TRY_ANOTHER_INTERFACE
            result.reason = f"fDDA failed: {exc}"
            return Outcome.DECLINED
        expiry = card.get(0x5F24)
        if expiry is not None and expiry.hex() < today.strftime("%y%m%d"):
            if ctq[0] & CTQ1_ONLINE_IF_EXPIRED and not offline_only:
                result.reason = "card expired; the CTQ asks to go online"
                return Outcome.ONLINE_REQUEST
            result.reason = "card expired"
            return Outcome.DECLINED
        return None

    @staticmethod
    def _cvm(ttq: bytearray, ctq: bytes, *, online: bool) -> Cvm:
        """Reader CVM processing (qVSDC style, see the module docstring)."""
        if ctq[0] & CTQ1_ONLINE_PIN and online and ttq[0] & TTQ1_ONLINE_PIN:
            return Cvm.ONLINE_PIN
        if len(ctq) > 1 and ctq[1] & CTQ2_CDCVM:
            return Cvm.CDCVM
        if ctq[0] & CTQ1_SIGNATURE and ttq[0] & TTQ1_SIGNATURE:
            return Cvm.SIGNATURE
        if not ttq[1] & TTQ2_CVM_REQUIRED:
            return Cvm.NO_CVM
        if online and ttq[0] & TTQ1_ONLINE_PIN:
            return Cvm.ONLINE_PIN
        if ttq[0] & TTQ1_SIGNATURE:
            return Cvm.SIGNATURE
        return Cvm.FAILED


def _entries(objects: list[Tlv]) -> list[Tlv]:
    """The directory entries (61) of a PPSE FCI, wherever they sit (A5 / BF0C)."""
    found = []
    for obj in objects:
        if obj.tag == 0x61:
            found.append(obj)
        elif obj.constructed:
            found.extend(_entries(list(obj.children)))
    return found


def _n8(value: int) -> bytes:
    return bytes.fromhex(f"{value:08d}")


__all__ = ["PPSE", "ContactlessKernel"]
