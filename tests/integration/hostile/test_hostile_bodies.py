"""Hostile request bodies on the routes that move money or make keys: every one is refused with the contract's
status and error code, and nothing a user owns changes (balance, ledger entries, transfers, deposits, keys,
idempotency claims); Paystack is never called for a refused deposit.

Each test ends by sending the same request done right, so a refusal cannot come from a broken test setup.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING

import pytest
from litestar.testing import AsyncTestClient

from app.main import create_app
from tests.support.factories import fund
from tests.support.paystack_standin import PaystackStandIn

if TYPE_CHECKING:
    import httpx
    from litestar import Litestar
    from sqlalchemy.ext.asyncio import AsyncEngine

    from app.config import Settings
    from tests.support.hostile import Footprint
    from tests.support.users import TestUser

JSON = {"content-type": "application/json"}
FUNDS = 100_000

# The raw JSON text of `amount`, so that what reaches the server is exactly what an attacker typed.
NOT_AN_AMOUNT = {
    "string": b'"100"',
    "float": b"100.0",
    "exponent": b"1e2",
    "negative": b"-100",
    "zero": b"0",
    "negative zero": b"-0",
    "2^63": str(2**63).encode(),
    "2^64": str(2**64).encode(),
    "a 400-digit number": b"1" + b"0" * 400,
    "above 10^12": str(10**12 + 1).encode(),
    "true": b"true",
    "false": b"false",
    "null": b"null",
    "a list": b"[100]",
    "an object": b'{"kobo": 100}',
    "NaN": b"NaN",
    "Infinity": b"Infinity",
}


@pytest.fixture(scope="module")
def hostile_paystack() -> Iterator[PaystackStandIn]:
    with PaystackStandIn() as standin:
        yield standin


@pytest.fixture
async def api(settings: Settings, hostile_paystack: PaystackStandIn) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """The app with a Paystack of this module's own; transfers answer without waiting for a worker."""
    hostile_paystack.reset()
    app = create_app(
        settings.replaced(
            paystack_base_url=hostile_paystack.base_url,
            paystack_secret_key=hostile_paystack.secret_key,
            transfer_wait_ms=0,
        )
    )
    async with AsyncTestClient(app=app) as client:
        yield client


@pytest.fixture
async def sender(make_user: Callable[..., Awaitable[TestUser]], engine: AsyncEngine) -> TestUser:
    user = await make_user()
    await fund(engine, user.wallet_id, FUNDS)
    return user


def assert_refused(response: httpx.Response, status: int, error_code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error_code"] == error_code, response.text


@pytest.mark.parametrize("amount", NOT_AN_AMOUNT.values(), ids=NOT_AN_AMOUNT.keys())
async def test_an_amount_that_is_not_an_integer_from_1_to_10_12_moves_nothing_and_starts_nothing(
    api: AsyncTestClient[Litestar],
    sender: TestUser,
    make_user: Callable[..., Awaitable[TestUser]],
    footprint: Callable[[TestUser], Awaitable[Footprint]],
    hostile_paystack: PaystackStandIn,
    amount: bytes,
) -> None:
    recipient = await make_user()
    before = await footprint(sender), await footprint(recipient)

    def transfer(amount: bytes) -> bytes:
        return b'{"wallet_number": "%s", "amount": %s}' % (recipient.wallet_number.encode(), amount)

    sent = await api.post("/wallet/transfer", content=transfer(amount), headers={**sender.headers, **JSON})
    deposited = await api.post(
        "/wallet/deposit", content=b'{"amount": %s}' % amount, headers={**sender.headers, **JSON}
    )

    for response in (sent, deposited):
        assert_refused(response, 400, "VALIDATION_ERROR")
        assert "amount" in response.json()["detail"] or "JSON" in response.json()["detail"]
    assert (await footprint(sender), await footprint(recipient)) == before
    assert hostile_paystack.requests == []
    accepted = await api.post("/wallet/transfer", content=transfer(b"1"), headers={**sender.headers, **JSON})
    assert accepted.status_code in {200, 202}, accepted.text


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml"],
)
async def test_a_body_that_says_it_is_not_json_is_refused_even_when_it_is(
    api: AsyncTestClient[Litestar],
    sender: TestUser,
    make_user: Callable[..., Awaitable[TestUser]],
    footprint: Callable[[TestUser], Awaitable[Footprint]],
    content_type: str,
) -> None:
    recipient = await make_user()
    before = await footprint(sender)
    transfer = b'{"wallet_number": "%s", "amount": 100}' % recipient.wallet_number.encode()
    key = b'{"name": "k", "permissions": ["read"], "expiry": "1D"}'

    for path, body in (("/wallet/transfer", transfer), ("/wallet/deposit", b'{"amount": 5000}'), ("/keys/create", key)):
        response = await api.post(path, content=body, headers={**sender.headers, "content-type": content_type})
        assert_refused(response, 400, "VALIDATION_ERROR")
        assert "application/json" in response.json()["detail"]
    form = await api.post(
        "/wallet/transfer", data={"wallet_number": recipient.wallet_number, "amount": "100"}, headers=sender.headers
    )
    assert_refused(form, 400, "VALIDATION_ERROR")
    assert await footprint(sender) == before
    accepted = await api.post(
        "/wallet/transfer",
        content=transfer,
        headers={**sender.headers, "content-type": "application/json; charset=utf-8"},
    )
    assert accepted.status_code in {200, 202}, accepted.text


@pytest.mark.parametrize(
    "template",
    [
        b'{"wallet_number": "%(to)s", "amount": 1, "amount": 90000}',
        b'{"wallet_number": "%(to)s", "amount": 1, "\\u0061mount": 90000}',
        b'{"wallet_number": "%(to)s", "wallet_number": "%(other)s", "amount": 1}',
    ],
    ids=["amount twice", "amount twice, once escaped", "two recipients"],
)
async def test_a_field_given_twice_is_refused_rather_than_guessed(
    api: AsyncTestClient[Litestar],
    sender: TestUser,
    make_user: Callable[..., Awaitable[TestUser]],
    footprint: Callable[[TestUser], Awaitable[Footprint]],
    template: bytes,
) -> None:
    recipient, other = await make_user(), await make_user()
    before = [await footprint(user) for user in (sender, recipient, other)]
    body = template % {b"to": recipient.wallet_number.encode(), b"other": other.wallet_number.encode()}

    response = await api.post("/wallet/transfer", content=body, headers={**sender.headers, **JSON})

    assert_refused(response, 400, "VALIDATION_ERROR")
    assert "more than once" in response.json()["detail"] or "duplicate" in response.json()["detail"]
    assert [await footprint(user) for user in (sender, recipient, other)] == before


@pytest.mark.parametrize(
    "body",
    [
        b'{"wallet_number": "0000000000000", "amount": ' + b"[" * 20_000 + b"]" * 20_000 + b"}",
        b'{"wallet_number": "0000000000000", "amount": 1, "note": ' + b'{"a": ' * 5_000 + b"1" + b"}" * 5_000 + b"}",
        # Invalid UTF-8 in a field each of the routes reads.
        b'{"wallet_number": "\xff\xfe0000000000", "amount": "\xff", "name": "\xff", "token": "\xff"}',
        b"\xef\xbb\xbf{}",
        b'{"wallet_number": "0000000000000", "amount": 1} trailing',
        b"",
    ],
    ids=["nested arrays", "nested objects", "invalid utf-8", "byte order mark", "trailing garbage", "empty"],
)
async def test_a_body_that_cannot_be_decoded_is_a_400_not_a_500(
    api: AsyncTestClient[Litestar],
    sender: TestUser,
    footprint: Callable[[TestUser], Awaitable[Footprint]],
    body: bytes,
) -> None:
    before = await footprint(sender)
    for path in ("/wallet/transfer", "/wallet/deposit", "/keys/create", "/auth/verify-token"):
        response = await api.post(path, content=body, headers={**sender.headers, **JSON})
        if path == "/auth/verify-token" and body == b"":
            assert response.status_code == 200, response.text  # the body is optional there
            continue
        assert_refused(response, 400, "VALIDATION_ERROR")
    assert await footprint(sender) == before


async def test_a_body_over_the_size_limit_is_413_on_every_route_that_takes_one(
    api: AsyncTestClient[Litestar],
    sender: TestUser,
    make_user: Callable[..., Awaitable[TestUser]],
    footprint: Callable[[TestUser], Awaitable[Footprint]],
    hostile_paystack: PaystackStandIn,
    settings: Settings,
) -> None:
    recipient = await make_user()
    before = await footprint(sender), await footprint(recipient)
    padding = b" " * settings.http.max_body_bytes
    bodies = {
        "/wallet/transfer": b'{"wallet_number": "%s", "amount": 100%s}' % (recipient.wallet_number.encode(), padding),
        "/wallet/deposit": b'{"amount": 5000%s}' % padding,
        "/keys/create": b'{"name": "%s", "permissions": ["read"], "expiry": "1D"}'
        % (b"k" * settings.http.max_body_bytes),
        "/auth/verify-token": b'{"token": "%s"}' % (b"t" * settings.http.max_body_bytes),
        "/wallet/paystack/webhook": b'{"event": "charge.success"%s}' % padding,
    }
    for path, body in bodies.items():
        response = await api.post(path, content=body, headers={**sender.headers, **JSON})
        assert_refused(response, 413, "PAYLOAD_TOO_LARGE")
    assert (await footprint(sender), await footprint(recipient)) == before
    assert hostile_paystack.requests == []


@pytest.mark.parametrize(
    ("name", "stored"),
    [
        ("ключ для выплат", "ключ для выплат"),
        ("支付服务", "支付服务"),
        ("🔑" * 100, "🔑" * 100),
        ("  " + "é" * 100 + "\t", "é" * 100),
        ("e\u0301\u200d\u202eRTL", "e\u0301\u200d\u202eRTL"),
    ],
    ids=["cyrillic", "cjk", "100 emoji", "100 accented after trimming", "combining, joiner, right-to-left"],
)
async def test_non_ascii_key_names_up_to_100_characters_are_kept_exactly(
    api: AsyncTestClient[Litestar], sender: TestUser, name: str, stored: str
) -> None:
    created = await api.post(
        "/keys/create", json={"name": name, "permissions": ["read"], "expiry": "1D"}, headers=sender.headers
    )
    assert created.status_code == 201, created.text
    assert created.json()["name"] == stored
    listed = (await api.get("/keys", headers=sender.headers)).json()
    assert [key["name"] for key in listed] == [stored]


@pytest.mark.parametrize(
    "name",
    ["🔑" * 101, "é" * 101, "k" * 60_000, "\u2003\u00a0\t", "a\u0000b", "\u0000"],
    ids=["101 emoji", "101 accented", "60 000 characters", "only unicode blanks", "a NUL inside", "only NUL"],
)
async def test_key_names_too_long_blank_or_unstorable_are_refused_and_make_no_key(
    api: AsyncTestClient[Litestar],
    sender: TestUser,
    footprint: Callable[[TestUser], Awaitable[Footprint]],
    name: str,
) -> None:
    before = await footprint(sender)
    response = await api.post(
        "/keys/create", json={"name": name, "permissions": ["read"], "expiry": "1D"}, headers=sender.headers
    )
    assert_refused(response, 400, "VALIDATION_ERROR")
    assert await footprint(sender) == before
    assert (await api.get("/keys", headers=sender.headers)).json() == []


async def test_text_postgres_cannot_store_is_a_400_wherever_it_comes_in(
    api: AsyncTestClient[Litestar],
    sender: TestUser,
    make_user: Callable[..., Awaitable[TestUser]],
    footprint: Callable[[TestUser], Awaitable[Footprint]],
) -> None:
    recipient = await make_user()
    before = await footprint(sender)
    transfer = {"wallet_number": recipient.wallet_number, "amount": 100}

    with_nul_key = await api.post(
        "/wallet/transfer", json=transfer, headers={**sender.headers, "Idempotency-Key": "a\x00b"}
    )
    assert_refused(with_nul_key, 400, "VALIDATION_ERROR")
    for path in ("/wallet/transactions/trf_%00", "/wallet/deposit/dep-%00/status"):
        assert_refused(await api.get(path, headers=sender.headers), 400, "VALIDATION_ERROR")
    rollover = await api.post("/keys/rollover", json={"expired_key_id": "\x00", "expiry": "1D"}, headers=sender.headers)
    assert_refused(rollover, 404, "API_KEY_NOT_FOUND")
    assert await footprint(sender) == before
    accepted = await api.post("/wallet/transfer", json=transfer, headers={**sender.headers, "Idempotency-Key": "ab"})
    assert accepted.status_code in {200, 202}, accepted.text


async def test_an_empty_body_under_another_content_type_is_no_body_at_all(
    api: AsyncTestClient[Litestar], sender: TestUser
) -> None:
    # `curl -X POST -d ''` sends a form content type with nothing in it: there is no body to mistake for JSON.
    form = {**sender.headers, "content-type": "application/x-www-form-urlencoded"}
    verified = await api.post("/auth/verify-token", content=b"", headers=form)
    assert verified.status_code == 200, verified.text
    missing = await api.post("/wallet/transfer", content=b"", headers=form)
    assert_refused(missing, 400, "VALIDATION_ERROR")
    assert missing.json()["detail"] == "A JSON request body is required."
