"""Ops benchmark: purge and reconcile on large stores, against raw SQL.

Run: ``.venv/bin/python bench/ops.py`` (the issue's sizes; several minutes on
2 cores) or ``--quick`` (a smoke run at a tenth of the size, under a minute).
It builds its own throwaway SQLite databases (all migrations, so the FTS5
search triggers are in), fills them with demo-shaped rows and prints:

(a) purge: ``manage.py purge --older-than 30d`` removing S sessions holding
    M messages (default 50 000 / 500 000) from a store that keeps 10 % more
    recent ones, timed against raw ``DELETE`` statements removing the same rows
    from an identical copy, in one transaction — target ≤ 1.5×;
(b) the purge process's peak memory (the whole ``manage.py`` process, from
    ``wait4``) — target ≤ 200 MB — and again at 4× the messages (2 000 000),
    which must stay flat;
(c) reconcile: ``manage.py reconcile`` marking N stale sessions (default
    100 000) against one raw ``UPDATE`` of the same rows on a copy — target ≤ 1.5×.

The store is built with raw ``executemany`` (the demo generator writes ~140
sessions a second through the services, far too slow for 200 000 sessions);
message texts come from the demo generator
(``sessions.demo.transcript.iter_messages``), so the search index holds what
a real store holds. The service figures are the ``seconds`` of the command's
``--json`` summary (the job, not Python's start-up). See bench/README.md for
the figures measured.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from raw_sqlite import MESSAGE_TABLE, PRAGMAS, ROOT, SESSION_TABLE

NOW = datetime.now(tz=UTC)
OLD = NOW - timedelta(days=60)
RECENT = NOW - timedelta(hours=1)


def sqlite_time(moment: datetime) -> str:
    """How Django stores a datetime on SQLite: naive UTC text."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ")


def connect(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path, isolation_level=None, timeout=60)
    for pragma in PRAGMAS:
        con.execute(pragma)
    return con


# ``--database-url``: the PostgreSQL store the commands run against (else SQLite).
DATABASE_URL: str | None = None


def environment(path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DATABASE_URL", None)  # SQLite, unless --database-url
    if DATABASE_URL:
        env["DATABASE_URL"] = DATABASE_URL
    env.update(
        DJANGO_SECRET_KEY=env.get("DJANGO_SECRET_KEY", "bench-only-secret-key"),
        FLEET_SQLITE_PATH=str(path),
        DJANGO_SETTINGS_MODULE="fleet.settings",
        FLEET_LOG_LEVEL="WARNING",
    )
    return env


def migrate(path: Path) -> None:
    """A fresh, fully migrated database at ``path``."""
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "migrate", "-v0"],
        env=environment(path),
        check=True,
        cwd=ROOT,
    )


def message_pool(size: int) -> list[tuple[Any, ...]]:
    """Demo-shaped message columns (role … usage), reused round-robin by the builder."""
    sys.path.insert(0, str(ROOT))
    os.environ.update(environment(Path(tempfile.gettempdir()) / "unused.sqlite3"))
    import django

    django.setup()
    from sessions.demo.transcript import iter_messages

    pool = []
    for message in iter_messages(size, seed=5):
        usage = message.get("usage") or {}
        prompt = usage.get("prompt_tokens", 0)
        pool.append(
            (
                message["role"],
                message.get("content"),
                message.get("name", ""),
                message.get("agent_name", ""),
                json.dumps(message.get("tool_calls") or []),
                message.get("tool_call_id", ""),
                message.get("reasoning", ""),
                prompt,
                usage.get("completion_tokens", 0),
                usage.get("reasoning_tokens", 0),
                usage.get("cache_read_tokens", 0),
                usage.get("cache_creation_tokens", 0),
                prompt * 3000 if usage else None,  # nano-dollars
                "computed" if usage else "",
            )
        )
    return pool


def build(
    path: Path,
    *,
    sessions: int,
    per_session: int,
    status: str,
    pool: list,
    recent: datetime = RECENT,
) -> None:
    """Append ``sessions`` sessions of ``per_session`` messages each to the store.

    Sessions alternate between old (60 days ago, ``status``) and recent (an
    hour ago) so that one in 11 survives a 30-day purge: ``sessions`` old ones
    and ``sessions // 10`` recent ones are written, the recent spread among them.
    """
    con = connect(path)
    (start,) = con.execute(f"SELECT COALESCE(MAX(id), 0) FROM {SESSION_TABLE}").fetchone()
    session_sql = (
        f"INSERT INTO {SESSION_TABLE} (id, key, name, agent, kind, status, state, turn_id, "
        "turn_started_at, channel, channel_ref, room_id, sender_id, model, goal_text, "
        "project_root, metadata, todo, created_at, last_active_at, ended_at, turns, "
        "message_count, tool_call_count, api_calls, cost_usd, unpriced_calls, last_seq, "
        "prompt_tokens, completion_tokens, reasoning_tokens, cache_read_tokens, "
        "cache_creation_tokens) VALUES (?, ?, '', ?, 'interactive', ?, 'idle', '', NULL, "
        "'cli', '', '', '', 'gpt-4o', '', '', '{}', '', ?, ?, NULL, 0, ?, 0, 0, 0, 0, ?, "
        "0, 0, 0, 0, 0)"
    )
    message_sql = (
        f"INSERT INTO {MESSAGE_TABLE} (session_id, seq, message_id, role, content, name, "
        "agent_name, tool_calls, tool_call_id, reasoning, model, provider_response_id, status, "
        "is_summary, prompt_tokens, completion_tokens, reasoning_tokens, cache_read_tokens, "
        "cache_creation_tokens, cost_usd, cost_source, created_at, compacted_at) "
        "VALUES (?, ?, NULL, ?, ?, ?, ?, ?, ?, ?, '', '', '', 0, ?, ?, ?, ?, ?, ?, ?, ?, NULL)"
    )
    total = sessions + sessions // 10
    chunk = max(1, 20_000 // max(1, per_session))
    cursor = 0
    for first in range(0, total, chunk):
        session_rows = []
        message_rows = []
        for offset in range(first, min(total, first + chunk)):
            pk = start + offset + 1
            fresh = offset % 11 == 10
            at = recent if fresh else OLD + timedelta(seconds=offset)
            stamp = sqlite_time(at)
            session_rows.append(
                (
                    pk,
                    f"bench-{pk}",
                    f"agent-{pk % 7}",
                    "active" if fresh else status,
                    stamp,
                    stamp,
                    per_session,
                    per_session,
                )
            )
            for seq in range(1, per_session + 1):
                message_rows.append((pk, seq, *pool[cursor % len(pool)], stamp))
                cursor += 1
        con.execute("BEGIN IMMEDIATE")
        con.executemany(session_sql, session_rows)
        con.executemany(message_sql, message_rows)
        con.execute("COMMIT")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.execute("ANALYZE")
    con.close()


def copy(source: Path, target: Path) -> Path:
    for suffix in ("", "-wal", "-shm"):
        done = Path(str(target) + suffix)
        if done.exists():
            done.unlink()
    shutil.copyfile(source, target)
    return target


# Runs manage.py, then reports the process's own peak RSS (VmHWM): ru_maxrss
# from wait4 would carry over the benchmark's own peak across fork and exec.
_WRAPPER = """
import runpy, sys
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    with open("/proc/self/status") as status:
        peak = next(line for line in status if line.startswith("VmHWM:"))
    sys.stderr.write("PEAK_KB " + peak.split()[1] + "\\n")
"""


def manage(path: Path, *args: str) -> tuple[dict[str, Any], float]:
    """Run ``manage.py ARGS --json``; returns its summary and its peak RSS in MB."""
    process = subprocess.run(
        [sys.executable, "-c", _WRAPPER, str(ROOT / "manage.py"), *args, "--json"],
        env=environment(path),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if process.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args)} failed: {process.stderr}")
    peak_kb = next(
        int(line.split()[1]) for line in process.stderr.splitlines() if line.startswith("PEAK_KB")
    )
    return json.loads(process.stdout), peak_kb / 1024


def raw(path: Path, statements: list[tuple[str, tuple[Any, ...]]]) -> tuple[float, list[int]]:
    """Run ``statements`` in one transaction; returns seconds and rows changed by each."""
    con = connect(path)
    changed = []
    start = time.perf_counter()
    con.execute("BEGIN IMMEDIATE")
    for sql, params in statements:
        changed.append(con.execute(sql, params).rowcount)
    con.execute("COMMIT")
    seconds = time.perf_counter() - start
    con.close()
    return seconds, changed


def compare(
    work: Path,
    base: Path,
    *,
    command: list[str],
    statements: list[tuple[str, tuple[Any, ...]]],
    repeat: int,
) -> list[dict[str, Any]]:
    """``repeat`` rounds of the command and the raw statements, each on a fresh copy.

    Both copies are written and flushed (``os.sync``) before either side
    runs, and the side that goes first alternates, so the page cache and
    the disk favour neither.
    """
    rounds = []
    for number in range(repeat):
        service_db = copy(base, work / "service.sqlite3")
        raw_db = copy(base, work / "raw.sqlite3")
        os.sync()
        if number % 2:
            summary, peak = manage(service_db, *command)
            raw_seconds, changed = raw(raw_db, statements)
        else:
            raw_seconds, changed = raw(raw_db, statements)
            summary, peak = manage(service_db, *command)
        rounds.append(
            {
                "summary": summary,
                "changed": changed,
                "service_s": summary["seconds"],
                "raw_s": round(raw_seconds, 3),
                "ratio": round(summary["seconds"] / raw_seconds, 2),
                "peak_mb": round(peak, 1),
            }
        )
    for name in ("service.sqlite3", "raw.sqlite3"):
        copy(base, work / name).unlink()
    return rounds


def medians(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "rounds": len(rounds),
        "service_s": statistics.median(r["service_s"] for r in rounds),
        "raw_s": statistics.median(r["raw_s"] for r in rounds),
        "ratio": statistics.median(r["ratio"] for r in rounds),
        "ratios": [r["ratio"] for r in rounds],
        "peak_mb": max(r["peak_mb"] for r in rounds),
    }


def bench_purge(
    work: Path, base: Path, *, sessions: int, per_session: int, repeat: int
) -> dict[str, Any]:
    cutoff = sqlite_time(NOW - timedelta(days=30))
    rounds = compare(
        work,
        base,
        command=["purge", "--older-than", "30d"],
        statements=[
            (
                f"DELETE FROM {MESSAGE_TABLE} WHERE session_id IN "
                f"(SELECT id FROM {SESSION_TABLE} WHERE last_active_at < ?)",
                (cutoff,),
            ),
            (f"DELETE FROM {SESSION_TABLE} WHERE last_active_at < ?", (cutoff,)),
        ],
        repeat=repeat,
    )
    for r in rounds:
        raw_messages, raw_sessions = r["changed"]
        summary = r["summary"]
        # The same rows on both sides.
        assert (summary["sessions"], summary["session_messages"]) == (raw_sessions, raw_messages)
        assert (raw_sessions, raw_messages) == (sessions, sessions * per_session)
    return {"sessions": sessions, "messages": sessions * per_session, **medians(rounds)}


def purge_memory(work: Path, base: Path) -> dict[str, Any]:
    """One service purge, for its peak memory only."""
    target = copy(base, work / "service.sqlite3")
    os.sync()
    summary, peak = manage(target, "purge", "--older-than", "30d")
    target.unlink()
    return {
        "sessions": summary["sessions"],
        "messages": summary["session_messages"],
        "service_s": summary["seconds"],
        "peak_mb": round(peak, 1),
    }


def bench_reconcile(work: Path, base: Path, *, sessions: int, repeat: int) -> dict[str, Any]:
    cutoff = sqlite_time(NOW - timedelta(minutes=30))
    rounds = compare(
        work,
        base,
        command=["reconcile"],
        statements=[
            (
                f"UPDATE {SESSION_TABLE} SET status = 'unknown', state = 'idle', turn_id = '', "
                "turn_started_at = NULL WHERE status = 'active' AND last_active_at <= ?",
                (cutoff,),
            )
        ],
        repeat=repeat,
    )
    for r in rounds:
        assert r["summary"]["stale"] == r["changed"][0] == sessions, r
    return {"sessions": sessions, **medians(rounds)}


def baseline_memory(base: Path) -> float:
    """Peak RSS of a purge that removes nothing: Django and the app, loaded."""
    _, peak = manage(base, "purge", "--tombstones-older-than", "36500d")
    return round(peak, 1)


# --- PostgreSQL: an existing large store (bench/generate.py) ----------------------


def pg_raw(statements: list[tuple[str, tuple[Any, ...]]]) -> tuple[float, list[int]]:
    """Run ``statements`` in one transaction, timed, then roll it back (the store
    stays for the service's run); returns seconds and rows changed by each."""
    import psycopg
    from load import _dsn

    assert DATABASE_URL
    with psycopg.connect(_dsn(DATABASE_URL)) as conn:
        changed = []
        start = time.perf_counter()
        for sql, params in statements:
            changed.append(conn.execute(sql, params).rowcount)
        seconds = time.perf_counter() - start
        conn.rollback()
    return seconds, changed


def pg_compare(
    command: list[str], statements: list[tuple[str, tuple[Any, ...]]], repeat: int
) -> dict[str, Any]:
    """The raw statements ``repeat`` times (rolled back; the first reads a cold
    cache), then the command once (it commits): the fastest raw round against
    the command's ``seconds`` (on 1 M sessions the cold round took 4x the warm
    one, and a median of two would average them)."""
    raws = [pg_raw(statements) for _ in range(repeat)]
    raw_s = min(seconds for seconds, _ in raws)
    summary, peak = manage(Path("unused"), *command)
    return {
        "summary": summary,
        "changed": raws[0][1],
        "raw_rounds": [round(seconds, 2) for seconds, _ in raws],
        "raw_s": round(raw_s, 2),
        "service_s": summary["seconds"],
        "ratio": round(summary["seconds"] / raw_s, 2),
        "peak_mb": round(peak, 1),
    }


def main_postgres(args: argparse.Namespace) -> None:
    """Reconcile, then purge, on the store at ``--database-url`` (both commit: the
    store is smaller afterwards). Raw sides run first, in rolled-back transactions."""
    global DATABASE_URL
    DATABASE_URL = args.database_url
    now = datetime.now(tz=UTC)
    session, message, turn = SESSION_TABLE, MESSAGE_TABLE, "agent_sessions_turn"
    results: dict[str, Any] = {"database": "postgresql"}
    results["baseline_mb"] = baseline_memory(Path("unused"))

    stale_cutoff = now - timedelta(minutes=30)
    reconcile = pg_compare(
        ["reconcile", "--stale-after", "30m", "--stuck-after", "36500d"],
        [
            (
                f"UPDATE {session} SET status = 'unknown', state = 'idle', turn_id = '', "
                "turn_started_at = NULL WHERE status = 'active' AND last_active_at <= %s",
                (stale_cutoff,),
            )
        ],
        args.repeat,
    )
    stale = reconcile["summary"]["stale"]
    # The service's cut-off is its own clock's, a little later: a few more may be stale.
    assert 0 <= stale - reconcile["changed"][0] <= max(50, stale // 100), reconcile
    results["reconcile"] = {"sessions": stale, **reconcile}
    print(json.dumps({"reconcile": results["reconcile"]}), flush=True)

    cutoff = now - timedelta(days=args.older_than_days)
    doomed = f"SELECT id FROM {session} WHERE last_active_at < %s"
    purge = pg_compare(
        ["purge", "--older-than", f"{args.older_than_days}d"],
        [
            (f"DELETE FROM {turn} WHERE session_id IN ({doomed})", (cutoff,)),
            (f"DELETE FROM {message} WHERE session_id IN ({doomed})", (cutoff,)),
            (f"DELETE FROM {session} WHERE last_active_at < %s", (cutoff,)),
        ],
        args.repeat,
    )
    _, raw_messages, raw_sessions = purge["changed"]
    summary = purge["summary"]
    assert abs(summary["sessions"] - raw_sessions) <= max(50, raw_sessions // 1000), purge
    results["purge"] = {"sessions": raw_sessions, "messages": raw_messages, **purge}
    print(json.dumps(results, indent=2, default=str))
    print(
        f"(a) purge {raw_sessions} sessions / {raw_messages} messages: service "
        f"{purge['service_s']} s, raw DELETE {purge['raw_s']} s, ratio {purge['ratio']} "
        f"(target <= 1.5); peak RSS {purge['peak_mb']} MB (baseline {results['baseline_mb']} MB)"
    )
    print(
        f"(c) reconcile {stale} stale sessions: service {reconcile['service_s']} s, "
        f"raw UPDATE {reconcile['raw_s']} s, ratio {reconcile['ratio']} (target <= 1.5)"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the sizes")
    parser.add_argument("--sessions", type=int, default=None, help="sessions purged (a)")
    parser.add_argument("--per-session", type=int, default=10, help="messages per session")
    parser.add_argument("--stale", type=int, default=None, help="stale sessions (c)")
    parser.add_argument("--skip-flat", action="store_true", help="skip the 4x memory run")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per comparison")
    parser.add_argument("--keep", type=Path, default=None, help="build in this folder, keep it")
    parser.add_argument(
        "--database-url",
        default=None,
        help="PostgreSQL: reconcile and purge this existing store (e.g. bench/generate.py's); "
        "it is changed",
    )
    parser.add_argument(
        "--older-than-days", type=int, default=29, help="--database-url: purge's age (29: ~10 %%)"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.database_url:
        main_postgres(args)
        return
    scale = 10 if args.quick else 1
    sessions = args.sessions or 50_000 // scale
    stale = args.stale or 100_000 // scale
    random.seed(5)
    work = args.keep or Path(tempfile.mkdtemp(prefix="fleet-bench-ops-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"sqlite": sqlite3.sqlite_version}
    try:
        pool = message_pool(2000)

        started = time.perf_counter()
        base = work / "purge-base.sqlite3"
        migrate(base)
        build(base, sessions=sessions, per_session=args.per_session, status="completed", pool=pool)
        results["build_purge_s"] = round(time.perf_counter() - started, 1)
        results["baseline_mb"] = baseline_memory(base)
        results["purge"] = bench_purge(
            work, base, sessions=sessions, per_session=args.per_session, repeat=args.repeat
        )
        if args.keep is None:
            base.unlink()  # room for the 4x store
        print(json.dumps({"purge": results["purge"]}), flush=True)

        if not args.skip_flat:
            big = work / "purge-big.sqlite3"
            migrate(big)
            build(
                big,
                sessions=sessions * 4,
                per_session=args.per_session,
                status="completed",
                pool=pool,
            )
            results["purge_4x"] = purge_memory(work, big)
            if args.keep is None:
                big.unlink()
            print(json.dumps({"purge_4x": results["purge_4x"]}), flush=True)

        stale_base = work / "reconcile-base.sqlite3"
        migrate(stale_base)
        build(
            stale_base,
            sessions=stale,
            per_session=0,
            status="active",
            pool=pool,
            recent=datetime.now(tz=UTC),
        )
        # The recent tenth is active and fresh: reconcile must leave it alone.
        results["reconcile"] = bench_reconcile(work, stale_base, sessions=stale, repeat=args.repeat)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=2))
    purge = results["purge"]
    print(
        f"(a) purge {purge['sessions']} sessions / {purge['messages']} messages: "
        f"service {purge['service_s']} s, raw DELETE {purge['raw_s']} s, "
        f"ratio {purge['ratio']} (target <= 1.5)"
    )
    line = f"(b) purge peak RSS {purge['peak_mb']} MB (baseline {results['baseline_mb']} MB)"
    if "purge_4x" in results:
        big = results["purge_4x"]
        line += f", at {big['messages']} messages {big['peak_mb']} MB"
    print(line + " (target <= 200 MB, flat)")
    reconcile = results["reconcile"]
    print(
        f"(c) reconcile {reconcile['sessions']} stale sessions: "
        f"service {reconcile['service_s']} s, raw UPDATE {reconcile['raw_s']} s, "
        f"ratio {reconcile['ratio']} (target <= 1.5)"
    )


if __name__ == "__main__":
    main()
