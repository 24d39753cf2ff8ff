"""Typed errors of the drivers: what a test sees when hardware (or its simulation) misbehaves.

Two families, because campaign verdicts depend on the difference (issue 6):

* :class:`InfraError` — the rig could not carry the test: a reader gone, pcscd down, an antenna or
  POS link lost, an ssh host unreachable. Retried per the campaign's policy, reported apart.
* :class:`ProductError` — the device under test answered, but wrongly: a malformed ATR or block, a
  card protocol violation, a POS that NAKs valid frames. A product failure, not retried.

Every error carries context (``resource``: which reader/antenna/port/host; ``detail``: the APDU,
frame or command concerned, already masked by the raiser).
"""

from __future__ import annotations

from paylab.lab.protocol.errors import PaylabError


class DriverError(PaylabError):
    """Root of the driver errors. ``resource`` names the reader, antenna, port or host."""

    infrastructure = False

    def __init__(self, message: str, *, resource: str | None = None, detail: str | None = None) -> None:
        self.message = message
        self.resource = resource
        self.detail = detail
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.resource}: " if self.resource else ""
        extra = f" ({self.detail})" if self.detail else ""
        return f"{where}{self.message}{extra}"


class InfraError(DriverError):
    """The rig, not the product, failed (see the module docstring)."""

    infrastructure = True


class ProductError(DriverError):
    """The device under test misbehaved (see the module docstring)."""


# -- card readers and emulators ---------------------------------------------------------------------
class ReaderUnavailable(InfraError):
    """No reader matches, the reader was unplugged, or the PC/SC service / NFC device is gone."""


class NoCard(InfraError):
    """No card is in the reader / no target answered in the field within the wait."""


class CardRemoved(InfraError):
    """The card left the reader or field during a transaction (a tap lifted too early)."""


class FieldLost(CardRemoved):
    """Card-emulator side: the reader switched the RF field off (nfcpy ``RFOFF``)."""


class CardProtocolError(ProductError):
    """The card broke the transmission protocol (bad ATR, bad T=1 or ISO 14443-4 block, bad length)."""


class CardTimeout(InfraError):
    """The card did not answer within the frame/character waiting time."""


# -- POS terminals ------------------------------------------------------------------------------------
class PosTimeout(InfraError):
    """The POS did not ACK or answer within the protocol's time limits (after retries)."""


class PosLinkError(InfraError):
    """The serial link to the POS could not be opened or broke (port gone, socket closed)."""


class PosProtocolError(ProductError):
    """The POS answered with frames or messages that break the ECR protocol."""


class PosBusy(ProductError):
    """The POS refused a request because another one is running."""


# -- rig hosts ------------------------------------------------------------------------------------------
class RigHostUnreachable(InfraError):
    """The rig host cannot be reached or authenticated (ssh connect, host key refused, link dropped)."""


class HostKeyRejected(RigHostUnreachable):
    """The rig host presented a host key that is not pinned in the inventory's known_hosts."""


class RigCommandFailed(ProductError):
    """A command on a rig host exited non-zero (``exit_status``, tail of ``stderr``)."""

    def __init__(self, message: str, *, resource: str | None = None, detail: str | None = None,
                 exit_status: int | None = None, stderr: str = "") -> None:
        self.exit_status = exit_status
        self.stderr = stderr
        super().__init__(message, resource=resource, detail=detail)


# -- simulated rig ---------------------------------------------------------------------------------------
class SimulationUnavailable(InfraError):
    """A piece of the simulated rig cannot start; the message says exactly what to install."""


__all__ = [
    "CardProtocolError", "CardRemoved", "CardTimeout", "DriverError", "FieldLost", "HostKeyRejected",
    "InfraError", "NoCard", "PosBusy", "PosLinkError", "PosProtocolError", "PosTimeout", "ProductError",
    "ReaderUnavailable", "RigCommandFailed", "RigHostUnreachable", "SimulationUnavailable",
]
