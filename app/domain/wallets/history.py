"""A wallet's history: its deposits, the transfers it sent and received, and its withdrawals, newest first.

One UNION ALL over transfers sent (`transfer_out`), transfers received (`transfer_in`), deposits and
withdrawals, each
branch served by its `(wallet, created_at, id)` index and cut at the page size, ordered by
`(created_at, id)` descending. Pages are keyset-paginated: the cursor is the `(created_at, id)` of the last
item shown, so a page never skips or repeats an item however many arrive meanwhile.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from app.domain.wallets.schemas import Transaction
from app.lib.errors import RequestValidationError, TransactionNotFound, WalletNotFound

if TYPE_CHECKING:
    import asyncpg

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


_CURSOR_PURPOSE = b"wallet-history-cursor"
_SIGNATURE_BYTES = 16
_MAX_CURSOR_LENGTH = 200


def _invalid_cursor() -> RequestValidationError:
    return RequestValidationError(
        "The cursor is invalid; use the `Link` header of the previous page.",
        errors=[{"key": "cursor", "source": "query", "message": "invalid cursor"}],
    )


@dataclass(frozen=True)
class Cursor:
    """Where a page ends: the position of its last item. Signed, so only cursors this service made are read."""

    created_at: datetime
    id: uuid.UUID

    def encode(self, secret: bytes) -> str:
        payload = json.dumps([self.created_at.astimezone(UTC).isoformat(), str(self.id)], separators=(",", ":"))
        raw = payload.encode()
        return _b64(raw) + "." + _b64(_sign(secret, raw))

    @classmethod
    def decode(cls, token: str, secret: bytes) -> Cursor:
        """Raises RequestValidationError for anything that is not a cursor this service made."""
        try:
            if not token or len(token) > _MAX_CURSOR_LENGTH:
                raise ValueError
            payload_text, _, signature_text = token.partition(".")
            raw = _unb64(payload_text)
            if not hmac.compare_digest(_unb64(signature_text), _sign(secret, raw)):
                raise ValueError
            # Signed by us, and still checked: a cursor made by an older release must not reach the database.
            created_at_text, id_text = json.loads(raw)
            if not isinstance(created_at_text, str) or not isinstance(id_text, str):
                raise ValueError
            created_at = datetime.fromisoformat(created_at_text)
            if created_at.tzinfo is None:
                raise ValueError
            return cls(created_at=created_at.astimezone(UTC), id=uuid.UUID(id_text))
        except (ValueError, TypeError, OverflowError, binascii.Error, UnicodeDecodeError):
            raise _invalid_cursor() from None


def cursor_secret(jwt_secret: str) -> bytes:
    """The key cursors are signed with, derived from `JWT_SECRET` (one secret to rotate, distinct uses)."""
    return hmac.new(jwt_secret.encode(), _CURSOR_PURPOSE, hashlib.sha256).digest()


def _sign(secret: bytes, raw: bytes) -> bytes:
    return hmac.new(secret, raw, hashlib.sha256).digest()[:_SIGNATURE_BYTES]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


async def keyset_page(
    connection: asyncpg.Connection,
    statements: tuple[str, str],
    user_id: uuid.UUID,
    *,
    limit: int,
    cursor: str | None,
    secret: bytes,
) -> tuple[list[asyncpg.Record], Cursor | None]:
    """One page of a user's rows, newest first, and the cursor of the next page (None on the last).

    `statements` are the first page's (`$1` user, `$2` limit) and the next pages' (`$3`, `$4`: the cursor's
    `created_at` and `id`); both select `created_at` and `id`. One row more than `limit` is read to know whether
    another page follows.
    """
    after = Cursor.decode(cursor, secret) if cursor is not None else None
    if after is None:
        rows = await connection.fetch(statements[0], user_id, limit + 1)
    else:
        rows = await connection.fetch(statements[1], user_id, limit + 1, after.created_at, after.id)
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = Cursor(created_at=last["created_at"], id=last["id"])
    return list(rows[:limit]), next_cursor


@dataclass(frozen=True)
class TransactionPage:
    items: list[Transaction]
    next_cursor: Cursor | None


_BRANCHES = (
    (
        "t",
        "SELECT t.reference, 'transfer_out' AS type, t.amount, t.status, w.number AS counterparty, t.created_at, "
        "t.id FROM transfers t JOIN wallets w ON w.id = t.recipient_wallet_id "
        "WHERE t.sender_wallet_id = (SELECT id FROM wallets WHERE user_id = $1) {filter} "
        "ORDER BY t.created_at DESC, t.id DESC LIMIT $2",
    ),
    (
        "t",
        "SELECT t.reference, 'transfer_in' AS type, t.amount, t.status, w.number AS counterparty, t.created_at, "
        "t.id FROM transfers t JOIN wallets w ON w.id = t.sender_wallet_id "
        "WHERE t.recipient_wallet_id = (SELECT id FROM wallets WHERE user_id = $1) {filter} "
        "ORDER BY t.created_at DESC, t.id DESC LIMIT $2",
    ),
    (
        "d",
        # `reversed` is an internal state: clients see a reversed deposit as `failed`.
        "SELECT d.reference, 'deposit' AS type, d.amount, "
        "CASE d.status WHEN 'reversed' THEN 'failed' ELSE d.status END AS status, "
        "NULL AS counterparty, d.created_at, d.id FROM deposits d "
        "WHERE d.wallet_id = (SELECT id FROM wallets WHERE user_id = $1) {filter} "
        "ORDER BY d.created_at DESC, d.id DESC LIMIT $2",
    ),
    (
        "x",
        "SELECT x.reference, 'withdrawal' AS type, x.amount, x.status, NULL AS counterparty, x.created_at, x.id "
        "FROM withdrawals x WHERE x.wallet_id = (SELECT id FROM wallets WHERE user_id = $1) {filter} "
        "ORDER BY x.created_at DESC, x.id DESC LIMIT $2",
    ),
)
"""Each branch served by its `(wallet, created_at, id)` index and cut at the page size; `$1` is the user."""


def _union(filter_sql: str) -> str:
    """The branches with `filter_sql` (written for alias `{a}`), newest first; every value is a parameter."""
    parts = [f"({branch.format(filter=filter_sql.format(a=alias))})" for alias, branch in _BRANCHES]
    return " UNION ALL ".join(parts) + " ORDER BY created_at DESC, id DESC LIMIT $2"


_FIRST_PAGE = _union("")
_NEXT_PAGE = _union("AND ({a}.created_at, {a}.id) < ($3::timestamptz, $4::uuid)")
_ONE = _union("AND {a}.reference = $3")
_WALLET_OF = "SELECT id, number, balance, currency FROM wallets WHERE user_id = $1"


def _transaction(row: asyncpg.Record) -> Transaction:
    return Transaction(
        reference=row["reference"],
        type=row["type"],
        amount=int(row["amount"]),
        status=row["status"],
        counterparty_wallet_number=row["counterparty"],
        created_at=row["created_at"].astimezone(UTC),
    )


@dataclass(frozen=True)
class WalletView:
    number: str
    balance: int
    currency: str


class TransactionHistory:
    """Read-only views of one user's own wallet, one prepared statement each on the connection given."""

    def __init__(self, connection: asyncpg.Connection, *, cursor_secret: bytes = b"") -> None:
        self.connection = connection
        self.cursor_secret = cursor_secret

    async def wallet_of(self, user_id: uuid.UUID) -> WalletView:
        row = await self.connection.fetchrow(_WALLET_OF, user_id)
        if row is None:
            raise WalletNotFound("You have no wallet yet.")
        return WalletView(number=row["number"], balance=int(row["balance"]), currency=row["currency"])

    async def page(self, user_id: uuid.UUID, *, limit: int, cursor: str | None) -> TransactionPage:
        """Up to `limit` items older than the cursor (newest first), and the cursor of the next page."""
        rows, next_cursor = await keyset_page(
            self.connection, (_FIRST_PAGE, _NEXT_PAGE), user_id, limit=limit, cursor=cursor, secret=self.cursor_secret
        )
        if not rows:
            await self.wallet_of(user_id)  # nothing to show: an empty wallet, or no wallet at all (404)
        return TransactionPage(items=[_transaction(row) for row in rows], next_cursor=next_cursor)

    async def find(self, user_id: uuid.UUID, reference: str) -> Transaction:
        """One item of the caller's own history.

        Raises:
            TransactionNotFound: no transfer or deposit of the caller's wallet has this reference.
        """
        row = await self.connection.fetchrow(_ONE, user_id, 1, reference)
        if row is None:
            raise TransactionNotFound
        return _transaction(row)
