"""``/metrics`` alone: a scrape's time, size and where the time goes.

Run: ``.venv/bin/python bench/scrape.py --database-url postgres://…`` (or
``--db PATH`` for SQLite). Reads only: it requests ``/metrics`` through
Django's test client (middleware, view, encoding: everything but the
network) ``--iterations`` times and prints p50 / p95 / min of the wall time,
the queries, the bytes, lines and samples of one scrape, the series of
``fleet_latency_seconds``; then each part of ``FleetCollector`` timed alone
(median of the same number of runs) and the text encoding of its families.
``bench/pages.py`` has a ``/metrics`` line too, but times it among every
page (minutes at 1 M sessions).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup(db: Path | None, database_url: str | None) -> None:
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    else:
        os.environ.pop("DATABASE_URL", None)
        os.environ["FLEET_SQLITE_PATH"] = str(db)
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-secret-key-not-for-production-use-0")
    os.environ["DJANGO_DEBUG"] = "0"
    os.environ["FLEET_LOG_LEVEL"] = "WARNING"
    os.environ["DJANGO_SETTINGS_MODULE"] = "fleet.settings"
    import django

    django.setup()


def timed(action: Callable[[], Any], runs: int) -> tuple[list[float], Any]:
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = action()
        times.append((time.perf_counter() - start) * 1000)
    return times, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, help="an SQLite database (read only)")
    parser.add_argument("--database-url", help="a PostgreSQL database (read only)")
    parser.add_argument("--iterations", type=int, default=15)
    args = parser.parse_args()
    if not args.db and not args.database_url:
        parser.error("--db or --database-url")
    setup(args.db, args.database_url)

    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, override_settings
    from django.utils import timezone
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import Metric

    from fleet.metrics import FleetCollector

    client = Client()
    headers: dict[str, Any] = {"HTTP_AUTHORIZATION": "Bearer bench-scrape"}
    token = {"FLEET_METRICS_TOKEN": "bench-scrape"}
    with override_settings(ALLOWED_HOSTS=["*"], **token):
        client.get("/metrics", **headers)  # warm: connection, imports
        with CaptureQueriesContext(connection) as queries:
            body = client.get("/metrics", **headers).content
        # Read now: the next request clears the connection's log.
        query_count = len(queries)
        times, _ = timed(lambda: client.get("/metrics", **headers), args.iterations)
    lines = body.decode().splitlines()
    samples = [line for line in lines if line and not line.startswith("#")]
    latency = {
        line.split("}", 1)[0] for line in samples if line.startswith("fleet_latency_seconds_sum{")
    }
    print(f"{connection.vendor}: /metrics, {args.iterations} requests")
    print(
        f"wall ms p50 {statistics.median(times):.1f}  "
        f"p95 {statistics.quantiles(times, n=20)[-1]:.1f}  min {min(times):.1f}; "
        f"{query_count} queries"
    )
    print(
        f"one scrape: {len(body):,} bytes, {len(lines):,} lines, {len(samples):,} samples, "
        f"{len(latency):,} fleet_latency_seconds series"
    )
    collector = FleetCollector(timezone.now())
    for part in ("_sessions", "_usage", "_latency"):
        method: Callable[[], Iterator[Metric]] = getattr(collector, part)
        part_times, families = timed(partial(lambda m: list(m()), method), args.iterations)
        count = sum(len(family.samples) for family in families)
        print(f"  {part:10} median {statistics.median(part_times):7.1f} ms, {count:,} samples")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    encode_times, _ = timed(lambda: generate_latest(registry), args.iterations)
    print(f"  collect + generate_latest median {statistics.median(encode_times):.1f} ms")


if __name__ == "__main__":
    main()
