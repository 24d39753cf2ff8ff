"""A backend process killed in the middle of an authorisation loses nothing (issue 4, faults).

``paylab backend serve`` runs as a real process; a POS sends a purchase and the process is killed
with SIGKILL before it can answer. After a restart on the same state, the terminal's reversal (and
its repeat) is answered consistently, the cardholder is charged nothing, and the ledger balances.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from paylab.lab import profiles
from paylab.lab.backend.config import load_config
from paylab.lab.backend.context import BackendContext
from paylab.lab.backend.ledger import account_number, cardholder_account
from paylab.lab.backend.terminal_client import TerminalClient, software_card_field55
from paylab.lab.protocol.iso8583 import encode_message, frame


def start(state: Path) -> tuple[subprocess.Popen, dict[str, tuple[str, int]]]:
    paylab = Path(sys.executable).with_name("paylab")
    proc = subprocess.Popen([str(paylab), "backend", "serve", "--state-dir", str(state)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    addresses: dict[str, tuple[str, int]] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline().strip()
        if " listening on " in line:
            name, where = line.split()[0], line.split()[-1]
            host, port = where.rsplit(":", 1)
            addresses[name] = (host, int(port))
        if line == "ready" or (not line and proc.poll() is not None):
            break
    assert "acquirer" in addresses, proc.stderr.read() if proc.poll() is not None else addresses
    return proc, addresses


def reap(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=30)  # waits and closes the pipes


def available(state: Path, account: str) -> int:
    ctx = BackendContext.create(load_config(overrides={"state_dir": state}))
    try:
        ctx.ledger.check_invariants()
        return ctx.ledger.available(account)
    finally:
        ctx.close()


def test_killed_mid_authorisation_then_reversal_is_consistent(tmp_path):
    profile = profiles.load_bundled("pboc_debit_ecash_sm4")
    config = load_config(overrides={"state_dir": tmp_path})
    issuer = config.issuer_for_pan(profile.pan).name
    account = cardholder_account(issuer, account_number(issuer, profile.pan))
    terminal = config.terminals[0]
    before = available(tmp_path, account)

    proc, addresses = start(tmp_path)
    try:
        pos = TerminalClient(*addresses["acquirer"], terminal.tid, terminal.mid, terminal.tmk).connect()
        assert pos.sign_on().response_code == "00"
        field55 = software_card_field55(profile, atc=0x0101, amount=4_200)
        request = pos.financial_request(profile.pan, 4_200, field55=field55, psn=profile.psn,
                                        expiry=profile.expiry[:4])
        pos._requests[request.fields[11]] = request  # the terminal remembers what it sent
        pos._sock.sendall(frame(encode_message(request, "cup-pos", mak=pos.mak), "cup-pos"))
        os.kill(proc.pid, signal.SIGKILL)  # no answer: the POS times out
        proc.wait(30)
        pos.close()
    finally:
        reap(proc)

    # nothing half-written: the ledger balances whether or not the debit was committed
    mid = available(tmp_path, account)
    assert mid in (before, before - 4_200)

    proc, addresses = start(tmp_path)
    try:
        pos2 = TerminalClient(*addresses["acquirer"], terminal.tid, terminal.mid, terminal.tmk).connect()
        assert pos2.sign_on().response_code == "00"
        first = pos2.reverse(request)
        again = pos2.reverse(request)
        assert first.response_code in ("00", "25")
        assert again.response_code == first.response_code  # idempotent, consistent
        pos2.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        assert proc.returncode == 0
    finally:
        reap(proc)
    assert available(tmp_path, account) == before  # the cardholder is charged nothing
