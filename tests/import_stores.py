"""Builders of the agents' stores, for the importer tests, and a database snapshot.

Schemas are DESIGN's "Stores we import". Where DESIGN leaves a detail open,
the builders store what the agents plausibly store: SQLite text timestamps
(koda's ``datetime('now')`` style, zeroclaw and appam RFC 3339), koda tool
calls as Anthropic-style JSON text, appam messages as OpenAI-style chat
messages with ids and timestamps.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from contextlib import closing
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from sessions.models import DailyUsage, Message, Session


def _insert(conn: sqlite3.Connection, table: str, rows: Iterable[Mapping[str, Any]]) -> None:
    for row in rows:
        names = ", ".join(row)
        marks = ", ".join("?" * len(row))
        conn.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", list(row.values()))  # noqa: S608


def sqlite_store(
    path: Path, schema: str, tables: Mapping[str, Iterable[Mapping[str, Any]]]
) -> Path:
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(schema)
        for table, rows in tables.items():
            _insert(conn, table, rows)
        conn.commit()
    return path


ZEPH_SCHEMA = """
CREATE TABLE agent_sessions (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL DEFAULT 'interactive',
    status TEXT NOT NULL DEFAULT 'active',
    channel TEXT,
    model TEXT,
    created_at TEXT NOT NULL,
    last_active_at TEXT NOT NULL,
    turns INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens INTEGER NOT NULL DEFAULT 0,
    cost_cents REAL NOT NULL DEFAULT 0,
    goal_text TEXT
);
"""

ZEROCLAW_SCHEMA = """
CREATE TABLE sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_key TEXT NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX idx_sessions_key_id ON sessions(session_key, id);
CREATE TABLE session_metadata (
    session_key TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    last_activity TEXT NOT NULL,
    message_count INTEGER NOT NULL DEFAULT 0,
    name TEXT,
    state TEXT NOT NULL DEFAULT 'idle',
    turn_id TEXT,
    turn_started_at TEXT,
    agent_alias TEXT,
    channel_id TEXT,
    room_id TEXT,
    sender_id TEXT
);
"""

APPAM_SCHEMA = """
CREATE TABLE session_history (
    id TEXT PRIMARY KEY,
    agent_name TEXT NOT NULL,
    model TEXT NOT NULL,
    messages TEXT NOT NULL,
    metadata TEXT,
    started_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    ended_at TEXT,
    turn_count INTEGER DEFAULT 0,
    tool_call_count INTEGER DEFAULT 0,
    usage TEXT
);
"""

KODA_SCHEMA = """
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL DEFAULT (datetime('now')),
    agent_name TEXT,
    project_root TEXT,
    last_accessed_at TEXT
);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL,
    role TEXT NOT NULL,
    content TEXT,
    tool_calls TEXT,
    tool_call_id TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    cache_read_tokens INTEGER,
    cache_creation_tokens INTEGER,
    thinking_tokens INTEGER,
    agent_name TEXT,
    compacted_at TEXT,
    created_at TEXT NOT NULL DEFAULT (datetime('now'))
);
CREATE TABLE session_metadata (
    session_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT,
    PRIMARY KEY (session_id, key)
);
"""


def zeph_store(path: Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    return sqlite_store(path, ZEPH_SCHEMA, {"agent_sessions": rows})


def zeroclaw_db(
    path: Path,
    *,
    metadata: Iterable[Mapping[str, Any]] = (),
    messages: Iterable[Mapping[str, Any]] = (),
) -> Path:
    return sqlite_store(path, ZEROCLAW_SCHEMA, {"session_metadata": metadata, "sessions": messages})


def zeroclaw_folder(folder: Path, files: Mapping[str, list[Any]]) -> Path:
    """``files``: key → lines; a dict line is written as JSON, a str line as is."""
    folder.mkdir(parents=True, exist_ok=True)
    for key, lines in files.items():
        text = "".join(
            (json.dumps(line) if isinstance(line, dict) else line) + "\n" for line in lines
        )
        (folder / f"{key}.jsonl").write_text(text, encoding="utf-8")
    return folder


def appam_store(path: Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    encoded = []
    for row in rows:
        row = dict(row)
        for name in ("messages", "usage"):
            if not isinstance(row.get(name), str | None):
                row[name] = json.dumps(row[name])
        encoded.append(row)
    return sqlite_store(path, APPAM_SCHEMA, {"session_history": encoded})


def koda_store(
    path: Path,
    *,
    sessions: Iterable[Mapping[str, Any]] = (),
    messages: Iterable[Mapping[str, Any]] = (),
    metadata: Iterable[Mapping[str, Any]] = (),
) -> Path:
    encoded = []
    for row in messages:
        row = dict(row)
        if not isinstance(row.get("tool_calls"), str | None):
            row["tool_calls"] = json.dumps(row["tool_calls"])
        encoded.append(row)
    return sqlite_store(
        path,
        KODA_SCHEMA,
        {"sessions": sessions, "messages": encoded, "session_metadata": metadata},
    )


# --- running the command and looking at the result --------------------------------


def run_import(*args: str, expect_errors: bool = False) -> tuple[str, str]:
    """``import_sessions`` with ``args``; returns (stdout, stderr)."""
    out, err = StringIO(), StringIO()
    if expect_errors:
        with pytest.raises(CommandError, match="could not be imported"):
            call_command("import_sessions", *args, stdout=out, stderr=err)
    else:
        call_command("import_sessions", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def snapshot() -> dict[str, list[dict[str, Any]]]:
    """Every row of sessions, messages and daily rollups (ids included)."""
    return {
        "sessions": list(Session.objects.order_by("id").values()),
        "messages": list(Message.objects.order_by("id").values()),
        "rollups": list(DailyUsage.objects.order_by("id").values()),
    }


def messages_of(key: str) -> list[Message]:
    return list(Message.objects.filter(session__key=key).order_by("seq"))
