"""The backend as a process (``paylab backend serve``) and embedded (:class:`EmbeddedBackend`)."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from paylab.lab.backend.config import load_config
from paylab.lab.backend.runner import EmbeddedBackend


def test_serve_prints_addresses_answers_health_and_stops_on_sigterm(tmp_path):
    paylab = Path(sys.executable).with_name("paylab")
    proc = subprocess.Popen([str(paylab), "backend", "serve", "--state-dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.strip())
            if line.strip() == "ready":
                break
        assert "ready" in lines, (lines, proc.stderr.read() if proc.poll() is not None else "")
        listening = {line.split()[0]: line.split()[-1] for line in lines if " listening on " in line}
        assert {"acquirer", "switch", "http", "issuer:bank-a", "issuer:bank-b"} <= set(listening)
        with urllib.request.urlopen(f"http://{listening['http']}/health", timeout=10) as resp:
            assert resp.status == 200
            assert json.loads(resp.read())["status"] == "ok"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert out.strip().endswith("stopped")
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def test_embedded_backend_starts_and_stops_twice_on_the_same_state(tmp_path):
    config = load_config(overrides={"state_dir": tmp_path})
    for _ in range(2):
        with EmbeddedBackend(config) as backend:
            with urllib.request.urlopen(f"{backend.http_url}/health", timeout=10) as resp:
                assert resp.status == 200
            assert set(backend.addresses) >= {"acquirer", "switch", "http"}
            backend.ctx.ledger.check_invariants()


def test_embedded_backend_mounts_the_tsm_network_with_signed_apis(tmp_path):
    config = load_config(overrides={"state_dir": tmp_path})
    with EmbeddedBackend(config) as backend:
        request = urllib.request.Request(f"{backend.http_url}/mtps/se/NO-SUCH-SE")
        try:
            urllib.request.urlopen(request, timeout=10)
            status, body = 200, {}
        except urllib.error.HTTPError as exc:
            status, body = exc.code, json.loads(exc.read())
        assert status == 401  # unsigned institution request refused
        assert "error" in body
        assert backend.tsm is not None
        assert backend.tsm.routers()
