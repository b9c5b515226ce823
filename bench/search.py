"""Search benchmark: the cost of one search on a store holding huge messages.

Run: ``.venv/bin/python bench/search.py`` (issue 10's attacker corpus:
100 000 short messages plus 90 messages of ~1.9 M characters, ~175 MB of
text) or ``--quick`` (10 000 short messages plus 10 huge ones). ``--db PATH``
keeps and reuses an SQLite database; without it the store is built in a
temporary directory. ``--database-url postgres://…`` runs against PostgreSQL
(the database must exist; the corpus is built in it if missing, and kept).

The huge messages are made of the query's words and others in random order,
so every one of them matches every query word hundreds of thousands of times:
the worst case for ranking and for snippets. The corpus is written through
``services.messages_append`` (the API's write path).

It times, in-process through Django's test client (everything but the
network), p50 and p95 of:

* the API search with the most words it accepts (``MAX_TERMS``),
* the API search with the attacker's 32 words,
* the dashboard's search page with the attacker's 32 words,

and, in the same run, the physical limit: the raw database doing the same
ranking (SQLite: ``sqlite3`` running the FTS5 ``MATCH`` with ``bm25`` over the
newest ``CANDIDATES`` matches, skipping messages of ``RANK_MAX_TOKENS`` words
or more as the app does; PostgreSQL: ``psycopg`` running the same tsquery
ranking) with the ``MAX_TERMS`` words, without snippets, sessions or JSON. Target (issue 10):
p95 ≤ 250 ms for the attacker's searches.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from pages import logged_in_client, percentiles, setup  # noqa: E402 -- shared with the page bench

TARGET_MS = 250
PREFIX = "bench-search/"
# Words of the attacker's query: all of them are in every huge message.
QUERY_WORDS = [
    "alpha", "bravo", "delta", "echo", "golf", "hotel", "india", "kilo",
    "lima", "mike", "oscar", "papa", "romeo", "tango", "zulu", "xray",
    "deploy", "tests", "retry", "panic", "cargo", "build", "lint", "merge",
    "error", "fail", "stack", "trace", "token", "model", "agent", "tool",
]  # fmt: skip
FILLER = [f"filler{index}" for index in range(64)]


def huge_text(rng: random.Random, chars: int) -> str:
    vocabulary = QUERY_WORDS + FILLER
    words: list[str] = []
    size = 0
    while size < chars:
        word = rng.choice(vocabulary)
        words.append(word)
        size += len(word) + 1
    return " ".join(words)[:chars]


def build(short: int, huge: int, huge_chars: int) -> None:
    from django.core.management import call_command
    from django.db import connection

    from sessions import services
    from sessions.models import Session

    call_command("migrate", verbosity=0)
    if Session.objects.filter(key__startswith=PREFIX).exists():
        return
    rng = random.Random(10)
    started = time.perf_counter()
    print(f"writing {short:,} short messages and {huge} of {huge_chars:,} characters…", flush=True)
    per_session = 100
    for first in range(0, short, per_session):
        messages = [
            {
                "role": "user" if index % 2 else "assistant",
                "content": " ".join(rng.choices(QUERY_WORDS + FILLER, k=rng.randint(5, 15))),
            }
            for index in range(min(per_session, short - first))
        ]
        services.messages_append(
            key=f"{PREFIX}short-{first // per_session}",
            messages=messages,
            session={"agent": "bench"},
        )
    print(f"  short messages in {time.perf_counter() - started:.0f} s", flush=True)
    text = huge_text(rng, huge_chars)
    for index in range(huge):
        # Rotate the text so that no two messages are the same.
        cut = rng.randrange(len(text))
        content = (text[cut:] + " " + text[:cut])[:huge_chars]
        services.messages_append(
            key=f"{PREFIX}huge-{index % 30}",
            messages=[{"role": "user", "content": content}],
            session={"agent": "bench"},
        )
    print(f"  done in {time.perf_counter() - started:.0f} s", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")


def timed(call: Any, iterations: int) -> dict[str, float]:
    times = []
    for index in range(iterations + 2):
        started = time.perf_counter()
        call()
        if index >= 2:  # warm-up
            times.append((time.perf_counter() - started) * 1000)
    return percentiles(times)


def raw_ranking(words: list[str]) -> Any:
    """The same ranking on the bare database: the newest matches, best first, no snippets."""
    from django.conf import settings
    from django.db import connection

    from sessions.search import CANDIDATES, RANK_MAX_TOKENS, SQLITE_FTS_TABLE

    if connection.vendor == "sqlite":
        import sqlite3

        raw = sqlite3.connect(settings.DATABASES["default"]["NAME"])
        match = " OR ".join(f'"{word}"' for word in words)
        # The app's rule: messages of RANK_MAX_TOKENS words or more are not ranked.
        sql = f"""
            SELECT id FROM (
                SELECT rowid AS id, CASE WHEN (
                    SELECT length(sz) = 1 OR (length(sz) = 2 AND sz < ?)
                    FROM {SQLITE_FTS_TABLE}_docsize WHERE id = {SQLITE_FTS_TABLE}.rowid
                ) THEN bm25({SQLITE_FTS_TABLE}) ELSE 0.0 END AS rank
                FROM {SQLITE_FTS_TABLE}
                WHERE {SQLITE_FTS_TABLE} MATCH ? ORDER BY rowid DESC LIMIT {CANDIDATES}
            ) ORDER BY rank LIMIT 90
        """
        size = bytes([0x80 | (RANK_MAX_TOKENS >> 7), RANK_MAX_TOKENS & 0x7F])

        def run_sqlite() -> None:
            raw.execute(sql, [size, match]).fetchall()

        return run_sqlite
    # A psycopg connection of its own, outside Django's wrappers.
    raw = connection.get_new_connection(connection.get_connection_params())
    raw.autocommit = True
    tsquery = " || ".join(["plainto_tsquery('simple'::regconfig, %s)"] * len(words))
    sql = f"""
        SELECT m.id, ts_rank(m.search_vector, {tsquery}, 1) AS rank FROM (
            SELECT id FROM agent_sessions_message
            WHERE search_vector @@ ({tsquery}) ORDER BY id DESC LIMIT {CANDIDATES}
        ) AS c JOIN agent_sessions_message AS m ON m.id = c.id ORDER BY rank DESC LIMIT 90
    """

    def run() -> None:
        raw.execute(sql, [*words, *words]).fetchall()

    return run


def run(iterations: int) -> None:
    from django.db import connection
    from django.test import Client

    from sessions import search
    from sessions.models import ApiKey, Message

    dashboard = logged_in_client()
    ApiKey.objects.filter(name="bench-search").delete()
    token = ApiKey.generate(name="bench-search")[1]
    api = Client(headers={"Authorization": f"Bearer {token}"})
    allowed = QUERY_WORDS[: search.MAX_TERMS]
    attacker = " ".join(QUERY_WORDS)

    def get(client: Client, url: str, params: dict[str, Any]) -> Any:
        def call() -> None:
            response = client.get(url, params)
            statuses.add(response.status_code)

        statuses: set[int] = set()
        return call, statuses

    cases: list[tuple[str, Client, str, dict[str, Any]]] = [
        (
            f"API, {len(allowed)} words",
            api,
            "/api/v1/search",
            {"q": " ".join(allowed), "limit": 30},
        ),
        ("API, attacker's 32 words", api, "/api/v1/search", {"q": attacker, "limit": 30}),
        ("dashboard, 32 words", dashboard, "/search", {"q": attacker}),
    ]
    huge = Message.objects.filter(session__key__startswith=f"{PREFIX}huge").count()
    print(
        f"store ({connection.vendor}): {Message.objects.count():,} messages, {huge} huge; "
        f"{iterations} requests each"
    )
    raw = timed(raw_ranking(allowed), iterations)
    print(f"{'':28} {'p50 ms':>8} {'p95 ms':>8}  status  p95/raw  target")
    print(f"{'raw ranking (' + connection.vendor + ')':28} {raw['p50']:8.1f} {raw['p95']:8.1f}")
    for name, client, url, params in cases:
        call, statuses = get(client, url, params)
        figures = timed(call, iterations)
        met = figures["p95"] <= TARGET_MS
        print(
            f"{name:28} {figures['p50']:8.1f} {figures['p95']:8.1f}  "
            f"{'/'.join(map(str, sorted(statuses))):6}  {figures['p95'] / raw['p95']:7.1f}  "
            f"p95 ≤ {TARGET_MS} ms: {'met' if met else 'MISSED'}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 000 short + 10 huge messages")
    parser.add_argument("--db", type=Path, help="reuse this SQLite database (kept)")
    parser.add_argument("--database-url", help="use this PostgreSQL database instead (kept)")
    parser.add_argument("--huge-chars", type=int, default=1_900_000)
    parser.add_argument("--iterations", type=int, default=20)
    args = parser.parse_args()
    short, huge = (10_000, 10) if args.quick else (100_000, 90)
    with tempfile.TemporaryDirectory(prefix="fleet-bench-search-") as work:
        db = args.db or Path(work) / "search.sqlite3"
        setup(db, args.database_url)
        build(short, huge, args.huge_chars)
        run(args.iterations)


if __name__ == "__main__":
    main()
