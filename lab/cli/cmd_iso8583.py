"""``paylab iso8583 decode``: a field-by-field view of a POS or switch message, PAN masked."""

from __future__ import annotations

import argparse

from ..protocol.iso8583 import StreamDeframer, decode_message, format_message, to_json
from .args import UsageError, hex_bytes, sized_hex
from .output import emit


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``iso8583 decode``."""
    p = sub.add_parser("iso8583", help="ISO 8583 messages (UnionPay POS and switch dialects)")
    isub = p.add_subparsers(dest="iso_command", metavar="SUBCOMMAND", required=True)
    d = isub.add_parser("decode", help="decode a message field by field (field 55 as TLV, PAN masked)")
    d.add_argument("--dialect", choices=("cup-pos", "switch"), required=True)
    d.add_argument("--framed", action="store_true", help="the hex starts with the TCP length prefix")
    d.add_argument("--mak", type=sized_hex(8, 16, name="--mak"), help="verify the MAC (field 64/128) with this key")
    d.add_argument("--reveal", action="store_true", help="show PAN, track 2 and PIN block in clear")
    d.add_argument("--json", action="store_true")
    d.add_argument("hex", type=hex_bytes, metavar="HEX", help="the message in hex")
    d.set_defaults(func=run_decode, prog=d.prog)


def run_decode(args: argparse.Namespace) -> int:
    raw = args.hex
    if args.framed:
        deframer = StreamDeframer(args.dialect)
        bodies = deframer.feed(raw)
        if len(bodies) != 1 or deframer.pending:
            raise UsageError(f"argument HEX: expected exactly one framed message, found {len(bodies)} "
                             f"and {deframer.pending} stray byte(s)")
        raw = bodies[0]
    msg = decode_message(raw, args.dialect, mak=args.mak)
    view = format_message(msg, args.dialect, reveal=args.reveal)
    lines = view.splitlines()
    if args.mak is not None:
        lines.append("MAC: verified")
    result = f"MTI {msg.mti}, {len(msg.fields)} fields"
    return emit(lines, result, as_json=args.json, data=to_json(msg, reveal=args.reveal))
