"""Session upsert, status, reconcile (mark unknown) and delete."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from sessions import services
from sessions.bounds import MAX_EXCEPT_KEYS
from sessions.errors import InvalidInput, SessionGone, SessionNotFound
from sessions.models import DailyUsage, Message, Session, Tombstone

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)
T2 = T0 + timedelta(minutes=10)


def upsert(key: str = "k", now: datetime = T0, **fields: Any) -> tuple[Session, bool]:
    return services.session_upsert(key=key, fields=fields, now=now)


def stored(key: str = "k") -> Session:
    return Session.objects.get(key=key)


def rollup_rows() -> list[dict[str, Any]]:
    return list(DailyUsage.objects.order_by("day", "agent", "model", "channel").values())


# --- upsert --------------------------------------------------------------------


def test_upsert_creates_then_updates() -> None:
    session, created = upsert(agent="bot", kind="autonomous", goal_text="ship it")
    again, created_again = upsert(name="Renamed", now=T1)

    assert (created, created_again) == (True, False)
    assert again.pk == session.pk
    row = stored()
    assert (row.agent, row.kind, row.goal_text, row.name) == (
        "bot",
        "autonomous",
        "ship it",
        "Renamed",
    )
    assert (row.created_at, row.last_active_at) == (T0, T1)


def test_upsert_keeps_absent_fields() -> None:
    upsert(
        name="n", agent="a", model="m", project_root="/p", todo="- [ ] x", channel="cli", kind="acp"
    )

    upsert(now=T1)

    row = stored()
    assert (row.name, row.agent, row.model, row.project_root, row.todo) == (
        "n",
        "a",
        "m",
        "/p",
        "- [ ] x",
    )
    assert (row.channel, row.kind) == ("cli", "acp")
    assert row.last_active_at == T1


def test_upsert_can_clear_a_plain_text_field() -> None:
    upsert(name="n", todo="x")

    upsert(name="", todo=None)

    assert (stored().name, stored().todo) == ("", "")


def test_routing_context_is_never_overwritten_by_an_empty_value() -> None:
    upsert(channel_ref="discord.clamps", room_id="r1", sender_id="u1")

    upsert(channel_ref="", room_id=None, sender_id="")
    row = stored()
    assert (row.channel_ref, row.room_id, row.sender_id) == ("discord.clamps", "r1", "u1")

    upsert(room_id="r2")
    row = stored()
    assert (row.channel_ref, row.room_id, row.sender_id) == ("discord.clamps", "r2", "u1")


def test_metadata_merges_and_null_removes_a_key() -> None:
    upsert(metadata={"a": "1", "b": "2"})

    upsert(metadata={"b": None, "c": "3", "missing": None})

    assert stored().metadata == {"a": "1", "c": "3"}


def test_metadata_null_on_create_is_not_stored() -> None:
    upsert(metadata={"a": "1", "b": None})

    assert stored().metadata == {"a": "1"}


# --- size caps (merged metadata, todo, goal_text) ---------------------------------


def json_bytes(value: dict[str, Any]) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def test_metadata_merged_past_its_cap_is_refused_and_nothing_is_written(settings: Any) -> None:
    settings.FLEET_MAX_METADATA_BYTES = 80  # either object fits, both do not
    upsert(metadata={"a": "x" * 40}, now=T0)

    with pytest.raises(InvalidInput) as caught:
        upsert(name="renamed", metadata={"b": "y" * 40}, now=T1)

    assert caught.value.field == "metadata"
    assert "80 bytes" in caught.value.message
    row = stored()
    assert (row.metadata, row.name, row.last_active_at) == ({"a": "x" * 40}, "", T0)


def test_the_metadata_cap_counts_utf8_bytes_of_the_merged_json(settings: Any) -> None:
    exact = {"k": "é" * 10}  # 10 characters, 20 bytes
    settings.FLEET_MAX_METADATA_BYTES = json_bytes(exact)
    upsert(metadata=exact)
    assert stored().metadata == exact

    with pytest.raises(InvalidInput) as caught:
        upsert(metadata={"k": "é" * 10 + "e"})

    assert caught.value.field == "metadata"
    assert stored().metadata == exact


def test_one_metadata_object_over_the_cap_is_refused_before_the_merge(settings: Any) -> None:
    settings.FLEET_MAX_METADATA_BYTES = 50

    with pytest.raises(InvalidInput) as caught:
        upsert(metadata={"a": "x" * 60})

    assert caught.value.field == "metadata"
    assert not Session.objects.exists()


def test_session_metadata_sent_with_an_append_is_capped_too(settings: Any) -> None:
    settings.FLEET_MAX_METADATA_BYTES = 100
    upsert(metadata={"a": "x" * 60})

    with pytest.raises(InvalidInput) as caught:
        services.messages_append(
            key="k",
            messages=[{"role": "user", "content": "hi"}],
            session={"metadata": {"b": "y" * 60}},
        )

    assert caught.value.field == "metadata"
    assert stored().metadata == {"a": "x" * 60}
    assert not Message.objects.exists()


def test_metadata_stored_over_the_cap_stays_usable(settings: Any) -> None:
    """Data from before the cap: it reads, other fields update, removals shrink it."""
    upsert(metadata={"small": "1"})
    Session.objects.update(metadata={"small": "1", "big": "x" * 500, "more": "y" * 500})
    settings.FLEET_MAX_METADATA_BYTES = 100

    upsert(name="still writable", now=T1)
    with pytest.raises(InvalidInput):
        upsert(metadata={"more": None, "new": "v"}, now=T1)
    upsert(metadata={"more": None}, now=T1)

    row = stored()
    assert row.name == "still writable"
    assert row.metadata == {"small": "1", "big": "x" * 500}


@pytest.mark.parametrize(
    ("name", "setting"), [("todo", "FLEET_MAX_TODO_CHARS"), ("goal_text", "FLEET_MAX_GOAL_CHARS")]
)
def test_todo_and_goal_text_past_their_caps_are_refused(
    settings: Any, name: str, setting: str
) -> None:
    setattr(settings, setting, 20)
    upsert(**{name: "é" * 20})  # the cap is in characters

    with pytest.raises(InvalidInput) as caught:
        upsert(**{name: "x" * 21}, now=T1)

    assert caught.value.field == name
    assert "at most 20 characters" in caught.value.message
    assert getattr(stored(), name) == "é" * 20


def test_the_default_caps_are_documented_sizes(settings: Any) -> None:
    assert settings.FLEET_MAX_METADATA_BYTES == 64 * 1024
    assert settings.FLEET_MAX_TODO_CHARS == 256 * 1024
    assert settings.FLEET_MAX_GOAL_CHARS == 16 * 1024


def test_running_sets_the_turn_start_and_idle_clears_the_turn() -> None:
    upsert(state="running", turn_id="t1", now=T0)
    row = stored()
    assert (row.state, row.turn_id, row.turn_started_at) == ("running", "t1", T0)

    upsert(state="running", now=T1)
    assert stored().turn_started_at == T0  # the same turn is still under way

    upsert(state="idle", now=T2)
    row = stored()
    assert (row.state, row.turn_id, row.turn_started_at) == ("idle", "", None)


def test_a_new_turn_id_restarts_the_turn_clock() -> None:
    upsert(state="running", turn_id="t1", now=T0)

    upsert(state="running", turn_id="t2", now=T1)

    row = stored()
    assert (row.turn_id, row.turn_started_at) == ("t2", T1)


def test_a_given_turn_start_is_kept() -> None:
    upsert(state="running", turn_started_at="2026-03-01T11:00:00Z", now=T0)

    assert stored().turn_started_at == datetime(2026, 3, 1, 11, tzinfo=UTC)


def test_error_state_keeps_the_turn_that_failed() -> None:
    upsert(state="running", turn_id="t1", now=T0)

    upsert(state="error", now=T1)

    row = stored()
    assert (row.state, row.turn_id, row.turn_started_at) == ("error", "t1", T0)


def test_idle_after_error_clears_the_turn() -> None:
    upsert(state="running", turn_id="t1", now=T0)
    upsert(state="error", now=T1)

    upsert(state="idle", now=T2)

    row = stored()
    assert (row.state, row.turn_id, row.turn_started_at) == ("idle", "", None)


def test_an_error_reported_with_its_turn_stores_the_turn() -> None:
    upsert(state="error", turn_id="t9", turn_started_at="2026-03-01T11:00:00Z", now=T1)

    row = stored()
    assert (row.state, row.turn_id) == ("error", "t9")
    assert row.turn_started_at == datetime(2026, 3, 1, 11, tzinfo=UTC)


def test_an_error_naming_another_turn_does_not_keep_the_old_turn_start() -> None:
    upsert(state="running", turn_id="t1", now=T0)

    upsert(state="error", turn_id="t2", now=T1)

    row = stored()
    # When t2 started is unknown: no start rather than t1's.
    assert (row.state, row.turn_id, row.turn_started_at) == ("error", "t2", None)


def test_a_new_turn_after_an_error_restarts_the_turn_clock() -> None:
    upsert(state="running", turn_id="t1", now=T0)
    upsert(state="error", now=T1)

    upsert(state="running", turn_id="t2", now=T2)

    row = stored()
    assert (row.state, row.turn_id, row.turn_started_at) == ("running", "t2", T2)


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
def test_ending_statuses_set_ended_at_and_close_the_turn(status: str) -> None:
    upsert(state="running", turn_id="t1", now=T0)

    upsert(status=status, now=T1)

    row = stored()
    assert (row.status, row.ended_at) == (status, T1)
    assert (row.state, row.turn_id, row.turn_started_at) == ("idle", "", None)


def test_an_ended_session_cannot_start_a_turn() -> None:
    upsert(status="completed", now=T0)

    with pytest.raises(InvalidInput) as caught:
        upsert(state="running", now=T1)

    assert caught.value.field == "state"
    assert stored().state == "idle"
    assert stored().last_active_at == T0


def test_reactivating_clears_ended_at() -> None:
    upsert(status="completed", now=T0)

    upsert(status="active", state="running", now=T1)

    row = stored()
    assert (row.status, row.ended_at, row.state, row.turn_started_at) == (
        "active",
        None,
        "running",
        T1,
    )


def test_an_explicit_ended_at_wins() -> None:
    upsert(status="failed", ended_at="2026-03-01T11:30:00Z", now=T1)

    assert stored().ended_at == datetime(2026, 3, 1, 11, 30, tzinfo=UTC)


def test_creating_counts_a_started_session_in_the_rollup() -> None:
    upsert(agent="bot", model="m", channel="slack", created_at="2026-02-27T23:59:00-01:00")

    (row,) = DailyUsage.objects.all()
    assert (row.day.isoformat(), row.agent, row.model, row.channel) == (
        "2026-02-28",
        "bot",
        "m",
        "slack",
    )
    assert (row.sessions_started, row.message_count) == (1, 0)


def test_reported_totals_set_the_totals_and_move_the_rollup_by_the_difference() -> None:
    upsert(agent="bot", prompt_tokens=1000, completion_tokens=100, cost_usd="0.5", turns=3, now=T0)
    upsert(prompt_tokens=1500, completion_tokens=100, cost_usd=0.75, api_calls=4, now=T0)

    row = stored()
    assert (row.prompt_tokens, row.completion_tokens, row.turns, row.api_calls) == (1500, 100, 3, 4)
    assert row.cost_usd == Decimal("0.75")
    (rollup,) = DailyUsage.objects.all()
    assert (rollup.prompt_tokens, rollup.completion_tokens, rollup.turns, rollup.api_calls) == (
        1500,
        100,
        3,
        4,
    )
    assert rollup.cost_usd == Decimal("0.75")
    assert rollup.sessions_started == 1


def test_reported_totals_are_checked() -> None:
    with pytest.raises(InvalidInput) as caught:
        upsert(completion_tokens=5, reasoning_tokens=6)
    assert caught.value.field == "reasoning_tokens"

    with pytest.raises(InvalidInput) as caught:
        upsert(prompt_tokens=5, cache_read_tokens=6)
    assert caught.value.field == "cache_read_tokens"

    with pytest.raises(InvalidInput) as caught:
        upsert(cost_usd="-0.01")
    assert caught.value.field == "cost_usd"

    assert not Session.objects.exists()
    assert DailyUsage.objects.count() == 0


def test_reported_reasoning_above_the_stored_completion_is_refused() -> None:
    upsert(completion_tokens=5)

    with pytest.raises(InvalidInput) as reasoning:
        upsert(reasoning_tokens=6)
    with pytest.raises(InvalidInput) as cache:
        upsert(cache_creation_tokens=1)

    assert (reasoning.value.field, cache.value.field) == ("reasoning_tokens", "cache_read_tokens")
    assert "completion_tokens (5)" in reasoning.value.message
    assert stored().reasoning_tokens == 0
    assert DailyUsage.objects.get().completion_tokens == 5


@pytest.mark.parametrize(
    ("fields", "field", "allowed"),
    [
        ({"kind": "batch"}, "kind", "interactive, autonomous, acp"),
        ({"status": "done"}, "status", "active, completed, failed, cancelled, unknown"),
        ({"state": "busy"}, "state", "idle, running, error"),
        ({"channel": "fax"}, "channel", "cli, tui, telegram, discord, slack, acp"),
        ({"created_at": "yesterday"}, "created_at", "RFC 3339"),
        ({"last_active_at": "2026-03-01T10:00:00"}, "last_active_at", "RFC 3339"),
        ({"turns": -1}, "turns", "non-negative"),
        ({"prompt_tokens": 1.5}, "prompt_tokens", "non-negative integer"),
        ({"metadata": {"a": 1}}, "metadata.a", "string"),
        ({"metadata": ["a"]}, "metadata", "object"),
        ({"colour": "red"}, "colour", "accepted"),
        ({"name": "x" * 256}, "name", "at most 255"),
        ({"agent": "a\nb"}, "agent", "control characters"),
        ({"goal_text": "nul\x00"}, "goal_text", "NUL"),
        ({"todo": "\udfff"}, "todo", "surrogates"),
    ],
)
def test_bad_fields_are_refused_and_nothing_is_written(
    fields: dict, field: str, allowed: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        services.session_upsert(key="k", fields=fields)

    assert caught.value.field == field
    assert allowed in caught.value.message
    assert not Session.objects.exists()
    assert DailyUsage.objects.count() == 0


def test_a_refused_update_leaves_the_session_as_it_was() -> None:
    upsert(name="n", now=T0)

    with pytest.raises(InvalidInput):
        services.session_upsert(key="k", fields={"name": "m", "status": "zombie"}, now=T1)

    row = stored()
    assert (row.name, row.last_active_at) == ("n", T0)


def test_read_only_fields_echoed_back_are_ignored() -> None:
    upsert(name="n")

    services.session_upsert(
        key="k", fields={"key": "other", "message_count": 99, "id": 7, "name": "m"}
    )

    row = stored()
    assert (row.key, row.message_count, row.name) == ("k", 0, "m")


def test_upsert_refuses_a_deleted_key() -> None:
    upsert()
    services.session_delete(key="k")

    with pytest.raises(SessionGone):
        upsert(name="again")

    assert not Session.objects.exists()


# --- status ------------------------------------------------------------------------


def test_set_status_ends_the_session() -> None:
    upsert(state="running", now=T0)

    services.session_set_status(key="k", status="cancelled", now=T1)

    row = stored()
    assert (row.status, row.ended_at, row.state, row.last_active_at) == (
        "cancelled",
        T1,
        "idle",
        T1,
    )


def test_set_status_refuses_unknown_values_and_sessions() -> None:
    upsert()

    with pytest.raises(InvalidInput) as caught:
        services.session_set_status(key="k", status="paused")
    assert caught.value.field == "status"
    assert "active, completed, failed, cancelled, unknown" in caught.value.message

    with pytest.raises(SessionNotFound):
        services.session_set_status(key="missing", status="completed")


def test_set_status_refuses_a_deleted_key() -> None:
    upsert()
    services.session_delete(key="k")

    with pytest.raises(SessionGone):
        services.session_set_status(key="k", status="completed")

    assert not Session.objects.exists()


def test_set_status_refuses_a_bad_key_as_invalid_input() -> None:
    with pytest.raises(InvalidInput) as caught:
        services.session_set_status(key="nul\x00", status="completed")

    assert caught.value.field == "key"


# --- reconcile: mark unknown ---------------------------------------------------------


def test_mark_unknown_refuses_an_except_list_past_its_bound_whoever_calls() -> None:
    upsert("a1", agent="bot")
    keys = [f"k{n}" for n in range(MAX_EXCEPT_KEYS + 1)]

    with pytest.raises(InvalidInput) as refused:
        services.sessions_mark_unknown(agent="bot", except_keys=keys)

    assert refused.value.field == "except"
    assert refused.value.message == f"must list at most {MAX_EXCEPT_KEYS} keys"
    with pytest.raises(InvalidInput, match="must be a list of session keys"):
        services.sessions_mark_unknown(agent="bot", except_keys="a1")  # type: ignore[arg-type]
    assert Session.objects.get(key="a1").status == "active"
    assert services.sessions_mark_unknown(agent="bot", except_keys=keys[:-1]) == 1


def test_mark_unknown_marks_the_agents_active_sessions_except_the_listed_ones() -> None:
    upsert("a1", agent="bot", state="running", turn_id="t")
    upsert("a2", agent="bot")
    upsert("keep", agent="bot")
    upsert("done", agent="bot", status="completed")
    upsert("other", agent="other-bot")

    marked = services.sessions_mark_unknown(agent="bot", except_keys=["keep"])

    assert marked == 2
    statuses = dict(Session.objects.values_list("key", "status"))
    assert statuses == {
        "a1": "unknown",
        "a2": "unknown",
        "keep": "active",
        "done": "completed",
        "other": "active",
    }
    a1 = stored("a1")
    assert (a1.state, a1.turn_id, a1.turn_started_at) == ("idle", "", None)


def test_new_activity_revives_an_unknown_session() -> None:
    upsert("appended", agent="bot")
    upsert("turn", agent="bot")
    upsert("quiet", agent="bot")
    upsert("retried", agent="bot")
    services.messages_append(key="retried", messages=[{"role": "user", "message_id": "m1"}])
    services.sessions_mark_unknown(agent="bot")

    services.messages_append(key="appended", messages=[{"role": "user", "content": "back"}])
    upsert("turn", state="running", turn_id="t2")
    upsert("quiet", name="renamed")
    services.messages_append(key="retried", messages=[{"role": "user", "message_id": "m1"}])

    statuses = dict(Session.objects.values_list("key", "status"))
    assert statuses == {
        "appended": "active",
        "turn": "active",
        "quiet": "unknown",
        "retried": "unknown",
    }


def test_mark_unknown_is_idempotent() -> None:
    upsert("a1", agent="bot")

    assert services.sessions_mark_unknown(agent="bot") == 1
    assert services.sessions_mark_unknown(agent="bot") == 0


@pytest.mark.parametrize(
    ("agent", "except_keys", "field"),
    [
        ("", [], "agent"),
        (None, [], "agent"),
        ("bot", [""], "except[0]"),
        ("bot", ["ok", 5], "except[1]"),
    ],
)
def test_mark_unknown_refuses_bad_input(agent: Any, except_keys: list, field: str) -> None:
    upsert("a1", agent="bot")

    with pytest.raises(InvalidInput) as caught:
        services.sessions_mark_unknown(agent=agent, except_keys=except_keys)

    assert caught.value.field == field
    assert stored("a1").status == "active"


# --- delete --------------------------------------------------------------------------


def test_delete_removes_messages_leaves_a_tombstone_and_keeps_the_rollup() -> None:
    services.messages_append(
        key="k",
        messages=[
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b", "usage": {"prompt_tokens": 5, "cost_usd": "1"}},
        ],
    )
    services.messages_append(key="other", messages=[{"role": "user", "content": "x"}])
    rollup_before = rollup_rows()

    services.session_delete(key="k", now=T1)

    assert not Session.objects.filter(key="k").exists()
    assert list(Message.objects.values_list("session__key", flat=True)) == ["other"]
    assert Tombstone.objects.get(key="k").deleted_at == T1
    assert rollup_rows() == rollup_before


def test_delete_twice_says_gone_and_unknown_says_not_found() -> None:
    upsert()
    services.session_delete(key="k")

    with pytest.raises(SessionGone) as gone:
        services.session_delete(key="k")
    with pytest.raises(SessionNotFound) as missing:
        services.session_delete(key="never")

    assert (gone.value.code, missing.value.code) == ("gone", "not_found")
    assert Tombstone.objects.count() == 1


# --- turn durations (issue 17) ----------------------------------------------------


def turn_rows() -> list[tuple[Any, ...]]:
    from sessions.models import LatencyUsage

    return list(
        LatencyUsage.objects.filter(kind="turn", count__gt=0)
        .order_by("day", "agent", "model", "bucket")
        .values_list("day", "agent", "model", "bucket", "count", "sum_ms")
    )


@pytest.mark.parametrize("end", [{"state": "idle"}, {"state": "error"}, {"status": "completed"}])
def test_a_turn_that_ends_counts_its_exact_duration_on_the_day_it_ended(
    end: dict[str, Any],
) -> None:
    from sessions.latency import bucket_of

    upsert(agent="bot", model="m1", state="running")
    upsert(now=T1 + timedelta(milliseconds=250), **end)

    five_minutes = 5 * 60 * 1000 + 250
    assert turn_rows() == [(T1.date(), "bot", "m1", bucket_of(five_minutes), 1, five_minutes)]


def test_a_turn_still_running_or_a_session_never_running_counts_no_turn() -> None:
    upsert(agent="bot", state="running")
    upsert(now=T1, state="running", name="renamed")
    upsert(key="other", state="idle")
    upsert(key="other", now=T1, state="error")

    assert turn_rows() == []


def test_a_turn_ended_by_an_append_or_a_status_change_counts_once() -> None:
    upsert(agent="bot", state="running")
    services.messages_append(
        key="k", messages=[{"role": "user", "content": "q"}], session={"state": "idle"}, now=T1
    )
    upsert(now=T2, state="running")
    services.session_set_status(key="k", status="cancelled", now=T2 + timedelta(seconds=2))

    assert [(row[4], row[5]) for row in turn_rows()] == [(1, 2000), (1, 5 * 60 * 1000)]


def test_a_turn_started_in_the_future_counts_zero_not_a_negative_duration() -> None:
    upsert(state="running", turn_started_at=(T1 + timedelta(hours=1)).isoformat())
    upsert(now=T1, state="idle")

    assert [(row[3], row[5]) for row in turn_rows()] == [(0, 0)]


def test_a_finished_turn_is_recorded_for_the_session_with_its_id_and_outcome() -> None:
    from sessions.models import Turn

    upsert(state="running", turn_id="t1")
    upsert(now=T1, state="error")
    upsert(now=T1, state="running", turn_id="t2")
    upsert(now=T2, state="idle")

    turns = list(
        Turn.objects.filter(session__key="k")
        .order_by("ended_at")
        .values_list("turn_id", "started_at", "ended_at", "duration_ms", "outcome")
    )
    assert turns == [
        ("t1", T0, T1, 300_000, "error"),
        ("t2", T1, T2, 300_000, "idle"),
    ]


def test_marking_an_agents_sessions_unknown_ends_their_running_turns_as_unknown() -> None:
    from sessions.models import LatencyUsage, Turn

    upsert("running", agent="bot", model="o3", state="running", turn_id="t1")
    upsert("idle", agent="bot")
    upsert("kept", agent="bot", state="running", turn_id="t2")

    assert services.sessions_mark_unknown(agent="bot", except_keys=["kept"]) == 2

    ((key, turn_id, started, outcome),) = Turn.objects.values_list(
        "session__key", "turn_id", "started_at", "outcome"
    )
    assert (key, turn_id, started, outcome) == ("running", "t1", T0, "unknown")
    rollup = LatencyUsage.objects.filter(kind="turn").values_list("agent", "model", "count")
    assert list(rollup) == [("bot", "o3", 1)]


def test_deleting_a_session_deletes_its_turns_and_keeps_the_latency_rollup() -> None:
    from sessions.models import LatencyUsage, Turn

    upsert(state="running")
    upsert(now=T1, state="idle")

    services.session_delete(key="k", now=T2)

    assert not Turn.objects.exists()
    assert LatencyUsage.objects.filter(kind="turn").count() == 1
