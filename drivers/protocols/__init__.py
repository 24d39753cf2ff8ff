"""Driver protocols: the small abstract interfaces suites talk to (labgrid's ``protocol/`` idea).

A test asks the rig for "a :class:`CardReaderProtocol`" and never learns whether pyscard, nfcpy or
an in-process card answered. Implementations live beside (``drivers/pcsc``, ``drivers/nfc``,
``drivers/pos``, ``drivers/righost``); every APDU of every transport passes one traced choke point
(:class:`~.tracing.TracedTransport`).
"""

from .card import ApduCard, CardEmulatorProtocol, CardReaderProtocol, ReaderAttributes
from .host import CommandResult, RigHostProtocol
from .pos import PosIdentity, PosResult, PosTerminalProtocol
from .tracing import ApduTracer, TracedTransport

__all__ = [
    "ApduCard", "ApduTracer", "CardEmulatorProtocol", "CardReaderProtocol", "CommandResult", "PosIdentity",
    "PosResult", "PosTerminalProtocol", "ReaderAttributes", "RigHostProtocol", "TracedTransport",
]
