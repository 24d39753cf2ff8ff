"""Offline data authentication (paylab.lab.protocol.oda): EMV 4.3 Book 2 sections 5-6, qPBOC fDDA, SM2 [M].

* Known answers, values only (the sources' code is LGPL; nothing of it is copied), each re-verified
  here by an independent recomputation with plain ``pow()`` and hashlib before being pinned [V]:

  - Visa VSDC 1408-bit TEST CA key A000000003/92 and its check sum
    [S: lumag/emv-tools ``data/visa-test.keys``], with an issuer certificate recovered under it
    (issuer 476173, expiry 12/22, serial 033489) [S: ilya-dubinsky/cfpp ``c/test/test_emv.c``].
  - A whole DDA chain from a real Mastercard card, CA A000000004/05 -> issuer (528588, 12/21) ->
    ICC (PAN 5285881254345653, 06/15, 112-byte key without remainder) -> SDAD over DDOL data
    00000000 [S: RfidResearchGroup/proxmark3 ``client/src/emv/test/dda_test.c``, from emv-tools].

* Round trips on generated TEST chains (RSA with and without remainders, exponent 3 and 65537, SM2
  [M]), and every check failing cleanly with :class:`OdaError` naming it when one byte is changed.
* Hypothesis: arbitrary bytes, and arbitrary blocks correctly signed by the CA, fed into every
  recovery/verification function raise only :class:`OdaError`.
"""

import contextlib
import hashlib
import random
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paylab.lab.protocol import oda
from paylab.lab.protocol.crypto import sm2
from paylab.lab.protocol.errors import ProtocolError
from paylab.lab.protocol.oda import sm2_forms
from paylab.lab.protocol.oda.common import expiry_end
from paylab.lab.protocol.tlv import tlv

TODAY = date(2025, 6, 1)
PAN = "6231234567890123"
EXPIRY = "1230"
STATIC_DATA = bytes.fromhex("5A086231234567890123") + bytes.fromhex("5F24031230315F280201563900")

UN = bytes.fromhex("2B29EBE4")
AMOUNT = bytes.fromhex("000000000100")
CURRENCY = bytes.fromhex("0156")
CARD_UN = bytes.fromhex("0A0B0C0D")
CTQ = bytes.fromhex("8000")
IDN = bytes.fromhex("1234")


def flip(data: bytes, index: int, mask: int = 0x01) -> bytes:
    out = bytearray(data)
    out[index] ^= mask
    return bytes(out)


def assert_check(excinfo: pytest.ExceptionInfo, checks: str | set[str]) -> None:
    wanted = {checks} if isinstance(checks, str) else checks
    assert excinfo.value.check in wanted, str(excinfo.value)
    assert f"{excinfo.value.check} check failed" in str(excinfo.value)


# -- fixtures: generated once per module (RSA generation is the slow part) --------------------------


@pytest.fixture(scope="module")
def rsa_chain() -> oda.OdaChain:
    return oda.OdaChain.generate(PAN, EXPIRY, seed_or_rng=7, static_data=STATIC_DATA)


@pytest.fixture(scope="module")
def sm2_chain() -> oda.OdaChain:
    return oda.OdaChain.generate(PAN, EXPIRY, seed_or_rng=7, algorithm="sm2", static_data=STATIC_DATA)


@pytest.fixture(scope="module")
def issuer_public(rsa_chain):
    return rsa_chain.recover_issuer_public_key(today=TODAY)


@pytest.fixture(scope="module")
def icc_public(rsa_chain):
    return rsa_chain.recover_icc_public_key(today=TODAY)


@pytest.fixture(scope="module")
def small_ca() -> oda.TestCa:
    return oda.TestCa(0xF2, 1024, 3)


def fdda_args(card_data: bytes | None = None) -> tuple[bytes, bytes, bytes, bytes]:
    return UN, AMOUNT, CURRENCY, card_data or oda.card_auth_related_data(CARD_UN, CTQ)


# -- known answers ---------------------------------------------------------------------------------

VISA_RID = bytes.fromhex("A000000003")
VISA_CA_92 = bytes.fromhex(
    "996AF56F569187D09293C14810450ED8EE3357397B18A2458EFAA92DA3B6DF6514EC060195318FD43BE9B8F0CC669E3F"
    "844057CBDDF8BDA191BB64473BC8DC9A730DB8F6B4EDE3924186FFD9B8C7735789C23A36BA0B8AF65372EB57EA5D89E7"
    "D14E9C7B6B557460F10885DA16AC923F15AF3758F0F03EBD3C5C2C949CBA306DB44E6A2C076C5F67E281D7EF56785DC4"
    "D75945E491F01918800A9E2DC66F60080566CE0DAF8D17EAD46AD8E30A247C9F"
)
VISA_CA_92_CHECKSUM = "429C954A3859CEF91295F663C963E582ED6EB253"
VISA_ISSUER_CERT = bytes.fromhex(
    "3C96F7658FBC29A202F19146BDE92166B0F6221BBCCB02E326710B9E229D16FAE9AD0C874C0685916E19F0E32693EE20"
    "1BCE2359509A6D6572F8EC3FC373126B343F9CB8153D61B7EAB2D42DE19D56083185A03DD14C268D40DF0835C55EABFA"
    "38ED28BCE42CD0013DA94F800518B753C246EFFBA08FD2029BAD5DFCF0DAF07B7D801C465FFD252C70B92153B330D95D"
    "CA2FA1FAAE2D0168A4EA8B475CD805DC32AA964C17BFCD2CD5D0309AB0EA761B"
)
VISA_ISSUER_REMAINDER = bytes.fromhex("50DA20DDA8953B693FED84366831BA1EEA97F78F792ACF8CB98FDF0149A7B78FDA1C4967")

MC_RID = bytes.fromhex("A000000004")
MC_CA_05 = bytes.fromhex(
    "B8048ABC30C90D976336543E3FD7091C8FE4800DF820ED55E7E94813ED00555B573FECA3D84AF6131A651D66CFF4284F"
    "B13B635EDD0EE40176D8BF04B7FD1C7BACF9AC7327DFAA8AA72D10DB3B8E70B2DDD811CB4196525EA386ACC33C0D9D45"
    "75916469C4E4F53E8E1C912CC618CB22DDE7C3568E90022E6BBA770202E4522A2DD623D180E215BD1D1507FE3DC90CA3"
    "10D27B3EFCCD8F83DE3052CAD1E48938C68D095AAC91B5F37E28BB49EC7ED597"
)
MC_CA_05_CHECKSUM = "EBFA0D5D06D8CE702DA3EAE890701D45E274C845"
MC_ISSUER_CERT = bytes.fromhex(
    "1714284F763B8586EE6D319951F7E63FA25076E50DC9D3200BA998D3A052ADBA9AB69AC6AD6ADD3CE09F0278F4074EC4"
    "EE9B1D2268A3E953575E454E50CD860BF424C51C597712D2AA057089DD8673E51B1E1D7188034892077AC18A6AE23488"
    "BEA9DF3B1A83F2C0800CD7C5CDF2FDE0496F7BC39FB4BF363299BFA637B2EC33C507E36821EEC2075F0E420D38A1C9F3"
    "127261BA316C987674FADB20EA7FEB75EE455D12146EA6F02E8B01EC2FA7A115"
)
MC_ISSUER_REMAINDER = bytes.fromhex("6E63B7BC70ABDD09341B34C03286BA9BD83BA7936C5B7798FB22C5E53FF240A26DBD6415")
MC_ICC_CERT = bytes.fromhex(
    "A42FBEB156B98DCB0554DA062ADCA5309A91F04FA2C7BD7102A8D73F16A3CFADE8AADF4F3FE2A2125CCDD77C6B9F78B5"
    "B4371CE0805725B0F9C027AF147D91E1FFDB201E9C170CE777053A172AD526DCAFD33895E1A947305C5B167F2E7C6F99"
    "1581A652EE473154760C2ED774214E50DFECDD4CF294C974B89EBCA25B5AB3C0BEB50DFAF782AFDE1433D90CA2A89D65"
    "1E75D67EBC7C3E36F5A165EE6132612939C1ECD399E46074B996D93A88E01E0A"
)
MC_SDAD = bytes.fromhex(
    "3D87F31056102D2512CFDE30900627C1263A76D1DAA821F50831E606C54544C258131EAEBE874DCB1A28CF82D3FF9111"
    "8260BC91113711D3B289FA41BE69C7A7B5C783E6F8F97FCE13F08B13FA44183E3718CEBF0C41473D2B0FF4DE44B6A02D"
    "75ADB6D4962393FFDF4E69026CDF38FF"
)
MC_RECORD_DATA = bytes.fromhex(
    "5F25031405015F24031506305A0852858812543456535F3401018E0C00000000000000001E031F039F0702FF009F0D05"
    "BC50BC00009F0E0500000000009F0F05BC70BC98009F4A01825F280206438C219F02069F03069F1A0295055F2A029A03"
    "9C019F37049F35019F45029F4C089F34038D0C910A8A0295059F37049F4C08"
)
MC_AIP = bytes.fromhex("3900")
MC_PAN = "5285881254345653"


@pytest.mark.vectors
def test_ca_key_check_sums_known_answers():
    visa = oda.CaPublicKey(VISA_RID, 0x92, VISA_CA_92, b"\x03")
    mastercard = oda.CaPublicKey(MC_RID, 0x05, MC_CA_05, b"\x03")
    assert visa.checksum.hex().upper() == VISA_CA_92_CHECKSUM
    assert mastercard.checksum.hex().upper() == MC_CA_05_CHECKSUM
    visa.verify_checksum(bytes.fromhex(VISA_CA_92_CHECKSUM))
    with pytest.raises(oda.OdaError) as excinfo:
        visa.verify_checksum(bytes.fromhex(MC_CA_05_CHECKSUM))
    assert_check(excinfo, "CA key check sum")
    assert "TEST" not in repr(visa)


@pytest.mark.vectors
def test_visa_test_issuer_certificate_known_answer():
    ca = oda.CaPublicKey(VISA_RID, 0x92, VISA_CA_92, b"\x03")
    key = oda.recover_issuer_public_key(ca, VISA_ISSUER_CERT, VISA_ISSUER_REMAINDER, b"\x03", "4761739001010010",
                                        today=date(2022, 12, 31))
    assert isinstance(key, oda.RsaPublicKey)
    assert key.size == 176
    assert key.e == 3
    assert key.modulus[:8].hex().upper() == "AD89995093465EFD"
    assert key.modulus.endswith(VISA_ISSUER_REMAINDER)
    # The same certificate one day after its expiry month, and under another issuer's PAN.
    with pytest.raises(oda.OdaError) as excinfo:
        oda.recover_issuer_public_key(ca, VISA_ISSUER_CERT, VISA_ISSUER_REMAINDER, b"\x03", "4761739001010010",
                                      today=date(2023, 1, 1))
    assert_check(excinfo, "expiry")
    with pytest.raises(oda.OdaError) as excinfo:
        oda.recover_issuer_public_key(ca, VISA_ISSUER_CERT, VISA_ISSUER_REMAINDER, b"\x03", "4761749001010010",
                                      today=date(2020, 1, 1))
    assert_check(excinfo, "issuer identifier")
    assert "476174******0010" in str(excinfo.value)  # the PAN is masked in messages


@pytest.mark.vectors
def test_mastercard_dda_chain_known_answer():
    ca = oda.CaPublicKey(MC_RID, 0x05, MC_CA_05, b"\x03")
    today = date(2015, 1, 1)
    issuer = oda.recover_issuer_public_key(ca, MC_ISSUER_CERT, MC_ISSUER_REMAINDER, b"\x03", MC_PAN, today=today)
    assert issuer.size == 176
    static = oda.static_data_to_be_authenticated([(1, tlv(0x70, MC_RECORD_DATA))], sda_tag_list=b"\x82",
                                                 data_objects={0x82: MC_AIP})
    assert static == MC_RECORD_DATA + MC_AIP
    icc = oda.recover_icc_public_key(issuer, MC_ICC_CERT, b"", b"\x03", bytes.fromhex(MC_PAN), static, today=today)
    assert isinstance(icc, oda.RsaPublicKey)
    assert icc.size == 112
    result = oda.verify_dynamic_signature(icc, MC_SDAD, bytes(4))
    assert result.icc_dynamic_number.hex().upper() == "7A33FB8C9546E1E7"
    assert result.icc_dynamic_data.hex().upper() == "087A33FB8C9546E1E7"
    assert (result.format, result.hash_algorithm) == (0x05, 0x01)
    with pytest.raises(oda.OdaError) as excinfo:
        oda.verify_dynamic_signature(icc, MC_SDAD, bytes.fromhex("00000001"))
    assert_check(excinfo, "hash")
    with pytest.raises(oda.OdaError) as excinfo:
        oda.recover_icc_public_key(issuer, MC_ICC_CERT, b"", b"\x03", MC_PAN, MC_RECORD_DATA, today=today)
    assert_check(excinfo, "hash")  # AIP missing from the static data
    with pytest.raises(oda.OdaError) as excinfo:
        oda.recover_icc_public_key(issuer, MC_ICC_CERT, b"", b"\x03", MC_PAN, static, today=date(2015, 7, 1))
    assert_check(excinfo, "expiry")


def test_known_answer_is_independent_of_the_module():
    """The Mastercard ICC block re-derived with plain pow() and hashlib (no paylab code)."""
    n_ca = int.from_bytes(MC_CA_05, "big")
    block = pow(int.from_bytes(MC_ISSUER_CERT, "big"), 3, n_ca).to_bytes(176, "big")
    issuer_modulus = block[15:-21] + MC_ISSUER_REMAINDER
    assert hashlib.sha1(block[1:-21] + MC_ISSUER_REMAINDER + b"\x03").digest() == block[-21:-1]
    icc_block = pow(int.from_bytes(MC_ICC_CERT, "big"), 3, int.from_bytes(issuer_modulus, "big")).to_bytes(176, "big")
    assert icc_block[:12].hex().upper() == "6A045285881254345653FFFF"
    assert hashlib.sha1(icc_block[1:-21] + b"\x03" + MC_RECORD_DATA + MC_AIP).digest() == icc_block[-21:-1]


# -- round trips -----------------------------------------------------------------------------------


def test_rsa_chain_round_trip_with_fdda(rsa_chain, icc_public):
    assert rsa_chain.ca_public.rid == bytes.fromhex("A000000333")
    assert rsa_chain.ca_public.test
    assert rsa_chain.ca_public.index == oda.PAYLAB_TEST_CA_INDEX
    objects = rsa_chain.data_objects()
    assert set(objects) == {0x8F, 0x90, 0x92, 0x9F32, 0x9F46, 0x9F48, 0x9F47}
    assert len(objects[0x92]) == 144 - (176 - 36)
    assert len(objects[0x9F48]) == 128 - (144 - 42)
    assert icc_public == rsa_chain.icc_private.public
    card_data = oda.card_auth_related_data(CARD_UN, CTQ)
    assert card_data.hex().upper() == "010A0B0C0D8000"
    sdad = oda.sign_fdda(rsa_chain.icc_private, IDN, *fdda_args())
    result = oda.verify_fdda(icc_public, sdad, *fdda_args())
    assert result.icc_dynamic_number == IDN
    assert result.algorithm == "rsa"
    assert oda.fdda_terminal_data(*fdda_args()) == UN + AMOUNT + CURRENCY + card_data


def test_chain_objects_encode_as_tlv(rsa_chain):
    encoded = rsa_chain.issuer.encode() + rsa_chain.icc.encode()
    assert encoded.startswith(bytes.fromhex("8F01F0") + b"\x90\x81\xb0")
    assert b"\x9f\x46\x81\x90" in encoded


def test_dda_internal_authenticate_round_trip(rsa_chain, icc_public):
    ddol_data = oda.dda_terminal_data({0x9F37: UN})
    assert ddol_data == UN
    sdad = oda.sign_dynamic_data(rsa_chain.icc_private, oda.icc_dynamic_data(IDN), ddol_data)
    for response in (tlv(0x80, sdad), tlv(0x77, tlv(0x9F4B, sdad))):
        recovered = oda.parse_internal_authenticate_response(response)
        assert oda.verify_dynamic_signature(icc_public, recovered, ddol_data).icc_dynamic_number == IDN
    with pytest.raises(oda.OdaError) as excinfo:
        oda.verify_dynamic_signature(icc_public, sdad, oda.dda_terminal_data({0x9F37: flip(UN, 3)}))
    assert_check(excinfo, "hash")


def test_sda_round_trip(rsa_chain, issuer_public):
    ssad = oda.sign_static_data(rsa_chain.issuer_private, STATIC_DATA, b"\xda\xc1")
    assert len(ssad) == issuer_public.size
    assert oda.verify_static_data(issuer_public, ssad, STATIC_DATA) == b"\xda\xc1"
    with pytest.raises(oda.OdaError) as excinfo:
        oda.verify_static_data(issuer_public, ssad, flip(STATIC_DATA, 5))
    assert_check(excinfo, "hash")
    with pytest.raises(oda.OdaError) as excinfo:
        oda.verify_static_data(issuer_public, flip(ssad, 40), STATIC_DATA)
    assert_check(excinfo, {"trailer", "header", "recovery"})


@pytest.mark.parametrize(
    ("ca_bits", "issuer_bits", "icc_bits", "exponent", "remainders"),
    [
        (1024, 1024, 1024, 3, (36, 42)),  # N_I = N_CA, N_IC = N_I: largest remainders
        (1408, 1024, 1024, 65537, (0, 42)),  # issuer key fits the certificate, BB-padded
        (1152, 1152, 1024, 3, (36, 26)),
    ],
)
def test_rsa_layouts(ca_bits, issuer_bits, icc_bits, exponent, remainders):
    chain = oda.OdaChain.generate(bytes.fromhex("6231234567890123FF"), "0130", seed_or_rng=random.Random(3),
                                  ca_bits=ca_bits, issuer_bits=issuer_bits, icc_bits=icc_bits, exponent=exponent)
    assert (len(chain.issuer.remainder), len(chain.icc.remainder)) == remainders
    assert chain.issuer.exponent == chain.icc.exponent == (b"\x03" if exponent == 3 else b"\x01\x00\x01")
    icc = chain.recover_icc_public_key(today=date(2030, 1, 31))
    assert icc == chain.icc_private.public
    sdad = oda.sign_dynamic_data(chain.icc_private, oda.icc_dynamic_data(bytes(8)), b"")
    assert oda.verify_dynamic_signature(icc, sdad, b"").icc_dynamic_number == bytes(8)


def test_sm2_chain_round_trip_and_tamper(sm2_chain):
    """SM2 [M]: paylab SM2/SM3 certificate and SDAD forms."""
    assert sm2_chain.ca_public.algorithm == "sm2"
    assert len(sm2_chain.ca_public.checksum) == 32
    assert set(sm2_chain.data_objects()) == {0x8F, 0x90, 0x9F46}
    assert sm2_chain.issuer.certificate[0] == 0x12
    assert sm2_chain.icc.certificate[0] == 0x14
    icc = sm2_chain.recover_icc_public_key(today=TODAY)
    assert isinstance(icc, oda.Sm2PublicKey)
    assert icc.point == sm2_chain.icc_private.public
    sdad = oda.sign_fdda(sm2_chain.icc_private, IDN, *fdda_args())
    assert sdad[:3] == bytes([0x15, 0x07, 3])
    result = oda.verify_fdda(icc, sdad, *fdda_args())
    assert (result.algorithm, result.icc_dynamic_number) == ("sm2", IDN)

    issuer = sm2_chain.recover_issuer_public_key(today=TODAY)
    cert, icc_cert = sm2_chain.issuer.certificate, sm2_chain.icc.certificate
    cases = [
        (lambda: oda.recover_issuer_public_key(sm2_chain.ca_public, flip(cert, 20), b"", b"", PAN, today=TODAY),
         "signature"),
        (lambda: oda.recover_issuer_public_key(sm2_chain.ca_public, flip(cert, 0), b"", b"", PAN, today=TODAY),
         "format"),
        (lambda: oda.recover_issuer_public_key(sm2_chain.ca_public, cert[:-1], b"", b"", PAN, today=TODAY),
         "length"),
        (lambda: oda.recover_issuer_public_key(sm2_chain.ca_public, cert, b"\x01", b"", PAN, today=TODAY),
         "remainder"),
        (lambda: oda.recover_issuer_public_key(sm2_chain.ca_public, cert, b"", b"\x03", PAN, today=TODAY),
         "exponent"),
        (lambda: oda.recover_issuer_public_key(sm2_chain.ca_public, cert, b"", b"", "5231234567890123", today=TODAY),
         "issuer identifier"),
        (lambda: oda.recover_issuer_public_key(sm2_chain.ca_public, cert, b"", b"", PAN, today=date(2031, 1, 1)),
         "expiry"),
        (lambda: oda.recover_icc_public_key(issuer, icc_cert, b"", b"", PAN, flip(STATIC_DATA, 0), today=TODAY),
         "signature"),
        (lambda: oda.recover_icc_public_key(issuer, icc_cert, b"", b"", "6231234567890124", STATIC_DATA,
                                            today=TODAY), "PAN"),
        (lambda: oda.verify_fdda(icc, sdad, flip(UN, 0), AMOUNT, CURRENCY, fdda_args()[3]), "signature"),
        (lambda: oda.verify_fdda(icc, sdad, UN, flip(AMOUNT, 5, 0x01), CURRENCY, fdda_args()[3]), "signature"),
        (lambda: oda.verify_fdda(icc, sdad[:-1], *fdda_args()), "dynamic data length"),
        (lambda: oda.verify_fdda(icc, flip(sdad, 1), *fdda_args()), "hash algorithm"),
    ]
    for call, check in cases:
        with pytest.raises(oda.OdaError) as excinfo:
            call()
        assert_check(excinfo, check)


# -- every check fails cleanly when one byte changes ------------------------------------------------


@pytest.mark.parametrize("index", [0, 1, 2, 40, 100, -22, -2, -1])
def test_issuer_certificate_byte_flips(rsa_chain, index):
    issuer = rsa_chain.issuer
    with pytest.raises(oda.OdaError) as excinfo:
        oda.recover_issuer_public_key(rsa_chain.ca_public, flip(issuer.certificate, index), issuer.remainder,
                                      issuer.exponent, PAN, today=TODAY)
    # Any change scrambles the recovered block: it is refused before its fields are read.
    assert_check(excinfo, {"trailer", "header", "format", "recovery"})


def issuer_call(chain, *, cert=None, remainder=None, exponent=None, pan=PAN, today=TODAY, revoked=()):
    issuer = chain.issuer
    return oda.recover_issuer_public_key(
        chain.ca_public,
        issuer.certificate if cert is None else cert,
        issuer.remainder if remainder is None else remainder,
        issuer.exponent if exponent is None else exponent,
        pan,
        today=today,
        revoked_serials=revoked,
    )


@pytest.mark.parametrize(
    ("change", "check"),
    [
        (lambda chain: {"cert": b""}, "length"),
        (lambda chain: {"cert": chain.issuer.certificate + b"\x00"}, "length"),
        (lambda chain: {"remainder": flip(chain.issuer.remainder, 2)}, "hash"),
        (lambda chain: {"remainder": chain.issuer.remainder[:-1]}, "remainder"),
        (lambda chain: {"remainder": chain.issuer.remainder + b"\x00"}, "remainder"),
        (lambda chain: {"exponent": b"\x02"}, "hash"),
        (lambda chain: {"exponent": b"\x01\x00\x01"}, "hash"),
        (lambda chain: {"pan": "6231244567890123"}, "issuer identifier"),
        (lambda chain: {"pan": "12345"}, "PAN"),
        (lambda chain: {"today": date(2031, 1, 1)}, "expiry"),
    ],
)
def test_issuer_checks(rsa_chain, change, check):
    with pytest.raises(oda.OdaError) as excinfo:
        issuer_call(rsa_chain, **change(rsa_chain))
    assert_check(excinfo, check)
    assert isinstance(excinfo.value, ProtocolError)


def test_issuer_revocation_and_ca_mismatch(rsa_chain, small_ca):
    issuer_key = rsa_chain.issuer_private
    bundle = oda.make_issuer_certificate(small_ca, oda.RsaPrivateKey.generate(1024), "623123", "1230", 0x0A0B0C)
    ca = small_ca.public_key
    oda.recover_issuer_public_key(ca, bundle.certificate, bundle.remainder, bundle.exponent, PAN, today=TODAY)
    with pytest.raises(oda.OdaError) as excinfo:
        oda.recover_issuer_public_key(ca, bundle.certificate, bundle.remainder, bundle.exponent, PAN, today=TODAY,
                                      revoked_serials={bytes.fromhex("0A0B0C")})
    assert_check(excinfo, "revocation")
    # The chain's certificate under another CA key: wrong length (different modulus size).
    with pytest.raises(oda.OdaError) as excinfo:
        issuer_call(rsa_chain, cert=rsa_chain.issuer.certificate[:128])
    assert_check(excinfo, "length")
    other = oda.TestCa(0xF0, 1408, 3)
    wrong = oda.make_issuer_certificate(other, issuer_key, "623123", "1230", 1)
    with pytest.raises(oda.OdaError) as excinfo:
        issuer_call(rsa_chain, cert=wrong.certificate, remainder=wrong.remainder)
    assert_check(excinfo, {"trailer", "header", "recovery"})


def icc_call(chain, issuer_public, *, cert=None, remainder=None, exponent=None, pan=PAN, static=STATIC_DATA,
             today=TODAY):
    icc = chain.icc
    return oda.recover_icc_public_key(
        issuer_public,
        icc.certificate if cert is None else cert,
        icc.remainder if remainder is None else remainder,
        icc.exponent if exponent is None else exponent,
        pan,
        static,
        today=today,
    )


SCRAMBLED = {"trailer", "header", "format", "recovery"}


@pytest.mark.parametrize(
    ("change", "check"),
    [
        (lambda icc: {"cert": flip(icc.certificate, 0)}, SCRAMBLED),
        (lambda icc: {"cert": flip(icc.certificate, 77)}, SCRAMBLED),
        (lambda icc: {"cert": flip(icc.certificate, -1)}, SCRAMBLED),
        (lambda icc: {"cert": icc.certificate[:-1]}, "length"),
        (lambda icc: {"remainder": flip(icc.remainder, 0)}, "hash"),
        (lambda icc: {"remainder": icc.remainder[:-1]}, "remainder"),
        (lambda icc: {"exponent": b"\x01\x00\x01"}, "hash"),
        (lambda icc: {"static": STATIC_DATA + b"\x00"}, "hash"),
        (lambda icc: {"static": b""}, "hash"),
        (lambda icc: {"pan": "6231234567890124"}, "PAN"),
        (lambda icc: {"pan": "62312345678901234"}, "PAN"),
        (lambda icc: {"today": date(2031, 1, 1)}, "expiry"),
    ],
)
def test_icc_checks(rsa_chain, issuer_public, change, check):
    with pytest.raises(oda.OdaError) as excinfo:
        icc_call(rsa_chain, issuer_public, **change(rsa_chain.icc))
    assert_check(excinfo, check)


def test_icc_certificate_expires_before_issuer():
    chain = oda.OdaChain.generate(PAN, "1230", seed_or_rng=1, issuer_expiry="1240", ca_bits=1024,
                                  issuer_bits=1024, icc_bits=1024)
    today = date(2031, 1, 1)
    chain.recover_issuer_public_key(today=today)
    with pytest.raises(oda.OdaError) as excinfo:
        chain.recover_icc_public_key(today=today)
    assert_check(excinfo, "expiry")
    assert excinfo.value.field == "tag 9F46"


@pytest.mark.parametrize(
    ("position", "check"),
    [
        (0, "hash"),  # UN
        (4, "hash"),  # amount
        (10, "hash"),  # currency
        (13, "hash"),  # card UN inside 9F69
        (17, "hash"),  # CTQ inside 9F69
        (12, "fDDA version"),  # 9F69 version byte
    ],
)
def test_fdda_terminal_data_changes(rsa_chain, icc_public, position, check):
    sdad = oda.sign_fdda(rsa_chain.icc_private, IDN, *fdda_args())
    data = flip(oda.fdda_terminal_data(*fdda_args()), position)
    args = (data[0:4], data[4:10], data[10:12], data[12:])
    with pytest.raises(oda.OdaError) as excinfo:
        oda.verify_fdda(icc_public, sdad, *args)
    assert_check(excinfo, check)
    if check == "hash":
        assert "terminal dynamic data" in str(excinfo.value)


def test_fdda_sdad_changes(rsa_chain, icc_public, issuer_public):
    sdad = oda.sign_fdda(rsa_chain.icc_private, IDN, *fdda_args())
    for bad, check in [
        (flip(sdad, 10), {"trailer", "header", "format", "recovery"}),
        (sdad[:-1], "length"),
        (sdad + b"\x00", "length"),
    ]:
        with pytest.raises(oda.OdaError) as excinfo:
            oda.verify_fdda(icc_public, bad, *fdda_args())
        assert_check(excinfo, check)
    with pytest.raises(oda.OdaError) as excinfo:  # the issuer key is not the ICC key
        oda.verify_fdda(issuer_public, sdad, *fdda_args())
    assert_check(excinfo, "length")


def test_fdda_input_checks():
    cases = [
        (lambda: oda.card_auth_related_data(b"\x01\x02\x03", CTQ), "input"),
        (lambda: oda.card_auth_related_data(CARD_UN, b"\x80"), "input"),
        (lambda: oda.fdda_terminal_data(UN[:3], AMOUNT, CURRENCY, fdda_args()[3]), "terminal data"),
        (lambda: oda.fdda_terminal_data(UN, bytes.fromhex("00000000010A"), CURRENCY, fdda_args()[3]),
         "terminal data"),
        (lambda: oda.fdda_terminal_data(UN, AMOUNT, b"\x01", fdda_args()[3]), "terminal data"),
        (lambda: oda.fdda_terminal_data(UN, AMOUNT, CURRENCY, b"\x02" + fdda_args()[3][1:]), "fDDA version"),
        (lambda: oda.fdda_terminal_data(UN, AMOUNT, CURRENCY, fdda_args()[3][:6]), "fDDA version"),
        (lambda: oda.icc_dynamic_data(b"\x01"), "ICC dynamic number"),
        (lambda: oda.icc_dynamic_data(bytes(9)), "ICC dynamic number"),
    ]
    for call, check in cases:
        with pytest.raises(oda.OdaError) as excinfo:
            call()
        assert_check(excinfo, check)


def test_dynamic_data_limits(rsa_chain, icc_public):
    key = rsa_chain.icc_private
    longest = bytes([8]) + bytes(key.size - 25 - 1)
    sdad = oda.sign_dynamic_data(key, longest, b"")
    assert oda.verify_dynamic_signature(icc_public, sdad, b"").icc_dynamic_data == longest
    with pytest.raises(oda.OdaError) as excinfo:
        oda.sign_dynamic_data(key, longest + b"\x00", b"")
    assert_check(excinfo, "dynamic data length")
    sdad = oda.sign_dynamic_data(key, b"\x09" + bytes(9), b"")  # a 9-byte IDN is not allowed
    with pytest.raises(oda.OdaError) as excinfo:
        oda.verify_dynamic_signature(icc_public, sdad, b"")
    assert_check(excinfo, "ICC dynamic number")


# -- generation-side checks ------------------------------------------------------------------------


def test_generation_rejects_bad_sizes_and_inputs(small_ca, rsa_chain):
    big = rsa_chain.issuer_private  # 1152 bits > the 1024-bit CA
    cases = [
        (lambda: oda.make_issuer_certificate(small_ca, big, "623123", "1230", 1), "key size"),
        (lambda: oda.make_icc_certificate(oda.RsaPrivateKey.generate(1024), big, PAN, "1230", 1, b""), "key size"),
        (lambda: oda.TestCa(1, 2048), "key size"),
        (lambda: oda.TestCa(1, 1000), "key size"),
        (lambda: oda.TestCa(1, 1024, 5), "exponent"),
        (lambda: oda.TestCa(256), "CA key"),
        (lambda: oda.make_issuer_certificate(small_ca, big.public, "62", "1230", 1), "issuer identifier"),
        (lambda: oda.make_issuer_certificate(small_ca, big.public, "623123", "1330", 1), "expiry"),
        (lambda: oda.make_issuer_certificate(small_ca, big.public, "623123", "1230", 1 << 24), "serial"),
        (lambda: oda.make_issuer_certificate(small_ca, sm2.generate_keypair(), "623123", "1230", 1), "key type"),
        (lambda: oda.make_issuer_certificate(small_ca, big, "623123", "1230", 1, hash_alg=0x02), "hash algorithm"),
        (lambda: oda.OdaChain.generate(PAN, "1230", seed_or_rng=1, icc_bits=1408), "key size"),
        (lambda: oda.OdaChain.generate("12AB", "1230", seed_or_rng=1), "PAN"),
    ]
    for call, check in cases:
        with pytest.raises(oda.OdaError) as excinfo:
            call()
        assert_check(excinfo, check)


def test_static_data_to_be_authenticated_rules():
    record = tlv(0x70, bytes.fromhex("5A0862312345678901235F2403301231"))
    assert oda.static_data_to_be_authenticated([(1, record), (11, record)]) == record[2:] + record
    cases = [
        (lambda: oda.static_data_to_be_authenticated([(2, tlv(0x77, b"\x5a\x00"))]), "static data"),
        (lambda: oda.static_data_to_be_authenticated([(2, b"\x70\x05\x00")]), "static data"),
        (lambda: oda.static_data_to_be_authenticated([(31, record)]), "static data"),
        (lambda: oda.static_data_to_be_authenticated([], sda_tag_list=b"\x9f\x36"), "SDA tag list"),
        (lambda: oda.static_data_to_be_authenticated([], sda_tag_list=b"\x82"), "SDA tag list"),
    ]
    for call, check in cases:
        with pytest.raises(oda.OdaError) as excinfo:
            call()
        assert_check(excinfo, check)


def test_expiry_is_inclusive_of_its_month():
    assert expiry_end(bytes.fromhex("0225"), field="x") == date(2025, 2, 28)
    assert expiry_end(bytes.fromhex("0224"), field="x") == date(2024, 2, 29)
    assert expiry_end(bytes.fromhex("1249"), field="x") == date(2049, 12, 31)
    assert expiry_end(bytes.fromhex("0150"), field="x") == date(1950, 1, 31)  # Book 4: 50-99 are 19YY
    for raw in ("1325", "0025", "1A25"):
        with pytest.raises(oda.OdaError):
            expiry_end(bytes.fromhex(raw), field="x")


def test_internal_authenticate_response_formats():
    for bad in (b"", tlv(0x77, tlv(0x9F26, bytes(8))), tlv(0x6F, b""), b"\x80\x05\x00"):
        with pytest.raises(oda.OdaError) as excinfo:
            oda.parse_internal_authenticate_response(bad)
        assert_check(excinfo, "response format")


# -- key objects -----------------------------------------------------------------------------------


def test_private_key_reprs_hide_key_material(rsa_chain, sm2_chain, small_ca):
    numbers = rsa_chain.icc_private.to_cryptography().private_numbers()
    secrets_hex = [f"{value:X}"[:12] for value in (numbers.d, numbers.p, numbers.q, numbers.dmp1)]
    sm2_d = sm2_chain.icc_private.private.hex().upper()[:12]
    texts = [repr(rsa_chain.icc_private), repr(rsa_chain.issuer_private), repr(rsa_chain), repr(sm2_chain),
             repr(sm2_chain.icc_private), repr(small_ca), str(rsa_chain.icc_private)]
    for text in texts:
        for secret in [*secrets_hex, sm2_d]:
            assert secret not in text.upper()
    assert "private part hidden" in repr(rsa_chain.icc_private)
    assert "TEST" in repr(small_ca)
    assert "TEST" in repr(small_ca.public_key)
    assert "623123******0123" in repr(rsa_chain)


def test_injected_keys_and_seeded_sm2_generation(rsa_chain):
    key = rsa_chain.issuer_private
    ca = oda.TestCa(0x10, key=key)
    assert ca.public_key.modulus == key.public.modulus
    with pytest.raises(oda.OdaError):
        oda.TestCa(0x10, 1408, key=key)
    rebuilt = oda.RsaPrivateKey(key.to_cryptography())
    assert rebuilt.public == key.public
    first = oda.OdaChain.generate(PAN, EXPIRY, seed_or_rng=42, algorithm="sm2")
    second = oda.OdaChain.generate(PAN, EXPIRY, seed_or_rng=42, algorithm="sm2")
    assert first.ca_public == second.ca_public
    assert first.icc_private.public == second.icc_private.public
    assert first.issuer.certificate[:13] == second.issuer.certificate[:13]  # same fields and serial


# -- property tests: only OdaError escapes ---------------------------------------------------------

blobs = st.binary(max_size=300)


@pytest.mark.property
@settings(max_examples=150, deadline=None)
@given(cert=st.one_of(blobs, st.binary(min_size=176, max_size=176)), remainder=st.binary(max_size=8),
       exponent=st.binary(max_size=4), pan=st.one_of(st.text(max_size=20), st.binary(max_size=10)))
def test_issuer_recovery_random_bytes(rsa_chain, cert, remainder, exponent, pan):
    with pytest.raises(oda.OdaError):
        oda.recover_issuer_public_key(rsa_chain.ca_public, cert, remainder, exponent, pan, today=TODAY)


@pytest.mark.property
@settings(max_examples=200, deadline=None)
@given(fmt=st.sampled_from([0x02, 0x02, 0x04]), body=st.binary(min_size=105, max_size=105),
       issuer_id=st.sampled_from([None, "623123FF"]), expiry=st.sampled_from([None, "1230"]),
       hash_alg=st.sampled_from([0x01, 0x01, 0x02]), pk_alg=st.sampled_from([0x01, 0x01, 0x04]),
       n_i=st.integers(0, 255), exp_length=st.integers(0, 4), good_hash=st.booleans(),
       remainder=st.binary(max_size=40), exponent=st.sampled_from([b"", b"\x03", b"\x01\x00\x01", b"\x00\x03"]))
def test_issuer_recovery_of_signed_random_blocks(small_ca, fmt, body, issuer_id, expiry, hash_alg, pk_alg, n_i,
                                                 exp_length, good_hash, remainder, exponent):
    """Blocks that pass trailer and header (signed by the CA), with arbitrary fields and, when
    ``good_hash``, a correct hash: whatever the recovery makes of them, only OdaError escapes."""
    fields = bytearray(body)  # block[2:107]: issuer id, expiry, serial, indicators, lengths, key field
    if issuer_id:
        fields[0:4] = bytes.fromhex(issuer_id)
    if expiry:
        fields[4:6] = bytes.fromhex(expiry)
    fields[9:13] = bytes([hash_alg, pk_alg, n_i, exp_length])
    data = bytes([fmt]) + bytes(fields)
    digest = hashlib.sha1(data + remainder + exponent).digest() if good_hash else bytes(20)
    cert = small_ca.private_key.sign_raw(b"\x6a" + data + digest + b"\xbc")
    with contextlib.suppress(oda.OdaError):
        key = oda.recover_issuer_public_key(small_ca.public_key, cert, remainder, exponent, PAN, today=TODAY)
        assert isinstance(key, oda.RsaPublicKey)
        assert key.size == n_i


@pytest.mark.property
@settings(max_examples=150, deadline=None)
@given(cert=st.one_of(blobs, st.binary(min_size=144, max_size=144)), remainder=st.binary(max_size=30),
       exponent=st.binary(max_size=4), static=st.binary(max_size=40))
def test_icc_recovery_random_bytes(issuer_public, cert, remainder, exponent, static):
    with pytest.raises(oda.OdaError):
        oda.recover_icc_public_key(issuer_public, cert, remainder, exponent, PAN, static, today=TODAY)


@pytest.mark.property
@settings(max_examples=150, deadline=None)
@given(sdad=st.one_of(blobs, st.binary(min_size=128, max_size=128)), terminal=st.binary(max_size=30))
def test_dynamic_verification_random_bytes(icc_public, sdad, terminal):
    with pytest.raises(oda.OdaError):
        oda.verify_dynamic_signature(icc_public, sdad, terminal)
    with pytest.raises(oda.OdaError):
        oda.verify_fdda(icc_public, sdad, terminal[:4], AMOUNT, CURRENCY, terminal[4:])


@pytest.mark.property
@settings(max_examples=40, deadline=None)
@given(cert=st.one_of(blobs, st.binary(min_size=141, max_size=141), st.binary(min_size=147, max_size=147)),
       sdad=st.binary(max_size=100), prefix=st.sampled_from([b"", b"\x12", b"\x14", b"\x15\x07\x02"]))
def test_sm2_recovery_random_bytes(sm2_chain, cert, sdad, prefix):
    issuer = oda.Sm2PublicKey(sm2_chain.issuer_private.public)
    for call in (
        lambda: oda.recover_issuer_public_key(sm2_chain.ca_public, prefix + cert[len(prefix):], b"", b"", PAN,
                                              today=TODAY),
        lambda: oda.recover_icc_public_key(issuer, prefix + cert[len(prefix):], b"", b"", PAN, b"", today=TODAY),
        lambda: oda.verify_dynamic_signature(issuer, prefix + sdad, b""),
    ):
        with pytest.raises(oda.OdaError):
            call()


@pytest.mark.property
@settings(max_examples=200, deadline=None)
@given(data=blobs, sfi=st.integers(-2, 40))
def test_parsers_random_bytes(data, sfi):
    for call in (
        lambda: oda.parse_internal_authenticate_response(data),
        lambda: oda.static_data_to_be_authenticated([(sfi, data)], sda_tag_list=data[:3]),
    ):
        with contextlib.suppress(oda.OdaError):
            call()


def test_sm2_form_constants_are_documented():
    """The paylab SM2 layouts [M]: header lengths match the documented field lists."""
    assert sm2_forms.ISSUER_HEADER_LENGTH == 1 + 4 + 2 + 3 + 1 + 1 + 1
    assert sm2_forms.ICC_HEADER_LENGTH == 1 + 10 + 2 + 3 + 1 + 1 + 1
    assert "[M]" in sm2_forms.__doc__
