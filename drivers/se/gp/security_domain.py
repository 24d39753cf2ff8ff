"""GlobalPlatform security domain of the emulated card: the ISD and every SSD (GP Card Spec v2.3).

One class, :class:`SecurityDomain`, plays the card manager's security half: secure channels
(SCP02, GP 2.3 Annex E; SCP03, Amendment D), PUT KEY (11.8), STORE DATA (11.11) to itself and
forwarded to an application, GET DATA (11.3) and the card life cycle (5.1). Card content
management (INSTALL, LOAD, DELETE, GET STATUS, SET STATUS) lives in :mod:`.content`, which this
module calls lazily with the command already unwrapped from the secure channel.

Every command the SD receives goes through one path, :meth:`SecurityDomain.process`:

1. card life cycle gate: TERMINATED answers GET DATA only; on a LOCKED card only the ISD answers;
2. INITIALIZE UPDATE / EXTERNAL AUTHENTICATE open a channel (protocol core sessions);
3. with a channel open every command is unwrapped by ``card_unwrap_command`` (C-MAC, C-DECRYPTION);
   a MAC or cryptogram failure answers 6982 and closes the channel (GP 2.3 10.2.3);
4. the plain command is dispatched by INS;
5. the response is protected by ``card_wrap_response`` (R-MAC, R-ENCRYPTION for SCP03).

Persistent data (``ctx.data``, this SD's part of the card image)::

    "keys": {"<KVN hex>": {"scp": "02"|"03", "i": int, "type": "des"|"aes",
                          "enc": bytes, "mac": bytes, "dek": bytes}}
    "default_kvn": int | None     key set of INITIALIZE UPDATE P1=00 (None: no keys yet)
    "sequence_counter": int       incremented after every successful EXTERNAL AUTHENTICATE;
                                  sent on 2 bytes (SCP02) / 3 bytes (SCP03); one per SD
    "scp": "02"|"03", "i": int    the SD's protocol and option (defaults for new key sets)
    "kdd": bytes                  key diversification data, 10 bytes (INITIALIZE UPDATE, tag CF)
    "iin": bytes | None, "cin": bytes | None     tags 42 / 45

The SD's own life cycle is its registry entry's; the card life cycle is
``se.card_state()["life_cycle"]`` (mirrored into the ISD's registry entry except TERMINATED, whose
b8 would make the ISD unselectable in the runtime's eyes). CPLC is ``se.card_state()["cplc"]``.

Transient data (``ctx.session``, per channel): ``"sc"`` the open or opening
:class:`Scp02Session`/:class:`Scp03Session`; ``"store_data_next"`` the next STORE DATA block
number; ``"perso_target"`` the AID set by INSTALL [for personalization] (content.py);
``"perso_key_params"``/``"perso_keys"`` a key set being personalised.

Key version numbers: 01-7F; ``FF`` is the initial (transport) key set a blank card ships with
(GP 2.3 11.8.2.2). Adding or personalising any other key set deletes the initial one [M: as
JCOP-style cards do]; P1=FF replaces it explicitly.

STORE DATA to the SD itself (paylab's profile; GP 2.3 leaves the SD's data groupings to the
issuer, these follow EMV CPS conventions [M]). P1 b5-b4 = 10 means BER-TLV, anything else DGIs:

* BER-TLV or DGI ``00tt`` for tag tt: ``42`` IIN, ``45`` CIN, ``CF`` key diversification data;
* DGI ``00A6`` (clear): ``KVN || SCP (02/03) || i`` of the key set that follows (default: the
  default KVN, or 01 when only the initial set exists; the SD's SCP and ``i``);
* DGI ``8F01`` (DEK-encrypted, P1 b7-b6 = 11): ``ENC || MAC || DEK`` (3 x 16 bytes for SCP02,
  3 x 16/24/32 for SCP03);
* DGI ``9F01`` (clear): the three 3-byte KCVs; checked against the 8F01 keys (6A80, keys dropped).

The key set is committed at ``9F01`` or at the last block (P1 b8). The ISD accepts its own
personalisation while the card is OP_READY or INITIALIZED (GP 2.3 5.1.1); an SSD while not LOCKED.
Encrypted values are decrypted with the session DEK (SCP02: 3DES-ECB, E.4.7) or the static DEK
(SCP03: AES-CBC, ICV zero, Amendment D 7.2.2), value by value for DGIs (EMV CPS), as a whole for
BER-TLV (zero padding allowed).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from paylab.lab.protocol import tlv
from paylab.lab.protocol.apdu import CommandApdu, ResponseApdu
from paylab.lab.protocol.crypto import primitives
from paylab.lab.protocol.errors import ApduError, CryptoError, SecureChannelError, TlvError
from paylab.lab.protocol.gp import Scp02Session, Scp03Session, SecurityLevel, StaticKeys, scp02, scp03
from paylab.lab.protocol.gp.commands import encode_dgi
from paylab.lab.protocol.gp.session import ChannelState, sm_indicator

from ..applet import ApduContext, Applet, InstallParams, Reply
from ..errors import ISOException
from ..image import dumps
from ..registry import (
    CARD_INITIALIZED,
    CARD_LOCKED,
    CARD_OP_READY,
    CARD_SECURED,
    CARD_TERMINATED,
    PRIV_CARD_LOCK,
    PRIV_CARD_TERMINATE,
    SD_INSTALLED,
    SD_LOCKED_BIT,
    SD_PERSONALIZED,
    SD_SELECTABLE,
    RegistryEntry,
)

if TYPE_CHECKING:
    from paylab.lab.protocol.gp.session import SecureChannelSession

IMPLEMENTATION = "paylab.gp.sd"

INS_INITIALIZE_UPDATE = 0x50
INS_EXTERNAL_AUTHENTICATE = 0x82
INS_PUT_KEY = 0xD8
INS_STORE_DATA = 0xE2
INS_GET_DATA = 0xCA
INS_GET_DATA_ODD = 0xCB
CONTENT_HANDLERS: dict[int, str] = {
    0xE6: "handle_install",
    0xE8: "handle_load",
    0xE4: "handle_delete",
    0xF2: "handle_get_status",
    0xF0: "handle_set_status",
}
"""INS -> handler name in :mod:`.content` (card content management, GP 2.3 11.2/11.4-11.6/11.10)."""
_GP_ONLY_INS = frozenset({INS_INITIALIZE_UPDATE, INS_EXTERNAL_AUTHENTICATE, INS_PUT_KEY, INS_STORE_DATA,
                          *CONTENT_HANDLERS})

INITIAL_KVN = 0xFF
KEY_TYPE_DES = 0x80
KEY_TYPE_AES = 0x88
_TYPE_OF_SCP = {"02": "des", "03": "aes"}
_KEY_TYPE_CODE = {"des": KEY_TYPE_DES, "aes": KEY_TYPE_AES}
DEFAULT_I: dict[str, int] = {"02": scp02.DEFAULT_I, "03": 0x70}
"""Default ``i``: SCP02 55 (3 keys, ICV encryption, pseudo-random challenge flag); SCP03 70
(pseudo-random card challenge, R-MAC and R-ENCRYPTION support, Amendment D 5.1)."""
SEQUENCE_COUNTER_MAX = {"02": 0xFFFF, "03": 0xFFFFFF}

# STORE DATA P1 (GP 2.3 Table 11-93): b8 last block, b7-b6 encryption, b5-b4 structure.
P1_LAST_BLOCK = 0x80
ENC_NONE, ENC_APPLICATION, ENC_RFU, ENC_DEK = 0, 1, 2, 3
STRUCT_NONE, STRUCT_DGI, STRUCT_BER, STRUCT_RFU = 0, 1, 2, 3

DGI_KEY_PARAMS = 0x00A6
DGI_KEYS = 0x8F01
DGI_KEY_KCVS = 0x9F01
_DATA_TAGS = {0x42: "iin", 0x45: "cin", 0xCF: "kdd"}

# Card recognition data (GP 2.3 Annex H): OID {globalPlatform} = 1.2.840.114283.
GP_OID = bytes.fromhex("2A864886FC6B")
GP_VERSION = bytes([2, 3, 1])
JAVA_CARD_OID = bytes.fromhex("2B060104012A026E0103")  # 1.3.6.1.4.1.42.2.110.1.3 (Java Card 3)
MAX_COMMAND_DATA = 0xFF
NVM_CAPACITY = 1_000_000
"""Emulated non-volatile memory (bytes) for the extended card resources tag FF21."""

_CARD_TRANSITIONS: dict[int, frozenset[int]] = {
    CARD_OP_READY: frozenset({CARD_INITIALIZED, CARD_TERMINATED}),
    CARD_INITIALIZED: frozenset({CARD_SECURED, CARD_TERMINATED}),
    CARD_SECURED: frozenset({CARD_LOCKED, CARD_TERMINATED}),
    CARD_LOCKED: frozenset({CARD_SECURED, CARD_TERMINATED}),
}
"""Legal card life cycle transitions (GP 2.3 5.1.1, figure 5-1): forward only, LOCKED <-> SECURED,
TERMINATED from any state."""


# --- persistent data helpers ------------------------------------------------------------------

def kvn_key(kvn: int) -> str:
    """The ``ctx.data["keys"]`` key of a key version number: two uppercase hex digits."""
    return f"{kvn:02X}"


def key_material_problem(scp: str, enc: bytes, mac: bytes, dek: bytes) -> str | None:
    """Why ``enc``/``mac``/``dek`` cannot form an SCP key set (None when they can)."""
    lengths = {len(enc), len(mac), len(dek)}
    if scp == "02":
        return None if lengths == {16} else "SCP02 keys must be 16-byte double-length 3DES keys"
    if scp == "03":
        if len(lengths) != 1 or lengths.pop() not in (16, 24, 32):
            return "SCP03 keys must be AES-128/192/256 keys of one length"
        return None
    return f"unknown secure channel protocol {scp!r}"


def i_problem(scp: str, i: int) -> str | None:
    """Why ``i`` is not an implementation option the protocol core supports (None when it is)."""
    try:
        (scp02 if scp == "02" else scp03).validate_level(0x01, i)
    except SecureChannelError as exc:
        return str(exc)
    return None


def key_set_record(keys: StaticKeys, scp: str, i: int) -> dict[str, Any]:
    """One ``ctx.data["keys"]`` value; :class:`ValueError` for unusable material."""
    problem = key_material_problem(scp, keys.enc, keys.mac, keys.dek) or i_problem(scp, i)
    if problem:
        raise ValueError(problem)
    return {"scp": scp, "i": i, "type": _TYPE_OF_SCP[scp], "enc": keys.enc, "mac": keys.mac, "dek": keys.dek}


def new_sd_data(*, scp: str = "03", i: int | None = None, keys: StaticKeys | None = None,
                kdd: bytes = bytes(10), iin: bytes | None = None, cin: bytes | None = None) -> dict[str, Any]:
    """The initial ``ctx.data`` of a security domain. ``keys`` with KVN 00 are stored as the
    initial key set FF."""
    if scp not in ("02", "03"):
        raise ValueError(f"scp must be '02' or '03', got {scp!r}")
    option = DEFAULT_I[scp] if i is None else i
    problem = i_problem(scp, option)
    if problem:
        raise ValueError(problem)
    if len(kdd) != 10:
        raise ValueError(f"key diversification data must be 10 bytes, got {len(kdd)}")
    data: dict[str, Any] = {"keys": {}, "default_kvn": None, "sequence_counter": 0, "scp": scp, "i": option,
                            "kdd": bytes(kdd), "iin": iin, "cin": cin}
    if keys is not None:
        kvn = keys.kvn or INITIAL_KVN
        data["keys"][kvn_key(kvn)] = key_set_record(keys, scp, option)
        data["default_kvn"] = kvn
    return data


# --- TLV / DGI helpers ---------------------------------------------------------------------------

def parse_dgis(data: bytes) -> list[tuple[int, bytes]]:
    """Split an EMV CPS data grouping sequence: ``DGI(2) L(1, or FF + 2) value`` (6A80 if malformed)."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        if pos + 3 > len(data):
            raise ISOException(0x6A80, f"truncated DGI header at offset {pos}")
        dgi, length, pos = int.from_bytes(data[pos:pos + 2], "big"), data[pos + 2], pos + 3
        if length == 0xFF:
            if pos + 2 > len(data):
                raise ISOException(0x6A80, "truncated DGI length")
            length, pos = int.from_bytes(data[pos:pos + 2], "big"), pos + 2
        if pos + length > len(data):
            raise ISOException(0x6A80, f"DGI {dgi:04X}: {length} bytes announced, {len(data) - pos} present")
        out.append((dgi, data[pos:pos + length]))
        pos += length
    return out


def card_recognition_data(scp: int, i: int) -> bytes:
    """Value of tag 73 (GP 2.3 Annex H.2): recognition OID, GP version, identification scheme, SCP."""
    return (tlv.tlv(0x06, GP_OID + b"\x01")
            + tlv.tlv(0x60, tlv.tlv(0x06, GP_OID + b"\x02" + GP_VERSION))
            + tlv.tlv(0x63, tlv.tlv(0x06, GP_OID + b"\x03"))
            + tlv.tlv(0x64, tlv.tlv(0x06, GP_OID + bytes([0x04, scp, i])))
            + tlv.tlv(0x66, tlv.tlv(0x06, JAVA_CARD_OID)))


def _cla_kind(cla: int) -> str | None:
    """"iso" (00-1F, 40-7F), "gp" (80-9F, C0-FE) or None for the reserved classes (20-3F, A0-BF)."""
    if cla & 0xE0 == 0x00 or cla & 0xC0 == 0x40:
        return "iso"
    if cla & 0xE0 == 0x80 or cla & 0xC0 == 0xC0:
        return "gp"
    return None


# --- the applet -----------------------------------------------------------------------------------

class SecurityDomain(Applet):
    """The ISD or an SSD (GP 2.3 clause 7). State per the module docstring."""

    implementation: ClassVar[str] = IMPLEMENTATION

    # -- applet hooks ----------------------------------------------------------------------------
    def install(self, ctx: ApduContext, params: InstallParams) -> None:
        """INSTALL [for install] of an SSD: no keys yet (personalised through its creator or by PUT
        KEY), SCP and ``i`` from C9 tag ``81`` (``scp [i]``, paylab convention [M]) or inherited
        from the associated security domain, else SCP03 ``i`` = 70."""
        scp, option = self._inherited_scp(ctx)
        if params.app_specific:
            try:
                found = tlv.find(tlv.decode(params.app_specific), 0x81)
            except TlvError as exc:
                raise ISOException(0x6A80, f"SD install parameters: {exc}") from None
            if found is not None:
                if not 1 <= len(found.value) <= 2 or found.value[0] not in (2, 3):
                    raise ISOException(0x6A80, "SD install parameter 81 must be 'SCP [i]' with SCP 02 or 03")
                scp = f"{found.value[0]:02d}"
                option = found.value[1] if len(found.value) == 2 else DEFAULT_I[scp]
        if i_problem(scp, option):
            raise ISOException(0x6A80, f"unsupported SCP{scp} i={option:02X}")
        kdd = bytes(10)
        if self._has_isd(ctx):
            kdd = ctx.se.applet_data(ctx.se.registry.isd().aid).get("kdd") or kdd
        ctx.data.clear()
        ctx.data.update(new_sd_data(scp=scp, i=option, kdd=kdd))

    def select(self, ctx: ApduContext, cmd: CommandApdu) -> bytes:
        """FCI (GP 2.3 11.9.3.1): ``6F {84 AID, A5 {73 card recognition data, 9F65 max Lc}}``."""
        scp, option = self._channel_protocol(ctx)
        proprietary = tlv.tlv(0x73, card_recognition_data(scp, option)) + tlv.tlv(0x9F65, bytes([MAX_COMMAND_DATA]))
        return tlv.tlv(0x6F, tlv.tlv(0x84, ctx.aid) + tlv.tlv(0xA5, proprietary))

    def deselect(self, ctx: ApduContext) -> None:
        self.close_secure_channel(ctx)

    def process(self, ctx: ApduContext, cmd: CommandApdu) -> Reply:
        life_cycle = self.card_life_cycle(ctx)
        if life_cycle == CARD_TERMINATED:
            return self._process_terminated(ctx, cmd)
        if life_cycle == CARD_LOCKED and not self.is_isd(ctx):
            self.close_secure_channel(ctx)
            raise ISOException(0x6985, "card is locked: only the issuer security domain answers")
        kind = _cla_kind(cmd.cla)
        if kind is None:
            raise ISOException(0x6E00, f"class {cmd.cla:02X} not supported")
        if cmd.chained:
            raise ISOException(0x6884, "command chaining not supported")
        if cmd.ins in (INS_INITIALIZE_UPDATE, INS_EXTERNAL_AUTHENTICATE):
            if kind != "gp":
                raise ISOException(0x6E00, f"INS {cmd.ins:02X} needs a GlobalPlatform class byte")
            if cmd.ins == INS_INITIALIZE_UPDATE:
                return self._initialize_update(ctx, cmd)
            return self._external_authenticate(ctx, cmd)
        session = ctx.session.get("sc")
        if session is not None and not session.is_open:
            self.close_secure_channel(ctx)  # GP 2.3 E.5.1: another command aborts the initiation
            session = None
        plain = self._unwrap(ctx, session, cmd) if session is not None else cmd
        if session is None and plain.secure_messaging:
            raise ISOException(0x6982, "secure messaging without a secure channel")
        reply = self._dispatch(ctx, plain, kind)
        if session is not None and ctx.session.get("sc") is session and session.is_open:
            reply = self._wrap(ctx, session, reply)
        return reply

    def process_data(self, ctx: ApduContext, cmd: CommandApdu) -> Reply:
        """STORE DATA forwarded by the associated SD after INSTALL [for personalization] of this SD,
        already decrypted by it (GP 2.3 11.11.2.1)."""
        if cmd.ins != INS_STORE_DATA:
            raise ISOException(0x6D00, f"INS {cmd.ins:02X} cannot be forwarded to a security domain")
        self._personalize(ctx, cmd.p1, cmd.data, encrypted=False)
        return Reply()

    # -- public helpers (used by content.py) ------------------------------------------------------
    def is_isd(self, ctx: ApduContext) -> bool:
        """True when this SD is the issuer security domain."""
        return ctx.entry.kind == "ISD"

    def secure_channel(self, ctx: ApduContext) -> SecureChannelSession | None:
        """The *open* secure channel session of this SD on the command's channel, if any."""
        session = ctx.session.get("sc")
        return session if session is not None and session.is_open else None

    def security_level(self, ctx: ApduContext) -> SecurityLevel:
        """Current security level; an OTA (SCP80) packet counts as C-MAC + C-DECRYPTION."""
        if ctx.external_security == "scp80":
            return SecurityLevel.C_MAC | SecurityLevel.C_DECRYPTION
        session = self.secure_channel(ctx)
        return session.level if session is not None else SecurityLevel.NONE

    def is_authenticated(self, ctx: ApduContext, level: SecurityLevel = SecurityLevel.C_MAC) -> bool:
        """True with an authenticated secure channel at ``level`` or above (or SCP80)."""
        if ctx.external_security == "scp80":
            return True
        session = self.secure_channel(ctx)
        return session is not None and bool(session.level & SecurityLevel.C_MAC) and (session.level & level) == level

    def require_authenticated(self, ctx: ApduContext, level: SecurityLevel = SecurityLevel.C_MAC) -> None:
        """Raise ISOException 6982 unless :meth:`is_authenticated` (GP 2.3 10.2.2)."""
        if not self.is_authenticated(ctx, level):
            raise ISOException(0x6982, f"needs an authenticated secure channel at level {int(level):02X}")

    def close_secure_channel(self, ctx: ApduContext) -> None:
        """Terminate this SD's secure channel on the command's channel, with what depends on it
        (STORE DATA numbering, the personalisation target); a no-op without one."""
        session = ctx.session.pop("sc", None)
        if session is not None:
            session.close()
        for name in ("store_data_next", "perso_key_params", "perso_keys", "perso_target"):
            ctx.session.pop(name, None)  # INSTALL [for personalization] lasts one session

    def key_versions(self, ctx: ApduContext) -> list[int]:
        """KVNs of the key sets this SD holds."""
        return sorted(int(k, 16) for k in ctx.data.get("keys", {}))

    def keys(self, ctx: ApduContext, kvn: int = 0) -> StaticKeys:
        """The static keys of key set ``kvn`` (00 = the default key set); ISOException 6A88 if absent."""
        number, record = self._key_set(ctx, kvn)
        return StaticKeys(record["enc"], record["mac"], record["dek"], number)

    def key_set_info(self, ctx: ApduContext, kvn: int = 0) -> dict[str, Any]:
        """The stored record (``scp``, ``i``, ``type`` and keys) of key set ``kvn`` (00 = default)."""
        return dict(self._key_set(ctx, kvn)[1])

    def delete_key_set(self, ctx: ApduContext, kvn: int) -> None:
        """Delete key set ``kvn`` (DELETE [key], GP 2.3 11.2.2.2); ISOException 6A88 if absent."""
        keys = ctx.data.get("keys", {})
        if kvn_key(kvn) not in keys:
            raise ISOException(0x6A88, f"key version {kvn:02X} not found")
        del keys[kvn_key(kvn)]
        if ctx.data.get("default_kvn") == kvn:
            ctx.data["default_kvn"] = min((int(k, 16) for k in keys), default=None)

    def card_life_cycle(self, ctx: ApduContext) -> int:
        """The card life cycle state (``se.card_state()["life_cycle"]``; OP_READY when unset)."""
        return int(ctx.se.card_state().get("life_cycle", CARD_OP_READY))

    def set_card_life_cycle(self, ctx: ApduContext, value: int) -> None:
        """Change the card life cycle (SET STATUS P1=80, GP 2.3 5.1.1 / 11.10): only the transitions
        of figure 5-1; INITIALIZED and SECURED by the ISD, LOCKED/unlock with the card lock
        privilege, TERMINATED with the card terminate privilege. Anything else: 6985."""
        current = self.card_life_cycle(ctx)
        if value not in _CARD_TRANSITIONS.get(current, frozenset()):
            raise ISOException(0x6985, f"card life cycle {current:02X} -> {value:02X} not allowed")
        if value in (CARD_INITIALIZED, CARD_SECURED) and current != CARD_LOCKED and not self.is_isd(ctx):
            raise ISOException(0x6985, "only the issuer security domain advances the card life cycle")
        if (value == CARD_LOCKED or current == CARD_LOCKED) and value != CARD_TERMINATED \
                and not ctx.entry.has_privilege(0, PRIV_CARD_LOCK):
            raise ISOException(0x6985, "card lock privilege required")
        if value == CARD_TERMINATED and not ctx.entry.has_privilege(0, PRIV_CARD_TERMINATE):
            raise ISOException(0x6985, "card terminate privilege required")
        ctx.se.card_state()["life_cycle"] = value
        registry = ctx.se.registry
        isd = next((e for e in registry if e.kind == "ISD"), None)
        if isd is not None and value != CARD_TERMINATED:
            isd.life_cycle = value
            registry.put(isd)

    def set_sd_life_cycle(self, ctx: ApduContext, aid: bytes, value: int) -> None:
        """Change a supplementary SD's life cycle (GP 2.3 5.3.2): INSTALLED -> SELECTABLE ->
        PERSONALIZED; LOCKED (b8 set over the current state) from any of them and back.
        ISOException 6A88 if ``aid`` is no SSD, 6985 for any other transition."""
        registry = ctx.se.registry
        entry = registry.get(aid)
        if entry is None or entry.kind != "SD":
            raise ISOException(0x6A88, f"no supplementary security domain {aid.hex().upper()}")
        current = entry.life_cycle
        if current & SD_LOCKED_BIT:
            allowed = {current & ~SD_LOCKED_BIT & 0xFF}
        else:
            forward = {SD_INSTALLED: SD_SELECTABLE, SD_SELECTABLE: SD_PERSONALIZED}.get(current)
            allowed = {current | SD_LOCKED_BIT} | ({forward} if forward is not None else set())
        if value & SD_LOCKED_BIT and not current & SD_LOCKED_BIT:
            value = current | SD_LOCKED_BIT
        if value not in allowed:
            raise ISOException(0x6985, f"security domain life cycle {current:02X} -> {value:02X} not allowed")
        entry.life_cycle = value
        registry.put(entry)
        if value & SD_LOCKED_BIT:
            for session in ctx.se.sessions_of(aid):
                channel = session.pop("sc", None)
                if channel is not None:
                    channel.close()

    def decrypt_sensitive(self, ctx: ApduContext, data: bytes) -> bytes:
        """Decrypt DEK-encrypted data (STORE DATA, GP 2.3 11.11.2.2): the SCP02 session DEK
        (3DES-ECB) or the SCP03 static DEK (AES-CBC, ICV zero); over SCP80, the static DEK of the
        default key set. 6A80 for a length that is no block multiple, 6982 without a channel."""
        session = self.secure_channel(ctx)
        if session is not None:
            block = 8 if session.scp == 2 else 16
        elif ctx.external_security == "scp80":
            block = 8 if self._key_set(ctx, 0)[1]["type"] == "des" else 16
        else:
            raise ISOException(0x6982, "no secure channel to decrypt sensitive data")
        if not data or len(data) % block:
            raise ISOException(0x6A80, f"encrypted data of {len(data)} bytes is no multiple of {block}")
        return self._dek_decrypt(ctx, data)

    def forward_to_application(self, ctx: ApduContext, target_aid: bytes, cmd: CommandApdu) -> Reply:
        """Hand a plain command to ``target_aid``'s ``process_data`` (GP ``Application.processData``)
        on the same channel. 6A88 for an unknown target, 6985 for a locked one."""
        entry = ctx.se.registry.get(target_aid)
        if entry is None or entry.kind in ("ELF", "ISD"):
            raise ISOException(0x6A88, f"no application {target_aid.hex().upper()} to personalise")
        if entry.locked:
            raise ISOException(0x6985, f"{target_aid.hex().upper()} is locked")
        target_ctx = ctx.se.context(entry, ctx.channel, ctx.interface)
        result = ctx.se.applet(entry).process_data(target_ctx, cmd)
        return result if isinstance(result, Reply) else Reply(result)

    def data_object(self, ctx: ApduContext, tag: int) -> bytes | None:
        """The complete TLV that GET DATA answers for ``tag`` (GP 2.3 11.3.3), or None."""
        data = ctx.data
        if tag == 0x9F7F:
            cplc = ctx.se.card_state().get("cplc")
            return tlv.tlv(0x9F7F, cplc) if cplc else None
        if tag == 0x66:
            scp, option = self._channel_protocol(ctx)
            return tlv.tlv(0x66, tlv.tlv(0x73, card_recognition_data(scp, option)))
        if tag == 0xE0:
            return tlv.tlv(0xE0, self._key_information(ctx))
        if tag == 0xC1:
            width = 2 if self._default_scp(ctx) == "02" else 3
            counter = int(data.get("sequence_counter", 0))
            return tlv.tlv(0xC1, min(counter, (1 << 8 * width) - 1).to_bytes(width, "big"))
        if tag in _DATA_TAGS:
            value = data.get(_DATA_TAGS[tag])
            return tlv.tlv(tag, value) if value else None
        if tag == 0xFF21:  # a first tag byte FF, which ETSI uses and the BER encoder refuses
            resources = self._card_resources(ctx)
            return b"\xff\x21" + tlv.encode_length(len(resources)) + resources
        return None

    # -- secure channel ---------------------------------------------------------------------------
    def _initialize_update(self, ctx: ApduContext, cmd: CommandApdu) -> Reply:
        self.close_secure_channel(ctx)  # a new INITIALIZE UPDATE aborts any session
        if cmd.secure_messaging:
            raise ISOException(0x6985, "INITIALIZE UPDATE is never protected")
        if cmd.p2 != 0x00:
            raise ISOException(0x6A86, "INITIALIZE UPDATE P2 must be 00")
        if len(cmd.data) != 8:
            raise ISOException(0x6700, "host challenge must be 8 bytes")
        kvn, record = self._key_set(ctx, cmd.p1)
        scp = record["scp"]
        counter = int(ctx.data.get("sequence_counter", 0))
        if counter > SEQUENCE_COUNTER_MAX[scp]:
            raise ISOException(0x6985, "sequence counter exhausted")
        keys = StaticKeys(record["enc"], record["mac"], record["dek"], kvn)
        kdd = bytes(ctx.data.get("kdd") or bytes(10))
        session: Scp02Session | Scp03Session
        try:
            if scp == "02":
                session, response = Scp02Session.card_respond_init_update(
                    keys, cmd.encode(), sequence_counter=counter.to_bytes(2, "big"),
                    key_diversification_data=kdd, i=record["i"], random_bytes=ctx.random_bytes)
            else:
                session, response = Scp03Session.card_respond_init_update(
                    keys, cmd.encode(), sequence_counter=counter.to_bytes(3, "big"),
                    key_diversification_data=kdd, i=record["i"], aid=ctx.aid, random_bytes=ctx.random_bytes)
        except SecureChannelError as exc:
            raise ISOException(exc.sw, str(exc)) from None
        except CryptoError as exc:
            raise ISOException(0x6985, f"key set {kvn:02X} unusable: {exc}") from None
        ctx.session["sc"] = session
        return Reply(response)

    def _external_authenticate(self, ctx: ApduContext, cmd: CommandApdu) -> Reply:
        session = ctx.session.get("sc")
        if session is None or session.state is not ChannelState.AWAITING_EXTERNAL_AUTHENTICATE:
            self.close_secure_channel(ctx)
            raise ISOException(0x6985, "EXTERNAL AUTHENTICATE without INITIALIZE UPDATE")
        try:
            session.card_external_authenticate(cmd.encode())
        except SecureChannelError as exc:
            self.close_secure_channel(ctx)
            raise ISOException(exc.sw, str(exc)) from None
        ctx.data["sequence_counter"] = int(ctx.data.get("sequence_counter", 0)) + 1
        ctx.session.pop("store_data_next", None)
        return Reply()

    def _unwrap(self, ctx: ApduContext, session: SecureChannelSession, cmd: CommandApdu) -> CommandApdu:
        try:
            plain = CommandApdu.decode(session.card_unwrap_command(cmd.encode()))
        except (SecureChannelError, ApduError) as exc:
            self.close_secure_channel(ctx)
            raise ISOException(getattr(exc, "sw", 0x6982), str(exc)) from None
        if plain.cla & sm_indicator(plain.cla):  # level 00 with a secure messaging class byte
            self.close_secure_channel(ctx)
            raise ISOException(0x6982, "secure messaging indicated at security level 00")
        return plain

    def _wrap(self, ctx: ApduContext, session: SecureChannelSession, reply: Reply) -> Reply:
        try:
            raw = session.card_wrap_response(ResponseApdu(reply.data, reply.sw >> 8, reply.sw & 0xFF).encode())
        except SecureChannelError as exc:
            self.close_secure_channel(ctx)
            raise ISOException(exc.sw, str(exc)) from None
        response = ResponseApdu.decode(raw)
        return Reply(response.data, response.sw)

    # -- dispatch -----------------------------------------------------------------------------------
    def _dispatch(self, ctx: ApduContext, cmd: CommandApdu, kind: str) -> Reply:
        if cmd.ins in (INS_GET_DATA, INS_GET_DATA_ODD):
            return self._get_data(ctx, cmd)
        if cmd.ins in _GP_ONLY_INS and kind != "gp":
            raise ISOException(0x6E00, f"INS {cmd.ins:02X} needs a GlobalPlatform class byte")
        if cmd.ins in CONTENT_HANDLERS:
            self.require_authenticated(ctx)
            return self._content_handler(cmd.ins)(self, ctx, cmd)
        if cmd.ins == INS_PUT_KEY:
            return self._put_key(ctx, cmd)
        if cmd.ins == INS_STORE_DATA:
            return self._store_data(ctx, cmd)
        raise ISOException(0x6D00, f"INS {cmd.ins:02X} not supported by the security domain")

    @staticmethod
    def _content_handler(ins: int) -> Callable[[SecurityDomain, ApduContext, CommandApdu], Reply]:
        name = CONTENT_HANDLERS[ins]
        module_name = f"{__package__}.content"
        try:
            content = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            raise ISOException(0x6D00, "card content management is not available") from None
        handler = getattr(content, name, None)
        if handler is None:
            raise ISOException(0x6D00, f"content management has no {name}")
        return handler  # type: ignore[no-any-return]

    def _process_terminated(self, ctx: ApduContext, cmd: CommandApdu) -> Reply:
        """TERMINATED card (GP 2.3 5.1.1.5): the ISD answers GET DATA, nothing else."""
        self.close_secure_channel(ctx)
        if cmd.ins in (INS_GET_DATA, INS_GET_DATA_ODD) and _cla_kind(cmd.cla) and not cmd.secure_messaging:
            return self._get_data(ctx, cmd)
        raise ISOException(0x6985, "card is terminated")

    # -- GET DATA -----------------------------------------------------------------------------------
    def _get_data(self, ctx: ApduContext, cmd: CommandApdu) -> Reply:
        tag = cmd.p1 << 8 | cmd.p2 if cmd.p1 else cmd.p2
        if not tag:
            raise ISOException(0x6A88, "GET DATA tag 0000")
        found = self.data_object(ctx, tag)
        if found is None:
            raise ISOException(0x6A88, f"no data object {tag:X}")
        return Reply(found)

    def _key_information(self, ctx: ApduContext) -> bytes:
        """``C0 04 KID KVN type length`` per key (GP 2.3 11.3.3.1, Table 11-28)."""
        out = b""
        for kvn in self.key_versions(ctx):
            record = ctx.data["keys"][kvn_key(kvn)]
            code = _KEY_TYPE_CODE[record["type"]]
            for kid, name in ((1, "enc"), (2, "mac"), (3, "dek")):
                out += tlv.tlv(0xC0, bytes([kid, kvn, code, len(record[name])]))
        return out

    def _card_resources(self, ctx: ApduContext) -> bytes:
        """Extended card resources (ETSI TS 102 226 8.2.1.7.2): applications, free NVM, free RAM."""
        apps = sum(1 for e in ctx.se.registry if e.kind in ("APP", "SD"))
        free = max(0, NVM_CAPACITY - len(dumps(ctx.se.image.state)))
        return (tlv.tlv(0x81, min(apps, 0xFFFF).to_bytes(2, "big")) + tlv.tlv(0x82, free.to_bytes(4, "big"))
                + tlv.tlv(0x83, (8192).to_bytes(2, "big")))

    # -- PUT KEY ------------------------------------------------------------------------------------
    def _put_key(self, ctx: ApduContext, cmd: CommandApdu) -> Reply:
        """PUT KEY (GP 2.3 11.8; Amendment D 7.2 for AES): add (P1=00) or replace (P1=old KVN) the
        ENC/MAC/DEK keys (KIDs 01-03) of a key set. Response: new KVN || KCV of each key."""
        self.require_authenticated(ctx)
        if cmd.p1 & 0x80:
            raise ISOException(0x6A86, "PUT KEY chains (P1 b8) are not supported")
        old_kvn, first_kid, multiple = cmd.p1 & 0x7F, cmd.p2 & 0x7F, bool(cmd.p2 & 0x80)
        if not 1 <= first_kid <= 3:
            raise ISOException(0x6A86, f"key identifier {first_kid:02X}: only 01-03 (ENC, MAC, DEK)")
        if len(cmd.data) < 2:
            raise ISOException(0x6700, "PUT KEY data too short")
        new_kvn = cmd.data[0]
        if not 0x01 <= new_kvn <= 0x7F:
            raise ISOException(0x6A80, f"new key version {new_kvn:02X} out of range 01-7F")
        components = self._parse_key_components(ctx, cmd.data[1:])
        if not multiple and len(components) != 1:
            raise ISOException(0x6A80, "P2 b8 = 0 announces exactly one key")
        kids = list(range(first_kid, first_kid + len(components)))
        if kids[-1] > 3:
            raise ISOException(0x6A80, "key identifiers beyond 03")
        types = {t for t, _ in components}
        if len(types) != 1:
            raise ISOException(0x6A80, "keys of one key set must share one type")
        key_type = types.pop()
        keys = ctx.data.setdefault("keys", {})
        if old_kvn == 0:
            if kvn_key(new_kvn) in keys:
                raise ISOException(0x6A80, f"key version {new_kvn:02X} already exists")
            if kids != [1, 2, 3]:
                raise ISOException(0x6A80, "a new key set needs ENC, MAC and DEK (KIDs 01-03)")
            record: dict[str, Any] = {}
        else:
            if kvn_key(old_kvn) not in keys:
                raise ISOException(0x6A88, f"key version {old_kvn:02X} not found")
            if new_kvn != old_kvn and kvn_key(new_kvn) in keys:
                raise ISOException(0x6A80, f"key version {new_kvn:02X} already exists")
            record = dict(keys[kvn_key(old_kvn)])
            if kids != [1, 2, 3] and record["type"] != key_type:
                raise ISOException(0x6A80, "partial replacement cannot change the key type")
        scp = "02" if key_type == "des" else "03"
        for kid, (_, value) in zip(kids, components, strict=True):
            record[("enc", "mac", "dek")[kid - 1]] = value
        if record.get("type") != key_type or "i" not in record:
            record["i"] = int(ctx.data.get("i", DEFAULT_I[scp])) if ctx.data.get("scp") == scp else DEFAULT_I[scp]
        record.update(scp=scp, type=key_type)
        problem = key_material_problem(scp, record["enc"], record["mac"], record["dek"])
        if problem:
            raise ISOException(0x6A80, problem)
        if old_kvn:
            del keys[kvn_key(old_kvn)]
            if ctx.data.get("default_kvn") == old_kvn:
                ctx.data["default_kvn"] = new_kvn
        self._store_key_set(ctx, new_kvn, record)
        kcvs = b"".join(self._kcv(key_type, value) for _, value in components)
        return Reply(bytes([new_kvn]) + kcvs)

    def _parse_key_components(self, ctx: ApduContext, data: bytes) -> list[tuple[str, bytes]]:
        """Key data fields ``type L component KCV-length KCV`` (GP 2.3 Table 11-68): decrypt each
        component (protocol core) and check its KCV (mismatch 6A80)."""
        out: list[tuple[str, bytes]] = []
        pos = 0
        while pos < len(data):
            code = data[pos]
            if code not in (KEY_TYPE_DES, KEY_TYPE_AES):
                raise ISOException(0x6A80, f"key type {code:02X} not supported (80 DES, 88 AES)")
            key_type = "des" if code == KEY_TYPE_DES else "aes"
            try:
                length, pos = tlv.parse_length(data, pos + 1)
            except TlvError as exc:
                raise ISOException(0x6A80, f"key data field: {exc}") from None
            if pos + length + 1 > len(data) or length == 0:
                raise ISOException(0x6A80, "truncated key data field")
            block, pos = data[pos:pos + length], pos + length
            kcv_length = data[pos]
            kcv, pos = data[pos + 1:pos + 1 + kcv_length], pos + 1 + kcv_length
            if len(kcv) != kcv_length or kcv_length > 3:
                raise ISOException(0x6A80, "bad key check value field")
            key = self._dek_decrypt(ctx, block)
            if key_type == "aes" and len(key) not in (16, 24, 32):
                raise ISOException(0x6A80, f"AES key of {len(key)} bytes")
            if key_type == "des" and len(key) not in (16, 24):
                raise ISOException(0x6A80, f"DES key of {len(key)} bytes")
            if kcv and self._kcv(key_type, key)[:kcv_length] != kcv:
                raise ISOException(0x6A80, "key check value mismatch")
            out.append((key_type, key))
        if not out:
            raise ISOException(0x6A80, "no key data field")
        return out

    @staticmethod
    def _kcv(key_type: str, key: bytes) -> bytes:
        """DES KCV (zero block, GP 2.3 11.8.2.3.2) or AES KCV (block of 01, Amendment D 7.2.2)."""
        return primitives.kcv(key, "3des") if key_type == "des" else primitives.kcv_gp_aes(key)

    def _dek_decrypt(self, ctx: ApduContext, block: bytes) -> bytes:
        """Undo DEK wrapping with the protocol core (SCP02 session DEK / SCP03 static DEK)."""
        try:
            session = self.secure_channel(ctx)
            if session is not None:
                return session.decrypt_key_from_put_key(block)  # type: ignore[attr-defined, no-any-return]
            if ctx.external_security == "scp80":
                record = self._key_set(ctx, 0)[1]
                module = scp02 if record["type"] == "des" else scp03
                return module.decrypt_key_from_put_key(record["dek"], block)
        except CryptoError as exc:
            raise ISOException(0x6A80, f"cannot decrypt: {exc}") from None
        raise ISOException(0x6982, "no secure channel to decrypt key material")

    def _store_key_set(self, ctx: ApduContext, kvn: int, record: dict[str, Any]) -> None:
        keys = ctx.data.setdefault("keys", {})
        keys[kvn_key(kvn)] = record
        if kvn != INITIAL_KVN and kvn_key(INITIAL_KVN) in keys:
            del keys[kvn_key(INITIAL_KVN)]  # the initial key set goes with the first real one [M]
            if ctx.data.get("default_kvn") == INITIAL_KVN:
                ctx.data["default_kvn"] = kvn
        if ctx.data.get("default_kvn") is None or kvn_key(ctx.data["default_kvn"]) not in keys:
            ctx.data["default_kvn"] = kvn

    # -- STORE DATA ---------------------------------------------------------------------------------
    def _store_data(self, ctx: ApduContext, cmd: CommandApdu) -> Reply:
        """STORE DATA (GP 2.3 11.11): forwarded to the INSTALL [for personalization] target, or
        this SD's own personalisation (module docstring). P2 numbers the blocks from 00."""
        self.require_authenticated(ctx)
        encryption, structure = (cmd.p1 >> 5) & 0x03, (cmd.p1 >> 3) & 0x03
        if encryption == ENC_RFU or structure == STRUCT_RFU:
            raise ISOException(0x6A86, f"STORE DATA P1 {cmd.p1:02X}: RFU coding")
        expected = int(ctx.session.get("store_data_next", 0))
        if cmd.p2 != expected and cmd.p2 != 0x00:
            raise ISOException(0x6A86, f"block {cmd.p2:02X} out of sequence, expected {expected:02X}")
        if not cmd.data:
            raise ISOException(0x6700, "STORE DATA without data")
        last = bool(cmd.p1 & P1_LAST_BLOCK)
        target = ctx.session.get("perso_target")
        if target is not None:
            reply = self._forward_store_data(ctx, bytes(target), cmd, encryption, structure)
            if last:
                ctx.session.pop("perso_target", None)
        else:
            if encryption == ENC_APPLICATION:
                raise ISOException(0x6A86, "application-dependent encryption for the security domain itself")
            self._personalize(ctx, cmd.p1, cmd.data, encrypted=encryption == ENC_DEK)
            reply = Reply()
        if last or cmd.p2 == 0xFF:
            ctx.session.pop("store_data_next", None)
        else:
            ctx.session["store_data_next"] = cmd.p2 + 1
        return reply

    def _forward_store_data(self, ctx: ApduContext, target: bytes, cmd: CommandApdu, encryption: int,
                            structure: int) -> Reply:
        data, p1 = cmd.data, cmd.p1
        if encryption == ENC_DEK:
            if structure == STRUCT_BER:
                data = self.decrypt_sensitive(ctx, data)
            else:
                data = b"".join(encode_dgi(dgi, self.decrypt_sensitive(ctx, value)) for dgi, value in parse_dgis(data))
            p1 &= ~0x60 & 0xFF
        plain = CommandApdu(cmd.cla, cmd.ins, p1, cmd.p2, data, cmd.le)
        return self.forward_to_application(ctx, target, plain)

    def _personalize(self, ctx: ApduContext, p1: int, data: bytes, *, encrypted: bool) -> None:
        if self.is_isd(ctx) and self.card_life_cycle(ctx) not in (CARD_OP_READY, CARD_INITIALIZED):
            raise ISOException(0x6985, "the ISD is personalised only while the card is OP_READY or INITIALIZED")
        if (p1 >> 5) & 0x03 == ENC_APPLICATION:
            raise ISOException(0x6A86, "application-dependent encryption for a security domain")
        if (p1 >> 3) & 0x03 == STRUCT_BER:
            if encrypted:
                data = self.decrypt_sensitive(ctx, data)
            try:
                objects = tlv.decode(data)
            except TlvError as exc:
                raise ISOException(0x6A80, f"STORE DATA: {exc}") from None
            for obj in objects:
                self._store_tag(ctx, obj.tag, obj.value)
        else:
            for dgi, value in parse_dgis(data):
                self._store_dgi(ctx, dgi, self.decrypt_sensitive(ctx, value) if encrypted else value)
        if p1 & P1_LAST_BLOCK:
            self._commit_pending_keys(ctx)
            ctx.session.pop("perso_key_params", None)

    def _store_tag(self, ctx: ApduContext, tag: int, value: bytes) -> None:
        name = _DATA_TAGS.get(tag)
        if name is None:
            raise ISOException(0x6A80, f"tag {tag:X} cannot be personalised in a security domain")
        if name == "kdd" and len(value) != 10:
            raise ISOException(0x6A80, "key diversification data must be 10 bytes")
        if not 1 <= len(value) <= 32:
            raise ISOException(0x6A80, f"tag {tag:X}: {len(value)} bytes")
        ctx.data[name] = bytes(value)

    def _store_dgi(self, ctx: ApduContext, dgi: int, value: bytes) -> None:
        if dgi == DGI_KEY_PARAMS:
            if len(value) != 3 or value[1] not in (2, 3) or not 0x01 <= value[0] <= 0x7F:
                raise ISOException(0x6A80, "DGI 00A6 must be KVN (01-7F) || SCP (02/03) || i")
            scp = f"{value[1]:02d}"
            if i_problem(scp, value[2]):
                raise ISOException(0x6A80, f"unsupported SCP{scp} i={value[2]:02X}")
            ctx.session["perso_key_params"] = (value[0], scp, value[2])
        elif dgi == DGI_KEYS:
            kvn, scp, option = ctx.session.get("perso_key_params") or self._default_key_params(ctx)
            if len(value) % 3:
                raise ISOException(0x6A80, "DGI 8F01 must hold three keys of one length")
            n = len(value) // 3
            enc, mac, dek = value[:n], value[n:2 * n], value[2 * n:]
            problem = key_material_problem(scp, enc, mac, dek)
            if problem:
                raise ISOException(0x6A80, problem)
            ctx.session["perso_keys"] = (kvn, {"scp": scp, "i": option, "type": _TYPE_OF_SCP[scp],
                                               "enc": enc, "mac": mac, "dek": dek})
        elif dgi == DGI_KEY_KCVS:
            pending = ctx.session.pop("perso_keys", None)
            if pending is None:
                raise ISOException(0x6985, "DGI 9F01 without a preceding DGI 8F01")
            _, record = pending
            expected = b"".join(self._kcv(record["type"], record[name]) for name in ("enc", "mac", "dek"))
            if value != expected:
                raise ISOException(0x6A80, "key check values of DGI 9F01 do not match the keys")
            self._store_key_set(ctx, pending[0], record)
        elif dgi < 0x100:
            self._store_tag(ctx, dgi, value)
        else:
            raise ISOException(0x6A80, f"DGI {dgi:04X} unknown to the security domain")

    def _commit_pending_keys(self, ctx: ApduContext) -> None:
        pending = ctx.session.pop("perso_keys", None)
        if pending is not None:
            self._store_key_set(ctx, pending[0], pending[1])

    def _default_key_params(self, ctx: ApduContext) -> tuple[int, str, int]:
        default = ctx.data.get("default_kvn")
        kvn = default if default not in (None, INITIAL_KVN) else 0x01
        scp = str(ctx.data.get("scp", "03"))
        return kvn, scp, int(ctx.data.get("i", DEFAULT_I[scp]))

    # -- internals ------------------------------------------------------------------------------------
    def _key_set(self, ctx: ApduContext, kvn: int) -> tuple[int, dict[str, Any]]:
        keys = ctx.data.get("keys") or {}
        if kvn == 0:
            default = ctx.data.get("default_kvn")
            if default is not None and kvn_key(default) in keys:
                kvn = default
            elif keys:
                kvn = min(int(k, 16) for k in keys)
            else:
                raise ISOException(0x6A88, "security domain has no keys")
        record = keys.get(kvn_key(kvn))
        if record is None:
            raise ISOException(0x6A88, f"key version {kvn:02X} not found")
        return kvn, record

    def _default_scp(self, ctx: ApduContext) -> str:
        try:
            return str(self._key_set(ctx, 0)[1]["scp"])
        except ISOException:
            return str(ctx.data.get("scp", "03"))

    def _channel_protocol(self, ctx: ApduContext) -> tuple[int, int]:
        """(SCP, i) of the default key set, for the card recognition data."""
        try:
            record = self._key_set(ctx, 0)[1]
            return int(record["scp"]), int(record["i"])
        except ISOException:
            scp = str(ctx.data.get("scp", "03"))
            return int(scp), int(ctx.data.get("i", DEFAULT_I[scp]))

    @staticmethod
    def _has_isd(ctx: ApduContext) -> bool:
        return any(e.kind == "ISD" for e in ctx.se.registry)

    def _inherited_scp(self, ctx: ApduContext) -> tuple[str, int]:
        parent: RegistryEntry | None = None
        if ctx.entry.associated_sd:
            parent = ctx.se.registry.get(ctx.entry.associated_sd)
        if parent is None and self._has_isd(ctx):
            parent = ctx.se.registry.isd()
        if parent is not None and parent.aid != ctx.aid:
            data = ctx.se.applet_data(parent.aid)
            scp = str(data.get("scp", "03"))
            return scp, int(data.get("i", DEFAULT_I[scp]))
        return "03", DEFAULT_I["03"]
