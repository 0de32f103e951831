"""`/keys/*`: a signed-in user manages the API keys their services use. JWT only: a key never manages keys."""

from __future__ import annotations

from datetime import UTC, datetime

from litestar import Controller, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody

from app.domain.auth.credentials import CredentialVerifier
from app.domain.auth.guards import (
    UNREADABLE_REQUEST,
    USER_ONLY_RESPONSES,
    USER_ONLY_SECURITY,
    Caller,
    error_response,
    requires,
)
from app.domain.keys.schemas import CreatedKey, CreateKeyRequest, KeySummary, RevokedKey, RolloverKeyRequest
from app.domain.keys.service import ApiKeyService, IssuedKey, status_at
from app.lib.uow import UnitOfWork


async def provide_api_keys(uow: NamedDependency[UnitOfWork]) -> ApiKeyService:
    return ApiKeyService(session=uow.session)


def _created(issued: IssuedKey) -> CreatedKey:
    key = issued.key
    return CreatedKey(
        id=key.id, name=key.name, api_key=issued.secret, permissions=list(key.permissions), expires_at=key.expires_at
    )


class ApiKeyController(Controller):
    path = "/keys"
    tags = ["api keys"]
    dependencies = {"api_keys": Provide(provide_api_keys)}

    @post(
        "/create",
        operation_id="createApiKey",
        response_description="The new key, with its secret `api_key`: store it now, it is never shown again.",
        guards=[requires(None)],
        security=USER_ONLY_SECURITY,
        status_code=201,
        summary="Create an API key (its secret is shown only in this answer)",
        responses={
            **USER_ONLY_RESPONSES,
            400: error_response(
                "`VALIDATION_ERROR` (name, permissions or expiry) or `API_KEY_LIMIT_REACHED` (5 active keys)."
            ),
        },
    )
    async def create_key(
        self,
        caller: NamedDependency[Caller],
        api_keys: NamedDependency[ApiKeyService],
        uow: NamedDependency[UnitOfWork],
        data: JSONBody[CreateKeyRequest],
    ) -> CreatedKey:
        issued = await uow.run(
            lambda: api_keys.create_key(
                caller.user_id, name=data.name, permissions=data.permissions, expiry=data.expiry
            )
        )
        return _created(issued)

    @get(
        "/",
        operation_id="listApiKeys",
        response_description="Your keys, active, expired and revoked.",
        summary="List your API keys (never their secrets)",
        guards=[requires(None)],
        security=USER_ONLY_SECURITY,
        responses=USER_ONLY_RESPONSES,
    )
    async def list_keys(
        self, caller: NamedDependency[Caller], api_keys: NamedDependency[ApiKeyService]
    ) -> list[KeySummary]:
        now = datetime.now(UTC)
        return [
            KeySummary(
                id=key.id,
                name=key.name,
                prefix=key.prefix,
                permissions=list(key.permissions),
                expires_at=key.expires_at,
                status=status_at(key, now),
                created_at=key.created_at,
            )
            for key in await api_keys.list_keys(caller.user_id)
        ]

    @post(
        "/rollover",
        operation_id="rolloverApiKey",
        response_description="The new key, with its secret `api_key`: store it now, it is never shown again.",
        guards=[requires(None)],
        security=USER_ONLY_SECURITY,
        status_code=201,
        summary="Replace an expired key with a new one of the same name and permissions",
        responses={
            **USER_ONLY_RESPONSES,
            400: error_response(
                "`API_KEY_NOT_EXPIRED` (not expired yet, revoked, or already rolled over), "
                "`API_KEY_LIMIT_REACHED` or `VALIDATION_ERROR`."
            ),
            404: error_response("`API_KEY_NOT_FOUND`: none of your keys has this id."),
        },
    )
    async def roll_over_key(
        self,
        caller: NamedDependency[Caller],
        api_keys: NamedDependency[ApiKeyService],
        uow: NamedDependency[UnitOfWork],
        data: JSONBody[RolloverKeyRequest],
    ) -> CreatedKey:
        issued = await uow.run(lambda: api_keys.roll_over(caller.user_id, data.expired_key_id, expiry=data.expiry))
        return _created(issued)

    @post(
        "/revoke/{key_id:str}",
        operation_id="revokeApiKey",
        response_description="The key is revoked: it is refused from the next request on.",
        guards=[requires(None)],
        security=USER_ONLY_SECURITY,
        status_code=200,
        summary="Revoke an API key at once (revoking it again is a no-op)",
        responses={
            **USER_ONLY_RESPONSES,
            400: UNREADABLE_REQUEST,
            404: error_response("`API_KEY_NOT_FOUND`: none of your keys has this id (a malformed id included)."),
        },
    )
    async def revoke_key(
        self,
        caller: NamedDependency[Caller],
        api_keys: NamedDependency[ApiKeyService],
        uow: NamedDependency[UnitOfWork],
        verifier: NamedDependency[CredentialVerifier],
        key_id: FromPath[str],
    ) -> RevokedKey:
        key = await uow.run(lambda: api_keys.revoke(caller.user_id, key_id))
        await verifier.cache.confirm(f"key:{key.key_hash}")
        return RevokedKey(id=key.id)
