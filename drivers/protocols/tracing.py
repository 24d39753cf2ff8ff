"""The one place every APDU passes: tracer hooks on a transport (pySim's idea).

A transport subclass implements ``_exchange(raw) -> raw`` and calls :meth:`TracedTransport.traced`
from its public ``transmit``; tracers receive :class:`~paylab.lab.protocol.trace.TraceRecord`
objects built from the raw bytes. Records are built unmasked in memory and masked by the writer
(:class:`~paylab.lab.protocol.trace.TraceWriter`) before anything reaches a file, so a tracer that
writes must go through a ``TraceWriter`` (or :func:`~paylab.lab.protocol.trace.mask_record`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from paylab.lab.protocol.trace import TraceRecord

ApduTracer = Callable[[TraceRecord], None]
"""A hook that receives one record per APDU exchanged (command and response)."""


class TracedTransport:
    """Mixin: tracer registration and the traced exchange. ``transport_name`` names the transport."""

    transport_name: str = "transport"
    kernel: str | None = None
    """RID whose tag dictionary decodes this transport's TLV (e.g. ``A000000333``), if known."""

    def __init__(self) -> None:
        self._tracers: list[ApduTracer] = []

    def add_tracer(self, tracer: ApduTracer) -> None:
        """Register ``tracer``; it is called after every APDU, in registration order."""
        if not hasattr(self, "_tracers"):
            self._tracers = []
        self._tracers.append(tracer)

    def remove_tracer(self, tracer: ApduTracer) -> None:
        """Unregister ``tracer`` (no error if it was not registered)."""
        if tracer in getattr(self, "_tracers", []):
            self._tracers.remove(tracer)

    def traced(self, command: bytes, exchange: Callable[[bytes], bytes]) -> bytes:
        """Run ``exchange(command)`` and feed the record to every tracer (also on the way out of an
        error: the command is then traced with no response)."""
        tracers = getattr(self, "_tracers", [])
        if not tracers:
            return exchange(command)
        start = time.perf_counter()
        response: bytes | None = None
        try:
            response = exchange(command)
            return response
        finally:
            record = TraceRecord.from_apdus(time.time(), command=command, response=response,
                                            transport=self.transport_name, kernel=self.kernel,
                                            duration_ms=(time.perf_counter() - start) * 1000)
            for tracer in tracers:
                tracer(record)
