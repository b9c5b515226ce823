"""Usage rollups: deltas gathered in Python, applied in one upsert per table.

Every write that moves usage adds its deltas to a ``Rollup``, which keeps three
tables: ``DailyUsage`` (per UTC day, the history the charts and period totals
read; kept by purge), ``BudgetUsage`` (spend per UTC quarter hour, hour and
day, also per project: the budgets' source, kept by purge) and ``MinuteUsage`` (per UTC
minute, only for usage dated within ``MinuteUsage.RECENT``: the burn rate's
source). ``LatencyUsage`` counts durations per UTC day × agent × model × kind
× tool name in the fixed buckets of ``sessions.latency`` (one row per bucket
used), through the same upsert; ``FleetLatencyUsage`` the same durations
without the agent (and without the model for tool runs and turns), the fleet
page's source.

The upsert (``INSERT … ON CONFLICT … DO UPDATE SET x = x + excluded.x``) is
the same SQL on SQLite (≥ 3.35 for ``RETURNING``) and PostgreSQL, and adds
to the counters under the row lock, so concurrent writers never lose an
increment.

Bounds (``sessions.bounds``): a bucket's counter never passes its bound. A
delta past the bound is refused before the SQL; the upsert returns the
counters it produced and a write that took one past its bound is refused
(``InvalidInput``, 422), so the caller's transaction rolls back and nothing
is written. PostgreSQL's own "bigint out of range" (possible only on a row
an older version left past the bound) is refused the same way.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from django.db import DataError, connection, models
from django.utils import timezone

from sessions.bounds import limit_of
from sessions.errors import InvalidInput
from sessions.latency import bucket_of
from sessions.models import (
    BudgetUsage,
    DailyUsage,
    FleetLatencyUsage,
    LatencyUsage,
    MinuteUsage,
    Turn,
    project_key,
)

COUNTERS = (
    "sessions_started",
    "message_count",
    "turns",
    "tool_call_count",
    "api_calls",
    "unpriced_calls",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "cache_read_tokens",
    "cache_creation_tokens",
    "cost_usd",  # nano-dollars here
)
DIMENSIONS = ("agent", "model", "channel")
# The budgets' rollup's key: the span (quarter hour or day), the dimensions and
# the project's key; ``project`` rides along.
BUDGET_DIMENSIONS = ("span", *DIMENSIONS, "project_key", "project")
LATENCY_DIMENSIONS = ("agent", "model", "kind", "name", "bucket")
FLEET_LATENCY_DIMENSIONS = ("kind", "model", "name", "bucket")
# The kinds whose fleet-wide rows keep the model (a tool run's is its session's,
# a turn's the session's: the fleet page groups those by tool name, or not at all).
MODEL_KINDS = frozenset({LatencyUsage.Kind.CALL, LatencyUsage.Kind.TTFT})
LATENCY_COUNTERS = ("count", "sum_ms")


def utc_day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def utc_minute(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def utc_day_start(moment: datetime) -> datetime:
    """The start (UTC midnight) of the UTC day holding ``moment``."""
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def utc_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def utc_quarter(moment: datetime) -> datetime:
    """The start of the UTC quarter hour holding ``moment``."""
    minute = utc_minute(moment)
    return minute.replace(minute=minute.minute - minute.minute % 15)


class _Buckets:
    """Counter deltas of one rollup table, keyed by (period, *dimensions).

    The unique key is the period and the first ``keyed`` dimensions; any
    further ones are determined by those (``project`` by ``project_key``).
    """

    def __init__(
        self,
        table: type[models.Model],
        period: str,
        counters: Sequence[str],
        adapt: Callable,
        dimensions: Sequence[str] = DIMENSIONS,
        keyed: int = len(DIMENSIONS),
    ) -> None:
        self.table = table
        self.period = period
        self.counters = counters
        self.adapt = adapt
        self.dimensions = tuple(dimensions)
        self.keyed = keyed
        self.deltas: dict[tuple[Any, ...], dict[str, int]] = defaultdict(
            lambda: dict.fromkeys(counters, 0)
        )

    def add(
        self, period: Any, dimensions: tuple[Any, ...], sign: int, counts: dict[str, int]
    ) -> None:
        bucket = self.deltas[(period, *dimensions)]
        for name, value in counts.items():
            if value and name in bucket:
                bucket[name] += sign * value

    def rows(self) -> list[tuple[tuple[Any, ...], dict[str, int]]]:
        # Sorted: concurrent writers lock the bucket rows in one order, so two
        # transactions touching the same buckets never deadlock on PostgreSQL.
        return sorted(
            ((key, counts) for key, counts in self.deltas.items() if any(counts.values())),
            key=lambda row: row[0],
        )

    def _refuse(self, name: str) -> None:
        what = "cost" if name == "cost_usd" else name
        raise InvalidInput(
            f"the {self.table._meta.verbose_name} {what} total would exceed its limit",
            field=name,
        )

    def apply(self) -> None:
        rows = self.rows()
        if not rows:
            return
        for _, counts in rows:
            for name, value in counts.items():
                if abs(value) > limit_of(name):
                    self._refuse(name)
        quote = connection.ops.quote_name
        table = quote(self.table._meta.db_table)
        columns = [quote(c) for c in (self.period, *self.dimensions, *self.counters)]
        key_columns = columns[: 1 + self.keyed]
        values_at = 1 + len(self.dimensions)
        placeholders = "(" + ", ".join(["%s"] * len(columns)) + ")"
        updates = ", ".join(
            f"{quote(c)} = {table}.{quote(c)} + excluded.{quote(c)}" for c in self.counters
        )
        sql = (
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES "  # noqa: S608 - names are ours
            f"{', '.join([placeholders] * len(rows))} "
            f"ON CONFLICT ({', '.join(key_columns)}) DO UPDATE SET {updates} "
            f"RETURNING {', '.join(columns[values_at:])}"
        )
        params: list[Any] = []
        for (at, *dimensions), counts in rows:
            params.extend([self.adapt(at), *dimensions, *(counts[c] for c in self.counters)])
        with connection.cursor() as cursor:
            try:
                cursor.execute(sql, params)
            except DataError:
                # PostgreSQL: a stored counter plus the delta left BIGINT. The
                # error names no column: blame the largest change for its bound.
                self._refuse(
                    max(
                        self.counters,
                        key=lambda c: max(abs(d[c]) / limit_of(c) for _, d in rows),
                    )
                )
            produced = cursor.fetchall()
        deltas = [counts for _, counts in rows]
        for values in produced:
            for name, value in zip(self.counters, values, strict=True):
                # SQLite turns an integer overflow into a float: also past the bound.
                # Refused when this write moved a counter further past its bound.
                if abs(value) > limit_of(name) and any(d[name] * value > 0 for d in deltas):
                    self._refuse(name)


class Rollup:
    """Accumulates counter deltas per day, per budget bucket, (when recent)
    minute and, for durations, per latency bucket with and without the agent.

    One pass per write: ``add_counts`` adds a write's counters once, to the
    finest key its tables need (the UTC minute, whether it is recent, the
    dimensions and the project); ``apply`` spreads each key over the day,
    the three budget spans and the minute, so the cost of a message does not
    grow with the number of rollup tables.
    """

    def __init__(self) -> None:
        # The real clock, not the write's ``now``: the demo generator and
        # imports write history "as of" past moments, and that is not recent.
        self._recent_since = timezone.now() - MinuteUsage.RECENT
        self._at: datetime | None = None
        self._minute: datetime | None = None
        self._day: date | None = None
        self._recent = False
        # (UTC minute, recent, agent, model, channel, project) -> counter deltas.
        self._pending: dict[tuple[Any, ...], dict[str, int]] = {}
        self._daily = _Buckets(DailyUsage, "day", COUNTERS, connection.ops.adapt_datefield_value)
        self._minutes = _Buckets(
            MinuteUsage, "minute", MinuteUsage.COUNTERS, connection.ops.adapt_datetimefield_value
        )
        self._budget = _Buckets(
            BudgetUsage,
            "start",
            BudgetUsage.COUNTERS,
            connection.ops.adapt_datetimefield_value,
            dimensions=BUDGET_DIMENSIONS,
            keyed=len(BUDGET_DIMENSIONS) - 1,
        )
        self._latency = _Buckets(
            LatencyUsage,
            "day",
            LATENCY_COUNTERS,
            connection.ops.adapt_datefield_value,
            dimensions=LATENCY_DIMENSIONS,
            keyed=len(LATENCY_DIMENSIONS),
        )
        self._fleet_latency = _Buckets(
            FleetLatencyUsage,
            "day",
            LATENCY_COUNTERS,
            connection.ops.adapt_datefield_value,
            dimensions=FLEET_LATENCY_DIMENSIONS,
            keyed=len(FLEET_LATENCY_DIMENSIONS),
        )
        # (day, agent, model, kind, tool name, bucket) -> [count, sum_ms] deltas,
        # spread over both latency tables by ``_spread``.
        self._pending_latency: dict[tuple[Any, ...], list[int]] = {}
        # Finished turns: not a rollup, but written by the same writes in the
        # same transaction, and counted into the latency rollup (``add_turn``).
        self._turns: list[Turn] = []

    def _moment(self, at: datetime) -> None:
        if at != self._at:
            # The messages of a batch mostly share one timestamp: convert once.
            self._at = at
            self._minute = utc_minute(at)
            self._day = self._minute.date()
            self._recent = at >= self._recent_since

    def add(
        self,
        *,
        at: datetime,
        agent: str,
        model: str,
        channel: str,
        project: str = "",
        sign: int = 1,
        **counts: int,
    ) -> None:
        self.add_counts(
            at=at,
            agent=agent,
            model=model,
            channel=channel,
            project=project,
            sign=sign,
            counts=counts,
        )

    def add_counts(
        self,
        *,
        at: datetime,
        agent: str,
        model: str,
        channel: str,
        project: str = "",
        counts: Mapping[str, int],
        sign: int = 1,
    ) -> None:
        """``add`` with the counters as a mapping (names outside ``COUNTERS`` are
        ignored): the append's form, one call for the messages sharing a key."""
        self._moment(at)
        key = (self._minute, self._recent, agent or "", model or "", channel or "", project or "")
        bucket = self._pending.get(key)
        if bucket is None:
            bucket = self._pending[key] = dict.fromkeys(COUNTERS, 0)
        for name, value in counts.items():
            if value and name in bucket:
                bucket[name] += sign * value

    def add_latency(
        self,
        *,
        at: datetime,
        agent: str,
        model: str,
        kind: str,
        duration_ms: int,
        name: str = "",
        sign: int = 1,
    ) -> None:
        """Count one duration (``LatencyUsage.Kind``) on the UTC day of ``at``."""
        self._moment(at)
        key = (self._day, agent or "", model or "", kind, name or "", bucket_of(duration_ms))
        deltas = self._pending_latency.get(key)
        if deltas is None:
            deltas = self._pending_latency[key] = [0, 0]
        deltas[0] += sign
        if duration_ms > 0:
            deltas[1] += sign * duration_ms

    def _spread(self) -> None:
        """Add each pending key's deltas to the day, budget and minute tables,
        and each pending duration's to both latency tables."""
        projects: dict[str, str] = {}
        for (minute, recent, *dimensions, project), counts in self._pending.items():
            where = tuple(dimensions)
            self._daily.add(minute.date(), where, 1, counts)
            if project not in projects:
                projects[project] = project_key(project)
            budget_where = (*where, projects[project], project)
            quarter = minute.replace(minute=minute.minute - minute.minute % 15)
            hour = minute.replace(minute=0)
            day_start = hour.replace(hour=0)
            self._budget.add(quarter, (BudgetUsage.Span.QUARTER, *budget_where), 1, counts)
            self._budget.add(hour, (BudgetUsage.Span.HOUR, *budget_where), 1, counts)
            self._budget.add(day_start, (BudgetUsage.Span.DAY, *budget_where), 1, counts)
            if recent:
                self._minutes.add(minute, where, 1, counts)
        self._pending = {}
        for key, (count, sum_ms) in self._pending_latency.items():
            day, agent, model, kind, name, bucket = key
            moved = {"count": count, "sum_ms": sum_ms}
            self._latency.add(day, (agent, model, kind, name, bucket), 1, moved)
            fleet_model = model if kind in MODEL_KINDS else ""
            self._fleet_latency.add(day, (kind, fleet_model, name, bucket), 1, moved)
        self._pending_latency = {}

    def add_turn(
        self,
        *,
        session_id: int,
        turn_id: str,
        started_at: datetime,
        ended_at: datetime,
        duration_ms: int,
        outcome: str,
        agent: str,
        model: str,
    ) -> None:
        """A finished turn: recorded for its session and counted (kind ``turn``)
        on the UTC day it ended."""
        self._turns.append(
            Turn(
                session_id=session_id,
                turn_id=turn_id,
                started_at=started_at,
                ended_at=ended_at,
                duration_ms=duration_ms,
                outcome=outcome,
            )
        )
        self.add_latency(
            at=ended_at,
            agent=agent,
            model=model,
            kind=LatencyUsage.Kind.TURN,
            duration_ms=duration_ms,
        )

    def tables(self) -> tuple[_Buckets, ...]:
        """The deltas per rollup table, for a writer that stores them its own
        way (the benchmarks' bulk generator, ``bench/generate.py``): the
        pending sums spread into them first, as ``apply`` does."""
        self._spread()
        return (self._daily, self._budget, self._minutes, self._latency, self._fleet_latency)

    def apply(self) -> None:
        """Write the deltas (call inside the write's transaction)."""
        if self._turns:
            Turn.objects.bulk_create(self._turns)
            self._turns = []
        self._spread()
        self._daily.apply()
        self._budget.apply()
        self._minutes.apply()
        self._latency.apply()
        self._fleet_latency.apply()
