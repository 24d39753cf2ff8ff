"""POS terminal protocol: what an ECR (the till) asks a payment terminal over its serial link.

Message types and result codes: :mod:`paylab.lab.protocol.ecr` (domain brief section 6). A sale
that times out is never re-sent: the driver queries the last transaction instead.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field


@dataclass(frozen=True)
class PosIdentity:
    """Answer to identify/status: for the equipment manifest."""

    model: str
    serial: str
    firmware: str
    terminal_id: str | None = None
    merchant_id: str | None = None
    status: str = "idle"


@dataclass(frozen=True)
class PosResult:
    """Outcome of one POS request. ``result`` is ``00`` for approved, the host's ISO 8583 field 39
    code, or a POS-local code (``C1`` cancelled, ``T1`` card timeout, ...; see the ECR module).
    ``pan`` is always masked (first 6 / last 4)."""

    request: str                       # "sale" | "void" | "refund" | "query" | "cancel"
    result: str
    trace: int | None = None
    amount: int | None = None
    currency: int | None = None
    reference: str | None = None       # retrieval reference number (field 37) or POS reference
    auth_code: str | None = None
    pan: str | None = None
    stan: str | None = None
    ecr_ref: str | None = None
    receipt: list[str] = field(default_factory=list)
    raw: dict[str, object] = field(default_factory=dict)

    @property
    def approved(self) -> bool:
        return self.result == "00"


class PosTerminalProtocol(abc.ABC):
    """A payment terminal driven over its ECR link."""

    name: str

    @abc.abstractmethod
    def identify(self) -> PosIdentity:
        """Model, serial, firmware and status."""

    @abc.abstractmethod
    def sale(self, amount: int, *, currency: int = 156, ecr_ref: str | None = None,
             timeout: float = 60.0) -> PosResult:
        """A purchase of ``amount`` minor units; waits for the card and the host within ``timeout``."""

    @abc.abstractmethod
    def void(self, reference: str, *, ecr_ref: str | None = None, timeout: float = 30.0) -> PosResult:
        """Void (cancel) an earlier sale of the current batch by its reference."""

    @abc.abstractmethod
    def refund(self, amount: int, reference: str, *, ecr_ref: str | None = None,
               timeout: float = 60.0) -> PosResult:
        """Refund ``amount`` of an earlier sale."""

    @abc.abstractmethod
    def query_last(self, *, timeout: float = 10.0) -> PosResult:
        """The outcome of the last financial request (used after a timeout instead of re-sending)."""

    @abc.abstractmethod
    def cancel(self, *, timeout: float = 5.0) -> PosResult:
        """Cancel the request the POS is running (e.g. waiting for a card)."""

    def close(self) -> None:
        """Release the link (idempotent)."""
        return None

    def __enter__(self) -> PosTerminalProtocol:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
