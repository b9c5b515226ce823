"""Domain errors as dashboard pages.

Every dashboard view runs inside ``dashboard_view``, which turns a
``sessions.errors.FleetError`` escaping the view into a page with the status
its code names (invalid input 400, unknown session 404, deleted 410, conflict
409) instead of a server error. Views still catch what they can say better
themselves (the session page's "no such session" / "deleted" page).
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from sessions.errors import FleetError

STATUS_BY_CODE = {"invalid": 400, "not_found": 404, "gone": 410, "conflict": 409}
TITLES = {400: "Bad request", 404: "Not found", 409: "Conflict", 410: "Deleted"}


def domain_error_page(request: HttpRequest, error: FleetError) -> HttpResponse:
    status = STATUS_BY_CODE.get(error.code, 400)
    context = {"title": TITLES[status], "error": error}
    return render(request, "fleet/error.html", context, status=status)
