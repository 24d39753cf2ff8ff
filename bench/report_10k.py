"""Auditor report generation for 10,000 results (issue 6 goal: ≤ 10 s and ≤ 500 MB).

A synthetic campaign record: 10,000 results over the whole requirement catalogue, 10% of them with
a masked qPBOC APDU trace (16 exchanges, as TraceWriter writes them) and an ISO 8583 view, 2%
product failures, 1% infrastructure errors, a tap→approval time on every tap. The record is written
as JSON, then ``paylab report render`` runs in a fresh process (load the record, render the auditor
report, sign the manifest): its wall time and peak RSS (``getrusage(RUSAGE_CHILDREN).ru_maxrss``)
are what the goal is about. In-process timings of each step and a masking scan of the output follow.
Numbers, not assertions.
"""

from __future__ import annotations

import io
import random
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from paylab.lab.protocol.trace import TraceRecord, TraceWriter
from paylab.lab.report.auditor import render_auditor_report
from paylab.lab.report.integrity import verify_manifest, write_manifest
from paylab.lab.report.masking_scan import scan_for_secrets
from paylab.lab.report.record import (
    CampaignRecord,
    EquipmentEntry,
    TestResult,
    collect_software_manifest,
    load_requirements,
)

N_RESULTS = 10_000
TRACE_FRACTION = 0.10
GOAL_S, GOAL_MB = 10.0, 500.0
h = bytes.fromhex

EXCHANGES = [  # the brief's qPBOC fast path (section 1), PAN masked by the writer
    ("00A404000E325041592E5359532E444446303100",
     "6F30840E325041592E5359532E4444463031A51EBF0C1B61194F08A000000333010101500A50424F43204445424954870101"
     "9000"),
    ("00A4040008A00000033301010100",
     "6F1B8408A000000333010101A50F500A50424F43204445424954870101" "9000"),
    ("80A8000023832136800000000000000001000000000000015600000000000156170601002B29EBE400",
     "774F82027C009F36020ADC57136228488800001232D30122200000000000000F9F101307010103A00000040A010000000387"
     "870000009F26080389FC14302132F75F3401019F6C0200009F5D060000000387879000"),
    ("00B2010C00", "700E5A0862284888000012325F3401019000"),
]


def trace_dicts(rng: random.Random) -> list[dict]:
    buf = io.StringIO()
    writer = TraceWriter(buf, kernel="A000000333")
    out = []
    t = rng.random() * 1000
    for i in range(16):
        command, response = EXCHANGES[i % len(EXCHANGES)]
        rec = TraceRecord.from_apdus(t + i * 0.01, command=h(command), response=h(response), transport="pcsc",
                                     duration_ms=rng.uniform(2, 40))
        out.append(asdict(writer.write(rec)))
    return out


def synthetic_record() -> CampaignRecord:
    rng = random.Random(6)
    reqs = load_requirements()
    ids = [r.id for r in reqs]
    results = []
    for i in range(N_RESULTS):
        roll = rng.random()
        verdict, category, message = "passed", "none", ""
        if roll < 0.02:
            verdict, category, message = "failed", "product", "expected response code 00, got 51"
        elif roll < 0.03:
            verdict, category, message = "error", "infra", "reader gone: SCARD_E_NO_READERS_AVAILABLE"
        traced = rng.random() < TRACE_FRACTION
        results.append(TestResult(
            id=f"suites/test_matrix.py::test_case[{i:05d}]", name=f"case {i}", suite="matrix",
            framework="pytest" if i % 3 else "robot", rig=f"sim-{i % 4}",
            requirement_ids=[ids[i % len(ids)], ids[(i * 7) % len(ids)]], verdict=verdict, category=category,
            attempts=3 if category == "infra" else 1, duration_ms=rng.uniform(50, 900), message=message,
            tap_to_approval_ms=rng.lognormvariate(5.6, 0.25) if i % 2 == 0 else None,
            trace=trace_dicts(rng) if traced else None,
            iso8583=[{"mti": "0200", "direction": "request", "dialect": "cup-pos",
                      "fields": {"2": "622848******1232", "3": "000000", "4": "000000000100", "11": f"{i % 999999:06d}",
                                 "39": "00"}}] if traced else [],
        ))
    return CampaignRecord(
        id="bench-10k", name="bench 10k", started="2026-11-26T00:00:00+00:00", finished="2026-11-26T03:00:00+00:00",
        scope="synthetic", rigs=[f"sim-{k}" for k in range(4)], results=results, requirements=reqs,
        equipment=[EquipmentEntry("reader", f"reader {k}", serial=f"SN{k:04d}") for k in range(8)],
        software=collect_software_manifest(),
    )


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="paylab-bench-report-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        record = synthetic_record()
        t_build = time.perf_counter() - t0
        record_path = record.save(root / "record.json")
        print(f"record: {N_RESULTS} results, {sum(1 for r in record.results if r.trace)} with traces, "
              f"{record_path.stat().st_size / 1e6:.1f} MB JSON (built in {t_build:.2f} s)")

        # the goal: `paylab report render` in a fresh process (load + render + sign)
        out_dir = root / "report"
        t0 = time.perf_counter()
        proc = subprocess.run([Path(sys.executable).parent / "paylab", "report", "render", str(record_path),
                               "--out", str(out_dir)], capture_output=True, text=True, timeout=300)
        wall = time.perf_counter() - t0
        if proc.returncode:
            print(proc.stdout, proc.stderr)
            return 1
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        html = out_dir / "auditor-report.html"
        print(f"paylab report render (fresh process): {wall:.2f} s, peak RSS {peak_mb:.0f} MB, "
              f"report {html.stat().st_size / 1e6:.1f} MB")
        print(f"  vs goal: time {wall / GOAL_S:.2f} x of {GOAL_S:.0f} s, memory {peak_mb / GOAL_MB:.2f} x of "
              f"{GOAL_MB:.0f} MB")

        # in-process steps
        t0 = time.perf_counter()
        loaded = CampaignRecord.load(record_path)
        t_load = time.perf_counter() - t0
        t0 = time.perf_counter()
        render_auditor_report(loaded, root / "inproc.html", base_dir=root)
        t_render = time.perf_counter() - t0
        t0 = time.perf_counter()
        write_manifest(out_dir)
        t_manifest = time.perf_counter() - t0
        t0 = time.perf_counter()
        ok = verify_manifest(out_dir).ok
        t_verify = time.perf_counter() - t0
        t0 = time.perf_counter()
        findings = scan_for_secrets([html])
        t_scan = time.perf_counter() - t0
        self_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"in process: load {t_load:.2f} s, render {t_render:.2f} s, manifest {t_manifest:.3f} s, "
              f"verify {t_verify:.3f} s (ok={ok}), masking scan of the report {t_scan:.2f} s "
              f"({len(findings)} findings); this process peak RSS {self_mb:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
