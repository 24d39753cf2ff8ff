"""NFC reader over nfcpy: the terminal side of ISO/IEC 14443-4 (Type 4A / 4B), as a CardReaderProtocol.

``clf.sense(RemoteTarget(...))`` finds a card, ``nfc.tag.activate`` sends RATS (A) or ATTRIB (B),
``tag.transceive`` carries whole APDUs (nfcpy chains, handles R(ACK)/R(NAK) and S(WTX)). The ATR is
synthesised from the ATS historical bytes (A) or the ATQB (B) as PC/SC part 3 does.

Errors: nothing in the field -> :class:`NoCard`; the card leaves mid-APDU -> :class:`CardRemoved`
(nfcpy's ``Type4TagCommandError`` with errno ``TIMEOUT_ERROR``, which is 0, or a raw nfcpy timeout
inside a waiting time extension) after the retries of the frame waiting time, well under a second
with the emulator's FWI 8; garbage -> :class:`CardProtocolError`; device missing -> :class:`ReaderUnavailable`.
The field stays on between APDUs; :meth:`NfcReader.power_off` drops it.
"""

from __future__ import annotations

import errno
import threading
import time
from typing import Any

import nfc
import nfc.clf
import nfc.tag
import nfc.tag.tt4

from paylab.lab.protocol.iso14443 import RATS_START, Ats, Iso14443Error, pcsc_atr_type_a, pcsc_atr_type_b

from ..errors import CardProtocolError, CardRemoved, NoCard, ReaderUnavailable
from ..protocols.card import CardReaderProtocol, ReaderAttributes
from . import udp_patch
from .frontend import device_info, open_frontend

SENSE_WAIT = 0.05
"""Longest wait for a discovery answer per poll on the udp pseudo-driver (nfcpy waits 1 s)."""
ACTIVATION_ATTEMPTS = 3


class _Frontend(nfc.ContactlessFrontend):
    """nfcpy's front end, keeping the raw activation answer (ATS / ATTRIB answer) nfcpy discards."""

    activation_command: bytes | None = None
    activation_response: bytes | None = None

    def exchange(self, send_data: Any, timeout: Any) -> Any:
        data = super().exchange(send_data, timeout)
        if send_data and send_data[0] in (RATS_START, 0x1D) and len(send_data) in (2, 9):
            self.activation_command = bytes(send_data)
            self.activation_response = bytes(data) if data is not None else None
        return data


class NfcReader(CardReaderProtocol):
    """``NfcReader("udp:127.0.0.1:PORT")`` or ``NfcReader("usb:072f:2200")``: a contactless reader.

    Thread-safe: every operation holds one lock; :meth:`close` may be called from any thread (a
    transmit in progress finishes or fails first).
    """

    contactless = True
    transport_name = "nfc"

    def __init__(self, path: str = "udp:127.0.0.1:54321", *, technology: str = "106A", name: str | None = None,
                 sense_wait: float = SENSE_WAIT) -> None:
        super().__init__()
        if technology not in ("106A", "106B"):
            raise ValueError(f"technology must be 106A or 106B, not {technology!r}")
        self.path = path
        self.technology = technology
        self.name = name or f"nfc:{path}"
        self.sense_wait = sense_wait
        self._lock = threading.RLock()
        self._clf: _Frontend | None = open_frontend(path, role="reader", frontend_class=_Frontend)  # type: ignore[assignment]
        self._tag: Any = None
        self._atr: bytes | None = None
        self._ats: Ats | None = None
        self._closed = False

    # -- discovery ------------------------------------------------------------------------------------
    def _frontend(self) -> _Frontend:
        if self._clf is None or self._closed:
            raise ReaderUnavailable("reader is closed", resource=self.name)
        return self._clf

    def _sense(self) -> Any:
        clf = self._frontend()
        self._tag = None
        try:
            with udp_patch.capped_receive(clf.device, self.sense_wait):
                return clf.sense(nfc.clf.RemoteTarget(self.technology))
        except OSError as error:
            raise ReaderUnavailable("NFC device gone", resource=self.name, detail=str(error)) from error
        except nfc.clf.CommunicationError:
            return None

    def wait_for_card(self, timeout: float) -> None:
        """Poll until a target answers discovery; :class:`NoCard` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if self._tag is not None or self._sense() is not None:
                    return
            if time.monotonic() >= deadline:
                raise NoCard(f"no {self.technology} target within {timeout:.2f} s", resource=self.name)
            time.sleep(min(0.01, max(0.0, deadline - time.monotonic())))

    def card_present(self) -> bool:
        """An active card answers the ISO 14443-4 presence check (R(NAK)); otherwise one discovery poll."""
        with self._lock:
            if self._tag is not None:
                try:
                    self._tag._dep.exchange(None)
                    return True
                except (nfc.clf.CommunicationError, nfc.tag.TagCommandError, IndexError, TypeError):
                    self._forget()
                    return False
            return self._sense() is not None

    def wait_for_removal(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.card_present():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    # -- activation ----------------------------------------------------------------------------------
    def power_on(self) -> bytes:
        """Discover and activate a Type 4 card (a fresh activation each call); returns the PC/SC ATR.

        nfcpy gives the card 30 ms to answer RATS/ATTRIB; a late answer is retried (up to
        ``ACTIVATION_ATTEMPTS`` discoveries) before :class:`NoCard`."""
        with self._lock:
            clf = self._frontend()
            tag = target = None
            for _ in range(ACTIVATION_ATTEMPTS):
                target = None
                for _ in range(5):
                    target = self._sense()
                    if target is not None:
                        break
                if target is None:
                    raise NoCard(f"no {self.technology} target in the field", resource=self.name)
                clf.activation_response = None
                try:
                    tag = nfc.tag.activate(clf, target)
                except (IndexError, TypeError, ValueError) as error:
                    raise CardProtocolError("malformed activation answer", resource=self.name,
                                            detail=_hex(clf.activation_response)) from error
                if tag is not None:
                    break
            if tag is None:
                raise NoCard("the target did not answer its activation (RATS/ATTRIB)", resource=self.name)
            if not isinstance(tag, nfc.tag.tt4.Type4Tag):
                raise CardProtocolError(f"not an ISO/IEC 14443-4 card ({tag.type})", resource=self.name)
            self._tag = tag
            self._atr = self._synthesise_atr(target, clf.activation_response)
            return self._atr

    def _synthesise_atr(self, target: Any, answer: bytes | None) -> bytes:
        try:
            if self.technology == "106B":
                mbli = (answer[0] >> 4) if answer else 0
                return pcsc_atr_type_b(bytes(target.sensb_res), mbli)
            self._ats = Ats.decode(answer or b"")
            return pcsc_atr_type_a(self._ats.historical)
        except Iso14443Error as error:
            self._forget()
            raise CardProtocolError(f"malformed activation answer: {error}", resource=self.name,
                                    detail=_hex(answer)) from error

    @property
    def ats(self) -> Ats | None:
        """The decoded ATS of the active Type A card."""
        return self._ats

    @property
    def atr(self) -> bytes | None:
        return self._atr

    @property
    def protocol(self) -> str:
        if self._tag is None:
            return "unknown"
        return "ISO14443-4B" if self.technology == "106B" else "ISO14443-4A"

    # -- APDUs -----------------------------------------------------------------------------------------
    def transmit(self, capdu: bytes) -> bytes:
        return self.traced(bytes(capdu), self._exchange)

    def _exchange(self, capdu: bytes) -> bytes:
        with self._lock:
            self._frontend()
            if self._tag is None:
                raise NoCard("no activated card (call power_on)", resource=self.name, detail=_apdu_head(capdu))
            try:
                rapdu = self._tag.transceive(bytearray(capdu))
            except nfc.tag.tt4.Type4TagCommandError as error:
                self._forget()
                if error.errno == nfc.tag.TIMEOUT_ERROR:          # 0: falsy, compare explicitly
                    raise CardRemoved("card left the field (no answer within the frame waiting time)",
                                      resource=self.name, detail=_apdu_head(capdu)) from error
                raise CardProtocolError(f"ISO 14443-4 error: {error}", resource=self.name,
                                        detail=_apdu_head(capdu)) from error
            except (nfc.clf.TimeoutError, nfc.clf.BrokenLinkError) as error:
                self._forget()
                raise CardRemoved("card left the field during a waiting time extension", resource=self.name,
                                  detail=_apdu_head(capdu)) from error
            except (nfc.clf.CommunicationError, IndexError, TypeError) as error:
                self._forget()
                raise CardProtocolError(f"ISO 14443-4 error: {error!r}", resource=self.name,
                                        detail=_apdu_head(capdu)) from error
            except OSError as error:  # ENODEV (unplugged), EIO, EPIPE...: the reader, not the card
                self._forget()
                raise _device_error(self.name, error) from error
            if rapdu is None or len(rapdu) < 2:
                raise CardProtocolError("R-APDU shorter than SW1 SW2", resource=self.name,
                                        detail=_apdu_head(capdu))
            return bytes(rapdu)

    # -- field off / close -------------------------------------------------------------------------------
    def _forget(self) -> None:
        self._tag = None
        self._ats = None

    def power_off(self) -> None:
        """Switch the RF field off (the card sees RFOFF and resets); no error without a card."""
        with self._lock:
            self._forget()
            clf = self._clf
            if clf is None or self._closed:
                return
            with clf.lock:
                clf.target = None
                if clf.device is not None:
                    try:
                        clf.device.mute()
                    except OSError as error:
                        raise _device_error(self.name, error) from error

    def attributes(self) -> ReaderAttributes:
        with self._lock:
            info = device_info(self._frontend(), self.path)
        udp = self.path.startswith("udp")
        extra = {"path": self.path, "technology": self.technology}
        if "chipset" in info:
            extra["chipset"] = info["chipset"]
        return ReaderAttributes(name=self.name, kind="nfc", contactless=True,
                                vendor=None if udp else info.get("vendor"),
                                model="nfcpy udp pseudo-driver" if udp else info.get("product"), extra=extra)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._tag = None
            clf, self._clf = self._clf, None
        if clf is not None:
            clf.close()


def _hex(data: bytes | None) -> str | None:
    return data.hex().upper() if data else None


def _apdu_head(capdu: bytes) -> str:
    """CLA INS P1 P2 only: the data field may hold a PAN or keys."""
    return f"C-APDU {bytes(capdu[:4]).hex().upper()}"


def _device_error(name: str, error: OSError) -> ReaderUnavailable:
    """Any OS error from the NFC frontend (unplugged, I/O error, broken pipe) as :class:`ReaderUnavailable`."""
    code = errno.errorcode.get(error.errno, "") if error.errno is not None else ""
    detail = f"errno {error.errno}" + (f" ({code})" if code else "")
    return ReaderUnavailable("NFC device error", resource=name, detail=detail)
