"""The issuer host: authorises its cards' online transactions in the switch dialect, one TCP listener per issuer.

Messages (CUPS switch dialect, domain brief section 5; framing and plumbing :mod:`.iso_tcp`):

=========  ==========================================================================================
0100/0200  authorisation. Processing code (field 3) 00 purchase, 31 balance inquiry (balance in field
           54), 60/62/63 e-cash load (designated / non-designated account / cash [M]; the lab has no
           cash drawer, so all three take the load amount out of the cardholder's account into the
           card's e-cash float). 0100 is handled exactly like 0200 (no separate hold and completion).
0400/0420  reversal of an authorisation, found through field 90 (original STAN and transmission time)
           and field 41; idempotent.
0800       network management (sign-on / echo): 0810 with 00.
=========  ==========================================================================================

**Checks of an authorisation, in order** (first failure wins):

1. format: PAN, processing code and STAN present, field 55 a valid TLV list with every AC input
   tag when present, 9F10 a PBOC IAD -> **30**; processing code other than 00/31/60/62/63 -> **40**;
2. card on file (``cards``, this issuer) -> else **14**;
3. the cryptogram (when field 55 is present): algorithm from the IAD algorithm id, session key method
   from the CVN (:func:`~paylab.lab.protocol.crypto.emv.alg_for_iad`, ``session_method_for_cvn``),
   ARQC over ``ac_input(9F02 9F03 9F1A 95 5F2A 9A 9C 9F37 82 9F36, CVR)`` with the AC session key of the
   card's MK-AC (derived once per card and cached; a card seeded without a profile uses the issuer keys
   of the issuer's first profile in the same BIN: one set of TEST issuer keys per BIN). Mismatch,
   unknown CVN, or (for a load) an IDD balance MAC that does not verify -> **05** with field 44
   ``BAD CRYPTOGRAM``. The brief allows A0 here; 05 is used because A0 means a *message* MAC error to
   every POS and acquirer;
4. ATC replay: ATC <= the highest ATC seen online for the card (``cards.last_atc``) -> **05** with
   field 44 ``ATC REPLAY`` and no ARPC. A verified ATC becomes the new ``last_atc`` whatever the outcome;
5. expiry (card file ``YYMMDD`` or the presented field 14 ``YYMM``) -> **54**;
6. card status: ``lost`` -> **41**, ``stolen`` -> **43** ("stolen card, pick up"),
   ``blocked`` -> **05**; all three send an APPLICATION BLOCK script (below);
7. amount: 9F02 differs from field 4 -> **13**; a card without an account of the right kind (online
   purchase or load on a pure e-cash card) -> **40**;
8. limits: the single-transaction limit (:attr:`IssuerHost.single_limit_fen` for every card, else
   the configuration's ``single_limit_fen`` for the kind of account the amount moves: the card's
   ``debit``/``credit`` account for a purchase, ``ecash`` for a load; none by default) or the card's
   daily limit (``cards.daily_limit``, the day's approved purchases and loads) ->
   **61**; a load whose new e-cash balance would exceed the card's balance limit 9F77 -> **61**;
9. funds: the ledger refuses the entry (:class:`~.ledger.InsufficientFunds`) -> **51**.

**Money** (:mod:`.ledger`, one DB transaction with the authorisation log, the stored reply and the card
update): a purchase debits the cardholder account and credits ``issuer:<name>:settlement`` (the issuer
now owes the switch); a load debits the cardholder account and credits the card's ``ecash-float``.
Entry ids derive from the log key: ``issuer:<name>:auth:<tid>:<day>:<stan>``, the compensating entry of
a reversal ``issuer:<name>:reversal:<tid>:<day>:<stan>`` (reference = RRN).

**Response field 55** (when the ARQC verified): ``91`` = ARPC method 1 with the AC session key (brief
pitfall 2) over the ARC = the response code in ASCII (``"00"`` = ``3030``) || ARC; and ``72`` issuer
scripts ``{9F18 script id (00 00 || ATC), 86 command...}``, each command MACed with
:func:`~paylab.lab.protocol.crypto.emv.issuer_script_mac` under the MAC session key (MK-MAC, PBOC ATC
derivation) over ``CLA INS P1 P2 Lc || ATC || ARQC || data``:

* e-cash load: ``04 DA 9F79 0A <new balance n12> <MAC4>``; the new balance is the card's balance from
  the IAD's issuer discretionary data (``0A 01 <balance 5 bytes> <MAC4>``, the MAC checked with the AC
  session key as the paylab PBOC applet computes it) plus the load amount, or the issuer's e-cash float
  when the IAD has no IDD;
* APPLICATION BLOCK ``84 1E 00 00 04 <MAC4>`` for a lost/stolen/blocked card (a lost phone), and
  APPLICATION UNBLOCK ``84 18 00 00 04 <MAC4>`` on the next online transaction once the card is
  ``active`` again (``issuer_card_state.app_blocked`` remembers that a block was sent).

**Duplicates**: the log key is ``(role "issuer:<name>", TID, STAN, day of field 7)``. The same key with
the same request (digest of every field but 7) is answered with the stored response bytes and no second
debit; with a different request -> **94**.

**Reversals**: approved original -> compensating entry, status ``reversed``, **00**; repeated -> **00**
again; declined original -> **00** (nothing to undo); unknown original -> **25**, and a ``reversed``
placeholder row is written under the original's key, so a repeat answers 25 again and an original that
arrives *after* its reversal (a stalled request) is declined (05, ``REVERSED``) instead of debiting.

Test knobs: :attr:`IssuerHost.stall_s` (sleep before processing an authorisation) and
:attr:`IssuerHost.reply_delay_s` (sleep after processing, before answering) make the issuer slow for
the switch's timeout path; :attr:`IssuerHost.received` lists ``(MTI, STAN, TID)`` of recent messages.
No PAN, track, key or cryptogram is ever logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from ..protocol.crypto import emv
from ..protocol.errors import CryptoError, Iso8583Error, ProtocolError
from ..protocol.iso8583 import Iso8583Message, decode_message, encode_message, field55_decode, response_to
from ..protocol.masking import mask_pan
from ..protocol.tlv import Tlv
from .config import IssuerConfig
from .context import BackendContext
from .iso_tcp import HostDb, IsoServer, SeenKeys, day_of_field7, format_error_reply, local_time, request_digest
from .issuer_models import IssuerCardState, IssuerReply
from .ledger import InsufficientFunds, LedgerError, issuer_account
from .models import Authorization, Card

log = logging.getLogger("paylab.backend.issuer")

PURCHASE, INQUIRY, LOAD = "purchase", "inquiry", "load"
TXN_TYPES: dict[str, str] = {"00": PURCHASE, "31": INQUIRY, "60": LOAD, "62": LOAD, "63": LOAD}
"""Processing code (first two digits of field 3) -> transaction type [M for 60/62/63]."""
LOAD_TYPES_9C = frozenset({b"\x60", b"\x62", b"\x63"})
"""Transaction type 9C of an e-cash load: designated account, non-designated account, cash [M]."""
REVERSAL_MTIS = frozenset({"0400", "0401", "0420", "0421"})
AUTH_MTIS = frozenset({"0100", "0200"})
REQUIRED_ICC_TAGS = (0x9F26, 0x9F10, 0x9F36, *(tag for tag, _ in emv.AC_INPUT_TAGS))
IDD_BALANCE_TYPE = 0x01
"""[paylab] IDD type byte of the PBOC applet: ``01 || balance (5 bytes BCD) || MAC4`` (drivers/se/applets/pboc)."""

_AUTH = Authorization.__table__
_REPLY = IssuerReply.__table__
_STATE = IssuerCardState.__table__
_CARD = Card.__table__
# hot-path statements, built once (SQLAlchemy caches their compiled form)
_SELECT_PRIOR = select(_AUTH.c.id, _AUTH.c.mti).where(
    _AUTH.c.role == bindparam("role"), _AUTH.c.tid == bindparam("tid"), _AUTH.c.stan == bindparam("stan"),
    _AUTH.c.batch == bindparam("batch"))
_SELECT_STANS = select(_AUTH.c.stan).where(_AUTH.c.role == bindparam("role"), _AUTH.c.tid == bindparam("tid"),
                                           _AUTH.c.batch == bindparam("batch"))
_SELECT_REPLY = select(_REPLY.c.request_hash, _REPLY.c.response).where(
    _REPLY.c.authorization_id == bindparam("auth_id"))
_SELECT_CARD = select(_CARD).where(_CARD.c.pan == bindparam("pan"))
_UPDATE_ATC = update(_CARD).where(_CARD.c.pan == bindparam("c_pan")).values(last_atc=bindparam("c_atc"))
_SELECT_STATE = select(_STATE).where(_STATE.c.pan == bindparam("pan"))
_INSERT_STATE = insert(_STATE).values(pan=bindparam("s_pan"), app_blocked=bindparam("s_blocked"),
                                      day=bindparam("s_day"), day_total=bindparam("s_total"),
                                      scripts_sent=bindparam("s_scripts"))
_UPDATE_STATE = update(_STATE).where(_STATE.c.pan == bindparam("s_pan")).values(
    app_blocked=bindparam("s_blocked"), day=bindparam("s_day"), day_total=bindparam("s_total"),
    scripts_sent=_STATE.c.scripts_sent + bindparam("s_scripts"))
_INSERT_AUTH = insert(_AUTH)
_INSERT_REPLY = insert(_REPLY)


@dataclass
class _CardKeys:
    """Cached per card: the ICC master keys (algorithm included) and the e-cash balance limit 9F77."""

    keys: emv.CardKeys
    balance_limit: int | None


@dataclass
class _CardState:
    """The issuer's cached view of an ``issuer_card_state`` row."""

    app_blocked: bool = False
    day: str = ""
    day_total: int = 0
    in_db: bool = False


@dataclass
class _Outcome:
    """What an authorisation decided."""

    rc: str
    note: str = ""
    icc: list[Tlv] = field(default_factory=list)
    balance: int | None = None
    ledger_entry: str | None = None
    day_amount: int = 0
    state: _CardState | None = None


class _Declined(Exception):
    def __init__(self, rc: str, note: str = "") -> None:
        super().__init__(rc)
        self.rc = rc
        self.note = note


class IssuerHost:
    """One issuer's host (module docstring): ``await start()`` listens, ``handle`` answers one message."""

    def __init__(self, ctx: BackendContext, issuer: IssuerConfig, *, single_limit_fen: int | None = None) -> None:
        self.ctx = ctx
        self.issuer = issuer
        self.name = issuer.name
        self.role = f"issuer:{issuer.name}"
        self.settlement_account = issuer_account(issuer.name, "settlement")
        self.single_limit_fen = single_limit_fen
        self._seed_kinds = {seed.pan: seed.kind for seed in issuer.accounts if seed.kind != "ecash"}
        self.stall_s = 0.0
        self.reply_delay_s = 0.0
        self.received: deque[tuple[str, str, str]] = deque(maxlen=1000)
        self.server: IsoServer | None = None
        self._keys: dict[str, _CardKeys] = {}
        self._states: dict[str, _CardState] = {}
        self.db = HostDb(ctx.engine, on_abort=self._forget)
        self._seen = SeenKeys(self._logged_stans)

    # -- lifecycle --------------------------------------------------------------------------------------
    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen on ``host:port`` (0 = ephemeral); returns the bound address."""
        self.server = IsoServer(f"issuer {self.name}", "switch", self.handle, host=host, port=port)
        return await self.server.start()

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)``."""
        if self.server is None:
            raise RuntimeError(f"issuer {self.name} is not started")
        return self.server.address

    async def stop(self) -> None:
        """Stop listening and close the connections."""
        if self.server is not None:
            await self.server.stop()
        await self.db.close()

    # -- dispatch -----------------------------------------------------------------------------------------
    async def handle(self, raw: bytes) -> bytes | None:
        """Answer one switch-dialect message (raw, length prefix excluded)."""
        try:
            msg = decode_message(raw, "switch")
        except Iso8583Error as exc:
            log.warning("issuer %s: format error: %s", self.name, exc)
            return format_error_reply(raw, "switch")
        self.received.append((msg.mti, str(msg.fields.get(11, "")), str(msg.fields.get(41, "")).strip()))
        try:
            return await self._dispatch(msg)
        except Exception:
            log.exception("issuer %s: %s STAN %s failed: 96", self.name, msg.mti, msg.fields.get(11))
            return self._encode(response_to(msg, "96"))

    async def _dispatch(self, msg: Iso8583Message) -> bytes:
        if msg.mti in AUTH_MTIS:
            if self.stall_s:
                await asyncio.sleep(self.stall_s)
            answer = await self.authorize_batched(msg)
            if self.reply_delay_s:
                await asyncio.sleep(self.reply_delay_s)
            return answer
        if msg.mti in REVERSAL_MTIS:
            return self.reverse(msg)
        if msg.mti == "0800":
            return self._encode(response_to(msg, "00", extra={70: msg.fields[70]} if 70 in msg.fields else None))
        return self._encode(response_to(msg, "12"))

    @staticmethod
    def _encode(msg: Iso8583Message) -> bytes:
        return encode_message(msg, "switch")

    # -- authorisation ------------------------------------------------------------------------------------
    def _logged_stans(self, tid: str, day: int) -> list[str]:
        with self.db.read() as s:
            return list(s.scalars(_SELECT_STANS, {"role": self.role, "tid": tid, "batch": day}))

    def _card_state(self, s: Session, pan: str) -> _CardState:
        state = self._states.get(pan)
        if state is None:
            row = s.execute(_SELECT_STATE, {"pan": pan}).first()
            state = (_CardState(bool(row.app_blocked), row.day, int(row.day_total), True) if row is not None
                     else _CardState())
            self._states[pan] = state
        return state

    def authorize(self, msg: Iso8583Message) -> bytes:
        """Decide a 0100/0200 (module docstring); returns the encoded response. Its own transaction."""
        bad = self._malformed(msg)
        if bad is not None:
            return bad
        with self.db.write() as s:
            raw, after = self._authorize_in(s, msg)
        if after is not None:  # after the commit: the in-memory views follow the database
            after()
        return raw

    async def authorize_batched(self, msg: Iso8583Message) -> bytes:
        """:meth:`authorize` through the host's group commit (one transaction for the concurrent requests)."""
        bad = self._malformed(msg)
        if bad is not None:
            return bad

        def job(s: Session) -> bytes:
            raw, after = self._authorize_in(s, msg)
            if after is not None:  # later jobs of the batch see it; a failed COMMIT drops it (_forget)
                after()
            return raw

        return await self.db.batched(job)

    def _forget(self) -> None:
        """A group commit failed: drop the in-memory views; they reload from the database."""
        self._states.clear()
        self._seen = SeenKeys(self._logged_stans)

    def _malformed(self, msg: Iso8583Message) -> bytes | None:
        f = msg.fields
        if not (isinstance(f.get(2), str) and isinstance(f.get(11), str) and isinstance(f.get(3), str)):
            return self._encode(response_to(msg, "30"))
        return None

    def _authorize_in(self, s: Session, msg: Iso8583Message) -> tuple[bytes, Callable[[], None] | None]:
        """The decision and its rows in ``s``; returns the answer and what to do once ``s`` committed."""
        f = msg.fields
        pan, stan, code = str(f[2]), str(f[11]), str(f[3])
        tid = _text(f.get(41)).strip()[:8]
        now = self.ctx.clock()
        day = day_of_field7(f.get(7), now)
        digest = request_digest(msg)
        if (tid, day, stan) in self._seen:
            prior = s.execute(_SELECT_PRIOR, {"role": self.role, "tid": tid, "stan": stan, "batch": day}).first()
            if prior is not None:
                return self._duplicate(s, msg, prior, digest), None
        outcome = self._decide(s, msg, pan, code, day, now)
        response = self._response(msg, outcome)
        raw = self._encode(response)
        auth_id = s.execute(_INSERT_AUTH, {
            "role": self.role, "tid": tid, "mid": _text(f.get(42)).strip()[:15] or None, "stan": stan,
            "batch": day, "rrn": _text(f.get(37)) or None, "pan_masked": mask_pan(pan),
            "amount": _amount(f.get(4)) or 0, "currency": _text(f.get(49)) or "156", "mti": msg.mti,
            "processing_code": code, "response_code": outcome.rc,
            "auth_code": _text(response.fields.get(38)) or None,
            "status": "approved" if outcome.rc == "00" else "declined", "ledger_entry_id": outcome.ledger_entry,
            "created": now,
        }).inserted_primary_key[0]
        s.execute(_INSERT_REPLY, {"authorization_id": auth_id, "request_hash": digest, "response": raw})

        def after() -> None:
            self._seen.add(tid, day, stan)
            if outcome.state is not None:
                self._states[pan] = outcome.state
            if outcome.rc != "00":
                log.info("issuer %s: %s STAN %s TID %s card %s declined %s %s", self.name, msg.mti, stan, tid,
                         mask_pan(pan), outcome.rc, outcome.note)

        return raw, after

    def _duplicate(self, s: Session, msg: Iso8583Message, prior: Any, digest: str) -> bytes:
        if prior.mti in REVERSAL_MTIS:  # the reversal came first: never debit afterwards
            return self._encode(response_to(msg, "05", extra={44: "REVERSED"}))
        reply = s.execute(_SELECT_REPLY, {"auth_id": prior.id}).first()
        if reply is not None and reply.request_hash == digest:
            return bytes(reply.response)
        log.info("issuer %s: duplicate STAN %s TID %s with another message: 94", self.name,
                 msg.fields.get(11), _text(msg.fields.get(41)).strip())
        return self._encode(response_to(msg, "94"))

    def _response(self, msg: Iso8583Message, outcome: _Outcome) -> Iso8583Message:
        extra: dict[int, str | bytes] = {}
        if outcome.rc == "00" and msg.fields.get(3, "")[:2] != "31":
            extra[38] = f"{self.ctx.rng.randrange(1_000_000):06d}"
        if outcome.note:
            extra[44] = outcome.note[:25]
        if outcome.balance is not None:
            sign = "C" if outcome.balance >= 0 else "D"
            extra[54] = f"1002156{sign}{abs(outcome.balance):012d}"
        if outcome.icc:
            extra[55] = b"".join(obj.encode() for obj in outcome.icc)
        return response_to(msg, outcome.rc, extra=extra)

    def _decide(self, s: Session, msg: Iso8583Message, pan: str, code: str, day: int, now: float) -> _Outcome:
        f = msg.fields
        txn = TXN_TYPES.get(code[:2])
        if txn is None:
            return _Outcome("40", "PROCESSING CODE")
        amount = _amount(f.get(4))
        if txn == INQUIRY:
            amount = amount or 0
        elif amount is None:
            return _Outcome("30", "AMOUNT MISSING")
        elif amount <= 0:
            return _Outcome("13")
        card = s.execute(_SELECT_CARD, {"pan": pan}).first()
        if card is None or card.issuer != self.name:
            return _Outcome("14")
        icc: dict[int, bytes] | None = None
        if isinstance(f.get(55), bytes):
            try:
                icc = {obj.tag: obj.value for obj in field55_decode(f[55])}
            except Iso8583Error:
                return _Outcome("30", "FIELD 55")
        elif txn == LOAD:
            return _Outcome("30", "LOAD NEEDS FIELD 55")
        state = self._card_state(s, pan)
        app_blocked = state.app_blocked
        outcome = _Outcome("00")
        crypto: _Crypto | None = None
        scripts: list[bytes] = []
        try:
            if icc is not None:
                crypto = self._verify(card, icc, txn)
                if crypto.atc_int <= card.last_atc:
                    return _Outcome("05", "ATC REPLAY")
                s.execute(_UPDATE_ATC, {"c_pan": pan, "c_atc": crypto.atc_int})
                if txn != INQUIRY and _bcd_int(icc[0x9F02]) != amount:
                    raise _Declined("13", "AMOUNT MISMATCH")
            if _expired(card.expiry, f.get(14), now):
                raise _Declined("54")
            status = card.status
            if status in ("lost", "stolen", "blocked"):
                if crypto is not None:
                    scripts.append(crypto.script(0x84, 0x1E))
                    app_blocked = True
                raise _Declined({"lost": "41", "stolen": "43"}.get(status, "05"), status.upper())
            if app_blocked and crypto is not None:
                scripts.append(crypto.script(0x84, 0x18))
                app_blocked = False
            outcome = self._money(s, msg, card, txn, amount, day, state, crypto, scripts)
        except _Declined as declined:
            outcome = _Outcome(declined.rc, declined.note)
        if crypto is not None:
            outcome.icc.insert(0, Tlv(0x91, crypto.arpc(outcome.rc.encode("ascii")) + outcome.rc.encode("ascii")))
            if scripts:
                outcome.icc.append(Tlv.build(0x72, Tlv(0x9F18, b"\x00\x00" + crypto.atc),
                                             *(Tlv(0x86, cmd) for cmd in scripts)))
        outcome.state = self._save_state(s, pan, state, app_blocked, day, outcome.day_amount, len(scripts),
                                         card.daily_limit is not None)
        return outcome

    def _money(self, s: Session, msg: Iso8583Message, card: Any, txn: str, amount: int, day: int,
               state: _CardState, crypto: _Crypto | None, scripts: list[bytes]) -> _Outcome:
        account = card.account_id
        if txn == INQUIRY:
            if account is None:
                raise _Declined("40", "NO ACCOUNT")
            return _Outcome("00", balance=self.ctx.ledger.spendable(account, s))
        if account is None:
            raise _Declined("40", "NO ACCOUNT")
        limit = self.single_limit_fen
        if limit is None:
            limit = self.issuer.single_limit("ecash" if txn == LOAD else self._seed_kinds.get(card.pan, ""))
        if limit is not None and amount > limit:
            raise _Declined("61", "SINGLE LIMIT")
        used = state.day_total if state.day == str(day) else 0
        if card.daily_limit is not None and used + amount > card.daily_limit:
            raise _Declined("61", "DAILY LIMIT")
        tid = _text(msg.fields.get(41)).strip()[:8]
        entry_id = f"issuer:{self.name}:auth:{tid}:{day}:{msg.fields[11]}"
        if txn == LOAD:
            ecash_account = card.ecash_account_id
            if ecash_account is None or crypto is None:
                raise _Declined("40", "NO E-CASH")
            balance = crypto.card_balance
            if balance is None:
                balance = self.ctx.ledger.available(ecash_account, s)
            new_balance = balance + amount
            limit = crypto.balance_limit
            if limit is not None and new_balance > limit:
                raise _Declined("61", "E-CASH BALANCE LIMIT")
            lines = [(account, amount), (ecash_account, -amount)]
            kind, memo = "ecash-load", "e-cash load"
        else:
            lines = [(account, amount), (self.settlement_account, -amount)]
            kind, memo = "purchase", "purchase authorisation"
        try:
            self.ctx.ledger.post(entry_id, lines, kind=kind, memo=memo, reference=_text(msg.fields.get(37)) or None,
                                 session=s)
        except InsufficientFunds:
            raise _Declined("51") from None
        outcome = _Outcome("00", ledger_entry=entry_id, day_amount=amount)
        if txn == LOAD and crypto is not None:
            scripts.insert(0, crypto.put_data(0x9F79, new_balance))
        return outcome

    def _save_state(self, s: Session, pan: str, state: _CardState, app_blocked: bool, day: int, amount: int,
                    scripts: int, has_daily_limit: bool) -> _CardState | None:
        """The card's new state, written to ``issuer_card_state`` when it matters: the day's total of a
        card with a daily limit, or the application block flag. Returns None when nothing changed."""
        today = str(day)
        total = (state.day_total if state.day == today else 0) + amount
        new = _CardState(app_blocked, today, total, state.in_db)
        track_total = has_daily_limit and amount
        if app_blocked == state.app_blocked and not track_total and not scripts:
            return None
        values = {"s_pan": pan, "s_blocked": app_blocked, "s_day": today, "s_total": total, "s_scripts": scripts}
        if state.in_db:
            s.execute(_UPDATE_STATE, values)
        else:
            s.execute(_INSERT_STATE, values)
            new.in_db = True
        return new

    # -- cryptography -------------------------------------------------------------------------------------
    def _card_keys(self, pan: str, psn: str, profile_name: str | None) -> _CardKeys:
        cached = self._keys.get(pan)
        if cached is None:
            profiles = self.issuer.load_profiles()
            profile = profiles.get(profile_name) if profile_name else None
            if profile is None:  # a card seeded without a profile: the issuer keys of its BIN
                profile = next((p for p in profiles.values() if _same_bin(p.pan, pan, self.issuer.bins)), None)
                if profile is None:
                    raise _Declined("05", "NO CARD KEYS")
                limit = None
            else:
                limit = profile.ecash.balance_limit
            imk = self.issuer.issuer_keys(profile.name)
            cached = _CardKeys(emv.CardKeys.from_imk(imk, pan, psn), limit)
            self._keys[pan] = cached
        return cached

    def _verify(self, card: Any, icc: dict[int, bytes], txn: str) -> _Crypto:
        missing = [tag for tag in REQUIRED_ICC_TAGS if tag not in icc]
        if missing:
            raise _Declined("30", "ICC DATA MISSING")
        try:
            iad = emv.parse_iad(icc[0x9F10])
            cvn = emv.profile_for_cvn(iad.cvn)
        except ProtocolError:
            raise _Declined("30", "IAD") from None
        except CryptoError:
            raise _Declined("05", "CVN NOT SUPPORTED") from None
        if cvn.session_method != "pboc" or cvn.arpc_method != 1:
            raise _Declined("05", "CVN NOT SUPPORTED")
        if (txn == LOAD) != (icc[0x9C][:1] in LOAD_TYPES_9C):
            raise _Declined("12", "TRANSACTION TYPE")
        card_keys = self._card_keys(card.pan, card.psn or "00", card.profile)
        alg = emv.alg_for_iad(iad)
        if alg != card_keys.keys.alg:
            raise _Declined("05", "BAD CRYPTOGRAM")
        atc = icc[0x9F36]
        try:
            sk = emv.derive_ac_session_key(card_keys.keys.mk_ac, atc, "pboc", alg)
            data = emv.ac_input(icc, iad.cvr)
            good = emv.generate_ac(sk, data, alg) == icc[0x9F26]
        except CryptoError:
            raise _Declined("30", "ICC DATA") from None
        if not good:
            raise _Declined("05", "BAD CRYPTOGRAM")
        balance = None
        if txn == LOAD and iad.idd is not None and iad.idd[:1] == bytes([IDD_BALANCE_TYPE]) and len(iad.idd) == 10:
            balance5, mac = iad.idd[1:6], iad.idd[6:10]
            if emv.generate_ac(sk, iad.idd[:6] + atc, alg)[:4] != mac:
                raise _Declined("05", "BAD CRYPTOGRAM")
            balance = _bcd_int(balance5)
        arpc_key = sk if cvn.arpc_key == "sk" else card_keys.keys.mk_ac
        return _Crypto(card_keys.keys, alg, atc, icc[0x9F26], arpc_key, balance, card_keys.balance_limit)

    # -- reversal -----------------------------------------------------------------------------------------
    def reverse(self, msg: Iso8583Message) -> bytes:
        """Reverse an authorisation (module docstring); returns the encoded 0410/0430."""
        f = msg.fields
        original = _text(f.get(90))
        if len(original) >= 20:
            stan, orig_time = original[4:10], original[10:20]
        else:
            stan, orig_time = _text(f.get(11)), _text(f.get(7))
        tid = _text(f.get(41)).strip()[:8]
        if not stan:
            return self._encode(response_to(msg, "30"))
        now = self.ctx.clock()
        day = day_of_field7(orig_time, now)
        touched: str | None = None
        with self.db.write() as s:
            row = s.execute(select(_AUTH).where(_AUTH.c.role == self.role, _AUTH.c.tid == tid,
                                                _AUTH.c.stan == stan, _AUTH.c.batch == day)).first()
            if row is None:
                pan = _text(f.get(2))
                s.execute(insert(_AUTH).values(
                    role=self.role, tid=tid, mid=_text(f.get(42)).strip()[:15] or None, stan=stan, batch=day,
                    rrn=_text(f.get(37)) or None, pan_masked=mask_pan(pan) if pan else None,
                    amount=_amount(f.get(4)) or 0, currency=_text(f.get(49)) or "156", mti=msg.mti,
                    processing_code=_text(f.get(3)) or None, response_code="25", status="reversed", created=now))
                rc = "25"
            elif row.mti in REVERSAL_MTIS:
                rc = "25"
            else:
                rc = "00"
                if row.status == "approved" and row.ledger_entry_id:
                    try:
                        touched = self._compensate(s, row, now)
                    except LedgerError as exc:
                        log.error("issuer %s: reversal of STAN %s TID %s failed: %s", self.name, stan, tid, exc)
                        rc = "96"
        if row is None:
            self._seen.add(tid, day, stan)
            log.info("issuer %s: reversal of unknown STAN %s TID %s: 25", self.name, stan, tid)
        if touched is not None:
            self._states.pop(touched, None)  # reloaded from the table next time
        return self._encode(response_to(msg, rc))

    def _compensate(self, s: Session, row: Any, now: float) -> str | None:
        """Post the compensating entry, mark the row reversed; returns the card's PAN if its state changed."""
        entry = self.ctx.ledger.entry(row.ledger_entry_id, s)
        if entry is None:
            raise LedgerError(f"entry {row.ledger_entry_id} of the original is missing")
        reversal_id = entry.id.replace(":auth:", ":reversal:", 1)
        self.ctx.ledger.post(reversal_id, [(account, -amount) for account, amount in entry.lines], kind="reversal",
                             memo=f"reversal of {entry.id}", reference=row.rrn, session=s)
        s.execute(update(_AUTH).where(_AUTH.c.id == row.id).values(status="reversed"))
        # give the amount back to the day's total when the original was today (same business day)
        if str(row.batch) != local_time(now).strftime("%Y%m%d"):
            return None
        card_pan = self._pan_of_entry(s, entry.lines)
        if card_pan is not None:
            s.execute(update(_STATE).where(_STATE.c.pan == card_pan, _STATE.c.day == str(row.batch))
                      .values(day_total=_STATE.c.day_total - row.amount))
        return card_pan

    @staticmethod
    def _pan_of_entry(s: Session, lines: tuple[tuple[str, int], ...]) -> str | None:
        accounts = [account for account, amount in lines if amount > 0]
        if not accounts:
            return None
        return s.execute(select(_CARD.c.pan).where(_CARD.c.account_id == accounts[0])).scalar()


@dataclass
class _Crypto:
    """A verified ARQC and what answering it needs (never logged)."""

    keys: emv.CardKeys
    alg: emv.Alg
    atc: bytes
    arqc: bytes
    arpc_key: bytes
    card_balance: int | None
    balance_limit: int | None

    @property
    def atc_int(self) -> int:
        return int.from_bytes(self.atc, "big")

    def arpc(self, arc: bytes) -> bytes:
        return emv.arpc_method1(self.arpc_key, self.arqc, arc, self.alg)

    def script(self, cla: int, ins: int, p1: int = 0, p2: int = 0, data: bytes = b"") -> bytes:
        """One MACed script command ``CLA INS P1 P2 Lc data MAC4`` (Lc counts the MAC)."""
        header = bytes([cla, ins, p1, p2, len(data) + 4])
        mac_sk = emv.derive_pboc_session_key(self.keys.mk_mac, self.atc, self.alg)
        return header + data + emv.issuer_script_mac(mac_sk, header, self.atc, self.arqc, data, self.alg)

    def put_data(self, tag: int, amount: int) -> bytes:
        """PUT DATA of an e-cash amount (n12), e.g. ``04 DA 9F79 0A <balance> <MAC4>``."""
        return self.script(0x04, 0xDA, tag >> 8, tag & 0xFF, bytes.fromhex(f"{amount:012d}"))


# -- helpers ----------------------------------------------------------------------------------------------


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _amount(value: object) -> int | None:
    return int(value) if isinstance(value, str) and value.isdigit() else None


def _bcd_int(value: bytes) -> int:
    text = value.hex()
    if not text.isdigit():
        raise _Declined("30", "BCD")
    return int(text or "0")


def _same_bin(a: str, b: str, bins: list[str]) -> bool:
    return any(a.startswith(x) and b.startswith(x) for x in bins)


def _expired(card_expiry: str | None, presented: object, now: float) -> bool:
    today = local_time(now)
    if card_expiry and len(card_expiry) == 6 and card_expiry.isdigit() and card_expiry < today.strftime("%y%m%d"):
        return True
    return isinstance(presented, str) and len(presented) == 4 and presented.isdigit() \
        and presented < today.strftime("%y%m")
