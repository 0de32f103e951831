"""Event webhooks to the users' own services, through the real API and worker and a local receiver.

Each movement writes its event in its own transaction (the outbox) and a worker on `webhooks_out` delivers it,
signed with the endpoint's secret, at least once, retried with backoff, never holding up money moving. Every
test ends with the ledger check, which also proves one event per movement and no event without its movement.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.main import create_app
from tests.support.auth import browser, running
from tests.support.factories import fund
from tests.support.faults import assert_ledger_ok
from tests.support.payments import start_deposit, wait_for_deposit, wait_for_event
from tests.support.paystack_standin import PaystackStandIn
from tests.support.processes import PROJECT_ROOT
from tests.support.receiver import Receiver
from tests.support.waiting import eventually
from tests.support.withdrawals import accepted_withdrawal, wait_for_withdrawal


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running_receiver:
        yield running_receiver


async def register(api: httpx.AsyncClient, user, url: str, events: list[str]) -> tuple[str, str]:
    response = await api.post("/webhooks", json={"url": url, "events": events}, headers=user.headers)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["secret"].startswith("whsec_")
    return body["id"], body["secret"]


async def received(receiver: Receiver, path: str, count: int, *, timeout: float = 30) -> list[Any]:
    got = await eventually(lambda: asyncio.sleep(0, receiver.events(path)), lambda r: len(r) >= count, timeout=timeout)
    assert len(got) >= count, f"{path} received {[r.event['type'] for r in got]}"
    return got


def readme_receiver() -> Callable[[bytes, str, str], bool]:
    """The receiver the README shows, taken from the README itself (so it cannot drift from what we send)."""
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    [block] = re.findall(r"```python\n(.*?def is_genuine.*?)```", readme, flags=re.DOTALL)
    namespace: dict[str, Any] = {}
    exec(compile(block, "README.md", "exec"), namespace)
    check: Callable[[bytes, str, str], bool] = namespace["is_genuine"]
    return check


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_every_movement_reaches_its_owners_endpoint_once_signed_with_the_endpoints_secret(
    api: httpx.AsyncClient,
    live_api: str,
    paystack: PaystackStandIn,
    engine: AsyncEngine,
    make_user,
    receiver: Receiver,
) -> None:
    alice, bob = await make_user(), await make_user()
    _, alice_secret = await register(api, alice, receiver.url("/alice"), ["*"])
    _, bob_secret = await register(api, bob, receiver.url("/bob"), ["*"])

    deposit = await start_deposit(api, alice, 30_000)
    paystack.set_status(deposit.reference, "success")
    await paystack.deliver_webhook(live_api, paystack.build_charge_success(deposit.reference))
    await wait_for_deposit(engine, deposit.reference, lambda r: r.status == "success")
    sent = await api.post(
        "/wallet/transfer", json={"wallet_number": bob.wallet_number, "amount": 5_000}, headers=alice.headers
    )
    assert sent.status_code in {200, 202}, sent.text
    transfer_reference = sent.json()["reference"]
    paid = await accepted_withdrawal(api, alice, 4_000)
    failed = await accepted_withdrawal(api, alice, 3_000)
    for reference, outcome in ((paid, "transfer.success"), (failed, "transfer.failed")):
        await wait_for_withdrawal(engine, reference, lambda r: r.status == "processing")
        await paystack.deliver_webhook(live_api, paystack.build_transfer_event(reference, outcome))
    refund = paystack.build_refund_processed(deposit.reference, f"rfnd-{uuid.uuid4().hex[:8]}", 1_000)
    await paystack.deliver_webhook(live_api, refund)
    await wait_for_event(engine, refund, "processed")

    to_alice = await received(receiver, "/alice", 5)
    to_bob = await received(receiver, "/bob", 1)

    await asyncio.sleep(0.5)  # nothing more comes: once per movement
    assert len(receiver.events("/alice")) == 5
    assert len(receiver.events("/bob")) == 1
    by_type = {r.event["type"]: r for r in to_alice}
    assert set(by_type) == {
        "deposit.succeeded",
        "transfer.sent",
        "withdrawal.succeeded",
        "withdrawal.failed",
        "deposit.refunded",
    }
    assert to_bob[0].event["type"] == "transfer.received"
    is_genuine = readme_receiver()
    for delivery, secret in [*((r, alice_secret) for r in to_alice), (to_bob[0], bob_secret)]:
        assert delivery.signed_with(secret)
        assert is_genuine(delivery.body, delivery.headers["wallet-signature"], secret), "the README's receiver agrees"
        assert not delivery.signed_with(bob_secret if secret == alice_secret else alice_secret)
        event = delivery.event
        assert set(event) == {"id", "type", "created_at", "data"}
        assert event["id"].startswith("evt_")
        assert delivery.headers["wallet-event-id"] == event["id"]
        assert delivery.headers["wallet-event-type"] == event["type"]
    assert len({r.event["id"] for r in [*to_alice, *to_bob]}) == 6

    # The data is the matching GET endpoint's item, as it was at the movement.
    deposit_item = (await api.get(f"/wallet/transactions/{deposit.reference}", headers=alice.headers)).json()
    assert by_type["deposit.succeeded"].event["data"] | {"created_at": None} == deposit_item | {
        "created_at": None,
        "status": "success",
    }
    sent_item = by_type["transfer.sent"].event["data"]
    assert (sent_item["reference"], sent_item["type"], sent_item["status"]) == (
        transfer_reference,
        "transfer_out",
        "pending",
    )
    received_item = to_bob[0].event["data"]
    bob_item = (await api.get(f"/wallet/transactions/{transfer_reference}", headers=bob.headers)).json()
    assert received_item | {"created_at": None} == bob_item | {"created_at": None}
    assert _instant(received_item["created_at"]) == _instant(bob_item["created_at"])
    for reference, event_type in ((paid, "withdrawal.succeeded"), (failed, "withdrawal.failed")):
        item = (await api.get(f"/wallet/withdrawals/{reference}", headers=alice.headers)).json()
        data = by_type[event_type].event["data"]
        assert data | {"created_at": None, "completed_at": None} == item | {"created_at": None, "completed_at": None}
    refunded = by_type["deposit.refunded"].event["data"]
    assert (refunded["reference"], refunded["refund"]["amount"]) == (deposit.reference, 1_000)
    await assert_ledger_ok(engine)


async def test_a_receiver_failing_twice_then_succeeding_gets_the_same_event_three_times_and_the_log_says_delivered(
    api: httpx.AsyncClient, engine: AsyncEngine, make_user, receiver: Receiver
) -> None:
    alice, bob = await make_user(), await make_user()
    await fund(engine, alice.wallet_id, 1_000)
    endpoint_id, _ = await register(api, alice, receiver.url("/flaky"), ["transfer.sent"])
    receiver.answer_next(500, 503)

    sent = await api.post(
        "/wallet/transfer", json={"wallet_number": bob.wallet_number, "amount": 100}, headers=alice.headers
    )
    assert sent.status_code in {200, 202}

    attempts = await received(receiver, "/flaky", 3)
    assert len({r.event["id"] for r in attempts}) == 1, "the same event each time"
    log = await eventually(
        lambda: api.get(f"/webhooks/{endpoint_id}/deliveries", headers=alice.headers),
        lambda r: r.json()[0]["status"] == "delivered",
    )
    [delivery] = log.json()
    assert (delivery["status"], delivery["attempts"], delivery["last_status_code"]) == ("delivered", 3, 200)
    assert delivery["event_id"] == attempts[0].event["id"]
    assert delivery["event_type"] == "transfer.sent"
    assert delivery["delivered_at"] is not None

    again = await api.post(f"/webhooks/{endpoint_id}/deliveries/{delivery['id']}/redeliver", headers=alice.headers)
    assert again.status_code == 202
    assert again.json()["status"] == "pending"
    fourth = await received(receiver, "/flaky", 4)
    assert fourth[-1].event["id"] == attempts[0].event["id"], "a redelivery sends the same event"
    await assert_ledger_ok(engine)


async def test_an_endpoint_gets_only_the_types_it_subscribed_to_and_nothing_once_deleted(
    api: httpx.AsyncClient, engine: AsyncEngine, make_user, receiver: Receiver
) -> None:
    alice, bob = await make_user(), await make_user()
    await fund(engine, alice.wallet_id, 1_000)
    picky_id, _ = await register(api, bob, receiver.url("/picky"), ["transfer.received"])
    await register(api, bob, receiver.url("/all"), ["*"])

    for _ in range(2):
        sent = await api.post(
            "/wallet/transfer", json={"wallet_number": bob.wallet_number, "amount": 100}, headers=alice.headers
        )
        assert sent.status_code == 200
    await received(receiver, "/picky", 2)
    assert {r.event["type"] for r in receiver.events("/picky")} == {"transfer.received"}

    assert (await api.delete(f"/webhooks/{picky_id}", headers=bob.headers)).status_code == 204
    assert [e["id"] for e in (await api.get("/webhooks", headers=bob.headers)).json()] != [picky_id]
    sent = await api.post(
        "/wallet/transfer", json={"wallet_number": bob.wallet_number, "amount": 100}, headers=alice.headers
    )
    assert sent.status_code == 200
    await received(receiver, "/all", 3)  # the live endpoint got the third one
    await asyncio.sleep(0.5)
    assert len(receiver.events("/picky")) == 2, "a deleted endpoint gets nothing more"
    assert (await api.get(f"/webhooks/{picky_id}/deliveries", headers=bob.headers)).status_code == 404
    await assert_ledger_ok(engine)


async def test_a_hanging_receiver_delays_neither_settlement_nor_other_users_deliveries(
    api: httpx.AsyncClient, engine: AsyncEngine, make_user, receiver: Receiver
) -> None:
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    await fund(engine, alice.wallet_id, 10_000)
    await register(api, bob, receiver.url("/hangs"), ["*"])
    await register(api, carol, receiver.url("/carol"), ["*"])
    receiver.answer_next(*[200] * 8, delay=8.0)  # bob's first deliveries hang 8 s each

    for _ in range(4):
        sent = await api.post(
            "/wallet/transfer", json={"wallet_number": bob.wallet_number, "amount": 100}, headers=alice.headers
        )
        assert sent.status_code == 200, "settled within TRANSFER_WAIT_MS while bob's receiver hangs"
    await received(receiver, "/hangs", 4)
    started = time.monotonic()
    sent = await api.post(
        "/wallet/transfer", json={"wallet_number": carol.wallet_number, "amount": 100}, headers=alice.headers
    )
    assert sent.status_code == 200
    [delivery] = await received(receiver, "/carol", 1, timeout=6)
    assert delivery.at - started < 5, "carol's event did not wait for bob's hanging receiver"
    await assert_ledger_ok(engine)


@pytest.fixture(scope="module")
async def production_like(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process as production treats endpoints: https only, public addresses only."""
    app = create_app(settings.replaced(webhook_allow_private_urls="false"))
    async with running(app), browser(app) as client:
        yield client


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hooks",
        "https://127.0.0.1/hooks",
        "https://localhost/hooks",
        "https://10.1.2.3/hooks",
        "https://192.168.0.10/hooks",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hooks",
        "https://[fe80::1]/hooks",
        "https://224.0.0.1/hooks",
        "https://0.0.0.0/hooks",
        "https://user:pass@93.184.216.34/hooks",
        "https://no-such-host.invalid/hooks",
        "ftp://93.184.216.34/hooks",
    ],
)
async def test_a_url_that_could_reach_the_inside_is_refused_in_production(
    production_like: httpx.AsyncClient, make_user, url: str
) -> None:
    user = await make_user()
    response = await production_like.post("/webhooks", json={"url": url, "events": ["*"]}, headers=user.headers)
    assert (response.status_code, response.json()["error_code"]) == (400, "VALIDATION_ERROR"), response.text
    assert (await production_like.get("/webhooks", headers=user.headers)).json() == []


async def test_endpoint_rules_five_at_most_known_types_and_only_the_owner_sees_one(
    api: httpx.AsyncClient, make_user, receiver: Receiver
) -> None:
    owner, stranger = await make_user(), await make_user()
    ids = [(await register(api, owner, receiver.url(f"/n{i}"), ["deposit.succeeded"]))[0] for i in range(5)]
    sixth = await api.post("/webhooks", json={"url": receiver.url(), "events": ["*"]}, headers=owner.headers)
    assert (sixth.status_code, sixth.json()["error_code"]) == (400, "VALIDATION_ERROR")
    for events in (["*", "transfer.sent"], ["no.such.type"], []):
        bad = await api.post("/webhooks", json={"url": receiver.url(), "events": events}, headers=stranger.headers)
        assert (bad.status_code, bad.json()["error_code"]) == (400, "VALIDATION_ERROR"), events
    listed = (await api.get("/webhooks", headers=owner.headers)).json()
    assert [e["id"] for e in listed] == ids
    assert all("secret" not in e and e["disabled_at"] is None for e in listed)
    for method, path in (
        ("DELETE", f"/webhooks/{ids[0]}"),
        ("GET", f"/webhooks/{ids[0]}/deliveries"),
        ("POST", f"/webhooks/{ids[0]}/deliveries/{uuid.uuid4()}/redeliver"),
        ("DELETE", "/webhooks/not-an-id"),
    ):
        foreign = await api.request(method, path, headers=stranger.headers)
        assert (foreign.status_code, foreign.json()["error_code"]) == (404, "WEBHOOK_NOT_FOUND"), path
    assert len((await api.get("/webhooks", headers=owner.headers)).json()) == 5


async def test_an_endpoint_failing_for_three_days_is_disabled_says_so_and_is_counted(
    api: httpx.AsyncClient, live_api: str, engine: AsyncEngine, make_user, receiver: Receiver
) -> None:
    alice, bob = await make_user(), await make_user()
    await fund(engine, alice.wallet_id, 1_000)
    endpoint_id, _ = await register(api, alice, receiver.url("/dying"), ["*"])
    # Its deliveries have failed since three days ago (as the delivery log would have recorded).
    async with engine.begin() as connection:
        await connection.execute(
            text("UPDATE webhook_endpoints SET failing_since = now() - interval '3 days 1 minute' WHERE id = :id"),
            {"id": endpoint_id},
        )
    receiver.answer_next(500)

    sent = await api.post(
        "/wallet/transfer", json={"wallet_number": bob.wallet_number, "amount": 100}, headers=alice.headers
    )
    assert sent.status_code in {200, 202}

    listed = await eventually(
        lambda: api.get("/webhooks", headers=alice.headers), lambda r: r.json()[0]["disabled_at"] is not None
    )
    assert listed.json()[0]["disabled_at"] is not None
    [delivery] = (await api.get(f"/webhooks/{endpoint_id}/deliveries", headers=alice.headers)).json()
    assert (delivery["status"], delivery["last_status_code"]) == ("failed", 500)
    assert "endpoint disabled" in delivery["last_error"]
    again = await api.post(f"/webhooks/{endpoint_id}/deliveries/{delivery['id']}/redeliver", headers=alice.headers)
    assert (again.status_code, again.json()["error_code"]) == (400, "VALIDATION_ERROR")
    async with httpx.AsyncClient(base_url=live_api) as client:
        metrics = (await client.get("/metrics")).text
    assert "wallet_webhook_endpoints_disabled_total" in metrics
    assert 'wallet_webhook_deliveries_total{outcome="retry"}' in metrics
    assert "wallet_webhook_delivery_lag_seconds_bucket" in metrics
    await assert_ledger_ok(engine)
