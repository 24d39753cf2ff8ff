"""NfcReader + NfcCardEmulator over nfcpy's real UDP pseudo-driver on loopback: activation, ATR,
no card, field off and re-tap, Type B, device errors, closing from another thread."""

import threading
import time

import nfc
import nfc.clf
import pytest

from paylab.drivers.errors import CardRemoved, FieldLost, NoCard, ReaderUnavailable
from paylab.drivers.nfc import NfcCardEmulator, NfcReader, free_udp_path, udp_patch
from paylab.drivers.protocols import CardEmulatorProtocol, CardReaderProtocol
from paylab.drivers.se.catalog_default import default_catalog
from paylab.drivers.se.factory import fabricate
from paylab.drivers.se.form_factor import ESE
from paylab.drivers.se.image import CardImage
from paylab.drivers.se.runtime import SecureElement
from paylab.lab.protocol.iso14443 import pcsc_atr_type_a

SELECT_PPSE = bytes.fromhex("00A404000E325041592E5359532E444446303100")  # SELECT PPSE


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


@pytest.fixture
def ese(tmp_path):
    image = CardImage(tmp_path / "ese.card")
    fabricate(image, ESE)
    return SecureElement(image, ESE, default_catalog(), seed=1)


@pytest.fixture
def path():
    return free_udp_path()


@pytest.fixture
def emulator(path):
    with NfcCardEmulator(path, name="handset") as emu:
        yield emu


@pytest.fixture
def reader(path):
    with NfcReader(path, name="pos-antenna") as rdr:
        yield rdr


def test_activation_synthesises_the_pcsc_atr_from_the_ats(emulator, reader, ese):
    assert isinstance(emulator, CardEmulatorProtocol)
    assert isinstance(reader, CardReaderProtocol)
    emulator.present(ese)
    assert emulator.presented
    reader.wait_for_card(5)
    atr = reader.power_on()
    assert atr == pcsc_atr_type_a(b"paylabSE")
    assert atr == ese.atr                       # same bytes as the eSE's contact ATR: 3B 88 80 01 "paylabSE"
    assert reader.protocol == "ISO14443-4A"
    assert (reader.ats.fsc, reader.ats.fwi) == (256, 8)
    assert wait_until(lambda: ese.powered)
    assert ese.interface == "contactless"
    response = reader.transmit(SELECT_PPSE)
    assert response[-2:] == b"\x90\x00"
    assert emulator.apdu_count == 1
    assert emulator.events.activations == 1
    assert udp_patch.is_applied()


def test_apdus_are_traced_on_both_sides(emulator, reader, ese):
    seen_reader, seen_card = [], []
    reader.add_tracer(seen_reader.append)
    emulator.add_tracer(seen_card.append)
    emulator.present(ese)
    reader.power_on()
    for _ in range(3):
        reader.transmit(SELECT_PPSE)
    assert len(seen_reader) == 3
    assert wait_until(lambda: len(seen_card) == 3)
    assert seen_reader[0].transport == "nfc"
    assert seen_card[0].transport == "nfc-ce"


def test_no_card_in_the_field(emulator, reader, path):
    with pytest.raises(NoCard) as info:
        reader.wait_for_card(0.3)
    assert info.value.resource == "pos-antenna"
    with pytest.raises(NoCard):
        reader.power_on()
    with pytest.raises(NoCard):
        reader.transmit(SELECT_PPSE)
    assert reader.card_present() is False
    assert reader.wait_for_removal(0.1) is True
    reader.power_off()                                   # no error without a card


def test_no_emulator_at_all():
    with NfcReader(free_udp_path()) as reader:
        start = time.monotonic()
        with pytest.raises(NoCard):
            reader.wait_for_card(0.2)
        assert time.monotonic() - start < 2.0


def test_field_off_powers_the_card_off_and_the_next_tap_works(emulator, reader, ese):
    emulator.present(ese)
    reader.power_on()
    assert reader.transmit(SELECT_PPSE)[-2:] == b"\x90\x00"
    reader.power_off()
    assert wait_until(lambda: emulator.events.field_lost == 1)
    assert isinstance(emulator.events.last_field_loss, FieldLost)
    assert isinstance(emulator.events.last_field_loss, CardRemoved)
    assert wait_until(lambda: not ese.powered)
    with pytest.raises(NoCard):
        reader.transmit(SELECT_PPSE)                      # field off: no active card until power_on
    reader.power_on()
    assert reader.transmit(SELECT_PPSE)[-2:] == b"\x90\x00"
    assert emulator.events.activations == 2
    assert emulator.presented


def test_presence_and_withdrawal_between_apdus(emulator, reader, ese):
    emulator.present(ese)
    reader.wait_for_card(5)
    reader.power_on()
    assert reader.card_present()
    assert reader.wait_for_removal(0.05) is False
    emulator.withdraw()
    emulator.withdraw()                                  # idempotent
    assert not emulator.presented
    assert reader.wait_for_removal(5) is True
    assert wait_until(lambda: not ese.powered)
    with pytest.raises(NoCard):
        reader.wait_for_card(0.2)
    emulator.present(ese)                                # tap again
    reader.wait_for_card(5)
    reader.power_on()
    assert reader.transmit(SELECT_PPSE)[-2:] == b"\x90\x00"


def test_type_b_in_simulation(path, ese):
    with NfcCardEmulator(path, technology="106B", uid=b"PAYB") as emulator, \
            NfcReader(path, technology="106B") as reader:
        emulator.present(ese)
        reader.wait_for_card(5)
        atr = reader.power_on()
        assert atr[:4] == bytes.fromhex("3B888001")
        # application data, protocol info (106 kbit/s; FSCI 8, ISO 14443-4; FWI 8), MBLI 0
        assert atr[4:12] == bytes(4) + bytes.fromhex("008180") + b"\x00"
        assert reader.protocol == "ISO14443-4B"
        assert reader.transmit(SELECT_PPSE)[-2:] == b"\x90\x00"
        reader.power_off()
        assert wait_until(lambda: emulator.events.field_lost == 1)
        reader.power_on()
        assert reader.transmit(SELECT_PPSE)[-2:] == b"\x90\x00"


def test_attributes(reader, path):
    attrs = reader.attributes()
    assert attrs.kind == "nfc"
    assert attrs.contactless
    assert attrs.extra["path"] == path
    assert attrs.extra["chipset"] == "UDP"
    assert attrs.name == "pos-antenna"


@pytest.mark.parametrize("bad", ["usb:ffff:ffff", "tty:paylab-none:pn532", "udp:256.0.0.1:9"])
def test_device_that_cannot_open(bad):
    with pytest.raises(ReaderUnavailable) as info:
        NfcReader(bad)
    assert info.value.resource == bad
    with pytest.raises(ReaderUnavailable):
        NfcCardEmulator(bad)


def test_close_from_another_thread_is_prompt_and_idempotent(path, ese):
    emulator = NfcCardEmulator(path)
    reader = NfcReader(path)
    emulator.present(ese)
    reader.power_on()
    closers = [threading.Thread(target=emulator.close), threading.Thread(target=reader.close)]
    start = time.monotonic()
    for thread in closers:
        thread.start()
    for thread in closers:
        thread.join(10)
    assert time.monotonic() - start < 5
    assert not emulator._thread.is_alive()
    emulator.close()
    reader.close()
    with pytest.raises(RuntimeError):
        emulator.present(ese)
    with pytest.raises(ReaderUnavailable):
        reader.power_on()


def test_first_i_block_without_rats_and_deselect(emulator, ese, path):
    """A CLF that answers RATS itself hands over the first I-block: the emulator takes it as activation.
    S(DESELECT) is answered, the card powered off, and the next tap activates again."""
    emulator.present(ese)
    clf = nfc.ContactlessFrontend(path)
    try:
        target = None
        for _ in range(100):
            target = clf.sense(nfc.clf.RemoteTarget("106A"))
            if target is not None:
                break
        assert target is not None
        assert bytes(target.sdd_res) == b"\x08PAY"
        response = bytes(clf.exchange(bytearray(b"\x02" + SELECT_PPSE), 1.0))
        assert response[0] == 0x02
        assert response[-2:] == b"\x90\x00"
        assert wait_until(lambda: ese.powered)
        assert bytes(clf.exchange(bytearray(b"\xc2"), 1.0)) == b"\xc2"
        assert wait_until(lambda: emulator.events.deselected == 1)
        assert wait_until(lambda: not ese.powered)
    finally:
        clf.close()
    with NfcReader(path) as reader:
        reader.power_on()
        assert reader.transmit(SELECT_PPSE)[-2:] == b"\x90\x00"
    assert emulator.events.activations == 2


def test_any_os_error_from_the_device_is_reader_unavailable(emulator, reader, ese, monkeypatch):
    emulator.present(ese)
    reader.power_on()

    def io_error(*_args):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(reader._tag, "transceive", io_error)
    with pytest.raises(ReaderUnavailable, match="NFC device error") as caught:
        reader.transmit(SELECT_PPSE)
    assert caught.value.detail == "errno 5 (EIO)"
    monkeypatch.setattr(reader._clf.device, "mute", io_error)
    with pytest.raises(ReaderUnavailable, match="NFC device error"):
        reader.power_off()
    monkeypatch.undo()
    reader.power_off()
