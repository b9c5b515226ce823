"""Sessions and messages as JSON (DESIGN "Shapes"): the API answers and export lines share them.

Money is a decimal string (``"0.012345000"``, exact, never a float);
timestamps are RFC 3339 in UTC with microseconds (``2026-11-21T10:00:00.123456Z``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.db import models

from sessions.choices import TOKEN_FIELDS
from sessions.fields import MESSAGE_JSON_KEYS, message_field
from sessions.models import Message, Session, Turn
from sessions.money import MoneyField, api_usd

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


def timestamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def session_json(session: Session) -> dict[str, Any]:
    """The whole session: the single-session view, write answers and export lines."""
    data = session_summary_json(session)
    data["metadata"] = dict(session.metadata or {})
    data["todo"] = session.todo
    return data


def session_summary_json(session: Session) -> dict[str, Any]:
    """A session in a list or search result: without the large fields (metadata, todo).

    It never reads them, so rows loaded with ``without_large_fields()`` cost
    no query per row.
    """
    data: dict[str, Any] = {name: getattr(session, name) for name in SESSION_TEXT_FIELDS}
    for name in SESSION_TIME_FIELDS:
        data[name] = timestamp(getattr(session, name))
    for name in SESSION_COUNT_FIELDS:
        data[name] = getattr(session, name)
    data["total_tokens"] = session.total_tokens
    data["cost_usd"] = api_usd(session.cost_usd)
    data["last_seq"] = session.last_seq
    return data


def usage_json(message: Message) -> dict[str, Any] | None:
    if not message.cost_source:
        return None
    data: dict[str, Any] = {name: getattr(message, name) for name in TOKEN_FIELDS}
    data["total_tokens"] = message.total_tokens
    data["cost_usd"] = api_usd(message.cost_usd)
    data["cost_source"] = message.cost_source
    return data


def _as_json(field: models.Field) -> Callable[[Any], Any] | None:
    """How a message field's value is shown as JSON (``None``: as it is)."""
    if isinstance(field, models.DateTimeField):
        return timestamp
    if isinstance(field, models.JSONField) and field.default is list:
        # A copy; rows imported or edited before validation may hold null.
        return lambda value: list(value or [])
    if isinstance(field, models.DecimalField | MoneyField):
        return lambda value: None if value is None else api_usd(value)
    return None


# Each key of a message's JSON (DESIGN "Shapes"), from the model's fields.
_MESSAGE_JSON = tuple(
    (name, None if name == "usage" else _as_json(message_field(name))) for name in MESSAGE_JSON_KEYS
)


def message_json(message: Message) -> dict[str, Any]:
    """A message as JSON: every field by name, usage gathered under ``usage``."""
    data: dict[str, Any] = {}
    for name, shown in _MESSAGE_JSON:
        if name == "usage":
            data[name] = usage_json(message)
        else:
            value = getattr(message, name)
            data[name] = value if shown is None else shown(value)
    return data


# The daily rollup's counts by the names the API's usage periods give them (DESIGN
# "Daily usage rollup"; ``GET /fleet``). The rollup's columns are named like the
# session totals they add up; every other counter keeps its name.
PERIOD_JSON_NAMES = {"message_count": "messages", "tool_call_count": "tool_calls"}


def turn_json(turn: Turn) -> dict[str, Any]:
    """A finished turn, as an export carries it (``sessions.inputs.clean_turn`` reads it)."""
    return {
        "turn_id": turn.turn_id,
        "started_at": timestamp(turn.started_at),
        "ended_at": timestamp(turn.ended_at),
        "duration_ms": turn.duration_ms,
        "outcome": turn.outcome,
    }


def fleet_json(totals: Mapping[str, Any]) -> dict[str, Any]:
    """``fleet_stats.fleet_totals`` as ``GET /fleet`` answers it."""
    data = dict(totals)
    data["usage"] = {
        period: {PERIOD_JSON_NAMES.get(name, name): value for name, value in values.items()}
        for period, values in totals["usage"].items()
    }
    return jsonable(data)


def totals_json(values: Mapping[str, Any]) -> dict[str, Any]:
    """A totals mapping (selectors' usage, fleet periods) with money as strings."""
    data = dict(values)
    if all(name in data for name in ("prompt_tokens", "completion_tokens")):
        data["total_tokens"] = data["prompt_tokens"] + data["completion_tokens"]
    if "cost_usd" in data:
        data["cost_usd"] = api_usd(data["cost_usd"])
    return data


def jsonable(value: Any) -> Any:
    """Decimals and datetimes inside nested dicts and lists, as the API writes them."""
    if isinstance(value, Mapping):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, Decimal):
        return api_usd(value)
    if isinstance(value, datetime):
        return timestamp(value)
    return value
