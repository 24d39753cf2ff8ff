"""Issue a PBOC card onto an emulated secure element the way a TSM does (domain brief section 4).

Blank card -> SCP03 to the ISD -> create the bank's SSD (authorized management) -> first keys ->
key handover (PUT KEY over the SSD's own channel) -> load the PBOC package -> install and make
selectable -> personalise with STORE DATA (DGIs prepared from the YAML profile) -> activate
contactless. Used by the demo and the fixtures; the TSM services do the same over OTA routes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from paylab.drivers.se.applets import pboc
from paylab.drivers.se.catalog_default import default_catalog
from paylab.drivers.se.factory import fabricate
from paylab.drivers.se.form_factor import FormFactor
from paylab.drivers.se.gp.content import build_load_file
from paylab.drivers.se.image import CardImage
from paylab.drivers.se.runtime import SecureElement

from .gp_client import GpClient, sd_key_dgis
from .profiles import PbocProfile
from .protocol import cps
from .protocol.apdu import CommandApdu, transmit_with_chaining
from .protocol.gp import StaticKeys
from .protocol.oda import OdaChain

BANK_SSD_AID = bytes.fromhex("A00000033353534401")
"""[paylab] the bank's supplementary security domain used by the demo and fixtures."""
ISD_TEST_KEYS = StaticKeys.gp_default_test_keys()  # TEST KEYS (GP default 40..4F)
SSD_FIRST_TEST_KEYS = StaticKeys.single(bytes(range(0x20, 0x30)), kvn=0x01)   # TEST KEYS (SEI-TSM)
SSD_TEST_KEYS = StaticKeys(bytes(range(0x40, 0x50)), bytes(range(0x50, 0x60)), bytes(range(0x60, 0x70)),
                           kvn=0x30)                                             # TEST KEYS (SP-TSM)


@dataclass(frozen=True)
class IssuanceStep:
    """One TSM step and what it took."""

    name: str
    apdus: int


def reader_transmit(send: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
    """Wrap a raw card ``send`` with T=0 response recovery (61xx/6Cxx), as a PC/SC stack does."""

    def transmit(raw: bytes) -> bytes:
        return transmit_with_chaining(send, CommandApdu.decode(raw)).encode()

    return transmit


def issue_pboc(send: Callable[[bytes], bytes], isd_aid: bytes, profile: PbocProfile, *, oda: OdaChain | None,
               ssd_aid: bytes = BANK_SSD_AID, isd_keys: StaticKeys = ISD_TEST_KEYS) -> list[IssuanceStep]:
    """Run the whole issuance over ``send`` (raw C-APDU -> R-APDU); returns the steps with APDU counts."""
    count = 0

    def counted(raw: bytes) -> bytes:
        nonlocal count
        count += 1
        return send(raw)

    client = GpClient(reader_transmit(counted))
    steps: list[IssuanceStep] = []

    def step(name: str) -> None:
        nonlocal count
        steps.append(IssuanceStep(name, count))
        count = 0

    client.open_secure_channel(isd_aid, isd_keys, level=0x03)
    step("SCP03 to the ISD (SEI-TSM)")
    client.create_security_domain(ssd_aid, privileges=bytes.fromhex("80C000"))
    client.personalise(ssd_aid, sd_key_dgis(SSD_FIRST_TEST_KEYS, kvn=SSD_FIRST_TEST_KEYS.kvn))
    step("create the bank's SSD with first keys")
    client.open_secure_channel(ssd_aid, SSD_FIRST_TEST_KEYS, level=0x03)
    client.put_keys(SSD_TEST_KEYS.kvn, SSD_TEST_KEYS, replace_kvn=SSD_FIRST_TEST_KEYS.kvn)
    step("key handover: PUT KEY over the SSD's channel (SP-TSM)")
    client.open_secure_channel(ssd_aid, SSD_TEST_KEYS, level=0x03)
    client.load(pboc.PACKAGE_AID, build_load_file(pboc.PACKAGE, code_size=3000), sd_aid=ssd_aid)
    step("load the PBOC package")
    client.install(pboc.PACKAGE_AID, pboc.MODULE_AID, profile.aid)
    step("install and make selectable")
    client.personalise(profile.aid, cps.prepare_pboc(profile, oda=oda))
    step("personalise with STORE DATA (key DGIs DEK-encrypted)")
    client.set_contactless(profile.aid, priority=1)
    step("activate contactless (CRS)")
    return steps


def blank_se(path: Path, form_factor: FormFactor, *, durable: bool = True, seed: int | None = None) -> SecureElement:
    """A blank secure element fresh from the factory, its card image at ``path`` (overwritten)."""
    image = CardImage(path, durable=durable)
    fabricate(image, form_factor, overwrite=True)
    return SecureElement(image, form_factor, default_catalog(), seed=seed)


def issued_se(path: Path, form_factor: FormFactor, profile: PbocProfile, *, oda: OdaChain | None,
              durable: bool = True, seed: int | None = None) -> SecureElement:
    """:func:`blank_se` issued with ``profile`` over its contact interface (:func:`issue_pboc`), powered off."""
    se = blank_se(path, form_factor, durable=durable, seed=seed)
    se.power_on()
    issue_pboc(se.transmit, se.registry.isd().aid, profile, oda=oda)
    se.power_off()
    return se
