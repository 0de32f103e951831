"""Funding the benchmark's wallets through the real deposit path, before anything is measured.

Users, wallets and JWTs are made directly (`UserService.sign_in`, `issue_token`); then per wallet
`POST /wallet/deposit`, the Paystack stand-in marks it paid, its signed `charge.success` goes to the webhook,
and the worker credits it. The run waits until every wallet is credited and the queues are drained.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import httpx

from bench.scenarios import poll

if TYPE_CHECKING:
    from app.config import Settings
    from bench.params import Parameters
    from bench.scenarios import Scenarios
    from bench.stack import Stack
    from tests.support.paystack_standin import PaystackStandIn


async def fund(
    params: Parameters, settings: Settings, standin: PaystackStandIn, stack: Stack, scenarios: Scenarios
) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """The funded wallets as (JWT, wallet number), and how long funding took."""
    from app.domain.auth.tokens import issue_token
    from app.domain.auth.users import Identity, UserService
    from app.lib.db import session_maker
    from app.lib.uow import UnitOfWork

    started = time.monotonic()
    engine = settings.database.create_engine()
    sessions = session_maker(engine)
    gate = asyncio.Semaphore(8)

    async def make_user(index: int) -> tuple[str, str]:
        identity = Identity(email=f"bench-{index}@bench.example.com")
        async with gate, sessions() as session:
            user, wallet = await UnitOfWork(session).run(
                lambda: UserService(session=session).sign_in(identity, settings.money.currency)
            )
        return issue_token(settings, user_id=user.id, email=user.email).access_token, wallet.number

    try:
        wallets = list(await asyncio.gather(*(make_user(i) for i in range(params.wallets))))
    finally:
        await engine.dispose()
    users_s = time.monotonic() - started

    http_gate = asyncio.Semaphore(max(params.clients, 4))
    limits = httpx.Limits(max_connections=max(params.clients, 4))
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=60, limits=limits) as client:

        async def deposit(token: str) -> str:
            async with http_gate:
                answer = await client.post(
                    "/wallet/deposit",
                    json={"amount": params.deposit_amount},
                    headers={"Authorization": f"Bearer {token}"},
                )
            if answer.status_code != 201:
                msg = f"POST /wallet/deposit answered {answer.status_code}: {answer.text[:300]}"
                raise RuntimeError(msg)
            return str(answer.json()["reference"])

        references = await asyncio.gather(*(deposit(token) for token, _ in wallets))
        deposits_s = time.monotonic() - started - users_s

        async def paid(reference: str) -> None:
            standin.set_status(reference, "success")
            body = standin.build_charge_success(reference)
            async with http_gate:
                answer = await client.post(
                    "/wallet/paystack/webhook",
                    content=body,
                    headers={"content-type": "application/json", "x-paystack-signature": standin.sign(body)},
                )
            if answer.status_code != 200:
                msg = f"the charge.success webhook answered {answer.status_code}: {answer.text[:300]}"
                raise RuntimeError(msg)

        await asyncio.gather(*(paid(reference) for reference in references))

    async def all_credited() -> bool:
        stack.check_alive()
        credited = await scenarios.db.fetchval(
            "SELECT count(*) FROM wallets WHERE balance >= $1", params.deposit_amount
        )
        return bool(credited == params.wallets)

    if not await poll(all_credited, timeout_s=max(120.0, params.wallets / 10)):
        msg = "not every deposit was credited within the time limit"
        raise RuntimeError(msg)
    await scenarios.drain()
    total = time.monotonic() - started
    return wallets, {
        "wallets": params.wallets,
        "deposit_amount": params.deposit_amount,
        "users_s": round(users_s, 2),
        "deposits_initialised_per_s": round(params.wallets / max(deposits_s, 1e-9), 1),
        "all_credited_s": round(total, 2),
    }
