"""qPBOC over the simulated NFC field: an eSE issued by the TSM path, presented through NfcCardEmulator,
read by NfcReader (real nfcpy UDP on loopback). Chaining both ways, S(WTX) for a slow card, a phone
lifted mid-APDU."""

import threading
import time

import pytest

from paylab.drivers.errors import CardRemoved
from paylab.drivers.nfc import NfcCardEmulator, NfcReader, free_udp_path
from paylab.drivers.se.form_factor import ESE
from paylab.lab import profiles
from paylab.lab.issuance import issued_se, reader_transmit
from paylab.lab.protocol import cps, dol, tlv
from paylab.lab.protocol.apdu import CommandApdu, ResponseApdu
from paylab.lab.protocol.crypto import emv

h = bytes.fromhex
PPSE = b"2PAY.SYS.DDF01"
ONLINE_TTQ = h("36800000")
OFFLINE_TTQ = h("36000080")


@pytest.fixture(scope="module")
def issued(tmp_path_factory):
    profile = profiles.load_bundled("pboc_debit_ecash_sm4")
    se = issued_se(tmp_path_factory.mktemp("nfc") / "ese.card", ESE, profile,
                   oda=cps.generate_oda_chain(profile, seed_or_rng=7), seed=5)
    return se, profile


class WrappedCard:
    """An ApduCard around the eSE: optionally slow or blocking on one instruction."""

    def __init__(self, se, *, slow_ins=None, delay=0.0, block_ins=None):
        self.se = se
        self.slow_ins, self.delay, self.block_ins = slow_ins, delay, block_ins
        self.entered = threading.Event()
        self.release = threading.Event()
        self.powered_off = threading.Event()

    @property
    def atr(self):
        return self.se.atr

    def power_on(self, interface="contact"):
        self.powered_off.clear()
        return self.se.power_on(interface)

    def power_off(self):
        self.se.power_off()
        self.powered_off.set()

    def transmit(self, raw, *, interface=None):
        if raw[1] == self.block_ins:
            self.entered.set()
            self.release.wait(10)
        if raw[1] == self.slow_ins:
            time.sleep(self.delay)
        return self.se.transmit(raw, interface=interface)


def qpboc(transmit, profile, amount, ttq):
    """PPSE, SELECT, GPO, READ RECORD (per AFL, at most 2), GET DATA 9F79 / 9F36 / 9F13: 7 APDUs."""
    send = reader_transmit(transmit)
    count = 0

    def apdu(cmd):
        nonlocal count
        count += 1
        response = ResponseApdu.decode(send(cmd.encode()))
        assert response.sw == 0x9000, f"{cmd.ins:02X} -> {response.sw:04X}"
        return response.data

    ppse = apdu(CommandApdu(0x00, 0xA4, 0x04, 0x00, PPSE, 256))
    aid = tlv.find(tlv.decode(ppse), 0x4F).value
    assert aid == profile.aid
    fci = apdu(CommandApdu(0x00, 0xA4, 0x04, 0x00, aid, 256))
    pdol = tlv.find(tlv.decode(fci), 0x9F38).value
    values = {0x9F66: ttq, 0x9F02: cps.amount_n12(amount), 0x9F03: bytes(6), 0x9F1A: h("0156"), 0x95: bytes(5),
              0x5F2A: h("0156"), 0x9A: h("260115"), 0x9C: b"\x00", 0x9F37: h("11223344"), 0xDF69: b"\x01"}
    gpo = CommandApdu(0x80, 0xA8, 0, 0, dol.gpo_command_data(dol.build_dol_data(pdol, values, kernel="A000000333")),
                      256)
    card = tlv.to_dict(tlv.decode(apdu(gpo)))
    afl = card.get(0x94, h("08010100"))                 # online answers carry no AFL: read SFI 1 record 1
    records = []
    for i in range(0, len(afl), 4):
        sfi, first, last = afl[i] >> 3, afl[i + 1], afl[i + 2]
        for number in range(first, last + 1):
            if len(records) < 2:
                records.append(apdu(CommandApdu(0x00, 0xB2, number, sfi << 3 | 4, le=256)))
    for tag in (0x9F79, 0x9F36, 0x9F13)[:max(0, 7 - count)]:
        apdu(CommandApdu(0x80, 0xCA, tag >> 8, tag & 0xFF, le=256))
    return values, card, records, count


@pytest.fixture
def path():
    return free_udp_path()


def test_qpboc_online_tap_over_nfc(issued, path):
    se, profile = issued
    with NfcCardEmulator(path, name="handset") as emulator, NfcReader(path, name="pos") as reader:
        emulator.present(se)
        reader.wait_for_card(5)
        reader.power_on()
        values, card, records, count = qpboc(reader.transmit, profile, 100, ONLINE_TTQ)
        assert count == 7
        assert emulator.apdu_count == 7
        iad = emv.parse_iad(card[0x9F10])
        data = emv.ac_input(values | {0x82: card[0x82], 0x9F36: card[0x9F36]}, iad.cvr)
        assert emv.verify_arqc(profile.issuer_keys.imk_ac, profile.pan, profile.psn, card[0x9F36], data,
                               card[0x9F26], method=emv.session_method_for_cvn(iad.cvn), alg="sm4")
        assert records[0][0] == 0x70
        assert se.interface == "contactless"


def test_chaining_both_ways_with_small_frames(issued, path):
    se, profile = issued
    # FSC 16: the reader chains every command over 13 bytes; responses go out 16 bytes per I-block
    with NfcCardEmulator(path, fsci=0, max_response_inf=16) as emulator, NfcReader(path) as reader:
        emulator.present(se)
        reader.power_on()
        assert reader.ats.fsc == 16
        _, card, records, _ = qpboc(reader.transmit, profile, 1, OFFLINE_TTQ)
        assert card[0x9F27] == b"\x40"                         # offline TC, with its fDDA signature
        assert len(card[0x9F4B]) > 16
        assert all(record[0] == 0x70 for record in records)
        assert emulator.events.chained_in >= 3                 # SELECT AID and GPO are longer than 13 bytes
        assert emulator.events.chained_out >= 10
        assert emulator.events.bad_frames == 0


def test_slow_card_keeps_the_link_with_wtx(issued, path):
    se, profile = issued
    slow = WrappedCard(se, slow_ins=0xA8, delay=0.3)          # GPO takes 0.3 s; FWT is 77 ms (FWI 8)
    with NfcCardEmulator(path) as emulator, NfcReader(path) as reader:
        emulator.present(slow)
        reader.power_on()
        _, card, _, count = qpboc(reader.transmit, profile, 100, ONLINE_TTQ)
        assert count == 7                                       # APDUs after the slow one stay in sync
        assert 0x9F26 in card
        assert emulator.events.wtx_sent >= 1
        assert emulator.events.retransmissions == 0
        assert reader.transmit(CommandApdu(0x80, 0xCA, 0x9F, 0x36, le=256).encode())[-2:] == h("9000")


def test_phone_lifted_mid_apdu(issued, path):
    se, profile = issued
    card = WrappedCard(se, block_ins=0xA8)                     # GPO hangs until released
    with NfcCardEmulator(path) as emulator, NfcReader(path) as reader:
        emulator.present(card)
        reader.power_on()

        lifted = []

        def lift():
            if card.entered.wait(10):
                time.sleep(0.1)                                 # a few S(WTX) go by first
                lifted.append(time.monotonic())
                emulator.withdraw()

        lifter = threading.Thread(target=lift)
        lifter.start()
        try:
            with pytest.raises(CardRemoved) as info:
                qpboc(reader.transmit, profile, 100, ONLINE_TTQ)
            removed_at = time.monotonic()
        finally:
            card.release.set()
            lifter.join(10)
        assert "C-APDU 80A80000" in str(info.value)
        assert removed_at - lifted[0] < 2.0                    # ~0.3-0.5 s: the reader's FWT retries
        assert card.powered_off.wait(5)                        # the card side powered off
        assert emulator.events.withdrawn_mid_apdu == 1
        assert emulator.events.wtx_sent >= 1
        # the next tap works and starts a fresh transaction
        emulator.present(se)
        reader.wait_for_card(5)
        reader.power_on()
        _, card_objects, _, _ = qpboc(reader.transmit, profile, 100, ONLINE_TTQ)
        assert 0x9F26 in card_objects
