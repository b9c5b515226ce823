"""zeph: one SQLite table ``agent_sessions`` of session totals, no messages.

Columns (DESIGN "Stores we import"): ``id`` (text), ``kind``, ``status``,
``channel``, ``model``, ``created_at`` and ``last_active_at`` (naive UTC text,
``YYYY-MM-DDTHH:MM:SS``), ``turns``, ``prompt_tokens``, ``completion_tokens``,
``reasoning_tokens``, ``cost_cents`` (float, cents), ``goal_text``.

How the store is meant, and how it is read:

* The row's totals are the session's spending history, reported as totals
  (``session_upsert``): turns, prompt/completion/reasoning tokens and cost.
  zeph records no cache tokens and no API-call count; those stay 0.
* ``cost_cents`` are cents as a float: ``cost_usd = Decimal(repr(cents)) / 100``,
  exact (12.34 cents is $0.1234, not a binary fraction).
* Reasoning is a part of completion in Fleet; a row whose reasoning exceeds
  its completion counted them apart, so the two are added.
* ``kind``, ``status`` and ``channel`` use Fleet's words (case does not
  matter; ``running`` and ``done`` read as active and completed). Any other
  value never drops the session: it is imported without that field (Fleet's
  default; a blank channel), the value kept in metadata ``source_kind``,
  ``source_status`` or ``source_channel``, and a warning names it. zeph keeps
  no end time: an ended session ended at its last activity.
* The session key is ``id``; the agent is ``zeph`` unless ``--agent`` says.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

from sessions.choices import ENDED_STATUSES, Channel, Kind, Status
from sessions.importers.base import (
    BadRecord,
    Problem,
    SourceSession,
    completion_with_reasoning,
    known_choice,
    open_sqlite,
    parse_time,
    select_sql,
    to_count,
    to_text,
    to_usd,
)

TABLE = "agent_sessions"
REQUIRED = ("id", "created_at", "last_active_at")
COLUMNS = (
    "id",
    "kind",
    "status",
    "channel",
    "model",
    "created_at",
    "last_active_at",
    "turns",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "cost_cents",
    "goal_text",
)
STATUS_ALIASES = {
    "running": "active",
    "done": "completed",
    "finished": "completed",
    "error": "failed",
    "canceled": "cancelled",
}


def read(path: Path) -> Iterator[SourceSession | Problem]:
    conn = open_sqlite(path, label="zeph", tables={TABLE: REQUIRED})
    with closing(conn):
        sql = select_sql(conn, TABLE, COLUMNS, "ORDER BY created_at, id")
        for row in conn.execute(sql):
            where = f"{path.name}: {TABLE} id={row['id']!r}"
            try:
                yield session_from_row(row, where)
            except BadRecord as exc:
                yield Problem(where, str(exc))


def session_from_row(row: Any, where: str) -> SourceSession:
    key = to_text(row["id"])
    if not key.strip():
        raise BadRecord("id is empty")
    last_active = parse_time(row["last_active_at"], "last_active_at")
    fields: dict[str, Any] = {
        "agent": "zeph",
        "created_at": parse_time(row["created_at"], "created_at"),
        "model": to_text(row["model"]),
        "goal_text": to_text(row["goal_text"]),
    }
    warnings: list[Problem] = []
    for name, choices in (("kind", Kind), ("channel", Channel), ("status", Status)):
        if not to_text(row[name]).strip():
            continue
        word = known_choice(
            row[name],
            name,
            choices,
            fields=fields,
            warnings=warnings,
            where=where,
            aliases=STATUS_ALIASES if name == "status" else None,
        )
        if word is not None:
            fields[name] = word
    if fields.get("status") in ENDED_STATUSES:
        fields["ended_at"] = last_active

    totals: dict[str, Any] = {}
    for name in ("turns", "prompt_tokens", "completion_tokens", "reasoning_tokens"):
        value = to_count(row[name], name)
        if value is not None:
            totals[name] = value
    if "completion_tokens" in totals or "reasoning_tokens" in totals:
        totals["completion_tokens"] = completion_with_reasoning(
            totals.get("completion_tokens", 0), totals.get("reasoning_tokens", 0)
        )
    cost = to_usd(row["cost_cents"], "cost_cents", scale=100)
    if cost is not None:
        totals["cost_usd"] = cost
    return SourceSession(
        key=key,
        where=where,
        last_active_at=last_active,
        fields=fields,
        totals=totals,
        warnings=warnings,
    )
