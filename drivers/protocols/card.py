"""Card reader and card emulator protocols (ISO/IEC 7816-3/-4 contact, ISO/IEC 14443-4 contactless).

``transmit`` carries whole APDUs: a reader implementation recovers T=0 ``61xx``/``6Cxx`` itself
(ISO/IEC 7816-4 clause 5.3.4 / EMV Book 1 clause 9.3.1.3), so callers always see the final
R-APDU, and raises the typed errors of :mod:`paylab.drivers.errors` — never a stack's own error.
Every wait has a timeout.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from .tracing import TracedTransport

Interface = Literal["contact", "contactless"]


@dataclass(frozen=True)
class ReaderAttributes:
    """What a reader reports about itself, for the equipment manifest (None: not reported)."""

    name: str
    kind: str                       # "pcsc" | "nfc" | "direct" ...
    contactless: bool
    vendor: str | None = None
    model: str | None = None
    serial: str | None = None
    firmware: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class ApduCard(Protocol):
    """Anything that answers APDUs like a card: the emulated secure element
    (:class:`~paylab.drivers.se.runtime.SecureElement`) or a handset routing to one."""

    def power_on(self, interface: Interface = "contact") -> bytes: ...

    def power_off(self) -> None: ...

    def transmit(self, raw: bytes, *, interface: Interface | None = None) -> bytes: ...


class CardReaderProtocol(TracedTransport, abc.ABC):
    """A contact or contactless reader used as the terminal side."""

    name: str
    contactless: bool = False

    @abc.abstractmethod
    def attributes(self) -> ReaderAttributes:
        """Name, vendor, serial, firmware as the reader reports them."""

    @abc.abstractmethod
    def card_present(self) -> bool:
        """True when a card is in the reader (in the field)."""

    @abc.abstractmethod
    def wait_for_card(self, timeout: float) -> None:
        """Block until a card is present; :class:`NoCard` after ``timeout`` seconds."""

    @abc.abstractmethod
    def wait_for_removal(self, timeout: float) -> bool:
        """Block until no card is present; False when one is still there after ``timeout``."""

    @abc.abstractmethod
    def power_on(self) -> bytes:
        """Power/activate the card; returns the ATR (contactless: the ATR the reader synthesises
        from the ATS/ATQB, as PC/SC part 3 does). :class:`NoCard` when there is none."""

    @abc.abstractmethod
    def transmit(self, capdu: bytes) -> bytes:
        """Send one C-APDU, return the final R-APDU (data + SW1 SW2), traced."""

    @abc.abstractmethod
    def power_off(self) -> None:
        """Deactivate the card (no error when none is present)."""

    @property
    def protocol(self) -> str:
        """The active protocol: ``T=0``, ``T=1``, ``ISO14443-4A`` or ``ISO14443-4B``."""
        return "unknown"

    def close(self) -> None:
        """Release the reader (idempotent)."""

    def __enter__(self) -> CardReaderProtocol:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CardEmulatorProtocol(TracedTransport, abc.ABC):
    """An antenna or reader slot presenting a card to a terminal (serves APDUs in the background)."""

    name: str

    @abc.abstractmethod
    def present(self, card: ApduCard) -> None:
        """Put ``card`` in front of the terminal (insert / bring into the field) and serve it."""

    @abc.abstractmethod
    def withdraw(self) -> None:
        """Take the card away (remove / leave the field); idempotent."""

    @property
    @abc.abstractmethod
    def presented(self) -> bool:
        """True while a card is presented."""

    @property
    def apdu_count(self) -> int:
        """APDUs served since the emulator started."""
        return 0

    def close(self) -> None:
        """Withdraw and release the device (idempotent)."""
        self.withdraw()

    def __enter__(self) -> CardEmulatorProtocol:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
