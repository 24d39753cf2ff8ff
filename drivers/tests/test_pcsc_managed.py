"""ManagedPcscd: the per-process instance, slot allocation, and starting when a port is stolen."""

from __future__ import annotations

import os
import socket

import pytest

from paylab.drivers.errors import ReaderUnavailable, SimulationUnavailable
from paylab.drivers.pcsc import ManagedPcscd
from paylab.drivers.pcsc import pcscd as pcscd_module
from paylab.drivers.pcsc.reader import list_readers


def test_for_process_is_shared_and_points_pyscard_at_it(pcscd):
    assert ManagedPcscd.for_process() is pcscd
    assert os.environ["PCSCLITE_CSOCK_NAME"] == pcscd.socket_path
    assert pcscd.env({})["PCSCLITE_CSOCK_NAME"] == pcscd.socket_path
    assert set(pcscd.reader_names) <= set(list_readers())
    assert sum(s.contactless for s in pcscd.slots) == 4
    assert len({s.port for s in pcscd.slots}) == len(pcscd.slots)
    with pytest.raises(ValueError, match="first for_process"):
        ManagedPcscd.for_process(readers=16)


def test_slots_run_out_then_come_back(pcscd):
    taken = []
    with pytest.raises(ReaderUnavailable, match="contactless vpcd slot is in use"):  # noqa: PT012
        for _ in range(5):
            taken.append(pcscd.allocate_slot(contactless=True))
    assert len(taken) == 4
    assert all(s.contactless and s.interface == "contactless" for s in taken)
    for slot in taken:
        pcscd.release_slot(slot)
        pcscd.release_slot(slot)              # idempotent
    again = pcscd.allocate_slot(contactless=True)
    assert again == taken[0]                  # least recently released first
    pcscd.release_slot(again)


def test_start_survives_a_port_stolen_after_the_probe(monkeypatch):
    held: list[socket.socket] = []
    probe = pcscd_module._free_port_pairs

    def steal_first(count, avoid):
        ports = probe(count, avoid)
        if not held:
            thief = socket.socket()
            thief.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            thief.bind(("0.0.0.0", ports[0]))
            thief.listen(1)
            held.append(thief)
        return ports

    monkeypatch.setattr(pcscd_module, "_free_port_pairs", steal_first)
    try:
        with ManagedPcscd(readers=4) as solo:
            stolen = held[0].getsockname()[1]
            assert stolen not in {s.port for s in solo.slots}
            assert solo.running
    finally:
        for sock in held:
            sock.close()


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="at least one"):
        ManagedPcscd(readers=0)
    with pytest.raises(ValueError, match="at most 16"):
        ManagedPcscd(readers=12, contactless_readers=6)


def test_socket_directory_is_created_private_and_refused_when_not_ours(tmp_path, monkeypatch):
    mine = tmp_path / "sock-dir"
    pcscd_module._private_dir(str(mine))
    assert mine.stat().st_mode & 0o777 == 0o700
    pcscd_module._private_dir(str(mine))                   # existing: left alone
    other = tmp_path / "raced"
    real_makedirs = os.makedirs

    def someone_elses(path, mode=0o777, exist_ok=False):
        real_makedirs(path, mode=mode, exist_ok=exist_ok)
        monkeypatch.setattr(pcscd_module.os, "getuid", lambda: os.stat(path).st_uid + 1)

    monkeypatch.setattr(pcscd_module.os, "makedirs", someone_elses)
    with pytest.raises(SimulationUnavailable, match="not ours"):
        pcscd_module._private_dir(str(other))
