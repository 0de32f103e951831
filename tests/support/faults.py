"""The fault tests' private stack (its own Redis server, Paystack stand-in, API and workers) and their checks.

Faults are injected into things no other test uses: the Redis server is a private one on a free port (the
server binary `wallet up` embeds; stopped, restarted and flushed at will), the Paystack stand-in is a private
one, and PostgreSQL connections are terminated only when they belong to this stack's processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psutil
import redis
from celery import Celery
from sqlalchemy import func, make_url, select, text

from app.db import models as m
from app.domain.wallets.checks import check_ledger
from app.lib.db import session_maker
from app.lib.infra import free_port, start_embedded_redis
from tests.support.paystack_standin import PaystackStandIn
from tests.support.processes import ServiceProcess, start_api, start_worker
from tests.support.waiting import wait_for

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from tests.support.users import TestUser


class PrivateRedis:
    """A Redis server of the stack's own on a fixed port, so it can be stopped and restarted in place."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._stop: Callable[[], None] | None = None

    def start(self) -> None:
        if self._stop is None:
            # Started without persistence: a restart comes back empty, like a Redis that lost its data.
            _, self._stop = start_embedded_redis(self.data_dir, port=self.port)

    def stop(self) -> None:
        stop, self._stop = self._stop, None
        if stop is not None:
            stop()

    def flushdb(self) -> None:
        client = redis.Redis.from_url(self.url)
        try:
            client.flushdb()
        finally:
            client.close()

    def llen(self, queue: str) -> int:
        client = redis.Redis.from_url(self.url)
        try:
            return int(client.llen(queue))
        finally:
            client.close()


@dataclass
class Stack:
    """The API and workers of one fault scenario, configured against the private Redis and Paystack."""

    redis: PrivateRedis
    paystack: PaystackStandIn
    env: dict[str, str]
    api_process: ServiceProcess | None = None
    base_url: str = ""
    processes: list[ServiceProcess] = field(default_factory=list)
    _broker: Celery | None = None

    def start_api(self, **overrides: str) -> str:
        api, base_url = start_api({**self.env, **overrides})
        self.processes.append(api)
        if self.api_process is None:
            self.api_process, self.base_url = api, base_url
        return base_url

    def start_worker(
        self,
        *,
        queues: str | None = None,
        concurrency: int = 1,
        name: str = "worker",
        pool: str | None = None,
        **env: str,
    ) -> ServiceProcess:
        """A real Celery worker on this stack's broker (the configured pool unless `pool` says otherwise); extra
        keyword arguments are its environment."""
        process = start_worker({**self.env, **env}, queues=queues, concurrency=concurrency, name=name, pool=pool)
        self.processes.append(process)
        return process

    @property
    def broker(self) -> Celery:
        """A Celery client configured like the service, publishing to the private Redis."""
        if self._broker is None:
            client = Celery("fault-tests")
            client.config_from_object("celeryconfig")
            client.conf.broker_url = self.redis.url
            self._broker = client
        return self._broker

    def send(self, task: str) -> None:
        """Publish a task (e.g. one of beat's sweeps) to the private broker, as beat does."""
        self.broker.send_task(task)

    def close(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        if self._broker is not None:
            self._broker.close()


# -- checks ------------------------------------------------------------------------------------------------


async def assert_ledger_ok(engine: AsyncEngine) -> None:
    """The run's ledger check: every invariant of `wallet ledger check` holds on the whole database."""
    async with session_maker(engine)() as session:
        report = await check_ledger(session)
    assert report.violations == [], "\n".join(report.violations)


async def transfers_from(engine: AsyncEngine, wallet_ids: Iterable[uuid.UUID]) -> dict[str, tuple[str, int, Any]]:
    """reference -> (status, amount, settlement journal) of every transfer these wallets sent."""
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(m.Transfer.reference, m.Transfer.status, m.Transfer.amount, m.Transfer.settlement_journal_id).where(
                m.Transfer.sender_wallet_id.in_(list(wallet_ids))
            )
        )
        return {reference: (status, amount, journal) for reference, status, amount, journal in rows}


async def balances(engine: AsyncEngine, wallet_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, int]:
    async with engine.connect() as connection:
        rows = await connection.execute(select(m.Wallet.id, m.Wallet.balance).where(m.Wallet.id.in_(list(wallet_ids))))
        return {wallet_id: int(balance) for wallet_id, balance in rows}


async def wait_until_all_settled(engine: AsyncEngine, senders: list[TestUser], *, timeout: float) -> None:
    async def settled() -> bool:
        transfers = await transfers_from(engine, [s.wallet_id for s in senders])
        return all(status == "success" for status, _, _ in transfers.values())

    await wait_for(settled, timeout=timeout, what="every transfer to settle")


async def assert_transfers_settled_exactly_once(
    engine: AsyncEngine,
    *,
    senders: list[TestUser],
    recipient: TestUser,
    funded_each: int,
    acknowledged: set[str],
) -> dict[str, tuple[str, int, Any]]:
    """Nothing lost, nothing twice: every acknowledged transfer exists and settled; every transfer that exists
    settled once (its amount left its sender once and reached the recipient once); the money of these wallets
    is conserved."""
    transfers = await transfers_from(engine, [s.wallet_id for s in senders])
    assert acknowledged <= set(transfers), f"acknowledged but never recorded: {acknowledged - set(transfers)}"
    assert {status for status, _, _ in transfers.values()} <= {"success"}, transfers
    assert all(journal is not None for _, _, journal in transfers.values())
    async with engine.connect() as connection:
        credited = await connection.scalar(
            select(func.coalesce(func.sum(m.LedgerEntry.amount), 0))
            .join(m.Wallet, m.Wallet.ledger_account_id == m.LedgerEntry.account_id)
            .where(m.Wallet.id == recipient.wallet_id)
        )
    moved = sum(amount for _, amount, _ in transfers.values())
    assert int(credited or 0) == moved, "the recipient's ledger entries add up to exactly the settled transfers"
    held = await balances(engine, [recipient.wallet_id, *(s.wallet_id for s in senders)])
    assert held[recipient.wallet_id] == moved
    assert sum(held.values()) == funded_each * len(senders), "money of these wallets is conserved"
    return transfers


# -- load ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    sent_at: float
    """`time.monotonic()` when the request was sent, to tell answers given during a fault from the others."""
    seconds: float
    """From sending to the answer: a request that hangs shows up here, not as a speed figure."""
    sender: str


@dataclass
class Load:
    """Transfers sent by concurrent clients until stopped, each answer kept."""

    answers: list[Answer] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    """Transport failures (the API process itself unreachable): there must be none."""

    @property
    def acknowledged(self) -> set[str]:
        return {a.body["reference"] for a in self.answers if a.status in {200, 202}}

    def statuses(self) -> set[int]:
        return {a.status for a in self.answers}

    def unavailable(self) -> list[Answer]:
        return [a for a in self.answers if a.status == 503]

    def sent_between(self, start: float, end: float) -> list[Answer]:
        return [a for a in self.answers if start <= a.sent_at <= end]


async def send_transfers(
    client: httpx.AsyncClient,
    senders: list[TestUser],
    recipient: TestUser,
    *,
    amount: int,
    stop: asyncio.Event,
    headers_of: Callable[[TestUser], dict[str, str]] | None = None,
    pause: float = 0.02,
) -> Load:
    """One client per sender, each sending `amount` to `recipient` in a loop until `stop` is set."""
    load = Load()

    async def one_sender(sender: TestUser) -> None:
        headers = headers_of(sender) if headers_of else sender.headers
        while not stop.is_set():
            started = time.monotonic()
            try:
                response = await client.post(
                    "/wallet/transfer",
                    json={"wallet_number": recipient.wallet_number, "amount": amount},
                    headers=headers,
                )
            except httpx.HTTPError as exc:
                load.errors.append(repr(exc))
                await asyncio.sleep(0.1)
                continue
            try:
                body = response.json()
            except ValueError:
                body = {"raw": response.text}
            load.answers.append(
                Answer(response.status_code, body, started, time.monotonic() - started, sender.wallet_number)
            )
            await asyncio.sleep(pause)

    await asyncio.gather(*(one_sender(sender) for sender in senders))
    return load


def assert_only_contract_answers(load: Load, *, allowed: set[int], hang_seconds: float = 10.0) -> None:
    """Every answer is one the contract allows for this fault, never a 500; a 503 says SERVICE_UNAVAILABLE and
    came back instead of hanging (within `hang_seconds`, far below the client's 30 s timeout)."""
    assert load.errors == [], load.errors[:5]
    unexpected = [a for a in load.answers if a.status not in allowed]
    assert unexpected == [], unexpected[:5]
    for answer in load.unavailable():
        assert answer.body.get("error_code") == "SERVICE_UNAVAILABLE", answer
        assert answer.seconds < hang_seconds, f"a 503 took {answer.seconds:.1f}s: the request hung"


# -- PostgreSQL ----------------------------------------------------------------------------------------------


def _postgres_port(database_url: str) -> int | None:
    """The TCP port of the run's PostgreSQL, None when it is reached through a Unix socket (embedded)."""
    url = make_url(database_url)
    return None if url.query.get("host") else (url.port or 5432)


def client_ports_of(processes: Iterable[ServiceProcess], postgres_port: int) -> set[int]:
    """Local ports of the TCP connections these processes (and their children) hold to PostgreSQL."""
    ports: set[int] = set()
    for process in processes:
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(process.pid)
            for member in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    for connection in member.net_connections(kind="tcp"):
                        if connection.raddr and connection.raddr.port == postgres_port:
                            ports.add(connection.laddr.port)
    return ports


async def terminate_backends_of(engine: AsyncEngine, processes: Iterable[ServiceProcess]) -> int:
    """`pg_terminate_backend` the backends of this run's database that serve these processes.

    Backends are matched by the client's TCP port. Through a Unix socket (the embedded server) a backend
    cannot be told apart by client, so every backend of this run's database but the test's own is terminated:
    the run's other processes (the session's API and worker) must recover by themselves as well.
    """
    port = _postgres_port(engine.url.render_as_string(hide_password=False))
    where = "datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
    parameters: dict[str, Any] = {}
    if port is not None:
        ports = client_ports_of(processes, port)
        if not ports:
            return 0
        where += " AND client_port = ANY(:ports)"
        parameters["ports"] = list(ports)
    async with engine.connect() as connection:
        killed = await connection.scalar(
            text(f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE {where}"),
            parameters,
        )
        await connection.commit()
    return int(killed or 0)


async def deposit_state(engine: AsyncEngine, reference: str) -> tuple[str, int]:
    """The deposit's status and how many credit journals the ledger holds for it."""
    async with engine.connect() as connection:
        status = await connection.scalar(select(m.Deposit.status).where(m.Deposit.reference == reference))
        credits = await connection.scalar(
            select(func.count())
            .select_from(m.LedgerJournal)
            .where(m.LedgerJournal.kind == m.JournalKind.DEPOSIT.value, m.LedgerJournal.reference == reference)
        )
    return str(status), int(credits or 0)


async def event_status(engine: AsyncEngine, body: bytes) -> str | None:
    """The processing status of the stored webhook event with this exact body."""
    async with engine.connect() as connection:
        status: str | None = await connection.scalar(
            select(m.WebhookEvent.status).where(m.WebhookEvent.event_key == hashlib.sha256(body).hexdigest())
        )
    return status


async def paid_deposit(stack: Stack, http: httpx.AsyncClient, user: Any, amount: int) -> tuple[str, bytes]:
    """A deposit started through the API and paid at Paystack; returns its reference and the signed event."""
    response = await http.post("/wallet/deposit", json={"amount": amount}, headers=user.headers)
    assert response.status_code == 201, response.text
    reference = response.json()["reference"]
    stack.paystack.set_status(reference, "success")
    return reference, stack.paystack.build_charge_success(reference)


async def wait_credited_once(engine: AsyncEngine, reference: str) -> None:
    async def credited() -> bool:
        return await deposit_state(engine, reference) == ("success", 1)

    await wait_for(credited, timeout=60, what=f"deposit {reference} to be credited")
