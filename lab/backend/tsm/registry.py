"""One institution's SE registry and key store (tables in :mod:`.models`).

:class:`SeRegistry` reads and writes the rows one institution keeps (``keeper``): SEs (id, form
factor, owner, CPLC, ISD AID and a reference to the ISD keys), SSDs with their owners and key
holders, application instances and their states. Rows come back detached (plain attribute
access, no session), and every method runs in its own short transaction: a TSM never holds a
database transaction across an OTA exchange or a call to another institution.

:class:`KeyStore` is the TSM's HSM stand-in for TEST KEYS: GP key sets (:class:`StaticKeys`) and
SCP80 key sets (:class:`OtaKeys`) by reference.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select

from ...protocol.gp import StaticKeys
from ...protocol.ota import OtaKeys
from ..context import BackendContext
from .models import AppRecord, KeyRecord, SeRecord, SsdRecord

__all__ = ["KeyStore", "SeRegistry", "aid_hex", "csv_add", "csv_items", "se_json"]


def aid_hex(aid: bytes) -> str:
    return bytes(aid).hex().upper()


def csv_items(text: str) -> list[str]:
    return [item for item in (text or "").split(",") if item]


def csv_add(text: str, item: str) -> str:
    items = csv_items(text)
    return ",".join([*items, item] if item not in items else items)


def se_json(se: SeRecord) -> dict[str, Any]:
    """What an SE record shows to other institutions (never the key reference)."""
    return {"se_id": se.se_id, "form_factor": se.form_factor, "owner": se.owner, "owner_role": se.owner_role,
            "cplc": se.cplc, "isd_aid": se.isd_aid, "admin_channel": se.admin_channel,
            "packages": csv_items(se.packages), "telecom_active": se.telecom_active, "status": se.status}


class SeRegistry:
    """The registry rows of institution ``keeper``."""

    def __init__(self, ctx: BackendContext, keeper: str) -> None:
        self.ctx = ctx
        self.keeper = keeper

    # -- SEs -----------------------------------------------------------------------------------------
    def put_se(self, se_id: str, **values: Any) -> SeRecord:
        """Create or update an SE record."""
        with self.ctx.session() as session:
            row = session.get(SeRecord, (self.keeper, se_id))
            if row is None:
                row = SeRecord(keeper=self.keeper, se_id=se_id, **values, updated=self.ctx.clock())
                session.add(row)
            else:
                for name, value in values.items():
                    setattr(row, name, value)
                row.updated = self.ctx.clock()
        return row

    def se(self, se_id: str) -> SeRecord | None:
        with self.ctx.session(write=False) as session:
            return session.get(SeRecord, (self.keeper, se_id))

    def ses(self) -> list[SeRecord]:
        with self.ctx.session(write=False) as session:
            return list(session.scalars(select(SeRecord).where(SeRecord.keeper == self.keeper)
                                        .order_by(SeRecord.se_id)))

    # -- SSDs ----------------------------------------------------------------------------------------
    def put_ssd(self, se_id: str, aid: bytes | str, **values: Any) -> SsdRecord:
        key = (self.keeper, se_id, aid if isinstance(aid, str) else aid_hex(aid))
        with self.ctx.session() as session:
            row = session.get(SsdRecord, key)
            if row is None:
                row = SsdRecord(keeper=self.keeper, se_id=se_id, aid=key[2], **values, updated=self.ctx.clock())
                session.add(row)
            else:
                for name, value in values.items():
                    setattr(row, name, value)
                row.updated = self.ctx.clock()
        return row

    def ssd(self, se_id: str, aid: bytes | str) -> SsdRecord | None:
        with self.ctx.session(write=False) as session:
            return session.get(SsdRecord, (self.keeper, se_id, aid if isinstance(aid, str) else aid_hex(aid)))

    def ssds(self, se_id: str) -> list[SsdRecord]:
        with self.ctx.session(write=False) as session:
            return list(session.scalars(select(SsdRecord).where(SsdRecord.keeper == self.keeper,
                                                                SsdRecord.se_id == se_id).order_by(SsdRecord.aid)))

    # -- application instances ----------------------------------------------------------------------
    def put_app(self, se_id: str, aid: bytes | str, **values: Any) -> AppRecord:
        key = (self.keeper, se_id, aid if isinstance(aid, str) else aid_hex(aid))
        with self.ctx.session() as session:
            row = session.get(AppRecord, key)
            if row is None:
                row = AppRecord(keeper=self.keeper, se_id=se_id, aid=key[2], **values, updated=self.ctx.clock())
                session.add(row)
            else:
                for name, value in values.items():
                    setattr(row, name, value)
                row.updated = self.ctx.clock()
        return row

    def app(self, se_id: str, aid: bytes | str) -> AppRecord | None:
        with self.ctx.session(write=False) as session:
            return session.get(AppRecord, (self.keeper, se_id, aid if isinstance(aid, str) else aid_hex(aid)))

    def apps(self, se_id: str) -> list[AppRecord]:
        with self.ctx.session(write=False) as session:
            return list(session.scalars(select(AppRecord).where(AppRecord.keeper == self.keeper,
                                                                AppRecord.se_id == se_id).order_by(AppRecord.aid)))


class KeyStore:
    """Institution ``keeper``'s key sets by reference (TEST KEYS)."""

    def __init__(self, ctx: BackendContext, keeper: str) -> None:
        self.ctx = ctx
        self.keeper = keeper

    def put_gp(self, ref: str, keys: StaticKeys) -> str:
        self._put(ref, kind="gp", kvn=keys.kvn, kid=0, enc=keys.enc.hex(), mac=keys.mac.hex(), dek=keys.dek.hex())
        return ref

    def gp(self, ref: str) -> StaticKeys:
        row = self._get(ref, "gp")
        return StaticKeys(bytes.fromhex(row.enc), bytes.fromhex(row.mac), bytes.fromhex(row.dek), kvn=row.kvn)

    def put_ota(self, ref: str, keys: OtaKeys) -> str:
        self._put(ref, kind="ota", kvn=keys.kic, kid=keys.kid, enc=keys.kic_key.hex(), mac=keys.kid_key.hex(), dek="")
        return ref

    def ota(self, ref: str) -> OtaKeys:
        row = self._get(ref, "ota")
        return OtaKeys(bytes.fromhex(row.enc), bytes.fromhex(row.mac), row.kvn, row.kid)

    def has(self, ref: str) -> bool:
        with self.ctx.session(write=False) as session:
            return session.get(KeyRecord, (self.keeper, ref)) is not None

    def forget(self, ref: str) -> None:
        with self.ctx.session() as session:
            session.execute(delete(KeyRecord).where(KeyRecord.keeper == self.keeper, KeyRecord.ref == ref))

    def _put(self, ref: str, **values: Any) -> None:
        with self.ctx.session() as session:
            row = session.get(KeyRecord, (self.keeper, ref))
            if row is None:
                session.add(KeyRecord(keeper=self.keeper, ref=ref, created=self.ctx.clock(), **values))
            else:
                for name, value in values.items():
                    setattr(row, name, value)

    def _get(self, ref: str, kind: str) -> KeyRecord:
        with self.ctx.session(write=False) as session:
            row = session.get(KeyRecord, (self.keeper, ref))
        if row is None or row.kind != kind:
            raise KeyError(f"{self.keeper} holds no {kind} key set {ref!r}")
        return row
