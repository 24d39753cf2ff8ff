"""Card fabrication: write a blank GlobalPlatform card into a :class:`~drivers.se.image.CardImage`.

A fabricated card is what leaves the chip factory and pre-personalisation: card life cycle
OP_READY (GP 2.3 5.1.1.1), an issuer security domain holding the initial (transport) key set under
KVN ``FF`` (GP 2.3 11.8.2.2) and the CPLC (GP 2.3 Annex H.4, tag 9F7F), and optionally the PPSE
(``2PAY.SYS.DDF01``, EMV Book B) as an OS application. Everything else arrives through the ISD:
INSTALL/LOAD, PUT KEY, STORE DATA.

ISD AIDs by form factor (``isd_aid`` overrides):

* ``sim``: ``A000000003000000``, the Open Platform card manager AID most UICCs still answer to
  (and that SIM OTA tools expect behind TAR 000000);
* ``microsd`` and ``ese``: ``A000000151000000``, the GlobalPlatform ISD AID (GP 2.3 clause H.1.3).

Privileges of the ISD: ``9EFE80`` (security domain, card lock, card terminate, card reset, CVM
management; trusted path, authorized management, token verification, global delete/lock/registry,
final application; receipt generation; GP 2.3 6.6.1).

CPLC values are fake but well-formed (ASCII "PAYLAB"-ish codes, YDDD BCD dates); the card serial
is the IC serial number. The key diversification data is ``IC fabricator || IC type || IC serial
|| IC batch``, which puts the serial where the EMV/VISA2 diversification schemes read it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from paylab.lab.protocol.gp import StaticKeys

from .errors import CardImageError
from .form_factor import FormFactor
from .gp.security_domain import IMPLEMENTATION as SD_IMPLEMENTATION
from .gp.security_domain import new_sd_data
from .image import IMAGE_VERSION, CardImage
from .registry import APP_SELECTABLE, CARD_OP_READY, SD_PERSONALIZED, Registry, RegistryEntry

ISD_AID_GP = bytes.fromhex("A000000151000000")
ISD_AID_OPEN_PLATFORM = bytes.fromhex("A000000003000000")
DEFAULT_ISD_AID: dict[str, bytes] = {"sim": ISD_AID_OPEN_PLATFORM, "microsd": ISD_AID_GP, "ese": ISD_AID_GP}
ISD_PRIVILEGES = bytes.fromhex("9EFE80")
SSD_PRIVILEGES = bytes.fromhex("800000")
PPSE_AID = bytes.fromhex("325041592E5359532E4444463031")  # "2PAY.SYS.DDF01"
PPSE_IMPLEMENTATION = "paylab.ppse"


@dataclass(frozen=True)
class Cplc:
    """Card Production Life Cycle data (GP 2.3 Annex H.4 / Visa, tag 9F7F, 42 bytes).

    Dates are ``YDDD`` in BCD (last digit of the year, day of the year)."""

    ic_fabricator: bytes = b"PA"
    ic_type: bytes = b"YL"
    os_id: bytes = b"AB"
    os_release_date: bytes = bytes.fromhex("5001")
    os_release_level: bytes = bytes.fromhex("0100")
    ic_fabrication_date: bytes = bytes.fromhex("5010")
    ic_serial_number: bytes = bytes.fromhex("00000001")
    ic_batch_id: bytes = bytes.fromhex("0001")
    ic_module_fabricator: bytes = b"PM"
    ic_module_packaging_date: bytes = bytes.fromhex("5020")
    icc_manufacturer: bytes = b"PC"
    ic_embedding_date: bytes = bytes.fromhex("5030")
    ic_pre_personalizer: bytes = b"PP"
    ic_pre_perso_equipment_date: bytes = bytes.fromhex("5040")
    ic_pre_perso_equipment_id: bytes = bytes.fromhex("00000001")
    ic_personalizer: bytes = b"\x00\x00"
    ic_personalization_date: bytes = b"\x00\x00"
    ic_perso_equipment_id: bytes = bytes(4)

    _LENGTHS = (2, 2, 2, 2, 2, 2, 4, 2, 2, 2, 2, 2, 2, 2, 4, 2, 2, 4)

    def __post_init__(self) -> None:
        for spec, size in zip(fields(self), self._LENGTHS, strict=True):
            value = getattr(self, spec.name)
            if not isinstance(value, bytes) or len(value) != size:
                raise ValueError(f"CPLC {spec.name} must be {size} bytes, got {value!r}")

    def encode(self) -> bytes:
        """The 42-byte value of tag 9F7F."""
        return b"".join(getattr(self, spec.name) for spec in fields(self))

    @classmethod
    def decode(cls, raw: bytes) -> Cplc:
        """Inverse of :meth:`encode` (:class:`ValueError` unless 42 bytes)."""
        if len(raw) != sum(cls._LENGTHS):
            raise ValueError(f"CPLC must be {sum(cls._LENGTHS)} bytes, got {len(raw)}")
        values, pos = {}, 0
        for spec, size in zip(fields(cls), cls._LENGTHS, strict=True):
            values[spec.name], pos = raw[pos:pos + size], pos + size
        return cls(**values)

    @property
    def key_diversification_data(self) -> bytes:
        """10 bytes: IC fabricator, IC type, IC serial number, IC batch identifier."""
        return self.ic_fabricator + self.ic_type + self.ic_serial_number + self.ic_batch_id


def fabricate(image: CardImage, form_factor: FormFactor, *, isd_aid: bytes | None = None,
              isd_keys: StaticKeys | None = None, scp: str = "03", scp_i: int | None = None,
              card_serial: int | bytes | None = None, cplc: Cplc | None = None,
              iin: bytes | None = None, cin: bytes | None = None, install_ppse: bool = True,
              overwrite: bool = False) -> None:
    """Write a blank card into ``image`` and commit it.

    ``isd_keys`` default to the GP TEST KEYS (404142..4F, never a production key); keys with KVN
    00 become the initial key set ``FF``. ``scp`` "02" or "03" with option ``scp_i`` (default 55
    and 70). ``card_serial`` (an int or 4 bytes) replaces the CPLC IC serial number. ``iin`` and
    ``cin`` are the ISD's tags 42 and 45 (absent by default: the issuer personalises them).
    :class:`ValueError` for unusable parameters; :class:`CardImageError` when ``image`` already
    holds a card and ``overwrite`` is false.
    """
    if image.exists() and not overwrite:
        raise CardImageError(f"{image.path or 'in-memory image'} already holds a card (overwrite=True to replace)")
    aid = DEFAULT_ISD_AID[form_factor.name] if isd_aid is None else bytes(isd_aid)
    if not 5 <= len(aid) <= 16:
        raise ValueError(f"ISD AID must be 5-16 bytes, got {len(aid)}")
    production = cplc or Cplc()
    if card_serial is not None:
        serial = card_serial.to_bytes(4, "big") if isinstance(card_serial, int) else bytes(card_serial)
        production = replace(production, ic_serial_number=serial)
    keys = isd_keys if isd_keys is not None else StaticKeys.gp_default_test_keys()
    isd_data = new_sd_data(scp=scp, i=scp_i, keys=keys, kdd=production.key_diversification_data, iin=iin, cin=cin)

    state: dict[str, Any] = {"image_version": IMAGE_VERSION,
                   "card": {"life_cycle": CARD_OP_READY, "cplc": production.encode(), "form_factor": form_factor.name},
                   "registry": [], "applets": {aid.hex().upper(): isd_data}}
    registry = Registry(state)
    registry.put(RegistryEntry(aid=aid, kind="ISD", life_cycle=CARD_OP_READY, privileges=ISD_PRIVILEGES,
                               implementation=SD_IMPLEMENTATION))
    if install_ppse:
        registry.put(RegistryEntry(aid=PPSE_AID, kind="APP", life_cycle=APP_SELECTABLE, associated_sd=aid,
                                   implementation=PPSE_IMPLEMENTATION, contactless_activated=True,
                                   extra={"os": True}))
    image.state.clear()
    image.state.update(state)
    image.commit()


def add_security_domain(image: CardImage, aid: bytes, *, keys: StaticKeys | None, scp: str = "03",
                        scp_i: int | None = None, privileges: bytes = SSD_PRIVILEGES,
                        life_cycle: int = SD_PERSONALIZED, associated_sd: bytes | None = None) -> None:
    """Add a supplementary security domain as a TSM would have left it (INSTALL + key perso done),
    for fixtures and tests, and commit. ``associated_sd`` defaults to the ISD."""
    registry = Registry(image.state)
    if registry.get(aid) is not None:
        raise ValueError(f"{aid.hex().upper()} is already in the registry")
    isd = registry.isd()
    parent = associated_sd or isd.aid
    kdd = image.state.get("applets", {}).get(isd.aid.hex().upper(), {}).get("kdd", bytes(10))
    registry.put(RegistryEntry(aid=aid, kind="SD", life_cycle=life_cycle, privileges=privileges,
                               associated_sd=parent, implementation=SD_IMPLEMENTATION))
    image.state.setdefault("applets", {})[aid.hex().upper()] = new_sd_data(scp=scp, i=scp_i, keys=keys, kdd=kdd)
    image.commit()
