"""Double-entry ledger: balanced entries in one DB transaction, idempotent by entry id, invariant check.

Money convention: amounts are integers in fen; an entry is a list of ``(account_id, amount)`` lines that
sum to zero, **debits positive, credits negative**. An account's ``balance`` is the sum of its postings,
so it is positive for a debit balance and negative for a credit balance.

Normal sides. Asset and expense accounts normally carry a debit balance; liability, equity and income
accounts a credit balance. :meth:`Ledger.available` reads a balance on its normal side:
``available = balance`` for asset/expense, ``available = -balance`` for liability/equity/income. A
cardholder's deposit account is a *liability* of the bank: the customer's money is its credit balance,
so a deposit of 100.00 CNY is a posting of ``-10000`` and ``available()`` returns ``10000``; a purchase
debits it (``+amount``).

Floors. An account opened with ``allow_negative=False`` must keep ``available >= -credit_limit`` after
every entry (``credit_limit`` is 0 unless given: an overdraft on a debit account, the credit line on a
credit-card account); an entry that would break this raises :class:`InsufficientFunds` and writes
nothing. :meth:`Ledger.spendable` is ``available + credit_limit``.

Standard accounts (opened by :func:`.seed.seed_accounts`; ids are built by the functions below; the
owner is the party whose books hold the account)::

    issuer:<name>:cardholder:<account no>  liability  floor = -overdraft / -credit line  (debit, credit)
    issuer:<name>:ecash-float:<account no> liability  floor 0   the card's e-cash balance, shadowed
    issuer:<name>:settlement               asset      net due from the switch (negative = due to it)
    issuer:<name>:equity                   equity     counter-account of opening balances
    issuer:<name>:fee-income               income     interchange / fees
    acquirer:merchant:<mid>                liability  owed to the merchant
    acquirer:settlement                    asset      net due from the switch
    acquirer:equity, acquirer:fee-income   equity, income
    switch:<institution id>:due            asset      net due from that institution (issuer or acquirer,
                                                      by its 8-11 digit code: field 32 / 100)

``<account no>`` is a pseudonym of the card (:func:`account_number`, 16 hex digits of a SHA-256 over
issuer and PAN) so account ids, which appear in logs and entries, never carry a PAN.

Concurrency: :meth:`Ledger.post` runs in one transaction. On SQLite the transaction starts with
``BEGIN IMMEDIATE`` (writers queue on the busy timeout; see :mod:`.db`); on PostgreSQL the touched
accounts are locked with ``SELECT ... FOR UPDATE`` in account-id order (one global order, so two
entries over the same accounts never deadlock) before the idempotency check and the balance update;
two posts of one entry id over disjoint accounts meet at the primary key (``INSERT ... ON CONFLICT DO
NOTHING``: the loser waits for the winner's commit, then returns False or refuses the other lines).
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from ..protocol.errors import PaylabError
from .db import SQLITE_BEGIN_OPTION, is_sqlite
from .models import ACCOUNT_KINDS, ID_LEN, Account, JournalEntry, Posting

__all__ = [
    "ACQUIRER_EQUITY",
    "ACQUIRER_FEE_INCOME",
    "ACQUIRER_SETTLEMENT",
    "CREDIT_NORMAL_KINDS",
    "AccountInfo",
    "Entry",
    "InsufficientFunds",
    "Ledger",
    "LedgerError",
    "LedgerInvariantError",
    "account_number",
    "cardholder_account",
    "ecash_account",
    "issuer_account",
    "lines_hash",
    "merchant_account",
    "normal_sign",
    "switch_due_account",
]

CREDIT_NORMAL_KINDS: frozenset[str] = frozenset({"liability", "equity", "income"})


# -- errors -----------------------------------------------------------------------------------------


class LedgerError(PaylabError, ValueError):
    """An entry or account request is refused (unbalanced, unknown account, conflicting id, ...)."""


class InsufficientFunds(LedgerError):
    """The entry would take ``account_id`` below its floor; nothing was written.

    ``available`` is the account's available balance before the entry, ``shortfall`` how much is missing.
    """

    def __init__(self, account_id: str, *, available: int, credit_limit: int, change: int) -> None:
        self.account_id = account_id
        self.available = available
        self.credit_limit = credit_limit
        self.change = change
        self.shortfall = -(available + change + credit_limit)
        super().__init__(
            f"insufficient funds in {account_id}: available {available} + credit limit {credit_limit}, "
            f"entry takes {-change} (short by {self.shortfall})"
        )


class LedgerInvariantError(PaylabError, AssertionError):
    """The ledger's books are inconsistent; ``problems`` lists every finding (``str`` shows the first few)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        shown = "; ".join(problems[:5]) + (f"; ... ({len(problems) - 5} more)" if len(problems) > 5 else "")
        super().__init__(f"ledger invariant broken ({len(problems)} problem(s)): {shown}")


# -- records ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """A posted journal entry, lines in posting order."""

    id: str
    kind: str
    memo: str
    reference: str | None
    created: float
    lines: tuple[tuple[str, int], ...]
    lines_hash: str


@dataclass(frozen=True)
class AccountInfo:
    """An account as the ledger sees it (``balance`` is the cached sum of postings, debits positive)."""

    id: str
    owner: str
    kind: str
    currency: str
    allow_negative: bool
    credit_limit: int
    balance: int
    created: float = field(compare=False)

    @property
    def available(self) -> int:
        """The balance on the account's normal side (see the module docstring)."""
        return normal_sign(self.kind) * self.balance

    @property
    def spendable(self) -> int:
        """``available + credit_limit``: the most an entry may take from it (if ``allow_negative`` is False)."""
        return self.available + self.credit_limit


def normal_sign(kind: str) -> int:
    """+1 for debit-normal kinds (asset, expense), -1 for credit-normal ones (liability, equity, income)."""
    return -1 if kind in CREDIT_NORMAL_KINDS else 1


def lines_hash(lines: Sequence[tuple[str, int]]) -> str:
    """SHA-256 (hex) of the canonical form of ``lines``: sorted ``account<TAB>amount`` rows. The order of
    lines does not change an entry's meaning, so it does not change the hash either."""
    canonical = "\n".join(f"{account}\t{amount}" for account, amount in sorted(lines))
    return hashlib.sha256(canonical.encode()).hexdigest()


# -- standard account ids ---------------------------------------------------------------------------


def account_number(issuer: str, pan: str) -> str:
    """The issuer's account number for a card: a pseudonym (16 hex digits), never the PAN."""
    return hashlib.sha256(f"paylab account {issuer} {pan}".encode()).hexdigest()[:16].upper()


def cardholder_account(issuer: str, account_no: str) -> str:
    """``issuer:<name>:cardholder:<account no>`` (liability: the cardholder's debit or credit account)."""
    return f"issuer:{issuer}:cardholder:{account_no}"


def ecash_account(issuer: str, account_no: str) -> str:
    """``issuer:<name>:ecash-float:<account no>`` (liability: e-cash loaded onto that card)."""
    return f"issuer:{issuer}:ecash-float:{account_no}"


def issuer_account(issuer: str, role: str) -> str:
    """``issuer:<name>:<role>`` for role ``settlement``, ``equity`` or ``fee-income``."""
    if role not in ("settlement", "equity", "fee-income"):
        raise ValueError(f"unknown issuer account role {role!r}")
    return f"issuer:{issuer}:{role}"


def merchant_account(mid: str) -> str:
    """``acquirer:merchant:<mid>`` (liability: what the acquirer owes the merchant)."""
    return f"acquirer:merchant:{mid.strip()}"


ACQUIRER_SETTLEMENT = "acquirer:settlement"
ACQUIRER_EQUITY = "acquirer:equity"
ACQUIRER_FEE_INCOME = "acquirer:fee-income"


def switch_due_account(institution_id: str) -> str:
    """``switch:<institution id>:due`` (asset of the switch: net due from that institution)."""
    return f"switch:{institution_id}:due"


# -- the ledger -------------------------------------------------------------------------------------


_ACCOUNTS = Account.__table__
_ENTRIES = JournalEntry.__table__
_POSTINGS = Posting.__table__
_ACCOUNT_COLUMNS = (_ACCOUNTS.c.id, _ACCOUNTS.c.owner, _ACCOUNTS.c.kind, _ACCOUNTS.c.currency,
                    _ACCOUNTS.c.allow_negative, _ACCOUNTS.c.credit_limit, _ACCOUNTS.c.balance, _ACCOUNTS.c.created)
_SELECT_ACCOUNT = select(*_ACCOUNT_COLUMNS).where(_ACCOUNTS.c.id == bindparam("account_id"))
_SELECT_HASH = select(_ENTRIES.c.lines_hash).where(_ENTRIES.c.id == bindparam("entry_id"))
_INSERT_POSTINGS = insert(_POSTINGS)
_ADD_TO_BALANCE = (update(_ACCOUNTS).where(_ACCOUNTS.c.id == bindparam("b_id"))
                   .values(balance=_ACCOUNTS.c.balance + bindparam("b_delta")))


class _DriverSql:
    """A Core statement compiled once for a dialect and run on the DBAPI cursor of a SQLAlchemy connection
    (the hot path of :meth:`Ledger.post`: no per-call compilation, cache-key or result-proxy work). Only for
    statements whose binds and columns need no type processing (strings, ints, floats)."""

    def __init__(self, statement: Any, dialect: Any) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = compiled.string
        self.order: tuple[str, ...] | None = tuple(compiled.positiontup) if dialect.positional else None

    def _args(self, params: dict[str, Any]) -> Any:
        return params if self.order is None else tuple(params[name] for name in self.order)

    def rows(self, conn: Connection, params: dict[str, Any]) -> list[Any]:
        cursor = conn.connection.cursor()
        try:
            cursor.execute(self.sql, self._args(params))
            return cursor.fetchall()
        finally:
            cursor.close()

    def many(self, conn: Connection, params: list[dict[str, Any]]) -> None:
        cursor = conn.connection.cursor()
        try:
            cursor.executemany(self.sql, [self._args(p) for p in params])
        finally:
            cursor.close()


class Ledger:
    """The double-entry ledger over one engine (see the module docstring for conventions).

    Every method takes an optional ``session``: given, the work joins the caller's transaction; not
    given, the ledger uses its own. Every refusal is decided before the first write and no statement
    is made to fail (duplicates are detected with ``INSERT ... ON CONFLICT DO NOTHING``), so a refused
    entry leaves the caller's transaction usable and its other work intact, without savepoints. The
    hot path is SQLAlchemy Core over the session's connection; ``Account`` objects the caller's
    session holds are kept in step.
    """

    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock
        self._sqlite = is_sqlite(engine)
        self._writer = engine.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"}) if self._sqlite else engine
        dialect_insert = sqlite.insert if self._sqlite else postgresql.insert
        self._insert_entry = (dialect_insert(_ENTRIES).on_conflict_do_nothing(index_elements=["id"])
                              .returning(_ENTRIES.c.id))
        self._insert_account = (dialect_insert(_ACCOUNTS).on_conflict_do_nothing(index_elements=["id"])
                                .returning(_ACCOUNTS.c.id))
        # the hot path of post(), compiled once (see _DriverSql)
        dialect = engine.dialect
        self._fast_hash = _DriverSql(_SELECT_HASH, dialect)
        self._fast_entry = _DriverSql(
            dialect_insert(_ENTRIES).values(
                id=bindparam("p_id"), kind=bindparam("p_kind"), memo=bindparam("p_memo"),
                reference=bindparam("p_reference"), created=bindparam("p_created"),
                lines_hash=bindparam("p_lines_hash"))
            .on_conflict_do_nothing(index_elements=["id"]).returning(_ENTRIES.c.id), dialect)
        self._fast_postings = _DriverSql(insert(_POSTINGS).values(
            entry_id=bindparam("p_entry_id"), account_id=bindparam("p_account_id"), amount=bindparam("p_amount")),
            dialect)
        self._fast_balance = _DriverSql(_ADD_TO_BALANCE, dialect)
        self._fast_accounts: dict[int, _DriverSql] = {}

    # -- connections -------------------------------------------------------------------------------
    @contextmanager
    def _write(self, session: Session | None) -> Iterator[Connection]:
        """Our own write transaction (BEGIN IMMEDIATE on SQLite), or the caller's (flushed) session."""
        if session is None:
            with self._writer.begin() as conn:
                yield conn
        else:
            session.flush()
            yield session.connection()

    @contextmanager
    def _read(self, session: Session | None) -> Iterator[Connection]:
        if session is None:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        else:
            session.flush()
            yield session.connection()

    @staticmethod
    def _sync_orm(session: Session | None, balances: dict[str, int]) -> None:
        """Keep ``Account`` objects the caller's session holds in step with what Core wrote."""
        if session is None:
            return
        for account_id, balance in balances.items():
            obj = session.identity_map.get(session.identity_key(Account, account_id))
            if obj is not None:
                set_committed_value(obj, "balance", balance)

    # -- accounts ----------------------------------------------------------------------------------
    def open_account(self, account_id: str, *, owner: str, kind: str, currency: str = "156",
                     allow_negative: bool = False, credit_limit: int = 0, session: Session | None = None) -> None:
        """Open an account; a no-op if it exists with the same attributes (``LedgerError`` if not).

        ``credit_limit`` (fen, default 0) lets an ``allow_negative=False`` account go that far below zero.
        """
        _check_account_id(account_id)
        if kind not in ACCOUNT_KINDS:
            raise LedgerError(f"account {account_id}: kind must be one of {', '.join(ACCOUNT_KINDS)}, got {kind!r}")
        if not (isinstance(currency, str) and len(currency) == 3 and currency.isdigit()):
            raise LedgerError(f"account {account_id}: currency must be a 3-digit ISO 4217 code, got {currency!r}")
        _check_limit(account_id, credit_limit)
        if not isinstance(owner, str) or not 1 <= len(owner) <= 100:
            raise LedgerError(f"account {account_id}: owner must be a string of 1-100 characters")
        wanted = {"owner": owner, "kind": kind, "currency": currency, "allow_negative": bool(allow_negative),
                  "credit_limit": credit_limit}
        with self._write(session) as conn:
            row = conn.execute(_SELECT_ACCOUNT, {"account_id": account_id}).first()
            if row is None:
                values = {"id": account_id, "balance": 0, "created": self.clock(), **wanted}
                if conn.execute(self._insert_account, values).first() is not None:
                    return
                row = conn.execute(_SELECT_ACCOUNT, {"account_id": account_id}).first()  # opened concurrently
                assert row is not None
        existing = AccountInfo(*row)
        different = {k: getattr(existing, k) for k, v in wanted.items() if getattr(existing, k) != v}
        if different:
            raise LedgerError(f"account {account_id} already open with other attributes: {different}")

    def set_credit_limit(self, account_id: str, credit_limit: int, *, session: Session | None = None) -> None:
        """Change an account's overdraft / credit line. Lowering it below what is already used is allowed;
        later entries that take more from the account are then refused."""
        _check_limit(account_id, credit_limit)
        with self._write(session) as conn:
            done = conn.execute(update(_ACCOUNTS).where(_ACCOUNTS.c.id == account_id).values(credit_limit=credit_limit))
            if done.rowcount != 1:
                raise LedgerError(f"unknown account {account_id}")
        if session is not None:
            obj = session.identity_map.get(session.identity_key(Account, account_id))
            if obj is not None:
                set_committed_value(obj, "credit_limit", credit_limit)

    def account(self, account_id: str, session: Session | None = None) -> AccountInfo | None:
        """The account, or None."""
        with self._read(session) as conn:
            row = conn.execute(_SELECT_ACCOUNT, {"account_id": account_id}).first()
        return AccountInfo(*row) if row is not None else None

    def accounts(self, prefix: str = "", session: Session | None = None) -> list[AccountInfo]:
        """Every account whose id starts with ``prefix``, by id."""
        query = select(*_ACCOUNT_COLUMNS).order_by(_ACCOUNTS.c.id)
        if prefix:
            query = query.where(_ACCOUNTS.c.id.startswith(prefix, autoescape=True))
        with self._read(session) as conn:
            return [AccountInfo(*row) for row in conn.execute(query)]

    def _need(self, account_id: str, session: Session | None) -> AccountInfo:
        info = self.account(account_id, session)
        if info is None:
            raise LedgerError(f"unknown account {account_id}")
        return info

    def balance(self, account_id: str, session: Session | None = None) -> int:
        """The account's balance: the sum of its postings, debits positive (read from the cached column,
        which :meth:`check_invariants` compares with the postings)."""
        return self._need(account_id, session).balance

    def available(self, account_id: str, session: Session | None = None) -> int:
        """The balance on the account's normal side: ``-balance`` for liability (and equity, income)
        accounts, ``balance`` for asset and expense accounts. For a cardholder's deposit account this
        is the customer's money."""
        return self._need(account_id, session).available

    def spendable(self, account_id: str, session: Session | None = None) -> int:
        """``available + credit_limit``: what an entry may still take from the account."""
        return self._need(account_id, session).spendable

    # -- entries -----------------------------------------------------------------------------------
    def post(self, entry_id: str, lines: Sequence[tuple[str, int]], *, kind: str, memo: str = "",
             reference: str | None = None, session: Session | None = None) -> bool:
        """Post a balanced entry atomically. Returns True if written, False if ``entry_id`` was already
        posted with the same lines (an idempotent retry; ``kind``/``memo``/``reference`` are not compared).

        Raises :class:`LedgerError` (unbalanced, fewer than two lines, a zero or non-int amount, unknown
        account, mixed currencies, ``entry_id`` already posted with other lines) or
        :class:`InsufficientFunds`; either way nothing is written. With ``session`` the entry joins the
        caller's transaction (use a session from :func:`.db.session_scope`, whose BEGIN IMMEDIATE takes
        SQLite's write lock up front), and a refusal leaves that transaction usable; without, the entry
        commits on its own.
        """
        _check_account_id(entry_id, what="entry id")
        if not isinstance(kind, str) or not 1 <= len(kind) <= 40:
            raise LedgerError(f"entry {entry_id}: kind must be a string of 1-40 characters")
        if reference is not None and (not isinstance(reference, str) or len(reference) > 100):
            raise LedgerError(f"entry {entry_id}: reference must be a string of at most 100 characters")
        norm = _normalise(entry_id, lines)
        digest = lines_hash(norm)
        with self._write(session) as conn:
            balances = self._post(conn, entry_id, norm, digest, kind, memo, reference)
        if balances is None:
            return False
        self._sync_orm(session, balances)
        return True

    def _post(self, conn: Connection, entry_id: str, lines: list[tuple[str, int]], digest: str, kind: str,
              memo: str, reference: str | None) -> dict[str, int] | None:
        """Lock, check, write; returns the new balances of the touched accounts, or None for a retry."""
        ids = sorted({account for account, _ in lines})
        select_accounts = self._fast_accounts.get(len(ids))
        if select_accounts is None:
            query = (select(*_ACCOUNT_COLUMNS).where(_ACCOUNTS.c.id.in_([bindparam(f"a{i}") for i in range(len(ids))]))
                     .order_by(_ACCOUNTS.c.id))
            if not self._sqlite:
                query = query.with_for_update()
            select_accounts = self._fast_accounts[len(ids)] = _DriverSql(query, self.engine.dialect)
        accounts = {}
        for row in select_accounts.rows(conn, {f"a{i}": a for i, a in enumerate(ids)}):
            account_id, owner, kind_, currency, allow_negative, credit_limit, balance, created = row
            accounts[account_id] = AccountInfo(account_id, owner, kind_, currency, bool(allow_negative),
                                               int(credit_limit), int(balance), created)
        # After the locks: a concurrent post of this entry over the same accounts has committed by now.
        found = self._fast_hash.rows(conn, {"entry_id": entry_id})
        if found:
            _same_or_fail(found[0][0], entry_id, digest)
            return None
        missing = [a for a in ids if a not in accounts]
        if missing:
            raise LedgerError(f"entry {entry_id}: unknown account(s) {', '.join(missing)}")
        currencies = {accounts[a].currency for a in ids}
        if len(currencies) > 1:
            raise LedgerError(f"entry {entry_id}: accounts in different currencies {sorted(currencies)}")
        deltas: dict[str, int] = defaultdict(int)
        for account, amount in lines:
            deltas[account] += amount
        for account_id in ids:
            acc = accounts[account_id]
            change = normal_sign(acc.kind) * deltas[account_id]
            if not acc.allow_negative and change < 0 and acc.spendable + change < 0:
                raise InsufficientFunds(account_id, available=acc.available, credit_limit=acc.credit_limit,
                                        change=change)
        inserted = self._fast_entry.rows(conn, {
            "p_id": entry_id, "p_kind": kind, "p_memo": memo or "", "p_reference": reference,
            "p_created": self.clock(), "p_lines_hash": digest})
        if not inserted:
            # PostgreSQL: a concurrent post of this id over other accounts (no row lock ordered us) won;
            # ON CONFLICT waited for its commit, so a new statement sees it. Nothing is written yet.
            winner = conn.execute(_SELECT_HASH, {"entry_id": entry_id}).scalar()
            assert winner is not None
            _same_or_fail(winner, entry_id, digest)
            return None
        self._fast_postings.many(conn, [{"p_entry_id": entry_id, "p_account_id": a, "p_amount": v} for a, v in lines])
        changed = [{"b_id": a, "b_delta": d} for a, d in deltas.items() if d]
        if changed:
            self._fast_balance.many(conn, changed)
        return {a: accounts[a].balance + d for a, d in deltas.items()}

    def entry(self, entry_id: str, session: Session | None = None) -> Entry | None:
        """The posted entry ``entry_id``, or None."""
        with self._read(session) as conn:
            rows = self._entries(conn, _ENTRIES.c.id == entry_id)
        return rows[0] if rows else None

    def entries(self, *, reference: str, session: Session | None = None) -> list[Entry]:
        """Every entry with ``reference`` (e.g. an RRN), oldest first."""
        with self._read(session) as conn:
            return self._entries(conn, _ENTRIES.c.reference == reference)

    @staticmethod
    def _entries(conn: Connection, where: ColumnElement[bool]) -> list[Entry]:
        heads = conn.execute(select(_ENTRIES).where(where).order_by(_ENTRIES.c.created, _ENTRIES.c.id)).all()
        if not heads:
            return []
        lines: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for entry_id, account_id, amount in conn.execute(
                select(_POSTINGS.c.entry_id, _POSTINGS.c.account_id, _POSTINGS.c.amount)
                .where(_POSTINGS.c.entry_id.in_([h.id for h in heads])).order_by(_POSTINGS.c.id)):
            lines[entry_id].append((account_id, int(amount)))
        return [Entry(h.id, h.kind, h.memo, h.reference, h.created, tuple(lines[h.id]), h.lines_hash) for h in heads]

    # -- invariants --------------------------------------------------------------------------------
    def check_invariants(self) -> None:
        """Raise :class:`LedgerInvariantError` listing every problem: an entry whose postings do not sum to
        zero (or that has none, or whose postings no longer match its lines hash), a non-zero sum over
        all postings, a cached balance that differs from its postings, an ``allow_negative=False``
        account below its floor. Reads one consistent snapshot (REPEATABLE READ on PostgreSQL)."""
        problems: list[str] = []
        engine = self.engine if self._sqlite else self.engine.execution_options(isolation_level="REPEATABLE READ")
        p, e, a = _POSTINGS.c, _ENTRIES.c, _ACCOUNTS.c
        with engine.connect() as conn, conn.begin():
            for entry_id, total in conn.execute(
                    select(p.entry_id, func.sum(p.amount)).group_by(p.entry_id)
                    .having(func.sum(p.amount) != 0).order_by(p.entry_id)):
                problems.append(f"entry {entry_id} sums to {int(total)}, not 0")
            for (entry_id,) in conn.execute(select(e.id).where(~e.id.in_(select(p.entry_id))).order_by(e.id)):
                problems.append(f"entry {entry_id} has no postings")
            grand = int(conn.execute(select(func.coalesce(func.sum(p.amount), 0))).scalar() or 0)
            if grand:
                problems.append(f"all postings sum to {grand}, not 0")
            sums = {k: int(v) for k, v in conn.execute(select(p.account_id, func.sum(p.amount)).group_by(p.account_id))}
            for row in conn.execute(select(*_ACCOUNT_COLUMNS).order_by(a.id)):
                acc = AccountInfo(*row)
                posted = sums.get(acc.id, 0)
                if posted != acc.balance:
                    problems.append(f"account {acc.id}: cached balance {acc.balance} != postings {posted}")
                available = normal_sign(acc.kind) * posted
                if not acc.allow_negative and available + acc.credit_limit < 0:
                    problems.append(f"account {acc.id}: available {available} below its floor -{acc.credit_limit}")
            lines: dict[str, list[tuple[str, int]]] = defaultdict(list)
            for entry_id, account_id, amount in conn.execute(select(p.entry_id, p.account_id, p.amount)):
                lines[entry_id].append((account_id, int(amount)))
            for entry_id, digest in conn.execute(select(e.id, e.lines_hash).order_by(e.id)):
                if entry_id in lines and lines_hash(lines[entry_id]) != digest:
                    problems.append(f"entry {entry_id}: postings do not match its lines hash")
        if problems:
            raise LedgerInvariantError(problems)


# -- helpers ----------------------------------------------------------------------------------------


def _check_account_id(value: object, *, what: str = "account id") -> None:
    if not isinstance(value, str) or not 1 <= len(value) <= ID_LEN or value != value.strip():
        raise LedgerError(f"{what} must be a string of 1-{ID_LEN} characters without outer spaces, got {value!r}")


def _normalise(entry_id: str, lines: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    try:
        out = [(account, amount) for account, amount in lines]
    except (TypeError, ValueError):
        raise LedgerError(f"entry {entry_id}: lines must be (account_id, amount) pairs") from None
    if len(out) < 2:
        raise LedgerError(f"entry {entry_id}: needs at least two lines, got {len(out)}")
    for i, (account, amount) in enumerate(out):
        _check_account_id(account)
        if isinstance(amount, bool) or not isinstance(amount, int) or amount == 0:
            raise LedgerError(f"entry {entry_id}: line {i} amount must be a non-zero int (fen), got {amount!r}")
        if abs(amount) > 10**15:
            raise LedgerError(f"entry {entry_id}: line {i} amount {amount} is out of range")
    total = sum(amount for _, amount in out)
    if total:
        raise LedgerError(f"entry {entry_id}: lines sum to {total}, not 0 (debits positive, credits negative)")
    return out


def _check_limit(account_id: str, credit_limit: object) -> None:
    if isinstance(credit_limit, bool) or not isinstance(credit_limit, int) or credit_limit < 0:
        raise LedgerError(f"account {account_id}: credit_limit must be an int >= 0, got {credit_limit!r}")


def _same_or_fail(existing_hash: str, entry_id: str, digest: str) -> bool:
    if existing_hash != digest:
        raise LedgerError(f"entry {entry_id} already posted with other lines")
    return False
