"""What a receiver relies on (the signature, the secret kept sealed) and the SSRF guard, without a network."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import socket
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from app.domain.webhooks.addresses import UnsafeUrl, destination, is_public
from app.domain.webhooks.delivery import Claimed, Sender, backoff
from app.domain.webhooks.signing import SecretBox, new_endpoint_secret, signature


def test_the_signature_is_the_hmac_sha256_of_the_timestamp_and_the_raw_body() -> None:
    secret = new_endpoint_secret()
    body = b'{"id":"evt_1","type":"transfer.sent"}'
    header = signature(secret, 1_700_000_000, body)
    t, v1 = (part.split("=", 1)[1] for part in header.split(","))
    assert t == "1700000000"
    assert v1 == hmac.new(secret.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signature(secret, 1_700_000_001, body) != header, "the timestamp is signed: no replay with a new t"


def test_a_sealed_secret_opens_only_with_the_same_jwt_secret() -> None:
    secret = new_endpoint_secret()
    sealed = SecretBox("a" * 40).seal(secret)
    assert secret not in sealed
    assert SecretBox("a" * 40).open(sealed) == secret
    with pytest.raises(ValueError, match="JWT_SECRET"):
        SecretBox("b" * 40).open(sealed)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),
        ("ff02::1", False),
    ],
)
def test_only_global_unicast_addresses_are_public(address: str, public: bool) -> None:
    assert is_public(address) is public


def _resolving_to(monkeypatch: pytest.MonkeyPatch, *answers: list[str]) -> list[str]:
    """Make the loop's resolver answer each call with the next list of addresses (a DNS that changes its mind)."""
    calls: list[str] = []
    queue = list(answers)
    loop = asyncio.get_running_loop()

    async def getaddrinfo(host: str, port: int, **_: Any) -> list[Any]:
        calls.append(host)
        addresses = queue.pop(0) if len(queue) > 1 else queue[0]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    return calls


async def test_a_name_resolving_to_any_private_address_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _resolving_to(monkeypatch, ["93.184.216.34", "10.0.0.7"])
    with pytest.raises(UnsafeUrl, match="not public"):
        await destination("https://hooks.example.com/x", allow_private=False)


async def test_a_name_that_rebinds_to_loopback_after_registration_is_not_sent_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _resolving_to(monkeypatch, ["93.184.216.34"], ["127.0.0.1"])
    checked = await destination("https://rebinding.example.com/hooks", allow_private=False)
    assert checked.address == "93.184.216.34"

    sent: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda request: sent.append(request) or httpx.Response(200))
    async with httpx.AsyncClient(transport=transport) as http:
        sender = Sender(http, SecretBox("k" * 40), allow_private=False)
        claimed = Claimed(
            id=None,  # type: ignore[arg-type]
            endpoint_id=None,  # type: ignore[arg-type]
            url="https://rebinding.example.com/hooks",
            sealed_secret=SecretBox("k" * 40).seal(new_endpoint_secret()),
            public_id="evt_1",
            type="transfer.sent",
            data={},
            event_created_at=datetime.now(UTC),
            attempts=0,
        )
        attempt = await sender.send(claimed)

    assert len(calls) == 2, "checked again at delivery"
    assert not attempt.delivered
    assert attempt.error is not None
    assert "not public" in attempt.error
    assert sent == [], "nothing was sent to the rebound address"


async def test_a_delivery_connects_to_the_address_it_checked_with_the_urls_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _resolving_to(monkeypatch, ["93.184.216.34"])
    sent: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda request: sent.append(request) or httpx.Response(204))
    async with httpx.AsyncClient(transport=transport) as http:
        secret = new_endpoint_secret()
        box = SecretBox("k" * 40)
        claimed = Claimed(
            id=None,  # type: ignore[arg-type]
            endpoint_id=None,  # type: ignore[arg-type]
            url="https://hooks.example.com/wallet?x=1",
            sealed_secret=box.seal(secret),
            public_id="evt_2",
            type="deposit.succeeded",
            data={"reference": "dep-1"},
            event_created_at=datetime.now(UTC),
            attempts=0,
        )
        attempt = await Sender(http, box, allow_private=False).send(claimed)

    assert attempt.delivered
    [request] = sent
    assert str(request.url) == "https://93.184.216.34/wallet?x=1"
    assert request.headers["host"] == "hooks.example.com"
    assert request.extensions["sni_hostname"] == "hooks.example.com"
    assert request.headers["wallet-event-id"] == "evt_2"


def test_retries_back_off_doubling_from_the_base_up_to_six_hours_with_jitter() -> None:
    for attempts, ceiling in ((1, 30), (2, 60), (3, 120), (12, 6 * 3600)):
        waits = [backoff(attempts, 30).total_seconds() for _ in range(50)]
        assert all(ceiling / 2 <= wait <= ceiling for wait in waits), (attempts, min(waits), max(waits))
        assert len(set(waits)) > 1, "jittered"
