"""import_sessions: what every format shares (dry runs, bad paths, errors, summary)."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from sessions import services
from sessions.importers import import_store
from sessions.models import Message, Session
from tests.import_stores import (
    appam_store,
    koda_store,
    run_import,
    snapshot,
    zeph_store,
    zeroclaw_folder,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def koda(tmp_path: Path) -> Path:
    return koda_store(
        tmp_path / "koda.db",
        sessions=[
            {"id": "a", "created_at": "2026-03-01 10:00:00"},
            {"id": "b", "created_at": "2026-03-01 11:00:00"},
        ],
        messages=[
            {
                "session_id": "a",
                "role": "user",
                "content": "one",
                "created_at": "2026-03-01 10:00:01",
            },
            {
                "session_id": "a",
                "role": "assistant",
                "content": "two",
                "created_at": "2026-03-01 10:00:02",
            },
            {
                "session_id": "b",
                "role": "user",
                "content": "three",
                "created_at": "2026-03-01 11:00:01",
            },
        ],
    )


def test_a_dry_run_writes_nothing_and_reports_what_an_import_would_do(koda: Path) -> None:
    empty = snapshot()

    dry, _ = run_import("koda", str(koda), "--dry-run")

    assert snapshot() == empty
    assert dry.startswith("Would import 2 sessions (2 new, 0 updated, 0 unchanged) with 3 messages")
    real, _ = run_import("koda", str(koda))
    assert real == dry.replace("Would import", "Imported")


def test_a_dry_run_after_an_import_counts_what_is_stored(koda: Path) -> None:
    run_import("koda", str(koda))
    before = snapshot()

    out, _ = run_import("koda", str(koda), "-n")

    assert snapshot() == before
    assert "(0 new, 0 updated, 2 unchanged) with 0 messages" in out
    assert "3 skipped as already stored, 0 errors." in out


def test_a_session_that_is_refused_writes_none_of_its_messages(tmp_path: Path) -> None:
    store = koda_store(
        tmp_path / "koda.db",
        sessions=[
            {"id": "ok", "created_at": "2026-03-01 10:00:00"},
            {"id": "too-deep", "created_at": "2026-03-01 10:00:00", "project_root": "/x" * 600},
        ],
        messages=[
            {
                "session_id": "ok",
                "role": "user",
                "content": "kept",
                "created_at": "2026-03-01 10:00:01",
            },
            {
                "session_id": "too-deep",
                "role": "user",
                "content": "m1",
                "created_at": "2026-03-01 10:00:01",
            },
            {
                "session_id": "too-deep",
                "role": "user",
                "content": "m2",
                "created_at": "2026-03-01 10:00:02",
            },
        ],
    )

    out, err = run_import("koda", str(store), expect_errors=True)

    assert list(Session.objects.values_list("key", flat=True)) == ["ok"]
    assert list(Message.objects.values_list("content", flat=True)) == ["kept"]
    assert (
        "error: koda.db: sessions id='too-deep': session.project_root: must be at most 1024" in err
    )
    assert "Imported 1 session (1 new, 0 updated, 0 unchanged) with 1 message " in out


@override_settings(FLEET_API_MAX_BATCH=2)
def test_a_session_longer_than_one_append_batch_is_imported_whole(tmp_path: Path) -> None:
    store = koda_store(
        tmp_path / "koda.db",
        sessions=[{"id": "long", "created_at": "2026-03-01 10:00:00"}],
        messages=[
            {
                "session_id": "long",
                "role": "user",
                "content": f"m{n}",
                "created_at": f"2026-03-01 10:00:0{n}",
            }
            for n in range(1, 6)
        ],
    )

    out, _ = run_import("koda", str(store))

    contents = Message.objects.order_by("seq").values_list("seq", "content")
    assert list(contents) == [(n, f"m{n}") for n in range(1, 6)]
    assert Session.objects.get(key="long").message_count == 5
    assert "with 5 messages" in out


def test_a_deleted_session_is_reported_not_recreated(koda: Path) -> None:
    services.session_upsert(key="a", fields={"agent": "koda"})
    services.session_delete(key="a")

    out, err = run_import("koda", str(koda), expect_errors=True)

    assert list(Session.objects.values_list("key", flat=True)) == ["b"]
    assert "error: koda.db: sessions id='a': key: session 'a' was deleted" in err
    assert "1 error." in out


def test_errors_make_the_exit_status_1_after_the_summary(tmp_path: Path) -> None:
    store = zeph_store(
        tmp_path / "zeph.db",
        [{"id": "x", "created_at": "never", "last_active_at": "2026-03-01T10:00:00"}],
    )
    out = StringIO()

    with pytest.raises(CommandError) as raised:
        call_command("import_sessions", "zeph", str(store), stdout=out, stderr=StringIO())

    assert raised.value.returncode == 1
    assert "0 sessions" in out.getvalue()


def test_a_missing_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="does not exist"):
        run_import("koda", str(tmp_path / "nope.db"))


def test_a_store_of_another_format_is_refused_by_name(koda: Path) -> None:
    with pytest.raises(CommandError, match="has no table 'agent_sessions': it is not a zeph store"):
        run_import("zeph", str(koda))
    with pytest.raises(CommandError, match="has no table 'session_history': it is not an appam"):
        run_import("appam", str(koda))


def test_a_table_without_its_columns_is_refused(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "odd.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE agent_sessions (id TEXT, created_at TEXT)")

    with pytest.raises(CommandError, match=r"lacks the column\(s\) last_active_at"):
        run_import("zeph", str(path))


def test_a_text_file_is_not_a_sqlite_store(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello\n" * 400)

    with pytest.raises(CommandError, match="is not a SQLite database"):
        run_import("koda", str(path))


def test_an_unknown_format_is_refused(koda: Path) -> None:
    with pytest.raises(CommandError, match="invalid choice"):
        run_import("claude-code", str(koda))


def test_an_empty_agent_name_is_refused(koda: Path) -> None:
    with pytest.raises(CommandError, match="--agent must not be empty"):
        run_import("koda", str(koda), "--agent", "  ")
    assert not Session.objects.exists()


def test_json_prints_the_report(koda: Path) -> None:
    out, _ = run_import("koda", str(koda), "--json")

    report = json.loads(out)
    assert report == {
        "format": "koda",
        "path": str(koda),
        "dry_run": False,
        "sessions": 2,
        "created": 2,
        "updated": 0,
        "unchanged": 0,
        "messages": 3,
        "skipped": 0,
        "errors": [],
        "warnings": [],
    }


def test_verbosity_2_lists_each_session(koda: Path) -> None:
    out, _ = run_import("koda", str(koda), "--verbosity", "2")

    assert "  created a: 2 messages, 0 already stored" in out
    assert "  created b: 1 messages, 0 already stored" in out


def test_the_service_reports_problems_as_they_come(koda: Path) -> None:
    seen: list[str] = []

    report = import_store("koda", koda, on_session=lambda outcome: seen.append(outcome.key))

    assert seen == ["a", "b"]
    assert (report.created, report.messages, report.errors) == (2, 3, [])


def store_of(fmt: str, tmp_path: Path) -> Path:
    """A small store of each format: one session with two messages (zeph: totals only)."""
    if fmt == "zeph":
        return zeph_store(
            tmp_path / "zeph.db",
            [
                {
                    "id": "z",
                    "created_at": "2026-03-01T10:00:00",
                    "last_active_at": "2026-03-01T10:05:00",
                    "turns": 2,
                    "cost_cents": 1.5,
                }
            ],
        )
    if fmt == "zeroclaw":
        return zeroclaw_folder(
            tmp_path / "zc",
            {
                "telegram_1": [
                    {"role": "user", "content": "a"},
                    {"role": "assistant", "content": "b"},
                ]
            },
        )
    if fmt == "appam":
        messages = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
        return appam_store(
            tmp_path / "appam.db",
            [
                {
                    "id": "run",
                    "agent_name": "w",
                    "model": "o3",
                    "messages": messages,
                    "started_at": "2026-03-01T10:00:00Z",
                    "updated_at": "2026-03-01T10:05:00Z",
                    "usage": {
                        "total_input_tokens": 10,
                        "total_output_tokens": 2,
                        "request_count": 1,
                    },
                }
            ],
        )
    if fmt == "koda":
        return koda_store(
            tmp_path / "koda.db",
            sessions=[{"id": "s", "created_at": "2026-03-01 10:00:00"}],
            messages=[
                {"session_id": "s", "role": "user", "content": "a"},
                {"session_id": "s", "role": "assistant", "content": "b", "prompt_tokens": 3},
            ],
        )
    path = tmp_path / "fleet.jsonl"
    record = {
        "key": "f",
        "agent": "x",
        "created_at": "2026-03-01T10:00:00Z",
        "last_active_at": "2026-03-01T10:05:00Z",
        "turns": 1,
        "messages": [
            {"seq": 1, "role": "user", "content": "a", "created_at": "2026-03-01T10:00:00Z"},
            {"seq": 2, "role": "assistant", "content": "b", "created_at": "2026-03-01T10:05:00Z"},
        ],
    }
    path.write_text(json.dumps(record) + "\n")
    return path


@pytest.mark.parametrize("fmt", ["zeph", "zeroclaw", "appam", "koda", "fleet"])
def test_every_format_dry_runs_without_writing(fmt: str, tmp_path: Path) -> None:
    store = store_of(fmt, tmp_path)
    empty = snapshot()

    dry, _ = run_import(fmt, str(store), "--dry-run")

    assert snapshot() == empty
    messages = 0 if fmt == "zeph" else 2
    assert dry.startswith(
        f"Would import 1 session (1 new, 0 updated, 0 unchanged) with {messages} messages"
    )
    real, _ = run_import(fmt, str(store))
    assert real == dry.replace("Would import", "Imported")
    assert Session.objects.count() == 1


@pytest.mark.parametrize("fmt", ["zeph", "zeroclaw", "appam", "koda", "fleet"])
def test_every_format_reimports_without_change_and_dry_runs_the_same_counts(
    fmt: str, tmp_path: Path
) -> None:
    store = store_of(fmt, tmp_path)
    run_import(fmt, str(store))
    before = snapshot()

    dry, _ = run_import(fmt, str(store), "--dry-run")
    real, _ = run_import(fmt, str(store))

    assert snapshot() == before
    assert real.startswith("Imported 1 session (0 new, 0 updated, 1 unchanged) with 0 messages")
    assert dry == real.replace("Imported", "Would import")
