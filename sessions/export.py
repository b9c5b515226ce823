"""Export sessions as JSONL: one session per line with all its messages.

A line is the session as the JSON API shows it (DESIGN "Shapes": every
session field by name, totals flat beside them, money as a decimal string,
times RFC 3339 UTC) plus ``messages``: every message in ``seq`` order with
every field, including ``seq``, ``message_id``, ``usage`` (with its
``cost_source``), ``is_summary`` and ``compacted_at``. ``manage.py
import_sessions fleet FILE`` reads it back (``sessions.importers.fleet``).

Memory stays flat whatever the size: sessions are read with a streaming
iterator and each session's messages in chunks, written as they are read
(the line is built piece by piece, never as one object). A session's
messages are read up to the ``last_seq`` its row had when read, so a line's
messages match its totals even while agents keep appending.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TextIO

from sessions.models import TOKEN_FIELDS, Message, Session
from sessions.money import to_decimal

SESSION_TEXT_FIELDS = (
    "key",
    "name",
    "agent",
    "kind",
    "status",
    "state",
    "turn_id",
    "channel",
    "channel_ref",
    "room_id",
    "sender_id",
    "model",
    "goal_text",
    "project_root",
    "todo",
)
SESSION_TIME_FIELDS = ("turn_started_at", "created_at", "last_active_at", "ended_at")
SESSION_COUNT_FIELDS = (
    "turns",
    "message_count",
    "tool_call_count",
    "api_calls",
    "unpriced_calls",
    *TOKEN_FIELDS,
)
MESSAGE_TEXT_FIELDS = (
    "role",
    "name",
    "agent_name",
    "tool_call_id",
    "reasoning",
    "model",
    "provider_response_id",
    "status",
)
MESSAGE_CHUNK = 1000


def money(value: Decimal | None) -> str | None:
    # Nine places, and format() because str(Decimal) writes zero as "0E-9".
    return None if value is None else format(to_decimal(value), "f")


def timestamp(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def session_record(session: Session) -> dict[str, Any]:
    data: dict[str, Any] = {name: getattr(session, name) for name in SESSION_TEXT_FIELDS}
    data["metadata"] = dict(session.metadata or {})
    for name in SESSION_TIME_FIELDS:
        data[name] = timestamp(getattr(session, name))
    for name in SESSION_COUNT_FIELDS:
        data[name] = getattr(session, name)
    data["total_tokens"] = session.total_tokens
    data["cost_usd"] = money(session.cost_usd)
    data["last_seq"] = session.last_seq
    return data


def usage_record(message: Message) -> dict[str, Any] | None:
    if not message.cost_source:
        return None
    data: dict[str, Any] = {name: getattr(message, name) for name in TOKEN_FIELDS}
    data["cost_usd"] = money(message.cost_usd)
    data["cost_source"] = message.cost_source
    return data


def message_record(message: Message) -> dict[str, Any]:
    data: dict[str, Any] = {"seq": message.seq, "message_id": message.message_id}
    data["content"] = message.content
    for name in MESSAGE_TEXT_FIELDS:
        data[name] = getattr(message, name)
    data["tool_calls"] = list(message.tool_calls or [])
    data["usage"] = usage_record(message)
    data["is_summary"] = message.is_summary
    data["created_at"] = timestamp(message.created_at)
    data["compacted_at"] = timestamp(message.compacted_at)
    return data


@dataclass
class ExportSummary:
    sessions: int = 0
    messages: int = 0


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _messages(session: Session, chunk: int) -> Any:
    after = 0
    while True:
        batch = list(
            Message.objects.filter(
                session=session, seq__gt=after, seq__lte=session.last_seq
            ).order_by("seq")[:chunk]
        )
        yield from batch
        if len(batch) < chunk:
            return
        after = batch[-1].seq


def export_sessions(
    out: TextIO,
    *,
    since: datetime | None = None,
    agent: str | None = None,
    chunk: int = MESSAGE_CHUNK,
) -> ExportSummary:
    """Write the sessions active since ``since`` (of ``agent``) to ``out``, oldest first."""
    sessions = Session.objects.all()
    if since is not None:
        sessions = sessions.filter(last_active_at__gte=since)
    if agent is not None:
        sessions = sessions.filter(agent=agent)
    summary = ExportSummary()
    for session in sessions.order_by("id").iterator(chunk_size=200):
        head = _dumps(session_record(session))
        out.write(head[:-1] + ',"messages":[')
        for index, message in enumerate(_messages(session, chunk)):
            out.write(("," if index else "") + _dumps(message_record(message)))
            summary.messages += 1
        out.write("]}\n")
        summary.sessions += 1
    return summary
