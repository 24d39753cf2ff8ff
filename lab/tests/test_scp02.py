"""SCP02 (GP Card Spec v2.3 Annex E): real-card vectors, host <-> card round trips, failures.

Vectors: osmocom/pysim ``tests/unittests/test_globalplatform.py`` (values only; the code is GPL),
a sysmocom card with ``i`` = 55 at security level 01 (domain brief section 3 [V]).
"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paylab.lab.protocol.apdu import CommandApdu
from paylab.lab.protocol.crypto import primitives
from paylab.lab.protocol.errors import ApduError, CryptoError, SecureChannelError
from paylab.lab.protocol.gp import (
    GP_DEFAULT_TEST_KEY,
    ChannelState,
    Scp02Session,
    SecurityLevel,
    StaticKeys,
    scp02,
)

h = bytes.fromhex

# --- the pysim real-card vector -----------------------------------------------------------------
KEYS = StaticKeys(
    enc=h("100102030405060708090a0b0c0d0e0f"),
    mac=h("101102030405060708090a0b0c0d0e0f"),
    dek=h("102102030405060708090a0b0c0d0e0f"),
    kvn=0x20,
)
HOST_CHALLENGE = h("40A62C37FA6304F8")
INIT_UPDATE = h("805020000840A62C37FA6304F800")
IU_RESPONSE = h("00000000000000000000700200016B4524ABEE7CF32EA3838BC148F3")
EXT_AUTH = h("8482010010BA6961667737C5BCEBECE14C7D6A4376")
WRAPPED = [  # plain -> wrapped, chained in this order (ICV = encrypted previous C-MAC)
    (h("80F22002"), h("84F220020814DB34FA4341DCA8")),  # case 1
    (h("80ca006600"), h("84CA00660855ED7C5FF069512B00")),  # case 2
    (h("80F220020a4f0212345c054f9f70c5"), h("84F22002124F0212345C054F9F70C58FC1B380C4228AF8")),  # case 3
    (h("80f28002024f0000"), h("84F280020A4F003B95F09317DE6A4E00")),  # case 4
]
# PUT KEY: a 16-byte TLS-PSK DEK-encrypted in the same session (pysim PutKey_PSK_Test).
PSK_CLEAR = h("303132333435363738393a3b3c3d3e3f")
PSK_CIPHERED = h("15abf1fe16ccc5aa13743394442942cd")


def vector_host_session():
    return Scp02Session.host_from_init_update_response(KEYS, HOST_CHALLENGE, IU_RESPONSE, 0x01)


def open_pair(level=0x01, i=scp02.DEFAULT_I, keys=KEYS, seq=b"\x00\x2a", card_challenge=None):
    """A host and a card session that went through INITIALIZE UPDATE + EXTERNAL AUTHENTICATE."""
    host_challenge = bytes(range(8))
    capdu = Scp02Session.host_initialize_update(keys, host_challenge)
    card, response = Scp02Session.card_respond_init_update(
        keys, capdu, sequence_counter=seq, card_challenge=card_challenge,
        random_bytes=lambda n: bytes([0xC5]) * n, i=i)
    host = Scp02Session.host_from_init_update_response(keys, host_challenge, response, level, i=i)
    card.card_external_authenticate(host.external_authenticate())
    return host, card


# --- vectors ------------------------------------------------------------------------------------

@pytest.mark.vectors
def test_initialize_update_apdu():
    assert Scp02Session.host_initialize_update(KEYS, HOST_CHALLENGE) == INIT_UPDATE


@pytest.mark.vectors
def test_external_authenticate_vector():
    host = vector_host_session()
    assert host.kvn == 0x70  # the card reports its own KVN
    assert host.sequence_counter == h("0001")
    assert host.card_challenge == h("6B4524ABEE7C")
    assert host.external_authenticate() == EXT_AUTH
    assert host.level == SecurityLevel.C_MAC


@pytest.mark.vectors
def test_wrap_vectors_cases_1_to_4():
    host = vector_host_session()
    host.external_authenticate()
    for plain, wrapped in WRAPPED:
        assert host.wrap(plain) == wrapped


@pytest.mark.vectors
def test_card_side_reproduces_the_vector():
    card, response = Scp02Session.card_respond_init_update(
        KEYS, INIT_UPDATE, sequence_counter=h("0001"), card_challenge=h("6B4524ABEE7C"))
    # Same cryptogram and challenge; the real card reports KVN 70 for P1 20, we report our own.
    assert response[:10] == IU_RESPONSE[:10]
    assert response[10] == KEYS.kvn
    assert response[11:] == IU_RESPONSE[11:]
    card.card_external_authenticate(EXT_AUTH)
    assert card.is_open
    assert card.level == SecurityLevel.C_MAC
    for plain, wrapped in WRAPPED:
        assert card.card_unwrap_command(wrapped) == plain


@pytest.mark.vectors
def test_put_key_psk_vector_uses_session_dek():
    host = vector_host_session()
    host.external_authenticate()
    kcb, kcv = host.encrypt_key_for_put_key(PSK_CLEAR)
    assert kcb == PSK_CIPHERED
    assert kcv == primitives.kcv(PSK_CLEAR, "3des")
    assert host.decrypt_key_from_put_key(kcb, kcv=kcv) == PSK_CLEAR


@pytest.mark.vectors
def test_session_key_derivation_shape():
    keys = scp02.derive_session_keys(KEYS, h("0001"))
    assert keys.enc == primitives.cbc_encrypt("3des", KEYS.enc, h("0182") + h("0001") + bytes(12))
    assert keys.c_mac == primitives.cbc_encrypt("3des", KEYS.mac, h("0101") + h("0001") + bytes(12))
    assert keys.r_mac == primitives.cbc_encrypt("3des", KEYS.mac, h("0102") + h("0001") + bytes(12))
    assert keys.dek == primitives.cbc_encrypt("3des", KEYS.dek, h("0181") + h("0001") + bytes(12))
    assert "enc=" not in repr(keys)


# --- card cryptogram / host cryptogram / MAC failures ---------------------------------------------

def test_wrong_card_cryptogram_rejected():
    bad = IU_RESPONSE[:-1] + b"\xff"
    with pytest.raises(SecureChannelError) as info:
        Scp02Session.host_from_init_update_response(KEYS, HOST_CHALLENGE, bad, 0x01)
    assert info.value.sw == 0x6982


def test_wrong_keys_rejected_by_host():
    other = StaticKeys.gp_default_test_keys(kvn=0x20)
    with pytest.raises(SecureChannelError) as info:
        Scp02Session.host_from_init_update_response(other, HOST_CHALLENGE, IU_RESPONSE, 0x01)
    assert info.value.sw == 0x6982


def test_wrong_host_cryptogram_rejected_by_card():
    card, _ = Scp02Session.card_respond_init_update(
        KEYS, INIT_UPDATE, sequence_counter=h("0001"), card_challenge=h("6B4524ABEE7C"))
    tampered = bytearray(EXT_AUTH)
    tampered[5] ^= 0x01  # first host cryptogram byte
    with pytest.raises(SecureChannelError) as info:
        card.card_external_authenticate(bytes(tampered))
    assert info.value.sw == 0x6982
    assert card.state is ChannelState.CLOSED


def test_flipped_external_authenticate_mac_rejected():
    card, _ = Scp02Session.card_respond_init_update(
        KEYS, INIT_UPDATE, sequence_counter=h("0001"), card_challenge=h("6B4524ABEE7C"))
    tampered = bytearray(EXT_AUTH)
    tampered[-1] ^= 0x80
    with pytest.raises(SecureChannelError) as info:
        card.card_external_authenticate(bytes(tampered))
    assert info.value.sw == 0x6982


@pytest.mark.parametrize("level", [0x01, 0x03])
def test_flipped_cmac_bit_rejected_and_session_closed(level):
    host, card = open_pair(level)
    wrapped = bytearray(host.wrap(h("80E2900003DF0102")))
    wrapped[-1] ^= 0x04
    with pytest.raises(SecureChannelError) as info:
        card.card_unwrap_command(bytes(wrapped))
    assert info.value.sw == 0x6982
    assert card.state is ChannelState.CLOSED
    with pytest.raises(SecureChannelError) as after:
        card.card_unwrap_command(host.wrap(h("80F22002")))
    assert after.value.sw == 0x6985


def test_replayed_command_rejected():
    host, card = open_pair(0x03)
    first = host.wrap(h("80E60C0002AABB00"))
    assert card.card_unwrap_command(first) == h("80E60C0002AABB00")
    with pytest.raises(SecureChannelError) as info:
        card.card_unwrap_command(first)
    assert info.value.sw == 0x6982


def test_unprotected_command_rejected_when_cmac_required():
    _host, card = open_pair(0x01)
    with pytest.raises(SecureChannelError) as info:
        card.card_unwrap_command(h("80F2200200"))
    assert info.value.sw in (0x6982, 0x6700)
    assert card.state is ChannelState.CLOSED


def test_command_before_external_authenticate_rejected():
    capdu = Scp02Session.host_initialize_update(KEYS, bytes(8))
    card, response = Scp02Session.card_respond_init_update(KEYS, capdu, sequence_counter=b"\x00\x01",
                                                           card_challenge=bytes(6))
    host = Scp02Session.host_from_init_update_response(KEYS, bytes(8), response, 0x01)
    with pytest.raises(SecureChannelError) as info:
        host.wrap(h("80F22002"))
    assert info.value.sw == 0x6985
    with pytest.raises(SecureChannelError):
        card.card_unwrap_command(h("84F220020800000000000000"))


def test_card_rejects_unknown_kvn():
    capdu = Scp02Session.host_initialize_update(KEYS, bytes(8), kvn=0x21)
    with pytest.raises(SecureChannelError) as info:
        Scp02Session.card_respond_init_update(KEYS, capdu, sequence_counter=b"\x00\x01")
    assert info.value.sw == 0x6A88


def test_card_accepts_kvn_zero_and_uses_random_challenge():
    capdu = Scp02Session.host_initialize_update(KEYS, bytes(8), kvn=0x00)
    card, response = Scp02Session.card_respond_init_update(
        KEYS, capdu, sequence_counter=b"\x00\x07", random_bytes=lambda n: b"\xab" * n)
    assert response[10:14] == bytes([0x20, 0x02, 0x00, 0x07])
    assert card.card_challenge == b"\xab" * 6


# --- security levels ------------------------------------------------------------------------------

@pytest.mark.parametrize("level", [0x02, 0x04, 0x20, 0x30, 0x33, 0xFF])
def test_invalid_levels_rejected(level):
    with pytest.raises(SecureChannelError):
        Scp02Session.host_from_init_update_response(KEYS, HOST_CHALLENGE, IU_RESPONSE, level)


@pytest.mark.parametrize("level", [0x10, 0x11, 0x13])
def test_rmac_levels_not_implemented(level):
    with pytest.raises(SecureChannelError, match="R-MAC"):
        Scp02Session.host_from_init_update_response(KEYS, HOST_CHALLENGE, IU_RESPONSE, level)


def test_card_rejects_invalid_level_in_external_authenticate():
    capdu = Scp02Session.host_initialize_update(KEYS, bytes(8))
    card, response = Scp02Session.card_respond_init_update(KEYS, capdu, sequence_counter=b"\x00\x01",
                                                           card_challenge=bytes(6))
    host = Scp02Session.host_from_init_update_response(KEYS, bytes(8), response, 0x01)
    ext = bytearray(host.external_authenticate())
    ext[2] = 0x02  # C-DECRYPTION without C-MAC
    with pytest.raises(SecureChannelError) as info:
        card.card_external_authenticate(bytes(ext))
    assert info.value.sw == 0x6A86
    assert card.state is ChannelState.CLOSED


@pytest.mark.parametrize("i", [0x04, 0x0D, 0x80])
def test_unsupported_i_rejected(i):
    with pytest.raises(SecureChannelError):
        Scp02Session.host_from_init_update_response(KEYS, HOST_CHALLENGE, IU_RESPONSE, 0x01, i=i)


# --- round trips ----------------------------------------------------------------------------------

COMMANDS = [
    h("80F22002"),
    h("80CA006600"),
    h("80F220020A4F0212345C054F9F70C5"),
    h("80F28002024F0000"),
    h("80E60C00") + bytes([40]) + bytes(range(40)) + b"\x00",
    h("00A4040008A000000151000000"),
    h("81E2800003DF0102"),
    h("80D8000110") + bytes(16),
    h("80E4000000"),
]


@pytest.mark.parametrize("i", [0x55, 0x15, 0x05, 0x57])
@pytest.mark.parametrize("level", [0x00, 0x01, 0x03])
def test_round_trip_every_level(level, i):
    host, card = open_pair(level, i=i)
    for _ in range(5):
        for plain in COMMANDS:
            wrapped = host.wrap(plain)
            if level == 0x00:
                assert wrapped == plain
            else:
                assert wrapped[0] & 0x04
                assert wrapped != plain
            assert card.card_unwrap_command(wrapped) == plain
            response = card.card_wrap_response(h("6F00") + b"\x90\x00")
            assert host.unwrap_response(response) == h("6F00") + b"\x90\x00"
    assert card.is_open
    assert host.is_open


def test_c_decryption_hides_data_and_pads():
    host, card = open_pair(0x03)
    plain = h("80E2900008") + b"SECRET!!"
    wrapped = host.wrap(plain)
    assert b"SECRET!!" not in wrapped
    assert wrapped[4] == 16 + 8  # 8 bytes padded to 16, plus the C-MAC
    assert card.card_unwrap_command(wrapped) == plain


def test_icv_encryption_bit_drives_chaining():
    # Same keys and challenges, so the same EXTERNAL AUTHENTICATE C-MAC (zero ICV) ...
    enc_host, enc_card = open_pair(0x01, i=0x15)
    plain_host, plain_card = open_pair(0x01, i=0x05)
    # ... but the next ICV is DES(S-MAC left, C-MAC) with i b5 set and the bare C-MAC without.
    first_enc, first_plain = enc_host.wrap(h("80F22002")), plain_host.wrap(h("80F22002"))
    assert first_enc != first_plain
    with pytest.raises(SecureChannelError):
        plain_card.card_unwrap_command(first_enc)
    assert enc_card.card_unwrap_command(first_enc) == h("80F22002")


def test_extended_length_round_trip():
    host, card = open_pair(0x03)
    plain = CommandApdu(0x80, 0xE8, 0x00, 0x01, bytes(range(256)) * 2, le=65536).encode()
    wrapped = host.wrap(plain)
    assert wrapped[4] == 0x00
    assert card.card_unwrap_command(wrapped) == plain


def test_short_apdu_overflow_raises():
    host, _card = open_pair(0x03)
    with pytest.raises(ApduError):
        host.wrap(h("80E20000FF") + bytes(255))


def test_wrapping_an_sm_command_is_refused():
    host, _card = open_pair(0x01)
    with pytest.raises(ApduError):
        host.wrap(h("84F22002"))


def test_roles_are_enforced():
    host, card = open_pair(0x01)
    with pytest.raises(SecureChannelError):
        host.card_unwrap_command(h("84F220020800000000000000"))
    with pytest.raises(SecureChannelError):
        card.wrap(h("80F22002"))


# --- PUT KEY helpers ------------------------------------------------------------------------------

@pytest.mark.parametrize("keylen", range(1, 25))
def test_put_key_component_block_round_trip(keylen):
    dek = scp02.derive_session_keys(KEYS, b"\x00\x01").dek
    key = bytes(range(keylen))
    kcb, _kcv = scp02.encrypt_key_for_put_key(dek, key, kcv=b"")
    if keylen % 8:
        assert kcb[0] == keylen
        assert (len(kcb) - 1) % 8 == 0
    else:
        assert len(kcb) == keylen
    assert scp02.decrypt_key_from_put_key(dek, kcb) == key


def test_put_key_des_key_with_kcv():
    dek = scp02.derive_session_keys(KEYS, b"\x00\x01").dek
    kcb, kcv = scp02.encrypt_key_for_put_key(dek, GP_DEFAULT_TEST_KEY)
    assert kcb == primitives.tdes_encrypt(dek, GP_DEFAULT_TEST_KEY)
    assert kcv == primitives.kcv(GP_DEFAULT_TEST_KEY, "3des")
    assert scp02.decrypt_key_from_put_key(dek, kcb, kcv=kcv) == GP_DEFAULT_TEST_KEY
    with pytest.raises(CryptoError):
        scp02.decrypt_key_from_put_key(dek, kcb, kcv=b"\x00\x00\x00")


def test_static_keys_repr_hides_key_material():
    keys = StaticKeys.gp_default_test_keys(kvn=0xFF)
    assert keys.enc == bytes.fromhex("404142434445464748494A4B4C4D4E4F")
    text = repr(keys)
    assert "4041" not in text
    assert "kvn=0xFF" in text
    with pytest.raises(CryptoError):
        StaticKeys(b"short", b"short", b"short")


# --- properties -----------------------------------------------------------------------------------

CLAS = st.sampled_from([0x00, 0x01, 0x03, 0x80, 0x81, 0x83, 0x40, 0x4F, 0xC0, 0xC3])


@st.composite
def plain_apdus(draw):
    """Cases 1-4, short length, data up to 239 bytes (so that padding and C-MAC still fit)."""
    data = draw(st.binary(min_size=0, max_size=239))
    ne = draw(st.one_of(st.none(), st.integers(1, 256)))
    return CommandApdu(draw(CLAS), draw(st.integers(0, 255)), draw(st.integers(0, 255)),
                         draw(st.integers(0, 255)), data, ne, extended=False).encode()


@pytest.mark.property
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(level=st.sampled_from([0x00, 0x01, 0x03]), i=st.sampled_from([0x55, 0x15, 0x05]),
       apdus=st.lists(plain_apdus(), min_size=1, max_size=6))
def test_property_wrap_unwrap_round_trip(level, i, apdus):
    host, card = open_pair(level, i=i)
    for plain in apdus:
        assert card.card_unwrap_command(host.wrap(plain)) == plain


@pytest.mark.property
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(level=st.sampled_from([0x01, 0x03]), plain=plain_apdus(), data=st.data())
def test_property_tampered_commands_never_pass(level, plain, data):
    host, card = open_pair(level)
    wrapped = bytearray(host.wrap(plain))
    # Le is not covered by the C-MAC (GP v2.3 E.4.4), so it is not a tamper target.
    protected_len = len(wrapped) - (1 if CommandApdu.decode(plain).le is not None else 0)
    pos = data.draw(st.integers(0, protected_len - 1))
    bit = data.draw(st.integers(0, 7))
    wrapped[pos] ^= 1 << bit
    with pytest.raises(SecureChannelError):
        card.card_unwrap_command(bytes(wrapped))
    assert card.state is ChannelState.CLOSED
