"""``paylab report``: regenerate reports from stored campaign records, verify and scan report directories.

* ``paylab report render RECORD.json [--out DIR] [--previous RECORD.json ...] [--signing-key PEM]``
  renders the auditor report (``DIR/auditor-report.html``, default DIR = the record's directory)
  and re-signs the directory's manifest (``MANIFEST.json`` + ``MANIFEST.sig``).
* ``paylab report verify DIR [--public-key PEM]``: exit 0 when the signature holds and no file
  changed; exit 1 with one line per changed, added or removed file (or bad signature); exit 2 when DIR
  is not a directory.
* ``paylab report scan PATH ...``: exit 1 with one line per full PAN, PIN block or test key found.

Keys default to ``$PAYLAB_REPORT_SIGNING_KEY`` / ``$PAYLAB_REPORT_PUBLIC_KEY``, then to the bundled
TEST key pair in ``fixtures/keys/`` (see its README).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``report render``, ``report verify`` and ``report scan``."""
    p = sub.add_parser("report", help="auditor reports: render from a stored record, verify, scan for secrets")
    rsub = p.add_subparsers(dest="report_command", metavar="SUBCOMMAND", required=True)

    r = rsub.add_parser("render", help="regenerate the auditor report from a campaign record, then re-sign")
    r.add_argument("record", type=Path, help="campaign record JSON (written by paylab run)")
    r.add_argument("--out", type=Path, help="report directory (default: the record's directory)")
    r.add_argument("--previous", type=Path, nargs="*", default=[], help="earlier campaign records, for trends")
    r.add_argument("--signing-key", type=Path, help="Ed25519 private key PEM (default: env, then the TEST key)")
    r.add_argument("--max-traces", type=int, default=None, help="tests whose traces are shown in full")
    r.set_defaults(func=run_render, prog=r.prog)

    v = rsub.add_parser("verify", help="check a report directory against its signed manifest")
    v.add_argument("dir", type=Path, help="report directory holding MANIFEST.json and MANIFEST.sig")
    v.add_argument("--public-key", type=Path, help="Ed25519 public key PEM (default: env, then the TEST key)")
    v.set_defaults(func=run_verify, prog=v.prog)

    s = rsub.add_parser("scan", help="scan files or directories for full PANs, PIN blocks and test keys")
    s.add_argument("paths", type=Path, nargs="+", help="files or directories")
    s.set_defaults(func=run_scan, prog=s.prog)


def run_render(args: argparse.Namespace) -> int:
    from ..report.auditor import MAX_TRACES, render_auditor_report
    from ..report.integrity import load_signing_key, write_manifest
    from ..report.record import CampaignRecord

    key = load_signing_key(args.signing_key)  # refuse a bad key before writing anything
    record = CampaignRecord.load(args.record)
    previous = [CampaignRecord.load(p) for p in args.previous]
    out_dir = args.out or args.record.resolve().parent
    out_dir.mkdir(parents=True, exist_ok=True)
    max_traces = MAX_TRACES if args.max_traces is None else max(args.max_traces, 0)
    html = render_auditor_report(record, out_dir, previous=previous, base_dir=args.record.resolve().parent,
                                 max_traces=max_traces)
    manifest = write_manifest(out_dir, key)
    print(f"campaign: {record.id} ({len(record.results)} results)")
    print(f"manifest: {manifest}")
    print(html)
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from ..report.integrity import IntegrityError, load_public_key, verify_manifest

    if not args.dir.is_dir():
        sys.stderr.write(f"{args.prog}: error: argument dir: {args.dir} is not a directory\n")
        return 2
    key = load_public_key(args.public_key)
    try:
        result = verify_manifest(args.dir, key)
    except IntegrityError as exc:
        print(f"FAILED: {exc}")
        return 1
    if result.ok:
        print(f"ok: {args.dir} matches its manifest, signed by key {result.key_id}")
        return 0
    problems = result.problems()
    for line in problems:
        print(line)
    print(f"FAILED: {len(problems)} problem(s) in {args.dir}")
    return 1


def run_scan(args: argparse.Namespace) -> int:
    from ..report.masking_scan import scan_for_secrets

    missing = [p for p in args.paths if not p.exists()]
    if missing:
        sys.stderr.write(f"{args.prog}: error: argument paths: {missing[0]} does not exist\n")
        return 2
    findings = scan_for_secrets(args.paths)
    for finding in findings:
        print(finding)
    if findings:
        print(f"FAILED: {len(findings)} finding(s)")
        return 1
    print("ok: no full PAN, PIN block or test key found")
    return 0
