"""Terminal kernel pieces without an emulated SE: config, outcome (field 55, masking), PPSE selection order
against a scripted card."""

from __future__ import annotations

from collections.abc import Callable

from paylab.drivers.direct import DirectReader
from paylab.drivers.protocols.card import Interface
from paylab.drivers.terminal import FIELD55_TAGS, AidEntry, ContactlessKernel, KernelOutcome, Outcome, TerminalConfig
from paylab.lab.protocol.iso8583 import field55_decode
from paylab.lab.protocol.oda import TestCa
from paylab.lab.protocol.tlv import Tlv

h = bytes.fromhex
DEBIT, ECASH = h("A000000333010101"), h("A000000333010106")


def test_config_ca_keys_aids_and_repr() -> None:
    ca = TestCa(0xF1, algorithm="sm2")
    config = TerminalConfig(pin="1234").with_ca_keys(ca.public_key)
    assert config.ca_key(h("A000000333"), 0xF1) == ca.public_key
    assert config.ca_key(h("A000000333"), 0xF0) is None
    assert TerminalConfig().ca_keys == {}  # with_ca_keys copies
    assert config.aid_entry(DEBIT + b"\x01") == config.aids[0]  # partial selection
    assert config.replace(aids=(AidEntry(DEBIT, partial=False),)).aid_entry(DEBIT + b"\x01") is None
    assert "1234" not in repr(config)
    assert "A000000333/F1" in repr(config)
    assert config.terminal_values()[0xDF69] == b"\x01"


def test_field55_order_and_masking() -> None:
    track2 = h("6217009900000000014D291122000000000000")  # 38 digits, as cps builds it
    outcome = KernelOutcome(
        Outcome.ONLINE_REQUEST, cid=0x80, pan="6217009900000000014", track2=track2,
        terminal={0x9F02: h("000000012345"), 0x9F37: h("01020304"), 0x84: DEBIT, 0x9F4E: b"SHOP"},
        card={0x9F26: bytes(8), 0x82: h("7C00"), 0x57: track2, 0x9F36: h("0001"), 0x9F10: bytes(19)},
    )
    objects = field55_decode(outcome.field55())
    tags = [obj.tag for obj in objects]
    assert tags == [0x9F26, 0x9F27, 0x9F10, 0x9F37, 0x9F36, 0x9F02, 0x82, 0x84]
    assert set(tags) <= set(FIELD55_TAGS)
    assert Tlv(0x9F27, b"\x80") in objects  # a qPBOC online response has no 9F27: the reader adds it
    assert outcome.track2_str() == "6217009900000000014D29112200000000000"  # 37: trimmed for field 35
    assert outcome.track2_str(None) == "6217009900000000014D291122000000000000"
    assert "6217009900000000014" not in repr(outcome)
    assert outcome.masked_pan == "621700*********0014"
    assert outcome.atc == 1


class ScriptedCard:
    """A card answering from a table ``{command prefix: response}``; records what it was sent."""

    def __init__(self, answers: dict[bytes, bytes]) -> None:
        self.answers = answers
        self.sent: list[bytes] = []

    def power_on(self, interface: Interface = "contact") -> bytes:
        return h("3B8080010101")

    def power_off(self) -> None:
        pass

    def transmit(self, raw: bytes, *, interface: Interface | None = None) -> bytes:
        self.sent.append(raw)
        for prefix, answer in self.answers.items():
            if raw.startswith(prefix):
                return answer
        return h("6D00")


def _select(name: bytes) -> bytes:
    return bytes([0x00, 0xA4, 0x04, 0x00, len(name)]) + name


def _directory(*entries: tuple[bytes, int]) -> bytes:
    apps = [Tlv.build(0x61, Tlv(0x4F, aid), Tlv(0x87, bytes([priority]))) for aid, priority in entries]
    fci = Tlv.build(0x6F, Tlv(0x84, b"2PAY.SYS.DDF01"), Tlv.build(0xA5, Tlv.build(0xBF0C, *apps)))
    return fci.encode() + h("9000")


def _kernel(card: ScriptedCard, **changes: object) -> Callable[..., KernelOutcome]:
    return ContactlessKernel(DirectReader(card), TerminalConfig().replace(**changes)).perform


def test_ppse_selection_by_priority_then_next_candidate() -> None:
    unknown = h("A0000000031010")
    fci = Tlv.build(0x6F, Tlv(0x84, ECASH), Tlv.build(0xA5, Tlv(0x9F38, h("9F6604")))).encode() + h("9000")
    card = ScriptedCard({
        _select(b"2PAY.SYS.DDF01"): _directory((ECASH, 2), (unknown, 1), (DEBIT, 1)),
        _select(DEBIT): h("6A82"),  # priority 1, but its SELECT fails: the next candidate is tried
        _select(ECASH): fci,
        h("80A80000"): h("6985"),
    })
    outcome = _kernel(card)(100)
    assert [raw[5:5 + raw[4]] for raw in card.sent[:3]] == [b"2PAY.SYS.DDF01", DEBIT, ECASH]
    assert card.sent[3] == h("80A80000068304") + TerminalConfig().ttq + b"\x00"
    assert outcome.outcome is Outcome.TRY_ANOTHER_INTERFACE
    assert outcome.aid == ECASH
    assert outcome.sw == 0x6985


def test_malformed_card_answers_end_the_application() -> None:
    card = ScriptedCard({_select(b"2PAY.SYS.DDF01"): h("6F05840102"), b"": h("9000")})
    assert _kernel(card)(100).outcome is Outcome.END_APPLICATION
    no_ppse = ScriptedCard({})
    outcome = _kernel(no_ppse)(100)
    assert outcome.outcome is Outcome.END_APPLICATION
    assert outcome.sw == 0x6D00
    fci = Tlv.build(0x6F, Tlv(0x84, DEBIT)).encode() + h("9000")
    format1 = ScriptedCard({_select(b"2PAY.SYS.DDF01"): _directory((DEBIT, 1)), _select(DEBIT): fci,
                            h("80A8"): h("80067C0008010101") + h("9000")})
    assert _kernel(format1)(100).outcome is Outcome.TRY_ANOTHER_INTERFACE  # template 80: use contact
    incomplete = ScriptedCard({_select(b"2PAY.SYS.DDF01"): _directory((DEBIT, 1)), _select(DEBIT): fci,
                               h("80A8"): Tlv.build(0x77, Tlv(0x82, h("7C00"))).encode() + h("9000")})
    result = _kernel(incomplete)(100)
    assert result.outcome is Outcome.END_APPLICATION
    assert "9F36" in result.reason
