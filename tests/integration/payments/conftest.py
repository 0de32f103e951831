from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.paystack_standin import PaystackStandIn

if TYPE_CHECKING:
    from app.config import Settings
    from tests.support.processes import ServiceProcess


@pytest.fixture(scope="session")
def paystack() -> Iterator[PaystackStandIn]:
    """The run's Paystack: a stand-in at the run's `PAYSTACK_BASE_URL`, accepting the run's `PAYSTACK_SECRET_KEY`.

    `tests/conftest.py` reserves that loopback address before any process starts, so the session's API and
    every worker (whichever test started it) talk to this stand-in, and its webhooks carry the signature the
    API expects. Its state is shared by the session: tests use their own references and never reset it.
    """
    port = urlsplit(os.environ["PAYSTACK_BASE_URL"]).port
    with PaystackStandIn(secret_key=os.environ["PAYSTACK_SECRET_KEY"], port=port) as standin:
        yield standin


@pytest.fixture(autouse=True)
def _paystack_traffic_follows_its_openapi(paystack: PaystackStandIn) -> Iterator[None]:
    seen = len(paystack.validation_errors)
    yield
    assert paystack.validation_errors[seen:] == []


@pytest.fixture
async def api(live_api: str, worker: ServiceProcess, paystack: PaystackStandIn) -> AsyncIterator[httpx.AsyncClient]:
    """The real API process and a real worker, both pointed at the stand-in."""
    async with httpx.AsyncClient(base_url=live_api, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def private_paystack() -> Iterator[PaystackStandIn]:
    """A stand-in of the module's own, for faults (5xx, timeouts) that must not hit other tests' traffic."""
    with PaystackStandIn() as standin:
        yield standin


@pytest.fixture
def private_settings(settings: Settings, private_paystack: PaystackStandIn) -> Settings:
    """The test settings pointed at the private stand-in, with a short Paystack timeout."""
    private_paystack.reset()
    return settings.replaced(
        paystack_base_url=private_paystack.base_url,
        paystack_secret_key=private_paystack.secret_key,
        paystack_timeout_seconds=0.3,
    )
