"""Last line of defence before anything reaches a report: mask again, whatever the record claims.

Traces are masked when written (:mod:`paylab.lab.protocol.trace`), but a report must stay clean even
when a record carries an unmasked trace, a revealed TLV tree, an ISO 8583 view with a full PAN or a
message text quoting one. Everything shown goes through here (PCI DSS 3.3/3.4): PAN-like numbers
are masked (:func:`~paylab.lab.protocol.masking.mask_text`), sensitive TLV values are masked by the
data dictionary, and known TEST keys are replaced by ``<key hidden>``.
"""

from __future__ import annotations

import re
from dataclasses import fields, replace
from functools import lru_cache
from typing import Any

from ..protocol import tags
from ..protocol.errors import ProtocolError
from ..protocol.masking import MASK, mask_pan, mask_text, mask_track1, mask_track2, masked_placeholder
from ..protocol.trace import TraceRecord, mask_record
from .masking_scan import known_secrets

KEY_HIDDEN = "<key hidden>"
_TRACE_FIELDS = frozenset(f.name for f in fields(TraceRecord))
_SECRET_ISO_FIELDS = frozenset({"52", "62", "96"})  # PIN block, key data under the TMK, security data
_PLACEHOLDER = re.compile(r"<masked \d+ bytes>")


@lru_cache(maxsize=1)
def _key_pattern() -> re.Pattern[str] | None:
    secrets = known_secrets()
    values = sorted({v.hex() for _, v in (*secrets.keys, *secrets.pin_blocks)}, key=len, reverse=True)
    return re.compile("|".join(values), re.IGNORECASE) if values else None


def hide_keys(text: str) -> str:
    """``text`` with known TEST keys and test PIN blocks (hex, either case) replaced by ``<key hidden>``."""
    pattern = _key_pattern()
    return pattern.sub(KEY_HIDDEN, text) if pattern is not None else text


def safe_text(text: object) -> str:
    """``text`` with PAN-like numbers masked and known TEST keys / PIN blocks hidden."""
    return hide_keys(mask_text(str(text)))


def _tag_number(tag: str) -> int | None:
    try:
        return int(tag, 16)
    except (TypeError, ValueError):
        return None


def safe_tree(nodes: Any, kernel: str | None = None) -> list[dict[str, Any]]:
    """A TLV JSON tree (:func:`paylab.lab.protocol.tlv.to_json_tree`) with every sensitive value masked."""
    if not isinstance(nodes, list):
        return []
    out = []
    for node in nodes:
        if not isinstance(node, dict):
            continue
        tag = str(node.get("tag", ""))
        clean: dict[str, Any] = {"tag": safe_text(tag), "name": safe_text(node.get("name", "")),
                                 "length": node.get("length", "")}
        if "children" in node:
            clean["children"] = safe_tree(node["children"], kernel)
        else:
            clean["value"] = _safe_value(_tag_number(tag), str(node.get("value", "")), node.get("length"), kernel)
        out.append(clean)
    return out


def _safe_value(tag: int | None, value: str, length: Any, kernel: str | None) -> str:
    if _PLACEHOLDER.fullmatch(value):
        return value
    kind = tags.sensitivity(tag, kernel) if tag is not None else tags.Sensitivity.SECRET
    size = length if isinstance(length, int) else len(value) // 2
    if kind is tags.Sensitivity.NONE:
        return safe_text(value)
    if MASK in value and kind in (tags.Sensitivity.PAN, tags.Sensitivity.TRACK2, tags.Sensitivity.TRACK1):
        return safe_text(value)  # already masked by the writer
    if kind is tags.Sensitivity.PAN:
        return mask_pan(value.rstrip("Ff")) if value.rstrip("Ff").isdigit() else masked_placeholder(size)
    if kind is tags.Sensitivity.TRACK2:
        return mask_track2(value)
    if kind is tags.Sensitivity.TRACK1:
        return mask_track1(value)
    return masked_placeholder(size)


def safe_trace(entry: Any) -> dict[str, Any]:
    """One trace entry as shown: masked with :func:`~paylab.lab.protocol.trace.mask_record` unless the
    writer already masked it (its hex carries ``*``), keys hidden, TLV trees masked again by tag.
    Invalid entries become an ``error``."""
    if isinstance(entry, TraceRecord):
        record = entry
    else:
        if not isinstance(entry, dict):
            return {"error": "not a trace record"}
        try:
            record = TraceRecord(**{k: v for k, v in entry.items() if k in _TRACE_FIELDS})
        except (ProtocolError, TypeError) as exc:
            return {"error": safe_text(f"invalid trace record: {exc}")}
    if record.masked and not any(MASK in h for h in (record.command, record.response) if h):
        record = replace(record, masked=False)  # claims to be masked but is clear: mask it as the writer would
    if not record.masked:
        try:
            record = mask_record(record, kernel=record.kernel)
        except ProtocolError as exc:
            return {"error": safe_text(f"trace record cannot be masked: {exc}")}
    return {
        "timestamp": record.timestamp,
        "direction": record.direction,
        "channel": record.channel,
        "transport": safe_text(record.transport),
        "command": hide_keys(record.command or ""),
        "response": hide_keys(record.response or ""),
        "sw": safe_text(record.sw or ""),
        "duration_ms": record.duration_ms,
        "command_tlv": safe_tree(record.command_tlv, record.kernel),
        "response_tlv": safe_tree(record.response_tlv, record.kernel),
    }


def safe_iso_field(number: str, value: str) -> str:
    """An ISO 8583 field value from a view dict, masked again by field (PAN, tracks, PIN, keys)."""
    if _PLACEHOLDER.fullmatch(value):
        return value
    if number == "2":
        return mask_pan(value) if value.rstrip("Ff").isdigit() else safe_text(value)
    if number in ("35", "36"):
        return safe_text(value) if MASK in value else mask_track2(value)
    if number == "45":
        return safe_text(value) if MASK in value else mask_track1(value)
    if number in _SECRET_ISO_FIELDS:
        return masked_placeholder(len(value) // 2)
    return safe_text(value)


def safe_iso_message(entry: Any) -> dict[str, Any]:
    """An ISO 8583 view (``{"mti", "fields", ...}``) or a raw message (``{"raw", "dialect"}``) → masked view.

    The result has ``mti``, ``direction``, ``dialect`` and ``fields``: a list of (number, value or tree).
    """
    if not isinstance(entry, dict):
        return {"error": "not an ISO 8583 message view"}
    view = entry
    if "raw" in entry and "fields" not in entry:
        from ..protocol.iso8583 import decode_message, to_json  # the codec only when a raw message is stored

        try:
            msg = decode_message(bytes.fromhex(str(entry["raw"])), entry.get("dialect", "cup-pos"))
        except (ProtocolError, ValueError) as exc:
            return {"error": safe_text(f"undecodable ISO 8583 message: {exc}")}
        view = {**to_json(msg), **{k: entry[k] for k in ("direction", "dialect", "label") if k in entry}}
    fields_in = view.get("fields") if isinstance(view.get("fields"), dict) else {}
    shown: list[tuple[str, Any]] = []
    for number in sorted(fields_in, key=lambda n: int(n) if str(n).isdigit() else 999):
        value = fields_in[number]
        if isinstance(value, list):
            shown.append((str(number), safe_tree(value, tags.KERNEL_PBOC)))
        else:
            shown.append((str(number), safe_iso_field(str(number), str(value))))
    return {
        "mti": safe_text(view.get("mti", "")),
        "direction": safe_text(view.get("direction", "")),
        "dialect": safe_text(view.get("dialect", "")),
        "label": safe_text(view.get("label", "")),
        "fields": shown,
    }
