"""zeroclaw: a folder of JSONL session files, or a SQLite ``sessions.db``.

**JSONL** (PATH is a folder): one ``<session key>.jsonl`` file per session,
one ``{"role": ..., "content": ...}`` object per line. Blank lines are
skipped (zeroclaw writes none, but tolerates them); a line that is not such an
object is reported with ``file:line`` and skipped. zeroclaw keeps no times in
these files: the session's last activity and every message's time are the
file's modification time when it is read, and so is the session's creation
when the import creates it (a re-import after the file grew keeps it).

**SQLite** (PATH is a file): ``sessions`` (autoincrement ``id``,
``session_key``, ``role``, ``content``, ``created_at`` RFC 3339) and
``session_metadata`` (``session_key``, ``created_at``, ``last_activity``,
``message_count``, ``name``, ``state``, ``turn_id``, ``turn_started_at``,
``agent_alias``, ``channel_id``, ``room_id``, ``sender_id``). Columns that
older zeroclaw versions lack read as empty. A key with messages but no
metadata row is a session from its first to its last message.
``message_count`` is checked against the messages imported: a mismatch (or
an unreadable count) is reported as a warning, the session imported.

What carries over: the name; the turn state (``idle``/``running``/``error``;
``running`` and ``error`` with the turn's id and start -- the turn under way,
or the one that failed; a state Fleet does not know, such as ``paused``,
leaves the state as it is, is kept in metadata ``source_state`` and reported
as a warning -- the session is imported all the same); the routing context (``channel_id`` is the
``<type>.<alias>`` channel reference, e.g. ``discord.clamps``; room and sender
ids); the agent is the session's ``agent_alias`` (zeroclaw runs several
agents under aliases), else ``zeroclaw``, unless ``--agent`` says. The channel
is the reference's type, or else the key's prefix (``telegram_123`` is a
Telegram session) when it names one of Fleet's channels. zeroclaw has no
session status: new sessions are ``active`` (``reconcile`` decides later),
and a re-import leaves the status Fleet gave them.

Messages hold only role and content. With native tool calling zeroclaw stores
an assistant's calls as JSON content ``{"content": ..., "tool_calls": [...]}``
and a result as ``{"tool_call_id": ..., "content": ...}``; these are unpacked.
A ``tool`` message with no call id gets the id ``unknown`` (the context view
then leaves it out as a result without its call; the full view shows it).

Message ids (idempotency): SQLite rows are ``zeroclaw:<row id>``. JSONL lines
have no ids and files only grow at the end, so a line is
``zeroclaw:L<line number>:<hash of role and content>``: a re-import skips the
lines it stored; a line whose text changed is stored again as new.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterator, Mapping
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from sessions.choices import Channel, Role, State
from sessions.errors import FleetError
from sessions.importers.base import (
    BadRecord,
    Problem,
    Since,
    SourceError,
    SourceSession,
    Unchanged,
    known_choice,
    open_sqlite,
    optional_time,
    parse_time,
    problem_from,
    select_sql,
    source_message,
    stamp_of,
    to_count,
    to_text,
)
from sessions.inputs import MessageIn

UNPAIRED_CALL_ID = "unknown"
META_COLUMNS = (
    "session_key",
    "created_at",
    "last_activity",
    "name",
    "state",
    "turn_id",
    "turn_started_at",
    "agent_alias",
    "channel_id",
    "room_id",
    "sender_id",
    "message_count",
)
MESSAGE_COLUMNS = ("id", "session_key", "role", "content", "created_at")


def read(path: Path) -> Iterator[SourceSession | Problem]:
    if path.is_dir():
        return read_folder(path)
    return read_database(path)


# --- messages -------------------------------------------------------------------


def _unpack(role: str, content: Any) -> dict[str, Any]:
    """A message's fields from zeroclaw's role and content (see the module docstring)."""
    values: dict[str, Any] = {"role": role, "content": content}
    if role in (Role.ASSISTANT, Role.TOOL) and isinstance(content, str) and content[:1] == "{":
        try:
            packed = json.loads(content)
        except ValueError:
            packed = None
        if isinstance(packed, dict):
            if role == Role.ASSISTANT and isinstance(packed.get("tool_calls"), list):
                values["tool_calls"] = packed["tool_calls"]
                values["content"] = packed.get("content")
            elif role == Role.TOOL and isinstance(packed.get("tool_call_id"), str):
                values["tool_call_id"] = packed["tool_call_id"]
                values["content"] = packed.get("content")
    if role == Role.TOOL and not values.get("tool_call_id"):
        values["tool_call_id"] = UNPAIRED_CALL_ID
    if values["content"] is not None and not isinstance(values["content"], str):
        values["content"] = json.dumps(values["content"], ensure_ascii=False)
    return values


def _message(message_id: str, role: Any, content: Any, created_at: datetime) -> MessageIn:
    role = to_text(role).strip().lower()
    values = _unpack(role, content)
    values.update(message_id=message_id, created_at=created_at)
    return source_message(values)


def _line_id(number: int, role: Any, content: Any) -> str:
    text = json.dumps([role, content], ensure_ascii=False)
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"zeroclaw:L{number}:{digest}"


# --- routing context ------------------------------------------------------------


def _channel(channel_ref: str, key: str) -> str:
    for candidate in (channel_ref.split(".", 1)[0], key.split("_", 1)[0]):
        if candidate.lower() in Channel.values:
            return candidate.lower()
    return ""


# --- JSONL folder -------------------------------------------------------------


def read_folder(
    folder: Path, *, complete_lines: bool = False, only: Collection[str] | None = None
) -> Iterator[SourceSession | Problem]:
    """The folder's sessions. For ``fleet-follow``, reading while zeroclaw
    writes: with ``complete_lines`` a last line without its newline is still
    being written and is left for the next read; ``only`` names the files to
    read (those that changed since its last read)."""
    files = sorted(p for p in folder.iterdir() if p.suffix == ".jsonl" and p.is_file())
    if not files:
        hint = ""
        if (folder / "sessions.db").is_file():
            hint = f"; to import its SQLite store, pass {folder / 'sessions.db'}"
        raise SourceError(f"{folder} holds no zeroclaw session files (*.jsonl){hint}")
    for file in files:
        if only is None or file.name in only:
            yield _read_file(file, complete_lines=complete_lines)


def _read_file(file: Path, *, complete_lines: bool = False) -> SourceSession | Problem:
    try:
        mtime = datetime.fromtimestamp(file.stat().st_mtime, UTC)
        handle = file.open(encoding="utf-8", errors="surrogateescape", newline="")
    except OSError as exc:
        return Problem(file.name, f"cannot read the file: {exc.strerror or exc}")
    key = file.stem
    session = SourceSession(
        key=key,
        where=file.name,
        last_active_at=mtime,
        fields={"agent": "zeroclaw"},
        new_fields={"created_at": mtime},
    )
    channel = _channel("", key)
    if channel:
        session.fields["channel"] = channel
    with handle:
        for number, line in enumerate(handle, 1):
            if complete_lines and not line.endswith("\n"):
                break
            if not line.strip():
                continue
            where = f"{file.name}:{number}"
            try:
                entry = json.loads(line)
            except ValueError as exc:
                session.problems.append(Problem(where, f"not JSON ({exc})"))
                continue
            if not isinstance(entry, dict) or "role" not in entry:
                session.problems.append(Problem(where, "not a message object with a role"))
                continue
            role, content = entry.get("role"), entry.get("content")
            try:
                session.messages.append(
                    _message(_line_id(number, role, content), role, content, mtime)
                )
            except FleetError as exc:
                session.problems.append(problem_from(where, exc))
    return session


# --- SQLite sessions.db -------------------------------------------------------


# Part of every stamp of a sessions.db session: bump it when the reader reads
# the same rows differently.
STAMP_VERSION = "zeroclaw-db-1"


def read_database(path: Path) -> Iterator[SourceSession | Problem]:
    return cast(Iterator[SourceSession | Problem], _read_database(path, None))


def read_since(
    path: Path, since: Mapping[str, Since]
) -> Iterator[SourceSession | Problem | Unchanged]:
    """``fleet-follow``'s read of a ``sessions.db``: a session whose stamp (its
    ``session_metadata`` row and its messages' count, greatest and summed ids and
    latest ``created_at``, from one ``GROUP BY`` in the read's transaction) is the
    cursor's is ``Unchanged``; any other is read whole, as ``read`` reads it. A
    folder is read whole (the follower reads only its changed files)."""
    if path.is_dir():
        return read_folder(path)
    return _read_database(path, since)


def _read_database(
    path: Path, since: Mapping[str, Since] | None
) -> Iterator[SourceSession | Problem | Unchanged]:
    conn = open_sqlite(
        path,
        label="zeroclaw",
        tables={
            "sessions": MESSAGE_COLUMNS,
            "session_metadata": ("session_key", "created_at", "last_activity"),
        },
    )
    with closing(conn):
        activity: dict[Any, tuple[Any, ...]] = {}
        aggregate = "SELECT COUNT(*), MAX(id), TOTAL(id), MAX(created_at) FROM sessions"
        if since is not None:
            conn.execute("BEGIN")  # one snapshot: a stamp is of the rows read
            activity = {
                row[0]: tuple(row[1:])
                for row in conn.execute(
                    "SELECT session_key, COUNT(*), MAX(id), TOTAL(id), MAX(created_at) "
                    "FROM sessions GROUP BY session_key"
                )
            }
        keys = [
            row[0]
            for row in conn.execute(
                "SELECT session_key FROM session_metadata UNION "
                "SELECT session_key FROM sessions ORDER BY 1"
            )
        ]
        meta_sql = select_sql(conn, "session_metadata", META_COLUMNS, "WHERE session_key = ?")
        message_sql = select_sql(
            conn, "sessions", MESSAGE_COLUMNS, "WHERE session_key = ? ORDER BY id"
        )
        for key in keys:
            where = f"{path.name}: session_key={key!r}"
            meta = conn.execute(meta_sql, (key,)).fetchone()
            stamp = ""
            if since is not None:
                counts = activity.get(key)
                if counts is None:  # no messages, or a key SQL matches but Python does not
                    counts = tuple(
                        conn.execute(f"{aggregate} WHERE session_key = ?", (key,)).fetchone()
                    )
                stamp = stamp_of(STAMP_VERSION, key, None if meta is None else tuple(meta), counts)
                cursor = since.get(to_text(key))
                if cursor is not None and cursor.stamp == stamp:
                    yield Unchanged(to_text(key))
                    continue
            rows = conn.execute(message_sql, (key,)).fetchall()
            try:
                session = _session_from_db(path, key, where, meta, rows)
            except BadRecord as exc:
                yield Problem(where, str(exc))
                continue
            session.stamp = stamp
            yield session


def _session_from_db(path: Path, key: Any, where: str, meta: Any, rows: list[Any]) -> SourceSession:
    key = to_text(key)
    session = SourceSession(key=key, where=where, last_active_at=datetime.min.replace(tzinfo=UTC))
    times: list[datetime] = []
    for row in rows:
        row_where = f"{path.name}: sessions id={row['id']}"
        try:
            created_at = parse_time(row["created_at"], "created_at")
            session.messages.append(
                _message(f"zeroclaw:{row['id']}", row["role"], row["content"], created_at)
            )
            times.append(created_at)
        except BadRecord as exc:
            session.problems.append(Problem(row_where, str(exc)))
        except FleetError as exc:
            session.problems.append(problem_from(row_where, exc))

    fields: dict[str, Any] = {"agent": "zeroclaw"}
    if meta is not None:
        fields["created_at"] = parse_time(meta["created_at"], "created_at")
        session.last_active_at = parse_time(meta["last_activity"], "last_activity")
        if meta["name"]:
            fields["name"] = to_text(meta["name"])
        if meta["agent_alias"]:
            fields["agent"] = to_text(meta["agent_alias"])
        channel_ref = to_text(meta["channel_id"]).strip()
        fields["channel_ref"] = channel_ref
        fields["room_id"] = to_text(meta["room_id"]).strip()
        fields["sender_id"] = to_text(meta["sender_id"]).strip()
        state = None
        if to_text(meta["state"]).strip():
            state = known_choice(
                meta["state"],
                "state",
                State,
                fields=fields,
                warnings=session.warnings,
                where=f"{path.name}: session_metadata session_key={key!r}",
            )
        if state is not None:
            fields["state"] = state
            # ``running`` is the turn under way, ``error`` the turn that failed:
            # both keep it (``idle`` has none, and the services clear it).
            if state in (State.RUNNING, State.ERROR):
                fields["turn_id"] = to_text(meta["turn_id"])
                started = optional_time(meta["turn_started_at"], "turn_started_at")
                if started is not None:
                    fields["turn_started_at"] = started
    elif times:
        fields["created_at"] = min(times)
        session.last_active_at = max(times)
    else:
        raise BadRecord("no metadata and no readable message: nothing to import")
    channel = _channel(fields.get("channel_ref", ""), key)
    if channel:
        fields["channel"] = channel
    session.fields = fields
    if meta is not None:
        _check_message_count(session, meta, f"{path.name}: session_metadata session_key={key!r}")
    return session


def _check_message_count(session: SourceSession, meta: Any, where: str) -> None:
    """zeroclaw's ``message_count`` against the messages imported: a mismatch is a warning."""
    try:
        count = to_count(meta["message_count"], "message_count")
    except BadRecord as exc:
        session.warnings.append(Problem(where, str(exc)))
        return
    imported = len(session.messages)
    if count is not None and count != imported:
        session.warnings.append(
            Problem(
                where,
                f"message_count is {count}, {imported} message{'' if imported == 1 else 's'} "
                "imported",
            )
        )
