"""The OpenID Connect provider behind "Sign in with Google", found through its discovery document.

authlib does the protocol (PKCE, the code exchange, the ID token's claims); the signature is checked against
the provider's JWKS with asymmetric algorithms only. Discovery and JWKS are cached per process (the JWKS is
refetched once for an unknown key id). Every failure is an `OAuthFailed` (400 `OAUTH_ERROR`), never a 500.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import httpx
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from app.domain.auth.users import Identity
from app.lib.errors import OAuthFailed

with warnings.catch_warnings():
    # authlib 1.9 warns that it would rather use the `httpx2` package; httpx is what the project locks.
    warnings.simplefilter("ignore", DeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError

if TYPE_CHECKING:
    from app.config import Settings

logger = logging.getLogger(__name__)

SCOPES: Final = "openid email profile"
HTTP_TIMEOUT_SECONDS: Final = 10.0
CLOCK_SKEW_SECONDS: Final = 60
DISCOVERY_CACHE_SECONDS: Final = 3600.0
DISCOVERY_SUFFIX: Final = "/.well-known/openid-configuration"
MAX_SUBJECT_LENGTH: Final = 255
ASYMMETRIC_ALGORITHMS: Final = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
"""Signature algorithms accepted on ID tokens: never `none`, never a shared-secret (HS*) one."""


@dataclass(frozen=True)
class ProviderMetadata:
    """What we use of the provider's discovery document."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    signing_algorithms: tuple[str, ...]


_metadata_cache: dict[str, tuple[float, ProviderMetadata]] = {}
_key_cache: dict[str, KeySet] = {}


def _failure(reason: str, detail: str = "Sign-in with the identity provider failed.") -> OAuthFailed:
    logger.warning("sign-in failed: %s", reason)
    return OAuthFailed(detail)


async def _get_json(url: str) -> dict[str, Any]:
    try:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_SECONDS) as client:
            response = await client.get(url, headers={"accept": "application/json"})
            response.raise_for_status()
            document = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise _failure(f"could not fetch {url}: {exc!r}", "The identity provider could not be reached.") from exc
    if not isinstance(document, dict):
        raise _failure(f"{url} did not answer a JSON object")
    return document


class OpenIDProvider:
    """The configured provider, seen as the client `GOOGLE_CLIENT_ID`."""

    def __init__(self, settings: Settings) -> None:
        self.client_id = settings.auth.google_client_id
        self.client_secret = settings.auth.google_client_secret
        self.redirect_uri = settings.auth.google_redirect_uri
        self.discovery_url = settings.auth.google_discovery_url

    def _client(self) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=self.client_id,
            client_secret=self.client_secret,
            redirect_uri=self.redirect_uri,
            scope=SCOPES,
            code_challenge_method="S256",
            timeout=HTTP_TIMEOUT_SECONDS,
        )

    async def metadata(self) -> ProviderMetadata:
        """The discovery document, fetched once per process (and again after an hour)."""
        if not self.client_id:
            raise _failure("GOOGLE_CLIENT_ID is not set", "Sign-in with Google is not configured.")
        cached = _metadata_cache.get(self.discovery_url)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        document = await _get_json(self.discovery_url)
        try:
            issuer = str(document["issuer"])
            metadata = ProviderMetadata(
                issuer=issuer,
                authorization_endpoint=str(document["authorization_endpoint"]),
                token_endpoint=str(document["token_endpoint"]),
                jwks_uri=str(document["jwks_uri"]),
                signing_algorithms=tuple(
                    alg
                    for alg in document.get("id_token_signing_alg_values_supported") or ["RS256"]
                    if alg in ASYMMETRIC_ALGORITHMS
                ),
            )
        except (KeyError, TypeError) as exc:
            raise _failure(f"discovery document lacks {exc}") from exc
        # OpenID Connect Discovery: the document must be served under its own issuer, or anyone able to
        # serve a document could claim to be any issuer.
        if self.discovery_url.rstrip("/") != issuer.rstrip("/") + DISCOVERY_SUFFIX:
            raise _failure(f"issuer {issuer!r} does not match the discovery URL {self.discovery_url!r}")
        if not metadata.signing_algorithms:
            raise _failure("the provider signs ID tokens with no algorithm we accept")
        _metadata_cache[self.discovery_url] = (time.monotonic() + DISCOVERY_CACHE_SECONDS, metadata)
        return metadata

    async def _signing_keys(self, jwks_uri: str, *, refresh: bool = False) -> KeySet:
        keys = None if refresh else _key_cache.get(jwks_uri)
        if keys is None:
            document = await _get_json(jwks_uri)
            try:
                keys = KeySet.import_key_set(document)  # type: ignore[arg-type]
            except (JoseError, ValueError, TypeError, KeyError) as exc:
                raise _failure(f"unusable JWKS at {jwks_uri}: {exc!r}") from exc
            _key_cache[jwks_uri] = keys
        return keys

    async def authorization_url(self, *, state: str, nonce: str, code_verifier: str) -> str:
        """Where to send the browser: the provider's consent page with state, nonce and the PKCE challenge."""
        metadata = await self.metadata()
        async with self._client() as client:
            url, _ = client.create_authorization_url(
                metadata.authorization_endpoint, state=state, code_verifier=code_verifier, nonce=nonce
            )
        return str(url)

    async def identity_from_code(self, *, code: str, code_verifier: str, nonce: str) -> Identity:
        """Exchange the authorisation code and return who the verified ID token says the user is.

        Raises:
            OAuthFailed: the exchange failed, or the ID token is not one we can trust.
        """
        metadata = await self.metadata()
        try:
            async with self._client() as client:
                token = await client.fetch_token(
                    metadata.token_endpoint,
                    grant_type="authorization_code",
                    code=code,
                    code_verifier=code_verifier,
                )
        except (OAuthError, httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise _failure(f"code exchange failed: {exc!r}", "The identity provider refused the sign-in.") from exc
        id_token = token.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise _failure("the token response has no id_token")
        claims = await self._verified_claims(metadata, id_token, nonce=nonce, access_token=token.get("access_token"))
        return _identity(metadata.issuer, claims)

    async def _verified_claims(
        self, metadata: ProviderMetadata, id_token: str, *, nonce: str, access_token: object
    ) -> CodeIDToken:
        registry = JWSRegistry(algorithms=list(metadata.signing_algorithms), strict_check_header=False)
        try:
            try:
                decoded = jwt.decode(id_token, await self._signing_keys(metadata.jwks_uri), registry=registry)
            except InvalidKeyIdError:
                keys = await self._signing_keys(metadata.jwks_uri, refresh=True)
                decoded = jwt.decode(id_token, keys, registry=registry)
            claims = CodeIDToken(
                decoded.claims,
                decoded.header,
                options={
                    "iss": {"essential": True, "value": metadata.issuer},
                    "aud": {"essential": True, "value": self.client_id},
                    "sub": {"essential": True},
                    "exp": {"essential": True},
                    "iat": {"essential": True},
                    "nonce": {"essential": True, "value": nonce},
                },
                params={
                    "nonce": nonce,
                    "client_id": self.client_id,
                    "access_token": access_token if isinstance(access_token, str) else None,
                },
            )
            claims.validate(leeway=CLOCK_SKEW_SECONDS)
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise _failure(f"ID token rejected: {exc!r}") from exc
        audience = claims["aud"]
        audiences = [audience] if isinstance(audience, str) else list(audience)
        if set(audiences) != {self.client_id}:
            # OpenID Connect Core 3.1.3.7: reject a token that also names audiences we do not trust.
            raise _failure(f"ID token has untrusted audiences {audiences!r}")
        return claims


def _identity(issuer: str, claims: CodeIDToken) -> Identity:
    email = claims.get("email")
    verified = claims.get("email_verified")
    # Some providers send the boolean as a string.
    email_verified = verified is True or (isinstance(verified, str) and verified.lower() == "true")
    subject = f"{issuer}|{claims['sub']}"
    if len(subject) > MAX_SUBJECT_LENGTH:
        raise _failure("the provider's subject identifier is too long")
    name, picture = claims.get("name"), claims.get("picture")
    return Identity(
        email=email if isinstance(email, str) else "",
        name=name if isinstance(name, str) else None,
        picture=picture if isinstance(picture, str) else None,
        subject=subject,
        email_verified=email_verified,
    )
