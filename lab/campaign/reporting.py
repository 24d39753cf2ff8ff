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
import re
import statistics
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from paylab.fixtures.results import final_results, read_results, result_key

from .campaign_file import Campaign

RECORD_FILE = "record.json"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def repeat_suffix(line: dict[str, Any], repeats: int) -> str:
    """`` [repeat 2/3]`` for a result of a campaign run ``repeats`` > 1 times, else nothing."""
    return f" [repeat {int(line.get('repeat', 1))}/{repeats}]" if repeats > 1 else ""


def repeat_id(line: dict[str, Any], repeats: int) -> str:
    """The result's id in the record and the run history: the test id, plus its repeat when there are several
    (so the traceability matrix and the pass rate count every repeat)."""
    return str(line["id"]) + repeat_suffix(line, repeats)


def _test_result(line: dict[str, Any], repeats: int = 1) -> Any:
    from paylab.lab.report.record import TestResult

    verdict = line["verdict"]
    message = line.get("message", "")
    if verdict == "deselected":
        verdict, message = "skipped", f"deselected: {message}"
    timings = [float(t) for t in line.get("tap_to_approval_ms") or []]
    return TestResult(id=repeat_id(line, repeats), name=line.get("name", line["id"]) + repeat_suffix(line, repeats),
                      suite=str(line.get("suite", "")),
                      framework=line.get("framework", "pytest"), rig=line.get("rig", ""),
                      requirement_ids=list(line.get("requirements", [])), verdict=verdict,
                      category=line.get("category", "none") if verdict in ("failed", "error", "not-run") else "none",
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
    final = final_results(lines)
    results = [_test_result(line, campaign.repeats)
               for line in sorted(final.values(), key=lambda x: (x.get("rig", ""), x["id"], int(x.get("repeat", 1))))]
    infra = [InfraErrorEntry(kind=kind, message=message, rig=rig, at=_iso(time.time()))
             for kind, rig, message in infra_events]
    retried = [line for line in lines if line.get("category") == "infra" and line is not final.get(result_key(line))]
    infra += [InfraErrorEntry(kind="retried", message=line.get("message", ""), rig=line.get("rig", ""),
                              test_id=repeat_id(line, campaign.repeats),
                              at=_iso(float(line.get("finished", time.time()))))
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
                              skipped=str(sum(r.verdict == "skipped" for r in results)))
        for r in results:
            case = ET.SubElement(suite, "testcase", name=r.name, classname=r.suite.replace("/", ".") or rig,
                                 time=f"{r.duration_ms / 1000:.3f}")
            if r.is_product_failure:
                ET.SubElement(case, "failure", message=r.message[:500], type="product").text = r.message
            elif r.is_infra_error:
                ET.SubElement(case, "error", message=r.message[:500], type="infrastructure").text = r.message
            elif r.verdict == "skipped":
                ET.SubElement(case, "skipped", message=r.message[:500])
            props = ET.SubElement(case, "properties")
            for req in r.requirement_ids:
                ET.SubElement(props, "property", name="requirement", value=req)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    return path


_ROBOT_DIR = re.compile(r"robot-(?:r(\d+)-)?(\d+)-\d+$")


def _robot_run(path: Path) -> tuple[int, int]:
    """(repeat, attempt) of a Robot ``output.xml`` from its folder name (``robot-2-0``, ``robot-r3-1-0``)."""
    match = _ROBOT_DIR.match(path.parent.name)
    return (int(match.group(1) or 1), int(match.group(2))) if match else (1, 0)


def _rebot(outputs: list[Path], target: Path, sink: Any, *, name: str | None = None, views: bool = True) -> int:
    """Merge ``outputs`` into ``target``: later attempts replace earlier ones, other rigs' tests are added
    (same root suite); different root suites (several Robot suite paths) are combined instead."""
    from robot import rebot

    options: dict[str, Any] = {"outputdir": str(target), "output": "output.xml",
                               "log": "log.html" if views else "NONE", "report": "report.html" if views else "NONE"}
    if name:
        options["name"] = name
    rc = rebot(*map(str, outputs), merge=True, stdout=sink, stderr=sink, **options)
    if rc >= 252:
        rc = rebot(*map(str, outputs), stdout=sink, stderr=sink, **{"name": "paylab", **options})
    return rc


def merge_robot(out: Path) -> Path | None:
    """``rebot`` the Robot outputs of every rig and attempt into ``out/robot`` (later attempts merged in).
    With several repeats, each repeat is merged on its own (``robot/repeat-N/output.xml``, suite
    "Repeat N") and the repeats are combined side by side, so every repeat's results stay visible."""
    outputs = sorted(out.glob("rigs/*/robot-*/output.xml")) + sorted(out.glob("rigs/*/remote-*/robot-*/output.xml"))
    if not outputs:
        return None
    target = out / "robot"
    target.mkdir(exist_ok=True)
    by_repeat: dict[int, list[Path]] = {}
    for path in sorted(outputs, key=_robot_run):
        by_repeat.setdefault(_robot_run(path)[0], []).append(path)
    with open(os.devnull, "w") as sink:
        if len(by_repeat) == 1:
            rc = _rebot(next(iter(by_repeat.values())), target, sink)
        else:
            parts = []
            for repeat, paths in sorted(by_repeat.items()):
                part = target / f"repeat-{repeat}"
                part.mkdir(exist_ok=True)
                if _rebot(paths, part, sink, name=f"Repeat {repeat}", views=False) < 252:
                    parts.append(part / "output.xml")
            rc = 252
            if parts:
                from robot import rebot

                rc = rebot(*map(str, parts), name="paylab", outputdir=str(target), output="output.xml",
                           log="log.html", report="report.html", stdout=sink, stderr=sink)
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


def scan_report(out: Path) -> list[Any]:
    """Full PANs, track 2, PIN blocks and lab keys left unmasked anywhere in the report folder
    (:func:`paylab.lab.report.masking_scan.scan_for_secrets`; findings are masked themselves)."""
    from paylab.lab.report.masking_scan import scan_for_secrets

    return scan_for_secrets([out])


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
    result.auditor_report = Path(render_auditor_report(record, out, previous=previous)).resolve()
    write_junit(record, out / "junit.xml")
    merge_robot(out)
    if campaign.allure and (out / "allure-results").exists():
        from paylab.lab.report.allure import AllureError, generate_allure_report

        try:
            result.allure_report = generate_allure_report(out / "allure-results", out / "allure",
                                                          name=f"paylab {campaign.name}",
                                                          history=cfg.reports_root / f".{campaign.name}-history.jsonl"
                                                          ).html.resolve()
        except AllureError as exc:
            say(f"  Allure report not written: {exc}")
    leaks = scan_report(out)
    for finding in leaks[:20]:
        say(f"  unmasked secret in the reports: {finding}")
    write_manifest(out, cfg.signing_key)
    counts = {"total": len(record.results),
              "passed": sum(r.verdict == "passed" for r in record.results),
              "product": sum(r.is_product_failure for r in record.results),
              "infra": sum(r.is_infra_error and r.verdict != "not-run" for r in record.results),
              "skipped": sum(r.verdict == "skipped" for r in record.results),
              "not-run": sum(r.verdict == "not-run" for r in record.results)}
    result.counts = counts
    # a leak is a product failure (of the lab's masking); a campaign in which nothing ran did not pass
    result.exit_code = (1 if counts["product"] or leaks else 3 if (counts["infra"] or counts["not-run"]
                                                                   or not counts["total"]) else 0)
    if leaks:
        result.lines.append(f"masking: {len(leaks)} unmasked secret(s) in {out} (exit 1); first: {leaks[0]}")
    if not counts["total"]:
        result.lines.append("no test selected: nothing ran (exit 3)")
    result.lines += [
        f"campaign {result.campaign_id}: {counts['total']} tests, {counts['passed']} passed, {counts['product']} "
        f"product failures, {counts['infra']} infrastructure errors, {counts['not-run']} not run, "
        f"{counts['skipped']} skipped/deselected",
        f"auditor report: {result.auditor_report}",
        *([f"Allure report:  {result.allure_report}"] if result.allure_report else []),
        f"reports: {out.resolve()}",
    ]
