"""The client's address, for log-in throttling and the API's bad-key throttle.

``REMOTE_ADDR`` is the peer of the app server. Behind ``FLEET_PROXY_COUNT``
reverse proxies that each append the address they saw to ``X-Forwarded-For``
(nginx: ``$proxy_add_x_forwarded_for``), the client is the N-th address from
the right: everything left of it was sent by the client and may be forged.
With no proxy configured the header is ignored. Only a valid IP address is
returned (axes stores it in an address column), else ``None``.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str | None:
    remote = _valid(request.META.get("REMOTE_ADDR", ""))
    count = settings.FLEET_PROXY_COUNT
    if not count:
        return remote
    forwarded = [
        part.strip()
        for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
        if part.strip()
    ]
    if len(forwarded) < count:
        # Fewer hops than configured: a request that bypassed a proxy.
        return remote
    return _valid(forwarded[-count]) or remote


def _valid(address: str) -> str | None:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None
