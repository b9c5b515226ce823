"""The header's count of open incidents (one query, on every dashboard page).

base.html calls it only for a user who may see the fleet (the same
permissions as ``fleet.views.auth.can_view``, read from ``perms``).
"""

from __future__ import annotations

from django import template

from alerts.selectors import open_incident_count

register = template.Library()


@register.simple_tag
def open_incidents() -> int:
    """How many incidents are open."""
    return open_incident_count()
