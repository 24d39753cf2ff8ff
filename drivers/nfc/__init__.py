"""NFC over nfcpy: :class:`NfcReader` (terminal side) and :class:`NfcCardEmulator` (card side, with the
ISO/IEC 14443-4 target written in paylab: :mod:`paylab.lab.protocol.iso14443`).

Device paths are nfcpy's; ``udp:127.0.0.1:PORT`` (same path on both sides) is the simulated field.
"""

from .emulator import EmulatorEvents, NfcCardEmulator
from .frontend import free_udp_path
from .reader import NfcReader

__all__ = ["EmulatorEvents", "NfcCardEmulator", "NfcReader", "free_udp_path"]
