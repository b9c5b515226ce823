"""A small JSON client for the Fleet API, on the standard library only.

One ``ApiClient`` holds one keep-alive connection (``http.client``), so a
thread that owns a client reuses its TCP connection across requests, as a
real agent's HTTP library does. A server may close an idle keep-alive
connection at any time: a request that fails that way on a reused
connection, before any answer came, is sent once more on a new one.
"""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

API_PREFIX = "/api/v1"
# The connection broke before the server answered: safe to send again.
_RETRYABLE = (
    http.client.RemoteDisconnected,
    http.client.CannotSendRequest,
    ConnectionResetError,
    BrokenPipeError,
)


class ApiError(Exception):
    """A request the simulator did not expect to fail (a status or a broken connection)."""

    def __init__(self, method: str, path: str, status: int | None, detail: str) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.detail = detail
        answer = f"HTTP {status}" if status is not None else "no answer"
        super().__init__(f"{method} {path}: {answer}: {detail}"[:500])


@dataclass(frozen=True)
class Response:
    status: int
    data: Any
    seconds: float
    # Header names lower-cased (fleet-follow reads Retry-After).
    headers: dict[str, str] = field(default_factory=dict)


def session_path(key: str, suffix: str = "") -> str:
    """``/sessions/<key><suffix>`` with the key quoted (keys are client text)."""
    return f"/sessions/{quote(key, safe='')}{suffix}"


class ApiClient:
    """JSON requests with ``Authorization: Bearer <key>`` to ``<url>/api/v1``."""

    def __init__(self, url: str, key: str, *, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the URL must be http://HOST[:PORT] or https://…, got {url!r}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port
        self.prefix = parts.path.rstrip("/") + API_PREFIX
        self.timeout = timeout
        self.headers = {
            "Authorization": f"Bearer {key}",
            "Accept": "application/json",
            "Content-Type": "application/json",
        }
        self._connection: http.client.HTTPConnection | None = None
        self._answered = 0  # answers read on the current connection

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            factory = (
                http.client.HTTPSConnection
                if self.scheme == "https"
                else http.client.HTTPConnection
            )
            self._connection = factory(self.host, self.port, timeout=self.timeout)
            self._answered = 0
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._connection = None

    def send(self, method: str, path: str, body: bytes | None = None) -> Response:
        """Send ``body`` (already JSON) and read the answer, whatever its status.

        Raises ``ApiError`` (status ``None``) when no answer could be had.
        """
        url = self.prefix + path
        for attempt in (1, 2):
            connection = self._connect()
            reused = self._answered > 0
            start = time.perf_counter()
            try:
                connection.request(method, url, body=body, headers=self.headers)
                answer = connection.getresponse()
                raw = answer.read()
            except _RETRYABLE as exc:
                self.close()
                if attempt == 1 and reused:
                    continue
                raise ApiError(method, path, None, f"{type(exc).__name__}: {exc}") from None
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise ApiError(method, path, None, f"{type(exc).__name__}: {exc}") from None
            seconds = time.perf_counter() - start
            self._answered += 1
            if answer.will_close:
                self.close()
            headers = {name.lower(): value for name, value in answer.getheaders()}
            return Response(answer.status, _decode(raw), seconds, headers)
        raise AssertionError("unreachable")  # pragma: no cover

    def call(self, method: str, path: str, body: Any = None, *, expect: tuple[int, ...]) -> Any:
        """Send ``body`` as JSON; the decoded answer, or ``ApiError`` on an unexpected status."""
        payload = None if body is None else json.dumps(body).encode()
        response = self.send(method, path, payload)
        if response.status not in expect:
            raise ApiError(method, path, response.status, _error_text(response.data))
        return response.data


def _decode(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw[:300].decode("utf-8", "replace")


def _error_text(data: Any) -> str:
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        error = data["error"]
        field = f" ({error['field']})" if error.get("field") else ""
        return f"{error.get('code')}: {error.get('message')}{field}"
    return str(data)[:300]
