"""Data migrations: what they fill in from the rows already stored."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from sessions import search
from sessions.models import (
    BudgetUsage,
    DailyUsage,
    LatencyUsage,
    MinuteUsage,
    SessionTally,
    project_key,
)

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE_MINUTE_USAGE = ("agent_sessions", "0004_price_override_applies_to_all_history")
MINUTE_USAGE = ("agent_sessions", "0005_minute_usage_and_turn_index")
BEFORE_ROLLUP_NAMES = ("agent_sessions", "0008_turn_kept_on_error")
ROLLUP_NAMES = ("agent_sessions", "0009_rollup_counts_named_like_session_totals")
MESSAGE_METADATA = ("agent_sessions", "0011_message_metadata")
LATENCY = ("agent_sessions", "0012_latency")
BEFORE_TALLY = ("agent_sessions", "0016_search_vector_regexp")
TALLY = ("agent_sessions", "0017_session_tally")
BEFORE_FLEET_LATENCY = ("agent_sessions", "0018_session_text_filter")
FLEET_LATENCY = ("agent_sessions", "0019_fleet_latency_usage")
BEFORE_NAME_PAIRS = ("agent_sessions", "0021_session_text_side_table")
NAME_PAIRS = ("agent_sessions", "0022_sqlite_name_pair_indexes")


@pytest.fixture
def executor() -> Iterator[MigrationExecutor]:
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    yield executor
    executor = MigrationExecutor(connection)
    executor.migrate(latest)


def test_minute_usage_is_filled_from_the_last_two_hours_of_messages(
    executor: MigrationExecutor,
) -> None:
    executor.migrate([BEFORE_MINUTE_USAGE])
    apps = executor.loader.project_state([BEFORE_MINUTE_USAGE]).apps
    session_model = apps.get_model("agent_sessions", "Session")
    message_model = apps.get_model("agent_sessions", "Message")
    now = timezone.now()
    session = session_model.objects.create(
        key="s", agent="koda", model="gpt-4o", channel="cli", last_active_at=now
    )
    usage = {"prompt_tokens": 100, "completion_tokens": 10}
    for seq, (minutes_ago, model, source, cost) in enumerate(
        [
            (10, "", "computed", Decimal("0.5")),
            (10, "", "reported", Decimal("0.25")),
            (30, "claude-x", "unpriced", None),
            (30, "", "", None),  # a user message: no usage
            (150, "", "computed", Decimal(7)),  # before the window
        ],
        start=1,
    ):
        message_model.objects.create(
            session=session,
            seq=seq,
            role="assistant" if source else "user",
            model=model,
            cost_source=source,
            cost_usd=cost,
            created_at=now - timedelta(minutes=minutes_ago),
            **(usage if source else {}),
        )

    executor = MigrationExecutor(connection)
    executor.migrate([MINUTE_USAGE])

    rows = {
        (row.model, row.minute): row
        for row in MinuteUsage.objects.all()  # the current model reads the same table
    }
    assert len(rows) == 2
    ten = (now - timedelta(minutes=10)).replace(second=0, microsecond=0)
    gpt = rows[("gpt-4o", ten)]
    assert (gpt.agent, gpt.channel, gpt.api_calls, gpt.unpriced_calls) == ("koda", "cli", 2, 0)
    assert (gpt.prompt_tokens, gpt.completion_tokens, gpt.cost_usd) == (200, 20, Decimal("0.75"))
    claude = rows[("claude-x", (now - timedelta(minutes=30)).replace(second=0, microsecond=0))]
    assert (claude.api_calls, claude.unpriced_calls, claude.cost_usd) == (1, 1, Decimal(0))


def test_renaming_the_rollup_counts_keeps_their_values(executor: MigrationExecutor) -> None:
    executor.migrate([BEFORE_ROLLUP_NAMES])
    apps = executor.loader.project_state([BEFORE_ROLLUP_NAMES]).apps
    daily = apps.get_model("agent_sessions", "DailyUsage")
    daily.objects.create(
        day="2026-11-20", agent="koda", messages=7, tool_calls=3, turns=2, cost_usd=Decimal(1)
    )

    executor = MigrationExecutor(connection)
    executor.migrate([ROLLUP_NAMES])

    row = DailyUsage.objects.get()  # the current model: the renamed columns
    assert (row.agent, row.message_count, row.tool_call_count, row.turns) == ("koda", 7, 3, 2)
    assert row.cost_usd == Decimal(1)


BEFORE_BUDGETS = ("agent_sessions", "0009_rollup_counts_named_like_session_totals")
BUDGETS = ("agent_sessions", "0010_budgets")


def test_budget_usage_is_filled_from_every_stored_message_with_usage(
    executor: MigrationExecutor,
) -> None:
    executor.migrate([BEFORE_BUDGETS])
    apps = executor.loader.project_state([BEFORE_BUDGETS]).apps
    session_model = apps.get_model("agent_sessions", "Session")
    message_model = apps.get_model("agent_sessions", "Message")
    t0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    session = session_model.objects.create(
        key="s", agent="koda", model="gpt-4o", channel="cli", project_root="/src/app"
    )
    for seq, (at, model, source, cost) in enumerate(
        [
            (t0, "", "computed", Decimal("0.5")),
            (t0 + timedelta(minutes=14, seconds=59), "", "reported", Decimal("0.000000001")),
            (t0 + timedelta(minutes=15), "", "computed", Decimal(2)),  # the next quarter
            (t0 + timedelta(minutes=1), "claude-x", "unpriced", None),
            (t0 + timedelta(minutes=2), "", "", None),  # a user message: no usage
            (t0 + timedelta(days=40), "", "computed", Decimal(7)),  # long ago or not: all
        ],
        start=1,
    ):
        message_model.objects.create(
            session=session,
            seq=seq,
            role="assistant" if source else "user",
            model=model,
            cost_source=source,
            cost_usd=cost,
            created_at=at,
            prompt_tokens=10 if source else 0,
        )

    executor = MigrationExecutor(connection)
    executor.migrate([BUDGETS])

    rows = {
        (row.span, row.start, row.model): (
            row.api_calls,
            row.unpriced_calls,
            row.cost_usd,
            row.prompt_tokens,
        )
        for row in BudgetUsage.objects.all()
    }
    day = t0.replace(hour=0)
    assert rows == {
        ("quarter", t0, "gpt-4o"): (2, 0, Decimal("0.500000001"), 20),
        ("quarter", t0, "claude-x"): (1, 1, Decimal(0), 10),
        ("quarter", t0 + timedelta(minutes=15), "gpt-4o"): (1, 0, Decimal(2), 10),
        ("quarter", t0 + timedelta(days=40), "gpt-4o"): (1, 0, Decimal(7), 10),
        ("hour", t0, "gpt-4o"): (3, 0, Decimal("2.500000001"), 30),
        ("hour", t0, "claude-x"): (1, 1, Decimal(0), 10),
        ("hour", t0 + timedelta(days=40), "gpt-4o"): (1, 0, Decimal(7), 10),
        ("day", day, "gpt-4o"): (3, 0, Decimal("2.500000001"), 30),
        ("day", day, "claude-x"): (1, 1, Decimal(0), 10),
        ("day", day + timedelta(days=40), "gpt-4o"): (1, 0, Decimal(7), 10),
    }
    row = BudgetUsage.objects.first()
    assert row is not None
    assert (row.agent, row.channel, row.project) == ("koda", "cli", "/src/app")
    assert row.project_key == project_key("/src/app")


def test_messages_stored_before_message_metadata_have_none_and_stay_searchable(
    executor: MigrationExecutor,
) -> None:
    executor.migrate([BUDGETS])
    apps = executor.loader.project_state([BUDGETS]).apps
    session = apps.get_model("agent_sessions", "Session").objects.create(
        key="s", agent="koda", last_active_at=timezone.now()
    )
    message_model = apps.get_model("agent_sessions", "Message")
    message_model.objects.create(session=session, seq=1, role="user", content="older words")

    executor = MigrationExecutor(connection)
    executor.migrate([MESSAGE_METADATA])

    # The model as of this migration: later ones add columns it has not yet.
    message_model = executor.loader.project_state([MESSAGE_METADATA]).apps.get_model(
        "agent_sessions", "Message"
    )
    older = message_model.objects.get(seq=1)
    assert older.metadata == {}
    message_model.objects.create(session_id=session.pk, seq=2, role="user", content="newer words")
    found = {hit.seq for result in search.search_messages("words") for hit in result.hits}
    assert found == {1, 2}


def test_messages_stored_before_durations_have_none_and_stay_searchable(
    executor: MigrationExecutor,
) -> None:
    executor.migrate([MESSAGE_METADATA])
    apps = executor.loader.project_state([MESSAGE_METADATA]).apps
    session = apps.get_model("agent_sessions", "Session").objects.create(
        key="s", agent="koda", last_active_at=timezone.now()
    )
    message_model = apps.get_model("agent_sessions", "Message")
    message_model.objects.create(session=session, seq=1, role="user", content="older words")

    executor = MigrationExecutor(connection)
    executor.migrate([LATENCY])

    message_model = executor.loader.project_state([LATENCY]).apps.get_model(
        "agent_sessions", "Message"
    )
    older = message_model.objects.get(seq=1)
    assert (older.duration_ms, older.time_to_first_token_ms) == (None, None)
    message_model.objects.create(
        session_id=session.pk, seq=2, role="assistant", content="newer words", duration_ms=5
    )
    found = {hit.seq for result in search.search_messages("words") for hit in result.hits}
    assert found == {1, 2}
    assert not LatencyUsage.objects.exists()


def test_the_fleet_latency_rollup_is_filled_from_the_latency_rollup_summed_over_agents(
    executor: MigrationExecutor,
) -> None:
    executor.migrate([BEFORE_FLEET_LATENCY])
    apps = executor.loader.project_state([BEFORE_FLEET_LATENCY]).apps
    latency = apps.get_model("agent_sessions", "LatencyUsage")
    day = datetime(2026, 3, 1, tzinfo=UTC).date()
    latency.objects.bulk_create(
        latency(day=day, agent=agent, model=model, kind=kind, name=name, bucket=bucket,
                count=count, sum_ms=sum_ms)
        for agent, model, kind, name, bucket, count, sum_ms in [
            ("a", "o3", "call", "", 40, 2, 900),
            ("b", "o3", "call", "", 40, 3, 1400),
            ("b", "gpt", "call", "", 40, 1, 450),
            ("a", "o3", "ttft", "", 12, 1, 13),
            ("a", "o3", "tool", "grep", 7, 1, 7),
            ("b", "gpt", "tool", "grep", 7, 4, 28),
            ("a", "o3", "turn", "", 90, 1, 70_000),
            ("b", "gpt", "turn", "", 90, 1, 71_000),
            ("a", "o3", "call", "", 41, 0, 0),  # corrected back to nothing
        ]
    )  # fmt: skip

    executor = MigrationExecutor(connection)
    executor.migrate([FLEET_LATENCY])

    fleet = executor.loader.project_state([FLEET_LATENCY]).apps
    rows = fleet.get_model("agent_sessions", "FleetLatencyUsage").objects.values_list(
        "day", "kind", "model", "name", "bucket", "count", "sum_ms"
    )
    assert sorted(rows) == [
        (day, "call", "gpt", "", 40, 1, 450),
        (day, "call", "o3", "", 40, 5, 2300),
        (day, "tool", "", "grep", 7, 5, 35),
        (day, "ttft", "o3", "", 12, 1, 13),
        (day, "turn", "", "", 90, 2, 141_000),
    ]


def test_the_session_tally_is_filled_from_the_stored_sessions_and_kept_after(
    executor: MigrationExecutor,
) -> None:
    executor.migrate([BEFORE_TALLY])
    apps = executor.loader.project_state([BEFORE_TALLY]).apps
    session_model = apps.get_model("agent_sessions", "Session")
    for n, (agent, status) in enumerate(
        [("koda", "active"), ("koda", "active"), ("koda", "failed"), ("", "completed")]
    ):
        session_model.objects.create(key=f"s{n}", agent=agent, status=status)

    executor = MigrationExecutor(connection)
    executor.migrate([TALLY])

    def tally() -> set[tuple[str, str, int]]:
        return set(SessionTally.objects.values_list("agent", "status", "sessions"))

    assert tally() == {("koda", "active", 2), ("koda", "failed", 1), ("", "completed", 1)}
    session_model.objects.filter(key="s0").update(status="unknown")
    session_model.objects.filter(key="s3").delete()
    assert tally() == {
        ("koda", "active", 1),
        ("koda", "unknown", 1),
        ("koda", "failed", 1),
        ("", "completed", 0),
    }


def session_indexes() -> set[str]:
    with connection.cursor() as cursor:
        return set(connection.introspection.get_constraints(cursor, "agent_sessions_session"))


def test_the_name_order_within_a_project_or_agent_is_indexed_on_sqlite_only(
    executor: MigrationExecutor,
) -> None:
    pairs = {"session_project_name_idx", "session_agent_name_idx"}
    executor.migrate([BEFORE_NAME_PAIRS])
    assert not pairs & session_indexes()

    executor = MigrationExecutor(connection)
    executor.migrate([NAME_PAIRS])

    # PostgreSQL: every append would insert into them (no HOT update).
    assert session_indexes() & pairs == (pairs if connection.vendor == "sqlite" else set())
    executor = MigrationExecutor(connection)
    executor.migrate([BEFORE_NAME_PAIRS])
    assert not pairs & session_indexes()


def test_on_an_analyzed_sqlite_database_the_name_pair_indexes_get_statistics(
    executor: MigrationExecutor, sqlite_only: None
) -> None:
    """With statistics for every other index and none for these, the planner
    took them for the most selective (the API's list of one agent read 0022's
    index and sorted its sessions: 2 -> 76 ms at 100 000 sessions)."""
    executor.migrate([BEFORE_NAME_PAIRS])
    apps = executor.loader.project_state([BEFORE_NAME_PAIRS]).apps
    apps.get_model("agent_sessions", "Session").objects.create(
        key="s", agent="koda", project_root="/srv"
    )

    def analyzed() -> set[str]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT idx FROM sqlite_stat1 WHERE tbl = 'agent_sessions_session'")
            return {idx for (idx,) in cursor.fetchall()}

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    try:
        assert "session_agent_idx" in analyzed()
        executor = MigrationExecutor(connection)
        executor.migrate([NAME_PAIRS])
        assert {"session_project_name_idx", "session_agent_name_idx"} <= analyzed()
    finally:
        # The other tests plan on a database without statistics.
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS sqlite_stat1")
            cursor.execute("DROP TABLE IF EXISTS sqlite_stat4")
