"""The production command and the example deployment (``deploy/``) really serve.

``scripts/serve.sh`` (``make serve``, the systemd unit's ``ExecStart``, the
Procfile's ``web``) is started on a free loopback port, probed through
``/healthz`` and the API, and stopped.
"""

from __future__ import annotations

import http.client
import json
import re
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from sessions.models import ApiKey
from tests.server_support import (
    ROOT,
    Server,
    clean_environ,
    database_env,
    manage,
    messages_path,
    production_env,
    request,
    run_in_checkout,
    server_env,
)

pytestmark = pytest.mark.django_db(transaction=True)

DEPLOY = ROOT / "deploy"


def unit_setting(name: str) -> str:
    text = (DEPLOY / "fleet.service").read_text()
    match = re.search(rf"^{name}=(.+)$", text, re.MULTILINE)
    assert match, f"fleet.service has no {name}="
    return match.group(1).strip()


def test_the_systemd_unit_starts_the_production_command(tmp_path: Path) -> None:
    # The unit runs scripts/serve.sh from the checkout: run that, here.
    workdir = unit_setting("WorkingDirectory")
    assert unit_setting("ExecStart") == f"{workdir}/scripts/serve.sh"
    assert unit_setting("Type") == "notify"  # gunicorn tells systemd when it is ready
    env = server_env(
        FLEET_HTTPS="1", FLEET_BEHIND_TLS_PROXY="1", FLEET_STATIC_ROOT=str(tmp_path / "static")
    )
    server = Server(env, tmp_path).start()
    try:
        server.wait_healthy(timeout=90)
        token = ApiKey.generate(name="deploy-probe")[1]
        https = {"X-Forwarded-Proto": "https"}

        # The API behind the TLS proxy, with a JSON log line per request.
        status, data, _ = request(
            server.url,
            "POST",
            messages_path("probe/1"),
            {"messages": [{"role": "user", "content": "very secret words"}]},
            token=token,
            headers=https,
        )
        assert (status, data["appended"]) == (201, 1)
        # Plain http is sent to https; the load balancer's probe is not.
        status, _, headers = request(server.url, "GET", "/")
        assert status == 301
        assert headers["location"].startswith("https://")
        status, _, headers = request(server.url, "GET", "/", headers=https)
        assert status == 302  # to the log-in page, over https
        assert headers["strict-transport-security"].startswith("max-age=31536000")
        # Static files: compressed, hashed names, cached for ever (WhiteNoise).
        manifest = json.loads((tmp_path / "static" / "staticfiles.json").read_text())
        hashed = manifest["paths"]["fleet/fleet.css"]
        status, _, headers = request(
            server.url, "GET", f"/static/{hashed}", headers={**https, "Accept-Encoding": "gzip"}
        )
        assert status == 200
        assert headers.get("content-encoding") in ("gzip", "br")
        assert "immutable" in headers["cache-control"]

        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=40) == 0
    finally:
        server.stop()

    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    api_lines = [line for line in lines if line["logger"] == "fleet.request"]
    assert [(r["method"], r["status"], r["key"], r["appended"]) for r in api_lines] == [
        ("POST", 201, "deploy-probe", 1)
    ]
    assert "very secret words" not in server.log()
    assert token not in server.log()
    assert any(line["logger"] == "gunicorn.error" for line in lines)  # gunicorn logs JSON too


@pytest.mark.usefixtures("sqlite_only")
def test_the_procfile_releases_and_serves_a_new_sqlite_database(tmp_path: Path) -> None:
    processes = dict(
        line.split(":", 1)
        for line in (DEPLOY / "Procfile").read_text().splitlines()
        if line and not line.startswith("#")
    )
    env = production_env(
        FLEET_SQLITE_PATH=str(tmp_path / "fleet.sqlite3"),
        FLEET_STATIC_ROOT=str(tmp_path / "static"),
        FLEET_WORKERS="2",
        FLEET_PYTHON=sys.executable,
    )
    release = run_in_checkout(["sh", "-c", processes["release"].strip()], env)
    assert release.returncode == 0, release.stderr
    server = Server(env, tmp_path, command=["sh", "-c", processes["web"].strip()]).start()
    try:
        server.wait_healthy(timeout=90)
        assert request(server.url, "GET", "/login/")[0] == 200  # a page with static files
    finally:
        server.stop()


def test_the_crontab_commands_run(tmp_path: Path) -> None:
    jobs = [line for line in (DEPLOY / "crontab").read_text().splitlines() if "manage.py" in line]
    commands = [shlex.split(job.split("manage.py", 1)[1].split("&&")[0]) for job in jobs]
    names = [command[0] for command in commands]
    assert names[:2] == ["reconcile", "purge"]
    env = {**production_env(**database_env()), "DJANGO_SECRET_KEY": "x" * 50}
    for command in commands:
        if command[0] == "backup":
            if connection.vendor != "sqlite":
                continue
            command = ["backup", str(tmp_path / "fleet-backup.sqlite3")]
        done = manage(env, *command)
        assert done.returncode == 0, done.stderr
        if "--json" in command:
            json.loads(done.stdout.strip().splitlines()[-1])
        assert json.loads(done.stderr.strip().splitlines()[-1])["command"] == command[0]


@pytest.mark.once  # gunicorn's configuration, not the database's
def test_gunicorn_takes_its_workers_and_address_from_the_environment() -> None:
    script = "import runpy; c = runpy.run_path('gunicorn.conf.py'); print(c['workers'], c['bind'])"
    env = {**clean_environ(), "WEB_CONCURRENCY": "3", "FLEET_BIND": "unix:/run/fleet.sock"}
    done = run_in_checkout([sys.executable, "-c", script], env)
    assert done.stdout.split() == ["3", "['unix:/run/fleet.sock']"], done.stderr
    env["FLEET_WORKERS"] = "5"  # wins over WEB_CONCURRENCY
    done = run_in_checkout([sys.executable, "-c", script], env)
    assert done.stdout.split()[0] == "5", done.stderr
    env["FLEET_WORKERS"] = "many"
    done = run_in_checkout([sys.executable, "-c", script], env)
    assert done.returncode != 0
    assert "FLEET_WORKERS" in done.stderr


@pytest.mark.once  # gunicorn's configuration, not the database's
def test_gunicorn_takes_its_worker_class_and_threads_from_the_environment() -> None:
    script = (
        "import runpy; c = runpy.run_path('gunicorn.conf.py'); "
        "print(c['worker_class'], c['threads'])"
    )
    env = clean_environ()
    done = run_in_checkout([sys.executable, "-c", script], env)
    assert done.stdout.split() == ["sync", "1"], done.stderr
    env.update(FLEET_THREADS="4")  # threads mean gthread (gunicorn would switch silently)
    done = run_in_checkout([sys.executable, "-c", script], env)
    assert done.stdout.split() == ["gthread", "4"], done.stderr
    env.update(FLEET_WORKER_CLASS="gthread")
    done = run_in_checkout([sys.executable, "-c", script], env)
    assert done.stdout.split() == ["gthread", "4"], done.stderr
    for name, value in [
        ("FLEET_WORKER_CLASS", "gevent"),
        ("FLEET_THREADS", "0"),
        ("FLEET_WORKER_CLASS", "sync"),  # with 4 threads: a contradiction, named
    ]:
        done = run_in_checkout([sys.executable, "-c", script], {**env, name: value})
        assert done.returncode != 0
        assert name in done.stderr


@pytest.mark.parametrize("worker_class", ["sync", "gthread"])
def test_gthread_workers_keep_a_client_connection_alive_and_sync_workers_close_it(
    tmp_path: Path, worker_class: str
) -> None:
    env = server_env(
        FLEET_WORKERS="1",
        FLEET_WORKER_CLASS=worker_class,
        FLEET_THREADS="2" if worker_class == "gthread" else "1",
        FLEET_STATIC_ROOT=str(tmp_path / "static"),
    )
    server = Server(env, tmp_path).start()
    try:
        server.wait_healthy(timeout=90)
        token = ApiKey.generate(name=f"keep-alive-{worker_class}")[1]
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        headers = {
            "Host": "127.0.0.1",
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
        }
        answers = []
        for n in range(2):
            body = json.dumps({"messages": [{"role": "user", "content": f"hello {n}"}]})
            conn.request("POST", messages_path(f"keep-alive/{worker_class}"), body, headers)
            response = conn.getresponse()
            response.read()
            answers.append((response.status, response.getheader("Connection")))
            if n == 0:
                first_socket = conn.sock
        kept = conn.sock is first_socket and conn.sock is not None
        conn.close()
    finally:
        server.stop()

    assert [status for status, _ in answers] == [201, 200]  # created, then appended to
    if worker_class == "gthread":
        assert kept, answers  # both appends on one connection
    else:
        assert answers[0][1] == "close"


def chunked_request(
    url: str, path: str, chunks: list[bytes], *, method: str = "POST", token: str
) -> tuple[int, Any, dict[str, str]]:
    """A request whose body is sent chunked (no Content-Length), as streaming clients do."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(
            method,
            path,
            body=iter(chunks),
            headers={
                "Host": "127.0.0.1",
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
            },
            encode_chunked=True,
        )
        response = conn.getresponse()
        raw = response.read()
        headers = {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()
    body = (
        json.loads(raw) if headers.get("content-type", "").startswith("application/json") else raw
    )
    return response.status, body, headers


@pytest.mark.once  # gunicorn's HTTP parsing, not the database's
def test_gunicorn_reads_chunked_bodies_and_answers_head_like_get(tmp_path: Path) -> None:
    env = server_env(
        FLEET_SERVE_COLLECTSTATIC="0",
        FLEET_STATIC_ROOT=str(tmp_path / "static"),
        FLEET_API_MAX_BODY_BYTES="4096",
    )
    server = Server(env, tmp_path).start()
    try:
        server.wait_healthy(timeout=90)
        token = ApiKey.generate(name="chunked")[1]
        body = json.dumps({"messages": [{"role": "user", "content": "streamed in pieces"}]})
        encoded = body.encode()

        status, data, _ = chunked_request(
            server.url, messages_path("chunked/1"), [encoded[:10], encoded[10:]], token=token
        )
        assert (status, data.get("appended")) == (201, 1), data

        big = json.dumps({"messages": [{"role": "user", "content": "x" * 5000}]}).encode()
        status, data, _ = chunked_request(
            server.url, messages_path("chunked/2"), [big[:3000], big[3000:]], token=token
        )
        assert status == 413, data
        assert data["error"]["code"] == "too_large"
        # The OTLP receiver's 413 is its own shape (an OTLP Status, here OTLP/JSON).
        status, data, _ = chunked_request(
            server.url, "/otlp/v1/traces", [big[:3000], big[3000:]], token=token
        )
        assert (status, data) == (
            413,
            {"code": 8, "message": "the body is larger than the limit of 4096 bytes"},
        )

        get_status, _, get_headers = request(
            server.url, "GET", "/api/v1/sessions/chunked/1", token=token
        )
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        try:
            conn.request(
                "HEAD",
                "/api/v1/sessions/chunked/1",
                headers={"Host": "127.0.0.1", "Authorization": f"Bearer {token}"},
            )
            head = conn.getresponse()
            head_body = head.read()
        finally:
            conn.close()
        assert (head.status, head_body) == (get_status, b"")
        assert head.getheader("Content-Type") == get_headers["content-type"]
    finally:
        server.stop()
