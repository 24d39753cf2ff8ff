"""The wallet app on the handset: remote payments against the backend's remote payment system.

Two modes (domain brief section 7; API of ``lab/backend/remote_payment.py``, over HTTP with httpx):

* **SE mode** (:meth:`Wallet.pay_with_se`): ``POST /rp/orders/{txnId}/nonce`` gives a nonce and the
  order fields; the wallet hashes them (:func:`paylab.lab.protocol.remote_payment.order_digest`),
  opens a logical channel to the signing applet (``paylab.drivers.se.applets.remote_sign``: SELECT,
  VERIFY PIN ``00 20 00 81``, SIGN ORDER DIGEST ``80 2A 9E 9A``) and posts ``pay-se``.
* **Non-SE mode** (:meth:`Wallet.pay_with_sms_code`, UnionPay ACP 5.0.0 shape): ``.../sms``
  (``txnType=77``) sends a 6-digit code to the phone, read from the handset's SMS inbox unless the
  test gives one; ``.../pay-password`` (``txnType=01``) carries the code and the payment password in
  the backend's password envelope (:func:`seal_password`).

Every outcome the backend answers (approved, or a refusal with its HTTP status and error) is a
:class:`PaymentResult`: a decline never raises. Transport failures raise
:class:`~.errors.BackendUnreachable`, a 5xx or non-JSON answer :class:`~.errors.BackendError`, an SE
answering an unexpected status word :class:`~.errors.SeCommandFailed`.

**Password envelope** [M, the backend's published TEST convention]: SM4-GCM under the pre-shared
TEST key ``SM3("paylab TEST KEY: remote payment password transport")[:16]``, ``01 || IV(12) || C ||
tag(16)``, additional data ``paylab-rp|pay|<txnId>`` (payment) or ``paylab-rp|register|<msisdn>``.
"""

from __future__ import annotations

import dataclasses
import enum
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from paylab.drivers.se.applets.remote_sign import MODULE_AID
from paylab.lab.protocol import remote_payment as rpp
from paylab.lab.protocol.crypto.primitives import sm3
from paylab.lab.protocol.crypto.sm2 import DEFAULT_USER_ID
from paylab.lab.protocol.masking import mask_pan

from .errors import BackendError, NoSuchFunction, SeCommandFailed
from .handset import Handset
from .http import DEFAULT_TIMEOUT_S, JsonAnswer, call_json, make_client
from .sms_inbox import parse_otp

TEST_PASSWORD_TRANSPORT_KEY = sm3(b"paylab TEST KEY: remote payment password transport")[:16]
"""The SM4 key of the password envelope, pre-shared with every wallet (a published TEST KEY)."""
DEFAULT_SMS_TIMEOUT_S = 5.0

__all__ = ["CodeRequest", "Order", "Outcome", "PaymentResult", "Wallet", "WalletRegistration", "payment_aad",
           "registration_aad", "seal_password"]


# --- the password envelope ---------------------------------------------------------------------------


def _digits(msisdn: str) -> str:
    text = msisdn.strip()
    return text[1:] if text.startswith("+") else text


def payment_aad(txn_id: str) -> bytes:
    return f"paylab-rp|pay|{txn_id}".encode()


def registration_aad(msisdn: str) -> bytes:
    return f"paylab-rp|register|{_digits(msisdn)}".encode()


def seal_password(password: str, aad: bytes, *, key: bytes = TEST_PASSWORD_TRANSPORT_KEY,
                  iv: bytes | None = None) -> bytes:
    """``01 || IV || SM4-GCM(password) || tag`` with additional data ``aad`` (module docstring)."""
    iv = secrets.token_bytes(12) if iv is None else iv
    if len(iv) != 12:
        raise ValueError("the IV is 12 bytes")
    enc = Cipher(algorithms.SM4(key), modes.GCM(iv)).encryptor()
    enc.authenticate_additional_data(aad)
    body = enc.update(password.encode("utf-8")) + enc.finalize()
    return b"\x01" + iv + body + enc.tag


# --- results -------------------------------------------------------------------------------------------


class Outcome(enum.StrEnum):
    """What a payment attempt came to (from the backend's status and error, or the SE's PIN check)."""

    APPROVED = "approved"
    WRONG_CODE = "wrong-code"
    WRONG_PASSWORD = "wrong-password"
    CODE_EXPIRED = "code-expired"
    CODE_LOCKED = "code-locked"
    NO_CODE = "no-code"
    TOO_MANY_CODES = "too-many-codes"
    ALREADY_PAID = "already-paid"
    INSUFFICIENT_FUNDS = "insufficient-funds"
    SIGNATURE_REFUSED = "signature-refused"
    CERTIFICATE_REFUSED = "certificate-refused"
    NONCE_REFUSED = "nonce-refused"
    NONCE_USED = "nonce-used"
    NONCE_EXPIRED = "nonce-expired"
    PIN_WRONG = "pin-wrong"
    PIN_BLOCKED = "pin-blocked"
    NOT_FOUND = "not-found"
    REFUSED = "refused"


_ERRORS: dict[str, Outcome] = {
    "wrong otp": Outcome.WRONG_CODE, "wrong password": Outcome.WRONG_PASSWORD, "otp expired": Outcome.CODE_EXPIRED,
    "otp locked": Outcome.CODE_LOCKED, "order already paid": Outcome.ALREADY_PAID,
    "insufficient funds": Outcome.INSUFFICIENT_FUNDS, "signature does not verify": Outcome.SIGNATURE_REFUSED,
    "nonce already used": Outcome.NONCE_USED, "nonce expired": Outcome.NONCE_EXPIRED,
    "no code was sent to this wallet for this order": Outcome.NO_CODE,
}


def _outcome(status: int, error: str | None, problem_field: str | None) -> Outcome:
    if 200 <= status < 300:
        return Outcome.APPROVED
    known = _ERRORS.get(error or "")
    if known is not None:
        return known
    if status == 429:
        return Outcome.TOO_MANY_CODES
    if status == 404:
        return Outcome.NOT_FOUND
    if problem_field == "certificate":
        return Outcome.CERTIFICATE_REFUSED
    if problem_field == "nonce" and status == 403:
        return Outcome.NONCE_REFUSED
    return Outcome.REFUSED


@dataclass(frozen=True)
class Order:
    """An order as the remote payment system (or the merchant platform) answers it."""

    txn_id: str
    merchant_id: str
    order_id: str
    amount: int
    status: str                 # remote payment system: created | paid; merchant platform: pending | paid
    currency: int = 156
    time: str | None = None
    pay_mode: str | None = None
    paid_at: str | None = None
    raw: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, body: dict[str, Any]) -> Order:
        try:
            return cls(str(body["txnId"]), str(body["merchantId"]), str(body["orderId"]), int(body["amount"]),
                       str(body["status"]), int(body.get("currency", 156)), body.get("time"), body.get("payMode"),
                       body.get("paidAt"), body)
        except (KeyError, TypeError, ValueError):
            raise BackendError("an order without txnId, merchantId, orderId, amount or status",
                               detail=",".join(sorted(body))) from None


@dataclass(frozen=True)
class PaymentResult:
    """One payment attempt. ``http_status`` is the backend's (0 when the SE refused before any
    payment request); ``response_code`` is ``"00"`` when approved, else the :class:`Outcome` value."""

    outcome: Outcome
    http_status: int
    txn_id: str
    order_id: str | None = None
    merchant_id: str | None = None
    amount: int | None = None
    order_status: str | None = None
    pay_mode: str | None = None
    paid_at: str | None = None
    error: str | None = None
    field: str | None = None
    tries_left: int | None = None
    locked: bool = False
    pin_tries_left: int | None = None
    code: str | None = dataclasses.field(default=None, repr=False)
    body: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @property
    def approved(self) -> bool:
        return self.outcome is Outcome.APPROVED

    @property
    def response_code(self) -> str:
        return "00" if self.approved else self.outcome.value


@dataclass(frozen=True)
class WalletRegistration:
    """The wallet as the remote payment system registered it."""

    wallet_id: str
    se_mode: bool
    password_mode: bool
    se_id: str | None
    raw: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class CodeRequest:
    """The answer to a one-time code request: sent (``sms_id``) or refused (``outcome``)."""

    http_status: int
    sms_id: int | None
    tries_left: int | None
    sends_left: int | None
    expires_at: str | None
    outcome: Outcome | None = None
    error: str | None = None

    @property
    def sent(self) -> bool:
        return self.sms_id is not None


# --- the wallet ------------------------------------------------------------------------------------------


class Wallet:
    """The payment app of ``handset`` (module docstring). ``http_url`` is the backend
    (``http://host:port``; default: the handset's client); ``pin`` the SE PIN, ``password`` the
    payment password; ``wallet_id`` once registered (or after :meth:`register_se` /
    :meth:`register_password`). ``applet_aid`` is the signing applet's instance AID."""

    def __init__(self, handset: Handset, http_url: str | None = None, *, http_client: httpx.Client | None = None,
                 pin: str | None = None, password: str | None = None, wallet_id: str | None = None,
                 applet_aid: bytes = MODULE_AID, signer_id: str = DEFAULT_USER_ID.decode("ascii"),
                 timeout: float = DEFAULT_TIMEOUT_S, sms_timeout: float = DEFAULT_SMS_TIMEOUT_S,
                 name: str | None = None) -> None:
        self.handset = handset
        self.name = name or f"wallet@{handset.name}"
        self._owned: httpx.Client | None = None
        if http_client is None and http_url is not None:
            http_client = self._owned = make_client(http_url, timeout)
        self._http = http_client
        self.pin = pin
        self.password = password
        self.wallet_id = wallet_id
        self.applet_aid = bytes(applet_aid)
        self.signer_id = signer_id
        self.sms_timeout = sms_timeout
        self.last_request: tuple[str, dict[str, Any]] | None = None
        """The last payment request (path, JSON body): :meth:`retry_last` sends it again."""

    @property
    def http(self) -> httpx.Client:
        client = self._http or self.handset.http
        if client is None:
            raise NoSuchFunction("the wallet has no backend URL (http_url, or the handset's)", resource=self.name)
        return client

    def close(self) -> None:
        if self._owned is not None:
            self._owned.close()
            self._owned = None
            self._http = None

    def __enter__(self) -> Wallet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None,
              params: dict[str, Any] | None = None) -> JsonAnswer:
        return call_json(self.http, method, path, json=body, params=params, resource=self.name)

    # -- the secure element ------------------------------------------------------------------------------
    def _read(self, ins: int) -> bytes:
        with self.handset.open_channel(self.applet_aid) as channel:
            try:
                return rpp.read_object(lambda raw: channel.transmit(raw).encode(), ins)
            except rpp.CardAnswerError as exc:
                raise SeCommandFailed(f"reading object {ins:02X} refused", resource=self.name,
                                      detail=f"80{ins:02X}", sw=exc.sw) from exc

    def read_certificate(self) -> bytes:
        """The certificate the issuer's CA made for the SE's signing key (GET CERTIFICATE)."""
        return self._read(rpp.INS_GET_CERTIFICATE)

    def read_public_key(self) -> bytes:
        """The SE's public key template 7F49 (GET PUBLIC KEY)."""
        return self._read(rpp.INS_GET_PUBLIC_KEY)

    def pin_tries_left(self) -> int | None:
        """VERIFY without data: the PIN tries left (None when the PIN is already verified)."""
        with self.handset.open_channel(self.applet_aid) as channel:
            answer = channel.transmit(rpp.verify_pin_command(None))
        if answer.sw == 0x9000:
            return None
        if answer.sw & 0xFFF0 == 0x63C0:
            return answer.sw & 0x0F
        if answer.sw == 0x6983:
            return 0
        raise SeCommandFailed("VERIFY refused", resource=self.name, detail="00200081", sw=answer.sw)

    def sign(self, digest: bytes, pin: str | None = None) -> tuple[bytes | None, int | None]:
        """VERIFY PIN and SIGN ORDER DIGEST on a logical channel: ``(signature, None)``, or
        ``(None, tries left)`` when the PIN is refused (0: blocked)."""
        pin = pin if pin is not None else self.pin
        if pin is None:
            raise ValueError("the SE PIN is needed (Wallet(pin=...) or pin=...)")
        with self.handset.open_channel(self.applet_aid) as channel:
            verified = channel.transmit(rpp.verify_pin_command(pin))
            if verified.sw & 0xFFF0 == 0x63C0:
                return None, verified.sw & 0x0F
            if verified.sw == 0x6983:
                return None, 0
            if verified.sw != 0x9000:
                raise SeCommandFailed("VERIFY refused", resource=self.name, detail="00200081", sw=verified.sw)
            signed = channel.transmit(rpp.sign_order_command(digest))
            if signed.sw != 0x9000:
                raise SeCommandFailed("SIGN ORDER DIGEST refused", resource=self.name, detail="802A9E9A",
                                      sw=signed.sw)
            return signed.data, None

    # -- enrolment -----------------------------------------------------------------------------------------
    def certify(self, issuer: str, public_key: bytes, *, se_id: bytes | None = None) -> bytes:
        """Ask the issuer's TEST CA to certify the SE's key (what the issuer's perso system does):
        ``POST /rp/issuers/{issuer}/ca/certificates``; the compact certificate."""
        holder = se_id if se_id is not None else self.handset.rp_se_id
        answer = self._call("POST", f"/rp/issuers/{issuer}/ca/certificates",
                            {"seId": holder.hex(), "publicKey": public_key.hex()})
        if answer.status != 201:
            raise BackendError(f"certification refused: {answer.body.get('error')}", resource=self.name,
                               status=answer.status)
        return bytes.fromhex(answer.body["certificate"])

    def certifier(self, issuer: str) -> Callable[[bytes, bytes], bytes]:
        """``certify(se_id, public key) -> certificate`` at ``issuer``'s CA, for
        :func:`.enrol.personalise_remote_sign`."""
        return lambda se_id, public_key: self.certify(issuer, public_key, se_id=se_id)

    def _register(self, body: dict[str, Any]) -> WalletRegistration:
        answer = self._call("POST", "/rp/wallets", body)
        if answer.status != 201:
            raise BackendError(f"wallet registration refused: {answer.body.get('error')}", resource=self.name,
                               detail=str(answer.body.get("field")), status=answer.status)
        b = answer.body
        self.wallet_id = str(b["walletId"])
        return WalletRegistration(self.wallet_id, bool(b.get("seMode")), bool(b.get("passwordMode")), b.get("seId"), b)

    def _owner(self, issuer: str, pan: str | None, account_id: str | None) -> dict[str, Any]:
        if self.handset.msisdn is None:
            raise ValueError("the handset has no msisdn")
        body: dict[str, Any] = {"issuer": issuer, "msisdn": self.handset.msisdn}
        if pan is not None:
            body["pan"] = pan
        if account_id is not None:
            body["accountId"] = account_id
        return body

    def register_se(self, *, issuer: str, pan: str | None = None, account_id: str | None = None,
                    password: str | None = None) -> WalletRegistration:
        """Register the wallet in SE mode: the SE id and the certificate read from the SE (and a payment
        password too when given). :class:`BackendError` if refused (registration is set-up, not a test
        outcome); the PAN is never logged unmasked."""
        body = self._owner(issuer, pan, account_id) | {
            "seId": self.handset.rp_se_id.hex(), "certificate": self.read_certificate().hex(),
            "signerId": self.signer_id}
        if password is not None:
            self.password = password
            body["encryptedPassword"] = seal_password(password, registration_aad(self.handset.msisdn or "")).hex()
        return self._register(body)

    def register_password(self, password: str | None = None, *, issuer: str, pan: str | None = None,
                          account_id: str | None = None) -> WalletRegistration:
        """Register the wallet in non-SE mode with a 6-digit payment password."""
        password = password if password is not None else self.password
        if password is None:
            raise ValueError("a payment password is needed")
        self.password = password
        body = self._owner(issuer, pan, account_id) | {
            "encryptedPassword": seal_password(password, registration_aad(self.handset.msisdn or "")).hex()}
        return self._register(body)

    # -- orders ------------------------------------------------------------------------------------------
    def checkout(self, amount: int, *, order_id: str | None = None, merchant_id: str | None = None,
                 subject: str = "") -> Order:
        """Buy at the merchant content platform (``POST /merchant/checkout``): the order to pay."""
        body: dict[str, Any] = {"amount": amount, "subject": subject}
        if order_id is not None:
            body["orderId"] = order_id
        if merchant_id is not None:
            body["merchantId"] = merchant_id
        answer = self._call("POST", "/merchant/checkout", body)
        if answer.status != 201:
            raise BackendError(f"checkout refused: {answer.body.get('error')}", resource=self.name,
                               detail=str(answer.body.get("field")), status=answer.status)
        return Order.of(answer.body)

    def query(self, txn_id: str) -> Order:
        """The order at the remote payment system (``GET /rp/orders/{txnId}``)."""
        answer = self._call("GET", f"/rp/orders/{txn_id}")
        if answer.status != 200:
            raise BackendError(f"order query answered {answer.status}: {answer.body.get('error')}",
                               resource=self.name, status=answer.status)
        return Order.of(answer.body)

    def find(self, merchant_id: str, order_id: str) -> Order:
        """The order by the merchant's keys (ACP ``txnType=00``)."""
        answer = self._call("GET", "/rp/orders", params={"merchantId": merchant_id, "orderId": order_id})
        if answer.status != 200:
            raise BackendError(f"order query answered {answer.status}: {answer.body.get('error')}",
                               resource=self.name, status=answer.status)
        return Order.of(answer.body)

    def merchant_order(self, order_id: str, merchant_id: str | None = None) -> dict[str, Any]:
        """The merchant platform's view of its order (``GET /merchant/orders/{orderId}``)."""
        answer = self._call("GET", f"/merchant/orders/{order_id}",
                            params={"merchantId": merchant_id} if merchant_id else None)
        if answer.status != 200:
            raise BackendError(f"merchant order answered {answer.status}", resource=self.name, status=answer.status)
        return answer.body

    def _txn(self, order: str | Order | None, amount: int | None, order_id: str | None,
             merchant_id: str | None) -> str:
        if isinstance(order, Order):
            return order.txn_id
        if order is not None:
            return order
        if amount is None:
            raise ValueError("give the txnId / Order to pay, or an amount to check out")
        return self.checkout(amount, order_id=order_id, merchant_id=merchant_id).txn_id

    def _result(self, txn_id: str, answer: JsonAnswer, **extra: Any) -> PaymentResult:
        b = answer.body
        outcome = _outcome(answer.status, b.get("error"), b.get("field"))
        if outcome is Outcome.APPROVED and b.get("status") != "paid":
            raise BackendError(f"payment answered {answer.status} with order status {b.get('status')!r}",
                               resource=self.name)
        tries = b.get("triesLeft")
        return PaymentResult(
            outcome, answer.status, txn_id, b.get("orderId"), b.get("merchantId"), b.get("amount"), b.get("status"),
            b.get("payMode"), b.get("paidAt"), None if outcome is Outcome.APPROVED else b.get("error"),
            b.get("field"), tries if isinstance(tries, int) else None,
            bool(b.get("locked")) or outcome is Outcome.CODE_LOCKED, body=b, **extra)

    def retry_last(self) -> PaymentResult:
        """Send the last payment request again, unchanged (a network retry: the backend must answer the
        same paid order and debit nothing)."""
        if self.last_request is None:
            raise ValueError("no payment request to retry")
        path, body = self.last_request
        return self._result(path.split("/")[3], self._call("POST", path, body))

    # -- SE mode ---------------------------------------------------------------------------------------
    def pay_with_se(self, order: str | Order | None = None, *, amount: int | None = None,
                    order_id: str | None = None, merchant_id: str | None = None,
                    pin: str | None = None) -> PaymentResult:
        """Pay in SE mode: the order ``order`` (txnId or :class:`Order`), or a new one checked out for
        ``amount``. Nonce, digest, VERIFY PIN + SIGN on the SE, ``pay-se``."""
        txn_id = self._txn(order, amount, order_id, merchant_id)
        se_hex = self.handset.rp_se_id.hex()
        challenge = self._call("POST", f"/rp/orders/{txn_id}/nonce", {"seId": se_hex})
        if challenge.status != 201:
            return self._result(txn_id, challenge)
        try:
            nonce = bytes.fromhex(challenge.body["nonce"])
            o = challenge.body["order"]
            digest = rpp.order_digest(o["merchantId"], o["orderId"], o["amount"], o["currency"], o["time"], nonce)
        except (KeyError, TypeError, ValueError, rpp.RemotePaymentError) as exc:
            raise BackendError(f"the nonce answer is unusable: {exc}", resource=self.name) from None
        signature, pin_left = self.sign(digest, pin)
        if signature is None:
            outcome = Outcome.PIN_BLOCKED if pin_left == 0 else Outcome.PIN_WRONG
            return PaymentResult(outcome, 0, txn_id, o["orderId"], o["merchantId"], o["amount"], "created",
                                 error="PIN refused by the SE", pin_tries_left=pin_left)
        path = f"/rp/orders/{txn_id}/pay-se"
        body = {"seId": se_hex, "nonce": nonce.hex(), "signature": signature.hex()}
        self.last_request = (path, body)
        return self._result(txn_id, self._call("POST", path, body))

    # -- non-SE mode -----------------------------------------------------------------------------------
    def request_code(self, order: str | Order) -> CodeRequest:
        """``POST /rp/orders/{txnId}/sms``: have a one-time code sent to the phone."""
        txn_id = order.txn_id if isinstance(order, Order) else order
        if self.wallet_id is None:
            raise ValueError("register the wallet first (or give wallet_id)")
        answer = self._call("POST", f"/rp/orders/{txn_id}/sms", {"walletId": self.wallet_id})
        b = answer.body
        if answer.status != 200:
            return CodeRequest(answer.status, None, b.get("triesLeft"), None, None,
                               _outcome(answer.status, b.get("error"), b.get("field")), b.get("error"))
        return CodeRequest(answer.status, int(b["smsId"]), b.get("triesLeft"), b.get("sendsLeft"), b.get("expiresAt"))

    def read_code(self, txn_id: str, sms_id: int | None = None, timeout: float | None = None) -> str:
        """The code of order ``txn_id`` from the SMS inbox (the message ``sms_id`` when given)."""
        wait = self.sms_timeout if timeout is None else timeout
        if sms_id is not None:
            message = self.handset.wait_for_sms(lambda m: m.id == sms_id, wait, kind="otp")
            otp = parse_otp(message)
            if otp is None:
                raise BackendError(f"SMS {sms_id} carries no code", resource=self.name)
            return otp.code
        order = self.query(txn_id)
        return self.handset.latest_otp(order.order_id, wait).code

    def pay_with_sms_code(self, order: str | Order | None = None, *, amount: int | None = None,
                          order_id: str | None = None, merchant_id: str | None = None,
                          password: str | None = None, code: str | None = None,
                          request_code: bool | None = None, sms_timeout: float | None = None) -> PaymentResult:
        """Pay in non-SE mode. ``request_code`` (default: when no ``code`` is given) asks for a code
        first; without ``code`` the one the SMS brings is used, with ``code`` that one (to test wrong,
        expired or exhausted codes). A refused code request is returned as the result."""
        txn_id = self._txn(order, amount, order_id, merchant_id)
        password = password if password is not None else self.password
        if password is None:
            raise ValueError("the payment password is needed (Wallet(password=...) or password=...)")
        if request_code is None:
            request_code = code is None
        sms_id = None
        if request_code:
            sent = self.request_code(txn_id)
            if not sent.sent:
                assert sent.outcome is not None
                return PaymentResult(sent.outcome, sent.http_status, txn_id, error=sent.error,
                                     tries_left=sent.tries_left, locked=sent.outcome is Outcome.CODE_LOCKED)
            sms_id = sent.sms_id
        if code is None:
            code = self.read_code(txn_id, sms_id, sms_timeout)
        if self.wallet_id is None:
            raise ValueError("register the wallet first (or give wallet_id)")
        path = f"/rp/orders/{txn_id}/pay-password"
        body = {"walletId": self.wallet_id, "smsCode": code,
                "encryptedPassword": seal_password(password, payment_aad(txn_id)).hex()}
        self.last_request = (path, body)
        return self._result(txn_id, self._call("POST", path, body), code=code)

    def __repr__(self) -> str:
        msisdn = self.handset.msisdn
        return f"Wallet({self.name!r}, wallet_id={self.wallet_id!r}, msisdn={mask_pan(msisdn) if msisdn else None})"
