"""A database that cannot be reached answers 503, not a 500 page.

The JSON API maps the same errors onto its own error shape (``fleet.api.api``);
this middleware covers the dashboard, the admin and ``/metrics``. Django
reconnects on the next request, so service resumes by itself once the
database is back: no restart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Fleet is unavailable</title></head>
<body><h1>Fleet is unavailable</h1>
<p>The database cannot be reached right now. Try again in a few seconds.</p></body></html>
"""


class DatabaseUnavailableMiddleware:
    """Turns ``OperationalError``/``InterfaceError`` raised by a view into a 503 page."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        logger.warning(
            "database unavailable on %s %s: %s: %s",
            request.method,
            request.path,
            type(exception).__name__,
            str(exception)[:200],
        )
        response = HttpResponse(PAGE, status=503, content_type="text/html; charset=utf-8")
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        response["Cache-Control"] = "no-store"
        return response
