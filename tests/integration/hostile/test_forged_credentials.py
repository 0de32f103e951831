"""Forged credentials aimed at someone else's money: every JWT an attacker can make without `JWT_SECRET`, and
every API key they can make without the secret shown once, is a 401 on the routes that move money or manage
keys, and the victim's wallet, keys and claims stay exactly as they were. Guessing is stopped by the rate
limit (429 `RATE_LIMITED` with `Retry-After`).

tests/unit/auth/test_access_tokens.py checks the decoder itself; tests/integration/auth/test_tokens_http.py
checks the common bad tokens on the read routes. Here the attacks go through the HTTP guards of the money
routes, as an attacker would send them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from litestar.testing import AsyncTestClient

from app.main import create_app
from tests.support.factories import fund

if TYPE_CHECKING:
    from litestar import Litestar
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncEngine

    from app.config import Settings
    from tests.support.hostile import Footprint
    from tests.support.users import TestUser

VICTIMS_FUNDS = 50_000


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segment(data: dict[str, Any]) -> str:
    return _b64(json.dumps(data, separators=(",", ":")).encode())


def _hmac_signed(header: dict[str, Any], claims: dict[str, Any], key: bytes) -> str:
    signing_input = f"{_segment(header)}.{_segment(claims)}"
    return f"{signing_input}.{_b64(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())}"


def forged_tokens(settings: Settings, victim: TestUser, attacker: TestUser) -> dict[str, str]:
    """Tokens claiming to be the victim, made with everything an attacker has except `JWT_SECRET`."""
    now = int(time.time())
    claims = {
        "sub": str(victim.user_id),
        "email": victim.email,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "iss": settings.auth.jwt_issuer,
        "aud": settings.auth.jwt_audience,
    }
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    public_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private_key.public_key()))
    attacker_header, attacker_payload, attacker_signature = attacker.token.split(".")
    attacker_claims = json.loads(base64.urlsafe_b64decode(attacker_payload + "=="))
    return {
        "hs256 keyed with an rsa public key": _hmac_signed({"alg": "HS256", "typ": "JWT"}, claims, public_pem),
        "hs256 keyed with nothing": _hmac_signed({"alg": "HS256", "typ": "JWT"}, claims, b""),
        "kid pointing at an empty file": _hmac_signed(
            {"alg": "HS256", "typ": "JWT", "kid": "../../../../../../dev/null"}, claims, b""
        ),
        **{
            f"alg {none}": f"{_segment({'alg': none, 'typ': 'JWT'})}.{_segment(claims)}."
            for none in ("none", "None", "NONE", "nOnE")
        },
        "alg none keeping a real signature": (
            f"{_segment({'alg': 'none', 'typ': 'JWT'})}.{_segment({**attacker_claims, 'sub': str(victim.user_id)})}"
            f".{attacker_signature}"
        ),
        "rs256 with the attacker's key embedded": jwt.encode(
            claims, private_key, algorithm="RS256", headers={"jwk": public_jwk}
        ),
        "rs256 with the attacker's key set url": jwt.encode(
            claims, private_key, algorithm="RS256", headers={"jku": "http://127.0.0.1:9/jwks.json", "kid": "k"}
        ),
        "the attacker's own token with the victim's id": (
            f"{attacker_header}.{_segment({**attacker_claims, 'sub': str(victim.user_id)})}.{attacker_signature}"
        ),
        "the signature stripped": f"{_segment({'alg': 'HS256', 'typ': 'JWT'})}.{_segment(claims)}.",
    }


FORGERIES = [
    "hs256 keyed with an rsa public key",
    "hs256 keyed with nothing",
    "kid pointing at an empty file",
    "alg none",
    "alg None",
    "alg NONE",
    "alg nOnE",
    "alg none keeping a real signature",
    "rs256 with the attacker's key embedded",
    "rs256 with the attacker's key set url",
    "the attacker's own token with the victim's id",
    "the signature stripped",
]


@pytest.fixture
async def victim(make_user: Callable[..., Awaitable[TestUser]], engine: AsyncEngine) -> TestUser:
    user = await make_user()
    await fund(engine, user.wallet_id, VICTIMS_FUNDS)
    return user


@pytest.fixture
async def attacker(make_user: Callable[..., Awaitable[TestUser]]) -> TestUser:
    return await make_user()


async def _attempts_on_the_victim(
    client: AsyncTestClient[Litestar], headers: dict[str, str], attacker: TestUser
) -> list[Any]:
    """What an attacker holding `headers` would try: take the money, keep a key, look at the wallet."""
    return [
        await client.post(
            "/wallet/transfer", json={"wallet_number": attacker.wallet_number, "amount": 1_000}, headers=headers
        ),
        await client.post("/wallet/deposit", json={"amount": 5_000}, headers=headers),
        await client.post(
            "/keys/create",
            json={"name": "backdoor", "permissions": ["transfer", "read", "deposit"], "expiry": "1Y"},
            headers=headers,
        ),
        await client.get("/wallet/balance", headers=headers),
        await client.get("/wallet/transactions", headers=headers),
        await client.post("/auth/verify-token", headers=headers),
    ]


@pytest.mark.parametrize("forgery", FORGERIES)
async def test_a_forged_token_claiming_to_be_the_victim_is_401_and_touches_nothing(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    victim: TestUser,
    attacker: TestUser,
    footprint: Callable[[TestUser], Awaitable[Footprint]],
    forgery: str,
) -> None:
    before = await footprint(victim), await footprint(attacker)
    token = forged_tokens(settings, victim, attacker)[forgery]

    for response in await _attempts_on_the_victim(client, {"Authorization": f"Bearer {token}"}, attacker):
        assert response.status_code == 401, (response.request.url, response.text)
        assert response.json()["error_code"] == "INVALID_TOKEN", (response.request.url, response.text)
        assert str(VICTIMS_FUNDS) not in response.text
    assert (await footprint(victim), await footprint(attacker)) == before
    # The victim's own token still works: the attempts did not lock them out or revoke anything.
    assert (await client.get("/wallet/balance", headers=victim.headers)).json()["balance"] == VICTIMS_FUNDS


async def test_an_api_key_made_from_what_the_service_shows_or_stores_is_401(
    client: AsyncTestClient[Litestar],
    victim: TestUser,
    attacker: TestUser,
    footprint: Callable[[TestUser], Awaitable[Footprint]],
) -> None:
    created = await client.post(
        "/keys/create",
        json={"name": "payouts", "permissions": ["transfer", "read"], "expiry": "1D"},
        headers=victim.headers,
    )
    assert created.status_code == 201, created.text
    secret = created.json()["api_key"]
    prefix = (await client.get("/keys", headers=victim.headers)).json()[0]["prefix"]
    before = await footprint(victim), await footprint(attacker)
    guesses = {
        "the listed prefix": prefix,
        "the prefix and a guessed tail": prefix + secret[len(prefix) :][::-1],
        "the stored sha-256": hashlib.sha256(secret.encode()).hexdigest(),
        "the key with one character changed": secret[:-1] + ("A" if secret[-1] != "A" else "B"),
        "the key id": created.json()["id"],
        "the key in upper case": secret.upper(),
    }
    for name, guess in guesses.items():
        for response in await _attempts_on_the_victim(client, {"x-api-key": guess}, attacker):
            if response.request.url.path == "/auth/verify-token":
                assert response.status_code == 401  # checks JWTs only: NOT_AUTHENTICATED
                continue
            assert response.status_code in {401, 403}, (name, response.request.url, response.text)
            if response.request.url.path.startswith("/keys"):
                # An API key can never manage keys, so the guard refuses before looking at the key.
                assert response.json()["error_code"] in {"PERMISSION_DENIED", "INVALID_API_KEY"}
            else:
                assert response.json()["error_code"] == "INVALID_API_KEY", (name, response.text)
    assert (await footprint(victim), await footprint(attacker)) == before
    assert (await client.get("/wallet/balance", headers={"x-api-key": secret})).status_code == 200


GUESS_LIMIT = 3


@pytest.fixture
async def limited(settings: Settings, redis: Redis) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """The app with `RATE_LIMIT_PER_MINUTE=3`, and the limiter's counters cleared before and after."""
    async for key in redis.scan_iter("ratelimit:*"):
        await redis.delete(key)
    # The window is a calendar minute: don't start a burst a moment before it rolls over.
    await asyncio.sleep(max(0.0, 3 - (60 - time.time() % 60)))
    app = create_app(settings.replaced(rate_limit_per_minute=GUESS_LIMIT, transfer_wait_ms=0))
    async with AsyncTestClient(app=app) as client:
        yield client
    async for key in redis.scan_iter("ratelimit:*"):
        await redis.delete(key)


async def test_guessing_keys_and_tokens_at_the_money_routes_is_stopped_with_429_and_retry_after(
    limited: AsyncTestClient[Litestar],
    settings: Settings,
    victim: TestUser,
    attacker: TestUser,
    footprint: Callable[[TestUser], Awaitable[Footprint]],
) -> None:
    before = await footprint(victim)
    transfer = {"wallet_number": attacker.wallet_number, "amount": 1_000}
    forged = forged_tokens(settings, victim, attacker)["hs256 keyed with an rsa public key"]
    guesses = [
        {"x-api-key": f"sk_live_{uuid.uuid4().hex}"},
        {"Authorization": f"Bearer {forged}"},
        {"x-api-key": f"sk_live_{uuid.uuid4().hex}"},
    ]
    assert len(guesses) == GUESS_LIMIT
    for headers in guesses:
        refused = await limited.post("/wallet/transfer", json=transfer, headers=headers)
        assert refused.status_code == 401, refused.text

    # Every further attempt from this address is stopped before any credential is looked at, whatever it sends.
    for headers in ({"x-api-key": f"sk_live_{uuid.uuid4().hex}"}, {"Authorization": f"Bearer {forged}"}, {}):
        stopped = await limited.post("/wallet/transfer", json=transfer, headers=headers)
        assert stopped.status_code == 429, stopped.text
        assert stopped.json() == {"detail": stopped.json()["detail"], "error_code": "RATE_LIMITED"}
        assert 1 <= int(stopped.headers["retry-after"]) <= 60
    assert await footprint(victim) == before
