"""import_sessions zeroclaw: a folder of JSONL session files, or a sessions.db."""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.core.management.base import CommandError

from sessions.importers import zeroclaw
from sessions.importers.base import Problem, Since, SourceSession, Unchanged
from sessions.models import Message, Session
from tests.import_stores import messages_of, run_import, snapshot, zeroclaw_db, zeroclaw_folder

pytestmark = pytest.mark.django_db

MTIME = datetime(2026, 2, 10, 9, 30, 15, 250000, tzinfo=UTC)


def touch(folder: Path, moment: datetime = MTIME) -> None:
    for file in folder.glob("*.jsonl"):
        os.utime(file, (moment.timestamp(), moment.timestamp()))


# --- a folder of JSONL files ---------------------------------------------------------


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    folder = zeroclaw_folder(
        tmp_path / "sessions",
        {
            "telegram_123": [
                {"role": "user", "content": "remind me at 5"},
                "",
                {"role": "assistant", "content": "Sure, I'll remind you."},
            ],
            "workspace_notes": [
                {"role": "system", "content": "You are zeroclaw."},
                {"role": "user", "content": "what's new?"},
            ],
        },
    )
    touch(folder)
    return folder


def test_each_file_is_a_session_at_the_files_time(folder: Path) -> None:
    out, _ = run_import("zeroclaw", str(folder))

    assert sorted(Session.objects.values_list("key", flat=True)) == [
        "telegram_123",
        "workspace_notes",
    ]
    session = Session.objects.get(key="telegram_123")
    assert (session.agent, session.channel, session.status) == ("zeroclaw", "telegram", "active")
    assert session.created_at == session.last_active_at == MTIME
    messages = messages_of("telegram_123")
    assert [(m.seq, m.role, m.content) for m in messages] == [
        (1, "user", "remind me at 5"),
        (2, "assistant", "Sure, I'll remind you."),
    ]
    assert {m.created_at for m in messages} == {MTIME}
    assert Session.objects.get(key="workspace_notes").channel == ""
    assert "2 sessions (2 new, 0 updated, 0 unchanged) with 4 messages" in out


def test_unparsable_lines_are_reported_and_skipped(tmp_path: Path) -> None:
    folder = zeroclaw_folder(
        tmp_path / "sessions",
        {
            "discord_9": [
                {"role": "user", "content": "hi"},
                '{"role": "assistant", "content": "trunc',
                "[1, 2]",
                {"role": "wizard", "content": "abracadabra"},
                {"role": "assistant", "content": "hello!"},
            ]
        },
    )

    out, err = run_import("zeroclaw", str(folder), expect_errors=True)

    assert [m.content for m in messages_of("discord_9")] == ["hi", "hello!"]
    assert "error: discord_9.jsonl:2: not JSON" in err
    assert "error: discord_9.jsonl:3: not a message object with a role" in err
    assert "error: discord_9.jsonl:4: message.role: must be one of" in err
    assert "3 errors." in out


def test_native_tool_calls_and_results_are_unpacked(tmp_path: Path) -> None:
    calls = [
        {"id": "call_1", "type": "function", "function": {"name": "web_search", "arguments": "{}"}}
    ]
    folder = zeroclaw_folder(
        tmp_path / "sessions",
        {
            "slack_4": [
                {"role": "user", "content": "news?"},
                {
                    "role": "assistant",
                    "content": json.dumps({"content": None, "tool_calls": calls}),
                },
                {
                    "role": "tool",
                    "content": json.dumps({"tool_call_id": "call_1", "content": "[]"}),
                },
                {"role": "tool", "content": "plain result"},
                {"role": "assistant", "content": "{not json but braces}"},
            ]
        },
    )

    run_import("zeroclaw", str(folder))

    _, call, result, plain, braces = messages_of("slack_4")
    assert call.content is None
    assert call.tool_calls == [{"id": "call_1", "name": "web_search", "arguments": "{}"}]
    assert (result.tool_call_id, result.content) == ("call_1", "[]")
    assert (plain.tool_call_id, plain.content) == ("unknown", "plain result")
    assert braces.content == "{not json but braces}"
    assert Session.objects.get(key="slack_4").tool_call_count == 1


def test_a_second_import_of_the_folder_adds_nothing_and_changes_nothing(folder: Path) -> None:
    run_import("zeroclaw", str(folder))
    before = snapshot()

    out, _ = run_import("zeroclaw", str(folder))

    assert snapshot() == before
    assert "(0 new, 0 updated, 2 unchanged) with 0 messages" in out
    assert "4 skipped as already stored" in out


def test_lines_appended_since_are_imported_next_time(folder: Path) -> None:
    run_import("zeroclaw", str(folder))
    file = folder / "telegram_123.jsonl"
    with file.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"role": "user", "content": "thanks"}) + "\n")
    later = datetime(2026, 2, 11, 8, 0, tzinfo=UTC)
    os.utime(file, (later.timestamp(), later.timestamp()))

    out, _ = run_import("zeroclaw", str(folder))

    assert [m.content for m in messages_of("telegram_123")][-1] == "thanks"
    assert messages_of("telegram_123")[-1].seq == 3
    session = Session.objects.get(key="telegram_123")
    assert (session.created_at, session.last_active_at) == (MTIME, later)
    assert "(0 new, 1 updated, 1 unchanged) with 1 message " in out


def test_a_folder_without_session_files_is_refused(tmp_path: Path) -> None:
    zeroclaw_db(tmp_path / "sessions.db")

    with pytest.raises(CommandError, match=r"no zeroclaw session files.*sessions\.db"):
        run_import("zeroclaw", str(tmp_path))


# --- sessions.db ------------------------------------------------------------------------


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return zeroclaw_db(
        tmp_path / "sessions.db",
        metadata=[
            {
                "session_key": "discord_42_ab",
                "created_at": "2026-02-01T10:00:00+00:00",
                "last_activity": "2026-02-01T10:05:00.123456+00:00",
                "message_count": 3,
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
                "state": "idle",
            },
            {
                "session_key": "slack_failed",
                "created_at": "2026-02-04T08:00:00Z",
                "last_activity": "2026-02-04T08:02:00Z",
                "state": "error",
                "turn_id": "turn-12",
                "turn_started_at": "2026-02-04T08:01:30Z",
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
                "session_key": "telegram_7",
                "role": "user",
                "content": "yo",
                "created_at": "2026-02-02T10:00:01Z",
            },
            {
                "session_key": "discord_42_ab",
                "role": "assistant",
                "content": "hello",
                "created_at": "2026-02-01T10:00:02+00:00",
            },
            {
                "session_key": "discord_42_ab",
                "role": "user",
                "content": "and now?",
                "created_at": "2026-02-01T10:05:00+00:00",
            },
            {
                "session_key": "cli_orphan",
                "role": "user",
                "content": "a",
                "created_at": "2026-02-03T09:00:00Z",
            },
            {
                "session_key": "cli_orphan",
                "role": "assistant",
                "content": "b",
                "created_at": "2026-02-03T09:01:00Z",
            },
        ],
    )


def test_state_routing_context_and_names_carry_over(database: Path) -> None:
    run_import("zeroclaw", str(database))

    session = Session.objects.get(key="discord_42_ab")
    assert (session.name, session.agent, session.channel) == (
        "dana on discord",
        "clamps",
        "discord",
    )
    assert (session.channel_ref, session.room_id, session.sender_id) == (
        "discord.clamps",
        "1122334455",
        "42",
    )
    assert (session.state, session.turn_id) == ("running", "turn-7")
    assert session.turn_started_at == datetime(2026, 2, 1, 10, 4, 59, tzinfo=UTC)
    assert session.created_at == datetime(2026, 2, 1, 10, 0, tzinfo=UTC)
    assert session.last_active_at == datetime(2026, 2, 1, 10, 5, 0, 123456, tzinfo=UTC)
    messages = messages_of("discord_42_ab")
    assert [(m.seq, m.role, m.content) for m in messages] == [
        (1, "user", "hi"),
        (2, "assistant", "hello"),
        (3, "user", "and now?"),
    ]
    assert [m.message_id for m in messages] == ["zeroclaw:1", "zeroclaw:3", "zeroclaw:4"]
    assert messages[2].created_at == datetime(2026, 2, 1, 10, 5, tzinfo=UTC)
    idle = Session.objects.get(key="telegram_7")
    assert (idle.state, idle.agent, idle.channel, idle.channel_ref) == (
        "idle",
        "zeroclaw",
        "telegram",
        "",
    )


def test_an_error_state_keeps_the_turn_that_failed(database: Path) -> None:
    run_import("zeroclaw", str(database))

    session = Session.objects.get(key="slack_failed")
    assert (session.state, session.turn_id) == ("error", "turn-12")
    assert session.turn_started_at == datetime(2026, 2, 4, 8, 1, 30, tzinfo=UTC)


def test_a_key_with_messages_but_no_metadata_spans_its_messages(database: Path) -> None:
    run_import("zeroclaw", str(database))

    session = Session.objects.get(key="cli_orphan")
    assert session.created_at == datetime(2026, 2, 3, 9, 0, tzinfo=UTC)
    assert session.last_active_at == datetime(2026, 2, 3, 9, 1, tzinfo=UTC)
    assert (session.channel, session.message_count, session.turns) == ("cli", 2, 1)


def test_corrupt_message_rows_are_reported_with_their_id_and_skipped(tmp_path: Path) -> None:
    store = zeroclaw_db(
        tmp_path / "sessions.db",
        messages=[
            {
                "session_key": "k",
                "role": "user",
                "content": "one",
                "created_at": "2026-02-01T10:00:00Z",
            },
            {
                "session_key": "k",
                "role": "robot",
                "content": "two",
                "created_at": "2026-02-01T10:00:01Z",
            },
            {"session_key": "k", "role": "user", "content": "three", "created_at": "soon"},
            {
                "session_key": "k",
                "role": "assistant",
                "content": "four",
                "created_at": "2026-02-01T10:00:03Z",
            },
        ],
    )

    out, err = run_import("zeroclaw", str(store), expect_errors=True)

    assert [m.content for m in messages_of("k")] == ["one", "four"]
    assert "error: sessions.db: sessions id=2: message.role: must be one of" in err
    assert "error: sessions.db: sessions id=3: created_at is not a timestamp: 'soon'" in err
    assert "2 errors." in out


def test_a_second_import_of_the_database_adds_nothing_and_changes_nothing(database: Path) -> None:
    run_import("zeroclaw", str(database))
    before = snapshot()

    out, _ = run_import("zeroclaw", str(database))

    assert snapshot() == before
    assert "(0 new, 0 updated, 4 unchanged) with 0 messages" in out


def test_a_re_import_leaves_the_status_fleet_gave_the_session(database: Path) -> None:
    run_import("zeroclaw", str(database))
    Session.objects.filter(key="telegram_7").update(status="unknown")

    run_import("zeroclaw", str(database))

    assert Session.objects.get(key="telegram_7").status == "unknown"


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"
    path.write_text("not a database, just text\n" * 100)

    with pytest.raises(CommandError, match="is not a SQLite database"):
        run_import("zeroclaw", str(path))
    assert not Message.objects.exists()


def test_a_database_of_another_agent_is_refused(tmp_path: Path) -> None:
    from tests.import_stores import zeph_store

    path = zeph_store(tmp_path / "zeph.db", [])

    with pytest.raises(CommandError, match="has no table 'sessions': it is not a zeroclaw store"):
        run_import("zeroclaw", str(path))


def test_an_unknown_state_imports_the_session_with_a_warning(tmp_path: Path) -> None:
    store = zeroclaw_db(
        tmp_path / "sessions.db",
        metadata=[
            {
                "session_key": "telegram_9",
                "created_at": "2026-02-02T10:00:00Z",
                "last_activity": "2026-02-02T11:00:00Z",
                "state": "Paused",
                "turn_id": "turn-3",
                "message_count": 1,
            }
        ],
        messages=[
            {
                "session_key": "telegram_9",
                "role": "user",
                "content": "yo",
                "created_at": "2026-02-02T10:00:01Z",
            }
        ],
    )

    out, err = run_import("zeroclaw", str(store))

    session = Session.objects.get(key="telegram_9")
    assert (session.state, session.turn_id) == ("idle", "")
    assert session.metadata == {"source_state": "Paused"}
    assert [m.content for m in messages_of("telegram_9")] == ["yo"]
    assert "warning: sessions.db: session_metadata session_key='telegram_9': state" in err
    assert out.strip().endswith("0 errors, 1 warning.")


def test_a_message_count_that_disagrees_with_the_imported_messages_is_a_warning(
    tmp_path: Path,
) -> None:
    def meta(key: str, count: int) -> dict[str, object]:
        return {
            "session_key": key,
            "created_at": "2026-02-02T10:00:00Z",
            "last_activity": "2026-02-02T11:00:00Z",
            "message_count": count,
        }

    def line(key: str, content: str) -> dict[str, object]:
        return {
            "session_key": key,
            "role": "user",
            "content": content,
            "created_at": "2026-02-02T10:00:01Z",
        }

    store = zeroclaw_db(
        tmp_path / "sessions.db",
        metadata=[meta("cli_ok", 1), meta("cli_short", 3)],
        messages=[line("cli_ok", "a"), line("cli_short", "b")],
    )

    out, err = run_import("zeroclaw", str(store))

    assert [m.content for m in messages_of("cli_short")] == ["b"]
    assert (
        "warning: sessions.db: session_metadata session_key='cli_short': message_count is 3, "
        "1 message imported" in err
    )
    assert "cli_ok" not in err
    assert out.strip().endswith("0 errors, 1 warning.")


# --- reading a sessions.db since a cursor (fleet-follow) ------------------------------


@pytest.mark.parametrize(
    "change",
    [
        "INSERT INTO sessions (session_key, role, content, created_at) "
        "VALUES ('telegram_7', 'assistant', 'later', '2026-02-02T10:00:02Z')",
        "UPDATE session_metadata SET state = 'running' WHERE session_key = 'telegram_7'",
        "DELETE FROM sessions WHERE session_key = 'telegram_7'",
    ],
)
def test_a_read_since_stamps_reads_only_the_changed_sessions_of_a_database(
    database: Path, change: str
) -> None:
    first = {r.key: r for r in zeroclaw.read_since(database, {}) if isinstance(r, SourceSession)}
    assert {key: replace(r, stamp="") for key, r in first.items()} == {
        r.key: r for r in zeroclaw.read(database) if isinstance(r, SourceSession)
    }
    since = {key: Since(r.stamp) for key, r in first.items()}
    with sqlite3.connect(database) as conn:
        conn.execute(change)

    records = {r.key: r for r in zeroclaw.read_since(database, since) if not isinstance(r, Problem)}

    assert {key for key, r in records.items() if isinstance(r, Unchanged)} == set(first) - {
        "telegram_7"
    }
    whole = next(r for r in zeroclaw.read(database) if getattr(r, "key", "") == "telegram_7")
    assert replace(records["telegram_7"], stamp="") == whole
