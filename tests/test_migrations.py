"""Data migrations: what they fill in from the rows already stored."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from sessions import search
from sessions.models import DailyUsage, Message, MinuteUsage

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE_MINUTE_USAGE = ("agent_sessions", "0004_price_override_applies_to_all_history")
MINUTE_USAGE = ("agent_sessions", "0005_minute_usage_and_turn_index")
BEFORE_ROLLUP_NAMES = ("agent_sessions", "0008_turn_kept_on_error")
ROLLUP_NAMES = ("agent_sessions", "0009_rollup_counts_named_like_session_totals")
MESSAGE_METADATA = ("agent_sessions", "0020_message_metadata")


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


def test_messages_stored_before_message_metadata_have_none_and_stay_searchable(
    executor: MigrationExecutor,
) -> None:
    executor.migrate([ROLLUP_NAMES])
    apps = executor.loader.project_state([ROLLUP_NAMES]).apps
    session = apps.get_model("agent_sessions", "Session").objects.create(
        key="s", agent="koda", last_active_at=timezone.now()
    )
    message_model = apps.get_model("agent_sessions", "Message")
    message_model.objects.create(session=session, seq=1, role="user", content="older words")

    executor = MigrationExecutor(connection)
    executor.migrate([MESSAGE_METADATA])

    older = Message.objects.get(seq=1)  # the current model: the new column
    assert older.metadata == {}
    Message.objects.create(session_id=session.pk, seq=2, role="user", content="newer words")
    found = {hit.seq for result in search.search_messages("words") for hit in result.hits}
    assert found == {1, 2}
