"""Authorisations per second through the ISO 8583 backend over loopback TCP: terminal -> acquirer
(POS dialect, MACed) -> switch -> issuer (ARQC verified, ARPC, ledger posting on SQLite) and back.

The backend (issuers, switch, acquirer) runs in this process, in its own event loop thread
(:func:`paylab.lab.backend.services.run_in_thread`); the load comes from a separate process (an asyncio
client with 50 terminal connections, each signed on, each with its own card so ATCs stay in order, one
request in flight per terminal). Requests are encoded, ARQC'd and MACed before the clock starts.

Prints auth/s, p50/p99/max latency and the response codes, first for one terminal alone (the latency
of an unloaded system), then under load; if the target (2,000 auth/s, p99 < 20 ms)
is missed, a second run under cProfile (server thread only) prints where the server's time goes.
The server's CPU time per authorisation (this process, the client excluded) is printed too: on a
machine shared with other work it is the steadier figure. Numbers, not assertions. TEST keys and
TEST cards only.

    .venv/bin/python bench/backend_auth.py [--terminals 50] [--per-terminal 200] [--no-profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib.util
import io
import multiprocessing
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from paylab.lab import profiles
from paylab.lab.backend.acquirer import decode_working_keys
from paylab.lab.backend.config import DEFAULTS, load_config
from paylab.lab.backend.context import BackendContext
from paylab.lab.backend.services import new_event_loop, run_in_thread
from paylab.lab.backend.terminal_client import software_card_field55
from paylab.lab.protocol.iso8583 import (
    StreamDeframer,
    decode_message,
    encode_message,
    frame,
    purchase_request,
    sign_on_request,
)

TARGET_RATE = 2000.0
TARGET_P99_MS = 20.0
BIN = "62284877"


def luhn_complete(body: str) -> str:
    """``body`` + its ISO/IEC 7812 check digit."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


def bench_config(state_dir: Path, terminals: int) -> dict:
    """Default issuers plus one bench card per terminal at bank-a (no daily limit), and N terminals."""
    issuers = [dict(i) for i in DEFAULTS["issuers"]]
    pans = [luhn_complete(f"{BIN}{n:07d}") for n in range(terminals)]
    issuers[0]["accounts"] = [
        {"pan": "6228488800000010", "kind": "debit", "balance_fen": 1_000_000, "daily_limit_fen": 500_000},
        {"pan": "6228488800000010", "kind": "ecash", "balance_fen": 38787},
        {"pan": "6228488800000028", "kind": "ecash", "balance_fen": 5000},
        *({"pan": pan, "kind": "debit", "balance_fen": 10**11} for pan in pans),
    ]
    tids = [{"tid": f"BENCH{n:03d}", "mid": f"8984401541{n:05d}", "tmk": f"{n:032X}", "name": f"BENCH {n}"}
            for n in range(terminals)]
    return {"state_dir": str(state_dir), "issuers": issuers, "terminals": tids}


# -- the load generator (separate process) ---------------------------------------------------------------


async def _terminal(host, port, term, count, offset, ready, start_evt, results):
    tid, mid, tmk_hex, pan = term
    reader, writer = await asyncio.open_connection(host, port)
    deframer = StreamDeframer("cup-pos")

    async def exchange(body: bytes) -> bytes:
        writer.write(frame(body, "cup-pos"))
        while True:
            data = await reader.read(65536)
            if not data:
                raise ConnectionError("the acquirer closed the connection")
            msgs = deframer.feed(data)
            if msgs:
                return msgs[0]

    sign_on = encode_message(sign_on_request(stan=offset + 1, terminal_id=tid, merchant_id=mid), "cup-pos")
    answer = decode_message(await exchange(sign_on), "cup-pos")
    assert answer.response_code == "00", answer.response_code
    _, mak = decode_working_keys(bytes.fromhex(tmk_hex), answer.fields[62])
    batch = int(answer.fields[60][2:8])
    profile = profiles.load_bundled("pboc_debit_ecash_sm4")
    keys = profile.keys.issuer.card_keys(pan, "00")
    bodies = []
    for i in range(offset, offset + count):
        f55 = software_card_field55(profile, atc=i + 1, amount=100 + i % 1000, keys=keys)
        msg = purchase_request(pan=pan, amount=100 + i % 1000, stan=i + 2, terminal_id=tid, merchant_id=mid,
                               field55=f55, psn="000", batch=batch)
        bodies.append(encode_message(msg, "cup-pos", mak=mak))
    ready.append(tid)
    await start_evt.wait()
    for body in bodies:
        t0 = time.perf_counter()
        raw = await exchange(body)
        results.append((time.perf_counter() - t0, raw))
    writer.close()


async def _load(host, port, terms, count, offset, out):
    start_evt = asyncio.Event()
    ready: list[str] = []
    results: list = []
    tasks = [asyncio.ensure_future(_terminal(host, port, term, count, offset, ready, start_evt, results))
             for term in terms]
    while len(ready) < len(tasks):
        await asyncio.sleep(0.02)
        for task in tasks:
            if task.done() and task.exception() is not None:
                raise task.exception()
    t0 = time.perf_counter()
    start_evt.set()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t0
    codes: dict[str, int] = defaultdict(int)
    for _, raw in results:
        codes[decode_message(raw, "cup-pos").response_code or "??"] += 1
    out.put({"elapsed": elapsed, "latencies": [lat for lat, _ in results], "codes": dict(codes)})


def client_process(host, port, terms, count, offset, out, fast_loop=False):
    loop = new_event_loop(fast=fast_loop)
    try:
        loop.run_until_complete(_load(host, port, terms, count, offset, out))
    finally:
        loop.close()


def run_load(addresses, terms, count, offset=0, fast_loop=False):
    """Start the client process, wait for its result (the clock runs only while requests fly)."""
    mp = multiprocessing.get_context("spawn")
    out = mp.Queue()
    host, port = addresses["acquirer"]
    proc = mp.Process(target=client_process, args=(host, port, terms, count, offset, out, fast_loop))
    proc.start()
    try:
        return out.get(timeout=900)
    finally:
        proc.join(60)


# -- reporting -----------------------------------------------------------------------------------------------


def report(label, result):
    lat = sorted(result["latencies"])
    n = len(lat)
    rate = n / result["elapsed"]
    p50 = statistics.median(lat) * 1000
    p99 = lat[min(n - 1, int(n * 0.99))] * 1000
    print(f"{label}: {n} auths in {result['elapsed']:.2f} s = {rate:,.0f} auth/s; latency p50 {p50:.2f} ms, "
          f"p99 {p99:.2f} ms, max {lat[-1] * 1000:.1f} ms; response codes {result['codes']}")
    return rate, p99


AREAS = (
    # (label, ((file suffix, function), ...)): cumulative time of functions that do not nest in each other;
    # labels starting with spaces are parts of the line above and are not added up
    ("Ledger.post, 3 per auth (its SQL included)", (("backend/ledger.py", "post"),)),
    ("the hosts' own SQL (log, replies, card, ATC)", (("sqlalchemy/orm/session.py", "execute"),)),
    ("transactions: session, BEGIN, COMMIT", (("backend/iso_tcp.py", "write"), ("backend/iso_tcp.py", "read"))),
    ("  of which sqlite3 COMMIT (WAL append)", (("~", "<method 'commit' of 'sqlite3.Connection' objects>"),)),
    ("ISO 8583 encode/decode (pyiso8583 + core)", (("iso8583/messages.py", "encode_message"),
                                                   ("iso8583/messages.py", "decode_message"))),
    ("  of which field-64 MAC (CUP ECB MAC)", (("iso8583/mac.py", "pos_mac"),)),
    ("EMV crypto (ARQC, ARPC, script MAC)", (("backend/issuer.py", "_verify"), ("backend/issuer.py", "arpc"),
                                            ("backend/issuer.py", "script"))),
)


def profile_summary(prof: cProfile.Profile, auths: int) -> None:
    """Where the server thread's time goes, per authorisation (profiled times: about 2x the real ones)."""
    stats = pstats.Stats(prof)
    table = stats.stats  # type: ignore[attr-defined]

    def cumulative(targets) -> float:
        total = 0.0
        for (filename, _line, name), (_cc, _nc, _tt, ct, _callers) in table.items():
            if any(filename.endswith(suffix) and name == fn for suffix, fn in targets):
                total += ct
        return total

    handled = cumulative((("backend/iso_tcp.py", "_handle"),))
    busy = sum(tt for (_cc, _nc, tt, _ct, _callers) in table.values()) - cumulative(
        (("~", "<method 'poll' of 'select.epoll' objects>"),))
    print(f"\nserver thread under cProfile: {busy / auths * 1e6:,.0f} us busy per auth "
          f"({handled / auths * 1e6:,.0f} us inside the three hosts' message handlers)")
    accounted = 0.0
    for label, targets in AREAS:
        secs = cumulative(targets)
        if not label.startswith("  "):
            accounted += secs
        print(f"  {label:46s} {secs / auths * 1e6:8,.0f} us/auth  {100 * secs / busy:5.1f} %")
    rest = busy - accounted
    print(f"  {'rest (asyncio, sockets, routing, logging)':46s} {rest / auths * 1e6:8,.0f} us/auth  "
          f"{100 * rest / busy:5.1f} %")
    stream = io.StringIO()
    pstats.Stats(prof, stream=stream).sort_stats("tottime").print_stats(12)
    print("\n".join(line for line in stream.getvalue().splitlines() if line.strip()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--terminals", type=int, default=50)
    parser.add_argument("--per-terminal", type=int, default=200)
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--event-loop", choices=("auto", "asyncio", "uvloop"), default="asyncio",
                        help="auto: uvloop when installed (optional dependency), else asyncio")
    args = parser.parse_args()
    if args.event_loop == "auto":
        args.event_loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    elif args.event_loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
        parser.error("uvloop is not installed (pip install uvloop)")
    fast = args.event_loop == "uvloop"

    folder = Path(tempfile.mkdtemp(prefix="paylab-bench-auth-"))
    try:
        config = load_config(overrides=bench_config(folder, args.terminals))
        ctx = BackendContext.create(config)
        terms = [(t.tid, t.mid, t.tmk.hex(), luhn_complete(f"{BIN}{n:07d}")) for n, t in enumerate(config.terminals)]
        running = run_in_thread(ctx, fast_loop=fast)
        try:
            print(f"backend on {running.addresses['acquirer']} (SQLite WAL at {config.database_url}); "
                  f"{args.terminals} terminals x {args.per_terminal} purchases; event loop {args.event_loop}")
            report("unloaded (1 terminal, sequential)", run_load(running.addresses, terms[:1], 200, fast_loop=fast))
            offset = 1000
            cpu0 = time.process_time()
            rate, p99 = report(f"loaded ({len(terms)} terminals)",
                               run_load(running.addresses, terms, args.per_terminal, offset=offset, fast_loop=fast))
            cpu = (time.process_time() - cpu0) / (len(terms) * args.per_terminal)
            print(f"server CPU {cpu * 1e6:,.0f} us/auth (so at most {1 / cpu:,.0f} auth/s on one free core; "
                  f"independent of other load on the machine, unlike the rate); load average "
                  f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}")
            ok = rate >= TARGET_RATE and p99 < TARGET_P99_MS
            print(f"target {TARGET_RATE:,.0f} auth/s with p99 < {TARGET_P99_MS:.0f} ms: {'met' if ok else 'MISSED'}")
            if not ok and not args.no_profile:
                prof = cProfile.Profile()
                running.call_soon(prof.enable)
                report("run 2 (server under cProfile)",
                       run_load(running.addresses, terms, args.per_terminal, offset=offset + args.per_terminal + 10,
                                fast_loop=fast))
                running.call_soon(prof.disable)
                profile_summary(prof, args.terminals * args.per_terminal)
            ctx.ledger.check_invariants()
        finally:
            running.stop()
            ctx.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
