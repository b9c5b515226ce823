"""WSGI entry point (gunicorn fleet.wsgi)."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

from fleet.chunked import ChunkedBodyMiddleware

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fleet.settings")

application = ChunkedBodyMiddleware(get_wsgi_application())
