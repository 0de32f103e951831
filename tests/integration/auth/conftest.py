from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest

from tests.support.auth import BASE_URL, GOOGLE_CLIENT_ID, PROBES, api, running, wallet_app

__all__ = ("api", "wallet_app")  # fixtures shared with the keys tests

if TYPE_CHECKING:
    from litestar import Litestar

    from app.config import Settings


@pytest.fixture(scope="session")
def oidc_provider() -> Iterator[str]:
    """A real OpenID Connect provider (oidc-provider-mock) on loopback; yields its issuer URL."""
    from oidc_provider_mock import run_server_in_thread

    with run_server_in_thread() as server:
        yield f"http://127.0.0.1:{server.server_port}"


@pytest.fixture(scope="module")
def google_settings(settings: Settings, oidc_provider: str) -> Settings:
    """The test settings, signing in through the provider on loopback as client `wallet-test-client`."""
    return settings.replaced(
        google_client_id=GOOGLE_CLIENT_ID,
        google_client_secret="wallet-test-client-secret",
        google_redirect_uri=f"{BASE_URL}/auth/google/callback",
        google_discovery_url=f"{oidc_provider}/.well-known/openid-configuration",
    )


@pytest.fixture(scope="module")
async def signin_app(google_settings: Settings) -> AsyncIterator[Litestar]:
    from app.main import create_app

    async with running(create_app(google_settings, extra_route_handlers=PROBES)) as app:
        yield app
