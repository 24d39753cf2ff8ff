"""Put the remote payment signing applet on a handset's SE, as the issuer's personalisation does.

What ``lab/tests/test_backend_remote.py`` does by hand, for rigs: over the contact interface, an
SCP03 session (GP Card Specification Amendment D, security level 33: C-MAC, C-DEC, R-MAC, R-ENC)
with the ISD, INSTALL [for load] + LOAD of the signing package
(:data:`paylab.drivers.se.applets.remote_sign.PACKAGE`), INSTALL [for install and make
selectable], INSTALL [for personalization] and STORE DATA: algorithm, user ID, PIN, PIN try limit,
"generate the key pair" (the card answers its public key), then the certificate the issuer's CA
makes for it (``certify(se_id, public key template) -> certificate``, e.g. :meth:`.wallet.Wallet.certify`).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from paylab.drivers.se.applets.remote_sign import MODULE_AID, PACKAGE, PACKAGE_AID
from paylab.drivers.se.gp.content import build_load_file_data_block
from paylab.lab.protocol import remote_payment as rpp
from paylab.lab.protocol.apdu import CommandApdu, ResponseApdu
from paylab.lab.protocol.crypto.sm2 import DEFAULT_USER_ID
from paylab.lab.protocol.gp import Scp03Session, StaticKeys
from paylab.lab.protocol.gp import commands as gp

from .errors import SeCommandFailed
from .handset import Handset

BLOCK = 200
Certify = Callable[[bytes, bytes], bytes]


class _IsdSession:
    """SCP03 level 33 with the ISD over the handset's contact interface."""

    def __init__(self, handset: Handset, keys: StaticKeys, isd_aid: bytes) -> None:
        self.handset = handset
        self._check(handset.transmit_contact(CommandApdu(0x00, 0xA4, 0x04, 0x00, isd_aid, 256).encode()), "SELECT ISD")
        challenge = secrets.token_bytes(8)
        answer = self._check(handset.transmit_contact(Scp03Session.host_initialize_update(keys, challenge)),
                             "INITIALIZE UPDATE")
        self.session = Scp03Session.host_from_init_update_response(keys, challenge, answer, 0x33)
        self._check(handset.transmit_contact(self.session.external_authenticate()), "EXTERNAL AUTHENTICATE")
        self.block = 0

    def _check(self, rapdu: bytes, what: str) -> bytes:
        answer = ResponseApdu.decode(rapdu)
        if answer.sw != 0x9000:
            raise SeCommandFailed(f"{what} refused", resource=self.handset.name, detail=what, sw=answer.sw)
        return answer.data

    def send(self, cmd: CommandApdu, what: str) -> bytes:
        wrapped = self.session.wrap(cmd.encode())
        return self._check(self.session.unwrap_response(self.handset.transmit_contact(wrapped)), what)

    def store(self, payload: bytes, *, last: bool = False) -> bytes:
        out = b""
        pieces = [payload[i:i + BLOCK] for i in range(0, len(payload), BLOCK)] or [b""]
        for i, piece in enumerate(pieces):
            final = last and i == len(pieces) - 1
            out += self.send(CommandApdu(0x80, 0xE2, 0x08 | (0x80 if final else 0), self.block, piece, 256),
                             "STORE DATA")
            self.block = 0 if final else self.block + 1
        return out


def personalise_remote_sign(handset: Handset, certify: Certify, *, pin: str,
                            isd_keys: StaticKeys | None = None, isd_aid: bytes | None = None,
                            user_id: bytes = DEFAULT_USER_ID, pin_try_limit: int = 3,
                            se_id: bytes | None = None) -> bytes:
    """Load, install and personalise the signing applet (module docstring); returns the
    certificate stored on the card. ``isd_keys`` default: the GP TEST KEYS of a fabricated ISD;
    ``se_id``: the id the certificate binds (default :attr:`Handset.rp_se_id`)."""
    keys = isd_keys or StaticKeys.gp_default_test_keys()
    isd = isd_aid or handset.se.registry.isd().aid
    with handset.card_lock:
        isd_session = _IsdSession(handset, keys, isd)
        block = build_load_file_data_block(PACKAGE)
        isd_session.send(gp.InstallForLoad(PACKAGE_AID, b"", gp.load_file_data_block_hash(block)).command(),
                         "INSTALL [for load]")
        for cmd in gp.load_commands(gp.LoadFile(block, ()).encode(), BLOCK):
            isd_session.send(cmd, "LOAD")
        isd_session.send(gp.InstallForInstall(PACKAGE_AID, MODULE_AID, MODULE_AID).command(),
                         "INSTALL [for install]")
        isd_session.send(gp.InstallForPersonalization(MODULE_AID).command(), "INSTALL [for personalization]")
        public = isd_session.store(rpp.encode_perso([
            ("algorithm", b"\x01"), ("user_id", user_id), ("pin", rpp.pin_block(pin)),
            ("pin_try_limit", bytes((pin_try_limit,))), ("generate_key_pair", b"")]))
        certificate = certify(se_id or handset.rp_se_id, public)
        isd_session.store(rpp.encode_perso([("certificate", certificate)]), last=True)
    return certificate
