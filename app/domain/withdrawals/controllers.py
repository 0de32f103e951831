"""`GET /banks`: where a wallet can pay out to."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.di import NamedDependency, Provide
from litestar.params import QueryParameter
from redis.asyncio import Redis

from app.domain.auth.guards import ANY_KEY, USER_OR_KEY_RESPONSES, USER_OR_KEY_SECURITY, error_response, requires
from app.domain.payments.paystack import PaystackClient
from app.domain.withdrawals.banks import BankDirectory
from app.domain.withdrawals.schemas import Bank, PayoutCurrency


def provide_banks(redis: NamedDependency[Redis], paystack: NamedDependency[PaystackClient]) -> BankDirectory:
    return BankDirectory(redis, paystack)


class BanksController(Controller):
    path = "/banks"
    tags = ["withdrawals"]
    security = USER_OR_KEY_SECURITY
    dependencies = {"bank_directory": Provide(provide_banks, sync_to_thread=False)}

    @get(
        "",
        guards=[requires(ANY_KEY)],
        summary="The banks a withdrawal can pay out to",
        description=(
            "From Paystack's bank list for `currency` (default NGN), cached for a day. Any API key may read it, "
            "whatever its permissions. A withdrawal's `bank_code` is one of these `code`s."
        ),
        responses={
            **USER_OR_KEY_RESPONSES,
            400: error_response("`VALIDATION_ERROR`: `currency` is not one of NGN, GHS, KES, ZAR."),
            502: error_response("`PAYMENT_PROVIDER_ERROR`: Paystack could not be asked and no list is cached."),
        },
    )
    async def banks(
        self,
        bank_directory: NamedDependency[BankDirectory],
        currency: Annotated[
            PayoutCurrency, QueryParameter(description="The payout currency: NGN (default), GHS, KES or ZAR.")
        ] = "NGN",
    ) -> list[Bank]:
        return await bank_directory.banks(currency)
