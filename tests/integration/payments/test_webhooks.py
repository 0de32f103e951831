"""`POST /wallet/paystack/webhook`: signed events stored before the 200, applied once by a real worker."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
from redis.asyncio import Redis
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.db import models as m
from app.domain.payments.events import MAX_ATTEMPTS
from app.domain.payments.paystack import sign_webhook
from app.lib.db import session_maker
from app.lib.tasks import TaskName, enqueue
from tests.support.factories import stored_event
from tests.support.payments import (
    balance_of,
    deposit_row,
    events_with_body,
    in_process,
    paystack_example,
    start_deposit,
    wait_for_deposit,
    wait_for_event,
)
from tests.support.paystack_standin import CHARGE_SUCCESS_PATH, PaystackStandIn

PAYSTACK_IP = "52.31.139.75"


async def signed_post(
    app: httpx.AsyncClient, paystack: PaystackStandIn, body: bytes, headers: dict[str, str] | None = None
) -> httpx.Response:
    """POST a correctly signed body to the webhook of an in-process app."""
    return await app.post(
        "/wallet/paystack/webhook",
        content=body,
        headers={"content-type": "application/json", "x-paystack-signature": paystack.sign(body), **(headers or {})},
    )


async def test_a_signed_charge_success_credits_the_wallet_once_through_the_worker(
    api: httpx.AsyncClient, live_api: str, paystack: PaystackStandIn, engine: AsyncEngine, make_user
) -> None:
    user = await make_user()
    deposit = await start_deposit(api, user, 25_000)
    paystack.set_status(deposit.reference, "success")
    body = paystack.build_charge_success(deposit.reference)

    response = await paystack.deliver_webhook(live_api, body)

    assert response.status_code == 200
    assert response.json() == {"status": True}
    row = await wait_for_deposit(engine, deposit.reference, lambda r: r.status == "success")
    assert (row.credits, row.paid_at is not None, row.needs_review) == (1, True, False)
    event = await wait_for_event(engine, body, "processed")
    assert (event.event_type, event.reference, event.attempts) == ("charge.success", deposit.reference, 1)
    assert await balance_of(api, user) == 25_000
    status = await api.get(f"/wallet/deposit/{deposit.reference}/status", headers=user.headers)
    assert status.json() == {"reference": deposit.reference, "status": "success", "amount": 25_000}
    [item] = (await api.get("/wallet/transactions", headers=user.headers)).json()
    assert (item["reference"], item["type"], item["amount"], item["status"]) == (
        deposit.reference,
        "deposit",
        25_000,
        "success",
    )


async def test_the_same_webhook_delivered_20_times_concurrently_credits_once(
    api: httpx.AsyncClient, live_api: str, paystack: PaystackStandIn, engine: AsyncEngine, make_user
) -> None:
    user = await make_user()
    deposit = await start_deposit(api, user, 3_000)
    paystack.set_status(deposit.reference, "success")
    body = paystack.build_charge_success(deposit.reference)

    responses = await asyncio.gather(*(paystack.deliver_webhook(live_api, body) for _ in range(20)))

    statuses = [r.status_code for r in responses]
    # 503 only when the database refuses connections (a machine shared with other test runs); Paystack
    # redelivers whatever is not a 200, so the test does too.
    assert set(statuses) <= {200, 503}, statuses
    for _ in range(statuses.count(503)):
        assert (await paystack.deliver_webhook(live_api, body)).status_code == 200
    assert statuses.count(200) >= 1
    await wait_for_event(engine, body, "processed")
    row = await wait_for_deposit(engine, deposit.reference, lambda r: r.status == "success")
    assert row.credits == 1
    assert await balance_of(api, user) == 3_000
    # A late redelivery, after processing, is still acknowledged and still changes nothing.
    assert (await paystack.deliver_webhook(live_api, body)).status_code == 200
    await asyncio.sleep(0.3)
    assert (await deposit_row(engine, deposit.reference)).credits == 1  # type: ignore[union-attr]
    assert await balance_of(api, user) == 3_000


async def test_missing_wrong_or_tampered_signatures_are_401_and_store_nothing(
    api: httpx.AsyncClient, live_api: str, paystack: PaystackStandIn, engine: AsyncEngine, make_user
) -> None:
    user = await make_user()
    deposit = await start_deposit(api, user, 8_000)
    paystack.set_status(deposit.reference, "success")
    body = paystack.build_charge_success(deposit.reference)
    tampered = body.replace(b'"amount":8000', b'"amount":8000000')
    assert tampered != body

    attempts = {
        "missing": (body, None),
        "empty": (body, ""),
        "wrong key": (body, sign_webhook(body, "sk_test_someone_else")),
        "not hex": (body, "z" * 128),
        "tampered body": (tampered, paystack.sign(body)),
    }
    for name, (sent, signature) in attempts.items():
        response = await paystack.deliver_webhook(live_api, sent, signature=signature)
        assert response.status_code == 401, name
        assert response.json()["error_code"] == "INVALID_SIGNATURE", name
        assert await events_with_body(engine, sent) == [], name

    await asyncio.sleep(0.3)
    row = await deposit_row(engine, deposit.reference)
    assert row is not None
    assert (row.status, row.credits) == ("pending", 0)
    assert await balance_of(api, user) == 0


async def test_a_payment_of_another_amount_or_currency_credits_nothing_and_is_flagged_for_review(
    api: httpx.AsyncClient, live_api: str, paystack: PaystackStandIn, engine: AsyncEngine, make_user
) -> None:
    user = await make_user()
    short, foreign = await start_deposit(api, user, 50_000), await start_deposit(api, user, 50_000)
    bodies = {
        short.reference: paystack.build_charge_success(short.reference, amount=500),
        foreign.reference: paystack.build_charge_success(foreign.reference, currency="USD"),
    }

    for body in bodies.values():
        assert (await paystack.deliver_webhook(live_api, body)).status_code == 200

    for reference, body in bodies.items():
        await wait_for_event(engine, body, "review")
        row = await deposit_row(engine, reference)
        assert row is not None
        assert (row.status, row.credits, row.needs_review) == ("pending", 0, True)
        assert row.review_reason
    assert "500 NGN" in (await deposit_row(engine, short.reference)).review_reason  # type: ignore[union-attr, operator]
    assert "USD" in (await deposit_row(engine, foreign.reference)).review_reason  # type: ignore[union-attr, operator]
    assert await balance_of(api, user) == 0
    async with engine.connect() as connection:
        flagged = (
            await connection.execute(
                select(m.ReviewItem.reference, m.ReviewItem.kind, m.ReviewItem.status).where(
                    m.ReviewItem.reference.in_(list(bodies))
                )
            )
        ).all()
    assert sorted(flagged) == sorted((reference, "payment_mismatch", "open") for reference in bodies)


async def test_an_event_for_an_unknown_reference_is_acknowledged_and_recorded_as_ignored(
    api: httpx.AsyncClient, live_api: str, paystack: PaystackStandIn, engine: AsyncEngine
) -> None:
    body = paystack.build_charge_success("dep-nobody-initialised-this")

    response = await paystack.deliver_webhook(live_api, body)

    assert response.status_code == 200
    event = await wait_for_event(engine, body, "ignored")
    assert event.reference == "dep-nobody-initialised-this"


async def test_other_event_types_and_signed_bodies_that_are_not_json_are_recorded_as_ignored(
    api: httpx.AsyncClient, live_api: str, paystack: PaystackStandIn, engine: AsyncEngine
) -> None:
    transfer = b'{"event":"transfer.success","data":{"reference":"trf-x1","amount":100}}'
    garbage = b"this is not json {"

    for body in (transfer, garbage):
        assert (await paystack.deliver_webhook(live_api, body)).status_code == 200

    assert (await wait_for_event(engine, transfer, "ignored")).event_type == "transfer.success"
    unreadable = await wait_for_event(engine, garbage, "ignored")
    assert unreadable.last_error


async def test_paystacks_own_example_payload_verbatim_is_acknowledged_and_ignored(
    api: httpx.AsyncClient, live_api: str, paystack: PaystackStandIn, engine: AsyncEngine
) -> None:
    body = CHARGE_SUCCESS_PATH.read_bytes()

    response = await paystack.deliver_webhook(live_api, body)

    assert response.status_code == 200
    event = await wait_for_event(engine, body, "ignored")
    assert (event.event_type, event.reference) == ("charge.success", "qTPrJoy9Bx")


async def test_paystacks_own_example_payload_for_a_real_deposit_credits_it(
    api: httpx.AsyncClient, live_api: str, paystack: PaystackStandIn, engine: AsyncEngine, make_user
) -> None:
    user = await make_user()
    deposit = await start_deposit(api, user, 10_000)
    body = paystack_example(reference=deposit.reference, amount=10_000)

    assert (await paystack.deliver_webhook(live_api, body)).status_code == 200

    row = await wait_for_deposit(engine, deposit.reference, lambda r: r.status == "success")
    assert row.credits == 1
    assert row.paid_at == datetime(2016, 9, 30, 21, 10, 19, tzinfo=UTC)
    assert await balance_of(api, user) == 10_000


async def test_webhook_and_verification_racing_credit_once(
    api: httpx.AsyncClient, live_api: str, paystack: PaystackStandIn, engine: AsyncEngine, make_user, redis: Redis
) -> None:
    user = await make_user()
    deposits = [await start_deposit(api, user, 1_000 + i) for i in range(5)]
    for deposit in deposits:
        paystack.set_status(deposit.reference, "success")

    async def race(reference: str) -> None:
        body = paystack.build_charge_success(reference)
        await asyncio.gather(
            paystack.deliver_webhook(live_api, body),
            api.get(f"/wallet/deposit/{reference}/status", headers=user.headers),
            enqueue(redis, TaskName.VERIFY_DEPOSIT, reference),
            paystack.deliver_webhook(live_api, body),
        )

    await asyncio.gather(*(race(d.reference) for d in deposits))

    for deposit in deposits:
        row = await wait_for_deposit(engine, deposit.reference, lambda r: r.status == "success")
        assert row.credits == 1
    assert await balance_of(api, user) == sum(1_000 + i for i in range(5))


async def test_an_event_whose_enqueue_was_lost_is_applied_by_beats_requeue(
    api: httpx.AsyncClient, paystack: PaystackStandIn, engine: AsyncEngine, make_user, redis: Redis
) -> None:
    user = await make_user()
    deposit = await start_deposit(api, user, 9_000)
    body = paystack.build_charge_success(deposit.reference)
    # Stored as the API stores it, but the API "died" before enqueueing, a minute ago.
    received = await stored_event(engine, body)
    async with session_maker(engine)() as session:
        await session.execute(
            update(m.WebhookEvent)
            .where(m.WebhookEvent.id == received.event_id)
            .values(updated_at=datetime.now(UTC) - timedelta(minutes=2))
        )
        await session.commit()

    assert await enqueue(redis, TaskName.REQUEUE_UNFINISHED_WEBHOOKS)

    await wait_for_event(engine, body, "processed")
    assert (await wait_for_deposit(engine, deposit.reference, lambda r: r.status == "success")).credits == 1
    assert await balance_of(api, user) == 9_000


async def test_failed_events_are_retried_by_beat_until_the_attempt_cap_then_stay_visible(
    api: httpx.AsyncClient, paystack: PaystackStandIn, engine: AsyncEngine, make_user, redis: Redis
) -> None:
    user = await make_user()
    retried, given_up = await start_deposit(api, user, 2_000), await start_deposit(api, user, 3_000)
    bodies = {ref: paystack.build_charge_success(ref) for ref in (retried.reference, given_up.reference)}
    async with session_maker(engine)() as session:
        for reference, body in bodies.items():
            received = await stored_event(engine, body)
            await session.execute(
                update(m.WebhookEvent)
                .where(m.WebhookEvent.id == received.event_id)
                .values(
                    status="failed",
                    last_error="OperationalError: the database went away",
                    attempts=2 if reference == retried.reference else MAX_ATTEMPTS,
                    updated_at=datetime.now(UTC) - timedelta(minutes=2),
                )
            )
        await session.commit()

    assert await enqueue(redis, TaskName.REQUEUE_UNFINISHED_WEBHOOKS)

    event = await wait_for_event(engine, bodies[retried.reference], "processed")
    assert event.attempts == 3
    [stuck] = await events_with_body(engine, bodies[given_up.reference])
    assert (stuck.status, stuck.attempts, stuck.last_error) == (
        "failed",
        MAX_ATTEMPTS,
        "OperationalError: the database went away",
    )
    assert await balance_of(api, user) == 2_000


async def test_webhook_acknowledges_at_once_while_the_deposit_is_locked_and_credits_after(
    api: httpx.AsyncClient, live_api: str, paystack: PaystackStandIn, engine: AsyncEngine, make_user
) -> None:
    user = await make_user()
    deposit = await start_deposit(api, user, 4_500)
    body = paystack.build_charge_success(deposit.reference)

    async with engine.connect() as blocker:
        transaction = await blocker.begin()
        await blocker.exec_driver_sql("SELECT id FROM deposits WHERE reference = $1 FOR UPDATE", (deposit.reference,))
        response = await asyncio.wait_for(paystack.deliver_webhook(live_api, body), timeout=5)
        assert response.status_code == 200
        await asyncio.sleep(0.5)
        assert (await deposit_row(engine, deposit.reference)).status == "pending"  # type: ignore[union-attr]
        await transaction.rollback()

    assert (await wait_for_deposit(engine, deposit.reference, lambda r: r.status == "success")).credits == 1


# -- source address allowlist (in-process app: the client address is chosen per request) ------------------


async def test_webhook_from_a_source_outside_the_allowlist_is_403_and_stores_nothing(
    settings: Settings, paystack: PaystackStandIn, engine: AsyncEngine
) -> None:
    allowlist = {"paystack_webhook_ips": [PAYSTACK_IP, "52.49.173.169", "52.214.14.220"]}
    allowed = paystack.build_charge_success("dep-allowlist-allowed")
    refused = paystack.build_charge_success("dep-allowlist-refused")
    spoofed = paystack.build_charge_success("dep-allowlist-spoofed")

    async with in_process(settings, client_address=PAYSTACK_IP, **allowlist) as from_paystack:
        ok = await signed_post(from_paystack, paystack, allowed)
    async with in_process(settings, client_address="203.0.113.9", **allowlist) as from_elsewhere:
        no = await signed_post(from_elsewhere, paystack, refused)
        # Without a trusted proxy configured, a client's own X-Forwarded-For is not believed.
        lie = await signed_post(from_elsewhere, paystack, spoofed, {"x-forwarded-for": PAYSTACK_IP})

    assert ok.status_code == 200
    assert (no.status_code, no.json()["error_code"]) == (403, "PERMISSION_DENIED")
    assert (lie.status_code, lie.json()["error_code"]) == (403, "PERMISSION_DENIED")
    assert len(await events_with_body(engine, allowed)) == 1
    assert await events_with_body(engine, refused) == []
    assert await events_with_body(engine, spoofed) == []


async def test_behind_a_trusted_proxy_the_forwarded_paystack_address_is_allowed(
    settings: Settings, paystack: PaystackStandIn, engine: AsyncEngine
) -> None:
    proxy = "10.0.0.2"
    config = {"paystack_webhook_ips": [PAYSTACK_IP], "trusted_proxies": [proxy]}
    forwarded = paystack.build_charge_success("dep-behind-proxy")
    not_paystack = paystack.build_charge_success("dep-behind-proxy-not-paystack")

    async with in_process(settings, client_address=proxy, **config) as via_proxy:
        # The right-most address the proxy did not add itself is the one that connected to it.
        ok = await signed_post(via_proxy, paystack, forwarded, {"x-forwarded-for": f"198.51.100.7, {PAYSTACK_IP}"})
        no = await signed_post(via_proxy, paystack, not_paystack, {"x-forwarded-for": f"{PAYSTACK_IP}, 198.51.100.7"})

    assert ok.status_code == 200
    assert no.status_code == 403
    assert len(await events_with_body(engine, forwarded)) == 1
    assert await events_with_body(engine, not_paystack) == []


async def test_a_bad_signature_is_401_even_from_an_allowed_source(
    settings: Settings, paystack: PaystackStandIn
) -> None:
    body = paystack.build_charge_success("dep-allowed-but-unsigned")
    async with in_process(settings, client_address=PAYSTACK_IP, paystack_webhook_ips=[PAYSTACK_IP]) as app:
        response = await app.post("/wallet/paystack/webhook", content=body, headers={"x-paystack-signature": "0" * 128})
    assert response.status_code == 401


async def test_a_webhook_body_larger_than_the_limit_is_413(settings: Settings, paystack: PaystackStandIn) -> None:
    body = b'{"event":"charge.success","data":{"pad":"' + b"x" * 70_000 + b'"}}'
    async with in_process(settings, max_body_bytes=64 * 1024) as app:
        response = await signed_post(app, paystack, body)
    assert response.status_code == 413
    assert response.json()["error_code"] == "PAYLOAD_TOO_LARGE"
