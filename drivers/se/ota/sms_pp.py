"""The UICC side of SMS-PP OTA: ENVELOPE (SMS-PP download) → SCP80 → RAM on a security domain → PoR.

3GPP TS 31.111 clause 7.1.1 (the handset passes a TP-PID 7F SMS-DELIVER in an ENVELOPE), ETSI TS
102 225 / 3GPP TS 31.115 (the secured packet), ETSI TS 102 226 (remote APDUs). For each ENVELOPE
(``se.system_commands[0xC2]``, see :func:`attach_sms_pp`):

1. parse the D1 object, the SMS-DELIVER and its command packet (6A80 when malformed: that is the
   handset's fault, not the sender's, so no PoR). A segment of a concatenated SMS (UDH IE 00/08,
   the first segment also with IE 70; 3GPP TS 31.115 clause 4, TS 23.040 clause 9.2.3.24.1) is
   stored by the UICC OS (:class:`~paylab.lab.protocol.ota.sms.SegmentReassembler`, in RAM: a power
   loss forgets partial packets) and answered 9000 with no data; the segment that completes the
   packet runs steps 2-5 on the whole packet, so the PoR answers the last segment. Segments may
   come in any order, duplicates are ignored; a packet missing a segment never runs and is dropped
   after ``segment_timeout_s`` (default 120 s) or when more than 4 partial packets pile up;
2. the TAR names the target (a security domain, or any application); an unknown TAR → PoR 09;
3. :func:`~paylab.lab.protocol.ota.scp80.parse_command_packet` with the target's key sets and the
   stored counter: a failure (01 CC, 02/03/04 counter, 05 cipher, 06, 0A MSL) answers an
   unsecured error PoR and **changes nothing**;
4. the counter is stored (it is consumed even if a command then fails), an internal channel is
   opened on the target with ``external_security="scp80"`` (the packet's security stands in for a
   GP secure channel) and the RAM commands run until the first error status word;
5. the PoR (:func:`~paylab.lab.protocol.ota.scp80.build_response_packet`, secured as SPI byte 2
   asks, with the ``02 71 00`` header) is the ENVELOPE's response data with 9000, when SPI
   byte 2 asks for one (always, or on error). It is not cut to what an SMS-DELIVER-REPORT can
   carry, and "PoR via SMS-SUBMIT" (SPI byte 2 b6) is answered the same way (no proactive SEND SMS).

The runtime commits everything the ENVELOPE changed (card content and counter) in one commit.

RAM format: a script starting with ``AA``/``AE`` is the expanded format (response ``AB``/``AF``
with every R-APDU), else the compact format (response: executed count, last SW, last data)
[M: TS 102 226 ties the format to the TAR; paylab tells them apart by the first byte]. A script
that does not parse answers PoR OK with "bad format" (expanded: ``AB {80 00, 90 01}``; compact:
``00 6700``) [M].

The OTA configuration lives in the card image, so it persists and commits atomically with the
commands (``se.image.state["ota"]``; AIDs and TARs in upper-case hex as keys)::

    {"tars":     {"000000": {"sd": <AID bytes>, "msl": <MSL byte or None>}},
     "key_sets": {"A000000151000000": {"1": {"kic_key": <bytes>, "kid_key": <bytes>}, ...}},
     "counters": {"A000000151000000/1": <last accepted CNTR>}}

KIc's high nibble picks the KIc key of that key set, KID's high nibble the KID key; the replay
counter is kept per target and KID key set (starting at 0) [M: TS 102 225 leaves the binding of
counters to keys to the receiving entity].
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from paylab.lab.protocol.apdu import CommandApdu
from paylab.lab.protocol.errors import OtaError
from paylab.lab.protocol.ota.ram import TAR_ISD
from paylab.lab.protocol.ota.scp80 import (
    KeyResolver,
    OtaKeys,
    PorStatus,
    build_response_packet,
    parse_command_packet,
    por_for_error,
    por_required,
)
from paylab.lab.protocol.ota.sms import (
    INS_ENVELOPE,
    SegmentReassembler,
    SmsError,
    SmsPpDownload,
    command_packet_segment,
)
from paylab.lab.protocol.ota.spi import Spi, key_index

from ..applet import Reply
from ..errors import ISOException
from ..runtime import SecureElement
from .ram import run_remote_apdus

OTA_STATE = "ota"


# --- the OTA configuration in the card image ------------------------------------------------------


def ota_config(se: SecureElement) -> dict[str, Any]:
    """``se.image.state["ota"]`` (read-only use: an empty dict when the card has none)."""
    return se.image.state.get(OTA_STATE, {})


def _writable(se: SecureElement) -> dict[str, Any]:
    ota = se.image.state.setdefault(OTA_STATE, {})
    for part in ("tars", "key_sets", "counters"):
        ota.setdefault(part, {})
    return ota


def provision_tar(se: SecureElement, tar: bytes, target: bytes, *, msl: int | None = None) -> None:
    """Bind ``tar`` to the security domain (or application) ``target``; ``msl`` is the minimum
    security level packets for it must meet (TS 102 226 clause 8.2.1.3.2.4.1). Commits."""
    if len(tar) != 3:
        raise ValueError("a TAR is 3 bytes")
    _writable(se)["tars"][tar.hex().upper()] = {"sd": bytes(target), "msl": msl}
    se.image.commit()


def provision_key_set(se: SecureElement, target: bytes, index: int, *, kic_key: bytes | None = None,
                      kid_key: bytes | None = None) -> None:
    """Store the KIc and/or KID key of key set ``index`` (1..15) of ``target``. Commits."""
    if not 1 <= index <= 0x0F:
        raise ValueError("OTA key set index must be 1..15")
    key_set = _writable(se)["key_sets"].setdefault(bytes(target).hex().upper(), {}).setdefault(str(index), {})
    for name, value in (("kic_key", kic_key), ("kid_key", kid_key)):
        if value is not None:
            key_set[name] = bytes(value)
    se.image.commit()


def install_ota_keys(se: SecureElement, keys: dict[bytes, OtaKeys], *,
                     targets: dict[bytes, bytes] | None = None, msl: int | None = None) -> None:
    """Provision ``{TAR: OtaKeys}``: each TAR targets ``targets[TAR]`` (default: the ISD) and the
    keys go into the key sets named by the high nibbles of their KIc and KID bytes."""
    isd = se.registry.isd().aid
    for tar, ota_keys in keys.items():
        target = (targets or {}).get(tar, isd)
        provision_tar(se, tar, target, msl=msl)
        provision_key_set(se, target, key_index(ota_keys.kic), kic_key=ota_keys.kic_key)
        provision_key_set(se, target, key_index(ota_keys.kid), kid_key=ota_keys.kid_key)


def _counter_key(target: bytes, kid: int) -> str:
    return f"{target.hex().upper()}/{key_index(kid)}"


# --- ENVELOPE handling ------------------------------------------------------------------------------


class SmsPpDownloadHandler:
    """``se.system_commands[0xC2]``: processes an SMS-PP download ENVELOPE (module docstring).
    ``clock`` (seconds, default :func:`time.monotonic`) times out partial concatenated packets."""

    def __init__(self, *, clock: Callable[[], float] | None = None, segment_timeout_s: float = 120.0,
                 max_partial_packets: int = 4) -> None:
        self.clock = clock or time.monotonic
        self.segments = SegmentReassembler(timeout_s=segment_timeout_s, max_messages=max_partial_packets)

    def __call__(self, se: SecureElement, cmd: CommandApdu) -> Reply:
        if cmd.p1 or cmd.p2:
            raise ISOException(0x6A86, "ENVELOPE P1 P2 must be 00 00")
        try:
            segment = command_packet_segment(SmsPpDownload.decode(cmd.data).deliver)
        except SmsError as exc:
            raise ISOException(0x6A80, f"not an SMS-PP data download: {exc}") from exc
        packet = self.segments.add(segment, self.clock())
        if packet is None:  # more segments to come: 9000, no PoR yet
            return Reply(b"")
        return Reply(self.process_packet(se, packet))

    def process_packet(self, se: SecureElement, packet: bytes) -> bytes:
        """Verify and run one command packet (without its ``02 70 00`` header); returns the PoR or b""."""
        tar = bytes(packet[7:10]).ljust(3, b"\x00")
        try:
            target, msl = self._target(se, tar)
            kid = packet[6] if len(packet) > 6 else 0
            parsed = parse_command_packet(
                packet, keys_for_kic_kid=self._resolver(se, target), udh=False, minimum_security_level=msl,
                last_counter=ota_config(se).get("counters", {}).get(_counter_key(target, kid), 0),
            )
        except OtaError as exc:
            return self._error_por(packet, tar, exc)
        if parsed.counter_state is not None:
            _writable(se)["counters"][_counter_key(target, parsed.kid)] = parsed.counter_state
        result = run_remote_apdus(se, target, parsed.data, external_security="scp80")
        if not por_required(parsed.spi, PorStatus.OK):
            return b""
        kic_key, kid_key = self._resolver(se, target)(parsed.kic, parsed.kid, tar)
        return build_response_packet(spi=parsed.spi, kic=parsed.kic, kid=parsed.kid, kic_key=kic_key,
                                     kid_key=kid_key, tar=tar, counter=parsed.counter, data=result)

    @staticmethod
    def _target(se: SecureElement, tar: bytes) -> tuple[bytes, int | None]:
        binding = ota_config(se).get("tars", {}).get(tar.hex().upper())
        entry = se.registry.get(binding["sd"]) if binding else None
        if binding is None or entry is None or entry.kind == "ELF":
            raise OtaError(f"TAR {tar.hex().upper()} unknown", por_status=PorStatus.TAR_UNKNOWN, field="TAR")
        return entry.aid, binding.get("msl")

    @staticmethod
    def _resolver(se: SecureElement, target: bytes) -> KeyResolver:
        key_sets = ota_config(se).get("key_sets", {}).get(target.hex().upper(), {})

        def resolve(kic: int, kid: int, tar: bytes) -> tuple[bytes, bytes]:
            # A missing key reads as an empty one: scp80 then answers 05 (KIc) or 06 (KID).
            return (key_sets.get(str(key_index(kic)), {}).get("kic_key", b""),
                    key_sets.get(str(key_index(kid)), {}).get("kid_key", b""))

        return resolve

    @staticmethod
    def _error_por(packet: bytes, tar: bytes, exc: OtaError) -> bytes:
        try:
            spi = Spi.decode(bytes(packet[3:5]))
        except OtaError:
            spi = None
        if spi is not None and not por_required(spi, exc.por_status):
            return b""
        # CNTR is readable when the packet is not ciphered (TS 102 225 5.2: copied into the PoR).
        readable = spi is not None and not spi.ciphering and len(packet) >= 15
        return por_for_error(exc, tar=tar, counter=int.from_bytes(packet[10:15], "big") if readable else 0)


def attach_sms_pp(se: SecureElement, keys: dict[bytes, OtaKeys] | None = None, *,
                  targets: dict[bytes, bytes] | None = None, msl: int | None = None,
                  clock: Callable[[], float] | None = None) -> SmsPpDownloadHandler:
    """Make ``se`` answer SMS-PP download ENVELOPEs (``80 C2``).

    With ``keys`` (``{TAR: OtaKeys}``) the TARs and key sets are first provisioned into the card
    image (:func:`install_ota_keys`; ``targets`` maps a TAR to its security domain, default the
    ISD, TAR ``000000``); without, the card's existing ``state["ota"]`` is used. ``clock`` times
    out partial concatenated packets (default :func:`time.monotonic`).
    """
    if keys:
        install_ota_keys(se, keys, targets=targets, msl=msl)
    handler = SmsPpDownloadHandler(clock=clock)
    se.system_commands[INS_ENVELOPE] = handler
    return handler


__all__ = [
    "OTA_STATE",
    "TAR_ISD",
    "SmsPpDownloadHandler",
    "attach_sms_pp",
    "install_ota_keys",
    "ota_config",
    "provision_key_set",
    "provision_tar",
]
