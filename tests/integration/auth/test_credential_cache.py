"""Credentials cached per API process: no database round trip on a hit, and no use after a change.

Two real API processes (two uvicorn servers on one database) show the cross-process rule: a key revoked, a
token logged out or a user deleted through one process is refused on the very next request by the other,
which had both cached. In-process tests show the cache is used (a hit needs no PostgreSQL) and is not trusted
once its notification connection is lost.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from sqlalchemy import text

from app.domain.auth.credential_cache import LISTENER_APPLICATION_NAME
from app.domain.auth.tokens import issue_token
from app.process import process_of
from tests.support.processes import ServiceProcess, service_env, start_api

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.testing import AsyncTestClient
    from sqlalchemy.ext.asyncio import AsyncEngine

    from app.config import Settings

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def two_apis() -> Iterator[tuple[str, str]]:
    """Two API processes of one deployment: what one changes, the other must notice."""
    started: list[ServiceProcess] = []
    try:
        urls = []
        for _ in range(2):
            process, url = start_api(service_env())
            started.append(process)
            urls.append(url)
        yield urls[0], urls[1]
    finally:
        for process in started:
            process.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _get(url: str, path: str, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        return await http.get(path, headers=headers)


async def _post(url: str, path: str, headers: dict[str, str], body: Any = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        return await http.post(path, headers=headers, json=body)


async def _cached_in_both(apis: tuple[str, str], path: str, headers: dict[str, str]) -> None:
    for url in apis:
        for _ in range(2):  # the first request caches the credential, the second is served from the cache
            answer = await _get(url, path, headers)
            assert answer.status_code == 200, answer.text


async def test_a_key_revoked_through_one_api_process_is_refused_by_the_other_on_the_next_request(
    two_apis: tuple[str, str], make_user
) -> None:
    first, second = two_apis
    user = await make_user()
    created = await _post(
        first, "/keys/create", bearer(user.token), {"name": "cached", "permissions": ["read"], "expiry": "1D"}
    )
    assert created.status_code == 201, created.text
    key = {"x-api-key": created.json()["api_key"]}
    await _cached_in_both(two_apis, "/wallet/balance", key)

    revoked = await _post(first, f"/keys/revoke/{created.json()['id']}", bearer(user.token))
    assert revoked.status_code == 200, revoked.text

    for url in (second, first):
        refused = await _get(url, "/wallet/balance", key)
        assert refused.status_code == 401, refused.text
        assert refused.json()["error_code"] == "API_KEY_REVOKED"


async def test_a_token_logged_out_through_one_api_process_is_refused_by_the_other_on_the_next_request(
    two_apis: tuple[str, str], make_user
) -> None:
    first, second = two_apis
    user = await make_user()
    await _cached_in_both(two_apis, "/wallet/balance", bearer(user.token))

    logged_out = await _post(first, "/auth/logout", bearer(user.token))
    assert logged_out.status_code == 200, logged_out.text

    for url in (second, first):
        refused = await _get(url, "/wallet/balance", bearer(user.token))
        assert refused.status_code == 401, refused.text
        assert refused.json()["error_code"] == "TOKEN_REVOKED"


async def test_a_user_deleted_from_the_database_is_refused_by_every_api_process_on_the_next_request(
    two_apis: tuple[str, str], engine: AsyncEngine, settings: Settings
) -> None:
    # A user without a wallet (an operator's cleanup of an abandoned sign-up): deletable, and its keys go with it.
    user_id = uuid.uuid4()
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO users (id, email, email_verified, created_at, updated_at) "
                "VALUES (:id, :email, false, now(), now())"
            ),
            {"id": user_id, "email": f"gone-{user_id.hex[:10]}@example.com"},
        )
    token = issue_token(settings, user_id=user_id, email="gone@example.com").access_token
    await _cached_in_both(two_apis, "/keys", bearer(token))

    async with engine.begin() as connection:
        await connection.execute(text("DELETE FROM users WHERE id = :id"), {"id": user_id})

    for url in two_apis:
        refused = await _get(url, "/keys", bearer(token))
        assert refused.status_code == 401, refused.text
        assert refused.json()["error_code"] == "INVALID_TOKEN"


class _NoDatabase:
    """Stands in for the verifier's pool: any lookup of a credential fails the test's request."""

    def __init__(self) -> None:
        self.asked = 0

    def acquire(self, *_: Any, **__: Any) -> Any:
        self.asked += 1
        msg = "the credential was looked up in PostgreSQL"
        raise AssertionError(msg)


@pytest.fixture
async def served(app: Litestar, client: AsyncTestClient[Litestar]) -> AsyncTestClient[Litestar]:
    await _until(lambda: process_of(app).verifier.cache.trusted)
    return client


async def _until(condition: Any, timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def test_a_cached_credential_is_verified_without_a_database_round_trip(
    app: Litestar, served: AsyncTestClient[Litestar], make_user
) -> None:
    user = await make_user()
    assert (await served.get("/wallet/balance", headers=bearer(user.token))).status_code == 200
    verifier = process_of(app).verifier
    real_pool, verifier.pool = verifier.pool, _NoDatabase()  # type: ignore[assignment]
    try:
        for _ in range(5):
            assert (await served.get("/wallet/balance", headers=bearer(user.token))).status_code == 200
        assert verifier.pool.asked == 0  # type: ignore[attr-defined]
    finally:
        verifier.pool = real_pool


async def test_the_cache_is_not_trusted_while_its_notification_connection_is_down(
    app: Litestar, served: AsyncTestClient[Litestar], engine: AsyncEngine, make_user
) -> None:
    user = await make_user()
    assert (await served.get("/wallet/balance", headers=bearer(user.token))).status_code == 200
    cache = process_of(app).verifier.cache
    assert cache.token(_jti(app, user.token)) is not None

    # The listener's connection dies (a failover, a network cut): the cache forgets everything and is not
    # trusted until it listens again, so a change made meanwhile cannot be missed.
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = :listener AND datname = current_database()"
            ),
            {"listener": LISTENER_APPLICATION_NAME},
        )
    await _until(lambda: not cache.trusted)
    assert cache.token(_jti(app, user.token)) is None
    await _until(lambda: cache.trusted)  # it listens again by itself, and starts from nothing
    assert cache.token(_jti(app, user.token)) is None
    assert (await served.get("/wallet/balance", headers=bearer(user.token))).status_code == 200


def _jti(app: Litestar, token: str) -> str:
    return process_of(app).verifier.claims(token).jti
