"""Typed errors of the handset simulation and its wallet (families of :mod:`paylab.drivers.errors`).

Infrastructure (the rig could not carry the test): the phone is switched off, the backend cannot be
reached over HTTP. Product (the system under test answered wrongly): an SMS that never arrives, an
admin server that breaks GP Amendment B, a secure element answering an unexpected status word, a
backend answering 5xx or something that is not the API's JSON.
"""

from __future__ import annotations

from ..errors import InfraError, ProductError


class HandsetOff(InfraError):
    """The phone is switched off (or its NFC is off): the modem, the admin agent or the antenna route
    cannot serve."""


class NoSuchFunction(InfraError):
    """The phone as the rig built it cannot do this: no admin agent (a SIM is administered over
    SMS-PP), no UICC for SMS-PP data download, no phone number, no network configured."""


class BackendUnreachable(InfraError):
    """An HTTP request to the backend failed in transport (connection refused, timeout, reset)."""


class BackendError(ProductError):
    """The backend answered outside its API: a 5xx, or a body that is not the expected JSON."""

    def __init__(self, message: str, *, resource: str | None = None, detail: str | None = None,
                 status: int | None = None) -> None:
        self.status = status
        super().__init__(message, resource=resource, detail=detail)


class SmsNotReceived(ProductError):
    """No SMS matching the wait arrived in the inbox before the timeout."""


class AdminSessionFailed(ProductError):
    """The GP Amendment B session with the admin server broke (HTTP status, content, too many rounds)."""


class SeCommandFailed(ProductError):
    """The secure element answered a wallet or modem command with an unexpected status word
    (``sw``; ``detail`` names the command)."""

    def __init__(self, message: str, *, resource: str | None = None, detail: str | None = None,
                 sw: int | None = None) -> None:
        self.sw = sw
        super().__init__(message, resource=resource, detail=detail)


__all__ = ["AdminSessionFailed", "BackendError", "BackendUnreachable", "HandsetOff", "NoSuchFunction",
           "SeCommandFailed", "SmsNotReceived"]
