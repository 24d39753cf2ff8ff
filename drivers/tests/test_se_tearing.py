"""Tearing: cut power at every APDU boundary and inside every commit of a purchase, an e-cash load
and a PUT KEY; after power-up the card must be exactly as after some prefix of the APDUs.

A reference run records the committed card state after every APDU and every tear point the run
passes (``apdu.before``/``apdu.after`` of each APDU, each commit step, and for the journal and image
writes several byte offsets: 0, 1, the journal header boundary, the middle, last-1 and last). Each
trial replays the scenario on a copy of the issued card with power cut at one point, powers up
(journal recovery), and checks that the recovered state equals one of the reference states, that
the balance and ATC are consistent, that the keys either all changed or none did, and that the card
still works. ``drivers/tests/test_se_runtime.py`` tears at *every* byte of a commit.
"""

import shutil

import pytest

from paylab.drivers.se.catalog_default import default_catalog
from paylab.drivers.se.errors import PowerLost
from paylab.drivers.se.form_factor import ESE
from paylab.drivers.se.image import CardImage, dumps
from paylab.drivers.se.runtime import SecureElement
from paylab.lab.gp_client import GpClient
from paylab.lab.protocol import cps, dol, tlv
from paylab.lab.protocol.apdu import CommandApdu, ResponseApdu
from paylab.lab.protocol.crypto import emv
from paylab.lab.protocol.gp import StaticKeys

from .test_se_end_to_end import BANK_SSD, OFFLINE_TTQ, SP_TSM_SSD_KEYS, issue_card, tap

h = bytes.fromhex
NEW_KEYS = StaticKeys(bytes(range(0x70, 0x80)), bytes(range(0x80, 0x90)), bytes(range(0x90, 0xA0)), kvn=0x31)
CUTS_JOURNAL_HEADER = 44


class Send:
    def __init__(self, se, interface="contact"):
        self.se, self.interface = se, interface

    def __call__(self, cmd):
        raw = cmd.encode() if isinstance(cmd, CommandApdu) else cmd
        return ResponseApdu.decode(self.se.transmit(raw, interface=self.interface))


def purchase(se, profile):
    tap(se, profile, 300, OFFLINE_TTQ)


def ecash_load(se, profile):
    """Contact: SELECT, GPO, 1st GENERATE AC (ARQC), EXTERNAL AUTHENTICATE, PUT DATA 9F79, 2nd GENERATE AC."""
    se.power_on("contact")
    send = Send(se)
    send(CommandApdu(0x00, 0xA4, 0x04, 0x00, profile.aid, 256))
    send(h("80A8000002830000"))
    values = {0x9F02: cps.amount_n12(0), 0x9F03: bytes(6), 0x9F1A: h("0156"), 0x95: bytes(5), 0x5F2A: h("0156"),
              0x9A: h("260115"), 0x9C: b"\x60", 0x9F37: h("55667788"), 0x9F21: h("101500"),
              0x9F4E: b"PAYLAB LOAD".ljust(20, b" "), 0x8A: b"00", 0xDF69: b"\x01", 0x9F66: h("36800000")}
    resp = send(CommandApdu(0x80, 0xAE, 0x80, 0x00, dol.build_dol_data(profile.cdol1, values), 256))
    body = tlv.decode_one(resp.data).value
    atc, arqc = body[1:3], body[3:11]
    keys = emv.CardKeys.from_imk(profile.issuer_keys, profile.pan, profile.psn)
    sk = emv.derive_ac_session_key(keys.mk_ac, atc, "pboc", profile.algorithm)
    send(CommandApdu(0x00, 0x82, 0x00, 0x00, emv.arpc_method1(sk, arqc, b"00", profile.algorithm) + b"00"))
    payload = cps.amount_n12(profile.ecash.balance + 10000)
    header = bytes([0x04, 0xDA, 0x9F, 0x79, len(payload) + 4])
    mac_sk = emv.derive_pboc_session_key(keys.mk_mac, atc, profile.algorithm)
    mac = emv.issuer_script_mac(mac_sk, header, atc, arqc, payload, profile.algorithm)
    send(CommandApdu(0x04, 0xDA, 0x9F, 0x79, payload + mac))
    send(CommandApdu(0x80, 0xAE, 0x40, 0x00, dol.build_dol_data(profile.cdol2, values), 256))


def put_key(se, profile):
    se.power_on("contact")
    client = GpClient(lambda raw: se.transmit(raw), random_bytes=lambda n: bytes(n))
    client.open_secure_channel(BANK_SSD, SP_TSM_SSD_KEYS, level=0x03)
    client.put_keys(NEW_KEYS.kvn, NEW_KEYS, replace_kvn=SP_TSM_SSD_KEYS.kvn)


SCENARIOS = {"purchase": purchase, "ecash-load": ecash_load, "put-key": put_key}


@pytest.fixture(scope="module")
def issued(tmp_path_factory):
    folder = tmp_path_factory.mktemp("issued")
    se, profile, _ = issue_card(folder, ESE, "pboc_debit_ecash_sm4")
    return se.image.path, profile


def new_card(golden, folder):
    folder.mkdir()
    path = folder / "card.json"
    shutil.copy(golden, path)
    se = SecureElement(CardImage(path, durable=False), ESE, default_catalog(), seed=5)
    se.power_on()
    return se


def card_facts(se, profile):
    """(e-cash balance in fen, ATC, transaction log length, load log length, SSD key versions)."""
    data = se.applet_data(profile.aid)
    balance = int(bytes(data["ecash"]["9F79"]).hex())
    return (balance, data["atc"], len(data["txn_log"]), len(data["load_log"]),
            sorted(se.applet_data(BANK_SSD).get("keys", {})))


def check_invariants(name, before, after):
    """Money, counters and keys move together or not at all."""
    balance0, atc0, txn0, load0, keys0 = before
    balance, atc, txn, load, keys = after
    assert atc in (atc0, atc0 + 1)
    if name == "purchase":
        assert balance in (balance0, balance0 - 300)
        assert (balance != balance0) == (txn == txn0 + 1)
        assert balance == balance0 or atc == atc0 + 1  # a debit always consumed an ATC
    if name == "ecash-load":
        assert balance in (balance0, balance0 + 10000)
        assert (balance != balance0) == (load == load0 + 1)
        assert balance == balance0 or atc == atc0 + 1
    if name == "put-key":
        assert balance == balance0
        assert keys in (keys0, ["31"])  # the old set replaced by the new one, never both or none


def reference(golden, folder, scenario, profile):
    """Run untorn, recording every tear point consulted and the committed state after each APDU."""
    se = new_card(golden, folder)
    events: list[tuple[str, int]] = []
    states = {dumps(se.image.state)}

    def spy(point, size):
        events.append((point, size))
        if point == "apdu.after":
            states.add(dumps(se.image.state))

    se.set_tear_hook(spy)
    scenario(se, profile)
    se.set_tear_hook(None)
    states.add(dumps(se.image.state))
    return events, states, se


def trials(events):
    for index, (point, size) in enumerate(events):
        if size == 0:
            yield index, point, 0
            continue
        for cut in sorted({0, 1, CUTS_JOURNAL_HEADER, size // 2, size - 1, size}):
            if 0 <= cut <= size:
                yield index, point, cut


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_tear_point_leaves_a_consistent_card(tmp_path, issued, name):
    golden, profile = issued
    scenario = SCENARIOS[name]
    events, states, done = reference(golden, tmp_path / "ref", scenario, profile)
    before = card_facts(new_card(golden, tmp_path / "before"), profile)
    complete = card_facts(done, profile)
    check_invariants(name, before, complete)
    assert complete != before  # the untorn scenario really changes money or keys
    exercised = held = 0
    for number, (index, point, cut) in enumerate(trials(events)):
        se = new_card(golden, tmp_path / f"t{number}")
        counter = iter(range(len(events) + 1))

        def hook(p, size, index=index, cut=cut, counter=counter):
            return cut if next(counter) == index else None

        se.set_tear_hook(hook)
        with pytest.raises(PowerLost):
            scenario(se, profile)
        exercised += 1
        se.set_tear_hook(None)
        se.power_on()
        state = dumps(se.image.state)
        assert state in states, f"{name}: tear at event {index} ({point}@{cut}) left an intermediate state"
        check_invariants(name, before, card_facts(se, profile))
        assert not se.image.journal_path.exists()
        # the card still answers after the tear
        assert Send(se)(CommandApdu(0x00, 0xA4, 0x04, 0x00, profile.aid, 256)).sw == 0x9000
        assert se.faults == []
        held += 1
    after = card_facts(new_card(golden, tmp_path / "untorn"), profile)
    assert after == before  # (a fresh copy: the golden image itself is never modified)
    assert exercised == held
    assert exercised >= 20
    print(f"tearing {name}: {exercised} tear points exercised, {held} held")
