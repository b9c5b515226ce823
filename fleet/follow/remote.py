"""The remote writer: a reader's ``SourceSession`` written to a Fleet server over its JSON API.

``payloads`` turns a record into the JSON bodies the API accepts -- the same
values ``sessions.importers.base.write_session`` hands the services locally,
so no format knowledge is written twice: the readers say what a store means,
this module only says how the API spells it. ``RemoteWriter.write`` sends
them, in the local writer's order:

1. ``GET /sessions/{key}``, only for a key the cursor has never seen: a 404
   means the write creates the session, so the record's ``new_fields`` go
   with it (a zeroclaw file's first modification time is its creation).
2. ``POST /sessions/{key}/messages`` with the messages the cursor says are
   not stored yet, in batches of at most ``batch`` (the server's
   ``FLEET_API_MAX_BATCH``; a 413 or a batch-size 422 halves it), each with
   the session fields (as the local writer's ``messages_append_all``) and
   ``"convention": "otel"`` (a reader's usage is already Fleet's). Every
   message carries its reader's deterministic ``message_id``: the server
   skips one it stores already (200, counted in ``skipped``), so a resend
   after a crash or a lost answer is harmless.
3. ``PUT /sessions/{key}`` with the fields, the store's reported totals and
   the store's ``last_active_at``: the append moves the activity time to the
   server's clock, the store's own time puts it back (the local writer passes
   it as the services' ``now``). An ending status without an ``ended_at``
   ends at the store's last activity, as locally.

4. Between 2. and 3.: ``POST /sessions/{key}/messages/archive`` with the
   compaction marks (``compacted_at``, ``is_summary``) of the messages read, when they are not
   the ones the cursor says Fleet holds (after the append: it archives
   stored messages only).

What the API cannot carry: ``seq``, the other trusted mark only an import
sets (``sessions.fields`` ``MESSAGE_TRUSTED_FIELDS``), and a summary without a
``message_id`` to name it by. A message that has one is sent without it and counted in
``RemoteOutcome.dropped``, as are the archive marks for a server without the
archive endpoint.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol
from urllib.parse import quote

from sessions.choices import ENDED_STATUSES
from sessions.importers.base import Problem, Since, SourceSession
from sessions.inputs import MessageIn, UsageIn

USAGE_KEYS = (
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "cache_read_tokens",
    "cache_creation_tokens",
)
DEFAULT_BATCH = 1000  # the server's default FLEET_API_MAX_BATCH


def json_value(value: Any) -> Any:
    """A reader's value as JSON: RFC 3339 times, exact decimal text for money."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return {str(name): json_value(item) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(item) for item in value]
    return value


def usage_payload(usage: UsageIn) -> dict[str, Any]:
    """A validated usage block in Fleet's names (send with ``"convention": "otel"``)."""
    data: dict[str, Any] = {name: getattr(usage, name) for name in USAGE_KEYS}
    if usage.cost_usd is not None:
        data["cost_usd"] = str(usage.cost_usd)
    return data


def message_payload(message: MessageIn) -> dict[str, Any]:
    """One message as the append's JSON: its client fields (``null`` ones too) and usage."""
    data = {name: json_value(value) for name, value in message.fields.items()}
    if message.usage is not None:
        data["usage"] = usage_payload(message.usage)
    return data


def dropped_marks(message: MessageIn) -> bool:
    """The message has a mark only an import sets that no request carries (``compacted_at``
    and ``is_summary`` go by ``POST .../messages/archive``)."""
    return message.seq is not None or (message.is_summary and not message.message_id)


def archive_marks(messages: Sequence[MessageIn]) -> list[dict[str, Any]]:
    """The compaction marks of ``messages`` (archive times, summaries), as
    ``POST .../messages/archive`` takes them."""
    marks = []
    for m in messages:
        if not m.message_id or (m.compacted_at is None and not m.is_summary):
            continue
        mark: dict[str, Any] = {"message_id": m.message_id}
        if m.compacted_at is not None:
            mark["compacted_at"] = json_value(m.compacted_at)
        if m.is_summary:
            mark["summary"] = True
        marks.append(mark)
    return marks


@dataclass(frozen=True)
class Payloads:
    """A record as the API's bodies (see the module docstring)."""

    key: str
    session: dict[str, Any]  # the fields (the append's ``session``)
    new_session: dict[str, Any]  # fields that apply only when the write creates the session
    upsert: dict[str, Any]  # the final PUT: fields, reported totals, last_active_at


def payloads(source: SourceSession, *, agent: str | None = None) -> Payloads:
    """``source``'s session as the API's bodies; ``agent`` overrides every session's agent.

    Its messages are ``message_payload`` each, made only for those sent (a
    poll compares every session; most send no message).
    """
    fields = dict(source.fields)
    if agent:
        fields["agent"] = agent
    last_active = source.last_active_at
    if fields.get("status") in ENDED_STATUSES and "ended_at" not in fields:
        fields["ended_at"] = last_active
    upsert = {**fields, **source.totals, "last_active_at": last_active}
    return Payloads(
        key=source.key,
        session=json_value(fields),
        new_session=json_value(source.new_fields),
        upsert=json_value(upsert),
    )


def fingerprint(value: Any) -> str:
    """A short stable hash of a JSON value (the cursor compares sessions by it)."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:24]


# --- the cursor of one session -------------------------------------------------


@dataclass
class Sent:
    """What Fleet holds of one session, as far as the cursor knows.

    ``count`` messages of the store, in its order, are acknowledged, the last
    of them ``last_id``; ``fields`` is the fingerprint of the last PUT
    acknowledged. ``refused`` is the signature of a version of the session the
    server refused (422, 410): it is not sent again until the store changes it
    or the follower restarts (it is not saved: a restart, say after the
    server's limit was raised, tries once more).
    """

    fields: str = ""
    count: int = 0
    last_id: str | None = None
    refused: str = ""
    # The reader's stamp and tail of the version Fleet holds (``SinceReader``).
    stamp: str = ""
    tail: dict[str, Any] | None = None
    archived: str = ""  # the fingerprint of the archive marks Fleet holds

    def as_json(self) -> dict[str, Any]:
        return {
            "fields": self.fields,
            "count": self.count,
            "last_id": self.last_id,
            "stamp": self.stamp,
            "tail": self.tail,
            "archived": self.archived,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Sent:
        return cls(
            fields=str(data.get("fields") or ""),
            count=int(data.get("count") or 0),
            last_id=data.get("last_id"),
            stamp=str(data.get("stamp") or ""),
            tail=data.get("tail") if isinstance(data.get("tail"), dict) else None,
            archived=str(data.get("archived") or ""),
        )

    def since(self) -> Since | None:
        """The cursor for a read since it, when Fleet holds the version it stamps.

        Its tail only when the count of messages acknowledged is the tail's
        (the messages not read are exactly those the cursor holds).
        """
        if not self.stamp:
            return None
        tail = self.tail
        if tail is not None and (tail.get("count"), tail.get("last_id")) != (
            self.count,
            self.last_id,
        ):
            tail = None
        return Since(self.stamp, tail)


def unsent(messages: Sequence[MessageIn], sent: Sent | None) -> int:
    """Where the messages the cursor has not seen acknowledged start.

    The store's first ``count`` messages are stored when the last of them is
    still the one acknowledged; otherwise the store was rewritten (a file
    truncated, rows deleted) and every message is sent again -- the server
    skips those it stores, by ``message_id``.
    """
    if sent is None or sent.count == 0 or sent.count > len(messages):
        return 0
    return sent.count if messages[sent.count - 1].message_id == sent.last_id else 0


def marks_fingerprint(marks: list[dict[str, Any]], before: Sent | None) -> str:
    """What ``Sent.archived`` says once ``marks`` are sent.

    A read after the cursor (``before``) has the marks of its rows only: those
    of the rows before are the cursor's (a mark among them reads the session
    whole, which sends them all again -- harmless).
    """
    if before is not None:
        return fingerprint([before.archived, marks]) if marks else before.archived
    return fingerprint(marks) if marks else ""


# --- sending ---------------------------------------------------------------------


class Transport(Protocol):
    """Sends one request; answers ``(status, decoded JSON)``. Retries are its business."""

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]: ...


def _is_fleet_error(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("error"), dict)


def session_path(key: str, suffix: str = "") -> str:
    return f"/sessions/{quote(key, safe='')}{suffix}"


def error_text(status: int, data: Any) -> str:
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        error = data["error"]
        where = f" ({error['field']})" if error.get("field") else ""
        return f"HTTP {status} {error.get('code')}: {error.get('message')}{where}"[:400]
    return f"HTTP {status}: {str(data)[:200]}"


@dataclass
class RemoteOutcome:
    key: str
    result: str  # "created", "updated", "unchanged" or "error"
    sent: Sent
    appended: int = 0
    skipped: int = 0
    dropped: int = 0
    problem: Problem | None = None


@dataclass
class RemoteWriter:
    """Writes records through a ``Transport`` (see the module docstring)."""

    transport: Transport
    agent: str | None = None
    batch: int = DEFAULT_BATCH
    log: Callable[[str], None] = field(default=lambda line: None)
    archives: bool = True  # False once the server proved it has no archive endpoint

    def write(self, source: SourceSession, sent: Sent | None = None) -> RemoteOutcome:
        """Send what ``source`` has that ``sent`` (the cursor) says Fleet lacks.

        A record read after the cursor (``source.offset``: its first messages
        were not read) needs the cursor to hold exactly those; otherwise it is
        refused here, and its session is read whole next time (the follower
        keeps no stamp for a session in error).
        """
        body = payloads(source, agent=self.agent)
        offset = source.offset
        if offset and (sent is None or sent.count != offset):
            problem = Problem(source.where, "the cursor does not hold the messages not read")
            return RemoteOutcome(source.key, "error", sent or Sent(), problem=problem)
        messages = source.messages
        start = offset if offset else unsent(messages, sent)
        total = offset + len(messages)
        fields_print = fingerprint(body.upsert)
        held = sent.last_id if offset and sent is not None else None  # the last not read
        last_id = messages[-1].message_id if messages else held
        marks = archive_marks(messages)
        marks_print = marks_fingerprint(marks, sent if offset else None)
        signature = f"{fields_print}:{total}:{last_id}:{marks_print}"
        if sent is not None:
            if sent.refused == signature:
                return RemoteOutcome(source.key, "unchanged", sent)
            if start == total and sent.fields == fields_print and sent.archived == marks_print:
                return RemoteOutcome(source.key, "unchanged", sent)
        path = session_path(source.key)
        creating = False
        if sent is None:
            status, data = self.transport.call("GET", path)
            if status == 404:
                creating = True
            elif status != 200:
                return self._refused(source, sent, signature, status, data)
        session_fields = {**body.new_session, **body.session} if creating else body.session
        progress = Sent(
            fields=sent.fields if sent else "",
            count=start,
            last_id=messages[start - offset - 1].message_id if start > offset else held,
            archived=sent.archived if sent else "",
        )
        outcome = RemoteOutcome(source.key, "created" if creating else "updated", progress)
        outcome.dropped = sum(dropped_marks(m) for m in messages[start - offset :])
        position = start
        while position < total:
            at = position - offset
            chunk = [message_payload(m) for m in messages[at : at + self.batch]]
            status, data = self.transport.call(
                "POST",
                session_path(source.key, "/messages"),
                {"messages": chunk, "session": session_fields, "convention": "otel"},
            )
            if self._batch_too_big(status, data) and self.batch > 1:
                self.batch = max(1, self.batch // 2)
                self.log(f"the server refused a batch of {len(chunk)}; sending {self.batch}")
                continue
            if status not in (200, 201):
                return self._refused(source, progress, signature, status, data, outcome)
            outcome.appended += int(data.get("appended", 0)) if isinstance(data, dict) else 0
            outcome.skipped += int(data.get("skipped", 0)) if isinstance(data, dict) else 0
            position += len(chunk)
            progress.count = position
            progress.last_id = messages[position - offset - 1].message_id
        if marks_print != progress.archived:
            refused = self._archive(source, marks, outcome)
            if refused is not None:
                status, data = refused
                return self._refused(source, progress, signature, status, data, outcome)
            progress.archived = marks_print
        upsert = {**body.new_session, **body.upsert} if creating else body.upsert
        status, data = self.transport.call("PUT", path, upsert)
        if status not in (200, 201):
            return self._refused(source, progress, signature, status, data, outcome)
        progress.fields = fields_print
        progress.refused = ""
        return outcome

    def _archive(
        self, source: SourceSession, marks: list[dict[str, Any]], outcome: RemoteOutcome
    ) -> tuple[int, Any] | None:
        """Send the archive marks (stored messages skip any they hold); the refusal, if any.

        A server without the endpoint (older than it: the path is then the
        session's, which answers 405; a 404 not in Fleet's error shape: no such
        path) is told once in the log, and its marks are counted in ``dropped``
        from then on.
        """
        position = 0
        while position < len(marks) and self.archives:
            chunk = marks[position : position + self.batch]
            status, data = self.transport.call(
                "POST", session_path(source.key, "/messages/archive"), {"messages": chunk}
            )
            if self._batch_too_big(status, data) and self.batch > 1:
                self.batch = max(1, self.batch // 2)
                continue
            if status == 405 or (status == 404 and not _is_fleet_error(data)):
                self.archives = False
                self.log("this Fleet cannot archive messages: koda's archive marks are left out")
                break
            if status != 200:
                return status, data
            position += len(chunk)
        if not self.archives:
            outcome.dropped += len(marks)
        return None

    @staticmethod
    def _batch_too_big(status: int, data: Any) -> bool:
        if status == 413:
            return True
        error = data.get("error") if isinstance(data, dict) else None
        return (
            status == 422
            and isinstance(error, dict)
            and error.get("field") == "messages"
            and "at most" in str(error.get("message"))
        )

    @staticmethod
    def _refused(
        source: SourceSession,
        sent: Sent | None,
        signature: str,
        status: int,
        data: Any,
        outcome: RemoteOutcome | None = None,
    ) -> RemoteOutcome:
        kept = sent or Sent()
        kept.refused = signature
        problem = Problem(source.where, f"refused by Fleet: {error_text(status, data)}")
        result = RemoteOutcome(source.key, "error", kept, problem=problem)
        if outcome is not None:
            result.appended, result.skipped = outcome.appended, outcome.skipped
        return result
