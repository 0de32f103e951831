"""`/auth/*`: sign-in with Google, checking a token, and logging out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Operation, Reference, RequestBody, Schema
from litestar.params import FromQuery, JSONBody, QueryParameter
from litestar.response import Redirect
from redis.asyncio import Redis

from app.config import Settings
from app.domain.auth.credentials import CredentialVerifier, presented_credentials
from app.domain.auth.guards import (
    RATE_LIMITED,
    SERVICE_UNAVAILABLE,
    USER_ONLY_RESPONSES,
    USER_ONLY_SECURITY,
    Caller,
    error_response,
    requires,
)
from app.domain.auth.schemas import LoggedOut, SignedInUser, SignInResult, TokenVerification, VerifyTokenRequest
from app.domain.auth.sign_in import BROWSER_COOKIE, FLOW_TTL_SECONDS, GoogleSignIn
from app.domain.auth.tokens import revoke_token
from app.lib.errors import InvalidToken, NotAuthenticated, RequestValidationError
from app.lib.uow import UnitOfWork

OAUTH_ERROR = error_response(
    "`OAUTH_ERROR`: a denied consent, an unknown, used or foreign state, a failed code exchange, "
    "an ID token that fails verification, or an e-mail address the provider has not verified."
)


@dataclass
class _OptionalBodyOperation(Operation):
    """The body of `POST /auth/verify-token` may be left out (the token can come in the header instead);
    Litestar marks every declared body required, and describes the optional one as "the object or null", which
    generated clients send as a JSON `null` (or fail to encode): documented as an optional object instead."""

    def __post_init__(self) -> None:
        if isinstance(self.request_body, RequestBody):
            self.request_body.required = False
            for media in (self.request_body.content or {}).values():
                if isinstance(media.schema, Schema) and media.schema.one_of:
                    objects = [choice for choice in media.schema.one_of if isinstance(choice, Reference)]
                    media.schema = objects[0] if len(objects) == 1 else media.schema


class AuthController(Controller):
    path = "/auth"
    tags = ["auth"]

    @get(
        "/google",
        operation_id="startGoogleSignIn",
        status_code=302,
        summary="Start sign-in with Google: redirects to the provider's consent page",
        description=(
            "302 to the OpenID Connect provider's authorisation URL with `state`, `nonce` and a PKCE (S256) "
            "challenge. Sets an HttpOnly cookie binding the sign-in to this browser for 10 minutes."
        ),
        responses={
            302: ResponseSpec(data_container=None, description="To the provider's authorisation URL."),
            400: OAUTH_ERROR,
            429: RATE_LIMITED,
            503: SERVICE_UNAVAILABLE,
        },
    )
    async def google(
        self, request: Request[Any, Any, Any], settings: NamedDependency[Settings], redis: NamedDependency[Redis]
    ) -> Redirect:
        flow = await GoogleSignIn(settings, redis).start(request.cookies.get(BROWSER_COOKIE))
        cookie = Cookie(
            key=BROWSER_COOKIE,
            value=flow.browser_id,
            max_age=FLOW_TTL_SECONDS,
            path="/auth/google",
            httponly=True,
            secure=settings.auth.google_redirect_uri.startswith("https://"),
            # Lax: the cookie must come back on the provider's top-level redirect to the callback.
            samesite="lax",
        )
        return Redirect(
            flow.authorization_url, status_code=302, cookies=[cookie], headers={"Cache-Control": "no-store"}
        )

    @get(
        "/google/callback",
        operation_id="finishGoogleSignIn",
        response_description="Signed in: our access token, the user and their wallet's number.",
        summary="Finish sign-in with Google: our access token, the user and their wallet",
        description="The user and their wallet are created on first sign-in.",
        responses={400: OAUTH_ERROR, 429: RATE_LIMITED, 503: SERVICE_UNAVAILABLE},
    )
    async def google_callback(
        self,
        request: Request[Any, Any, Any],
        settings: NamedDependency[Settings],
        redis: NamedDependency[Redis],
        uow: NamedDependency[UnitOfWork],
        *,
        code: FromQuery[str | None] = None,
        oauth_state: Annotated[str | None, QueryParameter(name="state")] = None,
        error: FromQuery[str | None] = None,
    ) -> Response[SignInResult]:
        signed_in = await GoogleSignIn(settings, redis).finish(
            uow,
            browser_id=request.cookies.get(BROWSER_COOKIE),
            state=oauth_state,
            code=code,
            error=error,
        )
        user = signed_in.user
        result = SignInResult(
            access_token=signed_in.token.access_token,
            expires_in=signed_in.token.expires_in,
            user=SignedInUser(id=user.id, email=user.email, name=user.name, picture=user.picture),
            wallet_number=signed_in.wallet.number,
        )
        return Response(result, headers={"Cache-Control": "no-store"})

    @post(
        "/verify-token",
        operation_id="verifyToken",
        status_code=200,
        response_description="The token is valid: whose it is and when it expires.",
        summary="Check an access token (sent as `Authorization: Bearer` or in the body)",
        description="When both are sent, the `Authorization` header is the one checked.",
        security=[{"BearerAuth": []}, {}],
        operation_class=_OptionalBodyOperation,
        responses={
            400: error_response("`VALIDATION_ERROR`: the body is not a JSON object with an optional `token` string."),
            401: error_response("`NOT_AUTHENTICATED` (no token), `INVALID_TOKEN`, `TOKEN_EXPIRED` or `TOKEN_REVOKED`."),
            429: RATE_LIMITED,
            503: SERVICE_UNAVAILABLE,
        },
    )
    async def verify_token(
        self,
        request: Request[Any, Any, Any],
        verifier: NamedDependency[CredentialVerifier],
        data: JSONBody[VerifyTokenRequest | None] = None,
    ) -> TokenVerification:
        presented = presented_credentials(request.scope)
        if presented.malformed_authorization:
            raise InvalidToken("The Authorization header must be `Bearer <token>`.")
        if data is None and (await request.body()).strip():
            raise RequestValidationError("The body, when sent, must be a JSON object with an optional `token` string.")
        token = presented.token
        if token is None and data is not None:
            token = data.token
        if token is None:
            raise NotAuthenticated('Send the token as `Authorization: Bearer <token>` or as `{"token": ...}`.')
        verified = await verifier.token(token)
        return TokenVerification(user_id=verified.user_id, email=verified.email, expires_at=verified.claims.expires_at)

    @post(
        "/logout",
        operation_id="logOut",
        status_code=200,
        response_description="Logged out: this token is refused from now on.",
        summary="Log out: this access token is refused from now on",
        guards=[requires(None)],
        security=USER_ONLY_SECURITY,
        responses=USER_ONLY_RESPONSES,
    )
    async def logout(
        self,
        caller: NamedDependency[Caller],
        verifier: NamedDependency[CredentialVerifier],
        uow: NamedDependency[UnitOfWork],
    ) -> LoggedOut:
        if caller.token is not None:
            await revoke_token(uow, caller.token)
            await verifier.cache.confirm(f"token:{caller.token.jti}")
        return LoggedOut()
