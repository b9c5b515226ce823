from __future__ import annotations

from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path, register_converter
from django.utils.functional import lazy
from django.views.generic import RedirectView

from fleet.converters import SessionKeyConverter
from fleet.otlp import views as otlp
from fleet.views.auth import login_view, logout_view
from fleet.views.fleet import fleet_page
from fleet.views.health import healthz, metrics
from fleet.views.incidents import incidents_page
from fleet.views.search import search_page
from fleet.views.session import session_page

register_converter(SessionKeyConverter, "session_key")

admin.site.site_header = "Fleet administration"
admin.site.site_title = "Fleet admin"

urlpatterns = [
    path("", fleet_page, name="fleet"),
    # Keys may contain "/" (and "." segments, escaped: fleet/converters.py);
    # the session page and its actions share this one URL.
    path("sessions/<session_key:key>/", session_page, name="session"),
    path("search", search_page, name="search"),
    path("incidents", incidents_page, name="incidents"),
    path("login/", login_view, name="login"),
    path("logout/", logout_view, name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("fleet.api.urls")),
    # OTLP/HTTP (OTEL_EXPORTER_OTLP_ENDPOINT=https://host/otlp; docs/OTLP.md).
    path("otlp/v1/traces", otlp.traces, name="otlp-traces"),
    path("otlp/v1/logs", otlp.logs, name="otlp-logs"),
    # Ops: no dashboard log-in (/metrics has its own bearer token).
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics, name="metrics"),
    # The browser's default icon request, from pages that name none (JSON: /healthz).
    path("favicon.ico", RedirectView.as_view(url=lazy(static, str)("fleet/favicon.svg"))),
]
