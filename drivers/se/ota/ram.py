"""Running remote APDU scripts on the card (ETSI TS 102 226 clause 5, GP Amendment B).

Both OTA paths end here: SMS-PP (:mod:`.sms_pp`, the packet's SCP80 security as external
security) and HTTP remote administration (:mod:`.http_admin`, no external security: the script
itself opens an SCP02/SCP03 session with the security domain). Commands run on a card-internal
channel (:meth:`~paylab.drivers.se.runtime.SecureElement.run_internal`) and stop at the first
error status word (anything but 9000, 62xx, 63xx), whose response is kept. Nothing is committed
here: the caller owns the transaction.
"""

from __future__ import annotations

from paylab.lab.protocol.errors import ProtocolError
from paylab.lab.protocol.gp.session import is_error_sw
from paylab.lab.protocol.ota.ram import (
    TAG_BAD_FORMAT,
    TAG_COMMAND_SCRIPT,
    TAG_COMMAND_SCRIPT_INDEFINITE,
    RApdu,
    build_compact_response,
    build_expanded_response,
    parse_compact_commands,
    parse_expanded_commands,
)

from ..runtime import SecureElement

BAD_FORMAT_RESPONSE = build_expanded_response([], executed=0, extra=[(TAG_BAD_FORMAT, b"\x01")])
"""Expanded answer to a script that does not parse: ``AB {80 00, 90 01}`` [M: TS 102 226 5.2.2]."""


def is_expanded(script: bytes) -> bool:
    """True when ``script`` is a command scripting template (``AA`` or ``AE``)."""
    return script[:1] in (bytes((TAG_COMMAND_SCRIPT,)), bytes((TAG_COMMAND_SCRIPT_INDEFINITE,)))


def run_on_channel(se: SecureElement, channel: int, apdus: list[bytes]) -> list[RApdu]:
    """Run ``apdus`` on an open internal channel, up to and including the first error status word."""
    responses: list[RApdu] = []
    for apdu in apdus:
        rapdu = se.run_internal(channel, apdu)
        responses.append(RApdu(rapdu[:-2], int.from_bytes(rapdu[-2:], "big")))
        if is_error_sw(responses[-1].sw):
            break
    return responses


def run_remote_apdus(se: SecureElement, target: bytes, script: bytes, *,
                     external_security: str | None) -> bytes:
    """Run a RAM script (compact or expanded, TS 102 226 clause 5) on an internal channel opened on
    ``target``; stop at the first error status word; return the matching response format.
    Nothing is committed here: the caller's transaction covers it."""
    expanded = is_expanded(script)
    try:
        if expanded:
            parsed = parse_expanded_commands(script)
            apdus, indefinite = parsed.apdus, parsed.indefinite
        else:
            apdus, indefinite = parse_compact_commands(script), False
    except ProtocolError:
        if expanded:
            return BAD_FORMAT_RESPONSE
        return build_compact_response(0, 0x6700)
    responses = run_apdus(se, target, apdus, external_security=external_security)
    if expanded:
        return build_expanded_response(responses, indefinite=indefinite)
    last = responses[-1]
    return build_compact_response(len(responses), last.sw, last.data)


def run_apdus(se: SecureElement, target: bytes, apdus: list[bytes], *,
              external_security: str | None) -> list[RApdu]:
    """C-APDUs on a fresh internal channel on ``target``, up to and including the first one that
    answers an error status word (not 9000/62xx/63xx); the channel is closed afterwards."""
    channel = se.open_internal_channel(target, external_security=external_security)
    try:
        return run_on_channel(se, channel, apdus)
    finally:
        se.close_internal_channel(channel)
