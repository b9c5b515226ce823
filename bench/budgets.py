"""Budget read benchmark: the spend of 20 budgets over a month of usage, per time zone.

Run: ``.venv/bin/python bench/budgets.py`` (a minute; ``--combinations 20``
for a smoke run). It fills a throwaway SQLite database's ``BudgetUsage``
with a month of rows (every other quarter hour of each of ``--combinations``
agent × model × channel × project combinations, and their hour and day rows) and
times ``sessions.budgets.budget_statuses`` for 20 budgets (day, week and
month; whole fleet, an agent, a model, a project) in UTC, New York and
Kolkata (half-hour offset): the zones decide how much of a period is read
from quarter-hour rows (its edges) instead of day rows.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--combinations", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    db = Path(tempfile.mkdtemp()) / "budgets.sqlite3"
    os.environ["FLEET_SQLITE_PATH"] = str(db)
    os.environ.pop("DATABASE_URL", None)
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-secret-key-not-for-production-use-0")
    os.environ["FLEET_LOG_LEVEL"] = "WARNING"
    os.environ["DJANGO_SETTINGS_MODULE"] = "fleet.settings"
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import override_settings

    from sessions.budgets import budget_statuses
    from sessions.models import Budget, BudgetUsage, project_key

    call_command("migrate", verbosity=0)
    now = datetime(2026, 11, 28, 12, tzinfo=UTC)
    rng = random.Random(1)
    rows: list[BudgetUsage] = []
    coarser: dict[tuple[str, datetime, int], Decimal] = defaultdict(Decimal)
    moment = datetime(2026, 10, 31, tzinfo=UTC)

    def row(span: str, start: datetime, n: int, cost: Decimal) -> BudgetUsage:
        project = f"/src/p{n % 10}"
        return BudgetUsage(
            span=span,
            start=start,
            agent=f"agent-{n}",
            model=f"model-{n % 5}",
            channel="cli",
            project=project,
            project_key=project_key(project),
            api_calls=1,
            cost_usd=cost,
        )

    while moment < now:
        for n in range(args.combinations):
            if rng.random() < 0.5:
                rows.append(row("quarter", moment, n, Decimal("0.0123")))
                coarser[("hour", moment.replace(minute=0), n)] += Decimal("0.0123")
                coarser[("day", moment.replace(hour=0, minute=0), n)] += Decimal("0.0123")
        moment += timedelta(minutes=15)
    rows.extend(row(span, start, n, cost) for (span, start, n), cost in coarser.items())
    BudgetUsage.objects.bulk_create(rows, batch_size=5000)
    scopes: list[dict[str, str]] = [{}, {"agent": "agent-1"}, {"model": "model-2"}]
    scopes.append({"project": "/src/p3"})
    budgets = [
        Budget.objects.create(
            name=f"b{n}",
            period=("day", "week", "month")[n % 3],
            amount_usd=Decimal(100),
            **scopes[n % len(scopes)],
        )
        for n in range(20)
    ]
    print(f"{len(rows):,} rows, {args.combinations} combinations, 20 budgets")
    for zone in ("UTC", "America/New_York", "Asia/Kolkata"):
        with override_settings(TIME_ZONE=zone):
            budget_statuses(budgets, now)  # warm the cache
            times = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                budget_statuses(budgets, now)
                times.append((time.perf_counter() - started) * 1000)
        print(f"{zone}: median {statistics.median(times):.1f} ms, max {max(times):.1f} ms")


if __name__ == "__main__":
    main()
