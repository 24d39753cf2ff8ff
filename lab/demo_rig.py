"""The end-to-end part of ``paylab demo``: an emulated eSE issued over SCP03, the embedded reference
backend, a POS terminal over ISO 8583 TCP, and qPBOC taps — every hop over real bytes.

Writes a masked APDU trace (JSON lines) and a summary (JSON) under ``reports/<demo id>/``.
All keys are TEST keys; PANs are masked in everything printed or written.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from paylab.drivers.se.catalog_default import default_catalog
from paylab.drivers.se.factory import fabricate
from paylab.drivers.se.form_factor import ESE
from paylab.drivers.se.image import CardImage
from paylab.drivers.se.runtime import SecureElement

from . import profiles
from .backend.config import load_config
from .backend.ledger import account_number, cardholder_account, ecash_account
from .backend.runner import EmbeddedBackend
from .backend.terminal_client import TerminalClient
from .issuance import issue_pboc, reader_transmit
from .protocol import cps, dol, tlv
from .protocol.apdu import CommandApdu, ResponseApdu
from .protocol.iso8583 import field55_decode, field55_encode
from .protocol.masking import mask_pan
from .protocol.tlv import Tlv
from .protocol.trace import TraceRecord, TraceWriter

h = bytes.fromhex
PPSE = b"2PAY.SYS.DDF01"
KERNEL = "A000000333"
FIELD55_TAGS = (0x9F26, 0x9F27, 0x9F10, 0x9F37, 0x9F36, 0x95, 0x9A, 0x9C, 0x9F02, 0x5F2A, 0x82, 0x9F1A, 0x9F03,
                0x9F33, 0x9F34, 0x9F35, 0x9F1E, 0x84, 0x9F09, 0x9F41)


@dataclass
class DemoResult:
    lines: list[str] = field(default_factory=list)
    report_dir: Path | None = None
    online_response: str | None = None
    offline_approved: bool = False
    ledger_ok: bool = False


def _tracer(se: SecureElement, writer: TraceWriter, interface: str) -> Callable[[bytes], bytes]:
    def send(raw: bytes) -> bytes:
        start = time.perf_counter()
        response = se.transmit(raw, interface=interface)  # type: ignore[arg-type]
        writer.write(TraceRecord.from_apdus(time.time(), command=raw, response=response, transport=f"eSE/{interface}",
                                            kernel=KERNEL, duration_ms=(time.perf_counter() - start) * 1000))
        return response

    return send


def _tap(se: SecureElement, writer: TraceWriter, profile: profiles.PbocProfile, amount: int, ttq: bytes,
         un: bytes) -> tuple[dict[int, bytes], dict[int, bytes]]:
    """A qPBOC reader: PPSE, SELECT, GPO; returns (terminal values, card data objects)."""
    se.power_on("contactless")
    send = reader_transmit(_tracer(se, writer, "contactless"))
    ppse = ResponseApdu.decode(send(CommandApdu(0x00, 0xA4, 0x04, 0x00, PPSE, 256).encode()))
    aid = tlv.find(tlv.decode(ppse.data), 0x4F).value  # type: ignore[union-attr]
    fci = ResponseApdu.decode(send(CommandApdu(0x00, 0xA4, 0x04, 0x00, aid, 256).encode()))
    pdol = tlv.find(tlv.decode(fci.data), 0x9F38).value  # type: ignore[union-attr]
    values = {0x9F66: ttq, 0x9F02: cps.amount_n12(amount), 0x9F03: bytes(6), 0x9F1A: h("0156"), 0x95: bytes(5),
              0x5F2A: h("0156"), 0x9A: bytes.fromhex(time.strftime("%y%m%d")), 0x9C: b"\x00", 0x9F37: un,
              0xDF69: b"\x01",
              0x84: aid, 0x9F33: h("E0F8C8"), 0x9F34: h("1F0302"), 0x9F35: b"\x22", 0x9F1E: b"PAYLAB01",
              0x9F09: h("0030"), 0x9F41: h("00000001")}
    gpo = CommandApdu(0x80, 0xA8, 0, 0, dol.gpo_command_data(dol.build_dol_data(pdol, values, kernel=KERNEL)), 256)
    response = ResponseApdu.decode(send(gpo.encode()))
    if response.sw != 0x9000:
        raise RuntimeError(f"GPO answered {response.sw:04X}")
    return values, tlv.to_dict(tlv.decode(response.data))


def run_rig_demo(report_root: Path, *, demo_id: str | None = None) -> DemoResult:
    result = DemoResult()
    out = result.lines
    demo_id = demo_id or time.strftime("demo-%Y%m%d-%H%M%S")
    report = report_root / demo_id
    report.mkdir(parents=True, exist_ok=True)
    result.report_dir = report
    profile = profiles.load_bundled("pboc_debit_ecash_sm4")
    trace_file = (report / "apdu-trace.jsonl").open("w", encoding="utf-8")
    writer = TraceWriter(trace_file, kernel=KERNEL)
    # card image and backend database hold cardholder data and keys: they live outside the report
    state = Path(tempfile.mkdtemp(prefix="paylab-demo-"))
    try:
        # 1. a blank eSE from the factory, issued over SCP03 by the TSM steps
        image = CardImage(state / "ese.card")
        fabricate(image, ESE, overwrite=True)
        se = SecureElement(image, ESE, default_catalog())
        se.power_on()
        chain = cps.generate_oda_chain(profile, seed_or_rng=7)
        out.append(f"1. issue {profile.name} ({mask_pan(profile.pan)}) onto a blank eSE over SCP03:")
        for step in issue_pboc(_tracer(se, writer, "contact"), se.registry.isd().aid, profile, oda=chain):
            out.append(f"     {step.name:<58} {step.apdus:>3} APDUs")

        # 2. the reference backend, embedded on loopback, and a POS terminal signing on over ISO 8583
        config = load_config(overrides={"state_dir": state / "backend"})
        with EmbeddedBackend(config) as backend:
            host, port = backend.addresses["acquirer"]
            out.append(f"2. backend up: acquirer {host}:{port}, switch, issuers bank-a/bank-b, HTTP {backend.http_url}")
            issuer = config.issuer_for_pan(profile.pan).name
            account = cardholder_account(issuer, account_number(issuer, profile.pan))
            ledger = backend.ctx.ledger  # type: ignore[union-attr]
            before = ledger.available(account)
            terminal = config.terminals[0]
            with TerminalClient(host, port, terminal.tid, terminal.mid, terminal.tmk).connect() as pos:
                sign_on = pos.sign_on()
                out.append(f"   POS {terminal.tid} sign-on: response {sign_on.response_code}, working keys "
                           f"exchanged under the TMK (KCVs checked)")
                # 3. online tap: the card's ARQC goes acquirer -> switch -> issuer and back with an ARPC
                values, card = _tap(se, writer, profile, 12_345, h("36800000"), h("2B29EBE4"))
                icc = values | card | {0x9F27: b"\x80"}
                field55 = field55_encode([Tlv(tag, icc[tag]) for tag in FIELD55_TAGS if tag in icc])
                response = pos.purchase(profile.pan, 12_345, field55=field55, psn=profile.psn,
                                        expiry=profile.expiry[:4], track2=card[0x57].hex().upper().rstrip("F"))
                result.online_response = response.response_code
                arpc = {o.tag: o.value for o in field55_decode(response.fields[55])}.get(0x91) if 55 in \
                    response.fields else None  # type: ignore[arg-type]
                out.append(f"3. online qPBOC tap 123.45 CNY: ARQC {card[0x9F26].hex().upper()} -> 0210 response "
                           f"{response.response_code}"
                           + (f", tag 91 (ARPC || ARC) {arpc.hex().upper()}" if arpc else ""))
            after = ledger.available(account)
            out.append(f"   ledger: cardholder account available {before / 100:.2f} -> {after / 100:.2f} CNY")
            # 4. offline e-cash tap: the card approves alone (TC), debits its balance, signs fDDA
            values, card = _tap(se, writer, profile, 880, h("36000080"), h("0A0B0C0D"))
            result.offline_approved = card.get(0x9F27) == b"\x40"
            out.append(f"4. offline qPBOC tap 8.80 CNY: CID {card.get(0x9F27, b'').hex().upper()} (TC), e-cash balance "
                       f"now {int(card[0x9F5D].hex()) / 100:.2f} CNY, fDDA signature {len(card.get(0x9F4B, b''))} B")
            ledger.check_invariants()
            result.ledger_ok = True
            float_account = ecash_account(issuer, account_number(issuer, profile.pan))
            out.append(f"5. ledger invariants hold (balanced entries, no account below its floor); e-cash float "
                       f"{float_account[:32]}…")
        summary = {"demo": demo_id, "profile": profile.name, "pan": mask_pan(profile.pan),
                   "online_response_code": result.online_response, "offline_approved": result.offline_approved,
                   "ledger_invariants": result.ledger_ok, "apdus": se.apdu_count, "card_faults": se.faults}
        (report / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        out.append(f"6. report: {report}/summary.json and apdu-trace.jsonl ({se.apdu_count} APDUs, masked)")
    finally:
        trace_file.close()
        shutil.rmtree(state, ignore_errors=True)
    return result
