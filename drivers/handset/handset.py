"""A simulated phone around one emulated secure element: NFC routing, the modem, the admin agent.

One :class:`Handset` holds a :class:`~paylab.drivers.se.runtime.SecureElement` placed as a UICC
("sim"), a microSD ("microsd") or an embedded SE ("ese") and gives the rest of the lab what a phone
gives:

* **NFC** (:meth:`Handset.as_card`, :meth:`Handset.tap`, :meth:`Handset.lift`): the contactless
  front end routes the field to the SE (card emulation, SWP for a UICC / a wired link for an eSE or
  microSD). The route is an :class:`~paylab.drivers.protocols.card.ApduCard` that a card emulator
  (:class:`~paylab.drivers.protocols.card.CardEmulatorProtocol`, e.g. the NFC antenna) presents;
  R-APDUs come back whole (the CLF resolves T=0 ``61xx``/``6Cxx`` of a UICC, ISO/IEC 7816-3 clause
  10.3.3, since ISO/IEC 14443-4 carries no GET RESPONSE procedure). With NFC off or the phone off
  (unless ``battery_off_emulation``) no card answers in the field (:class:`~paylab.drivers.errors.NoCard`).
* **Modem** (:meth:`Handset.deliver_sms`): SMS-PP data download, the ENVELOPE (3GPP TS 31.111
  clause 7.1.1) passed to the UICC over the contact interface with T=0 GET RESPONSE; the R-APDU
  holds the PoR the OTA gateway verifies. The text inbox (:attr:`Handset.sms`) reads one-time
  codes over HTTP (:mod:`.sms_inbox`).
* **Admin agent** (:meth:`Handset.admin_session`, microSD/eSE): runs the card's GP Amendment B agent
  against the gateway's ``/ota/admin/{se_id}`` over HTTP until it answers 204 (:mod:`.admin_agent`).
* **UICC OS** (:meth:`Handset.card_os_bind_tar`): binds an SSD's TAR and SCP80 keys, as the
  backend's stand-in ``HandsetSim`` does.
* **Apps** (:meth:`Handset.open_channel`): an OMAPI-style logical channel to an applet over the
  contact interface (SIMalliance Open Mobile API ``openLogicalChannel``), so the wallet can work
  while a tap is in progress.

The handset takes the place of ``HandsetSim`` in the TSM services' ``handsets`` registry (same
duck-typed ``deliver_sms``, ``admin_session``, ``card_os_bind_tar``, ``se_id``, ``se``, ``msisdn``,
``agent``, ``http``, ``sms_delivered``, ``admin_sessions``).

The SE has one power state and one set of channels: every card access is serialised by one lock.
The contact side uses the SE as it is when it is powered (an OTA or a wallet command does not reset
a card in the field); it powers it on the contact interface when it is off. A tap cold-resets the
SE on the contactless interface (field activation); the route notices a reset made by someone else
in the middle of a tap and answers :class:`~paylab.drivers.errors.CardRemoved`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any, Literal, get_args

import httpx

from paylab.drivers.errors import CardProtocolError, CardRemoved, FieldLost, NoCard
from paylab.drivers.protocols.card import ApduCard, CardEmulatorProtocol, Interface
from paylab.drivers.se.errors import CardPoweredOff, PowerLost
from paylab.drivers.se.ota import AdminAgent, AdminTrigger, provision_key_set, provision_tar
from paylab.lab.protocol.apdu import CommandApdu, ResponseApdu, transmit_with_chaining
from paylab.lab.protocol.errors import ApduError
from paylab.lab.protocol.ota import OtaKeys, key_index

from .admin_agent import DEFAULT_SESSION_TIMEOUT_S, default_trigger, run_admin_session
from .errors import HandsetOff, NoSuchFunction, SeCommandFailed
from .http import DEFAULT_TIMEOUT_S, make_client
from .sms_inbox import Matching, OtpMessage, SmsInbox, SmsMessage

Placement = Literal["sim", "microsd", "ese"]
PLACEMENTS: tuple[str, ...] = get_args(Placement)

__all__ = ["PLACEMENTS", "Handset", "NfcRoute", "Placement", "SeChannel"]


class NfcRoute(ApduCard):
    """The phone's contactless route to its SE, as a card an emulator presents (module docstring)."""

    transport_name = "handset-nfc"

    def __init__(self, handset: Handset) -> None:
        self.handset = handset
        self._generation: int | None = None
        self.apdus = 0

    @property
    def name(self) -> str:
        return f"{self.handset.name}/nfc"

    @property
    def atr(self) -> bytes:
        """The SE's ATR (an emulator takes the ATS historical bytes from it)."""
        return bytes(self.handset.se.atr)

    def power_on(self, interface: Interface = "contactless") -> bytes:
        """Field activation: cold reset of the SE on its contactless interface; returns the ATR."""
        if interface != "contactless":
            raise CardProtocolError("the NFC route is contactless only", resource=self.name, detail=interface)
        handset = self.handset
        if not handset.nfc_available:
            raise NoCard(f"no card answers in the field ({handset.nfc_state})", resource=self.name)
        with handset.card_lock:
            atr = handset._power_on("contactless")
            self._generation = handset._generation
        return atr

    def transmit(self, raw: bytes, *, interface: Interface | None = None) -> bytes:
        """One C-APDU from the reader; the whole R-APDU (data + SW1 SW2)."""
        handset = self.handset
        if not handset.nfc_available:
            raise FieldLost(f"the card left the field ({handset.nfc_state})", resource=self.name)
        with handset.card_lock:
            se = handset.se
            if (self._generation is None or self._generation != handset._generation or not se.powered
                    or se.interface != "contactless"):  # powered again, by the handset or behind its back
                raise CardRemoved("the SE was reset or powered off during the tap", resource=self.name)
            self.apdus += 1

            def send(c: bytes) -> bytes:
                return se.transmit(c, interface="contactless")

            try:
                try:
                    cmd = CommandApdu.decode(bytes(raw))
                except ApduError:
                    return send(bytes(raw))  # the card answers a malformed command itself (6700)
                return transmit_with_chaining(send, cmd).encode()
            except (PowerLost, CardPoweredOff) as exc:
                self._generation = None
                raise CardRemoved(f"the SE lost power: {exc}", resource=self.name) from exc
            except ApduError as exc:
                raise CardProtocolError(f"bad T=0 procedure from the SE: {exc}", resource=self.name,
                                        detail=bytes(raw[:4]).hex().upper()) from exc

    def power_off(self) -> None:
        """The field is gone: the SE loses its contactless power (a contact user keeps it powered)."""
        handset = self.handset
        with handset.card_lock:
            if self._generation is not None and self._generation == handset._generation:
                handset._contactless_off()
            self._generation = None


class SeChannel:
    """A logical channel to one applet over the contact interface (OMAPI ``Channel``).

    :meth:`transmit` sends a C-APDU on the channel (the class byte's channel bits are set here) and
    returns the whole R-APDU, T=0 ``61xx``/``6Cxx`` resolved. Close it (or use ``with``)."""

    def __init__(self, handset: Handset, number: int, aid: bytes, select_response: ResponseApdu) -> None:
        self.handset = handset
        self.number = number
        self.aid = aid
        self.select_response = select_response
        self.closed = False

    def transmit(self, command: bytes | CommandApdu) -> ResponseApdu:
        if self.closed:
            raise SeCommandFailed("channel is closed", resource=self.handset.name, detail=f"channel {self.number}")
        cmd = command if isinstance(command, CommandApdu) else CommandApdu.decode(bytes(command))
        return self.handset._contact_command(cmd.with_channel(self.number))

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.number:
            with contextlib.suppress(SeCommandFailed, HandsetOff):  # a reset closed it already
                self.handset._contact_command(CommandApdu(0x00, 0x70, 0x80, self.number))

    def __enter__(self) -> SeChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Handset:
    """A phone around one SE (module docstring).

    ``backend_http_url`` (``http://host:port``) or ``http_client`` (an httpx client with a base URL,
    e.g. FastAPI's TestClient) is how the phone reaches the backend (SMS inbox, admin server). A
    client the handset makes itself is closed by :meth:`close`. ``agent`` defaults to a new
    :class:`~paylab.drivers.se.ota.AdminAgent` on the ISD for microSD/eSE (none for a SIM)."""

    def __init__(self, se: Any, *, se_id: str, msisdn: str | None = None, placement: Placement | None = None,
                 backend_http_url: str | None = None, http_client: httpx.Client | None = None,
                 name: str | None = None, agent: AdminAgent | None = None, isd_aid: bytes | None = None,
                 http_timeout: float = DEFAULT_TIMEOUT_S, admin_timeout: float = DEFAULT_SESSION_TIMEOUT_S,
                 battery_off_emulation: bool = False) -> None:
        form_factor = getattr(getattr(se, "form_factor", None), "name", None)
        placement = placement or form_factor
        if placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {', '.join(PLACEMENTS)}, not {placement!r}")
        if form_factor is not None and form_factor != placement:
            raise ValueError(f"a {form_factor} SE cannot be placed as {placement}")
        self.se = se
        self.se_id = se_id
        self.msisdn = msisdn
        self.placement: Placement = placement
        self.name = name or f"handset-{se_id}"
        self.http_timeout = http_timeout
        self.admin_timeout = admin_timeout
        self.battery_off_emulation = battery_off_emulation
        self.card_lock = threading.RLock()
        self._generation = 0
        self._owned_http: httpx.Client | None = None
        self._http = http_client
        self._network_http: httpx.Client | None = None
        if self._http is None and backend_http_url is not None:
            self._http = self._owned_http = make_client(backend_http_url, http_timeout)
        if agent is None and placement != "sim":
            agent = AdminAgent(se, isd_aid or se.registry.isd().aid, agent_id=f"//se-id/{se_id}")
        self.agent = agent
        self.phone_on = True
        self.nfc_enabled = True
        self.sms_delivered = 0
        self.admin_sessions = 0
        self._nfc = NfcRoute(self)
        self._inbox: SmsInbox | None = None

    @classmethod
    def replacing(cls, stand_in: Any, **kwargs: Any) -> Handset:
        """A handset for the SE of a backend ``HandsetSim`` (``se``, ``se_id``, ``msisdn``, ``agent``
        taken from it; keyword arguments as the constructor's)."""
        kwargs.setdefault("msisdn", stand_in.msisdn)
        kwargs.setdefault("agent", stand_in.agent)
        return cls(stand_in.se, se_id=stand_in.se_id, **kwargs)

    # -- the network ---------------------------------------------------------------------------------
    @property
    def http(self) -> httpx.Client | None:
        """The client the phone reaches the backend with (its own, else the one the network gave)."""
        return self._http or self._network_http

    @http.setter
    def http(self, client: httpx.Client | None) -> None:
        # TsmNetwork.connect() hands every handset its client; a handset with its own keeps using it
        self._network_http = client

    def _need_http(self, what: str) -> httpx.Client:
        client = self.http
        if client is None:
            raise NoSuchFunction(f"no network for {what}: give backend_http_url or http_client", resource=self.name)
        return client

    def attach(self, registry: MutableMapping[str, Any]) -> Any:
        """Put the handset on the (simulated) network: ``registry[se_id] = self``, e.g. the backend TSM
        services' ``handsets``; returns what it replaces (the stand-in ``HandsetSim``), or None."""
        previous = registry.get(self.se_id)
        registry[self.se_id] = self
        return previous

    def close(self) -> None:
        """Close the HTTP client the handset made (idempotent)."""
        if self._owned_http is not None:
            self._owned_http.close()
            self._owned_http = None
            self._http = None
            self._inbox = None

    def __enter__(self) -> Handset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- power and NFC settings ----------------------------------------------------------------------
    @property
    def nfc_available(self) -> bool:
        """Whether the SE answers in a field now (NFC on, and the phone on or battery-off emulation)."""
        return self.nfc_enabled and (self.phone_on or self.battery_off_emulation)

    @property
    def nfc_state(self) -> str:
        if not self.nfc_enabled:
            return "NFC off"
        return "phone on" if self.phone_on else "phone off"

    def set_nfc(self, enabled: bool) -> None:
        """Switch NFC on or off (off: the SE leaves any field it is in)."""
        self.nfc_enabled = enabled
        if not enabled:
            self._nfc.power_off()

    def set_phone_power(self, on: bool) -> None:
        """Switch the phone on or off. Off: no SMS, no admin session, no wallet; NFC only with
        ``battery_off_emulation``; the modem stops powering the SE."""
        self.phone_on = on
        if not on:
            with self.card_lock:
                if not (self.battery_off_emulation and self.nfc_enabled and self._nfc._generation is not None):
                    self._nfc._generation = None
                    self.se.power_off()

    def _check_on(self, what: str) -> None:
        if not self.phone_on:
            raise HandsetOff(f"the phone is off: no {what}", resource=self.name)

    # -- card access (under card_lock) ---------------------------------------------------------------
    def _power_on(self, interface: Interface) -> bytes:
        atr = self.se.power_on(interface)
        self._generation += 1
        return atr

    def _contactless_off(self) -> None:
        if not self.phone_on:  # with the phone on, the modem keeps powering the SE (contact users go on)
            self.se.power_off()

    def _contact_ready(self) -> None:
        if not self.se.powered:
            self._power_on("contact")

    def _contact_command(self, cmd: CommandApdu) -> ResponseApdu:
        self._check_on("card access")
        with self.card_lock:
            self._contact_ready()
            try:
                return transmit_with_chaining(lambda c: self.se.transmit(c, interface="contact"), cmd)
            except (PowerLost, CardPoweredOff) as exc:
                raise SeCommandFailed(f"the SE lost power: {exc}", resource=self.name,
                                      detail=cmd.encode()[:4].hex().upper()) from exc
            except ApduError as exc:
                raise SeCommandFailed(f"bad T=0 procedure from the SE: {exc}", resource=self.name,
                                      detail=cmd.encode()[:4].hex().upper()) from exc

    def transmit_contact(self, raw: bytes) -> bytes:
        """One C-APDU over the contact interface (basic or the channel its CLA names); the whole R-APDU."""
        return self._contact_command(CommandApdu.decode(bytes(raw))).encode()

    def open_channel(self, aid: bytes, *, basic: bool = False) -> SeChannel:
        """An OMAPI-style channel with ``aid`` selected (MANAGE CHANNEL open, then SELECT; ``basic``:
        channel 0). :class:`SeCommandFailed` when no channel is free or the applet is not selectable."""
        number = 0
        if not basic:
            opened = self._contact_command(CommandApdu(0x00, 0x70, 0x00, 0x00, le=1))
            if opened.sw != 0x9000 or len(opened.data) != 1:
                raise SeCommandFailed("MANAGE CHANNEL open refused", resource=self.name, detail="0070000001",
                                      sw=opened.sw)
            number = opened.data[0]
        channel = SeChannel(self, number, bytes(aid), ResponseApdu(b"", 0x90, 0x00))
        selected = channel.transmit(CommandApdu(0x00, 0xA4, 0x04, 0x00, bytes(aid), 256))
        if selected.sw != 0x9000:
            channel.close()
            raise SeCommandFailed(f"SELECT {bytes(aid).hex().upper()} refused", resource=self.name,
                                  detail="00A40400", sw=selected.sw)
        channel.select_response = selected
        return channel

    # -- NFC -------------------------------------------------------------------------------------------
    def as_card(self) -> NfcRoute:
        """The NFC route as an :class:`~paylab.drivers.protocols.card.ApduCard` (one per handset)."""
        return self._nfc

    def tap(self, emulator: CardEmulatorProtocol) -> None:
        """Bring the phone to ``emulator``'s antenna (it serves the SE until :meth:`lift`)."""
        if not self.nfc_available:
            raise NoCard(f"the phone cannot be tapped ({self.nfc_state})", resource=self.name)
        emulator.present(self._nfc)

    def lift(self, emulator: CardEmulatorProtocol) -> None:
        """Take the phone away from ``emulator``'s antenna (idempotent)."""
        emulator.withdraw()
        self._nfc.power_off()

    @contextmanager
    def tapped(self, emulator: CardEmulatorProtocol) -> Iterator[NfcRoute]:
        """``with handset.tapped(antenna): ...``: tap, then lift whatever happens."""
        self.tap(emulator)
        try:
            yield self._nfc
        finally:
            self.lift(emulator)

    # -- modem: SMS-PP data download -------------------------------------------------------------------
    def deliver_sms(self, envelope: bytes) -> bytes:
        """Pass an SMS-PP download ENVELOPE to the UICC (3GPP TS 31.111 clause 7.1.1) over the contact
        interface, with T=0 GET RESPONSE; returns the R-APDU (PoR data + SW), as the gateway expects."""
        self._check_on("SMS")
        if self.placement != "sim":
            raise NoSuchFunction(f"SMS-PP data download needs a UICC, this SE is a {self.placement}",
                                 resource=self.name)
        self.sms_delivered += 1
        return self.transmit_contact(envelope)

    # -- admin agent -------------------------------------------------------------------------------
    def admin_session(self, trigger: AdminTrigger | None = None) -> list[str]:
        """A push woke the agent: one GP Amendment B session against the gateway over HTTP until 204;
        the script statuses the agent reported."""
        self._check_on("remote administration")
        if self.agent is None:
            raise NoSuchFunction(f"no remote administration agent on this {self.placement}", resource=self.name)
        http = self._need_http("remote administration")
        self.admin_sessions += 1
        return run_admin_session(self.agent, http, trigger or default_trigger(self.se_id),
                                 resource=f"{self.name}/admin-agent", card_lock=self.card_lock,
                                 prepare_card=self._contact_ready, timeout=self.admin_timeout)

    # -- UICC OS -------------------------------------------------------------------------------------
    def card_os_bind_tar(self, tar: bytes, sd_aid: bytes, keys: OtaKeys) -> None:
        """Bind ``tar`` to ``sd_aid`` with the SCP80 key set ``keys`` (what the UICC OS does when the ISD
        installs an SSD with a TAR, ETSI TS 102 226; the emulated UICC keeps its TAR table and OTA
        keys outside any APDU, so they are written directly, as the backend's stand-in does)."""
        with self.card_lock:
            provision_tar(self.se, tar, sd_aid)
            provision_key_set(self.se, sd_aid, key_index(keys.kic), kic_key=keys.kic_key)
            provision_key_set(self.se, sd_aid, key_index(keys.kid), kid_key=keys.kid_key)

    # -- text SMS ------------------------------------------------------------------------------------
    @property
    def sms(self) -> SmsInbox:
        """The text inbox of :attr:`msisdn`, polled over HTTP."""
        if self._inbox is None:
            if self.msisdn is None:
                raise NoSuchFunction("the phone has no number (msisdn)", resource=self.name)
            self._inbox = SmsInbox(self._need_http("SMS"), self.msisdn, receiving=lambda: self.phone_on,
                                   name=f"{self.name}/sms")
        return self._inbox

    def wait_for_sms(self, matching: Matching = None, timeout: float = 5.0, *, kind: str | None = None,
                     after_id: int | None = None) -> SmsMessage:
        """The newest text SMS matching (regex, predicate or None); :class:`~.errors.SmsNotReceived`."""
        return self.sms.wait_for(matching, timeout, kind=kind, after_id=after_id)

    def latest_otp(self, order_id: str | None = None, timeout: float = 5.0, *, after_id: int | None = None
                   ) -> OtpMessage:
        """The newest one-time code (for merchant order ``order_id`` when given)."""
        return self.sms.latest_otp(order_id, timeout, after_id=after_id)

    # -- identity ------------------------------------------------------------------------------------
    @property
    def rp_se_id(self) -> bytes:
        """The SE id the remote payment system knows (hex bytes): ``se_id`` itself when it is hex,
        else its ASCII bytes (``se-0001`` -> ``73652D30303031``)."""
        text = self.se_id
        try:
            if len(text) % 2 == 0 and len(text) >= 8:
                return bytes.fromhex(text)
        except ValueError:
            pass
        return text.encode("ascii")

    def __repr__(self) -> str:
        return f"Handset({self.name!r}, se_id={self.se_id!r}, placement={self.placement!r})"

