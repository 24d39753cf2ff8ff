"""NFC taps over nfcpy's UDP pseudo-driver on loopback: NfcReader -> NfcCardEmulator -> issued eSE.

Prints the median activation time (sense + RATS/ATS + card power-on), the APDU round trip (SELECT
PPSE) and a 7-APDU qPBOC flow (PPSE, SELECT, GPO online, READ RECORD, 3 x GET DATA). TEST keys.
Numbers, not assertions.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path

from paylab.drivers.nfc import NfcCardEmulator, NfcReader, free_udp_path
from paylab.drivers.se.form_factor import ESE
from paylab.drivers.se.runtime import SecureElement
from paylab.lab import profiles
from paylab.lab.issuance import issued_se
from paylab.lab.protocol import cps, dol, tlv
from paylab.lab.protocol.apdu import CommandApdu, ResponseApdu

h = bytes.fromhex
PPSE = CommandApdu(0x00, 0xA4, 0x04, 0x00, b"2PAY.SYS.DDF01", 256).encode()


def issue(folder: Path) -> tuple[SecureElement, profiles.PbocProfile]:
    profile = profiles.load_bundled("pboc_debit_ecash_sm4")
    se = issued_se(folder / "ese.card", ESE, profile, oda=cps.generate_oda_chain(profile, seed_or_rng=7), seed=1)
    return se, profile


def qpboc(reader: NfcReader, profile: profiles.PbocProfile) -> int:
    def send(cmd: CommandApdu) -> bytes:
        response = ResponseApdu.decode(reader.transmit(cmd.encode()))
        if response.sw != 0x9000:
            raise RuntimeError(f"{cmd.ins:02X} answered {response.sw:04X}")
        return response.data

    aid = tlv.find(tlv.decode(send(CommandApdu(0x00, 0xA4, 0x04, 0x00, b"2PAY.SYS.DDF01", 256))), 0x4F).value
    pdol = tlv.find(tlv.decode(send(CommandApdu(0x00, 0xA4, 0x04, 0x00, aid, 256))), 0x9F38).value  # type: ignore[union-attr]
    values = {0x9F66: h("36800000"), 0x9F02: cps.amount_n12(100), 0x9F03: bytes(6), 0x9F1A: h("0156"),
              0x95: bytes(5), 0x5F2A: h("0156"), 0x9A: h("260115"), 0x9C: b"\x00", 0x9F37: h("11223344"),
              0xDF69: b"\x01"}
    send(CommandApdu(0x80, 0xA8, 0, 0, dol.gpo_command_data(dol.build_dol_data(pdol, values, kernel="A000000333")),
                     256))
    send(CommandApdu(0x00, 0xB2, 1, 1 << 3 | 4, le=256))
    for tag in (0x9F79, 0x9F36, 0x9F13):
        send(CommandApdu(0x80, 0xCA, tag >> 8, tag & 0xFF, le=256))
    return 7


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="paylab-nfc-bench-"))
    try:
        se, profile = issue(folder)
        path = free_udp_path()
        with NfcCardEmulator(path, name="bench-handset") as emulator, NfcReader(path, name="bench-pos") as reader:
            emulator.present(se)
            reader.wait_for_card(5)
            activation, round_trip, flow = [], [], []
            for _ in range(30):
                start = time.perf_counter()
                reader.power_on()
                activation.append(time.perf_counter() - start)
                reader.power_off()
            reader.power_on()
            for _ in range(500):
                start = time.perf_counter()
                reader.transmit(PPSE)
                round_trip.append(time.perf_counter() - start)
            for _ in range(30):
                reader.power_off()
                reader.power_on()
                start = time.perf_counter()
                qpboc(reader, profile)
                flow.append(time.perf_counter() - start)
            events = emulator.events
        for label, samples in (("activation (sense + RATS/ATS + card power-on)", activation),
                               ("APDU round trip (SELECT PPSE)", round_trip),
                               ("7-APDU qPBOC flow (online GPO, SM4)", flow)):
            print(f"nfc {label:<48} {statistics.median(samples) * 1000:7.2f} ms median")
        print(f"emulator: {events.activations} activations, {emulator.apdu_count} APDUs, "
              f"{events.retransmissions} retransmissions, {events.wtx_sent} S(WTX)")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
