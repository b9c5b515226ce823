"""A transcript page as the session template shows it.

Tool calls are paired with their results, long text is split into a visible
head and a folded rest, and runs of archived (compacted) messages are folded
behind the compaction summary that replaced them. Everything here is plain
text: the template escapes it. The messages come from ``sessions.selectors``
(``messages_newest`` / ``messages_oldest``); nothing here queries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fleet.templatetags.fleet_tags import pretty_json_text
from sessions import selectors
from sessions.choices import Role
from sessions.models import Message, Session

PAGE_SIZE = 50
# Most messages a live tail re-renders in one poll.
TAIL_MAX = 500
# Text beyond this is not sent to the browser (the API has all of it).
DISPLAY_LIMIT = 100_000
HEAD_LINES = 18
HEAD_CHARS = 1_500


@dataclass(frozen=True)
class Text:
    """Text split into what shows and what is folded (``<details>``)."""

    head: str
    rest: str = ""
    rest_lines: int = 0
    clipped: int = 0  # characters not sent at all
    total_chars: int = 0

    @property
    def folded(self) -> bool:
        return bool(self.rest)


def split_text(value: str | None, *, head_lines: int = HEAD_LINES) -> Text:
    if not value:
        return Text(head="")
    total = len(value)
    clipped = max(0, total - DISPLAY_LIMIT)
    if clipped:
        value = value[:DISPLAY_LIMIT]
    lines = value.split("\n")
    head = "\n".join(lines[:head_lines]) if len(lines) > head_lines else value
    if len(head) > HEAD_CHARS:
        cut = value.rfind(" ", 0, HEAD_CHARS)
        head = value[: cut if cut > HEAD_CHARS // 2 else HEAD_CHARS]
    # The summary line of the fold stands where the line break was.
    rest = value[len(head) :].removeprefix("\n")
    return Text(
        head=head,
        rest=rest,
        rest_lines=rest.count("\n") + 1 if rest else 0,
        clipped=clipped,
        total_chars=total,
    )


@dataclass
class Call:
    id: str
    name: str
    arguments: Text
    result: Entry | None = None


@dataclass
class Entry:
    message: Message
    content: Text
    reasoning: Text
    # The message's metadata as pretty JSON, folded on the page.
    metadata: Text = field(default_factory=lambda: Text(head=""))
    calls: list[Call] = field(default_factory=list)
    is_tool_result: bool = False

    @property
    def seq(self) -> int:
        return self.message.seq


@dataclass
class ArchivedRun:
    """Consecutive archived messages, folded behind their compaction summary."""

    entries: list[Entry]
    compacted_at: datetime  # archived messages have one
    summary: Entry | None = None
    open: bool = False  # unfolded: it holds the message the page was opened at

    is_archived_run = True

    @property
    def message_count(self) -> int:
        nested = sum(1 for e in self.entries for call in e.calls if call.result is not None)
        return len(self.entries) + nested

    def contains(self, seq: int | None) -> bool:
        return seq is not None and self.first_seq <= seq <= self.last_seq

    @property
    def first_seq(self) -> int:
        return self.entries[0].seq

    @property
    def last_seq(self) -> int:
        return self.entries[-1].seq


def _looks_like_json(text: str | None) -> bool:
    return text is not None and text.lstrip()[:1] in ("{", "[")


def _entry(message: Message) -> Entry:
    content = message.content
    if message.role == Role.TOOL and _looks_like_json(content) and len(content or "") < 200_000:
        content = pretty_json_text(content)
    return Entry(
        message=message,
        content=split_text(content),
        reasoning=split_text(message.reasoning, head_lines=10**9),
        metadata=split_text(pretty_json_text(message.metadata) if message.metadata else None),
        is_tool_result=message.role == Role.TOOL,
    )


def _call(raw: Any) -> Call:
    if not isinstance(raw, dict):
        return Call(id="", name="", arguments=split_text(pretty_json_text(raw), head_lines=12))
    arguments = raw.get("arguments")
    text = pretty_json_text(arguments) if arguments not in (None, "") else ""
    return Call(
        id=str(raw.get("id") or ""),
        name=str(raw.get("name") or ""),
        arguments=split_text(text, head_lines=12),
    )


def build(messages: list[Message]) -> list[Entry | ArchivedRun]:
    """Entries in order: tool results nested under their calls, archived runs folded."""
    entries = [_entry(m) for m in messages]
    results = {
        e.message.tool_call_id: e for e in entries if e.is_tool_result and e.message.tool_call_id
    }
    nested: set[int] = set()
    for entry in entries:
        for raw in entry.message.tool_calls or []:
            call = _call(raw)
            result = results.get(call.id) if call.id else None
            if result is not None and id(result) not in nested:
                call.result = result
                nested.add(id(result))
            entry.calls.append(call)

    # Compaction stamps the archived messages and creates the summary at one moment.
    summaries = {e.message.created_at: e for e in entries if e.message.is_summary}
    items: list[Entry | ArchivedRun] = []
    used_summaries: set[int] = set()
    for entry in entries:
        if id(entry) in nested:
            continue
        if entry.message.compacted_at is not None:
            last = items[-1] if items else None
            if isinstance(last, ArchivedRun) and last.compacted_at == entry.message.compacted_at:
                last.entries.append(entry)
            else:
                items.append(ArchivedRun(entries=[entry], compacted_at=entry.message.compacted_at))
            continue
        items.append(entry)
    for item in items:
        if isinstance(item, ArchivedRun):
            summary = summaries.get(item.compacted_at)
            if summary is not None and id(summary) not in used_summaries:
                item.summary = summary
                used_summaries.add(id(summary))
    return [i for i in items if not (isinstance(i, Entry) and id(i) in used_summaries)]


# --- chunks of a transcript ---------------------------------------------------


@dataclass
class Chunk:
    items: list[Entry | ArchivedRun]
    first_seq: int | None
    last_seq: int | None
    has_earlier: bool
    has_later: bool
    # Set when the chunk reaches the newest message: it becomes the live tail.
    tail_from: int | None = None
    overflow: bool = False

    @property
    def is_tail(self) -> bool:
        return self.tail_from is not None


def _chunk(messages: list[Message], **flags: Any) -> Chunk:
    return Chunk(
        items=build(messages),
        first_seq=messages[0].seq if messages else None,
        last_seq=messages[-1].seq if messages else None,
        **flags,
    )


def newest(session: Session, size: int = PAGE_SIZE) -> Chunk:
    page = selectors.messages_newest(session, limit=size)
    rows = page.messages
    tail_from = rows[0].seq if rows else session.last_seq + 1
    return _chunk(rows, has_earlier=page.more, has_later=False, tail_from=tail_from)


def before(session: Session, seq: int, size: int = PAGE_SIZE) -> Chunk:
    page = selectors.messages_newest(session, limit=size, before=seq)
    return _chunk(page.messages, has_earlier=page.more, has_later=True)


def after(session: Session, seq: int, size: int = PAGE_SIZE) -> Chunk:
    page = selectors.messages_oldest(session, after=seq, limit=size)
    rows = page.messages
    has_earlier = (bool(rows) and rows[0].seq > 1) or (not rows and seq > 0)
    return _chunk(
        rows,
        has_earlier=has_earlier,
        has_later=page.more,
        tail_from=None if page.more else seq + 1,
    )


def tail(session: Session, seq: int) -> Chunk:
    """Messages from ``seq`` on (a live tail's re-render), at most ``TAIL_MAX``."""
    page = selectors.messages_newest(session, limit=TAIL_MAX, since=seq)
    rows = page.messages
    return _chunk(
        rows,
        has_earlier=False,
        has_later=False,
        tail_from=rows[0].seq if page.more else seq,
        overflow=page.more,
    )
