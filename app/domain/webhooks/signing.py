"""Endpoint secrets and the `Wallet-Signature` header.

The secret (`whsec_` + 32 random bytes) must be used to sign, so unlike an API key it cannot be kept as a
hash. It is stored encrypted (AES-256-GCM) with a key derived from `JWT_SECRET`: a copy of the database alone
(a backup, a replica, a leaked dump) does not reveal it. Rotating `JWT_SECRET` therefore makes the stored
secrets unreadable: endpoints must then be registered again (`docs/webhooks.md`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - the prefix of every secret, not a secret
SIGNATURE_HEADER: Final = "Wallet-Signature"
EVENT_ID_HEADER: Final = "Wallet-Event-Id"
EVENT_TYPE_HEADER: Final = "Wallet-Event-Type"
_KEY_PURPOSE: Final = b"wallet-webhook-endpoint-secrets"
_NONCE_BYTES: Final = 12


def new_endpoint_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`, keyed with the endpoint's secret."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


class SecretBox:
    """Encrypts endpoint secrets at rest with a key derived from `JWT_SECRET`."""

    def __init__(self, jwt_secret: str) -> None:
        self._aead = AESGCM(hmac.new(jwt_secret.encode(), _KEY_PURPOSE, hashlib.sha256).digest())

    def seal(self, secret: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        return base64.urlsafe_b64encode(nonce + self._aead.encrypt(nonce, secret.encode(), None)).decode()

    def open(self, sealed: str) -> str:
        """Raises ValueError when it was sealed with another key (`JWT_SECRET` rotated) or damaged."""
        try:
            raw = base64.urlsafe_b64decode(sealed.encode())
            return self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], None).decode()
        except (InvalidTag, ValueError) as exc:
            msg = "the endpoint's secret cannot be read with this JWT_SECRET"
            raise ValueError(msg) from exc
