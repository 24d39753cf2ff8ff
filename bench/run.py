"""Protocol-core micro-benchmarks: microseconds per operation (``make bench``).

Prints a table of µs/op and ops/s for the operations every transaction pays for. Numbers, not
assertions: the figures go into the issue notes, and regressions are spotted by comparing runs.
"""

from __future__ import annotations

import platform
import sys
import timeit
from collections.abc import Callable

from paylab.lab.protocol import tlv
from paylab.lab.protocol.crypto import emv
from paylab.lab.protocol.gp import Scp03Session, StaticKeys
from paylab.lab.protocol.iso8583 import encode_message, purchase_request

h = bytes.fromhex

# The brief's real qPBOC GPO response shape (template 77: AIP, ATC, track 2, IAD, ARQC, PSN, CTQ, 9F5D).
GPO_RESPONSE = tlv.Tlv.build(
    0x77, tlv.Tlv(0x82, h("7C00")), tlv.Tlv(0x9F36, h("0ADC")),
    tlv.Tlv(0x57, h("6228488800001232D30122200000000000000F")),
    tlv.Tlv(0x9F10, h("07010103A00000010A010000038787868FD1FC")), tlv.Tlv(0x9F26, h("AD03EE811AFAD484")),
    tlv.Tlv(0x5F34, h("01")), tlv.Tlv(0x9F6C, h("0000")), tlv.Tlv(0x9F5D, h("000000038787"))).encode()
MK = h("0123456789ABCDEFFEDCBA9876543210")  # TEST KEY
AC_DATA = h("000000000100000000000000015600000000000156261125002B29EBE47C000ADC03A00000")
ATC = h("0ADC")


def _scp03_session() -> Scp03Session:
    keys = StaticKeys.gp_default_test_keys()
    host_challenge = bytes(8)
    iu = Scp03Session.host_initialize_update(keys, host_challenge)
    card, response = Scp03Session.card_respond_init_update(keys, iu, sequence_counter=b"\x00\x00\x01",
                                                           card_challenge=bytes(8))
    host = Scp03Session.host_from_init_update_response(keys, host_challenge, response, 0x03)
    card.card_external_authenticate(host.external_authenticate())
    return host


def _bench_cases() -> list[tuple[str, Callable[[], object]]]:
    session = _scp03_session()
    store_data = h("80E20000C8") + bytes(range(200))  # 200-byte STORE DATA, wrapped at C-MAC + C-DEC
    msg = purchase_request(pan="6228488800001232", amount=100, stan=1, terminal_id="PAYLAB01",
                           merchant_id="898310048990001", field55=GPO_RESPONSE[2:])
    mak = h("0123456789ABCDEF")  # TEST KEY
    return [
        (f"TLV decode of a qPBOC GPO response ({len(GPO_RESPONSE)} B)", lambda: tlv.decode(GPO_RESPONSE)),
        ("ARQC 3DES (PBOC session key + AC)",
         lambda: emv.generate_ac(emv.derive_pboc_session_key(MK, ATC, "3des"), AC_DATA, "3des")),
        ("ARQC SM4 (PBOC session key + AC)",
         lambda: emv.generate_ac(emv.derive_pboc_session_key(MK, ATC, "sm4"), AC_DATA, "sm4")),
        ("ARQC 3DES, AC only (session key cached)",
         lambda: emv.generate_ac(MK, AC_DATA, "3des")),
        ("SCP03 wrap of a 200-byte command (C-MAC + C-DEC)", lambda: session.wrap(store_data)),
        ("ISO 8583 0200 encode + field 64 MAC (cup-pos)", lambda: encode_message(msg, "cup-pos", mak=mak)),
    ]


def measure(fn: Callable[[], object], min_time: float = 0.3) -> float:
    """Best-of-5 µs per call, each repeat running at least ``min_time`` seconds."""
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    number = max(number, int(number * min_time / 0.2))
    best = min(timer.repeat(repeat=5, number=number))
    return best / number * 1e6


def main() -> int:
    print(f"paylab protocol-core micro-benchmarks — Python {platform.python_version()}, "
          f"{platform.machine()}, {sys.platform}")
    print(f"{'operation':<52} {'µs/op':>9} {'ops/s':>10}")
    for name, fn in _bench_cases():
        us = measure(fn)
        print(f"{name:<52} {us:>9.1f} {1e6 / us:>10.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
