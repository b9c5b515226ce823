"""The dashboard's views: fleet page, session page, search, log-in."""

from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails


class HtmxHttpRequest(HttpRequest):
    """A dashboard request: ``HtmxMiddleware`` (settings) sets ``request.htmx``.

    For annotations only (django-htmx's documented way to type it).
    """

    htmx: HtmxDetails
