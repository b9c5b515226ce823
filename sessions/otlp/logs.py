"""Log records → sessions and messages: coding agents' events (Claude Code,
Codex) and the older GenAI events of a model call (``gen_ai.user.message`` …
``gen_ai.choice``, emitted in the call span's context)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from sessions.otlp import claude_code, codex
from sessions.otlp.events import GENAI_EVENTS, EventIn
from sessions.otlp.records import LogIn, Source, text, time
from sessions.otlp.spans import SESSION_KEY_ATTRIBUTES, event_messages
from sessions.otlp.store import IngestResult, Mapped, store
from sessions.scopes import FULL, KeyScope

SOURCES: tuple[Source, ...] = (claude_code.SOURCE, codex.SOURCE)


def _genai_event(record: LogIn) -> str:
    """The GenAI event a record is (``gen_ai.choice``, …), else empty."""
    name = record.event_name or record.attributes.get("event.name")
    return name if isinstance(name, str) and name in GENAI_EVENTS else ""


def _valid_ids(record: LogIn) -> bool:
    return (
        len(record.trace_id) == 32
        and len(record.span_id) == 16
        and record.trace_id.strip("0") != ""
        and record.span_id.strip("0") != ""
    )


def _map_genai(records: Sequence[LogIn], result: IngestResult) -> list[Mapped]:
    """A model call's events, grouped by the span they were emitted in: its content,
    with the ids of the span's own messages (the span completes them, or they it)."""
    calls: dict[tuple[str, str], list[tuple[int, int, LogIn]]] = defaultdict(list)
    for position, record in enumerate(records):
        if not _valid_ids(record):
            result.reject("refused: a GenAI event outside a span (no trace or span id)")
            continue
        at = record.time_ns or record.observed_ns
        calls[(record.trace_id, record.span_id)].append((at, position, record))
    mapped = []
    for (trace_id, span_id), found in calls.items():
        found.sort(key=lambda entry: entry[:2])
        events = [
            EventIn(name=_genai_event(r), time_ns=at, attributes=r.attributes, body=r.body)
            for at, _, r in found
        ]
        first = found[0][2]
        messages = event_messages(trace_id, span_id, events)
        if not messages:
            # Only history (the call's new input was not a prompt): nothing new.
            result.accepted += len(found)
            continue
        mapped.append(
            Mapped(
                key=next((k for n in SESSION_KEY_ATTRIBUTES if (k := text(first, n))), trace_id),
                agent=text(first, "gen_ai.agent.name") or text(first, "service.name"),
                messages=messages,
                order=(found[0][0], span_id),
                label=f"the events of span {span_id}",
                records=len(found),
            )
        )
    return mapped


def _map(records: Sequence[LogIn], result: IngestResult) -> list[Mapped]:
    genai = [record for record in records if _genai_event(record)]
    mapped = _map_genai(genai, result) if genai else []
    for record in records:
        if genai and _genai_event(record):
            continue
        found = next(
            ((source, event) for source in SOURCES if (event := source.event(record))), None
        )
        if found is None:
            result.reject("not mapped: not a Claude Code or Codex event")
            continue
        source, event = found
        raw = source.messages(record, event)
        if raw is None:
            kind = record.attributes.get("event.kind")
            detail = f" of kind {str(kind)[:50]!r}" if kind else ""
            result.reject(f"not mapped: {source.label} event {event[:50]!r}{detail}")
            continue
        key = text(record, source.session_attribute)
        if not key:
            result.reject(f"refused: a {source.label} event without {source.session_attribute}")
            continue
        mapped.append(
            Mapped(
                key=key,
                agent=text(record, "service.name") or source.agent,
                messages=raw,
                order=(record.time_ns or record.observed_ns, raw[0]["message_id"]),
                label=f"log record {raw[0]['message_id']}",
                turn=text(record, "prompt.id"),
                started=time(record),
            )
        )
    return mapped


def logs_ingest(
    *, records: Sequence[LogIn], scope: KeyScope = FULL, now: datetime | None = None
) -> IngestResult:
    """Store an export's coding-agent events as sessions and messages (the package's rules)."""
    result = IngestResult(noun="log record")
    store(_map(records, result), result, scope=scope, now=now)
    return result
