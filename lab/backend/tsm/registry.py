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

from typing import Any, TypeVar

from sqlalchemy import delete, select

from ...protocol.gp import StaticKeys
from ...protocol.ota import OtaKeys
from ..context import BackendContext
from .models import AppRecord, KeyRecord, SeRecord, SsdRecord

__all__ = ["KeyStore", "SeRegistry", "aid_hex", "csv_add", "csv_items", "se_json"]

_Row = TypeVar("_Row", SeRecord, SsdRecord, AppRecord)


def aid_hex(aid: bytes) -> str:
    return bytes(aid).hex().upper()


def _aid_key(aid: bytes | str) -> str:
    return aid if isinstance(aid, str) else aid_hex(aid)


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
        return self._put(SeRecord, {"se_id": se_id}, values)

    def se(self, se_id: str) -> SeRecord | None:
        return self._row(SeRecord, se_id)

    def ses(self) -> list[SeRecord]:
        return self._rows(SeRecord, SeRecord.se_id)

    # -- SSDs ----------------------------------------------------------------------------------------
    def put_ssd(self, se_id: str, aid: bytes | str, **values: Any) -> SsdRecord:
        return self._put(SsdRecord, {"se_id": se_id, "aid": _aid_key(aid)}, values)

    def ssd(self, se_id: str, aid: bytes | str) -> SsdRecord | None:
        return self._row(SsdRecord, se_id, _aid_key(aid))

    def ssds(self, se_id: str) -> list[SsdRecord]:
        return self._rows(SsdRecord, SsdRecord.aid, SsdRecord.se_id == se_id)

    # -- application instances ----------------------------------------------------------------------
    def put_app(self, se_id: str, aid: bytes | str, **values: Any) -> AppRecord:
        return self._put(AppRecord, {"se_id": se_id, "aid": _aid_key(aid)}, values)

    def app(self, se_id: str, aid: bytes | str) -> AppRecord | None:
        return self._row(AppRecord, se_id, _aid_key(aid))

    def apps(self, se_id: str) -> list[AppRecord]:
        return self._rows(AppRecord, AppRecord.aid, AppRecord.se_id == se_id)

    # -- one implementation for the three tables (primary key: keeper, se_id[, aid]) -----------------
    def _put(self, model: type[_Row], ids: dict[str, str], values: dict[str, Any]) -> _Row:
        with self.ctx.session() as session:
            row = session.get(model, (self.keeper, *ids.values()))
            if row is None:
                row = model(keeper=self.keeper, **ids, **values, updated=self.ctx.clock())
                session.add(row)
            else:
                for name, value in values.items():
                    setattr(row, name, value)
                row.updated = self.ctx.clock()
        return row

    def _row(self, model: type[_Row], *ids: str) -> _Row | None:
        with self.ctx.session(write=False) as session:
            return session.get(model, (self.keeper, *ids))

    def _rows(self, model: type[_Row], order: Any, *where: Any) -> list[_Row]:
        with self.ctx.session(write=False) as session:
            return list(session.scalars(select(model).where(model.keeper == self.keeper, *where).order_by(order)))


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
