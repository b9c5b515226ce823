"""Incidents: what the alert rules found, open ones first (the header links here)."""

from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from alerts.selectors import INCIDENT_LIST_LIMIT, recent_incidents
from fleet.views import HtmxHttpRequest
from fleet.views.auth import dashboard_view


@require_safe
@dashboard_view
def incidents_page(request: HtmxHttpRequest) -> HttpResponse:
    incidents = list(recent_incidents())
    return render(
        request,
        "fleet/incidents.html",
        {"incidents": incidents, "limit": INCIDENT_LIST_LIMIT},
    )
