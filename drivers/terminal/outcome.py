"""What a kernel run ends with: the outcome, the card's answer, and the ICC data for the online request.

:class:`KernelOutcome` keeps the PAN, PSN, expiry and track 2 (the POS needs them for the ISO 8583
request) but never shows them: ``repr``/``str`` give the PAN masked 6/4 (brief: never log a full PAN
or track 2). :meth:`KernelOutcome.field55` builds ISO 8583 field 55 with the tags a qPBOC reader sends
(domain brief section 1: 9F26 9F27 9F10 9F37 9F36 95 9A 9C 9F02 5F2A 82 9F1A 9F03 9F33 9F34 9F35 9F1E
84 9F09 9F41), adding ``9F27 = 80`` for a qPBOC online GPO response that carries none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from paylab.lab.protocol.iso8583 import field55_encode
from paylab.lab.protocol.masking import mask_pan
from paylab.lab.protocol.tlv import Tlv

FIELD55_TAGS: tuple[int, ...] = (0x9F26, 0x9F27, 0x9F10, 0x9F37, 0x9F36, 0x95, 0x9A, 0x9C, 0x9F02, 0x5F2A, 0x82,
                                 0x9F1A, 0x9F03, 0x9F33, 0x9F34, 0x9F35, 0x9F1E, 0x84, 0x9F09, 0x9F41)
"""Field 55 of the online request, in the order the brief's reader sends them [S: brief section 1]."""

CID_AAC, CID_TC, CID_ARQC = 0x00, 0x40, 0x80


class Outcome(StrEnum):
    """Kernel outcomes (EMV Book A 6.2, simplified)."""

    APPROVED = "APPROVED"
    DECLINED = "DECLINED"
    ONLINE_REQUEST = "ONLINE_REQUEST"
    TRY_ANOTHER_INTERFACE = "TRY_ANOTHER_INTERFACE"
    END_APPLICATION = "END_APPLICATION"


class Cvm(StrEnum):
    """The cardholder verification the kernel settled on."""

    NO_CVM = "no CVM"
    ONLINE_PIN = "online PIN"
    OFFLINE_PIN = "offline plaintext PIN"
    SIGNATURE = "signature"
    CDCVM = "consumer device CVM"
    FAILED = "CVM failed"
    NOT_PERFORMED = "not performed"


@dataclass(frozen=True)
class OdaResult:
    """Offline data authentication: ``method`` ``"fDDA"``, ``"DDA"`` or ``"SDA"``; ``ok``; ``reason`` names
    the failed check (an :class:`~paylab.lab.protocol.oda.OdaError` message) when not ok."""

    method: str
    ok: bool
    reason: str | None = None
    icc_dynamic_number: bytes | None = None


@dataclass(repr=False)
class KernelOutcome:
    """The result of :meth:`ContactlessKernel.perform` (and the base of the contact outcome).

    ``terminal`` holds the terminal data objects exactly as sent to the card (PDOL/CDOL values), ``card``
    every data object the card returned (GPO response, records, GENERATE AC). ``cid`` is the cryptogram
    information (``0x80`` ARQC, ``0x40`` TC, ``0x00`` AAC) or None when no cryptogram was produced.
    """

    outcome: Outcome
    reason: str = ""
    cid: int | None = None
    aid: bytes | None = None
    label: str | None = None
    pan: str | None = None
    psn: str | None = None
    expiry: str | None = None
    """YYMMDD (tag 5F24) or YYMM from track 2 when no record was read."""
    track2: bytes | None = None
    terminal: dict[int, bytes] = field(default_factory=dict)
    card: dict[int, bytes] = field(default_factory=dict)
    oda: OdaResult | None = None
    cvm: Cvm = Cvm.NOT_PERFORMED
    ecash_balance: int | None = None
    """Balance after the transaction in fen (9F5D), when the card reported it."""
    sw: int | None = None
    """Status word of the command that ended the transaction abnormally (e.g. 6985)."""
    apdu_count: int = 0
    duration_ms: float = 0.0

    # -- accessors --------------------------------------------------------------------------------------
    @property
    def masked_pan(self) -> str | None:
        """The PAN masked 6/4 (``622848******0010``), or None."""
        return mask_pan(self.pan) if self.pan else None

    @property
    def cryptogram(self) -> bytes | None:
        """9F26: the ARQC, TC or AAC."""
        return self.card.get(0x9F26)

    @property
    def atc(self) -> int | None:
        value = self.card.get(0x9F36)
        return int.from_bytes(value, "big") if value else None

    @property
    def approved(self) -> bool:
        return self.outcome is Outcome.APPROVED

    def track2_str(self, max_length: int | None = 37) -> str | None:
        """Track 2 equivalent data (57) as ISO 8583 field 35 text: ``PAN D YYMM SC discretionary``, F padding
        removed. Track 2 holds at most 37 characters (ISO/IEC 7813); a longer tag 57 (a 19-digit PAN with
        long discretionary data) loses trailing discretionary digits, never the PAN, expiry or service code.
        ``max_length=None`` keeps everything."""
        if not self.track2:
            return None
        text = self.track2.hex().upper().rstrip("F")
        if max_length is not None and len(text) > max_length:
            keep = text.find("D") + 8 if "D" in text else len(text)  # separator, YYMM, service code
            text = text[:max(max_length, keep)]
        return text

    def icc_values(self) -> dict[int, bytes]:
        """Terminal and card data objects merged (card wins), with 9F27 = 80 added for an ARQC without it."""
        merged = dict(self.terminal) | dict(self.card)
        if 0x9F27 not in merged and self.cid is not None:
            merged[0x9F27] = bytes([self.cid])
        return merged

    def field55(self, tags: tuple[int, ...] = FIELD55_TAGS) -> bytes:
        """ISO 8583 field 55 (ICC data) for the online request: ``tags`` present, in that order."""
        values = self.icc_values()
        return field55_encode([Tlv(tag, values[tag]) for tag in tags if tag in values])

    # -- display ----------------------------------------------------------------------------------------
    def _summary(self) -> str:
        parts = [f"{self.outcome.value}"]
        if self.reason:
            parts.append(f"reason={self.reason!r}")
        if self.cid is not None:
            parts.append(f"cid={self.cid:02X}")
        if self.aid:
            parts.append(f"aid={self.aid.hex().upper()}")
        if self.pan:
            parts.append(f"pan={self.masked_pan}")
        if self.oda is not None:
            parts.append(f"oda={self.oda.method}:{'ok' if self.oda.ok else 'failed'}")
        parts.append(f"cvm={self.cvm.value!r}")
        if self.ecash_balance is not None:
            parts.append(f"ecash_balance={self.ecash_balance}")
        if self.sw is not None:
            parts.append(f"sw={self.sw:04X}")
        parts.append(f"apdus={self.apdu_count}")
        parts.append(f"{self.duration_ms:.1f} ms")
        return ", ".join(parts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._summary()})"

    __str__ = __repr__


__all__ = ["CID_AAC", "CID_ARQC", "CID_TC", "FIELD55_TAGS", "Cvm", "KernelOutcome", "OdaResult", "Outcome"]
