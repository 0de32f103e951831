"""No secret reaches a log.

Every flow of the service is driven through real processes (the API under uvicorn and a Celery worker, both
at `LOG_LEVEL=DEBUG`, plus the `wallet token` command), against a real OpenID Connect provider and the
Paystack stand-in. Then every line they wrote (their stdout and stderr, their `LOG_FILE`s, and what this
test's own process logged) is searched for every credential that existed during the run: each API key and
JWT issued (whole, and the part an attacker needs: the key after `sk_live_`, the token's signature), the
server's secrets (`JWT_SECRET`, the Paystack secret key, which is also the webhook secret, the Google
client secret) and what the sign-in carried (the authorisation code, the PKCE verifier, the provider's ID,
access and refresh tokens). A credential-shaped value planted in a signed webhook's reference, which both
processes log, shows that their log records are redacted as defence in depth (`app.lib.logging`).

The stack is private (its own Redis server, Paystack stand-in and provider, sharing only the run's
database), so every task the API enqueues is run by the worker whose log is searched here, and never by a
worker of another test.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import models as m
from app.domain.auth.sign_in import FLOW_KEY_PREFIX
from app.lib.infra import start_embedded_redis
from app.lib.redis import create_redis
from tests.support.paystack_standin import PaystackStandIn
from tests.support.processes import PROJECT_ROOT, ServiceProcess, service_env, start_api, start_worker

T = TypeVar("T")

pytestmark = pytest.mark.e2e

GOOGLE_CLIENT_ID = "wallet-audit-client"
WORKER_DEADLINE_SECONDS = 30.0
OUTSIDE_THE_SERVICE = (
    "httpx",
    "httpcore",
    "werkzeug",
    "uvicorn",
    "oidc_provider_mock",
    "authlib.integrations.flask_oauth2",
    "authlib.oauth2.rfc6749.grants",
    "authlib.oidc.core.grants",
)
"""In-process loggers of this test's own HTTP clients and of the stand-ins for Google and Paystack (the
provider is authlib's server side, which logs every token it issues at DEBUG): they handle the credentials
by design and are not the service. The service's own use of authlib (the client side) runs in the API."""


# -- the private stack ---------------------------------------------------------------------------------------


@dataclass
class RecordingProvider:
    """oidc-provider-mock on loopback, keeping every answer of its token endpoint: the ID token and the
    provider's access and refresh tokens reach only the API process, so this is the one place to learn them."""

    issuer: str
    token_answers: list[dict[str, Any]]


@pytest.fixture(scope="module")
def recording_provider() -> Iterator[RecordingProvider]:
    import flask
    import werkzeug.serving
    from oidc_provider_mock import app as provider_app

    answers: list[dict[str, Any]] = []
    provider = provider_app()

    @provider.after_request
    def keep_token_answer(response: flask.Response) -> flask.Response:
        if flask.request.path == "/oauth2/token" and response.is_json:
            answers.append(response.get_json())
        return response

    server = werkzeug.serving.make_server("127.0.0.1", 0, provider, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield RecordingProvider(f"http://127.0.0.1:{server.server_port}", answers)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


@dataclass
class Stack:
    base_url: str
    env: dict[str, str]
    log_dir: Path
    redis_url: str
    paystack: PaystackStandIn
    api: ServiceProcess
    worker: ServiceProcess
    server_secrets: dict[str, str]
    cli_stderr: list[str] = field(default_factory=list)

    def stop(self) -> None:
        """Stop both processes, so everything they would log (shutdown included) is on disk."""
        self.api.stop()
        self.worker.stop()

    def logs(self) -> dict[str, str]:
        """Every output of the service's processes, by where it was written."""
        written = {
            "API stdout/stderr": self.api.output(),
            "worker stdout/stderr": self.worker.output(),
            **{f"`wallet token` stderr #{n}": text for n, text in enumerate(self.cli_stderr, 1)},
        }
        for path in sorted(self.log_dir.glob("*.log*")):
            written[f"LOG_FILE {path.name}"] = path.read_text(errors="replace")
        return written


@pytest.fixture(scope="module")
def stack(recording_provider: RecordingProvider) -> Iterator[Stack]:
    log_dir = Path(tempfile.mkdtemp(prefix="wallet-secret-logs-"))
    redis_url, stop_redis = start_embedded_redis(log_dir / "redis-data")
    server_secrets = {
        "JWT_SECRET": f"audit-jwt-{secrets.token_urlsafe(36)}",
        "GOOGLE_CLIENT_SECRET": f"audit-google-{secrets.token_urlsafe(24)}",
    }
    paystack = PaystackStandIn().start()
    server_secrets["PAYSTACK_SECRET_KEY"] = paystack.secret_key
    env = service_env(
        REDIS_URL=redis_url,
        LOG_LEVEL="DEBUG",
        JWT_SECRET=server_secrets["JWT_SECRET"],
        PAYSTACK_BASE_URL=paystack.base_url,
        PAYSTACK_SECRET_KEY=paystack.secret_key,
        # Left to default to the secret key: that is what Paystack signs webhooks with.
        PAYSTACK_WEBHOOK_SECRET="",
        GOOGLE_CLIENT_ID=GOOGLE_CLIENT_ID,
        GOOGLE_CLIENT_SECRET=server_secrets["GOOGLE_CLIENT_SECRET"],
        GOOGLE_DISCOVERY_URL=f"{recording_provider.issuer}/.well-known/openid-configuration",
        # The browser is sent back to whatever host this names; the test takes the path and query from there.
        GOOGLE_REDIRECT_URI="http://wallet.audit.test/auth/google/callback",
        RATE_LIMIT_PER_MINUTE="0",
        TRANSFER_WAIT_MS="2000",
    )
    processes: list[ServiceProcess] = []
    try:
        # One LOG_FILE: each process writes its own file derived from it (app.api.log, app.worker.log).
        api, base_url = start_api({**env, "LOG_FILE": str(log_dir / "app.log")})
        processes.append(api)
        worker = start_worker(
            {**env, "LOG_FILE": str(log_dir / "app.log")}, concurrency=1, name="secrets-worker", loglevel="DEBUG"
        )
        processes.append(worker)
        yield Stack(base_url, env, log_dir, redis_url, paystack, api, worker, server_secrets)
    finally:
        for process in processes:
            process.stop()
        paystack.stop()
        stop_redis()


# -- what counts as a secret, and finding it ---------------------------------------------------------------


class Credentials:
    """Every secret of the run by name; each credential also under its essential part."""

    MIN_LENGTH = 16
    """Shorter values could match innocent text by chance; every real secret here is longer."""

    def __init__(self) -> None:
        self.by_name: dict[str, str] = {}

    def add(self, name: str, value: str) -> None:
        assert len(value) >= self.MIN_LENGTH, f"{name} is too short to search for: {value!r}"
        self.by_name[name] = value

    def add_api_key(self, name: str, key: str) -> None:
        assert key.startswith("sk_live_"), key
        self.add(f"API key {name}", key)
        self.add(f"API key {name} (after sk_live_)", key.removeprefix("sk_live_"))

    def add_jwt(self, name: str, token: str) -> None:
        assert token.count(".") == 2, token
        self.add(name, token)
        self.add(f"{name} (signature)", token.rsplit(".", 1)[1])


def mask(line: str, credentials: Credentials) -> str:
    for name, value in sorted(credentials.by_name.items(), key=lambda item: -len(item[1])):
        line = line.replace(value, f"<{name}>")
    return line


def leaks(logs: dict[str, str], credentials: Credentials) -> list[str]:
    """One finding per log line holding a secret: which secrets, where, and the line with them masked."""
    found = []
    for source, text in logs.items():
        for number, line in enumerate(text.splitlines(), 1):
            named = [name for name, value in credentials.by_name.items() if value in line]
            if named:
                found.append(f"{' and '.join(named)} in {source}, line {number}: {mask(line, credentials)[:600]}")
    return found


# -- driving the flows -------------------------------------------------------------------------------------


class Caller:
    """Calls the API, each request with an X-Request-ID of its own, kept by flow name to look for in the logs."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.request_ids: dict[str, str] = {}

    async def call(self, flow: str, method: str, path: str, *, expect: int | set[int], **kwargs: Any) -> httpx.Response:
        request_id = f"audit-{flow}-{uuid.uuid4().hex[:12]}"
        self.request_ids[flow] = request_id
        headers = {"X-Request-ID": request_id, **kwargs.pop("headers", {})}
        response = await self.http.request(method, path, headers=headers, **kwargs)
        allowed = {expect} if isinstance(expect, int) else expect
        assert response.status_code in allowed, (
            f"{flow}: {method} {path} answered {response.status_code}: {response.text}"
        )
        return response


async def eventually(probe: Callable[[], Awaitable[T]], accept: Callable[[T], bool], what: str) -> T:
    """Wait for a worker's asynchronous work (not a speed check: the deadline only bounds a hang)."""
    deadline = time.monotonic() + WORKER_DEADLINE_SECONDS
    while True:
        value = await probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            msg = f"timed out waiting for {what}: last saw {value!r}"
            raise AssertionError(msg)
        await asyncio.sleep(0.1)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def key_header(key: str) -> dict[str, str]:
    return {"x-api-key": key}


async def sign_in_with_google(
    stack: Stack, provider: RecordingProvider, caller: Caller, credentials: Credentials
) -> dict[str, Any]:
    """The browser flow: /auth/google, consent at the provider, the callback answering our JWT."""
    sub = f"audit-{uuid.uuid4().hex[:16]}"
    async with httpx.AsyncClient() as outside:
        registered = await outside.put(
            f"{provider.issuer}/users/{sub}", json={"email": f"{sub}@example.com", "email_verified": True}
        )
        assert registered.status_code == 204, registered.text
        started = await caller.call("google-start", "GET", "/auth/google", expect=302)
        consented = await outside.post(started.headers["location"], data={"sub": sub})
        assert consented.status_code == 302, consented.text
    back = urlsplit(consented.headers["location"])
    query = {name: values[0] for name, values in parse_qs(back.query).items()}
    credentials.add("OIDC authorisation code", query["code"])
    redis = create_redis(stack.redis_url)
    try:
        flow = json.loads(await redis.get(FLOW_KEY_PREFIX + query["state"]))
    finally:
        await redis.aclose()
    credentials.add("PKCE code verifier", flow["code_verifier"])
    credentials.add("sign-in browser cookie", next(iter(caller.http.cookies.values())))

    signed_in = (await caller.call("google-callback", "GET", f"{back.path}?{back.query}", expect=200)).json()
    credentials.add_jwt("JWT from Google sign-in", signed_in["access_token"])
    assert len(provider.token_answers) >= 1, "the API never exchanged the code at the provider"
    answer = provider.token_answers[-1]
    credentials.add_jwt("provider ID token", answer["id_token"])
    credentials.add("provider access token", answer["access_token"])
    if answer.get("refresh_token"):
        credentials.add("provider refresh token", answer["refresh_token"])
    return signed_in


def wallet_token(stack: Stack, email: str, credentials: Credentials) -> tuple[str, str]:
    """`wallet token`: its stdout is the token alone, by design; its stderr (the user and wallet, for the
    operator) is searched like a log."""
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "token", "--email", email],
        env={**stack.env, "LOG_FILE": str(stack.log_dir / "cli.log")},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    stack.cli_stderr.append(result.stderr)
    token = result.stdout.strip()
    credentials.add_jwt("JWT from `wallet token`", token)
    wallet_number = re.search(r"wallet ([0-9]{13})", result.stderr)
    assert wallet_number, result.stderr
    return token, wallet_number.group(1)


async def expire_key(engine: AsyncEngine, key_id: str) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            update(m.ApiKey).where(m.ApiKey.id == uuid.UUID(key_id)).values(expires_at=datetime.now(UTC) - timedelta(1))
        )


def tampered(token: str) -> str:
    """The token with its payload changed by one character: the signature no longer matches."""
    header, payload, signature = token.split(".")
    flipped = "A" if payload[5] != "A" else "B"
    return f"{header}.{payload[:5]}{flipped}{payload[6:]}.{signature}"


async def test_no_secret_appears_in_any_log_line_of_any_flow(
    stack: Stack, recording_provider: RecordingProvider, engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    credentials = Credentials()
    for name, value in stack.server_secrets.items():
        credentials.add(name, value)
    credentials.add(
        "Google client credentials (HTTP Basic)",
        base64.b64encode(f"{GOOGLE_CLIENT_ID}:{stack.server_secrets['GOOGLE_CLIENT_SECRET']}".encode()).decode(),
    )
    references: dict[str, str] = {}

    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as http:
        api = Caller(http)

        # Sign-in, our tokens, the command line.
        signed_in = await sign_in_with_google(stack, recording_provider, api, credentials)
        jwt = signed_in["access_token"]
        await api.call("verify-header", "POST", "/auth/verify-token", headers=bearer(jwt), expect=200)
        await api.call("verify-body", "POST", "/auth/verify-token", json={"token": jwt}, expect=200)
        recipient_jwt, recipient_wallet = wallet_token(stack, f"audit-{uuid.uuid4().hex[:10]}@example.com", credentials)
        await api.call("verify-cli-token", "POST", "/auth/verify-token", headers=bearer(recipient_jwt), expect=200)

        # API keys: create, list, expire and roll over, revoke; each refused key presented once.
        async def create_key(flow: str, permissions: list[str]) -> tuple[str, str]:
            body = {"name": flow, "permissions": permissions, "expiry": "1D"}
            created = (await api.call(flow, "POST", "/keys/create", json=body, headers=bearer(jwt), expect=201)).json()
            credentials.add_api_key(flow, created["api_key"])
            return created["id"], created["api_key"]

        _, key = await create_key("key-create", ["deposit", "transfer", "read"])
        revoked_id, revoked_key = await create_key("key-to-revoke", ["read"])
        expired_id, expired_key = await create_key("key-to-expire", ["read"])
        await api.call("key-list", "GET", "/keys", headers=bearer(jwt), expect=200)
        await expire_key(engine, expired_id)
        await api.call("expired-key", "GET", "/wallet/balance", headers=key_header(expired_key), expect=401)
        rolled = (
            await api.call(
                "key-rollover",
                "POST",
                "/keys/rollover",
                json={"expired_key_id": expired_id, "expiry": "1H"},
                headers=bearer(jwt),
                expect=201,
            )
        ).json()
        credentials.add_api_key("key-rollover", rolled["api_key"])
        await api.call("rolled-key", "GET", "/wallet/balance", headers=key_header(rolled["api_key"]), expect=200)
        await api.call("key-revoke", "POST", f"/keys/revoke/{revoked_id}", headers=bearer(jwt), expect=200)
        await api.call("revoked-key", "GET", "/wallet/balance", headers=key_header(revoked_key), expect=401)
        garbage = "sk_live_" + secrets.token_urlsafe(32)
        credentials.add_api_key("garbage key", garbage)
        await api.call("garbage-key", "GET", "/wallet/balance", headers=key_header(garbage), expect=401)

        # A deposit through Paystack: initialised, paid, its signed webhook, a forged one, its status.
        deposit = (
            await api.call(
                "deposit", "POST", "/wallet/deposit", json={"amount": 50_000}, headers=key_header(key), expect=201
            )
        ).json()
        references["deposit"] = deposit["reference"]
        credentials.add("Paystack access code", deposit["access_code"])
        stack.paystack.set_status(deposit["reference"], "success")
        event = stack.paystack.build_charge_success(deposit["reference"])
        webhook_headers = {"content-type": "application/json"}
        await api.call(
            "webhook-forged",
            "POST",
            "/wallet/paystack/webhook",
            content=event,
            headers={**webhook_headers, "x-paystack-signature": "0" * 128},
            expect=401,
        )
        await api.call(
            "webhook",
            "POST",
            "/wallet/paystack/webhook",
            content=event,
            headers={**webhook_headers, "x-paystack-signature": stack.paystack.sign(event)},
            expect=200,
        )
        # Defence in depth: a credential-shaped value that does reach a log message (here the reference of a
        # signed event, which the API and the worker both log) is redacted by the processes' log filter.
        planted = "sk_live_" + secrets.token_urlsafe(32)
        credentials.add_api_key("credential-shaped reference in a signed webhook", planted)
        odd_event = stack.paystack.build_charge_success(planted)
        await api.call(
            "webhook-odd-reference",
            "POST",
            "/wallet/paystack/webhook",
            content=odd_event,
            headers={**webhook_headers, "x-paystack-signature": stack.paystack.sign(odd_event)},
            expect=200,
        )
        status_path = f"/wallet/deposit/{deposit['reference']}/status"

        async def deposit_status() -> str:
            answer = await api.call("deposit-status", "GET", status_path, headers=key_header(key), expect=200)
            return str(answer.json()["status"])

        await eventually(deposit_status, lambda status: status == "success", "the webhook's credit")

        # Money moves: by JWT, by key with an Idempotency-Key, then the retry replayed.
        transfer = {"wallet_number": recipient_wallet, "amount": 10_000}
        sent = await api.call(
            "transfer-jwt", "POST", "/wallet/transfer", json=transfer, headers=bearer(jwt), expect={200, 202}
        )
        references["transfer by JWT"] = sent.json()["reference"]
        idempotent = {**key_header(key), "Idempotency-Key": f"audit-{uuid.uuid4().hex}"}
        transfer = {"wallet_number": recipient_wallet, "amount": 5_000}
        sent = await api.call(
            "transfer-key", "POST", "/wallet/transfer", json=transfer, headers=idempotent, expect={200, 202}
        )
        references["transfer by key"] = sent.json()["reference"]
        replayed = await api.call(
            "transfer-retry", "POST", "/wallet/transfer", json=transfer, headers=idempotent, expect={200, 202}
        )
        assert replayed.headers.get("idempotent-replayed") == "true"
        assert replayed.json()["reference"] == references["transfer by key"]

        # Reading it back.
        await api.call("balance", "GET", "/wallet/balance", headers=bearer(jwt), expect=200)
        await api.call("transactions", "GET", "/wallet/transactions", headers=key_header(key), expect=200)
        for name in ("transfer by JWT", "transfer by key"):
            path = f"/wallet/transactions/{references[name]}"

            async def transaction_status(path: str = path) -> str:
                answer = await api.call("transaction", "GET", path, headers=bearer(jwt), expect=200)
                return str(answer.json()["status"])

            await eventually(transaction_status, lambda status: status == "success", f"the settlement of {name}")

        # Wrong credentials: a tampered JWT, an API key sent as a bearer token, a logged-out token.
        await api.call("tampered-jwt", "GET", "/wallet/balance", headers=bearer(tampered(jwt)), expect=401)
        await api.call("key-as-bearer", "GET", "/wallet/balance", headers=bearer(key), expect=401)
        await api.call("logout", "POST", "/auth/logout", headers=bearer(jwt), expect=200)
        await api.call("logged-out-jwt", "GET", "/wallet/balance", headers=bearer(jwt), expect=401)
        await api.call("logged-out-verify", "POST", "/auth/verify-token", headers=bearer(jwt), expect=401)

    stack.stop()
    logs = stack.logs()
    logs["this test's process"] = "\n".join(
        f"{record.levelname} {record.name} {record.getMessage()}"
        + (f"\n{logging.Formatter().formatException(record.exc_info)}" if record.exc_info else "")
        for record in caplog.records
        if not record.name.startswith(OUTSIDE_THE_SERVICE)
    )

    found = leaks(logs, credentials)
    assert not found, f"{len(found)} log line(s) hold a secret:\n" + "\n".join(found)

    # The search means something only if the processes logged the flows at all.
    api_log = logs["LOG_FILE app.api.log"]
    worker_log = logs["LOG_FILE app.worker.log"]
    for flow in ("deposit", "webhook"):
        assert api.request_ids[flow] in api_log, f"the API log has no line for the {flow} request"
    assert deposit["reference"] in api_log
    assert deposit["reference"] in worker_log, "the worker log does not show the deposit's webhook being applied"
    redacted_event = f"[{api.request_ids['webhook-odd-reference']}] Paystack charge.success event for [REDACTED]"
    assert redacted_event in api_log, "the API did not log the planted reference, redacted"
    assert "(charge.success, [REDACTED])" in worker_log, "the worker did not log the planted reference, redacted"
