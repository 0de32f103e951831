"""Sign-in with Google: the browser's round trip through the provider, kept in a server-side session.

`start` stores a flow (state, nonce, PKCE verifier, the hash of a browser cookie) in Redis for 10 minutes;
`finish` takes it out once (GETDEL), checks it is the same browser, exchanges the code, verifies the ID token
(`oidc.py`) and signs the user in, creating user and wallet exactly once (details: `docs/security.md`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from app.domain.auth.tokens import IssuedToken, issue_token
from app.domain.auth.users import Identity, UserService
from app.lib.errors import OAuthFailed

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from app.config import Settings
    from app.db import models as m
    from app.lib.uow import UnitOfWork

FLOW_KEY_PREFIX: Final = "oauth:flow:"
FLOW_TTL_SECONDS: Final = 600
BROWSER_COOKIE: Final = "wallet_oauth_browser"
"""HttpOnly cookie binding a flow to the browser that started it."""
MAX_EMAIL_LENGTH: Final = 320
_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{20,128}$")
_ERROR_SHAPE = re.compile(r"^[a-z_]{1,64}$")


@dataclass(frozen=True)
class StartedFlow:
    authorization_url: str
    browser_id: str
    """The value of the `BROWSER_COOKIE` the browser must keep until it comes back."""


@dataclass(frozen=True)
class SignedIn:
    user: m.User
    wallet: m.Wallet
    token: IssuedToken


def _digest(browser_id: str) -> str:
    return hashlib.sha256(browser_id.encode("utf-8")).hexdigest()


class GoogleSignIn:
    """Sign-in with the configured OpenID Connect provider."""

    def __init__(self, settings: Settings, redis: Redis) -> None:
        # Imported here: the OpenID Connect stack (authlib, joserfc) weighs megabytes that only a sign-in needs.
        from app.domain.auth.oidc import OpenIDProvider

        self.settings = settings
        self.redis = redis
        self.provider = OpenIDProvider(settings)

    async def start(self, browser_id: str | None) -> StartedFlow:
        """A new flow for this browser (keeping its browser id, so two tabs can sign in at once)."""
        if browser_id is None or not _TOKEN_SHAPE.match(browser_id):
            browser_id = secrets.token_urlsafe(32)
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        code_verifier = secrets.token_urlsafe(48)  # 64 characters, within PKCE's 43 to 128
        url = await self.provider.authorization_url(state=state, nonce=nonce, code_verifier=code_verifier)
        flow = {"nonce": nonce, "code_verifier": code_verifier, "browser": _digest(browser_id)}
        await self.redis.set(FLOW_KEY_PREFIX + state, json.dumps(flow), ex=FLOW_TTL_SECONDS)
        return StartedFlow(authorization_url=url, browser_id=browser_id)

    async def finish(
        self,
        uow: UnitOfWork,
        *,
        browser_id: str | None,
        state: str | None,
        code: str | None,
        error: str | None,
    ) -> SignedIn:
        """Complete the flow the provider sent the browser back with.

        Raises:
            OAuthFailed: a denied consent, an unknown, used or foreign state, a failed code exchange, an ID
                token we cannot trust, or an e-mail address the provider has not verified.
        """
        flow = await self._take_flow(state)
        if error is not None:
            shown = error if _ERROR_SHAPE.match(error) else "error"
            raise OAuthFailed(f"The identity provider did not sign you in (`{shown}`).")
        if flow is None:
            raise OAuthFailed("This sign-in link is unknown, expired or already used; start again at /auth/google.")
        if browser_id is None or not hmac.compare_digest(_digest(browser_id), str(flow.get("browser", ""))):
            raise OAuthFailed("This sign-in was started in another browser; start again at /auth/google.")
        if not code:
            raise OAuthFailed("The identity provider sent no authorisation code.")
        identity = await self.provider.identity_from_code(
            code=code, code_verifier=str(flow["code_verifier"]), nonce=str(flow["nonce"])
        )
        if not identity.email or len(identity.email) > MAX_EMAIL_LENGTH or "@" not in identity.email:
            raise OAuthFailed("The identity provider did not share an e-mail address.")
        if not identity.email_verified:
            raise OAuthFailed("The identity provider has not verified this e-mail address.")
        user, wallet = await uow.run(
            lambda: UserService(session=uow.session).sign_in(identity, self.settings.money.currency)
        )
        return SignedIn(user=user, wallet=wallet, token=issue_token(self.settings, user_id=user.id, email=user.email))

    async def _take_flow(self, state: str | None) -> dict[str, object] | None:
        if not state or not _TOKEN_SHAPE.match(state):
            return None
        raw = await self.redis.getdel(FLOW_KEY_PREFIX + state)
        if raw is None:
            return None
        flow = json.loads(raw)
        return flow if isinstance(flow, dict) else None


async def sign_in_locally(uow: UnitOfWork, settings: Settings, *, email: str, name: str | None = None) -> SignedIn:
    """Sign in a local user by e-mail alone, creating the user and wallet on first use (`wallet token`).

    No identity provider vouches for the address, so this is for development and tests only; the command
    line refuses it when `APP_ENV=production`.
    """
    identity = Identity(email=email, name=name)
    user, wallet = await uow.run(lambda: UserService(session=uow.session).sign_in(identity, settings.money.currency))
    return SignedIn(user=user, wallet=wallet, token=issue_token(settings, user_id=user.id, email=user.email))
