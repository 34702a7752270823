"""Who is asking: the client's address, through the reverse proxies we were told to trust.

``REMOTE_ADDR`` is the peer of the TCP connection. Behind a reverse proxy that is the proxy, so
the client is taken from ``X-Forwarded-For``, but only as far as the hops are proxies listed in
``OPSDASH_TRUSTED_PROXIES``: the header is the client's to write, and only what a trusted proxy
appended to it can be believed. Without trusted proxies the header is ignored.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _address(text: str | None) -> IPAddress | None:
    try:
        return ipaddress.ip_address((text or "").strip())
    except ValueError:
        return None


def _trusted(address: IPAddress) -> bool:
    return any(address in network for network in settings.OPSDASH_TRUSTED_PROXIES)


def client_address(request: HttpRequest) -> IPAddress | None:
    """The client's address: REMOTE_ADDR, or, when that is a trusted proxy, the right-most hop of
    X-Forwarded-For that is not one (a hop that is not an address ends the walk at the last
    trusted proxy)."""
    client = _address(request.META.get("REMOTE_ADDR"))
    if client is None or not _trusted(client):
        return client
    hops = [hop for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            break
        client = address
        if not _trusted(address):
            break
    return client


def client_ip(request: HttpRequest) -> str | None:
    """The client's address as text (for the audit trail and the throttle)."""
    address = client_address(request)
    return str(address) if address is not None else None


def client_key(ip: str | None) -> str:
    """What the login throttle counts per: an IPv4 address, or the /64 of an IPv6 address (one
    machine usually holds a whole /64, and picks a new address in it at will)."""
    address = _address(ip)
    if address is None:
        return ""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def behind_proxy(request: HttpRequest) -> bool:
    """True when this request may have come through a reverse proxy: the site is configured as
    behind one, or the request carries a header that proxies add."""
    return settings.OPSDASH_BEHIND_PROXY or any(header in request.META for header in PROXY_HEADERS)


# Headers a reverse proxy adds; a request that carries one came through a proxy (or pretends to).
PROXY_HEADERS = (
    "HTTP_X_FORWARDED_FOR",
    "HTTP_FORWARDED",
    "HTTP_X_REAL_IP",
    "HTTP_X_FORWARDED_PROTO",
    "HTTP_X_FORWARDED_HOST",
    "HTTP_X_FORWARDED_PORT",
    "HTTP_VIA",
)
