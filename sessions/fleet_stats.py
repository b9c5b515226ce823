"""The fleet's numbers: what the dashboard's fleet page and ``GET /api/v1/fleet`` read.

``fleet_totals`` (the header, shared with the API) is three queries whatever
the data size: the sessions by status from their tally (``SessionTally``,
kept by the database) with index range counts of the running, stuck, stale
and started today, one over the daily rollup (tokens and cost per period,
so the history survives purges), one over the per-minute rollup of the last
hour (the burn rate).

The fleet page's own numbers are one query each: ``fleet_version`` is four
index lookups; ``breakdowns`` and ``daily_rows`` (the charts) read the daily
rollup, never the sessions or messages. Formatting them is the dashboard's.
Latency (``latency_summary`` for any days and dimensions, ``fleet_latency``
for the periods of ``GET /fleet``, ``page_latency`` for the fleet page's
panels and chart) is one query over the latency rollup each; the fleet-wide
reads (the page, the API for a key that sees every agent) read its copy
without the agent, ``FleetLatencyUsage``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import (
    BigIntegerField,
    Case,
    CharField,
    DateField,
    F,
    Func,
    IntegerField,
    QuerySet,
    Value,
    When,
)
from django.utils import timezone

from sessions.choices import TOKEN_FIELDS, Status
from sessions.latency import RATIO, summarize
from sessions.models import (
    DailyUsage,
    FleetLatencyUsage,
    LatencyUsage,
    Message,
    MinuteUsage,
    SessionTally,
    Tombstone,
)
from sessions.models import Session as SessionModel
from sessions.money import from_nanos
from sessions.querysets import fresh_turn_rules, lively_rule
from sessions.rollups import COUNTERS as ROLLUP_COUNTERS
from sessions.rollups import utc_minute
from sessions.sql import (
    count_of,
    exact_sums,
    exact_total,
    exact_totals,
    grouped_exact_sums,
    scalars,
)

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
    tally = SessionTally.objects.all()
    if agents is not None:
        sessions = sessions.filter(agent__in=agents)
        tally = tally.filter(agent__in=agents)
    # One query. The counts by status are sums over the tally the database
    # keeps (agents × statuses rows, migration 0017): their cost does not grow
    # with the fleet, where counting the sessions visited every index entry
    # (~30 ms at 100 000 sessions on PostgreSQL, 0.34 s at 1 M). The health
    # counts are index ranges over what is running, recently active or
    # started today.
    summed = Func(
        F("sessions"),
        template="COALESCE(SUM(%(expressions)s), 0)",
        output_field=BigIntegerField(),
    )
    *values, running_count, fresh, unstarted, lively, today = scalars(
        *(tally.filter(status=status).order_by().values(n=summed) for status in Status.values),
        count_of(sessions.running()),
        *(count_of(sessions.filter(rule)) for rule in fresh_turn_rules(now)),
        count_of(sessions.filter(lively_rule(now))),
        count_of(sessions.started_today(now)),
    )
    by_status = {status: int(n) for status, n in zip(Status.values, values, strict=True)}
    # The stale are the active minus the lively, and the stuck the running
    # minus the fresh turns: counts over recent activity rather than over
    # every session reconcile has yet to mark.
    stale = by_status[Status.ACTIVE] - lively
    stuck = running_count - fresh - unstarted
    return {
        "total": sum(by_status.values()),
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
    # and one "before" bucket (None): at most 31 rows, whatever the history.
    rows = grouped_exact_sums(
        DailyUsage,
        (),
        ROLLUP_COUNTERS,
        bucket=("day", first),
        among=None if agents is None else ("agent", agents),
    )
    usage: dict[str, dict[str, Any]] = {
        period: dict.fromkeys(ROLLUP_COUNTERS, 0) for period in PERIODS
    }
    for row in rows:
        for period, days_back in PERIODS.items():
            if days_back is None or (
                row["bucket"] is not None and row["bucket"] >= today - timedelta(days=days_back)
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
    including today, all time; UTC days) the rollup counters by their column
    names (``GET /fleet`` renames two: ``shapes.fleet_json``), ``total_tokens``
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


# --- the fleet page: its version, breakdowns and chart rows -------------------

USAGE_FIELDS = ("cost_usd", "unpriced_calls", "api_calls", "message_count", *TOKEN_FIELDS)
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
        SessionModel.objects.order_by("-last_active_at", "-id").values("last_active_at")[:1],
        SessionModel.objects.order_by("-id").values("id")[:1],
        Message.objects.order_by("-id").values("id")[:1],
        Tombstone.objects.order_by("-deleted_at").values("deleted_at")[:1],
    )
    minute = int(now.timestamp() // 60)
    raw = "|".join(map(str, [*values, minute]))
    return hashlib.blake2b(raw.encode(), digest_size=8).hexdigest()


@dataclass(frozen=True)
class Usage:
    """Tokens and cost of one group. Cache and reasoning are parts, not extras."""

    key: str  # the grouped value as stored: "" when none was reported
    cost_usd: Decimal
    unpriced_calls: int
    api_calls: int
    message_count: int
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    cache_read_tokens: int
    cache_creation_tokens: int
    sessions: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def _usage(key: str, row: dict[str, Any]) -> Usage:
    counts = {name: int(row[name] or 0) for name in USAGE_FIELDS if name != "cost_usd"}
    return Usage(
        key=key,
        cost_usd=Decimal(row["cost_usd"] or 0),
        sessions=int(row["sessions_started"] or 0),
        **counts,
    )


@dataclass(frozen=True)
class Breakdown:
    dimension: str
    rows: list[Usage]
    more: int


BREAKDOWN_DIMENSIONS = ("model", "agent", "channel")


def breakdowns(now: datetime, *, days: int = 30) -> list[Breakdown]:
    """Usage over the last ``days`` by model, by agent and by channel, costliest first.

    Rows carry the stored value (``key``); naming it for people (a channel's
    label, "(no agent)") is the dashboard's job.

    One query grouped by all three (a fleet has tens to hundreds of agent ×
    model × channel combinations), merged per dimension here.
    """
    start = utc_today(now) - timedelta(days=days - 1)
    fields = (*USAGE_FIELDS, "sessions_started")
    rows = grouped_exact_sums(DailyUsage, BREAKDOWN_DIMENSIONS, fields, since=("day", start))
    for row in rows:
        row["cost_usd"] = from_nanos(row["cost_usd"])
    result = []
    for dimension in BREAKDOWN_DIMENSIONS:
        merged: dict[str, dict[str, Any]] = {}
        for row in rows:
            into = merged.setdefault(row[dimension], dict.fromkeys(fields, 0))
            for name in fields:
                into[name] += row[name] or 0
        usages = [
            _usage(value, sums)
            for value, sums in sorted(
                merged.items(), key=lambda kv: (-kv[1]["cost_usd"], -kv[1]["prompt_tokens"], kv[0])
            )
        ]
        # Rows that only ever held corrections that cancelled out.
        usages = [
            u for u in usages if u.api_calls or u.message_count or u.sessions or u.total_tokens
        ]
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
    rows = grouped_exact_sums(
        DailyUsage, ("day", "model"), fields, since=("day", start), order=True
    )
    for row in rows:
        row["cost"] = from_nanos(row.pop("cost_usd"))
        row["unpriced"] = row.pop("unpriced_calls")
    return start, rows


# --- latency: percentiles from the latency rollup -----------------------------

LATENCY_COUNTERS = ("count", "sum_ms")


def latency_histograms(
    first: date | None,
    last: date,
    *,
    kind: str,
    by: Sequence[str] = ("model",),
    agents: Sequence[str] | None = None,
) -> dict[tuple[str, ...], tuple[dict[int, int], int]]:
    """The latency histograms of ``kind`` (``LatencyUsage.Kind``) over the UTC
    days ``first`` (``None``: all time) to ``last``, per value of the ``by``
    dimensions (``agent``, ``model``, ``name``; none: one for everything):
    ``{values: ({bucket: count}, sum_ms)}``. One query over the rollup, never
    the messages; ``agents`` narrows it to those agents (a key's scope)."""
    rows = LatencyUsage.objects.filter(kind=kind, day__lte=last)
    if first is not None:
        rows = rows.filter(day__gte=first)
    if agents is not None:
        rows = rows.filter(agent__in=agents)
    found = rows.values(*by, "bucket").annotate(**exact_sums(*LATENCY_COUNTERS)).order_by()
    histograms: dict[tuple[str, ...], tuple[dict[int, int], int]] = {}
    for row in found:
        totals = exact_totals(row, LATENCY_COUNTERS)
        if totals["count"] <= 0:
            continue
        key = tuple(row[name] for name in by)
        counts, sum_ms = histograms.get(key, ({}, 0))
        counts[row["bucket"]] = counts.get(row["bucket"], 0) + totals["count"]
        histograms[key] = (counts, sum_ms + totals["sum_ms"])
    return histograms


def latency_summary(
    first: date | None,
    last: date,
    *,
    kind: str,
    by: Sequence[str] = ("model",),
    agents: Sequence[str] | None = None,
) -> dict[tuple[str, ...], dict[str, int | float | None]]:
    """Count, mean and p50/p95/p99 (ms, within the precision of
    ``sessions.latency``) per value of ``by``, as ``latency_histograms`` reads."""
    return {
        key: summarize(counts, sum_ms)
        for key, (counts, sum_ms) in latency_histograms(
            first, last, kind=kind, by=by, agents=agents
        ).items()
    }


Histogram = tuple[dict[int, int], int]  # ({bucket: count}, sum_ms)

# What a latency row is about: a tool run's tool, a call's (or time to first
# token's) model, nothing for a turn.
_LATENCY_LABEL = Case(
    When(kind=LatencyUsage.Kind.TOOL, then=F("name")),
    When(kind=LatencyUsage.Kind.TURN, then=Value("")),
    default=F("model"),
    output_field=CharField(),
)


def fleet_latency(
    now: datetime | None = None,
    *,
    agents: Sequence[str] | None = None,
    periods: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Latency per period of ``PERIODS`` (UTC days, as the usage totals; only
    ``periods`` when given), one query over the latency rollup: per model the
    model calls (``models``) and times to first token
    (``time_to_first_token``), most calls first; per tool name the tool runs,
    slowest p95 first (``tools``); the turns (``turns``). Each is
    ``latency.summarize``'s count, mean and p50/p95/p99 in ms, the
    percentiles within ``bucket_ratio`` above the exact value.

    The query groups the rows by kind, model or tool, bucket and the
    narrowest period window holding their day (today, 7, 30 days, older),
    never by day: the rows it returns are bounded by the models, tools and
    buckets in use, not by the days of history (grouped by day, a demo fleet
    of 10 000 sessions returned 29 000 rows and took seconds). Without an
    unbounded period asked for, only the widest period's days are read (an
    index range of the unique key). Without ``agents`` (every agent) it reads
    ``FleetLatencyUsage``, whose rows do not multiply with the agents."""
    now = now or timezone.now()
    today = now.astimezone(UTC).date()
    asked = list(PERIODS) if periods is None else [p for p in PERIODS if p in periods]
    # The period windows, narrowest first: a row's window is the first whose
    # first day it is on or after (the last: older than every bounded one).
    bounded = sorted({d for d in PERIODS.values() if d is not None})
    rows: QuerySet[Any] = FleetLatencyUsage.objects.all()
    if agents is not None:
        rows = LatencyUsage.objects.filter(agent__in=agents)
    if asked and all(PERIODS[p] is not None for p in asked):
        rows = rows.filter(day__gte=today - timedelta(days=max(PERIODS[p] or 0 for p in asked)))
    window = Case(
        *(
            When(day__gte=today - timedelta(days=days_back), then=Value(index))
            for index, days_back in enumerate(bounded)
        ),
        default=Value(len(bounded)),
        output_field=IntegerField(),
    )
    found = (
        rows.annotate(label=_LATENCY_LABEL, window=window)
        .values("kind", "label", "window", "bucket")
        .annotate(**exact_sums(*LATENCY_COUNTERS))
        .order_by()
    )
    # The windows each period adds up: today's is window 0, 7 days' 0 and 1 …
    reach = {
        period: len(bounded) if days_back is None else bounded.index(days_back)
        for period, days_back in PERIODS.items()
        if period in asked
    }
    # (period, kind, model or tool name) → ({bucket: count}, sum_ms)
    histograms: dict[tuple[str, str, str], Histogram] = {}
    for row in found:
        totals = exact_totals(row, LATENCY_COUNTERS)
        if totals["count"] <= 0:
            continue
        for period, last_window in reach.items():
            if row["window"] > last_window:
                continue
            _add(histograms, (period, row["kind"], row["label"]), row["bucket"], totals)

    latency: dict[str, Any] = {"bucket_ratio": round(RATIO, 4)}
    for period in asked:
        latency[period] = _latency_of(
            {
                (kind, label): found
                for (at, kind, label), found in histograms.items()
                if at == period
            }
        )
    return latency


def _latency_of(histograms: Mapping[tuple[str, str], Histogram]) -> dict[str, Any]:
    """One period's latency from its histograms by (kind, model or tool name)."""

    def listed(kind: str, field: str) -> list[dict[str, Any]]:
        return [
            {field: label, **summarize(counts, sum_ms)}
            for (of, label), (counts, sum_ms) in histograms.items()
            if of == kind
        ]

    counts, sum_ms = histograms.get((LatencyUsage.Kind.TURN, ""), ({}, 0))
    return {
        "models": sorted(listed(LatencyUsage.Kind.CALL, "model"), key=_most_first),
        "time_to_first_token": sorted(listed(LatencyUsage.Kind.TTFT, "model"), key=_most_first),
        "tools": sorted(
            listed(LatencyUsage.Kind.TOOL, "name"),
            key=lambda item: (-(item["p95_ms"] or 0), -item["count"], item["name"]),
        ),
        "turns": summarize(counts, sum_ms),
    }


def _add(into: dict[Any, Histogram], key: Any, bucket: int, totals: Mapping[str, int]) -> None:
    counts, sum_ms = into.get(key, ({}, 0))
    counts[bucket] = counts.get(bucket, 0) + totals["count"]
    into[key] = (counts, sum_ms + totals["sum_ms"])


def page_latency(
    now: datetime, period: str, *, chart_days: int = 30
) -> tuple[dict[str, Any], dict[date, Histogram]]:
    """The fleet page's latency in one query over the rollup without the agent
    (``FleetLatencyUsage``): ``period``'s latency as ``fleet_latency`` gives
    it, and the model calls' histogram of each of the last ``chart_days`` UTC
    days (its chart; days without a timed call are absent). A ``UNION ALL``
    of two groupings, each bounded by the kinds, models, tools and buckets in
    use (and the chart's days); the rows read are days × models and tools ×
    buckets, not × agents (the chart: an index range of its 30 days; the
    panels: the period's days, which SQLite reads by scanning their index in
    order rather than a day range)."""
    today = utc_today(now)
    chart_first = today - timedelta(days=chart_days - 1)
    days_back = PERIODS[period]
    rows = FleetLatencyUsage.objects.all()
    if days_back is not None:
        rows = rows.filter(day__gte=today - timedelta(days=days_back))
    # Grouped by the table's own columns (a tool row has no model, a call no
    # name), in the order of ``fleetlatencyusage_panel_idx`` (the chart:
    # ``fleetlatencyusage_chart_idx``), which hold every column read: SQLite
    # aggregates them in index order, without a sort (bench/README.md,
    # session 21).
    keys = ("kind", "model", "name", "on", "bucket")
    sums = exact_sums(*LATENCY_COUNTERS)
    panel = (
        rows.annotate(on=Value(None, output_field=DateField()))
        .values("kind", "model", "name", "bucket", "on")
        .annotate(**sums)
        .order_by()
        .values_list(*keys, *sums)
    )
    chart = (
        FleetLatencyUsage.objects.filter(day__gte=chart_first, kind=LatencyUsage.Kind.CALL)
        .annotate(
            blank=Value("", output_field=CharField()),
            no_name=Value("", output_field=CharField()),
            on=F("day"),
        )
        .values("kind", "blank", "no_name", "on", "bucket")
        .annotate(**sums)
        .order_by()
        .values_list("kind", "blank", "no_name", "on", "bucket", *sums)
    )
    histograms: dict[tuple[str, str], Histogram] = {}
    by_day: dict[date, Histogram] = {}
    # The database's rows as they come (~2 400 at 100 000 sessions): the ORM's
    # per-row converters cost more than the loop below.
    sql, params = panel.union(chart, all=True).query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        found = cursor.fetchall()
    for kind, model, name, on, bucket, count_high, count_low, ms_high, ms_low in found:
        count = exact_total(count_high, count_low)
        if count <= 0:
            continue
        totals = {"count": count, "sum_ms": exact_total(ms_high, ms_low)}
        if on is None:
            _add(histograms, (kind, model or name), bucket, totals)
        else:
            # SQLite gives the union's dates back as text.
            _add(by_day, on if isinstance(on, date) else date.fromisoformat(on), bucket, totals)
    return _latency_of(histograms), by_day


def _most_first(item: Mapping[str, Any]) -> tuple[int, str]:
    return (-item["count"], item["model"])
