"""The floor: a settled transfer done as cheaply as Litestar + asyncpg + PyJWT on PostgreSQL allow.

`POST /wallet/transfer` with the service's body and bearer token: verify the HS256 JWT (the service's claims
and checks), then one statement, one transaction: lock both wallets in id order, debit the sender where its
balance allows (the check is in the UPDATE's WHERE), credit the recipient, write two ledger entries; 200 once
committed. `wallet bench` serves it with `uvicorn --factory bench.floor:create_app` (the API's worker count
and pool size) on a scratch database, and drives it with the service's load generator: the service's cost
divided by this one is what the framework, the ORM and the settlement design add. Not a service: no
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

TRANSFER = """
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
"""The whole transfer in one round trip and one implicit transaction; no row when it is refused."""


class TransferRequest(msgspec.Struct, forbid_unknown_fields=True):
    wallet_number: Annotated[str, msgspec.Meta(min_length=13, max_length=13, pattern=r"^[0-9]+$")]
    amount: Annotated[int, msgspec.Meta(ge=1, le=10**12)]


def _error(status: int, code: str) -> Response[dict[str, str]]:
    return Response({"status": "error", "code": code}, status_code=status)


@post("/wallet/transfer", status_code=200)
async def transfer(request: Request[Any, Any, Any], data: TransferRequest, state: State) -> Response[Any]:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return _error(401, "UNAUTHENTICATED")
    try:
        claims = jwt.decode(
            token,
            state.jwt_secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": REQUIRED_CLAIMS},
            leeway=5,
        )
        sender = uuid.UUID(str(claims["sub"]))
    except (jwt.PyJWTError, ValueError):
        return _error(401, "INVALID_TOKEN")
    pool: asyncpg.Pool = state.pool
    transfer_id = await pool.fetchval(TRANSFER, sender, data.wallet_number, data.amount)
    if transfer_id is None:
        # Not worth a second query to tell which: the benchmark's transfers are never refused.
        return _error(409, "REFUSED_UNKNOWN_RECIPIENT_SELF_OR_INSUFFICIENT_BALANCE")
    return Response({"status": "success", "reference": str(transfer_id)}, status_code=200)


@get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


def create_app() -> Litestar:
    """The app, configured from `FLOOR_DATABASE_URL`, `FLOOR_POOL_SIZE` and `FLOOR_JWT_SECRET`."""
    dsn = os.environ["FLOOR_DATABASE_URL"]
    pool_size = int(os.environ.get("FLOOR_POOL_SIZE", "8"))
    secret = os.environ["FLOOR_JWT_SECRET"]

    async def open_pool(app: Litestar) -> None:
        app.state.pool = await asyncpg.create_pool(dsn, min_size=pool_size, max_size=pool_size)
        app.state.jwt_secret = secret

    async def close_pool(app: Litestar) -> None:
        await app.state.pool.close()

    return Litestar(
        route_handlers=[transfer, health],
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
    return await connection.fetch(
        """
        SELECT 'money not conserved' AS problem WHERE (SELECT sum(balance) FROM wallets) <> $1::bigint * $2
        UNION ALL
        SELECT 'unbalanced transfer' FROM entries GROUP BY transfer_id HAVING sum(amount) <> 0
        """,
        balance,
        wallets,
    )
