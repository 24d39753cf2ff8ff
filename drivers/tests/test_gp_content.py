"""Card content management end to end: a fabricated card, the real security domain, host-side SCP03.

Everything goes through APDUs: INSTALL/LOAD/DELETE/GET STATUS/SET STATUS built with
:mod:`paylab.lab.protocol.gp.commands`, wrapped by a host :class:`Scp03Session`, unwrapped by the
card's :class:`SecurityDomain`, handled by :mod:`paylab.drivers.se.gp.content`.
"""

from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paylab.drivers.se.applet import Applet, Reply
from paylab.drivers.se.catalog import Catalog, PackageInfo
from paylab.drivers.se.factory import fabricate
from paylab.drivers.se.form_factor import ESE
from paylab.drivers.se.gp import content
from paylab.drivers.se.gp.content import (
    OS_SD_LOAD_FILE_AID,
    OS_SD_MODULE_AID,
    PackageDescriptor,
    build_load_file,
    build_load_file_data_block,
    set_dap_key,
    set_token_key,
)
from paylab.drivers.se.gp.ppse import PPSE_AID, PpseApplet
from paylab.drivers.se.gp.security_domain import SecurityDomain
from paylab.drivers.se.image import CardImage
from paylab.drivers.se.registry import APP_INSTALLED, APP_SELECTABLE
from paylab.drivers.se.runtime import SecureElement
from paylab.lab.protocol import tlv
from paylab.lab.protocol.apdu import CommandApdu, ResponseApdu
from paylab.lab.protocol.crypto import primitives
from paylab.lab.protocol.gp import Scp03Session, StaticKeys
from paylab.lab.protocol.gp import commands as gp

h = bytes.fromhex
ISD = h("A000000151000000")
PKG = h("A0000009990001")
MODULE = h("A000000999000101")
APP_A = h("A00000099900010101")
APP_B = h("A00000099900010102")
UNKNOWN_PKG = h("A0000009990002")
SSD = h("A0000009995344")
SSD2 = h("A0000009995345")
ISD_KEYS = StaticKeys.gp_default_test_keys()
SSD_KEYS = StaticKeys.single(bytes(range(0x50, 0x60)), kvn=0x01)
SP_KEYS = StaticKeys.single(bytes(range(0x60, 0x70)), kvn=0x01)
UNINSTALLED: list[bytes] = []


class Dummy(Applet):
    """Test applet: keeps its install parameters, collects personalisation data, GET DATA CA echoes it."""

    implementation = "paylab.test.dummy"

    def install(self, ctx, params):
        ctx.data.update(c9=params.app_specific, privileges=params.privileges, perso=b"")

    def select(self, ctx, cmd):
        return tlv.tlv(0x6F, tlv.tlv(0x84, ctx.aid))

    def process(self, ctx, cmd):
        if cmd.ins == 0xCA:
            return ctx.data["perso"]
        return super().process(ctx, cmd)

    def process_data(self, ctx, cmd):
        ctx.data["perso"] += cmd.data
        return Reply()

    def uninstall(self, ctx):
        UNINSTALLED.append(ctx.aid)


PACKAGE = PackageInfo(PKG, "1.2", {MODULE: Dummy})
UNKNOWN = PackageInfo(UNKNOWN_PKG, "1.0", {h("A000000999000201"): Dummy})


@pytest.fixture(scope="module")
def token_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)


@pytest.fixture(scope="module")
def other_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)


class Host:
    """A TSM talking to the in-process card: SELECT, SCP03 mutual authentication, wrapped commands."""

    def __init__(self, se):
        self.se = se
        self.session = None

    def raw(self, cmd, interface=None):
        return ResponseApdu.decode(self.se.transmit(cmd.encode(), interface=interface))

    def select(self, aid, interface=None):
        self.session = None
        return self.raw(CommandApdu(0x00, 0xA4, 0x04, 0x00, aid, 256), interface)

    def open(self, aid, keys, level=0x33):
        assert self.select(aid).sw == 0x9000
        challenge = bytes(range(8))
        response = self.raw(CommandApdu.decode(Scp03Session.host_initialize_update(keys, challenge)))
        assert response.sw == 0x9000, hex(response.sw)
        session = Scp03Session.host_from_init_update_response(keys, challenge, response.data, level)
        assert self.raw(CommandApdu.decode(session.external_authenticate())).sw == 0x9000
        self.session = session
        return self

    def send(self, cmd):
        raw = self.se.transmit(self.session.wrap(cmd.encode()))
        return ResponseApdu.decode(self.session.unwrap_response(raw))

    def sw(self, cmd):
        return self.send(cmd).sw

    def ok(self, cmd):
        response = self.send(cmd)
        assert response.sw == 0x9000, f"{cmd.hex()} -> {response.sw:04X}"
        return response.data


def make_card(*packages):
    catalog = Catalog()
    catalog.register_implementation(SecurityDomain)
    catalog.register_implementation(PpseApplet)
    for package in packages or (PACKAGE,):
        catalog.register(package)
    image = CardImage()
    fabricate(image, ESE)
    se = SecureElement(image, ESE, catalog, seed=7)
    se.power_on()
    UNINSTALLED.clear()
    return se


@pytest.fixture
def card():
    se = make_card()
    yield se
    assert se.faults == []


def isd(se):
    return Host(se).open(ISD, ISD_KEYS)


def load(host, package=PACKAGE, *, code_size=700, sd_aid=b"", token_signer=None, block_size=200,
         dap_blocks=(), digest=None):
    """INSTALL [for load] + LOAD blocks; returns the SW of the last command."""
    block = build_load_file_data_block(package, code_size=code_size)
    digest = gp.load_file_data_block_hash(block) if digest is None else digest
    request = gp.InstallForLoad(package.package_aid, sd_aid, digest)
    if token_signer is not None:
        request = replace(request, token=gp.rsa_sign(token_signer, request.token_data()))
    sw = host.sw(request.command())
    if sw != 0x9000:
        return sw
    commands = gp.load_commands(gp.LoadFile(block, tuple(dap_blocks)).encode(), block_size)
    for cmd in commands:
        sw = host.sw(cmd)
        if sw != 0x9000:
            return sw
    return sw


def install(host, aid=APP_A, *, privileges=b"\x00", params=b"\xc9\x02\xab\xcd", token_signer=None,
            make_selectable=True, elf=PKG, module=MODULE):
    request = gp.InstallForInstall(elf, module, aid, privileges, params)
    p1 = gp.P1_FOR_INSTALL_AND_MAKE_SELECTABLE if make_selectable else gp.P1_FOR_INSTALL
    if token_signer is not None:
        request = replace(request, token=gp.rsa_sign(token_signer, request.token_data(p1)))
    return host.sw(request.command(make_selectable=make_selectable))


def status(host, scope, *, tlv_format=True, prefix=b""):
    """All GET STATUS entries, following 6310."""
    cmd = gp.GetStatusCommand(scope, prefix, tlv_format)
    data = b""
    response = host.send(cmd.command())
    while response.sw == 0x6310:
        data += response.data
        response = host.send(cmd.next().command())
    assert response.sw == 0x9000, hex(response.sw)
    return gp.parse_get_status_response(data + response.data, scope=scope, tlv_format=tlv_format)


def entry(se, aid):
    return se.registry.get(aid)


def personalize_sd_keys(host, sd_aid, keys, kvn=0x01):
    """Creator side of a new SD's first key set: INSTALL [for perso] + STORE DATA 00A6/8F01/9F01."""
    host.ok(gp.InstallForPersonalization(sd_aid).command())
    wrapped = primitives.cbc_encrypt("aes", ISD_KEYS.dek, keys.enc + keys.mac + keys.dek, bytes(16))  # static DEK
    kcvs = b"".join(primitives.kcv_gp_aes(k) for k in (keys.enc, keys.mac, keys.dek))
    dgi = gp.STORE_STRUCTURE_DGI
    blocks = [(gp.StoreDataP1(False, gp.STORE_ENCRYPTION_NONE, dgi), gp.encode_dgi(0x00A6, bytes([kvn, 3, 0x70]))),
              (gp.StoreDataP1(False, gp.STORE_ENCRYPTION_DEK, dgi), gp.encode_dgi(0x8F01, wrapped)),
              (gp.StoreDataP1(True, gp.STORE_ENCRYPTION_NONE, dgi), gp.encode_dgi(0x9F01, kcvs))]
    for number, (p1, data) in enumerate(blocks):
        host.ok(CommandApdu(0x80, 0xE2, p1.encode(), number, data, 256))


def create_ssd(host, aid=SSD, privileges=b"\x80\x00\x00"):
    sw = install(host, aid, privileges=privileges, params=b"\xc9\x00", elf=OS_SD_LOAD_FILE_AID, module=OS_SD_MODULE_AID)
    assert sw == 0x9000, hex(sw)
    personalize_sd_keys(host, aid, SSD_KEYS)


# --- load, install, personalise, status, lock, contactless, delete ------------------------------

def test_full_life_of_an_application(card):
    host = isd(card)
    assert load(host) == 0x9000  # 700 code bytes: 4 LOAD blocks of 200
    elf = entry(card, PKG)
    assert (elf.kind, elf.life_cycle, elf.modules, elf.associated_sd) == ("ELF", 0x01, [MODULE], ISD)
    assert install(host) == 0x9000
    app = entry(card, APP_A)
    assert (app.kind, app.life_cycle, app.elf_aid, app.module_aid, app.implementation) == (
        "APP", APP_SELECTABLE, PKG, MODULE, "paylab.test.dummy")
    assert card.applet_data(APP_A)["c9"] == h("abcd")

    # personalisation routed by the ISD to the application
    host.ok(gp.InstallForPersonalization(APP_A).command())
    for cmd in gp.store_data_commands([gp.encode_dgi(0x0101, b"one"), gp.encode_dgi(0x0102, b"two")]):
        host.ok(cmd)
    perso = gp.encode_dgi(0x0101, b"one") + gp.encode_dgi(0x0102, b"two")
    assert card.applet_data(APP_A)["perso"] == perso

    # GET STATUS, both formats
    apps = {e.aid: e for e in status(host, gp.GET_STATUS_APPLICATIONS)}
    assert apps[APP_A] == gp.GetStatusEntry(APP_A, APP_SELECTABLE, h("000000"), PKG, None, (), ISD)
    assert apps[PPSE_AID].associated_sd == ISD
    legacy = status(host, gp.GET_STATUS_APPLICATIONS, tlv_format=False, prefix=APP_A[:5])
    assert [(e.aid, e.life_cycle, e.privileges) for e in legacy] == [(APP_A, APP_SELECTABLE, b"\x00")]
    [elf_status] = status(host, gp.GET_STATUS_LOAD_FILES_AND_MODULES)
    assert (elf_status.aid, elf_status.load_file_version, elf_status.modules, elf_status.associated_sd) == (
        PKG, h("0102"), (MODULE,), ISD)
    [elf_legacy] = status(host, gp.GET_STATUS_LOAD_FILES_AND_MODULES, tlv_format=False)
    assert (elf_legacy.aid, elf_legacy.life_cycle, elf_legacy.modules) == (PKG, 0x01, (MODULE,))
    [isd_status] = status(host, gp.GET_STATUS_ISD)
    assert (isd_status.aid, isd_status.life_cycle, isd_status.privileges) == (ISD, 0x01, h("9EFE80"))

    # SET STATUS: application specific state, lock, unlock
    host.ok(gp.SetStatusCommand(gp.SET_STATUS_APPLICATION, 0x0F, APP_A).command())
    assert entry(card, APP_A).life_cycle == 0x0F
    host.ok(gp.SetStatusCommand(gp.SET_STATUS_APPLICATION, 0x80, APP_A).command())
    assert entry(card, APP_A).life_cycle == 0x8F
    assert [e.life_cycle for e in status(host, gp.GET_STATUS_APPLICATIONS, prefix=APP_A)] == [0x8F]
    host.ok(gp.SetStatusCommand(gp.SET_STATUS_APPLICATION, 0x00, APP_A).command())
    assert entry(card, APP_A).life_cycle == 0x0F

    # contactless activation with a priority shows in the PPSE
    host.ok(gp.SetAvailability(True, (gp.AvailabilityTarget(APP_A, 1),)).command())
    assert entry(card, APP_A).contactless_activated
    fci = Host(card).select(PPSE_AID, "contactless")
    assert fci.sw == 0x9000
    assert fci.data == tlv.tlv(0x6F, tlv.tlv(0x84, b"2PAY.SYS.DDF01") + tlv.tlv(0xA5, tlv.tlv(
        0xBF0C, tlv.tlv(0x61, tlv.tlv(0x4F, APP_A) + tlv.tlv(0x87, b"\x01"))))), fci.data.hex()
    assert Host(card).select(APP_A, "contactless").sw == 0x9000
    host = isd(card)
    host.ok(gp.SetStatusCommand(gp.SET_STATUS_APPLICATION, 0x80, APP_A).command())
    assert Host(card).select(APP_A).sw == 0x6A82
    assert b"\x61" not in Host(card).select(PPSE_AID, "contactless").data  # locked: not listed
    host = isd(card)

    # DELETE: the load file has an instance; P2 80 deletes both
    assert host.sw(gp.DeleteCommand(PKG).command()) == 0x6985
    host.ok(gp.DeleteCommand(PKG, related_objects=True).command())
    assert entry(card, PKG) is None
    assert entry(card, APP_A) is None
    assert UNINSTALLED == [APP_A]
    assert APP_A.hex().upper() not in card.image.state["applets"]
    assert host.sw(gp.GetStatusCommand(gp.GET_STATUS_LOAD_FILES).command()) == 0x6A88


def test_install_then_make_selectable_and_delete_instance(card):
    host = isd(card)
    assert load(host, code_size=0) == 0x9000  # single block
    assert install(host, make_selectable=False) == 0x9000
    assert entry(card, APP_A).life_cycle == APP_INSTALLED
    assert Host(card).select(APP_A).sw == 0x6A82
    host = isd(card)
    assert host.sw(gp.InstallForPersonalization(APP_A).command()) == 0x9000  # INSTALLED may be personalised
    host.ok(gp.InstallForMakeSelectable(APP_A).command())
    assert entry(card, APP_A).life_cycle == APP_SELECTABLE
    assert host.sw(gp.InstallForMakeSelectable(APP_A).command()) == 0x6985  # already selectable
    assert install(host) == 0x6985  # AID in use
    host.ok(gp.DeleteCommand(APP_A).command())
    assert entry(card, APP_A) is None
    assert entry(card, PKG) is not None
    assert host.sw(gp.DeleteCommand(APP_A).command()) == 0x6A88


def test_get_status_pages_with_6310(card):
    host = isd(card)
    assert load(host, code_size=0) == 0x9000
    aids = [APP_A[:-1] + bytes([n]) for n in range(12)]
    for aid in aids:
        assert install(host, aid) == 0x9000
    first = host.send(gp.GetStatusCommand(gp.GET_STATUS_APPLICATIONS).command())
    assert first.sw == 0x6310
    assert len(first.data) <= content.GET_STATUS_MAX_RESPONSE
    listed = [e.aid for e in status(host, gp.GET_STATUS_APPLICATIONS)]
    assert listed == [PPSE_AID, *aids]
    assert host.sw(gp.GetStatusCommand(gp.GET_STATUS_APPLICATIONS, next_occurrence=True).command()) == 0x6985
    # any other command abandons a pending GET STATUS
    assert host.send(gp.GetStatusCommand(gp.GET_STATUS_APPLICATIONS).command()).sw == 0x6310
    host.ok(gp.SetStatusCommand(gp.SET_STATUS_APPLICATION, 0x0F, aids[0]).command())
    assert host.sw(gp.GetStatusCommand(gp.GET_STATUS_APPLICATIONS).next().command()) == 0x6985


def test_tag_list_limits_the_objects(card):
    host = isd(card)
    response = host.send(gp.GetStatusCommand(gp.GET_STATUS_APPLICATIONS, tag_list=(0x4F, 0x9F70)).command())
    assert response.sw == 0x9000
    assert response.data == tlv.tlv(0xE3, tlv.tlv(0x4F, PPSE_AID) + tlv.tlv(0x9F70, b"\x07"))
    response = host.send(gp.GetStatusCommand(gp.GET_STATUS_APPLICATIONS, tag_list=(0xCC,)).command())
    assert response.data == tlv.tlv(0xE3, tlv.tlv(0x4F, PPSE_AID) + tlv.tlv(0x9F70, b"\x07") + tlv.tlv(0xCC, ISD))


# --- load failures --------------------------------------------------------------------------------

def test_unknown_package_is_refused_and_nothing_registered():
    se = make_card(PACKAGE)
    host = isd(se)
    before = se.image.state["registry"]
    assert load(host, UNKNOWN) == 0x6A80
    assert se.image.state["registry"] == before
    assert se.faults == []


def test_wrong_hash_is_refused(card):
    host = isd(card)
    assert load(host, digest=bytes(32)) == 0x6A80
    assert entry(card, PKG) is None
    assert load(host, digest=bytes(20)) == 0x6A80  # SHA-1 length, wrong value
    assert load(host, digest=gp.load_file_data_block_hash(build_load_file_data_block(PACKAGE, code_size=700),
                                                          "sha1")) == 0x9000


def test_load_without_hash_and_descriptor_mismatches(card):
    host = isd(card)
    host.ok(gp.InstallForLoad(PKG).command())
    other_version = PackageDescriptor(PKG, "9.9", (MODULE,)).encode()
    assert host.sw(gp.load_commands(gp.LoadFile(other_version).encode())[0]) == 0x6A80
    host.ok(gp.InstallForLoad(PKG).command())
    wrong_package = PackageDescriptor(UNKNOWN_PKG, "1.0", (h("A000000999000201"),)).encode()
    assert host.sw(gp.load_commands(gp.LoadFile(wrong_package).encode())[0]) == 0x6A80  # not the ELF AID
    host.ok(gp.InstallForLoad(PKG).command())
    assert host.sw(gp.load_commands(b"\xc4\x03\xdf\x70\x00")[0]) == 0x6A80  # malformed descriptor
    host.ok(gp.InstallForLoad(PKG).command())
    for cmd in gp.load_commands(build_load_file(PACKAGE, code_size=300)):
        host.ok(cmd)
    assert entry(card, PKG).extra["version"] == "1.2"
    assert host.sw(gp.InstallForLoad(PKG).command()) == 0x6985  # already loaded


def test_out_of_order_block_aborts_the_load(card):
    host = isd(card)
    block = build_load_file_data_block(PACKAGE, code_size=700)
    host.ok(gp.InstallForLoad(PKG, b"", gp.load_file_data_block_hash(block)).command())
    commands = gp.load_commands(gp.LoadFile(block).encode())
    host.ok(commands[0])
    assert host.sw(commands[2]) == 0x6A86  # block 02 where 01 was expected
    assert host.sw(commands[1]) == 0x6985  # the load was aborted
    assert host.sw(CommandApdu(0x80, 0xE8, 0x40, 0x00, b"\xc4\x00")) == 0x6985
    assert entry(card, PKG) is None
    assert load(host) == 0x9000  # a fresh INSTALL [for load] starts over


# --- security domains, delegated management, DAP, extradition -------------------------------------

def test_ssd_creation_key_handover_and_delegated_management(card, token_key, other_key):
    host = isd(card)
    create_ssd(host, SSD, privileges=b"\xa0\x00\x00")  # SD + delegated management
    ssd = entry(card, SSD)
    assert (ssd.kind, ssd.associated_sd, ssd.implementation, ssd.life_cycle) == ("SD", ISD, "paylab.gp.sd", 0x07)
    [listed] = [e for e in status(host, gp.GET_STATUS_APPLICATIONS) if e.aid == SSD]
    assert listed.privileges == h("A00000")
    assert listed.associated_sd == ISD

    # key handover: the SP replaces the creator's key set over the SSD's own channel
    sp = Host(card).open(SSD, SSD_KEYS)
    response = sp.send(gp.put_key_data(sp.session, 0x01, SP_KEYS).command(old_kvn=0x01))
    assert response.sw == 0x9000
    assert response.data[0] == 0x01
    sp = Host(card).open(SSD, SP_KEYS)

    # delegated management: no token, no key on the card, wrong token, right token
    assert load(sp, sd_aid=SSD) == 0x6982
    assert load(sp, sd_aid=SSD, token_signer=token_key) == 0x6985
    set_token_key(card, token_key.public_key())
    sp = Host(card).open(SSD, SP_KEYS)
    assert load(sp, sd_aid=SSD, token_signer=other_key) == 0x6982
    assert sp.sw(gp.InstallForLoad(PKG, SSD).command()) == 0x6A80  # DM needs the hash
    assert load(sp, sd_aid=SSD, token_signer=token_key) == 0x9000
    assert entry(card, PKG).associated_sd == SSD
    assert install(sp, APP_B) == 0x6982
    assert install(sp, APP_B, privileges=b"\x10", token_signer=token_key) == 0x6A80  # card lock: ISD only
    assert install(sp, APP_B, token_signer=token_key) == 0x9000
    assert entry(card, APP_B).associated_sd == SSD

    # the SSD sees its own domain only; the ISD sees everything
    assert [e.aid for e in status(sp, gp.GET_STATUS_APPLICATIONS)] == [APP_B]
    assert sp.sw(gp.GetStatusCommand(gp.GET_STATUS_ISD).command()) == 0x6A86
    sp.ok(gp.InstallForPersonalization(APP_B).command())
    sp.ok(gp.store_data_commands([b"\x01\x01\x01\xff"])[0])
    assert card.applet_data(APP_B)["perso"] == h("010101ff")

    # DELETE under delegated management needs a token too (9E)
    delete = gp.DeleteCommand(APP_B)
    assert sp.sw(delete.command()) == 0x6982
    sp.ok(replace(delete, token=gp.rsa_sign(token_key, delete.token_data())).command())
    assert entry(card, APP_B) is None

    # the ISD cannot delete the SSD while it has a load file, but can with P2 80
    host = isd(card)
    assert host.sw(gp.DeleteCommand(SSD).command()) == 0x6985
    host.ok(gp.DeleteCommand(SSD, related_objects=True).command())
    assert entry(card, SSD) is None
    assert entry(card, PKG) is None


def test_authorized_management_ssd_needs_no_token(card):
    host = isd(card)
    create_ssd(host, SSD, privileges=b"\x80\x40\x00")  # SD + authorized management
    sp = Host(card).open(SSD, SSD_KEYS)
    assert load(sp, sd_aid=SSD) == 0x9000
    assert install(sp, APP_A) == 0x9000
    assert install(sp, SSD2, privileges=b"\x80\x00\x00", params=b"\xc9\x00", elf=OS_SD_LOAD_FILE_AID,
                   module=OS_SD_MODULE_AID) == 0x9000  # sub-SSD
    assert entry(card, SSD2).associated_sd == SSD
    fresh = Host(card)
    assert fresh.select(SSD2).sw == 0x9000
    initialize_update = CommandApdu.decode(Scp03Session.host_initialize_update(SSD_KEYS, bytes(8), kvn=0))
    assert fresh.raw(initialize_update).sw == 0x6A88  # no keys until its creator personalises it


def test_ssd_without_management_privilege_is_refused(card):
    host = isd(card)
    create_ssd(host)
    sp = Host(card).open(SSD, SSD_KEYS)
    assert load(sp, sd_aid=SSD) == 0x6982
    assert sp.sw(gp.DeleteCommand(PPSE_AID).command()) == 0x6982


def test_extradition(card):
    host = isd(card)
    create_ssd(host, SSD, privileges=b"\x80\x40\x00")
    assert load(host) == 0x9000
    assert install(host, APP_A) == 0x9000
    sp = Host(card).open(SSD, SSD_KEYS)
    assert sp.sw(gp.InstallForPersonalization(APP_A).command()) == 0x6985  # not its application
    host = isd(card)
    host.ok(gp.InstallForExtradition(SSD, APP_A).command())
    assert entry(card, APP_A).associated_sd == SSD
    assert host.sw(gp.InstallForExtradition(APP_A, SSD).command()) == 0x6A88  # APP_A is no SD
    assert host.sw(gp.InstallForExtradition(SSD, ISD).command()) == 0x6985
    sp = Host(card).open(SSD, SSD_KEYS)
    sp.ok(gp.InstallForPersonalization(APP_A).command())
    assert [e.associated_sd for e in status(sp, gp.GET_STATUS_APPLICATIONS)] == [SSD]
    # an SSD cannot move an SD above itself into its own domain
    assert sp.sw(gp.InstallForExtradition(SSD, SSD).command()) == 0x6985


def test_registry_update_moves_and_relabels(card):
    host = isd(card)
    create_ssd(host, SSD, privileges=b"\x80\x40\x00")
    assert load(host) == 0x9000
    assert install(host, APP_A) == 0x9000
    seed = tlv.tlv(0xA1, tlv.tlv(0xA6, tlv.tlv(0xBF0C, tlv.tlv(0x61, tlv.tlv(0x4F, APP_A) + tlv.tlv(0x50, b"PAYLAB")
                                                              + tlv.tlv(0x87, b"\x02")))))
    params = gp.InstallParameters(None, seed).encode()
    host.ok(gp.InstallForRegistryUpdate(SSD, APP_A, b"", params).command())
    app = entry(card, APP_A)
    assert (app.associated_sd, app.extra["label"], app.contactless_priority) == (SSD, "PAYLAB", 2)


def test_dap_verification(card, token_key, other_key):
    host = isd(card)
    create_ssd(host, SSD, privileges=b"\xc0\x40\x00")  # SD + DAP verification + AM
    set_dap_key(card, SSD, token_key.public_key())
    host = isd(card)
    block = build_load_file_data_block(PACKAGE, code_size=100)
    digest = gp.load_file_data_block_hash(block)
    assert host.sw(gp.InstallForLoad(PKG, SSD).command()) == 0x6A80  # DAP needs the hash
    assert load(host, sd_aid=SSD, code_size=100) == 0x6A80  # DAP block missing
    bad = gp.DapBlock(SSD, gp.rsa_sign(other_key, digest))
    assert load(host, sd_aid=SSD, code_size=100, dap_blocks=[bad]) == 0x6982
    good = gp.DapBlock(SSD, gp.rsa_sign(token_key, digest, "pkcs1-sha1"))
    assert load(host, sd_aid=SSD, code_size=100, dap_blocks=[good]) == 0x9000
    assert entry(card, PKG).associated_sd == SSD


def test_install_failures(card):
    host = isd(card)
    assert install(host) == 0x6A88  # no load file yet
    assert load(host) == 0x9000
    assert install(host, module=h("A000000999000199")) == 0x6A88  # no such module
    assert install(host, privileges=b"\x80\x00\x00") == 0x6A80  # SD privilege on an application module
    assert install(host, privileges=b"\x00\x40\x00") == 0x6A80  # AM without SD
    assert install(host, privileges=b"\xa0\x40\x00", elf=OS_SD_LOAD_FILE_AID, module=OS_SD_MODULE_AID) == 0x6A80
    assert install(host, privileges=b"\x04", make_selectable=False) == 0x6A80  # default selected, not selectable
    assert install(host, params=b"\xc9\x05\x00") == 0x6A80  # truncated C9
    assert install(host, params=b"\xc9\x00\xef\x03\xa0\x01\x81") == 0x6A80  # broken EF
    assert install(host, privileges=b"\x04") == 0x9000  # the ISD may make it default selected
    assert install(host, APP_B, privileges=b"\x04") == 0x6985  # only one default selected


def test_install_parameters_set_contactless_state_and_ppse_entry(card):
    host = isd(card)
    assert load(host) == 0x9000
    seed = tlv.tlv(0xA6, tlv.tlv(0xBF0C, tlv.tlv(0x61, tlv.tlv(0x4F, APP_A) + tlv.tlv(0x50, b"QPBOC")
                                                 + tlv.tlv(0x87, b"\x01") + tlv.tlv(0x9F2A, b"\x07"))))
    system = tlv.tlv(0xA0, tlv.tlv(0x81, b"\x01")) + tlv.tlv(0xA1, tlv.tlv(0x87, b"\x20") + seed)
    assert install(host, params=gp.InstallParameters(b"", system).encode()) == 0x9000
    not_payment = tlv.tlv(0xA0, tlv.tlv(0x81, b"\x01")) + tlv.tlv(0xA1, tlv.tlv(0x87, b"\x30"))
    assert install(host, APP_B, params=gp.InstallParameters(b"", not_payment).encode()) == 0x9000
    assert entry(card, APP_A).contactless_activated
    assert entry(card, APP_B).contactless_activated
    fci = Host(card).select(PPSE_AID, "contactless").data
    directory = tlv.find(tlv.decode(fci), 0xBF0C)
    assert directory.value == tlv.tlv(0x61, tlv.tlv(0x4F, APP_A) + tlv.tlv(0x50, b"QPBOC") + tlv.tlv(0x87, b"\x01")
                                      + tlv.tlv(0x9F2A, b"\x07"))


def test_contactless_activation_order_partial_failure_and_deactivation(card):
    host = isd(card)
    assert load(host) == 0x9000
    assert install(host, APP_A) == 0x9000
    assert install(host, APP_B) == 0x9000
    activate = gp.SetAvailability(True, (gp.AvailabilityTarget(APP_A, 2), gp.AvailabilityTarget(APP_B, 1),
                                         gp.AvailabilityTarget(UNKNOWN_PKG)))
    response = host.send(activate.command())
    assert (response.sw, response.data) == (0x6320, tlv.tlv(0xA1, tlv.tlv(0x4F, UNKNOWN_PKG)))
    fci = Host(card).select(PPSE_AID).data  # contact interface too
    assert [t.children[0].value for t in tlv.find(tlv.decode(fci), 0xBF0C).children] == [APP_B, APP_A]
    host = isd(card)
    host.ok(gp.SetAvailability(False, (gp.AvailabilityTarget(APP_B),)).command())
    assert Host(card).select(APP_B, "contactless").sw == 0x6A82
    fci = Host(card).select(PPSE_AID, "contactless").data
    assert [t.children[0].value for t in tlv.find(tlv.decode(fci), 0xBF0C).children] == [APP_A]
    host = isd(card)
    response = host.send(gp.SetAvailability(True, (gp.AvailabilityTarget(PPSE_AID),)).command())
    assert response.sw == 0x6320  # OS application


def test_set_status_sd_and_card(card):
    host = isd(card)
    create_ssd(host, SSD, privileges=b"\x80\x40\x00")
    sp = Host(card).open(SSD, SSD_KEYS)
    assert load(sp, sd_aid=SSD) == 0x9000
    assert install(sp, APP_A) == 0x9000
    host = isd(card)
    host.ok(gp.SetStatusCommand(gp.SET_STATUS_APPLICATION, 0x0F, SSD).command())  # PERSONALIZED
    assert entry(card, SSD).life_cycle == 0x0F
    host.ok(gp.SetStatusCommand(gp.SET_STATUS_SD_AND_APPLICATIONS, 0x80, SSD).command())
    assert entry(card, SSD).locked
    assert entry(card, APP_A).locked
    assert Host(card).select(SSD).sw == 0x6A82
    host = isd(card)
    host.ok(gp.SetStatusCommand(gp.SET_STATUS_SD_AND_APPLICATIONS, 0x00, SSD).command())
    assert (entry(card, SSD).life_cycle, entry(card, APP_A).life_cycle) == (0x0F, APP_SELECTABLE)
    assert host.sw(gp.SetStatusCommand(gp.SET_STATUS_SD_AND_APPLICATIONS, 0x0F, SSD).command()) == 0x6A86
    assert host.sw(gp.SetStatusCommand(gp.SET_STATUS_APPLICATION, 0x03, APP_A).command()) == 0x6A86
    assert host.sw(gp.SetStatusCommand(gp.SET_STATUS_APPLICATION, 0x80, ISD).command()) == 0x6985
    # card life cycle through the SD's rules; a locked card refuses content management
    assert host.sw(gp.SetStatusCommand(gp.SET_STATUS_ISD, 0x7F).command()) == 0x6985  # OP_READY -> LOCKED
    for state in (0x07, 0x0F, 0x7F):
        host.ok(gp.SetStatusCommand(gp.SET_STATUS_ISD, state, ISD).command())
    assert card.card_state()["life_cycle"] == 0x7F
    assert [e.life_cycle for e in status(host, gp.GET_STATUS_ISD)] == [0x7F]
    assert host.sw(gp.DeleteCommand(APP_A).command()) == 0x6985
    host.ok(gp.SetStatusCommand(gp.SET_STATUS_ISD, 0x0F).command())
    host.ok(gp.DeleteCommand(APP_A).command())


# --- malformed commands: the right status word, never 6F00 ----------------------------------------

MALFORMED = [
    ("80E60300" "00", 0x6A86),                        # INSTALL P1 03
    ("80E60C01" "00", 0x6A86),                        # INSTALL P2 01
    ("80E60C00" "0308A000", 0x6A80),                  # INSTALL truncated
    ("80E60200" "05A000000001", 0x6A80),              # INSTALL [for load] cut short
    ("80E60200" "07A0000009990001" "00" "03AABBCC" "0000", 0x6A80),  # hash of 3 bytes
    ("80E62000" "0000" "07A0000009990001" "000000", 0x6A88),  # perso of an unknown application
    ("80E62000" "01AA00" "07A0000009990001" "000000", 0x6A80),
    ("80E80000" "C400", 0x6985),                      # LOAD without INSTALL [for load]
    ("80E40000" "4F03A00000", 0x6A80),                # DELETE AID too short
    ("80E40001" "4F07A0000009990001", 0x6A86),        # DELETE P2 01
    ("80E40000" "FF", 0x6A80),
    ("80E40000" "4F07A0000009990001" "C1020000", 0x6A80),
    ("80E40000" "4F07A0000009990001", 0x6A88),        # nothing to delete
    ("80E40000" "D20101", 0x6A81),                    # DELETE [key]
    ("80F20102" "4F00", 0x6A86),                      # GET STATUS P1 01
    ("80F24004" "4F00", 0x6A86),
    ("80F24002" "5C014F", 0x6A80),                    # no 4F
    ("80F24000" "4F005C014F", 0x6A80),                # tag list in legacy format
    ("80F24003" "4F00", 0x6985),                      # next without a first
    ("80F24002" "4F03FFFFFF", 0x6A88),                # no match
    ("80F02280" "A0000009990001", 0x6A86),            # SET STATUS P1 22
    ("80F04080" "A00000", 0x6A80),                    # AID too short
    ("80F04080" "A0000009990001", 0x6A88),
    ("80F00105" "4F07A0000009990001", 0x6A86),        # availability state 05
    ("80F00101" "87010F", 0x6A80),
    ("80F08007" "A0000009990001", 0x6A88),            # not the ISD's AID
]


@pytest.mark.parametrize(("apdu", "sw"), MALFORMED)
def test_malformed_commands(card, apdu, sw):
    host = isd(card)
    raw = h(apdu)  # header then data (Lc added here)
    assert host.sw(CommandApdu(raw[0], raw[1], raw[2], raw[3], raw[4:], 256)) == sw
    assert card.faults == []


def test_commands_need_a_secure_channel(card):
    host = Host(card)
    assert host.select(ISD).sw == 0x9000
    for cmd in (gp.InstallForLoad(PKG).command(), gp.GetStatusCommand(0x40).command(),
                gp.DeleteCommand(PKG).command(), gp.SetStatusCommand(0x40, 0x80, PPSE_AID).command()):
        assert host.raw(cmd).sw == 0x6982


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ins=st.sampled_from([0xE6, 0xE8, 0xE4, 0xF2, 0xF0]), p1=st.integers(0, 255), p2=st.integers(0, 255),
       data=st.binary(max_size=180))
def test_random_commands_never_fault(card, ins, p1, p2, data):
    if ins == 0xF0 and p1 == 0x80:
        p1 = 0x40  # keep the card alive: random card life cycle changes could terminate it
    host = isd(card)
    response = host.send(CommandApdu(0x80, ins, p1, p2, data, 256))
    assert response.sw != 0x6F00
    assert card.faults == []
