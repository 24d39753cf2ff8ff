"""Remote payment system, merchant platform and SMS gateway (lab/backend/remote_payment.py, merchant.py,
sms.py, http_app.py).

SE mode runs against a real emulated SE: an issuer TSM loads, installs and personalises the
remote-sign applet over SCP03 (as drivers/tests/test_remote_sign.py does), the card generates its
key, the issuer's TEST CA at the remote payment system certifies it, and the wallet signs the order
digest with VERIFY PIN + SIGN ORDER DIGEST through ``SecureElement.transmit``. Every test ends with
the ledger's invariant check. In-process tests use FastAPI's TestClient; one test runs over a real
uvicorn server on a loopback ephemeral port.
"""

from __future__ import annotations

import random
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient  # backed by httpx2 (test extra), so no deprecation warning
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paylab.drivers.se.applets.remote_sign import MODULE_AID, PACKAGE, PACKAGE_AID
from paylab.drivers.se.catalog_default import default_catalog
from paylab.drivers.se.factory import fabricate
from paylab.drivers.se.form_factor import MICROSD
from paylab.drivers.se.gp.content import build_load_file_data_block
from paylab.drivers.se.image import CardImage
from paylab.drivers.se.runtime import SecureElement
from paylab.lab.backend import remote_payment as rps
from paylab.lab.backend.config import load_config
from paylab.lab.backend.context import BackendContext
from paylab.lab.backend.http_app import create_app
from paylab.lab.backend.ledger import account_number, cardholder_account
from paylab.lab.backend.merchant import HttpRpClient, MerchantPlatform
from paylab.lab.protocol import remote_payment as rp
from paylab.lab.protocol.apdu import CommandApdu, ResponseApdu
from paylab.lab.protocol.gp import Scp03Session, StaticKeys
from paylab.lab.protocol.gp import commands as gp

ISD_KEYS = StaticKeys.gp_default_test_keys()
SE_ID = bytes.fromhex("4750535345303031")
OTHER_SE_ID = bytes.fromhex("4750535345303032")
USER_ID = b"wallet-user-0001"
PIN = "4321"
PAN = "6228488800000010"  # bank-a debit card of the default configuration: 1,000,000 fen
ACCOUNT = cardholder_account("bank-a", account_number("bank-a", PAN))
MSISDN = "13800138000"
PASSWORD = "246810"
START = 1714537800.0  # 2024-05-01 12:30:00 Beijing time
FOREIGN_CA = bytes.fromhex("3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8")


class FakeClock:
    """The injected clock: Unix seconds that move only when told."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# --- the emulated SE, its TSM and the wallet ----------------------------------------------------


def transmit_ok(se: SecureElement, capdu: bytes) -> bytes:
    rapdu = ResponseApdu.decode(se.transmit(capdu))
    assert rapdu.sw == 0x9000, f"{capdu.hex()} -> {rapdu.sw:04X}"
    return rapdu.data


def new_card() -> SecureElement:
    image = CardImage(None, durable=False)
    fabricate(image, MICROSD)
    se = SecureElement(image, MICROSD, default_catalog(), seed=7)
    se.power_on()
    return se


class IssuerTsm:
    """Loads, installs and personalises the remote-sign applet through the ISD over SCP03 (level 33)."""

    def __init__(self, se: SecureElement) -> None:
        self.se = se
        self.block = 0
        transmit_ok(se, CommandApdu(0x00, 0xA4, 0x04, 0x00, se.registry.isd().aid, 256).encode())
        challenge = bytes(range(8))
        answer = transmit_ok(se, Scp03Session.host_initialize_update(ISD_KEYS, challenge))
        self.session = Scp03Session.host_from_init_update_response(ISD_KEYS, challenge, answer, 0x33)
        transmit_ok(se, self.session.external_authenticate())

    def send(self, cmd: CommandApdu) -> bytes:
        plain = ResponseApdu.decode(self.session.unwrap_response(self.se.transmit(self.session.wrap(cmd.encode()))))
        assert plain.sw == 0x9000, f"{cmd.encode().hex()} -> {plain.sw:04X}"
        return plain.data

    def install(self) -> None:
        block = build_load_file_data_block(PACKAGE)
        self.send(gp.InstallForLoad(PACKAGE_AID, b"", gp.load_file_data_block_hash(block)).command())
        for cmd in gp.load_commands(gp.LoadFile(block, ()).encode(), 200):
            self.send(cmd)
        self.send(gp.InstallForInstall(PACKAGE_AID, MODULE_AID, MODULE_AID).command())
        self.send(gp.InstallForPersonalization(MODULE_AID).command())

    def store(self, payload: bytes, *, last: bool = False) -> bytes:
        out = b""
        pieces = [payload[i:i + 200] for i in range(0, len(payload), 200)]
        for i, piece in enumerate(pieces):
            final = last and i == len(pieces) - 1
            out += self.send(CommandApdu(0x80, 0xE2, 0x08 | (0x80 if final else 0), self.block, piece, 256))
            self.block = 0 if final else self.block + 1
        return out


def issue_remote_sign_card(certify: Any, se_id: bytes = SE_ID) -> SecureElement:
    """A personalised card: key pair generated on the card, certified by ``certify(se_id, key template)``."""
    se = new_card()
    tsm = IssuerTsm(se)
    tsm.install()
    public = tsm.store(rp.encode_perso([("algorithm", b"\x01"), ("user_id", USER_ID), ("pin", rp.pin_block(PIN)),
                                        ("pin_try_limit", b"\x03"), ("generate_key_pair", b"")]))
    assert rp.PublicKey.decode(public).algorithm == "sm2"
    tsm.store(rp.encode_perso([("certificate", certify(se_id, public))]), last=True)
    return se


class SeWallet:
    """The wallet app: reads the certificate, and signs an order digest with VERIFY PIN + SIGN."""

    def __init__(self, se: SecureElement, se_id: bytes = SE_ID) -> None:
        self.se = se
        self.se_id = se_id

    def select(self) -> None:
        transmit_ok(self.se, CommandApdu(0x00, 0xA4, 0x04, 0x00, MODULE_AID, 256).encode())

    def certificate(self) -> bytes:
        self.select()
        return rp.read_object(self.se.transmit, rp.INS_GET_CERTIFICATE)

    def sign(self, digest: bytes, pin: str = PIN) -> bytes:
        self.select()
        transmit_ok(self.se, rp.verify_pin_command(pin))
        return transmit_ok(self.se, rp.sign_order_command(digest))

    def pay(self, client: TestClient | httpx.Client, txn_id: str) -> tuple[httpx.Response, dict[str, Any]]:
        """Nonce, digest, signature, pay-se: the response and the request body (to replay it)."""
        challenge = client.post(f"/rp/orders/{txn_id}/nonce", json={"seId": self.se_id.hex()})
        assert challenge.status_code == 201, challenge.text
        answer = challenge.json()
        o = answer["order"]
        nonce = bytes.fromhex(answer["nonce"])
        digest = rp.order_digest(o["merchantId"], o["orderId"], o["amount"], o["currency"], o["time"], nonce)
        body = {"seId": self.se_id.hex(), "nonce": nonce.hex(), "signature": self.sign(digest).hex()}
        return client.post(f"/rp/orders/{txn_id}/pay-se", json=body), body


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ctx(tmp_path, clock) -> Iterator[BackendContext]:
    config = load_config(None, overrides={"state_dir": tmp_path})
    context = BackendContext.create(config, clock=clock, rng=random.Random(20240501))
    try:
        yield context
        context.ledger.check_invariants()  # after every scenario
    finally:
        context.close()


@pytest.fixture
def client(ctx) -> Iterator[TestClient]:
    with TestClient(create_app(ctx)) as test_client:
        yield test_client


def certify_over_http(client: TestClient, issuer: str = "bank-a") -> Any:
    def certify(se_id: bytes, public: bytes) -> bytes:
        answer = client.post(f"/rp/issuers/{issuer}/ca/certificates",
                             json={"seId": se_id.hex(), "publicKey": public.hex()})
        assert answer.status_code == 201, answer.text
        return bytes.fromhex(answer.json()["certificate"])
    return certify


@pytest.fixture
def se_wallet(client) -> tuple[SeWallet, str]:
    """A personalised card and its wallet registered for the bank-a debit card; (wallet, walletId)."""
    wallet = SeWallet(issue_remote_sign_card(certify_over_http(client)))
    answer = client.post("/rp/wallets", json={
        "issuer": "bank-a", "pan": PAN, "msisdn": MSISDN, "seId": SE_ID.hex(),
        "certificate": wallet.certificate().hex(), "signerId": USER_ID.decode()})
    assert answer.status_code == 201, answer.text
    assert answer.json()["seMode"]
    assert answer.json()["pan"] == "622848******0010"
    return wallet, answer.json()["walletId"]


def register_password_wallet(client, password: str = PASSWORD, msisdn: str = MSISDN) -> str:
    envelope = rps.seal_password(password, rps.registration_aad(msisdn))
    answer = client.post("/rp/wallets", json={"issuer": "bank-a", "pan": PAN, "msisdn": msisdn,
                                              "encryptedPassword": envelope.hex()})
    assert answer.status_code == 201, answer.text
    assert answer.json()["passwordMode"]
    assert not answer.json()["seMode"]
    return answer.json()["walletId"]


@pytest.fixture
def password_wallet(client) -> str:
    return register_password_wallet(client)


def checkout(client, amount: int = 12345, order_id: str | None = None) -> dict[str, Any]:
    answer = client.post("/merchant/checkout", json={"amount": amount, **({"orderId": order_id} if order_id else {})})
    assert answer.status_code == 201, answer.text
    return answer.json()


def available(ctx, account: str) -> int:
    return ctx.ledger.available(account)


def merchant_account(order: dict[str, Any]) -> str:
    return f"rp:merchant:{order['merchantId']}"


def last_code(client, msisdn: str = MSISDN) -> tuple[int, str]:
    """The handset: the newest OTP SMS of the outbox, acknowledged with a delivery receipt."""
    messages = client.get(f"/sms/outbox/{msisdn}").json()["messages"]
    sms = [m for m in messages if m["kind"] == "otp"][-1]
    match = re.search(r"code (\d{6})", sms["text"])
    assert match is not None
    receipt = client.post(f"/sms/messages/{sms['id']}/receipt", json={"status": "delivered"})
    assert receipt.status_code == 200
    assert receipt.json()["status"] == "delivered"
    return sms["id"], match.group(1)


def pay_password(client, txn_id: str, wallet_id: str, code: str, password: str = PASSWORD) -> httpx.Response:
    envelope = rps.seal_password(password, rps.payment_aad(txn_id))
    return client.post(f"/rp/orders/{txn_id}/pay-password", json={
        "walletId": wallet_id, "smsCode": code, "encryptedPassword": envelope.hex()})


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


# --- SE mode ------------------------------------------------------------------------------------


def test_se_mode_end_to_end_debits_once_and_notifies_the_merchant(ctx, client, se_wallet):
    wallet, wallet_id = se_wallet
    before = available(ctx, ACCOUNT)
    order = checkout(client, 12345)
    assert order["status"] == "pending"

    paid, body = wallet.pay(client, order["txnId"])
    assert paid.status_code == 200, paid.text
    view = paid.json()
    assert (view["status"], view["payMode"], view["amount"]) == ("paid", "se", 12345)
    assert available(ctx, ACCOUNT) == before - 12345
    assert available(ctx, merchant_account(order)) == 12345
    # the notification went out after the response (background task) and was acknowledged
    assert client.get(f"/rp/orders/{order['txnId']}").json()["notify"]["status"] == "acked"
    shop = client.get(f"/merchant/orders/{order['orderId']}").json()
    assert (shop["status"], shop["notifications"], shop["txnId"]) == ("paid", 1, order["txnId"])

    # a retry of the same request: the same answer, no second debit
    again = client.post(f"/rp/orders/{order['txnId']}/pay-se", json=body)
    assert again.status_code == 200
    assert again.json()["paidAt"] == view["paidAt"]
    assert available(ctx, ACCOUNT) == before - 12345
    assert len(ctx.ledger.entries(reference=order["txnId"])) == 1
    # query by the merchant's keys
    by_keys = client.get("/rp/orders", params={"merchantId": order["merchantId"], "orderId": order["orderId"]})
    assert by_keys.json()["txnId"] == order["txnId"]
    # the paid order takes no new nonce
    assert client.post(f"/rp/orders/{order['txnId']}/nonce", json={"seId": SE_ID.hex()}).status_code == 409
    assert client.get(f"/rp/wallets/{wallet_id}").json()["seId"] == SE_ID.hex().upper()


def test_wrong_signature_is_refused_and_burns_the_nonce(ctx, client, se_wallet):
    wallet, _ = se_wallet
    before = available(ctx, ACCOUNT)
    order = checkout(client)
    txn = order["txnId"]
    answer = client.post(f"/rp/orders/{txn}/nonce", json={"seId": SE_ID.hex()}).json()
    o, nonce = answer["order"], bytes.fromhex(answer["nonce"])
    good_digest = rp.order_digest(o["merchantId"], o["orderId"], o["amount"], o["currency"], o["time"], nonce)
    other_digest = rp.order_digest(o["merchantId"], o["orderId"], o["amount"] + 1, o["currency"], o["time"], nonce)
    forged = {"seId": SE_ID.hex(), "nonce": nonce.hex(), "signature": wallet.sign(other_digest).hex()}
    refused = client.post(f"/rp/orders/{txn}/pay-se", json=forged)
    assert refused.status_code == 403
    assert refused.json() == {"error": "signature does not verify", "field": "signature"}
    # one attempt per nonce: the right signature with the burnt nonce is refused as a replay
    good = {**forged, "signature": wallet.sign(good_digest).hex()}
    replay = client.post(f"/rp/orders/{txn}/pay-se", json=good)
    assert (replay.status_code, replay.json()["field"]) == (409, "nonce")
    assert available(ctx, ACCOUNT) == before
    assert client.get(f"/rp/orders/{txn}").json()["status"] == "created"
    # a fresh nonce pays
    paid, _ = wallet.pay(client, txn)
    assert paid.status_code == 200


def test_replayed_and_stale_nonces_are_refused(ctx, client, clock, se_wallet):
    wallet, _ = se_wallet
    first, second = checkout(client, 100), checkout(client, 200)
    paid, body = wallet.pay(client, first["txnId"])
    assert paid.status_code == 200
    # the nonce of the first order, signed over the second order, is not the second order's nonce
    o = client.get(f"/rp/orders/{second['txnId']}").json()
    nonce = bytes.fromhex(body["nonce"])
    digest = rp.order_digest(o["merchantId"], o["orderId"], o["amount"], o["currency"], o["time"], nonce)
    replay = client.post(f"/rp/orders/{second['txnId']}/pay-se",
                         json={**body, "signature": wallet.sign(digest).hex()})
    assert (replay.status_code, replay.json()["field"]) == (403, "nonce")
    # a nonce older than the window
    answer = client.post(f"/rp/orders/{second['txnId']}/nonce", json={"seId": SE_ID.hex()}).json()
    clock.advance(ctx.config.remote_payment.nonce_window_s + 1)
    nonce = bytes.fromhex(answer["nonce"])
    digest = rp.order_digest(o["merchantId"], o["orderId"], o["amount"], o["currency"], o["time"], nonce)
    stale = client.post(f"/rp/orders/{second['txnId']}/pay-se",
                        json={"seId": SE_ID.hex(), "nonce": nonce.hex(), "signature": wallet.sign(digest).hex()})
    assert (stale.status_code, stale.json()) == (410, {"error": "nonce expired", "field": "nonce"})
    # a nonce never issued
    made_up = client.post(f"/rp/orders/{second['txnId']}/pay-se", json={**body, "nonce": "00" * 16})
    assert (made_up.status_code, made_up.json()["field"]) == (403, "nonce")
    assert available(ctx, merchant_account(first)) == 300 - 200


def test_foreign_certificates_are_refused(ctx, client):
    # a card certified by a CA that is not the issuer's
    def foreign(se_id: bytes, public: bytes) -> bytes:
        return rp.issue_compact_certificate("sm2", FOREIGN_CA, ca_reference="PAYLAB TEST CA bank-a", holder=se_id,
                                            public_key=rp.PublicKey.decode(public), effective="20240101",
                                            expiry="20341231")

    wallet = SeWallet(issue_remote_sign_card(foreign))
    body = {"issuer": "bank-a", "pan": PAN, "msisdn": MSISDN, "seId": SE_ID.hex(),
            "certificate": wallet.certificate().hex(), "signerId": USER_ID.decode()}
    refused = client.post("/rp/wallets", json=body)
    assert refused.status_code == 403
    assert refused.json() == {"error": "certificate not issued by the issuer's CA", "field": "certificate"}
    # bank-b's CA is not bank-a's either
    other_bank = issue_remote_sign_card(certify_over_http(client, "bank-b"))
    refused = client.post("/rp/wallets", json={**body, "certificate": SeWallet(other_bank).certificate().hex()})
    assert (refused.status_code, refused.json()["field"]) == (403, "certificate")
    # the issuer's certificate of another SE, presented for this SE id
    genuine = SeWallet(issue_remote_sign_card(certify_over_http(client), OTHER_SE_ID), OTHER_SE_ID)
    refused = client.post("/rp/wallets", json={**body, "certificate": genuine.certificate().hex()})
    assert refused.json() == {"error": "certificate is bound to another SE", "field": "certificate"}
    garbage = client.post("/rp/wallets", json={**body, "certificate": "7F2100"})
    assert (garbage.status_code, garbage.json()["field"]) == (400, "certificate")
    # the SE of a wallet that was never registered cannot pay
    order = checkout(client)
    unknown = client.post(f"/rp/orders/{order['txnId']}/nonce", json={"seId": SE_ID.hex()})
    assert (unknown.status_code, unknown.json()["field"]) == (404, "seId")


def test_expired_certificate_and_duplicate_se_are_refused(ctx, client, clock, se_wallet):
    wallet, _ = se_wallet
    again = client.post("/rp/wallets", json={"issuer": "bank-a", "pan": PAN, "msisdn": MSISDN, "seId": SE_ID.hex(),
                                             "certificate": wallet.certificate().hex()})
    assert (again.status_code, again.json()["field"]) == (409, "seId")
    order = checkout(client)
    answer = client.post(f"/rp/orders/{order['txnId']}/nonce", json={"seId": SE_ID.hex()}).json()
    clock.advance(6 * 366 * 86400)  # beyond the certificate's 5 years
    o, nonce = answer["order"], bytes.fromhex(answer["nonce"])
    digest = rp.order_digest(o["merchantId"], o["orderId"], o["amount"], o["currency"], o["time"], nonce)
    expired = client.post(f"/rp/orders/{order['txnId']}/pay-se",
                          json={"seId": SE_ID.hex(), "nonce": nonce.hex(), "signature": wallet.sign(digest).hex()})
    assert (expired.status_code, expired.json()) == (403, {"error": "certificate expired", "field": "certificate"})
    assert client.get(f"/rp/orders/{order['txnId']}").json()["status"] == "created"


def test_concurrent_payments_of_one_order_debit_once(ctx, client, se_wallet):
    wallet, _ = se_wallet
    service = client.app.state.rp
    order = checkout(client, 4321)
    requests = []
    for _ in range(4):  # four valid requests, each with its own nonce and signature
        answer = service.issue_nonce(order["txnId"], SE_ID)
        o, nonce = answer["order"], bytes.fromhex(answer["nonce"])
        digest = rp.order_digest(o["merchantId"], o["orderId"], o["amount"], o["currency"], o["time"], nonce)
        requests.append((nonce, wallet.sign(digest)))
    outcomes: list[int] = []
    barrier = threading.Barrier(len(requests))

    def pay(nonce: bytes, signature: bytes) -> None:
        barrier.wait()
        try:
            service.pay_se(order["txnId"], SE_ID, nonce, signature)
            outcomes.append(200)
        except rps.ApiError as exc:
            outcomes.append(exc.status_code)

    threads = [threading.Thread(target=pay, args=r) for r in requests]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == [200, 409, 409, 409]
    assert len(ctx.ledger.entries(reference=order["txnId"])) == 1
    assert available(ctx, merchant_account(order)) == 4321


def test_insufficient_funds_leave_the_order_payable(ctx, client, se_wallet):
    wallet, _ = se_wallet
    order = checkout(client, 2_000_000)  # the account holds 1,000,000 fen, no overdraft
    refused, _ = wallet.pay(client, order["txnId"])
    assert (refused.status_code, refused.json()) == (402, {"error": "insufficient funds", "field": "amount"})
    assert client.get(f"/rp/orders/{order['txnId']}").json()["status"] == "created"
    assert ctx.ledger.entries(reference=order["txnId"]) == []


# --- non-SE mode --------------------------------------------------------------------------------


def test_non_se_right_code_pays_once(ctx, client, password_wallet):
    before = available(ctx, ACCOUNT)
    order = checkout(client, 5000)
    txn = order["txnId"]
    sent = client.post(f"/rp/orders/{txn}/sms", json={"walletId": password_wallet})
    assert sent.status_code == 200, sent.text
    assert sent.json()["triesLeft"] == 3
    assert sent.json()["msisdn"] == "*******8000"
    _, code = last_code(client)
    assert code not in sent.text
    paid = pay_password(client, txn, password_wallet, code)
    assert paid.status_code == 200, paid.text
    assert (paid.json()["status"], paid.json()["payMode"]) == ("paid", "sms")
    assert available(ctx, ACCOUNT) == before - 5000
    # a retry: same answer, no second debit
    again = pay_password(client, txn, password_wallet, code)
    assert again.status_code == 200
    assert again.json()["paidAt"] == paid.json()["paidAt"]
    assert available(ctx, ACCOUNT) == before - 5000
    assert available(ctx, merchant_account(order)) == 5000
    assert client.get(f"/merchant/orders/{order['orderId']}").json()["status"] == "paid"
    # the paid order sends no more codes
    assert client.post(f"/rp/orders/{txn}/sms", json={"walletId": password_wallet}).status_code == 409


def test_the_otp_is_stored_hashed_and_never_logged(ctx, client, password_wallet, caplog):
    caplog.set_level("DEBUG")
    order = checkout(client)
    client.post(f"/rp/orders/{order['txnId']}/sms", json={"walletId": password_wallet})
    _, code = last_code(client)
    with ctx.session(write=False) as s:
        otp = s.get(rps.RpOtp, order["txnId"])
        assert otp is not None
        assert otp.code_hash == rps.otp_hash(otp.salt, order["txnId"], code)
        assert code.encode() not in otp.code_hash + otp.salt
        wallet = s.get(rps.RpWallet, password_wallet)
        assert wallet is not None
        assert PASSWORD.encode() not in wallet.password_hash
    assert pay_password(client, order["txnId"], password_wallet, code).status_code == 200
    assert code not in caplog.text
    assert PASSWORD not in caplog.text


def test_wrong_code_then_right_code(ctx, client, password_wallet):
    order = checkout(client)
    txn = order["txnId"]
    client.post(f"/rp/orders/{txn}/sms", json={"walletId": password_wallet})
    _, code = last_code(client)
    refused = pay_password(client, txn, password_wallet, wrong(code))
    assert refused.status_code == 403
    assert refused.json() == {"error": "wrong otp", "field": "smsCode", "triesLeft": 2, "locked": False}
    bad_password = pay_password(client, txn, password_wallet, code, password="135791")
    assert bad_password.status_code == 403
    assert bad_password.json() == {"error": "wrong password", "field": "encryptedPassword", "triesLeft": 1,
                                   "locked": False}
    # an envelope sealed for another order does not open here and costs no try
    other = rps.seal_password(PASSWORD, rps.payment_aad("0" * 21))
    misbound = client.post(f"/rp/orders/{txn}/pay-password", json={
        "walletId": password_wallet, "smsCode": code, "encryptedPassword": other.hex()})
    assert (misbound.status_code, misbound.json()["field"]) == (400, "encryptedPassword")
    assert pay_password(client, txn, password_wallet, code).status_code == 200
    assert available(ctx, merchant_account(order)) == 12345


def test_expired_code(ctx, client, clock, password_wallet):
    order = checkout(client)
    txn = order["txnId"]
    client.post(f"/rp/orders/{txn}/sms", json={"walletId": password_wallet})
    _, code = last_code(client)
    clock.advance(ctx.config.remote_payment.otp_ttl_s + 1)
    expired = pay_password(client, txn, password_wallet, code)
    assert expired.status_code == 410
    assert expired.json() == {"error": "otp expired", "field": "smsCode", "triesLeft": 3}
    # a new code works (and the old one does not)
    assert client.post(f"/rp/orders/{txn}/sms", json={"walletId": password_wallet}).json()["sendsLeft"] == 1
    _, fresh = last_code(client)
    if fresh != code:
        assert pay_password(client, txn, password_wallet, code).json()["field"] == "smsCode"
    assert pay_password(client, txn, password_wallet, fresh).status_code == 200


def test_three_wrong_tries_lock_the_order(ctx, client, password_wallet):
    before = available(ctx, ACCOUNT)
    order = checkout(client)
    txn = order["txnId"]
    client.post(f"/rp/orders/{txn}/sms", json={"walletId": password_wallet})
    _, code = last_code(client)
    answers = [pay_password(client, txn, password_wallet, wrong(code)).json() for _ in range(3)]
    assert [a["triesLeft"] for a in answers] == [2, 1, 0]
    assert answers[-1]["locked"] is True
    locked = pay_password(client, txn, password_wallet, code)
    assert locked.status_code == 423
    assert locked.json() == {"error": "otp locked", "field": "smsCode", "triesLeft": 0}
    # a new code does not unlock it
    resend = client.post(f"/rp/orders/{txn}/sms", json={"walletId": password_wallet})
    assert (resend.status_code, resend.json()["error"]) == (423, "otp locked")
    assert available(ctx, ACCOUNT) == before
    assert client.get(f"/rp/orders/{txn}").json()["status"] == "created"


def test_code_resends_are_limited_and_bound_to_the_order(ctx, client, password_wallet):
    first, second = checkout(client), checkout(client)
    client.post(f"/rp/orders/{first['txnId']}/sms", json={"walletId": password_wallet})
    _, code = last_code(client)
    # the code of one order does not pay another
    client.post(f"/rp/orders/{second['txnId']}/sms", json={"walletId": password_wallet})
    _, code2 = last_code(client)
    if code != code2:
        assert pay_password(client, second["txnId"], password_wallet, code).json()["field"] == "smsCode"
    for _ in range(rps.OTP_MAX_SENDS - 1):
        assert client.post(f"/rp/orders/{first['txnId']}/sms", json={"walletId": password_wallet}).status_code == 200
    too_many = client.post(f"/rp/orders/{first['txnId']}/sms", json={"walletId": password_wallet})
    assert (too_many.status_code, too_many.json()["field"]) == (429, "txnId")
    # no code sent for this wallet at all
    other_wallet = register_password_wallet(client, msisdn="13900139000")
    none_sent = pay_password(client, first["txnId"], other_wallet, code)
    assert (none_sent.status_code, none_sent.json()["field"]) == (409, "smsCode")


# --- orders, notifications, merchant -------------------------------------------------------------


def order_body(**changes: Any) -> dict[str, Any]:
    return {"merchantId": "898111148990001", "orderId": "ORDER20240501001", "amount": 12345, "currency": 156,
            "time": "20240501123000", "notifyUrl": "inproc://nobody", **changes}


def test_order_creation_is_idempotent(client):
    first = client.post("/rp/orders", json=order_body())
    assert first.status_code == 201
    again = client.post("/rp/orders", json=order_body())
    assert (again.status_code, again.json()["txnId"]) == (200, first.json()["txnId"])
    conflict = client.post("/rp/orders", json=order_body(amount=1))
    assert conflict.status_code == 409
    assert conflict.json()["field"] == "orderId"
    assert conflict.json()["txnId"] == first.json()["txnId"]
    # the merchant platform's checkout retried with the same orderId answers the same order
    shop = checkout(client, 700, order_id="SHOP-1")
    assert checkout(client, 700, order_id="SHOP-1")["txnId"] == shop["txnId"]
    assert client.post("/merchant/checkout", json={"amount": 701, "orderId": "SHOP-1"}).status_code == 409


def test_notifications_are_retried_until_acknowledged(ctx, client, clock, password_wallet):
    rp_service = client.app.state.rp
    calls: list[dict[str, Any]] = []

    def flaky(payload: dict[str, Any]) -> dict[str, Any]:
        calls.append(payload)
        if len(calls) == 1:
            raise ConnectionError("merchant down")
        return {"ack": len(calls) > 2}

    rp_service.local_endpoints["inproc://flaky"] = flaky
    order = client.post("/rp/orders", json=order_body(notifyUrl="inproc://flaky")).json()
    client.post(f"/rp/orders/{order['txnId']}/sms", json={"walletId": password_wallet})
    _, code = last_code(client)
    assert pay_password(client, order["txnId"], password_wallet, code).status_code == 200
    state = client.get(f"/rp/orders/{order['txnId']}").json()["notify"]
    assert (state["status"], state["attempts"]) == ("pending", 1)
    # not due yet: nothing is attempted
    assert client.post("/rp/notifications/dispatch").json()["attempted"] == 0
    clock.advance(rps.NOTIFY_BACKOFF_S[0])
    assert client.post("/rp/notifications/dispatch").json() == {"attempted": 1, "acked": 0, "failed": 0}
    clock.advance(rps.NOTIFY_BACKOFF_S[1])
    assert client.post("/rp/notifications/dispatch").json() == {"attempted": 1, "acked": 1, "failed": 0}
    assert client.get(f"/rp/orders/{order['txnId']}").json()["notify"]["status"] == "acked"
    assert [c["status"] for c in calls] == ["paid"] * 3
    assert calls[0]["txnId"] == order["txnId"]


def test_unreachable_notify_url_is_given_up(ctx, client, clock, password_wallet):
    order = client.post("/rp/orders", json=order_body(notifyUrl="inproc://nobody")).json()
    client.post(f"/rp/orders/{order['txnId']}/sms", json={"walletId": password_wallet})
    _, code = last_code(client)
    assert pay_password(client, order["txnId"], password_wallet, code).status_code == 200
    for delay in rps.NOTIFY_BACKOFF_S:
        clock.advance(delay)
        client.post("/rp/notifications/dispatch")
    state = client.get(f"/rp/orders/{order['txnId']}").json()["notify"]
    assert (state["status"], state["attempts"]) == ("failed", len(rps.NOTIFY_BACKOFF_S) + 1)


def test_forged_notification_changes_nothing(client):
    order = checkout(client)
    forged = client.post("/merchant/notify", json={"txnId": order["txnId"], "merchantId": order["merchantId"],
                                                   "orderId": order["orderId"], "status": "paid"})
    assert (forged.status_code, forged.json()["field"]) == (409, "txnId")
    assert client.get(f"/merchant/orders/{order['orderId']}").json()["status"] == "pending"
    unknown = client.post("/merchant/notify", json={"txnId": "1" * 21, "merchantId": "X", "orderId": "Y"})
    assert unknown.status_code == 404


def test_sms_gateway_outbox_and_receipts(client):
    gateway = client.app.state.sms
    first = gateway.send("+8613800138000", "hello", "notice")
    second = gateway.send("8613800138000", "wake up", "ota-wakeup")
    outbox = client.get("/sms/outbox/8613800138000").json()["messages"]
    assert [m["id"] for m in outbox] == [first, second]
    assert outbox[0]["status"] == "pending"
    assert [m["id"] for m in client.get("/sms/outbox/8613800138000", params={"since": first}).json()["messages"]] \
        == [second]
    assert client.post(f"/sms/messages/{first}/receipt", json={"status": "failed"}).json()["status"] == "failed"
    # the first receipt wins
    assert client.post(f"/sms/messages/{first}/receipt").json()["status"] == "failed"
    assert client.post("/sms/messages/999/receipt").status_code == 404
    assert client.post("/sms/messages", json={"msisdn": "123", "text": "x", "kind": "otp"}).json()["field"] == "msisdn"
    with pytest.raises(ValueError, match="kind"):
        gateway.send(MSISDN, "x", "fax")


def test_health(client):
    assert client.get("/health").json() == {"status": "ok", "database": "ok", "routers": ["sms", "rp", "merchant"]}


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body", "status", "field"), [
    ("POST", "/rp/orders", order_body(amount=0), 422, "amount"),
    ("POST", "/rp/orders", order_body(amount="100"), 422, "amount"),
    ("POST", "/rp/orders", order_body(amount=1.5), 422, "amount"),
    ("POST", "/rp/orders", order_body(amount=10**12), 422, "amount"),
    ("POST", "/rp/orders", order_body(currency=840), 400, "currency"),
    ("POST", "/rp/orders", order_body(time="20241301123000"), 400, "time"),
    ("POST", "/rp/orders", order_body(time="2024"), 422, "time"),
    ("POST", "/rp/orders", order_body(merchantId="a b"), 422, "merchantId"),
    ("POST", "/rp/orders", order_body(orderId=""), 422, "orderId"),
    ("POST", "/rp/orders", order_body(notifyUrl="ftp://x"), 400, "notifyUrl"),
    ("POST", "/rp/orders", order_body(extra=1), 422, "extra"),
    ("POST", "/rp/orders", {k: v for k, v in order_body().items() if k != "time"}, 422, "time"),
    ("POST", "/rp/orders", [1, 2], 422, "body"),
    ("GET", "/rp/orders/123", None, 422, "txnId"),
    ("GET", "/rp/orders/" + "1" * 21, None, 404, "txnId"),
    ("GET", "/rp/orders?merchantId=A", None, 422, "orderId"),
    ("POST", "/rp/orders/" + "1" * 21 + "/pay-se", {"seId": "zz", "nonce": "00" * 16, "signature": "00"}, 422, "seId"),
    ("POST", "/rp/orders/" + "1" * 21 + "/pay-se", {"seId": SE_ID.hex(), "nonce": "00", "signature": "00"}, 422,
     "nonce"),
    ("POST", "/rp/orders/" + "1" * 21 + "/pay-se", {"seId": SE_ID.hex(), "nonce": "00" * 16, "signature": "0"}, 422,
     "signature"),
    ("POST", "/rp/orders/" + "1" * 21 + "/pay-se", {"seId": SE_ID.hex(), "nonce": "00" * 16, "signature": "00"}, 404,
     "txnId"),
    ("POST", "/rp/orders/" + "1" * 21 + "/pay-password", {"walletId": "W" + "0" * 16, "smsCode": "12345",
                                                          "encryptedPassword": "00"}, 422, "smsCode"),
    ("POST", "/rp/orders/" + "1" * 21 + "/sms", {"walletId": "nobody"}, 422, "walletId"),
    ("POST", "/rp/wallets", {"issuer": "bank-z", "msisdn": MSISDN, "pan": PAN, "encryptedPassword": "00"}, 404,
     "issuer"),
    ("POST", "/rp/wallets", {"issuer": "bank-a", "msisdn": "12ab5", "pan": PAN, "encryptedPassword": "00"}, 400,
     "msisdn"),
    ("POST", "/rp/wallets", {"issuer": "bank-a", "msisdn": MSISDN, "pan": PAN}, 400, "seId"),
    ("POST", "/rp/wallets", {"issuer": "bank-a", "msisdn": MSISDN, "encryptedPassword": "00"}, 400, "accountId"),
    ("POST", "/rp/wallets", {"issuer": "bank-a", "msisdn": MSISDN, "pan": PAN, "encryptedPassword": "00"}, 400,
     "encryptedPassword"),
    ("POST", "/rp/wallets", {"issuer": "bank-a", "msisdn": MSISDN, "pan": "6228480000000000",
                             "encryptedPassword": rps.seal_password(PASSWORD, rps.registration_aad(MSISDN)).hex()},
     404, "pan"),
    ("POST", "/rp/wallets", {"issuer": "bank-a", "msisdn": MSISDN, "accountId": "issuer:bank-b:cardholder:X",
                             "encryptedPassword": rps.seal_password(PASSWORD, rps.registration_aad(MSISDN)).hex()},
     404, "accountId"),
    ("POST", "/rp/wallets", {"issuer": "bank-a", "msisdn": MSISDN, "pan": PAN,
                             "encryptedPassword": rps.seal_password("12345", rps.registration_aad(MSISDN)).hex()},
     400, "encryptedPassword"),
    ("POST", "/rp/issuers/bank-a/ca/certificates", {"seId": SE_ID.hex(), "publicKey": "7F4900"}, 400, "publicKey"),
    ("GET", "/rp/issuers/bank-z/ca", None, 404, "issuer"),
    ("GET", "/rp/wallets/W0000000000000000", None, 404, "walletId"),
    ("POST", "/merchant/checkout", {"amount": -5}, 422, "amount"),
    ("POST", "/merchant/checkout", {}, 422, "amount"),
    ("GET", "/merchant/orders/nothing", None, 404, "orderId"),
    ("GET", "/sms/outbox/abc", None, 400, "msisdn"),
    ("GET", "/sms/outbox/13800138000?since=-1", None, 422, "since"),
    ("DELETE", "/rp/orders", None, 405, "method"),
    ("GET", "/rp/nowhere", None, 404, "path"),
])
def test_bad_input_is_a_4xx_json_error_naming_the_field(client, method, path, body, status, field):
    answer = client.request(method, path, json=body)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json()["field"] == field
    assert isinstance(answer.json()["error"], str)


_scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
            | st.text(max_size=30))
_json = st.recursive(_scalars, lambda children: st.lists(children, max_size=4)
                     | st.dictionaries(st.text(max_size=12), children, max_size=4), max_leaves=10)
_fields = st.fixed_dictionaries({}, optional={k: _json | st.just(v) for k, v in order_body().items()})


@pytest.mark.property
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_fields | _json, path=st.sampled_from(["/rp/orders", "/rp/wallets", "/merchant/checkout",
                                                    "/rp/orders/" + "1" * 21 + "/pay-se"]))
def test_no_request_body_gets_a_500(client, body, path):
    answer = client.post(path, json=body)
    assert answer.status_code < 500, answer.text
    if answer.status_code >= 400:
        assert "field" in answer.json()


# --- over a real server ---------------------------------------------------------------------------


def test_over_uvicorn_on_loopback(ctx):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    # the merchant platform talks to the remote payment system over HTTP and is notified over HTTP
    shop = MerchantPlatform(ctx, HttpRpClient(base), notify_url=f"{base}/merchant/notify")
    server = uvicorn.Server(uvicorn.Config(create_app(ctx, merchant=shop), log_level="warning", ws="none",
                                           lifespan="off", http="h11"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        with httpx.Client(base_url=base, timeout=10) as http:
            assert http.get("/health").json()["status"] == "ok"
            wallet = SeWallet(issue_remote_sign_card(certify_over_http(http)))
            registered = http.post("/rp/wallets", json={
                "issuer": "bank-a", "pan": PAN, "msisdn": MSISDN, "seId": SE_ID.hex(),
                "certificate": wallet.certificate().hex(), "signerId": USER_ID.decode()})
            assert registered.status_code == 201, registered.text
            order = http.post("/merchant/checkout", json={"amount": 888}).json()
            paid, _ = wallet.pay(http, order["txnId"])
            assert paid.status_code == 200, paid.text
            assert http.post("/rp/orders", json=order_body(amount="x")).json()["field"] == "amount"
            # the notification is posted to /merchant/notify after the response: wait for it
            while http.get(f"/merchant/orders/{order['orderId']}").json()["status"] != "paid":
                assert time.monotonic() < deadline, "no notification reached the merchant"
                time.sleep(0.02)
            assert http.get(f"/rp/orders/{order['txnId']}").json()["notify"]["status"] == "acked"
        assert available(ctx, merchant_account(order)) == 888
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
    assert not thread.is_alive()
