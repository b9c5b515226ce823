"""Export sessions as JSONL: one session per line with all its messages.

A line is the session as the JSON API shows it (DESIGN "Shapes": every
session field by name, totals flat beside them, money as a decimal string,
times RFC 3339 UTC) plus ``messages``: every message in ``seq`` order with
every field, including ``seq``, ``message_id``, ``usage`` (with its
``cost_source``), ``is_summary`` and ``compacted_at``. ``manage.py
import_sessions fleet FILE`` reads it back (``sessions.importers.fleet``).

Memory stays flat whatever the size: sessions are read with a streaming
iterator and each session's messages in chunks, written as they are read
(the line is built piece by piece, never as one object). A session's
messages are read up to the ``last_seq`` its row had when read, so a line's
messages match its totals even while agents keep appending.

After the messages, ``finished_turns``: the session's finished turns (``Turn``:
id, start, end, duration, outcome) oldest first, read in chunks the same way;
the import records them again (and their latency), each once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from django.db.models import Q

from sessions.models import Message, Session, Turn
from sessions.shapes import message_json, session_json, turn_json

MESSAGE_CHUNK = 1000


@dataclass
class ExportSummary:
    sessions: int = 0
    messages: int = 0


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _messages(session: Session, chunk: int) -> Any:
    after = 0
    while True:
        batch = list(
            Message.objects.filter(
                session=session, seq__gt=after, seq__lte=session.last_seq
            ).order_by("seq")[:chunk]
        )
        yield from batch
        if len(batch) < chunk:
            return
        after = batch[-1].seq


def _turns(session: Session, chunk: int) -> Any:
    """The session's finished turns, oldest first, ``chunk`` at a time (keyset:
    the ``turn_session_ended_idx`` range, whatever the count)."""
    turns = Turn.objects.filter(session=session).order_by("ended_at", "id")
    after: Turn | None = None
    while True:
        page = turns
        if after is not None:
            page = turns.filter(
                Q(ended_at__gt=after.ended_at) | Q(ended_at=after.ended_at, id__gt=after.id)
            )
        batch = list(page[:chunk])
        yield from batch
        if len(batch) < chunk:
            return
        after = batch[-1]


class Writable(Protocol):
    """Where an export goes: a text file, or a command's standard output."""

    def write(self, text: str, /) -> object: ...


def export_sessions(
    out: Writable,
    *,
    since: datetime | None = None,
    agent: str | None = None,
    chunk: int = MESSAGE_CHUNK,
) -> ExportSummary:
    """Write the sessions active since ``since`` (of ``agent``) to ``out``, oldest first."""
    sessions = Session.objects.all()
    if since is not None:
        sessions = sessions.filter(last_active_at__gte=since)
    if agent is not None:
        sessions = sessions.filter(agent=agent)
    summary = ExportSummary()
    for session in sessions.order_by("id").iterator(chunk_size=200):
        head = _dumps(session_json(session))
        out.write(head[:-1] + ',"messages":[')
        for index, message in enumerate(_messages(session, chunk)):
            out.write(("," if index else "") + _dumps(message_json(message)))
            summary.messages += 1
        out.write('],"finished_turns":[')
        for index, turn in enumerate(_turns(session, chunk)):
            out.write(("," if index else "") + _dumps(turn_json(turn)))
        out.write("]}\n")
        summary.sessions += 1
    return summary
