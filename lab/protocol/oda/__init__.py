"""Offline data authentication (EMV 4.3 Book 2 sections 5 and 6, qPBOC fDDA) for paylab's test labs.

* :mod:`.keys`: raw RSA keys (Annex B2.1), SM2 keys [M], the terminal's CA key entry with its check
  sum, and the paylab **TEST** CA (RID A000000333).
* :mod:`.certificates`: issuer (tag 90) and ICC (9F46) public key certificates, made and recovered with
  every Book 2 check (5.3, 6.3, 6.4), SDA (5.4, tag 93), and the static data to be authenticated
  (Book 3 10.3).
* :mod:`.dynamic`: signed dynamic application data (6.5, tag 9F4B) for DDA (INTERNAL AUTHENTICATE,
  DDOL) and qPBOC fDDA (9F37 || 9F02 || 5F2A || 9F69 [M]).
* :mod:`.sm2_forms`: the paylab SM2/SM3 certificate and SDAD layouts [M].
* :mod:`.chain`: :class:`OdaChain`, a whole TEST chain in one call.

Pure code: keys and randomness are injected or generated on request, ``today`` is an argument, and
every failed check raises :class:`OdaError` (a :class:`~..errors.ProtocolError`) naming the check.
"""

from .certificates import (
    IccCertificateBundle,
    IssuerCertificateBundle,
    make_icc_certificate,
    make_issuer_certificate,
    recover_icc_public_key,
    recover_issuer_public_key,
    sign_static_data,
    static_data_to_be_authenticated,
    verify_static_data,
)
from .chain import OdaChain
from .common import HASH_SHA1, HASH_SM3, OdaError
from .dynamic import (
    DEFAULT_DDOL,
    DynamicData,
    card_auth_related_data,
    dda_terminal_data,
    fdda_terminal_data,
    icc_dynamic_data,
    parse_internal_authenticate_response,
    sign_dynamic_data,
    sign_fdda,
    verify_dynamic_signature,
    verify_fdda,
)
from .keys import (
    PAYLAB_TEST_CA_INDEX,
    PAYLAB_TEST_RID,
    PAYLAB_TEST_SM2_CA_INDEX,
    CaPublicKey,
    RsaPrivateKey,
    RsaPublicKey,
    Sm2PublicKey,
    TestCa,
    sm2_keypair,
)

__all__ = [
    "DEFAULT_DDOL",
    "HASH_SHA1",
    "HASH_SM3",
    "PAYLAB_TEST_CA_INDEX",
    "PAYLAB_TEST_RID",
    "PAYLAB_TEST_SM2_CA_INDEX",
    "CaPublicKey",
    "DynamicData",
    "IccCertificateBundle",
    "IssuerCertificateBundle",
    "OdaChain",
    "OdaError",
    "RsaPrivateKey",
    "RsaPublicKey",
    "Sm2PublicKey",
    "TestCa",
    "card_auth_related_data",
    "dda_terminal_data",
    "fdda_terminal_data",
    "icc_dynamic_data",
    "make_icc_certificate",
    "make_issuer_certificate",
    "parse_internal_authenticate_response",
    "recover_icc_public_key",
    "recover_issuer_public_key",
    "sign_dynamic_data",
    "sign_fdda",
    "sign_static_data",
    "sm2_keypair",
    "static_data_to_be_authenticated",
    "verify_dynamic_signature",
    "verify_fdda",
    "verify_static_data",
]
