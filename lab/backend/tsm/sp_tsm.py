"""SP-TSM: the service provider's TSM, a bank's own or UnionPay's (which aggregates banks).

It asks the SEI-TSM (directly, or routed by MTPS) for eligibility and an SSD, takes the SSD's keys
over (PUT KEY replacing the first key set, then the SEI-TSM confirms on the card and forgets them),
and from then on manages its SSD alone: LOAD (unless the SE came with the package preloaded),
INSTALL, personalisation with the bank's profile (:func:`paylab.lab.protocol.cps.prepare_pboc`,
DEK-encrypted key DGIs), contactless activation (the finance function), lock and unlock (lost
phone), delete, state query.

Card access: on microSD and eSE its own HTTP admin route (SCP03 scripted end to end); on a SIM the
SEI-TSM's SMS-PP relay (the SP-TSM builds and protects the commands; the operator adds SCP80).

UnionPay's SP-TSM keeps one SSD per SE and installs every bank's application in it; a bank's own
SP-TSM has its own SSD. SSD AIDs: ``A000000333 535344`` + 2 bytes of SHA-256(name) [M: paylab's
numbering], the key set after handover is KVN 30 (random TEST KEYS).

Routes (``/tsm/sp/{name}``, signed): ``POST issue`` (UnionPay: any bank for its own cards; a bank's
SP-TSM: the bank itself), ``POST apps/activate``, ``POST apps/lock``, ``POST apps/unlock``, ``POST
apps/delete``, ``POST apps/state`` (the issuing bank, or MTPS on its behalf).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from typing import Any, Protocol

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from ...profiles import PbocProfile, load_bundled
from ...protocol import cps
from ...protocol.gp import StaticKeys
from ...protocol.oda import OdaChain
from ...protocol.ota import RApdu
from ..inst_auth import Caller, InstitutionClient
from .card_route import CardRoute, HttpAdminRoute, RelayRoute, Unit
from .gp_session import SdSession
from .models import SsdRecord
from .registry import KeyStore, SeRegistry, aid_hex, csv_add, csv_items
from .services import Conflict, Forbidden, NotFound, TsmServices, effective_caller, serve, unwrap_keys

__all__ = ["PBOC_MEMORY", "SP_KVN", "DirectLink", "MtpsLink", "SeiLink", "SpTsm", "default_ssd_aid", "oda_chain",
           "pboc_package", "sp_tsm_router"]

PBOC_MEMORY = 16_000
"""Non-volatile memory an installed and personalised PBOC application needs [M: lab estimate]."""
SP_KVN = 0x30
CONTACTLESS_PRIORITY = 1


class SeiLink(Protocol):
    """How an SP-TSM reaches the SEI-TSM of an SE: ``call("ssd", {...})`` etc."""

    via: str

    def call(self, operation: str, payload: dict[str, Any]) -> Any: ...


class DirectLink:
    """Straight to the SEI-TSM's API (modes "direct" and "unionpay-hub")."""

    def __init__(self, client: InstitutionClient, sei: str) -> None:
        self.client, self.sei, self.via = client, sei, f"direct:{sei}"

    def call(self, operation: str, payload: dict[str, Any]) -> Any:
        return self.client.post(f"/tsm/sei/{self.sei}/{operation}", payload)


class MtpsLink:
    """Through the MTPS hub, which finds the SE's owner and routes (mode "mtps-hub")."""

    via = "mtps"

    def __init__(self, client: InstitutionClient) -> None:
        self.client = client

    def call(self, operation: str, payload: dict[str, Any]) -> Any:
        return self.client.post(f"/mtps/route/{operation}", payload)


def default_ssd_aid(name: str) -> bytes:
    return bytes.fromhex("A000000333535344") + hashlib.sha256(name.encode()).digest()[:2]


@functools.lru_cache(maxsize=8)
def oda_chain(profile_name: str) -> OdaChain:
    """The TEST ODA chain of a bundled profile (generated once per profile: key generation is slow)."""
    seed = int.from_bytes(hashlib.sha256(profile_name.encode()).digest()[:4], "big")
    return cps.generate_oda_chain(load_bundled(profile_name), seed_or_rng=seed)


@functools.lru_cache(maxsize=1)
def pboc_package() -> tuple[bytes, bytes, bytes]:
    """(package AID, module AID, load file) of the PBOC applet: the lab's CAP file comes from the
    emulated card's package catalogue."""
    from paylab.drivers.se.applets import pboc
    from paylab.drivers.se.gp.content import build_load_file

    return pboc.PACKAGE_AID, pboc.MODULE_AID, build_load_file(pboc.PACKAGE, code_size=3000)


class SpTsm:
    """The SP-TSM of institution ``name`` (module docstring)."""

    def __init__(self, services: TsmServices, name: str, *, ssd_aid: bytes | None = None) -> None:
        institution = services.ctx.config.institution(name)
        if institution is None or institution.kind not in ("bank", "unionpay"):
            raise ValueError(f"{name!r} is no bank or UnionPay institution")
        self.services = services
        self.name = name
        self.kind = institution.kind
        self.ctx = services.ctx
        self.ssd_aid = ssd_aid or default_ssd_aid(name)
        self.registry = SeRegistry(self.ctx, name)
        self.keys = KeyStore(self.ctx, name)

    # -- plumbing ----------------------------------------------------------------------------------
    def link(self, via: str) -> SeiLink:
        client = self.services.client(self.name)
        if via == "mtps":
            return MtpsLink(client)
        if via.startswith("direct:"):
            return DirectLink(client, via.split(":", 1)[1])
        raise NotFound(f"unknown route {via!r} to an SEI-TSM")

    def profile(self, issuer: str, profile_name: str) -> PbocProfile:
        """A profile of ``issuer``'s card products this SP-TSM may issue."""
        if self.kind == "bank" and issuer != self.name:
            raise Forbidden(f"{self.name} issues its own cards only, not {issuer}'s")
        try:
            products = self.ctx.config.issuer(issuer).profiles
        except KeyError:
            raise NotFound(f"no issuer {issuer!r}") from None
        if profile_name not in products:
            raise Forbidden(f"{profile_name!r} is not a card product of {issuer}")
        return load_bundled(profile_name)

    def _ssd(self, se_id: str) -> SsdRecord:
        ssd = self.registry.ssd(se_id, self.ssd_aid)
        if ssd is None or ssd.state != "handed-over" or ssd.key_ref is None:
            raise NotFound(f"{self.name} has no SSD on {se_id}")
        return ssd

    def route(self, se_id: str, ssd: SsdRecord) -> CardRoute:
        if ssd.channel != "sms-pp":
            return HttpAdminRoute(self.services.gateway, self.services.handset(se_id))
        link = self.link(ssd.via or "")

        def relay(target: bytes, units: Sequence[Unit]) -> list[RApdu]:
            answer = link.call("ota/ram", {"se_id": se_id, "sd_aid": aid_hex(target),
                                           "units": [[apdu.hex().upper() for apdu in unit] for unit in units]})
            raw = [bytes.fromhex(r) for r in answer["responses"]]
            return [RApdu(r[:-2], int.from_bytes(r[-2:], "big")) for r in raw]

        return RelayRoute(relay, ssd.max_script_bytes or 0)

    def session(self, se_id: str, ssd: SsdRecord | None = None) -> SdSession:
        ssd = ssd or self._ssd(se_id)
        assert ssd.key_ref is not None
        return SdSession(self.route(se_id, ssd), bytes.fromhex(ssd.aid), self.keys.gp(ssd.key_ref),
                         rng=self.ctx.rng, sequence_counter=ssd.scp_counter)

    def _done_with(self, se_id: str, sd: SdSession, **changes: Any) -> None:
        self.registry.put_ssd(se_id, sd.sd_aid, scp_counter=sd.sequence_counter, **changes)

    def _app(self, se_id: str, aid: bytes, caller: str | None) -> Any:
        app = self.registry.app(se_id, aid)
        if app is None or app.state == "deleted":
            raise NotFound(f"{self.name} has no application {aid_hex(aid)} on {se_id}")
        if caller is not None and caller not in (self.name, app.issuer):
            raise Forbidden(f"application {aid_hex(aid)} on {se_id} is {app.issuer}'s, not {caller}'s")
        return app

    # -- issuance ------------------------------------------------------------------------------------
    def issue(self, se_id: str, *, issuer: str, profile_name: str, via: str) -> dict[str, Any]:
        """Eligibility, SSD and key handover (first time on this SE), load, install, personalise."""
        profile = self.profile(issuer, profile_name)
        package_aid, module_aid, load_file = pboc_package()
        existing = self.registry.app(se_id, profile.aid)
        if existing is not None and existing.state != "deleted":
            raise Conflict(f"{aid_hex(profile.aid)} is already on {se_id} ({existing.state})")
        link = self.link(via)
        se = link.call("eligibility", {"se_id": se_id, "memory": PBOC_MEMORY, "aid": aid_hex(profile.aid)})
        ssd = self.registry.ssd(se_id, self.ssd_aid)
        if ssd is None or ssd.state == "deleted":
            ssd = self._take_over_ssd(se_id, link)
        dgis = cps.prepare_pboc(profile, oda=oda_chain(profile_name))
        sd = self.session(se_id, ssd)
        preloaded = aid_hex(package_aid) in [*se.get("packages", []), *csv_items(ssd.packages)]
        with sd.script():
            if not preloaded:
                sd.load(package_aid, load_file)
            sd.install(package_aid, module_aid, profile.aid)
            sd.personalise(profile.aid, dgis)
        self._done_with(se_id, sd, packages=ssd.packages if preloaded else csv_add(ssd.packages, aid_hex(package_aid)))
        self.registry.put_app(se_id, profile.aid, ssd_aid=ssd.aid, issuer=issuer, profile=profile_name,
                              package_aid=aid_hex(package_aid), state="personalised")
        return {"se_id": se_id, "aid": aid_hex(profile.aid), "ssd_aid": ssd.aid, "sp_tsm": self.name,
                "issuer": issuer, "state": "personalised", "form_factor": se.get("form_factor"), "via": via}

    def _take_over_ssd(self, se_id: str, link: SeiLink) -> SsdRecord:
        """Ask for an SSD, replace its first key set with ours (PUT KEY), let the SEI-TSM confirm."""
        created = link.call("ssd", {"se_id": se_id, "ssd_aid": aid_hex(self.ssd_aid)})
        institution = self.ctx.config.institution(self.name)
        assert institution is not None
        first = unwrap_keys(created["keys"], receiver_key=institution.hmac_key, sender=created["sei"])
        route = created["route"]
        first_ref = self.keys.put_gp(f"{se_id}/ssd/{aid_hex(self.ssd_aid)}/first", first)
        ssd = self.registry.put_ssd(se_id, self.ssd_aid, owner=self.name, state="created", key_ref=first_ref,
                                    kvn=first.kvn, via=link.via, channel=route["channel"],
                                    max_script_bytes=route.get("max_script_bytes"), scp_counter=None, packages="")
        rng = self.ctx.rng
        ours = StaticKeys(rng.randbytes(16), rng.randbytes(16), rng.randbytes(16), kvn=SP_KVN)
        sd = self.session(se_id, ssd)
        sd.put_keys(SP_KVN, ours, replace_kvn=first.kvn)
        ref = self.keys.put_gp(f"{se_id}/ssd/{aid_hex(self.ssd_aid)}", ours)
        self.keys.forget(first_ref)
        self._done_with(se_id, sd, key_ref=ref, kvn=SP_KVN, state="handed-over")
        link.call("ssd/handover", {"se_id": se_id, "ssd_aid": aid_hex(self.ssd_aid)})
        return self._ssd(se_id)

    # -- life cycle ------------------------------------------------------------------------------------
    def activate(self, se_id: str, aid: bytes, *, caller: str | None = None) -> dict[str, Any]:
        """The finance function: contactless activation (GP Amendment C) so the PPSE lists it."""
        self._app(se_id, aid, caller)
        sd = self.session(se_id)
        sd.set_contactless(aid, priority=CONTACTLESS_PRIORITY)
        self._done_with(se_id, sd)
        return self._state_of(self.registry.put_app(se_id, aid, state="active"))

    def lock(self, se_id: str, aid: bytes, *, caller: str | None = None) -> dict[str, Any]:
        """Lost phone: SET STATUS LOCKED; the application is no longer selectable (taps find nothing)."""
        self._app(se_id, aid, caller)
        sd = self.session(se_id)
        sd.set_status(0x40, 0x80, aid)
        self._done_with(se_id, sd)
        return self._state_of(self.registry.put_app(se_id, aid, state="locked"))

    def unlock(self, se_id: str, aid: bytes, *, caller: str | None = None) -> dict[str, Any]:
        """Phone found: SET STATUS without the lock bit (P2 00, as GlobalPlatformPro sends)."""
        self._app(se_id, aid, caller)
        sd = self.session(se_id)
        sd.set_status(0x40, 0x00, aid)
        self._done_with(se_id, sd)
        return self._state_of(self.registry.put_app(se_id, aid, state="active"))

    def delete(self, se_id: str, aid: bytes, *, caller: str | None = None, end_service: bool = False
               ) -> dict[str, Any]:
        """DELETE the instance (and the load file when this SSD loaded it and nothing else uses it);
        ``end_service`` then asks the SEI-TSM to delete the SSD when it holds nothing more."""
        app = self._app(se_id, aid, caller)
        ssd = self._ssd(se_id)
        remaining = [a for a in self.registry.apps(se_id) if a.state != "deleted" and a.aid != app.aid]
        sd = self.session(se_id, ssd)
        packages = ssd.packages
        with sd.script():
            sd.delete(aid)
            if app.package_aid in csv_items(ssd.packages) and not any(
                    a.package_aid == app.package_aid for a in remaining):
                sd.delete(bytes.fromhex(app.package_aid), related=True)
                packages = ",".join(p for p in csv_items(ssd.packages) if p != app.package_aid)
        self._done_with(se_id, sd, packages=packages)
        row = self.registry.put_app(se_id, aid, state="deleted")
        if end_service and not remaining:
            self.link(ssd.via or "").call("ssd/delete", {"se_id": se_id, "ssd_aid": ssd.aid})
            assert ssd.key_ref is not None
            self.keys.forget(ssd.key_ref)
            self.registry.put_ssd(se_id, ssd.aid, state="deleted", key_ref=None)
        return self._state_of(row)

    def state(self, se_id: str, *, caller: str | None = None, live: bool = False) -> dict[str, Any]:
        """The applications this SP-TSM put on ``se_id`` (the caller's only), with ``live`` the life
        cycle states the SSD reports (GET STATUS)."""
        apps = [a for a in self.registry.apps(se_id) if caller in (None, self.name, a.issuer)]
        out = {"se_id": se_id, "sp_tsm": self.name, "apps": [self._state_of(a) for a in apps]}
        ssd = self.registry.ssd(se_id, self.ssd_aid)
        if ssd is not None:
            out["ssd"] = {"aid": ssd.aid, "state": ssd.state, "kvn": ssd.kvn, "channel": ssd.channel, "via": ssd.via}
        if live and ssd is not None and ssd.state == "handed-over":
            sd = self.session(se_id, ssd)
            entries = {aid_hex(e.aid): e for e in sd.get_status(0x40)}
            self._done_with(se_id, sd)
            for app in out["apps"]:
                entry = entries.get(app["aid"])
                app["card_life_cycle"] = None if entry is None else f"{entry.life_cycle:02X}"
        return out

    @staticmethod
    def _state_of(app: Any) -> dict[str, Any]:
        return {"aid": app.aid, "issuer": app.issuer, "profile": app.profile, "ssd_aid": app.ssd_aid,
                "state": app.state}


# -- routes ------------------------------------------------------------------------------------------

class IssueRequest(BaseModel):
    se_id: str
    profile: str
    issuer: str | None = None
    sei: str | None = None           # the operator (SEI-TSM) to go to directly
    via: str | None = None           # or "mtps"
    activate: bool = False           # one-stop: activate finance and telecom functions too


class AppRef(BaseModel):
    se_id: str
    aid: str
    end_service: bool = False
    on_behalf_of: str | None = None


class StateRequest(BaseModel):
    se_id: str
    live: bool = False
    on_behalf_of: str | None = None


def activate_service(tsm: SpTsm, se_id: str, aid: bytes) -> dict[str, Any]:
    """Finance (this SP-TSM) then telecom (the SEI-TSM, over the same link) activation."""
    app = tsm.activate(se_id, aid)
    ssd = tsm._ssd(se_id)
    telecom = tsm.link(ssd.via or "").call("telecom/activate", {"se_id": se_id})
    return {"app": app, "telecom_active": telecom.get("telecom_active", False)}


def sp_tsm_router(tsm: SpTsm) -> APIRouter:
    """The SP-TSM's institution API under ``/tsm/sp/{name}`` (module docstring)."""
    router = APIRouter(prefix=f"/tsm/sp/{tsm.name}", tags=["sp-tsm"])
    auth = tsm.services.auth
    issuers = Depends(auth.require("bank", names={tsm.name}) if tsm.kind == "unionpay"
                      else auth.require(names={tsm.name}))
    owners = Depends(auth.require("bank", "mtps", names={tsm.name}) if tsm.kind == "unionpay"
                     else auth.require("mtps", names={tsm.name}))

    def _aid(text: str) -> bytes:
        try:
            return bytes.fromhex(text)
        except ValueError:
            raise NotFound(f"{text!r} is no AID") from None

    @router.post("/issue")
    def issue(body: IssueRequest, caller: Caller = issuers) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            issuer = body.issuer or caller.name
            if caller.kind == "bank" and issuer != caller.name:
                raise Forbidden(f"{caller.name} may not issue {issuer}'s cards")
            via = body.via or (f"direct:{body.sei}" if body.sei else None)
            if via is None:
                raise NotFound("say which SEI-TSM serves the SE (sei) or route via MTPS (via: mtps)")
            result = tsm.issue(body.se_id, issuer=issuer, profile_name=body.profile, via=via)
            if body.activate:
                result["activation"] = activate_service(tsm, body.se_id, _aid(result["aid"]))
            return result
        return serve(run)

    def app_operation(name: str) -> None:
        @router.post(f"/apps/{name}", name=f"apps_{name}")
        def operation(body: AppRef, caller: Caller = owners) -> dict[str, Any]:
            acting = effective_caller(caller, body.model_dump())

            def run() -> dict[str, Any]:
                aid = _aid(body.aid)
                if name == "delete":
                    return tsm.delete(body.se_id, aid, caller=acting, end_service=body.end_service)
                return getattr(tsm, name)(body.se_id, aid, caller=acting)
            return serve(run)

    for operation_name in ("activate", "lock", "unlock", "delete"):
        app_operation(operation_name)

    @router.post("/apps/state")
    def state(body: StateRequest, caller: Caller = owners) -> dict[str, Any]:
        acting = effective_caller(caller, body.model_dump())
        return serve(lambda: tsm.state(body.se_id, caller=acting, live=body.live))

    return router
