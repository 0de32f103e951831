"""Verifying a deposit with Paystack: requested while it is pending, at most one in flight per reference.

The status endpoint and beat's sweep call `VERIFICATIONS.request`; the task asks Paystack
(`GET /transaction/verify/{reference}`) with nothing locked, then applies the answer through the one path,
`DepositStates.apply_report`, so a payment whose webhook never arrives is still credited, once.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from app.db import models as m
from app.domain.payments.deposit_states import DepositStates
from app.domain.payments.deposits import DepositService
from app.domain.payments.paystack import NotFoundReport, PaystackNotFound
from app.lib.drain import KeyedRequests
from app.lib.tasks import TaskName

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from app.config import MoneySettings
    from app.domain.payments.paystack import PaymentReport, PaystackClient
    from app.lib.uow import UnitOfWork

logger = logging.getLogger(__name__)

VERIFICATIONS = KeyedRequests(TaskName.VERIFY_DEPOSIT, marker_ttl_seconds=300)
"""A verification counts as in flight for 5 minutes at most if its task never clears the marker."""


async def verify_deposit(
    uow: UnitOfWork, money: MoneySettings, paystack: PaystackClient, reference: str
) -> m.DepositStatus | None:
    """Ask Paystack about a pending deposit and apply the answer; the deposit's status after, None if unknown.

    Raises:
        PaystackError: Paystack failed or could not be reached (the task retries later).
    """
    deposits = DepositService(uow, money)
    status = await uow.read(lambda: deposits.status_of(reference))  # nothing held across the HTTP call
    if status is None:
        logger.info("verification of unknown deposit %s skipped", reference)
        return None
    if status is not m.DepositStatus.PENDING:
        return status
    report: PaymentReport | NotFoundReport
    try:
        report = await paystack.verify(reference)
    except PaystackNotFound:
        logger.warning("Paystack knows no transaction %s", reference)
        report = NotFoundReport(reference)
    await uow.run(lambda: DepositStates(uow.session, money).apply_report(report))
    return await uow.read(lambda: deposits.status_of(reference))


async def request_stale_verifications(uow: UnitOfWork, money: MoneySettings, redis: Redis) -> int:
    """Beat: verify deposits pending longer than `DEPOSIT_VERIFY_AFTER_SECONDS`; how many were enqueued."""
    references = await uow.read(lambda: DepositService(uow, money).references_to_verify())
    enqueued = 0
    for reference in references:
        enqueued += await VERIFICATIONS.request(redis, reference)
    if references:
        logger.info("%d deposits pending too long; %d verifications enqueued", len(references), enqueued)
    return enqueued
