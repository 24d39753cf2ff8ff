"""Rig hosts over fabric against real private sshd instances on loopback (``ManagedSshd``).

Two servers are shared by the module; the tests that kill or stop a server start their own (~0.1 s).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from invoke.exceptions import CommandTimedOut
from invoke.runners import Result

from paylab.drivers.errors import HostKeyRejected, RigCommandFailed, RigHostUnreachable, SimulationUnavailable
from paylab.drivers.protocols import CommandResult
from paylab.drivers.righost import FabricRigHost, ManagedSshd, run_on_hosts
from paylab.drivers.righost import sshd as sshd_module

DROP_BOUND_S = 10.0


def _host(name: str, sshd: ManagedSshd, **overrides) -> FabricRigHost:
    kwargs = {"key_filename": sshd.client_key_path, "known_hosts": sshd.known_hosts_file,
              "connect_timeout": 5, "command_timeout": 60}
    kwargs.update(overrides)
    return FabricRigHost(name, sshd.host, sshd.port, sshd.user, **kwargs)


@pytest.fixture(scope="module")
def servers():
    with ManagedSshd() as first, ManagedSshd() as second:
        yield first, second


@pytest.fixture
def hosts(servers):
    first, second = servers
    with _host("rig-a", first) as a, _host("rig-b", second) as b:
        yield a, b


@pytest.fixture
def own_sshd():
    with ManagedSshd() as sshd:
        yield sshd


@pytest.fixture
def shared_dir(hosts):
    """A directory both servers' sessions can write (same test user, same machine)."""
    a, _ = hosts
    path = a.run("mktemp -d /tmp/paylab-rig-XXXXXX").stdout.strip()
    yield path
    a.run(f"rm -rf {path}", check=False)


def test_two_servers_listen_on_distinct_ports_with_pinned_keys(servers):
    first, second = servers
    assert first.port != second.port
    assert first.known_hosts_line().startswith(f"[127.0.0.1]:{first.port} ssh-ed25519 ")
    assert first.known_hosts_file.read_text().strip() == first.known_hosts_line()
    assert first.host_public_key != second.host_public_key
    assert first.pid is not None
    assert "sshd" in Path(f"/proc/{first.pid}/cmdline").read_bytes().decode(errors="replace")


def test_commands_run_as_the_unprivileged_user(hosts):
    a, _ = hosts
    result = a.run("id -u; id -un")
    uid, name = result.stdout.split()
    assert int(uid) != 0
    assert name == "paylab-rig"
    assert result.ok
    assert result.duration_s > 0


def test_two_hosts_run_in_parallel(hosts, shared_dir):
    # Each command only succeeds if the other one runs at the same time (a rendezvous on two files).
    script = ("touch {dir}/{me}; i=0; while [ ! -e {dir}/{other} ]; do i=$((i+1)); "
              "[ $i -gt 200 ] && exit 7; sleep 0.05; done; echo met")
    a, b = hosts
    results = run_on_hosts([a, b], "true")
    assert all(isinstance(r, CommandResult) for r in results.values())
    threads_out: dict[str, object] = {}

    def go(host: FabricRigHost, me: str, other: str) -> None:
        threads_out[host.name] = host.run(script.format(dir=shared_dir, me=me, other=other), timeout=30)

    workers = [threading.Thread(target=go, args=(a, "a", "b")), threading.Thread(target=go, args=(b, "b", "a"))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert {name: r.stdout.strip() for name, r in threads_out.items()} == {"rig-a": "met", "rig-b": "met"}


def test_env_values_are_quoted(hosts):
    a, _ = hosts
    value = "two words; $(echo injected) 'quoted' \"dq\""
    assert a.run('printf %s "$PAYLAB_X"', env={"PAYLAB_X": value}).stdout == value
    with pytest.raises(ValueError, match="shell identifier"):
        a.run("true", env={"BAD-NAME": "x"})


def test_put_get_round_trip(hosts, tmp_path):
    a, _ = hosts
    payload = os.urandom(256 * 1024)
    local = tmp_path / "firmware.bin"
    local.write_bytes(payload)
    remote = f"paylab-put-{uuid.uuid4().hex}.bin"
    try:
        a.put(local, remote)
        remote_digest = a.run(f"sha256sum {remote}").stdout.split()[0]
        assert remote_digest == hashlib.sha256(payload).hexdigest()
        back = tmp_path / "back.bin"
        a.get(remote, back)
        assert back.read_bytes() == payload
    finally:
        a.run(f"rm -f {remote}", check=False)


def test_get_of_a_missing_remote_file(hosts, tmp_path):
    a, _ = hosts
    with pytest.raises(RigCommandFailed, match="no such file"):
        a.get("does-not-exist.bin", tmp_path / "x.bin")
    assert not (tmp_path / "x.bin").exists()


def test_nonzero_exit(hosts):
    a, _ = hosts
    with pytest.raises(RigCommandFailed) as caught:
        a.run("echo flashing failed >&2; exit 3")
    assert caught.value.exit_status == 3
    assert "flashing failed" in caught.value.stderr
    assert "rig-a" in str(caught.value)
    assert not caught.value.infrastructure
    result = a.run("exit 4", check=False)
    assert result.exit_status == 4
    assert not result.ok


def test_health_round_trip(hosts):
    a, b = hosts
    assert a.health() > 0
    assert b.health() > 0


def test_known_hosts_without_the_key_is_rejected(servers, tmp_path):
    first, second = servers
    with _host("rig-a", first, known_hosts=second.known_hosts_file) as host, \
            pytest.raises(HostKeyRejected, match="not pinned"):
        host.run("true")
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    with _host("rig-a", first, known_hosts=empty) as host, pytest.raises(HostKeyRejected):
        host.run("true")


def test_changed_host_key_is_rejected(servers, tmp_path):
    first, _ = servers
    other = Ed25519PrivateKey.generate().public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                                  serialization.PublicFormat.OpenSSH).decode()
    known = tmp_path / "known_hosts"
    known.write_text(f"[{first.host}]:{first.port} {other}\n")
    with _host("rig-a", first, known_hosts=known) as host, pytest.raises(HostKeyRejected, match="changed") as caught:
        host.run("true")
    assert caught.value.infrastructure


def test_wrong_client_key_is_unreachable_not_a_host_key_problem(servers):
    first, second = servers
    with _host("rig-a", first, key_filename=second.client_key_path) as host, \
            pytest.raises(RigHostUnreachable, match="authentication") as caught:
        host.run("true")
    assert not isinstance(caught.value, HostKeyRejected)


def test_refused_port_is_unreachable(own_sshd):
    host = _host("rig-gone", own_sshd)
    own_sshd.kill()
    with host, pytest.raises(RigHostUnreachable, match="cannot connect"):
        host.run("true")


def test_sshd_killed_mid_command(own_sshd, tmp_path):
    marker_dir = Path(f"/tmp/paylab-marker-{uuid.uuid4().hex}")
    marker_dir.mkdir(mode=0o777)
    marker_dir.chmod(0o777)
    marker = marker_dir / "started"
    outcome: dict[str, object] = {}
    with _host("rig-k", own_sshd) as host:

        def long_command() -> None:
            try:
                outcome["result"] = host.run(f"touch {marker}; sleep 30")
            except Exception as exc:
                outcome["error"] = exc
            outcome["ended"] = time.monotonic()

        worker = threading.Thread(target=long_command)
        worker.start()
        try:
            deadline = time.monotonic() + 15
            while not marker.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            assert marker.exists(), "the remote command never started"
            killed_at = time.monotonic()
            own_sshd.kill()
            worker.join(DROP_BOUND_S + 5)
        finally:
            marker.unlink(missing_ok=True)
            marker_dir.rmdir()
        assert not worker.is_alive()
        assert isinstance(outcome.get("error"), RigHostUnreachable), outcome
        assert outcome["ended"] - killed_at < DROP_BOUND_S
        # After the server is back (same port, same host key) the host reconnects by itself.
        own_sshd.start()
        assert host.run("echo back").stdout.strip() == "back"


def test_run_on_hosts_with_one_host_down(hosts, own_sshd):
    a, b = hosts
    down = _host("rig-down", own_sshd)
    own_sshd.kill()
    started = time.monotonic()
    with down:
        results = run_on_hosts([a, down, b], "echo $((6*7))")
    assert set(results) == {"rig-a", "rig-b", "rig-down"}
    assert results["rig-a"].stdout.strip() == "42"
    assert results["rig-b"].stdout.strip() == "42"
    assert isinstance(results["rig-down"], RigHostUnreachable)
    assert time.monotonic() - started < DROP_BOUND_S


def test_run_on_hosts_reports_failures_per_host(hosts):
    a, b = hosts
    results = run_on_hosts([a, b], 'test "$(id -un)" = nobody')
    assert all(isinstance(r, RigCommandFailed) for r in results.values())
    results = run_on_hosts([a, b], 'test "$(id -un)" = nobody', check=False)
    assert {r.exit_status for r in results.values()} == {1}
    with pytest.raises(ValueError, match="unique"):
        run_on_hosts([a, a], "true")


def test_command_timeout_on_a_live_host_is_a_command_failure(hosts):
    a, _ = hosts
    started = time.monotonic()
    with pytest.raises(RigCommandFailed, match="did not finish within 1 s") as caught:
        a.run("sleep 5", timeout=1)
    assert caught.value.exit_status is None
    assert time.monotonic() - started < 4.5
    assert a.run("echo still-here").stdout.strip() == "still-here"


def test_timed_out_command_does_not_keep_running_on_the_host(hosts):
    a, _ = hosts
    marker = f"paylab-marker-{uuid.uuid4().hex[:12]}"
    with pytest.raises(RigCommandFailed, match="did not finish within 1 s"):
        a.run(f"sleep 30; echo {marker}", timeout=1)
    # '[p]aylab-...' matches the command but not the pgrep command line itself
    pattern = f"[{marker[0]}]{marker[1:]}"
    deadline = time.monotonic() + 8.0
    while True:
        left = a.run(f"pgrep -f '{pattern}'", check=False)
        if left.exit_status == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert left.exit_status == 1, f"still running on the host: {left.stdout.strip()}"


def test_silent_host_probe_is_bounded_and_never_reenters_run(hosts, monkeypatch):
    a, _ = hosts
    a.run("true")                                              # connected
    limits: list[int] = []

    def never_answers(command, **kwargs):
        limits.append(kwargs["timeout"])
        raise CommandTimedOut(Result(command=command), timeout=kwargs["timeout"])

    monkeypatch.setattr(a._conn, "run", never_answers)
    monkeypatch.setattr(a, "health", lambda **_: pytest.fail("the probe re-entered run()/health()"))
    with pytest.raises(RigHostUnreachable, match="link lost"):
        a.run("sleep 5", timeout=1)
    assert limits == [1, 5]                                    # the command, then one bounded probe
    monkeypatch.undo()
    assert a.run("echo back").stdout.strip() == "back"        # reconnects


def test_missing_sshd_names_the_package(monkeypatch):
    monkeypatch.setattr(sshd_module, "SSHD_PATH", Path("/nonexistent/sshd"))
    with pytest.raises(SimulationUnavailable, match="apt-get install openssh-server"):
        ManagedSshd().start()


def test_not_root_is_a_one_line_simulation_error(monkeypatch):
    monkeypatch.setattr(sshd_module.os, "geteuid", lambda: 1000)
    with pytest.raises(SimulationUnavailable, match="needs root") as caught:
        sshd_module.ensure_test_user("paylab-rig")
    assert "\n" not in str(caught.value)
