"""The handset's SMS inbox: text messages (one-time codes, notices) read from the backend's SMSC.

The backend's SMS gateway (``lab/backend/sms.py``) keeps an outbox per number; the phone polls
``GET /sms/outbox/{msisdn}?since=<last id>`` and confirms each new message with
``POST /sms/messages/{id}/receipt {"status": "delivered"}``, as a handset's SMS-DELIVER-REPORT makes
the SMSC mark it delivered (3GPP TS 23.040 clause 9.2.2.1a). Messages are polled on demand (no
thread): every wait polls until its timeout. A switched-off phone receives nothing, so messages stay
pending at the SMSC until it is on again.

Texts are kept in memory only and never logged (they hold one-time codes).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from re import Pattern

import httpx

from .errors import BackendError, SmsNotReceived
from .http import call_json

OTP_PATTERN = re.compile(r"\bcode (\d{6})\b")
"""How the remote payment system words a one-time code (``lab/backend/remote_payment.py`` send_otp) [M]."""
DEFAULT_POLL_INTERVAL_S = 0.05

Matching = str | Pattern[str] | Callable[["SmsMessage"], bool] | None
"""What a wait looks for: a regex (searched in the text), a predicate, or None (any message)."""


@dataclass(frozen=True)
class SmsMessage:
    """One SMS as the phone received it."""

    id: int
    text: str
    kind: str           # "otp" | "ota-wakeup" | "notice"
    created: str | None  # ISO 8601 UTC, as the SMSC stamped it

    def __repr__(self) -> str:  # the text may hold a code: keep it out of reprs and logs
        return f"SmsMessage(id={self.id}, kind={self.kind!r}, created={self.created!r}, text=<{len(self.text)} chars>)"


@dataclass(frozen=True)
class OtpMessage:
    """A one-time code read from an SMS: the code, the order reference the text names, the message."""

    code: str = field(repr=False)
    order_id: str | None = None
    message: SmsMessage | None = None


def parse_otp(message: SmsMessage) -> OtpMessage | None:
    """The code (and order reference) in an OTP text, or None when the text carries none."""
    found = OTP_PATTERN.search(message.text)
    if found is None:
        return None
    order = re.search(r"\border ([0-9A-Za-z._-]+?)\.(?:\s|$)", message.text)
    return OtpMessage(found.group(1), order.group(1) if order else None, message)


def _predicate(matching: Matching) -> Callable[[SmsMessage], bool]:
    if matching is None:
        return lambda _m: True
    if isinstance(matching, str):
        matching = re.compile(matching)
    if isinstance(matching, re.Pattern):
        pattern = matching
        return lambda m: pattern.search(m.text) is not None
    return matching


class SmsInbox:
    """The inbox of one number (module docstring). ``receiving()`` tells whether the phone can
    receive now (a switched-off phone polls nothing); ``ack`` sends delivery receipts."""

    def __init__(self, http: httpx.Client, msisdn: str, *, ack: bool = True,
                 poll_interval: float = DEFAULT_POLL_INTERVAL_S, receiving: Callable[[], bool] = lambda: True,
                 name: str | None = None) -> None:
        self.http = http
        self.msisdn = msisdn[1:] if msisdn.startswith("+") else msisdn
        self.ack = ack
        self.poll_interval = poll_interval
        self.receiving = receiving
        self.name = name or f"sms-inbox:{self.msisdn[:3]}****{self.msisdn[-4:]}"
        self._messages: list[SmsMessage] = []
        self._last_id: int | None = None
        self._lock = threading.Lock()

    @property
    def messages(self) -> tuple[SmsMessage, ...]:
        """Every message received so far, oldest first."""
        with self._lock:
            return tuple(self._messages)

    @property
    def last_id(self) -> int | None:
        """The id of the newest message received (the ``since`` of the next poll)."""
        return self._last_id

    def poll(self) -> list[SmsMessage]:
        """Fetch the messages sent since the last poll, acknowledge each one; returns the new ones."""
        if not self.receiving():
            return []
        with self._lock:
            params = {} if self._last_id is None else {"since": self._last_id}
            answer = call_json(self.http, "GET", f"/sms/outbox/{self.msisdn}", params=params, resource=self.name)
            if answer.status != 200 or not isinstance(answer.body.get("messages"), list):
                raise BackendError(f"outbox answered HTTP {answer.status}", resource=self.name,
                                   detail=str(answer.body.get("error")), status=answer.status)
            fresh = []
            for item in answer.body["messages"]:
                try:
                    message = SmsMessage(int(item["id"]), str(item["text"]), str(item["kind"]), item.get("created"))
                except (KeyError, TypeError, ValueError):
                    raise BackendError("outbox message without id, text or kind", resource=self.name) from None
                if self._last_id is not None and message.id <= self._last_id:
                    continue
                fresh.append(message)
                self._messages.append(message)
                self._last_id = message.id
        if self.ack:
            for message in fresh:
                self._receipt(message.id)
        return fresh

    def _receipt(self, message_id: int) -> None:
        answer = call_json(self.http, "POST", f"/sms/messages/{message_id}/receipt", json={"status": "delivered"},
                           resource=self.name)
        if answer.status != 200:
            raise BackendError(f"delivery receipt for SMS {message_id} answered HTTP {answer.status}",
                               resource=self.name, status=answer.status)

    def find(self, matching: Matching = None, *, kind: str | None = None, after_id: int | None = None
             ) -> SmsMessage | None:
        """The newest message already received that matches (and is of ``kind``, newer than ``after_id``)."""
        wanted = _predicate(matching)
        for message in reversed(self.messages):
            if after_id is not None and message.id <= after_id:
                break
            if (kind is None or message.kind == kind) and wanted(message):
                return message
        return None

    def wait_for(self, matching: Matching = None, timeout: float = 5.0, *, kind: str | None = None,
                 after_id: int | None = None) -> SmsMessage:
        """The newest matching message, polling until one arrives; :class:`SmsNotReceived` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            found = self.find(matching, kind=kind, after_id=after_id)
            if found is not None:
                return found
            if time.monotonic() >= deadline:
                what = f"kind {kind}" if kind else "message"
                raise SmsNotReceived(f"no matching {what} within {timeout:g} s", resource=self.name,
                                     detail=f"after id {after_id}" if after_id is not None else None)
            time.sleep(min(self.poll_interval, max(0.0, deadline - time.monotonic())))

    def latest_otp(self, order_id: str | None = None, timeout: float = 5.0, *, after_id: int | None = None
                   ) -> OtpMessage:
        """The newest one-time code (for ``order_id`` when given), waiting up to ``timeout``."""
        def is_code(message: SmsMessage) -> bool:
            otp = parse_otp(message)
            return otp is not None and (order_id is None or otp.order_id == order_id)

        message = self.wait_for(is_code, timeout, kind="otp", after_id=after_id)
        otp = parse_otp(message)
        assert otp is not None
        return otp
