"""`GET /banks` (where a wallet can pay out to) and `/wallet/withdrawals` (money out to a bank account)."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, QueryParameter
from redis.asyncio import Redis

from app.config import Settings
from app.domain.auth.guards import (
    ANY_KEY,
    UNREADABLE_REQUEST,
    USER_OR_KEY_RESPONSES,
    USER_OR_KEY_SECURITY,
    Caller,
    Permission,
    error_response,
    requires,
)
from app.domain.payments.paystack import PaystackClient
from app.domain.wallets.history import cursor_secret
from app.domain.wallets.paging import FIRST_PAGE_LIMIT, PageCursor, PageLimit, next_page_header, page_response
from app.domain.withdrawals.banks import BankDirectory
from app.domain.withdrawals.schemas import Bank, PayoutCurrency, Withdrawal, WithdrawalAccepted, WithdrawalRequest
from app.domain.withdrawals.service import WithdrawalHistory, WithdrawalService
from app.lib.idempotency import Answer, IdempotencyKeyHeader, run_idempotently
from app.lib.uow import UnitOfWork


def provide_banks(redis: NamedDependency[Redis], paystack: NamedDependency[PaystackClient]) -> BankDirectory:
    return BankDirectory(redis, paystack)


def provide_withdrawals(
    uow: NamedDependency[UnitOfWork],
    redis: NamedDependency[Redis],
    paystack: NamedDependency[PaystackClient],
    settings: NamedDependency[Settings],
) -> WithdrawalService:
    return WithdrawalService(
        uow, redis=redis, paystack=paystack, banks=BankDirectory(redis, paystack), money=settings.money
    )


def accepted_response(accepted: WithdrawalAccepted) -> Response[WithdrawalAccepted]:
    return Response(accepted, status_code=202)


def accepted_answer(result: object) -> Answer | None:
    """The answer committed with the reservation: a retry after a crash replays it, never reserves again."""
    if isinstance(result, WithdrawalAccepted):
        return Answer(202, result)
    return None


class BanksController(Controller):
    path = "/banks"
    tags = ["withdrawals"]
    security = USER_OR_KEY_SECURITY
    dependencies = {"bank_directory": Provide(provide_banks, sync_to_thread=False)}

    @get(
        "",
        operation_id="listBanks",
        response_description="The banks, each with the `code` a withdrawal names it by.",
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


class WithdrawalsController(Controller):
    path = "/wallet/withdrawals"
    tags = ["withdrawals"]
    security = USER_OR_KEY_SECURITY
    dependencies = {"withdrawals": Provide(provide_withdrawals, sync_to_thread=False)}

    @post(
        "",
        operation_id="createWithdrawal",
        response_description="Accepted: the amount is reserved and the payout will follow.",
        guards=[requires(Permission.WITHDRAW)],
        status_code=202,
        summary="Withdraw from your wallet to a bank account (Paystack Transfers)",
        description=(
            "Checks `bank_code` against `GET /banks` and resolves the account with Paystack, then reserves the "
            "amount (your balance drops at once and never below zero) and records the withdrawal `pending`. A "
            "worker then pays it out with a Paystack transfer carrying this `reference`; follow it at "
            "`GET /wallet/withdrawals/{reference}`. A failed or reversed payout gives the money back. Needs the "
            "`withdraw` permission on an API key (never implied by `transfer`). Supports `Idempotency-Key`."
        ),
        responses={
            **USER_OR_KEY_RESPONSES,
            400: error_response(
                "`VALIDATION_ERROR` (body, amount not an integer from 1 to 10^12, account number not 10 digits, "
                "bank code not in `GET /banks`, narration over 100 characters), `BANK_ACCOUNT_INVALID` (Paystack "
                "cannot resolve the account), `INSUFFICIENT_BALANCE` or `LIMIT_EXCEEDED` "
                "(`WITHDRAWAL_DAILY_LIMIT`)."
            ),
            404: error_response("`WALLET_NOT_FOUND`: you have no wallet yet."),
            409: error_response("`IDEMPOTENCY_KEY_IN_USE`: the first request with this key is still running."),
            422: error_response("`IDEMPOTENCY_KEY_REUSED`: this key was used with a different request."),
            502: error_response("`PAYMENT_PROVIDER_ERROR`: Paystack failed; nothing was reserved."),
        },
    )
    async def withdraw(
        self,
        *,
        request: Request[Any, Any, Any],
        caller: NamedDependency[Caller],
        uow: NamedDependency[UnitOfWork],
        withdrawals: NamedDependency[WithdrawalService],
        data: JSONBody[WithdrawalRequest],
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response[WithdrawalAccepted]:
        withdraw = partial(withdrawals.request, user_id=caller.user_id, body=data, actor=caller.principal)
        return await run_idempotently(
            uow,
            request=request,
            user_id=caller.user_id,
            key=idempotency_key,
            work=withdraw,
            respond=accepted_response,
            staged=accepted_answer,
        )

    @get(
        "",
        operation_id="listWithdrawals",
        response_description="A page of your withdrawals, newest first.",
        guards=[requires(Permission.READ)],
        summary="Your withdrawals, newest first",
        description=(
            "Keyset-paginated like `/wallet/transactions`: when more exist, the next page's URL is in the "
            '`Link: <...>; rel="next"` header (absent on the last page).'
        ),
        responses={
            **USER_OR_KEY_RESPONSES,
            400: error_response("`VALIDATION_ERROR`: `limit` outside 1..200 or a cursor this service did not make."),
        },
        response_headers=next_page_header("/wallet/withdrawals"),
    )
    async def list_withdrawals(
        self,
        *,
        request: Request[Any, Any, Any],
        caller: NamedDependency[Caller],
        uow: NamedDependency[UnitOfWork],
        settings: NamedDependency[Settings],
        limit: PageLimit = FIRST_PAGE_LIMIT,
        cursor: PageCursor = None,
    ) -> Response[list[Withdrawal]]:
        secret = cursor_secret(settings.auth.jwt_secret)
        page = await uow.run_statement(
            lambda connection: WithdrawalHistory(connection, cursor_secret=secret).page(
                caller.user_id, limit=limit, cursor=cursor
            )
        )
        return page_response(request, page.items, next_cursor=page.next_cursor, limit=limit, secret=secret)

    @get(
        "/{reference:str}",
        operation_id="getWithdrawal",
        response_description="The withdrawal with this reference.",
        guards=[requires(Permission.READ)],
        summary="One of your withdrawals, by reference",
        responses={
            **USER_OR_KEY_RESPONSES,
            400: UNREADABLE_REQUEST,
            404: error_response("`WITHDRAWAL_NOT_FOUND`: none of your withdrawals has this reference."),
        },
    )
    async def withdrawal(
        self, caller: NamedDependency[Caller], uow: NamedDependency[UnitOfWork], reference: FromPath[str]
    ) -> Withdrawal:
        return await uow.run_statement(lambda connection: WithdrawalHistory(connection).find(caller.user_id, reference))
