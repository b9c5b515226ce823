"""Coding agents' log events (Claude Code, Codex) → sessions and messages."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sessions.otlp import claude_code, codex
from sessions.otlp.records import LogIn, Source, text, time
from sessions.otlp.store import IngestResult, Mapped, store
from sessions.scopes import FULL, KeyScope

SOURCES: tuple[Source, ...] = (claude_code.SOURCE, codex.SOURCE)


def _map(records: Sequence[LogIn], result: IngestResult) -> list[Mapped]:
    mapped = []
    for record in records:
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
