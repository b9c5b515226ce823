"""import_sessions koda: sessions, messages (Anthropic-style usage, archives) and metadata."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from fleet import transcript
from sessions import selectors
from sessions.importers import koda
from sessions.importers.base import Problem, SourceSession
from sessions.models import Session
from tests.import_stores import koda_store, messages_of, run_import, snapshot

pytestmark = pytest.mark.django_db

CALL = {"id": "toolu_01A", "name": "read_file", "input": {"path": "src/app.py"}}


def message(**values: Any) -> dict[str, Any]:
    return {"session_id": "s-1", "created_at": "2026-03-01 12:00:00", **values}


def build(path: Path, *, extra: Sequence[dict[str, Any]] = ()) -> Path:
    return koda_store(
        path,
        sessions=[
            {
                "id": "s-1",
                "created_at": "2026-03-01 11:59:00",
                "agent_name": "koda",
                "project_root": "/home/dana/src/fleet",
                "last_accessed_at": "2026-03-01 12:10:00",
            },
            {"id": "s-2", "created_at": "2026-03-02 08:00:00", "agent_name": None},
        ],
        messages=[
            message(
                role="user", content="Fix the failing test.", compacted_at="2026-03-01 12:05:00"
            ),
            message(
                role="assistant",
                content=None,
                tool_calls=[CALL],
                prompt_tokens=100,
                completion_tokens=50,
                cache_read_tokens=2000,
                cache_creation_tokens=300,
                thinking_tokens=20,
                created_at="2026-03-01 12:00:05",
                compacted_at="2026-03-01 12:05:00",
            ),
            message(
                role="tool",
                content="print('hi')",
                tool_call_id="toolu_01A",
                agent_name="researcher",
                created_at="2026-03-01 12:00:06",
            ),
            message(
                role="assistant",
                content="Fixed.",
                prompt_tokens=40,
                completion_tokens=10,
                cache_read_tokens=2400,
                cache_creation_tokens=0,
                thinking_tokens=0,
                created_at="2026-03-01 12:00:09",
            ),
            message(
                session_id="s-2",
                role="assistant",
                content="Hello",
                prompt_tokens=10,
                completion_tokens=5,
                created_at="2026-03-02 08:00:01",
            ),
            *extra,
        ],
        metadata=[
            {"session_id": "s-1", "key": "todo", "value": "- [x] reproduce\n- [ ] fix"},
            {"session_id": "s-1", "key": "model", "value": "claude-sonnet-4-5"},
            {"session_id": "s-1", "key": "git_branch", "value": "fix/tests"},
        ],
    )


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return build(tmp_path / "koda.db")


def test_it_imports_sessions_with_their_context_and_metadata(store: Path) -> None:
    out, _ = run_import("koda", str(store))

    session = Session.objects.get(key="s-1")
    assert (session.agent, session.project_root, session.model) == (
        "koda",
        "/home/dana/src/fleet",
        "claude-sonnet-4-5",
    )
    assert session.todo == "- [x] reproduce\n- [ ] fix"
    assert session.metadata == {"git_branch": "fix/tests"}
    assert session.created_at == datetime(2026, 3, 1, 11, 59, tzinfo=UTC)
    assert session.last_active_at == datetime(2026, 3, 1, 12, 10, tzinfo=UTC)
    assert Session.objects.get(key="s-2").agent == "koda"
    assert "2 sessions (2 new, 0 updated, 0 unchanged) with 5 messages" in out


def test_prompt_tokens_get_the_cache_tokens_koda_left_out(store: Path) -> None:
    run_import("koda", str(store))

    _, call, _, reply = messages_of("s-1")
    assert (call.prompt_tokens, call.cache_read_tokens, call.cache_creation_tokens) == (
        2400,
        2000,
        300,
    )
    assert (call.completion_tokens, call.reasoning_tokens) == (50, 20)
    assert reply.prompt_tokens == 2440
    session = Session.objects.get(key="s-1")
    assert (session.prompt_tokens, session.cache_read_tokens, session.api_calls) == (4840, 4400, 2)


def test_usage_is_priced_from_the_model_or_marked_unpriced(store: Path) -> None:
    run_import("koda", str(store))

    priced = [m for m in messages_of("s-1") if m.cost_source]
    assert {m.cost_source for m in priced} == {"computed"}
    session = Session.objects.get(key="s-1")
    assert session.cost_usd == sum((m.cost_usd for m in priced), Decimal(0))
    assert session.cost_usd > 0
    unpriced = messages_of("s-2")[0]
    assert (unpriced.cost_source, unpriced.cost_usd) == ("unpriced", None)
    assert Session.objects.get(key="s-2").unpriced_calls == 1


def test_archived_messages_stay_archived(store: Path) -> None:
    run_import("koda", str(store))

    archived = datetime(2026, 3, 1, 12, 5, tzinfo=UTC)
    assert [m.compacted_at for m in messages_of("s-1")] == [archived, archived, None, None]


def test_messages_keep_their_order_tool_calls_and_sub_agents(store: Path) -> None:
    run_import("koda", str(store))

    user, call, result, reply = messages_of("s-1")
    assert [m.message_id for m in (user, call, result, reply)] == [
        "koda:1",
        "koda:2",
        "koda:3",
        "koda:4",
    ]
    assert call.tool_calls == [
        {"id": "toolu_01A", "name": "read_file", "arguments": {"path": "src/app.py"}}
    ]
    assert (result.tool_call_id, result.agent_name) == ("toolu_01A", "researcher")
    assert call.content is None
    assert reply.created_at == datetime(2026, 3, 1, 12, 0, 9, tzinfo=UTC)
    session = Session.objects.get(key="s-1")
    assert (session.turns, session.tool_call_count, session.message_count) == (1, 1, 4)


def test_corrupt_rows_are_reported_with_their_id_and_skipped(tmp_path: Path) -> None:
    store = build(
        tmp_path / "koda.db",
        extra=[
            message(session_id="s-2", role="assistant", content="x", tool_calls="[{broken"),
            message(session_id="s-2", role="ghost", content="boo"),
            message(session_id="s-2", role="assistant", content="y", prompt_tokens=-1),
            message(session_id="s-2", role="user", content="z", created_at="tuesday"),
            message(
                session_id="s-2", role="assistant", content="fine", created_at="2026-03-02 09:00:00"
            ),
            message(session_id="gone", role="user", content="lost"),
            message(session_id="gone", role="user", content="lost too"),
        ],
    )

    out, err = run_import("koda", str(store), expect_errors=True)

    assert [m.content for m in messages_of("s-2")] == ["Hello", "fine"]
    assert "koda.db: messages id=6: tool_calls is not JSON" in err
    assert "koda.db: messages id=7: message.role: must be one of" in err
    assert "koda.db: messages id=8: prompt_tokens must be a non-negative integer" in err
    assert "koda.db: messages id=9: created_at is not a timestamp: 'tuesday'" in err
    assert "koda.db: messages session_id='gone': 2 message(s) of a session" in err
    assert "5 errors." in out


@pytest.mark.parametrize(
    ("key", "value", "setting"),
    [("todo", "- [ ] " + "x" * 100, "FLEET_MAX_TODO_CHARS"), ("notes", "x" * 200, None)],
)
def test_a_session_whose_todo_or_metadata_is_over_its_cap_is_reported_and_skipped(
    tmp_path: Path, settings: Any, key: str, value: str, setting: str | None
) -> None:
    settings.FLEET_MAX_TODO_CHARS = 100
    settings.FLEET_MAX_METADATA_BYTES = 100
    store = build(tmp_path / "koda.db")
    with sqlite3.connect(store) as conn:
        conn.execute(
            "INSERT OR REPLACE INTO session_metadata (session_id, key, value) VALUES ('s-1', ?, ?)",
            (key, value),
        )

    out, err = run_import("koda", str(store), expect_errors=True)

    assert list(Session.objects.values_list("key", flat=True)) == ["s-2"]
    assert not messages_of("s-1")
    field = "todo" if setting else "metadata"
    assert f"koda.db: sessions id='s-1': session.{field}: must be at most 100" in err
    assert (setting or "FLEET_MAX_METADATA_BYTES") in err
    assert "1 error." in out


def test_a_second_import_adds_nothing_and_changes_nothing(store: Path) -> None:
    run_import("koda", str(store))
    before = snapshot()

    out, _ = run_import("koda", str(store))

    assert snapshot() == before
    assert "(0 new, 0 updated, 2 unchanged) with 0 messages" in out
    assert "5 skipped as already stored" in out


def test_the_agent_option_overrides_the_agent_name(store: Path) -> None:
    run_import("koda", str(store), "--agent", "koda-ci")

    assert set(Session.objects.values_list("agent", flat=True)) == {"koda-ci"}
    # A message's agent_name is its sub-agent and stays.
    assert messages_of("s-1")[2].agent_name == "researcher"


def test_koda_usage_reads_like_koda_usage_sent_to_the_api(tmp_path: Path) -> None:
    from sessions.inputs import clean_usage

    row = {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "cache_read_tokens": 40,
        "cache_creation_tokens": 0,
        "thinking_tokens": 30,
    }
    store = build(
        tmp_path / "koda.db",
        extra=[message(session_id="s-2", role="assistant", content="thought", **row)],
    )

    run_import("koda", str(store))

    stored = messages_of("s-2")[-1]
    api = clean_usage(row, "usage")
    assert api is not None
    expected = (50, 35, 30, 40)  # thinking counted apart from completion is added to it
    assert (api.prompt_tokens, api.completion_tokens, api.reasoning_tokens) == expected[:3]
    assert (
        stored.prompt_tokens,
        stored.completion_tokens,
        stored.reasoning_tokens,
        stored.cache_read_tokens,
    ) == expected


# --- compaction summaries, models, usage rows as koda counts them ----------------------

CONTINUATION = "Your context was compacted. The previous message contains a summary."


def compacted(path: Path) -> Path:
    """A session koda compacted twice: summary and continuation hint after each archive.

    koda's ``compact_session`` stamps the archived rows with ``datetime('now')``
    and inserts the summary (``system``, no usage) and a continuation hint
    (``assistant``) in the same transaction; the second compaction's summary
    fell on the next second.
    """

    def row(role: str, content: str, at: str, archived: str | None = None, **more: Any) -> Any:
        return message(
            session_id="c",
            role=role,
            content=content,
            created_at=at,
            compacted_at=archived,
            **more,
        )

    return koda_store(
        path,
        sessions=[{"id": "c", "created_at": "2026-03-01 11:59:00", "agent_name": "koda"}],
        messages=[
            row("system", "You are koda.", "2026-03-01 12:00:00", "2026-03-01 12:05:00"),
            row("user", "Fix the test.", "2026-03-01 12:00:01", "2026-03-01 12:05:00"),
            row(
                "assistant",
                "Fixed.",
                "2026-03-01 12:00:05",
                "2026-03-01 12:05:00",
                prompt_tokens=10,
                completion_tokens=5,
            ),
            row("user", "Now the docs.", "2026-03-01 12:01:00", "2026-03-01 13:00:00"),
            row(
                "system",
                "Summary: the test is fixed.",
                "2026-03-01 12:05:00",
                "2026-03-01 13:00:00",
            ),
            row("assistant", CONTINUATION, "2026-03-01 12:05:00", "2026-03-01 13:00:00"),
            row("system", "Reminder: run the linter.", "2026-03-01 12:30:00"),
            row("user", "Done?", "2026-03-01 12:59:00"),
            row("system", "Summary: test and docs.", "2026-03-01 13:00:01"),
            row("assistant", CONTINUATION, "2026-03-01 13:00:01"),
        ],
    )


def test_summaries_koda_wrote_at_compaction_are_marked_as_fleets_own(tmp_path: Path) -> None:
    from sessions.models import Message

    run_import("koda", str(compacted(tmp_path / "koda.db")))

    messages = messages_of("c")
    summaries = [(m.content, m.created_at, m.compacted_at) for m in messages if m.is_summary]
    assert summaries == [
        (
            "Summary: the test is fixed.",
            datetime(2026, 3, 1, 12, 5, tzinfo=UTC),
            datetime(2026, 3, 1, 13, 0, tzinfo=UTC),
        ),
        # Stamped at the moment of its archive, as Fleet's compaction stamps both.
        ("Summary: test and docs.", datetime(2026, 3, 1, 13, 0, tzinfo=UTC), None),
    ]
    # The system prompt and a system message at another time are no summaries.
    assert [m.content for m in messages if m.role == "system" and not m.is_summary] == [
        "You are koda.",
        "Reminder: run the linter.",
    ]
    # The dashboard's transcript shows each with the run it replaced.
    runs = [item for item in transcript.build(messages) if isinstance(item, transcript.ArchivedRun)]
    assert [(len(run.entries), run.summary and run.summary.message.content) for run in runs] == [
        (3, "Summary: the test is fixed."),
        (3, "Summary: test and docs."),
    ]
    context = Message.objects.filter(session__key="c").context()
    assert [m.content for m in context] == [
        "Summary: test and docs.",
        "Reminder: run the linter.",
        "Done?",
        CONTINUATION,
    ]


def test_a_model_in_the_session_or_its_messages_is_kept(tmp_path: Path) -> None:
    store = build(tmp_path / "koda.db")
    with sqlite3.connect(store) as conn:
        conn.execute("ALTER TABLE sessions ADD COLUMN model TEXT")
        conn.execute("ALTER TABLE messages ADD COLUMN model TEXT")
        conn.execute("UPDATE messages SET model = 'claude-haiku-4-5' WHERE id = 4")
        conn.execute("UPDATE messages SET model = 'gpt-4o-mini' WHERE session_id = 's-2'")
        conn.execute("DELETE FROM session_metadata WHERE key = 'model'")
        conn.execute("UPDATE sessions SET model = 'claude-sonnet-4-5' WHERE id = 's-1'")

    run_import("koda", str(store))

    assert Session.objects.get(key="s-1").model == "claude-sonnet-4-5"
    assert [m.model for m in messages_of("s-1")] == ["", "", "", "claude-haiku-4-5"]
    # No model for the session: its newest message's model names it.
    assert Session.objects.get(key="s-2").model == "gpt-4o-mini"
    reply = messages_of("s-2")[0]
    assert (reply.model, reply.cost_source) == ("gpt-4o-mini", "computed")


def test_a_row_with_usage_is_an_api_call_even_when_its_counts_are_zero(tmp_path: Path) -> None:
    # koda's session_token_usage counts a row as an API call when its
    # prompt_tokens or completion_tokens is not NULL; zero is a count.
    store = build(
        tmp_path / "koda.db",
        extra=[
            message(
                session_id="s-2",
                role="assistant",
                content="cached",
                prompt_tokens=0,
                completion_tokens=0,
                created_at="2026-03-02 08:00:02",
            ),
            message(session_id="s-2", role="user", content="ok", created_at="2026-03-02 08:00:03"),
        ],
    )

    run_import("koda", str(store))

    zero, plain = messages_of("s-2")[1:]
    assert (zero.cost_source, zero.prompt_tokens, plain.cost_source) == ("unpriced", 0, "")
    assert Session.objects.get(key="s-2").api_calls == 2


def test_a_second_import_of_summaries_models_and_zero_usage_changes_nothing(
    tmp_path: Path,
) -> None:
    store = compacted(tmp_path / "koda.db")
    with sqlite3.connect(store) as conn:
        conn.execute("ALTER TABLE messages ADD COLUMN model TEXT")
        conn.execute(
            "UPDATE messages SET model = 'claude-haiku-4-5', prompt_tokens = 0, "
            "completion_tokens = 0 WHERE id = 10"
        )
    run_import("koda", str(store))
    before = snapshot()

    out, _ = run_import("koda", str(store))
    dry, _ = run_import("koda", str(store), "--dry-run")

    assert snapshot() == before
    assert "(0 new, 0 updated, 1 unchanged) with 0 messages" in out
    assert dry == out.replace("Imported", "Would import")


def test_a_reimport_after_koda_compacted_archives_what_fleet_already_holds(
    tmp_path: Path,
) -> None:
    from sessions.models import Message

    def row(role: str, content: str, at: str, archived: str | None = None) -> Any:
        return message(
            session_id="c", role=role, content=content, created_at=at, compacted_at=archived
        )

    session = [{"id": "c", "created_at": "2026-03-01 11:59:00"}]
    first = [
        row("user", "Fix the test.", "2026-03-01 12:00:01"),
        row("assistant", "Fixed.", "2026-03-01 12:00:05"),
        row("user", "Now the docs.", "2026-03-01 12:01:00"),
    ]
    run_import("koda", str(koda_store(tmp_path / "first.db", sessions=session, messages=first)))
    # koda compacted since: the first two archived, its summary and hint added.
    archived = "2026-03-01 12:05:00"
    later = [
        row("user", "Fix the test.", "2026-03-01 12:00:01", archived),
        row("assistant", "Fixed.", "2026-03-01 12:00:05", archived),
        first[2],
        row("system", "Summary: the test is fixed.", archived),
        row("assistant", CONTINUATION, archived),
    ]
    store = koda_store(tmp_path / "later.db", sessions=session, messages=later)

    out, _ = run_import("koda", str(store))

    at = datetime(2026, 3, 1, 12, 5, tzinfo=UTC)
    assert [m.compacted_at for m in messages_of("c")] == [at, at, None, None, None]
    context = Message.objects.filter(session__key="c").context()
    assert [m.content for m in context] == [
        "Summary: the test is fixed.",
        "Now the docs.",
        CONTINUATION,
    ]
    assert "(0 new, 1 updated, 0 unchanged) with 2 messages" in out
    before = snapshot()
    again, _ = run_import("koda", str(store))
    assert snapshot() == before
    assert "(0 new, 0 updated, 1 unchanged) with 0 messages" in again


def test_newer_kodas_title_thinking_and_mode_are_kept(tmp_path: Path) -> None:
    store = build(tmp_path / "koda.db")
    with sqlite3.connect(store) as conn:
        conn.execute("ALTER TABLE sessions ADD COLUMN title TEXT")
        conn.execute("ALTER TABLE sessions ADD COLUMN mode TEXT")
        conn.execute("ALTER TABLE messages ADD COLUMN thinking_content TEXT")
        conn.execute("UPDATE sessions SET title = 'Fix the tests', mode = 'plan' WHERE id = 's-1'")
        conn.execute("UPDATE messages SET thinking_content = 'Read the file first.' WHERE id = 2")

    run_import("koda", str(store))

    session = Session.objects.get(key="s-1")
    assert (session.name, session.metadata) == (
        "Fix the tests",
        {"git_branch": "fix/tests", "mode": "plan"},
    )
    assert [m.reasoning for m in messages_of("s-1")] == ["", "Read the file first.", "", ""]
    assert Session.objects.get(key="s-2").name == ""


def with_full_content(store: Path, values: dict[int, str]) -> Path:
    """Newer koda's ``full_content`` column, set on the rows ``values`` names by id."""
    with sqlite3.connect(store) as conn:
        conn.execute("ALTER TABLE messages ADD COLUMN full_content TEXT")
        for row_id, text in values.items():
            conn.execute("UPDATE messages SET full_content = ? WHERE id = ?", (text, row_id))
    return store


def test_a_tool_rows_full_content_is_kept_in_its_metadata(tmp_path: Path) -> None:
    whole = "print('hi')\n" + "# line\n" * 50
    # Row 3 is the tool result koda shortened; row 4's full text is its content.
    store = with_full_content(build(tmp_path / "koda.db"), {3: whole, 4: "Fixed."})

    out, _ = run_import("koda", str(store))

    messages = messages_of("s-1")
    assert [m.metadata for m in messages] == [{}, {}, {"full_content": whole}, {}]
    assert messages[2].content == "print('hi')"
    assert "0 errors" in out


def test_a_second_import_of_full_content_changes_nothing(tmp_path: Path) -> None:
    store = with_full_content(build(tmp_path / "koda.db"), {3: "print('hi')\nprint('bye')"})
    run_import("koda", str(store))
    before = snapshot()

    out, _ = run_import("koda", str(store))

    assert snapshot() == before
    assert "(0 new, 0 updated, 2 unchanged) with 0 messages" in out


def test_a_full_content_past_the_metadata_cap_is_left_out_with_a_warning(
    tmp_path: Path, settings: Any
) -> None:
    settings.FLEET_MAX_METADATA_BYTES = 100
    store = with_full_content(build(tmp_path / "koda.db"), {3: "y" * 500})

    out, err = run_import("koda", str(store))

    tool = messages_of("s-1")[2]
    assert (tool.content, tool.metadata) == ("print('hi')", {})
    assert "warning: koda.db: messages id=3: metadata left out" in err
    assert "FLEET_MAX_METADATA_BYTES" in err
    assert out.strip().endswith("0 errors, 1 warning.")


def with_completed_at(store: Path, values: dict[int, str | None]) -> Path:
    """Newer koda's ``completed_at`` column: set on every row, then ``values`` by id."""
    with sqlite3.connect(store) as conn:
        conn.execute("ALTER TABLE messages ADD COLUMN completed_at TEXT")
        conn.execute("UPDATE messages SET completed_at = created_at")
        for row_id, moment in values.items():
            conn.execute("UPDATE messages SET completed_at = ? WHERE id = ?", (moment, row_id))
    return store


def test_a_reply_koda_never_completed_is_kept_but_left_out_of_the_context(
    tmp_path: Path,
) -> None:
    # Row 6: an interrupted reply (no completed_at); row 7: a whitespace-only one.
    interrupted = message(role="assistant", content="Half an ans", created_at="2026-03-01 12:00:20")
    blank = message(role="assistant", content="  \n", created_at="2026-03-01 12:00:30")
    store = with_completed_at(build(tmp_path / "koda.db", extra=[interrupted, blank]), {6: None})

    run_import("koda", str(store))

    stored = messages_of("s-1")
    assert [m.content for m in stored[-2:]] == ["Half an ans", "  \n"]
    assert [m.status for m in stored] == ["", "", "", "", "incomplete", ""]
    context = selectors.messages_context(Session.objects.get(key="s-1"))
    # The tool result lost its archived call; the two replies give the model nothing.
    assert [m.content for m in context] == ["Fixed."]


def test_a_koda_without_completed_at_marks_no_reply_incomplete(store: Path) -> None:
    run_import("koda", str(store))

    assert {m.status for m in messages_of("s-1")} == {""}


# --- reading since a cursor (fleet-follow) ------------------------------------------


def read_since(path: Path, since: dict[str, koda.Since]) -> dict[str, Any]:
    """``koda.read_since``'s records by session key."""
    records = koda.read_since(path, since)
    return {record.key: record for record in records if not isinstance(record, Problem)}


def stamps(path: Path) -> dict[str, koda.Since]:
    """The cursor after a read of every session."""
    return {key: koda.Since(r.stamp, r.tail) for key, r in read_since(path, {}).items()}


def whole(path: Path, key: str) -> SourceSession:
    return next(r for r in koda.read(path) if isinstance(r, SourceSession) and r.key == key)


def completed(record: SourceSession, before: SourceSession) -> SourceSession:
    """A read of the rows after the cursor, with the messages the cursor holds."""
    messages = before.messages[: record.offset] + record.messages
    return replace(record, messages=messages, offset=0, stamp="", tail=None)


def test_a_read_since_stamps_reads_what_a_read_gives_and_stamps_each_session(
    tmp_path: Path,
) -> None:
    path = build(tmp_path / "koda.db")

    records = read_since(path, {})

    assert {key: replace(r, stamp="", tail=None) for key, r in records.items()} == {
        record.key: record for record in koda.read(path) if isinstance(record, SourceSession)
    }
    assert all(record.stamp and record.tail for record in records.values())
    assert records["s-1"].stamp != records["s-2"].stamp


def test_a_read_since_stamps_skips_the_sessions_that_did_not_change(tmp_path: Path) -> None:
    path = build(tmp_path / "koda.db")
    since = stamps(path)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO messages (session_id, role, content, created_at) "
            "VALUES ('s-2', 'user', 'later', '2026-03-02 08:00:02')"
        )

    records = read_since(path, since)

    assert records["s-1"] == koda.Unchanged("s-1")
    assert records["s-2"].stamp != since["s-2"].stamp
    assert read_since(path, stamps(path)) == {key: koda.Unchanged(key) for key in since}


def test_a_session_written_to_reads_only_its_new_rows(tmp_path: Path) -> None:
    path = build(tmp_path / "koda.db")
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE messages ADD COLUMN model TEXT")  # a newer koda
    before = read_since(path, {})
    since = stamps(path)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO messages (session_id, role, content, model, created_at) "
            "VALUES ('s-2', 'user', 'later', 'claude-haiku-4-5', '2026-03-02 08:00:02')"
        )
    first = read_since(path, since)["s-2"]
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO messages (session_id, role, content, created_at) "
            "VALUES ('s-2', 'assistant', 'ok', '2026-03-02 08:00:01')"
        )

    second = read_since(path, {**since, "s-2": koda.Since(first.stamp, first.tail)})["s-2"]

    assert (first.offset, [m.fields["content"] for m in first.messages]) == (1, ["later"])
    assert (second.offset, [m.fields["content"] for m in second.messages]) == (2, ["ok"])
    # The newest model and last activity come from the rows read before.
    assert completed(second, completed(first, before["s-2"])) == whole(path, "s-2")
    assert whole(path, "s-2").fields["model"] == "claude-haiku-4-5"


@pytest.mark.parametrize(
    ("change", "rows_after_the_cursor"),
    [
        # koda compacted: old rows archived, the summary inserted in the same transaction.
        (
            "UPDATE messages SET compacted_at = '2026-03-01 12:30:00' WHERE id IN (3, 4);"
            "INSERT INTO messages (session_id, role, content, created_at) "
            "VALUES ('s-1', 'system', 'Summary.', '2026-03-01 12:30:01')",
            False,
        ),
        # Old rows archived, no new row.
        ("UPDATE messages SET compacted_at = '2026-03-01 12:30:00' WHERE id = 3", False),
        # A system row after the cursor may be the summary of an earlier archive.
        (
            "INSERT INTO messages (session_id, role, content, created_at) "
            "VALUES ('s-1', 'system', 'Summary.', '2026-03-01 12:05:00')",
            False,
        ),
        # A row deleted, another inserted: as many rows as before.
        (
            "DELETE FROM messages WHERE id = 3;"
            "INSERT INTO messages (session_id, role, content, created_at) "
            "VALUES ('s-1', 'user', 'again', '2026-03-01 12:40:00')",
            False,
        ),
        ("DELETE FROM messages WHERE id = 4", False),
        ("UPDATE sessions SET last_accessed_at = '2026-03-01 13:00:00' WHERE id = 's-1'", True),
        ("UPDATE session_metadata SET value = '- [x] fix' WHERE key = 'todo'", True),
        ("INSERT INTO session_metadata (session_id, key, value) VALUES ('s-1', 'x', 'y')", True),
        (
            "INSERT INTO messages (session_id, role, content, created_at) "
            "VALUES ('s-1', 'user', 'more', '2026-03-01 12:41:00')",
            True,
        ),
    ],
)
def test_a_changed_session_reads_as_a_read_reads_it(
    change: str, rows_after_the_cursor: bool, tmp_path: Path
) -> None:
    path = build(tmp_path / "koda.db")
    before = read_since(path, {})
    since = stamps(path)
    with sqlite3.connect(path) as conn:
        conn.executescript(change)

    records = read_since(path, since)

    assert records["s-2"] == koda.Unchanged("s-2")
    assert records["s-1"].offset == (4 if rows_after_the_cursor else 0)
    assert completed(records["s-1"], before["s-1"]) == whole(path, "s-1")


def test_a_read_since_stamps_still_reports_orphans_and_corrupt_sessions(tmp_path: Path) -> None:
    path = build(tmp_path / "koda.db", extra=[message(session_id="gone", role="user", content="x")])
    since = stamps(path)
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO sessions (id, created_at) VALUES ('bad', 'not a time')")

    records = list(koda.read_since(path, since))

    problems = [str(r) for r in records if isinstance(r, Problem)]
    assert len(problems) == 2
    assert "sessions id='bad'" in problems[0]
    assert "session_id='gone'" in problems[1]
