"""Follow benchmark: ``fleet-follow``'s mirror lag and catch-up rate against a real server.

Run: ``.venv/bin/python bench/follow.py`` (about 3 minutes on 2 cores;
``--quick`` for a smoke run). It migrates a fresh SQLite database in a
temporary directory, makes an API key, starts ``gunicorn fleet.wsgi`` (2 sync
workers, as ``bench/ingest.py``) and prints:

(a) mirror lag: a writer appends 50 messages/s to a koda store (WAL) and
    another to a zeroclaw JSONL file, for ``--seconds``, while one
    ``fleet-follow`` per store (``python -m fleet.follow``, interval 1 s)
    feeds the server. A watcher asks the server every 50 ms how many
    messages each session has (``GET /sessions/{key}``); a message's lag is
    the time from its commit in the store to the first answer that counts
    it. p50/p99 per store, target p99 ≤ 3 × interval.
(b) catch-up: a koda backlog of ``--backlog`` messages (100 sessions) sent by
    ``fleet-follow --once`` into the server, against ``manage.py
    import_sessions koda`` of the same store into a fresh local database;
    messages per second each (process start included on both sides) and
    their ratio, target ≥ 0.5.
(c) lag on a large store: (a) again, on (b)'s store (its follower resumes
    from (b)'s cursor): koda is read since the cursor, so a poll reads the
    session being written from the cursor on, not the whole store.

See bench/README.md for what the figures mean and the ones measured.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from ingest import Gunicorn, manage, server_env
from raw_sqlite import ROOT

sys.path.insert(0, str(ROOT))

from fleet.simulator import ApiClient
from fleet.simulator.client import session_path
from tests.store_schemas import KODA_SCHEMA  # no Django: this process has no settings

RATE = 50  # messages per second and store
INTERVAL = 1.0


def follower_env(token: str) -> dict[str, str]:
    """The sidecar's environment: no Django settings, no database, the key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "FLEET_"))}
    env.pop("DATABASE_URL", None)
    env.update(FLEET_KEY=token, PYTHONPATH=str(ROOT))
    return env


def follow_command(fmt: str, path: Path, url: str, state: Path, *extra: str) -> list[str]:
    return [
        *(sys.executable, "-m", "fleet.follow", fmt, str(path), "--url", url),
        *("--state", str(state), *extra),
    ]


# --- (a) lag ----------------------------------------------------------------------


def koda_writer(path: Path, key: str, seconds: float, commits: list[float]) -> None:
    with sqlite3.connect(path, timeout=5) as setup:
        if not setup.execute("SELECT 1 FROM sqlite_master WHERE name = 'messages'").fetchone():
            setup.executescript(KODA_SCHEMA)
        setup.execute("PRAGMA journal_mode=wal")
    conn = sqlite3.connect(path, timeout=5)
    start = time.monotonic()
    number = 0
    while time.monotonic() - start < seconds:
        at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
        with conn:
            conn.execute(
                "INSERT OR IGNORE INTO sessions (id, created_at, agent_name) VALUES (?, ?, 'koda')",
                (key, at),
            )
            conn.execute(
                "INSERT INTO messages (session_id, role, content, prompt_tokens, "
                "completion_tokens, created_at) VALUES (?, ?, ?, 120, 40, ?)",
                (key, "assistant" if number % 2 else "user", f"message {number} " * 20, at),
            )
            conn.execute("UPDATE sessions SET last_accessed_at = ? WHERE id = ?", (at, key))
        commits.append(time.time())
        number += 1
        time.sleep(max(0.0, start + number / RATE - time.monotonic()))
    conn.close()


def jsonl_writer(folder: Path, key: str, seconds: float, commits: list[float]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    number = 0
    with (folder / f"{key}.jsonl").open("a", encoding="utf-8") as handle:
        while time.monotonic() - start < seconds:
            role = "assistant" if number % 2 else "user"
            handle.write(json.dumps({"role": role, "content": f"message {number} " * 20}) + "\n")
            handle.flush()
            commits.append(time.time())
            number += 1
            time.sleep(max(0.0, start + number / RATE - time.monotonic()))


def watch(url: str, token: str, keys: dict[str, list[float]], done: threading.Event) -> dict:
    """Each message's lag (commit → first answer counting it), per key."""
    client = ApiClient(url, token)
    lags: dict[str, list[float]] = {key: [] for key in keys}
    deadline = None
    while True:
        for key, commits in keys.items():
            response = client.send("GET", session_path(key))
            seen = time.time()
            if response.status != 200:
                continue
            count = response.data["message_count"]
            while len(lags[key]) < count:
                lags[key].append(seen - commits[len(lags[key])])
        if done.is_set():
            deadline = deadline or time.monotonic() + 60 * INTERVAL
            finished = all(len(lags[key]) == len(keys[key]) for key in keys)
            if finished or time.monotonic() > deadline:
                return lags
        time.sleep(0.05)


def lag_run(
    url: str, token: str, workdir: Path, seconds: float, stores: dict[str, tuple[str, Path]]
) -> dict[str, list[float]]:
    """``stores``: session key → (format, path) written at ``RATE`` while followed."""
    commits: dict[str, list[float]] = {key: [] for key in stores}
    writers = [
        threading.Thread(
            target=koda_writer if fmt == "koda" else jsonl_writer,
            args=(path, key, seconds, commits[key]),
        )
        for key, (fmt, path) in stores.items()
    ]
    for writer in writers:
        writer.start()
    while not all(commits.values()):
        time.sleep(0.01)
    env = follower_env(token)
    followers = [
        subprocess.Popen(
            follow_command(fmt, path, url, workdir / f"{path.name}.state", "--interval", "1s"),
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(workdir / f"follow-{key}.log").open("w"),
        )
        for key, (fmt, path) in stores.items()
    ]
    done = threading.Event()
    result: dict[str, dict] = {}
    watcher = threading.Thread(target=lambda: result.update(lags=watch(url, token, commits, done)))
    watcher.start()
    for writer in writers:
        writer.join()
    done.set()
    watcher.join()
    for process in followers:
        process.terminate()
        process.wait(timeout=60)
    return result["lags"]


def lag_line(name: str, values: list[float]) -> str:
    p50, p99 = quantile(values, 50), quantile(values, 99)
    verdict = "met" if p99 <= 3 * INTERVAL else "NOT met"
    return (
        f"{name}: {len(values)} messages at {RATE}/s, interval {INTERVAL:g}s: "
        f"lag p50 {p50:.2f}s, p99 {p99:.2f}s, max {max(values, default=0):.2f}s "
        f"(target p99 ≤ {3 * INTERVAL:g}s: {verdict})"
    )


# --- (b) catch-up ------------------------------------------------------------------


def backlog(path: Path, messages: int, sessions: int = 100) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(KODA_SCHEMA)
    conn.executemany(
        "INSERT INTO sessions (id, created_at, agent_name) VALUES (?, '2026-11-01 10:00:00', ?)",
        [(f"backlog-{n}", "koda") for n in range(sessions)],
    )
    conn.executemany(
        "INSERT INTO messages (session_id, role, content, prompt_tokens, completion_tokens, "
        "cache_read_tokens, created_at) VALUES (?, ?, ?, 1200, 300, 800, '2026-11-01 10:00:01')",
        (
            (f"backlog-{n % sessions}", "assistant" if n % 2 else "user", f"message {n} " * 30)
            for n in range(messages)
        ),
    )
    conn.commit()
    conn.close()


def catch_up(url: str, token: str, workdir: Path, messages: int) -> tuple[float, float]:
    """Seconds for fleet-follow --once into the server, and for import_sessions locally."""
    store = workdir / "backlog.db"
    backlog(store, messages)
    began = time.perf_counter()
    done = subprocess.run(
        follow_command("koda", store, url, workdir / f"{store.name}.state", "--once"),
        cwd=ROOT,
        env=follower_env(token),
        capture_output=True,
        text=True,
        check=False,
    )
    follow_seconds = time.perf_counter() - began
    if done.returncode:
        raise SystemExit(f"fleet-follow failed:\n{done.stderr[-3000:]}")
    local = server_env(workdir / "local.sqlite3")
    manage(local, "migrate", "--no-input")
    began = time.perf_counter()
    manage(local, "import_sessions", "koda", str(store))
    return follow_seconds, time.perf_counter() - began


def quantile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if values else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30, help="writing time of (a)")
    parser.add_argument("--backlog", type=int, default=100_000, help="messages of (b)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    parser.add_argument("--quick", action="store_true", help="5 s of (a), 10 000 of (b)")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.backlog = 5, 10_000
    with tempfile.TemporaryDirectory(prefix="fleet-bench-follow-") as tmp:
        workdir = Path(tempfile.mkdtemp(prefix="fleet-bench-follow-") if args.keep else tmp)
        if args.keep:
            print(f"work folder (kept): {workdir}")
        env = server_env(workdir / "fleet.sqlite3")
        manage(env, "migrate", "--no-input")
        token = manage(env, "create_api_key", "bench", "-v0")
        server = Gunicorn(env, workdir, args.workers)
        server.wait_ready()
        try:
            stores = {
                "lag-koda": ("koda", workdir / "lag-koda.db"),
                "lag-zc": ("zeroclaw", workdir / "lag-zc"),
            }
            lags = lag_run(server.url, token, workdir, args.seconds, stores)
            print(lag_line("(a) koda (WAL)", lags["lag-koda"]))
            print(lag_line("(a) zeroclaw JSONL", lags["lag-zc"]))
            follow_s, import_s = catch_up(server.url, token, workdir, args.backlog)
            ratio = import_s / follow_s
            print(
                f"(b) backlog of {args.backlog} koda messages: fleet-follow --once "
                f"{args.backlog / follow_s:,.0f} msg/s ({follow_s:.1f}s), import_sessions "
                f"{args.backlog / import_s:,.0f} msg/s ({import_s:.1f}s): ratio {ratio:.2f} "
                f"(target ≥ 0.5: {'met' if ratio >= 0.5 else 'NOT met'})"
            )
            # (c) the backlog's store, followed from (b)'s cursor, written to live.
            stores = {"backlog-live": ("koda", workdir / "backlog.db")}
            lags = lag_run(server.url, token, workdir, args.seconds, stores)
            print(
                lag_line(f"(c) koda after a {args.backlog}-message backlog", lags["backlog-live"])
            )
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
