"""Shared fixtures for the driver tests: the PC/SC stack with emulated cards (no hardware).

* ``pcscd`` (session): the process's private pcscd (:meth:`ManagedPcscd.for_process`), 8 contact
  + 4 contactless vpcd readers. pcsc-lite reads ``PCSCLITE_CSOCK_NAME`` once per process: this
  module sets it when it is imported (collection time), and tests reach pcscd only via this fixture.
* ``pcsc_card`` (function): a factory ``pcsc_card(card=None, *, form_factor=SIM, contactless=False,
  insert=True) -> PcscCardSlot`` — a fresh vpcd slot, a :class:`VpcdCardBridge` serving the card
  (a freshly fabricated SE when ``card`` is None) and a :class:`PcscReader` on that slot, the
  card inserted and seen by pcscd. Everything is removed, closed and released after the test.
* ``emulated_se`` (function): a factory ``emulated_se(form_factor=SIM, *, seed=3) -> SecureElement``
  of freshly fabricated (unissued) SEs in ``tmp_path`` (:func:`make_se`): SIM is T=0, ESE/MICROSD
  T=1. Issue one with :func:`paylab.lab.issuance.issue_pboc` (directly or through a reader).

Test modules cannot import this file (pytest's importlib mode): use the fixtures.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from paylab.drivers.pcsc import ManagedPcscd, PcscReader, VpcdCardBridge, VpcdSlot
from paylab.drivers.protocols.card import ApduCard
from paylab.drivers.se.catalog_default import default_catalog
from paylab.drivers.se.factory import fabricate
from paylab.drivers.se.form_factor import SIM, FormFactor
from paylab.drivers.se.image import CardImage
from paylab.drivers.se.runtime import SecureElement

# pcsc-lite reads PCSCLITE_CSOCK_NAME once per process: point it at this process's private pcscd
# now, at collection time, before any test (ours or not) can make a PC/SC call.
ManagedPcscd.reserve_process_socket()

CARD_SEEN_TIMEOUT = 5.0          # pcscd polls every 400 ms; generous for loaded CI machines
_serial = itertools.count(1)


def make_se(directory: Path, form_factor: FormFactor = SIM, *, seed: int = 3) -> SecureElement:
    """A freshly fabricated emulated SE (ISD with GP TEST keys, PPSE) with its image in ``directory``."""
    serial = next(_serial)
    image = CardImage(directory / f"{form_factor.name}-{serial}.card")
    fabricate(image, form_factor, card_serial=serial)
    return SecureElement(image, form_factor, default_catalog(), seed=seed)


@dataclass
class PcscCardSlot:
    """An emulated card in a vpcd reader of the managed pcscd, and a PC/SC reader on it."""

    slot: VpcdSlot
    card: ApduCard
    bridge: VpcdCardBridge
    reader: PcscReader
    extra_readers: list[PcscReader] = field(default_factory=list)

    def insert(self, timeout: float = CARD_SEEN_TIMEOUT) -> None:
        """Insert the card and wait until pcscd sees it."""
        self.bridge.insert()
        self.reader.wait_for_card(timeout)

    def remove(self, timeout: float = CARD_SEEN_TIMEOUT) -> None:
        """Remove the card and wait until pcscd shows the reader empty."""
        self.bridge.remove()
        self.reader.wait_for_removal(timeout)

    def open_reader(self, **kwargs: object) -> PcscReader:
        """Another :class:`PcscReader` on this slot (closed after the test)."""
        reader = PcscReader(self.slot.reader_name, contactless=self.slot.contactless, **kwargs)  # type: ignore[arg-type]
        self.extra_readers.append(reader)
        return reader


@pytest.fixture(scope="session")
def pcscd() -> Iterator[ManagedPcscd]:
    """The process's private pcscd (started once per test process, stopped at the end)."""
    instance = ManagedPcscd.for_process(readers=8, contactless_readers=4)
    yield instance
    instance.stop()


@pytest.fixture
def emulated_se(tmp_path: Path) -> Callable[..., SecureElement]:
    """Factory of freshly fabricated emulated SEs (see :func:`make_se`)."""

    def make(form_factor: FormFactor = SIM, *, seed: int = 3) -> SecureElement:
        return make_se(tmp_path, form_factor, seed=seed)

    return make


@pytest.fixture
def pcsc_card(pcscd: ManagedPcscd, tmp_path: Path) -> Iterator[Callable[..., PcscCardSlot]]:
    """Factory of emulated cards in fresh vpcd readers (see the module docstring)."""
    made: list[PcscCardSlot] = []

    def make(card: ApduCard | None = None, *, form_factor: FormFactor = SIM, contactless: bool = False,
             insert: bool = True) -> PcscCardSlot:
        if not pcscd.running:          # a previous test killed it and did not restart it
            pcscd.restart()
        slot = pcscd.allocate_slot(contactless=contactless)
        try:
            if card is None:
                card = make_se(tmp_path, form_factor)
            bridge = VpcdCardBridge.for_slot(card, slot)
            reader = PcscReader(slot.reader_name, contactless=contactless)
        except BaseException:
            pcscd.release_slot(slot)
            raise
        entry = PcscCardSlot(slot, card, bridge, reader)
        made.append(entry)
        if insert:
            entry.insert()
        return entry

    yield make
    for entry in made:
        entry.bridge.remove()
        for reader in [entry.reader, *entry.extra_readers]:
            reader.close()
        if pcscd.running:
            with contextlib.suppress(Exception):
                entry.reader.wait_for_removal(CARD_SEEN_TIMEOUT)
        pcscd.release_slot(entry.slot)
