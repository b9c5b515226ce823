"""Alert evaluation benchmark: ``manage.py alerts`` over a large fleet.

(Issue 15 names it ``bench/alerts.py``; a module ``alerts`` beside the
``alerts`` app is a duplicate module to mypy, and run from ``bench/`` it
would import itself instead of the app.)

Run: ``.venv/bin/python bench/alerting.py`` (a few minutes: it builds 100 000
sessions; ``--sessions 10000`` for a smoke run). A throwaway SQLite database
gets ``--sessions`` sessions (1 % running and stuck, 1 % unknown, 0.5 % in
error, the rest completed, over 200 agents), an hour of per-minute usage, 20
budgets with a month of day rows, and 50 rules of every kind (some with
filters, no channels: this times the evaluation, not the network). It times
the first run (which opens the incidents) and then steady runs (nothing
changes: the cron case), and counts their queries. Target: ≤ 1 s a run and
queries independent of the number of sessions.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # Django is set up at run time, before the app is imported
    from alerts.engine import AlertsResult

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KINDS: list[tuple[str, dict[str, Any]]] = [
    ("session_stuck", {"threshold_seconds": 900}),
    ("session_unknown", {}),
    ("turn_error", {}),
    ("burn_rate", {"threshold_usd_per_hour": Decimal(1)}),
    ("burn_rate", {"threshold_usd_per_hour": Decimal("0.01"), "per": "agent"}),
    ("budget_warning", {}),
    ("budget_exceeded", {}),
    ("agent_silent", {"threshold_seconds": 3600}),
]


def main() -> None:  # noqa: PLR0915 - one linear script
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    db = Path(tempfile.mkdtemp()) / "alerts.sqlite3"
    os.environ["FLEET_SQLITE_PATH"] = str(db)
    os.environ.pop("DATABASE_URL", None)
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-secret-key-not-for-production-use-0")
    os.environ["FLEET_LOG_LEVEL"] = "WARNING"
    os.environ["DJANGO_SETTINGS_MODULE"] = "fleet.settings"
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from alerts.engine import run_alerts
    from alerts.models import AlertRule
    from alerts.rules import evaluate
    from sessions.models import Budget, BudgetUsage, MinuteUsage, Session
    from sessions.rollups import utc_day_start, utc_minute

    call_command("migrate", verbosity=0)
    now = timezone.now()
    began = time.perf_counter()
    batch: list[Session] = []
    for n in range(args.sessions):
        agent = f"agent-{n % 200}"
        fields: dict[str, Any] = {"status": "completed", "state": "idle"}
        age = timedelta(minutes=n % 20_000)
        if n % 100 == 0:
            fields = {"status": "active", "state": "running", "turn_started_at": now - age}
        elif n % 100 == 1:
            fields = {"status": "unknown", "state": "idle"}
        elif n % 200 == 2:
            fields = {"status": "active", "state": "error", "turn_started_at": now - age}
        batch.append(
            Session(
                key=f"bench-{n}",
                agent=agent,
                model=("gpt-4o", "o3", "claude")[n % 3],
                channel="cli",
                created_at=now - age,
                last_active_at=now - age,
                **fields,
            )
        )
        if len(batch) == 5000:
            Session.objects.bulk_create(batch)
            batch = []
    Session.objects.bulk_create(batch)
    MinuteUsage.objects.bulk_create(
        MinuteUsage(
            minute=utc_minute(now) - timedelta(minutes=m),
            agent=f"agent-{a}",
            model="gpt-4o",
            channel="cli",
            cost_usd=Decimal("0.001"),
        )
        for m in range(60)
        for a in range(50)
    )
    BudgetUsage.objects.bulk_create(
        BudgetUsage(
            span="day",
            start=utc_day_start(now) - timedelta(days=d),
            agent=f"agent-{a}",
            model="gpt-4o",
            channel="cli",
            project="",
            project_key="",
            cost_usd=Decimal(1),
        )
        for d in range(31)
        for a in range(100)
    )
    Budget.objects.bulk_create(
        Budget(
            name=f"budget {n}",
            period=("day", "week", "month")[n % 3],
            amount_usd=Decimal(10 * (n + 1)),
            agent="" if n % 2 else f"agent-{n}",
        )
        for n in range(20)
    )
    rules = []
    for n in range(50):
        kind, given = KINDS[n % len(KINDS)]
        narrowed = {"agent": f"agent-{n}"} if n >= len(KINDS) and n % 2 else {}
        rules.append(AlertRule(name=f"rule {n}", kind=kind, **given, **narrowed))
    AlertRule.objects.bulk_create(rules)
    print(
        f"{args.sessions:,} sessions, 50 rules, 20 budgets; built in "
        f"{time.perf_counter() - began:.0f} s"
    )

    def timed() -> tuple[float, int, AlertsResult]:
        count = 0

        def counter(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
            nonlocal count
            count += 1
            return execute(sql, params, many, context)

        with connection.execute_wrapper(counter):
            start = time.perf_counter()
            result = run_alerts(now)
            took = time.perf_counter() - start
        return took, count, result

    took, count, first = timed()
    print(f"first run: {took * 1000:.0f} ms, {count} queries, {len(first.opened)} incidents opened")
    if os.environ.get("BENCH_PROFILE"):
        import cProfile
        import pstats

        profile = cProfile.Profile()
        profile.runcall(run_alerts, now)
        pstats.Stats(profile).sort_stats("cumulative").print_stats(25)
    steady = [timed() for _ in range(args.repeat)]
    times = [t * 1000 for t, _, _ in steady]
    per_kind: dict[str, float] = {}
    for rule in AlertRule.objects.all():
        start = time.perf_counter()
        evaluate(rule, now, ())
        per_kind[rule.kind] = per_kind.get(rule.kind, 0.0) + time.perf_counter() - start
    print(
        "evaluation by kind (all its rules): "
        + ", ".join(f"{kind} {ms * 1000:.0f} ms" for kind, ms in sorted(per_kind.items()))
    )
    print(
        f"steady run: median {statistics.median(times):.0f} ms, max {max(times):.0f} ms, "
        f"{steady[0][1]} queries"
    )


if __name__ == "__main__":
    main()
