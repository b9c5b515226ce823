"""``GET /healthz``: public, reports the database and migrations, nothing else."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection
from django.test import Client

pytestmark = pytest.mark.django_db


def test_it_answers_ok_without_a_log_in(client: Client) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"status": "ok", "database": "ok", "migrations": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_it_is_exempt_from_the_dashboard_log_in(client: Client) -> None:
    assert client.get("/").status_code == 302  # the dashboard sends visitors to log in
    assert client.get("/healthz").status_code == 200


def test_pending_migrations_answer_503(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    from django.db.migrations.executor import MigrationExecutor

    monkeypatch.setattr(
        MigrationExecutor, "migration_plan", lambda self, targets: [("migration", False)]
    )

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json() == {"status": "error", "database": "ok", "migrations": "pending"}


def test_only_get(client: Client) -> None:
    assert client.post("/healthz").status_code == 405


@pytest.fixture
def unreachable_database(tmp_path: Path) -> Iterator[None]:
    """Point the default connection at a database that cannot be opened."""
    saved = dict(connection.settings_dict)
    connection.close()
    if connection.vendor == "sqlite":
        connection.settings_dict["NAME"] = str(tmp_path / "missing-dir" / "db.sqlite3")
    else:
        connection.settings_dict["HOST"] = str(tmp_path)  # no server socket there
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)


@pytest.mark.django_db(transaction=True)
def test_an_unreachable_database_answers_503_not_500(
    client: Client, unreachable_database: None
) -> None:
    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json() == {
        "status": "error",
        "database": "unreachable",
        "migrations": "unknown",
    }
    # No driver message, path or host leaks out.
    assert b"missing-dir" not in response.content
    assert b"socket" not in response.content


def test_head_answers_like_get_for_load_balancers(client: Client) -> None:
    response = client.head("/healthz")

    assert response.status_code == 200
    assert response.content == b""
