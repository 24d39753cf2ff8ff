"""The qPBOC contactless kernel over a DirectReader, against freshly issued emulated eSEs (all three profiles).

Online: the ARQC outcome's field 55 goes through the embedded reference backend (acquirer -> switch ->
issuer over ISO 8583 TCP) and comes back with an ARPC (tag 91). Offline: e-cash TC with fDDA verified
against the TEST CA key the card was personalised under; a tampered 9F4B is not approved; e-cash short
goes online; reader limits (contactless, CVM required); TTQ without qPBOC; a tap lifted mid-flow.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path

import pytest

from paylab.drivers.direct import DirectReader
from paylab.drivers.errors import CardRemoved
from paylab.drivers.protocols.card import Interface
from paylab.drivers.se.catalog_default import default_catalog
from paylab.drivers.se.factory import fabricate
from paylab.drivers.se.form_factor import ESE
from paylab.drivers.se.image import CardImage
from paylab.drivers.se.runtime import SecureElement
from paylab.drivers.terminal import FIELD55_TAGS, ContactlessKernel, Cvm, Outcome, TerminalConfig
from paylab.lab import profiles
from paylab.lab.backend.config import load_config
from paylab.lab.backend.runner import EmbeddedBackend
from paylab.lab.backend.terminal_client import TerminalClient
from paylab.lab.issuance import issue_pboc
from paylab.lab.protocol import cps, oda, tlv
from paylab.lab.protocol.apdu import ResponseApdu
from paylab.lab.protocol.iso8583 import field55_decode
from paylab.lab.protocol.tlv import Tlv

PROFILES = ("pboc_debit_ecash_sm4", "pboc_credit_ecash_3des", "pboc_ecash_only_sm4")
NOW = datetime.datetime(2026, 11, 26, 10, 30, 0)
UN = bytes.fromhex("2B29EBE4")


_ISSUED: dict[str, tuple[bytes, profiles.PbocProfile, oda.OdaChain]] = {}


class Card:
    """A freshly issued eSE with its profile and TEST ODA chain: each profile is issued once per module
    (SCP03, STORE DATA ...) and every test gets a fresh copy of that card image."""

    def __init__(self, tmp_path: Path, profile_name: str) -> None:
        path = tmp_path / f"{profile_name}.card"
        if profile_name not in _ISSUED:
            profile = profiles.load_bundled(profile_name)
            chain = cps.generate_oda_chain(profile, seed_or_rng=7)
            image = CardImage(path, durable=False)
            fabricate(image, ESE, overwrite=True)
            se = SecureElement(image, ESE, default_catalog())
            se.power_on()
            issue_pboc(lambda raw: se.transmit(raw), se.registry.isd().aid, profile, oda=chain)
            se.power_off()
            _ISSUED[profile_name] = (path.read_bytes(), profile, chain)
        raw, self.profile, self.chain = _ISSUED[profile_name]
        path.write_bytes(raw)
        self.se = SecureElement(CardImage(path, durable=False), ESE, default_catalog(), seed=1)

    def config(self, **changes: object) -> TerminalConfig:
        base = TerminalConfig(clock=lambda: NOW, unpredictable_number=lambda: UN).with_ca_keys(self.chain.ca_public)
        return base.replace(**changes) if changes else base


def _card(tmp_path: Path, name: str = "pboc_debit_ecash_sm4") -> Card:
    return Card(tmp_path, name)


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBackend]:
    config = load_config(overrides={"state_dir": tmp_path_factory.mktemp("backend")})
    with EmbeddedBackend(config) as running:
        yield running


@pytest.fixture(scope="module")
def pos(backend: EmbeddedBackend) -> Iterator[TerminalClient]:
    """One signed-on POS for the module (a new client would reuse STANs: the acquirer answers 94)."""
    terminal = backend.config.terminals[0]
    host, port = backend.addresses["acquirer"]
    with TerminalClient(host, port, terminal.tid, terminal.mid, terminal.tmk).connect() as client:
        assert client.sign_on().response_code == "00"
        yield client


# -- online, end to end --------------------------------------------------------------------------------------
@pytest.mark.parametrize("profile_name", PROFILES)
def test_online_arqc_field55_accepted_by_backend(tmp_path: Path, pos: TerminalClient, profile_name: str) -> None:
    card = _card(tmp_path, profile_name)
    kernel = ContactlessKernel(DirectReader(card.se), card.config())
    outcome = kernel.perform(12_345, force_online=True)
    assert outcome.outcome is Outcome.ONLINE_REQUEST
    assert outcome.cid == 0x80
    assert outcome.pan == card.profile.pan
    assert outcome.psn == card.profile.psn
    assert outcome.ecash_balance == card.profile.ecash.balance
    assert outcome.terminal[0x9F66][1] & 0x80  # online cryptogram required
    field55 = outcome.field55()
    tags = [obj.tag for obj in field55_decode(field55)]
    assert tags == [tag for tag in FIELD55_TAGS if tag in tags]
    assert 0x9F26 in tags
    assert 0x9F27 in tags
    assert {obj.tag: obj.value for obj in field55_decode(field55)}[0x9F27] == b"\x80"

    response = pos.purchase(outcome.pan or "", 12_345, field55=field55, psn=outcome.psn,
                            expiry=(outcome.expiry or "")[:4], track2=outcome.track2_str())
    assert 55 in response.fields, (response.response_code, response.fields.get(44))
    icc = {obj.tag: obj.value for obj in field55_decode(response.fields[55])}  # type: ignore[arg-type]
    # a pure e-cash card has no account to debit online (40), but its ARQC verified all the same
    assert response.response_code == ("40" if card.profile.account == "ecash" else "00")
    assert len(icc[0x91]) == 10
    assert icc[0x91][8:] == response.response_code.encode("ascii")


# -- offline -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("profile_name", PROFILES)
def test_offline_ecash_tc_with_fdda(tmp_path: Path, profile_name: str) -> None:
    card = _card(tmp_path, profile_name)
    reader = DirectReader(card.se)
    records: list[object] = []
    reader.add_tracer(records.append)
    outcome = ContactlessKernel(reader, card.config()).perform(880)
    assert outcome.outcome is Outcome.APPROVED, outcome.reason
    assert outcome.cid == 0x40
    assert outcome.cvm is Cvm.NO_CVM
    assert outcome.oda is not None
    assert outcome.oda.method == "fDDA"
    assert outcome.oda.ok
    assert outcome.ecash_balance == card.profile.ecash.balance - 880
    assert outcome.apdu_count == len(records) == reader.apdu_count  # PPSE, SELECT, GPO, READ RECORD x3
    assert outcome.duration_ms > 0


class TamperingCard:
    """Wraps a card and flips one byte of 9F4B (the fDDA signature) in every GPO response."""

    def __init__(self, se: SecureElement) -> None:
        self.se = se

    def power_on(self, interface: Interface = "contact") -> bytes:
        return self.se.power_on(interface)

    def power_off(self) -> None:
        self.se.power_off()

    def transmit(self, raw: bytes, *, interface: Interface | None = None) -> bytes:
        response = ResponseApdu.decode(self.se.transmit(raw, interface=interface))
        if raw[1] != 0xA8 or response.sw != 0x9000:
            return response.encode()
        (template,) = tlv.decode(response.data)
        children = [Tlv(c.tag, c.value[:5] + bytes([c.value[5] ^ 0x01]) + c.value[6:]) if c.tag == 0x9F4B else c
                    for c in template.children]
        return Tlv.build(0x77, *children).encode() + response.encode()[-2:]


def test_tampered_fdda_signature_is_not_approved(tmp_path: Path) -> None:
    card = _card(tmp_path)
    outcome = ContactlessKernel(DirectReader(TamperingCard(card.se)), card.config()).perform(880)
    assert outcome.cid == 0x40  # the card approved ...
    assert outcome.outcome is Outcome.DECLINED  # ... the reader does not (CTQ 0000: no online/contact fallback)
    assert outcome.oda is not None
    assert not outcome.oda.ok
    assert "9F4B" in (outcome.oda.reason or "")


def test_fdda_without_the_ca_key_is_not_approved(tmp_path: Path) -> None:
    card = _card(tmp_path, "pboc_credit_ecash_3des")
    outcome = ContactlessKernel(DirectReader(card.se), card.config(ca_keys={})).perform(880)
    assert outcome.outcome is Outcome.DECLINED
    assert outcome.oda is not None
    assert "CA key" in (outcome.oda.reason or "")


def test_fdda_failure_goes_online_when_the_ctq_asks(tmp_path: Path) -> None:
    card = _card(tmp_path)

    class CtqCard(TamperingCard):
        def transmit(self, raw: bytes, *, interface: Interface | None = None) -> bytes:
            out = super().transmit(raw, interface=interface)
            return out.replace(bytes.fromhex("9F6C020000"), bytes.fromhex("9F6C022000")) if raw[1] == 0xA8 else out

    outcome = ContactlessKernel(DirectReader(CtqCard(card.se)), card.config()).perform(880)
    assert outcome.outcome is Outcome.ONLINE_REQUEST
    assert "CTQ" in outcome.reason


def test_ecash_short_goes_online(tmp_path: Path) -> None:
    card = _card(tmp_path)  # balance 387.87 CNY, single limit 500.00
    outcome = ContactlessKernel(DirectReader(card.se), card.config()).perform(40_000)
    assert not outcome.terminal[0x9F66][1] & 0x80  # the reader did not ask for online ...
    assert outcome.outcome is Outcome.ONLINE_REQUEST
    assert outcome.cid == 0x80
    assert outcome.ecash_balance == 38_787
    assert outcome.cvm is Cvm.ONLINE_PIN  # 400.00 is above the CVM required limit


def test_pure_ecash_card_short_declines(tmp_path: Path) -> None:
    card = _card(tmp_path, "pboc_ecash_only_sm4")  # balance 50.00
    outcome = ContactlessKernel(DirectReader(card.se), card.config()).perform(6_000)
    assert outcome.outcome is Outcome.DECLINED
    assert outcome.cid == 0x00


# -- reader limits and CVM -----------------------------------------------------------------------------------------
def test_amount_over_contactless_limit_tries_another_interface(tmp_path: Path) -> None:
    card = _card(tmp_path)
    reader = DirectReader(card.se)
    outcome = ContactlessKernel(reader, card.config(contactless_transaction_limit=10_000)).perform(10_000)
    assert outcome.outcome is Outcome.TRY_ANOTHER_INTERFACE
    assert "contactless transaction limit" in outcome.reason
    assert outcome.apdu_count == reader.apdu_count == 0


def test_cvm_required_limit_sets_ttq_and_cvm_result(tmp_path: Path) -> None:
    card = _card(tmp_path)
    kernel = ContactlessKernel(DirectReader(card.se), card.config(cvm_required_limit=20_000))
    below = kernel.perform(19_999, force_online=True)
    assert not below.terminal[0x9F66][1] & 0x40
    assert below.cvm is Cvm.NO_CVM
    assert below.terminal[0x9F34] == bytes.fromhex("1F0002")
    online = kernel.perform(20_000, force_online=True)
    assert online.terminal[0x9F66][1] & 0x40
    assert online.cvm is Cvm.ONLINE_PIN
    assert online.terminal[0x9F34] == bytes.fromhex("020000")
    assert {o.tag: o.value for o in field55_decode(online.field55())}[0x9F34] == bytes.fromhex("020000")
    offline = kernel.perform(25_000)  # e-cash pays offline: no online PIN possible, signature instead
    assert offline.outcome is Outcome.APPROVED
    assert offline.cvm is Cvm.SIGNATURE
    assert online.terminal[0x9F41] != offline.terminal[0x9F41]  # transaction sequence counter moves


def test_credit_card_ctq_asks_online_pin(tmp_path: Path) -> None:
    card = _card(tmp_path, "pboc_credit_ecash_3des")  # CTQ 8000
    outcome = ContactlessKernel(DirectReader(card.se), card.config()).perform(100, force_online=True)
    assert outcome.outcome is Outcome.ONLINE_REQUEST
    assert outcome.cvm is Cvm.ONLINE_PIN


def test_ttq_without_qpboc_tries_another_interface(tmp_path: Path) -> None:
    card = _card(tmp_path)
    outcome = ContactlessKernel(DirectReader(card.se), card.config(ttq=bytes.fromhex("16000080"))).perform(880)
    assert outcome.outcome is Outcome.TRY_ANOTHER_INTERFACE
    assert outcome.sw == 0x6985
    assert outcome.apdu_count == 3


def test_no_supported_application(tmp_path: Path) -> None:
    card = _card(tmp_path)
    outcome = ContactlessKernel(DirectReader(card.se), card.config(aids=())).perform(880)
    assert outcome.outcome is Outcome.TRY_ANOTHER_INTERFACE
    assert outcome.apdu_count == 1


def test_offline_only_reader_declines_when_the_card_wants_online(tmp_path: Path) -> None:
    card = _card(tmp_path, "pboc_ecash_only_sm4")
    outcome = ContactlessKernel(DirectReader(card.se), card.config(ttq=bytes.fromhex("3E000080"))).perform(100)
    assert outcome.outcome is Outcome.APPROVED  # offline e-cash still fine
    debit = _card(tmp_path)
    short = ContactlessKernel(DirectReader(debit.se), debit.config(ttq=bytes.fromhex("3E000080"))).perform(45_000)
    assert short.outcome is Outcome.DECLINED  # the card answers an AAC to an offline-only reader


# -- removal and masking -----------------------------------------------------------------------------------------------
def test_card_removed_mid_transaction(tmp_path: Path) -> None:
    card = _card(tmp_path)
    reader = DirectReader(card.se)
    reader.remove_after(2)  # PPSE and SELECT answered, the card leaves before GPO
    with pytest.raises(CardRemoved) as caught:
        ContactlessKernel(reader, card.config()).perform(880)
    partial = caught.value.outcome  # type: ignore[attr-defined]
    assert partial.outcome is Outcome.END_APPLICATION
    assert partial.apdu_count == 3
    assert partial.aid == card.profile.aid
    assert partial.cid is None
    assert card.se.applet_data(card.profile.aid)["atc"] == 0  # GPO never reached the card


def test_outcome_never_shows_pan_or_track2(tmp_path: Path) -> None:
    card = _card(tmp_path)
    outcome = ContactlessKernel(DirectReader(card.se), card.config()).perform(880)
    text = repr(outcome) + str(outcome)
    assert card.profile.pan not in text
    assert (outcome.track2_str() or "x") not in text
    assert outcome.masked_pan == "622848******0010"
    assert outcome.masked_pan in text
    assert outcome.track2_str(None) == card.profile.track2.hex().upper().rstrip("F")
    assert outcome.expiry == card.profile.expiry

