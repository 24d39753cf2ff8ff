"""``paylab backend serve``: run the reference backend as a process until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``backend serve`` and ``backend config``."""
    p = sub.add_parser("backend", help="the bundled reference backend (issuers, switch, acquirer, TSMs, ...)")
    bsub = p.add_subparsers(dest="backend_command", metavar="SUBCOMMAND", required=True)
    s = bsub.add_parser("serve", help="start the backend services and serve until SIGTERM")
    s.add_argument("--config", type=Path, help="backend YAML configuration (default: built-in defaults)")
    s.add_argument("--state-dir", type=Path, help="where the database and clearing files live")
    s.set_defaults(func=run_serve, prog=s.prog)
    c = bsub.add_parser("config", help="validate a configuration file and print the effective settings")
    c.add_argument("--config", type=Path, help="backend YAML configuration (default: built-in defaults)")
    c.set_defaults(func=run_config, prog=c.prog)


def _load(args: argparse.Namespace):  # BackendConfig, imported lazily
    from ..backend.config import load_config

    overrides = {"state_dir": args.state_dir} if getattr(args, "state_dir", None) else None
    return load_config(args.config, overrides=overrides)


def run_config(args: argparse.Namespace) -> int:
    config = _load(args)
    print(f"database: {config.database_url}")
    print(f"listen host: {config.host}; ports: {config.ports}")
    issuers = ", ".join(f"{i.name} (BIN {'/'.join(i.bins)})" for i in config.issuers)
    print(f"issuers: {issuers}")
    print(f"terminals: {', '.join(t.tid for t in config.terminals)}")
    print("config: ok")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    from ..backend.runner import EmbeddedBackend

    config = _load(args)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    backend = EmbeddedBackend(config)
    try:
        backend.start()
        for name, (host, port) in sorted(backend.addresses.items()):
            print(f"{name:<18} listening on {host}:{port}")
        print(f"health             {backend.http_url}/health")
        print("ready", flush=True)
        while not stop.wait(0.5):
            pass
        print("stopping", flush=True)
    finally:
        backend.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    sys.stdout.write("stopped\n")
    return 0
