"""The acquirer host: POS terminals connect here (UnionPay POS dialect), requests go on to the switch.

One TCP listener in the ``cup-pos`` dialect (2-byte length, TPDU + header, BCD fields, field-64 CUP ECB
MAC; domain brief section 5); each terminal connection is handled in order, one message at a time.
Requests are forwarded to the switch in the switch dialect over one multiplexed connection.

**Terminal checks**, for every message but a sign-on: field 41 must name a configured terminal and
the terminal must be signed on -> else **97** (terminal not registered / not signed on); field 64 must
verify under the terminal's session MAK -> else **A0**, and the request goes no further; field 42 must
be the terminal's MID -> else **03**. Answers with 97, A0 and 30 carry no field 64 (the acquirer has
no MAK it could trust for them: :data:`UNMACED_RESPONSE_CODES`); every other answer is MACed.
A message that does not decode gets **30** (:func:`.iso_tcp.format_error_reply`) and the connection
stays open.

Sign-on (0800 -> 0810)
    Fields 41/42, 60 (``00`` + batch n6 + network management code: ``001`` single-length keys, ``003``
    double-length [M]; anything else -> **40**). New working keys PIK and MAK are drawn from the context
    RNG and returned in **field 62** under the TMK (3DES ECB, the TMK is a 16-byte TEST KEY), each
    followed by its KCV (the first 4 bytes of the key encrypting 8 zero bytes) [M]::

        003 (40 bytes): E_TMK(PIK) 16 | KCV(PIK) 4 | E_TMK(MAK) 16 | KCV(MAK) 4
        001 (24 bytes): E_TMK(PIK)  8 | KCV(PIK) 4 | E_TMK(MAK)  8 | KCV(MAK) 4

    The 0810 carries the host's batch number in 60.2 (the terminal adopts it) and no MAC.

Financial requests (0200; 0100 handled alike)
    Processing code (field 3) ``00`` purchase, ``31`` balance inquiry (this lab's choice: a 0200 with
    processing code 31xxxx, like CUP POS terminals send it; the balance comes back in field 54),
    ``60``/``62``/``63`` e-cash load; anything else -> **40**. Translated to the switch dialect: the
    terminal's fields plus 7 (transmission time), 18 (MCC 5411 [M]), 32/33 (``config.acquirer_id``),
    37 (RRN, :func:`retrieval_reference`); 12/13 default to the host's local time. The switch's field
    39/38/54/55/44 come back to the terminal (response 0210 with field 37).

    No answer from the switch within ``issuer_timeout_s`` + :attr:`AcquirerHost.switch_margin_s` (or
    the link down) -> **91**, and a 0420 goes to the switch store-and-forward.

Duplicates (ISO practice: the key is TID + STAN + batch)
    The same STAN again in the batch with the *identical* message (field 64 aside) is a
    retransmission: the stored answer is sent again (re-MACed with the current MAK), nothing is
    forwarded twice; while the first copy is still in flight the retransmission waits for it. The
    same STAN with a *different* message -> **94**.

Reversal (0400 -> 0410, reason code 98 in field 39)
    Idempotent: the original (same TID, STAN, current batch) is looked up. Already reversed -> **00**
    again; declined with a final code -> **00** (nothing to undo); approved (or ended in 91, outcome
    unknown) -> a 0420 with field 90 goes to the switch, the merchant credit is undone with a
    compensating entry and the row is marked ``reversed`` -> **00**; if the switch does not answer,
    the 0420 continues store-and-forward and the terminal still gets 00. Not logged here -> the 0420
    still goes to the switch (the RRN is deterministic, so the issuer finds an original this host lost
    after forwarding it) and the terminal gets the issuer's answer: **25** (unknown there too, also
    on every repeat) or 00 (it was found and reversed).

Settlement (0500 -> 0510)
    Field 48 carries the batch totals (:func:`encode_batch_totals`); the host's totals are the approved,
    unreversed purchases of the terminal's current batch. Equal -> **00** and the batch is closed (the
    host batch number goes up by one); different -> **95** (reconcile error) and the batch stays open.
    The 0510's field 48 holds the host's totals with settle code 1 (balanced) or 2 (not balanced) [M].

Money: an approved purchase posts ``acquirer:settlement`` debit (the switch owes the acquirer) and
``acquirer:merchant:<mid>`` credit, entry ``acquirer:sale:<tid>:<batch>:<stan>``; a reversal the
opposite, ``acquirer:reversal:...``. Loads and inquiries move no merchant money.

Logs show MTI, STAN, TID and masked PANs only; keys never leave this module except under the TMK.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from ..protocol.errors import Iso8583Error, MacError
from ..protocol.iso8583 import (
    CupsHeader,
    Iso8583Message,
    decode_message,
    encode_message,
    response_to,
    reversal_request,
)
from ..protocol.iso8583.mac import pos_mac
from ..protocol.iso8583.terminal import (  # the POS-side helpers live in the protocol core now
    BALANCE_INQUIRY_CODE,  # noqa: F401  (re-exported under the old name)
    SETTLEMENT_CODE,  # noqa: F401
    UNMACED_RESPONSE_CODES,  # noqa: F401
    BatchTotals,
    decode_batch_totals,
    decode_working_keys,  # noqa: F401
    encode_batch_totals,
    encode_working_keys,
    key_check_value,  # noqa: F401
    settlement_request,  # noqa: F401
    verify_mac,
)
from ..protocol.masking import mask_pan
from .acquirer_models import AcquirerReply
from .context import BackendContext
from .iso_tcp import (
    HostDb,
    IsoClient,
    IsoLinkError,
    IsoServer,
    IsoTimeout,
    SeenKeys,
    StoreAndForward,
    format_error_reply,
    local_time,
    request_digest,
    transmission_time,
)
from .issuer import TXN_TYPES
from .ledger import ACQUIRER_SETTLEMENT, LedgerError, merchant_account
from .models import Authorization, Terminal

log = logging.getLogger("paylab.backend.acquirer")

ROLE = "acquirer"
KEY_SCHEMES: dict[str, int] = {"001": 8, "003": 16}
"""60.3 network management code -> working key length [M]."""
DEFAULT_MCC = "5411"
FINAL_DECLINES_KEEP = frozenset({"91", "96", "98"})
"""Response codes after which the outcome at the issuer is unknown: a reversal must go downstream."""

_AUTH = Authorization.__table__
_REPLY = AcquirerReply.__table__
_TERMINAL = Terminal.__table__
_SELECT_PRIOR = (select(_REPLY.c.request_hash, _REPLY.c.response)
                 .select_from(_AUTH.join(_REPLY, _REPLY.c.authorization_id == _AUTH.c.id))
                 .where(_AUTH.c.role == ROLE, _AUTH.c.tid == bindparam("tid"), _AUTH.c.stan == bindparam("stan"),
                        _AUTH.c.batch == bindparam("batch")))
_SELECT_STANS = select(_AUTH.c.stan).where(_AUTH.c.role == ROLE, _AUTH.c.tid == bindparam("tid"),
                                           _AUTH.c.batch == bindparam("batch"))
_INSERT_AUTH = insert(_AUTH)
_INSERT_REPLY = insert(_REPLY)
_TRANSLATED = (2, 3, 4, 11, 12, 13, 14, 22, 23, 25, 26, 35, 36, 41, 42, 49, 52, 53, 55)
"""POS fields copied into the switch-dialect request."""
_FROM_SWITCH = (38, 44, 54, 55)
"""Switch response fields passed on to the terminal (besides 39)."""


# -- field 62 (working keys), 48 (batch totals), settlement: the protocol core's (lab/protocol/iso8583/terminal.py)


def retrieval_reference(acquirer_id: str, tid: str, batch: int, stan: str) -> str:
    """The RRN (field 37, an12) of a terminal request: 12 digits of SHA-256 over acquirer id, TID, batch
    and STAN. Deterministic, so a reversal can name the original even when the acquirer lost its row."""
    digest = hashlib.sha256(f"{acquirer_id}|{tid}|{batch}|{stan}".encode()).hexdigest()
    return f"{int(digest[:15], 16) % 10**12:012d}"


# -- the host ----------------------------------------------------------------------------------------------


@dataclass
class _Terminal:
    """The acquirer's in-memory view of a ``terminals`` row (the DB row is the source on start)."""

    tid: str
    mid: str
    tmk: bytes = field(repr=False)
    mak: bytes | None = field(default=None, repr=False)
    batch: int = 1
    signed_on: bool = False


@dataclass
class _InFlight:
    digest: str
    done: asyncio.Future[bytes]


class AcquirerHost:
    """The acquirer host (module docstring). ``switch_address`` is the switch's ``(host, port)``."""

    switch_margin_s = 2.0
    """Added to ``issuer_timeout_s`` for the acquirer's own wait on the switch (the switch answers 91 first)."""

    def __init__(self, ctx: BackendContext, switch_address: tuple[str, int]) -> None:
        self.ctx = ctx
        self.acquirer_id = ctx.config.acquirer_id
        self.switch_timeout = ctx.config.issuer_timeout_s + self.switch_margin_s
        self.switch = IsoClient(*switch_address, "switch", timeout=self.switch_timeout, name="acquirer->switch")
        self.forwarder = StoreAndForward(self.switch, on_ack=self._advice_acknowledged)
        self.server: IsoServer | None = None
        self.terminals: dict[str, _Terminal] = {}
        self.db = HostDb(ctx.engine, on_abort=self._forget)
        self._seen = SeenKeys(self._logged_stans)
        self._in_flight: dict[tuple[str, str, int], _InFlight] = {}

    # -- lifecycle --------------------------------------------------------------------------------------
    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Load the terminals, listen on ``host:port`` (0 = ephemeral); returns the bound address."""
        self.load_terminals()
        self.server = IsoServer("acquirer", "cup-pos", self.handle, host=host, port=port, sequential=True)
        return await self.server.start()

    def load_terminals(self) -> None:
        """(Re)read the terminals table into memory."""
        with self.ctx.session(write=False) as s:
            rows = s.execute(select(_TERMINAL)).all()
        self.terminals = {row.tid: _terminal_of(row) for row in rows}

    def _terminal(self, tid: str) -> _Terminal | None:
        """The terminal from memory, or from the table (a terminal seeded after the start)."""
        term = self.terminals.get(tid)
        if term is None:
            with self.db.read() as s:
                row = s.execute(select(_TERMINAL).where(_TERMINAL.c.tid == tid)).first()
            if row is not None:
                term = self.terminals[tid] = _terminal_of(row)
        return term

    def _logged_stans(self, tid: str, batch: int) -> list[str]:
        with self.db.read() as s:
            return list(s.scalars(_SELECT_STANS, {"tid": tid, "batch": batch}))

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)``."""
        if self.server is None:
            raise RuntimeError("the acquirer is not started")
        return self.server.address

    async def stop(self) -> None:
        """Stop listening, stop store-and-forward deliveries, close the switch link."""
        if self.server is not None:
            await self.server.stop()
        await self.forwarder.stop()
        await self.switch.close()
        await self.db.close()

    # -- dispatch -----------------------------------------------------------------------------------------
    async def handle(self, raw: bytes) -> bytes | None:
        """Answer one terminal message (raw, length prefix excluded)."""
        try:
            msg = decode_message(raw, "cup-pos")
        except Iso8583Error as exc:
            log.warning("acquirer: format error: %s", exc)
            return format_error_reply(raw, "cup-pos")
        tid = msg.fields.get(41)
        term = self._terminal(tid) if isinstance(tid, str) else None
        if msg.mti == "0800":
            return self._sign_on(msg, term)
        if term is None or not term.signed_on or term.mak is None:
            log.info("acquirer: %s from unknown or signed-off terminal %r: 97", msg.mti, tid)
            return encode_message(response_to(msg, "97"), "cup-pos")
        try:
            verify_mac(raw, msg, "cup-pos", term.mak)
        except MacError:
            log.warning("acquirer: bad MAC on %s STAN %s from %s: A0", msg.mti, msg.fields.get(11), term.tid)
            return encode_message(response_to(msg, "A0"), "cup-pos")
        if msg.fields.get(42) != term.mid:
            return self._answer(term, response_to(msg, "03"))
        try:
            if msg.mti in ("0200", "0100"):
                return await self._financial(msg, term)
            if msg.mti == "0400":
                return await self._reversal(msg, term)
            if msg.mti == "0500":
                return self._settle(msg, term)
        except Exception:
            log.exception("acquirer: %s STAN %s of %s failed: 96", msg.mti, msg.fields.get(11), term.tid)
            return self._answer(term, response_to(msg, "96"))
        return self._answer(term, response_to(msg, "12"))

    @staticmethod
    def _answer(term: _Terminal, response: Iso8583Message) -> bytes:
        return encode_message(response, "cup-pos", mak=term.mak)

    # -- sign-on ------------------------------------------------------------------------------------------
    def _sign_on(self, msg: Iso8583Message, term: _Terminal | None) -> bytes:
        if term is None:
            log.info("acquirer: sign-on from unknown terminal %r: 97", msg.fields.get(41))
            return encode_message(response_to(msg, "97"), "cup-pos")
        if msg.fields.get(42) not in (None, term.mid):
            return encode_message(response_to(msg, "03"), "cup-pos")
        field60 = msg.fields.get(60)
        scheme = field60[8:11] if isinstance(field60, str) and len(field60) >= 11 else "003"
        size = KEY_SCHEMES.get(scheme)
        if size is None:
            return encode_message(response_to(msg, "40"), "cup-pos")
        pik, mak = self.ctx.rng.randbytes(size), self.ctx.rng.randbytes(size)
        with self.ctx.session() as s:
            s.execute(update(_TERMINAL).where(_TERMINAL.c.tid == term.tid)
                      .values(pik=pik.hex().upper(), mak=mak.hex().upper(), signed_on=True))
        term.mak, term.signed_on = mak, True
        now = local_time(self.ctx.clock())
        extra: dict[int, str | bytes] = {
            12: now.strftime("%H%M%S"), 13: now.strftime("%m%d"), 60: f"00{term.batch:06d}{scheme}",
            62: encode_working_keys(term.tmk, pik, mak),
        }
        log.info("acquirer: terminal %s signed on (batch %d)", term.tid, term.batch)
        return encode_message(response_to(msg, "00", extra=extra), "cup-pos")

    # -- purchase, load, inquiry ----------------------------------------------------------------------------
    async def _financial(self, msg: Iso8583Message, term: _Terminal) -> bytes:
        f = msg.fields
        code, stan, pan = f.get(3), f.get(11), f.get(2)
        if not (isinstance(code, str) and isinstance(stan, str) and isinstance(pan, str)):
            return self._answer(term, response_to(msg, "30"))
        txn = TXN_TYPES.get(code[:2])
        if txn is None:
            return self._answer(term, response_to(msg, "40"))
        if txn != "inquiry" and not isinstance(f.get(4), str):
            return self._answer(term, response_to(msg, "30"))
        key = (term.tid, stan, term.batch)
        digest = request_digest(msg)
        running = self._in_flight.get(key)
        if running is not None:
            if running.digest != digest:
                return self._answer(term, response_to(msg, "94"))
            return self._remac(term, await asyncio.shield(running.done))
        prior = None
        if (term.tid, term.batch, stan) in self._seen:
            with self.db.read() as s:
                prior = s.execute(_SELECT_PRIOR, {"tid": term.tid, "stan": stan, "batch": term.batch}).first()
        if prior is not None:
            if prior.request_hash != digest:
                log.info("acquirer: duplicate STAN %s in batch %d of %s with another message: 94", stan,
                         term.batch, term.tid)
                return self._answer(term, response_to(msg, "94"))
            return self._remac(term, bytes(prior.response))
        flight = _InFlight(digest, asyncio.get_running_loop().create_future())
        self._in_flight[key] = flight
        try:
            answer = await self._forward(msg, term, txn, digest)
            flight.done.set_result(answer)
            return answer
        except BaseException as exc:
            flight.done.set_exception(exc)
            flight.done.exception()  # retrieved: waiters re-raise it, nobody else must be warned
            raise
        finally:
            del self._in_flight[key]

    def _switch_request(self, msg: Iso8583Message, ts: float, rrn: str) -> Iso8583Message:
        f = msg.fields
        fields: dict[int, str | bytes] = {n: f[n] for n in _TRANSLATED if n in f}
        now = local_time(ts)
        fields.setdefault(12, now.strftime("%H%M%S"))
        fields.setdefault(13, now.strftime("%m%d"))
        fields.update({7: transmission_time(ts), 18: DEFAULT_MCC, 32: self.acquirer_id, 33: self.acquirer_id, 37: rrn})
        header = CupsHeader(destination_id="00010000", source_id=self.acquirer_id).encode()
        return Iso8583Message(msg.mti, fields, header=header)

    async def _forward(self, msg: Iso8583Message, term: _Terminal, txn: str, digest: str) -> bytes:
        f = msg.fields
        stan = str(f[11])
        ts = self.ctx.clock()
        rrn = retrieval_reference(self.acquirer_id, term.tid, term.batch, stan)
        request = self._switch_request(msg, ts, rrn)
        try:
            answer = await self.switch.request(request, timeout=self.switch_timeout)
            rc = answer.response_code or "96"
        except (IsoTimeout, IsoLinkError) as exc:
            log.warning("acquirer: switch did not answer STAN %s of %s (%s): 91, reversal queued", stan, term.tid, exc)
            answer, rc = None, "91"
            self.forwarder.submit(reversal_request(request, dialect="switch"))
        extra: dict[int, str | bytes] = {37: rrn}
        if answer is not None:
            extra.update({n: answer.fields[n] for n in _FROM_SWITCH if n in answer.fields})
        try:
            raw = self._answer(term, response_to(msg, rc, extra=extra))
        except Iso8583Error as exc:  # a switch field the POS dialect cannot carry: keep the essentials
            log.warning("acquirer: switch answer for STAN %s not representable in the POS dialect (%s)", stan, exc)
            raw = self._answer(term, response_to(msg, rc, extra={n: v for n, v in extra.items() if n in (37, 38, 55)}))
        amount = int(f[4]) if isinstance(f.get(4), str) else 0  # type: ignore[arg-type]
        approved = rc == "00"
        entry_id = f"acquirer:sale:{term.tid}:{term.batch}:{stan}" if approved and txn == "purchase" else None
        try:
            await self._log(msg, term, request=request, rc=rc, extra=extra, raw=raw, digest=digest, ts=ts,
                            amount=amount, entry_id=entry_id)
        except Exception:
            # not logged, so not answered: undo downstream what the issuer may have approved
            if approved:
                self.forwarder.submit(reversal_request(request, dialect="switch"))
            raise
        return raw

    async def _log(self, msg: Iso8583Message, term: _Terminal, *, request: Iso8583Message, rc: str,
                   extra: dict[int, str | bytes], raw: bytes, digest: str, ts: float, amount: int,
                   entry_id: str | None) -> None:
        """The authorisation row, its stored answer and the merchant credit, in one transaction."""
        f = msg.fields
        stan, rrn = str(f[11]), str(request.fields[37])
        approved = rc == "00"
        tid, mid, batch = term.tid, term.mid, term.batch  # as when the request was answered

        def job(s: Session) -> None:
            if entry_id is not None:
                self.ctx.ledger.post(entry_id, [(ACQUIRER_SETTLEMENT, amount), (merchant_account(mid), -amount)],
                                     kind="merchant-sale", memo="purchase", reference=rrn, session=s)
            auth_id = s.execute(_INSERT_AUTH, {
                "role": ROLE, "tid": tid, "mid": mid, "stan": stan, "batch": batch, "rrn": rrn,
                "pan_masked": mask_pan(str(f[2])), "amount": amount, "currency": str(f.get(49) or "156"),
                "mti": msg.mti, "processing_code": str(f[3]), "response_code": rc,
                "auth_code": str(extra[38]) if 38 in extra else None,
                "status": "approved" if approved else "declined", "ledger_entry_id": entry_id, "created": ts,
            }).inserted_primary_key[0]
            s.execute(_INSERT_REPLY, {"authorization_id": auth_id, "request_hash": digest, "response": raw})
            self._seen.add(tid, batch, stan)  # a failed COMMIT drops it (_forget)

        await self.db.batched(job)

    def _forget(self) -> None:
        """A group commit failed: drop the in-memory view of logged STANs (reloaded from the database)."""
        self._seen = SeenKeys(self._logged_stans)

    @staticmethod
    def _remac(term: _Terminal, stored: bytes) -> bytes:
        """A stored answer with field 64 recomputed under the terminal's current MAK."""
        assert term.mak is not None
        return stored[:-8] + pos_mac(term.mak, stored)

    # -- reversal -------------------------------------------------------------------------------------------
    async def _reversal(self, msg: Iso8583Message, term: _Terminal) -> bytes:
        stan = msg.fields.get(11)
        if not isinstance(stan, str) or not isinstance(msg.fields.get(2), str):
            return self._answer(term, response_to(msg, "30"))
        running = self._in_flight.get((term.tid, stan, term.batch))
        if running is not None:  # the original is still waiting for the switch: let it finish first
            await asyncio.wait([running.done])
        with self.ctx.session(write=False) as s:
            row = s.execute(select(_AUTH).where(_AUTH.c.role == ROLE, _AUTH.c.tid == term.tid,
                                                _AUTH.c.stan == stan, _AUTH.c.batch == term.batch)).first()
        if row is not None and (row.status == "reversed" or (
                row.status == "declined" and row.response_code not in FINAL_DECLINES_KEEP)):
            return self._answer(term, response_to(msg, "00"))
        # approved, outcome unknown (91), or never logged here (the original may still have reached the
        # switch if this host failed after forwarding it): the reversal goes downstream in every case
        if row is not None:
            original = self._switch_request(_original_of(msg, row.mti), row.created, row.rrn)
        else:
            rrn = retrieval_reference(self.acquirer_id, term.tid, term.batch, stan)
            original = self._switch_request(_original_of(msg, "0200"), self.ctx.clock(), rrn)
        advice = reversal_request(original, dialect="switch")
        downstream: str | None = None
        try:
            downstream = (await self.switch.request(advice, timeout=self.switch_timeout)).response_code
        except (IsoTimeout, IsoLinkError) as exc:
            log.warning("acquirer: reversal of STAN %s of %s not acknowledged (%s): store-and-forward", stan,
                        term.tid, exc)
            self.forwarder.submit(advice)
        if row is None:
            return self._answer(term, response_to(msg, downstream if downstream in ("00", "25") else "25"))
        try:
            self._reverse_locally(row)
        except LedgerError as exc:
            log.error("acquirer: reversal of STAN %s of %s failed: %s", stan, term.tid, exc)
            return self._answer(term, response_to(msg, "96"))
        return self._answer(term, response_to(msg, "00"))

    def _reverse_locally(self, row: Any) -> None:
        with self.ctx.session() as s:
            if row.ledger_entry_id:
                entry = self.ctx.ledger.entry(row.ledger_entry_id, s)
                if entry is not None:
                    self.ctx.ledger.post(entry.id.replace(":sale:", ":reversal:", 1),
                                         [(a, -v) for a, v in entry.lines], kind="merchant-reversal",
                                         memo=f"reversal of {entry.id}", reference=row.rrn, session=s)
            s.execute(update(_AUTH).where(_AUTH.c.id == row.id).values(status="reversed"))

    def _advice_acknowledged(self, advice: Any, answer: Iso8583Message) -> None:
        log.info("acquirer: reversal advice STAN %s acknowledged with %s", advice.message.fields.get(11),
                 answer.response_code)

    # -- settlement -----------------------------------------------------------------------------------------
    def host_totals(self, tid: str, batch: int) -> BatchTotals:
        """Approved, unreversed purchases of a terminal's batch."""
        a = _AUTH.c
        with self.ctx.session(write=False) as s:
            count, amount = s.execute(select(func.count(), func.coalesce(func.sum(a.amount), 0)).where(and_(
                a.role == ROLE, a.tid == tid, a.batch == batch, a.status == "approved",
                a.processing_code.startswith("00"), a.mti.in_(("0200", "0100"))))).one()
        return BatchTotals(debit_count=int(count), debit_amount=int(amount))

    def _settle(self, msg: Iso8583Message, term: _Terminal) -> bytes:
        field48 = msg.fields.get(48)
        if not isinstance(field48, str):
            return self._answer(term, response_to(msg, "30"))
        try:
            claimed, _ = decode_batch_totals(field48)
        except Iso8583Error:
            return self._answer(term, response_to(msg, "30"))
        host = self.host_totals(term.tid, term.batch)
        balanced = (claimed.debit_count, claimed.debit_amount, claimed.credit_count, claimed.credit_amount) == (
            host.debit_count, host.debit_amount, 0, 0)
        closed = term.batch
        if balanced:
            term.batch = term.batch % 999_999 + 1
            with self.ctx.session() as s:
                s.execute(update(_TERMINAL).where(_TERMINAL.c.tid == term.tid).values(batch_no=term.batch))
            log.info("acquirer: batch %d of %s settled (%d purchases, %d fen)", closed, term.tid, host.debit_count,
                     host.debit_amount)
        else:
            log.warning("acquirer: batch %d of %s does not reconcile: 95", closed, term.tid)
        extra = {48: encode_batch_totals(host, "1" if balanced else "2")}
        return self._answer(term, response_to(msg, "00" if balanced else "95", extra=extra))


def _terminal_of(row: Any) -> _Terminal:
    return _Terminal(row.tid, row.mid, bytes.fromhex(row.tmk), bytes.fromhex(row.mak) if row.mak else None,
                     row.batch_no, bool(row.signed_on))


def _original_of(reversal: Iso8583Message, mti: str) -> Iso8583Message:
    """The original request as far as a 0400 repeats it (its fields but 39, 55, 60, 64)."""
    fields = {n: v for n, v in reversal.fields.items() if n not in (39, 55, 60, 64)}
    return Iso8583Message(mti, fields, tpdu=reversal.tpdu, header=reversal.header)
