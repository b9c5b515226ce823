"""OpenTelemetry spans → sessions and messages (the mapping table is docs/OTLP.md).

The web layer (``fleet/otlp.py``) decodes OTLP/HTTP requests into ``SpanIn``
records (plain values: hex ids, nanosecond times, attributes as Python values);
this module maps them onto Fleet's model and writes through
``services.messages_append_all``, as the importers do. Rules it protects:

* **Deterministic keys and ids**: a span's session key and agent come from its
  own attributes or its resource, never from other spans of the export (a
  parent span usually ends, and is exported, after its children). Each message
  id derives from the trace and span id, so an exporter's retry adds nothing.
* **Nothing half-written, per session**: one session's messages of one export
  are one append (one transaction). A session that is refused (deleted key,
  outside the API key's scope, a bound) rejects its own spans only; the other
  sessions of the export are stored. A span whose values are invalid is
  rejected alone, before anything is written.
* **Order by the record's own time**: within an export a session's messages
  are appended by ``created_at`` (a model call's prompt at the span's start,
  its answer at the end); a span arriving in a later export is appended after
  what is stored, with its own ``created_at``.
* Spans with no GenAI attribute, and GenAI operations Fleet does not map
  (embeddings, retrieval, …), write nothing and are counted as rejected, with
  the reason, so the exporter's partial-success answer says what was left out.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sessions import services
from sessions.errors import FleetError
from sessions.inputs import MessageIn, clean_message
from sessions.models import Session
from sessions.scopes import FULL, KeyScope

MODEL_OPERATIONS = frozenset({"chat", "text_completion", "generate_content"})
TOOL_OPERATIONS = frozenset({"execute_tool"})
AGENT_OPERATIONS = frozenset({"invoke_agent", "create_agent"})
SESSION_KEY_ATTRIBUTES = ("gen_ai.conversation.id", "session.id")
NO_GENAI = "ignored: no GenAI attribute (gen_ai.*, llm.*, openinference.span.kind)"
MAX_REASON_CHARS = 1000
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


@dataclass
class IngestResult:
    """What became of an export's spans: stored (or already stored), or rejected and why."""

    accepted: int = 0
    rejected: int = 0
    appended: int = 0
    sessions: list[str] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)

    def reject(self, reason: str, count: int = 1) -> None:
        self.rejected += count
        self.reasons[reason] += count

    @property
    def message(self) -> str:
        """One English sentence per reason, for OTLP's ``partial_success.error_message``."""
        parts = [
            f"{count} span{'s' if count != 1 else ''} {reason}"
            for reason, count in self.reasons.most_common()
        ]
        return "; ".join(parts)[:MAX_REASON_CHARS]


@dataclass
class _Mapped:
    span: SpanIn
    key: str
    agent: str
    model: str
    messages: list[MessageIn]


def _kind(attributes: Mapping[str, Any]) -> str | None:
    """``model``, ``tool``, ``agent``, another GenAI operation's name, or None (not GenAI)."""
    operation = attributes.get("gen_ai.operation.name")
    openinference = attributes.get("openinference.span.kind")
    if operation in MODEL_OPERATIONS or openinference == "LLM":
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


def _indexed(attributes: Mapping[str, Any], prefix: str) -> list[dict[str, Any]]:
    """OpenInference's flattened lists: ``llm.output_messages.0.message.content`` → [{...}]."""
    items: dict[int, dict[str, Any]] = defaultdict(dict)
    for name, value in attributes.items():
        if not name.startswith(prefix):
            continue
        number, _, rest = name[len(prefix) :].partition(".")
        if number.isdigit() and rest.startswith("message."):
            items[int(number)][rest[len("message.") :]] = value
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
                "id": call.get("tool_call.id"),
                "name": call.get("tool_call.function.name"),
                "arguments": call.get("tool_call.function.arguments"),
            }
            for _, call in sorted(calls.items())
        ]
        messages.append({"role": flat.get("role"), "content": flat.get("content"), "parts": parts})
    return messages


def _input_messages(attributes: Mapping[str, Any]) -> list[Any]:
    value = _json(attributes.get("gen_ai.input.messages"))
    if isinstance(value, list):
        return value
    return _indexed(attributes, "llm.input_messages.")


def _output_messages(attributes: Mapping[str, Any]) -> list[Any]:
    value = _json(attributes.get("gen_ai.output.messages"))
    if isinstance(value, list):
        return value
    return _indexed(attributes, "llm.output_messages.")


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


def _model_messages(span: SpanIn, base: str, agent_name: str) -> list[dict[str, Any]]:
    attributes = span.attributes
    start, end = _time(span.start_ns), _time(span.end_ns) or _time(span.start_ns)
    messages: list[dict[str, Any]] = []
    # The input repeats the conversation so far: only its trailing user
    # messages are this turn's new prompt.
    prompts: list[str] = []
    for message in reversed(_input_messages(attributes)):
        if not isinstance(message, Mapping) or message.get("role") != "user":
            break
        text = _parts_text(message, "text")
        if text is not None:
            prompts.insert(0, text)
    for index, text in enumerate(prompts):
        messages.append(
            {
                "message_id": f"{base}:in{index}",
                "role": "user",
                "content": text,
                "created_at": start or end,
            }
        )
    outputs = [m for m in _output_messages(attributes) if isinstance(m, Mapping)]
    texts = [t for m in outputs if (t := _parts_text(m, "text")) is not None]
    reasoning = [t for m in outputs if (t := _parts_text(m, "reasoning")) is not None]
    calls = [call for m in outputs for call in _tool_calls(m)]
    messages.append(
        {
            "message_id": base,
            "role": "assistant",
            "content": "\n".join(texts) if texts else None,
            "reasoning": "\n".join(reasoning),
            "tool_calls": calls,
            "agent_name": agent_name,
            "model": _text_attribute(
                span,
                ("gen_ai.response.model", "gen_ai.request.model", "llm.model_name"),
                resource=False,
            ),
            "provider_response_id": _text_attribute(span, ("gen_ai.response.id",), resource=False),
            "status": "error" if span.error else "",
            "usage": _usage(attributes),
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
            "created_at": end,
        }
    )
    return messages


def _clean(span: SpanIn, raw: list[dict[str, Any]], result: IngestResult) -> list[MessageIn] | None:
    cleaned = []
    for index, message in enumerate(raw):
        values = {name: value for name, value in message.items() if value not in (None, "", [])}
        if "content" in message and message["content"] is None:
            values.pop("content", None)
        try:
            cleaned.append(clean_message(values, f"message {index}"))
        except FleetError as error:
            where = f" ({error.field})" if error.field else ""
            result.reject(f"refused: span {span.span_id}{where}: {error.message}"[:300])
            return None
    return cleaned


def _valid_ids(span: SpanIn) -> bool:
    return (
        len(span.trace_id) == 32
        and len(span.span_id) == 16
        and span.trace_id.strip("0") != ""
        and span.span_id.strip("0") != ""
    )


def _map(spans: Sequence[SpanIn], result: IngestResult) -> list[_Mapped]:
    """Each span's session and messages (no writes); rejects what cannot be used."""
    kinds = [_kind(span.attributes) for span in spans]
    announced: set[str] = set()  # tool call ids a model span of this export carries
    for span, kind in zip(spans, kinds, strict=True):
        if kind == "model":
            for message in _output_messages(span.attributes):
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
        key = _text_attribute(span, SESSION_KEY_ATTRIBUTES) or span.trace_id
        own_agent = _text_attribute(span, ("gen_ai.agent.name",), resource=False)
        agent = own_agent or _text_attribute(span, ("service.name",))
        base = f"otel:{span.trace_id}:{span.span_id}"
        if kind == "model":
            raw = _model_messages(span, base, own_agent)
        elif kind == "tool":
            raw = _tool_messages(span, base, own_agent, announced)
        else:
            raw = []
        messages = _clean(span, raw, result)
        if messages is None:
            continue
        model = next((m.model for m in messages if m.model), "")
        mapped.append(_Mapped(span=span, key=key, agent=agent, model=model, messages=messages))
    return mapped


def spans_ingest(
    *, spans: Sequence[SpanIn], scope: KeyScope = FULL, now: datetime | None = None
) -> IngestResult:
    """Store an export's spans as sessions and messages; see the module's rules.

    Database errors propagate (the caller answers "retry later"); the sessions
    stored before one are skipped on the retry, by message id.
    """
    result = IngestResult()
    groups: dict[str, list[_Mapped]] = defaultdict(list)
    for item in _map(spans, result):
        groups[item.key].append(item)
    stored = dict(
        Session.objects.filter(key__in=list(groups)).values_list("key", "agent") if groups else ()
    )
    for key in sorted(groups):
        group = sorted(groups[key], key=lambda item: (item.span.start_ns, item.span.span_id))
        agent = stored.get(key)
        fields: dict[str, Any] = {}
        if agent is None:
            # The export that creates a session names its agent and model;
            # later exports do not rename it (spans of sub-agents name theirs).
            agent = group[0].agent
            fields = {"agent": agent, "model": next((i.model for i in group if i.model), "")}
            fields = {name: value for name, value in fields.items() if value}
        messages = []
        for order, item in enumerate(group):
            for position, message in enumerate(item.messages):
                if message.agent_name == agent:
                    message.agent_name = ""
                messages.append((message.created_at, order, position, message))
        messages.sort(key=lambda entry: (entry[0] or datetime.min.replace(tzinfo=UTC), *entry[1:3]))
        try:
            append = services.messages_append_all(
                key=key,
                messages=[entry[3] for entry in messages],
                session=fields,
                now=now,
                scope=scope,
            )
        except FleetError as error:
            result.reject(f"refused for session {key[:100]!r}: {error.message}"[:300], len(group))
            continue
        result.accepted += len(group)
        result.appended += append.appended
        result.sessions.append(key)
    return result
