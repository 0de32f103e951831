"""`/wallet/balance`, `/wallet/transfer` and `/wallet/transactions`: the caller's own wallet only."""

from __future__ import annotations

from functools import partial
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, JSONBody
from redis.asyncio import Redis

from app.config import Settings
from app.domain.auth.guards import (
    UNREADABLE_REQUEST,
    USER_OR_KEY_RESPONSES,
    USER_OR_KEY_SECURITY,
    Caller,
    Permission,
    error_response,
    requires,
)
from app.domain.wallets.history import TransactionHistory, cursor_secret
from app.domain.wallets.ledger import AcceptedTransfer
from app.domain.wallets.notifications import SettlementNotifier
from app.domain.wallets.paging import FIRST_PAGE_LIMIT, PageCursor, PageLimit, next_page_header, page_response
from app.domain.wallets.schemas import Balance, Transaction, TransferRequest, TransferResult, transfer_result
from app.domain.wallets.transfers import TransferOutcome, TransferService
from app.lib.drain import CoalescedRequests
from app.lib.idempotency import Answer, IdempotencyKeyHeader, run_idempotently
from app.lib.uow import UnitOfWork


async def provide_transfers(
    uow: NamedDependency[UnitOfWork],
    redis: NamedDependency[Redis],
    notifier: NamedDependency[SettlementNotifier],
    settings: NamedDependency[Settings],
    unwaited_settlements: NamedDependency[CoalescedRequests],
) -> TransferService:
    return TransferService(
        uow,
        redis=redis,
        notifier=notifier,
        wait_ms=settings.money.transfer_wait_ms,
        unwaited=unwaited_settlements,
    )


def transfer_response(outcome: TransferOutcome) -> Response[Any]:
    """200 once the recipient was credited within the wait, else 202 (accepted, settling)."""
    return Response(
        transfer_result(outcome.reference, settled=outcome.settled), status_code=200 if outcome.settled else 202
    )


def accepted_answer(result: object) -> Answer | None:
    """The answer committed with an accepted transfer: a retry after a crash replays "accepted", never sends again."""
    if isinstance(result, AcceptedTransfer):
        return Answer(202, transfer_result(result.reference, settled=False))
    return None


class WalletController(Controller):
    path = "/wallet"
    tags = ["wallet"]
    security = USER_OR_KEY_SECURITY
    dependencies = {"transfers": Provide(provide_transfers)}

    @get(
        "/balance",
        operation_id="getBalance",
        response_description="Your wallet's available balance.",
        guards=[requires(Permission.READ)],
        summary="Your wallet's balance (kobo), currency and number",
        responses={**USER_OR_KEY_RESPONSES},
    )
    async def balance(self, caller: NamedDependency[Caller], uow: NamedDependency[UnitOfWork]) -> Balance:
        wallet = await uow.run_statement(lambda connection: TransactionHistory(connection).wallet_of(caller.user_id))
        return Balance(balance=wallet.balance, currency=wallet.currency, wallet_number=wallet.number)

    @post(
        "/transfer",
        operation_id="transferFunds",
        response_description="Settled: the recipient has been credited.",
        guards=[requires(Permission.TRANSFER)],
        status_code=200,
        summary="Send money to another wallet by its number",
        description=(
            "The amount leaves your balance at once (it can never go below zero) and a worker credits the "
            "recipient. 200 when that happened within the wait bound (`TRANSFER_WAIT_MS`), else 202: the "
            "transfer is accepted and will settle; follow it at `/wallet/transactions/{reference}`."
        ),
        responses={
            **USER_OR_KEY_RESPONSES,
            202: ResponseSpec(
                data_container=TransferResult,
                description="Accepted; settlement had not finished within the wait bound.",
                generate_examples=False,
            ),
            400: error_response(
                "`VALIDATION_ERROR` (body, amount not an integer from 1 to 10^12, wallet number not 13 digits, "
                "Idempotency-Key too long), `INSUFFICIENT_BALANCE` or `SELF_TRANSFER`."
            ),
            404: error_response("`WALLET_NOT_FOUND`: no wallet has this number."),
            409: error_response("`IDEMPOTENCY_KEY_IN_USE`: the first request with this key is still running."),
            422: error_response("`IDEMPOTENCY_KEY_REUSED`: this key was used with a different request."),
        },
    )
    async def transfer(
        self,
        *,
        request: Request[Any, Any, Any],
        caller: NamedDependency[Caller],
        uow: NamedDependency[UnitOfWork],
        transfers: NamedDependency[TransferService],
        data: JSONBody[TransferRequest],
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response[TransferResult]:
        send = partial(
            transfers.send,
            sender_user_id=caller.user_id,
            recipient_wallet_number=data.wallet_number,
            amount=data.amount,
            actor=caller.principal,
        )
        return await run_idempotently(
            uow,
            request=request,
            user_id=caller.user_id,
            key=idempotency_key,
            work=send,
            respond=transfer_response,
            staged=accepted_answer,
        )

    @get(
        "/transactions",
        operation_id="listTransactions",
        response_description="A page of your history, newest first.",
        guards=[requires(Permission.READ)],
        summary="Your deposits, transfers and withdrawals, newest first",
        description=(
            "Keyset-paginated: when more items exist, the next page's URL is in the "
            '`Link: <...>; rel="next"` header (absent on the last page).'
        ),
        responses={
            **USER_OR_KEY_RESPONSES,
            400: error_response("`VALIDATION_ERROR`: `limit` outside 1..200 or a cursor this service did not make."),
        },
        response_headers=next_page_header("/wallet/transactions"),
    )
    async def transactions(
        self,
        *,
        request: Request[Any, Any, Any],
        caller: NamedDependency[Caller],
        uow: NamedDependency[UnitOfWork],
        settings: NamedDependency[Settings],
        limit: PageLimit = FIRST_PAGE_LIMIT,
        cursor: PageCursor = None,
    ) -> Response[list[Transaction]]:
        secret = cursor_secret(settings.auth.jwt_secret)
        page = await uow.run_statement(
            lambda connection: TransactionHistory(connection, cursor_secret=secret).page(
                caller.user_id, limit=limit, cursor=cursor
            )
        )
        return page_response(request, page.items, next_cursor=page.next_cursor, limit=limit, secret=secret)

    @get(
        "/transactions/{reference:str}",
        operation_id="getTransaction",
        response_description="The deposit, transfer or withdrawal with this reference.",
        guards=[requires(Permission.READ)],
        summary="One deposit, transfer or withdrawal of yours, by reference",
        responses={
            **USER_OR_KEY_RESPONSES,
            400: UNREADABLE_REQUEST,
            404: error_response(
                "`TRANSACTION_NOT_FOUND`: none of your deposits, transfers or withdrawals has this reference."
            ),
        },
    )
    async def transaction(
        self, caller: NamedDependency[Caller], uow: NamedDependency[UnitOfWork], reference: FromPath[str]
    ) -> Transaction:
        return await uow.run_statement(
            lambda connection: TransactionHistory(connection).find(caller.user_id, reference)
        )
