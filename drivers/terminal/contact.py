"""The PBOC contact kernel (EMV 4.3 Book 3 section 10 / PBOC 3.0 contact flow; domain brief section 1), two passes.

``ContactKernel(reader, config).perform(amount) -> ContactOutcome`` runs up to the first GENERATE AC:

1. **Selection** (Book 1 12.3): SELECT PSE ``1PAY.SYS.DDF01`` and its directory records (SFI of tag 88),
   else the list of supported AIDs (SELECT first / next occurrence for partial names); candidates by
   priority (87). GPO ``6985`` drops the candidate and selects the next (Book 3 10.1).
2. **GPO** (PDOL data, ``83 00`` without PDOL), response format 1 ``80 AIP AFL`` or template 77;
   **READ RECORD** per AFL; 5A, 5F24, 8C, 8D mandatory.
3. **Offline data authentication** (Book 2 5/6): DDA (INTERNAL AUTHENTICATE over the DDOL 9F49, default
   ``9F3704``) when AIP and 9F33 both allow it, else SDA (tag 93); TVR byte 1: 80 not performed, 40 SDA
   failed, 20 ICC data missing, 08 DDA failed. CDA is not requested (the paylab applet has none).
4. **Processing restrictions** (10.4): application versions (TVR 2 b8), AUC against domestic/international
   goods/services/cash (b5), effective date (b6), expiry (b7).
5. **Cardholder verification** (10.5): the CVM list 8E (X, Y, rules, conditions 00-09); offline plaintext
   PIN by VERIFY ``00 20 00 80 08 <format 2 block>`` when a PIN is given (``config.pin`` or ``pin=``),
   online PIN, signature, no CVM; CVM results 9F34 and TVR byte 3.
6. **Terminal risk management** (10.6): floor limit (TVR 4 b8), velocity with GET DATA 9F36/9F13 against
   9F14/9F23 (TVR 4 b7/b6, new card TVR 2 b4).
7. **Terminal action analysis** (10.7) and the **first GENERATE AC** ``80 AE 80|00 00 CDOL1``: an ARQC is
   requested unless TVR matches the TAC/IAC denial (then an AAC). ARQC -> ONLINE_REQUEST, TC ->
   APPROVED, AAC -> DECLINED. ``outcome.field55()`` carries the CDOL1 values sent (95 = that TVR).

``complete(outcome, response_code=..., issuer_authentication_data=91, scripts=71/72 bytes)``:
EXTERNAL AUTHENTICATE ``00 82 00 00 0A ARPC||ARC`` (unless CDOL2 asks for 91; TVR 5 b7 on failure),
scripts of template 71, the **second GENERATE AC** ``80 AE 40|00 00 CDOL2`` (8A = the response code in
ASCII, brief pitfall 2), then scripts of template 72; script results 9F5B (Book 3 10.10: result nibble 0/1/2
|| failing command number, then the 4-byte script id 9F18); TVR 5 b6/b5 when a script failed before/after
the final GENERATE AC. **Unable to go online**: ``response_code=None`` (or ``"Y3"``/``"Z3"``): TAC/IAC
default decide: ``Y3`` and a TC request, or ``Z3`` and an AAC request; the card decides in the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from paylab.lab.protocol import dol, oda
from paylab.lab.protocol.apdu import CommandApdu
from paylab.lab.protocol.cps import amount_n12
from paylab.lab.protocol.errors import ProtocolError
from paylab.lab.protocol.tags import KERNEL_PBOC

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
from .config import TerminalConfig
from .cvm import cardholder_verification, check_pin
from .outcome import CID_AAC, CID_ARQC, CID_TC, KernelOutcome, OdaResult, Outcome
from .scripts import run_scripts, script_templates
from .tvr import (
    TSI_CARD_RISK,
    TSI_CVM,
    TSI_ISSUER_AUTH,
    TSI_ODA,
    TSI_SCRIPTS,
    TSI_TRM,
    TVR_DDA_FAILED,
    TVR_EXPIRED,
    TVR_FLOOR_LIMIT,
    TVR_ICC_DATA_MISSING,
    TVR_ISSUER_AUTH_FAILED,
    TVR_LOWER_OFFLINE,
    TVR_NEW_CARD,
    TVR_NOT_EFFECTIVE,
    TVR_ODA_NOT_PERFORMED,
    TVR_SCRIPT_FAILED_AFTER,
    TVR_SCRIPT_FAILED_BEFORE,
    TVR_SDA_FAILED,
    TVR_SERVICE_NOT_ALLOWED,
    TVR_UPPER_OFFLINE,
    TVR_VERSIONS_DIFFER,
    matches,
    set_bit,
)

PSE = b"1PAY.SYS.DDF01"
APPROVED_ARCS = frozenset({"00", "10", "11"})
UNABLE_ONLINE_ARCS = frozenset({"Y3", "Z3"})
MAX_NEXT_OCCURRENCES = 16



@dataclass(repr=False)
class ContactOutcome(KernelOutcome):
    """:class:`KernelOutcome` of the contact kernel, plus TVR/TSI, issuer authentication and scripts.

    ``first_cid`` is the first GENERATE AC's CID; ``cid`` the latest (the second's after :meth:`complete`).
    ``script_results`` is 9F5B (5 bytes per script). ``state`` is the kernel's working data for
    :meth:`ContactKernel.complete` (not for callers).
    """

    tvr: bytes = bytes(5)
    tsi: bytes = bytes(2)
    first_cid: int | None = None
    arc: str | None = None
    issuer_authentication: bool | None = None
    script_results: bytes = b""
    completed: bool = False
    state: dict[str, Any] = field(default_factory=dict)

    def _summary(self) -> str:
        extra = f", tvr={self.tvr.hex().upper()}, tsi={self.tsi.hex().upper()}"
        if self.arc is not None:
            extra += f", arc={self.arc}"
        if self.script_results:
            extra += f", scripts={self.script_results.hex().upper()}"
        return super()._summary() + extra


class ContactKernel:
    """PBOC contact kernel; see the module docstring. ``activate``: cold reset at the start of :meth:`perform`."""

    def __init__(self, reader: CardReaderProtocol, config: TerminalConfig | None = None, *,
                 activate: bool = True) -> None:
        self.reader = reader
        self.config = config or TerminalConfig()
        self.activate = activate
        self._sequence = self.config.transaction_sequence_start

    # -- first pass ------------------------------------------------------------------------------------------
    def perform(self, amount: int, *, transaction_type: int = 0x00, other_amount: int = 0,
                unpredictable_number: bytes | None = None, date: date | None = None,
                pin: str | None = None) -> ContactOutcome:
        """Selection to the first GENERATE AC; see the module docstring."""
        if amount < 0 or other_amount < 0:
            raise ValueError("amounts must be >= 0 (fen)")
        pin = pin if pin is not None else self.config.pin
        check_pin(pin)  # a bad PIN must fail here, not as a VERIFY that burns a PIN try
        session = CardSession(self.reader)
        result = ContactOutcome(Outcome.END_APPLICATION)
        try:
            self._first_pass(session, result, amount, transaction_type, other_amount, unpredictable_number, date,
                             pin)
        except KernelStop as stop:
            result.outcome, result.reason, result.sw = Outcome(stop.outcome), stop.reason, stop.sw
        except ProtocolError as exc:  # a malformed card answer the flow did not expect (EMV: end application)
            result.outcome, result.reason = Outcome.END_APPLICATION, f"card data error: {exc}"
        except CardRemoved as exc:
            result.outcome, result.reason = Outcome.END_APPLICATION, "card removed"
            result.apdu_count, result.duration_ms = session.apdu_count, session.elapsed_ms
            exc.outcome = result  # type: ignore[attr-defined]
            raise
        finally:
            self._sequence = self._sequence % 99_999_999 + 1
        result.apdu_count, result.duration_ms = session.apdu_count, session.elapsed_ms
        return result

    def _first_pass(self, session: CardSession, result: ContactOutcome, amount: int, txn_type: int, other: int,
                    un: bytes | None, when: date | None, pin: str | None) -> None:
        config = self.config
        day_bytes, time_bytes, today = transaction_clock(config, when)
        un = un if un is not None else config.unpredictable_number()
        if len(un) != 4:
            raise ValueError("the unpredictable number 9F37 is 4 bytes")
        terminal = config.terminal_values() | {
            0x9F02: amount_n12(amount), 0x9F03: amount_n12(other), 0x95: bytes(5), 0x9A: day_bytes, 0x9F21: time_bytes,
            0x9C: bytes([txn_type]), 0x9F37: bytes(un), 0x9F41: bytes.fromhex(f"{self._sequence:08d}"),
        }
        result.terminal = terminal
        tvr, tsi = bytearray(5), bytearray(2)
        if self.activate:
            self.reader.power_on()
        aip, afl = self._select_and_gpo(session, result)
        card = result.card
        oda_records = read_records(session, afl, card)
        result.pan, result.psn, result.expiry = pan_of(card), psn_of(card), expiry_of(card)
        result.track2 = card.get(0x57)
        result.ecash_balance = None
        missing = [f"{tag:X}" for tag in (0x5A, 0x5F24, 0x8C, 0x8D) if tag not in card]
        if missing:
            raise KernelStop("END_APPLICATION", f"mandatory data missing: {', '.join(missing)}")
        self._oda(session, result, aip, oda_records, today, tvr)
        tsi[0] |= TSI_ODA if result.oda is not None else 0
        self._restrictions(card, terminal, today, txn_type, tvr)
        if aip[0] & 0x10:
            result.cvm = cardholder_verification(session, self.config, card, terminal, amount, txn_type, pin, tvr)
            tsi[0] |= TSI_CVM
        else:
            terminal[0x9F34] = bytes.fromhex("3F0000")
        if aip[0] & 0x08:
            self._risk_management(session, card, amount, tvr)
            tsi[0] |= TSI_TRM
        denial = matches(tvr, config.tac_denial, card.get(0x9F0E, bytes(5)))
        requested = CID_AAC if denial else CID_ARQC
        terminal[0x95] = bytes(tvr)
        cid = self._generate_ac(session, result, requested, card[0x8C], terminal)
        tsi[0] |= TSI_CARD_RISK
        result.tvr, result.tsi = bytes(tvr), bytes(tsi)
        result.first_cid = result.cid = cid
        result.state = {"aip": aip, "tvr": tvr, "tsi": tsi}
        if cid == CID_ARQC:
            result.outcome, result.reason = Outcome.ONLINE_REQUEST, "card returned an ARQC"
        elif cid == CID_TC:
            result.outcome, result.reason = Outcome.APPROVED, "card approved offline (TC)"
        else:
            result.outcome = Outcome.DECLINED
            result.reason = "terminal action analysis: denial" if denial else "card declined (AAC)"

    # -- selection ----------------------------------------------------------------------------------------------
    def _candidates(self, session: CardSession) -> list[tuple[int, int, bytes, str | None]]:
        """``(card priority, terminal priority, ADF name, label)`` of the mutually supported applications."""
        found: dict[bytes, tuple[int, int, bytes, str | None]] = {}

        def add(adf: bytes, fields: dict[int, bytes]) -> None:
            entry = self.config.aid_entry(adf)
            if entry is not None and adf not in found:
                label = fields.get(0x50)
                found[adf] = ((fields.get(0x87, b"\x00")[0] & 0x0F) or 16, entry.priority, adf,
                              label.decode("ascii", "replace") if label else None)

        response = select(session, PSE)
        if response.sw == 0x9000:
            sfi = flatten(decode_template(response.data, "PSE FCI")).get(0x88)
            for number in range(1, 17):
                if not sfi:
                    break
                record = session.send(CommandApdu(0x00, 0xB2, number, (sfi[0] << 3) | 0x04, le=256))
                if record.sw != 0x9000:
                    break
                for obj in decode_template(record.data, "PSE directory record"):
                    for entry in (obj.children if obj.constructed else ()):
                        if entry.tag == 0x61:
                            fields = flatten([entry])
                            if 0x4F in fields:
                                add(fields[0x4F], fields)
        if found:
            return sorted(found.values())
        for aid_entry in self.config.aids:
            first = True
            for _ in range(MAX_NEXT_OCCURRENCES):
                selected = select(session, aid_entry.aid, next_occurrence=not first)
                first = False
                if selected.sw not in (0x9000, 0x6283):
                    break
                fields = flatten(decode_template(selected.data, "application FCI"))
                name = fields.get(0x84, aid_entry.aid)
                if selected.sw == 0x9000:
                    add(name, fields)
                if not aid_entry.partial or name == aid_entry.aid:
                    break
        return sorted(found.values())

    def _select_and_gpo(self, session: CardSession, result: ContactOutcome) -> tuple[bytes, bytes]:
        candidates = self._candidates(session)
        if not candidates:
            raise KernelStop("END_APPLICATION", "no mutually supported application (PSE and AID list)")
        last_sw = None
        for _, _, adf, label in candidates:
            selected = select(session, adf)
            if selected.sw != 0x9000:
                last_sw = selected.sw
                continue
            fci = flatten(decode_template(selected.data, "application FCI"))
            terminal = result.terminal
            terminal[0x84] = fci.get(0x84, adf)
            pdol = fci.get(0x9F38, b"")
            data = dol.build_dol_data(pdol, terminal, kernel=KERNEL_PBOC) if pdol else b""
            response = session.send(CommandApdu(0x80, 0xA8, 0x00, 0x00, dol.gpo_command_data(data), 256))
            if response.sw == 0x6985:
                last_sw = response.sw
                continue  # Book 3 10.1: remove the application, select the next
            if response.sw != 0x9000:
                raise KernelStop("END_APPLICATION", f"GPO answered {response.sw:04X}", response.sw)
            result.aid, result.label = terminal[0x84], label
            objects = decode_template(response.data, "GPO response")
            if len(objects) == 1 and objects[0].tag == 0x80 and len(objects[0].value) >= 6:
                aip, afl = objects[0].value[:2], objects[0].value[2:]
            elif len(objects) == 1 and objects[0].tag == 0x77:
                flatten(objects, result.card)
                aip, afl = result.card.get(0x82, b""), result.card.get(0x94, b"")
            else:
                raise KernelStop("END_APPLICATION", "GPO response is neither format 1 (80) nor 2 (77)")
            if len(aip) != 2 or not afl:
                raise KernelStop("END_APPLICATION", "GPO response without AIP/AFL")
            result.card[0x82], result.card[0x94] = aip, afl
            return aip, afl
        raise KernelStop("END_APPLICATION", "no candidate application accepted SELECT and GPO", last_sw)

    # -- offline data authentication ------------------------------------------------------------------------------
    def _oda(self, session: CardSession, result: ContactOutcome, aip: bytes, oda_records: list[tuple[int, bytes]],
             today: date, tvr: bytearray) -> None:
        card, caps = result.card, self.config.capabilities[2]
        rid = (result.aid or b"")[:5]
        if aip[0] & 0x20 and caps & 0x40:
            try:
                icc_key = recover_icc_key(self.config, rid, card, static_data(oda_records, card), today)
                ddol = card.get(0x9F49, oda.DEFAULT_DDOL)
                data = dol.build_dol_data(ddol, result.terminal, kernel=KERNEL_PBOC)
                response = session.send(CommandApdu(0x00, 0x88, 0x00, 0x00, data, 256))
                if response.sw != 0x9000:
                    raise oda.OdaError(f"INTERNAL AUTHENTICATE answered {response.sw:04X}",
                                       check="INTERNAL AUTHENTICATE", field="card")
                sdad = oda.parse_internal_authenticate_response(response.data)
                verified = oda.verify_dynamic_signature(icc_key, sdad, data)
                result.oda = OdaResult("DDA", True, icc_dynamic_number=verified.icc_dynamic_number)
            except oda.OdaError as exc:
                result.oda = OdaResult("DDA", False, str(exc))
                set_bit(tvr, TVR_DDA_FAILED)
                if exc.check == "ICC data":
                    set_bit(tvr, TVR_ICC_DATA_MISSING)
        elif aip[0] & 0x40 and caps & 0x80:
            try:
                if 0x93 not in card:
                    raise oda.OdaError("no signed static application data (93)", check="ICC data", field="records")
                ca = self.config.ca_key(rid, card.get(0x8F, b"\x00")[0])
                if ca is None:
                    raise oda.OdaError("no CA public key for the card", check="CA key", field="tag 8F")
                issuer = oda.recover_issuer_public_key(ca, card.get(0x90, b""), card.get(0x92, b""),
                                                       card.get(0x9F32, b""), result.pan or "", today=today)
                if not isinstance(issuer, oda.RsaPublicKey):
                    raise oda.OdaError("SDA needs an RSA issuer key", check="key type", field="tag 90")
                oda.verify_static_data(issuer, card[0x93], static_data(oda_records, card))
                result.oda = OdaResult("SDA", True)
            except oda.OdaError as exc:
                result.oda = OdaResult("SDA", False, str(exc))
                set_bit(tvr, TVR_SDA_FAILED)
                if exc.check == "ICC data":
                    set_bit(tvr, TVR_ICC_DATA_MISSING)
        else:
            set_bit(tvr, TVR_ODA_NOT_PERFORMED)

    # -- processing restrictions, CVM, risk management ---------------------------------------------------------
    @staticmethod
    def _restrictions(card: dict[int, bytes], terminal: dict[int, bytes], today: date, txn_type: int,
                      tvr: bytearray) -> None:
        if 0x9F08 in card and card[0x9F08] != terminal.get(0x9F09):
            set_bit(tvr, TVR_VERSIONS_DIFFER)
        auc = card.get(0x9F07)
        if auc and len(auc) >= 2:
            domestic = card.get(0x5F28) == terminal.get(0x9F1A)
            goods_services = (0x20 | 0x08) if domestic else (0x10 | 0x04)
            cash = 0x80 if domestic else 0x40
            allowed = True
            if txn_type == 0x00:
                allowed = bool(auc[0] & goods_services)
            elif txn_type in (0x01, 0x17):
                allowed = bool(auc[0] & cash)
            elif txn_type == 0x09:
                allowed = bool(auc[1] & (0x80 if domestic else 0x40))
            if not allowed:
                set_bit(tvr, TVR_SERVICE_NOT_ALLOWED)
        today_text = today.strftime("%y%m%d")
        if 0x5F25 in card and card[0x5F25].hex() > today_text:
            set_bit(tvr, TVR_NOT_EFFECTIVE)
        if card[0x5F24].hex() < today_text:
            set_bit(tvr, TVR_EXPIRED)

    def _risk_management(self, session: CardSession, card: dict[int, bytes], amount: int, tvr: bytearray) -> None:
        if amount >= self.config.floor_limit:
            set_bit(tvr, TVR_FLOOR_LIMIT)
        if 0x9F14 in card or 0x9F23 in card:
            atc, last_online = self._get_data(session, 0x9F36), self._get_data(session, 0x9F13)
            if atc is None or last_online is None:
                set_bit(tvr, TVR_LOWER_OFFLINE)
                set_bit(tvr, TVR_UPPER_OFFLINE)
                return
            since = int.from_bytes(atc, "big") - int.from_bytes(last_online, "big")
            if 0x9F14 in card and since > card[0x9F14][0]:
                set_bit(tvr, TVR_LOWER_OFFLINE)
            if 0x9F23 in card and since > card[0x9F23][0]:
                set_bit(tvr, TVR_UPPER_OFFLINE)
            if not any(last_online):
                set_bit(tvr, TVR_NEW_CARD)

    @staticmethod
    def _get_data(session: CardSession, tag: int) -> bytes | None:
        response = session.send(CommandApdu(0x80, 0xCA, tag >> 8, tag & 0xFF, le=256))
        if response.sw != 0x9000:
            return None
        objects = flatten(decode_template(response.data, f"GET DATA {tag:X}"))
        return objects.get(tag)

    def get_data(self, tag: int) -> bytes | None:
        """GET DATA ``80 CA tag`` on the selected application (e.g. 9F79 e-cash balance); None unless 9000."""
        return self._get_data(CardSession(self.reader), tag)

    # -- GENERATE AC -------------------------------------------------------------------------------------------------
    def _generate_ac(self, session: CardSession, result: ContactOutcome, requested: int, cdol: bytes,
                     values: dict[int, bytes]) -> int:
        data = dol.build_dol_data(cdol, values, kernel=KERNEL_PBOC)
        response = session.send(CommandApdu(0x80, 0xAE, requested, 0x00, data, 256))
        if response.sw != 0x9000:
            raise KernelStop("END_APPLICATION", f"GENERATE AC answered {response.sw:04X}", response.sw)
        objects = decode_template(response.data, "GENERATE AC response")
        card = result.card
        if len(objects) == 1 and objects[0].tag == 0x80 and len(objects[0].value) >= 11:
            value = objects[0].value
            card.update({0x9F27: value[:1], 0x9F36: value[1:3], 0x9F26: value[3:11]})
            if len(value) > 11:
                card[0x9F10] = value[11:]
        elif len(objects) == 1 and objects[0].tag == 0x77:
            fields = flatten(objects)
            if not all(tag in fields for tag in (0x9F27, 0x9F36, 0x9F26)):
                raise KernelStop("END_APPLICATION", "GENERATE AC template 77 lacks 9F27/9F36/9F26")
            card.update({tag: fields[tag] for tag in (0x9F27, 0x9F36, 0x9F26, 0x9F10) if tag in fields})
        else:
            raise KernelStop("END_APPLICATION", "GENERATE AC response is neither format 1 nor 2")
        cid = card[0x9F27][0] & 0xC0
        if cid == 0xC0 or (requested == CID_AAC and cid != CID_AAC) or (requested == CID_TC and cid == CID_ARQC):
            raise KernelStop("END_APPLICATION", f"the card answered CID {cid:02X} to a request for {requested:02X}")
        result.ecash_balance = _iad_balance(card.get(0x9F10)) if result.ecash_balance is None else \
            result.ecash_balance
        return cid

    # -- second pass -------------------------------------------------------------------------------------------------
    def complete(self, outcome: ContactOutcome, *, response_code: str | None,
                 issuer_authentication_data: bytes | None = None, scripts: bytes | None = None) -> ContactOutcome:
        """Issuer authentication, scripts 71, second GENERATE AC, scripts 72 (module docstring); updates
        and returns ``outcome``. ``response_code`` is field 39 (``"00"`` ...), None when the terminal could
        not go online (Y3/Z3 path)."""
        if outcome.first_cid != CID_ARQC or outcome.completed or not outcome.state:
            raise ValueError("complete() needs the ONLINE_REQUEST outcome of this kernel's perform(), once")
        session = CardSession(self.reader)
        try:
            self._second_pass(session, outcome, response_code, issuer_authentication_data, scripts)
        except KernelStop as stop:
            outcome.outcome, outcome.reason, outcome.sw = Outcome(stop.outcome), stop.reason, stop.sw
        except ProtocolError as exc:
            outcome.outcome, outcome.reason = Outcome.END_APPLICATION, f"card data error: {exc}"
        except CardRemoved as exc:
            outcome.outcome, outcome.reason = Outcome.END_APPLICATION, "card removed during completion"
            exc.outcome = outcome  # type: ignore[attr-defined]
            raise
        finally:
            outcome.completed = True
            outcome.apdu_count += session.apdu_count
            outcome.duration_ms += session.elapsed_ms
        return outcome

    def _second_pass(self, session: CardSession, outcome: ContactOutcome, response_code: str | None,
                     issuer_auth: bytes | None, scripts: bytes | None) -> None:
        config, card, terminal = self.config, outcome.card, outcome.terminal
        tvr, tsi, aip = outcome.state["tvr"], outcome.state["tsi"], outcome.state["aip"]
        cdol2 = card[0x8D]
        unable = response_code is None or response_code in UNABLE_ONLINE_ARCS
        templates = script_templates(scripts)
        if issuer_auth and not unable:
            if any(entry.tag == 0x91 for entry in dol.parse_dol(cdol2)):
                outcome.issuer_authentication = None  # the card checks it inside the 2nd GENERATE AC
            elif aip[0] & 0x04:
                response = session.send(CommandApdu(0x00, 0x82, 0x00, 0x00, issuer_auth))
                outcome.issuer_authentication = response.sw == 0x9000
                if not outcome.issuer_authentication:
                    set_bit(tvr, TVR_ISSUER_AUTH_FAILED)
                tsi[0] |= TSI_ISSUER_AUTH
        results = bytearray()
        results += run_scripts(session, [t for t in templates if t[0] == 0x71], tvr, TVR_SCRIPT_FAILED_BEFORE)
        if unable:
            default = matches(tvr, config.tac_default, card.get(0x9F0D, bytes(5)))
            arc = response_code or ("Z3" if default else "Y3")
            requested = CID_AAC if default or arc == "Z3" else CID_TC
        else:
            arc = response_code or ""
            requested = CID_TC if arc in APPROVED_ARCS else CID_AAC
        outcome.arc = arc
        values = dict(terminal) | {0x8A: arc.encode("ascii")[:2].ljust(2, b"0"), 0x95: bytes(tvr)}
        if issuer_auth:
            values[0x91] = issuer_auth
        terminal.update(values)
        cid = self._generate_ac(session, outcome, requested, cdol2, values)
        outcome.cid = cid
        results += run_scripts(session, [t for t in templates if t[0] == 0x72], tvr, TVR_SCRIPT_FAILED_AFTER)
        if templates:
            tsi[0] |= TSI_SCRIPTS
        outcome.script_results = bytes(results)
        if results:
            terminal[0x9F5B] = bytes(results)
        outcome.tvr, outcome.tsi = bytes(tvr), bytes(tsi)
        if cid == CID_TC:
            outcome.outcome = Outcome.APPROVED
            outcome.reason = "unable to go online: card approved offline (TC)" if unable else "card approved (TC)"
        else:
            outcome.outcome = Outcome.DECLINED
            if requested == CID_TC:
                outcome.reason = "card declined (AAC)"
            elif unable:
                outcome.reason = f"unable to go online ({arc}): terminal action analysis asked for an AAC"
            else:
                outcome.reason = f"issuer declined ({arc})"


def _iad_balance(iad: bytes | None) -> int | None:
    """The e-cash balance of the paylab IAD's IDD ``0A 01 <balance 5> <MAC4>`` (pboc applet docstring)."""
    if not iad or len(iad) < 19 or iad[8] != 0x0A or iad[9] != 0x01:
        return None
    return bcd_amount(b"\x00" + iad[10:15])


__all__ = ["PSE", "ContactKernel", "ContactOutcome"]
