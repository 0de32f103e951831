"""`/wallet/deposit`, `/wallet/deposit/{reference}/status` and `/wallet/paystack/webhook`."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.enums import ParamType
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, Parameter, RequestBody, Schema
from litestar.params import FromPath, JSONBody
from redis.asyncio import Redis

from app.config import Settings
from app.db import models as m
from app.domain.auth.guards import (
    SERVICE_UNAVAILABLE,
    UNREADABLE_REQUEST,
    USER_OR_KEY_RESPONSES,
    USER_OR_KEY_SECURITY,
    Caller,
    Permission,
    error_response,
    requires,
)
from app.domain.payments.deposits import DepositService
from app.domain.payments.inbox import SIGNATURE_HEADER, WebhookInbox, check_paystack_origin
from app.domain.payments.paystack import PaystackClient
from app.domain.payments.schemas import DepositRequest, DepositStarted, DepositStatusBody, WebhookAck
from app.domain.payments.verification import VERIFICATIONS
from app.lib.idempotency import Answer, IdempotencyKeyHeader, run_idempotently
from app.lib.net import client_address
from app.lib.uow import UnitOfWork


async def provide_deposits(uow: NamedDependency[UnitOfWork], settings: NamedDependency[Settings]) -> DepositService:
    return DepositService(uow, settings.money)


def started_response(started: DepositStarted) -> Response[DepositStarted]:
    return Response(started, status_code=201)


def started_answer(result: object) -> Answer | None:
    """The answer committed with the checkout URL: a retry after a crash replays it, never starts another."""
    if isinstance(result, DepositStarted):
        return Answer(201, result)
    return None


@dataclass
class _PaystackWebhookOperation(Operation):
    """The handler reads the raw body (the signature covers its exact bytes), so Litestar cannot see the
    body or the signature header: they are documented here."""

    def __post_init__(self) -> None:
        self.parameters = [
            *(self.parameters or []),
            Parameter(
                name=SIGNATURE_HEADER,
                param_in=ParamType.HEADER,
                required=True,
                schema=Schema(type=OpenAPIType.STRING),
                description="Lowercase hex HMAC-SHA512 of the raw body, keyed with the Paystack secret key.",
            ),
        ]
        self.request_body = RequestBody(
            required=True,
            description="A Paystack event, e.g. `charge.success`, exactly as Paystack sent it.",
            content={
                "application/json": OpenAPIMediaType(
                    schema=Schema(
                        type=OpenAPIType.OBJECT,
                        required=["event"],
                        properties={"event": Schema(type=OpenAPIType.STRING), "data": Schema()},
                    )
                )
            },
        )


class PaymentsController(Controller):
    path = "/wallet"
    tags = ["deposits"]
    dependencies = {"deposits": Provide(provide_deposits)}

    @post(
        "/deposit",
        operation_id="createDeposit",
        response_description="The deposit is pending: send the customer to `authorization_url` to pay.",
        guards=[requires(Permission.DEPOSIT)],
        security=USER_OR_KEY_SECURITY,
        status_code=201,
        summary="Start a deposit into your wallet through Paystack",
        description=(
            "Creates a pending deposit with our own reference and initialises it with Paystack; the customer "
            "pays at `authorization_url`. The wallet is credited once Paystack confirms the payment (its "
            "webhook, or a verification), with exactly the amount initialised. The amount is in kobo, between "
            "`DEPOSIT_MIN_AMOUNT` (default 1) and `DEPOSIT_MAX_AMOUNT` (default 10^12). Supports "
            "`Idempotency-Key`."
        ),
        responses={
            **USER_OR_KEY_RESPONSES,
            400: error_response(
                "`VALIDATION_ERROR`: body, amount not an integer from 1 to 10^12, below Paystack's minimum, "
                "or Idempotency-Key too long."
            ),
            409: error_response("`IDEMPOTENCY_KEY_IN_USE`: the first request with this key is still running."),
            422: error_response("`IDEMPOTENCY_KEY_REUSED`: this key was used with a different request."),
            502: error_response("`PAYMENT_PROVIDER_ERROR`: Paystack refused or failed; nothing stays pending."),
        },
    )
    async def deposit(
        self,
        *,
        request: Request[Any, Any, Any],
        caller: NamedDependency[Caller],
        uow: NamedDependency[UnitOfWork],
        deposits: NamedDependency[DepositService],
        paystack: NamedDependency[PaystackClient],
        settings: NamedDependency[Settings],
        data: JSONBody[DepositRequest],
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response[DepositStarted]:
        start = partial(
            deposits.start, user_id=caller.user_id, amount=data.amount, paystack=paystack, settings=settings.paystack
        )
        return await run_idempotently(
            uow,
            request=request,
            user_id=caller.user_id,
            key=idempotency_key,
            work=start,
            respond=started_response,
            staged=started_answer,
        )

    @get(
        "/deposit/{reference:str}/status",
        operation_id="getDepositStatus",
        response_description="The deposit's status as the service knows it now.",
        guards=[requires(Permission.READ)],
        security=USER_OR_KEY_SECURITY,
        summary="The status of one of your deposits",
        description=(
            "Answered from the database; never credits anything itself. While the deposit is pending, a "
            "verification with Paystack is enqueued (at most one in flight per reference) and a worker applies "
            "its result, so polling this endpoint completes a deposit whose webhook never arrived."
        ),
        responses={
            **USER_OR_KEY_RESPONSES,
            400: UNREADABLE_REQUEST,
            404: error_response("`TRANSACTION_NOT_FOUND`: none of your deposits has this reference."),
        },
    )
    async def deposit_status(
        self,
        caller: NamedDependency[Caller],
        deposits: NamedDependency[DepositService],
        redis: NamedDependency[Redis],
        reference: FromPath[str],
    ) -> DepositStatusBody:
        deposit = await deposits.find_own(caller.user_id, reference)
        if deposit.status == m.DepositStatus.PENDING and not deposit.needs_review:
            await VERIFICATIONS.request(redis, deposit.reference)
        return DepositStatusBody(
            reference=deposit.reference,
            status=m.DepositStatus(deposit.status).public,  # type: ignore[arg-type]
            amount=deposit.amount,
        )

    @post(
        "/paystack/webhook",
        operation_id="receivePaystackEvent",
        response_description="The event is stored; a worker applies it.",
        status_code=200,
        summary="Paystack's webhook (signed with `x-paystack-signature`)",
        description=(
            "Configure `https://<your host>/wallet/paystack/webhook` as the webhook URL on Paystack's "
            "dashboard. The signature (HMAC-SHA512 of the raw body with the secret key) is checked first; then "
            "the source address against `PAYSTACK_WEBHOOK_IPS` when set. A valid event is stored durably and "
            "acknowledged at once; a worker applies it, once however often it is delivered."
        ),
        operation_class=_PaystackWebhookOperation,
        responses={
            401: error_response("`INVALID_SIGNATURE`: the signature is missing or wrong; nothing was stored."),
            403: error_response("`PERMISSION_DENIED`: the source address is not in `PAYSTACK_WEBHOOK_IPS`."),
            413: error_response("`PAYLOAD_TOO_LARGE`: the body is larger than `MAX_BODY_BYTES`."),
            503: SERVICE_UNAVAILABLE,
        },
    )
    async def paystack_webhook(
        self,
        request: Request[Any, Any, Any],
        settings: NamedDependency[Settings],
        inbox: NamedDependency[WebhookInbox],
    ) -> Response[WebhookAck]:
        raw_body = await request.body()
        check_paystack_origin(
            raw_body,
            signature=request.headers.get(SIGNATURE_HEADER),
            source=client_address(request.scope, settings.http),
            paystack=settings.paystack,
        )
        await inbox.receive(raw_body)
        return Response(WebhookAck(status=True), status_code=200)
