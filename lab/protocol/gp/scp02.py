"""GlobalPlatform SCP02 (GP Card Specification v2.3 Annex E), host and card side.

* INITIALIZE UPDATE (E.5.1): ``80 50 KVN 00 08 hostCh 00`` ->
  ``div(10) KVN 02 seq(2) cardCh(6) cardCryptogram(8)``.
* Session keys (E.4.1): ``3DES-CBC_K(const(2) || seq(2) || 00*12)``, IV 0, with
  const ENC ``0182``, C-MAC ``0101``, R-MAC ``0102``, DEK ``0181``.
* Cryptograms (E.4.2): full 3DES CBC-MAC (ISO/IEC 9797-1 MAC algorithm 1, padding method 2,
  IV 0) with S-ENC, card over ``hostCh || seq || cardCh``, host over ``seq || cardCh || hostCh``.
* C-MAC (E.4.4): ISO/IEC 9797-1 MAC algorithm 3 (retail MAC) with S-MAC, padding method 2, over
  the modified header (CLA with the SM bit, Lc + 8) and the *plain* data. The ICV is zero for
  EXTERNAL AUTHENTICATE and then the previous C-MAC, single-DES encrypted with the left half of
  S-MAC when ``i`` has "ICV encryption for C-MAC session" (b5, ``10``).
* C-DECRYPTION (E.4.6): after the C-MAC, the data is padded ``80 00..`` and 3DES-CBC encrypted
  with S-ENC, IV 0; Lc covers the cryptogram and the C-MAC. Commands without data stay clear.
* Sensitive data (E.4.7, B.1.1.2): keys in PUT KEY are 3DES-ECB encrypted with the session DEK.

Supported ``i`` (E.1.1): b1 = 1 (three secure channel keys), b3 = 1 (explicit initiation),
b4 = 0 (ICV zero); b2 (C-MAC on the unmodified APDU), b5 (ICV encryption), b7 (well-known
pseudo-random card challenge: only a flag here, the card challenge is always given or random) are
honoured. R-MAC (b6, security levels 10/11/13, E.4.5) is NOT implemented: asking for it raises
:class:`SecureChannelError`. Vectors: osmocom/pysim ``tests/unittests/test_globalplatform.py``
(real card, ``i`` = 55, level 01), see ``lab/tests/test_scp02.py``.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from ..apdu import CommandApdu, ResponseApdu
from ..crypto import primitives
from ..crypto.mac import iso9797_mac_alg1, iso9797_mac_alg3
from ..errors import CryptoError, SecureChannelError
from .keys import StaticKeys, unwrap_key_component, wrap_key_component
from .session import (
    CLA_GP,
    INS_EXTERNAL_AUTHENTICATE,
    SW_INCORRECT_P1P2,
    ChannelState,
    Role,
    SecureChannelSession,
    SecurityLevel,
    card_check_init_update,
    check_init_update_response,
    check_len,
    initialize_update_command,
    lc_field,
    rebuild,
    sm_indicator,
)

SCP02 = 0x02

# Implementation option ``i`` bits (GP v2.3 Annex E.1.1).
I_THREE_KEYS = 0x01
I_CMAC_ON_UNMODIFIED_APDU = 0x02
I_EXPLICIT_INITIATION = 0x04
I_ICV_MAC_OVER_AID = 0x08
I_ICV_ENCRYPTION = 0x10
I_RMAC_SUPPORT = 0x20
I_PSEUDO_RANDOM_CHALLENGE = 0x40

#: The usual option of SCP02 cards: 3 keys, explicit initiation, ICV encryption, pseudo-random
#: card challenge. ``15`` is the same without the pseudo-random card challenge.
DEFAULT_I = 0x55

#: Security levels implemented for SCP02 (Annex E.5.2.3 minus the R-MAC ones).
VALID_LEVELS = frozenset({0x00, 0x01, 0x03})
_RMAC_LEVELS = frozenset({0x10, 0x11, 0x13})

# Session key derivation constants (E.4.1).
CONST_C_MAC = b"\x01\x01"
CONST_R_MAC = b"\x01\x02"
CONST_DEK = b"\x01\x81"
CONST_ENC = b"\x01\x82"

_IU_RESPONSE_LENGTH = 28


@dataclass(frozen=True)
class Scp02SessionKeys:
    """The four SCP02 session keys (16 bytes each)."""

    enc: bytes = field(repr=False)
    c_mac: bytes = field(repr=False)
    r_mac: bytes = field(repr=False)
    dek: bytes = field(repr=False)


def _check_scp02_key(key: bytes, name: str) -> None:
    if len(key) != 16:
        raise CryptoError(f"SCP02 {name} key must be a 16-byte double-length 3DES key, got {len(key)}")


def derive_session_key(static_key: bytes, constant: bytes, sequence_counter: bytes) -> bytes:
    """One session key: ``3DES-CBC_K(constant || seq || 00*12)``, IV 0 (GP v2.3 Annex E.4.1)."""
    _check_scp02_key(static_key, "static")
    check_len(constant, 2, "derivation constant")
    check_len(sequence_counter, 2, "sequence counter")
    return primitives.cbc_encrypt("3des", static_key, constant + sequence_counter + bytes(12))


def derive_session_keys(keys: StaticKeys, sequence_counter: bytes) -> Scp02SessionKeys:
    """S-ENC, C-MAC, R-MAC and DEK session keys for ``sequence_counter`` (Annex E.4.1)."""
    return Scp02SessionKeys(
        enc=derive_session_key(keys.enc, CONST_ENC, sequence_counter),
        c_mac=derive_session_key(keys.mac, CONST_C_MAC, sequence_counter),
        r_mac=derive_session_key(keys.mac, CONST_R_MAC, sequence_counter),
        dek=derive_session_key(keys.dek, CONST_DEK, sequence_counter),
    )


def card_cryptogram(s_enc: bytes, host_challenge: bytes, sequence_counter: bytes,
                    card_challenge: bytes) -> bytes:
    """Card cryptogram: 3DES CBC-MAC with S-ENC over ``hostCh || seq || cardCh`` (Annex E.4.2.1)."""
    return iso9797_mac_alg1(s_enc, host_challenge + sequence_counter + card_challenge,
                            padding="m2", cipher="3des")


def host_cryptogram(s_enc: bytes, host_challenge: bytes, sequence_counter: bytes,
                    card_challenge: bytes) -> bytes:
    """Host cryptogram: 3DES CBC-MAC with S-ENC over ``seq || cardCh || hostCh`` (Annex E.4.2.2)."""
    return iso9797_mac_alg1(s_enc, sequence_counter + card_challenge + host_challenge,
                            padding="m2", cipher="3des")


def _validate_i(i: int) -> None:
    required = I_THREE_KEYS | I_EXPLICIT_INITIATION
    if not 0 <= i <= 0x7F or i & required != required or i & I_ICV_MAC_OVER_AID:
        raise SecureChannelError(
            f"SCP02 i=0x{i:02X} not supported (need 3 keys, explicit initiation, ICV zero)",
            sw=SW_INCORRECT_P1P2)


def validate_level(level: int, i: int = DEFAULT_I) -> SecurityLevel:
    """Check an SCP02 security level (EXTERNAL AUTHENTICATE P1, Annex E.5.2.3) for option ``i``."""
    if level in _RMAC_LEVELS:
        raise SecureChannelError(f"SCP02 security level 0x{level:02X}: R-MAC is not implemented",
                                 sw=SW_INCORRECT_P1P2)
    if level not in VALID_LEVELS:
        raise SecureChannelError(f"invalid SCP02 security level 0x{level:02X}", sw=SW_INCORRECT_P1P2)
    _validate_i(i)
    return SecurityLevel(level)


# --- PUT KEY helpers (GP v2.3 clause 11.8.2.3, Tables 11-70/11-71; Annex E.4.7) ------------------

def encrypt_key_for_put_key(session_dek: bytes, key: bytes, *, kcv: bytes | None = None
                            ) -> tuple[bytes, bytes]:
    """DEK-wrap a new key for PUT KEY: ``(key component block, KCV)``.

    The key is 3DES-ECB encrypted with the SCP02 *session* DEK (Annex E.4.7). A key whose length
    is not a multiple of 8 is right-padded with zeros and its clear length is prefixed (Table
    11-70); otherwise the block is the bare cryptogram (Table 11-71). ``kcv`` defaults to the DES
    KCV (3DES over 8 zero bytes, first 3 bytes, clause 11.8.2.3.2), right for key type ``80``.
    """
    _check_scp02_key(session_dek, "session DEK")
    return wrap_key_component("3des", session_dek, key), (primitives.kcv(key, "3des") if kcv is None else kcv)


def decrypt_key_from_put_key(session_dek: bytes, key_component_block: bytes, *,
                             kcv: bytes | None = None) -> bytes:
    """Inverse of :func:`encrypt_key_for_put_key`; checks the DES KCV when ``kcv`` is given
    (:class:`CryptoError` on mismatch, which a card answers with 6A80)."""
    _check_scp02_key(session_dek, "session DEK")
    key = unwrap_key_component("3des", session_dek, key_component_block)
    if kcv is not None and not hmac.compare_digest(primitives.kcv(key, "3des")[: len(kcv)], kcv):
        raise CryptoError("key check value does not match the decrypted key")
    return key


# --- the session ----------------------------------------------------------------------------------

class Scp02Session(SecureChannelSession):
    """One SCP02 secure channel session, host or card side (GP v2.3 Annex E)."""

    scp = SCP02

    def __init__(self, role: Role, keys: StaticKeys, *, i: int, level: SecurityLevel, kvn: int,
                 host_challenge: bytes, sequence_counter: bytes, card_challenge: bytes,
                 key_diversification_data: bytes) -> None:
        """Use the ``host_*`` / ``card_*`` class methods; this is their common constructor."""
        super().__init__(role, i, level)
        _validate_i(i)
        for name in ("enc", "mac", "dek"):
            _check_scp02_key(getattr(keys, name), f"static {name.upper()}")
        self._static = keys
        self.kvn = kvn
        self.host_challenge = host_challenge
        self.sequence_counter = sequence_counter
        self.card_challenge = card_challenge
        self.key_diversification_data = key_diversification_data
        self.session_keys = derive_session_keys(keys, sequence_counter)
        self._last_cmac: bytes | None = None

    # --- host side ----------------------------------------------------------------------------

    @classmethod
    def host_initialize_update(cls, keys: StaticKeys, host_challenge: bytes, *,
                               kvn: int | None = None) -> bytes:
        """The INITIALIZE UPDATE C-APDU ``80 50 KVN 00 08 hostCh 00`` (Annex E.5.1)."""
        return initialize_update_command(keys.kvn if kvn is None else kvn, host_challenge)

    @classmethod
    def host_from_init_update_response(cls, keys: StaticKeys, host_challenge: bytes,
                                       response_data: bytes, level: int = 0x01, *,
                                       i: int = DEFAULT_I) -> Scp02Session:
        """Parse the INITIALIZE UPDATE response data (without SW), derive the session keys and
        verify the card cryptogram (:class:`SecureChannelError` on mismatch, Annex E.5.1.3).

        ``i`` is not sent by the card in SCP02: the host must know the card's option.
        The card may answer with another KVN than requested (P1 00, or card-specific mapping);
        the KVN it reports is kept in ``kvn``.
        """
        check_init_update_response(host_challenge, response_data, scp=SCP02, lengths=(_IU_RESPONSE_LENGTH,))
        div, kvn = response_data[:10], response_data[10]
        seq, card_ch, card_crypto = response_data[12:14], response_data[14:20], response_data[20:28]
        session = cls(Role.HOST, keys, i=i, level=validate_level(level, i), kvn=kvn,
                      host_challenge=bytes(host_challenge), sequence_counter=bytes(seq),
                      card_challenge=bytes(card_ch), key_diversification_data=bytes(div))
        session._verify_card_cryptogram(card_cryptogram(session.session_keys.enc, host_challenge, seq, card_ch),
                                        card_crypto)
        return session

    def external_authenticate(self) -> bytes:
        """EXTERNAL AUTHENTICATE ``84 82 SL 00 10 hostCryptogram C-MAC`` (Annex E.5.2), C-MAC
        with a zero ICV. The host considers the session open from here."""
        self._require(Role.HOST, ChannelState.AWAITING_EXTERNAL_AUTHENTICATE)
        cryptogram = host_cryptogram(self.session_keys.enc, self.host_challenge,
                                     self.sequence_counter, self.card_challenge)
        plain = CommandApdu(CLA_GP, INS_EXTERNAL_AUTHENTICATE, int(self._level), 0x00, cryptogram)
        wrapped, mac = self._protect(plain, encrypt=False)
        self._last_cmac = mac
        self._state = ChannelState.OPEN
        return wrapped.encode()

    def wrap(self, capdu: bytes) -> bytes:
        """Apply C-MAC (and C-DECRYPTION) to a plain C-APDU (Annex E.4.4, E.4.6).

        Level 00 returns the command unchanged. Le is carried over but not MAC-protected.
        """
        self._require(Role.HOST, ChannelState.OPEN)
        if not self._level & SecurityLevel.C_MAC:
            return bytes(capdu)
        cmd = self._decode_plain(capdu)
        wrapped, mac = self._protect(cmd, encrypt=bool(self._level & SecurityLevel.C_DECRYPTION))
        encoded = wrapped.encode()
        self._last_cmac = mac
        return encoded

    def unwrap_response(self, rapdu: bytes) -> bytes:
        """No response protection without R-MAC (not implemented): the R-APDU is returned as is."""
        self._require(Role.HOST, ChannelState.OPEN)
        ResponseApdu.decode(rapdu)
        return bytes(rapdu)

    # --- card side ----------------------------------------------------------------------------

    @classmethod
    def card_respond_init_update(
        cls, keys: StaticKeys, capdu: bytes, *, sequence_counter: bytes,
        card_challenge: bytes | None = None, key_diversification_data: bytes = bytes(10),
        i: int = DEFAULT_I, random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> tuple[Scp02Session, bytes]:
        """Answer INITIALIZE UPDATE: ``(session, response data without SW)`` (Annex E.5.1).

        P1 must be 00 or the key set's KVN (else 6A88). The card challenge is ``card_challenge``
        or 6 bytes from ``random_bytes``; the card increments ``sequence_counter`` after a
        successful EXTERNAL AUTHENTICATE, outside this pure code.
        """
        host_ch = card_check_init_update(capdu, keys.kvn, sequence_counter=sequence_counter,
                                         sequence_counter_length=2,
                                         key_diversification_data=key_diversification_data)
        card_ch = random_bytes(6) if card_challenge is None else card_challenge
        check_len(card_ch, 6, "card challenge")
        session = cls(Role.CARD, keys, i=i, level=SecurityLevel.NONE, kvn=keys.kvn,
                      host_challenge=host_ch, sequence_counter=bytes(sequence_counter),
                      card_challenge=bytes(card_ch),
                      key_diversification_data=bytes(key_diversification_data))
        cryptogram = card_cryptogram(session.session_keys.enc, host_ch, sequence_counter, card_ch)
        response = (bytes(key_diversification_data) + bytes([keys.kvn, SCP02]) + bytes(sequence_counter)
                    + bytes(card_ch) + cryptogram)
        return session, response

    def card_external_authenticate(self, capdu: bytes) -> None:
        """Verify EXTERNAL AUTHENTICATE (host cryptogram and C-MAC, zero ICV) and open the
        session at P1's level. On failure the session closes: 6982 for a bad cryptogram/MAC,
        6A86 for an unsupported level (Annex E.5.2.4)."""
        cmd, level = self._card_begin_external_authenticate(capdu, validate_level)
        expected = host_cryptogram(self.session_keys.enc, self.host_challenge,
                                   self.sequence_counter, self.card_challenge)
        if not hmac.compare_digest(expected, cmd.data[:8]):
            self._fail("host cryptogram mismatch")
        plain = rebuild(cmd, cmd.cla & ~sm_indicator(cmd.cla), cmd.data[:8])
        if not hmac.compare_digest(self._cmac(plain), cmd.data[8:]):
            self._fail("C-MAC of EXTERNAL AUTHENTICATE mismatch")
        self._level = level
        self._last_cmac = cmd.data[8:]
        self._state = ChannelState.OPEN

    def card_unwrap_command(self, capdu: bytes) -> bytes:
        """Verify the C-MAC (after decrypting when C-DECRYPTION is on) and return the plain
        C-APDU. Any failure closes the session and raises :class:`SecureChannelError` (6982)."""
        self._require(Role.CARD, ChannelState.OPEN)
        if not self._level & SecurityLevel.C_MAC:
            return bytes(capdu)
        cmd = self._decode_protected(capdu)
        body, mac = cmd.data[:-8], cmd.data[-8:]
        if self._level & SecurityLevel.C_DECRYPTION and body:
            try:
                body = primitives.unpad_iso9797_m2(
                    primitives.cbc_decrypt("3des", self.session_keys.enc, body))
            except CryptoError as exc:
                self._fail(f"C-DECRYPTION failed: {exc}")
        plain = rebuild(cmd, cmd.cla & ~sm_indicator(cmd.cla), body)
        if not hmac.compare_digest(self._cmac(plain), mac):
            self._fail("C-MAC mismatch")
        self._last_cmac = mac
        return plain.encode()

    def card_wrap_response(self, rapdu: bytes) -> bytes:
        """Without R-MAC (not implemented) the response goes out unchanged."""
        self._require(Role.CARD, ChannelState.OPEN)
        ResponseApdu.decode(rapdu)
        return bytes(rapdu)

    # --- PUT KEY ------------------------------------------------------------------------------

    def encrypt_key_for_put_key(self, key: bytes, *, kcv: bytes | None = None) -> tuple[bytes, bytes]:
        """:func:`encrypt_key_for_put_key` with this session's DEK."""
        return encrypt_key_for_put_key(self.session_keys.dek, key, kcv=kcv)

    def decrypt_key_from_put_key(self, key_component_block: bytes, *, kcv: bytes | None = None) -> bytes:
        """:func:`decrypt_key_from_put_key` with this session's DEK."""
        return decrypt_key_from_put_key(self.session_keys.dek, key_component_block, kcv=kcv)

    # --- C-MAC machinery (Annex E.4.4) --------------------------------------------------------

    def _icv(self) -> bytes:
        """Zero for EXTERNAL AUTHENTICATE, then the previous C-MAC (DES-encrypted under the left
        half of S-MAC when ``i`` has ICV encryption, Annex E.3.4)."""
        if self._last_cmac is None:
            return bytes(8)
        if self._i & I_ICV_ENCRYPTION:
            return primitives.des_encrypt(self.session_keys.c_mac[:8], self._last_cmac)
        return self._last_cmac

    def _cmac(self, plain: CommandApdu) -> bytes:
        """C-MAC of a plain command, over the modified header (CLA|SM, Lc+8) or, with ``i`` b2,
        the unmodified one [M: no public vector for b2]."""
        if self._i & I_CMAC_ON_UNMODIFIED_APDU:
            header = bytes([plain.cla, plain.ins, plain.p1, plain.p2])
            extended = plain.is_extended
            lc = lc_field(len(plain.data), extended) if plain.data else bytes(3 if extended else 1)
        else:
            header = bytes([plain.cla | sm_indicator(plain.cla), plain.ins, plain.p1, plain.p2])
            lc = lc_field(len(plain.data) + 8, plain.is_extended)
        return iso9797_mac_alg3(self.session_keys.c_mac, header + lc + plain.data, padding="m2",
                                iv=self._icv())

    def _protect(self, plain: CommandApdu, *, encrypt: bool) -> tuple[CommandApdu, bytes]:
        mac = self._cmac(plain)
        data = plain.data
        if encrypt and data:
            data = primitives.cbc_encrypt("3des", self.session_keys.enc, primitives.pad_iso9797_m2(data))
        return rebuild(plain, plain.cla | sm_indicator(plain.cla), data + mac), mac
