"""Emulated secure element throughput, in process: APDUs per second for SELECT, qPBOC GPO (online,
SM4) and an SCP03-wrapped STORE DATA, with the card image on disk (fsync per commit) and without fsync.

The card is issued the way the tests issue it (blank card, SCP03, SSD, load, install, STORE DATA)
with TEST keys. Numbers, not assertions: they go into the issue notes.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from paylab.drivers.se.applets import pboc
from paylab.drivers.se.catalog_default import default_catalog
from paylab.drivers.se.factory import fabricate
from paylab.drivers.se.form_factor import ESE
from paylab.drivers.se.gp.content import build_load_file
from paylab.drivers.se.image import CardImage
from paylab.drivers.se.runtime import SecureElement
from paylab.lab import profiles
from paylab.lab.gp_client import GpClient
from paylab.lab.protocol import cps, dol, tlv
from paylab.lab.protocol.apdu import CommandApdu
from paylab.lab.protocol.gp import Scp03Session, StaticKeys
from paylab.lab.protocol.gp import commands as gp

h = bytes.fromhex
KEYS = StaticKeys.gp_default_test_keys()  # TEST KEYS
SECOND_AID = h("A000000333010101FF")


def issue(folder: Path, durable: bool) -> tuple[SecureElement, profiles.PbocProfile]:
    profile = profiles.load_bundled("pboc_debit_ecash_sm4")
    image = CardImage(folder / "card.json", durable=durable)
    fabricate(image, ESE)
    se = SecureElement(image, ESE, default_catalog(), seed=1)
    se.power_on()
    client = GpClient(se.transmit)
    client.open_secure_channel(se.registry.isd().aid, KEYS)
    client.load(pboc.PACKAGE_AID, build_load_file(pboc.PACKAGE, code_size=3000))
    client.install(pboc.PACKAGE_AID, pboc.MODULE_AID, profile.aid)
    client.install(pboc.PACKAGE_AID, pboc.MODULE_AID, SECOND_AID)
    client.personalise(profile.aid, cps.prepare_pboc(profile, oda=cps.generate_oda_chain(profile, seed_or_rng=1)))
    client.set_contactless(profile.aid, priority=1)
    return se, profile


def rate(fn, count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        fn()
    return count / (time.perf_counter() - start)


def bench(durable: bool) -> list[tuple[str, float]]:
    folder = Path(tempfile.mkdtemp(prefix="paylab-bench-"))
    try:
        se, profile = issue(folder, durable)
        results = []
        select = CommandApdu(0x00, 0xA4, 0x04, 0x00, profile.aid, 256).encode()
        se.power_on("contactless")
        results.append(("SELECT AID (contactless)", rate(lambda: se.transmit(select), 3000)))
        values = {0x9F66: h("36800000"), 0x9F02: h("000000000100"), 0x9F03: bytes(6), 0x9F1A: h("0156"),
                  0x95: bytes(5), 0x5F2A: h("0156"), 0x9A: h("261125"), 0x9C: b"\x00", 0x9F37: h("01020304")}
        gpo = CommandApdu(0x80, 0xA8, 0, 0, dol.gpo_command_data(dol.build_dol_data(profile.pdol, values)),
                          256).encode()

        def select_and_gpo() -> None:
            se.transmit(select)
            assert se.transmit(gpo)[-2:] == b"\x90\x00"

        n = 400 if durable else 2000
        results.append(("SELECT + GPO online SM4 (ATC committed) [pairs/s]", rate(select_and_gpo, n)))

        # STORE DATA over SCP03 (C-MAC + C-DEC + R-MAC): wrap a batch first, then time the card alone
        se.power_on("contact")
        client = GpClient(se.transmit).open_secure_channel(se.registry.isd().aid, KEYS, level=0x33)
        assert isinstance(client.session, Scp03Session)
        client.ok(gp.InstallForPersonalization(SECOND_AID).command())
        record = cps.encode_dgi(0x0101, tlv.tlv(0x70, tlv.tlv(0x9F4E, bytes(190))))
        wrapped = [client.session.wrap(CommandApdu(0x80, 0xE2, 0x08, i, record, 256).encode()) for i in range(200)]
        it = iter(wrapped)
        responses: list[bytes] = []
        results.append(("STORE DATA 203 B, SCP03 level 33 (card side)",
                        rate(lambda: responses.append(se.transmit(next(it))), 200)))
        assert all(r[-2:] == b"\x90\x00" for r in responses), responses[0].hex()
        assert se.faults == [], se.faults
        return results
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    print("paylab emulated SE throughput (in process, one core)")
    for durable in (True, False):
        label = "card image fsync'd per commit" if durable else "card image without fsync"
        print(f"-- {label}")
        for name, per_second in bench(durable):
            print(f"   {name:<56} {per_second:>9.0f} /s {1e3 / per_second:>8.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
