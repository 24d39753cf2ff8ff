"""SM2 digital signatures (GM/T 0003.2-2012, GB/T 32918.2-2016) with SM3, on explicit curve parameters.

Why our own arithmetic: the maintained pure-Python library gmalg 1.1.2 (MIT, ``secrets`` RNG) has a
public ``SM2`` class bound to the recommended curve with a random k, so it cannot run the standard's
Annex A example (a different Fp-256 test curve and a fixed k). This module therefore implements the
signature equations over plain Python integers and uses gmalg only as an interoperability oracle in
the tests (ours signs / gmalg verifies and the reverse, on the recommended curve).

* Keys and points are fixed width: a private key is 32 bytes, a public key 65 bytes ``04||X||Y``
  with X and Y left-padded to 32 bytes. Nothing is ever stripped, so keys whose X begins with a 0
  or 4 nibble work (unlike gmssl 3.2.2's ``lstrip("04")``, domain brief section 2).
* Signatures are raw ``r||s`` (64 bytes), not DER.
* Randomness (key generation, k) comes from :mod:`secrets`. ``k`` can be fixed for known-answer tests.
* Not constant time (Python integers): fine for a test lab and its test keys, not for an HSM.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from ..errors import CryptoError
from .primitives import sm3

DEFAULT_USER_ID = b"1234567812345678"
"""Default signer ID (GM/T 0009 / GB/T 35276: ``1234567812345678``, ENTL = 0x0080)."""

_Point = tuple[int, int] | None  # None is the point at infinity


def _on_curve(curve: Sm2Curve, point: tuple[int, int]) -> bool:
    x, y = point
    p = curve.p
    return 0 <= x < p and 0 <= y < p and (y * y - (x * x * x + curve.a * x + curve.b)) % p == 0


@dataclass(frozen=True)
class Sm2Curve:
    """A curve y^2 = x^3 + ax + b (mod p) with base point G = (gx, gy) of prime order n, cofactor 1."""

    name: str
    p: int
    a: int
    b: int
    gx: int
    gy: int
    n: int

    def __post_init__(self) -> None:
        if not _on_curve(self, (self.gx, self.gy)):
            raise CryptoError(f"curve {self.name}: the base point is not on the curve")

    @property
    def size(self) -> int:
        """Length in bytes of a field element and of a scalar (32 for the 256-bit curves)."""
        return (max(self.p, self.n).bit_length() + 7) // 8


SM2_P256 = Sm2Curve(
    name="sm2p256v1",
    p=0xFFFFFFFE_FFFFFFFF_FFFFFFFF_FFFFFFFF_FFFFFFFF_00000000_FFFFFFFF_FFFFFFFF,
    a=0xFFFFFFFE_FFFFFFFF_FFFFFFFF_FFFFFFFF_FFFFFFFF_00000000_FFFFFFFF_FFFFFFFC,
    b=0x28E9FA9E_9D9F5E34_4D5A9E4B_CF6509A7_F39789F5_15AB8F92_DDBCBD41_4D940E93,
    gx=0x32C4AE2C_1F198119_5F990446_6A39C994_8FE30BBF_F2660BE1_715A4589_334C74C7,
    gy=0xBC3736A2_F4F6779C_59BDCEE3_6B692153_D0A9877C_C62A4740_02DF32E5_2139F0A0,
    n=0xFFFFFFFE_FFFFFFFF_FFFFFFFF_FFFFFFFF_7203DF6B_21C6052B_53BBF409_39D54123,
)
"""The SM2 recommended curve (GM/T 0003.5-2012, GB/T 32918.5-2017), the production default."""


# -- curve arithmetic (affine coordinates) -------------------------------------------------------


def _add(curve: Sm2Curve, p1: _Point, p2: _Point) -> _Point:
    if p1 is None:
        return p2
    if p2 is None:
        return p1
    p = curve.p
    (x1, y1), (x2, y2) = p1, p2
    if x1 == x2:
        if (y1 + y2) % p == 0:  # P + (-P), including doubling a point with y = 0
            return None
        slope = (3 * x1 * x1 + curve.a) * pow(2 * y1, -1, p) % p
    else:
        slope = (y2 - y1) * pow(x2 - x1, -1, p) % p
    x3 = (slope * slope - x1 - x2) % p
    return x3, (slope * (x1 - x3) - y1) % p


def _mul(curve: Sm2Curve, k: int, point: _Point) -> _Point:
    result: _Point = None
    addend = point
    while k:
        if k & 1:
            result = _add(curve, result, addend)
        addend = _add(curve, addend, addend)
        k >>= 1
    return result


def _base_mul(curve: Sm2Curve, k: int) -> tuple[int, int]:
    point = _mul(curve, k, (curve.gx, curve.gy))
    if point is None:  # only for k = 0 mod n, which every caller excludes
        raise CryptoError("scalar multiple of G is the point at infinity")
    return point


# -- encodings -----------------------------------------------------------------------------------


def _encode_point(curve: Sm2Curve, point: tuple[int, int]) -> bytes:
    return b"\x04" + point[0].to_bytes(curve.size, "big") + point[1].to_bytes(curve.size, "big")


def _decode_public(curve: Sm2Curve, public: bytes) -> tuple[int, int]:
    size = curve.size
    if not isinstance(public, bytes | bytearray) or len(public) != 1 + 2 * size or public[0] != 0x04:
        got = f"{len(public)} bytes" if isinstance(public, bytes | bytearray) else type(public).__name__
        raise CryptoError(f"public must be {1 + 2 * size} bytes 04||X||Y (uncompressed), got {got}")
    point = int.from_bytes(public[1 : 1 + size], "big"), int.from_bytes(public[1 + size :], "big")
    if not _on_curve(curve, point):
        raise CryptoError(f"public is not a point on curve {curve.name}")
    return point


def _decode_private(curve: Sm2Curve, private: bytes) -> int:
    if not isinstance(private, bytes | bytearray) or len(private) != curve.size:
        got = f"{len(private)} bytes" if isinstance(private, bytes | bytearray) else type(private).__name__
        raise CryptoError(f"private must be {curve.size} bytes, got {got}")
    d = int.from_bytes(private, "big")
    if not 1 <= d <= curve.n - 2:  # GM/T 0003.1 6.1: d in [1, n-2] so that 1 + d is invertible
        raise CryptoError("private is out of range (must be 1 <= d <= n-2)")
    return d


def _check_digest(digest: bytes) -> int:
    if not isinstance(digest, bytes | bytearray) or len(digest) != 32:
        raise CryptoError("digest must be the 32-byte SM3 value e = SM3(ZA || M)")
    return int.from_bytes(digest, "big")


# -- keys ----------------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class Sm2KeyPair:
    """An SM2 key pair: ``private`` 32 bytes (d), ``public`` 65 bytes ``04||X||Y``. ``repr`` hides d."""

    private: bytes
    public: bytes

    def __repr__(self) -> str:
        return f"Sm2KeyPair(public={self.public.hex().upper()})"


def generate_keypair(curve: Sm2Curve = SM2_P256) -> Sm2KeyPair:
    """A fresh key pair, d uniform in [1, n-2] from :mod:`secrets` (GM/T 0003.1 6.1)."""
    d = secrets.randbelow(curve.n - 2) + 1
    return Sm2KeyPair(d.to_bytes(curve.size, "big"), _encode_point(curve, _base_mul(curve, d)))


def public_from_private(d: bytes, curve: Sm2Curve = SM2_P256) -> bytes:
    """The public key ``04||X||Y`` = [d]G of a 32-byte private key."""
    return _encode_point(curve, _base_mul(curve, _decode_private(curve, d)))


def compute_za(public: bytes, user_id: bytes = DEFAULT_USER_ID, curve: Sm2Curve = SM2_P256) -> bytes:
    """ZA = SM3(ENTL || ID || a || b || xG || yG || xA || yA) (GM/T 0003.2 5.5).

    ENTL is the bit length of ``user_id`` as 2 bytes; field elements are fixed width.
    """
    if not isinstance(user_id, bytes | bytearray):
        raise CryptoError(f"user_id must be bytes, got {type(user_id).__name__}")
    if len(user_id) * 8 > 0xFFFF:
        raise CryptoError(f"user_id is {len(user_id)} bytes; ENTL allows at most 8191")
    xa, ya = _decode_public(curve, public)
    size = curve.size
    fields = (curve.a, curve.b, curve.gx, curve.gy, xa, ya)
    return sm3(
        (len(user_id) * 8).to_bytes(2, "big")
        + bytes(user_id)
        + b"".join(v.to_bytes(size, "big") for v in fields)
    )


# -- signatures ----------------------------------------------------------------------------------


def sign_digest(private: bytes, digest: bytes, *, k: int | None = None, curve: Sm2Curve = SM2_P256) -> bytes:
    """Sign a precomputed e = SM3(ZA || M) (GM/T 0003.2 6.1 steps A3-A7); returns r||s.

    ``k`` fixes the per-signature random number, for known-answer tests only; a fixed k that gives
    r = 0, r + k = n or s = 0 raises :class:`CryptoError` (the standard would draw another k).
    """
    d = _decode_private(curve, private)
    e = _check_digest(digest)
    n = curve.n
    if k is not None and not 1 <= k <= n - 1:
        raise CryptoError("k must be in [1, n-1]")
    while True:
        k_used = k if k is not None else secrets.randbelow(n - 1) + 1
        x1, _ = _base_mul(curve, k_used)
        r = (e + x1) % n
        s = pow(1 + d, -1, n) * (k_used - r * d) % n
        if r != 0 and r + k_used != n and s != 0:
            return r.to_bytes(curve.size, "big") + s.to_bytes(curve.size, "big")
        if k is not None:
            raise CryptoError("this fixed k gives a degenerate signature (r = 0, r + k = n or s = 0)")


def sign(
    private: bytes,
    message: bytes,
    user_id: bytes = DEFAULT_USER_ID,
    *,
    k: int | None = None,
    curve: Sm2Curve = SM2_P256,
) -> bytes:
    """SM2 signature r||s (64 bytes) of ``message`` with e = SM3(ZA || M) (GM/T 0003.2 6.1)."""
    public = public_from_private(private, curve)
    digest = sm3(compute_za(public, user_id, curve) + bytes(message))
    return sign_digest(private, digest, k=k, curve=curve)


def verify_digest(public: bytes, digest: bytes, signature: bytes, *, curve: Sm2Curve = SM2_P256) -> bool:
    """Verify r||s over a precomputed e (GM/T 0003.2 7.1 steps B1, B2, B5-B7).

    Returns False for any bad signature, including a wrong length and r or s outside [1, n-1].
    A malformed public key or digest raises :class:`CryptoError` (a caller error, not a bad signature).
    """
    point = _decode_public(curve, public)
    e = _check_digest(digest)
    size, n = curve.size, curve.n
    if not isinstance(signature, bytes | bytearray) or len(signature) != 2 * size:
        return False
    r = int.from_bytes(signature[:size], "big")
    s = int.from_bytes(signature[size:], "big")
    if not (1 <= r <= n - 1 and 1 <= s <= n - 1):
        return False
    t = (r + s) % n
    if t == 0:
        return False
    sum_point = _add(curve, _mul(curve, s, (curve.gx, curve.gy)), _mul(curve, t, point))
    if sum_point is None:
        return False
    return (e + sum_point[0]) % n == r


def verify(
    public: bytes,
    message: bytes,
    signature: bytes,
    user_id: bytes = DEFAULT_USER_ID,
    *,
    curve: Sm2Curve = SM2_P256,
) -> bool:
    """Verify an SM2 signature r||s of ``message`` by ``public`` (GM/T 0003.2 7.1)."""
    digest = sm3(compute_za(public, user_id, curve) + bytes(message))
    return verify_digest(public, digest, signature, curve=curve)
