"""Kernel-scoped EMV/PBOC data dictionary (domain brief 1 "Tag collisions", 8 pitfall 4)."""

from __future__ import annotations

import pytest

from paylab.lab.protocol.errors import ProtocolError
from paylab.lab.protocol.tags import (
    FORMATS,
    KERNEL_MASTERCARD,
    KERNEL_PBOC,
    KERNEL_VISA,
    Sensitivity,
    entries,
    is_known,
    kernel_for_aid,
    kernels,
    lookup,
    sensitivity,
)
from paylab.lab.protocol.tlv import tag_bytes

ALL_KERNELS = (None, KERNEL_PBOC, KERNEL_VISA, KERNEL_MASTERCARD)

# Tags the brief asks the dictionary to cover (EMV Book 3 Annex A common tags plus PBOC ones).
REQUIRED_UNDER_PBOC = [
    0x4F, 0x50, 0x57, 0x5A, 0x5F20, 0x5F24, 0x5F25, 0x5F28, 0x5F2A, 0x5F2D, 0x5F30, 0x5F34,
    0x61, 0x6F, 0x70, 0x71, 0x72, 0x77, 0x80, 0x82, 0x84, 0x86, 0x87, 0x88, 0x8A, 0x8C, 0x8D,
    0x8E, 0x8F, 0x90, 0x91, 0x92, 0x93, 0x94, 0x95, 0x9A, 0x9C, 0x9D, 0x9F02, 0x9F03, 0x9F06,
    0x9F07, 0x9F08, 0x9F09, 0x9F0D, 0x9F0E, 0x9F0F, 0x9F10, 0x9F11, 0x9F12, 0x9F13, 0x9F14,
    0x9F17, 0x9F18, 0x9F1A, 0x9F1E, 0x9F1F, 0x9F20, 0x9F21, 0x9F23, 0x9F26, 0x9F27, 0x9F32,
    0x9F33, 0x9F34, 0x9F35, 0x9F36, 0x9F37, 0x9F38, 0x9F39, 0x9F40, 0x9F41, 0x9F42, 0x9F44,
    0x9F45, 0x9F46, 0x9F47, 0x9F48, 0x9F49, 0x9F4A, 0x9F4B, 0x9F4C, 0x9F4D, 0x9F4E, 0x9F4F,
    0x9F53, 0x9F66, 0x9F69, 0x9F6C, 0x9F6E, 0xA5, 0xBF0C, 0xDF4D, 0xDF4F, 0xDF69, 0xDF60,
    0xDF61, 0xDF62, 0xDF63, 0x99, 0x56, 0x9F5D, 0x9F6D, 0x9F74, 0x9F77, 0x9F78, 0x9F79, 0x9F7A,
    0x9F7B, 0x9F51, 0x9F63,
]  # fmt: skip


@pytest.mark.parametrize("tag", REQUIRED_UNDER_PBOC, ids=lambda t: f"{t:X}")
def test_required_tags_are_covered(tag: int) -> None:
    assert lookup(tag, KERNEL_PBOC) is not None


def test_9f6b_track2_is_mastercard() -> None:
    info = lookup(0x9F6B, KERNEL_MASTERCARD)
    assert info is not None
    assert info.name == "Track 2 Data"
    assert lookup(0x9F6B, KERNEL_PBOC) is None


@pytest.mark.parametrize("tag", [0x9F5D, 0x9F6D, 0x9F74, 0x9F77, 0x9F78, 0x9F79])
def test_collisions_resolve_per_kernel(tag: int) -> None:
    pboc = lookup(tag, KERNEL_PBOC)
    mastercard = lookup(tag, KERNEL_MASTERCARD)
    assert pboc is not None
    assert mastercard is not None
    assert pboc.name != mastercard.name
    assert pboc.kernel == KERNEL_PBOC
    assert mastercard.kernel == KERNEL_MASTERCARD
    assert lookup(tag) is None  # no generic meaning without a kernel


def test_9f5d_and_9f79_meanings() -> None:
    assert lookup(0x9F5D, KERNEL_PBOC).name.startswith("Available Offline Spending Amount")
    assert lookup(0x9F5D, KERNEL_PBOC).format == "n"
    assert lookup(0x9F5D, KERNEL_MASTERCARD).name == "Application Capabilities Information"
    assert lookup(0x9F5D, KERNEL_MASTERCARD).format == "b"
    assert lookup(0x9F79, KERNEL_PBOC).name == "E-cash Balance"
    assert lookup(0x9F79, KERNEL_VISA).name == "VLP Available Funds"
    assert lookup(0x9F79, KERNEL_MASTERCARD).name == "Unprotected Data Envelope 5"


def test_kernel_key_normalisation_and_fallback() -> None:
    assert lookup(0x9F79, "a000000333") == lookup(0x9F79, KERNEL_PBOC)
    assert lookup(0x9F79, "A000000333010101") == lookup(0x9F79, KERNEL_PBOC)  # full AID accepted
    generic = lookup(0x5A)
    assert generic is not None
    assert generic.kernel is None
    for kernel in ALL_KERNELS:
        assert lookup(0x5A, kernel) == generic  # not overridden: the generic entry
    assert lookup(0x9F79, "A000000025") is None  # unknown RID: generic table only
    assert lookup(0x9F79) is None


def test_kernel_for_aid() -> None:
    assert kernel_for_aid(bytes.fromhex("A000000333010101")) == KERNEL_PBOC
    assert kernel_for_aid(bytes.fromhex("a0000000041010")) == KERNEL_MASTERCARD
    assert set(kernels()) == {KERNEL_PBOC, KERNEL_VISA, KERNEL_MASTERCARD}
    with pytest.raises(ProtocolError):
        kernel_for_aid(b"\xa0\x00\x00")


@pytest.mark.parametrize("kernel", ALL_KERNELS)
def test_every_entry_is_well_formed(kernel: str | None) -> None:
    seen = entries(kernel)
    assert len(seen) > 100
    for info in seen:
        assert info.format in FORMATS, info
        assert 0 <= info.min_len <= info.max_len <= 261, info
        assert info.source, info
        assert info.name, info
        tag_bytes(info.tag)
        for template in info.templates:
            assert lookup(template, kernel) is not None, (info, template)
            first = template >> 8 if template > 0xFF else template
            assert first & 0x20, (info, template)  # where-found must be a template
        if info.constructed:
            assert info.format == "b", info
            assert not info.sensitive, info
        if info.format == "n" and info.max_len == 6:
            assert info.min_len == 6, info  # n12 amounts are fixed length


@pytest.mark.parametrize("tag", [0x5A, 0x57, 0x56, 0x5F20, 0x9F0B, 0x99, 0x9F1F, 0x9F20])
@pytest.mark.parametrize("kernel", ALL_KERNELS)
def test_sensitive_tags(tag: int, kernel: str | None) -> None:
    info = lookup(tag, kernel)
    assert info is not None
    assert info.sensitive
    assert sensitivity(tag, kernel) is info.sensitivity


def test_sensitivity_kinds() -> None:
    assert sensitivity(0x5A) is Sensitivity.PAN
    assert sensitivity(0x57) is Sensitivity.TRACK2
    assert sensitivity(0x56) is Sensitivity.TRACK1
    assert sensitivity(0x5F20) is Sensitivity.SECRET
    assert sensitivity(0x99) is Sensitivity.SECRET
    assert not lookup(0x5F24).sensitive  # expiry is not sensitive
    assert sensitivity(0x5F24) is Sensitivity.NONE
    assert sensitivity(0x9F02) is Sensitivity.NONE


def test_kernel_scoped_sensitivity_is_conservative_without_kernel() -> None:
    assert sensitivity(0x9F6B, KERNEL_MASTERCARD) is Sensitivity.TRACK2
    assert sensitivity(0x9F6B) is Sensitivity.TRACK2  # unknown kernel: any table counts
    assert sensitivity(0x9F6B, "A000000025") is Sensitivity.TRACK2
    assert sensitivity(0x9F61, KERNEL_PBOC) is Sensitivity.SECRET  # cardholder ID number
    assert sensitivity(0x9F61, KERNEL_MASTERCARD) is Sensitivity.NONE  # CVC3 (Track2)
    assert sensitivity(0x9F61) is Sensitivity.SECRET


def test_uncertain_facts_are_marked() -> None:
    for tag in (0xDF60, 0xDF61, 0xDF62, 0xDF63, 0xDF4F, 0x9F6D, 0x9F74, 0x9F7A, 0x9F7B):
        assert "[M" in lookup(tag, KERNEL_PBOC).source, f"{tag:X}"
    assert "[S" in lookup(0x9F79, KERNEL_PBOC).source


def test_is_known() -> None:
    assert is_known(0x9F02)
    assert is_known(0x9F6B)  # some kernel defines it
    assert not is_known(0x9F6B, KERNEL_PBOC)
    assert not is_known(0xDF7F)
