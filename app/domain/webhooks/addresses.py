"""Where an event may be sent: the guard against server-side request forgery.

In production an endpoint is an `https` URL whose host resolves ONLY to public addresses (no loopback,
private, link-local, multicast, reserved or unspecified address, IPv4 or IPv6). The check runs at
registration and again at each delivery, and the delivery then connects to the very address it checked (the
`Host` header and TLS name stay the URL's host), so a name that resolves to a public address when checked and
to 127.0.0.1 a moment later (DNS rebinding) cannot reach the inside. `WEBHOOK_ALLOW_PRIVATE_URLS=true` (the
default outside production) allows `http` and local addresses for development.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

MAX_URL_LENGTH: Final = 2048
RESOLVE_TIMEOUT_SECONDS: Final = 3.0


class UnsafeUrl(ValueError):
    """The URL may not receive events (the message says why)."""


@dataclass(frozen=True)
class Destination:
    """A URL checked for delivery: the address to connect to, and the name it stands for."""

    url: str
    host: str
    port: int
    address: str
    """The resolved IP the delivery connects to (checked public unless private URLs are allowed)."""

    @property
    def pinned_url(self) -> str:
        """The URL with its host replaced by the checked address (IPv6 in brackets)."""
        parts = urlsplit(self.url)
        host = f"[{self.address}]" if ":" in self.address else self.address
        netloc = f"{host}:{self.port}"
        path = parts.path or "/"
        return f"{parts.scheme}://{netloc}{path}" + (f"?{parts.query}" if parts.query else "")


def parse(url: str, *, allow_private: bool) -> tuple[str, str, int]:
    """Scheme, host and port of a URL an endpoint may have.

    Raises:
        UnsafeUrl: not an absolute http(s) URL, http where only https is allowed, credentials in it.
    """
    if len(url) > MAX_URL_LENGTH:
        msg = f"the URL is longer than {MAX_URL_LENGTH} characters"
        raise UnsafeUrl(msg)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        msg = f"not a URL: {exc}"
        raise UnsafeUrl(msg) from exc
    allowed = {"https", "http"} if allow_private else {"https"}
    if parts.scheme not in allowed:
        msg = "the URL must be https" if not allow_private else "the URL must be http or https"
        raise UnsafeUrl(msg)
    if not parts.hostname:
        msg = "the URL has no host"
        raise UnsafeUrl(msg)
    if parts.username or parts.password:
        msg = "the URL must not carry credentials"
        raise UnsafeUrl(msg)
    if parts.fragment:
        msg = "the URL must not have a fragment"
        raise UnsafeUrl(msg)
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _ip_literal(host: str) -> str | None:
    """The address when the URL's host is one (no DNS to ask, none to trust)."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def destination(url: str, *, allow_private: bool) -> Destination:
    """Resolve and check `url` now; the destination to connect to.

    Raises:
        UnsafeUrl: the URL is malformed, its host does not resolve, or (unless `allow_private`) any of its
            addresses is not public.
    """
    _, host, port = parse(url, allow_private=allow_private)
    literal = _ip_literal(host)
    if literal is not None:
        if not allow_private and not is_public(literal):
            msg = f"the address {literal} is not public"
            raise UnsafeUrl(msg)
        return Destination(url=url, host=host, port=port, address=literal)
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_SECONDS):
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError, TimeoutError) as exc:
        msg = f"the host {host!r} does not resolve"
        raise UnsafeUrl(msg) from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        msg = f"the host {host!r} does not resolve"
        raise UnsafeUrl(msg)
    if not allow_private:
        inside = [address for address in addresses if not is_public(address)]
        if inside:
            msg = f"the host {host!r} resolves to an address that is not public ({inside[0]})"
            raise UnsafeUrl(msg)
    return Destination(url=url, host=host, port=port, address=addresses[0])
