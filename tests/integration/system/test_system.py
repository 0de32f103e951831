"""`GET /`, `GET /health`, the docs, and the one error model of the contract."""

from __future__ import annotations

import logging

import msgspec
import pytest
from litestar import get, post
from litestar.params import JSONBody
from litestar.testing import AsyncTestClient

from app.config import Settings
from app.lib.logging import log_file_for
from app.main import create_app


async def test_root_names_the_service_and_its_docs(client: AsyncTestClient) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert response.json() == {"name": "wallet-service", "version": "0.1.0", "docs": "/docs"}


async def test_health_is_ok_when_postgres_and_redis_answer(client: AsyncTestClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


@pytest.mark.parametrize(
    ("override", "failing"),
    [
        ({"redis_url": "redis://127.0.0.1:1/0"}, "redis"),
        ({"database_url": "postgresql+asyncpg://postgres@127.0.0.1:1/nowhere"}, "database"),
    ],
)
async def test_health_is_503_degraded_when_a_dependency_is_down(
    settings: Settings, override: dict[str, str], failing: str
) -> None:
    app = create_app(settings.replaced(**override))
    async with AsyncTestClient(app=app) as client:
        response = await client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"][failing] == "error"


async def test_docs_page_and_openapi_document_are_served(client: AsyncTestClient) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    assert "openapi.json" in page.text
    document = await client.get("/docs/openapi.json")
    assert document.status_code == 200
    spec = document.json()
    assert set(spec["components"]["securitySchemes"]) >= {"BearerAuth", "ApiKeyAuth"}


async def test_unknown_route_gets_the_contract_error_body(client: AsyncTestClient) -> None:
    response = await client.get("/no/such/route")
    assert response.status_code == 404
    assert response.json() == {"detail": "No such resource.", "error_code": "NOT_FOUND"}


async def test_wrong_method_gets_the_contract_error_body(client: AsyncTestClient) -> None:
    response = await client.delete("/health")
    assert response.status_code == 405
    assert response.json()["error_code"] == "METHOD_NOT_ALLOWED"


class _Body(msgspec.Struct):
    amount: int


@post("/test/echo", sync_to_thread=False)
def _echo(data: JSONBody[_Body]) -> dict[str, int]:
    return {"amount": data.amount}


@get("/test/boom", sync_to_thread=False)
def _boom() -> None:
    msg = "secret internals that must not leak"
    raise RuntimeError(msg)


@pytest.fixture
async def probe_client() -> AsyncTestClient:
    app = create_app(extra_route_handlers=[_echo, _boom])
    async with AsyncTestClient(app=app) as client:
        yield client


async def test_malformed_json_is_a_400_validation_error(probe_client: AsyncTestClient) -> None:
    response = await probe_client.post(
        "/test/echo", content=b'{"amount": 1', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error_code"] == "VALIDATION_ERROR"
    assert set(response.json()) <= {"detail", "error_code", "errors"}


async def test_wrong_type_is_a_400_validation_error_with_field_details(probe_client: AsyncTestClient) -> None:
    response = await probe_client.post("/test/echo", json={"amount": "100"})
    assert response.status_code == 400
    body = response.json()
    assert body["error_code"] == "VALIDATION_ERROR"
    assert body["errors"]


async def test_unexpected_exception_is_a_500_without_internals(
    probe_client: AsyncTestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        response = await probe_client.get("/test/boom")
    assert response.status_code == 500
    assert response.json() == {
        "detail": "An internal error occurred; it has been logged.",
        "error_code": "INTERNAL_ERROR",
    }
    assert "secret internals" not in response.text
    assert "Traceback" not in response.text
    assert any("secret internals" in (r.exc_text or "") or r.exc_info for r in caplog.records)


async def test_every_response_carries_a_request_id_that_is_in_the_log(
    probe_client: AsyncTestClient, settings: Settings
) -> None:
    response = await probe_client.get("/test/boom", headers={"x-request-id": "trace-abc-123"})
    assert response.headers["x-request-id"] == "trace-abc-123"
    fresh = await probe_client.get("/")
    assert len(fresh.headers["x-request-id"]) == 32
    for handler in logging.getLogger().handlers:
        handler.flush()
    api_log = log_file_for(settings.log.file, "api")
    assert api_log is not None
    assert "[trace-abc-123]" in api_log.read_text()


async def test_cors_allows_only_configured_origins(settings: Settings) -> None:
    app = create_app(settings.replaced(cors_origins=["https://app.example.com"]))
    async with AsyncTestClient(app=app) as client:
        allowed = await client.get("/", headers={"origin": "https://app.example.com"})
        other = await client.get("/", headers={"origin": "https://evil.example.com"})
    assert allowed.headers.get("access-control-allow-origin") == "https://app.example.com"
    assert "access-control-allow-origin" not in other.headers


async def test_a_field_given_twice_is_refused_not_guessed(probe_client: AsyncTestClient) -> None:
    response = await probe_client.post(
        "/test/echo", content=b'{"amount": 1, "amount": 2}', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error_code"] == "VALIDATION_ERROR"
    assert "amount" in response.json()["detail"]


async def test_a_missing_body_is_a_400_that_says_so(probe_client: AsyncTestClient) -> None:
    response = await probe_client.post("/test/echo", content=b"", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json() == {
        "detail": "A JSON request body is required.",
        "error_code": "VALIDATION_ERROR",
        "errors": [{"message": "'data'", "key": "data", "source": "body"}],
    }


async def test_a_body_over_the_size_limit_is_413(probe_client: AsyncTestClient, settings: Settings) -> None:
    body = b'{"amount": 1' + b" " * (settings.http.max_body_bytes + 1) + b"}"
    response = await probe_client.post("/test/echo", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error_code"] == "PAYLOAD_TOO_LARGE"
