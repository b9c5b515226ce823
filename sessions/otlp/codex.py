"""Codex CLI's OTLP log events → messages: the Codex rows of docs/OTLP.md.

Codex (``[otel]`` in ``~/.codex/config.toml``) names each event in the
``event.name`` attribute (``codex.sse_event``) and keys its session by
``conversation.id``. Token counts come with the streamed response's
``response.completed`` event (``input_token_count`` includes
``cached_token_count``, as OpenAI counts; ``reasoning_token_count`` is a part
of ``output_token_count``). Mapped: ``user_prompt``, ``sse_event`` of kind
``response.completed``, ``tool_result``, and ``api_request`` when it failed.
"""

from __future__ import annotations

from typing import Any

from sessions.otlp.records import LogIn, Source, digest, duration, failed, number, text, time

PREFIX = "codex."
AGENT = "codex"
REDACTED = "[REDACTED]"  # what Codex logs for a prompt unless log_user_prompt is on
USAGE = (
    ("input_token_count", "prompt_tokens"),
    ("output_token_count", "completion_tokens"),
    ("cached_token_count", "cache_read_tokens"),
    ("cache_write_token_count", "cache_creation_tokens"),
    ("reasoning_token_count", "reasoning_tokens"),
)


def _event(record: LogIn) -> str | None:
    for value in (record.attributes.get("event.name"), record.body):
        if isinstance(value, str) and value.startswith(PREFIX):
            return value[len(PREFIX) :]
    return None


def _failed_request(attributes: Any) -> bool:
    status = number(attributes.get("http.response.status_code"))
    return bool(attributes.get("error.message")) or (isinstance(status, int) and status >= 400)


def _messages(record: LogIn, event: str) -> list[dict[str, Any]] | None:
    attributes = record.attributes
    at = time(record)
    model = text(record, "model")
    if event == "user_prompt":
        prompt = attributes.get("prompt")
        content = None if prompt == REDACTED else prompt
        base = f"codex:{event}:{digest(record)}"
        return [{"message_id": base, "role": "user", "content": content, "created_at": at}]
    if event == "sse_event" and attributes.get("event.kind") == "response.completed":
        response_id = text(record, "response.id")
        base = f"codex:response:{response_id}" if response_id else f"codex:{digest(record)}"
        usage = {target: number(attributes[name]) for name, target in USAGE if name in attributes}
        cached = sum(
            value
            for name in ("cache_read_tokens", "cache_creation_tokens")
            if isinstance(value := usage.get(name, 0), int)
        )
        prompt = usage.get("prompt_tokens", 0)
        if isinstance(prompt, int) and cached > prompt:
            usage["convention"] = "anthropic"  # the same rule as for spans (docs/OTLP.md)
        return [
            {
                "message_id": base,
                "role": "assistant",
                "model": model,
                "provider_response_id": response_id,
                "usage": usage or None,
                "created_at": at,
            }
        ]
    if event == "tool_result":
        call_id = text(record, "call_id")
        base = f"codex:tool:{call_id}" if call_id else f"codex:tool:{digest(record)}"
        name = text(record, "tool_name")
        bad = failed(attributes.get("success", "true"))
        output = attributes.get("output")
        call = {"id": call_id or base, "name": name, "arguments": attributes.get("arguments")}
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
                "tool_call_id": call_id or base,
                "name": name,
                "content": output if isinstance(output, str) else None,
                "status": "error" if bad else "",
                "duration_ms": duration(attributes.get("duration_ms")),
                "created_at": at,
            },
        ]
    if event == "api_request" and _failed_request(attributes):
        base = f"codex:{event}:{digest(record)}"
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
    return None


SOURCE = Source(
    label="Codex",
    agent=AGENT,
    session_attribute="conversation.id",
    event=_event,
    messages=_messages,
)
