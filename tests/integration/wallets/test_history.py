"""`GET /wallet/transactions` and `/wallet/transactions/{reference}`: one's own history, newest first, paged."""

from __future__ import annotations

import base64
import re
import uuid
from datetime import datetime

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.db import models as m
from app.lib.db import session_maker
from tests.support.factories import accept_transfer, fund, settle_pending

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
NEXT_LINK = re.compile(r'^<(?P<url>[^>]+)>; rel="next"$')


async def _send(engine: AsyncEngine, sender, recipient, amount: int) -> str:
    async with session_maker(engine)() as session:
        accepted = await accept_transfer(
            session,
            actor="test:sender",
            sender_user_id=sender.user_id,
            recipient_wallet_number=recipient.wallet_number,
            amount=amount,
        )
    return accepted.reference


async def _settle(engine: AsyncEngine) -> None:
    async with session_maker(engine)() as session:
        await settle_pending(session, batch_size=500)


async def _walk(client: AsyncTestClient, headers: dict[str, str], limit: int) -> tuple[list[dict], int]:
    items: list[dict] = []
    pages = 0
    url: str | None = f"/wallet/transactions?limit={limit}"
    while url is not None:
        response = await client.get(url, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        assert isinstance(page, list)
        assert len(page) <= limit
        pages += 1
        items.extend(page)
        link = response.headers.get("link")
        if link is None:
            url = None
        else:
            match = NEXT_LINK.match(link)
            assert match, link
            url = match["url"]
            assert page, "a page with a next link is never empty"
    return items, pages


async def test_history_lists_deposits_and_transfers_newest_first_and_pages_walk_every_item_once(
    client: AsyncTestClient, engine: AsyncEngine, db: AsyncSession, make_user
) -> None:
    me, friend, shop = await make_user(), await make_user(), await make_user()
    deposit = await fund(engine, me.wallet_id, 5_000)
    await fund(engine, friend.wallet_id, 1_000)
    for status in ("pending", "failed", "abandoned"):
        await db.execute(
            insert(m.Deposit).values(
                reference=f"dep_{status}_{uuid.uuid4().hex[:8]}", wallet_id=me.wallet_id, amount=700, status=status
            )
        )
    await db.commit()
    sent = [await _send(engine, me, shop, 100 + i) for i in range(5)]
    received = [await _send(engine, friend, me, 10 + i) for i in range(3)]
    await _settle(engine)
    unsettled = await _send(engine, me, friend, 1)

    everything, pages = await _walk(client, me.headers, limit=200)
    assert pages == 1
    assert len(everything) == 4 + 5 + 3 + 1
    for limit in (1, 3, 5):
        items, pages = await _walk(client, me.headers, limit=limit)
        assert items == everything, f"limit={limit}"
        assert pages == -(-len(everything) // limit), f"limit={limit}"

    stamps = [datetime.fromisoformat(item["created_at"].replace("Z", "+00:00")) for item in everything]
    assert stamps == sorted(stamps, reverse=True)
    assert all(TIMESTAMP.match(item["created_at"]) for item in everything)
    assert len({item["reference"] for item in everything}) == len(everything)
    by_reference = {item["reference"]: item for item in everything}
    assert everything[0]["reference"] == unsettled
    assert by_reference[unsettled] == {
        "reference": unsettled,
        "type": "transfer_out",
        "amount": 1,
        "status": "pending",
        "counterparty_wallet_number": friend.wallet_number,
        "created_at": by_reference[unsettled]["created_at"],
    }
    for reference in sent:
        assert by_reference[reference]["type"] == "transfer_out"
        assert by_reference[reference]["status"] == "success"
        assert by_reference[reference]["counterparty_wallet_number"] == shop.wallet_number
    for reference in received:
        assert by_reference[reference]["type"] == "transfer_in"
        assert by_reference[reference]["counterparty_wallet_number"] == friend.wallet_number
    deposits = [item for item in everything if item["type"] == "deposit"]
    assert {d["status"] for d in deposits} == {"success", "pending", "failed", "abandoned"}
    assert all(d["counterparty_wallet_number"] is None for d in deposits)
    assert by_reference[deposit]["amount"] == 5_000

    shop_view = {item["reference"]: item for item in (await _walk(client, shop.headers, limit=50))[0]}
    assert set(shop_view) == set(sent)
    assert all(item["type"] == "transfer_in" for item in shop_view.values())


async def test_the_default_page_is_fifty_and_the_last_page_has_no_link(
    client: AsyncTestClient, engine: AsyncEngine, make_user
) -> None:
    me = await make_user()
    for _ in range(51):
        await fund(engine, me.wallet_id, 1)
    first = await client.get("/wallet/transactions", headers=me.headers)
    assert first.status_code == 200
    assert len(first.json()) == 50
    link = NEXT_LINK.match(first.headers["link"])
    assert link
    second = await client.get(link["url"], headers=me.headers)
    assert len(second.json()) == 1
    assert "link" not in second.headers
    empty_user = await make_user()
    nothing = await client.get("/wallet/transactions", headers=empty_user.headers)
    assert nothing.json() == []
    assert "link" not in nothing.headers


@pytest.mark.parametrize("limit", ["0", "-1", "201", "abc", "1.5", ""])
async def test_a_limit_outside_one_to_two_hundred_is_a_400(client: AsyncTestClient, make_user, limit: str) -> None:
    me = await make_user()
    response = await client.get(f"/wallet/transactions?limit={limit}", headers=me.headers)
    assert response.status_code == 400
    assert response.json()["error_code"] == "VALIDATION_ERROR"


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "!!!!",
        base64.urlsafe_b64encode(b"[1,2]").decode(),
        base64.urlsafe_b64encode(b'["2026-01-01T00:00:00", "not-a-uuid"]').decode(),
        base64.urlsafe_b64encode(b'["2026-01-01T00:00:00", "' + str(uuid.uuid4()).encode() + b'"]').decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        "x" * 500,
    ],
)
async def test_a_cursor_this_service_did_not_make_is_a_400(client: AsyncTestClient, make_user, cursor: str) -> None:
    me = await make_user()
    response = await client.get("/wallet/transactions", params={"cursor": cursor}, headers=me.headers)
    assert response.status_code == 400
    assert response.json()["error_code"] == "VALIDATION_ERROR"


async def test_one_transaction_by_reference_and_someone_elses_is_404(
    client: AsyncTestClient, engine: AsyncEngine, make_user
) -> None:
    me, friend, stranger = await make_user(), await make_user(), await make_user()
    deposit = await fund(engine, me.wallet_id, 800)
    reference = await _send(engine, me, friend, 300)

    mine = await client.get(f"/wallet/transactions/{reference}", headers=me.headers)
    assert mine.status_code == 200
    assert mine.json()["type"] == "transfer_out"
    assert mine.json()["amount"] == 300
    theirs = await client.get(f"/wallet/transactions/{reference}", headers=friend.headers)
    assert theirs.status_code == 200
    assert theirs.json()["type"] == "transfer_in"
    assert theirs.json()["counterparty_wallet_number"] == me.wallet_number
    own_deposit = await client.get(f"/wallet/transactions/{deposit}", headers=me.headers)
    assert own_deposit.json()["type"] == "deposit"

    for who, ref in ((stranger, reference), (stranger, deposit), (friend, deposit), (me, "trf_unknown")):
        response = await client.get(f"/wallet/transactions/{ref}", headers=who.headers)
        assert response.status_code == 404
        assert response.json()["error_code"] == "TRANSACTION_NOT_FOUND"
