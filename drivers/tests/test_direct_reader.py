"""DirectReader: the in-process reader over an emulated SE (T=0 recovery, removal, waits, tracing)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from paylab.drivers.direct import DirectReader
from paylab.drivers.errors import CardRemoved, NoCard
from paylab.drivers.protocols.card import CardReaderProtocol
from paylab.drivers.se.catalog_default import default_catalog
from paylab.drivers.se.factory import fabricate
from paylab.drivers.se.form_factor import ESE, SIM, FormFactor
from paylab.drivers.se.image import CardImage
from paylab.drivers.se.runtime import SecureElement
from paylab.lab.protocol.trace import TraceRecord


def _se(tmp_path: Path, form_factor: FormFactor = ESE, name: str = "card") -> SecureElement:
    image = CardImage(tmp_path / f"{name}.card", durable=False)
    fabricate(image, form_factor, overwrite=True)
    return SecureElement(image, form_factor, default_catalog())


def _select(aid: bytes) -> bytes:
    return bytes([0x00, 0xA4, 0x04, 0x00, len(aid)]) + aid + b"\x00"


def test_contact_reader_over_an_ese(tmp_path: Path) -> None:
    se = _se(tmp_path)
    reader = DirectReader(se, contactless=False, name="bench")
    assert isinstance(reader, CardReaderProtocol)
    records: list[TraceRecord] = []
    reader.add_tracer(records.append)
    assert reader.card_present()
    assert reader.power_on() == ESE.atr
    response = reader.transmit(_select(se.registry.isd().aid))
    assert response[-2:] == b"\x90\x00"
    assert response[0] == 0x6F
    assert reader.protocol == "T=1"
    assert reader.attributes().kind == "direct"
    assert reader.attributes().name == "bench"
    assert len(records) == 1
    assert reader.apdu_count == 1


def test_t0_61xx_and_6cxx_are_recovered(tmp_path: Path) -> None:
    sim = _se(tmp_path, SIM)
    sim.power_on()
    raw = sim.transmit(_select(sim.registry.isd().aid))
    assert raw[0] == 0x61  # the card itself answers 61xx over T=0
    reader = DirectReader(sim, contactless=False)
    records: list[TraceRecord] = []
    reader.add_tracer(records.append)
    reader.power_on()
    assert reader.protocol == "T=0"
    fci = reader.transmit(_select(sim.registry.isd().aid))
    assert fci[0] == 0x6F
    assert fci[-2:] == b"\x90\x00"
    assert len(fci) == raw[1] + 2
    cplc = reader.transmit(bytes.fromhex("80CA9F7F01"))  # Le 1: the card answers 6Cxx, the reader retries
    assert cplc[:2] == b"\x9f\x7f"
    assert cplc[-2:] == b"\x90\x00"
    assert len(records) == 2  # one record per command, GET RESPONSE / retry included
    assert sim.apdu_count > 1 + 2


def test_remove_insert_and_no_card(tmp_path: Path) -> None:
    reader = DirectReader(contactless=True)
    assert reader.protocol == "ISO14443-4A"
    with pytest.raises(NoCard):
        reader.transmit(bytes.fromhex("00A4040000"))
    with pytest.raises(NoCard):
        reader.power_on()
    se = _se(tmp_path)
    reader.insert(se)
    aid = se.registry.isd().aid
    assert reader.transmit(_select(aid))[-2:] == b"\x6a\x82"  # activated by the first APDU (no ISD over RF)
    reader.remove()
    assert not reader.card_present()
    records: list[TraceRecord] = []
    reader.add_tracer(records.append)
    with pytest.raises(CardRemoved) as caught:
        reader.transmit(_select(aid))
    assert caught.value.resource == "direct"
    assert len(records) == 1  # traced even on the way out of the error
    reader.insert(se)
    assert reader.transmit(_select(aid))[-2:] == b"\x6a\x82"
    reader.close()


def test_remove_after_n_apdus(tmp_path: Path) -> None:
    se = _se(tmp_path)
    reader = DirectReader(se)
    aid = se.registry.isd().aid
    reader.remove_after(2)
    reader.transmit(_select(aid))
    reader.transmit(_select(aid))
    with pytest.raises(CardRemoved):
        reader.transmit(_select(aid))
    assert not reader.card_present()
    assert reader.apdu_count == 2
    with pytest.raises(ValueError, match=">= 0"):
        reader.remove_after(-1)
    reader.insert(se)
    reader.remove_after(0)
    with pytest.raises(CardRemoved):
        reader.transmit(_select(aid))


def test_power_loss_on_the_card_is_a_removal(tmp_path: Path) -> None:
    se = _se(tmp_path)
    reader = DirectReader(se)
    reader.power_on()
    se.set_tear_hook(lambda point, size: 0 if point == "apdu.before" else None)
    with pytest.raises(CardRemoved, match="lost power"):
        reader.transmit(_select(se.registry.isd().aid))
    se.set_tear_hook(None)
    assert not reader.card_present()


def test_waits(tmp_path: Path) -> None:
    se = _se(tmp_path)
    reader = DirectReader()
    with pytest.raises(NoCard):
        reader.wait_for_card(0.01)
    inserter = threading.Timer(0.05, reader.insert, args=(se,))
    inserter.start()
    try:
        reader.wait_for_card(10.0)
    finally:
        inserter.join(10.0)
    assert reader.card_present()
    assert not reader.wait_for_removal(0.01)
    remover = threading.Timer(0.05, reader.remove)
    remover.start()
    try:
        assert reader.wait_for_removal(10.0)
    finally:
        remover.join(10.0)
