"""Seed the backend from its configuration: ledger accounts, cards, terminals and opening balances.

Idempotent: running it again opens nothing new and posts nothing new. Runtime state is kept on a
re-run (card status and last ATC, terminal keys, batch number and sign-on state); static data follows
the configuration (card links and limits, terminal MID/name/TMK, account credit limits). An opening
balance changed in the configuration after it was posted is refused (:class:`SeedError`): the ledger
never rewrites history; use a new state dir.

What is opened (ids and kinds in :mod:`.ledger`): per issuer ``settlement``, ``equity``,
``fee-income``, and per card its cardholder account (debit or credit seed) and its ``ecash-float``
account (e-cash seed); for the acquirer ``acquirer:settlement``, ``acquirer:equity``,
``acquirer:fee-income`` and ``acquirer:merchant:<mid>`` per terminal MID; for the switch
``switch:<institution id>:due`` per issuer and for the acquirer. Opening balances are entries
``seed:opening:<account id>`` (kind ``opening``): debit ``issuer:<name>:equity``, credit the account.

Cards come from the issuer's bundled profiles (PAN, PSN, expiry, profile name) and from account seeds
whose PAN no profile has (PSN ``00``, no expiry, no profile).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..protocol.errors import PaylabError
from .config import AccountSeed, BackendConfig, IssuerConfig
from .ledger import (
    ACQUIRER_EQUITY,
    ACQUIRER_FEE_INCOME,
    ACQUIRER_SETTLEMENT,
    Ledger,
    LedgerError,
    account_number,
    cardholder_account,
    ecash_account,
    issuer_account,
    merchant_account,
    switch_due_account,
)
from .models import Account, Card, Terminal

__all__ = ["SeedError", "SeedSummary", "seed_accounts"]


class SeedError(PaylabError, ValueError):
    """The configuration conflicts with what the database already holds."""


@dataclass(frozen=True)
class SeedSummary:
    """What one :func:`seed_accounts` run added (all zero on a re-run)."""

    accounts_opened: int = 0
    entries_posted: int = 0
    cards_added: int = 0
    terminals_added: int = 0


def seed_accounts(config: BackendConfig, ledger: Ledger | None = None) -> SeedSummary:
    """Seed everything ``config`` describes, in one transaction; idempotent.

    Without ``ledger`` an engine is made from ``config.database_url`` (tables created) and disposed after.
    """
    if ledger is None:
        from .db import create_all, make_engine

        engine = make_engine(config.database_url)
        try:
            create_all(engine)
            return seed_accounts(config, Ledger(engine))
        finally:
            engine.dispose()
    from .db import session_scope

    with session_scope(ledger.engine) as s:
        return _Seeder(ledger, s).run(config)


class _Seeder:
    def __init__(self, ledger: Ledger, session: Session) -> None:
        self.ledger = ledger
        self.s = session
        self.known = set(session.scalars(select(Account.id)))
        self.opened = 0
        self.posted = 0
        self.cards = 0
        self.terminals = 0

    def run(self, config: BackendConfig) -> SeedSummary:
        for issuer in config.issuers:
            self.issuer(issuer)
        for role, kind in (("settlement", "asset"), ("equity", "equity"), ("fee-income", "income")):
            self.open({"settlement": ACQUIRER_SETTLEMENT, "equity": ACQUIRER_EQUITY,
                       "fee-income": ACQUIRER_FEE_INCOME}[role], "acquirer", kind, allow_negative=True)
        for t in config.terminals:
            self.open(merchant_account(t.mid), "acquirer", "liability", allow_negative=True)
            self.terminal(t.tid, t.mid, t.name, t.tmk.hex().upper())
        for code in [config.acquirer_id, *(i.institution_id for i in config.issuers)]:
            self.open(switch_due_account(code), "switch", "asset", allow_negative=True)
        return SeedSummary(self.opened, self.posted, self.cards, self.terminals)

    def open(self, account_id: str, owner: str, kind: str, *, allow_negative: bool = False,
             credit_limit: int = 0) -> None:
        if account_id in self.known:
            info = self.ledger.account(account_id, self.s)
            assert info is not None
            if (info.owner, info.kind, info.allow_negative) != (owner, kind, allow_negative):
                raise SeedError(f"account {account_id} exists as {info.kind} of {info.owner} "
                                f"(allow_negative={info.allow_negative}); the configuration wants {kind} of {owner}")
            if info.credit_limit != credit_limit:
                self.ledger.set_credit_limit(account_id, credit_limit, session=self.s)
            return
        self.ledger.open_account(account_id, owner=owner, kind=kind, allow_negative=allow_negative,
                                 credit_limit=credit_limit, session=self.s)
        self.known.add(account_id)
        self.opened += 1

    def opening_balance(self, issuer: str, account_id: str, amount: int) -> None:
        if amount <= 0:
            return
        entry_id = f"seed:opening:{account_id}"
        try:
            posted = self.ledger.post(entry_id, [(issuer_account(issuer, "equity"), amount), (account_id, -amount)],
                                      kind="opening", memo="opening balance from the configuration",
                                      session=self.s)
        except LedgerError as exc:
            raise SeedError(f"opening balance of {account_id} differs from the one already posted ({exc}); "
                            "the ledger keeps history: use a new state dir") from None
        self.posted += int(posted)

    def issuer(self, issuer: IssuerConfig) -> None:
        owner = f"issuer:{issuer.name}"
        self.open(issuer_account(issuer.name, "settlement"), owner, "asset", allow_negative=True)
        self.open(issuer_account(issuer.name, "equity"), owner, "equity", allow_negative=True)
        self.open(issuer_account(issuer.name, "fee-income"), owner, "income", allow_negative=True)
        profiles = {p.pan: p for p in issuer.load_profiles().values()}
        seeds: dict[str, dict[str, AccountSeed]] = {}
        for seed in issuer.accounts:
            seeds.setdefault(seed.pan, {})["ecash" if seed.kind == "ecash" else "main"] = seed
        for pan in [*profiles, *(p for p in seeds if p not in profiles)]:
            account_no = account_number(issuer.name, pan)
            main = seeds.get(pan, {}).get("main")
            ecash = seeds.get(pan, {}).get("ecash")
            main_id = ecash_id = None
            if main is not None:
                main_id = cardholder_account(issuer.name, account_no)
                self.open(main_id, owner, "liability", credit_limit=main.credit_limit_fen)
                self.opening_balance(issuer.name, main_id, main.balance_fen)
            if ecash is not None:
                ecash_id = ecash_account(issuer.name, account_no)
                self.open(ecash_id, owner, "liability")
                self.opening_balance(issuer.name, ecash_id, ecash.balance_fen)
            profile = profiles.get(pan)
            self.card(
                pan=pan,
                psn=profile.psn if profile else "00",
                expiry=profile.expiry if profile else None,
                issuer=issuer.name,
                account_id=main_id,
                ecash_account_id=ecash_id,
                profile=profile.name if profile else None,
                daily_limit=(main.daily_limit_fen or None) if main else None,
            )

    def card(self, *, pan: str, psn: str, expiry: str | None, issuer: str, account_id: str | None,
             ecash_account_id: str | None, profile: str | None, daily_limit: int | None) -> None:
        row = self.s.get(Card, pan)
        static = {"psn": psn, "expiry": expiry, "issuer": issuer, "account_id": account_id,
                  "ecash_account_id": ecash_account_id, "profile": profile, "daily_limit": daily_limit}
        if row is None:
            self.s.add(Card(pan=pan, status="active", last_atc=0, **static))
            self.cards += 1
        else:
            for key, value in static.items():
                if getattr(row, key) != value:
                    setattr(row, key, value)
        self.s.flush()

    def terminal(self, tid: str, mid: str, name: str, tmk_hex: str) -> None:
        row = self.s.get(Terminal, tid)
        if row is None:
            self.s.add(Terminal(tid=tid, mid=mid, name=name, tmk=tmk_hex, batch_no=1, signed_on=False))
            self.terminals += 1
        else:
            row.mid, row.name = mid, name
            if row.tmk != tmk_hex:  # a new TMK invalidates the working keys
                row.tmk, row.pik, row.mak, row.tdk, row.signed_on = tmk_hex, None, None, None, False
        self.s.flush()
