"""The one authorisation layer: may the caller do what the route needs.

Every protected route declares its need with `guards=[requires(...)]`; the guard takes the caller's verified
identity (`app.domain.auth.credentials.identify`: a JWT wins over an API key), checks the permission, holds one
of the caller's in-flight slots for the rest of the request (`app.lib.inflight`), and leaves a `Caller` for the
handler's `caller` dependency.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Literal

from litestar.openapi import ResponseSpec

from app.domain.auth.credentials import ALL_PERMISSIONS, Caller, Permission, identify, presented_credentials
from app.lib.errors import ErrorBody, NotAuthenticated, PermissionDenied
from app.lib.inflight import hold_slot
from app.process import process_of

if TYPE_CHECKING:
    from litestar.connection import ASGIConnection
    from litestar.handlers.base import BaseRouteHandler

__all__ = ("ALL_PERMISSIONS", "Caller", "Permission", "requires")

USER_OR_KEY_SECURITY: list[dict[str, list[str]]] = [{"BearerAuth": []}, {"ApiKeyAuth": []}]
"""OpenAPI security of routes open to a JWT or an API key."""
USER_ONLY_SECURITY: list[dict[str, list[str]]] = [{"BearerAuth": []}]
"""OpenAPI security of JWT-only routes."""


def error_response(description: str) -> ResponseSpec:
    """An OpenAPI response documenting the contract's error body."""
    return ResponseSpec(data_container=ErrorBody, description=description, generate_examples=False)


UNREADABLE_REQUEST = error_response("`VALIDATION_ERROR`: the request could not be read.")
"""The 400 of a route whose only input is its path: documented so that Litestar's own validation-error schema,
which it adds to every route with parameters, does not describe an answer this service never gives."""

RATE_LIMITED = error_response(
    "`RATE_LIMITED`: more than `RATE_LIMIT_PER_MINUTE` requests this minute from this user, key or address; "
    "`Retry-After` says when to try again."
)
"""The 429 of every route but `/health` and Paystack's webhook."""

SERVICE_UNAVAILABLE = error_response(
    "`SERVICE_UNAVAILABLE`: PostgreSQL or Redis cannot be reached; nothing was done. `Retry-After` says when to "
    "try again."
)
"""The 503 of every route that reads or writes PostgreSQL or Redis (every one but `/` and `/metrics`)."""

USER_ONLY_RESPONSES: dict[int, ResponseSpec] = {
    401: error_response("`NOT_AUTHENTICATED` (no credentials), `INVALID_TOKEN`, `TOKEN_EXPIRED` or `TOKEN_REVOKED`."),
    403: error_response("`PERMISSION_DENIED`: an API key cannot call this endpoint."),
    429: RATE_LIMITED,
    503: SERVICE_UNAVAILABLE,
}
"""The authentication errors of a JWT-only route, for its OpenAPI `responses`."""
USER_OR_KEY_RESPONSES: dict[int, ResponseSpec] = {
    401: error_response(
        "`NOT_AUTHENTICATED` (no credentials), `INVALID_TOKEN`, `TOKEN_EXPIRED`, `TOKEN_REVOKED`, "
        "`INVALID_API_KEY`, `API_KEY_EXPIRED` or `API_KEY_REVOKED`."
    ),
    403: error_response("`PERMISSION_DENIED`: the API key lacks the permission this endpoint needs."),
    429: RATE_LIMITED,
    503: SERVICE_UNAVAILABLE,
}
"""The authentication errors of a route open to a JWT or an API key, for its OpenAPI `responses`."""


ANY_KEY: Final = "any-key"
"""`requires(ANY_KEY)`: a JWT or any valid API key, whatever its permissions (reference data such as `/banks`)."""


class requires:  # noqa: N801 - used like a function: `guards=[requires(Permission.READ)]`
    """A guard for a route: `requires(None)` means JWT only, `requires(ANY_KEY)` a JWT or any valid key;
    otherwise a JWT or a key holding `permission`.

    The guard keeps `permission` as an attribute so tests (and the docs) can read what each live route
    requires.
    """

    def __init__(self, permission: Permission | Literal["any-key"] | None) -> None:
        self.permission = permission

    async def __call__(self, connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        presented = presented_credentials(connection.scope)
        if (
            self.permission is None
            and presented.token is None
            and not presented.malformed_authorization
            and (presented.api_key is not None)
        ):
            # Refused before the key is even looked up: no key, valid or not, can manage keys or sessions.
            raise PermissionDenied("API keys cannot call this endpoint; sign in as the user.")
        process = process_of(connection.app)
        caller = await identify(connection.scope, process.verifier)
        if isinstance(self.permission, Permission) and self.permission.value not in caller.permissions:
            raise PermissionDenied(f"This API key lacks the `{self.permission.value}` permission.")
        await hold_slot(connection.scope, process.slots, str(caller.user_id))
        connection.state.caller = caller

    @property
    def need(self) -> str | None:
        """What the route needs, by name: a permission, `any-key`, or None for a JWT only."""
        return self.permission.value if isinstance(self.permission, Permission) else self.permission

    def __repr__(self) -> str:
        return f"requires({self.need!r})"


async def provide_caller(request: ASGIConnection[Any, Any, Any, Any]) -> Caller:
    """The `caller` dependency: set by the route's guard."""
    caller = getattr(request.state, "caller", None)
    if not isinstance(caller, Caller):
        raise NotAuthenticated
    return caller
