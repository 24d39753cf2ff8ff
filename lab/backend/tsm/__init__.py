"""TSMs and the MTPS hub: SEI-TSMs (SE owners), SP-TSMs (banks, UnionPay), the public service platform.

===================  ==========================================================================
module               what
===================  ==========================================================================
``models``           tables: each institution's SE registry and key store, MTPS registrations
``registry``         :class:`SeRegistry` / :class:`KeyStore` over those tables
``card_route``       OTA routes to an SE (SMS-PP, relay, HTTP admin) and the handset stand-in
``gp_session``       GP steps as OTA scripts on one security domain (SCP80, scripted SCP03)
``services``         shared plumbing, TSM errors and their HTTP answers, key transport
``sei_tsm``          SEI-TSM: eligibility, SSD creation, first keys, handover check, RAM relay
``sp_tsm``           SP-TSM: key handover, load/install/personalise, activate, lock, delete, state
``mtps``             MTPS hub: registrations, SE registry sharing, cross-TSM routing
``network``          every TSM of the configuration, their routers, phones to serve
``modes``            ``issue_card`` in the three cooperation modes
===================  ==========================================================================

Institution APIs are signed (:mod:`paylab.lab.backend.inst_auth`); OTA goes through
:mod:`paylab.lab.backend.ota_gateway`.
"""

from .. import inst_auth as _inst_auth  # noqa: F401  (its tables register with create_all via this package)
from .card_route import CardRoute, HandsetSim, HttpAdminRoute, RelayRoute, SmsPpRoute
from .gp_session import SdSession
from .modes import MODES, Issuance, Mode, issue_card
from .mtps import Mtps, mtps_router
from .network import TsmNetwork
from .registry import KeyStore, SeRegistry
from .sei_tsm import SeiTsm, sei_tsm_router
from .services import TsmError, TsmServices
from .sp_tsm import SpTsm, sp_tsm_router

__all__ = [
    "MODES",
    "CardRoute",
    "HandsetSim",
    "HttpAdminRoute",
    "Issuance",
    "KeyStore",
    "Mode",
    "Mtps",
    "RelayRoute",
    "SdSession",
    "SeRegistry",
    "SeiTsm",
    "SmsPpRoute",
    "SpTsm",
    "TsmError",
    "TsmNetwork",
    "TsmServices",
    "issue_card",
    "mtps_router",
    "sei_tsm_router",
    "sp_tsm_router",
]
