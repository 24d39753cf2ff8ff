"""The POS simulator's receipt: the lines a QuickPass terminal prints (and sends the ECR in tag 07).

Cardholder data rules (PCI DSS req. 3.3): the PAN is masked first 6 / last 4, track 2 never appears, the
application cryptogram is truncated to its first 8 hex digits. Every line fits the ECR tag's 255 bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from paylab.lab.protocol.masking import mask_pan

WIDTH = 32


@dataclass(frozen=True)
class ReceiptData:
    """What goes on one receipt; ``pan`` is the full PAN (masked here), cryptogram bytes are truncated here."""

    kind: str                        # SALE, VOID, REFUND
    amount: int                      # fen
    result: str                      # 00 or the failure code
    terminal_id: str
    merchant_id: str
    merchant_name: str = "PAYLAB TEST MERCHANT"
    pan: str | None = None
    stan: str | None = None
    batch: int | None = None
    rrn: str | None = None
    auth_code: str | None = None
    cryptogram_kind: str | None = None   # ARQC, TC, AAC
    cryptogram: bytes | None = None
    offline: bool = False
    text: str | None = None
    when: datetime | None = None


def _pair(left: str, right: str) -> str:
    gap = max(1, WIDTH - len(left) - len(right))
    return f"{left}{' ' * gap}{right}"


def receipt_lines(data: ReceiptData) -> list[str]:
    """The receipt as lines of at most 32 characters (longer values are cut)."""
    when = data.when or datetime.now()
    lines = [data.merchant_name[:WIDTH], _pair("TID", data.terminal_id), _pair("MID", data.merchant_id)]
    if data.pan:
        lines.append(_pair("CARD", mask_pan(data.pan)))
    lines.append(_pair(data.kind + (" (OFFLINE)" if data.offline else ""), f"CNY {data.amount / 100:.2f}"))
    lines.append(_pair("DATE", when.strftime("%Y-%m-%d %H:%M:%S")))
    if data.batch is not None:
        lines.append(_pair("BATCH", f"{data.batch:06d}"))
    if data.stan:
        lines.append(_pair("TRACE", data.stan))
    if data.rrn:
        lines.append(_pair("REF", data.rrn))
    if data.auth_code:
        lines.append(_pair("AUTH", data.auth_code))
    if data.cryptogram_kind and data.cryptogram:
        lines.append(_pair(data.cryptogram_kind, data.cryptogram.hex().upper()[:8] + "..."))
    lines.append("APPROVED" if data.result == "00" else f"DECLINED {data.result}")
    if data.text:
        lines.append(data.text[:WIDTH])
    return [line[:WIDTH] for line in lines]


__all__ = ["ReceiptData", "receipt_lines"]
