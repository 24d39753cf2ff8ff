"""A TSM's management session with one security domain over an OTA route: GP steps as scripts.

:class:`~paylab.lab.gp_client.GpClient` talks APDU by APDU; OTA carries *scripts* whose answers come
back all at once. :class:`SdSession` builds the same GP commands (:mod:`paylab.lab.protocol.gp.commands`)
as command units (see :mod:`.card_route`), protects them and checks the answers:

* **SCP80 routes** (SIM over SMS-PP): the commands run on the SD under the packet's SCP80 security,
  so nothing is wrapped; key material (DGIs of STORE DATA, PUT KEY components) is encrypted with
  the *static DEK of the SD's default key set*, as the SD decrypts it
  (``SecurityDomain.decrypt_sensitive`` with external security ``scp80``). Each SMS packet is a new
  card session, so commands that share session state stay in one unit: every STORE DATA block
  travels with its own INSTALL [for personalization] and numbers its block 00 (the SD accepts 00
  at any point), INSTALL [for load] travels with all its LOAD blocks (a load file must then fit one
  SMS; real NFC-SIMs ship their payment package preloaded, see the SE record's ``packages``), and
  an SSD's first key set is the compact ``00A6``/``8F01`` (+ ``9F01`` when it fits) block set.
* **HTTP admin routes** (microSD, eSE): the script opens SCP03 with the SD *in the script itself*:
  INITIALIZE UPDATE, EXTERNAL AUTHENTICATE and the wrapped commands (security level 33: C-MAC,
  C-DECRYPTION, R-MAC, R-ENCRYPTION) in one admin session, without a round trip. That works because
  the SD uses the **pseudo-random card challenge** (``i`` b5, GP Amendment D 6.2.2.1): the host
  computes the card challenge from the static ENC key, the SD's sequence counter and its AID, hence
  the card cryptogram and the session keys, in advance. The INITIALIZE UPDATE answer tells the
  counter the card used; when the guess was wrong (EXTERNAL AUTHENTICATE then fails and nothing
  else runs) the script is rebuilt once with the right counter. Each R-MAC chains on its own
  command's C-MAC, so every response is checked with a copy of the host session taken right after
  that command was wrapped. Key material is DEK-encrypted with the static DEK (SCP03 rules).

A failing command raises :class:`~paylab.lab.gp_client.CardCommandFailed` (with the plain command).
Use :meth:`SdSession.script` to send several steps in one OTA exchange.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from ...gp_client import OS_SD_LOAD_FILE_AID, OS_SD_MODULE_AID, CardCommandFailed
from ...protocol import tlv
from ...protocol.apdu import CommandApdu, ResponseApdu
from ...protocol.crypto import primitives
from ...protocol.errors import PaylabError
from ...protocol.gp import Scp03Session, StaticKeys, scp03
from ...protocol.gp import commands as gp
from ...protocol.gp.session import is_error_sw
from ...protocol.ota import RApdu, build_expanded_commands
from .card_route import CardRoute

__all__ = ["KeyWrap", "ScriptedChannelError", "SdSession", "key_versions"]

INITIALIZE_UPDATE_RESPONSE_LENGTH = 32  # with the 3-byte sequence counter (pseudo-random challenge)
DEFAULT_SCP03_I = 0x70
STORE_DATA_BLOCK = 0xEF


class ScriptedChannelError(PaylabError):
    """The SD cannot be managed with a scripted SCP03 session (no pseudo-random card challenge)."""


class KeyWrap:
    """DEK encryption as an SCP03 SD undoes it: AES-CBC, zero ICV, under the static DEK (Amendment D
    7.2.2); also what an SD decrypts under SCP80 with its default key set. Quacks like a host
    session for :func:`~paylab.lab.protocol.gp.commands.put_key_data`."""

    scp = 0x03

    def __init__(self, keys: StaticKeys) -> None:
        self.keys = keys

    def encrypt_key_for_put_key(self, key: bytes, *, kcv: bytes | None = None) -> tuple[bytes, bytes]:
        return scp03.encrypt_key_for_put_key(self.keys.dek, key, kcv=kcv)

    def encrypt_dgi(self, value: bytes) -> bytes:
        if not value or len(value) % 16:
            raise PaylabError(f"DEK-encrypted DGI of {len(value)} bytes is not a multiple of 16")
        return self.encrypt_key_for_put_key(value, kcv=b"")[0]


def key_versions(key_information: bytes) -> list[int]:
    """KVNs in a GET DATA ``E0`` answer (key information template, GP 2.3 Table 11-28)."""
    outer = tlv.decode_one(key_information)
    return sorted({child.value[1] for child in tlv.decode(outer.value) if child.tag == 0xC0 and len(child.value) >= 2})


def _encoded(cmd: CommandApdu) -> bytes:
    return cmd.encode()


class SdSession:
    """One security domain of one SE, managed with ``keys`` over ``route`` (module docstring).

    ``sequence_counter`` is the TSM's last knowledge of the SD's SCP03 counter (None: guess 0);
    it is updated by every scripted session (persist it to save a round trip next time)."""

    def __init__(self, route: CardRoute, sd_aid: bytes, keys: StaticKeys, *, rng: random.Random,
                 level: int = 0x33, sequence_counter: int | None = None, i: int = DEFAULT_SCP03_I) -> None:
        self.route = route
        self.sd_aid = bytes(sd_aid)
        self.keys = keys
        self.wrap = KeyWrap(keys)
        self.rng = rng
        self.level = level
        self.sequence_counter = sequence_counter
        self.i = i
        self._batch: list[list[CommandApdu]] | None = None

    # -- sending -----------------------------------------------------------------------------------
    @contextmanager
    def script(self) -> Iterator[SdSession]:
        """Collect the steps of the block and send them in one OTA exchange when it ends."""
        if self._batch is not None:
            yield self
            return
        self._batch = []
        try:
            yield self
            units, self._batch = self._batch, None
            if units:
                self.run(units)
        finally:
            self._batch = None

    def _submit(self, units: list[list[CommandApdu]]) -> list[ResponseApdu] | None:
        if self._batch is not None:
            self._batch.extend(units)
            return None
        return self.run(units)

    def run(self, units: Sequence[Sequence[CommandApdu]]) -> list[ResponseApdu]:
        """Send ``units`` protected for the route; one answer per command (CardCommandFailed otherwise)."""
        commands = [cmd for unit in units for cmd in unit]
        if self.route.scp80:
            raw = self.route.execute(self.sd_aid, [[_encoded(c) for c in unit] for unit in units])
            responses = [ResponseApdu(r.data, r.sw >> 8, r.sw & 0xFF) for r in raw]
        else:
            responses = self._run_scp03(commands)
        for cmd, response in zip(commands, responses, strict=False):
            if is_error_sw(response.sw):
                raise CardCommandFailed(cmd, response.sw)
        if len(responses) < len(commands):
            raise CardCommandFailed(commands[len(responses)], 0x6F00)
        return responses

    def run_plain(self, commands: Sequence[CommandApdu]) -> list[RApdu]:
        """Commands without any protection (GET DATA of public objects), each its own unit."""
        return self.route.execute(self.sd_aid, [[_encoded(c)] for c in commands])

    def _run_scp03(self, commands: Sequence[CommandApdu]) -> list[ResponseApdu]:
        for _attempt in range(2):
            counter = self.sequence_counter or 0
            host_challenge = self.rng.randbytes(8)
            session = self._predicted_session(host_challenge, counter)
            initialize_update = Scp03Session.host_initialize_update(self.keys, host_challenge)
            script = [initialize_update, session.external_authenticate()]
            verifiers: list[Scp03Session] = []
            for cmd in commands:
                script.append(session.wrap(cmd.encode()))
                verifiers.append(copy.deepcopy(session))
            raw = self.route.execute(self.sd_aid, [script])
            if not raw:
                raise CardCommandFailed(CommandApdu.decode(initialize_update), 0x6F00)
            init = raw[0]
            if init.sw != 0x9000:
                raise CardCommandFailed(CommandApdu.decode(initialize_update), init.sw)
            pseudo_random = len(init.data) == INITIALIZE_UPDATE_RESPONSE_LENGTH and \
                init.data[12] & scp03.I_PSEUDO_RANDOM_CHALLENGE
            if not pseudo_random:
                raise ScriptedChannelError(f"SD {self.sd_aid.hex().upper()} has no pseudo-random card challenge "
                                           "(i b5): a one-shot SCP03 script cannot open a channel with it")
            actual = int.from_bytes(init.data[29:32], "big")
            if init.data[13:21] != session.card_challenge or init.data[12] != self.i:
                self.sequence_counter, self.i = actual, init.data[12]
                continue
            self.sequence_counter = actual + 1
            if len(raw) < 2 or raw[1].sw != 0x9000:
                raise CardCommandFailed(CommandApdu.decode(script[1]), raw[1].sw if len(raw) > 1 else 0x6F00)
            return [ResponseApdu.decode(verifier.unwrap_response(r.encode()))
                    for verifier, r in zip(verifiers, raw[2:], strict=False)]
        raise ScriptedChannelError(f"SD {self.sd_aid.hex().upper()}: sequence counter still unpredictable")

    def _predicted_session(self, host_challenge: bytes, counter: int) -> Scp03Session:
        sequence = counter.to_bytes(3, "big")
        card_challenge = scp03.pseudo_random_card_challenge(self.keys.enc, sequence, self.sd_aid)
        session_keys = scp03.derive_session_keys(self.keys, host_challenge, card_challenge)
        cryptogram = scp03.card_cryptogram(session_keys.mac, host_challenge, card_challenge)
        predicted = (bytes(10) + bytes([self.keys.kvn or 0xFF, scp03.SCP03, self.i]) + card_challenge + cryptogram
                     + sequence)
        return Scp03Session.host_from_init_update_response(self.keys, host_challenge, predicted, self.level,
                                                           aid=self.sd_aid)

    # -- GP steps ------------------------------------------------------------------------------------
    def get_data(self, tag: int) -> bytes:
        """GET DATA of a public object (CPLC 9F7F, card resources FF21, key information E0)."""
        (response,) = self.run_plain([CommandApdu(0x80, 0xCA, tag >> 8, tag & 0xFF, le=256)])
        if response.sw != 0x9000:
            raise CardCommandFailed(CommandApdu(0x80, 0xCA, tag >> 8, tag & 0xFF, le=256), response.sw)
        return response.data

    def create_security_domain(self, aid: bytes, *, privileges: bytes = b"\x80\xc0\x00",
                               params: bytes = b"\xc9\x00") -> None:
        """INSTALL [for install and make selectable] of an SSD from the OS security-domain module."""
        self._submit([[gp.InstallForInstall(OS_SD_LOAD_FILE_AID, OS_SD_MODULE_AID, aid, privileges,
                                            params).command(le=None)]])

    def give_first_keys(self, ssd_aid: bytes, keys: StaticKeys, *, kvn: int = 0x01, i: int = DEFAULT_SCP03_I) -> None:
        """Personalise a new SSD's first key set (paylab's SD DGIs 00A6 / 8F01 / 9F01) through this SD."""
        params = gp.encode_dgi(0x00A6, bytes([kvn, 0x03, i]))
        encrypted = gp.encode_dgi(0x8F01, self.wrap.encrypt_dgi(keys.enc + keys.mac + keys.dek))
        kcvs = gp.encode_dgi(0x9F01, b"".join(primitives.kcv_gp_aes(k) for k in (keys.enc, keys.mac, keys.dek)))
        install = gp.InstallForPersonalization(ssd_aid).command(le=None)

        def store(data: bytes, number: int, *, last: bool, enc: bool) -> CommandApdu:
            p1 = gp.StoreDataP1(last=last, encryption=gp.STORE_ENCRYPTION_DEK if enc else gp.STORE_ENCRYPTION_NONE,
                                structure=gp.STORE_STRUCTURE_DGI).encode()
            return CommandApdu(0x80, 0xE2, p1, number, data)

        candidates = [[install, store(params, 0, last=False, enc=False), store(encrypted, 1, last=False, enc=True),
                       store(kcvs, 2, last=True, enc=False)],
                      # the key set is committed at the last block when 9F01 does not fit (KCVs unchecked)
                      [install, store(params, 0, last=False, enc=False), store(encrypted, 1, last=True, enc=True)]]
        if kvn == 0x01 and i == DEFAULT_SCP03_I:  # the SD's defaults for a first key set
            candidates.append([install, store(encrypted, 0, last=True, enc=True)])
        self._submit([self._first_fitting(candidates, "an SSD's first key set")])

    def put_keys(self, new_kvn: int, keys: StaticKeys, *, replace_kvn: int = 0x00) -> None:
        """PUT KEY of ENC/MAC/DEK, wrapped under the current static DEK (the key handover)."""
        data = gp.put_key_data(self.wrap, new_kvn, keys)
        self._submit([[CommandApdu(0x80, 0xD8, replace_kvn, 0x81, data.encode())]])

    def load(self, load_file_aid: bytes, load_file: bytes, *, sd_aid: bytes | None = None) -> None:
        """INSTALL [for load] + LOAD (one unit: the load context lasts one card session)."""
        block = gp.LoadFile.decode(load_file).data_block
        if self.route.max_script_bytes is None:
            request = gp.InstallForLoad(load_file_aid, self.sd_aid if sd_aid is None else sd_aid,
                                        gp.load_file_data_block_hash(block))
            unit = [request.command(le=None), *gp.load_commands(load_file, gp.DEFAULT_BLOCK_SIZE, le=None)]
        else:  # no hash (no DAP, no delegated management) and blocks as large as the SMS allows
            request = gp.InstallForLoad(load_file_aid, self.sd_aid if sd_aid is None else sd_aid)
            unit = [request.command(le=None), *gp.load_commands(load_file, len(load_file), le=None)]
            self._first_fitting([unit], f"a load file of {len(load_file)} bytes")
        self._submit([unit])

    def install(self, load_file_aid: bytes, module_aid: bytes, aid: bytes, *, privileges: bytes = b"\x00",
                params: bytes = b"\xc9\x00") -> None:
        """INSTALL [for install and make selectable]."""
        self._submit([[gp.InstallForInstall(load_file_aid, module_aid, aid, privileges, params).command(le=None)]])

    def personalise(self, aid: bytes, dgis: Sequence[tuple[int, bytes, bool]]) -> None:
        """INSTALL [for personalization] + STORE DATA of ``(DGI, data, encrypt)``: DEK-encrypted DGIs
        alone in their block, clear ones streamed in blocks (the application reassembles them)."""
        blocks: list[tuple[bytes, bool]] = []
        size = self._store_data_block_size(aid)
        pending = b""
        for dgi, data, encrypt in dgis:
            if encrypt:
                if pending:
                    blocks.append((pending, False))
                    pending = b""
                blocks.append((gp.encode_dgi(dgi, self.wrap.encrypt_dgi(data)), True))
                continue
            pending += gp.encode_dgi(dgi, data)
            while len(pending) > size:
                blocks.append((pending[:size], False))
                pending = pending[size:]
        if pending:
            blocks.append((pending, False))
        install = gp.InstallForPersonalization(aid).command(le=None)
        commands = []
        for number, (data, encrypted) in enumerate(blocks):
            p1 = gp.StoreDataP1(last=number == len(blocks) - 1,
                                encryption=gp.STORE_ENCRYPTION_DEK if encrypted else gp.STORE_ENCRYPTION_NONE,
                                structure=gp.STORE_STRUCTURE_DGI).encode()
            p2 = 0 if self.route.max_script_bytes is not None else number & 0xFF
            commands.append(CommandApdu(0x80, 0xE2, p1, p2, data))
        if self.route.max_script_bytes is None:
            self._submit([[install, *commands]])
        else:
            self._submit([self._first_fitting([[install, cmd]], f"STORE DATA of {len(cmd.data)} bytes")
                          for cmd in commands])

    def set_contactless(self, aid: bytes, *, activate: bool = True, priority: int | None = None) -> None:
        """SET STATUS [availability] (GP Amendment C 3.11.4)."""
        self._submit([[gp.SetAvailability(activate, (gp.AvailabilityTarget(aid, priority),)).command()]])

    def set_status(self, scope: int, state: int, aid: bytes) -> None:
        """SET STATUS of an application or SD (lock: state b8)."""
        self._submit([[gp.SetStatusCommand(scope, state, aid).command()]])

    def delete(self, aid: bytes, *, related: bool = False) -> None:
        self._submit([[gp.DeleteCommand(aid, related_objects=related).command(le=None)]])

    def get_status(self, scope: int, prefix: bytes = b"") -> list[gp.GetStatusEntry]:
        """GET STATUS (TLV format) of the entries matching ``prefix``; [] when none matches."""
        cmd = gp.GetStatusCommand(scope, prefix, True).command()
        try:
            (response,) = self.run([[cmd]])
        except CardCommandFailed as exc:
            if exc.sw == 0x6A88:
                return []
            raise
        return gp.parse_get_status_response(response.data, scope=scope, tlv_format=True)

    # -- sizing for SMS ------------------------------------------------------------------------------
    def _first_fitting(self, candidates: Sequence[list[CommandApdu]], what: str) -> list[CommandApdu]:
        limit = self.route.max_script_bytes
        for unit in candidates:
            if limit is None or len(build_expanded_commands([c.encode() for c in unit])) <= limit:
                return unit
        raise PaylabError(f"{what} does not fit one OTA packet ({limit} bytes of script) and the card keeps "
                          "no session across packets")

    def _store_data_block_size(self, aid: bytes) -> int:
        limit = self.route.max_script_bytes
        if limit is None:
            return STORE_DATA_BLOCK
        install = gp.InstallForPersonalization(aid).command(le=None).encode()
        for size in range(STORE_DATA_BLOCK, 0, -1):
            unit = [install, CommandApdu(0x80, 0xE2, 0x08, 0x00, bytes(size)).encode()]
            if len(build_expanded_commands(unit)) <= limit:
                return size
        raise PaylabError("no STORE DATA block fits one OTA packet")
