"""SM2/SM3 offline data authentication in a documented paylab form [M].

PBOC 3.0 cards with SM algorithms (JR/T 0025.17) certify issuer and ICC keys with SM2 signatures
over SM3 and sign dynamic data with SM2. That standard is not available here, so **every layout
below is paylab's own [M]**: modelled on the RSA forms (EMV 4.3 Book 2 6.3, 6.4, 6.5.1) with a
detached signature instead of message recovery, and with the format codes (12, 14, 15) and
indicators believed to be PBOC's. Do not claim interoperability with real SM cards from these.

Signatures are SM2 (GM/T 0003.2) with SM3, ``e = SM3(ZA || M)``, default signer ID
``1234567812345678``, raw ``r || s`` (64 bytes), by :mod:`..crypto.sm2`. Keys are carried as
``X || Y`` (64 bytes).

Issuer public key certificate (tag 90; no 92, no 9F32) [M]::

    1  format 12 | 4 issuer identifier (cn) | 2 expiry MMYY | 3 serial
    1  hash algorithm indicator 07 (SM3) | 1 public key algorithm indicator 04 (SM2)
    1  public key length 40 | 64 issuer public key X || Y
    64 CA signature over all of the above

ICC public key certificate (tag 9F46; no 9F48, no 9F47) [M]::

    1  format 14 | 10 application PAN (cn) | 2 expiry MMYY | 3 serial
    1  hash algorithm indicator 07 | 1 public key algorithm indicator 04
    1  public key length 40 | 64 ICC public key X || Y
    64 issuer signature over all of the above || static data to be authenticated

Signed dynamic application data (tag 9F4B) [M]::

    1  format 15 | 1 hash algorithm indicator 07 | 1 L_DD | L_DD ICC dynamic data
    64 ICC signature over all of the above || terminal dynamic data
"""

from __future__ import annotations

from ..crypto import sm2
from ..errors import CryptoError
from .common import HASH_SM3, PK_ALGORITHM_SM2, OdaError

SM2_FORMAT_ISSUER_CERTIFICATE = 0x12
SM2_FORMAT_ICC_CERTIFICATE = 0x14
SM2_FORMAT_SIGNED_DYNAMIC_DATA = 0x15
SIGNATURE_LENGTH = 64
KEY_LENGTH = 64

ISSUER_HEADER_LENGTH = 13
"""Bytes before the key in the issuer certificate: format .. key length [M]."""
ICC_HEADER_LENGTH = 19
"""Bytes before the key in the ICC certificate [M]."""
SDAD_HEADER_LENGTH = 3
"""Bytes before the ICC dynamic data in the SDAD [M]."""
MAX_DYNAMIC_DATA = 0xFF - SDAD_HEADER_LENGTH - SIGNATURE_LENGTH
"""Largest L_DD that keeps the SDAD within 255 bytes [M]."""


def _sign(signer: sm2.Sm2KeyPair, message: bytes) -> bytes:
    if not isinstance(signer, sm2.Sm2KeyPair):
        raise OdaError(f"signer of type {type(signer).__name__}", check="key type", field="signer",
                       expected="Sm2KeyPair")
    return sm2.sign(signer.private, message)


def _verify(public: bytes, message: bytes, signature: bytes, *, field: str, what: str) -> None:
    try:
        ok = sm2.verify(public, message, signature)
    except CryptoError as exc:  # a malformed key is the caller's, but keep the error family
        raise OdaError(str(exc), check="public key", field=field) from None
    if not ok:
        raise OdaError(f"the SM2 signature does not verify over the {what}", check="signature", field=field,
                       expected="the data exactly as the signer signed it")


def seal_certificate(signer: sm2.Sm2KeyPair, header: bytes, xy: bytes, signed_extra: bytes = b"") -> bytes:
    """``header || len || X||Y || signature`` (the signature also covers ``signed_extra``) [M]."""
    body = header + bytes([len(xy)]) + xy
    return body + _sign(signer, body + signed_extra)


def open_certificate(
    signer_public: bytes,
    certificate: bytes,
    *,
    fmt: int,
    header_length: int,
    signed_extra: bytes = b"",
    field: str,
    what: str,
) -> tuple[bytes, bytes]:
    """Verified ``(header fields, X || Y)`` of a certificate in the paylab SM2 form [M].

    Checks, in order: length, format, hash and public key algorithm indicators, key length, signature.
    """
    expected_length = header_length + KEY_LENGTH + SIGNATURE_LENGTH
    if len(certificate) != expected_length:
        raise OdaError(f"{what} is {len(certificate)} bytes", check="length", field=field,
                       expected=f"{expected_length} bytes (paylab SM2 form [M])")
    if certificate[0] != fmt:
        raise OdaError(f"certificate format {certificate[0]:02X}", check="format", field=field,
                       expected=f"{fmt:02X}")
    hash_alg, pk_alg, key_length = certificate[header_length - 3 : header_length]
    if hash_alg != HASH_SM3:
        raise OdaError(f"hash algorithm indicator {hash_alg:02X}", check="hash algorithm", field=field,
                       expected=f"{HASH_SM3:02X} (SM3) [M]")
    if pk_alg != PK_ALGORITHM_SM2:
        raise OdaError(f"public key algorithm indicator {pk_alg:02X}", check="public key algorithm", field=field,
                       expected=f"{PK_ALGORITHM_SM2:02X} (SM2) [M]")
    if key_length != KEY_LENGTH:
        raise OdaError(f"public key length {key_length}", check="public key", field=field,
                       expected=f"{KEY_LENGTH} (X || Y)")
    body = certificate[: header_length + KEY_LENGTH]
    _verify(signer_public, body + signed_extra, certificate[len(body) :], field=field, what=what)
    return body[:header_length], body[header_length:]


def sign_dynamic_data(icc_private: sm2.Sm2KeyPair, dynamic_data: bytes, terminal_dynamic_data: bytes) -> bytes:
    """SDAD (tag 9F4B) in the paylab SM2 form [M]."""
    if len(dynamic_data) > MAX_DYNAMIC_DATA:
        raise OdaError(f"ICC dynamic data of {len(dynamic_data)} bytes", check="dynamic data length",
                       field="dynamic_data", expected=f"at most {MAX_DYNAMIC_DATA} bytes")
    body = bytes([SM2_FORMAT_SIGNED_DYNAMIC_DATA, HASH_SM3, len(dynamic_data)]) + dynamic_data
    return body + _sign(icc_private, body + terminal_dynamic_data)


def open_dynamic_data(icc_public: bytes, sdad: bytes, terminal_dynamic_data: bytes) -> tuple[int, bytes]:
    """Verified ``(hash algorithm indicator, ICC dynamic data)`` of an SM2 SDAD [M]."""
    field = "tag 9F4B"
    if len(sdad) < SDAD_HEADER_LENGTH + SIGNATURE_LENGTH:
        raise OdaError(f"SDAD of {len(sdad)} bytes", check="length", field=field,
                       expected=f"at least {SDAD_HEADER_LENGTH + SIGNATURE_LENGTH} bytes (paylab SM2 form [M])")
    if sdad[0] != SM2_FORMAT_SIGNED_DYNAMIC_DATA:
        raise OdaError(f"signed data format {sdad[0]:02X}", check="format", field=field,
                       expected=f"{SM2_FORMAT_SIGNED_DYNAMIC_DATA:02X}")
    if sdad[1] != HASH_SM3:
        raise OdaError(f"hash algorithm indicator {sdad[1]:02X}", check="hash algorithm", field=field,
                       expected=f"{HASH_SM3:02X} (SM3) [M]")
    ldd = sdad[2]
    if len(sdad) != SDAD_HEADER_LENGTH + ldd + SIGNATURE_LENGTH:
        raise OdaError(f"L_DD {ldd} in an SDAD of {len(sdad)} bytes", check="dynamic data length", field=field,
                       expected=f"{SDAD_HEADER_LENGTH + ldd + SIGNATURE_LENGTH} bytes")
    body = sdad[: SDAD_HEADER_LENGTH + ldd]
    _verify(icc_public, body + terminal_dynamic_data, sdad[len(body) :], field=field,
            what="dynamic data and terminal dynamic data")
    return sdad[1], body[SDAD_HEADER_LENGTH:]
