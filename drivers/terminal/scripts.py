"""Issuer script processing of the contact kernel (EMV 4.3 Book 3 section 10.10, Book 4 A5).

The issuer's response carries templates 71 (run before the final GENERATE AC) and 72 (after), each
``{9F18 script identifier (optional), 86 command ...}``. Commands of a script run in order until one
answers SW1 other than 90/62/63; Issuer Script Results (9F5B) hold 5 bytes per script: result nibble
(0 not performed, 1 failed, 2 successful) || sequence number of the failing command (0 if none, F for 15
and more), then the 4-byte script identifier (zeros without 9F18).
"""

from __future__ import annotations

from paylab.lab.protocol.apdu import CommandApdu
from paylab.lab.protocol.errors import ProtocolError, TlvError
from paylab.lab.protocol.tlv import decode

from .common import CardSession
from .tvr import set_bit

Script = tuple[int, bytes, list[bytes]]
"""``(template 71|72, script identifier 9F18, [command APDU ...])``."""


def script_templates(scripts: bytes | None) -> list[Script]:
    """The scripts of issuer script bytes (field 55 of the response, templates 71/72; others ignored)."""
    if not scripts:
        return []
    try:
        objects = decode(scripts)
    except TlvError:
        return []
    found = []
    for obj in objects:
        if obj.tag not in (0x71, 0x72) or not obj.constructed:
            continue
        children = list(obj.children)
        script_id = next((c.value for c in children if c.tag == 0x9F18), b"")
        found.append((obj.tag, script_id, [c.value for c in children if c.tag == 0x86]))
    return found


def run_scripts(session: CardSession, scripts: list[Script], tvr: bytearray, failed_bit: tuple[int, int]) -> bytes:
    """Run ``scripts``; returns their 9F5B entries and sets ``failed_bit`` in the TVR when one failed."""
    out = bytearray()
    for _template, script_id, commands in scripts:
        status = 0x20
        for number, raw in enumerate(commands, start=1):
            try:
                command = CommandApdu.decode(raw)
            except ProtocolError:  # a malformed script command fails the script
                status = 0x10 | min(number, 0x0F)
                break
            if session.send(command).sw1 not in (0x90, 0x62, 0x63):
                status = 0x10 | min(number, 0x0F)
                break
        if status != 0x20:
            set_bit(tvr, failed_bit)
        out += bytes([status]) + (script_id[-4:].rjust(4, b"\x00") if script_id else bytes(4))
    return bytes(out)
