"""Backend core: configuration, engines, the double-entry ledger and seeding, on SQLite and PostgreSQL.

Every ledger test runs twice: on a SQLite file (WAL) and on a private PostgreSQL server started for this
module (:class:`PostgresServer`). Without PostgreSQL the PostgreSQL half is skipped locally and FAILS
in CI (``CI=true``).
"""

from __future__ import annotations

import itertools
import os
import threading
from collections import defaultdict
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from paylab.lab.backend.config import (
    DEFAULT_CONFIG_FILE,
    BackendConfig,
    ConfigError,
    load_config,
)
from paylab.lab.backend.context import BackendContext
from paylab.lab.backend.db import Base, create_all, make_engine, session_scope
from paylab.lab.backend.ledger import (
    InsufficientFunds,
    Ledger,
    LedgerError,
    LedgerInvariantError,
    account_number,
    cardholder_account,
    ecash_account,
    issuer_account,
    lines_hash,
    merchant_account,
    normal_sign,
    switch_due_account,
)
from paylab.lab.backend.models import Account, Authorization, Card, JournalEntry, Posting, Terminal
from paylab.lab.backend.pgserver import PostgresServer, PostgresUnavailable
from paylab.lab.backend.seed import SeedError, seed_accounts

DEBIT_PAN = "6228488800000010"
ECASH_PAN = "6228488800000028"
CREDIT_PAN = "6217009900000000014"
_db_names = itertools.count(1)


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg_server():
    try:
        server = PostgresServer().start()
    except PostgresUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI: {exc}")
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ledger.db"
    server = request.getfixturevalue("pg_server")
    return server.create_database(f"t{next(_db_names)}")


CORE_TABLES = [m.__table__ for m in (Account, JournalEntry, Posting, Card, Terminal, Authorization)]


@pytest.fixture
def engine(db_url):
    eng = make_engine(db_url)
    Base.metadata.create_all(eng, tables=CORE_TABLES)  # only this module's tables: fast, and independent
    yield eng
    eng.dispose()


@pytest.fixture
def ledger(engine):
    return Ledger(engine, clock=lambda: 1_750_000_000.0)


def open_book(ledger: Ledger, prefix: str = "") -> dict[str, str]:
    """A small book: a bank cash account, two customer deposit accounts (floor 0), a credit account
    (credit line 500), equity."""
    ids = {name: f"{prefix}{name}" for name in ("cash", "alice", "bob", "carol", "equity")}
    ledger.open_account(ids["cash"], owner="bank", kind="asset", allow_negative=True)
    ledger.open_account(ids["alice"], owner="bank", kind="liability")
    ledger.open_account(ids["bob"], owner="bank", kind="liability")
    ledger.open_account(ids["carol"], owner="bank", kind="liability", credit_limit=500)
    ledger.open_account(ids["equity"], owner="bank", kind="equity", allow_negative=True)
    return ids


def counts(engine) -> tuple[int, int]:
    with engine.connect() as conn:
        return (conn.scalar(select(func.count()).select_from(JournalEntry)),
                conn.scalar(select(func.count()).select_from(Posting)))


# -- configuration ----------------------------------------------------------------------------------


def test_default_config_file_equals_defaults():
    assert load_config(DEFAULT_CONFIG_FILE) == load_config(None)


def test_defaults():
    cfg = load_config(None)
    assert [i.name for i in cfg.issuers] == ["bank-a", "bank-b"]
    assert cfg.issuer_for_pan(DEBIT_PAN).name == "bank-a"
    assert cfg.issuer_for_pan(CREDIT_PAN).name == "bank-b"
    assert cfg.issuer_for_pan("4111111111111111") is None
    bank_a = cfg.issuer("bank-a")
    assert bank_a.profiles == ["pboc_debit_ecash_sm4", "pboc_ecash_only_sm4"]
    assert bank_a.issuer_keys("pboc_debit_ecash_sm4").alg == "sm4"
    assert cfg.issuer("bank-b").issuer_keys("pboc_credit_ecash_3des").alg == "3des"
    seeds = {(s.pan, s.kind): s for i in cfg.issuers for s in i.accounts}
    assert seeds[(DEBIT_PAN, "debit")].balance_fen == 1_000_000
    assert seeds[(DEBIT_PAN, "ecash")].balance_fen == 38787
    assert seeds[(ECASH_PAN, "ecash")].balance_fen == 5000
    assert seeds[(CREDIT_PAN, "credit")].credit_limit_fen == 500_000
    assert seeds[(CREDIT_PAN, "ecash")].balance_fen == 20000
    assert [t.tid for t in cfg.terminals] == ["PAYLAB01", "PAYLAB02", "PAYLAB03"]
    assert all(len(t.tmk) == 16 for t in cfg.terminals)
    assert {i.name: i.kind for i in cfg.institutions} == {
        "bank-a": "bank", "bank-b": "bank", "unionpay": "unionpay", "operator-cm": "operator",
        "operator-cu": "operator", "mtps": "mtps"}
    assert cfg.database_url == f"sqlite:///{cfg.state_dir}/backend.db"
    assert cfg.clearing_dir == cfg.state_dir / "clearing"
    assert (cfg.host, cfg.ports.acquirer, cfg.issuer_timeout_s, cfg.acquirer_id) == ("127.0.0.1", 0, 2.0, "48020000")
    assert (cfg.remote_payment.otp_ttl_s, cfg.remote_payment.otp_max_tries) == (300, 3)
    # keys and PANs stay out of reprs
    text = repr(cfg)
    assert DEBIT_PAN not in text
    assert "0123456789ABCDEF" not in text.upper()
    assert cfg.institutions[0].hmac_key.hex() not in text


def test_overrides_and_file(tmp_path):
    cfg = load_config(overrides={"state_dir": tmp_path, "ports.http": 8080, "ports": {"issuers": 9100}})
    assert cfg.state_dir == tmp_path
    assert cfg.database_url == f"sqlite:///{tmp_path}/backend.db"
    assert (cfg.ports.http, cfg.ports.issuers, cfg.ports.issuer_port(1)) == (8080, 9100, 9101)
    file = tmp_path / "backend.yaml"
    file.write_text(yaml.safe_dump({
        "test_keys": True, "issuer_timeout_s": 0.5,
        "issuers": [{"name": "bank-a", "institution_id": "01028480001", "bins": ["622848"],
                     "profiles": ["pboc_debit_ecash_sm4"]}],
    }))
    cfg = load_config(file)
    assert cfg.issuer_timeout_s == 0.5
    assert len(cfg.terminals) == 3  # not in the file: default
    # accounts omitted: one seed set per profile PAN
    assert [(s.kind, s.balance_fen) for s in cfg.issuers[0].accounts] == [("debit", 1_000_000), ("ecash", 38787)]
    assert cfg.issuers[0].single_limit("debit") is None  # no single-transaction limit by default
    issuers = [{"name": "bank-a", "institution_id": "01028480001", "bins": ["622848"],
                "single_limit_fen": {"debit": 200_000, "credit": 0, "ecash": 50_000}}]
    limited = load_config(overrides={"state_dir": tmp_path, "issuers": issuers}).issuers[0]
    assert (limited.single_limit("debit"), limited.single_limit("credit"), limited.single_limit("ecash")) == (
        200_000, None, 50_000)


BAD_CONFIGS = [
    ({"issuers": [{"name": "bank-a", "institution_id": "01028480001", "bins": ["622848"]},
                  {"name": "bank-c", "institution_id": "01028480002", "bins": ["62"]}]},
     "config field 'issuers[1].bins[0]': not 6-8 digits"),
    ({"test_keys": False}, "config field 'test_keys': must be true"),
    ({"colour": "blue"}, "config field 'colour': unknown field"),
    ({"ports.http": 70000}, "config field 'ports.http': 70000 is outside 0..65535"),
    ({"issuer_timeout_s": 0}, "config field 'issuer_timeout_s': 0 is outside"),
    ({"acquirer_id": 48020000}, "config field 'acquirer_id': must be a quoted string"),
    ({"database_url": "mysql://x"}, "config field 'database_url': must be a sqlite"),
    ({"issuers": [{"name": "Bank A", "institution_id": "01028480001", "bins": ["622848"]}]},
     "config field 'issuers[0].name': must be 1-32 characters"),
    ({"issuers": [{"name": "bank-a", "institution_id": "0102848", "bins": ["622848"]}]},
     "config field 'issuers[0].institution_id': not 11 digits"),
    ({"issuers": [{"name": "bank-a", "institution_id": "01028480001", "bins": ["622848"],
                   "profiles": ["pboc_credit_ecash_3des"]}]},
     "config field 'issuers[0].profiles[0]': the PAN of profile 'pboc_credit_ecash_3des' matches none"),
    ({"issuers": [{"name": "bank-a", "institution_id": "01028480001", "bins": ["622848"], "profiles": ["nope"]}]},
     "config field 'issuers[0].profiles[0]': profile field '(name)': no bundled profile 'nope'"),
    ({"issuers": [{"name": "bank-a", "institution_id": "01028480001", "bins": ["622848"],
                   "accounts": [{"pan": "6228488800000011", "kind": "debit"}]}]},
     "config field 'issuers[0].accounts[0].pan': Luhn check digit is wrong"),
    ({"issuers": [{"name": "bank-a", "institution_id": "01028480001", "bins": ["622848"],
                   "accounts": [{"pan": DEBIT_PAN, "kind": "savings"}]}]},
     "config field 'issuers[0].accounts[0].kind': must be one of debit, credit, ecash"),
    ({"issuers": [{"name": "bank-a", "institution_id": "01028480001", "bins": ["622848"],
                   "accounts": [{"pan": DEBIT_PAN, "kind": "debit", "balance_fen": -1}]}]},
     "config field 'issuers[0].accounts[0].balance_fen': -1 is outside"),
    ({"issuers": [{"name": "bank-a", "institution_id": "01028480001", "bins": ["622848"],
                   "single_limit_fen": {"savings": 1}}]},
     "config field 'issuers[0].single_limit_fen.savings': unknown field"),
    ({"terminals": [{"tid": "SHORT", "mid": "898440154110001", "tmk": "00" * 16}]},
     "config field 'terminals[0].tid': must be 8 printable characters (ans8)"),
    ({"terminals": [{"tid": "PAYLAB01", "mid": "898440154110001", "tmk": "00" * 8}]},
     "config field 'terminals[0].tmk': must be 16 bytes (a TEST KEY), got 8"),
    ({"terminals": [{"tid": "PAYLAB01", "mid": "898440154110001", "tmk": "00" * 16},
                    {"tid": "PAYLAB01", "mid": "898440154110002", "tmk": "00" * 16}]},
     "config field 'terminals[1].tid': duplicate tid 'PAYLAB01'"),
    ({"institutions": [{"name": "x", "kind": "telco", "api_key_id": "k", "hmac_key": "00" * 32}]},
     "config field 'institutions[0].kind': must be one of bank, unionpay, operator, oem, se-issuer, mtps"),
    ({"institutions": [{"name": "x", "kind": "bank", "api_key_id": "k", "hmac_key": "xyz"}]},
     "config field 'institutions[0].hmac_key': not an even number of hex digits"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_CONFIGS)
def test_config_errors_are_one_line_and_name_the_field(overrides, message):
    with pytest.raises(ConfigError) as info:
        load_config(overrides=overrides)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(message), text


def test_config_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("ports: {http: [1]}\n")
    with pytest.raises(ConfigError, match=r"^config field 'ports.http': must be an integer.* \(in bad.yaml\)$"):
        load_config(bad)
    bad.write_text("issuers: [\n")
    with pytest.raises(ConfigError, match=r"^config field '\(document\)': not valid YAML at line \d+"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


# -- engines ----------------------------------------------------------------------------------------


def test_sqlite_engine_settings(tmp_path):
    eng = make_engine(f"sqlite:///{tmp_path}/sub/dir/x.db")
    try:
        with eng.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
        create_all(eng)
        with eng.connect() as conn:
            names = set(conn.scalars(text("SELECT name FROM sqlite_master WHERE type = 'table'")))
        assert {"accounts", "journal_entries", "postings", "cards", "terminals", "authorizations"} <= names
    finally:
        eng.dispose()


def test_foreign_keys_enforced(engine):
    with pytest.raises(IntegrityError, match=r"(?i)foreign key"), session_scope(engine) as s:
        s.execute(insert(Posting).values(entry_id="nope", account_id="nope", amount=1))


# -- the ledger -------------------------------------------------------------------------------------


def test_balanced_posting(ledger):
    ids = open_book(ledger)
    assert ledger.post("dep-1", [(ids["cash"], 10_000), (ids["alice"], -10_000)], kind="deposit",
                       memo="cash in", reference="RRN000000001")
    assert ledger.post("buy-1", [(ids["alice"], 2_500), (ids["bob"], -2_500)], kind="purchase")
    assert ledger.balance(ids["alice"]) == -7_500
    assert ledger.available(ids["alice"]) == 7_500  # liability: the customer's money is the credit balance
    assert ledger.available(ids["bob"]) == 2_500
    assert ledger.balance(ids["cash"]) == ledger.available(ids["cash"]) == 10_000
    entry = ledger.entry("dep-1")
    assert entry is not None
    assert entry.lines == ((ids["cash"], 10_000), (ids["alice"], -10_000))
    assert (entry.kind, entry.memo, entry.reference, entry.created) == ("deposit", "cash in", "RRN000000001",
                                                                        1_750_000_000.0)
    assert entry.lines_hash == lines_hash(list(reversed(entry.lines)))
    assert [e.id for e in ledger.entries(reference="RRN000000001")] == ["dep-1"]
    assert ledger.entry("nope") is None
    ledger.check_invariants()


def test_unbalanced_and_malformed_entries_are_refused(ledger, engine):
    ids = open_book(ledger)
    before = counts(engine)
    bad = [
        ([(ids["cash"], 100), (ids["alice"], -99)], "sum to 1, not 0"),
        ([(ids["cash"], 100)], "at least two lines"),
        ([], "at least two lines"),
        ([(ids["cash"], 0), (ids["alice"], 0)], "non-zero int"),
        ([(ids["cash"], 1.0), (ids["alice"], -1.0)], "non-zero int"),
        ([(ids["cash"], True), (ids["alice"], -1)], "non-zero int"),
        ([(ids["cash"], 5), ("nobody", -5)], "unknown account"),
        ([(ids["cash"], 5), ("", -5)], "account id"),
    ]
    for lines, message in bad:
        with pytest.raises(LedgerError, match=message):
            ledger.post("bad", lines, kind="test")
    ledger.open_account("usd", owner="bank", kind="liability", currency="840", allow_negative=True)
    with pytest.raises(LedgerError, match="different currencies"):
        ledger.post("fx", [(ids["cash"], 5), ("usd", -5)], kind="test")
    assert counts(engine) == before
    assert ledger.entry("bad") is None
    ledger.check_invariants()


def test_open_account_is_idempotent(ledger):
    ledger.open_account("a", owner="bank", kind="asset")
    ledger.open_account("a", owner="bank", kind="asset")
    with pytest.raises(LedgerError, match="already open with other attributes"):
        ledger.open_account("a", owner="bank", kind="liability")
    with pytest.raises(LedgerError, match="kind must be one of"):
        ledger.open_account("b", owner="bank", kind="cash")
    assert [a.id for a in ledger.accounts()] == ["a"]


def test_idempotent_by_entry_id(ledger, engine):
    ids = open_book(ledger)
    lines = [(ids["cash"], 500), (ids["alice"], -300), (ids["bob"], -200)]
    assert ledger.post("e1", lines, kind="deposit") is True
    after_first = counts(engine)
    assert ledger.post("e1", lines, kind="deposit") is False
    assert ledger.post("e1", list(reversed(lines)), kind="deposit") is False  # same lines, other order
    assert counts(engine) == after_first
    with pytest.raises(LedgerError, match="entry e1 already posted with other lines"):
        ledger.post("e1", [(ids["cash"], 501), (ids["alice"], -501)], kind="deposit")
    assert counts(engine) == after_first
    assert ledger.available(ids["alice"]) == 300
    ledger.check_invariants()


def test_insufficient_funds_writes_nothing(ledger, engine):
    ids = open_book(ledger)
    ledger.post("dep", [(ids["cash"], 1_000), (ids["alice"], -1_000)], kind="deposit")
    before = counts(engine)
    with pytest.raises(InsufficientFunds) as info:
        ledger.post("big", [(ids["alice"], 1_001), (ids["bob"], -1_001)], kind="purchase")
    assert (info.value.account_id, info.value.available, info.value.shortfall) == (ids["alice"], 1_000, 1)
    assert isinstance(info.value, LedgerError)
    assert counts(engine) == before
    assert ledger.entry("big") is None
    assert ledger.available(ids["alice"]) == 1_000
    assert ledger.available(ids["bob"]) == 0
    # exactly to zero is fine; the same id can be used once the funds are there
    assert ledger.post("big", [(ids["alice"], 1_000), (ids["bob"], -1_000)], kind="purchase")
    assert ledger.available(ids["alice"]) == 0
    # a credit line: carol may go to -500, not beyond
    assert ledger.post("c1", [(ids["carol"], 500), (ids["cash"], -500)], kind="purchase")
    assert (ledger.available(ids["carol"]), ledger.spendable(ids["carol"])) == (-500, 0)
    with pytest.raises(InsufficientFunds):
        ledger.post("c2", [(ids["carol"], 1), (ids["cash"], -1)], kind="purchase")
    ledger.check_invariants()


def test_post_joins_the_callers_transaction(ledger, engine):
    ids = open_book(ledger)
    ledger.post("dep", [(ids["cash"], 1_000), (ids["alice"], -1_000)], kind="deposit")

    def auth(stan: str, entry: str | None) -> Authorization:
        return Authorization(role="issuer:bank-a", tid="PAYLAB01", stan=stan, batch=1, mti="0200", amount=100,
                             status="approved", ledger_entry_id=entry, created=1.0)

    # committed together
    with session_scope(engine) as s:
        assert ledger.post("p1", [(ids["alice"], 100), (ids["bob"], -100)], kind="purchase", session=s)
        s.add(auth("000001", "p1"))
        assert ledger.available(ids["alice"], session=s) == 900
    # rolled back together
    def abandoned() -> None:
        with session_scope(engine) as s:
            ledger.post("p2", [(ids["alice"], 100), (ids["bob"], -100)], kind="purchase", session=s)
            s.add(auth("000002", "p2"))
            s.flush()
            raise RuntimeError("acquirer went away")

    with pytest.raises(RuntimeError):
        abandoned()
    # a refusal inside the caller's transaction leaves its other work intact
    with session_scope(engine) as s:
        s.add(auth("000003", None))
        with pytest.raises(InsufficientFunds):
            ledger.post("p3", [(ids["alice"], 5_000), (ids["bob"], -5_000)], kind="purchase", session=s)
        acct = s.get(Account, ids["alice"])
        assert ledger.post("p4", [(ids["alice"], 50), (ids["bob"], -50)], kind="purchase", session=s)
        assert acct.balance == -850  # ORM objects in the session are kept in step
    with session_scope(engine, write=False) as s:
        assert sorted(s.scalars(select(Authorization.stan))) == ["000001", "000003"]
    assert ledger.entry("p2") is None
    assert ledger.entry("p3") is None
    assert ledger.available(ids["alice"]) == 850
    ledger.check_invariants()


def test_concurrent_posting_keeps_exact_balances(ledger, engine):
    threads, per_thread = 8, 200
    ids = open_book(ledger)
    customers = [ids["alice"], ids["bob"]]
    for i, c in enumerate(customers):
        ledger.post(f"fund-{i}", [(ids["cash"], 1_000_000), (c, -1_000_000)], kind="deposit")
    plans: list[list[tuple[str, list[tuple[str, int]]]]] = []
    for t in range(threads):
        plan = []
        for i in range(per_thread):
            if i % 20 == 0:  # the same entry posted by every thread: exactly one write
                entry_id = f"shared-{i}"
                lines = [(ids["cash"], 7), (customers[0], -7)]
            else:
                entry_id = f"t{t}-{i}"
                amount = (t * per_thread + i) % 97 + 1
                src, dst = customers[(t + i) % 2], customers[(t + i + 1) % 2]
                lines = [(src, amount), (dst, -amount)] if i % 3 else [(ids["cash"], amount), (dst, -amount)]
            plan.append((entry_id, lines))
        plans.append(plan)
    expected = {ids["cash"]: 2_000_000, customers[0]: -1_000_000, customers[1]: -1_000_000}
    unique = {entry_id: lines for plan in plans for entry_id, lines in plan}
    for lines in unique.values():
        for account, amount in lines:
            expected[account] += amount
    results: list[list[bool]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def worker(t: int) -> None:
        try:
            barrier.wait()
            for entry_id, lines in plans[t]:
                results[t].append(ledger.post(entry_id, lines, kind="transfer"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    assert not errors, errors
    assert sum(r.count(True) for r in results) == len(unique)
    assert sum(r.count(False) for r in results) == threads * per_thread - len(unique)
    for account, balance in expected.items():
        assert ledger.balance(account) == balance, account
    ledger.check_invariants()


def test_concurrent_same_id_over_disjoint_accounts(ledger, engine):
    # No row lock orders these posts: the primary key decides, and the losers learn about the winner.
    threads = 6
    for t in range(threads):
        ledger.open_account(f"src{t}", owner="x", kind="asset", allow_negative=True)
        ledger.open_account(f"dst{t}", owner="x", kind="liability")
    barrier = threading.Barrier(threads)
    outcomes: list[object] = []

    def worker(t: int) -> None:
        barrier.wait()
        try:
            outcomes.append(ledger.post("the-one", [(f"src{t}", 10), (f"dst{t}", -10)], kind="race"))
        except LedgerError as exc:
            outcomes.append(str(exc))

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    assert outcomes.count(True) == 1
    assert outcomes.count("entry the-one already posted with other lines") == threads - 1
    assert counts(engine) == (1, 2)
    ledger.check_invariants()


def test_invariant_check_detects_tampering(ledger, engine):
    ids = open_book(ledger)
    ledger.post("dep", [(ids["cash"], 1_000), (ids["alice"], -1_000)], kind="deposit")
    ledger.post("buy", [(ids["alice"], 400), (ids["bob"], -400)], kind="purchase")
    ledger.check_invariants()
    with engine.begin() as conn:  # a row written behind the ledger's back
        conn.execute(insert(Posting).values(entry_id="buy", account_id=ids["alice"], amount=700))
    with pytest.raises(LedgerInvariantError) as info:
        ledger.check_invariants()
    problems = "\n".join(info.value.problems)
    assert "entry buy sums to 700, not 0" in problems
    assert "all postings sum to 700, not 0" in problems
    assert f"account {ids['alice']}: cached balance -600 != postings 100" in problems
    assert f"account {ids['alice']}: available -100 below its floor -0" in problems
    assert "entry buy: postings do not match its lines hash" in problems
    assert "\n" not in str(info.value)


def test_invariant_check_detects_a_balanced_swap_and_a_stale_cache(ledger, engine):
    ids = open_book(ledger)
    ledger.post("dep", [(ids["cash"], 1_000), (ids["alice"], -600), (ids["bob"], -400)], kind="deposit")
    with engine.begin() as conn:  # swap the amounts of alice and bob: still balanced
        conn.execute(update(Posting).where(Posting.account_id == ids["alice"]).values(amount=-400))
        conn.execute(update(Posting).where(Posting.account_id == ids["bob"]).values(amount=-600))
    with pytest.raises(LedgerInvariantError, match="postings do not match its lines hash"):
        ledger.check_invariants()


_example = itertools.count()

line_st = st.tuples(st.integers(0, 3), st.integers(-300, 300).filter(bool))
op_st = st.tuples(
    st.sampled_from(["balanced", "balanced", "balanced", "unbalanced", "unknown", "repeat", "conflict"]),
    st.lists(line_st, min_size=1, max_size=4),
)


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=st.lists(op_st, min_size=1, max_size=12))
@pytest.mark.property
def test_random_entries_never_break_invariants(ledger, ops):
    prefix = f"h{next(_example)}:"
    names = [f"{prefix}cash", f"{prefix}alice", f"{prefix}carol", f"{prefix}equity"]
    kinds = ["asset", "liability", "liability", "equity"]
    floors = [None, 0, 150, None]  # None = allow_negative
    for name, kind, floor in zip(names, kinds, floors, strict=True):
        ledger.open_account(name, owner="h", kind=kind, allow_negative=floor is None, credit_limit=floor or 0)
    model = dict.fromkeys(names, 0)
    posted: list[tuple[str, list[tuple[str, int]]]] = []
    for n, (op, raw) in enumerate(ops):
        lines = [(names[i], amount) for i, amount in raw]
        total = sum(a for _, a in lines)
        if op == "repeat" and posted:
            entry_id, lines = posted[n % len(posted)]
            assert ledger.post(entry_id, lines, kind="h") is False
            continue
        if op == "conflict" and posted:
            entry_id, old = posted[n % len(posted)]
            with pytest.raises(LedgerError, match="already posted with other lines"):
                ledger.post(entry_id, [*old, (names[0], 1), (names[3], -1)], kind="h")
            continue
        entry_id = f"{prefix}e{n}"
        if op in ("balanced", "repeat", "conflict") and total:
            lines.append((names[0], -total))  # cash balances the entry
        if op == "unknown":
            lines += [(f"{prefix}ghost", 1), (names[0], -1 - total)] if total + 1 else [(f"{prefix}ghost", 1)]
        total = sum(a for _, a in lines)
        deltas: dict[str, int] = defaultdict(int)
        for account, amount in lines:
            deltas[account] += amount
        refused = None
        if total or len(lines) < 2 or op == "unknown":
            refused = LedgerError
        else:
            for i, name in enumerate(names):
                if floors[i] is None or name not in deltas:
                    continue
                change = normal_sign(kinds[i]) * deltas[name]
                if change < 0 and normal_sign(kinds[i]) * model[name] + change + floors[i] < 0:
                    refused = InsufficientFunds
        if refused is not None:
            with pytest.raises(refused):
                ledger.post(entry_id, lines, kind="h")
            assert ledger.entry(entry_id) is None
        else:
            assert ledger.post(entry_id, lines, kind="h") is True
            posted.append((entry_id, lines))
            for account, delta in deltas.items():
                model[account] += delta
    for name in names:
        assert ledger.balance(name) == model[name]
    ledger.check_invariants()


# -- seeding and the context ------------------------------------------------------------------------


def test_seed_is_idempotent_and_balanced(engine, db_url, tmp_path):
    cfg = load_config(overrides={"state_dir": tmp_path, "database_url": db_url})
    ledger = Ledger(engine)
    first = seed_accounts(cfg, ledger)
    assert first.accounts_opened > 0
    assert (first.entries_posted, first.cards_added, first.terminals_added) == (4, 3, 3)
    again = seed_accounts(cfg, ledger)
    assert (again.accounts_opened, again.entries_posted, again.cards_added, again.terminals_added) == (0, 0, 0, 0)
    ledger.check_invariants()

    debit_no = account_number("bank-a", DEBIT_PAN)
    credit_no = account_number("bank-b", CREDIT_PAN)
    assert ledger.available(cardholder_account("bank-a", debit_no)) == 1_000_000
    assert ledger.available(ecash_account("bank-a", debit_no)) == 38787
    assert ledger.available(ecash_account("bank-a", account_number("bank-a", ECASH_PAN))) == 5000
    assert ledger.available(cardholder_account("bank-b", credit_no)) == 0
    assert ledger.spendable(cardholder_account("bank-b", credit_no)) == 500_000
    assert ledger.available(issuer_account("bank-a", "equity")) == -(1_000_000 + 38787 + 5000)
    for name in (merchant_account("898440154110001"), "acquirer:settlement", switch_due_account("48020000"),
                 switch_due_account("01028480001"), issuer_account("bank-b", "settlement")):
        assert ledger.account(name) is not None, name
    all_ids = " ".join(a.id for a in ledger.accounts())
    assert DEBIT_PAN not in all_ids
    assert CREDIT_PAN not in all_ids

    with session_scope(engine, write=False) as s:
        cards = {c.pan: c for c in s.scalars(select(Card))}
        assert set(cards) == {DEBIT_PAN, ECASH_PAN, CREDIT_PAN}
        assert cards[DEBIT_PAN].account_id == cardholder_account("bank-a", debit_no)
        assert cards[DEBIT_PAN].ecash_account_id == ecash_account("bank-a", debit_no)
        assert (cards[DEBIT_PAN].psn, cards[DEBIT_PAN].expiry, cards[DEBIT_PAN].profile) == (
            "01", "301231", "pboc_debit_ecash_sm4")
        assert cards[DEBIT_PAN].daily_limit == 500_000
        assert cards[ECASH_PAN].account_id is None
        assert DEBIT_PAN not in repr(cards[DEBIT_PAN])
        terminal = s.get(Terminal, "PAYLAB01")
        assert terminal.tmk == "0123456789ABCDEFFEDCBA9876543210"
        assert (terminal.batch_no, terminal.signed_on) == (1, False)
        # runtime state survives a re-seed
        cards[DEBIT_PAN].last_atc = 42
        terminal.signed_on = True
    seed_accounts(cfg, ledger)
    with session_scope(engine, write=False) as s:
        assert s.get(Card, DEBIT_PAN).last_atc == 42
        assert s.get(Terminal, "PAYLAB01").signed_on is True

    # a changed credit line follows the configuration; a changed opening balance is refused
    raw = yaml.safe_load(DEFAULT_CONFIG_FILE.read_text())
    raw["issuers"][1]["accounts"][0]["credit_limit_fen"] = 600_000
    changed = load_config(overrides={**raw, "state_dir": tmp_path, "database_url": db_url})
    seed_accounts(changed, ledger)
    assert ledger.spendable(cardholder_account("bank-b", credit_no)) == 600_000
    raw["issuers"][0]["accounts"][0]["balance_fen"] = 1
    changed = load_config(overrides={**raw, "state_dir": tmp_path, "database_url": db_url})
    with pytest.raises(SeedError, match="opening balance of issuer:bank-a:cardholder:"):
        seed_accounts(changed, ledger)
    ledger.check_invariants()


def test_context_create(tmp_path):
    cfg: BackendConfig = load_config(overrides={"state_dir": tmp_path / "state"})
    with BackendContext.create(cfg, clock=lambda: 5.0) as ctx:
        assert Path(tmp_path / "state" / "backend.db").is_file()
        assert cfg.clearing_dir.is_dir()
        assert ctx.ledger.engine is ctx.engine
        assert ctx.clock() == 5.0
        assert 0 <= ctx.rng.random() < 1
        with ctx.session() as s:
            assert s.scalar(select(func.count()).select_from(Card)) == 3
        ctx.ledger.check_invariants()
    # again on the same state dir: nothing new
    with BackendContext.create(cfg) as ctx:
        assert seed_accounts(cfg, ctx.ledger).accounts_opened == 0


def test_seed_without_a_ledger_makes_its_own_engine(tmp_path):
    cfg = load_config(overrides={"state_dir": tmp_path})
    assert seed_accounts(cfg).cards_added == 3
    assert seed_accounts(cfg).cards_added == 0


# -- the private PostgreSQL server ------------------------------------------------------------------


def test_pgserver_reports_missing_binaries(monkeypatch):
    import paylab.lab.backend.pgserver as pgserver

    monkeypatch.setattr(pgserver.shutil, "which", lambda name: None)
    monkeypatch.setattr(pgserver.glob, "glob", lambda pattern: [])
    with pytest.raises(PostgresUnavailable, match="apt-get install postgresql"):
        PostgresServer().start()


def test_pgserver_stops_by_pid_and_cleans_up(pg_server):
    server = PostgresServer()
    with server:
        base, pid = server.base_dir, server.pid
        assert server.url.startswith(f"postgresql+psycopg://paylab@127.0.0.1:{server.port}/")
        assert base is not None
        assert (base / "run").is_dir()
        eng = make_engine(server.url)
        try:
            with eng.connect() as conn:
                assert conn.exec_driver_sql("SELECT 1").scalar() == 1
        finally:
            eng.dispose()
    assert not base.exists()
    assert server.pid is None
    stat = Path(f"/proc/{pid}/stat")
    assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
    server.stop()  # twice is fine
