"""Our access tokens: only a token we signed, unaltered, for us, and still in date is accepted."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app.config import Settings
from app.domain.auth.tokens import decode_token, issue_token
from app.lib.errors import InvalidToken, TokenExpired

SETTINGS = Settings().replaced(jwt_secret="unit-test-secret-" + "k" * 64)


def claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    base: dict[str, object] = {
        "sub": str(uuid.uuid4()),
        "email": "ada@example.com",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "iss": SETTINGS.auth.jwt_issuer,
        "aud": SETTINGS.auth.jwt_audience,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(payload: dict[str, object], *, secret: str = SETTINGS.auth.jwt_secret, alg: str = "HS256") -> str:
    return jwt.encode(payload, secret, algorithm=alg)


def b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_a_token_we_issued_decodes_to_its_user_and_expiry() -> None:
    user_id = uuid.uuid4()
    issued = issue_token(SETTINGS, user_id=user_id, email="ada@example.com")
    decoded = decode_token(SETTINGS, issued.access_token)
    assert decoded.user_id == user_id
    assert decoded.email == "ada@example.com"
    assert issued.expires_in == SETTINGS.auth.jwt_expires_minutes * 60
    assert abs(decoded.expires_at.timestamp() - (time.time() + issued.expires_in)) < 5


def test_an_expired_token_is_token_expired() -> None:
    past = int(time.time()) - 3600
    with pytest.raises(TokenExpired):
        decode_token(SETTINGS, sign(claims(iat=past - 60, nbf=past - 60, exp=past)))


def test_a_tampered_payload_is_invalid() -> None:
    header, _, signature = sign(claims()).split(".")
    forged = ".".join([header, b64(claims(sub=str(uuid.uuid4()))), signature])
    with pytest.raises(InvalidToken) as raised:
        decode_token(SETTINGS, forged)
    assert raised.value.error_code == "INVALID_TOKEN"


def test_a_token_signed_with_another_secret_is_invalid() -> None:
    with pytest.raises(InvalidToken):
        decode_token(SETTINGS, sign(claims(), secret="another-secret-" + "z" * 40))


def test_an_unsigned_alg_none_token_is_invalid() -> None:
    unsigned = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims())}."
    with pytest.raises(InvalidToken):
        decode_token(SETTINGS, unsigned)


def test_an_rs256_token_is_refused_because_the_algorithm_is_pinned() -> None:
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(InvalidToken):
        decode_token(SETTINGS, jwt.encode(claims(), pem, algorithm="RS256"))


def test_an_hs512_token_with_our_secret_is_refused_because_the_algorithm_is_pinned() -> None:
    with pytest.raises(InvalidToken):
        decode_token(SETTINGS, sign(claims(), alg="HS512"))


def test_algorithm_confusion_with_a_public_key_as_hmac_secret_is_refused() -> None:
    # The classic attack: take a service's RSA public key and use it as the HMAC secret. Our tokens are
    # HMAC-only, so a token signed with anything but JWT_SECRET fails, whatever it claims.
    public_pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = b64({"alg": "HS256", "typ": "JWT"})
    payload = b64(claims())
    signature = (
        base64.urlsafe_b64encode(hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest())
        .rstrip(b"=")
        .decode()
    )
    with pytest.raises(InvalidToken):
        decode_token(SETTINGS, f"{header}.{payload}.{signature}")


@pytest.mark.parametrize(
    "overrides",
    [
        {"aud": "someone-else"},
        {"iss": "https://evil.example.com"},
        {"aud": None},
        {"iss": None},
        {"jti": None},
        {"sub": None},
        {"exp": None},
        {"sub": "not-a-uuid"},
        {"nbf": int(time.time()) + 3600},
    ],
    ids=["wrong-audience", "wrong-issuer", "no-aud", "no-iss", "no-jti", "no-sub", "no-exp", "bad-sub", "not-yet"],
)
def test_a_token_with_wrong_or_missing_claims_is_invalid(overrides: dict[str, object]) -> None:
    with pytest.raises(InvalidToken) as raised:
        decode_token(SETTINGS, sign(claims(**overrides)))
    assert raised.value.error_code == "INVALID_TOKEN"


def test_a_token_for_another_deployment_is_invalid() -> None:
    other = SETTINGS.replaced(jwt_audience="staging-api", jwt_issuer="staging")
    with pytest.raises(InvalidToken):
        decode_token(SETTINGS, issue_token(other, user_id=uuid.uuid4(), email="a@b.c").access_token)


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "...", "Bearer x", "é.é.é", "x" * 5000])
def test_garbage_is_invalid_never_an_error(garbage: str) -> None:
    with pytest.raises(InvalidToken):
        decode_token(SETTINGS, garbage)
