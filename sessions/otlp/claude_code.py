"""Claude Code's OTLP log events → messages: the log rows of docs/OTLP.md.

Claude Code (``CLAUDE_CODE_ENABLE_TELEMETRY=1``, ``OTEL_LOGS_EXPORTER=otlp``)
sends one log record per event: the body is the event's name
(``claude_code.api_request``), the attributes carry ``event.name``
(``api_request``), ``session.id``, ``event.sequence`` (its order in the
session), ``prompt.id`` and the event's own fields, numbers often as strings.
Mapped: ``user_prompt``, ``api_request``, ``api_error``, ``tool_result``;
every other record (Claude Code's other events, Codex's, any other log) is
rejected as not mapped, never pretended stored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sessions.otlp.store import IngestResult, Mapped, clean, store
from sessions.scopes import FULL, KeyScope

PREFIX = "claude_code."
AGENT = "claude-code"
MAPPED_EVENTS = frozenset({"user_prompt", "api_request", "api_error", "tool_result"})


@dataclass(frozen=True, slots=True)
class LogIn:
    """One decoded log record: times in Unix nanoseconds, attributes as Python values."""

    time_ns: int = 0
    observed_ns: int = 0
    body: Any = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    resource: Mapping[str, Any] = field(default_factory=dict)


def _event(record: LogIn) -> str | None:
    """The Claude Code event's short name (``api_request``), or None for another log."""
    if isinstance(record.body, str) and record.body.startswith(PREFIX):
        return record.body[len(PREFIX) :]
    name = record.attributes.get("event.name")
    if isinstance(name, str) and record.resource.get("service.name") == AGENT:
        return name.removeprefix(PREFIX)
    return None


def _text(record: LogIn, name: str) -> str:
    for source in (record.attributes, record.resource):
        value = source.get(name)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
            return str(value)
    return ""


def _number(value: Any) -> Any:
    """Claude Code sends counts as strings: ``"1200"`` → 1200 (anything else as it came)."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return value


def _time(record: LogIn) -> datetime | None:
    for nanoseconds in (record.time_ns, record.observed_ns):
        if nanoseconds > 0:
            try:
                return datetime.fromtimestamp(nanoseconds / 1e9, tz=UTC)
            except (OverflowError, OSError, ValueError):
                return None
    return None


def _identity(record: LogIn, event: str) -> str:
    """A record's message id: its place in the session when sent, else a digest of it."""
    sequence = _number(record.attributes.get("event.sequence"))
    if isinstance(sequence, int) and not isinstance(sequence, bool):
        return f"cc:{event}:{sequence}"
    digest = hashlib.sha256(
        json.dumps(
            [record.time_ns, record.body, sorted(record.attributes.items(), key=str)],
            default=str,
        ).encode("utf-8", "surrogatepass")
    ).hexdigest()[:32]
    return f"cc:{event}:{digest}"


def _messages(record: LogIn, event: str, base: str) -> list[dict[str, Any]]:
    attributes = record.attributes
    at = _time(record)
    model = _text(record, "model")
    if event == "user_prompt":
        # The prompt's text only when Claude Code was told to log it
        # (OTEL_LOG_USER_PROMPTS=1); otherwise the turn starts without content.
        return [
            {
                "message_id": base,
                "role": "user",
                "content": attributes.get("prompt"),
                "created_at": at,
            }
        ]
    if event == "api_request":
        usage: dict[str, Any] = {"convention": "anthropic"}  # input excludes the cache
        for source, target in (
            ("input_tokens", "input_tokens"),
            ("output_tokens", "output_tokens"),
            ("cache_read_tokens", "cache_read_tokens"),
            ("cache_creation_tokens", "cache_creation_tokens"),
        ):
            if source in attributes:
                usage[target] = _number(attributes[source])
        if attributes.get("cost_usd") is not None:
            usage["cost_usd"] = attributes["cost_usd"]
        return [
            {
                "message_id": base,
                "role": "assistant",
                "model": model,
                "usage": usage,
                "created_at": at,
            }
        ]
    if event == "api_error":
        return [
            {
                "message_id": base,
                "role": "assistant",
                "model": model,
                "status": "error",
                "created_at": at,
            }
        ]
    # tool_result: Claude Code names no call id; the record stands for the call and its result.
    name = _text(record, "tool_name")
    failed = str(attributes.get("success", "true")).lower() == "false"
    return [
        {
            "message_id": f"{base}:call",
            "role": "assistant",
            "tool_calls": [
                {"id": base, "name": name, "arguments": attributes.get("tool_parameters")}
            ],
            "created_at": at,
        },
        {
            "message_id": f"{base}:result",
            "role": "tool",
            "tool_call_id": base,
            "name": name,
            "content": attributes.get("error") if failed else None,
            "status": "error" if failed else "",
            "created_at": at,
        },
    ]


def _map(records: Sequence[LogIn], result: IngestResult) -> list[Mapped]:
    mapped = []
    for record in records:
        event = _event(record)
        if event is None:
            result.reject("not mapped: not a Claude Code event (other logs are not mapped yet)")
            continue
        if event not in MAPPED_EVENTS:
            result.reject(f"not mapped: Claude Code event {event[:50]!r}")
            continue
        key = _text(record, "session.id")
        if not key:
            result.reject("refused: a Claude Code event without session.id")
            continue
        base = _identity(record, event)
        messages = clean(_messages(record, event, base), f"log record {base}", result)
        if messages is None:
            continue
        mapped.append(
            Mapped(
                key=key,
                agent=_text(record, "service.name") or AGENT,
                model=next((m.model for m in messages if m.model), ""),
                messages=messages,
                order=(record.time_ns or record.observed_ns, base),
            )
        )
    return mapped


def logs_ingest(
    *, records: Sequence[LogIn], scope: KeyScope = FULL, now: datetime | None = None
) -> IngestResult:
    """Store an export's Claude Code events as sessions and messages (the package's rules)."""
    result = IngestResult(noun="log record")
    store(_map(records, result), result, scope=scope, now=now)
    return result
