"""Sign-in with Google, driven like a browser through a real OpenID Connect provider on loopback.

`/auth/google` → the provider's consent page (oidc-provider-mock; the test "browser" consents by POSTing
the form field `sub`) → `/auth/google/callback`. Cases the real provider cannot produce (an ID token for
another client, signed with an unknown key, expired...) come from `forged_provider.py`.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest
from joserfc.jwk import RSAKey
from sqlalchemy import func, select

from app.db import models as m
from app.domain.auth.sign_in import BROWSER_COOKIE, FLOW_KEY_PREFIX, GoogleSignIn
from app.lib.errors import OAuthFailed
from tests.support.auth import BASE_URL, GOOGLE_CLIENT_ID, browser, running
from tests.support.forged_provider import CLIENT_ID as FORGED_CLIENT_ID
from tests.support.forged_provider import ForgedProvider, run_forged_provider, s256

if TYPE_CHECKING:
    from litestar import Litestar
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.config import Settings

CALLBACK_PATH = "/auth/google/callback"


def new_subject() -> str:
    return f"sub-{uuid.uuid4().hex[:16]}"


async def register_user(provider: str, sub: str, **claims: Any) -> None:
    """Tell the provider who `sub` is (its ID tokens carry these claims)."""
    async with httpx.AsyncClient() as client:
        response = await client.put(f"{provider}/users/{sub}", json=claims)
    assert response.status_code == 204, response.text


async def start(app_browser: httpx.AsyncClient) -> str:
    response = await app_browser.get("/auth/google")
    assert response.status_code == 302, response.text
    return response.headers["location"]


async def consent(authorization_url: str, sub: str | None = None, *, deny: bool = False) -> str:
    """The user at the provider's consent page; returns where the provider sends the browser back."""
    form = {"action": "deny"} if deny else {"sub": sub}
    async with httpx.AsyncClient() as provider_browser:
        response = await provider_browser.post(authorization_url, data=form)
    assert response.status_code == 302, response.text
    back = urlsplit(response.headers["location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == BASE_URL + CALLBACK_PATH
    return f"{back.path}?{back.query}"


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(query=urlencode({**query_of(url), **changes})))


async def users_with_email(db: AsyncSession, email: str) -> int:
    return int(await db.scalar(select(func.count()).select_from(m.User).where(m.User.email == email)) or 0)


def assert_oauth_error(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["error_code"] == "OAUTH_ERROR"


async def test_first_sign_in_creates_the_user_and_wallet_and_answers_a_working_token(
    signin_app: Litestar, oidc_provider: str, settings: Settings, db: AsyncSession
) -> None:
    sub = new_subject()
    email = f"{sub}@Example.com"
    await register_user(
        oidc_provider, sub, email=email, email_verified=True, name="Ada Lovelace", picture="https://example.com/ada.png"
    )
    async with browser(signin_app) as app_browser:
        callback = await consent(await start(app_browser), sub)
        response = await app_browser.get(callback)
        assert response.status_code == 200, response.text
        body = response.json()
        assert list(body) == ["access_token", "token_type", "expires_in", "user", "wallet_number"]
        assert body["token_type"] == "bearer"
        assert body["expires_in"] == settings.auth.jwt_expires_minutes * 60
        assert body["user"]["email"] == email.lower()
        assert body["user"]["name"] == "Ada Lovelace"
        assert body["user"]["picture"] == "https://example.com/ada.png"
        assert re.fullmatch(r"[0-9]{13}", body["wallet_number"])
        assert response.headers["cache-control"] == "no-store"

        bearer = {"Authorization": f"Bearer {body['access_token']}"}
        assert (await app_browser.get("/keys", headers=bearer)).json() == []
        verified = (await app_browser.post("/auth/verify-token", headers=bearer)).json()
        assert verified["user_id"] == body["user"]["id"]
        assert verified["email"] == email.lower()

    user = await db.scalar(select(m.User).where(m.User.email == email.lower()))
    assert user is not None
    assert str(user.id) == body["user"]["id"]
    assert user.provider_subject == f"{oidc_provider}|{sub}"
    assert user.email_verified is True
    wallet = await db.scalar(select(m.Wallet).where(m.Wallet.user_id == user.id))
    assert wallet is not None
    assert wallet.number == body["wallet_number"]


async def test_signing_in_again_finds_the_same_user_and_wallet(signin_app: Litestar, oidc_provider: str) -> None:
    sub = new_subject()
    await register_user(oidc_provider, sub, email=f"{sub}@example.com", email_verified=True, name="First Name")
    answers = []
    for _ in range(2):
        async with browser(signin_app) as app_browser:
            response = await app_browser.get(await consent(await start(app_browser), sub))
            assert response.status_code == 200, response.text
            answers.append(response.json())
        await register_user(oidc_provider, sub, email=f"{sub}@example.com", email_verified=True, name="New Name")
    assert answers[0]["user"]["id"] == answers[1]["user"]["id"]
    assert answers[0]["wallet_number"] == answers[1]["wallet_number"]
    assert answers[0]["access_token"] != answers[1]["access_token"]
    assert answers[1]["user"]["name"] == "New Name"


async def test_the_redirect_carries_state_nonce_and_an_s256_pkce_challenge_kept_server_side(
    signin_app: Litestar, redis: Redis
) -> None:
    async with browser(signin_app) as app_browser:
        response = await app_browser.get("/auth/google")
    assert response.status_code == 302
    params = query_of(response.headers["location"])
    assert params["response_type"] == "code"
    assert params["client_id"] == GOOGLE_CLIENT_ID
    assert params["redirect_uri"] == BASE_URL + CALLBACK_PATH
    assert set(params["scope"].split()) >= {"openid", "email", "profile"}
    assert params["code_challenge_method"] == "S256"
    assert len(params["state"]) >= 32
    assert len(params["nonce"]) >= 32

    flow = json.loads(await redis.get(FLOW_KEY_PREFIX + params["state"]))
    assert flow["nonce"] == params["nonce"]
    assert s256(flow["code_verifier"]) == params["code_challenge"]
    assert 0 < await redis.ttl(FLOW_KEY_PREFIX + params["state"]) <= 600

    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{BROWSER_COOKIE}=")
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie or "SameSite=Lax" in cookie
    assert "Path=/auth/google" in cookie
    # The cookie holds a browser id, never the flow's secrets.
    assert params["nonce"] not in cookie
    assert flow["code_verifier"] not in cookie


async def test_a_denied_consent_is_an_oauth_error(signin_app: Litestar, db: AsyncSession) -> None:
    async with browser(signin_app) as app_browser:
        authorization_url = await start(app_browser)
        callback = await consent(authorization_url, deny=True)
        assert query_of(callback)["error"] == "access_denied"
        assert_oauth_error(await app_browser.get(callback))
        # Even with the state of the flow, the browser comes back with no code: still refused.
        state = query_of(authorization_url)["state"]
        assert_oauth_error(await app_browser.get(f"{CALLBACK_PATH}?error=access_denied&state={state}"))


async def test_a_forged_state_is_an_oauth_error(signin_app: Litestar, oidc_provider: str) -> None:
    sub = new_subject()
    await register_user(oidc_provider, sub, email=f"{sub}@example.com", email_verified=True)
    async with browser(signin_app) as app_browser:
        callback = await consent(await start(app_browser), sub)
        forged = with_query(callback, state=uuid.uuid4().hex + uuid.uuid4().hex)
        assert_oauth_error(await app_browser.get(forged))
        for bad_state in ["", "x", "../../etc", "a" * 500]:
            assert_oauth_error(await app_browser.get(with_query(callback, state=bad_state)))
        assert_oauth_error(await app_browser.get(CALLBACK_PATH))


async def test_a_state_from_another_browser_is_an_oauth_error(
    signin_app: Litestar, oidc_provider: str, db: AsyncSession
) -> None:
    sub = new_subject()
    await register_user(oidc_provider, sub, email=f"{sub}@example.com", email_verified=True)
    async with browser(signin_app) as victim:
        callback = await consent(await start(victim), sub)
    async with browser(signin_app) as attacker:
        await start(attacker)  # the attacker has a sign-in cookie of their own, just not this flow's
        assert_oauth_error(await attacker.get(callback))
    async with browser(signin_app) as cookieless:
        assert_oauth_error(await cookieless.get(callback))
    assert await users_with_email(db, f"{sub}@example.com") == 0


async def test_a_state_works_only_once(signin_app: Litestar, oidc_provider: str) -> None:
    sub = new_subject()
    await register_user(oidc_provider, sub, email=f"{sub}@example.com", email_verified=True)
    async with browser(signin_app) as app_browser:
        callback = await consent(await start(app_browser), sub)
        assert (await app_browser.get(callback)).status_code == 200
        assert_oauth_error(await app_browser.get(callback))


async def test_an_id_token_with_another_nonce_is_an_oauth_error(
    signin_app: Litestar, oidc_provider: str, db: AsyncSession
) -> None:
    sub = new_subject()
    await register_user(oidc_provider, sub, email=f"{sub}@example.com", email_verified=True)
    async with browser(signin_app) as app_browser:
        authorization_url = await start(app_browser)
        # The real provider puts whatever nonce it was given into the ID token: hand it another one.
        tampered = with_query(authorization_url, nonce="a-nonce-this-flow-never-made")
        assert_oauth_error(await app_browser.get(await consent(tampered, sub)))
    assert await users_with_email(db, f"{sub}@example.com") == 0


@pytest.mark.parametrize(
    "claims",
    [{"email_verified": False}, {}, {"email_verified": "false"}],
    ids=["unverified", "not-said", "string-false"],
)
async def test_an_unverified_email_is_an_oauth_error_and_creates_nobody(
    signin_app: Litestar, oidc_provider: str, db: AsyncSession, claims: dict[str, Any]
) -> None:
    sub = new_subject()
    await register_user(oidc_provider, sub, email=f"{sub}@example.com", **claims)
    async with browser(signin_app) as app_browser:
        assert_oauth_error(await app_browser.get(await consent(await start(app_browser), sub)))
    assert await users_with_email(db, f"{sub}@example.com") == 0


async def test_concurrent_first_sign_ins_of_one_new_user_create_one_user_and_one_wallet(
    signin_app: Litestar, oidc_provider: str, db: AsyncSession
) -> None:
    sub = new_subject()
    email = f"{sub}@example.com"
    await register_user(oidc_provider, sub, email=email, email_verified=True)
    browsers = [browser(signin_app) for _ in range(4)]
    try:
        callbacks = [await consent(await start(b), sub) for b in browsers]
        responses = await asyncio.gather(*(b.get(c) for b, c in zip(browsers, callbacks, strict=True)))
    finally:
        for b in browsers:
            await b.aclose()
    assert [r.status_code for r in responses] == [200] * len(browsers), [r.text for r in responses]
    assert len({r.json()["user"]["id"] for r in responses}) == 1
    assert len({r.json()["wallet_number"] for r in responses}) == 1
    assert await users_with_email(db, email) == 1
    user_id = uuid.UUID(responses[0].json()["user"]["id"])
    assert await db.scalar(select(func.count()).select_from(m.Wallet).where(m.Wallet.user_id == user_id)) == 1


async def test_a_local_user_who_signs_in_with_google_keeps_their_wallet(
    signin_app: Litestar, oidc_provider: str, make_user: Any
) -> None:
    local = await make_user()
    sub = new_subject()
    await register_user(oidc_provider, sub, email=local.email.upper(), email_verified=True)
    async with browser(signin_app) as app_browser:
        response = await app_browser.get(await consent(await start(app_browser), sub))
    assert response.status_code == 200, response.text
    assert response.json()["user"]["id"] == str(local.user_id)
    assert response.json()["wallet_number"] == local.wallet_number


@pytest.mark.parametrize(
    "override",
    [
        {"google_discovery_url": "http://127.0.0.1:9/.well-known/openid-configuration"},
        {"google_client_id": ""},
    ],
    ids=["provider-unreachable", "not-configured"],
)
async def test_starting_sign_in_without_a_usable_provider_is_an_oauth_error(
    google_settings: Settings, redis: Redis, override: dict[str, str]
) -> None:
    # Through the service: an `OAuthFailed` is what the error handler answers as 400 `OAUTH_ERROR`.
    with pytest.raises(OAuthFailed):
        await GoogleSignIn(google_settings.replaced(**override), redis).start(None)


async def test_a_discovery_document_that_is_not_served_under_its_issuer_is_refused(
    settings: Settings, redis: Redis, forged_server: ForgedProvider
) -> None:
    elsewhere = f"{forged_server.issuer}/tenant/.well-known/openid-configuration"
    with pytest.raises(OAuthFailed):
        await GoogleSignIn(
            settings.replaced(google_client_id=FORGED_CLIENT_ID, google_discovery_url=elsewhere), redis
        ).start(None)


# ID tokens the real provider would never issue, from a provider of our own.


@pytest.fixture(scope="module")
def forged_server() -> Iterator[ForgedProvider]:
    with run_forged_provider() as provider:
        yield provider


@pytest.fixture(scope="module")
async def forged_app(settings: Settings, forged_server: ForgedProvider) -> Any:
    from app.main import create_app

    forged_settings = settings.replaced(
        google_client_id=FORGED_CLIENT_ID,
        google_client_secret="forged-client-secret",
        google_redirect_uri=BASE_URL + CALLBACK_PATH,
        google_discovery_url=forged_server.discovery_url,
    )
    async with running(create_app(forged_settings)) as app:
        yield app


@pytest.fixture
def forged(forged_server: ForgedProvider) -> Iterator[ForgedProvider]:
    forged_server.reset()
    yield forged_server
    forged_server.reset()


async def forged_sign_in(app: Litestar, forged: ForgedProvider, subject: str) -> httpx.Response:
    """Start at `/auth/google`, then come back with a code; the forged provider answers the exchange."""
    async with browser(app) as app_browser:
        params = query_of(await start(app_browser))
        forged.nonce = params["nonce"]
        forged.expected_challenge = params["code_challenge"]
        return await app_browser.get(f"{CALLBACK_PATH}?{urlencode({'code': subject, 'state': params['state']})}")


def _b64(data: dict[str, Any]) -> str:
    import base64

    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_the_code_exchange_proves_pkce_and_a_correct_id_token_signs_in(
    forged_app: Litestar, forged: ForgedProvider
) -> None:
    subject = new_subject()
    response = await forged_sign_in(forged_app, forged, subject)
    assert response.status_code == 200, response.text
    assert response.json()["user"]["email"] == f"{subject}@forged.example"
    exchange = forged.token_requests[-1]
    assert exchange["grant_type"] == "authorization_code"
    assert exchange["redirect_uri"] == BASE_URL + CALLBACK_PATH
    assert s256(exchange["code_verifier"]) == forged.expected_challenge


def _now() -> int:
    import time

    return int(time.time())


BAD_ID_TOKENS: dict[str, dict[str, Any]] = {
    "another-audience": {"claims": lambda c: {**c, "aud": "another-client"}},
    "audience-list-without-us": {"claims": lambda c: {**c, "aud": ["another-client"]}},
    "extra-untrusted-audience": {
        "claims": lambda c: {**c, "aud": [FORGED_CLIENT_ID, "another"], "azp": FORGED_CLIENT_ID}
    },
    "another-issuer": {"claims": lambda c: {**c, "iss": "https://accounts.google.com"}},
    "expired": {"claims": lambda c: {**c, "iat": _now() - 7200, "exp": _now() - 3600}},
    "issued-in-the-future": {"claims": lambda c: {**c, "iat": _now() + 3600, "exp": _now() + 7200}},
    "no-nonce": {"claims": lambda c: {k: v for k, v in c.items() if k != "nonce"}},
    "wrong-nonce": {"claims": lambda c: {**c, "nonce": "not-the-flows-nonce"}},
    "no-subject": {"claims": lambda c: {k: v for k, v in c.items() if k != "sub"}},
    "unsigned-alg-none": {"encode": lambda c, _: f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(c)}."},
    "bad-signature": {
        "encode": lambda c, k: __import__("joserfc").jwt.encode({"alg": "RS256", "kid": k.kid}, c, k)[:-6] + "AAAAAA"
    },
    "not-a-jwt": {"encode": lambda c, k: "definitely-not-a-jwt"},
}


@pytest.mark.parametrize("case", list(BAD_ID_TOKENS), ids=list(BAD_ID_TOKENS))
async def test_an_id_token_that_fails_verification_is_an_oauth_error(
    forged_app: Litestar, forged: ForgedProvider, db: AsyncSession, case: str
) -> None:
    for name, value in BAD_ID_TOKENS[case].items():
        setattr(forged, name, value)
    subject = new_subject()
    assert_oauth_error(await forged_sign_in(forged_app, forged, subject))
    assert await users_with_email(db, f"{subject}@forged.example") == 0


async def test_an_id_token_signed_with_an_unpublished_key_is_refused_after_one_refetch(
    forged_app: Litestar, forged: ForgedProvider
) -> None:
    assert (await forged_sign_in(forged_app, forged, new_subject())).status_code == 200
    fetches = forged.jwks_fetches
    forged.signing_key = RSAKey.generate_key(2048, parameters={"kid": "key-never-published"})
    assert_oauth_error(await forged_sign_in(forged_app, forged, new_subject()))
    assert forged.jwks_fetches == fetches + 1


async def test_a_rotated_signing_key_is_picked_up_by_refetching_the_jwks_once(
    forged_app: Litestar, forged: ForgedProvider
) -> None:
    assert (await forged_sign_in(forged_app, forged, new_subject())).status_code == 200
    fetches = forged.jwks_fetches
    assert (await forged_sign_in(forged_app, forged, new_subject())).status_code == 200
    assert forged.jwks_fetches == fetches, "the JWKS is cached between sign-ins"
    rotated = RSAKey.generate_key(2048, parameters={"kid": f"key-{uuid.uuid4().hex[:8]}"})
    forged.keys = [forged.keys[0], rotated]
    forged.signing_key = rotated
    assert (await forged_sign_in(forged_app, forged, new_subject())).status_code == 200
    assert forged.jwks_fetches == fetches + 1
