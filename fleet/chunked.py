"""Request bodies sent chunked (``Transfer-Encoding: chunked``, no ``Content-Length``).

Django reads exactly ``CONTENT_LENGTH`` bytes of a body, so a chunked body
looked empty and an append was refused as "the body is required". gunicorn
de-chunks the body and marks the stream ``wsgi.input_terminated`` (it ends
where the body ends): this WSGI wrapper reads it, up to
``FLEET_API_MAX_BODY_BYTES`` (413 above), and hands Django the bytes with
their length. A server that does not de-chunk (``runserver``) gets 411: the
client must send a ``Content-Length``. Both refusals have the shape of the
endpoint's own: the API's error, or for ``/otlp/`` an OTLP Status in the
request's encoding (an exporter reads the same 413 whether it sent a length).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings

READ_SIZE = 64 * 1024


class ChunkedBodyMiddleware:
    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if chunked and not environ.get("CONTENT_LENGTH"):
            if not environ.get("wsgi.input_terminated"):
                return _refuse(
                    environ,
                    start_response,
                    411,
                    "this server cannot read a chunked body: send a Content-Length header",
                    code="length_required",
                )
            limit = settings.FLEET_API_MAX_BODY_BYTES
            body = _read_at_most(environ["wsgi.input"], limit + 1)
            if len(body) > limit:
                return _refuse(
                    environ,
                    start_response,
                    413,
                    f"the body is larger than the limit of {limit} bytes",
                )
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        return self.app(environ, start_response)


def _read_at_most(stream: Any, size: int) -> bytes:
    parts: list[bytes] = []
    left = size
    while left > 0:
        part = stream.read(min(READ_SIZE, left))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _refuse(
    environ: dict[str, Any],
    start_response: Callable[..., Any],
    status: int,
    message: str,
    *,
    code: str | None = None,
) -> Iterable[bytes]:
    """The refusal in the shape of the endpoint the request was for: the OTLP
    receiver's Status (in the request's encoding), else the API's error."""
    from fleet.otlp import views as otlp

    if environ.get("PATH_INFO", "").startswith(otlp.PATH_PREFIX):
        response = otlp.refusal(status, message, environ.get("CONTENT_TYPE", ""))
    else:
        from fleet.api.api import error_response

        response = error_response(status, message, code=code)
    # The rest of the body was not read, yet no "Connection: close" here: WSGI
    # forbids hop-by-hop headers from applications (wsgiref, under runserver,
    # fails on one). The answer carries no Content-Length, which makes
    # runserver close the connection; gunicorn drains the unread body itself.
    start_response(f"{status} {response.reason_phrase}", [(k, v) for k, v in response.items()])
    return [response.content]
