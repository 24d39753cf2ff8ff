"""Vectors for the block-cipher primitives and MACs (domain brief section 2, vectors 2 and 4)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paylab.lab.protocol.crypto import mac, primitives
from paylab.lab.protocol.errors import CryptoError

pytestmark = pytest.mark.vectors


def test_sm4_gbt32907_vector():
    key = bytes.fromhex("0123456789abcdeffedcba9876543210")
    assert primitives.sm4_encrypt(key, key).hex() == "681edf34d206965e86b3e94f536e4246"
    assert primitives.sm4_decrypt(key, bytes.fromhex("681edf34d206965e86b3e94f536e4246")) == key


def test_sm3_abc():
    assert primitives.sm3(b"abc").hex() == (
        "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    )


def test_kcv_of_brief_imk():
    imk = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    assert primitives.kcv(imk)[:2].hex().upper() == "08D7"


def test_fips113_des_cbc_mac():
    got = mac.iso9797_mac_alg1(
        bytes.fromhex("0123456789ABCDEF"), b"7654321 Now is the time for ", padding="m1", cipher="des"
    )
    assert got[:4].hex().upper() == "F1D30F68"


def test_iso9797_alg3_retail_mac():
    key = bytes.fromhex("7CA110454A1A6E570131D9619DC1376E")
    assert mac.iso9797_mac_alg3(key, b"Hello World !!!!", padding="none").hex().upper() == "F09B856213BAB83B"
    # X9.19 pads with zeros; an aligned input is unchanged, so the value is the same.
    assert mac.x9_19_mac(key, b"Hello World !!!!").hex().upper() == "F09B856213BAB83B"


def test_aes_cmac_rfc4493_example2():
    key = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
    msg = bytes.fromhex("6bc1bee22e409f96e93d7e117393172a")
    assert primitives.aes_cmac(key, msg).hex() == "070a16b46b4d4144f79bdd9dd04a287c"


def test_cup_ecb_mac_follows_the_four_steps():
    mak = bytes.fromhex("0123456789ABCDEF")
    data = b"hello world 1234" + b"xyz"
    padded = data + bytes(5)
    acc = bytes(8)
    for i in range(0, len(padded), 8):
        acc = primitives.xor(acc, padded[i : i + 8])
    expanded = acc.hex().upper().encode()
    step3 = primitives.des_encrypt(mak, primitives.xor(primitives.des_encrypt(mak, expanded[:8]), expanded[8:]))
    assert mac.cup_ecb_mac(mak, data) == step3.hex().upper().encode()[:8]
    assert len(mac.cup_ecb_mac(mak, data)) == 8


@pytest.mark.parametrize("bad", [b"", b"\x01" * 7, b"\x01" * 17, b"\x01" * 32])
def test_bad_key_lengths_raise_crypto_error(bad):
    with pytest.raises(CryptoError):
        primitives.sm4_encrypt(bad, bytes(16))
    with pytest.raises(CryptoError):
        mac.iso9797_mac_alg3(bad, b"x")


def test_unaligned_ecb_raises_crypto_error():
    with pytest.raises(CryptoError):
        primitives.tdes_encrypt(bytes(16), b"abc")


@pytest.mark.property
@given(st.binary(max_size=64))
def test_m2_padding_round_trip(data):
    padded = primitives.pad_iso9797_m2(data, 8)
    assert len(padded) % 8 == 0
    assert len(padded) > len(data)
    assert primitives.unpad_iso9797_m2(padded) == data


@pytest.mark.property
@given(st.binary(min_size=16, max_size=16), st.binary(max_size=64))
def test_sm4_cbc_round_trip(key, data):
    padded = primitives.pad_iso9797_m2(data, 16)
    ct = primitives.cbc_encrypt("sm4", key, padded)
    assert primitives.cbc_decrypt("sm4", key, ct) == padded
