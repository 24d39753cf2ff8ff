"""Public key certificates and static data authentication (EMV 4.3 Book 2 sections 5, 6.3, 6.4).

Issuance side (for test labs, signed by a :class:`~.keys.TestCa` and by issuer keys) and terminal side
(recovery and every check of Book 2, each failure an :class:`~.common.OdaError` naming the check).

Issuer public key certificate, tag 90, recovered with the CA key (Book 2 5.3 / 6.3, table 6)::

    1 header 6A | 1 format 02 | 4 issuer identifier (cn, F-padded) | 2 expiry MMYY | 3 serial
    1 hash algorithm 01 | 1 issuer public key algorithm 01 | 1 N_I | 1 exponent length
    N_CA - 36  issuer public key, or its leftmost bytes (BB-padded when N_I < N_CA - 36)
    20 hash | 1 trailer BC
    hash = SHA-1(format .. key field || remainder (92) || exponent (9F32))

ICC public key certificate, tag 9F46, recovered with the issuer key (Book 2 6.4, table 14)::

    1 header 6A | 1 format 04 | 10 application PAN (cn, F-padded) | 2 expiry MMYY | 3 serial
    1 hash algorithm 01 | 1 ICC public key algorithm 01 | 1 N_IC | 1 exponent length
    N_I - 42  ICC public key or its leftmost bytes (BB-padded) | 20 hash | 1 trailer BC
    hash = SHA-1(format .. key field || remainder (9F48) || exponent (9F47) || static data)

Signed static application data, tag 93 (Book 2 5.4, SDA)::

    1 header 6A | 1 format 03 | 1 hash algorithm | 2 data authentication code (9F45)
    N_I - 26 pad BB | 20 hash | 1 trailer BC;  hash = SHA-1(format .. pad || static data)

The checks follow Book 2's order: length, recovery, trailer, header, format, then (here) the
remainder length, the hash, the identifier / PAN, expiry, revocation, algorithm and exponent. Flipping
any bit of a certificate scrambles the whole recovered block, so it fails at the trailer or header;
a changed remainder, exponent or static data fails at the hash.

SM2 variants [M] (tag 90 / 9F46 in the paylab form of :mod:`.sm2_forms`) are chosen by the key types.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import date

from ..crypto import sm2
from ..errors import TlvError
from ..tlv import decode_one, parse_tag, tlv
from . import sm2_forms
from .common import (
    FORMAT_ICC_CERTIFICATE,
    FORMAT_ISSUER_CERTIFICATE,
    FORMAT_SIGNED_STATIC_DATA,
    HASH_LENGTH,
    HASH_SHA1,
    HASH_SM3,
    PAD_BYTE,
    PK_ALGORITHM_RSA,
    PK_ALGORITHM_SM2,
    OdaError,
    check_block_hash,
    check_exponent,
    check_hash_algorithm,
    check_not_expired,
    decode_cn,
    encode_cn,
    expiry_bytes,
    issuer_identifier_bytes,
    masked,
    open_block,
    pan_digits,
    seal_block,
    serial_bytes,
)
from .keys import (
    Algorithm,
    CaPublicKey,
    PrivateKey,
    PublicKey,
    RsaPrivateKey,
    RsaPublicKey,
    Sm2PublicKey,
    TestCa,
    public_key_of,
)

ISSUER_CERTIFICATE_OVERHEAD = 36
"""N_CA - 36 bytes of the issuer certificate hold the issuer key (Book 2 table 6)."""
ICC_CERTIFICATE_OVERHEAD = 42
"""N_I - 42 bytes of the ICC certificate hold the ICC key (Book 2 table 14)."""
SSAD_OVERHEAD = 26
"""N_I - 26 pad bytes in the signed static application data (Book 2 5.4)."""


def as_bytes(value: object, *, field: str) -> bytes:
    """``value`` as bytes; :class:`OdaError` for anything that is not bytes-like."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise OdaError(f"value of type {type(value).__name__}", check="input", field=field, expected="bytes")


# -- bundles -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuerCertificateBundle:
    """What the card carries for the issuer key: 8F, 90, 92 (may be empty) and 9F32 (empty for SM2)."""

    ca_index: int
    certificate: bytes
    remainder: bytes
    exponent: bytes
    algorithm: Algorithm = "rsa"

    def data_objects(self) -> dict[int, bytes]:
        """``{tag: value}`` of the objects to personalize; empty ones are left out."""
        objects = {0x8F: bytes([self.ca_index]), 0x90: self.certificate, 0x92: self.remainder,
                   0x9F32: self.exponent}
        return {tag: value for tag, value in objects.items() if value}

    def encode(self) -> bytes:
        """The objects as BER-TLV, e.g. for the body of a record template 70."""
        return b"".join(tlv(tag, value) for tag, value in self.data_objects().items())


@dataclass(frozen=True)
class IccCertificateBundle:
    """What the card carries for its key: 9F46, 9F48 (may be empty) and 9F47 (empty for SM2)."""

    certificate: bytes
    remainder: bytes
    exponent: bytes
    algorithm: Algorithm = "rsa"

    def data_objects(self) -> dict[int, bytes]:
        """``{tag: value}`` of the objects to personalize; empty ones are left out."""
        objects = {0x9F46: self.certificate, 0x9F48: self.remainder, 0x9F47: self.exponent}
        return {tag: value for tag, value in objects.items() if value}

    def encode(self) -> bytes:
        """The objects as BER-TLV."""
        return b"".join(tlv(tag, value) for tag, value in self.data_objects().items())


# -- RSA block helpers (Book 2 Annex A2.1) --------------------------------------------------------


def _split_key(modulus: bytes, field_length: int) -> tuple[bytes, bytes]:
    """Key field (BB-padded if the key is short) and remainder (Book 2 tables 6 and 14)."""
    if len(modulus) <= field_length:
        return modulus + bytes([PAD_BYTE]) * (field_length - len(modulus)), b""
    return modulus[:field_length], modulus[field_length:]


def _rsa_certificate(signer: RsaPrivateKey, subject: RsaPublicKey, fmt: int, subject_data: bytes, overhead: int,
                     hash_alg: int, hashed_extra: bytes, *, field: str) -> tuple[bytes, bytes, bytes]:
    """``(certificate, remainder, exponent)`` of an RSA key certified with an RSA key (Book 2 tables 6 and 14):
    ``subject_data`` stands between the format and the hash algorithm indicator, ``overhead`` is what the
    certificate leaves of N for the key, ``hashed_extra`` is hashed after the remainder and exponent."""
    key_field, remainder = _split_key(subject.modulus, signer.size - overhead)
    exponent = subject.exponent
    body = (bytes([fmt]) + subject_data + bytes([hash_alg, PK_ALGORITHM_RSA, subject.size, len(exponent)])
            + key_field)
    return seal_block(signer, body, remainder + exponent + hashed_extra, hash_alg, field=field), remainder, exponent


def _check_remainder(remainder: bytes, key_length: int, field_length: int, *, field: str) -> None:
    expected = max(0, key_length - field_length)
    if len(remainder) != expected:
        raise OdaError(f"remainder of {len(remainder)} bytes", check="remainder", field=field,
                       expected=f"{expected} bytes: a {key_length}-byte key with {field_length} bytes in the "
                                "certificate")


def _join_key(key_field: bytes, remainder: bytes, key_length: int) -> bytes:
    return key_field[:key_length] if key_length <= len(key_field) else key_field + remainder


def _check_pk_algorithm(value: int, expected: int, *, field: str) -> None:
    if value != expected:
        raise OdaError(f"public key algorithm indicator {value:02X}", check="public key algorithm", field=field,
                       expected=f"{expected:02X}")


def _check_exponent_field(declared_length: int, exponent: bytes, *, field: str) -> None:
    if declared_length != len(exponent):
        raise OdaError(f"exponent of {len(exponent)} bytes, the certificate says {declared_length}",
                       check="exponent", field=field, expected=f"{declared_length} bytes")
    check_exponent(exponent, field=field)


def _hash_alg_for(algorithm: Algorithm, hash_alg: int | None) -> int:
    default = HASH_SHA1 if algorithm == "rsa" else HASH_SM3
    if hash_alg is None:
        return default
    if hash_alg != default:
        raise OdaError(f"hash algorithm indicator {hash_alg:02X} with {algorithm.upper()}",
                       check="hash algorithm", field="hash_alg", expected=f"{default:02X}")
    return hash_alg


def _no_rsa_extras(remainder: bytes, exponent: bytes, *, rem_field: str, exp_field: str) -> None:
    if remainder:
        raise OdaError("an SM2 certificate has no remainder", check="remainder", field=rem_field,
                       expected="empty [M]")
    if exponent:
        raise OdaError("an SM2 certificate has no exponent", check="exponent", field=exp_field, expected="empty [M]")


# -- issuer public key certificate ----------------------------------------------------------------


def make_issuer_certificate(
    ca: TestCa,
    issuer_key: PrivateKey | PublicKey,
    issuer_id: str | bytes,
    expiry: str | bytes,
    serial: bytes | int,
    *,
    hash_alg: int | None = None,
) -> IssuerCertificateBundle:
    """Issuer Public Key Certificate signed by a TEST CA (Book 2 6.3 / table 6): tags 8F, 90, 92, 9F32.

    ``issuer_id``: the leftmost 3-8 PAN digits (``"476173"``) or their 4-byte F-padded form; ``expiry``
    ``"MMYY"``; ``serial`` 3 bytes. EMV requires N_I <= N_CA. With an SM2 CA the issuer key must be
    SM2 and the certificate is the paylab SM2 form [M].
    """
    id_raw, expiry_raw, serial_raw = issuer_identifier_bytes(issuer_id), expiry_bytes(expiry), serial_bytes(serial)
    issuer_public = public_key_of(issuer_key)
    ca_key = ca.private_key
    hash_alg = _hash_alg_for(ca.algorithm, hash_alg)
    if isinstance(ca_key, sm2.Sm2KeyPair):
        if not isinstance(issuer_public, Sm2PublicKey):
            raise OdaError("an SM2 CA certifies SM2 issuer keys", check="key type", field="issuer_key",
                           expected="Sm2KeyPair or Sm2PublicKey")
        header = bytes([sm2_forms.SM2_FORMAT_ISSUER_CERTIFICATE]) + id_raw + expiry_raw + serial_raw
        certificate = sm2_forms.seal_certificate(ca_key, header + bytes([HASH_SM3, PK_ALGORITHM_SM2]),
                                                 issuer_public.xy)
        return IssuerCertificateBundle(ca.index, certificate, b"", b"", "sm2")
    if not isinstance(issuer_public, RsaPublicKey):
        raise OdaError("an RSA CA certifies RSA issuer keys", check="key type", field="issuer_key",
                       expected="RsaPrivateKey or RsaPublicKey")
    n_ca, n_i = ca_key.size, issuer_public.size
    if n_i > n_ca:
        raise OdaError(f"issuer key of {n_i} bytes under a CA key of {n_ca}", check="key size", field="issuer_key",
                       expected="N_I <= N_CA (Book 2 6.1)")
    certificate, remainder, exponent = _rsa_certificate(
        ca_key, issuer_public, FORMAT_ISSUER_CERTIFICATE, id_raw + expiry_raw + serial_raw,
        ISSUER_CERTIFICATE_OVERHEAD, hash_alg, b"", field="tag 90")
    return IssuerCertificateBundle(ca.index, certificate, remainder, exponent, "rsa")


def recover_issuer_public_key(
    ca_public: CaPublicKey,
    cert_90: bytes,
    remainder_92: bytes,
    exponent_9F32: bytes,
    pan: str | bytes,
    *,
    today: date,
    revoked_serials: Collection[bytes] = (),
) -> PublicKey:
    """Terminal side of Book 2 6.3 (and 5.3 for SDA): the issuer public key, or :class:`OdaError`.

    Checks: certificate length = N_CA, recovery, trailer BC, header 6A, format 02, hash algorithm,
    remainder length, hash over the certificate data || 92 || 9F32, issuer identifier = leftmost PAN
    digits, expiry (``today`` is injected), serial not in ``revoked_serials`` (the CA's revocation
    list), public key algorithm 01, exponent. ``pan`` is tag 5A (digits or its cn bytes).
    """
    cert = as_bytes(cert_90, field="tag 90")
    remainder = as_bytes(remainder_92, field="tag 92")
    exponent = as_bytes(exponent_9F32, field="tag 9F32")
    digits = pan_digits(pan)
    field = "tag 90"
    if not isinstance(ca_public, CaPublicKey):
        raise OdaError(f"CA key of type {type(ca_public).__name__}", check="key type", field="ca_public",
                       expected="CaPublicKey")
    ca_key = ca_public.public_key
    if isinstance(ca_key, Sm2PublicKey):
        _no_rsa_extras(remainder, exponent, rem_field="tag 92", exp_field="tag 9F32")
        header, xy = sm2_forms.open_certificate(
            ca_key.point, cert, fmt=sm2_forms.SM2_FORMAT_ISSUER_CERTIFICATE,
            header_length=sm2_forms.ISSUER_HEADER_LENGTH, field=field, what="issuer certificate")
        _check_issuer_fields(header[1:5], header[5:7], header[7:10], digits, today, revoked_serials, field=field)
        return Sm2PublicKey.from_xy(xy)
    block = open_block(ca_key, cert, FORMAT_ISSUER_CERTIFICATE, field=field, what="issuer public key certificate")
    hash_alg, pk_alg, n_i, exp_length = block[11], block[12], block[13], block[14]
    check_hash_algorithm(hash_alg, field=field)
    key_field = block[15 : -1 - HASH_LENGTH]
    _check_remainder(remainder, n_i, len(key_field), field="tag 92")
    check_block_hash(block, hash_alg, block[1 : -1 - HASH_LENGTH] + remainder + exponent, field=field,
                     covers="the certificate data, the remainder (92) and the exponent (9F32)")
    _check_issuer_fields(block[2:6], block[6:8], block[8:11], digits, today, revoked_serials, field=field)
    _check_pk_algorithm(pk_alg, PK_ALGORITHM_RSA, field=field)
    _check_exponent_field(exp_length, exponent, field="tag 9F32")
    return RsaPublicKey(_join_key(key_field, remainder, n_i), exponent)


def _check_issuer_fields(
    issuer_id: bytes,
    expiry: bytes,
    serial: bytes,
    pan: str,
    today: date,
    revoked_serials: Collection[bytes],
    *,
    field: str,
) -> None:
    """Book 2 6.3 steps 8-10: issuer identifier, expiry, revocation."""
    id_digits = decode_cn(issuer_id)
    if id_digits is None or not 3 <= len(id_digits) <= 8:
        raise OdaError(f"issuer identifier {issuer_id.hex().upper()}", check="issuer identifier", field=field,
                       expected="3 to 8 digits padded with F")
    if not pan.startswith(id_digits):
        raise OdaError(f"issuer identifier {id_digits} does not match the PAN {masked(pan)}",
                       check="issuer identifier", field=field, expected="the leftmost 3-8 digits of the PAN")
    check_not_expired(expiry, today, field=field)
    if serial in {bytes(s) for s in revoked_serials}:
        raise OdaError(f"certificate serial {serial.hex().upper()} is on the CA revocation list",
                       check="revocation", field=field)


# -- ICC public key certificate -------------------------------------------------------------------


def make_icc_certificate(
    issuer_key: PrivateKey,
    icc_key: PrivateKey | PublicKey,
    pan: str | bytes,
    expiry: str | bytes,
    serial: bytes | int,
    static_data_to_be_authenticated: bytes,
    *,
    hash_alg: int | None = None,
) -> IccCertificateBundle:
    """ICC Public Key Certificate signed by the issuer (Book 2 6.4 / table 14): tags 9F46, 9F48, 9F47.

    ``static_data_to_be_authenticated`` is what the terminal will rebuild from the AFL records (and the
    SDA tag list), see :func:`static_data_to_be_authenticated`. EMV requires N_IC <= N_I. An SM2 issuer
    key gives the paylab SM2 form [M].
    """
    pan_raw = encode_cn(pan_digits(pan, field="pan"), 10)
    expiry_raw, serial_raw = expiry_bytes(expiry), serial_bytes(serial)
    static_data = as_bytes(static_data_to_be_authenticated, field="static_data_to_be_authenticated")
    icc_public = public_key_of(icc_key)
    if isinstance(issuer_key, sm2.Sm2KeyPair):
        _hash_alg_for("sm2", hash_alg)
        if not isinstance(icc_public, Sm2PublicKey):
            raise OdaError("an SM2 issuer certifies SM2 ICC keys", check="key type", field="icc_key",
                           expected="Sm2KeyPair or Sm2PublicKey")
        header = (bytes([sm2_forms.SM2_FORMAT_ICC_CERTIFICATE]) + pan_raw + expiry_raw + serial_raw
                  + bytes([HASH_SM3, PK_ALGORITHM_SM2]))
        certificate = sm2_forms.seal_certificate(issuer_key, header, icc_public.xy, static_data)
        return IccCertificateBundle(certificate, b"", b"", "sm2")
    if not isinstance(issuer_key, RsaPrivateKey):
        raise OdaError(f"issuer key of type {type(issuer_key).__name__}", check="key type", field="issuer_key",
                       expected="RsaPrivateKey or Sm2KeyPair")
    hash_alg = _hash_alg_for("rsa", hash_alg)
    if not isinstance(icc_public, RsaPublicKey):
        raise OdaError("an RSA issuer certifies RSA ICC keys", check="key type", field="icc_key",
                       expected="RsaPrivateKey or RsaPublicKey")
    n_i, n_ic = issuer_key.size, icc_public.size
    if n_ic > n_i:
        raise OdaError(f"ICC key of {n_ic} bytes under an issuer key of {n_i}", check="key size", field="icc_key",
                       expected="N_IC <= N_I (Book 2 6.1)")
    certificate, remainder, exponent = _rsa_certificate(
        issuer_key, icc_public, FORMAT_ICC_CERTIFICATE, pan_raw + expiry_raw + serial_raw,
        ICC_CERTIFICATE_OVERHEAD, hash_alg, static_data, field="tag 9F46")
    return IccCertificateBundle(certificate, remainder, exponent, "rsa")


def recover_icc_public_key(
    issuer_public: PublicKey,
    cert_9F46: bytes,
    remainder_9F48: bytes,
    exponent_9F47: bytes,
    pan: str | bytes,
    static_data: bytes,
    *,
    today: date,
) -> PublicKey:
    """Terminal side of Book 2 6.4: the ICC public key, or :class:`OdaError`.

    Checks: certificate length = N_I, recovery, trailer, header, format 04, hash algorithm, remainder
    length, hash over the certificate data || 9F48 || 9F47 || static data, recovered PAN = ``pan``
    (tag 5A), expiry, public key algorithm, exponent.
    """
    cert = as_bytes(cert_9F46, field="tag 9F46")
    remainder = as_bytes(remainder_9F48, field="tag 9F48")
    exponent = as_bytes(exponent_9F47, field="tag 9F47")
    static = as_bytes(static_data, field="static data")
    digits = pan_digits(pan)
    field = "tag 9F46"
    if isinstance(issuer_public, Sm2PublicKey):
        _no_rsa_extras(remainder, exponent, rem_field="tag 9F48", exp_field="tag 9F47")
        header, xy = sm2_forms.open_certificate(
            issuer_public.point, cert, fmt=sm2_forms.SM2_FORMAT_ICC_CERTIFICATE,
            header_length=sm2_forms.ICC_HEADER_LENGTH, signed_extra=static, field=field,
            what="ICC certificate and the static data to be authenticated")
        _check_pan(header[1:11], digits, field=field)
        check_not_expired(header[11:13], today, field=field)
        return Sm2PublicKey.from_xy(xy)
    if not isinstance(issuer_public, RsaPublicKey):
        raise OdaError(f"issuer key of type {type(issuer_public).__name__}", check="key type",
                       field="issuer_public", expected="RsaPublicKey or Sm2PublicKey")
    block = open_block(issuer_public, cert, FORMAT_ICC_CERTIFICATE, field=field, what="ICC public key certificate")
    hash_alg, pk_alg, n_ic, exp_length = block[17], block[18], block[19], block[20]
    check_hash_algorithm(hash_alg, field=field)
    key_field = block[21 : -1 - HASH_LENGTH]
    _check_remainder(remainder, n_ic, len(key_field), field="tag 9F48")
    check_block_hash(block, hash_alg, block[1 : -1 - HASH_LENGTH] + remainder + exponent + static, field=field,
                     covers="the certificate data, the remainder (9F48), the exponent (9F47) and the static data "
                            "to be authenticated")
    _check_pan(block[2:12], digits, field=field)
    check_not_expired(block[12:14], today, field=field)
    _check_pk_algorithm(pk_alg, PK_ALGORITHM_RSA, field=field)
    _check_exponent_field(exp_length, exponent, field="tag 9F47")
    return RsaPublicKey(_join_key(key_field, remainder, n_ic), exponent)


def _check_pan(raw: bytes, pan: str, *, field: str) -> None:
    """Book 2 6.4 step 8: the recovered Application PAN equals the PAN read from the card (5A)."""
    recovered = decode_cn(raw)
    if recovered != pan:
        shown = masked(recovered) if recovered else raw.hex().upper()
        raise OdaError(f"certificate PAN {shown} differs from the card's PAN {masked(pan)}", check="PAN",
                       field=field, expected="the PAN of tag 5A, F-padded")


# -- SDA: signed static application data (Book 2 section 5) ----------------------------------------


def sign_static_data(
    issuer_private: RsaPrivateKey,
    static_data: bytes,
    data_authentication_code: bytes,
    *,
    hash_alg: int = HASH_SHA1,
) -> bytes:
    """Signed Static Application Data, tag 93 (Book 2 5.4), with the 2-byte DAC (9F45)."""
    if not isinstance(issuer_private, RsaPrivateKey):
        raise OdaError(f"issuer key of type {type(issuer_private).__name__}", check="key type",
                       field="issuer_private", expected="RsaPrivateKey (SDA is RSA only)")
    dac = as_bytes(data_authentication_code, field="tag 9F45")
    if len(dac) != 2:
        raise OdaError(f"data authentication code of {len(dac)} bytes", check="input", field="tag 9F45",
                       expected="2 bytes")
    body = (bytes([FORMAT_SIGNED_STATIC_DATA, hash_alg]) + dac
            + bytes([PAD_BYTE]) * (issuer_private.size - SSAD_OVERHEAD))
    return seal_block(issuer_private, body, as_bytes(static_data, field="static data"), hash_alg, field="tag 93")


def verify_static_data(issuer_public: RsaPublicKey, ssad_93: bytes, static_data: bytes) -> bytes:
    """Terminal side of Book 2 5.4: the Data Authentication Code (9F45), or :class:`OdaError`."""
    if not isinstance(issuer_public, RsaPublicKey):
        raise OdaError(f"issuer key of type {type(issuer_public).__name__}", check="key type",
                       field="issuer_public", expected="RsaPublicKey (SDA is RSA only)")
    field = "tag 93"
    block = open_block(issuer_public, as_bytes(ssad_93, field=field), FORMAT_SIGNED_STATIC_DATA, field=field,
                       what="signed static application data")
    check_hash_algorithm(block[2], field=field)
    check_block_hash(block, block[2], block[1 : -1 - HASH_LENGTH] + as_bytes(static_data, field="static data"),
                     field=field, covers="the signed data and the static data to be authenticated")
    return block[3:5]


# -- static data to be authenticated (EMV Book 3 10.3) ---------------------------------------------


def static_data_to_be_authenticated(
    records: Iterable[tuple[int, bytes]],
    *,
    sda_tag_list: bytes = b"",
    data_objects: Mapping[int, bytes] | None = None,
) -> bytes:
    """The input of the ICC certificate / SSAD hash, built from the records the AFL marks for ODA.

    EMV Book 3 10.3: ``records`` are ``(sfi, record)`` with the record as read (template 70). For SFI
    1-10 only the template's value is used, for SFI 11-30 the whole record; a record of SFI 1-10 that
    is not a template 70 fails ODA. Then the values of the tags in the SDA Tag List (9F4A), which may
    only name the AIP (82), taken from ``data_objects``.
    """
    out = bytearray()
    for sfi, record in records:
        raw = as_bytes(record, field=f"SFI {sfi} record")
        if not 1 <= sfi <= 30:
            raise OdaError(f"SFI {sfi}", check="static data", field="AFL", expected="1 to 30")
        if sfi > 10:
            out += raw
            continue
        try:
            obj = decode_one(raw)
        except TlvError as exc:
            raise OdaError(f"record is not one BER-TLV object: {exc}", check="static data",
                           field=f"SFI {sfi} record") from None
        if obj.tag != 0x70:
            raise OdaError(f"record template {obj.tag:X}", check="static data", field=f"SFI {sfi} record",
                           expected="template 70 (Book 3 10.3)")
        out += obj.value
    pos, tag_list = 0, as_bytes(sda_tag_list, field="tag 9F4A")
    while pos < len(tag_list):
        try:
            tag, pos = parse_tag(tag_list, pos)
        except TlvError as exc:
            raise OdaError(str(exc), check="SDA tag list", field="tag 9F4A") from None
        if tag != 0x82:
            raise OdaError(f"tag {tag:X} in the SDA tag list", check="SDA tag list", field="tag 9F4A",
                           expected="only 82 (AIP), Book 3 10.3")
        value = (data_objects or {}).get(tag)
        if value is None:
            raise OdaError("the SDA tag list names the AIP but none was given", check="SDA tag list",
                           field="tag 82")
        out += as_bytes(value, field="tag 82")
    return bytes(out)
