"""The append hot path: new messages go in with one ``executemany``.

``QuerySet.bulk_create`` spends most of a 1 000-message append preparing
values field by field (and SQLite's 999-parameter cap splits it into ~40
statements). Messages built by the services are already validated, so here
each row becomes a plain tuple with the database adapters Django itself uses
(JSON, datetimes) and goes in through one ``cursor.executemany``. Triggers (the
SQLite FTS index) and constraints apply exactly as for ORM inserts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import connection

from sessions.models import Message
from sessions.money import to_nanos
from sessions.sql import column_name

_COLUMNS = (
    "session_id",
    "seq",
    "message_id",
    "role",
    "content",
    "name",
    "agent_name",
    "tool_calls",
    "tool_call_id",
    "reasoning",
    "model",
    "provider_response_id",
    "status",
    "is_summary",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "cache_read_tokens",
    "cache_creation_tokens",
    "cost_usd",
    "cost_source",
    "created_at",
    "compacted_at",
)


@dataclass(slots=True)
class NewMessage:
    """A message about to be inserted: the attributes of ``Message`` without the
    cost of building a model instance (~35 µs each) on the append path."""

    session_id: int
    seq: int
    role: str
    created_at: datetime
    message_id: str | None = None
    content: str | None = None
    name: str = ""
    agent_name: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    tool_call_id: str = ""
    reasoning: str = ""
    model: str = ""
    provider_response_id: str = ""
    status: str = ""
    is_summary: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    cost_usd: Decimal | None = None
    cost_source: str = ""
    compacted_at: datetime | None = None


def _sql() -> str:
    meta = Message._meta
    quote = connection.ops.quote_name
    columns = [quote(column_name(Message, name)) for name in _COLUMNS if name != "session_id"]
    columns.insert(0, quote(meta.get_field("session").column))
    placeholders = ", ".join(["%s"] * len(_COLUMNS))
    return f"INSERT INTO {quote(meta.db_table)} ({', '.join(columns)}) VALUES ({placeholders})"  # noqa: S608


def insert_messages(messages: Sequence[NewMessage]) -> None:
    """Insert new messages (validated by the services) in one statement."""
    if not messages:
        return
    ops = connection.ops
    adapt_json = ops.adapt_json_value
    adapt_dt = ops.adapt_datetimefield_value
    rows = [
        (
            m.session_id,
            m.seq,
            m.message_id,
            m.role,
            m.content,
            m.name,
            m.agent_name,
            adapt_json(m.tool_calls if m.tool_calls is not None else [], None),
            m.tool_call_id,
            m.reasoning,
            m.model,
            m.provider_response_id,
            m.status,
            m.is_summary,
            m.prompt_tokens,
            m.completion_tokens,
            m.reasoning_tokens,
            m.cache_read_tokens,
            m.cache_creation_tokens,
            None if m.cost_usd is None else to_nanos(m.cost_usd),
            m.cost_source,
            adapt_dt(m.created_at),
            adapt_dt(m.compacted_at),
        )
        for m in messages
    ]
    with connection.cursor() as cursor:
        cursor.executemany(_sql(), rows)
