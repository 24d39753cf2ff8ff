"""Known-answer self-check of the protocol core, run by ``paylab selfcheck`` and ``paylab demo``.

Like a cryptographic module's power-up self-tests: each check recomputes a published vector from
the domain brief and compares. A lab runs it on a rig host before a campaign to prove the installed
paylab computes what the specs say. All keys below are published TEST KEYS.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from .protocol.crypto import emv, mac, primitives, sm2
from .protocol.gp import Scp02Session, StaticKeys
from .protocol.ota import Spi, build_command_packet

h = bytes.fromhex


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one known-answer check."""

    name: str
    source: str
    passed: bool
    detail: str
    duration_ms: float


def _sm4() -> str:
    key = h("0123456789abcdeffedcba9876543210")
    return primitives.sm4_encrypt(key, key).hex()


def _emv_vector1() -> str:
    imk = h("0123456789ABCDEFFEDCBA9876543210")
    mk = emv.derive_icc_master_key(imk, "9901234567890123", "45", "3des")
    sk = emv.derive_emv_csk(mk, h("1234567890123456"))
    ac = emv.generate_ac(sk, h("0123456789ABCDEF0123456789ABCDEF"), "3des")
    arpc = emv.arpc_method1(mk, ac, h("0000"), "3des")
    return " ".join(x.hex().upper() for x in (primitives.kcv(mk)[:2], primitives.kcv(sk)[:2], ac, arpc))


def _scp02() -> str:
    keys = StaticKeys(h("100102030405060708090a0b0c0d0e0f"), h("101102030405060708090a0b0c0d0e0f"),
                      h("102102030405060708090a0b0c0d0e0f"), kvn=0x20)
    session = Scp02Session.host_from_init_update_response(
        keys, h("40A62C37FA6304F8"), h("00000000000000000000700200016B4524ABEE7CF32EA3838BC148F3"), 0x01)
    return (session.external_authenticate() + session.wrap(h("80F22002"))).hex().upper()


def _scp80() -> str:
    packet = build_command_packet(
        spi=Spi.decode(h("0619")), kic=0x35, kid=0x35, kic_key=h("300102030405060708090a0b0c0d0e0f"),
        kid_key=h("301102030405060708090a0b0c0d0e0f"), tar=h("B00011"), counter=0,
        data=h("00a40004023f00"), udh=False)
    return packet.hex()


def _sm2_round_trip() -> str:
    pair = sm2.generate_keypair()
    message = b"paylab self-check order digest"
    signature = sm2.sign(pair.private, message)
    ok = sm2.verify(pair.public, message, signature) and not sm2.verify(pair.public, message + b"!", signature)
    return "sign/verify ok" if ok else "sign/verify FAILED"


CHECKS: tuple[tuple[str, str, Callable[[], str], str], ...] = (
    ("SM4 block", "GB/T 32907 example 1", _sm4, "681edf34d206965e86b3e94f536e4246"),
    ("SM3 'abc'", "GB/T 32905 example 1", lambda: primitives.sm3(b"abc").hex(),
     "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"),
    ("DES CBC-MAC", "FIPS 113 (bouncycastle MacTest)",
     lambda: mac.iso9797_mac_alg1(h("0123456789ABCDEF"), b"7654321 Now is the time for ",
                                  padding="m1", cipher="des")[:4].hex().upper(), "F1D30F68"),
    ("Retail MAC", "ISO 9797-1 alg 3 (bouncycastle MacTest)",
     lambda: mac.iso9797_mac_alg3(h("7CA110454A1A6E570131D9619DC1376E"), b"Hello World !!!!",
                                  padding="none").hex().upper(), "F09B856213BAB83B"),
    ("EMV Option A, CSK, AC, ARPC-1", "EMV Book 2 A1.3/A1.4 (pyemv test_ac_hsm)", _emv_vector1,
     "1DA5 0995 4B46013359B7A58B F8C9CECAABD55AD1"),
    ("SCP02 i=55 EXTERNAL AUTHENTICATE + C-MAC", "GP 2.3 Annex E, real card (pySim vectors)", _scp02,
     "8482010010BA6961667737C5BCEBECE14C7D6A4376" "84F220020814DB34FA4341DCA8"),
    ("SCP80 3DES ciphered + CC", "ETSI TS 102 225 (pySim SJA5 vector)", _scp80,
     "00201506193535b00011ae733256918d050b87c94fbfe12e4dc402f262c41cf67f2f"),
    ("SM2 sign/verify", "GM/T 0003.2, default user id 1234567812345678", _sm2_round_trip, "sign/verify ok"),
)


def run_selfcheck(clock: Callable[[], float] = time.perf_counter) -> list[CheckResult]:
    """Run every known-answer check; a check that raises is a failure, never an escape."""
    results = []
    for name, source, compute, expected in CHECKS:
        start = clock()
        try:
            got = compute()
            passed, detail = got == expected, got
        except Exception as exc:  # a self-check reports, it does not crash
            passed, detail = False, f"{type(exc).__name__}: {exc}"
        results.append(CheckResult(name, source, passed, detail, (clock() - start) * 1000))
    return results
