"""GlobalPlatform SCP03 (GP Card Specification v2.3 Amendment D), host and card side.

* INITIALIZE UPDATE (7.1.1): ``80 50 KVN 00 08 hostCh 00`` ->
  ``div(10) KVN 03 i cardCh(8) cardCryptogram(8) [seq(3)]``; the sequence counter is present
  when ``i`` has the pseudo-random card challenge bit (``10``).
* KDF (4.1.5): NIST SP 800-108 KDF in counter mode with AES-CMAC as PRF, fixed input
  ``00*11 || constant || 00 || L (2 bytes, in bits) || counter (1 byte) || context`` with
  context = ``hostCh || cardCh``. Constants (Table 4-1): 00 card cryptogram, 01 host
  cryptogram, 02 card challenge, 04 S-ENC, 06 S-MAC, 07 S-RMAC. Session keys have the length of the
  static keys (AES-256 takes two PRF iterations); cryptograms are 8 bytes (L = 0040).
* C-MAC (6.2.4): first 8 bytes of ``AES-CMAC_S-MAC(chain || CLA' INS P1 P2 Lc' || data)``; the
  chain is the full 16-byte CMAC of the previous command, 16 zeros for EXTERNAL AUTHENTICATE.
* C-DECRYPTION (6.2.6): data padded ``80 00..`` to 16, AES-CBC with S-ENC and
  ICV = ``AES_S-ENC(counter as 16 bytes)``; encrypted *before* the C-MAC is computed. The counter
  starts at 0 after EXTERNAL AUTHENTICATE and is incremented for every command, including commands
  without data (domain brief section 3 [V]).
* R-MAC (6.2.5): first 8 bytes of ``AES-CMAC_S-RMAC(chain of the command || data || SW)``.
  Responses with an error status (not 9000/62xx/63xx) carry neither R-MAC nor data.
* R-ENCRYPTION (6.2.7): ICV = ``AES_S-ENC(80 || counter in 15 bytes)``; padded data, AES-CBC,
  done before the R-MAC.
* PUT KEY (7.2.2): new keys AES-CBC (ICV zero) encrypted with the *static* DEK; KCV = AES over
  16 bytes of ``01``.

``i`` (5.1): b1 (``01``) S16 mode is NOT implemented (8-byte challenges, cryptograms, MACs only);
``10`` pseudo-random card challenge, ``20`` R-MAC support, ``40`` R-ENCRYPTION support.
Vectors: real-card AES-128/192/256 traces at levels 03, 11, 33 from osmocom/pysim
``tests/unittests/test_globalplatform.py``, see ``lab/tests/test_scp03.py``.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from ..apdu import CommandApdu, ResponseApdu
from ..crypto import primitives
from ..errors import CryptoError, SecureChannelError
from .keys import StaticKeys, unwrap_key_component, wrap_key_component
from .session import (
    CLA_GP,
    INS_EXTERNAL_AUTHENTICATE,
    SW_CONDITIONS_OF_USE,
    SW_INCORRECT_P1P2,
    SW_WRONG_LENGTH,
    ChannelState,
    Role,
    SecureChannelSession,
    SecurityLevel,
    card_check_init_update,
    check_init_update_response,
    check_len,
    initialize_update_command,
    is_error_sw,
    lc_field,
    rebuild,
    sm_indicator,
)

SCP03 = 0x03

# Implementation option ``i`` bits (Amendment D clause 5.1).
I_S16_MODE = 0x01
I_PSEUDO_RANDOM_CHALLENGE = 0x10
I_RMAC_SUPPORT = 0x20
I_RENC_SUPPORT = 0x40
_I_KNOWN = I_PSEUDO_RANDOM_CHALLENGE | I_RMAC_SUPPORT | I_RENC_SUPPORT

#: Security levels of EXTERNAL AUTHENTICATE P1 (Amendment D clause 7.1.2.1, Table 7-5).
VALID_LEVELS = frozenset({0x00, 0x01, 0x03, 0x11, 0x13, 0x33})

# KDF derivation constants (Amendment D Table 4-1).
DERIVE_CARD_CRYPTOGRAM = 0x00
DERIVE_HOST_CRYPTOGRAM = 0x01
DERIVE_CARD_CHALLENGE = 0x02
DERIVE_S_ENC = 0x04
DERIVE_S_MAC = 0x06
DERIVE_S_RMAC = 0x07

_IU_RESPONSE_LENGTHS = (29, 32)  # without / with the sequence counter
_BLOCK = 16


@dataclass(frozen=True)
class Scp03SessionKeys:
    """S-ENC, S-MAC and S-RMAC (same length as the static keys)."""

    enc: bytes = field(repr=False)
    mac: bytes = field(repr=False)
    rmac: bytes = field(repr=False)


def _check_aes_key(key: bytes, name: str) -> None:
    if len(key) not in (16, 24, 32):
        raise CryptoError(f"SCP03 {name} key must be 16, 24 or 32 bytes (AES), got {len(key)}")


def kdf(key: bytes, constant: int, context: bytes, length_bits: int) -> bytes:
    """NIST SP 800-108 counter-mode KDF with AES-CMAC, as profiled by Amendment D clause 4.1.5.

    Each block is ``CMAC_key(00*11 || constant || 00 || L || i || context)`` with L on two bytes
    (bits) and the 1-byte counter i starting at 1; the output is truncated to ``length_bits``.
    """
    _check_aes_key(key, "KDF")
    if length_bits <= 0 or length_bits % 8 or not 0 <= constant <= 0xFF:
        raise CryptoError(f"bad KDF parameters: L={length_bits}, constant={constant}")
    label = bytes(11) + bytes([constant]) + b"\x00" + length_bits.to_bytes(2, "big")
    out = b""
    counter = 1
    while len(out) * 8 < length_bits:
        out += primitives.aes_cmac(key, label + bytes([counter]) + context)
        counter += 1
    return out[: length_bits // 8]


def derive_session_keys(keys: StaticKeys, host_challenge: bytes, card_challenge: bytes) -> Scp03SessionKeys:
    """S-ENC from the static ENC key, S-MAC and S-RMAC from the static MAC key (Amendment D 6.2.1)."""
    _check_aes_key(keys.enc, "static ENC")
    _check_aes_key(keys.mac, "static MAC")
    context = host_challenge + card_challenge
    return Scp03SessionKeys(
        enc=kdf(keys.enc, DERIVE_S_ENC, context, len(keys.enc) * 8),
        mac=kdf(keys.mac, DERIVE_S_MAC, context, len(keys.mac) * 8),
        rmac=kdf(keys.mac, DERIVE_S_RMAC, context, len(keys.mac) * 8),
    )


def card_cryptogram(s_mac: bytes, host_challenge: bytes, card_challenge: bytes) -> bytes:
    """Card cryptogram: KDF(S-MAC, 00, hostCh || cardCh, 64 bits) (Amendment D 6.2.2.2)."""
    return kdf(s_mac, DERIVE_CARD_CRYPTOGRAM, host_challenge + card_challenge, 64)


def host_cryptogram(s_mac: bytes, host_challenge: bytes, card_challenge: bytes) -> bytes:
    """Host cryptogram: KDF(S-MAC, 01, hostCh || cardCh, 64 bits) (Amendment D 6.2.2.3)."""
    return kdf(s_mac, DERIVE_HOST_CRYPTOGRAM, host_challenge + card_challenge, 64)


def pseudo_random_card_challenge(static_enc: bytes, sequence_counter: bytes, aid: bytes) -> bytes:
    """Pseudo-random card challenge: KDF(static ENC, 02, seq(3) || AID of the selected security
    domain, 64 bits) (Amendment D 6.2.2.1). Reproduces the pysim real-card traces (an eUICC, AID
    of the ISD-R ``A0000005591010FFFFFFFF8900000100``)."""
    check_len(sequence_counter, 3, "sequence counter")
    return kdf(static_enc, DERIVE_CARD_CHALLENGE, sequence_counter + aid, 64)


def _validate_i(i: int) -> None:
    if i & I_S16_MODE:
        raise SecureChannelError(f"SCP03 i=0x{i:02X}: S16 mode is not implemented", sw=SW_INCORRECT_P1P2)
    if not 0 <= i <= 0xFF or i & ~_I_KNOWN or (i & I_RENC_SUPPORT and not i & I_RMAC_SUPPORT):
        raise SecureChannelError(f"unsupported SCP03 i=0x{i:02X}", sw=SW_INCORRECT_P1P2)


def validate_level(level: int, i: int = I_RMAC_SUPPORT | I_RENC_SUPPORT) -> SecurityLevel:
    """Check an SCP03 security level (00, 01, 03, 11, 13, 33) against the card's option ``i``."""
    _validate_i(i)
    if level not in VALID_LEVELS:
        raise SecureChannelError(f"invalid SCP03 security level 0x{level:02X}", sw=SW_INCORRECT_P1P2)
    if level & SecurityLevel.R_MAC and not i & I_RMAC_SUPPORT:
        raise SecureChannelError(f"security level 0x{level:02X} needs R-MAC, card i=0x{i:02X} lacks it",
                                 sw=SW_INCORRECT_P1P2)
    if level & SecurityLevel.R_ENCRYPTION and not i & I_RENC_SUPPORT:
        raise SecureChannelError(f"security level 0x{level:02X} needs R-ENCRYPTION, card i=0x{i:02X} "
                                 "lacks it", sw=SW_INCORRECT_P1P2)
    return SecurityLevel(level)


# --- PUT KEY helpers (Amendment D 7.2.2; GP v2.3 Tables 11-70/11-71) --------------------------

def encrypt_key_for_put_key(static_dek: bytes, key: bytes, *, kcv: bytes | None = None
                            ) -> tuple[bytes, bytes]:
    """DEK-wrap a new key for PUT KEY: ``(key component block, KCV)``.

    AES-CBC with ICV zero under the *static* DEK (Amendment D 7.2.2). A key that is not a
    multiple of 16 bytes (AES-192) is zero-padded with its clear length in front (Table 11-70).
    ``kcv`` defaults to the GP AES KCV (AES over 16 bytes of 01, first 3 bytes), right for key
    type ``88``.
    """
    _check_aes_key(static_dek, "static DEK")
    kcb = wrap_key_component("aes", static_dek, key, bytes(_BLOCK))
    return kcb, (primitives.kcv_gp_aes(key) if kcv is None else kcv)


def decrypt_key_from_put_key(static_dek: bytes, key_component_block: bytes, *,
                             kcv: bytes | None = None) -> bytes:
    """Inverse of :func:`encrypt_key_for_put_key`; checks the AES KCV when ``kcv`` is given
    (:class:`CryptoError` on mismatch, which a card answers with 6A80)."""
    _check_aes_key(static_dek, "static DEK")
    key = unwrap_key_component("aes", static_dek, key_component_block, bytes(_BLOCK))
    if kcv is not None:
        if len(key) not in (16, 24, 32):
            raise CryptoError(f"decrypted key of {len(key)} bytes is no AES key")
        if not hmac.compare_digest(primitives.kcv_gp_aes(key)[: len(kcv)], kcv):
            raise CryptoError("key check value does not match the decrypted key")
    return key


# --- the session ----------------------------------------------------------------------------------

class Scp03Session(SecureChannelSession):
    """One SCP03 secure channel session, host or card side (GP Amendment D)."""

    scp = SCP03

    def __init__(self, role: Role, keys: StaticKeys, *, i: int, level: SecurityLevel, kvn: int,
                 host_challenge: bytes, card_challenge: bytes, sequence_counter: bytes | None,
                 key_diversification_data: bytes) -> None:
        """Use the ``host_*`` / ``card_*`` class methods; this is their common constructor."""
        super().__init__(role, i, level)
        _validate_i(i)
        if not len(keys.enc) == len(keys.mac) == len(keys.dek):
            raise CryptoError("SCP03 static ENC, MAC and DEK keys must have the same length")
        self._static = keys
        self.kvn = kvn
        self.host_challenge = host_challenge
        self.card_challenge = card_challenge
        self.sequence_counter = sequence_counter
        self.key_diversification_data = key_diversification_data
        self.session_keys = derive_session_keys(keys, host_challenge, card_challenge)
        self._chain = bytes(_BLOCK)
        self._counter = 0

    @property
    def encryption_counter(self) -> int:
        """Commands protected (host) or unwrapped (card) since EXTERNAL AUTHENTICATE."""
        return self._counter

    # --- host side ----------------------------------------------------------------------------

    @classmethod
    def host_initialize_update(cls, keys: StaticKeys, host_challenge: bytes, *,
                               kvn: int | None = None) -> bytes:
        """The INITIALIZE UPDATE C-APDU ``80 50 KVN 00 08 hostCh 00`` (Amendment D 7.1.1)."""
        return initialize_update_command(keys.kvn if kvn is None else kvn, host_challenge)

    @classmethod
    def host_from_init_update_response(cls, keys: StaticKeys, host_challenge: bytes,
                                       response_data: bytes, level: int = 0x01, *,
                                       expected_i: int | None = None,
                                       aid: bytes | None = None) -> Scp03Session:
        """Parse the INITIALIZE UPDATE response data (without SW), derive the session keys and
        verify the card cryptogram (:class:`SecureChannelError` on mismatch, Amendment D 7.1.1.3).

        ``i`` comes from the card's response; ``expected_i`` optionally pins it. With ``aid`` (the
        selected security domain) a pseudo-random card challenge is checked too (6.2.2.1).
        """
        check_init_update_response(host_challenge, response_data, scp=SCP03, lengths=_IU_RESPONSE_LENGTHS)
        div, kvn, i = response_data[:10], response_data[10], response_data[12]
        card_ch, card_crypto = response_data[13:21], response_data[21:29]
        seq = bytes(response_data[29:32]) or None
        if expected_i is not None and i != expected_i:
            raise SecureChannelError(f"card uses i=0x{i:02X}, expected 0x{expected_i:02X}",
                                     sw=SW_CONDITIONS_OF_USE)
        if i & I_PSEUDO_RANDOM_CHALLENGE and seq is None:
            raise SecureChannelError("pseudo-random card challenge without sequence counter",
                                     sw=SW_WRONG_LENGTH)
        if aid is not None and seq is not None and \
                not hmac.compare_digest(pseudo_random_card_challenge(keys.enc, seq, aid), card_ch):
            raise SecureChannelError("card challenge is not the pseudo-random one of this AID and counter")
        session = cls(Role.HOST, keys, i=i, level=validate_level(level, i), kvn=kvn,
                      host_challenge=bytes(host_challenge), card_challenge=bytes(card_ch),
                      sequence_counter=seq, key_diversification_data=bytes(div))
        session._verify_card_cryptogram(card_cryptogram(session.session_keys.mac, host_challenge, card_ch),
                                        card_crypto)
        return session

    def external_authenticate(self) -> bytes:
        """EXTERNAL AUTHENTICATE ``84 82 SL 00 10 hostCryptogram C-MAC`` (Amendment D 7.1.2),
        C-MAC chained from 16 zero bytes. The host considers the session open from here."""
        self._require(Role.HOST, ChannelState.AWAITING_EXTERNAL_AUTHENTICATE)
        cryptogram = host_cryptogram(self.session_keys.mac, self.host_challenge, self.card_challenge)
        cla = CLA_GP | sm_indicator(CLA_GP)
        wrapped = CommandApdu(cla, INS_EXTERNAL_AUTHENTICATE, int(self._level), 0x00, cryptogram)
        wrapped = self._append_cmac(wrapped)
        self._state = ChannelState.OPEN
        return wrapped.encode()

    def wrap(self, capdu: bytes) -> bytes:
        """Apply C-DECRYPTION then C-MAC to a plain C-APDU (Amendment D 6.2.4, 6.2.6).

        The encryption counter advances on every command (also without data, also at level 00).
        Level 00 returns the command unchanged. Le is carried over but not MAC-protected.
        """
        self._require(Role.HOST, ChannelState.OPEN)
        self._counter += 1
        if not self._level & SecurityLevel.C_MAC:
            return bytes(capdu)
        cmd = self._decode_plain(capdu)
        data = cmd.data
        if self._level & SecurityLevel.C_DECRYPTION and data:
            data = primitives.cbc_encrypt("aes", self.session_keys.enc,
                                          primitives.pad_iso9797_m2(data, _BLOCK), self._command_icv())
        protected = rebuild(cmd, cmd.cla | sm_indicator(cmd.cla), data)
        return self._append_cmac(protected).encode()

    def unwrap_response(self, rapdu: bytes) -> bytes:
        """Check the R-MAC and undo R-ENCRYPTION of the last wrapped command's response
        (Amendment D 6.2.5, 6.2.7); :class:`SecureChannelError` (session closed) on a bad R-MAC.
        An error status without data comes unprotected and is returned as is."""
        self._require(Role.HOST, ChannelState.OPEN)
        response = ResponseApdu.decode(rapdu)
        data, sw = response.data, bytes([response.sw1, response.sw2])
        if not self._level & SecurityLevel.R_MAC:
            return bytes(rapdu)
        if is_error_sw(int.from_bytes(sw, "big")) and not data:
            return bytes(rapdu)
        if len(data) < 8:
            self._fail("response too short to hold an R-MAC")
        body, rmac = data[:-8], data[-8:]
        if not hmac.compare_digest(self._rmac(body, sw), rmac):
            self._fail("R-MAC mismatch")
        if self._level & SecurityLevel.R_ENCRYPTION and body:
            try:
                body = primitives.unpad_iso9797_m2(
                    primitives.cbc_decrypt("aes", self.session_keys.enc, body, self._response_icv()))
            except CryptoError as exc:
                self._fail(f"R-ENCRYPTION: {exc}")
        return body + sw

    # --- card side ----------------------------------------------------------------------------

    @classmethod
    def card_respond_init_update(
        cls, keys: StaticKeys, capdu: bytes, *, sequence_counter: bytes,
        card_challenge: bytes | None = None, key_diversification_data: bytes = bytes(10),
        i: int = I_RMAC_SUPPORT | I_RENC_SUPPORT, aid: bytes | None = None,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> tuple[Scp03Session, bytes]:
        """Answer INITIALIZE UPDATE: ``(session, response data without SW)`` (Amendment D 7.1.1).

        P1 must be 00 or the key set's KVN (else 6A88). The card challenge is ``card_challenge``;
        else, with ``i`` b5 (pseudo-random), derived from ``sequence_counter`` and ``aid``; else
        8 bytes of ``random_bytes``. The sequence counter is sent only in pseudo-random mode.
        """
        host_ch = card_check_init_update(capdu, keys.kvn, sequence_counter=sequence_counter,
                                         sequence_counter_length=3,
                                         key_diversification_data=key_diversification_data)
        _validate_i(i)
        if card_challenge is not None:
            card_ch = bytes(card_challenge)
        elif i & I_PSEUDO_RANDOM_CHALLENGE:
            if aid is None:
                raise SecureChannelError("pseudo-random card challenge needs the security domain AID",
                                         sw=SW_CONDITIONS_OF_USE)
            card_ch = pseudo_random_card_challenge(keys.enc, sequence_counter, aid)
        else:
            card_ch = random_bytes(8)
        check_len(card_ch, 8, "card challenge")
        seq = bytes(sequence_counter) if i & I_PSEUDO_RANDOM_CHALLENGE else None
        session = cls(Role.CARD, keys, i=i, level=SecurityLevel.NONE, kvn=keys.kvn,
                      host_challenge=host_ch, card_challenge=card_ch, sequence_counter=seq,
                      key_diversification_data=bytes(key_diversification_data))
        cryptogram = card_cryptogram(session.session_keys.mac, host_ch, card_ch)
        response = (bytes(key_diversification_data) + bytes([keys.kvn, SCP03, i]) + card_ch + cryptogram
                    + (seq or b""))
        return session, response

    def card_external_authenticate(self, capdu: bytes) -> None:
        """Verify EXTERNAL AUTHENTICATE (host cryptogram, C-MAC from a zero chain) and open the
        session at P1's level. On failure the session closes: 6982 for a bad cryptogram/MAC,
        6A86 for an invalid level (Amendment D 7.1.2.3)."""
        cmd, level = self._card_begin_external_authenticate(capdu, validate_level)
        expected = host_cryptogram(self.session_keys.mac, self.host_challenge, self.card_challenge)
        if not hmac.compare_digest(expected, cmd.data[:8]):
            self._fail("host cryptogram mismatch")
        self._verify_cmac(cmd)
        self._level = level
        self._state = ChannelState.OPEN

    def card_unwrap_command(self, capdu: bytes) -> bytes:
        """Verify the C-MAC, then decrypt: returns the plain C-APDU. Any failure closes the
        session and raises :class:`SecureChannelError` (6982; 6700 for a malformed APDU)."""
        self._require(Role.CARD, ChannelState.OPEN)
        self._counter += 1
        if not self._level & SecurityLevel.C_MAC:
            return bytes(capdu)
        cmd = self._decode_protected(capdu)
        body = self._verify_cmac(cmd)
        if self._level & SecurityLevel.C_DECRYPTION and body:
            try:
                body = primitives.unpad_iso9797_m2(
                    primitives.cbc_decrypt("aes", self.session_keys.enc, body, self._command_icv()))
            except CryptoError as exc:
                self._fail(f"C-DECRYPTION failed: {exc}")
        return rebuild(cmd, cmd.cla & ~sm_indicator(cmd.cla), body).encode()

    def card_wrap_response(self, rapdu: bytes) -> bytes:
        """R-ENCRYPTION then R-MAC per level (Amendment D 6.2.5, 6.2.7). An error status word
        (not 9000/62xx/63xx) goes out alone, without data and R-MAC."""
        self._require(Role.CARD, ChannelState.OPEN)
        response = ResponseApdu.decode(rapdu)
        data, sw = response.data, bytes([response.sw1, response.sw2])
        if not self._level & SecurityLevel.R_MAC:
            return bytes(rapdu)
        if is_error_sw(int.from_bytes(sw, "big")):
            return sw
        if self._level & SecurityLevel.R_ENCRYPTION and data:
            data = primitives.cbc_encrypt("aes", self.session_keys.enc,
                                          primitives.pad_iso9797_m2(data, _BLOCK), self._response_icv())
        return data + self._rmac(data, sw) + sw

    # --- PUT KEY ------------------------------------------------------------------------------

    def encrypt_key_for_put_key(self, key: bytes, *, kcv: bytes | None = None) -> tuple[bytes, bytes]:
        """:func:`encrypt_key_for_put_key` with the static DEK of this session's key set."""
        return encrypt_key_for_put_key(self._static.dek, key, kcv=kcv)

    def decrypt_key_from_put_key(self, key_component_block: bytes, *, kcv: bytes | None = None) -> bytes:
        """:func:`decrypt_key_from_put_key` with the static DEK of this session's key set."""
        return decrypt_key_from_put_key(self._static.dek, key_component_block, kcv=kcv)

    # --- MAC / ICV machinery ------------------------------------------------------------------

    def _command_icv(self) -> bytes:
        return primitives.aes_encrypt(self.session_keys.enc, self._counter.to_bytes(_BLOCK, "big"))

    def _response_icv(self) -> bytes:
        block = b"\x80" + self._counter.to_bytes(_BLOCK - 1, "big")
        return primitives.aes_encrypt(self.session_keys.enc, block)

    def _full_cmac(self, protected: CommandApdu, body: bytes) -> bytes:
        header = bytes([protected.cla, protected.ins, protected.p1, protected.p2])
        return primitives.aes_cmac(self.session_keys.mac,
                                   self._chain + header + lc_field(len(body) + 8, protected.is_extended) + body)

    def _append_cmac(self, protected: CommandApdu) -> CommandApdu:
        full = self._full_cmac(protected, protected.data)
        self._chain = full
        return rebuild(protected, protected.cla, protected.data + full[:8])

    def _verify_cmac(self, cmd: CommandApdu) -> bytes:
        body, mac = cmd.data[:-8], cmd.data[-8:]
        full = self._full_cmac(cmd, body)
        if not hmac.compare_digest(full[:8], mac):
            self._fail("C-MAC mismatch")
        self._chain = full
        return body

    def _rmac(self, data: bytes, sw: bytes) -> bytes:
        return primitives.aes_cmac(self.session_keys.rmac, self._chain + data + sw)[:8]
