"""SM2 signatures (paylab.lab.protocol.crypto.sm2, an adapter over gmalg's SM2Core).

* GM/T 0003.2 Annex A example on the Fp-256 test curve (domain brief section 2 vector 3). Curve,
  dA, public key and k as published in the annex (also in OpenSSL's test/sm2_internal_test.c and
  other public test suites); ZA, r and s from the brief [V]. This is the independent check: the
  adapter runs gmalg on a curve and a fixed k that gmalg's own SM2 class cannot express.
* Interoperability with gmalg 1.1.2's public ``SM2`` class on the recommended curve: ours signs /
  gmalg verifies and the reverse, including keys whose X begins with a 0 or 4 nibble. Both sides
  share gmalg's arithmetic, so these pin the adapter's byte formats (fixed width, no stripping).
* The digest forms (written on gmalg's ECDLP because SM2Core only takes messages) must agree with
  the SM2Core path for the same k.
"""

import gmalg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paylab.lab.protocol.crypto import sm2
from paylab.lab.protocol.crypto.primitives import sm3
from paylab.lab.protocol.errors import CryptoError

ANNEX_A_CURVE = sm2.Sm2Curve(
    name="GM/T 0003.2 Annex A Fp-256 test curve",
    p=0x8542D69E_4C044F18_E8B92435_BF6FF7DE_45728391_5C45517D_722EDB8B_08F1DFC3,
    a=0x787968B4_FA32C3FD_2417842E_73BBFEFF_2F3C848B_6831D7E0_EC65228B_3937E498,
    b=0x63E4C6D3_B23B0C84_9CF84241_484BFE48_F61D59A5_B16BA06E_6E12D1DA_27C5249A,
    gx=0x421DEBD6_1B62EAB6_746434EB_C3CC315E_32220B3B_ADD50BDC_4C4E6C14_7FEDD43D,
    gy=0x0680512B_CBB42C07_D47349D2_153B70C4_E5D7FDFC_BFA36EA1_A85841B9_E46E09A2,
    n=0x8542D69E_4C044F18_E8B92435_BF6FF7DD_29772063_0485628D_5AE74EE7_C32E79B7,
)
ANNEX_A_ID = b"ALICE123@YAHOO.COM"
ANNEX_A_MESSAGE = b"message digest"
ANNEX_A_D = bytes.fromhex("128B2FA8BD433C6C068C8D803DFF79792A519A55171B1B650C23661D15897263")
ANNEX_A_PUBLIC = bytes.fromhex(
    "04"
    "0AE4C7798AA0F119471BEE11825BE46202BB79E2A5844495E97C04FF4DF2548A"
    "7C0240F88F1CD4E16352A73C17B7F16F07353E53A176D684A9FE0C6BB798E857"
)
ANNEX_A_K = 0x6CB28D99_385C175C_94F94E93_4817663F_C176D925_DD72B727_260DBAAE_1FB2F96F
ANNEX_A_ZA = "F4A38489E32B45B6F876E3AC2168CA392362DC8F23459C1D1146FC3DBFB7BC9A"
ANNEX_A_E = "B524F552CD82B8B028476E005C377FB19A87E6FC682D48BB5D42E3D9B9EFFE76"
ANNEX_A_R = "40F1EC59F793D9F49E09DCEF49130D4194F79FB1EED2CAA55BACDB49C4E755D1"
ANNEX_A_S = "6FC6DAC32C5D5CF10C77DFB20F7C2EB667A457872FB09EC56327A67EC7DEEBE7"

N = sm2.SM2_P256.n

# y^2 = x^3 + x + 1 over F_211 has 223 points (prime, so cofactor 1) and G = (0, 1): small enough
# that some fixed k give degenerate signatures for an ordinary message.
TINY_CURVE = sm2.Sm2Curve("tiny", p=211, a=1, b=1, gx=0, gy=1, n=223)

# Private keys (deterministic search) whose public X starts with the nibbles that gmssl 3.2.2's
# public_key.lstrip("04") eats, plus a Y with a zero first byte (fixed-width encoding).
AWKWARD_KEYS = {
    "x-nibble-0": "D3956F880D145D55D10BB4DDF3523EB9AAF84FAD9E2987A6F9D6ADB4DC55CB53",
    "x-nibble-4": "82161D384D920C8513BCEE315ED3D6A1D87090963950F68AC09C8DB5FD837DDA",
    "x-byte-00": "9F3D36358AE75E52A7CAE9067C4A8F213467B5DDD34A2BC0C988162666FB4EB5",
    "x-byte-04": "2844FADF2BEA70ACA59ECEE92629561AB59C7A53EA645BA14272CA1A86E99479",
    "y-byte-00": "A82624F6FCDF491504928841E226B75D5DB051AADA0D3DBDDCB35129B6438345",
}
AWKWARD_PREFIX = {
    "x-nibble-0": lambda pub: pub[1] < 0x10,
    "x-nibble-4": lambda pub: 0x40 <= pub[1] < 0x50,
    "x-byte-00": lambda pub: pub[1] == 0x00,
    "x-byte-04": lambda pub: pub[1] == 0x04,
    "y-byte-00": lambda pub: pub[33] == 0x00,
}


def gmalg_sign(private: bytes, message: bytes, user_id: bytes) -> bytes:
    r, s = gmalg.SM2(private, user_id).sign(message)
    return r.rjust(32, b"\x00") + s.rjust(32, b"\x00")


def gmalg_verify(public: bytes, message: bytes, signature: bytes, user_id: bytes) -> bool:
    return gmalg.SM2(uid=user_id, pk=public).verify(message, signature[:32], signature[32:])


# -- GM/T 0003.2 Annex A --------------------------------------------------------------------------


@pytest.mark.vectors
def test_annex_a_public_key():
    assert sm2.public_from_private(ANNEX_A_D, ANNEX_A_CURVE) == ANNEX_A_PUBLIC


@pytest.mark.vectors
def test_annex_a_za_and_e():
    za = sm2.compute_za(ANNEX_A_PUBLIC, ANNEX_A_ID, ANNEX_A_CURVE)
    assert za.hex().upper() == ANNEX_A_ZA
    assert sm3(za + ANNEX_A_MESSAGE).hex().upper() == ANNEX_A_E


@pytest.mark.vectors
def test_annex_a_signature():
    sig = sm2.sign(ANNEX_A_D, ANNEX_A_MESSAGE, ANNEX_A_ID, k=ANNEX_A_K, curve=ANNEX_A_CURVE)
    assert sig.hex().upper() == ANNEX_A_R + ANNEX_A_S
    assert sm2.verify(ANNEX_A_PUBLIC, ANNEX_A_MESSAGE, sig, ANNEX_A_ID, curve=ANNEX_A_CURVE)
    assert not sm2.verify(ANNEX_A_PUBLIC, b"message digesT", sig, ANNEX_A_ID, curve=ANNEX_A_CURVE)
    assert not sm2.verify(ANNEX_A_PUBLIC, ANNEX_A_MESSAGE, sig, b"BILL456@YAHOO.COM", curve=ANNEX_A_CURVE)


@pytest.mark.vectors
def test_annex_a_digest_forms():
    e = bytes.fromhex(ANNEX_A_E)
    sig = sm2.sign_digest(ANNEX_A_D, e, k=ANNEX_A_K, curve=ANNEX_A_CURVE)
    assert sig.hex().upper() == ANNEX_A_R + ANNEX_A_S
    assert sm2.verify_digest(ANNEX_A_PUBLIC, e, sig, curve=ANNEX_A_CURVE)
    assert not sm2.verify_digest(ANNEX_A_PUBLIC, bytes(32), sig, curve=ANNEX_A_CURVE)


@pytest.mark.vectors
def test_annex_a_curve_is_handed_to_gmalg_as_its_own_ecdlp():
    ecdlp = ANNEX_A_CURVE.ecdlp
    assert (ecdlp.fp.p, ecdlp.ec.a, ecdlp.ec.b, ecdlp.G, ecdlp.fpn.p) == (
        ANNEX_A_CURVE.p,
        ANNEX_A_CURVE.a,
        ANNEX_A_CURVE.b,
        (ANNEX_A_CURVE.gx, ANNEX_A_CURVE.gy),
        ANNEX_A_CURVE.n,
    )
    assert sm2.SM2_P256.ecdlp.fpn.p == N


def test_annex_a_key_is_not_valid_on_the_production_curve():
    with pytest.raises(CryptoError, match="not a point on curve sm2p256v1"):
        sm2.verify(ANNEX_A_PUBLIC, ANNEX_A_MESSAGE, bytes(64))


# -- production curve ------------------------------------------------------------------------------


def test_round_trip_default_id():
    pair = sm2.generate_keypair()
    assert len(pair.private) == 32
    assert len(pair.public) == 65
    assert pair.public[0] == 0x04
    assert sm2.public_from_private(pair.private) == pair.public
    sig = sm2.sign(pair.private, b"merchant|order|100|156|20240101|nonce")
    assert len(sig) == 64
    assert sm2.verify(pair.public, b"merchant|order|100|156|20240101|nonce", sig)
    assert sm2.verify(pair.public, b"merchant|order|100|156|20240101|nonce", sig, sm2.DEFAULT_USER_ID)
    assert not sm2.verify(pair.public, b"merchant|order|100|156|20240101|nonce", sig, b"other-id")


def test_empty_user_id_round_trip():
    # ENTL = 0 is legal; gmalg refuses an empty ID, so this one is checked against ourselves only.
    pair = sm2.generate_keypair()
    assert sm2.verify(pair.public, b"m", sm2.sign(pair.private, b"m", b""), b"")
    assert not sm2.verify(pair.public, b"m", sm2.sign(pair.private, b"m", b""))


def test_random_k_gives_different_signatures_that_all_verify():
    pair = sm2.generate_keypair()
    sigs = {sm2.sign(pair.private, b"m") for _ in range(3)}
    assert len(sigs) == 3
    assert all(sm2.verify(pair.public, b"m", sig) for sig in sigs)


def test_tampered_message_and_signature_fail():
    pair = sm2.generate_keypair()
    sig = sm2.sign(pair.private, b"amount=100")
    assert not sm2.verify(pair.public, b"amount=900", sig)
    for index in (0, 31, 32, 63):
        flipped = bytearray(sig)
        flipped[index] ^= 0x01
        assert not sm2.verify(pair.public, b"amount=100", bytes(flipped))
    other = sm2.generate_keypair()
    assert not sm2.verify(other.public, b"amount=100", sig)


@pytest.mark.parametrize(
    ("r", "s"),
    [(0, 1), (1, 0), (N, 1), (1, N), (N + 1, 5), (5, 2**256 - 1), (0, 0)],
    ids=["r=0", "s=0", "r=n", "s=n", "r=n+1", "s=max", "both-0"],
)
def test_r_or_s_out_of_range_is_false_not_an_exception(r, s):
    pair = sm2.generate_keypair()
    sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    assert sm2.verify(pair.public, b"m", sig) is False


def test_r_plus_s_equal_to_n_is_rejected():
    pair = sm2.generate_keypair()
    sig = sm2.sign(pair.private, b"m")
    r = int.from_bytes(sig[:32], "big")
    assert sm2.verify(pair.public, b"m", sig[:32] + (N - r).to_bytes(32, "big")) is False


@pytest.mark.parametrize("length", [0, 63, 65, 72])
def test_signature_of_wrong_length_is_false(length):
    pair = sm2.generate_keypair()
    assert sm2.verify(pair.public, b"m", bytes(length)) is False


# -- interoperability with gmalg ----------------------------------------------------------------------


@pytest.mark.parametrize("user_id", [sm2.DEFAULT_USER_ID, b"ALICE123@YAHOO.COM"])
def test_ours_signs_gmalg_verifies(user_id):
    pair = sm2.generate_keypair()
    sig = sm2.sign(pair.private, b"interop", user_id)
    assert gmalg_verify(pair.public, b"interop", sig, user_id)
    assert not gmalg_verify(pair.public, b"interoq", sig, user_id)


@pytest.mark.parametrize("user_id", [sm2.DEFAULT_USER_ID, b"ALICE123@YAHOO.COM"])
def test_gmalg_signs_ours_verifies(user_id):
    private, public = gmalg.SM2().generate_keypair()
    private = private.rjust(32, b"\x00")
    assert sm2.public_from_private(private) == public
    sig = gmalg_sign(private, b"interop", user_id)
    assert sm2.verify(public, b"interop", sig, user_id)
    assert not sm2.verify(public, b"interoq", sig, user_id)


@pytest.mark.parametrize("case", sorted(AWKWARD_KEYS))
def test_keys_with_leading_0_or_4_nibbles_work(case):
    private = bytes.fromhex(AWKWARD_KEYS[case])
    public = sm2.public_from_private(private)
    assert AWKWARD_PREFIX[case](public)
    assert public == gmalg.SM2().generate_pk(private)
    ours = sm2.sign(private, b"leading zero", sm2.DEFAULT_USER_ID)
    assert sm2.verify(public, b"leading zero", ours)
    assert gmalg_verify(public, b"leading zero", ours, sm2.DEFAULT_USER_ID)
    theirs = gmalg_sign(private, b"leading zero", sm2.DEFAULT_USER_ID)
    assert sm2.verify(public, b"leading zero", theirs)


@pytest.mark.property
@settings(max_examples=15, deadline=None)
@given(message=st.binary(max_size=200), user_id=st.binary(min_size=1, max_size=40))
def test_round_trip_and_interop_property(message, user_id):
    pair = sm2.generate_keypair()
    sig = sm2.sign(pair.private, message, user_id)
    assert sm2.verify(pair.public, message, sig, user_id)
    assert gmalg_verify(pair.public, message, sig, user_id)


def test_digest_forms_agree_with_the_sm2core_path():
    pair = sm2.generate_keypair()
    message, user_id, k = b"digest vs message", b"ALICE123@YAHOO.COM", 0x1234567890ABCDEF
    e = sm3(sm2.compute_za(pair.public, user_id) + message)
    via_core = sm2.sign(pair.private, message, user_id, k=k)
    assert sm2.sign_digest(pair.private, e, k=k) == via_core
    assert sm2.verify_digest(pair.public, e, via_core)
    theirs = gmalg_sign(pair.private, message, user_id)
    assert sm2.verify_digest(pair.public, e, theirs)
    assert sm2.verify_digest(pair.public, e, sm2.sign_digest(pair.private, e))


# -- fixed k ------------------------------------------------------------------------------------------


def _x_of_kg(k: int, curve: sm2.Sm2Curve) -> int:
    return int.from_bytes(sm2.public_from_private(k.to_bytes(curve.size, "big"), curve)[1 : 1 + curve.size], "big")


@pytest.mark.parametrize("degenerate", ["r=0", "r+k=n"])
def test_sign_digest_with_a_degenerate_fixed_k_raises(degenerate):
    n, k = ANNEX_A_CURVE.n, ANNEX_A_K
    x1 = _x_of_kg(k, ANNEX_A_CURVE)
    e = (-x1) % n if degenerate == "r=0" else (n - k - x1) % n
    with pytest.raises(CryptoError, match="degenerate"):
        sm2.sign_digest(ANNEX_A_D, e.to_bytes(32, "big"), k=k, curve=ANNEX_A_CURVE)


# With d = 5 and the default ID, these k give r = 0, r + k = n or s = 0 for b"m1" on TINY_CURVE
# (worked out from e = SM3(ZA || M) mod n and x([k]G)); every other k signs.
TINY_DEGENERATE_K = {21: "s=0", 102: "r=0", 121: "r=0", 204: "r+k=n", 208: "r+k=n", 218: "s=0"}


@pytest.mark.parametrize("k", sorted(TINY_DEGENERATE_K), ids=lambda k: f"k={k}-{TINY_DEGENERATE_K[k]}")
def test_sign_with_a_degenerate_fixed_k_raises_instead_of_looping(k):
    # Through SM2Core: gmalg asks its rnd_fn for another k, which a fixed k refuses.
    with pytest.raises(CryptoError, match="degenerate"):
        sm2.sign(b"\x05", b"m1", k=k, curve=TINY_CURVE)


def test_every_other_fixed_k_signs_on_the_tiny_curve():
    public = sm2.public_from_private(b"\x05", TINY_CURVE)
    for k in range(1, TINY_CURVE.n):
        if k not in TINY_DEGENERATE_K:
            assert sm2.verify(public, b"m1", sm2.sign(b"\x05", b"m1", k=k, curve=TINY_CURVE), curve=TINY_CURVE)


# -- bad inputs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "private",
    [bytes(31), bytes(33), bytes(32), (N - 1).to_bytes(32, "big"), N.to_bytes(32, "big")],
    ids=["31-bytes", "33-bytes", "zero", "n-1", "n"],
)
def test_bad_private_key_raises(private):
    with pytest.raises(CryptoError, match="private"):
        sm2.public_from_private(private)
    with pytest.raises(CryptoError, match="private"):
        sm2.sign(private, b"m")


def test_bad_public_key_raises():
    pair = sm2.generate_keypair()
    with pytest.raises(CryptoError, match="public"):
        sm2.verify(pair.public[1:], b"m", bytes(64))  # X||Y without 04
    with pytest.raises(CryptoError, match="public"):
        sm2.verify(b"\x02" + pair.public[1:], b"m", bytes(64))  # not uncompressed
    off_curve = pair.public[:-1] + bytes([pair.public[-1] ^ 1])
    with pytest.raises(CryptoError, match="not a point"):
        sm2.verify(off_curve, b"m", bytes(64))
    with pytest.raises(CryptoError, match="public"):
        sm2.compute_za(b"\x04" + bytes(64))


def test_bad_k_digest_and_user_id_raise():
    pair = sm2.generate_keypair()
    with pytest.raises(CryptoError, match="k must"):
        sm2.sign(pair.private, b"m", k=0)
    with pytest.raises(CryptoError, match="k must"):
        sm2.sign(pair.private, b"m", k=N)
    with pytest.raises(CryptoError, match="digest"):
        sm2.sign_digest(pair.private, bytes(31))
    with pytest.raises(CryptoError, match="digest"):
        sm2.verify_digest(pair.public, bytes(33), bytes(64))
    with pytest.raises(CryptoError, match="user_id"):
        sm2.compute_za(pair.public, b"x" * 8192)


def test_user_id_length_is_limited_to_what_gmalg_accepts():
    pair = sm2.generate_keypair()
    longest = b"x" * 4095
    assert len(sm2.compute_za(pair.public, longest)) == 32
    assert sm2.verify(pair.public, b"m", sm2.sign(pair.private, b"m", longest), longest)
    with pytest.raises(CryptoError, match="user_id"):
        sm2.compute_za(pair.public, b"x" * 4096)
    with pytest.raises(CryptoError, match="user_id"):
        sm2.sign(pair.private, b"m", b"x" * 4096)
    with pytest.raises(CryptoError, match="user_id"):
        sm2.verify(pair.public, b"m", bytes(64), b"x" * 4096)


def test_curve_with_base_point_off_the_curve_is_rejected():
    with pytest.raises(CryptoError, match="base point"):
        sm2.Sm2Curve("broken", p=23, a=1, b=1, gx=3, gy=11, n=7)
    with pytest.raises(CryptoError, match="curve even"):
        sm2.Sm2Curve("even", p=24, a=1, b=1, gx=3, gy=11, n=7)  # gmalg rejects an even p


def test_key_pair_repr_hides_the_private_key():
    pair = sm2.generate_keypair()
    assert pair.private.hex().upper() not in repr(pair)
    assert pair.public.hex().upper() in repr(pair)
