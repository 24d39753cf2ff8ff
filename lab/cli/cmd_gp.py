"""``paylab gp wrap``: the host (TSM) side of a GlobalPlatform secure channel, as a trace.

Given the static keys, the host challenge and the card's INITIALIZE UPDATE response, it checks the
card cryptogram, prints the EXTERNAL AUTHENTICATE command, then each given command wrapped at the
requested security level, one C-APDU per line (GP Card Spec 2.3 Annex E; Amendment D).
"""

from __future__ import annotations

import argparse

from ..protocol.gp import Scp02Session, Scp03Session, StaticKeys
from .args import UsageError, hex_bytes, sized_hex
from .output import emit, hexs

_IU_LENGTHS = {"02": (28,), "03": (29, 32)}


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``gp wrap``."""
    p = sub.add_parser("gp", help="GlobalPlatform secure channels")
    gsub = p.add_subparsers(dest="gp_command", metavar="SUBCOMMAND", required=True)
    w = gsub.add_parser("wrap", help="EXTERNAL AUTHENTICATE and wrapped commands for SCP02/SCP03 (host side)")
    w.add_argument("--scp", choices=("02", "03"), required=True)
    w.add_argument("--enc", type=sized_hex(16, 24, 32, name="--enc"), required=True, help="static ENC key")
    w.add_argument("--mac", type=sized_hex(16, 24, 32, name="--mac"), required=True, help="static MAC key")
    w.add_argument("--dek", type=sized_hex(16, 24, 32, name="--dek"),
                   help="static DEK (only PUT KEY/STORE DATA key wrapping uses it; defaults to --enc)")
    w.add_argument("--level", type=sized_hex(1, name="--level"), required=True,
                   help="security level: 01 C-MAC, 03 +C-DECRYPTION, 11/13/33 with R-MAC/R-ENC")
    w.add_argument("--host-challenge", type=sized_hex(8, name="--host-challenge"), required=True)
    w.add_argument("--iu-response", type=hex_bytes, required=True,
                   help="INITIALIZE UPDATE response data (a trailing 9000 is accepted)")
    w.add_argument("--i", type=sized_hex(1, name="--i"), default=b"\x55",
                   help="SCP02 implementation option i (default 55); SCP03 reads it from the response")
    w.add_argument("--json", action="store_true")
    w.add_argument("apdus", nargs="*", type=hex_bytes, metavar="APDU", help="plain C-APDUs to wrap, in order")
    w.set_defaults(func=run_wrap, prog=w.prog)


def _response_data(args: argparse.Namespace) -> bytes:
    data = args.iu_response
    lengths = _IU_LENGTHS[args.scp]
    if len(data) - 2 in lengths and data[-2:] == b"\x90\x00":
        data = data[:-2]
    if len(data) not in lengths:
        allowed = " or ".join(str(n) for n in lengths)
        raise UsageError(f"argument --iu-response: SCP{args.scp} response data is {allowed} bytes, got {len(data)}")
    return data


def run_wrap(args: argparse.Namespace) -> int:
    keys = StaticKeys(args.enc, args.mac, args.dek or args.enc)
    data = _response_data(args)
    level = args.level[0]
    if args.scp == "02":
        session: Scp02Session | Scp03Session = Scp02Session.host_from_init_update_response(
            keys, args.host_challenge, data, level, i=args.i[0])
    else:
        session = Scp03Session.host_from_init_update_response(keys, args.host_challenge, data, level)
    trace = [hexs(session.external_authenticate())]
    trace.extend(hexs(session.wrap(apdu)) for apdu in args.apdus)
    return emit(trace[:-1], trace[-1], as_json=args.json,
                data={"scp": args.scp, "level": f"{level:02X}", "external_authenticate": trace[0],
                      "wrapped": trace[1:]})
