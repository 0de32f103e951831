"""`x-paystack-signature`: the lowercase hex HMAC-SHA512 of the raw body, keyed with the secret key."""

from __future__ import annotations

import hashlib
import hmac


def sign_webhook(body: bytes, secret: str) -> str:
    """The `x-paystack-signature` Paystack sends with `body` (the raw bytes, exactly as sent)."""
    return hmac.new(secret.encode(), body, hashlib.sha512).hexdigest()


def is_valid_signature(body: bytes, signature: str | None, secret: str) -> bool:
    """Whether `signature` is Paystack's signature of the raw `body`, compared in constant time.

    False unless both `signature` and `secret` are non-empty and the signature matches; never compared
    against a re-serialised body.
    """
    if not signature or not secret:
        return False
    # Normalise only the hex case: the digest is compared over bytes, so no other input can match.
    return hmac.compare_digest(sign_webhook(body, secret).encode(), signature.strip().lower().encode())
