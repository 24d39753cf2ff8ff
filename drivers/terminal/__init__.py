"""Terminal kernels over any :class:`~paylab.drivers.protocols.card.CardReaderProtocol`.

* :class:`ContactlessKernel` — qPBOC (PBOC 3.0 Part 12) reader kernel: ``perform(amount) -> KernelOutcome``.
* :class:`ContactKernel` — PBOC contact kernel, two passes: ``perform(amount) -> ContactOutcome`` then
  ``complete(outcome, response_code=..., issuer_authentication_data=..., scripts=...)``.
* :class:`TerminalConfig` — terminal data objects, limits, supported AIDs, CA keys, injectable UN/clock.

The kernels import only the protocol core (:mod:`paylab.lab.protocol`), never the backend.
"""

from .config import AidEntry, TerminalConfig
from .contact import ContactKernel, ContactOutcome
from .kernel import ContactlessKernel
from .outcome import FIELD55_TAGS, Cvm, KernelOutcome, OdaResult, Outcome

__all__ = [
    "FIELD55_TAGS", "AidEntry", "ContactKernel", "ContactOutcome", "ContactlessKernel", "Cvm", "KernelOutcome",
    "OdaResult", "Outcome", "TerminalConfig",
]
