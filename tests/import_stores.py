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
from tests.store_schemas import APPAM_SCHEMA, KODA_SCHEMA, ZEPH_SCHEMA, ZEROCLAW_SCHEMA


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
