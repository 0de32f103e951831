"""What an API key secret looks like and how it is stored: only its SHA-256, found through a unique index."""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "sk_live_"
SECRET_BYTES = 32
DISPLAY_PREFIX_LENGTH = len(KEY_PREFIX) + 8


def generate_secret() -> str:
    """`sk_live_` and 32 random bytes, URL-safe."""
    return KEY_PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def hash_secret(secret: str) -> str:
    # A fast hash is right here: the secret has 256 bits of entropy, so there is nothing to brute-force.
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def display_prefix(secret: str) -> str:
    return secret[:DISPLAY_PREFIX_LENGTH]
