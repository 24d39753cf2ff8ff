"""An in-process card reader: the terminal side talking straight to an :class:`ApduCard` (no PC/SC, no RF).

For unit tests and the terminal kernels' own tests: ``DirectReader(card)`` behaves like a reader with
the card in it (contact slot or contactless field). It recovers T=0 ``61xx``/``6Cxx`` itself
(ISO/IEC 7816-4 clause 5.3.4 / EMV Book 1 clause 9.3.1.3, through
:func:`paylab.lab.protocol.apdu.transmit_with_chaining`), so callers see final R-APDUs, and it traces
every command through :meth:`TracedTransport.traced`.

Removal: :meth:`DirectReader.remove` takes the card away (then ``transmit`` raises
:class:`~paylab.drivers.errors.CardRemoved`); :meth:`DirectReader.remove_after` arms a removal after the
next ``n`` APDUs, which simulates a tap lifted in the middle of a transaction. A card that loses power
on its own (the emulated SE's tear hook) is reported as :class:`CardRemoved` too.
"""

from __future__ import annotations

import contextlib
import threading
from typing import NoReturn

from paylab.lab.protocol.apdu import CommandApdu, transmit_with_chaining
from paylab.lab.protocol.errors import ProtocolError

from .errors import CardProtocolError, CardRemoved, NoCard
from .protocols.card import ApduCard, CardReaderProtocol, Interface, ReaderAttributes
from .se.errors import CardPoweredOff, PowerLost


class DirectReader(CardReaderProtocol):
    """A reader whose "card" is an in-process :class:`ApduCard` (e.g. a ``SecureElement``).

    ``contactless`` chooses the interface the card is powered on (``"contactless"`` or ``"contact"``).
    A card inserted but not yet powered is activated by the first :meth:`transmit`, as a contactless
    reader does when a card enters its field.
    """

    transport_name = "direct"

    def __init__(self, card: ApduCard | None = None, *, contactless: bool = True, name: str = "direct",
                 kernel: str | None = "A000000333") -> None:
        super().__init__()
        self.name = name
        self.contactless = contactless
        self.kernel = kernel
        self.transport_name = f"direct/{'contactless' if contactless else 'contact'}"
        self._card: ApduCard | None = None
        self._powered = False
        self._removed = False
        self._remove_countdown: int | None = None
        self._changed = threading.Condition()
        self.apdu_count = 0
        """Commands sent through :meth:`transmit` since the reader was created (GET RESPONSE not counted)."""
        if card is not None:
            self.insert(card)

    # -- the card -------------------------------------------------------------------------------------
    @property
    def interface(self) -> Interface:
        return "contactless" if self.contactless else "contact"

    @property
    def card(self) -> ApduCard | None:
        """The card in the reader, or None."""
        return self._card

    def insert(self, card: ApduCard) -> None:
        """Put ``card`` in the reader (tap / insert); it is powered on by :meth:`power_on` or the first APDU."""
        with self._changed:
            if self._card is not None and self._powered:
                self._card.power_off()
            self._card, self._powered, self._removed = card, False, False
            self._remove_countdown = None
            self._changed.notify_all()

    def remove(self) -> None:
        """Take the card away (lift the tap / pull the card); idempotent. ``transmit`` then raises
        :class:`CardRemoved` until a card is inserted again."""
        with self._changed:
            card, powered = self._card, self._powered
            self._card, self._powered = None, False
            self._remove_countdown = None
            if card is not None:
                self._removed = True
            self._changed.notify_all()
        if card is not None and powered:
            with contextlib.suppress(PowerLost):
                card.power_off()

    def remove_after(self, apdus: int | None) -> None:
        """Remove the card once ``apdus`` more commands have been answered (``0``: before the next one);
        ``None`` disarms. The command after the last answered one raises :class:`CardRemoved`."""
        if apdus is not None and apdus < 0:
            raise ValueError(f"remove_after({apdus}): the number of APDUs must be >= 0")
        with self._changed:
            self._remove_countdown = apdus

    # -- CardReaderProtocol ---------------------------------------------------------------------------------
    def attributes(self) -> ReaderAttributes:
        return ReaderAttributes(name=self.name, kind="direct", contactless=self.contactless, vendor="paylab",
                                model="DirectReader")

    def card_present(self) -> bool:
        return self._card is not None

    def wait_for_card(self, timeout: float) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: self._card is not None, timeout=max(timeout, 0.0)):
                raise NoCard(f"no card within {timeout:.1f} s", resource=self.name)

    def wait_for_removal(self, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._card is None, timeout=max(timeout, 0.0))

    def power_on(self) -> bytes:
        """Cold reset of the card on this reader's interface; the card's ATR. :class:`NoCard` without one."""
        card = self._require_card("power on")
        try:
            atr = card.power_on(self.interface)
        except PowerLost as exc:
            self._lost(exc)
        self._powered = True
        return bytes(atr)

    def power_off(self) -> None:
        card, self._powered = self._card, False
        if card is not None:
            with contextlib.suppress(PowerLost):
                card.power_off()

    @property
    def protocol(self) -> str:
        if self.contactless:
            return "ISO14443-4A"
        form_factor = getattr(self._card, "form_factor", None)
        return str(getattr(form_factor, "protocol", "T=1"))

    def transmit(self, capdu: bytes) -> bytes:
        """Send one C-APDU, return the final R-APDU (61xx/6Cxx recovered), traced."""
        return self.traced(bytes(capdu), self._exchange)

    def close(self) -> None:
        self.power_off()

    # -- internals ----------------------------------------------------------------------------------
    def _require_card(self, what: str) -> ApduCard:
        card = self._card
        if card is None:
            if self._removed:
                raise CardRemoved(f"card removed before {what}", resource=self.name)
            raise NoCard(f"no card in the reader ({what})", resource=self.name)
        return card

    def _lost(self, exc: BaseException) -> NoReturn:
        self._card, self._powered, self._removed = None, False, True
        raise CardRemoved("the card lost power", resource=self.name, detail=str(exc)) from exc

    def _exchange(self, capdu: bytes) -> bytes:
        with self._changed:
            due = self._remove_countdown is not None and self._remove_countdown <= 0
        if due:
            self.remove()
        card = self._require_card(f"APDU {capdu[:4].hex().upper()}")
        if not self._powered:
            self.power_on()
        self.apdu_count += 1
        try:
            command = CommandApdu.decode(capdu)
            response = transmit_with_chaining(lambda raw: bytes(card.transmit(raw, interface=self.interface)),
                                              command)
        except (PowerLost, CardPoweredOff) as exc:
            self._lost(exc)
        except ProtocolError as exc:
            raise CardProtocolError("malformed exchange", resource=self.name,
                                    detail=f"{capdu[:4].hex().upper()}: {exc}") from exc
        with self._changed:
            if self._remove_countdown is not None:
                self._remove_countdown -= 1
        return response.encode()


__all__ = ["DirectReader"]
