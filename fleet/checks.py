"""System checks for configuration mistakes (``manage.py check``)."""

from __future__ import annotations

import sqlite3
from typing import Any

from django.conf import settings
from django.core.checks import Error, Warning, register


@register()
def check_fleet_settings(app_configs: Any = None, **kwargs: Any) -> list:
    problems: list = []
    if settings.FLEET_STUCK_AFTER > settings.FLEET_STALE_AFTER:
        problems.append(
            Warning(
                "FLEET_STUCK_AFTER is longer than FLEET_STALE_AFTER: a stuck turn's session "
                "is marked stale (unknown) before the turn counts as stuck.",
                hint="Make FLEET_STUCK_AFTER shorter than FLEET_STALE_AFTER.",
                id="fleet.W001",
            )
        )
    engine = settings.DATABASES["default"]["ENGINE"]
    if engine.endswith("sqlite3"):
        if sqlite3.sqlite_version_info < (3, 35, 0):
            problems.append(
                Error(
                    f"SQLite {sqlite3.sqlite_version} is too old: Fleet needs 3.35 or newer.",
                    id="fleet.E001",
                )
            )
        try:
            con = sqlite3.connect(":memory:")
            con.execute("CREATE VIRTUAL TABLE t USING fts5(x)")
            con.close()
        except sqlite3.OperationalError:
            problems.append(
                Error(
                    "This Python's SQLite has no FTS5: keyword search cannot work.",
                    hint="Use a Python built against a SQLite with FTS5, or PostgreSQL.",
                    id="fleet.E002",
                )
            )
    return problems
