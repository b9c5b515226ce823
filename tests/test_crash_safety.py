"""SIGKILL the app server in the middle of sustained ingest: nothing acknowledged is lost.

The production command serves the test database; client threads append
batches as fast as it answers; the whole process group (gunicorn's master and
its workers) gets SIGKILL; the server is started again. Every acknowledged
append must be stored, no batch half-stored, every total equal to the sum of
its messages, and a SQLite file must pass ``PRAGMA integrity_check``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from django.db import connection

from sessions.models import ApiKey, Message
from tests.server_support import (
    Ingest,
    Server,
    batch,
    half_stored,
    messages_path,
    request,
    server_env,
    store_problems,
    stored_ids,
)

pytestmark = pytest.mark.django_db(transaction=True)

KEYS = ["crash/a", "crash/b", "crash/c"]


def integrity() -> list[str]:
    if connection.vendor != "sqlite":
        return ["ok"]
    with sqlite3.connect(connection.settings_dict["NAME"]) as conn:
        return [row[0] for row in conn.execute("PRAGMA integrity_check")]


def test_acknowledged_appends_survive_a_sigkill_of_the_server(tmp_path: Path) -> None:
    token = ApiKey.generate(name="crash")[1]
    env = server_env(FLEET_SERVE_MIGRATE="0", FLEET_SERVE_COLLECTSTATIC="0")
    server = Server(env, tmp_path, name="before").start()
    ingest = None
    try:
        server.wait_healthy()
        ingest = Ingest([server.url], token, KEYS, threads=6, size=20).start()
        ingest.wait_acked(30)
        ingest.wait_in_flight(3)
        server.kill()  # mid-ingest: appends are on their way
        ingest.finish()
    finally:
        if ingest:
            ingest.stop.set()
        server.stop()

    assert not ingest.errors, ingest.errors[:3]
    assert ingest.in_doubt, "no append was cut off: the kill did not land mid-ingest"
    assert integrity() == ["ok"]
    stored = stored_ids()
    assert {i for ids in ingest.acked.values() for i in ids} <= stored
    assert half_stored({**ingest.acked, **_ids(ingest.in_doubt)}, stored) == []
    assert store_problems() == []

    # Restarted, it serves again; resending the appends in doubt stores each
    # one whole or skips it whole (its message ids were stored before the kill).
    again = Server(env, tmp_path, name="after").start()
    try:
        again.wait_healthy()
        for prefix, (key, items) in ingest.in_doubt.items():
            status, data, _ = request(
                again.url, "POST", messages_path(key), {"messages": items}, token=token
            )
            assert status in (200, 201), data
            already = prefix in _prefixes(stored)
            assert (data["appended"], data["skipped"]) == (
                (0, len(items)) if already else (len(items), 0)
            )
        status, data, _ = request(
            again.url,
            "POST",
            messages_path("crash/new"),
            {"messages": batch("new", 3)},
            token=token,
        )
        assert (status, data["appended"]) == (201, 3)
    finally:
        again.stop()

    assert Message.objects.count() == 20 * (len(ingest.acked) + len(ingest.in_doubt)) + 3
    assert store_problems() == []
    assert integrity() == ["ok"]


def _ids(in_doubt: dict[str, tuple[str, list[dict]]]) -> dict[str, list[str]]:
    return {prefix: [m["message_id"] for m in items] for prefix, (_, items) in in_doubt.items()}


def _prefixes(stored: set[str]) -> set[str]:
    return {message_id.rsplit("-", 1)[0] for message_id in stored}
