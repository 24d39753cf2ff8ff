"""Smoke: the rig answers (used by quick campaigns and the runner's own tests)."""

import pytest

from paylab.lab.protocol.apdu import CommandApdu, ResponseApdu

PPSE = CommandApdu(0x00, 0xA4, 0x04, 0x00, b"2PAY.SYS.DDF01", 256).encode()


@pytest.mark.requirements("REQ-DRV-PCSC-01")
@pytest.mark.needs("pcsc-contactless")
def test_contactless_reader_selects_ppse(lab, trace_transport):
    reader = trace_transport(lab.reader("contactless"))
    reader.wait_for_card(5)
    reader.power_on()
    assert ResponseApdu.decode(reader.transmit(PPSE)).sw == 0x9000
