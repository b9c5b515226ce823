"""What every importer shares: the records a reader yields, the write path, the report.

A reader (one module per format) turns a store into ``SourceSession`` records
-- a session's fields, its messages already validated one by one, and the
totals the store reports -- and ``Problem`` records for what it could not read
(a corrupt row or line, with its location). ``write_session`` writes one
record through ``sessions.services`` in one transaction: the whole session or,
when anything about the session itself is refused, nothing of it. A corrupt
message row is skipped by the reader and reported; the rest of its session is
imported (its neighbours keep their order).

Idempotency: every imported message carries a ``message_id`` derived from its
place in the store (each reader says how), so a second import skips what the
first stored; session fields are set to the values they already have, and the
session's activity time is the store's (``now`` of the services is the store's
last activity, never the clock), so nothing moves on a re-import. Messages the
store archived since they were imported are archived at the store's time
(koda's compaction); none is ever un-archived.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from django.db import DatabaseError, transaction
from django.db.models import TextChoices

from sessions import services
from sessions.errors import FleetError, InvalidInput
from sessions.inputs import MessageIn, TurnIn, clean_message
from sessions.models import Session


class SourceError(Exception):
    """The store cannot be read at all: a missing path, not a store of that format."""


class BadRecord(ValueError):
    """One row or line of the store is corrupt; the reader reports it and goes on."""


@dataclass(frozen=True)
class Problem:
    """Something that was not imported, and where it is in the store."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def problem_from(where: str, exc: Exception) -> Problem:
    if isinstance(exc, FleetError):
        message = f"{exc.field}: {exc.message}" if exc.field else exc.message
    else:
        message = str(exc) or type(exc).__name__
    return Problem(where, message)


@dataclass
class SourceSession:
    """One session as a store holds it, ready for the services.

    ``fields`` are session fields for ``session_upsert`` (``created_at``
    included, ``last_active_at`` never: the store's last activity is
    ``last_active_at`` and is passed as the services' ``now``, so a re-import
    never moves it). ``totals`` are totals the store reports itself (zeph,
    appam, a Fleet export); they are set after the messages are appended.
    ``new_fields`` apply only when the import creates the session (a zeroclaw
    JSONL file's modification time is the session's creation only the first
    time it is read).
    """

    key: str
    where: str
    last_active_at: datetime
    fields: dict[str, Any] = field(default_factory=dict)
    messages: list[MessageIn] = field(default_factory=list)
    totals: dict[str, Any] = field(default_factory=dict)
    # Finished turns the store records (a Fleet export): recorded after the
    # messages, each once (``services.turns_record``).
    turns: list[TurnIn] = field(default_factory=list)
    new_fields: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    # Imported all the same, with a fallback (``known_choice``): reported, exit 0.
    warnings: list[Problem] = field(default_factory=list)
    # A read since a cursor (``SinceReader``): the fingerprint of the rows read;
    # ``offset``: the first messages, which the cursor holds, were not read
    # (``messages`` are those after them); ``tail``: what the next read since
    # needs to read only the rows after these (JSON; ``None``: read it whole).
    stamp: str = ""
    offset: int = 0
    tail: dict[str, Any] | None = None


@dataclass(frozen=True)
class Since:
    """A session's cursor for a read since it: the ``stamp`` and ``tail`` of its last read."""

    stamp: str
    tail: Mapping[str, Any] | None = None


def stamp_of(*parts: Any) -> str:
    """A short hash of values read from a store (a ``SinceReader``'s stamp)."""
    text = repr(parts)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:24]


@dataclass(frozen=True)
class Unchanged:
    """A session a read since a cursor skipped: its rows still have the cursor's stamp."""

    key: str


Reader = Callable[[Path], Iterator["SourceSession | Problem"]]
# ``fleet-follow``'s read of a store: ``since`` maps session keys to their
# cursor; a session whose rows still have its stamp is ``Unchanged``.
SinceReader = Callable[
    [Path, Mapping[str, "Since"]], Iterator["SourceSession | Problem | Unchanged"]
]


@dataclass(frozen=True)
class SessionOutcome:
    key: str
    where: str
    result: str  # "created", "updated", "unchanged" or "error"
    appended: int = 0
    skipped: int = 0
    problem: Problem | None = None


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


@dataclass
class ImportReport:
    format: str
    path: str
    dry_run: bool = False
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    messages: int = 0
    skipped: int = 0
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    @property
    def sessions(self) -> int:
        return self.created + self.updated + self.unchanged

    def add(self, outcome: SessionOutcome) -> None:
        if outcome.problem is not None:
            self.errors.append(outcome.problem)
            return
        setattr(self, outcome.result, getattr(self, outcome.result) + 1)
        self.messages += outcome.appended
        self.skipped += outcome.skipped

    def line(self) -> str:
        verb = "Would import" if self.dry_run else "Imported"
        return (
            f"{verb} {_plural(self.sessions, 'session')} ({self.created} new, "
            f"{self.updated} updated, {self.unchanged} unchanged) with "
            f"{_plural(self.messages, 'message')} from {self.format} store {self.path}; "
            f"{self.skipped} skipped as already stored, {_plural(len(self.errors), 'error')}"
            + (f", {_plural(len(self.warnings), 'warning')}." if self.warnings else ".")
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "path": self.path,
            "dry_run": self.dry_run,
            "sessions": self.sessions,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "messages": self.messages,
            "skipped": self.skipped,
            "errors": [{"where": p.where, "message": p.message} for p in self.errors],
            "warnings": [{"where": p.where, "message": p.message} for p in self.warnings],
        }


# --- the write path -------------------------------------------------------------


def _snapshot(key: str) -> Mapping[str, Any] | None:
    return Session.objects.filter(key=key).values().first()


def write_session(
    source: SourceSession, *, agent: str | None = None, dry_run: bool = False
) -> SessionOutcome:
    """Write one session, its messages and reported totals in one transaction.

    Messages go first (their usage adds to the totals), then the store's own
    totals are set exactly: a store's totals are its spending history, which
    may exceed what its messages show (purged or unrecorded calls). With
    ``dry_run`` the transaction is rolled back, so the counts are the ones a
    real import would give and nothing is written.
    """
    fields = dict(source.fields)
    if agent:
        fields["agent"] = agent
    now = source.last_active_at
    try:
        with transaction.atomic():
            before = _snapshot(source.key)
            if before is None:
                fields = {**source.new_fields, **fields}
            appended = skipped = archived = 0
            if source.messages:
                result = services.messages_append_all(
                    key=source.key, messages=source.messages, session=fields, now=now
                )
                appended, skipped = result.appended, result.skipped
                if skipped:
                    archived = _archive_stored(source)
                if source.totals:
                    services.session_upsert(key=source.key, fields=source.totals, now=now)
            else:
                services.session_upsert(key=source.key, fields={**fields, **source.totals}, now=now)
            turns = services.turns_record(key=source.key, turns=source.turns)
            after = _snapshot(source.key)
            if dry_run:
                transaction.set_rollback(True)
    except (FleetError, DatabaseError) as exc:
        return SessionOutcome(
            source.key, source.where, "error", problem=problem_from(source.where, exc)
        )
    if before is None:
        result_name = "created"
    elif before != after or archived or turns:
        result_name = "updated"
    else:
        result_name = "unchanged"
    return SessionOutcome(source.key, source.where, result_name, appended, skipped)


def _archive_stored(source: SourceSession) -> int:
    """Carry the store's archive over to messages a previous import stored active."""
    archived = {
        message.message_id: message.compacted_at
        for message in source.messages
        if message.message_id and message.compacted_at is not None
    }
    if not archived:
        return 0
    return services.messages_archive_stored(key=source.key, archived=archived).archived


def run_import(
    fmt: str,
    records: Iterable[SourceSession | Problem],
    *,
    path: str,
    agent: str | None = None,
    dry_run: bool = False,
    on_problem: Callable[[Problem], None] | None = None,
    on_session: Callable[[SessionOutcome], None] | None = None,
    on_warning: Callable[[Problem], None] | None = None,
) -> ImportReport:
    """Write every record a reader yields; returns the report (see ``ImportReport``)."""
    report = ImportReport(format=fmt, path=path, dry_run=dry_run)
    for record in records:
        problems = [record] if isinstance(record, Problem) else list(record.problems)
        for problem in problems:
            report.errors.append(problem)
            if on_problem:
                on_problem(problem)
        if isinstance(record, Problem):
            continue
        for warning in record.warnings:
            report.warnings.append(warning)
            if on_warning:
                on_warning(warning)
        outcome = write_session(record, agent=agent, dry_run=dry_run)
        report.add(outcome)
        if outcome.problem is not None and on_problem:
            on_problem(outcome.problem)
        if on_session:
            on_session(outcome)
    return report


# --- reading values out of stores ------------------------------------------------


def parse_time(value: Any, name: str) -> datetime:
    """A store's timestamp: RFC 3339, naive ISO 8601 text (UTC, as SQLite's
    ``datetime('now')`` writes it) or Unix seconds."""
    if isinstance(value, bool) or value is None or value == "":
        raise BadRecord(f"{name} is missing")
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            raise BadRecord(f"{name} is not a timestamp: {value!r}") from None
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise BadRecord(f"{name} is not a timestamp: {value[:60]!r}") from None
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        try:
            return moment.astimezone(UTC)
        except OverflowError:
            raise BadRecord(f"{name} is out of range: {value[:60]!r}") from None
    raise BadRecord(f"{name} is not a timestamp: {value!r}"[:120])


def known_choice(
    value: Any,
    name: str,
    choices: type[TextChoices],
    *,
    fields: dict[str, Any],
    warnings: list[Problem],
    where: str,
    aliases: Mapping[str, str] | None = None,
) -> str | None:
    """Fleet's word for a store's ``value`` of ``name`` (case and spaces aside), or ``None``.

    An unknown value never drops a session: it is imported without it (the
    field keeps its default, or its stored value on a re-import), the raw
    value is kept in metadata ``source_<name>`` and a warning says where.
    """
    raw = to_text(value).strip()
    word = raw.lower()
    word = (aliases or {}).get(word, word)
    if word in choices.values:
        return word
    metadata = fields.setdefault("metadata", {})
    metadata[f"source_{name}"] = raw
    allowed = ", ".join(choices.values)
    warnings.append(
        Problem(
            where,
            f"{name} {raw!r} is not one of {allowed}: imported without it, the value kept in "
            f"metadata source_{name}"[:300],
        )
    )
    return None


def optional_time(value: Any, name: str) -> datetime | None:
    return None if value in (None, "") else parse_time(value, name)


def to_count(value: Any, name: str) -> int | None:
    """A non-negative integer column (``None`` when the store left it empty)."""
    if value is None or value == "":
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadRecord(f"{name} must be a non-negative integer, got {value!r}"[:120])
    return value


def to_text(value: Any) -> str:
    """A text column (``None`` reads as empty; numbers as their digits)."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value if isinstance(value, str) else str(value)


def to_usd(value: Any, name: str, *, scale: int = 1) -> Decimal | None:
    """Money from a float, integer or text column, divided by ``scale`` exactly.

    Floats go through ``repr`` (the shortest text that reads back as the same
    float), so 12.34 cents is exactly $0.1234, not a binary fraction.
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise BadRecord(f"{name} is not a number: {value!r}")
    try:
        amount = Decimal(repr(value) if isinstance(value, float) else str(value))
    except InvalidOperation:
        raise BadRecord(f"{name} is not a number: {value!r}"[:120]) from None
    if not amount.is_finite() or amount < 0:
        raise BadRecord(f"{name} must be a non-negative number, got {value!r}"[:120])
    return amount / scale


def completion_with_reasoning(completion: int, reasoning: int) -> int:
    """Fleet counts reasoning as a part of completion; a store whose reasoning
    exceeds its completion counted them apart, so they are added."""
    return completion + reasoning if reasoning > completion else completion


def source_message(values: Mapping[str, Any], *, convention: str | None = None) -> MessageIn:
    """Validate one message of a store (raises ``InvalidInput`` naming the field)."""
    return clean_message(dict(values), "message", convention=convention)


def source_message_keeping(
    values: Mapping[str, Any], *, where: str, warnings: list[Problem]
) -> MessageIn:
    """``source_message``, whose ``metadata`` (what the store keeps beside
    Fleet's fields) never costs the message: metadata the message cannot hold
    (past ``FLEET_MAX_METADATA_BYTES``, or not JSON the databases store) is
    left out and a warning says where; the message is imported all the same.
    """
    try:
        return source_message(values)
    except InvalidInput as exc:
        if exc.field != "message.metadata":
            raise
        reason = exc.message
    warnings.append(Problem(where, f"metadata left out: it {reason}"[:300]))
    return source_message({name: value for name, value in values.items() if name != "metadata"})


# --- SQLite stores ----------------------------------------------------------------


def _decode(raw: bytes) -> str:
    # Invalid UTF-8 becomes lone surrogates, which validation refuses: the row
    # is reported as corrupt instead of aborting the whole query.
    return raw.decode("utf-8", "surrogateescape")


def open_sqlite(
    path: Path, *, label: str, tables: Mapping[str, Sequence[str]]
) -> sqlite3.Connection:
    """Open a SQLite store read-only, checking it has ``tables`` with their required columns."""
    a_label = f"{'an' if label[0] in 'aeiou' else 'a'} {label}"
    if not path.exists():
        raise SourceError(f"{path} does not exist")
    if path.is_dir():
        raise SourceError(f"{path} is a directory; {a_label} store is a SQLite file")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise SourceError(f"cannot open {path}: {exc}") from None
    conn.row_factory = sqlite3.Row
    conn.text_factory = _decode
    try:
        present = {
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')"
            )
        }
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise SourceError(
            f"{path} is not a SQLite database ({exc}); {a_label} store is a SQLite file"
        ) from None
    for table, required in tables.items():
        if table not in present:
            conn.close()
            raise SourceError(f"{path} has no table {table!r}: it is not {a_label} store")
        missing = [name for name in required if name not in table_columns(conn, table)]
        if missing:
            conn.close()
            raise SourceError(
                f"table {table!r} in {path} lacks the column(s) {', '.join(missing)}: "
                f"it is not {a_label} store"
            )
    return conn


def has_table(conn: sqlite3.Connection, table: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type IN ('table', 'view') AND name = ?", (table,)
    ).fetchone()
    return row is not None


def table_columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({_quote(table)})")}


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def select_sql(
    conn: sqlite3.Connection,
    table: str,
    columns: Sequence[str],
    tail: str = "",
    *,
    present_flags: Sequence[str] = (),
) -> str:
    """``SELECT`` of ``columns``; a column the store's version lacks reads as NULL.

    For each name in ``present_flags`` the row also has ``has_<name>``: 1 if
    the store's version has that column, else 0 (so a NULL there can be told
    from a column that does not exist).
    """
    present = table_columns(conn, table)
    parts = [_quote(name) if name in present else f"NULL AS {_quote(name)}" for name in columns]
    parts += [f"{int(name in present)} AS {_quote('has_' + name)}" for name in present_flags]
    return f"SELECT {', '.join(parts)} FROM {_quote(table)} {tail}".strip()  # noqa: S608
