"""Two app servers on one PostgreSQL: concurrent appends to the same sessions
through both lose nothing, and either serves the dashboard and the same totals."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.test import Client

from sessions.models import ApiKey, Message
from tests.server_support import Ingest, Server, request, server_env, store_problems, stored_ids

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("postgres_only")]

KEYS = ["shared/1", "shared/2", "shared/3"]


def test_two_servers_append_to_the_same_sessions_without_losing_anything(
    tmp_path: Path, admin_user
) -> None:
    token = ApiKey.generate(name="multi")[1]
    static = {"FLEET_STATIC_ROOT": str(tmp_path / "static")}
    # The first server migrates and builds the static files; the second, as the
    # README says for every further server, does neither.
    first = Server(server_env(**static), tmp_path, name="first").start()
    second = Server(
        server_env(**static, FLEET_SERVE_MIGRATE="0", FLEET_SERVE_COLLECTSTATIC="0"),
        tmp_path,
        name="second",
    )
    try:
        first.wait_healthy(timeout=90)
        second.start().wait_healthy()
        ingest = Ingest([first.url, second.url], token, KEYS, threads=8, size=5).start()
        try:
            ingest.wait_acked(200)
        finally:
            ingest.finish()

        assert ingest.errors == []
        assert ingest.in_doubt == {}
        acked = {i for ids in ingest.acked.values() for i in ids}
        assert acked == stored_ids()
        assert Message.objects.count() == 5 * len(ingest.acked)
        assert store_problems() == []

        # One log-in (sessions live in the database) works on both servers.
        client = Client()
        client.force_login(admin_user)
        cookie = {"Cookie": f"sessionid={client.cookies['sessionid'].value}"}
        overviews = []
        for server in (first, second):
            status, page, _ = request(server.url, "GET", "/", headers=cookie)
            assert status == 200
            assert "shared/1" in page
            status, data, _ = request(server.url, "GET", "/api/v1/fleet", token=token)
            assert status == 200
            overviews.append(data["usage"]["all_time"])
        assert overviews[0] == overviews[1]
        assert overviews[0]["messages"] == Message.objects.count()
    finally:
        first.stop()
        second.stop()
