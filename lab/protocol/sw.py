"""Status words SW1-SW2: named constants, meanings and an error for callers that insist on 9000.

Meanings come from three layers, looked up most specific first:

* ``context="gp"``: GlobalPlatform Card Specification v2.3, clause 11 (per-command error
  tables): e.g. 6310 "more data available" for GET STATUS, 6300 for a failed host cryptogram in
  EXTERNAL AUTHENTICATE, 6283 "card locked" on SELECT; 6999 is Java Card's
  ``ISO7816.SW_APPLET_SELECT_FAILED``.
* ``context="emv"`` (alias ``"pboc"``, which inherits EMV's coding): EMV Book 3 clause 6.3.5 and
  Book 1 clause 12 (application selection): 6283 on SELECT = application blocked, 6A81 on SELECT
  = card blocked, 6985 on GPO = application not usable for this transaction (qPBOC: try another
  interface, domain brief section 1), 63Cx / 6983 / 6984 on VERIFY = PIN tries and PIN blocked.
* ISO/IEC 7816-4 clause 5.1.3 (tables 5 and 6), the default: exact values, then the
  parameterised families 61xx (bytes still available), 6Cxx (wrong Le, exact Ne in SW2), 63Cx
  (counter), then the SW1 ranges (62 warning/unchanged, 63 warning/changed, 64 and 65 execution
  errors, 67-6F checking errors, 9xxx other than 9000 application-specific).

Meanings are English text without the hex value; :class:`StatusWordError` adds the hex.
"""

from __future__ import annotations

from typing import Any

from .errors import PaylabError, ProtocolError

SW_OK = 0x9000
SW_SELECTED_FILE_INVALIDATED = 0x6283
SW_MEMORY_FAILURE = 0x6581
SW_WRONG_LENGTH = 0x6700
SW_SECURITY_STATUS_NOT_SATISFIED = 0x6982
SW_AUTH_METHOD_BLOCKED = 0x6983
SW_DATA_INVALID = 0x6984
SW_CONDITIONS_NOT_SATISFIED = 0x6985
SW_COMMAND_NOT_ALLOWED_NO_EF = 0x6986
SW_WRONG_DATA = 0x6A80
SW_FUNC_NOT_SUPPORTED = 0x6A81
SW_FILE_NOT_FOUND = 0x6A82
SW_RECORD_NOT_FOUND = 0x6A83
SW_NOT_ENOUGH_MEMORY = 0x6A84
SW_INCORRECT_P1P2 = 0x6A86
SW_REF_DATA_NOT_FOUND = 0x6A88
SW_WRONG_P1P2 = 0x6B00
SW_INS_NOT_SUPPORTED = 0x6D00
SW_CLA_NOT_SUPPORTED = 0x6E00
SW_UNKNOWN = 0x6F00

# ISO/IEC 7816-4 clause 5.1.3, tables 5 and 6 (exact values).
_ISO: dict[int, str] = {
    0x9000: "normal processing, no further qualification",
    0x6200: "warning: no information given (non-volatile memory unchanged)",
    0x6281: "warning: part of returned data may be corrupted",
    0x6282: "warning: end of file or record reached before reading Ne bytes",
    0x6283: "warning: selected file deactivated (invalidated)",
    0x6284: "warning: file control information not formatted according to ISO/IEC 7816-4",
    0x6285: "warning: selected file in termination state",
    0x6286: "warning: no input data available from a sensor on the card",
    0x6300: "warning: no information given (non-volatile memory changed)",
    0x6381: "warning: file filled up by the last write",
    0x6400: "execution error: no information given (non-volatile memory unchanged)",
    0x6401: "execution error: immediate response required by the card",
    0x6500: "execution error: no information given (non-volatile memory changed)",
    0x6581: "execution error: memory failure",
    0x6700: "wrong length",
    0x6800: "functions in CLA not supported",
    0x6881: "logical channel not supported",
    0x6882: "secure messaging not supported",
    0x6883: "last command of the chain expected",
    0x6884: "command chaining not supported",
    0x6900: "command not allowed: no information given",
    0x6981: "command incompatible with file structure",
    0x6982: "security status not satisfied",
    0x6983: "authentication method blocked",
    0x6984: "reference data not usable (invalidated)",
    0x6985: "conditions of use not satisfied",
    0x6986: "command not allowed (no current EF)",
    0x6987: "expected secure messaging data objects missing",
    0x6988: "incorrect secure messaging data objects",
    0x6A00: "wrong parameters P1-P2: no information given",
    0x6A80: "incorrect parameters in the command data field",
    0x6A81: "function not supported",
    0x6A82: "file or application not found",
    0x6A83: "record not found",
    0x6A84: "not enough memory space in the file",
    0x6A85: "Nc inconsistent with TLV structure",
    0x6A86: "incorrect parameters P1-P2",
    0x6A87: "Nc inconsistent with parameters P1-P2",
    0x6A88: "referenced data or reference data not found",
    0x6A89: "file already exists",
    0x6A8A: "DF name already exists",
    0x6B00: "wrong parameters P1-P2 (e.g. offset outside the EF)",
    0x6D00: "instruction code not supported or invalid",
    0x6E00: "class not supported",
    0x6F00: "no precise diagnosis",
}

# EMV Book 3 clause 6.3.5 and Book 1 clause 12 (application selection).
_EMV: dict[int, str] = {
    0x6283: "selected file invalidated: the application is blocked (SELECT)",
    0x6A81: "function not supported: the card is blocked or SELECT is not supported; terminate",
    0x6A82: "file or application not found (SELECT PSE/PPSE: use the list of AIDs; SELECT AID: next AID)",
    0x6A83: "record not found (READ RECORD: end of the payment system directory)",
    0x6983: "authentication method blocked (VERIFY: PIN try limit exceeded)",
    0x6984: "referenced data invalidated (VERIFY: PIN blocked)",
    0x6985: "conditions of use not satisfied (GPO: application not usable for this transaction, "
    "select another application or, for qPBOC, another interface)",
    0x6A88: "referenced data (data object) not found (GET DATA)",
}

# GlobalPlatform Card Specification v2.3 clause 11 (per-command error conditions).
_GP: dict[int, str] = {
    0x6283: "card life cycle state is CARD_LOCKED (SELECT)",
    0x6300: "authentication of host cryptogram failed (EXTERNAL AUTHENTICATE)",
    0x6310: "more data available (GET STATUS / GET DATA: repeat with P2 'next occurrence')",
    0x6400: "no specific diagnosis",
    0x6581: "memory failure",
    0x6700: "wrong length in Lc",
    0x6982: "security status not satisfied (no or wrong secure channel, or MAC verification failed)",
    0x6985: "conditions of use not satisfied",
    0x6999: "applet selection failed (Java Card SW_APPLET_SELECT_FAILED)",
    0x6A80: "incorrect values in command data",
    0x6A81: "function not supported (e.g. card life cycle state is CARD_LOCKED)",
    0x6A82: "application or file not found",
    0x6A84: "not enough memory space",
    0x6A86: "incorrect P1 P2",
    0x6A88: "referenced data not found (e.g. key set, key or data object)",
    0x6D00: "invalid instruction",
    0x6E00: "invalid class",
}

_CONTEXTS: dict[str, dict[int, str] | None] = {
    "iso": None,
    "emv": _EMV,
    "pboc": _EMV,
    "gp": _GP,
    "globalplatform": _GP,
}

# SW1 families, ISO/IEC 7816-4 clause 5.1.3 table 5.
_SW1_RANGES: dict[int, str] = {
    0x62: "warning: non-volatile memory unchanged",
    0x63: "warning: non-volatile memory changed",
    0x64: "execution error: non-volatile memory unchanged",
    0x65: "execution error: non-volatile memory changed",
    0x66: "execution error: security-related issue",
    0x67: "checking error: wrong length",
    0x68: "checking error: functions in CLA not supported",
    0x69: "checking error: command not allowed",
    0x6A: "checking error: wrong parameters P1-P2",
    0x6B: "checking error: wrong parameters P1-P2",
    0x6D: "checking error: instruction code not supported or invalid",
    0x6E: "checking error: class not supported",
    0x6F: "checking error: no precise diagnosis",
}


def _check_sw(sw: int) -> int:
    if not isinstance(sw, int) or isinstance(sw, bool) or not 0 <= sw <= 0xFFFF:
        raise ProtocolError(f"{sw!r} is not a status word", field="sw", expected="an integer 0000..FFFF")
    return sw


def _context_table(context: str | None) -> dict[int, str] | None:
    if context is None:
        return None
    key = context.lower() if isinstance(context, str) else context
    if key not in _CONTEXTS:
        raise ProtocolError(
            f"unknown status word context {context!r}",
            field="context",
            expected="None, " + ", ".join(repr(name) for name in _CONTEXTS),
        )
    return _CONTEXTS[key]


def describe(sw: int, context: str | None = None) -> str:
    """Meaning of ``sw`` (e.g. ``0x63C2`` -> ``"verification failed, 2 tries left"``).

    ``context`` selects the overlay of a spec that gives some values a narrower meaning: ``None``
    or ``"iso"`` (ISO/IEC 7816-4 only), ``"emv"``/``"pboc"``, ``"gp"``/``"globalplatform"``
    (case-insensitive). Values the overlay does not define fall back to ISO/IEC 7816-4.

    :raises ProtocolError: ``sw`` is not in 0..0xFFFF or ``context`` is unknown.
    """
    _check_sw(sw)
    overlay = _context_table(context)
    sw1, sw2 = sw >> 8, sw & 0xFF
    if overlay is not None and sw in overlay:
        return overlay[sw]
    if overlay is _EMV and sw1 == 0x63 and sw2 & 0xF0 == 0xC0:
        # EMV Book 3 clause 6.5.12 (VERIFY): 63Cx = wrong PIN, x tries remaining.
        return f"wrong PIN, {sw2 & 0x0F} PIN tries left (VERIFY)"
    if sw in _ISO:
        return _ISO[sw]
    if sw1 == 0x61:
        count = sw2 or 256
        return f"normal processing: {count} response bytes still available (GET RESPONSE with Le={sw2:02X})"
    if sw1 == 0x6C:
        count = sw2 or 256
        return f"wrong Le: exactly {count} bytes available (resend with Le={sw2:02X})"
    if sw1 == 0x63 and sw2 & 0xF0 == 0xC0:
        return f"verification failed, {sw2 & 0x0F} tries left"
    if sw1 in _SW1_RANGES:
        return _SW1_RANGES[sw1]
    if sw1 & 0xF0 == 0x90:
        return "application-specific status (proprietary)"
    if sw1 == 0x60:
        return "invalid status word (60 is the T=0 NULL procedure byte)"
    return "unknown status word (not defined by ISO/IEC 7816-4)"


def format_sw(sw: int) -> str:
    """``0x6A82`` -> ``"6A82"``. :raises ProtocolError: ``sw`` is not in 0..0xFFFF."""
    return f"{_check_sw(sw):04X}"


class StatusWordError(PaylabError):
    """A card answered a status word its caller does not accept (usually anything but 9000).

    ``sw``: the status word; ``command``: what was sent, in words (``"SELECT PPSE"``, ``"GPO"``,
    an APDU in hex); ``context``: the :func:`describe` overlay; ``meaning``: its description;
    ``data``: response data returned with the status word, if any.
    """

    def __init__(
        self,
        sw: int,
        command: str | None = None,
        *,
        context: str | None = None,
        data: bytes = b"",
    ) -> None:
        self.sw = _check_sw(sw)
        self.command = command
        self.context = context
        self.data = bytes(data)
        self.meaning = describe(sw, context)
        super().__init__(str(self))

    @property
    def sw1(self) -> int:
        return self.sw >> 8

    @property
    def sw2(self) -> int:
        return self.sw & 0xFF

    def __str__(self) -> str:
        text = f"SW {self.sw:04X} ({self.meaning})"
        return f"{self.command}: {text}" if self.command else text

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_status_word_error, (self.sw, self.command, self.context, self.data))


def _rebuild_status_word_error(
    sw: int, command: str | None, context: str | None, data: bytes
) -> StatusWordError:
    return StatusWordError(sw, command, context=context, data=data)
