"""Block-cipher primitives used by EMV/PBOC, GlobalPlatform, SCP80 and ISO 8583 MACs.

Everything goes through ``cryptography``. 3DES is its ``decrepit`` TripleDES fed with an explicit
24-byte K1||K2||K1 (or K||K||K for single DES) key, which avoids the 16-byte-key warning
(domain brief section 2, "Packages"). SM4 (GB/T 32907) and SM3 (GB/T 32905) are native there.
No padding is ever added implicitly: callers pad with :func:`pad_iso9797_m2` (ISO/IEC 9797-1
padding method 2, the EMV ``80 00..`` padding) or :func:`pad_zero` (method 1).
"""

from __future__ import annotations

from typing import Literal

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import cmac, hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ..errors import CryptoError

CipherName = Literal["des", "3des", "aes", "sm4"]

DES_BLOCK = 8
AES_BLOCK = 16
SM4_BLOCK = 16


def xor(a: bytes, b: bytes) -> bytes:
    """Byte-wise XOR of two equal-length strings."""
    if len(a) != len(b):
        raise CryptoError(f"xor of unequal lengths {len(a)} and {len(b)}")
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


def pad_iso9797_m2(data: bytes, block: int = DES_BLOCK) -> bytes:
    """ISO/IEC 9797-1 padding method 2: append 80 then 00s up to a block multiple (always pads)."""
    padded = data + b"\x80"
    return padded + b"\x00" * (-len(padded) % block)


def unpad_iso9797_m2(data: bytes) -> bytes:
    """Strip ISO/IEC 9797-1 method 2 padding; :class:`CryptoError` if it is absent."""
    stripped = data.rstrip(b"\x00")
    if not stripped or stripped[-1] != 0x80:
        raise CryptoError("missing ISO 9797-1 method 2 padding (80 00..)")
    return stripped[:-1]


def pad_zero(data: bytes, block: int = DES_BLOCK) -> bytes:
    """ISO/IEC 9797-1 padding method 1: 00s up to a block multiple (nothing if already aligned, never empty)."""
    if not data:
        return b"\x00" * block
    return data + b"\x00" * (-len(data) % block)


def _tdes_key(key: bytes) -> bytes:
    if len(key) == 8:
        return key * 3
    if len(key) == 16:
        return key + key[:8]
    if len(key) == 24:
        return key
    raise CryptoError(f"DES/3DES key must be 8, 16 or 24 bytes, got {len(key)}")


def _check_blocks(data: bytes, block: int, what: str) -> None:
    if len(data) % block:
        raise CryptoError(f"{what} data length {len(data)} is not a multiple of {block}")


def _algorithm(name: CipherName, key: bytes) -> algorithms.BlockCipherAlgorithm:
    if name in ("des", "3des"):
        if name == "des" and len(key) != 8:
            raise CryptoError(f"DES key must be 8 bytes, got {len(key)}")
        return TripleDES(_tdes_key(key))
    if name == "aes":
        if len(key) not in (16, 24, 32):
            raise CryptoError(f"AES key must be 16, 24 or 32 bytes, got {len(key)}")
        return algorithms.AES(key)
    if name == "sm4":
        if len(key) != 16:
            raise CryptoError(f"SM4 key must be 16 bytes, got {len(key)}")
        return algorithms.SM4(key)
    raise CryptoError(f"unknown cipher {name!r}")


def block_size(name: CipherName) -> int:
    """Block size in bytes of a cipher name."""
    return DES_BLOCK if name in ("des", "3des") else AES_BLOCK


def ecb_encrypt(name: CipherName, key: bytes, data: bytes) -> bytes:
    """Encrypt whole blocks in ECB mode."""
    _check_blocks(data, block_size(name), f"{name} ECB")
    enc = Cipher(_algorithm(name, key), modes.ECB()).encryptor()
    return enc.update(data) + enc.finalize()


def ecb_decrypt(name: CipherName, key: bytes, data: bytes) -> bytes:
    """Decrypt whole blocks in ECB mode."""
    _check_blocks(data, block_size(name), f"{name} ECB")
    dec = Cipher(_algorithm(name, key), modes.ECB()).decryptor()
    return dec.update(data) + dec.finalize()


def cbc_encrypt(name: CipherName, key: bytes, data: bytes, iv: bytes | None = None) -> bytes:
    """Encrypt whole blocks in CBC mode (IV of zeros by default, as EMV and GP use)."""
    bs = block_size(name)
    _check_blocks(data, bs, f"{name} CBC")
    enc = Cipher(_algorithm(name, key), modes.CBC(iv if iv is not None else bytes(bs))).encryptor()
    return enc.update(data) + enc.finalize()


def cbc_decrypt(name: CipherName, key: bytes, data: bytes, iv: bytes | None = None) -> bytes:
    """Decrypt whole blocks in CBC mode."""
    bs = block_size(name)
    _check_blocks(data, bs, f"{name} CBC")
    dec = Cipher(_algorithm(name, key), modes.CBC(iv if iv is not None else bytes(bs))).decryptor()
    return dec.update(data) + dec.finalize()


# Short aliases for the most used forms.
def des_encrypt(key: bytes, block: bytes) -> bytes:
    """Single DES ECB (8-byte key)."""
    return ecb_encrypt("des", key, block)


def des_decrypt(key: bytes, block: bytes) -> bytes:
    """Single DES ECB decryption (8-byte key)."""
    return ecb_decrypt("des", key, block)


def tdes_encrypt(key: bytes, data: bytes) -> bytes:
    """3DES ECB with a double- (K1K2K1) or triple-length key."""
    return ecb_encrypt("3des", key, data)


def tdes_decrypt(key: bytes, data: bytes) -> bytes:
    """3DES ECB decryption."""
    return ecb_decrypt("3des", key, data)


def aes_encrypt(key: bytes, data: bytes) -> bytes:
    """AES ECB."""
    return ecb_encrypt("aes", key, data)


def sm4_encrypt(key: bytes, data: bytes) -> bytes:
    """SM4 ECB (GB/T 32907)."""
    return ecb_encrypt("sm4", key, data)


def sm4_decrypt(key: bytes, data: bytes) -> bytes:
    """SM4 ECB decryption."""
    return ecb_decrypt("sm4", key, data)


def aes_cmac(key: bytes, data: bytes) -> bytes:
    """AES-CMAC (NIST SP 800-38B / RFC 4493), full 16 bytes."""
    c = cmac.CMAC(_algorithm("aes", key))
    c.update(data)
    return c.finalize()


def sm3(data: bytes) -> bytes:
    """SM3 hash (GB/T 32905), 32 bytes."""
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize()


def kcv(key: bytes, alg: CipherName = "3des", length: int = 3) -> bytes:
    """Key check value: the first ``length`` bytes of the key encrypting a zero block.

    This is the classic KCV (ANSI X9.24, GP Card Spec 11.8.2.3 for DES keys). For AES keys
    GlobalPlatform SCP03 uses a block of 01s instead (GP Amendment D 7.2.2); pass
    ``alg="aes"`` to :func:`kcv_gp_aes` for that form.
    """
    return ecb_encrypt(alg, key, bytes(block_size(alg)))[:length]


def kcv_gp_aes(key: bytes, length: int = 3) -> bytes:
    """GlobalPlatform SCP03 key check value: AES over 16 bytes of 01 (GP Amendment D 7.2.2)."""
    return ecb_encrypt("aes", key, b"\x01" * AES_BLOCK)[:length]
