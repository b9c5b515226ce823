"""export_sessions, and importing its JSONL back (import_sessions fleet): a round trip."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from sessions import services
from sessions.export import export_sessions
from sessions.models import DailyUsage, LatencyUsage, Message, Session, Tombstone, Turn
from tests.import_stores import messages_of, run_import, snapshot

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def export(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("export_sessions", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def sessions_as_rows() -> dict[str, dict[str, Any]]:
    rows = Session.objects.values()
    return {row["key"]: {k: v for k, v in row.items() if k != "id"} for row in rows}


def messages_as_rows() -> dict[tuple[str, int], dict[str, Any]]:
    rows = Message.objects.values(
        "session__key", *[f.attname for f in Message._meta.concrete_fields]
    )
    return {
        (row["session__key"], row["seq"]): {
            k: v for k, v in row.items() if k not in ("id", "session_id", "session__key")
        }
        for row in rows
    }


def rollup_as_rows() -> list[dict[str, Any]]:
    rows = DailyUsage.objects.order_by("day", "agent", "model", "channel").values()
    return [{k: v for k, v in row.items() if k != "id"} for row in rows]


def empty_the_database() -> None:
    Message.objects.all().delete()
    Session.objects.all().delete()
    DailyUsage.objects.all().delete()
    Tombstone.objects.all().delete()


def usage(prompt: int, completion: int, **extra: Any) -> dict[str, Any]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, **extra}


# --- the round trip ------------------------------------------------------------------


def test_importing_an_export_into_an_empty_database_gives_the_same_fleet(tmp_path: Path) -> None:
    call_command("demo_fleet", sessions=20, messages_per_session=8, seed=1, stdout=StringIO())
    sessions, messages, rollup = sessions_as_rows(), messages_as_rows(), rollup_as_rows()
    sources = {row["cost_source"] for row in messages.values()}
    assert {"reported", "computed", "unpriced"} <= sources
    assert any(row["compacted_at"] for row in messages.values())
    assert any(row["is_summary"] for row in messages.values())
    path = tmp_path / "fleet.jsonl"
    out, _ = export(str(path))
    assert out.strip() == f"Exported 20 sessions with {len(messages)} messages to {path}."
    empty_the_database()

    imported, _ = run_import("fleet", str(path))

    assert sessions_as_rows() == sessions
    assert messages_as_rows() == messages
    # The import rebuilds the daily rollup from what it stores: the same counts.
    assert rollup_as_rows() == rollup
    assert f"20 sessions (20 new, 0 updated, 0 unchanged) with {len(messages)} messages" in imported


def test_totals_beyond_the_stored_messages_and_seq_gaps_survive(tmp_path: Path) -> None:
    services.messages_append(
        key="k",
        session={"agent": "koda", "model": "local/unknown-model", "created_at": T0},
        messages=[
            {"role": "user", "content": "one", "created_at": T0},
            {"role": "assistant", "content": "two", "usage": usage(100, 10, cost_usd="0.5")},
            {"role": "assistant", "content": "three", "usage": usage(50, 5)},
            {"role": "user", "content": "four"},
        ],
        now=T0 + timedelta(minutes=1),
    )
    services.session_compact(key="k", summary="earlier: 1-3", keep=1, now=T0 + timedelta(minutes=2))
    # Purge drops archived messages; the spending history stays on the session.
    Message.objects.filter(session__key="k", seq__lte=2).delete()
    Session.objects.filter(key="k").update(message_count=3)
    session, messages = sessions_as_rows(), messages_as_rows()
    assert session["k"]["cost_usd"] == Decimal("0.5")
    assert sorted(seq for _, seq in messages) == [3, 4, 5]
    path = tmp_path / "fleet.jsonl"
    export(str(path))
    empty_the_database()

    run_import("fleet", str(path))

    assert sessions_as_rows() == session
    assert messages_as_rows() == messages
    assert [m.seq for m in messages_of("k")] == [3, 4, 5]


def test_a_messages_metadata_survives_the_round_trip(tmp_path: Path) -> None:
    metadata = {"raw_content_blocks": [{"type": "image", "source": {"media_type": "image/png"}}]}
    services.messages_append(
        key="k",
        messages=[
            {"role": "user", "content": "look", "metadata": metadata},
            {"role": "assistant", "content": "a cat"},
        ],
        now=T0,
    )
    messages = messages_as_rows()
    path = tmp_path / "fleet.jsonl"
    export(str(path))
    assert json.loads(path.read_text().splitlines()[0])["messages"][0]["metadata"] == metadata
    empty_the_database()

    run_import("fleet", str(path))

    assert messages_as_rows() == messages
    assert [m.metadata for m in messages_of("k")] == [metadata, {}]


def test_durations_survive_the_round_trip_and_rebuild_the_latency_rollup(
    tmp_path: Path,
) -> None:
    from sessions.models import FleetLatencyUsage, LatencyUsage

    services.messages_append(
        key="k",
        session={"agent": "koda"},
        messages=[
            {"role": "user", "content": "go"},
            {
                "role": "assistant",
                "content": "ok",
                "duration_ms": 1500,
                "time_to_first_token_ms": 80,
            },
            {"role": "tool", "name": "grep", "tool_call_id": "c1", "content": "", "duration_ms": 9},
        ],
        now=T0,
    )
    latency = sorted(
        LatencyUsage.objects.values_list(
            "day", "agent", "model", "kind", "name", "bucket", "count", "sum_ms"
        )
    )
    fleet = sorted(
        FleetLatencyUsage.objects.values_list("day", "kind", "model", "name", "count", "sum_ms")
    )
    path = tmp_path / "fleet.jsonl"
    export(str(path))
    empty_the_database()
    LatencyUsage.objects.all().delete()
    FleetLatencyUsage.objects.all().delete()

    run_import("fleet", str(path))

    assert (
        sorted(
            FleetLatencyUsage.objects.values_list("day", "kind", "model", "name", "count", "sum_ms")
        )
        == fleet
    )
    assert [(m.duration_ms, m.time_to_first_token_ms) for m in messages_of("k")] == [
        (None, None),
        (1500, 80),
        (9, None),
    ]
    assert (
        sorted(
            LatencyUsage.objects.values_list(
                "day", "agent", "model", "kind", "name", "bucket", "count", "sum_ms"
            )
        )
        == latency
    )


def turn_rows() -> list[tuple[Any, ...]]:
    return sorted(
        Turn.objects.values_list(
            "session__key", "turn_id", "started_at", "ended_at", "duration_ms", "outcome"
        )
    )


def turn_latency_rows() -> list[tuple[Any, ...]]:
    return sorted(
        LatencyUsage.objects.filter(kind="turn").values_list(
            "day", "agent", "model", "bucket", "count", "sum_ms"
        )
    )


def test_finished_turns_survive_the_round_trip_once_and_rebuild_the_turn_latency(
    tmp_path: Path,
) -> None:
    fields = {"agent": "koda", "model": "o3"}
    services.session_upsert(key="k", fields={**fields, "state": "running", "turn_id": "t1"}, now=T0)
    services.session_upsert(key="k", fields={"state": "error"}, now=T0 + timedelta(minutes=5))
    services.messages_append(
        key="k",
        session={"state": "running", "turn_id": "t2"},
        messages=[{"role": "user", "content": "again"}],
        now=T0 + timedelta(minutes=6),
    )
    services.session_upsert(key="k", fields={"state": "idle"}, now=T0 + timedelta(minutes=9))
    services.session_upsert(key="quiet", fields=fields, now=T0)
    turns, latency = turn_rows(), turn_latency_rows()
    assert [turn[1] for turn in turns] == ["t1", "t2"]
    path = tmp_path / "fleet.jsonl"
    export(str(path))
    empty_the_database()
    LatencyUsage.objects.all().delete()

    run_import("fleet", str(path))
    run_import("fleet", str(path))

    assert turn_rows() == turns
    assert turn_latency_rows() == latency
    line = json.loads(path.read_text().splitlines()[0])
    assert line["finished_turns"][0] == {
        "turn_id": "t1",
        "started_at": "2026-03-01T12:00:00Z",
        "ended_at": "2026-03-01T12:05:00Z",
        "duration_ms": 300_000,
        "outcome": "error",
    }


def test_a_second_import_of_an_export_adds_nothing_and_changes_nothing(tmp_path: Path) -> None:
    call_command("demo_fleet", sessions=12, messages_per_session=6, seed=3, stdout=StringIO())
    path = tmp_path / "fleet.jsonl"
    export(str(path))
    empty_the_database()
    run_import("fleet", str(path))
    before = snapshot()

    out, _ = run_import("fleet", str(path))

    assert snapshot() == before
    assert "(0 new, 0 updated, 12 unchanged) with 0 messages" in out


# --- the file ------------------------------------------------------------------------------


@pytest.fixture
def two_agents() -> None:
    services.messages_append(
        key="old",
        session={"agent": "koda", "created_at": T0, "metadata": {"host": "devbox"}},
        messages=[
            {"role": "user", "content": "hi", "message_id": "u1"},
            {"role": "assistant", "content": "hey", "usage": usage(10, 2, cost_usd=0.25)},
        ],
        now=T0,
    )
    services.messages_append(
        key="new",
        session={"agent": "zeroclaw", "channel": "telegram", "created_at": T0},
        messages=[{"role": "user", "content": "yo"}],
        now=T0 + timedelta(days=3),
    )


def test_each_line_is_a_session_with_its_messages(two_agents: None) -> None:
    out, err = export("-")

    lines = out.splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert (first["key"], first["agent"], first["metadata"]) == ("old", "koda", {"host": "devbox"})
    assert (first["turns"], first["api_calls"], first["cost_usd"]) == (1, 1, "0.250000000")
    assert first["created_at"] == "2026-03-01T12:00:00Z"
    user, reply = first["messages"]
    assert (user["seq"], user["message_id"], user["usage"]) == (1, "u1", None)
    assert reply["usage"] == {
        "prompt_tokens": 10,
        "completion_tokens": 2,
        "reasoning_tokens": 0,
        "cache_read_tokens": 0,
        "cache_creation_tokens": 0,
        "total_tokens": 12,
        "cost_usd": "0.250000000",
        "cost_source": "reported",
    }
    assert (reply["is_summary"], reply["compacted_at"]) == (False, None)
    assert err.strip() == "Exported 2 sessions with 3 messages."


def test_since_keeps_the_sessions_active_since_then(two_agents: None) -> None:
    by_day, _ = export("-", "--since", "2026-03-02")
    by_time, _ = export("-", "--since", "2026-03-04T12:00:01Z")

    assert [json.loads(line)["key"] for line in by_day.splitlines()] == ["new"]
    assert by_time == ""


def test_agent_keeps_that_agents_sessions(two_agents: None) -> None:
    out, _ = export("-", "--agent", "koda")

    assert [json.loads(line)["key"] for line in out.splitlines()] == ["old"]


def test_a_bad_since_is_refused() -> None:
    with pytest.raises(CommandError, match="--since: must be a date"):
        export("-", "--since", "last tuesday")


def test_messages_are_read_in_chunks_in_order(two_agents: None) -> None:
    services.messages_append(
        key="old", messages=[{"role": "user", "content": f"m{n}"} for n in range(7)], now=T0
    )
    out = StringIO()

    summary = export_sessions(out, agent="koda", chunk=2)

    record = json.loads(out.getvalue())
    assert [m["seq"] for m in record["messages"]] == list(range(1, 10))
    assert (summary.sessions, summary.messages) == (1, 9)


def test_a_file_export_is_written_whole_or_not_at_all(two_agents: None, tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text("previous export\n")

    export(str(path))

    assert len(path.read_text().splitlines()) == 2
    assert not (tmp_path / "out.jsonl.partial").exists()


# --- importing exports that went wrong ----------------------------------------------------


def test_corrupt_lines_and_messages_of_an_export_are_reported(
    two_agents: None, tmp_path: Path
) -> None:
    out, _ = export("-")
    first, second = out.splitlines()
    record = json.loads(second)
    record["messages"].append({"seq": 2, "role": "alien", "content": "?"})
    path = tmp_path / "broken.jsonl"
    path.write_text("\n".join([first, "{cut off", json.dumps(record), '"just a string"']) + "\n")
    empty_the_database()

    summary, err = run_import("fleet", str(path), expect_errors=True)

    assert sorted(Session.objects.values_list("key", flat=True)) == ["new", "old"]
    assert [m.content for m in messages_of("new")] == ["yo"]
    assert "error: broken.jsonl:2: not JSON" in err
    assert "error: broken.jsonl:3: messages[1].role: must be one of" in err
    assert "error: broken.jsonl:4: not a session object with a key" in err
    assert "3 errors." in summary


def test_a_bad_finished_turn_is_reported_and_skipped(tmp_path: Path) -> None:
    services.session_upsert(key="k", fields={"state": "running", "turn_id": "t1"}, now=T0)
    services.session_upsert(key="k", fields={"state": "idle"}, now=T0 + timedelta(minutes=1))
    record = json.loads(export("-")[0])
    good = record["finished_turns"][0]
    record["finished_turns"] = [{**good, "duration_ms": -5}, {**good, "outcome": "running"}, good]
    path = tmp_path / "turns.jsonl"
    path.write_text(json.dumps(record) + "\n")
    empty_the_database()

    _, err = run_import("fleet", str(path), expect_errors=True)

    assert "turns.jsonl:1: finished_turns[0].duration_ms: must be a non-negative integer" in err
    assert "turns.jsonl:1: finished_turns[1].outcome: must be one of idle, error, unknown" in err
    assert list(Turn.objects.values_list("turn_id", "duration_ms")) == [("t1", 60_000)]


def test_a_file_that_is_not_an_export_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.md"
    path.write_text("# Notes\n\nnot JSON\n")

    with pytest.raises(CommandError, match="is not a Fleet export: line 1 is not JSON"):
        run_import("fleet", str(path))


def test_an_export_can_be_piped_into_an_import(
    two_agents: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, _ = export("-")
    before = sessions_as_rows()
    empty_the_database()
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(out.encode("utf-8"))))

    summary, _ = run_import("fleet", "-")

    assert sessions_as_rows() == before
    assert "from fleet store -;" in summary
