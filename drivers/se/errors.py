"""Typed errors of the emulated secure element runtime."""

from __future__ import annotations

from paylab.lab.protocol.errors import PaylabError


class ISOException(PaylabError):
    """Raised by applet code to answer with a status word; the APDU's state changes are rolled back.

    Mirrors Java Card's ``ISOException.throwIt(sw)``: whatever the applet wrote to persistent
    state in this APDU is discarded, the card answers ``sw`` with no data.
    """

    def __init__(self, sw: int, reason: str = "") -> None:
        self.sw = sw
        self.reason = reason
        super().__init__(f"SW {sw:04X}" + (f": {reason}" if reason else ""))


class PowerLost(PaylabError):
    """The card lost power (a tear was injected); nothing after the tear point happened."""

    def __init__(self, point: str) -> None:
        self.point = point
        super().__init__(f"power lost at {point}")


class CardImageError(PaylabError):
    """The card image file is unreadable or of an unknown version (names the file)."""


class CardPoweredOff(PaylabError):
    """An APDU was sent to a card that is not powered (call ``power_on`` first)."""
