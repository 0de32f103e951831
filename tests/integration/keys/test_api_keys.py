"""API keys over HTTP: create, list, roll over, revoke, and the rules that bind them."""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select, update

from app.db import models as m
from app.domain.keys.service import ApiKeyService

if TYPE_CHECKING:
    import httpx
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

KEY = {"name": "billing-service", "permissions": ["deposit", "read"], "expiry": "1D"}


def parse_time(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def create(api: httpx.AsyncClient, user: Any, **overrides: Any) -> httpx.Response:
    return await api.post("/keys/create", headers=user.headers, json={**KEY, **overrides})


async def create_ok(api: httpx.AsyncClient, user: Any, **overrides: Any) -> dict[str, Any]:
    response = await create(api, user, **overrides)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def expire(db: AsyncSession, key_id: str, *, ago: timedelta = timedelta(seconds=1)) -> None:
    """Move a key's expiry into the past, as time would (the sweep has not run)."""
    await db.execute(
        update(m.ApiKey).where(m.ApiKey.id == uuid.UUID(key_id)).values(expires_at=datetime.now(UTC) - ago)
    )
    await db.commit()


def assert_error(response: httpx.Response, status: int, error_code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error_code"] == error_code, response.text


async def test_a_created_key_is_shown_once_stored_as_a_hash_and_usable_at_once(
    api: httpx.AsyncClient, make_user: Any, db: AsyncSession
) -> None:
    user = await make_user()
    before = datetime.now(UTC).replace(microsecond=0)
    body = await create_ok(api, user, name="  billing-service ", permissions=["read", "deposit", "read"])
    assert list(body) == ["id", "name", "api_key", "permissions", "expires_at"]
    assert body["name"] == "billing-service"
    assert body["permissions"] == ["read", "deposit"]
    assert re.fullmatch(r"sk_live_[A-Za-z0-9_-]{43,}", body["api_key"])
    assert before + timedelta(days=1) <= parse_time(body["expires_at"]) <= datetime.now(UTC) + timedelta(days=1)

    row = await db.scalar(select(m.ApiKey).where(m.ApiKey.id == uuid.UUID(body["id"])))
    assert row is not None
    assert row.key_hash == hashlib.sha256(body["api_key"].encode()).hexdigest()
    assert body["api_key"] not in {row.key_hash, row.prefix, row.name}

    used = await api.get("/test/probe/read", headers={"x-api-key": body["api_key"]})
    assert used.status_code == 200
    assert used.json() == {"user_id": str(user.user_id), "via": "api_key", "api_key_id": body["id"]}


async def test_withdraw_is_a_permission_of_its_own_that_transfer_does_not_imply(
    api: httpx.AsyncClient, make_user: Any
) -> None:
    user = await make_user()
    withdraw = await create_ok(api, user, name="payouts", permissions=["withdraw"])
    transfer = await create_ok(api, user, name="transfers", permissions=["transfer"])
    assert withdraw["permissions"] == ["withdraw"]
    assert (await api.get("/test/probe/withdraw", headers={"x-api-key": withdraw["api_key"]})).status_code == 200
    refused = await api.get("/test/probe/withdraw", headers={"x-api-key": transfer["api_key"]})
    assert_error(refused, 403, "PERMISSION_DENIED")


async def test_the_list_shows_every_key_without_its_secret_and_with_its_status_now(
    api: httpx.AsyncClient, make_user: Any, db: AsyncSession
) -> None:
    user = await make_user()
    active = await create_ok(api, user, name="active")
    expired = await create_ok(api, user, name="expired")
    revoked = await create_ok(api, user, name="revoked")
    await expire(db, expired["id"])
    assert (await api.post(f"/keys/revoke/{revoked['id']}", headers=user.headers)).status_code == 200
    other = await make_user()
    await create_ok(api, other, name="someone-else's")

    response = await api.get("/keys", headers=user.headers)
    assert response.status_code == 200
    listed = response.json()
    assert [k["name"] for k in listed] == ["revoked", "expired", "active"]  # newest first
    by_name = {k["name"]: k for k in listed}
    assert {name: k["status"] for name, k in by_name.items()} == {
        "active": "active",
        "expired": "expired",  # before the sweep marks it
        "revoked": "revoked",
    }
    for key in listed:
        assert set(key) == {"id", "name", "prefix", "permissions", "expires_at", "status", "created_at"}
        assert key["prefix"].startswith("sk_live_")
        assert parse_time(key["created_at"]) <= datetime.now(UTC)
    for secret in (active["api_key"], expired["api_key"], revoked["api_key"]):
        assert secret not in response.text
    assert by_name["active"]["prefix"] == active["api_key"][: len(by_name["active"]["prefix"])]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"permissions": ["admin"]}, "permissions"),
        ({"permissions": []}, "permissions"),
        ({"permissions": "read"}, "permissions"),
        ({"expiry": "2D"}, "expiry"),
        ({"expiry": "1d"}, "expiry"),
        ({"expiry": None}, "expiry"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": 42}, "name"),
    ],
)
async def test_invalid_requests_are_validation_errors(
    api: httpx.AsyncClient, make_user: Any, body: dict[str, Any], field: str
) -> None:
    user = await make_user()
    response = await create(api, user, **body)
    assert_error(response, 400, "VALIDATION_ERROR")
    assert field in response.text
    assert (await api.get("/keys", headers=user.headers)).json() == []


async def test_a_missing_field_or_body_is_a_validation_error(api: httpx.AsyncClient, make_user: Any) -> None:
    user = await make_user()
    assert_error(
        await api.post("/keys/create", headers=user.headers, json={"name": "x", "expiry": "1D"}),
        400,
        "VALIDATION_ERROR",
    )
    assert_error(await api.post("/keys/create", headers=user.headers), 400, "VALIDATION_ERROR")
    assert_error(await api.post("/keys/rollover", headers=user.headers, json={"expiry": "1D"}), 400, "VALIDATION_ERROR")


async def test_a_sixth_active_key_is_refused_and_revoked_or_expired_keys_do_not_count(
    api: httpx.AsyncClient, make_user: Any, db: AsyncSession
) -> None:
    user = await make_user()
    keys = [await create_ok(api, user, name=f"key-{i}") for i in range(5)]
    assert_error(await create(api, user, name="sixth"), 400, "API_KEY_LIMIT_REACHED")
    await api.post(f"/keys/revoke/{keys[0]['id']}", headers=user.headers)
    await create_ok(api, user, name="after-revoke")
    assert_error(await create(api, user, name="seventh"), 400, "API_KEY_LIMIT_REACHED")
    await expire(db, keys[1]["id"])
    await create_ok(api, user, name="after-expiry")
    assert_error(await create(api, user, name="eighth"), 400, "API_KEY_LIMIT_REACHED")
    # Another user's limit is their own.
    await create_ok(api, await make_user(), name="unrelated")


async def test_twenty_concurrent_creates_make_exactly_five_keys(
    api: httpx.AsyncClient, make_user: Any, db: AsyncSession
) -> None:
    user = await make_user()
    responses = await asyncio.gather(*(create(api, user, name=f"burst-{i}") for i in range(20)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 5 + [400] * 15, [r.text for r in responses if r.status_code not in {201, 400}]
    assert {r.json()["error_code"] for r in responses if r.status_code == 400} == {"API_KEY_LIMIT_REACHED"}
    active = (await db.scalars(select(m.ApiKey).where(m.ApiKey.user_id == user.user_id))).all()
    assert len(active) == 5


async def test_twenty_concurrent_creates_against_the_real_server_make_exactly_five_keys(
    live_api: str, make_user: Any
) -> None:
    import httpx

    user = await make_user()
    async with httpx.AsyncClient(base_url=live_api, timeout=30) as client:
        responses = await asyncio.gather(
            *(client.post("/keys/create", headers=user.headers, json={**KEY, "name": f"live-{i}"}) for i in range(20))
        )
        listed = (await client.get("/keys", headers=user.headers)).json()
    assert sorted(r.status_code for r in responses) == [201] * 5 + [400] * 15
    assert len(listed) == 5


async def test_revocation_takes_effect_on_the_very_next_request_and_is_idempotent(
    api: httpx.AsyncClient, make_user: Any
) -> None:
    user = await make_user()
    key = await create_ok(api, user, permissions=["read"])
    using_it = {"x-api-key": key["api_key"]}
    assert (await api.get("/test/probe/read", headers=using_it)).status_code == 200
    response = await api.post(f"/keys/revoke/{key['id']}", headers=user.headers)
    assert response.status_code == 200
    assert response.json() == {"id": key["id"], "status": "revoked"}
    assert_error(await api.get("/test/probe/read", headers=using_it), 401, "API_KEY_REVOKED")
    again = await api.post(f"/keys/revoke/{key['id']}", headers=user.headers)
    assert again.status_code == 200
    assert again.json() == {"id": key["id"], "status": "revoked"}


async def test_an_expired_key_is_refused_even_before_the_sweep(
    api: httpx.AsyncClient, make_user: Any, db: AsyncSession
) -> None:
    user = await make_user()
    key = await create_ok(api, user, permissions=["read"])
    await expire(db, key["id"])
    assert_error(await api.get("/test/probe/read", headers={"x-api-key": key["api_key"]}), 401, "API_KEY_EXPIRED")


@pytest.mark.parametrize("key_id", ["someone-else's", "unknown", "not-a-uuid", "0"])
async def test_another_users_or_an_unknown_key_is_not_found(
    api: httpx.AsyncClient, make_user: Any, db: AsyncSession, key_id: str
) -> None:
    owner, stranger = await make_user(), await make_user()
    key = await create_ok(api, owner)
    await expire(db, key["id"])
    target = {"someone-else's": key["id"], "unknown": str(uuid.uuid4())}.get(key_id, key_id)
    assert_error(await api.post(f"/keys/revoke/{target}", headers=stranger.headers), 404, "API_KEY_NOT_FOUND")
    rollover = await api.post(
        "/keys/rollover", headers=stranger.headers, json={"expired_key_id": target, "expiry": "1D"}
    )
    assert_error(rollover, 404, "API_KEY_NOT_FOUND")
    # The owner's key is untouched.
    assert (await api.get("/keys", headers=owner.headers)).json()[0]["status"] == "expired"


async def test_rolling_over_an_expired_key_works_once_and_keeps_name_and_permissions(
    api: httpx.AsyncClient, make_user: Any, db: AsyncSession
) -> None:
    user = await make_user()
    old = await create_ok(api, user, name="payments-worker", permissions=["transfer", "read"], expiry="1H")
    await expire(db, old["id"])
    response = await api.post(
        "/keys/rollover", headers=user.headers, json={"expired_key_id": old["id"], "expiry": "1M"}
    )
    assert response.status_code == 201, response.text
    new = response.json()
    assert list(new) == ["id", "name", "api_key", "permissions", "expires_at"]
    assert new["id"] != old["id"]
    assert new["api_key"] != old["api_key"]
    assert (new["name"], new["permissions"]) == ("payments-worker", ["transfer", "read"])
    assert parse_time(new["expires_at"]) > datetime.now(UTC) + timedelta(days=27)
    assert (await api.get("/test/probe/read", headers={"x-api-key": new["api_key"]})).status_code == 200

    again = await api.post("/keys/rollover", headers=user.headers, json={"expired_key_id": old["id"], "expiry": "1M"})
    assert_error(again, 400, "API_KEY_NOT_EXPIRED")
    row = await db.scalar(select(m.ApiKey).where(m.ApiKey.id == uuid.UUID(old["id"])))
    assert row is not None
    assert str(row.rolled_over_to_id) == new["id"]


async def test_concurrent_rollovers_of_one_key_make_one_new_key(
    api: httpx.AsyncClient, make_user: Any, db: AsyncSession
) -> None:
    user = await make_user()
    old = await create_ok(api, user)
    await expire(db, old["id"])
    body = {"expired_key_id": old["id"], "expiry": "1D"}
    responses = await asyncio.gather(*(api.post("/keys/rollover", headers=user.headers, json=body) for _ in range(8)))
    assert sorted(r.status_code for r in responses) == [201] + [400] * 7
    assert len((await api.get("/keys", headers=user.headers)).json()) == 2


async def test_an_unexpired_or_revoked_key_cannot_be_rolled_over(
    api: httpx.AsyncClient, make_user: Any, db: AsyncSession
) -> None:
    user = await make_user()
    fresh = await create_ok(api, user)
    rollover = {"expiry": "1D"}
    assert_error(
        await api.post("/keys/rollover", headers=user.headers, json={**rollover, "expired_key_id": fresh["id"]}),
        400,
        "API_KEY_NOT_EXPIRED",
    )
    revoked = await create_ok(api, user)
    await api.post(f"/keys/revoke/{revoked['id']}", headers=user.headers)
    assert_error(
        await api.post("/keys/rollover", headers=user.headers, json={**rollover, "expired_key_id": revoked["id"]}),
        400,
        "API_KEY_NOT_EXPIRED",
    )
    # Revoked after it expired: still not a key to roll over.
    await expire(db, revoked["id"])
    assert_error(
        await api.post("/keys/rollover", headers=user.headers, json={**rollover, "expired_key_id": revoked["id"]}),
        400,
        "API_KEY_NOT_EXPIRED",
    )


async def test_a_rolled_over_key_counts_toward_the_limit(
    api: httpx.AsyncClient, make_user: Any, db: AsyncSession
) -> None:
    user = await make_user()
    old = await create_ok(api, user, name="to-roll")
    for i in range(4):
        await create_ok(api, user, name=f"filler-{i}")
    await expire(db, old["id"])
    await create_ok(api, user, name="fifth-active")
    rollover = await api.post(
        "/keys/rollover", headers=user.headers, json={"expired_key_id": old["id"], "expiry": "1D"}
    )
    assert_error(rollover, 400, "API_KEY_LIMIT_REACHED")
    assert not any(
        k["name"] == "to-roll" and k["status"] == "active"
        for k in (await api.get("/keys", headers=user.headers)).json()
    )


async def test_an_api_key_cannot_manage_keys(api: httpx.AsyncClient, make_user: Any) -> None:
    user = await make_user()
    key = await create_ok(api, user, permissions=["deposit", "transfer", "read"])
    as_key = {"x-api-key": key["api_key"]}
    for response in [
        await api.post("/keys/create", headers=as_key, json=KEY),
        await api.get("/keys", headers=as_key),
        await api.post("/keys/rollover", headers=as_key, json={"expired_key_id": key["id"], "expiry": "1D"}),
        await api.post(f"/keys/revoke/{key['id']}", headers=as_key),
    ]:
        assert_error(response, 403, "PERMISSION_DENIED")
    assert (await api.get("/test/probe/read", headers=as_key)).status_code == 200, "the key still works"


async def test_the_sweep_marks_due_keys_expired_and_leaves_the_others(
    api: httpx.AsyncClient, make_user: Any, db: AsyncSession, engine: AsyncEngine
) -> None:
    from app.lib.db import session_maker

    user = await make_user()
    due = await create_ok(api, user, name="due")
    fresh = await create_ok(api, user, name="fresh")
    revoked = await create_ok(api, user, name="revoked")
    await api.post(f"/keys/revoke/{revoked['id']}", headers=user.headers)
    await expire(db, due["id"])
    await expire(db, revoked["id"])
    async with session_maker(engine)() as session:
        assert await ApiKeyService(session=session).expire_due_keys() >= 1
        await session.commit()
    async with session_maker(engine)() as session:
        statuses = dict(
            (await session.execute(select(m.ApiKey.name, m.ApiKey.status).where(m.ApiKey.user_id == user.user_id)))
            .tuples()
            .all()
        )
    assert statuses == {"due": "expired", "fresh": "active", "revoked": "revoked"}
    assert_error(await api.get("/test/probe/read", headers={"x-api-key": due["api_key"]}), 401, "API_KEY_EXPIRED")
    assert (await api.get("/test/probe/read", headers={"x-api-key": fresh["api_key"]})).status_code == 200
    # An expired key marked by the sweep can still be rolled over.
    rollover = await api.post(
        "/keys/rollover", headers=user.headers, json={"expired_key_id": due["id"], "expiry": "1H"}
    )
    assert rollover.status_code == 201, rollover.text
