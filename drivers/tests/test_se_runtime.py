"""Card runtime and card image: channels, SELECT, T=0 shaping, rollback, tearing at every byte."""

import pytest

from paylab.drivers.se.applet import Applet, Reply
from paylab.drivers.se.catalog import Catalog
from paylab.drivers.se.errors import CardPoweredOff, ISOException, PowerLost
from paylab.drivers.se.form_factor import ESE, MICROSD, SIM, build_atr
from paylab.drivers.se.image import CardImage, dumps
from paylab.drivers.se.registry import APP_LOCKED_BIT, APP_SELECTABLE, CARD_LOCKED, Registry, RegistryEntry
from paylab.drivers.se.runtime import SecureElement

h = bytes.fromhex
ISD = h("A000000151000000")
APP1 = h("A0000003330101")
APP2 = h("A0000003330102")


class Counter(Applet):
    """Test applet: 80 01 increments a persistent counter and echoes; 80 02 fails after writing;
    80 03 crashes after writing; 80 04 answers 63C1 keeping its write."""

    implementation = "test.counter"

    def select(self, ctx, cmd):
        ctx.session["selected"] = True
        return h("6F03840101")

    def process(self, ctx, cmd):
        ctx.data["n"] = ctx.data.get("n", 0) + 1
        if cmd.ins == 0x01:
            return cmd.data + bytes([ctx.data["n"]])
        if cmd.ins == 0x02:
            raise ISOException(0x6A80, "rejected after a write")
        if cmd.ins == 0x03:
            raise RuntimeError("applet bug")
        if cmd.ins == 0x04:
            return Reply(sw=0x63C1)
        if cmd.ins == 0x05:
            return bytes(300)
        raise ISOException(0x6D00)


def make_card(tmp_path, form_factor=ESE, seed=None, durable=True):
    catalog = Catalog()
    catalog.register_implementation(Counter)
    image = CardImage(tmp_path / "card.json", durable=durable)
    reg = Registry(image.state)
    reg.put(RegistryEntry(aid=ISD, kind="ISD", life_cycle=0x01, implementation="test.counter"))
    reg.put(RegistryEntry(aid=APP1, kind="APP", life_cycle=APP_SELECTABLE, implementation="test.counter",
                          contactless_activated=True))
    reg.put(RegistryEntry(aid=APP2, kind="APP", life_cycle=APP_SELECTABLE, implementation="test.counter"))
    image.commit()
    se = SecureElement(image, form_factor, catalog, seed=seed)
    se.power_on()
    return se


def tx(se, hexstr, **kw):
    return se.transmit(h(hexstr), **kw).hex().upper()


def test_atrs_have_a_correct_check_byte():
    for ff in (SIM, MICROSD, ESE):
        body = ff.atr[1:]
        acc = 0
        for b in body:
            acc ^= b
        assert acc == 0
    assert build_atr(b"\x80\x01", b"") == h("3B800181")


def test_select_exact_partial_and_next_occurrence(tmp_path):
    se = make_card(tmp_path)
    assert tx(se, "00A4040007A0000003330101") == "6F038401019000"
    assert se.channels[0].selected == APP1
    assert tx(se, "00A4040005A000000333") == "6F038401019000"  # first occurrence
    assert se.channels[0].selected == APP1
    assert tx(se, "00A4040205A000000333") == "6F038401019000"  # next occurrence
    assert se.channels[0].selected == APP2
    assert tx(se, "00A4040205A000000333") == "6A82"            # no further occurrence
    assert se.channels[0].selected is None
    assert tx(se, "00A4040C07A0000003330101") == "9000"        # P2 0C: no FCI
    assert tx(se, "00A4041007A0000003330101") == "6A86"


def test_contactless_interface_only_sees_activated_instances(tmp_path):
    se = make_card(tmp_path)
    se.power_off()
    se.power_on("contactless")
    assert se.channels[0].selected is None
    assert tx(se, "00A4040007A0000003330102") == "6A82"
    assert tx(se, "00A4040007A0000003330101") == "6F038401019000"
    assert tx(se, "00A4040008A000000151000000") == "6A82"  # the ISD is not reachable contactless


def test_locked_app_and_locked_card_are_not_selectable(tmp_path):
    se = make_card(tmp_path)
    reg = se.registry
    entry = reg.get(APP2)
    entry.life_cycle |= APP_LOCKED_BIT
    reg.put(entry)
    se.image.commit()
    assert tx(se, "00A4040007A0000003330102") == "6A82"
    se.card_state()["life_cycle"] = CARD_LOCKED
    se.image.commit()
    assert tx(se, "00A4040007A0000003330101") == "6A82"
    assert tx(se, "00A4040008A000000151000000").endswith("9000")


def test_state_commits_per_apdu_and_survives_power_cycles(tmp_path):
    se = make_card(tmp_path)
    tx(se, "00A4040007A0000003330101")
    assert tx(se, "8001000001AA") == "AA019000"
    assert tx(se, "8001000001BB") == "BB029000"
    se.power_off()
    se.power_on()
    tx(se, "00A4040007A0000003330101")
    assert tx(se, "8001000001CC") == "CC039000"
    # a second runtime on the same file sees the committed state
    other = SecureElement(CardImage(tmp_path / "card.json"), ESE, se.catalog)
    other.power_on()
    assert other.applet_data(APP1)["n"] == 3


def test_iso_exception_and_applet_bug_roll_back(tmp_path):
    se = make_card(tmp_path)
    tx(se, "00A4040007A0000003330101")
    tx(se, "8001000001AA")
    assert tx(se, "80020000") == "6A80"
    assert tx(se, "80030000") == "6F00"
    assert se.faults
    assert "applet bug" in se.faults[-1]
    assert se.applet_data(APP1)["n"] == 1
    assert tx(se, "80040000") == "63C1"  # a non-9000 Reply keeps its writes
    assert se.applet_data(APP1)["n"] == 2


@pytest.mark.parametrize("raw", ["", "00", "00A4", "00A404", "8001000005AA", "80010000000003AA",
                                 "FF010000", "0001000001"])
def test_malformed_apdus_get_status_words_never_exceptions(tmp_path, raw):
    se = make_card(tmp_path)
    tx(se, "00A4040007A0000003330101")
    sw = tx(se, raw)[-4:]
    assert sw in {"6700", "6E00", "6D00", "6881", "9000", "6A82"}
    assert not se.faults


def test_logical_channels(tmp_path):
    se = make_card(tmp_path)
    assert tx(se, "0070000001") == "019000"
    assert tx(se, "01A4040007A0000003330102") == "6F038401019000"
    assert se.channels[1].selected == APP2
    assert tx(se, "0070000001") == "029000"
    assert tx(se, "0070000001") == "039000"
    assert tx(se, "0070000001") == "6A81"          # 4 channels on this form factor
    assert tx(se, "0070800300") == "9000"
    assert tx(se, "03A4040007A0000003330101") == "6881"
    assert tx(se, "0070800000") == "6A86"          # basic channel cannot close
    se.reset()
    assert list(se.channels) == [0]


def test_t0_form_factor_answers_61xx_and_6cxx(tmp_path):
    se = make_card(tmp_path, SIM)
    assert tx(se, "00A4040007A0000003330101") == "6105"
    assert tx(se, "00C0000005") == "6F038401019000"
    assert tx(se, "8001000001AA00") == "6102"      # case 4: data waits
    assert tx(se, "00C0000001") == "AA6101"
    assert tx(se, "00C0000001") == "019000"
    assert tx(se, "00C0000001") == "6985"          # nothing pending
    assert tx(se, "8005000010") == "6C00"          # case 2, Le 16 < 300 available: 6C with 300 mod 256
    assert tx(se, "8001000001AA00") == "6102"
    assert tx(se, "8001000001BB") == "6102"        # a new command discards pending data


def test_extended_apdus_only_where_the_form_factor_allows(tmp_path):
    sim = make_card(tmp_path, SIM)
    sim.transmit(h("00A4040007A0000003330101"))
    assert tx(sim, "80010000000001AA") == "6700"
    ese = make_card(tmp_path / "e" if (tmp_path / "e").mkdir() is None else tmp_path, ESE)
    ese.transmit(h("00A4040007A0000003330101"))
    assert tx(ese, "80010000000001AA").endswith("9000")


def test_powered_off_card_raises(tmp_path):
    se = make_card(tmp_path)
    se.power_off()
    with pytest.raises(CardPoweredOff):
        se.transmit(h("00A4040000"))


def test_deterministic_randomness(tmp_path):
    a = make_card(tmp_path, seed=7)
    first = a.random_bytes(8)
    b = make_card(tmp_path, seed=7)
    assert b.random_bytes(8) == first
    c = make_card(tmp_path)
    assert c.random_bytes(8) != c.random_bytes(8)


# --- tearing -------------------------------------------------------------------------------------


def commit_points(tmp_path):
    """Every (point, cut) a commit of this card can be torn at: each byte of the journal and image."""
    se = make_card(tmp_path)
    sizes = {}

    def spy(point, size):
        sizes[point] = size

    se.set_tear_hook(spy)
    tx(se, "00A4040007A0000003330101")
    tx(se, "8001000001AA")
    points = [("apdu.before", 0), ("apdu.after", 0), ("commit.journal_synced", 0), ("commit.renamed", 0),
              ("commit.done", 0)]
    points += [("commit.journal", cut) for cut in range(sizes["commit.journal"] + 1)]
    points += [("commit.image", cut) for cut in range(sizes["commit.image"] + 1)]
    return points


def test_tearing_at_every_byte_leaves_before_or_after(tmp_path):
    points = commit_points(tmp_path / "spy")
    outcomes = {"before": 0, "after": 0}
    for index, (point, cut) in enumerate(points):
        folder = tmp_path / f"t{index}"
        folder.mkdir()
        se = make_card(folder, durable=False)  # the tear is simulated: fsync adds nothing here
        tx(se, "00A4040007A0000003330101")
        tx(se, "8001000001AA")  # n = 1 committed
        before = dumps(se.image.state)
        fired = []

        def hook(p, size, point=point, cut=cut, fired=fired):
            if p == point and not fired:
                fired.append(p)
                return cut
            return None

        se.set_tear_hook(hook)
        with pytest.raises(PowerLost):
            tx(se, "8001000001BB")  # would make n = 2
        se.set_tear_hook(None)
        assert not se.powered
        se.power_on()
        n = se.applet_data(APP1)["n"]
        assert n in (1, 2), (point, cut)
        outcomes["before" if n == 1 else "after"] += 1
        if n == 1:
            assert dumps(se.image.state) == before
        assert not se.image.journal_path.exists()
        assert not se.image.tmp_path.exists()
        # the card keeps working after the tear
        tx(se, "00A4040007A0000003330101")
        assert tx(se, "8001000001CC") == f"CC0{n + 1}9000"
    assert outcomes["before"] > 0
    assert outcomes["after"] > 0
    assert len(points) > 100


def test_corrupt_image_is_a_typed_error(tmp_path):
    from paylab.drivers.se.errors import CardImageError

    path = tmp_path / "card.json"
    path.write_text("{not json")
    with pytest.raises(CardImageError, match=r"card\.json"):
        CardImage(path)
