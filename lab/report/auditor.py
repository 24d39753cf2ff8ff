"""The auditor report: one self-contained HTML file rendered from a :class:`CampaignRecord`.

Issue 6 "Reports": unique report id, dates, scope and campaign file, the traceability matrix
(requirement → tests → verdict with the decision rule), decoded APDU traces and ISO 8583 messages
(masked again here, :mod:`.sanitize`), the equipment and software manifests, deviations and
infrastructure errors apart from product failures, a tap→approval timing chart and trends against
previous runs.

Self-contained: inline CSS and inline SVG, no script, no URL of any kind (the only ``href``s are
``#fragment`` links and a ``data:`` favicon that stops browsers asking for ``/favicon.ico``).
Every value goes through :func:`html.escape`. Section element ids are stable for browser tests:
``summary``, ``traceability``, ``results``, ``product-failures``, ``apdu-traces``, ``equipment``,
``software``, ``deviations``, ``infra-errors``, ``timing``, ``trends``.

Size: 10,000 results render in well under the 10 s / 500 MB budget because traces are shown in
``<details>`` for at most ``max_traces`` tests (product failures first), each capped at
``max_exchanges`` exchanges; the report says what it left out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from html import escape
from pathlib import Path
from typing import Any

from ..protocol.errors import ProtocolError
from ..protocol.trace import read_trace
from .charts import TimingStats, histogram_svg, trend_svg
from .record import CampaignRecord, RequirementOutcome, TestResult, evaluate, summarize
from .sanitize import safe_iso_message, safe_text, safe_trace

REPORT_FILE_NAME = "auditor-report.html"
MAX_TRACES = 200
MAX_EXCHANGES = 400
MAX_LINKS_PER_REQUIREMENT = 60

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;max-width:1280px;padding:16px;color:#1b1f24}
h1{font-size:22px}h2{font-size:18px;border-bottom:2px solid #ccd;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;width:100%;margin:8px 0}th,td{border:1px solid #d0d4da;padding:3px 6px;
text-align:left;vertical-align:top}th{background:#eef1f5}tr:nth-child(even) td{background:#fafbfc}
code,pre,.hex{font-family:ui-monospace,monospace;font-size:12px}.hex{word-break:break-all}
pre{background:#f6f8fa;padding:8px;overflow:auto;max-height:480px}
.v{font-weight:600;padding:1px 6px;border-radius:3px;white-space:nowrap}
.v-pass,.v-passed{background:#d4f4dd;color:#0b5d1e}.v-fail,.v-failed,.v-error{background:#fbd5d5;color:#8a1010}
.v-inconclusive,.v-skipped,.v-not-run{background:#fff1c2;color:#6b4e00}.v-not-covered{background:#e4e6ea;color:#444}
.cat-infra{background:#e3ecfb;color:#1d3f7a}.muted{color:#667}details{margin:4px 0}
summary{cursor:pointer}ul.tlv{margin:2px 0 2px 16px;padding-left:8px;font-family:ui-monospace,monospace;font-size:12px}
.chart .axis{stroke:#667}.chart .bar{fill:#7aa7e0}.chart .median{stroke:#0b5d1e;stroke-width:2}
.chart .p95{stroke:#b35c00;stroke-width:2;stroke-dasharray:4 3}.chart .line{fill:none;stroke:#8a1010;stroke-width:2}
.chart .tick{font-size:11px;fill:#333}.chart .chart-title{font-size:12px;font-weight:600}
dl.meta{display:grid;grid-template-columns:max-content auto;gap:2px 12px}dl.meta dt{font-weight:600}dl.meta dd{margin:0}
"""


def _e(value: object) -> str:
    """Escaped display text of anything (already masked by the caller where it matters)."""
    return escape("" if value is None else str(value), quote=True)


def _t(value: object) -> str:
    """Masked and escaped free text (messages, names that could quote a PAN or a key)."""
    return escape(safe_text("" if value is None else value), quote=True)


def _badge(verdict: str) -> str:
    return f'<span class="v v-{_e(verdict)}">{_e(verdict)}</span>'


def report_id(record: CampaignRecord) -> str:
    """``AR-<campaign id>-<12 hex>``: the digest of the record, so the same record keeps its report id."""
    digest = hashlib.sha256(record.to_json().encode()).hexdigest()[:12]
    return f"AR-{record.id}-{digest}"


def _anchor(index: int) -> str:
    return f"test-{index}"


class _Html:
    """A list of HTML fragments, joined once at the end (no quadratic string building)."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def add(self, *fragments: str) -> None:
        self.parts.extend(fragments)

    def table(self, head: Sequence[str], rows: Iterable[Sequence[str]], *, cls: str = "") -> None:
        """Rows are already-escaped cell HTML."""
        self.add(f'<table class="{cls}"><thead><tr>', *(f"<th>{_e(h)}</th>" for h in head), "</tr></thead><tbody>")
        for row in rows:
            self.add("<tr>", *(f"<td>{cell}</td>" for cell in row), "</tr>")
        self.add("</tbody></table>")


# --- sections -----------------------------------------------------------------------------------


def _header(h: _Html, record: CampaignRecord, rid: str) -> None:
    h.add(f"<h1>paylab auditor report: {_t(record.name)}</h1>", '<section id="summary"><dl class="meta">')
    meta = [("report id", rid), ("campaign id", record.id), ("started", record.started),
            ("finished", record.finished), ("scope", record.scope), ("rigs", ", ".join(record.rigs))]
    if record.campaign_file is not None:
        meta += [("campaign file", record.campaign_file.path), ("campaign file SHA-256", record.campaign_file.sha256)]
    for key, value in meta:
        h.add(f"<dt>{_e(key)}</dt><dd><code>{_t(value)}</code></dd>" if "id" in key or "SHA" in key
              else f"<dt>{_e(key)}</dt><dd>{_t(value)}</dd>")
    h.add("</dl>")
    run = summarize(record)
    h.add(f"<p>{run.total} results: {run.passed} passed, {run.product_failures} product failures, "
          f"{run.infra_errors} infrastructure errors, {run.not_run} skipped or not run "
          f"(pass rate {run.pass_rate * 100:.1f}%).</p>")
    if record.campaign_file is not None:
        h.add("<details><summary>campaign file content</summary>",
              f"<pre>{_t(record.campaign_file.content)}</pre></details>")
    h.add("</section>")


def _traceability(h: _Html, outcomes: list[RequirementOutcome], index_of: dict[int, int],
                  unknown: dict[str, list[int]]) -> None:
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.verdict] = counts.get(o.verdict, 0) + 1
    h.add('<section id="traceability"><h2>Traceability matrix</h2>',
          "<p>" + ", ".join(f"{_badge(v)} {n}" for v, n in sorted(counts.items())) + "</p>")
    rows = []
    for o in outcomes:
        links = [f'<a href="#{_anchor(index_of[id(t)])}">{_t(t.id)}</a>'
                 for t in o.tests[:MAX_LINKS_PER_REQUIREMENT]]
        more = len(o.tests) - MAX_LINKS_PER_REQUIREMENT
        if more > 0:
            links.append(f'<span class="muted">… and {more} more (see the results table)</span>')
        req = o.requirement
        rows.append((
            f"<code>{_e(req.id)}</code>",
            f"<strong>{_e(req.title)}</strong><br><span class=\"muted\">{_e(req.text)}</span>"
            f"<br><span class=\"muted\">source: {_e(req.source)}</span>",
            f"<code>{_e(req.rule)}</code>",
            "<br>".join(links) or '<span class="muted">none</span>',
            f"{o.passed}/{len(o.tests)} passed",
            _badge(o.verdict) + (f'<br><span class="muted">{_e(o.reason)}</span>' if o.reason else ""),
        ))
    h.table(("requirement", "text", "decision rule", "tests", "passed", "verdict"), rows)
    if unknown:
        h.add("<p>Requirement ids named by tests but missing from the catalogue:</p>")
        h.table(("requirement id", "tests"),
                ((f"<code>{_t(rid)}</code>", ", ".join(f'<a href="#{_anchor(i)}">{i + 1}</a>' for i in idx[:20]))
                 for rid, idx in sorted(unknown.items())))
    h.add("</section>")


def _result_row(i: int, r: TestResult) -> tuple[str, ...]:
    cat = '<span class="v cat-infra">infra</span>' if r.category == "infra" else _e(r.category)
    tap = "" if r.tap_to_approval_ms is None else f"{r.tap_to_approval_ms:.1f}"
    return (
        f'<span id="{_anchor(i)}">{i + 1}</span>',
        f"<code>{_t(r.id)}</code><br>{_t(r.name)}",
        _t(r.suite), _e(r.framework), _t(r.rig), _badge(r.verdict), cat, str(r.attempts),
        f"{r.duration_ms:.0f}", tap, "<br>".join(f"<code>{_t(x)}</code>" for x in r.requirement_ids),
        _t(r.message),
    )


_RESULT_HEAD = ("#", "test", "suite", "framework", "rig", "verdict", "category", "attempts", "duration ms",
                "tap→approval ms", "requirements", "message")


def _results(h: _Html, results: list[TestResult]) -> None:
    h.add('<section id="results"><h2>Test results</h2>')
    h.table(_RESULT_HEAD, (_result_row(i, r) for i, r in enumerate(results)))
    h.add("</section>")
    failures = [(i, r) for i, r in enumerate(results) if r.is_product_failure]
    h.add('<section id="product-failures"><h2>Product failures</h2>',
          "<p>Tests where the card, POS or backend misbehaved (infrastructure errors are listed apart).</p>")
    if failures:
        h.table(("#", "test", "rig", "verdict", "message"),
                ((f'<a href="#{_anchor(i)}">{i + 1}</a>', f"<code>{_t(r.id)}</code>", _t(r.rig),
                  _badge(r.verdict), _t(r.message)) for i, r in failures))
    else:
        h.add('<p class="muted">None.</p>')
    h.add("</section>")


def _tlv_list(nodes: list[dict[str, Any]]) -> str:
    if not nodes:
        return ""
    items = []
    for n in nodes:
        head = f"<b>{_e(n['tag'])}</b> {_e(n['name'])} ({_e(n['length'])})"
        if "children" in n:
            items.append(f"<li>{head}{_tlv_list(n['children'])}</li>")
        else:
            items.append(f'<li>{head}: <span class="hex">{_e(n["value"])}</span></li>')
    return '<ul class="tlv">' + "".join(items) + "</ul>"


def _load_trace(trace: Any, base_dir: Path) -> tuple[list[Any], str]:
    """The trace entries of a result and a note (file missing, invalid)."""
    if isinstance(trace, list):
        return trace, ""
    if isinstance(trace, str):
        path = Path(trace) if Path(trace).is_absolute() else base_dir / trace
        try:
            with path.open(encoding="utf-8") as stream:
                return list(read_trace(stream)), f"from {trace}"
        except OSError as exc:
            return [], f"trace file {trace} cannot be read: {exc.strerror or exc}"
        except ProtocolError as exc:
            return [], f"trace file {trace} is invalid: {exc}"
    return [], ""


def _trace_block(h: _Html, i: int, r: TestResult, base_dir: Path) -> None:
    entries, note = _load_trace(r.trace, base_dir)
    h.add(f'<details class="trace"><summary><a href="#{_anchor(i)}">#{i + 1}</a> <code>{_t(r.id)}</code> '
          f"{_badge(r.verdict)} {len(entries)} APDU exchange(s), {len(r.iso8583)} ISO 8583 message(s)</summary>")
    if note:
        h.add(f'<p class="muted">{_t(note)}</p>')
    if entries:
        rows = []
        for n, raw in enumerate(entries[:MAX_EXCHANGES], start=1):
            x = safe_trace(raw)
            if "error" in x:
                rows.append((str(n), "", "", "", f'<span class="muted">{_e(x["error"])}</span>', "", "", ""))
                continue
            cmd = f'<span class="hex">{_e(x["command"])}</span>' + _tlv_list(x["command_tlv"])
            rsp = f'<span class="hex">{_e(x["response"])}</span>' + _tlv_list(x["response_tlv"])
            dur = "" if x["duration_ms"] is None else f"{x['duration_ms']:.1f}"
            channel = f"{x['channel']} {_e(x['transport'])}"
            rows.append((str(n), _e(f"{x['timestamp']:.3f}"), _e(x["direction"]), channel,
                         cmd, rsp, f"<code>{_e(x['sw'])}</code>", dur))
        h.table(("#", "time s", "dir", "channel", "command (masked)", "response (masked)", "SW", "ms"), rows,
                cls="apdu")
        if len(entries) > MAX_EXCHANGES:
            h.add(f'<p class="muted">{len(entries) - MAX_EXCHANGES} further exchanges not shown '
                  "(the full masked trace is in the campaign record).</p>")
    for m in (safe_iso_message(e) for e in r.iso8583):
        if "error" in m:
            h.add(f'<p class="muted">{_e(m["error"])}</p>')
            continue
        title = " ".join(x for x in (m["direction"], m["dialect"], "MTI " + m["mti"], m["label"]) if x)
        h.add(f"<p><strong>ISO 8583 {_e(title)}</strong></p>")
        h.table(("field", "value (masked)"),
                ((_e(num), _tlv_list(val) if isinstance(val, list) else f'<span class="hex">{_e(val)}</span>')
                 for num, val in m["fields"]), cls="iso8583")
    h.add("</details>")


def _traces(h: _Html, results: list[TestResult], base_dir: Path, max_traces: int) -> None:
    with_trace = [(i, r) for i, r in enumerate(results) if r.trace or r.iso8583]
    # product failures first, then infrastructure errors, then the rest, each in run order
    with_trace.sort(key=lambda p: (0 if p[1].is_product_failure else 1 if p[1].is_infra_error else 2, p[0]))
    shown = with_trace[:max_traces]
    h.add('<section id="apdu-traces"><h2>Decoded APDU traces and ISO 8583 messages</h2>',
          f"<p>{len(with_trace)} test(s) carry a trace; {len(shown)} shown below "
          f"(at most {max_traces}, product failures first). PANs are masked (first 6 / last 4), PIN and key "
          "data are never shown.</p>")
    if len(with_trace) > len(shown):
        h.add(f'<p class="muted">{len(with_trace) - len(shown)} trace(s) not shown here; they are kept, '
              "masked, in the campaign record.</p>")
    for i, r in sorted(shown, key=lambda p: p[0]):
        _trace_block(h, i, r, base_dir)
    h.add("</section>")


def _equipment(h: _Html, record: CampaignRecord) -> None:
    h.add('<section id="equipment"><h2>Equipment manifest</h2>')
    if not record.equipment:
        h.add('<p class="muted">No equipment recorded.</p>')
    else:
        h.table(("kind", "name", "rig", "vendor / model", "serial", "firmware", "calibrated", "calibration due",
                 "card profile", "image SHA-256", "notes"),
                ((_t(q.kind), _t(q.name), _t(q.rig), _t(" ".join(x for x in (q.vendor, q.model) if x)), _t(q.serial),
                  _t(q.firmware), _t(q.calibration_date), _t(q.calibration_due), _t(q.card_profile),
                  f'<span class="hex">{_e(q.image_sha256)}</span>', _t(q.notes)) for q in record.equipment))
    h.add("</section>")


def _software(h: _Html, record: CampaignRecord) -> None:
    h.add('<section id="software"><h2>Software manifest</h2>')
    sw = record.software
    if sw is None:
        h.add('<p class="muted">No software manifest recorded.</p>')
    else:
        h.add('<dl class="meta">', *(f"<dt>{_e(k)}</dt><dd><code>{_t(v)}</code></dd>" for k, v in (
            ("paylab", sw.paylab_version), ("git commit", sw.git_commit or "unknown"), ("Python", sw.python),
            ("platform", sw.platform))), "</dl>")
        h.table(("package", "version"), ((_t(k), _t(v)) for k, v in sorted(sw.packages.items())))
    h.add("</section>")


def _deviations_and_infra(h: _Html, record: CampaignRecord) -> None:
    h.add('<section id="deviations"><h2>Deviations</h2>')
    if record.deviations:
        h.table(("id", "deviation", "requirements", "tests", "approved by"),
                ((_t(d.id), _t(d.text), _t(", ".join(d.requirement_ids)), _t(", ".join(d.test_ids)), _t(d.approved_by))
                 for d in record.deviations))
    else:
        h.add('<p class="muted">None.</p>')
    h.add("</section>")
    h.add('<section id="infra-errors"><h2>Infrastructure errors</h2>',
          "<p>Reader gone, pcscd down, ssh or lease lost: not product failures; retried per policy, "
          "listed apart.</p>")
    infra_results = [(i, r) for i, r in enumerate(record.results) if r.is_infra_error]
    if record.infra_errors:
        h.table(("kind", "rig", "test", "at", "message"),
                ((_t(x.kind), _t(x.rig), _t(x.test_id), _t(x.at), _t(x.message)) for x in record.infra_errors))
    if infra_results:
        h.table(("#", "test", "rig", "verdict", "attempts", "message"),
                ((f'<a href="#{_anchor(i)}">{i + 1}</a>', f"<code>{_t(r.id)}</code>", _t(r.rig), _badge(r.verdict),
                  str(r.attempts), _t(r.message)) for i, r in infra_results))
    if not record.infra_errors and not infra_results:
        h.add('<p class="muted">None.</p>')
    h.add("</section>")


def _timing(h: _Html, record: CampaignRecord) -> None:
    values = [r.tap_to_approval_ms for r in record.results if r.tap_to_approval_ms is not None]
    h.add('<section id="timing"><h2>Tap → approval timing</h2>')
    stats = TimingStats.of(values)
    if stats is not None:
        h.add(f"<p>{stats.count} taps: min {stats.minimum:.1f} ms, median {stats.median:.1f} ms, "
              f"p95 {stats.p95:.1f} ms, max {stats.maximum:.1f} ms.</p>")
    h.add(histogram_svg(values, title="tap → approval distribution"), "</section>")


def _trends(h: _Html, record: CampaignRecord, previous: Sequence[CampaignRecord]) -> None:
    runs = [*sorted((summarize(p) for p in previous), key=lambda s: s.started), summarize(record)]
    h.add('<section id="trends"><h2>Trends against previous runs</h2>')
    h.add(trend_svg([s.id for s in runs], [s.pass_rate for s in runs], [s.duration_s for s in runs]))
    h.table(("run", "started", "results", "passed", "product failures", "infra errors", "pass rate", "duration s"),
            ((_t(s.id) + (" (this run)" if k == len(runs) - 1 else ""), _t(s.started), str(s.total), str(s.passed),
              str(s.product_failures), str(s.infra_errors), f"{s.pass_rate * 100:.1f}%", f"{s.duration_s:.1f}")
             for k, s in enumerate(runs)))
    h.add("</section>")


# --- entry point --------------------------------------------------------------------------------


def render_auditor_report(record: CampaignRecord, out_path: Path | str, *, previous: Sequence[CampaignRecord] = (),
                          base_dir: Path | str | None = None, max_traces: int = MAX_TRACES) -> Path:
    """Write the auditor report of ``record``; returns the HTML file's path.

    ``out_path`` is the HTML file, or a directory to write ``auditor-report.html`` into. Trace paths
    in results are relative to ``base_dir`` (default: the output directory). ``previous`` records
    feed the trends section.
    """
    out = Path(out_path)
    if out.is_dir():
        out = out / REPORT_FILE_NAME
    out.parent.mkdir(parents=True, exist_ok=True)
    base = Path(base_dir) if base_dir is not None else out.parent
    rid = report_id(record)
    results = record.results
    catalogue = record.catalogue()
    outcomes = [evaluate(req, results) for req in catalogue]
    known = {req.id for req in catalogue}
    index_of = {id(r): i for i, r in enumerate(results)}
    unknown: dict[str, list[int]] = {}
    for i, r in enumerate(results):
        for rid_ in r.requirement_ids:
            if rid_ not in known:
                unknown.setdefault(rid_, []).append(i)

    h = _Html()
    h.add("<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
          '<meta name="viewport" content="width=device-width, initial-scale=1">',
          '<link rel="icon" href="data:,">',
          f'<meta name="paylab-report-id" content="{_e(rid)}">',
          f"<title>paylab auditor report {_e(rid)}</title>", f"<style>{_CSS}</style></head><body>")
    _header(h, record, rid)
    _traceability(h, outcomes, index_of, unknown)
    _timing(h, record)
    _trends(h, record, previous)
    _deviations_and_infra(h, record)
    _results(h, results)
    _traces(h, results, base, max_traces)
    _equipment(h, record)
    _software(h, record)
    h.add(f'<footer><p class="muted">Rendered by paylab from campaign record {_t(record.id)} '
          f"({len(results)} results). Report id {_e(rid)}. Integrity: see MANIFEST.json and MANIFEST.sig "
          "next to this file (<code>paylab report verify DIR</code>).</p></footer></body></html>")
    with out.open("w", encoding="utf-8") as stream:
        stream.writelines(h.parts)
        stream.write("\n")
    return out


def record_summary_json(record: CampaignRecord) -> str:
    """The requirement verdicts as JSON (id → verdict), for scripts and CI."""
    return json.dumps({req.id: evaluate(req, record.results).verdict for req in record.catalogue()}, indent=1)
