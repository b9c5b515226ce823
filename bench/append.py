"""Append benchmark: is an append cheap on long sessions, and close to raw SQLite?

Run: ``.venv/bin/python bench/append.py`` (about a minute; ``--quick`` for a
smoke run). It builds its own throwaway SQLite databases (all migrations, so
the FTS5 triggers are in), writes demo-shaped messages
(``sessions.demo.transcript``) and prints:

(a) the median time of appending one message to a session that already holds
    10 000 messages, divided by the same on an empty session — target ≤ 1.2;
(b) the rate of appending 1 000-message batches through
    ``services.messages_append``, divided by the rate of raw
    ``sqlite3.executemany`` of the same rows into the same tables of a second
    database with the same schema (plus one session-row UPDATE per batch) —
    target ≥ 0.5.

See bench/README.md for what the figures mean and the ones measured.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from raw_sqlite import (
    MESSAGE_TABLE,
    ROOT,
    SESSION_TABLE,
    columns,
    connect,
    insert_sql,
    update_params,
    write_batch,
)


def setup_django(path: Path) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-secret-key")
    os.environ.pop("DATABASE_URL", None)  # this benchmark is about SQLite
    os.environ["FLEET_SQLITE_PATH"] = str(path)
    os.environ["DJANGO_SETTINGS_MODULE"] = "fleet.settings"
    os.environ.setdefault("FLEET_LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def timed(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


# --- (a) one message on a long session vs an empty one -------------------------


def bench_long_session(*, history: int, samples: int, seed: int) -> dict[str, float]:
    from sessions import services
    from sessions.demo.transcript import iter_messages

    long_key = f"long-{seed}"
    services.session_upsert(key=long_key, fields={"agent": "koda", "model": "claude-sonnet-4-5"})
    messages = iter_messages(history, seed=seed)
    batch: list[dict[str, Any]] = []
    for message in messages:
        batch.append(message)
        if len(batch) == 1000:
            services.messages_append(key=long_key, messages=batch)
            batch = []
    if batch:
        services.messages_append(key=long_key, messages=batch)

    empty_keys = [f"empty-{seed}-{n}" for n in range(samples)]
    for key in empty_keys:
        services.session_upsert(key=key, fields={"agent": "koda", "model": "claude-sonnet-4-5"})
    probes = list(iter_messages(samples, seed=seed + 1))
    rng = random.Random(seed)
    long_times: list[float] = []
    empty_times: list[float] = []
    gc.collect()
    for message, empty_key in zip(probes, empty_keys, strict=True):
        # The same message on both sides, in random order, so drift and
        # neighbours' load hit both alike.
        runs = [(long_key, long_times), (empty_key, empty_times)]
        rng.shuffle(runs)
        for key, times in runs:
            times.append(timed(partial(services.messages_append, key=key, messages=[message])))
    return {"long_ms": median_ms(long_times), "empty_ms": median_ms(empty_times)}


# --- (b) service batches vs raw executemany ---------------------------------------


def bench_batches(
    *,
    service_path: Path,
    raw_path: Path,
    bare_path: Path,
    batches: int,
    batch_size: int,
    seed: int,
) -> dict[str, float]:
    from sessions import services
    from sessions.demo.transcript import iter_messages
    from sessions.models import Session

    key = f"batches-{seed}"
    services.session_upsert(key=key, fields={"agent": "koda", "model": "claude-sonnet-4-5"})
    session_id = Session.objects.get(key=key).pk

    reader = connect(service_path)
    raw = connect(raw_path)
    # For context only: the same raw insert without the FTS trigger.
    bare = connect(bare_path)
    session_columns = columns(reader, SESSION_TABLE)
    session_row = reader.execute(
        f"SELECT * FROM {SESSION_TABLE} WHERE id = ?", (session_id,)
    ).fetchone()
    for conn in (raw, bare):
        conn.execute(insert_sql(SESSION_TABLE, session_columns), session_row)
    message_columns = [c for c in columns(reader, MESSAGE_TABLE) if c != "id"]
    insert = insert_sql(MESSAGE_TABLE, message_columns)

    messages = iter_messages(batches * batch_size, seed=seed)
    service_times: list[float] = []
    raw_times: list[float] = []
    bare_times: list[float] = []
    for _ in range(batches):
        batch = [next(messages) for _ in range(batch_size)]
        gc.collect()
        service_times.append(timed(partial(services.messages_append, key=key, messages=batch)))

        # The very rows the service stored, ready before the clock starts.
        rows = reader.execute(
            f"SELECT {', '.join(message_columns)} FROM {MESSAGE_TABLE} "
            "WHERE session_id = ? ORDER BY seq DESC LIMIT ?",
            (session_id, batch_size),
        ).fetchall()[::-1]
        params = update_params(rows, message_columns, session_id)

        for conn, times in ((raw, raw_times), (bare, bare_times)):
            gc.collect()
            times.append(timed(partial(write_batch, conn, insert, rows, params)))
    for conn in (reader, raw, bare):
        conn.close()
    return {
        "service_ms": median_ms(service_times),
        "raw_ms": median_ms(raw_times),
        "service_rate": batch_size / statistics.median(service_times),
        "raw_rate": batch_size / statistics.median(raw_times),
        "bare_rate": batch_size / statistics.median(bare_times),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--history", type=int, default=10_000, help="messages in the long session")
    parser.add_argument("--samples", type=int, default=300, help="single appends timed per side")
    parser.add_argument("--batches", type=int, default=10, help="1 000-message batches timed")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (medians are printed)")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.history, args.samples, args.batches, args.repeat = 2000, 60, 3, 1

    workdir = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    try:
        service_path = workdir / "service.sqlite3"
        raw_path = workdir / "raw.sqlite3"
        setup_django(service_path)
        from django.db import connection

        connection.close()  # checkpoint the WAL: the copy gets the whole schema
        shutil.copyfile(service_path, raw_path)
        bare_path = workdir / "bare.sqlite3"
        shutil.copyfile(service_path, bare_path)
        with sqlite3.connect(bare_path) as bare:
            bare.execute("DROP TRIGGER IF EXISTS agent_sessions_message_fts_ai")
        bare.close()

        ratios_a: list[float] = []
        ratios_b: list[float] = []
        bare_rates: list[float] = []
        overheads: list[float] = []
        print(f"SQLite {sqlite3.sqlite_version}, Python {sys.version.split()[0]}")
        for rep in range(args.repeat):
            a = bench_long_session(history=args.history, samples=args.samples, seed=100 + rep)
            b = bench_batches(
                service_path=service_path,
                raw_path=raw_path,
                bare_path=bare_path,
                batches=args.batches,
                batch_size=1000,
                seed=200 + rep,
            )
            ratios_a.append(a["long_ms"] / a["empty_ms"])
            ratios_b.append(b["service_rate"] / b["raw_rate"])
            bare_rates.append(b["bare_rate"])
            overheads.append(b["service_ms"] - b["raw_ms"])
            print(
                f"rep {rep + 1}: (a) one append: {a['long_ms']:.3f} ms on {args.history} "
                f"messages, {a['empty_ms']:.3f} ms on empty -> {ratios_a[-1]:.2f}; "
                f"(b) 1000-message batch: service {b['service_ms']:.1f} ms "
                f"({b['service_rate']:,.0f} msg/s), raw {b['raw_ms']:.1f} ms "
                f"({b['raw_rate']:,.0f} msg/s) -> {ratios_b[-1]:.2f}"
            )
        a_ratio = statistics.median(ratios_a)
        b_ratio = statistics.median(ratios_b)
        print(
            f"(a) long/empty append cost: {a_ratio:.2f} (target <= 1.2: "
            f"{'met' if a_ratio <= 1.2 else 'MISSED'})"
        )
        print(
            f"(b) service/raw batch rate: {b_ratio:.2f} (target >= 0.5: "
            f"{'met' if b_ratio >= 0.5 else 'MISSED'})"
        )
        print(
            f"(info) raw without the FTS trigger: {statistics.median(bare_rates):,.0f} msg/s; "
            f"service time above raw: {statistics.median(overheads):.1f} ms per 1000 messages"
        )
        return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
