"""The floor: a settled transfer as a plain, minimal Litestar + asyncpg + PyJWT program on PostgreSQL.

`POST /wallet/transfer` with the service's body and bearer token: verify the HS256 JWT (the service's claims
and checks), acquire a connection from the asyncpg pool (its defaults: a reset on release), and in one
explicit transaction (`async with conn.transaction()`) run three statements: the debit, with the balance check
in its WHERE (no row: 409; the sender's own number as recipient matches no row either, so a self-transfer is
refused with 409 before anything is written); the credit (no row: unknown recipient, 404, rolled back); one
INSERT of the two ledger entries. 200 once committed. This is the program the issue describes, measured and
set its targets against, and the headline floor (`FLOOR_PROGRAM=transaction`, the default).

Deadlocks: two opposite transfers between the same wallets each hold their debited row and wait for the other's
credit. Rather than add a locking SELECT the issue's program does not have, the transaction is retried when
PostgreSQL breaks a deadlock (SQLSTATE 40P01, after `deadlock_timeout`), up to `DEADLOCK_ATTEMPTS` times;
`wallet bench` reports how many PostgreSQL detected.

`FLOOR_PROGRAM=one_statement` serves an informational variant instead: the whole transfer in one CTE statement
(lock both rows in id order, debit, credit, insert the entries), one round trip and one implicit transaction,
which shows how much further the bare stack can go.

`wallet bench` serves each with `uvicorn --factory bench.floor:create_app` (the API's worker count and pool
size) on a scratch database of its own, and drives it with the service's load generator: the service's cost
divided by the floor's is what the framework, the ORM and the settlement design add. Not a service: no
deny-list, no user row, no idempotency, no queue.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from typing import TYPE_CHECKING, Annotated, Any

import asyncpg
import jwt
import msgspec
from litestar import Litestar, Request, get, post
from litestar.datastructures import State
from litestar.response import Response

if TYPE_CHECKING:
    from collections.abc import Sequence

ISSUER = "wallet-service"
AUDIENCE = "wallet-service-api"
ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["sub", "iat", "exp", "jti", "iss", "aud"]
"""The service's token shape and checks (`app/domain/auth/tokens.py`), so both pay for the same decode."""

SCHEMA = """
CREATE TABLE wallets (
    id integer PRIMARY KEY,
    user_id uuid NOT NULL UNIQUE,
    number text NOT NULL UNIQUE,
    balance bigint NOT NULL CHECK (balance >= 0)
);
CREATE TABLE entries (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transfer_id uuid NOT NULL,
    wallet_id integer NOT NULL REFERENCES wallets (id),
    amount bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
-- A wallet's history, as the service's entries are read by account.
CREATE INDEX entries_wallet ON entries (wallet_id, id);
"""

PROGRAMS = ("transaction", "one_statement")
"""`FLOOR_PROGRAM`: the plain transaction (the headline floor) or the one-statement variant (informational)."""

DEBIT = "UPDATE wallets SET balance = balance - $2 WHERE user_id = $1 AND balance >= $2 AND number <> $3 RETURNING id"
"""The sender's debit where its balance allows and the recipient is another wallet; no row: refused (409)."""
CREDIT = "UPDATE wallets SET balance = balance + $2 WHERE number = $1 RETURNING id"
"""The recipient's credit; no row: unknown recipient (404, the debit rolled back)."""
ENTRIES = "INSERT INTO entries (transfer_id, wallet_id, amount) VALUES ($1, $2, $3), ($1, $4, $5)"
"""The two ledger rows: the sender's minus the amount, the recipient's plus."""
DEADLOCK_ATTEMPTS = 5

TRANSACTION = f"""
BEGIN;
{DEBIT};  -- no row: 409
{CREDIT};  -- no row: 404 (ROLLBACK)
{ENTRIES};
COMMIT;  -- SQLSTATE 40P01 (deadlock) anywhere: the whole transaction again
"""
"""The plain program's transaction, as the report shows it (asyncpg sends BEGIN and COMMIT as statements)."""

ONE_STATEMENT = """
WITH locked AS (
    -- Both rows in id order: opposite transfers between two wallets wait for each other instead of deadlocking.
    SELECT id, user_id, number FROM wallets WHERE user_id = $1 OR number = $2 ORDER BY id FOR NO KEY UPDATE
), debit AS (
    UPDATE wallets SET balance = wallets.balance - $3
    FROM locked AS sender, locked AS recipient
    WHERE wallets.id = sender.id AND sender.user_id = $1 AND recipient.number = $2 AND recipient.id <> sender.id
        AND wallets.balance >= $3
    RETURNING sender.id AS sender_id, recipient.id AS recipient_id, gen_random_uuid() AS transfer_id
), credit AS (
    UPDATE wallets SET balance = wallets.balance + $3 FROM debit WHERE wallets.id = debit.recipient_id
), written AS (
    INSERT INTO entries (transfer_id, wallet_id, amount)
    SELECT transfer_id, sender_id, -$3 FROM debit
    UNION ALL
    SELECT transfer_id, recipient_id, $3 FROM debit
)
SELECT transfer_id FROM debit
"""
"""The informational variant: the whole transfer in one round trip and one implicit transaction; no row when
it is refused."""


class TransferRequest(msgspec.Struct, forbid_unknown_fields=True):
    wallet_number: Annotated[str, msgspec.Meta(min_length=13, max_length=13, pattern=r"^[0-9]+$")]
    amount: Annotated[int, msgspec.Meta(ge=1, le=10**12)]


class Refused(Exception):
    """Raised inside the transaction to roll it back and answer `status`."""

    def __init__(self, status: int, code: str) -> None:
        super().__init__(code)
        self.status = status
        self.code = code


def _error(status: int, code: str) -> Response[dict[str, str]]:
    return Response({"status": "error", "code": code}, status_code=status)


def _sender(request: Request[Any, Any, Any], secret: str) -> uuid.UUID | Response[dict[str, str]]:
    """The JWT's subject, checked as the service checks it; an error response when it does not pass."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return _error(401, "UNAUTHENTICATED")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": REQUIRED_CLAIMS},
            leeway=5,
        )
        return uuid.UUID(str(claims["sub"]))
    except (jwt.PyJWTError, ValueError):
        return _error(401, "INVALID_TOKEN")


@post("/wallet/transfer", status_code=200)
async def transfer(request: Request[Any, Any, Any], data: TransferRequest, state: State) -> Response[Any]:
    """The plain program: one explicit transaction of three statements."""
    sender = _sender(request, state.jwt_secret)
    if isinstance(sender, Response):
        return sender
    pool: asyncpg.Pool = state.pool
    for _ in range(DEADLOCK_ATTEMPTS):
        transfer_id = uuid.uuid4()
        try:
            async with pool.acquire() as connection, connection.transaction():
                sender_id = await connection.fetchval(DEBIT, sender, data.amount, data.wallet_number)
                if sender_id is None:
                    raise Refused(409, "SELF_TRANSFER_OR_INSUFFICIENT_BALANCE")
                recipient_id = await connection.fetchval(CREDIT, data.wallet_number, data.amount)
                if recipient_id is None:
                    raise Refused(404, "UNKNOWN_RECIPIENT")
                await connection.execute(ENTRIES, transfer_id, sender_id, -data.amount, recipient_id, data.amount)
        except Refused as refused:
            return _error(refused.status, refused.code)
        except asyncpg.DeadlockDetectedError:
            continue
        return Response({"status": "success", "reference": str(transfer_id)}, status_code=200)
    return _error(503, "DEADLOCKED")


@post("/wallet/transfer", status_code=200)
async def transfer_one_statement(request: Request[Any, Any, Any], data: TransferRequest, state: State) -> Response[Any]:
    """The informational variant: the whole transfer in one statement."""
    sender = _sender(request, state.jwt_secret)
    if isinstance(sender, Response):
        return sender
    pool: asyncpg.Pool = state.pool
    transfer_id = await pool.fetchval(ONE_STATEMENT, sender, data.wallet_number, data.amount)
    if transfer_id is None:
        # Not worth a second query to tell which: the benchmark's transfers are never refused.
        return _error(409, "REFUSED_UNKNOWN_RECIPIENT_SELF_OR_INSUFFICIENT_BALANCE")
    return Response({"status": "success", "reference": str(transfer_id)}, status_code=200)


@get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


def create_app() -> Litestar:
    """The app, from `FLOOR_DATABASE_URL`, `FLOOR_POOL_SIZE`, `FLOOR_JWT_SECRET` and `FLOOR_PROGRAM`."""
    dsn = os.environ["FLOOR_DATABASE_URL"]
    program = os.environ.get("FLOOR_PROGRAM", "transaction")
    if program not in PROGRAMS:
        msg = f"FLOOR_PROGRAM must be one of {PROGRAMS}, not {program!r}"
        raise ValueError(msg)
    pool_size = int(os.environ.get("FLOOR_POOL_SIZE", "8"))
    secret = os.environ["FLOOR_JWT_SECRET"]

    async def open_pool(app: Litestar) -> None:
        app.state.pool = await asyncpg.create_pool(dsn, min_size=pool_size, max_size=pool_size)
        app.state.jwt_secret = secret

    async def close_pool(app: Litestar) -> None:
        await app.state.pool.close()

    return Litestar(
        route_handlers=[transfer if program == "transaction" else transfer_one_statement, health],
        on_startup=[open_pool],
        on_shutdown=[close_pool],
        openapi_config=None,
    )


def issue_token(secret: str, user_id: uuid.UUID, email: str, lifetime_s: int = 4 * 3600) -> str:
    """A token with the service's claims (`issue_token` in `app/domain/auth/tokens.py`), signed with `secret`."""
    now = int(time.time())
    claims = {
        "sub": str(user_id),
        "email": email,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime_s,
        "jti": uuid.uuid4().hex,
        "iss": ISSUER,
        "aud": AUDIENCE,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


async def create_schema(
    connection: asyncpg.Connection, wallets: int, balance: int, secret: str, seed: int = 0
) -> list[tuple[str, str]]:
    """Create the tables and `wallets` funded wallets (13-digit numbers, as the service's); their (JWT, number).

    Funded by INSERT: funding is not what the floor measures.
    """
    rng = random.Random(seed)
    numbers = [str(n) for n in rng.sample(range(10**12, 10**13), wallets)]
    users = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(wallets)]
    await connection.execute(SCHEMA)
    await connection.copy_records_to_table(
        "wallets",
        records=[(index + 1, users[index], numbers[index], balance) for index in range(wallets)],
        columns=["id", "user_id", "number", "balance"],
    )
    await connection.execute("ANALYZE wallets")
    return [
        (issue_token(secret, user, f"floor-{index}@bench.example.com"), number)
        for index, (user, number) in enumerate(zip(users, numbers, strict=True))
    ]


async def committed_between(connection: asyncpg.Connection, window_from: float, window_to: float) -> int:
    """Transfers committed with their transaction started inside the window (two entries each)."""
    value = await connection.fetchval(
        "SELECT count(*) / 2 FROM entries WHERE created_at >= to_timestamp($1) AND created_at < to_timestamp($2)",
        window_from,
        window_to,
    )
    return int(value or 0)


async def check_ledger(connection: asyncpg.Connection, wallets: int, balance: int) -> Sequence[Any]:
    """The floor's own invariants after a run: money conserved, each transfer's entries sum to zero."""
    rows: Sequence[Any] = await connection.fetch(
        """
        SELECT 'money not conserved' AS problem WHERE (SELECT sum(balance) FROM wallets) <> $1::bigint * $2
        UNION ALL
        SELECT 'unbalanced transfer' FROM entries GROUP BY transfer_id HAVING sum(amount) <> 0
        """,
        balance,
        wallets,
    )
    return rows


async def deadlocks(connection: asyncpg.Connection) -> int:
    """Deadlocks PostgreSQL has detected (and broken) in the connection's database: the plain program's retries."""
    return int(
        await connection.fetchval("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()") or 0
    )
