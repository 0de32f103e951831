"""The payout traps, with real API and worker processes against the stand-in over HTTP.

Paystack may create a transfer and the answer never reach us: a `/transfer` call that hangs past the client's
timeout, a 5xx sent after the transfer was made, a worker SIGKILLed between reserving and initiating or between
initiating and recording. In every case the withdrawal ends with exactly one Paystack transfer for its
reference and no refund of money that left: before any retry or refund the worker asks Paystack about the
reference. Every test ends with the run's ledger check.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.lib.tasks import TaskName
from tasks.runtime import TEST_COMMIT_PAUSE_ENV
from tests.support.factories import fund
from tests.support.faults import Stack, assert_ledger_ok
from tests.support.processes import ServiceProcess
from tests.support.waiting import eventually
from tests.support.withdrawals import accepted_withdrawal, wait_for_withdrawal, withdrawal_row

pytestmark = pytest.mark.e2e

RECOVERING = {"WITHDRAWAL_CHECK_AFTER_SECONDS": "0"}
"""A worker whose sweep (sent by the test, as beat does every minute) looks at every unfinished withdrawal."""


async def _funded_withdrawal(stack: Stack, http: httpx.AsyncClient, engine: AsyncEngine, user, amount: int) -> str:
    await fund(engine, user.wallet_id, amount)
    return await accepted_withdrawal(http, user, amount)


async def _wait_for_output(process: ServiceProcess, text: str, timeout: float = 30) -> None:
    await asyncio.to_thread(process.wait_for_output, text, timeout)


async def _finish_with_success(stack: Stack, engine: AsyncEngine, reference: str) -> None:
    stack.paystack.set_transfer_status(reference, "success")
    event = stack.paystack.build_transfer_event(reference, "transfer.success")
    assert (await stack.paystack.deliver_webhook(stack.base_url, event)).status_code == 200
    row = await wait_for_withdrawal(engine, reference, lambda r: r.status == "success")
    assert row.journals == {"withdrawal": 1, "payout": 1}, "paid out once, never refunded"


async def test_a_transfer_call_that_hangs_past_the_client_timeout_while_paystack_holds_it_ends_in_one_payout(
    stack: Stack, workers: None, http: httpx.AsyncClient, engine: AsyncEngine, make_user
) -> None:
    stack.start_worker()
    # Paystack makes the transfer at once and answers after 3 s; the worker's client gives up after 0.5 s.
    stack.paystack.delay_next(1, 3.0, after_processing=True, path="/transfer")
    user = await make_user()

    reference = await _funded_withdrawal(stack, http, engine, user, 20_000)

    row = await wait_for_withdrawal(engine, reference, lambda r: r.status == "processing")
    assert stack.paystack.transfer_initiations(reference) == 1, "the retry asked Paystack instead of sending again"
    assert row.journals == {"withdrawal": 1}, "nothing refunded on a guess"
    assert row.initiations == 1
    await _finish_with_success(stack, engine, reference)
    await assert_ledger_ok(engine)


@pytest.mark.parametrize("made", [True, False], ids=["after-paystack-made-it", "before-paystack-made-it"])
async def test_a_5xx_on_initiation_is_checked_with_paystack_and_only_an_unknown_transfer_is_sent_again(
    stack: Stack, workers: None, http: httpx.AsyncClient, engine: AsyncEngine, make_user, made: bool
) -> None:
    stack.start_worker()
    stack.paystack.fail_next(1, 502, after_processing=made, path="/transfer")
    user = await make_user()

    reference = await _funded_withdrawal(stack, http, engine, user, 15_000)

    row = await wait_for_withdrawal(engine, reference, lambda r: r.status == "processing")
    # Made: Paystack's verify finds it, nothing is sent again. Not made: verify says 404, so it is sent again.
    assert stack.paystack.transfer_initiations(reference) == (1 if made else 2)
    assert stack.paystack.transfer(reference).amount == 15_000
    assert row.journals == {"withdrawal": 1}
    await _finish_with_success(stack, engine, reference)
    await assert_ledger_ok(engine)


async def test_a_worker_killed_between_reserving_and_initiating_is_recovered_by_the_sweep_with_one_transfer(
    stack: Stack, workers: None, http: httpx.AsyncClient, engine: AsyncEngine, make_user
) -> None:
    # The payout's first commit (the recipient it created) pauses: the kill lands before any transfer.
    victim = stack.start_worker(name="victim", **{TEST_COMMIT_PAUSE_ENV: "5"})
    user = await make_user()
    reference = await _funded_withdrawal(stack, http, engine, user, 9_000)
    await _wait_for_output(victim, "TEST HOOK")

    victim.kill()

    assert stack.paystack.transfer_initiations(reference) == 0
    assert (await withdrawal_row(engine, reference)).status == "pending"  # type: ignore[union-attr]
    stack.start_worker(name="rescuer", **RECOVERING)
    stack.send(TaskName.CHECK_STALE_WITHDRAWALS)  # what beat does every minute
    await wait_for_withdrawal(engine, reference, lambda r: r.status == "processing")
    assert stack.paystack.transfer_initiations(reference) == 1
    await _finish_with_success(stack, engine, reference)
    await assert_ledger_ok(engine)


async def test_a_worker_killed_between_initiating_and_recording_never_pays_twice_and_takes_a_success_that_came_meanwhile(
    stack: Stack, workers: None, http: httpx.AsyncClient, engine: AsyncEngine, make_user
) -> None:
    victim = stack.start_worker(name="victim", **{TEST_COMMIT_PAUSE_ENV: "2"})
    user = await make_user()
    reference = await _funded_withdrawal(stack, http, engine, user, 11_000)
    initiated = await eventually(lambda: asyncio.sleep(0, stack.paystack.transfer_initiations(reference)), bool)
    assert initiated == 1

    victim.kill()  # Paystack holds the transfer; its answer's commit was paused

    row = await withdrawal_row(engine, reference)
    assert row is not None
    assert (row.status, row.initiations) == ("pending", 1)
    # The outcome arrives before anyone recorded that Paystack accepted it: it applies all the same.
    stack.paystack.set_transfer_status(reference, "success")
    event = stack.paystack.build_transfer_event(reference, "transfer.success")
    stack.start_worker(name="rescuer", **RECOVERING)
    assert (await stack.paystack.deliver_webhook(stack.base_url, event)).status_code == 200
    await wait_for_withdrawal(engine, reference, lambda r: r.status == "success")
    stack.send(TaskName.CHECK_STALE_WITHDRAWALS)

    await asyncio.sleep(1.0)  # the sweep finds nothing left to do
    row = await wait_for_withdrawal(engine, reference, lambda r: r.status == "success")
    assert row.journals == {"withdrawal": 1, "payout": 1}
    assert stack.paystack.transfer_initiations(reference) == 1
    await assert_ledger_ok(engine)


async def test_a_worker_killed_after_initiating_is_recovered_by_asking_paystack_not_by_sending_again(
    stack: Stack, workers: None, http: httpx.AsyncClient, engine: AsyncEngine, make_user
) -> None:
    victim = stack.start_worker(name="victim", **{TEST_COMMIT_PAUSE_ENV: "2"})
    user = await make_user()
    reference = await _funded_withdrawal(stack, http, engine, user, 13_000)
    await eventually(lambda: asyncio.sleep(0, stack.paystack.transfer_initiations(reference)), bool)

    victim.kill()

    stack.start_worker(name="rescuer", **RECOVERING)
    stack.send(TaskName.CHECK_STALE_WITHDRAWALS)
    row = await wait_for_withdrawal(engine, reference, lambda r: r.status == "processing")
    assert (row.initiations, stack.paystack.transfer_initiations(reference)) == (1, 1)
    assert row.journals == {"withdrawal": 1}
    await _finish_with_success(stack, engine, reference)
    await assert_ledger_ok(engine)
