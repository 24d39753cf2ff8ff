"""The PBOC applet on the emulated card: personalisation, qPBOC, contact two-pass, e-cash, scripts, SWs.

Most cards are built directly in a card image (no security domain): the instance is put in the registry,
installed, and fed the cps DGIs through ``process_data`` as the security domain would forward them
(decrypted, P1 encryption bits cleared). The issuer side of every check is what the backend does:
``emv.verify_arqc`` from the issuer master keys, ARPC method 1 and the script MAC from the derived
card keys, and ``oda.verify_fdda`` on a key recovered through the whole TEST certificate chain.
The last test takes the real path instead: fabricated card, SCP03 to the ISD, LOAD, INSTALL, STORE
DATA with DEK-encrypted DGIs, and a tap.
"""

import random
from dataclasses import replace
from datetime import date

import pytest

from paylab.drivers.se.applet import InstallParams
from paylab.drivers.se.applets import pboc
from paylab.drivers.se.catalog import Catalog
from paylab.drivers.se.catalog_default import default_catalog
from paylab.drivers.se.errors import ISOException, PowerLost
from paylab.drivers.se.factory import fabricate
from paylab.drivers.se.form_factor import ESE, MICROSD, SIM
from paylab.drivers.se.gp.content import build_load_file
from paylab.drivers.se.image import CardImage
from paylab.drivers.se.registry import APP_PERSONALIZED, APP_SELECTABLE, Registry, RegistryEntry
from paylab.drivers.se.runtime import SecureElement
from paylab.lab import profiles
from paylab.lab.protocol import cps, dol, oda, tlv
from paylab.lab.protocol.apdu import ApduExchanger, CommandApdu, ResponseApdu, transmit_with_chaining
from paylab.lab.protocol.crypto import emv
from paylab.lab.protocol.crypto.primitives import cbc_encrypt, ecb_encrypt
from paylab.lab.protocol.gp import Scp03Session, StaticKeys
from paylab.lab.protocol.gp import commands as gp

h = bytes.fromhex
TODAY = date(2026, 1, 15)
KERNEL = "A000000333"
ONLINE_TTQ = h("36800000")   # qPBOC, contact, online PIN, signature; online cryptogram required
OFFLINE_TTQ = h("36000080")  # same reader without "online required"; fDDA v01 supported
OFFLINE_ONLY_TTQ = h("3E000080")
CNY = h("0156")
UN = h("2B29EBE4")
ONLINE_TEMPLATE_TAGS = [0x82, 0x9F36, 0x57, 0x9F10, 0x9F26, 0x5F34, 0x9F6C, 0x9F5D]


def terminal_values(amount, *, ttq=ONLINE_TTQ, currency=CNY, un=UN, tx_type=b"\x00"):
    """What a reader knows for PDOL/CDOL data (plus 8A for CDOL2)."""
    return {0x9F66: ttq, 0x9F02: cps.amount_n12(amount), 0x9F03: bytes(6), 0x9F1A: h("0156"),
            0x95: bytes(5), 0x5F2A: currency, 0x9A: h("260115"), 0x9C: tx_type, 0x9F37: un,
            0xDF69: b"\x01", 0x9F21: h("101500"), 0x9F4E: b"PAYLAB TEST SHOP".ljust(20, b" "), 0x8A: b"00"}


def issuer_verifies(profile, values, ac, atc, iad_raw, aip):
    """The backend's check: CVN and algorithm from the IAD, MK from the IMK, PBOC session key, AC."""
    iad = emv.parse_iad(iad_raw)
    data = emv.ac_input(dict(values) | {0x82: aip, 0x9F36: atc}, iad.cvr)
    return emv.verify_arqc(profile.issuer_keys.imk_ac, profile.pan, profile.psn, atc, data, ac,
                           method=emv.session_method_for_cvn(iad.cvn), alg=emv.alg_for_iad(iad))


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def debit():
    return profiles.load_bundled("pboc_debit_ecash_sm4")


@pytest.fixture(scope="module")
def credit():
    return profiles.load_bundled("pboc_credit_ecash_3des")


@pytest.fixture(scope="module")
def ecash_only():
    return profiles.load_bundled("pboc_ecash_only_sm4")


_CHAINS: dict[str, oda.OdaChain] = {}


def chain_for(profile):
    """One TEST chain per profile per test run (RSA key generation takes a while)."""
    if profile.name not in _CHAINS:
        _CHAINS[profile.name] = cps.generate_oda_chain(profile, seed_or_rng=7)
    return _CHAINS[profile.name]


class Card:
    """An emulated card with one personalised PBOC instance, and a terminal/issuer to drive it."""

    def __init__(self, tmp_path, profile, *, with_oda=True, form_factor=ESE, name="card.json"):
        self.profile = profile
        self.chain = chain_for(profile) if with_oda else None
        catalog = Catalog()
        catalog.register(pboc.PACKAGE)
        image = CardImage(tmp_path / name)
        Registry(image.state).put(RegistryEntry(
            aid=profile.aid, kind="APP", life_cycle=APP_SELECTABLE, implementation=pboc.IMPLEMENTATION,
            elf_aid=pboc.PACKAGE_AID, module_aid=pboc.MODULE_AID, contactless_activated=True))
        image.commit()
        self.se = SecureElement(image, form_factor, catalog, seed=1)
        self.se.power_on()
        self.applet.install(self.ctx(), InstallParams())
        self.se.image.commit()
        self.exchanger = ApduExchanger(self.se.transmit)

    @property
    def entry(self):
        return self.se.registry.get(self.profile.aid)

    @property
    def applet(self):
        return self.se.applet(self.entry)

    @property
    def data(self):
        return self.se.applet_data(self.profile.aid)

    def ctx(self):
        return self.se.context(self.entry, 0)

    def store(self, cmd):
        """What the SD does with a decrypted STORE DATA block: process_data, then commit or roll back."""
        plain = replace(cmd, p1=cmd.p1 & ~0x60 & 0xFF)
        try:
            result = self.applet.process_data(self.ctx(), plain)
        except ISOException as exc:
            self.se.image.rollback()
            return exc.sw
        self.se.image.commit()
        return getattr(result, "sw", 0x9000)

    def personalise(self, dgis=None, *, block_size=cps.DEFAULT_BLOCK_SIZE):
        dgis = cps.prepare_pboc(self.profile, oda=self.chain) if dgis is None else dgis
        sws = [self.store(cmd) for cmd in cps.store_data_commands(dgis, block_size=block_size)]
        assert set(sws) == {0x9000}, [f"{sw:04X}" for sw in sws]
        return self

    # terminal side ----------------------------------------------------------------------------------
    def send(self, cmd):
        if isinstance(cmd, str):
            cmd = CommandApdu.decode(h(cmd))
        return self.exchanger.transmit(cmd)

    def power(self, interface="contactless"):
        self.se.power_on(interface)

    def select(self, interface="contactless"):
        self.power(interface)
        resp = self.send(CommandApdu(0x00, 0xA4, 0x04, 0x00, self.profile.aid, le=256))
        assert resp.sw == 0x9000
        return resp

    def terminal_values(self, amount, **kw):
        return terminal_values(amount, **kw)

    def gpo(self, values, pdol=None):
        pdol = self.profile.pdol if pdol is None else pdol
        data = dol.gpo_command_data(dol.build_dol_data(pdol, values, kernel=KERNEL))
        return self.send(CommandApdu(0x80, 0xA8, 0x00, 0x00, data, le=256))

    def qpboc(self, amount, **kw):
        self.select("contactless")
        values = self.terminal_values(amount, **kw)
        return values, self.gpo(values)

    def gen_ac(self, p1, values, cdol):
        data = dol.build_dol_data(cdol, values, kernel=KERNEL)
        return self.send(CommandApdu(0x80, 0xAE, p1, 0x00, data, le=256))

    def get_data(self, tag):
        return self.send(CommandApdu(0x80, 0xCA, tag >> 8, tag & 0xFF, le=256))

    def balance(self):
        resp = self.get_data(0x9F79)
        assert resp.sw == 0x9000
        return int(tlv.decode_one(resp.data).value.hex())

    # issuer side (what the backend does) ------------------------------------------------------------
    @property
    def card_keys(self):
        return emv.CardKeys.from_imk(self.profile.issuer_keys, self.profile.pan, self.profile.psn)

    def verify_ac(self, values, ac, atc, iad_raw, aip):
        return issuer_verifies(self.profile, values, ac, atc, iad_raw, aip)

    def arpc(self, arqc, atc, arc=b"00"):
        sk = emv.derive_ac_session_key(self.card_keys.mk_ac, atc, "pboc", self.profile.algorithm)
        return emv.arpc_method1(sk, arqc, arc, self.profile.algorithm)

    def script(self, cla, ins, p1, p2, payload, atc, arqc, *, corrupt=False):
        header = bytes([cla, ins, p1, p2, len(payload) + 4])
        sk = emv.derive_pboc_session_key(self.card_keys.mk_mac, atc, self.profile.algorithm)
        mac = emv.issuer_script_mac(sk, header, atc, arqc, payload, self.profile.algorithm)
        if corrupt:
            mac = bytes([mac[0] ^ 1]) + mac[1:]
        return self.send(CommandApdu(cla, ins, p1, p2, payload + mac))


def objects(resp):
    return {obj.tag: obj.value for obj in tlv.decode_one(resp.data).children}


def order(resp):
    return [obj.tag for obj in tlv.decode_one(resp.data).children]


@pytest.fixture
def debit_card(tmp_path, debit):
    return Card(tmp_path, debit).personalise()


@pytest.fixture
def credit_card(tmp_path, credit):
    return Card(tmp_path, credit).personalise()


# -- personalisation ------------------------------------------------------------------------------------


def test_personalisation_moves_the_instance_to_personalized_and_builds_the_fci(tmp_path, debit):
    card = Card(tmp_path, debit)
    assert card.entry.life_cycle == APP_SELECTABLE
    card.select("contactless")
    assert card.send("80CA9F3600").sw == 0x6985  # not personalised: transaction commands refused
    assert card.gpo(card.terminal_values(100)).sw == 0x6985
    card.personalise()
    assert card.entry.life_cycle == APP_PERSONALIZED
    fci = tlv.decode_one(card.select("contactless").data)
    flat = tlv.to_dict([fci])
    assert flat[0x84] == debit.aid
    assert flat[0x50] == b"PBOC DEBIT"
    assert flat[0x87] == b"\x01"
    assert flat[0x9F38] == debit.pdol
    assert flat[0x5F2D] == b"zh"
    assert flat[0x9F11] == b"\x01"
    assert flat[0x9F4D] == h("0B0A")
    assert flat[0xDF4D] == h("0C0A")
    contact = tlv.to_dict(tlv.decode(card.select("contact").data))
    assert 0x9F38 not in contact  # the contact FCI carries the contact PDOL (none by default)
    # personalised: further STORE DATA is refused
    assert card.store(CommandApdu(0x80, 0xE2, 0x88, 0x00, cps.encode_dgi(0x0101, h("7003570100")))) == 0x6985


def test_dgis_split_across_store_data_blocks(tmp_path, credit):
    card = Card(tmp_path, credit).personalise(block_size=80)
    card.select("contactless")
    assert card.data["records"]["0201"] == cps.record_layout(credit, oda=card.chain).records[(2, 1)]


def test_incomplete_personalisation_and_bad_key_check_values(tmp_path, debit):
    card = Card(tmp_path, debit)
    dgis = [d for d in cps.prepare_pboc(debit, oda=card.chain) if d[0] != cps.DGI_CARD_KEYS]
    commands = cps.store_data_commands(dgis)
    assert [card.store(cmd) for cmd in commands][-1] == 0x6985  # last block: DGI 8000 missing
    assert card.entry.life_cycle == APP_SELECTABLE
    assert not card.data["personalised"]

    card2 = Card(tmp_path, debit, name="card2.json")
    dgis = [(dgi, h("000000111111222222") if dgi == cps.DGI_KEY_CHECK_VALUES else data, enc)
            for dgi, data, enc in cps.prepare_pboc(debit, oda=card2.chain)]
    assert [card2.store(cmd) for cmd in cps.store_data_commands(dgis)][-1] == 0x6A80


@pytest.mark.parametrize(("p1", "data", "sw"), [
    (0x90, cps.encode_dgi(0x0101, h("7003570100")), 0x6A86),        # BER-TLV structure
    (0x88, cps.encode_dgi(0x0101, h("6F03570100")), 0x6A80),        # a record that is not template 70
    (0x88, cps.encode_dgi(0x0101, h("7003570100"))[:-1], 0x6A80),   # last block ends inside a DGI
    (0x88, cps.encode_dgi(0x7777, h("00")), 0x6A88),                # unknown DGI
    (0x88, cps.encode_dgi(0x8000, bytes(47)), 0x6A80),              # keys of the wrong size
    (0x88, cps.encode_dgi(0x8010, h("1412345FFFFFFFFF")), 0x6A80),  # not a format 2 PIN block
    (0x88, cps.encode_dgi(0x0E01, h("9F7906AAAAAAAAAAAA")), 0x6A80),  # balance not BCD
    (0x88, b"", 0x6700),
])
def test_bad_store_data(tmp_path, debit, p1, data, sw):
    card = Card(tmp_path, debit)
    assert card.store(CommandApdu(0x80, 0xE2, p1, 0x00, data)) == sw


# -- qPBOC --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pboc_debit_ecash_sm4", "pboc_credit_ecash_3des", "pboc_ecash_only_sm4"])
def test_qpboc_online_arqc_is_verified_by_the_issuer(tmp_path, name):
    profile = profiles.load_bundled(name)
    card = Card(tmp_path, profile).personalise()
    values, resp = card.qpboc(100, ttq=ONLINE_TTQ)
    assert resp.sw == 0x9000
    assert order(resp) == ONLINE_TEMPLATE_TAGS  # exactly the brief's trace: no 9F27, no 94
    got = objects(resp)
    assert got[0x9F36] == h("0001")
    assert card.verify_ac(values, got[0x9F26], got[0x9F36], got[0x9F10], got[0x82])
    iad = emv.parse_iad(got[0x9F10])
    assert len(got[0x9F10]) == 0x13
    assert iad.cvn == profile.cvn
    assert iad.dki == profile.dki
    assert iad.cvr == h("03A00000")
    assert iad.algorithm == profile.algorithm
    assert iad.idd[0] == 0x01
    assert iad.idd[1:6] == cps.amount_n12(profile.ecash.balance)[1:]
    assert got[0x9F5D] == cps.amount_n12(profile.ecash.balance)
    assert got[0x9F6C] == profile.ctq
    assert got[0x5F34] == h(profile.psn)
    assert got[0x57] == profile.track2


def test_iad_idd_mac_is_recomputable(debit_card):
    _, resp = debit_card.qpboc(100)
    got = objects(resp)
    sk = emv.derive_ac_session_key(debit_card.card_keys.mk_ac, got[0x9F36], "pboc", "sm4")
    idd = emv.parse_iad(got[0x9F10]).idd
    assert idd[6:] == pboc.idd_mac(sk, idd[1:6], got[0x9F36], "sm4")


@pytest.mark.parametrize("name", ["pboc_debit_ecash_sm4", "pboc_credit_ecash_3des"])
def test_qpboc_offline_ecash_approval_debits_and_signs(tmp_path, name):
    profile = profiles.load_bundled(name)
    card = Card(tmp_path, profile).personalise()
    before = profile.ecash.balance
    values, resp = card.qpboc(1234, ttq=OFFLINE_TTQ)
    assert resp.sw == 0x9000
    got = objects(resp)
    assert got[0x9F27] == b"\x40"
    assert 0x94 in got
    assert got[0x94] == h("0801010110010200")
    assert card.verify_ac(values, got[0x9F26], got[0x9F36], got[0x9F10], got[0x82])  # TC, same construction
    assert emv.parse_iad(got[0x9F10]).cvr == h("03900000")
    assert got[0x9F5D] == cps.amount_n12(before - 1234)
    # fDDA: the reader recovers the ICC key through CA -> issuer -> ICC, with the records the AFL names
    records = {}
    afl = got[0x94]
    for i in range(0, len(afl), 4):
        sfi, first, last = afl[i] >> 3, afl[i + 1], afl[i + 2]
        for rec in range(first, last + 1):
            r = card.send(CommandApdu(0x00, 0xB2, rec, (sfi << 3) | 4, le=256))
            assert r.sw == 0x9000
            records[(sfi, rec)] = r.data
    static = oda.static_data_to_be_authenticated([(1, records[(1, 1)])])
    icc_public = card.chain.recover_icc_public_key(today=TODAY, static_data=static)
    oda.verify_fdda(icc_public, got[0x9F4B], values[0x9F37], values[0x9F02], values[0x5F2A], got[0x9F69])
    assert got[0x9F69][5:7] == profile.ctq
    # balance and log are persistent
    card.power("contact")
    card.select("contact")
    assert card.balance() == before - 1234
    log = card.send("00B2015C00")
    assert log.sw == 0x9000
    entries = dol.split_dol_data(profile.log_format, log.data)
    assert entries[0x9F02] == cps.amount_n12(1234)
    assert entries[0x9F36] == got[0x9F36]
    assert card.send("00B2025C00").sw == 0x6A83


def test_qpboc_decisions(tmp_path, debit, ecash_only):
    card = Card(tmp_path, debit).personalise()
    balance = debit.ecash.balance
    # e-cash short -> online (debit account)
    _, resp = card.qpboc(balance + 1, ttq=OFFLINE_TTQ)
    assert order(resp) == ONLINE_TEMPLATE_TAGS
    # above the single-transaction limit -> online
    _, resp = card.qpboc(debit.ecash.single_limit + 1, ttq=OFFLINE_TTQ)
    assert order(resp) == ONLINE_TEMPLATE_TAGS
    # currency other than 9F51 -> online
    _, resp = card.qpboc(100, ttq=OFFLINE_TTQ, currency=h("0840"))
    assert order(resp) == ONLINE_TEMPLATE_TAGS
    # cash (9C 01) is never approved offline
    _, resp = card.qpboc(100, ttq=OFFLINE_TTQ, tx_type=b"\x01")
    assert order(resp) == ONLINE_TEMPLATE_TAGS
    # TTQ "online cryptogram required" wins over enough e-cash
    _, resp = card.qpboc(100, ttq=ONLINE_TTQ)
    assert order(resp) == ONLINE_TEMPLATE_TAGS
    # offline-only reader and e-cash short -> AAC
    values, resp = card.qpboc(balance + 1, ttq=OFFLINE_ONLY_TTQ)
    got = objects(resp)
    assert got[0x9F27] == b"\x00"
    assert 0x94 not in got
    assert emv.parse_iad(got[0x9F10]).cvr == h("03800000")
    assert card.verify_ac(values, got[0x9F26], got[0x9F36], got[0x9F10], got[0x82])
    assert card.balance() == balance  # nothing debited by any of these

    # a pure e-cash account never goes online because e-cash is short
    purse = Card(tmp_path, ecash_only, name="purse.json").personalise()
    _, resp = purse.qpboc(ecash_only.ecash.balance + 1, ttq=OFFLINE_TTQ)
    assert objects(resp)[0x9F27] == b"\x00"


def test_no_oda_data_means_no_offline_approval(tmp_path, debit):
    card = Card(tmp_path, debit, with_oda=False).personalise()
    _, resp = card.qpboc(100, ttq=OFFLINE_TTQ)
    assert order(resp) == ONLINE_TEMPLATE_TAGS
    assert objects(resp)[0x82][0] & 0x61 == 0  # no SDA/DDA/CDA advertised without certificates


def test_qpboc_reader_without_qpboc_support_gets_6985(debit_card):
    debit_card.select("contactless")
    resp = debit_card.gpo(debit_card.terminal_values(100, ttq=h("10000000")))
    assert resp.sw == 0x6985
    debit_card.select("contact")
    assert debit_card.get_data(0x9F36).data == h("9F36020000")  # refused before the ATC moved


@pytest.mark.parametrize(("apdu", "sw"), [
    ("80A800000482020000", 0x6A80),       # template 82 instead of 83
    ("80A80000038301FF", 0x6700),         # PDOL data of the wrong length
    ("80A8000003830200", 0x6700),         # TLV length beyond the data
    ("80A8010002830000", 0x6A86),         # P1 P2
    ("80A8000000", 0x6700),               # no data
])
def test_gpo_malformed(debit_card, apdu, sw):
    debit_card.select("contactless")
    assert debit_card.send(apdu).sw == sw
    assert debit_card.data["atc"] == 0


def test_gpo_twice_and_bad_amount(debit_card):
    debit_card.qpboc(100)
    assert debit_card.gpo(debit_card.terminal_values(100)).sw == 0x6985
    debit_card.select("contactless")
    values = debit_card.terminal_values(100) | {0x9F02: h("00000000001A")}
    assert debit_card.gpo(values).sw == 0x6A80


def test_blocked_application_declines_and_unblocks(debit_card):
    card = debit_card
    p = card.profile
    _, resp = card.qpboc(100, ttq=ONLINE_TTQ)
    got = objects(resp)
    assert card.script(0x84, 0x1E, 0, 0, b"", got[0x9F36], got[0x9F26]).sw == 0x9000
    _, resp = card.qpboc(100, ttq=OFFLINE_TTQ)
    got = objects(resp)
    assert got[0x9F27] == b"\x00"  # blocked: AAC, even with enough e-cash
    assert card.balance() == p.ecash.balance
    # contact: a TC request gets an AAC ...
    card.select("contact")
    assert card.send("80A8000002830000").sw == 0x9000
    assert tlv.decode_one(card.gen_ac(0x40, card.terminal_values(100), p.cdol1).data).value[0] == 0x00
    assert card.script(0x84, 0x18, 0, 0, b"", h("0000"), bytes(8)).sw == 0x6985  # no ARQC, no script
    # ... an ARQC request an ARQC, the issuer unblocks in that transaction, and the 2nd AC is a TC
    values, _, atc, arqc = contact_online(card)
    assert card.script(0x84, 0x18, 0, 0, b"", atc, arqc).sw == 0x9000
    assert tlv.decode_one(card.gen_ac(0x40, values, p.cdol2).data).value[0] == 0x40
    assert not card.data["blocked"]


def test_application_unblock_script(debit_card):
    _, resp = debit_card.qpboc(100)
    got = objects(resp)
    atc, arqc = got[0x9F36], got[0x9F26]
    assert debit_card.script(0x84, 0x1E, 0, 0, b"", atc, arqc).sw == 0x9000
    assert debit_card.data["blocked"]
    assert debit_card.script(0x84, 0x18, 0, 0, b"", atc, arqc).sw == 0x9000
    assert not debit_card.data["blocked"]


# -- contact two-pass, issuer authentication, e-cash load --------------------------------------------------


def contact_online(card, *, arpc_ok=True, amount=100, requested=0x80):
    """SELECT, GPO, READ RECORDs, 1st GENERATE AC (ARQC) and EXTERNAL AUTHENTICATE."""
    p = card.profile
    card.select("contact")
    resp = card.send("80A8000002830000")
    assert resp.sw == 0x9000
    fmt1 = tlv.decode_one(resp.data)
    assert fmt1.tag == 0x80
    aip, afl = fmt1.value[:2], fmt1.value[2:]
    assert aip == p.aip
    assert afl == h("0801020110010200")
    for i in range(0, len(afl), 4):
        for rec in range(afl[i + 1], afl[i + 2] + 1):
            assert card.send(CommandApdu(0x00, 0xB2, rec, afl[i] | 4, le=256)).sw == 0x9000
    values = card.terminal_values(amount)
    resp = card.gen_ac(requested, values, p.cdol1)
    assert resp.sw == 0x9000
    body = tlv.decode_one(resp.data).value
    cid, atc, ac, iad = body[0], body[1:3], body[3:11], body[11:]
    assert cid == 0x80
    assert card.verify_ac(values, ac, atc, iad, aip)
    arpc = card.arpc(ac, atc)
    if not arpc_ok:
        arpc = bytes(8)
    sw = card.send(CommandApdu(0x00, 0x82, 0x00, 0x00, arpc + b"00")).sw
    assert sw == (0x9000 if arpc_ok else 0x6300)
    return values, aip, atc, ac


@pytest.mark.parametrize("fixture", ["debit_card", "credit_card"])
def test_contact_two_pass_with_arpc_and_ecash_load(request, fixture):
    card = request.getfixturevalue(fixture)
    p = card.profile
    values, aip, atc, arqc = contact_online(card)
    resp = card.gen_ac(0x40, values, p.cdol2)
    body = tlv.decode_one(resp.data).value
    assert body[0] == 0x40
    assert body[1:3] == atc
    iad = emv.parse_iad(body[11:])
    assert iad.cvr[1] & 0xC0 == 0x40
    assert iad.cvr[1] & 0x30 == 0x20
    assert card.verify_ac(values, body[3:11], atc, body[11:], aip)
    # e-cash load: PUT DATA 9F79 with the new total, MAC over header || ATC || ARQC || data
    new_total = p.ecash.balance + 5000
    resp = card.script(0x04, 0xDA, 0x9F, 0x79, cps.amount_n12(new_total), atc, arqc)
    assert resp.sw == 0x9000
    assert card.get_data(0x9F79).data == h("9F7906") + cps.amount_n12(new_total)
    assert card.get_data(0x9F13).data == h("9F1302") + atc  # last online ATC
    load = card.send("00B2016400")
    assert load.sw == 0x9000
    assert load.data[:2] == h("9F79")
    assert load.data[2:8] == cps.amount_n12(p.ecash.balance)
    assert load.data[8:14] == cps.amount_n12(new_total)
    tail = dol.split_dol_data(p.load_log_format, load.data[14:])
    assert tail[0x9F36] == atc
    assert tail[0x9A] == h("260115")
    # the balance survives a power cycle; the script does not (session-bound)
    card.power("contact")
    card.select("contact")
    assert card.balance() == new_total
    assert card.script(0x04, 0xDA, 0x9F, 0x79, cps.amount_n12(1), atc, arqc).sw == 0x6985


def test_bad_script_mac_is_refused_and_leaves_the_balance(debit_card):
    p = debit_card.profile
    _, _, atc, arqc = contact_online(debit_card)
    resp = debit_card.script(0x04, 0xDA, 0x9F, 0x79, cps.amount_n12(p.ecash.balance + 100), atc, arqc, corrupt=True)
    assert resp.sw == 0x6988
    assert debit_card.balance() == p.ecash.balance
    assert debit_card.send("00B2016400").sw == 0x6A83  # no load log record
    assert debit_card.data["flags"]["script_failed"]
    # a MAC for another ARQC is just as wrong
    assert debit_card.script(0x04, 0xDA, 0x9F, 0x79, cps.amount_n12(1), atc, bytes(8)).sw == 0x6988
    # over the balance limit: 6985, nothing changes
    over = p.ecash.balance_limit + 1
    assert debit_card.script(0x04, 0xDA, 0x9F, 0x79, cps.amount_n12(over), atc, arqc).sw == 0x6985
    assert debit_card.balance() == p.ecash.balance
    # other e-cash limits through scripts
    assert debit_card.script(0x04, 0xDA, 0x9F, 0x78, cps.amount_n12(777), atc, arqc).sw == 0x9000
    assert debit_card.get_data(0x9F78).data == h("9F7806") + cps.amount_n12(777)
    assert debit_card.script(0x04, 0xDA, 0x9F, 0x77, cps.amount_n12(1), atc, arqc).sw == 0x6985
    assert debit_card.script(0x04, 0xDA, 0x9F, 0x6D, cps.amount_n12(2000), atc, arqc).sw == 0x9000
    assert debit_card.script(0x04, 0xDA, 0x9F, 0x36, h("0001"), atc, arqc).sw == 0x6A88
    assert debit_card.send(CommandApdu(0x04, 0xDA, 0x9F, 0x79, bytes(8))).sw == 0x6700
    assert debit_card.send(CommandApdu(0x00, 0xDA, 0x9F, 0x79, bytes(10))).sw == 0x6982
    # the next transaction reports the failed script in its CVR (byte 3 b4) with 2 good ones counted
    _, resp = debit_card.qpboc(100)
    assert emv.parse_iad(objects(resp)[0x9F10]).cvr[3] == 0x28


def test_qpboc_online_then_ecash_load_script(debit_card):
    """An online qPBOC ARQC also opens the script window (e.g. an auto-load in the same tap)."""
    _, resp = debit_card.qpboc(100, ttq=ONLINE_TTQ)
    got = objects(resp)
    new_total = debit_card.profile.ecash.balance + 1
    resp = debit_card.script(0x04, 0xDA, 0x9F, 0x79, cps.amount_n12(new_total), got[0x9F36], got[0x9F26])
    assert resp.sw == 0x9000
    assert debit_card.balance() == new_total


def test_issuer_authentication_failure(debit_card):
    p = debit_card.profile
    values, _, _, _ = contact_online(debit_card, arpc_ok=False)
    # EXTERNAL AUTHENTICATE runs once per transaction
    assert debit_card.send(CommandApdu(0x00, 0x82, 0x00, 0x00, bytes(10))).sw == 0x6985
    resp = debit_card.gen_ac(0x40, values, p.cdol2)
    body = tlv.decode_one(resp.data).value
    assert body[0] == 0x00  # AAC
    cvr = emv.parse_iad(body[11:]).cvr
    assert cvr[1] & 0x08
    assert cvr[2] & 0x08
    # next transaction: asking for a TC goes online because the last issuer authentication failed
    debit_card.select("contact")
    debit_card.send("80A8000002830000")
    resp = debit_card.gen_ac(0x40, debit_card.terminal_values(100), p.cdol1)
    assert tlv.decode_one(resp.data).value[0] == 0x80


def test_contact_card_risk_management(credit_card):
    p = credit_card.profile  # lower consecutive offline limit 2, upper 4
    card = credit_card
    # a new card (never online) turns a TC request into an ARQC
    card.select("contact")
    card.send("80A8000002830000")
    body = tlv.decode_one(card.gen_ac(0x40, card.terminal_values(100), p.cdol1).data).value
    assert body[0] == 0x80
    assert emv.parse_iad(body[11:]).cvr[2] & 0x10
    # complete one online transaction, then offline TCs until the lower limit
    values, _, _, _ = contact_online(card)
    assert tlv.decode_one(card.gen_ac(0x40, values, p.cdol2).data).value[0] == 0x40
    cids = []
    for _ in range(3):
        card.select("contact")
        card.send("80A8000002830000")
        cids.append(tlv.decode_one(card.gen_ac(0x40, card.terminal_values(100), p.cdol1).data).value[0])
    assert cids == [0x40, 0x40, 0x80]
    # unable to go online (ARC Z3): offline TC while below the upper limit (4), then AAC
    values = card.terminal_values(100) | {0x8A: b"Z3"}
    assert tlv.decode_one(card.gen_ac(0x40, values, p.cdol2).data).value[0] == 0x40
    second_ac = []
    for _ in range(2):
        card.select("contact")
        card.send("80A8000002830000")
        assert tlv.decode_one(card.gen_ac(0x80, card.terminal_values(100), p.cdol1).data).value[0] == 0x80
        body = tlv.decode_one(card.gen_ac(0x40, values, p.cdol2).data).value
        second_ac.append(body[0])
    assert second_ac == [0x40, 0x00]  # offline count 3 -> 4, then the upper limit is reached
    assert emv.parse_iad(body[11:]).cvr[1] & 0x01  # unable to go online


@pytest.mark.parametrize(("apdu", "sw"), [
    ("80AE400000", 0x6985),                        # GENERATE AC before GPO
    ("0082000000", 0x6700),                        # EXTERNAL AUTHENTICATE without data
    ("00820000" + "0A" + "00" * 10, 0x6985),       # EXTERNAL AUTHENTICATE out of sequence
    ("00B2010800", 0x6A86),                        # READ RECORD P2 not SFI<<3|4
    ("00B2000C00", 0x6A86),                        # record 0
    ("00B2030C00", 0x6A83),                        # SFI 1 has two records
    ("00B2011C00", 0x6A82),                        # no SFI 3
    ("00B20B5C00", 0x6A83),                        # log record 11 does not exist
    ("80CA9F4200", 0x6A88),                        # GET DATA of an unknown tag
    ("80CA9F4F00", 0x9000),                        # log format
    ("80CADF4F00", 0x9000),                        # load log format
    ("00CA9F3600", 0x9000),                        # GET DATA with CLA 00
    ("80B2010C00", 0x6E00),                        # READ RECORD in the proprietary class
    ("00A8000002830000", 0x6E00),                  # GPO in the interindustry class
    ("80500000", 0x6D00),                          # an e-purse INITIALIZE: not this applet
    ("B0CA9F3600", 0x6E00),                        # unknown class
    ("841E000000", 0x6700),                        # APPLICATION BLOCK without MAC
    ("841E000004AABBCCDD", 0x6985),                # ... with a MAC but no online transaction
    ("801E000004AABBCCDD", 0x6982),                # no secure messaging
    ("00200081080000000000000000", 0x6A86),        # VERIFY P2 other than 80
])
def test_status_words(debit_card, apdu, sw):
    debit_card.select("contact")
    assert debit_card.send(apdu).sw == sw


def test_random_apdus_never_fault(debit_card):
    rng = random.Random(5)
    debit_card.select("contactless")
    for _ in range(600):
        cla = rng.choice([0x00, 0x80, 0x84, 0x04, 0x0C, rng.randrange(256)])
        ins = rng.choice([0xA8, 0xAE, 0xB2, 0x20, 0x82, 0xCA, 0xDA, 0x1E, 0x18, 0x24, rng.randrange(256)])
        data = rng.randbytes(rng.choice([0, 1, 2, 4, 8, 10, 12, 20, 35, 60]))
        raw = bytes([cla, ins, rng.randrange(256), rng.randrange(256)])
        if data:
            raw += bytes([len(data)]) + data
        if cla == 0xFF or (ins & 0xF0) in (0x60, 0x90):
            continue
        debit_card.se.transmit(raw)
        if rng.random() < 0.05:
            debit_card.select(rng.choice(["contact", "contactless"]))
    assert debit_card.se.faults == []


# -- PIN -------------------------------------------------------------------------------------------------------


def test_pin_try_counter_blocks_and_the_issuer_unblocks(debit_card):
    p = debit_card.profile
    card = debit_card
    card.select("contact")
    good = cps.pin_block(p.pin.offline_pin)
    bad = cps.pin_block("000000")
    assert card.send(CommandApdu(0x00, 0x20, 0x00, 0x80)).sw == 0x63C3
    assert card.send(CommandApdu(0x00, 0x20, 0x00, 0x80, bad)).sw == 0x63C2
    assert card.send(CommandApdu(0x00, 0x20, 0x00, 0x80, good)).sw == 0x9000
    assert card.get_data(0x9F17).data == h("9F170103")
    assert [card.send(CommandApdu(0x00, 0x20, 0x00, 0x80, bad)).sw for _ in range(3)] == [0x63C2, 0x63C1, 0x63C0]
    card.power("contact")  # the counter is persistent
    card.select("contact")
    assert card.send(CommandApdu(0x00, 0x20, 0x00, 0x80, good)).sw == 0x6983
    assert card.send(CommandApdu(0x00, 0x20, 0x00, 0x80, good[:7])).sw == 0x6700
    assert card.send(CommandApdu(0x00, 0x20, 0x00, 0x80)).sw == 0x6983
    # PIN try limit exceeded: the card asks to go online; the issuer resets the counter by script
    _, _, atc, arqc = contact_online(card)
    assert card.script(0x84, 0x24, 0x00, 0x00, b"", atc, arqc).sw == 0x9000
    assert card.send(CommandApdu(0x00, 0x20, 0x00, 0x80, good)).sw == 0x9000
    # and changes it (new PIN enciphered under the ENC session key [paylab])
    enc_sk = emv.derive_pboc_session_key(card.card_keys.mk_enc, atc, "sm4")
    new_block = cps.pin_block("8642")
    enciphered = ecb_encrypt("sm4", enc_sk, new_block + b"\x80" + bytes(7))
    assert card.script(0x84, 0x24, 0x00, 0x01, enciphered, atc, arqc).sw == 0x9000
    assert card.send(CommandApdu(0x00, 0x20, 0x00, 0x80, good)).sw == 0x63C2
    assert card.send(CommandApdu(0x00, 0x20, 0x00, 0x80, new_block)).sw == 0x9000


def test_card_without_offline_pin(tmp_path, ecash_only):
    card = Card(tmp_path, ecash_only).personalise()
    card.select("contact")
    assert card.send(CommandApdu(0x00, 0x20, 0x00, 0x80, cps.pin_block("1234"))).sw == 0x6A88
    assert card.get_data(0x9F17).sw == 0x6A88


# -- ATC ---------------------------------------------------------------------------------------------------


def test_atc_increments_on_every_gpo_and_persists(tmp_path, debit):
    card = Card(tmp_path, debit).personalise()
    atcs = []
    for i in range(3):
        _, resp = card.qpboc(100 + i, ttq=ONLINE_TTQ)
        atcs.append(objects(resp)[0x9F36])
    card.select("contact")
    card.send("80A8000002830000")
    assert atcs == [h("0001"), h("0002"), h("0003")]
    assert card.get_data(0x9F36).data == h("9F36020004")
    # a new SecureElement over the same image file (a real power loss) sees the same ATC
    again = SecureElement(CardImage(card.se.image.path), ESE, card.se.catalog)
    again.power_on("contactless")
    again.transmit(h("00A4040008") + debit.aid)
    assert again.transmit(h("80CA9F3600")) == h("9F360200049000")


def test_tear_after_the_response_never_reuses_an_atc(debit_card):
    card = debit_card
    card.select("contactless")
    values = card.terminal_values(100)
    pdol_data = dol.build_dol_data(card.profile.pdol, values, kernel=KERNEL)
    gpo = CommandApdu(0x80, 0xA8, 0, 0, dol.gpo_command_data(pdol_data), le=256).encode()

    def hook(point, size):
        return 0 if point == "apdu.after" else None

    card.se.set_tear_hook(hook)
    with pytest.raises(PowerLost):
        card.se.transmit(gpo)
    card.se.set_tear_hook(None)
    _, resp = card.qpboc(100)
    assert objects(resp)[0x9F36] == h("0002")


def test_atc_at_its_maximum_blocks_the_application(debit_card):
    card = debit_card
    card.data["atc"] = 0xFFFE
    card.se.image.commit()
    _, resp = card.qpboc(100)
    assert objects(resp)[0x9F36] == h("FFFF")
    _, resp = card.qpboc(100)
    assert resp.sw == 0x6985
    assert card.data["blocked"]
    assert card.data["atc"] == 0xFFFF


# -- form factors -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("form_factor", [SIM, MICROSD, ESE], ids=lambda ff: ff.name)
def test_qpboc_online_on_every_form_factor(tmp_path, credit, form_factor):
    card = Card(tmp_path, credit, form_factor=form_factor).personalise()
    values, resp = card.qpboc(2500, ttq=ONLINE_TTQ)  # SIM is T=0: the exchanger follows 61xx
    got = objects(resp)
    assert card.verify_ac(values, got[0x9F26], got[0x9F36], got[0x9F10], got[0x82])


def test_package_descriptor():
    assert pboc.PACKAGE.package_aid == h("A0000003335041594C4142")
    assert pboc.PACKAGE.modules == {pboc.MODULE_AID: pboc.PbocApplet}
    assert pboc.PbocApplet.implementation == "paylab.pboc"
    assert ResponseApdu.decode(b"\x90\x00").ok


# -- end to end through the GlobalPlatform security domain ---------------------------------------------------


def test_load_install_personalise_through_the_isd_and_pay(tmp_path, credit):
    """A TSM's path on a fabricated card: SCP03 (C-MAC + C-DECRYPTION) to the ISD, LOAD of the PBOC
    package, INSTALL [for install and make selectable] (contactless activated), INSTALL [for
    personalization], STORE DATA with DEK-encrypted DGIs (the SD decrypts them DGI by DGI), then a tap."""
    image = CardImage(tmp_path / "ese.card", durable=False)
    fabricate(image, ESE)
    se = SecureElement(image, ESE, default_catalog(), seed=3)
    se.power_on()
    keys = StaticKeys.gp_default_test_keys()
    isd = se.registry.isd().aid

    def send(raw):
        return transmit_with_chaining(se.transmit, CommandApdu.decode(raw))

    assert send(CommandApdu(0x00, 0xA4, 0x04, 0x00, isd, 256).encode()).sw == 0x9000
    challenge = h("0102030405060708")
    init = send(Scp03Session.host_initialize_update(keys, challenge))
    session = Scp03Session.host_from_init_update_response(keys, challenge, init.data, 0x03, aid=isd)
    assert send(session.external_authenticate()).sw == 0x9000

    def secure(cmd):
        response = send(session.wrap(cmd.encode()))
        return ResponseApdu.decode(session.unwrap_response(response.encode()))

    load_file = build_load_file(pboc.PACKAGE)
    assert secure(gp.InstallForLoad(pboc.PACKAGE_AID, isd).command()).sw == 0x9000
    assert all(secure(cmd).sw == 0x9000 for cmd in gp.load_commands(load_file))
    contactless_on = gp.InstallParameters(b"", h("A003810101")).encode()
    install = gp.InstallForInstall(pboc.PACKAGE_AID, pboc.MODULE_AID, credit.aid, b"\x00", contactless_on)
    assert secure(install.command()).sw == 0x9000
    assert secure(gp.InstallForPersonalization(credit.aid).command()).sw == 0x9000
    chain = chain_for(credit)
    for cmd in cps.store_data_commands(cps.prepare_pboc(credit, oda=chain)):
        if cmd.p1 & 0x60:
            (dgi, value), = cps.decode_dgis(cmd.data)
            cmd = replace(cmd, data=cps.encode_dgi(dgi, cbc_encrypt("aes", keys.dek, value)))
        assert secure(cmd).sw == 0x9000, cmd.hex()[:16]
    entry = se.registry.get(credit.aid)
    assert entry.life_cycle == APP_PERSONALIZED
    assert se.applet_data(credit.aid)["keys"]["ac"] == credit.card_keys().mk_ac  # decrypted by the SD

    se.power_on("contactless")
    assert send(CommandApdu(0x00, 0xA4, 0x04, 0x00, credit.aid, 256).encode()).sw == 0x9000
    values = terminal_values(4200, ttq=OFFLINE_TTQ)
    gpo = CommandApdu(0x80, 0xA8, 0, 0, dol.gpo_command_data(dol.build_dol_data(credit.pdol, values)), 256)
    got = objects(send(gpo.encode()))
    assert got[0x9F27] == b"\x40"
    assert got[0x9F5D] == cps.amount_n12(credit.ecash.balance - 4200)
    assert issuer_verifies(credit, values, got[0x9F26], got[0x9F36], got[0x9F10], got[0x82])
    assert se.faults == []
