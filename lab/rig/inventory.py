"""The rig inventory: a YAML file in the lab checkout describing every rig, validated on load.

Errors name the file, the line and the field, one line each (``InventoryError``)::

    inventory.yaml:14: rigs.bench-1.readers[0].pattern: not a valid regular expression (...)

The document is *composed* (PyYAML nodes keep their marks) and walked node by node, so every
value's line is known; scalars are then constructed with PyYAML's safe constructor. Layout
(``fixtures/inventory/lab.yaml`` is a commented example)::

    rigs:
      bench-1:
        description: "..."
        capabilities: [pcsc-contact, nfc-reader, pos, backend, host]
        host: {address: 10.0.0.21, port: 22, user: lab, key: keys/bench1, known_hosts: keys/known_hosts}
        readers:
          - {name: contact, driver: pcsc, pattern: "^Identiv uTrust 3700 F .* 00$", contactless: false}
          - {name: field, driver: nfc, device: "usb:054c:06c3", contactless: true}
        antennas: [{name: phone-pad, device: "usb:04e6:5591", role: emulator}]
        pos: [{name: counter-1, serial: /dev/ttyUSB0, baudrate: 115200}]
        slots: [{name: card-1, in: contact, card: {profile: pboc_debit_ecash_sm4, placement: sim}}]
        handsets: [{name: phone-1, slot: se-1, msisdn: "+8613800000001", antenna: phone-pad}]
        backend: {acquirer: "10.0.0.5:9001", http: "http://10.0.0.5:8080"}

Every resource may carry ``identity: {vendor, model, serial, firmware, calibrated, calibration_due}``
(dates as ``YYYY-MM-DD``) for the equipment manifest. The rig ``sim`` is built in and reserved.

Default file: ``inventory.yaml`` in the current directory, else at the paylab checkout root, else
the bundled example ``fixtures/inventory/lab.yaml``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from importlib import resources as importlib_resources
from pathlib import Path
from typing import Any, NoReturn

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..protocol.errors import PaylabError
from .resources import (
    CAPABILITIES,
    PLACEMENTS,
    AntennaResource,
    BackendEndpoints,
    CardSlot,
    EquipmentIdentity,
    HandsetResource,
    PosResource,
    ReaderResource,
    Rig,
    SshHostResource,
    backed_capabilities,
)

SIM_RIG_NAME = "sim"

SIM_RIG = Rig(
    name=SIM_RIG_NAME,
    description="paylab's built-in simulated rig: managed pcscd + vpcd readers with emulated cards, nfcpy UDP "
                "antennas, a POS simulator on a pty, handsets with SIM/microSD/eSE, the embedded backend",
    capabilities=tuple(c for c in CAPABILITIES if c != "host"),
    builtin=True,
    source="(built in)",
)
"""The built-in rig as listed; its resources are allocated by :class:`~.sim.SimRig` at bring-up."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}"
                       r"[A-Za-z0-9])?)*$|^\[?[0-9A-Fa-f:.]+\]?$")
_NFC_PATH = re.compile(r"^(usb(:[0-9A-Fa-f]{4}(:[0-9A-Fa-f]{4})?|:\d{3}(:\d{3})?)?"
                       r"|udp(:[A-Za-z0-9.\-]+)?(:\d{1,5})?"
                       r"|tty:[A-Za-z0-9_]+(:[A-Za-z0-9_]+)?"
                       r"|com:[A-Za-z0-9_]+(:[A-Za-z0-9_]+)?)$")
_SERIAL_SCHEMES = ("socket", "rfc2217", "loop", "spy", "hwgrep", "alt", "cp2110")
_HTTP_URL = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+(:\d{1,5})?(/\S*)?$")
_MSISDN = re.compile(r"^\+?\d{5,15}$")


class InventoryError(PaylabError, ValueError):
    """The inventory is invalid. ``str()`` is one line: ``FILE:LINE: FIELD: PROBLEM``."""

    def __init__(self, problem: str, *, source: str, line: int | None, field_name: str) -> None:
        self.problem = problem
        self.source = source
        self.line = line
        self.field = field_name
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {field_name}: {problem}")


@dataclass
class Inventory:
    """Every rig of the lab, by name; the built-in ``sim`` is always there."""

    rigs: dict[str, Rig] = field(default_factory=dict)
    source: Path | None = None

    def get(self, name: str) -> Rig:
        """The rig ``name``; :class:`InventoryError` naming the known rigs if there is none."""
        if name not in self.rigs:
            raise InventoryError(f"no rig {name!r} (have: {', '.join(self.rigs)})",
                                 source=str(self.source or "(inventory)"), line=None, field_name="rig")
        return self.rigs[name]

    def with_capabilities(self, *capabilities: str) -> list[Rig]:
        """Rigs announcing all ``capabilities`` (a pure match, as labgrid schedules places)."""
        return [rig for rig in self.rigs.values() if rig.has(*capabilities)]


# -- node walking ---------------------------------------------------------------------------------
class _Walker:
    """Walks composed YAML nodes; raises :class:`InventoryError` with the node's line and dotted path."""

    def __init__(self, source: str, base_dir: Path) -> None:
        self.source = source
        self.base_dir = base_dir
        self._constructor = SafeConstructor()

    def fail(self, node: Node | None, path: str, problem: str) -> NoReturn:
        line = node.start_mark.line + 1 if node is not None else None
        raise InventoryError(problem, source=self.source, line=line, field_name=path)

    # structure
    def mapping(self, node: Node, path: str, *, allowed: tuple[str, ...], required: tuple[str, ...] = ()
                ) -> dict[str, tuple[Node, Node]]:
        """Key -> (key node, value node); unknown, duplicate and missing keys are errors."""
        if not isinstance(node, MappingNode):
            self.fail(node, path, f"must be a mapping, got {_kind(node)}")
        out: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            key = self.scalar(key_node, path)
            sub = f"{path}.{key}" if path else str(key)
            if not isinstance(key, str):
                self.fail(key_node, sub, "keys must be strings")
            if key in out:
                self.fail(key_node, sub, f"duplicate key (first at line {out[key][0].start_mark.line + 1})")
            if allowed and key not in allowed:
                self.fail(key_node, sub, f"unknown field (allowed: {', '.join(allowed)})")
            out[key] = (key_node, value_node)
        for key in required:
            if key not in out or _is_null(out[key][1]):
                self.fail(out[key][1] if key in out else node, f"{path}.{key}" if path else key, "missing")
        return out

    def sequence(self, node: Node, path: str) -> list[Node]:
        if _is_null(node):
            return []
        if not isinstance(node, SequenceNode):
            self.fail(node, path, f"must be a list, got {_kind(node)}")
        return list(node.value)

    def scalar(self, node: Node, path: str) -> Any:
        if not isinstance(node, ScalarNode):
            self.fail(node, path, f"must be a single value, got {_kind(node)}")
        try:
            return self._constructor.construct_object(node, deep=True)
        except (ConstructorError, ValueError) as exc:
            self.fail(node, path, f"cannot read value: {exc}")

    # typed values
    def text(self, node: Node, path: str, *, pattern: re.Pattern[str] | None = None, what: str = "") -> str:
        value = self.scalar(node, path)
        if not isinstance(value, str):
            self.fail(node, path, f"must be a string, got {type(value).__name__} {value!r}")
        if not value.strip():
            self.fail(node, path, "must not be empty")
        if pattern is not None and not pattern.match(value):
            self.fail(node, path, f"{value!r} is not {what}")
        return value

    def integer(self, node: Node, path: str, *, low: int, high: int) -> int:
        value = self.scalar(node, path)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(node, path, f"must be an integer, got {type(value).__name__} {value!r}")
        if not low <= value <= high:
            self.fail(node, path, f"{value} is outside {low}..{high}")
        return value

    def boolean(self, node: Node, path: str) -> bool:
        value = self.scalar(node, path)
        if not isinstance(value, bool):
            self.fail(node, path, f"must be true or false, got {value!r}")
        return value

    def choice(self, node: Node, path: str, choices: tuple[str, ...]) -> str:
        value = self.scalar(node, path)
        if value not in choices:
            self.fail(node, path, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def day(self, node: Node, path: str) -> date:
        value = self.scalar(node, path)
        if isinstance(value, date):
            return value
        if isinstance(value, str):
            try:
                return date.fromisoformat(value)
            except ValueError:
                pass
        self.fail(node, path, f"must be a date YYYY-MM-DD, got {value!r}")

    def path(self, node: Node, path: str) -> Path:
        value = self.text(node, path)
        if "\x00" in value:
            self.fail(node, path, "not a valid path")
        resolved = Path(value).expanduser()
        return resolved if resolved.is_absolute() else self.base_dir / resolved

    def endpoint(self, node: Node, path: str) -> tuple[str, int]:
        value = self.text(node, path)
        host, sep, port = value.rpartition(":")
        if not sep or not _HOSTNAME.match(host) or not port.isdigit() or not 1 <= int(port) <= 65535:
            self.fail(node, path, f"{value!r} is not HOST:PORT")
        return host.strip("[]"), int(port)


def _kind(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    return f"{node.value!r}" if isinstance(node, ScalarNode) else type(node).__name__


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _get(fields: dict[str, tuple[Node, Node]], key: str) -> Node | None:
    entry = fields.get(key)
    return None if entry is None or _is_null(entry[1]) else entry[1]


# -- sections -------------------------------------------------------------------------------------
_IDENTITY = ("vendor", "model", "serial", "firmware", "calibrated", "calibration_due")


def _identity(w: _Walker, node: Node | None, path: str) -> EquipmentIdentity:
    if node is None:
        return EquipmentIdentity()
    f = w.mapping(node, path, allowed=_IDENTITY)
    texts = {k: _scalar_text(w, _get(f, k), f"{path}.{k}") for k in ("vendor", "model", "serial", "firmware")}
    calibrated = w.day(n, f"{path}.calibrated") if (n := _get(f, "calibrated")) is not None else None
    due = w.day(n, f"{path}.calibration_due") if (n := _get(f, "calibration_due")) is not None else None
    if calibrated is not None and due is not None and due < calibrated:
        w.fail(_get(f, "calibration_due"), f"{path}.calibration_due",
               f"{due.isoformat()} is before the calibration date {calibrated.isoformat()}")
    return EquipmentIdentity(calibrated=calibrated, calibration_due=due, **texts)


def _scalar_text(w: _Walker, node: Node | None, path: str) -> str | None:
    """Serial numbers and firmware versions: any scalar, kept as text (``1.10`` stays ``1.10``)."""
    if node is None:
        return None
    w.scalar(node, path)
    return str(node.value)  # type: ignore[attr-defined]


def _host(w: _Walker, node: Node, path: str) -> SshHostResource:
    f = w.mapping(node, path, allowed=("address", "port", "user", "key", "known_hosts", "identity", "python",
                                       "workdir"), required=("address", "user", "key", "known_hosts"))
    port_node = _get(f, "port")
    return SshHostResource(
        address=w.text(f["address"][1], f"{path}.address", pattern=_HOSTNAME, what="a host name or IP address"),
        user=w.text(f["user"][1], f"{path}.user", pattern=re.compile(r"^[a-z_][a-z0-9_.-]*\$?$"), what="a user name"),
        port=w.integer(port_node, f"{path}.port", low=1, high=65535) if port_node is not None else 22,
        key=w.path(f["key"][1], f"{path}.key"),
        known_hosts=w.path(f["known_hosts"][1], f"{path}.known_hosts"),
        identity=_identity(w, _get(f, "identity"), f"{path}.identity"),
        python=w.text(n, f"{path}.python") if (n := _get(f, "python")) is not None else "python3",
        workdir=w.text(n, f"{path}.workdir") if (n := _get(f, "workdir")) is not None else "paylab-runs",
    )


def _reader(w: _Walker, node: Node, path: str) -> ReaderResource:
    f = w.mapping(node, path, allowed=("name", "driver", "pattern", "device", "contactless", "identity"),
                  required=("name", "driver"))
    driver = w.choice(f["driver"][1], f"{path}.driver", ("pcsc", "nfc"))
    pattern = device = None
    if driver == "pcsc":
        if _get(f, "device") is not None:
            w.fail(f["device"][0], f"{path}.device", "a pcsc reader is found by 'pattern', not 'device'")
        if _get(f, "pattern") is None:
            w.fail(node, f"{path}.pattern", "missing (a regular expression matching the PC/SC reader name)")
        pattern = w.text(f["pattern"][1], f"{path}.pattern")
        try:
            re.compile(pattern)
        except re.error as exc:
            w.fail(f["pattern"][1], f"{path}.pattern", f"not a valid regular expression ({exc})")
        contactless_node = _get(f, "contactless")
        contactless = w.boolean(contactless_node, f"{path}.contactless") if contactless_node is not None else False
    else:
        if _get(f, "pattern") is not None:
            w.fail(f["pattern"][0], f"{path}.pattern", "an nfc reader is found by 'device', not 'pattern'")
        if _get(f, "device") is None:
            w.fail(node, f"{path}.device", "missing (an nfcpy path such as usb:054c:06c3 or udp:127.0.0.1:PORT)")
        device = w.text(f["device"][1], f"{path}.device", pattern=_NFC_PATH,
                        what="an nfcpy device path (usb[:VID[:PID]], usb:BUS:DEV, udp:HOST:PORT, tty:PORT[:DRIVER])")
        contactless_node = _get(f, "contactless")
        if contactless_node is not None and not w.boolean(contactless_node, f"{path}.contactless"):
            w.fail(contactless_node, f"{path}.contactless", "an nfc reader is always contactless")
        contactless = True
    return ReaderResource(name=w.text(f["name"][1], f"{path}.name", pattern=_NAME, what="a resource name"),
                          driver=driver, contactless=contactless,  # type: ignore[arg-type]
                          pattern=pattern, device=device,
                          identity=_identity(w, _get(f, "identity"), f"{path}.identity"))


def _antenna(w: _Walker, node: Node, path: str) -> AntennaResource:
    f = w.mapping(node, path, allowed=("name", "device", "role", "identity"), required=("name", "device", "role"))
    return AntennaResource(
        name=w.text(f["name"][1], f"{path}.name", pattern=_NAME, what="a resource name"),
        device=w.text(f["device"][1], f"{path}.device", pattern=_NFC_PATH,
                      what="an nfcpy device path (usb[:VID[:PID]], usb:BUS:DEV, udp:HOST:PORT, tty:PORT[:DRIVER])"),
        role=w.choice(f["role"][1], f"{path}.role", ("reader", "emulator")),  # type: ignore[arg-type]
        identity=_identity(w, _get(f, "identity"), f"{path}.identity"),
    )


def check_serial_url(url: str) -> str | None:
    """Why ``url`` is not a pyserial port or URL (None when it is one)."""
    if url.startswith("/dev/") and len(url) > 5:
        return None
    if re.match(r"^COM\d+$", url):
        return None
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "not a serial device (/dev/...) or a pyserial URL (socket://, rfc2217://, loop://)"
    if scheme not in _SERIAL_SCHEMES:
        return f"unknown pyserial URL scheme {scheme!r} (have: {', '.join(_SERIAL_SCHEMES)})"
    if scheme in ("socket", "rfc2217"):
        hostport = rest.split("?", 1)[0].rstrip("/")
        host, colon, port = hostport.rpartition(":")
        if not colon or not _HOSTNAME.match(host) or not port.isdigit() or not 1 <= int(port) <= 65535:
            return f"{scheme}:// needs HOST:PORT, got {rest!r}"
    return None


def _pos(w: _Walker, node: Node, path: str) -> PosResource:
    f = w.mapping(node, path, allowed=("name", "serial", "baudrate", "identity"), required=("name", "serial"))
    url = w.text(f["serial"][1], f"{path}.serial")
    if (problem := check_serial_url(url)) is not None:
        w.fail(f["serial"][1], f"{path}.serial", f"{url!r}: {problem}")
    baud = _get(f, "baudrate")
    return PosResource(name=w.text(f["name"][1], f"{path}.name", pattern=_NAME, what="a resource name"), url=url,
                       baudrate=w.integer(baud, f"{path}.baudrate", low=300, high=4_000_000) if baud else 115200,
                       identity=_identity(w, _get(f, "identity"), f"{path}.identity"))


def _slot(w: _Walker, node: Node, path: str, profile_names: Callable[[], dict[str, Path]]) -> CardSlot:
    f = w.mapping(node, path, allowed=("name", "in", "card", "identity"), required=("name", "card"))
    c = w.mapping(f["card"][1], f"{path}.card", allowed=("profile", "placement", "image", "issued"),
                  required=("placement",))
    profile = None
    if (pnode := _get(c, "profile")) is not None:
        profile = w.text(pnode, f"{path}.card.profile")
        if profile.endswith((".yaml", ".yml")):
            if not w.path(pnode, f"{path}.card.profile").is_file():
                w.fail(pnode, f"{path}.card.profile", f"no profile file {profile!r} (relative to the inventory)")
        elif profile not in profile_names():
            w.fail(pnode, f"{path}.card.profile",
                   f"unknown profile {profile!r} (bundled: {', '.join(profile_names())}; or a .yaml path)")
    issued_node = _get(c, "issued")
    return CardSlot(
        name=w.text(f["name"][1], f"{path}.name", pattern=_NAME, what="a resource name"),
        placement=w.choice(c["placement"][1], f"{path}.card.placement", PLACEMENTS),  # type: ignore[arg-type]
        holder=w.text(n, f"{path}.in", pattern=_NAME, what="a resource name") if (n := _get(f, "in")) else None,
        profile=profile,
        image=w.path(n, f"{path}.card.image") if (n := _get(c, "image")) is not None else None,
        issued=w.boolean(issued_node, f"{path}.card.issued") if issued_node is not None else profile is not None,
        identity=_identity(w, _get(f, "identity"), f"{path}.identity"),
    )


def _handset(w: _Walker, node: Node, path: str) -> HandsetResource:
    f = w.mapping(node, path, allowed=("name", "slot", "msisdn", "antenna", "identity"), required=("name", "slot"))
    return HandsetResource(
        name=w.text(f["name"][1], f"{path}.name", pattern=_NAME, what="a resource name"),
        slot=w.text(f["slot"][1], f"{path}.slot", pattern=_NAME, what="a slot name"),
        msisdn=_scalar_text(w, _get(f, "msisdn"), f"{path}.msisdn"),
        antenna=w.text(n, f"{path}.antenna", pattern=_NAME, what="an antenna name")
        if (n := _get(f, "antenna")) is not None else None,
        identity=_identity(w, _get(f, "identity"), f"{path}.identity"),
    )


def _backend(w: _Walker, node: Node, path: str) -> BackendEndpoints:
    f = w.mapping(node, path, allowed=("acquirer", "http"))
    http = None
    if (n := _get(f, "http")) is not None:
        http = w.text(n, f"{path}.http", pattern=_HTTP_URL, what="an http(s)://HOST[:PORT] URL").rstrip("/")
    acquirer = w.endpoint(n, f"{path}.acquirer") if (n := _get(f, "acquirer")) is not None else None
    if acquirer is None and http is None:
        w.fail(node, path, "give at least one of acquirer (HOST:PORT) and http (URL)")
    return BackendEndpoints(acquirer=acquirer, http_url=http)


_RIG_FIELDS = ("description", "capabilities", "host", "readers", "antennas", "pos", "slots", "handsets", "backend")


def _rig(w: _Walker, name: str, key_node: Node, node: Node, profile_names: Callable[[], dict[str, Path]]) -> Rig:
    path = f"rigs.{name}"
    if not _NAME.match(name):
        w.fail(key_node, path, "a rig name is letters, digits, '.', '_', '-' (at most 63)")
    if name == SIM_RIG_NAME:
        w.fail(key_node, path, "the rig name 'sim' is reserved for paylab's built-in simulated rig")
    f = w.mapping(node, path, allowed=_RIG_FIELDS, required=("capabilities",))

    def items(key: str, build: Callable[[Node, str], Any]) -> tuple[Any, ...]:
        n = _get(f, key)
        return tuple(build(item, f"{path}.{key}[{i}]") for i, item in enumerate(w.sequence(n, f"{path}.{key}"))) \
            if n is not None else ()

    rig = Rig(
        name=name,
        description=w.text(n, f"{path}.description") if (n := _get(f, "description")) is not None else "",
        capabilities=(),
        host=_host(w, n, f"{path}.host") if (n := _get(f, "host")) is not None else None,
        readers=items("readers", lambda n, p: _reader(w, n, p)),
        antennas=items("antennas", lambda n, p: _antenna(w, n, p)),
        pos=items("pos", lambda n, p: _pos(w, n, p)),
        slots=items("slots", lambda n, p: _slot(w, n, p, profile_names)),
        handsets=items("handsets", lambda n, p: _handset(w, n, p)),
        backend=_backend(w, n, f"{path}.backend") if (n := _get(f, "backend")) is not None else BackendEndpoints(),
        source=f"{w.source}:{key_node.start_mark.line + 1}",
    )
    _check_references(w, f, path, rig)
    capabilities = _capabilities(w, f["capabilities"][1], f"{path}.capabilities", rig)
    return Rig(**{**rig.__dict__, "capabilities": capabilities})


def _resource_nodes(w: _Walker, f: dict[str, tuple[Node, Node]], path: str) -> Iterator[tuple[str, Node, str]]:
    """(field path, node of the entry's name, section) for every named resource."""
    for section in ("readers", "antennas", "pos", "slots", "handsets"):
        n = _get(f, section)
        for i, item in enumerate(w.sequence(n, f"{path}.{section}") if n is not None else []):
            entry = w.mapping(item, f"{path}.{section}[{i}]", allowed=())
            yield f"{path}.{section}[{i}]", entry["name"][1], section


def _check_references(w: _Walker, f: dict[str, tuple[Node, Node]], path: str, rig: Rig) -> None:
    seen: dict[str, str] = {}
    for where, name_node, _section in _resource_nodes(w, f, path):
        name = str(name_node.value)  # type: ignore[attr-defined]
        if name in seen:
            w.fail(name_node, f"{where}.name", f"duplicate resource name {name!r} (also {seen[name]})")
        seen[name] = where
    holders = {r.name for r in rig.readers} | {a.name for a in rig.antennas} | {h.name for h in rig.handsets}
    for i, slot in enumerate(rig.slots):
        if slot.holder is not None and slot.holder not in holders:
            n = w.mapping(w.sequence(f["slots"][1], "")[i], "", allowed=())["in"][1]
            w.fail(n, f"{path}.slots[{i}].in", f"no reader, antenna or handset named {slot.holder!r} in this rig")
    emulators = {a.name for a in rig.antennas if a.role == "emulator"}
    slot_names = {s.name for s in rig.slots}
    for i, handset in enumerate(rig.handsets):
        entry = w.mapping(w.sequence(f["handsets"][1], "")[i], "", allowed=())
        if handset.slot not in slot_names:
            w.fail(entry["slot"][1], f"{path}.handsets[{i}].slot", f"no slot named {handset.slot!r} in this rig")
        if handset.antenna is not None and handset.antenna not in emulators:
            w.fail(entry["antenna"][1], f"{path}.handsets[{i}].antenna",
                   f"no antenna with role emulator named {handset.antenna!r} in this rig")


def _capabilities(w: _Walker, node: Node, path: str, rig: Rig) -> tuple[str, ...]:
    items = w.sequence(node, path)
    if not items:
        w.fail(node, path, "must list at least one capability")
    backed = backed_capabilities(rig)
    out: list[str] = []
    for i, item in enumerate(items):
        cap = w.choice(item, f"{path}[{i}]", CAPABILITIES)
        if cap in out:
            w.fail(item, f"{path}[{i}]", f"duplicate capability {cap!r}")
        if cap not in backed:
            w.fail(item, f"{path}[{i}]", f"capability {cap!r} is not backed by any resource of the rig "
                                         f"({_BACKING[cap]})")
        out.append(cap)
    return tuple(out)


_BACKING = {
    "pcsc-contact": "needs a reader with driver pcsc and contactless: false",
    "pcsc-contactless": "needs a reader with driver pcsc and contactless: true",
    "nfc-reader": "needs a reader with driver nfc or an antenna with role reader",
    "nfc-emulator": "needs an antenna with role emulator",
    "pos": "needs a pos entry",
    "se-sim": "needs a slot whose card has placement sim",
    "se-microsd": "needs a slot whose card has placement microsd",
    "se-ese": "needs a slot whose card has placement ese",
    "backend": "needs a backend section",
    "host": "needs a host section",
}


# -- loading --------------------------------------------------------------------------------------
def parse_inventory(text: str, *, source: str = "<inventory>", base_dir: Path | None = None) -> Inventory:
    """Validate an inventory document; the built-in ``sim`` rig is added. :class:`InventoryError` on any problem."""
    from ..profiles import bundled_profiles

    walker = _Walker(source, base_dir or Path.cwd())
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise InventoryError(f"not valid YAML: {problem}", source=source,
                             line=mark.line + 1 if mark is not None else None, field_name="(document)") from None
    rigs: dict[str, Rig] = {SIM_RIG_NAME: SIM_RIG}
    if root is None or _is_null(root):
        return Inventory(rigs=rigs)
    top = walker.mapping(root, "", allowed=("rigs",), required=("rigs",))
    profile_cache: dict[str, Path] = {}

    def profile_names() -> dict[str, Path]:
        if not profile_cache:
            profile_cache.update(bundled_profiles())
        return profile_cache

    rigs_node = top["rigs"][1]
    for name, (key_node, rig_node) in walker.mapping(rigs_node, "rigs", allowed=()).items():
        rigs[name] = _rig(walker, name, key_node, rig_node, profile_names)
    return Inventory(rigs=rigs)


def load_inventory(path: str | Path | None = None) -> Inventory:
    """Load and validate ``path`` (default: :func:`default_inventory_path`)."""
    file = Path(path) if path is not None else default_inventory_path()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise InventoryError(f"cannot read the inventory: {exc.strerror or exc}", source=str(file), line=None,
                             field_name="(file)") from None
    except UnicodeDecodeError as exc:
        raise InventoryError(f"the inventory is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
                             f"{exc.start})", source=str(file), line=None, field_name="(file)") from None
    inventory = parse_inventory(text, source=str(file), base_dir=file.resolve().parent)
    inventory.source = file
    return inventory


def checkout_root() -> Path:
    """The paylab checkout this package runs from (the folder holding ``lab/``)."""
    return Path(__file__).resolve().parents[2]


def bundled_inventory_path() -> Path:
    """The example inventory shipped with paylab: ``fixtures/inventory/lab.yaml``."""
    return Path(str(importlib_resources.files("paylab.fixtures"))) / "inventory" / "lab.yaml"


def default_inventory_path() -> Path:
    """``./inventory.yaml``, else ``inventory.yaml`` at the checkout root, else the bundled example."""
    for candidate in (Path.cwd() / "inventory.yaml", checkout_root() / "inventory.yaml"):
        if candidate.is_file():
            return candidate
    return bundled_inventory_path()
