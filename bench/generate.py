"""Bulk generator: the demo fleet written into PostgreSQL with COPY, for benchmarks.

Run: ``.venv/bin/python bench/generate.py --database-url postgres://… --sessions 1000000``
(the database migrated and holding no sessions). Not a product feature: the
dashboard's demo is ``manage.py demo_fleet``, which writes through the
services at ~140 sessions a second (two hours for a million sessions).

The data is the demo's: each session is ``sessions.demo.fleet.plan_session``
(head, lifecycle, times and transcript from ``(seed, index)``, the same
session *i* as ``demo_fleet --seed`` makes), and its rows are built by the
services' own code without their writes: ``clean_session_fields`` and
``set_fields`` for the session, ``clean_messages`` and
``services.messages.build_rows`` for the messages (gap-free ``seq``, prices,
the session's totals and the rollups' deltas, ``Rollup``). Sessions and
messages then go in with ``COPY``; the rollups' deltas are copied into
unlogged staging tables and added to ``DailyUsage``, ``BudgetUsage``,
``MinuteUsage``, ``LatencyUsage`` and ``FleetLatencyUsage`` (every table
``Rollup.tables()`` gives) in one grouped upsert each at the end;
the demo's budgets follow (``demo_budgets``). The message search vector is a
generated column, so PostgreSQL fills it during the COPY.

``--distinct N`` builds N demo sessions and fills the rest with replicas:
session ``i + r·N`` is session *i* under key ``…#r``, every time ``r × 41 s``
earlier, its rollup deltas recomputed by the services' ``rollup_add`` (a
replica costs ~1 ms of Python, a built session ~5 ms).

What differs from ``demo_fleet``: no compaction (the demo's compacted
sessions are written whole), and sessions that end ``unknown`` are marked so
directly, as ``sessions_mark_unknown``'s UPDATE does. ``--workers`` processes
build and copy interleaved chunks of ``--chunk`` sessions, each chunk one
transaction. ``--defer-indexes`` (default) drops the message and session
tables' plain indexes before the load and builds them after (much faster
than maintaining them row by row; their definitions are printed first, in
case the run dies).
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STAGE_PREFIX = "bench_stage_"
ENDED = ("completed", "failed", "cancelled")


def setup(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-secret-key-not-for-production-use-0")
    os.environ["DJANGO_DEBUG"] = "0"
    os.environ["FLEET_LOG_LEVEL"] = "WARNING"
    os.environ["DJANGO_SETTINGS_MODULE"] = "fleet.settings"
    import django

    django.setup()


# --- rows ---------------------------------------------------------------------


def session_rows(
    index: int,
    *,
    pk: int,
    seed: int,
    now: datetime,
    days: int,
    per_session: int,
    rollup: Any,
    prices: Any,
) -> tuple[Any, list[Any], Any]:
    """Session ``index`` of the demo fleet as unsaved rows: (session, messages, prices)."""
    from sessions.choices import State, Status
    from sessions.demo.fleet import _turn_fields, plan_session
    from sessions.inputs import SessionIn, clean_messages, clean_session_fields
    from sessions.models import Session
    from sessions.services.messages import build_rows
    from sessions.services.sessions import set_fields

    plan = plan_session(index, seed=seed, now=now, days=days, messages_per_session=per_session)
    head = plan.head
    moment = head.last_active_at  # the demo appends the whole transcript "as of" its end
    session = Session(pk=pk, key=head.key, created_at=moment, last_active_at=moment)
    fields = clean_session_fields({**head.fields, **_turn_fields(head)})
    set_fields(session, fields, moment, rollup)
    rollup.add(
        at=session.created_at,
        agent=session.agent,
        model=session.model,
        channel=session.channel,
        sessions_started=1,
    )
    messages: list[Any] = []
    if plan.messages:
        items = clean_messages(plan.messages, convention="otel")
        messages, _, prices = build_rows(session, items, moment, rollup, prices)
    if head.lifecycle in ENDED:
        ended = min(head.last_active_at + timedelta(seconds=2), now)
        set_fields(session, SessionIn(values={"status": head.lifecycle}), ended, rollup)
        session.last_active_at = max(ended, session.last_active_at)
    elif head.lifecycle == "unknown":
        session.status = Status.UNKNOWN
        session.state = State.IDLE
        session.turn_id = ""
        session.turn_started_at = None
    return session, messages, prices


@functools.cache
def _columns(model: Any, *, with_pk: bool) -> tuple[list[str], list[str], list[Any]]:
    """(column names, attribute names, adapters) of a model's stored fields:
    the append's (``sessions.bulk``), except JSON, which becomes its text once
    (COPY parses it; a replica's rows reuse the text)."""
    from django.db import models

    from sessions.bulk import _adapter

    def adapter(field: Any) -> Any:
        if isinstance(field, models.JSONField):
            default, encoder = field.get_default, field.encoder
            return lambda value: json.dumps(value if value is not None else default(), cls=encoder)
        return _adapter(field)

    fields = [f for f in model._meta.concrete_fields if with_pk or not f.primary_key]
    return (
        [f.column for f in fields],
        [f.attname for f in fields],
        [adapter(f) for f in fields],
    )


def _copy(cursor: Any, table: str, columns: Sequence[str], rows: Iterator[Sequence[Any]]) -> None:
    quoted = ", ".join(f'"{c}"' for c in columns)
    with cursor.copy(f'COPY "{table}" ({quoted}) FROM STDIN') as copy:
        for row in rows:
            copy.write_row(row)


def _model_rows(
    objects: Sequence[Any], attnames: Sequence[str], adapters: Sequence[Any]
) -> Iterator[list[Any]]:
    pairs = [(i, a) for i, a in enumerate(adapters) if a is not None]
    for obj in objects:
        values = obj.__dict__
        row = [values[name] for name in attnames]
        for i, adapt in pairs:
            row[i] = adapt(row[i])
        yield row


def _stage_name(table: str) -> str:
    return STAGE_PREFIX + table


def _bucket_columns(buckets: Any) -> list[str]:
    return [buckets.period, *buckets.dimensions, *buckets.counters]


def _stage_rollup(cursor: Any, rollup: Any) -> None:
    """Copy a chunk's rollup deltas into the staging tables."""
    for buckets in rollup.tables():
        rows = buckets.rows()
        if not rows:
            continue
        _copy(
            cursor,
            _stage_name(buckets.table._meta.db_table),
            _bucket_columns(buckets),
            (
                [buckets.adapt(at), *dims, *(counts[c] for c in buckets.counters)]
                for (at, *dims), counts in rows
            ),
        )


# --- one worker -----------------------------------------------------------------


def _datetime_columns(model: Any, attnames: Sequence[str]) -> list[int]:
    from django.db import models

    fields = {f.attname: f for f in model._meta.concrete_fields}
    return [i for i, name in enumerate(attnames) if isinstance(fields[name], models.DateTimeField)]


def _shifted(row: list[Any], columns: Sequence[int], back: timedelta) -> list[Any]:
    row = list(row)
    for i in columns:
        if row[i] is not None:
            row[i] = row[i] - back
    return row


def replica_rows(
    session: Any,
    messages: Sequence[Any],
    message_rows: Sequence[list[Any]],
    *,
    pk: int,
    round_: int,
    rollup: Any,
) -> tuple[list[Any], list[list[Any]]]:
    """Replica ``round_`` of a built session: its own key and id, every time
    ``round_ × REPLICA_SHIFT`` earlier, its rollup deltas added to ``rollup``
    (the services' ``rollup_add``); returns (session row, message rows)."""
    from sessions.models import Message, Session
    from sessions.services.accounting import contribution, rollup_add

    back = REPLICA_SHIFT * round_
    copy = Session.__new__(Session)
    copy.__dict__.update(session.__dict__)
    copy.pk = pk
    copy.key = f"{session.key}#{round_}"
    for name in ("turn_started_at", "created_at", "last_active_at", "ended_at"):
        if getattr(copy, name) is not None:
            setattr(copy, name, getattr(copy, name) - back)
    rollup.add(
        at=copy.created_at,
        agent=copy.agent,
        model=copy.model,
        channel=copy.channel,
        sessions_started=1,
    )
    _, s_names, s_adapt = _columns(Session, with_pk=True)
    (session_row,) = _model_rows([copy], s_names, s_adapt)
    rows = []
    for message, template in zip(messages, message_rows, strict=True):
        moved = Message.__new__(Message)
        moved.__dict__.update(message.__dict__)
        moved.created_at = message.created_at - back
        rollup_add(rollup, copy, moved, contribution(moved))
        row = _shifted(template, _MESSAGE_TIMES, back)
        row[_MESSAGE_SESSION] = pk
        rows.append(row)
    return session_row, rows


REPLICA_SHIFT = timedelta(seconds=41)
_MESSAGE_TIMES: list[int] = []
_MESSAGE_SESSION = 0


def write_chunks(
    chunks: Sequence[tuple[int, int]],
    *,
    first_pk: int,
    distinct: int,
    rounds: int,
    total: int,
    seed: int,
    now: datetime,
    days: int,
    per_session: int,
) -> tuple[int, int]:
    """Build and copy the sessions of demo indexes ``[start, stop)`` of each chunk
    and their replicas (session ``index + round × distinct``); returns (sessions,
    messages)."""
    global _MESSAGE_SESSION
    from django.db import connection, transaction

    from sessions.models import Message, Session
    from sessions.rollups import Rollup

    s_cols, s_names, s_adapt = _columns(Session, with_pk=True)
    m_cols, m_names, m_adapt = _columns(Message, with_pk=False)
    _MESSAGE_TIMES[:] = _datetime_columns(Message, m_names)
    _MESSAGE_SESSION = m_names.index("session_id")
    prices = None
    sessions = messages = 0
    for start, stop in chunks:
        rollup = Rollup()
        session_out: list[list[Any]] = []
        message_out: list[list[Any]] = []
        for index in range(start, stop):
            session, stored, prices = session_rows(
                index,
                pk=first_pk + index,
                seed=seed,
                now=now,
                days=days,
                per_session=per_session,
                rollup=rollup,
                prices=prices,
            )
            session_out.extend(_model_rows([session], s_names, s_adapt))
            template = list(_model_rows(stored, m_names, m_adapt))
            message_out.extend(template)
            for round_ in range(1, rounds):
                number = index + round_ * distinct
                if number >= total:
                    break
                row, rows = replica_rows(
                    session, stored, template, pk=first_pk + number, round_=round_, rollup=rollup
                )
                session_out.append(row)
                message_out.extend(rows)
        with transaction.atomic(), connection.cursor() as cursor:
            raw = cursor.cursor  # psycopg's own cursor: COPY
            _copy(raw, Session._meta.db_table, s_cols, iter(session_out))
            _copy(raw, Message._meta.db_table, m_cols, iter(message_out))
            _stage_rollup(raw, rollup)
        sessions += len(session_out)
        messages += len(message_out)
    connection.close()
    return sessions, messages


def _worker(args: tuple[list[tuple[int, int]], dict[str, Any]]) -> tuple[int, int]:
    chunks, options = args
    return write_chunks(chunks, **options)


# --- the whole load -------------------------------------------------------------


def _plain_indexes(cursor: Any, tables: Sequence[str]) -> list[tuple[str, str]]:
    """(name, definition) of the tables' indexes that back no constraint."""
    cursor.execute(
        "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE i.indrelid = ANY(%s::regclass[]) "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) "
        "ORDER BY c.relname",
        [list(tables)],
    )
    return list(cursor.fetchall())


def _merge_rollups(cursor: Any) -> None:
    """Add the staged deltas to the rollup tables, one grouped upsert each."""
    from sessions.rollups import Rollup

    for buckets in Rollup().tables():
        table = buckets.table._meta.db_table
        key = [buckets.period, *buckets.dimensions[: buckets.keyed]]
        extra = list(buckets.dimensions[buckets.keyed :])
        columns = [*key, *extra, *buckets.counters]
        select = [
            *(f'"{c}"' for c in key),
            *(f'max("{c}")' for c in extra),
            *(f'sum("{c}")::bigint' for c in buckets.counters),
        ]
        updates = ", ".join(f'"{c}" = "{table}"."{c}" + excluded."{c}"' for c in buckets.counters)
        cursor.execute(
            f'INSERT INTO "{table}" ({", ".join(f"{chr(34)}{c}{chr(34)}" for c in columns)}) '
            f'SELECT {", ".join(select)} FROM "{_stage_name(table)}" '
            f"GROUP BY {', '.join(f'{chr(34)}{c}{chr(34)}' for c in key)} "
            f"ON CONFLICT ({', '.join(f'{chr(34)}{c}{chr(34)}' for c in key)}) "
            f"DO UPDATE SET {updates}"
        )


def generate(
    *,
    sessions: int,
    per_session: int = 12,
    seed: int = 1,
    days: int = 35,
    now: datetime | None = None,
    workers: int = 2,
    chunk: int = 2000,
    distinct: int | None = None,
    defer_indexes: bool = True,
    progress: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """Load the demo fleet's first ``sessions`` sessions; returns figures of the run."""
    from django.db import connection
    from django.utils import timezone

    from sessions.demo.fleet import demo_budgets
    from sessions.models import Message, Session
    from sessions.rollups import Rollup

    if connection.vendor != "postgresql":
        raise SystemExit("bench/generate.py writes with COPY: PostgreSQL only")
    if Session.objects.exists():
        raise SystemExit("the database already holds sessions: generate into an empty store")
    now = now or timezone.now()
    started = time.perf_counter()
    tables = [Session._meta.db_table, Message._meta.db_table]
    stages = [_stage_name(b.table._meta.db_table) for b in Rollup().tables()]
    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(id), 0) FROM " + f'"{tables[0]}"')
        first_pk = cursor.fetchone()[0] + 1
        for buckets in Rollup().tables():
            table = buckets.table._meta.db_table
            cols = ", ".join(f'"{c}"' for c in _bucket_columns(buckets))
            cursor.execute(f'DROP TABLE IF EXISTS "{_stage_name(table)}"')
            cursor.execute(
                f'CREATE UNLOGGED TABLE "{_stage_name(table)}" AS '
                f'SELECT {cols} FROM "{table}" WITH NO DATA'
            )
        deferred = _plain_indexes(cursor, tables) if defer_indexes else []
        for name, definition in deferred:
            progress(f"deferred index: {definition};")
            cursor.execute(f'DROP INDEX "{name}"')
    distinct = min(distinct or sessions, sessions)
    rounds = -(-sessions // distinct)
    step = max(1, chunk // rounds)
    chunks = [(s, min(s + step, distinct)) for s in range(0, distinct, step)]
    options = {
        "first_pk": first_pk,
        "distinct": distinct,
        "rounds": rounds,
        "total": sessions,
        "seed": seed,
        "now": now,
        "days": days,
        "per_session": per_session,
    }
    shares = [(chunks[w::workers], options) for w in range(max(1, workers))]
    connection.close()
    if workers > 1:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            done = pool.map(_worker, shares)
    else:
        done = [_worker(shares[0])]
    copied = time.perf_counter()
    total_sessions = sum(s for s, _ in done)
    total_messages = sum(m for _, m in done)
    progress(
        f"copied {total_sessions} sessions, {total_messages} messages in {copied - started:.0f} s"
    )
    with connection.cursor() as cursor:
        _merge_rollups(cursor)
        for stage in stages:
            cursor.execute(f'DROP TABLE "{stage}"')
        cursor.execute(
            f"SELECT setval(pg_get_serial_sequence('{tables[0]}', 'id'), "
            f'(SELECT max(id) FROM "{tables[0]}"))'
        )
        merged = time.perf_counter()
        progress(f"rollups merged in {merged - copied:.0f} s")
        for _name, definition in deferred:
            cursor.execute(definition)
        indexed = time.perf_counter()
        if deferred:
            progress(f"{len(deferred)} indexes built in {indexed - merged:.0f} s")
        for table in tables:
            cursor.execute(f'VACUUM (ANALYZE) "{table}"')
    demo_budgets(now)
    seconds = time.perf_counter() - started
    return {
        "sessions": total_sessions,
        "messages": total_messages,
        "seconds": round(seconds, 1),
        "copy_seconds": round(copied - started, 1),
        "sessions_per_s": round(total_sessions / seconds),
        "messages_per_s": round(total_messages / seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True, help="postgres://… (migrated, empty)")
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument(
        "--messages-per-session",
        type=int,
        default=10,
        help="as demo_fleet's option (10: ~12 a session)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--days", type=int, default=35, help="history spread over this many days")
    parser.add_argument("--workers", type=int, default=2, help="processes building rows")
    parser.add_argument("--chunk", type=int, default=2000, help="sessions per transaction")
    parser.add_argument(
        "--distinct",
        type=int,
        default=None,
        help="build this many demo sessions; the rest are their replicas (default: all distinct)",
    )
    parser.add_argument(
        "--no-defer-indexes", action="store_true", help="keep the indexes during the load"
    )
    args = parser.parse_args()
    setup(args.database_url)
    figures = generate(
        sessions=args.sessions,
        per_session=args.messages_per_session,
        seed=args.seed,
        days=args.days,
        workers=args.workers,
        chunk=args.chunk,
        distinct=args.distinct,
        defer_indexes=not args.no_defer_indexes,
        progress=lambda line: print(line, flush=True),
    )
    print(
        f"{figures['sessions']} sessions, {figures['messages']} messages in "
        f"{figures['seconds']} s: {figures['sessions_per_s']} sessions/s, "
        f"{figures['messages_per_s']} messages/s (COPY phase {figures['copy_seconds']} s)"
    )


if __name__ == "__main__":
    main()
