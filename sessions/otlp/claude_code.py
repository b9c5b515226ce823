"""Claude Code's OTLP log events → messages: the Claude Code rows of docs/OTLP.md.

Claude Code (``CLAUDE_CODE_ENABLE_TELEMETRY=1``, ``OTEL_LOGS_EXPORTER=otlp``)
sends one log record per event: the body is the event's name
(``claude_code.api_request``), the attributes carry ``event.name``
(``api_request``), ``session.id``, ``event.sequence`` (its order in the
session), ``prompt.id`` and the event's own fields, numbers often as strings.
Mapped: ``user_prompt``, ``api_request``, ``api_error``, ``tool_result``.
"""

from __future__ import annotations

from typing import Any

from sessions.otlp.records import LogIn, Source, digest, duration, failed, number, text, time

PREFIX = "claude_code."
AGENT = "claude-code"


def _event(record: LogIn) -> str | None:
    if isinstance(record.body, str) and record.body.startswith(PREFIX):
        return record.body[len(PREFIX) :]
    name = record.attributes.get("event.name")
    if isinstance(name, str) and record.resource.get("service.name") == AGENT:
        return name.removeprefix(PREFIX)
    return None


def _identity(record: LogIn, event: str) -> str:
    """Its place in the session (``event.sequence``) when sent, else a digest of it."""
    sequence = number(record.attributes.get("event.sequence"))
    if isinstance(sequence, int) and not isinstance(sequence, bool):
        return f"cc:{event}:{sequence}"
    return f"cc:{event}:{digest(record)}"


def _messages(record: LogIn, event: str) -> list[dict[str, Any]] | None:
    attributes = record.attributes
    base = _identity(record, event)
    at = time(record)
    model = text(record, "model")
    if event == "user_prompt":
        # The prompt's text only when Claude Code was told to log it
        # (OTEL_LOG_USER_PROMPTS=1); otherwise the turn starts without content.
        content = attributes.get("prompt")
        return [{"message_id": base, "role": "user", "content": content, "created_at": at}]
    if event == "api_request":
        usage: dict[str, Any] = {"convention": "anthropic"}  # input excludes the cache
        for name in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens"):
            if name in attributes:
                usage[name] = number(attributes[name])
        if attributes.get("cost_usd") is not None:
            usage["cost_usd"] = attributes["cost_usd"]
        return [
            {
                "message_id": base,
                "role": "assistant",
                "model": model,
                "usage": usage,
                "duration_ms": duration(attributes.get("duration_ms")),
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
                "duration_ms": duration(attributes.get("duration_ms")),
                "created_at": at,
            }
        ]
    if event == "tool_result":
        # Claude Code names no call id: the record stands for the call and its result.
        name = text(record, "tool_name")
        bad = failed(attributes.get("success", "true"))
        call = {"id": base, "name": name, "arguments": attributes.get("tool_parameters")}
        return [
            {
                "message_id": f"{base}:call",
                "role": "assistant",
                "tool_calls": [call],
                "created_at": at,
            },
            {
                "message_id": f"{base}:result",
                "role": "tool",
                "tool_call_id": base,
                "name": name,
                "content": attributes.get("error") if bad else None,
                "status": "error" if bad else "",
                "duration_ms": duration(attributes.get("duration_ms")),
                "created_at": at,
            },
        ]
    return None


SOURCE = Source(
    label="Claude Code",
    agent=AGENT,
    session_attribute="session.id",
    event=_event,
    messages=_messages,
)
