"""``paylab crypto``: KCVs, ARQC/ARPC and MACs, as a payment test engineer computes them daily.

Keys are never printed, only their KCVs (DEVELOPERS.md security rule); the result is the last line.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..protocol.crypto import emv, mac, primitives
from .args import UsageError, digits, hex_bytes, sized_hex
from .output import emit, hexs

MAC_ALGS = ("iso9797-1-m1", "iso9797-1-m3", "x9.19", "sm4-cbc", "aes-cmac", "cup-ecb")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``crypto`` and its sub-commands."""
    p = sub.add_parser("crypto", help="key check values, ARQC/ARPC, MACs")
    csub = p.add_subparsers(dest="crypto_command", metavar="SUBCOMMAND", required=True)

    k = csub.add_parser("kcv", help="key check value of a key")
    k.add_argument("--alg", choices=("3des", "aes", "sm4"), required=True)
    k.add_argument("--key", type=hex_bytes, required=True, help="key in hex")
    k.add_argument("--variant", choices=("zeros", "gp"), default="zeros",
                   help="zeros: encrypt a zero block (ANSI X9.24); gp: AES over 01s (GP SCP03)")
    k.add_argument("--json", action="store_true")
    k.set_defaults(func=run_kcv, prog=k.prog)

    for name, helptext in (("arqc", "application cryptogram (ARQC/TC/AAC)"),
                           ("arpc", "authorisation response cryptogram")):
        c = csub.add_parser(name, help=helptext)
        c.add_argument("--alg", choices=("3des", "sm4"), required=True)
        c.add_argument("--imk", type=sized_hex(16, name="--imk"), help="issuer master key (Option A derivation)")
        c.add_argument("--pan", type=digits(12, 19, "--pan"), help="PAN, with --imk")
        c.add_argument("--psn", type=digits(1, 2, "--psn"), default=None, help="PAN sequence number, with --imk")
        c.add_argument("--mk", type=sized_hex(16, name="--mk"), help="ICC master key (instead of --imk/--pan/--psn)")
        c.add_argument("--atc", type=sized_hex(2, name="--atc"), required=True, help="ATC, 2 bytes hex")
        c.add_argument("--session", choices=("pboc", "emv-csk"), default="pboc",
                       help="session key: PBOC ATC derivation (default) or EMV common session key")
        c.add_argument("--json", action="store_true")
        if name == "arqc":
            c.add_argument("--data", type=hex_bytes, required=True, help="AC input data (CDOL values + CVR)")
            c.set_defaults(func=run_arqc, prog=c.prog)
        else:
            c.add_argument("--arqc", type=sized_hex(8, name="--arqc"), required=True)
            c.add_argument("--arc", type=sized_hex(2, name="--arc"), help="ARC as sent, e.g. 3030 for '00'")
            c.add_argument("--method", choices=("1", "2"), default="1")
            c.add_argument("--csu", type=sized_hex(4, name="--csu"), help="card status update, method 2")
            c.add_argument("--key", choices=("session", "master"), default="session",
                           help="ARPC key: the session key as PBOC does (default) or the ICC master key")
            c.set_defaults(func=run_arpc, prog=c.prog)

    m = csub.add_parser("mac", help="message authentication code")
    m.add_argument("--alg", choices=MAC_ALGS, required=True)
    m.add_argument("--key", type=hex_bytes, required=True)
    m.add_argument("--data", type=hex_bytes, required=True)
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=run_mac, prog=m.prog)


KEY_LENGTHS = {"3des": (8, 16, 24), "aes": (16, 24, 32), "sm4": (16,), "iso9797-1-m1": (8, 16, 24),
               "iso9797-1-m3": (16,), "x9.19": (16,), "sm4-cbc": (16,), "aes-cmac": (16, 24, 32), "cup-ecb": (8, 16)}


def _check_key(alg: str, key: bytes) -> None:
    allowed = KEY_LENGTHS[alg]
    if len(key) not in allowed:
        raise UsageError(f"argument --key: {alg} takes a key of {' or '.join(map(str, allowed))} bytes, "
                         f"got {len(key)}")


def run_kcv(args: argparse.Namespace) -> int:
    _check_key(args.alg, args.key)
    if args.variant == "gp":
        if args.alg != "aes":
            raise UsageError("argument --variant: gp applies to --alg aes only")
        value = primitives.kcv_gp_aes(args.key)
    else:
        value = primitives.kcv(args.key, args.alg)
    return emit([f"alg: {args.alg}", f"key length: {len(args.key)} bytes"], hexs(value),
                as_json=args.json, data={"alg": args.alg, "kcv": hexs(value)})


def _master_key(args: argparse.Namespace) -> tuple[bytes, list[str]]:
    if args.mk is not None:
        if args.imk is not None or args.pan is not None:
            raise UsageError("argument --mk: give either --mk or --imk with --pan, not both")
        return args.mk, [f"MK KCV: {hexs(primitives.kcv(args.mk, args.alg))}"]
    if args.imk is None or args.pan is None:
        raise UsageError("argument --imk: --imk and --pan are required unless --mk is given")
    mk = emv.derive_icc_master_key(args.imk, args.pan, args.psn or "00", args.alg)
    return mk, [
        f"IMK KCV: {hexs(primitives.kcv(args.imk, args.alg))}",
        f"MK KCV (Option A{'' if args.alg == '3des' else ', SM4'}): {hexs(primitives.kcv(mk, args.alg))}",
    ]


def _session_key(args: argparse.Namespace, mk: bytes) -> tuple[bytes, str]:
    if args.session == "emv-csk" and args.alg != "3des":
        raise UsageError("argument --session: emv-csk is defined for 3des only")
    sk = emv.derive_ac_session_key(mk, args.atc, args.session, args.alg)
    return sk, f"SK KCV ({args.session}): {hexs(primitives.kcv(sk, args.alg))}"


def run_arqc(args: argparse.Namespace) -> int:
    mk, lines = _master_key(args)
    sk, sk_line = _session_key(args, mk)
    ac = emv.generate_ac(sk, args.data, args.alg)
    lines.append(sk_line)
    return emit(lines, hexs(ac), as_json=args.json, data={"alg": args.alg, "session": args.session,
                                                          "arqc": hexs(ac)})


def run_arpc(args: argparse.Namespace) -> int:
    mk, lines = _master_key(args)
    if args.key == "master":
        key, key_line = mk, "ARPC key: ICC master key"
    else:
        key, key_line = _session_key(args, mk)
    lines.append(key_line)
    data: dict[str, Any] = {"alg": args.alg, "method": args.method}
    if args.method == "1":
        if args.arc is None:
            raise UsageError("argument --arc: required for method 1")
        arpc = emv.arpc_method1(key, args.arqc, args.arc, args.alg)
    else:
        if args.csu is None:
            raise UsageError("argument --csu: required for method 2")
        arpc = emv.arpc_method2(key, args.arqc, args.csu, b"", args.alg)
    data["arpc"] = hexs(arpc)
    return emit(lines, hexs(arpc), as_json=args.json, data=data)


def compute_mac(alg: str, key: bytes, data: bytes) -> bytes:
    """Dispatch one of :data:`MAC_ALGS`; full MAC value (callers truncate)."""
    if alg == "iso9797-1-m1":
        return mac.iso9797_mac_alg1(key, data, padding="m2", cipher="des" if len(key) == 8 else "3des")
    if alg == "iso9797-1-m3":
        return mac.iso9797_mac_alg3(key, data, padding="m2")
    if alg == "x9.19":
        return mac.x9_19_mac(key, data)
    if alg == "sm4-cbc":
        return mac.sm4_cbc_mac(key, data)
    if alg == "aes-cmac":
        return primitives.aes_cmac(key, data)
    return mac.cup_ecb_mac(key, data)


def run_mac(args: argparse.Namespace) -> int:
    _check_key(args.alg, args.key)
    value = compute_mac(args.alg, args.key, args.data)
    lines = [f"alg: {args.alg}", f"data length: {len(args.data)} bytes"]
    if args.alg == "cup-ecb":
        lines.append(f"ASCII: {value.decode('ascii')}")
    return emit(lines, hexs(value), as_json=args.json, data={"alg": args.alg, "mac": hexs(value)})
