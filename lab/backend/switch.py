"""The switch: routes acquirer requests to issuers by BIN, answers for silent issuers, writes clearing files.

Switch dialect (CUPS, domain brief section 5) on both sides; framing and plumbing :mod:`.iso_tcp`. The
switch keeps one multiplexed connection per issuer (requests matched by STAN + TID) and passes the
issuer's response bytes back to the acquirer unchanged. The switch-dialect links carry no field-128 MAC
in this lab (the MAB of the brief is [M]; the links are loopback).

Routing
    0100/0200 and 0400/0420 go to the issuer whose BIN is the **longest prefix** of the PAN
    (:meth:`~.config.BackendConfig.issuer_for_pan`). No issuer -> **15** (no such issuer; the brief
    allows 15 or 92, 15 says exactly what happened). 0800 is answered by the switch itself (0810, 00).

Issuer timeout
    No response within ``config.issuer_timeout_s`` (or the issuer link down) -> **91** to the
    acquirer, and a 0420 reversal advice (field 90 = original data elements) goes to the issuer
    store-and-forward: re-sent every timeout, at most :attr:`Switch.reversal_attempts` times, until a
    0430 (any response code) acknowledges it. :meth:`Switch.wait_reversals` waits for the queue.

Acquirer reversals (0400/0420)
    Forwarded to the issuer; its answer (00, or 25 for an unknown original) is relayed. An issuer that
    does not answer gets the advice store-and-forward and the acquirer an immediate 00 (the switch
    has taken responsibility for delivering it).

Log and money
    Every routed authorisation is a row of ``authorizations`` (role ``switch``; key TID, STAN, business
    day of field 7) plus a ``switch_routes`` row (acquirer, issuer, type, reversal time). An approved
    purchase posts ``switch:<issuer institution id>:due`` debit (the issuer owes the switch) and
    ``switch:<acquirer id>:due`` credit (the switch owes the acquirer), entry id
    ``switch:auth:<tid>:<day>:<stan>``; a reversal posts the opposite, ``switch:reversal:...``. Loads
    and balance inquiries move no money between institutions.

Clearing (:meth:`Switch.write_clearing_files`)
    One CSV per acquirer (``clearing-<YYYYMMDD>-acquirer-<id>.csv``) and per issuer
    (``clearing-<YYYYMMDD>-issuer-<name>.csv``), UTF-8, header row, one row per financial event of the
    business day: every approved purchase and load (type ``purchase`` / ``load``) and, for each of
    those reversed, a ``reversal`` row with the same amount and the reversal time. Columns
    (:data:`CLEARING_COLUMNS`): ``rrn, stan, tid, mid, pan_masked, amount`` (fen, always positive),
    ``currency, response_code, type, time`` (ISO 8601 local). The net of a file, purchases minus
    their reversals, equals the movement of ``issuer:<name>:settlement`` (credit) or
    ``acquirer:settlement`` (debit) that day; loads minus their reversals equal the movement of the
    issuer's e-cash floats.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from ..protocol.errors import Iso8583Error
from ..protocol.iso8583 import Iso8583Message, decode_message, encode_message, response_to, reversal_request
from ..protocol.masking import mask_pan
from .config import IssuerConfig
from .context import BackendContext
from .iso_tcp import (
    Advice,
    HostDb,
    IsoClient,
    IsoLinkError,
    IsoServer,
    IsoTimeout,
    SeenKeys,
    StoreAndForward,
    business_day,
    day_of_field7,
    format_error_reply,
    local_time,
)
from .issuer import REVERSAL_MTIS, TXN_TYPES
from .ledger import LedgerError, switch_due_account
from .models import Authorization
from .switch_models import SwitchRoute

log = logging.getLogger("paylab.backend.switch")

CLEARING_COLUMNS: tuple[str, ...] = (
    "rrn", "stan", "tid", "mid", "pan_masked", "amount", "currency", "response_code", "type", "time",
)
"""Columns of a clearing file, in order (module docstring)."""

ROLE = "switch"
_AUTH = Authorization.__table__
_ROUTE = SwitchRoute.__table__
_INSERT_AUTH = insert(_AUTH)
_INSERT_ROUTE = insert(_ROUTE)


class Switch:
    """The switch (module docstring). ``issuer_addresses`` maps issuer name -> ``(host, port)``."""

    reversal_attempts = 5

    def __init__(self, ctx: BackendContext, issuer_addresses: dict[str, tuple[str, int]]) -> None:
        self.ctx = ctx
        self.timeout = ctx.config.issuer_timeout_s
        self.clients: dict[str, IsoClient] = {
            name: IsoClient(host, port, "switch", timeout=self.timeout, connect_timeout=self.timeout,
                            name=f"switch->{name}")
            for name, (host, port) in issuer_addresses.items()
        }
        self.issuers: dict[str, IssuerConfig] = {i.name: i for i in ctx.config.issuers}
        self.server: IsoServer | None = None
        self.db = HostDb(ctx.engine, on_abort=self._forget)
        self._seen = SeenKeys(self._logged_stans)
        self.forwarders: dict[str, StoreAndForward] = {
            name: StoreAndForward(client, attempts=self.reversal_attempts, on_ack=self._advice_acknowledged)
            for name, client in self.clients.items()
        }

    # -- lifecycle --------------------------------------------------------------------------------------
    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen on ``host:port`` (0 = ephemeral); returns the bound address."""
        self.server = IsoServer("switch", "switch", self.handle, host=host, port=port)
        return await self.server.start()

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)``."""
        if self.server is None:
            raise RuntimeError("the switch is not started")
        return self.server.address

    async def stop(self) -> None:
        """Stop listening, cancel pending store-and-forward deliveries, close the issuer links."""
        if self.server is not None:
            await self.server.stop()
        for forwarder in self.forwarders.values():
            await forwarder.stop()
        for client in self.clients.values():
            await client.close()
        await self.db.close()

    @property
    def reversals(self) -> list[Advice]:
        """Every reversal advice sent store-and-forward, with its delivery state."""
        return [advice for forwarder in self.forwarders.values() for advice in forwarder.advices]

    async def wait_reversals(self, timeout: float = 30.0) -> bool:
        """Wait until every store-and-forward reversal is acknowledged or given up; True if all were acked."""
        results = [await forwarder.wait(timeout) for forwarder in self.forwarders.values()]
        return all(results)

    # -- dispatch -----------------------------------------------------------------------------------------
    async def handle(self, raw: bytes) -> bytes | None:
        """Answer one message from the acquirer."""
        try:
            msg = decode_message(raw, "switch")
        except Iso8583Error as exc:
            log.warning("switch: format error: %s", exc)
            return format_error_reply(raw, "switch")
        try:
            if msg.mti in ("0100", "0200"):
                return await self._authorize(msg)
            if msg.mti in REVERSAL_MTIS:
                return await self._reverse(msg)
        except Exception:
            log.exception("switch: %s STAN %s failed: 96", msg.mti, msg.fields.get(11))
            return encode_message(response_to(msg, "96"), "switch")
        if msg.mti == "0800":
            return encode_message(response_to(msg, "00", extra={70: msg.fields[70]} if 70 in msg.fields else None),
                                  "switch")
        return encode_message(response_to(msg, "12"), "switch")

    def route(self, pan: str) -> str | None:
        """The issuer name for ``pan`` (longest BIN prefix), or None."""
        issuer = self.ctx.config.issuer_for_pan(pan)
        return issuer.name if issuer is not None and issuer.name in self.clients else None

    async def _authorize(self, msg: Iso8583Message) -> bytes:
        f = msg.fields
        pan, stan = f.get(2), f.get(11)
        if not isinstance(pan, str) or not isinstance(stan, str):
            return encode_message(response_to(msg, "30"), "switch")
        issuer = self.route(pan)
        if issuer is None:
            log.info("switch: no issuer for card %s: 15", mask_pan(pan))
            await self._log(msg, None, "15", None)
            return encode_message(response_to(msg, "15"), "switch")
        try:
            exchange = await self.clients[issuer].request_raw(msg, timeout=self.timeout)
        except (IsoTimeout, IsoLinkError) as exc:
            log.warning("switch: issuer %s did not answer STAN %s (%s): 91 and reversal", issuer, stan, exc)
            await self._log(msg, issuer, "91", None)
            self._store_and_forward(issuer, reversal_request(msg, dialect="switch"))
            return encode_message(response_to(msg, "91"), "switch")
        await self._log(msg, issuer, exchange.message.response_code or "96", exchange.message)
        return exchange.raw

    async def _log(self, msg: Iso8583Message, issuer: str | None, rc: str,
                   response: Iso8583Message | None) -> None:
        f = msg.fields
        now = self.ctx.clock()
        day = day_of_field7(f.get(7), now)
        tid, stan = _text(f.get(41)).strip()[:8], _text(f.get(11))
        code = _text(f.get(3))
        txn = TXN_TYPES.get(code[:2], "other")
        amount = int(f[4]) if isinstance(f.get(4), str) and f[4].isdigit() else 0  # type: ignore[union-attr]
        acquirer = _text(f.get(32)) or self.ctx.config.acquirer_id
        approved = rc == "00"
        if (tid, day, stan) in self._seen:  # a retransmission: the issuer answered it from its own log
            return

        def job(s: Session) -> None:
            if (tid, day, stan) in self._seen:  # an earlier job of this batch logged it
                return
            entry_id = None
            if approved and txn == "purchase" and amount and issuer is not None:
                entry_id = f"switch:auth:{tid}:{day}:{stan}"
                self.ctx.ledger.post(entry_id, [(switch_due_account(self.issuers[issuer].institution_id), amount),
                                                (switch_due_account(acquirer), -amount)],
                                     kind="interchange", memo="purchase routed", reference=_text(f.get(37)) or None,
                                     session=s)
            auth_id = s.execute(_INSERT_AUTH, {
                "role": ROLE, "tid": tid, "mid": _text(f.get(42)).strip()[:15] or None, "stan": stan, "batch": day,
                "rrn": _text(f.get(37)) or None, "pan_masked": mask_pan(_text(f.get(2))), "amount": amount,
                "currency": _text(f.get(49)) or "156", "mti": msg.mti, "processing_code": code or None,
                "response_code": rc, "auth_code": _text(response.fields.get(38)) if response is not None else None,
                "status": "approved" if approved else "declined", "ledger_entry_id": entry_id, "created": now,
            }).inserted_primary_key[0]
            s.execute(_INSERT_ROUTE, {"authorization_id": auth_id, "day": str(business_day(now)),
                                      "acquirer_id": acquirer, "issuer": issuer, "txn_type": txn})
            self._seen.add(tid, day, stan)  # later jobs of the batch see it; a failed COMMIT drops it (_forget)

        await self.db.batched(job)

    def _forget(self) -> None:
        """A group commit failed: drop the in-memory view of logged STANs (reloaded from the database)."""
        self._seen = SeenKeys(self._logged_stans)

    def _logged_stans(self, tid: str, day: int) -> list[str]:
        with self.db.read() as s:
            return list(s.scalars(select(_AUTH.c.stan).where(_AUTH.c.role == ROLE, _AUTH.c.tid == tid,
                                                             _AUTH.c.batch == day)))

    # -- reversals ----------------------------------------------------------------------------------------
    async def _reverse(self, msg: Iso8583Message) -> bytes:
        pan = msg.fields.get(2)
        issuer = self.route(pan) if isinstance(pan, str) else None
        if issuer is None:
            return encode_message(response_to(msg, "15"), "switch")
        try:
            exchange = await self.clients[issuer].request_raw(msg, timeout=self.timeout)
            rc = exchange.message.response_code or "96"
        except (IsoTimeout, IsoLinkError):
            self._store_and_forward(issuer, msg)
            rc = "00"
            exchange = None
        if rc in ("00", "25"):
            self._reverse_log(msg)
        if exchange is not None:
            return exchange.raw
        return encode_message(response_to(msg, rc), "switch")

    def _reverse_log(self, msg: Iso8583Message) -> None:
        """Mark the switch's original reversed and post the opposite interchange entry (idempotent)."""
        f = msg.fields
        original = _text(f.get(90))
        stan, orig_time = (original[4:10], original[10:20]) if len(original) >= 20 else (_text(f.get(11)), f.get(7))
        now = self.ctx.clock()
        day = day_of_field7(orig_time, now)
        tid = _text(f.get(41)).strip()[:8]
        with self.db.write() as s:
            row = s.execute(select(_AUTH.c.id, _AUTH.c.status, _AUTH.c.ledger_entry_id, _AUTH.c.rrn)
                            .where(_AUTH.c.role == ROLE, _AUTH.c.tid == tid, _AUTH.c.stan == stan,
                                   _AUTH.c.batch == day)).first()
            if row is None or row.status != "approved":
                return
            if row.ledger_entry_id:
                entry = self.ctx.ledger.entry(row.ledger_entry_id, s)
                if entry is not None:
                    try:
                        self.ctx.ledger.post(entry.id.replace(":auth:", ":reversal:", 1),
                                             [(a, -v) for a, v in entry.lines], kind="reversal",
                                             memo=f"reversal of {entry.id}", reference=row.rrn, session=s)
                    except LedgerError as exc:
                        log.error("switch: reversal entry for STAN %s failed: %s", stan, exc)
                        return
            s.execute(update(_AUTH).where(_AUTH.c.id == row.id).values(status="reversed"))
            s.execute(update(_ROUTE).where(_ROUTE.c.authorization_id == row.id).values(reversed_at=now))

    def _store_and_forward(self, issuer: str, advice: Iso8583Message) -> Advice:
        return self.forwarders[issuer].submit(advice)

    def _advice_acknowledged(self, advice: Advice, answer: Iso8583Message) -> None:
        if answer.response_code in ("00", "25"):
            self._reverse_log(advice.message)

    # -- clearing -----------------------------------------------------------------------------------------
    def clearing_rows(self, day: str) -> list[dict[str, Any]]:
        """The financial events of business day ``YYYYMMDD`` with ``acquirer_id`` and ``issuer`` keys added."""
        a, r = _AUTH.c, _ROUTE.c
        query = (select(a.rrn, a.stan, a.tid, a.mid, a.pan_masked, a.amount, a.currency, a.response_code,
                        a.status, a.created, r.acquirer_id, r.issuer, r.txn_type, r.reversed_at)
                 .join(_ROUTE, r.authorization_id == a.id)
                 .where(r.day == day, a.role == ROLE, a.response_code == "00", r.txn_type.in_(("purchase", "load")))
                 .order_by(a.created, a.id))
        rows: list[dict[str, Any]] = []
        with self.ctx.session(write=False) as s:
            for row in s.execute(query):
                base = {"rrn": row.rrn or "", "stan": row.stan, "tid": row.tid, "mid": row.mid or "",
                        "pan_masked": row.pan_masked or "", "amount": int(row.amount), "currency": row.currency,
                        "response_code": row.response_code, "acquirer_id": row.acquirer_id, "issuer": row.issuer}
                created = local_time(row.created).isoformat(timespec="seconds")
                rows.append(base | {"type": row.txn_type, "time": created})
                if row.status == "reversed":
                    when = row.reversed_at if row.reversed_at is not None else row.created
                    rows.append(base | {"type": "reversal", "reversed_type": row.txn_type,
                                        "time": local_time(when).isoformat(timespec="seconds")})
        return rows

    def write_clearing_files(self, date: str | int | Any, directory: str | Path | None = None) -> list[Path]:
        """Write the day's clearing files (module docstring) into ``directory`` (default
        ``config.clearing_dir``); returns their paths, acquirers first. ``date`` is ``YYYYMMDD`` or a
        :class:`datetime.date`. A party with no event that day still gets a file (header only)."""
        day = date.strftime("%Y%m%d") if hasattr(date, "strftime") else str(date)
        folder = Path(directory) if directory is not None else self.ctx.config.clearing_dir
        folder.mkdir(parents=True, exist_ok=True)
        rows = self.clearing_rows(day)
        acquirers = sorted({self.ctx.config.acquirer_id, *(row["acquirer_id"] for row in rows)})
        paths = [self._write(folder / f"clearing-{day}-acquirer-{acq}.csv",
                             (row for row in rows if row["acquirer_id"] == acq)) for acq in acquirers]
        paths += [self._write(folder / f"clearing-{day}-issuer-{name}.csv",
                              (row for row in rows if row["issuer"] == name)) for name in self.issuers]
        return paths

    @staticmethod
    def _write(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
        tmp = path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=CLEARING_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        tmp.replace(path)
        return path


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""
