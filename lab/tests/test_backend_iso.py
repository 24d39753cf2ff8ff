"""ISO 8583 backend end to end over loopback TCP: terminal -> acquirer -> switch -> issuer and back.

One backend per module (SQLite file, default configuration plus a few extra test cards, issuer timeout
0.5 s), run in its own event loop thread (:func:`paylab.lab.backend.services.run_in_thread`); the
terminals are the synchronous :class:`~paylab.lab.backend.terminal_client.TerminalClient`. Every test
checks ``ledger.check_invariants()`` afterwards. Cryptograms are real: computed with the bundled
profiles' TEST issuer keys, and for the e-cash load by the emulated PBOC applet itself.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import itertools
import socket
import time
from collections import defaultdict
from datetime import date

import pytest
from sqlalchemy import select, update

from paylab.drivers.se.applets import pboc
from paylab.drivers.se.catalog_default import default_catalog
from paylab.drivers.se.factory import fabricate
from paylab.drivers.se.form_factor import ESE
from paylab.drivers.se.gp.content import build_load_file
from paylab.drivers.se.image import CardImage
from paylab.drivers.se.runtime import SecureElement
from paylab.lab import profiles
from paylab.lab.backend.acquirer import BatchTotals, decode_working_keys, key_check_value
from paylab.lab.backend.config import DEFAULTS, load_config
from paylab.lab.backend.context import BackendContext
from paylab.lab.backend.ledger import (
    ACQUIRER_SETTLEMENT,
    account_number,
    cardholder_account,
    ecash_account,
    issuer_account,
    merchant_account,
    switch_due_account,
)
from paylab.lab.backend.models import Authorization, Card
from paylab.lab.backend.services import run_in_thread
from paylab.lab.backend.switch import CLEARING_COLUMNS
from paylab.lab.backend.terminal_client import TerminalClient, software_card_field55
from paylab.lab.gp_client import GpClient
from paylab.lab.protocol import cps, dol, tlv
from paylab.lab.protocol.apdu import CommandApdu, ResponseApdu
from paylab.lab.protocol.crypto import emv
from paylab.lab.protocol.gp import StaticKeys
from paylab.lab.protocol.iso8583 import decode_message, encode_message, field55_decode, field55_encode
from paylab.lab.protocol.tlv import Tlv

h = bytes.fromhex
SM4_PROFILE = "pboc_debit_ecash_sm4"
DES_PROFILE = "pboc_credit_ecash_3des"
TODAY_9A = h("260115")


def luhn(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


# extra TEST cards of bank-a (no profile: the issuer keys of BIN 622848 apply, SM4, PSN 00)
POOR = luhn("622848770000001")      # 50.00 CNY, no daily limit
LIMITED = luhn("622848770000002")   # 10,000.00 CNY, daily limit 100.00 CNY
SPARE = [luhn(f"62284877000001{n}") for n in range(6)]  # 10,000.00 CNY each, for state-changing tests
UNKNOWN_BIN = luhn("999999000000001")
EXTRA_SEEDS = [
    {"pan": POOR, "kind": "debit", "balance_fen": 5_000},
    {"pan": LIMITED, "kind": "debit", "balance_fen": 1_000_000, "daily_limit_fen": 10_000},
    *({"pan": pan, "kind": "debit", "balance_fen": 1_000_000} for pan in SPARE),
]
SIGN_ON_TERMINAL = {"tid": "PAYLAB09", "mid": "898440154110009", "tmk": "0123456789ABCDEF0123456789ABCDEF",
                    "name": "sign-on test POS"}  # TEST KEY
_atcs: dict[str, itertools.count] = defaultdict(lambda: itertools.count(1))


def next_atc(pan: str) -> int:
    return next(_atcs[pan])


# -- fixtures --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    state = tmp_path_factory.mktemp("iso-backend")
    issuers = [dict(i) for i in DEFAULTS["issuers"]]
    issuers[0]["accounts"] = [
        {"pan": "6228488800000010", "kind": "debit", "balance_fen": 1_000_000, "daily_limit_fen": 500_000},
        {"pan": "6228488800000010", "kind": "ecash", "balance_fen": 38787},
        {"pan": "6228488800000028", "kind": "ecash", "balance_fen": 5000},
        *EXTRA_SEEDS,
    ]
    terminals = [*DEFAULTS["terminals"], SIGN_ON_TERMINAL]
    config = load_config(overrides={"state_dir": str(state), "issuer_timeout_s": 0.5, "issuers": issuers,
                                    "terminals": terminals})
    ctx = BackendContext.create(config)
    running = run_in_thread(ctx)
    yield ctx, running
    running.stop()
    ctx.close()


@pytest.fixture(scope="module")
def terminals(backend):
    ctx, running = backend
    host, port = running.addresses["acquirer"]
    clients = {}
    for t in ctx.config.terminals:
        if t.tid == SIGN_ON_TERMINAL["tid"]:
            continue
        client = TerminalClient(host, port, t.tid, t.mid, t.tmk)
        assert client.sign_on().response_code == "00"
        clients[t.tid] = client
    yield clients
    for client in clients.values():
        client.close()


@pytest.fixture
def pos(terminals):
    return terminals["PAYLAB01"]


@pytest.fixture(autouse=True)
def ledger_invariants(request):
    yield
    if "backend" in request.fixturenames:
        ctx, running = request.getfixturevalue("backend")
        assert running.call(running.switch.wait_reversals(10))
        ctx.ledger.check_invariants()


# -- helpers ---------------------------------------------------------------------------------------------


def card_account(ctx, issuer, pan):
    return cardholder_account(issuer, account_number(issuer, pan))


def available(ctx, account):
    return ctx.ledger.available(account)


def bundled(name):
    return profiles.load_bundled(name)


def real_arqc_field55(profile, amount, atc, *, txn_type=0x00, pan=None, psn=None):
    """Field 55 the way test_se_end_to_end's issuer check sees a card: CardKeys from the profile's issuer
    keys, PBOC session key from the ATC, AC over the brief's AC input + CVR (IAD bytes 4-7)."""
    pan = pan or profile.pan
    keys = emv.CardKeys.from_imk(profile.issuer_keys, pan, profile.psn if psn is None else psn)
    atc_bytes = atc.to_bytes(2, "big")
    cvr = h("03A00000")
    iad = bytes([0x07, profile.dki, profile.cvn]) + cvr + bytes([profile.algorithm_id])
    values = {0x9F02: cps.amount_n12(amount), 0x9F03: bytes(6), 0x9F1A: h("0156"), 0x95: bytes(5),
              0x5F2A: h("0156"), 0x9A: TODAY_9A, 0x9C: bytes([txn_type]), 0x9F37: h("11223344"),
              0x82: profile.aip_contactless, 0x9F36: atc_bytes}
    sk = emv.derive_ac_session_key(keys.mk_ac, atc_bytes, "pboc", profile.algorithm)
    arqc = emv.generate_ac(sk, emv.ac_input(values, cvr), profile.algorithm)
    objs = [Tlv(0x9F26, arqc), Tlv(0x9F27, b"\x80"), Tlv(0x9F10, iad)] + [Tlv(t, v) for t, v in values.items()]
    return field55_encode(objs), arqc, sk, keys


def spare_field55(pan, amount, *, atc=None, txn_type=0x00):
    profile = bundled(SM4_PROFILE)
    keys = profile.issuer_keys.card_keys(pan, "00")
    return software_card_field55(profile, atc=next_atc(pan) if atc is None else atc, amount=amount,
                                 txn_type=txn_type, keys=keys)


def icc_of(response):
    return {obj.tag: obj for obj in field55_decode(response.fields[55])} if 55 in response.fields else {}


def auth_rows(ctx, role, *, tid=None, stan=None):
    a = Authorization.__table__.c
    query = select(Authorization.__table__).where(a.role == role)
    if tid is not None:
        query = query.where(a.tid == tid)
    if stan is not None:
        query = query.where(a.stan == stan)
    with ctx.session(write=False) as s:
        return s.execute(query.order_by(a.id)).all()


def set_card(ctx, pan, **values):
    with ctx.session() as s:
        s.execute(update(Card.__table__).where(Card.__table__.c.pan == pan).values(**values))


def purchase(pos, pan, amount, **kw):
    if "field55" not in kw:
        kw["field55"] = spare_field55(pan, amount)
    return pos.purchase(pan, amount, **kw)


# -- plumbing --------------------------------------------------------------------------------------------


def test_client_matches_responses_by_stan_and_tid_and_times_out():
    from paylab.lab.backend.iso_tcp import IsoClient, IsoServer, IsoTimeout
    from paylab.lab.protocol.iso8583 import Iso8583Message, response_to

    async def handler(raw):
        msg = decode_message(raw, "switch")
        delay = {"000001": 0.2, "000002": 0.0, "000003": None}[msg.fields[11]]
        if delay is None:
            return None  # never answers
        await asyncio.sleep(delay)
        return encode_message(response_to(msg, "00", extra={44: msg.fields[11]}), "switch")

    def request(stan):
        return Iso8583Message("0200", {3: "000000", 11: stan, 41: "PAYLAB01"})

    async def scenario():
        server = IsoServer("toy", "switch", handler)
        host, port = await server.start()
        client = IsoClient(host, port, "switch", timeout=0.5)
        try:
            slow, fast = await asyncio.gather(client.request(request("000001")), client.request(request("000002")))
            assert (slow.fields[44], fast.fields[44]) == ("000001", "000002")  # answered out of order
            with pytest.raises(IsoTimeout):
                await client.request(request("000003"), timeout=0.2)
            assert (await client.request(request("000002"))).response_code == "00"  # link still fine
        finally:
            await client.close()
            await server.stop()

    asyncio.run(scenario())


# -- sign-on, terminal checks ----------------------------------------------------------------------------


def test_sign_on_delivers_working_keys_under_the_tmk(backend):
    ctx, running = backend
    t = ctx.config.terminal(SIGN_ON_TERMINAL["tid"])
    with TerminalClient(*running.addresses["acquirer"], t.tid, t.mid, t.tmk) as client:
        response = client.sign_on()
        assert response.response_code == "00"
        assert 64 not in response.fields
        keys = response.fields[62]
        assert len(keys) == 40
        pik, mak = decode_working_keys(t.tmk, keys)
        assert keys[16:20] == key_check_value(pik)
        assert keys[36:40] == key_check_value(mak)
        assert mak == client.mak
        assert pik != mak
        assert response.fields[60][:8] == f"00{client.batch:06d}"
        # the session MAK works: a purchase is MACed and its answer verifies under the same MAK
        assert purchase(client, SPARE[0], 100).response_code == "00"


def test_unknown_terminal_97_and_terminal_not_signed_on_97(backend):
    ctx, running = backend
    host, port = running.addresses["acquirer"]
    with TerminalClient(host, port, "NOSUCH01", "000000000000000", bytes(16)) as stranger:
        assert stranger.sign_on().response_code == "97"
        assert stranger.mak is None
        assert purchase(stranger, SPARE[0], 100).response_code == "97"
    # a known terminal announcing another merchant
    t = ctx.config.terminals[1]
    with TerminalClient(host, port, t.tid, "999999999999999", t.tmk) as wrong_mid:
        assert wrong_mid.sign_on().response_code == "03"


# -- purchases -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("profile_name", "issuer"), [(SM4_PROFILE, "bank-a"), (DES_PROFILE, "bank-b")])
def test_purchase_approved_with_real_arqc_and_card_verifiable_arpc(backend, pos, profile_name, issuer):
    ctx, _ = backend
    profile = bundled(profile_name)
    account = card_account(ctx, issuer, profile.pan)
    merchant = merchant_account(pos.mid)
    settlement = issuer_account(issuer, "settlement")
    before = (available(ctx, account), available(ctx, merchant), ctx.ledger.balance(settlement))
    amount = 12_345
    field55, arqc, sk, _ = real_arqc_field55(profile, amount, next_atc(profile.pan))
    response = pos.purchase(profile.pan, amount, field55=field55, psn=profile.psn, expiry=profile.expiry[:4])
    assert response.mti == "0210"
    assert response.response_code == "00"
    assert len(response.fields[38]) == 6
    assert len(response.fields[37]) == 12
    issuer_auth = icc_of(response)[0x91].value
    # the card side: ARPC method 1 with the AC session key over ARQC xor ARC ("00" in ASCII)
    assert issuer_auth[8:] == b"00"
    assert issuer_auth[:8] == emv.arpc_method1(sk, arqc, b"00", profile.algorithm)
    after = (available(ctx, account), available(ctx, merchant), ctx.ledger.balance(settlement))
    assert after[0] == before[0] - amount
    assert after[1] == before[1] + amount
    assert after[2] == before[2] - amount  # the issuer now owes the switch
    rows = auth_rows(ctx, f"issuer:{issuer}", stan=response.fields[11])
    assert rows[-1].status == "approved"
    assert "*" in rows[-1].pan_masked


def test_balance_inquiry_returns_field_54(backend, pos):
    ctx, _ = backend
    pan = SPARE[1]
    response = pos.balance_inquiry(pan, field55=spare_field55(pan, 0, txn_type=0x31))
    assert response.response_code == "00"
    balance = response.fields[54]
    assert balance[:8] == "1002156C"
    assert int(balance[8:]) == available(ctx, card_account(ctx, "bank-a", pan))


def test_insufficient_funds_51(backend, pos):
    ctx, _ = backend
    account = card_account(ctx, "bank-a", POOR)
    before = available(ctx, account)
    response = purchase(pos, POOR, before + 1)
    assert response.response_code == "51"
    assert icc_of(response)[0x91].value[8:] == b"51"  # the decline is authenticated to the card
    assert available(ctx, account) == before
    assert purchase(pos, POOR, before).response_code == "00"
    assert available(ctx, account) == 0


def test_over_daily_limit_61(backend, pos):
    ctx, _ = backend
    account = card_account(ctx, "bank-a", LIMITED)
    assert purchase(pos, LIMITED, 6_000).response_code == "00"
    before = available(ctx, account)
    response = purchase(pos, LIMITED, 4_001)
    assert response.response_code == "61"
    assert response.fields[44] == "DAILY LIMIT"
    assert available(ctx, account) == before
    assert purchase(pos, LIMITED, 4_000).response_code == "00"


def test_bad_cryptogram_05(backend, pos):
    ctx, _running = backend
    pan = SPARE[1]
    account = card_account(ctx, "bank-a", pan)
    before = available(ctx, account)
    field55 = bytearray(spare_field55(pan, 500))
    field55[3] ^= 0x01  # first ARQC byte (9F26 08 ...)
    response = pos.purchase(pan, 500, field55=bytes(field55))
    assert response.response_code == "05"
    assert response.fields[44] == "BAD CRYPTOGRAM"
    assert 0x91 not in icc_of(response)
    assert available(ctx, account) == before
    # an amount that is not the one the card signed is refused too
    assert pos.purchase(pan, 501, field55=spare_field55(pan, 500)).response_code == "13"


def test_replayed_atc_05(backend, pos):
    ctx, _ = backend
    pan = SPARE[2]
    atc = next_atc(pan) + 5
    for _ in range(10):
        next_atc(pan)
    field55 = spare_field55(pan, 700, atc=atc)
    assert pos.purchase(pan, 700, field55=field55).response_code == "00"
    account = card_account(ctx, "bank-a", pan)
    before = available(ctx, account)
    replay = pos.purchase(pan, 700, field55=field55)  # same cryptogram, new STAN
    assert replay.response_code == "05"
    assert replay.fields[44] == "ATC REPLAY"
    assert 0x91 not in icc_of(replay)
    older = pos.purchase(pan, 700, field55=spare_field55(pan, 700, atc=atc - 1))
    assert older.response_code == "05"
    assert older.fields[44] == "ATC REPLAY"
    assert available(ctx, account) == before
    assert pos.purchase(pan, 700, field55=spare_field55(pan, 700, atc=atc + 1)).response_code == "00"


def test_expired_card_54(backend, pos):
    ctx, _ = backend
    pan = SPARE[3]
    set_card(ctx, pan, expiry="200131")
    try:
        assert purchase(pos, pan, 100).response_code == "54"
    finally:
        set_card(ctx, pan, expiry=None)
    assert purchase(pos, pan, 100, expiry="2001").response_code == "54"  # the card presented as expired
    assert purchase(pos, pan, 100).response_code == "00"


def test_lost_card_41_with_application_block_script_then_unblock(backend, pos):
    ctx, _ = backend
    pan = SPARE[4]
    keys = bundled(SM4_PROFILE).issuer_keys.card_keys(pan, "00")
    set_card(ctx, pan, status="lost")
    try:
        atc = next_atc(pan)
        field55 = spare_field55(pan, 300, atc=atc)
        response = pos.purchase(pan, 300, field55=field55)
        assert response.response_code == "41"
        icc = icc_of(response)
        assert icc[0x91].value[8:] == b"41"
        script = icc[0x72]
        assert tlv.find(script.children, 0x9F18).value == b"\x00\x00" + atc.to_bytes(2, "big")
        command = tlv.find(script.children, 0x86).value
        assert command[:5] == h("841E000004")
        arqc = {o.tag: o.value for o in field55_decode(field55)}[0x9F26]
        mac_sk = emv.derive_pboc_session_key(keys.mk_mac, atc.to_bytes(2, "big"), "sm4")
        assert command[5:] == emv.issuer_script_mac(mac_sk, command[:5], atc.to_bytes(2, "big"), arqc, b"", "sm4")
    finally:
        set_card(ctx, pan, status="active")
    response = purchase(pos, pan, 300)  # found again: approved, and the application is unblocked
    assert response.response_code == "00"
    assert tlv.find(icc_of(response)[0x72].children, 0x86).value[:5] == h("8418000004")
    assert 0x72 not in icc_of(purchase(pos, pan, 300))


def test_stolen_card_43_with_application_block_script(backend, pos):
    ctx, _ = backend
    pan = SPARE[3]
    set_card(ctx, pan, status="stolen")
    try:
        response = purchase(pos, pan, 300)
        assert response.response_code == "43"  # stolen card, pick up (brief section 5)
        assert tlv.find(icc_of(response)[0x72].children, 0x86).value[:5] == h("841E000004")
    finally:
        set_card(ctx, pan, status="active")
    assert purchase(pos, pan, 300).response_code == "00"


def test_single_transaction_limit_per_account_kind_61(backend, pos):
    _, running = backend
    host = running.services.issuers["bank-a"]
    original = host.issuer
    pan = SPARE[3]
    host.issuer = dataclasses.replace(original, single_limit_fen={"debit": 250, "credit": 100})
    try:
        over = purchase(pos, pan, 300)
        assert (over.response_code, over.fields.get(44)) == ("61", "SINGLE LIMIT")
        assert purchase(pos, pan, 250).response_code == "00"
        host.issuer = dataclasses.replace(original, single_limit_fen={"credit": 100})  # not this card's kind
        assert purchase(pos, pan, 300).response_code == "00"
    finally:
        host.issuer = original


def test_unknown_bin_15(backend, pos):
    ctx, _running = backend
    response = pos.purchase(UNKNOWN_BIN, 100, field55=spare_field55(UNKNOWN_BIN, 100))
    assert response.response_code == "15"
    rows = auth_rows(ctx, "switch", stan=response.fields[11])
    assert rows[-1].response_code == "15"


# -- message level: MAC, format, duplicates ------------------------------------------------------------------


def test_bad_mac_A0_is_not_forwarded(backend, pos):
    ctx, running = backend
    good = pos.mak
    pos.mak = bytes(b ^ 0x10 for b in good)  # (bit 0x01 is DES parity: it would not change the key)
    try:
        response = purchase(pos, SPARE[0], 100)
    finally:
        pos.mak = good
    assert response.response_code == "A0"
    assert 64 not in response.fields
    stan = response.fields[11]
    assert not auth_rows(ctx, "switch", tid=pos.tid, stan=stan)
    assert all(seen[1] != stan or seen[2] != pos.tid for seen in running.issuer("bank-a").received)
    assert purchase(pos, SPARE[0], 100).response_code == "00"


def test_malformed_message_30_and_the_connection_stays_usable(backend, pos):
    _ctx, running = backend
    # TPDU + header + MTI 0200 + a bitmap announcing field 2, then a 16-digit PAN cut short
    garbage = h("6000030000") + h("603100000000") + h("0200") + h("4000000000000000") + h("16") + h("62AB")
    raw = pos.send_malformed(garbage)
    answer = decode_message(raw, "cup-pos")
    assert answer.mti == "0210"
    assert answer.response_code == "30"
    assert answer.tpdu == h("6000000003")
    assert purchase(pos, SPARE[0], 100).response_code == "00"  # same connection
    # broken framing (an absurd length prefix) closes the connection instead
    with socket.create_connection(running.addresses["acquirer"], timeout=5) as sock:
        sock.sendall(b"\x00\x01\x00")
        assert sock.recv(100) == b""


def test_duplicate_stan_94_and_identical_retransmission_replayed(backend, pos):
    ctx, _ = backend
    pan = SPARE[0]
    account = card_account(ctx, "bank-a", pan)
    before = available(ctx, account)
    stan = pos.next_stan()
    request = pos.financial_request(pan, 800, processing_code="000000", stan=stan, field55=spare_field55(pan, 800))
    body = encode_message(request, "cup-pos", mak=pos.mak)
    first = pos.exchange_raw(body)
    again = pos.exchange_raw(body)
    assert first == again  # the very same answer: same RRN, same auth code, same ARPC
    assert decode_message(first, "cup-pos").response_code == "00"
    assert available(ctx, account) == before - 800  # debited once
    other = pos.financial_request(pan, 900, processing_code="000000", stan=stan, field55=spare_field55(pan, 900))
    assert decode_message(pos.exchange_raw(encode_message(other, "cup-pos", mak=pos.mak)),
                          "cup-pos").response_code == "94"
    assert available(ctx, account) == before - 800
    rows = auth_rows(ctx, "acquirer", tid=pos.tid, stan=f"{stan:06d}")
    assert len(rows) == 1


# -- reversals -------------------------------------------------------------------------------------------


def test_reversal_restores_the_balance_and_is_idempotent(backend, pos):
    ctx, _running = backend
    pan = SPARE[5]
    accounts = [card_account(ctx, "bank-a", pan), merchant_account(pos.mid), ACQUIRER_SETTLEMENT,
                issuer_account("bank-a", "settlement"), switch_due_account("01028480001"),
                switch_due_account(ctx.config.acquirer_id)]
    before = [ctx.ledger.balance(a) for a in accounts]
    response = purchase(pos, pan, 2_500)
    assert response.response_code == "00"
    assert [ctx.ledger.balance(a) for a in accounts] != before
    reversal = pos.reverse(response)
    assert reversal.mti == "0410"
    assert reversal.response_code == "00"
    assert [ctx.ledger.balance(a) for a in accounts] == before
    stan = response.fields[11]
    for role in ("acquirer", "switch", "issuer:bank-a"):
        assert auth_rows(ctx, role, tid=pos.tid, stan=stan)[-1].status == "reversed"
    assert pos.reverse(response).response_code == "00"  # again: same answer, nothing moves
    assert [ctx.ledger.balance(a) for a in accounts] == before
    # a reversal of a STAN the acquirer never saw
    ghost = pos.financial_request(pan, 100, processing_code="000000", stan=999_000, field55=spare_field55(pan, 100))
    assert pos.reverse(ghost).response_code == "25"
    assert pos.reverse(ghost).response_code == "25"


def test_issuer_timeout_91_and_the_issuer_receives_the_reversal(backend, pos):
    ctx, running = backend
    issuer = running.issuer("bank-a")
    pan = SPARE[5]
    account = card_account(ctx, "bank-a", pan)
    before = available(ctx, account)
    issuer.reply_delay_s = 1.0  # debits, then answers too late for the switch (timeout 0.5 s)
    try:
        started = time.monotonic()
        response = purchase(pos, pan, 1_500)
        assert response.response_code == "91"
        assert time.monotonic() - started < 2.5
        assert running.call(running.switch.wait_reversals(10))
    finally:
        issuer.reply_delay_s = 0.0
    stan = response.fields[11]
    assert ("0420", stan, pos.tid) in issuer.received
    assert auth_rows(ctx, "issuer:bank-a", tid=pos.tid, stan=stan)[-1].status == "reversed"
    assert available(ctx, account) == before
    assert auth_rows(ctx, "acquirer", tid=pos.tid, stan=stan)[-1].response_code == "91"

    # a stalled issuer: the reversal arrives before the request; the late request must not debit
    issuer.stall_s = 1.0
    try:
        response = purchase(pos, pan, 1_600)
        assert response.response_code == "91"
        assert running.call(running.switch.wait_reversals(10))
        time.sleep(1.0)  # let the stalled request finish at the issuer
    finally:
        issuer.stall_s = 0.0
    stan = response.fields[11]
    rows = auth_rows(ctx, "issuer:bank-a", tid=pos.tid, stan=stan)
    assert [(r.mti, r.status, r.response_code) for r in rows] == [("0420", "reversed", "25")]
    assert available(ctx, account) == before
    assert purchase(pos, pan, 100).response_code == "00"


# -- settlement ------------------------------------------------------------------------------------------


def test_settlement_reconciles_or_answers_95(backend, terminals):
    _ctx, _ = backend
    pos = terminals["PAYLAB02"]
    assert purchase(pos, SPARE[1], 1_000).response_code == "00"
    declined = purchase(pos, POOR, 10**9)
    assert declined.response_code == "51"
    totals = pos.batch_totals()
    wrong = BatchTotals(totals.debit_count + 1, totals.debit_amount + 1)
    response = pos.settle(wrong)
    assert response.response_code == "95"
    assert response.fields[48][30] == "2"
    batch = pos.batch
    response = pos.settle()
    assert response.response_code == "00"
    assert response.fields[48][:15] == f"{totals.debit_amount:012d}{totals.debit_count:03d}"
    assert pos.batch == batch + 1
    assert purchase(pos, SPARE[1], 1_000).response_code == "00"  # the new batch works


# -- e-cash load with the emulated PBOC applet -------------------------------------------------------------


def issue_emulated_card(folder, profile):
    """Blank eSE -> ISD (SCP03, GP TEST keys) -> load, install, personalise the paylab PBOC applet."""
    image = CardImage(folder / "card.json")
    fabricate(image, ESE)
    se = SecureElement(image, ESE, default_catalog(), seed=7)
    se.power_on()
    client = GpClient(se.transmit)
    client.open_secure_channel(se.registry.isd().aid, StaticKeys.gp_default_test_keys())
    client.load(pboc.PACKAGE_AID, build_load_file(pboc.PACKAGE, code_size=3000))
    client.install(pboc.PACKAGE_AID, pboc.MODULE_AID, profile.aid)
    client.personalise(profile.aid, cps.prepare_pboc(profile, oda=cps.generate_oda_chain(profile, seed_or_rng=5)))
    return se


def test_ecash_load_script_is_accepted_by_the_pboc_applet(backend, pos, tmp_path):
    ctx, _running = backend
    profile = bundled(SM4_PROFILE)
    set_card(ctx, profile.pan, last_atc=0)  # this emulated card starts at ATC 1
    se = issue_emulated_card(tmp_path, profile)
    se.power_on("contact")

    def send(cmd):
        response = ResponseApdu.decode(se.transmit(cmd.encode() if isinstance(cmd, CommandApdu) else cmd,
                                                   interface="contact"))
        return response

    def get_balance():
        response = send(CommandApdu(0x80, 0xCA, 0x9F, 0x79, le=256))
        assert response.sw == 0x9000
        return pboc.bcd_to_int(tlv.decode_one(response.data).value)

    account = card_account(ctx, "bank-a", profile.pan)
    float_account = ecash_account("bank-a", account_number("bank-a", profile.pan))
    before_card, before_account, before_float = None, available(ctx, account), available(ctx, float_account)
    assert send(CommandApdu(0x00, 0xA4, 0x04, 0x00, profile.aid, 256)).sw == 0x9000
    before_card = get_balance()
    gpo = send(CommandApdu(0x80, 0xA8, 0x00, 0x00, h("8300"), 256))
    assert gpo.sw == 0x9000
    aip = tlv.decode_one(gpo.data).value[:2]
    amount = 10_000
    values = {0x9F02: cps.amount_n12(amount), 0x9F03: bytes(6), 0x9F1A: h("0156"), 0x95: bytes(5),
              0x5F2A: h("0156"), 0x9A: TODAY_9A, 0x9C: b"\x60", 0x9F37: h("55667788"), 0x9F21: h("101500"),
              0x9F4E: b"PAYLAB LOAD".ljust(20, b" "), 0x8A: b"00"}
    gen1 = send(CommandApdu(0x80, 0xAE, 0x80, 0x00, dol.build_dol_data(profile.cdol1, values), 256))
    assert gen1.sw == 0x9000
    body = tlv.decode_one(gen1.data).value
    cid, atc, arqc, iad = body[0], body[1:3], body[3:11], body[11:]
    assert cid == 0x80
    field55 = field55_encode([Tlv(0x9F26, arqc), Tlv(0x9F27, bytes([cid])), Tlv(0x9F10, iad), Tlv(0x9F36, atc),
                              Tlv(0x82, aip)] + [Tlv(t, values[t]) for t in (0x9F02, 0x9F03, 0x9F1A, 0x95, 0x5F2A,
                                                                             0x9A, 0x9C, 0x9F37)])
    response = pos.load(profile.pan, amount, field55=field55, psn=profile.psn, expiry=profile.expiry[:4])
    assert response.response_code == "00"
    icc = icc_of(response)
    assert send(CommandApdu(0x00, 0x82, 0x00, 0x00, icc[0x91].value)).sw == 0x9000  # ARPC accepted
    commands = [obj.value for obj in icc[0x72].children if obj.tag == 0x86]
    assert len(commands) == 1
    assert commands[0][:5] == h("04DA9F790A")
    assert commands[0][5:11] == cps.amount_n12(before_card + amount)
    assert send(commands[0]).sw == 0x9000  # the script MAC verifies on the card
    gen2 = send(CommandApdu(0x80, 0xAE, 0x40, 0x00, dol.build_dol_data(profile.cdol2, values), 256))
    assert gen2.sw == 0x9000
    assert tlv.decode_one(gen2.data).value[0] == 0x40
    assert get_balance() == before_card + amount
    assert available(ctx, account) == before_account - amount
    assert available(ctx, float_account) == before_float + amount
    rows = auth_rows(ctx, "switch", stan=response.fields[11])
    assert rows[-1].processing_code == "600000"
    assert rows[-1].status == "approved"


def test_ecash_load_limits_and_a_forged_balance(backend, pos):
    ctx, _ = backend
    profile = bundled(SM4_PROFILE)
    account = card_account(ctx, "bank-a", profile.pan)
    before = available(ctx, account)
    atc = 40_000 + next_atc(profile.pan)  # far above what the emulated card of the other test reaches
    # the card says it holds 950.00 CNY; + 100.00 would pass its balance limit 9F77 (1,000.00 CNY)
    field55 = software_card_field55(profile, atc=atc, amount=10_000, txn_type=0x60, ecash_balance=95_000)
    response = pos.load(profile.pan, 10_000, field55=field55, psn=profile.psn)
    assert response.response_code == "61"
    assert response.fields[44] == "E-CASH BALANCE LIMIT"
    assert 0x72 not in icc_of(response)
    # a balance in the IAD whose MAC does not verify is a forged cryptogram
    field55 = bytearray(software_card_field55(profile, atc=atc + 1, amount=10_000, txn_type=0x60,
                                              ecash_balance=1_000))
    offset = field55.index(h("9F1013")) + 3 + 18  # last byte of the IDD MAC
    field55[offset] ^= 0xFF
    response = pos.load(profile.pan, 10_000, field55=bytes(field55), psn=profile.psn)
    assert response.response_code == "05"
    assert available(ctx, account) == before
    # processing code and 9C must agree: a purchase cryptogram is no load
    response = pos.load(profile.pan, 10_000, field55=software_card_field55(profile, atc=atc + 2, amount=10_000),
                        psn=profile.psn)
    assert response.response_code == "12"


# -- clearing --------------------------------------------------------------------------------------------


def read_csv(path):
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == CLEARING_COLUMNS
        return list(reader)


def net(rows, kind):
    total = 0
    for row in rows:
        if row["type"] == kind:
            total += int(row["amount"])
        elif row["type"] == "reversal" and kind == "purchase":
            total -= int(row["amount"])  # reversals in these tests are of purchases (loads are not reversed)
    return total


def test_clearing_files_reconcile_with_the_ledger(backend, terminals, tmp_path):
    ctx, running = backend
    pos = terminals["PAYLAB03"]
    # some traffic of our own on both issuers, one of it reversed
    profile = bundled(DES_PROFILE)
    field55, *_ = real_arqc_field55(profile, 4_200, next_atc(profile.pan))
    assert pos.purchase(profile.pan, 4_200, field55=field55).response_code == "00"
    reversed_one = purchase(pos, SPARE[1], 3_300)
    assert pos.reverse(reversed_one).response_code == "00"
    assert purchase(pos, SPARE[1], 1_100).response_code == "00"

    day = date.fromtimestamp(ctx.clock())
    paths = running.call_soon(running.switch.write_clearing_files, day, tmp_path)
    names = {p.name for p in paths}
    stamp = day.strftime("%Y%m%d")
    assert names == {f"clearing-{stamp}-acquirer-{ctx.config.acquirer_id}.csv", f"clearing-{stamp}-issuer-bank-a.csv",
                     f"clearing-{stamp}-issuer-bank-b.csv"}
    files = {p.name.split("-", 2)[2].removesuffix(".csv"): read_csv(p) for p in paths}
    acquirer_rows = files[f"acquirer-{ctx.config.acquirer_id}"]
    assert all("*" in row["pan_masked"] for row in acquirer_rows)
    assert any(row["type"] == "reversal" and row["rrn"] == reversed_one.fields[37] for row in acquirer_rows)
    # acquirer: purchases - reversals == what the switch owes the acquirer == merchants' credit
    assert net(acquirer_rows, "purchase") == ctx.ledger.balance(ACQUIRER_SETTLEMENT)
    assert net(acquirer_rows, "purchase") == sum(ctx.ledger.available(merchant_account(t.mid))
                                                 for t in ctx.config.terminals)
    assert net(acquirer_rows, "purchase") == -ctx.ledger.balance(switch_due_account(ctx.config.acquirer_id))
    for issuer in ctx.config.issuers:
        rows = files[f"issuer-{issuer.name}"]
        # issuer: purchases - reversals == what the issuer owes the switch (credit on its settlement account)
        assert net(rows, "purchase") == -ctx.ledger.balance(issuer_account(issuer.name, "settlement"))
        assert net(rows, "purchase") == ctx.ledger.balance(switch_due_account(issuer.institution_id))
        # loads == growth of the issuer's e-cash floats over their opening balances
        opening = sum(seed.balance_fen for seed in issuer.accounts if seed.kind == "ecash")
        floats = sum(a.available for a in ctx.ledger.accounts(f"issuer:{issuer.name}:ecash-float:"))
        assert net(rows, "load") == floats - opening
    assert sum(len(rows) for key, rows in files.items() if key.startswith("issuer-")) == len(acquirer_rows)
