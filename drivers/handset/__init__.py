"""The handset simulation: a phone around a SIM / microSD / eSE secure element, and its wallet app.

* :class:`Handset` (:mod:`.handset`): NFC routing to the SE (``as_card``, ``tap``, ``lift``), the
  modem (SMS-PP data download ``deliver_sms``, the text inbox ``sms``), the GP Amendment B admin
  agent over HTTP (``admin_session``), the UICC OS's TAR binding; it stands in the backend TSM
  services' ``handsets`` registry in place of ``HandsetSim``.
* :class:`SmsInbox` (:mod:`.sms_inbox`): the backend SMSC's outbox read over HTTP, with receipts.
* :class:`Wallet` (:mod:`.wallet`): remote payments, SE mode (signing applet) and SMS-code mode.
* :func:`personalise_remote_sign` (:mod:`.enrol`): the signing applet put on the SE, issuer style.

Code here talks to the backend over HTTP only (httpx); the backend calls a handset in process.
"""

from .enrol import personalise_remote_sign
from .errors import (
    AdminSessionFailed,
    BackendError,
    BackendUnreachable,
    HandsetOff,
    NoSuchFunction,
    SeCommandFailed,
    SmsNotReceived,
)
from .handset import PLACEMENTS, Handset, NfcRoute, Placement, SeChannel
from .sms_inbox import OtpMessage, SmsInbox, SmsMessage, parse_otp
from .wallet import CodeRequest, Order, Outcome, PaymentResult, Wallet, WalletRegistration, seal_password

__all__ = [
    "PLACEMENTS",
    "AdminSessionFailed",
    "BackendError",
    "BackendUnreachable",
    "CodeRequest",
    "Handset",
    "HandsetOff",
    "NfcRoute",
    "NoSuchFunction",
    "Order",
    "OtpMessage",
    "Outcome",
    "PaymentResult",
    "Placement",
    "SeChannel",
    "SeCommandFailed",
    "SmsInbox",
    "SmsMessage",
    "SmsNotReceived",
    "Wallet",
    "WalletRegistration",
    "parse_otp",
    "personalise_remote_sign",
    "seal_password",
]
