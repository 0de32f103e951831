"""Pure parts of the ledger: cursors, request fingerprints, settlement notifications, retries, schedules."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

import celeryconfig
from app.domain.wallets.history import Cursor, cursor_secret
from app.domain.wallets.ledger import new_transfer_reference
from app.domain.wallets.notifications import SettlementNotifier, parse_settled
from app.lib.db import BASE_BACKOFF_SECONDS, backoff_seconds
from app.lib.errors import RequestValidationError
from app.lib.idempotency import request_fingerprint, validate_key

SECRET = cursor_secret("unit-test-secret")


def test_a_cursor_round_trips_and_is_url_safe() -> None:
    cursor = Cursor(created_at=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), id=uuid.uuid4())
    token = cursor.encode(SECRET)
    assert token.replace("-", "").replace("_", "").replace(".", "").isalnum()
    assert Cursor.decode(token, SECRET) == cursor


@pytest.mark.parametrize("token", ["", "%%%", "bm90IGpzb24", "WzEsMl0", "W10", "x" * 300, "WzEsMl0.AAAA"])
def test_anything_else_is_not_a_cursor(token: str) -> None:
    with pytest.raises(RequestValidationError):
        Cursor.decode(token, SECRET)


def test_a_cursor_signed_with_another_secret_or_altered_is_refused() -> None:
    token = Cursor(created_at=datetime(2026, 1, 2, tzinfo=UTC), id=uuid.uuid4()).encode(SECRET)
    with pytest.raises(RequestValidationError):
        Cursor.decode(token, cursor_secret("another-secret"))
    payload, _, signature = token.partition(".")
    with pytest.raises(RequestValidationError):
        Cursor.decode(payload[:-2] + "AA." + signature, SECRET)


def test_the_fingerprint_covers_method_path_and_exact_body() -> None:
    base = request_fingerprint("POST", "/wallet/transfer", b'{"amount":1}')
    assert len(base) == 64
    assert request_fingerprint("post", "/wallet/transfer", b'{"amount":1}') == base
    assert request_fingerprint("POST", "/wallet/deposit", b'{"amount":1}') != base
    assert request_fingerprint("POST", "/wallet/transfer", b'{"amount":2}') != base
    assert request_fingerprint("POST", "/wallet/transfe", b'r{"amount":1}') != base


@pytest.mark.parametrize("key", ["", "k" * 256])
def test_an_idempotency_key_must_have_one_to_255_characters(key: str) -> None:
    with pytest.raises(RequestValidationError):
        validate_key(key)
    assert validate_key("k" * 255) == "k" * 255


def test_settlement_messages_are_read_defensively() -> None:
    assert parse_settled(b'["trf_a", "trf_b"]') == ["trf_a", "trf_b"]
    assert parse_settled('["trf_a", 3, null]') == ["trf_a"]
    assert parse_settled(b"not json") == []
    assert parse_settled(b'{"trf_a": 1}') == []


async def test_a_waiter_wakes_only_for_its_own_reference_and_is_forgotten_after() -> None:
    notifier = SettlementNotifier("redis://127.0.0.1:1/0")
    notifier._listening.set()  # as if subscribed
    with notifier.expect("trf_mine") as waiter:
        assert notifier.resolve(["trf_other"]) == 0
        assert await waiter.wait(0.01) is False
        loop = asyncio.get_running_loop()
        loop.call_later(0.01, notifier.resolve, ["trf_other", "trf_mine"])
        assert await waiter.wait(2) is True
    assert notifier.resolve(["trf_mine"]) == 0


async def test_a_waiter_does_not_wait_while_the_subscriber_is_disconnected() -> None:
    notifier = SettlementNotifier("redis://127.0.0.1:1/0")
    with notifier.expect("trf_x") as waiter:
        started = asyncio.get_running_loop().time()
        assert await waiter.wait(5) is False
        assert asyncio.get_running_loop().time() - started < 1


def test_retry_backoff_is_short_jittered_and_bounded() -> None:
    delays = [backoff_seconds(attempt) for attempt in range(1, 20)]
    assert all(0 <= delay <= BASE_BACKOFF_SECONDS * 2**8 for delay in delays)


def test_transfer_references_are_unique_and_fit_the_column() -> None:
    references = {new_transfer_reference() for _ in range(1000)}
    assert len(references) == 1000
    assert all(ref.startswith("trf_") and len(ref) <= 64 for ref in references)


def test_beat_recovers_stale_transfers_checks_the_ledger_and_purges_old_keys() -> None:
    tasks = {entry["task"]: entry["schedule"].total_seconds() for entry in celeryconfig.beat_schedule.values()}
    assert tasks["tasks.ledger.requeue_stale_transfers"] <= 15
    assert tasks["tasks.ledger.check_ledger"] == 600
    assert "tasks.idempotency.purge_expired_records" in tasks
    assert {"tasks.ledger", "tasks.idempotency"} <= set(celeryconfig.imports)
    assert celeryconfig.task_routes["tasks.ledger.settle_transfers"] == {"queue": "settlement"}
