"""The PBOC contact kernel, two passes, over a DirectReader (contact) against freshly issued emulated eSEs.

End to end: an e-cash load (9C = 60) goes online through the embedded reference backend; the issuer's
ARPC is checked by EXTERNAL AUTHENTICATE, the second GENERATE AC gives a TC and the issuer script
(PUT DATA 9F79 in template 72) runs after it, so the new balance shows in GET DATA 9F79. Also: a script
with a wrong MAC, an issuer decline, a wrong ARPC, the unable-to-go-online path (Z3 and Y3), offline PIN.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterator
from pathlib import Path

import pytest

from paylab.drivers.direct import DirectReader
from paylab.drivers.errors import CardRemoved
from paylab.drivers.se.catalog_default import default_catalog
from paylab.drivers.se.factory import fabricate
from paylab.drivers.se.form_factor import ESE
from paylab.drivers.se.image import CardImage
from paylab.drivers.se.runtime import SecureElement
from paylab.drivers.terminal import ContactKernel, ContactOutcome, Cvm, Outcome, TerminalConfig
from paylab.lab import profiles
from paylab.lab.backend.config import load_config
from paylab.lab.backend.runner import EmbeddedBackend
from paylab.lab.backend.terminal_client import TerminalClient
from paylab.lab.issuance import issue_pboc
from paylab.lab.protocol import cps, oda
from paylab.lab.protocol.iso8583 import field55_decode

NOW = datetime.datetime(2026, 11, 26, 11, 0, 0)
LOAD = 0x60  # 9C: e-cash load from the designated account [M]


_ISSUED: dict[tuple[str, tuple[tuple[str, object], ...]], tuple[bytes, profiles.PbocProfile, oda.OdaChain]] = {}


class Card:
    """A freshly issued eSE (optionally from a modified profile) and a contact kernel over it; each
    profile variant is issued once per module and every test gets a fresh copy of the card image."""

    def __init__(self, tmp_path: Path, name: str = "pboc_debit_ecash_sm4", **profile_changes: object) -> None:
        key = (name, tuple(sorted(profile_changes.items())))
        path = tmp_path / f"{name}.card"
        if key not in _ISSUED:
            profile = profiles.load_bundled(name)
            if profile_changes:
                profile = dataclasses.replace(profile, **profile_changes)  # type: ignore[arg-type]
            chain = cps.generate_oda_chain(profile, seed_or_rng=7)
            image = CardImage(path, durable=False)
            fabricate(image, ESE, overwrite=True)
            se = SecureElement(image, ESE, default_catalog())
            se.power_on()
            issue_pboc(lambda raw: se.transmit(raw), se.registry.isd().aid, profile, oda=chain)
            se.power_off()
            _ISSUED[key] = (path.read_bytes(), profile, chain)
        raw, self.profile, self.chain = _ISSUED[key]
        path.write_bytes(raw)
        self.se = SecureElement(CardImage(path, durable=False), ESE, default_catalog(), seed=2)
        self.reader = DirectReader(self.se, contactless=False)
        pin = self.profile.pin.offline_pin if self.profile.pin else None
        self.config = TerminalConfig(clock=lambda: NOW, pin=pin).with_ca_keys(self.chain.ca_public)
        self.kernel = ContactKernel(self.reader, self.config)


@pytest.fixture(scope="module")
def pos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TerminalClient]:
    config = load_config(overrides={"state_dir": tmp_path_factory.mktemp("backend")})
    with EmbeddedBackend(config) as backend:
        terminal = config.terminals[0]
        host, port = backend.addresses["acquirer"]
        with TerminalClient(host, port, terminal.tid, terminal.mid, terminal.tmk).connect() as client:
            assert client.sign_on().response_code == "00"
            yield client


def _online(pos: TerminalClient, outcome: ContactOutcome, amount: int) -> tuple[str, bytes, bytes]:
    """The e-cash load request; returns (response code, tag 91 value, scripts 71/72 as bytes)."""
    response = pos.load(outcome.pan or "", amount, field55=outcome.field55(), psn=outcome.psn,
                        expiry=(outcome.expiry or "")[:4])
    icc = field55_decode(response.fields[55])  # type: ignore[arg-type]
    arpc = next(obj.value for obj in icc if obj.tag == 0x91)
    return str(response.response_code), arpc, b"".join(obj.encode() for obj in icc if obj.tag in (0x71, 0x72))


def test_ecash_load_two_pass_with_issuer_script(tmp_path: Path, pos: TerminalClient) -> None:
    card = Card(tmp_path)
    first = card.kernel.perform(5_000, transaction_type=LOAD)
    assert first.outcome is Outcome.ONLINE_REQUEST
    assert first.cid == 0x80
    assert first.cvm is Cvm.OFFLINE_PIN  # the CVM list's first rule, with the TEST PIN at the PIN pad
    assert first.terminal[0x9F34] == bytes.fromhex("410302")
    assert first.ecash_balance == 38_787
    assert first.tsi[0] & 0xE8 == 0xE8  # ODA, CVM, card risk management, terminal risk management performed
    code, arpc, scripts = _online(pos, first, 5_000)
    assert code == "00"
    assert scripts[:1] == b"\x72"  # PUT DATA 9F79 after the second GENERATE AC
    final = card.kernel.complete(first, response_code=code, issuer_authentication_data=arpc, scripts=scripts)
    assert final is first
    assert final.outcome is Outcome.APPROVED, final.reason
    assert final.cid == 0x40
    assert final.first_cid == 0x80
    assert final.issuer_authentication is True
    assert final.arc == "00"
    assert final.script_results[:1] == b"\x20"  # script performed successfully
    assert final.tsi[0] & 0x14 == 0x14  # issuer authentication and script processing performed
    assert card.kernel.get_data(0x9F79) == cps.amount_n12(38_787 + 5_000)
    assert final.apdu_count == card.reader.apdu_count - 1  # all but the GET DATA


def test_issuer_script_with_a_bad_mac_fails(tmp_path: Path, pos: TerminalClient) -> None:
    card = Card(tmp_path, "pboc_credit_ecash_3des")
    first = card.kernel.perform(3_000, transaction_type=LOAD)
    assert first.outcome is Outcome.ONLINE_REQUEST
    code, arpc, scripts = _online(pos, first, 3_000)
    assert code == "00"
    tampered = scripts[:-1] + bytes([scripts[-1] ^ 0xFF])  # last byte of the script MAC
    final = card.kernel.complete(first, response_code=code, issuer_authentication_data=arpc, scripts=tampered)
    assert final.outcome is Outcome.APPROVED  # the TC came before the script
    assert final.script_results[:1] == b"\x11"  # failed at command 1
    assert final.tvr[4] & 0x10  # script processing failed after the final GENERATE AC
    assert card.kernel.get_data(0x9F79) == cps.amount_n12(20_000)


def test_issuer_decline_gives_aac(tmp_path: Path) -> None:
    card = Card(tmp_path)
    first = card.kernel.perform(1_000)
    final = card.kernel.complete(first, response_code="51")
    assert final.outcome is Outcome.DECLINED
    assert final.cid == 0x00
    assert final.arc == "51"
    assert final.terminal[0x8A] == b"51"


def test_wrong_arpc_fails_issuer_authentication(tmp_path: Path) -> None:
    card = Card(tmp_path)
    first = card.kernel.perform(1_000)
    final = card.kernel.complete(first, response_code="00", issuer_authentication_data=bytes(8) + b"00")
    assert final.issuer_authentication is False
    assert final.tvr[4] & 0x40  # issuer authentication failed
    assert final.outcome is Outcome.DECLINED  # the card refuses a TC after a failed ARPC
    assert card.se.applet_data(card.profile.aid)["flags"]["issuer_auth_failed"]


def test_unable_to_go_online_with_failed_oda_declines(tmp_path: Path) -> None:
    card = Card(tmp_path)
    first = card.kernel.perform(1_000)
    assert first.oda is not None
    assert not first.oda.ok  # the applet has no INTERNAL AUTHENTICATE: DDA fails (TVR byte 1 b4)
    final = card.kernel.complete(first, response_code=None)
    assert final.arc == "Z3"  # TVR matches the card's IAC-default
    assert final.outcome is Outcome.DECLINED


def test_unable_to_go_online_y3_offline_approval(tmp_path: Path) -> None:
    # a card without ODA and an IAC-default of zeros, at a terminal with a TAC-default of zeros
    card = Card(tmp_path, iac_default=bytes(5), aip=bytes.fromhex("1C00"))
    kernel = ContactKernel(card.reader, card.config.replace(tac_default=bytes(5)))
    first = kernel.perform(1_000)
    assert first.tvr[0] & 0x80  # ODA not performed
    final = kernel.complete(first, response_code=None)
    assert final.arc == "Y3"
    assert final.outcome is Outcome.APPROVED  # the card's offline count is below 9F23
    assert "unable to go online" in final.reason


def test_wrong_offline_pin_falls_back_to_online_pin(tmp_path: Path) -> None:
    card = Card(tmp_path)
    first = card.kernel.perform(1_000, pin="000000")
    assert first.cvm is Cvm.ONLINE_PIN  # rule 41 03 failed, "apply succeeding rule" -> 42 03
    assert first.tvr[2] & 0x04  # online PIN entered
    assert card.kernel.get_data(0x9F17) == b"\x02"  # one PIN try used
    no_pin = ContactKernel(card.reader, card.config.replace(pin=None)).perform(1_000)
    assert no_pin.cvm is Cvm.ONLINE_PIN


@pytest.mark.parametrize("bad_pin", ["12a4", "123", "1234567890123"])
def test_invalid_pin_is_a_value_error_before_any_apdu(tmp_path: Path, bad_pin: str) -> None:
    card = Card(tmp_path)
    tries_before = card.kernel.get_data(0x9F17)
    sent: list[bytes] = []
    original = card.reader.transmit
    card.reader.transmit = lambda raw: sent.append(bytes(raw)) or original(raw)  # type: ignore[method-assign]
    with pytest.raises(ValueError, match="4-12 digits") as caught:
        card.kernel.perform(1_000, pin=bad_pin)
    assert bad_pin not in str(caught.value)
    assert sent == []
    card.reader.transmit = original  # type: ignore[method-assign]
    assert card.kernel.get_data(0x9F17) == tries_before


def test_card_removed_before_completion(tmp_path: Path) -> None:
    card = Card(tmp_path)
    first = card.kernel.perform(1_000)
    card.reader.remove()
    with pytest.raises(CardRemoved) as caught:
        card.kernel.complete(first, response_code="00")
    assert caught.value.outcome is first  # type: ignore[attr-defined]
    assert first.outcome is Outcome.END_APPLICATION
    with pytest.raises(ValueError, match="once"):
        card.kernel.complete(first, response_code="00")


def test_contact_outcome_masks_pan(tmp_path: Path) -> None:
    card = Card(tmp_path, "pboc_credit_ecash_3des")
    first = card.kernel.perform(1_000)
    assert card.profile.pan not in repr(first)
    assert first.masked_pan == "621700*********0014"
    assert first.track2_str() is not None
    assert len(first.track2_str() or "") == 37  # the 19-digit PAN's tag 57 is trimmed to fit field 35
