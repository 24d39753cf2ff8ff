"""Typed errors of the protocol core.

Every error a malformed input can provoke is a :class:`ProtocolError` (or a subclass), so callers
(card runtime, backend, CLI) catch one family and turn it into a status word, a response code, a
NAK or a one-line message. Errors carry context: the byte ``offset`` where decoding failed, what
was ``expected``, and the ``field`` (tag, ISO 8583 field number, argument name) concerned.
"""

from __future__ import annotations


class PaylabError(Exception):
    """Root of every error paylab raises on purpose."""


class ProtocolError(PaylabError, ValueError):
    """Input bytes (or values) do not follow the protocol.

    ``offset``: byte offset into the input where the problem was found, if meaningful.
    ``expected``: what the decoder expected there, in words.
    ``field``: the data element concerned (e.g. ``"tag 9F02"``, ``"field 35"``, ``"Lc"``).
    """

    def __init__(
        self,
        message: str,
        *,
        offset: int | None = None,
        expected: str | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.offset = offset
        self.expected = expected
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = []
        if self.field:
            parts.append(self.field)
        parts.append(self.message)
        text = ": ".join(parts)
        if self.offset is not None:
            text += f" at offset {self.offset}"
        if self.expected:
            text += f" (expected {self.expected})"
        return text


class TlvError(ProtocolError):
    """Malformed BER-TLV (ISO/IEC 7816-4 clause 5.2, EMV Book 3 Annex B)."""


class ApduError(ProtocolError):
    """Malformed command or response APDU (ISO/IEC 7816-4 clause 5.1)."""


class DolError(ProtocolError):
    """Malformed data object list or a value that does not fit its DOL entry (EMV Book 3 5.4)."""


class CryptoError(PaylabError, ValueError):
    """Bad cryptographic input: wrong key length, data not a multiple of the block size, ..."""


class SecureChannelError(PaylabError):
    """A GlobalPlatform secure channel failed: cryptogram or MAC mismatch, wrong state, bad level.

    ``sw`` is the status word a card answers with (GP Card Spec 2.3: 6982 for a failed
    authentication/MAC, 6985 for conditions of use not satisfied).
    """

    def __init__(self, message: str, *, sw: int = 0x6982) -> None:
        self.sw = sw
        super().__init__(message)


class OtaError(ProtocolError):
    """A secured packet (ETSI TS 102 225) was rejected; ``por_status`` is the PoR response status code."""

    def __init__(self, message: str, *, por_status: int, **kwargs: object) -> None:
        self.por_status = por_status
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class Iso8583Error(ProtocolError):
    """A malformed ISO 8583 message; ``field`` names the data element (e.g. ``"field 55"``)."""


class MacError(PaylabError):
    """A message authentication code did not verify (ISO 8583 field 64/128 -> response code A0)."""


class EcrFrameError(ProtocolError):
    """A malformed ECR frame (STX | LEN | DATA | ETX | LRC) that is answered with NAK."""
