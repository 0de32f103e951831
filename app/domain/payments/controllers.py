"""`/wallet/deposit`, `/wallet/deposit/{reference}/status` and `/wallet/paystack/webhook`.

The API process keeps ONE `PaystackClient` (one connection pool) for its lifetime: `start_paystack_client`
and `stop_paystack_client` are the app's start-up and shutdown hooks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from litestar import Controller, Request, Response, get, post
from litestar.background_tasks import BackgroundTask
from litestar.di import NamedDependency
from litestar.enums import ParamType
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, Parameter, RequestBody, Schema
from litestar.params import FromPath, JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import models as m
from app.domain.auth.guards import (
    UNREADABLE_REQUEST,
    USER_OR_KEY_RESPONSES,
    USER_OR_KEY_SECURITY,
    Caller,
    Permission,
    error_response,
    requires,
    settings_of,
)
from app.domain.payments.deposits import DepositService, request_verification
from app.domain.payments.paystack import PaystackClient
from app.domain.payments.schemas import DepositRequest, DepositStarted, DepositStatusBody, WebhookAck
from app.domain.payments.webhooks import APPLY_RECEIVED_TASK, SIGNATURE_HEADER, check_paystack_origin, inbox_of
from app.lib.idempotency import IdempotencyClaim, IdempotencyKeyHeader, run_idempotently
from app.lib.net import client_address
from app.lib.queue import request_drain
from app.lib.redis import redis_from_state

if TYPE_CHECKING:
    from litestar import Litestar
    from redis.asyncio import Redis

PAYSTACK_STATE_KEY = "paystack"


async def start_paystack_client(app: Litestar) -> None:
    """Start-up hook: the process's one Paystack client."""
    app.state[PAYSTACK_STATE_KEY] = PaystackClient(settings_of(app))


async def stop_paystack_client(app: Litestar) -> None:
    """Shutdown hook: close the client's connection pool."""
    client = app.state.get(PAYSTACK_STATE_KEY)
    if isinstance(client, PaystackClient):
        await client.aclose()


def paystack_of(app: Litestar) -> PaystackClient:
    return cast("PaystackClient", app.state[PAYSTACK_STATE_KEY])


async def _request_processing(redis: Redis) -> None:
    # Runs after the 200 has been sent; one run applies every event stored so far, so a burst of webhooks
    # costs one Celery message, not one each. A failure loses nothing: beat re-enqueues events left `received`.
    await request_drain(redis, APPLY_RECEIVED_TASK)


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

    @post(
        "/deposit",
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
        request: Request[Any, Any, Any],
        caller: NamedDependency[Caller],
        db_session: NamedDependency[AsyncSession],
        data: JSONBody[DepositRequest],
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response[DepositStarted]:
        deposits = DepositService(db_session)

        async def start(claim: IdempotencyClaim) -> Response[Any]:
            async def remember(started: DepositStarted) -> None:
                # Committed with the checkout URL: a retry after a crash replays it, never starts another.
                await claim.stage(201, started)

            started = await deposits.start(
                user_id=caller.user_id,
                amount=data.amount,
                settings=settings_of(request.app),
                paystack=paystack_of(request.app),
                before_commit=remember,
            )
            return Response(started, status_code=201)

        return await run_idempotently(
            db_session, request=request, user_id=caller.user_id, key=idempotency_key, handler=start
        )

    @get(
        "/deposit/{reference:str}/status",
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
        request: Request[Any, Any, Any],
        caller: NamedDependency[Caller],
        db_session: NamedDependency[AsyncSession],
        reference: FromPath[str],
    ) -> DepositStatusBody:
        deposit = await DepositService(db_session).find_own(caller.user_id, reference)
        if deposit.status == m.DepositStatus.PENDING.value and not deposit.needs_review:
            await request_verification(redis_from_state(request.app.state), deposit.reference)
        return DepositStatusBody(
            reference=deposit.reference,
            status=deposit.status,  # type: ignore[arg-type]
            amount=deposit.amount,
        )

    @post(
        "/paystack/webhook",
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
        },
    )
    async def paystack_webhook(self, request: Request[Any, Any, Any]) -> Response[WebhookAck]:
        settings = settings_of(request.app)
        raw_body = await request.body()
        check_paystack_origin(
            raw_body,
            signature=request.headers.get(SIGNATURE_HEADER),
            source=client_address(request.scope, settings),
            settings=settings,
        )
        await inbox_of(request.app).receive(raw_body)
        # A redelivery asks for a run too: its first delivery may have been stored without its request for
        # processing getting through (the process died after the commit). At most one run is pending anyway.
        background = BackgroundTask(_request_processing, redis_from_state(request.app.state))
        return Response(WebhookAck(status=True), status_code=200, background=background)
