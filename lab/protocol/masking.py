"""Masking of cardholder data for logs, traces and reports (PCI DSS req. 3.3/3.4).

Which values are masked is decided by the data dictionary's sensitivity (:mod:`.tags`), never by
callers: PAN (5A) shows first 6 / last 4, track 2 (57, 9F6B) keeps only the masked PAN, track 1
(56) likewise, and names, PIN data and discretionary data become ``<masked N bytes>``.

Values of tags the dictionary does not know (proprietary DFxx data, or bytes that only look like
TLV) are scrubbed with :func:`mask_text`, since their meaning cannot be judged.

Display functions never raise: a value that does not look like what its tag promises is masked
completely instead.

PAN rule (ISO/IEC 7812 PANs are 13-19 digits in practice): 13 digits or more -> first 6 and last
4 shown; 5-12 digits -> last 4 only (6 + 4 would leave almost nothing hidden); 4 or fewer ->
everything hidden. Trailing ``F`` padding of a ``cn`` value is kept as is.
"""

from __future__ import annotations

import re

from .tags import Sensitivity, is_known, sensitivity

MASK = "*"
_DIGITS = frozenset("0123456789")


def luhn_ok(digits: str) -> bool:
    """ISO/IEC 7812-1 Annex B check digit test over a string of ASCII digits."""
    if not digits or not set(digits) <= _DIGITS:
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def mask_pan(pan: str) -> str:
    """Mask a PAN given as digits (trailing ``F`` padding allowed); same length as the input."""
    body = pan.rstrip("Ff")
    pad = pan[len(body) :]
    if not body or not set(body) <= _DIGITS:
        return MASK * len(pan)
    n = len(body)
    if n >= 13:
        shown = body[:6] + MASK * (n - 10) + body[-4:]
    elif n > 4:
        shown = MASK * (n - 4) + body[-4:]
    else:
        shown = MASK * n
    return shown + pad


def _as_text(data: bytes | str) -> str:
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data).hex().upper()
    return str(data).upper()


def mask_track2(data: bytes | str) -> str:
    """Mask track 2 (tag 57 bytes, their hex, or ASCII ``PAN=YYMM...``); same length as the hex/text.

    The PAN before the separator (``D`` in EMV tag 57, ``=`` on the magnetic stripe, EMV Book 3
    Annex A) is masked with :func:`mask_pan`; everything after the separator (expiry, service
    code, discretionary data, padding) is hidden.
    """
    text = _as_text(data)
    for i, ch in enumerate(text):
        if ch in "D=":
            return mask_pan(text[:i]) + ch + MASK * (len(text) - i - 1)
    return mask_pan(text)


def mask_track1(data: bytes | str) -> str:
    """Mask track 1 (ISO/IEC 7813 ``B<PAN>^<NAME>^<YYMM><SC><DD>``); same length as the text.

    The format code is kept, the PAN masked with :func:`mask_pan`, and everything from the first
    ``^`` on (name, expiry, service code, discretionary data) hidden except the separator itself.
    """
    text = bytes(data).decode("latin-1") if isinstance(data, bytes | bytearray | memoryview) else str(data)
    sep = text.find("^")
    head, tail = (text, "") if sep < 0 else (text[:sep], text[sep:])
    start = 0
    while start < len(head) and not head[start].isdigit():
        start += 1
    if start > 2:  # more than "%B" before the PAN: not a track we understand
        return MASK * len(text)
    masked_tail = tail[:1] + MASK * max(len(tail) - 1, 0)
    return head[:start] + mask_pan(head[start:]) + masked_tail


def masked_placeholder(length: int) -> str:
    """The display form of a hidden value: ``<masked N bytes>``."""
    return f"<masked {length} bytes>"


def mask_value(tag: int, value: bytes, kernel: str | None = None) -> str:
    """Display string for ``tag``'s value: hex when not sensitive, masked according to the dictionary.

    PAN -> masked digits (padding F dropped); track 2 -> :func:`mask_track2`; track 1 ->
    :func:`mask_track1`; names, PIN and key data -> ``<masked N bytes>``; unknown tags -> hex
    scrubbed of PAN-like digit runs.
    """
    kind = sensitivity(tag, kernel)
    if kind is Sensitivity.NONE:
        text = value.hex().upper()
        return text if is_known(tag, kernel) else mask_text(text)
    if kind is Sensitivity.PAN:
        return mask_pan(value.hex().upper().rstrip("F"))
    if kind is Sensitivity.TRACK2:
        return mask_track2(value)
    if kind is Sensitivity.TRACK1:
        return mask_track1(value)
    return masked_placeholder(len(value))


def mask_hex_value(tag: int, value: bytes, kernel: str | None = None) -> str:
    """``value.hex()`` with its sensitive nibbles replaced by ``*`` (same length), for raw APDU hex.

    PAN and track 2 keep the same digits visible as :func:`mask_value`; everything else that is
    sensitive (track 1 text, names, PIN/key data) is hidden completely.
    """
    text = value.hex().upper()
    kind = sensitivity(tag, kernel)
    if kind is Sensitivity.NONE:
        return text if is_known(tag, kernel) else mask_text(text)
    if kind is Sensitivity.PAN:
        return mask_pan(text)
    if kind is Sensitivity.TRACK2:
        return mask_track2(text)
    return MASK * len(text)


# Digit runs, allowing single spaces or hyphens between digits ("6228 4800 ...").
_DIGIT_RUN = re.compile(r"[0-9](?:[ -]?[0-9])*")
_PAN_MIN, _PAN_MAX = 13, 19


def _mask_run(match: re.Match[str]) -> str:
    run = match.group(0)
    positions = [i for i, ch in enumerate(run) if ch in _DIGITS]
    digits = "".join(run[i] for i in positions)
    n = len(digits)
    if n < _PAN_MIN:
        return run
    if n <= _PAN_MAX and digits[0] != "0" and luhn_ok(digits):
        shown = mask_pan(digits)  # the run is exactly one PAN: show BIN and last 4
    else:
        hidden = [False] * n
        for start in range(n - _PAN_MIN + 1):
            if digits[start] == "0":  # MII 0 is not issued to payment cards (ISO/IEC 7812-1)
                continue
            for length in range(_PAN_MIN, min(_PAN_MAX, n - start) + 1):
                if luhn_ok(digits[start : start + length]):
                    hidden[start : start + length] = [True] * length
        if not any(hidden):
            return run
        shown = "".join(MASK if h else d for d, h in zip(digits, hidden, strict=True))
    chars = list(run)
    for pos, ch in zip(positions, shown, strict=True):
        chars[pos] = ch
    return "".join(chars)


def mask_text(text: str) -> str:
    """Scrub PAN-like numbers from free text (log lines, error messages, hex dumps).

    A PAN-like number is 13-19 consecutive digits (single spaces/hyphens between them allowed)
    that do not start with 0 and pass the Luhn check. A digit run that is exactly such a number is
    shown as first 6 / last 4; inside a longer run every Luhn-valid 13-19 digit window is hidden
    completely. This errs on the side of masking: about one random window in ten passes Luhn.
    """
    return _DIGIT_RUN.sub(_mask_run, text)
