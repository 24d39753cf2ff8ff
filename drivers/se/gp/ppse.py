"""The Proximity Payment System Environment (EMV Book B clause 3.3; PBOC 3.0 part 12).

A terminal starts every contactless transaction with SELECT ``2PAY.SYS.DDF01`` and picks an
application from the directory in the FCI::

    6F { 84 "2PAY.SYS.DDF01", A5 { BF0C { 61 { 4F AID, 50 label, 87 priority, [9F2A kernel] } ... } } }

The directory is built from the card's registry, which is paylab's contactless registry (the CRS
of GP Amendment C): one ``61`` per *payment* application that is contactless-activated and
selectable, ordered by ``contactless_priority`` (entries without one last, in registry order).
A payment application is an ``APP`` entry that is not an OS application (``extra["os"]``) and
whose Amendment C application family (``extra["family"]``), when declared, is financial (``2x``).
Label, priority and kernel identifier come from the entry (``extra["label"]``,
``contactless_priority``, ``extra["kernel_id"]``), set by INSTALL parameters or SET STATUS
(:mod:`drivers.se.gp.content`). The PPSE answers SELECT on both interfaces; any other command
answers 6D00.
"""

from __future__ import annotations

from typing import ClassVar

from paylab.lab.protocol import tlv
from paylab.lab.protocol.apdu import CommandApdu

from ..applet import ApduContext, Applet
from ..registry import RegistryEntry

PPSE_NAME = b"2PAY.SYS.DDF01"
PPSE_AID = PPSE_NAME  # 325041592E5359532E4444463031

TAG_FCI = 0x6F
TAG_DF_NAME = 0x84
TAG_FCI_PROPRIETARY = 0xA5
TAG_FCI_DISCRETIONARY = 0xBF0C
TAG_DIRECTORY_ENTRY = 0x61
TAG_ADF_NAME = 0x4F
TAG_LABEL = 0x50
TAG_PRIORITY = 0x87
TAG_KERNEL_IDENTIFIER = 0x9F2A


def is_payment_entry(entry: RegistryEntry) -> bool:
    """An application the PPSE lists when it is contactless-activated and selectable."""
    if entry.kind != "APP" or entry.extra.get("os"):
        return False
    family = entry.extra.get("family")
    return family is None or (isinstance(family, int) and family >> 4 == 0x2)


def directory_entries(entries: list[RegistryEntry]) -> list[RegistryEntry]:
    """The applications of the PPSE directory, in the order the FCI lists them."""
    listed = [(i, e) for i, e in enumerate(entries)
              if is_payment_entry(e) and e.contactless_activated and e.selectable]
    listed.sort(key=lambda item: (item[1].contactless_priority is None, item[1].contactless_priority or 0, item[0]))
    return [e for _, e in listed]


def _label(entry: RegistryEntry) -> bytes | None:
    label = entry.extra.get("label")
    if isinstance(label, bytes):
        return label[:16]
    if isinstance(label, str) and label:
        return label.encode("ascii", errors="replace")[:16]
    return None


def directory_entry(entry: RegistryEntry) -> bytes:
    """``61 {4F, [50], [87], [9F2A]}`` for one application."""
    body = tlv.tlv(TAG_ADF_NAME, entry.aid)
    label = _label(entry)
    if label:
        body += tlv.tlv(TAG_LABEL, label)
    if entry.contactless_priority is not None:
        body += tlv.tlv(TAG_PRIORITY, bytes([entry.contactless_priority & 0xFF]))
    kernel = entry.extra.get("kernel_id")
    if isinstance(kernel, bytes) and kernel:
        body += tlv.tlv(TAG_KERNEL_IDENTIFIER, kernel)
    return tlv.tlv(TAG_DIRECTORY_ENTRY, body)


def ppse_fci(name: bytes, entries: list[RegistryEntry]) -> bytes:
    """The FCI of a PPSE named ``name`` over the registry ``entries``."""
    directory = b"".join(directory_entry(e) for e in directory_entries(entries))
    proprietary = tlv.tlv(TAG_FCI_PROPRIETARY, tlv.tlv(TAG_FCI_DISCRETIONARY, directory))
    return tlv.tlv(TAG_FCI, tlv.tlv(TAG_DF_NAME, name) + proprietary)


class PpseApplet(Applet):
    """The PPSE instance the card OS preinstalls (implementation ``paylab.ppse``)."""

    implementation: ClassVar[str] = "paylab.ppse"
    contactless_capable: ClassVar[bool] = True
    always_contactless: ClassVar[bool] = True

    def select(self, ctx: ApduContext, cmd: CommandApdu) -> bytes:
        return ppse_fci(ctx.aid, ctx.se.registry.entries())
