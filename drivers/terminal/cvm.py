"""Cardholder verification of the contact kernel (EMV 4.3 Book 3 section 10.5, Book 4 A4 CVM results).

The CVM list (8E) is amount X (4) || amount Y (4) || rules of 2 bytes: method (b7 = apply the next rule
if this one fails, b6-b1 = CVM code) and condition: 00 always, 01 unattended cash, 02 not unattended
cash / manual cash / cashback, 03 if the terminal supports the CVM, 04 manual cash, 05 cashback, 06-09
amount under/over X/Y (in the application currency 9F42 only). Codes: 00 fail, 01 offline plaintext PIN
(VERIFY ``00 20 00 80 08 <ISO 9564 format 2 block>``), 02 online PIN, 03 plaintext PIN and signature,
04/05 enciphered offline PIN (not supported here), 1E signature, 1F no CVM. A plaintext PIN counts as
supported only when the terminal's 9F33 says so and a (TEST) PIN was entered.
"""

from __future__ import annotations

from paylab.lab.protocol.apdu import CommandApdu
from paylab.lab.protocol.cps import pin_block
from paylab.lab.protocol.errors import ProtocolError

from .common import CardSession
from .config import TerminalConfig
from .outcome import Cvm
from .tvr import (
    TVR_CVM_FAILED,
    TVR_ICC_DATA_MISSING,
    TVR_ONLINE_PIN_ENTERED,
    TVR_PIN_LIMIT_EXCEEDED,
    TVR_UNRECOGNISED_CVM,
    set_bit,
)

KNOWN_CVM_CODES = frozenset({0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x1E, 0x1F})


def cardholder_verification(session: CardSession, config: TerminalConfig, card: dict[int, bytes],
                            terminal: dict[int, bytes], amount: int, txn_type: int, pin: str | None,
                            tvr: bytearray) -> Cvm:
    """Process the CVM list (8E) of ``card``; sets 9F34 in ``terminal`` and TVR byte 3 bits (module docstring)."""
    cvm_list = card.get(0x8E, b"")
    if len(cvm_list) < 10:
        set_bit(tvr, TVR_ICC_DATA_MISSING)
        terminal[0x9F34] = bytes.fromhex("3F0000")
        return Cvm.NOT_PERFORMED
    x, y = int.from_bytes(cvm_list[:4], "big"), int.from_bytes(cvm_list[4:8], "big")
    caps = config.capabilities[1]
    same_currency = card.get(0x9F42) == terminal.get(0x5F2A)

    def supported(code: int) -> bool:
        return {0x00: True, 0x01: bool(caps & 0x80 and pin), 0x02: bool(caps & 0x40),
                0x03: bool(caps & 0x80 and caps & 0x20 and pin), 0x1E: bool(caps & 0x20),
                0x1F: bool(caps & 0x08)}.get(code, False)

    def applies(condition: int, code: int) -> bool:
        if condition in (0x06, 0x07, 0x08, 0x09) and not same_currency:
            return False
        return {0x00: True, 0x01: False, 0x02: txn_type not in (0x01, 0x09), 0x03: supported(code),
                0x04: txn_type == 0x01 and config.terminal_type in (0x21, 0x22, 0x23),
                0x05: txn_type == 0x09, 0x06: amount < x, 0x07: amount > x, 0x08: amount < y,
                0x09: amount > y}.get(condition, False)

    last = bytes.fromhex("3F0001")
    for i in range(8, len(cvm_list) - 1, 2):
        method, condition = cvm_list[i], cvm_list[i + 1]
        code, next_on_fail = method & 0x3F, bool(method & 0x40)
        if not applies(condition, code):
            continue
        outcome = perform_cvm(session, code, pin, tvr) if supported(code) else None
        if outcome is None and code not in KNOWN_CVM_CODES:
            set_bit(tvr, TVR_UNRECOGNISED_CVM)
        if outcome is not None and outcome[1] != 0x01:
            terminal[0x9F34] = bytes([method, condition, outcome[1]])
            return outcome[0]
        last = bytes([method, condition, 0x01])
        if not next_on_fail:
            break
    set_bit(tvr, TVR_CVM_FAILED)
    terminal[0x9F34] = last
    return Cvm.FAILED


def perform_cvm(session: CardSession, code: int, pin: str | None, tvr: bytearray) -> tuple[Cvm, int]:
    """``(cvm, result byte)`` with result 00 unknown, 01 failed, 02 successful (Book 4 A4)."""
    if code in (0x01, 0x03):
        check_pin(pin)  # supported() only picks a plaintext PIN CVM when a PIN was entered
        response = session.send(CommandApdu(0x00, 0x20, 0x00, 0x80, pin_block(pin or "")))
        if response.sw == 0x9000:
            return (Cvm.OFFLINE_PIN if code == 0x01 else Cvm.SIGNATURE), 0x02 if code == 0x01 else 0x00
        if response.sw in (0x6983, 0x6984) or response.sw == 0x63C0:
            set_bit(tvr, TVR_PIN_LIMIT_EXCEEDED)
        return Cvm.FAILED, 0x01
    if code == 0x02:
        set_bit(tvr, TVR_ONLINE_PIN_ENTERED)
        return Cvm.ONLINE_PIN, 0x00
    if code == 0x1E:
        return Cvm.SIGNATURE, 0x00
    if code == 0x1F:
        return Cvm.NO_CVM, 0x02
    return Cvm.FAILED, 0x01


def check_pin(pin: str | None) -> None:
    """Refuse a PIN that cannot form an ISO 9564 format 2 block (4-12 digits) with :class:`ValueError`,
    before any APDU: sending some other block would burn one of the card's PIN tries. ``None``/empty
    means no PIN entered (the value is never put in the message)."""
    if not pin:
        return
    try:
        pin_block(pin)
    except ProtocolError:
        raise ValueError(f"the TEST PIN must be 4-12 digits (got {len(pin)} characters)") from None
