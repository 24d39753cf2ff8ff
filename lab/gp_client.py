"""Host-side GlobalPlatform card management over any transport: what a TSM or perso bureau runs.

:class:`GpClient` takes a ``transmit`` callable (C-APDU bytes in, R-APDU bytes out), so the same
code drives an emulated card in-process, a PC/SC reader, an NFC antenna or an OTA channel. It
opens SCP02/SCP03 secure channels with the protocol core's host sessions, wraps every command and
unwraps every response, and offers the TSM steps of the domain brief (section 4, "TSM flow"):
create an SSD, hand its keys over, load, install, personalise with STORE DATA, make selectable and
activate contactless. Commands are built with :mod:`paylab.lab.protocol.gp.commands`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from .protocol import cps
from .protocol.apdu import CommandApdu, ResponseApdu
from .protocol.errors import PaylabError
from .protocol.gp import Scp02Session, Scp03Session, StaticKeys
from .protocol.gp import commands as gp
from .protocol.sw import describe

Transmit = Callable[[bytes], bytes]

OS_SD_LOAD_FILE_AID = gp.OS_SD_LOAD_FILE_AID
OS_SD_MODULE_AID = gp.OS_SD_MODULE_AID


class CardCommandFailed(PaylabError):
    """A card answered a management command with an error status word."""

    def __init__(self, command: CommandApdu, sw: int) -> None:
        self.command = command
        self.sw = sw
        super().__init__(f"{command.hex()[:10]}… answered {sw:04X} ({describe(sw, 'gp')})")


@dataclass
class GpClient:
    """One management session with one card (one selected security domain at a time)."""

    transmit: Transmit
    random_bytes: Callable[[int], bytes] = secrets.token_bytes
    session: Scp02Session | Scp03Session | None = None

    # -- plain exchanges ---------------------------------------------------------------------------
    def raw(self, cmd: CommandApdu | bytes) -> ResponseApdu:
        """Send without secure messaging."""
        data = cmd.encode() if isinstance(cmd, CommandApdu) else cmd
        return ResponseApdu.decode(self.transmit(data))

    def select(self, aid: bytes) -> ResponseApdu:
        """SELECT by AID (closes any secure channel, as the card does)."""
        self.session = None
        return self.raw(CommandApdu(0x00, 0xA4, 0x04, 0x00, aid, 256))

    def open_secure_channel(self, sd_aid: bytes, keys: StaticKeys, *, scp: str = "03", level: int = 0x03,
                            i: int = 0x55) -> GpClient:
        """SELECT ``sd_aid``, INITIALIZE UPDATE, EXTERNAL AUTHENTICATE (GP 2.3 Annex E / Amd D)."""
        response = self.select(sd_aid)
        if response.sw != 0x9000:
            raise CardCommandFailed(CommandApdu(0x00, 0xA4, 0x04, 0x00, sd_aid), response.sw)
        challenge = self.random_bytes(8)
        cls: type[Scp02Session] | type[Scp03Session] = Scp02Session if scp == "02" else Scp03Session
        iu = cls.host_initialize_update(keys, challenge)
        response = self.raw(iu)
        if response.sw != 0x9000:
            raise CardCommandFailed(CommandApdu.decode(iu), response.sw)
        if scp == "02":
            session: Scp02Session | Scp03Session = Scp02Session.host_from_init_update_response(
                keys, challenge, response.data, level, i=i)
        else:
            session = Scp03Session.host_from_init_update_response(keys, challenge, response.data, level)
        ext = session.external_authenticate()
        response = self.raw(ext)
        if response.sw != 0x9000:
            raise CardCommandFailed(CommandApdu.decode(ext), response.sw)
        self.session = session
        return self

    def send(self, cmd: CommandApdu) -> ResponseApdu:
        """Send through the open secure channel (wrapped), unwrapping the response."""
        if self.session is None:
            return self.raw(cmd)
        raw = self.transmit(self.session.wrap(cmd.encode()))
        return ResponseApdu.decode(self.session.unwrap_response(raw))

    def ok(self, cmd: CommandApdu) -> bytes:
        """Send and require 9000 (or 6310 "more data"); returns the response data."""
        response = self.send(cmd)
        if response.sw not in (0x9000, 0x6310):
            raise CardCommandFailed(cmd, response.sw)
        return response.data

    # -- TSM steps ---------------------------------------------------------------------------------
    def get_data(self, tag: int) -> bytes:
        return self.ok(CommandApdu(0x80, 0xCA, tag >> 8, tag & 0xFF, le=256))

    def load(self, load_file_aid: bytes, load_file: bytes, *, sd_aid: bytes = b"", block_size: int = 200,
             token: Callable[[bytes], bytes] | None = None) -> None:
        """INSTALL [for load] then LOAD blocks (11.5.2.3.1, 11.6). ``load_file`` is ``[E2…] C4 L data``."""
        data_block = gp.LoadFile.decode(load_file).data_block
        request = gp.InstallForLoad(load_file_aid, sd_aid, gp.load_file_data_block_hash(data_block))
        if token is not None:
            request = replace(request, token=token(request.token_data()))
        self.ok(request.command())
        for cmd in gp.load_commands(load_file, block_size):
            self.ok(cmd)

    def install(self, load_file_aid: bytes, module_aid: bytes, aid: bytes, *, privileges: bytes = b"\x00",
                params: bytes = b"\xc9\x00", make_selectable: bool = True,
                token: Callable[[bytes], bytes] | None = None) -> None:
        """INSTALL [for install (and make selectable)] (11.5.2.3.2)."""
        request = gp.InstallForInstall(load_file_aid, module_aid, aid, privileges, params)
        p1 = gp.P1_FOR_INSTALL_AND_MAKE_SELECTABLE if make_selectable else gp.P1_FOR_INSTALL
        if token is not None:
            request = replace(request, token=token(request.token_data(p1)))
        self.ok(request.command(make_selectable=make_selectable))

    def create_security_domain(self, aid: bytes, *, privileges: bytes = b"\x80\x00\x00",
                               params: bytes = b"\xc9\x00") -> None:
        """INSTALL an SSD from the OS security-domain package (brief section 3: ISD creates SSDs)."""
        self.install(OS_SD_LOAD_FILE_AID, OS_SD_MODULE_AID, aid, privileges=privileges, params=params)

    def personalise(self, aid: bytes, dgis: Iterable[tuple[int, bytes, bool]], *, block_size: int = 0xEF) -> None:
        """INSTALL [for personalization] + STORE DATA of ``(DGI, data, encrypt)`` (11.5.2.3.6, 11.11).

        Blocks are packed by :func:`paylab.lab.protocol.cps.store_data_commands`; DGIs flagged
        ``encrypt`` travel DEK-encrypted (P1 b7b6 = 11), each in its own block.
        """
        if self.session is None:
            raise PaylabError("personalisation needs an open secure channel (its DEK encrypts key DGIs)")
        self.ok(gp.InstallForPersonalization(aid).command())
        prepared = [(dgi, self._dek_encrypt(data) if encrypt else data, encrypt) for dgi, data, encrypt in dgis]
        for cmd in cps.store_data_commands(prepared, block_size=block_size):
            self.ok(cmd)

    def _dek_encrypt(self, data: bytes) -> bytes:
        """DEK-encrypt a DGI value as the card's security domain decrypts it (SCP02: session DEK,
        3DES-ECB; SCP03: static DEK, AES-CBC with a zero ICV), via the session's PUT KEY wrapping."""
        assert self.session is not None
        block = 8 if self.session.scp == 0x02 else 16
        if not data or len(data) % block:
            raise PaylabError(f"DEK-encrypted DGI of {len(data)} bytes is not a multiple of {block}")
        encrypted, _ = self.session.encrypt_key_for_put_key(data, kcv=b"")  # a DGI value, not one key
        return encrypted

    def put_keys(self, new_kvn: int, keys: StaticKeys, *, replace_kvn: int = 0x00) -> bytes:
        """PUT KEY of ENC/MAC/DEK (11.8): a new key set (``replace_kvn`` 0) or a replacement."""
        assert self.session is not None
        data = gp.put_key_data(self.session, new_kvn, keys)
        return self.ok(CommandApdu(0x80, 0xD8, replace_kvn, 0x81, data.encode(), 256))

    def set_contactless(self, aid: bytes, *, activate: bool = True, priority: int | None = None) -> None:
        """SET STATUS [availability] (GP Amendment C 3.11.4)."""
        self.ok(gp.SetAvailability(activate, (gp.AvailabilityTarget(aid, priority),)).command())

    def set_status(self, scope: int, state: int, aid: bytes = b"") -> None:
        self.ok(gp.SetStatusCommand(scope, state, aid).command())

    def get_status(self, scope: int, prefix: bytes = b"") -> list[gp.GetStatusEntry]:
        """GET STATUS in TLV format, following 6310 continuations (11.4)."""
        cmd = gp.GetStatusCommand(scope, prefix, True)
        data = b""
        response = self.send(cmd.command())
        while response.sw == 0x6310:
            data += response.data
            response = self.send(cmd.next().command())
        if response.sw == 0x6A88:
            return []
        if response.sw != 0x9000:
            raise CardCommandFailed(cmd.command(), response.sw)
        return gp.parse_get_status_response(data + response.data, scope=scope, tlv_format=True)

    def delete(self, aid: bytes, *, related: bool = False) -> None:
        self.ok(gp.DeleteCommand(aid, related_objects=related).command())


def sd_key_dgis(keys: StaticKeys, *, kvn: int, scp: int = 0x03, i: int = 0x70) -> Sequence[tuple[int, bytes, bool]]:
    """The DGIs that give a new security domain its first key set (paylab's SD perso scheme:
    00A6 KVN‖SCP‖i, 8F01 ENC‖MAC‖DEK DEK-encrypted, 9F01 their KCVs)."""
    from .protocol.crypto import primitives

    kcv = primitives.kcv_gp_aes if scp == 0x03 else (lambda k: primitives.kcv(k, "3des"))
    return [(0x00A6, bytes([kvn, scp, i]), False),
            (0x8F01, keys.enc + keys.mac + keys.dek, True),
            (0x9F01, b"".join(kcv(k) for k in (keys.enc, keys.mac, keys.dek)), False)]
