"""The handset simulation and its wallet against the embedded backend over real loopback HTTP.

One :class:`EmbeddedBackend` per module (uvicorn on an ephemeral port, the TSM network connected
over httpx). Each test gets its own SE id and phone number. The handset takes the place of the
backend's ``HandsetSim`` in the TSM services' registry: a PBOC card is issued onto a SIM over
SMS-PP (SEI-TSM, direct mode) and onto a microSD / eSE over HTTP remote administration (MTPS hub,
UnionPay hub), then tapped through the handset's NFC route. Remote payments: SE mode (nonce,
SIGN ORDER DIGEST on the SE, idempotent retry) and SMS-code mode (right, wrong, expired and
exhausted codes; the code read from the SMS inbox over HTTP). Time is injected through the
backend context's clock, as the backend tests do. The ledger invariants are checked at the end.
"""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from paylab.drivers.errors import CardRemoved, FieldLost, NoCard
from paylab.drivers.handset import (
    Handset,
    HandsetOff,
    NoSuchFunction,
    Outcome,
    SmsNotReceived,
    Wallet,
    personalise_remote_sign,
)
from paylab.drivers.handset.errors import BackendUnreachable
from paylab.drivers.nfc.emulator import NfcCardEmulator
from paylab.drivers.nfc.reader import NfcReader
from paylab.drivers.protocols.card import ApduCard, CardEmulatorProtocol
from paylab.drivers.se.catalog_default import default_catalog
from paylab.drivers.se.factory import fabricate
from paylab.drivers.se.form_factor import ESE, SIM
from paylab.drivers.se.image import CardImage
from paylab.drivers.se.runtime import SecureElement
from paylab.lab.backend import remote_payment as rps
from paylab.lab.backend.config import load_config
from paylab.lab.backend.ledger import account_number, cardholder_account
from paylab.lab.backend.runner import EmbeddedBackend
from paylab.lab.backend.tsm import issue_card
from paylab.lab.profiles import load_bundled
from paylab.lab.protocol import cps, dol, tlv
from paylab.lab.protocol.apdu import CommandApdu, ResponseApdu
from paylab.lab.protocol.crypto import emv

h = bytes.fromhex
OPERATOR = "operator-cm"
DEBIT = ("bank-a", "pboc_debit_ecash_sm4")
PPSE = b"2PAY.SYS.DDF01"
PAN = "6228488800000010"  # bank-a debit card of the default configuration
ACCOUNT = cardholder_account("bank-a", account_number("bank-a", PAN))
PIN = "4321"
PASSWORD = "246810"
_ids = itertools.count(1)


class OffsetClock:
    """Real time plus an offset the test moves forward (the backend's injected clock)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class BenchAntenna(CardEmulatorProtocol):
    """An antenna a phone is held against; the test plays the terminal with :meth:`send`.
    (The NFC card emulator over nfcpy is a separate driver: this one only presents and withdraws.)"""

    name = "bench-antenna"

    def __init__(self) -> None:
        super().__init__()
        self.card: ApduCard | None = None

    def present(self, card: ApduCard) -> None:
        self.card = card
        card.power_on("contactless")

    def withdraw(self) -> None:
        card, self.card = self.card, None
        if card is not None:
            card.power_off()

    @property
    def presented(self) -> bool:
        return self.card is not None

    def send(self, cmd: CommandApdu) -> ResponseApdu:
        if self.card is None:
            raise NoCard("nothing in the field", resource=self.name)
        return ResponseApdu.decode(self.traced(cmd.encode(), lambda raw: self.card.transmit(raw)))


# --- fixtures -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clock() -> OffsetClock:
    return OffsetClock()


@pytest.fixture(scope="module")
def backend(tmp_path_factory, clock) -> Iterator[EmbeddedBackend]:
    config = load_config(overrides={"state_dir": tmp_path_factory.mktemp("handset-backend")})
    with EmbeddedBackend(config) as running:
        assert running.ctx is not None
        running.ctx.clock = clock  # time injection: every service reads ctx.clock()
        yield running
        running.ctx.ledger.check_invariants()


@pytest.fixture
def handsets(backend) -> Iterator[list[Handset]]:
    made: list[Handset] = []
    yield made
    for handset in made:
        assert backend.tsm is not None
        backend.tsm.services.handsets.pop(handset.se_id, None)
        handset.close()


def new_ids() -> tuple[str, str]:
    n = next(_ids)
    return f"se-h{n:03d}", f"1390000{n:04d}"


def phone(backend: EmbeddedBackend, handsets: list[Handset], form_factor: str) -> Handset:
    """A phone of the TSM network (manufactured, registered with the operator's SEI-TSM) whose
    stand-in the handset replaces in the TSM services' registry."""
    assert backend.tsm is not None
    se_id, msisdn = new_ids()
    stand_in = backend.tsm.manufacture(se_id, form_factor, owner=OPERATOR, msisdn=msisdn)
    handset = Handset.replacing(stand_in, placement=form_factor, backend_http_url=backend.http_url)
    assert handset.attach(backend.tsm.services.handsets) is stand_in
    handsets.append(handset)
    return handset


def standalone(backend: EmbeddedBackend, handsets: list[Handset], form_factor=ESE) -> Handset:
    """A phone with a freshly fabricated SE, outside the TSM network."""
    se_id, msisdn = new_ids()
    image = CardImage(None, durable=False)
    fabricate(image, form_factor)
    se = SecureElement(image, form_factor, default_catalog(), seed=11)
    handset = Handset(se, se_id=se_id, msisdn=msisdn, placement=form_factor.name, backend_http_url=backend.http_url)
    handsets.append(handset)
    return handset


def _aids(data: bytes) -> list[bytes]:
    found: list[bytes] = []

    def walk(objects) -> None:
        for obj in objects:
            if obj.tag == 0x4F:
                found.append(obj.value)
            elif obj.children:
                walk(obj.children)

    walk(tlv.decode(data))
    return found


def online_tap(send: Callable[[CommandApdu], ResponseApdu], profile_name: str, amount: int = 100) -> None:
    """PPSE lists the card; SELECT; GPO with an online TTQ; the ARQC verifies with the issuer keys."""
    profile = load_bundled(profile_name)
    ppse = send(CommandApdu(0x00, 0xA4, 0x04, 0x00, PPSE, 256))
    assert ppse.sw == 0x9000
    assert profile.aid in _aids(ppse.data)
    fci = send(CommandApdu(0x00, 0xA4, 0x04, 0x00, profile.aid, 256))
    assert fci.sw == 0x9000
    pdol = tlv.find(tlv.decode(fci.data), 0x9F38).value
    values = {0x9F66: h("36800000"), 0x9F02: cps.amount_n12(amount), 0x9F03: bytes(6), 0x9F1A: h("0156"),
              0x95: bytes(5), 0x5F2A: h("0156"), 0x9A: h("260101"), 0x9C: b"\x00", 0x9F37: h("11223344"),
              0xDF69: b"\x01" if profile.algorithm == "sm4" else b"\x00"}
    gpo = send(CommandApdu(0x80, 0xA8, 0, 0, dol.gpo_command_data(
        dol.build_dol_data(pdol, values, kernel="A000000333")), 256))
    assert gpo.sw == 0x9000, f"GPO answered {gpo.sw:04X}"
    card = tlv.to_dict(tlv.decode(gpo.data))
    iad = emv.parse_iad(card[0x9F10])
    data = emv.ac_input(values | {0x82: card[0x82], 0x9F36: card[0x9F36]}, iad.cvr)
    assert emv.verify_arqc(profile.issuer_keys.imk_ac, profile.pan, profile.psn, card[0x9F36], data, card[0x9F26],
                           method=emv.session_method_for_cvn(iad.cvn), alg=emv.alg_for_iad(iad))


# --- OTA issuance through the handset --------------------------------------------------------------------


@pytest.mark.parametrize(("form_factor", "mode"), [("sim", "direct"), ("microsd", "mtps-hub"),
                                                   ("ese", "unionpay-hub")])
def test_tsm_issues_a_pboc_card_through_the_handset_and_it_taps(backend, handsets, form_factor, mode):
    handset = phone(backend, handsets, form_factor)
    assert backend.tsm is not None
    issuance = issue_card(backend.tsm, mode, handset.se_id, issuer=DEBIT[0], profile=DEBIT[1])
    assert issuance.telecom_active
    if form_factor == "sim":  # SMS-PP data download through the modem
        assert (handset.sms_delivered > 0, handset.admin_sessions) == (True, 0)
    else:  # GP Amendment B sessions over HTTP against /ota/admin/{se_id}
        assert (handset.sms_delivered, handset.admin_sessions > 0) == (0, True)
    assert handset.se.faults == []

    antenna = BenchAntenna()
    with handset.tapped(antenna) as route:
        online_tap(antenna.send, DEBIT[1])
        assert route.apdus == 3
    assert not antenna.presented

    # lost phone: the bank locks the card over the air right after the tap (the SE still powered)
    locked = backend.tsm.client(DEBIT[0]).post(f"/tsm/sp/{issuance.sp_tsm}/apps/lock",
                                              {"se_id": handset.se_id, "aid": issuance.aid.hex()})
    assert locked["state"] == "locked"
    with handset.tapped(antenna):
        ppse = antenna.send(CommandApdu(0x00, 0xA4, 0x04, 0x00, PPSE, 256))
        assert issuance.aid not in _aids(ppse.data)
    assert handset.se.faults == []


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_issued_sim_taps_a_real_nfc_reader_through_the_card_emulator(backend, handsets):
    """The handset's NFC route behind paylab's nfcpy card emulator, read by the nfcpy reader over the
    udp pseudo-driver (ISO 14443-4 on loopback): a UICC's T=0 61xx never reaches the air."""
    handset = phone(backend, handsets, "sim")
    assert backend.tsm is not None
    issue_card(backend.tsm, "direct", handset.se_id, issuer=DEBIT[0], profile=DEBIT[1])
    path = f"udp:127.0.0.1:{free_udp_port()}"
    emulator = NfcCardEmulator(path)
    try:
        reader = NfcReader(path)
        try:
            with handset.tapped(emulator):
                reader.wait_for_card(5)
                reader.power_on()
                online_tap(lambda cmd: ResponseApdu.decode(reader.transmit(cmd.encode())), DEBIT[1])
            assert reader.wait_for_removal(5)
        finally:
            reader.close()
    finally:
        emulator.close()
    assert handset.as_card().apdus == 3
    assert emulator.apdu_count == 3


def test_nfc_settings_phone_power_and_resets_during_a_tap(backend, handsets):
    handset = standalone(backend, handsets, SIM)
    antenna = BenchAntenna()
    handset.set_nfc(False)
    with pytest.raises(NoCard):
        handset.tap(antenna)
    with pytest.raises(NoCard):
        handset.as_card().power_on("contactless")
    handset.set_nfc(True)

    handset.tap(antenna)
    select = antenna.send(CommandApdu(0x00, 0xA4, 0x04, 0x00, PPSE, 256))
    assert (select.sw, _aids(select.data)) == (0x9000, [])  # a blank SE: the PPSE lists nothing yet
    handset.se.power_on("contact")  # something reset the SE behind the route's back
    with pytest.raises(CardRemoved):
        antenna.send(CommandApdu(0x00, 0xA4, 0x04, 0x00, PPSE, 256))
    handset.lift(antenna)

    handset.tap(antenna)
    handset.set_nfc(False)  # NFC switched off in the middle of a tap
    with pytest.raises(FieldLost):
        antenna.send(CommandApdu(0x00, 0xA4, 0x04, 0x00, PPSE, 256))
    handset.lift(antenna)
    handset.set_nfc(True)

    handset.set_phone_power(False)
    assert not handset.se.powered
    with pytest.raises(HandsetOff):
        handset.deliver_sms(h("80C2000000"))
    with pytest.raises(NoCard):
        handset.tap(antenna)
    with pytest.raises(HandsetOff):
        handset.transmit_contact(h("80CA9F7F00"))
    handset.set_phone_power(True)
    cplc = handset.transmit_contact(h("80CA9F7F00"))
    assert cplc[-2:] == h("9000")
    # a SIM has no admin agent; an eSE takes no SMS-PP data download
    with pytest.raises(NoSuchFunction):
        handset.admin_session()
    ese = standalone(backend, handsets, ESE)
    assert ese.agent is not None
    with pytest.raises(NoSuchFunction):
        ese.deliver_sms(h("80C2000000"))


def test_battery_off_card_emulation_keeps_the_se_in_the_field(backend, handsets):
    handset = standalone(backend, handsets, ESE)
    handset.battery_off_emulation = True
    antenna = BenchAntenna()
    handset.set_phone_power(False)
    with handset.tapped(antenna):
        assert antenna.send(CommandApdu(0x00, 0xA4, 0x04, 0x00, PPSE, 256)).sw in (0x9000, 0x6A82)
    assert not handset.se.powered  # the field is gone and the phone is off


def test_admin_session_against_an_unreachable_gateway_is_a_typed_error(backend, handsets):
    handset = standalone(backend, handsets, ESE)
    # a port nothing listens on: connection refused, quickly
    with httpx.Client(base_url="http://127.0.0.1:9", timeout=2) as dead:
        offline = Handset(handset.se, se_id=handset.se_id, placement="ese", http_client=dead)
        with pytest.raises(BackendUnreachable):
            offline.admin_session()
    # the real gateway with nothing queued: the session ends at once (204)
    assert handset.admin_session() == []


# --- remote payment: SE mode -----------------------------------------------------------------------------


@pytest.fixture(params=[ESE, SIM], ids=["ese", "sim"])
def se_wallet(request, backend, handsets) -> Iterator[Wallet]:
    handset = standalone(backend, handsets, request.param)
    with Wallet(handset, backend.http_url, pin=PIN) as wallet:
        certificate = personalise_remote_sign(handset, wallet.certifier("bank-a"), pin=PIN)
        assert wallet.read_certificate() == certificate
        registration = wallet.register_se(issuer="bank-a", pan=PAN)
        assert (registration.se_mode, registration.password_mode) == (True, False)
        assert registration.se_id == handset.rp_se_id.hex().upper()
        yield wallet


def wait_merchant_paid(wallet: Wallet, order_id: str, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        view = wallet.merchant_order(order_id)
        if view["status"] == "paid" or time.monotonic() > deadline:
            return view
        time.sleep(0.05)


def test_se_mode_payment_is_approved_and_a_retry_debits_nothing(backend, se_wallet):
    ledger = backend.ctx.ledger
    before = ledger.available(ACCOUNT)
    result = se_wallet.pay_with_se(amount=12345)
    assert result.approved, result
    assert (result.response_code, result.http_status, result.pay_mode, result.amount) == ("00", 200, "se", 12345)
    assert ledger.available(ACCOUNT) == before - 12345

    again = se_wallet.retry_last()  # the same request, as after a lost answer
    assert again.approved
    assert (again.txn_id, again.paid_at) == (result.txn_id, result.paid_at)
    assert ledger.available(ACCOUNT) == before - 12345
    assert len(ledger.entries(reference=result.txn_id)) == 1
    assert se_wallet.query(result.txn_id).status == "paid"
    assert wait_merchant_paid(se_wallet, result.order_id)["status"] == "paid"

    paid_again = se_wallet.pay_with_se(result.txn_id)  # a new attempt on a paid order: a decline, no raise
    assert (paid_again.outcome, paid_again.http_status) == (Outcome.ALREADY_PAID, 409)


def test_se_mode_wrong_pin_is_a_decline_on_the_phone(backend, se_wallet):
    order = se_wallet.checkout(500)
    refused = se_wallet.pay_with_se(order, pin="0000")
    assert (refused.outcome, refused.http_status, refused.pin_tries_left) == (Outcome.PIN_WRONG, 0, 2)
    assert se_wallet.pin_tries_left() == 2
    paid = se_wallet.pay_with_se(order)
    assert paid.approved
    assert se_wallet.pin_tries_left() == 3


def test_the_wallet_signs_on_a_logical_channel_while_a_tap_goes_on(backend, se_wallet):
    antenna = BenchAntenna()
    with se_wallet.handset.tapped(antenna):
        assert antenna.send(CommandApdu(0x00, 0xA4, 0x04, 0x00, PPSE, 256)).sw == 0x9000
        assert se_wallet.pay_with_se(amount=700).approved  # OMAPI channel over the contact side
        assert antenna.send(CommandApdu(0x00, 0xA4, 0x04, 0x00, PPSE, 256)).sw == 0x9000  # the tap goes on


# --- remote payment: SMS-code mode -----------------------------------------------------------------------


@pytest.fixture
def sms_wallet(backend, handsets) -> Iterator[Wallet]:
    handset = standalone(backend, handsets, SIM)
    with Wallet(handset, backend.http_url, password=PASSWORD, sms_timeout=10) as wallet:
        registration = wallet.register_password(issuer="bank-a", pan=PAN)
        assert (registration.se_mode, registration.password_mode) == (False, True)
        yield wallet


def test_password_envelope_is_the_one_the_backend_opens():
    from paylab.drivers.handset import seal_password

    envelope = seal_password(PASSWORD, rps.payment_aad("202401011230001234567"))
    assert rps.open_password(envelope, rps.payment_aad("202401011230001234567")) == PASSWORD


def test_sms_code_read_from_the_inbox_pays_and_the_sms_is_acknowledged(backend, sms_wallet):
    before = backend.ctx.ledger.available(ACCOUNT)
    result = sms_wallet.pay_with_sms_code(amount=2000)
    assert result.approved, result
    assert (result.pay_mode, result.amount, result.response_code) == ("sms", 2000, "00")
    assert backend.ctx.ledger.available(ACCOUNT) == before - 2000
    # the code came from the SMS inbox, which sent a delivery receipt
    handset = sms_wallet.handset
    otp = handset.latest_otp(result.order_id, timeout=1)
    assert otp.code == result.code
    outbox = httpx.get(f"{backend.http_url}/sms/outbox/{handset.msisdn}", timeout=5).json()["messages"]
    assert [m["status"] for m in outbox] == ["delivered"]
    again = sms_wallet.retry_last()
    assert again.approved
    assert again.paid_at == result.paid_at
    assert backend.ctx.ledger.available(ACCOUNT) == before - 2000


def test_wrong_code_is_refused_then_the_right_one_pays(backend, sms_wallet):
    order = sms_wallet.checkout(300)
    sent = sms_wallet.request_code(order)
    assert sent.sent
    assert sent.tries_left == 3
    code = sms_wallet.read_code(order.txn_id, sent.sms_id)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    refused = sms_wallet.pay_with_sms_code(order, code=wrong)
    assert (refused.outcome, refused.http_status, refused.tries_left, refused.locked) == (
        Outcome.WRONG_CODE, 403, 2, False)
    paid = sms_wallet.pay_with_sms_code(order, code=code)
    assert paid.approved
    assert sms_wallet.query(order.txn_id).status == "paid"


def test_wrong_password_with_the_right_code_is_refused(backend, sms_wallet):
    order = sms_wallet.checkout(301)
    refused = sms_wallet.pay_with_sms_code(order, password="135790")
    assert (refused.outcome, refused.http_status, refused.tries_left) == (Outcome.WRONG_PASSWORD, 403, 2)


def test_expired_code_is_refused(backend, clock, sms_wallet):
    order = sms_wallet.checkout(400)
    sent = sms_wallet.request_code(order)
    code = sms_wallet.read_code(order.txn_id, sent.sms_id)
    clock.advance(backend.config.remote_payment.otp_ttl_s + 1)
    expired = sms_wallet.pay_with_sms_code(order, code=code)
    assert (expired.outcome, expired.http_status) == (Outcome.CODE_EXPIRED, 410)
    # a new code replaces it and pays
    assert sms_wallet.pay_with_sms_code(order).approved


def test_three_wrong_codes_lock_the_order(backend, sms_wallet):
    before = backend.ctx.ledger.available(ACCOUNT)
    order = sms_wallet.checkout(500)
    sent = sms_wallet.request_code(order)
    code = sms_wallet.read_code(order.txn_id, sent.sms_id)
    wrong = f"{(int(code) + 7) % 10**6:06d}"
    answers = [sms_wallet.pay_with_sms_code(order, code=wrong) for _ in range(3)]
    assert [(a.outcome, a.tries_left, a.locked) for a in answers] == [
        (Outcome.WRONG_CODE, 2, False), (Outcome.WRONG_CODE, 1, False), (Outcome.WRONG_CODE, 0, True)]
    locked = sms_wallet.pay_with_sms_code(order, code=code)
    assert (locked.outcome, locked.http_status, locked.locked) == (Outcome.CODE_LOCKED, 423, True)
    resend = sms_wallet.pay_with_sms_code(order)  # asking for a new code: refused too
    assert (resend.outcome, resend.http_status) == (Outcome.CODE_LOCKED, 423)
    assert backend.ctx.ledger.available(ACCOUNT) == before


def test_wait_for_sms_by_regex_and_kind(backend, handsets):
    handset = standalone(backend, handsets, SIM)
    posted = httpx.post(f"{backend.http_url}/sms/messages", timeout=5,
                        json={"msisdn": handset.msisdn, "text": "your parcel 42 is here", "kind": "notice"})
    assert posted.status_code == 201
    message = handset.wait_for_sms(r"parcel (\d+)", timeout=5)
    assert (message.id, message.kind) == (posted.json()["id"], "notice")
    assert "parcel" not in repr(message)  # texts stay out of reprs and logs
    with pytest.raises(SmsNotReceived):
        handset.wait_for_sms(r"parcel", timeout=0.2, after_id=message.id)
    with pytest.raises(SmsNotReceived):
        handset.latest_otp(timeout=0.1)


def test_a_switched_off_phone_receives_no_code_until_it_is_on(backend, handsets):
    handset = standalone(backend, handsets, SIM)
    with Wallet(handset, backend.http_url, password=PASSWORD) as wallet:
        wallet.register_password(issuer="bank-a", pan=PAN)
        order = wallet.checkout(600)
        handset.set_phone_power(False)
        sent = wallet.request_code(order)
        with pytest.raises(SmsNotReceived):
            wallet.read_code(order.txn_id, sent.sms_id, timeout=0.3)
        handset.set_phone_power(True)
        assert wallet.pay_with_sms_code(order, request_code=False).approved
