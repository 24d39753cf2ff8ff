"""Rig inventory: the example loads; every invalid document names file, line and field."""

from __future__ import annotations

import textwrap
from datetime import date
from pathlib import Path

import pytest

from paylab.lab.protocol.errors import PaylabError
from paylab.lab.rig.inventory import (
    SIM_RIG_NAME,
    InventoryError,
    bundled_inventory_path,
    check_serial_url,
    default_inventory_path,
    load_inventory,
    parse_inventory,
)

GOOD = """\
rigs:
  bench-1:
    description: test bench
    capabilities: [pcsc-contact, nfc-reader, pos, se-sim, backend, host]
    host: {address: 127.0.0.1, port: 2222, user: lab, key: keys/id, known_hosts: keys/known_hosts}
    readers:
      - name: contact
        driver: pcsc
        pattern: "^Virtual PCD 00 00$"
        identity: {vendor: ACME, serial: 0012, firmware: 1.10, calibrated: 2026-01-01, calibration_due: 2027-01-01}
      - {name: field, driver: nfc, device: "udp:127.0.0.1:50000"}
    pos: [{name: counter, serial: "socket://127.0.0.1:7000"}]
    slots: [{name: sim-1, in: contact, card: {profile: pboc_debit_ecash_sm4, placement: sim}}]
    backend: {acquirer: "127.0.0.1:9001", http: "http://127.0.0.1:8080/"}
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "inventory.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_bundled_example_loads_with_identity_and_sim() -> None:
    inventory = load_inventory(bundled_inventory_path())
    assert SIM_RIG_NAME in inventory.rigs
    assert inventory.rigs[SIM_RIG_NAME].builtin
    bench = inventory.get("bench-1")
    assert bench.has("pcsc-contact", "pos", "host")
    assert bench.find_antenna("phone-pad").identity.calibration_due == date(2027, 1, 15)
    assert bench.find_reader("field").device == "usb:072f:2200"
    assert bench.host is not None
    assert bench.host.known_hosts == bundled_inventory_path().parent / "keys/known_hosts"
    assert [r.name for r in inventory.with_capabilities("pos", "se-sim")] == ["sim", "bench-1", "ota-bench"]


def test_good_inventory_values(tmp_path: Path) -> None:
    inventory = load_inventory(_write(tmp_path, GOOD))
    rig = inventory.get("bench-1")
    reader = rig.find_reader("contact")
    assert reader.pattern == "^Virtual PCD 00 00$"
    assert not reader.contactless
    assert reader.identity.serial == "0012"
    assert reader.identity.firmware == "1.10"
    assert rig.find_reader("field").contactless
    assert rig.backend.acquirer == ("127.0.0.1", 9001)
    assert rig.backend.http_url == "http://127.0.0.1:8080"
    assert rig.host.port == 2222
    assert rig.host.known_hosts == tmp_path / "keys/known_hosts"
    assert rig.source == f"{tmp_path / 'inventory.yaml'}:2"


BAD_CASES = [
    # (old text, new text, line, field, words in the problem)
    ("    description: test bench\n", "    description: test bench\n    colour: red\n", 4,
     "rigs.bench-1.colour", "unknown field"),
    ('        pattern: "^Virtual PCD 00 00$"', '        pattern: "^Virtual PCD (00"', 9,
     "rigs.bench-1.readers[0].pattern", "not a valid regular expression"),
    ('        pattern: "^Virtual PCD 00 00$"\n', "", 7, "rigs.bench-1.readers[0].pattern", "missing"),
    ("port: 2222", "port: '2222'", 5, "rigs.bench-1.host.port", "must be an integer"),
    ("port: 2222", "port: 70000", 5, "rigs.bench-1.host.port", "outside"),
    ('"udp:127.0.0.1:50000"', '"bluetooth:1"', 11, "rigs.bench-1.readers[1].device", "nfcpy device path"),
    ('"socket://127.0.0.1:7000"', '"socket://nohostport"', 12, "rigs.bench-1.pos[0].serial", "HOST:PORT"),
    ('"socket://127.0.0.1:7000"', '"ftp://x"', 12, "rigs.bench-1.pos[0].serial", "unknown pyserial URL scheme"),
    ('"127.0.0.1:9001"', '"127.0.0.1"', 14, "rigs.bench-1.backend.acquirer", "HOST:PORT"),
    ('"http://127.0.0.1:8080/"', '"tcp://x"', 14, "rigs.bench-1.backend.http", "http(s)://"),
    ("{name: counter,", "{name: contact,", 12, "rigs.bench-1.pos[0].name", "duplicate resource name"),
    ("profile: pboc_debit_ecash_sm4", "profile: no_such_card", 13, "rigs.bench-1.slots[0].card.profile",
     "unknown profile"),
    ("placement: sim}", "placement: usim}", 13, "rigs.bench-1.slots[0].card.placement", "must be one of"),
    ("in: contact,", "in: nowhere,", 13, "rigs.bench-1.slots[0].in", "no reader, antenna or handset"),
    ("backend, host]", "backend, host, nfc-emulator]", 4, "rigs.bench-1.capabilities[6]", "not backed"),
    ("backend, host]", "backend, hots]", 4, "rigs.bench-1.capabilities[5]", "must be one of"),
    ("calibration_due: 2027-01-01", "calibration_due: 2025-01-01", 10,
     "rigs.bench-1.readers[0].identity.calibration_due", "before the calibration date"),
    ("calibrated: 2026-01-01", "calibrated: soon", 10, "rigs.bench-1.readers[0].identity.calibrated",
     "YYYY-MM-DD"),
    ("  bench-1:", "  sim:", 2, "rigs.sim", "reserved"),
    ("    slots: [{name: sim-1, in: contact, card: {profile: pboc_debit_ecash_sm4, placement: sim}}]",
     "    slots: sim-1", 13, "rigs.bench-1.slots", "must be a list"),
    ("user: lab,", "", 5, "rigs.bench-1.host.user", "missing"),
    ("    pos: [", "    pos: []\n    pos: [", 13, "rigs.bench-1.pos", "duplicate key (first at line 12)"),
]


@pytest.mark.parametrize(("old", "new", "line", "field", "words"), BAD_CASES,
                         ids=[case[3] + ":" + case[4] for case in BAD_CASES])
def test_bad_inventory_names_file_line_field(tmp_path: Path, old: str, new: str, line: int, field: str,
                                             words: str) -> None:
    assert old in GOOD
    path = _write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    error = caught.value
    assert isinstance(error, PaylabError)
    assert str(error).startswith(f"{path}:{line}: {field}: "), str(error)
    assert words in error.problem
    assert "\n" not in str(error)


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "rigs:\n  a: [1, 2\n  b: 3\n")
    with pytest.raises(InventoryError, match=rf"^{path}:\d+: \(document\): not valid YAML"):
        load_inventory(path)


def test_missing_file_and_unknown_rig(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="cannot read the inventory"):
        load_inventory(tmp_path / "absent.yaml")
    with pytest.raises(InventoryError, match=r"no rig 'bench-9' \(have: sim, bench-1\)"):
        parse_inventory(GOOD, source="x.yaml").get("bench-9")


def test_non_utf8_inventory_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("rigs:\n  caf\u00e9: {}\n".encode("latin-1"))
    with pytest.raises(InventoryError, match=rf"^{path}: \(file\): the inventory is not UTF-8") as caught:
        load_inventory(path)
    assert "\n" not in str(caught.value)


def test_empty_document_has_only_sim() -> None:
    assert list(parse_inventory("").rigs) == [SIM_RIG_NAME]


def test_default_inventory_prefers_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    expected = bundled_inventory_path()
    from paylab.lab.rig import inventory as module

    if (module.checkout_root() / "inventory.yaml").is_file():
        expected = module.checkout_root() / "inventory.yaml"
    assert default_inventory_path() == expected
    _write(tmp_path, GOOD)
    assert default_inventory_path() == tmp_path / "inventory.yaml"


@pytest.mark.parametrize(("url", "ok"), [("/dev/ttyUSB0", True), ("/dev/pts/7", True), ("loop://", True),
                                         ("rfc2217://10.0.0.1:7001", True), ("socket://h:1?logging=debug", True),
                                         ("ttyUSB0", False), ("rfc2217://10.0.0.1", False)])
def test_serial_urls(url: str, ok: bool) -> None:
    assert (check_serial_url(url) is None) is ok
