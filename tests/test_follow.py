"""fleet-follow: the remote writer, the cursor, the loop and the command.

The proof that no format knowledge is written twice: a store written
through the remote writer into a live server gives exactly what
``import_sessions`` gives locally (``test_the_remote_writer_gives_what_the_local_import_gives``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pytest_django.live_server_helper import LiveServer

from fleet.follow import cli
from fleet.follow.follower import Follower, read_store
from fleet.follow.remote import RemoteWriter, Sent, fingerprint, payloads, unsent
from fleet.follow.state import State
from fleet.follow.transport import Backoff, RetryingTransport
from fleet.simulator.client import ApiClient, ApiError, Response
from sessions.importers import FORMATS
from sessions.importers.base import Since, SourceSession
from sessions.models import ApiKey, DailyUsage, Message, Session, Tombstone
from tests.import_stores import (
    appam_store,
    koda_store,
    run_import,
    zeph_store,
    zeroclaw_db,
    zeroclaw_folder,
)
from tests.server_support import ROOT, clean_environ
from tests.test_import_appam import row as appam_row
from tests.test_import_koda import build as koda_build
from tests.test_import_koda import message as koda_message
from tests.test_import_zeph import row as zeph_row

MTIME = datetime(2026, 2, 10, 9, 30, 15, 250000, tzinfo=UTC)


# --- stores -------------------------------------------------------------------------


def zeroclaw_files(folder: Path) -> Path:
    zeroclaw_folder(
        folder,
        {
            "telegram_123": [
                {"role": "user", "content": "remind me at 5"},
                {
                    "role": "assistant",
                    "content": json.dumps(
                        {
                            "content": "Looking.",
                            "tool_calls": [{"id": "c1", "name": "clock", "arguments": "{}"}],
                        }
                    ),
                },
                {"role": "tool", "content": json.dumps({"tool_call_id": "c1", "content": "16:59"})},
                "not json",
                {"role": "assistant", "content": "Sure, I'll remind you."},
            ],
            "workspace_notes": [{"role": "system", "content": "You are zeroclaw."}],
        },
    )
    for file in folder.glob("*.jsonl"):
        os.utime(file, (MTIME.timestamp(), MTIME.timestamp()))
    return folder


def zeroclaw_sqlite(path: Path) -> Path:
    return zeroclaw_db(
        path,
        metadata=[
            {
                "session_key": "discord_42_ab",
                "created_at": "2026-02-01T10:00:00+00:00",
                "last_activity": "2026-02-01T10:05:00.123456+00:00",
                "message_count": 2,
                "name": "dana on discord",
                "state": "running",
                "turn_id": "turn-7",
                "turn_started_at": "2026-02-01T10:04:59+00:00",
                "agent_alias": "clamps",
                "channel_id": "discord.clamps",
                "room_id": "1122334455",
                "sender_id": "42",
            },
            {
                "session_key": "telegram_7",
                "created_at": "2026-02-02T10:00:00Z",
                "last_activity": "2026-02-02T11:00:00Z",
                "state": "paused",
            },
        ],
        messages=[
            {
                "session_key": "discord_42_ab",
                "role": "user",
                "content": "hi",
                "created_at": "2026-02-01T10:00:01+00:00",
            },
            {
                "session_key": "discord_42_ab",
                "role": "assistant",
                "content": "hello",
                "created_at": "2026-02-01T10:00:02+00:00",
            },
            {
                "session_key": "cli_orphan",
                "role": "user",
                "content": "a",
                "created_at": "2026-02-03T09:00:00Z",
            },
        ],
    )


STORES: dict[str, tuple[str, Callable[[Path], Path]]] = {
    "koda": ("koda", lambda tmp: koda_build(tmp / "koda.db")),
    "zeroclaw-jsonl": ("zeroclaw", lambda tmp: zeroclaw_files(tmp / "zeroclaw")),
    "zeroclaw-sqlite": ("zeroclaw", lambda tmp: zeroclaw_sqlite(tmp / "sessions.db")),
    "zeph": (
        "zeph",
        lambda tmp: zeph_store(
            tmp / "zeph.db",
            [
                zeph_row(),
                zeph_row(id="zeph-2", status="completed", turns=2, cost_cents=0.1),
                zeph_row(id="zeph-3", status="Done", channel="pager"),
            ],
        ),
    ),
    "appam": (
        "appam",
        lambda tmp: appam_store(
            tmp / "history.db",
            [appam_row(), appam_row(id="ended", ended_at="2026-03-01T13:00:00Z")],
        ),
    ),
}


# --- helpers -----------------------------------------------------------------------


@pytest.fixture
def token() -> str:
    return ApiKey.generate(name="follower")[1]


_CLIENTS: list[ApiClient] = []


def client(url: str, token: str) -> ApiClient:
    """A client closed after the test: an idle keep-alive connection would hold the
    live server's request thread, and its database connection, past the test."""
    made = ApiClient(url, token)
    _CLIENTS.append(made)
    return made


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()


def follower(
    fmt: str,
    path: Path,
    url: str,
    token: str,
    state: Path | None = None,
    *,
    transport: Any = None,
    **options: Any,
) -> Follower:
    source = {"format": fmt, "path": str(path), "url": url}
    loaded, _ = State.load(state, source)
    transport = transport or RetryingTransport(
        client(url, token), Backoff(base=0.01, cap=0.05), attempts=20
    )
    return Follower(
        fmt=fmt,
        path=path,
        writer=RemoteWriter(transport, batch=options.pop("batch", 1000)),
        state=loaded,
        state_path=state,
        **options,
    )


def fleet_rows() -> dict[str, list[dict[str, Any]]]:
    """Sessions, messages (by session key) and rollups, without row ids."""
    keys = dict(Session.objects.values_list("id", "key"))
    return {
        "sessions": [
            {k: v for k, v in row.items() if k != "id"}
            for row in Session.objects.order_by("key").values()
        ],
        "messages": [
            {
                **{k: v for k, v in row.items() if k not in ("id", "session_id")},
                "key": keys[row["session_id"]],
            }
            for row in Message.objects.order_by("session__key", "seq").values()
        ],
        "rollups": [
            {k: v for k, v in row.items() if k != "id"}
            for row in DailyUsage.objects.order_by("day", "agent", "model", "channel").values()
        ],
    }


def wipe() -> None:
    Message.objects.all().delete()
    Session.objects.all().delete()
    DailyUsage.objects.all().delete()
    Tombstone.objects.all().delete()


# --- the remote writer is the local writer -------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("store", sorted(STORES))
def test_the_remote_writer_gives_what_the_local_import_gives(
    store: str, tmp_path: Path, live_server: LiveServer, token: str
) -> None:
    fmt, build = STORES[store]
    path = build(tmp_path)
    run_import(fmt, str(path), expect_errors=store in ("zeroclaw-jsonl",))
    local = fleet_rows()
    wipe()

    report = follower(fmt, path, live_server.url, token).sync()

    remote = fleet_rows()
    if fmt == "koda":
        # koda's archive marks arrive (POST .../messages/archive) with their times.
        assert [m["compacted_at"] is not None for m in local["messages"]].count(True) == 2
    assert report.dropped == 0
    assert remote == local
    assert local["sessions"]
    assert report.sessions == len(local["sessions"])


@pytest.mark.django_db(transaction=True)
def test_a_koda_compaction_summary_reaches_fleet_as_its_summary(
    tmp_path: Path, live_server: LiveServer, token: str
) -> None:
    # koda writes the summary as a system row with the archive (rows 1-2, 12:05).
    summary = koda_message(
        role="system", content="So far: fixed.", created_at="2026-03-01 12:05:00"
    )
    path = koda_build(tmp_path / "koda.db", extra=[summary])
    run_import("koda", str(path))
    local = fleet_rows()
    assert [m["is_summary"] for m in local["messages"]].count(True) == 1
    wipe()

    report = follower("koda", path, live_server.url, token).sync()

    assert report.dropped == 0
    assert fleet_rows() == local


# --- agents that keep writing their stores ------------------------------------------------


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")


class Agent(threading.Thread):
    """Keeps appending to a store as its agent does, until ``total`` messages or stopped.

    Any ``sqlite3.OperationalError`` (SQLITE_BUSY past the busy timeout: a
    follower holding a lock) is kept in ``error`` and ends the agent.
    """

    def __init__(self, total: int, pause: float = 0.003) -> None:
        super().__init__(daemon=True)
        self.total = total
        self.pause = pause
        self.written = 0
        self.error: BaseException | None = None
        self.halt = threading.Event()

    def write(self, number: int) -> None:
        raise NotImplementedError

    def setup(self) -> None:
        pass

    def run(self) -> None:
        try:
            self.setup()
            while self.written < self.total and not self.halt.is_set():
                self.write(self.written)
                self.written += 1
                time.sleep(self.pause)
        except BaseException as exc:
            self.error = exc
        finally:
            self.teardown()

    def teardown(self) -> None:
        pass

    def finish(self, timeout: float = 60) -> None:
        self.join(timeout)
        assert not self.is_alive()
        assert self.error is None, repr(self.error)


class KodaAgent(Agent):
    """koda: a session row, then message rows with usage, ``last_accessed_at`` moved."""

    def __init__(self, path: Path, total: int, *, journal: str = "wal", sessions: int = 3) -> None:
        super().__init__(total)
        self.path = path
        self.journal = journal
        self.sessions = sessions
        self.conn: sqlite3.Connection | None = None

    def setup(self) -> None:
        koda_store(self.path)
        # koda's own busy timeout; SQLITE_BUSY past it is a failure of the follower.
        self.conn = sqlite3.connect(self.path, timeout=5)
        self.conn.execute(f"PRAGMA journal_mode={self.journal}")

    def write(self, number: int) -> None:
        assert self.conn is not None
        key = f"s-{number % self.sessions}"
        at = now_text()
        with self.conn:
            self.conn.execute(
                "INSERT OR IGNORE INTO sessions (id, created_at, agent_name) VALUES (?, ?, 'koda')",
                (key, at),
            )
            self.conn.execute(
                "INSERT INTO messages (session_id, role, content, prompt_tokens, "
                "completion_tokens, cache_read_tokens, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, "assistant" if number % 2 else "user", f"message {number}", 10, 5, 3, at),
            )
            self.conn.execute("UPDATE sessions SET last_accessed_at = ? WHERE id = ?", (at, key))

    def teardown(self) -> None:
        if self.conn is not None:
            self.conn.close()


class ZeroclawAgent(Agent):
    """zeroclaw JSONL: one line per message appended to ``<key>.jsonl``, in two writes
    (the follower may see a line without its newline)."""

    def __init__(self, folder: Path, total: int, *, sessions: int = 3) -> None:
        super().__init__(total)
        self.folder = folder
        self.sessions = sessions

    def setup(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)

    def write(self, number: int) -> None:
        line = json.dumps({"role": "user", "content": f"message {number}"})
        with (self.folder / f"cli_{number % self.sessions}.jsonl").open("a") as handle:
            handle.write(line[:10])
            handle.flush()
            time.sleep(0.005)
            handle.write(line[10:] + "\n")


def store_messages(fmt: str, path: Path) -> dict[str, list[str]]:
    """The store's message ids per session key, read by the importer's reader."""
    return {
        record.key: [m.message_id or "" for m in record.messages]
        for record in FORMATS[fmt](path)
        if isinstance(record, SourceSession)
    }


def fleet_messages() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for key, message_id in Message.objects.order_by("session__key", "seq").values_list(
        "session__key", "message_id"
    ):
        found.setdefault(key, []).append(message_id)
    return found


def wait_until(condition: Callable[[], bool], timeout: float = 30, what: str = "") -> float:
    """Seconds until ``condition`` held (fails past ``timeout``)."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, f"not within {timeout}s: {what}"
        time.sleep(0.05)
    return time.monotonic() - start


class Running:
    """``fleet-follow`` (``cli.main``) in a thread of this process."""

    def __init__(self, *argv: str) -> None:
        self.stop = threading.Event()
        self.code: int | None = None
        self.thread = threading.Thread(target=self._run, args=(argv,), daemon=True)
        self.thread.start()

    def _run(self, argv: tuple[str, ...]) -> None:
        self.code = cli.main(list(argv), stop=self.stop)

    def end(self, timeout: float = 30) -> int | None:
        self.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive()
        return self.code


def assert_mirrors_the_store(fmt: str, path: Path, *, times: bool = True) -> None:
    """Fleet holds exactly what ``import_sessions`` of the store gives (ids, totals, fields)."""
    remote = fleet_rows()
    wipe()
    run_import(fmt, str(path))
    local = fleet_rows()
    if not times:  # zeroclaw JSONL: a message's time is the file's when it was read
        for rows in (remote, local):
            for row in rows["messages"]:
                row.pop("created_at")
            for row in rows["sessions"]:
                for name in ("created_at", "last_active_at"):
                    row.pop(name)
            rows.pop("rollups")
    assert remote == local


class ZeroclawDbAgent(Agent):
    """zeroclaw's sessions.db (WAL): a message row, and the metadata's turn state moved
    (a user message starts a turn, the answer ends it)."""

    def __init__(self, path: Path, total: int, *, sessions: int = 3) -> None:
        super().__init__(total)
        self.path = path
        self.sessions = sessions
        self.conn: sqlite3.Connection | None = None

    def setup(self) -> None:
        zeroclaw_db(self.path)
        self.conn = sqlite3.connect(self.path, timeout=5)
        self.conn.execute("PRAGMA journal_mode=wal")

    def write(self, number: int) -> None:
        assert self.conn is not None
        key = f"discord_{number % self.sessions}"
        at = datetime.now(UTC).isoformat()
        user = (number // self.sessions) % 2 == 0
        with self.conn:
            self.conn.execute(
                "INSERT INTO sessions (session_key, role, content, created_at) VALUES (?, ?, ?, ?)",
                (key, "user" if user else "assistant", f"message {number}", at),
            )
            self.conn.execute(
                "INSERT INTO session_metadata (session_key, created_at, last_activity, "
                "message_count, agent_alias, channel_id) VALUES (?, ?, ?, 0, 'clamps', "
                "'discord.clamps') ON CONFLICT (session_key) DO NOTHING",
                (key, at, at),
            )
            self.conn.execute(
                "UPDATE session_metadata SET last_activity = ?, message_count = message_count + 1, "
                "state = ?, turn_id = ?, turn_started_at = ? WHERE session_key = ?",
                (at, "running" if user else "idle", f"t{number}" if user else None,
                 at if user else None, key),
            )  # fmt: skip

    def teardown(self) -> None:
        if self.conn is not None:
            self.conn.close()


class AppamAgent(Agent):
    """appam: one row per session, its messages array rewritten at each message, its
    usage totals grown; the session's last message ends it (``ended_at``)."""

    def __init__(self, path: Path, total: int, *, sessions: int = 2) -> None:
        super().__init__(total)
        self.path = path
        self.sessions = sessions
        self.transcripts: dict[str, list[dict[str, Any]]] = {}
        self.conn: sqlite3.Connection | None = None

    def setup(self) -> None:
        appam_store(self.path, [])
        self.conn = sqlite3.connect(self.path, timeout=5)
        self.conn.execute("PRAGMA journal_mode=wal")

    def write(self, number: int) -> None:
        assert self.conn is not None
        key = f"run-{number % self.sessions}"
        at = datetime.now(UTC).isoformat()
        messages = self.transcripts.setdefault(key, [])
        messages.append(
            {"role": "assistant" if len(messages) % 2 else "user", "content": f"message {number}",
             "id": f"m-{number}", "timestamp": at}
        )  # fmt: skip
        ended = at if number >= self.total - self.sessions else None
        calls = len(messages) // 2
        usage = {"total_input_tokens": 100 * calls, "total_output_tokens": 20 * calls,
                 "total_cost_usd": 0.001 * calls, "request_count": calls}  # fmt: skip
        with self.conn:
            self.conn.execute(
                "INSERT INTO session_history (id, agent_name, model, messages, started_at, "
                "updated_at) VALUES (?, 'worker', 'claude-sonnet-4-5', '[]', ?, ?) "
                "ON CONFLICT (id) DO NOTHING",
                (key, at, at),
            )
            self.conn.execute(
                "UPDATE session_history SET messages = ?, updated_at = ?, ended_at = ?, "
                "turn_count = ?, usage = ? WHERE id = ?",
                (json.dumps(messages), at, ended, calls, json.dumps(usage), key),
            )

    def teardown(self) -> None:
        if self.conn is not None:
            self.conn.close()


class ZephAgent(Agent):
    """zeph: a row of totals per session, grown at each turn; the last turn completes it."""

    def __init__(self, path: Path, total: int, *, sessions: int = 2) -> None:
        super().__init__(total)
        self.path = path
        self.sessions = sessions
        self.conn: sqlite3.Connection | None = None

    def setup(self) -> None:
        zeph_store(self.path, [])
        self.conn = sqlite3.connect(self.path, timeout=5)

    def write(self, number: int) -> None:
        assert self.conn is not None
        key = f"zeph-{number % self.sessions}"
        at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
        status = "completed" if number >= self.total - self.sessions else "active"
        with self.conn:
            self.conn.execute(
                "INSERT INTO agent_sessions (id, model, created_at, last_active_at) "
                "VALUES (?, 'claude-sonnet-4-5', ?, ?) ON CONFLICT (id) DO NOTHING",
                (key, at, at),
            )
            self.conn.execute(
                "UPDATE agent_sessions SET turns = turns + 1, prompt_tokens = prompt_tokens + 100, "
                "completion_tokens = completion_tokens + 20, cost_cents = cost_cents + 0.25, "
                "last_active_at = ?, status = ? WHERE id = ?",
                (at, status, key),
            )

    def teardown(self) -> None:
        if self.conn is not None:
            self.conn.close()


def caught_up(fmt: str, path: Path, state: Path) -> bool:
    """The follower's cursor has every session of the store as it is now."""
    try:
        sessions = json.loads(state.read_text())["sessions"]
    except (OSError, ValueError):
        return False
    for record in read_store(fmt, path):
        if isinstance(record, SourceSession):
            sent = sessions.get(record.key)
            if (
                sent is None
                or sent["count"] != len(record.messages)
                or sent["fields"] != fingerprint(payloads(record).upsert)
            ):
                return False
    return True


# case: (format, the agent, the store's name in tmp_path, messages written, times kept)
LIVE: dict[str, tuple[str, Callable[[Path], Agent], str, bool, bool]] = {
    "koda": ("koda", lambda tmp: KodaAgent(tmp / "koda.db", 240), "koda.db", True, True),
    "koda-rollback-journal": (
        "koda",
        lambda tmp: KodaAgent(tmp / "koda.db", 240, journal="delete"),
        "koda.db",
        True,
        True,
    ),
    # zeroclaw JSONL: a message's time is the file's when it was read.
    "zeroclaw-jsonl": ("zeroclaw", lambda tmp: ZeroclawAgent(tmp / "zc", 240), "zc", True, False),
    "zeroclaw-sqlite": (
        "zeroclaw",
        lambda tmp: ZeroclawDbAgent(tmp / "sessions.db", 240),
        "sessions.db",
        True,
        True,
    ),
    "appam": ("appam", lambda tmp: AppamAgent(tmp / "history.db", 120), "history.db", True, True),
    "zeph": ("zeph", lambda tmp: ZephAgent(tmp / "zeph.db", 120), "zeph.db", False, True),
}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("case", sorted(LIVE))
def test_fleet_holds_what_the_agent_wrote_while_it_was_writing(
    case: str,
    tmp_path: Path,
    live_server: LiveServer,
    token: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="fleet.follow")
    fmt, make, name, with_messages, times = LIVE[case]
    monkeypatch.setenv("FLEET_KEY", token)
    agent = make(tmp_path)
    agent.start()
    wait_until(lambda: agent.written > 0 or agent.error is not None, what="the agent starts")
    path, state = tmp_path / name, tmp_path / "state.json"
    running = Running(
        fmt, str(path), "--url", live_server.url, "--interval", "100ms", "--state", str(state)
    )
    agent.finish()
    lag = wait_until(lambda: caught_up(fmt, path, state), what="Fleet catches up")

    assert running.end() == 0
    assert lag < 3.0  # a few intervals on a busy machine
    assert Message.objects.count() == (agent.total if with_messages else 0)
    assert_mirrors_the_store(fmt, path, times=times)
    # Nothing reported: a JSONL line caught half written is left for the next read.
    assert [r.message for r in caplog.records if "problem" in r.message] == []
    assert any("sync:" in r.message for r in caplog.records)


# --- restarts, outages, refused keys --------------------------------------------------------


def follow_process(path: Path, url: str, token: str, state: Path) -> subprocess.Popen[str]:
    """``python -m fleet.follow`` with no Django settings and no database in its environment."""
    env = {**clean_environ(), "FLEET_KEY": token, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fleet.follow",
            "koda",
            str(path),
            "--url",
            url,
            "--interval",
            "50ms",
            "--state",
            str(state),
            "--batch",
            "7",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.once
@pytest.mark.django_db(transaction=True)
def test_kill_9_and_restart_lose_nothing_and_duplicate_nothing(
    tmp_path: Path, live_server: LiveServer, token: str
) -> None:
    agent = KodaAgent(tmp_path / "koda.db", 400)
    agent.start()
    wait_until(lambda: agent.written > 0, what="the agent starts")
    state = tmp_path / "state.json"
    for _ in range(3):
        process = follow_process(agent.path, live_server.url, token, state)
        # Killed mid-sync: once some messages are in, and the agent still writes.
        before = Message.objects.count()
        wait_until(lambda n=before: Message.objects.count() > n, what="the follower sends")
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
    agent.finish()
    process = follow_process(agent.path, live_server.url, token, state)
    wait_until(lambda: fleet_messages() == store_messages("koda", agent.path), what="catch up")
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=30)

    assert process.returncode == 0, out
    assert json.loads(state.read_text())["sessions"]  # the cursor was saved, and read
    assert Message.objects.count() == 400
    assert_mirrors_the_store("koda", agent.path)


class Outage:
    """Makes the follower's client see Fleet down: connections refused, 503s and 429s."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.down = threading.Event()
        self.refused = 0
        original = ApiClient.send

        def send(client: ApiClient, method: str, path: str, body: bytes | None = None) -> Any:
            if self.down.is_set():
                self.refused += 1
                if self.refused % 3 == 1:
                    raise ApiError(method, path, None, "ConnectionRefusedError")
                status = 503 if self.refused % 3 == 2 else 429
                return Response(status, {"error": {"code": "unavailable", "message": "down"}}, 0)
            return original(client, method, path, body)

        monkeypatch.setattr(ApiClient, "send", send)


@pytest.mark.django_db(transaction=True)
def test_fleet_down_then_back_gets_everything(
    tmp_path: Path,
    live_server: LiveServer,
    token: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="fleet.follow")
    monkeypatch.setenv("FLEET_KEY", token)
    outage = Outage(monkeypatch)
    agent = KodaAgent(tmp_path / "koda.db", 200)
    agent.start()
    wait_until(lambda: agent.written > 0, what="the agent starts")
    running = Running(
        "koda",
        str(agent.path),
        "--url",
        live_server.url,
        "--interval",
        "50ms",
        "--max-backoff",
        "100ms",
        "--state",
        str(tmp_path / "state.json"),
    )
    wait_until(lambda: Message.objects.exists(), what="the first sync")
    outage.down.set()
    wait_until(lambda: outage.refused >= 8, what="retries while Fleet is down")
    held = Message.objects.count()
    outage.down.clear()
    agent.finish()
    wait_until(lambda: fleet_messages() == store_messages("koda", agent.path), what="catch up")

    assert running.end() == 0
    assert held < 200
    assert any("Fleet unavailable" in r.message and "retry" in r.message for r in caplog.records)
    assert_mirrors_the_store("koda", agent.path)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("once", [True, False])
def test_a_refused_key_stops_it_with_a_clear_message(
    once: bool,
    tmp_path: Path,
    live_server: LiveServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = koda_build(tmp_path / "koda.db")
    monkeypatch.setenv("FLEET_KEY", "fleet_wrong")
    argv = ["koda", str(path), "--url", live_server.url, "--state", str(tmp_path / "s.json")]

    code = cli.main([*argv, *(["--once"] if once else [])])

    assert code == cli.EXIT_KEY_REFUSED
    assert any("refused the key (HTTP 401" in r.message for r in caplog.records)
    assert not Session.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_key_revoked_while_it_follows_stops_it(
    tmp_path: Path, live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored, token = ApiKey.generate(name="revoked")
    monkeypatch.setenv("FLEET_KEY", token)
    agent = KodaAgent(tmp_path / "koda.db", 100_000, sessions=1)
    agent.start()
    running = Running(
        "koda",
        str(agent.path),
        "--url",
        live_server.url,
        "--interval",
        "50ms",
        "--state",
        str(tmp_path / "s.json"),
    )
    wait_until(lambda: Message.objects.exists(), what="the first sync")

    stored.revoke()

    running.thread.join(30)
    agent.halt.set()
    agent.finish()
    assert running.code == cli.EXIT_KEY_REFUSED


def test_no_key_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("FLEET_KEY", raising=False)
    (tmp_path / "empty").write_text("\n")

    assert cli.main(["koda", "x.db", "--url", "http://fleet.test"]) == cli.EXIT_USAGE
    assert (
        cli.main(["koda", "x.db", "--url", "http://f.test", "--key-file", str(tmp_path / "empty")])
        == cli.EXIT_USAGE
    )

    err = capsys.readouterr().err
    assert "no API key: pass --key-file PATH or set FLEET_KEY" in err
    assert "is empty" in err


def test_the_key_is_not_an_option() -> None:
    with pytest.raises(SystemExit):
        cli.parser().parse_args(["koda", "x.db", "--url", "http://f.test", "--key", "secret"])


# --- no database, no settings -----------------------------------------------------------------

NO_DATABASE = """
import sys
from fleet.follow import cli
code = cli.main(sys.argv[1:])
from django.conf import settings
from django.db import connections
assert settings.DATABASES["default"]["ENGINE"] == "django.db.backends.dummy", settings.DATABASES
assert all(connection.connection is None for connection in connections.all())
print("no database connection")
sys.exit(code)
"""


@pytest.mark.once
@pytest.mark.django_db(transaction=True)
def test_it_needs_no_database_and_no_django_settings(
    tmp_path: Path, live_server: LiveServer, token: str
) -> None:
    path = koda_build(tmp_path / "koda.db")
    key_file = tmp_path / "key"
    key_file.write_text(token + "\n")
    env = {**clean_environ(), "PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": "fleet.settings"}
    # DJANGO_SETTINGS_MODULE is ignored (fleet.settings would fail here: no secret key).
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            NO_DATABASE,
            "koda",
            str(path),
            "--url",
            live_server.url,
            "--key-file",
            str(key_file),
            "--state",
            str(tmp_path / "s.json"),
            "--once",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no database connection" in result.stdout
    assert "sync: 2 session(s) sent (2 new), 5 message(s) appended" in result.stderr
    assert Message.objects.count() == 5


@pytest.mark.once
def test_its_limits_are_the_servers_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in cli.LIMITS:
        monkeypatch.delenv(name, raising=False)
    defaults = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, fleet.settings as s; print(json.dumps("
            f"{{n: getattr(s, n) for n in {sorted(cli.LIMITS)!r}}}))",
        ],
        cwd=ROOT,
        env={**clean_environ(), "DJANGO_SECRET_KEY": "x"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(defaults.stdout) == cli.LIMITS


@pytest.mark.parametrize(
    ("text", "seconds"), [("2s", 2.0), ("500ms", 0.5), ("1m", 60.0), ("1.5", 1.5)]
)
def test_durations(text: str, seconds: float) -> None:
    assert cli.duration(text) == seconds


@pytest.mark.parametrize("text", ["0s", "soon", "-1s", "2h"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        cli.duration(text)


# --- one pass: what it reads, sends and remembers -----------------------------------------------


class Counting:
    """A transport that counts the requests it passes on."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[tuple[str, str]] = []

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        self.calls.append((method, path))
        return self.inner.call(method, path, body)


def transport(url: str, token: str) -> Counting:
    return Counting(RetryingTransport(client(url, token), Backoff(base=0.01, cap=0.05)))


@pytest.mark.django_db(transaction=True)
def test_an_unchanged_store_is_not_read_again_and_nothing_is_sent(
    tmp_path: Path, live_server: LiveServer, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = koda_build(tmp_path / "koda.db")
    old = time.time() - 60
    os.utime(path, (old, old))
    counting = transport(live_server.url, token)
    one = follower("koda", path, live_server.url, token, tmp_path / "s.json", transport=counting)
    assert one.sync().sessions == 2
    sent = len(counting.calls)

    idle = one.sync()

    assert (idle.read, idle.sessions, len(counting.calls)) == (False, 0, sent)
    # A change moves the stamp: the store is read again, the changed session sent.
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE sessions SET project_root = '/elsewhere' WHERE id = 's-1'")
    changed = one.sync()
    assert (changed.read, changed.sessions, changed.messages) == (True, 1, 0)
    assert counting.calls[sent:] == [("PUT", "/sessions/s-1")]
    assert Session.objects.get(key="s-1").project_root == "/elsewhere"


@pytest.mark.django_db(transaction=True)
def test_a_restart_resumes_from_the_state_file(
    tmp_path: Path, live_server: LiveServer, token: str
) -> None:
    path = koda_build(tmp_path / "koda.db")
    state = tmp_path / "state" / "koda.json"
    follower("koda", path, live_server.url, token, state).sync()
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(
            "INSERT INTO messages (session_id, role, content, created_at) "
            "VALUES ('s-2', 'user', 'later', '2026-03-02 08:00:02')"
        )
    counting = transport(live_server.url, token)

    report = follower("koda", path, live_server.url, token, state, transport=counting).sync()

    assert (report.sessions, report.messages, report.skipped) == (1, 1, 0)
    assert counting.calls == [("POST", "/sessions/s-2/messages"), ("PUT", "/sessions/s-2")]
    assert [m.content for m in Message.objects.filter(session__key="s-2")] == ["Hello", "later"]


@pytest.mark.django_db(transaction=True)
def test_a_store_rewritten_under_the_cursor_is_sent_again_and_skipped(
    tmp_path: Path, live_server: LiveServer, token: str
) -> None:
    folder = zeroclaw_files(tmp_path / "zc")
    state = tmp_path / "s.json"
    follower("zeroclaw", folder, live_server.url, token, state).sync()
    # Truncated and written again (zeroclaw rotated it): the cursor's last line is gone.
    zeroclaw_folder(folder, {"telegram_123": [{"role": "user", "content": "remind me at 5"}]})

    report = follower("zeroclaw", folder, live_server.url, token, state).sync()

    assert (report.messages, report.skipped) == (0, 1)
    assert Message.objects.filter(session__key="telegram_123").count() == 4


def test_the_state_file_is_replaced_whole_or_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.json"
    state = State({"format": "koda", "path": "/x", "url": "http://f"})
    state.sessions["a"] = Sent(fields="f", count=1, last_id="koda:1")
    state.save(path)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("fleet.follow.state.json.dump", broken)
    state.sessions["b"] = Sent(count=2)
    with pytest.raises(OSError, match="disk full"):
        state.save(path)

    assert list(tmp_path.iterdir()) == [path]  # no temporary file left
    loaded, why = State.load(path, state.source)
    assert (why, list(loaded.sessions)) == ("", ["a"])
    other, why = State.load(path, {**state.source, "url": "http://other"})
    assert other.sessions == {}
    assert "starting a new cursor" in why


def test_the_cursor_finds_where_the_unsent_messages_start() -> None:
    records = [r for r in FORMATS["zeroclaw"](zeroclaw_files(Path(tempfile.mkdtemp())))]
    messages = next(r for r in records if isinstance(r, SourceSession) and r.messages[1:]).messages
    assert unsent(messages, None) == 0
    assert unsent(messages, Sent(count=2, last_id=messages[1].message_id)) == 2
    assert unsent(messages, Sent(count=2, last_id="zeroclaw:L2:other")) == 0
    assert unsent(messages, Sent(count=len(messages) + 1, last_id="x")) == 0


@pytest.mark.django_db(transaction=True)
def test_a_dry_run_prints_what_it_would_send_and_sends_nothing(
    tmp_path: Path, live_server: LiveServer, capsys: pytest.CaptureFixture[str]
) -> None:
    path = koda_build(tmp_path / "koda.db")
    state = tmp_path / "s.json"

    code = cli.main(["koda", str(path), "--url", live_server.url, "--state", str(state),
                     "--dry-run", "--once"])  # fmt: skip

    out = capsys.readouterr().out
    assert code == 0
    assert "POST /sessions/s-1/messages: 4 message(s) koda:1 … koda:4" in out
    assert 'PUT /sessions/s-2 {"agent": "koda", "created_at": "2026-03-02T08:00:00+00:00"' in out
    assert not Session.objects.exists()
    assert not state.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("mirror", [False, True])
def test_sessions_deleted_in_the_store_are_deleted_in_fleet_only_when_asked(
    mirror: bool, tmp_path: Path, live_server: LiveServer, token: str
) -> None:
    path = koda_build(tmp_path / "koda.db")
    state = tmp_path / "s.json"
    follower("koda", path, live_server.url, token, state).sync()
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("DELETE FROM messages WHERE session_id = 's-2'")
        conn.execute("DELETE FROM sessions WHERE id = 's-2'")

    report = follower("koda", path, live_server.url, token, state, mirror_deletes=mirror).sync()

    assert (report.gone, report.deleted) == (1, int(mirror))
    assert Session.objects.filter(key="s-2").exists() is not mirror
    assert Tombstone.objects.filter(key="s-2").exists() is mirror
    assert "s-2" not in json.loads(state.read_text())["sessions"]


@pytest.mark.django_db(transaction=True)
def test_a_read_with_an_unreadable_session_deletes_nothing(
    tmp_path: Path, live_server: LiveServer, token: str
) -> None:
    path = koda_build(tmp_path / "koda.db")
    state = tmp_path / "s.json"
    follower("koda", path, live_server.url, token, state).sync()
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE sessions SET created_at = 'garbage' WHERE id = 's-2'")

    report = follower("koda", path, live_server.url, token, state, mirror_deletes=True).sync()

    assert (report.errors, report.gone) == (1, 0)
    assert Session.objects.filter(key="s-2").exists()


@pytest.mark.django_db(transaction=True)
def test_a_corrupt_row_is_reported_with_its_place_and_the_rest_follows(
    tmp_path: Path, live_server: LiveServer, token: str
) -> None:
    path = koda_build(
        tmp_path / "koda.db",
        extra=[{"session_id": "s-2", "role": "wizard", "content": "x", "created_at": "2026-03-02"}],
    )
    lines: list[str] = []
    one = follower("koda", path, live_server.url, token, tmp_path / "s.json", log=lines.append)

    report = one.sync()
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(
            "INSERT INTO messages (session_id, role, content, created_at) "
            "VALUES ('s-2', 'user', 'after', '2026-03-02 09:00:00')"
        )
    again = one.sync()

    assert report.errors == 1
    assert [line for line in lines if "koda.db: messages id=6" in line] == [
        "problem: koda.db: messages id=6: message.role: must be one of system, user, assistant, "
        "tool, "
        "got 'wizard'"
    ]
    assert again.messages == 1
    assert [m.content for m in Message.objects.filter(session__key="s-2")] == ["Hello", "after"]


@pytest.mark.django_db(transaction=True)
def test_zeroclaw_turn_changes_are_forwarded(
    tmp_path: Path, live_server: LiveServer, token: str
) -> None:
    path = zeroclaw_sqlite(tmp_path / "sessions.db")
    state = tmp_path / "s.json"
    follower("zeroclaw", path, live_server.url, token, state).sync()
    assert Session.objects.get(key="discord_42_ab").state == "running"
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(
            "UPDATE session_metadata SET state = 'idle', turn_id = NULL, turn_started_at = NULL, "
            "last_activity = '2026-02-01T10:06:00+00:00' WHERE session_key = 'discord_42_ab'"
        )

    report = follower("zeroclaw", path, live_server.url, token, state).sync()

    session = Session.objects.get(key="discord_42_ab")
    assert (report.sessions, report.messages) == (1, 0)
    assert (session.state, session.turn_id, session.turn_started_at) == ("idle", "", None)
    assert session.last_active_at == datetime(2026, 2, 1, 10, 6, tzinfo=UTC)


@pytest.mark.django_db(transaction=True)
def test_a_session_fleet_refuses_is_reported_once_and_sent_again_when_it_changes(
    tmp_path: Path, live_server: LiveServer, token: str, settings: Any
) -> None:
    settings.FLEET_MAX_TODO_CHARS = 5  # the server's limit is below the follower's
    path = koda_build(tmp_path / "koda.db")
    lines: list[str] = []
    counting = transport(live_server.url, token)
    one = follower("koda", path, live_server.url, token, tmp_path / "s.json",
                   transport=counting, log=lines.append)  # fmt: skip

    first = one.sync()
    one.state.read_at = None  # read again at once
    calls = len(counting.calls)
    second = one.sync()

    assert first.errors == 1
    assert second.errors == 0
    assert len(counting.calls) == calls  # not sent again: the store did not change it
    refused = [line for line in lines if "refused" in line]
    assert len(refused) == 1
    assert refused[0].startswith("problem: koda.db: sessions id='s-1': refused by Fleet: HTTP 422")
    assert refused[0].endswith("FLEET_MAX_TODO_CHARS), got 25 (session.todo)")
    # A restart tries it once more (the server's limit may have been raised meanwhile).
    restarted = follower("koda", path, live_server.url, token, tmp_path / "s.json")
    assert (restarted.sync().errors, restarted.sync().errors) == (1, 0)
    settings.FLEET_MAX_TODO_CHARS = 1000
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE session_metadata SET value = 'done' WHERE key = 'todo'")
    one.state.read_at = None
    assert one.sync().errors == 0
    assert Session.objects.get(key="s-1").todo == "done"


@pytest.mark.django_db(transaction=True)
def test_a_server_with_smaller_batches_gets_smaller_batches(
    tmp_path: Path, live_server: LiveServer, token: str, settings: Any
) -> None:
    settings.FLEET_API_MAX_BATCH = 3
    path = koda_build(tmp_path / "koda.db")

    report = follower("koda", path, live_server.url, token, batch=100).sync()

    assert (report.errors, report.messages) == (0, 5)
    assert Message.objects.filter(session__key="s-1").count() == 4


def test_the_package_installs_the_command() -> None:
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, name = scripts["fleet-follow"].partition(":")
    assert module == "fleet.follow.cli"
    assert getattr(cli, name) is cli.main


# --- deployment ---------------------------------------------------------------------------------


def test_the_systemd_unit_passes_the_key_as_a_credential_file() -> None:
    unit = (ROOT / "deploy" / "fleet-follow@.service").read_text()
    start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    words = start.removeprefix("ExecStart=").split()
    values = {"${FORMAT}": "koda", "${STORE}": "/s.db", "${FLEET_URL}": "https://f.example"}
    argv = [values.get(word, word) for word in words[1:]]

    args = cli.parser().parse_args(argv)

    assert words[0] == "/opt/fleet/.venv/bin/fleet-follow"
    assert str(args.key_file) == "%d/fleet-key"
    assert "LoadCredential=fleet-key:/etc/fleet-follow/%i.key" in unit
    assert "FLEET_KEY" not in unit


@pytest.mark.once
@pytest.mark.django_db(transaction=True)
def test_the_procfile_line_follows_a_store(
    tmp_path: Path, live_server: LiveServer, token: str
) -> None:
    line = next(
        text
        for text in (ROOT / "deploy" / "Procfile.follow").read_text().splitlines()
        if text.startswith("follow:")
    )
    path = koda_build(tmp_path / "koda.db")
    env = {
        **clean_environ(),
        "PYTHONPATH": str(ROOT),
        "HOME": str(tmp_path),  # the default state file goes under it
        "FORMAT": "koda",
        "STORE": str(path),
        "FLEET_URL": live_server.url,
        "FLEET_KEY": token,
        "FOLLOW_INTERVAL": "100ms",
    }
    command = line.removeprefix("follow:").strip().replace(".venv/bin/python", sys.executable)
    process = subprocess.Popen(
        ["sh", "-c", f"exec {command}"],  # the runner's shell, out of the way of the signal
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_until(lambda: Message.objects.count() == 5, what="the store arrives")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        out, _ = process.communicate(timeout=30)

    assert process.returncode == 0, out
    assert list((tmp_path / ".local" / "state" / "fleet-follow").glob("koda-*.json"))


def test_once_gives_up_on_an_unavailable_fleet_and_says_the_next_run_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = koda_build(tmp_path / "koda.db")
    monkeypatch.setenv("FLEET_KEY", "fleet_x")
    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{unused.getsockname()[1]}"
    state = tmp_path / "s.json"

    code = cli.main(["koda", str(path), "--url", url, "--state", str(state), "--once",
                     "--max-backoff", "10ms"])  # fmt: skip

    assert code == cli.EXIT_UNAVAILABLE
    assert any("the next run resumes from the cursor" in r.message for r in caplog.records)
    assert not state.exists()  # nothing acknowledged, nothing recorded


@pytest.mark.django_db(transaction=True)
def test_a_store_not_there_yet_is_said_once_and_followed_when_it_appears(
    tmp_path: Path,
    live_server: LiveServer,
    token: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="fleet.follow")
    monkeypatch.setenv("FLEET_KEY", token)
    path = tmp_path / "koda.db"
    running = Running("koda", str(path), "--url", live_server.url, "--interval", "20ms",
                      "--state", str(tmp_path / "s.json"))  # fmt: skip
    time.sleep(0.3)
    koda_build(tmp_path / "building.db").rename(path)
    wait_until(lambda: Message.objects.count() == 5, what="the store arrives")

    assert running.end() == 0
    missing = [r.message for r in caplog.records if "does not exist" in r.message]
    assert len(missing) == 1


def test_a_stop_ends_the_pass_after_the_session_under_way(tmp_path: Path) -> None:
    path = koda_build(tmp_path / "koda.db")
    stop = threading.Event()

    class Stopping:
        calls = 0

        def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
            self.calls += 1
            stop.set()  # SIGTERM arrives while the first session is sent
            return (404, None) if method == "GET" else (200, {"appended": 0, "skipped": 0})

    state = tmp_path / "s.json"
    transport = Stopping()
    one = follower("koda", path, "http://f.test", "k", state, transport=transport, stop=stop)

    one.sync()

    assert list(json.loads(state.read_text())["sessions"]) == ["s-1"]
    assert transport.calls == 4  # GET, POST, archive, PUT of s-1; s-2 is left for the next start


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("scope", "agent"), [({"agents": ["koda"]}, "reviewer"), ({"read_only": True}, None)]
)
def test_a_key_not_allowed_to_write_the_sessions_stops_it(
    scope: dict[str, Any],
    agent: str | None,
    tmp_path: Path,
    live_server: LiveServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = koda_build(tmp_path / "koda.db")
    monkeypatch.setenv("FLEET_KEY", ApiKey.generate(name="scoped", **scope)[1])
    argv = ["koda", str(path), "--url", live_server.url, "--state", str(tmp_path / "s.json")]

    code = cli.main([*argv, "--once", *(["--agent", agent] if agent else [])])

    assert code == cli.EXIT_KEY_REFUSED
    assert any("refused the key (HTTP 403 forbidden" in r.message for r in caplog.records)
    assert not Message.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_agent_names_every_session(tmp_path: Path, live_server: LiveServer, token: str) -> None:
    path = koda_build(tmp_path / "koda.db")
    transport = RetryingTransport(client(live_server.url, token))
    one = follower("koda", path, live_server.url, token, transport=transport)
    one.writer.agent = "koda-laptop"

    one.sync()

    assert set(Session.objects.values_list("agent", flat=True)) == {"koda-laptop"}


def test_an_unreadable_state_file_starts_a_new_cursor(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text('{"version": 1, "source": ')

    state, why = State.load(path, {"format": "koda", "path": "/x", "url": "http://f"})

    assert state.sessions == {}
    assert why.startswith(f"cannot read {path} (")
    assert why.endswith("starting a new cursor")


@pytest.mark.django_db(transaction=True)
def test_a_rotated_jsonl_file_keeps_what_was_sent_and_sends_the_new_lines(
    tmp_path: Path, live_server: LiveServer, token: str
) -> None:
    folder = zeroclaw_folder(
        tmp_path / "zc", {"cli_1": [{"role": "user", "content": f"old {n}"} for n in range(3)]}
    )
    state = tmp_path / "s.json"
    follower("zeroclaw", folder, live_server.url, token, state).sync()
    (folder / "cli_1.jsonl").rename(folder / "cli_1.jsonl.1")  # zeroclaw rotates the file
    zeroclaw_folder(folder, {"cli_1": [{"role": "user", "content": "new 0"}]})

    report = follower("zeroclaw", folder, live_server.url, token, state).sync()

    assert (report.errors, report.gone, report.messages) == (0, 0, 1)
    contents = Message.objects.filter(session__key="cli_1").order_by("seq")
    assert [m.content for m in contents] == ["old 0", "old 1", "old 2", "new 0"]


def test_a_retry_after_longer_than_the_backoff_is_waited() -> None:
    answers = [
        Response(503, {"error": {"code": "unavailable"}}, 0, {"retry-after": "5"}),
        Response(429, {"error": {"code": "throttled"}}, 0, {"retry-after": "9999"}),
        Response(503, None, 0, {"retry-after": "Wed, 21 Oct 2026 07:28:00 GMT"}),
        Response(200, {"ok": True}, 0),
    ]

    class Script:
        def send(self, method: str, path: str, body: bytes | None = None) -> Response:
            return answers.pop(0)

    class Waits(threading.Event):
        seen: list[float] = []

        def wait(self, timeout: float | None = None) -> bool:
            self.seen.append(timeout or 0.0)
            return False

    stop = Waits()
    retrying = RetryingTransport(Script(), Backoff(base=0.01, cap=0.05), stop=stop)  # type: ignore[arg-type]

    assert retrying.call("GET", "/sessions/x") == (200, {"ok": True})
    assert stop.seen[:2] == [5.0, 300.0]  # asked for, and capped
    assert stop.seen[2] <= 0.05  # a date is not read: the backoff's own wait


@pytest.mark.django_db(transaction=True)
def test_only_the_changed_files_of_a_zeroclaw_folder_are_read_again(
    tmp_path: Path, live_server: LiveServer, token: str
) -> None:
    folder = zeroclaw_folder(
        tmp_path / "zc", {f"cli_{n}": [{"role": "user", "content": "hi"}] for n in range(3)}
    )
    old = time.time() - 60
    for file in folder.iterdir():
        os.utime(file, (old, old))
    one = follower("zeroclaw", folder, live_server.url, token, tmp_path / "s.json")
    assert one.sync().records == 3

    with (folder / "cli_1.jsonl").open("a") as handle:
        handle.write(json.dumps({"role": "assistant", "content": "hello"}) + "\n")
    partial = one.sync()
    zeroclaw_folder(folder, {"cli_9": [{"role": "user", "content": "new"}]})
    added = one.sync()
    (folder / "cli_0.jsonl").unlink()
    removed = one.sync()

    assert (partial.records, partial.sessions, partial.messages) == (1, 1, 1)
    assert (added.records, added.sessions) == (4, 1)  # a file came: the whole folder is read
    assert (removed.records, removed.gone) == (3, 1)
    assert fleet_messages()["cli_1"] == store_messages("zeroclaw", folder)["cli_1"]


@pytest.mark.django_db(transaction=True)
def test_a_changed_koda_store_reads_only_its_changed_sessions_even_after_a_restart(
    tmp_path: Path, live_server: LiveServer, token: str
) -> None:
    path = koda_build(tmp_path / "koda.db")
    state = tmp_path / "s.json"
    one = follower("koda", path, live_server.url, token, state)
    assert one.sync().records == 2
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(
            "INSERT INTO messages (session_id, role, content, created_at) "
            "VALUES ('s-2', 'user', 'later', '2026-03-02 08:00:02')"
        )

    changed = one.sync()

    assert (changed.records, changed.sessions, changed.messages) == (1, 1, 1)
    # koda compacts s-1 (old rows archived, the summary inserted) while no follower runs.
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE messages SET compacted_at = '2026-03-01 12:30:00' WHERE id IN (3, 4)")
        conn.execute(
            "INSERT INTO messages (session_id, role, content, created_at) "
            "VALUES ('s-1', 'system', 'Summary.', '2026-03-01 12:30:01')"
        )
    counting = transport(live_server.url, token)
    restarted = follower("koda", path, live_server.url, token, state, transport=counting)

    compacted = restarted.sync()

    assert (compacted.records, compacted.sessions, compacted.messages) == (1, 1, 1)
    assert counting.calls == [
        ("POST", "/sessions/s-1/messages"),
        ("POST", "/sessions/s-1/messages/archive"),
        ("PUT", "/sessions/s-1"),
    ]
    assert fleet_messages() == store_messages("koda", path)
    again = follower("koda", path, live_server.url, token, state).sync()
    assert (again.read, again.records, again.sessions) == (True, 0, 0)


def test_a_read_after_the_cursor_needs_the_cursor_to_hold_the_messages_not_read() -> None:
    tail = {"row": 6, "count": 2, "last_id": "koda:6"}
    assert Sent(count=2, last_id="koda:6", stamp="s", tail=tail).since() == Since("s", tail)
    # A send that stopped half-way: the session is read whole next time.
    assert Sent(count=1, last_id="koda:5", stamp="s", tail=tail).since() == Since("s", None)
    assert Sent(count=2, last_id="koda:6", tail=tail).since() is None
    record = SourceSession(
        key="k", where="here", last_active_at=MTIME, offset=2, stamp="t", tail=tail
    )

    outcome = RemoteWriter(Counting(None)).write(record, Sent(count=1, last_id="koda:5"))

    assert outcome.result == "error"
    assert outcome.problem is not None
    assert "not read" in outcome.problem.message


@pytest.mark.django_db(transaction=True)
def test_a_compaction_koda_makes_later_archives_what_fleet_holds(
    tmp_path: Path, live_server: LiveServer, token: str
) -> None:
    path = koda_build(tmp_path / "koda.db")
    state = tmp_path / "s.json"
    follower("koda", path, live_server.url, token, state).sync()
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE messages SET compacted_at = '2026-03-01 12:30:00' WHERE id IN (3, 4)")
    counting = transport(live_server.url, token)

    report = follower("koda", path, live_server.url, token, state, transport=counting).sync()

    assert counting.calls == [
        ("POST", "/sessions/s-1/messages/archive"),
        ("PUT", "/sessions/s-1"),
    ]
    assert (report.sessions, report.messages, report.dropped) == (1, 0, 0)
    archived = Message.objects.filter(session__key="s-1", compacted_at__isnull=False)
    assert sorted(m.message_id for m in archived) == ["koda:1", "koda:2", "koda:3", "koda:4"]
    assert {m.compacted_at for m in archived if m.message_id == "koda:4"} == {
        datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    }
    again = follower("koda", path, live_server.url, token, state, transport=counting).sync()
    assert (again.records, len(counting.calls)) == (0, 2)


def test_a_fleet_without_the_archive_endpoint_gets_the_rest_and_the_marks_are_counted(
    tmp_path: Path,
) -> None:
    path = koda_build(tmp_path / "koda.db")
    calls: list[tuple[str, str]] = []

    class OlderFleet:
        def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
            calls.append((method, path))
            if path.endswith("/messages/archive"):  # an older Fleet: the session's route
                message = "POST is not allowed here; allowed: DELETE, PUT, GET"
                return 405, {"error": {"code": "method_not_allowed", "message": message}}
            return (404, None) if method == "GET" else (200, {"appended": 1, "skipped": 0})

    lines: list[str] = []
    one = follower("koda", path, "http://f.test", "k", transport=OlderFleet(), log=lines.append)
    one.writer.log = lines.append  # as the command wires it

    report = one.sync()

    assert (report.errors, report.sessions, report.dropped) == (0, 2, 2)
    assert [line for line in lines if "cannot archive" in line] == [
        "this Fleet cannot archive messages: koda's archive marks are left out"
    ]
    assert calls.count(("POST", "/sessions/s-1/messages/archive")) == 1
