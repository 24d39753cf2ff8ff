"""The end of a campaign: the record (plain data) first, then its renderings, then the signed manifest.

Writes under ``reports/<campaign id>/``:

``record.json``            the campaign record (:class:`~paylab.lab.report.record.CampaignRecord`)
``auditor-report.html``    the self-contained auditor report (traceability, traces, manifests, timing, trends)
``allure/index.html``      the Allure 3 single-file report (pytest + Robot results, analytics stripped)
``robot/``                 Robot output merged with rebot (``output.xml``, ``log.html``, ``report.html``)
``junit.xml``              JUnit XML of every test's final attempt, for CI systems
``MANIFEST.json/.sig``     SHA-256 of every artefact, signed with the lab's Ed25519 key

The record is rebuilt from the result lines alone, so ``paylab report render`` can redo every view.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from paylab.fixtures.results import read_results

from .campaign_file import Campaign

RECORD_FILE = "record.json"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def _final(lines: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    final: dict[str, dict[str, Any]] = {}
    attempts: dict[str, int] = {}
    for line in lines:
        attempts[line["id"]] = attempts.get(line["id"], 0) + 1
        previous = final.get(line["id"])
        if previous is None or int(line.get("attempt", 1)) >= int(previous.get("attempt", 1)):
            final[line["id"]] = line
    for tid, line in final.items():
        line["attempts"] = attempts[tid]
    return final


def _test_result(line: dict[str, Any]) -> Any:
    from paylab.lab.report.record import TestResult

    verdict = line["verdict"]
    message = line.get("message", "")
    if verdict == "deselected":
        verdict, message = "skipped", f"deselected: {message}"
    timings = [float(t) for t in line.get("tap_to_approval_ms") or []]
    return TestResult(id=line["id"], name=line.get("name", line["id"]), suite=str(line.get("suite", "")),
                      framework=line.get("framework", "pytest"), rig=line.get("rig", ""),
                      requirement_ids=list(line.get("requirements", [])), verdict=verdict,
                      category=line.get("category", "none") if verdict in ("failed", "error", "not-run") else "none"
                      if verdict != "not-run" else "infra",
                      attempts=int(line.get("attempts", 1)), duration_ms=float(line.get("duration_ms", 0.0)),
                      message=message, tap_to_approval_ms=statistics.median(timings) if timings else None,
                      trace=line.get("trace") or None, iso8583=list(line.get("iso8583") or []))


def _equipment(rigs: list[Any], out: Path) -> list[Any]:
    """Inventory identities, then what the devices reported in the test sessions (``equipment*.json``)."""
    from paylab.lab.report.record import EquipmentEntry

    entries: list[EquipmentEntry] = []
    seen: set[tuple[str, str, str]] = set()

    def add(entry: EquipmentEntry) -> None:
        key = (entry.rig, entry.kind, entry.name)
        if key not in seen:
            seen.add(key)
            entries.append(entry)

    for path in sorted(out.glob("rigs/*/equipment*.json")) + sorted(out.glob("rigs/*/remote-*/equipment*.json")):
        with contextlib.suppress(OSError, ValueError):
            for item in json.loads(path.read_text(encoding="utf-8")):
                add(EquipmentEntry(**{k: str(v) for k, v in item.items() if k in EquipmentEntry.__dataclass_fields__}))
    for rig in rigs:
        resources: list[tuple[str, Any]] = [("rig-host", rig.host)] if rig.host is not None else []
        resources += [("reader", r) for r in rig.readers] + [("nfc", a) for a in rig.antennas]
        resources += [("pos", p) for p in rig.pos] + [("card", s) for s in rig.slots]
        resources += [("handset", h) for h in rig.handsets]
        for kind, res in resources:
            ident = res.identity
            add(EquipmentEntry(kind=kind, name=res.name, vendor=ident.vendor or "", model=ident.model or "",
                               serial=ident.serial or "", firmware=ident.firmware or "", rig=rig.name,
                               calibration_date=ident.calibrated.isoformat() if ident.calibrated else "",
                               calibration_due=ident.calibration_due.isoformat() if ident.calibration_due else "",
                               card_profile=getattr(res, "profile", None) or "", notes="from the inventory"))
    return entries


def build_record(campaign: Campaign, campaign_id: str, out: Path, rigs: list[Any], *, started: float,
                 infra_events: Iterable[tuple[str, str, str]] = ()) -> Any:
    """The campaign record from the result lines under ``out/rigs/``."""
    from paylab.lab.report.record import (
        CampaignFile,
        CampaignRecord,
        InfraErrorEntry,
        collect_software_manifest,
    )
    from paylab.lab.report.requirements import load_requirements

    lines = list(read_results(sorted(out.glob("rigs/*/results.jsonl"))))
    final = _final(lines)
    results = [_test_result(line) for line in sorted(final.values(), key=lambda x: (x.get("rig", ""), x["id"]))]
    infra = [InfraErrorEntry(kind=kind, message=message, rig=rig, at=_iso(time.time()))
             for kind, rig, message in infra_events]
    retried = [line for line in lines if line.get("category") == "infra" and line is not final.get(line["id"])]
    infra += [InfraErrorEntry(kind="retried", message=line.get("message", ""), rig=line.get("rig", ""),
                              test_id=line["id"], at=_iso(float(line.get("finished", time.time()))))
              for line in retried]
    scope = (f"{len(campaign.suites)} suite(s): " + ", ".join(f"{s.path.name} ({s.framework}"
                                                              + (f", tags {s.tags}" if s.tags else "") + ")"
                                                              for s in campaign.suites)
             + f"; rigs: {', '.join(r.name for r in rigs)}; repeats {campaign.repeats}; retry infra "
             f"{campaign.retry.infra}, product {campaign.retry.product}")
    return CampaignRecord(id=campaign_id, name=campaign.name, started=_iso(started), finished=_iso(time.time()),
                          scope=scope, campaign_file=CampaignFile.from_path(campaign.source),
                          rigs=[r.name for r in rigs], results=results, requirements=load_requirements(),
                          equipment=_equipment(rigs, out), software=collect_software_manifest(),
                          infra_errors=infra)


def write_junit(record: Any, path: Path) -> Path:
    """JUnit XML (xunit2 shape) of the final attempts, one ``testsuite`` per rig."""
    root = ET.Element("testsuites", name=record.name)
    by_rig: dict[str, list[Any]] = {}
    for result in record.results:
        by_rig.setdefault(result.rig or "-", []).append(result)
    for rig, results in sorted(by_rig.items()):
        suite = ET.SubElement(root, "testsuite", name=f"{record.name}.{rig}", tests=str(len(results)),
                              failures=str(sum(r.is_product_failure for r in results)),
                              errors=str(sum(r.is_infra_error for r in results)),
                              skipped=str(sum(r.verdict in ("skipped", "not-run") for r in results)))
        for r in results:
            case = ET.SubElement(suite, "testcase", name=r.name, classname=r.suite.replace("/", ".") or rig,
                                 time=f"{r.duration_ms / 1000:.3f}")
            if r.is_product_failure:
                ET.SubElement(case, "failure", message=r.message[:500], type="product").text = r.message
            elif r.is_infra_error:
                ET.SubElement(case, "error", message=r.message[:500], type="infrastructure").text = r.message
            elif r.verdict in ("skipped", "not-run"):
                ET.SubElement(case, "skipped", message=r.message[:500])
            props = ET.SubElement(case, "properties")
            for req in r.requirement_ids:
                ET.SubElement(props, "property", name="requirement", value=req)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    return path


def merge_robot(out: Path) -> Path | None:
    """``rebot`` the Robot outputs of every rig and attempt into ``out/robot`` (later attempts merged in)."""
    outputs = sorted(out.glob("rigs/*/robot-*/output.xml")) + sorted(out.glob("rigs/*/remote-*/robot-*/output.xml"))
    if not outputs:
        return None
    from robot import rebot

    target = out / "robot"
    target.mkdir(exist_ok=True)

    def attempt(path: Path) -> int:
        parts = path.parent.name.split("-")
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0

    outputs.sort(key=attempt)
    options = {"outputdir": str(target), "output": "output.xml", "log": "log.html", "report": "report.html"}
    with open(os.devnull, "w") as sink:
        # merge: later attempts replace earlier ones, other rigs' tests are added (same root suite)
        rc = rebot(*map(str, outputs), merge=True, stdout=sink, stderr=sink, **options)
        if rc >= 252:  # different root suites (several Robot suite paths): combine them instead
            rc = rebot(*map(str, outputs), name="paylab", stdout=sink, stderr=sink, **options)
    return target / "log.html" if rc < 252 else None


def previous_records(root: Path, name: str, current: str, limit: int) -> list[Any]:
    """Earlier records of the campaign ``name`` under ``root`` (oldest first), for the trends."""
    from paylab.lab.report.record import CampaignRecord

    found = []
    for path in sorted(root.glob(f"{name}-*/{RECORD_FILE}")):
        if path.parent.name == current:
            continue
        with contextlib.suppress(Exception):
            found.append(CampaignRecord.load(path))
    return found[-limit:] if limit else []


def write_reports(result: Any, campaign: Campaign, inventory: Any, rigs: list[Any], cfg: Any, *,
                  started: float, say: Callable[[str], None], infra_events: Iterable[tuple[str, str, str]] = ()
                  ) -> None:
    """Record, auditor report, Allure, Robot, JUnit, manifest; sets ``result``'s paths, counts and exit code."""
    from paylab.lab.report.auditor import render_auditor_report
    from paylab.lab.report.integrity import write_manifest

    out: Path = result.out_dir
    record = build_record(campaign, result.campaign_id, out, rigs, started=started, infra_events=infra_events)
    record.save(out / RECORD_FILE)
    result.record_path = out / RECORD_FILE
    previous = previous_records(cfg.reports_root, campaign.name, result.campaign_id, campaign.previous_runs)
    result.auditor_report = render_auditor_report(record, out, previous=previous)
    write_junit(record, out / "junit.xml")
    merge_robot(out)
    if campaign.allure and (out / "allure-results").exists():
        from paylab.lab.report.allure import AllureError, generate_allure_report

        try:
            result.allure_report = generate_allure_report(out / "allure-results", out / "allure",
                                                          name=f"paylab {campaign.name}",
                                                          history=cfg.reports_root / f".{campaign.name}-history.jsonl"
                                                          ).html
        except AllureError as exc:
            say(f"  Allure report not written: {exc}")
    write_manifest(out, cfg.signing_key)
    counts = {"total": len(record.results),
              "passed": sum(r.verdict == "passed" for r in record.results),
              "product": sum(r.is_product_failure for r in record.results),
              "infra": sum(r.is_infra_error and r.verdict != "not-run" for r in record.results),
              "skipped": sum(r.verdict == "skipped" for r in record.results),
              "not-run": sum(r.verdict == "not-run" for r in record.results)}
    result.counts = counts
    result.exit_code = 1 if counts["product"] else 3 if (counts["infra"] or counts["not-run"]) else 0
    result.lines += [
        f"campaign {result.campaign_id}: {counts['total']} tests, {counts['passed']} passed, {counts['product']} "
        f"product failures, {counts['infra']} infrastructure errors, {counts['not-run']} not run, "
        f"{counts['skipped']} skipped/deselected",
        f"auditor report: {result.auditor_report}",
        *( [f"Allure report:  {result.allure_report}"] if result.allure_report else []),
        f"reports: {out}",
    ]
