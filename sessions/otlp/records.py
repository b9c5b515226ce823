"""Log records as the OTLP receiver hands them over, and what reading one needs.

A coding agent's telemetry events arrive as OTLP log records; each agent whose
events Fleet maps describes them with a ``Source`` (``claude_code``, ``codex``).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sessions.bounds import MAX_DURATION_MS


@dataclass(frozen=True, slots=True)
class LogIn:
    """One decoded log record: times in Unix nanoseconds, attributes as Python values."""

    time_ns: int = 0
    observed_ns: int = 0
    body: Any = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    resource: Mapping[str, Any] = field(default_factory=dict)
    # The span the record was emitted in (hex; empty when none) and its
    # ``event_name`` field (empty when not sent; some send ``event.name``).
    trace_id: str = ""
    span_id: str = ""
    event_name: str = ""


@dataclass(frozen=True)
class Source:
    """One agent's events: how to tell them, key them, and turn them into messages."""

    label: str  # in refusals: "Claude Code"
    agent: str  # the session's agent when the resource names none
    session_attribute: str
    event: Callable[[LogIn], str | None]  # the event's short name, None: not this agent's
    messages: Callable[[LogIn, str], list[dict[str, Any]] | None]  # None: not mapped


def text(record: LogIn, name: str) -> str:
    """A string (or integer) attribute of the record, else of its resource; else empty."""
    for source in (record.attributes, record.resource):
        value = source.get(name)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
            return str(value)
    return ""


def number(value: Any) -> Any:
    """Agents send counts as strings too: ``"1200"`` → 1200 (anything else as it came)."""
    # ASCII digits only: "²" and "١٢" are digits to str.isdigit, not to int().
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value)
    return value


def duration(value: Any) -> int | None:
    """A duration in milliseconds as agents send it (``1234``, ``"1234"``,
    ``1234.6``, ``"1234.6"``), rounded to a whole millisecond; ``None`` when
    absent or not a duration Fleet stores (negative, past ``MAX_DURATION_MS``,
    not a number): a telemetry event is stored without its bad timing rather
    than refused."""
    number = _finite(value)
    if number is not None:
        milliseconds = round(number)
        if 0 <= milliseconds <= MAX_DURATION_MS:
            return milliseconds
    return None


def seconds_duration(value: Any) -> int | None:
    """A duration in seconds (the GenAI conventions' unit, ``0.45``, ``"0.45"``)
    as whole milliseconds; ``None`` as ``duration`` gives it."""
    number = _finite(value)
    return None if number is None else duration(number * 1000)


def _finite(value: Any) -> float | None:
    """A finite number as agents send one (``12``, ``"12.5"``); ``None`` for
    anything else (a bool, text that is no number, NaN, infinity)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def span_duration(start_ns: int, end_ns: int) -> int | None:
    """A span's duration in whole milliseconds; ``None`` without both times
    or when they make no duration Fleet stores (end before start)."""
    if start_ns <= 0 or end_ns <= 0 or end_ns < start_ns:
        return None
    return duration((end_ns - start_ns) // 1_000_000)


def time(record: LogIn) -> datetime | None:
    """When the event happened: the record's time, else when it was observed."""
    for nanoseconds in (record.time_ns, record.observed_ns):
        if nanoseconds > 0:
            try:
                return datetime.fromtimestamp(nanoseconds / 1e9, tz=UTC)
            except (OverflowError, OSError, ValueError):
                return None
    return None


def digest(record: LogIn) -> str:
    """The same record always gives the same 32 hex characters (an exporter's retry)."""
    return hashlib.sha256(
        json.dumps(
            [record.time_ns, record.body, sorted(record.attributes.items(), key=str)],
            default=str,
        ).encode("utf-8", "surrogatepass")
    ).hexdigest()[:32]


def failed(value: Any) -> bool:
    """``success`` as agents send it: false, "false" (any case)."""
    return str(value).strip().lower() == "false"
