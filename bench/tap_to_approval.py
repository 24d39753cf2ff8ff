"""Tap → approval for a qPBOC online purchase over the real stacks (issue 5 goal: median ≤ 25 ms).

Card side: an issued eSE presented by ``NfcCardEmulator`` on an nfcpy ``udp:`` air. Terminal side:
``NfcReader`` + the contactless terminal kernel (PPSE, SELECT, GPO → ARQC), then ISO 8583 0200 over
TCP to the embedded reference backend (acquirer → switch → issuer: ARQC verified, ledger debited,
ARPC back). Measured from "card seen in the field" to the 0210 with response 00. Fresh PANs are
enrolled so that every tap is a first-time ATC for the issuer. TEST keys only; numbers, no asserts.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from paylab.drivers.nfc import NfcCardEmulator, NfcReader, free_udp_path
from paylab.drivers.pos.acquirer_link import TerminalClient
from paylab.drivers.terminal import ContactlessKernel, Outcome, TerminalConfig
from paylab.lab import profiles
from paylab.lab.protocol import cps
from paylab.lab.rig.sim import ODA_SEED, SimRig

TAPS = int(os.environ.get("PAYLAB_BENCH_TAPS", "60"))


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="paylab-bench-tap-") as tmp, SimRig(pos=False, state_dir=Path(tmp)) as sim:
        handset = sim.handsets["phone-ese"]
        chain = cps.generate_oda_chain(profiles.load_bundled(sim.profile_name), seed_or_rng=ODA_SEED)
        config = TerminalConfig().with_ca_keys(chain.ca_public)
        host, port = sim.backend.addresses["acquirer"]
        terminal = sim.backend.config.terminals[1]
        path = free_udp_path()
        times, kernel_ms, online_ms, codes = [], [], [], {}
        with NfcCardEmulator(path, name="bench-pad") as pad, NfcReader(path, name="bench-reader") as reader, \
                TerminalClient(host, port, terminal.tid, terminal.mid, terminal.tmk) as pos:
            pos.sign_on()
            pad.present(handset.as_card())
            for i in range(TAPS + 5):
                reader.wait_for_card(5)
                start = time.perf_counter()
                outcome = ContactlessKernel(reader, config).perform(100 + i, force_online=True)
                mid = time.perf_counter()
                if outcome.outcome is not Outcome.ONLINE_REQUEST:
                    print(f"tap {i}: kernel outcome {outcome.outcome}", file=sys.stderr)
                    return 1
                response = pos.purchase(outcome.pan, 100 + i, field55=outcome.field55(), psn=outcome.psn,
                                        expiry=outcome.expiry[:4], track2=outcome.track2_str())
                end = time.perf_counter()
                reader.power_off()
                codes[response.response_code] = codes.get(response.response_code, 0) + 1
                if i >= 5:  # warm-up taps excluded
                    times.append((end - start) * 1000)
                    kernel_ms.append((mid - start) * 1000)
                    online_ms.append((end - mid) * 1000)
        times.sort()
        p95 = times[int(0.95 * (len(times) - 1))]
        median = statistics.median(times)
        print(f"qPBOC online tap -> approval over nfcpy UDP + ISO 8583 TCP ({len(times)} taps, responses {codes})")
        print(f"  median {median:.1f} ms, p95 {p95:.1f} ms, max {times[-1]:.1f} ms "
              f"(kernel over NFC {statistics.median(kernel_ms):.1f} ms, online leg "
              f"{statistics.median(online_ms):.1f} ms)")
        print(f"  goal median <= 25 ms: ratio {median / 25:.2f} of the goal; EMV budget 500 ms: "
              f"{median / 500:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
