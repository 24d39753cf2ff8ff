"""TSM tables: each institution's SE registry and key store, and the MTPS hub's registrations.

Every row has a ``keeper``: the institution whose records they are (an SEI-TSM knows its SEs and the
SSDs it created, an SP-TSM its SSDs and application instances, MTPS the SEs shared with it). AIDs,
CPLC and TARs are upper-case hex; times are Unix seconds from the context clock.

The key store (``tsm_keys``) stands in for each TSM's HSM: it holds TEST KEYS only, in hex, and the
registry refers to them by ``ref`` (the "ISD keys reference" of an SE record, the SSD key set of an
SSD record). A key set handed over to another institution is deleted from the giver's store.
"""

from __future__ import annotations

from sqlalchemy import Boolean, CheckConstraint, Double, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ..db import Base

__all__ = ["APP_STATES", "SSD_STATES", "AppRecord", "KeyRecord", "MtpsApplication", "MtpsInstitution",
           "SeRecord", "SsdRecord"]

SSD_STATES: tuple[str, ...] = ("created", "handed-over", "deleted")
APP_STATES: tuple[str, ...] = ("loaded", "installed", "personalised", "active", "locked", "deleted")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class SeRecord(Base):
    """A secure element as one institution knows it."""

    __tablename__ = "tsm_se"

    keeper: Mapped[str] = mapped_column(String(32), primary_key=True)
    se_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    form_factor: Mapped[str] = mapped_column(String(8))           # sim | microsd | ese
    owner: Mapped[str] = mapped_column(String(32))                # institution running the SEI-TSM
    owner_role: Mapped[str] = mapped_column(String(8))            # mno | issuer | oem (who owns the ISD)
    cplc: Mapped[str] = mapped_column(String(84))
    isd_aid: Mapped[str] = mapped_column(String(32))
    isd_key_ref: Mapped[str | None] = mapped_column(String(64))   # the owner's key store only
    admin_channel: Mapped[str] = mapped_column(String(8))         # sms-pp | http
    msisdn: Mapped[str | None] = mapped_column(String(20))
    packages: Mapped[str] = mapped_column(String(256), default="")  # preloaded load files, comma separated
    telecom_active: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default="active")
    scp_counter: Mapped[int | None] = mapped_column(Integer)      # the ISD's last SCP03 sequence counter seen
    updated: Mapped[float] = mapped_column(Double)


class SsdRecord(Base):
    """A supplementary security domain: who owns it, who holds its keys, how OTA reaches it."""

    __tablename__ = "tsm_ssd"
    __table_args__ = (CheckConstraint(_in("state", SSD_STATES), name="ck_tsm_ssd_state"),)

    keeper: Mapped[str] = mapped_column(String(32), primary_key=True)
    se_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    aid: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(32))                # the SP-TSM's institution
    state: Mapped[str] = mapped_column(String(12), default="created")
    key_ref: Mapped[str | None] = mapped_column(String(64))
    kvn: Mapped[int | None] = mapped_column(Integer)
    tar: Mapped[str | None] = mapped_column(String(6))            # SIM: the SSD's SCP80 TAR
    ota_key_ref: Mapped[str | None] = mapped_column(String(64))   # SIM: the TAR's OTA key set (SEI-TSM)
    scp_counter: Mapped[int | None] = mapped_column(Integer)      # last SCP03 sequence counter seen
    via: Mapped[str | None] = mapped_column(String(48))           # SP-TSM: how it reaches the SEI-TSM
    channel: Mapped[str | None] = mapped_column(String(8))        # SP-TSM: sms-pp | http
    max_script_bytes: Mapped[int | None] = mapped_column(Integer)  # SP-TSM: SMS-PP script limit
    packages: Mapped[str] = mapped_column(String(256), default="")  # load files this SSD loaded
    updated: Mapped[float] = mapped_column(Double)


class AppRecord(Base):
    """An application instance an SP-TSM put on an SE."""

    __tablename__ = "tsm_app"
    __table_args__ = (CheckConstraint(_in("state", APP_STATES), name="ck_tsm_app_state"),)

    keeper: Mapped[str] = mapped_column(String(32), primary_key=True)
    se_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    aid: Mapped[str] = mapped_column(String(32), primary_key=True)
    ssd_aid: Mapped[str] = mapped_column(String(32))
    issuer: Mapped[str] = mapped_column(String(32))               # the bank whose card this is
    profile: Mapped[str] = mapped_column(String(64))
    package_aid: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(12))
    updated: Mapped[float] = mapped_column(Double)


class KeyRecord(Base):
    """One key set in a TSM's key store (TEST KEYS): a GP SCP key set or an SCP80 OTA key set."""

    __tablename__ = "tsm_keys"

    keeper: Mapped[str] = mapped_column(String(32), primary_key=True)
    ref: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))                  # gp | ota
    kvn: Mapped[int] = mapped_column(Integer, default=0)          # gp: KVN; ota: KIc byte
    kid: Mapped[int] = mapped_column(Integer, default=0)          # ota: KID byte
    enc: Mapped[str] = mapped_column(String(64))                  # gp ENC / ota KIc key
    mac: Mapped[str] = mapped_column(String(64))                  # gp MAC / ota KID key
    dek: Mapped[str] = mapped_column(String(64), default="")
    created: Mapped[float] = mapped_column(Double)


class MtpsInstitution(Base):
    """An institution registered with the MTPS hub."""

    __tablename__ = "mtps_institutions"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    roles: Mapped[str] = mapped_column(String(64))                # comma separated: sp-tsm, sei-tsm, issuer
    registered: Mapped[float] = mapped_column(Double)


class MtpsApplication(Base):
    """An application registered with the MTPS hub: its AID, issuing bank and the SP-TSM managing it."""

    __tablename__ = "mtps_applications"

    aid: Mapped[str] = mapped_column(String(32), primary_key=True)
    issuer: Mapped[str] = mapped_column(String(32))
    sp_tsm: Mapped[str] = mapped_column(String(32))
    profile: Mapped[str] = mapped_column(String(64))
    package_aid: Mapped[str] = mapped_column(String(32))
    memory: Mapped[int] = mapped_column(Integer)
    registered: Mapped[float] = mapped_column(Double)
