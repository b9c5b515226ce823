"""Fleet totals: the numbers the dashboard's header and ``GET /api/v1/fleet`` show.

Three queries whatever the data size: index range counts of sessions (by
status, running, stuck, stale, started today), one over the daily rollup
(tokens and cost per period, so the history survives purges), one over the
per-minute rollup of the last hour (the burn rate).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Case, DateField, F, When
from django.utils import timezone

from sessions.choices import Status
from sessions.models import DailyUsage, MinuteUsage
from sessions.models import Session as SessionModel
from sessions.money import from_nanos
from sessions.rollups import COUNTERS as ROLLUP_COUNTERS
from sessions.rollups import utc_minute
from sessions.sql import count_of, exact_sums, exact_totals, scalars

BURN_WINDOW = timedelta(hours=1)
# Name → first day included, as days before today (None = all time).
PERIODS: dict[str, int | None] = {
    "today": 0,
    "last_7_days": 6,
    "last_30_days": 29,
    "all_time": None,
}


def _session_counts(now: datetime, agents: Sequence[str] | None) -> dict[str, Any]:
    sessions = SessionModel.objects.all()
    if agents is not None:
        sessions = sessions.filter(agent__in=agents)
    # One query of index range counts (session_status_idx, session_turn_idx,
    # session_created_idx): no count visits a table row, so the cost follows
    # the index entries counted, not the width of the sessions table. The
    # bulk of a fleet's history is completed sessions: that count is the total
    # (the narrowest index) minus the others rather than a walk over its range.
    counted = [status for status in Status.values if status != Status.COMPLETED]
    total, *values = scalars(
        count_of(sessions),
        *(count_of(sessions.filter(status=status)) for status in counted),
        count_of(sessions.running()),
        count_of(sessions.stuck(now)),
        count_of(sessions.stale(now)),
        count_of(sessions.started_today(now)),
    )
    found = dict(zip(counted, values, strict=False))
    found[Status.COMPLETED] = total - sum(found.values())
    by_status = {status: found[status] for status in Status.values}
    running_count, stuck, stale, today = values[len(counted) :]
    return {
        "total": total,
        "by_status": by_status,
        "active": by_status[Status.ACTIVE],
        "running": running_count,
        "stuck": stuck,
        "stale": stale,
        "today": today,
    }


def _period_usage(now: datetime, agents: Sequence[str] | None) -> dict[str, dict[str, Any]]:
    today = now.astimezone(UTC).date()
    first = today - timedelta(days=max(d for d in PERIODS.values() if d is not None))
    # One pass over the rollup, grouped into the days of the longest period
    # and one "before" bucket (NULL): at most 31 rows, whatever the history.
    daily = DailyUsage.objects.all()
    if agents is not None:
        daily = daily.filter(agent__in=agents)
    rows = (
        daily.annotate(
            bucket=Case(When(day__gte=first, then=F("day")), default=None, output_field=DateField())
        )
        .values("bucket")
        .annotate(**exact_sums(*ROLLUP_COUNTERS))
        .order_by()
    )
    usage = {period: dict.fromkeys(ROLLUP_COUNTERS, 0) for period in PERIODS}
    for found in rows:
        # Exact sums: the rollup's rows can add up past 64 bits.
        row = exact_totals(found, ROLLUP_COUNTERS)
        for period, days_back in PERIODS.items():
            if days_back is None or (
                found["bucket"] is not None and found["bucket"] >= today - timedelta(days=days_back)
            ):
                values = usage[period]
                for counter in ROLLUP_COUNTERS:
                    values[counter] += row[counter]
    for values in usage.values():
        values["cost_usd"] = from_nanos(values["cost_usd"])
        values["total_tokens"] = values["prompt_tokens"] + values["completion_tokens"]
    return usage


def _burn_rate(now: datetime, agents: Sequence[str] | None) -> dict[str, Any]:
    # The current minute and the 59 before it, from the per-minute rollup: at
    # most 60 buckets per agent × model × channel, whatever the traffic.
    first = utc_minute(now) - BURN_WINDOW + timedelta(minutes=1)
    counters = ("cost_usd", "api_calls", "unpriced_calls", "prompt_tokens", "completion_tokens")
    minutes = MinuteUsage.objects.filter(minute__gte=first, minute__lte=now)
    if agents is not None:
        minutes = minutes.filter(agent__in=agents)
    found = minutes.aggregate(**exact_sums(*counters))
    row = exact_totals(found, counters)
    return {
        "window_seconds": int(BURN_WINDOW.total_seconds()),
        "cost_usd": from_nanos(row["cost_usd"]),
        "api_calls": row["api_calls"],
        "unpriced_calls": row["unpriced_calls"],
        "total_tokens": row["prompt_tokens"] + row["completion_tokens"],
    }


def fleet_totals(
    now: datetime | None = None, *, agents: Sequence[str] | None = None
) -> dict[str, Any]:
    """The fleet's header numbers at ``now``.

    ``sessions``: counts by status, running, stuck (running longer than
    ``FLEET_STUCK_AFTER``), stale (active, silent for ``FLEET_STALE_AFTER``),
    started today (UTC). ``usage``: per period (today, last 7 and 30 days
    including today, all time; UTC days) the rollup counters, ``total_tokens``
    and ``cost_usd`` (Decimal; ``unpriced_calls`` says how many calls it
    leaves out). ``burn_rate``: cost and tokens of usage dated in the last
    hour (the current UTC minute and the 59 before it). ``agents``: count only
    those agents' sessions and usage (an API key's scope); ``None``, every agent.
    """
    now = now or timezone.now()
    return {
        "generated_at": now,
        "stuck_after": settings.FLEET_STUCK_AFTER,
        "stale_after": settings.FLEET_STALE_AFTER,
        "sessions": _session_counts(now, agents),
        "usage": _period_usage(now, agents),
        "burn_rate": _burn_rate(now, agents),
    }
