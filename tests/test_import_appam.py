"""import_sessions appam: session_history rows with JSON messages and usage."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from sessions.importers import appam
from sessions.importers.base import Problem, Since, SourceSession, Unchanged
from sessions.models import Session
from tests.import_stores import appam_store, messages_of, run_import, snapshot

pytestmark = pytest.mark.django_db

CALLS = [
    {
        "id": "toolu_01",
        "type": "function",
        "function": {"name": "http_get", "arguments": '{"url": "https://example.org"}'},
    }
]

# What appam keeps beside the text (Anthropic's blocks as returned, a tool's
# own report, a non-text part): imported into the message's metadata.
BLOCKS = [
    {"type": "thinking", "thinking": "Fetch the list first.", "signature": "EqQBCgIYAhIM"},
    {"type": "tool_use", "id": "toolu_01", "name": "http_get", "input": {}},
]
TOOL_METADATA = {"status_code": 200, "duration_ms": 41, "truncated": False}
IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}}


def transcript() -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "You are a worker.", "id": "m-1"},
        {
            "role": "user",
            "content": "Collect the invoices.",
            "id": "m-2",
            "timestamp": "2026-03-05T09:00:00Z",
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": CALLS,
            "id": "m-3",
            "timestamp": "2026-03-05T09:00:05Z",
            "provider_response_id": "msg_01abc",
            "reasoning": "Fetch the list first.",
            "raw_content_blocks": BLOCKS,
        },
        {
            "role": "tool",
            "tool_call_id": "toolu_01",
            "name": "http_get",
            "content": [
                {"type": "text", "text": "200 OK"},
                {"type": "text", "text": "[]"},
                IMAGE,
            ],
            "tool_metadata": TOOL_METADATA,
            "timestamp": "2026-03-05T09:00:06Z",
        },
        {
            "role": "assistant",
            "content": "No invoices this month.",
            "id": "m-5",
            "status": "complete",
            "timestamp": "2026-03-05T09:00:09Z",
        },
    ]


def row(**values: Any) -> dict[str, Any]:
    return {
        "id": "run-1",
        "agent_name": "invoice-worker",
        "model": "claude-sonnet-4-5",
        "messages": transcript(),
        "started_at": "2026-03-05T08:59:59Z",
        "updated_at": "2026-03-05T09:00:10Z",
        "ended_at": "2026-03-05T09:00:10Z",
        "turn_count": 4,
        "tool_call_count": 3,
        "usage": {
            "total_input_tokens": 1200,
            "total_output_tokens": 300,
            "total_cache_creation_tokens": 2000,
            "total_cache_read_tokens": 5000,
            "total_reasoning_tokens": 100,
            "total_cost_usd": 0.0123,
            "request_count": 3,
        },
        **values,
    }


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return appam_store(tmp_path / "history.db", [row()])


def test_it_imports_the_transcript(store: Path) -> None:
    run_import("appam", str(store))

    messages = messages_of("run-1")
    assert [(m.seq, m.role) for m in messages] == [
        (1, "system"),
        (2, "user"),
        (3, "assistant"),
        (4, "tool"),
        (5, "assistant"),
    ]
    system, user, call, result, reply = messages
    assert [m.message_id for m in (system, user, call, reply)] == ["m-1", "m-2", "m-3", "m-5"]
    assert result.message_id.startswith("appam:3:")
    assert call.tool_calls == [
        {"id": "toolu_01", "name": "http_get", "arguments": '{"url": "https://example.org"}'}
    ]
    assert (call.reasoning, call.provider_response_id) == ("Fetch the list first.", "msg_01abc")
    assert (result.tool_call_id, result.name, result.content) == (
        "toolu_01",
        "http_get",
        "200 OK\n[]",
    )
    assert reply.status == "complete"
    assert user.created_at == datetime(2026, 3, 5, 9, 0, tzinfo=UTC)
    # No timestamp: the session's start for the first, the previous message's after.
    assert system.created_at == datetime(2026, 3, 5, 8, 59, 59, tzinfo=UTC)
    assert all(not m.cost_source for m in messages)


def test_content_blocks_tool_metadata_and_non_text_parts_are_kept_in_metadata(
    store: Path,
) -> None:
    run_import("appam", str(store))

    system, user, call, result, reply = messages_of("run-1")
    assert call.metadata == {"raw_content_blocks": BLOCKS}
    assert result.content == "200 OK\n[]"
    # The parts as appam holds them, in their order, when joining the text lost any.
    assert result.metadata == {
        "tool_metadata": TOOL_METADATA,
        "content": [{"type": "text", "text": "200 OK"}, {"type": "text", "text": "[]"}, IMAGE],
    }
    assert system.metadata == user.metadata == reply.metadata == {}


def test_text_parts_alone_are_only_joined(tmp_path: Path) -> None:
    parts = [{"type": "text", "text": "a"}, "b"]
    messages = [{"role": "user", "content": parts, "id": "m-1", "unknown_key": None}]

    run_import("appam", str(appam_store(tmp_path / "h.db", [row(messages=messages)])))

    (message,) = messages_of("run-1")
    assert (message.content, message.metadata) == ("a\nb", {})


def test_any_other_key_of_an_appam_message_is_kept_under_its_name(tmp_path: Path) -> None:
    messages = [{"role": "assistant", "content": "x", "id": "m-1", "stop_reason": "end_turn"}]

    run_import("appam", str(appam_store(tmp_path / "h.db", [row(messages=messages)])))

    assert messages_of("run-1")[0].metadata == {"stop_reason": "end_turn"}


def test_metadata_past_the_cap_is_left_out_with_a_warning_and_the_message_kept(
    tmp_path: Path, settings: Any
) -> None:
    settings.FLEET_MAX_METADATA_BYTES = 200
    big = [{"type": "image", "source": {"type": "base64", "data": "A" * 500}}]
    messages = [{"role": "user", "content": "see", "id": "m-1", "raw_content_blocks": big}]

    out, err = run_import("appam", str(appam_store(tmp_path / "h.db", [row(messages=messages)])))

    (message,) = messages_of("run-1")
    assert (message.content, message.metadata) == ("see", {})
    assert "warning: h.db: session_history id='run-1' messages[0]: metadata left out" in err
    assert out.strip().endswith("0 errors, 1 warning.")


def test_the_usage_json_fills_the_session_totals(store: Path) -> None:
    run_import("appam", str(store))

    session = Session.objects.get(key="run-1")
    assert (session.agent, session.kind, session.model) == (
        "invoice-worker",
        "autonomous",
        "claude-sonnet-4-5",
    )
    assert (session.turns, session.tool_call_count, session.api_calls) == (4, 3, 3)
    # Cache writes (only Anthropic reports them): the input excludes the cache.
    assert session.prompt_tokens == 1200 + 2000 + 5000
    assert (session.cache_read_tokens, session.cache_creation_tokens) == (5000, 2000)
    assert (session.completion_tokens, session.reasoning_tokens) == (300, 100)
    assert session.cost_usd == Decimal("0.0123")
    assert session.message_count == 5


def test_an_openai_session_keeps_its_inclusive_input(tmp_path: Path) -> None:
    usage = {
        "total_input_tokens": 9000,
        "total_output_tokens": 50,
        "total_cache_read_tokens": 4096,
        "total_reasoning_tokens": 400,
        "total_cost_usd": 0.02,
        "request_count": 2,
    }
    store = appam_store(tmp_path / "history.db", [row(model="gpt-5", usage=usage)])

    run_import("appam", str(store))

    session = Session.objects.get()
    assert (session.prompt_tokens, session.cache_read_tokens) == (9000, 4096)
    # Reasoning above the output was counted apart.
    assert (session.completion_tokens, session.reasoning_tokens) == (450, 400)


@pytest.mark.parametrize(
    ("model", "usage", "prompt"),
    [
        # Only appam's Anthropic clients report cache writes: input without cache.
        (
            "gateway/sonnet",
            {
                "total_input_tokens": 9000,
                "total_cache_creation_tokens": 300,
                "total_cache_read_tokens": 500,
            },
            9000 + 300 + 500,
        ),
        # Cache reads above the input: only an input without them allows it.
        (
            "gpt-5",
            {"total_input_tokens": 100, "total_cache_read_tokens": 4096},
            100 + 4096,
        ),
        # Reads alone, within the input: the input holds them, as appam prices it.
        (
            "claude-sonnet-4-5",
            {"total_input_tokens": 9000, "total_cache_read_tokens": 4096},
            9000,
        ),
    ],
    ids=["cache-writes", "reads-above-input", "reads-within-input"],
)
def test_the_cache_convention_comes_from_the_usage_fields_not_the_model_name(
    tmp_path: Path, model: str, usage: dict[str, int], prompt: int
) -> None:
    usage = {"total_output_tokens": 50, "request_count": 2, **usage}
    store = appam_store(tmp_path / "history.db", [row(model=model, usage=usage)])

    run_import("appam", str(store))

    session = Session.objects.get()
    assert session.prompt_tokens == prompt
    assert session.cache_read_tokens == usage["total_cache_read_tokens"]


def test_a_session_appam_ended_since_the_last_import_ends_at_appams_time(
    tmp_path: Path,
) -> None:
    running = row(ended_at=None, updated_at="2026-03-05T09:00:06Z")
    run_import("appam", str(appam_store(tmp_path / "first.db", [running])))
    assert Session.objects.get().status == "active"
    # Meanwhile the agent restarted and Fleet presumed the session crashed.
    Session.objects.update(status="unknown")

    out, _ = run_import("appam", str(appam_store(tmp_path / "later.db", [row()])))

    session = Session.objects.get()
    assert (session.status, session.state, session.ended_at) == (
        "completed",
        "idle",
        datetime(2026, 3, 5, 9, 0, 10, tzinfo=UTC),
    )
    assert session.last_active_at == datetime(2026, 3, 5, 9, 0, 10, tzinfo=UTC)
    assert "(0 new, 1 updated, 0 unchanged)" in out


def test_an_ended_session_is_completed_and_an_open_one_active(tmp_path: Path) -> None:
    store = appam_store(
        tmp_path / "history.db",
        [row(), row(id="run-2", ended_at=None, updated_at="2026-03-06T10:00:00Z")],
    )

    run_import("appam", str(store))

    ended, open_ = Session.objects.get(key="run-1"), Session.objects.get(key="run-2")
    assert (ended.status, ended.ended_at) == (
        "completed",
        datetime(2026, 3, 5, 9, 0, 10, tzinfo=UTC),
    )
    assert (open_.status, open_.ended_at) == ("active", None)
    assert open_.last_active_at == datetime(2026, 3, 6, 10, 0, tzinfo=UTC)


def test_a_store_without_usage_keeps_the_totals_of_its_messages(tmp_path: Path) -> None:
    store = appam_store(
        tmp_path / "history.db", [row(usage=None, turn_count=None, tool_call_count=None)]
    )

    run_import("appam", str(store))

    session = Session.objects.get()
    assert (session.turns, session.tool_call_count, session.api_calls) == (1, 1, 0)
    assert session.cost_usd == Decimal(0)


def test_corrupt_messages_and_rows_are_reported_and_skipped(tmp_path: Path) -> None:
    broken = transcript()
    broken[1]["role"] = "narrator"
    broken[4]["timestamp"] = "half past nine"
    store = appam_store(
        tmp_path / "history.db",
        [
            row(messages=broken),
            row(id="run-2", messages="[{not json"),
            row(id="run-3", usage="{oops"),
            row(id="run-4", messages={"role": "user"}),
        ],
    )

    out, err = run_import("appam", str(store), expect_errors=True)

    assert list(Session.objects.values_list("key", flat=True)) == ["run-1"]
    ids = [m.message_id for m in messages_of("run-1")]
    assert len(ids) == 3
    assert ids[:2] == ["m-1", "m-3"]
    assert ids[2].startswith("appam:3:")
    assert "session_history id='run-1' messages[1]: message.role: must be one of" in err
    assert "session_history id='run-1' messages[4]: timestamp is not a timestamp" in err
    assert "session_history id='run-2': messages is not JSON" in err
    assert "session_history id='run-3': usage is not JSON" in err
    assert "session_history id='run-4': messages is not a JSON array" in err
    assert "5 errors." in out


def test_a_second_import_adds_nothing_and_changes_nothing(store: Path) -> None:
    run_import("appam", str(store))
    before = snapshot()

    out, _ = run_import("appam", str(store))

    assert snapshot() == before
    assert "(0 new, 0 updated, 1 unchanged) with 0 messages" in out
    assert "5 skipped as already stored" in out


def test_messages_appam_appended_since_are_added(store: Path, tmp_path: Path) -> None:
    run_import("appam", str(store))
    more = [
        *transcript(),
        {"role": "user", "content": "Thanks", "id": "m-6", "timestamp": "2026-03-05T10:00:00Z"},
    ]
    usage = {**row()["usage"], "request_count": 4}
    later = appam_store(
        tmp_path / "later.db",
        [row(messages=more, usage=usage, updated_at="2026-03-05T10:00:00Z")],
    )

    out, _ = run_import("appam", str(later))

    assert [m.message_id for m in messages_of("run-1")][-1] == "m-6"
    assert Session.objects.get().api_calls == 4
    assert "(0 new, 1 updated, 0 unchanged) with 1 message " in out


@pytest.mark.parametrize("numeric", [False, True], ids=["string-ids", "numeric-ids"])
def test_a_reimport_after_appam_rewrote_its_messages_adds_nothing(
    tmp_path: Path, numeric: bool
) -> None:
    messages = [
        {**message, "id": index + 1 if numeric else f"m-{index + 1}"}
        for index, message in enumerate(transcript())
    ]
    run_import("appam", str(appam_store(tmp_path / "first.db", [row(messages=messages)])))
    stored = [m.message_id for m in messages_of("run-1")]
    # appam rewrote the array: the system prompt left it, so every index moved.
    rewritten = appam_store(tmp_path / "later.db", [row(messages=messages[1:])])

    out, _ = run_import("appam", str(rewritten))

    assert [m.message_id for m in messages_of("run-1")] == stored
    assert stored[1] == ("2" if numeric else "m-2")
    assert "with 0 messages" in out


# --- reading since a cursor (fleet-follow) ------------------------------------------


def test_a_read_since_stamps_skips_the_rows_that_did_not_change(tmp_path: Path) -> None:
    path = appam_store(tmp_path / "appam.db", [row(), row(id="run-2", ended_at=None)])
    first = {r.key: r for r in appam.read_since(path, {}) if isinstance(r, SourceSession)}
    assert {key: replace(r, stamp="") for key, r in first.items()} == {
        r.key: r for r in appam.read(path) if isinstance(r, SourceSession)
    }
    since = {key: Since(r.stamp) for key, r in first.items()}
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE session_history SET messages = ?, updated_at = ? WHERE id = 'run-2'",
            (
                json.dumps([*transcript(), {"role": "user", "content": "more"}]),
                "2026-03-05T09:01:00Z",
            ),
        )

    records = {r.key: r for r in appam.read_since(path, since) if not isinstance(r, Problem)}

    assert records["run-1"] == Unchanged("run-1")
    whole = next(r for r in appam.read(path) if isinstance(r, SourceSession) and r.key == "run-2")
    assert replace(records["run-2"], stamp="") == whole
    assert records["run-2"].stamp != since["run-2"].stamp
