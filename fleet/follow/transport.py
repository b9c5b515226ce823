"""Requests to Fleet that wait out an unavailable server and stop on a refused key.

HTTP is the simulator's client (``fleet.simulator.client``: ``http.client``
from the standard library, one keep-alive connection): the follower runs on
the agent's machine with no dependency beyond the package's own.

* No answer (connection refused or reset, a timeout), 429, 500, 502, 503 or
  504: the same request is sent again after an exponential backoff with full
  jitter (a random wait up to ``base * 2**attempt``, at most ``cap``), or
  the server's ``Retry-After`` when it asks for longer (at most
  ``RETRY_AFTER_CAP``), until it is answered. Nothing is dropped and nothing is buffered: the caller
  waits, and the store is the buffer. ``attempts`` bounds the tries (``--once``:
  a cron run gives up and exits, the next run resumes from the cursor).
* 401 or 403: the key is wrong, revoked or not allowed to write: ``KeyRefused``.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fleet.follow.remote import error_text
from fleet.simulator.client import ApiClient, ApiError

RETRIED = frozenset({429, 500, 502, 503, 504})
RETRY_AFTER_CAP = 300.0  # seconds: a server asking for longer is waited on this long
REFUSED_KEY = frozenset({401, 403})


class KeyRefused(Exception):
    """The server refused the key (401/403): the follower stops."""


class Unavailable(Exception):
    """The server stayed unavailable for all the attempts allowed."""


@dataclass
class Backoff:
    base: float = 0.5
    cap: float = 30.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int) -> float:
        """Full jitter: uniform in ``[0, min(cap, base * 2**attempt)]``."""
        return self.rng.uniform(0, min(self.cap, self.base * 2 ** min(attempt, 30)))


@dataclass
class RetryingTransport:
    client: ApiClient
    backoff: Backoff = field(default_factory=Backoff)
    stop: threading.Event = field(default_factory=threading.Event)
    log: Callable[[str], None] = field(default=lambda line: None)
    attempts: int | None = None
    requests: int = 0

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        payload = None if body is None else json.dumps(body, ensure_ascii=False).encode()
        attempt = 0
        while True:
            asked: float | None = None
            try:
                response = self.client.send(method, path, payload)
            except ApiError as exc:
                reason = exc.detail
            else:
                self.requests += 1
                if response.status in REFUSED_KEY:
                    raise KeyRefused(
                        f"Fleet refused the key ({error_text(response.status, response.data)}): "
                        "it is wrong, revoked or not allowed to write these sessions"
                    )
                if response.status not in RETRIED:
                    return response.status, response.data
                reason = error_text(response.status, response.data)
                asked = retry_after(response.headers)
            attempt += 1
            if self.attempts is not None and attempt >= self.attempts:
                raise Unavailable(f"{method} {path}: {reason} ({attempt} attempts)")
            wait = self.backoff.delay(attempt)
            if asked is not None:
                wait = max(wait, min(asked, RETRY_AFTER_CAP))
            self.log(f"Fleet unavailable ({reason}); retry {attempt} in {wait:.1f}s")
            if self.stop.wait(wait):
                raise Unavailable(f"{method} {path}: {reason} (stopped)")


def retry_after(headers: dict[str, str]) -> float | None:
    """The seconds of a ``Retry-After`` header (Fleet sends seconds; a date is ignored)."""
    try:
        seconds = float(headers.get("retry-after", ""))
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
