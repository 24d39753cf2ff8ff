"""Secure element form factors: NFC-SIM (UICC), NFC-SD (microSD) and eSE.

The same payment applet runs on all three; they differ in ATR and transmission protocol, who owns
the issuer security domain, and how the card is administered over the air.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from typing import Literal

FormFactorName = Literal["sim", "microsd", "ese"]


def build_atr(t0_and_interface: bytes, historical: bytes) -> bytes:
    """``3B`` + T0/interface bytes + historical bytes + TCK (ISO/IEC 7816-3 clause 8.2.5).

    TCK makes the XOR of all bytes from T0 to TCK zero; it is present whenever a protocol other
    than T=0 is indicated, and added here for every ATR with TD1 (harmless for T=0 readers).
    """
    body = t0_and_interface + historical
    tck = reduce(lambda a, b: a ^ b, body, 0)
    return b"\x3b" + body + bytes([tck])


@dataclass(frozen=True)
class FormFactor:
    """What differs between SIM, microSD and eSE cards."""

    name: FormFactorName
    atr: bytes
    protocol: Literal["T=0", "T=1"]
    extended_apdus: bool
    isd_owner: str
    admin_channel: Literal["sms-pp", "http"]
    logical_channels: int = 4

    @property
    def t0(self) -> bool:
        return self.protocol == "T=0"


# UICC: T0=99 (TA1, TD1; 9 historical bytes), TA1=96, TD1=80 (T=0, TD2 follows), TD2=1F (T=15,
# TA3 follows), TA3=C7 (clock stop, class A/B/C); historical 80 31 E0 + "paylab".
SIM = FormFactor(
    name="sim",
    atr=build_atr(bytes([0x99, 0x96, 0x80, 0x1F, 0xC7]), b"\x80\x31\xe0paylab"),
    protocol="T=0", extended_apdus=False, isd_owner="mobile network operator", admin_channel="sms-pp",
)
# microSD with an SE: T0=88 (TD1; 8 historical bytes), TD1=80 (TD2 follows), TD2=01 (T=1); "paylabSD".
MICROSD = FormFactor(
    name="microsd",
    atr=build_atr(bytes([0x88, 0x80, 0x01]), b"paylabSD"),
    protocol="T=1", extended_apdus=True, isd_owner="card issuer", admin_channel="http",
)
# Embedded SE: T=1, historical "paylabSE".
ESE = FormFactor(
    name="ese",
    atr=build_atr(bytes([0x88, 0x80, 0x01]), b"paylabSE"),
    protocol="T=1", extended_apdus=True, isd_owner="handset maker", admin_channel="http",
)

FORM_FACTORS: dict[str, FormFactor] = {ff.name: ff for ff in (SIM, MICROSD, ESE)}
