"""The fleet page's own numbers: the fleet version, breakdowns, chart rows.

The header totals (counts, periods, burn rate) come from
``sessions.fleet_stats.fleet_totals``, shared with ``GET /api/v1/fleet``.
Each function here is one query: the version is four index lookups; the
breakdowns and charts read the daily rollup, never the sessions or messages.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sessions.choices import TOKEN_FIELDS, Channel
from sessions.models import DailyUsage, Message, Session, Tombstone
from sessions.money import from_nanos
from sessions.sql import exact_sums, exact_totals, scalars

USAGE_FIELDS = ("cost_usd", "unpriced_calls", "api_calls", "messages", *TOKEN_FIELDS)
BREAKDOWN_LIMIT = 10


def utc_today(now: datetime) -> date:
    return now.astimezone(UTC).date()


def fleet_version(now: datetime) -> str:
    """A short token that changes whenever the fleet page could show something new.

    One query of four index lookups: the newest activity (every write about a
    session moves ``last_active_at``), the highest session and message ids (a
    new session or message, even within one clock tick) and the newest
    tombstone (a deletion). The current minute is mixed in so
    that time-driven numbers (stale, stuck, "3 min ago") and writes that do
    not touch ``last_active_at`` (reconcile, purge) show within a minute.
    """
    values = scalars(
        Session.objects.order_by("-last_active_at", "-id").values("last_active_at")[:1],
        Session.objects.order_by("-id").values("id")[:1],
        Message.objects.order_by("-id").values("id")[:1],
        Tombstone.objects.order_by("-deleted_at").values("deleted_at")[:1],
    )
    minute = int(now.timestamp() // 60)
    raw = "|".join(map(str, [*values, minute]))
    return hashlib.blake2b(raw.encode(), digest_size=8).hexdigest()


@dataclass(frozen=True)
class Usage:
    """Tokens and cost of a period or a group. Cache and reasoning are parts, not extras."""

    label: str
    cost_usd: Decimal
    unpriced_calls: int
    api_calls: int
    messages: int
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    cache_read_tokens: int
    cache_creation_tokens: int
    sessions: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def _usage(label: str, row: dict[str, Any]) -> Usage:
    counts = {name: int(row[name] or 0) for name in USAGE_FIELDS if name != "cost_usd"}
    return Usage(
        label=label,
        cost_usd=Decimal(row["cost_usd"] or 0),
        sessions=int(row["sessions_started"] or 0),
        **counts,
    )


BLANK_LABELS = {"model": "(no model)", "agent": "(no agent)", "channel": "(not reported)"}


@dataclass(frozen=True)
class Breakdown:
    dimension: str
    rows: list[Usage]
    more: int


BREAKDOWN_DIMENSIONS = ("model", "agent", "channel")


def breakdowns(now: datetime, *, days: int = 30) -> list[Breakdown]:
    """Usage over the last ``days`` by model, by agent and by channel, costliest first.

    One query grouped by all three (a fleet has tens to hundreds of agent ×
    model × channel combinations), merged per dimension here.
    """
    start = utc_today(now) - timedelta(days=days - 1)
    fields = (*USAGE_FIELDS, "sessions_started")
    rows = [
        _exact(row, BREAKDOWN_DIMENSIONS, fields)
        for row in DailyUsage.objects.filter(day__gte=start)
        .values(*BREAKDOWN_DIMENSIONS)
        .annotate(**exact_sums(*fields))
        .order_by()
    ]
    channel_names = dict(Channel.choices)
    result = []
    for dimension in BREAKDOWN_DIMENSIONS:
        merged: dict[str, dict[str, Any]] = {}
        for row in rows:
            into = merged.setdefault(row[dimension], dict.fromkeys(fields, 0))
            for name in fields:
                into[name] += row[name] or 0
        names = channel_names if dimension == "channel" else {}
        usages = [
            _usage(names.get(value, value) or BLANK_LABELS[dimension], sums)
            for value, sums in sorted(
                merged.items(), key=lambda kv: (-kv[1]["cost_usd"], -kv[1]["prompt_tokens"], kv[0])
            )
        ]
        # Rows that only ever held corrections that cancelled out.
        usages = [u for u in usages if u.api_calls or u.messages or u.sessions or u.total_tokens]
        result.append(
            Breakdown(
                dimension=dimension,
                rows=usages[:BREAKDOWN_LIMIT],
                more=max(0, len(usages) - BREAKDOWN_LIMIT),
            )
        )
    return result


def daily_rows(now: datetime, *, days: int = 30) -> tuple[date, list[dict[str, Any]]]:
    """Rollup rows of the last ``days`` per day and model, for the charts."""
    start = utc_today(now) - timedelta(days=days - 1)
    fields = ("cost_usd", "unpriced_calls", *TOKEN_FIELDS)
    rows = []
    for found in (
        DailyUsage.objects.filter(day__gte=start)
        .values("day", "model")
        .annotate(**exact_sums(*fields))
        .order_by("day", "model")
    ):
        row = _exact(found, ("day", "model"), fields)
        row["cost"] = row.pop("cost_usd")
        row["unpriced"] = row.pop("unpriced_calls")
        rows.append(row)
    return start, rows


def _exact(found: dict[str, Any], keys: tuple[str, ...], fields: tuple[str, ...]) -> dict[str, Any]:
    """A row of ``exact_sums``: its group keys and exact sums (cost as a Decimal).

    Exact sums because the rollup's rows can add up past 64 bits.
    """
    row: dict[str, Any] = {key: found[key] for key in keys}
    row.update(exact_totals(found, fields))
    if "cost_usd" in row:
        row["cost_usd"] = from_nanos(row["cost_usd"])
    return row
