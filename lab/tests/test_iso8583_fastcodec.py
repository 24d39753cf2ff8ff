"""The ISO 8583 fast path agrees with pyiso8583: same bytes, same encoded-field dict, or it steps aside.

:mod:`paylab.lab.protocol.iso8583.fastcodec` must never accept what pyiso8583 refuses nor decode
anything differently; for any input it either returns exactly pyiso8583's result or raises ``Slow``.
"""

from __future__ import annotations

import copy

import iso8583
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paylab.lab.protocol.iso8583 import fastcodec
from paylab.lab.protocol.iso8583.specs import DIALECTS, FIELDS, HEADER_LEN, SPECS, UndefinedFieldError

_HEX = "0123456789ABCDEF"


def _value(d, dialect: str) -> st.SearchStrategy[str]:
    """A wire (pyiso8583 document) value for field ``d``: sometimes off-length or with odd characters."""
    digits = d.max_len if d.length == "fixed" else None
    if d.binary:
        size = st.just(d.max_len) if digits else st.integers(0, d.max_len)
        good = size.flatmap(lambda n: st.binary(min_size=n, max_size=n)).map(lambda b: b.hex().upper())
    elif d.numeric and dialect == "cup-pos":
        size = st.just(d.max_len) if digits else st.integers(0, d.max_len)
        good = size.flatmap(lambda n: st.text("0123456789D", min_size=n, max_size=n))
    else:
        size = st.just(d.max_len) if digits else st.integers(0, d.max_len)
        good = size.flatmap(lambda n: st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=n,
                                              max_size=n))
    bad = st.text(_HEX + "xyz\u00e9", max_size=d.max_len + 3)
    return st.one_of(good, good, good, bad)


@st.composite
def documents(draw: st.DrawFn, dialect: str) -> dict[str, str]:
    defs = FIELDS[dialect]
    numbers = draw(st.sets(st.sampled_from(sorted(defs)), min_size=1, max_size=12))
    doc = {"h": draw(st.binary(min_size=HEADER_LEN[dialect], max_size=HEADER_LEN[dialect])).hex().upper(),
           "t": draw(st.sampled_from(["0200", "0210", "0800", "0400", "02X0"]))}
    for number in sorted(numbers):
        doc[str(number)] = draw(_value(defs[number], dialect))
    return doc


def _pyiso_encode(doc: dict[str, str], dialect: str):
    try:
        raw, enc = iso8583.encode(copy.deepcopy(doc), SPECS[dialect])
    except (iso8583.EncodeError, UndefinedFieldError):
        return None
    return bytes(raw), enc


def _pyiso_decode(raw: bytes, dialect: str):
    try:
        return iso8583.decode(raw, SPECS[dialect])
    except (iso8583.DecodeError, UndefinedFieldError):
        return None


def _same_enc(fast: dict, slow: dict) -> None:
    assert {k: (bytes(v["len"]), bytes(v["data"])) for k, v in fast.items()} == {
        k: (bytes(v["len"]), bytes(v["data"])) for k, v in slow.items()}


@pytest.mark.parametrize("dialect", DIALECTS)
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_encode_and_decode_agree_with_pyiso8583(dialect, data):
    doc = data.draw(documents(dialect))
    expected = _pyiso_encode(doc, dialect)
    try:
        fast = fastcodec.encode(doc, dialect)
    except fastcodec.Slow:
        fast = None
    if expected is None:
        assert fast is None
        return
    if fast is not None:
        assert fast[0] == expected[0]
        _same_enc(fast[1], expected[1])
    raw = expected[0]
    # decode the message, and damaged copies of it
    for candidate in (raw, *data.draw(st.lists(_damage(raw), max_size=4))):
        slow = _pyiso_decode(candidate, dialect)
        try:
            quick = fastcodec.decode(candidate, dialect)
        except fastcodec.Slow:
            continue  # the codec then runs pyiso8583 itself
        assert slow is not None, f"fast path accepted what pyiso8583 refuses: {candidate.hex()}"
        assert quick[0] == slow[0]
        _same_enc(quick[1], slow[1])


def _damage(raw: bytes) -> st.SearchStrategy[bytes]:
    cut = st.integers(0, len(raw)).map(lambda n: raw[:n])
    extra = st.binary(min_size=1, max_size=3).map(lambda b: raw + b)
    flip = st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 255)).map(
        lambda p: raw[:p[0]] + bytes((p[1],)) + raw[p[0] + 1:])
    return st.one_of(cut, extra, flip)


def test_odd_inputs_step_aside():
    with pytest.raises(fastcodec.Slow):
        fastcodec.decode(b"\x00" * 5, "cup-pos")
    with pytest.raises(fastcodec.Slow):
        fastcodec.encode({"h": "00", "t": "0200"}, "cup-pos")  # header too short
    with pytest.raises(fastcodec.Slow):
        fastcodec.encode({"h": "00" * 11, "t": "0200", "70": "301"}, "cup-pos")  # no field 70 in the POS dialect
