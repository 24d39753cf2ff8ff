"""SE-based remote payment: the order digest, order signatures, public keys and certificates.

Domain brief section 7: the wallet sends ``SM3(merchantId‖orderId‖amount‖currency‖time‖nonce)`` to
the SE applet after VERIFY PIN; the applet signs it with an SE-resident SM2 key (signer ID
``1234567812345678``) or, on older cards, RSA-2048; the server checks the certificate's binding to
the SE id, the nonce's freshness and the signature. The APDUs are proprietary (see
:mod:`paylab.drivers.se.applets.remote_sign`); the byte formats below are paylab's own [M].

**Order digest** (:func:`order_digest`). A bare concatenation is ambiguous (merchant ``12`` with
order ``3`` hashes like merchant ``1`` with order ``23``), so every field is length-prefixed:
``digest = SM3(LV(merchantId) ‖ LV(orderId) ‖ LV(amount) ‖ LV(currency) ‖ LV(time) ‖ LV(nonce))``
where ``LV(x) = len(x) (1 byte) ‖ x`` and

============  ===========================================================================
merchantId    ASCII, 1..40 printable characters (a UnionPay ACP ``merId`` has 15)
orderId       ASCII, 1..64 printable characters (ACP ``orderId``: 8..40 letters/digits)
amount        n12, 6 bytes BCD, in the currency's minor unit (fen), as EMV tag 9F02
currency      n3, 2 bytes BCD, ISO 4217 numeric (CNY = ``0156``), as EMV tag 5F2A
time          n14, 7 bytes BCD ``YYYYMMDDhhmmss`` (ACP ``txnTime``)
nonce         8..32 bytes chosen by the server (the freshness challenge)
============  ===========================================================================

**Signatures** over the 32-byte digest as the message M:

* ``"sm2"``: r‖s (64 bytes), e = SM3(Z_A ‖ M) with the signer's user ID (GM/T 0003.2);
* ``"rsa2048"``: RSASSA-PKCS1-v1_5 with SHA-256 over M (256 bytes).

**Public key template** (ISO/IEC 7816-8 style, tag ``7F49``): ``80`` algorithm (``01`` SM2,
``02`` RSA-2048), then ``86`` the SM2 point ``04‖X‖Y`` or ``81`` modulus and ``82`` exponent.

**Certificates.** The card stores either an X.509 certificate (DER, e.g. from CFCA) or a *paylab
compact certificate*, a card-verifiable certificate in the shape of ISO/IEC 7816-8 / BSI TR-03110::

    7F21 { 7F4E { 5F29 01 | 42 CA reference | 5F20 holder (SE id) | 5F25 YYYYMMDD | 5F24 YYYYMMDD
                  | 7F49 public key }
           5F37 CA signature over the encoded 7F4E object }

The CA signs like the card (SM2 with the CA's user ID, or RSA PKCS#1 v1.5 SHA-256).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from . import tlv
from .crypto import sm2
from .crypto.primitives import sm3
from .errors import CryptoError, ProtocolError, TlvError
from .gp.commands import encode_dgi

SignatureAlgorithm = Literal["sm2", "rsa2048"]

ALGORITHM_CODES: dict[SignatureAlgorithm, int] = {"sm2": 0x01, "rsa2048": 0x02}
"""Algorithm byte of the public key template (tag 80) and of the perso data element."""
ALGORITHMS_BY_CODE: dict[int, SignatureAlgorithm] = {v: k for k, v in ALGORITHM_CODES.items()}

DIGEST_LENGTH = 32
NONCE_LENGTHS = range(8, 33)
RSA_BITS = 2048
RSA_EXPONENT = 65537

TAG_PUBLIC_KEY = 0x7F49
TAG_CERTIFICATE = 0x7F21
TAG_CERTIFICATE_BODY = 0x7F4E
TAG_PROFILE = 0x5F29
TAG_CA_REFERENCE = 0x42
TAG_HOLDER = 0x5F20
TAG_EFFECTIVE = 0x5F25
TAG_EXPIRY = 0x5F24
TAG_SIGNATURE = 0x5F37
COMPACT_PROFILE = b"\x01"

# DER object identifiers (values only) used to read an X.509 SubjectPublicKeyInfo.
_OID_EC_PUBLIC_KEY = bytes.fromhex("2A8648CE3D0201")  # 1.2.840.10045.2.1
_OID_SM2_CURVE = bytes.fromhex("2A811CCF5501822D")  # 1.2.156.10197.1.301


class RemotePaymentError(ProtocolError):
    """A malformed order field, public key template or certificate."""


# --- order digest -------------------------------------------------------------------------------


def _lv(value: bytes, field: str) -> bytes:
    if len(value) > 0xFF:
        raise RemotePaymentError(f"{len(value)} bytes", field=field, expected="at most 255 bytes")
    return bytes((len(value),)) + value


def _ascii(value: str, field: str, limit: int) -> bytes:
    if not isinstance(value, str) or not 1 <= len(value) <= limit or not value.isascii() or not value.isprintable():
        raise RemotePaymentError(f"{value!r}", field=field, expected=f"1..{limit} printable ASCII characters")
    return value.encode("ascii")


def _bcd(value: int | str, digits: int, field: str) -> bytes:
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else value
    if not isinstance(text, str) or not text.isdigit() or not text.isascii() or len(text) > digits:
        raise RemotePaymentError(f"{value!r}", field=field, expected=f"a number of at most {digits} digits")
    return bytes.fromhex(text.zfill(digits))


def encode_order(
    merchant_id: str, order_id: str, amount: int, currency: int | str, time: str, nonce: bytes
) -> bytes:
    """The order data whose SM3 hash is signed (see the module docstring for each field)."""
    if not isinstance(time, str) or len(time) != 14:
        raise RemotePaymentError(f"{time!r}", field="time", expected="14 digits YYYYMMDDhhmmss")
    if not isinstance(nonce, bytes | bytearray) or len(nonce) not in NONCE_LENGTHS:
        raise RemotePaymentError("bad nonce", field="nonce", expected="8..32 bytes")
    return b"".join((
        _lv(_ascii(merchant_id, "merchantId", 40), "merchantId"),
        _lv(_ascii(order_id, "orderId", 64), "orderId"),
        _lv(_bcd(amount, 12, "amount"), "amount"),
        _lv(_bcd(currency, 4, "currency"), "currency"),
        _lv(_bcd(time, 14, "time"), "time"),
        _lv(bytes(nonce), "nonce"),
    ))


def order_digest(
    merchant_id: str, order_id: str, amount: int, currency: int | str, time: str, nonce: bytes
) -> bytes:
    """SM3 over :func:`encode_order`: the 32 bytes the wallet sends to SIGN ORDER DIGEST."""
    return sm3(encode_order(merchant_id, order_id, amount, currency, time, nonce))


# --- public keys --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PublicKey:
    """A signer's public key: an SM2 point ``04‖X‖Y`` or an RSA modulus and exponent."""

    algorithm: SignatureAlgorithm
    point: bytes = b""
    modulus: int = 0
    exponent: int = 0

    def encode(self) -> bytes:
        """The ``7F49`` public key template."""
        parts = [tlv.tlv(0x80, bytes((ALGORITHM_CODES[self.algorithm],)))]
        if self.algorithm == "sm2":
            parts.append(tlv.tlv(0x86, self.point))
        else:
            parts.append(tlv.tlv(0x81, self.modulus.to_bytes((self.modulus.bit_length() + 7) // 8, "big")))
            parts.append(tlv.tlv(0x82, self.exponent.to_bytes((self.exponent.bit_length() + 7) // 8, "big")))
        return tlv.tlv(TAG_PUBLIC_KEY, b"".join(parts))

    @classmethod
    def decode(cls, data: bytes) -> PublicKey:
        """Parse a ``7F49`` template (:class:`RemotePaymentError` when malformed)."""
        try:
            obj = tlv.decode_one(data)
            fields = tlv.to_dict(obj.children) if obj.tag == TAG_PUBLIC_KEY else {}
        except TlvError as exc:
            raise RemotePaymentError(str(exc), field="tag 7F49") from exc
        algorithm = ALGORITHMS_BY_CODE.get(int.from_bytes(fields.get(0x80, b"\xff"), "big"))
        if algorithm == "sm2" and 0x86 in fields:
            return cls.sm2(fields[0x86])
        if algorithm == "rsa2048" and 0x81 in fields and 0x82 in fields:
            return cls.rsa(int.from_bytes(fields[0x81], "big"), int.from_bytes(fields[0x82], "big"))
        raise RemotePaymentError("not an SM2 or RSA-2048 public key template", field="tag 7F49",
                                 expected="7F49 {80 01, 86 point} or {80 02, 81 modulus, 82 exponent}")

    @classmethod
    def sm2(cls, point: bytes) -> PublicKey:
        """An SM2 public key (checked to be a point of the SM2 curve)."""
        try:
            sm2.compute_za(bytes(point))
        except CryptoError as exc:
            raise RemotePaymentError(str(exc), field="SM2 public key") from exc
        return cls("sm2", point=bytes(point))

    @classmethod
    def rsa(cls, modulus: int, exponent: int) -> PublicKey:
        """An RSA-2048 public key."""
        if modulus.bit_length() != RSA_BITS or exponent < 3 or not exponent & 1:
            raise RemotePaymentError(f"{modulus.bit_length()}-bit modulus, exponent {exponent}",
                                     field="RSA public key", expected="a 2048-bit modulus, an odd exponent >= 3")
        return cls("rsa2048", modulus=modulus, exponent=exponent)

    def rsa_key(self) -> rsa.RSAPublicKey:
        """The key as a ``cryptography`` RSA public key."""
        return rsa.RSAPublicNumbers(self.exponent, self.modulus).public_key()


def _as_public_key(public_key: PublicKey | bytes | rsa.RSAPublicKey) -> PublicKey:
    if isinstance(public_key, PublicKey):
        return public_key
    if isinstance(public_key, rsa.RSAPublicKey):
        numbers = public_key.public_numbers()
        return PublicKey.rsa(numbers.n, numbers.e)
    raw = bytes(public_key)
    if len(raw) == 65 and raw[0] == 0x04:
        return PublicKey.sm2(raw)
    return PublicKey.decode(raw)


# --- keys and signatures ------------------------------------------------------------------------


def generate_sm2_private(random_bytes: bytes) -> bytes:
    """An SM2 private key d in [1, n-2] from 32 bytes of (card) randomness."""
    if len(random_bytes) != 32:
        raise CryptoError("32 random bytes are needed for an SM2 private key")
    n = sm2.SM2_P256.n
    return (int.from_bytes(random_bytes, "big") % (n - 2) + 1).to_bytes(32, "big")


def generate_rsa_private() -> bytes:
    """A fresh RSA-2048 private key (e = 65537), PKCS#8 DER (``cryptography`` draws the primes)."""
    key = rsa.generate_private_key(public_exponent=RSA_EXPONENT, key_size=RSA_BITS)
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def public_key_of(algorithm: SignatureAlgorithm, private: bytes) -> PublicKey:
    """The public key of a private key as :func:`sign_message` takes it."""
    if algorithm == "sm2":
        return PublicKey("sm2", point=sm2.public_from_private(private))
    numbers = _rsa_private(private).public_key().public_numbers()
    return PublicKey.rsa(numbers.n, numbers.e)


def _rsa_private(private: bytes) -> rsa.RSAPrivateKey:
    key = serialization.load_der_private_key(private, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CryptoError("not an RSA private key")
    return key


def sign_message(algorithm: SignatureAlgorithm, private: bytes, message: bytes,
                 user_id: bytes = sm2.DEFAULT_USER_ID) -> bytes:
    """SM2 r‖s with e = SM3(Z_A ‖ message), or RSA PKCS#1 v1.5 SHA-256 (``private`` is PKCS#8 DER)."""
    if algorithm == "sm2":
        return sm2.sign(private, message, user_id)
    return _rsa_private(private).sign(message, padding.PKCS1v15(), hashes.SHA256())


def verify_message(public_key: PublicKey | bytes | rsa.RSAPublicKey, message: bytes, signature: bytes,
                   user_id: bytes = sm2.DEFAULT_USER_ID) -> bool:
    """Counterpart of :func:`sign_message`; False for any bad signature."""
    key = _as_public_key(public_key)
    if key.algorithm == "sm2":
        return sm2.verify(key.point, message, signature, user_id)
    try:
        key.rsa_key().verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def verify_order_signature(public_key: PublicKey | bytes | rsa.RSAPublicKey, digest: bytes, signature: bytes,
                           alg: SignatureAlgorithm, user_id: bytes = sm2.DEFAULT_USER_ID) -> bool:
    """Server-side check of a SIGN ORDER DIGEST answer.

    ``public_key`` is a ``7F49`` template, a 65-byte SM2 point, a :class:`PublicKey` or a
    ``cryptography`` RSA key; it must be of algorithm ``alg``. Returns False for a bad signature;
    a malformed key, a digest that is not 32 bytes or an algorithm mismatch raise
    :class:`RemotePaymentError`.
    """
    key = _as_public_key(public_key)
    if key.algorithm != alg:
        raise RemotePaymentError(f"{key.algorithm} key for an {alg} signature", field="alg")
    if len(digest) != DIGEST_LENGTH:
        raise RemotePaymentError(f"digest of {len(digest)} bytes", field="digest", expected="32 bytes (SM3)")
    return verify_message(key, bytes(digest), bytes(signature), user_id)


# --- certificates -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompactCertificate:
    """A paylab compact certificate (module docstring): who certified which key of which SE."""

    ca_reference: str
    holder: bytes
    public_key: PublicKey
    effective: str
    expiry: str
    signature: bytes = b""

    def body(self) -> bytes:
        """The encoded ``7F4E`` object the CA signs."""
        for name in ("effective", "expiry"):
            value = getattr(self, name)
            if len(value) != 8 or not value.isdigit() or not value.isascii():
                raise RemotePaymentError(f"{value!r}", field=name, expected="YYYYMMDD")
        return tlv.tlv(TAG_CERTIFICATE_BODY, b"".join((
            tlv.tlv(TAG_PROFILE, COMPACT_PROFILE),
            tlv.tlv(TAG_CA_REFERENCE, _ascii(self.ca_reference, "CA reference", 64)),
            tlv.tlv(TAG_HOLDER, self.holder),
            tlv.tlv(TAG_EFFECTIVE, bytes.fromhex(self.effective)),
            tlv.tlv(TAG_EXPIRY, bytes.fromhex(self.expiry)),
            self.public_key.encode(),
        )))

    def encode(self) -> bytes:
        """The ``7F21`` certificate."""
        return tlv.tlv(TAG_CERTIFICATE, self.body() + tlv.tlv(TAG_SIGNATURE, self.signature))

    @classmethod
    def decode(cls, data: bytes) -> CompactCertificate:
        """Parse a ``7F21`` certificate (its signature is not checked here)."""
        try:
            cert = tlv.decode_one(data)
            if cert.tag != TAG_CERTIFICATE:
                raise TlvError(f"tag {cert.tag:X}", expected="7F21")
            children = {child.tag: child for child in cert.children}
            body = children[TAG_CERTIFICATE_BODY]
            fields = {child.tag: child for child in body.children}
            return cls(
                ca_reference=fields[TAG_CA_REFERENCE].value.decode("ascii"),
                holder=fields[TAG_HOLDER].value,
                public_key=PublicKey.decode(fields[TAG_PUBLIC_KEY].encode()),
                effective=fields[TAG_EFFECTIVE].value.hex(),
                expiry=fields[TAG_EXPIRY].value.hex(),
                signature=children[TAG_SIGNATURE].value,
            )
        except (TlvError, KeyError, UnicodeDecodeError) as exc:
            raise RemotePaymentError(f"malformed compact certificate ({exc})", field="tag 7F21") from exc


def issue_compact_certificate(ca_algorithm: SignatureAlgorithm, ca_private: bytes, *, ca_reference: str,
                              holder: bytes, public_key: PublicKey, effective: str, expiry: str,
                              ca_user_id: bytes = sm2.DEFAULT_USER_ID) -> bytes:
    """What an issuer CA does with the key the card generated: certify it for ``holder`` (the SE id)."""
    unsigned = CompactCertificate(ca_reference, bytes(holder), public_key, effective, expiry)
    signature = sign_message(ca_algorithm, ca_private, unsigned.body(), ca_user_id)
    return CompactCertificate(ca_reference, bytes(holder), public_key, effective, expiry, signature).encode()


def verify_compact_certificate(certificate: bytes | CompactCertificate, ca_public_key: PublicKey | bytes, *,
                               holder: bytes | None = None, on_date: str | None = None,
                               ca_user_id: bytes = sm2.DEFAULT_USER_ID) -> bool:
    """Server-side check: the CA's signature, the binding to the SE id ``holder`` and the validity
    period on ``on_date`` (``YYYYMMDD``) when given."""
    cert = certificate if isinstance(certificate, CompactCertificate) else CompactCertificate.decode(certificate)
    if holder is not None and not hmac.compare_digest(cert.holder, bytes(holder)):
        return False
    if on_date is not None and not cert.effective <= on_date <= cert.expiry:
        return False
    return verify_message(ca_public_key, cert.body(), cert.signature, ca_user_id)


def _children(obj: tlv.Tlv) -> Sequence[tlv.Tlv]:
    return obj.children if obj.constructed else ()


def certificate_public_key(certificate: bytes) -> PublicKey:
    """The subject public key of a compact certificate or of an X.509 DER certificate.

    X.509 is read by walking the DER (tbsCertificate → subjectPublicKeyInfo) because
    ``cryptography`` cannot load SM2 keys; RSA keys are then loaded by ``cryptography``.
    """
    data = bytes(certificate)
    if data[:2] == b"\x7f\x21":
        return CompactCertificate.decode(data).public_key
    try:
        tbs = _children(_children(tlv.decode_one(data))[0])
        fields = list(tbs[1:] if tbs and tbs[0].tag == 0xA0 else tbs)
        spki = fields[5]
        algorithm, bits = _children(spki)
        oids = [child.value for child in _children(algorithm) if child.tag == 0x06]
    except (TlvError, IndexError, ValueError) as exc:
        raise RemotePaymentError(f"not a DER certificate ({exc})", field="certificate") from exc
    if oids[:1] == [_OID_EC_PUBLIC_KEY]:
        if oids[1:] != [_OID_SM2_CURVE]:
            raise RemotePaymentError("EC key on a curve other than SM2", field="subjectPublicKeyInfo")
        return PublicKey.sm2(bits.value[1:])
    try:
        key = serialization.load_der_public_key(spki.encode())
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise RemotePaymentError(f"unreadable subject public key ({exc})", field="subjectPublicKeyInfo") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise RemotePaymentError(f"{type(key).__name__} is not SM2 or RSA", field="subjectPublicKeyInfo")
    return _as_public_key(key)


def pin_block(pin: str) -> bytes:
    """ISO 9564-1 format 2 plaintext PIN block (as EMV offline PIN): ``2N PP..PP FF..``, 8 bytes."""
    if not isinstance(pin, str) or not pin.isdigit() or not pin.isascii() or not 4 <= len(pin) <= 12:
        raise RemotePaymentError("PIN must be 4..12 digits", field="PIN")
    return bytes.fromhex(f"2{len(pin):X}{pin}".ljust(16, "F"))


def check_pin_block(block: bytes) -> bool:
    """True if ``block`` is a well-formed format 2 PIN block."""
    text = bytes(block).hex().upper()
    if len(block) != 8 or text[0] != "2":
        return False
    length = int(text[1], 16)
    return 4 <= length <= 12 and text[2:2 + length].isdigit() and set(text[2 + length:]) <= {"F"}


# --- APDUs and personalisation data of the signing applet -----------------------------------------
# The card side and the table of commands are in paylab.drivers.se.applets.remote_sign.

CLA_PROPRIETARY = 0x80
INS_VERIFY = 0x20
PIN_REFERENCE = 0x81  #: VERIFY P2: specific (application) reference data, PIN number 1
INS_GENERATE_KEY_PAIR = 0x46
INS_GET_PUBLIC_KEY = 0x4A
INS_GET_CERTIFICATE = 0x4C
INS_SIGN_ORDER_DIGEST = 0x2A
P1P2_SIGN_ORDER_DIGEST = 0x9E9A  #: as ISO/IEC 7816-8 PSO: COMPUTE DIGITAL SIGNATURE, in a proprietary class
SW_MORE_DATA = 0x6310  #: GET PUBLIC KEY / GET CERTIFICATE: more bytes follow this chunk

PERSO_ITEMS: dict[str, tuple[int, int]] = {
    "algorithm": (0x0201, 0xDF21),          # 1 byte: 01 SM2, 02 RSA-2048
    "user_id": (0x0202, 0xDF22),            # SM2 signer ID, 1..255 bytes
    "certificate": (0x0203, 0xDF23),        # X.509 DER or paylab compact certificate
    "generate_key_pair": (0x0210, 0xDF26),  # empty: generate on card, answer the 7F49 template
    "pin": (0x8010, 0xDF24),                # ISO 9564 format 2 PIN block (8 bytes)
    "pin_try_limit": (0x9010, 0xDF25),      # 1 byte limit, or EMV CPS style counter || limit
}
"""Personalisation data elements: ``name -> (DGI, BER tag)`` for STORE DATA in DGI or BER format."""


class CardAnswerError(RemotePaymentError):
    """The signing applet answered an error status word (``sw``)."""

    def __init__(self, message: str, *, sw: int) -> None:
        self.sw = sw
        super().__init__(f"{message}: SW {sw:04X}", field="SW")


def verify_pin_command(pin: str | None) -> bytes:
    """VERIFY ``00 20 00 81 08 <PIN block>``; ``None`` asks for the remaining tries (no data)."""
    header = bytes((0x00, INS_VERIFY, 0x00, PIN_REFERENCE))
    return header if pin is None else header + b"\x08" + pin_block(pin)


def generate_key_pair_command() -> bytes:
    """GENERATE KEY PAIR ``80 46 00 00 00`` (personalisation phase only)."""
    return bytes((CLA_PROPRIETARY, INS_GENERATE_KEY_PAIR, 0x00, 0x00, 0x00))


def read_command(ins: int, offset: int = 0) -> bytes:
    """GET PUBLIC KEY / GET CERTIFICATE ``80 4A|4C offset(2) 00``."""
    if not 0 <= offset <= 0x7FFF:
        raise RemotePaymentError(f"offset {offset}", field="P1P2", expected="0..32767")
    return bytes((CLA_PROPRIETARY, ins)) + offset.to_bytes(2, "big") + b"\x00"


def sign_order_command(digest: bytes) -> bytes:
    """SIGN ORDER DIGEST ``80 2A 9E 9A 20 <SM3 digest> 00``."""
    if len(digest) != DIGEST_LENGTH:
        raise RemotePaymentError(f"digest of {len(digest)} bytes", field="digest", expected="32 bytes (SM3)")
    return bytes((CLA_PROPRIETARY, INS_SIGN_ORDER_DIGEST)) + P1P2_SIGN_ORDER_DIGEST.to_bytes(2, "big") \
        + b"\x20" + bytes(digest) + b"\x00"


def read_object(transmit: Callable[[bytes], bytes], ins: int) -> bytes:
    """Read the whole public key (``INS_GET_PUBLIC_KEY``) or certificate (``INS_GET_CERTIFICATE``)
    in chunks; ``transmit`` sends one C-APDU and returns the R-APDU (data and SW)."""
    out = b""
    while True:
        rapdu = transmit(read_command(ins, len(out)))
        sw = int.from_bytes(rapdu[-2:], "big")
        if sw not in (0x9000, SW_MORE_DATA) or len(rapdu) == 2:
            raise CardAnswerError(f"reading object {ins:02X} at offset {len(out)}", sw=sw)
        out += rapdu[:-2]
        if sw == 0x9000:
            return out


def encode_perso(items: Sequence[tuple[str, bytes]], fmt: Literal["dgi", "ber"] = "dgi") -> bytes:
    """STORE DATA payload for the signing applet: ``(name, value)`` pairs of :data:`PERSO_ITEMS`
    as DGIs (``DGI(2) L value``, L = ``FF xxxx`` from 255 bytes on, EMV CPS) or BER-TLVs.
    The payload may be cut anywhere across STORE DATA commands; the applet reassembles it."""
    out = b""
    for name, value in items:
        dgi, tag = PERSO_ITEMS[name]
        if fmt == "ber":
            out += tlv.tlv(tag, bytes(value))
            continue
        out += encode_dgi(dgi, bytes(value))
    return out
