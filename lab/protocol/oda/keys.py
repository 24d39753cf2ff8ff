"""Keys of offline data authentication: raw RSA keys (EMV 4.3 Book 2 Annex B2.1), SM2 keys [M], the
terminal's CA public key entry, and the paylab TEST certification authority.

EMV signs with RSA *without padding*: the signer applies the private exponent to a formatted block
(Annex A2.1, digital signature scheme giving message recovery) and the verifier recovers that block
with the public exponent. ``cryptography`` generates the keys; the two modular exponentiations are
Python's ``pow()`` on the key's ``private_numbers()`` / ``public_numbers()`` (the CRT form for the
private side). ``cryptography`` refuses RSA keys below 1024 bits, so that is the smallest size here;
EMV's largest is 1984 bits (248 bytes).

Private key objects never show key material in ``repr``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from cryptography.hazmat.primitives.asymmetric import rsa

from ..crypto import sm2
from ..errors import CryptoError
from .common import (
    ALLOWED_EXPONENTS,
    HASH_SHA1,
    OdaError,
    check_exponent,
    compute_hash,
    exponent_bytes,
    sm3_hash,
)

Algorithm = Literal["rsa", "sm2"]

MIN_RSA_BITS = 1024
"""Smallest modulus ``cryptography`` generates (it refuses smaller keys)."""
MAX_RSA_BITS = 1984
"""Largest EMV modulus: 248 bytes, so that a certificate fits a short READ RECORD (Book 2 Annex B2.1)."""

PAYLAB_TEST_RID = bytes.fromhex("A000000333")
"""RID of the paylab TEST CA: UnionPay's RID, because the emulated cards are qPBOC cards."""
PAYLAB_TEST_CA_INDEX = 0xF0
"""CA Public Key Index (tag 8F) of the default paylab TEST RSA CA; not a UnionPay production index."""
PAYLAB_TEST_SM2_CA_INDEX = 0xF1
"""CA Public Key Index of the default paylab TEST SM2 CA [M]."""


def _check_rsa_bits(bits: int, exponent: int) -> None:
    if not isinstance(bits, int) or bits % 8 or not MIN_RSA_BITS <= bits <= MAX_RSA_BITS:
        raise OdaError(f"modulus of {bits!r} bits", check="key size", field="modulus_bits",
                       expected=f"a multiple of 8 from {MIN_RSA_BITS} to {MAX_RSA_BITS}")
    if exponent not in ALLOWED_EXPONENTS:
        raise OdaError(f"exponent {exponent!r}", check="exponent", field="exponent", expected="3 or 65537")


@dataclass(frozen=True, repr=False)
class RsaPublicKey:
    """An RSA public key as EMV carries it: big-endian ``modulus`` (N bytes) and ``exponent`` (03/010001)."""

    modulus: bytes
    exponent: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "modulus", bytes(self.modulus))
        object.__setattr__(self, "exponent", bytes(self.exponent))
        if len(self.modulus) < 32 or self.modulus[0] == 0 or not self.modulus[-1] & 1:
            raise OdaError(f"modulus of {len(self.modulus)} bytes", check="public key", field="modulus",
                           expected="an odd modulus of at least 32 bytes without leading zero")
        check_exponent(self.exponent, field="exponent")

    @property
    def n(self) -> int:
        return int.from_bytes(self.modulus, "big")

    @property
    def e(self) -> int:
        return int.from_bytes(self.exponent, "big")

    @property
    def size(self) -> int:
        """Modulus length in bytes (N_CA, N_I or N_IC in Book 2)."""
        return len(self.modulus)

    def recover(self, signed: bytes, *, field: str) -> bytes:
        """The public-key operation X = S^e mod n on a block of exactly :attr:`size` bytes (Annex A2.1)."""
        if len(signed) != self.size:
            raise OdaError(f"{len(signed)} bytes", check="length", field=field,
                           expected=f"{self.size} bytes, the length of the key's modulus")
        value = int.from_bytes(signed, "big")
        if value >= self.n:
            raise OdaError("value is not below the modulus", check="recovery", field=field,
                           expected="a value below the signer's modulus")
        return pow(value, self.e, self.n).to_bytes(self.size, "big")

    def __repr__(self) -> str:
        return f"RsaPublicKey({self.size * 8} bits, e={self.e}, modulus={self.modulus[:6].hex().upper()}...)"


class RsaPrivateKey:
    """An RSA private key from ``cryptography``, used raw (no padding) to sign EMV blocks.

    ``repr`` shows the size, exponent and the start of the public modulus only.
    """

    __slots__ = ("_d", "_dp", "_dq", "_key", "_p", "_q", "_qinv", "public")

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        if not isinstance(key, rsa.RSAPrivateKey):
            raise CryptoError(f"expected a cryptography RSAPrivateKey, got {type(key).__name__}")
        numbers = key.private_numbers()
        public = numbers.public_numbers
        size = (public.n.bit_length() + 7) // 8
        self.public = RsaPublicKey(public.n.to_bytes(size, "big"), exponent_bytes(public.e))
        self._key = key
        self._d, self._p, self._q = numbers.d, numbers.p, numbers.q
        self._dp, self._dq, self._qinv = numbers.dmp1, numbers.dmq1, numbers.iqmp

    @classmethod
    def generate(cls, bits: int, exponent: int = 3) -> RsaPrivateKey:
        """A fresh key from ``cryptography`` (OpenSSL's generator; it cannot be seeded)."""
        _check_rsa_bits(bits, exponent)
        return cls(rsa.generate_private_key(public_exponent=exponent, key_size=bits))

    def to_cryptography(self) -> rsa.RSAPrivateKey:
        """The underlying ``cryptography`` key (e.g. to serialize it into a fixture cache)."""
        return self._key

    @property
    def size(self) -> int:
        return self.public.size

    def sign_raw(self, block: bytes, *, field: str = "block") -> bytes:
        """S = X^d mod n (CRT form) on a block of exactly :attr:`size` bytes below the modulus."""
        if len(block) != self.size:
            raise OdaError(f"{len(block)} bytes", check="length", field=field, expected=f"{self.size} bytes")
        value = int.from_bytes(block, "big")
        if value >= self.public.n:
            raise OdaError("block is not below the modulus", check="key size", field=field,
                           expected="a modulus whose top byte exceeds the 6A header")
        m1, m2 = pow(value, self._dp, self._p), pow(value, self._dq, self._q)
        signed = m2 + (self._qinv * (m1 - m2) % self._p) * self._q
        return signed.to_bytes(self.size, "big")

    def __repr__(self) -> str:
        return (f"RsaPrivateKey({self.size * 8} bits, e={self.public.e}, "
                f"modulus={self.public.modulus[:6].hex().upper()}..., private part hidden)")


@dataclass(frozen=True, repr=False)
class Sm2PublicKey:
    """An SM2 public key ``04 || X || Y`` (65 bytes) on the SM2 recommended curve [M for its EMV use]."""

    point: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "point", bytes(self.point))
        try:
            sm2.compute_za(self.point)  # decodes and checks the point is on the curve
        except CryptoError as exc:
            raise OdaError(str(exc), check="public key", field="SM2 public key",
                           expected="04 || X || Y on sm2p256v1") from None

    @classmethod
    def from_xy(cls, xy: bytes) -> Sm2PublicKey:
        """From the 64-byte ``X || Y`` form the certificates carry."""
        return cls(b"\x04" + bytes(xy))

    @property
    def xy(self) -> bytes:
        return self.point[1:]

    @property
    def size(self) -> int:
        """Length of the key as certificates carry it (X || Y)."""
        return len(self.point) - 1

    def __repr__(self) -> str:
        return f"Sm2PublicKey(X={self.point[1:7].hex().upper()}...)"


def sm2_keypair(rng: random.Random | None = None) -> sm2.Sm2KeyPair:
    """An SM2 key pair (its ``repr`` hides d): from ``rng`` when given (deterministic test keys),
    otherwise from the adapter's ``secrets`` generator."""
    if rng is None:
        return sm2.generate_keypair()
    d = rng.randrange(1, sm2.SM2_P256.n - 1).to_bytes(32, "big")
    return sm2.Sm2KeyPair(d, sm2.public_from_private(d))


PrivateKey = RsaPrivateKey | sm2.Sm2KeyPair
PublicKey = RsaPublicKey | Sm2PublicKey


def public_key_of(key: PrivateKey | PublicKey) -> PublicKey:
    """The public half of a key (a public key is returned as is)."""
    if isinstance(key, RsaPublicKey | Sm2PublicKey):
        return key
    if isinstance(key, RsaPrivateKey):
        return key.public
    if isinstance(key, sm2.Sm2KeyPair):
        return Sm2PublicKey(key.public)
    raise OdaError(f"key of type {type(key).__name__}", check="key type", field="key",
                   expected="RsaPrivateKey, RsaPublicKey, Sm2KeyPair or Sm2PublicKey")


@dataclass(frozen=True, repr=False)
class CaPublicKey:
    """One entry of the terminal's CA public key store (Book 2 section 11.2): RID, index, key, check sum.

    RSA: ``modulus`` and ``exponent``; the check sum is SHA-1 over RID || index || modulus || exponent.
    SM2 [M]: ``modulus`` holds X || Y (64 bytes), ``exponent`` is empty, and the check sum is SM3 over
    RID || index || X || Y. ``test`` marks a paylab TEST CA key, which must never reach a real terminal.
    """

    rid: bytes
    index: int
    modulus: bytes
    exponent: bytes
    algorithm: Algorithm = "rsa"
    test: bool = False

    def __post_init__(self) -> None:
        for name in ("rid", "modulus", "exponent"):
            object.__setattr__(self, name, bytes(getattr(self, name)))
        if len(self.rid) != 5:
            raise OdaError(f"RID of {len(self.rid)} bytes", check="CA key", field="RID", expected="5 bytes")
        if not isinstance(self.index, int) or not 0 <= self.index <= 0xFF:
            raise OdaError(f"index {self.index!r}", check="CA key", field="tag 8F", expected="0 to 255")
        if self.algorithm not in ("rsa", "sm2"):
            raise OdaError(f"algorithm {self.algorithm!r}", check="CA key", field="algorithm",
                           expected="'rsa' or 'sm2'")
        if self.algorithm == "sm2" and self.exponent:
            raise OdaError("an SM2 CA key has no exponent", check="CA key", field="exponent", expected="b''")
        self.public_key  # noqa: B018 - validates the key

    @property
    def public_key(self) -> PublicKey:
        if self.algorithm == "rsa":
            return RsaPublicKey(self.modulus, self.exponent)
        return Sm2PublicKey.from_xy(self.modulus)

    @property
    def checksum(self) -> bytes:
        """CA Public Key Check Sum: SHA-1 (RSA) or SM3 [M] over RID || index || modulus || exponent."""
        data = self.rid + bytes([self.index]) + self.modulus + self.exponent
        return compute_hash(HASH_SHA1, data, field="CA key") if self.algorithm == "rsa" else sm3_hash(data)

    def verify_checksum(self, expected: bytes) -> None:
        """:class:`OdaError` unless ``expected`` (from the key file) equals :attr:`checksum`."""
        if bytes(expected) != self.checksum:
            raise OdaError(f"check sum {bytes(expected).hex().upper()}", check="CA key check sum",
                           field=f"CA key {self.rid.hex().upper()}/{self.index:02X}",
                           expected=self.checksum.hex().upper())

    def __repr__(self) -> str:
        kind = f"RSA {len(self.modulus) * 8} bits, e={int.from_bytes(self.exponent, 'big')}" \
            if self.algorithm == "rsa" else "SM2"
        mark = "TEST, " if self.test else ""
        return (f"CaPublicKey({mark}RID {self.rid.hex().upper()}, index {self.index:02X}, {kind}, "
                f"check sum {self.checksum.hex().upper()})")


class TestCa:
    """A paylab **TEST** certification authority (RID A000000333) for test labs. Never for production.

    RSA: a ``cryptography`` key of ``modulus_bits`` (default 1408; 1152, 1408 or 1984 in EMV practice,
    any multiple of 8 from 1024 to 1984 accepted) with ``exponent`` 3 (default) or 65537. SM2 [M]: an
    SM2 key pair (from ``rng`` when given). ``key`` injects an existing private key instead (e.g. from
    a fixture cache); its size and exponent then win, and explicit ones must agree with them.
    """

    __test__ = False  # not a pytest test class despite its name
    RID = PAYLAB_TEST_RID

    def __init__(
        self,
        index: int,
        modulus_bits: int | None = None,
        exponent: int | None = None,
        *,
        algorithm: Algorithm = "rsa",
        key: PrivateKey | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not isinstance(index, int) or not 0 <= index <= 0xFF:
            raise OdaError(f"index {index!r}", check="CA key", field="tag 8F", expected="0 to 255")
        self.index = index
        self.algorithm: Algorithm = algorithm
        if algorithm == "rsa":
            if key is None:
                key = RsaPrivateKey.generate(1408 if modulus_bits is None else modulus_bits,
                                             3 if exponent is None else exponent)
            if not isinstance(key, RsaPrivateKey):
                raise OdaError(f"key of type {type(key).__name__}", check="key type", field="key",
                               expected="RsaPrivateKey")
            if modulus_bits not in (None, key.size * 8) or exponent not in (None, key.public.e):
                raise OdaError("injected key differs from modulus_bits/exponent", check="key size", field="key",
                               expected=f"{key.size * 8} bits, e={key.public.e}")
            _check_rsa_bits(key.size * 8, key.public.e)
        elif algorithm == "sm2":
            if modulus_bits is not None or exponent is not None:
                raise OdaError("SM2 takes no modulus_bits or exponent", check="key size", field="algorithm")
            key = sm2_keypair(rng) if key is None else key
            if not isinstance(key, sm2.Sm2KeyPair):
                raise OdaError(f"key of type {type(key).__name__}", check="key type", field="key",
                               expected="Sm2KeyPair")
        else:
            raise OdaError(f"algorithm {algorithm!r}", check="key type", field="algorithm",
                           expected="'rsa' or 'sm2'")
        self._key = key

    @property
    def private_key(self) -> PrivateKey:
        return self._key

    @property
    def public_key(self) -> CaPublicKey:
        """The entry to load into a test terminal's CA key store (marked ``test``)."""
        if isinstance(self._key, RsaPrivateKey):
            return CaPublicKey(self.RID, self.index, self._key.public.modulus, self._key.public.exponent,
                               "rsa", test=True)
        return CaPublicKey(self.RID, self.index, self._key.public[1:], b"", "sm2", test=True)

    def __repr__(self) -> str:
        if isinstance(self._key, RsaPrivateKey):
            kind = f"RSA {self._key.size * 8} bits, e={self._key.public.e}"
        else:
            kind = "SM2"
        return f"TestCa(paylab TEST CA, RID {self.RID.hex().upper()}, index {self.index:02X}, {kind})"
