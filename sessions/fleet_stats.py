"""Fleet totals: the numbers the dashboard's header and ``GET /api/v1/fleet`` show.

Three aggregate queries whatever the data size: one over sessions (counts by
status, running, stuck, stale, started today), one over the daily rollup
(tokens and cost per period, so the history survives purges), one over the
last hour's messages (the burn rate).
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Count, Q, Sum
from django.utils import timezone

from sessions.models import TOKEN_FIELDS, CostSource, DailyUsage, Message, State, Status
from sessions.models import Session as SessionModel

BURN_WINDOW = timedelta(hours=1)
# Name → first day included, as days before today (None = all time).
PERIODS: dict[str, int | None] = {
    "today": 0,
    "last_7_days": 6,
    "last_30_days": 29,
    "all_time": None,
}
ROLLUP_COUNTERS = (
    "sessions_started",
    "messages",
    "turns",
    "tool_calls",
    "api_calls",
    "unpriced_calls",
    *TOKEN_FIELDS,
    "cost_usd",
)


def _session_counts(now: datetime) -> dict[str, Any]:
    stuck_cutoff = now - timedelta(seconds=settings.FLEET_STUCK_AFTER)
    stale_cutoff = now - timedelta(seconds=settings.FLEET_STALE_AFTER)
    midnight = datetime.combine(now.astimezone(UTC).date(), time.min, tzinfo=UTC)
    running = Q(status=Status.ACTIVE, state=State.RUNNING)
    row = SessionModel.objects.aggregate(
        total=Count("id"),
        running=Count("id", filter=running),
        stuck=Count("id", filter=running & Q(turn_started_at__lte=stuck_cutoff)),
        stale=Count("id", filter=Q(status=Status.ACTIVE, last_active_at__lte=stale_cutoff)),
        today=Count("id", filter=Q(created_at__gte=midnight)),
        **{f"status_{status}": Count("id", filter=Q(status=status)) for status in Status.values},
    )
    by_status = {status: row[f"status_{status}"] for status in Status.values}
    return {
        "total": row["total"],
        "by_status": by_status,
        "active": by_status[Status.ACTIVE],
        "running": row["running"],
        "stuck": row["stuck"],
        "stale": row["stale"],
        "today": row["today"],
    }


def _period_usage(now: datetime) -> dict[str, dict[str, Any]]:
    today = now.astimezone(UTC).date()
    aggregates = {}
    for period, days_back in PERIODS.items():
        since = None if days_back is None else Q(day__gte=today - timedelta(days=days_back))
        for counter in ROLLUP_COUNTERS:
            aggregates[f"{period}__{counter}"] = Sum(counter, filter=since)
    row = DailyUsage.objects.aggregate(**aggregates)
    usage: dict[str, dict[str, Any]] = {}
    for period in PERIODS:
        values = {counter: row[f"{period}__{counter}"] or 0 for counter in ROLLUP_COUNTERS}
        # Sum over a MoneyField reads back as Decimal; an empty sum is None.
        values["cost_usd"] = row[f"{period}__cost_usd"] or Decimal("0E-9")
        values["total_tokens"] = values["prompt_tokens"] + values["completion_tokens"]
        usage[period] = values
    return usage


def _burn_rate(now: datetime) -> dict[str, Any]:
    since = now - BURN_WINDOW
    # A message appended in the window moved its session's last_active_at into
    # the window, so the indexed session filter bounds the scan to sessions
    # active in the last hour instead of the whole message table.
    row = Message.objects.filter(
        session__last_active_at__gte=since, created_at__gte=since
    ).aggregate(
        cost_usd=Sum("cost_usd"),
        api_calls=Count("id", filter=~Q(cost_source="")),
        unpriced_calls=Count("id", filter=Q(cost_source=CostSource.UNPRICED)),
        prompt_tokens=Sum("prompt_tokens"),
        completion_tokens=Sum("completion_tokens"),
    )
    return {
        "window_seconds": int(BURN_WINDOW.total_seconds()),
        "cost_usd": row["cost_usd"] or Decimal("0E-9"),
        "api_calls": row["api_calls"],
        "unpriced_calls": row["unpriced_calls"],
        "total_tokens": (row["prompt_tokens"] or 0) + (row["completion_tokens"] or 0),
    }


def fleet_totals(now: datetime | None = None) -> dict[str, Any]:
    """The fleet's header numbers at ``now``.

    ``sessions``: counts by status, running, stuck (running longer than
    ``FLEET_STUCK_AFTER``), stale (active, silent for ``FLEET_STALE_AFTER``),
    started today (UTC). ``usage``: per period (today, last 7 and 30 days
    including today, all time; UTC days) the rollup counters, ``total_tokens``
    and ``cost_usd`` (Decimal; ``unpriced_calls`` says how many calls it
    leaves out). ``burn_rate``: cost and tokens of messages created in the
    last hour.
    """
    now = now or timezone.now()
    return {
        "generated_at": now,
        "stuck_after": settings.FLEET_STUCK_AFTER,
        "stale_after": settings.FLEET_STALE_AFTER,
        "sessions": _session_counts(now),
        "usage": _period_usage(now),
        "burn_rate": _burn_rate(now),
    }
