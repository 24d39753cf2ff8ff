"""GP card content management commands (GP Card Spec v2.3 clause 11): known encodings, round
trips, tokens and DAP signatures, and malformed input that must raise ProtocolError only.

Known encodings (values only): osmocom/pysim ``tests/unittests/test_globalplatform.py`` (install
parameters, GET STATUS APDUs, the SCP02 PUT KEY PSK vector), GlobalPlatformPro ``GPSession.java``
(INSTALL/DELETE/SET STATUS/extradition layouts, DAP block) and a SIM applet lock/unlock example
(``80F0408309...``), Martin Paljak's CRS engine for Amendment C SET STATUS P1 01.
"""

import contextlib

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from paylab.lab.protocol import tlv
from paylab.lab.protocol.errors import ProtocolError
from paylab.lab.protocol.gp import Scp02Session, Scp03Session, StaticKeys, scp03
from paylab.lab.protocol.gp import commands as gp

h = bytes.fromhex
ELF = h("A000000151000001")
MODULE = h("A00000015100000101")
APP = h("A00000015100000101")
ISD = h("A000000151000000")


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)


# --- known encodings ------------------------------------------------------------------------------

@pytest.mark.vectors
def test_pysim_install_parameters():
    raw = h("c900ef1cc8020100c7020100ca12010001001505000000000000000000000000")
    params = gp.InstallParameters.decode(raw)
    assert params.application == b""
    assert [o.tag for o in params.system_objects()] == [0xC8, 0xC7, 0xCA]
    assert params.encode() == raw
    assert gp.InstallParameters().encode() == h("c900")


@pytest.mark.vectors
def test_pysim_get_status_apdus():
    assert gp.GetStatusCommand(gp.GET_STATUS_ISD).command().encode() == h("80f28002024f0000")
    decoded = gp.GetStatusCommand.decode(0x80, 0x02, h("4f00"))
    assert decoded == gp.GetStatusCommand(0x80)
    # pysim's case-3 APDU announces a 5-byte tag list but carries 4 bytes: not a valid data field
    with pytest.raises(gp.GpCommandError):
        gp.GetStatusCommand.decode(0x20, 0x02, h("4f0212345c054f9f70c5"))
    fixed = gp.GetStatusCommand(0x20, h("1234"), tag_list=(0x4F, 0x9F70, 0xC5))
    assert fixed.command(le=None).encode() == h("80F220020A4F0212345C044F9F70C5")


@pytest.mark.vectors
def test_pysim_put_key_psk_over_scp02():
    """PUT KEY data with the SCP02 session DEK of pysim's real-card vector (key type 85, Amendment B
    Table 3-13: the value starts with the clear key length)."""
    keys = StaticKeys(h("100102030405060708090a0b0c0d0e0f"), h("101102030405060708090a0b0c0d0e0f"),
                      h("102102030405060708090a0b0c0d0e0f"), 0x20)
    session = Scp02Session.host_from_init_update_response(
        keys, h("40A62C37FA6304F8"), h("00000000000000000000700200016B4524ABEE7CF32EA3838BC148F3"), 0x01)
    clear = h("303132333435363738393a3b3c3d3e3f")
    ciphered, _ = session.encrypt_key_for_put_key(clear)
    data = gp.PutKeyData(0x40, (gp.KeyData(0x85, b"\x10" + ciphered, h("06125d")),))
    assert data.encode() == h("40" "85" "11" "10" "15abf1fe16ccc5aa13743394442942cd" "03" "06125d")
    assert gp.PutKeyData.decode(data.encode()) == data
    assert data.command(old_kvn=0x40).encode()[:4] == h("80D84001")


@pytest.mark.vectors
def test_globalplatformpro_layouts():
    install = gp.InstallForInstall(ELF, MODULE, APP, b"\x00")
    assert install.command().encode() == h(
        "80E60C0023" "08A000000151000001" "09A00000015100000101" "09A00000015100000101" "0100" "02C900" "00" "00")
    assert gp.InstallForPersonalization(APP).command().encode() == h("80E620000F000009A0000001510000010100000000")
    assert gp.InstallForMakeSelectable(APP, b"\x04").command(le=None).encode() == h(
        "80E60800" "10" "0000" "09A00000015100000101" "0104" "00" "00")
    assert gp.InstallForLoad(ELF, ISD).command().encode() == h(
        "80E6020015" "08A000000151000001" "08A000000151000000" "00" "00" "00" "00")
    assert gp.InstallForExtradition(ISD, APP).encode() == h("08A000000151000000" "00" "09A00000015100000101" "000000")
    assert gp.DeleteCommand(ELF, True).command(le=None).encode() == h("80E400800A4F08A000000151000001")
    assert gp.DeleteCommand(ELF).command(le=None).encode() == h("80E400000A4F08A000000151000001")
    assert gp.SetStatusCommand(gp.SET_STATUS_ISD, 0x0F).command().encode() == h("80F0800F")
    dap = gp.DapBlock(ISD, b"\x11" * 128).encode()
    assert dap[:16] == h("E2818D" "4F08A000000151000000" "C38180")  # GPPro: 8 + 128 + 2 + 3


@pytest.mark.vectors
def test_applet_lock_unlock_example():
    lock = gp.SetStatusCommand.decode(0x40, 0x83, h("A00000001840840000"))
    assert lock.command().encode() == h("80F0408309A00000001840840000")
    assert gp.SetStatusCommand(0x40, 0x03, h("A00000001840840000")).command().encode() == h(
        "80F0400309A00000001840840000")


@pytest.mark.vectors
def test_amendment_c_availability():
    crs = h("A00000015143525300")
    cmd = gp.SetAvailability(True, (gp.AvailabilityTarget(crs),)).command()
    assert cmd.encode() == h("80F001010B4F09A00000015143525300")
    two = gp.SetAvailability.decode(0x00, h("4F09A00000015143525300" "4F07A0000000031010" "870101"))
    assert two == gp.SetAvailability(False, (gp.AvailabilityTarget(crs), gp.AvailabilityTarget(h("A0000000031010"), 1)))
    assert isinstance(gp.parse_set_status(0x01, 0x01, cmd.data), gp.SetAvailability)
    with pytest.raises(gp.GpCommandError) as info:
        gp.SetAvailability.decode(0x80, cmd.data)  # NON_ACTIVATABLE is not for SET STATUS
    assert info.value.sw == 0x6A86


# --- LOAD, hashes, tokens, DAP ---------------------------------------------------------------------

def test_load_commands_number_blocks_and_flag_the_last():
    load_file = gp.LoadFile(bytes(450)).encode()
    commands = gp.load_commands(load_file, 200)
    assert load_file[:4] == h("C48201C2")
    assert [(c.p1, c.p2, len(c.data)) for c in commands] == [(0x00, 0, 200), (0x00, 1, 200), (0x80, 2, 54)]
    assert b"".join(c.data for c in commands) == load_file
    with pytest.raises(gp.GpCommandError):
        gp.load_commands(bytes(257), 1)


def test_load_file_round_trip_and_errors():
    dap = gp.DapBlock(ISD, b"sig")
    file = gp.LoadFile(b"\xdf\x70\x00", (dap,))
    assert gp.LoadFile.decode(file.encode()) == file
    assert gp.LoadFile.decode(gp.LoadFile(b"x", ciphered=True).encode()).ciphered
    for bad in (b"", h("E200"), h("C400C400"), h("C4014142"), h("E2054F03A00000C400"), h("9F0100")):
        with pytest.raises(gp.GpCommandError):
            gp.LoadFile.decode(bad)


def test_hash_algorithms():
    block = b"load file data block"
    for name, size in (("sha1", 20), ("sha256", 32), ("sha384", 48), ("sha512", 64)):
        digest = gp.load_file_data_block_hash(block, name)
        assert len(digest) == size
        assert gp.hash_algorithm_of(digest) == name
    with pytest.raises(gp.GpCommandError):
        gp.hash_algorithm_of(bytes(16))
    with pytest.raises(gp.GpCommandError):
        gp.load_file_data_block_hash(block, "md5")
    with pytest.raises(gp.GpCommandError):
        gp.InstallForLoad(ELF, b"", bytes(3)).encode()


def test_token_data_is_p1_p2_lc_and_the_data_without_token():
    request = gp.InstallForLoad(ELF, ISD, bytes(20))
    signed = request.signed_data()
    assert request.token_data() == h("0200") + bytes([len(signed)]) + signed
    assert request.encode() == signed + b"\x00"
    with_token = gp.InstallForLoad(ELF, ISD, bytes(20), token=bytes(128))
    assert with_token.encode() == signed + h("8180") + bytes(128)
    assert gp.InstallForLoad.decode(with_token.encode()) == with_token
    assert gp.token_data(0x0C, 0x00, bytes(300))[:5] == h("0C00" "00012C")
    delete = gp.DeleteCommand(ELF, True, token=b"\x01\x02")
    assert delete.encode() == h("4F08A000000151000001" "9E020102")
    assert delete.token_data() == h("0080" "0A" "4F08A000000151000001")


@pytest.mark.parametrize("scheme", ["pkcs1-sha1", "pkcs1-sha256", "pss-sha256"])
def test_rsa_signature_schemes(rsa_key, scheme):
    signature = gp.rsa_sign(rsa_key, b"dtbs", scheme)
    assert gp.rsa_verify(rsa_key.public_key(), b"dtbs", signature)
    assert gp.rsa_verify(rsa_key.public_key(), b"dtbs", signature, [scheme])
    assert not gp.rsa_verify(rsa_key.public_key(), b"dtbS", signature)
    assert not gp.rsa_verify(rsa_key.public_key(), b"dtbs", signature[:-1])


def test_put_key_data_for_scp03_unwraps_on_the_card_side():
    keys = StaticKeys.gp_default_test_keys()
    host_challenge = bytes(8)
    initialize_update = Scp03Session.host_initialize_update(keys, host_challenge)
    _, response = Scp03Session.card_respond_init_update(keys, initialize_update, sequence_counter=h("000001"),
                                                        card_challenge=bytes(8))
    host = Scp03Session.host_from_init_update_response(keys, host_challenge, response)
    new = StaticKeys.single(bytes(range(16)), kvn=0x01)
    data = gp.put_key_data(host, 0x01, new)
    assert [k.key_type for k in data.keys] == [gp.KEY_TYPE_AES] * 3
    parsed = gp.PutKeyData.decode(data.encode())
    assert scp03.decrypt_key_from_put_key(keys.dek, parsed.keys[0].value, kcv=parsed.keys[0].kcv) == new.enc
    assert data.command().encode()[:4] == h("80D80081")


def test_store_data_p1_and_dgis():
    assert gp.StoreDataP1(True, gp.STORE_ENCRYPTION_NONE, gp.STORE_STRUCTURE_BER).encode() == 0x90
    assert gp.StoreDataP1(False, gp.STORE_ENCRYPTION_DEK, gp.STORE_STRUCTURE_DGI).encode() == 0x68
    assert gp.StoreDataP1.decode(0xE9) == gp.StoreDataP1(True, 3, 1, 1)
    commands = gp.store_data_commands([b"a", b"b", b"c"], structure=gp.STORE_STRUCTURE_DGI)
    assert [(c.p1, c.p2) for c in commands] == [(0x08, 0), (0x08, 1), (0x88, 2)]
    assert gp.encode_dgi(0x8000, bytes(3)) == h("800003000000")
    assert gp.encode_dgi(0x0101, bytes(255))[:5] == h("0101FF00FF")
    dgis = [(0x0101, b"x" * 300), (0x9000, b"")]
    assert gp.decode_dgis(b"".join(gp.encode_dgi(t, v) for t, v in dgis)) == dgis
    with pytest.raises(gp.GpCommandError):
        gp.decode_dgis(h("01010501"))


def test_get_data_and_get_status_entries():
    assert gp.get_data_command(gp.TAG_CPLC).encode() == h("80CA9F7F00")
    assert gp.get_data_command(gp.TAG_KEY_INFORMATION_TEMPLATE).encode() == h("80CA00E000")
    entry = gp.GetStatusEntry(ELF, 0x01, None, None, h("0102"), (MODULE,), ISD)
    raw = entry.encode_tlv()
    assert raw == tlv.tlv(0xE3, tlv.tlv(0x4F, ELF) + tlv.tlv(0x9F70, b"\x01") + tlv.tlv(0xCE, h("0102"))
                          + tlv.tlv(0x84, MODULE) + tlv.tlv(0xCC, ISD))
    assert gp.parse_get_status_response(raw + raw, scope=0x10) == [entry, entry]
    legacy = entry.encode_legacy(gp.GET_STATUS_LOAD_FILES_AND_MODULES)
    assert legacy == h("08A000000151000001" "01" "00" "01" "09A00000015100000101")
    assert gp.parse_get_status_response(legacy, scope=0x10, tlv_format=False) == [
        gp.GetStatusEntry(ELF, 0x01, b"\x00", modules=(MODULE,))]
    with pytest.raises(gp.GpCommandError):
        gp.parse_get_status_response(h("E3039F7000"), scope=0x40)


def test_parse_install_dispatch_and_p1_errors():
    data = gp.InstallForInstall(ELF, MODULE, APP).encode()
    assert isinstance(gp.parse_install(0x0C, data), gp.InstallForInstall)
    assert isinstance(gp.parse_install(0x84, data), gp.InstallForInstall)  # b8: more commands
    assert isinstance(gp.parse_install(0x20, gp.InstallForPersonalization(APP).encode()), gp.InstallForPersonalization)
    for p1 in (0x00, 0x01, 0x03, 0x0E, 0x30):
        with pytest.raises(gp.GpCommandError) as info:
            gp.parse_install(p1, data)
        assert info.value.sw == 0x6A86
    with pytest.raises(gp.GpCommandError) as info:
        gp.parse_install(0x20, data)
    assert info.value.sw == 0x6A80


# --- round trips ----------------------------------------------------------------------------------

aids = st.binary(min_size=5, max_size=16)
optional_aids = st.one_of(st.just(b""), aids)
privileges = st.one_of(st.binary(min_size=1, max_size=1), st.binary(min_size=3, max_size=3))
hashes = st.sampled_from([0, 20, 32, 48, 64]).flatmap(lambda n: st.binary(min_size=n, max_size=n))
blobs = st.binary(max_size=300)
tokens = st.binary(max_size=300)


@settings(max_examples=150, deadline=None)
@given(st.one_of(
    st.builds(gp.InstallForLoad, aids, optional_aids, hashes, blobs, tokens),
    st.builds(gp.InstallForInstall, aids, aids, aids, privileges, blobs, tokens),
    st.builds(gp.InstallForMakeSelectable, aids, st.one_of(st.just(b""), privileges), blobs, tokens),
    st.builds(gp.InstallForExtradition, aids, aids, blobs, tokens),
    st.builds(gp.InstallForRegistryUpdate, optional_aids, optional_aids, st.one_of(st.just(b""), privileges),
              blobs, tokens),
    st.builds(gp.InstallForPersonalization, aids),
))
def test_install_round_trip(request):
    cmd = request.command()
    assert gp.parse_install(cmd.p1, cmd.data) == request
    signed = request.signed_data()
    assert cmd.data[:len(signed)] == signed
    assert cmd.data[len(signed):].endswith(request.token)
    lc = bytes([len(signed)]) if len(signed) < 256 else b"\x00" + len(signed).to_bytes(2, "big")
    assert request.token_data(cmd.p1) == bytes([cmd.p1, 0]) + lc + signed


control_references = st.lists(st.tuples(st.sampled_from([0x42, 0x45, 0x5F20, 0x93]), st.binary(max_size=16)),
                              max_size=4).map(lambda items: b"".join(tlv.tlv(t, v) for t, v in items))


@settings(max_examples=100, deadline=None)
@given(st.builds(gp.DeleteCommand, aids, st.booleans(), st.one_of(st.none(), control_references),
                 st.binary(max_size=200), st.booleans()))
def test_delete_round_trip(request):
    cmd = request.command()
    assert gp.DeleteCommand.decode(cmd.data, p1=cmd.p1, p2=cmd.p2) == request


@settings(max_examples=100, deadline=None)
@given(st.builds(gp.GetStatusCommand, st.sampled_from(gp.GET_STATUS_SCOPES), st.binary(max_size=16), st.just(True),
                 st.booleans(), st.one_of(st.none(), st.lists(st.sampled_from([0x4F, 0x9F70, 0xC5, 0xCC, 0x84]),
                                                               max_size=5).map(tuple))),
       st.builds(gp.GetStatusCommand, st.sampled_from(gp.GET_STATUS_SCOPES), st.binary(max_size=16), st.just(False),
                 st.booleans()))
def test_get_status_command_round_trip(tagged, legacy):
    for request in (tagged, legacy):
        cmd = request.command()
        assert gp.GetStatusCommand.decode(cmd.p1, cmd.p2, cmd.data) == request


status_entries = st.builds(gp.GetStatusEntry, aids, st.integers(0, 255), st.one_of(st.none(), privileges),
                           st.one_of(st.none(), aids), st.one_of(st.none(), st.binary(min_size=1, max_size=4)),
                           st.lists(aids, max_size=3).map(tuple), st.one_of(st.none(), aids))


@settings(max_examples=100, deadline=None)
@given(st.lists(status_entries, max_size=4), st.sampled_from(gp.GET_STATUS_SCOPES))
def test_get_status_entries_round_trip(entries, scope):
    raw = b"".join(e.encode_tlv() for e in entries)
    assert gp.parse_get_status_response(raw, scope=scope) == entries
    legacy = b"".join(e.encode_legacy(scope) for e in entries)
    parsed = gp.parse_get_status_response(legacy, scope=scope, tlv_format=False)
    assert [(p.aid, p.life_cycle) for p in parsed] == [(e.aid, e.life_cycle) for e in entries]
    assert [p.privileges for p in parsed] == [bytes([e.privileges[0] if e.privileges else 0]) for e in entries]


@settings(max_examples=100, deadline=None)
@given(st.one_of(
    st.builds(gp.SetStatusCommand, st.sampled_from([0x40, 0x60]), st.integers(0, 255), aids),
    st.builds(gp.SetStatusCommand, st.just(0x80), st.integers(0, 255), optional_aids),
    st.builds(gp.SetAvailability, st.booleans(),
              st.lists(st.builds(gp.AvailabilityTarget, aids, st.one_of(st.none(), st.integers(0, 255))),
                       min_size=1, max_size=4).map(tuple)),
))
def test_set_status_round_trip(request):
    cmd = request.command()
    assert gp.parse_set_status(cmd.p1, cmd.p2, cmd.data) == request


@settings(max_examples=100, deadline=None)
@given(st.builds(gp.PutKeyData, st.integers(0, 255),
                 st.lists(st.builds(gp.KeyData, st.integers(0, 0xFE), st.binary(max_size=300),
                                    st.binary(max_size=3)), min_size=1, max_size=3).map(tuple)),
       st.builds(gp.LoadFile, st.binary(max_size=400),
                 st.lists(st.builds(gp.DapBlock, aids, st.binary(max_size=256)), max_size=2).map(tuple),
                 st.booleans()),
       st.builds(gp.InstallParameters, st.one_of(st.none(), st.binary(max_size=40)),
                 st.one_of(st.none(), st.lists(st.binary(max_size=20).map(lambda v: tlv.tlv(0xC7, v)),
                                               max_size=3).map(b"".join)),
                 st.one_of(st.none(), st.binary(max_size=20).map(lambda v: tlv.tlv(0x80, v)))))
def test_data_fields_round_trip(put_key, load_file, params):
    if put_key.keys[0].key_type == 0xFF:
        return
    assert gp.PutKeyData.decode(put_key.encode()) == put_key
    assert gp.LoadFile.decode(load_file.encode()) == load_file
    assert gp.InstallParameters.decode(params.encode()) == params


# --- malformed input: ProtocolError and nothing else ---------------------------------------------

DECODERS = [
    gp.InstallForLoad.decode, gp.InstallForInstall.decode, gp.InstallForMakeSelectable.decode,
    gp.InstallForExtradition.decode, gp.InstallForRegistryUpdate.decode, gp.InstallForPersonalization.decode,
    gp.InstallParameters.decode, gp.LoadFile.decode, gp.PutKeyData.decode, gp.decode_dgis,
    lambda d: gp.DeleteCommand.decode(d, p2=0x80), lambda d: gp.GetStatusCommand.decode(0x40, 0x02, d),
    lambda d: gp.GetStatusCommand.decode(0x40, 0x00, d), lambda d: gp.SetStatusCommand.decode(0x40, 0x80, d),
    lambda d: gp.SetAvailability.decode(0x01, d), lambda d: gp.parse_get_status_response(d, scope=0x40),
    lambda d: gp.parse_get_status_response(d, scope=0x10, tlv_format=False),
    lambda d: gp.InstallForInstall.decode(d).install_parameters,
]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(range(len(DECODERS))), st.binary(max_size=120), st.integers(0, 255), st.integers(0, 255))
def test_random_bytes_raise_only_protocol_errors(index, data, p1, p2):
    for decode in (DECODERS[index], lambda d: gp.parse_install(p1, d), lambda d: gp.parse_set_status(p1, p2, d),
                   lambda d: gp.DeleteCommand.decode(d, p1=p1, p2=p2),
                   lambda d: gp.GetStatusCommand.decode(p1, p2, d)):
        with contextlib.suppress(ProtocolError):
            decode(data)


def test_builders_reject_bad_values():
    bad = [
        lambda: gp.InstallForInstall(ELF, MODULE, h("A000"), b"\x00").encode(),
        lambda: gp.InstallForInstall(ELF, MODULE, APP, b"\x00\x00").encode(),
        lambda: gp.InstallForLoad(bytes(17)).encode(),
        lambda: gp.SetStatusCommand(0x40, 0x80, b"").encode(),
        lambda: gp.SetAvailability(True, ()).encode(),
        lambda: gp.GetStatusCommand(0x41).encode(),
        lambda: gp.GetStatusCommand(0x40, tlv_format=False, tag_list=(0x4F,)).encode(),
        lambda: gp.PutKeyData(0x01, ()).encode(),
        lambda: gp.KeyData(0xFF, b"").encode(),
        lambda: gp.StoreDataP1(True, 4).encode(),
        lambda: gp.store_data_commands([]),
        lambda: gp.get_data_command(0x10000),
        lambda: gp.load_parameters(volatile_data=70000),
        lambda: gp.split_blocks(b"x", 0),
    ]
    for build in bad:
        with pytest.raises(gp.GpCommandError):
            build()
    assert gp.load_parameters(non_volatile_code=0x0100, volatile_data=0x20) == h("EF08C6020100C7020020")
