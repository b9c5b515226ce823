"""Structured logs: one JSON line per API request and per command run, with no
message content and no key in them."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import ManagementUtility
from django.test import Client

import manage
from fleet.log import JsonFormatter, command_logged
from tests.api_client import ApiClient, make_key

# Log lines, not storage: runs in the SQLite pass only.
pytestmark = pytest.mark.once

FORMATTER = JsonFormatter()


def lines(caplog: pytest.LogCaptureFixture, logger: str) -> list[dict]:
    return [json.loads(FORMATTER.format(r)) for r in caplog.records if r.name == logger]


def run_python(*args: str, level: str) -> subprocess.CompletedProcess[str]:
    """Python in the checkout with Fleet's settings, text logs at ``level``."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "fleet.settings",
        "DJANGO_DEBUG": "1",
        "FLEET_LOG_LEVEL": level,
        "FLEET_LOG_FORMAT": "text",
    }
    return subprocess.run(
        [sys.executable, *args],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )


@pytest.mark.django_db
def test_an_append_logs_one_line_with_the_key_name_and_the_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = make_key("coder-1")
    api = ApiClient(token)
    body = {"messages": [{"role": "user", "content": "the launch codes are 0000"}] * 3}

    with caplog.at_level(logging.INFO):
        response = api.post("sessions/s-1/messages", body)

    assert response.status_code == 201
    [line] = lines(caplog, "fleet.request")
    assert line["level"] == "INFO"
    assert {k: line[k] for k in ("method", "path", "status", "key", "appended")} == {
        "method": "POST",
        "path": "/api/v1/sessions/s-1/messages",
        "status": 201,
        "key": "coder-1",
        "appended": 3,
    }
    assert isinstance(line["duration_ms"], float)
    everything = "\n".join(FORMATTER.format(record) for record in caplog.records)
    assert "launch codes" not in everything
    assert token not in everything


@pytest.mark.django_db
def test_it_logs_neither_the_query_string_nor_a_refused_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    make_key("reader")
    api = ApiClient("fleet_wrong-key")

    with caplog.at_level(logging.INFO):
        response = api.get("search", q="private words")

    assert response.status_code == 401
    [line] = lines(caplog, "fleet.request")
    assert (line["path"], line["status"], line["key"]) == ("/api/v1/search", 401, None)
    assert "appended" not in line
    everything = "\n".join(FORMATTER.format(record) for record in caplog.records)
    assert "private words" not in everything
    assert "wrong-key" not in everything


@pytest.mark.django_db
def test_pages_outside_the_api_are_not_logged_per_request(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        client.get("/healthz")
        client.get("/")

    assert lines(caplog, "fleet.request") == []


def run_command(argv: list[str]) -> int:
    """Run a command as ``manage.py`` does, without setting Django (and logging) up again."""
    command = ManagementUtility(["manage.py", *argv]).fetch_command(argv[0])
    try:
        with command_logged(argv[0]):
            command.run_from_argv(["manage.py", *argv])
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


def test_a_command_run_logs_its_name_exit_code_and_duration(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        assert run_command(["check"]) == 0
        assert run_command(["check", "--tag", "no-such-tag"]) == 1

    ok, failed = lines(caplog, "fleet.command")
    assert (ok["command"], ok["exit_code"], ok["level"]) == ("check", 0, "INFO")
    assert (failed["command"], failed["exit_code"], failed["level"]) == ("check", 1, "ERROR")
    assert ok["duration_ms"] >= 0


def test_manage_py_logs_each_command_run_but_not_a_bare_option(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def django_execute(argv: list[str]) -> None:
        raise SystemExit(2)

    monkeypatch.setattr("django.core.management.execute_from_command_line", django_execute)
    with caplog.at_level(logging.INFO):
        for argv in (["manage.py", "migrate", "--plan"], ["manage.py", "--version"]):
            monkeypatch.setattr(sys, "argv", argv)
            with pytest.raises(SystemExit):
                manage.main()

    [line] = lines(caplog, "fleet.command")
    assert (line["command"], line["exit_code"], line["level"]) == ("migrate", 2, "ERROR")


def test_an_uncaught_exception_logs_exit_code_one(caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level(logging.INFO),
        pytest.raises(ValueError, match="boom"),
        command_logged("reconcile"),
    ):
        raise ValueError("boom")

    [line] = lines(caplog, "fleet.command")
    assert (line["command"], line["exit_code"]) == ("reconcile", 1)


def test_a_command_line_never_logs_the_arguments(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture
) -> None:
    argv = ["simulate_fleet", "--url", "http://127.0.0.1:9", "--key", "fleet_SECRET", "--wait", "0"]

    with caplog.at_level(logging.INFO):
        assert run_command(argv) == 1

    [line] = lines(caplog, "fleet.command")
    assert line["command"] == "simulate_fleet"
    assert "fleet_SECRET" not in json.dumps(line)


def test_the_formatter_writes_one_json_object_with_the_extra_fields() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("x").makeRecord(
            "x",
            logging.ERROR,
            __file__,
            1,
            "failed %s",
            ("here",),
            sys.exc_info(),
            extra={"status": 503, "request": object()},
        )

    line = FORMATTER.format(record)

    assert "\n" not in line
    data = json.loads(line)
    assert data["message"] == "failed here"
    assert data["status"] == 503
    assert "request" not in data  # objects (Django's request: its repr has the query) are dropped
    assert "ValueError: boom" in data["exception"]


def test_runserver_request_lines_follow_the_log_level() -> None:
    """`make run` sets FLEET_LOG_LEVEL=WARNING: the simulator's API calls must
    not print a runserver line each, but a 404 or a 500 still does."""
    probe = (
        "import django, logging; django.setup();"
        "log = logging.getLogger('django.server');"
        "log.info('\"POST /api/v1/sessions/x/messages HTTP/1.1\" 200 1');"
        "log.warning('\"GET /nope HTTP/1.1\" 404 1')"
    )
    result = run_python("-c", probe, level="WARNING")

    assert "/nope" in result.stderr
    assert "/api/v1/" not in result.stderr


def test_a_command_prints_no_banner_of_the_login_throttle() -> None:
    """Cron runs commands every few minutes: their output is their own summary,
    not django-axes' start-up line on every run."""
    result = run_python("manage.py", "check", level="INFO")

    assert "AXES" not in result.stdout + result.stderr
    assert "manage.py check exited 0" in result.stderr
