"""A sample qPBOC online purchase computed end to end by the protocol core (``paylab demo``).

Terminal, card and issuer are all played by pure code here, exchanging the bytes they would
exchange on a rig: SELECT of the payment AID, GPO with the PDOL data (TTQ forcing online), the
card's ARQC over the PBOC AC input (SM4 keys), the 0200 with field 55 and a field-64 MAC, and the
issuer's ARQC check and ARPC. Later issues replace this with a campaign on the simulated rig.
Every key below is a TEST KEY; the PAN is a test PAN and is masked in everything printed.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field

from .protocol import dol, tlv
from .protocol.apdu import CommandApdu, ResponseApdu
from .protocol.crypto import emv
from .protocol.iso8583 import (
    decode_message,
    encode_message,
    field55_decode,
    field55_encode,
    format_message,
    purchase_request,
    response_to,
)
from .protocol.masking import mask_pan
from .protocol.tlv import Tlv
from .protocol.trace import TraceRecord, TraceWriter

h = bytes.fromhex

# --- TEST KEYS and test card data (never real) ----------------------------------------------------
TEST_IMK_AC = h("11223344556677888877665544332211")    # TEST KEY
TEST_IMK_MAC = h("22334455667788999988776655443322")   # TEST KEY
TEST_IMK_ENC = h("33445566778899AAAA99887766554433")   # TEST KEY
TEST_MAK = h("0123456789ABCDEF")                       # TEST KEY (terminal MAC key)
TEST_PAN = "6228488800001232"
TEST_PSN = "01"
AID = h("A000000333010101")
PDOL = h("9F66049F02069F03069F1A0295055F2A029A039C019F3704")
KERNEL = "A000000333"


@dataclass
class DemoTranscript:
    """What the demo prints: the masked APDU trace, the ISO 8583 view and the issuer's verdict."""

    lines: list[str] = field(default_factory=list)
    approved: bool = False
    arpc: bytes = b""


def _card_gpo(pdol_values: dict[int, bytes], atc: bytes) -> bytes:
    """The card side: ARQC over the PBOC AC input with the SM4 session key; returns the GPO response."""
    keys = emv.CardKeys.from_imk(emv.IssuerKeys(TEST_IMK_AC, TEST_IMK_MAC, TEST_IMK_ENC, alg="sm4"),
                                 TEST_PAN, TEST_PSN)
    cvr = h("03A00000")
    # IAD: length 07, DKI 01, CVN 01, CVR; algorithm id 04 (SM4 [M]), IDD: 0A 01 + e-cash balance.
    iad = h("070101") + cvr + h("04") + h("0A01") + h("000000038787") + h("000000")
    values = dict(pdol_values) | {0x82: h("7C00"), 0x9F36: atc}
    sk = emv.derive_ac_session_key(keys.mk_ac, atc, "pboc", "sm4")
    arqc = emv.generate_ac(sk, emv.ac_input(values, cvr), "sm4")
    track2 = h(TEST_PAN + "D3012220" + "0000000000000F")
    response = Tlv.build(0x77, Tlv(0x82, h("7C00")), Tlv(0x9F36, atc), Tlv(0x57, track2), Tlv(0x9F10, iad),
                         Tlv(0x9F26, arqc), Tlv(0x5F34, h(TEST_PSN)), Tlv(0x9F6C, h("0000")),
                         Tlv(0x9F5D, h("000000038787")))
    return response.encode()


def run_demo(unpredictable_number: bytes = h("2B29EBE4"), date: bytes = h("261125"),
             clock: Callable[[], float] = lambda: 0.0) -> DemoTranscript:
    """Compute the sample transaction; pure apart from the injected clock (trace timestamps)."""
    out = DemoTranscript()
    trace_stream = io.StringIO()
    writer = TraceWriter(trace_stream, kernel=KERNEL)

    def exchange(cmd: CommandApdu, response: bytes) -> None:
        record = writer.write(TraceRecord.from_apdus(clock(), command=cmd.encode(), response=response,
                                                     transport="demo", kernel=KERNEL))
        out.lines.append(f"  C {record.command}")
        out.lines.append(f"  R {record.response}")

    # 1. SELECT the PBOC debit AID; the card's FCI carries the PDOL.
    fci = Tlv.build(0x6F, Tlv(0x84, AID), Tlv.build(0xA5, Tlv(0x50, b"PBOC DEBIT"), Tlv(0x9F38, PDOL)))
    out.lines.append("1. SELECT application (PBOC debit), FCI with PDOL")
    exchange(CommandApdu(0x00, 0xA4, 0x04, 0x00, AID, le=256), fci.encode() + b"\x90\x00")

    # 2. GPO with the PDOL data: TTQ 36800000 = qPBOC, online cryptogram required; 1.00 CNY.
    pdol_values = {0x9F66: h("36800000"), 0x9F02: h("000000000100"), 0x9F03: bytes(6), 0x9F1A: h("0156"),
                   0x95: bytes(5), 0x5F2A: h("0156"), 0x9A: date, 0x9C: b"\x00", 0x9F37: unpredictable_number}
    gpo = CommandApdu(0x80, 0xA8, 0x00, 0x00, dol.gpo_command_data(dol.build_dol_data(PDOL, pdol_values,
                                                                                      kernel=KERNEL)), le=256)
    atc = h("0ADC")
    gpo_response = _card_gpo(pdol_values, atc)
    out.lines.append("2. GET PROCESSING OPTIONS (TTQ forces online): card answers with an SM4 ARQC")
    exchange(gpo, ResponseApdu(gpo_response, 0x90, 0x00).encode())
    out.lines.append("   card data (masked):")
    out.lines.extend("     " + line for line in tlv.format_tree(tlv.decode(gpo_response), kernel=KERNEL).splitlines())

    # 3. The terminal builds field 55 (the reader adds 9F27 80 on the qPBOC online path) and the 0200.
    card = tlv.to_dict(tlv.decode(gpo_response))
    field55 = field55_encode([Tlv(0x9F26, card[0x9F26]), Tlv(0x9F27, b"\x80"), Tlv(0x9F10, card[0x9F10]),
                              Tlv(0x9F37, unpredictable_number), Tlv(0x9F36, card[0x9F36]), Tlv(0x95, bytes(5)),
                              Tlv(0x9A, date), Tlv(0x9C, b"\x00"), Tlv(0x9F02, pdol_values[0x9F02]),
                              Tlv(0x5F2A, h("0156")), Tlv(0x82, card[0x82]), Tlv(0x9F1A, h("0156")),
                              Tlv(0x9F03, bytes(6)), Tlv(0x84, AID)])
    request = purchase_request(pan=TEST_PAN, amount=100, stan=1, terminal_id="PAYLAB01",
                               merchant_id="898310048990001", field55=field55, psn="0" + TEST_PSN,
                               track2=card[0x57].hex().upper().rstrip("F"))
    wire = encode_message(request, "cup-pos", mak=TEST_MAK)
    out.lines.append(f"3. ISO 8583 0200 to the acquirer ({len(wire)} bytes, field 64 = UnionPay ECB MAC):")
    received = decode_message(wire, "cup-pos", mak=TEST_MAK)
    out.lines.extend("     " + line for line in format_message(received, "cup-pos").splitlines())

    # 4. The issuer parses field 55, picks the algorithm from the IAD, verifies the ARQC, returns an ARPC.
    icc = tlv.to_dict(field55_decode(received.fields[55]))  # type: ignore[arg-type]
    parsed_iad = emv.parse_iad(icc[0x9F10])
    alg = emv.alg_for_iad(parsed_iad)
    ok = emv.verify_arqc(TEST_IMK_AC, TEST_PAN, TEST_PSN, icc[0x9F36], emv.ac_input(icc, parsed_iad.cvr),
                         icc[0x9F26], method="pboc", alg=alg)
    arc = b"00" if ok else b"05"
    card_keys = emv.CardKeys.from_imk(emv.IssuerKeys(TEST_IMK_AC, TEST_IMK_MAC, TEST_IMK_ENC, alg=alg),
                                      TEST_PAN, TEST_PSN)
    sk = emv.derive_ac_session_key(card_keys.mk_ac, icc[0x9F36], "pboc", alg)
    out.arpc = emv.arpc_method1(sk, icc[0x9F26], arc, alg)
    reply = response_to(received, arc.decode(), extra={38: "123456", 55: field55_encode([Tlv(0x91, out.arpc + arc)])})
    reply_wire = encode_message(reply, "cup-pos", mak=TEST_MAK)
    out.approved = ok
    out.lines.append(f"4. issuer: IAD CVN {parsed_iad.cvn:02X}, algorithm {alg.upper()}, ARQC "
                     f"{'verified' if ok else 'FAILED'} for PAN {mask_pan(TEST_PAN)}; response code {arc.decode()}")
    out.lines.append(f"   0210 ({len(reply_wire)} bytes) carries 91 = ARPC {out.arpc.hex().upper()} || ARC "
                     f"{arc.hex().upper()}")
    out.lines.append(f"   APDU trace: {len(trace_stream.getvalue().splitlines())} JSON lines, masked at write time")
    return out
