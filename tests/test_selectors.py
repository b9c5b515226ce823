"""Reads: the context view, pending tool calls, usage, and the session querysets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from fleet.forms import SORTS
from sessions import selectors, services
from sessions.errors import SessionGone, SessionNotFound
from sessions.models import Message, Session

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def call(call_id: str, name: str = "tool") -> dict[str, Any]:
    return {"id": call_id, "name": name, "arguments": {"x": 1}}


def append(key: str, *messages: dict[str, Any], **kwargs: Any) -> None:
    services.messages_append(key=key, messages=list(messages), **kwargs)


def session(key: str = "k") -> Session:
    return Session.objects.get(key=key)


# --- context view ----------------------------------------------------------------------


def test_the_context_view_keeps_answered_calls_in_order() -> None:
    append(
        "k",
        {"role": "user", "content": "list files"},
        {"role": "assistant", "tool_calls": [call("c1"), call("c2")]},
        {"role": "tool", "tool_call_id": "c1", "content": "a"},
        {"role": "tool", "tool_call_id": "c2", "content": "b"},
        {"role": "assistant", "content": "done"},
    )

    context = selectors.messages_context(session())

    assert [m.seq for m in context] == [1, 2, 3, 4, 5]
    assert [c["id"] for c in context[1].tool_calls] == ["c1", "c2"]


def test_the_context_view_drops_a_result_whose_call_was_archived() -> None:
    append(
        "k",
        {"role": "user", "content": "q"},
        {"role": "assistant", "tool_calls": [call("c1")]},
        {"role": "tool", "tool_call_id": "c1", "content": "result"},
        {"role": "assistant", "content": "answer"},
    )
    services.session_compact(key="k", summary="summary", keep=2)

    context = selectors.messages_context(session())

    assert [(m.role, m.content) for m in context] == [
        ("system", "summary"),
        ("assistant", "answer"),
    ]


def test_the_context_view_drops_assistant_turns_that_give_the_model_nothing() -> None:
    append(
        "k",
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "  \n"},  # blank: providers refuse it
        {"role": "assistant", "content": "half an ans", "status": "incomplete"},
        {"role": "assistant", "content": "", "reasoning": "thought about it"},
        {"role": "assistant", "content": "answer", "status": "complete"},
    )

    context = selectors.messages_context(session())

    assert [m.seq for m in context] == [1, 4, 5]
    assert [m.seq for m in selectors.messages_all(session())] == [1, 2, 3, 4, 5]


def test_the_context_view_drops_a_call_without_its_result() -> None:
    append(
        "k",
        {"role": "user", "content": "q"},
        {"role": "assistant", "tool_calls": [call("c1")]},
    )

    context = selectors.messages_context(session())

    assert [m.seq for m in context] == [1]


def test_the_context_view_keeps_the_text_of_a_message_with_unanswered_calls() -> None:
    append(
        "k",
        {"role": "assistant", "content": "let me look", "tool_calls": [call("c1"), call("c2")]},
        {"role": "tool", "tool_call_id": "c2", "content": "found"},
    )

    context = selectors.messages_context(session())

    assert [m.seq for m in context] == [1, 2]
    assert context[0].content == "let me look"
    assert context[0].tool_calls == [call("c2")]
    # The view is a view: the stored message keeps both calls.
    assert len(Message.objects.get(seq=1).tool_calls) == 2


def test_the_context_view_keeps_reasoning_with_dropped_calls() -> None:
    append("k", {"role": "assistant", "reasoning": "hmm", "tool_calls": [call("c1")]})

    (message,) = selectors.messages_context(session())

    assert (message.reasoning, message.tool_calls) == ("hmm", [])


def test_the_context_view_drops_a_result_for_a_call_never_made() -> None:
    append(
        "k",
        {"role": "user", "content": "q"},
        {"role": "tool", "tool_call_id": "ghost", "content": "?"},
    )

    assert [m.seq for m in selectors.messages_context(session())] == [1]


def test_the_full_view_is_every_message_in_order() -> None:
    append(
        "k",
        {"role": "assistant", "tool_calls": [call("c1")]},
        {"role": "user", "content": "x"},
    )
    services.session_compact(key="k", summary="s", keep=1)

    assert [m.seq for m in selectors.messages_all(session())] == [1, 2, 3]


# --- pending tool calls, last messages, recent users -----------------------------------------


def seqs(page: selectors.MessageSlice) -> list[int]:
    return [message.seq for message in page.messages]


def test_the_newest_messages_come_in_order_with_whether_older_ones_exist() -> None:
    append("k", *({"role": "user", "content": str(n)} for n in range(1, 8)))

    assert seqs(selectors.messages_newest(session(), limit=3)) == [5, 6, 7]
    assert selectors.messages_newest(session(), limit=3).more is True
    assert seqs(selectors.messages_newest(session(), limit=3, before=3)) == [1, 2]
    assert selectors.messages_newest(session(), limit=3, before=3).more is False
    since = selectors.messages_newest(session(), limit=2, since=4)
    assert (seqs(since), since.more) == ([6, 7], True)


def test_the_oldest_messages_after_a_seq_come_in_order_with_whether_newer_ones_exist() -> None:
    append("k", *({"role": "user", "content": str(n)} for n in range(1, 6)))

    page = selectors.messages_oldest(session(), after=1, limit=2)
    assert (seqs(page), page.more) == ([2, 3], True)
    page = selectors.messages_oldest(session(), after=3, limit=2)
    assert (seqs(page), page.more) == ([4, 5], False)


def test_pending_tool_calls_are_calls_without_an_answer() -> None:
    append(
        "k",
        {"role": "assistant", "tool_calls": [call("c1", "ls"), call("c2", "cat")]},
        {"role": "tool", "tool_call_id": "c1", "content": "a"},
        {"role": "assistant", "content": "and", "tool_calls": [call("c3", "grep")]},
    )

    pending = selectors.pending_tool_calls(session())

    assert [(p.message.seq, p.call["id"], p.call["name"]) for p in pending] == [
        (1, "c2", "cat"),
        (3, "c3", "grep"),
    ]


def test_archived_calls_are_not_pending() -> None:
    append(
        "k",
        {"role": "assistant", "tool_calls": [call("c1")]},
        {"role": "user", "content": "never mind"},
    )
    services.session_compact(key="k", summary="s", keep=1)

    assert selectors.pending_tool_calls(session()) == []


def test_no_calls_means_nothing_pending() -> None:
    append("k", {"role": "assistant", "content": "hi"}, {"role": "user", "content": "x"})

    assert selectors.pending_tool_calls(session()) == []


def test_last_message_by_role() -> None:
    append(
        "k",
        {"role": "user", "content": "u1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "u2"},
        {"role": "assistant", "content": "a2"},
        {"role": "tool", "tool_call_id": "x", "content": "t"},
    )

    assert selectors.last_message(session(), "user").content == "u2"
    assert selectors.last_message(session(), "assistant").content == "a2"
    assert selectors.last_message(session(), "system") is None


def test_recent_user_messages_across_sessions_newest_first() -> None:
    append(
        "a",
        {"role": "user", "content": "a1", "created_at": "2026-03-01T10:00:00Z"},
        {"role": "assistant", "content": "reply", "created_at": "2026-03-01T10:30:00Z"},
        {"role": "user", "content": "a2", "created_at": "2026-03-01T12:00:00Z"},
        session={"agent": "alpha"},
    )
    append(
        "b",
        {"role": "user", "content": "b1", "created_at": "2026-03-01T11:00:00Z"},
        session={"agent": "beta"},
    )

    recent = selectors.recent_user_messages()

    assert [m.content for m in recent] == ["a2", "b1", "a1"]
    assert recent[0].session.key == "a"
    assert [m.content for m in selectors.recent_user_messages(limit=2)] == ["a2", "b1"]
    assert [m.content for m in selectors.recent_user_messages(agent="beta")] == ["b1"]


def test_recent_messages_of_a_role_limited_to_agents_do_not_load_the_session() -> None:
    append("a", {"role": "user", "content": "a1"}, session={"agent": "alpha", "todo": "big"})
    append("b", {"role": "user", "content": "b1"}, session={"agent": "beta"})
    append("c", {"role": "assistant", "content": "c1"}, session={"agent": "alpha"})

    recent = selectors.recent_messages(role="user", agents=["alpha"])

    assert [(r.message.content, r.session_key, r.session_agent) for r in recent] == [
        ("a1", "a", "alpha")
    ]
    assert selectors.recent_messages(role="user", agent="beta", agents=["alpha"]) == []
    assert [r.message.content for r in selectors.recent_messages(role="assistant")] == ["c1"]


def test_last_message_of_any_role() -> None:
    append("k", {"role": "user", "content": "u1"}, {"role": "assistant", "content": "a1"})

    assert selectors.last_message(session()).content == "a1"


# --- usage -----------------------------------------------------------------------------


def test_usage_by_agent_groups_an_empty_agent_name_as_main() -> None:
    append(
        "k",
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a", "usage": {"prompt_tokens": 10, "cost_usd": "0.1"}},
        {
            "role": "assistant",
            "content": "b",
            "agent_name": "researcher",
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "cost_usd": "0.02"},
        },
        {
            "role": "assistant",
            "content": "c",
            "agent_name": "researcher",
            "model": "acme-llm-9",
            "usage": {"prompt_tokens": 1},
        },
        {"role": "assistant", "content": "d", "agent_name": "", "usage": {"cost_usd": "0.3"}},
    )

    rows = {row["agent_name"]: row for row in selectors.usage_by_agent(session())}

    assert set(rows) == {"main", "researcher"}
    main, researcher = rows["main"], rows["researcher"]
    assert (main["messages"], main["api_calls"], main["prompt_tokens"]) == (3, 2, 10)
    assert main["cost_usd"] == Decimal("0.4")
    assert (researcher["messages"], researcher["api_calls"], researcher["unpriced_calls"]) == (
        2,
        2,
        1,
    )
    assert (researcher["prompt_tokens"], researcher["completion_tokens"]) == (6, 2)
    assert researcher["cost_usd"] == Decimal("0.02")


def test_session_usage_is_the_stored_totals() -> None:
    append(
        "k",
        {
            "role": "assistant",
            "content": "a",
            "tool_calls": [call("c")],
            "usage": {"prompt_tokens": 7, "cost_usd": "0.5"},
        },
    )
    services.messages_clear(key="k")

    usage = selectors.session_usage(session())

    assert usage["message_count"] == 0
    assert (usage["turns"], usage["tool_call_count"], usage["api_calls"]) == (1, 1, 1)
    assert (usage["prompt_tokens"], usage["cost_usd"]) == (7, Decimal("0.5"))


# --- session querysets -------------------------------------------------------------------


def upsert(key: str, now: datetime = T0, **fields: Any) -> None:
    services.session_upsert(key=key, fields=fields, now=now)


def keys(queryset: Any) -> list[str]:
    return [s.key for s in queryset]


def test_running_sessions_newest_turn_first() -> None:
    upsert("old", state="running", now=T0)
    upsert("new", state="running", now=T0 + timedelta(minutes=5))
    upsert("idle")
    upsert("ended", state="running")
    services.session_set_status(key="ended", status="completed")
    upsert("lost", agent="bot", state="running")
    services.sessions_mark_unknown(agent="bot")

    assert keys(Session.objects.running()) == ["new", "old"]


def test_stuck_sessions_are_running_longer_than_the_threshold_oldest_first() -> None:
    upsert("a", state="running", now=T0)
    upsert("b", state="running", now=T0 - timedelta(minutes=30))
    upsert("fresh", state="running", now=T0 + timedelta(minutes=10))
    upsert("idle", now=T0 - timedelta(hours=1))
    now = T0 + timedelta(minutes=15)

    assert keys(Session.objects.stuck(older_than=timedelta(minutes=15), now=now)) == ["b", "a"]
    assert keys(Session.objects.stuck(older_than=timedelta(minutes=16), now=now)) == ["b"]


def test_a_long_turn_is_stuck_even_while_its_session_keeps_writing() -> None:
    upsert("busy", state="running", now=T0 - timedelta(hours=1))
    append("busy", {"role": "user", "content": "still here"}, now=T0)
    upsert("silent", state="running", now=T0 - timedelta(hours=1))

    stuck = Session.objects.stuck(T0, older_than=timedelta(minutes=15))

    assert sorted(keys(stuck)) == ["busy", "silent"]
    # Reconcile's extra condition narrows the shared rule to the silent ones.
    assert keys(stuck.silent_since(T0 - timedelta(minutes=15))) == ["silent"]


def test_stuck_and_stale_default_to_the_settings(settings: Any) -> None:
    settings.FLEET_STUCK_AFTER = 600
    settings.FLEET_STALE_AFTER = 1200
    upsert("a", state="running", now=T0)

    assert keys(Session.objects.stuck(T0 + timedelta(seconds=599))) == []
    assert keys(Session.objects.stuck(T0 + timedelta(seconds=600))) == ["a"]
    assert keys(Session.objects.stale(T0 + timedelta(seconds=1199))) == []
    assert keys(Session.objects.stale(T0 + timedelta(seconds=1200))) == ["a"]


def test_started_today_counts_from_utc_midnight() -> None:
    midnight = datetime(2026, 3, 1, tzinfo=UTC)
    upsert("late", now=midnight - timedelta(microseconds=1))
    upsert("early", now=midnight)

    assert keys(Session.objects.started_today(midnight + timedelta(hours=23))) == ["early"]


def test_stale_sessions_are_active_without_activity_least_recent_first() -> None:
    upsert("a", now=T0)
    upsert("b", now=T0 - timedelta(hours=1))
    upsert("fresh", now=T0 + timedelta(minutes=29))
    upsert("done", status="completed", now=T0 - timedelta(hours=2))
    now = T0 + timedelta(minutes=30)

    assert keys(Session.objects.stale(older_than=timedelta(minutes=30), now=now)) == ["b", "a"]


def test_a_write_makes_a_session_fresh_again() -> None:
    upsert("a", now=T0)
    append("a", {"role": "user", "content": "hi"}, now=T0 + timedelta(minutes=40))

    stale = Session.objects.stale(older_than=timedelta(minutes=30), now=T0 + timedelta(minutes=45))

    assert keys(stale) == []


def test_filtered_sessions_newest_activity_first() -> None:
    upsert("a", agent="bot", channel="cli", model="m1", project_root="/p", now=T0)
    upsert("b", agent="bot", channel="slack", model="m1", now=T0 + timedelta(minutes=1))
    upsert("c", agent="other", kind="autonomous", now=T0 + timedelta(minutes=2))
    upsert("d", agent="bot", status="failed", state="idle", now=T0 + timedelta(minutes=3))

    assert keys(Session.objects.listing()) == ["d", "c", "b", "a"]
    assert keys(Session.objects.listing(agent="bot")) == ["d", "b", "a"]
    assert keys(Session.objects.listing(agent="bot", status="active")) == ["b", "a"]
    assert keys(Session.objects.listing(channel="cli")) == ["a"]
    assert keys(Session.objects.listing(model="m1", channel="")) == ["b", "a"]
    assert keys(Session.objects.listing(kind="autonomous", state="idle")) == ["c"]
    assert keys(Session.objects.listing(project_root="/p", agent=None)) == ["a"]


def test_filtered_refuses_unknown_filters() -> None:
    with pytest.raises(TypeError, match="colour"):
        Session.objects.listing(colour="red")


def test_listing_filters_by_health_and_text() -> None:
    upsert("run", state="running", name="deploy bot", now=T0)
    upsert("hung", state="running", now=T0 - timedelta(hours=2))
    upsert("quiet", now=T0 - timedelta(hours=2))
    now = T0 + timedelta(minutes=1)

    assert keys(Session.objects.listing(health="running", now=now)) == ["run", "hung"]
    assert keys(Session.objects.listing(health="stuck", now=now)) == ["hung"]
    assert keys(Session.objects.listing(health="stale", now=now)) == ["quiet", "hung"]
    assert keys(Session.objects.listing(health="running", q="DEPLOY", now=now)) == ["run"]
    with pytest.raises(TypeError, match="sleepy"):
        Session.objects.listing(health="sleepy")


def test_message_querysets() -> None:
    append(
        "k",
        {"role": "user", "content": "u", "usage": {"prompt_tokens": 1}},
        {"role": "assistant", "tool_calls": [call("c1")]},
        {"role": "assistant", "content": "plain"},
    )
    services.session_compact(key="k", summary="s", keep=2)
    messages = Message.objects.for_session(session())

    assert [m.seq for m in messages.archived()] == [1]
    assert [m.seq for m in messages.not_archived().in_order()] == [2, 3, 4]
    assert [m.seq for m in messages.context()] == [4, 2, 3]
    assert [m.seq for m in messages.with_usage()] == [1]
    assert [m.seq for m in messages.with_tool_calls()] == [2]


# --- one session by key ----------------------------------------------------------------


def test_session_get_reads_the_session_by_key() -> None:
    upsert("here")

    assert selectors.session_get("here").key == "here"


def test_session_get_tells_a_deleted_key_from_one_that_never_existed() -> None:
    upsert("gone")
    services.session_delete(key="gone", now=T0)

    with pytest.raises(SessionGone) as gone:
        selectors.session_get("gone")
    with pytest.raises(SessionNotFound):
        selectors.session_get("never")

    assert gone.value.deleted_at == T0


# --- the slowest calls -------------------------------------------------------------------


def timed(role: str, duration_ms: int | None, **fields: Any) -> dict[str, Any]:
    if role == "tool":
        fields.setdefault("tool_call_id", "c")
        fields.setdefault("name", "grep")
    return {"role": role, "content": "x", "duration_ms": duration_ms, **fields}


def test_the_slowest_calls_are_the_timed_calls_and_tool_runs_slowest_first() -> None:
    append(
        "k",
        timed("user", None),
        timed("assistant", 1200, model="o3", time_to_first_token_ms=300),
        timed("tool", 40),
        timed("assistant", None),
        timed("tool", 9000, name="bash"),
        timed("assistant", 1200),
        timed("assistant", 5),
    )
    append("other", timed("assistant", 99_000))

    slowest = selectors.session_slowest_calls(session(), limit=4)

    assert [(m.seq, m.role, m.duration_ms) for m in slowest] == [
        (5, "tool", 9000),
        (6, "assistant", 1200),  # a tie: the later first
        (2, "assistant", 1200),
        (3, "tool", 40),
    ]
    assert (slowest[0].name, slowest[2].model, slowest[2].time_to_first_token_ms) == (
        "bash",
        "o3",
        300,
    )


def test_the_slowest_calls_are_one_query_reading_no_content() -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    append("k", *(timed("assistant", n) for n in range(50)))
    stored = session()

    with CaptureQueriesContext(connection) as queries:
        assert len(selectors.session_slowest_calls(stored, limit=10)) == 10

    (query,) = queries.captured_queries
    assert '"content"' not in query["sql"]
    assert '"tool_calls"' not in query["sql"]
    assert "LIMIT 10" in query["sql"]


def test_the_slowest_calls_query_reads_the_duration_index(sqlite_only: None) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    append("k", timed("assistant", 10))
    stored = session()
    with CaptureQueriesContext(connection) as queries:
        selectors.session_slowest_calls(stored, limit=10)
    (query,) = queries.captured_queries
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN QUERY PLAN {query['sql']}")
        plan = " ".join(str(row) for row in cursor.fetchall())
    assert "message_session_duration_idx" in plan, plan
    assert "TEMP B-TREE" not in plan, plan


# --- the sessions table (issue 16) -----------------------------------------------------


def table_fleet() -> None:
    """Sessions with ties in every sort column (the ties' order is what plans risk)."""
    Session.objects.bulk_create(
        Session(
            key=f"t{n}",
            name=f"name {n % 3}",
            agent=("koda", "zeph")[n % 2],
            model=("o3", "gpt-5", "")[n % 3],
            status=("completed", "active", "failed")[n % 3],
            channel="cli",
            last_active_at=T0 - timedelta(minutes=n % 4),
            turns=n % 3,
            prompt_tokens=100 * (n % 2),
            completion_tokens=10 * (n % 2),
            cost_usd=Decimal(n % 2),
        )
        for n in range(24)
    )


TABLE_SORTS = ["-last_active_at", "status", "agent", "model", "name", "turns", "token_total"]
TABLE_SORTS += ["cost_usd", "created_at", "message_count"]


@pytest.mark.parametrize("direction", ["", "-"])
@pytest.mark.parametrize("sort", TABLE_SORTS)
def test_the_table_rows_come_in_the_same_order_whatever_the_plan(sort: str, direction: str) -> None:
    table_fleet()
    name = direction + sort.lstrip("-")
    order = [name, "key"] if name.lstrip("-") == "name" else [name]

    def keys(matches: int | None) -> list[str]:
        rows = selectors.session_rows(
            now=T0, order=order, goal_chars=10, matches=matches, channel="cli", agent="koda"
        )
        return [s.key for s in rows]

    planned = keys(None)
    assert len(planned) == 12
    assert keys(3) == planned  # few: the matches sorted
    assert keys(selectors.SORT_MATCHES_BELOW) == planned  # many: the sort's index walked


def test_a_table_with_many_matches_checks_its_filters_on_the_rows_it_walks() -> None:
    from django.db import connection

    many = selectors.session_rows(
        now=T0, order=["-cost_usd"], goal_chars=10, matches=5000, agent="koda"
    )
    few = selectors.session_rows(
        now=T0, order=["-cost_usd"], goal_chars=10, matches=5, agent="koda"
    )

    many_sql, few_sql = str(many.query), str(few.query)
    if connection.vendor == "sqlite":
        # Many: the filter is not looked up in its index, so the cost index is walked.
        assert '+"agent_sessions_session"."agent" =' in many_sql
        assert 'ORDER BY "agent_sessions_session"."cost_usd" DESC' in many_sql
        # Few: the filter's index finds them; the order is not walked.
        assert 'WHERE "agent_sessions_session"."agent" =' in few_sql
        assert 'ORDER BY +"agent_sessions_session"."cost_usd" DESC' in few_sql
    else:
        assert many_sql == few_sql  # PostgreSQL plans from its statistics


def test_a_count_that_stopped_below_the_threshold_still_walks_the_order() -> None:
    from django.db import connection

    # A count that stopped at its cap says "at least", not "few": the text
    # filter's 1 000 (fleet.views.fleet.TEXT_COUNT_CAP) is below SORT_MATCHES_BELOW.
    stopped = selectors.session_rows(
        now=T0, order=["-cost_usd"], goal_chars=10, matches=5, exact=False, agent="koda"
    )
    many = selectors.session_rows(
        now=T0, order=["-cost_usd"], goal_chars=10, matches=5000, agent="koda"
    )

    assert str(stopped.query) == str(many.query)
    if connection.vendor == "sqlite":
        assert 'ORDER BY "agent_sessions_session"."cost_usd" DESC' in str(stopped.query)


def sort_index(sort: str) -> str:
    """The index that serves ``sort`` (then newest activity, then id)."""
    key = sort.lstrip("-")
    if key in ("last_active", "created", "name"):  # either direction, one index
        return {"last_active": "session_activity_idx", "created": "session_created_idx"}.get(
            key, "session_name_idx"
        )
    return f"session_{key}{'_desc' if sort.startswith('-') else ''}_idx"


@pytest.mark.parametrize("direction", ["", "-"])
@pytest.mark.parametrize("sort", sorted(SORTS))
def test_every_sort_the_table_offers_reads_an_index_in_its_order(sort: str, direction: str) -> None:
    """No sort of the sessions for any sort link: the rows come from the index
    in that order (ties in equal timestamps aside: SQLite's "right part")."""
    from django.db import connection

    from fleet.views.fleet import _rows

    table_fleet()
    sql, params = _rows({}, direction + sort, T0)[:50].query.sql_with_params()
    index = sort_index(direction + sort)
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
            plan = [str(row[-1]) for row in cursor.fetchall()]
            assert plan[0] == f"SCAN agent_sessions_session USING INDEX {index}", plan
            assert "USE TEMP B-TREE FOR ORDER BY" not in plan, plan
        else:
            # A tiny table: make the planner show what it would do with a large
            # one. The indexes of 0015 hold the whole order (ties included);
            # older ones leave equal timestamps to an incremental sort.
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("SET LOCAL enable_sort = off")
            whole = index.endswith("_desc_idx") or sort in (
                "turns",
                "tokens",
                "cost",
                "name",
                "messages",
            )
            if whole:
                cursor.execute("SET LOCAL enable_incremental_sort = off")
            cursor.execute(f"EXPLAIN {sql}", params)
            plan = [str(row[0]).strip() for row in cursor.fetchall()]
            if whole:
                # (Otherwise, on 24 rows, reading another index backwards and
                # sorting its ties costs the planner as little.)
                assert [line for line in plan if f"using {index} on" in line], plan
            assert [line for line in plan if "Index Scan" in line], plan
            assert not [line for line in plan if line.startswith(("Sort  (", "->  Sort  ("))], plan


@pytest.mark.parametrize("direction", ["", "-"])
@pytest.mark.parametrize(
    ("field", "index"),
    [("project_root", "session_project_name_idx"), ("agent", "session_agent_name_idx")],
)
def test_a_name_ordered_walk_of_one_project_or_agent_reads_only_its_sessions(
    sqlite_only: None, field: str, index: str, direction: str
) -> None:
    """Names start with their project: walking the name index for one
    project's many sessions passed every other project's sessions before its
    page (issue 16). Migration 0022's index holds each project's (and
    agent's) sessions in name order; the other filters are still checked on
    the rows walked."""
    from django.db import connection

    table_fleet()
    Session.objects.filter(agent="koda").update(project_root="/srv/koda")
    rows = selectors.session_rows(
        now=T0,
        order=[direction + "name", direction + "key"],
        goal_chars=10,
        matches=selectors.SORT_MATCHES_BELOW,  # many: the order is walked
        channel="cli",
        **{field: {"agent": "koda", "project_root": "/srv/koda"}[field]},
    )
    sql, params = rows[:50].query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
        plan = [str(row[-1]) for row in cursor.fetchall()]
    assert plan[0] == f"SEARCH agent_sessions_session USING INDEX {index} ({field}=?)", plan
    assert not [line for line in plan if "TEMP B-TREE" in line], plan
    assert '+"agent_sessions_session"."channel" =' in sql
    assert len(rows) == 12


@pytest.mark.parametrize(
    ("field", "index"),
    [
        ("agent", "session_agent_idx"),
        ("model", "session_model_idx"),
        ("channel", "session_channel_idx"),
        ("project_root", "session_project_idx"),
    ],
)
def test_a_filter_with_a_status_is_counted_in_the_filters_index_alone(
    sqlite_only: None, field: str, index: str
) -> None:
    """The table's commonest pair: a filter and a status. The filter indexes
    end with the status (0023), so the bounded count reads the filter's
    index entries only; before, it looked every session of the filter up in
    the table for its status (40 ms to count 10 000 of one channel's
    completed sessions at 100 000)."""
    from django.db import connection

    table_fleet()
    rows = Session.objects.listing(now=T0, status="completed", **{field: "x"})
    sql, params = rows.order_by().values("pk")[:1001].query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
        plan = [str(row[-1]) for row in cursor.fetchall()]

    assert plan == [f"SEARCH agent_sessions_session USING COVERING INDEX {index} ({field}=?)"]


def test_an_append_does_not_write_the_name_pair_indexes(sqlite_only: None) -> None:
    """SQLite writes only the indexes holding a column an UPDATE sets, and an
    append sets the session's counters by name: 0022's indexes cost it
    nothing (the reason they are SQLite's only: docs/DECISIONS.md)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    pairs = {"session_project_name_idx", "session_agent_name_idx"}

    def indexes_written(**fields: Any) -> set[str]:
        with CaptureQueriesContext(connection) as queries:
            append("k", {"role": "user", "content": "hi"}, **fields)
        (update,) = [
            q["sql"]
            for q in queries.captured_queries
            if q["sql"].startswith('UPDATE "agent_sessions_session"')
        ]
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT rootpage, name FROM sqlite_master WHERE tbl_name = %s",
                ["agent_sessions_session"],
            )
            names = dict(cursor.fetchall())
            cursor.execute(f"EXPLAIN {update}")
            program = cursor.fetchall()
        return {names[row[3]] for row in program if row[1] == "OpenWrite" and row[3] in names}

    append("k", {"role": "user", "content": "start"}, session={"agent": "koda"})
    assert "session_messages_idx" in indexes_written()  # the check sees an index written
    assert not pairs & indexes_written()
    assert pairs <= indexes_written(session={"name": "a new name"})


# --- the text filter (issue 16): an index serves it ------------------------------------

# Texts a LIKE pattern, an FTS5 query or a case rule could get wrong.
TEXT_FLEET = {
    "k-percent": ("100% done", ""),
    "k-under": ("a_b", "snake_case_name"),
    "k-plain": ("ab", "axb and aXb"),
    "k-quote": ('say "hi"', "it's"),
    "k-slash": ("back\\slash", "C:\\path"),
    "k-accent": ("Émile Zola", "café crème"),
    "k-greek": ("ΣΊΣΥΦΟΣ", ""),
    "k-MIXED": ("Deploy The Site", "Reconcile INVOICES"),
    "k-space": ("two  spaces", "a b c"),
}
TEXT_QUERIES = [
    "0% ",
    "% d",
    "a_b",
    "e_c",
    "axb",
    '"hi"',
    "it'",
    "k\\s",
    ":\\p",
    "émile",
    "ÉMILE",
    "CAFÉ",
    "σίσυφος",
    "deploy the",
    "invoices",
    "K-MIX",
    "o  s",
    "a b c",
    "b c",
    "k-p",
    "zzz",
    "%%%",
    "___",
]


def text_fleet() -> None:
    for n, (key, (name, goal)) in enumerate(TEXT_FLEET.items()):
        upsert(key, name=name, goal_text=goal, now=T0 + timedelta(minutes=n))


def holding(q: str) -> set[str]:
    """The keys whose key, name or goal's head holds ``q``, any case (the rule in Python)."""
    from sessions.querysets import GOAL_FILTER_CHARS

    return {
        s.key
        for s in Session.objects.all()
        if any(
            q.lower() in text.lower() for text in (s.key, s.name, s.goal_text[:GOAL_FILTER_CHARS])
        )
    }


def indexed_only() -> Any:
    """On PostgreSQL, plans that read an index whenever one serves (on a tiny table the
    planner would rather scan it); SQLite reads the FTS5 table either way."""
    from contextlib import nullcontext

    from django.db import connection, transaction

    if connection.vendor != "postgresql":
        return nullcontext()

    class _Indexed:
        def __enter__(self) -> None:
            self.atomic = transaction.atomic()
            self.atomic.__enter__()
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL enable_seqscan = off")

        def __exit__(self, *exc: Any) -> None:
            self.atomic.__exit__(*exc)

    return _Indexed()


@pytest.mark.parametrize("q", TEXT_QUERIES)
def test_the_text_filter_finds_a_substring_of_key_name_or_goal_in_any_case(q: str) -> None:
    text_fleet()

    with indexed_only():
        # Unordered, as the count reads it (PostgreSQL: a bitmap of the trigram indexes).
        found = set(Session.objects.listing(q=q).order_by().values_list("key", flat=True))
        walked = {
            s.key
            for s in selectors.session_rows(
                now=T0, order=["-cost_usd"], goal_chars=5, q=q, matches=selectors.SORT_MATCHES_BELOW
            )
        }

    assert found == holding(q)
    assert walked == found  # the walk's check (``indexed=False``) finds the same rows


@pytest.mark.parametrize("q", [q for q in TEXT_QUERIES if q.isascii()])
def test_the_text_filter_finds_what_a_scan_of_the_texts_finds(q: str) -> None:
    """The index changes how rows are found, not which: the same rows as the
    unindexed ``icontains`` scan (ASCII: SQLite's LIKE folds ASCII only)."""
    from django.db.models import Q
    from django.db.models.lookups import IContains

    from sessions.querysets import GoalHead

    text_fleet()
    scan = Q(key__icontains=q) | Q(name__icontains=q) | Q(IContains(GoalHead(), q))

    with indexed_only():
        # Unordered, as the count reads it (PostgreSQL: a bitmap of the trigram indexes).
        found = set(Session.objects.listing(q=q).order_by().values_list("key", flat=True))

    assert found == set(keys(Session.objects.filter(scan)))


def test_the_text_filter_reads_the_goal_s_first_thousand_characters() -> None:
    from sessions.querysets import GOAL_FILTER_CHARS

    head = "x" * (GOAL_FILTER_CHARS - 3)
    upsert("inside", goal_text=head + "abc")
    upsert("across", goal_text=head + "zabc")  # "abc" ends past the head
    upsert("beyond", goal_text=head + "xxxxabc")

    with indexed_only():
        assert keys(Session.objects.listing(q="abc")) == ["inside"]
        assert keys(Session.objects.listing(q="xza")) == ["across"]


def test_the_text_filter_follows_renames_goal_changes_and_deletes() -> None:
    upsert("k1", name="first name", goal_text="old goal")
    upsert("k2", name="other")

    upsert("k1", name="second name", goal_text="new goal")
    Session.objects.filter(key="k2").update(goal_text="a new goal too")
    append("k1", {"role": "user", "content": "an append keeps the index as it was"})

    with indexed_only():
        assert keys(Session.objects.listing(q="first")) == []
        assert keys(Session.objects.listing(q="old goal")) == []
        assert set(keys(Session.objects.listing(q="new goal"))) == {"k1", "k2"}
        assert keys(Session.objects.listing(q="second")) == ["k1"]
    services.session_delete(key="k1")
    upsert("k3", name="second coming")
    with indexed_only():
        assert keys(Session.objects.listing(q="new goal")) == ["k2"]
        assert keys(Session.objects.listing(q="second")) == ["k3"]


def text_index_writes() -> list[Any]:
    """What writing the text filter's index leaves behind. SQLite: the FTS5
    table's stored segments. PostgreSQL: the rows this transaction inserted,
    updated or deleted in each table holding a pg_trgm index."""
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT id, block FROM agent_sessions_session_text_data ORDER BY id")
        else:
            cursor.execute(
                "SELECT s.relname, s.n_tup_ins + s.n_tup_upd + s.n_tup_del "
                "FROM pg_stat_xact_user_tables s WHERE s.relid IN ("
                " SELECT i.indrelid FROM pg_index i"
                " JOIN pg_opclass o ON o.oid = ANY(i.indclass::oid[])"
                " WHERE o.opcname = 'gin_trgm_ops') ORDER BY s.relname"
            )
        return cursor.fetchall()


def test_an_append_does_not_write_the_text_filter_s_index() -> None:
    """A session row's update is never HOT on PostgreSQL: an index on the
    session table would get the texts' trigrams again on every append."""
    upsert("k1", name="a name", goal_text="a goal " * 2000)
    before = text_index_writes()
    assert before  # the index is there to be written

    append("k1", {"role": "user", "content": "one more message"})
    append(
        "k1", {"role": "user", "content": "and another"}, session={"goal_text": "a goal " * 2000}
    )

    assert text_index_writes() == before
    upsert("k1", name="a new name")  # the check can see a write
    assert text_index_writes() != before


def test_a_text_filter_shorter_than_a_trigram_is_refused() -> None:
    with pytest.raises(ValueError, match="3 characters"):
        Session.objects.listing(q="ab")


def text_plan(sql: str, params: Any) -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
            return "\n".join(str(row[-1]) for row in cursor.fetchall())
        # On a tiny table a walk of the text table's primary key is a scan too.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(str(row[0]) for row in cursor.fetchall())


def test_the_text_filter_s_count_and_page_read_its_index() -> None:
    """The count finds the matches in the text index rather than reading every
    session; a page of few matches reads them by id and sorts them."""
    from django.db import connection, transaction

    from fleet.views.fleet import TABLE_COUNT_CAP
    from sessions.querysets import text_ids_sql

    text_fleet()
    rows = selectors.session_rows(now=T0, order=["-cost_usd"], goal_chars=5, q="deploy")
    count = rows.order_by().values("pk")[: TABLE_COUNT_CAP + 1]
    few = selectors.session_rows(now=T0, order=["-cost_usd"], goal_chars=5, q="deploy", matches=1)
    with transaction.atomic():
        plans = [text_plan(*qs.query.sql_with_params()) for qs in (count, few[:50])]
        ids_plan = text_plan(*text_ids_sql("deploy", connection.vendor))

    if connection.vendor == "sqlite":
        for plan in plans:
            assert "SCAN agent_sessions_session_text VIRTUAL TABLE INDEX" in plan, plan
            assert "SEARCH agent_sessions_session USING INTEGER PRIMARY KEY" in plan, plan
            assert "SCAN agent_sessions_session\n" not in plan + "\n", plan
    else:
        # The ids come from the text table's trigram indexes; how they meet the
        # session table is PostgreSQL's choice from its statistics (a handful
        # of rows here; the 100k fleet's plans: bench/README.md).
        for index in ("key", "name", "goal"):
            assert f"Bitmap Index Scan on session_text_{index}_trgm_idx" in ids_plan, ids_plan
        for plan in plans:
            assert "agent_sessions_session_text" in plan, plan


def test_the_text_index_triggers_survive_every_migration(sqlite_only: None) -> None:
    # A later migration that rebuilds the session table would drop them silently.
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' "
            "AND tbl_name = 'agent_sessions_session' AND name LIKE '%text%' ORDER BY name"
        )
        names = [row[0] for row in cursor.fetchall()]
    assert names == [
        "agent_sessions_session_text_ad",
        "agent_sessions_session_text_ai",
        "agent_sessions_session_text_au",
    ]


def test_the_text_index_triggers_survive_every_migration_on_postgresql(
    postgres_only: None,
) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tgname FROM pg_trigger "
            "WHERE tgrelid = 'agent_sessions_session'::regclass AND NOT tgisinternal"
        )
        names = {row[0] for row in cursor.fetchall()}
    assert {
        "agent_sessions_session_text_ad",
        "agent_sessions_session_text_ai",
        "agent_sessions_session_text_at",
        "agent_sessions_session_text_au",
    } <= names


def test_a_flush_of_the_sessions_empties_the_text_index(postgres_only: None) -> None:
    """Django's ``flush`` (transactional tests' teardown) truncates the session
    table: its text index must not keep rows whose ids a reset sequence reuses."""
    from django.core.management.color import no_style
    from django.db import connection

    upsert("k1", name="flushed")
    tables = connection.introspection.django_table_names(only_existing=True, include_views=False)
    with connection.cursor() as cursor:
        for sql in connection.ops.sql_flush(no_style(), tables, reset_sequences=True):
            cursor.execute(sql)
        cursor.execute("SELECT COUNT(*) FROM agent_sessions_session_text")
        assert cursor.fetchone() == (0,)
    upsert("k2", name="kept")
    with indexed_only():
        assert keys(Session.objects.listing(q="flushed")) == []
        assert keys(Session.objects.listing(q="kept")) == ["k2"]


def test_the_table_counts_a_text_filter_alone_as_the_listing_finds_it() -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    text_fleet()
    upsert("k-more", name="more a_b")

    with CaptureQueriesContext(connection) as queries:
        assert selectors.session_matches(10, now=T0, q="a_b") == (2, True)
    assert selectors.session_matches(1, now=T0, q="a_b") == (1, False)  # capped
    assert selectors.session_matches(10, now=T0, q="ÉMILE") == (1, True)
    assert selectors.session_matches(10, now=T0, q="a_b", agent="") == (2, True)
    assert selectors.session_matches(10, now=T0, q="zzz") == (0, True)
    (query,) = queries.captured_queries
    # Counted in the text index, no session row looked up.
    assert "agent_sessions_session_text" in query["sql"]
    assert '"agent_sessions_session"' not in query["sql"]


def test_the_table_counts_a_text_filter_with_others_on_the_sessions() -> None:
    text_fleet()
    upsert("k-more", name="more a_b", agent="bot")

    assert selectors.session_matches(10, now=T0, q="a_b", agent="bot") == (1, True)
    assert selectors.session_matches(10, now=T0, q="a_b", health="running") == (0, True)


# --- the context view and pending calls read a page, not the transcript (issue 16) ----


def old_messages_context(stored: Session) -> list[Message]:
    """The context view as it was computed before issue 16 (the whole transcript
    in Python): the reference the paged reads must agree with."""
    from sessions.choices import MESSAGE_INCOMPLETE, Role

    messages = list(Message.objects.filter(session=stored).context())
    answered = {m.tool_call_id for m in messages if m.role == Role.TOOL and m.tool_call_id}
    offered: set[str] = set()
    kept: list[Message] = []
    for message in messages:
        if message.role == Role.ASSISTANT:
            if message.status == MESSAGE_INCOMPLETE:
                continue
            calls = [
                c
                for c in message.tool_calls or []
                if isinstance(c, dict) and c.get("id") in answered
            ]
            if not calls and not (message.content or "").strip() and not message.reasoning:
                continue
            if len(calls) != len(message.tool_calls or []):
                message.tool_calls = calls
            offered.update(c["id"] for c in calls)
        elif message.role == Role.TOOL and message.tool_call_id not in offered:
            continue
        kept.append(message)
    return kept


def old_pending_tool_calls(stored: Session) -> list[tuple[int, dict[str, Any]]]:
    from sessions.choices import Role

    active = Message.objects.filter(session=stored).not_archived()
    answered = set(
        active.filter(role=Role.TOOL)
        .exclude(tool_call_id="")
        .values_list("tool_call_id", flat=True)
    )
    return [
        (message.seq, call)
        for message in active.with_tool_calls().order_by("seq")
        for call in message.tool_calls
        if isinstance(call, dict) and call.get("id") not in answered
    ]


def random_transcript(seed: int, length: int = 60) -> Session:
    """A transcript with everything the pairing rules look at: calls answered,
    unanswered, answered twice or before they were made, results for calls
    never made, ids shared by two messages, archived stretches, summaries,
    unfinished replies, blank and whitespace-only content, reasoning."""
    import random

    rng = random.Random(seed)
    stored = Session.objects.create(key=f"random-{seed}")
    ids = [f"c{n}" for n in range(length // 4)]
    rows = []
    for seq in range(1, length + 1):
        role = rng.choice(["user", "assistant", "assistant", "tool", "tool", "system"])
        row = Message(session=stored, seq=seq, role=role, created_at=T0)
        if role == "assistant":
            row.tool_calls = [call(rng.choice(ids)) for _ in range(rng.choice([0, 0, 1, 1, 2, 3]))]
            row.content = rng.choice([None, "", " \n\t", "\u2003", "text"])
            row.reasoning = rng.choice(["", "", "thinking"])
            row.status = rng.choice(["", "", "", "complete", "incomplete"])
        elif role == "tool":
            row.tool_call_id = rng.choice([*ids, ""])
            row.content = "result"
        else:
            row.content = "words"
        row.is_summary = rng.random() < 0.08
        if rng.random() < 0.2:
            row.compacted_at = T0
        rows.append(row)
    Message.objects.bulk_create(rows)
    return stored


def shape(messages: list[Message]) -> list[tuple[int, str, Any]]:
    return [(m.seq, m.role, m.tool_calls) for m in messages]


@pytest.mark.parametrize("seed", range(30))
def test_the_paged_context_view_is_the_whole_view_read_in_pages(seed: int) -> None:
    stored = random_transcript(seed)
    expected = old_messages_context(stored)

    assert shape(selectors.messages_context(stored)) == shape(expected)
    for limit in (2, 7):
        for role in (None, "assistant", "tool", "user"):
            for after in (0, 17):
                wanted = [m for m in expected if m.seq > after and (not role or m.role == role)]
                pages, position = [], None
                while True:
                    page = selectors.messages_context_page(
                        stored, limit=limit, after=after, role=role, position=position
                    )
                    pages.extend(page.messages)
                    assert len(page.messages) <= limit
                    if not page.more:
                        break
                    position = page.position
                assert shape(pages) == shape(wanted), (limit, role, after)


@pytest.mark.parametrize("seed", range(40))
def test_pending_tool_calls_pair_in_the_database_as_they_did_in_python(seed: int) -> None:
    stored = random_transcript(seed)

    found = [(p.message.seq, p.call) for p in selectors.pending_tool_calls(stored)]

    assert found == old_pending_tool_calls(stored)


def long_transcript(key: str, turns: int) -> Session:
    """``turns`` rounds of user, assistant call, tool result, assistant reply."""
    stored = Session.objects.create(key=key)
    rows = []
    for turn in range(turns):
        seq = 4 * turn
        rows += [
            Message(session=stored, seq=seq + 1, role="user", content="go"),
            Message(session=stored, seq=seq + 2, role="assistant", tool_calls=[call(f"t{turn}")]),
            Message(session=stored, seq=seq + 3, role="tool", tool_call_id=f"t{turn}", content="r"),
            Message(session=stored, seq=seq + 4, role="assistant", content="ok"),
        ]
    rows.append(
        Message(session=stored, seq=4 * turns + 1, role="assistant", tool_calls=[call("x")])
    )
    Message.objects.bulk_create(rows)
    return stored


def loaded_messages(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A counter of the Message rows turned into objects from here on."""
    loaded = [0]
    from_db = Message.from_db.__func__  # type: ignore[attr-defined]

    def counting(cls: type[Message], *args: Any) -> Message:
        loaded[0] += 1
        return from_db(cls, *args)

    monkeypatch.setattr(Message, "from_db", classmethod(counting))
    return loaded


def test_a_context_page_reads_the_page_not_the_transcript(
    monkeypatch: pytest.MonkeyPatch, django_assert_max_num_queries: Any
) -> None:
    short, long = long_transcript("short", 30), long_transcript("long", 600)
    loaded = loaded_messages(monkeypatch)
    counts = []
    for stored in (short, long):
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as queries:
            page = selectors.messages_context_page(stored, limit=50, after=40)
        counts.append(len(queries))
        assert [m.seq for m in page.messages] == list(range(41, 91))
        assert page.more
        page = selectors.messages_context_page(stored, limit=50, position=page.position)
        assert page.messages[0].seq == 91
    assert counts[0] == counts[1] <= 5
    # Two pages of 50 from each transcript (and the rounds' one extra row):
    # nothing near the long one's 2 401 messages.
    assert loaded[0] <= 4 * (50 + selectors.CONTEXT_BATCH)


def test_pending_tool_calls_read_only_the_messages_with_a_pending_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stored = long_transcript("long", 600)
    loaded = loaded_messages(monkeypatch)

    pending = selectors.pending_tool_calls(stored)

    assert [(p.message.seq, p.call["id"]) for p in pending] == [(2401, "x")]
    assert loaded[0] == 1


def test_the_context_view_finds_results_by_call_id_through_an_index(sqlite_only: None) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    stored = long_transcript("long", 20)
    with CaptureQueriesContext(connection) as queries:
        selectors.messages_context_page(stored, limit=10)
        selectors.pending_tool_calls(stored)
    plans = []
    with connection.cursor() as cursor:
        for query in queries.captured_queries:
            cursor.execute(f"EXPLAIN QUERY PLAN {query['sql']}")
            plans.append(" ".join(str(row) for row in cursor.fetchall()))
    assert any("message_tool_call_idx" in plan for plan in plans), plans
    assert any("message_summary_idx" in plan for plan in plans), plans


def test_a_page_of_results_whose_calls_came_before_it_looks_them_up_at_once() -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    stored = Session.objects.create(key="fan-out")
    rows = [Message(session=stored, seq=1, role="user", content="go")]
    rows.append(
        Message(
            session=stored, seq=2, role="assistant", tool_calls=[call(f"c{n}") for n in range(60)]
        )
    )
    rows += [
        Message(session=stored, seq=3 + n, role="tool", tool_call_id=f"c{n}", content="r")
        for n in range(60)
    ]
    Message.objects.bulk_create(rows)

    with CaptureQueriesContext(connection) as queries:
        page = selectors.messages_context_page(stored, limit=20, position=(False, 22))

    assert [m.tool_call_id for m in page.messages] == [f"c{n}" for n in range(20, 40)]
    # The summaries, the page's rows, one walk back to the call: not one a result.
    assert len(queries) == 3
