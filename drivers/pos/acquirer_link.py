"""The POS terminal's link to its acquirer: the UnionPay POS dialect of ISO 8583 over TCP.

Sign-on (0800), purchase/load/balance inquiry (0200), reversal (0400), settlement (0500); domain brief
section 5. Synchronous and socket-based on purpose (the POS simulator, tests, command-line use): one
request at a time on one TCP connection, framed with the 2-byte length of ``cup-pos``. After
:meth:`TerminalClient.sign_on` every request carries field 64 under the session MAK and every
response's MAC is checked (:class:`~paylab.lab.protocol.errors.MacError` otherwise; a response
without field 64 is accepted only for the codes the acquirer cannot MAC: A0, 97 and 30,
:data:`~paylab.lab.protocol.iso8583.terminal.UNMACED_RESPONSE_CODES`).

The client keeps the batch's approved purchases so that :meth:`TerminalClient.settle` can send the
totals the acquirer reconciles against (field 48,
:func:`~paylab.lab.protocol.iso8583.terminal.encode_batch_totals`).
Keys are TEST keys; nothing here logs them, the PAN or track data.

Moved here from ``paylab.lab.backend.terminal_client`` (a driver must not import the backend); that
module re-exports :class:`TerminalClient`. :data:`AcquirerLink` is the same class.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from paylab.lab.protocol.errors import Iso8583Error
from paylab.lab.protocol.iso8583 import (
    Iso8583Message,
    StreamDeframer,
    decode_message,
    encode_message,
    frame,
    purchase_request,
    reversal_request,
    sign_on_request,
)
from paylab.lab.protocol.iso8583.terminal import (
    BALANCE_INQUIRY_CODE,
    UNMACED_RESPONSE_CODES,
    BatchTotals,
    decode_working_keys,
    settlement_request,
    verify_mac,
)

RECV_SIZE = 65536


@dataclass
class _BatchRecord:
    amount: int
    approved: bool = False
    reversed: bool = False


@dataclass
class TerminalClient:
    """A terminal ``tid`` of merchant ``mid`` with its TMK (TEST key), talking to the acquirer."""

    host: str
    port: int
    tid: str
    mid: str
    tmk: bytes = field(repr=False)
    timeout: float = 10.0
    key_scheme: str = "003"
    stan: int = 0
    batch: int = 1
    pik: bytes | None = field(default=None, repr=False)
    mak: bytes | None = field(default=None, repr=False)
    _sock: socket.socket | None = field(default=None, repr=False)
    _deframer: StreamDeframer = field(default_factory=lambda: StreamDeframer("cup-pos"), repr=False)
    _requests: dict[str, Iso8583Message] = field(default_factory=dict, repr=False)
    _records: dict[str, _BatchRecord] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.tmk, str):
            self.tmk = bytes.fromhex(self.tmk)

    # -- connection ------------------------------------------------------------------------------------
    def connect(self) -> TerminalClient:
        """Open the TCP connection (done by the first request otherwise)."""
        if self._sock is None:
            self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._deframer = StreamDeframer("cup-pos")
        return self

    def close(self) -> None:
        """Close the connection."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> TerminalClient:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def exchange_raw(self, body: bytes, *, timeout: float | None = None) -> bytes:
        """Send one message body (no length prefix) and return the next message received."""
        self.connect()
        assert self._sock is not None
        self._sock.settimeout(self.timeout if timeout is None else timeout)
        self._sock.sendall(frame(body, "cup-pos"))
        return self.receive_raw()

    def receive_raw(self) -> bytes:
        """The next message from the acquirer (blocks up to the timeout: ``TimeoutError``)."""
        assert self._sock is not None
        while True:
            data = self._sock.recv(RECV_SIZE)
            if not data:
                self.close()
                raise ConnectionError("the acquirer closed the connection")
            messages = self._deframer.feed(data)
            if messages:
                if len(messages) > 1:
                    raise Iso8583Error(f"{len(messages)} messages where one answer was expected")
                return messages[0]

    def exchange(self, msg: Iso8583Message, *, mac: bool = True, timeout: float | None = None) -> Iso8583Message:
        """Encode (with field 64 when signed on and ``mac``), send, decode and check the response."""
        key = self.mak if mac else None
        raw = self.exchange_raw(encode_message(msg, "cup-pos", mak=key), timeout=timeout)
        response = decode_message(raw, "cup-pos")
        if key is not None and (64 in response.fields or response.response_code not in UNMACED_RESPONSE_CODES):
            verify_mac(raw, response, "cup-pos", key)
        return response

    # -- transactions ----------------------------------------------------------------------------------
    def next_stan(self) -> int:
        """Advance and return the STAN (1..999999, wrapping)."""
        self.stan = self.stan % 999_999 + 1
        return self.stan

    def sign_on(self) -> Iso8583Message:
        """0800 sign-on: on 00 the PIK/MAK of field 62 are decrypted under the TMK and KCV-checked."""
        request = sign_on_request(stan=self.next_stan(), terminal_id=self.tid, merchant_id=self.mid,
                                  batch=self.batch, key_scheme=self.key_scheme)
        response = self.exchange(request, mac=False)
        if response.response_code == "00":
            keys = response.fields.get(62)
            if not isinstance(keys, bytes):
                raise Iso8583Error("sign-on response without field 62", field="field 62")
            self.pik, self.mak = decode_working_keys(self.tmk, keys)
            field60 = response.fields.get(60)
            if isinstance(field60, str) and len(field60) >= 8:
                self.batch = int(field60[2:8])
        return response

    def purchase(
        self,
        pan: str,
        amount: int,
        *,
        field55: bytes | None = None,
        track2: str | None = None,
        expiry: str | None = None,
        psn: str | None = None,
        pin_block: bytes | None = None,
        processing_code: str = "000000",
        stan: int | None = None,
        timeout: float | None = None,
    ) -> Iso8583Message:
        """0200 purchase (or another 0200 by ``processing_code``, e.g. 600000 e-cash load).

        ``amount`` in fen. Returns the 0210; an approved purchase counts in the batch totals.
        """
        request = self.financial_request(pan, amount, field55=field55, track2=track2, expiry=expiry, psn=psn,
                                  pin_block=pin_block, processing_code=processing_code, stan=stan)
        stan_text = request.fields[11]
        assert isinstance(stan_text, str)
        self._requests[stan_text] = request
        record = _BatchRecord(amount) if processing_code[:2] == "00" else None
        response = self.exchange(request, timeout=timeout)
        if record is not None and response.response_code == "00":
            record.approved = True
            self._records[stan_text] = record
        return response

    def load(self, pan: str, amount: int, *, field55: bytes, psn: str | None = None, expiry: str | None = None,
             kind: str = "60") -> Iso8583Message:
        """E-cash load (圈存): a 0200 with processing code ``kind``0000 (60 designated account)."""
        return self.purchase(pan, amount, field55=field55, psn=psn, expiry=expiry, processing_code=f"{kind}0000")

    def balance_inquiry(self, pan: str, *, field55: bytes | None = None, psn: str | None = None,
                        expiry: str | None = None, track2: str | None = None) -> Iso8583Message:
        """0200 balance inquiry (processing code 31); the balance comes back in field 54."""
        return self.purchase(pan, 0, field55=field55, psn=psn, expiry=expiry, track2=track2,
                             processing_code=BALANCE_INQUIRY_CODE)

    def financial_request(self, pan: str, amount: int, *, processing_code: str = "000000", stan: int | None = None,
                          **kw: object) -> Iso8583Message:
        """The 0200 :meth:`purchase` would send (next STAN unless ``stan``), without sending it."""
        request = purchase_request(pan=pan, amount=amount, stan=self.next_stan() if stan is None else stan,
                                   terminal_id=self.tid, merchant_id=self.mid, batch=self.batch,
                                   **kw)  # type: ignore[arg-type]
        request.fields[3] = processing_code
        return request

    def reverse(self, original: Iso8583Message, *, timeout: float | None = None) -> Iso8583Message:
        """0400 reversal (reason 98, no response) of a request sent earlier (or of its response)."""
        stan = original.fields.get(11)
        request = self._requests.get(stan) if isinstance(stan, str) else None
        if request is None:
            request = original if original.mti in ("0200", "0100") else None
        if request is None:
            raise ValueError(f"no request with STAN {stan!r} was sent by this terminal")
        response = self.exchange(reversal_request(request, reason="98"), timeout=timeout)
        record = self._records.get(str(stan))
        if record is not None and response.response_code in ("00", "25"):
            record.reversed = True
        return response

    def batch_totals(self) -> BatchTotals:
        """What this terminal believes the batch holds: approved, unreversed purchases."""
        live = [r for r in self._records.values() if r.approved and not r.reversed]
        return BatchTotals(debit_count=len(live), debit_amount=sum(r.amount for r in live))

    def settle(self, totals: BatchTotals | None = None) -> Iso8583Message:
        """0500 settlement with the batch totals in field 48; on 00 a new batch starts."""
        totals = self.batch_totals() if totals is None else totals
        request = settlement_request(stan=self.next_stan(), terminal_id=self.tid, merchant_id=self.mid,
                                     batch=self.batch, totals=totals)
        response = self.exchange(request)
        if response.response_code == "00":
            self.batch = self.batch % 999_999 + 1
            self._records.clear()
            self._requests.clear()
        return response

    def send_malformed(self, body: bytes) -> bytes:
        """Send raw bytes as one framed message and return the raw answer (format-error tests)."""
        return self.exchange_raw(body)


AcquirerLink = TerminalClient
"""The driver-side name of :class:`TerminalClient` (same class)."""

__all__ = ["AcquirerLink", "TerminalClient"]
