"""A whole TEST certificate chain (CA -> issuer -> ICC) in one call, for emulated cards and test terminals.

RSA keys come from ``cryptography`` (OpenSSL's generator, which cannot be seeded), so two RSA chains
from the same seed differ in their keys; ``seed_or_rng`` fixes everything else (serial numbers and,
for SM2 [M], the keys). A deterministic fixture cache can store the chain's keys
(:meth:`~.keys.RsaPrivateKey.to_cryptography`) and rebuild it with :class:`~.keys.TestCa` ``key=`` and
the certificate functions.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date

from .certificates import (
    IccCertificateBundle,
    IssuerCertificateBundle,
    as_bytes,
    make_icc_certificate,
    make_issuer_certificate,
    recover_icc_public_key,
    recover_issuer_public_key,
)
from .common import OdaError, expiry_bytes, masked, pan_digits
from .keys import (
    PAYLAB_TEST_CA_INDEX,
    PAYLAB_TEST_SM2_CA_INDEX,
    Algorithm,
    CaPublicKey,
    PrivateKey,
    PublicKey,
    RsaPrivateKey,
    TestCa,
    sm2_keypair,
)

DEFAULT_CA_BITS = 1408
DEFAULT_ISSUER_BITS = 1152
DEFAULT_ICC_BITS = 1024
"""Default RSA sizes: a 1152-bit issuer key under a 1408-bit CA leaves a 4-byte remainder (92) and a
1024-bit ICC key under it a 26-byte remainder (9F48), so both remainder paths are exercised."""


@dataclass(frozen=True, repr=False)
class OdaChain:
    """A TEST chain: the CA entry for the terminal, the objects for the card, and the private keys.

    ``static_data`` is what the ICC certificate was signed over (the static data to be authenticated).
    """

    algorithm: Algorithm
    pan: str
    expiry: str
    ca_public: CaPublicKey
    issuer: IssuerCertificateBundle
    icc: IccCertificateBundle
    issuer_private: PrivateKey = field(compare=False)
    icc_private: PrivateKey = field(compare=False)
    static_data: bytes = b""

    @classmethod
    def generate(
        cls,
        pan: str | bytes,
        expiry: str,
        *,
        seed_or_rng: int | random.Random,
        algorithm: Algorithm = "rsa",
        static_data: bytes = b"",
        ca_index: int | None = None,
        ca_bits: int = DEFAULT_CA_BITS,
        issuer_bits: int = DEFAULT_ISSUER_BITS,
        icc_bits: int = DEFAULT_ICC_BITS,
        exponent: int = 3,
        issuer_id: str | None = None,
        issuer_expiry: str | None = None,
    ) -> OdaChain:
        """Generate CA, issuer and ICC keys and certify them for ``pan`` (``expiry`` MMYY).

        ``issuer_id`` defaults to the PAN's first 6 digits, ``issuer_expiry`` to ``expiry``. RSA sizes
        must satisfy N_ICC <= N_I <= N_CA (Book 2 6.1); ``exponent`` applies to all three RSA keys.
        """
        rng = seed_or_rng if isinstance(seed_or_rng, random.Random) else random.Random(seed_or_rng)
        digits = pan_digits(pan, field="pan")
        expiry_bytes(expiry)  # validates early
        if algorithm == "rsa":
            if not icc_bits <= issuer_bits <= ca_bits:
                raise OdaError(f"CA {ca_bits}, issuer {issuer_bits}, ICC {icc_bits} bits", check="key size",
                               field="modulus_bits", expected="ICC <= issuer <= CA (Book 2 6.1)")
            ca = TestCa(PAYLAB_TEST_CA_INDEX if ca_index is None else ca_index, ca_bits, exponent)
            issuer_private: PrivateKey = RsaPrivateKey.generate(issuer_bits, exponent)
            icc_private: PrivateKey = RsaPrivateKey.generate(icc_bits, exponent)
        elif algorithm == "sm2":
            ca = TestCa(PAYLAB_TEST_SM2_CA_INDEX if ca_index is None else ca_index, algorithm="sm2", rng=rng)
            issuer_private, icc_private = sm2_keypair(rng), sm2_keypair(rng)
        else:
            raise OdaError(f"algorithm {algorithm!r}", check="key type", field="algorithm",
                           expected="'rsa' or 'sm2'")
        static = as_bytes(static_data, field="static_data")
        issuer = make_issuer_certificate(ca, issuer_private, issuer_id or digits[:6], issuer_expiry or expiry,
                                         rng.getrandbits(24))
        icc = make_icc_certificate(issuer_private, icc_private, digits, expiry, rng.getrandbits(24), static)
        return cls(algorithm, digits, expiry, ca.public_key, issuer, icc, issuer_private, icc_private, static)

    def recover_issuer_public_key(self, *, today: date) -> PublicKey:
        """Terminal side: the issuer key from 90 / 92 / 9F32 under :attr:`ca_public`."""
        return recover_issuer_public_key(self.ca_public, self.issuer.certificate, self.issuer.remainder,
                                         self.issuer.exponent, self.pan, today=today)

    def recover_icc_public_key(self, *, today: date, static_data: bytes | None = None) -> PublicKey:
        """Terminal side: the whole chain, CA -> issuer -> ICC key (``static_data`` defaults to the signed one)."""
        issuer_public = self.recover_issuer_public_key(today=today)
        return recover_icc_public_key(issuer_public, self.icc.certificate, self.icc.remainder, self.icc.exponent,
                                      self.pan, self.static_data if static_data is None else static_data,
                                      today=today)

    def data_objects(self) -> dict[int, bytes]:
        """Card-side ODA objects to personalize: 8F, 90, 92, 9F32, 9F46, 9F48, 9F47 (empty ones left out)."""
        return {**self.issuer.data_objects(), **self.icc.data_objects()}

    def __repr__(self) -> str:
        return (f"OdaChain({self.algorithm.upper()}, PAN {masked(self.pan)}, expiry {self.expiry}, "
                f"{self.ca_public!r}, issuer {self.issuer_private!r}, ICC {self.icc_private!r})")
