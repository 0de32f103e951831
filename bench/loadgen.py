"""The load generator: a few processes, each one uvloop event loop driving raw HTTP/1.1 keep-alive connections.

Why not httpx: at a few thousand requests per second an httpx request costs more CPU than the API spends
answering it, and on a 2-core machine every cycle the generator burns is taken from the system under test.
This client pre-builds each request's bytes, parses answers with `httptools` (uvicorn's own parser) and keeps
only a status and a timing per request: tens of microseconds of CPU each.

Two disciplines:

- closed loop (`rate=None`): `connections` connections, each sending its next request when the previous
  answer arrives: the peak the service sustains at that concurrency;
- open loop (`rate` requests/s): requests are sent on a fixed schedule whatever the service does, each on an
  idle connection (opened on demand), and latency is measured from the *scheduled* time, so a stall shows up
  in the percentiles instead of silently slowing the sender (coordinated omission).

Only requests scheduled after the warm-up and before its end are counted. Each process reads its own CPU time
from `/proc/self/stat` over the measured window, so the report can show the generator is not the bottleneck.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httptools

from bench.procfs import cpu_seconds

if TYPE_CHECKING:
    from collections.abc import Callable
    from multiprocessing.connection import Connection

TRANSFER = "transfer"
READ = "read"
WEBHOOK = "webhook"
WEBHOOK_REFERENCE_PLACEHOLDER = "BENCH_REFERENCE_PLACEHOLDER"

_OK_STATUSES = {TRANSFER: (200, 202), READ: (200,), WEBHOOK: (200,)}


@dataclass(frozen=True)
class LoadSpec:
    """What one generator process sends. Picklable: it crosses to a spawned process."""

    kind: str
    host: str
    port: int
    duration: float
    warmup: float
    connections: int
    """Closed loop: concurrent connections. Open loop: connections opened up front (more on demand)."""
    rate: float | None = None
    """Open loop: requests per second of this process. None: closed loop."""
    wallets: tuple[tuple[str, str], ...] = ()
    """(JWT, wallet number) of the users this process acts as."""
    recipients: tuple[str, ...] = ()
    """Wallet numbers to send to, chosen at random (never the sender's own)."""
    hot_recipient: str | None = None
    """Every transfer goes to this wallet (the senders exclude its owner)."""
    max_amount: int = 100
    webhook_template: bytes = b""
    webhook_secret: str = ""
    reference_prefix: str = "bench"
    seed: int = 0
    timeout: float = 30.0
    max_connections: int = 512


@dataclass
class LoadResult:
    """What one process measured (requests scheduled inside the measured window only)."""

    kind: str
    pid: int
    requests: int = 0
    ok: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    """Of successful requests, from (scheduled) send to the end of the answer."""
    warmup_requests: int = 0
    window_s: float = 0.0
    cpu_s: float = 0.0
    """This process's user + system CPU over the measured window (from /proc/self/stat)."""
    late_start_s: float = 0.0
    """How long after the agreed start this process began (should be ~0)."""
    connections_opened: int = 0
    max_in_flight: int = 0


class HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection carrying one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[int] | None = None
        self.alive = False

    @classmethod
    async def open(cls, host: str, port: int) -> HttpConnection:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(cls, host, port)
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.alive = True

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"bad HTTP answer: {exc}"))

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        if not self.parser.should_keep_alive():
            self.close()
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        self._fail(ConnectionError("connection closed by the server"))

    def _fail(self, exc: Exception) -> None:
        self.close()
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def close(self) -> None:
        self.alive = False
        if self.transport is not None:
            self.transport.close()

    async def send(self, data: bytes, timeout_s: float) -> int:
        """Write one request and wait for its status code."""
        if not self.alive or self.transport is None:
            raise ConnectionError("connection is closed")
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[int] = loop.create_future()
        self.waiter = waiter
        self.transport.write(data)
        timer = loop.call_later(timeout_s, self._fail, TimeoutError())
        try:
            return await waiter
        finally:
            timer.cancel()


def request_builder(spec: LoadSpec, process_index: int) -> Callable[[], bytes]:
    """A function that returns the next request's bytes (pre-built headers, a fresh body)."""
    rng = random.Random(spec.seed)
    host = f"Host: {spec.host}:{spec.port}\r\n".encode()
    if spec.kind == WEBHOOK:
        secret = spec.webhook_secret.encode()
        template = spec.webhook_template
        placeholder = WEBHOOK_REFERENCE_PLACEHOLDER.encode()
        head = b"POST /wallet/paystack/webhook HTTP/1.1\r\n" + host + b"Content-Type: application/json\r\n"
        counter = iter(range(1 << 62))
        prefix = f"{spec.reference_prefix}-{process_index}-".encode()

        def webhook() -> bytes:
            body = template.replace(placeholder, prefix + str(next(counter)).encode())
            signature = hmac.new(secret, body, hashlib.sha512).hexdigest().encode()
            return (
                head
                + b"x-paystack-signature: "
                + signature
                + b"\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )

        return webhook

    auth = [f"Authorization: Bearer {token}\r\n".encode() for token, _ in spec.wallets]
    numbers = [number for _, number in spec.wallets]
    if spec.kind == READ:
        paths = (b"GET /wallet/balance HTTP/1.1\r\n", b"GET /wallet/transactions?limit=20 HTTP/1.1\r\n")
        reads = [path + host + header + b"\r\n" for header in auth for path in paths]

        def read() -> bytes:
            return rng.choice(reads)

        return read

    heads = [
        b"POST /wallet/transfer HTTP/1.1\r\n" + host + header + b"Content-Type: application/json\r\n" for header in auth
    ]
    recipients = list(spec.recipients)

    def transfer() -> bytes:
        sender = rng.randrange(len(heads))
        recipient = spec.hot_recipient
        while recipient is None or recipient == numbers[sender]:
            recipient = rng.choice(recipients)
        body = b'{"wallet_number":"%s","amount":%d}' % (recipient.encode(), rng.randint(1, spec.max_amount))
        return heads[sender] + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body

    return transfer


class _Run:
    """One process's load: the clock, the counters and the two disciplines."""

    def __init__(self, spec: LoadSpec, process_index: int, start_at: float) -> None:
        self.spec = spec
        self.build = request_builder(spec, process_index)
        self.ok_statuses = _OK_STATUSES[spec.kind]
        # The agreed wall-clock start, on this process's monotonic clock.
        self.start = time.perf_counter() + (start_at - time.time())
        self.measure_from = self.start + spec.warmup
        self.end = self.measure_from + spec.duration
        self.result = LoadResult(kind=spec.kind, pid=os.getpid())
        self.statuses: Counter[str] = Counter()
        self.idle: list[HttpConnection] = []
        self.in_flight = 0

    async def connection(self) -> HttpConnection:
        while self.idle:
            conn = self.idle.pop()
            if conn.alive:
                return conn
        self.result.connections_opened += 1
        return await HttpConnection.open(self.spec.host, self.spec.port)

    async def one(self, scheduled: float, conn: HttpConnection | None = None) -> HttpConnection | None:
        """Send one request scheduled at `scheduled` (perf_counter) and record it; returns a reusable connection."""
        counted = scheduled >= self.measure_from
        self.in_flight += 1
        self.result.max_in_flight = max(self.result.max_in_flight, self.in_flight)
        try:
            if conn is None or not conn.alive:
                conn = await self.connection()
            status = await conn.send(self.build(), self.spec.timeout)
        except TimeoutError:
            outcome, conn = "timeout", None
        except OSError:
            outcome, conn = "connection_error", None
        else:
            outcome = str(status)
        finally:
            self.in_flight -= 1
        elapsed_ms = (time.perf_counter() - scheduled) * 1000
        if counted:
            self.result.requests += 1
            self.statuses[outcome] += 1
            if outcome.isdigit() and int(outcome) in self.ok_statuses:
                self.result.ok += 1
                self.result.latencies_ms.append(elapsed_ms)
        else:
            self.result.warmup_requests += 1
        return conn if conn is not None and conn.alive else None

    async def closed_loop_client(self) -> None:
        conn: HttpConnection | None = None
        while True:
            now = time.perf_counter()
            if now >= self.end:
                break
            conn = await self.one(now, conn)
            if conn is None:
                # A refused or broken connection: do not spin on a server that is down.
                await asyncio.sleep(0.005)
        if conn is not None:
            conn.close()

    async def open_loop(self, rate: float) -> None:
        interval = 1.0 / rate
        pending: set[asyncio.Task[Any]] = set()
        # Open the usual number of connections up front so the first requests do not pay for the handshake.
        self.idle = [await HttpConnection.open(self.spec.host, self.spec.port) for _ in range(self.spec.connections)]
        self.result.connections_opened += len(self.idle)

        async def fire(scheduled: float) -> None:
            conn = await self.one(scheduled)
            if conn is not None:
                self.idle.append(conn)

        next_at = self.start
        while next_at < self.end:
            delay = next_at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            # Catch up on every request whose time has come (a late wake-up sends a burst, as an open loop must).
            now = time.perf_counter()
            while next_at <= now and next_at < self.end:
                if self.in_flight < self.spec.max_connections:
                    task = asyncio.get_running_loop().create_task(fire(next_at))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                elif next_at >= self.measure_from:
                    self.result.requests += 1
                    self.statuses["dropped_client_saturated"] += 1
                next_at += interval
        if pending:
            await asyncio.wait(pending, timeout=self.spec.timeout + 1)
        for conn in self.idle:
            conn.close()

    async def run(self) -> LoadResult:
        delay = self.start - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        self.result.late_start_s = round(max(-delay, 0.0), 3)
        cpu_task = asyncio.get_running_loop().create_task(self._cpu_over_window())
        if self.spec.rate is None:
            await asyncio.gather(*(self.closed_loop_client() for _ in range(self.spec.connections)))
        else:
            await self.open_loop(self.spec.rate)
        await cpu_task
        self.result.statuses = dict(self.statuses)
        self.result.window_s = self.spec.duration
        return self.result

    async def _cpu_over_window(self) -> None:
        await asyncio.sleep(max(self.measure_from - time.perf_counter(), 0))
        before = cpu_seconds(os.getpid())
        await asyncio.sleep(max(self.end - time.perf_counter(), 0))
        self.result.cpu_s = round(cpu_seconds(os.getpid()) - before, 3)


def process_main(spec: LoadSpec, process_index: int, pipe: Connection) -> None:
    """Entry point of a generator process: say ready, wait for the agreed start time, run, send the result."""
    import uvloop

    pipe.send(("ready", os.getpid()))
    start_at = pipe.recv()
    result = uvloop.run(_Run(spec, process_index, start_at).run())
    pipe.send(result)
    pipe.close()
