"""appam: SQLite ``session_history``, one row per session with its messages as JSON.

Columns (DESIGN "Stores we import"): ``id``, ``agent_name``, ``model``,
``messages`` (a JSON array of chat messages: ``role``, ``content``, ``name``,
``tool_call_id``, ``tool_calls``, ``reasoning``, ``timestamp``, ``id``,
``provider_response_id``, ``status``, …), ``started_at``, ``updated_at``,
``ended_at`` (RFC 3339), ``turn_count``, ``tool_call_count`` and ``usage``
(JSON: ``total_input_tokens``, ``total_output_tokens``,
``total_cache_creation_tokens``, ``total_cache_read_tokens``,
``total_reasoning_tokens``, ``total_cost_usd``, ``request_count``). Older
appam versions have no ``usage`` column: such sessions keep the totals their
messages give.

How it is read:

* appam's messages carry no per-message usage; its ``usage`` JSON and its
  turn and tool-call counts are the session's totals (appam computes and
  prices them itself, so its cost is reported cost). They are set after the
  messages, so they win over what the messages alone would count.
* Token convention: appam adds up what each provider reports, unchanged.
  Anthropic's input excludes cache reads and writes; OpenAI's (Chat,
  Responses, Codex) and OpenRouter's include cached input; Gemini (Vertex)
  reports no cache tokens. The usage fields decide, never the model name (a
  gateway or a fine-tune hides the provider): cache writes, which only
  appam's Anthropic clients report, or cache reads above the input, which
  only an input without them allows, mean an Anthropic-style input, and the
  cache tokens are added to the prompt. Cache reads alone, within the input,
  are taken as part of it -- the way appam's own pricing reads its totals
  (billable input = input - cache reads); an Anthropic session that only
  read a cache another session wrote is then under-counted by its reads,
  which its totals cannot show. Reasoning above output was counted apart and
  is added to completion.
* ``ended_at`` set means the session ended: ``completed``. Without it the
  session is new and ``active``, or keeps the status Fleet gave it.
* A message's ``id`` (a string, or a number as its decimal text) is its
  ``message_id``, so a re-import after appam rewrote its messages array, and
  an appam that later reports to Fleet with the same ids, never duplicate;
  without one it is
  ``appam:<index>:<hash of role and content>`` (appam rewrites the array,
  only ever appending). ``timestamp`` is its time, else the previous
  message's, else the session's start. Content given as a list of parts has
  its text parts joined; when it holds anything else (an image, a part with
  more than its text), the list as appam holds it is kept in the message's
  metadata ``content``. Every other key of appam's message that Fleet has no
  field for (``raw_content_blocks``, ``tool_metadata``, …) is kept in the
  metadata under its own name; metadata past ``FLEET_MAX_METADATA_BYTES`` is
  left out with a warning, the message imported all the same. A message
  that does not read is reported and skipped; a ``messages`` column that
  is not a JSON array skips the session (importing its totals without its
  transcript would half-write it).
* The agent is ``agent_name``, else ``appam``, unless ``--agent`` says; the
  kind is ``autonomous``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from sessions.choices import Kind, Status
from sessions.errors import FleetError
from sessions.importers.base import (
    BadRecord,
    Problem,
    Since,
    SourceSession,
    Unchanged,
    completion_with_reasoning,
    open_sqlite,
    optional_time,
    parse_time,
    problem_from,
    select_sql,
    source_message_keeping,
    stamp_of,
    to_count,
    to_text,
    to_usd,
)

TABLE = "session_history"
REQUIRED = ("id", "messages", "started_at")
COLUMNS = (
    "id",
    "agent_name",
    "model",
    "messages",
    "started_at",
    "updated_at",
    "ended_at",
    "turn_count",
    "tool_call_count",
    "usage",
)
MESSAGE_KEYS = ("name", "tool_call_id", "tool_calls", "provider_response_id", "status")
# The keys of an appam message Fleet reads into its own fields; any other
# (raw_content_blocks, tool_metadata, …) is kept in the message's metadata.
READ_KEYS = frozenset({"role", "content", "id", "timestamp", "reasoning", *MESSAGE_KEYS})


# Part of every stamp: bump it when the reader reads the same row differently.
STAMP_VERSION = "appam-1"


def read(path: Path) -> Iterator[SourceSession | Problem]:
    return cast(Iterator[SourceSession | Problem], _read(path, None))


def read_since(
    path: Path, since: Mapping[str, Since]
) -> Iterator[SourceSession | Problem | Unchanged]:
    """``fleet-follow``'s read: a row whose stamp (a hash of its columns, the
    messages JSON text included: nothing parsed) is the cursor's is ``Unchanged``;
    any other is read as ``read`` reads it (appam rewrites a session's row whole)."""
    return _read(path, since)


def _read(
    path: Path, since: Mapping[str, Since] | None
) -> Iterator[SourceSession | Problem | Unchanged]:
    conn = open_sqlite(path, label="appam", tables={TABLE: REQUIRED})
    with closing(conn):
        for row in conn.execute(select_sql(conn, TABLE, COLUMNS, "ORDER BY started_at, id")):
            where = f"{path.name}: {TABLE} id={row['id']!r}"
            stamp = ""
            if since is not None:
                stamp = stamp_of(STAMP_VERSION, tuple(row))
                key = to_text(row["id"])
                cursor = since.get(key)
                if key.strip() and cursor is not None and cursor.stamp == stamp:
                    yield Unchanged(key)
                    continue
            try:
                session = session_from_row(row, where)
            except BadRecord as exc:
                yield Problem(where, str(exc))
                continue
            session.stamp = stamp
            yield session


def _json(value: Any, name: str) -> Any:
    if value is None or value == "":
        return None
    try:
        return json.loads(value)
    except (TypeError, ValueError) as exc:
        raise BadRecord(f"{name} is not JSON ({exc})") from None


def session_from_row(row: Any, where: str) -> SourceSession:
    key = to_text(row["id"])
    if not key.strip():
        raise BadRecord("id is empty")
    started = parse_time(row["started_at"], "started_at")
    ended = optional_time(row["ended_at"], "ended_at")
    updated = optional_time(row["updated_at"], "updated_at") or ended or started
    model = to_text(row["model"])
    fields: dict[str, Any] = {
        "agent": to_text(row["agent_name"]).strip() or "appam",
        "kind": Kind.AUTONOMOUS,
        "model": model,
        "created_at": started,
    }
    if ended is not None:
        fields.update(status=Status.COMPLETED, ended_at=ended)
    messages = _json(row["messages"], "messages")
    if messages is None:
        messages = []
    if not isinstance(messages, list):
        raise BadRecord("messages is not a JSON array")
    session = SourceSession(key=key, where=where, last_active_at=updated, fields=fields)
    session.totals = _totals(row)
    moment = started
    for index, raw in enumerate(messages):
        item_where = f"{where} messages[{index}]"
        try:
            message = source_message_keeping(
                _values(raw, index, moment), where=item_where, warnings=session.warnings
            )
        except BadRecord as exc:
            session.problems.append(Problem(item_where, str(exc)))
            continue
        except FleetError as exc:
            session.problems.append(problem_from(item_where, exc))
            continue
        moment = message.created_at or moment
        session.messages.append(message)
    return session


def _text(content: Any) -> Any:
    """Content as text: a list of parts (``{"type": "text", "text": ...}``) is joined."""
    if isinstance(content, list):
        texts = [
            part["text"] if isinstance(part, dict) else part
            for part in content
            if isinstance(part, str)
            or (isinstance(part, dict) and isinstance(part.get("text"), str))
        ]
        return "\n".join(texts)
    return content


def _only_text(content: list[Any]) -> bool:
    """Whether joining ``content``'s parts keeps all of it: strings and bare text parts."""
    return all(
        isinstance(part, str)
        or (
            isinstance(part, dict)
            and isinstance(part.get("text"), str)
            and part.keys() <= {"type", "text"}
            and part.get("type", "text") == "text"
        )
        for part in content
    )


def _values(raw: Any, index: int, previous: datetime) -> dict[str, Any]:
    """An appam message's values for ``source_message``."""
    if not isinstance(raw, dict):
        raise BadRecord("not a message object")
    role = raw.get("role")
    content = _text(raw.get("content"))
    message_id = raw.get("id")
    if isinstance(message_id, int) and not isinstance(message_id, bool):
        message_id = str(message_id)  # a numeric id is appam's id all the same
    if not isinstance(message_id, str) or not message_id.strip():
        text = json.dumps([role, content], ensure_ascii=False, sort_keys=True)
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        message_id = f"appam:{index}:{digest}"
    values: dict[str, Any] = {
        "message_id": message_id,
        "role": role.strip().lower() if isinstance(role, str) else role,
        "content": content,
        "created_at": optional_time(raw.get("timestamp"), "timestamp") or previous,
    }
    for name in MESSAGE_KEYS:
        if raw.get(name) is not None:
            values[name] = raw[name]
    reasoning = raw.get("reasoning")
    if reasoning is not None:
        values["reasoning"] = reasoning if isinstance(reasoning, str) else json.dumps(reasoning)
    metadata = {
        name: value for name, value in raw.items() if name not in READ_KEYS and value is not None
    }
    parts = raw.get("content")
    if isinstance(parts, list) and not _only_text(parts):
        metadata["content"] = parts  # the parts as appam holds them, in their order
    if metadata:
        values["metadata"] = metadata
    return values


def input_excludes_cache(prompt: int, cache_read: int, cache_creation: int) -> bool:
    """Whether appam's summed input leaves its cache tokens out (Anthropic style).

    Read from the usage fields alone (see the module docstring): cache writes
    come only from appam's Anthropic clients, and reads above the input only
    from an input without them. Reads alone, within the input, are part of it,
    as appam's own pricing takes them (it bills input minus cache reads).
    """
    return cache_creation > 0 or cache_read > prompt


def _totals(row: Any) -> dict[str, Any]:
    totals: dict[str, Any] = {}
    for column, name in (("turn_count", "turns"), ("tool_call_count", "tool_call_count")):
        value = to_count(row[column], column)
        if value is not None:
            totals[name] = value
    usage = _json(row["usage"], "usage")
    if usage is None:
        return totals
    if not isinstance(usage, dict):
        raise BadRecord("usage is not a JSON object")

    def count(name: str) -> int:
        return to_count(usage.get(name), f"usage.{name}") or 0

    prompt = count("total_input_tokens")
    cache_read = count("total_cache_read_tokens")
    cache_creation = count("total_cache_creation_tokens")
    reasoning = count("total_reasoning_tokens")
    if input_excludes_cache(prompt, cache_read, cache_creation):
        prompt += cache_read + cache_creation
    totals.update(
        prompt_tokens=prompt,
        completion_tokens=completion_with_reasoning(count("total_output_tokens"), reasoning),
        reasoning_tokens=reasoning,
        cache_read_tokens=cache_read,
        cache_creation_tokens=cache_creation,
    )
    if "request_count" in usage:
        totals["api_calls"] = count("request_count")
    cost = to_usd(usage.get("total_cost_usd"), "usage.total_cost_usd")
    if cost is not None:
        totals["cost_usd"] = cost
    return totals
