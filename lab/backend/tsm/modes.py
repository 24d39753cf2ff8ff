"""The three cooperation modes of mobile payment issuance, end to end over the signed APIs.

``issue_card(network, mode, se_id, issuer=..., profile=...)`` puts a bank's PBOC card onto a phone's
SE and activates it; who talks to whom depends on the mode (every arrow is a signed JSON request,
:mod:`..inst_auth`; "OTA" is the card route of :mod:`.card_route`):

``direct`` (bank and operator cooperate directly; each writes its own domain)::

    bank SP-TSM --eligibility, ssd, ssd/handover (, ota/ram for a SIM)--> operator SEI-TSM --OTA--> ISD
    bank SP-TSM --OTA (microSD/eSE: HTTP admin; SIM: relayed by the SEI-TSM)--> bank SSD
    then the user activates the two functions separately: finance at the bank (contactless
    activation by the bank's SP-TSM), telecom at the operator (the SEI-TSM's service flag).

``unionpay-hub`` (UnionPay's TSM aggregates banks, head office to head office with operators)::

    bank --issue {se, profile, sei, activate}--> UnionPay SP-TSM
    UnionPay SP-TSM --eligibility, ssd, ssd/handover, (ota/ram), telecom/activate--> operator SEI-TSM
    UnionPay SP-TSM --OTA--> UnionPay SSD (one per SE, holding every bank's application)

``mtps-hub`` (the public service platform routes between any SP-TSM and any SEI-TSM)::

    operator --institutions, se (share)--> MTPS;  bank --institutions, applications--> MTPS
    bank SP-TSM --route/eligibility, route/ssd, route/ssd/handover, (route/ota/ram),
                  route/telecom/activate--> MTPS --same, on_behalf_of bank--> operator SEI-TSM
    bank SP-TSM --OTA--> bank SSD
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ...profiles import load_bundled
from .network import TsmNetwork
from .registry import aid_hex
from .services import NotFound
from .sp_tsm import PBOC_MEMORY, activate_service

__all__ = ["MODES", "Issuance", "Mode", "issue_card"]

Mode = Literal["direct", "unionpay-hub", "mtps-hub"]
MODES: tuple[Mode, ...] = ("direct", "unionpay-hub", "mtps-hub")


@dataclass(frozen=True)
class Issuance:
    """The outcome of :func:`issue_card`."""

    mode: Mode
    se_id: str
    issuer: str
    sp_tsm: str
    sei_tsm: str
    aid: bytes
    ssd_aid: bytes
    telecom_active: bool
    result: dict[str, Any]


def issue_card(network: TsmNetwork, mode: Mode, se_id: str, *, issuer: str, profile: str,
               operator: str | None = None) -> Issuance:
    """Issue ``issuer``'s card product ``profile`` onto SE ``se_id`` in ``mode`` and activate it.
    ``operator`` is the SEI-TSM the user names (default: the one that registered the SE)."""
    sei = operator or network.owner_of(se_id)
    if mode == "direct":
        sp = network.sp[issuer]
        result = sp.issue(se_id, issuer=issuer, profile_name=profile, via=f"direct:{sei}")
        aid = bytes.fromhex(result["aid"])
        result["activation"] = {"app": sp.activate(se_id, aid),                        # at the bank
                                "telecom_active": network.sei[sei].activate_telecom(se_id)["telecom_active"]}
        sp_name = sp.name
    elif mode == "unionpay-hub":
        if network.unionpay is None:
            raise NotFound("no UnionPay institution in the configuration")
        result = network.client(issuer).post(f"/tsm/sp/{network.unionpay}/issue",
                                             {"se_id": se_id, "profile": profile, "sei": sei, "activate": True})
        sp_name = network.unionpay
    elif mode == "mtps-hub":
        if network.mtps is None:
            raise NotFound("no MTPS institution in the configuration")
        hub = "/mtps"
        network.sei[sei].share_with_mtps(se_id, mtps=hub)
        bank = network.client(issuer)
        bank.post(f"{hub}/institutions", {"roles": ["issuer", "sp-tsm"]})
        bank.post(f"{hub}/applications", {"aid": aid_hex(load_bundled(profile).aid), "profile": profile,
                                          "sp_tsm": issuer, "memory": PBOC_MEMORY})
        sp = network.sp[issuer]
        result = sp.issue(se_id, issuer=issuer, profile_name=profile, via="mtps")
        result["activation"] = activate_service(sp, se_id, bytes.fromhex(result["aid"]))
        sp_name = sp.name
    else:
        raise ValueError(f"unknown cooperation mode {mode!r} (expected one of {', '.join(MODES)})")
    return Issuance(mode, se_id, issuer, sp_name, sei, bytes.fromhex(result["aid"]), bytes.fromhex(result["ssd_aid"]),
                    bool(result["activation"]["telecom_active"]), result)
