"""Security domain of the emulated card (GP Card Spec v2.3, Amendment D), driven from the host side.

Every card is fabricated into a card image (a file under ``tmp_path``) and powered on; the tests
talk to it as a TSM would, with the protocol core's *host* sessions (``Scp02Session`` /
``Scp03Session``: ``host_initialize_update``, ``host_from_init_update_response``,
``external_authenticate``, ``wrap``, ``unwrap_response``, ``encrypt_key_for_put_key``). Keys are
the GP TEST KEYS (404142..4F) and made-up key sets: never production keys.

INSTALL [for personalization] belongs to content.py; the forwarding tests set the target the way
it does (``ctx.session["perso_target"]`` of the ISD on the channel).
"""

from __future__ import annotations

import contextlib
import random
from typing import ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paylab.drivers.se import catalog_default
from paylab.drivers.se.applet import ApduContext, Applet, Reply
from paylab.drivers.se.catalog_default import OptionalModule, default_catalog
from paylab.drivers.se.errors import CardImageError, ISOException
from paylab.drivers.se.factory import (
    ISD_AID_GP,
    ISD_AID_OPEN_PLATFORM,
    ISD_PRIVILEGES,
    PPSE_AID,
    PPSE_IMPLEMENTATION,
    Cplc,
    add_security_domain,
    fabricate,
)
from paylab.drivers.se.form_factor import ESE, MICROSD, SIM, FormFactor
from paylab.drivers.se.gp.security_domain import IMPLEMENTATION, SecurityDomain, encode_dgi
from paylab.drivers.se.image import CardImage
from paylab.drivers.se.registry import (
    APP_SELECTABLE,
    CARD_INITIALIZED,
    CARD_LOCKED,
    CARD_OP_READY,
    CARD_SECURED,
    CARD_TERMINATED,
    SD_INSTALLED,
    SD_PERSONALIZED,
    SD_SELECTABLE,
    RegistryEntry,
)
from paylab.drivers.se.runtime import SecureElement
from paylab.lab.protocol import tlv
from paylab.lab.protocol.apdu import CommandApdu, ResponseApdu, transmit_with_chaining
from paylab.lab.protocol.crypto import primitives
from paylab.lab.protocol.errors import SecureChannelError
from paylab.lab.protocol.gp import Scp02Session, Scp03Session, SecurityLevel, StaticKeys, scp03
from paylab.lab.protocol.gp.keys import wrap_key_component

h = bytes.fromhex

TEST_KEYS = StaticKeys.gp_default_test_keys()
FORM_FACTORS = [SIM, MICROSD, ESE]
SCP_I = {"02": 0x55, "03": 0x70}
LEVELS = [("02", 0x00), ("02", 0x01), ("02", 0x03),
          ("03", 0x00), ("03", 0x01), ("03", 0x03), ("03", 0x11), ("03", 0x13), ("03", 0x33)]
SSD_AID = h("A000000151535344")
STUB_AID = h("F0000000505354554201")
GET_CPLC = h("80CA9F7F00")


def key_set(byte: int, kvn: int, length: int = 16) -> StaticKeys:
    """A made-up key set: ENC = byte*length, MAC = byte+1, DEK = byte+2."""
    return StaticKeys(bytes([byte]) * length, bytes([byte + 1]) * length, bytes([byte + 2]) * length, kvn)


# --- card and host helpers ------------------------------------------------------------------------

def new_image(tmp_path, ff: FormFactor = ESE, **kwargs) -> CardImage:
    image = CardImage(tmp_path / f"{ff.name}.card", durable=False)
    fabricate(image, ff, **kwargs)
    return image


def power_on(image: CardImage, ff: FormFactor = ESE, catalog=None) -> SecureElement:
    se = SecureElement(image, ff, catalog or default_catalog(), seed=7)
    se.power_on()
    return se


def make_card(tmp_path, ff: FormFactor = ESE, **kwargs) -> SecureElement:
    return power_on(new_image(tmp_path, ff, **kwargs), ff)


def send(se: SecureElement, apdu: bytes | CommandApdu) -> ResponseApdu:
    """Transmit with T=0 response recovery (61xx -> GET RESPONSE), as a reader driver does."""
    cmd = apdu if isinstance(apdu, CommandApdu) else CommandApdu.decode(apdu)
    return transmit_with_chaining(se.transmit, cmd)


def select(se: SecureElement, aid: bytes, channel: int = 0) -> ResponseApdu:
    return send(se, CommandApdu(0x00, 0xA4, 0x04, 0x00, aid, 256).with_channel(channel))


def isd_aid(se: SecureElement) -> bytes:
    return se.registry.isd().aid


def sd_context(se: SecureElement, aid: bytes | None = None, channel: int = 0) -> tuple[SecurityDomain, ApduContext]:
    """The applet object and a context, for the helper methods content.py calls."""
    entry = se.registry.get(aid) if aid else se.registry.isd()
    applet = se.applet(entry)
    assert isinstance(applet, SecurityDomain)
    return applet, se.context(entry, channel)


class Host:
    """The off-card side of one secure channel to a security domain (a TSM)."""

    def __init__(self, se: SecureElement, aid: bytes, keys: StaticKeys = TEST_KEYS, *, scp: str = "03",
                 level: int = 0x01, channel: int = 0, host_challenge: bytes = h("0102030405060708")) -> None:
        self.se, self.aid, self.keys, self.scp, self.level, self.channel = se, aid, keys, scp, level, channel
        self.host_challenge = host_challenge
        self.session: Scp02Session | Scp03Session | None = None

    @property
    def protocol(self) -> type[Scp02Session] | type[Scp03Session]:
        return Scp02Session if self.scp == "02" else Scp03Session

    def initialize_update(self, kvn: int | None = None) -> ResponseApdu:
        raw = self.protocol.host_initialize_update(self.keys, self.host_challenge, kvn=kvn)
        return send(self.se, CommandApdu.decode(raw).with_channel(self.channel))

    def authenticate(self, response: ResponseApdu) -> Scp02Session | Scp03Session:
        if self.scp == "02":
            return Scp02Session.host_from_init_update_response(self.keys, self.host_challenge, response.data,
                                                               self.level, i=SCP_I["02"])
        return Scp03Session.host_from_init_update_response(self.keys, self.host_challenge, response.data,
                                                           self.level, aid=self.aid)

    def open(self, *, kvn: int | None = None, select_first: bool = True) -> Host:
        if select_first:
            assert select(self.se, self.aid, self.channel).sw == 0x9000
        response = self.initialize_update(kvn)
        assert response.sw == 0x9000, f"INITIALIZE UPDATE {response.sw:04X}"
        self.session = self.authenticate(response)
        answer = send(self.se, CommandApdu.decode(self.session.external_authenticate()).with_channel(self.channel))
        assert answer.sw == 0x9000, f"EXTERNAL AUTHENTICATE {answer.sw:04X}"
        return self

    def wrap(self, plain: bytes) -> bytes:
        assert self.session is not None
        return self.session.wrap(CommandApdu.decode(plain).with_channel(self.channel).encode())

    def send(self, plain: bytes) -> ResponseApdu:
        assert self.session is not None
        response = send(self.se, self.wrap(plain))
        return ResponseApdu.decode(self.session.unwrap_response(response.encode()))

    # -- PUT KEY / STORE DATA builders (host side of GP 2.3 11.8 / 11.11) ----------------------
    def put_key(self, new: StaticKeys, *, old_kvn: int = 0, bad_kcv: bool = False) -> bytes:
        assert self.session is not None
        return put_key_command(self.session.encrypt_key_for_put_key, new, old_kvn=old_kvn, bad_kcv=bad_kcv,
                               aes=self.scp == "03")

    def encrypt(self, value: bytes) -> bytes:
        """DEK-encrypt sensitive STORE DATA content (a block multiple) with the protocol core:
        SCP02 session DEK in 3DES-ECB, SCP03 static DEK in AES-CBC from a zero ICV."""
        assert self.session is not None
        if isinstance(self.session, Scp02Session):
            return wrap_key_component("3des", self.session.session_keys.dek, value)
        return wrap_key_component("aes", self.keys.dek, value, bytes(16))


def put_key_command(encrypt, new: StaticKeys, *, old_kvn: int = 0, bad_kcv: bool = False, aes: bool = True,
                    p2: int = 0x81) -> bytes:
    """``80 D8 oldKVN 81 newKVN {type L [keylen] cryptogram 03 KCV} x3`` (GP 2.3 Table 11-68;
    Amendment D: AES components carry the clear key length in front)."""
    data = bytes([new.kvn])
    for key in (new.enc, new.mac, new.dek):
        block, kcv = encrypt(key)
        if aes and len(block) % 16 == 0:
            block = bytes([len(key)]) + block
        if bad_kcv:
            kcv = bytes([kcv[0] ^ 0xFF]) + kcv[1:]
        data += bytes([0x88 if aes else 0x80]) + tlv.encode_length(len(block)) + block + b"\x03" + kcv
    return CommandApdu(0x80, 0xD8, old_kvn, p2, data).encode()


def key_dgis(host: Host, new: StaticKeys, scp: str, *, bad_kcv: bool = False, first_block: int = 0) -> list[bytes]:
    """STORE DATA sequence personalising a key set: 00A6 clear, 8F01 encrypted, 9F01 KCVs (last)."""
    key_type = "des" if scp == "02" else "aes"
    kcvs = b"".join(primitives.kcv(k, "3des") if key_type == "des" else primitives.kcv_gp_aes(k)
                    for k in (new.enc, new.mac, new.dek))
    if bad_kcv:
        kcvs = bytes(9)
    params = encode_dgi(0x00A6, bytes([new.kvn, int(scp), SCP_I[scp]]))
    keys = encode_dgi(0x8F01, host.encrypt(new.enc + new.mac + new.dek))
    n = first_block
    return [CommandApdu(0x80, 0xE2, 0x00, n, params).encode(),
            CommandApdu(0x80, 0xE2, 0x60, n + 1, keys).encode(),
            CommandApdu(0x80, 0xE2, 0x80, n + 2, encode_dgi(0x9F01, kcvs)).encode()]


# --- fabrication --------------------------------------------------------------------------------

@pytest.mark.parametrize("ff", FORM_FACTORS, ids=lambda f: f.name)
def test_fabricate_writes_a_blank_card(tmp_path, ff):
    image = new_image(tmp_path, ff, card_serial=0x12345678)
    assert image.path.exists()
    reloaded = CardImage(image.path)
    isd = reloaded.state["registry"][0]
    assert isd["kind"] == "ISD"
    assert isd["privileges"] == ISD_PRIVILEGES
    assert isd["implementation"] == IMPLEMENTATION
    assert isd["aid"] == (ISD_AID_OPEN_PLATFORM if ff is SIM else ISD_AID_GP)
    assert reloaded.state["card"]["life_cycle"] == CARD_OP_READY
    cplc = Cplc.decode(reloaded.state["card"]["cplc"])
    assert cplc.ic_serial_number == h("12345678")
    assert Cplc.decode(cplc.encode()) == cplc
    ppse = RegistryEntry.from_state(reloaded.state["registry"][1])
    assert ppse.aid == PPSE_AID
    assert ppse.kind == "APP"
    assert ppse.life_cycle == APP_SELECTABLE
    assert ppse.implementation == PPSE_IMPLEMENTATION
    assert ppse.extra == {"os": True}
    se = power_on(image, ff)
    assert se.atr == ff.atr
    fci = select(se, isd["aid"])
    assert fci.sw == 0x9000
    assert tlv.find(tlv.decode(fci.data), 0x84).value == isd["aid"]


def test_fabricate_options_and_refusals(tmp_path):
    image = new_image(tmp_path, ESE, install_ppse=False, isd_aid=h("A0000001510000AA"), scp="02",
                      iin=h("42010203"), cin=h("1122334455"))
    assert [row["kind"] for row in image.state["registry"]] == ["ISD"]
    with pytest.raises(CardImageError, match="already holds a card"):
        fabricate(image, ESE)
    fabricate(image, ESE, overwrite=True)
    with pytest.raises(ValueError, match="SCP02 keys"):
        fabricate(CardImage(None), ESE, scp="02", isd_keys=key_set(0x10, 1, 32))
    with pytest.raises(ValueError, match="scp"):
        fabricate(CardImage(None), ESE, scp="01")
    with pytest.raises(ValueError, match="i=0x01"):
        fabricate(CardImage(None), ESE, scp="03", scp_i=0x01)
    with pytest.raises(ValueError, match="CPLC ic_type"):
        Cplc(ic_type=b"X")


def test_default_catalog_registers_the_security_domain_and_tolerates_missing_modules(monkeypatch):
    catalog = default_catalog()
    assert catalog.implementation(IMPLEMENTATION) is SecurityDomain
    ppse = catalog.implementation(PPSE_IMPLEMENTATION)
    assert ppse is not None
    monkeypatch.setattr(catalog_default, "OPTIONAL_MODULES",
                        (OptionalModule("gp.not_there", applet_class="Nope", implementation="paylab.nope"),
                         OptionalModule("applets.not_there_either")))
    catalog = default_catalog()
    stand_in = catalog.implementation("paylab.nope")
    assert stand_in is not None
    assert catalog.packages() == []
    with pytest.raises(ImportError, match=r"gp\.not_there"):
        stand_in(None, b"\xa0\x00\x00\x00\x01")  # type: ignore[arg-type]


def test_default_catalog_propagates_errors_other_than_import_errors(monkeypatch):
    def broken(name):
        raise RuntimeError(f"bug in {name}")

    monkeypatch.setattr(catalog_default.importlib, "import_module", broken)
    with pytest.raises(RuntimeError, match="bug in"):
        default_catalog()


# --- GET DATA ------------------------------------------------------------------------------------

@pytest.mark.parametrize("ff", FORM_FACTORS, ids=lambda f: f.name)
def test_get_data_without_a_channel(tmp_path, ff):
    se = make_card(tmp_path, ff, iin=h("42000001"), cin=h("0102030405060708"))
    cplc = send(se, GET_CPLC)
    assert cplc.sw == 0x9000
    assert cplc.data[:3] == h("9F7F2A")
    assert len(cplc.data) == 45
    card_data = tlv.decode_one(send(se, h("80CA006600")).data)
    scp = tlv.find([card_data], 0x64)
    assert scp.value.endswith(h("2A864886FC6B040370"))
    assert send(se, h("80CA00E000")).data == tlv.tlv(0xE0, b"".join(tlv.tlv(0xC0, bytes([kid, 0xFF, 0x88, 16]))
                                                                  for kid in (1, 2, 3)))
    assert send(se, h("80CA00C100")).data == h("C103000000")
    assert send(se, h("00CA004200")).data == h("420442000001")
    assert send(se, h("80CA004500")).data == h("45080102030405060708")
    assert send(se, h("80CA00CF00")).data[:2] == h("CF0A")
    resources = send(se, h("80CAFF2100")).data
    assert resources[:2] == h("FF21")
    assert tlv.to_dict(tlv.decode(resources[3:]))[0x81] == h("0001")  # the PPSE
    assert send(se, h("80CA009900")).sw == 0x6A88
    assert send(se, h("80CA000000")).sw == 0x6A88
    assert se.faults == []


def test_get_data_iin_cin_absent_on_a_blank_card(tmp_path):
    se = make_card(tmp_path, scp="02")
    assert send(se, h("80CA004200")).sw == 0x6A88
    assert send(se, h("80CA004500")).sw == 0x6A88
    assert send(se, h("80CA00C100")).data == h("C1020000")


# --- opening secure channels ---------------------------------------------------------------------

@pytest.mark.parametrize("ff", FORM_FACTORS, ids=lambda f: f.name)
@pytest.mark.parametrize(("scp", "level"), LEVELS, ids=[f"scp{s}-{lv:02x}" for s, lv in LEVELS])
def test_channel_at_every_level(tmp_path, ff, scp, level):
    se = make_card(tmp_path, ff, scp=scp)
    plain = send(se, GET_CPLC)
    host = Host(se, isd_aid(se), scp=scp, level=level).open()
    response = host.send(GET_CPLC)
    assert response.sw == 0x9000
    assert response.data == plain.data
    key_info = host.send(h("80CA00E000"))
    assert key_info.sw == 0x9000
    assert key_info.data.startswith(h("E012"))
    assert host.send(h("80CA009900")).sw == 0x6A88  # an error travels without R-MAC, channel stays
    assert host.send(GET_CPLC).data == plain.data
    assert se.faults == []


def test_scp03_with_random_card_challenge(tmp_path):
    se = make_card(tmp_path, scp_i=0x60)
    host = Host(se, isd_aid(se), level=0x33)
    first, second = host.initialize_update(), host.initialize_update()
    assert len(first.data) == 29  # no sequence counter without the pseudo-random challenge
    assert first.data[13:21] != second.data[13:21]
    assert host.open().send(GET_CPLC).sw == 0x9000


def test_a_new_session_forgets_the_personalisation_target(tmp_path):
    se = stub_card(tmp_path)
    host = Host(se, ISD_AID_GP).open()
    set_perso_target(se, ISD_AID_GP, STUB_AID)
    host.open(select_first=False)
    assert "perso_target" not in se.channels[0].sessions[ISD_AID_GP]


@pytest.mark.parametrize("level", [0x11, 0x13, 0x02, 0x07])
def test_scp02_refuses_rmac_and_invalid_levels(tmp_path, level):
    se = make_card(tmp_path, scp="02")
    host = Host(se, isd_aid(se), scp="02")
    host.session = host.authenticate(host.initialize_update())
    ea = bytearray(host.session.external_authenticate())
    ea[2] = level
    assert send(se, bytes(ea)).sw == 0x6A86
    assert send(se, bytes(ea)).sw == 0x6985  # the initiation is over: EXTERNAL AUTHENTICATE out of sequence


def test_scp03_refuses_invalid_level(tmp_path):
    se = make_card(tmp_path, scp="03", scp_i=0x10)  # no R-MAC support in i
    host = Host(se, isd_aid(se), level=0x01)
    host.session = host.authenticate(host.initialize_update())
    ea = bytearray(host.session.external_authenticate())
    ea[2] = 0x11
    assert send(se, bytes(ea)).sw == 0x6A86


@pytest.mark.parametrize("scp", ["02", "03"])
def test_wrong_host_cryptogram_answers_6982_and_closes(tmp_path, scp):
    se = make_card(tmp_path, scp=scp)
    host = Host(se, isd_aid(se), scp=scp)
    host.session = host.authenticate(host.initialize_update())
    ea = host.session.external_authenticate()
    tampered = ea[:5] + bytes([ea[5] ^ 0x01]) + ea[6:]
    assert send(se, tampered).sw == 0x6982
    assert send(se, ea).sw == 0x6985  # no channel being opened any more
    assert send(se, host.wrap(GET_CPLC)).sw == 0x6982
    assert send(se, h("80D8008100")).sw == 0x6982


@pytest.mark.parametrize("scp", ["02", "03"])
def test_host_detects_a_card_with_other_keys(tmp_path, scp):
    se = make_card(tmp_path, scp=scp)
    host = Host(se, isd_aid(se), key_set(0x20, 0), scp=scp)
    with pytest.raises(SecureChannelError, match=r"card cryptogram|card challenge"):
        host.authenticate(host.initialize_update())


@pytest.mark.parametrize("scp", ["02", "03"])
def test_replayed_and_tampered_commands_close_the_channel(tmp_path, scp):
    se = make_card(tmp_path, scp=scp)
    host = Host(se, isd_aid(se), scp=scp, level=0x03).open()
    first = host.wrap(GET_CPLC)
    assert send(se, first).sw == 0x9000
    assert send(se, first).sw == 0x6982  # replay: C-MAC chain (and SCP03 counter) moved on
    assert send(se, host.wrap(GET_CPLC)).sw == 0x6982  # channel closed
    host.open()
    good = host.wrap(GET_CPLC)
    assert send(se, good[:-2] + bytes([good[-2] ^ 0x80]) + good[-1:]).sw == 0x6982
    assert send(se, good).sw == 0x6982


def test_security_is_required(tmp_path):
    se = make_card(tmp_path)
    aid = isd_aid(se)
    assert send(se, h("80D8008100")).sw == 0x6982                  # PUT KEY without a channel
    assert send(se, h("80E2800003420101")).sw == 0x6982            # STORE DATA
    assert send(se, h("80E60C0003000000")).sw == 0x6982            # INSTALL (content.py, gated here)
    assert send(se, h("80F28000024F0000")).sw == 0x6982            # GET STATUS
    assert send(se, h("84CA9F7F08" + "11" * 8)).sw == 0x6982      # SM class without a channel
    host = Host(se, aid, level=0x00).open()                        # authenticated, but no C-MAC
    assert host.send(h("80E2800003420101")).sw == 0x6982
    host = Host(se, aid, level=0x01).open()
    assert send(se, GET_CPLC).sw == 0x6982                         # plain command in a C-MAC channel ...
    assert send(se, host.wrap(GET_CPLC)).sw == 0x6982              # ... closed it


def test_initialize_update_key_versions_and_parameters(tmp_path):
    se = make_card(tmp_path)
    host = Host(se, isd_aid(se))
    response = host.initialize_update(kvn=0x00)
    assert response.sw == 0x9000
    assert response.data[10:13] == h("FF0370")
    assert host.initialize_update(kvn=0xFF).sw == 0x9000
    assert host.initialize_update(kvn=0x01).sw == 0x6A88
    assert send(se, h("8050000108" + "00" * 8 + "00")).sw == 0x6A86
    assert send(se, h("8050000007" + "00" * 7 + "00")).sw == 0x6700
    assert send(se, h("0050000008" + "00" * 8 + "00")).sw == 0x6E00
    assert send(se, h("8482000010" + "00" * 16)).sw == 0x6985      # EXTERNAL AUTHENTICATE out of sequence


@pytest.mark.parametrize("scp", ["02", "03"])
def test_sequence_counter_counts_sessions_and_survives_power_cycles(tmp_path, scp):
    image = new_image(tmp_path, scp=scp)
    se = power_on(image)
    aid = isd_aid(se)

    def counter() -> int:
        select(se, aid)  # a plain command inside an open channel would close it
        data = send(se, h("80CA00C100")).data
        return int.from_bytes(data[2:], "big")

    def counter_in_iu(response: ResponseApdu) -> int:
        return int.from_bytes(response.data[12:14] if scp == "02" else response.data[29:32], "big")

    assert counter() == 0
    host = Host(se, aid, scp=scp)
    assert counter_in_iu(host.initialize_update()) == 0
    assert counter_in_iu(host.initialize_update()) == 0  # no EXTERNAL AUTHENTICATE, no new session
    host.open()
    host.open()
    assert counter() == 2
    se.power_off()
    se = power_on(image)
    assert counter() == 2
    assert counter_in_iu(Host(se, aid, scp=scp).initialize_update()) == 2
    Host(se, aid, scp=scp).open()
    assert counter() == 3


def test_reset_and_power_loss_close_the_channel(tmp_path):
    se = make_card(tmp_path, ff=SIM)
    host = Host(se, isd_aid(se), level=0x33).open()
    assert host.send(GET_CPLC).sw == 0x9000
    se.reset()
    assert send(se, host.wrap(GET_CPLC)).sw == 0x6982
    host.open()
    se.power_off()
    se.power_on()
    assert send(se, host.wrap(GET_CPLC)).sw == 0x6982


def test_reselecting_the_security_domain_closes_the_channel(tmp_path):
    se = make_card(tmp_path)
    host = Host(se, isd_aid(se)).open()
    assert select(se, isd_aid(se)).sw == 0x9000
    assert send(se, host.wrap(GET_CPLC)).sw == 0x6982


def test_channels_are_per_logical_channel(tmp_path):
    se = make_card(tmp_path, ff=MICROSD)
    on_zero = Host(se, isd_aid(se), level=0x03).open()
    assert send(se, h("0070000001")).data == b"\x01"
    assert select(se, isd_aid(se), channel=1).sw == 0x9000
    assert send(se, h("81CA9F7F00")).sw == 0x9000           # no channel on 1: plain commands are fine
    assert send(se, h("81D8008100")).sw == 0x6982           # ... and security is missing there
    assert on_zero.send(GET_CPLC).sw == 0x9000               # channel 0's session is untouched
    iu = Host(se, isd_aid(se), channel=1).initialize_update()
    assert iu.sw == 0x9000
    assert on_zero.send(GET_CPLC).sw == 0x9000
    assert send(se, h("0070800100")).sw == 0x9000
    assert on_zero.send(GET_CPLC).sw == 0x9000


# --- PUT KEY ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("ff", FORM_FACTORS, ids=lambda f: f.name)
@pytest.mark.parametrize("scp", ["02", "03"])
def test_put_key_add_and_replace(tmp_path, ff, scp):
    se = make_card(tmp_path, ff, scp=scp)
    aid = isd_aid(se)
    aes = scp == "03"
    first, second, third = key_set(0x10, 0x30), key_set(0x40, 0x31), key_set(0x70, 0x32)
    host = Host(se, aid, scp=scp).open()
    response = host.send(host.put_key(first))
    kcv = (primitives.kcv_gp_aes if aes else (lambda k: primitives.kcv(k, "3des")))
    assert response.sw == 0x9000
    assert response.data == b"\x30" + kcv(first.enc) + kcv(first.mac) + kcv(first.dek)
    # adding the first real key set retires the initial one (KVN FF)
    assert Host(se, aid, scp=scp).initialize_update(kvn=0xFF).sw == 0x6A88
    host = Host(se, aid, first, scp=scp).open(kvn=0x30)
    assert host.send(host.put_key(second)).sw == 0x9000  # add: both key sets work
    Host(se, aid, first, scp=scp).open(kvn=0x30)
    host = Host(se, aid, second, scp=scp).open(kvn=0x31)
    assert host.send(host.put_key(third, old_kvn=0x30)).data[:1] == b"\x32"  # replace 30 by 32
    assert Host(se, aid, first, scp=scp).initialize_update(kvn=0x30).sw == 0x6A88
    Host(se, aid, third, scp=scp).open(kvn=0x32)
    host = Host(se, aid, third, scp=scp).open(kvn=0)  # P1=00: the default key set followed the replacement
    info = host.send(h("80CA00E000")).data
    assert [c.value[1] for c in tlv.decode_one(info).children] == [0x31] * 3 + [0x32] * 3
    se.power_off()
    se.power_on()  # the key sets are persistent
    Host(se, aid, third, scp=scp).open(kvn=0x32)
    Host(se, aid, second, scp=scp).open(kvn=0x31)
    assert se.faults == []


@pytest.mark.parametrize("length", [24, 32])
def test_put_key_aes_192_and_256(tmp_path, length):
    se = make_card(tmp_path)
    new = key_set(0x50, 0x21, length)
    host = Host(se, isd_aid(se)).open()
    assert host.send(host.put_key(new)).sw == 0x9000
    Host(se, isd_aid(se), new, level=0x33).open(kvn=0x21).send(GET_CPLC).check()


@pytest.mark.parametrize("scp", ["02", "03"])
def test_put_key_kcv_mismatch_changes_nothing(tmp_path, scp):
    se = make_card(tmp_path, scp=scp)
    before = send(se, h("80CA00E000")).data
    host = Host(se, isd_aid(se), scp=scp).open()
    assert host.send(host.put_key(key_set(0x10, 0x30), bad_kcv=True)).sw == 0x6A80
    assert host.send(h("80CA00E000")).data == before  # the channel survives a refused command
    assert Host(se, isd_aid(se), key_set(0x10, 0x30), scp=scp).initialize_update().sw == 0x6A88


def test_put_key_malformed_commands(tmp_path):
    se = make_card(tmp_path)
    host = Host(se, isd_aid(se)).open()
    good = host.put_key(key_set(0x10, 0x30))
    body = good[5:]

    def put(p1: int, p2: int, data: bytes) -> int:
        return host.send(CommandApdu(0x80, 0xD8, p1, p2, data).encode()).sw

    assert put(0x80, 0x81, body) == 0x6A86          # PUT KEY chain
    assert put(0x00, 0x84, body) == 0x6A86          # KID 04
    assert put(0x00, 0x81, body[:1]) == 0x6700      # new KVN only
    assert put(0x00, 0x81, b"\x00" + body[1:]) == 0x6A80   # new KVN 00
    assert put(0x00, 0x81, body[:1] + b"\x81" + body[2:]) == 0x6A80  # unknown key type
    assert put(0x05, 0x81, body) == 0x6A88          # replace a key set that does not exist
    assert put(0x00, 0x81, body[:-20]) == 0x6A80    # truncated
    assert put(0x00, 0x01, body) == 0x6A80          # one key announced, three sent
    assert put(0x00, 0x82, body) == 0x6A80          # KIDs 02-04
    mixed = put_key_command(host.session.encrypt_key_for_put_key,
                            StaticKeys(b"\x01" * 16, b"\x02" * 24, b"\x03" * 16, 0x30))
    assert put(0x00, 0x81, mixed[5:]) == 0x6A80     # AES keys of different lengths
    assert host.send(good).sw == 0x9000
    assert put(0x00, 0x81, body) == 0x6A80          # KVN 30 exists already
    assert se.faults == []


def test_put_key_over_scp80_uses_the_static_dek(tmp_path):
    se = make_card(tmp_path)
    new = key_set(0x60, 0x11)
    command = put_key_command(lambda key: scp03.encrypt_key_for_put_key(TEST_KEYS.dek, key), new)
    channel = se.open_internal_channel(isd_aid(se), external_security="scp80")
    response = ResponseApdu.decode(se.run_internal(channel, command))
    se.close_internal_channel(channel)
    se.image.commit()
    assert response.sw == 0x9000
    assert response.data[:1] == b"\x11"
    Host(se, isd_aid(se), new).open(kvn=0x11)


# --- key handover to an SSD ------------------------------------------------------------------------

@pytest.mark.parametrize("scp", ["02", "03"])
def test_key_handover_locks_the_creator_out(tmp_path, scp):
    image = new_image(tmp_path, scp=scp)
    sei_keys, sp_keys = key_set(0x10, 0x30), key_set(0x80, 0x31)
    add_security_domain(image, SSD_AID, keys=sei_keys, scp=scp)
    se = power_on(image)
    # the SEI-TSM created the SSD with keys it knows and handed them to the SP-TSM, who replaces them
    sp = Host(se, SSD_AID, sei_keys, scp=scp).open()
    assert sp.send(sp.put_key(sp_keys, old_kvn=0x30)).sw == 0x9000
    sei = Host(se, SSD_AID, sei_keys, scp=scp)
    assert sei.initialize_update(kvn=0x30).sw == 0x6A88
    with pytest.raises(SecureChannelError, match=r"card cryptogram|card challenge"):
        sei.authenticate(sei.initialize_update(kvn=0))
    with pytest.raises(SecureChannelError, match=r"card cryptogram|card challenge"):
        Host(se, SSD_AID, TEST_KEYS, scp=scp).authenticate(Host(se, SSD_AID, scp=scp).initialize_update())
    Host(se, SSD_AID, sp_keys, scp=scp, level=0x03).open().send(GET_CPLC).check()
    Host(se, isd_aid(se), scp=scp).open()  # the ISD keeps its own keys


# --- STORE DATA --------------------------------------------------------------------------------------

@pytest.mark.parametrize("scp", ["02", "03"])
def test_store_data_personalises_the_isd(tmp_path, scp):
    se = make_card(tmp_path, SIM, scp=scp)
    aid = isd_aid(se)
    host = Host(se, aid, scp=scp, level=0x03).open()
    ber = tlv.tlv(0x42, h("42123456")) + tlv.tlv(0x45, h("A1A2A3A4A5A6A7A8A9")) + tlv.tlv(0xCF, bytes(range(10)))
    assert host.send(CommandApdu(0x80, 0xE2, 0x90, 0x00, ber).encode()).sw == 0x9000
    assert host.send(h("80CA004200")).data == h("420442123456")
    assert host.send(h("80CA004500")).data == h("4509A1A2A3A4A5A6A7A8A9")
    new = key_set(0x30, 0x01)
    for command in key_dgis(host, new, scp):
        assert host.send(command).sw == 0x9000
    response = Host(se, aid, new, scp=scp).initialize_update(kvn=0x00)
    assert response.data[:10] == bytes(range(10))
    assert response.data[10] == 0x01
    Host(se, aid, new, scp=scp).open()
    assert Host(se, aid, scp=scp).initialize_update(kvn=0xFF).sw == 0x6A88


def test_store_data_key_check_values_and_sequence(tmp_path):
    se = make_card(tmp_path)
    aid = isd_aid(se)
    host = Host(se, aid).open()
    params, keys, kcvs = key_dgis(host, key_set(0x30, 0x01), "03", bad_kcv=True)
    assert host.send(params).sw == 0x9000
    assert host.send(keys[:3] + b"\x05" + keys[4:]).sw == 0x6A86  # block 05 after block 00
    assert host.send(keys).sw == 0x9000
    assert host.send(kcvs).sw == 0x6A80
    assert host.send(CommandApdu(0x80, 0xE2, 0x80, 0x00, encode_dgi(0x9F01, bytes(9))).encode()).sw == 0x6985
    assert Host(se, aid).initialize_update(kvn=0x01).sw == 0x6A88  # the rejected keys were dropped
    host = Host(se, aid).open()
    for p1, data, sw in [
        (0x80, h("8F"), 0x6A80),                          # truncated DGI
        (0x80, encode_dgi(0x1234, b"x"), 0x6A80),         # unknown DGI
        (0x90, h("5A0112"), 0x6A80),                      # BER tag foreign to a security domain
        (0x90, h("4205"), 0x6A80),                        # malformed BER
        (0x40, encode_dgi(0x0042, b"1"), 0x6A86),         # encryption coding 10 (RFU)
        (0x98, encode_dgi(0x0042, b"1"), 0x6A86),         # structure coding 11 (RFU)
        (0xA0, encode_dgi(0x0042, b"1"), 0x6A86),         # application-dependent encryption
        (0xE0, encode_dgi(0x0042, b"123"), 0x6A80),       # "encrypted" value of 3 bytes
        (0x80, encode_dgi(0x00A6, h("0104")), 0x6A80),    # key parameters too short
        (0x80, encode_dgi(0x00A6, h("010570")), 0x6A80),  # SCP05
        (0x80, encode_dgi(0x00CF, h("01")), 0x6A80),      # KDD must be 10 bytes
    ]:
        assert host.send(CommandApdu(0x80, 0xE2, p1, 0x00, data).encode()).sw == sw, data.hex()
    assert host.send(h("80E2800000")).sw in (0x6700, 0x6A80)
    assert se.faults == []


def test_isd_personalisation_ends_when_the_card_is_secured(tmp_path):
    se = make_card(tmp_path)
    sd, ctx = sd_context(se)
    sd.set_card_life_cycle(ctx, CARD_INITIALIZED)
    se.image.commit()
    host = Host(se, isd_aid(se)).open()
    assert host.send(CommandApdu(0x80, 0xE2, 0x90, 0x00, h("42021234")).encode()).sw == 0x9000
    sd, ctx = sd_context(se)
    sd.set_card_life_cycle(ctx, CARD_SECURED)
    se.image.commit()
    host = Host(se, isd_aid(se)).open()
    assert host.send(CommandApdu(0x80, 0xE2, 0x90, 0x00, h("42021234")).encode()).sw == 0x6985
    assert host.send(host.put_key(key_set(0x10, 0x30))).sw == 0x9000  # keys still rotate


class PersoStub(Applet):
    """An application that records what its security domain forwards (GP processData)."""

    implementation = "paylab.test.perso-stub"
    received: ClassVar[list[CommandApdu]] = []

    def process_data(self, ctx, cmd):
        PersoStub.received.append(cmd)
        ctx.data.setdefault("dgis", []).append(cmd.data.hex())
        return Reply(b"\x01" if cmd.p1 & 0x80 else b"")


def stub_card(tmp_path, scp: str = "03") -> SecureElement:
    image = new_image(tmp_path, scp=scp)
    image.state["registry"].append(RegistryEntry(STUB_AID, "APP", APP_SELECTABLE, associated_sd=ISD_AID_GP,
                                                 implementation=PersoStub.implementation).to_state())
    image.commit()
    catalog = default_catalog()
    catalog.register_implementation(PersoStub)
    return power_on(image, ESE, catalog)


def set_perso_target(se: SecureElement, sd_aid: bytes, target: bytes, channel: int = 0) -> None:
    """What content.py's INSTALL [for personalization] leaves in the SD's channel session."""
    se.channels[channel].sessions[sd_aid]["perso_target"] = target


@pytest.mark.parametrize("scp", ["02", "03"])
def test_store_data_is_forwarded_decrypted_to_the_personalised_application(tmp_path, scp):
    PersoStub.received.clear()
    se = stub_card(tmp_path, scp)
    host = Host(se, ISD_AID_GP, scp=scp, level=0x03).open()
    set_perso_target(se, ISD_AID_GP, STUB_AID)
    secret = bytes(range(16))
    first = CommandApdu(0x80, 0xE2, 0x60, 0x00, encode_dgi(0x8000, host.encrypt(secret))).encode()
    assert host.send(first).sw == 0x9000
    last = host.send(CommandApdu(0x80, 0xE2, 0x80, 0x01, encode_dgi(0x9000, h("112233"))).encode())
    assert last.sw == 0x9000
    assert last.data == b"\x01"
    assert [(c.p1, c.p2, c.data) for c in PersoStub.received] == [
        (0x00, 0x00, encode_dgi(0x8000, secret)), (0x80, 0x01, encode_dgi(0x9000, h("112233")))]
    assert se.applet_data(STUB_AID)["dgis"] == [encode_dgi(0x8000, secret).hex(), encode_dgi(0x9000, h("112233")).hex()]
    # the last block ended the personalisation: the next STORE DATA is the ISD's own again
    assert host.send(CommandApdu(0x80, 0xE2, 0x90, 0x00, h("42021234")).encode()).sw == 0x9000
    assert host.send(h("80CA004200")).data == h("42021234")


def test_forwarding_to_a_missing_target_fails_cleanly(tmp_path):
    se = stub_card(tmp_path)
    host = Host(se, ISD_AID_GP).open()
    set_perso_target(se, ISD_AID_GP, h("F0000000FF"))
    assert host.send(CommandApdu(0x80, 0xE2, 0x80, 0x00, encode_dgi(0x0101, b"1")).encode()).sw == 0x6A88
    assert host.send(GET_CPLC).sw == 0x9000
    set_perso_target(se, ISD_AID_GP, ISD_AID_GP)  # not an application
    assert host.send(CommandApdu(0x80, 0xE2, 0x80, 0x00, encode_dgi(0x0101, b"1")).encode()).sw == 0x6A88
    assert se.faults == []


@pytest.mark.parametrize("scp", ["02", "03"])
def test_ssd_keys_personalised_through_the_isd(tmp_path, scp):
    image = new_image(tmp_path, scp=scp)
    add_security_domain(image, SSD_AID, keys=None, scp=scp, life_cycle=SD_SELECTABLE)
    se = power_on(image)
    assert select(se, SSD_AID).sw == 0x9000
    assert Host(se, SSD_AID, scp=scp).initialize_update().sw == 0x6A88  # no keys yet
    host = Host(se, isd_aid(se), scp=scp, level=0x03).open()
    set_perso_target(se, isd_aid(se), SSD_AID)
    ssd_keys = key_set(0x90, 0x40)
    for command in key_dgis(host, ssd_keys, scp):
        assert host.send(command).sw == 0x9000
    Host(se, SSD_AID, ssd_keys, scp=scp).open(kvn=0x40).send(GET_CPLC).check()


def test_ssd_install_hook_inherits_the_protocol(tmp_path):
    from paylab.drivers.se.applet import InstallParams

    se = make_card(tmp_path, scp="02")
    entry = RegistryEntry(SSD_AID, "SD", SD_INSTALLED, b"\x80\x00\x00", associated_sd=isd_aid(se),
                          implementation=IMPLEMENTATION)
    se.registry.put(entry)
    sd = se.applet(entry)
    sd.install(se.context(entry, 0), InstallParams())
    assert se.applet_data(SSD_AID)["scp"] == "02"
    assert se.applet_data(SSD_AID)["keys"] == {}
    sd.install(se.context(entry, 0), InstallParams(app_specific=h("81020310")))
    assert (se.applet_data(SSD_AID)["scp"], se.applet_data(SSD_AID)["i"]) == ("03", 0x10)
    for bad in (h("810105"), h("8102"), h("81020301")):
        with pytest.raises(ISOException) as caught:
            sd.install(se.context(entry, 0), InstallParams(app_specific=bad))
        assert caught.value.sw == 0x6A80


# --- life cycles ---------------------------------------------------------------------------------------

def test_card_life_cycle_transitions(tmp_path):
    image = new_image(tmp_path)
    se = power_on(image)
    illegal = {CARD_OP_READY: [CARD_SECURED, CARD_LOCKED, CARD_OP_READY],
               CARD_INITIALIZED: [CARD_OP_READY, CARD_LOCKED, CARD_INITIALIZED],
               CARD_SECURED: [CARD_INITIALIZED, CARD_OP_READY, CARD_SECURED],
               CARD_LOCKED: [CARD_LOCKED, CARD_INITIALIZED]}
    for value in (CARD_INITIALIZED, CARD_SECURED, CARD_LOCKED, CARD_SECURED, CARD_LOCKED):
        sd, ctx = sd_context(se)
        for wrong in illegal[sd.card_life_cycle(ctx)]:
            with pytest.raises(ISOException) as caught:
                sd.set_card_life_cycle(ctx, wrong)
            assert caught.value.sw == 0x6985
        sd.set_card_life_cycle(ctx, value)
        se.image.commit()
        assert se.registry.isd().life_cycle == value
    se.power_off()
    se = power_on(image)
    sd, ctx = sd_context(se)
    assert sd.card_life_cycle(ctx) == CARD_LOCKED
    sd.set_card_life_cycle(ctx, CARD_TERMINATED)
    for value in (CARD_SECURED, CARD_LOCKED, CARD_TERMINATED, CARD_OP_READY):
        with pytest.raises(ISOException):
            sd.set_card_life_cycle(ctx, value)


def test_card_life_cycle_needs_privileges(tmp_path):
    image = new_image(tmp_path)
    add_security_domain(image, SSD_AID, keys=TEST_KEYS)
    se = power_on(image)
    sd, ctx = sd_context(se, SSD_AID)
    for value in (CARD_INITIALIZED, CARD_TERMINATED):
        with pytest.raises(ISOException) as caught:
            sd.set_card_life_cycle(ctx, value)
        assert caught.value.sw == 0x6985


def test_locked_card_answers_through_the_isd_only(tmp_path):
    image = new_image(tmp_path)
    add_security_domain(image, SSD_AID, keys=key_set(0x10, 0x30))
    se = power_on(image)
    ssd_host = Host(se, SSD_AID, key_set(0x10, 0x30)).open()
    sd, ctx = sd_context(se)
    for value in (CARD_INITIALIZED, CARD_SECURED, CARD_LOCKED):
        sd.set_card_life_cycle(ctx, value)
    se.image.commit()
    assert send(se, ssd_host.wrap(GET_CPLC)).sw == 0x6985  # the SSD still selected stops answering
    assert select(se, SSD_AID).sw == 0x6A82
    assert select(se, PPSE_AID).sw == 0x6A82
    host = Host(se, isd_aid(se)).open()
    assert host.send(GET_CPLC).sw == 0x9000
    sd, ctx = sd_context(se)
    sd.set_card_life_cycle(ctx, CARD_SECURED)
    se.image.commit()
    assert select(se, SSD_AID).sw == 0x9000


def test_terminated_card_answers_get_data_only(tmp_path):
    image = new_image(tmp_path, ff=SIM)
    se = power_on(image, SIM)
    host = Host(se, isd_aid(se)).open()
    sd, ctx = sd_context(se)
    sd.set_card_life_cycle(ctx, CARD_TERMINATED)
    se.image.commit()
    assert send(se, host.wrap(GET_CPLC)).sw == 0x6985
    se.power_off()
    se = power_on(image, SIM)
    assert send(se, GET_CPLC).sw == 0x9000
    assert send(se, h("80CA00E000")).sw == 0x9000
    assert Host(se, isd_aid(se)).initialize_update().sw == 0x6985
    assert send(se, h("80D8008100")).sw == 0x6985
    assert send(se, h("80E2800003420101")).sw == 0x6985
    assert select(se, PPSE_AID).sw == 0x6A82
    assert select(se, isd_aid(se)).sw == 0x9000
    assert se.card_state()["life_cycle"] == CARD_TERMINATED


def test_security_domain_life_cycle(tmp_path):
    image = new_image(tmp_path)
    add_security_domain(image, SSD_AID, keys=TEST_KEYS, life_cycle=SD_INSTALLED)
    se = power_on(image)
    assert select(se, SSD_AID).sw == 0x6A82  # INSTALLED: not selectable yet
    sd, ctx = sd_context(se)
    with pytest.raises(ISOException):
        sd.set_sd_life_cycle(ctx, SSD_AID, SD_PERSONALIZED)
    for value, expected in ((SD_SELECTABLE, SD_SELECTABLE), (SD_PERSONALIZED, SD_PERSONALIZED),
                            (0x80, 0x8F), (SD_PERSONALIZED, SD_PERSONALIZED)):
        sd.set_sd_life_cycle(ctx, SSD_AID, value)
        assert se.registry.get(SSD_AID).life_cycle == expected
    for wrong in (SD_SELECTABLE, SD_INSTALLED):
        with pytest.raises(ISOException) as caught:
            sd.set_sd_life_cycle(ctx, SSD_AID, wrong)
        assert caught.value.sw == 0x6985
    with pytest.raises(ISOException) as caught:
        sd.set_sd_life_cycle(ctx, isd_aid(se), SD_PERSONALIZED)
    assert caught.value.sw == 0x6A88
    se.image.commit()
    host = Host(se, SSD_AID).open()
    sd.set_sd_life_cycle(ctx, SSD_AID, 0x80)  # locking closes the SSD's channels
    se.image.commit()
    assert send(se, host.wrap(GET_CPLC)).sw in (0x6A82, 0x6982)


def test_helpers_for_content_management(tmp_path):
    se = make_card(tmp_path)
    sd, ctx = sd_context(se)
    assert sd.is_isd(ctx)
    assert not sd.is_authenticated(ctx)
    with pytest.raises(ISOException) as caught:
        sd.require_authenticated(ctx)
    assert caught.value.sw == 0x6982
    assert sd.keys(ctx) == StaticKeys.gp_default_test_keys(0xFF)
    assert sd.key_versions(ctx) == [0xFF]
    assert sd.key_set_info(ctx)["scp"] == "03"
    with pytest.raises(ISOException) as caught:
        sd.keys(ctx, 0x42)
    assert caught.value.sw == 0x6A88
    Host(se, isd_aid(se), level=0x13).open()
    sd, ctx = sd_context(se)
    assert sd.is_authenticated(ctx)
    assert sd.is_authenticated(ctx, SecurityLevel(0x03))
    assert not sd.is_authenticated(ctx, SecurityLevel(0x33))
    assert int(sd.security_level(ctx)) == 0x13
    channel = se.open_internal_channel(isd_aid(se), external_security="scp80")
    _, ota = sd_context(se, channel=channel)
    sd.require_authenticated(ota)
    sd.delete_key_set(ctx, 0xFF)
    assert sd.key_versions(ctx) == []
    with pytest.raises(ISOException):
        sd.delete_key_set(ctx, 0xFF)


# --- robustness --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("apdu", "sw"), [
    ("20CA9F7F00", 0x6E00),        # reserved class
    ("A0CA9F7F00", 0x6E00),
    ("8010000000", 0x6D00),        # unknown INS
    ("0010000000", 0x6D00),
    ("00D8008100", 0x6E00),        # a GlobalPlatform INS with an ISO class
    ("0082000000", 0x6E00),
    ("90CA9F7F00", 0x6884),        # chaining
    ("80CA009900", 0x6A88),
    ("80CB9F7F00", 0x9000),        # odd GET DATA
])
def test_malformed_commands_answer_status_words(tmp_path, apdu, sw):
    se = make_card(tmp_path)
    assert send(se, h(apdu)).sw == sw
    assert se.faults == []


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(min_size=4, max_size=40), min_size=1, max_size=6), st.booleans())
def test_no_exception_escapes_random_apdus(commands, with_channel):
    image = CardImage(None)
    fabricate(image, ESE)
    se = power_on(image)
    host = Host(se, isd_aid(se), level=0x33).open() if with_channel else None
    for raw in commands:
        raw = bytes([0x80 | (raw[0] & 0x5C)]) + raw[1:] if raw[0] & 1 else raw
        if host is not None and raw[1:2] not in (b"\xa4", b"\x70", b"\xc0"):
            with contextlib.suppress(Exception):  # not wrappable: sent as is
                raw = host.wrap(raw)
        response = ResponseApdu.decode(se.transmit(raw))
        assert response.sw != 0x6F00
    assert se.faults == []


def test_random_sessions_stay_consistent():
    rng = random.Random(2024)
    image = CardImage(None)
    fabricate(image, MICROSD, scp="02")
    se = power_on(image, MICROSD)
    host = Host(se, isd_aid(se), scp="02", level=0x03).open()
    for _ in range(40):
        tag = rng.choice([h("9F7F"), h("0066"), h("00E0"), h("00C1"), h("00CF")])
        assert host.send(h("80CA") + tag + b"\x00").sw == 0x9000
    assert se.faults == []
