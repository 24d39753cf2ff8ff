"""TVR and TSI bits of the contact kernel (EMV 4.3 Book 3 Annex C5/C6) and the action-code match (10.7).

A TVR bit is ``(byte index, mask)``; :func:`set_bit` sets it on a 5-byte ``bytearray``.
"""

from __future__ import annotations

# TVR (EMV Book 3 Annex C5): (byte index, bit)
TVR_ODA_NOT_PERFORMED = (0, 0x80)
TVR_SDA_FAILED = (0, 0x40)
TVR_ICC_DATA_MISSING = (0, 0x20)
TVR_DDA_FAILED = (0, 0x08)
TVR_VERSIONS_DIFFER = (1, 0x80)
TVR_EXPIRED = (1, 0x40)
TVR_NOT_EFFECTIVE = (1, 0x20)
TVR_SERVICE_NOT_ALLOWED = (1, 0x10)
TVR_NEW_CARD = (1, 0x08)
TVR_CVM_FAILED = (2, 0x80)
TVR_UNRECOGNISED_CVM = (2, 0x40)
TVR_PIN_LIMIT_EXCEEDED = (2, 0x20)
TVR_ONLINE_PIN_ENTERED = (2, 0x04)
TVR_FLOOR_LIMIT = (3, 0x80)
TVR_LOWER_OFFLINE = (3, 0x40)
TVR_UPPER_OFFLINE = (3, 0x20)
TVR_ISSUER_AUTH_FAILED = (4, 0x40)
TVR_SCRIPT_FAILED_BEFORE = (4, 0x20)
TVR_SCRIPT_FAILED_AFTER = (4, 0x10)
# TSI (Book 3 Annex C6), byte 1
TSI_ODA, TSI_CVM, TSI_CARD_RISK, TSI_ISSUER_AUTH, TSI_TRM, TSI_SCRIPTS = 0x80, 0x40, 0x20, 0x10, 0x08, 0x04


def set_bit(tvr: bytearray, bit: tuple[int, int]) -> None:
    """Set one TVR bit ``(byte index, mask)``."""
    tvr[bit[0]] |= bit[1]


def matches(tvr: bytes | bytearray, tac: bytes, iac: bytes) -> bool:
    """Terminal action analysis (Book 3 10.7): does any TVR bit match the TAC or the IAC?"""
    return any(t & (a | b) for t, a, b in zip(tvr, tac.ljust(5, b"\x00"), iac.ljust(5, b"\x00"), strict=False))
