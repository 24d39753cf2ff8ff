"""A PC/SC card reader over pyscard (PC/SC Workgroup specification part 5, pcsc-lite).

The reader is chosen by name pattern (``fnmatch`` glob, or a regex with ``regex=True`` or a
``re:`` prefix). ``power_on`` connects in shared mode negotiating T=0 or T=1 (whichever the ATR
offers, ISO/IEC 7816-3 clause 8); ``transmit`` recovers T=0 ``61xx``/``6Cxx`` responses (ISO/IEC
7816-4 clause 5.3.4 via :func:`~paylab.lab.protocol.apdu.transmit_with_chaining`) so callers see
the final R-APDU, and goes through :meth:`TracedTransport.traced`.

PC/SC return codes are mapped to the typed errors of :mod:`paylab.drivers.errors`, each naming
the reader: a card pulled mid-transaction (``SCARD_W_REMOVED_CARD`` 0x80100069,
``SCARD_E_NOT_TRANSACTED`` 0x80100016) → :class:`CardRemoved`; no card → :class:`NoCard`; pcscd
gone ("Service not available") or the reader unplugged → :class:`ReaderUnavailable`. A context
lost with pcscd is dropped and re-established on the next call, so a reader object survives a
pcscd restart (the card must be powered on again, as after any reset).
"""

from __future__ import annotations

import contextlib
import fnmatch
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from smartcard import scard

from paylab.drivers.errors import (
    CardProtocolError,
    CardRemoved,
    CardTimeout,
    DriverError,
    NoCard,
    ReaderUnavailable,
)
from paylab.drivers.protocols.card import CardReaderProtocol, ReaderAttributes
from paylab.lab.protocol.apdu import CommandApdu, transmit_with_chaining
from paylab.lab.protocol.errors import ApduError

_U32 = 0xFFFFFFFF
_REMOVED = {scard.SCARD_W_REMOVED_CARD, scard.SCARD_E_NOT_TRANSACTED, scard.SCARD_W_RESET_CARD}
_NO_CARD = {scard.SCARD_E_NO_SMARTCARD, scard.SCARD_W_UNPOWERED_CARD}
_TIMEOUT = {scard.SCARD_W_UNRESPONSIVE_CARD, scard.SCARD_E_TIMEOUT}
_PROTOCOL = {scard.SCARD_E_PROTO_MISMATCH, scard.SCARD_W_UNSUPPORTED_CARD, scard.SCARD_E_INVALID_ATR}
_SERVICE_GONE = {scard.SCARD_E_NO_SERVICE, scard.SCARD_E_SERVICE_STOPPED, scard.SCARD_E_INVALID_HANDLE,
                 scard.SCARD_E_NO_READERS_AVAILABLE, scard.SCARD_E_UNKNOWN_READER,
                 scard.SCARD_E_READER_UNAVAILABLE, scard.SCARD_E_COMM_DATA_LOST}
_CONTEXT_LOST = {scard.SCARD_E_NO_SERVICE, scard.SCARD_E_SERVICE_STOPPED, scard.SCARD_E_INVALID_HANDLE,
                 scard.SCARD_E_COMM_DATA_LOST}
_PROTOCOLS = {scard.SCARD_PROTOCOL_T0: "T=0", scard.SCARD_PROTOCOL_T1: "T=1", scard.SCARD_PROTOCOL_RAW: "RAW"}
REMOVAL_SETTLE = 1.5     # s: pcscd polls presence every 400 ms
_POLL_MS = 250          # each GetStatusChange waits at most this long, so every wait honours its timeout


def _code(hresult: int) -> int:
    return hresult & _U32


def pcsc_error(hresult: int, *, reader: str | None, operation: str) -> DriverError:
    """The typed error for a PC/SC return code (``reader`` becomes the error's resource)."""
    code = _code(hresult)
    detail = f"{operation}: {scard.SCardGetErrorMessage(code).strip()} (0x{code:08X})"
    if code in _REMOVED:
        return CardRemoved("card removed during the transaction", resource=reader, detail=detail)
    if code in _NO_CARD:
        return NoCard("no card in the reader", resource=reader, detail=detail)
    if code in _TIMEOUT:
        return CardTimeout("card did not answer", resource=reader, detail=detail)
    if code in _PROTOCOL:
        return CardProtocolError("card protocol not usable", resource=reader, detail=detail)
    if code in _SERVICE_GONE:
        return ReaderUnavailable("reader or PC/SC service unavailable", resource=reader, detail=detail)
    return ReaderUnavailable("PC/SC call failed", resource=reader, detail=detail)


def _establish(reader: str | None) -> int:
    hresult, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if _code(hresult) != scard.SCARD_S_SUCCESS:
        raise pcsc_error(hresult, reader=reader, operation="SCardEstablishContext")
    return ctx


def _release(ctx: int | None) -> None:
    if ctx is not None:
        with contextlib.suppress(Exception):
            scard.SCardReleaseContext(ctx)


def list_readers() -> list[str]:
    """Reader names pcscd currently serves (empty list when none); :class:`ReaderUnavailable` when
    pcscd is not reachable (``PCSCLITE_CSOCK_NAME``)."""
    ctx = _establish(None)
    try:
        hresult, readers = scard.SCardListReaders(ctx, [])
    finally:
        _release(ctx)
    code = _code(hresult)
    if code == scard.SCARD_E_NO_READERS_AVAILABLE:
        return []
    if code != scard.SCARD_S_SUCCESS:
        raise pcsc_error(hresult, reader=None, operation="SCardListReaders")
    return list(readers)


def match_reader(pattern: str, readers: list[str], *, regex: bool = False) -> str | None:
    """First reader whose name matches ``pattern`` (exact name first; glob, or regex search)."""
    if pattern in readers:
        return pattern
    if regex or pattern.startswith("re:"):
        compiled = re.compile(pattern.removeprefix("re:"))
        return next((r for r in readers if compiled.search(r)), None)
    return next((r for r in readers if fnmatch.fnmatchcase(r, pattern)), None)


@dataclass(frozen=True)
class CardEvent:
    """A card arriving in (``inserted``) or leaving (``removed``) a reader, as pcscd reported it."""

    kind: Literal["inserted", "removed"]
    reader: str
    atr: bytes = b""
    at: float = 0.0
    """``time.monotonic()`` when the event was observed."""


class PcscReader(CardReaderProtocol):
    """A PC/SC reader (emulated through vpcd or real). See the module docstring."""

    transport_name = "pcsc"

    def __init__(self, pattern: str, *, contactless: bool = False, regex: bool = False,
                 share_mode: int = scard.SCARD_SHARE_SHARED,
                 protocols: int = scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1) -> None:
        super().__init__()
        self.pattern = pattern
        self.contactless = contactless
        self._share_mode = share_mode
        self._protocols = protocols
        try:
            available = list_readers()
        except ReaderUnavailable as exc:
            raise ReaderUnavailable(exc.message, resource=pattern, detail=exc.detail) from exc
        name = match_reader(pattern, available, regex=regex)
        if name is None:
            raise ReaderUnavailable(f"no PC/SC reader matches {pattern!r}", resource=pattern,
                                    detail=f"readers present: {available or 'none'}")
        self.name = name
        self._lock = threading.RLock()
        self._ctx: int | None = None
        self._card: int | None = None
        self._active_protocol: int | None = None
        self._atr: bytes = b""
        self._event_count = -1
        self._event_present = False
        with contextlib.suppress(DriverError):
            self._event_baseline()

    # -- context and errors -----------------------------------------------------------------------
    def _context(self) -> int:
        if self._ctx is None:
            self._ctx = _establish(self.name)
        return self._ctx

    def _fail(self, hresult: int, operation: str) -> DriverError:
        code = _code(hresult)
        if code in _CONTEXT_LOST:       # pcscd went away: this context and card handle are dead
            self._card = None
            self._active_protocol = None
            _release(self._ctx)
            self._ctx = None
        elif code in _REMOVED:
            self._drop_card()
        return pcsc_error(hresult, reader=self.name, operation=operation)

    def _drop_card(self) -> None:
        card, self._card, self._active_protocol = self._card, None, None
        if card is not None:
            with contextlib.suppress(Exception):
                scard.SCardDisconnect(card, scard.SCARD_LEAVE_CARD)

    # -- presence and events --------------------------------------------------------------------------
    def _status(self, ctx: int, known: int, timeout_ms: int) -> tuple[int, int, bytes]:
        """One SCardGetStatusChange on this reader: (hresult, event state, ATR)."""
        hresult, states = scard.SCardGetStatusChange(ctx, timeout_ms, [(self.name, known)])
        if _code(hresult) != scard.SCARD_S_SUCCESS or not states:
            return hresult, known, b""
        _, event_state, atr = states[0]
        return hresult, event_state, bytes(atr)

    def _watch(self, until: Callable[[int], bool], timeout: float) -> tuple[bool, int, bytes]:
        """Poll this reader's state (own PC/SC context, so other threads' calls never collide) until
        ``until(state)`` or ``timeout``; returns (reached, state, ATR)."""
        deadline = time.monotonic() + max(0.0, timeout)
        ctx = _establish(self.name)
        try:
            known = scard.SCARD_STATE_UNAWARE
            while True:
                remaining_ms = int(max(0.0, deadline - time.monotonic()) * 1000)
                hresult, state, atr = self._status(ctx, known, min(_POLL_MS, remaining_ms) if known else 0)
                code = _code(hresult)
                if code == scard.SCARD_S_SUCCESS:
                    if state & (scard.SCARD_STATE_UNKNOWN | scard.SCARD_STATE_UNAVAILABLE):
                        raise ReaderUnavailable("reader gone", resource=self.name, detail=f"state 0x{state:X}")
                    if until(state):
                        return True, state, atr
                    known = state & ~scard.SCARD_STATE_CHANGED
                elif code != scard.SCARD_E_TIMEOUT:
                    raise pcsc_error(hresult, reader=self.name, operation="SCardGetStatusChange")
                if time.monotonic() >= deadline:
                    return False, known, atr
        finally:
            _release(ctx)

    @staticmethod
    def _present(state: int) -> bool:
        return bool(state & scard.SCARD_STATE_PRESENT) and not state & scard.SCARD_STATE_MUTE

    def card_present(self) -> bool:
        """True when pcscd sees a (non-mute) card in the reader."""
        _, state, _ = self._watch(lambda _s: True, 0)
        return self._present(state)

    def wait_for_card(self, timeout: float) -> None:
        """Block until a card is present; :class:`NoCard` after ``timeout`` seconds."""
        reached, _, _ = self._watch(self._present, timeout)
        if not reached:
            raise NoCard(f"no card within {timeout:g} s", resource=self.name)

    def wait_for_removal(self, timeout: float) -> bool:
        """Block until the reader is empty; False when a card is still there after ``timeout``."""
        reached, _, _ = self._watch(lambda s: not s & scard.SCARD_STATE_PRESENT, timeout)
        return reached

    def _event_baseline(self) -> None:
        _, state, _ = self._watch(lambda _s: True, 0)
        self._event_count = state >> 16
        self._event_present = bool(state & scard.SCARD_STATE_PRESENT)

    def next_event(self, timeout: float) -> list[CardEvent]:
        """The card events since the previous call (or since this reader object was made), waiting up
        to ``timeout`` for one. A quick remove+insert between two polls reports both (pcsc-lite's
        event counter in the upper 16 bits of the state says so). Empty list on timeout."""
        if self._event_count < 0:
            self._event_baseline()

        def changed(state: int) -> bool:
            return (state >> 16) != self._event_count or bool(state & scard.SCARD_STATE_PRESENT) != \
                self._event_present

        reached, state, atr = self._watch(changed, timeout)
        if not reached:
            return []
        events: list[CardEvent] = []
        now = time.monotonic()
        present = bool(state & scard.SCARD_STATE_PRESENT)
        if self._event_present and (not present or (state >> 16) - self._event_count >= 2):
            events.append(CardEvent("removed", self.name, at=now))
        if present and (not self._event_present or (state >> 16) - self._event_count >= 2):
            events.append(CardEvent("inserted", self.name, atr, now))
        self._event_count = state >> 16
        self._event_present = present
        return events

    def events(self, duration: float) -> Iterator[CardEvent]:
        """Card events as they happen, for ``duration`` seconds."""
        deadline = time.monotonic() + duration
        while (remaining := deadline - time.monotonic()) > 0:
            yield from self.next_event(remaining)

    # -- power and APDUs ------------------------------------------------------------------------------
    def power_on(self) -> bytes:
        """Connect (cold reset when already connected), negotiate T=0/T=1, return the ATR."""
        with self._lock:
            ctx = self._context()
            if self._card is not None:
                hresult, proto = scard.SCardReconnect(self._card, self._share_mode, self._protocols,
                                                      scard.SCARD_UNPOWER_CARD)
                if _code(hresult) != scard.SCARD_S_SUCCESS:
                    self._drop_card()
                    raise self._fail(hresult, "SCardReconnect")
            else:
                hresult, card, proto = scard.SCardConnect(ctx, self.name, self._share_mode, self._protocols)
                if _code(hresult) != scard.SCARD_S_SUCCESS:
                    raise self._fail(hresult, "SCardConnect")
                self._card = card
            self._active_protocol = proto
            hresult, _reader, _state, _proto, atr = scard.SCardStatus(self._card)
            if _code(hresult) != scard.SCARD_S_SUCCESS:
                raise self._fail(hresult, "SCardStatus")
            self._atr = bytes(atr)
            return self._atr

    @property
    def atr(self) -> bytes:
        """The ATR of the last :meth:`power_on`."""
        return self._atr

    @property
    def protocol(self) -> str:
        """The negotiated PC/SC protocol, ``T=0`` or ``T=1`` (contactless readers report T=1, PC/SC
        part 3); ``none`` before :meth:`power_on`."""
        if self._active_protocol is None:
            return "none"
        return _PROTOCOLS.get(self._active_protocol, f"0x{self._active_protocol:X}")

    def _exchange_raw(self, capdu: bytes) -> bytes:
        with self._lock:
            if self._card is None:
                raise NoCard("card not powered (call power_on first)", resource=self.name)
            pci = scard.SCARD_PCI_T0 if self._active_protocol == scard.SCARD_PROTOCOL_T0 else scard.SCARD_PCI_T1
            hresult, response = scard.SCardTransmit(self._card, pci, list(capdu))
            if _code(hresult) != scard.SCARD_S_SUCCESS:
                raise self._fail(hresult, f"SCardTransmit {capdu[:4].hex().upper()}")
            if len(response) < 2:
                raise self._short_response(capdu, bytes(response))
            return bytes(response)

    def _short_response(self, capdu: bytes, response: bytes) -> DriverError:
        """An R-APDU without SW1 SW2. vpcd answers "success, 0 bytes" when the card's link drops in
        the middle of an APDU: that is a removal once pcscd's next poll (400 ms) sees the reader
        empty; a card still present after ``REMOVAL_SETTLE`` s broke the protocol."""
        detail = f"{capdu[:4].hex().upper()} -> {response.hex().upper() or 'no bytes'}"
        if not response:
            try:
                gone = self._watch(lambda s: not s & scard.SCARD_STATE_PRESENT, REMOVAL_SETTLE)[0]
            except ReaderUnavailable as exc:
                return exc
            if gone:
                self._drop_card()
                return CardRemoved("card removed during the transaction", resource=self.name, detail=detail)
        return CardProtocolError("response shorter than SW1 SW2", resource=self.name, detail=detail)

    def _exchange(self, capdu: bytes) -> bytes:
        if self._active_protocol != scard.SCARD_PROTOCOL_T0:
            return self._exchange_raw(capdu)
        try:
            command = CommandApdu.decode(capdu)
        except ApduError:
            return self._exchange_raw(capdu)     # not a well-formed APDU: let the card answer it as is
        try:
            return transmit_with_chaining(self._exchange_raw, command).encode()
        except ApduError as exc:
            raise CardProtocolError("T=0 response recovery failed", resource=self.name,
                                    detail=f"{capdu[:4].hex().upper()}: {exc}") from exc

    def transmit(self, capdu: bytes) -> bytes:
        """Send one C-APDU, return the final R-APDU (T=0 61xx/6Cxx recovered), traced."""
        return self.traced(bytes(capdu), self._exchange)

    def power_off(self) -> None:
        """Disconnect and unpower the card (no error when there is none)."""
        with self._lock:
            card, self._card, self._active_protocol = self._card, None, None
            if card is not None:
                with contextlib.suppress(Exception):
                    scard.SCardDisconnect(card, scard.SCARD_UNPOWER_CARD)

    # -- attributes -----------------------------------------------------------------------------------
    def _attrib(self, handle: int, attr: int) -> str | None:
        hresult, value = scard.SCardGetAttrib(handle, attr)
        if _code(hresult) != scard.SCARD_S_SUCCESS or not value:
            return None
        raw = bytes(value).rstrip(b"\x00")
        text = raw.decode("ascii", "replace")
        return text if text.isprintable() else raw.hex().upper()

    def attributes(self) -> ReaderAttributes:
        """Name plus vendor / IFD serial / IFD version where the driver reports them (else None)."""
        with self._lock:
            ctx = self._context()
            handle = self._card
            direct = None
            if handle is None:
                hresult, direct, _ = scard.SCardConnect(ctx, self.name, scard.SCARD_SHARE_DIRECT, 0)
                if _code(hresult) != scard.SCARD_S_SUCCESS:
                    raise self._fail(hresult, "SCardConnect(DIRECT)")
                handle = direct
            try:
                vendor = self._attrib(handle, scard.SCARD_ATTR_VENDOR_NAME)
                serial = self._attrib(handle, scard.SCARD_ATTR_VENDOR_IFD_SERIAL_NO)
                version = self._attrib(handle, scard.SCARD_ATTR_VENDOR_IFD_VERSION)
            finally:
                if direct is not None:
                    scard.SCardDisconnect(direct, scard.SCARD_LEAVE_CARD)
        return ReaderAttributes(name=self.name, kind="pcsc", contactless=self.contactless, vendor=vendor,
                                serial=serial, firmware=version)

    def close(self) -> None:
        """Power off and release the PC/SC context (idempotent)."""
        with self._lock:
            self.power_off()
            _release(self._ctx)
            self._ctx = None

    def __repr__(self) -> str:
        return f"PcscReader({self.name!r}, protocol={self.protocol})"
