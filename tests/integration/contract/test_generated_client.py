"""A Python client generated from the served OpenAPI document drives the service's main flows, and `/docs` works
from the service's own files.

The client is what a customer would generate: `openapi-python-client` over `/docs/openapi.json` as a running
server serves it (the app under uvicorn in a thread of this process, with a Paystack stand-in of this module's
own), imported and called over real HTTP. No worker runs here: a transfer is accepted (202) and the test settles
it in-process.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import uvicorn

from app.lib.infra import free_port
from app.main import create_app
from tests.support.factories import fund, settle_pending
from tests.support.paystack_standin import PaystackStandIn

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from app.config import Settings
    from tests.support.users import TestUser

CLIENT_PACKAGE = "wallet_generated_client"
FUNDED = 1_000_000


class _ServedApp:
    """The app under uvicorn on a free loopback port, in a thread of this process."""

    def __init__(self, settings: Settings) -> None:
        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="generated-client-api", daemon=True)

    def __enter__(self) -> _ServedApp:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                msg = "the API did not start under uvicorn"
                raise RuntimeError(msg)
            time.sleep(0.05)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@pytest.fixture(scope="module")
def served(settings: Settings) -> Iterator[str]:
    """The base URL of the app, talking to this module's Paystack and never waiting for settlement."""
    with PaystackStandIn() as paystack:
        replaced = settings.replaced(
            paystack_base_url=paystack.base_url, paystack_secret_key=paystack.secret_key, transfer_wait_ms=0
        )
        with _ServedApp(replaced) as app:
            yield app.base_url


@pytest.fixture(scope="module")
def generated(served: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The client `openapi-python-client` generates from the served document, imported."""
    workdir = tmp_path_factory.mktemp("generated-client")
    document = workdir / "openapi.json"
    response = httpx.get(f"{served}/docs/openapi.json", timeout=10)
    assert response.status_code == 200
    document.write_bytes(response.content)
    generator = Path(sys.executable).with_name("openapi-python-client")
    command = [str(generator), "generate", "--path", str(document), "--output-path", str(workdir / CLIENT_PACKAGE)]
    command += ["--meta", "none", "--fail-on-warning"]
    # The project's own dev tool, on a file this test wrote; it formats with the environment's ruff.
    environment = {**os.environ, "PATH": f"{generator.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, env=environment)
    assert result.returncode == 0, result.stdout + result.stderr
    sys.path.insert(0, str(workdir))
    try:
        yield importlib.import_module(CLIENT_PACKAGE)
    finally:
        sys.path.remove(str(workdir))
        for name in [name for name in sys.modules if name.split(".")[0] == CLIENT_PACKAGE]:
            del sys.modules[name]


def _module(package: ModuleType, name: str) -> Any:
    return importlib.import_module(f"{package.__name__}.{name}")


def test_the_generated_modules_and_enums_carry_our_names(generated: ModuleType) -> None:
    root = Path(generated.__file__ or "").parent
    operations = {path.stem for path in (root / "api").rglob("*.py") if path.stem != "__init__"}
    assert {
        "create_deposit",
        "get_deposit_status",
        "transfer_funds",
        "list_transactions",
        "get_balance",
        "create_api_key",
        "rollover_api_key",
        "revoke_api_key",
        "verify_token",
        "register_webhook_endpoint",
        "list_webhook_endpoints",
    } <= operations
    assert (root / "api" / "wallet" / "transfer_funds.py").is_file()
    members = re.findall(
        r"^\s+([A-Z][A-Z0-9_]*) = ", "\n".join(p.read_text() for p in (root / "models").glob("*.py")), re.M
    )
    assert members
    assert [member for member in members if member.startswith("VALUE_")] == []
    models = _module(generated, "models")
    assert models.ApiKeyExpiry.ONE_DAY.value == "1D"
    assert models.EventType.ALL.value == "*"
    assert models.ErrorCode.SERVICE_UNAVAILABLE.value == "SERVICE_UNAVAILABLE"


async def test_the_generated_client_drives_the_main_flows(
    generated: ModuleType, served: str, make_user: Callable[..., Awaitable[TestUser]], engine: AsyncEngine
) -> None:
    models = _module(generated, "models")
    api = "api"
    sender, recipient = await make_user(), await make_user()
    await fund(engine, sender.wallet_id, FUNDED)
    user = generated.AuthenticatedClient(base_url=served, token=sender.token, raise_on_unexpected_status=True)

    balance = _module(generated, f"{api}.wallet.get_balance").sync(client=user)
    assert isinstance(balance, models.Balance)
    assert (balance.balance, balance.wallet_number) == (FUNDED, sender.wallet_number)

    created = _module(generated, f"{api}.api_keys.create_api_key").sync_detailed(
        client=user,
        body=models.CreateKeyRequest(
            name="generated client",
            permissions=[models.Permission.READ, models.Permission.DEPOSIT],
            expiry=models.ApiKeyExpiry.ONE_DAY,
        ),
    )
    assert created.status_code == 201
    assert created.parsed.api_key.startswith("sk_live_")
    assert created.headers.get("x-request-id")
    service = generated.AuthenticatedClient(
        base_url=served, token=created.parsed.api_key, prefix="", auth_header_name="x-api-key"
    )
    assert _module(generated, f"{api}.wallet.get_balance").sync(client=service).balance == FUNDED

    deposit = _module(generated, f"{api}.deposits.create_deposit").sync_detailed(
        client=service, body=models.DepositRequest(amount=5_000), idempotency_key="generated-client-deposit"
    )
    assert deposit.status_code == 201, deposit.content
    status = _module(generated, f"{api}.deposits.get_deposit_status").sync(
        client=service, reference=deposit.parsed.reference
    )
    assert (status.reference, status.status, status.amount) == (deposit.parsed.reference, "pending", 5_000)

    sent = _module(generated, f"{api}.wallet.transfer_funds").sync_detailed(
        client=user, body=models.TransferRequest(wallet_number=recipient.wallet_number, amount=3_000)
    )
    assert sent.status_code in {200, 202}, sent.content
    assert sent.parsed.reference
    await settle_pending(engine)
    history = _module(generated, f"{api}.wallet.list_transactions").sync(client=user, limit=10)
    assert [(item.reference, item.type_, item.amount, item.status) for item in history][:1] == [
        (sent.parsed.reference, "transfer_out", 3_000, "success")
    ]
    missing = _module(generated, f"{api}.wallet.get_transaction").sync_detailed(
        client=user, reference="no-such-reference"
    )
    assert missing.status_code == 404
    assert missing.parsed.error_code == models.ErrorCode.TRANSACTION_NOT_FOUND

    registered = _module(generated, f"{api}.webhooks.register_webhook_endpoint").sync_detailed(
        client=user,
        body=models.CreateEndpointRequest(
            url="http://127.0.0.1:9/hooks/wallet", events=[models.EventType.TRANSFER_RECEIVED]
        ),
    )
    assert registered.status_code == 201, registered.content
    assert registered.parsed.secret.startswith("whsec_")
    endpoints = _module(generated, f"{api}.webhooks.list_webhook_endpoints").sync(client=user)
    assert [(endpoint.id, endpoint.events) for endpoint in endpoints] == [(registered.parsed.id, ["transfer.received"])]

    # The body is optional: the token goes in the header, as for every other call.
    verified = _module(generated, f"{api}.auth.verify_token").sync(client=user)
    assert verified.user_id == sender.user_id


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        url = found.get("src") if tag == "script" else found.get("href") if tag == "link" else None
        if url:
            self.urls.append(url)
        self._in = tag if tag in {"script", "style"} else None

    def handle_data(self, data: str) -> None:
        if self._in and data.strip():
            self.inline.append(self._in)

    def handle_endtag(self, tag: str) -> None:
        self._in = None


def test_docs_load_only_the_services_own_files(served: str) -> None:
    page = httpx.get(f"{served}/docs", timeout=10)
    assert page.status_code == 200
    parsed = _Assets()
    parsed.feed(page.text)
    assert parsed.inline == [], "an inline script or style: refused under a strict Content-Security-Policy"
    assert len(parsed.urls) >= 4
    foreign = [url for url in parsed.urls if not url.startswith("/") or url.startswith("//")]
    assert foreign == []
    for url in parsed.urls:
        asset = httpx.get(f"{served}{url}", timeout=10)
        assert asset.status_code == 200, url
    bundle = httpx.get(f"{served}/docs/assets/swagger-ui-bundle.js", timeout=10)
    document = httpx.get(f"{served}/docs/openapi.json", timeout=10).json()
    assert document["openapi"].startswith("3.1")
    assert "openApi3_1" in bundle.text, "this Swagger UI cannot show an OpenAPI 3.1 document"
    assert not [path for path in document["paths"] if path.startswith("/docs")]
    [initializer] = [url for url in parsed.urls if url.endswith("swagger-initializer.js")]
    assert "validatorUrl: null" in httpx.get(f"{served}{initializer}", timeout=10).text, "the badge loads from outside"
