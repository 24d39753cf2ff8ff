"""SCP03 (GP Card Spec v2.3 Amendment D): real-card vectors, host <-> card round trips, failures.

Vectors: osmocom/pysim ``tests/unittests/test_globalplatform.py`` (values only; the code is GPL),
an eUICC with AES-128/192/256 key sets, ``i`` = 70, security levels 11, 03 and 33. Each trace:
INITIALIZE UPDATE, EXTERNAL AUTHENTICATE, STORE DATA (GET EID) with its protected response, then
the four APDU cases, all in one session (C-MAC chain and encryption counter carried through).
"""

from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paylab.lab.protocol.apdu import CommandApdu
from paylab.lab.protocol.crypto import primitives
from paylab.lab.protocol.errors import ApduError, CryptoError, SecureChannelError
from paylab.lab.protocol.gp import ChannelState, Scp03Session, StaticKeys, scp03

h = bytes.fromhex

KEYS_AES128 = StaticKeys(h("000102030405060708090a0b0c0d0e0f"), h("101112131415161718191a1b1c1d1e1f"),
                         h("202122232425262728292a2b2c2d2e2f"), 0x30)
KEYS_AES192 = StaticKeys(h("000102030405060708090a0b0c0d0e0f0001020304050607"),
                         h("101112131415161718191a1b1c1d1e1f1011121314151617"),
                         h("202122232425262728292a2b2c2d2e2f2021222324252627"), 0x31)
KEYS_AES256 = StaticKeys(h("000102030405060708090a0b0c0d0e0f000102030405060708090a0b0c0d0e0f"),
                         h("101112131415161718191a1b1c1d1e1f101112131415161718191a1b1c1d1e1f"),
                         h("202122232425262728292a2b2c2d2e2f202122232425262728292a2b2c2d2e2f"), 0x32)
ISD_R_AID = h("A0000005591010FFFFFFFF8900000100")  # the traced card's selected SD (an eUICC ISD-R)

GET_EID = h("80E2910006BF3E035C015A00")
GET_EID_RESPONSE = h("bf3e125a1089882119900000000000000000000005")
CASES = [h("80F22002"), h("80ca006600"), h("80F220020a4f0212345c054f9f70c5"), h("80f28002024f0000")]


@dataclass(frozen=True)
class Trace:
    name: str
    keys: StaticKeys
    init_update: bytes
    iu_response: bytes
    ext_auth: bytes
    get_eid: bytes
    get_eid_response: bytes  # response data as sent by the card (without SW 9000)
    cases: tuple[bytes, ...]

    @property
    def host_challenge(self):
        return self.init_update[5:-1]

    @property
    def level(self):
        return self.ext_auth[2]


def _trace(name, keys, iu, iur, ea, eid, eidr, *cases):
    return Trace(name, keys, h(iu), h(iur), h(ea), h(eid), h(eidr), tuple(h(c) for c in cases))


TRACES = [
    _trace("aes128-11", KEYS_AES128, "8050300008b13e5f938fc108c400",
           "000000000000000000003003703eb51047495b249f66c484c1d2ef1948000002",
           "84821100107d5f5826a993ebc89eea24957fa0b3ce", "84e291000ebf3e035c015a558d036518a2829700",
           "bf3e125a1089882119900000000000000000000005971be68992dbbdfa",
           "84f220020863a63f8959827fb2", "84ca006608a0c6a4a74166f7ce00",
           "84f22002124f0212345c054f9f70c52249b50272656536", "84f280020a4f00e91443f6dce6b8ed00"),
    _trace("aes128-03", KEYS_AES128, "80503000088e1552d0513c60f300",
           "0000000000000000000030037030760cd2c47c1dd395065fe5ead8a9d7000001",
           "8482030010fd4721a14d9b07003c451d2f8ae6bb21",
           "84e2910018ca9c00f6713d79bc8baa642bdff51c3f6a4082d3bd9ad26c00",
           "bf3e125a1089882119900000000000000000000005",
           "84f2200208c9811b11f1264cf1", "84ca006608e10ab60b3054798800",
           "84f22002184e2908bdb48b2315a55482e9e936ca122d6ecfae7d17416e",
           "84f28002180dd10a6b6193e5340b9e77d32d5a179cd710ac2773aefb2800"),
    _trace("aes128-33", KEYS_AES128, "8050300008fdf38259a1e0de4400",
           "000000000000000000003003703b1aca81e821f219081cdc01c26b372d000003",
           "84823300108c36f96bcc00724a4e13ad591d7da3f0",
           "84e2910018267a85dfe4a98fca6fb0527e0dfecce4914e40401433c87f00",
           "f3ba2b1013aa6224f5e1c138d71805c569e5439b47576260b75fc021b25097cb2e68f8a0144975b9",
           "84f2200208ac6a59024bed84cc", "84ca006608409912ad8fb7aed000",
           "84f22002185f3dafc3ac14c381536a488bf44e06d056df9d74dbd21e5a",
           "84f280021865165105be3373347d0424d4400af2ac393f569ec779389e00"),
    _trace("aes192-11", KEYS_AES192, "80503100087396430b768b085b00",
           "000000000000000000003103708cfc23522ffdbf1e5df5542cac8fd866000003",
           "84821100102145ed30b146f5db252fb7e624cec244", "84e291000ebf3e035c015aff42cf801d14394400",
           "bf3e125a1089882119900000000000000000000005162fbd33e04940a9",
           "84f22002084584e4f6784811ee", "84ca006608937776ebe190fa3000",
           "84f22002124f0212345c054f9f70c59a52bddf3040368c", "84f280020a4f009804b11411f7393d00"),
    _trace("aes192-03", KEYS_AES192, "805031000869c65da8202bf19f00",
           "00000000000000000000310370b570a67be38446717729d6dd3d2ec5b1000001",
           "848203001065df4f1a356a887905466516d9e5b7c1",
           "84e2910018d2c6fb477c5d4afe4fd4d21f17eff10d3578ec1774a12a2d00",
           "bf3e125a1089882119900000000000000000000005",
           "84f2200208964e188f0b1bb697", "84ca006608f0820035a41d3e1800",
           "84f220021806b076ed452cd1fa84f77f5c08a146aa77a9286757dea791",
           "84f2800218d06527e39222dce091fabdb8e9b898417a67a6852d3577db00"),
    _trace("aes192-33", KEYS_AES192, "80503100089b3f2eef0e8c937400",
           "00000000000000000000310370f6bb305a15bae1a68f79fb08212fbed7000002",
           "84823300109100bc22d58b45b86a26365ce39ff3cf",
           "84e29100188f7f946c84f70d17994bc6e8791251bb1bb1bf02cf8de58900",
           "c05176c1b6f72aae50c32cbee63b0e95998928fd4dfb2be9f27ffde8c8476f5909b4805cc4039599",
           "84f2200208d5d97754b6b3d2ba", "84ca006608516c82b8e30adbeb00",
           "84f2200218cc247f4761e6944277a4e0d6e32e44025b1e31537e2fc668",
           "84f2800218ba22b63d509bef5d093b43e5eaed03ed23144ab2d9cb51de00"),
    _trace("aes256-11", KEYS_AES256, "805032000811666d57866c6f5400",
           "0000000000000000000032037053ea8847efa7674e41498a4d66cf0dee000003",
           "84821100102f2ad190eff2fafc4908996d1cebd310", "84e291000ebf3e035c015af4b680372542b59d00",
           "bf3e125a10898821199000000000000000000000058012dd7f01f1c4c1",
           "84f2200208d618b7da68d5fe52", "84ca0066088f3e055db23ad5e500",
           "84f22002124f0212345c054f9f70c5b6e15cc42404915e", "84f280020a4f00aa124aa74afe7f7500"),
    _trace("aes256-03", KEYS_AES256, "8050320008c6066990fc426e1d00",
           "000000000000000000003203708682cd81bbd8919f2de3f2664581f118000001",
           "848203001077c493b632edadaf865a1e64acc07ce9",
           "84e29100183ddaa60594963befaada3525b492ede23c2ab2c1ce3afe4400",
           "bf3e125a1089882119900000000000000000000005",
           "84f2200208480ddc8e419da38d", "84ca0066083e9d6a6c0b2d732000",
           "84f22002183ebfef2da8b04af2a85f491f299b76973df76ff08a4031be",
           "84f2800218783fff80990f5585b1055010ea95094a26e4a8f1ef4b18e100"),
    _trace("aes256-33", KEYS_AES256, "805032000897b2055fe58599fd00",
           "00000000000000000000320370a8439a22cedf045fa9f1903b2834f26e000002",
           "8482330010508a0fd959d2e547c6b33154a6be2057",
           "84e29100187a5ef717eaf1e135ae92fe54429d0e465decda65f5fe5aea00",
           "ea90dbfa648a67c5eb6abc57f8530b97d0cd5647c5e8732016b55203b078dd2ace7f8bc5d1c1cd99",
           "84f2200208bcc5c17275545d93", "84ca00660804806aba9d543bb600",
           "84f2200218717222491556ec81a45f49ce48be33320024801a1c4cb0e0",
           "84f2800218561f105bccd3a1642904b251ccc1228beb80a82370a8637000"),
]
TRACE_IDS = [t.name for t in TRACES]
SW_OK = b"\x90\x00"


def open_pair(level=0x01, i=0x70, keys=KEYS_AES128, card_challenge=None):
    """A host and a card session through INITIALIZE UPDATE + EXTERNAL AUTHENTICATE."""
    host_challenge = bytes(range(8))
    capdu = Scp03Session.host_initialize_update(keys, host_challenge)
    card, response = Scp03Session.card_respond_init_update(
        keys, capdu, sequence_counter=b"\x00\x00\x2a", card_challenge=card_challenge, i=i,
        aid=ISD_R_AID, random_bytes=lambda n: bytes([0x5C]) * n)
    host = Scp03Session.host_from_init_update_response(keys, host_challenge, response, level)
    card.card_external_authenticate(host.external_authenticate())
    return host, card


# --- vectors ------------------------------------------------------------------------------------

@pytest.mark.vectors
@pytest.mark.parametrize("trace", TRACES, ids=TRACE_IDS)
def test_host_side_trace(trace):
    assert Scp03Session.host_initialize_update(trace.keys, trace.host_challenge) == trace.init_update
    host = Scp03Session.host_from_init_update_response(
        trace.keys, trace.host_challenge, trace.iu_response, trace.level, expected_i=0x70, aid=ISD_R_AID)
    assert host.external_authenticate() == trace.ext_auth
    assert host.wrap(GET_EID) == trace.get_eid
    assert host.unwrap_response(trace.get_eid_response + SW_OK) == GET_EID_RESPONSE + SW_OK
    for plain, wrapped in zip(CASES, trace.cases, strict=True):
        assert host.wrap(plain) == wrapped
    assert host.encryption_counter == 5


@pytest.mark.vectors
@pytest.mark.parametrize("trace", TRACES, ids=TRACE_IDS)
def test_card_side_trace(trace):
    seq = trace.iu_response[29:32]
    card, response = Scp03Session.card_respond_init_update(
        trace.keys, trace.init_update, sequence_counter=seq, i=0x70, aid=ISD_R_AID)
    assert response == trace.iu_response  # incl. the pseudo-random card challenge
    card.card_external_authenticate(trace.ext_auth)
    assert card.level == trace.level
    assert card.card_unwrap_command(trace.get_eid) == GET_EID
    assert card.card_wrap_response(GET_EID_RESPONSE + SW_OK) == trace.get_eid_response + SW_OK
    for plain, wrapped in zip(CASES, trace.cases, strict=True):
        assert card.card_unwrap_command(wrapped) == plain


@pytest.mark.vectors
def test_gp_aes_kcv_vector():
    assert primitives.kcv_gp_aes(KEYS_AES128.enc) == h("C35280")
    assert primitives.kcv_gp_aes(KEYS_AES128.mac) == h("013808")
    assert primitives.kcv_gp_aes(KEYS_AES128.dek) == h("840DE5")


@pytest.mark.vectors
def test_counter_advances_on_commands_without_data():
    """Level 03 trace: case 3 (counter 4) only decrypts right if cases 1 and 2 (no data) counted."""
    trace = TRACES[1]
    host = Scp03Session.host_from_init_update_response(trace.keys, trace.host_challenge,
                                                       trace.iu_response, 0x03)
    host.external_authenticate()
    assert host.encryption_counter == 0
    host.wrap(GET_EID)
    host.wrap(CASES[0])
    host.wrap(CASES[1])
    assert host.encryption_counter == 3
    assert host.wrap(CASES[2]) == trace.cases[2]


def test_kdf_lengths_and_two_iterations_for_aes256():
    key = KEYS_AES256.mac
    context = bytes(16)
    out = scp03.kdf(key, 0x06, context, 256)
    label = bytes(11) + b"\x06\x00\x01\x00"
    assert out == primitives.aes_cmac(key, label + b"\x01" + context) + \
        primitives.aes_cmac(key, label + b"\x02" + context)
    assert len(scp03.kdf(key, 0x00, context, 64)) == 8
    keys = scp03.derive_session_keys(KEYS_AES192, bytes(8), bytes(8))
    assert len(keys.enc) == len(keys.mac) == len(keys.rmac) == 24


# --- failures -----------------------------------------------------------------------------------

def test_wrong_card_cryptogram_rejected():
    trace = TRACES[0]
    bad = bytearray(trace.iu_response)
    bad[25] ^= 0x01
    with pytest.raises(SecureChannelError) as info:
        Scp03Session.host_from_init_update_response(trace.keys, trace.host_challenge, bytes(bad), 0x11)
    assert info.value.sw == 0x6982


def test_wrong_pseudo_random_challenge_rejected_with_aid():
    trace = TRACES[0]
    with pytest.raises(SecureChannelError):
        Scp03Session.host_from_init_update_response(
            trace.keys, trace.host_challenge, trace.iu_response, 0x11, aid=h("A000000151000000"))


def test_unexpected_i_rejected():
    trace = TRACES[0]
    with pytest.raises(SecureChannelError):
        Scp03Session.host_from_init_update_response(trace.keys, trace.host_challenge,
                                                    trace.iu_response, 0x11, expected_i=0x00)


@pytest.mark.parametrize("offset", [5, 12, 20])  # host cryptogram first/last byte, C-MAC
def test_wrong_host_cryptogram_or_mac_rejected_by_card(offset):
    trace = TRACES[2]
    card, _ = Scp03Session.card_respond_init_update(
        trace.keys, trace.init_update, sequence_counter=trace.iu_response[29:32], i=0x70, aid=ISD_R_AID)
    tampered = bytearray(trace.ext_auth)
    tampered[offset] ^= 0x10
    with pytest.raises(SecureChannelError) as info:
        card.card_external_authenticate(bytes(tampered))
    assert info.value.sw == 0x6982
    assert card.state is ChannelState.CLOSED


@pytest.mark.parametrize("level", [0x01, 0x03, 0x11, 0x13, 0x33])
def test_flipped_cmac_bit_rejected_and_session_closed(level):
    host, card = open_pair(level)
    wrapped = bytearray(host.wrap(h("80E2900003DF0102")))
    wrapped[-1] ^= 0x01
    with pytest.raises(SecureChannelError) as info:
        card.card_unwrap_command(bytes(wrapped))
    assert info.value.sw == 0x6982
    assert card.state is ChannelState.CLOSED
    with pytest.raises(SecureChannelError) as after:
        card.card_unwrap_command(host.wrap(h("80F22002")))
    assert after.value.sw == 0x6985


def test_replayed_command_rejected():
    host, card = open_pair(0x33)
    first = host.wrap(h("80E60C0002AABB00"))
    assert card.card_unwrap_command(first) == h("80E60C0002AABB00")
    with pytest.raises(SecureChannelError) as info:
        card.card_unwrap_command(first)
    assert info.value.sw == 0x6982


def test_bad_rmac_rejected_by_host():
    host, card = open_pair(0x11)
    card.card_unwrap_command(host.wrap(h("80CA006600")))
    response = bytearray(card.card_wrap_response(h("9F7F01AA") + SW_OK))
    response[-3] ^= 0x02
    with pytest.raises(SecureChannelError) as info:
        host.unwrap_response(bytes(response))
    assert info.value.sw == 0x6982
    assert host.state is ChannelState.CLOSED


def test_error_status_travels_without_rmac():
    host, card = open_pair(0x33)
    card.card_unwrap_command(host.wrap(h("80CA006600")))
    assert card.card_wrap_response(h("0102") + h("6A88")) == h("6A88")
    assert host.unwrap_response(h("6A88")) == h("6A88")


def test_warning_status_is_protected():
    host, card = open_pair(0x33)
    card.card_unwrap_command(host.wrap(h("80CA006600")))
    protected = card.card_wrap_response(h("0102") + h("6310"))
    assert len(protected) == 16 + 8 + 2
    assert host.unwrap_response(protected) == h("0102") + h("6310")


@pytest.mark.parametrize("level", [0x02, 0x10, 0x12, 0x21, 0x23, 0x31, 0x30, 0x13 | 0x04, 0xFF])
def test_invalid_levels_rejected(level):
    trace = TRACES[0]
    with pytest.raises(SecureChannelError):
        Scp03Session.host_from_init_update_response(trace.keys, trace.host_challenge,
                                                    trace.iu_response, level)


@pytest.mark.parametrize(("i", "level"), [(0x00, 0x11), (0x10, 0x13), (0x20, 0x33), (0x30, 0x33)])
def test_levels_beyond_card_option_rejected(i, level):
    with pytest.raises(SecureChannelError):
        open_pair(level, i=i, card_challenge=bytes(8))


def test_card_rejects_invalid_level_in_external_authenticate():
    capdu = Scp03Session.host_initialize_update(KEYS_AES128, bytes(8))
    card, response = Scp03Session.card_respond_init_update(KEYS_AES128, capdu,
                                                           sequence_counter=b"\x00\x00\x01", i=0x00)
    host = Scp03Session.host_from_init_update_response(KEYS_AES128, bytes(8), response, 0x03)
    ext = bytearray(host.external_authenticate())
    ext[2] = 0x11  # R-MAC, which this card (i = 00) does not offer
    with pytest.raises(SecureChannelError) as info:
        card.card_external_authenticate(bytes(ext))
    assert info.value.sw == 0x6A86


def test_s16_mode_not_supported():
    capdu = Scp03Session.host_initialize_update(KEYS_AES128, bytes(8))
    with pytest.raises(SecureChannelError, match="S16"):
        Scp03Session.card_respond_init_update(KEYS_AES128, capdu, sequence_counter=bytes(3), i=0x71)


def test_random_card_challenge_without_sequence_counter():
    capdu = Scp03Session.host_initialize_update(KEYS_AES128, bytes(8))
    card, response = Scp03Session.card_respond_init_update(
        KEYS_AES128, capdu, sequence_counter=bytes(3), i=0x00, random_bytes=lambda n: b"\x11" * n)
    assert len(response) == 29
    assert response[10:13] == h("300300")
    assert card.card_challenge == b"\x11" * 8
    host = Scp03Session.host_from_init_update_response(KEYS_AES128, bytes(8), response, 0x03)
    card.card_external_authenticate(host.external_authenticate())
    assert card.card_unwrap_command(host.wrap(h("80F22002"))) == h("80F22002")


def test_command_before_external_authenticate_rejected():
    capdu = Scp03Session.host_initialize_update(KEYS_AES128, bytes(8))
    card, response = Scp03Session.card_respond_init_update(KEYS_AES128, capdu, sequence_counter=bytes(3),
                                                           card_challenge=bytes(8), i=0x00)
    host = Scp03Session.host_from_init_update_response(KEYS_AES128, bytes(8), response, 0x01)
    with pytest.raises(SecureChannelError) as info:
        host.wrap(h("80F22002"))
    assert info.value.sw == 0x6985
    with pytest.raises(SecureChannelError):
        card.card_wrap_response(SW_OK)


# --- round trips ----------------------------------------------------------------------------------

COMMANDS = [
    h("80F22002"),
    h("80CA006600"),
    h("80F220020A4F0212345C054F9F70C5"),
    h("80F28002024F0000"),
    h("80E60C00") + bytes([64]) + bytes(range(64)) + b"\x00",
    h("00A4040008A000000151000000"),
    h("81E2800003DF0102"),
    h("C0CA00FF00"),
    h("80E4000000"),
]
RESPONSES = [SW_OK, h("6F10") + bytes(16) + SW_OK, h("AB") * 31 + h("6283"), h("6985")]


@pytest.mark.parametrize("keys", [KEYS_AES128, KEYS_AES192, KEYS_AES256], ids=["128", "192", "256"])
@pytest.mark.parametrize("level", sorted(scp03.VALID_LEVELS))
def test_round_trip_every_level(level, keys):
    host, card = open_pair(level, keys=keys)
    for n in range(4):
        for plain in COMMANDS:
            wrapped = host.wrap(plain)
            assert (wrapped == plain) == (level == 0x00)
            assert card.card_unwrap_command(wrapped) == plain
            response = RESPONSES[n % len(RESPONSES)]
            assert host.unwrap_response(card.card_wrap_response(response)) == response
    assert host.encryption_counter == card.encryption_counter == 4 * len(COMMANDS)


def test_r_encryption_hides_response_data():
    host, card = open_pair(0x33)
    card.card_unwrap_command(host.wrap(h("80CA9F7F00")))
    protected = card.card_wrap_response(b"CPLC-SECRET" + SW_OK)
    assert b"CPLC-SECRET" not in protected
    assert host.unwrap_response(protected) == b"CPLC-SECRET" + SW_OK


def test_extended_length_round_trip():
    host, card = open_pair(0x33)
    plain = CommandApdu(0x80, 0xE8, 0x80, 0x00, bytes(range(256)) * 3, le=65536).encode()
    wrapped = host.wrap(plain)
    assert wrapped[4] == 0x00
    assert card.card_unwrap_command(wrapped) == plain


def test_short_apdu_overflow_raises():
    host, _card = open_pair(0x03)
    with pytest.raises(ApduError):
        host.wrap(h("80E20000F0") + bytes(240))  # pads to 256


# --- PUT KEY helpers ------------------------------------------------------------------------------

@pytest.mark.parametrize("new_key", [bytes(range(16)), bytes(range(24)), bytes(range(32))],
                         ids=["aes128", "aes192", "aes256"])
def test_put_key_round_trip(new_key):
    host, card = open_pair(0x03)
    kcb, kcv = host.encrypt_key_for_put_key(new_key)
    assert kcv == primitives.kcv_gp_aes(new_key)
    if len(new_key) == 24:  # Table 11-70: clear length, then the padded cryptogram
        assert kcb[0] == 24
        assert len(kcb) == 1 + 32
    else:
        assert kcb == primitives.cbc_encrypt("aes", KEYS_AES128.dek, new_key, bytes(16))
    assert card.decrypt_key_from_put_key(kcb, kcv=kcv) == new_key
    with pytest.raises(CryptoError):
        card.decrypt_key_from_put_key(kcb, kcv=b"\x00\x00\x00")


def test_session_repr_hides_keys():
    host, _card = open_pair(0x33)
    text = repr(host) + repr(host.session_keys)
    assert host.session_keys.enc.hex() not in text
    assert "level=0x33" in text


# --- properties -----------------------------------------------------------------------------------

CLAS = st.sampled_from([0x00, 0x01, 0x03, 0x80, 0x81, 0x83, 0x40, 0x4F, 0xC0, 0xC3])


@st.composite
def plain_apdus(draw):
    """Cases 1-4, short length, data up to 239 bytes (so that padding and C-MAC still fit)."""
    data = draw(st.binary(min_size=0, max_size=239))
    ne = draw(st.one_of(st.none(), st.integers(1, 256)))
    return CommandApdu(draw(CLAS), draw(st.integers(0, 255)), draw(st.integers(0, 255)),
                         draw(st.integers(0, 255)), data, ne, extended=False).encode()


responses = st.builds(lambda data, sw: data + sw, st.binary(max_size=200),
                      st.sampled_from([SW_OK, h("6283"), h("6310")]))


@pytest.mark.property
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(level=st.sampled_from(sorted(scp03.VALID_LEVELS)),
       keys=st.sampled_from([KEYS_AES128, KEYS_AES192, KEYS_AES256]),
       exchanges=st.lists(st.tuples(plain_apdus(), responses), min_size=1, max_size=6))
def test_property_wrap_unwrap_round_trip(level, keys, exchanges):
    host, card = open_pair(level, keys=keys)
    for plain, response in exchanges:
        assert card.card_unwrap_command(host.wrap(plain)) == plain
        assert host.unwrap_response(card.card_wrap_response(response)) == response


@pytest.mark.property
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(level=st.sampled_from([0x01, 0x03, 0x11, 0x13, 0x33]), plain=plain_apdus(), data=st.data())
def test_property_tampered_commands_never_pass(level, plain, data):
    host, card = open_pair(level)
    wrapped = bytearray(host.wrap(plain))
    # Le is not covered by the C-MAC (Amendment D 6.2.4), so it is not a tamper target.
    protected_len = len(wrapped) - (1 if CommandApdu.decode(plain).le is not None else 0)
    pos = data.draw(st.integers(0, protected_len - 1))
    wrapped[pos] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(SecureChannelError):
        card.card_unwrap_command(bytes(wrapped))
    assert card.state is ChannelState.CLOSED


@pytest.mark.property
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(level=st.sampled_from([0x11, 0x13, 0x33]), response=responses, data=st.data())
def test_property_tampered_responses_never_pass(level, response, data):
    host, card = open_pair(level)
    card.card_unwrap_command(host.wrap(h("80CA006600")))
    protected = bytearray(card.card_wrap_response(response))
    pos = data.draw(st.integers(0, len(protected) - 1))
    protected[pos] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(SecureChannelError):
        host.unwrap_response(bytes(protected))
