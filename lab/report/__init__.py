"""Campaign records and the reports rendered from them (issue 6 "Reports").

* :mod:`.record`: the campaign record (plain dataclasses ↔ JSON) and the decision rules;
* :mod:`.requirements`: the requirement catalogue loader (``fixtures/requirements.yaml``);
* :mod:`.auditor`: the self-contained auditor HTML report;
* :mod:`.integrity`: the signed SHA-256 manifest of a report directory;
* :mod:`.masking_scan`: the scanner that proves no PAN or key reached an artefact;
* :mod:`.sanitize` and :mod:`.charts`: masking and inline SVG for the renderers.
"""

from __future__ import annotations

from .auditor import render_auditor_report, report_id
from .integrity import VerifyResult, verify_manifest, write_manifest
from .masking_scan import Finding, scan_for_secrets
from .record import (
    CampaignFile,
    CampaignRecord,
    Deviation,
    EquipmentEntry,
    InfraErrorEntry,
    Requirement,
    SoftwareManifest,
    TestResult,
    collect_software_manifest,
    evaluate,
    load_requirements,
    verdict_for,
)

__all__ = [
    "CampaignFile",
    "CampaignRecord",
    "Deviation",
    "EquipmentEntry",
    "Finding",
    "InfraErrorEntry",
    "Requirement",
    "SoftwareManifest",
    "TestResult",
    "VerifyResult",
    "collect_software_manifest",
    "evaluate",
    "load_requirements",
    "render_auditor_report",
    "report_id",
    "scan_for_secrets",
    "verdict_for",
    "verify_manifest",
    "write_manifest",
]
