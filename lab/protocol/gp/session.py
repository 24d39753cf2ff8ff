"""What SCP02 and SCP03 sessions share: security levels, channel state, APDU fields, the base class.

A session object is *pure* and usable by both ends of the channel. The host (TSM, test tool) builds
one with ``host_from_init_update_response`` and calls :meth:`SecureChannelSession.wrap` /
:meth:`SecureChannelSession.unwrap_response`; the emulated card builds one with
``card_respond_init_update`` and calls ``card_external_authenticate`` /
``card_unwrap_command`` / ``card_wrap_response``. Both ends run the same key derivation,
cryptogram and MAC code, so a host session and a card session talk to each other in tests.

APDUs cross this API as raw ``bytes`` (ISO/IEC 7816-4 clause 5.1) and are parsed with
:class:`paylab.lab.protocol.apdu.CommandApdu`; a protected command keeps the length form (short or
extended) of the plain one, so a card hands back exactly what the host wrapped.
"""

from __future__ import annotations

import enum
import hmac
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import NoReturn

from ..apdu import EXTENDED_MAX_NC, SHORT_MAX_NC, CommandApdu
from ..errors import ApduError, SecureChannelError

#: Status words a card answers when secure messaging fails (GP Card Spec v2.3 clause 11.11.3.2,
#: 11.10.3.2): a wrong cryptogram or MAC, a command in the wrong state, a bad P1, a bad length.
SW_SECURITY_STATUS = 0x6982
SW_CONDITIONS_OF_USE = 0x6985
SW_INCORRECT_P1P2 = 0x6A86
SW_WRONG_LENGTH = 0x6700
SW_REFERENCED_DATA_NOT_FOUND = 0x6A88

#: CLA and INS of the commands that open a channel, the same in SCP02 and SCP03 (GP v2.3 Annex E.5,
#: Amendment D 7.1).
CLA_GP = 0x80
INS_INITIALIZE_UPDATE = 0x50
INS_EXTERNAL_AUTHENTICATE = 0x82


class SecurityLevel(enum.IntFlag):
    """P1 of EXTERNAL AUTHENTICATE (GP Card Spec v2.3 clause 11.12.2.1 / Table 11-91, Amendment D
    clause 7.1.2.1): the protection applied to every later command and response."""

    NONE = 0x00
    C_MAC = 0x01
    C_DECRYPTION = 0x02  # always together with C-MAC
    R_MAC = 0x10
    R_ENCRYPTION = 0x20  # SCP03 only, always together with C-DECRYPTION and R-MAC


class ChannelState(enum.Enum):
    """Life of one secure channel session (GP Card Spec v2.3 clause 10.2)."""

    AWAITING_EXTERNAL_AUTHENTICATE = "awaiting EXTERNAL AUTHENTICATE"
    OPEN = "open"
    CLOSED = "closed"


class Role(enum.Enum):
    """Which end of the channel a session object plays."""

    HOST = "host"
    CARD = "card"


def sm_indicator(cla: int) -> int:
    """The CLA bit that announces secure messaging (ISO/IEC 7816-4 clause 5.4.1, GP v2.3 11.1.4).

    First interindustry / proprietary class (b7 = 0): b3 (``04``); further interindustry class
    (b7 = 1, logical channels 4..19): b6 (``20``).
    """
    return 0x20 if cla & 0x40 else 0x04


def is_error_sw(sw: int) -> bool:
    """True unless ``sw`` is 9000 or a warning (62xx, 63xx) (Amendment D clause 6.2.4)."""
    return not (sw == 0x9000 or (sw >> 8) in (0x62, 0x63))


def lc_field(length: int, extended: bool) -> bytes:
    """An Lc field coding ``length`` in the short (1 byte) or extended (``00 HH LL``) form, as
    it enters the C-MAC input (GP v2.3 Annex E.4.4, Amendment D 6.2.4)."""
    if extended:
        if not 0 < length <= EXTENDED_MAX_NC:
            raise ApduError(f"extended Lc out of range: {length}", field="Lc")
        return b"\x00" + length.to_bytes(2, "big")
    if not 0 < length <= SHORT_MAX_NC:
        raise ApduError(f"short Lc out of range: {length} (use an extended APDU)", field="Lc")
    return bytes([length])


def rebuild(cmd: CommandApdu, cla: int, data: bytes) -> CommandApdu:
    """``cmd`` with a new CLA and data field, Le kept, and the length form (short or extended)
    kept: a short command whose protected data no longer fits raises :class:`ApduError`."""
    return CommandApdu(cla, cmd.ins, cmd.p1, cmd.p2, data, cmd.le, extended=cmd.is_extended)


def check_len(value: bytes, length: int, name: str) -> None:
    """:class:`SecureChannelError` (6700) unless ``value`` is ``length`` bytes long."""
    if len(value) != length:
        raise SecureChannelError(f"{name} must be {length} bytes, got {len(value)}", sw=SW_WRONG_LENGTH)


# --- INITIALIZE UPDATE (GP v2.3 Annex E.5.1, Amendment D 7.1.1) ------------------------------------

def initialize_update_command(kvn: int, host_challenge: bytes) -> bytes:
    """Host: the INITIALIZE UPDATE C-APDU ``80 50 KVN 00 08 hostCh 00``."""
    check_len(host_challenge, 8, "host challenge")
    return bytes([CLA_GP, INS_INITIALIZE_UPDATE, kvn, 0x00, 8]) + host_challenge + b"\x00"


def check_init_update_response(host_challenge: bytes, response_data: bytes, *, scp: int,
                               lengths: tuple[int, ...]) -> None:
    """Host: the host challenge is 8 bytes, the response data (without SW) has one of ``lengths``
    (else 6700) and names ``scp`` after ``div(10) KVN`` (else 6985)."""
    check_len(host_challenge, 8, "host challenge")
    if len(response_data) not in lengths:
        raise SecureChannelError(
            f"INITIALIZE UPDATE response must be {' or '.join(map(str, lengths))} bytes, got {len(response_data)}",
            sw=SW_WRONG_LENGTH)
    if response_data[11] != scp:
        raise SecureChannelError(f"card answered SCP{response_data[11]:02X}, expected SCP{scp:02X}",
                                 sw=SW_CONDITIONS_OF_USE)


def card_check_init_update(capdu: bytes, kvn: int, *, sequence_counter: bytes, sequence_counter_length: int,
                           key_diversification_data: bytes) -> bytes:
    """Card: parse INITIALIZE UPDATE and check it and the card's own inputs; returns the host challenge.

    6700 for a malformed APDU or a wrong length, 6985 for another command, 6A88 for a P1 that is
    neither 00 nor ``kvn``, 6A86 for a P2 other than 00.
    """
    try:
        cmd = CommandApdu.decode(capdu)
    except ApduError as exc:
        raise SecureChannelError(f"malformed INITIALIZE UPDATE: {exc}", sw=SW_WRONG_LENGTH) from exc
    if cmd.ins != INS_INITIALIZE_UPDATE or cmd.cla & 0xFC != CLA_GP:
        raise SecureChannelError("not an INITIALIZE UPDATE command", sw=SW_CONDITIONS_OF_USE)
    if cmd.p1 not in (0x00, kvn):
        raise SecureChannelError(f"key version 0x{cmd.p1:02X} not found", sw=SW_REFERENCED_DATA_NOT_FOUND)
    if cmd.p2 != 0x00:
        raise SecureChannelError(f"INITIALIZE UPDATE P2 0x{cmd.p2:02X} must be 00", sw=SW_INCORRECT_P1P2)
    check_len(cmd.data, 8, "host challenge")
    check_len(sequence_counter, sequence_counter_length, "sequence counter")
    check_len(key_diversification_data, 10, "key diversification data")
    return cmd.data


class SecureChannelSession(ABC):
    """Common state of an SCP02/SCP03 session: role, channel state, security level, ``i``.

    Subclasses implement the protocol; this class only guards the state machine. Any failure
    detected by the card side closes the session (GP Card Spec v2.3 clause 10.2.3: the card
    terminates the secure channel session on a secure messaging error).
    """

    scp: int = 0

    def __init__(self, role: Role, i: int, level: SecurityLevel) -> None:
        self._role = role
        self._i = i
        self._level = level
        self._state = ChannelState.AWAITING_EXTERNAL_AUTHENTICATE

    @property
    def role(self) -> Role:
        """Host or card side."""
        return self._role

    @property
    def i(self) -> int:
        """The SCP implementation option ``i`` (GP v2.3 Annex E.1.1 / Amendment D clause 5.1)."""
        return self._i

    @property
    def level(self) -> SecurityLevel:
        """The security level in force (set by EXTERNAL AUTHENTICATE)."""
        return self._level

    @property
    def state(self) -> ChannelState:
        """Where the session is in its life."""
        return self._state

    @property
    def is_open(self) -> bool:
        """True once EXTERNAL AUTHENTICATE succeeded and until the session is closed."""
        return self._state is ChannelState.OPEN

    def close(self) -> None:
        """Terminate the session; every later wrap/unwrap raises :class:`SecureChannelError`."""
        self._state = ChannelState.CLOSED

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(role={self._role.value}, i=0x{self._i:02X}, "
                f"level=0x{int(self._level):02X}, state={self._state.value!r})")

    # --- guards -------------------------------------------------------------------------------

    def _require(self, role: Role, state: ChannelState) -> None:
        if self._role is not role:
            raise SecureChannelError(f"{self._role.value}-side session used for a {role.value}-side step",
                                     sw=SW_CONDITIONS_OF_USE)
        if self._state is not state:
            raise SecureChannelError(f"secure channel is {self._state.value}, expected {state.value}",
                                     sw=SW_CONDITIONS_OF_USE)

    def _fail(self, message: str, sw: int = SW_SECURITY_STATUS) -> NoReturn:
        """Close the session and raise (what a card does on any secure messaging error)."""
        self.close()
        raise SecureChannelError(message, sw=sw)

    def _decode_protected(self, capdu: bytes) -> CommandApdu:
        """Card side: parse a command that must carry secure messaging (C-MAC)."""
        try:
            cmd = CommandApdu.decode(capdu)
        except ApduError as exc:
            self._fail(f"malformed protected command: {exc}", SW_WRONG_LENGTH)
        if not cmd.cla & sm_indicator(cmd.cla):
            self._fail(f"CLA {cmd.cla:02X} does not indicate secure messaging")
        if len(cmd.data) < 8:
            self._fail("protected command too short to hold a C-MAC", SW_WRONG_LENGTH)
        return cmd

    def _card_begin_external_authenticate(
        self, capdu: bytes, validate_level: Callable[[int, int], SecurityLevel],
    ) -> tuple[CommandApdu, SecurityLevel]:
        """Card: parse EXTERNAL AUTHENTICATE (``84 82 SL 00 10 ..``, C-MAC present) and check its
        level with the protocol's ``validate_level``; a bad command or level closes the session."""
        self._require(Role.CARD, ChannelState.AWAITING_EXTERNAL_AUTHENTICATE)
        cmd = self._decode_protected(capdu)
        if cmd.ins != INS_EXTERNAL_AUTHENTICATE or cmd.p2 != 0x00 or len(cmd.data) != 16:
            self._fail("not an EXTERNAL AUTHENTICATE command", SW_CONDITIONS_OF_USE)
        try:
            level = validate_level(cmd.p1, self._i)
        except SecureChannelError as exc:
            self._fail(str(exc), exc.sw)
        return cmd, level

    def _verify_card_cryptogram(self, expected: bytes, received: bytes) -> None:
        """Host: close the session and raise (6982) unless the card's cryptogram is ``expected``."""
        if not hmac.compare_digest(expected, received):
            self.close()
            raise SecureChannelError("card cryptogram mismatch (wrong keys or not the expected card)")

    @staticmethod
    def _decode_plain(capdu: bytes) -> CommandApdu:
        """Host side: parse a plain command about to be protected."""
        cmd = CommandApdu.decode(capdu)
        if cmd.cla & sm_indicator(cmd.cla):
            raise ApduError(f"CLA {cmd.cla:02X} already indicates secure messaging", offset=0,
                            field="CLA", expected="a plain command to wrap")
        return cmd

    # --- the protocol -------------------------------------------------------------------------

    @abstractmethod
    def external_authenticate(self) -> bytes:
        """Host: the EXTERNAL AUTHENTICATE C-APDU (host cryptogram + C-MAC); opens the session."""

    @abstractmethod
    def wrap(self, capdu: bytes) -> bytes:
        """Host: protect a plain C-APDU at the session's security level."""

    @abstractmethod
    def unwrap_response(self, rapdu: bytes) -> bytes:
        """Host: check/strip response protection of the last wrapped command's R-APDU."""

    @abstractmethod
    def card_external_authenticate(self, capdu: bytes) -> None:
        """Card: verify EXTERNAL AUTHENTICATE and open the session at its level."""

    @abstractmethod
    def card_unwrap_command(self, capdu: bytes) -> bytes:
        """Card: verify and strip command protection; returns the plain C-APDU."""

    @abstractmethod
    def card_wrap_response(self, rapdu: bytes) -> bytes:
        """Card: protect the R-APDU of the last unwrapped command."""
