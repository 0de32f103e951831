"""`/webhooks`: a signed-in user registers the URLs of their own services that receive their events.

JWT only, like `/keys`: an API key acts on a wallet, it never decides where the wallet's events go.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import Controller, Response, delete, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, QueryParameter

from app.config import Settings
from app.domain.auth.guards import (
    UNREADABLE_REQUEST,
    USER_ONLY_RESPONSES,
    USER_ONLY_SECURITY,
    Caller,
    error_response,
    requires,
)
from app.domain.webhooks.endpoints import WebhookEndpoints
from app.domain.webhooks.schemas import CreatedEndpoint, CreateEndpointRequest, Delivery, Endpoint, Redelivery
from app.domain.webhooks.signing import SecretBox
from app.lib.errors import WebhookNotFound
from app.lib.uow import UnitOfWork

NOT_FOUND = error_response("`WEBHOOK_NOT_FOUND`: none of your endpoints (or of its deliveries) has this id.")


def _id(text: str) -> UUID:
    """An id from the path; anything that is not one is an endpoint nobody has (404, not 400)."""
    try:
        return UUID(text)
    except ValueError:
        raise WebhookNotFound from None


def provide_endpoints(uow: NamedDependency[UnitOfWork], settings: NamedDependency[Settings]) -> WebhookEndpoints:
    return WebhookEndpoints(
        uow, secrets=SecretBox(settings.auth.jwt_secret), allow_private_urls=settings.webhook_allow_private_urls
    )


class WebhookController(Controller):
    path = "/webhooks"
    tags = ["webhooks"]
    security = USER_ONLY_SECURITY
    guards = [requires(None)]
    dependencies = {"endpoints": Provide(provide_endpoints, sync_to_thread=False)}

    @post(
        "",
        operation_id="registerWebhookEndpoint",
        response_description="The endpoint, with its signing `secret`: store it now, it is never shown again.",
        status_code=201,
        summary="Register an endpoint that receives your events (its secret is shown only here)",
        description=(
            "Events are POSTed as `{id, type, created_at, data}`, signed with `Wallet-Signature: t=<unix>,"
            'v1=<hex HMAC-SHA256 of "<t>.<raw body>" keyed with the secret>`; retried with backoff until a 2xx. '
            "At most 5 endpoints. In production the URL must be `https` and resolve only to public addresses."
        ),
        responses={
            **USER_ONLY_RESPONSES,
            400: error_response(
                "`VALIDATION_ERROR`: the body, an unknown event type, an unsafe or unresolvable URL, or a 6th endpoint."
            ),
        },
    )
    async def register(
        self,
        caller: NamedDependency[Caller],
        endpoints: NamedDependency[WebhookEndpoints],
        data: JSONBody[CreateEndpointRequest],
    ) -> CreatedEndpoint:
        return await endpoints.register(caller.user_id, data)

    @get(
        "",
        operation_id="listWebhookEndpoints",
        response_description="Your endpoints, with when each was disabled, if it was.",
        summary="Your endpoints",
        responses={**USER_ONLY_RESPONSES},
    )
    async def list_endpoints(
        self, caller: NamedDependency[Caller], endpoints: NamedDependency[WebhookEndpoints]
    ) -> list[Endpoint]:
        return await endpoints.of_user(caller.user_id)

    @delete(
        "/{endpoint_id:str}",
        operation_id="deleteWebhookEndpoint",
        response_description="Deleted: nothing more is sent to it.",
        status_code=204,
        summary="Delete an endpoint: nothing more is sent to it",
        responses={**USER_ONLY_RESPONSES, 400: UNREADABLE_REQUEST, 404: NOT_FOUND},
    )
    async def delete_endpoint(
        self,
        caller: NamedDependency[Caller],
        endpoints: NamedDependency[WebhookEndpoints],
        endpoint_id: FromPath[str],
    ) -> Response[None]:
        await endpoints.delete(caller.user_id, _id(endpoint_id))
        return Response(None, status_code=204)

    @get(
        "/{endpoint_id:str}/deliveries",
        operation_id="listWebhookDeliveries",
        response_description="The endpoint's deliveries, newest first.",
        summary="An endpoint's deliveries, newest first",
        responses={
            **USER_ONLY_RESPONSES,
            400: error_response("`VALIDATION_ERROR`: `limit` outside 1..200."),
            404: NOT_FOUND,
        },
    )
    async def deliveries(
        self,
        caller: NamedDependency[Caller],
        endpoints: NamedDependency[WebhookEndpoints],
        endpoint_id: FromPath[str],
        limit: Annotated[int, QueryParameter(ge=1, le=200, description="Deliveries to show, 1 to 200.")] = 50,
    ) -> list[Delivery]:
        return await endpoints.deliveries(caller.user_id, _id(endpoint_id), limit=limit)

    @post(
        "/{endpoint_id:str}/deliveries/{delivery_id:str}/redeliver",
        operation_id="redeliverWebhookEvent",
        response_description="A new delivery of the same event is queued.",
        status_code=202,
        summary="Send a delivery's event again (a new delivery, same event id)",
        responses={
            **USER_ONLY_RESPONSES,
            400: error_response("`VALIDATION_ERROR`: the endpoint is disabled."),
            404: NOT_FOUND,
        },
    )
    async def redeliver(
        self,
        caller: NamedDependency[Caller],
        endpoints: NamedDependency[WebhookEndpoints],
        endpoint_id: FromPath[str],
        delivery_id: FromPath[str],
    ) -> Redelivery:
        return await endpoints.redeliver(caller.user_id, _id(endpoint_id), _id(delivery_id))
