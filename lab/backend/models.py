"""Core tables: the ledger (accounts, journal entries, postings), cards, terminals, authorizations.

Amounts are integers in fen (``BigInteger``); times are Unix seconds (float) from the context clock.
Other backend modules declare their own tables on the same :class:`~.db.Base`.

The ``cards`` table of an issuer holds the full PAN (it is the issuer's card file): never log a
:class:`Card` row's ``pan``; ``repr`` masks it, and the ``authorizations`` log keeps masked PANs only.
"""

from __future__ import annotations

import time

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Double,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from ..protocol.masking import mask_pan
from .db import Base

__all__ = [
    "ACCOUNT_KINDS",
    "AUTH_STATUSES",
    "CARD_STATUSES",
    "Account",
    "Authorization",
    "Card",
    "JournalEntry",
    "Posting",
    "Terminal",
]

ACCOUNT_KINDS: tuple[str, ...] = ("asset", "liability", "equity", "income", "expense")
CARD_STATUSES: tuple[str, ...] = ("active", "blocked", "lost", "stolen")
AUTH_STATUSES: tuple[str, ...] = ("approved", "declined", "reversed")

AutoId = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER PRIMARY KEY only
ID_LEN = 200


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Account(Base):
    """A ledger account. ``balance`` caches the sum of its postings (debits positive), kept in step by
    :meth:`.ledger.Ledger.post` in the same transaction; ``credit_limit`` lets an ``allow_negative=False``
    account go that far below zero (an overdraft or credit line, see :mod:`.ledger`)."""

    __tablename__ = "accounts"
    __table_args__ = (
        CheckConstraint(_in("kind", ACCOUNT_KINDS), name="ck_accounts_kind"),
        CheckConstraint("credit_limit >= 0", name="ck_accounts_credit_limit"),
    )

    id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    owner: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(3), default="156")
    allow_negative: Mapped[bool] = mapped_column(Boolean, default=False)
    credit_limit: Mapped[int] = mapped_column(BigInteger, default=0)
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    created: Mapped[float] = mapped_column(Double, default=time.time)

    def __repr__(self) -> str:
        return f"Account(id={self.id!r}, kind={self.kind!r}, balance={self.balance})"


class JournalEntry(Base):
    """A journal entry; ``id`` is the caller's idempotency key, ``lines_hash`` the SHA-256 of its
    canonical lines (:func:`.ledger.lines_hash`)."""

    __tablename__ = "journal_entries"

    id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    memo: Mapped[str] = mapped_column(Text, default="")
    reference: Mapped[str | None] = mapped_column(String(100), index=True)
    created: Mapped[float] = mapped_column(Double, default=time.time)
    lines_hash: Mapped[str] = mapped_column(String(64))


class Posting(Base):
    """One line of a journal entry: ``amount`` fen, debit positive, credit negative."""

    __tablename__ = "postings"
    __table_args__ = (Index("ix_postings_account", "account_id"), Index("ix_postings_entry", "entry_id"))

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    entry_id: Mapped[str] = mapped_column(String(ID_LEN), ForeignKey("journal_entries.id"))
    account_id: Mapped[str] = mapped_column(String(ID_LEN), ForeignKey("accounts.id"))
    amount: Mapped[int] = mapped_column(BigInteger)


class Card(Base):
    """The issuer's card file. ``account_id`` is the online (debit or credit) account, None for a pure
    e-cash card; ``ecash_account_id`` the issuer's shadow of the card's e-cash balance; ``last_atc``
    the highest ATC seen online (replay detection); ``daily_limit`` fen per day, None = none."""

    __tablename__ = "cards"
    __table_args__ = (CheckConstraint(_in("status", CARD_STATUSES), name="ck_cards_status"),)

    pan: Mapped[str] = mapped_column(String(19), primary_key=True)
    psn: Mapped[str] = mapped_column(String(2), default="00")
    expiry: Mapped[str | None] = mapped_column(String(6))  # YYMMDD
    issuer: Mapped[str] = mapped_column(String(32), index=True)
    account_id: Mapped[str | None] = mapped_column(String(ID_LEN), ForeignKey("accounts.id"))
    ecash_account_id: Mapped[str | None] = mapped_column(String(ID_LEN), ForeignKey("accounts.id"))
    status: Mapped[str] = mapped_column(String(8), default="active")
    last_atc: Mapped[int] = mapped_column(Integer, default=0)
    profile: Mapped[str | None] = mapped_column(String(64))
    daily_limit: Mapped[int | None] = mapped_column(BigInteger)

    def __repr__(self) -> str:
        return f"Card(pan={mask_pan(self.pan or '')!r}, issuer={self.issuer!r}, status={self.status!r})"


class Terminal(Base):
    """A POS terminal at the acquirer: TMK (hex of a TEST KEY), the working keys from the last sign-on
    (hex, under nobody: this is a lab), batch number (field 60.2) and sign-on state."""

    __tablename__ = "terminals"

    tid: Mapped[str] = mapped_column(String(8), primary_key=True)
    mid: Mapped[str] = mapped_column(String(15), index=True)
    name: Mapped[str] = mapped_column(String(40), default="")
    tmk: Mapped[str] = mapped_column(String(64))
    pik: Mapped[str | None] = mapped_column(String(64))
    mak: Mapped[str | None] = mapped_column(String(64))
    tdk: Mapped[str | None] = mapped_column(String(64))
    batch_no: Mapped[int] = mapped_column(Integer, default=1)
    signed_on: Mapped[bool] = mapped_column(Boolean, default=False)

    def __repr__(self) -> str:
        return f"Terminal(tid={self.tid!r}, mid={self.mid!r}, batch_no={self.batch_no}, signed_on={self.signed_on})"


class Authorization(Base):
    """The authorization log of the acquirer, the switch and each issuer (``role``: ``"acquirer"``,
    ``"switch"`` or ``"issuer:<name>"``). ``(role, tid, stan, batch)`` is unique: a second request with
    the same key is a duplicate (response 94). PANs are stored masked only."""

    __tablename__ = "authorizations"
    __table_args__ = (
        UniqueConstraint("role", "tid", "stan", "batch", name="uq_authorizations_dup"),
        CheckConstraint(_in("status", AUTH_STATUSES), name="ck_authorizations_status"),
        Index("ix_authorizations_rrn", "rrn"),
    )

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    role: Mapped[str] = mapped_column(String(40))
    tid: Mapped[str] = mapped_column(String(8))
    mid: Mapped[str | None] = mapped_column(String(15))
    stan: Mapped[str] = mapped_column(String(6))
    batch: Mapped[int] = mapped_column(Integer, default=0)
    rrn: Mapped[str | None] = mapped_column(String(12))
    pan_masked: Mapped[str | None] = mapped_column(String(19))
    amount: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3), default="156")
    mti: Mapped[str] = mapped_column(String(4))
    processing_code: Mapped[str | None] = mapped_column(String(6))
    response_code: Mapped[str | None] = mapped_column(String(2))
    auth_code: Mapped[str | None] = mapped_column(String(6))
    status: Mapped[str] = mapped_column(String(8))
    ledger_entry_id: Mapped[str | None] = mapped_column(String(ID_LEN), ForeignKey("journal_entries.id"))
    created: Mapped[float] = mapped_column(Double, default=time.time)
