"""The older GenAI events → the turn's content: the ``gen_ai.*.message`` rows of docs/OTLP.md.

Before ``gen_ai.input.messages`` / ``gen_ai.output.messages``, the semantic
conventions carried a model call's content as events, one per message:
``gen_ai.system.message``, ``gen_ai.user.message``,
``gen_ai.assistant.message``, ``gen_ai.tool.message`` (the request's
messages, the conversation so far) and ``gen_ai.choice`` (one per answer).
Instrumentations emit them either as log records in the call span's context
(the event's name in the record's ``event_name`` or its ``event.name``
attribute; the body an object: ``{"content": …}``, a tool message's ``id``,
an assistant's ``tool_calls``; a choice's ``{"index", "finish_reason",
"message": {…}}``), or as events of the span itself, whose fields are
attributes (Azure's SDKs put the body as JSON in ``gen_ai.event.content``).

Both forms are read here into the message lists of the newer attributes
(``role`` and ``parts``), so one rule maps them (``spans``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

EVENT_ROLES = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}
CHOICE = "gen_ai.choice"
GENAI_EVENTS = frozenset({*EVENT_ROLES, CHOICE})
CONTENT_ATTRIBUTE = "gen_ai.event.content"


@dataclass(frozen=True, slots=True)
class EventIn:
    """One span event (or log record) read as a GenAI event: its name, time, body."""

    name: str
    time_ns: int = 0
    attributes: Mapping[str, Any] = field(default_factory=dict)
    body: Any = None


def _loads(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            return value
    return value


def body(event: EventIn) -> dict[str, Any]:
    """The event's body as an object: the record's body, else the span event's
    attributes with ``gen_ai.event.content`` (JSON) merged in."""
    found = _loads(event.body)
    if isinstance(found, Mapping):
        return dict(found)
    merged = {k: v for k, v in event.attributes.items() if k != CONTENT_ATTRIBUTE}
    content = _loads(event.attributes.get(CONTENT_ATTRIBUTE))
    if isinstance(content, Mapping):
        merged.update(content)
    elif content is not None:
        merged["content"] = content
    return merged


def _text(content: Any) -> str | None:
    """A message's content as text: a string; the texts of a list of parts
    (``{"type": "text", "text"|"content": …}``); anything else as JSON."""
    content = _loads(content) if isinstance(content, str) and content[:1] in "[{" else content
    if content is None or content == "":
        return None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            str(part.get("text", part.get("content")))
            for part in content
            if isinstance(part, Mapping) and part.get("text", part.get("content")) is not None
        ]
        if texts:
            return "\n".join(texts)
    if isinstance(content, Mapping):
        # Azure Agents: {"text": {"value": …}}.
        inner = content.get("text")
        if isinstance(inner, Mapping) and isinstance(inner.get("value"), str):
            return str(inner["value"])
    return json.dumps(content, default=str)


def _tool_call_parts(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    parts = []
    calls = _loads(message.get("tool_calls"))
    for call in calls if isinstance(calls, list) else []:
        if not isinstance(call, Mapping):
            continue
        function = call.get("function")
        if not isinstance(function, Mapping):
            function = {}
        parts.append(
            {
                "type": "tool_call",
                "id": call.get("id"),
                "name": function.get("name", call.get("name")),
                "arguments": function.get("arguments", call.get("arguments")),
            }
        )
    return parts


def messages(events: Iterable[EventIn]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The call's input and output messages, in the shape of ``gen_ai.input.messages``
    (``role``, ``content``, ``parts``; a tool message's ``id``), in the events' order."""
    inputs: list[dict[str, Any]] = []
    outputs: list[tuple[int, int, dict[str, Any]]] = []
    for position, event in enumerate(events):
        found = body(event)
        if event.name == CHOICE:
            message = found.get("message")
            message = dict(message) if isinstance(message, Mapping) else {}
            index = found.get("index")
            order = index if isinstance(index, int) and not isinstance(index, bool) else 0
            outputs.append(
                (
                    order,
                    position,
                    {
                        "role": "assistant",
                        "content": _text(message.get("content")),
                        "parts": _tool_call_parts(message),
                    },
                )
            )
        elif event.name in EVENT_ROLES:
            role = EVENT_ROLES[event.name]
            inputs.append(
                {
                    "role": role,
                    "content": _text(found.get("content")),
                    "parts": _tool_call_parts(found) if role == "assistant" else [],
                    "id": found.get("id") if role == "tool" else None,
                }
            )
    return inputs, [message for _, _, message in sorted(outputs, key=lambda o: o[:2])]
