"""Ingest benchmark: the JSON API under gunicorn, against raw SQLite.

Run: ``.venv/bin/python bench/ingest.py`` (under a minute; ``--quick`` for a
smoke run). It migrates a fresh SQLite database in a temporary directory,
makes an API key, starts ``gunicorn fleet.wsgi`` (2 sync workers) on a free
loopback port, and prints:

(a) messages per second through the API: several concurrent clients each
    append 500-message batches (demo-shaped messages from the fleet
    simulator, ``fleet.simulator``) to their own session; then the very rows
    the server stored, written with raw ``sqlite3.executemany`` into the same
    tables of a second database migrated alike (FTS triggers included), one
    ``BEGIN IMMEDIATE … COMMIT`` and one session-row ``UPDATE`` per batch;
    and their ratio — target ≥ 0.3;
(b) the p50/p99 latency of single-message appends while 8 clients write:
    8 clients each append one message per request, back to back.

See bench/README.md for what the figures mean and the ones measured.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from raw_sqlite import (
    MESSAGE_TABLE,
    ROOT,
    SESSION_TABLE,
    TOTALS,
    columns,
    connect,
    insert_sql,
    update_params,
    write_batch,
)

sys.path.insert(0, str(ROOT))

from fleet.simulator import PROFILES, ApiClient, Conversation
from fleet.simulator.client import session_path

# --- the server -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(db_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}  # SQLite only
    env.update(
        DJANGO_SECRET_KEY="bench-only-secret-key",  # noqa: S106 - a throwaway server
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        FLEET_SQLITE_PATH=str(db_path),
        # No collectstatic ran: WhiteNoise would warn in every worker.
        PYTHONWARNINGS="ignore:No directory at:UserWarning",
    )
    return env


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout.strip()


class Gunicorn:
    """``gunicorn fleet.wsgi`` on 127.0.0.1, stopped on exit."""

    def __init__(self, env: dict[str, str], workdir: Path, workers: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "gunicorn.log"
        # gunicorn reads ./gunicorn.conf.py unless told otherwise: these flags
        # alone say how it runs (sync workers, the app's logs to a file).
        config = workdir / "gunicorn.conf.py"
        config.write_text("# bench/ingest.py: every setting is on the command line\n")
        command = [
            *(sys.executable, "-m", "gunicorn", "--config", str(config), "fleet.wsgi"),
            *("--bind", f"127.0.0.1:{self.port}", "--workers", str(workers)),
            *("--worker-class", "sync", "--timeout", "120"),
        ]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                    if b" 200 " in sock.recv(100):
                        return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise SystemExit(f"gunicorn did not start:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# --- (a) batches through the API, then raw ---------------------------------------


def batches_for(client: int, rep: int, batches: int, size: int) -> tuple[str, list[bytes]]:
    """A session key and its request bodies (JSON, encoded before the clock starts)."""
    profile = PROFILES[client % len(PROFILES)]
    rng = random.Random(f"ingest:{rep}:{client}")
    model = profile.models[0]
    conversation = Conversation(rng, profile, model)
    messages: list[dict[str, Any]] = []
    while len(messages) < batches * size:
        messages += conversation.turn_messages()
    session = {"agent": f"bench-{profile.name}", "kind": profile.kind, "model": model}
    bodies = []
    for n in range(batches):
        body: dict[str, Any] = {"messages": messages[n * size : (n + 1) * size]}
        if n == 0:
            body["session"] = session
        bodies.append(json.dumps(body).encode())
    return f"ingest-{rep}-{client}", bodies


def send_all(url: str, token: str, work: list[tuple[str, list[bytes]]]) -> tuple[float, list]:
    """Every client sends its bodies in order, all clients at once; wall seconds."""
    errors: list[str] = []
    start = threading.Barrier(len(work) + 1)

    def client(key: str, bodies: list[bytes]) -> None:
        api = ApiClient(url, token, timeout=120)
        start.wait()
        for body in bodies:
            response = api.send("POST", session_path(key, "/messages"), body)
            if response.status not in (200, 201):
                errors.append(f"{key}: HTTP {response.status}: {response.data}")
        api.close()

    threads = [threading.Thread(target=client, args=item) for item in work]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - began, errors


def raw_rate(served: Path, raw: Path, keys: list[str], size: int) -> float:
    """Write the rows the server stored for ``keys`` into ``raw``: messages per second."""
    reader = connect(served)
    writer = connect(raw)
    session_columns = columns(reader, SESSION_TABLE)
    message_columns = [c for c in columns(reader, MESSAGE_TABLE) if c != "id"]
    insert = insert_sql(MESSAGE_TABLE, message_columns)
    work = []
    for key in keys:
        row = reader.execute(f"SELECT * FROM {SESSION_TABLE} WHERE key = ?", (key,)).fetchone()
        session_id = row[session_columns.index("id")]
        # The session as it was before its messages (the raw side adds them up again).
        fresh = dict(zip(session_columns, row, strict=True))
        fresh.update(dict.fromkeys((*TOTALS, "last_seq", "unpriced_calls"), 0))
        writer.execute(insert_sql(SESSION_TABLE, fresh), tuple(fresh.values()))
        rows = reader.execute(
            f"SELECT {', '.join(message_columns)} FROM {MESSAGE_TABLE} "
            "WHERE session_id = ? ORDER BY seq",
            (session_id,),
        ).fetchall()
        for start in range(0, len(rows), size):
            batch = rows[start : start + size]
            work.append((batch, update_params(batch, message_columns, session_id)))
    reader.close()
    began = time.perf_counter()
    for batch, params in work:
        write_batch(writer, insert, batch, params)
    seconds = time.perf_counter() - began
    writer.close()
    return sum(len(batch) for batch, _ in work) / seconds


# --- (b) single appends while 8 clients write ----------------------------------------


def single_appends(url: str, token: str, clients: int, seconds: float, tag: str) -> list[float]:
    """Latencies (s) of one-message appends, ``clients`` clients back to back."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(n: int) -> None:
        profile = PROFILES[n % len(PROFILES)]
        conversation = Conversation(random.Random(f"single:{n}"), profile, profile.models[0])
        api = ApiClient(url, token)
        key = f"single-{tag}-{n}"
        api.call("PUT", session_path(key), {"agent": f"bench-{n}"}, expect=(201,))
        pending: list[dict[str, Any]] = []
        mine: list[float] = []
        while not stop.is_set():
            if not pending:
                pending = conversation.turn_messages()
            body = json.dumps({"messages": [pending.pop(0)]}).encode()
            response = api.send("POST", session_path(key, "/messages"), body)
            if response.status != 200:
                errors.append(f"HTTP {response.status}: {response.data}")
            mine.append(response.seconds)
        api.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    if errors:
        raise SystemExit(f"{len(errors)} single appends failed, e.g. {errors[0]}")
    return latencies


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=4, help="concurrent batch clients")
    parser.add_argument("--batches", type=int, default=2, help="500-message batches per client")
    parser.add_argument("--rounds", type=int, default=9, help="rounds of (a); medians")
    parser.add_argument("--seconds", type=float, default=10, help="duration of (b)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds = 2, 3
    size = 500

    workdir = Path(tempfile.mkdtemp(prefix="fleet-ingest-"))
    server = None
    try:
        served, raw = workdir / "served.sqlite3", workdir / "raw.sqlite3"
        env = server_env(served)
        manage(env, "migrate", "--no-input", "-v0")
        shutil.copyfile(served, raw)  # migrate closed the database: the file is whole
        token = manage(env, "create_api_key", "bench", "-v0")
        server = Gunicorn(env, workdir, args.workers)
        server.wait_ready()
        print(
            f"SQLite {sqlite3.sqlite_version}, Python {sys.version.split()[0]}, "
            f"gunicorn {args.workers} sync workers on {server.url}"
        )
        # Warm both workers up (URL resolver, price table) before any clock starts.
        warm = [batches_for(n, -1, 1, 20) for n in range(4)]
        send_all(server.url, token, warm)

        # Short rounds, each API then raw on the same rows: on a shared machine
        # the median of many close pairs is steadier than one long run of each.
        ratios, api_rates, raw_rates = [], [], []
        for rnd in range(args.rounds):
            work = [batches_for(n, rnd, args.batches, size) for n in range(args.clients)]
            seconds, errors = send_all(server.url, token, work)
            if errors:
                raise SystemExit(f"{len(errors)} batches failed, e.g. {errors[0]}")
            api_rates.append(args.clients * args.batches * size / seconds)
            raw_rates.append(raw_rate(served, raw, [key for key, _ in work], size))
            ratios.append(api_rates[-1] / raw_rates[-1])
        ratio = statistics.median(ratios)
        print(
            f"(a) {args.rounds} rounds of {args.clients} clients x {args.batches} batches of "
            f"{size} messages: ratio per round {' '.join(f'{r:.2f}' for r in ratios)}"
        )
        print(
            f"(a) API {statistics.median(api_rates):,.0f} msg/s, raw executemany "
            f"{statistics.median(raw_rates):,.0f} msg/s (medians); median ratio {ratio:.2f} "
            f"(target >= 0.3: {'met' if ratio >= 0.3 else 'MISSED'})"
        )
        alone = single_appends(server.url, token, 1, args.seconds / 2, tag="alone")
        latencies = single_appends(server.url, token, 8, args.seconds, tag="eight")
        print(
            f"(b) single-message appends, 8 clients back to back for {args.seconds:g} s: "
            f"{len(latencies) / args.seconds:,.0f} appends/s, "
            f"p50 {percentile(latencies, 0.5) * 1000:.1f} ms, "
            f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms"
        )
        print(
            f"(info) one client alone: {len(alone) / (args.seconds / 2):,.0f} appends/s, "
            f"p50 {percentile(alone, 0.5) * 1000:.1f} ms, "
            f"p99 {percentile(alone, 0.99) * 1000:.1f} ms"
        )
        return 0
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
