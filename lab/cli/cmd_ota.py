"""``paylab ota wrap``: the SCP80 secured command packet an OTA platform sends (ETSI TS 102 225)."""

from __future__ import annotations

import argparse

from ..protocol.ota import Spi, build_command_packet, build_compact_commands, key_algorithm, key_index
from .args import hex_bytes, sized_hex
from .output import emit, hexs


def _counter(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError("not an integer") from None
    if not 0 <= value < 1 << 40:
        raise argparse.ArgumentTypeError("must fit in 5 bytes (0 to 2^40-1)")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``ota wrap``."""
    p = sub.add_parser("ota", help="SCP80 over-the-air secured packets")
    osub = p.add_subparsers(dest="ota_command", metavar="SUBCOMMAND", required=True)
    w = osub.add_parser("wrap", help="build an SCP80 command packet around C-APDUs (compact RAM format)")
    w.add_argument("--spi", type=sized_hex(2, name="--spi"), required=True, help="security parameter indicator")
    w.add_argument("--kic", type=sized_hex(1, name="--kic"), required=True, help="KIc byte: key index | algorithm")
    w.add_argument("--kid", type=sized_hex(1, name="--kid"), required=True, help="KID byte: key index | algorithm")
    w.add_argument("--kic-key", type=hex_bytes, required=True)
    w.add_argument("--kid-key", type=hex_bytes, required=True)
    w.add_argument("--tar", type=sized_hex(3, name="--tar"), required=True, help="toolkit application reference")
    w.add_argument("--counter", type=_counter, required=True, help="CNTR value (decimal or 0x..)")
    w.add_argument("--no-udh", action="store_true", help="omit the 02 70 00 user data header")
    w.add_argument("--json", action="store_true")
    w.add_argument("apdus", nargs="+", type=hex_bytes, metavar="APDU", help="C-APDUs in hex, in order")
    w.set_defaults(func=run_wrap, prog=w.prog)


def run_wrap(args: argparse.Namespace) -> int:
    spi = Spi.decode(args.spi)
    kic, kid = args.kic[0], args.kid[0]
    data = build_compact_commands(args.apdus)
    packet = build_command_packet(
        spi=spi, kic=kic, kid=kid, kic_key=args.kic_key, kid_key=args.kid_key,
        tar=args.tar, counter=args.counter, data=data, udh=not args.no_udh,
    )
    lines = [
        f"SPI {hexs(args.spi)}: counter {spi.counter.name}, ciphering {'on' if spi.ciphering else 'off'}, "
        f"{spi.checksum.name}, PoR {spi.por.name}",
        f"KIc {kic:02X}: key {key_index(kic)} alg {key_algorithm(kic):X}; "
        f"KID {kid:02X}: key {key_index(kid)} alg {key_algorithm(kid):X}",
        f"TAR {hexs(args.tar)}, CNTR {args.counter:010X}, {len(args.apdus)} APDU(s), {len(packet)} bytes",
    ]
    return emit(lines, hexs(packet), as_json=args.json,
                data={"spi": hexs(args.spi), "tar": hexs(args.tar), "counter": args.counter,
                      "packet": hexs(packet)})
