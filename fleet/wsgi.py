"""WSGI entry point (gunicorn fleet.wsgi)."""

from __future__ import annotations

import gc
import os

from django.core.wsgi import get_wsgi_application

from fleet.chunked import ChunkedBodyMiddleware

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fleet.settings")

application = ChunkedBodyMiddleware(get_wsgi_application())


def prepare_worker() -> None:
    """Load what every request uses, then take it out of the collector's scans.

    A worker keeps its URL patterns, compiled templates, forms and API
    schemas until it exits, ~120 000 objects; CPython's full collection
    walks every one of them again each time it runs, and on a fleet page it
    ran inside the request: pauses of 60-70 ms, most of the page's p95
    (bench/README.md, "Session 22: the fleet page's p95 on PostgreSQL"). Loaded before
    the first request and frozen (``gc.freeze``), they are never scanned;
    what requests make is collected as before. Run once per worker at
    import, after the fork (``preload_app`` is off).
    """
    from django.template import loader
    from django.urls import get_resolver

    # Imports every view and the API with its schemas, and builds reverse()'s tables.
    get_resolver().reverse_dict  # noqa: B018
    for name in ("fleet/fleet.html", "fleet/session.html", "fleet/search.html"):
        loader.get_template(name)
    gc.collect()
    gc.freeze()


prepare_worker()
