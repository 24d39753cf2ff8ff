"""The paylab PBOC 3.0 debit/credit/e-cash applet: qPBOC contactless, contact PBOC, e-cash, issuer scripts.

Personalised with the DGIs of :func:`paylab.lab.protocol.cps.prepare_pboc` (the DGI map is documented
there) through STORE DATA, which the associated security domain unwraps, DEK-decrypts DGI by DGI and
forwards to :meth:`PbocApplet.process_data` (GP 2.3 11.11; ``drivers/se/gp/security_domain.py``).

**Package** [paylab]: package AID ``A000000333 5041594C4142`` (UnionPay RID || ASCII "PAYLAB"), version
1.0, one module (class) AID = package AID || ``01``. Instances take the application AIDs
(A000000333010101 debit, ...0102 credit, ...0106 e-cash).

**Commands** (CLA 00 interindustry, 80 proprietary, 04/84 secure messaging):

========================= ================================================================================
SELECT (runtime)          FCI ``6F{84, A5}`` with the A5 of DGI 9103 (contactless) / 9102 (contact)
80 A8 GPO                 ``83 L <PDOL data>``; qPBOC on contactless (or TTQ b6 on contact), else contact
00 B2 READ RECORD         SFI 1-10 personalised records; SFI 11 transaction log; SFI 12 load log
00 20 VERIFY              P2 80 offline plaintext PIN (format 2 block); no data: 63Cx try counter
80 AE GENERATE AC         1st (CDOL1) and 2nd (CDOL2), format 1 ``80 CID ATC AC IAD``; no CDA
00 82 EXTERNAL AUTH       ``ARPC || ARC``, ARPC method 1 with the AC session key (brief pitfall 2)
80 CA GET DATA            9F36 9F13 9F17 9F79 9F77 9F78 9F6D 9F74 9F4F DF4F 9F51 9F14 9F23
04/84 DA PUT DATA         9F79 (e-cash load, new total [M]) 9F77 9F78 9F6D, value n12 || MAC4
84 1E / 84 18             APPLICATION BLOCK / UNBLOCK, data = MAC4
84 24 PIN CHANGE/UNBLOCK  P2 00 unblock (reset try counter); P2 01 new PIN, ENC session key [paylab]
========================= ================================================================================

**qPBOC decision** at GPO (brief section 1): the application blocked gives an AAC; TTQ byte 2 b8
(online cryptogram required) an ARQC; offline e-cash approval (TC) when the currency 5F2A equals
9F51, the transaction type is 00, the amount is at most 9F78 and at most the balance 9F79, and the
card holds an fDDA key; otherwise an offline-only reader (TTQ byte 1 b4) or a pure e-cash account
gets an AAC, and everything else an ARQC. Responses, template 77:

* online: 82 9F36 57 9F10 9F26 5F34 9F6C 9F5D: no 9F27 and no 94, exactly as the brief's trace;
* offline: 82 94 9F36 57 9F10 9F26 9F27(40) 5F34 9F4B 9F69 9F6C 9F5D; the balance is debited in the
  same commit as the ATC and the log record;
* decline: 82 9F36 57 9F10 9F26 9F27(00) 5F34 9F6C 9F5D (9F27 tells a reader the AAC apart [paylab]);
* a contactless GPO whose TTQ lacks qPBOC support answers 6985 ("use another interface").

**IAD** (9F10, 19 bytes): ``07 DKI CVN CVR(03 b1 b2 b3) alg-id`` || IDD ``0A 01 <balance, rightmost 10
digits, 5 bytes> <MAC4>`` (the trace's shape). MAC4 [paylab] = leftmost 4 bytes of the AC algorithm
(:func:`generate_ac`) with the AC session key over ``01 || balance(5) || ATC`` (:func:`idd_mac`).

**CVR** (VIS-style [M]): byte 1 b8b7 2nd AC (00 AAC, 01 TC, 10 not requested), b6b5 1st AC (00 AAC,
01 TC, 10 ARQC), b4 issuer authentication failed, b3 offline PIN performed, b2 offline PIN failed,
b1 unable to go online; byte 2 b8 last online transaction not completed, b7 PIN try limit exceeded,
b6 velocity (lower consecutive offline limit) exceeded, b5 new card, b4 issuer authentication failed
on the last online transaction, b3 issuer authentication not performed after online authorisation;
byte 3 b8-b5 issuer script commands processed since the last online transaction, b4 a script failed.

**AC**: ``emv.ac_input`` over 9F02 9F03 9F1A 95 5F2A 9A 9C 9F37 82 9F36 + CVR, with the PBOC session key
derived from MK-AC and the ATC (3DES or SM4 per the IAD algorithm id). The 2nd GENERATE AC uses the
CDOL2 values over the CDOL1 ones [M].

**ATC**: incremented and committed by every accepted GPO, in the same atomic commit as the response's
effects (the runtime commits before the response leaves the card, so a tear after it cannot reuse an
ATC). At FFFF the application blocks itself and GPO answers 6985 [M: PBOC].

**Blocked application** (APPLICATION BLOCK script, or the ATC exhausted): qPBOC declines with an AAC;
on contact the 1st GENERATE AC answers a TC request with an AAC but an ARQC request with an ARQC, so that
the issuer can send APPLICATION UNBLOCK in that online transaction [M]; the 2nd GENERATE AC gives an AAC
unless a script unblocked the application before it. SELECT still answers 9000 with the FCI (the
runtime cannot return FCI data with 6283).

**Contact card risk management** (1st GENERATE AC asking TC): an ARQC instead when the consecutive
offline count reached 9F14, the card was never online (9F13 = 0), the last online transaction failed
issuer authentication or did not complete, the PIN try limit is exceeded, or the currency differs.
2nd GENERATE AC: TC only if asked, the ARC is 00/10/11 and issuer authentication did not fail; with
ARC Y3/Z3 (unable to go online) TC while the offline count is below 9F23.

**Issuer scripts**: only after an ARQC in this selection (session), MAC = ``emv.issuer_script_mac`` with
the MAC session key (MK-MAC, same ATC) over ``CLA INS P1 P2 Lc || ATC || ARQC || data``. A wrong MAC
answers 6988 and changes nothing but the "script failed" CVR bit; a load above the balance limit 9F77
answers 6985 [M]. A load writes a load log record (SFI 12): ``P1 P2 || balance before (6) || balance
after (6) ||`` the DF4F values [M].

**Status words**: 6700 wrong Lc or DOL data length; 6A80 malformed data (wrong template, bad BCD, bad
PIN block); 6A86 wrong P1/P2; 6A82/6A83 unknown SFI/record; 6A88 unknown GET/PUT DATA tag or no PIN;
6985 not personalised, out of sequence, or conditions not met; 6983 PIN blocked; 63Cx wrong PIN; 6300
ARPC wrong; 6988 script MAC wrong; 6982 script command without secure messaging; 6D00 unknown INS;
6E00 known INS in the wrong class. The runtime turns any unexpected error into 6F00 (a bug).

**Persistent data** (``ctx.data``): ``personalised``; ``records`` ``{"SSRR": template 70}``; ``fci`` /
``gpo`` ``{"contact"|"contactless": bytes}``; ``internal`` / ``ecash`` ``{tag hex: value}``; ``keys``
``{"ac","mac","enc"}``; ``pin`` ``{"block","limit","counter"}``; ``icc_key`` ``{DGI hex: value}``; ``atc``,
``last_online_atc``, ``offline_count``, ``blocked``, ``flags``; ``txn_log`` / ``load_log`` (newest first);
``perso_buffer`` (a DGI continued in the next STORE DATA block). Transient (``ctx.session``): ``txn``,
the transaction in progress.
"""

from __future__ import annotations

import hmac
from typing import Any, ClassVar

from cryptography.hazmat.primitives.asymmetric import rsa

from paylab.lab.protocol import cps, dol, oda
from paylab.lab.protocol.apdu import CommandApdu
from paylab.lab.protocol.crypto import emv, sm2
from paylab.lab.protocol.crypto.primitives import ecb_decrypt, kcv
from paylab.lab.protocol.errors import CryptoError, TlvError
from paylab.lab.protocol.tags import KERNEL_PBOC
from paylab.lab.protocol.tlv import Tlv, decode, decode_one, tlv

from ..applet import ApduContext, Applet, InstallParams, Reply
from ..catalog import PackageInfo
from ..errors import ISOException
from ..registry import APP_PERSONALIZED

IMPLEMENTATION = "paylab.pboc"
PACKAGE_AID = bytes.fromhex("A0000003335041594C4142")
"""[paylab] UnionPay RID || ASCII "PAYLAB": no real load file has this AID."""
MODULE_AID = PACKAGE_AID + b"\x01"

CID_AAC, CID_TC, CID_ARQC = 0x00, 0x40, 0x80
APPROVED_ARCS = frozenset({b"00", b"10", b"11"})
UNABLE_ONLINE_ARCS = frozenset({b"Y3", b"Z3"})
ATC_MAX = 0xFFFF
ECASH_TAGS = frozenset({0x9F79, 0x9F77, 0x9F78, 0x9F6D})
IAD_IDD_TYPE = 0x01

# CVR bits (see the module docstring) [M]
CVR1_SECOND_NOT_REQUESTED = 0x80
CVR1_SECOND_TC = 0x40
CVR1_FIRST = {CID_AAC: 0x00, CID_TC: 0x10, CID_ARQC: 0x20}
CVR1_ISSUER_AUTH_FAILED = 0x08
CVR1_PIN_PERFORMED = 0x04
CVR1_PIN_FAILED = 0x02
CVR1_UNABLE_ONLINE = 0x01
CVR2_ONLINE_INCOMPLETE = 0x80
CVR2_PIN_LIMIT_EXCEEDED = 0x40
CVR2_VELOCITY = 0x20
CVR2_NEW_CARD = 0x10
CVR2_LAST_ISSUER_AUTH_FAILED = 0x08
CVR2_ISSUER_AUTH_NOT_PERFORMED = 0x04
CVR3_SCRIPT_FAILED = 0x08


# -- pure helpers (the backend can recompute what the card does) ------------------------------------


def bcd_to_int(value: bytes) -> int:
    """An n-format BCD value as an integer; ValueError for a non-decimal nibble."""
    text = value.hex()
    if not text.isdigit():
        raise ValueError(f"not BCD: {text.upper()}")
    return int(text or "0")


def idd_mac(ac_session_key: bytes, balance5: bytes, atc: bytes, alg: emv.Alg) -> bytes:
    """[paylab] The 4-byte MAC closing the IDD: AC algorithm over ``01 || balance(5) || ATC``, leftmost 4."""
    return emv.generate_ac(ac_session_key, bytes([IAD_IDD_TYPE]) + balance5 + atc, alg)[:4]


def build_iad(template: bytes, cvr: bytes, balance_fen: int, ac_session_key: bytes, atc: bytes,
              alg: emv.Alg) -> bytes:
    """IAD (9F10): ``07 DKI CVN`` || CVR || alg-id || ``0A 01`` balance(5) MAC4 (module docstring)."""
    balance5 = cps.amount_n12(balance_fen)[1:]
    idd = bytes([IAD_IDD_TYPE]) + balance5 + idd_mac(ac_session_key, balance5, atc, alg)
    return template[:3] + cvr + template[7:8] + bytes([len(idd)]) + idd


def _cla_kind(cla: int) -> str | None:
    if cla & 0x40:  # further interindustry classes (channels 4-19): SM is b6
        return "sm" if cla & 0x20 else "iso"
    base = cla & 0xFC
    if base == 0x00:
        return "iso"
    if base == 0x80:
        return "prop"
    if base in (0x04, 0x84, 0x0C, 0x8C):
        return "sm"
    return None


def _hex(tag: int) -> str:
    return f"{tag:X}"


class PbocApplet(Applet):
    """PBOC 3.0 debit/credit + e-cash application (qPBOC and contact); see the module docstring."""

    implementation: ClassVar[str] = IMPLEMENTATION
    contactless_capable: ClassVar[bool] = True

    # -- life cycle ---------------------------------------------------------------------------------
    def install(self, ctx: ApduContext, params: InstallParams) -> None:
        ctx.data.clear()
        ctx.data.update(self._blank_state())

    @staticmethod
    def _blank_state() -> dict[str, Any]:
        return {"personalised": False, "records": {}, "fci": {}, "gpo": {}, "internal": {}, "ecash": {},
                "keys": {}, "icc_key": {}, "perso_buffer": b"", "atc": 0, "last_online_atc": 0,
                "offline_count": 0, "blocked": False,
                "flags": {"issuer_auth_failed": False, "online_incomplete": False, "script_failed": False,
                          "scripts": 0},
                "txn_log": [], "load_log": []}

    def _state(self, ctx: ApduContext) -> dict[str, Any]:
        if "records" not in ctx.data:  # instance created without INSTALL (tests, fabrication)
            ctx.data.update(self._blank_state())
        return ctx.data

    def select(self, ctx: ApduContext, cmd: CommandApdu) -> bytes:
        data = self._state(ctx)
        fci = data["fci"]
        a5 = fci.get(ctx.interface) or fci.get("contact") or fci.get("contactless")
        items = [Tlv(0x84, ctx.aid)]
        if data["personalised"] and a5:
            items.append(decode_one(a5))
        return Tlv.build(0x6F, *items).encode()

    # -- personalisation ------------------------------------------------------------------------------
    def process_data(self, ctx: ApduContext, cmd: CommandApdu) -> bytes | Reply:
        """STORE DATA in DGI format (P1 b5b4 = 01 or 00), already unwrapped and DEK-decrypted by the SD.

        Each DGI is checked and stored as it arrives; the last block (P1 b8) checks that the mandatory
        DGIs are present and the keys match their check values, then moves the instance to
        PERSONALIZED (registry life cycle 0F). Block numbering (P2) is the SD's business (GP 11.11).
        """
        data = self._state(ctx)
        if cmd.ins != 0xE2:
            raise ISOException(0x6D00, f"INS {cmd.ins:02X} is not STORE DATA")
        if data["personalised"]:
            raise ISOException(0x6985, "already personalised")
        structure, encryption = (cmd.p1 >> 3) & 0x03, (cmd.p1 >> 5) & 0x03
        if structure not in (0, 1) or encryption == 2:
            raise ISOException(0x6A86, f"STORE DATA P1 {cmd.p1:02X}: only DGI data is accepted")
        if not cmd.data:
            raise ISOException(0x6700, "STORE DATA without data")
        dgis, rest = cps.split_dgis(bytes(data["perso_buffer"]) + cmd.data)
        for dgi, value in dgis:
            self._store_dgi(ctx, dgi, value)
        data["perso_buffer"] = rest
        if cmd.p1 & 0x80:
            if rest:
                raise ISOException(0x6A80, f"last block ends inside a DGI ({len(rest)} bytes left)")
            self._finish_personalisation(ctx)
        return b""

    def _store_dgi(self, ctx: ApduContext, dgi: int, value: bytes) -> None:
        data = ctx.data
        sfi, rec = dgi >> 8, dgi & 0xFF
        if 1 <= sfi <= cps.MAX_RECORD_SFI and rec:
            self._parse(value, 0x70, f"DGI {dgi:04X}")
            data["records"][f"{dgi:04X}"] = value
        elif dgi in (cps.DGI_FCI_CONTACT, cps.DGI_FCI_CONTACTLESS):
            self._parse(value, 0xA5, f"DGI {dgi:04X}")
            data["fci"]["contact" if dgi == cps.DGI_FCI_CONTACT else "contactless"] = value
        elif dgi in (cps.DGI_GPO_CONTACT, cps.DGI_GPO_CONTACTLESS):
            objects = self._tlv_dict(value, dgi)
            aip, afl = objects.get(0x82, b""), objects.get(0x94, b"")
            if len(aip) != 2 or not afl or len(afl) % 4:
                raise ISOException(0x6A80, f"DGI {dgi:04X} must hold 82 (2 bytes) and 94 (4n bytes)")
            data["gpo"]["contact" if dgi == cps.DGI_GPO_CONTACT else "contactless"] = value
        elif dgi == cps.DGI_INTERNAL:
            objects = self._tlv_dict(value, dgi)
            template = objects.get(0x9F10, b"")
            if (len(template) != 8 or template[0] != 0x07 or template[3] != 0x03
                    or template[2] not in emv.CVN_PROFILES or template[7] not in emv.ALGORITHM_IDS):
                raise ISOException(0x6A80, "DGI 0D01: 9F10 must be 07 DKI CVN 03xxxxxx alg-id with a known CVN")
            if len(objects.get(0x9F51, b"")) != 2:
                raise ISOException(0x6A80, "DGI 0D01: 9F51 must be 2 bytes")
            data["internal"].update({_hex(tag): v for tag, v in objects.items()})
        elif dgi == cps.DGI_ECASH:
            objects = self._tlv_dict(value, dgi)
            for tag, v in objects.items():
                if tag in ECASH_TAGS:
                    self._amount(v, f"DGI 0E01 tag {tag:X}")
            data["ecash"].update({_hex(tag): v for tag, v in objects.items()})
        elif dgi == cps.DGI_CARD_KEYS:
            if len(value) != 48:
                raise ISOException(0x6A80, f"DGI 8000 must be 3 x 16 bytes, got {len(value)}")
            data["keys"] = {"ac": value[:16], "mac": value[16:32], "enc": value[32:]}
        elif dgi == cps.DGI_KEY_CHECK_VALUES:
            if len(value) != 9:
                raise ISOException(0x6A80, "DGI 9000 must be 3 key check values of 3 bytes")
            data["kcv"] = value
        elif dgi == cps.DGI_PIN_BLOCK:
            block = self._unpad_pin_block(value)
            data.setdefault("pin", {"limit": 3, "counter": 3})["block"] = block
        elif dgi == cps.DGI_PIN_DATA:
            if len(value) != 2 or not 1 <= value[0] <= 15 or value[1] > value[0]:
                raise ISOException(0x6A80, "DGI 9010 must be PIN try limit (1-15) || counter")
            data.setdefault("pin", {})
            data["pin"].update({"limit": value[0], "counter": value[1]})
        elif dgi in cps.DGI_ICC_CRT or dgi == cps.DGI_ICC_SM2:
            if not value or (dgi == cps.DGI_ICC_SM2 and len(value) != 32):
                raise ISOException(0x6A80, f"DGI {dgi:04X}: bad ICC private key component")
            data["icc_key"][f"{dgi:04X}"] = value
        else:
            raise ISOException(0x6A88, f"DGI {dgi:04X} is not known to the PBOC applet")

    def _finish_personalisation(self, ctx: ApduContext) -> None:
        data = ctx.data
        missing = [name for name, present in (
            ("records", bool(data["records"])), ("9102/9103", bool(data["fci"])),
            ("9104/9207", bool(data["gpo"])), ("0D01", bool(data["internal"])),
            ("0E01", all(_hex(t) in data["ecash"] for t in ECASH_TAGS)), ("8000", bool(data["keys"])),
        ) if not present]
        if "pin" in data and "block" not in data["pin"]:
            missing.append("8010")
        if data["icc_key"] and set(data["icc_key"]) not in ({f"{d:04X}" for d in cps.DGI_ICC_CRT},
                                                               {f"{cps.DGI_ICC_SM2:04X}"}):
            missing.append("8201-8205 (all five) or 8301")
        if missing:
            raise ISOException(0x6985, "personalisation incomplete: missing DGI " + ", ".join(missing))
        if "kcv" in data:
            alg = self._alg(ctx)
            expected = b"".join(kcv(data["keys"][n], "3des" if alg == "3des" else "sm4") for n in ("ac", "mac", "enc"))
            if expected != data["kcv"]:
                raise ISOException(0x6A80, "DGI 9000: key check values do not match the keys of DGI 8000")
        data["personalised"] = True
        data.pop("perso_buffer", None)
        entry = ctx.se.registry.get(ctx.aid)
        if entry is not None:
            entry.life_cycle = APP_PERSONALIZED | (entry.life_cycle & 0x80)
            ctx.se.registry.put(entry)

    @staticmethod
    def _parse(value: bytes, tag: int, where: str) -> Tlv:
        try:
            obj = decode_one(value)
        except TlvError as exc:
            raise ISOException(0x6A80, f"{where}: {exc}") from None
        if obj.tag != tag:
            raise ISOException(0x6A80, f"{where}: template {obj.tag:X}, expected {tag:X}")
        return obj

    @staticmethod
    def _tlv_dict(value: bytes, dgi: int) -> dict[int, bytes]:
        try:
            return {obj.tag: obj.value for obj in decode(value)}
        except TlvError as exc:
            raise ISOException(0x6A80, f"DGI {dgi:04X}: {exc}") from None

    @staticmethod
    def _amount(value: bytes, where: str) -> int:
        if len(value) != 6:
            raise ISOException(0x6A80, f"{where}: an amount is n12 (6 bytes)")
        try:
            return bcd_to_int(value)
        except ValueError:
            raise ISOException(0x6A80, f"{where}: not BCD") from None

    @staticmethod
    def _unpad_pin_block(value: bytes) -> bytes:
        if len(value) == 16 and value[8] == 0x80 and not any(value[9:]):
            value = value[:8]
        if not PbocApplet._valid_pin_block(value):
            raise ISOException(0x6A80, "not an ISO 9564 format 2 PIN block")
        return value

    @staticmethod
    def _valid_pin_block(block: bytes) -> bool:
        text = block.hex().upper()
        if len(block) != 8 or text[0] != "2":
            return False
        n = int(text[1], 16)
        return 4 <= n <= 12 and text[2 : 2 + n].isdigit() and set(text[2 + n :]) <= {"F"}

    # -- dispatch -----------------------------------------------------------------------------------------
    _HANDLERS: ClassVar[dict[tuple[str, int], str]] = {
        ("prop", 0xA8): "_gpo", ("prop", 0xAE): "_generate_ac", ("prop", 0xCA): "_get_data",
        ("iso", 0xCA): "_get_data", ("iso", 0xB2): "_read_record", ("iso", 0x20): "_verify",
        ("iso", 0x82): "_external_authenticate",
        ("sm", 0xDA): "_put_data", ("sm", 0x1E): "_application_block", ("sm", 0x18): "_application_unblock",
        ("sm", 0x24): "_pin_change_unblock",
    }
    _SM_ONLY: ClassVar[frozenset[int]] = frozenset({0xDA, 0x1E, 0x18, 0x24})

    def process(self, ctx: ApduContext, cmd: CommandApdu) -> bytes | Reply:
        kind = _cla_kind(cmd.cla)
        name = self._HANDLERS.get((kind or "", cmd.ins))
        if name is None:
            if cmd.ins in self._SM_ONLY and kind in ("iso", "prop"):
                raise ISOException(0x6982, f"INS {cmd.ins:02X} needs secure messaging (CLA 04/84)")
            if any(ins == cmd.ins for _, ins in self._HANDLERS):
                raise ISOException(0x6E00, f"CLA {cmd.cla:02X} not supported for INS {cmd.ins:02X}")
            raise ISOException(0x6D00, f"INS {cmd.ins:02X} not supported")
        if not self._state(ctx)["personalised"]:
            raise ISOException(0x6985, "application not personalised")
        result: bytes | Reply = getattr(self, name)(ctx, cmd)
        return result

    # -- shared card data -----------------------------------------------------------------------------------
    @staticmethod
    def _card_objects(ctx: ApduContext) -> dict[int, bytes]:
        """Every primitive data object of the personalised records (first occurrence wins)."""
        flat: dict[int, bytes] = {}
        for _, record in sorted(ctx.data["records"].items()):
            for tag, value in _flatten(decode(record)).items():
                flat.setdefault(tag, value)
        return flat

    @staticmethod
    def _internal(ctx: ApduContext, tag: int) -> bytes:
        return bytes(ctx.data["internal"].get(_hex(tag), b""))

    def _alg(self, ctx: ApduContext) -> emv.Alg:
        template = self._internal(ctx, 0x9F10)
        return emv.ALGORITHM_IDS.get(template[7], "3des") if len(template) == 8 else "3des"

    def _session_key(self, ctx: ApduContext, which: str, atc: int) -> bytes:
        return emv.derive_pboc_session_key(bytes(ctx.data["keys"][which]), atc.to_bytes(2, "big"), self._alg(ctx))

    def _balance(self, ctx: ApduContext) -> int:
        return bcd_to_int(bytes(ctx.data["ecash"]["9F79"]))

    def _account_kind(self, ctx: ApduContext) -> int:
        raw = self._internal(ctx, cps.TAG_ACCOUNT_KIND)
        return raw[0] if raw else cps.ACCOUNT_KIND_CODES["debit+ecash"]

    def _gpo_objects(self, ctx: ApduContext, interface: str) -> dict[int, bytes]:
        gpo = ctx.data["gpo"]
        raw = gpo.get(interface) or gpo.get("contact") or gpo.get("contactless")
        return {obj.tag: obj.value for obj in decode(raw)}

    def _pdol(self, ctx: ApduContext, interface: str) -> bytes:
        fci = ctx.data["fci"]
        raw = fci.get(interface) or fci.get("contact") or fci.get("contactless")
        return _flatten(decode(raw)).get(0x9F38, b"")

    def _cvr(self, ctx: ApduContext, byte1: int, byte2: int = 0) -> bytes:
        flags = ctx.data["flags"]
        session = ctx.session
        if session.get("pin_performed"):
            byte1 |= CVR1_PIN_PERFORMED
        if session.get("pin_failed"):
            byte1 |= CVR1_PIN_FAILED
        if flags["issuer_auth_failed"]:
            byte2 |= CVR2_LAST_ISSUER_AUTH_FAILED
        if flags["online_incomplete"]:
            byte2 |= CVR2_ONLINE_INCOMPLETE
        pin = ctx.data.get("pin")
        if pin and pin.get("counter") == 0:
            byte2 |= CVR2_PIN_LIMIT_EXCEEDED
        byte3 = (min(flags["scripts"], 15) << 4) | (CVR3_SCRIPT_FAILED if flags["script_failed"] else 0)
        return bytes([0x03, byte1, byte2, byte3])

    def _cryptogram(self, ctx: ApduContext, values: dict[int, bytes], aip: bytes, atc: int, cvr: bytes,
                    balance: int) -> tuple[bytes, bytes]:
        """``(AC, IAD)`` over the AC input of ``values`` (terminal data) with the card's AIP and ATC."""
        alg = self._alg(ctx)
        atc_bytes = atc.to_bytes(2, "big")
        sk = self._session_key(ctx, "ac", atc)
        try:
            data = emv.ac_input(dict(values) | {0x82: aip, 0x9F36: atc_bytes}, cvr)
        except CryptoError as exc:  # a PDOL/CDOL without an AC input tag (profile validation prevents it)
            raise ISOException(0x6985, f"AC input incomplete: {exc}") from None
        ac = emv.generate_ac(sk, data, alg)
        iad = build_iad(self._internal(ctx, 0x9F10), cvr, balance, sk, atc_bytes, alg)
        return ac, iad

    def _log_transaction(self, ctx: ApduContext, values: dict[int, bytes], atc: int) -> None:
        log_format = self._internal(ctx, 0x9F4F)
        if not log_format:
            return
        record = dol.build_dol_data(log_format, dict(values) | {0x9F36: atc.to_bytes(2, "big")}, kernel=KERNEL_PBOC)
        ctx.data["txn_log"] = [record, *ctx.data["txn_log"]][: cps.LOG_RECORDS]

    def _start_transaction(self, ctx: ApduContext) -> int:
        """Increment the ATC for a new transaction (6985 and blocked at FFFF); returns the new ATC."""
        data = ctx.data
        if data["atc"] >= ATC_MAX:
            data["blocked"] = True
            raise _KeepChanges(0x6985)
        data["atc"] += 1
        return int(data["atc"])

    # -- GET PROCESSING OPTIONS ------------------------------------------------------------------------------
    def _gpo(self, ctx: ApduContext, cmd: CommandApdu) -> bytes | Reply:
        if cmd.p1 or cmd.p2:
            raise ISOException(0x6A86, "GPO P1 P2 must be 00 00")
        if not cmd.data:
            raise ISOException(0x6700, "GPO without data")
        try:
            template = decode_one(cmd.data)
        except TlvError:
            raise ISOException(0x6700, "GPO data is not one TLV object") from None
        if template.tag != dol.GPO_COMMAND_TEMPLATE:
            raise ISOException(0x6A80, f"GPO template {template.tag:X}, expected 83")
        if "txn" in ctx.session:
            raise ISOException(0x6985, "GPO already done in this selection")
        interface = ctx.interface
        pdol = self._pdol(ctx, interface)
        if len(template.value) != dol.dol_length(pdol):
            raise ISOException(0x6700, f"PDOL data is {len(template.value)} bytes, the PDOL asks for "
                                       f"{dol.dol_length(pdol)}")
        values = dol.split_dol_data(pdol, template.value) if pdol else {}
        ttq = values.get(0x9F66, b"")
        qpboc = interface == "contactless" or (len(ttq) == 4 and bool(ttq[0] & 0x20))
        try:
            if qpboc:
                return self._qpboc(ctx, values)
            return self._contact_gpo(ctx, values)
        except _KeepChanges as keep:
            return Reply(sw=keep.sw)

    def _contact_gpo(self, ctx: ApduContext, values: dict[int, bytes]) -> bytes:
        objects = self._gpo_objects(ctx, "contact")
        atc = self._start_transaction(ctx)
        ctx.session.pop("pin_performed", None)
        ctx.session.pop("pin_failed", None)
        ctx.session["txn"] = {"path": "contact", "atc": atc, "stage": "gpo", "values": values,
                              "aip": objects[0x82]}
        return tlv(0x80, objects[0x82] + objects[0x94])

    def _qpboc(self, ctx: ApduContext, values: dict[int, bytes]) -> bytes:
        ttq = values.get(0x9F66, b"")
        if len(ttq) != 4 or not ttq[0] & 0x20:
            raise ISOException(0x6985, "the reader does not support qPBOC: use another interface")
        try:
            amount = bcd_to_int(values[0x9F02])
        except (KeyError, ValueError):
            raise ISOException(0x6A80, "amount 9F02 missing or not BCD") from None
        data = ctx.data
        objects = self._gpo_objects(ctx, "contactless")
        aip = objects[0x82]
        balance = self._balance(ctx)
        single_limit = bcd_to_int(bytes(data["ecash"]["9F78"]))
        offline_possible = (values.get(0x5F2A) == self._internal(ctx, 0x9F51)
                            and values.get(0x9C, b"\x00") == b"\x00"
                            and amount <= single_limit and amount <= balance and bool(data["icc_key"]))
        if data["blocked"]:
            cid = CID_AAC
        elif ttq[1] & 0x80:
            cid = CID_ARQC
        elif offline_possible:
            cid = CID_TC
        elif ttq[0] & 0x08 or self._account_kind(ctx) == cps.ACCOUNT_KIND_CODES["ecash"]:
            cid = CID_AAC
        else:
            cid = CID_ARQC
        atc = self._start_transaction(ctx)
        if cid == CID_TC:
            balance -= amount
            data["ecash"]["9F79"] = cps.amount_n12(balance)
        cvr = self._cvr(ctx, CVR1_SECOND_NOT_REQUESTED | CVR1_FIRST[cid])
        ac, iad = self._cryptogram(ctx, values, aip, atc, cvr, balance)
        card = self._card_objects(ctx)
        atc_bytes = atc.to_bytes(2, "big")
        ctq = self._internal(ctx, 0x9F6C) or b"\x00\x00"
        head = [Tlv(0x82, aip)]
        if cid == CID_TC:
            head.append(Tlv(0x94, objects[0x94]))
        items = [*head, Tlv(0x9F36, atc_bytes), Tlv(0x57, card[0x57]), Tlv(0x9F10, iad), Tlv(0x9F26, ac)]
        if cid != CID_ARQC:
            items.append(Tlv(0x9F27, bytes([cid])))
        items.append(Tlv(0x5F34, card.get(0x5F34, b"\x00")))
        if cid == CID_TC:
            card_un = ctx.random_bytes(4)
            auth_data = oda.card_auth_related_data(card_un, ctq)
            sdad = oda.sign_fdda(self._icc_private_key(ctx, card), card_un, values[0x9F37], values[0x9F02],
                                 values[0x5F2A], auth_data)
            items += [Tlv(0x9F4B, sdad), Tlv(0x9F69, auth_data)]
            self._log_transaction(ctx, values, atc)
        items += [Tlv(0x9F6C, ctq), Tlv(0x9F5D, cps.amount_n12(balance))]
        ctx.session["txn"] = {"path": "qpboc", "atc": atc, "stage": "online" if cid == CID_ARQC else "done",
                              "values": values, "aip": aip, "arqc": ac if cid == CID_ARQC else None}
        if cid == CID_ARQC:
            self._new_online_transaction(ctx)
        return Tlv.build(0x77, *items).encode()

    def _new_online_transaction(self, ctx: ApduContext) -> None:
        flags = ctx.data["flags"]
        flags["scripts"] = 0
        flags["script_failed"] = False

    def _icc_private_key(self, ctx: ApduContext, card: dict[int, bytes]) -> oda.RsaPrivateKey | sm2.Sm2KeyPair:
        """The fDDA key from its DGIs: SM2 ``d`` (8301) or the RSA CRT components (8201-8205) with the
        public exponent of record tag 9F47."""
        key = ctx.data["icc_key"]
        if f"{cps.DGI_ICC_SM2:04X}" in key:
            d = bytes(key[f"{cps.DGI_ICC_SM2:04X}"])
            return sm2.Sm2KeyPair(d, sm2.public_from_private(d))
        iqmp, dmq1, dmp1, q, p = (int.from_bytes(bytes(key[f"{dgi:04X}"]), "big") for dgi in cps.DGI_ICC_CRT)
        e = int.from_bytes(card.get(0x9F47, b"\x03"), "big")
        d = pow(e, -1, (p - 1) * (q - 1))
        numbers = rsa.RSAPrivateNumbers(p, q, d, dmp1, dmq1, iqmp, rsa.RSAPublicNumbers(e, p * q))
        return oda.RsaPrivateKey(numbers.private_key(unsafe_skip_rsa_key_validation=True))

    # -- READ RECORD, GET DATA ----------------------------------------------------------------------------------
    def _read_record(self, ctx: ApduContext, cmd: CommandApdu) -> bytes:
        sfi, rec = cmd.p2 >> 3, cmd.p1
        if cmd.p2 & 0x07 != 0x04 or not rec or not sfi:
            raise ISOException(0x6A86, "READ RECORD needs P1 = record number, P2 = SFI<<3 | 4")
        if sfi in (cps.LOG_SFI, cps.LOAD_LOG_SFI):
            log = ctx.data["txn_log" if sfi == cps.LOG_SFI else "load_log"]
            if rec > cps.LOG_RECORDS:
                raise ISOException(0x6A83, f"log record {rec} is beyond the log size")
            if rec > len(log):
                raise ISOException(0x6A83, f"log record {rec} is empty")
            return bytes(log[rec - 1])
        records = ctx.data["records"]
        record = records.get(f"{sfi:02X}{rec:02X}")
        if record is None:
            if not any(key.startswith(f"{sfi:02X}") for key in records):
                raise ISOException(0x6A82, f"no file with SFI {sfi}")
            raise ISOException(0x6A83, f"SFI {sfi} has no record {rec}")
        return bytes(record)

    def _get_data(self, ctx: ApduContext, cmd: CommandApdu) -> bytes:
        tag = (cmd.p1 << 8) | cmd.p2
        data = ctx.data
        value: bytes | None
        if tag == 0x9F36:
            value = data["atc"].to_bytes(2, "big")
        elif tag == 0x9F13:
            value = data["last_online_atc"].to_bytes(2, "big")
        elif tag == 0x9F17:
            value = bytes([data["pin"]["counter"]]) if "pin" in data else None
        elif tag in (*ECASH_TAGS, 0x9F74):
            value = data["ecash"].get(_hex(tag))
        elif tag in (0x9F4F, 0xDF4F, 0x9F51, 0x9F14, 0x9F23):
            value = self._internal(ctx, tag) or None
        else:
            value = None
        if value is None:
            raise ISOException(0x6A88, f"GET DATA {tag:04X}: no such data object")
        return tlv(tag, bytes(value))

    # -- VERIFY ----------------------------------------------------------------------------------------------
    def _verify(self, ctx: ApduContext, cmd: CommandApdu) -> bytes | Reply:
        if cmd.p1 != 0x00 or cmd.p2 != 0x80:
            raise ISOException(0x6A86, "VERIFY supports P1 00, P2 80 (offline plaintext PIN) only")
        pin = ctx.data.get("pin")
        if not pin or "block" not in pin:
            raise ISOException(0x6A88, "the card has no offline PIN")
        if not cmd.data:
            return Reply(sw=0x63C0 | pin["counter"]) if pin["counter"] else Reply(sw=0x6983)
        if len(cmd.data) != 8:
            raise ISOException(0x6700, "the PIN block is 8 bytes")
        if pin["counter"] == 0:
            raise ISOException(0x6983, "PIN try limit exceeded")
        if not self._valid_pin_block(cmd.data):
            raise ISOException(0x6A80, "not an ISO 9564 format 2 PIN block")
        ctx.session["pin_performed"] = True
        if hmac.compare_digest(bytes(cmd.data), bytes(pin["block"])):
            pin["counter"] = pin["limit"]
            ctx.session["pin_failed"] = False
            return b""
        pin["counter"] -= 1
        ctx.session["pin_failed"] = True
        return Reply(sw=0x63C0 | pin["counter"])

    # -- GENERATE AC, EXTERNAL AUTHENTICATE -------------------------------------------------------------------
    def _generate_ac(self, ctx: ApduContext, cmd: CommandApdu) -> bytes:
        txn = ctx.session.get("txn")
        if txn is None or txn["path"] != "contact" or txn["stage"] not in ("gpo", "gen1"):
            raise ISOException(0x6985, "GENERATE AC out of sequence")
        requested = cmd.p1 & 0xC0
        if cmd.p2 or cmd.p1 & 0x3F or requested == 0xC0:
            raise ISOException(0x6A86, "GENERATE AC P1 must be 00/40/80 (no CDA), P2 00")
        card = self._card_objects(ctx)
        first = txn["stage"] == "gpo"
        cdol = card.get(0x8C if first else 0x8D, b"")
        if len(cmd.data) != dol.dol_length(cdol):
            raise ISOException(0x6700, f"CDOL{1 if first else 2} data is {len(cmd.data)} bytes, "
                                       f"expected {dol.dol_length(cdol)}")
        values = dol.split_dol_data(cdol, cmd.data) if cdol else {}
        if first:
            return self._first_ac(ctx, txn, requested, values)
        if requested == CID_ARQC:
            raise ISOException(0x6A86, "the 2nd GENERATE AC asks for a TC or an AAC")
        return self._second_ac(ctx, txn, requested, values)

    def _first_ac(self, ctx: ApduContext, txn: dict[str, Any], requested: int, values: dict[int, bytes]) -> bytes:
        data = ctx.data
        byte2 = 0
        if requested == CID_AAC or (data["blocked"] and requested == CID_TC):
            cid = CID_AAC
        elif requested == CID_ARQC:
            cid = CID_ARQC  # also when blocked: the issuer needs an ARQC to send APPLICATION UNBLOCK [M]
        else:
            lower = (self._internal(ctx, 0x9F14) or b"\x00")[0]
            pin = data.get("pin")
            if data["offline_count"] >= lower:
                byte2 |= CVR2_VELOCITY
            if data["last_online_atc"] == 0:
                byte2 |= CVR2_NEW_CARD
            online_reasons = (byte2 or data["flags"]["issuer_auth_failed"] or data["flags"]["online_incomplete"]
                              or (pin and pin.get("counter") == 0)
                              or values.get(0x5F2A) != self._internal(ctx, 0x9F51))
            cid = CID_ARQC if online_reasons else CID_TC
        atc = txn["atc"]
        if cid == CID_ARQC:
            self._new_online_transaction(ctx)
        cvr = self._cvr(ctx, CVR1_SECOND_NOT_REQUESTED | CVR1_FIRST[cid], byte2)
        ac, iad = self._cryptogram(ctx, values, txn["aip"], atc, cvr, self._balance(ctx))
        txn["values1"] = values
        if cid == CID_ARQC:
            txn.update(stage="gen1", arqc=ac)
            data["flags"]["online_incomplete"] = True
        else:
            txn["stage"] = "done"
            if cid == CID_TC:
                data["offline_count"] += 1
                self._log_transaction(ctx, values, atc)
        return tlv(0x80, bytes([cid]) + atc.to_bytes(2, "big") + ac + iad)

    def _second_ac(self, ctx: ApduContext, txn: dict[str, Any], requested: int, values: dict[int, bytes]) -> bytes:
        data = ctx.data
        merged = dict(txn["values1"]) | values
        arc = values.get(0x8A) or txn.get("arc") or b"00"
        issuer_auth_data = values.get(0x91)
        if issuer_auth_data and len(issuer_auth_data) >= 10 and "issuer_auth" not in txn:
            self._check_arpc(ctx, txn, issuer_auth_data[:8], issuer_auth_data[8:10])
        unable_online = arc in UNABLE_ONLINE_ARCS
        issuer_auth = txn.get("issuer_auth")
        upper = (self._internal(ctx, 0x9F23) or b"\x00")[0]
        if data["blocked"] or requested == CID_AAC:
            cid = CID_AAC
        elif unable_online:
            cid = CID_TC if data["offline_count"] < upper else CID_AAC
        elif issuer_auth == "failed" or arc not in APPROVED_ARCS:
            cid = CID_AAC
        else:
            cid = CID_TC
        byte1 = (CVR1_SECOND_TC if cid == CID_TC else 0) | CVR1_FIRST[CID_ARQC]
        byte2 = 0
        if unable_online:
            byte1 |= CVR1_UNABLE_ONLINE
        elif issuer_auth is None:
            byte2 |= CVR2_ISSUER_AUTH_NOT_PERFORMED
        if issuer_auth == "failed":
            byte1 |= CVR1_ISSUER_AUTH_FAILED
        if not unable_online:
            data["last_online_atc"] = txn["atc"]
            if issuer_auth != "failed":
                data["offline_count"] = 0
        elif cid == CID_TC:
            data["offline_count"] += 1
        data["flags"]["online_incomplete"] = False
        cvr = self._cvr(ctx, byte1, byte2)
        atc = txn["atc"]
        ac, iad = self._cryptogram(ctx, merged, txn["aip"], atc, cvr, self._balance(ctx))
        txn["stage"] = "done"
        if cid == CID_TC:
            self._log_transaction(ctx, merged, atc)
        return tlv(0x80, bytes([cid]) + atc.to_bytes(2, "big") + ac + iad)

    def _check_arpc(self, ctx: ApduContext, txn: dict[str, Any], arpc: bytes, arc: bytes) -> bool:
        expected = emv.arpc_method1(self._session_key(ctx, "ac", txn["atc"]), txn["arqc"], arc, self._alg(ctx))
        ok = hmac.compare_digest(expected, arpc)
        txn["issuer_auth"] = "ok" if ok else "failed"
        txn["arc"] = arc
        ctx.data["flags"]["issuer_auth_failed"] = not ok
        return ok

    def _external_authenticate(self, ctx: ApduContext, cmd: CommandApdu) -> bytes | Reply:
        if cmd.p1 or cmd.p2:
            raise ISOException(0x6A86, "EXTERNAL AUTHENTICATE P1 P2 must be 00 00")
        if len(cmd.data) != 10:
            raise ISOException(0x6700, "EXTERNAL AUTHENTICATE data is ARPC (8) || ARC (2)")
        txn = ctx.session.get("txn")
        if txn is None or txn["path"] != "contact" or txn["stage"] != "gen1" or "issuer_auth" in txn:
            raise ISOException(0x6985, "EXTERNAL AUTHENTICATE needs an ARQC first, and runs once")
        if self._check_arpc(ctx, txn, cmd.data[:8], cmd.data[8:10]):
            return b""
        return Reply(sw=0x6300)

    # -- issuer scripts (secure messaging) --------------------------------------------------------------------
    def _script_mac_ok(self, ctx: ApduContext, cmd: CommandApdu) -> tuple[bool, bytes]:
        """Check the script MAC (last 4 data bytes); returns ``(ok, payload)``. 6985 without an ARQC."""
        txn = ctx.session.get("txn")
        if txn is None or not txn.get("arqc"):
            raise ISOException(0x6985, "issuer scripts need an online transaction (ARQC) in this session")
        data = bytes(cmd.data)
        if len(data) < 4:
            raise ISOException(0x6700, "script command without a MAC")
        header = bytes([cmd.cla, cmd.ins, cmd.p1, cmd.p2, len(data)])
        atc = txn["atc"]
        payload, mac = data[:-4], data[-4:]
        expected = emv.issuer_script_mac(self._session_key(ctx, "mac", atc), header, atc.to_bytes(2, "big"),
                                         txn["arqc"], payload, self._alg(ctx))
        ok = hmac.compare_digest(expected, mac)
        flags = ctx.data["flags"]
        if ok:
            flags["scripts"] = min(flags["scripts"] + 1, 15)
        else:
            flags["script_failed"] = True
        return ok, payload

    def _put_data(self, ctx: ApduContext, cmd: CommandApdu) -> bytes | Reply:
        tag = (cmd.p1 << 8) | cmd.p2
        if tag not in ECASH_TAGS:
            raise ISOException(0x6A88, f"PUT DATA {tag:04X} is not supported")
        if len(cmd.data) != 10:
            raise ISOException(0x6700, "PUT DATA of an amount is n12 (6) || MAC (4)")
        ok, value = self._script_mac_ok(ctx, cmd)
        if not ok:
            return Reply(sw=0x6988)
        amount = self._amount(value, f"PUT DATA {tag:X}")
        ecash = ctx.data["ecash"]
        balance = self._balance(ctx)
        if tag == 0x9F79:
            limit = bcd_to_int(bytes(ecash["9F77"]))
            if amount > limit:
                raise ISOException(0x6985, f"new balance {amount} exceeds the balance limit {limit}")
            self._log_load(ctx, cmd, balance, amount)
        elif tag == 0x9F77 and amount < balance:
            raise ISOException(0x6985, f"balance limit {amount} below the balance {balance}")
        ecash[_hex(tag)] = value
        return b""

    def _log_load(self, ctx: ApduContext, cmd: CommandApdu, before: int, after: int) -> None:
        txn = ctx.session["txn"]
        values = dict(txn["values"]) | dict(txn.get("values1", {})) | {0x9F36: txn["atc"].to_bytes(2, "big")}
        record = (bytes([cmd.p1, cmd.p2]) + cps.amount_n12(before) + cps.amount_n12(after)
                  + dol.build_dol_data(self._internal(ctx, 0xDF4F), values, kernel=KERNEL_PBOC))
        ctx.data["load_log"] = [record, *ctx.data["load_log"]][: cps.LOG_RECORDS]

    def _mac_only(self, ctx: ApduContext, cmd: CommandApdu) -> Reply | None:
        if cmd.p1 or cmd.p2:
            raise ISOException(0x6A86, "P1 P2 must be 00 00")
        if len(cmd.data) != 4:
            raise ISOException(0x6700, "the data field is the 4-byte MAC")
        ok, _ = self._script_mac_ok(ctx, cmd)
        return None if ok else Reply(sw=0x6988)

    def _application_block(self, ctx: ApduContext, cmd: CommandApdu) -> bytes | Reply:
        failed = self._mac_only(ctx, cmd)
        if failed:
            return failed
        ctx.data["blocked"] = True
        return b""

    def _application_unblock(self, ctx: ApduContext, cmd: CommandApdu) -> bytes | Reply:
        failed = self._mac_only(ctx, cmd)
        if failed:
            return failed
        ctx.data["blocked"] = False
        return b""

    def _pin_change_unblock(self, ctx: ApduContext, cmd: CommandApdu) -> bytes | Reply:
        if cmd.p1 or cmd.p2 not in (0x00, 0x01):
            raise ISOException(0x6A86, "PIN CHANGE/UNBLOCK: P2 00 (unblock) or 01 (new PIN) only")
        pin = ctx.data.get("pin")
        if not pin or "block" not in pin:
            raise ISOException(0x6A88, "the card has no offline PIN")
        alg = self._alg(ctx)
        expected_len = 4 if cmd.p2 == 0 else (8 if alg == "3des" else 16) + 4
        if len(cmd.data) != expected_len:
            raise ISOException(0x6700, f"PIN CHANGE/UNBLOCK P2 {cmd.p2:02X} takes {expected_len} bytes")
        ok, enciphered = self._script_mac_ok(ctx, cmd)
        if not ok:
            return Reply(sw=0x6988)
        if cmd.p2 == 0x01:
            key = self._session_key(ctx, "enc", ctx.session["txn"]["atc"])
            clear = ecb_decrypt("3des" if alg == "3des" else "sm4", key, enciphered)
            pin["block"] = self._unpad_pin_block(clear)
        pin["counter"] = pin["limit"]
        return b""

    def uninstall(self, ctx: ApduContext) -> None:
        """Nothing outside ``ctx.data``."""


class _KeepChanges(Exception):
    """Answer ``sw`` and keep this APDU's changes (ISOException would roll them back)."""

    def __init__(self, sw: int) -> None:
        super().__init__(f"{sw:04X}")
        self.sw = sw


def _flatten(objects: list[Tlv]) -> dict[int, bytes]:
    flat: dict[int, bytes] = {}
    for obj in objects:
        if obj.constructed:
            for tag, value in _flatten(list(obj.children)).items():
                flat.setdefault(tag, value)
        else:
            flat.setdefault(obj.tag, obj.value)
    return flat


PACKAGE = PackageInfo(package_aid=PACKAGE_AID, version="1.0", modules={MODULE_AID: PbocApplet})
"""The load file descriptor the default catalog registers (``drivers/se/catalog_default.py``)."""
