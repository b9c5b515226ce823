"""Contention benchmark: do appends to different sessions serialize on shared rows?

Run: ``DATABASE_URL=postgres://… .venv/bin/python bench/contention.py`` (about
3 minutes). Against the (migrated) PostgreSQL database of ``DATABASE_URL``, it
starts 1, 2 and 4 processes (``--writers``); each appends one priced message
per transaction (``services.messages_append``, as one API append does) to a
session of its own, back to back, for ``--seconds``. Two cases:

- ``shared``: every session has the same agent, model and channel, so every
  append upserts the same rollup rows (the day's, the minute's, the budget
  spans') -- the hot rows a fleet of one agent name writes;
- ``disjoint``: each writer's sessions have an agent of their own, so no two
  writers touch one row.

It prints appends per second for each and what the writers' backends waited
for (sampled from ``pg_stat_activity``): ``Lock:transactionid`` / ``Lock:tuple``
is a writer waiting for another's row lock, i.e. serializing on a shared row.
The ratio shared/disjoint at the same writer count is the cost of the shared
rows; 1.0 means none. Its sessions stay in the database (keys ``contention-…``):
use a throwaway database.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import secrets
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def setup() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-secret-key")
    os.environ["DJANGO_SETTINGS_MODULE"] = "fleet.settings"
    os.environ.setdefault("FLEET_LOG_LEVEL", "WARNING")
    import django

    django.setup()


def writer(run: str, index: int, agent: str, seconds: float, start: Any, out: Any) -> None:
    setup()
    from sessions.services import messages_append

    key = f"contention-{run}-{index}"
    session = {"agent": agent, "model": "claude-sonnet-4-5", "channel": "cli"}
    message = {
        "role": "assistant",
        "content": "done",
        "usage": {"prompt_tokens": 1200, "completion_tokens": 80},
    }
    messages_append(key=key, messages=[message], session=session)  # connect, create
    start.wait()
    deadline = time.monotonic() + seconds
    count = 0
    while time.monotonic() < deadline:
        messages_append(key=key, messages=[message], session=session)
        count += 1
    out.put(count)


def sample_waits(stop: threading.Event, waits: dict[str, int]) -> None:
    setup()
    from django.db import connection

    with connection.cursor() as cursor:
        while not stop.wait(0.05):
            cursor.execute(
                "SELECT state, wait_event_type, wait_event FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND backend_type = 'client backend'"
            )
            for state, wait_type, wait_event in cursor.fetchall():
                if state == "active":
                    name = f"{wait_type}:{wait_event}" if wait_type else "running"
                    waits[name] = waits.get(name, 0) + 1


def measure(case: str, writers: int, seconds: float) -> tuple[float, dict[str, int]]:
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    out = context.Queue()
    run = f"{case}-{writers}-{secrets.token_hex(3)}"
    processes = [
        context.Process(
            target=writer,
            args=(
                run,
                i,
                "contention" if case == "shared" else f"contention-{i}",
                seconds,
                start,
                out,
            ),
        )
        for i in range(writers)
    ]
    for process in processes:
        process.start()
    time.sleep(3 + writers)  # let each import Django and create its session
    waits: dict[str, int] = {}
    stop = threading.Event()
    sampler = threading.Thread(target=sample_waits, args=(stop, waits))
    sampler.start()
    began = time.monotonic()
    start.set()
    total = sum(out.get() for _ in processes)
    elapsed = time.monotonic() - began
    stop.set()
    sampler.join()
    for process in processes:
        process.join()
    return total / elapsed, waits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writers", default="1,2,4")
    parser.add_argument("--seconds", type=float, default=8.0, help="of each case in each round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        raise SystemExit("set DATABASE_URL to a migrated, throwaway PostgreSQL database")
    setup()
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('fsync'), current_setting('synchronous_commit')")
        fsync, synchronous = cursor.fetchone()
    connection.close()
    print(
        f"Contention: fsync={fsync}, synchronous_commit={synchronous}, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    for writers in [int(n) for n in args.writers.split(",")]:
        rates: dict[str, list[float]] = {"disjoint": [], "shared": []}
        waits: dict[str, dict[str, int]] = {"disjoint": {}, "shared": {}}
        for _ in range(args.rounds):
            # Interleaved, so a neighbour's burst hits both cases alike.
            for case in ("disjoint", "shared"):
                rate, seen = measure(case, writers, args.seconds)
                rates[case].append(rate)
                for name, n in seen.items():
                    waits[case][name] = waits[case].get(name, 0) + n
        for case in ("disjoint", "shared"):
            active = sum(waits[case].values()) or 1
            locks = sum(n for name, n in waits[case].items() if name.startswith("Lock:"))
            top = sorted(waits[case].items(), key=lambda item: -item[1])[:4]
            print(
                f"{writers} writers, {case:8}: median {statistics.median(rates[case]):4.0f} "
                f"appends/s (rounds {', '.join(f'{r:.0f}' for r in rates[case])}); active "
                f"backends waiting on a row lock {locks / active:.0%} "
                f"({', '.join(f'{k} {v}' for k, v in top)})",
                flush=True,
            )
        ratios = [s / d for s, d in zip(rates["shared"], rates["disjoint"], strict=True)]
        print(
            f"  shared/disjoint: median {statistics.median(ratios):.2f} "
            f"(rounds {', '.join(f'{r:.2f}' for r in ratios)}); "
            f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}",
            flush=True,
        )


if __name__ == "__main__":
    main()
