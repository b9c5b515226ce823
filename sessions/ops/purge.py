"""Purge: retention for the session store, keeping the cost history.

What goes (``manage.py purge``), in this order:

1. **sessions** whose last activity is older than ``older_than`` (any status)
   and/or that are not among the ``max_sessions`` most recently active, with
   their messages and metadata;
2. **archived messages** (``compacted_at`` set) archived longer than
   ``compacted_older_than`` ago (``0``: every archived message). Their
   sessions keep their totals — usage is history — and ``last_seq``;
   ``message_count`` (the messages stored now) drops by the number removed,
   in the same transaction;
3. **tombstones** older than ``tombstones_older_than``: later writes to those
   keys create new sessions again.

Every run that is not a dry run also drops the per-minute usage buckets
older than ``MinuteUsage.RECENT`` (the burn rate reads only the last hour of
them; they are a window, not history).

What stays: the daily and the budgets' usage rollups, untouched, so the
dashboard's cost history, period totals and budgets are the same after a
purge. Purged sessions leave **no tombstone**: a tombstone refuses writes to
a key someone deleted on purpose, while a purged session merely aged out,
and routing keys (``telegram_user123``) come back — the user's next message
starts a new session.

How: rows are chosen by id (``values_list``, keyset pagination, never model
instances) and removed with ``DELETE … WHERE id IN (…)`` in bounded batches,
each its own short transaction, so agents writing at the same time wait
milliseconds. Each batch locks the sessions it touches (``SELECT … FOR
UPDATE`` on PostgreSQL; SQLite has one writer at a time) and re-checks the
rule under the lock, the same lock order as every write in
``sessions.services``: a session an agent wrote to after the cut-off no
longer matches and keeps every message. Messages go before their session
(the foreign key). A session holding more messages than a batch is emptied
in several batches, each re-checking the rule, and deleted by the last one.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from django.db import connection, transaction
from django.db.models import Count, Q

from sessions.models import Message, MinuteUsage, Session, SubAgentWait, Tombstone, Turn
from sessions.ops.batches import (
    Clock,
    ItemCallback,
    ProgressCallback,
    batch_size,
    column,
    placeholders,
    sql_datetime,
    table,
)
from sessions.ops.durations import format_duration

SESSION = "session"
ARCHIVED = "archived"
TOMBSTONE = "tombstone"


@dataclass
class PurgeResult:
    """What a run removed (or, with ``dry_run``, would remove)."""

    dry_run: bool
    sessions: int = 0
    session_messages: int = 0
    archived_messages: int = 0
    tombstones: int = 0
    vacuumed: bool = False
    criteria: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def changed(self) -> int:
        return self.sessions + self.archived_messages + self.tombstones

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        verb = "Would purge" if self.dry_run else "Purged"
        parts = []
        if "older_than" in self.criteria or "max_sessions" in self.criteria:
            parts.append(
                f"{_plural(self.sessions, 'session')} "
                f"(with {_plural(self.session_messages, 'message')})"
            )
        if "compacted_older_than" in self.criteria:
            parts.append(_plural(self.archived_messages, "archived message"))
        if "tombstones_older_than" in self.criteria:
            parts.append(_plural(self.tombstones, "tombstone"))
        text = f"{verb} {_join(parts)}; daily usage kept."
        if self.vacuumed:
            text += " Would vacuum the database." if self.dry_run else " Vacuumed the database."
        return text


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _join(parts: Sequence[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


class _Candidate(NamedTuple):
    pk: int
    key: str
    message_count: int
    last_active_at: datetime


# --- sessions -------------------------------------------------------------------


def session_rule(
    *, now: datetime, older_than: timedelta | None, max_sessions: int | None
) -> Q | None:
    """The condition a session must meet to be purged, or ``None`` when none may be.

    ``max_sessions`` is turned into a fixed boundary (the N-th most recently
    active session at the start), so that a session written to while the
    purge runs — its ``last_active_at`` moves past the boundary — never
    matches, exactly as with ``older_than``.
    """
    parts: list[Q] = []
    if older_than is not None:
        parts.append(Q(last_active_at__lt=now - older_than))
    if max_sessions is not None:
        if max_sessions == 0:
            # Keep none: every session not written to since the run started.
            parts.append(Q(last_active_at__lte=now))
        else:
            boundary = list(
                Session.objects.order_by("-last_active_at", "-id").values_list(
                    "last_active_at", "id"
                )[max_sessions - 1 : max_sessions]
            )
            if boundary:
                moment, pk = boundary[0]
                parts.append(Q(last_active_at__lt=moment) | Q(last_active_at=moment, id__lt=pk))
    if not parts:
        return None
    rule = parts[0]
    for part in parts[1:]:
        rule |= part
    return rule


def _session_pages(rule: Q, size: int) -> Iterator[list[_Candidate]]:
    """Matching sessions, least recently active first, ``size`` at a time (keyset)."""
    last: tuple[datetime, int] | None = None
    while True:
        qs = Session.objects.filter(rule)
        if last is not None:
            moment, pk = last
            qs = qs.filter(
                Q(last_active_at__gt=moment) | Q(last_active_at=moment, id__gt=pk),
                last_active_at__gte=moment,
            )
        rows = [
            _Candidate(*row)
            for row in qs.order_by("last_active_at", "id").values_list(
                "id", "key", "message_count", "last_active_at"
            )[:size]
        ]
        if not rows:
            return
        yield rows
        last = (rows[-1].last_active_at, rows[-1].pk)


def _groups(rows: Sequence[_Candidate], size: int) -> Iterator[list[_Candidate]]:
    """Split a page into groups holding about ``size`` messages (at least one session)."""
    group: list[_Candidate] = []
    messages = 0
    for row in rows:
        if group and messages + row.message_count > size:
            yield group
            group, messages = [], 0
        group.append(row)
        messages += row.message_count
    if group:
        yield group


def _lock(rule: Q, ids: Sequence[int]) -> list[int]:
    """Lock the sessions ``ids`` that still match ``rule`` (inside a transaction)."""
    return list(
        Session.objects.select_for_update()
        .filter(rule, id__in=ids)
        .order_by("id")
        .values_list("id", flat=True)
    )


def _delete_messages_of(ids: Sequence[int]) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {table(Message)} "  # noqa: S608 - our names, values are params
            f"WHERE {column(Message, 'session')} IN ({placeholders(len(ids))})",
            list(ids),
        )
        return cursor.rowcount


def _delete_sessions(ids: Sequence[int]) -> int:
    with connection.cursor() as cursor:
        # Their finished turns first (the rollup keeps the fleet's latency),
        # and their OTLP spans still waiting for a sub-agent's name.
        for model in (Turn, SubAgentWait):
            cursor.execute(
                f"DELETE FROM {table(model)} "  # noqa: S608
                f"WHERE {column(model, 'session')} IN ({placeholders(len(ids))})",
                list(ids),
            )
        cursor.execute(
            f"DELETE FROM {table(Session)} "  # noqa: S608
            f"WHERE {column(Session, 'id')} IN ({placeholders(len(ids))})",
            list(ids),
        )
        return cursor.rowcount


def _purge_group(rule: Q, group: Sequence[_Candidate]) -> tuple[list[_Candidate], int]:
    """One transaction: delete the group's sessions that still match, messages first."""
    with transaction.atomic():
        locked = set(_lock(rule, [row.pk for row in group]))
        if not locked:
            return [], 0
        ids = sorted(locked)
        messages = _delete_messages_of(ids)
        _delete_sessions(ids)
    return [row for row in group if row.pk in locked], messages


def _purge_large(rule: Q, row: _Candidate, size: int) -> tuple[bool, int]:
    """Empty one session holding more than ``size`` messages in several
    transactions, re-checking the rule in each, then delete it."""
    messages = 0
    while True:
        with transaction.atomic():
            locked = list(
                Session.objects.select_for_update()
                .filter(rule, id=row.pk)
                .values_list("message_count", flat=True)
            )
            if not locked:
                return False, messages  # written to meanwhile (or gone): it stays
            if locked[0] <= size:
                messages += _delete_messages_of([row.pk])
                _delete_sessions([row.pk])
                return True, messages
            with connection.cursor() as cursor:
                cursor.execute(
                    f"DELETE FROM {table(Message)} WHERE {column(Message, 'id')} IN ("  # noqa: S608
                    f"SELECT {column(Message, 'id')} FROM {table(Message)} "
                    f"WHERE {column(Message, 'session')} = %s "
                    f"ORDER BY {column(Message, 'seq')} LIMIT %s)",
                    [row.pk, size],
                )
                removed = cursor.rowcount
            _decrement_message_counts({row.pk: removed})
            messages += removed
            if removed == 0:
                # message_count says more than is stored: delete what is left.
                _delete_sessions([row.pk])
                return True, messages


def _purge_sessions(
    rule: Q,
    size: int,
    result: PurgeResult,
    on_item: ItemCallback | None,
    on_progress: ProgressCallback | None,
) -> None:
    total = Session.objects.filter(rule).count() if on_progress else 0
    seen = 0
    for page in _session_pages(rule, size):
        for group in _groups(page, size):
            if len(group) == 1 and group[0].message_count > size:
                deleted, messages = _purge_large(rule, group[0], size)
                purged = list(group) if deleted else []
            else:
                purged, messages = _purge_group(rule, group)
            result.sessions += len(purged)
            result.session_messages += messages
            if on_item:
                for row in purged:
                    on_item(SESSION, row.key)
        seen += len(page)
        if on_progress:
            on_progress("sessions", min(seen, total), total)


def _dry_run_sessions(rule: Q, result: PurgeResult, on_item: ItemCallback | None) -> None:
    qs = Session.objects.filter(rule)
    if on_item:
        keys = qs.order_by("last_active_at", "id").values_list("key", flat=True)
        for key in keys.iterator(chunk_size=2000):
            on_item(SESSION, key)
            result.sessions += 1
    else:
        result.sessions = qs.count()
    result.session_messages = Message.objects.filter(session__in=qs.values("id")).count()


# --- archived messages ---------------------------------------------------------------


def _archived(now: datetime, older_than: timedelta) -> Q:
    if older_than:
        return Q(compacted_at__isnull=False, compacted_at__lt=now - older_than)
    return Q(compacted_at__isnull=False)


def _decrement_message_counts(removed: dict[int, int]) -> None:
    """``message_count -= n`` per session; one statement per distinct ``n``."""
    by_count: dict[int, list[int]] = defaultdict(list)
    for pk, count in removed.items():
        if count:
            by_count[count].append(pk)
    count_column = column(Session, "message_count")
    with connection.cursor() as cursor:
        for count, ids in by_count.items():
            cursor.execute(
                f"UPDATE {table(Session)} SET {count_column} = "  # noqa: S608
                f"CASE WHEN {count_column} > %s THEN {count_column} - %s ELSE 0 END "
                f"WHERE {column(Session, 'id')} IN ({placeholders(len(ids))})",
                [count, count, *ids],
            )


def _purge_archived_batch(
    rows: Sequence[tuple[int, int, datetime | None]], cutoff: datetime | None
) -> tuple[int, dict[str, int]]:
    """One transaction: delete these archived messages, lower their sessions' counts."""
    session_ids = sorted({session_id for _, session_id, _ in rows})
    ids = [pk for pk, _, _ in rows]
    compacted = column(Message, "compacted_at")
    recheck = f"{compacted} IS NOT NULL"
    params: list[Any] = list(ids)
    if cutoff is not None:
        recheck += f" AND {compacted} < %s"
        params.append(sql_datetime(cutoff))
    with transaction.atomic():
        keys = dict(
            Session.objects.select_for_update()
            .filter(id__in=session_ids)
            .order_by("id")
            .values_list("id", "key")
        )
        with connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {table(Message)} "  # noqa: S608
                f"WHERE {column(Message, 'id')} IN ({placeholders(len(ids))}) AND {recheck} "
                f"RETURNING {column(Message, 'session')}",
                params,
            )
            removed = Counter(row[0] for row in cursor.fetchall())
        _decrement_message_counts(removed)
    return sum(removed.values()), {keys.get(pk, str(pk)): n for pk, n in removed.items()}


def _purge_archived(
    now: datetime,
    older_than: timedelta,
    size: int,
    result: PurgeResult,
    on_item: ItemCallback | None,
    on_progress: ProgressCallback | None,
) -> None:
    rule = _archived(now, older_than)
    cutoff = now - older_than if older_than else None
    total = Message.objects.filter(rule).count() if on_progress else 0
    previous: list[tuple[int, int, datetime | None]] = []  # compacted_at: never None here
    while True:
        # The oldest archived messages left: each batch deletes what it picks,
        # so the next one starts at the front of the index again (no offset,
        # no sort beyond the index's own order).
        rows = list(
            Message.objects.filter(rule)
            .order_by("compacted_at")
            .values_list("id", "session_id", "compacted_at")[:size]
        )
        if not rows or rows == previous:
            break
        previous = rows
        removed, per_session = _purge_archived_batch(rows, cutoff)
        result.archived_messages += removed
        if on_item:
            for key, count in per_session.items():
                on_item(ARCHIVED, f"{key} ({_plural(count, 'message')})")
        if on_progress:
            on_progress("archived messages", min(result.archived_messages, total), total)


def _dry_run_archived(
    now: datetime,
    older_than: timedelta,
    purged_sessions: Q | None,
    result: PurgeResult,
    on_item: ItemCallback | None,
) -> None:
    qs = Message.objects.filter(_archived(now, older_than))
    if purged_sessions is not None:
        # Those go with their sessions in step 1.
        qs = qs.exclude(session__in=Session.objects.filter(purged_sessions).values("id"))
    if on_item:
        rows = qs.values("session__key").annotate(n=Count("id")).order_by("session__key")
        for row in rows.iterator(chunk_size=2000):
            on_item(ARCHIVED, f"{row['session__key']} ({_plural(row['n'], 'message')})")
            result.archived_messages += row["n"]
    else:
        result.archived_messages = qs.count()


# --- tombstones ---------------------------------------------------------------------


def _purge_tombstones(
    now: datetime,
    older_than: timedelta,
    size: int,
    dry_run: bool,
    result: PurgeResult,
    on_item: ItemCallback | None,
) -> None:
    qs = Tombstone.objects.all()
    condition = ""
    params: list[Any] = []
    if older_than:
        cutoff = now - older_than
        qs = qs.filter(deleted_at__lt=cutoff)
        condition = f"WHERE {column(Tombstone, 'deleted_at')} < %s"
        params = [sql_datetime(cutoff)]
    if dry_run:
        if on_item:
            for key in qs.order_by("deleted_at", "id").values_list("key", flat=True).iterator():
                on_item(TOMBSTONE, key)
        result.tombstones = qs.count()
        return
    pk = column(Tombstone, "id")
    recheck = f" AND {column(Tombstone, 'deleted_at')} < %s" if older_than else ""
    sql = (
        f"DELETE FROM {table(Tombstone)} WHERE {pk} IN ("  # noqa: S608
        f"SELECT {pk} FROM {table(Tombstone)} {condition} "
        f"ORDER BY {column(Tombstone, 'deleted_at')}, {pk} LIMIT %s){recheck} "
        f"RETURNING {column(Tombstone, 'key')}"
    )
    while True:
        with connection.cursor() as cursor:
            cursor.execute(sql, [*params, size, *params])
            keys = [row[0] for row in cursor.fetchall()]
        if not keys:
            return
        result.tombstones += len(keys)
        if on_item:
            for key in keys:
                on_item(TOMBSTONE, key)


# --- vacuum -----------------------------------------------------------------------


def vacuum() -> None:
    """Give the freed space back to the file system (outside any transaction).

    SQLite: merge the search index's segments, then ``PRAGMA
    incremental_vacuum`` when the file was made with ``auto_vacuum=INCREMENTAL``
    or else ``VACUUM`` (rewrites the file: writers wait until it is done), and
    truncate the WAL. PostgreSQL: ``VACUUM ANALYZE`` of the purged tables.
    """
    if connection.in_atomic_block:
        raise RuntimeError("vacuum cannot run inside a transaction")
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            fts = f"{Message._meta.db_table}_fts"
            cursor.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = %s", [fts])
            if cursor.fetchone():
                cursor.execute(f"INSERT INTO {fts}({fts}) VALUES ('optimize')")  # noqa: S608
            cursor.execute("PRAGMA auto_vacuum")
            mode = cursor.fetchone()[0]
            cursor.execute("PRAGMA incremental_vacuum" if mode == 2 else "VACUUM")
            cursor.fetchall()
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        elif connection.vendor == "postgresql":
            for model in (Message, Session, Tombstone):
                cursor.execute(f"VACUUM ANALYZE {table(model)}")


# --- the job ----------------------------------------------------------------------


def purge(
    *,
    now: datetime,
    older_than: timedelta | None = None,
    max_sessions: int | None = None,
    compacted_older_than: timedelta | None = None,
    tombstones_older_than: timedelta | None = None,
    vacuum_after: bool = False,
    dry_run: bool = False,
    size: int | None = None,
    on_item: ItemCallback | None = None,
    on_progress: ProgressCallback | None = None,
) -> PurgeResult:
    """Remove what the given criteria select (see the module doc); at least one is required.

    Raises ``ValueError`` without a criterion, with a negative duration or a
    negative ``max_sessions``. Each batch commits on its own: a run that fails
    half-way leaves the store consistent, and running it again finishes the job.
    """
    criteria: dict[str, Any] = {}
    for name, value in (
        ("older_than", older_than),
        ("compacted_older_than", compacted_older_than),
        ("tombstones_older_than", tombstones_older_than),
    ):
        if value is not None:
            if value < timedelta(0):
                raise ValueError(f"{name} must not be negative")
            criteria[name] = format_duration(value)
    if max_sessions is not None:
        if max_sessions < 0:
            raise ValueError(f"max_sessions must be 0 or more, got {max_sessions}")
        criteria["max_sessions"] = max_sessions
    if not criteria:
        raise ValueError("give at least one criterion")
    size = batch_size(size)
    clock = Clock()
    result = PurgeResult(dry_run=dry_run, criteria=criteria, vacuumed=vacuum_after)

    rule = session_rule(now=now, older_than=older_than, max_sessions=max_sessions)
    if rule is not None:
        if dry_run:
            _dry_run_sessions(rule, result, on_item)
        else:
            _purge_sessions(rule, size, result, on_item, on_progress)
    if compacted_older_than is not None:
        if dry_run:
            _dry_run_archived(now, compacted_older_than, rule, result, on_item)
        else:
            _purge_archived(now, compacted_older_than, size, result, on_item, on_progress)
    if tombstones_older_than is not None:
        _purge_tombstones(now, tombstones_older_than, size, dry_run, result, on_item)
    if not dry_run:
        MinuteUsage.objects.filter(minute__lt=now - MinuteUsage.RECENT).delete()
    if vacuum_after and not dry_run:
        vacuum()
    result.seconds = clock.seconds
    return result
