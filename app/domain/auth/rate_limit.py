"""Rate limiting on Redis: `RATE_LIMIT_PER_MINUTE` requests per verified user, API key or client address.

A fixed one-minute window per subject, which is the caller's verified identity or else its address (junk
credentials count against the address); failed authentications count against the address too. The Paystack
webhook and `/health` are exempt; without Redis, requests pass (details: `docs/security.md`).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from app.config import Settings
from app.domain.auth.credentials import CredentialVerifier, identify, presented_credentials
from app.lib.errors import RateLimited, WalletError
from app.lib.net import client_address
from app.process import process_of

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

EXEMPT_PATHS = frozenset({"/wallet/paystack/webhook", "/health"})
WINDOW_SECONDS = 60
AUTH_FAILURE_STATUS = 401


async def rate_limit_subject(scope: Scope, settings: Settings, verifier: CredentialVerifier) -> str:
    """Who a request counts against: its verified identity, else its address."""
    presented = presented_credentials(scope)
    if presented.token is not None or presented.api_key is not None:
        try:
            caller = await identify(scope, verifier)
        except WalletError:
            pass  # unverified: the address pays for it (and the route's guard refuses it)
        else:
            return caller.principal
    return f"ip:{client_address(scope, settings.http)}"


class RateLimitMiddleware:
    """Answers 429 `RATE_LIMITED` with `Retry-After` once a subject used up its minute."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        process = process_of(scope["app"])
        settings = process.settings
        limit = settings.http.rate_limit_per_minute
        if scope["type"] != "http" or limit <= 0 or scope["path"] in EXEMPT_PATHS:  # type: ignore[comparison-overlap]
            await self.app(scope, receive, send)
            return
        redis = process.redis
        window = int(time.time()) // WINDOW_SECONDS
        retry_after = str(WINDOW_SECONDS - int(time.time()) % WINDOW_SECONDS)
        address_key = f"ratelimit:authfail:{client_address(scope, settings.http)}:{window}"
        subject_key = f"ratelimit:{await rate_limit_subject(scope, settings, process.verifier)}:{window}"
        try:
            async with redis.pipeline(transaction=False) as pipe:
                pipe.incr(subject_key)
                pipe.expire(subject_key, WINDOW_SECONDS + 1)
                pipe.get(address_key)
                used, _, failures = await pipe.execute()
        except Exception:
            logger.warning("rate limiter unavailable; letting the request through", exc_info=True)
            await self.app(scope, receive, send)
            return
        if int(used) > limit or int(failures or 0) >= limit:
            raise RateLimited(headers={"Retry-After": retry_after})

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == AUTH_FAILURE_STATUS:
                try:
                    async with redis.pipeline(transaction=False) as pipe:
                        pipe.incr(address_key)
                        pipe.expire(address_key, WINDOW_SECONDS + 1)
                        await pipe.execute()
                except Exception:
                    logger.warning("could not count a failed authentication", exc_info=True)
            await send(message)

        await self.app(scope, receive, counting_send)
