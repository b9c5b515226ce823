"""Concurrent searches against the production server: does /healthz still answer?

Run after ``bench/search.py --db PATH`` has built the attacker's corpus into
PATH (the database is kept)::

    .venv/bin/python bench/search_load.py --db var/bench-search.sqlite3

It serves PATH with gunicorn in the production configuration (the default
worker count, 2 × cores + 1) on a free loopback port, makes an API key, and
for ``--seconds`` runs ``--searchers`` threads searching back to back with
the 16 query words while one more client asks ``/healthz`` five times a
second. It prints p50/p95 of both. Issue 10 measured /healthz at 13.5 s with
four concurrent searches before search was bounded.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from pages import percentiles  # noqa: E402 -- the benchmarks' p50/p95
from search import QUERY_WORDS  # noqa: E402 -- the corpus' words

PYTHON = ROOT / ".venv" / "bin" / "python"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str, key: str = "", timeout: float = 120) -> None:
    """GET a URL of the server this script started (loopback http, never a file)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 -- our own http URL
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        response.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, required=True, help="a database bench/search.py built")
    parser.add_argument("--searchers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()
    if not args.db.exists():
        parser.error(f"{args.db} does not exist: build it with bench/search.py --db {args.db}")

    env = {
        **os.environ,
        "FLEET_SQLITE_PATH": str(args.db.resolve()),
        "DJANGO_SECRET_KEY": "bench-only-secret-key-not-for-production-use-0",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "FLEET_LOG_LEVEL": "WARNING",
        # Every search is authenticated; nothing here sends a wrong key.
        "FLEET_API_BAD_KEY_LIMIT": "0",
    }
    env.pop("DATABASE_URL", None)
    manage = [str(PYTHON), str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True)
    key = subprocess.run(
        [*manage, "create_api_key", f"search-load-{int(time.time())}"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    port = free_port()
    bind = f"127.0.0.1:{port}"
    server = subprocess.Popen(
        [ROOT / ".venv" / "bin" / "gunicorn", "fleet.wsgi", "-c", "gunicorn.conf.py", "-b", bind],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                get(f"{base}/healthz", timeout=2)
                break
            except OSError:
                time.sleep(0.2)
        query = "+".join(QUERY_WORDS[:16])
        stop = time.monotonic() + args.seconds
        searches: list[float] = []

        def search() -> None:
            while time.monotonic() < stop:
                started = time.monotonic()
                get(f"{base}/api/v1/search?q={query}", key)
                searches.append(time.monotonic() - started)

        threads = [threading.Thread(target=search) for _ in range(args.searchers)]
        for thread in threads:
            thread.start()
        health: list[float] = []
        while time.monotonic() < stop:
            started = time.monotonic()
            get(f"{base}/healthz")
            health.append(time.monotonic() - started)
            time.sleep(0.2)
        for thread in threads:
            thread.join()
    finally:
        server.terminate()
        server.wait(30)
    print(f"{args.searchers} searchers for {args.seconds:.0f} s ({os.cpu_count()} cores)")
    for label, times in (("searches", searches), ("/healthz", health)):
        figures = percentiles([seconds * 1000 for seconds in times])
        print(
            f"{label:9} {len(times):5d}  p50 {figures['p50']:6.0f} ms"
            f"  p95 {figures['p95']:6.0f} ms  max {max(times) * 1000:.0f} ms"
        )


if __name__ == "__main__":
    main()
