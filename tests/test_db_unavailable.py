"""A database that is unreachable at start-up or goes away: ``/healthz`` and the
API answer 503 (the API in its JSON error shape), pages a 503 page, never a
500; service resumes without a restart once the database is back."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.db import OperationalError, connection
from django.test import Client

from sessions.models import ApiKey, Message
from tests.api_client import ApiClient, assert_error, make_key
from tests.server_support import (
    Server,
    batch,
    free_port,
    messages_path,
    postgres_url,
    request,
    server_env,
)


@contextlib.contextmanager
def database_down() -> Iterator[None]:
    """Every new query fails the way an unreachable database does."""
    refused = OperationalError("connection refused")
    with mock.patch.object(connection, "ensure_connection", side_effect=refused):
        yield


@pytest.mark.django_db
def test_api_calls_answer_503_in_the_json_error_shape() -> None:
    api = ApiClient(make_key())

    with database_down():
        listed = api.get("sessions")
        appended = api.post("sessions/s/messages", {"messages": [{"role": "user"}]})

    for response in (listed, appended):
        error = assert_error(response, 503, "unavailable")
        assert error["message"] == "database unavailable"
        assert response["Retry-After"]
    assert api.get("sessions").status_code == 200  # back: no restart needed


@pytest.mark.django_db
def test_pages_answer_503_not_a_500_page(admin_client: Client) -> None:
    with database_down():
        response = admin_client.get("/")

    assert response.status_code == 503
    assert b"unavailable" in response.content
    assert b"Traceback" not in response.content
    assert admin_client.get("/").status_code == 200


# --- a real server, its database unreachable at start-up, then back, away, back --


class SymlinkOutage:
    """SQLite: the server opens the test database through a directory symlink."""

    def __init__(self, tmp_path: Path) -> None:
        real = Path(connection.settings_dict["NAME"])
        self.target = real.parent
        self.link = tmp_path / "db"
        self.env = {"FLEET_SQLITE_PATH": str(self.link / real.name)}

    def up(self) -> None:
        self.link.symlink_to(self.target, target_is_directory=True)

    def down(self) -> None:
        self.link.unlink(missing_ok=True)


class ProxyOutage:
    """PostgreSQL: the server connects through a TCP proxy that can go away."""

    def __init__(self, tmp_path: Path) -> None:
        options = connection.settings_dict.get("OPTIONS") or {}
        host = connection.settings_dict.get("HOST") or options.get("host") or "localhost"
        port = int(connection.settings_dict.get("PORT") or options.get("port") or 5432)
        if host.startswith("/"):
            self.upstream: tuple = (socket.AF_UNIX, f"{host}/.s.PGSQL.{port}")
        else:
            self.upstream = (socket.AF_INET, (host, port))
        self.port = free_port()
        self.env = {
            "DATABASE_URL": postgres_url(
                connection.settings_dict, host="127.0.0.1", port=str(self.port)
            ),
            "FLEET_DB_POOL": "1",
            "FLEET_DB_POOL_TIMEOUT": "2",
        }
        self.listener: socket.socket | None = None
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(32)
        listener.settimeout(0.1)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        with self.lock:
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self.sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while self.listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            upstream = socket.socket(self.upstream[0], socket.SOCK_STREAM)
            upstream.connect(self.upstream[1])
            with self.lock:
                self.sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    for sock in (source, sink):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


@pytest.mark.django_db(transaction=True)
def test_a_server_answers_503_while_the_database_is_away_and_resumes_by_itself(
    tmp_path: Path,
) -> None:
    token = ApiKey.generate(name="outage")[1]
    outage = SymlinkOutage(tmp_path) if connection.vendor == "sqlite" else ProxyOutage(tmp_path)
    outage.down()
    server = Server(server_env(**outage.env, FLEET_SERVE_COLLECTSTATIC="0"), tmp_path)
    served = 0

    def send() -> tuple[int, Any, Any]:
        body = {"messages": batch(f"m{served}", 2)}
        return request(server.url, "POST", messages_path("outage"), body, token=token)

    def append(expect: int) -> None:
        nonlocal served
        status, data, headers = send()
        if expect == 503:
            assert (status, data["error"]["code"]) == (503, "unavailable"), data
            assert headers["content-type"] == "application/json"
        else:
            assert status == expect, data
            served += 1

    def append_once_resumed(expect: int, within: float = 20) -> None:
        """Each worker's pool finds the database again on its own schedule (it
        retries with a backoff): service resumes within seconds, not at the
        instant the health check (served by one worker) first answers 200."""
        nonlocal served
        deadline = time.monotonic() + within
        while True:
            status, data, _ = send()
            if status == expect:
                served += 1
                return
            # A refusal writes nothing, so the same batch is simply sent again.
            assert (status, data["error"]["code"]) == (503, "unavailable"), data
            assert time.monotonic() < deadline, f"the append still failed after {within} s"
            time.sleep(0.2)

    try:
        server.start()
        # Unreachable at start-up: the server starts anyway and says so.
        server.wait_status(503, timeout=90)
        append(503)
        status, data, _ = request(server.url, "GET", "/api/v1/sessions", token=token)
        assert (status, data["error"]["code"]) == (503, "unavailable")
        workers = server.pids()

        outage.up()
        server.wait_status(200)
        append(201)

        outage.down()  # goes away while serving
        server.wait_status(503)
        append(503)

        outage.up()
        server.wait_status(200)
        append_once_resumed(200)
        assert server.pids() == workers  # no worker (nor the master) was restarted
    finally:
        server.stop()
        outage.down()

    assert Message.objects.count() == 2 * served == 4  # the refused appends wrote nothing
