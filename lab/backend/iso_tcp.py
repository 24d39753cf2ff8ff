"""asyncio TCP plumbing for ISO 8583: a message server and a multiplexing client, both dialects.

Framing is the protocol core's (:func:`~paylab.lab.protocol.iso8583.frame` and
:class:`~paylab.lab.protocol.iso8583.StreamDeframer`): a 2-byte binary length (``cup-pos``) or 4
ASCII digits (``switch``). This module moves whole messages; it never parses fields itself except
to match responses to requests in the client.

Server (:class:`IsoServer`)
    One listener, one :class:`asyncio.Protocol` per connection. Every complete message is handed to
    the handler ``async (raw: bytes) -> bytes | None`` (the message without its length prefix); the
    returned bytes are framed and written back, ``None`` sends nothing. The handler owns the ISO
    semantics: a malformed message must come back as the handler's error response (response code
    30) and the connection stays open. Only broken *framing* (a length prefix that is not a number
    or is absurd, :class:`~paylab.lab.protocol.errors.Iso8583Error` from the deframer) closes the
    connection, because the stream can no longer be split into messages. A handler that raises is a
    bug: it is logged and the message gets no answer, the connection stays open.

    ``sequential=True`` (terminal links) handles a connection's messages one after another, in
    order; ``sequential=False`` (switch links, multiplexed) runs them concurrently, at most
    ``max_in_flight`` per connection (reading pauses beyond that), and answers in completion order.

Client (:class:`IsoClient`)
    One TCP connection, opened lazily and reopened after a loss, carrying many requests at once.
    A response is matched to its request by ``(response MTI, STAN field 11, TID field 41)`` (the
    response MTI is the request's + 10, so a late 0210 never answers a 0400 with the same STAN). A
    request whose key is already waiting is not sent again: it waits for the same response.
    :meth:`IsoClient.request` raises :class:`IsoTimeout` when no response arrives in time (the late
    response is then dropped), :class:`IsoLinkError` when the connection cannot be opened or is
    lost while waiting. Responses that do not decode, or match nothing, are logged and dropped.

Shared by the three hosts (:mod:`.issuer`, :mod:`.switch`, :mod:`.acquirer`): the format-error answer
(:func:`format_error_reply`), the request digest that tells a retransmission from a different message
(:func:`request_digest`), field-7 and business-day time helpers, :class:`StoreAndForward` for 0420
reversal advices, :class:`HostDb` (hot-path transactions) and :class:`SeenKeys` (which STANs are
already logged, so a new request needs no duplicate lookup).

Logs never show cardholder data: MTI, STAN and TID only.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, cast

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from ..protocol.errors import Iso8583Error
from ..protocol.iso8583 import (
    CupsHeader,
    Dialect,
    Iso8583Message,
    StreamDeframer,
    decode_message,
    encode_message,
    frame,
)
from ..protocol.iso8583.terminal import verify_mac as verify_mac  # moved to the protocol core; re-exported
from .db import SQLITE_BEGIN_OPTION, is_sqlite

T = TypeVar("T")

log = logging.getLogger("paylab.backend.iso_tcp")

Handler = Callable[[bytes], Awaitable[bytes | None]]
"""A message handler: the raw message (envelope included, length prefix excluded) -> the raw answer."""

MatchKey = tuple[str, str, str]

READ_SIZE = 65536
DEFAULT_MAX_IN_FLIGHT = 256


class IsoLinkError(ConnectionError):
    """The TCP link to the peer could not be opened, or was lost before the response arrived."""


class IsoTimeout(TimeoutError):
    """No response within the timeout; ``key`` is the (response MTI, STAN, TID) that was awaited."""

    def __init__(self, message: str, *, key: MatchKey) -> None:
        super().__init__(message)
        self.key = key


def response_mti(mti: str) -> str:
    """The MTI of the answer to ``mti``: the function digit + 1 (0200 -> 0210, 0420 -> 0430)."""
    return mti[:2] + str((int(mti[2]) + 1) % 10) + mti[3]


def match_key(msg: Iso8583Message, *, response: bool = False) -> MatchKey:
    """``(response MTI, STAN, TID)`` of a request (or, with ``response=True``, of a response)."""
    mti = msg.mti if response else response_mti(msg.mti)
    stan = msg.fields.get(11, "")
    tid = msg.fields.get(41, "")
    return mti, stan if isinstance(stan, str) else "", tid.strip() if isinstance(tid, str) else ""


# -- server --------------------------------------------------------------------------------------------


class _ServerConnection(asyncio.Protocol):
    def __init__(self, server: IsoServer) -> None:
        self.server = server
        self.deframer = StreamDeframer(server.dialect, max_length=server.max_length)
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.tasks: set[asyncio.Task[None]] = set()
        self.queue: deque[bytes] = deque()
        self.worker: asyncio.Task[None] | None = None
        self.paused = False
        self.closed = False

    # asyncio.Protocol ---------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.server._connections.add(self)
        log.debug("%s: connection from %s", self.server.name, self.peer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server._connections.discard(self)
        log.debug("%s: connection from %s closed", self.server.name, self.peer)

    def data_received(self, data: bytes) -> None:
        try:
            messages = self.deframer.feed(data)
        except Iso8583Error as exc:
            log.warning("%s: broken framing from %s (%s); closing the connection", self.server.name, self.peer, exc)
            self.close()
            return
        for raw in messages:
            if self.server.sequential:
                self.queue.append(raw)
                if self.worker is None or self.worker.done():
                    self.worker = self._spawn(self._drain_queue())
            else:
                self._spawn(self._handle(raw))
        self._flow_control()

    # handling --------------------------------------------------------------------------------------------
    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self._flow_control()

    def _flow_control(self) -> None:
        if self.transport is None or self.closed:
            return
        busy = (len(self.queue) if self.server.sequential else len(self.tasks)) >= self.server.max_in_flight
        if busy and not self.paused:
            self.transport.pause_reading()
            self.paused = True
        elif not busy and self.paused:
            self.transport.resume_reading()
            self.paused = False

    async def _drain_queue(self) -> None:
        while self.queue and not self.closed:
            await self._handle(self.queue.popleft())
            self._flow_control()

    async def _handle(self, raw: bytes) -> None:
        try:
            answer = await self.server.handler(raw)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: handler failed on a message from %s (no answer sent)", self.server.name, self.peer)
            return
        if answer is not None and not self.closed and self.transport is not None:
            self.transport.write(frame(answer, self.server.dialect))

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class IsoServer:
    """An ISO 8583 listener: framing, a handler per message, answers written back (module docstring)."""

    def __init__(
        self,
        name: str,
        dialect: Dialect,
        handler: Handler,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        sequential: bool = False,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        max_length: int = 8192,
    ) -> None:
        self.name = name
        self.dialect: Dialect = dialect
        self.handler = handler
        self.host = host
        self.port = port
        self.sequential = sequential
        self.max_in_flight = max_in_flight
        self.max_length = max_length
        self._server: asyncio.Server | None = None
        self._connections: set[_ServerConnection] = set()

    async def start(self) -> tuple[str, int]:
        """Listen (port 0 = any free port); returns the bound ``(host, port)``."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _ServerConnection(self), self.host, self.port,
                                                reuse_address=True)
        log.info("%s: listening on %s:%d (%s)", self.name, *self.address, self.dialect)
        return self.address

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)``; :class:`RuntimeError` before :meth:`start`."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError(f"{self.name} is not listening")
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    @property
    def connection_count(self) -> int:
        """Open client connections."""
        return len(self._connections)

    async def stop(self) -> None:
        """Stop listening, close every connection and cancel the handlers still running."""
        if self._server is not None:
            self._server.close()
        tasks = []
        for conn in list(self._connections):
            conn.close()
            tasks.extend(conn.tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None


# -- client -------------------------------------------------------------------------------------------


@dataclass
class Exchange:
    """A response as :meth:`IsoClient.request_raw` returns it: decoded message and the raw bytes."""

    message: Iso8583Message
    raw: bytes


class _ClientConnection(asyncio.Protocol):
    def __init__(self, client: IsoClient) -> None:
        self.client = client
        self.deframer = StreamDeframer(client.dialect)
        self.transport: asyncio.Transport | None = None
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        self.client._connection_lost(self, exc)

    def data_received(self, data: bytes) -> None:
        try:
            messages = self.deframer.feed(data)
        except Iso8583Error as exc:
            log.warning("%s: broken framing from the peer (%s); closing", self.client.name, exc)
            if self.transport is not None:
                self.transport.close()
            return
        for raw in messages:
            self.client._response_received(raw)


class IsoClient:
    """A multiplexing ISO 8583 client over one TCP connection (module docstring).

    ``timeout`` is the default per-request timeout in seconds; ``connect_timeout`` bounds opening
    the connection.
    """

    def __init__(
        self,
        host: str,
        port: int,
        dialect: Dialect,
        *,
        timeout: float = 10.0,
        connect_timeout: float = 3.0,
        name: str = "iso-client",
    ) -> None:
        self.host = host
        self.port = port
        self.dialect: Dialect = dialect
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.name = name
        self._conn: _ClientConnection | None = None
        self._connect_lock: asyncio.Lock | None = None
        self._pending: dict[MatchKey, asyncio.Future[Exchange]] = {}

    @property
    def connected(self) -> bool:
        """True while the connection is open."""
        return self._conn is not None and self._conn.transport is not None and not self._conn.transport.is_closing()

    async def connect(self) -> None:
        """Open the connection now (it is otherwise opened by the first request)."""
        if self.connected:
            return
        if self._connect_lock is None:
            self._connect_lock = asyncio.Lock()
        async with self._connect_lock:
            if self.connected:
                return
            loop = asyncio.get_running_loop()
            try:
                _, conn = await asyncio.wait_for(
                    loop.create_connection(lambda: _ClientConnection(self), self.host, self.port),
                    self.connect_timeout,
                )
            except (OSError, TimeoutError) as exc:
                raise IsoLinkError(f"{self.name}: cannot connect to {self.host}:{self.port}: {exc}") from exc
            self._conn = conn

    async def _open(self) -> _ClientConnection:
        await self.connect()
        conn = self._conn
        if conn is None or conn.transport is None:
            raise IsoLinkError(f"{self.name}: connection to {self.host}:{self.port} lost")
        return conn

    async def request(
        self, msg: Iso8583Message, *, timeout: float | None = None, mak: bytes | None = None
    ) -> Iso8583Message:
        """Send ``msg`` and return its response (decoded; MAC checked when ``mak`` is given)."""
        return (await self.request_raw(msg, timeout=timeout, mak=mak)).message

    async def request_raw(
        self, msg: Iso8583Message, *, timeout: float | None = None, mak: bytes | None = None
    ) -> Exchange:
        """As :meth:`request`, returning the raw response bytes too."""
        raw = encode_message(msg, self.dialect, mak=mak)
        key = match_key(msg)
        exchange = await self.send_and_wait(raw, key, timeout=timeout)
        if mak is not None:
            verify_mac(exchange.raw, exchange.message, self.dialect, mak)
        return exchange

    async def send_and_wait(self, raw: bytes, key: MatchKey, *, timeout: float | None = None) -> Exchange:
        """Send an encoded message and wait for the response matching ``key``."""
        limit = self.timeout if timeout is None else timeout
        late = IsoTimeout(f"{self.name}: no {key[0]} for STAN {key[1]} TID {key[2]!r} in time", key=key)
        joined = self._pending.get(key)
        if joined is not None:  # the same key is already waiting: its response answers this one too
            try:
                return await asyncio.wait_for(asyncio.shield(joined), limit)
            except TimeoutError:
                raise late from None
        conn = await self._open()
        future: asyncio.Future[Exchange] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            conn.transport.write(frame(raw, self.dialect))  # type: ignore[union-attr]
            return await asyncio.wait_for(asyncio.shield(future), limit)
        except TimeoutError:
            raise late from None
        finally:
            if self._pending.get(key) is future:
                del self._pending[key]

    async def send(self, raw: bytes) -> None:
        """Send an encoded message without waiting for anything."""
        conn = await self._open()
        conn.transport.write(frame(raw, self.dialect))  # type: ignore[union-attr]

    async def close(self) -> None:
        """Close the connection; requests still waiting fail with :class:`IsoLinkError`."""
        conn, self._conn = self._conn, None
        if conn is not None and conn.transport is not None:
            conn.transport.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(conn.lost), 1.0)
        self._fail_pending(IsoLinkError(f"{self.name}: client closed"))

    # callbacks from the connection -------------------------------------------------------------------
    def _response_received(self, raw: bytes) -> None:
        try:
            msg = decode_message(raw, self.dialect)
        except Iso8583Error as exc:
            log.warning("%s: undecodable response dropped (%s)", self.name, exc)
            return
        key = match_key(msg, response=True)
        future = self._pending.pop(key, None)
        if future is None or future.done():
            log.info("%s: unmatched or late response %s STAN %s TID %r dropped", self.name, *key)
            return
        future.set_result(Exchange(msg, raw))

    def _connection_lost(self, conn: _ClientConnection, exc: Exception | None) -> None:
        if self._conn is conn:
            self._conn = None
            self._fail_pending(IsoLinkError(f"{self.name}: connection to {self.host}:{self.port} lost: {exc}"))

    def _fail_pending(self, error: Exception) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)


# -- helpers shared by the hosts ---------------------------------------------------------------------------


def format_error_reply(raw: bytes, dialect: Dialect) -> bytes:
    """The answer to a message that does not decode: response code 30 (format error).

    The MTI is the request's + 10 when its MTI bytes are readable (else ``0810``); the TPDU's
    addresses are swapped (``cup-pos``) or the CUPS header is reused when it is intact (``switch``).
    Nothing else can be trusted, so nothing else is echoed, and there is no MAC (the sender cannot
    be identified reliably).
    """
    mti = "0800"
    tpdu: bytes | None = None
    header: bytes | None = None
    if dialect == "cup-pos":
        if len(raw) >= 13:
            text = raw[11:13].hex()
            if text.isdigit():
                mti = text
            tpdu = raw[0:1] + raw[3:5] + raw[1:3]
            header = raw[5:11]
    else:
        if len(raw) >= 50:
            with contextlib.suppress(UnicodeDecodeError):
                text = raw[46:50].decode("ascii")
                if text.isdigit():
                    mti = text
            with contextlib.suppress(Iso8583Error):
                CupsHeader.decode(raw[:46])
                header = raw[:46]
    reply = Iso8583Message(response_mti(mti), {39: "30"}, tpdu=tpdu, header=header)
    return encode_message(reply, dialect)


def request_digest(msg: Iso8583Message, *, skip: tuple[int, ...] = (7, 64, 128)) -> str:
    """SHA-256 over a message's MTI and fields (not its envelope, transmission time or MAC).

    Two messages with the same digest are the same request (an identical retransmission); the same
    key (TID, STAN, batch) with another digest is a different message (response 94).
    """
    parts = [msg.mti]
    for number in sorted(msg.fields):
        if number in skip:
            continue
        value = msg.fields[number]
        parts.append(f"{number}={value.hex() if isinstance(value, bytes) else 's' + value}")
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def local_time(ts: float) -> datetime:
    """A context-clock timestamp (Unix seconds) as the hosts' local wall-clock time."""
    return datetime.fromtimestamp(ts)


def transmission_time(ts: float) -> str:
    """Field 7, transmission date and time ``MMDDhhmmss`` (local time)."""
    return local_time(ts).strftime("%m%d%H%M%S")


def business_day(ts: float) -> int:
    """The business date ``YYYYMMDD`` (local time) as an int: the ``batch`` of switch and issuer logs."""
    return int(local_time(ts).strftime("%Y%m%d"))


def day_of_field7(field7: object, now: float) -> int:
    """``YYYYMMDD`` of a field 7 value (``MMDDhhmmss``), the year taken from ``now``.

    A month-day more than a month after today belongs to the previous year (a message sent just
    before New Year and processed just after). A missing or malformed field 7 gives today.
    """
    today = local_time(now)
    if not isinstance(field7, str) or len(field7) < 4 or not field7[:4].isdigit():
        return int(today.strftime("%Y%m%d"))
    month, day = int(field7[:2]), int(field7[2:4])
    year = today.year
    if (month, day) > (today.month + 1, today.day) or month > 12:
        year -= 1
    return year * 10000 + month * 100 + day


# -- store and forward ------------------------------------------------------------------------------------


@dataclass
class Advice:
    """A message delivered store-and-forward (a 0420 reversal advice) and where its delivery stands."""

    message: Iso8583Message
    attempts: int = 0
    acknowledged: bool = False
    response_code: str | None = None


class StoreAndForward:
    """Deliver advices (0420) over ``client`` until a response acknowledges each one.

    Each advice is sent, awaited for ``client.timeout`` and re-sent after a growing pause (0.2 s
    doubling, at most 5 s) until any response arrives or ``attempts`` sends failed; then it is given
    up (logged as an error, :attr:`Advice.acknowledged` stays False). ``on_ack(advice, response)`` runs
    when an advice is acknowledged. In memory only: advices pending when the process stops are lost
    (logged), the issuer's idempotent reversal handling makes a later manual re-send harmless.
    """

    def __init__(
        self,
        client: IsoClient,
        *,
        attempts: int = 5,
        on_ack: Callable[[Advice, Iso8583Message], None] | None = None,
    ) -> None:
        self.client = client
        self.attempts = attempts
        self.on_ack = on_ack
        self.advices: list[Advice] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, message: Iso8583Message) -> Advice:
        """Queue ``message``; delivery starts at once in the background."""
        advice = Advice(message)
        self.advices.append(advice)
        task = asyncio.ensure_future(self._deliver(advice))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return advice

    @property
    def busy(self) -> bool:
        """True while an advice is still being delivered."""
        return bool(self._tasks)

    async def wait(self, timeout: float = 30.0) -> bool:
        """Wait until every advice is acknowledged or given up; True if all were acknowledged."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self._tasks:
                    await asyncio.gather(*list(self._tasks), return_exceptions=True)
        return all(a.acknowledged for a in self.advices)

    async def stop(self) -> None:
        """Cancel the deliveries still running."""
        pending = list(self._tasks)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
            log.warning("%s: %d advice(s) not delivered at stop", self.client.name, len(pending))

    async def _deliver(self, advice: Advice) -> None:
        pause = 0.2
        stan = advice.message.fields.get(11)
        while advice.attempts < self.attempts:
            advice.attempts += 1
            try:
                answer = await self.client.request(advice.message)
            except (IsoTimeout, IsoLinkError) as exc:
                log.info("%s: advice STAN %s, attempt %d: %s", self.client.name, stan, advice.attempts, exc)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)
                continue
            advice.acknowledged = True
            advice.response_code = answer.response_code
            log.info("%s: advice STAN %s acknowledged (%s) after %d attempt(s)", self.client.name, stan,
                     answer.response_code, advice.attempts)
            if self.on_ack is not None:
                try:
                    self.on_ack(advice, answer)
                except Exception:
                    log.exception("%s: acknowledgement handler failed", self.client.name)
            return
        log.error("%s: advice STAN %s not acknowledged after %d attempts; given up", self.client.name, stan,
                  advice.attempts)


# -- database helpers of the hosts --------------------------------------------------------------------------


class HostDb:
    """Transactions for the ISO hosts' hot path: :func:`.db.session_scope` semantics (commit at the end,
    rollback on error, ``BEGIN IMMEDIATE`` for writers on SQLite) with the write bind built once instead
    of per transaction."""

    def __init__(self, engine: Engine, *, max_batch: int = 64, on_abort: Callable[[], None] | None = None) -> None:
        self.engine = engine
        self._writer = engine.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"}) if is_sqlite(engine) else engine
        self.max_batch = max_batch
        self.on_abort = on_abort
        self._queue: deque[tuple[Callable[[Session], Any], asyncio.Future[Any]]] = deque()
        self._wake: asyncio.Event | None = None
        self._writer_task: asyncio.Task[None] | None = None
        self.batches = 0
        self.jobs = 0

    # -- group commit ---------------------------------------------------------------------------------------
    async def batched(self, job: Callable[[Session], T]) -> T:
        """Run ``job(session)`` in a write transaction shared with the other jobs queued at this moment.

        One writer task per host takes up to :attr:`max_batch` queued jobs and runs them in ONE transaction,
        each inside its own SAVEPOINT (a job that raises is rolled back alone and its caller gets the
        exception), then COMMITs once; every job's result is released only after that COMMIT (durability
        before reply). If the COMMIT fails every job of the batch gets the exception and :attr:`on_abort`
        is called (in-memory views a job updated must then be dropped and reloaded from the database).
        Jobs run on the event loop, one after the other, so they may read and update the host's
        in-memory state directly; a job sees the effects of the jobs before it in its batch.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.append((job, future))
        if self._writer_task is None or self._writer_task.done():
            self._wake = asyncio.Event()
            self._writer_task = loop.create_task(self._write_loop())
        assert self._wake is not None
        self._wake.set()
        return await future

    async def _write_loop(self) -> None:
        assert self._wake is not None
        wake = self._wake
        while True:
            if not self._queue:
                wake.clear()
                try:
                    await asyncio.wait_for(wake.wait(), timeout=5.0)
                except TimeoutError:
                    if not self._queue:
                        self._writer_task = None
                        return
                continue
            await asyncio.sleep(0)  # let requests that arrived together join this batch
            batch = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
            self._run_batch(batch)

    def _run_batch(self, batch: list[tuple[Callable[[Session], Any], asyncio.Future[Any]]]) -> None:
        outcomes: list[tuple[bool, Any]] = []
        session = Session(bind=self._writer, expire_on_commit=False)
        try:
            try:
                # SAVEPOINTs at the driver (same SQL on SQLite and PostgreSQL): the ORM's begin_nested() costs
                # about 100 us per job; the jobs run Core statements only, so the session has nothing to track.
                # A job that leaves the session unusable (a failed ORM flush) makes the COMMIT fail: the whole
                # batch is then rolled back and every caller gets the error.
                cursor = session.connection().connection.cursor()
                for job, future in batch:
                    if future.done():  # the caller went away (cancelled): nothing to do for it
                        outcomes.append((False, None))
                        continue
                    cursor.execute("SAVEPOINT paylab_job")
                    try:
                        result = job(session)
                    except Exception as exc:
                        cursor.execute("ROLLBACK TO SAVEPOINT paylab_job")
                        cursor.execute("RELEASE SAVEPOINT paylab_job")
                        outcomes.append((False, exc))
                        continue
                    cursor.execute("RELEASE SAVEPOINT paylab_job")
                    outcomes.append((True, result))
                cursor.close()
                session.commit()
            except BaseException as exc:
                session.rollback()
                if self.on_abort is not None:
                    try:
                        self.on_abort()
                    except Exception:
                        log.exception("group commit: abort handler failed")
                for _job, future in batch:
                    if not future.done():
                        future.set_exception(exc if isinstance(exc, Exception) else RuntimeError("batch aborted"))
                if not isinstance(exc, Exception):
                    raise
                log.error("group commit of %d job(s) failed: %s", len(batch), exc)
                return
        finally:
            session.close()
        self.batches += 1
        self.jobs += len(batch)
        for (_job, future), (ok, value) in zip(batch, outcomes, strict=True):
            if future.done():
                continue
            if ok:
                future.set_result(value)
            elif isinstance(value, BaseException):
                future.set_exception(value)

    async def close(self) -> None:
        """Stop the writer task (after the queued jobs ran)."""
        task, self._writer_task = self._writer_task, None
        if task is not None:
            while self._queue:
                await asyncio.sleep(0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """A session in one write transaction."""
        session = Session(bind=self._writer, expire_on_commit=False)
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """A session in one read transaction (deferred BEGIN)."""
        session = Session(bind=self.engine, expire_on_commit=False)
        try:
            yield session
            session.commit()
        finally:
            session.close()


class SeenKeys:
    """Which STANs a host has already logged, per ``(tid, batch)``, so that a new request needs no lookup.

    The set of a ``(tid, batch)`` is loaded once from the log (``loader(tid, batch)``) the first time it
    is needed and kept in step by :meth:`add`; at most ``max_groups`` groups are kept (least recently
    used dropped, and reloaded when needed again). Valid while this host is the only writer of its rows
    in the log, which is how the services run (one process per role).
    """

    def __init__(self, loader: Callable[[str, int], Iterable[str]], *, max_groups: int = 4096) -> None:
        self.loader = loader
        self.max_groups = max_groups
        self._groups: OrderedDict[tuple[str, int], set[str]] = OrderedDict()

    def _group(self, tid: str, batch: int) -> set[str]:
        key = (tid, batch)
        group = self._groups.get(key)
        if group is None:
            group = set(self.loader(tid, batch))
            self._groups[key] = group
            while len(self._groups) > self.max_groups:
                self._groups.popitem(last=False)
        else:
            self._groups.move_to_end(key)
        return group

    def __contains__(self, key: tuple[str, int, str]) -> bool:
        tid, batch, stan = key
        return stan in self._group(tid, batch)

    def add(self, tid: str, batch: int, stan: str) -> None:
        """Record a STAN just logged (after its transaction committed)."""
        self._group(tid, batch).add(stan)
