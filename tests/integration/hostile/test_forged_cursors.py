"""A pagination cursor the service did not issue is 400 `VALIDATION_ERROR`, whatever it holds; never a 500.
Against the real API process."""

from __future__ import annotations

import base64
import json
import uuid

import httpx
import pytest

pytestmark = pytest.mark.e2e


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unsigned(fields: object) -> str:
    return _b64(json.dumps(fields).encode())


FORGED = {
    "id a number": _unsigned(["2026-01-01T00:00:00+00:00", 12345]),
    "id a list": _unsigned(["2026-01-01T00:00:00+00:00", [1, 2]]),
    "id an object": _unsigned(["2026-01-01T00:00:00+00:00", {"a": 1}]),
    "a timestamp before PostgreSQL's range": _unsigned(["0001-01-01T00:00:00+05:00", str(uuid.uuid4())]),
    "a timestamp that is a number": _unsigned([1e300, str(uuid.uuid4())]),
    "three fields": _unsigned(["2026-01-01T00:00:00+00:00", str(uuid.uuid4()), "x"]),
    "an object": _unsigned({"created_at": "2026-01-01T00:00:00+00:00"}),
    "a forged signature": _unsigned(["2026-01-01T00:00:00+00:00", str(uuid.uuid4())]) + "." + _b64(b"0" * 16),
    "not base64": "!!!!.????",
}


@pytest.mark.parametrize("cursor", FORGED.values(), ids=FORGED.keys())
async def test_a_cursor_the_service_did_not_issue_is_a_400(live_api: str, make_user, cursor: str) -> None:
    user = await make_user()
    async with httpx.AsyncClient(base_url=live_api, timeout=30) as client:
        response = await client.get("/wallet/transactions", params={"cursor": cursor}, headers=user.headers)
    assert response.status_code == 400, response.text
    assert response.json()["error_code"] == "VALIDATION_ERROR"


async def test_an_issued_cursor_with_its_payload_altered_is_a_400(live_api: str, make_user, engine) -> None:
    from tests.support.factories import fund

    user = await make_user()
    for _ in range(3):
        await fund(engine, user.wallet_id, 10)
    async with httpx.AsyncClient(base_url=live_api, timeout=30) as client:
        first = await client.get("/wallet/transactions", params={"limit": 1}, headers=user.headers)
        issued = httpx.URL(first.links["next"]["url"]).params["cursor"]
        assert (await client.get(first.links["next"]["url"], headers=user.headers)).status_code == 200
        _, _, signature = issued.partition(".")
        altered = _unsigned(["2030-01-01T00:00:00+00:00", str(uuid.uuid4())]) + "." + signature
        response = await client.get("/wallet/transactions", params={"cursor": altered}, headers=user.headers)
    assert response.status_code == 400
    assert response.json()["error_code"] == "VALIDATION_ERROR"
