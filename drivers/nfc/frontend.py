"""Opening an nfcpy contactless front end by device path, with paylab's errors and a quiet logger.

Paths are nfcpy's: ``udp:127.0.0.1:PORT`` (the pseudo-driver; both the reader and the card side use
the same path) or ``usb:054c:06c3`` / ``usb:072f:2200`` / ``tty:USB0:pn532`` on a bench.
"""

from __future__ import annotations

import logging
import socket
import threading

import nfc
import nfc.clf

from ..errors import ReaderUnavailable

_quiet_once = threading.Lock()
_quieted = False


def quiet_nfcpy(level: int = logging.CRITICAL) -> None:
    """nfcpy sets logger ``nfc`` to INFO on import and logs every timeout of a lifted card as an error;
    paylab traces APDUs itself, so the library is quietened (once; set the level again to debug it)."""
    global _quieted
    with _quiet_once:
        if not _quieted:
            logging.getLogger("nfc").setLevel(level)
            _quieted = True


def open_frontend(path: str, *, role: str, frontend_class: type[nfc.ContactlessFrontend] | None = None,
                  ) -> nfc.ContactlessFrontend:
    """Open ``path``; :class:`ReaderUnavailable` naming the path when no device answers there."""
    quiet_nfcpy()
    cls = frontend_class or nfc.ContactlessFrontend
    clf = cls()
    try:
        opened = clf.open(path)
    except (OSError, ValueError, TypeError) as error:
        clf.close()
        raise ReaderUnavailable(f"cannot open the NFC {role} device", resource=path, detail=str(error)) from error
    if not opened:
        clf.close()
        raise ReaderUnavailable(f"no NFC {role} device on this path", resource=path)
    return clf


def device_info(clf: nfc.ContactlessFrontend, path: str) -> dict[str, str]:
    """Vendor, product and chipset as nfcpy reports them (empty values left out)."""
    device = clf.device
    info: dict[str, str] = {"path": path}
    for key, attr in (("vendor", "vendor_name"), ("product", "product_name"), ("chipset", "chipset_name")):
        try:
            value = getattr(device, attr, None)
        except Exception:
            value = None
        if value:
            info[key] = str(value)
    return info


def free_udp_path(host: str = "127.0.0.1") -> str:
    """``udp:HOST:PORT`` on a port free right now (for simulated fields in tests and simulators)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return f"udp:{host}:{sock.getsockname()[1]}"
