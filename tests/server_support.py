"""Helpers for the production tests: real app servers (``scripts/serve.sh`` or
gunicorn with ``gunicorn.conf.py``) started in subprocesses on free loopback
ports against the test database, one-off commands run in the checkout, a small
HTTP client, and consistency checks of what the servers stored."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.db import connection

from sessions.choices import TOKEN_FIELDS
from sessions.models import DailyUsage, Message, Session

ROOT = Path(__file__).resolve().parent.parent
SERVE = ROOT / "scripts" / "serve.sh"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_environ() -> dict[str, str]:
    """This process's environment without any Fleet or Django setting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "FLEET_"))}
    env.pop("DATABASE_URL", None)
    env.pop("WEB_CONCURRENCY", None)
    return env


def production_env(**extra: str) -> dict[str, str]:
    """The documented production environment (README "Production"), for a server
    on loopback over plain http (so no FLEET_HTTPS)."""
    return {
        **clean_environ(),
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "fleet.example.com,127.0.0.1",
        "DJANGO_CSRF_TRUSTED_ORIGINS": "https://fleet.example.com",
        **extra,
    }


def postgres_url(settings_dict: dict[str, Any], *, host: str = "", port: str = "") -> str:
    """A DATABASE_URL for these connection settings (a socket directory goes in ``?host=``)."""
    user = quote(settings_dict.get("USER") or "", safe="")
    password = quote(settings_dict.get("PASSWORD") or "", safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    options = settings_dict.get("OPTIONS") or {}
    host = host or settings_dict.get("HOST") or options.get("host") or ""
    port = port or str(settings_dict.get("PORT") or options.get("port") or "")
    name = quote(settings_dict["NAME"], safe="")
    if host.startswith("/"):
        query = f"host={quote(host, safe='/')}" + (f"&port={port}" if port else "")
        return f"postgres://{credentials}/{name}?{query}"
    return f"postgres://{credentials}{host or 'localhost'}{f':{port}' if port else ''}/{name}"


def database_env() -> dict[str, str]:
    """Point a server at the database this test uses (the test database)."""
    if connection.vendor == "sqlite":
        return {"FLEET_SQLITE_PATH": str(connection.settings_dict["NAME"])}
    return {
        "DATABASE_URL": postgres_url(connection.settings_dict),
        "FLEET_DB_POOL": "1",
        "FLEET_DB_POOL_TIMEOUT": "3",
    }


def server_env(**extra: str) -> dict[str, str]:
    """Production environment on the test database, sharing this process's secret
    key (so a log-in made here is valid on the servers)."""
    return production_env(
        **{
            **database_env(),
            "DJANGO_SECRET_KEY": settings.SECRET_KEY,
            "FLEET_WORKERS": "2",
            **extra,
        }
    )


def run_in_checkout(
    command: list[str], env: dict[str, str], *, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` to its end in the checkout with exactly ``env``; its output is
    captured as text and a failing exit is left to the caller to assert on."""
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_in_checkout([sys.executable, "manage.py", *args], env)


class Server:
    """An app server in its own process group, on a free loopback port."""

    def __init__(
        self,
        env: dict[str, str],
        log_dir: Path,
        *,
        command: list[str] | None = None,
        port: int | None = None,
        name: str = "server",
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**env, "FLEET_BIND": f"127.0.0.1:{self.port}"}
        self.command = command or [str(SERVE)]
        self.log_path = log_dir / f"{name}-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> Server:
        env = {**self.env, "FLEET_PYTHON": sys.executable}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: master and workers
            )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def health(self, timeout: float = 10) -> int | None:
        try:
            return request(self.url, "GET", "/healthz", timeout=timeout)[0]
        except OSError:
            return None

    def wait_healthy(self, timeout: float = 60) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited {self.process.returncode}:\n{self.log()}")
            if self.health(timeout=5) == 200:
                return self
            time.sleep(0.2)
        raise AssertionError(f"the server did not become healthy:\n{self.log()[-5000:]}")

    def wait_status(self, status: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            seen = self.health(timeout=10)
            if seen == status:
                return
            time.sleep(0.2)
        raise AssertionError(f"/healthz answered {seen}, not {status}:\n{self.log()[-5000:]}")

    def pids(self) -> list[int]:
        """The master and its workers."""
        assert self.process is not None
        master = self.process.pid
        children = Path(f"/proc/{master}/task/{master}/children")
        found = children.read_text().split() if children.exists() else []
        return [master, *map(int, found)]

    def kill(self) -> None:
        """SIGKILL the whole process group: master and workers die at once."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            self.kill_leftovers()
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()
        self.kill_leftovers()

    def kill_leftovers(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)


def request(
    url: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> tuple[int, Any, dict[str, str]]:
    """One HTTP request on a new connection: (status, decoded JSON or text, headers)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    sent = {"Host": "127.0.0.1", **(headers or {})}
    if token:
        sent["Authorization"] = f"Bearer {token}"
    payload = None
    if body is not None:
        payload = json.dumps(body).encode()
        sent["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=payload, headers=sent)
        response = conn.getresponse()
        raw = response.read()
        answer_headers = {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()
    if answer_headers.get("content-type", "").startswith("application/json"):
        return response.status, json.loads(raw), answer_headers
    return response.status, raw.decode(errors="replace"), answer_headers


def messages_path(key: str) -> str:
    return f"/api/v1/sessions/{quote(key, safe='')}/messages"


def batch(prefix: str, size: int) -> list[dict[str, Any]]:
    """``size`` messages with ids ``<prefix>-<n>``; assistants carry usage and a reported cost."""
    items: list[dict[str, Any]] = []
    for n in range(size):
        message: dict[str, Any] = {"message_id": f"{prefix}-{n}"}
        if n % 2 == 0:
            message |= {"role": "user", "content": f"question {prefix} {n}"}
        else:
            message |= {
                "role": "assistant",
                "content": f"answer {prefix} {n}",
                "usage": {
                    "prompt_tokens": 100 + n,
                    "completion_tokens": 10 + n,
                    "cache_read_tokens": n,
                    "cost_usd": "0.000123",
                },
            }
        items.append(message)
    return items


class Ingest:
    """Client threads appending batches as fast as the server answers.

    Each thread appends to the given session keys in turn through the given
    servers in turn. An append is *acknowledged* when its 200/201 answer came
    back; one whose connection broke is *in doubt*.
    """

    def __init__(
        self,
        urls: list[str],
        token: str,
        keys: list[str],
        *,
        threads: int = 4,
        size: int = 5,
        pause: float = 0.0,
    ) -> None:
        self.urls = urls
        self.token = token
        self.keys = keys
        self.size = size
        self.pause = pause
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked: dict[str, list[str]] = {}  # batch prefix -> its message ids
        self.in_doubt: dict[str, tuple[str, list[dict[str, Any]]]] = {}  # prefix -> key, batch
        self.errors: list[str] = []  # answers that were not 200/201
        self.sending = 0  # requests sent and not answered yet
        self.workers = [
            threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(threads)
        ]

    def start(self) -> Ingest:
        for worker in self.workers:
            worker.start()
        return self

    def finish(self, timeout: float = 60) -> None:
        self.stop.set()
        for worker in self.workers:
            worker.join(timeout)
        assert not any(worker.is_alive() for worker in self.workers), "a client hung"

    def wait_acked(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < count:
            assert time.monotonic() < deadline, f"only {len(self.acked)} appends acknowledged"
            assert not self.errors, self.errors[:3]
            time.sleep(0.05)

    def wait_in_flight(self, count: int, timeout: float = 10) -> None:
        """Wait until ``count`` appends are on their way (sent, not answered)."""
        deadline = time.monotonic() + timeout
        while self.sending < count:
            assert time.monotonic() < deadline, "the clients are not sending"
            time.sleep(0.001)

    def _run(self, thread: int) -> None:
        n = 0
        while not self.stop.is_set():
            key = self.keys[(thread + n) % len(self.keys)]
            url = self.urls[(thread + n) % len(self.urls)]
            prefix = f"t{thread}-b{n}"
            items = batch(prefix, self.size)
            n += 1
            with self.lock:
                self.sending += 1
            try:
                status, data, _ = request(
                    url, "POST", messages_path(key), {"messages": items}, token=self.token
                )
            except (OSError, http.client.HTTPException):
                with self.lock:
                    self.sending -= 1
                    self.in_doubt[prefix] = (key, items)
                time.sleep(0.05)
                continue
            with self.lock:
                self.sending -= 1
                if status in (200, 201) and data["appended"] == self.size:
                    self.acked[prefix] = [item["message_id"] for item in items]
                else:
                    self.errors.append(f"{url} {key}: {status} {str(data)[:300]}")
            if self.pause:
                time.sleep(self.pause)


def store_problems(keys: list[str] | None = None) -> list[str]:
    """Where the stored sessions disagree with their messages, or the rollups with both."""
    problems: list[str] = []
    sessions = Session.objects.all() if keys is None else Session.objects.filter(key__in=keys)
    for session in sessions:
        rows = list(
            Message.objects.filter(session=session)
            .order_by("seq")
            .values("seq", "role", "content", "cost_source", "cost_usd", *TOKEN_FIELDS)
        )
        seqs = [row["seq"] for row in rows]
        if seqs != list(range(1, len(rows) + 1)):
            problems.append(f"{session.key}: seqs are not 1..{len(rows)}")
        priced = [row for row in rows if row["cost_source"]]
        sums = {
            "message_count": len(rows),
            "last_seq": len(rows),
            "api_calls": len(priced),
            "cost_usd": sum((r["cost_usd"] for r in priced if r["cost_usd"]), Decimal(0)),
            **{name: sum(r[name] for r in priced) for name in TOKEN_FIELDS},
        }
        for name, total in sums.items():
            if getattr(session, name) != total:
                problems.append(f"{session.key}: {name} is {getattr(session, name)}, sum {total}")
    if keys is None:
        rollup = {name: 0 for name in ("message_count", "api_calls", *TOKEN_FIELDS)}
        for row in DailyUsage.objects.values("message_count", "api_calls", *TOKEN_FIELDS):
            for name in rollup:
                rollup[name] += row[name]
        stored = Message.objects.count()
        if rollup["message_count"] != stored:
            problems.append(f"rollups count {rollup['message_count']} messages, {stored} stored")
        for name in ("api_calls", *TOKEN_FIELDS):
            total = sum(getattr(s, name) for s in Session.objects.all())
            if rollup[name] != total:
                problems.append(f"rollups: {name} {rollup[name]}, sessions {total}")
    return problems


def stored_ids() -> set[str]:
    return set(Message.objects.exclude(message_id=None).values_list("message_id", flat=True))


def half_stored(batches: dict[str, list[str]], stored: set[str]) -> list[str]:
    """Batches of which some messages are stored and some are not."""
    return [
        prefix for prefix, ids in batches.items() if 0 < len(stored.intersection(ids)) < len(ids)
    ]
