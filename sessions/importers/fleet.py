"""fleet: Fleet's own export (``manage.py export_sessions``), JSONL.

One session per line: the session as the JSON API shows it (every field by
name, totals flat beside them) with its ``messages``, each with every field
including ``seq``, ``message_id``, ``usage`` (with ``cost_source``),
``is_summary`` and ``compacted_at`` (see ``sessions.export``).

Importing an export into an empty database gives the same sessions, messages
and totals:

* Messages keep their ``seq`` (an export of a purged session has gaps), their
  archive time, summary flag and priced cost (``computed`` and ``unpriced``
  stay as they were: no repricing on import). A message whose ``seq`` is
  already stored in that session is skipped, which makes a re-import add
  nothing without inventing message ids.
* The session's totals are set after its messages, exactly as exported: they
  are the spending history, which exceeds the messages' sum once messages
  were purged. ``message_count``, ``last_seq`` and ``unpriced_calls`` follow
  from the messages imported.
* Finished turns (``finished_turns``) are recorded again with their latency,
  each once (a turn already stored is skipped); a bad one is reported and
  skipped like a bad message.
* A line that is not a session object is reported (``file:line``) and
  skipped; a message that does not validate is reported and skipped, the
  rest of its session imported. ``-`` reads standard input.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from sessions.bounds import MAX_COUNT
from sessions.errors import FleetError, InvalidInput
from sessions.fields import MESSAGE_TRUSTED_FIELDS
from sessions.importers.base import (
    BadRecord,
    Problem,
    SourceError,
    SourceSession,
    problem_from,
)
from sessions.inputs import (
    READ_ONLY_SESSION_FIELDS,
    TOKEN_KEYS,
    TOTAL_COUNTS,
    MessageIn,
    clean_message,
    clean_timestamp,
    clean_turn,
)
from sessions.usage import clean_int

TOTALS = (*TOTAL_COUNTS, *TOKEN_KEYS, "cost_usd")


def read(path: Path) -> Iterator[SourceSession | Problem]:
    if str(path) == "-":
        yield from read_stream(
            io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="surrogateescape"),
            name="<stdin>",
        )
        return
    if not path.exists():
        raise SourceError(f"{path} does not exist")
    if path.is_dir():
        raise SourceError(f"{path} is a directory; a Fleet export is a JSONL file")
    try:
        handle = path.open(encoding="utf-8", errors="surrogateescape", newline="")
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from None
    with handle:
        yield from read_stream(handle, name=path.name)


def read_stream(stream: TextIO, *, name: str) -> Iterator[SourceSession | Problem]:
    seen_session = False
    for number, line in enumerate(stream, 1):
        if not line.strip():
            continue
        where = f"{name}:{number}"
        try:
            record = json.loads(line)
        except ValueError as exc:
            if not seen_session:
                raise SourceError(
                    f"{name} is not a Fleet export: line {number} is not JSON ({exc})"
                ) from None
            yield Problem(where, f"not JSON ({exc})")
            continue
        if not isinstance(record, dict) or "key" not in record:
            if not seen_session:
                raise SourceError(
                    f"{name} is not a Fleet export: line {number} is not a session object"
                )
            yield Problem(where, "not a session object with a key")
            continue
        seen_session = True
        try:
            yield session_from_record(record, where)
        except BadRecord as exc:
            yield Problem(where, str(exc))
        except FleetError as exc:
            yield problem_from(where, exc)


def session_from_record(record: dict[str, Any], where: str) -> SourceSession:
    key = record["key"]
    if not isinstance(key, str):
        raise BadRecord("key is not a string")
    if record.get("last_active_at") is None:
        raise BadRecord("last_active_at is missing")
    last_active = clean_timestamp(record["last_active_at"], "last_active_at")
    messages = record.get("messages") or []
    if not isinstance(messages, list):
        raise BadRecord("messages is not a list")
    fields = {
        name: value
        for name, value in record.items()
        if name
        not in ("messages", "finished_turns", "last_active_at", *TOTALS, *READ_ONLY_SESSION_FIELDS)
    }
    totals = {name: record[name] for name in TOTALS if record.get(name) is not None}
    session = SourceSession(
        key=key, where=where, last_active_at=last_active, fields=fields, totals=totals
    )
    for index, raw in enumerate(messages):
        try:
            session.messages.append(message_from_record(raw, f"messages[{index}]"))
        except FleetError as exc:
            session.problems.append(problem_from(where, exc))
    turns = record.get("finished_turns") or []
    if not isinstance(turns, list):
        raise BadRecord("finished_turns is not a list")
    for index, raw in enumerate(turns):
        try:
            session.turns.append(clean_turn(raw, f"finished_turns[{index}]"))
        except FleetError as exc:
            session.problems.append(problem_from(where, exc))
    return session


def message_from_record(raw: Any, path: str) -> MessageIn:
    """A message of an export: the API's fields plus the trusted ones it carries."""
    if not isinstance(raw, dict):
        raise InvalidInput("must be a message object", field=path)
    message = clean_message(
        {name: value for name, value in raw.items() if name not in MESSAGE_TRUSTED_FIELDS}, path
    )
    if raw.get("seq") is not None:
        message.seq = clean_int(raw["seq"], f"{path}.seq", maximum=MAX_COUNT)
        if message.seq < 1:
            raise InvalidInput("must be 1 or more", field=f"{path}.seq")
    if raw.get("compacted_at") is not None:
        message.compacted_at = clean_timestamp(raw["compacted_at"], f"{path}.compacted_at")
    summary = raw.get("is_summary", False)
    if not isinstance(summary, bool):
        raise InvalidInput("must be true or false", field=f"{path}.is_summary")
    message.is_summary = summary
    return message
