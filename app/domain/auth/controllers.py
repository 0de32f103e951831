"""`/auth/*`: sign-in with Google, checking a token, and logging out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Operation, RequestBody
from litestar.params import FromQuery, JSONBody, QueryParameter
from litestar.response import Redirect
from redis.asyncio import Redis

from app.config import Settings
from app.domain.auth.credentials import CredentialVerifier, presented_credentials
from app.domain.auth.guards import (
    RATE_LIMITED,
    USER_ONLY_RESPONSES,
    USER_ONLY_SECURITY,
    Caller,
    error_response,
    requires,
)
from app.domain.auth.schemas import LoggedOut, SignedInUser, SignInResult, TokenVerification, VerifyTokenRequest
from app.domain.auth.sign_in import BROWSER_COOKIE, FLOW_TTL_SECONDS, GoogleSignIn
from app.domain.auth.tokens import revoke_token
from app.lib.errors import InvalidToken, NotAuthenticated
from app.lib.uow import UnitOfWork

OAUTH_ERROR = error_response(
    "`OAUTH_ERROR`: a denied consent, an unknown, used or foreign state, a failed code exchange, "
    "an ID token that fails verification, or an e-mail address the provider has not verified."
)


@dataclass
class _OptionalBodyOperation(Operation):
    """The body of `POST /auth/verify-token` may be left out (the token can come in the header instead);
    Litestar marks every declared body required, so the document is corrected here."""

    def __post_init__(self) -> None:
        if isinstance(self.request_body, RequestBody):
            self.request_body.required = False


class AuthController(Controller):
    path = "/auth"
    tags = ["auth"]

    @get(
        "/google",
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
        summary="Finish sign-in with Google: our access token, the user and their wallet",
        description="The user and their wallet are created on first sign-in.",
        responses={400: OAUTH_ERROR, 429: RATE_LIMITED},
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
        status_code=200,
        summary="Check an access token (sent as `Authorization: Bearer` or in the body)",
        description="When both are sent, the `Authorization` header is the one checked.",
        security=[{"BearerAuth": []}, {}],
        operation_class=_OptionalBodyOperation,
        responses={
            400: error_response("`VALIDATION_ERROR`: the body is not a JSON object with an optional `token` string."),
            401: error_response("`NOT_AUTHENTICATED` (no token), `INVALID_TOKEN`, `TOKEN_EXPIRED` or `TOKEN_REVOKED`."),
            429: RATE_LIMITED,
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
        token = presented.token
        if token is None and data is not None:
            token = data.token
        if token is None:
            raise NotAuthenticated('Send the token as `Authorization: Bearer <token>` or as `{"token": ...}`.')
        verified = await verifier.token(token)
        return TokenVerification(user_id=verified.user_id, email=verified.email, expires_at=verified.claims.expires_at)

    @post(
        "/logout",
        status_code=200,
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
