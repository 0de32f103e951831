"""The client's address, believing `X-Forwarded-For` only from configured reverse proxies."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from litestar.types import Scope

    from app.config import HttpSettings


def client_address(scope: Scope, http: HttpSettings) -> str:
    """The address the request came from.

    When the direct peer is one of `TRUSTED_PROXIES`, the answer is the right-most address of
    `X-Forwarded-For` that is not itself a trusted proxy (the left-most entries are whatever the client
    claimed and cannot be believed).
    """
    client = scope.get("client")
    peer = client[0] if client else ""
    if not http.trusted_proxies or peer not in http.trusted_proxies:
        return peer
    forwarded = ""
    for name, value in scope.get("headers", []):
        if name == b"x-forwarded-for":
            forwarded = f"{forwarded},{value.decode('latin-1')}" if forwarded else value.decode("latin-1")
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    for hop in reversed(hops):
        if hop not in http.trusted_proxies:
            return hop
    return peer
