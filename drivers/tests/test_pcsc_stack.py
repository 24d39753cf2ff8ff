"""The PC/SC driver over the real stack: pyscard → private pcscd → vsmartcard vpcd → emulated SE.

No mocks: every APDU crosses pcsc-lite's client library, the pcscd daemon and the vpcd driver's
TCP socket to :class:`VpcdCardBridge`. Timing bounds are generous (pcscd polls every 400 ms).
"""

from __future__ import annotations

import threading
import time

import pytest

from paylab.drivers.errors import CardRemoved, NoCard, ReaderUnavailable
from paylab.drivers.pcsc import PcscReader, VpcdCardBridge
from paylab.drivers.pcsc.reader import list_readers
from paylab.drivers.se.form_factor import ESE, MICROSD, SIM
from paylab.lab import profiles
from paylab.lab.issuance import issue_pboc
from paylab.lab.protocol import cps, dol, tlv
from paylab.lab.protocol.apdu import CommandApdu, ResponseApdu
from paylab.lab.protocol.trace import TraceRecord

h = bytes.fromhex
SELECT_ISD_SIM = h("00A4040008A000000003000000")
SELECT_ISD_GP = h("00A4040008A000000151000000")
PPSE = b"2PAY.SYS.DDF01"


class RecordingCard:
    """An ApduCard wrapper that records the raw APDUs reaching the card (after pcscd and vpcd)."""

    def __init__(self, inner, hold_on: bytes | None = None) -> None:
        self.inner = inner
        self.atr = inner.atr
        self.seen: list[bytes] = []
        self.hold_on = hold_on
        self.entered = threading.Event()
        self.release = threading.Event()

    def power_on(self, interface="contact"):
        return self.inner.power_on(interface)

    def power_off(self):
        self.inner.power_off()

    def transmit(self, raw, *, interface=None):
        self.seen.append(bytes(raw))
        if self.hold_on is not None and raw.startswith(self.hold_on):
            self.entered.set()
            self.release.wait(5)
        return self.inner.transmit(raw, interface=interface)


def test_insert_and_remove_events_are_seen(pcsc_card):
    entry = pcsc_card(form_factor=ESE, insert=False)
    reader = entry.reader
    assert not reader.card_present()
    entry.bridge.insert()
    events = reader.next_event(5)
    assert [e.kind for e in events] == ["inserted"]
    assert events[0].atr == ESE.atr
    assert events[0].reader == entry.slot.reader_name
    assert reader.card_present()
    entry.bridge.remove()
    assert [e.kind for e in reader.next_event(5)] == ["removed"]
    assert not reader.card_present()
    assert reader.next_event(0.1) == []
    entry.bridge.insert()
    assert next(reader.events(5)).kind == "inserted"


def test_t0_sim_card_recovers_61xx(pcsc_card):
    entry = pcsc_card(form_factor=SIM)
    reader = entry.reader
    records: list[TraceRecord] = []
    reader.add_tracer(records.append)
    assert reader.power_on() == SIM.atr
    assert reader.protocol == "T=0"
    response = ResponseApdu.decode(reader.transmit(SELECT_ISD_SIM))
    assert response.sw == 0x9000
    assert tlv.find(tlv.decode(response.data), 0x84).value == h("A000000003000000")
    # the card answered 61xx and the reader fetched the FCI with GET RESPONSE: two APDUs, one record
    assert entry.bridge.apdu_count == 2
    assert len(records) == 1
    assert records[0].transport == "pcsc"
    # GET DATA CPLC with too small an Le: the card says 6C2D, the reader resends with Le = 2D
    cplc = ResponseApdu.decode(reader.transmit(h("80CA9F7F05")))
    assert cplc.sw == 0x9000
    assert cplc.data[:3] == h("9F7F2A")
    assert entry.bridge.apdu_count == 4


def test_t1_ese_and_extended_apdu(pcsc_card, emulated_se):
    card = RecordingCard(emulated_se(ESE))
    entry = pcsc_card(card)
    reader = entry.reader
    assert reader.power_on() == ESE.atr
    assert reader.protocol == "T=1"
    response = ResponseApdu.decode(reader.transmit(SELECT_ISD_GP))
    assert response.sw == 0x9000                    # T=1: the FCI comes back directly
    assert entry.bridge.apdu_count == 1
    # an extended case-3 APDU (Lc = 0x012C) crosses pcscd and vpcd intact
    extended = CommandApdu(0x80, 0xCA, 0x00, 0x66, bytes(range(256)) + bytes(44), extended=True).encode()
    assert len(extended) == 4 + 3 + 300
    sw = ResponseApdu.decode(reader.transmit(extended)).sw
    assert card.seen[-1] == extended
    assert sw != 0x6700                              # not refused for its length: the eSE takes extended APDUs


def test_microsd_contactless_slot_passes_the_interface(pcsc_card):
    entry = pcsc_card(form_factor=MICROSD, contactless=True)
    assert entry.bridge.interface == "contactless"
    assert "CL" in entry.slot.reader_name
    entry.reader.power_on()
    assert entry.card.interface == "contactless"
    assert entry.reader.attributes().contactless


def test_issue_pboc_then_tap_ppse_select_gpo(pcsc_card):
    profile = profiles.load_bundled("pboc_debit_ecash_sm4")
    chain = cps.generate_oda_chain(profile, seed_or_rng=7)
    contact = pcsc_card(form_factor=ESE)
    contact.reader.power_on()
    steps = issue_pboc(contact.reader.transmit, h("A000000151000000"), profile, oda=chain)
    assert steps[-1].name == "activate contactless (CRS)"
    assert contact.bridge.errors == []
    card = contact.card
    contact.reader.power_off()
    contact.remove()

    tap = pcsc_card(card, contactless=True)
    reader = tap.reader
    reader.power_on()
    ppse = ResponseApdu.decode(reader.transmit(CommandApdu(0x00, 0xA4, 0x04, 0x00, PPSE, 256).encode()))
    assert ppse.sw == 0x9000
    assert tlv.find(tlv.decode(ppse.data), 0x4F).value == profile.aid
    fci = ResponseApdu.decode(reader.transmit(CommandApdu(0x00, 0xA4, 0x04, 0x00, profile.aid, 256).encode()))
    assert fci.sw == 0x9000
    pdol = tlv.find(tlv.decode(fci.data), 0x9F38).value
    values = {0x9F66: h("36800000"), 0x9F02: cps.amount_n12(100), 0x9F03: bytes(6), 0x9F1A: h("0156"),
              0x95: bytes(5), 0x5F2A: h("0156"), 0x9A: h("260115"), 0x9C: b"\x00", 0x9F37: h("11223344"),
              0xDF69: b"\x01"}
    gpo = CommandApdu(0x80, 0xA8, 0, 0, dol.gpo_command_data(dol.build_dol_data(pdol, values, kernel="A000000333")),
                      256)
    response = ResponseApdu.decode(reader.transmit(gpo.encode()))
    assert response.sw == 0x9000
    fields = tlv.to_dict(tlv.decode(response.data))
    assert 0x9F26 in fields       # ARQC (online qPBOC)
    assert 0x9F36 in fields       # ATC
    assert card.faults == []
    assert tap.bridge.errors == []


def test_card_removed_mid_transaction(pcsc_card, emulated_se):
    card = RecordingCard(emulated_se(ESE), hold_on=h("80CA9F7F"))
    entry = pcsc_card(card)
    reader = entry.reader
    reader.power_on()

    def pull() -> None:
        card.entered.wait(5)
        release = threading.Timer(0.2, card.release.set)   # the card finishes after the link is gone
        release.start()
        entry.bridge.remove()
        release.join(5)

    puller = threading.Thread(target=pull)
    puller.start()
    start = time.monotonic()
    with pytest.raises(CardRemoved) as caught:
        reader.transmit(h("80CA9F7F00"))
    puller.join(5)
    assert time.monotonic() - start < 5
    assert caught.value.resource == entry.slot.reader_name
    assert reader.wait_for_removal(5)
    with pytest.raises((CardRemoved, NoCard)):
        reader.transmit(SELECT_ISD_GP)
    with pytest.raises(NoCard):
        reader.power_on()


def test_pcscd_killed_then_restarted(pcscd, pcsc_card):
    entry = pcsc_card(form_factor=ESE)
    reader = entry.reader
    reader.power_on()
    assert ResponseApdu.decode(reader.transmit(SELECT_ISD_GP)).sw == 0x9000

    pcscd.kill()
    with pytest.raises(ReaderUnavailable) as caught:
        reader.transmit(SELECT_ISD_GP)
    assert caught.value.resource == entry.slot.reader_name
    with pytest.raises(ReaderUnavailable):
        reader.card_present()
    with pytest.raises(ReaderUnavailable):
        list_readers()

    pcscd.restart()
    assert entry.slot.reader_name in list_readers()
    reader.wait_for_card(5)                          # the bridge re-dialled by itself
    assert entry.bridge.connections == 2
    assert reader.power_on() == ESE.atr
    assert ResponseApdu.decode(reader.transmit(SELECT_ISD_GP)).sw == 0x9000


def test_attributes_name_and_unreported_fields(pcsc_card):
    entry = pcsc_card(form_factor=ESE, insert=False)
    attrs = entry.reader.attributes()          # no card: a direct connection to the reader
    assert attrs.name == entry.slot.reader_name
    assert attrs.kind == "pcsc"
    assert not attrs.contactless
    # vpcd reports none of vendor / IFD serial / IFD version: None rather than garbage
    assert (attrs.vendor, attrs.serial, attrs.firmware) == (None, None, None)
    entry.insert()
    entry.reader.power_on()
    assert entry.reader.attributes().name == entry.slot.reader_name


def test_bad_reader_pattern_names_the_readers_present(pcscd):
    with pytest.raises(ReaderUnavailable) as caught:
        PcscReader("no such reader*")
    message = str(caught.value)
    assert "no such reader*" in message
    assert pcscd.reader_names[0] in message


def test_reader_chosen_by_glob_and_regex(pcscd):
    contact = pcscd.slots[1].reader_name
    with PcscReader(contact) as exact, PcscReader(r"re:^paylab vpcd CL B 00 0[01]$") as by_regex:
        assert exact.name == contact
        assert by_regex.name == "paylab vpcd CL B 00 00"
    with PcscReader("paylab vpcd CL *", contactless=True) as by_glob:
        assert by_glob.name.startswith("paylab vpcd CL ")
        assert by_glob.contactless


def test_no_card_waits_are_bounded(pcsc_card):
    entry = pcsc_card(form_factor=SIM, insert=False)
    start = time.monotonic()
    with pytest.raises(NoCard):
        entry.reader.wait_for_card(0.3)
    assert time.monotonic() - start < 3
    with pytest.raises(NoCard):
        entry.reader.power_on()
    assert entry.reader.wait_for_removal(0.1)


def test_swap_card_between_insertions(pcsc_card, emulated_se):
    entry = pcsc_card(form_factor=SIM)
    assert entry.reader.power_on() == SIM.atr
    entry.reader.power_off()
    entry.remove()
    entry.bridge.swap(emulated_se(ESE))
    entry.insert()
    assert entry.reader.power_on() == ESE.atr
    assert entry.reader.protocol == "T=1"


def test_bridge_for_slot_rejects_bad_interface(pcscd):
    with pytest.raises(ValueError, match="interface"):
        VpcdCardBridge(object(), pcscd.slots[0].port, interface="nfc")  # type: ignore[arg-type]
