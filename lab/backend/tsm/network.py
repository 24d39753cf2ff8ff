"""The lab's TSM landscape on one backend context, and phones to serve.

:class:`TsmNetwork` builds, from the configuration's institutions, an SEI-TSM per operator, an
SP-TSM per bank and one for UnionPay, the MTPS hub, the OTA gateway and the request verifier, and
lists their routers for the HTTP app (``create_app(ctx, extra=network.routers())``). Once the app
runs, :meth:`TsmNetwork.connect` hands every institution (and every handset's admin agent) the
HTTP client to reach it: a FastAPI ``TestClient`` in process, or ``httpx.Client(base_url=...)``.

:meth:`TsmNetwork.manufacture` makes a phone: a blank SE of the form factor from the card factory
(``drivers/se``), registered with its owner's SEI-TSM as manufacturing data would be. A SIM gets the
operator's SCP80 key set for the ISD (TAR ``000000``) and, as NFC-SIMs ship, the PBOC package
preloaded by the SIM vendor (through the ISD, over the contact interface, before delivery): SMS-PP
cannot carry a load file of real size (see :mod:`.gp_session`). microSD and eSE get an admin agent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from fastapi import APIRouter

from ...protocol.gp import StaticKeys
from ..config import SE_ISSUER_KINDS
from ..context import BackendContext
from ..inst_auth import InstitutionAuth, InstitutionClient
from ..ota_gateway import OtaGateway
from .card_route import HandsetSim
from .mtps import Mtps, mtps_router
from .sei_tsm import SeiTsm, sei_tsm_router
from .services import NotFound, TsmServices
from .sp_tsm import SpTsm, pboc_package, sp_tsm_router

__all__ = ["OWNER_ROLES", "TsmNetwork"]

OWNER_ROLES = {"sim": "mno", "microsd": "issuer", "ese": "oem"}
"""Who owns the ISD of each form factor (the SEI-TSM's role): operator, card issuer, handset maker."""


class TsmNetwork:
    """Every TSM of the configuration, their shared services and the phones (module docstring)."""

    def __init__(self, ctx: BackendContext) -> None:
        self.ctx = ctx
        self.services = TsmServices(ctx, OtaGateway(ctx), InstitutionAuth(ctx))
        institutions = ctx.config.institutions
        self.sei = {i.name: SeiTsm(self.services, i.name) for i in institutions if i.kind in SE_ISSUER_KINDS}
        self.sp = {i.name: SpTsm(self.services, i.name) for i in institutions if i.kind in ("bank", "unionpay")}
        hub = next((i.name for i in institutions if i.kind == "mtps"), None)
        self.mtps = Mtps(self.services, hub) if hub else None
        self.unionpay = next((i.name for i in institutions if i.kind == "unionpay"), None)

    @property
    def gateway(self) -> OtaGateway:
        return self.services.gateway

    @property
    def auth(self) -> InstitutionAuth:
        return self.services.auth

    def routers(self) -> list[APIRouter]:
        """The OTA admin endpoint and every institution's API."""
        routers = [self.gateway.admin_router()]
        routers += [sei_tsm_router(tsm) for tsm in self.sei.values()]
        routers += [sp_tsm_router(tsm) for tsm in self.sp.values()]
        if self.mtps is not None:
            routers.append(mtps_router(self.mtps))
        return routers

    def connect(self, http: httpx.Client) -> None:
        """The client institutions and handsets reach the app with."""
        self.services.http = http
        for handset in self.services.handsets.values():
            handset.http = http

    def client(self, name: str) -> InstitutionClient:
        return self.services.client(name)

    def handset(self, se_id: str) -> HandsetSim:
        return self.services.handset(se_id)

    def owner_of(self, se_id: str) -> str:
        """The SEI-TSM that registered ``se_id``."""
        for name, sei in self.sei.items():
            if sei.registry.se(se_id) is not None:
                return name
        raise NotFound(f"no SEI-TSM knows SE {se_id}")

    def manufacture(self, se_id: str, form_factor: str, *, owner: str, msisdn: str | None = None,
                    card_serial: int | None = None, image_path: Path | None = None,
                    registered_cplc: bytes | None = None, preload_pboc: bool | None = None,
                    seed: int = 3) -> HandsetSim:
        """A phone with a blank SE of ``form_factor``, registered with SEI-TSM ``owner`` (module
        docstring). ``registered_cplc`` overrides what the registry is told (a swapped SE)."""
        from paylab.drivers.se.catalog_default import default_catalog
        from paylab.drivers.se.factory import fabricate
        from paylab.drivers.se.form_factor import FORM_FACTORS
        from paylab.drivers.se.image import CardImage
        from paylab.drivers.se.ota import AdminAgent, attach_sms_pp
        from paylab.drivers.se.runtime import SecureElement

        from ...protocol.ota.ram import TAR_ISD

        sei = self.sei.get(owner)
        if sei is None:
            raise NotFound(f"no SEI-TSM {owner!r}")
        ff = FORM_FACTORS[form_factor]
        image = CardImage(image_path, durable=False)
        fabricate(image, ff, card_serial=card_serial)
        se = SecureElement(image, ff, default_catalog(), seed=seed)
        se.power_on()
        isd = se.registry.isd().aid
        isd_keys = StaticKeys.gp_default_test_keys()  # the fabricated ISD's TEST KEYS
        ota_keys = agent = None
        packages: tuple[bytes, ...] = ()
        if ff.admin_channel == "sms-pp":
            ota_keys = sei.new_ota_keys()
            attach_sms_pp(se, {TAR_ISD: ota_keys})
            if preload_pboc is not False:
                packages = (_preload_pboc(se, isd, isd_keys),)
        else:
            agent = AdminAgent(se, isd, agent_id=f"//se-id/{se_id}")
        handset = HandsetSim(se_id, se, msisdn=msisdn, agent=agent, http=self.services.http, clock=self.ctx.clock)
        self.services.handsets[se_id] = handset
        sei.register_se(se_id, form_factor=form_factor, cplc=registered_cplc or se.card_state()["cplc"], isd_aid=isd,
                        isd_keys=isd_keys, owner_role=OWNER_ROLES[form_factor], msisdn=msisdn, ota_keys=ota_keys,
                        packages=packages)
        return handset


def _preload_pboc(se: Any, isd: bytes, isd_keys: StaticKeys) -> bytes:
    """The SIM vendor loads the PBOC package into the ISD over the contact interface (SCP03)."""
    from ...gp_client import GpClient
    from ...protocol.apdu import CommandApdu, transmit_with_chaining

    def transmit(raw: bytes) -> bytes:
        return transmit_with_chaining(se.transmit, CommandApdu.decode(raw)).encode()

    package_aid, _, load_file = pboc_package()
    client = GpClient(transmit).open_secure_channel(isd, isd_keys)
    client.load(package_aid, load_file, sd_aid=isd)
    se.power_off()
    se.power_on()
    return package_aid
