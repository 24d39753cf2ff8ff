"""Message authentication codes used across EMV/PBOC, GlobalPlatform and ISO 8583.

* ISO/IEC 9797-1 MAC algorithm 1 (CBC-MAC) and algorithm 3 (the "retail MAC": single-DES CBC
  with K1, final block decrypted with K2 and encrypted with K1), with padding method 1 (zeros)
  or 2 (``80 00..``, the EMV/GP choice).
* ANSI X9.19: the retail MAC with zero padding (ISO 9797-1 alg 3, padding method 1).
* SM4 CBC-MAC (PBOC 3.0 / JR/T 0025.17): IV 0, padding method 2 to 16 bytes.
* AES-CMAC is :func:`paylab.lab.protocol.crypto.primitives.aes_cmac`.
* The UnionPay POS "ECB MAC" for ISO 8583 field 64 (domain brief section 5).

MAC functions return the full block; callers truncate (EMV AC: 8 bytes, script MAC: 4 bytes).
"""

from __future__ import annotations

from typing import Literal

from ..errors import CryptoError
from .primitives import (
    block_size,
    cbc_encrypt,
    des_decrypt,
    des_encrypt,
    ecb_encrypt,
    pad_iso9797_m2,
    pad_zero,
    xor,
)

Padding = Literal["m1", "m2", "none"]


def apply_padding(data: bytes, padding: Padding, block: int) -> bytes:
    """Pad with ISO/IEC 9797-1 method 1 (``m1``), method 2 (``m2``) or not at all (``none``)."""
    if padding == "m2":
        return pad_iso9797_m2(data, block)
    if padding == "m1":
        return pad_zero(data, block)
    if len(data) % block or not data:
        raise CryptoError(f"unpadded MAC input of {len(data)} bytes is not a non-empty multiple of {block}")
    return data


def iso9797_mac_alg1(
    key: bytes, data: bytes, *, padding: Padding = "m2", iv: bytes | None = None,
    cipher: Literal["des", "3des", "aes", "sm4"] = "3des",
) -> bytes:
    """ISO/IEC 9797-1 MAC algorithm 1: the last block of a CBC encryption (full block returned)."""
    bs = block_size(cipher)
    return cbc_encrypt(cipher, key, apply_padding(data, padding, bs), iv)[-bs:]


def iso9797_mac_alg3(key: bytes, data: bytes, *, padding: Padding = "m2", iv: bytes | None = None) -> bytes:
    """ISO/IEC 9797-1 MAC algorithm 3 (retail MAC) with a double-length DES key K1||K2.

    Single DES CBC with K1 over all blocks (starting from ``iv``), then the final block is
    decrypted with K2 and encrypted again with K1. Returns 8 bytes.
    """
    if len(key) != 16:
        raise CryptoError(f"retail MAC key must be 16 bytes (K1||K2), got {len(key)}")
    k1, k2 = key[:8], key[8:]
    chained = cbc_encrypt("des", k1, apply_padding(data, padding, 8), iv)[-8:]
    return des_encrypt(k1, des_decrypt(k2, chained))


def x9_19_mac(key: bytes, data: bytes) -> bytes:
    """ANSI X9.19 retail MAC: ISO 9797-1 algorithm 3 with zero padding (method 1), 8 bytes."""
    return iso9797_mac_alg3(key, data, padding="m1")


def sm4_cbc_mac(key: bytes, data: bytes, *, padding: Padding = "m2", iv: bytes | None = None) -> bytes:
    """SM4 CBC-MAC (JR/T 0025.17 [M]): IV 0, method-2 padding to 16 bytes, full 16-byte block."""
    return iso9797_mac_alg1(key, data, padding=padding, iv=iv, cipher="sm4")


def cup_ecb_mac(mak: bytes, data: bytes) -> bytes:
    """UnionPay POS "ECB MAC" for ISO 8583 field 64 (domain brief section 5, [S: MacEcbUtils]).

    1. XOR all 8-byte blocks of the zero-padded data together.
    2. Hex-expand the 8-byte result to 16 ASCII characters (upper case).
    3. Encrypt the first 8 characters with the MAK, XOR with the last 8, encrypt again.
    4. Hex-expand and return the first 8 characters as 8 ASCII bytes.

    ``mak`` is a single-length DES key (8 bytes) or a double-length 3DES key (16 bytes).
    """
    if len(mak) not in (8, 16):
        raise CryptoError(f"MAK must be 8 or 16 bytes, got {len(mak)}")
    cipher: Literal["des", "3des"] = "des" if len(mak) == 8 else "3des"
    padded = pad_zero(data, 8)
    acc = bytes(8)
    for i in range(0, len(padded), 8):
        acc = xor(acc, padded[i : i + 8])
    expanded = acc.hex().upper().encode("ascii")
    first = ecb_encrypt(cipher, mak, expanded[:8])
    second = ecb_encrypt(cipher, mak, xor(first, expanded[8:]))
    return second.hex().upper().encode("ascii")[:8]
