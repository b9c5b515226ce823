"""koda: SQLite ``sessions``, ``messages`` and ``session_metadata``.

Tables (DESIGN "Stores we import"): ``sessions`` (``id``, ``created_at``,
``agent_name``, ``project_root``, ``last_accessed_at``), ``messages``
(autoincrement ``id``, ``session_id``, ``role``, ``content``, ``tool_calls``
JSON text, ``tool_call_id``, ``prompt_tokens``, ``completion_tokens``,
``cache_read_tokens``, ``cache_creation_tokens``, ``thinking_tokens``,
``agent_name``, ``compacted_at``, ``created_at``) and ``session_metadata``
(``session_id``, ``key``, ``value``). Times are SQLite text
(``YYYY-MM-DD HH:MM:SS``, UTC) or RFC 3339.

How it is read:

* koda's ``prompt_tokens`` exclude cache tokens (Anthropic style): its usage
  is read as koda's shape (``sessions.usage``, the same rule as the API's), so
  Fleet's prompt is koda's prompt plus cache reads and writes.
  ``thinking_tokens`` are reasoning, a part of completion (added to
  completion when koda counted them apart). A message carries usage -- and
  is an API call -- as koda counts one: its ``prompt_tokens`` or
  ``completion_tokens`` is not NULL, even when every count is zero (a count
  in another column is never dropped either). koda records no cost, so the
  server prices it from the message's model, else the session's, and
  otherwise marks it unpriced.
* The model: the session's ``model`` column, else ``session_metadata`` key
  ``model``, else the newest message's; a message's ``model`` column is its
  own (columns a koda version lacks read as empty).
* Archived messages stay archived: a message's ``compacted_at`` is kept (it
  leaves the context view, stays in the full view). The summary koda wrote at
  each compaction (a ``system`` row without usage, inserted with the archive
  stamp) is marked as Fleet's compaction summaries are (``is_summary``,
  stamped at its archive's time): the context view puts it first, the
  transcript shows it with the messages it replaced (``mark_summaries``).
  koda's continuation hint after it is an ordinary assistant message.
* ``session_metadata``: ``todo`` is the todo list, ``model`` the model;
  every other key goes to the session's metadata. Newer koda versions' columns
  are read when present: the session's ``title`` is its name, its ``mode``
  metadata ``mode`` (a ``session_metadata`` key of that name wins), a
  message's ``thinking_content`` its reasoning, and a row's
  ``full_content`` (a tool's whole output; ``content`` is what koda sends the
  model), when it differs from ``content``, its metadata ``full_content``.
  Metadata past ``FLEET_MAX_METADATA_BYTES`` is left out with a warning
  (``source_message_keeping``); the message is imported all the same.
* The agent is the session's ``agent_name``, else ``koda``, unless
  ``--agent`` says; a message's ``agent_name`` is its sub-agent. koda has no
  session status: new sessions are ``active`` and a re-import leaves the
  status Fleet gave them.
* A message is ``koda:<row id>``. A corrupt message row is reported and
  skipped; messages whose session is missing are reported together.

``read_since`` (``fleet-follow``) reads the same way but only the sessions
whose rows changed since a cursor: in one read transaction it stamps each
session with a hash of its ``sessions`` row, its ``session_metadata`` rows
and its messages' count, greatest and summed row ids, count and latest of
``compacted_at`` and latest ``created_at`` (one ``GROUP BY`` over the
messages: no row is parsed). A session whose stamp is the cursor's is
``Unchanged``. A changed session whose rows up to the cursor's tail (its
last row) are as they were, and whose rows after it hold no ``system`` row,
is read from the tail on (``SourceSession.offset``: the messages before are
the cursor's). Any other is read whole, exactly as ``read`` reads it -- so a
compaction (old rows archived), a deleted row, a summary and its archive are
read as an import reads them. A message row changed in place (other than
its ``compacted_at``) does not move the stamp; Fleet never replaces a stored
message anyway.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

from sessions.choices import MESSAGE_INCOMPLETE, Role
from sessions.errors import FleetError
from sessions.importers.base import (
    BadRecord,
    Problem,
    Since,
    SourceSession,
    Unchanged,
    has_table,
    open_sqlite,
    optional_time,
    parse_time,
    problem_from,
    select_sql,
    source_message_keeping,
    to_count,
    to_text,
)

SESSION_COLUMNS = (
    "id",
    "created_at",
    "agent_name",
    "project_root",
    "last_accessed_at",
    "model",
    "title",
    "mode",
)
MESSAGE_COLUMNS = (
    "id",
    "session_id",
    "role",
    "content",
    "tool_calls",
    "tool_call_id",
    "prompt_tokens",
    "completion_tokens",
    "cache_read_tokens",
    "cache_creation_tokens",
    "thinking_tokens",
    "agent_name",
    "compacted_at",
    "created_at",
    "model",
    "thinking_content",
    "full_content",
    "completed_at",
)
SECOND = timedelta(seconds=1)
TOKEN_COLUMNS = {
    "prompt_tokens": "prompt_tokens",
    "completion_tokens": "completion_tokens",
    "cache_read_tokens": "cache_read_tokens",
    "cache_creation_tokens": "cache_creation_tokens",
    "thinking_tokens": "thinking_tokens",
}


# Part of every stamp: bump it when the reader reads the same rows differently,
# so a cursor's stamps from before read every session once more.
STAMP_VERSION = "koda-1"
ACTIVITY_COLUMNS = ("session_id", "id", "compacted_at", "created_at")


def read(path: Path) -> Iterator[SourceSession | Problem]:
    return cast(Iterator[SourceSession | Problem], _read(path, None))


def read_since(
    path: Path, since: Mapping[str, Since]
) -> Iterator[SourceSession | Problem | Unchanged]:
    """The store's sessions whose stamp is not ``since``'s (see the module docstring)."""
    return _read(path, since)


def _read(
    path: Path, since: Mapping[str, Since] | None
) -> Iterator[SourceSession | Problem | Unchanged]:
    conn = open_sqlite(
        path,
        label="koda",
        tables={
            "sessions": ("id", "created_at"),
            "messages": ("id", "session_id", "role", "content", "created_at"),
        },
    )
    with closing(conn):
        has_metadata = has_table(conn, "session_metadata")
        message_sql = select_sql(
            conn,
            "messages",
            MESSAGE_COLUMNS,
            "WHERE session_id = ? ORDER BY id",
            present_flags=["completed_at"],
        )
        stamper = None
        if since is not None:
            conn.execute("BEGIN")  # one snapshot: a stamp is of the rows read
            stamper = _Stamper(conn, has_metadata)
        sessions = conn.execute(
            select_sql(conn, "sessions", SESSION_COLUMNS, "ORDER BY created_at, id")
        )
        for row in sessions:
            where = f"{path.name}: sessions id={row['id']!r}"
            metadata = []
            if has_metadata:
                metadata = conn.execute(
                    "SELECT key, value FROM session_metadata WHERE session_id = ? ORDER BY rowid",
                    (row["id"],),
                ).fetchall()
            if stamper is None or since is None:
                messages = conn.execute(message_sql, (row["id"],)).fetchall()
                try:
                    yield _session(path, row, where, metadata, messages)
                except BadRecord as exc:
                    yield Problem(where, str(exc))
                continue
            stamp, activity = stamper.stamp(row)
            cursor = since.get(to_text(row["id"]))
            if cursor is not None and cursor.stamp == stamp and to_text(row["id"]).strip():
                yield Unchanged(to_text(row["id"]))
                continue
            tail = cursor.tail if cursor is not None else None
            rows = _rows_after(conn, stamper, message_sql, row["id"], tail) if tail else None
            if rows is None:
                tail = None
                rows = conn.execute(message_sql, (row["id"],)).fetchall()
            context: dict[str, Any] = {}
            try:
                session = _session(path, row, where, metadata, rows, tail, context)
            except BadRecord as exc:
                yield Problem(where, str(exc))
                continue
            session.stamp = stamp
            session.tail = _next_tail(session, activity, tail, context)
            yield session
        orphans = conn.execute(
            "SELECT session_id, COUNT(*) FROM messages "
            "WHERE session_id NOT IN (SELECT id FROM sessions) GROUP BY session_id ORDER BY 1"
        )
        for session_id, count in orphans:
            yield Problem(
                f"{path.name}: messages session_id={session_id!r}",
                f"{count} message(s) of a session that is not in the sessions table; skipped",
            )


class _Stamper:
    """Each ``sessions`` row's stamp, and its messages' activity (see the module docstring)."""

    def __init__(self, conn: sqlite3.Connection, has_metadata: bool) -> None:
        self.conn = conn
        activity_sql = select_sql(conn, "messages", ACTIVITY_COLUMNS)
        self.aggregate = (
            "SELECT session_id, COUNT(*), MAX(id), TOTAL(id), COUNT(compacted_at), "  # noqa: S608
            f"MAX(compacted_at), MAX(created_at) FROM ({activity_sql}) AS m"
        )
        self.activity = {
            row[0]: list(row[1:]) for row in conn.execute(f"{self.aggregate} GROUP BY session_id")
        }
        self.metadata: dict[Any, list[tuple[Any, ...]]] = {}
        if has_metadata:
            for entry in conn.execute(
                "SELECT session_id, key, value FROM session_metadata ORDER BY rowid"
            ):
                self.metadata.setdefault(entry[0], []).append(tuple(entry[1:]))

    def stamp(self, row: sqlite3.Row) -> tuple[str, list[Any]]:
        """The row's stamp, and its messages' count, greatest id, ... (``ACTIVITY``)."""
        session_id = row["id"]
        activity = self.activity.get(session_id)
        if activity is None:  # no messages, or an id SQL matches but Python does not
            found = self.conn.execute(
                f"{self.aggregate} WHERE session_id = ?", (session_id,)
            ).fetchone()
            activity = list(found[1:])
        text = repr((STAMP_VERSION, tuple(row), self.metadata.get(session_id, []), activity))
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:24], activity

    def before(self, session_id: Any, row_id: int) -> list[Any]:
        """The activity of the session's rows up to ``row_id``."""
        found = self.conn.execute(
            f"{self.aggregate} WHERE session_id = ? AND id <= ?", (session_id, row_id)
        ).fetchone()
        return list(found[1:])


def _rows_after(
    conn: sqlite3.Connection,
    stamper: _Stamper,
    message_sql: str,
    session_id: Any,
    tail: Mapping[str, Any],
) -> list[Any] | None:
    """The session's rows after the cursor's, or ``None``: the session is read whole.

    Only when the rows up to the cursor's last are as they were (their
    activity is the tail's: none archived, deleted or added among them since)
    and no row after it is a ``system`` row (it may be the summary of an
    earlier archive, which ``mark_summaries`` finds only among all the rows).
    """
    last = tail.get("row")
    if not isinstance(last, int):
        return None
    if stamper.before(session_id, last) != list(tail.get("activity") or []):
        return None
    after = message_sql.replace("WHERE session_id = ?", "WHERE session_id = ? AND id > ?")
    rows = conn.execute(after, (session_id, last)).fetchall()
    if any(to_text(r["role"]).strip().lower() == Role.SYSTEM for r in rows):
        return None
    return rows


def _next_tail(
    session: SourceSession,
    activity: list[Any],
    tail: Mapping[str, Any] | None,
    context: Mapping[str, Any],
) -> dict[str, Any] | None:
    """What the next read since needs to read only the rows after these.

    Nothing (the next read is whole) when a row was reported: the cursor's
    count of messages would not be the store's count of rows.
    """
    if session.problems or not isinstance(activity[1], int):
        return None
    if any(isinstance(value, bytes) for value in activity):
        return None  # a BLOB where koda writes text: not JSON (the cursor's file)
    last_id = session.messages[-1].message_id if session.messages else (tail or {}).get("last_id")
    return {
        "row": activity[1],
        "activity": activity,
        "count": session.offset + len(session.messages),
        "last_id": last_id,
        "last_message": context["last_message"].isoformat(),
        "model": context["model"],
    }


def _session(
    path: Path,
    row: Any,
    where: str,
    metadata: list[Any],
    rows: list[Any],
    tail: Mapping[str, Any] | None = None,
    context: dict[str, Any] | None = None,
) -> SourceSession:
    """``rows``: all the session's message rows, or with ``tail`` those after it
    (``context`` hears the last message's time and the newest model, for the next tail).
    """
    key = to_text(row["id"])
    if not key.strip():
        raise BadRecord("id is empty")
    created = parse_time(row["created_at"], "created_at")
    fields: dict[str, Any] = {
        "agent": to_text(row["agent_name"]).strip() or "koda",
        "created_at": created,
        "project_root": to_text(row["project_root"]),
    }
    model = to_text(row["model"]).strip()
    if to_text(row["title"]).strip():
        fields["name"] = to_text(row["title"])
    extra: dict[str, str] = {}
    if to_text(row["mode"]).strip():
        extra["mode"] = to_text(row["mode"])
    for entry in metadata:
        name, value = to_text(entry["key"]), to_text(entry["value"])
        if name == "todo":
            fields["todo"] = value
        elif name == "model":
            model = model or value
        else:
            extra[name] = value
    if extra:
        fields["metadata"] = extra
    session = SourceSession(key=key, where=where, last_active_at=created, fields=fields)
    last_message = created
    newest_model = ""
    if tail is not None:  # the rows up to the tail's were read before
        session.offset = int(tail["count"])
        last_message = max(last_message, datetime.fromisoformat(tail["last_message"]))
        newest_model = str(tail["model"])
    # First every row's values (a corrupt one is reported), then the summaries
    # among them, then each is validated: marking a summary restamps it.
    parsed: list[tuple[str, dict[str, Any], datetime | None]] = []
    for message_row in rows:
        row_where = f"{path.name}: messages id={message_row['id']}"
        try:
            parsed.append((row_where, *_values(message_row)))
        except BadRecord as exc:
            session.problems.append(Problem(row_where, str(exc)))
    summaries = mark_summaries([(values, archived) for _, values, archived in parsed])
    for index, (row_where, values, archived) in enumerate(parsed):
        try:
            message = source_message_keeping(values, where=row_where, warnings=session.warnings)
        except FleetError as exc:
            session.problems.append(problem_from(row_where, exc))
            continue
        message.compacted_at = archived
        message.is_summary = index in summaries
        session.messages.append(message)
        last_message = max(last_message, values["created_at"])
        newest_model = values["model"] or newest_model
    session.last_active_at = (
        optional_time(row["last_accessed_at"], "last_accessed_at") or last_message
    )
    if context is not None:
        context.update(last_message=last_message, model=newest_model)
    # The session's model, else the newest message's that names one.
    model = model or newest_model
    if model:
        fields["model"] = model
    return session


def mark_summaries(rows: list[tuple[dict[str, Any], datetime | None]]) -> set[int]:
    """The places of the summaries koda wrote at compaction, restamped (see below).

    ``rows`` are messages' values with their archive time, in koda's order.
    koda's ``compact_session`` stamps the archived rows ``compacted_at =
    datetime('now')`` and, in the same transaction, inserts the summary as a
    ``system`` row without usage (then an ``assistant`` continuation hint). So
    a summary is the first such ``system`` row after rows archived at its own
    time -- or the next second, when the transaction crossed one. Its
    ``created_at`` becomes its archive's time, as Fleet's own compaction
    stamps both, so the transcript shows it with the messages it replaced.
    """
    archives: list[datetime] = []  # compaction times of the rows read so far
    summarised: set[datetime] = set()
    places: set[int] = set()
    for index, (values, archived) in enumerate(rows):
        if values["role"] == Role.SYSTEM and "usage" not in values:
            for moment in archives:
                if moment not in summarised and moment <= values["created_at"] <= moment + SECOND:
                    values["created_at"] = moment
                    summarised.add(moment)
                    places.add(index)
                    break
        if archived is not None and archived not in archives:
            archives.append(archived)
    return places


def _values(row: Any) -> tuple[dict[str, Any], datetime | None]:
    """A message row's values for ``source_message``, and its archive time."""
    values: dict[str, Any] = {
        "message_id": f"koda:{row['id']}",
        "role": to_text(row["role"]).strip().lower(),
        "content": row["content"],
        "tool_call_id": to_text(row["tool_call_id"]),
        "agent_name": to_text(row["agent_name"]),
        "model": to_text(row["model"]).strip(),
        "reasoning": to_text(row["thinking_content"]),
        "created_at": parse_time(row["created_at"], "created_at"),
    }
    if values["role"] == Role.ASSISTANT and row["has_completed_at"] and not row["completed_at"]:
        # A reply koda never finished (interrupted): kept, and left out of the
        # context view as koda's own load leaves it out.
        values["status"] = MESSAGE_INCOMPLETE
    full = row["full_content"]
    if full is not None and full != row["content"]:
        # The whole output, beside the shortened content koda sends the model.
        values["metadata"] = {"full_content": to_text(full)}
    if row["tool_calls"] not in (None, ""):
        try:
            values["tool_calls"] = json.loads(row["tool_calls"])
        except (TypeError, ValueError) as exc:
            raise BadRecord(f"tool_calls is not JSON ({exc})") from None
    counts = {name: to_count(row[column], column) for column, name in TOKEN_COLUMNS.items()}
    tokens = {name: count or 0 for name, count in counts.items()}
    # koda counts a row as an API call when its prompt or completion tokens are
    # not NULL, zero or not; a count in another column is never dropped.
    reported = counts["prompt_tokens"] is not None or counts["completion_tokens"] is not None
    if reported or any(tokens.values()):
        # koda's own usage shape (sessions.usage): input without cache tokens,
        # thinking as reasoning -- read by the same rule as the API's.
        values["usage"] = tokens
    return values, optional_time(row["compacted_at"], "compacted_at")
