"""SM2 digital signatures (GM/T 0003.2-2012, GB/T 32918.2-2016) with SM3: a thin adapter over gmalg.

The curve arithmetic, ZA, key generation and the sign/verify equations are gmalg's (1.1.2, MIT,
pure Python): :class:`gmalg.sm2.SM2Core` run on a :class:`gmalg.ellipticcurve.ECDLP` built from the
:class:`Sm2Curve` parameters, so any curve works, including the GM/T 0003.2 Annex A Fp-256 test curve.
This module only validates and encodes: it fixes the byte formats, turns bad input into
:class:`CryptoError` and a bad signature into ``False``.

* Keys and points are fixed width: a private key is 32 bytes, a public key 65 bytes ``04||X||Y``
  with X and Y left-padded to 32 bytes. Nothing is ever stripped, so keys whose X begins with a 0
  or 4 nibble work (unlike gmssl 3.2.2's ``lstrip("04")``, domain brief section 2).
* Signatures are raw ``r||s`` (64 bytes), not DER.
* Randomness (key generation, k) is gmalg's default generator (:func:`secrets.randbits`). A fixed
  ``k`` for known-answer tests is handed to gmalg as its ``rnd_fn``.
* ``user_id`` is at most 4095 bytes: gmalg's ZA refuses an ENTL of 2^15 bits or more (the 2-byte
  ENTL field itself would allow 8191 bytes).
* :func:`sign_digest` and :func:`verify_digest` take a precomputed e, which ``SM2Core`` cannot (it
  always hashes ZA || M itself); they run the same GM/T 0003.2 equations on gmalg's ECDLP point and
  mod-n arithmetic instead. :func:`sign` and :func:`verify` go through ``SM2Core`` itself.
* Not constant time (Python integers): fine for a test lab and its test keys, not for an HSM.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from gmalg.ellipticcurve import ECDLP, EcPoint
from gmalg.errors import GMError
from gmalg.sm2 import SM2Core
from gmalg.sm3 import SM3

from ..errors import CryptoError

DEFAULT_USER_ID = b"1234567812345678"
"""Default signer ID (GM/T 0009 / GB/T 35276: ``1234567812345678``, ENTL = 0x0080)."""

_MAX_USER_ID = 4095
"""Longest ``user_id`` gmalg's ``SM2Core.entity_info`` accepts (ENTL must stay below 2^15 bits)."""


def _on_curve(ecdlp: ECDLP, point: EcPoint) -> bool:
    x, y = point
    p = ecdlp.fp.p
    return 0 <= x < p and 0 <= y < p and ecdlp.ec.isvalid(point)


@dataclass(frozen=True)
class Sm2Curve:
    """A curve y^2 = x^3 + ax + b (mod p) with base point G = (gx, gy) of prime order n, cofactor 1.

    ``ecdlp`` is the matching gmalg domain (built once, not part of equality or repr).
    """

    name: str
    p: int
    a: int
    b: int
    gx: int
    gy: int
    n: int
    ecdlp: ECDLP = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            ecdlp = ECDLP(self.p, self.a, self.b, (self.gx, self.gy), self.n)
        except GMError as exc:
            raise CryptoError(f"curve {self.name}: {exc}") from exc
        if not _on_curve(ecdlp, (self.gx, self.gy)):
            raise CryptoError(f"curve {self.name}: the base point is not on the curve")
        object.__setattr__(self, "ecdlp", ecdlp)

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


# -- gmalg plumbing ------------------------------------------------------------------------------


def _fixed_k(curve: Sm2Curve, k: int) -> Callable[[int], int]:
    """A gmalg ``rnd_fn`` that returns k once.

    gmalg asking a second time means k gave a degenerate signature and would be redrawn, which a
    fixed k cannot be, so that raises instead of looping.
    """
    if not 1 <= k <= curve.n - 1:
        raise CryptoError("k must be in [1, n-1]")
    draws = iter((k,))

    def rnd_fn(_bits: int) -> int:
        for value in draws:
            return value
        raise CryptoError("this fixed k gives a degenerate signature (r = 0, r + k = n or s = 0)")

    return rnd_fn


def _core(curve: Sm2Curve, k: int | None = None) -> SM2Core:
    """A fresh ``SM2Core`` on the curve's ECDLP (its SM3 object is stateful, so one per call).

    Without ``k`` gmalg draws k itself (``secrets.randbits``); with ``k``, see :func:`_fixed_k`.
    """
    return SM2Core(curve.ecdlp, SM3(), None if k is None else _fixed_k(curve, k))


# -- encodings -----------------------------------------------------------------------------------


def _encode_point(curve: Sm2Curve, point: EcPoint) -> bytes:
    if point == curve.ecdlp.ec.INF:  # only for d = 0 mod n, which every caller excludes
        raise CryptoError("scalar multiple of G is the point at infinity")
    return b"\x04" + point[0].to_bytes(curve.size, "big") + point[1].to_bytes(curve.size, "big")


def _decode_public(curve: Sm2Curve, public: bytes) -> EcPoint:
    size = curve.size
    if not isinstance(public, bytes | bytearray) or len(public) != 1 + 2 * size or public[0] != 0x04:
        got = f"{len(public)} bytes" if isinstance(public, bytes | bytearray) else type(public).__name__
        raise CryptoError(f"public must be {1 + 2 * size} bytes 04||X||Y (uncompressed), got {got}")
    point = int.from_bytes(public[1 : 1 + size], "big"), int.from_bytes(public[1 + size :], "big")
    if not _on_curve(curve.ecdlp, point):
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


def _check_user_id(user_id: bytes) -> bytes:
    if not isinstance(user_id, bytes | bytearray):
        raise CryptoError(f"user_id must be bytes, got {type(user_id).__name__}")
    if len(user_id) > _MAX_USER_ID:
        raise CryptoError(f"user_id is {len(user_id)} bytes; gmalg's ZA allows at most {_MAX_USER_ID}")
    return bytes(user_id)


def _check_digest(digest: bytes) -> int:
    if not isinstance(digest, bytes | bytearray) or len(digest) != 32:
        raise CryptoError("digest must be the 32-byte SM3 value e = SM3(ZA || M)")
    return int.from_bytes(digest, "big")


def _encode_signature(curve: Sm2Curve, r: int, s: int) -> bytes:
    return r.to_bytes(curve.size, "big") + s.to_bytes(curve.size, "big")


def _decode_signature(curve: Sm2Curve, signature: bytes) -> tuple[int, int] | None:
    """(r, s) if the signature is well formed with 1 <= r, s <= n-1 and r + s != n, else None."""
    size, n = curve.size, curve.n
    if not isinstance(signature, bytes | bytearray) or len(signature) != 2 * size:
        return None
    r = int.from_bytes(signature[:size], "big")
    s = int.from_bytes(signature[size:], "big")
    if not (1 <= r <= n - 1 and 1 <= s <= n - 1) or r + s == n:
        return None
    return r, s


# -- keys ----------------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class Sm2KeyPair:
    """An SM2 key pair: ``private`` 32 bytes (d), ``public`` 65 bytes ``04||X||Y``. ``repr`` hides d."""

    private: bytes
    public: bytes

    def __repr__(self) -> str:
        return f"Sm2KeyPair(public={self.public.hex().upper()})"


def generate_keypair(curve: Sm2Curve = SM2_P256) -> Sm2KeyPair:
    """A fresh key pair from gmalg, d uniform in [1, n-2] (GM/T 0003.1 6.1)."""
    d, point = _core(curve).generate_keypair()
    return Sm2KeyPair(d.to_bytes(curve.size, "big"), _encode_point(curve, point))


def public_from_private(d: bytes, curve: Sm2Curve = SM2_P256) -> bytes:
    """The public key ``04||X||Y`` = [d]G of a 32-byte private key."""
    return _encode_point(curve, _core(curve).generate_pk(_decode_private(curve, d)))


def compute_za(public: bytes, user_id: bytes = DEFAULT_USER_ID, curve: Sm2Curve = SM2_P256) -> bytes:
    """ZA = SM3(ENTL || ID || a || b || xG || yG || xA || yA) (GM/T 0003.2 5.5), by gmalg.

    ENTL is the bit length of ``user_id`` as 2 bytes; field elements are fixed width.
    """
    uid = _check_user_id(user_id)
    return _core(curve).entity_info(uid, _decode_public(curve, public))


# -- signatures ----------------------------------------------------------------------------------


def sign_digest(private: bytes, digest: bytes, *, k: int | None = None, curve: Sm2Curve = SM2_P256) -> bytes:
    """Sign a precomputed e = SM3(ZA || M) (GM/T 0003.2 6.1 steps A3-A7); returns r||s.

    gmalg's ``SM2Core.sign`` only takes the message (it hashes ZA || M itself), so these steps are
    written here on gmalg's ECDLP (``kG``) and its mod-n field ``fpn``; a random k comes from
    :mod:`secrets`, as in gmalg. ``k`` fixes the per-signature random number, for known-answer tests
    only; a fixed k that gives r = 0, r + k = n or s = 0 raises :class:`CryptoError` (the standard
    would draw another k).
    """
    d = _decode_private(curve, private)
    e = _check_digest(digest)
    n = curve.n
    if k is not None and not 1 <= k <= n - 1:
        raise CryptoError("k must be in [1, n-1]")
    ecdlp = curve.ecdlp
    fpn = ecdlp.fpn
    while True:
        k_used = k if k is not None else secrets.randbelow(n - 1) + 1
        x1, _ = ecdlp.kG(k_used)
        r = fpn.add(e, x1)
        s = fpn.mul(fpn.sub(k_used, fpn.mul(r, d)), fpn.inv(1 + d))
        if r != 0 and fpn.add(r, k_used) != 0 and s != 0:
            return _encode_signature(curve, r, s)
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
    """SM2 signature r||s (64 bytes) of ``message`` with e = SM3(ZA || M) (GM/T 0003.2 6.1), by gmalg.

    ``k`` fixes the per-signature random number (known-answer tests only), see :func:`sign_digest`.
    """
    d = _decode_private(curve, private)
    uid = _check_user_id(user_id)
    core = _core(curve, k)
    r, s = core.sign(bytes(message), d, uid, core.generate_pk(d))
    return _encode_signature(curve, r, s)


def verify_digest(public: bytes, digest: bytes, signature: bytes, *, curve: Sm2Curve = SM2_P256) -> bool:
    """Verify r||s over a precomputed e (GM/T 0003.2 7.1 steps B1, B2, B5-B7).

    gmalg's ``SM2Core.verify`` only takes the message, so B5-B7 are written here on gmalg's ECDLP
    point arithmetic and mod-n field. Returns False for any bad signature, including a wrong length,
    r or s outside [1, n-1] and r + s = n. A malformed public key or digest raises
    :class:`CryptoError` (a caller error, not a bad signature).
    """
    point = _decode_public(curve, public)
    e = _check_digest(digest)
    rs = _decode_signature(curve, signature)
    if rs is None:
        return False
    r, s = rs
    ecdlp = curve.ecdlp
    ec, fpn = ecdlp.ec, ecdlp.fpn
    sum_point = ec.add(ecdlp.kG(s), ec.mul(fpn.add(r, s), point))
    if sum_point == ec.INF:
        return False
    return fpn.add(e, sum_point[0]) == r


def verify(
    public: bytes,
    message: bytes,
    signature: bytes,
    user_id: bytes = DEFAULT_USER_ID,
    *,
    curve: Sm2Curve = SM2_P256,
) -> bool:
    """Verify an SM2 signature r||s of ``message`` by ``public`` (GM/T 0003.2 7.1), by gmalg.

    Same contract as :func:`verify_digest`; the r, s range checks run here before gmalg is called.
    """
    point = _decode_public(curve, public)
    uid = _check_user_id(user_id)
    rs = _decode_signature(curve, signature)
    if rs is None:
        return False
    return bool(_core(curve).verify(bytes(message), rs[0], rs[1], uid, point))
