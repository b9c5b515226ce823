"""The API's bad-key throttle: an address that sends many wrong keys is refused for a while.

``FLEET_API_BAD_KEY_LIMIT`` wrong keys from one address (``fleet.client_ip``)
within ``FLEET_API_BAD_KEY_WINDOW`` seconds block that address for the next
window: every request from it is answered 429 before its key is looked up,
valid key or not (otherwise the throttle would still tell a guesser which key
is right). Agents behind one NAT or proxy address share the budget.

The counts live in Django's default cache, a LocMemCache per worker process:
checking costs a dictionary lookup and no query, and each gunicorn worker
counts on its own (the effective limit is up to limit × workers × servers).
A shared cache (``CACHES``) would make it exact.
"""

from __future__ import annotations

import math
import time

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from ninja.errors import Throttled

from fleet.client_ip import client_ip


def _keys(request: HttpRequest) -> tuple[str, str]:
    address = client_ip(request)
    return f"fleet:api-bad-keys:{address}", f"fleet:api-blocked:{address}"


def check(request: HttpRequest) -> None:
    """Raise ``Throttled`` (429, with the seconds to wait) for a blocked address."""
    if not settings.FLEET_API_BAD_KEY_LIMIT:
        return
    _, blocked = _keys(request)
    until = cache.get(blocked)
    if until is not None:
        wait = until - time.time()
        if wait > 0:
            raise Throttled(wait=math.ceil(wait))


def record_bad_key(request: HttpRequest) -> None:
    """Count a wrong key; the one that reaches the limit blocks the address."""
    limit = settings.FLEET_API_BAD_KEY_LIMIT
    if not limit:
        return
    window = settings.FLEET_API_BAD_KEY_WINDOW
    counter, blocked = _keys(request)
    if cache.add(counter, 1, timeout=window):
        count = 1
    else:
        try:
            count = cache.incr(counter)
        except ValueError:  # expired between add and incr
            cache.add(counter, 1, timeout=window)
            count = 1
    if count >= limit:
        cache.set(blocked, time.time() + window, timeout=window)
        cache.delete(counter)
