"""PC/SC over the real stack: pyscard → pcscd → vsmartcard's vpcd → an emulated card.

* :class:`~.pcscd.ManagedPcscd` — a private pcscd (socket activation, vpcd reader entries on free
  TCP ports); ``ManagedPcscd.for_process()`` is the per-process shared instance that pyscard in
  this process talks to (``PCSCLITE_CSOCK_NAME`` is read once per process).
* :class:`~.vpcd_bridge.VpcdCardBridge` — serves one :class:`~paylab.drivers.protocols.ApduCard`
  on a vpcd port (insert = connect, remove = close).
* :class:`~.reader.PcscReader` — the :class:`~paylab.drivers.protocols.CardReaderProtocol` over
  pyscard, for emulated and real readers alike.

Example (a test or the sim rig)::

    pcscd = ManagedPcscd.for_process()               # before any other PC/SC call in the process
    slot = pcscd.allocate_slot(contactless=False)    # VpcdSlot(port, reader_name, contactless)
    bridge = VpcdCardBridge.for_slot(secure_element, slot)
    bridge.insert()                                  # the card connects to vpcd
    with PcscReader(slot.reader_name) as reader:
        reader.wait_for_card(5)
        atr = reader.power_on()
        rapdu = reader.transmit(bytes.fromhex("00A4040007A0000003330101"))
    bridge.remove()
    pcscd.release_slot(slot)

External tools: ``subprocess.run(["pcsc_scan", "-r"], env=pcscd.env())``; ``pcscd.describe()``
gives the socket path and reader names to print for engineers.
"""

from .pcscd import ManagedPcscd, VpcdSlot, check_installed
from .reader import CardEvent, PcscReader, list_readers
from .vpcd_bridge import VpcdCardBridge

__all__ = ["CardEvent", "ManagedPcscd", "PcscReader", "VpcdCardBridge", "VpcdSlot", "check_installed", "list_readers"]
