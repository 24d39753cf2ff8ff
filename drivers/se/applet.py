"""The applet programming model of the emulated card (Java Card / GlobalPlatform semantics).

An :class:`Applet` object holds no persistent data itself: everything it must keep across power
cycles lives in ``ctx.data`` (its part of the card image, committed atomically after each APDU);
per-channel transient data lives in ``ctx.session`` (cleared on reset, power loss and deselect).
Raising :class:`~drivers.se.errors.ISOException` answers a status word and rolls back the APDU's
changes; returning :class:`Reply` with a non-9000 SW keeps them (e.g. a PIN try counter decrement
answered with 63Cx).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from paylab.lab.protocol.apdu import CommandApdu

from .errors import ISOException
from .registry import RegistryEntry

if TYPE_CHECKING:
    from .runtime import SecureElement

Interface = Literal["contact", "contactless"]


@dataclass
class Reply:
    """An applet's answer: response data and status word."""

    data: bytes = b""
    sw: int = 0x9000


@dataclass
class InstallParams:
    """INSTALL [for install] parameters handed to a new instance (GP 2.3 clause 11.5.2.3.7)."""

    privileges: bytes = b"\x00\x00\x00"
    app_specific: bytes = b""      # C9 value
    system: dict[int, bytes] = field(default_factory=dict)  # EF contents by tag
    raw: bytes = b""


@dataclass
class ApduContext:
    """What an applet sees while it processes one APDU."""

    se: SecureElement
    entry: RegistryEntry
    channel: int
    interface: Interface
    data: dict[str, Any]
    session: dict[str, Any]
    random_bytes: Callable[[int], bytes]
    external_security: str | None = None
    """Set when the command arrived inside an OTA secured packet (``"scp80"``): the packet's
    security (ETSI TS 102 225) stands in for a GP secure channel (GP 2.3 clause 10.2)."""

    @property
    def aid(self) -> bytes:
        return self.entry.aid


class Applet:
    """Base class of every paylab applet implementation.

    Subclasses set :attr:`implementation` (the catalog name a load file refers to) and override
    the hooks they need. The default ``process`` answers 6D00.
    """

    implementation: ClassVar[str] = ""
    contactless_capable: ClassVar[bool] = False

    def __init__(self, se: SecureElement, aid: bytes) -> None:
        self.se = se
        self.aid = aid

    def install(self, ctx: ApduContext, params: InstallParams) -> None:
        """INSTALL [for install]: initialise ``ctx.data``."""

    def select(self, ctx: ApduContext, cmd: CommandApdu) -> bytes:
        """SELECT by AID: return the FCI (or raise ISOException to refuse selection)."""
        return b""

    def deselect(self, ctx: ApduContext) -> None:
        """Another applet is selected on this channel, or the channel closes."""

    def process(self, ctx: ApduContext, cmd: CommandApdu) -> bytes | Reply:
        """Every command sent to the selected applet except SELECT/MANAGE CHANNEL/GET RESPONSE."""
        raise ISOException(0x6D00, f"INS {cmd.ins:02X} not supported")

    def process_data(self, ctx: ApduContext, cmd: CommandApdu) -> bytes | Reply:
        """Personalisation data forwarded by the associated security domain (GP ``Application.processData``),
        already unwrapped from the secure channel. Default: not personalisable."""
        raise ISOException(0x6985, "application does not accept personalisation data")

    def uninstall(self, ctx: ApduContext) -> None:
        """DELETE of this instance: release anything outside ``ctx.data`` (which is dropped)."""
