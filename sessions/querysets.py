"""Reusable reads (selectors) as QuerySet methods, each with an explicit order."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import models
from django.db.models import Q
from django.utils import timezone

from sessions.choices import Role, State, Status

SESSION_FILTERS = ("status", "kind", "channel", "agent", "model", "project_root", "state")
# Session fields that can be large (capped, but up to hundreds of KB): lists,
# search results and tables leave them out; the single-session view has them.
SESSION_LARGE_FIELDS = ("metadata", "todo")


class SessionQuerySet(models.QuerySet):
    def newest_first(self) -> SessionQuerySet:
        return self.order_by("-last_active_at", "-id")

    def without_large_fields(self) -> SessionQuerySet:
        """Rows for a list: the large fields are not read (``SESSION_LARGE_FIELDS``)."""
        return self.defer(*SESSION_LARGE_FIELDS)

    def active(self) -> SessionQuerySet:
        return self.filter(status=Status.ACTIVE)

    def filtered(self, **filters: Any) -> SessionQuerySet:
        """Sessions matching the given listing filters, newest activity first.

        Empty values are ignored; unknown filter names raise ``TypeError``.
        """
        unknown = set(filters) - set(SESSION_FILTERS)
        if unknown:
            raise TypeError(f"unknown session filters: {', '.join(sorted(unknown))}")
        qs = self
        for name, value in filters.items():
            if value not in (None, ""):
                qs = qs.filter(**{name: value})
        return qs.newest_first()

    def running(self) -> SessionQuerySet:
        """Active sessions with a turn under way, newest turn first."""
        return self.filter(status=Status.ACTIVE, state=State.RUNNING).order_by(
            "-turn_started_at", "-id"
        )

    def stuck(self, *, older_than: timedelta, now: datetime | None = None) -> SessionQuerySet:
        """Running turns that started longer than ``older_than`` ago, oldest first."""
        cutoff = (now or timezone.now()) - older_than
        return self.filter(
            status=Status.ACTIVE, state=State.RUNNING, turn_started_at__lte=cutoff
        ).order_by("turn_started_at", "id")

    def stale(self, *, older_than: timedelta, now: datetime | None = None) -> SessionQuerySet:
        """Active sessions with no activity for ``older_than``, least recent first."""
        cutoff = (now or timezone.now()) - older_than
        return self.filter(status=Status.ACTIVE, last_active_at__lte=cutoff).order_by(
            "last_active_at", "id"
        )


class MessageQuerySet(models.QuerySet):
    def in_order(self) -> MessageQuerySet:
        return self.order_by("seq")

    def archived(self) -> MessageQuerySet:
        return self.filter(compacted_at__isnull=False)

    def not_archived(self) -> MessageQuerySet:
        return self.filter(compacted_at__isnull=True)

    def for_session(self, session: models.Model | int) -> MessageQuerySet:
        """Messages of ``session`` (a ``Session`` or its id)."""
        return self.filter(session=session)

    def context(self) -> MessageQuerySet:
        """The context view: not archived; compaction summaries first, then by seq."""
        return self.not_archived().order_by("-is_summary", "seq")

    def with_usage(self) -> MessageQuerySet:
        return self.exclude(cost_source="")

    def recent_user(self) -> MessageQuerySet:
        """User messages across sessions, newest first."""
        return self.filter(role=Role.USER).order_by("-created_at", "-id")

    def with_tool_calls(self) -> MessageQuerySet:
        return self.filter(role=Role.ASSISTANT).exclude(
            Q(tool_calls=[]) | Q(tool_calls__isnull=True)
        )
