"""A tiny OpenID Connect provider of our own that signs whatever ID token a test asks for.

oidc-provider-mock is a real provider and issues only correct tokens. The cases it cannot produce (an ID
token for another client, signed with an unpublished key, expired, from another issuer, or signed with a
rotated key) come from here: a discovery document, a JWKS endpoint and a token endpoint on loopback,
signing with RSA keys the test controls. The browser never visits its authorisation endpoint: the test
reads `state`, `nonce` and the PKCE challenge from our app's redirect and comes back with any code.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

CLIENT_ID = "forged-test-client"


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


@dataclass
class ForgedProvider:
    issuer: str = ""
    keys: list[RSAKey] = field(default_factory=lambda: [RSAKey.generate_key(2048, parameters={"kid": "key-1"})])
    """Published in the JWKS."""
    signing_key: RSAKey | None = None
    """Signs the ID tokens; the first published key unless set."""
    claims: Callable[[dict[str, Any]], dict[str, Any]] = lambda c: c
    """Turns the correct claims into the ones the test wants."""
    encode: Callable[[dict[str, Any], RSAKey], str] | None = None
    """Builds the ID token from claims and key, when the test wants more than other claims."""
    expected_challenge: str | None = None
    nonce: str = ""
    token_requests: list[dict[str, str]] = field(default_factory=list)
    jwks_fetches: int = 0

    def reset(self) -> None:
        """Back to issuing correct tokens signed with the first key (between tests)."""
        self.keys = self.keys[:1]
        self.signing_key = None
        self.claims = lambda c: c
        self.encode = None
        self.expected_challenge = None

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def correct_claims(self, sub: str, email: str) -> dict[str, Any]:
        now = int(time.time())
        return {
            "iss": self.issuer,
            "sub": sub,
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 300,
            "nonce": self.nonce,
            "email": email,
            "email_verified": True,
            "name": "Forged Test",
        }

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        if request.path.endswith("/.well-known/openid-configuration"):
            body: dict[str, Any] = {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "id_token_signing_alg_values_supported": ["RS256"],
            }
        elif request.path == "/jwks":
            self.jwks_fetches += 1
            body = KeySet(list(self.keys)).as_dict(private=False)
        elif request.path == "/token" and request.method == "POST":
            form = dict(request.form)
            self.token_requests.append(form)
            if self.expected_challenge is not None and s256(form.get("code_verifier", "")) != self.expected_challenge:
                body = {"error": "invalid_grant", "error_description": "PKCE verification failed"}
                return Response(json.dumps(body), 400, content_type="application/json")(environ, start_response)
            key = self.signing_key or self.keys[0]
            subject = form.get("code", "nobody")
            claims = self.claims(self.correct_claims(sub=subject, email=f"{subject}@forged.example"))
            if self.encode is not None:
                id_token = self.encode(claims, key)
            else:
                id_token = jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key)
            body = {
                "access_token": "opaque-access-token",
                "token_type": "Bearer",
                "expires_in": 300,
                "id_token": id_token,
            }
        else:
            return Response("not found", 404)(environ, start_response)
        return Response(json.dumps(body), 200, content_type="application/json")(environ, start_response)


@contextmanager
def run_forged_provider() -> Iterator[ForgedProvider]:
    provider = ForgedProvider()
    server = make_server("127.0.0.1", 0, provider, threaded=True)
    provider.issuer = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        thread.join(5)
        server.server_close()
