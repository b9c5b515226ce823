"""Daily usage rollups: deltas gathered in Python, applied in one upsert.

The upsert (``INSERT … ON CONFLICT … DO UPDATE SET x = x + excluded.x``) is
the same SQL on SQLite (≥ 3.24) and PostgreSQL, and adds to the counters
under the row lock, so concurrent writers never lose an increment.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from django.db import connection

from sessions.models import DailyUsage

COUNTERS = (
    "sessions_started",
    "messages",
    "turns",
    "tool_calls",
    "api_calls",
    "unpriced_calls",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "cache_read_tokens",
    "cache_creation_tokens",
    "cost_usd",  # nano-dollars here
)
Bucket = tuple[date, str, str, str]


def utc_day(moment: datetime) -> date:
    from datetime import UTC

    return moment.astimezone(UTC).date()


class Rollup:
    """Accumulates counter deltas per (day, agent, model, channel) bucket."""

    def __init__(self) -> None:
        self._deltas: dict[Bucket, dict[str, int]] = defaultdict(lambda: dict.fromkeys(COUNTERS, 0))

    def add(
        self, *, at: datetime, agent: str, model: str, channel: str, sign: int = 1, **counts: int
    ) -> None:
        bucket = self._deltas[(utc_day(at), agent or "", model or "", channel or "")]
        for name, value in counts.items():
            if value:
                bucket[name] += sign * value

    def __bool__(self) -> bool:
        return any(any(counts.values()) for counts in self._deltas.values())

    def rows(self) -> Iterable[tuple[Bucket, dict[str, int]]]:
        return ((bucket, counts) for bucket, counts in self._deltas.items() if any(counts.values()))

    def apply(self) -> None:
        """Write the deltas (call inside the write's transaction)."""
        # Sorted: concurrent writers lock the bucket rows in one order, so two
        # transactions touching the same buckets never deadlock on PostgreSQL.
        rows = sorted(self.rows(), key=lambda row: row[0])
        if not rows:
            return
        table = connection.ops.quote_name(DailyUsage._meta.db_table)
        columns = ("day", "agent", "model", "channel", *COUNTERS)
        quoted = [connection.ops.quote_name(c) for c in columns]
        placeholders = "(" + ", ".join(["%s"] * len(columns)) + ")"
        updates = ", ".join(
            f"{connection.ops.quote_name(c)} = {table}.{connection.ops.quote_name(c)} + "
            f"excluded.{connection.ops.quote_name(c)}"
            for c in COUNTERS
        )
        key = ", ".join(quoted[:4])
        sql = (
            f"INSERT INTO {table} ({', '.join(quoted)}) VALUES "  # noqa: S608 - names are ours
            f"{', '.join([placeholders] * len(rows))} "
            f"ON CONFLICT ({key}) DO UPDATE SET {updates}"
        )
        params: list[Any] = []
        for (day, agent, model, channel), counts in rows:
            params.extend(
                [
                    connection.ops.adapt_datefield_value(day),
                    agent,
                    model,
                    channel,
                    *(counts[c] for c in COUNTERS),
                ]
            )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
