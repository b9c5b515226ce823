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
    pool = settings.DATABASES["default"].get("OPTIONS", {}).get("pool")
    if pool and pool["max_size"] < settings.FLEET_THREADS:
        problems.append(
            Warning(
                f"FLEET_THREADS is {settings.FLEET_THREADS} but FLEET_DB_POOL_MAX_SIZE is "
                f"{pool['max_size']}: under load threads wait for a connection, and answer "
                "503 after FLEET_DB_POOL_TIMEOUT.",
                hint="Set FLEET_DB_POOL_MAX_SIZE to at least FLEET_THREADS.",
                id="fleet.W003",
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


@register(deploy=True)
def check_client_address(app_configs: Any = None, **kwargs: Any) -> list:
    """Behind a proxy, the client's address must come from X-Forwarded-For (fleet.client_ip)."""
    if getattr(settings, "SECURE_PROXY_SSL_HEADER", None) and not settings.FLEET_PROXY_COUNT:
        return [
            Warning(
                "FLEET_BEHIND_TLS_PROXY is on but FLEET_PROXY_COUNT is 0: every client has "
                "the proxy's address, so one client's wrong passwords lock a username out "
                "for everyone and one agent's wrong API keys throttle the whole fleet.",
                hint=(
                    "Have the proxy append the client to X-Forwarded-For (nginx: "
                    "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for) and set "
                    "FLEET_PROXY_COUNT to the number of proxies in front (usually 1)."
                ),
                id="fleet.W002",
            )
        ]
    return []
