"""URLs of the JSON API, mounted at ``/api/v1/``.

The API's views are wrapped so that what happens outside an endpoint answers in
the API's error shape too: a body over the limit (refused before it is read),
a method a route does not have (405), a path no route has (404). HEAD is
answered wherever GET is, as the GET without its body.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import URLPattern, URLResolver, re_path
from django.views.decorators.csrf import csrf_exempt

from fleet.api.api import api, error_response, too_large

app_name = api.urls_namespace


def _content_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def json_errors(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if _content_length(request) > settings.FLEET_API_MAX_BODY_BYTES:
            return too_large()
        # HEAD wherever GET is allowed: ninja routes GET only, so a HEAD runs
        # as the GET (same status and headers) and its body is dropped.
        head = request.method == "HEAD"
        if head:
            request.method = "GET"
        try:
            response = view(request, *args, **kwargs)
        except Http404:
            response = error_response(404, "no such API resource")
        finally:
            if head:
                request.method = "HEAD"
        if head:
            response.content = b""
        if response.status_code == 405 and "json" not in response.get("Content-Type", ""):
            allowed = response.get("Allow", "")
            refused = error_response(
                405, f"{request.method} is not allowed here; allowed: {allowed}"
            )
            refused["Allow"] = allowed
            return refused
        return response

    # The API authenticates with bearer keys, not cookies: CSRF does not apply.
    return csrf_exempt(wrapper)


@csrf_exempt
def not_found(request: HttpRequest, rest: str = "") -> HttpResponse:
    return error_response(404, "no such API resource; see /api/v1/docs")


def _wrapped(pattern: URLPattern | URLResolver) -> URLPattern:
    if not isinstance(pattern, URLPattern):
        # ninja's routes are one flat list; a nested one would go unwrapped.
        raise TypeError(f"the API's URLs hold a nested resolver: {pattern!r}")
    callback = json_errors(pattern.callback)
    return URLPattern(pattern.pattern, callback, pattern.default_args, pattern.name)


urlpatterns: list[Any] = [_wrapped(pattern) for pattern in api.urls[0]]
# [\s\S]: a path may hold a newline (%0A), which "." would not match.
urlpatterns.append(re_path(r"^(?P<rest>[\s\S]*)$", not_found))
