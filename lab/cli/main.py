"""``paylab`` entry point: builds the parser from the command modules and runs one command.

Contract for scripts: the last line of standard output is the result (hex where the result is
bytes); ``--json`` prints one JSON document instead. Bad input: one line on stderr naming the
argument or field, exit code 2. Anything paylab raises on purpose (``PaylabError``) is reported the
same way; an unexpected internal error is one line too (exit 70) unless ``PAYLAB_DEBUG=1``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from ..protocol.errors import PaylabError
from . import cmd_backend, cmd_crypto, cmd_demo, cmd_gp, cmd_iso8583, cmd_ota, cmd_report, cmd_rigs, cmd_run, cmd_tlv
from .args import OneLineParser, UsageError

COMMAND_MODULES = (cmd_tlv, cmd_crypto, cmd_gp, cmd_ota, cmd_iso8583, cmd_backend, cmd_demo, cmd_rigs, cmd_run,
                   cmd_report)


def build_parser() -> OneLineParser:
    """The full ``paylab`` argument parser."""
    parser = OneLineParser(
        prog="paylab",
        description="paylab: test-lab orchestrator and calculator for PBOC/EMV mobile payments.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = getattr(args, "prog", f"paylab {args.command}")
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        sys.stderr.write(f"{prog}: error: {exc}\n")
        return 2
    except PaylabError as exc:
        sys.stderr.write(f"{prog}: error: {exc}\n")
        return 2
    except BrokenPipeError:
        return 0
    except Exception as exc:  # the CLI never shows a traceback unless asked to
        if os.environ.get("PAYLAB_DEBUG") == "1":
            raise
        sys.stderr.write(f"{prog}: internal error: {type(exc).__name__}: {exc} (PAYLAB_DEBUG=1 for details)\n")
        return 70


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
