"""GenAI spans (the semantic conventions, OpenInference, OpenLLMetry) → messages: docs/OTLP.md."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sessions import services
from sessions.otlp import events as genai_events
from sessions.otlp.events import EventIn
from sessions.otlp.records import seconds_duration, span_duration
from sessions.otlp.store import IngestResult, Mapped, store
from sessions.scopes import FULL, KeyScope
from sessions.services import SpanLink, Wait

MODEL_OPERATIONS = frozenset({"chat", "text_completion", "generate_content"})
TOOL_OPERATIONS = frozenset({"execute_tool"})
AGENT_OPERATIONS = frozenset({"invoke_agent", "create_agent"})
SESSION_KEY_ATTRIBUTES = ("gen_ai.conversation.id", "session.id")
NO_GENAI = "ignored: no GenAI attribute (gen_ai.*, llm.*, openinference.span.kind)"
# (attribute, Fleet usage field), first present wins per field: the current
# GenAI names, their deprecated predecessors, then OpenInference's.
USAGE_ATTRIBUTES = (
    ("gen_ai.usage.input_tokens", "prompt_tokens"),
    ("gen_ai.usage.prompt_tokens", "prompt_tokens"),
    ("llm.token_count.prompt", "prompt_tokens"),
    ("gen_ai.usage.output_tokens", "completion_tokens"),
    ("gen_ai.usage.completion_tokens", "completion_tokens"),
    ("llm.token_count.completion", "completion_tokens"),
    ("gen_ai.usage.cache_read.input_tokens", "cache_read_tokens"),
    ("llm.token_count.prompt_details.cache_read", "cache_read_tokens"),
    ("gen_ai.usage.cache_creation.input_tokens", "cache_creation_tokens"),
    ("llm.token_count.prompt_details.cache_write", "cache_creation_tokens"),
    ("gen_ai.usage.reasoning.output_tokens", "reasoning_tokens"),
    ("llm.token_count.completion_details.reasoning", "reasoning_tokens"),
)


@dataclass(frozen=True, slots=True)
class SpanIn:
    """One decoded span: ids in lowercase hex, times in Unix nanoseconds."""

    trace_id: str
    span_id: str
    name: str = ""
    parent_span_id: str = ""
    start_ns: int = 0
    end_ns: int = 0
    error: bool = False
    status_message: str = ""
    attributes: Mapping[str, Any] = field(default_factory=dict)
    resource: Mapping[str, Any] = field(default_factory=dict)
    events: tuple[EventIn, ...] = ()  # its GenAI events (``gen_ai.*.message``, ``gen_ai.choice``)


def _kind(attributes: Mapping[str, Any]) -> str | None:
    """``model``, ``tool``, ``agent``, another GenAI operation's name, or None (not GenAI)."""
    operation = attributes.get("gen_ai.operation.name")
    openinference = attributes.get("openinference.span.kind")
    # OpenLLMetry (Traceloop) names no operation; its request type says it.
    request_type = attributes.get("llm.request.type")
    if (
        operation in MODEL_OPERATIONS
        or openinference == "LLM"
        or (operation is None and request_type in ("chat", "completion"))
    ):
        return "model"
    if operation in TOOL_OPERATIONS or openinference == "TOOL":
        return "tool"
    if operation in AGENT_OPERATIONS or openinference == "AGENT":
        return "agent"
    if isinstance(operation, str) and operation:
        return operation
    if isinstance(openinference, str) and openinference:
        return openinference
    if any(name.startswith(("gen_ai.", "llm.")) for name in attributes):
        return "unknown"
    return None


def _text_attribute(span: SpanIn, names: Iterable[str], *, resource: bool = True) -> str:
    for name in names:
        for source in (span.attributes, span.resource) if resource else (span.attributes,):
            value = source.get(name)
            if isinstance(value, str) and value.strip():
                return value
            if isinstance(value, int) and not isinstance(value, bool):
                return str(value)
    return ""


def _time(nanoseconds: int) -> datetime | None:
    if nanoseconds <= 0:
        return None
    try:
        return datetime.fromtimestamp(nanoseconds / 1e9, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _json(value: Any) -> Any:
    """An attribute that holds JSON (GenAI's message lists are JSON strings)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            return None
    return value


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _parts_text(message: Mapping[str, Any], kind: str) -> str | None:
    texts = []
    content = message.get("content")
    if kind == "text" and isinstance(content, str):
        texts.append(content)
    for part in _list(message.get("parts")):
        if isinstance(part, Mapping) and part.get("type") == kind:
            value = part.get("content")
            if isinstance(value, str):
                texts.append(value)
    return "\n".join(texts) if texts else None


def _tool_calls(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    calls = []
    for part in _list(message.get("parts")):
        if isinstance(part, Mapping) and part.get("type") == "tool_call":
            calls.append(
                {"id": part.get("id"), "name": part.get("name"), "arguments": part.get("arguments")}
            )
    return calls


# Flattened message lists: (attribute prefix, prefix of a message's fields, the
# names of a tool call's id, name and arguments). OpenInference:
# ``llm.output_messages.0.message.tool_calls.0.tool_call.function.name``;
# OpenLLMetry (Traceloop): ``gen_ai.completion.0.tool_calls.0.name``.
OPENINFERENCE = (
    "message.",
    ("tool_call.id", "tool_call.function.name", "tool_call.function.arguments"),
)
OPENLLMETRY = ("", ("id", "name", "arguments"))


def _indexed(
    attributes: Mapping[str, Any], prefix: str, shape: tuple[str, tuple[str, str, str]]
) -> list[dict[str, Any]]:
    """A flattened list (``<prefix>0.<fields>``) as GenAI's message objects."""
    inner, (id_key, name_key, arguments_key) = shape
    items: dict[int, dict[str, Any]] = defaultdict(dict)
    for name, value in attributes.items():
        if not name.startswith(prefix):
            continue
        number, _, rest = name[len(prefix) :].partition(".")
        if number.isdigit() and rest.startswith(inner):
            items[int(number)][rest[len(inner) :]] = value
    messages = []
    for _, flat in sorted(items.items()):
        calls: dict[int, dict[str, Any]] = defaultdict(dict)
        for name, value in flat.items():
            if name.startswith("tool_calls."):
                call, _, rest = name[len("tool_calls.") :].partition(".")
                if call.isdigit():
                    calls[int(call)][rest] = value
        parts: list[dict[str, Any]] = [
            {
                "type": "tool_call",
                "id": call.get(id_key),
                "name": call.get(name_key),
                "arguments": call.get(arguments_key),
            }
            for _, call in sorted(calls.items())
        ]
        messages.append({"role": flat.get("role"), "content": flat.get("content"), "parts": parts})
    return messages


def _input_messages(span: SpanIn) -> list[Any]:
    attributes = span.attributes
    value = _json(attributes.get("gen_ai.input.messages"))
    if isinstance(value, list):
        return value
    return (
        _indexed(attributes, "llm.input_messages.", OPENINFERENCE)
        or _indexed(attributes, "gen_ai.prompt.", OPENLLMETRY)
        or genai_events.messages(span.events)[0]
    )


def _output_messages(span: SpanIn) -> list[Any]:
    attributes = span.attributes
    value = _json(attributes.get("gen_ai.output.messages"))
    if isinstance(value, list):
        return value
    return (
        _indexed(attributes, "llm.output_messages.", OPENINFERENCE)
        or _indexed(attributes, "gen_ai.completion.", OPENLLMETRY)
        or genai_events.messages(span.events)[1]
    )


def _usage(attributes: Mapping[str, Any]) -> dict[str, Any] | None:
    usage: dict[str, Any] = {}
    for name, target in USAGE_ATTRIBUTES:
        if target not in usage and name in attributes:
            usage[target] = attributes[name]
    if not usage:
        return None
    cached = [usage.get("cache_read_tokens"), usage.get("cache_creation_tokens")]
    prompt = usage.get("prompt_tokens", 0)
    if all(isinstance(value, int) for value in (*[c or 0 for c in cached], prompt)) and (
        sum(c or 0 for c in cached) > prompt
    ):
        # Input counted without its cache tokens (Anthropic's own usage, as
        # some instrumentations pass it on): the only shape that tells itself apart.
        usage["convention"] = "anthropic"
    return usage


def _new_inputs(inputs: Sequence[Any], base: str, at: datetime | None) -> list[dict[str, Any]]:
    """The input repeats the conversation so far: only its trailing user
    messages are this turn's new prompt (and, from the older events, the
    tool results among them: a ``gen_ai.tool.message`` names its call)."""
    new: list[dict[str, Any]] = []
    for message in reversed(inputs):
        if not isinstance(message, Mapping):
            break
        role = message.get("role")
        if role == "tool" and message.get("id") not in (None, ""):
            new.insert(
                0,
                {
                    "role": "tool",
                    "tool_call_id": str(message["id"]),
                    "content": _parts_text(message, "text"),
                },
            )
            continue
        if role != "user":
            break
        text = _parts_text(message, "text")
        if text is not None:
            new.insert(0, {"role": "user", "content": text})
    for index, message in enumerate(new):
        message.update(message_id=f"{base}:in{index}", created_at=at)
    return new


def _answer(outputs: Sequence[Any]) -> dict[str, Any]:
    """The assistant message of a call's output messages (its content fields)."""
    found = [m for m in outputs if isinstance(m, Mapping)]
    texts = [t for m in found if (t := _parts_text(m, "text")) is not None]
    reasoning = [t for m in found if (t := _parts_text(m, "reasoning")) is not None]
    return {
        "role": "assistant",
        "content": "\n".join(texts) if texts else None,
        "reasoning": "\n".join(reasoning),
        "tool_calls": [call for m in found for call in _tool_calls(m)],
    }


def event_messages(trace_id: str, span_id: str, events: Sequence[EventIn]) -> list[dict[str, Any]]:
    """The content of a model call carried by its events as log records, with
    the ids ``_model_messages`` gives the span's messages (so whichever
    arrives first is completed by the other): the new prompt at its events'
    time, the answer (when a ``gen_ai.choice`` came) at the choice's."""
    inputs, outputs = genai_events.messages(events)
    input_times = [e.time_ns for e in events if e.name != genai_events.CHOICE and e.time_ns]
    output_times = [e.time_ns for e in events if e.name == genai_events.CHOICE and e.time_ns]
    base = f"otel:{trace_id}:{span_id}"
    messages = _new_inputs(inputs, base, _time(min(input_times, default=0)))
    if outputs:
        answer = _answer(outputs)
        answer.update(message_id=base, created_at=_time(max(output_times, default=0)))
        messages.append(answer)
    return messages


def _model_messages(span: SpanIn, base: str, agent_name: str) -> list[dict[str, Any]]:
    attributes = span.attributes
    start, end = _time(span.start_ns), _time(span.end_ns) or _time(span.start_ns)
    messages = _new_inputs(_input_messages(span), base, start or end)
    messages.append(
        {
            "message_id": base,
            **_answer(_output_messages(span)),
            "agent_name": agent_name,
            "model": _text_attribute(
                span,
                ("gen_ai.response.model", "gen_ai.request.model", "llm.model_name"),
                resource=False,
            ),
            "provider_response_id": _text_attribute(span, ("gen_ai.response.id",), resource=False),
            "status": "error" if span.error else "",
            "usage": _usage(attributes),
            "duration_ms": span_duration(span.start_ns, span.end_ns),
            # Streaming calls: the GenAI conventions' time to the first chunk (s).
            "time_to_first_token_ms": seconds_duration(
                attributes.get("gen_ai.response.time_to_first_chunk")
            ),
            "created_at": end,
        }
    )
    return messages


def _tool_messages(
    span: SpanIn, base: str, agent_name: str, announced: set[str]
) -> list[dict[str, Any]]:
    attributes = span.attributes
    call_id = _text_attribute(span, ("gen_ai.tool.call.id",), resource=False) or base
    name = _text_attribute(span, ("gen_ai.tool.name", "tool.name"), resource=False) or span.name
    arguments = attributes.get("gen_ai.tool.call.arguments", attributes.get("input.value"))
    result = attributes.get("gen_ai.tool.call.result", attributes.get("output.value"))
    if result is not None and not isinstance(result, str):
        result = json.dumps(result)
    start, end = _time(span.start_ns), _time(span.end_ns) or _time(span.start_ns)
    messages: list[dict[str, Any]] = []
    if call_id not in announced:
        # No model span of this export carried the call (content not
        # captured, or no model span): the tool span stands for it.
        messages.append(
            {
                "message_id": f"{base}:call",
                "role": "assistant",
                "tool_calls": [{"id": call_id, "name": name, "arguments": arguments}],
                "agent_name": agent_name,
                "created_at": start or end,
            }
        )
    messages.append(
        {
            "message_id": f"{base}:result",
            "role": "tool",
            "tool_call_id": call_id,
            "name": name,
            "content": result,
            "agent_name": agent_name,
            "status": "error" if span.error else "",
            "duration_ms": span_duration(span.start_ns, span.end_ns),
            "created_at": end,
        }
    )
    return messages


def _valid_ids(span: SpanIn) -> bool:
    return (
        len(span.trace_id) == 32
        and len(span.span_id) == 16
        and span.trace_id.strip("0") != ""
        and span.span_id.strip("0") != ""
    )


MAX_ANCESTORS = 64


def _sub_agent(span: SpanIn, by_id: Mapping[tuple[str, str], SpanIn]) -> SpanLink:
    """The agent a span speaks for: its own ``gen_ai.agent.name``, else that of its
    nearest agent-span ancestor *in the same export* (attribution only; never a key);
    without one, its nearest ancestor missing from the export (a later export's
    span may name it: ``services.sub_agents_resolve``)."""
    current = span
    for _ in range(MAX_ANCESTORS):
        name = _text_attribute(current, ("gen_ai.agent.name",), resource=False)
        if name and (current is span or _kind(current.attributes) == "agent"):
            return SpanLink(name=name)
        parent = current.parent_span_id
        if len(parent) != 16 or not parent.strip("0"):
            return SpanLink()  # a root
        found = by_id.get((current.trace_id, parent))
        if found is None:
            return SpanLink(missing=parent)
        current = found
    return SpanLink()


def _map(
    spans: Sequence[SpanIn], result: IngestResult, links: dict[tuple[str, str], SpanLink]
) -> tuple[list[Mapped], list[Wait]]:
    """Each span's session and messages (no writes) and the spans whose sub-agent
    a later export may name; rejects what cannot be used. ``links`` receives
    what the export tells of each span (``_sub_agent``)."""
    kinds = [_kind(span.attributes) for span in spans]
    by_id = {(span.trace_id, span.span_id): span for span in spans}
    for span in spans:
        if _valid_ids(span):
            links[(span.trace_id, span.span_id)] = _sub_agent(span, by_id)
    waits: list[Wait] = []
    announced: set[str] = set()  # tool call ids a model span of this export carries
    for span, kind in zip(spans, kinds, strict=True):
        if kind == "model":
            for message in _output_messages(span):
                if isinstance(message, Mapping):
                    announced.update(str(c["id"]) for c in _tool_calls(message) if c["id"])
    mapped = []
    for span, kind in zip(spans, kinds, strict=True):
        if kind is None:
            result.reject(NO_GENAI)
            continue
        if kind not in ("model", "tool", "agent"):
            result.reject(f"not mapped: GenAI operation {kind[:50]!r}")
            continue
        if not _valid_ids(span):
            result.reject("refused: no valid trace or span id")
            continue
        if kind == "agent":
            # Used for its children's attribution (``_sub_agent``); it writes
            # nothing and creates no session of its own.
            result.accepted += 1
            continue
        key = _text_attribute(span, SESSION_KEY_ATTRIBUTES) or span.trace_id
        own_agent = _text_attribute(span, ("gen_ai.agent.name",), resource=False)
        agent = own_agent or _text_attribute(span, ("service.name",))
        base = f"otel:{span.trace_id}:{span.span_id}"
        link = links[(span.trace_id, span.span_id)]
        if link.missing:
            waits.append(Wait(key, span.trace_id, span.span_id, link.missing))
        if kind == "model":
            raw = _model_messages(span, base, link.name)
        else:
            raw = _tool_messages(span, base, link.name, announced)
        mapped.append(
            Mapped(
                key=key,
                agent=agent,
                messages=raw,
                order=(span.start_ns, span.span_id),
                label=f"span {span.span_id}",
                turn=span.trace_id,
                started=_time(span.start_ns),
            )
        )
    return mapped, waits


def spans_ingest(
    *, spans: Sequence[SpanIn], scope: KeyScope = FULL, now: datetime | None = None
) -> IngestResult:
    """Store an export's spans as sessions and messages (the package's rules).

    Database errors propagate (the caller answers "retry later"); the sessions
    stored before one are skipped on the retry, by message id.
    """
    result = IngestResult(noun="span")
    links: dict[tuple[str, str], SpanLink] = {}
    mapped, waits = _map(spans, result, links)
    store(mapped, result, scope=scope, now=now)
    services.sub_agents_resolve(links=links, waits=waits, prefix="otel:", now=now, scope=scope)
    return result
