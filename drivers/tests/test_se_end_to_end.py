"""From a blank card to a tap: the TSM path over SCP03 on every form factor, then qPBOC purchases.

Blank card (ISD with TEST keys) -> SCP03 to the ISD -> create the bank's SSD -> hand its keys over
(PUT KEY over the SSD's own channel: the ISD keys no longer open it) -> load the PBOC package via
the SSD -> install and make selectable -> personalise with STORE DATA (DEK-encrypted key DGIs) ->
activate contactless -> the PPSE lists it -> qPBOC online (ARQC verified with the protocol core's
issuer code) and offline (TC, balance debited, fDDA verified through the test CA chain).
Everything goes through APDUs (``SecureElement.transmit``); T=0 (SIM) responses go through GET RESPONSE.
"""

from datetime import date

import pytest

from paylab.drivers.se.catalog_default import default_catalog
from paylab.drivers.se.factory import fabricate
from paylab.drivers.se.form_factor import ESE, MICROSD, SIM
from paylab.drivers.se.image import CardImage
from paylab.drivers.se.runtime import SecureElement
from paylab.lab import profiles
from paylab.lab.gp_client import CardCommandFailed, GpClient
from paylab.lab.issuance import (
    BANK_SSD_AID,
    ISD_TEST_KEYS,
    SSD_FIRST_TEST_KEYS,
    SSD_TEST_KEYS,
    issue_pboc,
    reader_transmit,
)
from paylab.lab.protocol import cps, dol, oda, tlv
from paylab.lab.protocol.apdu import CommandApdu, ResponseApdu
from paylab.lab.protocol.crypto import emv

h = bytes.fromhex
TODAY = date(2026, 1, 15)
PPSE = b"2PAY.SYS.DDF01"
BANK_SSD = BANK_SSD_AID
ISD_KEYS = ISD_TEST_KEYS                 # TEST KEYS (GP default)
SEI_TSM_SSD_KEYS = SSD_FIRST_TEST_KEYS   # TEST KEYS the SEI-TSM sets first
SP_TSM_SSD_KEYS = SSD_TEST_KEYS          # TEST KEYS after handover
ONLINE_TTQ = h("36800000")
OFFLINE_TTQ = h("36000080")
_CHAINS: dict[str, object] = {}


def transport(se, interface="contact"):
    """The card as a reader sees it: T=0 response recovery (61xx / 6Cxx) handled like a PC/SC stack."""
    return reader_transmit(lambda c: se.transmit(c, interface=interface))


def issue_card(tmp_path, form_factor, profile_name):
    """The TSM path of :func:`paylab.lab.issuance.issue_pboc`, then proof of the key handover."""
    profile = profiles.load_bundled(profile_name)
    if profile_name not in _CHAINS:
        _CHAINS[profile_name] = cps.generate_oda_chain(profile, seed_or_rng=11)
    chain = _CHAINS[profile_name]
    image = CardImage(tmp_path / f"{form_factor.name}.card")
    fabricate(image, form_factor)
    se = SecureElement(image, form_factor, default_catalog(), seed=3)
    se.power_on()
    steps = issue_pboc(se.transmit, se.registry.isd().aid, profile, oda=chain)
    assert [step.name for step in steps][:3] == ["SCP03 to the ISD (SEI-TSM)", "create the bank's SSD with first keys",
                                                 "key handover: PUT KEY over the SSD's channel (SP-TSM)"]
    # after the handover the SEI-TSM's first keys no longer open the bank's SSD; the SP-TSM's do
    client = GpClient(transport(se))
    with pytest.raises(CardCommandFailed):
        client.open_secure_channel(BANK_SSD, SEI_TSM_SSD_KEYS)
    client.open_secure_channel(BANK_SSD, SP_TSM_SSD_KEYS)
    assert se.faults == []
    return se, profile, chain


def tap(se, profile, amount, ttq):
    """A qPBOC reader: PPSE, SELECT, GPO with the PDOL data; returns (terminal values, GPO objects)."""
    se.power_on("contactless")
    send = transport(se, "contactless")
    ppse = ResponseApdu.decode(send(CommandApdu(0x00, 0xA4, 0x04, 0x00, PPSE, 256).encode()))
    assert ppse.sw == 0x9000
    assert tlv.find(tlv.decode(ppse.data), 0x4F).value == profile.aid
    fci = ResponseApdu.decode(send(CommandApdu(0x00, 0xA4, 0x04, 0x00, profile.aid, 256).encode()))
    pdol = tlv.find(tlv.decode(fci.data), 0x9F38).value
    values = {0x9F66: ttq, 0x9F02: cps.amount_n12(amount), 0x9F03: bytes(6), 0x9F1A: h("0156"), 0x95: bytes(5),
              0x5F2A: h("0156"), 0x9A: h("260115"), 0x9C: b"\x00", 0x9F37: h("11223344"), 0xDF69: b"\x01"}
    gpo = CommandApdu(0x80, 0xA8, 0, 0, dol.gpo_command_data(dol.build_dol_data(pdol, values, kernel="A000000333")),
                      256)
    response = ResponseApdu.decode(send(gpo.encode()))
    assert response.sw == 0x9000, hex(response.sw)
    return values, tlv.to_dict(tlv.decode(response.data)), send


@pytest.mark.parametrize("form_factor", [SIM, MICROSD, ESE], ids=lambda f: f.name)
def test_blank_card_to_online_and_offline_qpboc(tmp_path, form_factor):
    se, profile, chain = issue_card(tmp_path, form_factor, "pboc_debit_ecash_sm4")
    registry = {e.aid: e for e in se.registry}
    assert registry[profile.aid].associated_sd == BANK_SSD
    assert registry[profile.aid].contactless_activated

    # online: the issuer recomputes the ARQC from IMK + PAN + PSN, method and algorithm from the IAD
    values, card, _ = tap(se, profile, 100, ONLINE_TTQ)
    assert 0x9F27 not in card
    iad = emv.parse_iad(card[0x9F10])
    data = emv.ac_input(values | {0x82: card[0x82], 0x9F36: card[0x9F36]}, iad.cvr)
    assert emv.alg_for_iad(iad) == "sm4"
    assert emv.verify_arqc(profile.issuer_keys.imk_ac, profile.pan, profile.psn, card[0x9F36], data, card[0x9F26],
                           method=emv.session_method_for_cvn(iad.cvn), alg="sm4")

    # offline e-cash: TC, balance debited, fDDA through the test CA -> issuer -> ICC chain
    balance = profile.ecash.balance
    values, card, send = tap(se, profile, 250, OFFLINE_TTQ)
    assert card[0x9F27] == b"\x40"
    assert card[0x9F5D] == cps.amount_n12(balance - 250)
    record = ResponseApdu.decode(send(CommandApdu(0x00, 0xB2, 1, (1 << 3) | 4, le=256).encode()))
    icc_key = chain.recover_icc_public_key(today=TODAY,
                                           static_data=oda.static_data_to_be_authenticated([(1, record.data)]))
    oda.verify_fdda(icc_key, card[0x9F4B], values[0x9F37], values[0x9F02], values[0x5F2A], card[0x9F69])
    # the balance survives a power cycle
    se.power_off()
    values, card, _ = tap(se, profile, 1, OFFLINE_TTQ)
    assert card[0x9F5D] == cps.amount_n12(balance - 251)
    assert se.faults == []


def test_issued_card_is_visible_to_get_status_through_the_bank_ssd(tmp_path):
    se, profile, _ = issue_card(tmp_path, ESE, "pboc_credit_ecash_3des")
    se.power_on()
    client = GpClient(transport(se)).open_secure_channel(BANK_SSD, SP_TSM_SSD_KEYS)
    apps = {entry.aid for entry in client.get_status(0x40)}
    assert profile.aid in apps
