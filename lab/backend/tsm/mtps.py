"""MTPS: the mobile payment public service platform, the hub between SP-TSMs and SEI-TSMs.

* **Institution registration**: banks, UnionPay and operators register with their roles
  (``sp-tsm``, ``sei-tsm``, ``issuer``); only registered institutions use the hub.
* **Application registration**: a bank registers an application (AID, profile, the SP-TSM that
  manages it, the memory it needs); MTPS routes SSD and eligibility requests only for registered
  applications of the requesting SP-TSM.
* **SE registry and open sharing**: SEI-TSMs share their SEs (id, form factor, owner, CPLC, ISD
  AID, preloaded packages; never keys); any registered institution may look an SE up, so a bank
  can serve a phone whatever operator or maker issued its SE.
* **Cross-TSM routing**: ``POST /mtps/route/{operation}`` takes an SP-TSM's request for an SE,
  finds the SE's owner in the registry and forwards it to that SEI-TSM (signed by MTPS, with
  ``on_behalf_of`` naming the SP-TSM, which the SEI-TSM then treats as the requester). Operations:
  ``eligibility``, ``ssd``, ``ssd/handover``, ``ssd/delete``, ``ota/ram``, ``telecom/activate``.

Routes (``/mtps``, signed): ``POST institutions``, ``POST applications`` (banks), ``POST se``
(operators), ``GET se/{se_id}``, ``POST route/{operation}`` (banks and UnionPay).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from sqlalchemy import select

from ..config import SE_ISSUER_KINDS
from ..inst_auth import Caller
from .models import MtpsApplication, MtpsInstitution
from .registry import SeRegistry, csv_items, se_json
from .services import Forbidden, NotFound, TsmServices, serve

__all__ = ["ROLES", "ROUTABLE", "Mtps", "mtps_router"]

ROLES: tuple[str, ...] = ("sp-tsm", "sei-tsm", "issuer")
ROUTABLE: tuple[str, ...] = ("eligibility", "ssd", "ssd/handover", "ssd/delete", "ota/ram", "telecom/activate")


class Mtps:
    """The hub (module docstring); ``name`` is its institution in the configuration."""

    def __init__(self, services: TsmServices, name: str = "mtps") -> None:
        self.services = services
        self.name = name
        self.ctx = services.ctx
        self.registry = SeRegistry(self.ctx, name)

    # -- registrations -----------------------------------------------------------------------------
    def register_institution(self, caller: Caller, roles: list[str]) -> dict[str, Any]:
        unknown = [r for r in roles if r not in ROLES]
        if unknown or not roles:
            raise Forbidden(f"roles {unknown or roles} (expected some of {', '.join(ROLES)})")
        with self.ctx.session() as session:
            row = session.get(MtpsInstitution, caller.name)
            if row is None:
                session.add(MtpsInstitution(name=caller.name, kind=caller.kind, roles=",".join(roles),
                                            registered=self.ctx.clock()))
            else:
                row.roles = ",".join(sorted({*csv_items(row.roles), *roles}))
        return {"name": caller.name, "kind": caller.kind, "roles": sorted(set(roles))}

    def institution(self, name: str) -> MtpsInstitution | None:
        with self.ctx.session(write=False) as session:
            return session.get(MtpsInstitution, name)

    def _registered(self, name: str, role: str | None = None) -> MtpsInstitution:
        row = self.institution(name)
        if row is None:
            raise Forbidden(f"{name} is not registered with MTPS")
        if role is not None and role not in csv_items(row.roles):
            raise Forbidden(f"{name} is not registered as {role}")
        return row

    def register_application(self, caller: Caller, *, aid: str, profile: str, sp_tsm: str,
                             memory: int) -> dict[str, Any]:
        """A bank registers one of its applications and the SP-TSM that will manage it."""
        self._registered(caller.name, "issuer")
        self._registered(sp_tsm, "sp-tsm")
        try:
            products = self.ctx.config.issuer(caller.name).profiles
        except KeyError:
            raise Forbidden(f"{caller.name} is no card issuer") from None
        if profile not in products:
            raise Forbidden(f"{profile!r} is not a card product of {caller.name}")
        with self.ctx.session() as session:
            row = session.get(MtpsApplication, aid.upper())
            if row is not None and row.issuer != caller.name:
                raise Forbidden(f"AID {aid.upper()} is registered to {row.issuer}")
            if row is None:
                session.add(MtpsApplication(aid=aid.upper(), issuer=caller.name, sp_tsm=sp_tsm, profile=profile,
                                            package_aid="", memory=memory, registered=self.ctx.clock()))
            else:
                row.sp_tsm, row.profile, row.memory = sp_tsm, profile, memory
        return {"aid": aid.upper(), "issuer": caller.name, "sp_tsm": sp_tsm, "profile": profile}

    def applications(self, sp_tsm: str | None = None) -> list[MtpsApplication]:
        with self.ctx.session(write=False) as session:
            query = select(MtpsApplication).order_by(MtpsApplication.aid)
            if sp_tsm is not None:
                query = query.where(MtpsApplication.sp_tsm == sp_tsm)
            return list(session.scalars(query))

    def share_se(self, caller: Caller, se: dict[str, Any]) -> dict[str, Any]:
        """An SEI-TSM shares one of its SEs (the record it keeps, without keys)."""
        self._registered(caller.name, "sei-tsm")
        existing = self.registry.se(se["se_id"])
        if existing is not None and existing.owner != caller.name:
            raise Forbidden(f"SE {se['se_id']} is shared by {existing.owner}")
        row = self.registry.put_se(se["se_id"], form_factor=se["form_factor"], owner=caller.name,
                                   owner_role=se.get("owner_role", "mno"), cplc=se["cplc"], isd_aid=se["isd_aid"],
                                   isd_key_ref=None, admin_channel=se["admin_channel"],
                                   packages=",".join(se.get("packages", [])), status=se.get("status", "active"))
        return se_json(row)

    def se(self, caller: Caller, se_id: str) -> dict[str, Any]:
        """SE open sharing: the record, for any registered institution."""
        self._registered(caller.name)
        row = self.registry.se(se_id)
        if row is None:
            raise NotFound(f"SE {se_id} is not shared with MTPS")
        return se_json(row)

    # -- routing -----------------------------------------------------------------------------------
    def route(self, caller: Caller, operation: str, payload: dict[str, Any]) -> Any:
        """Forward an SP-TSM's request to the SEI-TSM owning the SE (module docstring)."""
        if operation not in ROUTABLE:
            raise NotFound(f"MTPS routes {', '.join(ROUTABLE)}, not {operation!r}")
        self._registered(caller.name, "sp-tsm")
        se_id = str(payload.get("se_id", ""))
        row = self.registry.se(se_id)
        if row is None:
            raise NotFound(f"SE {se_id!r} is not shared with MTPS")
        mine = self.applications(caller.name)
        if not mine:
            raise Forbidden(f"{caller.name} manages no application registered with MTPS")
        if operation == "eligibility" and payload.get("aid") and \
                str(payload["aid"]).upper() not in {a.aid for a in mine}:
            raise Forbidden(f"application {payload['aid']} is not registered with MTPS for {caller.name}")
        forwarded = {**payload, "on_behalf_of": caller.name}
        return self.services.client(self.name).post(f"/tsm/sei/{row.owner}/{operation}", forwarded)


class RegisterInstitution(BaseModel):
    roles: list[str]


class RegisterApplication(BaseModel):
    aid: str
    profile: str
    sp_tsm: str
    memory: int = 16_000


class ShareSe(BaseModel):
    se_id: str
    form_factor: str
    cplc: str
    isd_aid: str
    admin_channel: str
    owner_role: str = "mno"
    packages: list[str] = []
    status: str = "active"


def mtps_router(mtps: Mtps) -> APIRouter:
    """The hub's institution API under ``/mtps`` (module docstring)."""
    router = APIRouter(prefix="/mtps", tags=["mtps"])
    auth = mtps.services.auth
    institutions = Depends(auth.require("bank", "unionpay", *SE_ISSUER_KINDS))
    banks = Depends(auth.require("bank"))
    operators = Depends(auth.require(*SE_ISSUER_KINDS))  # SEI-TSMs: operators, handset makers, SE issuers
    anyone = Depends(auth.require())
    sp_tsms = Depends(auth.require("bank", "unionpay"))

    @router.post("/institutions")
    def register_institution(body: RegisterInstitution, caller: Caller = institutions) -> dict[str, Any]:
        return serve(lambda: mtps.register_institution(caller, body.roles))

    @router.post("/applications")
    def register_application(body: RegisterApplication, caller: Caller = banks) -> dict[str, Any]:
        return serve(lambda: mtps.register_application(caller, aid=body.aid, profile=body.profile,
                                                       sp_tsm=body.sp_tsm, memory=body.memory))

    @router.post("/se")
    def share_se(body: ShareSe, caller: Caller = operators) -> dict[str, Any]:
        return serve(lambda: mtps.share_se(caller, body.model_dump()))

    @router.get("/se/{se_id}")
    def se(se_id: str, caller: Caller = anyone) -> dict[str, Any]:
        return serve(lambda: mtps.se(caller, se_id))

    @router.post("/route/{operation:path}")
    def route(operation: str, body: dict[str, Any], caller: Caller = sp_tsms) -> Any:
        return serve(lambda: mtps.route(caller, operation, body))

    return router
