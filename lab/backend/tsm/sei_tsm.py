"""SEI-TSM: the TSM of the institution that owns an SE's issuer security domain.

For a SIM that is the mobile operator (ISD reached over SMS-PP with the operator's SCP80 keys, TAR
``000000``); for a microSD the card issuer and for an eSE the handset maker (ISD reached over HTTP
remote administration with SCP03), played in the lab by the institution that registered the SE
(``owner_role`` in the registry says which). The SEI-TSM

* knows its SEs from manufacturing data (:meth:`SeiTsm.register_se`: CPLC, ISD AID and keys, the
  SIM's OTA keys and preloaded packages);
* checks **eligibility** over the air: the CPLC the card reports must be the registered one, and
  the free non-volatile memory (GET DATA ``FF21``, ETSI TS 102 226 8.2.1.7.2) must cover the
  application;
* **creates an SSD** for an SP-TSM through the ISD (INSTALL with privileges ``80C000``: security
  domain, trusted path, authorized management) and personalises its first key set (KVN 01, random
  TEST KEYS), which it hands to the SP-TSM wrapped for it (:func:`.services.wrap_keys`); on a SIM
  it also gives the SSD its own TAR and SCP80 key set, so that RAM reaches the SSD itself;
* **confirms the key handover**: once the SP-TSM has replaced the first key set by PUT KEY, the
  SSD's key information (GET DATA ``E0``) must no longer list KVN 01; the SEI-TSM then deletes the
  first keys from its key store: it can no longer open the SSD;
* **relays RAM** for the owner of an SSD on a SIM (only the operator's OTA platform can send SMS-PP
  to its SIMs): the SP-TSM's commands, already protected end to end where it matters (key material
  under the SSD's DEK), go out under the SSD's TAR;
* **activates the telecom side** of the service (the operator's NFC service for the subscriber) and
  deletes SSDs on their owner's request.

Routes (``/tsm/sei/{name}``, signed, callable by banks, UnionPay and MTPS; MTPS may act
``on_behalf_of`` an SP-TSM): ``POST eligibility``, ``POST ssd``, ``POST ssd/handover``, ``POST
ssd/delete``, ``POST ota/ram``, ``POST telecom/activate``, ``GET se/{se_id}``.
"""

from __future__ import annotations

import itertools
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from ...gp_client import CardCommandFailed
from ...protocol import tlv
from ...protocol.apdu import CommandApdu
from ...protocol.gp import StaticKeys
from ...protocol.ota import OtaKeys, RApdu, key_byte
from ...protocol.ota.ram import TAR_ISD
from ...protocol.ota.spi import KicAlgorithm, KidAlgorithm
from ..inst_auth import Caller
from ..ota_gateway import OtaGateway
from .card_route import CardRoute, HttpAdminRoute, SmsPpRoute, Unit
from .gp_session import DEFAULT_SCP03_I, SdSession, key_versions
from .models import SeRecord
from .registry import KeyStore, SeRegistry, aid_hex, csv_items, se_json
from .services import Conflict, Forbidden, NotEligible, NotFound, TsmServices, effective_caller, serve, wrap_keys

__all__ = ["SSD_PRIVILEGES", "SeiTsm", "sei_tsm_router"]

SSD_PRIVILEGES = bytes.fromhex("80C000")
"""Security domain; trusted path, authorized management (GP 2.3 Table 6-1): the SP manages its own SSD."""
FIRST_KVN = 0x01
OTA_KEY_SET = 1
_PUBLIC = StaticKeys.single(bytes(16))
"""Stands in for keys where a session only reads public data objects (``run_plain``): never used."""


def new_ota_keys(rng: Any) -> OtaKeys:
    """An AES-128 SCP80 key set in key set 1 (KIc 12 / KID 12), TEST KEYS from ``rng``."""
    return OtaKeys(kic_key=rng.randbytes(16), kid_key=rng.randbytes(16),
                   kic=key_byte(OTA_KEY_SET, KicAlgorithm.AES_CBC), kid=key_byte(OTA_KEY_SET, KidAlgorithm.AES_CMAC))


def free_memory(card_resources: bytes) -> int:
    """Free non-volatile memory from GET DATA ``FF21`` (``81`` apps, ``82`` free NVM, ``83`` free RAM)."""
    if card_resources[:2] != b"\xff\x21":
        raise NotEligible("card resources (FF21) unreadable")
    length, pos = tlv.parse_length(card_resources, 2)
    found = tlv.find(tlv.decode(card_resources[pos:pos + length]), 0x82)
    if found is None:
        raise NotEligible("card resources (FF21) without free memory (82)")
    return int.from_bytes(found.value, "big")


class SeiTsm:
    """The SEI-TSM of institution ``name`` (module docstring)."""

    def __init__(self, services: TsmServices, name: str) -> None:
        self.services = services
        self.name = name
        self.ctx = services.ctx
        self.registry = SeRegistry(self.ctx, name)
        self.keys = KeyStore(self.ctx, name)

    # -- manufacturing data ------------------------------------------------------------------------
    def register_se(self, se_id: str, *, form_factor: str, cplc: bytes, isd_aid: bytes, isd_keys: StaticKeys,
                    owner_role: str, msisdn: str | None = None, ota_keys: OtaKeys | None = None,
                    packages: tuple[bytes, ...] = ()) -> SeRecord:
        """Import one SE's manufacturing data (what the SIM vendor or OEM delivers with the SE)."""
        isd_ref = self.keys.put_gp(f"{se_id}/isd", isd_keys)
        if ota_keys is not None:
            self.keys.put_ota(f"{se_id}/ota/isd", ota_keys)
        return self.registry.put_se(se_id, form_factor=form_factor, owner=self.name, owner_role=owner_role,
                                    cplc=cplc.hex().upper(), isd_aid=aid_hex(isd_aid), isd_key_ref=isd_ref,
                                    admin_channel="sms-pp" if form_factor == "sim" else "http", msisdn=msisdn,
                                    packages=",".join(aid_hex(p) for p in packages))

    def new_ota_keys(self) -> OtaKeys:
        return new_ota_keys(self.ctx.rng)

    # -- routes to the card ------------------------------------------------------------------------
    def _se(self, se_id: str) -> SeRecord:
        se = self.registry.se(se_id)
        if se is None:
            raise NotFound(f"{self.name} has no SE {se_id}")
        return se

    def route(self, se: SeRecord) -> CardRoute:
        handset = self.services.handset(se.se_id)
        if se.admin_channel != "sms-pp":
            return HttpAdminRoute(self.services.gateway, handset)

        def bindings(target: bytes) -> tuple[bytes, OtaKeys]:
            if aid_hex(target) == se.isd_aid:
                return TAR_ISD, self.keys.ota(f"{se.se_id}/ota/isd")
            ssd = self.registry.ssd(se.se_id, target)
            if ssd is None or ssd.tar is None or ssd.ota_key_ref is None or ssd.state == "deleted":
                raise NotFound(f"{aid_hex(target)} on {se.se_id} has no TAR")
            return bytes.fromhex(ssd.tar), self.keys.ota(ssd.ota_key_ref)

        limit = OtaGateway.max_script_bytes(self.keys.ota(f"{se.se_id}/ota/isd"),
                                            segments=self.services.gateway.max_segments)
        return SmsPpRoute(self.services.gateway, handset, bindings, max_script_bytes=limit)

    def _isd(self, se: SeRecord) -> SdSession:
        assert se.isd_key_ref is not None
        return SdSession(self.route(se), bytes.fromhex(se.isd_aid), self.keys.gp(se.isd_key_ref), rng=self.ctx.rng,
                         sequence_counter=se.scp_counter)

    def _done_with(self, se: SeRecord, sd: SdSession) -> None:
        if sd.sequence_counter != se.scp_counter:
            self.registry.put_se(se.se_id, scp_counter=sd.sequence_counter)

    def _owned_ssd(self, se_id: str, ssd_aid: bytes, sp: str) -> Any:
        ssd = self.registry.ssd(se_id, ssd_aid)
        if ssd is None or ssd.state == "deleted":
            raise NotFound(f"no SSD {aid_hex(ssd_aid)} on {se_id}")
        if ssd.owner != sp:
            raise Forbidden(f"SSD {aid_hex(ssd_aid)} on {se_id} belongs to {ssd.owner}, not {sp}")
        return ssd

    # -- operations --------------------------------------------------------------------------------
    def eligibility(self, se_id: str, *, memory: int = 0) -> dict[str, Any]:
        """Check CPLC and free memory over the air; :class:`NotEligible` naming every failed check."""
        se = self._se(se_id)
        sd = SdSession(self.route(se), bytes.fromhex(se.isd_aid), _PUBLIC, rng=self.ctx.rng)
        commands = [CommandApdu(0x80, 0xCA, 0x9F, 0x7F, le=256), CommandApdu(0x80, 0xCA, 0xFF, 0x21, le=256)]
        answers = sd.run_plain(commands)
        for command, answer in itertools.zip_longest(commands, answers[:2]):
            if answer is None or answer.sw != 0x9000:
                raise CardCommandFailed(command, answer.sw if answer else 0x6F00)
        cplc = tlv.decode_one(answers[0].data).value.hex().upper()
        free = free_memory(answers[1].data)
        reasons = []
        if se.status != "active":
            reasons.append(f"SE status is {se.status}")
        if cplc != se.cplc:
            reasons.append(f"unknown CPLC: the SE reports {cplc[:28]}..., registered {se.cplc[:28]}...")
        if free < memory:
            reasons.append(f"insufficient memory: {free} bytes free, {memory} needed")
        if reasons:
            raise NotEligible("; ".join(reasons))
        return {"eligible": True, "free_memory": free, **se_json(se)}

    def create_ssd(self, se_id: str, ssd_aid: bytes, *, sp: str) -> dict[str, Any]:
        """Create an SSD for SP-TSM ``sp`` with a first key set, and hand that key set over."""
        se = self._se(se_id)
        if self.ctx.config.institution(sp) is None:
            raise NotFound(f"no institution {sp!r}")
        existing = self.registry.ssd(se_id, ssd_aid)
        if existing is not None and existing.state != "deleted":
            raise Conflict(f"SSD {aid_hex(ssd_aid)} already exists on {se_id} (owner {existing.owner})")
        rng = self.ctx.rng
        first = StaticKeys(rng.randbytes(16), rng.randbytes(16), rng.randbytes(16), kvn=FIRST_KVN)
        isd = self._isd(se)
        with isd.script():
            isd.create_security_domain(ssd_aid, privileges=SSD_PRIVILEGES)
            isd.give_first_keys(ssd_aid, first, kvn=FIRST_KVN)
        self._done_with(se, isd)
        key_ref = self.keys.put_gp(f"{se_id}/ssd/{aid_hex(ssd_aid)}", first)
        tar = ota_ref = None
        route: dict[str, Any] = {"channel": "http", "agent": se_id}
        if se.admin_channel == "sms-pp":
            tar, ota_ref = self._allocate_tar(se_id), f"{se_id}/ota/{aid_hex(ssd_aid)}"
            ota_keys = self.keys.ota(self.keys.put_ota(ota_ref, self.new_ota_keys()))
            self.services.handset(se_id).card_os_bind_tar(bytes.fromhex(tar), ssd_aid, ota_keys)
            route = {"channel": "sms-pp", "max_script_bytes": OtaGateway.max_script_bytes(
                ota_keys, segments=self.services.gateway.max_segments)}
        self.registry.put_ssd(se_id, ssd_aid, owner=sp, state="created", key_ref=key_ref, kvn=FIRST_KVN, tar=tar,
                              ota_key_ref=ota_ref)
        institution = self.ctx.config.institution(sp)
        assert institution is not None
        return {"se_id": se_id, "sei": self.name, "ssd_aid": aid_hex(ssd_aid), "scp": "03", "i": DEFAULT_SCP03_I,
                "keys": wrap_keys(first, receiver_key=institution.hmac_key, sender=self.name), "route": route,
                "form_factor": se.form_factor}

    def _allocate_tar(self, se_id: str) -> str:
        used = {ssd.tar for ssd in self.registry.ssds(se_id) if ssd.tar}
        number = 1
        while f"B2{number:04X}" in used:
            number += 1
        return f"B2{number:04X}"  # B2xxxx: paylab's TAR range for SSDs [M]

    def confirm_handover(self, se_id: str, ssd_aid: bytes, *, sp: str) -> dict[str, Any]:
        """The SP-TSM says it replaced the first key set: check on the card, then forget those keys."""
        se = self._se(se_id)
        ssd = self._owned_ssd(se_id, ssd_aid, sp)
        sd = SdSession(self.route(se), ssd_aid, _PUBLIC, rng=self.ctx.rng)
        versions = key_versions(sd.get_data(0xE0))
        if ssd.kvn in versions:
            raise Conflict(f"handover not done: key version {ssd.kvn:02X} still opens SSD {aid_hex(ssd_aid)}")
        if ssd.key_ref:
            self.keys.forget(ssd.key_ref)
        self.registry.put_ssd(se_id, ssd_aid, state="handed-over", key_ref=None, kvn=None)
        return {"se_id": se_id, "ssd_aid": aid_hex(ssd_aid), "state": "handed-over", "key_versions": versions}

    def relay_ram(self, se_id: str, sd_aid: bytes, units: list[Unit], *, sp: str) -> list[RApdu]:
        """RAM for the owner of an SSD on a SIM, under the SSD's TAR."""
        se = self._se(se_id)
        if se.admin_channel != "sms-pp":
            raise Conflict(f"{se_id} is administered over HTTP: no relay needed")
        self._owned_ssd(se_id, sd_aid, sp)
        return self.route(se).execute(sd_aid, units)

    def activate_telecom(self, se_id: str) -> dict[str, Any]:
        """Activate the operator's side of the NFC service for the SE's subscriber."""
        se = self.registry.put_se(self._se(se_id).se_id, telecom_active=True)
        return se_json(se)

    def delete_ssd(self, se_id: str, ssd_aid: bytes, *, sp: str) -> dict[str, Any]:
        """Delete an SSD and everything in it, on its owner's request (the service ends)."""
        se = self._se(se_id)
        self._owned_ssd(se_id, ssd_aid, sp)
        isd = self._isd(se)
        isd.delete(ssd_aid, related=True)
        self._done_with(se, isd)
        ssd = self.registry.put_ssd(se_id, ssd_aid, state="deleted", key_ref=None)
        return {"se_id": se_id, "ssd_aid": ssd.aid, "state": ssd.state}

    def share_with_mtps(self, se_id: str, *, mtps: str = "/mtps") -> dict[str, Any]:
        """Register with the MTPS hub as an SEI-TSM and share the SE's record there (no keys)."""
        client = self.services.client(self.name)
        client.post(f"{mtps}/institutions", {"roles": ["sei-tsm"]})
        return client.post(f"{mtps}/se", se_json(self._se(se_id)))  # type: ignore[no-any-return]

    def state(self, se_id: str, *, caller: str) -> dict[str, Any]:
        """The SE as the registry knows it, with the caller's SSDs (all of them for the owner)."""
        se = self._se(se_id)
        ssds = [{"aid": s.aid, "owner": s.owner, "state": s.state, "tar": s.tar}
                for s in self.registry.ssds(se_id) if caller in (self.name, s.owner)]
        return {**se_json(se), "ssds": ssds, "preloaded": csv_items(se.packages)}


# -- routes ------------------------------------------------------------------------------------------

class SeRef(BaseModel):
    se_id: str
    on_behalf_of: str | None = None


class EligibilityRequest(SeRef):
    memory: int = 0
    aid: str | None = None


class SsdRef(SeRef):
    ssd_aid: str


class RamRequest(SeRef):
    sd_aid: str
    units: list[list[str]]


def _aid(text: str) -> bytes:
    try:
        aid = bytes.fromhex(text)
    except ValueError:
        raise NotFound(f"{text!r} is no AID") from None
    if not 5 <= len(aid) <= 16:
        raise NotFound(f"{text!r} is no AID")
    return aid


def sei_tsm_router(tsm: SeiTsm) -> APIRouter:
    """The SEI-TSM's institution API under ``/tsm/sei/{name}`` (module docstring)."""
    router = APIRouter(prefix=f"/tsm/sei/{tsm.name}", tags=["sei-tsm"])
    caller_dep = Depends(tsm.services.auth.require("bank", "unionpay", "mtps"))

    def acting(caller: Caller, body: SeRef) -> str:
        return effective_caller(caller, body.model_dump())

    @router.post("/eligibility")
    def eligibility(body: EligibilityRequest, caller: Caller = caller_dep) -> dict[str, Any]:
        return serve(lambda: tsm.eligibility(body.se_id, memory=body.memory))

    @router.post("/ssd")
    def create_ssd(body: SsdRef, caller: Caller = caller_dep) -> dict[str, Any]:
        return serve(lambda: tsm.create_ssd(body.se_id, _aid(body.ssd_aid), sp=acting(caller, body)))

    @router.post("/ssd/handover")
    def handover(body: SsdRef, caller: Caller = caller_dep) -> dict[str, Any]:
        return serve(lambda: tsm.confirm_handover(body.se_id, _aid(body.ssd_aid), sp=acting(caller, body)))

    @router.post("/ssd/delete")
    def delete_ssd(body: SsdRef, caller: Caller = caller_dep) -> dict[str, Any]:
        return serve(lambda: tsm.delete_ssd(body.se_id, _aid(body.ssd_aid), sp=acting(caller, body)))

    @router.post("/ota/ram")
    def relay(body: RamRequest, caller: Caller = caller_dep) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            units = [[bytes.fromhex(apdu) for apdu in unit] for unit in body.units]
            responses = tsm.relay_ram(body.se_id, _aid(body.sd_aid), units, sp=acting(caller, body))
            return {"responses": [r.encode().hex().upper() for r in responses]}
        return serve(run)

    @router.post("/telecom/activate")
    def telecom(body: SeRef, caller: Caller = caller_dep) -> dict[str, Any]:
        return serve(lambda: tsm.activate_telecom(body.se_id))

    @router.get("/se/{se_id}")
    def state(se_id: str, caller: Caller = caller_dep) -> dict[str, Any]:
        return serve(lambda: tsm.state(se_id, caller=caller.name))

    return router
