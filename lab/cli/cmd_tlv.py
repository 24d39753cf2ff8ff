"""``paylab tlv decode``: an annotated BER-TLV tree with tag names and masked sensitive values."""

from __future__ import annotations

import argparse

from ..protocol import tlv
from ..protocol.trace import mask_tlv_hex
from .args import hex_bytes
from .output import emit, hexs


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``tlv decode``."""
    p = sub.add_parser("tlv", help="BER-TLV tools")
    tsub = p.add_subparsers(dest="tlv_command", metavar="SUBCOMMAND", required=True)
    d = tsub.add_parser("decode", help="decode BER-TLV into an annotated tree")
    d.add_argument("hex", type=hex_bytes, metavar="HEX", help="BER-TLV bytes in hex")
    d.add_argument("--kernel", default="A000000333",
                   help="RID (or AID) whose tag dictionary names the tags (default A000000333, PBOC; "
                        "'emv' for the generic EMV dictionary)")
    d.add_argument("--reveal", action="store_true", help="show sensitive values (PAN, track 2, names) in clear")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=run_decode, prog=d.prog)


def run_decode(args: argparse.Namespace) -> int:
    kernel = None if args.kernel.lower() in ("emv", "none", "") else args.kernel.upper()
    objects = tlv.decode(args.hex)
    encoded = tlv.encode(objects)
    # The result line is the canonical encoding (padding dropped), sensitive values masked with '*'.
    result = hexs(encoded) if args.reveal else (mask_tlv_hex(encoded, kernel) or hexs(encoded))
    tree = tlv.format_tree(objects, kernel=kernel, reveal=args.reveal)
    return emit(tree.splitlines(), result, as_json=args.json,
                data={"kernel": kernel, "objects": tlv.to_json_tree(objects, kernel=kernel, reveal=args.reveal)})
