"""The emulated card runtime: power, ATR, logical channels, SELECT, T=0 response recovery, dispatch.

ISO/IEC 7816-4 semantics at the APDU level (clauses 5.1, 5.4, 7.1.1 SELECT, 7.1.2 MANAGE CHANNEL,
7.6.1 GET RESPONSE) with Java Card's rules for what an applet sees, over a
:class:`~drivers.se.image.CardImage` that makes every APDU atomic: the changes an APDU makes are
committed when it completes, and rolled back when the applet raises
:class:`~drivers.se.errors.ISOException` (or fails unexpectedly: 6F00, recorded in ``faults``).
No exception escapes :meth:`SecureElement.transmit` except :class:`PowerLost` (a tear that the
test injected) and :class:`CardPoweredOff`.
"""

from __future__ import annotations

import contextlib
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from paylab.lab.protocol.apdu import CommandApdu, ResponseApdu
from paylab.lab.protocol.errors import ApduError

from .applet import ApduContext, Applet, Interface, Reply
from .catalog import Catalog
from .errors import CardPoweredOff, ISOException, PowerLost
from .form_factor import FormFactor
from .image import CardImage, dumps, loads
from .registry import CARD_LOCKED, CARD_TERMINATED, PRIV_DEFAULT_SELECTED, Registry, RegistryEntry

TearHook = Callable[[str, int], int | None]

INS_SELECT = 0xA4
INS_MANAGE_CHANNEL = 0x70
INS_GET_RESPONSE = 0xC0
INTERNAL_CHANNEL_BASE = 100
"""Internal channels (OTA: RAM over SCP80, HTTP remote administration) are numbered from here;
they never collide with the ISO logical channels 0-19."""

SystemCommand = Callable[["SecureElement", CommandApdu], "Reply"]


@dataclass
class ChannelState:
    """Transient state of one logical channel (cleared on reset and power loss)."""

    selected: bytes | None = None
    sessions: dict[bytes, dict[str, Any]] = field(default_factory=dict)
    pending: bytes = b""          # T=0: response data waiting for GET RESPONSE
    external_security: str | None = None


class SecureElement:
    """One emulated card: a form factor, a card image, and the applet catalog it can run."""

    def __init__(self, image: CardImage, form_factor: FormFactor, catalog: Catalog, *,
                 seed: int | None = None) -> None:
        self.image = image
        self.form_factor = form_factor
        self.catalog = catalog
        self._rng: random.Random | None = random.Random(seed) if seed is not None else None
        self.powered = False
        self.interface: Interface = "contact"
        self.channels: dict[int, ChannelState] = {}
        self.apdu_count = 0
        self.faults: list[str] = []
        self._tear_hook: TearHook | None = None
        self._applets: dict[bytes, Applet] = {}
        self.system_commands: dict[int, SystemCommand] = {}
        """Proprietary-class (CLA 80) instructions the card OS handles whatever is selected,
        keyed by INS: e.g. ENVELOPE (C2) for SMS-PP data download on a UICC (TS 102 221 10.1.1)."""

    # -- randomness and tearing ----------------------------------------------------------------
    def random_bytes(self, n: int) -> bytes:
        """Card randomness: seeded (deterministic traces) or from ``secrets`` (the default)."""
        if self._rng is not None:
            return self._rng.randbytes(n)
        return secrets.token_bytes(n)

    def set_tear_hook(self, hook: TearHook | None) -> None:
        """Install a tear hook: consulted at ``apdu.before``/``apdu.after`` (size = APDU number)
        and at every commit step of the image (see :mod:`drivers.se.image`)."""
        self._tear_hook = hook
        self.image.tear_hook = hook

    def _tear(self, point: str) -> None:
        if self._tear_hook is not None and self._tear_hook(point, 0) is not None:
            raise PowerLost(point)

    # -- power -----------------------------------------------------------------------------------
    @property
    def atr(self) -> bytes:
        return self.form_factor.atr

    @property
    def registry(self) -> Registry:
        return Registry(self.image.state)

    def power_on(self, interface: Interface = "contact") -> bytes:
        """Cold reset: recover and reload the image, clear transient state, return the ATR."""
        self.image.reload()
        self._applets.clear()
        self.interface = interface
        self.powered = True
        self._reset_channels()
        return self.atr

    def reset(self) -> bytes:
        """Warm reset: channels and secure channels close, persistent data stays."""
        if not self.powered:
            return self.power_on(self.interface)
        self.image.rollback()
        self._reset_channels()
        return self.atr

    def power_off(self) -> None:
        self.powered = False
        self.channels.clear()
        self.image.rollback()

    def _lose_power(self) -> None:
        self.powered = False
        self.channels.clear()
        self._applets.clear()

    def _reset_channels(self) -> None:
        self.channels = {0: ChannelState()}
        default = self._default_applet()
        if default is not None:
            self._select_silently(0, default)
        if self.image.dirty:
            self.image.commit()

    def _default_applet(self) -> RegistryEntry | None:
        if self.interface != "contact" or not self.image.state.get("registry"):
            return None
        entries = [e for e in self.registry if e.kind != "ELF" and e.selectable]
        for entry in entries:
            if entry.kind != "ISD" and entry.has_privilege(0, PRIV_DEFAULT_SELECTED):
                return entry
        return next((e for e in entries if e.kind == "ISD"), None)

    # -- applets -----------------------------------------------------------------------------------
    def applet(self, entry: RegistryEntry) -> Applet:
        """The applet object of an instance (created from the catalog on first use)."""
        obj = self._applets.get(entry.aid)
        if obj is None:
            cls = self.catalog.implementation(entry.implementation or "")
            if cls is None:
                raise ISOException(0x6A82, f"no implementation {entry.implementation!r} for {entry.aid.hex()}")
            obj = cls(self, entry.aid)
            self._applets[entry.aid] = obj
        return obj

    def forget_applet(self, aid: bytes) -> None:
        """Drop a deleted instance's object and its sessions."""
        self._applets.pop(aid, None)
        for ch in self.channels.values():
            ch.sessions.pop(aid, None)
            if ch.selected == aid:
                ch.selected = None

    def applet_data(self, aid: bytes) -> dict[str, Any]:
        """The persistent data of an instance (part of the card image)."""
        return self.image.state.setdefault("applets", {}).setdefault(aid.hex().upper(), {})

    def card_state(self) -> dict[str, Any]:
        """Card-wide persistent data (life cycle, CPLC, ...)."""
        return self.image.state.setdefault("card", {})

    def context(self, entry: RegistryEntry, channel: int, interface: Interface | None = None) -> ApduContext:
        ch = self.channels.setdefault(channel, ChannelState())
        return ApduContext(se=self, entry=entry, channel=channel, interface=interface or self.interface,
                           data=self.applet_data(entry.aid), session=ch.sessions.setdefault(entry.aid, {}),
                           random_bytes=self.random_bytes, external_security=ch.external_security)

    # -- internal channels (OTA) -------------------------------------------------------------------
    def open_internal_channel(self, aid: bytes, *, external_security: str | None = None) -> int:
        """Open a card-internal channel with ``aid`` selected, for commands that arrive over the air
        (RAM over SCP80, HTTP remote administration). Raises ISOException 6A82 if ``aid`` is unknown.
        The caller runs it inside the current APDU's transaction (see :meth:`run_internal`)."""
        entry = self.registry.get(aid)
        if entry is None or entry.kind == "ELF":
            raise ISOException(0x6A82, f"no security domain or application {aid.hex().upper()}")
        number = INTERNAL_CHANNEL_BASE
        while number in self.channels:
            number += 1
        self.channels[number] = ChannelState(external_security=external_security)
        self._select_silently(number, entry)
        return number

    def close_internal_channel(self, number: int) -> None:
        if number >= INTERNAL_CHANNEL_BASE and number in self.channels:
            self._deselect(number)
            del self.channels[number]

    def run_internal(self, number: int, raw: bytes) -> bytes:
        """Process one C-APDU on an internal channel, *without* committing: the enclosing APDU
        (e.g. the ENVELOPE) commits or rolls back everything at once. SELECT by AID, MANAGE CHANNEL
        and the logical-channel bits of CLA are handled as on channel 0. Returns the R-APDU bytes.
        Callers stop at the first error SW, as RAM does (ETSI TS 102 226 clause 5.1.2); a command
        failing with a status word leaves no half-applied state (its own writes are undone)."""
        try:
            cmd = CommandApdu.decode(raw)
        except ApduError:
            return b"\x67\x00"
        before = dumps(self.image.state)
        try:
            reply = self._dispatch(cmd, number, "contact")
        except ISOException as exc:
            self.image.state = loads(before)  # the failing command's own writes are undone
            reply = Reply(sw=exc.sw)
        except PowerLost:
            raise
        except Exception as exc:  # as in transmit: an applet bug is 6F00, never an escape
            self.image.state = loads(before)
            self.faults.append(f"internal APDU {raw.hex().upper()}: {type(exc).__name__}: {exc}")
            reply = Reply(sw=0x6F00)
        return ResponseApdu(reply.data, reply.sw >> 8, reply.sw & 0xFF).encode()

    def sessions_of(self, aid: bytes) -> list[dict[str, Any]]:
        """Transient sessions an instance has on the open channels (e.g. to close secure channels)."""
        return [ch.sessions[aid] for ch in self.channels.values() if aid in ch.sessions]

    # -- APDU entry point --------------------------------------------------------------------------
    def transmit(self, raw: bytes, *, interface: Interface | None = None) -> bytes:
        """Process one command APDU; returns the response APDU (data + SW1 SW2)."""
        if not self.powered:
            raise CardPoweredOff("card is not powered")
        self.apdu_count += 1
        try:
            self._tear("apdu.before")
            reply = self._process(bytes(raw), interface or self.interface)
            self._tear("apdu.after")
        except PowerLost:
            self._lose_power()
            raise
        return ResponseApdu(reply.data, reply.sw >> 8, reply.sw & 0xFF).encode()

    def _process(self, raw: bytes, interface: Interface) -> Reply:
        try:
            cmd = CommandApdu.decode(raw)
        except ApduError:
            return Reply(sw=0x6700)
        if cmd.cla == 0xFF:
            return Reply(sw=0x6E00)
        if cmd.is_extended and not self.form_factor.extended_apdus:
            return Reply(sw=0x6700)
        channel = cmd.channel
        if channel >= self.form_factor.logical_channels or channel not in self.channels:
            return Reply(sw=0x6881)
        ch = self.channels[channel]
        if self.form_factor.t0 and cmd.ins == INS_GET_RESPONSE and not cmd.cla & 0x80:
            return self._get_response(ch, cmd)
        ch.pending = b""
        try:
            reply = self._dispatch(cmd, channel, interface)
            self.image.commit()
        except ISOException as exc:
            self.image.rollback()
            reply = Reply(sw=exc.sw)
        except PowerLost:
            raise
        except OSError as exc:
            self.image.rollback()
            self.faults.append(f"APDU {raw.hex().upper()}: image write failed: {exc}")
            reply = Reply(sw=0x6581)
        except Exception as exc:  # the runtime never lets an applet bug escape: 6F00 and roll back
            self.image.rollback()
            self.faults.append(f"APDU {raw.hex().upper()}: {type(exc).__name__}: {exc}")
            reply = Reply(sw=0x6F00)
        return self._t0_shape(ch, cmd, reply)

    def _dispatch(self, cmd: CommandApdu, channel: int, interface: Interface) -> Reply:
        interindustry = not cmd.cla & 0x80
        handler = self.system_commands.get(cmd.ins)
        if handler is not None and cmd.cla & 0xF0 == 0x80 and channel < INTERNAL_CHANNEL_BASE:
            return handler(self, cmd)
        if interindustry and cmd.ins == INS_MANAGE_CHANNEL:
            return self._manage_channel(cmd, channel)
        if interindustry and cmd.ins == INS_SELECT and cmd.p1 == 0x04:
            return self._select(cmd, channel, interface)
        ch = self.channels[channel]
        if ch.selected is None:
            raise ISOException(0x6D00 if interindustry else 0x6E00, "no application selected")
        entry = self.registry.get(ch.selected)
        if entry is None or not entry.selectable:
            ch.selected = None
            raise ISOException(0x6A82, "selected application is gone")
        result = self.applet(entry).process(self.context(entry, channel, interface), cmd)
        return result if isinstance(result, Reply) else Reply(result)

    # -- SELECT / MANAGE CHANNEL / GET RESPONSE ----------------------------------------------------
    def _selectable_here(self, entry: RegistryEntry, interface: Interface) -> bool:
        life_cycle = self.card_state().get("life_cycle")
        if life_cycle in (CARD_LOCKED, CARD_TERMINATED) and entry.kind != "ISD":
            return False
        if interface == "contactless":
            cls = self.catalog.implementation(entry.implementation or "")
            return entry.kind == "APP" and (entry.contactless_activated
                                            or bool(cls and getattr(cls, "always_contactless", False)))
        return True

    def _select(self, cmd: CommandApdu, channel: int, interface: Interface) -> Reply:
        if cmd.p2 & 0xF0 or (cmd.p2 & 0x03) not in (0x00, 0x02):
            raise ISOException(0x6A86, "SELECT P2 not supported")
        ch = self.channels[channel]
        registry = self.registry
        target: RegistryEntry | None
        if not cmd.data:
            target = self._default_applet() if interface == "contact" else None
        else:
            after = ch.selected if cmd.p2 & 0x03 == 0x02 else None
            exact = registry.get(cmd.data)
            target = exact if exact is not None and after is None and exact.selectable else None
            if target is None:
                target = registry.match(cmd.data, after=after)
                while target is not None and not self._selectable_here(target, interface):
                    target = registry.match(cmd.data, after=target.aid)
        self._deselect(channel)
        if target is None or not self._selectable_here(target, interface):
            self.image.commit()  # a failed SELECT still deselects (Java Card 2.2 clause 4.6)
            raise ISOException(0x6A82, "application not found")
        fci = self.applet(target).select(self.context(target, channel, interface), cmd)
        ch.selected = target.aid
        return Reply(b"" if cmd.p2 & 0x0C == 0x0C else fci)

    def _deselect(self, channel: int) -> None:
        ch = self.channels[channel]
        if ch.selected is None:
            return
        entry = self.registry.get(ch.selected)
        if entry is not None:
            with contextlib.suppress(ISOException):
                self.applet(entry).deselect(self.context(entry, channel))
        ch.sessions.pop(ch.selected, None)
        ch.selected = None

    def _select_silently(self, channel: int, entry: RegistryEntry) -> None:
        try:
            self.applet(entry).select(self.context(entry, channel), CommandApdu(0x00, INS_SELECT, 0x04, 0x00,
                                                                                 entry.aid))
            self.channels[channel].selected = entry.aid
        except ISOException:
            self.channels[channel].selected = None

    def _manage_channel(self, cmd: CommandApdu, channel: int) -> Reply:
        limit = self.form_factor.logical_channels
        if cmd.p1 == 0x00:  # open
            if cmd.p2 == 0x00:
                free = [n for n in range(1, limit) if n not in self.channels]
                if not free:
                    raise ISOException(0x6A81, "no logical channel available")
                new, data = free[0], bytes([free[0]])
            else:
                new, data = cmd.p2, b""
                if not 0 < new < limit:
                    raise ISOException(0x6A86, "channel number out of range")
                if new in self.channels:
                    raise ISOException(0x6A86, f"channel {new} already open")
            self.channels[new] = ChannelState()
            origin = self.channels[channel].selected
            entry = self.registry.get(origin) if origin and channel != 0 else self._default_applet()
            if entry is not None:
                self._select_silently(new, entry)
            return Reply(data)
        if cmd.p1 == 0x80:  # close
            target = cmd.p2 if cmd.p2 else channel
            if target == 0:
                raise ISOException(0x6A86, "the basic channel cannot be closed")
            if target not in self.channels:
                raise ISOException(0x6A86 if target >= limit else 0x6881, f"channel {target} is not open")
            self._deselect(target)
            del self.channels[target]
            return Reply()
        raise ISOException(0x6A86, "MANAGE CHANNEL P1 must be 00 or 80")

    def _t0_shape(self, ch: ChannelState, cmd: CommandApdu, reply: Reply) -> Reply:
        """T=0 transport shaping (ISO/IEC 7816-3 clause 10.3.3): case 4 answers 61xx, wrong Le 6Cxx."""
        if not self.form_factor.t0 or not reply.data or reply.sw != 0x9000:
            return reply
        if cmd.data:  # case 4 over T=0: data waits for GET RESPONSE
            ch.pending = reply.data
            return Reply(sw=0x6100 | (min(len(reply.data), 256) & 0xFF))
        if cmd.le is not None and cmd.le != 256 and cmd.le < len(reply.data):
            return Reply(sw=0x6C00 | (min(len(reply.data), 256) & 0xFF))
        return reply

    def _get_response(self, ch: ChannelState, cmd: CommandApdu) -> Reply:
        if not ch.pending:
            return Reply(sw=0x6985)
        if cmd.p1 or cmd.p2:
            return Reply(sw=0x6A86)
        le = cmd.le or 256
        chunk, ch.pending = ch.pending[:le], ch.pending[le:]
        if ch.pending:
            return Reply(chunk, 0x6100 | (min(len(ch.pending), 256) & 0xFF))
        return Reply(chunk)
