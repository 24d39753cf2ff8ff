"""Static secure-channel key sets of a GlobalPlatform security domain.

A key set is the triple ENC / MAC / DEK under one key version number (KVN), GP Card Specification
v2.3 clause 11.1.8 (key identifiers 01, 02, 03). SCP02 uses double-length 3DES keys (Annex E.1),
SCP03 uses AES-128/192/256 keys of one length (Amendment D clause 4.1.1). The SCP modules check the
lengths they need; this module only checks that the material looks like a key.

Key material never appears in ``repr``: a key set prints as its KVN and KCVs only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..crypto import primitives
from ..errors import CryptoError

#: GlobalPlatform default TEST KEY 40 41 .. 4F (domain brief section 3, [S: GlobalPlatformPro
#: ``PlaintextKeys.java``]). Development and test cards only: NEVER a production key.
GP_DEFAULT_TEST_KEY = bytes(range(0x40, 0x50))

_KEY_LENGTHS = (16, 24, 32)


@dataclass(frozen=True)
class StaticKeys:
    """The static ENC, MAC and DEK keys of one key set and their key version number.

    ``kvn`` is the Key Version Number sent as P1 of INITIALIZE UPDATE; 00 asks the card for its
    first available key set (GP Card Spec v2.3 clause 11.11.2.1).
    """

    enc: bytes = field(repr=False)
    mac: bytes = field(repr=False)
    dek: bytes = field(repr=False)
    kvn: int = 0x00

    def __post_init__(self) -> None:
        for name in ("enc", "mac", "dek"):
            value = getattr(self, name)
            if not isinstance(value, bytes | bytearray):
                raise CryptoError(f"static {name.upper()} key must be bytes, got {type(value).__name__}")
            if len(value) not in _KEY_LENGTHS:
                raise CryptoError(f"static {name.upper()} key must be 16, 24 or 32 bytes, got {len(value)}")
            object.__setattr__(self, name, bytes(value))
        if not 0 <= self.kvn <= 0xFF:
            raise CryptoError(f"key version number must fit one byte, got {self.kvn}")

    @classmethod
    def single(cls, key: bytes, kvn: int = 0x00) -> StaticKeys:
        """A key set whose ENC, MAC and DEK are all ``key`` (how test cards usually ship)."""
        return cls(key, key, key, kvn)

    @classmethod
    def gp_default_test_keys(cls, kvn: int = 0x00) -> StaticKeys:
        """ENC = MAC = DEK = the GP default TEST KEY 404142..4F. For test cards only."""
        return cls.single(GP_DEFAULT_TEST_KEY, kvn)

    def check_values(self) -> dict[str, str]:
        """Hex KCVs of the three keys (3DES zero-block KCV for 16-byte keys, GP AES KCV otherwise).

        16-byte keys are ambiguous (2-key 3DES or AES-128); both SCP modules expose exact KCVs.
        """
        def one(key: bytes) -> str:
            if len(key) == 16:
                return primitives.kcv(key, "3des").hex().upper()
            return primitives.kcv_gp_aes(key).hex().upper()

        return {"enc": one(self.enc), "mac": one(self.mac), "dek": one(self.dek)}

    def __repr__(self) -> str:
        kcvs = self.check_values()
        return (
            f"StaticKeys(kvn=0x{self.kvn:02X}, len={len(self.enc)}, "
            f"kcv_enc={kcvs['enc']}, kcv_mac={kcvs['mac']}, kcv_dek={kcvs['dek']})"
        )


# --- key component blocks for PUT KEY (GP v2.3 clause 11.8.2.3, Tables 11-70/11-71) -----------

def wrap_key_component(cipher: primitives.CipherName, dek: bytes, key: bytes,
                       iv: bytes | None = None) -> bytes:
    """Encrypt ``key`` under ``dek`` into a PUT KEY key component block.

    ECB when ``iv`` is None (SCP02, Annex E.4.7), else CBC from ``iv`` (SCP03, Amendment D 7.2.2).
    A key that is a block multiple gives the bare cryptogram (GP v2.3 Table 11-71); otherwise it is
    right-padded with zeros and the block is ``BER length of the clear key || cryptogram``
    (Table 11-70).
    """
    if not key:
        raise CryptoError("cannot wrap an empty key")
    bs = primitives.block_size(cipher)
    padded = key + bytes(-len(key) % bs)

    def run(data: bytes) -> bytes:
        if iv is None:
            return primitives.ecb_encrypt(cipher, dek, data)
        return primitives.cbc_encrypt(cipher, dek, data, iv)

    if len(key) % bs:
        return _ber_length(len(key)) + run(padded)
    return run(padded)


def unwrap_key_component(cipher: primitives.CipherName, dek: bytes, block: bytes,
                         iv: bytes | None = None) -> bytes:
    """Inverse of :func:`wrap_key_component`; :class:`CryptoError` on an inconsistent block.

    A block that is not a block-size multiple carries its clear length in front (Table 11-70).
    """
    bs = primitives.block_size(cipher)

    def run(data: bytes) -> bytes:
        if iv is None:
            return primitives.ecb_decrypt(cipher, dek, data)
        return primitives.cbc_decrypt(cipher, dek, data, iv)

    if len(block) % bs == 0:
        if not block:
            raise CryptoError("empty key component block")
        return run(block)
    length, offset = _parse_ber_length(block)
    body = block[offset:]
    if len(body) % bs or not 0 < length <= len(body) or len(body) - length >= bs:
        raise CryptoError(f"key component block: clear length {length} does not fit {len(body)} bytes")
    return run(body)[:length]


def _ber_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    if n <= 0xFF:
        return b"\x81" + bytes([n])
    return b"\x82" + n.to_bytes(2, "big")


def _parse_ber_length(block: bytes) -> tuple[int, int]:
    first = block[0]
    if first < 0x80:
        return first, 1
    if first in (0x81, 0x82) and len(block) > first - 0x80:
        size = first - 0x80
        return int.from_bytes(block[1 : 1 + size], "big"), 1 + size
    raise CryptoError(f"bad length prefix {first:02X} in key component block")
